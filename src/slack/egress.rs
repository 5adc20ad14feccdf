//! Durable, rate-limited delivery of the outbox to Slack.
//!
//! Calls are grouped in lanes (one per channel, one per response URL) and lanes run independently,
//! so one channel's backlog or 429 never delays another channel. Within a lane, each incident's
//! calls keep their order (a thread reads as it was written), and a new incident's root and header
//! go before other incidents' notes (see [`Urgency`]). Pacing follows Slack's real limits: chat.postMessage about one per second per
//! channel, other methods by their tier. A 429 pauses only that method (and channel) for
//! `Retry-After`; 5xx and timeouts retry with exponential backoff and jitter. Updates to the same
//! message coalesce: only the latest pending chat.update of a message is sent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::client::{CallError, SlackApi};
use crate::app::inbox::{AcceptError, Inbox};
use crate::app::metrics::Metrics;
use crate::app::outbox::{ChannelRef, Delivery, Form, MessageKey, OutboxEntry, OutboxSeq, SlackOp, ThreadRef};
use crate::app::store::{Store, StoreError};
use crate::domain::ids::{ChannelId, IncidentId};
use crate::domain::incident::MessagePart;
use crate::domain::messages;

/// Slack's API tiers (requests per minute per method per workspace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// About 20 per minute.
    Tier2,
    /// About 50 per minute.
    Tier3,
    /// About 100 per minute.
    Tier4,
}

/// The documented tier of each method the bot calls besides chat.postMessage (which is limited per
/// channel). `None`: not a Web API method (response URLs).
pub fn tier_of(method: &str) -> Option<Tier> {
    match method {
        "conversations.create" | "conversations.setPurpose" => Some(Tier::Tier2),
        "chat.update" | "reactions.add" | "conversations.invite" | "conversations.join" => Some(Tier::Tier3),
        "chat.postEphemeral" | "users.info" | "auth.test" | "views.open" => Some(Tier::Tier4),
        _ => None,
    }
}

/// Slack's chat.postMessage budget per channel is about one message per second; bursts are
/// tolerated but not guaranteed. The bot posts one message every 1.05 s in a busy channel, without
/// bursts: a few milliseconds of network jitter then never look like two messages within a second
/// to Slack, so a storm of new incidents gets no 429s (and no Retry-After pauses) on its way out.
pub const POST_INTERVAL: Duration = Duration::from_millis(1050);

/// Pacing and retry settings.
#[derive(Debug, Clone)]
pub struct EgressLimits {
    /// chat.postMessage per channel. Slack allows about one message per second per channel ("short
    /// bursts >1 allowed", with "no guarantee" for them).
    pub post_per_channel: Quota,
    /// Tier 2 methods: about 20 per minute.
    pub tier2: Quota,
    /// Tier 3 methods: about 50 per minute.
    pub tier3: Quota,
    /// Tier 4 methods: about 100 per minute.
    pub tier4: Quota,
    /// Longest wait for one call before it counts as failed and is retried.
    pub call_timeout: Duration,
    /// First retry delay after a 5xx or timeout; doubles per attempt (with jitter) up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Pause after a 429 that carried no `Retry-After` header (Slack sometimes omits it).
    pub retry_after_default: Duration,
}

fn per_minute(n: u32, burst: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).expect("positive")).allow_burst(NonZeroU32::new(burst).expect("positive"))
}

impl EgressLimits {
    /// Slack's published limits.
    pub fn slack() -> EgressLimits {
        EgressLimits {
            post_per_channel: Quota::with_period(POST_INTERVAL).expect("a positive period"),
            tier2: per_minute(20, 3),
            tier3: per_minute(50, 5),
            tier4: per_minute(100, 10),
            call_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            retry_after_default: Duration::from_secs(5),
        }
    }

    /// Generous limits and quick retries, for tests and the demo against the sandbox.
    pub fn fast() -> EgressLimits {
        let quick = Quota::per_second(NonZeroU32::new(1000).expect("positive"))
            .allow_burst(NonZeroU32::new(1000).expect("positive"));
        EgressLimits {
            post_per_channel: quick,
            tier2: quick,
            tier3: quick,
            tier4: quick,
            call_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            retry_after_default: Duration::from_millis(200),
        }
    }
}

/// What happened to one outbox entry.
enum Outcome {
    Delivered(Option<(MessageKey, Delivery)>),
    Abandoned(String),
    Stopped,
}

