//! The sandbox workspace's state: people, channels, messages, what the bot was told privately,
//! every call, injected faults, rate windows, Socket Mode connections.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::secondary::{self, SecondaryEvents};
use super::{BOT_USER_ID, Delivery, SandboxLimits};

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
    /// No answer for this long, then a 504, and the call never reached Slack: what a client
    /// sees when its request is lost on the way (it times out first when this is longer than its
    /// timeout). A timeout after Slack did the work is `Delay`.
    Timeout(Duration),
}

/// Faults on a share of every Web API call (auth.test aside): call number `n` (counting from 1)
/// gets `faults[(n / every) % faults.len()]` when `n` is a multiple of `every`, so `every: 5` is
/// 20% of the calls, the kinds in turn.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub every: u64,
    pub faults: Vec<Fault>,
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
    pub(super) fn from_raw(channel: &str, raw: Value) -> Self {
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

/// Marker sent through a connection's queue to black-hole it.
pub(super) const SILENCE: &str = "\u{0}silence";

pub(super) struct SocketConn {
    pub(super) id: u64,
    pub(super) tx: mpsc::UnboundedSender<String>,
    /// A black-holed connection stays open but carries nothing, in either direction.
    pub(super) dead: bool,
}

pub(super) struct World {
    pub(super) started: Instant,
    pub(super) users: Vec<SlackUser>,
    pub(super) channels: Vec<Channel>,
    pub(super) messages: Vec<StoredMessage>,
    pub(super) privates: Vec<Private>,
    pub(super) calls: Vec<CallRecord>,
    pub(super) faults: HashMap<String, VecDeque<Fault>>,
    pub(super) chaos: Option<Chaos>,
    /// Web API calls seen by the chaos counter.
    pub(super) chaos_calls: u64,
    pub(super) limits: SandboxLimits,
    pub(super) post_times: HashMap<String, VecDeque<Instant>>,
    pub(super) method_times: HashMap<String, VecDeque<Instant>>,
    pub(super) next_ts: u64,
    pub(super) next_id: u64,
    pub(super) delivery: Delivery,
    pub(super) sockets: Vec<SocketConn>,
    pub(super) acks: HashMap<String, oneshot::Sender<Value>>,
    /// Envelopes delivered over Socket Mode, with the time to ack in ms.
    pub(super) socket_acks: Vec<(String, u128)>,
    pub(super) connections_opened: u64,
    pub(super) bot_token_valid: bool,
    /// Modals opened with views.open: (view id, trigger id, view).
    pub(super) views: Vec<(String, String, Value)>,
    /// Message timestamps count up from here (seconds), so they can match the bot's clock.
    pub(super) epoch: i64,
    /// The form fields of the last slash command, for redeliveries.
    pub(super) last_slash: Option<Vec<(&'static str, String)>>,
    /// Which secondary events are sent (see [`super::secondary`]).
    pub(super) secondary: SecondaryEvents,
    /// Secondary events waiting for the delivery task, in order.
    pub(super) queue: Option<mpsc::UnboundedSender<Value>>,
    /// Secondary events queued and not yet delivered.
    pub(super) queued: usize,
    /// How often Socket Mode connections are pinged (Slack: about every 10 s).
    pub(super) ping_every: Duration,
    /// Pongs received from the bot.
    pub(super) pongs: u64,
}

impl World {
    /// Queues a secondary event for delivery after whatever caused it. Dropped while the bot is
    /// not connected.
    pub(super) fn enqueue(&mut self, event: Value) {
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
    pub(super) fn after_reply(&mut self, channel: &str, parent_ts: &str, user: &str, reply_ts: &str) {
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
    pub(super) fn unfurl_links(&mut self, channel: &str, ts: &str) {
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

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn ts(&mut self) -> String {
        self.next_ts += 1;
        format!("{}.{:06}", self.epoch + (self.next_ts / 1000) as i64, self.next_ts % 1000 * 100)
    }

    pub(super) fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}0SB{:05}", self.next_id)
    }

    pub(super) fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    pub(super) fn channel_mut(&mut self, id: &str) -> Option<&mut Channel> {
        self.channels.iter_mut().find(|c| c.id == id)
    }

    pub(super) fn message_mut(&mut self, channel: &str, ts: &str) -> Option<&mut StoredMessage> {
        self.messages.iter_mut().find(|m| m.channel == channel && m.ts == ts)
    }

    pub(super) fn channel_json(&self, c: &Channel) -> Value {
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
