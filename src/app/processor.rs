//! The serial processor: the one place state changes.
//!
//! For each inbox event it reads the event (the chat adapter's [`Reader`]), takes the request by
//! the application's rules ([`request::resolve`]), loads the incident concerned, lets the domain
//! decide in its channel's weather ([`decide_in_weather`]), and commits the new state, the Slack
//! calls and the consumption of the event in one write: load, decide, commit. Timer ticks go
//! through the same loop, so nothing races.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::clock::Clock;
use super::evidence::{EvidenceJob, EvidenceQueue};
use super::inbox::{GroupCommit, InboxEvent, InboxSeq, Origin};
use super::metrics::{IncidentChange, Metrics};
use super::outbox::OutboxEntry;
use super::render;
use super::request::{self, Derived, Reader, Request, Resolution};
use super::store::{Commit, LoggedAlert, Store, StoreError};
use super::tickets::{TicketJob, TicketQueue};
use crate::domain::alert::Alert;
use crate::domain::decide::{Context, Decision, Effect, Event, Outcome, State, clear_weather, decide_in_weather};
use crate::domain::ids::IncidentId;
use crate::domain::incident::Incident;
use crate::domain::messages;
use crate::domain::policy::Policy;
use crate::domain::storm::StormWatch;

/// What handling one inbox event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandledAs {
    /// An incident was opened or changed (`detail` says `opened` for a new one).
    Changed,
    /// Nothing to do; `detail` says why.
    Ignored,
    /// The person was told why nothing was done.
    Refused,
    /// A read-only answer or a call without an incident change (help, lists, a form).
    Answered,
    /// A thread message was remembered for pins.
    Remembered,
    /// The domain panicked on the event: it is kept as a dead letter.
    Failed,
}

impl HandledAs {
    /// The label in logs and the `events_processed` metric.
    pub fn as_str(self) -> &'static str {
        match self {
            HandledAs::Changed => "changed",
            HandledAs::Ignored => "ignored",
            HandledAs::Refused => "refused",
            HandledAs::Answered => "answered",
            HandledAs::Remembered => "remembered",
            HandledAs::Failed => "failed",
        }
    }
}

/// One handled inbox event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub seq: InboxSeq,
    pub outcome: HandledAs,
    pub incident: Option<IncidentId>,
    pub detail: String,
}

/// How often forgotten dedupe keys are cleared, at most.
const DEDUPE_EXPIRY_EVERY: TimeDelta = TimeDelta::hours(1);

pub struct Processor {
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    reader: Box<dyn Reader>,
    /// Next deadline of every open incident that has one.
    deadlines: BTreeMap<IncidentId, DateTime<Utc>>,
    /// Alert rates per channel, for storm mode (the domain's state, kept in memory: after a
    /// restart a storm still going starts a new summary).
    storms: StormWatch,
    /// The workspace's URL (from auth.test), to link threads: `https://acme.slack.com/`.
    workspace_url: Option<String>,
    /// Where evidence requests go; `None` when no evidence source is configured.
    evidence: Option<EvidenceQueue>,
    /// Where ticket requests go; `None` when no tracker is configured.
    tickets: Option<TicketQueue>,
    /// When dedupe keys are next cleared.
    next_dedupe_expiry: DateTime<Utc>,
    /// Whether a commit since the last [`Processor::take_unflushed`] wrote more than the
    /// consumption of its event: calls for egress, incidents that jobs start from.
    unflushed: bool,
}

impl Processor {
    pub fn new(
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        reader: Box<dyn Reader>,
    ) -> Result<Processor, StoreError> {
        // Open incidents' deadlines, and resolved ones' still owed tickets.
        let deadlines =
            store.all_incidents()?.into_iter().filter_map(|i| i.next_deadline().map(|t| (i.id, t))).collect();
        let next_dedupe_expiry = clock.now();
        Ok(Processor {
            store,
            policy,
            clock,
            metrics,
            reader,
            deadlines,
            storms: StormWatch::default(),
            workspace_url: None,
            evidence: None,
            tickets: None,
            next_dedupe_expiry,
            unflushed: false,
        })
    }

    /// Sends evidence requests to this worker.
    pub fn with_evidence(mut self, queue: Option<EvidenceQueue>) -> Processor {
        self.evidence = queue;
        self
    }

