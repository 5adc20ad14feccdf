//! Slack's HTTP ingress: `POST /slack/events`, `/slack/commands`, `/slack/interactions`.
//!
//! Each handler verifies the signature over the raw body, rejects stale timestamps, deduplicates,
//! persists the event to the inbox and answers at once; processing happens afterwards.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use slack_morphism::prelude::SlackSigningSecret;
use slack_morphism::signature_verifier::{SlackEventSignatureVerifier, SlackEventSignatureVerifierError};
use tracing::info;

use crate::app::inbox::SlashCommand;
use crate::app::inbox::{AcceptError, Inbox};
use crate::app::inbox::{InboxEvent, RawJson};
use crate::app::store::Acceptance;
use crate::domain::ids::{ChannelId, UserId};
pub use crate::http::{Posted, Rejection, refuse, rejection};

/// Slack bodies are small; anything over 1 MiB is refused with 413 before it is read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct IngressState {
    pub inbox: Inbox,
    verifier: Arc<SlackEventSignatureVerifier>,
}

impl IngressState {
    pub fn new(inbox: Inbox, signing_secret: &SecretString) -> IngressState {
        let secret = SlackSigningSecret::new(signing_secret.expose_secret().to_string());
        IngressState { inbox, verifier: Arc::new(SlackEventSignatureVerifier::new(&secret)) }
    }
}

pub fn routes(state: IngressState) -> Router {
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Checks `X-Slack-Signature` over the raw body and the timestamp's age (five minutes).
pub fn verify(verifier: &SlackEventSignatureVerifier, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(ts)) = (
        header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
        header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
    ) else {
        return Err(rejection(StatusCode::UNAUTHORIZED, "missing X-Slack-Signature or X-Slack-Request-Timestamp"));
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(rejection(StatusCode::BAD_REQUEST, "the body is not UTF-8"));
    };
    match verifier.verify(signature, text, ts) {
        Ok(()) => Ok(()),
        Err(SlackEventSignatureVerifierError::IncorrectOrExpiredTimestampError(_)) => Err(rejection(
            StatusCode::UNAUTHORIZED,
            "stale or invalid X-Slack-Request-Timestamp (must be within 5 minutes)",
        )),
        Err(SlackEventSignatureVerifierError::WrongSignatureError(_)) => {
            Err(rejection(StatusCode::UNAUTHORIZED, "X-Slack-Signature does not match the body"))
        }
        Err(e) => Err(rejection(StatusCode::UNAUTHORIZED, format!("cannot verify the signature: {e}"))),
    }
}

/// `X-Slack-Retry-Num` of a redelivery (`0` for a first delivery).
fn retry_num(headers: &HeaderMap) -> &str {
    headers.get("x-slack-retry-num").and_then(|v| v.to_str().ok()).unwrap_or("0")
}

/// Logs what became of a delivery the same way for every kind: accepted with its inbox position
/// (at debug: the processor's line for the event says what it came to), or a redelivery (same
/// event id or trigger id) recognised and ignored.
pub fn log_acceptance(what: &'static str, key: Option<&str>, acceptance: Acceptance, retry: &str) {
    match acceptance {
        Acceptance::Accepted(seq) => tracing::debug!(kind = what, key, seq, retry, "accepted"),
        Acceptance::Duplicate => info!(kind = what, key, retry, "duplicate delivery ignored"),
    }
}

fn accept_failed(e: AcceptError) -> Response {
    // 5xx makes Slack retry later, which is what we want when the store is unavailable.
    tracing::error!(error = %e, "cannot accept the event");
    refuse(StatusCode::SERVICE_UNAVAILABLE, "cannot store the event right now; Slack will retry")
}

/// The parts of an Events API envelope the bot reads: the event stays text (see `RawJson`).
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    challenge: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
}

