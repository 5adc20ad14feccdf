//! Store backends: implementations of the application's [`Store`] port.
//!
//! [`SledStore`] keeps one sled database in the data directory (one process per directory, the
//! embedded default); [`PgStore`] keeps everything in PostgreSQL, shared by several replicas
//! with one elected leader; [`MemoryStore`] keeps everything in memory (simulations, and a
//! backend the contract suite holds to the same rules). Every record a backend writes is a
//! versioned JSON value (see [`records`]).

mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod records;
mod sled;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use self::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use self::postgres::{PgOptions, PgStore, Replication};
pub use self::sled::SledStore;
use crate::app::inbox::{InboxEvent, InboxSeq};
use crate::app::outbox::{Delivery, OutboxEntry, OutboxSeq};
use crate::app::store::{DeadLetter, LoggedAlert, Store, StoreError, ThreadMessage};
use crate::domain::incident::Incident;

/// Opens the embedded store in `dir` (the default deployment).
pub fn open_embedded(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SledStore::open(dir)?))
}

/// Everything a store holds, to move a deployment from one backend to another
/// (`incident-commander migrate`). Sequence numbers are kept, so the inbox and outbox keep
/// their order and nothing waiting is lost.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub incidents: Vec<Incident>,
    /// The number the next incident gets.
    pub next_incident_id: u64,
    pub inbox: Vec<(InboxSeq, InboxEvent)>,
    pub outbox: Vec<(OutboxSeq, OutboxEntry)>,
    /// Dedupe keys and until when they are remembered.
    pub dedupe_keys: Vec<(String, DateTime<Utc>)>,
    /// What Slack answered, by message key.
    pub message_refs: Vec<(String, Delivery)>,
    pub dead_letters: Vec<DeadLetter>,
    /// The alert log, oldest first, with each entry's number.
    pub alerts: Vec<(u64, LoggedAlert)>,
    pub thread_messages: Vec<ThreadMessage>,
}

impl Snapshot {
    /// One line for logs and the migration's report.
    pub fn summary(&self) -> String {
        format!(
            "{} incidents, {} alerts, {} inbox events, {} outbox calls, {} dedupe keys, {} message refs, {} dead letters, {} thread messages",
            self.incidents.len(),
            self.alerts.len(),
            self.inbox.len(),
            self.outbox.len(),
            self.dedupe_keys.len(),
            self.message_refs.len(),
            self.dead_letters.len(),
            self.thread_messages.len()
        )
    }
}
