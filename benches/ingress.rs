//! Ingress throughput: signed Events API requests into the real bot (verify, dedupe, durable inbox
//! through its one writer, 200), next to a trivial axum handler measured in the same run, on sled
//! and (with `DATABASE_URL`) on PostgreSQL, with a verdict against the targets.
//!
//! `cargo bench --bench ingress` (optionally `-- <events> <concurrency>`). With `INGRESS_BENCH_LOGS=1`
//! the process logs as `serve` does (JSON lines on stderr at `info`, two per event), which is what a
//! deployment pays; send stderr somewhere (`2>/dev/null`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::start_bot_on;

use axum::routing::post;
use incident_commander::sandbox::slack::{self, SandboxLimits, SlackSandbox, sign};
use incident_commander::slack::egress::EgressLimits;
use serde_json::json;

const POLICY: &str = r#"
[slack]
alert_channels = ["C0ALERTS1"]
[[team]]
name = "backend"
members = ["U0ALICE01", "U0BOB0001"]
channel = "C0ALERTS1"
"#;

struct Report {
    name: &'static str,
    events: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    errors: usize,
}

impl Report {
    fn percentile(&self, p: f64) -> f64 {
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// Sends `bodies` to `url` with `concurrency` requests in flight, signing each with a fresh timestamp.
async fn run(name: &'static str, url: String, bodies: Vec<String>, concurrency: usize) -> Report {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let queue = Arc::new(tokio::sync::Mutex::new(bodies.into_iter()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, queue, url) = (client.clone(), queue.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let Some(body) = queue.lock().await.next() else { break };
                let ts = chrono::Utc::now().timestamp().to_string();
                let signature = sign(slack::SIGNING_SECRET, &ts, body.as_bytes());
                let t = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-slack-request-timestamp", ts)
                    .header("x-slack-signature", signature)
                    .body(body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => latencies.push(t.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        latencies_us.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Report { name, events: latencies_us.len(), elapsed, latencies_us, errors }
}

fn bodies(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            json!({
                "token": "x", "team_id": slack::TEAM_ID, "api_app_id": slack::APP_ID, "type": "event_callback",
                "event_id": format!("Ev{tag}{i:08}"), "event_time": 1_700_000_000,
                "event": {"type": "message", "user": "U0ALICE01", "text": format!("chatter {i}"),
                          "ts": format!("1700000000.{i:06}"), "channel": "C0OTHER01", "channel_type": "channel"},
            })
            .to_string()
        })
        .collect()
}

/// The bot on `store`: its ingress measured beside the trivial handler's, then the backlog drained.
async fn measure_bot(
    name: &'static str,
    store: std::sync::Arc<dyn incident_commander::app::store::Store>,
    events: usize,
    concurrency: usize,
) -> (Report, Duration) {
    let sandbox = SlackSandbox::start(SandboxLimits::RELAXED).await.unwrap();
    let mut app = start_bot_on(&sandbox, POLICY, EgressLimits::slack(), None, Duration::from_secs(60), store).await;
    let mut role = app.role.clone();
    let _ = role.wait_for(|r| r.role == incident_commander::app::store::Role::Leader).await;
    run("warm-up", format!("http://{}/slack/events", app.addr), bodies(500, &format!("W{name}")), concurrency).await;
    let bot = run(name, format!("http://{}/slack/events", app.addr), bodies(events, name), concurrency).await;
    let processing = Instant::now();
    app.wait_idle().await;
    let drained = processing.elapsed();
    app.shutdown().await.unwrap();
    (bot, drained)
}

/// Targets (issue 14): at least half the trivial handler's throughput, ack p99 at most 3x its.
const THROUGHPUT_TARGET: f64 = 0.5;
const P99_TARGET: f64 = 3.0;

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let events: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    incident_commander::tls::install_crypto_provider();
    if std::env::var_os("INGRESS_BENCH_LOGS").is_some() {
        incident_commander::cli::init_tracing();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sled = incident_commander::store::open_embedded(dir.path()).unwrap();
    let postgres = common::postgres_store();
    rt.block_on(async move {
        // The trivial baseline: an axum handler that reads the body and answers 200.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let trivial_addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route(
            "/slack/events",
            post(|body: axum::body::Bytes| async move {
                let _ = body.len();
                ""
            }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let trivial_url = format!("http://{trivial_addr}/slack/events");
        run("warm-up", trivial_url.clone(), bodies(500, "W1"), concurrency).await;

        let trivial = run("trivial axum handler", trivial_url.clone(), bodies(events, "T"), concurrency).await;
        let mut bots = vec![measure_bot("incident-commander on sled", sled, events, concurrency).await];
        let cleanup = match postgres {
            Some((store, cleanup)) => {
                bots.push(measure_bot("incident-commander on PostgreSQL", store, events, concurrency).await);
                Some(cleanup)
            }
            None => None,
        };
        // The baseline again after the bots, so a machine that got slower shows.
        let trivial_after = run("trivial axum handler (again)", trivial_url, bodies(events, "U"), concurrency).await;

        println!("\n{events} signed events, concurrency {concurrency}, loopback, one process\n");
        println!("| endpoint | accepted | errors | events/s | ack p50 | ack p99 | backlog processed after |");
        println!("|---|---|---|---|---|---|---|");
        let rate = |r: &Report| r.events as f64 / r.elapsed.as_secs_f64();
        for r in [&trivial, &trivial_after] {
            println!(
                "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | |",
                r.name,
                r.events,
                r.errors,
                rate(r),
                r.percentile(0.50),
                r.percentile(0.99)
            );
        }
        for (r, drained) in &bots {
            println!(
                "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} s |",
                r.name,
                r.events,
                r.errors,
                rate(r),
                r.percentile(0.50),
                r.percentile(0.99),
                drained.as_secs_f64()
            );
        }
        println!();
        // Against the faster of the two baseline runs (the same machine swings by a third between
        // them), so a slow baseline never flatters the bot.
        let baseline = if rate(&trivial_after) > rate(&trivial) { &trivial_after } else { &trivial };
        println!("(ratios against the faster trivial run: {:.0} events/s, ack p99 {:.2} ms)", rate(baseline), baseline.percentile(0.99));
        for (r, _) in &bots {
            let throughput = rate(r) / rate(baseline);
            let p99 = r.percentile(0.99) / baseline.percentile(0.99);
            let verdict = if throughput >= THROUGHPUT_TARGET && p99 <= P99_TARGET { "PASS" } else { "FAIL" };
            println!(
                "verdict: {verdict}: {} at {throughput:.2}x the trivial handler's throughput (target at least {THROUGHPUT_TARGET}x), ack p99 {p99:.1}x its (target at most {P99_TARGET}x)",
                r.name
            );
        }
        if bots.len() == 1 {
            println!("(PostgreSQL not measured: set DATABASE_URL to a server where the user may CREATE DATABASE)");
        }
        drop(bots);
        if let Some(cleanup) = cleanup {
            cleanup();
        }
    });
}