async fn events(State(state): State<IngressState>, Posted { headers, body }: Posted) -> Response {
    if let Err(r) = verify(&state.verifier, &headers, &body) {
        return r.into_response();
    }
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    match envelope.kind.as_deref() {
        Some("url_verification") => match envelope.challenge {
            Some(challenge) => Json(json!({"challenge": challenge})).into_response(),
            None => refuse(StatusCode::BAD_REQUEST, "url_verification without a challenge"),
        },
        Some("event_callback") => {
            let Some(event_id) = envelope.event_id.map(Cow::into_owned) else {
                return refuse(StatusCode::BAD_REQUEST, "event_callback without event_id");
            };
            let Some(event) = envelope.event.filter(|e| e.get().starts_with('{')) else {
                return refuse(StatusCode::BAD_REQUEST, "event_callback without an event object");
            };
            let retry = retry_num(&headers);
            let key = format!("slack-event:{event_id}");
            let event = InboxEvent::SlackEvent { event_id, event: RawJson::from_raw(event) };
            match state.inbox.accept(event, Some(&key)).await {
                Ok(acceptance) => {
                    log_acceptance("event", Some(&key), acceptance, retry);
                    StatusCode::OK.into_response()
                }
                Err(e) => accept_failed(e),
            }
        }
        Some(other) => {
            info!(kind = other, "envelope type not used by the bot");
            StatusCode::OK.into_response()
        }
        None => refuse(StatusCode::BAD_REQUEST, "the envelope has no type"),
    }
}

/// Reads a slash command's form fields.
pub fn slash_command_from_form(fields: &[(String, String)]) -> Result<SlashCommand, String> {
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let user = get("user_id").ok_or("missing user_id")?;
    let channel = get("channel_id").ok_or("missing channel_id")?;
    Ok(SlashCommand {
        command: get("command").unwrap_or_else(|| "/incident".into()),
        text: get("text").unwrap_or_default(),
        user_id: UserId::parse(user).map_err(|e| e.to_string())?,
        channel_id: ChannelId::parse(channel).map_err(|e| e.to_string())?,
        response_url: get("response_url").filter(|u| !u.is_empty()),
        trigger_id: get("trigger_id").filter(|t| !t.is_empty()),
    })
}

/// The dedupe key of a slash command: its trigger id is unique per invocation.
pub fn command_dedupe_key(command: &SlashCommand) -> Option<String> {
    command.trigger_id.as_ref().map(|t| format!("slack-command:{t}"))
}

async fn commands(State(state): State<IngressState>, Posted { headers, body }: Posted) -> Response {
    if let Err(r) = verify(&state.verifier, &headers, &body) {
        return r.into_response();
    }
    let fields: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("malformed form body: {e}")),
    };
    let command = match slash_command_from_form(&fields) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("not a slash command: {e}")),
    };
    let key = command_dedupe_key(&command);
    let retry = retry_num(&headers);
    match state.inbox.accept(InboxEvent::SlashCommand { command }, key.as_deref()).await {
        // The answer comes through the response URL once the command is processed.
        Ok(acceptance) => {
            log_acceptance("slash command", key.as_deref(), acceptance, retry);
            StatusCode::OK.into_response()
        }
        Err(e) => accept_failed(e),
    }
}

/// The dedupe key of an interaction: its trigger id (or the action's timestamp and user).
pub fn interaction_dedupe_key(payload: &Value) -> Option<String> {
    if let Some(t) = payload["trigger_id"].as_str() {
        return Some(format!("slack-interaction:{t}"));
    }
    let action_ts = payload["actions"][0]["action_ts"].as_str()?;
    Some(format!("slack-interaction:{}:{action_ts}", payload["user"]["id"].as_str().unwrap_or_default()))
}

async fn interactions(State(state): State<IngressState>, Posted { headers, body }: Posted) -> Response {
    if let Err(r) = verify(&state.verifier, &headers, &body) {
        return r.into_response();
    }
    let fields: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("malformed form body: {e}")),
    };
    let Some((_, raw)) = fields.iter().find(|(k, _)| k == "payload") else {
        return refuse(StatusCode::BAD_REQUEST, "missing the payload field");
    };
    let payload: Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("malformed payload JSON: {e}")),
    };
    if !payload.is_object() {
        return refuse(StatusCode::BAD_REQUEST, "the payload is not an object");
    }
    let key = interaction_dedupe_key(&payload);
    let retry = retry_num(&headers);
    match state.inbox.accept(InboxEvent::Interaction { payload }, key.as_deref()).await {
        Ok(acceptance) => {
            log_acceptance("interaction", key.as_deref(), acceptance, retry);
            StatusCode::OK.into_response()
        }
        Err(e) => accept_failed(e),
    }
}
