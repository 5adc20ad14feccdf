//! `decide`: every transition and every refusal, with a fixed clock.

mod common;

use common::*;
use incident_commander::domain::alert::Transition;
use incident_commander::domain::decide::{Action, Context, Effect, Event, Outcome, State, decide};
use incident_commander::domain::ids::{IncidentId, Priority, Severity};
use incident_commander::domain::incident::{
    EntryKind, EvidencePurpose, Incident, Role, SeveritySetBy, Status, TransitionError,
};
use incident_commander::domain::postmortem::postmortem_markdown;
use incident_commander::policy::Policy;

fn id(n: u64) -> IncidentId {
    IncidentId::new(n).unwrap()
}

fn open(policy: &Policy, event: Event, at: chrono::DateTime<chrono::Utc>) -> (Incident, Vec<Effect>) {
    match decide(State::New { id: id(1) }, &event, Context::new(at, policy)).unwrap() {
        Outcome::Changed { incident, effects } => (*incident, effects),
        Outcome::Ignored { reason } => panic!("expected an incident, got ignored: {reason}"),
    }
}

fn open_p2(policy: &Policy) -> Incident {
    open(policy, Event::Alert(webhook_alert("111", Transition::Triggered, Priority::P2, &["team:backend"])), t0()).0
}

fn act(
    policy: &Policy,
    incident: &Incident,
    by: &str,
    action: Action,
    minutes: i64,
) -> Result<(Incident, Vec<Effect>), TransitionError> {
    let event = Event::Act { by: user(by), action };
    match decide(State::Existing(incident), &event, Context::new(t0() + mins(minutes), policy))? {
        Outcome::Changed { incident, effects } => Ok((*incident, effects)),
        Outcome::Ignored { reason } => panic!("expected a change, got ignored: {reason}"),
    }
}

