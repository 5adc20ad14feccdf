//! What real Slack sends around an alert message, through the real ingress against the sandbox:
//! unfurls, thread-parent updates when anyone replies (the sandbox sends them for every reply,
//! the bot's own included), `message_replied` with and without its subtype, edits by the posting
//! app, deletions, broadcasts and joins. Payloads follow the reference captures
//! (`slack/events/real-captures/`); see `src/sandbox/secondary.rs` for which one each follows.

mod common;

use common::*;
use incident_commander::domain::incident::{EntryKind, Status};
use incident_commander::domain::{IncidentId, Transition};
use incident_commander::sandbox::harness::{DatadogPost, Harness, HarnessOptions};
use incident_commander::sandbox::slack;
use serde_json::json;

fn latency(transition: &str) -> DatadogPost {
    DatadogPost::new(&format!("[P2] [{transition} on {{service:api-gateway,env:prod}}] API p99 latency high"), 4242)
        .body("p99 latency above 800ms for 5 minutes")
        .tags(&["team:backend", "service:api-gateway"])
}

fn inc1(t: &Harness) -> incident_commander::domain::Incident {
    t.app.store.get_incident(IncidentId::FIRST).unwrap().unwrap()
}

fn bot_texts(t: &Harness) -> Vec<String> {
    t.bot_messages().into_iter().map(|m| m.text).collect()
}

async fn healthz(t: &Harness) -> serde_json::Value {
    reqwest::get(format!("http://{}/healthz", t.app.addr)).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn thread_replies_and_unchanged_edits_after_a_recovery_change_nothing() {
    for options in [HarnessOptions::http(POLICY), HarnessOptions::socket(POLICY)] {
        let mut t = Harness::start(options).await;
        let alert_ts = t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
        t.expect_reply(ALERTS, "INC-1 · SEV2");
        // The recovery comes as a new message; its note lands in the alert's thread, and Slack
        // answers with a message_changed of the (still Triggered) alert message.
        t.post_datadog_alert(ALERTS, &latency("Recovered")).await;
        t.expect_reply(ALERTS, "The alert recovered");
        // People reply in the thread: more parent updates.
        t.say(BOB, ALERTS, Some(&alert_ts), "looking at the db").await;
        t.say(CAROL, ALERTS, Some(&alert_ts), "me too").await;
        // Datadog's app edits its message without changing the alert (its body only).
        t.edit_datadog_alert(ALERTS, &alert_ts, &latency("Triggered").body("p99 latency above 900ms")).await;
        let parent = t.sandbox.message(ALERTS, &alert_ts).unwrap();
        assert!(
            parent.raw["reply_count"].as_u64().unwrap() >= 4,
            "the alert's thread has the bot's and people's replies"
        );
        let texts = bot_texts(&t);
        assert!(!texts.iter().any(|m| m.contains("now *Triggered*")), "no false re-trigger: {texts:#?}");
        let incident = inc1(&t);
        let track = incident.alerts.as_ref().unwrap();
        assert_eq!((track.last_transition, track.recovered), (Transition::Recovered, true), "the recovery stands");
        assert_eq!(track.count, 2, "two alerts, whatever Slack edited");
        assert_eq!(t.app.store.alert_count().unwrap(), 2, "edits are not alerts in the log");
        assert!(!incident.timeline.iter().any(|e| e.kind == EntryKind::AlertEdited), "{:#?}", incident.timeline);
        t.finish();
    }
}

#[tokio::test]
async fn an_edit_never_opens_an_incident() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    let alert_ts = t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
    t.expect_reply(ALERTS, "INC-1");
    t.mention(ALICE, ALERTS, Some(&alert_ts), "mitigated").await;
    t.expect_reply(ALERTS, "*Mitigated*");
    t.mention(ALICE, ALERTS, Some(&alert_ts), "resolve").await;
    t.expect_reply(ALERTS, "*INC-1 resolved*");
    t.expect_reply(ALERTS, "Postmortem draft for INC-1");
    let calls_before = t.sandbox.calls_to("chat.postMessage").len();
    // After the resolution: an unchanged edit, a reply (a parent update), and a real change.
    t.edit_datadog_alert(ALERTS, &alert_ts, &latency("Triggered").body("edited later")).await;
    t.say(BOB, ALERTS, Some(&alert_ts), "post-incident note").await;
    t.edit_datadog_alert(ALERTS, &alert_ts, &latency("Re-Triggered")).await;
    assert_eq!(t.app.store.all_incidents().unwrap().len(), 1, "no new incident from an edit");
    assert_eq!(healthz(&t).await["open_incidents"], 0);
    assert_eq!(t.sandbox.calls_to("chat.postMessage").len(), calls_before, "no new header or note");
    assert_eq!(t.sandbox.calls_to("conversations.create").len(), 0, "no dedicated channel");
    assert_eq!(inc1(&t).status, Status::Resolved);
    // An alert message the bot never saw (posted before it joined), edited into a new alert,
    // opens nothing either.
    let unseen = |title: &str| {
        let mut m = DatadogPost::new(title, 77).content();
        m["type"] = json!("message");
        m["subtype"] = json!("bot_message");
        m["bot_id"] = json!(slack::DATADOG_BOT_ID);
        m["ts"] = json!("1699999000.000100");
        m
    };
    let edit = json!({"type": "message", "subtype": "message_changed", "hidden": true, "channel": ALERTS,
                      "ts": "1700000900.000100", "event_ts": "1700000900.000100", "channel_type": "channel",
                      "message": unseen("[P1] [Triggered] Checkout down"), "previous_message": unseen("[P3] [Warn] Checkout slow")});
    assert!(t.sandbox.deliver_event(edit).await.is_acked());
    t.idle().await;
    assert_eq!(t.app.store.all_incidents().unwrap().len(), 1);
    assert_eq!(healthz(&t).await["open_incidents"], 0);
    t.finish();
}

