//! Slack transport through the real ingress against the sandbox: signatures, exactly-once,
//! Socket Mode, rate-limited durable egress.

mod common;

use std::time::Duration;

use axum::http::HeaderMap;
use common::*;
use incident_commander::domain::command::Verb;
use incident_commander::sandbox::harness::{Harness, HarnessOptions};
use incident_commander::sandbox::slack::{self, Fault, SandboxLimits, sign};
use incident_commander::slack::blocks::escape_placeholders;
use incident_commander::slack::egress::EgressLimits;
use serde_json::json;
use slack_morphism::prelude::SlackSigningSecret;
use slack_morphism::signature_verifier::{SlackEventSignatureVerifier, SlackEventSignatureVerifierError};

/// Slack's documented signing example (python-slack-sdk's test vector).
const VECTOR_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const VECTOR_TS: &str = "1531420618";
const VECTOR_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const VECTOR_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

#[test]
fn slacks_signing_test_vector_verifies() {
    // Our sandbox signs exactly as Slack does.
    assert_eq!(sign(VECTOR_SECRET, VECTOR_TS, VECTOR_BODY.as_bytes()), VECTOR_SIGNATURE);
    // The verifier the ingress uses accepts the signature; the vector is from 2018, so the only
    // complaint left is its age.
    let verifier = SlackEventSignatureVerifier::new(&SlackSigningSecret::new(VECTOR_SECRET.into()));
    match verifier.verify(VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TS) {
        Err(SlackEventSignatureVerifierError::IncorrectOrExpiredTimestampError(_)) => {}
        other => panic!("the vector's signature must match (and only its timestamp be stale): {other:?}"),
    }
    let tampered = VECTOR_BODY.replace("roadrunner", "coyote");
    assert!(matches!(
        verifier.verify(VECTOR_SIGNATURE, &tampered, VECTOR_TS),
        Err(SlackEventSignatureVerifierError::WrongSignatureError(_))
    ));
    let mut headers = HeaderMap::new();
    headers.insert("x-slack-request-timestamp", VECTOR_TS.parse().unwrap());
    headers.insert("x-slack-signature", VECTOR_SIGNATURE.parse().unwrap());
    let response = incident_commander::slack::ingress::verify(&verifier, &headers, VECTOR_BODY.as_bytes()).unwrap_err();
    assert_eq!(response.status, 401, "a stale timestamp is refused at the ingress");
    assert!(response.reason.contains("within 5 minutes"));
}

fn options() -> HarnessOptions {
    HarnessOptions::http(POLICY)
}

#[tokio::test]
async fn help_by_mention_replies_in_a_thread_on_the_mention() {
    let mut t = Harness::start(options()).await;
    let ts = t.mention(ALICE, ALERTS, None, "help").await;
    let reply = t.expect_reply(ALERTS, "/incident");
    assert_eq!(reply.thread_ts.as_deref(), Some(ts.as_str()), "the help goes in a thread on the mention");
    for verb in Verb::ALL.iter().copied() {
        assert!(reply.text.contains(&escape_placeholders(verb.usage())), "help lists {verb}");
    }
    t.finish();
}

#[tokio::test]
async fn slash_help_answers_privately_with_every_command() {
    let mut t = Harness::start(options()).await;
    let answers = t.slash(BOB, ALERTS, "help").await;
    assert_eq!(answers.len(), 1);
    for verb in Verb::ALL.iter().copied() {
        assert!(answers[0].contains(&escape_placeholders(verb.usage())), "help lists {verb}");
    }
    assert!(answers[0].contains("declare &lt;title&gt;"), "placeholders are escaped, so Slack shows them as typed");
    let answers = t.slash(BOB, ALERTS, "resolv INC-1").await;
    assert_eq!(
        answers,
        ["I don't know `resolv`. Did you mean `/incident resolve [summary]`? `/incident help` lists every command."]
    );
    t.finish();
}

fn signed_headers(body: &str, ts: i64) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        ("x-slack-request-timestamp", ts.to_string()),
        ("x-slack-signature", sign(slack::SIGNING_SECRET, &ts.to_string(), body.as_bytes())),
    ]
}

