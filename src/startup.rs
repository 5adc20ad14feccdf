//! Wiring, in one place: builds the bot from its settings and an opened store, starts the
//! processor, the evidence worker, egress, the Slack ingress and the HTTP server, and stops them
//! in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::SecretString;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::clock::Clock;
use crate::app::evidence::{self, InFlight};
use crate::app::inbox::{GroupCommit, Inbox};
use crate::app::metrics::Metrics;
use crate::app::processor::{self, Processor, ProcessorLinks};
use crate::app::request::{DomainOnly, Reader};
use crate::app::store::{Role, RoleState, Store};
use crate::app::tickets;
use crate::datadog::evidence::DatadogEvidence;
use crate::domain::policy::Policy;
use crate::http::webhooks;
use crate::slack::client::{BotIdentity, CallError, SlackApi};
use crate::slack::egress::{Egress, EgressLimits};
use crate::slack::read::SlackReader;
use crate::slack::socket::SocketSettings;
use crate::trackers::{AnyTracker, TrackerEnv};

/// Everything `serve` needs to start, besides the store.
pub struct Settings {
    pub policy: Policy,
    pub listen: SocketAddr,
    pub clock: Arc<dyn Clock>,
    /// How often timers are checked.
    pub tick_every: Duration,
    /// Slack; without it the bot only takes webhooks and domain events.
    pub slack: Option<SlackSettings>,
    /// Shared secret for the alert webhooks (`WEBHOOK_TOKEN`); `None` turns them off.
    pub webhook_token: Option<SecretString>,
    /// Datadog, for evidence; `None` turns evidence off.
    pub datadog: Option<DatadogSettings>,
    /// Tracker credentials and addresses (`GITHUB_TOKEN` ...); used when the policy's
    /// `[followups] tracker` is set.
    pub trackers: TrackerEnv,
    /// The dashboard's token (`DASHBOARD_TOKEN`); `None` keeps the dashboard off.
    pub dashboard_token: Option<SecretString>,
}

/// How to reach Datadog.
pub struct DatadogSettings {
    pub site: crate::datadog::Site,
    pub api_key: SecretString,
    pub app_key: SecretString,
    /// Spans requests per hour (Datadog allows 300 per organisation).
    pub budget_per_hour: u32,
}

/// How to reach Slack.
pub struct SlackSettings {
    /// Web API base URL including `/api` (`SLACK_API_URL`).
    pub api_url: String,
    pub bot_token: SecretString,
    /// HTTP mode: verify requests with this secret (`SLACK_SIGNING_SECRET`).
    pub signing_secret: Option<SecretString>,
    /// Socket Mode (`SLACK_APP_TOKEN`).
    pub socket: Option<SocketSettings>,
    pub limits: EgressLimits,
}

/// A started bot: its bound address, its parts for tests, and a way to stop it.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub inbox: Inbox,
    pub metrics: Arc<Metrics>,
    /// Number of inbox events handled so far.
    pub handled: watch::Receiver<u64>,
    /// Notify to run the timers now (tests, fast demo clock).
    pub tick_now: Arc<Notify>,
    /// Counts timer passes.
    pub ticks: watch::Receiver<u64>,
    /// Notified when new Slack calls are durable in the outbox.
    pub egress_wake: Arc<Notify>,
    /// The bot's Slack identity, when Slack is configured.
    pub bot: Option<BotIdentity>,
    /// Changes after every delivered Slack call.
    pub egress_activity: Option<watch::Receiver<u64>>,
    /// Evidence and ticket requests not answered yet.
    pub jobs_in_flight: InFlight,
    /// Leader or follower, and since when.
    pub role: watch::Receiver<RoleState>,
    shutdown: CancellationToken,
    flusher_stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Slack as the leader's egress uses it: the client, who the bot is, the limits, and the
/// activity signal every egress of this process reports to.
type LeaderSlack = (Arc<SlackApi>, BotIdentity, EgressLimits, Arc<watch::Sender<u64>>);

/// What the leader runs — the processor (with the timers), egress and the evidence worker — and
/// everything needed to start them again after another replica led for a while.
struct Duties {
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    inbox: Inbox,
    commit: GroupCommit,
    wake: Arc<Notify>,
    egress_wake: Arc<Notify>,
    tick_now: Arc<Notify>,
    tick_every: Duration,
    handled: Arc<watch::Sender<u64>>,
    ticked: Arc<watch::Sender<u64>>,
    slack: Option<LeaderSlack>,
    evidence: Option<Arc<DatadogEvidence>>,
    /// The tracker follow-ups become tickets in, when the policy names one.
    tracker: Option<Arc<AnyTracker>>,
    /// Evidence and ticket requests not answered yet.
    jobs_in_flight: InFlight,
}

