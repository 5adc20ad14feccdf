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

use crate::app::clock::Clock;
use crate::app::evidence::{self, InFlight};
use crate::app::inbox::{GroupCommit, Inbox};
use crate::app::metrics::Metrics;
use crate::app::processor::{self, Processor, ProcessorLinks};
use crate::app::request::{DomainOnly, Reader};
use crate::app::store::Store;
use crate::datadog::evidence::DatadogEvidence;
use crate::domain::policy::Policy;
use crate::http::webhooks;
use crate::slack::client::{BotIdentity, CallError, SlackApi};
use crate::slack::egress::{Egress, EgressLimits};
use crate::slack::read::SlackReader;
use crate::slack::socket::SocketSettings;

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
    /// Evidence requests not answered yet.
    pub evidence_in_flight: InFlight,
    shutdown: CancellationToken,
    flusher_stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningApp {
    /// Builds the bot from settings on `store` and starts it: processor, evidence, egress, Slack
    /// ingress, HTTP server on `listen` (port 0 picks a free port; see `addr`).
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
        let reader: Box<dyn Reader> = match &slack {
            Some((_, bot)) => Box::new(SlackReader::new(policy.clone(), bot.clone())),
            None => Box::new(DomainOnly),
        };
        let mut tasks = Vec::new();
        let evidence_in_flight = InFlight::default();
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
                let source = DatadogEvidence { client, policy: policy.datadog.clone() };
                let (jobs, handle) = evidence::spawn_worker(
                    Arc::new(source),
                    inbox.clone(),
                    settings.clock.clone(),
                    metrics.clone(),
                    evidence_in_flight.clone(),
                    shutdown.clone(),
                );
                tasks.push(handle);
                Some(jobs)
            }
            None => {
                tracing::warn!("Datadog evidence is off: set DD_API_KEY and DD_APP_KEY (and DD_SITE) to turn it on");
                None
            }
        };
        let processor = Processor::new(store.clone(), policy, settings.clock.clone(), metrics.clone(), reader)
            .context("cannot load open incidents")?
            .with_workspace_url(slack.as_ref().and_then(|(_, bot)| bot.workspace_url.clone()))
            .with_evidence(evidence);
        let links = ProcessorLinks {
            wake: wake.clone(),
            egress: egress_wake.clone(),
            commit,
            handled: handled_tx,
            shutdown: shutdown.clone(),
            tick_every: settings.tick_every,
            tick_now: tick_now.clone(),
            ticked: ticked_tx,
        };
        // Events accepted before a restart are waiting: start with a pass over the inbox.
        wake.notify_one();
        tasks.push(tokio::spawn(processor::run(processor, links)));

        let mut router =
            crate::http::ops_routes(crate::http::OpsState { store: store.clone(), metrics: metrics.clone() });
        router = router.merge(webhooks::routes(webhooks::WebhookState {
            inbox: inbox.clone(),
            token: settings.webhook_token.clone(),
        }));
        let mut egress_activity = None;
        if let (Some((api, _)), Some(s)) = (&slack, &settings.slack) {
            let egress = Egress::new(
                store.clone(),
                api.clone(),
                inbox.clone(),
                metrics.clone(),
                s.limits.clone(),
                shutdown.clone(),
            );
            egress_activity = Some(egress.activity());
            tasks.push(tokio::spawn(egress.run(egress_wake.clone())));
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
        tracing::info!(%addr, "listening");
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
            evidence_in_flight,
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
        let mut evidence = self.evidence_in_flight.subscribe();
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