fn replies(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn webhook_alert_opens_an_incident_with_rotation_roles_and_graded_severity() {
    let policy = policy();
    let alert = webhook_alert("111", Transition::Triggered, Priority::P2, &["team:backend"]);
    let (incident, effects) = open(&policy, Event::Alert(alert), t0());
    assert_eq!(incident.id.to_string(), "INC-1");
    assert_eq!(incident.title, "API error rate high");
    assert_eq!(incident.team, "backend");
    assert_eq!(incident.commander, Some(user(ALICE)), "primary on call commands");
    assert_eq!(incident.investigator, Some(user(BOB)), "next on the rotation investigates");
    assert_eq!(incident.severity, Severity::Sev2);
    assert_eq!(incident.severity_reason, "priority P2 (severity rule 2)");
    assert_eq!(incident.severity_set_by, SeveritySetBy::Rules);
    assert_eq!(incident.status, Status::Open);
    assert_eq!(incident.slack.channel, Some(channel(ALERTS)));
    assert_eq!(incident.slack.thread_ts, None, "a webhook alert has no message to thread on");
    assert_eq!(incident.deadlines.escalate_at, Some(t0() + mins(10)));
    assert_eq!(incident.deadlines.status_reminder_at, Some(t0() + mins(30)));
    assert_eq!(effects, vec![Effect::PostRoot, Effect::SyncHeader, Effect::RequestEvidence(EvidencePurpose::Open)]);
    assert_eq!(incident.timeline[0].kind, EntryKind::Opened);
}

#[test]
fn slack_alert_threads_on_its_own_message() {
    let policy = policy();
    let (incident, effects) =
        open(&policy, Event::Alert(slack_alert("111", Transition::Triggered, "1700000000.000100")), t0());
    assert_eq!(incident.slack.thread_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(effects, vec![Effect::SyncHeader, Effect::RequestEvidence(EvidencePurpose::Open)]);
}

#[test]
fn sev1_asks_for_a_dedicated_channel() {
    let policy = policy();
    let alert = webhook_alert("111", Transition::Triggered, Priority::P1, &["team:backend"]);
    let (incident, effects) = open(&policy, Event::Alert(alert), t0());
    assert_eq!(incident.severity, Severity::Sev1);
    assert!(effects.contains(&Effect::CreateIncidentChannel));
}

#[test]
fn unmatched_alert_goes_to_the_default_team() {
    let policy = policy();
    let alert = webhook_alert("222", Transition::Triggered, Priority::P3, &["team:unknown"]);
    let alert = incident_commander::domain::Alert { service: Some("billing".into()), ..alert };
    let (incident, _) = open(&policy, Event::Alert(alert), t0());
    assert_eq!(incident.team, "backend", "default_team is unset: the first team takes it");
}

#[test]
fn default_team_setting_is_honoured() {
    let text = format!("default_team = \"frontend\"\n{POLICY}");
    let policy = Policy::parse(&text).unwrap();
    let alert = webhook_alert("222", Transition::Triggered, Priority::P3, &["team:unknown"]);
    let alert = incident_commander::domain::Alert { service: Some("billing".into()), ..alert };
    let (incident, _) = open(&policy, Event::Alert(alert), t0());
    assert_eq!(incident.team, "frontend");
    assert_eq!(incident.commander, Some(user(DAVE)));
    assert_eq!(incident.investigator, Some(user(ERIN)));
}

#[test]
fn warn_and_lone_recovery_do_not_open_incidents() {
    let policy = policy();
    for (transition, expect) in [(Transition::Warn, "alerts.open_on"), (Transition::Recovered, "nothing to do")] {
        let alert = webhook_alert("111", transition, Priority::P2, &["team:backend"]);
        match decide(State::New { id: id(1) }, &Event::Alert(alert), Context::new(t0(), &policy)).unwrap() {
            Outcome::Ignored { reason } => assert!(reason.contains(expect), "{reason}"),
            other => panic!("{transition} should be ignored, got {other:?}"),
        }
    }
}

#[test]
fn opening_from_a_warn_by_reaction_is_allowed() {
    let policy = policy();
    let alert = webhook_alert("111", Transition::Warn, Priority::P3, &["team:backend"]);
    let (incident, _) = open(&policy, Event::OpenFromAlert { by: user(CAROL), alert }, t0());
    assert_eq!(incident.status, Status::Open);
    assert!(incident.timeline.iter().any(|e| e.text.contains("Opened from a Warn alert")));
}

#[test]
fn one_member_team_leaves_investigator_open_and_asks_for_a_volunteer() {
    let policy = policy();
    let alert = webhook_alert("333", Transition::Triggered, Priority::P3, &["team:solo"]);
    let alert = incident_commander::domain::Alert { service: Some("batch".into()), ..alert };
    let (incident, effects) = open(&policy, Event::Alert(alert), t0());
    assert_eq!(incident.commander, Some(user("U0FRANK01")));
    assert_eq!(incident.investigator, None);
    assert!(replies(&effects).iter().any(|r| r.contains("no investigator yet") && r.contains("Investigate")));
}

fn fold(
    policy: &Policy,
    incident: &Incident,
    alert: incident_commander::domain::Alert,
    minutes: i64,
) -> (Incident, Vec<Effect>) {
    match decide(State::Existing(incident), &Event::Alert(alert), Context::new(t0() + mins(minutes), policy)).unwrap() {
        Outcome::Changed { incident, effects } => (*incident, effects),
        other => panic!("expected a fold, got {other:?}"),
    }
}

#[test]
fn repeats_fold_silently_and_a_transition_change_is_noted_once() {
    let policy = policy();
    let incident = open_p2(&policy);
    let again = webhook_alert("111", Transition::Triggered, Priority::P2, &["team:backend"]);
    let (incident, effects) = fold(&policy, &incident, again.clone(), 1);
    assert_eq!(incident.alerts.as_ref().unwrap().count, 2);
    assert_eq!(effects, vec![Effect::SyncHeader], "a repeat only edits the header");

    let recovered = webhook_alert("111", Transition::Recovered, Priority::P2, &["team:backend"]);
    let (incident, effects) = fold(&policy, &incident, recovered.clone(), 2);
    let track = incident.alerts.as_ref().unwrap();
    assert!(track.recovered);
    assert_eq!(incident.status, Status::Open, "recovery does not resolve: that is the commander's call");
    assert_eq!(replies(&effects).len(), 1);
    assert!(replies(&effects)[0].contains("recovered"));

    let (incident, effects) = fold(&policy, &incident, recovered, 3);
    assert_eq!(incident.alerts.as_ref().unwrap().count, 4);
    assert!(replies(&effects).is_empty(), "the same transition again adds no message");
}

#[test]
fn duplicate_alert_message_gets_a_reaction_not_a_thread() {
    let policy = policy();
    let (incident, _) = open(&policy, Event::Alert(slack_alert("111", Transition::Triggered, "1.000100")), t0());
    let (_, effects) = fold(&policy, &incident, slack_alert("111", Transition::Triggered, "2.000200"), 1);
    assert!(
        effects.iter().any(|e| matches!(e, Effect::React { ts, emoji, .. } if ts == "2.000200" && emoji == "repeat"))
    );
    assert!(!effects.contains(&Effect::PostRoot));
}

#[test]
fn recovery_resolves_only_when_the_policy_opts_in() {
    let policy = policy_with("[alerts]\nresolve_on_recovery = true");
    let incident = open_p2(&policy);
    let recovered = webhook_alert("111", Transition::Recovered, Priority::P2, &["team:backend"]);
    let (incident, effects) = fold(&policy, &incident, recovered, 5);
    assert_eq!(incident.status, Status::Resolved);
    assert!(effects.contains(&Effect::PostPostmortem));
}

#[test]
fn flapping_is_noted_once() {
    let policy = policy();
    let mut incident = open_p2(&policy);
    let mut notes = Vec::new();
    for i in 0..8 {
        let t = if i % 2 == 0 { Transition::Recovered } else { Transition::Triggered };
        let (next, effects) = fold(&policy, &incident, webhook_alert("111", t, Priority::P2, &["team:backend"]), i + 1);
        notes.extend(replies(&effects).into_iter().map(String::from));
        incident = next;
    }
    let flapping: Vec<_> = notes.iter().filter(|n| n.contains("flapping")).collect();
    assert_eq!(flapping.len(), 1, "{notes:#?}");
    assert_eq!(notes.len(), 4, "three transition notes, then one flapping note, then silence: {notes:#?}");
    assert_eq!(incident.alerts.unwrap().count, 9);
}

#[test]
fn acknowledge_stops_escalation_and_cannot_repeat() {
    let policy = policy();
    let incident = open_p2(&policy);
    let (incident, effects) = act(&policy, &incident, ALICE, Action::Acknowledge, 2).unwrap();
    assert_eq!(incident.status, Status::Acknowledged);
    assert_eq!(incident.acknowledged_at, Some(t0() + mins(2)));
    assert_eq!(incident.deadlines.escalate_at, None);
    assert_eq!(effects[0], Effect::SyncHeader);
    let err = act(&policy, &incident, BOB, Action::Acknowledge, 3).unwrap_err();
    assert!(matches!(err, TransitionError::AlreadyAcknowledged { .. }));
    assert!(err.to_string().contains(ALICE), "{err}");
}

#[test]
fn resolve_before_mitigated_is_refused_with_the_fix() {
    let policy = policy();
    let incident = open_p2(&policy);
    let err = act(&policy, &incident, ALICE, Action::Resolve { summary: None }, 5).unwrap_err();
    assert_eq!(err, TransitionError::ResolveBeforeMitigated(incident.id));
    assert!(err.to_string().contains("/incident mitigated"));
}

#[test]
fn full_lifecycle_records_durations_and_postmortem() {
    let policy = policy();
    let incident = open_p2(&policy);
    let (incident, _) = act(&policy, &incident, ALICE, Action::Acknowledge, 3).unwrap();
    let (incident, _) = act(&policy, &incident, ALICE, Action::Status { text: "rolling back".into() }, 6).unwrap();
    let (incident, effects) =
        act(&policy, &incident, ALICE, Action::Mitigated { note: Some("rolled back".into()) }, 12).unwrap();
    assert_eq!(incident.status, Status::Mitigated);
    assert_eq!(incident.deadlines.root_cause_reminder_at, Some(t0() + mins(12) + mins(120)));
    assert!(replies(&effects)[0].contains(&user(BOB).mention()), "the investigator is asked for the root cause");
    let (incident, _) = act(&policy, &incident, BOB, Action::RootCause { text: "pool exhausted".into() }, 30).unwrap();
    assert_eq!(incident.deadlines.root_cause_reminder_at, None);
    let (incident, effects) =
        act(&policy, &incident, ALICE, Action::Resolve { summary: Some("fixed".into()) }, 40).unwrap();
    assert_eq!(incident.status, Status::Resolved);
    assert!(effects.contains(&Effect::PostPostmortem));
    let d = incident.durations();
    assert_eq!(d.to_acknowledge, Some(mins(3)));
    assert_eq!(d.to_mitigate, Some(mins(12)));
    assert_eq!(d.to_resolve, Some(mins(40)));
    let md = postmortem_markdown(&incident);
    assert!(md.contains("pool exhausted"));
    assert!(md.contains("| 3m | 12m | 40m |"), "{md}");
    assert!(!md.contains("MISSING"));
}

#[test]
fn resolving_without_root_cause_marks_it_missing_and_reminds_the_investigator() {
    let policy = policy();
    let incident = open_p2(&policy);
    let (incident, _) = act(&policy, &incident, ALICE, Action::Mitigated { note: None }, 5).unwrap();
    let (incident, effects) = act(&policy, &incident, ALICE, Action::Resolve { summary: None }, 6).unwrap();
    assert!(replies(&effects)[0].contains(&user(BOB).mention()));
    assert!(replies(&effects)[0].contains("root cause is missing"));
    assert!(postmortem_markdown(&incident).contains("**MISSING**"));
}

#[test]
fn mitigating_twice_is_refused() {
    let policy = policy();
    let incident = open_p2(&policy);
    let (incident, _) = act(&policy, &incident, ALICE, Action::Mitigated { note: None }, 5).unwrap();
    assert_eq!(incident.acknowledged_at, None, "mitigating is not acknowledging");
    assert_eq!(incident.durations().to_acknowledge, None);
    assert_eq!(incident.deadlines.escalate_at, None, "but it stops the escalation");
    let header = incident_commander::domain::messages::header_message(&incident);
    assert!(format!("{header:?}").contains("never acknowledged · mitigated after 5m"), "{header:?}");
    let postmortem = postmortem_markdown(&incident);
    assert!(postmortem.contains("| never | 5m |"), "{postmortem}");
    assert!(postmortem.contains("Nobody acknowledged it"), "{postmortem}");
    assert!(!postmortem.contains("Why did acknowledgement take"), "{postmortem}");
    let err = act(&policy, &incident, ALICE, Action::Mitigated { note: None }, 6).unwrap_err();
    assert_eq!(err, TransitionError::AlreadyMitigated(incident.id));
}

#[test]
fn resolved_incidents_refuse_changes_until_reopened() {
    let policy = policy();
    let incident = open_p2(&policy);
    let (incident, _) = act(&policy, &incident, ALICE, Action::Mitigated { note: None }, 5).unwrap();
    let (incident, _) = act(&policy, &incident, ALICE, Action::Resolve { summary: None }, 6).unwrap();
    let err = act(&policy, &incident, ALICE, Action::Acknowledge, 7).unwrap_err();
    assert_eq!(err, TransitionError::AlreadyResolved(incident.id));
    assert!(err.to_string().contains("/incident reopen"));
    // The root cause may still be added for the postmortem.
    let (incident, effects) = act(&policy, &incident, BOB, Action::RootCause { text: "bad deploy".into() }, 8).unwrap();
    assert!(effects.contains(&Effect::UpdatePostmortem), "the postmortem is edited with the root cause");
    let (incident, _) = act(&policy, &incident, ALICE, Action::Reopen, 9).unwrap();
    assert_eq!(incident.status, Status::Reopened);
    assert_eq!(incident.resolved_at, None);
    let err = act(&policy, &incident, ALICE, Action::Resolve { summary: None }, 10).unwrap_err();
    assert_eq!(err, TransitionError::ResolveBeforeMitigated(incident.id), "reopened needs mitigation again");
    let err = act(&policy, &incident, ALICE, Action::Reopen, 11).unwrap_err();
    assert_eq!(err, TransitionError::NotResolved(incident.id));
}

#[test]
fn commander_and_investigator_are_never_the_same_person() {
    let policy = policy();
    let incident = open_p2(&policy);
    let claim = Action::Claim { role: Role::Investigator, user: None, take_over: true };
    let err = act(&policy, &incident, ALICE, claim, 1).unwrap_err();
    assert!(matches!(err, TransitionError::SamePersonBothRoles { held: Role::Commander, .. }));
    assert!(err.to_string().contains("one person cannot be both"));
}

#[test]
fn second_claimer_is_told_who_holds_the_role_and_how_to_take_over() {
    let policy = policy();
    let incident = open_p2(&policy);
    let err = act(&policy, &incident, CAROL, Action::Claim { role: Role::Commander, user: None, take_over: false }, 1)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is already the commander of INC-1. To take over, use `/incident commander @me INC-1`.",
            user(ALICE).mention()
        )
    );
    let (incident, effects) =
        act(&policy, &incident, CAROL, Action::Claim { role: Role::Commander, user: None, take_over: true }, 2)
            .unwrap();
    assert_eq!(incident.commander, Some(user(CAROL)));
    assert!(replies(&effects)[0].contains("took over as commander"));
    // Hand-off by the commander to someone else is announced too.
    let (incident, effects) = act(
        &policy,
        &incident,
        CAROL,
        Action::Claim { role: Role::Commander, user: Some(user(ALICE)), take_over: true },
        3,
    )
    .unwrap();
    assert_eq!(incident.commander, Some(user(ALICE)));
    assert!(replies(&effects)[0].contains("handed the commander role"));
}

