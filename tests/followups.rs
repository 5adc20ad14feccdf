//! Follow-ups as people make them in Slack (the command, the reaction, the resolved header's
//! form) becoming tickets in the sandbox GitHub and Jira exactly once, kept when the tracker is
//! down, listed, marked done, in the postmortem; and `/incident stats` through the real ingress.

mod common;

use std::sync::Arc;

use chrono::TimeDelta;
use common::*;
use incident_commander::app::clock::ManualClock;
use incident_commander::domain::followup::Ticket;
use incident_commander::domain::ids::IncidentId;
use incident_commander::sandbox::harness::{DatadogPost, Harness, HarnessOptions};
use incident_commander::sandbox::trackers::{Fault, GITHUB_REPO};

fn alert() -> DatadogPost {
    DatadogPost::new("[P2] [Triggered on {service:api-gateway,env:prod}] API p99 latency high", 4242)
        .body("p99 above 800ms")
        .tags(&["team:backend"])
}

fn with_followups(section: &str) -> String {
    format!("{POLICY}\n[followups]\n{section}\n")
}

async fn start(policy: &str) -> Harness {
    let mut options = HarnessOptions::http(policy);
    options.clock = Some(Arc::new(ManualClock::new(t0())));
    Harness::start(options).await
}

fn incident(t: &Harness, n: u64) -> incident_commander::domain::Incident {
    t.app.store.get_incident(IncidentId::new(n).unwrap()).unwrap().unwrap()
}

fn tickets(t: &Harness, n: u64) -> Vec<Ticket> {
    incident(t, n).followups.into_iter().map(|f| f.ticket).collect()
}

