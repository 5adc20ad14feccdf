//! The sled backend of [`Store`]: one database in the data directory, one tree per kind of
//! record and per index, multi-tree transactions for the processor's writes.
//!
//! Accepting events is one plain insert per batch, not a transaction: a sled transaction (and a
//! `Batch`) seals the log buffer before and after itself, and every sealed buffer is one more
//! write and `sync_file_range` on sled's I/O threads, three or four per accepted batch where the
//! flush needs one. A batch record holds its events' dedupe keys, so one insert makes both
//! durable together.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Db, Transactional, Tree};

use super::Snapshot;
use super::records::{decode, decode_inbox_batch, decode_inbox_batch_keys, encode, encode_inbox_batch};
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
/// Key in `meta` holding the last consumed inbox position (see [`InboxCursor`]).
const INBOX_CURSOR: &[u8] = b"inbox_consumed";
/// Key in `meta` holding the schema version of the database layout.
const LAYOUT_VERSION_KEY: &[u8] = b"layout_version";
/// sled's page cache (its default is 1 GiB). The working set is small: open incidents, the queues.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Bumped when trees or key formats change; older layouts are migrated on open.
/// 1: one inbox record per event, keyed by its position.
/// 2: one inbox record per accepted batch, consumption as a position in `meta`; dedupe expiry
///    records per batch.
/// 3: no `dedupe_keys` tree: the expiry records are the only record of dedupe keys, and the keys
///    are looked up in memory.
/// 4: a batch record holds its events' dedupe keys (record v2) until the record is dropped,
///    when they move to an expiry record; layout 3's records and expiry records read as they are.
const LAYOUT_VERSION: u64 = 4;
/// The tree of dedupe keys (key -> expiry) that layouts 1 and 2 kept beside the expiry records.
const OLD_DEDUPE_TREE: &[u8] = b"dedupe_keys";
/// Events consumed without effects after which the inbox's writer also writes the processor's
/// place (and drops finished records) when it makes a batch durable; other persists always do.
/// Each write of the place is a transaction, and so two more log writes (see the module notes);
/// a crash hands at most these events to the processor again, to the same nothing.
const CURSOR_EVERY: u64 = 1024;
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
    /// batch number -> the events accepted together and their dedupe keys
    /// ([`encode_inbox_batch`]); an event's position is its batch number and its index in the
    /// batch ([`position`]).
    inbox: Tree,
    /// Held while a batch number is drawn and its record written, so records appear in number
    /// order: the processor reads them in that order and never looks back.
    appending: Mutex<()>,
    /// The processor's place in the inbox.
    cursor: Mutex<InboxCursor>,
    /// Accepted events after the cursor. Kept by count rather than by reading the records:
    /// `/metrics` asks for it. Briefly off by a batch while a write and a read cross.
    pending: AtomicI64,
    outbox: Tree,
    /// Dedupe key -> expiry (ms), of every key remembered: read from the inbox records and
    /// `seen_by_expiry` on open and kept up to date by the writes, so accepting an event costs
    /// no tree operation per key. Held across the accepting write, whose outcome it decides.
    seen: Mutex<HashMap<Box<str>, u64>>,
    /// expiry (ms, big-endian) ++ batch number -> the batch's dedupe keys (a JSON list), to
    /// expire in time order, written when the batch's record is dropped (layouts 2 and 3 wrote
    /// it with the batch). Layout 1 wrote one entry per key: expiry ++ key -> ().
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

/// Where the processor is in the inbox. The processor is the only consumer, so its place is kept
/// here and written to `meta` with the next write that needs it: an event consumed with effects
/// writes it in the same transaction; an event consumed without any (chatter, duplicates,
/// ignored alerts) only moves it here, and [`Store::persist`] writes it. A crash before that
/// persist hands such events to the processor again, which changes nothing: they had no effects.
#[derive(Default)]
struct InboxCursor {
    /// Every event at or before this position is consumed (0: none).
    consumed: InboxSeq,
    /// The position last written to `meta`.
    written: InboxSeq,
    /// The batch read last, decoded: the processor takes its events out one by one (a slot
    /// taken and asked for again, after a failed commit, is read from the record again).
    cached: Option<(u64, Vec<Option<InboxEvent>>)>,
    /// Records of batches before this one are removed (0: not looked at since opening).
    dropped_before: u64,
    /// Events consumed since the position was last written.
    unwritten: u64,
}

