//! Alert storms against Slack's real pacing: the sandbox answers chat.postMessage at about one
//! message per second per channel (429 beyond, as Slack does) and the bot paces itself to Slack's
//! published limits.
//!
//! - `roots`: 2,000 Datadog webhooks from 20 monitors, all routed to one channel. How long until
//!   every incident's thread root is in the channel? Target: the 20th root at most 25 s after
//!   the first webhook.
//! - `flapping`: 10,000 webhooks from 50 monitors cycling Triggered, Re-Triggered, Recovered (a
//!   new alert cycle each round). How many Slack calls queue up, and does memory stay flat?
//!   Target: a bounded number of messages per incident, whatever the storm's size.
//!
//! `cargo bench --bench storm` runs both; `-- roots` or `-- flapping` runs one.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{datadog_webhook, peak_rss_mib, send_all, start_bot};
use incident_commander::sandbox::slack::{self, SandboxLimits, SlackSandbox, StoredMessage};
use incident_commander::slack::egress::EgressLimits;

/// One team, one channel, the default storm rule (more than 10 alerts a minute).
const POLICY: &str = common::ONE_TEAM;

const ROOT_TARGET: Duration = Duration::from_secs(25);
const TOKEN: &str = "bench-token";

struct Bot {
    sandbox: SlackSandbox,
    app: incident_commander::startup::RunningApp,
    _dir: tempfile::TempDir,
}

async fn start() -> Bot {
    let sandbox = SlackSandbox::start(SandboxLimits::SLACK).await.unwrap();
    sandbox.add_channel("C0ALERTS1", "alerts-backend", &[slack::BOT_USER_ID]);
    // Storms, Slack's pacing and the timers that end storms all run on real time here.
    let (app, dir) = start_bot(&sandbox, POLICY, EgressLimits::slack(), Some(TOKEN), Duration::from_secs(1)).await;
    Bot { sandbox, app, _dir: dir }
}

fn is_root(m: &StoredMessage) -> bool {
    m.text.contains("Severity, roles and updates in the thread")
}

/// When (since `t0`) each successful chat.postMessage posted a message matching `what`.
fn post_times(sandbox: &SlackSandbox, t0: chrono::DateTime<Utc>, what: fn(&str) -> bool) -> Vec<f64> {
    let mut times: Vec<f64> = sandbox
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| c.status == 200 && c.response["ok"] == true)
        .filter(|c| what(c.response["message"]["text"].as_str().unwrap_or_default()))
        .map(|c| (c.at - t0).num_milliseconds() as f64 / 1000.0)
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// Samples the outbox depth until `done` is set; returns the largest seen.
fn watch_outbox(
    app: &incident_commander::startup::RunningApp,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    let metrics = app.metrics.clone();
    tokio::spawn(async move {
        let mut max = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            max = max.max(metrics.outbox_depth.get());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        max
    })
}

/// Waits until everything is delivered, the storm is over (a quiet minute) and its catch-up
/// notes are delivered too.
async fn drain(bot: &mut Bot, incidents: usize) {
    bot.app.wait_idle().await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let caught_up = bot.sandbox.messages().iter().filter(|m| m.text.contains("The alert storm is over")).count();
        let over = bot.sandbox.messages().iter().any(|m| m.text.contains("*Alert storm over*"));
        if (caught_up >= incidents && over) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bot.app.wait_idle().await;
}

