//! The incident workflow driven as people in Slack drive it: buttons, reactions, slash commands,
//! mentions, timers, restarts, against the running bot and the sandbox.

mod common;

use std::sync::Arc;

use chrono::TimeDelta;
use common::*;
use incident_commander::app::clock::ManualClock;
use incident_commander::domain::ids::{IncidentId, Severity};
use incident_commander::domain::incident::{EntryKind, RootCause, Status};
use incident_commander::sandbox::harness::{DatadogPost, Harness, HarnessOptions};
use incident_commander::sandbox::slack::{self, StoredMessage};

fn alert(transition: &str, priority: u8) -> DatadogPost {
    DatadogPost::new(
        &format!("[P{priority}] [{transition} on {{service:api-gateway,env:prod}}] API p99 latency high"),
        4242,
    )
    .body("p99 above 800ms")
    .tags(&["team:backend"])
}

fn inc(n: u64) -> IncidentId {
    IncidentId::new(n).unwrap()
}

fn header(t: &Harness, id: IncidentId) -> StoredMessage {
    let incident = t.app.store.get_incident(id).unwrap().unwrap();
    let channel = incident.slack.channel.unwrap();
    t.sandbox.message(channel.as_str(), incident.slack.header_ts.as_deref().unwrap()).unwrap()
}

fn incident(t: &Harness, id: IncidentId) -> incident_commander::domain::Incident {
    t.app.store.get_incident(id).unwrap().unwrap()
}

/// A fresh harness on a manual clock at Wednesday 2026-11-04 10:00 UTC (Alice primary, Bob next).
async fn start(policy: &str) -> (Harness, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let mut options = HarnessOptions::http(policy);
    options.clock = Some(clock.clone());
    (Harness::start(options).await, clock)
}

