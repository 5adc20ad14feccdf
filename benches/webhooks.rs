//! Alert ingestion under load: 10,000 Datadog webhook alerts from 50 monitors, as fast as the
//! client can send them, through the real webhook ingress, processor and egress (against the
//! sandbox Slack with its limits relaxed, so the run measures the bot, not Slack's pacing).
//!
//! `cargo bench --bench webhooks` (optionally `-- <alerts> <monitors> <concurrency>`).

mod common;

use std::time::{Duration, Instant};

use common::{datadog_webhook, peak_rss_mib, send_all, start_bot_on};

use incident_commander::sandbox::slack::{self, SandboxLimits, SlackSandbox};
use incident_commander::slack::egress::EgressLimits;

/// [`common::ONE_TEAM`] with storms starting above 20 alerts a minute.
fn policy() -> String {
    format!("{}[alerts.storm]\ncount = 20\nwindow = \"1m\"\n", common::ONE_TEAM)
}

/// One backend's run: what was measured.
struct Run {
    backend: String,
    accepted: usize,
    failed: usize,
    ingest: Duration,
    total: Duration,
    stored: usize,
    incidents: usize,
    threads: usize,
    posts: usize,
    updates: usize,
    kinds: String,
}

async fn run(
    backend: &str,
    store: std::sync::Arc<dyn incident_commander::app::store::Store>,
    alerts: usize,
    monitors: usize,
    concurrency: usize,
) -> Run {
    let sandbox = SlackSandbox::start(SandboxLimits::RELAXED).await.unwrap();
    sandbox.add_channel("C0ALERTS1", "alerts-backend", &[slack::BOT_USER_ID]);
    let token = "bench-token";
    let mut app =
        start_bot_on(&sandbox, &policy(), EgressLimits::fast(), Some(token), Duration::from_secs(60), store).await;
    let mut role = app.role.clone();
    let _ = role.wait_for(|r| r.role == incident_commander::app::store::Role::Leader).await;
    let url = format!("http://{}/webhooks/datadog", app.addr);
    let bodies: Vec<String> = (0..alerts)
        .map(|i| {
            let transition = if (i / monitors) % 3 == 2 { "Recovered" } else { "Triggered" };
            datadog_webhook(i, 1000 + i % monitors, transition, &format!("api-{}", i % monitors))
        })
        .collect();
    let started = Instant::now();
    let (accepted, failed) = send_all(&url, token, bodies, concurrency).await;
    let ingest = started.elapsed();
    app.wait_idle().await;
    let total = started.elapsed();
    let incidents = app.store.all_incidents().unwrap();
    let mut kinds: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for m in sandbox.messages() {
        let kind = if m.text.starts_with("INC-") {
            "incident header"
        } else if m.text.contains("Severity, roles and updates in the thread") {
            "incident root message"
        } else if m.text.contains("Alert storm") {
            "storm summary"
        } else {
            "thread note"
        };
        *kinds.entry(kind.to_string()).or_default() += 1;
    }
    let run = Run {
        backend: backend.to_string(),
        accepted,
        failed,
        ingest,
        total,
        stored: app.store.alert_count().unwrap(),
        incidents: incidents.len(),
        threads: incidents.iter().filter(|i| i.slack.thread_ts.is_some()).count(),
        posts: sandbox.calls_to("chat.postMessage").iter().filter(|c| c.status == 200).count(),
        updates: sandbox.calls_to("chat.update").iter().filter(|c| c.status == 200).count(),
        kinds: kinds.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "),
    };
    app.shutdown().await.unwrap();
    run
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let alerts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let monitors: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let concurrency: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(32);
    incident_commander::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut runs = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let sled = incident_commander::store::open_embedded(dir.path()).unwrap();
    runs.push(rt.block_on(run("sled", sled, alerts, monitors, concurrency)));
    // PostgreSQL beside it in the same run, when there is one (DATABASE_URL, as for the tests).
    match common::postgres_store() {
        Some((store, cleanup)) => {
            runs.push(rt.block_on(run("postgresql", store, alerts, monitors, concurrency)));
            cleanup();
        }
        None => println!("(PostgreSQL not measured: set DATABASE_URL to a server where the user may CREATE DATABASE)"),
    }
    println!("\n{alerts} Datadog webhook alerts from {monitors} monitors, concurrency {concurrency}, loopback\n");
    print!("| measure |");
    for r in &runs {
        print!(" {} |", r.backend);
    }
    println!();
    println!("|---|{}", "---|".repeat(runs.len()));
    let row = |name: &str, f: &dyn Fn(&Run) -> String| {
        print!("| {name} |");
        for r in &runs {
            print!(" {} |", f(r));
        }
        println!();
    };
    row("alerts accepted (HTTP 200)", &|r| format!("{} ({} failed)", r.accepted, r.failed));
    row("ingest rate", &|r| format!("{:.0} alerts/s", r.accepted as f64 / r.ingest.as_secs_f64()));
    row("all processed and delivered after", &|r| format!("{:.2} s", r.total.as_secs_f64()));
    row("alerts stored", &|r| r.stored.to_string());
    row("incidents / threads opened", &|r| format!("{} / {}", r.incidents, r.threads));
    row("messages posted (chat.postMessage)", &|r| r.posts.to_string());
    row("header and summary edits (chat.update, after coalescing)", &|r| r.updates.to_string());
    row("messages by kind", &|r| r.kinds.clone());
    println!("| peak RSS, bot and sandbox in one process (both runs) | {:.1} MiB |", peak_rss_mib());
}
