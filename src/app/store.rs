//! The store port: everything the bot persists, as the application needs it, in words no backend
//! owns. `crate::store` implements it on sled (one process), on PostgreSQL (several replicas,
//! one elected leader) and in memory (simulations); every backend runs the contract suite in
//! `tests/store.rs`.
//!
//! Durability has one explicit point: writes ([`Store::commit`], [`Store::accept_events`],
//! [`Store::complete_outbox`], ...) are atomic each, and durable once [`Store::persist`] has
//! returned after them. The application persists through [`super::inbox::GroupCommit`] before it
//! acknowledges anything, so a backend that is durable per write may make `persist` a no-op.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::inbox::{InboxEvent, InboxSeq};
use super::outbox::{Delivery, MessageKey, OutboxEntry, OutboxSeq};
use crate::domain::alert::{Alert, Fingerprint};
use crate::domain::ids::{ChannelId, IncidentId, UserId};
use crate::domain::incident::Incident;

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (disk, database connection); the operation may succeed later.
    #[error("storage error ({backend}): {message}")]
    Unavailable { backend: &'static str, message: String },
    /// A stored record cannot be read by this build.
    #[error("record {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
    /// Another process holds the store.
    #[error("{what} is in use by another incident-commander process (or cannot be opened): {reason}")]
    Locked { what: String, reason: String },
    /// This replica is not (or no longer) the leader, so the store refused a leader's write: a
    /// deposed leader can commit nothing.
    #[error("refused: this replica is not the leader ({reason})")]
    Fenced { reason: String },
}

/// What this process may do with a store that several replicas share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs the processor, egress, timers and evidence: the only writer of incidents.
    Leader,
    /// Takes events into the shared inbox and waits to be elected.
    Follower,
}

/// This process's role and since when (on the bot's clock), as `/healthz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleState {
    pub role: Role,
    pub since: DateTime<Utc>,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }
}

/// Where a message or a whole channel is, to find the incident it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    /// A message: a thread parent (the alert or the root the bot posted) or a header.
    Message { channel: ChannelId, ts: String },
    /// A channel of its own: an incident's dedicated channel.
    Channel(ChannelId),
}

impl Place {
    pub fn message(channel: &ChannelId, ts: &str) -> Place {
        Place::Message { channel: channel.clone(), ts: ts.to_string() }
    }
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

/// An inbox event that could not be handled, kept aside with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub seq: InboxSeq,
    pub reason: String,
    pub event: InboxEvent,
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

impl Commit {
    /// The event it consumes, when consuming it is all the commit does (chatter, duplicates,
    /// ignored messages): nothing for egress, no state, so a backend may make it cheap and the
    /// processor need not flush for it.
    pub fn consumption_only(&self) -> Option<InboxSeq> {
        match self {
            Commit {
                consumed: Some(seq),
                incident: None,
                dead_letter: None,
                alert: None,
                alert_update: None,
                thread_message: None,
                outbox,
            } if outbox.is_empty() => Some(*seq),
            _ => None,
        }
    }
}

/// A message in an incident's thread or channel, as the bot saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMessage {
    /// The incident whose thread or channel it is in.
    pub incident: IncidentId,
    pub channel: ChannelId,
    pub ts: String,
    pub user: Option<UserId>,
    pub text: String,
}

/// An alert as the alert log keeps it: what arrived, and the incident it opened or folded into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedAlert {
    pub alert: Alert,
    pub incident: Option<IncidentId>,
    /// Why no incident took it, when none did.
    pub ignored: Option<String>,
}