#[derive(Default)]
struct Lanes {
    queues: HashMap<String, Lane>,
    dispatched: HashSet<OutboxSeq>,
    /// The highest outbox position read so far.
    read_up_to: Option<OutboxSeq>,
}

/// How urgent a call is within its lane: a new incident's thread root first, then its header,
/// then everything else (notes, evidence, summaries, edits) in the order it was queued. In a
/// storm that opens many incidents in one channel, every thread appears within about a second
/// each instead of waiting behind the earlier incidents' notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    Root,
    Header,
    Rest,
}

/// The urgency of a call (see [`Urgency`]).
pub fn urgency_of(op: &SlackOp) -> Urgency {
    match op {
        SlackOp::PostMessage { key: Some(key), .. } if key.part() == Some(MessagePart::Root) => Urgency::Root,
        SlackOp::PostMessage { key: Some(key), .. } if key.part() == Some(MessagePart::Header) => Urgency::Header,
        _ => Urgency::Rest,
    }
}

/// One lane's pending calls. Calls of one incident (one thread) keep their order; across
/// incidents the most urgent head goes first, the oldest among equals.
#[derive(Default)]
struct Lane {
    streams: HashMap<Option<IncidentId>, VecDeque<(OutboxSeq, OutboxEntry)>>,
}

impl Lane {
    fn push(&mut self, seq: OutboxSeq, entry: OutboxEntry) {
        self.streams.entry(entry.incident).or_default().push_back((seq, entry));
    }

    fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The call to make next.
    fn next(&self) -> Option<&(OutboxSeq, OutboxEntry)> {
        self.streams.values().filter_map(VecDeque::front).min_by_key(|(seq, e)| (urgency_of(&e.op), *seq))
    }

    /// Takes a call out once it is done (it is the head of its stream).
    fn remove(&mut self, seq: OutboxSeq, incident: Option<IncidentId>) {
        if let Some(stream) = self.streams.get_mut(&incident) {
            stream.retain(|(s, _)| *s != seq);
            if stream.is_empty() {
                self.streams.remove(&incident);
            }
        }
    }

    fn has_later_update(&self, seq: OutboxSeq, key: &MessageKey) -> bool {
        self.streams
            .values()
            .flatten()
            .any(|(s, e)| *s > seq && matches!(&e.op, SlackOp::UpdateMessage { key: k, .. } if k == key))
    }
}

/// The outbox's consumer.
pub struct Egress {
    store: Arc<dyn Store>,
    api: Arc<SlackApi>,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    limits: EgressLimits,
    post_limiter: DefaultKeyedRateLimiter<String>,
    tier_limiters: HashMap<Tier, DefaultDirectRateLimiter>,
    /// Pause keys (`method` or `chat.postMessage:<channel>`) -> until when.
    paused: Mutex<HashMap<String, Instant>>,
    lanes: Mutex<Lanes>,
    /// The calls found in the outbox when this egress started: a previous process (a crashed
    /// one, or a deposed leader) may have sent them without recording it.
    inherited: Mutex<Option<HashSet<OutboxSeq>>>,
    /// Bumped after every completed call, so tests and the demo can wait for quiet (shared by
    /// the egresses a process runs one after another as it gains and loses leadership).
    activity: Arc<watch::Sender<u64>>,
    shutdown: CancellationToken,
    /// The lane workers, so stopping can wait for them.
    workers: tokio_util::task::TaskTracker,
}

impl Egress {
    pub fn new(
        store: Arc<dyn Store>,
        api: Arc<SlackApi>,
        inbox: Inbox,
        metrics: Arc<Metrics>,
        limits: EgressLimits,
        activity: Arc<watch::Sender<u64>>,
        shutdown: CancellationToken,
    ) -> Arc<Egress> {
        let tier_limiters = [(Tier::Tier2, limits.tier2), (Tier::Tier3, limits.tier3), (Tier::Tier4, limits.tier4)]
            .into_iter()
            .map(|(t, q)| (t, RateLimiter::direct(q)))
            .collect();
        Arc::new(Egress {
            store,
            api,
            inbox,
            metrics,
            post_limiter: RateLimiter::keyed(limits.post_per_channel),
            tier_limiters,
            limits,
            paused: Mutex::new(HashMap::new()),
            lanes: Mutex::new(Lanes::default()),
            inherited: Mutex::new(None),
            activity,
            shutdown,
            workers: tokio_util::task::TaskTracker::new(),
        })
    }

    /// Counts completed calls; changes after each one.
    pub fn activity(&self) -> watch::Receiver<u64> {
        self.activity.subscribe()
    }

