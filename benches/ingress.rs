//! Ingress throughput: signed Events API requests into the real bot (verify, dedupe, durable inbox
//! through its one writer, 200), next to a trivial axum handler measured in the same run, on sled
//! and (with `DATABASE_URL`) on PostgreSQL, with a verdict against the targets.
//!
//! `cargo bench --bench ingress` (optionally `-- <events> <concurrency> <rounds>`). With `INGRESS_BENCH_LOGS=1`
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
    events: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    errors: usize,
    /// CPU time the whole process (client, server and, for the bot, its processor) spent in the run.
    cpu: Duration,
    /// Times a thread of the process gave up its core waiting (parked, blocked) during the run.
    switches: u64,
}

impl Report {
    fn percentile(&self, p: f64) -> f64 {
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }

    /// Process CPU time per answered event, in microseconds: steadier than events/s on a shared
    /// host, since it does not count the time the machine gave to someone else.
    fn cpu_per_event_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.events.max(1) as f64
    }

    /// How busy the machine's cores were kept: 1.0 is every core busy for the whole run.
    fn utilisation(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        self.cpu.as_secs_f64() / (self.elapsed.as_secs_f64() * cores)
    }
}

/// User and system CPU time of this process so far, and its voluntary context switches.
fn process_usage() -> (Duration, u64) {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime)), usage.ru_nvcsw as u64)
}

