//! The real binary (`incident-commander serve`) against the sandbox Slack: a kill -9 between
//! accepting an event and delivering its answer loses nothing and duplicates nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use incident_commander::sandbox::slack::{self, Delivery, Fault, SandboxLimits, SlackSandbox};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_incident-commander");

struct Bot {
    child: Child,
    addr: String,
    /// Every line `serve` logged up to its address (JSON lines).
    startup_log: Vec<String>,
}

/// Starts `serve` in HTTP mode against the sandbox and returns once it listens.
fn start_bot(sandbox: &SlackSandbox, policy: &std::path::Path, data: &std::path::Path) -> Bot {
    start_bot_with(sandbox, policy, data, &[])
}

/// Like [`start_bot`], with more environment variables.
fn start_bot_with(
    sandbox: &SlackSandbox,
    policy: &std::path::Path,
    data: &std::path::Path,
    envs: &[(&str, &str)],
) -> Bot {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(policy)
        .arg("--data-dir")
        .arg(data)
        .env("SLACK_API_URL", sandbox.api_url())
        .env("SLACK_BOT_TOKEN", slack::BOT_TOKEN)
        .env("SLACK_SIGNING_SECRET", slack::SIGNING_SECRET)
        .env_remove("SLACK_APP_TOKEN")
        // The embedded store in --data-dir, whatever the machine's DATABASE_URL says.
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sent {
                continue;
            }
            lines.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "listening"
            {
                let _ = tx.send((v["addr"].as_str().unwrap().to_string(), std::mem::take(&mut lines)));
                sent = true;
            }
        }
    });
    let (addr, startup_log) = rx.recv_timeout(Duration::from_secs(30)).expect("serve logs its address");
    Bot { child, addr, startup_log }
}

/// A sandbox with Alice in the alerts channel, and the test policy in a temporary directory.
async fn workspace() -> (SlackSandbox, tempfile::TempDir, std::path::PathBuf) {
    incident_commander::tls::install_crypto_provider();
    let sandbox = SlackSandbox::start(SandboxLimits::RELAXED).await.unwrap();
    sandbox.add_user(ALICE, "alice");
    sandbox.add_channel(ALERTS, "alerts-backend", &[ALICE, slack::BOT_USER_ID]);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    (sandbox, dir, policy)
}

fn sigkill(bot: &mut Bot) {
    bot.child.kill().expect("kill -9");
    let _ = bot.child.wait();
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    // Polls the sandbox's world: the bot is another process, so there is no in-process signal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Multi-threaded: the test blocks a thread while reading the child's logs, and the sandbox must
// keep serving meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_answering_the_bot_answers_once_after_restart() {
    let (sandbox, dir, policy) = workspace().await;
    let data = dir.path().join("data");

    let mut bot = start_bot(&sandbox, &policy, &data);
    sandbox.set_delivery(Delivery::Http { base: format!("http://{}", bot.addr) });
    // Slack is down for posting: the answer cannot go out yet.
    sandbox.inject("chat.postMessage", Fault::Status(503), 10_000);
    let ts = sandbox.add_message(ALICE, ALERTS, "<@U0INCBOT01> help", None);
    let mention = sandbox.envelope(json!({"type": "app_mention", "user": ALICE, "text": "<@U0INCBOT01> help", "ts": ts, "channel": ALERTS, "event_ts": ts}));
    assert!(sandbox.deliver_envelope(&mention, None).await.is_acked(), "accepted with 200");
    wait_for("the bot to try posting", || sandbox.calls_to("chat.postMessage").len() >= 2).await;
    sigkill(&mut bot);

    // Slack recovers; the bot comes back on the same data directory.
    sandbox.clear_faults();
    let mut bot = start_bot(&sandbox, &policy, &data);
    sandbox.set_delivery(Delivery::Http { base: format!("http://{}", bot.addr) });
    let replies = || {
        sandbox
            .messages()
            .into_iter()
            .filter(|m| m.bot_id.as_deref() == Some(slack::BOT_ID) && m.thread_ts.as_deref() == Some(ts.as_str()))
            .count()
    };
    wait_for("the answer after restart", || replies() >= 1).await;
    // Slack retries the same event after the restart: it is recognised.
    assert!(sandbox.deliver_envelope(&mention, Some(1)).await.is_acked());
    let ok_posts = || sandbox.calls_to("chat.postMessage").iter().filter(|c| c.status == 200).count();
    wait_for("the bot to settle", || ok_posts() >= 1).await;
    // Give a duplicate every chance to show up: ask for help once more and wait for that reply,
    // which comes after anything the retried event could have caused.
    let ts2 = sandbox.add_message(ALICE, ALERTS, "<@U0INCBOT01> help", None);
    let mention2 = sandbox.envelope(json!({"type": "app_mention", "user": ALICE, "text": "<@U0INCBOT01> help", "ts": ts2, "channel": ALERTS, "event_ts": ts2}));
    assert!(sandbox.deliver_envelope(&mention2, None).await.is_acked());
    wait_for("the second answer", || {
        sandbox
            .messages()
            .iter()
            .any(|m| m.bot_id.as_deref() == Some(slack::BOT_ID) && m.thread_ts.as_deref() == Some(ts2.as_str()))
    })
    .await;
    assert_eq!(replies(), 1, "the first question was answered exactly once");
    sigkill(&mut bot);
}

/// A Datadog setting the bot cannot use turns evidence off with a warning naming the valid
/// sites; Slack handling goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_datadog_site_turns_evidence_off_and_keeps_slack_running() {
    let (sandbox, dir, policy) = workspace().await;
    let envs = [("DD_API_KEY", "k"), ("DD_APP_KEY", "a"), ("DD_SITE", "ap9.datadoghq.com")];
    let mut bot = start_bot_with(&sandbox, &policy, &dir.path().join("data"), &envs);
    let warning = bot.startup_log.iter().find(|l| l.contains("DD_SITE=ap9.datadoghq.com is not a Datadog site"));
    let warning = warning.unwrap_or_else(|| panic!("a warning names the bad setting: {:#?}", bot.startup_log));
    assert!(warning.contains("ap2.datadoghq.com") && warning.contains("us2.ddog-gov.com"), "{warning}");
    sandbox.set_delivery(Delivery::Http { base: format!("http://{}", bot.addr) });
    let (_, r) = sandbox.post_as_user(ALICE, ALERTS, "<@U0INCBOT01> help", None).await;
    assert!(r.is_acked(), "{r:?}");
    wait_for("the help answer", || sandbox.messages().iter().any(|m| m.text.contains("declare &lt;title&gt;"))).await;
    sigkill(&mut bot);
}
