//! Persistence behind a narrow facade with intent-named operations.
//!
//! [`SledStore`] is the implementation: one sled database in the data directory. Every record is a
//! versioned JSON value (see [`records`]). The processor's step (consume an inbox event, write the
//! incident, queue the Slack calls) is one transaction, so a crash leaves either all or none of it.

pub mod records;
mod sled_store;

use chrono::{DateTime, Utc};

use crate::domain::alert::Fingerprint;
use crate::domain::ids::{ChannelId, IncidentId};
use crate::domain::incident::Incident;
pub use records::{
    ChannelRef, Delivery, InboxEvent, InboxSeq, MessageKey, Origin, OutboxEntry, OutboxSeq, SlackOp, ThreadRef,
};
pub use sled_store::SledStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("record {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "the data directory {path} is in use by another incident-commander process (or cannot be opened): {source}"
    )]
    Locked { path: String, source: sled::Error },
}

/// A dedupe key and how long to remember it.
pub type DedupeKey = (String, DateTime<Utc>);

/// The answer to offering an event to the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Stored; will be processed once.
    Accepted(InboxSeq),
    /// The same delivery was accepted before (a retry or redelivery); nothing was stored.
    Duplicate,
}

/// One processing step, written atomically.
#[derive(Debug, Default)]
pub struct Commit {
    /// The inbox event this step handled.
    pub consumed: Option<InboxSeq>,
    /// The incident's new state (new or changed).
    pub incident: Option<Incident>,
    /// Slack calls to make because of this step, in order.
    pub outbox: Vec<OutboxEntry>,
    /// Set when the consumed event could not be handled: it is kept aside with this reason
    /// instead of being retried forever.
    pub dead_letter: Option<String>,
    /// An alert received in this step, for the alert log (every alert is kept and counted).
    pub alert: Option<LoggedAlert>,
    /// The new content of an alert already in the log, whose Slack message was edited: it
    /// replaces the logged record of that message (an edit is not a new alert). Ignored when the
    /// message has no record.
    pub alert_update: Option<LoggedAlert>,
    /// A message seen in an incident thread, remembered so a pin reaction can quote it.
    pub thread_message: Option<ThreadMessage>,
}

/// A message in an incident's thread or channel, as the bot saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadMessage {
    /// The incident whose thread or channel it is in.
    pub incident: IncidentId,
    pub channel: ChannelId,
    pub ts: String,
    pub user: Option<crate::domain::ids::UserId>,
    pub text: String,
}

/// An alert as the alert log keeps it: what arrived, and the incident it opened or folded into.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoggedAlert {
    pub alert: crate::domain::alert::Alert,
    pub incident: Option<IncidentId>,
    /// Why no incident took it, when none did.
    pub ignored: Option<String>,
}

/// Everything the bot persists.
pub trait Store: Send + Sync + 'static {
    /// The id the next opened incident will get (`INC-1` on a fresh store).
    fn next_incident_id(&self) -> Result<IncidentId, StoreError>;
    fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;
    /// The open incident alerts with this fingerprint fold into.
    fn find_open_incident_by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<Option<Incident>, StoreError>;
    /// The incident whose thread parent, header or dedicated channel this is (`ts` empty for a channel).
    fn find_incident_by_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<Incident>, StoreError>;
    /// Open incidents, oldest first.
    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError>;
    /// Every incident, oldest first.
    fn all_incidents(&self) -> Result<Vec<Incident>, StoreError>;

    /// Puts an accepted event in the inbox. With a dedupe key, a key seen before (and not yet
    /// expired) is refused as a duplicate; the key is remembered until `dedupe_until`. Durable only
    /// after [`Store::flush`].
    fn accept_event(&self, event: &InboxEvent, dedupe: Option<(&str, DateTime<Utc>)>)
    -> Result<Acceptance, StoreError>;
    /// Several events in one transaction (one webhook delivery carrying many alerts).
    fn accept_events(&self, events: &[(InboxEvent, Option<DedupeKey>)]) -> Result<Vec<Acceptance>, StoreError>;
    /// The oldest unprocessed event.
    fn next_inbox_event(&self) -> Result<Option<(InboxSeq, InboxEvent)>, StoreError>;
    fn inbox_len(&self) -> usize;
    /// Events that could not be handled, with the reason, oldest first.
    fn dead_letters(&self) -> Result<Vec<(InboxSeq, String, InboxEvent)>, StoreError>;
    /// Applies one processing step atomically. Returns the outbox positions of its calls.
    fn commit(&self, commit: Commit) -> Result<Vec<OutboxSeq>, StoreError>;

    /// Calls not yet delivered, oldest first.
    fn pending_outbox(&self) -> Result<Vec<(OutboxSeq, OutboxEntry)>, StoreError>;
    /// Removes a delivered (or abandoned) call; with a key, remembers what Slack answered under it;
    /// with `then`, puts that event in the inbox in the same transaction (delivery feedback).
    fn complete_outbox(
        &self,
        seq: OutboxSeq,
        remember: Option<(&MessageKey, &Delivery)>,
        then: Option<&InboxEvent>,
    ) -> Result<(), StoreError>;
    /// Remembers what Slack answered under `key` before the call completes (multi-step calls).
    fn put_message_ref(&self, key: &MessageKey, delivery: &Delivery) -> Result<(), StoreError>;
    /// What Slack answered for the message or channel posted under `key`.
    fn get_message_ref(&self, key: &MessageKey) -> Result<Option<Delivery>, StoreError>;

    /// A remembered thread message (see [`Commit::thread_message`]).
    fn find_thread_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<ThreadMessage>, StoreError>;
    /// How many alerts the alert log holds.
    fn alert_count(&self) -> usize;
    /// The logged alert that arrived as this Slack message, if any (the latest one).
    fn find_alert_by_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<LoggedAlert>, StoreError>;

    /// Forgets dedupe keys whose time is up. Returns how many were dropped.
    fn expire_dedupe_keys(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
}
