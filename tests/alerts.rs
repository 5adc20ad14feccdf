//! Alert ingestion through the running bot against the sandbox: Datadog's Slack app, webhooks,
//! dedup and folding, flapping, storms, escaping.

mod common;

use common::*;
use incident_commander::sandbox::harness::{DatadogPost, Harness, HarnessOptions};
use incident_commander::sandbox::slack::{self};
use serde_json::{Value, json};

fn latency(transition: &str) -> DatadogPost {
    DatadogPost::new(&format!("[P2] [{transition} on {{service:api-gateway,env:prod}}] API p99 latency high"), 4242)
        .body("p99 latency above 800ms for 5 minutes")
        .tags(&["team:backend", "service:api-gateway"])
}

fn header_of(t: &Harness, channel: &str, thread: &str) -> incident_commander::sandbox::slack::StoredMessage {
    t.sandbox
        .thread(channel, thread)
        .into_iter()
        .find(|m| m.bot_id.as_deref() == Some(slack::BOT_ID) && m.text.starts_with("INC-"))
        .expect("an incident header in the thread")
}

#[tokio::test]
async fn a_datadog_alert_in_slack_opens_an_incident_in_its_thread() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    let ts = t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
    let header = t.expect_reply(ALERTS, "INC-1 · SEV2 · API p99 latency high");
    assert_eq!(header.thread_ts.as_deref(), Some(ts.as_str()), "the header is a reply on the alert message");
    let blocks = header.blocks.to_string();
    assert!(blocks.contains("priority P2 (severity rule 2)"), "the severity reason is shown");
    assert!(
        blocks.contains(&user(ALICE).mention()) && blocks.contains(&user(BOB).mention()),
        "commander and investigator"
    );
    assert!(blocks.contains("https://app.datadoghq.com/monitors/4242"), "the monitor link");
    // Roles come from the rotation, so the role buttons take over (after a confirmation naming the
    // holder); Resolve waits for mitigation, so it is not offered yet.
    for button in ["take_over_commander", "take_over_investigator", "mitigated", "root_cause_found", "set_severity"] {
        assert!(blocks.contains(button), "{button} control");
    }
    for refusing in ["\"take_command\"", "\"investigate\"", "\"resolve\""] {
        assert!(!blocks.contains(refusing), "no {refusing} button that could only refuse: {blocks}");
    }
    assert!(
        blocks.contains(&format!("{} is the commander of INC-1 (from the rotation)", user(ALICE).mention())),
        "the take-over asks first, naming the holder: {blocks}"
    );
    let incident = t.app.store.get_incident(incident_commander::domain::IncidentId::FIRST).unwrap().unwrap();
    assert_eq!(incident.slack.thread_ts.as_deref(), Some(ts.as_str()));
    assert!(incident.slack.header_ts.is_some(), "the bot learned where its header is");
    t.finish();
}

#[tokio::test]
async fn repeats_fold_with_a_reaction_and_transitions_are_noted_once() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    let first = t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
    t.expect_reply(ALERTS, "INC-1 · SEV2");
    // Datadog re-notifies: a new message for the same monitor.
    let again = t.post_datadog_alert(ALERTS, &latency("Re-Triggered")).await;
    let dup = t.sandbox.message(ALERTS, &again).unwrap();
    assert_eq!(
        dup.reactions,
        vec![("repeat".to_string(), vec![slack::BOT_USER_ID.to_string()])],
        "a reaction, not a thread"
    );
    assert!(t.sandbox.thread(ALERTS, &again).len() == 1, "no reply thread on the duplicate");
    let note = t.expect_reply(ALERTS, "now *Re-Triggered*");
    assert_eq!(note.thread_ts.as_deref(), Some(first.as_str()), "the change is noted in the incident's thread");
    let again2 = t.post_datadog_alert(ALERTS, &latency("Re-Triggered")).await;
    assert_eq!(t.sandbox.message(ALERTS, &again2).unwrap().reactions.len(), 1);
    // Recovery is noted once and does not resolve.
    t.post_datadog_alert(ALERTS, &latency("Recovered")).await;
    t.expect_reply(ALERTS, "The alert recovered");
    t.post_datadog_alert(ALERTS, &latency("Recovered")).await;
    let header = header_of(&t, ALERTS, &first);
    assert!(
        header.blocks.to_string().contains("*Alerts*\\n5 · last Recovered"),
        "count and last state edited in place"
    );
    assert!(header.edits >= 1);
    let incident = t.app.store.get_incident(incident_commander::domain::IncidentId::FIRST).unwrap().unwrap();
    assert_eq!(incident.status, incident_commander::domain::Status::Open, "recovery is the commander's call");
    assert!(t.app.store.open_incidents().unwrap().len() == 1, "still one incident");
    assert_eq!(t.app.store.alert_count().unwrap(), 5, "every alert is logged");
    t.finish();
}

