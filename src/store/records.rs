//! What the store keeps: accepted events (the inbox), pending Slack calls (the outbox), and the
//! envelope that versions every record.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::decide::Event;
use crate::domain::ids::{ChannelId, IncidentId, UserId};
use crate::domain::messages::Message;

/// Position of an event in the inbox; later events have larger numbers, across restarts too.
pub type InboxSeq = u64;
/// Position of a call in the outbox.
pub type OutboxSeq = u64;

/// An event accepted by ingress and not yet processed. It is on disk before the sender gets its
/// acknowledgement, so nothing accepted is lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InboxEvent {
    /// A domain event produced directly (declares from the CLI, tests), about `incident` when set.
    Domain { event: Box<Event>, incident: Option<IncidentId>, origin: Origin },
    /// A Slack Events API `event` object (message, reaction_added, app_mention, ...).
    SlackEvent { event_id: String, event: serde_json::Value },
    /// A slash command invocation.
    SlashCommand { command: SlashCommand },
    /// A Block Kit interaction (button, select), the `payload` JSON.
    Interaction { payload: serde_json::Value },
    /// An alert webhook body, undecoded.
    Webhook { source: WebhookSource, body: String },
    /// Egress delivered a message the incident needs to know about (its ts).
    Delivered { incident: IncidentId, key: MessageKey, channel: ChannelId, ts: String },
}

impl InboxEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            InboxEvent::Domain { .. } => "domain",
            InboxEvent::SlackEvent { .. } => "slack_event",
            InboxEvent::SlashCommand { .. } => "slash_command",
            InboxEvent::Interaction { .. } => "interaction",
            InboxEvent::Webhook { .. } => "webhook",
            InboxEvent::Delivered { .. } => "delivered",
        }
    }
}

/// Where an event came from, so answers go back to the right person and place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub user: Option<UserId>,
    pub channel: Option<ChannelId>,
    pub thread_ts: Option<String>,
    /// Slash commands and interactions carry a URL for delayed answers.
    pub response_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashCommand {
    pub command: String,
    pub text: String,
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub response_url: Option<String>,
    pub trigger_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookSource {
    Datadog,
    Alertmanager,
    Grafana,
}

/// Names a message the bot posted, so later calls can refer to it before its ts is known
/// (e.g. `INC-3/header`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageKey(pub String);

impl MessageKey {
    pub fn for_incident(id: IncidentId, what: &str) -> MessageKey {
        MessageKey(format!("{id}/{what}"))
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A channel, known or yet to be created by an earlier call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChannelRef {
    Id(ChannelId),
    /// The channel created by the `CreateChannel` call with this key.
    Created(MessageKey),
}

/// A thread parent: a known message ts, or a message the bot posted earlier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ThreadRef {
    Ts(String),
    Message(MessageKey),
}

/// One Slack Web API call the bot owes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SlackOp {
    /// chat.postMessage; when `key` is set, the message's ts is remembered under it.
    PostMessage { channel: ChannelRef, thread: Option<ThreadRef>, message: Message, key: Option<MessageKey> },
    /// chat.update of a message posted earlier under `key` in `channel`. Only the latest update
    /// per key is sent.
    UpdateMessage { channel: ChannelRef, key: MessageKey, message: Message },
    /// reactions.add.
    AddReaction { channel: ChannelId, ts: String, emoji: String },
    /// chat.postEphemeral: only `user` sees it.
    PostEphemeral { channel: ChannelId, user: UserId, thread_ts: Option<String>, text: String },
    /// A delayed answer through a slash command's `response_url`.
    Respond { url: String, text: String },
    /// conversations.create + conversations.invite; the new channel id is remembered under `key`.
    CreateChannel { key: MessageKey, name: String, invite: Vec<UserId>, purpose: String },
    /// conversations.invite into a channel created earlier.
    Invite { channel: ChannelRef, users: Vec<UserId> },
    /// views.open: the modal asking for the root cause. If the trigger has expired, `user` gets
    /// the command to type instead.
    AskRootCause { trigger_id: String, incident: IncidentId, user: UserId, channel: Option<ChannelId> },
}

impl SlackOp {
    pub fn method(&self) -> &'static str {
        match self {
            SlackOp::PostMessage { .. } => "chat.postMessage",
            SlackOp::UpdateMessage { .. } => "chat.update",
            SlackOp::AddReaction { .. } => "reactions.add",
            SlackOp::PostEphemeral { .. } => "chat.postEphemeral",
            SlackOp::Respond { .. } => "response_url",
            SlackOp::CreateChannel { .. } => "conversations.create",
            SlackOp::Invite { .. } => "conversations.invite",
            SlackOp::AskRootCause { .. } => "views.open",
        }
    }
}

/// A call in the outbox, persisted before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The incident the call is for, so delivery can be reported back to it.
    pub incident: Option<IncidentId>,
    pub op: SlackOp,
    pub created_at: DateTime<Utc>,
}

/// What Slack answered for a delivered call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub channel: Option<ChannelId>,
    pub ts: Option<String>,
}

/// The on-disk envelope of every record: `{"v": <version>, "data": ...}`.
///
/// A type bumps `VERSION` when its shape changes and teaches `upgrade` to read the older shapes;
/// bytes written by every released version are kept in `tests/data/` and read back in a test.
pub trait Versioned: Serialize + DeserializeOwned {
    const VERSION: u32;
    /// Reads data written as an older version.
    fn upgrade(version: u32, _data: serde_json::Value) -> Result<Self, String> {
        Err(format!("no upgrade from record version {version} to {}", Self::VERSION))
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u32,
    data: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    v: u32,
    data: serde_json::Value,
}

pub fn encode<T: Versioned>(value: &T) -> Vec<u8> {
    serde_json::to_vec(&EnvelopeOut { v: T::VERSION, data: value }).expect("records serialize to JSON")
}

pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, String> {
    let env: EnvelopeIn = serde_json::from_slice(bytes).map_err(|e| format!("not a record envelope: {e}"))?;
    if env.v == T::VERSION {
        serde_json::from_value(env.data).map_err(|e| e.to_string())
    } else if env.v < T::VERSION {
        T::upgrade(env.v, env.data)
    } else {
        Err(format!("written by a newer version (record v{}, this build reads up to v{})", env.v, T::VERSION))
    }
}

impl Versioned for crate::domain::incident::Incident {
    const VERSION: u32 = 1;
}

impl Versioned for InboxEvent {
    const VERSION: u32 = 1;
}

impl Versioned for OutboxEntry {
    const VERSION: u32 = 1;
}

impl Versioned for Delivery {
    const VERSION: u32 = 1;
}

impl Versioned for super::LoggedAlert {
    const VERSION: u32 = 1;
}

impl Versioned for super::ThreadMessage {
    const VERSION: u32 = 1;
}