#[tokio::test]
async fn bad_requests_are_refused_and_nothing_is_processed() {
    let mut t = Harness::start(options()).await;
    let url = format!("http://{}/slack/events", t.app.addr);
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp();
    let event = t.sandbox.envelope(
        json!({"type": "app_mention", "user": ALICE, "text": "<@U0INCBOT01> help", "ts": "1.1", "channel": ALERTS}),
    );
    let body = event.to_string();

    let post = |headers: Vec<(&'static str, String)>, body: String| {
        let mut req = client.post(&url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(body).send()
    };
    // No signature at all.
    let r = post(vec![("content-type", "application/json".into())], body.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("missing X-Slack-Signature"));
    // A signature that does not match the body.
    let mut bad = signed_headers(&body, now);
    bad[2].1 = sign("another-secret", &now.to_string(), body.as_bytes());
    let r = post(bad, body.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("does not match"));
    // Six minutes old.
    let r = post(signed_headers(&body, now - 360), body.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("within 5 minutes"));
    // Over 1 MiB.
    let huge = format!("{{\"type\":\"event_callback\",\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let r = post(signed_headers(&huge, now), huge).await.unwrap();
    assert_eq!(r.status(), 413);
    // Signed but not JSON.
    let r = post(signed_headers("{not json", now), "{not json".into()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("malformed JSON"));
    // Signed, JSON, but an event_callback without an event id.
    let no_id = json!({"type": "event_callback", "event": {"type": "app_mention"}}).to_string();
    let r = post(signed_headers(&no_id, now), no_id).await.unwrap();
    assert_eq!(r.status(), 400);

    t.idle().await;
    assert_eq!(t.app.inbox.accepted_count(), 0, "nothing was accepted");
    assert!(t.bot_messages().is_empty(), "nothing was processed");

    // url_verification echoes the challenge.
    let challenge = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let r = post(signed_headers(&challenge, now), challenge).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");

    // Bad form bodies on the command and interaction routes.
    let cmd_url = format!("http://{}/slack/commands", t.app.addr);
    let form = "text=help";
    let mut headers = signed_headers(form, now);
    headers[0].1 = "application/x-www-form-urlencoded".into();
    let mut req = client.post(&cmd_url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = req.body(form).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("missing user_id"));
    t.finish();
}

#[tokio::test]
async fn a_retried_event_acts_once() {
    let mut t = Harness::start(options()).await;
    let (ts, _) = t.sandbox.post_as_user(ALICE, ALERTS, "<@U0INCBOT01> help", None).await;
    let envelope = t.sandbox.envelope(json!({
        "type": "app_mention", "user": ALICE, "text": "<@U0INCBOT01> help", "ts": ts, "channel": ALERTS, "event_ts": ts,
    }));
    for retry in [None, Some(1), Some(2)] {
        let result = t.sandbox.deliver_envelope(&envelope, retry).await;
        assert!(result.is_acked(), "every delivery is acknowledged: {result:?}");
    }
    t.idle().await;
    // The sandbox's own app_mention for the posted message counts once, the three deliveries of
    // the same event_id once more.
    let replies: Vec<_> =
        t.bot_messages().into_iter().filter(|m| m.thread_ts.as_deref() == Some(ts.as_str())).collect();
    assert_eq!(replies.len(), 2, "one reply per distinct event, not per delivery");
    t.ack_all();
    let metrics = t.app.metrics.encode();
    assert!(metrics.contains("incident_commander_events_duplicate_total{kind=\"slack_event\"} 2"), "{metrics}");
    t.finish();
}

#[tokio::test]
async fn a_429_pauses_then_the_call_succeeds() {
    let mut t = Harness::start(options()).await;
    t.sandbox.inject("chat.postMessage", Fault::RateLimited(Some(1)), 1);
    t.mention(ALICE, ALERTS, None, "help").await;
    t.expect_reply(ALERTS, "/incident");
    let posts = t.sandbox.calls_to("chat.postMessage");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].status, 429);
    assert_eq!(posts[1].status, 200);
    assert!(
        posts[1].elapsed_ms - posts[0].elapsed_ms >= 950,
        "waited for Retry-After: {}ms",
        posts[1].elapsed_ms - posts[0].elapsed_ms
    );
    t.finish();
}

#[tokio::test]
async fn server_errors_and_timeouts_retry_with_backoff() {
    let mut t = Harness::start(options()).await;
    t.sandbox.inject("chat.postMessage", Fault::Status(503), 2);
    t.sandbox.inject("chat.postMessage", Fault::Delay(Duration::from_secs(6)), 1);
    t.mention(ALICE, ALERTS, None, "help").await;
    t.expect_reply(ALERTS, "/incident");
    let statuses: Vec<u16> = t.sandbox.calls_to("chat.postMessage").iter().map(|c| c.status).collect();
    // Two 503s, one call the bot gave up waiting for (the sandbox still records it when the delay
    // ends, unless the connection was dropped first), then success.
    assert!(statuses.starts_with(&[503, 503]), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200));
    assert_eq!(t.bot_messages().len(), 1, "exactly one help reply despite the retries");
    t.finish();
}

