//! A local Slack workspace on 127.0.0.1 that speaks Slack's wire formats.
//!
//! It serves the Web API methods the bot uses under `/api/<method>` (JSON or form bodies, GET or
//! POST, bearer tokens), Socket Mode over a websocket at `/socket`, and response URLs at
//! `/respond/<n>`. It keeps a world of users, channels, messages, threads and reactions, applies
//! Slack's per-channel and per-method rate limits with 429 + `Retry-After`, injects faults, and
//! records every call. It delivers events to the bot as Slack does: signed HTTP requests to the
//! bot's Events API, command and interactivity URLs, or envelopes over Socket Mode.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Notify, mpsc, oneshot};

use super::secondary::{self, SecondaryEvents};

/// Ids of the sandbox workspace and its bot.
pub const TEAM_ID: &str = "T0SANDBOX";
pub const APP_ID: &str = "A0INCIDENT";
pub const BOT_USER_ID: &str = "U0INCBOT01";
pub const BOT_ID: &str = "B0INCBOT01";
pub const BOT_TOKEN: &str = "xoxb-sandbox-bot-token";
pub const APP_TOKEN: &str = "xapp-sandbox-app-token";
pub const SIGNING_SECRET: &str = "sandbox-signing-secret-0123456789";
/// Datadog's Slack app as it appears on its messages.
pub const DATADOG_BOT_ID: &str = "B0DATADOG1";
pub const DATADOG_APP_ID: &str = "A0DATADOG1";

/// Rate limits the sandbox enforces, like Slack's.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// chat.postMessage per channel: at most `burst` within any `per` window.
    pub post_per_channel: (u32, Duration),
    /// Every other method: at most this many per minute (Slack's Tier 3 is about 50).
    pub per_method_per_minute: u32,
}

impl SandboxLimits {
    /// Slack's documented shape: about one message per second per channel (short bursts
    /// tolerated) and Tier 3 for the rest.
    pub const SLACK: SandboxLimits =
        SandboxLimits { post_per_channel: (3, Duration::from_secs(3)), per_method_per_minute: 50 };
    /// For fast tests: never limits a normal test's traffic.
    pub const RELAXED: SandboxLimits =
        SandboxLimits { post_per_channel: (10_000, Duration::from_secs(1)), per_method_per_minute: 100_000 };
}

/// A fault to inject into the next calls of a method.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 429 with this `Retry-After` (seconds); `None` omits the header, as Slack sometimes does.
    RateLimited(Option<u64>),
    /// An HTTP status such as 500 or 503.
    Status(u16),
    /// Answer normally, but only after this delay.
    Delay(Duration),
    /// An API error (`{"ok": false, "error": ...}`), e.g. `invalid_auth`.
    ApiError(String),
}

/// One Web API call, as the sandbox saw and answered it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub at: chrono::DateTime<Utc>,
    /// Milliseconds since the sandbox started, for pacing checks.
    pub elapsed_ms: u128,
    pub method: String,
    pub params: Value,
    pub status: u16,
    pub response: Value,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SlackUser {
    pub id: String,
    pub name: String,
    pub real_name: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
    pub is_private: bool,
    pub purpose: String,
    pub pins: Vec<String>,
}

/// A message in the world.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub user: Option<String>,
    pub bot_id: Option<String>,
    pub text: String,
    pub blocks: Value,
    pub attachments: Value,
    /// reaction name -> users, in order.
    pub reactions: Vec<(String, Vec<String>)>,
    pub edits: u32,
    /// The whole event as delivered (for bot posts made through the sandbox).
    pub raw: Value,
}

impl StoredMessage {
    /// A new, unedited message as the event or API object `raw` describes it.
    fn from_raw(channel: &str, raw: Value) -> Self {
        let field = |k: &str| raw[k].as_str().map(String::from);
        StoredMessage {
            channel: channel.into(),
            ts: field("ts").unwrap_or_default(),
            thread_ts: field("thread_ts"),
            user: field("user"),
            bot_id: field("bot_id"),
            text: field("text").unwrap_or_default(),
            blocks: raw["blocks"].clone(),
            attachments: raw["attachments"].clone(),
            reactions: Vec::new(),
            edits: 0,
            raw,
        }
    }
}

/// An ephemeral message or response-URL answer only one person saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Private {
    pub user: Option<String>,
    pub channel: Option<String>,
    pub text: String,
    pub via: &'static str,
}

/// How the sandbox hands events to the bot.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Signed HTTP requests to the bot at this base URL (`http://127.0.0.1:port`).
    Http { base: String },
    /// Envelopes over the Socket Mode websocket.
    Socket,
    /// Not connected yet: events are recorded but not delivered.
    None,
}

/// Slack pings each Socket Mode connection about every 10 s (seen in real client logs).
pub const SOCKET_PING_EVERY: Duration = Duration::from_secs(10);

/// Marker sent through a connection's queue to black-hole it.
const SILENCE: &str = "\u{0}silence";

struct SocketConn {
    id: u64,
    tx: mpsc::UnboundedSender<String>,
    /// A black-holed connection stays open but carries nothing, in either direction.
    dead: bool,
}

struct World {
    started: Instant,
    users: Vec<SlackUser>,
    channels: Vec<Channel>,
    messages: Vec<StoredMessage>,
    privates: Vec<Private>,
    calls: Vec<CallRecord>,
    faults: HashMap<String, VecDeque<Fault>>,
    limits: SandboxLimits,
    post_times: HashMap<String, VecDeque<Instant>>,
    method_times: HashMap<String, VecDeque<Instant>>,
    next_ts: u64,
    next_id: u64,
    delivery: Delivery,
    sockets: Vec<SocketConn>,
    acks: HashMap<String, oneshot::Sender<Value>>,
    /// Envelopes delivered over Socket Mode, with the time to ack in ms.
    socket_acks: Vec<(String, u128)>,
    connections_opened: u64,
    bot_token_valid: bool,
    /// Modals opened with views.open: (view id, trigger id, view).
    views: Vec<(String, String, Value)>,
    /// Message timestamps count up from here (seconds), so they can match the bot's clock.
    epoch: i64,
    /// The form fields of the last slash command, for redeliveries.
    last_slash: Option<Vec<(&'static str, String)>>,
    /// Which secondary events are sent (see [`super::secondary`]).
    secondary: SecondaryEvents,
    /// Secondary events waiting for the delivery task, in order.
    queue: Option<mpsc::UnboundedSender<Value>>,
    /// Secondary events queued and not yet delivered.
    queued: usize,
    /// How often Socket Mode connections are pinged (Slack: about every 10 s).
    ping_every: Duration,
    /// Pongs received from the bot.
    pongs: u64,
}

impl World {
    /// Queues a secondary event for delivery after whatever caused it. Dropped while the bot is
    /// not connected.
    fn enqueue(&mut self, event: Value) {
        if matches!(self.delivery, Delivery::None) {
            return;
        }
        if let Some(queue) = &self.queue
            && queue.send(event).is_ok()
        {
            self.queued += 1;
        }
    }