#[tokio::test]
async fn an_edited_alert_updates_it_and_never_opens_a_second_incident() {
    let mut t = Harness::start(HarnessOptions::socket(POLICY)).await;
    let ts = t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
    t.expect_reply(ALERTS, "INC-1");
    t.edit_datadog_alert(ALERTS, &ts, &latency("Triggered").body("edited body")).await;
    t.edit_datadog_alert(ALERTS, &ts, &latency("Recovered")).await;
    t.expect_reply(ALERTS, "The alert recovered");
    let incidents = t.app.store.all_incidents().unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].alerts.as_ref().unwrap().count, 1, "edits are not new alerts");
    t.finish();
}

#[tokio::test]
async fn people_thread_replies_and_unknown_bots_are_not_alerts() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    t.say(ALICE, ALERTS, None, "[Triggered] someone typed an alert-looking line").await;
    let (_, r) = t
        .sandbox
        .post_as_bot(
            "B0UNKNOWN1",
            "A0UNKNOWN1",
            ALERTS,
            latency("Triggered")
                .content()
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.remove("bot_profile");
                    o.insert("username".into(), json!("Some CI"));
                    Value::Object(o)
                })
                .unwrap(),
        )
        .await;
    assert!(r.is_acked());
    t.idle().await;
    // A configured alert bot is an alert source.
    assert!(t.app.store.all_incidents().unwrap().is_empty(), "no incident from a person or an unlisted bot");
    t.finish();
}

#[tokio::test]
async fn configured_alert_bots_count_and_alert_text_is_escaped() {
    let policy =
        POLICY.replace("responders = [\"U0SRE0001\"]", "responders = [\"U0SRE0001\"]\nalert_bots = [\"B0OTHERBOT\"]");
    let mut t = Harness::start(HarnessOptions::http(&policy)).await;
    let hostile = json!({"text": "[Triggered] <!channel> Disk full on <@U0ALICE01> see <https://evil.example|this>", "username": "ci-alerts"});
    let (ts, r) = t.sandbox.post_as_bot("B0OTHERBOT", "A0OTHER001", ALERTS, hostile).await;
    assert!(r.is_acked());
    t.idle().await;
    let header = t.expect_reply(ALERTS, "INC-1");
    assert_eq!(header.thread_ts.as_deref(), Some(ts.as_str()));
    let posted = format!("{} {}", header.text, header.blocks);
    assert!(!posted.contains("<!channel>"), "no broadcast: {posted}");
    assert!(!posted.contains("<@U0ALICE01> see"), "no forged mention from the alert");
    assert!(!posted.contains("<https://evil.example"), "no link from the alert");
    assert!(posted.contains("&lt;!channel&gt;"), "shown, not executed");
    t.finish();
}

fn alertmanager_body(alerts: &[(&str, &str, &str)]) -> Value {
    alertmanager_body_at(alerts, 58)
}