#[test]
fn people_outside_the_team_are_refused_but_responders_are_not() {
    let policy = policy();
    let incident = open_p2(&policy);
    let err = act(&policy, &incident, OUTSIDER, Action::Acknowledge, 1).unwrap_err();
    assert!(matches!(err, TransitionError::NotAllowed { .. }));
    assert!(err.to_string().contains("slack.responders"));
    assert!(act(&policy, &incident, SRE, Action::Acknowledge, 1).is_ok());
    assert!(
        act(&policy, &incident, LEAD, Action::Note { text: "looking".into() }, 1).is_ok(),
        "escalation contacts may act"
    );
}

#[test]
fn a_person_overrides_severity_and_timers_follow() {
    let policy = policy();
    let incident = open_p2(&policy);
    let action = Action::SetSeverity { severity: Severity::Sev1, reason: Some("checkout down".into()) };
    let (incident, effects) = act(&policy, &incident, ALICE, action, 2).unwrap();
    assert_eq!(incident.severity, Severity::Sev1);
    assert_eq!(incident.severity_reason, "checkout down");
    assert_eq!(incident.severity_set_by, SeveritySetBy::Person(user(ALICE)));
    assert_eq!(incident.severity_history.len(), 2);
    assert_eq!(incident.deadlines.escalate_at, Some(t0() + mins(2) + mins(5)), "SEV1 escalates after 5m");
    assert!(effects.contains(&Effect::CreateIncidentChannel), "SEV1 gets a channel");
    assert!(replies(&effects)[0].contains("SEV2 → *SEV1*"));
}

