//! Socket Mode ingress: websocket connections to Slack that carry the same payloads as the HTTP
//! Events API, read as raw JSON.
//!
//! Why not slack-morphism's listener: it hands its callbacks typed events, and its types drop
//! fields Slack sends and the bot needs: an attachment's `title_link` (Datadog's monitor link, so
//! a Socket Mode bot lost the monitor and its fingerprint), `pretext`, unfurl flags, a nested
//! message's thread fields. This client keeps every frame as Slack sent it, so both ingresses feed
//! the processor identical payloads. The Web API call that opens a connection
//! (`apps.connections.open`) still goes through slack-morphism.
//!
//! The protocol, as seen against real Slack (`slack/socket-mode/` in the reference folder): the
//! server says `hello`, then sends envelopes `{"envelope_id", "type": "events_api" |
//! "slash_commands" | "interactive", "payload", "accepts_response_payload", "retry_attempt"}`; the
//! client acknowledges each with `{"envelope_id"}`. Here the ack goes out only once the event is
//! on disk: an envelope that could not be stored is not acknowledged, and Slack redelivers it.
//! `disconnect` frames (`warning`, `refresh_requested`) announce the end of a connection: a fresh
//! one is opened before the old one closes. Slack pings about every 10 s; tungstenite answers.
//! A watchdog replaces a connection on which nothing at all (not even a ping) arrived for the
//! silence limit: a socket that stays open but silently stops delivering.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use slack_morphism::prelude::{SlackApiAppsConnectionOpenRequest, SlackApiToken, SlackApiTokenValue};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::client::SlackApi;
use super::ingress::{command_dedupe_key, interaction_dedupe_key, log_acceptance, slash_command_from_form};
use crate::app::inbox::Inbox;
use crate::app::inbox::{InboxEvent, RawJson};
use crate::app::metrics::Metrics;

/// Settings for Socket Mode.
#[derive(Debug, Clone)]
pub struct SocketSettings {
    pub app_token: SecretString,
    /// Replace a connection when nothing (no frame, no ping) has arrived on it for this long.
    pub silence_limit: Duration,
    /// Parallel connections (Slack delivers each envelope on one of them; up to 10 per app).
    pub connections: u32,
    /// First pause after a failed connection attempt, in seconds; it doubles (with jitter) up to
    /// [`RECONNECT_MAX`].
    pub reconnect_seconds: u64,
}

/// Longest pause between connection attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(60);

/// Runs Socket Mode until shutdown: keeps `connections` connections open, replacing each one
/// that Slack asks to refresh, that drops, or that goes silent.
pub async fn run(
    api: Arc<SlackApi>,
    settings: SocketSettings,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let tasks = tokio_util::task::TaskTracker::new();
    for n in 0..settings.connections.max(1) {
        let link =
            Link { api: api.clone(), settings: settings.clone(), inbox: inbox.clone(), metrics: metrics.clone() };
        tasks.spawn(link.keep_open(n, shutdown.clone()));
    }
    tasks.close();
    tasks.wait().await;
    info!("Socket Mode stopped");
}

/// One of the bot's connections, reopened for as long as the bot runs.
#[derive(Clone)]
struct Link {
    api: Arc<SlackApi>,
    settings: SocketSettings,
    inbox: Inbox,
    metrics: Arc<Metrics>,
}

/// How a connection ended.
enum Ended {
    /// Slack announced the end (`disconnect`) or the socket closed or failed: open another.
    Reconnect(String),
    /// Nothing arrived for the silence limit.
    Silent,
    /// Slack turned Socket Mode off for the app (`link_disabled`).
    Disabled,
    Shutdown,
}