impl Duties {
    /// Starts the leader's tasks; they stop when `stop` is cancelled. Loads the open incidents
    /// (and their timers) from the store first, so a new leader starts from what the last one
    /// committed.
    fn start(&self, stop: &CancellationToken) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        let reader: Box<dyn Reader> = match &self.slack {
            Some((_, bot, _, _)) => Box::new(SlackReader::new(self.policy.clone(), bot.clone())),
            None => Box::new(DomainOnly),
        };
        let processor =
            Processor::new(self.store.clone(), self.policy.clone(), self.clock.clone(), self.metrics.clone(), reader)
                .context("cannot load open incidents")?
                .with_workspace_url(self.slack.as_ref().and_then(|(_, bot, _, _)| bot.workspace_url.clone()));
        let evidence = self.evidence.as_ref().map(|source| {
            let (jobs, handle) = evidence::spawn_worker(
                source.clone(),
                self.inbox.clone(),
                self.clock.clone(),
                self.metrics.clone(),
                self.jobs_in_flight.clone(),
                stop.clone(),
            );
            tasks.push(handle);
            jobs
        });
        let tickets = self.tracker.as_ref().map(|tracker| {
            let (jobs, handle) = tickets::spawn_worker(
                tracker.clone(),
                self.inbox.clone(),
                self.metrics.clone(),
                self.jobs_in_flight.clone(),
                stop.clone(),
            );
            tasks.push(handle);
            jobs
        });
        let links = ProcessorLinks {
            wake: self.wake.clone(),
            egress: self.egress_wake.clone(),
            commit: self.commit.clone(),
            handled: self.handled.clone(),
            shutdown: stop.clone(),
            tick_every: self.tick_every,
            tick_now: self.tick_now.clone(),
            ticked: self.ticked.clone(),
            elsewhere: self.store.inbox_elsewhere(),
        };
        // Events accepted before a restart (or by other replicas) are waiting: start with a pass
        // over the inbox.
        self.wake.notify_one();
        tasks.push(tokio::spawn(processor::run(processor.with_evidence(evidence).with_tickets(tickets), links)));
        if let Some((api, _, limits, activity)) = &self.slack {
            let egress = Egress::new(
                self.store.clone(),
                api.clone(),
                self.inbox.clone(),
                self.metrics.clone(),
                limits.clone(),
                activity.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(egress.run(self.egress_wake.clone())));
        }
        Ok(tasks)
    }
}

/// Waits for `role` to be (or stop being) the leader; `false` when `shutdown` came first. A role
/// that can no longer change (a store only this process opens) waits for shutdown.
async fn until_role(role: &mut watch::Receiver<Role>, leading: bool, shutdown: &CancellationToken) -> bool {
    loop {
        if (*role.borrow_and_update() == Role::Leader) == leading {
            return true;
        }
        tokio::select! {
            changed = role.changed() => if changed.is_err() {
                shutdown.cancelled().await;
                return false;
            },
            _ = shutdown.cancelled() => return false,
        }
    }
}

/// Publishes this process's role (for `/healthz`) and its metrics; becoming the leader counts as
/// an election won.
fn report_role(metrics: &Metrics, state: &watch::Sender<RoleState>, role: Role, since: chrono::DateTime<chrono::Utc>) {
    state.send_replace(RoleState { role, since });
    metrics.leader.set(i64::from(role == Role::Leader));
    metrics.role_since.set(since.timestamp());
    if role == Role::Leader {
        metrics.leader_elections_won.inc();
    }
}

