//! The in-memory backend of [`Store`]: everything behind one lock, gone when the process ends.
//! `simulate` runs the real processor on it, and the contract suite holds it to the same rules as
//! the durable backends.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::app::inbox::{InboxEvent, InboxSeq};
use crate::app::outbox::{Delivery, MessageKey, OutboxEntry, OutboxSeq};
use crate::app::store::{
    Acceptance, Commit, DeadLetter, DedupeKey, LoggedAlert, Place, Store, StoreError, ThreadMessage,
};
use crate::domain::alert::Fingerprint;
use crate::domain::ids::{ChannelId, IncidentId};
use crate::domain::incident::Incident;

#[derive(Default)]
struct Inner {
    incidents: BTreeMap<IncidentId, Incident>,
    open: BTreeSet<IncidentId>,
    by_fingerprint: HashMap<Fingerprint, IncidentId>,
    by_place: HashMap<Place, IncidentId>,
    next_incident: u64,
    inbox: BTreeMap<InboxSeq, InboxEvent>,
    next_inbox: InboxSeq,
    /// Dedupe key -> until when it is remembered.
    seen: HashMap<String, DateTime<Utc>>,
    dead_letters: BTreeMap<InboxSeq, (String, InboxEvent)>,
    outbox: BTreeMap<OutboxSeq, OutboxEntry>,
    next_outbox: OutboxSeq,
    message_refs: HashMap<MessageKey, Delivery>,
    alerts: Vec<LoggedAlert>,
    alerts_by_message: HashMap<(ChannelId, String), usize>,
    thread_messages: HashMap<(ChannelId, String), ThreadMessage>,
}

/// A store that keeps nothing after the process ends.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store holding copies of `incidents` (a simulation starts from the real store's state).
    pub fn with_incidents(incidents: impl IntoIterator<Item = Incident>) -> MemoryStore {
        let store = MemoryStore::new();
        {
            let mut inner = store.lock();
            for incident in incidents {
                inner.write_incident(incident);
            }
        }
        store
    }

    /// The alert log, oldest first (what `simulate` reports on).
    pub fn logged_alerts(&self) -> Vec<LoggedAlert> {
        self.lock().alerts.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, still consistent per write.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn write_incident(&mut self, incident: Incident) {
        let id = incident.id;
        let fingerprints = incident.alerts.iter().flat_map(|a| a.fingerprints.iter());
        if incident.is_open() {
            self.open.insert(id);
            for fp in fingerprints {
                self.by_fingerprint.insert(fp.clone(), id);
            }
        } else {
            self.open.remove(&id);
            for fp in fingerprints {
                if self.by_fingerprint.get(fp) == Some(&id) {
                    self.by_fingerprint.remove(fp);
                }
            }
        }
        let slack = &incident.slack;
        if let Some(channel) = &slack.channel {
            for ts in [&slack.thread_ts, &slack.header_ts].into_iter().flatten() {
                self.by_place.insert(Place::message(channel, ts), id);
            }
        }
        if let Some(channel) = &slack.incident_channel {
            self.by_place.insert(Place::Channel(channel.clone()), id);
        }
        self.next_incident = self.next_incident.max(id.number() + 1);
        self.incidents.insert(id, incident);
    }

    fn push_inbox(&mut self, event: InboxEvent) -> InboxSeq {
        let seq = self.next_inbox;
        self.next_inbox += 1;
        self.inbox.insert(seq, event);
        seq
    }
}

impl Store for MemoryStore {
    fn next_incident_id(&self) -> Result<IncidentId, StoreError> {
        let n = self.lock().next_incident.max(1);
        IncidentId::new(n).map_err(|e| StoreError::Corrupt { key: "next incident id".into(), reason: e.0 })
    }

    fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        Ok(self.lock().incidents.get(&id).cloned())
    }

    fn find_open_incident_by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<Option<Incident>, StoreError> {
        let inner = self.lock();
        let found = inner.by_fingerprint.get(fingerprint).and_then(|id| inner.incidents.get(id));
        Ok(found.filter(|i| i.is_open()).cloned())
    }

    fn find_incident(&self, place: &Place) -> Result<Option<Incident>, StoreError> {
        let inner = self.lock();
        Ok(inner.by_place.get(place).and_then(|id| inner.incidents.get(id)).cloned())
    }

    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let inner = self.lock();
        Ok(inner.open.iter().filter_map(|id| inner.incidents.get(id)).cloned().collect())
    }

    fn all_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        Ok(self.lock().incidents.values().cloned().collect())
    }

    fn accept_events(&self, events: &[(InboxEvent, Option<DedupeKey>)]) -> Result<Vec<Acceptance>, StoreError> {
        let mut inner = self.lock();
        let mut in_batch = HashSet::new();
        let mut out = Vec::with_capacity(events.len());
        for (event, dedupe) in events {
            if let Some((key, until)) = dedupe {
                if !in_batch.insert(key.as_str()) || inner.seen.contains_key(key) {
                    out.push(Acceptance::Duplicate);
                    continue;
                }
                inner.seen.insert(key.clone(), *until);
            }
            out.push(Acceptance::Accepted(inner.push_inbox(event.clone())));
        }
        Ok(out)
    }

    fn next_inbox_event(&self) -> Result<Option<(InboxSeq, InboxEvent)>, StoreError> {
        Ok(self.lock().inbox.first_key_value().map(|(seq, e)| (*seq, e.clone())))
    }

    fn inbox_len(&self) -> Result<usize, StoreError> {
        Ok(self.lock().inbox.len())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .dead_letters
            .iter()
            .map(|(seq, (reason, event))| DeadLetter { seq: *seq, reason: reason.clone(), event: event.clone() })
            .collect())
    }

    fn expire_dedupe_keys(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let before = inner.seen.len();
        inner.seen.retain(|_, until| *until >= now);
        Ok(before - inner.seen.len())
    }

    fn commit(&self, commit: Commit) -> Result<Vec<OutboxSeq>, StoreError> {
        let mut inner = self.lock();
        if let Some(message) = commit.thread_message {
            inner.thread_messages.insert((message.channel.clone(), message.ts.clone()), message);
        }
        if let Some(logged) = commit.alert {
            let at = logged.alert.slack.as_ref().map(|m| (m.channel.clone(), m.ts.clone()));
            inner.alerts.push(logged);
            if let Some(at) = at {
                let index = inner.alerts.len() - 1;
                inner.alerts_by_message.insert(at, index);
            }
        }
        if let Some(update) = commit.alert_update
            && let Some(m) = &update.alert.slack
            && let Some(&index) = inner.alerts_by_message.get(&(m.channel.clone(), m.ts.clone()))
        {
            inner.alerts[index] = update;
        }
        if let Some(seq) = commit.consumed
            && let Some(event) = inner.inbox.remove(&seq)
            && let Some(reason) = commit.dead_letter
        {
            inner.dead_letters.insert(seq, (reason, event));
        }
        if let Some(incident) = commit.incident {
            inner.write_incident(incident);
        }
        let mut seqs = Vec::with_capacity(commit.outbox.len());
        for entry in commit.outbox {
            let seq = inner.next_outbox;
            inner.next_outbox += 1;
            inner.outbox.insert(seq, entry);
            seqs.push(seq);
        }
        Ok(seqs)
    }

    fn pending_outbox(&self) -> Result<Vec<(OutboxSeq, OutboxEntry)>, StoreError> {
        Ok(self.lock().outbox.iter().map(|(seq, e)| (*seq, e.clone())).collect())
    }

    fn complete_outbox(
        &self,
        seq: OutboxSeq,
        remember: Option<(&MessageKey, &Delivery)>,
        then: Option<&InboxEvent>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.outbox.remove(&seq);
        if let Some((key, delivery)) = remember {
            inner.message_refs.insert(key.clone(), delivery.clone());
        }
        if let Some(event) = then {
            inner.push_inbox(event.clone());
        }
        Ok(())
    }

    fn put_message_ref(&self, key: &MessageKey, delivery: &Delivery) -> Result<(), StoreError> {
        self.lock().message_refs.insert(key.clone(), delivery.clone());
        Ok(())
    }

    fn get_message_ref(&self, key: &MessageKey) -> Result<Option<Delivery>, StoreError> {
        Ok(self.lock().message_refs.get(key).cloned())
    }

    fn alert_count(&self) -> Result<usize, StoreError> {
        Ok(self.lock().alerts.len())
    }

    fn find_alert_by_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<LoggedAlert>, StoreError> {
        let inner = self.lock();
        let index = inner.alerts_by_message.get(&(channel.clone(), ts.to_string()));
        Ok(index.map(|i| inner.alerts[*i].clone()))
    }

    fn find_thread_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<ThreadMessage>, StoreError> {
        Ok(self.lock().thread_messages.get(&(channel.clone(), ts.to_string())).cloned())
    }

    fn persist(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
