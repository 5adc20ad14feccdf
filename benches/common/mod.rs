//! What the benchmarks share: the bot against a sandbox, sending webhook bodies concurrently,
//! Datadog webhook bodies, and reading the process's peak memory.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use incident_commander::app::clock::SystemClock;
use incident_commander::policy::Policy;
use incident_commander::sandbox::slack::SlackSandbox;
use incident_commander::slack::egress::EgressLimits;
use incident_commander::startup::{RunningApp, Settings};

/// One team in one channel, three people on its rotation, the default rules.
pub const ONE_TEAM: &str = r#"
[slack]
alert_channels = ["C0ALERTS1"]
[[team]]
name = "backend"
members = ["U0ALICE01", "U0BOB0001", "U0CAROL01"]
channel = "C0ALERTS1"
"#;

/// Starts the bot on the machine's clock against `sandbox`, with its data in a temporary
/// directory (kept alive by the returned guard) and webhooks on with `webhook_token`.
pub async fn start_bot(
    sandbox: &SlackSandbox,
    policy: &str,
    egress: EgressLimits,
    webhook_token: Option<&str>,
    tick_every: Duration,
) -> (RunningApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = incident_commander::store::open_embedded(dir.path()).unwrap();
    (start_bot_on(sandbox, policy, egress, webhook_token, tick_every, store).await, dir)
}

/// Like [`start_bot`], on a store of the caller's.
pub async fn start_bot_on(
    sandbox: &SlackSandbox,
    policy: &str,
    egress: EgressLimits,
    webhook_token: Option<&str>,
    tick_every: Duration,
    store: Arc<dyn incident_commander::app::store::Store>,
) -> RunningApp {
    let settings = Settings {
        policy: Policy::parse(policy).unwrap(),
        listen: "127.0.0.1:0".parse().unwrap(),
        clock: Arc::new(SystemClock),
        tick_every,
        slack: Some(sandbox.bot_settings(egress)),
        webhook_token: webhook_token.map(secrecy::SecretString::from),
        datadog: None,
        trackers: Default::default(),
        dashboard_token: None,
    };
    RunningApp::start(settings, store).await.unwrap()
}

/// Drops a bench's database.
pub type DropDatabase = Box<dyn FnOnce()>;

/// A PostgreSQL store on a fresh database of its own (a replica that elects itself), and a
/// function that drops the database; `None` without `DATABASE_URL`.
pub fn postgres_store() -> Option<(Arc<dyn incident_commander::app::store::Store>, DropDatabase)> {
    use incident_commander::store::{PgOptions, PgStore, Replication};
    let base = std::env::var("DATABASE_URL").ok()?;
    let name = format!("ic_bench_{}", std::process::id());
    let admin = base.clone();
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        postgres::Client::connect(&admin, postgres::NoTls).unwrap().batch_execute(&create).unwrap()
    })
    .join()
    .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&format!("/{name}"));
    let options =
        PgOptions { replication: Replication::Elect { name: "bench".into() }, ..PgOptions::sole(url.as_str()) };
    let store: Arc<dyn incident_commander::app::store::Store> = Arc::new(PgStore::open(&options).unwrap());
    let cleanup = move || {
        let drop_db = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        std::thread::spawn(move || {
            let _ = postgres::Client::connect(&base, postgres::NoTls).unwrap().batch_execute(&drop_db);
        })
        .join()
        .unwrap();
    };
    Some((store, Box::new(cleanup)))
}

/// Peak resident set size of this process (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A Datadog webhook body (see [`incident_commander::sandbox::datadog_webhook_body`]).
pub fn datadog_webhook(event: usize, monitor: usize, transition: &str, service: &str) -> String {
    incident_commander::sandbox::datadog_webhook_body(9_000_000, event, monitor, transition, service)
}

/// Posts every body to `url` with `concurrency` clients at once, as fast as they go. Returns how
/// many were accepted (HTTP 2xx) and how many failed.
pub async fn send_all(url: &str, token: &str, bodies: Vec<String>, concurrency: usize) -> (usize, usize) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let queue = Arc::new(tokio::sync::Mutex::new(bodies.into_iter()));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, queue, url, token) = (client.clone(), queue.clone(), url.to_string(), token.to_string());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, 0usize);
            loop {
                let Some(body) = queue.lock().await.next() else { break };
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    let (mut accepted, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.await.unwrap();
        accepted += o;
        failed += f;
    }
    (accepted, failed)
}
