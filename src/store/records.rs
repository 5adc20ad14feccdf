//! How backends write records: a versioned JSON envelope around every value the application
//! stores (incidents, inbox events, outbox calls, deliveries, the alert log).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::app::inbox::InboxEvent;
use crate::app::outbox::{Delivery, OutboxEntry};
use crate::app::store::{LoggedAlert, ThreadMessage};
use crate::domain::incident::Incident;

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
    read_version(env.v, env.data)
}

/// Reads `data` written as version `v` of `T`: as it is, upgraded, or refused when newer.
fn read_version<T: Versioned>(v: u32, data: serde_json::Value) -> Result<T, String> {
    if v == T::VERSION {
        serde_json::from_value(data).map_err(|e| e.to_string())
    } else if v < T::VERSION {
        T::upgrade(v, data)
    } else {
        Err(format!("written by a newer version (record v{v}, this build reads up to v{})", T::VERSION))
    }
}

/// A batch of inbox events written together (the sled backend keeps one record per batch):
/// `{"v": 2, "data": {"event_v": <InboxEvent's version>, "events": [...], "dedupe": {"until":
/// <ms>, "keys": [...]}}}`. `dedupe` holds the dedupe keys of the batch's events, remembered
/// until the latest of their times (ms since the epoch), so one write makes an event and its
/// key durable together; it is left out when no event has a key. Version 1 had no `dedupe`
/// (its keys were written beside it).
#[derive(Serialize)]
struct InboxBatchOut<'a> {
    event_v: u32,
    events: &'a [&'a InboxEvent],
    #[serde(skip_serializing_if = "Option::is_none")]
    dedupe: Option<BatchKeysOut<'a>>,
}

#[derive(Serialize)]
struct BatchKeysOut<'a> {
    until: u64,
    keys: &'a [&'a str],
}

#[derive(Deserialize)]
struct InboxBatchIn {
    event_v: u32,
    events: Vec<serde_json::Value>,
}

/// The version of the inbox batch record's own shape (its events carry theirs).
const INBOX_BATCH_VERSION: u32 = 2;

/// A batch record of `events`, with the dedupe `keys` among them remembered until `until` (ms).
pub fn encode_inbox_batch(events: &[&InboxEvent], keys: &[&str], until: u64) -> Vec<u8> {
    let dedupe = (!keys.is_empty()).then_some(BatchKeysOut { until, keys });
    let batch = InboxBatchOut { event_v: InboxEvent::VERSION, events, dedupe };
    serde_json::to_vec(&EnvelopeOut { v: INBOX_BATCH_VERSION, data: &batch }).expect("records serialize to JSON")
}

/// Reads a batch record; its events are read (or upgraded) like single event records of the
/// version the batch names.
pub fn decode_inbox_batch(bytes: &[u8]) -> Result<Vec<InboxEvent>, String> {
    // The batch this build wrote: read straight into events, without a JSON tree in between.
    #[derive(Deserialize)]
    struct Current {
        v: u32,
        data: CurrentBatch,
    }
    #[derive(Deserialize)]
    struct CurrentBatch {
        event_v: u32,
        events: Vec<InboxEvent>,
    }
    if let Ok(Current { v: 1..=INBOX_BATCH_VERSION, data }) = serde_json::from_slice::<Current>(bytes)
        && data.event_v == InboxEvent::VERSION
    {
        return Ok(data.events);
    }
    let env: EnvelopeIn = serde_json::from_slice(bytes).map_err(|e| format!("not a record envelope: {e}"))?;
    if !(1..=INBOX_BATCH_VERSION).contains(&env.v) {
        return Err(format!("an inbox batch of record v{}, this build reads up to v{INBOX_BATCH_VERSION}", env.v));
    }
    let batch: InboxBatchIn = serde_json::from_value(env.data).map_err(|e| e.to_string())?;
    batch.events.into_iter().map(|data| read_version(batch.event_v, data)).collect()
}

/// The dedupe keys a batch record holds and their time (ms): none for a batch of version 1,
/// whose keys were written beside it. The events are skipped, not read.
pub fn decode_inbox_batch_keys(bytes: &[u8]) -> Result<(u64, Vec<Box<str>>), String> {
    #[derive(Deserialize)]
    struct Record {
        v: u32,
        data: Keys,
    }
    #[derive(Deserialize)]
    struct Keys {
        #[serde(default)]
        dedupe: Option<BatchKeysIn>,
    }
    #[derive(Deserialize)]
    struct BatchKeysIn {
        until: u64,
        keys: Vec<Box<str>>,
    }
    let record: Record = serde_json::from_slice(bytes).map_err(|e| format!("not an inbox batch: {e}"))?;
    if !(1..=INBOX_BATCH_VERSION).contains(&record.v) {
        return Err(format!("an inbox batch of record v{}, this build reads up to v{INBOX_BATCH_VERSION}", record.v));
    }
    Ok(record.data.dedupe.map_or((0, Vec::new()), |d| (d.until, d.keys)))
}

impl Versioned for Incident {
    const VERSION: u32 = 1;
}

impl Versioned for InboxEvent {
    const VERSION: u32 = 2;

    /// Version 1 kept a Slack event as an object; version 2 keeps its text (see `RawJson`).
    fn upgrade(version: u32, mut data: serde_json::Value) -> Result<Self, String> {
        if version != 1 {
            return Err(format!("no upgrade from record version {version} to {}", Self::VERSION));
        }
        if data["kind"] == "slack_event"
            && let Some(event) = data.get_mut("event")
        {
            *event = serde_json::Value::String(event.to_string());
        }
        serde_json::from_value(data).map_err(|e| e.to_string())
    }
}

impl Versioned for OutboxEntry {
    const VERSION: u32 = 1;
}

impl Versioned for Delivery {
    const VERSION: u32 = 1;
}

impl Versioned for LoggedAlert {
    const VERSION: u32 = 1;
}

impl Versioned for ThreadMessage {
    const VERSION: u32 = 1;
}
