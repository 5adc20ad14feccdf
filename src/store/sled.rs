//! The sled backend of [`Store`]: one database in the data directory, one tree per kind of
//! record and per index, multi-tree transactions for every write.

use std::path::Path;

use chrono::{DateTime, Utc};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Db, Transactional, Tree};

use super::Snapshot;
use super::records::{decode, encode};
use crate::app::inbox::{InboxEvent, InboxSeq};
use crate::app::outbox::{Delivery, MessageKey, OutboxEntry, OutboxSeq};
use crate::app::store::{
    Acceptance, Commit, DeadLetter, DedupeKey, LoggedAlert, Place, Store, StoreError, ThreadMessage,
};
use crate::domain::alert::Fingerprint;
use crate::domain::ids::{ChannelId, IncidentId};
use crate::domain::incident::Incident;

const BACKEND: &str = "sled";

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        StoreError::Unavailable { backend: BACKEND, message: e.to_string() }
    }
}

/// Key in `meta` holding the next incident number.
const NEXT_INCIDENT_ID: &[u8] = b"next_incident_id";
/// Key in `meta` holding the schema version of the database layout.
const LAYOUT_VERSION_KEY: &[u8] = b"layout_version";
/// sled's page cache (its default is 1 GiB). The working set is small: open incidents, the queues.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Bumped when trees or key formats change; older layouts are migrated on open.
const LAYOUT_VERSION: u64 = 1;
/// How long opening waits for a previous holder of the data directory to release it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether sled failed because another handle holds the directory's file lock. sled reports it
/// only as an I/O error with this message (sled 0.34), so the check reads the message.
fn is_lock_contention(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

pub struct SledStore {
    db: Db,
    meta: Tree,
    incidents: Tree,
    /// Open incident ids (key only), for timers and listings.
    open: Tree,
    /// fingerprint -> incident id, while the incident is open.
    by_fingerprint: Tree,
    /// `channel/ts` (thread parent, header) or `channel/` (incident channel) -> incident id.
    by_message: Tree,
    inbox: Tree,
    outbox: Tree,
    /// dedupe key -> expiry (ms, big-endian).
    seen: Tree,
    /// expiry (ms, big-endian) ++ dedupe key -> (), to expire in time order.
    seen_by_expiry: Tree,
    /// message key -> delivery (channel, ts).
    message_refs: Tree,
    /// inbox seq -> {reason, event} for events that could not be handled.
    dead_letters: Tree,
    /// id -> logged alert: every alert received.
    alerts: Tree,
    /// `channel/ts` -> alert id, for alerts that arrived as Slack messages.
    alerts_by_message: Tree,
    /// `channel/ts` -> message seen in an incident thread or channel.
    thread_messages: Tree,
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn from_be(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

fn ms(t: DateTime<Utc>) -> u64 {
    t.timestamp_millis().max(0) as u64
}

fn message_index_key(channel: &ChannelId, ts: &str) -> Vec<u8> {
    format!("{channel}/{ts}").into_bytes()
}

/// The index key of a place: `channel/ts` for a message, `channel/` for a whole channel (a
/// message ts is never empty).
fn place_key(place: &Place) -> Vec<u8> {
    match place {
        Place::Message { channel, ts } => message_index_key(channel, ts),
        Place::Channel(channel) => message_index_key(channel, ""),
    }
}

fn corrupt(key: impl std::fmt::Display, reason: String) -> StoreError {
    StoreError::Corrupt { key: key.to_string(), reason }
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir`. Only one process may hold a directory.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_waiting(dir, LOCK_WAIT)
    }

    /// Opens the store, waiting up to `lock_wait` for a previous holder of the directory's lock
    /// to let go. sled releases the lock from background threads a moment after the last handle
    /// drops, so a restart in the same process (or a supervisor restarting right after exit) would
    /// otherwise fail; a directory another live process holds still fails, after the wait.
    pub fn open_waiting(dir: &Path, lock_wait: std::time::Duration) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable {
            backend: BACKEND,
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        let config = sled::Config::new()
            .path(dir.join("db"))
            // Durability comes from explicit flushes before acknowledging; the background flush
            // only bounds how much unacknowledged work a crash can lose.
            .flush_every_ms(Some(500))
            .cache_capacity(CACHE_BYTES);
        let deadline = std::time::Instant::now() + lock_wait;
        let mut pause = std::time::Duration::from_millis(5);
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if is_lock_contention(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(StoreError::Locked {
                        what: format!("the data directory {}", dir.display()),
                        reason: e.to_string(),
                    });
                }
            }
        };
        let store = SledStore {
            meta: db.open_tree("meta")?,
            incidents: db.open_tree("incidents")?,
            open: db.open_tree("open_incidents")?,
            by_fingerprint: db.open_tree("incident_by_fingerprint")?,
            by_message: db.open_tree("incident_by_message")?,
            inbox: db.open_tree("inbox")?,
            outbox: db.open_tree("outbox")?,
            seen: db.open_tree("dedupe_keys")?,
            seen_by_expiry: db.open_tree("dedupe_keys_by_expiry")?,
            message_refs: db.open_tree("message_refs")?,
            dead_letters: db.open_tree("dead_letters")?,
            alerts: db.open_tree("alerts")?,
            alerts_by_message: db.open_tree("alerts_by_message")?,
            thread_messages: db.open_tree("thread_messages")?,
            db,
        };
        match store.meta.get(LAYOUT_VERSION_KEY)? {
            None => {
                store.meta.insert(LAYOUT_VERSION_KEY, &be(LAYOUT_VERSION))?;
            }
            Some(v) if from_be(&v) > LAYOUT_VERSION => {
                return Err(corrupt(
                    "layout_version",
                    format!(
                        "the data was written by a newer incident-commander (layout {}, this build knows {LAYOUT_VERSION}); upgrade the binary",
                        from_be(&v)
                    ),
                ));
            }
            Some(_) => {}
        }
        Ok(store)
    }

    fn read_incident(&self, raw: Option<sled::IVec>) -> Result<Option<Incident>, StoreError> {
        let Some(id_bytes) = raw else { return Ok(None) };
        let Some(bytes) = self.incidents.get(&id_bytes)? else { return Ok(None) };
        decode(&bytes).map(Some).map_err(|e| corrupt(format!("incident {}", from_be(&id_bytes)), e))
    }

    fn scan_incidents(&self, ids: impl Iterator<Item = sled::Result<sled::IVec>>) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(incident) = self.read_incident(Some(id?))? {
                out.push(incident);
            }
        }
        Ok(out)
    }
}

/// Writes an incident and keeps its indexes in step.
fn write_incident(
    incidents: &TransactionalTree,
    open: &TransactionalTree,
    by_fingerprint: &TransactionalTree,
    by_message: &TransactionalTree,
    meta: &TransactionalTree,
    incident: &Incident,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let id = be(incident.id.number());
    incidents.insert(&id, encode(incident))?;
    let fingerprints = incident.alerts.iter().flat_map(|a| a.fingerprints.iter());
    if incident.is_open() {
        open.insert(&id, &[])?;
        for fp in fingerprints {
            by_fingerprint.insert(fp.as_str().as_bytes(), &id)?;
        }
    } else {
        open.remove(&id)?;
        for fp in fingerprints {
            if by_fingerprint.get(fp.as_str().as_bytes())?.is_some_and(|v| v.as_ref() == id) {
                by_fingerprint.remove(fp.as_str().as_bytes())?;
            }
        }
    }
    let slack = &incident.slack;
    if let Some(channel) = &slack.channel {
        for ts in [&slack.thread_ts, &slack.header_ts].into_iter().flatten() {
            by_message.insert(message_index_key(channel, ts), &id)?;
        }
    }
    if let Some(channel) = &slack.incident_channel {
        by_message.insert(place_key(&Place::Channel(channel.clone())), &id)?;
    }
    let next = meta.get(NEXT_INCIDENT_ID)?.map(|v| from_be(&v)).unwrap_or(1);
    if incident.id.number() >= next {
        meta.insert(NEXT_INCIDENT_ID, &be(incident.id.number() + 1))?;
    }
    Ok(())
}

impl Store for SledStore {
    fn next_incident_id(&self) -> Result<IncidentId, StoreError> {
        let n = self.meta.get(NEXT_INCIDENT_ID)?.map(|v| from_be(&v)).unwrap_or(1);
        IncidentId::new(n).map_err(|e| corrupt("next_incident_id", e.0))
    }

    fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.read_incident(Some(sled::IVec::from(&be(id.number()))))
    }

    fn find_open_incident_by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<Option<Incident>, StoreError> {
        let found = self.read_incident(self.by_fingerprint.get(fingerprint.as_str().as_bytes())?)?;
        Ok(found.filter(Incident::is_open))
    }

    fn find_incident(&self, place: &Place) -> Result<Option<Incident>, StoreError> {
        self.read_incident(self.by_message.get(place_key(place))?)
    }

    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.scan_incidents(self.open.iter().keys())
    }

    fn all_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.scan_incidents(self.incidents.iter().keys())
    }

    fn accept_events(&self, events: &[(InboxEvent, Option<DedupeKey>)]) -> Result<Vec<Acceptance>, StoreError> {
        let records: Vec<Vec<u8>> = events.iter().map(|(e, _)| encode(e)).collect();
        let result = (&self.inbox, &self.seen, &self.seen_by_expiry).transaction(|(inbox, seen, by_expiry)| {
            let mut out = Vec::with_capacity(events.len());
            let mut keys_in_batch = std::collections::HashSet::new();
            for ((_, dedupe), record) in events.iter().zip(&records) {
                if let Some((key, until)) = dedupe {
                    if !keys_in_batch.insert(key.clone()) || seen.get(key.as_bytes())?.is_some() {
                        out.push(Acceptance::Duplicate);
                        continue;
                    }
                    seen.insert(key.as_bytes(), &be(ms(*until)))?;
                    let mut expiry_key = be(ms(*until)).to_vec();
                    expiry_key.extend_from_slice(key.as_bytes());
                    by_expiry.insert(expiry_key, &[])?;
                }
                let seq = inbox.generate_id()?;
                inbox.insert(&be(seq), record.as_slice())?;
                out.push(Acceptance::Accepted(seq));
            }
            Ok(out)
        });
        result.map_err(tx_error)
    }

    fn next_inbox_event(&self) -> Result<Option<(InboxSeq, InboxEvent)>, StoreError> {
        let Some((k, v)) = self.inbox.first()? else { return Ok(None) };
        let seq = from_be(&k);
        let event = decode(&v).map_err(|e| corrupt(format!("inbox event {seq}"), e))?;
        Ok(Some((seq, event)))
    }

    fn inbox_len(&self) -> Result<usize, StoreError> {
        Ok(self.inbox.len())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_letters
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let seq = from_be(&k);
                let record: serde_json::Value =
                    serde_json::from_slice(&v).map_err(|e| corrupt(format!("dead letter {seq}"), e.to_string()))?;
                let reason = record["reason"].as_str().unwrap_or_default().to_string();
                let event_bytes = serde_json::to_vec(&record["event"]).expect("JSON values serialize");
                let event = decode(&event_bytes).map_err(|e| corrupt(format!("dead letter {seq}"), e))?;
                Ok(DeadLetter { seq, reason, event })
            })
            .collect()
    }

    fn commit(&self, commit: Commit) -> Result<Vec<OutboxSeq>, StoreError> {
        // Most events change nothing but the inbox (chatter, duplicates, ignored alerts): one
        // removal is atomic by itself, and keeps the eleven-tree transaction (which contends
        // with the inbox writer) for the steps that need it.
        if let Commit {
            consumed: Some(seq),
            incident: None,
            dead_letter: None,
            alert: None,
            alert_update: None,
            thread_message: None,
            outbox,
        } = &commit
            && outbox.is_empty()
        {
            self.inbox.remove(be(*seq))?;
            return Ok(Vec::new());
        }
        let outbox_records: Vec<Vec<u8>> = commit.outbox.iter().map(encode).collect();
        let alert_record = commit.alert.as_ref().map(encode);
        let thread_record = commit.thread_message.as_ref().map(|m| (message_index_key(&m.channel, &m.ts), encode(m)));
        let alert_message =
            commit.alert.as_ref().and_then(|a| a.alert.slack.as_ref()).map(|m| message_index_key(&m.channel, &m.ts));
        let alert_update = commit.alert_update.as_ref().and_then(|a| {
            let m = a.alert.slack.as_ref()?;
            Some((message_index_key(&m.channel, &m.ts), encode(a)))
        });
        let trees = [
            &self.meta,
            &self.incidents,
            &self.open,
            &self.by_fingerprint,
            &self.by_message,
            &self.inbox,
            &self.outbox,
            &self.dead_letters,
            &self.alerts,
            &self.alerts_by_message,
            &self.thread_messages,
        ];
        let result = trees[..].transaction(|t| {
            let (meta, incidents, open, by_fingerprint, by_message) = (&t[0], &t[1], &t[2], &t[3], &t[4]);
            let (inbox, outbox, dead, alerts, alerts_by_message) = (&t[5], &t[6], &t[7], &t[8], &t[9]);
            if let Some((key, record)) = &thread_record {
                t[10].insert(key.as_slice(), record.as_slice())?;
            }
            if let Some(record) = &alert_record {
                let id = alerts.generate_id()?;
                alerts.insert(&be(id), record.as_slice())?;
                if let Some(key) = &alert_message {
                    alerts_by_message.insert(key.as_slice(), &be(id))?;
                }
            }
            if let Some((key, record)) = &alert_update
                && let Some(id) = alerts_by_message.get(key.as_slice())?
            {
                alerts.insert(id, record.as_slice())?;
            }
            if let Some(seq) = commit.consumed {
                let removed = inbox.remove(&be(seq))?;
                if let (Some(reason), Some(event)) = (&commit.dead_letter, removed) {
                    let record = serde_json::json!({
                        "reason": reason,
                        "event": serde_json::from_slice::<serde_json::Value>(&event).unwrap_or_default(),
                    });
                    dead.insert(&be(seq), serde_json::to_vec(&record).expect("JSON values serialize"))?;
                }
            }
            if let Some(incident) = &commit.incident {
                write_incident(incidents, open, by_fingerprint, by_message, meta, incident)?;
            }
            let mut seqs = Vec::with_capacity(outbox_records.len());
            for record in &outbox_records {
                let seq = outbox.generate_id()?;
                outbox.insert(&be(seq), record.as_slice())?;
                seqs.push(seq);
            }
            Ok(seqs)
        });
        result.map_err(tx_error)
    }

    fn pending_outbox(&self) -> Result<Vec<(OutboxSeq, OutboxEntry)>, StoreError> {
        self.pending_outbox_after(None)
    }

    fn pending_outbox_after(&self, after: Option<OutboxSeq>) -> Result<Vec<(OutboxSeq, OutboxEntry)>, StoreError> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        self.outbox
            .range(be(from)..)
            .map(|kv| {
                let (k, v) = kv?;
                let seq = from_be(&k);
                let entry = decode(&v).map_err(|e| corrupt(format!("outbox entry {seq}"), e))?;
                Ok((seq, entry))
            })
            .collect()
    }

    fn complete_outbox(
        &self,
        seq: OutboxSeq,
        remember: Option<(&MessageKey, &Delivery)>,
        then: Option<&InboxEvent>,
    ) -> Result<(), StoreError> {
        let remembered = remember.map(|(k, d)| (k.to_string().into_bytes(), encode(d)));
        let follow_up = then.map(encode);
        let result = (&self.outbox, &self.message_refs, &self.inbox).transaction(|(outbox, refs, inbox)| {
            outbox.remove(&be(seq))?;
            if let Some((key, delivery)) = &remembered {
                refs.insert(key.as_slice(), delivery.as_slice())?;
            }
            if let Some(event) = &follow_up {
                let n = inbox.generate_id()?;
                inbox.insert(&be(n), event.as_slice())?;
            }
            Ok(())
        });
        result.map_err(tx_error)
    }

    fn put_message_ref(&self, key: &MessageKey, delivery: &Delivery) -> Result<(), StoreError> {
        self.message_refs.insert(key.to_string().as_bytes(), encode(delivery))?;
        Ok(())
    }

    fn get_message_ref(&self, key: &MessageKey) -> Result<Option<Delivery>, StoreError> {
        match self.message_refs.get(key.to_string().as_bytes())? {
            None => Ok(None),
            Some(v) => decode(&v).map(Some).map_err(|e| corrupt(format!("message ref {key}"), e)),
        }
    }

    fn expire_dedupe_keys(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let cutoff = be(ms(now));
        let mut dropped = 0;
        for kv in self.seen_by_expiry.range(..cutoff.to_vec()) {
            let (k, _) = kv?;
            let key = &k[8..];
            let result = (&self.seen, &self.seen_by_expiry).transaction(|(seen, by_expiry)| {
                // A key re-accepted later has a later expiry; only drop it if this entry is current.
                if seen.get(key)?.is_some_and(|v| v.as_ref() == &k[..8]) {
                    seen.remove(key)?;
                }
                by_expiry.remove(&k)?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            });
            result.map_err(tx_error)?;
            dropped += 1;
        }
        Ok(dropped)
    }

    fn find_thread_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<ThreadMessage>, StoreError> {
        match self.thread_messages.get(message_index_key(channel, ts))? {
            None => Ok(None),
            Some(v) => decode(&v).map(Some).map_err(|e| corrupt(format!("thread message {channel}/{ts}"), e)),
        }
    }

    fn alert_count(&self) -> Result<usize, StoreError> {
        Ok(self.alerts.len())
    }

    fn find_alert_by_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<LoggedAlert>, StoreError> {
        let Some(id) = self.alerts_by_message.get(message_index_key(channel, ts))? else { return Ok(None) };
        match self.alerts.get(&id)? {
            None => Ok(None),
            Some(v) => decode(&v).map(Some).map_err(|e| corrupt(format!("alert {}", from_be(&id)), e)),
        }
    }

    fn persist(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

impl SledStore {
    /// Everything the database holds (see [`Snapshot`]), for a move to another backend.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut s = Snapshot { next_incident_id: self.next_incident_id()?.number(), ..Snapshot::default() };
        s.incidents = self.all_incidents()?;
        for kv in self.inbox.iter() {
            let (k, v) = kv?;
            let n = from_be(&k);
            s.inbox.push((n, decode(&v).map_err(|e| corrupt(format!("inbox event {n}"), e))?));
        }
        s.outbox = self.pending_outbox()?;
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let until = DateTime::<Utc>::from_timestamp_millis(from_be(&v) as i64).unwrap_or_default();
            s.dedupe_keys.push((key, until));
        }
        for kv in self.message_refs.iter() {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let delivery = decode(&v).map_err(|e| corrupt(format!("message ref {key}"), e))?;
            s.message_refs.push((key, delivery));
        }
        s.dead_letters = self.dead_letters()?;
        for kv in self.alerts.iter() {
            let (k, v) = kv?;
            let id = from_be(&k);
            s.alerts.push((id, decode(&v).map_err(|e| corrupt(format!("alert {id}"), e))?));
        }
        for kv in self.thread_messages.iter() {
            let (k, v) = kv?;
            let what = String::from_utf8_lossy(&k).into_owned();
            s.thread_messages.push(decode(&v).map_err(|e| corrupt(format!("thread message {what}"), e))?);
        }
        Ok(s)
    }
}
