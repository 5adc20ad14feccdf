//! The evidence port: what the processor asks about an incident ([`EvidenceJob`]), the source
//! that answers ([`EvidenceSource`], Datadog in `crate::datadog`), and the worker between them.
//! Answers come back through the inbox as events, so a slow or failing source never blocks or
//! delays anything else.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::clock::Clock;
use super::inbox::{Inbox, InboxEvent, Origin};
use super::metrics::Metrics;
use crate::domain::decide::Event;
use crate::domain::evidence::Evidence;
use crate::domain::ids::IncidentId;
use crate::domain::incident::{EvidencePurpose, Incident};
use crate::domain::policy::DatadogPolicy;

/// Evidence gathered at once; more wait their turn.
pub const CONCURRENT_JOBS: usize = 4;
/// The widest window asked about, whatever the alert's timestamps say (clock skew, old alerts).
pub const MAX_WINDOW: TimeDelta = TimeDelta::hours(6);

/// What to ask about, for one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceJob {
    pub incident: IncidentId,
    pub purpose: EvidencePurpose,
    pub service: Option<String>,
    pub env: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl EvidenceJob {
    /// The window runs from `window_before` ahead of the first alert to now (or the resolution).
    pub fn for_incident(
        incident: &Incident,
        purpose: EvidencePurpose,
        now: DateTime<Utc>,
        dd: &DatadogPolicy,
    ) -> EvidenceJob {
        let to = incident.resolved_at.unwrap_or(now);
        // The first alert anchors the window, as long as its clock agrees with ours.
        let first =
            incident.alerts.as_ref().map(|a| a.first_seen).unwrap_or(incident.opened_at).clamp(to - MAX_WINDOW, to);
        let from = (first - dd.window_before).max(to - MAX_WINDOW - dd.window_before);
        let to = to.max(from + TimeDelta::minutes(1));
        EvidenceJob {
            incident: incident.id,
            purpose,
            service: incident.alerts.as_ref().and_then(|a| a.service.clone()),
            env: incident.alerts.as_ref().and_then(|a| a.env.clone()).or_else(|| dd.env.clone()),
            from,
            to,
        }
    }
}

/// Where evidence comes from. The answer's error is said to the incident as it is, so it should
/// tell what to fix.
pub trait EvidenceSource: Send + Sync + 'static {
    /// A name for logs and metrics (`datadog`).
    fn name(&self) -> &'static str;
    fn gather(&self, job: &EvidenceJob, now: DateTime<Utc>) -> impl Future<Output = Result<Evidence, String>> + Send;
}

/// Jobs handed to the worker whose answer has not reached the inbox yet, so callers waiting
/// for the bot to settle can tell. A watch channel, so a waiter also wakes when the count falls
/// (the answer can be processed before the worker marks its job finished).
#[derive(Debug, Clone)]
pub struct InFlight(Arc<tokio::sync::watch::Sender<u64>>);

impl Default for InFlight {
    fn default() -> Self {
        InFlight(Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

impl InFlight {
    pub fn count(&self) -> u64 {
        *self.0.borrow()
    }

    pub fn started(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    pub fn finished(&self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Changes of the count, for waiting on it.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// The processor's handle on the worker: jobs go in after the step that asked for them is
/// committed (so the answer finds the incident). A job lost in a crash is asked again at the next
/// refresh.
#[derive(Clone)]
pub struct EvidenceQueue {
    jobs: mpsc::UnboundedSender<EvidenceJob>,
    in_flight: InFlight,
}

impl EvidenceQueue {
    /// A queue whose jobs are read from the receiver (a worker, or `simulate` listing them).
    pub fn new(in_flight: InFlight) -> (EvidenceQueue, mpsc::UnboundedReceiver<EvidenceJob>) {
        let (jobs, rx) = mpsc::unbounded_channel();
        (EvidenceQueue { jobs, in_flight }, rx)
    }

    pub fn send(&self, job: EvidenceJob) {
        self.in_flight.started();
        if self.jobs.send(job).is_err() {
            self.in_flight.finished();
        }
    }
}

/// Starts the worker that gathers evidence from `source` for queued jobs and puts the results in
/// the inbox, at most [`CONCURRENT_JOBS`] at a time.
pub fn spawn_worker<S: EvidenceSource>(
    source: Arc<S>,
    inbox: Inbox,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    in_flight: InFlight,
    shutdown: CancellationToken,
) -> (EvidenceQueue, tokio::task::JoinHandle<()>) {
    let (queue, mut rx) = EvidenceQueue::new(in_flight.clone());
    let handle = tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(CONCURRENT_JOBS));
        let tasks = tokio_util::task::TaskTracker::new();
        loop {
            let job = tokio::select! {
                j = rx.recv() => j,
                _ = shutdown.cancelled() => None,
            };
            let Some(job) = job else { break };
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (source, inbox, clock, metrics) = (source.clone(), inbox.clone(), clock.clone(), metrics.clone());
            let in_flight = in_flight.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let result = source.gather(&job, clock.now()).await;
                let call = format!("{}.evidence", source.name());
                match &result {
                    Ok(e) => {
                        metrics.api_call(&call, "ok");
                        info!(incident = %job.incident, verdict = e.blast.as_ref().map(|b| b.verdict.to_string()), traces = e.traces.len(), "evidence gathered");
                    }
                    Err(err) => {
                        metrics.api_call(&call, "failed");
                        warn!(incident = %job.incident, error = err.as_str(), "evidence unavailable");
                    }
                }
                let event = Event::Evidence { purpose: job.purpose, result: result.map(Box::new) };
                let inbox_event =
                    InboxEvent::Domain { event: Box::new(event), incident: Some(job.incident), origin: Origin::default() };
                if let Err(e) = inbox.accept(inbox_event, None).await {
                    warn!(error = %e, "cannot hand the evidence to the processor");
                }
                in_flight.finished();
            });
        }
        tasks.close();
        tasks.wait().await;
    });
    (queue, handle)
}