#[tokio::test]
async fn edits_are_not_alerts_for_storms() {
    let policy = format!("{POLICY}\n[alerts.storm]\ncount = 10\nwindow = \"1m\"\n");
    let mut t = Harness::start(HarnessOptions::http(&policy)).await;
    let alert_ts = t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
    t.expect_reply(ALERTS, "INC-1");
    for i in 0..11 {
        t.edit_datadog_alert(ALERTS, &alert_ts, &latency("Triggered").body(&format!("p99 at {}ms", 800 + i))).await;
    }
    let texts = bot_texts(&t);
    assert!(!texts.iter().any(|m| m.contains("Alert storm")), "eleven edits are not a storm: {texts:#?}");
    assert_eq!(t.app.store.alert_count().unwrap(), 1);
    assert_eq!(inc1(&t).alerts.unwrap().count, 1);
    t.finish();
}

#[tokio::test]
async fn an_edit_that_changes_the_alert_changes_the_incident() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    let alert_ts = t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
    t.expect_reply(ALERTS, "INC-1 · SEV2");
    // Datadog's app rewrites its post: the monitor recovered.
    t.edit_datadog_alert(ALERTS, &alert_ts, &latency("Recovered")).await;
    t.expect_reply(ALERTS, "The alert recovered (was Triggered)");
    let incident = inc1(&t);
    let track = incident.alerts.as_ref().unwrap();
    assert_eq!((track.last_transition, track.count), (Transition::Recovered, 1), "changed, not counted again");
    assert!(
        incident.timeline.iter().any(|e| e.kind == EntryKind::AlertEdited && e.text.contains("Triggered → Recovered")),
        "{:#?}",
        incident.timeline
    );
    assert_eq!(t.app.store.alert_count().unwrap(), 1, "the log keeps one record of the message");
    let logged = t.app.store.find_alert_by_message(&channel(ALERTS), &alert_ts).unwrap().unwrap();
    assert_eq!(logged.alert.transition, Transition::Recovered, "with its latest content");
    // A priority raised by an edit raises the rules-set severity.
    let p1 = DatadogPost::new("[P1] [Triggered on {service:api-gateway,env:prod}] API p99 latency high", 4242)
        .tags(&["team:backend", "service:api-gateway"]);
    t.edit_datadog_alert(ALERTS, &alert_ts, &p1).await;
    t.expect_reply(ALERTS, "The alert is now *Triggered* (was Recovered)");
    t.expect_reply(ALERTS, "*SEV1*");
    t.ack_all();
    t.finish();
}