    /// Runs until shutdown: picks up new outbox entries whenever woken (and every few seconds, so
    /// nothing waits on a lost wake-up), and hands them to their lanes.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>) {
        let mut full = true;
        loop {
            if let Err(e) = self.dispatch(full) {
                error!(error = %e, "cannot read the outbox");
            }
            full = tokio::select! {
                _ = wake.notified() => false,
                _ = tokio::time::sleep(Duration::from_secs(5)) => true,
                _ = self.shutdown.cancelled() => break,
            };
        }
        // Lane workers finish the call in hand (or give up on it) and stop.
        self.workers.close();
        self.workers.wait().await;
        info!("egress stopped");
    }

    /// Hands new outbox entries to their lanes. A wake-up reads only the entries after the last
    /// one read (the processor, the only writer, numbers them in commit order), so a long outbox
    /// is not read again on every call; the periodic pass (`full`) reads it all, so nothing a
    /// read could have missed waits for more than that.
    fn dispatch(self: &Arc<Self>, full: bool) -> Result<(), crate::app::store::StoreError> {
        // Read the outbox under the lanes lock: a worker finishing a call removes it from the store
        // first and from `dispatched` under this lock, so a snapshot taken here can never hand out
        // a call that was already delivered.
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let after = if full { None } else { lanes.read_up_to };
        let pending = self.store.pending_outbox_after(after)?;
        if let Some((last, _)) = pending.last() {
            lanes.read_up_to = Some(lanes.read_up_to.map_or(*last, |r| r.max(*last)));
        }
        self.inherited
            .lock()
            .expect("inherited lock")
            .get_or_insert_with(|| pending.iter().map(|(seq, _)| *seq).collect());
        for (seq, entry) in pending {
            if !lanes.dispatched.insert(seq) {
                continue;
            }
            let lane = lane_of(&entry.op);
            let queue = lanes.queues.entry(lane.clone()).or_default();
            let start_worker = queue.is_empty();
            queue.push(seq, entry);
            if start_worker {
                let me = self.clone();
                self.workers.spawn(async move { me.work_lane(lane).await });
            }
        }
        self.metrics.outbox_depth.set(lanes.dispatched.len() as i64);
        Ok(())
    }

    /// Delivers one lane's calls in order until the lane is empty.
    async fn work_lane(self: Arc<Self>, lane: String) {
        loop {
            let next = {
                let lanes = self.lanes.lock().expect("lanes lock");
                lanes.queues.get(&lane).and_then(|q| q.next().cloned())
            };
            let Some((seq, entry)) = next else { return };
            let superseded =
                matches!(&entry.op, SlackOp::UpdateMessage { key, .. } if self.has_later_update(&lane, seq, key));
            let outcome = if superseded {
                Outcome::Abandoned("superseded by a later update".into())
            } else {
                self.deliver(seq, &entry).await
            };
            let remember = match outcome {
                Outcome::Stopped => return,
                Outcome::Delivered(remember) => {
                    self.metrics.api_call(entry.op.method(), "ok");
                    remember
                }
                Outcome::Abandoned(reason) => {
                    if !superseded {
                        // Counted as an error; the log says it was given up.
                        self.metrics.api_call(entry.op.method(), "error");
                        error!(seq, method = entry.op.method(), reason = reason.as_str(), "Slack call abandoned");
                    }
                    None
                }
            };
            // The call is done: only its record is retried, never the call (a store outage must
            // not post a message twice).
            loop {
                match self.inbox.complete_delivery(seq, entry.incident, remember.clone()).await {
                    Ok(()) => break,
                    Err(AcceptError::Store(StoreError::Fenced { reason })) => {
                        warn!(seq, reason = reason.as_str(), "not the leader any more: the new leader takes this lane");
                        return;
                    }
                    Err(e) => {
                        error!(seq, error = %e, "cannot record the delivery yet; retrying the record, not the call");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = self.shutdown.cancelled() => return,
                        }
                    }
                }
            }
            let mut lanes = self.lanes.lock().expect("lanes lock");
            lanes.dispatched.remove(&seq);
            let queue = lanes.queues.get_mut(&lane).expect("a working lane has a queue");
            queue.remove(seq, entry.incident);
            if queue.is_empty() {
                lanes.queues.remove(&lane);
                drop(lanes);
                self.activity.send_modify(|n| *n += 1);
                return;
            }
            drop(lanes);
            self.activity.send_modify(|n| *n += 1);
        }
    }

    fn has_later_update(&self, lane: &str, seq: OutboxSeq, key: &MessageKey) -> bool {
        let lanes = self.lanes.lock().expect("lanes lock");
        lanes.queues.get(lane).is_some_and(|q| q.has_later_update(seq, key))
    }

    /// Tries a call until it succeeds, is refused for good, or the bot stops.
    async fn deliver(&self, seq: OutboxSeq, entry: &OutboxEntry) -> Outcome {
        let mut attempt: u32 = 0;
        let mut joined = false;
        // A keyed message that may already be in Slack is looked for before it is posted: one
        // found in an earlier process's outbox, or one whose last attempt got no clear answer.
        let keyed = matches!(&entry.op, SlackOp::PostMessage { key: Some(_), .. });
        let mut uncertain =
            keyed && self.inherited.lock().expect("inherited lock").as_ref().is_some_and(|s| s.contains(&seq));
        loop {
            if self.shutdown.is_cancelled() {
                return Outcome::Stopped;
            }
            let pause_key = pause_key(&entry.op, self);
            self.wait_turn(&entry.op, &pause_key).await;
            let result = if uncertain {
                match self.find_posted(entry).await {
                    Ok(Some(found)) => {
                        info!(seq, "already in Slack (posted before its answer was lost): not posting it again");
                        Ok(Some(found))
                    }
                    Ok(None) => {
                        uncertain = false;
                        self.call(entry).await
                    }
                    Err(e) => Err(e),
                }
            } else {
                self.call(entry).await
            };
            let delay = match result {
                Ok(remember) => return Outcome::Delivered(remember),
                Err(CallError::RateLimited { retry_after }) => {
                    let pause = retry_after.unwrap_or(self.limits.retry_after_default);
                    self.metrics.api_call(entry.op.method(), "429");
                    warn!(
                        method = entry.op.method(),
                        key = pause_key.as_str(),
                        ?pause,
                        "Slack rate limit; pausing this method only"
                    );
                    self.paused.lock().expect("pause lock").insert(pause_key, Instant::now() + pause);
                    Duration::ZERO
                }
                Err(CallError::Refused(code)) if code == "not_in_channel" && !joined => {
                    joined = true;
                    match self.channel_of(&entry.op) {
                        Some(channel) => match self.api.join(&channel).await {
                            Ok(()) => {
                                info!(%channel, "joined the channel to post in it");
                                Duration::ZERO
                            }
                            Err(e) => {
                                return Outcome::Abandoned(format!(
                                    "not_in_channel and cannot join: {e}; invite the bot"
                                ));
                            }
                        },
                        None => return Outcome::Abandoned(code),
                    }
                }
                Err(CallError::Refused(code)) => return Outcome::Abandoned(code),
                Err(e @ (CallError::Transient(_) | CallError::Auth(_))) => {
                    // A timeout or a 5xx may come after Slack posted the message.
                    uncertain = keyed;
                    attempt += 1;
                    self.metrics.api_call(entry.op.method(), "error");
                    let delay = backoff(attempt, self.limits.backoff_base, self.limits.backoff_max);
                    warn!(method = entry.op.method(), attempt, ?delay, error = %e, "Slack call failed; retrying");
                    delay
                }
            };
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.shutdown.cancelled() => return Outcome::Stopped,
                }
            }
        }
    }

    /// Waits for a 429 pause to end and for the method's (or channel's) rate budget.
    async fn wait_turn(&self, op: &SlackOp, pause_key: &str) {
        loop {
            let until = self.paused.lock().expect("pause lock").get(pause_key).copied();
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => break,
            }
        }
        match op {
            SlackOp::PostMessage { .. } => {
                let lane = lane_of(op);
                self.post_limiter.until_key_ready(&lane).await;
            }
            other => {
                if let Some(limiter) = tier_of(other.method()).and_then(|t| self.tier_limiters.get(&t)) {
                    limiter.until_ready().await;
                }
            }
        }
    }

    fn channel_of(&self, op: &SlackOp) -> Option<ChannelId> {
        match op {
            SlackOp::PostMessage { channel, .. } | SlackOp::UpdateMessage { channel, .. } => {
                self.resolve_channel(channel).ok()
            }
            SlackOp::AddReaction { channel, .. } | SlackOp::PostEphemeral { channel, .. } => Some(channel.clone()),
            _ => None,
        }
    }

    fn resolve_channel(&self, channel: &ChannelRef) -> Result<ChannelId, CallError> {
        match channel {
            ChannelRef::Id(id) => Ok(id.clone()),
            ChannelRef::Created(key) => self
                .store
                .get_message_ref(key)
                .map_err(|e| CallError::Transient(e.to_string()))?
                .and_then(|d| d.channel)
                .ok_or_else(|| CallError::Refused(format!("channel {key} was never created"))),
        }
    }

    fn resolve_ts(&self, key: &MessageKey) -> Result<Delivery, CallError> {
        self.store
            .get_message_ref(key)
            .map_err(|e| CallError::Transient(e.to_string()))?
            .ok_or_else(|| CallError::Refused(format!("message {key} was never posted")))
    }

    /// One attempt at a call.
    /// Where a keyed post already is in Slack, if it is.
    async fn find_posted(&self, entry: &OutboxEntry) -> Result<Option<(MessageKey, Delivery)>, CallError> {
        let SlackOp::PostMessage { channel, thread, key: Some(key), .. } = &entry.op else { return Ok(None) };
        let channel = self.resolve_channel(channel)?;
        let thread_ts = match thread {
            None => None,
            Some(ThreadRef::Ts(ts)) => Some(ts.clone()),
            Some(ThreadRef::Message(k)) => self.resolve_ts(k)?.ts,
        };
        let found = self.api.find_posted(&channel, thread_ts.as_deref(), &key.to_string()).await?;
        self.metrics
            .api_call(if thread_ts.is_some() { "conversations.replies" } else { "conversations.history" }, "ok");
        Ok(found.map(|ts| (key.clone(), Delivery { channel: Some(channel), ts: Some(ts) })))
    }

    async fn call(&self, entry: &OutboxEntry) -> Result<Option<(MessageKey, Delivery)>, CallError> {
        let incident = entry.incident.map(|i| i.to_string());
        match &entry.op {
            SlackOp::PostMessage { channel, thread, message, key } => {
                let channel = self.resolve_channel(channel)?;
                let thread_ts = match thread {
                    None => None,
                    Some(ThreadRef::Ts(ts)) => Some(ts.clone()),
                    Some(ThreadRef::Message(k)) => self.resolve_ts(k)?.ts,
                };
                let key_text = key.as_ref().map(MessageKey::to_string);
                let (channel, ts) = self
                    .api
                    .post_message(&channel, thread_ts.as_deref(), message, incident.as_deref(), key_text.as_deref())
                    .await?;
                Ok(key.clone().map(|k| (k, Delivery { channel: Some(channel), ts: Some(ts) })))
            }
            SlackOp::UpdateMessage { key, message, .. } => {
                let target = self.resolve_ts(key)?;
                let (Some(channel), Some(ts)) = (target.channel, target.ts) else {
                    return Err(CallError::Refused(format!("message {key} has no channel or ts")));
                };
                self.api.update_message(&channel, &ts, message, incident.as_deref()).await?;
                Ok(None)
            }
            SlackOp::AddReaction { channel, ts, emoji } => {
                self.api.add_reaction(channel, ts, emoji).await.map(|_| None)
            }
            SlackOp::PostEphemeral { channel, user, thread_ts, text } => {
                self.api.post_ephemeral(channel, user, thread_ts.as_deref(), text).await.map(|_| None)
            }
            SlackOp::Respond { url, text } => self.api.respond(url, text).await.map(|_| None),
            SlackOp::CreateChannel { key, name, invite, purpose } => {
                // A retry after a partial success must not create a second channel.
                let channel = match self.store.get_message_ref(key).map_err(|e| CallError::Transient(e.to_string()))? {
                    Some(Delivery { channel: Some(c), .. }) => c,
                    _ => {
                        let c = self.api.create_channel(name).await?;
                        let delivery = Delivery { channel: Some(c.clone()), ts: None };
                        self.store.put_message_ref(key, &delivery).map_err(|e| CallError::Transient(e.to_string()))?;
                        c
                    }
                };
                self.api.invite(&channel, invite).await?;
                if let Err(e) = self.api.set_purpose(&channel, purpose).await {
                    warn!(%channel, error = %e, "cannot set the incident channel's purpose");
                }
                Ok(Some((key.clone(), Delivery { channel: Some(channel), ts: None })))
            }
            SlackOp::Invite { channel, users } => {
                let channel = self.resolve_channel(channel)?;
                self.api.invite(&channel, users).await.map(|_| None)
            }
            SlackOp::AskForm { trigger_id, incident, user, channel, form } => {
                let modal = match form {
                    Form::RootCause => super::blocks::root_cause_modal(&incident.to_string()),
                    Form::Followup => super::blocks::followup_modal(&incident.to_string()),
                };
                match self.api.open_modal(trigger_id, modal).await {
                    Err(CallError::Refused(code)) if code.contains("trigger") => {
                        // The click is too old for a modal (Slack allows 3 s): say what to type.
                        let Some(channel) = channel else { return Ok(None) };
                        let text = match form {
                            Form::RootCause => messages::root_cause_command_hint(Some(*incident)),
                            Form::Followup => messages::followup_command_hint(Some(*incident)),
                        };
                        self.api.post_ephemeral(channel, user, None, &text).await.map(|_| None)
                    }
                    other => other.map(|_| None),
                }
            }
        }
    }
}

