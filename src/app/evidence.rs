//! The evidence port: what the processor asks about an incident ([`EvidenceJob`]), the source
//! that answers ([`EvidenceSource`], Datadog in `crate::datadog`), and the worker between them.
//! Answers come back through the inbox as events, so a slow or failing source never blocks or
//! delays anything else.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::clock::Clock;
use super::inbox::Inbox;
pub use super::jobs::InFlight;
use super::jobs::{self, JobQueue};
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
    /// Requests sent so far and requests left in the budget, for the metrics (`None`: not
    /// counted).
    fn usage(&self) -> Option<(u64, u64)> {
        None
    }
}

/// The processor's handle on the evidence worker. A job lost in a crash is asked again at the
/// next refresh.
pub type EvidenceQueue = JobQueue<EvidenceJob>;

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
    let reported = Arc::new(std::sync::atomic::AtomicU64::new(0));
    jobs::spawn_worker(CONCURRENT_JOBS, inbox, in_flight, shutdown, move |job: EvidenceJob| {
        let (source, clock, metrics, reported) = (source.clone(), clock.clone(), metrics.clone(), reported.clone());
        async move {
            let result = source.gather(&job, clock.now()).await;
            if let Some((sent, left)) = source.usage() {
                // Several jobs run at once: each adds what no other has reported yet.
                let before = reported.fetch_max(sent, std::sync::atomic::Ordering::SeqCst);
                metrics.datadog_requests.inc_by(sent.saturating_sub(before));
                metrics.datadog_budget_remaining.set(left as i64);
            }
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
            (job.incident, Event::Evidence { purpose: job.purpose, result: result.map(Box::new) })
        }
    })
}
