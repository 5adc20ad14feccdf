//! Alert ingestion under load: 10,000 Datadog webhook alerts from 50 monitors, as fast as the
//! client can send them, through the real webhook ingress, processor and egress (against the
//! sandbox Slack with its limits relaxed, so the run measures the bot, not Slack's pacing).
//!
//! `cargo bench --bench webhooks` (optionally `-- <alerts> <monitors> <concurrency>`).

mod common;

use std::time::{Duration, Instant};

use common::{datadog_webhook, peak_rss_mib, send_all, start_bot};

use incident_commander::sandbox::slack::{self, SandboxLimits, SlackSandbox};
use incident_commander::slack::egress::EgressLimits;

const POLICY: &str = r#"
[slack]
alert_channels = ["C0ALERTS1"]
[[team]]
name = "backend"
members = ["U0ALICE01", "U0BOB0001", "U0CAROL01"]
channel = "C0ALERTS1"
[alerts.storm]
count = 20
window = "1m"
"#;

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let alerts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let monitors: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let concurrency: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(32);
    incident_commander::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let sandbox = SlackSandbox::start(SandboxLimits::RELAXED).await.unwrap();
        sandbox.add_channel("C0ALERTS1", "alerts-backend", &[slack::BOT_USER_ID]);
        let token = "bench-token";
        let (mut app, _dir) =
            start_bot(&sandbox, POLICY, EgressLimits::fast(), Some(token), Duration::from_secs(60)).await;
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
        let threads = incidents.iter().filter(|i| i.slack.thread_ts.is_some()).count();
        let posts = sandbox.calls_to("chat.postMessage").iter().filter(|c| c.status == 200).count();
        let updates = sandbox.calls_to("chat.update").iter().filter(|c| c.status == 200).count();
        let storm_summaries = sandbox.messages().iter().filter(|m| m.text.contains("Alert storm")).count();
        println!("\n{alerts} Datadog webhook alerts from {monitors} monitors, concurrency {concurrency}, loopback\n");
        println!("| measure | value |");
        println!("|---|---|");
        println!("| alerts accepted (HTTP 200) | {accepted} ({failed} failed) |");
        println!("| ingest rate | {:.0} alerts/s |", accepted as f64 / ingest.as_secs_f64());
        println!("| all processed and delivered after | {:.2} s |", total.as_secs_f64());
        println!("| alerts stored | {} |", app.store.alert_count().unwrap());
        println!("| incidents / threads opened | {} / {threads} |", incidents.len());
        println!("| messages posted (chat.postMessage) | {posts} (of which storm summaries: {storm_summaries}) |");
        println!("| header and summary edits sent (chat.update, after coalescing) | {updates} |");
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
        println!(
            "| messages by kind | {} |",
            kinds.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
        );
        println!("| peak RSS, bot and sandbox in one process | {:.1} MiB |", peak_rss_mib());
        app.shutdown().await.unwrap();
    });
}
