//! Work the processor hands out after a commit (evidence, tickets): a queue, a counter of jobs
//! whose answer has not reached the inbox yet, and a worker running a few at a time whose
//! answers come back through the inbox as domain events, so a slow or failing service never
//! blocks or delays anything else.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::inbox::{Inbox, InboxEvent, Origin};
use crate::domain::decide::Event;
use crate::domain::ids::IncidentId;

/// Jobs handed to a worker whose answer has not reached the inbox yet, so callers waiting for
/// the bot to settle can tell. A watch channel, so a waiter also wakes when the count falls (the
/// answer can be processed before the worker marks its job finished).
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

/// The processor's handle on a worker: jobs go in after the step that asked for them is
/// committed (so the answer finds the incident).
#[derive(Debug)]
pub struct JobQueue<J> {
    jobs: mpsc::UnboundedSender<J>,
    in_flight: InFlight,
}

impl<J> Clone for JobQueue<J> {
    fn clone(&self) -> Self {
        JobQueue { jobs: self.jobs.clone(), in_flight: self.in_flight.clone() }
    }
}

impl<J> JobQueue<J> {
    /// A queue whose jobs are read from the receiver (a worker, or `simulate` listing them).
    pub fn new(in_flight: InFlight) -> (JobQueue<J>, mpsc::UnboundedReceiver<J>) {
        let (jobs, rx) = mpsc::unbounded_channel();
        (JobQueue { jobs, in_flight }, rx)
    }

    pub fn send(&self, job: J) {
        self.in_flight.started();
        if self.jobs.send(job).is_err() {
            self.in_flight.finished();
        }
    }
}

/// Starts a worker: runs `work` for each queued job, at most `concurrency` at a time, and puts
/// the event it answers with in the inbox, about its incident.
pub fn spawn_worker<J, F, Fut>(
    concurrency: usize,
    inbox: Inbox,
    in_flight: InFlight,
    shutdown: CancellationToken,
    work: F,
) -> (JobQueue<J>, tokio::task::JoinHandle<()>)
where
    J: Send + 'static,
    F: Fn(J) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (IncidentId, Event)> + Send + 'static,
{
    let (queue, mut rx) = JobQueue::new(in_flight.clone());
    let work = Arc::new(work);
    let handle = tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(concurrency));
        let tasks = tokio_util::task::TaskTracker::new();
        loop {
            let job = tokio::select! {
                j = rx.recv() => j,
                _ = shutdown.cancelled() => None,
            };
            let Some(job) = job else { break };
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (work, inbox, in_flight) = (work.clone(), inbox.clone(), in_flight.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let (incident, event) = work(job).await;
                let inbox_event =
                    InboxEvent::Domain { event: Box::new(event), incident: Some(incident), origin: Origin::default() };
                if let Err(e) = inbox.accept(inbox_event, None).await {
                    warn!(error = %e, %incident, "cannot hand a worker's answer to the processor");
                }
                in_flight.finished();
            });
        }
        tasks.close();
        tasks.wait().await;
    });
    (queue, handle)
}
