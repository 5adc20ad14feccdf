//! The serial processor: the one place state changes.
//!
//! It takes the oldest event from the inbox, loads the incident it concerns, asks the domain to
//! `decide`, and writes the new state, the Slack calls and the consumption of the event in one
//! transaction. Timer ticks go through the same loop, so nothing races.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::clock::Clock;
use super::inbox::GroupCommit;
use super::metrics::Metrics;
use super::render;
use crate::domain::alert::Alert;
use crate::domain::decide::{Context, Effect, Event, Outcome, State, decide};
use crate::domain::ids::ChannelId;
use crate::domain::ids::IncidentId;
use crate::domain::incident::Incident;
use crate::domain::messages::Message;
use crate::domain::storm::{StormWatch, Weather, storm_summary_message};
use crate::policy::Policy;
use crate::store::{
    ChannelRef, Commit, InboxEvent, InboxSeq, LoggedAlert, MessageKey, Origin, OutboxEntry, SlackOp, Store, StoreError,
    ThreadMessage,
};

/// What handling one inbox event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub seq: InboxSeq,
    /// `changed`, `ignored`, `refused` or `failed`.
    pub outcome: &'static str,
    pub incident: Option<IncidentId>,
    pub detail: String,
}

/// The domain event the processor derives from one inbox event, with where answers go.
pub struct Derived {
    pub event: Event,
    pub incident: Option<IncidentId>,
    pub origin: Origin,
}

/// Turns the inbox's raw Slack and webhook events into domain events. Provided by the Slack and
/// alert-source layers; the processor stays ignorant of wire formats.
pub trait Interpreter: Send + 'static {
    /// The domain event for a raw event, or a reason to ignore it.
    fn interpret(&mut self, event: &InboxEvent, store: &dyn Store, now: DateTime<Utc>) -> Interpretation;
}

pub enum Interpretation {
    Event(Box<Derived>),
    /// Nothing to do; the reason is logged.
    Ignore(String),
    /// The person who sent it gets this answer, nothing else happens.
    Answer {
        origin: Origin,
        text: String,
    },
    /// Calls to make directly (help texts, lists) without changing any incident.
    Calls(Vec<OutboxEntry>),
    /// A message in an incident thread or channel, to remember for pins.
    Remember(ThreadMessage),
}

/// Interprets nothing: for tools and tests that only feed domain events.
pub struct DomainOnly;

impl Interpreter for DomainOnly {
    fn interpret(&mut self, event: &InboxEvent, _store: &dyn Store, _now: DateTime<Utc>) -> Interpretation {
        Interpretation::Ignore(format!("{} events are not handled by this processor", event.kind()))
    }
}

pub struct Processor {
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    interpreter: Box<dyn Interpreter>,
    /// Next deadline of every open incident that has one.
    deadlines: BTreeMap<IncidentId, DateTime<Utc>>,
    /// Alert rates per channel, for storm mode.
    storms: StormWatch,
    /// The workspace's URL (from auth.test), to link threads: `https://acme.slack.com/`.
    workspace_url: Option<String>,
    /// Where evidence requests go; `None` when Datadog is not configured.
    evidence: Option<tokio::sync::mpsc::UnboundedSender<crate::datadog::evidence::EvidenceJob>>,
    evidence_in_flight: crate::datadog::evidence::InFlight,
}

impl Processor {
    pub fn new(
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        interpreter: Box<dyn Interpreter>,
    ) -> Result<Processor, StoreError> {
        let deadlines =
            store.open_incidents()?.into_iter().filter_map(|i| i.deadlines.next().map(|t| (i.id, t))).collect();
        Ok(Processor {
            store,
            policy,
            clock,
            metrics,
            interpreter,
            deadlines,
            storms: StormWatch::default(),
            workspace_url: None,
            evidence: None,
            evidence_in_flight: Default::default(),
        })
    }

    /// Sends evidence requests to this worker.
    pub fn with_evidence(
        mut self,
        jobs: Option<tokio::sync::mpsc::UnboundedSender<crate::datadog::evidence::EvidenceJob>>,
        in_flight: crate::datadog::evidence::InFlight,
    ) -> Processor {
        self.evidence = jobs;
        self.evidence_in_flight = in_flight;
        self
    }