#[tokio::test]
async fn roles_tracks_buttons_reactions_and_commands_from_alert_to_postmortem() {
    let (mut t, _) = start(POLICY).await;
    let alert_ts = t.post_datadog_alert(ALERTS, &alert("Triggered", 2)).await;
    let h = t.expect_reply(ALERTS, "INC-1 · SEV2");

    // Bob, assigned by the rotation, confirms the role with the header's button; a second click
    // is refused.
    let answers = t.click(BOB, ALERTS, &h.ts, "take_over_investigator").await;
    assert!(answers.is_empty(), "{answers:?}");
    t.expect_reply(ALERTS, "confirmed the investigator role");
    let answers = t.click(BOB, ALERTS, &h.ts, "take_over_investigator").await;
    assert_eq!(answers, [format!("{} is already the investigator of INC-1.", user(BOB).mention())]);
    // Carol takes command over from Alice with the button (Slack asked her first), and the thread
    // is told.
    let stale_header = t.sandbox.message(ALERTS, &h.ts).unwrap();
    let answers = t.click(CAROL, ALERTS, &h.ts, "take_over_commander").await;
    assert!(answers.is_empty(), "{answers:?}");
    t.expect_reply(ALERTS, "took over as commander from");
    assert_eq!(incident(&t, inc(1)).commander, Some(user(CAROL)));
    // A take-over clicked on a header that still showed Alice does not silently replace Carol.
    let stale = stale_header.blocks.as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap()["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action_id"] == "take_over_commander")
        .unwrap()
        .clone();
    assert_eq!(stale["value"], format!("INC-1 {ALICE}"), "the button names the holder it takes over from");
    assert!(t.sandbox.click(SRE, ALERTS, &h.ts, stale).await.is_acked());
    t.idle().await;
    let answers: Vec<String> = t.new_privates().into_iter().map(|p| p.text).collect();
    assert_eq!(
        answers,
        [format!(
            "{} took the commander role of INC-1 meanwhile. To take over from them, use `/incident commander @me INC-1`.",
            user(CAROL).mention()
        )]
    );
    // Taking over by command works as well, and names the incident when refused.
    let answers = t.slash(ALICE, ALERTS, "commander INC-1").await;
    assert_eq!(
        answers,
        [format!(
            "{} is already the commander of INC-1. To take over, use `/incident commander @me INC-1`.",
            user(CAROL).mention()
        )]
    );
    // Alice (no role now) reacts :mag: on the header: Bob holds it.
    t.react(ALICE, ALERTS, &h.ts, "mag").await;
    assert!(t.new_privates()[0].text.contains("already the investigator"));
    // Bob cannot become commander while investigating.
    let answers = t.slash(BOB, ALERTS, "commander @me INC-1").await;
    assert!(answers[0].contains("one person cannot be both commander and investigator"), "{answers:?}");

    // Acknowledge by reaction on the alert message itself.
    t.react(ALICE, ALERTS, &alert_ts, "eyes").await;
    t.expect_reply(ALERTS, "acknowledged. Escalation stopped");
    assert_eq!(incident(&t, inc(1)).status, Status::Acknowledged);

    // A status update by command, in the thread by mention.
    t.mention(CAROL, ALERTS, Some(&alert_ts), "status rolling back deploy 4512").await;
    t.expect_reply(ALERTS, "*Status update* from");

    // Resolve before mitigation is not offered as a button, and refused by command with the way on.
    let header = t.sandbox.message(ALERTS, &h.ts).unwrap();
    assert!(!header.blocks.to_string().contains("\"resolve\""), "no Resolve button before mitigation");
    let answers = t.slash(CAROL, ALERTS, "resolve INC-1").await;
    assert!(
        answers[0].contains("not mitigated yet") && answers[0].contains("`/incident mitigated INC-1`"),
        "{answers:?}"
    );
    // Mitigated by button: the investigator is asked for the root cause.
    t.click(CAROL, ALERTS, &h.ts, "mitigated").await;
    let m = t.expect_reply(ALERTS, "*Mitigated* by");
    assert!(m.text.contains(&user(BOB).mention()) && m.text.contains("/incident rootcause"));

    // Root cause by the button's modal.
    t.click(BOB, ALERTS, &h.ts, "root_cause_found").await;
    t.submit_root_cause(BOB, "connection pool exhausted after the 10:02 config change").await;
    t.expect_reply(ALERTS, "*Root cause found* by");
    assert!(matches!(incident(&t, inc(1)).root_cause, RootCause::Found { .. }));

    // A pin copies a thread message to the timeline.
    let note_ts = t.say(BOB, ALERTS, Some(&alert_ts), "db cpu hit 100% at 10:03").await;
    t.react(ALICE, ALERTS, &note_ts, "pushpin").await;
    let timeline = incident(&t, inc(1)).timeline;
    assert!(timeline.iter().any(|e| e.kind == EntryKind::Pinned && e.text.contains("db cpu hit 100% at 10:03")));

    // The timeline, privately.
    let answers = t.slash(ALICE, ALERTS, "timeline INC-1").await;
    for needle in [
        "Opened as SEV2",
        "took over as commander",
        "Acknowledged",
        "rolling back",
        "Mitigated",
        "Root cause found",
        "Pinned",
    ] {
        assert!(answers[0].contains(needle), "timeline lacks {needle}: {}", answers[0]);
    }

    // Resolve: the postmortem draft arrives in the thread.
    t.click(CAROL, ALERTS, &h.ts, "resolve").await;
    t.expect_reply(ALERTS, "*INC-1 resolved*");
    let pm = t.expect_reply(ALERTS, "Postmortem draft for INC-1");
    let md = pm.blocks.to_string();
    assert!(md.contains("connection pool exhausted") && md.contains("Time to acknowledge"));
    // The header was edited in place, never re-posted.
    let headers: Vec<_> = t.bot_messages().into_iter().filter(|m| m.text.starts_with("INC-1 ·")).collect();
    assert_eq!(headers.len(), 1);
    assert!(headers[0].edits >= 5);
    assert!(headers[0].text.contains("Resolved"));

    // Reopen by command.
    t.slash(CAROL, ALERTS, "reopen INC-1").await;
    t.expect_reply(ALERTS, "Reopened by");
    assert_eq!(incident(&t, inc(1)).status, Status::Reopened);
    t.finish();
}

#[tokio::test]
async fn outsiders_are_refused_and_responders_may_act() {
    let (mut t, _) = start(POLICY).await;
    t.post_datadog_alert(ALERTS, &alert("Triggered", 2)).await;
    t.expect_reply(ALERTS, "INC-1");
    let answers = t.slash(OUTSIDER, ALERTS, "ack INC-1").await;
    assert!(answers[0].contains("may not change INC-1") && answers[0].contains("slack.responders"), "{answers:?}");
    assert_eq!(incident(&t, inc(1)).status, Status::Open);
    let answers = t.slash(SRE, ALERTS, "sev 3 only one region INC-1").await;
    assert!(answers.is_empty(), "{answers:?}");
    t.expect_reply(ALERTS, "SEV2 → *SEV3*: only one region");
    assert_eq!(incident(&t, inc(1)).severity, Severity::Sev3);
    t.finish();
}

