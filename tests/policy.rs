//! The policy file: the example, the minimal file, and one test per class of mistake.

mod common;

use chrono::{TimeDelta, TimeZone, Utc};
use incident_commander::domain::alert::Transition;
use incident_commander::domain::ids::Severity;
use incident_commander::policy::{ConfigErrors, Policy};

const EXAMPLE: &str = include_str!("../incident-commander.example.toml");

/// The fixed keys of DESIGN.md's example, and nothing else.
const MINIMAL: &str = r#"
[slack]
alert_channels = ["C0ALERTS1", "C0ALERTS2"]
alert_bots = ["B0OTHERBOT"]

[[team]]
name = "backend"
match = ["team:backend", "service:api-*"]
members = ["U0AAA", "U0BBB", "U0CCC"]
rotation_start = "2026-11-02T09:00:00"
rotation_timezone = "Asia/Seoul"
rotation_length = "7d"
channel = "C0ALERTS1"

[datadog]
customer_facet = "@usr.org_id"
"#;

fn problems(text: &str) -> Vec<String> {
    match Policy::parse(text) {
        Ok(_) => panic!("expected problems, the file was accepted"),
        Err(ConfigErrors(errors)) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn expect_problem(text: &str, wanted: &str) {
    let found = problems(text);
    assert!(found.iter().any(|p| p == wanted), "wanted {wanted:?} among {found:#?}");
}

#[test]
fn example_file_loads_with_its_documented_values() {
    let policy = Policy::parse(EXAMPLE).expect("the example policy is valid");
    assert_eq!(policy.teams.len(), 2);
    assert_eq!(policy.default_team().name, "backend");
    assert_eq!(policy.slack.alert_channels.len(), 2);
    assert_eq!(policy.slack.incident_channel_severities, vec![Severity::Sev1, Severity::Sev2]);
    assert_eq!(policy.severity.rules.len(), 5);
    assert_eq!(policy.timers.ack_timeout.sev1, TimeDelta::minutes(5));
    assert_eq!(policy.timers.root_cause_reminder, TimeDelta::hours(24));
    assert_eq!(policy.emoji.investigator, "mag");
    assert_eq!(policy.alerts.storm.count, 10);
    assert_eq!(policy.datadog.customer_facet.as_deref(), Some("@usr.org_id"));
    assert_eq!(policy.datadog.traces, 3);
}

#[test]
fn example_file_shows_every_key_the_policy_knows() {
    // Every key must appear (documented) in the example; this list is what `Policy::parse` accepts.
    let keys = [
        "default_team",
        "socket_silence_limit",
        "alert_channels",
        "alert_bots",
        "responders",
        "incident_channel_severities",
        "name",
        "match",
        "members",
        "rotation_start",
        "rotation_timezone",
        "rotation_length",
        "channel",
        "escalation",
        "default",
        "severity",
        "reason",
        "priority",
        "tags",
        "team",
        "root_cause_reminder",
        "[timers.ack_timeout]",
        "[timers.status_update]",
        "sev1",
        "sev2",
        "sev3",
        "sev4",
        "commander",
        "investigator",
        "acknowledge",
        "open",
        "pin",
        "folded",
        "open_on",
        "resolve_on_recovery",
        "[alerts.flapping]",
        "[alerts.storm]",
        "count",
        "window",
        "customer_facet",
        "env",
        "window_before",
        "window_after",
        "refresh",
        "min_requests",
        "traces",
        "verdict",
        "elevated_ratio",
        "isolated_share",
        "isolation_factor",
        "global_share",
        "span_metric_customer_tag",
    ];
    for key in keys {
        let shown = EXAMPLE.lines().any(|l| l.trim_start().starts_with(&format!("{key} =")) || l.trim() == key);
        assert!(shown, "{key} is not shown in incident-commander.example.toml");
    }
    // Each key line is preceded by a comment somewhere in its table (spot-check the first team).
    let members_line = EXAMPLE.lines().position(|l| l.starts_with("members =")).unwrap();
    assert!(EXAMPLE.lines().nth(members_line - 1).unwrap().starts_with('#'));
}

#[test]
fn minimal_file_with_the_fixed_keys_is_valid_and_gets_defaults() {
    let policy = Policy::parse(MINIMAL).expect("DESIGN.md's example is valid on its own");
    assert_eq!(policy.default_team().name, "backend");
    assert_eq!(policy.severity.default, Severity::Sev3);
    assert_eq!(policy.severity.rules.len(), 4, "priority-based default rules");
    assert_eq!(policy.alerts.open_on, vec![Transition::Triggered, Transition::ReTriggered, Transition::NoData]);
    assert!(!policy.alerts.resolve_on_recovery);
    assert_eq!(policy.emoji.acknowledge, "eyes");
    assert_eq!(policy.timers.status_update.sev2, TimeDelta::minutes(30));
    assert_eq!(policy.datadog.window_before, TimeDelta::minutes(15));
    assert_eq!(policy.datadog.min_requests, 20);
}

#[test]
fn unknown_key_names_the_path_and_the_likely_key() {
    let text = MINIMAL.replace("alert_bots", "alert_botz");
    expect_problem(&text, "slack.alert_botz: unknown key (did you mean alert_bots?)");
    let text = MINIMAL.replace("[datadog]", "[datadog]\nwindow = \"5m\"");
    let found = problems(&text);
    assert!(found.iter().any(|p| p.starts_with("datadog.window: unknown key (did you mean window_")), "{found:?}");
    expect_problem(&format!("colour = 1\n{MINIMAL}"), "colour: unknown key");
}

#[test]
fn empty_rotation_is_refused() {
    let text = format!("{MINIMAL}\n[[team]]\nname = \"web\"\nmembers = []\nchannel = \"C0ALERTS2\"\n");
    expect_problem(&text, "team[1].members: a rotation needs at least one member");
}

#[test]
fn unknown_time_zone_is_refused_with_a_suggestion() {
    expect_problem(
        &MINIMAL.replace("Asia/Seoul", "asia/seoul"),
        "team[0].rotation_timezone: unknown time zone `asia/seoul` (did you mean Asia/Seoul?)",
    );
    let found = problems(&MINIMAL.replace("Asia/Seoul", "Mars/Olympus"));
    assert!(found[0].starts_with("team[0].rotation_timezone: unknown time zone `Mars/Olympus`"), "{found:?}");
}

#[test]
fn durations_parse_or_say_how_to_write_them() {
    for ok in ["7d", "30m", "90s", "1h 30m", "12h"] {
        assert!(Policy::parse(&MINIMAL.replace("\"7d\"", &format!("\"{ok}\""))).is_ok(), "{ok} should parse");
    }
    let found = problems(&MINIMAL.replace("\"7d\"", "\"a week\""));
    assert_eq!(
        found,
        vec![
            "team[0].rotation_length: `a week` is not a duration; write a number and a unit, e.g. \"90s\", \"30m\", \"4h\", \"7d\""
        ]
    );
    expect_problem(
        &MINIMAL.replace("\"7d\"", "\"0s\""),
        "team[0].rotation_length: `0s` is zero; durations must be longer than zero",
    );
}

#[test]
fn duplicate_team_names_are_refused() {
    let text = format!("{MINIMAL}\n[[team]]\nname = \"Backend\"\nmembers = [\"U0DDD\"]\n");
    expect_problem(&text, "team[1].name: duplicate team name `Backend`; each team needs its own name");
}

#[test]
fn channel_ids_must_be_slack_ids() {
    let found = problems(&MINIMAL.replace("channel = \"C0ALERTS1\"", "channel = \"#alerts\""));
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("team[0].channel: `#alerts` is not a Slack channel id"), "{found:?}");
    let found = problems(&MINIMAL.replace("[\"C0ALERTS1\", \"C0ALERTS2\"]", "[\"C0ALERTS1\", \"alerts\"]"));
    assert!(found[0].starts_with("slack.alert_channels[1]: `alerts` is not a Slack channel id"), "{found:?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = MINIMAL
        .replace("alert_bots", "alert_botz")
        .replace("Asia/Seoul", "Nowhere/City")
        .replace("\"7d\"", "\"soon\"")
        .replace("channel = \"C0ALERTS1\"", "channel = \"general\"");
    let found = problems(&text);
    assert_eq!(found.len(), 4, "{found:#?}");
}

#[test]
fn wrong_types_name_the_exact_key() {
    let found = problems(&MINIMAL.replace("members = [\"U0AAA\", \"U0BBB\", \"U0CCC\"]", "members = \"U0AAA\""));
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("team[0].members: invalid type"), "{found:?}");
    let found = problems(&MINIMAL.replace("[[team]]", "[team]"));
    assert!(found.iter().any(|p| p.contains("write each team as [[team]]")), "{found:?}");
}

#[test]
fn syntax_errors_give_line_and_column() {
    let found = problems("[slack]\nalert_channels = [\"C0ALERTS1\"\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("line 2, column"), "{found:?}");
}

#[test]
fn missing_teams_and_bad_default_team_are_explained() {
    expect_problem(
        "[slack]\nalert_channels = [\"C0ALERTS1\"]\n",
        "team: at least one [[team]] is needed: alerts are routed to teams",
    );
    expect_problem(
        &format!("default_team = \"ops\"\n{MINIMAL}"),
        "default_team: no team is named `ops` (teams: backend)",
    );
}

#[test]
fn severity_rules_are_validated() {
    let text = format!("{MINIMAL}\n[[severity.rule]]\nseverity = 5\npriority = [\"P7\"]\nseverit = 1\n");
    let found = problems(&text);
    assert!(found.contains(
        &"severity.rule[0].severity: 5 is not a severity (use 1, 2, 3 or 4; 1 is the most severe)".to_string()
    ));
    assert!(found.contains(&"severity.rule[0].priority[0]: `P7` is not a priority (use P1 to P5)".to_string()));
    assert!(
        found.contains(&"severity.rule[0].severit: unknown key (did you mean severity?)".to_string()),
        "{found:#?}"
    );
}

#[test]
fn emoji_names_are_checked_and_unique() {
    let text = format!("{MINIMAL}\n[emoji]\ncommander = \":eyes:\"\nopen = \"Big Red\"\n");
    let found = problems(&text);
    assert!(
        found.iter().any(|p| p.starts_with("emoji.acknowledge: `eyes` is already the commander reaction")),
        "{found:#?}"
    );
    assert!(found.iter().any(|p| p.starts_with("emoji.open: `Big Red` is not a Slack emoji name")), "{found:#?}");
}

#[test]
fn a_recovered_transition_cannot_open_incidents() {
    let text = format!("{MINIMAL}\n[alerts]\nopen_on = [\"Recovered\", \"Flapping\"]\n");
    let found = problems(&text);
    assert!(found.contains(&"alerts.open_on[0]: a Recovered alert cannot open an incident".to_string()));
    assert!(found.iter().any(|p| p.starts_with("alerts.open_on[1]: `Flapping` is not a transition")));
}

#[test]
fn rotation_start_accepts_toml_datetimes_and_refuses_offsets() {
    let policy = Policy::parse(&MINIMAL.replace("\"2026-11-02T09:00:00\"", "2026-11-02T09:00:00")).unwrap();
    let shift = policy.teams[0].rotation.shift_at(Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap());
    assert_eq!(shift.primary.as_str(), "U0AAA", "09:00 KST is 00:00 UTC");
    let found = problems(&MINIMAL.replace("\"2026-11-02T09:00:00\"", "\"2026-11-02T09:00:00+09:00\""));
    assert!(found[0].contains("without an offset"), "{found:?}");
}