#[tokio::test]
async fn a_deleted_alert_message_leaves_its_incident_open_and_noted() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    let alert_ts = t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
    t.expect_reply(ALERTS, "INC-1");
    let posts = t.sandbox.calls_to("chat.postMessage").len();
    assert!(t.sandbox.delete_message(ALERTS, &alert_ts).await.is_acked());
    t.idle().await;
    let incident = inc1(&t);
    assert_eq!(incident.status, Status::Open);
    let note = incident.timeline.iter().find(|e| e.kind == EntryKind::AlertDeleted).expect("the deletion is noted");
    assert!(note.text.contains("API p99 latency high") && note.text.contains("was deleted in Slack"), "{}", note.text);
    assert_eq!(t.sandbox.calls_to("chat.postMessage").len(), posts, "nothing posted");
    // Commands in the thread still find the incident (its thread stands as a tombstone).
    t.mention(ALICE, ALERTS, Some(&alert_ts), "ack").await;
    t.expect_reply(ALERTS, "acknowledged");
    t.finish();
}

#[tokio::test]
async fn unfurled_links_in_an_alert_bots_message_change_nothing() {
    let policy =
        POLICY.replace("responders = [\"U0SRE0001\"]", "responders = [\"U0SRE0001\"]\nalert_bots = [\"B0OTHERBOT\"]");
    for options in [HarnessOptions::http(&policy), HarnessOptions::socket(&policy)] {
        let mut t = Harness::start(options).await;
        let post = json!({
            "text": "[Triggered] Disk almost full on db-1: <https://grafana.example/d/disk|dashboard> <https://acme.slack.com/archives/C0ALERTS1/p1700000000000100|earlier>",
            "username": "grafana-bot", "unfurl_links": true,
        });
        let (ts, r) = t.sandbox.post_as_bot("B0OTHERBOT", "A0OTHER001", ALERTS, post).await;
        assert!(r.is_acked());
        t.idle().await;
        t.expect_reply(ALERTS, "INC-1");
        let message = t.sandbox.message(ALERTS, &ts).unwrap();
        assert_eq!(message.attachments.as_array().map(Vec::len), Some(2), "both links unfurled");
        let incident = inc1(&t);
        assert_eq!(incident.alerts.as_ref().unwrap().count, 1);
        assert!(!incident.timeline.iter().any(|e| e.kind == EntryKind::AlertEdited));
        assert_eq!(t.app.store.all_incidents().unwrap().len(), 1);
        t.finish();
    }
}

#[tokio::test]
async fn replied_broadcast_and_join_events_are_never_alerts() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    let alert_ts = t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
    t.expect_reply(ALERTS, "INC-1");
    let datadog = t.sandbox.message(ALERTS, &alert_ts).unwrap().raw;
    let parent = json!({"type": "message", "subtype": "bot_message", "bot_id": slack::DATADOG_BOT_ID, "username": "Datadog",
                        "ts": alert_ts, "thread_ts": alert_ts, "reply_count": 3, "attachments": datadog["attachments"],
                        "replies": [{"user": BOB, "ts": "1.2"}]});
    // message_replied without its subtype (as the Events API sends it) and with it.
    let replied = json!({"type": "message", "hidden": true, "channel": ALERTS, "ts": "1700000500.000100",
                         "event_ts": "1700000500.000100", "message": parent});
    let mut with_subtype = replied.clone();
    with_subtype["subtype"] = json!("message_replied");
    // A person's thread reply also sent to the channel (thread_broadcast), carrying the alert as
    // its `root`.
    let broadcast = json!({"type": "message", "subtype": "thread_broadcast", "user": BOB, "text": "[Triggered] rolling back",
                           "ts": "1700000501.000100", "thread_ts": alert_ts, "channel": ALERTS, "root": parent});
    let join = json!({"type": "message", "subtype": "channel_join", "user": CAROL, "ts": "1700000502.000100",
                      "text": "<@U0CAROL01> has joined the channel", "channel": ALERTS});
    for event in [replied, with_subtype, broadcast, join] {
        assert!(t.sandbox.deliver_event(event).await.is_acked());
    }
    t.idle().await;
    let incident = inc1(&t);
    assert_eq!(t.app.store.all_incidents().unwrap().len(), 1);
    assert_eq!(incident.alerts.as_ref().unwrap().count, 1);
    assert_eq!(t.app.store.alert_count().unwrap(), 1);
    // The broadcast is a thread message the bot remembers, so it can be pinned.
    assert!(t.app.store.find_thread_message(&channel(ALERTS), "1700000501.000100").unwrap().is_some());
    t.finish();
}