#[tokio::test]
async fn posts_are_paced_per_channel_and_channels_do_not_wait_for_each_other() {
    let mut options = options();
    // One message per 200 ms per channel, no burst: Slack's shape, five times faster.
    options.egress = EgressLimits {
        post_per_channel: governor::Quota::with_period(Duration::from_millis(200)).unwrap(),
        ..EgressLimits::fast()
    };
    options.sandbox_limits = SandboxLimits::RELAXED;
    let mut t = Harness::start(options).await;
    // Five requests in the alerts channel and one in the frontend channel, all at once.
    for _ in 0..5 {
        let (_, r) = t.sandbox.post_as_user(ALICE, ALERTS, "<@U0INCBOT01> help", None).await;
        assert!(r.is_acked());
    }
    let (_, r) = t.sandbox.post_as_user(DAVE, FRONT, "<@U0INCBOT01> help", None).await;
    assert!(r.is_acked());
    t.idle().await;
    let posts = t.sandbox.calls_to("chat.postMessage");
    let times = |channel: &str| -> Vec<u128> {
        posts.iter().filter(|c| c.params["channel"] == channel && c.status == 200).map(|c| c.elapsed_ms).collect()
    };
    let alerts = times(ALERTS);
    let front = times(FRONT);
    assert_eq!(alerts.len(), 5);
    assert_eq!(front.len(), 1);
    for pair in alerts.windows(2) {
        assert!(pair[1] - pair[0] >= 180, "posts in one channel are paced: {alerts:?}");
    }
    assert!(
        front[0] < alerts[4],
        "the frontend channel did not wait behind the alerts backlog: {front:?} vs {alerts:?}"
    );
    t.ack_all();
    t.finish();
}

#[tokio::test]
async fn a_429_in_one_channel_does_not_delay_another() {
    let mut t = Harness::start(options()).await;
    // The next postMessage (the alerts channel's) is told to wait 2 s.
    t.sandbox.inject("chat.postMessage", Fault::RateLimited(Some(2)), 1);
    let (_, r) = t.sandbox.post_as_user(ALICE, ALERTS, "<@U0INCBOT01> help", None).await;
    assert!(r.is_acked());
    let (_, r) = t.sandbox.post_as_user(DAVE, FRONT, "<@U0INCBOT01> help", None).await;
    assert!(r.is_acked());
    t.idle().await;
    let posts = t.sandbox.calls_to("chat.postMessage");
    let ok =
        |channel: &str| posts.iter().find(|c| c.params["channel"] == channel && c.status == 200).unwrap().elapsed_ms;
    let limited = posts.iter().find(|c| c.status == 429).unwrap().elapsed_ms;
    assert!(ok(FRONT) - limited < 1000, "the frontend channel was not paused by the alerts channel's 429");
    assert!(ok(ALERTS) - limited >= 1900, "the alerts channel waited for its Retry-After");
    t.ack_all();
    t.finish();
}

#[tokio::test]
async fn startup_fails_clearly_on_a_bad_token() {
    incident_commander::tls::install_crypto_provider();
    let sandbox = incident_commander::sandbox::slack::SlackSandbox::start(SandboxLimits::RELAXED).await.unwrap();
    sandbox.revoke_bot_token();
    let settings = incident_commander::startup::Settings {
        policy: policy(),
        listen: "127.0.0.1:0".parse().unwrap(),
        clock: std::sync::Arc::new(incident_commander::app::clock::SystemClock),
        tick_every: Duration::from_secs(60),
        slack: Some(incident_commander::startup::SlackSettings {
            api_url: sandbox.api_url(),
            bot_token: secrecy::SecretString::from(slack::BOT_TOKEN),
            signing_secret: Some(secrecy::SecretString::from(slack::SIGNING_SECRET)),
            socket: None,
            limits: EgressLimits::fast(),
        }),
        webhook_token: None,
        trackers: Default::default(),
        dashboard_token: None,
        datadog: None,
    };
    let store = std::sync::Arc::new(incident_commander::store::MemoryStore::new());
    let err = incident_commander::startup::RunningApp::start(settings, store).await.err().expect("startup fails");
    let text = format!("{err:#}");
    assert!(text.contains("Slack refused SLACK_BOT_TOKEN (invalid_auth)"), "{text}");
}