    /// Sends ticket requests to this worker.
    pub fn with_tickets(mut self, queue: Option<TicketQueue>) -> Processor {
        self.tickets = queue;
        self
    }

    /// Lets messages link to threads (`https://<workspace>/archives/<channel>/p<ts>`).
    pub fn with_workspace_url(mut self, url: Option<String>) -> Processor {
        self.workspace_url = url;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Commits one step's writes, noting whether they are more than a consumed event.
    fn commit(&mut self, commit: Commit) -> Result<Vec<crate::app::outbox::OutboxSeq>, StoreError> {
        let consumption_only = commit.consumption_only().is_some();
        let seqs = self.store.commit(commit)?;
        self.unflushed |= !consumption_only;
        Ok(seqs)
    }

    /// Whether anything but consumed events was committed since the last call. Events consumed
    /// without effects need no flush before the processor goes on: after a crash they are
    /// handled again, to the same nothing.
    pub fn take_unflushed(&mut self) -> bool {
        std::mem::take(&mut self.unflushed)
    }

    /// Handles the oldest inbox event. `None` when the inbox is empty.
    pub fn step(&mut self) -> Result<Option<Handled>, StoreError> {
        let Some((seq, event)) = self.store.next_inbox_event()? else { return Ok(None) };
        let span = info_span!("event", seq, kind = event.kind());
        let _enter = span.enter();
        let now = self.clock.now();
        let request = match event {
            InboxEvent::Domain { event, incident, origin } => {
                Request::Domain(Derived { event: *event, incident, origin })
            }
            InboxEvent::Delivered { incident, key, channel, ts } => match key.part() {
                Some(part) => Request::Domain(Derived {
                    event: Event::Delivered { part, channel, ts },
                    incident: Some(incident),
                    origin: Origin::default(),
                }),
                None => Request::Ignore(format!("{key} is not one of an incident's messages")),
            },
            other => self.reader.read(&other, now),
        };
        let handled =
            match request::resolve(request, self.store.as_ref(), &self.policy, now, self.workspace_url.as_deref())? {
                Resolution::Event(derived) => self.apply(seq, *derived, now)?,
                Resolution::Answer { origin, text, refused } => {
                    self.commit(Commit {
                        consumed: Some(seq),
                        outbox: answer(&origin, &text, now),
                        ..Commit::default()
                    })?;
                    self.done(seq, if refused { HandledAs::Refused } else { HandledAs::Answered }, None, text)
                }
                Resolution::Calls(ops) => {
                    let outbox =
                        ops.into_iter().map(|op| OutboxEntry { incident: None, op, created_at: now }).collect();
                    self.commit(Commit { consumed: Some(seq), outbox, ..Commit::default() })?;
                    self.done(seq, HandledAs::Answered, None, String::new())
                }
                Resolution::Remember(message) => {
                    let incident = Some(message.incident);
                    self.commit(Commit { consumed: Some(seq), thread_message: Some(message), ..Commit::default() })?;
                    self.done(seq, HandledAs::Remembered, incident, String::new())
                }
                Resolution::Ignore(reason) => {
                    self.commit(Commit { consumed: Some(seq), ..Commit::default() })?;
                    self.done(seq, HandledAs::Ignored, None, reason)
                }
            };
        Ok(Some(handled))
    }

    fn done(&self, seq: InboxSeq, outcome: HandledAs, incident: Option<IncidentId>, detail: String) -> Handled {
        self.metrics.processed(outcome.as_str());
        // Chatter and other events that change nothing are most of a busy workspace's traffic:
        // they are logged at debug, the rest at info.
        let id = incident.map(|i| i.to_string());
        if outcome == HandledAs::Ignored {
            tracing::debug!(outcome = outcome.as_str(), incident = id, detail = detail.as_str(), "handled");
        } else {
            info!(outcome = outcome.as_str(), incident = id, detail = detail.as_str(), "handled");
        }
        Handled { seq, outcome, incident, detail }
    }

    /// The incident an event is about, as stored: `Err` is the answer when a person named one
    /// that does not exist, or none.
    fn load(&self, event: &Event, target: Option<IncidentId>) -> Result<Result<Option<Incident>, String>, StoreError> {
        Ok(Ok(match (event, target) {
            (Event::Alert(a) | Event::OpenFromAlert { alert: a, .. }, _) => {
                self.store.find_open_incident_by_fingerprint(&a.fingerprint)?
            }
            (Event::Declare { .. }, _) => None,
            (Event::Act { .. }, Some(id)) => match self.store.get_incident(id)? {
                Some(incident) => Some(incident),
                None => return Ok(Err(messages::no_such_incident_message(id))),
            },
            (Event::Act { .. }, None) => return Ok(Err(messages::which_incident_unnamed_message())),
            // The bot's own events (evidence, delivery reports, alert edits) about an incident
            // that is not there: the domain ignores them.
            (_, Some(id)) => self.store.get_incident(id)?,
            (_, None) => None,
        }))
    }

    fn apply(&mut self, seq: InboxSeq, d: Derived, now: DateTime<Utc>) -> Result<Handled, StoreError> {
        let consumed = Some(seq);
        let Derived { event, incident: target, origin } = d;
        // Load.
        let existing = match self.load(&event, target)? {
            Ok(existing) => existing,
            Err(text) => {
                self.commit(Commit { consumed, outbox: answer(&origin, &text, now), ..Commit::default() })?;
                return Ok(self.done(seq, HandledAs::Refused, None, text));
            }
        };
        let state = match &existing {
            Some(i) => State::Existing(i),
            None => State::New { id: self.store.next_incident_id()? },
        };
        // Decide.
        let (storms, policy) = (&mut self.storms, &self.policy);
        let ctx = Context::new(now, policy).in_workspace(self.workspace_url.as_deref());
        let decision = std::panic::catch_unwind(AssertUnwindSafe(|| decide_in_weather(state, &event, storms, ctx)));
        // Commit.
        let Decision { outcome, channel_effects } = match decision {
            Ok(decision) => decision,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                warn!(panic = what.as_str(), "decide panicked; the event is kept as a dead letter");
                let reason = format!("decide panicked: {what}");
                self.commit(Commit { consumed, dead_letter: Some(reason.clone()), ..Commit::default() })?;
                return Ok(self.done(seq, HandledAs::Failed, existing.map(|i| i.id), reason));
            }
        };
        let mut outbox = Vec::new();
        let handled = match outcome {
            Err(refusal) => {
                let text = refusal.to_string();
                outbox.extend(answer(&origin, &text, now));
                outbox.extend(render::channel_entries(&channel_effects, now));
                self.commit(Commit { consumed, outbox, ..Commit::default() })?;
                self.done(seq, HandledAs::Refused, None, text)
            }
            Ok(Outcome::Ignored { reason }) => {
                let alert = alert_of(&event).map(|a| LoggedAlert {
                    alert: a.clone(),
                    incident: None,
                    ignored: Some(reason.clone()),
                });
                outbox.extend(render::channel_entries(&channel_effects, now));
                let source = alert.as_ref().map(|a| a.alert.source.slug());
                self.commit(Commit { consumed, alert, outbox, ..Commit::default() })?;
                if let Some(source) = source {
                    self.metrics.alert_received(source);
                }
                self.done(seq, HandledAs::Ignored, existing.map(|i| i.id), reason)
            }
            Ok(Outcome::Changed { incident, effects }) => {
                let is_new = existing.is_none();
                outbox.extend(render::outbox_entries(&incident, is_new, &effects, &origin, now));
                outbox.extend(render::channel_entries(&channel_effects, now));
                let logged = |a: &Alert| LoggedAlert { alert: a.clone(), incident: Some(incident.id), ignored: None };
                let alert = alert_of(&event).map(logged);
                // An edit is not a new alert: the log keeps the message's latest content instead.
                let alert_update = match &event {
                    Event::AlertEdited { alert, .. } => Some(logged(alert)),
                    _ => None,
                };
                let id = incident.id;
                let change = IncidentChange::between(existing.as_ref(), &incident);
                self.note_deadline(&incident);
                let jobs = self.jobs(&incident, &effects, now);
                self.commit(Commit {
                    consumed,
                    incident: Some(*incident),
                    outbox,
                    alert,
                    alert_update,
                    ..Commit::default()
                })?;
                self.send_jobs(jobs);
                if is_new {
                    self.metrics.incidents_opened.inc();
                }
                self.metrics.incident_changed(change);
                if let Some(a) = alert_of(&event) {
                    self.metrics.alert_received(a.source.slug());
                }
                self.done(seq, HandledAs::Changed, Some(id), if is_new { "opened".into() } else { String::new() })
            }
        };
        Ok(handled)
    }

