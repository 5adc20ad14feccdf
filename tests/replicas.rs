//! Several `serve` replicas on one PostgreSQL and the sandbox Slack: one leader at a time, a
//! killed leader replaced within seconds, a restarted database survived, nothing lost or posted
//! twice. Needs `DATABASE_URL` (see `common::pg`); skipped without it.
//!
//! The bots are other processes, so these tests wait by looking at the sandbox, the database and
//! the bots' logs (JSON lines on stderr) until what they wait for is there, with a deadline.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::{TestDb, test_database};
use incident_commander::sandbox::slack::{self, Chaos, Fault, SandboxLimits, SlackSandbox, StoredMessage};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_incident-commander");

/// One test at a time: the restart test may restart the whole server (`IC_PG_RESTART_CMD`), and
/// the takeover figure should not share the machine's two cores with another storm.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const TOKEN: &str = "replicas-webhook-token";
const CHANNEL: &str = "C0ALERTS1";

/// One team, one channel; storms start above 10 alerts in 5 s and end after 5 calm seconds, so
/// a test sees a storm begin and end.
const POLICY: &str = r#"
[slack]
alert_channels = ["C0ALERTS1"]

[alerts.storm]
count = 10
window = "5s"

[[team]]
name = "backend"
members = ["U0ALICE01", "U0BOB0001", "U0CAROL01"]
channel = "C0ALERTS1"
match = ["service:api-*"]
"#;

/// A log line of one replica, when the test read it.
struct LogLine {
    replica: usize,
    at: Instant,
    json: Value,
}

/// Every replica's log, as it arrives.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<LogLine>>>);

impl Logs {
    fn find(&self, after: usize, pred: impl Fn(&LogLine) -> bool) -> Option<(usize, usize, Instant)> {
        let lines = self.0.lock().unwrap();
        lines.iter().enumerate().skip(after).find(|(_, l)| pred(l)).map(|(i, l)| (i, l.replica, l.at))
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Waits for a line (from index `after` on) that `pred` accepts; returns its index, replica
    /// and when it was read.
    async fn wait(&self, what: &str, after: usize, pred: impl Fn(&LogLine) -> bool) -> (usize, usize, Instant) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(found) = self.find(after, &pred) {
                return found;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; logs:\n{}", self.dump());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn dump(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines.iter().rev().take(40).map(|l| format!("r{}: {}", l.replica, l.json)).collect::<Vec<_>>().join("\n")
    }
}

fn message_is(line: &LogLine, text: &str) -> bool {
    line.json["message"] == text
}

struct Replica {
    child: Child,
    addr: String,
}

impl Replica {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `serve` replica `n` on the database and the sandbox, and returns once it listens.
async fn start_replica(
    n: usize,
    db: &TestDb,
    sandbox: &SlackSandbox,
    policy: &std::path::Path,
    logs: &Logs,
) -> Replica {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-pool", "4"])
        .arg("--config")
        .arg(policy)
        .env("DATABASE_URL", &db.url)
        .env("REPLICA_NAME", format!("replica-{n}"))
        .env("SLACK_API_URL", sandbox.api_url())
        .env("SLACK_BOT_TOKEN", slack::BOT_TOKEN)
        .env("SLACK_SIGNING_SECRET", slack::SIGNING_SECRET)
        // The sandbox does not pace like Slack; a timed-out call is given up after 1 s.
        .env("SLACK_RATE_LIMITS", "sandbox")
        .env("SLACK_CALL_TIMEOUT", "1s")
        .env("WEBHOOK_TOKEN", TOKEN)
        .env_remove("SLACK_APP_TOKEN")
        .env_remove("DD_API_KEY")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let json = serde_json::from_str(&line).unwrap_or_else(|_| json!({"message": line}));
            sink.0.lock().unwrap().push(LogLine { replica: n, at: Instant::now(), json });
        }
    });
    let (i, _, _) =
        logs.wait(&format!("replica {n} to listen"), 0, |l| l.replica == n && message_is(l, "listening")).await;
    let addr =
        logs.0.lock().unwrap()[i].json["addr"].as_str().expect("the listening line names the address").to_string();
    Replica { child, addr }
}

