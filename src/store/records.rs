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
    if env.v == T::VERSION {
        serde_json::from_value(env.data).map_err(|e| e.to_string())
    } else if env.v < T::VERSION {
        T::upgrade(env.v, env.data)
    } else {
        Err(format!("written by a newer version (record v{}, this build reads up to v{})", env.v, T::VERSION))
    }
}

impl Versioned for Incident {
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

impl Versioned for LoggedAlert {
    const VERSION: u32 = 1;
}

impl Versioned for ThreadMessage {
    const VERSION: u32 = 1;
}
