//! Socket Mode against the sandbox: acks, replies, reconnects, the silence watchdog.

mod common;

use std::time::Duration;

use common::*;
use incident_commander::sandbox::harness::{Harness, HarnessOptions};

#[tokio::test]
async fn envelopes_are_acked_fast_and_answered() {
    let mut t = Harness::start(HarnessOptions::socket(POLICY)).await;
    let ts = t.mention(ALICE, ALERTS, None, "help").await;
    let reply = t.expect_reply(ALERTS, "declare <title>");
    assert_eq!(reply.thread_ts.as_deref(), Some(ts.as_str()));
    let answers = t.slash(BOB, ALERTS, "oncall backend").await;
    assert_eq!(answers.len(), 1);
    // The harness clock stands on Wednesday 2026-11-04: week one of backend's rotation.
    assert!(
        answers[0].contains(&format!("*backend*: {} (commander)", user(ALICE).mention()))
            && answers[0].contains(&format!("next {} (investigator)", user(BOB).mention())),
        "{}",
        answers[0]
    );
    let acks = t.sandbox.socket_acks();
    assert!(acks.len() >= 3, "message, app_mention and the slash command were acknowledged: {acks:?}");
    assert!(acks.iter().all(|(_, ms)| *ms < 1000), "every envelope acked within a second: {acks:?}");
    t.finish();
}

#[tokio::test]
async fn reconnects_after_a_disconnect_frame() {
    let mut t = Harness::start(HarnessOptions::socket(POLICY)).await;
    let before = t.sandbox.connections_opened();
    t.sandbox.disconnect_all("refresh_requested");
    assert!(t.sandbox.wait_connections(before + 1, Duration::from_secs(20)).await, "the bot reconnected");
    t.mention(ALICE, ALERTS, None, "help").await;
    t.expect_reply(ALERTS, "declare <title>");
    t.finish();
}

#[tokio::test]
async fn the_watchdog_replaces_a_silent_connection() {
    let mut options = HarnessOptions::socket(POLICY);
    options.silence_limit = Duration::from_millis(600);
    let mut t = Harness::start(options).await;
    let before = t.sandbox.connections_opened();
    // The connection stays open but carries nothing any more, in either direction.
    t.sandbox.silence_all();
    assert!(t.sandbox.wait_connections(before + 1, Duration::from_secs(20)).await, "the watchdog reconnected");
    let metrics = t.app.metrics.encode();
    let count: u64 = metrics
        .lines()
        .find(|l| l.starts_with("incident_commander_socket_watchdog_reconnects_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(count >= 1, "{metrics}");
    // Events flow on the new connection.
    t.mention(ALICE, ALERTS, None, "help").await;
    t.expect_reply(ALERTS, "declare <title>");
    t.finish();
}

/// Socket Mode carries the same payloads as the Events API, and the bot reads them as sent: a
/// Datadog alert keeps its monitor link (in `attachments[].title_link`) and so its fingerprint,
/// whichever way it arrived.
#[tokio::test]
async fn socket_mode_reads_alert_messages_exactly_as_http_does() {
    use incident_commander::sandbox::harness::DatadogPost;
    let mut seen = Vec::new();
    for options in [HarnessOptions::http(POLICY), HarnessOptions::socket(POLICY)] {
        let mut t = Harness::start(options).await;
        let post = DatadogPost::new("[P2] [Triggered on {service:api-gateway,env:prod}] API p99 latency high", 4242)
            .body("p99 above 800ms")
            .tags(&["team:backend"]);
        t.post_datadog_alert(ALERTS, &post).await;
        let header = t.expect_reply(ALERTS, "INC-1 · SEV2");
        assert!(header.blocks.to_string().contains("https://app.datadoghq.com/monitors/4242"), "{:?}", t.mode);
        let incident = t.app.store.all_incidents().unwrap().remove(0);
        let track = incident.alerts.unwrap();
        seen.push((track.fingerprints, track.links, track.tags));
        t.finish();
    }
    assert_eq!(seen[0], seen[1], "HTTP and Socket Mode read the alert the same way");
    assert_eq!(seen[1].0[0].as_str(), "datadog:monitor:4242:env:prod,service:api-gateway");
}

/// Slack's pings count as life: a connection that only carries pings is not replaced.
#[tokio::test]
async fn pings_keep_a_quiet_connection_alive() {
    let mut options = HarnessOptions::socket(POLICY);
    options.silence_limit = Duration::from_millis(600);
    let mut t = Harness::start(options).await;
    t.sandbox.set_ping_every(Duration::from_millis(100));
    let before = t.sandbox.connections_opened();
    t.sandbox.disconnect_all("refresh_requested");
    assert!(t.sandbox.wait_connections(before + 1, Duration::from_secs(20)).await, "the bot reconnected");
    let opened = t.sandbox.connections_opened();
    // Twelve pings answered: 1.2 s of nothing but pings, twice the silence limit.
    let pongs = t.sandbox.pongs();
    assert!(t.sandbox.wait_pongs(pongs + 12, Duration::from_secs(20)).await, "the bot answers pings");
    assert_eq!(t.sandbox.connections_opened(), opened, "no watchdog reconnect while pings arrive");
    t.mention(ALICE, ALERTS, None, "help").await;
    t.expect_reply(ALERTS, "declare <title>");
    t.finish();
}