/// A Datadog webhook for alert `event` of `monitor` on service `api-<monitor>`.
fn datadog_webhook(event: usize, monitor: usize, transition: &str) -> String {
    incident_commander::sandbox::datadog_webhook_body(
        7_000_000,
        event,
        monitor,
        transition,
        &format!("api-{}", monitor % 100),
    )
}

/// What the storm's senders saw.
#[derive(Default)]
struct Sent {
    /// Alerts the bots said they stored (the `accepted` count of each answer).
    accepted: AtomicUsize,
    /// Alerts they refused as already stored (a retry of a request whose answer was lost).
    duplicates: AtomicUsize,
    /// Webhooks answered 2xx.
    answered: AtomicUsize,
}

/// Starts [`storm`] and returns it with what it saw and a signal for when `at` webhooks were
/// answered.
fn storm_until(
    addrs: Vec<String>,
    bodies: Vec<String>,
    at: usize,
) -> (tokio::task::JoinHandle<()>, Arc<Sent>, Arc<tokio::sync::Notify>) {
    let sent = Arc::new(Sent::default());
    let reached = Arc::new(tokio::sync::Notify::new());
    let signal = reached.clone();
    let storming = tokio::spawn(storm(addrs, bodies, sent.clone(), move |n| {
        if n == at {
            signal.notify_one();
        }
    }));
    (storming, sent, reached)
}

