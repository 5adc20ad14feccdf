//! What the application owes the chat: the calls the outbox holds until egress delivers them, and
//! the names of the messages later calls refer to.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ids::{ChannelId, IncidentId, UserId};
use crate::domain::incident::MessagePart;
use crate::domain::messages::Message;

/// Position of a call in the outbox; later calls have larger numbers.
pub type OutboxSeq = u64;

/// Names a message (or channel) the bot posted, so later calls can refer to it before its ts is
/// known. Stored as text (`INC-3/header`, `storm/C0ALERTS1/1762250400000`), the form records have
/// always used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MessageKey {
    /// One of an incident's own messages.
    Incident { id: IncidentId, part: MessagePart },
    /// The summary of one alert storm in one channel.
    Storm { channel: ChannelId, storm: i64 },
}

impl MessageKey {
    pub fn incident(id: IncidentId, part: MessagePart) -> MessageKey {
        MessageKey::Incident { id, part }
    }

    /// The incident part this key names, if it names one.
    pub fn part(&self) -> Option<MessagePart> {
        match self {
            MessageKey::Incident { part, .. } => Some(*part),
            MessageKey::Storm { .. } => None,
        }
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageKey::Incident { id, part } => write!(f, "{id}/{}", part.as_str()),
            MessageKey::Storm { channel, storm } => write!(f, "storm/{channel}/{storm}"),
        }
    }
}

/// A stored key that does not name a message this build knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a message key (expected INC-<n>/<part> or storm/<channel>/<id>)")]
pub struct BadMessageKey(String);

impl FromStr for MessageKey {
    type Err = BadMessageKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMessageKey(s.to_string());
        if let Some(rest) = s.strip_prefix("storm/") {
            let (channel, storm) = rest.split_once('/').ok_or_else(bad)?;
            return Ok(MessageKey::Storm {
                channel: ChannelId::parse(channel).map_err(|_| bad())?,
                storm: storm.parse().map_err(|_| bad())?,
            });
        }
        let (id, part) = s.split_once('/').ok_or_else(bad)?;
        let part = MessagePart::ALL.into_iter().find(|p| p.as_str() == part).ok_or_else(bad)?;
        Ok(MessageKey::Incident { id: id.parse().map_err(|_| bad())?, part })
    }
}

impl TryFrom<String> for MessageKey {
    type Error = BadMessageKey;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MessageKey> for String {
    fn from(key: MessageKey) -> String {
        key.to_string()
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
    /// views.open: a form about the incident (the root cause, a follow-up). If the trigger has
    /// expired, `user` gets the command to type instead.
    #[serde(alias = "ask_root_cause")]
    AskForm {
        trigger_id: String,
        incident: IncidentId,
        user: UserId,
        channel: Option<ChannelId>,
        /// Entries stored before follow-ups existed asked for the root cause.
        #[serde(default)]
        form: Form,
    },
}

/// What a form asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    #[default]
    RootCause,
    Followup,
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
            SlackOp::AskForm { .. } => "views.open",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_from_the_text_records_hold() {
        for text in ["INC-3/header", "INC-12/root", "INC-1/evidence", "storm/C0ALERTS1/1762250400000"] {
            let key: MessageKey = text.parse().unwrap();
            assert_eq!(key.to_string(), text);
            assert_eq!(serde_json::to_value(&key).unwrap(), serde_json::json!(text));
        }
        assert_eq!("INC-3/header".parse::<MessageKey>().unwrap().part(), Some(MessagePart::Header));
        for bad in ["INC-3/footer", "INC-3", "storm/C0ALERTS1/x", "nonsense"] {
            assert!(bad.parse::<MessageKey>().is_err(), "{bad}");
        }
    }
}