#[test]
fn empty_texts_are_refused_with_an_example() {
    let policy = policy();
    let incident = open_p2(&policy);
    let err = act(&policy, &incident, ALICE, Action::Status { text: "  ".into() }, 1).unwrap_err();
    assert!(err.to_string().contains("`/incident status"), "{err}");
    let err = act(&policy, &incident, BOB, Action::RootCause { text: String::new() }, 1).unwrap_err();
    assert!(err.to_string().contains("`/incident rootcause"), "{err}");
}

fn tick(policy: &Policy, incident: &Incident, minutes: i64) -> Option<(Incident, Vec<Effect>)> {
    match decide(State::Existing(incident), &Event::Tick, Context::new(t0() + mins(minutes), policy)).unwrap() {
        Outcome::Changed { incident, effects } => Some((*incident, effects)),
        Outcome::Ignored { .. } => None,
    }
}

#[test]
fn unacknowledged_incident_escalates_to_the_rotation_then_the_escalation_group() {
    let policy = policy();
    let incident = open_p2(&policy);
    assert!(tick(&policy, &incident, 9).is_none(), "nothing is due before the ack timeout");
    let (incident, effects) = tick(&policy, &incident, 10).unwrap();
    let first = replies(&effects)[0];
    assert!(first.contains(&user(ALICE).mention()) && first.contains(&user(BOB).mention()), "{first}");
    assert!(!first.contains(&user(LEAD).mention()));
    let (incident, effects) = tick(&policy, &incident, 20).unwrap();
    assert!(replies(&effects)[0].contains(&user(LEAD).mention()), "second step calls the escalation group");
    let (incident, _) = tick(&policy, &incident, 30).unwrap();
    assert_eq!(incident.deadlines.escalations, 3);
    assert_eq!(incident.deadlines.escalate_at, None, "escalation stops after three steps");
}

