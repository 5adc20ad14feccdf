//! The tracker port: the ticket a follow-up asks for ([`TicketJob`]), the tracker that makes it
//! ([`Tracker`]: GitHub Issues and Jira Cloud in `crate::trackers`), and the worker between them.
//!
//! Exactly once: every ticket carries its follow-up's marker
//! ([`crate::domain::followup::ticket_marker`]); a request after the first (the previous one
//! failed, timed out, or its answer was lost in a crash) first looks for a ticket with that
//! marker and reports it instead of making a second.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::inbox::Inbox;
use super::jobs::{self, InFlight, JobQueue};
use super::metrics::Metrics;
use crate::domain::decide::Event;
use crate::domain::followup::{FiledTicket, Followup, Ticket, ticket_marker};
use crate::domain::ids::IncidentId;
use crate::domain::incident::Incident;

/// Tickets filed at once; more wait their turn.
pub const CONCURRENT_JOBS: usize = 2;
/// The longest ticket title.
const TITLE_MAX: usize = 120;

/// One ticket to file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketJob {
    pub incident: IncidentId,
    pub followup: u32,
    pub title: String,
    /// What the ticket says, as plain paragraphs (each tracker formats them its way).
    pub paragraphs: Vec<String>,
    /// The incident's Slack thread, when the workspace address is known.
    pub thread_url: Option<String>,
    pub labels: Vec<String>,
    /// Written into the ticket; a retry looks for it.
    pub marker: String,
    /// An earlier request may have made the ticket: look for it first.
    pub look_first: bool,
}

impl TicketJob {
    /// The job for follow-up `number` of `incident`, if it still needs a ticket.
    pub fn for_followup(
        incident: &Incident,
        number: u32,
        labels: &[String],
        workspace_url: Option<&str>,
    ) -> Option<TicketJob> {
        let f: &Followup = incident.followups.iter().find(|f| f.number == number)?;
        let Ticket::Pending { requests, .. } = &f.ticket else { return None };
        let first_line = f.text.lines().next().unwrap_or_default().trim();
        let mut title = format!("[{}] {first_line}", incident.id);
        if title.chars().count() > TITLE_MAX {
            title = title.chars().take(TITLE_MAX - 1).collect::<String>() + "…";
        }
        let thread_url = incident.thread_url(workspace_url);
        let owner = f.owner.as_ref().map(|o| format!("Owner: Slack user {o}.")).unwrap_or("Owner: not set yet.".into());
        let paragraphs = vec![
            f.text.trim().to_string(),
            format!(
                "Follow-up {} of {} ({}, team {}): {}",
                f.label(),
                incident.id,
                incident.severity,
                incident.team,
                incident.title.trim()
            ),
            format!("{owner} Recorded by Slack user {} at {}.", f.by, f.at.format("%Y-%m-%d %H:%M UTC")),
        ];
        Some(TicketJob {
            incident: incident.id,
            followup: number,
            title,
            paragraphs,
            thread_url,
            labels: labels.to_vec(),
            marker: ticket_marker(incident.id, number),
            look_first: *requests > 1,
        })
    }
}

/// Where tickets are made. Errors are said to the incident as they are, so they should tell what
/// to fix.
pub trait Tracker: Send + Sync + 'static {
    /// A name for logs and metrics (`github`, `jira`).
    fn name(&self) -> &'static str;
    /// The ticket carrying `job.marker`, if one exists.
    fn find(&self, job: &TicketJob) -> impl Future<Output = Result<Option<FiledTicket>, String>> + Send;
    fn create(&self, job: &TicketJob) -> impl Future<Output = Result<FiledTicket, String>> + Send;
}

/// The processor's handle on the ticket worker. A job lost in a crash is asked again when its
/// answer is overdue (the incident's `ticket_retry_at`).
pub type TicketQueue = JobQueue<TicketJob>;

/// Looks for an earlier attempt's ticket when asked to, else makes one.
pub async fn file<T: Tracker>(tracker: &T, job: &TicketJob, metrics: &Metrics) -> Result<FiledTicket, String> {
    let counted =
        |what: &str, ok: bool| metrics.api_call(&format!("{}.{what}", tracker.name()), if ok { "ok" } else { "error" });
    if job.look_first {
        let found = tracker.find(job).await;
        counted("find", found.is_ok());
        if let Some(ticket) = found? {
            info!(incident = %job.incident, followup = job.followup, ticket = ticket.key.as_str(), "the ticket an earlier attempt made was found");
            return Ok(ticket);
        }
    }
    let made = tracker.create(job).await;
    counted("create", made.is_ok());
    made
}

/// Starts the worker that files queued tickets and puts the answers in the inbox.
pub fn spawn_worker<T: Tracker>(
    tracker: Arc<T>,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    in_flight: InFlight,
    shutdown: CancellationToken,
) -> (TicketQueue, tokio::task::JoinHandle<()>) {
    jobs::spawn_worker(CONCURRENT_JOBS, inbox, in_flight, shutdown, move |job: TicketJob| {
        let (tracker, metrics) = (tracker.clone(), metrics.clone());
        async move {
            let result = file(tracker.as_ref(), &job, &metrics).await;
            match &result {
                Ok(t) => {
                    info!(incident = %job.incident, followup = job.followup, ticket = t.key.as_str(), "ticket filed")
                }
                Err(e) => {
                    warn!(incident = %job.incident, followup = job.followup, error = e.as_str(), "ticket not filed yet")
                }
            }
            (job.incident, Event::TicketFiled { followup: job.followup, result })
        }
    })
}