    /// Keeps the incident's next deadline for the timers.
    fn note_deadline(&mut self, incident: &Incident) {
        match incident.next_deadline() {
            Some(t) => self.deadlines.insert(incident.id, t),
            None => self.deadlines.remove(&incident.id),
        };
    }

    /// The evidence and tickets the effects ask for, for the workers that are configured.
    fn jobs(&self, incident: &Incident, effects: &[Effect], now: DateTime<Utc>) -> Jobs {
        let mut jobs = Jobs::default();
        for effect in effects {
            match effect {
                Effect::RequestEvidence(purpose) if self.evidence.is_some() => {
                    jobs.evidence.push(EvidenceJob::for_incident(incident, *purpose, now, &self.policy.datadog));
                }
                Effect::FileTicket(number) if self.tickets.is_some() => {
                    let labels = &self.policy.followups.labels;
                    jobs.tickets.extend(TicketJob::for_followup(
                        incident,
                        *number,
                        labels,
                        self.workspace_url.as_deref(),
                    ));
                }
                _ => {}
            }
        }
        jobs
    }

    /// Hands jobs to the workers, after the step that asked for them is committed.
    fn send_jobs(&self, jobs: Jobs) {
        if let Some(queue) = &self.evidence {
            jobs.evidence.into_iter().for_each(|j| queue.send(j));
        }
        if let Some(queue) = &self.tickets {
            jobs.tickets.into_iter().for_each(|j| queue.send(j));
        }
    }