#[tokio::test]
async fn github_tickets_from_the_command_the_reaction_and_the_resolved_header() {
    let mut t = start(&with_followups(
        "tracker = \"github\"\ngithub_repo = \"acme/ops\"\nlabels = [\"incident\", \"follow-up\"]",
    ))
    .await;
    let alert_ts = t.post_datadog_alert(ALERTS, &alert()).await;
    t.expect_reply(ALERTS, "INC-1 · SEV2");

    // The command, with an owner mentioned last.
    let answers = t.slash(ALICE, ALERTS, &format!("followup INC-1 alert on connection pool saturation <@{BOB}>")).await;
    assert!(answers.is_empty(), "{answers:?}");
    t.expect_reply(ALERTS, "Follow-up *F-1* recorded: alert on connection pool saturation (owner <@U0BOB0001>). Filing a ticket in GitHub acme/ops");
    let filed = t.expect_reply(ALERTS, "filed for follow-up *F-1*");
    assert!(filed.text.contains(&format!("<https://github.com/{GITHUB_REPO}/issues/1|acme/ops#1>")), "{}", filed.text);
    let issues = t.trackers.issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].title, "[INC-1] alert on connection pool saturation");
    assert_eq!(issues[0].labels, ["incident", "follow-up"]);
    let body = issues[0].body.as_str().unwrap();
    assert!(body.contains("<!-- incident-commander:INC-1:F-1 -->"), "{body}");
    assert!(body.contains("Owner: Slack user U0BOB0001"), "{body}");
    assert!(body.contains("/archives/C0ALERTS1/p"), "the ticket links back to the thread: {body}");
    assert!(matches!(&tickets(&t, 1)[0], Ticket::Filed(f) if f.key == "acme/ops#1"));
    // The incident links the ticket: its header names it.
    let header = incident(&t, 1).slack.header_ts.unwrap();
    let shown = t.sandbox.message(ALERTS, &header).unwrap();
    assert!(
        shown.blocks.to_string().contains("F-1 <https://github.com/acme/ops/issues/1|acme/ops#1>"),
        "{}",
        shown.blocks
    );

    // The reaction on a message in the thread: its text is the work; a second reaction on the
    // same message makes no second follow-up.
    let said = t.say(CAROL, ALERTS, Some(&alert_ts), "we should cap retries in the gateway").await;
    t.react(CAROL, ALERTS, &said, "ticket").await;
    t.expect_reply(ALERTS, "Follow-up *F-2* recorded: we should cap retries in the gateway (no owner yet)");
    t.expect_reply(ALERTS, "acme/ops#2");
    t.react(BOB, ALERTS, &said, "ticket").await;
    let privates: Vec<String> = t.new_privates().into_iter().map(|p| p.text).collect();
    assert!(privates.iter().any(|p| p.contains("already follow-up F-2 of INC-1")), "{privates:?}");
    assert_eq!(t.trackers.issues().len(), 2);

    // Resolve; the postmortem lists both with owners and ticket links.
    t.slash(ALICE, ALERTS, "mitigated INC-1 rolled back").await;
    t.slash(ALICE, ALERTS, "resolve INC-1").await;
    let postmortem = t.expect_reply(ALERTS, "Postmortem draft");
    let text = format!("{} {}", postmortem.text, postmortem.blocks);
    assert!(text.contains("[acme/ops#1](https://github.com/acme/ops/issues/1)"), "{text}");
    assert!(text.contains("owner <@U0BOB0001>"), "{text}");

    // The resolved header offers a follow-up form; what it records is filed too.
    let header_ts = incident(&t, 1).slack.header_ts.unwrap();
    let answers = t.click(BOB, ALERTS, &header_ts, "add_followup").await;
    assert!(answers.is_empty(), "{answers:?}");
    t.submit_followup(BOB, "load-test the gateway at 2x peak", Some(CAROL)).await;
    t.expect_reply(ALERTS, "Follow-up *F-3* recorded: load-test the gateway at 2x peak (owner <@U0CAROL01>)");
    t.expect_reply(ALERTS, "acme/ops#3");
    assert_eq!(incident(&t, 1).followups.len(), 3);

    // Listing and marking done.
    let list = t.slash(DAVE, FRONT, "followups").await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list[0].contains("*F-1* alert on connection pool saturation — <@U0BOB0001> · <https://github.com/acme/ops/issues/1|acme/ops#1>"), "{list:?}");
    assert!(list[0].contains("*F-3*"), "{list:?}");
    t.slash(BOB, ALERTS, "followup INC-1 done F-1").await;
    t.expect_reply(ALERTS, "Follow-up F-1 done");
    let list = t.slash(BOB, ALERTS, "followups INC-1").await;
    assert!(!list[0].contains("F-1*"), "done follow-ups are not open: {list:?}");
    let refused = t.slash(BOB, ALERTS, "followup INC-1 done F-9").await;
    assert_eq!(refused, ["INC-1 has no follow-up F-9. `/incident followups INC-1` lists them."]);
}

#[tokio::test]
async fn a_lost_answer_is_found_on_retry_and_a_tracker_outage_delays_without_losing() {
    let mut t = start(&with_followups("tracker = \"github\"\ngithub_repo = \"acme/ops\"")).await;
    t.post_datadog_alert(ALERTS, &alert()).await;
    t.expect_reply(ALERTS, "INC-1 · SEV2");

    // GitHub makes the issue but the answer never arrives: the retry finds it by its marker.
    t.trackers.inject(&[Fault::LoseAnswer]);
    t.slash(ALICE, ALERTS, "followup INC-1 add a runbook for gateway saturation").await;
    t.expect_reply(ALERTS, "Follow-up *F-1* recorded");
    let delayed = t.expect_reply(ALERTS, "could not be filed yet");
    assert!(delayed.text.contains("GitHub answered 504"), "{}", delayed.text);
    assert!(delayed.text.contains("try again at 10:01 UTC"), "{}", delayed.text);
    assert!(matches!(&tickets(&t, 1)[0], Ticket::Pending { failures: 1, .. }));
    t.advance(TimeDelta::minutes(1)).await;
    t.expect_reply(ALERTS, "acme/ops#1");
    assert_eq!(t.trackers.issues().len(), 1, "exactly one ticket");
    let requests = t.trackers.requests();
    assert_eq!(
        requests,
        ["POST /repos/acme/ops/issues", "GET /repos/acme/ops/issues"],
        "the retry looked before making another"
    );

    // GitHub is down for two attempts: said once, kept, filed on the third.
    t.trackers.inject(&[Fault::Unavailable, Fault::Unavailable]);
    t.slash(ALICE, ALERTS, "followup INC-1 alert on 5xx ratio").await;
    t.expect_reply(ALERTS, "Follow-up *F-2* recorded");
    t.expect_reply(ALERTS, "ticket for follow-up *F-2* could not be filed yet: GitHub answered 503");
    t.advance(TimeDelta::minutes(1)).await;
    assert!(matches!(&tickets(&t, 1)[1], Ticket::Pending { failures: 2, .. }), "{:?}", tickets(&t, 1));
    t.advance(TimeDelta::minutes(2)).await;
    t.expect_reply(ALERTS, "acme/ops#2");
    assert_eq!(t.trackers.issues().len(), 2);
    let timeline: Vec<String> = incident(&t, 1).timeline.into_iter().map(|e| e.text).collect();
    assert!(timeline.iter().any(|e| e.contains("not filed yet (attempt 2)")), "{timeline:#?}");
    // The thread was told once, not at every failed attempt.
    t.finish();
}

