//! `domain::stats`: insights over incidents, a pure function (no bot, no store).

use chrono::{DateTime, TimeDelta, Utc};
use incident_commander::domain::followup::{Followup, Ticket};
use incident_commander::domain::ids::{ChannelId, UserId};
use incident_commander::domain::ids::{IncidentId, Severity};
use incident_commander::domain::incident::Incident;
use incident_commander::domain::incident::RootCause;
use incident_commander::domain::stats::*;

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().with_timezone(&Utc) + TimeDelta::minutes(minutes)
}

/// An incident as `declare` makes it, then shaped by the test.
fn declared(n: u64) -> Incident {
    let policy = incident_commander::policy::Policy::parse(
        "[slack]\nalert_channels = [\"C0ALERTS1\"]\n[[team]]\nname = \"backend\"\nmembers = [\"U0ALICE01\"]\nchannel = \"C0ALERTS1\"\n",
    )
    .unwrap();
    let by = UserId::parse("U0ALICE01").unwrap();
    let event = incident_commander::domain::decide::Event::Declare {
        by,
        title: format!("incident {n}"),
        severity: None,
        team: None,
        channel: None,
    };
    let state = incident_commander::domain::decide::State::New { id: IncidentId::new(n).unwrap() };
    match incident_commander::domain::decide::decide(
        state,
        &event,
        incident_commander::domain::decide::Context::new(at(0), &policy),
    ) {
        Ok(incident_commander::domain::decide::Outcome::Changed { incident, .. }) => *incident,
        other => panic!("declare did not open an incident: {other:?}"),
    }
}

fn incident(n: u64, team: &str, severity: i64, opened: i64, ack: Option<i64>, resolved: Option<i64>) -> Incident {
    let mut i = declared(n);
    i.team = team.into();
    i.severity = Severity::from_level(severity).unwrap();
    i.opened_at = at(opened);
    i.acknowledged_at = ack.map(|m| at(opened + m));
    i.mitigated_at = resolved.map(|m| at(opened + m / 2));
    i.resolved_at = resolved.map(|m| at(opened + m));
    if resolved.is_some() {
        i.status = incident_commander::domain::incident::Status::Resolved;
    }
    i
}

#[test]
fn nearest_rank_median_and_p90() {
    let s = spread((1..=10).map(TimeDelta::minutes).collect()).unwrap();
    assert_eq!((s.count, s.median, s.p90), (10, TimeDelta::minutes(5), TimeDelta::minutes(9)));
    let one = spread(vec![TimeDelta::seconds(45)]).unwrap();
    assert_eq!((one.median, one.p90), (TimeDelta::seconds(45), TimeDelta::seconds(45)));
    assert_eq!(spread(Vec::new()), None);
}

#[test]
fn durations_read_to_the_second() {
    assert_eq!(duration_text(TimeDelta::seconds(45)), "45s");
    assert_eq!(duration_text(TimeDelta::seconds(750)), "12m 30s");
    assert_eq!(duration_text(TimeDelta::minutes(185)), "3h 05m");
    assert_eq!(duration_text(TimeDelta::hours(52)), "2d 04h");
}

#[test]
fn the_query_reads_team_and_window_in_any_order() {
    let q = |t: &str| StatsQuery::parse(&t.split_whitespace().collect::<Vec<_>>());
    assert_eq!(q("").unwrap(), StatsQuery { team: None, since: DEFAULT_SINCE });
    assert_eq!(q("backend since 7d").unwrap(), StatsQuery { team: Some("backend".into()), since: TimeDelta::days(7) });
    assert_eq!(q("2w payments").unwrap(), StatsQuery { team: Some("payments".into()), since: TimeDelta::weeks(2) });
    assert!(q("since").unwrap_err().contains("needs a duration"));
    assert!(q("since soon").unwrap_err().contains("not a window"));
    assert!(q("a b").unwrap_err().contains("neither a team"));
}