/// Everything the bot persists. Reads see every write made before them, durable or not.
pub trait Store: Send + Sync + 'static {
    // Incidents.

    /// The id the next opened incident will get (`INC-1` on a fresh store).
    fn next_incident_id(&self) -> Result<IncidentId, StoreError>;
    fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;
    /// The open incident alerts with this fingerprint fold into.
    fn find_open_incident_by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<Option<Incident>, StoreError>;
    /// The incident whose thread parent or header is this message, or whose dedicated channel
    /// this is.
    fn find_incident(&self, place: &Place) -> Result<Option<Incident>, StoreError>;
    /// Open incidents, oldest first.
    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError>;
    /// Every incident, oldest first.
    fn all_incidents(&self) -> Result<Vec<Incident>, StoreError>;

    // The inbox.

    /// Puts accepted events in the inbox, each atomically with its dedupe key. An event with a
    /// dedupe key seen before (and not expired), or seen earlier in the same batch, is refused
    /// as a duplicate; the key is remembered until its time.
    fn accept_events(&self, events: &[(InboxEvent, Option<DedupeKey>)]) -> Result<Vec<Acceptance>, StoreError>;
    /// One event (see [`Store::accept_events`]).
    fn accept_event(
        &self,
        event: &InboxEvent,
        dedupe: Option<(&str, DateTime<Utc>)>,
    ) -> Result<Acceptance, StoreError> {
        let batch = [(event.clone(), dedupe.map(|(k, t)| (k.to_string(), t)))];
        let mut results = self.accept_events(&batch)?;
        Ok(results.pop().unwrap_or(Acceptance::Duplicate))
    }
    /// The oldest unprocessed event.
    fn next_inbox_event(&self) -> Result<Option<(InboxSeq, InboxEvent)>, StoreError>;
    /// How many events wait in the inbox.
    fn inbox_len(&self) -> Result<usize, StoreError>;
    /// Events that could not be handled, oldest first.
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
    /// Forgets dedupe keys whose time is up. Returns how many were dropped.
    fn expire_dedupe_keys(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;

    // One processing step.

    /// Applies one processing step atomically. Returns the outbox positions of its calls.
    fn commit(&self, commit: Commit) -> Result<Vec<OutboxSeq>, StoreError>;

    // The outbox.

    /// Calls not yet delivered, oldest first.
    fn pending_outbox(&self) -> Result<Vec<(OutboxSeq, OutboxEntry)>, StoreError>;
    /// Calls not yet delivered after position `after` (all of them with `None`), oldest first.
    fn pending_outbox_after(&self, after: Option<OutboxSeq>) -> Result<Vec<(OutboxSeq, OutboxEntry)>, StoreError> {
        let mut pending = self.pending_outbox()?;
        if let Some(after) = after {
            pending.retain(|(seq, _)| *seq > after);
        }
        Ok(pending)
    }
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

    // The alert log and thread messages.

    /// How many alerts the alert log holds.
    fn alert_count(&self) -> Result<usize, StoreError>;
    /// The logged alert that arrived as this Slack message, if any (the latest one).
    fn find_alert_by_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<LoggedAlert>, StoreError>;
    /// A remembered thread message (see [`Commit::thread_message`]).
    fn find_thread_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<ThreadMessage>, StoreError>;

    // Durability.

    /// Makes every write so far durable.
    fn persist(&self) -> Result<(), StoreError>;

    /// Makes every write so far durable, as the inbox's writer needs before it answers: the
    /// processor's place after events it consumed without effects may wait for a later persist
    /// (after a crash they are handled again, to the same nothing). The sled store writes that
    /// place only every so many events here, since each write of it costs log writes of its own.
    fn persist_accepted(&self) -> Result<(), StoreError> {
        self.persist()
    }

    // Replicas.

    /// This process's role, as it changes. A store only one process opens is always the
    /// leader (the default); a shared one elects a leader among the replicas.
    fn role(&self) -> tokio::sync::watch::Receiver<Role> {
        tokio::sync::watch::channel(Role::Leader).1
    }

    /// Changes whenever another process put events in the inbox, so the leader's processor
    /// wakes for them; `None` when only this process writes the inbox (the default).
    fn inbox_elsewhere(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}
