//! Ingress throughput: signed Events API requests into the real bot (verify, dedupe, durable inbox
//! with group commit, 200), next to a trivial axum handler measured in the same run.
//!
//! `cargo bench --bench ingress` (optionally `-- <events> <concurrency>`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::start_bot;

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

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let events: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    incident_commander::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let sandbox = SlackSandbox::start(SandboxLimits::RELAXED).await.unwrap();
        let (mut app, _dir) = start_bot(&sandbox, POLICY, EgressLimits::slack(), None, Duration::from_secs(60)).await;

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

        // Warm both up.
        run("warm-up", format!("http://{trivial_addr}/slack/events"), bodies(500, "W1"), concurrency).await;
        run("warm-up", format!("http://{}/slack/events", app.addr), bodies(500, "W2"), concurrency).await;

        let trivial = run(
            "trivial axum handler",
            format!("http://{trivial_addr}/slack/events"),
            bodies(events, "T"),
            concurrency,
        )
        .await;
        let bot = run(
            "incident-commander ingress",
            format!("http://{}/slack/events", app.addr),
            bodies(events, "B"),
            concurrency,
        )
        .await;
        let processing = Instant::now();
        app.wait_idle().await;
        let drained = processing.elapsed();

        println!("\n{events} signed events, concurrency {concurrency}, loopback, one process\n");
        println!("| endpoint | accepted | errors | events/s | ack p50 | ack p99 |");
        println!("|---|---|---|---|---|---|");
        for r in [&trivial, &bot] {
            println!(
                "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms |",
                r.name,
                r.events,
                r.errors,
                r.events as f64 / r.elapsed.as_secs_f64(),
                r.percentile(0.50),
                r.percentile(0.99),
            );
        }
        println!(
            "\nbot/trivial throughput ratio: {:.2}; the processor finished the backlog {:.2} s after the last ack",
            (bot.events as f64 / bot.elapsed.as_secs_f64()) / (trivial.events as f64 / trivial.elapsed.as_secs_f64()),
            drained.as_secs_f64()
        );
        app.shutdown().await.unwrap();
    });
}