/// The lane a call belongs to: calls in one lane keep their order.
pub fn lane_of(op: &SlackOp) -> String {
    fn channel_lane(channel: &ChannelRef) -> String {
        match channel {
            ChannelRef::Id(id) => id.to_string(),
            ChannelRef::Created(key) => format!("created:{key}"),
        }
    }
    match op {
        SlackOp::PostMessage { channel, .. } | SlackOp::UpdateMessage { channel, .. } => channel_lane(channel),
        SlackOp::AddReaction { channel, .. } => channel.to_string(),
        SlackOp::PostEphemeral { channel, user, .. } => format!("ephemeral:{channel}:{user}"),
        SlackOp::Respond { url, .. } => format!("respond:{url}"),
        SlackOp::CreateChannel { key, .. } => format!("created:{key}"),
        SlackOp::Invite { channel, .. } => channel_lane(channel),
        SlackOp::AskForm { user, .. } => format!("modal:{user}"),
    }
}

/// What a 429 pauses: chat.postMessage in that channel only; any other method as a whole.
fn pause_key(op: &SlackOp, egress: &Egress) -> String {
    match op {
        SlackOp::PostMessage { channel, .. } => {
            let c = egress.resolve_channel(channel).map(|c| c.to_string()).unwrap_or_else(|_| lane_of(op));
            format!("chat.postMessage:{c}")
        }
        other => other.method().to_string(),
    }
}

