//! The front door of the processor: the events the inbox holds, accepting them durably, and
//! waking the processor.
//!
//! Durability is batched. Accepted events go through one writer task that puts every request
//! waiting in one transaction with one flush (`write_inbox`); the processor's and egress's
//! writes wait for a group commit: a flush that started after their write, one flush serving
//! every write that arrived while the previous one ran.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, oneshot};

use serde::{Deserialize, Serialize};

use super::clock::Clock;
use super::metrics::{KindLabel, Metrics};
use super::outbox::{Delivery, MessageKey, OutboxSeq};
use super::store::{Acceptance, DedupeKey, Store, StoreError};
use crate::domain::decide::Event;
use crate::domain::ids::{ChannelId, IncidentId, UserId};
use crate::domain::incident::MessagePart;

/// Position of an event in the inbox; later events have larger numbers, across restarts too.
pub type InboxSeq = u64;

/// A JSON value kept as the text it arrived in, checked to be JSON on the way in. Stored as a
/// JSON string, so it is copied rather than built into a tree and written back out; the
/// processor parses it once, when it reads the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(String);

impl RawJson {
    /// The text of a value that arrived as part of a larger payload.
    pub fn from_raw(raw: &serde_json::value::RawValue) -> RawJson {
        RawJson(raw.get().to_owned())
    }

    /// The JSON text of `value`.
    pub fn of(value: &serde_json::Value) -> RawJson {
        RawJson(value.to_string())
    }

    pub fn get(&self) -> &str {
        &self.0
    }

    /// The value as a tree.
    pub fn parse(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

/// An event accepted by ingress and not yet processed. It is on disk before the sender gets its
/// acknowledgement, so nothing accepted is lost. Chat payloads are kept as the chat sent them and
/// read by the processor, so a better reading of a payload also applies to the ones waiting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InboxEvent {
    /// A domain event produced directly (alert webhooks, evidence, the CLI, tests), about
    /// `incident` when set.
    Domain { event: Box<Event>, incident: Option<IncidentId>, origin: Origin },
    /// A Slack Events API `event` object (message, reaction_added, app_mention, ...), as sent.
    /// Record version 1 kept it as an object.
    SlackEvent { event_id: String, event: RawJson },
    /// A slash command invocation.
    SlashCommand { command: SlashCommand },
    /// A Block Kit interaction (button, select, modal submission), the `payload` JSON.
    Interaction { payload: serde_json::Value },
    /// Egress delivered a message the incident needs to know about (its ts).
    Delivered { incident: IncidentId, key: MessageKey, channel: ChannelId, ts: String },
}

impl InboxEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            InboxEvent::Domain { .. } => "domain",
            InboxEvent::SlackEvent { .. } => "slack_event",
            InboxEvent::SlashCommand { .. } => "slash_command",
            InboxEvent::Interaction { .. } => "interaction",
            InboxEvent::Delivered { .. } => "delivered",
        }
    }

    /// What egress reports back after delivering one of an incident's messages: where its
    /// thread root, header or dedicated channel landed. Other deliveries need no report.
    pub fn delivered(incident: Option<IncidentId>, key: &MessageKey, delivery: &Delivery) -> Option<InboxEvent> {
        let part = key.part()?;
        if !matches!(part, MessagePart::Root | MessagePart::Header | MessagePart::Channel) {
            return None;
        }
        Some(InboxEvent::Delivered {
            incident: incident?,
            key: key.clone(),
            channel: delivery.channel.clone()?,
            ts: delivery.ts.clone().unwrap_or_default(),
        })
    }
}

/// Where an event came from, so answers go back to the right person and place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub user: Option<UserId>,
    pub channel: Option<ChannelId>,
    pub thread_ts: Option<String>,
    /// Slash commands and interactions carry a URL for delayed answers.
    pub response_url: Option<String>,
}

/// A slash command invocation, as the chat sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashCommand {
    pub command: String,
    pub text: String,
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub response_url: Option<String>,
    pub trigger_id: Option<String>,
}

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
                let result = tokio::task::spawn_blocking(move || store.persist())
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

/// Events one request offers, and where its answer goes.
struct WriteRequest {
    events: Vec<(InboxEvent, Option<DedupeKey>)>,
    reply: oneshot::Sender<Result<Vec<Acceptance>, AcceptError>>,
}

/// Most events the writer puts in one transaction.
const WRITE_BATCH: usize = 1024;

/// What the inbox's writer works with.
struct Writer {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Woken once per durable batch: woken by every request of a batch, the processor ran
    /// several times per batch, each run a handoff to a blocking thread and back.
    wake: Arc<Notify>,
    /// The inbox's count of accepted events (see [`Inbox`]).
    accepted: Arc<AtomicU64>,
}