    /// Runs the timers: ends storms that are over, decides the incidents whose next deadline has
    /// passed, and now and then forgets expired dedupe keys. Returns how many writes it made.
    pub fn tick(&mut self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut changed = 0;
        if now >= self.next_dedupe_expiry {
            let dropped = self.store.expire_dedupe_keys(now)?;
            if dropped > 0 {
                info!(dropped, "expired dedupe keys forgotten");
            }
            self.next_dedupe_expiry = now + DEDUPE_EXPIRY_EVERY;
        }
        let ctx = Context::new(now, &self.policy).in_workspace(self.workspace_url.as_deref());
        let summaries = render::channel_entries(&clear_weather(&mut self.storms, ctx), now);
        if !summaries.is_empty() {
            changed += summaries.len();
            self.commit(Commit { outbox: summaries, ..Commit::default() })?;
        }
        let due: Vec<IncidentId> = self.deadlines.iter().filter(|(_, t)| **t <= now).map(|(id, _)| *id).collect();
        for id in due {
            let Some(incident) = self.store.get_incident(id)? else {
                self.deadlines.remove(&id);
                continue;
            };
            let span = info_span!("tick", incident = %id);
            let _enter = span.enter();
            let (storms, policy) = (&mut self.storms, &self.policy);
            let ctx = Context::new(now, policy).in_workspace(self.workspace_url.as_deref());
            let decision = std::panic::catch_unwind(AssertUnwindSafe(|| {
                decide_in_weather(State::Existing(&incident), &Event::Tick, storms, ctx).outcome
            }));
            match decision.unwrap_or_else(|_| Ok(Outcome::Ignored { reason: "timer handling panicked".into() })) {
                Ok(Outcome::Changed { incident: updated, effects }) => {
                    let outbox = render::outbox_entries(&updated, false, &effects, &Origin::default(), now);
                    self.note_deadline(&updated);
                    let jobs = self.jobs(&updated, &effects, now);
                    self.commit(Commit { incident: Some(*updated), outbox, ..Commit::default() })?;
                    self.send_jobs(jobs);
                    changed += 1;
                }
                Ok(Outcome::Ignored { .. }) | Err(_) => {
                    match incident.next_deadline().filter(|t| *t > now) {
                        Some(t) => self.deadlines.insert(id, t),
                        None => self.deadlines.remove(&id),
                    };
                }
            }
        }
        Ok(changed)
    }

    /// The earliest pending deadline, so the runner can sleep until it.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.deadlines.values().min().copied()
    }
}

