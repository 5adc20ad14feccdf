//! A local Slack workspace on 127.0.0.1 that speaks Slack's wire formats.
//!
//! It serves the Web API methods the bot uses under `/api/<method>` (JSON or form bodies, GET or
//! POST, bearer tokens), Socket Mode over a websocket at `/socket`, and response URLs at
//! `/respond/<n>`. It keeps a world of users, channels, messages, threads and reactions, applies
//! Slack's per-channel and per-method rate limits with 429 + `Retry-After`, injects faults, and
//! records every call. It delivers events to the bot as Slack does: signed HTTP requests to the
//! bot's Events API, command and interactivity URLs, or envelopes over Socket Mode.
//!
//! By concern: [`world`] is the workspace's state; `people` are the people and apps acting in it;
//! `delivery` hands events to the bot; `web_api` answers the bot's calls; `socket` is the Socket
//! Mode server; [`secondary`] the events Slack sends on its own (unfurls, thread bookkeeping).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

mod delivery;
mod people;
pub mod secondary;
mod socket;
mod web_api;
mod world;

pub use self::delivery::{DeliveryResult, sign};
use self::secondary::SecondaryEvents;
use self::world::World;
pub use self::world::{CallRecord, Channel, Chaos, Fault, Private, SlackUser, StoredMessage};

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
            chaos: None,
            chaos_calls: 0,
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
            .route("/api/{method}", any(web_api::web_api))
            .route("/socket", get(socket::socket_upgrade))
            .route("/respond/{id}", post(web_api::respond))
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

    /// Faults on a share of every call from now on (see [`Chaos`]); `None` stops them.
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        self.world().chaos = chaos.filter(|c| c.every > 0 && !c.faults.is_empty());
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
        // Slack's view.state.values: one entry per input block, keyed by block_id then action_id,
        // shaped by the element: plain_text_input carries `value`, users_select `selected_user`
        // (null when an optional picker was left empty).
        let mut state = serde_json::Map::new();
        for block in view["blocks"].as_array().into_iter().flatten().filter(|b| b["type"] == "input") {
            let (Some(block_id), Some(action_id)) =
                (block["block_id"].as_str(), block["element"]["action_id"].as_str())
            else {
                continue;
            };
            let given = values.iter().find(|(b, _)| *b == block_id).map(|(_, v)| *v);
            let element = match block["element"]["type"].as_str() {
                Some("users_select") => json!({"type": "users_select", "selected_user": given}),
                _ => json!({"type": "plain_text_input", "value": given}),
            };
            state.insert(block_id.to_string(), json!({ action_id: element }));
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
}