#[tokio::test]
async fn sev1_gets_a_channel_linked_both_ways_where_commands_need_no_id() {
    let (mut t, _) = start(POLICY).await;
    let answers = t.slash(DAVE, FRONT, "declare Checkout page blank sev 1 team frontend").await;
    assert_eq!(answers, ["Declared INC-1 · SEV1: Checkout page blank"]);
    let root = t.expect_reply(FRONT, "*INC-1* — Checkout page blank (declared by <@");
    t.expect_reply(FRONT, "INC-1 · SEV1 · Checkout page blank");
    let created = t.expect_reply(FRONT, "Dedicated channel: <#");
    assert_eq!(created.thread_ts.as_deref(), Some(root.ts.as_str()));
    let channel = incident(&t, inc(1)).slack.incident_channel.expect("the channel was recorded");
    let info = t.sandbox.channels().into_iter().find(|c| c.id == channel.as_str()).unwrap();
    assert_eq!(info.name, "inc-1-checkout-page-blank");
    assert!(
        info.members.contains(&DAVE.to_string()) && info.members.contains(&ERIN.to_string()),
        "role holders invited"
    );
    let intro = t.expect_reply(channel.as_str(), "This channel is for *INC-1");
    assert!(
        intro.text.contains(&format!("https://sandbox.slack.com/archives/{FRONT}/p{}", root.ts.replace('.', ""))),
        "{}",
        intro.text
    );
    assert!(header(&t, inc(1)).blocks.to_string().contains(&format!("<#{channel}>")), "the header shows the channel");
    // In the incident channel the incident is implied.
    let answers = t.slash(DAVE, channel.as_str(), "ack").await;
    assert!(answers.is_empty(), "{answers:?}");
    t.expect_reply(FRONT, "acknowledged");
    // A new role holder is invited.
    t.slash(ERIN, channel.as_str(), "investigator <@U0SRE0001|sre>").await;
    t.expect_reply(FRONT, "handed the investigator role");
    let info = t.sandbox.channels().into_iter().find(|c| c.id == channel.as_str()).unwrap();
    assert!(info.members.contains(&SRE.to_string()));
    t.finish();
}

#[tokio::test]
async fn the_callers_single_incident_is_implied_and_ambiguity_lists_candidates() {
    let (mut t, _) = start(POLICY).await;
    t.post_datadog_alert(ALERTS, &alert("Triggered", 2)).await;
    let answers = t.slash(ALICE, ALERTS, "ack").await;
    assert!(answers.is_empty());
    t.expect_reply(ALERTS, "INC-1");
    t.expect_reply(ALERTS, "acknowledged");
    t.post_datadog_alert(ALERTS, &DatadogPost::new("[P3] [Triggered] Disk almost full", 5150).tags(&["team:backend"]))
        .await;
    t.expect_reply(ALERTS, "INC-2");
    let answers = t.slash(ALICE, ALERTS, "status investigating").await;
    assert_eq!(
        answers,
        [
            "You are on several open incidents: `INC-1` (API p99 latency high), `INC-2` (Disk almost full). Add the id to the command, e.g. `/incident status investigating INC-1`."
        ],
        "the example is the command Alice typed"
    );
    // Someone on neither incident is told they are open, not that they are on them.
    let answers = t.slash(SRE, ALERTS, "ack").await;
    assert!(answers[0].starts_with("Several incidents are open: `INC-1`"), "{answers:?}");
    assert!(answers[0].ends_with("e.g. `/incident ack INC-1`."), "{answers:?}");
    let answers = t.slash(ALICE, ALERTS, "list mine").await;
    assert!(answers[0].contains("INC-1") && answers[0].contains("INC-2"));
    let answers = t.slash(BOB, ALERTS, "oncall").await;
    assert!(
        answers[0].contains("*backend*: <@U0ALICE01> (commander)") && answers[0].contains("*frontend*"),
        "{answers:?}"
    );
    t.finish();
}

#[tokio::test]
async fn a_warn_opens_nothing_until_someone_reacts() {
    let (mut t, _) = start(POLICY).await;
    let ts = t.post_datadog_alert(ALERTS, &alert("Warn", 3)).await;
    assert!(t.app.store.all_incidents().unwrap().is_empty(), "Warn is not in alerts.open_on");
    t.react(CAROL, ALERTS, &ts, "rotating_light").await;
    let h = t.expect_reply(ALERTS, "INC-1 · SEV3");
    assert_eq!(h.thread_ts.as_deref(), Some(ts.as_str()));
    assert!(incident(&t, inc(1)).timeline.iter().any(|e| e.text.contains("Opened from a Warn alert by")));
    t.finish();
}

#[tokio::test]
async fn one_member_team_asks_for_a_volunteer() {
    let (mut t, _) = start(POLICY).await;
    let post = DatadogPost::new("[P3] [Triggered] Nightly batch failed", 7).tags(&["team:solo"]);
    t.post_datadog_alert(ALERTS, &post).await;
    let h = t.expect_reply(ALERTS, "INC-1 · SEV3");
    t.expect_reply(ALERTS, "has no investigator yet");
    t.click(SRE, ALERTS, &h.ts, "investigate").await;
    t.expect_reply(ALERTS, "took the investigator role");
    assert_eq!(incident(&t, inc(1)).investigator, Some(user(SRE)));
    t.finish();
}

