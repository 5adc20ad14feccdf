//! Snapshots of what people read: the header (text and Block Kit), the postmortem draft, help,
//! and the notes the bot posts. A wording change shows up here as a reviewable diff.

mod common;

use common::*;
use incident_commander::domain::alert::Transition;
use incident_commander::domain::command::help_text;
use incident_commander::domain::decide::{Action, Context, Event, Outcome, State, decide};
use incident_commander::domain::ids::{IncidentId, Priority};
use incident_commander::domain::incident::{Incident, Role};
use incident_commander::domain::messages::{self, header_message};
use incident_commander::domain::postmortem::postmortem_markdown;
use incident_commander::slack::blocks::render_blocks;

fn step(
    policy: &incident_commander::policy::Policy,
    incident: Option<&Incident>,
    event: Event,
    minutes: i64,
) -> Incident {
    let state = match incident {
        Some(i) => State::Existing(i),
        None => State::New { id: IncidentId::FIRST },
    };
    match decide(state, &event, Context::new(t0() + mins(minutes), policy)).unwrap() {
        Outcome::Changed { incident, .. } => *incident,
        other => panic!("{other:?}"),
    }
}

/// An incident taken through its whole life on a fixed clock.
fn resolved_incident() -> Incident {
    let policy = policy();
    let mut alert = webhook_alert("4242", Transition::Triggered, Priority::P2, &["team:backend"]);
    alert.links.push(incident_commander::domain::alert::Link {
        label: "Monitor".into(),
        url: "https://app.datadoghq.com/monitors/4242".into(),
    });
    let act =
        |i: &Incident, by: &str, action: Action, m: i64| step(&policy, Some(i), Event::Act { by: user(by), action }, m);
    let i = step(&policy, None, Event::Alert(alert.clone()), 0);
    let i = step(&policy, Some(&i), Event::Alert(Alert { transition: Transition::Recovered, ..alert }), 3);
    let i = act(&i, ALICE, Action::Acknowledge, 4);
    let i = act(&i, CAROL, Action::Claim { role: Role::Commander, user: None, take_over: true }, 6);
    let i = act(&i, CAROL, Action::Status { text: "rolled back deploy 4512".into() }, 9);
    let i = act(&i, CAROL, Action::Mitigated { note: Some("error rate back to 0.1%".into()) }, 15);
    let i = act(&i, BOB, Action::RootCause { text: "connection pool exhausted after a config change".into() }, 40);
    act(&i, CAROL, Action::Resolve { summary: Some("pool size restored".into()) }, 45)
}

use incident_commander::domain::Alert;

#[test]
fn header_of_an_open_incident() {
    let policy = policy();
    let alert = webhook_alert("4242", Transition::Triggered, Priority::P2, &["team:backend"]);
    let incident = step(&policy, None, Event::Alert(alert), 0);
    let header = header_message(&incident);
    insta::assert_snapshot!("header_open_text", header.text);
    insta::assert_json_snapshot!("header_open_blocks", render_blocks(&header, Some("INC-1")));
}

#[test]
fn header_and_postmortem_of_a_resolved_incident() {
    let incident = resolved_incident();
    insta::assert_json_snapshot!("header_resolved_blocks", render_blocks(&header_message(&incident), Some("INC-1")));
    insta::assert_snapshot!("postmortem", postmortem_markdown(&incident));
}

#[test]
fn help_and_notes() {
    insta::assert_snapshot!("help", help_text());
    let notes = [
        messages::escalation_message(IncidentId::FIRST, mins(10), &[&user(ALICE), &user(BOB)]),
        messages::status_reminder_message(Some(&user(ALICE)), mins(30)),
        messages::root_cause_reminder_message(Some(&user(BOB)), mins(120)),
        messages::transition_changed_message(Transition::Triggered, Transition::Recovered),
        messages::flapping_message(4, mins(10)),
        messages::volunteer_needed_message(IncidentId::FIRST, "solo"),
        messages::severity_suggestion_message(
            incident_commander::domain::Severity::Sev4,
            incident_commander::domain::Severity::Sev2,
            "priority P2 (severity rule 2)",
        ),
    ];
    insta::assert_snapshot!("notes", notes.join("\n"));
}
