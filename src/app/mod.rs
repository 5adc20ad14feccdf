//! The imperative shell: wiring, the inbox, the serial processor, timers, and the HTTP server.

pub mod clock;
pub mod inbox;
pub mod metrics;
pub mod processor;
pub mod render;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::clock::Clock;
use self::inbox::{GroupCommit, Inbox};
use self::metrics::Metrics;
use self::processor::{Interpreter, Processor, ProcessorLinks};
use crate::policy::Policy;
use crate::store::{SledStore, Store};

/// Everything `serve` needs to start.
pub struct Settings {
    pub policy: Policy,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub clock: Arc<dyn Clock>,
    /// How often timers are checked.
    pub tick_every: Duration,
}

/// A started bot: its bound address, its parts for tests, and a way to stop it.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub store: Arc<SledStore>,
    pub inbox: Inbox,
    pub metrics: Arc<Metrics>,
    /// Number of inbox events handled so far.
    pub handled: watch::Receiver<u64>,
    /// Notify to run the timers now (tests, fast demo clock).
    pub tick_now: Arc<Notify>,
    /// Notified when new Slack calls are durable in the outbox.
    pub egress_wake: Arc<Notify>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningApp {
    /// Builds the bot from settings and starts it: store, processor, HTTP server on `listen`
    /// (port 0 picks a free port; see `addr`).
    pub async fn start(settings: Settings, interpreter: Box<dyn Interpreter>) -> anyhow::Result<RunningApp> {
        let store = Arc::new(
            SledStore::open(&settings.data_dir)
                .with_context(|| format!("cannot open the data directory {}", settings.data_dir.display()))?,
        );
        let dyn_store: Arc<dyn Store> = store.clone();
        let metrics = Arc::new(Metrics::new());
        let commit = GroupCommit::start(dyn_store.clone());
        let wake = Arc::new(Notify::new());
        let egress_wake = Arc::new(Notify::new());
        let tick_now = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let (handled_tx, handled) = watch::channel(0u64);
        let inbox = Inbox::new(dyn_store.clone(), commit.clone(), wake.clone(), metrics.clone());

        let policy = Arc::new(settings.policy);
        let processor = Processor::new(dyn_store.clone(), policy, settings.clock.clone(), metrics.clone(), interpreter)
            .context("cannot load open incidents")?;
        let links = ProcessorLinks {
            wake: wake.clone(),
            egress: egress_wake.clone(),
            commit,
            handled: handled_tx,
            shutdown: shutdown.clone(),
            tick_every: settings.tick_every,
            tick_now: tick_now.clone(),
        };
        // Events accepted before a restart are waiting: start with a pass over the inbox.
        wake.notify_one();
        let mut tasks = vec![tokio::spawn(processor::run(processor, links))];

        let router = server::ops_routes(server::OpsState { store: dyn_store.clone(), metrics: metrics.clone() });
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
        Ok(RunningApp { addr, store, inbox, metrics, handled, tick_now, egress_wake, shutdown, tasks })
    }

    /// Waits until at least `n` inbox events have been handled in total.
    pub async fn wait_handled(&mut self, n: u64) {
        let _ = self.handled.wait_for(|h| *h >= n).await;
    }

    /// Stops accepting, lets the processor finish the event in hand, flushes, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.context("a task panicked while stopping")?;
        }
        self.store.flush().context("final flush")?;
        Ok(())
    }
}