#[test]
fn status_reminders_follow_the_cadence_and_reset_on_update() {
    let policy = policy();
    let incident = open_p2(&policy);
    let (incident, _) = act(&policy, &incident, ALICE, Action::Acknowledge, 1).unwrap();
    let (incident, _) = act(&policy, &incident, ALICE, Action::Status { text: "looking".into() }, 20).unwrap();
    assert!(tick(&policy, &incident, 31).is_none(), "the update at 20m reset the 30m cadence");
    let (incident, effects) = tick(&policy, &incident, 50).unwrap();
    assert!(replies(&effects)[0].contains("no status update for 30m"), "{:?}", replies(&effects));
    assert_eq!(incident.deadlines.status_reminder_at, Some(t0() + mins(80)));
}

#[test]
fn mitigated_without_root_cause_reminds_the_investigator() {
    let policy = policy();
    let incident = open_p2(&policy);
    let (incident, _) = act(&policy, &incident, ALICE, Action::Mitigated { note: None }, 5).unwrap();
    assert_eq!(incident.deadlines.status_reminder_at, None, "no status nagging once mitigated");
    let (_, effects) = tick(&policy, &incident, 125).unwrap();
    let r = replies(&effects)[0];
    assert!(r.contains(&user(BOB).mention()) && r.contains("root cause is still unknown"), "{r}");
}

