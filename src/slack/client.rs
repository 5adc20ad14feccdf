//! The one Slack Web API client (slack-morphism), with typed errors the egress can act on.
//!
//! slack-morphism's own rate control is deliberately not enabled: it paces chat.postMessage for the
//! whole workspace, while Slack's limit is per channel. [`super::egress`] paces instead.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::api::*;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::blocks::{TEXT_MAX, clip, escape_placeholders, render_blocks};
use crate::domain::ids::{BotId, ChannelId, UserId};
use crate::domain::messages::Message;

pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// Who the bot is, from `auth.test`: used to ignore its own messages and mentions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    pub user_id: UserId,
    pub bot_id: Option<BotId>,
    pub team_id: String,
    /// The workspace's URL, e.g. `https://acme.slack.com/`.
    pub workspace_url: Option<String>,
}

/// A failed call, classified by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// 429: wait (for `Retry-After` when Slack sent it), then retry.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, timeouts, connection failures: retry with backoff.
    #[error("temporarily unavailable: {0}")]
    Transient(String),
    /// The token is not valid: nothing will work until it is replaced.
    #[error("the Slack token was refused ({0}); check SLACK_BOT_TOKEN")]
    Auth(String),
    /// Slack refused the call for a reason retrying will not fix (e.g. `channel_not_found`).
    #[error("Slack refused the call: {0}")]
    Refused(String),
}

const AUTH_ERRORS: [&str; 5] = ["invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired"];
const TRANSIENT_ERRORS: [&str; 4] = ["internal_error", "fatal_error", "service_unavailable", "request_timeout"];

fn classify(err: SlackClientError) -> CallError {
    match err {
        SlackClientError::RateLimitError(e) => CallError::RateLimited { retry_after: e.retry_after },
        SlackClientError::ApiError(e) => {
            let code = e.code.as_str();
            if code == "ratelimited" || code == "rate_limited" {
                CallError::RateLimited { retry_after: None }
            } else if AUTH_ERRORS.contains(&code) {
                CallError::Auth(code.to_string())
            } else if TRANSIENT_ERRORS.contains(&code) {
                CallError::Transient(code.to_string())
            } else {
                CallError::Refused(code.to_string())
            }
        }
        SlackClientError::HttpError(e) if e.status_code.is_server_error() => {
            CallError::Transient(format!("HTTP {}", e.status_code))
        }
        SlackClientError::HttpError(e) => CallError::Refused(format!("HTTP {}", e.status_code)),
        // Slack answered, but not in a form we can read: the call most likely took effect, and
        // retrying would repeat it.
        SlackClientError::ProtocolError(e) => CallError::Refused(format!("unreadable answer: {e}")),
        other => CallError::Transient(other.to_string()),
    }
}

/// The Slack Web API as the bot uses it.
pub struct SlackApi {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    timeout: Duration,
    /// For the reads slack-morphism cannot make (message metadata of thread replies).
    http: reqwest::Client,
    api_url: String,
}

/// The `event_type` of the metadata on every message the bot posts under a key, so a post whose
/// answer was lost can be found instead of posted again.
pub const METADATA_EVENT_TYPE: &str = "incident_commander_message";