fn messages_by_kind(sandbox: &SlackSandbox) -> String {
    let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for m in sandbox.messages().iter().filter(|m| m.bot_id.as_deref() == Some(slack::BOT_ID)) {
        let kind = if is_root(m) {
            "root"
        } else if m.text.starts_with("INC-") {
            "header"
        } else if m.text.contains("Alert storm") {
            "storm summary"
        } else if m.text.contains("The alert storm is over") {
            "catch-up note"
        } else {
            "other note"
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
}

async fn roots() {
    let (alerts, monitors) = (2_000, 20);
    let mut bot = start().await;
    let url = format!("http://{}/webhooks/datadog", bot.app.addr);
    let cycle = ["Triggered", "Re-Triggered", "Recovered"];
    let bodies: Vec<String> = (0..alerts)
        .map(|i| datadog_webhook(i, 2000 + i % monitors, cycle[(i / monitors) % 3], &format!("api-{}", i % monitors)))
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outbox = watch_outbox(&bot.app, done.clone());
    let t0 = Utc::now();
    let started = Instant::now();
    let (accepted, failed) = send_all(&url, TOKEN, bodies, 32).await;
    let ingest = started.elapsed();
    // Wait for the last root (or give up after two minutes).
    let deadline = Instant::now() + Duration::from_secs(120);
    while bot.sandbox.messages().iter().filter(|m| is_root(m)).count() < monitors && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let roots = post_times(&bot.sandbox, t0, |t| t.contains("Severity, roles and updates in the thread"));
    drain(&mut bot, monitors).await;
    let headers = post_times(&bot.sandbox, t0, |t| t.starts_with("INC-"));
    let drained = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let max_outbox = outbox.await.unwrap();
    let last_root = roots.get(monitors - 1).copied().unwrap_or(f64::INFINITY);
    println!("\n## roots: {alerts} webhooks from {monitors} monitors into one channel, Slack's pacing\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| webhooks accepted | {accepted} ({failed} failed) in {:.2} s |", ingest.as_secs_f64());
    println!(
        "| alerts stored / incidents | {} / {} |",
        bot.app.store.alert_count().unwrap(),
        bot.app.store.all_incidents().unwrap().len()
    );
    println!(
        "| roots posted at (s after the first webhook) | first {:.1}, 10th {:.1}, 20th {last_root:.1} |",
        roots.first().unwrap_or(&f64::NAN),
        roots.get(9).unwrap_or(&f64::NAN)
    );
    println!(
        "| headers posted at | first {:.1}, last {:.1} |",
        headers.first().unwrap_or(&f64::NAN),
        headers.last().unwrap_or(&f64::NAN)
    );
    println!("| largest outbox (Slack calls queued) | {max_outbox} |");
    println!("| messages | {} |", messages_by_kind(&bot.sandbox));
    println!("| 429s answered by the sandbox | {} |", bot.sandbox.calls().iter().filter(|c| c.status == 429).count());
    println!("| everything delivered, storm over and caught up after | {:.1} s |", drained.as_secs_f64());
    let verdict = if last_root <= ROOT_TARGET.as_secs_f64() { "PASS" } else { "FAIL" };
    println!(
        "\nverdict: {verdict}: the 20th root was posted {last_root:.1} s after the first webhook (target: at most {} s)",
        ROOT_TARGET.as_secs()
    );
    bot.app.shutdown().await.unwrap();
}

async fn flapping() {
    let (alerts, monitors) = (10_000, 50);
    let mut bot = start().await;
    let url = format!("http://{}/webhooks/datadog", bot.app.addr);
    let cycle = ["Triggered", "Re-Triggered", "Recovered"];
    let bodies: Vec<String> = (0..alerts)
        .map(|i| datadog_webhook(i, 5000 + i % monitors, cycle[(i / monitors) % 3], &format!("svc-{}", i % monitors)))
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outbox = watch_outbox(&bot.app, done.clone());
    let started = Instant::now();
    let (accepted, failed) = send_all(&url, TOKEN, bodies, 32).await;
    let ingest = started.elapsed();
    drain(&mut bot, monitors).await;
    let drained = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let max_outbox = outbox.await.unwrap();
    let incidents = bot.app.store.all_incidents().unwrap();
    let counted: u64 = incidents.iter().filter_map(|i| i.alerts.as_ref()).map(|a| a.count).sum();
    let calls = bot.sandbox.calls().iter().filter(|c| c.status == 200 && c.method.starts_with("chat.")).count();
    let per_incident = max_outbox as f64 / monitors as f64;
    println!("\n## flapping: {alerts} webhooks from {monitors} monitors cycling Triggered, Re-Triggered, Recovered\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| webhooks accepted | {accepted} ({failed} failed) in {:.2} s |", ingest.as_secs_f64());
    println!(
        "| alerts stored / counted on incidents / incidents | {} / {counted} / {} |",
        bot.app.store.alert_count().unwrap(),
        incidents.len()
    );
    println!("| largest outbox (Slack calls queued) | {max_outbox} ({per_incident:.1} per incident) |");
    println!("| Slack calls made (chat.postMessage + chat.update) | {calls} |");
    println!("| messages | {} |", messages_by_kind(&bot.sandbox));
    println!("| everything delivered, storm over and caught up after | {:.1} s |", drained.as_secs_f64());
    println!("| peak RSS, bot and sandbox in one process | {:.1} MiB |", peak_rss_mib());
    let bounded = per_incident <= 8.0;
    println!(
        "\nverdict: {}: at most {max_outbox} Slack calls queued for {alerts} alerts ({per_incident:.1} per incident; target: a bounded number per incident, here at most 8)",
        if bounded { "PASS" } else { "FAIL" }
    );
    bot.app.shutdown().await.unwrap();
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    incident_commander::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        if run("roots") {
            roots().await;
        }
        if run("flapping") {
            flapping().await;
        }
    });
}