    /// A reply `reply_ts` by `user` landed in the thread of `parent_ts`: the parent's thread
    /// bookkeeping changes, and Slack tells the app so.
    fn after_reply(&mut self, channel: &str, parent_ts: &str, user: &str, reply_ts: &str) {
        let Some(parent) = self.message_mut(channel, parent_ts) else { return };
        let before = parent.raw.clone();
        let now = secondary::with_reply(&before, user, reply_ts);
        parent.raw = now.clone();
        let replies: Vec<(String, String)> = self
            .messages
            .iter()
            .filter(|m| m.channel == channel && m.thread_ts.as_deref() == Some(parent_ts) && m.ts != parent_ts)
            .map(|m| (m.user.clone().or_else(|| m.bot_id.clone()).unwrap_or_default(), m.ts.clone()))
            .collect();
        if self.secondary.thread_parent_changed {
            let ts = self.ts();
            self.enqueue(secondary::message_changed(channel, &ts, &now, &before));
        }
        if self.secondary.message_replied {
            let ts = self.ts();
            self.enqueue(secondary::message_replied(channel, &ts, &now, &replies));
        }
    }

    /// Slack unfurls the links in a new message's text: the previews are added to the message
    /// and the app is told with a `message_changed`.
    fn unfurl_links(&mut self, channel: &str, ts: &str) {
        if !self.secondary.unfurls {
            return;
        }
        let Some(text) = self.message_mut(channel, ts).map(|m| m.text.clone()) else { return };
        let links = secondary::links_in(&text);
        if links.is_empty() {
            return;
        }
        let ids: Vec<u64> = links.iter().map(|_| self.next_id()).collect();
        let Some(message) = self.message_mut(channel, ts) else { return };
        let before = message.raw.clone();
        let mut attachments = message.raw["attachments"].as_array().cloned().unwrap_or_default();
        attachments.extend(links.iter().zip(ids).map(|(url, id)| secondary::unfurl(url, id)));
        message.raw["attachments"] = Value::Array(attachments);
        message.attachments = message.raw["attachments"].clone();
        let now = message.raw.clone();
        let event_ts = self.ts();
        self.enqueue(secondary::message_changed(channel, &event_ts, &now, &before));
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn ts(&mut self) -> String {
        self.next_ts += 1;
        format!("{}.{:06}", self.epoch + (self.next_ts / 1000) as i64, self.next_ts % 1000 * 100)
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}0SB{:05}", self.next_id)
    }

    fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    fn channel_mut(&mut self, id: &str) -> Option<&mut Channel> {
        self.channels.iter_mut().find(|c| c.id == id)
    }

    fn message_mut(&mut self, channel: &str, ts: &str) -> Option<&mut StoredMessage> {
        self.messages.iter_mut().find(|m| m.channel == channel && m.ts == ts)
    }

