//! Alert webhooks: `POST /webhooks/datadog`, `/webhooks/alertmanager`, `/webhooks/grafana`.
//!
//! Requests carry `Authorization: Bearer <WEBHOOK_TOKEN>`. The body is parsed here, so a body the
//! bot cannot read is refused with 400 and a reason the sender's operator can act on; every alert
//! it holds is then put in the inbox (one transaction, one flush) before the 200.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tracing::info;

use super::{Posted, Rejection, refuse, rejection};
use crate::app::inbox::{Inbox, InboxEvent, Origin};
use crate::app::store::Acceptance;
use crate::domain::decide::Event;
use crate::sources::{self, Format};

/// Alert bodies over 1 MiB are refused (413).
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct WebhookState {
    pub inbox: Inbox,
    /// `None`: webhooks are off.
    pub token: Option<SecretString>,
}

pub fn routes(state: WebhookState) -> Router {
    Router::new()
        .route("/webhooks/datadog", post(datadog_hook))
        .route("/webhooks/alertmanager", post(alertmanager_hook))
        .route("/webhooks/grafana", post(grafana_hook))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
        .with_state(state)
}

fn authorized(state: &WebhookState, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(token) = &state.token else {
        return Err(rejection(StatusCode::UNAUTHORIZED, "webhooks are off: the server has no WEBHOOK_TOKEN set"));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match given {
        None => Err(rejection(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <WEBHOOK_TOKEN>")),
        Some(g) if bool::from(g.as_bytes().ct_eq(token.expose_secret().as_bytes())) => Ok(()),
        Some(_) => Err(rejection(StatusCode::UNAUTHORIZED, "wrong webhook token")),
    }
}

async fn handle(state: WebhookState, headers: HeaderMap, body: Bytes, what: &'static str, format: Format) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return r.into_response();
    }
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    let alerts = match sources::read_webhook(format, &payload, state.inbox.now()) {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("not a {what} alert: {e}")),
    };
    let fingerprints: Vec<String> = alerts.iter().map(|(a, _)| a.fingerprint.to_string()).collect();
    let events = alerts
        .into_iter()
        .map(|(alert, key)| {
            let event =
                InboxEvent::Domain { event: Box::new(Event::Alert(alert)), incident: None, origin: Origin::default() };
            (event, key)
        })
        .collect();
    match state.inbox.accept_many(events).await {
        Ok(results) => {
            let accepted = results.iter().filter(|r| matches!(r, Acceptance::Accepted(_))).count();
            let duplicates = results.len() - accepted;
            info!(source = what, accepted, duplicates, "webhook alerts accepted");
            Json(json!({"ok": true, "accepted": accepted, "duplicates": duplicates, "fingerprints": fingerprints}))
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store webhook alerts");
            // 5xx: Datadog and Alertmanager retry.
            refuse(StatusCode::SERVICE_UNAVAILABLE, "cannot store the alerts right now; retry")
        }
    }
}

async fn datadog_hook(State(state): State<WebhookState>, Posted { headers, body }: Posted) -> Response {
    handle(state, headers, body, "Datadog webhook", Format::DatadogWebhook).await
}

async fn alertmanager_hook(State(state): State<WebhookState>, Posted { headers, body }: Posted) -> Response {
    handle(state, headers, body, "Alertmanager", Format::Alertmanager).await
}

async fn grafana_hook(State(state): State<WebhookState>, Posted { headers, body }: Posted) -> Response {
    handle(state, headers, body, "Grafana", Format::Grafana).await
}