/// Work for the workers, sent once the step that asked for it is committed.
#[derive(Default)]
struct Jobs {
    evidence: Vec<EvidenceJob>,
    tickets: Vec<TicketJob>,
}

/// A private answer to whoever caused the event, as calls (none when no one can be told).
fn answer(origin: &Origin, text: &str, now: DateTime<Utc>) -> Vec<OutboxEntry> {
    render::answer(origin, text).map(|op| OutboxEntry { incident: None, op, created_at: now }).into_iter().collect()
}

/// Signals for the processor's task.
pub struct ProcessorLinks {
    /// Ingress notifies this after accepting an event.
    pub wake: Arc<Notify>,
    /// Notified after each batch's effects are durable, for egress.
    pub egress: Arc<Notify>,
    pub commit: GroupCommit,
    /// Counts handled inbox events; tests wait on it instead of sleeping.
    pub handled: Arc<watch::Sender<u64>>,
    pub shutdown: CancellationToken,
    /// How often timers are checked.
    pub tick_every: std::time::Duration,
    /// Ticks requested by hand (tests, the demo's fast clock).
    pub tick_now: Arc<Notify>,
    /// Counts timer passes, so a caller can wait for the one it asked for.
    pub ticked: Arc<watch::Sender<u64>>,
    /// Changes when other replicas put events in a shared inbox ([`Store::inbox_elsewhere`]).
    pub elsewhere: Option<watch::Receiver<u64>>,
}

/// Events handled per batch before the batch's writes are flushed and handed to egress.
const BATCH: usize = 64;

/// Runs the processor until shutdown: drains the inbox in batches (one flush per batch), checks
/// timers on every tick, and finishes the batch in hand before stopping.
pub async fn run(mut processor: Processor, mut links: ProcessorLinks) {
    let mut elsewhere = links.elsewhere.take();
    let mut interval = tokio::time::interval(links.tick_every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (p, handled, ticked) = tokio::task::spawn_blocking(move || {
            let mut handled = 0u64;
            let mut result = Ok(());
            while handled < BATCH as u64 {
                match processor.step() {
                    Ok(Some(_)) => handled += 1,
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            (processor, handled, result)
        })
        .instrument(info_span!("batch"))
        .await
        .expect("the processor thread does not panic: decide panics are caught");
        processor = p;
        if let Err(e) = ticked {
            warn!(error = %e, "storage error while processing; retrying shortly");
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = links.shutdown.cancelled() => break,
            }
            continue;
        }
        if handled > 0 {
            if processor.take_unflushed()
                && let Err(e) = links.commit.flush().await
            {
                warn!(error = e.as_str(), "cannot flush processed events");
            }
            links.handled.send_modify(|n| *n += handled);
            links.egress.notify_one();
            if handled == BATCH as u64 {
                continue;
            }
        }
        if links.shutdown.is_cancelled() {
            break;
        }
        let other_replicas = async {
            let changed = match elsewhere.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !changed {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = links.wake.notified() => {}
            _ = other_replicas => {}
            _ = interval.tick() => processor = run_tick(processor, &links).await,
            _ = links.tick_now.notified() => processor = run_tick(processor, &links).await,
            _ = links.shutdown.cancelled() => {}
        }
    }
    if let Err(e) = links.commit.flush().await {
        warn!(error = e.as_str(), "final flush failed");
    }
    info!("processor stopped");
}

async fn run_tick(mut processor: Processor, links: &ProcessorLinks) -> Processor {
    let (p, changed) = tokio::task::spawn_blocking(move || {
        let changed = processor.tick();
        (processor, changed)
    })
    .await
    .expect("timer handling does not panic");
    match changed {
        Ok(0) => {}
        Ok(n) => {
            let _ = links.commit.flush().await;
            links.egress.notify_one();
            info!(incidents = n, "timers fired");
        }
        Err(e) => warn!(error = %e, "storage error while running timers"),
    }
    links.ticked.send_modify(|n| *n += 1);
    p
}

/// The alert an event carries, if it carries one.
fn alert_of(event: &Event) -> Option<&Alert> {
    match event {
        Event::Alert(a) | Event::OpenFromAlert { alert: a, .. } => Some(a),
        _ => None,
    }
}