    fn channel_json(&self, c: &Channel) -> Value {
        json!({
            "id": c.id, "name": c.name, "name_normalized": c.name, "is_channel": !c.is_private,
            "is_group": c.is_private, "is_im": false, "is_private": c.is_private, "is_archived": false,
            "is_member": c.members.iter().any(|m| m == BOT_USER_ID), "created": 1_700_000_000,
            "creator": BOT_USER_ID, "num_members": c.members.len(),
            "purpose": {"value": c.purpose, "creator": "", "last_set": 0},
            "topic": {"value": "", "creator": "", "last_set": 0},
        })
    }
}

/// The sandbox: a handle to the running server and its world.
#[derive(Clone)]
pub struct SlackSandbox {
    pub addr: SocketAddr,
    world: Arc<Mutex<World>>,
    /// Notified whenever a Socket Mode connection opens.
    connected: Arc<Notify>,
    http: reqwest::Client,
    /// Notified whenever a secondary event has been delivered.
    settled: Arc<Notify>,
}

struct AppState {
    world: Arc<Mutex<World>>,
    connected: Arc<Notify>,
    addr: SocketAddr,
}

type Shared = Arc<AppState>;

impl SlackSandbox {
    /// Starts the sandbox on 127.0.0.1 with a free port.
    pub async fn start(limits: SandboxLimits) -> std::io::Result<SlackSandbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(Mutex::new(World {
            started: Instant::now(),
            users: vec![SlackUser {
                id: BOT_USER_ID.into(),
                name: "incident-commander".into(),
                real_name: "incident-commander".into(),
            }],
            channels: Vec::new(),
            messages: Vec::new(),
            privates: Vec::new(),
            calls: Vec::new(),
            faults: HashMap::new(),
            limits,
            post_times: HashMap::new(),
            method_times: HashMap::new(),
            next_ts: 0,
            next_id: 0,
            delivery: Delivery::None,
            sockets: Vec::new(),
            acks: HashMap::new(),
            socket_acks: Vec::new(),
            connections_opened: 0,
            bot_token_valid: true,
            views: Vec::new(),
            epoch: 1_700_000_000,
            last_slash: None,
            secondary: SecondaryEvents::default(),
            queue: None,
            queued: 0,
            ping_every: SOCKET_PING_EVERY,
            pongs: 0,
        }));
        let connected = Arc::new(Notify::new());
        let state = Arc::new(AppState { world: world.clone(), connected: connected.clone(), addr });
        let router = Router::new()
            .route("/api/{method}", any(web_api))
            .route("/socket", get(socket_upgrade))
            .route("/respond/{id}", post(respond))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("HTTP client builds");
        let sandbox = SlackSandbox { addr, world, connected, http, settled: Arc::new(Notify::new()) };
        // Secondary events go out one at a time, in the order they happened, after whatever
        // caused them.
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        sandbox.world().queue = Some(tx);
        let driver = sandbox.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let result = driver.deliver_event(event).await;
                if !result.is_acked() {
                    tracing::debug!(?result, "a secondary event was not accepted");
                }
                driver.world().queued -= 1;
                driver.settled.notify_waiters();
            }
        });
        Ok(sandbox)
    }

    /// Chooses which secondary events (unfurls, thread-parent updates, the app's own messages)
    /// the sandbox sends; all are on by default.
    pub fn set_secondary(&self, secondary: SecondaryEvents) {
        self.world().secondary = secondary;
    }

    /// Secondary events queued and not delivered yet.
    pub fn pending_events(&self) -> usize {
        self.world().queued
    }

    /// Waits until every queued secondary event has been delivered.
    pub async fn settle(&self) {
        loop {
            let settled = self.settled.notified();
            if self.pending_events() == 0 {
                return;
            }
            settled.await;
        }
    }

    /// The base URL the bot uses as `SLACK_API_URL`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The bot's Slack settings for this sandbox in HTTP mode (events signed with
    /// [`SIGNING_SECRET`]); set `socket` on the result for Socket Mode.
    pub fn bot_settings(&self, limits: crate::slack::egress::EgressLimits) -> crate::startup::SlackSettings {
        use secrecy::SecretString;
        crate::startup::SlackSettings {
            api_url: self.api_url(),
            bot_token: SecretString::from(BOT_TOKEN),
            signing_secret: Some(SecretString::from(SIGNING_SECRET)),
            socket: None,
            limits,
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("sandbox world lock")
    }

    // -----------------------------------------------------------------------------------------
    // The world

    pub fn add_user(&self, id: &str, name: &str) {
        self.world().users.push(SlackUser { id: id.into(), name: name.into(), real_name: name.into() });
    }

    /// Adds a channel with these members. Include [`BOT_USER_ID`] for a channel the bot is in.
    pub fn add_channel(&self, id: &str, name: &str, members: &[&str]) {
        self.world().channels.push(Channel {
            id: id.into(),
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            is_private: id.starts_with('G'),
            purpose: String::new(),
            pins: Vec::new(),
        });
    }

    /// Message timestamps from now on start at `secs` (Unix seconds). Moving it backwards is
    /// ignored, so timestamps keep increasing.
    pub fn set_epoch(&self, secs: i64) {
        let mut w = self.world();
        let current = w.epoch + (w.next_ts / 1000) as i64;
        if secs > current {
            w.epoch = secs;
            w.next_ts = 0;
        }
    }

    pub fn set_limits(&self, limits: SandboxLimits) {
        self.world().limits = limits;
    }

    pub fn set_delivery(&self, delivery: Delivery) {
        self.world().delivery = delivery;
    }

    /// Makes the bot token invalid (`invalid_auth`), as a revoked token would be.
    pub fn revoke_bot_token(&self) {
        self.world().bot_token_valid = false;
    }

    /// The next `times` calls of `method` get `fault`.
    pub fn inject(&self, method: &str, fault: Fault, times: usize) {
        let mut w = self.world();
        let queue = w.faults.entry(method.to_string()).or_default();
        for _ in 0..times {
            queue.push_back(fault.clone());
        }
    }

    /// Drops every injected fault not yet used.
    pub fn clear_faults(&self) {
        self.world().faults.clear();
    }

    /// Puts a person's message in the world without delivering any event for it (tests that
    /// deliver hand-made envelopes, e.g. retries of one event, use it).
    pub fn add_message(&self, user: &str, channel: &str, text: &str, thread_ts: Option<&str>) -> String {
        let ts = self.world().ts();
        let mut raw = json!({"type": "message", "user": user, "text": text, "ts": ts, "channel": channel});
        if let Some(t) = thread_ts {
            raw["thread_ts"] = json!(t);
        }
        self.store_message(StoredMessage::from_raw(channel, raw));
        ts
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        self.world().calls.clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<CallRecord> {
        self.world().calls.iter().filter(|c| c.method == method).cloned().collect()
    }

    pub fn messages(&self) -> Vec<StoredMessage> {
        self.world().messages.clone()
    }

    pub fn message(&self, channel: &str, ts: &str) -> Option<StoredMessage> {
        self.world().messages.iter().find(|m| m.channel == channel && m.ts == ts).cloned()
    }

    /// Messages in a thread (the parent first), as people see them.
    pub fn thread(&self, channel: &str, parent_ts: &str) -> Vec<StoredMessage> {
        self.world()
            .messages
            .iter()
            .filter(|m| m.channel == channel && (m.ts == parent_ts || m.thread_ts.as_deref() == Some(parent_ts)))
            .cloned()
            .collect()
    }

    pub fn channels(&self) -> Vec<Channel> {
        self.world().channels.clone()
    }

    pub fn users(&self) -> Vec<SlackUser> {
        self.world().users.clone()
    }

    pub fn privates(&self) -> Vec<Private> {
        self.world().privates.clone()
    }

    /// Modals the bot opened: (view id, trigger id, view JSON).
    pub fn views(&self) -> Vec<(String, String, Value)> {
        self.world().views.clone()
    }

    /// A person fills in and submits a modal the bot opened: `values` maps block ids to the
    /// text typed in their input.
    pub async fn submit_view(&self, user: &str, view_id: &str, values: &[(&str, &str)]) -> DeliveryResult {
        let Some((_, _, view)) = self.world().views.iter().find(|(id, _, _)| id == view_id).cloned() else {
            return DeliveryResult::Refused(404, "no such view".into());
        };
        let mut state = serde_json::Map::new();
        for (block, text) in values {
            state.insert(block.to_string(), json!({ *block: {"type": "plain_text_input", "value": text} }));
        }
        let mut v = view.clone();
        v["id"] = json!(view_id);
        v["team_id"] = json!(TEAM_ID);
        v["state"] = json!({"values": state});
        v["hash"] = json!("1700000000.sandbox");
        v["app_id"] = json!(APP_ID);
        v["bot_id"] = json!(BOT_ID);
        let n = self.world().id("T");
        let payload = json!({
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": "sandbox"},
            "user": {"id": user, "username": user, "name": user, "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": "sandbox-verification",
            "trigger_id": format!("{n}.sandboxsubmit"),
            "view": v,
            "response_urls": [],
        });
        self.deliver_interaction(payload).await
    }

    /// Delivers an interaction payload (a click, a modal submission) the way Slack does: a signed
    /// form post to `/slack/interactions`, or an `interactive` Socket Mode envelope.
    async fn deliver_interaction(&self, payload: Value) -> DeliveryResult {
        let delivery = self.world().delivery.clone();
        match delivery {
            Delivery::Http { base } => {
                let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form encodes");
                self.signed_post(&format!("{base}/slack/interactions"), "application/x-www-form-urlencoded", body, None)
                    .await
            }
            Delivery::Socket => self.send_envelope("interactive", payload, true).await,
            Delivery::None => DeliveryResult::NotDelivered,
        }
    }

    /// Socket Mode envelopes acknowledged, with milliseconds from send to ack.
    pub fn socket_acks(&self) -> Vec<(String, u128)> {
        self.world().socket_acks.clone()
    }

    /// How many Socket Mode connections the bot has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.world().connections_opened
    }

    pub fn live_connections(&self) -> usize {
        self.world().sockets.iter().filter(|s| !s.dead && !s.tx.is_closed()).count()
    }

    // -----------------------------------------------------------------------------------------
    // People acting in the workspace

    fn store_message(&self, msg: StoredMessage) {
        self.world().messages.push(msg);
    }

    /// A person posts a message (in a thread when `thread_ts` is set). Returns its ts and the
    /// delivery result.
    pub async fn post_as_user(
        &self,
        user: &str,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> (String, DeliveryResult) {
        let ts = self.world().ts();
        let mut event = json!({
            "type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
            "event_ts": ts, "channel_type": "channel", "team": TEAM_ID,
            "client_msg_id": format!("cm-{ts}"),
        });
        if let Some(t) = thread_ts {
            event["thread_ts"] = json!(t);
            let parent = self.message(channel, t);
            event["parent_user_id"] = json!(parent.and_then(|m| m.user.or(m.bot_id)).unwrap_or_default());
        }
        self.store_message(StoredMessage::from_raw(channel, event.clone()));
        let mut results = vec![self.deliver_event(event).await];
        {
            // What Slack sends next: the parent's thread update, and previews of the links (a
            // person's links always unfurl).
            let mut w = self.world();
            if let Some(parent) = thread_ts {
                w.after_reply(channel, parent, user, &ts);
            }
            w.unfurl_links(channel, &ts);
        }
        if text.contains(&format!("<@{BOT_USER_ID}>")) {
            let mut mention = json!({
                "type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel,
                "event_ts": ts, "team": TEAM_ID,
            });
            if let Some(t) = thread_ts {
                mention["thread_ts"] = json!(t);
            }
            results.push(self.deliver_event(mention).await);
        }
        (ts, results.into_iter().last().expect("at least one delivery"))
    }

    /// An integration (e.g. Datadog's app) posts a bot message with this content
    /// (`text`, `attachments`, `blocks`, `username`, `bot_profile` ...). Returns its ts. As on
    /// Slack, links in an app's text unfurl only when the content says `"unfurl_links": true`
    /// (a request flag, not part of the message).
    pub async fn post_as_bot(
        &self,
        bot_id: &str,
        app_id: &str,
        channel: &str,
        content: Value,
    ) -> (String, DeliveryResult) {
        let ts = self.world().ts();
        let mut event = json!({
            "type": "message", "subtype": "bot_message", "bot_id": bot_id, "app_id": app_id,
            "ts": ts, "channel": channel, "event_ts": ts, "channel_type": "channel", "team": TEAM_ID,
        });
        let mut unfurl = false;
        if let (Value::Object(target), Value::Object(extra)) = (&mut event, content) {
            for (k, v) in extra {
                if k == "unfurl_links" {
                    unfurl = v.as_bool() == Some(true);
                    continue;
                }
                target.insert(k, v);
            }
        }
        self.store_message(StoredMessage::from_raw(channel, event.clone()));
        let result = self.deliver_event(event).await;
        if unfurl {
            self.world().unfurl_links(channel, &ts);
        }
        (ts, result)
    }

    /// Someone deletes a message (`message_deleted`, as in `real-captures/message_deleted.json`).
    /// A parent with replies stays as a tombstone, as Slack shows it; any other message goes.
    pub async fn delete_message(&self, channel: &str, ts: &str) -> DeliveryResult {
        let (previous, event_ts) = {
            let mut w = self.world();
            let has_replies =
                w.messages.iter().any(|m| m.channel == channel && m.thread_ts.as_deref() == Some(ts) && m.ts != ts);
            let Some(at) = w.messages.iter().position(|m| m.channel == channel && m.ts == ts) else {
                return DeliveryResult::Refused(404, "no such message".into());
            };
            let previous = w.messages[at].raw.clone();
            if has_replies {
                let m = &mut w.messages[at];
                m.text = "This message was deleted.".into();
                m.attachments = Value::Null;
                m.blocks = Value::Null;
                m.raw = json!({"type": "message", "subtype": "tombstone", "hidden": true, "text": m.text,
                               "ts": ts, "thread_ts": ts, "reply_count": previous["reply_count"]});
            } else {
                w.messages.remove(at);
            }
            (previous, w.ts())
        };
        self.deliver_event(secondary::message_deleted(channel, &event_ts, &previous)).await
    }

    /// An integration edits its message (`message_changed`), e.g. Datadog updating an alert.
    pub async fn edit_bot_message(&self, channel: &str, ts: &str, content: Value) -> DeliveryResult {
        let (previous, mut message) = {
            let mut w = self.world();
            let Some(m) = w.message_mut(channel, ts) else {
                return DeliveryResult::Refused(404, "no such message".into());
            };
            let previous = m.raw.clone();
            let mut updated = m.raw.clone();
            if let (Value::Object(target), Value::Object(extra)) = (&mut updated, content) {
                for (k, v) in extra {
                    target.insert(k, v);
                }
            }
            m.raw = updated.clone();
            m.text = updated["text"].as_str().unwrap_or_default().into();
            m.attachments = updated["attachments"].clone();
            m.blocks = updated["blocks"].clone();
            m.edits += 1;
            (previous, updated)
        };
        let event_ts = self.world().ts();
        message["edited"] = json!({"user": message["bot_id"], "ts": event_ts});
        let event = json!({
            "type": "message", "subtype": "message_changed", "hidden": true, "channel": channel,
            "ts": event_ts, "event_ts": event_ts, "channel_type": "channel",
            "message": message, "previous_message": previous,
        });
        self.deliver_event(event).await
    }

    /// A person reacts to a message.
    pub async fn react(&self, user: &str, channel: &str, ts: &str, emoji: &str) -> DeliveryResult {
        let item_user = {
            let mut w = self.world();
            let Some(m) = w.message_mut(channel, ts) else {
                return DeliveryResult::Refused(404, "no such message".into());
            };
            match m.reactions.iter_mut().find(|(name, _)| name == emoji) {
                Some((_, users)) => users.push(user.into()),
                None => m.reactions.push((emoji.into(), vec![user.into()])),
            }
            m.user.clone().or_else(|| m.bot_id.clone()).unwrap_or_default()
        };
        let event_ts = self.world().ts();
        self.deliver_event(json!({
            "type": "reaction_added", "user": user, "reaction": emoji, "item_user": item_user,
            "item": {"type": "message", "channel": channel, "ts": ts}, "event_ts": event_ts,
        }))
        .await
    }

    /// Delivers the last slash command again, byte for byte (same trigger id), as a proxy retry
    /// or a Socket Mode redelivery would.
    pub async fn resend_last_slash(&self) -> DeliveryResult {
        let Some(fields) = self.world().last_slash.clone() else {
            return DeliveryResult::Refused(0, "no slash command was sent yet".into());
        };
        self.send_slash(fields).await
    }

    /// A person runs `/incident <text>` in a channel. The answer arrives at a response URL the
    /// sandbox serves; see [`SlackSandbox::privates`].
    pub async fn slash(&self, user: &str, channel: &str, text: &str) -> DeliveryResult {
        let (n, channel_name, user_name) = {
            let mut w = self.world();
            w.next_id += 1;
            let channel_name = w.channel(channel).map(|c| c.name.clone()).unwrap_or_else(|| "unknown".into());
            let user_name = w.users.iter().find(|u| u.id == user).map(|u| u.name.clone()).unwrap_or_default();
            (w.next_id, channel_name, user_name)
        };
        let fields = vec![
            ("token", "sandbox-verification".to_string()),
            ("team_id", TEAM_ID.to_string()),
            ("team_domain", "sandbox".to_string()),
            ("channel_id", channel.to_string()),
            ("channel_name", channel_name),
            ("user_id", user.to_string()),
            ("user_name", user_name),
            ("command", "/incident".to_string()),
            ("text", text.to_string()),
            ("api_app_id", APP_ID.to_string()),
            ("response_url", format!("http://{}/respond/{n}", self.addr)),
            ("trigger_id", format!("{n}.{n}.sandboxtrigger")),
        ];
        self.world().last_slash = Some(fields.clone());
        self.send_slash(fields).await
    }

    async fn send_slash(&self, fields: Vec<(&'static str, String)>) -> DeliveryResult {
        let delivery = self.world().delivery.clone();
        match delivery {
            Delivery::Http { base } => {
                let body = serde_urlencoded::to_string(&fields).expect("form encodes");
                self.signed_post(&format!("{base}/slack/commands"), "application/x-www-form-urlencoded", body, None)
                    .await
            }
            Delivery::Socket => {
                let payload: serde_json::Map<String, Value> =
                    fields.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                self.send_envelope("slash_commands", Value::Object(payload), true).await
            }
            Delivery::None => DeliveryResult::NotDelivered,
        }
    }

    /// A person clicks a button (or picks from a select) on a bot message.
    pub async fn click(&self, user: &str, channel: &str, message_ts: &str, action: Value) -> DeliveryResult {
        let n = {
            let mut w = self.world();
            w.next_id += 1;
            w.next_id
        };
        let mut action = action;
        action["action_ts"] = json!(format!("{}.{n:06}", 1_700_000_000 + n));
        let message = self.message(channel, message_ts).map(|m| m.raw).unwrap_or(Value::Null);
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": user, "name": user, "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": "sandbox-verification",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
            "trigger_id": format!("{n}.{n}.sandboxclick"),
            "team": {"id": TEAM_ID, "domain": "sandbox"},
            "channel": {"id": channel, "name": channel},
            "message": message,
            "response_url": format!("http://{}/respond/{n}", self.addr),
            "actions": [action],
        });
        self.deliver_interaction(payload).await
    }

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
    async fn send_envelope(&self, kind: &str, payload: Value, accepts_response_payload: bool) -> DeliveryResult {
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

    /// Sends a `disconnect` frame (e.g. `refresh_requested`, `warning`) on every live connection.
    pub fn disconnect_all(&self, reason: &str) {
        let frame = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox"}}).to_string();
        for s in self.world().sockets.iter().filter(|s| !s.dead) {
            let _ = s.tx.send(frame.clone());
        }
    }

    /// Black-holes every current connection: it stays open but nothing crosses it any more, the
    /// way a socket silently stops delivering.
    pub fn silence_all(&self) {
        for s in self.world().sockets.iter_mut() {
            s.dead = true;
            let _ = s.tx.send(SILENCE.to_string());
        }
    }

    /// Pings Socket Mode connections opened from now on this often.
    pub fn set_ping_every(&self, every: Duration) {
        self.world().ping_every = every;
    }

    /// Pongs the bot has answered so far.
    pub fn pongs(&self) -> u64 {
        self.world().pongs
    }

    /// Waits until the bot has answered at least `n` pings in total.
    pub async fn wait_pongs(&self, n: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.connected.notified();
            if self.pongs() >= n {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || tokio::time::timeout(remaining, notified).await.is_err() {
                return self.pongs() >= n;
            }
        }
    }

    /// Waits until the bot has opened at least `n` Socket Mode connections in total.
    pub async fn wait_connections(&self, n: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.connected.notified();
            if self.connections_opened() >= n && self.live_connections() > 0 {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || tokio::time::timeout(remaining, notified).await.is_err() {
                return self.connections_opened() >= n;
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

// ---------------------------------------------------------------------------------------------
// Web API

/// Parameters from the query string, a JSON body or a form body, merged.
fn params(query: &HashMap<String, String>, headers: &HeaderMap, body: &[u8]) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in query {
        out.insert(k.clone(), json!(v));
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            out.extend(map);
        }
    } else if !body.is_empty()
        && let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
    {
        for (k, v) in pairs {
            let value =
                serde_json::from_str::<Value>(&v).ok().filter(|v| v.is_array() || v.is_object()).unwrap_or(json!(v));
            out.insert(k, value);
        }
    }
    Value::Object(out)
}

/// A boolean Web API argument, sent as JSON `true` or as the form value `true` / `1`.
fn flag(v: &Value) -> bool {
    v.as_bool().unwrap_or(false) || matches!(v.as_str(), Some("true" | "1"))
}

/// The bot's profile as Slack attaches it to the app's messages (`real-captures/message_bot_in_thread.json`).
fn bot_profile() -> Value {
    json!({"id": BOT_ID, "deleted": false, "name": "incident-commander", "updated": 1_700_000_000,
           "app_id": APP_ID, "team_id": TEAM_ID,
           "icons": {"image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png"}})
}

fn api_error(error: &str) -> (StatusCode, Value) {
    (StatusCode::OK, json!({"ok": false, "error": error}))
}

async fn web_api(
    State(state): State<Shared>,
    Path(method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let params = params(&query, &headers, &body);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| params["token"].as_str().map(String::from))
        .unwrap_or_default();

    let fault = state.world.lock().expect("world").faults.get_mut(&method).and_then(VecDeque::pop_front);
    let mut retry_after = None;
    let (status, response) = match fault {
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            call(&state, &method, &params, &token)
        }
        Some(Fault::RateLimited(after)) => {
            retry_after = after;
            (StatusCode::TOO_MANY_REQUESTS, json!({"ok": false, "error": "ratelimited"}))
        }
        Some(Fault::Status(code)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"ok": false, "error": "internal_error"}),
        ),
        Some(Fault::ApiError(e)) => api_error(&e),
        None => match rate_limited(&state, &method, &params) {
            Some(after) => {
                retry_after = Some(after);
                (StatusCode::TOO_MANY_REQUESTS, json!({"ok": false, "error": "ratelimited"}))
            }
            None => call(&state, &method, &params, &token),
        },
    };
    {
        let mut w = state.world.lock().expect("world");
        let elapsed_ms = w.started.elapsed().as_millis();
        w.calls.push(CallRecord {
            at: Utc::now(),
            elapsed_ms,
            method: method.clone(),
            params: params.clone(),
            status: status.as_u16(),
            response: response.clone(),
        });
    }
    let mut resp =
        (status, [("content-type", "application/json; charset=utf-8")], response.to_string()).into_response();
    if let Some(after) = retry_after {
        resp.headers_mut().insert("retry-after", after.to_string().parse().expect("digits are a header value"));
    }
    resp
}

/// Applies Slack's limits: chat.postMessage per channel, every other method per minute.
fn rate_limited(state: &Shared, method: &str, params: &Value) -> Option<u64> {
    let mut w = state.world.lock().expect("world");
    let now = Instant::now();
    let limits = w.limits;
    let (key, max, window, times) = if method == "chat.postMessage" {
        let channel = params["channel"].as_str().unwrap_or_default().to_string();
        let (max, window) = limits.post_per_channel;
        (channel, max, window, &mut w.post_times)
    } else {
        (method.to_string(), limits.per_method_per_minute, Duration::from_secs(60), &mut w.method_times)
    };
    let q = times.entry(key).or_default();
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
    if q.len() as u32 >= max {
        let wait = window.saturating_sub(now.duration_since(*q.front().expect("non-empty")));
        return Some(wait.as_secs().max(1));
    }
    q.push_back(now);
    None
}

/// Runs one Web API method against the world.
fn call(state: &Shared, method: &str, p: &Value, token: &str) -> (StatusCode, Value) {
    let is_app_method = method == "apps.connections.open";
    let mut w = state.world.lock().expect("world");
    let valid = if is_app_method { token == APP_TOKEN } else { token == BOT_TOKEN && w.bot_token_valid };
    if token.is_empty() {
        return api_error("not_authed");
    }
    if !valid {
        return api_error("invalid_auth");
    }
    let s = |k: &str| p[k].as_str().map(str::to_string).unwrap_or_default();
    match method {
        "auth.test" => (
            StatusCode::OK,
            json!({"ok": true, "url": "https://sandbox.slack.com/", "team": "Sandbox", "user": "incident-commander",
                   "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": false}),
        ),
        "apps.connections.open" => {
            let n = w.next_id;
            (StatusCode::OK, json!({"ok": true, "url": format!("ws://{}/socket?ticket={n}", state.addr)}))
        }
        "chat.postMessage" => {
            let channel = s("channel");
            let Some(c) = w.channel(&channel) else { return api_error("channel_not_found") };
            if !c.members.iter().any(|m| m == BOT_USER_ID) {
                return api_error("not_in_channel");
            }
            let text = s("text");
            if text.is_empty() && p["blocks"].is_null() && p["attachments"].is_null() {
                return api_error("no_text");
            }
            let ts = w.ts();
            let thread_ts = p["thread_ts"].as_str().map(String::from);
            if let Some(t) = &thread_ts
                && !w.messages.iter().any(|m| m.channel == channel && &m.ts == t)
            {
                return api_error("thread_not_found");
            }
            let mut message = json!({"type": "message", "subtype": "bot_message", "text": text, "user": BOT_USER_ID,
                                     "bot_id": BOT_ID, "app_id": APP_ID, "ts": ts, "team": TEAM_ID});
            for key in ["blocks", "attachments"] {
                if !p[key].is_null() {
                    message[key] = p[key].clone();
                }
            }
            if let Some(t) = &thread_ts {
                message["thread_ts"] = json!(t);
            }
            w.messages.push(StoredMessage::from_raw(&channel, message.clone()));
            // What Slack sends the app next: its own message as an event, the thread parent's
            // update, and (only when asked with unfurl_links) the previews of its text links.
            if w.secondary.own_messages {
                let parent_user = thread_ts
                    .as_deref()
                    .and_then(|t| w.messages.iter().find(|m| m.channel == channel && m.ts == t))
                    .and_then(|m| m.user.clone().or_else(|| m.bot_id.clone()));
                let event = secondary::own_message(&message, &channel, bot_profile(), parent_user.as_deref());
                w.enqueue(event);
            }
            if let Some(t) = &thread_ts {
                w.after_reply(&channel, t, BOT_USER_ID, &ts);
            }
            if flag(&p["unfurl_links"]) {
                w.unfurl_links(&channel, &ts);
            }
            (StatusCode::OK, json!({"ok": true, "channel": channel, "ts": ts, "message": message}))
        }
        "chat.update" => {
            let (channel, ts) = (s("channel"), s("ts"));
            let text = s("text");
            let blocks = p["blocks"].clone();
            let Some(m) = w.message_mut(&channel, &ts) else { return api_error("message_not_found") };
            if m.bot_id.as_deref() != Some(BOT_ID) {
                return api_error("cant_update_message");
            }
            let before = m.raw.clone();
            m.text = text.clone();
            if !blocks.is_null() {
                m.blocks = blocks.clone();
                m.raw["blocks"] = blocks;
            }
            m.raw["text"] = json!(text);
            m.edits += 1;
            if w.secondary.own_messages {
                let mut now = w.message_mut(&channel, &ts).map(|m| m.raw.clone()).unwrap_or_default();
                let event_ts = w.ts();
                now["edited"] = json!({"user": BOT_USER_ID, "ts": event_ts});
                w.enqueue(secondary::message_changed(&channel, &event_ts, &now, &before));
            }
            (
                StatusCode::OK,
                json!({"ok": true, "channel": channel, "ts": ts, "text": text, "message": {"text": text, "user": BOT_USER_ID}}),
            )
        }
        "chat.postEphemeral" => {
            let (channel, user) = (s("channel"), s("user"));
            if w.channel(&channel).is_none() {
                return api_error("channel_not_found");
            }
            let ts = w.ts();
            w.privates.push(Private { user: Some(user), channel: Some(channel), text: s("text"), via: "ephemeral" });
            (StatusCode::OK, json!({"ok": true, "message_ts": ts}))
        }
        "chat.getPermalink" => {
            let (channel, ts) = (s("channel"), s("message_ts"));
            if w.channel(&channel).is_none() {
                return api_error("channel_not_found");
            }
            let link = format!("https://sandbox.slack.com/archives/{channel}/p{}", ts.replace('.', ""));
            (StatusCode::OK, json!({"ok": true, "channel": channel, "permalink": link}))
        }
        "reactions.add" => {
            let (channel, ts, name) = (s("channel"), s("timestamp"), s("name"));
            let Some(m) = w.message_mut(&channel, &ts) else { return api_error("message_not_found") };
            match m.reactions.iter_mut().find(|(n, _)| *n == name) {
                Some((_, users)) if users.iter().any(|u| u == BOT_USER_ID) => return api_error("already_reacted"),
                Some((_, users)) => users.push(BOT_USER_ID.into()),
                None => m.reactions.push((name, vec![BOT_USER_ID.into()])),
            }
            (StatusCode::OK, json!({"ok": true}))
        }
        "conversations.create" => {
            let name = s("name");
            let valid = !name.is_empty()
                && name.len() <= 80
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !valid {
                return api_error("invalid_name_specials");
            }
            if w.channels.iter().any(|c| c.name == name) {
                return api_error("name_taken");
            }
            let private = p["is_private"].as_bool().unwrap_or(false) || s("is_private") == "true";
            let id = w.id(if private { "G" } else { "C" });
            w.channels.push(Channel {
                id: id.clone(),
                name,
                members: vec![BOT_USER_ID.into()],
                is_private: private,
                purpose: String::new(),
                pins: Vec::new(),
            });
            let json = w.channel_json(w.channel(&id).expect("just added"));
            (StatusCode::OK, json!({"ok": true, "channel": json}))
        }
        "conversations.invite" => {
            let channel = s("channel");
            let users: Vec<String> = match &p["users"] {
                Value::Array(a) => a.iter().filter_map(|u| u.as_str().map(String::from)).collect(),
                other => other.as_str().unwrap_or_default().split(',').map(|u| u.trim().to_string()).collect(),
            };
            let known: Vec<String> = w.users.iter().map(|u| u.id.clone()).collect();
            let Some(c) = w.channel_mut(&channel) else { return api_error("channel_not_found") };
            if !c.members.iter().any(|m| m == BOT_USER_ID) {
                return api_error("not_in_channel");
            }
            for u in users.into_iter().filter(|u| !u.is_empty()) {
                if !known.contains(&u) {
                    return api_error("user_not_found");
                }
                if !c.members.contains(&u) {
                    c.members.push(u);
                }
            }
            let json = w.channel_json(w.channel(&channel).expect("exists"));
            (StatusCode::OK, json!({"ok": true, "channel": json}))
        }
        "conversations.setPurpose" => {
            let channel = s("channel");
            let purpose = s("purpose");
            let Some(c) = w.channel_mut(&channel) else { return api_error("channel_not_found") };
            c.purpose = purpose.clone();
            (StatusCode::OK, json!({"ok": true, "purpose": purpose}))
        }
        "conversations.info" => {
            let Some(c) = w.channel(&s("channel")) else { return api_error("channel_not_found") };
            (StatusCode::OK, json!({"ok": true, "channel": w.channel_json(c)}))
        }
        "conversations.join" => {
            let channel = s("channel");
            let Some(c) = w.channel_mut(&channel) else { return api_error("channel_not_found") };
            if c.is_private {
                return api_error("method_not_supported_for_channel_type");
            }
            if !c.members.iter().any(|m| m == BOT_USER_ID) {
                c.members.push(BOT_USER_ID.into());
            }
            let json = w.channel_json(w.channel(&channel).expect("exists"));
            (StatusCode::OK, json!({"ok": true, "channel": json}))
        }
        "conversations.replies" => {
            let (channel, ts) = (s("channel"), s("ts"));
            let msgs: Vec<Value> = w
                .messages
                .iter()
                .filter(|m| m.channel == channel && (m.ts == ts || m.thread_ts.as_deref() == Some(ts.as_str())))
                .map(|m| m.raw.clone())
                .collect();
            if msgs.is_empty() {
                return api_error("thread_not_found");
            }
            (StatusCode::OK, json!({"ok": true, "messages": msgs, "has_more": false}))
        }
        "conversations.history" => {
            let channel = s("channel");
            if w.channel(&channel).is_none() {
                return api_error("channel_not_found");
            }
            let msgs: Vec<Value> = w
                .messages
                .iter()
                .rev()
                .filter(|m| m.channel == channel && m.thread_ts.is_none())
                .map(|m| m.raw.clone())
                .collect();
            (StatusCode::OK, json!({"ok": true, "messages": msgs, "has_more": false}))
        }
        "pins.add" => {
            let (channel, ts) = (s("channel"), s("timestamp"));
            if w.message_mut(&channel, &ts).is_none() {
                return api_error("message_not_found");
            }
            let Some(c) = w.channel_mut(&channel) else { return api_error("channel_not_found") };
            if c.pins.contains(&ts) {
                return api_error("already_pinned");
            }
            c.pins.push(ts);
            (StatusCode::OK, json!({"ok": true}))
        }
        "views.open" => {
            let trigger = s("trigger_id");
            if trigger.is_empty() {
                return api_error("invalid_arguments");
            }
            if trigger.contains("expired") {
                return api_error("expired_trigger_id");
            }
            let id = w.id("V");
            let view = p["view"].clone();
            w.views.push((id.clone(), trigger, view.clone()));
            let mut out = view;
            out["id"] = json!(id);
            out["team_id"] = json!(TEAM_ID);
            out["app_id"] = json!(APP_ID);
            out["bot_id"] = json!(BOT_ID);
            out["state"] = json!({"values": {}});
            out["hash"] = json!(format!("1700000000.{id}"));
            out["root_view_id"] = json!(id);
            out["app_installed_team_id"] = json!(TEAM_ID);
            (StatusCode::OK, json!({"ok": true, "view": out}))
        }
        "users.info" => {
            let id = s("user");
            let Some(u) = w.users.iter().find(|u| u.id == id) else { return api_error("user_not_found") };
            (
                StatusCode::OK,
                json!({"ok": true, "user": {"id": u.id, "team_id": TEAM_ID, "name": u.name, "real_name": u.real_name,
                       "deleted": false, "is_bot": u.id == BOT_USER_ID, "tz": "UTC",
                       "profile": {"display_name": u.name, "real_name": u.real_name}}}),
            )
        }
        _ => api_error("unknown_method"),
    }
}

async fn respond(State(state): State<Shared>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = payload["text"].as_str().unwrap_or_default().to_string();
    let mut w = state.world.lock().expect("world");
    let elapsed_ms = w.started.elapsed().as_millis();
    w.calls.push(CallRecord {
        at: Utc::now(),
        elapsed_ms,
        method: "response_url".into(),
        params: json!({"id": id, "body": payload}),
        status: 200,
        response: json!("ok"),
    });
    w.privates.push(Private { user: None, channel: None, text, via: "response_url" });
    (StatusCode::OK, "ok").into_response()
}

// ---------------------------------------------------------------------------------------------
// Socket Mode

async fn socket_upgrade(State(state): State<Shared>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| serve_socket(state, socket))
}