impl Link {
    async fn keep_open(self, n: u32, shutdown: CancellationToken) {
        let mut failures = 0u32;
        // A replacement opened before the previous connection closed, so no envelope falls in a
        // gap: the old one is drained in the background.
        let draining = tokio_util::task::TaskTracker::new();
        while !shutdown.is_cancelled() {
            let socket = match self.open().await {
                Ok(socket) => {
                    failures = 0;
                    socket
                }
                Err(e) => {
                    failures += 1;
                    let base = Duration::from_secs(self.settings.reconnect_seconds.max(1));
                    let pause = crate::slack::egress::backoff(failures, base, RECONNECT_MAX);
                    warn!(connection = n, error = e.as_str(), ?pause, "cannot open a Socket Mode connection; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            };
            let (ended, rest) = self.serve(n, socket, &shutdown).await;
            match ended {
                Ended::Shutdown => break,
                Ended::Disabled => {
                    error!(connection = n, "Slack disabled Socket Mode for this app (link_disabled); not reconnecting");
                    break;
                }
                Ended::Silent => {
                    self.metrics.socket_watchdog_reconnects.inc();
                    warn!(
                        connection = n,
                        limit_ms = self.settings.silence_limit.as_millis() as u64,
                        "Socket Mode silent past the limit; reconnecting"
                    );
                }
                Ended::Reconnect(why) => {
                    info!(connection = n, why = why.as_str(), "Socket Mode connection ending; opening another")
                }
            }
            if let Some(old) = rest {
                // Keep reading what Slack still sends on the old connection until it closes.
                let me = self.clone();
                let stop = shutdown.clone();
                draining.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), me.serve(n, old, &stop)).await;
                });
            }
        }
        draining.close();
        draining.wait().await;
    }

    /// `apps.connections.open`, then the websocket.
    async fn open(&self) -> Result<Socket, String> {
        let token = SlackApiToken::new(SlackApiTokenValue(self.settings.app_token.expose_secret().to_string()));
        let client = self.api.client();
        let session = client.open_session(&token);
        let opened = tokio::time::timeout(
            Duration::from_secs(10),
            session.apps_connections_open(&SlackApiAppsConnectionOpenRequest::new()),
        )
        .await
        .map_err(|_| "apps.connections.open did not answer within 10 s".to_string())?
        .map_err(|e| format!("apps.connections.open: {e}"))?;
        let url = opened.url.0.to_string();
        let (socket, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url.as_str()))
            .await
            .map_err(|_| "the websocket did not open within 10 s".to_string())?
            .map_err(|e| format!("cannot open the websocket: {e}"))?;
        Ok(socket)
    }

    /// Reads one connection until it ends. When Slack announced the end, the socket is handed
    /// back so its last envelopes can still be read while a fresh connection takes over.
    async fn serve(&self, n: u32, mut socket: Socket, shutdown: &CancellationToken) -> (Ended, Option<Socket>) {
        let mut last = Instant::now();
        let check_every = (self.settings.silence_limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        loop {
            let frame = tokio::select! {
                frame = socket.next() => frame,
                _ = tokio::time::sleep(check_every) => {
                    if last.elapsed() >= self.settings.silence_limit {
                        let _ = socket.close(None).await;
                        return (Ended::Silent, None);
                    }
                    continue;
                }
                _ = shutdown.cancelled() => {
                    let _ = socket.close(None).await;
                    return (Ended::Shutdown, None);
                }
            };
            last = Instant::now();
            let text = match frame {
                Some(Ok(WsMessage::Text(text))) => text,
                Some(Ok(WsMessage::Close(close))) => {
                    return (Ended::Reconnect(format!("closed by Slack: {close:?}")), None);
                }
                Some(Ok(_)) => continue, // pings (answered by tungstenite), pongs, binary
                Some(Err(e)) => return (Ended::Reconnect(format!("websocket error: {e}")), None),
                None => return (Ended::Reconnect("the websocket ended".into()), None),
            };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                warn!(connection = n, "a Socket Mode frame that is not JSON; ignored");
                continue;
            };
            match frame["type"].as_str() {
                Some("hello") => {
                    let host = frame.pointer("/debug_info/host").and_then(|h| h.as_str()).unwrap_or_default();
                    info!(
                        connection = n,
                        connections = frame["num_connections"].as_u64(),
                        host,
                        "Socket Mode connected"
                    )
                }
                Some("disconnect") => {
                    let reason = frame["reason"].as_str().unwrap_or_default().to_string();
                    if reason == "link_disabled" {
                        return (Ended::Disabled, None);
                    }
                    return (Ended::Reconnect(format!("disconnect: {reason}")), Some(socket));
                }
                _ => {
                    let Some(envelope_id) = frame["envelope_id"].as_str() else {
                        info!(connection = n, kind = frame["type"].as_str(), "Socket Mode frame not used");
                        continue;
                    };
                    match self.accept(&frame).await {
                        Ok(()) => {
                            let ack = json!({"envelope_id": envelope_id}).to_string();
                            if let Err(e) = socket.send(WsMessage::Text(ack.into())).await {
                                return (Ended::Reconnect(format!("cannot acknowledge: {e}")), None);
                            }
                        }
                        // Not acknowledged: Slack delivers it again.
                        Err(e) => error!(connection = n, envelope_id, error = e.as_str(), "envelope not accepted"),
                    }
                }
            }
        }
    }

    /// Puts an envelope's payload in the inbox, as the HTTP ingress does for the same payload.
    async fn accept(&self, frame: &Value) -> Result<(), String> {
        let payload = &frame["payload"];
        let retry = frame["retry_attempt"].as_u64().unwrap_or(0).to_string();
        let (event, key, what) = match frame["type"].as_str() {
            Some("events_api") => {
                let event_id = payload["event_id"].as_str().ok_or("an events_api envelope without event_id")?;
                if !payload["event"].is_object() {
                    return Err("an events_api envelope without an event".into());
                }
                let event =
                    InboxEvent::SlackEvent { event_id: event_id.to_string(), event: RawJson::of(&payload["event"]) };
                (event, Some(format!("slack-event:{event_id}")), "event")
            }
            Some("slash_commands") => {
                let fields: Vec<(String, String)> = payload
                    .as_object()
                    .ok_or("a slash_commands envelope without a payload")?
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect();
                let command = slash_command_from_form(&fields)?;
                let key = command_dedupe_key(&command);
                (InboxEvent::SlashCommand { command }, key, "slash command")
            }
            Some("interactive") => {
                if !payload.is_object() {
                    return Err("an interactive envelope without a payload".into());
                }
                let key = interaction_dedupe_key(payload);
                (InboxEvent::Interaction { payload: payload.clone() }, key, "interaction")
            }
            other => {
                // Acknowledged so Slack does not redeliver what the bot will never use.
                info!(kind = other, "Socket Mode envelope type not used by the bot");
                return Ok(());
            }
        };
        let acceptance = self.inbox.accept(event, key.as_deref()).await.map_err(|e| e.to_string())?;
        log_acceptance(what, key.as_deref(), acceptance, &retry);
        Ok(())
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