#[test]
fn groups_by_severity_and_team_and_lists_what_is_owed() {
    let now = at(60 * 24 * 20);
    let mut a = incident(1, "backend", 1, 0, Some(2), Some(120));
    a.root_cause = RootCause::Found { text: "pool".into(), by: UserId::parse("U0ALICE01").unwrap(), at: at(90) };
    let b = incident(2, "backend", 1, 1000, Some(10), Some(30));
    let mut c = incident(3, "frontend", 2, 2000, None, None);
    c.followups.push(Followup {
        number: 1,
        text: "alert on saturation".into(),
        owner: None,
        by: UserId::parse("U0ALICE01").unwrap(),
        at: at(2001),
        message_ts: None,
        ticket: Ticket::Untracked,
        done: false,
    });
    c.slack.channel = Some(ChannelId::parse("C0ALERTS1").unwrap());
    c.slack.thread_ts = Some("1700000000.000100".into());
    // Outside the window: not counted.
    let old = incident(4, "backend", 1, -60 * 24 * 40, Some(1), Some(5));
    let all = [a, b, c, old];
    let s = stats(&all, &StatsQuery { team: None, since: TimeDelta::days(30) }, now, Some("https://acme.slack.com/"));
    assert_eq!(s.total, 3);
    assert_eq!(s.by_severity, vec![(Severity::from_level(1).unwrap(), 2), (Severity::from_level(2).unwrap(), 1)]);
    let sev1 = &s.severity_rows[0];
    let ack = sev1.measures.iter().find(|(m, _)| *m == Measure::Acknowledge).unwrap().1.unwrap();
    assert_eq!((ack.count, ack.median, ack.p90), (2, TimeDelta::minutes(2), TimeDelta::minutes(10)));
    let rc = sev1.measures.iter().find(|(m, _)| *m == Measure::RootCause).unwrap().1.unwrap();
    assert_eq!(rc.median, TimeDelta::minutes(90));
    assert_eq!(
        s.team_rows.iter().map(|r| (r.group.as_str(), r.incidents)).collect::<Vec<_>>(),
        [("backend", 2), ("frontend", 1)]
    );
    // The still-open one has been open longest.
    assert_eq!(s.slowest[0].id.number(), 3);
    assert!(!s.slowest[0].resolved);
    assert_eq!(s.slowest[0].link.as_deref(), Some("https://acme.slack.com/archives/C0ALERTS1/p1700000000000100"));
    assert_eq!(s.without_root_cause.iter().map(|i| i.number()).collect::<Vec<_>>(), [2]);
    assert_eq!(s.open_followups.iter().map(|(i, n)| (i.number(), *n)).collect::<Vec<_>>(), [(3, 1)]);
    let text = s.message();
    assert!(text.contains("3 incidents · SEV1: 2 · SEV2: 1"), "{text}");
    assert!(text.contains("2m 00s / 10m 00s (2)"), "{text}");
    assert!(text.contains("<https://acme.slack.com/archives/C0ALERTS1/p1700000000000100|INC-3>"), "{text}");
    assert!(text.contains("*Without a root cause:* INC-2"), "{text}");
    assert!(text.contains("*With open follow-ups:* INC-3 (1)"), "{text}");

    let backend = stats(&all, &StatsQuery { team: Some("Backend".into()), since: TimeDelta::days(30) }, now, None);
    assert_eq!(backend.total, 2);
    assert!(backend.slowest.iter().all(|s| s.link.is_none()));
}

#[test]
fn csv_quotes_and_defuses_alert_text() {
    let mut i = declared(7);
    i.title = "=HYPERLINK(\"http://evil\"), \"quoted\"\nline".into();
    let csv = incidents_csv(&[i]);
    // Rows end in CRLF; the bare line break inside the quoted title stays in its field.
    let row = csv.split("\r\n").nth(1).unwrap();
    assert!(row.starts_with("INC-7,\"'=HYPERLINK(\"\"http://evil\"\"), \"\"quoted\"\"\nline\",backend,"), "{csv}");
    assert_eq!(csv.lines().next().unwrap(), CSV_COLUMNS.join(","));
}