#[tokio::test]
async fn queued_header_edits_coalesce_and_thread_order_is_kept() {
    let mut t = Harness::start(options()).await;
    // The first post (the incident's root message) hangs for a while; everything after it in the
    // channel queues up behind it.
    t.sandbox.inject("chat.postMessage", Fault::Delay(Duration::from_millis(800)), 1);
    assert!(t.sandbox.slash(ALICE, ALERTS, "declare Checkout errors sev 2").await.is_acked());
    for command in ["ack", "sev 3 only one region", "status rolling back"] {
        assert!(t.sandbox.slash(ALICE, ALERTS, command).await.is_acked());
    }
    t.idle().await;
    let updates = t.sandbox.calls_to("chat.update");
    assert_eq!(updates.len(), 1, "three queued header edits, one chat.update: {updates:#?}");
    let root = t.expect_reply(ALERTS, "*INC-1* — Checkout errors");
    let thread = t.sandbox.thread(ALERTS, &root.ts);
    let texts: Vec<&str> = thread.iter().map(|m| m.text.as_str()).collect();
    assert!(texts[1].starts_with("INC-1 · SEV"), "the header is the first reply: {texts:#?}");
    assert!(texts[2].contains("acknowledged"), "{texts:#?}");
    assert!(texts[3].contains("SEV2 → *SEV3*"), "{texts:#?}");
    assert!(texts[4].contains("Status update"), "{texts:#?}");
    // The one edit carries the latest state.
    let header = &thread[1];
    assert!(header.text.contains("SEV3") && header.text.contains("Acknowledged"), "{}", header.text);
    assert_eq!(header.edits, 1);
    t.ack_all();
    t.new_privates();
    t.finish();
}

#[tokio::test]
async fn a_redelivered_slash_command_acts_once_and_counts_as_a_duplicate() {
    for mode in [HarnessOptions::http(POLICY), HarnessOptions::socket(POLICY)] {
        let mut t = Harness::start(mode).await;
        let answers = t.slash(ALICE, ALERTS, "declare Checkout errors sev 2").await;
        assert_eq!(answers, ["Declared INC-1 · SEV2: Checkout errors"]);
        t.ack_all();
        // The same form again (same trigger_id): acknowledged, recognised, not acted on.
        assert!(t.sandbox.resend_last_slash().await.is_acked());
        t.idle().await;
        assert!(t.new_privates().is_empty(), "no second answer");
        assert_eq!(t.app.store.all_incidents().unwrap().len(), 1, "no second incident");
        let metrics = t.app.metrics.encode();
        assert!(metrics.contains("incident_commander_events_duplicate_total{kind=\"slash_command\"} 1"), "{metrics}");
        t.finish();
    }
}

#[tokio::test]
async fn new_incidents_roots_and_headers_go_before_other_threads_notes() {
    let mut t = Harness::start(options()).await;
    // The channel's first post hangs a while, so everything after it queues up behind it.
    t.sandbox.inject("chat.postMessage", Fault::Delay(Duration::from_millis(800)), 1);
    let webhook = |monitor: u32, transition: &str| {
        json!({
            "id": format!("{monitor}{transition}"), "event_type": "query_alert_monitor",
            "title": format!("[P3] [{transition} on {{service:api-{monitor},env:prod}}] Queue {monitor} backlog"),
            "date": "1793786400000",
            "body": format!("%%%\nBacklog\n\n[[Monitor Status](https://app.datadoghq.com/monitors/{monitor})]\n%%%"),
        })
    };
    let token = Some(incident_commander::sandbox::harness::WEBHOOK_TOKEN);
    for (monitor, transition) in [(1, "Triggered"), (1, "Recovered"), (2, "Triggered"), (3, "Triggered")] {
        let (status, _) = t.webhook_with_token("datadog", &webhook(monitor, transition), token).await;
        assert_eq!(status, 200);
    }
    t.idle().await;
    let posted: Vec<String> = t
        .sandbox
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| c.status == 200)
        .map(|c| c.response["message"]["text"].as_str().unwrap_or_default().chars().take(30).collect())
        .collect();
    let at = |needle: &str| {
        posted.iter().position(|p| p.contains(needle)).unwrap_or_else(|| panic!("{needle}: {posted:#?}"))
    };
    // Every root, then every header, then INC-1's note, although the note was queued before
    // INC-2 and INC-3 opened; INC-1's own thread reads in order.
    assert!(at("*INC-1*") < at("*INC-2*") && at("*INC-2*") < at("*INC-3*"), "{posted:#?}");
    assert!(
        at("*INC-3*") < at("INC-1 ·") && at("INC-1 ·") < at("INC-2 ·") && at("INC-2 ·") < at("INC-3 ·"),
        "{posted:#?}"
    );
    assert!(at("INC-3 ·") < at("The alert"), "{posted:#?}");
    t.ack_all();
    t.finish();
}