/// Posts every body to the replicas in turn, as a load balancer would: a failed request goes to
/// the next replica until one stores it. `on_progress(n)` runs after the n-th answer.
async fn storm(
    addrs: Vec<String>,
    bodies: Vec<String>,
    sent: Arc<Sent>,
    on_progress: impl Fn(usize) + Send + Sync + 'static,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let queue = Arc::new(Mutex::new(bodies.into_iter().enumerate()));
    let on_progress = Arc::new(on_progress);
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, queue, addrs, sent, on_progress) =
            (client.clone(), queue.clone(), addrs.clone(), sent.clone(), on_progress.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap().next();
                let Some((i, body)) = next else { return };
                let mut attempt = 0;
                loop {
                    let addr = &addrs[(i + w + attempt) % addrs.len()];
                    let answer = client
                        .post(format!("http://{addr}/webhooks/datadog"))
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    if let Ok(r) = answer
                        && r.status().is_success()
                    {
                        let v: Value = r.json().await.unwrap_or_default();
                        sent.accepted.fetch_add(v["accepted"].as_u64().unwrap_or(0) as usize, Ordering::SeqCst);
                        sent.duplicates.fetch_add(v["duplicates"].as_u64().unwrap_or(0) as usize, Ordering::SeqCst);
                        let n = sent.answered.fetch_add(1, Ordering::SeqCst) + 1;
                        on_progress(n);
                        break;
                    }
                    attempt += 1;
                    assert!(attempt < 2_000, "no replica stored webhook {i}");
                    tokio::time::sleep(Duration::from_millis(5 * attempt.min(20) as u64)).await;
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

fn is_root(m: &StoredMessage) -> bool {
    m.thread_ts.is_none()
        && m.bot_id.as_deref() == Some(slack::BOT_ID)
        && m.text.contains("Severity, roles and updates")
}

fn is_header(m: &StoredMessage) -> bool {
    m.thread_ts.is_some() && m.bot_id.as_deref() == Some(slack::BOT_ID) && m.text.starts_with("INC-")
}

fn count(db: &TestDb, table: &str) -> i64 {
    db.query(&format!("SELECT count(*) FROM {table}"))[0].get(0)
}

/// Waits until the replicas have handled everything: the inbox and the outbox are empty and
/// every thread got its storm catch-up note (the storm is over).
async fn drained(db: &TestDb, sandbox: &SlackSandbox, threads: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let catch_ups = sandbox.messages().iter().filter(|m| m.text.contains("The alert storm is over")).count();
        let (inbox, outbox) = (count(db, "ic_inbox"), count(db, "ic_outbox"));
        if inbox == 0 && outbox == 0 && catch_ups >= threads {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: inbox {inbox}, outbox {outbox}, catch-up notes {catch_ups} of {threads}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a storm must leave behind: every alert stored once, one incident and one thread per
/// monitor, one root and one header each, and each thread's messages in order (the header
/// first, the catch-up note after it).
fn assert_one_thread_per_monitor(db: &TestDb, sandbox: &SlackSandbox, alerts: usize, monitors: usize, sent: &Sent) {
    // A replica killed after storing a webhook but before answering makes the sender retry
    // elsewhere, and that retry is refused as a duplicate: stored once either way.
    let (accepted, duplicates) = (sent.accepted.load(Ordering::SeqCst), sent.duplicates.load(Ordering::SeqCst));
    assert!(accepted <= alerts && accepted + duplicates >= alerts, "accepted {accepted}, duplicates {duplicates}");
    assert_eq!(count(db, "ic_alerts") as usize, alerts, "every alert in the alert log once");
    // Each webhook's body carries its own number (`value <n>`): no alert is in the log twice.
    let texts: HashSet<String> = db
        .query("SELECT record::json->'data'->'alert'->>'text' FROM ic_alerts")
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect();
    assert_eq!(texts.len(), alerts, "no alert stored twice");
    let incidents = db.query("SELECT record FROM ic_incidents ORDER BY id");
    assert_eq!(incidents.len(), monitors, "one incident per monitor");
    let messages = sandbox.messages();
    let roots: Vec<&StoredMessage> = messages.iter().filter(|m| is_root(m)).collect();
    assert_eq!(roots.len(), monitors, "one thread root per monitor, none posted twice");
    let mut headers_per_thread: BTreeMap<String, usize> = BTreeMap::new();
    for m in messages.iter().filter(|m| is_header(m)) {
        *headers_per_thread.entry(m.thread_ts.clone().unwrap()).or_default() += 1;
    }
    for root in &roots {
        assert_eq!(headers_per_thread.get(&root.ts), Some(&1), "one header in thread {}", root.ts);
        let replies: Vec<&StoredMessage> = messages
            .iter()
            .filter(|m| m.thread_ts.as_deref() == Some(root.ts.as_str()) && m.bot_id.as_deref() == Some(slack::BOT_ID))
            .collect();
        assert!(is_header(replies[0]), "the header comes first in thread {}: {:?}", root.ts, replies[0].text);
        let catch_up = replies.iter().position(|m| m.text.contains("The alert storm is over"));
        assert!(catch_up.is_some_and(|i| i > 0), "the catch-up note after the header in {}", root.ts);
    }
}

/// Written past the test harness's capture, so the figure shows in a plain `cargo test` run.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

async fn workspace() -> (SlackSandbox, tempfile::TempDir, std::path::PathBuf) {
    incident_commander::tls::install_crypto_provider();
    let sandbox = SlackSandbox::start(SandboxLimits::RELAXED).await.unwrap();
    sandbox.add_channel(CHANNEL, "alerts-backend", &[slack::BOT_USER_ID]);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    (sandbox, dir, policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_a_storm_loses_nothing() {
    let Some(db) = test_database() else { return };
    let _serial = SERIAL.lock().await;
    let (sandbox, _dir, policy) = workspace().await;
    let logs = Logs::default();
    let mut replicas = Vec::new();
    for n in 0..3 {
        replicas.push(start_replica(n, &db, &sandbox, &policy, &logs).await);
    }
    let (_, leader, _) = logs.wait("a leader", 0, |l| message_is(l, "became the leader")).await;
    // One in five Slack calls fails: rate limited (without Retry-After), a 500, or no answer.
    sandbox.set_chaos(Some(Chaos {
        every: 5,
        faults: vec![Fault::RateLimited(None), Fault::Status(500), Fault::Timeout(Duration::from_millis(1500))],
    }));

    let (alerts, monitors) = (2_000, 20);
    let cycle = ["Triggered", "Re-Triggered"];
    let bodies: Vec<String> =
        (0..alerts).map(|i| datadog_webhook(i, 3000 + i % monitors, cycle[(i / monitors) % 2])).collect();
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
    let (storming, sent, halfway) = storm_until(addrs, bodies, alerts / 2);
    halfway.notified().await;
    let mark = logs.len();
    replicas[leader].kill();
    let killed = Instant::now();
    let (_, next, at) =
        logs.wait("another replica to lead", mark, |l| l.replica != leader && message_is(l, "became the leader")).await;
    let takeover = at.duration_since(killed);
    report(&format!(
        "replicas: leader replica-{leader} killed with -9 halfway through the storm; replica-{next} took over in {:.2} s",
        takeover.as_secs_f64()
    ));
    assert!(takeover < Duration::from_secs(10), "takeover within 10 s, took {takeover:?}");
    // The survivors say which of them leads.
    let mut roles = Vec::new();
    for (n, r) in replicas.iter().enumerate().filter(|(n, _)| *n != leader) {
        let health: Value = reqwest::get(format!("http://{}/healthz", r.addr)).await.unwrap().json().await.unwrap();
        assert!(health["inbox"].is_u64() && health["role_since"].is_string(), "{health}");
        roles.push((n, health["role"].as_str().unwrap().to_string()));
    }
    let leaders: Vec<usize> = roles.iter().filter(|(_, r)| r == "leader").map(|(n, _)| *n).collect();
    assert_eq!(leaders, [next], "one leader among the survivors: {roles:?}");
    let metrics = reqwest::get(format!("http://{}/metrics", replicas[next].addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("incident_commander_leader 1"), "{metrics}");
    assert!(metrics.contains("incident_commander_role_since_timestamp_seconds"), "{metrics}");
    assert!(roles.iter().any(|(_, r)| r == "follower"), "{roles:?}");
    storming.await.unwrap();
    let stormed = killed.elapsed();
    drained(&db, &sandbox, monitors).await;
    sandbox.set_chaos(None);
    report(&format!(
        "replicas: storm sent {:.1} s after the kill; everything delivered {:.1} s after the kill",
        stormed.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    ));
    assert_one_thread_per_monitor(&db, &sandbox, alerts, monitors, &sent);
    let faults = sandbox.calls().iter().filter(|c| matches!(c.status, 429 | 500 | 504)).count();
    report(&format!(
        "replicas: {alerts} alerts stored once ({} duplicate deliveries refused), {monitors} threads, {faults} Slack calls failed on purpose",
        sent.duplicates.load(Ordering::SeqCst)
    ));
    assert!(faults > 20, "the chaos was on: {faults} failed calls");
    let mut by_method: BTreeMap<String, usize> = BTreeMap::new();
    for c in sandbox.calls() {
        *by_method.entry(format!("{} {}", c.method, c.status)).or_default() += 1;
    }
    report(&format!("replicas: Slack calls {by_method:?}"));
}

/// The database goes away under running replicas (a real restart with `IC_PG_RESTART_CMD`, as CI
/// does; otherwise every session of the test's database is ended, which is what a restart looks
/// like from the bots) in the middle of a storm; nothing is lost or posted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_running_replicas_loses_nothing() {
    let Some(db) = test_database() else { return };
    let _serial = SERIAL.lock().await;
    let (sandbox, _dir, policy) = workspace().await;
    let logs = Logs::default();
    let mut replicas = Vec::new();
    for n in 0..2 {
        replicas.push(start_replica(n, &db, &sandbox, &policy, &logs).await);
    }
    logs.wait("a leader", 0, |l| message_is(l, "became the leader")).await;
    let (alerts, monitors) = (600, 10);
    let bodies: Vec<String> = (0..alerts).map(|i| datadog_webhook(i, 4000 + i % monitors, "Triggered")).collect();
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
    let (storming, sent, third) = storm_until(addrs, bodies, alerts / 3);
    third.notified().await;
    let mark = logs.len();
    match std::env::var("IC_PG_RESTART_CMD") {
        Ok(cmd) if !cmd.trim().is_empty() => {
            let status = Command::new("sh").args(["-c", &cmd]).status().expect("the restart command runs");
            assert!(status.success(), "{cmd} failed");
            report(&format!("replicas: restarted PostgreSQL with `{cmd}` under two replicas"));
        }
        _ => {
            let ended = db.terminate_sessions();
            report(&format!(
                "replicas: ended {ended} database sessions under two replicas (set IC_PG_RESTART_CMD to restart the server)"
            ));
        }
    }
    // Leadership is lost with the sessions and won again.
    logs.wait("a leader after the restart", mark, |l| message_is(l, "became the leader")).await;
    storming.await.unwrap();
    drained(&db, &sandbox, monitors).await;
    assert_one_thread_per_monitor(&db, &sandbox, alerts, monitors, &sent);
    drop(replicas);
}

/// `migrate` moves a stopped sled deployment into PostgreSQL, refuses a target with data unless
/// told `--replace`, and a replica started on the result carries on where the old bot stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_a_stopped_deployment_into_postgres() {
    use common::*;
    use incident_commander::app::inbox::{InboxEvent, Origin};
    use incident_commander::app::store::{Commit, Store};
    use incident_commander::domain::alert::Transition;
    use incident_commander::domain::decide::{Context, Event, Outcome, State, decide};
    use incident_commander::domain::ids::{IncidentId, Priority};

    let Some(db) = test_database() else { return };
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let sled = incident_commander::store::SledStore::open(&data).unwrap();
        let policy = policy();
        let alert = webhook_alert("500", Transition::Triggered, Priority::P2, &["team:backend"]);
        let Ok(Outcome::Changed { incident, .. }) =
            decide(State::New { id: IncidentId::FIRST }, &Event::Alert(alert.clone()), Context::new(t0(), &policy))
        else {
            panic!("opens")
        };
        sled.commit(Commit { incident: Some(*incident), ..Commit::default() }).unwrap();
        let waiting =
            InboxEvent::Domain { event: Box::new(Event::Alert(alert)), incident: None, origin: Origin::default() };
        sled.accept_event(&waiting, Some(("webhook-7", t0() + mins(60 * 24 * 365 * 10)))).unwrap();
        sled.persist().unwrap();
    }
    let migrate = |extra: &[&str]| {
        Command::new(BIN)
            .args(["migrate", "--from-data-dir"])
            .arg(&data)
            .args(["--to", &db.url])
            .args(extra)
            .output()
            .unwrap()
    };
    let first = migrate(&[]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout.contains("moved 1 incidents, 0 alerts, 1 inbox events"), "{stdout}");
    assert_eq!(count(&db, "ic_incidents"), 1);
    assert_eq!(count(&db, "ic_inbox"), 1);
    assert_eq!(count(&db, "ic_dedupe_keys"), 1);

    let again = migrate(&[]);
    assert_eq!(again.status.code(), Some(2), "a target with data is refused");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already holds incident-commander data") && stderr.contains("--replace"), "{stderr}");
    assert!(migrate(&["--replace"]).status.success());
    assert_eq!(count(&db, "ic_incidents"), 1, "replaced, not doubled");

    // A replica on the migrated database handles the event the old bot had not yet handled,
    // folding it into the migrated incident.
    let (sandbox, _dir, policy_file) = workspace().await;
    let logs = Logs::default();
    let replica = start_replica(0, &db, &sandbox, &policy_file, &logs).await;
    logs.wait("the replica to lead", 0, |l| message_is(l, "became the leader")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&db, "ic_inbox") > 0 {
        assert!(Instant::now() < deadline, "the migrated inbox event was not handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health: Value = reqwest::get(format!("http://{}/healthz", replica.addr)).await.unwrap().json().await.unwrap();
    assert_eq!(health["role"], "leader", "{health}");
    assert_eq!(health["open_incidents"], 1, "{health}");
    assert_eq!(count(&db, "ic_incidents"), 1, "the waiting alert folded into the migrated incident");
}