#[tokio::test]
async fn jira_tickets_carry_an_atlassian_document_and_are_found_on_retry() {
    let mut t = start(&with_followups(
        "tracker = \"jira\"\njira_project = \"OPS\"\nlabels = [\"postmortem\"]\nemoji = \"memo\"",
    ))
    .await;
    let alert_ts = t.post_datadog_alert(ALERTS, &alert()).await;
    t.expect_reply(ALERTS, "INC-1 · SEV2");
    t.trackers.inject(&[Fault::LoseAnswer]);
    let said = t.say(ALICE, ALERTS, Some(&alert_ts), "add a canary stage before prod").await;
    t.react(BOB, ALERTS, &said, "memo").await;
    t.expect_reply(ALERTS, "Filing a ticket in Jira OPS");
    t.expect_reply(ALERTS, "Jira answered 504");
    t.advance(TimeDelta::minutes(1)).await;
    let filed = t.expect_reply(ALERTS, "filed for follow-up *F-1*");
    assert!(filed.text.contains("/browse/OPS-1|OPS-1>"), "{}", filed.text);
    let issues = t.trackers.issues();
    assert_eq!(issues.len(), 1, "exactly one ticket");
    assert_eq!(issues[0].labels, ["incident-commander", "postmortem"]);
    let doc = &issues[0].body;
    assert_eq!((doc["type"].as_str(), doc["version"].as_i64()), (Some("doc"), Some(1)));
    let text = doc.to_string();
    assert!(text.contains("incident-commander:INC-1:F-1"), "{text}");
    assert!(text.contains("\"type\":\"link\""), "the thread is a link: {text}");
    assert_eq!(t.trackers.requests(), ["POST /rest/api/3/issue", "GET /rest/api/3/search/jql"]);
}

#[tokio::test]
async fn without_a_tracker_follow_ups_stay_on_the_timeline() {
    let mut t = start(POLICY).await;
    t.post_datadog_alert(ALERTS, &alert()).await;
    t.expect_reply(ALERTS, "INC-1 · SEV2");
    t.slash(ALICE, ALERTS, "followup INC-1 document the failover").await;
    t.expect_reply(ALERTS, "No tracker is configured");
    assert_eq!(tickets(&t, 1), [Ticket::Untracked]);
    assert!(t.trackers.requests().is_empty());
    let refused = t.slash(ALICE, ALERTS, "followup INC-1").await;
    assert_eq!(
        refused,
        ["`followup` needs more: `/incident followup &lt;text&gt; [@owner] | followup done F-&lt;n&gt;`."]
    );
}