async fn serve_socket(state: Shared, socket: WebSocket) {
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let id = {
        let mut w = state.world.lock().expect("world");
        w.connections_opened += 1;
        let id = w.connections_opened;
        w.sockets.push(SocketConn { id, tx: tx.clone(), dead: false });
        let live = w.sockets.iter().filter(|s| !s.dead).count();
        let hello = json!({"type": "hello", "num_connections": live,
                           "debug_info": {"host": "sandbox", "build_number": 1, "approximate_connection_time": 18060},
                           "connection_info": {"app_id": APP_ID}});
        let _ = tx.send(hello.to_string());
        id
    };
    state.connected.notify_waiters();
    let ping_every = state.world.lock().expect("world").ping_every;
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        tokio::select! {
            _ = pings.tick() => {
                // Slack pings every connection about every 10 s ("Ping from applink-1").
                if sink.send(WsMessage::Ping(b"Ping from sandbox".to_vec().into())).await.is_err() {
                    break;
                }
            }
            out = rx.recv() => {
                let Some(text) = out else { break };
                if text == SILENCE {
                    // Hold the connection open without reading or writing anything: no frames,
                    // no pongs, like a socket that silently stopped delivering.
                    while rx.recv().await.is_some() {}
                    break;
                }
                if sink.send(WsMessage::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = stream.next() => {
                match incoming {
                    Some(Ok(WsMessage::Text(text))) => {
                        if let Ok(ack) = serde_json::from_str::<Value>(&text)
                            && let Some(envelope_id) = ack["envelope_id"].as_str()
                        {
                            let waiter = state.world.lock().expect("world").acks.remove(envelope_id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(ack);
                            }
                        }
                    }
                    Some(Ok(WsMessage::Pong(_))) => {
                        state.world.lock().expect("world").pongs += 1;
                        state.connected.notify_waiters();
                    }
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    state.world.lock().expect("world").sockets.retain(|s| s.id != id);
}
