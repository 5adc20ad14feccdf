//! Handing events to the bot as Slack does: signed HTTP requests, or Socket Mode envelopes
//! waiting for their ack.

use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::oneshot;

use super::{APP_ID, BOT_USER_ID, Delivery, SIGNING_SECRET, SlackSandbox, TEAM_ID};

impl SlackSandbox {
    // -----------------------------------------------------------------------------------------
    // Delivery to the bot

    /// Wraps an event in an `event_callback` envelope and delivers it.
    pub async fn deliver_event(&self, event: Value) -> DeliveryResult {
        let envelope = self.envelope(event);
        self.deliver_envelope(&envelope, None).await
    }

    /// The `event_callback` envelope Slack wraps events in.
    pub fn envelope(&self, event: Value) -> Value {
        let n = {
            let mut w = self.world();
            w.next_id += 1;
            w.next_id
        };
        json!({
            "token": "sandbox-verification", "team_id": TEAM_ID, "api_app_id": APP_ID,
            "event": event, "type": "event_callback", "event_id": format!("Ev0SB{n:08}"),
            "event_time": Utc::now().timestamp(), "event_context": format!("sandbox-{n}"),
            "authorizations": [{"enterprise_id": null, "team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": true, "is_enterprise_install": false}],
            "is_ext_shared_channel": false,
        })
    }

    /// Delivers an envelope as Slack would; `retry` sets `X-Slack-Retry-Num` (HTTP) or
    /// `retry_attempt` (Socket Mode) for redeliveries.
    pub async fn deliver_envelope(&self, envelope: &Value, retry: Option<u32>) -> DeliveryResult {
        let delivery = self.world().delivery.clone();
        match delivery {
            Delivery::Http { base } => {
                self.signed_post(&format!("{base}/slack/events"), "application/json", envelope.to_string(), retry).await
            }
            Delivery::Socket => self.send_envelope("events_api", envelope.clone(), false).await,
            Delivery::None => DeliveryResult::NotDelivered,
        }
    }

    /// Signs (`v0=` HMAC-SHA256 over `v0:<ts>:<body>`) and posts a request to the bot.
    pub async fn signed_post(&self, url: &str, content_type: &str, body: String, retry: Option<u32>) -> DeliveryResult {
        let ts = Utc::now().timestamp().to_string();
        let signature = sign(SIGNING_SECRET, &ts, body.as_bytes());
        let mut req = self
            .http
            .post(url)
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", signature);
        if let Some(n) = retry {
            req = req.header("x-slack-retry-num", n.to_string()).header("x-slack-retry-reason", "http_timeout");
        }
        let started = Instant::now();
        match req.body(body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                if status == 200 {
                    DeliveryResult::Acked { body: text, ms: started.elapsed().as_millis() }
                } else {
                    DeliveryResult::Refused(status, text)
                }
            }
            Err(e) => DeliveryResult::Refused(0, e.to_string()),
        }
    }

    /// Sends a Socket Mode envelope to a live connection and waits for its ack (up to 10 s).
    pub(super) async fn send_envelope(
        &self,
        kind: &str,
        payload: Value,
        accepts_response_payload: bool,
    ) -> DeliveryResult {
        let envelope_id = format!("env-{}", self.world().id("E"));
        let mut frame = json!({
            "envelope_id": envelope_id, "payload": payload, "type": kind,
            "accepts_response_payload": accepts_response_payload,
        });
        if kind == "events_api" {
            frame["retry_attempt"] = json!(0);
            frame["retry_reason"] = json!("");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (tx, rx) = oneshot::channel();
            let sent = {
                let mut w = self.world();
                let live = w.sockets.iter().rev().find(|s| !s.dead && !s.tx.is_closed()).map(|s| s.tx.clone());
                match live {
                    Some(conn) => {
                        w.acks.insert(envelope_id.clone(), tx);
                        conn.send(frame.to_string()).is_ok()
                    }
                    None => false,
                }
            };
            let started = Instant::now();
            if sent {
                match tokio::time::timeout(Duration::from_secs(10), rx).await {
                    Ok(Ok(ack)) => {
                        let ms = started.elapsed().as_millis();
                        self.world().socket_acks.push((envelope_id.clone(), ms));
                        return DeliveryResult::Acked { body: ack.to_string(), ms };
                    }
                    _ => {
                        self.world().acks.remove(&envelope_id);
                        if Instant::now() > deadline {
                            return DeliveryResult::Refused(0, "no ack within 10s".into());
                        }
                        continue;
                    }
                }
            }
            // No live connection: wait for the bot to (re)connect.
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || tokio::time::timeout(remaining, self.connected.notified()).await.is_err() {
                return DeliveryResult::Refused(0, "no Socket Mode connection".into());
            }
        }
    }
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryResult {
    /// HTTP 200 (with the response body) or a Socket Mode ack (with its payload), and how long it took.
    Acked { body: String, ms: u128 },
    /// Another status, or a transport failure (status 0).
    Refused(u16, String),
    /// The bot is not connected.
    NotDelivered,
}

impl DeliveryResult {
    pub fn is_acked(&self) -> bool {
        matches!(self, DeliveryResult::Acked { .. })
    }
}

/// Slack's request signature.
pub fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}