/// Runs the leader's duties while this process leads: starts them when elected, stops them
/// (waiting for the call in hand) when deposed, and starts them again on the next election.
async fn lead_while_elected(
    duties: Duties,
    mut role: watch::Receiver<Role>,
    state: watch::Sender<RoleState>,
    mut running: Option<(CancellationToken, Vec<JoinHandle<()>>)>,
    shutdown: CancellationToken,
) {
    let report = |r: Role| report_role(&duties.metrics, &state, r, duties.clock.now());
    loop {
        if running.is_none() {
            if !until_role(&mut role, true, &shutdown).await {
                return;
            }
            let stop = shutdown.child_token();
            match duties.start(&stop) {
                Ok(tasks) => {
                    report(Role::Leader);
                    info!("leading: processor, timers, egress and evidence started");
                    running = Some((stop, tasks));
                }
                Err(e) => {
                    warn!(error = format!("{e:#}"), "elected but cannot start leading yet; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    continue;
                }
            }
        }
        let deposed = until_role(&mut role, false, &shutdown).await;
        if let Some((stop, tasks)) = running.take() {
            stop.cancel();
            for task in tasks {
                if let Err(e) = task.await {
                    warn!(error = %e, "a leader's task panicked while stopping");
                }
            }
        }
        if !deposed {
            return;
        }
        report(Role::Follower);
        warn!("following: another replica leads (processor, egress, timers and evidence stopped here)");
    }
}

impl RunningApp {
    /// Builds the bot from settings on `store` and starts it: HTTP server on `listen` (port 0
    /// picks a free port; see `addr`), Slack ingress, and — while this process is the leader,
    /// which it always is on a store no other process shares — the processor, evidence and
    /// egress.
    pub async fn start(settings: Settings, store: Arc<dyn Store>) -> anyhow::Result<RunningApp> {
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        // The flusher outlives the other tasks: it stops on its own token, cancelled last.
        let flusher_stop = CancellationToken::new();
        let commit = GroupCommit::start(store.clone(), flusher_stop.clone());
        let wake = Arc::new(Notify::new());
        let egress_wake = Arc::new(Notify::new());
        let tick_now = Arc::new(Notify::new());
        let (handled_tx, handled) = watch::channel(0u64);
        let (ticked_tx, ticks) = watch::channel(0u64);
        let inbox = Inbox::new(store.clone(), commit.clone(), wake.clone(), metrics.clone(), settings.clock.clone())
            .context("cannot read the inbox")?;

        let policy = Arc::new(settings.policy);

        // Slack: learn who we are first, so a bad token stops startup with a clear message.
        let slack = match &settings.slack {
            Some(s) => {
                let api = Arc::new(SlackApi::new(&s.api_url, &s.bot_token, s.limits.call_timeout)?);
                let bot = match api.auth_test().await {
                    Ok(bot) => bot,
                    Err(CallError::Auth(code)) => anyhow::bail!(
                        "Slack refused SLACK_BOT_TOKEN ({code}); copy the bot token (xoxb-...) from the app's OAuth & Permissions page"
                    ),
                    Err(e) => return Err(anyhow::anyhow!("cannot reach Slack at {} for auth.test: {e}", s.api_url)),
                };
                tracing::info!(user = %bot.user_id, bot = ?bot.bot_id, team = bot.team_id.as_str(), "Slack identity");
                Some((api, bot))
            }
            None => None,
        };
        let mut tasks = Vec::new();
        let jobs_in_flight = InFlight::default();
        let client = settings.datadog.as_ref().and_then(|dd| {
            match crate::datadog::DatadogClient::new(dd.site.clone(), dd.api_key.clone(), dd.app_key.clone()) {
                Ok(client) => Some((dd, client.with_budget(dd.budget_per_hour))),
                // Evidence is a help, never a reason not to run.
                Err(e) => {
                    tracing::warn!(error = e.as_str(), "Datadog evidence is off: cannot build its client");
                    None
                }
            }
        });
        let evidence = match client {
            Some((dd, client)) => {
                tracing::info!(api = dd.site.api_base.as_str(), app = dd.site.app_base.as_str(), "Datadog evidence on");
                Some(Arc::new(DatadogEvidence { client, policy: policy.datadog.clone() }))
            }
            None => {
                tracing::warn!("Datadog evidence is off: set DD_API_KEY and DD_APP_KEY (and DD_SITE) to turn it on");
                None
            }
        };
        let tracker = policy.followups.tracker.as_ref().map(|target| {
            let tracker = AnyTracker::from_settings(target, &settings.trackers).unwrap_or_else(|problems| {
                // Follow-ups are still recorded; their tickets wait, and the thread says why.
                tracing::warn!(
                    problems = problems.join("; ").as_str(),
                    "follow-up tickets cannot be filed until the tracker settings are fixed"
                );
                AnyTracker::Misconfigured(problems)
            });
            tracing::info!(tracker = target.label().as_str(), "follow-up tickets on");
            Arc::new(tracker)
        });
        let egress_activity_tx = Arc::new(watch::channel(0u64).0);
        let duties = Duties {
            store: store.clone(),
            policy: policy.clone(),
            clock: settings.clock.clone(),
            metrics: metrics.clone(),
            inbox: inbox.clone(),
            commit,
            wake,
            egress_wake: egress_wake.clone(),
            tick_now: tick_now.clone(),
            tick_every: settings.tick_every,
            handled: Arc::new(handled_tx),
            ticked: Arc::new(ticked_tx),
            slack: match (&slack, &settings.slack) {
                (Some((api, bot)), Some(s)) => {
                    Some((api.clone(), bot.clone(), s.limits.clone(), egress_activity_tx.clone()))
                }
                _ => None,
            },
            evidence,
            tracker,
            jobs_in_flight: jobs_in_flight.clone(),
        };
        // A process that leads from the start (always, on a store only it opens) starts its
        // duties now, so a store it cannot read stops startup with the reason.
        let role_rx = store.role();
        let first_role = *role_rx.borrow();
        let running = if first_role == Role::Leader {
            let stop = shutdown.child_token();
            let started = duties.start(&stop)?;
            Some((stop, started))
        } else {
            tracing::info!("following until elected: ingress only");
            None
        };
        let (role_tx, role) = watch::channel(RoleState { role: first_role, since: settings.clock.now() });
        report_role(&metrics, &role_tx, first_role, settings.clock.now());
        tasks.push(tokio::spawn(lead_while_elected(duties, role_rx, role_tx, running, shutdown.clone())));

        let mut router = crate::http::ops_routes(crate::http::OpsState {
            store: store.clone(),
            metrics: metrics.clone(),
            role: role.clone(),
        });
        router = router.merge(webhooks::routes(webhooks::WebhookState {
            inbox: inbox.clone(),
            token: settings.webhook_token.clone(),
        }));
        if let Some(token) = &settings.dashboard_token {
            router = router.merge(crate::dashboard::routes(crate::dashboard::DashboardState {
                store: store.clone(),
                clock: settings.clock.clone(),
                token: token.clone(),
                workspace_url: slack.as_ref().and_then(|(_, bot)| bot.workspace_url.clone()),
            }));
            tracing::info!("dashboard on: /, /incidents/INC-n, /insights");
        }
        let egress_activity = slack.as_ref().map(|_| egress_activity_tx.subscribe());
        if let (Some((api, _)), Some(s)) = (&slack, &settings.slack) {
            if let Some(secret) = &s.signing_secret {
                router = router.merge(crate::slack::ingress::routes(crate::slack::ingress::IngressState::new(
                    inbox.clone(),
                    secret,
                )));
                tracing::info!("Slack HTTP mode: /slack/events, /slack/commands, /slack/interactions");
            }
            if let Some(socket) = &s.socket {
                tasks.push(tokio::spawn(crate::slack::socket::run(
                    api.clone(),
                    socket.clone(),
                    inbox.clone(),
                    metrics.clone(),
                    shutdown.clone(),
                )));
                tracing::info!("Slack Socket Mode enabled");
            }
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        tracing::info!(%addr, role = first_role.as_str(), "listening");
        let bot = slack.map(|(_, bot)| bot);
        Ok(RunningApp {
            addr,
            store,
            inbox,
            metrics,
            handled,
            tick_now,
            ticks,
            egress_wake,
            bot,
            egress_activity,
            jobs_in_flight,
            role,
            shutdown,
            flusher_stop,
            tasks,
        })
    }

    /// Waits until at least `n` inbox events have been handled in total.
    pub async fn wait_handled(&mut self, n: u64) {
        let _ = self.handled.wait_for(|h| *h >= n).await;
    }

    /// Runs the timers now and waits until that pass (and everything it caused) is done.
    pub async fn run_timers(&mut self) {
        let before = *self.ticks.borrow_and_update();
        self.tick_now.notify_one();
        let _ = self.ticks.wait_for(|n| *n > before).await;
        self.wait_idle().await;
    }

    /// Waits until everything accepted so far is processed and every Slack call it caused is
    /// delivered: the inbox and the outbox are empty. Waits on progress signals, never sleeps.
    pub async fn wait_idle(&mut self) {
        let mut egress = self.egress_activity.clone();
        let mut evidence = self.jobs_in_flight.subscribe();
        loop {
            self.handled.borrow_and_update();
            if let Some(e) = egress.as_mut() {
                e.borrow_and_update();
            }
            let evidence_pending = *evidence.borrow_and_update();
            let handled = *self.handled.borrow();
            let outbox_empty = self.store.pending_outbox().map(|p| p.is_empty()).unwrap_or(false) || egress.is_none();
            if handled >= self.inbox.accepted_count() && outbox_empty && evidence_pending == 0 {
                return;
            }
            let egress_changed = async {
                match egress.as_mut() {
                    Some(e) => e.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.handled.changed() => {}
                _ = egress_changed => {}
                _ = evidence.changed() => {}
            }
        }
    }

    /// Stops accepting, lets the processor finish the event in hand, flushes, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.context("a task panicked while stopping")?;
        }
        self.store.persist().context("final flush")?;
        self.flusher_stop.cancel();
        // The database closes (and its directory lock is released) when the last handle goes;
        // wait for the tasks that held one to drop it.
        let store = self.store;
        drop(self.inbox);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&store) > 1 && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if Arc::strong_count(&store) > 1 {
            tracing::warn!(handles = Arc::strong_count(&store), "the database is still held after stopping");
        }
        Ok(())
    }
}
