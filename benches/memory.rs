//! Memory of the bot process alone: the release `serve` binary as its own process against the
//! sandbox Slack (in this process), its resident memory read from `/proc/<pid>/status` while idle,
//! during a flapping storm of 10,000 Datadog webhooks from 50 monitors (Triggered, Re-Triggered,
//! Recovered, a new cycle each round) and after everything is delivered. Targets (issue 14): below
//! 40 MiB idle, below 100 MiB during and after.
//!
//! `cargo bench --bench memory` (optionally `-- <alerts> <monitors> [slack]`; with `slack` the
//! sandbox answers at Slack's real pace and the bot paces itself to Slack's published limits, so
//! the outbox stays long while it drains). To measure another build of
//! the bot the same way (an older commit, for a before/after), name its binary in
//! `INCIDENT_COMMANDER_BIN`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{datadog_webhook, send_all};
use incident_commander::sandbox::slack::{self, SandboxLimits, SlackSandbox};

const POLICY: &str = common::ONE_TEAM;
const TOKEN: &str = "bench-token";
const IDLE_TARGET_MIB: f64 = 40.0;
const STORM_TARGET_MIB: f64 = 100.0;

/// `VmRSS` of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn health(addr: &str) -> serde_json::Value {
    match reqwest::get(format!("http://{addr}/healthz")).await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let alerts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let monitors: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let slack_pace = args.get(3).is_some_and(|a| a == "slack");
    incident_commander::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let limits = if slack_pace { SandboxLimits::SLACK } else { SandboxLimits::RELAXED };
        let sandbox = SlackSandbox::start(limits).await.unwrap();
        sandbox.add_channel("C0ALERTS1", "alerts-backend", &[slack::BOT_USER_ID]);
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, POLICY).unwrap();
        let binary = std::env::var("INCIDENT_COMMANDER_BIN").unwrap_or(env!("CARGO_BIN_EXE_incident-commander").into());
        println!("measuring {binary}");
        let mut child = Command::new(&binary)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&policy)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("SLACK_API_URL", sandbox.api_url())
            .env("SLACK_BOT_TOKEN", slack::BOT_TOKEN)
            .env("SLACK_SIGNING_SECRET", slack::SIGNING_SECRET)
            .env("SLACK_RATE_LIMITS", if slack_pace { "slack" } else { "sandbox" })
            .env("WEBHOOK_TOKEN", TOKEN)
            .env_remove("DATABASE_URL")
            .env_remove("SLACK_APP_TOKEN")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the release binary starts");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("serve logs its address");
        sandbox.set_delivery(slack::Delivery::Http { base: format!("http://{addr}") });

        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = rss_mib(pid);

        // Sample the process every 50 ms from here on.
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak_kib.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max((rss_mib(pid) * 1024.0) as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let cycle = ["Triggered", "Re-Triggered", "Recovered"];
        let bodies: Vec<String> = (0..alerts)
            .map(|i| datadog_webhook(i, 5000 + i % monitors, cycle[(i / monitors) % 3], &format!("api-{}", i % monitors)))
            .collect();
        let started = Instant::now();
        let (accepted, failed) = send_all(&format!("http://{addr}/webhooks/datadog"), TOKEN, bodies, 32).await;
        let ingest = started.elapsed();
        let during = peak_kib.load(Ordering::Relaxed) as f64 / 1024.0;
        // Drained: nothing in the inbox or the outbox.
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut longest_outbox = 0;
        loop {
            let h = health(&addr).await;
            longest_outbox = longest_outbox.max(h["outbox"].as_u64().unwrap_or(0));
            if h["inbox"] == 0 && h["outbox"] == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "not drained: {h}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let drained = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        sampler.await.unwrap();
        let peak = peak_kib.load(Ordering::Relaxed) as f64 / 1024.0;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_mib(pid);
        let _ = child.kill();
        let _ = child.wait();

        let pace = if slack_pace { "Slack's pace" } else { "relaxed Slack limits" };
        println!("\n## memory: the bot process alone (release `serve`, sled), {alerts} flapping webhooks from {monitors} monitors, {pace}\n");
        println!("| measure | value | target |");
        println!("|---|---|---|");
        println!("| webhooks accepted | {accepted} ({failed} failed) in {:.1} s | |", ingest.as_secs_f64());
        println!("| RSS idle, before the storm | {idle:.1} MiB | below {IDLE_TARGET_MIB} MiB |");
        println!("| RSS peak while sending | {during:.1} MiB | below {STORM_TARGET_MIB} MiB |");
        println!("| RSS peak until drained ({:.1} s) | {peak:.1} MiB | below {STORM_TARGET_MIB} MiB |", drained.as_secs_f64());
        println!("| RSS 2 s after drained | {after:.1} MiB | below {STORM_TARGET_MIB} MiB |");
        println!("| longest outbox seen (every 200 ms after sending) | {longest_outbox} | |");
        let pass = idle < IDLE_TARGET_MIB && peak < STORM_TARGET_MIB && after < STORM_TARGET_MIB;
        println!(
            "\nverdict: {}: idle {idle:.1} MiB (target below {IDLE_TARGET_MIB}), peak {peak:.1} MiB and after {after:.1} MiB (target below {STORM_TARGET_MIB})",
            if pass { "PASS" } else { "FAIL" }
        );
    });
}