#[tokio::test]
async fn rules_raise_severity_but_never_replace_a_persons_choice() {
    let (mut t, _) = start(POLICY).await;
    t.post_datadog_alert(ALERTS, &alert("Triggered", 3)).await;
    t.expect_reply(ALERTS, "INC-1 · SEV3");
    // A worse alert raises a rules-set severity by itself.
    t.post_datadog_alert(ALERTS, &alert("Re-Triggered", 2)).await;
    t.expect_reply(ALERTS, "SEV3 → *SEV2*");
    t.expect_reply(ALERTS, "now *Re-Triggered*");
    // A person lowers it; the next P2 alert only suggests.
    let h = header(&t, inc(1));
    t.select_severity(ALICE, ALERTS, &h.ts, 4).await;
    t.expect_reply(ALERTS, "SEV2 → *SEV4*");
    t.post_datadog_alert(ALERTS, &alert("Triggered", 2)).await;
    t.expect_reply(ALERTS, "now *Triggered*");
    let suggestion = t.expect_reply(ALERTS, "The rules now suggest *SEV2*");
    assert_eq!(incident(&t, inc(1)).severity, Severity::Sev4, "not replaced silently");
    // Said once: another P2 alert adds no second suggestion.
    t.post_datadog_alert(ALERTS, &alert("Re-Triggered", 2)).await;
    t.expect_reply(ALERTS, "now *Re-Triggered*");
    t.click(ALICE, ALERTS, &suggestion.ts, "accept_severity_2").await;
    t.expect_reply(ALERTS, "SEV4 → *SEV2*: suggestion accepted");
    assert_eq!(incident(&t, inc(1)).severity, Severity::Sev2);
    t.finish();
}

#[tokio::test]
async fn timers_escalate_remind_and_survive_a_restart() {
    let (mut t, _) = start(POLICY).await;
    t.post_datadog_alert(ALERTS, &alert("Triggered", 2)).await;
    t.expect_reply(ALERTS, "INC-1 · SEV2");
    t.advance(TimeDelta::minutes(9)).await;
    t.advance(TimeDelta::minutes(1)).await;
    let e = t.expect_reply(ALERTS, "has not been acknowledged for 10m");
    assert!(e.text.contains(&user(ALICE).mention()) && e.text.contains(&user(BOB).mention()) && !e.text.contains(LEAD));
    // A restart in the middle: deadlines come back from the store.
    let mut t = t.restart().await;
    t.advance(TimeDelta::minutes(10)).await;
    let e = t.expect_reply(ALERTS, "has not been acknowledged for 20m");
    assert!(e.text.contains(&user(LEAD).mention()), "the second step calls the escalation group");
    t.slash(ALICE, ALERTS, "ack INC-1").await;
    t.expect_reply(ALERTS, "acknowledged");
    // No status update for 30 minutes (SEV2): the commander is reminded.
    t.advance(TimeDelta::minutes(10)).await;
    let r = t.expect_reply(ALERTS, "no status update for 30m");
    assert!(r.text.contains(&user(ALICE).mention()));
    t.slash(ALICE, ALERTS, "mitigated INC-1 feature flag off").await;
    t.expect_reply(ALERTS, "*Mitigated*");
    t.advance(TimeDelta::hours(2)).await;
    let r = t.expect_reply(ALERTS, "root cause is still unknown");
    assert!(r.text.contains(&user(BOB).mention()));
    t.finish();
}

#[tokio::test]
async fn export_prints_the_postmortem_from_a_stopped_bots_data() {
    let (mut t, _) = start(POLICY).await;
    t.post_datadog_alert(ALERTS, &alert("Triggered", 2)).await;
    t.slash(ALICE, ALERTS, "mitigated INC-1").await;
    t.slash(BOB, ALERTS, "rootcause INC-1 bad index on orders").await;
    t.slash(ALICE, ALERTS, "resolve INC-1 index rebuilt").await;
    t.ack_all();
    let (dir, _guard) = t.stop().await;
    let bin = env!("CARGO_BIN_EXE_incident-commander");
    let out = std::process::Command::new(bin).args(["export", "INC-1", "--data-dir"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# Postmortem draft: INC-1 · API p99 latency high"), "{md}");
    assert!(md.contains("bad index on orders") && md.contains("index rebuilt"));
    let out = std::process::Command::new(bin)
        .args(["export", "INC-1", "--format", "json", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["incident"]["status"], "Resolved");
    assert!(v["durations_seconds"]["to_resolve"].is_number());
    let out = std::process::Command::new(bin).args(["export", "INC-9", "--data-dir"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("INC-9 does not exist"));
    let _ = slack::BOT_ID;
}