/// Alerts that started at 09:`minute` (a new firing has a new start).
fn alertmanager_body_at(alerts: &[(&str, &str, &str)], minute: u32) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "incident-commander", "groupLabels": {}, "commonLabels": {"team": "frontend"}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts.iter().map(|(fp, status, service)| json!({
            "status": status,
            "labels": {"alertname": "HighErrorRate", "service": service, "severity": "critical", "team": "frontend"},
            "annotations": {"summary": format!("{service} 5xx above 5%")},
            "startsAt": format!("2026-11-04T09:{minute:02}:00Z"),
            "endsAt": if *status == "resolved" { format!("2026-11-04T10:{minute:02}:30Z") } else { "0001-01-01T00:00:00Z".to_string() },
            "generatorURL": "http://prometheus.example/graph", "fingerprint": fp,
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn alertmanager_webhook_opens_one_incident_per_fingerprint_in_the_team_channel() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    let body = alertmanager_body(&[("aaa111", "firing", "web-shop"), ("bbb222", "firing", "web-cart")]);
    let (status, answer) = t.webhook("alertmanager", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    let root = t.expect_reply(FRONT, "*INC-1* — HighErrorRate");
    assert!(root.text.contains("(Alertmanager)"), "the root names the source: {}", root.text);
    assert!(!root.text.contains("SEV"), "severity lives in the header, which stays current: {}", root.text);
    let header = t.expect_reply(FRONT, "INC-1 · SEV1 · HighErrorRate: web-shop 5xx above 5%");
    assert_eq!(header.thread_ts.as_deref(), Some(root.ts.as_str()), "the header threads under the bot's root message");
    assert!(header.blocks.to_string().contains(&user(DAVE).mention()), "frontend's primary commands");
    t.expect_reply(FRONT, "*INC-2* —");
    t.expect_reply(FRONT, "INC-2 · SEV1 · HighErrorRate: web-cart");
    // Alertmanager retries the same delivery: nothing new.
    let (status, answer) = t.webhook("alertmanager", &body).await;
    assert_eq!((status, answer["accepted"].clone(), answer["duplicates"].clone()), (200, json!(0), json!(2)));
    // One alert resolves: folded into its incident, noted once.
    let (status, _) = t.webhook("alertmanager", &alertmanager_body(&[("aaa111", "resolved", "web-shop")])).await;
    assert_eq!(status, 200);
    t.expect_reply(FRONT, "The alert recovered");
    assert_eq!(t.app.store.open_incidents().unwrap().len(), 2);
    // Critical alerts are SEV1 here: each incident also got its dedicated channel.
    t.expect_reply(FRONT, "Dedicated channel: <#");
    t.expect_reply(FRONT, "Dedicated channel: <#");
    for incident in t.app.store.open_incidents().unwrap() {
        let channel = incident.slack.incident_channel.expect("a dedicated channel");
        t.expect_reply(channel.as_str(), &format!("This channel is for *{}", incident.id));
    }
    t.finish();
}

#[tokio::test]
async fn datadog_and_grafana_webhooks_open_incidents() {
    let mut t = Harness::start(HarnessOptions::socket(POLICY)).await;
    let datadog = json!({
        "id": "8306082202796025694", "last_updated": "1759343824000", "event_type": "query_alert_monitor",
        "title": "[P3] [Triggered on {service:api-payments,env:prod}] Payments queue backlog",
        "date": "1759343824000", "org": {"id": "1", "name": "acme"},
        "body": "%%%\nBacklog above 10k\n\n[[Monitor Status](https://app.datadoghq.com/monitors/5150?from_ts=1)]\n%%%",
    });
    let (status, answer) = t.webhook("datadog", &datadog).await;
    assert_eq!(status, 200, "{answer}");
    t.expect_reply(ALERTS, "*INC-1* — Payments queue backlog (Datadog webhook)");
    t.expect_reply(ALERTS, "INC-1 · SEV3 · Payments queue backlog");
    let grafana = json!({
        "receiver": "ic", "status": "firing", "orgId": 1, "state": "alerting", "version": "1", "groupKey": "g",
        "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull", "team": "frontend", "severity": "warning"},
                    "annotations": {"summary": "disk 95%"}, "startsAt": "2026-11-04T09:59:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": "g1"}]
    });
    let (status, _) = t.webhook("grafana", &grafana).await;
    assert_eq!(status, 200);
    t.expect_reply(FRONT, "*INC-2* — DiskFull");
    t.expect_reply(FRONT, "INC-2 · SEV3 · DiskFull: disk 95%");
    t.finish();
}