#[test]
fn declare_uses_the_declarers_team_and_given_severity() {
    let policy = policy();
    let event = Event::Declare {
        by: user(DAVE),
        title: "Checkout page blank".into(),
        severity: Some(Severity::Sev2),
        team: None,
        channel: None,
    };
    let (incident, effects) = open(&policy, event, t0());
    assert_eq!(incident.team, "frontend");
    assert_eq!(incident.severity, Severity::Sev2);
    assert_eq!(incident.severity_set_by, SeveritySetBy::Person(user(DAVE)));
    assert_eq!(incident.slack.channel, Some(channel(FRONT)));
    assert!(effects.contains(&Effect::PostRoot));
    assert!(effects.iter().any(|e| matches!(e, Effect::Answer(t) if t.contains("Declared INC-1"))));
}

#[test]
fn pins_and_notes_land_on_the_timeline() {
    let policy = policy();
    let incident = open_p2(&policy);
    let (incident, _) =
        act(&policy, &incident, CAROL, Action::Note { text: "deploy 4512 at 09:58".into() }, 1).unwrap();
    let (incident, _) =
        act(&policy, &incident, BOB, Action::Pin { text: "db cpu 100%".into(), author: Some(user(CAROL)) }, 2).unwrap();
    let kinds: Vec<EntryKind> = incident.timeline.iter().map(|e| e.kind).collect();
    assert!(kinds.ends_with(&[EntryKind::Note, EntryKind::Pinned]));
    assert!(incident.timeline.last().unwrap().text.contains("db cpu 100%"));
}
