//! The front door of the processor: accept an event durably, then wake the processor.
//!
//! Durability is batched (group commit): every caller waits for a flush that started after its
//! write, and one flush serves every write that arrived while the previous one ran.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, oneshot};

use super::clock::Clock;
use super::metrics::{KindLabel, Metrics};
use crate::store::{Acceptance, InboxEvent, Store, StoreError};

type FlushWaiter = oneshot::Sender<Result<(), String>>;

/// Batches flush requests: while one flush runs, the requests that arrive wait for the next.
#[derive(Clone)]
pub struct GroupCommit {
    requests: mpsc::UnboundedSender<FlushWaiter>,
}

impl GroupCommit {
    /// Starts the flusher; it runs until `stop` is cancelled and the queue is empty.
    pub fn start(store: Arc<dyn Store>, stop: tokio_util::sync::CancellationToken) -> GroupCommit {
        let (requests, mut rx) = mpsc::unbounded_channel::<FlushWaiter>();
        tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    r = rx.recv() => r,
                    _ = stop.cancelled() => rx.try_recv().ok(),
                };
                let Some(first) = first else { break };
                let mut waiters = vec![first];
                while let Ok(more) = rx.try_recv() {
                    waiters.push(more);
                }
                let store = store.clone();
                let result = tokio::task::spawn_blocking(move || store.flush())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        GroupCommit { requests }
    }

    /// Returns once every write made before the call is on disk.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).map_err(|_| "the flusher has stopped".to_string())?;
        rx.await.map_err(|_| "the flusher has stopped".to_string())?
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot make the event durable: {0}")]
    Flush(String),
}

/// How long dedupe keys are remembered. Slack retries for about an hour; redeliveries after a
/// day are treated as new events.
pub const DEDUPE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Ingress's handle on the inbox.
#[derive(Clone)]
pub struct Inbox {
    store: Arc<dyn Store>,
    commit: GroupCommit,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// The bot's clock: dedupe windows and arrival times are read from it, so a bot on a manual
    /// clock (tests, the demo) is consistent from ingress to processor.
    clock: Arc<dyn Clock>,
    /// Events put in the inbox since start (plus the backlog found at start). Compared with the
    /// processor's count to tell when everything has been handled: sled's multi-tree
    /// transactions are not isolated from plain reads, so counting is more reliable than looking.
    accepted: Arc<AtomicU64>,
}

impl Inbox {
    pub fn new(
        store: Arc<dyn Store>,
        commit: GroupCommit,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Inbox {
        let backlog = store.inbox_len() as u64;
        Inbox { store, commit, wake, metrics, clock, accepted: Arc::new(AtomicU64::new(backlog)) }
    }

    /// The time on the bot's clock, for what ingress stamps on arrival.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// How many events entered the inbox (see the field's note).
    pub fn accepted_count(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Counts an event another component is about to put in the inbox directly.
    pub fn count_direct(&self) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes back [`Inbox::count_direct`] when the write failed.
    pub fn uncount_direct(&self) {
        self.accepted.fetch_sub(1, Ordering::SeqCst);
    }

    /// Makes writes made directly on the store durable and wakes the processor (egress uses this
    /// after recording delivery feedback).
    pub async fn flush_and_wake(&self) -> Result<(), AcceptError> {
        self.commit.flush().await.map_err(AcceptError::Flush)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Like [`Inbox::accept`] for several events at once, in one transaction and one flush.
    pub async fn accept_many(&self, events: Vec<(InboxEvent, Option<String>)>) -> Result<Vec<Acceptance>, AcceptError> {
        let now = self.clock.now();
        let kinds: Vec<KindLabel> = events.iter().map(|(e, _)| KindLabel { kind: e.kind().to_string() }).collect();
        let store = self.store.clone();
        let batch: Vec<_> = events.into_iter().map(|(e, k)| (e, k.map(|k| (k, now + DEDUPE_WINDOW)))).collect();
        let results = tokio::task::spawn_blocking(move || store.accept_events(&batch))
            .await
            .map_err(|e| AcceptError::Flush(e.to_string()))??;
        let accepted = results.iter().filter(|r| matches!(r, Acceptance::Accepted(_))).count() as u64;
        if accepted > 0 {
            self.accepted.fetch_add(accepted, Ordering::SeqCst);
            self.commit.flush().await.map_err(AcceptError::Flush)?;
            self.wake.notify_one();
        }
        for (kind, r) in kinds.iter().zip(&results) {
            let counter = match r {
                Acceptance::Accepted(_) => &self.metrics.events_accepted,
                Acceptance::Duplicate => &self.metrics.events_duplicate,
            };
            counter.get_or_create(kind).inc();
        }
        Ok(results)
    }

    /// Stores the event (refusing a duplicate `dedupe_key`), waits until it is on disk, and wakes
    /// the processor. When this returns `Accepted`, the event will be processed even after a crash.
    pub async fn accept(&self, event: InboxEvent, dedupe_key: Option<&str>) -> Result<Acceptance, AcceptError> {
        let now = self.clock.now();
        let kind = KindLabel { kind: event.kind().to_string() };
        let store = self.store.clone();
        let key = dedupe_key.map(str::to_string);
        let acceptance = tokio::task::spawn_blocking(move || {
            store.accept_event(&event, key.as_deref().map(|k| (k, now + DEDUPE_WINDOW)))
        })
        .await
        .map_err(|e| AcceptError::Flush(e.to_string()))??;
        match acceptance {
            Acceptance::Accepted(_) => {
                self.accepted.fetch_add(1, Ordering::SeqCst);
                self.commit.flush().await.map_err(AcceptError::Flush)?;
                self.metrics.events_accepted.get_or_create(&kind).inc();
                self.wake.notify_one();
            }
            Acceptance::Duplicate => {
                self.metrics.events_duplicate.get_or_create(&kind).inc();
            }
        }
        Ok(acceptance)
    }
}