#[tokio::test]
async fn webhooks_refuse_missing_tokens_and_unreadable_bodies() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    let body = alertmanager_body(&[("aaa111", "firing", "web-shop")]);
    let (status, answer) = t.webhook_with_token("alertmanager", &body, None).await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("Authorization: Bearer"));
    let (status, answer) = t.webhook_with_token("alertmanager", &body, Some("guess")).await;
    assert_eq!((status, answer["error"].as_str().unwrap()), (401, "wrong webhook token"));
    let (status, answer) = t.webhook("datadog", &json!({"body": "no title"})).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("$EVENT_TITLE"), "{answer}");
    let (status, answer) = t.webhook("alertmanager", &json!({"version": "4", "alerts": []})).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("no alerts"));
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://{}/webhooks/grafana", t.app.addr))
        .bearer_auth(incident_commander::sandbox::harness::WEBHOOK_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Over the 1 MiB limit: refused before it is read whole.
    let r = client
        .post(format!("http://{}/webhooks/grafana", t.app.addr))
        .bearer_auth(incident_commander::sandbox::harness::WEBHOOK_TOKEN)
        .body(format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    t.idle().await;
    assert!(t.app.store.all_incidents().unwrap().is_empty());
    t.finish();
}

#[tokio::test]
async fn a_flapping_monitor_is_noted_once() {
    let mut t = Harness::start(HarnessOptions::http(POLICY)).await;
    t.post_datadog_alert(ALERTS, &latency("Triggered")).await;
    t.expect_reply(ALERTS, "INC-1");
    for i in 0..8 {
        let transition = if i % 2 == 0 { "Recovered" } else { "Re-Triggered" };
        t.post_datadog_alert(ALERTS, &latency(transition)).await;
    }
    t.expect_reply(ALERTS, "The alert recovered");
    t.expect_reply(ALERTS, "now *Re-Triggered*");
    t.expect_reply(ALERTS, "The alert recovered");
    t.expect_reply(ALERTS, "flapping");
    t.finish();
}

#[tokio::test]
async fn a_storm_is_summarised_in_one_message_and_every_alert_is_kept() {
    let policy = format!("{POLICY}\n[alerts.storm]\ncount = 5\nwindow = \"1m\"\n");
    let mut t = Harness::start(HarnessOptions::http(&policy)).await;
    let services = ["web-a", "web-b", "web-c"];
    for round in 0..10 {
        for (i, service) in services.iter().enumerate() {
            let status = if round % 2 == 1 { "resolved" } else { "firing" };
            let fp = format!("storm{i}");
            let body = alertmanager_body_at(&[(fp.as_str(), status, service)], round);
            let (s, _) = t
                .webhook_with_token("alertmanager", &body, Some(incident_commander::sandbox::harness::WEBHOOK_TOKEN))
                .await;
            assert_eq!(s, 200);
        }
    }
    t.idle().await;
    assert_eq!(t.app.store.alert_count().unwrap(), 30, "every alert is stored");
    assert_eq!(t.app.store.all_incidents().unwrap().len(), 3, "every fingerprint has its incident");
    for incident in t.app.store.all_incidents().unwrap() {
        assert_eq!(incident.alerts.unwrap().count, 10, "{} counts all its alerts", incident.id);
    }
    let summaries: Vec<_> = t.bot_messages().into_iter().filter(|m| m.text.contains("Alert storm")).collect();
    assert_eq!(summaries.len(), 1, "one summary per storm");
    let roots =
        t.bot_messages().into_iter().filter(|m| m.text.contains("Severity, roles and updates in the thread")).count();
    let headers = t.bot_messages().into_iter().filter(|m| m.text.starts_with("INC-")).count();
    assert_eq!((roots, headers), (3, 3), "one root and one header per incident, never twice");
    let notes = |t: &Harness| {
        t.bot_messages()
            .into_iter()
            .filter(|m| m.text.contains("The alert recovered") || m.text.contains("now *"))
            .count()
    };
    // The sixth alert starts the storm; the two recoveries before it were noted as usual.
    assert_eq!(notes(&t), 2, "nothing per alert once the storm is on");
    let header_edits = t.sandbox.calls_to("chat.update").iter().filter(|c| c.params["ts"] != summaries[0].ts).count();
    // Per incident at most: a fold before the storm, the storm taking hold, its dedicated channel.
    assert!(header_edits <= 3 * 3, "headers are refreshed now and then, not per alert ({header_edits})");

    // A minute without alerts: the storm is over. The summary gets its last edit and each thread
    // one catch-up note.
    t.advance(mins(2)).await;
    let summary = t.sandbox.message(&summaries[0].channel, &summaries[0].ts).expect("the summary");
    assert!(
        summary.text.contains("*Alert storm over*") && summary.text.contains("25 alerts from 3 monitors"),
        "{}",
        summary.text
    );
    let catch_ups: Vec<_> =
        t.bot_messages().into_iter().filter(|m| m.text.contains("The alert storm is over")).collect();
    assert_eq!(catch_ups.len(), 3, "one catch-up note per thread");
    assert!(
        catch_ups.iter().any(|m| m.text.contains("8 more alerts arrived with 8 state changes")),
        "{:#?}",
        catch_ups.iter().map(|m| &m.text).collect::<Vec<_>>()
    );
    for incident in t.app.store.all_incidents().unwrap() {
        assert!(incident.held.is_none(), "{} caught up", incident.id);
        assert!(
            incident.timeline.iter().any(|e| e.kind == incident_commander::domain::incident::EntryKind::StormSummary)
        );
    }
    t.ack_all();
    t.finish();
}