/// Exponential backoff with full jitter: a random delay up to `base * 2^(attempt-1)`, capped.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let cap = exp.min(max);
    let jitter: f64 = rand::random_range(0.5..=1.0);
    cap.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 1..20 {
            let d = backoff(attempt, base, max);
            let ceiling = base.saturating_mul(1 << (attempt - 1).min(16)).min(max);
            assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?} vs {ceiling:?}");
        }
    }

    fn post(incident: u64, key: Option<MessagePart>) -> OutboxEntry {
        let id = IncidentId::new(incident).unwrap();
        OutboxEntry {
            incident: Some(id),
            op: SlackOp::PostMessage {
                channel: ChannelRef::Id(ChannelId::parse("C0ALERTS1").unwrap()),
                thread: None,
                message: crate::domain::messages::Message::text("x"),
                key: key.map(|k| MessageKey::incident(id, k)),
            },
            created_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn roots_then_headers_go_first_and_each_thread_keeps_its_order() {
        let mut lane = Lane::default();
        // INC-1 was opened first and has notes queued; INC-2 and INC-3 open behind them.
        let queued = [
            (1, post(1, Some(MessagePart::Root))),
            (2, post(1, Some(MessagePart::Header))),
            (3, post(1, None)),
            (4, post(1, Some(MessagePart::Evidence))),
            (5, post(2, Some(MessagePart::Root))),
            (6, post(2, Some(MessagePart::Header))),
            (7, post(2, None)),
            (8, post(3, Some(MessagePart::Root))),
            (9, post(3, Some(MessagePart::Header))),
        ];
        for (seq, entry) in queued {
            lane.push(seq, entry);
        }
        let mut order = Vec::new();
        while let Some((seq, entry)) = lane.next().cloned() {
            order.push(seq);
            lane.remove(seq, entry.incident);
        }
        assert_eq!(order, [1, 5, 8, 2, 6, 9, 3, 4, 7]);
        assert!(lane.is_empty());
    }

    #[test]
    fn every_method_the_bot_calls_has_a_documented_tier() {
        assert_eq!(tier_of("chat.update"), Some(Tier::Tier3));
        assert_eq!(tier_of("conversations.create"), Some(Tier::Tier2));
        assert_eq!(tier_of("chat.postEphemeral"), Some(Tier::Tier4));
        assert_eq!(tier_of("response_url"), None);
    }
}