/// The inbox's one writer: takes every request waiting, writes them all in one transaction,
/// makes it durable once, then answers each. Concurrent writers would contend on the same trees
/// and each wait for its own flush; one writer pays one transaction and one flush per batch.
async fn write_inbox(writer: Writer, mut requests: mpsc::UnboundedReceiver<WriteRequest>) {
    let Writer { store, metrics, wake, accepted } = writer;
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        let mut events = batch[0].events.len();
        // A flush takes about as long as two requests take to arrive on a busy loopback, so
        // taking only what is queued made batches of two, and the flushes' thread handoffs
        // cost more than the writes. Yielding lets every request the runtime already has in
        // hand reach the queue first; the batch closes when a yield brings nothing new.
        loop {
            while events < WRITE_BATCH {
                match requests.try_recv() {
                    Ok(more) => {
                        events += more.events.len();
                        batch.push(more);
                    }
                    Err(_) => break,
                }
            }
            if events >= WRITE_BATCH {
                break;
            }
            tokio::task::yield_now().await;
            if requests.is_empty() {
                break;
            }
        }
        let sizes: Vec<usize> = batch.iter().map(|r| r.events.len()).collect();
        let mut replies = Vec::with_capacity(batch.len());
        let mut all = Vec::with_capacity(events);
        for request in batch {
            all.extend(request.events);
            replies.push(request.reply);
        }
        let store = store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let results = store.accept_events(&all)?;
            store.persist_accepted()?;
            Ok::<_, StoreError>(results)
        })
        .await;
        match written {
            Ok(Ok(results)) => {
                metrics.inbox_writes.inc();
                // Durable now. Counted before the processor is woken, so its count of handled
                // events never passes this one.
                let stored = results.iter().filter(|r| matches!(r, Acceptance::Accepted(_))).count() as u64;
                if stored > 0 {
                    accepted.fetch_add(stored, Ordering::SeqCst);
                    wake.notify_one();
                }
                let mut results = results.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(results.by_ref().take(n).collect()));
                }
            }
            Ok(Err(e)) => {
                for reply in replies {
                    let _ = reply.send(Err(AcceptError::Store(e.clone())));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(AcceptError::Flush(e.to_string())));
                }
            }
        }
    }
}

/// Ingress's handle on the inbox.
#[derive(Clone)]
pub struct Inbox {
    store: Arc<dyn Store>,
    commit: GroupCommit,
    writer: mpsc::UnboundedSender<WriteRequest>,
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
    ) -> Result<Inbox, StoreError> {
        let accepted = Arc::new(AtomicU64::new(store.inbox_len()? as u64));
        let (writer, requests) = mpsc::unbounded_channel();
        let task =
            Writer { store: store.clone(), metrics: metrics.clone(), wake: wake.clone(), accepted: accepted.clone() };
        tokio::spawn(write_inbox(task, requests));
        Ok(Inbox { store, commit, writer, wake, metrics, clock, accepted })
    }

    /// The time on the bot's clock, for what ingress stamps on arrival.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// How many events entered the inbox (see the field's note).
    pub fn accepted_count(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Records a finished outbox call (egress): removes it, remembers what Slack answered under
    /// its key, and, when the incident needs to know where the message landed, puts that feedback
    /// in the inbox in the same write, made durable before the processor is woken for it.
    pub async fn complete_delivery(
        &self,
        seq: OutboxSeq,
        incident: Option<IncidentId>,
        remember: Option<(MessageKey, Delivery)>,
    ) -> Result<(), AcceptError> {
        let feedback = remember.as_ref().and_then(|(k, d)| InboxEvent::delivered(incident, k, d));
        let kind = feedback.as_ref().map(|e| KindLabel { kind: e.kind().to_string() });
        if feedback.is_some() {
            // Counted before the write, so a waiter never sees the processor's count pass it.
            self.accepted.fetch_add(1, Ordering::SeqCst);
        }
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            store.complete_outbox(seq, remember.as_ref().map(|(k, d)| (k, d)), feedback.as_ref())
        })
        .await
        .map_err(|e| AcceptError::Flush(e.to_string()))
        .and_then(|r| r.map_err(AcceptError::from));
        match (written, kind) {
            (Err(e), Some(_)) => {
                self.accepted.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
            (Err(e), None) => Err(e),
            (Ok(()), None) => Ok(()),
            (Ok(()), Some(kind)) => {
                // The write is done: a failed flush is not retried here (that would report the
                // delivery twice); the next flush, or the store's own, carries it.
                if let Err(e) = self.commit.flush().await {
                    tracing::warn!(error = e.as_str(), "cannot flush a delivery report yet");
                }
                self.metrics.events_accepted.get_or_create(&kind).inc();
                self.wake.notify_one();
                Ok(())
            }
        }
    }

    /// Like [`Inbox::accept`] for several events at once, in one transaction and one flush.
    pub async fn accept_many(&self, events: Vec<(InboxEvent, Option<String>)>) -> Result<Vec<Acceptance>, AcceptError> {
        let now = self.clock.now();
        let kinds: Vec<KindLabel> = events.iter().map(|(e, _)| KindLabel { kind: e.kind().to_string() }).collect();
        let events: Vec<_> = events.into_iter().map(|(e, k)| (e, k.map(|k| (k, now + DEDUPE_WINDOW)))).collect();
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteRequest { events, reply })
            .map_err(|_| AcceptError::Flush("the inbox writer has stopped".into()))?;
        // Durable once answered: the writer made the whole batch durable, counted what it
        // stored and woke the processor before answering.
        let results = answer.await.map_err(|_| AcceptError::Flush("the inbox writer has stopped".into()))??;
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
        let mut results = self.accept_many(vec![(event, dedupe_key.map(str::to_string))]).await?;
        Ok(results.pop().unwrap_or(Acceptance::Duplicate))
    }
}