#[tokio::test]
async fn stats_answer_with_medians_slowest_and_what_is_owed() {
    let mut t = start(POLICY).await;
    // INC-1: acknowledged after 2 minutes, mitigated after 10, resolved after 30, no root cause.
    t.post_datadog_alert(ALERTS, &alert()).await;
    t.expect_reply(ALERTS, "INC-1 · SEV2");
    t.advance(TimeDelta::minutes(2)).await;
    t.slash(ALICE, ALERTS, "ack INC-1").await;
    t.advance(TimeDelta::minutes(8)).await;
    t.slash(ALICE, ALERTS, "mitigated INC-1").await;
    t.advance(TimeDelta::minutes(20)).await;
    t.slash(ALICE, ALERTS, "resolve INC-1").await;
    // INC-2: declared by hand for frontend, still open, with a follow-up.
    t.slash(DAVE, FRONT, "declare checkout button broken sev 3 team frontend").await;
    t.slash(DAVE, FRONT, "followup INC-2 add a synthetic check for checkout").await;
    t.advance(TimeDelta::hours(1)).await;

    let answer = t.slash(SRE, ALERTS, "stats").await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    let s = &answer[0];
    assert!(s.contains("*Incident stats · all teams · last 30d*"), "{s}");
    assert!(s.contains("2 incidents · SEV2: 1 · SEV3: 1"), "{s}");
    assert!(s.contains("SEV2  1          2m 00s / 2m 00s (1)  10m 00s / 10m 00s (1)  30m 00s / 30m 00s (1)  —"), "{s}");
    assert!(
        s.contains("INC-2> SEV3 · frontend · checkout button broken — open for 1h 00m")
            || s.contains("INC-2 SEV3 · frontend · checkout button broken — open for 1h 00m"),
        "{s}"
    );
    assert!(s.contains("*Without a root cause:* INC-1"), "{s}");
    assert!(s.contains("*With open follow-ups:* INC-2 (1)"), "{s}");

    let backend = t.slash(SRE, ALERTS, "stats backend since 7d").await;
    assert!(backend[0].contains("team backend · last 7d") && backend[0].contains("1 incidents"), "{backend:?}");
    let refused = t.slash(SRE, ALERTS, "stats nosuchteam").await;
    assert!(refused[0].starts_with("There is no team `nosuchteam`."), "{refused:?}");
    let refused = t.slash(SRE, ALERTS, "stats since soon").await;
    assert_eq!(refused, ["`soon` is not a window: use e.g. `30d`, `2w`, `12h`"]);

    // The same numbers in /metrics, Prometheus-style.
    let metrics = reqwest::get(format!("http://{}/metrics", t.app.addr)).await.unwrap().text().await.unwrap();
    for line in [
        "incident_commander_time_to_acknowledge_seconds_sum{severity=\"SEV2\",team=\"backend\"} 120.0",
        "incident_commander_time_to_acknowledge_seconds_count{severity=\"SEV2\",team=\"backend\"} 1",
        "incident_commander_time_to_mitigate_seconds_bucket{le=\"600.0\",severity=\"SEV2\",team=\"backend\"} 1",
        "incident_commander_time_to_resolve_seconds_sum{severity=\"SEV2\",team=\"backend\"} 1800.0",
        "incident_commander_incidents_total{severity=\"SEV2\"} 1",
        "incident_commander_incidents_total{severity=\"SEV3\"} 1",
        "incident_commander_alerts_total{source=\"datadog_slack\"} 1",
        "incident_commander_api_calls_total{method=\"chat.postMessage\",result=\"ok\"}",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // Every incident as CSV, from the stopped bot's data.
    t.ack_all();
    let (dir, _guard) = t.stop().await;
    let bin = env!("CARGO_BIN_EXE_incident-commander");
    let out = std::process::Command::new(bin)
        .args(["export", "--all", "--format", "csv", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = csv.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[0].starts_with("id,title,team,severity,status,source,alerts,opened_at"), "{csv}");
    assert!(rows[1].starts_with("INC-1,API p99 latency high,backend,SEV2,Resolved,datadog_slack,1,"), "{csv}");
    assert!(rows[1].contains(",120,600,1800,,"), "seconds to acknowledge, mitigate, resolve, root cause: {csv}");
    assert!(rows[2].starts_with("INC-2,checkout button broken,frontend,SEV3,"), "{csv}");
    assert!(rows[2].ends_with(",1,1,"), "one open follow-up, no ticket: {csv}");
    let out =
        std::process::Command::new(bin).args(["export", "--format", "csv", "--data-dir"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an incident or --all is required");
}