/// Sends `bodies` to `url` with `concurrency` requests in flight, signing each with a fresh timestamp.
async fn run(url: String, bodies: Vec<String>, concurrency: usize) -> Report {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let queue = Arc::new(tokio::sync::Mutex::new(bodies.into_iter()));
    let started = Instant::now();
    let (cpu_before, switches_before) = process_usage();
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
    let (cpu, switches) = process_usage();
    let (cpu, switches) = (cpu.saturating_sub(cpu_before), switches.saturating_sub(switches_before));
    latencies_us.sort_unstable();
    Report { events: latencies_us.len(), elapsed, latencies_us, errors, cpu, switches }
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

/// One measurement of the bot, with the trivial handler measured right before and right after
/// it, so both sides see the same machine (a shared host swings by a third within a minute).
struct Round {
    bot: Report,
    trivial: [Report; 2],
    /// Durable writes (one transaction and one flush each) the inbox writer made in the bot's run.
    writes: u64,
}

impl Round {
    /// The trivial run of the two that was faster: a slow baseline never flatters the bot.
    fn baseline(&self) -> &Report {
        let [a, b] = &self.trivial;
        if rate(b) > rate(a) { b } else { a }
    }

    fn throughput_ratio(&self) -> f64 {
        rate(&self.bot) / rate(self.baseline())
    }

    fn p99_ratio(&self) -> f64 {
        self.bot.percentile(0.99) / self.baseline().percentile(0.99)
    }

    /// The bot's CPU per event over the trivial handler's (the cheaper of its two runs).
    fn cpu_ratio(&self) -> f64 {
        let [a, b] = &self.trivial;
        self.bot.cpu_per_event_us() / a.cpu_per_event_us().min(b.cpu_per_event_us())
    }
}

fn rate(r: &Report) -> f64 {
    r.events as f64 / r.elapsed.as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The bot on `store`: `rounds` of its ingress, each between two runs of the trivial handler at
/// `trivial_url`, each round's backlog processed before the next (the time it took is returned).
async fn measure_bot(
    name: &'static str,
    store: std::sync::Arc<dyn incident_commander::app::store::Store>,
    trivial_url: &str,
    events: usize,
    concurrency: usize,
    rounds: usize,
) -> (Vec<Round>, Duration) {
    let sandbox = SlackSandbox::start(SandboxLimits::RELAXED).await.unwrap();
    let mut app = start_bot_on(&sandbox, POLICY, EgressLimits::slack(), None, Duration::from_secs(60), store).await;
    let mut role = app.role.clone();
    let _ = role.wait_for(|r| r.role == incident_commander::app::store::Role::Leader).await;
    let bot_url = format!("http://{}/slack/events", app.addr);
    run(bot_url.clone(), bodies(500, &format!("W{name}")), concurrency).await;
    app.wait_idle().await;
    let mut measured = Vec::new();
    let mut drained = Duration::ZERO;
    for round in 0..rounds {
        let before = run(trivial_url.to_string(), bodies(events, &format!("T{round}")), concurrency).await;
        let writes_before = app.metrics.inbox_writes.get();
        let bot = run(bot_url.clone(), bodies(events, &format!("{name}{round}")), concurrency).await;
        let writes = app.metrics.inbox_writes.get() - writes_before;
        let after = run(trivial_url.to_string(), bodies(events, &format!("U{round}")), concurrency).await;
        let processing = Instant::now();
        app.wait_idle().await;
        drained += processing.elapsed();
        measured.push(Round { bot, trivial: [before, after], writes });
    }
    app.shutdown().await.unwrap();
    (measured, drained)
}

/// Targets (issue 14): at least half the trivial handler's throughput, ack p99 at most 3x its.
const THROUGHPUT_TARGET: f64 = 0.5;
const P99_TARGET: f64 = 3.0;

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let events: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3).max(1);
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
        run(trivial_url.clone(), bodies(500, "W1"), concurrency).await;

        let mut bots = vec![("incident-commander on sled", measure_bot("sled", sled, &trivial_url, events, concurrency, rounds).await)];
        let cleanup = match postgres {
            Some((store, cleanup)) => {
                let measured = measure_bot("PostgreSQL", store, &trivial_url, events, concurrency, rounds).await;
                bots.push(("incident-commander on PostgreSQL", measured));
                Some(cleanup)
            }
            None => None,
        };

        println!("\n{events} signed events per run, concurrency {concurrency}, loopback, one process; {rounds} rounds per store, each the bot between two runs of the trivial handler\n");
        println!("| round | endpoint | accepted | errors | events/s | ack p50 | ack p99 | CPU per event | cores busy | waits per event | events per write | throughput ratio | p99 ratio | CPU ratio |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let line = |round: usize, name: &str, r: &Report, ratios: &str| {
            println!(
                "| {round} | {name} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} µs | {:.0}% | {:.2} | {ratios} |",
                r.events,
                r.errors,
                rate(r),
                r.percentile(0.50),
                r.percentile(0.99),
                r.cpu_per_event_us(),
                r.utilisation() * 100.0,
                r.switches as f64 / r.events.max(1) as f64
            );
        };
        for (name, (rounds, _)) in &bots {
            for (i, round) in rounds.iter().enumerate() {
                line(i + 1, "trivial axum handler (before)", &round.trivial[0], " | | | ");
                let ratios = format!(
                    "{:.1} | {:.2}x | {:.1}x | {:.2}x",
                    round.bot.events as f64 / round.writes.max(1) as f64,
                    round.throughput_ratio(),
                    round.p99_ratio(),
                    round.cpu_ratio()
                );
                line(i + 1, name, &round.bot, &ratios);
                line(i + 1, "trivial axum handler (after)", &round.trivial[1], " | | | ");
            }
        }
        println!();
        println!("(each round's ratios are against the faster of its two trivial runs, the CPU ratio against the cheaper; CPU is the whole process's: client, server and whatever of the bot's processing ran during the run; the verdict takes the median round)");
        for (name, (rounds, drained)) in &bots {
            let throughput = median(rounds.iter().map(Round::throughput_ratio).collect());
            let p99 = median(rounds.iter().map(Round::p99_ratio).collect());
            let cpu = median(rounds.iter().map(Round::cpu_ratio).collect());
            let verdict = if throughput >= THROUGHPUT_TARGET && p99 <= P99_TARGET { "PASS" } else { "FAIL" };
            println!(
                "verdict: {verdict}: {name} at {throughput:.2}x the trivial handler's throughput (target at least {THROUGHPUT_TARGET}x), ack p99 {p99:.1}x its (target at most {P99_TARGET}x); {cpu:.2}x its CPU per event; backlog processed {:.2} s after the runs",
                drained.as_secs_f64()
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