/// Bits of a position that number an event inside its batch.
const INDEX_BITS: u32 = 16;
/// Most events one inbox record holds; a larger write spans several records.
const RECORD_EVENTS: usize = 1 << INDEX_BITS;

/// The position of the `index`th event of batch `batch`: batches are numbered from 1 in the
/// order they were written, so positions grow across batches and restarts.
fn position(batch: u64, index: usize) -> InboxSeq {
    (batch << INDEX_BITS) | index as u64
}

fn batch_of(seq: InboxSeq) -> u64 {
    seq >> INDEX_BITS
}

fn index_of(seq: InboxSeq) -> usize {
    (seq & (RECORD_EVENTS as u64 - 1)) as usize
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

/// The dedupe keys of an expiry record and their expiry (ms): a batch's JSON list, or one key
/// after the time (layout 1's entries, with no value).
fn expiry_record(key: &[u8], value: &[u8]) -> Result<(u64, Vec<Box<str>>), StoreError> {
    let until = from_be(&key[..8]);
    if value.is_empty() {
        return Ok((until, vec![String::from_utf8_lossy(&key[8..]).into()]));
    }
    let keys: Vec<Box<str>> = serde_json::from_slice(value)
        .map_err(|e| corrupt(format!("dedupe expiry {}", from_be(&key[8..])), e.to_string()))?;
    Ok((until, keys))
}

fn read_batch(key: &[u8], bytes: &[u8]) -> Result<Vec<InboxEvent>, StoreError> {
    decode_inbox_batch(bytes).map_err(|e| corrupt(format!("inbox batch {}", from_be(key)), e))
}

/// The dedupe keys a batch record holds and their expiry (ms).
fn batch_keys(key: &[u8], bytes: &[u8]) -> Result<(u64, Vec<Box<str>>), StoreError> {
    decode_inbox_batch_keys(bytes).map_err(|e| corrupt(format!("inbox batch {}", from_be(key)), e))
}

/// The indexes of a batch's events that come after `consumed`.
fn unconsumed(batch: u64, len: usize, consumed: InboxSeq) -> std::ops::Range<usize> {
    let from = if batch == batch_of(consumed) { index_of(consumed) + 1 } else { 0 };
    from.min(len)..len
}

/// Moves the consumed position in `meta` forward to `seq` (never back).
fn advance_cursor(meta: &TransactionalTree, seq: InboxSeq) -> Result<(), ConflictableTransactionError<StoreError>> {
    if meta.get(INBOX_CURSOR)?.is_none_or(|v| from_be(&v) < seq) {
        meta.insert(INBOX_CURSOR, &be(seq))?;
    }
    Ok(())
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
            appending: Mutex::new(()),
            cursor: Mutex::new(InboxCursor::default()),
            pending: AtomicI64::new(0),
            outbox: db.open_tree("outbox")?,
            seen: Mutex::new(HashMap::new()),
            seen_by_expiry: db.open_tree("dedupe_keys_by_expiry")?,
            message_refs: db.open_tree("message_refs")?,
            dead_letters: db.open_tree("dead_letters")?,
            alerts: db.open_tree("alerts")?,
            alerts_by_message: db.open_tree("alerts_by_message")?,
            thread_messages: db.open_tree("thread_messages")?,
            db,
        };
        match store.meta.get(LAYOUT_VERSION_KEY)?.map(|v| from_be(&v)) {
            None => {
                store.meta.insert(LAYOUT_VERSION_KEY, &be(LAYOUT_VERSION))?;
            }
            Some(1) => {
                store.db.drop_tree(OLD_DEDUPE_TREE)?;
                store.migrate_from_layout_1()?;
            }
            Some(v @ 2..=3) => {
                if v == 2 {
                    store.db.drop_tree(OLD_DEDUPE_TREE)?;
                }
                store.meta.insert(LAYOUT_VERSION_KEY, &be(LAYOUT_VERSION))?;
                store.db.flush()?;
            }
            Some(v) if v > LAYOUT_VERSION => {
                return Err(corrupt(
                    "layout_version",
                    format!(
                        "the data was written by a newer incident-commander (layout {v}, this build knows {LAYOUT_VERSION}); upgrade the binary"
                    ),
                ));
            }
            Some(_) => {}
        }
        let consumed = store.meta.get(INBOX_CURSOR)?.map_or(0, |v| from_be(&v));
        *store.cursor() = InboxCursor { consumed, written: consumed, ..InboxCursor::default() };
        let mut pending = 0;
        let mut remembered = Vec::new();
        for kv in store.inbox.iter() {
            let (k, v) = kv?;
            remembered.push(batch_keys(&k, &v)?);
            if from_be(&k) >= batch_of(consumed) {
                let events = read_batch(&k, &v)?;
                pending += unconsumed(from_be(&k), events.len(), consumed).len();
            }
        }
        store.pending.store(pending as i64, Ordering::SeqCst);
        for kv in store.seen_by_expiry.iter() {
            let (k, v) = kv?;
            remembered.push(expiry_record(&k, &v)?);
        }
        let mut seen = HashMap::new();
        for (until, keys) in remembered {
            for key in keys {
                let expiry = seen.entry(key).or_insert(until);
                *expiry = (*expiry).max(until);
            }
        }
        *store.seen() = seen;
        Ok(store)
    }

    /// Layout 1 kept one inbox record per event under its position: each becomes a batch of
    /// one, numbered one past its old position (sled's id generator is past every old position,
    /// so new batches still come after). Layout 1's dedupe expiry entries are still read.
    fn migrate_from_layout_1(&self) -> Result<(), StoreError> {
        let old: Vec<(sled::IVec, sled::IVec)> = self.inbox.iter().collect::<Result<_, _>>()?;
        let mut records = Vec::with_capacity(old.len());
        for (k, v) in &old {
            let event: InboxEvent = decode(v).map_err(|e| corrupt(format!("inbox event {}", from_be(k)), e))?;
            records.push((be(from_be(k) + 1), encode_inbox_batch(&[&event], &[], 0)));
        }
        let result = (&self.meta, &self.inbox).transaction(|(meta, inbox)| {
            for (k, _) in &old {
                inbox.remove(k)?;
            }
            for (k, record) in &records {
                inbox.insert(k, record.as_slice())?;
            }
            meta.insert(LAYOUT_VERSION_KEY, &be(LAYOUT_VERSION))?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        result.map_err(tx_error)?;
        self.db.flush()?;
        tracing::info!(events = old.len(), "sled data directory migrated to layout {LAYOUT_VERSION}");
        Ok(())
    }

    fn cursor(&self) -> MutexGuard<'_, InboxCursor> {
        // The cursor holds plain numbers and a cache: a panic elsewhere leaves it consistent.
        self.cursor.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn seen(&self) -> MutexGuard<'_, HashMap<Box<str>, u64>> {
        // Keys are added only after their transaction committed: a panic leaves it consistent.
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Batch `batch`'s events as its record holds them; `None` when the record is gone.
    fn read_record(&self, batch: u64) -> Result<Option<Vec<InboxEvent>>, StoreError> {
        let Some(v) = self.inbox.get(be(batch))? else { return Ok(None) };
        read_batch(&be(batch), &v).map(Some)
    }

    /// Batch `batch`'s events, into the cache (unless it holds that batch); `None` when the
    /// record is gone.
    fn load<'c>(
        &self,
        cursor: &'c mut InboxCursor,
        batch: u64,
    ) -> Result<Option<&'c mut Vec<Option<InboxEvent>>>, StoreError> {
        if cursor.cached.as_ref().is_none_or(|(b, _)| *b != batch) {
            let Some(events) = self.read_record(batch)? else { return Ok(None) };
            cursor.cached = Some((batch, events.into_iter().map(Some).collect()));
        }
        Ok(cursor.cached.as_mut().map(|(_, events)| events))
    }

    /// Takes the event at `seq` out of the cache, reading its record again when it was taken.
    fn take(&self, cursor: &mut InboxCursor, seq: InboxSeq) -> Result<Option<InboxEvent>, StoreError> {
        let Some(events) = self.load(cursor, batch_of(seq))? else { return Ok(None) };
        if let Some(event) = events.get_mut(index_of(seq)).and_then(Option::take) {
            return Ok(Some(event));
        }
        cursor.cached = None;
        let Some(events) = self.load(cursor, batch_of(seq))? else { return Ok(None) };
        Ok(events.get_mut(index_of(seq)).and_then(Option::take))
    }

    /// The event at `seq` read from its record (for a dead letter: the processor has taken it
    /// out of the cache).
    fn event_at(&self, seq: InboxSeq) -> Result<Option<InboxEvent>, StoreError> {
        Ok(self.read_record(batch_of(seq))?.and_then(|events| events.into_iter().nth(index_of(seq))))
    }

    /// Writes the processor's place to `meta` and drops the records it has finished.
    fn write_cursor(&self) -> Result<(), StoreError> {
        let mut cursor = self.cursor();
        let consumed = cursor.consumed;
        if consumed == 0 {
            return Ok(());
        }
        let last = batch_of(consumed);
        let last_finished = self.load(&mut cursor, last)?.is_none_or(|events| index_of(consumed) + 1 >= events.len());
        let keep_from = if last_finished { last + 1 } else { last };
        if consumed == cursor.written && keep_from <= cursor.dropped_before {
            return Ok(());
        }
        // A dropped record's dedupe keys are still remembered: they move to an expiry record
        // in the same transaction.
        let mut finished = Vec::new();
        for kv in self.inbox.range(..be(keep_from)) {
            let (k, v) = kv?;
            let (until, keys) = batch_keys(&k, &v)?;
            let expiry = (!keys.is_empty()).then(|| {
                let mut expiry_key = be(until).to_vec();
                expiry_key.extend_from_slice(&k);
                (expiry_key, serde_json::to_vec(&keys).expect("strings serialize"))
            });
            finished.push((k, expiry));
        }
        let result = (&self.meta, &self.inbox, &self.seen_by_expiry).transaction(|(meta, inbox, by_expiry)| {
            advance_cursor(meta, consumed)?;
            for (k, expiry) in &finished {
                inbox.remove(k)?;
                if let Some((expiry_key, keys)) = expiry {
                    by_expiry.insert(expiry_key.as_slice(), keys.as_slice())?;
                }
            }
            Ok(())
        });
        result.map_err(tx_error)?;
        cursor.written = consumed;
        cursor.dropped_before = keep_from;
        cursor.unwritten = 0;
        Ok(())
    }

    /// Marks `seq` consumed in memory (the next write of the cursor makes it durable).
    fn consume(&self, cursor: &mut InboxCursor, seq: InboxSeq) {
        if seq > cursor.consumed {
            cursor.consumed = seq;
            cursor.unwritten += 1;
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
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
        // Which events are duplicates is decided in memory, under the lock that also covers
        // recording their keys once written. Each record is one insert holding its events and
        // their keys (see the module notes), so an event is never durable without its key; a
        // write of several records that a crash cuts short was not acknowledged, and the
        // sender's retry finds the events that made it refused and the others accepted.
        let mut seen = self.seen();
        let mut in_batch = HashSet::new();
        let mut accepted: Vec<(&InboxEvent, Option<(&str, u64)>)> = Vec::with_capacity(events.len());
        let mut out = Vec::with_capacity(events.len());
        for (event, dedupe) in events {
            let mut key = None;
            if let Some((k, until)) = dedupe {
                if seen.contains_key(k.as_str()) || !in_batch.insert(k.as_str()) {
                    out.push(Acceptance::Duplicate);
                    continue;
                }
                key = Some((k.as_str(), ms(*until)));
            }
            out.push(Acceptance::Accepted(0));
            accepted.push((event, key));
        }
        let mut numbers = Vec::with_capacity(accepted.len().div_ceil(RECORD_EVENTS));
        for record in accepted.chunks(RECORD_EVENTS) {
            let events: Vec<&InboxEvent> = record.iter().map(|(e, _)| *e).collect();
            let keys: Vec<&str> = record.iter().filter_map(|(_, k)| k.map(|(k, _)| k)).collect();
            let until = record.iter().filter_map(|(_, k)| k.map(|(_, until)| until)).max().unwrap_or(0);
            let bytes = encode_inbox_batch(&events, &keys, until);
            let _in_order = self.appending.lock().unwrap_or_else(|p| p.into_inner());
            let number = self.db.generate_id()? + 1;
            self.inbox.insert(be(number), bytes)?;
            numbers.push(number);
            // In memory each key keeps its own time; the record keeps the batch's latest.
            for (key, until) in record.iter().filter_map(|(_, k)| *k) {
                seen.insert(key.into(), until);
            }
        }
        drop(seen);
        let mut next = 0;
        for acceptance in &mut out {
            if let Acceptance::Accepted(seq) = acceptance {
                *seq = position(numbers[next / RECORD_EVENTS], next % RECORD_EVENTS);
                next += 1;
            }
        }
        self.pending.fetch_add(next as i64, Ordering::SeqCst);
        Ok(out)
    }

    fn next_inbox_event(&self) -> Result<Option<(InboxSeq, InboxEvent)>, StoreError> {
        let mut cursor = self.cursor();
        let consumed = cursor.consumed;
        let in_hand = batch_of(consumed);
        // Usually the next event is in the batch in hand.
        let next = match self.load(&mut cursor, in_hand)? {
            Some(events) => unconsumed(in_hand, events.len(), consumed).next().map(|i| position(in_hand, i)),
            None => None,
        };
        let next = match next {
            Some(seq) => seq,
            None => {
                let Some(key) = self.inbox.range(be(in_hand + 1)..).keys().next().transpose()? else {
                    return Ok(None);
                };
                position(from_be(&key), 0)
            }
        };
        Ok(self.take(&mut cursor, next)?.map(|event| (next, event)))
    }

    fn inbox_len(&self) -> Result<usize, StoreError> {
        Ok(self.pending.load(Ordering::SeqCst).max(0) as usize)
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
        // Most events change nothing but the inbox (chatter, duplicates, ignored alerts): they
        // only move the cursor (see `InboxCursor`), and the ten-tree transaction (which contends
        // with the inbox writer) is kept for the steps that need it.
        if let Some(seq) = commit.consumption_only() {
            let mut cursor = self.cursor();
            self.consume(&mut cursor, seq);
            return Ok(Vec::new());
        }
        let mut cursor = self.cursor();
        let dead_event: Option<serde_json::Value> = match (&commit.dead_letter, commit.consumed) {
            (Some(_), Some(seq)) => {
                self.event_at(seq)?.map(|e| serde_json::from_slice(&encode(&e)).unwrap_or_default())
            }
            _ => None,
        };
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
            &self.outbox,
            &self.dead_letters,
            &self.alerts,
            &self.alerts_by_message,
            &self.thread_messages,
        ];
        let result = trees[..].transaction(|t| {
            let (meta, incidents, open, by_fingerprint, by_message) = (&t[0], &t[1], &t[2], &t[3], &t[4]);
            let (outbox, dead, alerts, alerts_by_message, thread_messages) = (&t[5], &t[6], &t[7], &t[8], &t[9]);
            if let Some((key, record)) = &thread_record {
                thread_messages.insert(key.as_slice(), record.as_slice())?;
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
                advance_cursor(meta, seq)?;
                if let (Some(reason), Some(event)) = (&commit.dead_letter, &dead_event) {
                    let record = serde_json::json!({"reason": reason, "event": event});
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
        let seqs = result.map_err(tx_error)?;
        if let Some(seq) = commit.consumed {
            self.consume(&mut cursor, seq);
            cursor.written = cursor.written.max(seq);
            cursor.unwritten = 0;
        }
        Ok(seqs)
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
        let follow_up = then.map(|e| encode_inbox_batch(&[e], &[], 0));
        let _in_order = follow_up.as_ref().map(|_| self.appending.lock().unwrap_or_else(|p| p.into_inner()));
        let result = (&self.outbox, &self.message_refs, &self.inbox).transaction(|(outbox, refs, inbox)| {
            outbox.remove(&be(seq))?;
            if let Some((key, delivery)) = &remembered {
                refs.insert(key.as_slice(), delivery.as_slice())?;
            }
            if let Some(record) = &follow_up {
                let batch = inbox.generate_id()? + 1;
                inbox.insert(&be(batch), record.as_slice())?;
            }
            Ok(())
        });
        result.map_err(tx_error)?;
        if follow_up.is_some() {
            self.pending.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
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
        let mut due = sled::Batch::default();
        let mut expired = Vec::new();
        for kv in self.seen_by_expiry.range(..cutoff.to_vec()) {
            let (k, v) = kv?;
            expired.push(expiry_record(&k, &v)?);
            due.remove(k);
        }
        // Keys still in the records of events waiting are due at their time too. The record
        // keeps them until it is dropped (and a reopened store reads them again, until its
        // first expiry pass, which the processor runs at start).
        let mut held = Vec::new();
        for kv in self.inbox.iter() {
            let (k, v) = kv?;
            let (until, keys) = batch_keys(&k, &v)?;
            if !keys.is_empty() && until < ms(now) {
                held.push((until, keys));
            }
        }
        if expired.is_empty() && held.is_empty() {
            return Ok(0);
        }
        let mut seen = self.seen();
        if !expired.is_empty() {
            self.seen_by_expiry.apply_batch(due)?;
        }
        // A key accepted again after it expired has a later time: that one is kept.
        let mut forget = |key: &str, until: u64| {
            let due = seen.get(key).is_some_and(|t| *t <= until);
            if due {
                seen.remove(key);
            }
            due
        };
        let mut dropped = 0;
        for (until, keys) in expired {
            for key in keys {
                forget(&key, until);
                dropped += 1;
            }
        }
        for (until, keys) in held {
            dropped += keys.iter().filter(|key| forget(key, until)).count();
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
        self.write_cursor()?;
        self.db.flush()?;
        Ok(())
    }

    fn persist_accepted(&self) -> Result<(), StoreError> {
        let unwritten = self.cursor().unwritten;
        if unwritten >= CURSOR_EVERY {
            self.write_cursor()?;
        }
        self.db.flush()?;
        Ok(())
    }
}

impl SledStore {
    /// Everything the database holds (see [`Snapshot`]), for a move to another backend.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut s = Snapshot { next_incident_id: self.next_incident_id()?.number(), ..Snapshot::default() };
        s.incidents = self.all_incidents()?;
        let consumed = self.cursor().consumed;
        for kv in self.inbox.range(be(batch_of(consumed))..) {
            let (k, v) = kv?;
            let batch = from_be(&k);
            let events = read_batch(&k, &v)?;
            for i in unconsumed(batch, events.len(), consumed) {
                s.inbox.push((position(batch, i), events[i].clone()));
            }
        }
        s.outbox = self.pending_outbox()?;
        for (key, until) in self.seen().iter() {
            let until = DateTime::<Utc>::from_timestamp_millis(*until as i64).unwrap_or_default();
            s.dedupe_keys.push((key.to_string(), until));
        }
        s.dedupe_keys.sort();
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