    fn evidence_jobs(
        &self,
        incident: &Incident,
        effects: &[Effect],
        now: DateTime<Utc>,
    ) -> Vec<crate::datadog::evidence::EvidenceJob> {
        if self.evidence.is_none() {
            return Vec::new();
        }
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::RequestEvidence(purpose) => Some(crate::datadog::evidence::EvidenceJob::for_incident(
                    incident,
                    *purpose,
                    now,
                    &self.policy.datadog,
                )),
                _ => None,
            })
            .collect()
    }

    /// Hands jobs to the evidence worker, after the step that asked for them is committed (so
    /// the answer finds the incident). A job lost in a crash is asked again at the next refresh.
    fn send_jobs(&self, jobs: Vec<crate::datadog::evidence::EvidenceJob>) {
        if let Some(tx) = &self.evidence {
            for job in jobs {
                self.evidence_in_flight.started();
                if tx.send(job).is_err() {
                    self.evidence_in_flight.finished();
                }
            }
        }
    }

    /// Lets messages link to threads (`https://<workspace>/archives/<channel>/p<ts>`).
    pub fn with_workspace_url(mut self, url: Option<String>) -> Processor {
        self.workspace_url = url;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Handles the oldest inbox event. `None` when the inbox is empty.
    pub fn step(&mut self) -> Result<Option<Handled>, StoreError> {
        let Some((seq, event)) = self.store.next_inbox_event()? else { return Ok(None) };
        let span = info_span!("event", seq, kind = event.kind());
        let _enter = span.enter();
        let now = self.clock.now();
        let handled = match event {
            InboxEvent::Domain { event, incident, origin } => {
                self.apply(seq, Derived { event: *event, incident, origin }, now)?
            }
            InboxEvent::Delivered { incident, key, channel, ts } => {
                self.record_delivery(seq, incident, &key.0, channel, ts)?
            }
            other => {
                let interpretation = self.interpreter.interpret(&other, self.store.as_ref(), now);
                match interpretation {
                    Interpretation::Event(derived) => self.apply(seq, *derived, now)?,
                    Interpretation::Ignore(reason) => {
                        self.store.commit(Commit { consumed: Some(seq), ..Commit::default() })?;
                        self.done(seq, "ignored", None, reason)
                    }
                    Interpretation::Answer { origin, text } => {
                        let outbox = render::answer(&origin, &text)
                            .map(|op| OutboxEntry { incident: None, op, created_at: now })
                            .into_iter()
                            .collect();
                        self.store.commit(Commit { consumed: Some(seq), outbox, ..Commit::default() })?;
                        self.done(seq, "refused", None, text)
                    }
                    Interpretation::Remember(message) => {
                        self.store.commit(Commit {
                            consumed: Some(seq),
                            thread_message: Some(message),
                            ..Commit::default()
                        })?;
                        self.done(seq, "remembered", None, String::new())
                    }
                    Interpretation::Calls(outbox) => {
                        self.store.commit(Commit { consumed: Some(seq), outbox, ..Commit::default() })?;
                        self.done(seq, "answered", None, String::new())
                    }
                }
            }
        };
        Ok(Some(handled))
    }

    fn done(&self, seq: InboxSeq, outcome: &'static str, incident: Option<IncidentId>, detail: String) -> Handled {
        self.metrics.processed(outcome);
        info!(outcome, incident = incident.map(|i| i.to_string()), detail = detail.as_str(), "handled");
        Handled { seq, outcome, incident, detail }
    }

    fn apply(&mut self, seq: InboxSeq, d: Derived, now: DateTime<Utc>) -> Result<Handled, StoreError> {
        let consumed = Some(seq);
        let Derived { event, incident: target, origin } = d;
        let existing: Option<Incident> = match (&event, target) {
            (Event::Alert(a) | Event::OpenFromAlert { alert: a, .. }, _) => {
                self.store.find_open_incident_by_fingerprint(&a.fingerprint)?
            }
            (Event::Declare { .. }, _) => None,
            // Edits and deletions of an alert message concern the incident the alert went to, if
            // any; without one the domain ignores them (they never open incidents).
            (Event::AlertEdited { .. } | Event::AlertDeleted { .. }, id) => match id {
                Some(id) => self.store.get_incident(id)?,
                None => None,
            },
            (_, Some(id)) => match self.store.get_incident(id)? {
                Some(i) => Some(i),
                None => {
                    let text = format!("{id} does not exist. `/incident list` shows the open incidents.");
                    return self.refuse(seq, consumed, &origin, text, now);
                }
            },
            (_, None) => {
                let text = "Which incident? Add its id (e.g. `INC-3`), or run the command in the incident's thread."
                    .to_string();
                return self.refuse(seq, consumed, &origin, text, now);
            }
        };
        let next_id = self.store.next_incident_id()?;
        let state = match &existing {
            Some(i) => State::Existing(i),
            None => State::New { id: next_id },
        };
        // Every alert counts toward its channel's weather; in a storm, its incident's per-alert
        // messages are held (the domain's call, told through the context).
        let weather = alert_of(&event).and_then(|a| {
            let channel = self.alert_channel(a, existing.as_ref())?;
            let weather = self.storms.observe(
                &channel,
                &a.name(),
                existing.as_ref().map(|i| i.id),
                now,
                self.policy.alerts.storm,
            );
            Some((channel, weather))
        });
        let storm = weather.as_ref().is_some_and(|(_, w)| w.storm().is_some());
        let ctx = Context::new(now, &self.policy).in_storm(storm);
        let decision = std::panic::catch_unwind(AssertUnwindSafe(|| decide(state, &event, ctx)));
        match decision {
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                warn!(panic = what.as_str(), "decide panicked; the event is kept as a dead letter");
                let reason = format!("decide panicked: {what}");
                self.store.commit(Commit { consumed, dead_letter: Some(reason.clone()), ..Commit::default() })?;
                Ok(self.done(seq, "failed", existing.map(|i| i.id), reason))
            }
            Ok(Err(refusal)) => self.refuse(seq, consumed, &origin, refusal.to_string(), now),
            Ok(Ok(Outcome::Ignored { reason })) => {
                let alert = alert_of(&event).map(|a| LoggedAlert {
                    alert: a.clone(),
                    incident: None,
                    ignored: Some(reason.clone()),
                });
                let outbox = self.storm_summary(weather.as_ref(), now);
                self.store.commit(Commit { consumed, alert, outbox, ..Commit::default() })?;
                Ok(self.done(seq, "ignored", existing.map(|i| i.id), reason))
            }
            Ok(Ok(Outcome::Changed { incident, effects })) => {
                let is_new = existing.is_none();
                let mut outbox = render::outbox_entries(&incident, is_new, &effects, &origin, now);
                if let (Some((channel, _)), Some(alert), true) = (&weather, alert_of(&event), is_new) {
                    self.storms.note_incident(channel, &alert.name(), incident.id);
                }
                outbox.extend(self.storm_summary(weather.as_ref(), now));
                let alert = alert_of(&event).map(|a| LoggedAlert {
                    alert: a.clone(),
                    incident: Some(incident.id),
                    ignored: None,
                });
                // An edit is not a new alert: the log keeps the message's latest content instead.
                let alert_update = match &event {
                    Event::AlertEdited { alert, .. } => {
                        Some(LoggedAlert { alert: (**alert).clone(), incident: Some(incident.id), ignored: None })
                    }
                    _ => None,
                };
                let id = incident.id;
                match incident.deadlines.next().filter(|_| incident.is_open()) {
                    Some(t) => self.deadlines.insert(id, t),
                    None => self.deadlines.remove(&id),
                };
                let jobs = self.evidence_jobs(&incident, &effects, now);
                self.store.commit(Commit {
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
                Ok(self.done(seq, "changed", Some(id), if is_new { "opened".into() } else { String::new() }))
            }
        }
    }

    /// The channel whose weather an alert belongs to: where it was posted, or where its incident
    /// lives, or (for a new incident from a webhook) its team's channel.
    fn alert_channel(&self, alert: &Alert, existing: Option<&Incident>) -> Option<ChannelId> {
        alert
            .slack
            .as_ref()
            .map(|m| m.channel.clone())
            .or_else(|| existing.and_then(|i| i.slack.channel.clone()))
            .or_else(|| Some(self.policy.route(alert).channel.clone()))
    }

    /// Storm mode's one message per storm: posted when the storm starts, edited now and then while
    /// it lasts (see `storm::SUMMARY_EVERY`).
    fn storm_summary(&self, weather: Option<&(ChannelId, Weather)>, now: DateTime<Utc>) -> Vec<OutboxEntry> {
        let Some((channel, weather)) = weather else { return Vec::new() };
        let Some(storm) = self.storms.current(channel) else { return Vec::new() };
        let key = MessageKey(format!("storm/{channel}/{}", storm.id));
        let message = Message::text(storm_summary_message(storm, false));
        let op = match weather {
            Weather::Calm | Weather::Raging { summary_due: false, .. } => return Vec::new(),
            Weather::Started(_) => {
                tracing::warn!(%channel, "alert storm: per-alert messages are held and summarised");
                SlackOp::PostMessage { channel: ChannelRef::Id(channel.clone()), thread: None, message, key: Some(key) }
            }
            Weather::Raging { .. } => SlackOp::UpdateMessage { channel: ChannelRef::Id(channel.clone()), key, message },
        };
        vec![OutboxEntry { incident: None, op, created_at: now }]
    }

    /// The last edit of every storm summary whose storm is over.
    fn storms_over(&mut self, now: DateTime<Utc>) -> Vec<OutboxEntry> {
        self.storms
            .end_calm(now, self.policy.alerts.storm)
            .into_iter()
            .map(|storm| {
                tracing::info!(channel = %storm.channel, alerts = storm.total, "alert storm over");
                let op = SlackOp::UpdateMessage {
                    channel: ChannelRef::Id(storm.channel.clone()),
                    key: MessageKey(format!("storm/{}/{}", storm.channel, storm.id)),
                    message: Message::text(storm_summary_message(&storm, true)),
                };
                OutboxEntry { incident: None, op, created_at: now }
            })
            .collect()
    }

    fn refuse(
        &self,
        seq: InboxSeq,
        consumed: Option<InboxSeq>,
        origin: &Origin,
        text: String,
        now: DateTime<Utc>,
    ) -> Result<Handled, StoreError> {
        let outbox = render::answer(origin, &text)
            .map(|op| OutboxEntry { incident: None, op, created_at: now })
            .into_iter()
            .collect();
        self.store.commit(Commit { consumed, outbox, ..Commit::default() })?;
        Ok(self.done(seq, "refused", None, text))
    }

    /// Egress reports the ts of a message the incident needs to know (its thread root, header or
    /// dedicated channel).
    fn record_delivery(
        &mut self,
        seq: InboxSeq,
        id: IncidentId,
        key: &str,
        channel: crate::domain::ids::ChannelId,
        ts: String,
    ) -> Result<Handled, StoreError> {
        let Some(mut incident) = self.store.get_incident(id)? else {
            self.store.commit(Commit { consumed: Some(seq), ..Commit::default() })?;
            return Ok(self.done(seq, "ignored", Some(id), "delivery for an unknown incident".into()));
        };
        let what = key.rsplit('/').next().unwrap_or_default();
        let now = self.clock.now();
        let mut outbox = Vec::new();
        match what {
            "root" => {
                incident.slack.channel = Some(channel);
                incident.slack.thread_ts = Some(ts);
            }
            "header" => incident.slack.header_ts = Some(ts),
            "channel" => {
                incident.slack.incident_channel = Some(channel.clone());
                incident.record(
                    now,
                    crate::domain::incident::Actor::Bot,
                    crate::domain::incident::EntryKind::Note,
                    format!("Dedicated channel <#{channel}> created"),
                );
                // Link channel and thread both ways, and show the channel on the header.
                let link = match (&self.workspace_url, &incident.slack.channel, &incident.slack.thread_ts) {
                    (Some(base), Some(c), Some(t)) => {
                        Some(format!("{}/archives/{c}/p{}", base.trim_end_matches('/'), t.replace('.', "")))
                    }
                    _ => None,
                };
                let effects = [
                    Effect::SyncHeader,
                    Effect::Reply(crate::domain::messages::incident_channel_created_message(&channel)),
                ];
                outbox = render::outbox_entries(&incident, false, &effects, &Origin::default(), now);
                outbox.push(OutboxEntry {
                    incident: Some(incident.id),
                    op: SlackOp::PostMessage {
                        channel: ChannelRef::Id(channel),
                        thread: None,
                        message: Message::text(crate::domain::messages::incident_channel_intro_message(
                            &incident,
                            link.as_deref(),
                        )),
                        key: None,
                    },
                    created_at: now,
                });
            }
            _ => {}
        }
        self.store.commit(Commit { consumed: Some(seq), incident: Some(incident), outbox, ..Commit::default() })?;
        Ok(self.done(seq, "changed", Some(id), format!("delivered {what}")))
    }

    /// Runs the timers of every incident whose next deadline has passed. Returns how many changed.
    pub fn tick(&mut self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut changed = 0;
        let summaries = self.storms_over(now);
        if !summaries.is_empty() {
            changed += summaries.len();
            self.store.commit(Commit { outbox: summaries, ..Commit::default() })?;
        }
        let due: Vec<IncidentId> = self.deadlines.iter().filter(|(_, t)| **t <= now).map(|(id, _)| *id).collect();
        for id in due {
            let Some(incident) = self.store.get_incident(id)? else {
                self.deadlines.remove(&id);
                continue;
            };
            let span = info_span!("tick", incident = %id);
            let _enter = span.enter();
            let rate = self.policy.alerts.storm;
            let storm = incident.slack.channel.as_ref().is_some_and(|c| self.storms.raging(c, now, rate));
            let ctx = Context::new(now, &self.policy).in_storm(storm);
            let decision =
                std::panic::catch_unwind(AssertUnwindSafe(|| decide(State::Existing(&incident), &Event::Tick, ctx)));
            match decision.unwrap_or_else(|_| Ok(Outcome::Ignored { reason: "timer handling panicked".into() })) {
                Ok(Outcome::Changed { incident: updated, effects }) => {
                    let outbox = render::outbox_entries(&updated, false, &effects, &Origin::default(), now);
                    match updated.deadlines.next().filter(|_| updated.is_open()) {
                        Some(t) => self.deadlines.insert(id, t),
                        None => self.deadlines.remove(&id),
                    };
                    let jobs = self.evidence_jobs(&updated, &effects, now);
                    self.store.commit(Commit { incident: Some(*updated), outbox, ..Commit::default() })?;
                    self.send_jobs(jobs);
                    changed += 1;
                }
                Ok(Outcome::Ignored { .. }) | Err(_) => {
                    match incident.deadlines.next().filter(|t| *t > now && incident.is_open()) {
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

/// Signals for the processor's task.
pub struct ProcessorLinks {
    /// Ingress notifies this after accepting an event.
    pub wake: Arc<Notify>,
    /// Notified after each batch's effects are durable, for egress.
    pub egress: Arc<Notify>,
    pub commit: GroupCommit,
    /// Counts handled inbox events; tests wait on it instead of sleeping.
    pub handled: watch::Sender<u64>,
    pub shutdown: CancellationToken,
    /// How often timers are checked.
    pub tick_every: std::time::Duration,
    /// Ticks requested by hand (tests, the demo's fast clock).
    pub tick_now: Arc<Notify>,
    /// Counts timer passes, so a caller can wait for the one it asked for.
    pub ticked: watch::Sender<u64>,
}

/// Events handled per batch before the batch's writes are flushed and handed to egress.
const BATCH: usize = 64;

/// Runs the processor until shutdown: drains the inbox in batches (one flush per batch), checks
/// timers on every tick, and finishes the batch in hand before stopping.
pub async fn run(mut processor: Processor, links: ProcessorLinks) {
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
            if let Err(e) = links.commit.flush().await {
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
        tokio::select! {
            _ = links.wake.notified() => {}
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