impl SlackApi {
    /// A client for `api_url` (e.g. `https://slack.com/api`; plain `http://` works for loopback).
    pub fn new(api_url: &str, token: &SecretString, timeout: Duration) -> anyhow::Result<SlackApi> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| anyhow::anyhow!("cannot load the system's TLS trust store for Slack: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let connector =
            SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url.trim_end_matches('/'));
        Ok(SlackApi {
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(SlackApiTokenValue(token.expose_secret().to_string())),
            timeout,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("incident-commander/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for Slack: {e}"))?,
            api_url: api_url.trim_end_matches('/').to_string(),
        })
    }

    pub fn client(&self) -> Arc<SlackClient<Connector>> {
        self.client.clone()
    }

    async fn run<T, F>(&self, fut: F) -> Result<T, CallError>
    where
        F: std::future::Future<Output = Result<T, SlackClientError>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(CallError::Transient(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// `auth.test`: who the token belongs to.
    pub async fn auth_test(&self) -> Result<BotIdentity, CallError> {
        let session = self.client.open_session(&self.token);
        let res = self.run(session.auth_test()).await?;
        let user_id = UserId::parse(res.user_id.0.clone())
            .map_err(|e| CallError::Refused(format!("auth.test returned an odd user id: {e}")))?;
        Ok(BotIdentity {
            user_id,
            bot_id: res.bot_id.and_then(|b| BotId::parse(b.0).ok()),
            team_id: res.team_id.0,
            workspace_url: Some(res.url.0.to_string()),
        })
    }

    fn content(message: &Message, incident: Option<&str>) -> Result<SlackMessageContent, CallError> {
        let mut content = SlackMessageContent::new().with_text(clip(&escape_placeholders(&message.text), TEXT_MAX));
        if !message.blocks.is_empty() {
            let json = render_blocks(message, incident);
            let blocks: Vec<SlackBlock> = serde_json::from_value(serde_json::Value::Array(json))
                .map_err(|e| CallError::Refused(format!("cannot build blocks: {e}")))?;
            content = content.with_blocks(blocks);
        }
        Ok(content)
    }

    /// `chat.postMessage`; returns the channel and the new message's ts. A message posted under
    /// `key` carries it in its metadata (see [`SlackApi::find_posted`]).
    pub async fn post_message(
        &self,
        channel: &ChannelId,
        thread_ts: Option<&str>,
        message: &Message,
        incident: Option<&str>,
        key: Option<&str>,
    ) -> Result<(ChannelId, String), CallError> {
        let session = self.client.open_session(&self.token);
        let mut content = Self::content(message, incident)?;
        if let Some(key) = key {
            content.metadata = Some(SlackMessageMetadata {
                event_type: METADATA_EVENT_TYPE.into(),
                event_payload: Some([("key".to_string(), key.to_string())].into_iter().collect()),
            });
        }
        // No link previews: the bot's links (monitors, traces, threads) would each grow a preview
        // card in the incident thread. Slack unfurls an app's text links only when asked anyway;
        // saying so keeps it that way.
        let mut req = SlackApiChatPostMessageRequest::new(channel.as_str().into(), content)
            .with_unfurl_links(false)
            .with_unfurl_media(false);
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(ts.into());
        }
        let res = self.run(session.chat_post_message(&req)).await?;
        let channel = ChannelId::parse(res.channel.0).unwrap_or_else(|_| channel.clone());
        Ok((channel, res.ts.0))
    }

    /// The ts of the bot's message posted under `key` in `channel` (among a thread's replies with
    /// `thread_ts`, else among the channel's newest 200 messages), read back with its metadata
    /// (`conversations.replies` / `conversations.history` with `include_all_metadata`). `None`
    /// when Slack does not have it: it is safe to post.
    pub async fn find_posted(
        &self,
        channel: &ChannelId,
        thread_ts: Option<&str>,
        key: &str,
    ) -> Result<Option<String>, CallError> {
        let (method, mut query) = match thread_ts {
            Some(ts) => ("conversations.replies", vec![("ts", ts.to_string())]),
            None => ("conversations.history", Vec::new()),
        };
        query.extend([
            ("channel", channel.to_string()),
            ("limit", "200".to_string()),
            ("include_all_metadata", "true".to_string()),
        ]);
        let url = url::Url::parse_with_params(&format!("{}/{method}", self.api_url), &query)
            .map_err(|e| CallError::Refused(format!("{method}: bad URL: {e}")))?;
        let sent = self
            .http
            .get(url)
            .bearer_auth(&self.token.token_value.0)
            .send()
            .await
            .map_err(|e| CallError::Transient(format!("{method}: {e}")))?;
        let status = sent.status();
        if status.as_u16() == 429 {
            let retry_after = sent
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(CallError::RateLimited { retry_after });
        }
        if status.is_server_error() {
            return Err(CallError::Transient(format!("{method}: HTTP {status}")));
        }
        let body: serde_json::Value =
            sent.json().await.map_err(|e| CallError::Transient(format!("{method}: unreadable answer: {e}")))?;
        if body["ok"] != true {
            let code = body["error"].as_str().unwrap_or("unknown_error");
            return match code {
                // No such thread: nothing was posted in it.
                "thread_not_found" => Ok(None),
                "ratelimited" => Err(CallError::RateLimited { retry_after: None }),
                c if AUTH_ERRORS.contains(&c) => Err(CallError::Auth(c.into())),
                c if TRANSIENT_ERRORS.contains(&c) => Err(CallError::Transient(c.into())),
                c => Err(CallError::Refused(format!("{method}: {c}"))),
            };
        }
        let found = body["messages"].as_array().into_iter().flatten().find(|m| {
            m["metadata"]["event_type"] == METADATA_EVENT_TYPE && m["metadata"]["event_payload"]["key"] == key
        });
        Ok(found.and_then(|m| m["ts"].as_str()).map(str::to_string))
    }

    /// `chat.update`.
    pub async fn update_message(
        &self,
        channel: &ChannelId,
        ts: &str,
        message: &Message,
        incident: Option<&str>,
    ) -> Result<(), CallError> {
        let session = self.client.open_session(&self.token);
        let req = SlackApiChatUpdateRequest::new(channel.as_str().into(), Self::content(message, incident)?, ts.into());
        self.run(session.chat_update(&req)).await.map(|_| ())
    }

    /// `chat.postEphemeral`: only `user` sees it.
    pub async fn post_ephemeral(
        &self,
        channel: &ChannelId,
        user: &UserId,
        thread_ts: Option<&str>,
        text: &str,
    ) -> Result<(), CallError> {
        let session = self.client.open_session(&self.token);
        let mut req = SlackApiChatPostEphemeralRequest::new(
            channel.as_str().into(),
            user.as_str().into(),
            SlackMessageContent::new().with_text(clip(&escape_placeholders(text), TEXT_MAX)),
        );
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(ts.into());
        }
        self.run(session.chat_post_ephemeral(&req)).await.map(|_| ())
    }

    /// `reactions.add`; an existing reaction counts as success.
    pub async fn add_reaction(&self, channel: &ChannelId, ts: &str, name: &str) -> Result<(), CallError> {
        let session = self.client.open_session(&self.token);
        let req = SlackApiReactionsAddRequest::new(channel.as_str().into(), SlackReactionName(name.into()), ts.into());
        match self.run(session.reactions_add(&req)).await {
            Err(CallError::Refused(code)) if code == "already_reacted" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `conversations.join`, for public channels the bot was not invited to.
    pub async fn join(&self, channel: &ChannelId) -> Result<(), CallError> {
        let session = self.client.open_session(&self.token);
        let req = SlackApiConversationsJoinRequest::new(channel.as_str().into());
        self.run(session.conversations_join(&req)).await.map(|_| ())
    }

    /// `conversations.create`; a taken name gets a numeric suffix.
    pub async fn create_channel(&self, name: &str) -> Result<ChannelId, CallError> {
        let session = self.client.open_session(&self.token);
        for attempt in 0..5 {
            let candidate = if attempt == 0 { name.to_string() } else { format!("{name}-{}", attempt + 1) };
            let req = SlackApiConversationsCreateRequest::new(candidate);
            match self.run(session.conversations_create(&req)).await {
                Ok(res) => {
                    return ChannelId::parse(res.channel.id.0)
                        .map_err(|e| CallError::Refused(format!("conversations.create returned an odd id: {e}")));
                }
                Err(CallError::Refused(code)) if code == "name_taken" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CallError::Refused(format!("name_taken: {name} and its variants")))
    }

    /// `conversations.invite`.
    pub async fn invite(&self, channel: &ChannelId, users: &[UserId]) -> Result<(), CallError> {
        if users.is_empty() {
            return Ok(());
        }
        let session = self.client.open_session(&self.token);
        let req = SlackApiConversationsInviteRequest::new(
            channel.as_str().into(),
            users.iter().map(|u| u.as_str().into()).collect(),
        );
        match self.run(session.conversations_invite(&req)).await {
            Err(CallError::Refused(code)) if code == "already_in_channel" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `conversations.setPurpose`.
    pub async fn set_purpose(&self, channel: &ChannelId, purpose: &str) -> Result<(), CallError> {
        let session = self.client.open_session(&self.token);
        let req = SlackApiConversationsSetPurposeRequest::new(channel.as_str().into(), purpose.to_string());
        self.run(session.conversations_set_purpose(&req)).await.map(|_| ())
    }

    /// `views.open` with a modal given as Block Kit JSON.
    pub async fn open_modal(&self, trigger_id: &str, view: serde_json::Value) -> Result<(), CallError> {
        let view: SlackView =
            serde_json::from_value(view).map_err(|e| CallError::Refused(format!("cannot build the modal: {e}")))?;
        let session = self.client.open_session(&self.token);
        let req = SlackApiViewsOpenRequest::new(SlackTriggerId(trigger_id.to_string()), view);
        self.run(session.views_open(&req)).await.map(|_| ())
    }

    /// A delayed answer through a slash command's or interaction's `response_url` (ephemeral).
    pub async fn respond(&self, url: &str, text: &str) -> Result<(), CallError> {
        let url: url::Url = url.parse().map_err(|e| CallError::Refused(format!("bad response_url: {e}")))?;
        let req = SlackApiPostWebhookMessageRequest::new(
            SlackMessageContent::new().with_text(clip(&escape_placeholders(text), TEXT_MAX)),
        );
        self.run(self.client.respond_to_event(&SlackResponseUrl(url), &req)).await.map(|_| ())
    }
}
