//! `incident-commander simulate`: what the bot would do with one alert payload, as JSON.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::domain::alert::Alert;
use crate::domain::decide::{Context, Effect, Event, Outcome, State, decide};
use crate::domain::ids::IncidentId;
use crate::domain::incident::Incident;
use crate::policy::Policy;
use crate::sources::{self, Format, ParseError};
use crate::store::Store;

/// Simulates `payload` against `policy` (and the open incidents in `store`, if given) at `now`.
pub fn simulate(
    payload: &str,
    policy: &Policy,
    store: Option<&dyn Store>,
    now: DateTime<Utc>,
) -> Result<Value, ParseError> {
    let value: Value =
        serde_json::from_str(payload).map_err(|e| ParseError::new(format!("the payload is not JSON: {e}")))?;
    let alert_bots = &policy.slack.alert_bots;
    let is_alert_bot = |m: &Value| {
        sources::slack_message::is_datadog_app(m)
            || m.get("bot_id").and_then(Value::as_str).is_some_and(|b| alert_bots.iter().any(|a| a.as_str() == b))
    };
    let (format, alerts) = sources::parse_any(&value, now, &is_alert_bot)?;
    let mut notes = Vec::new();
    if matches!(format, Format::SlackEnvelope | Format::SlackMessage) {
        if alerts.is_empty() {
            notes.push("not an alert: a person's message, a thread reply, a deletion, or a bot that is neither Datadog's app nor in slack.alert_bots".to_string());
        }
        for a in &alerts {
            if let Some(m) = &a.slack
                && !policy.slack.alert_channels.contains(&m.channel)
            {
                notes.push(format!("{} is not in slack.alert_channels: the bot would ignore this message", m.channel));
            }
        }
    }
    let mut next_id = match store {
        Some(s) => s.next_incident_id().map_err(|e| ParseError::new(e.to_string()))?,
        None => IncidentId::FIRST,
    };
    // Incidents this payload itself opened, so later alerts in it fold into them.
    let mut opened: HashMap<String, Incident> = HashMap::new();
    let mut results = Vec::new();
    for alert in alerts {
        let existing = match opened.get(alert.fingerprint.as_str()) {
            Some(i) => Some(i.clone()),
            None => match store {
                Some(s) => s
                    .find_open_incident_by_fingerprint(&alert.fingerprint)
                    .map_err(|e| ParseError::new(e.to_string()))?,
                None => None,
            },
        };
        let state = match &existing {
            Some(i) => State::Existing(i),
            None => State::New { id: next_id },
        };
        let outcome = decide(state, &Event::Alert(alert.clone()), Context::new(now, policy));
        results.push(describe(&alert, policy, existing.as_ref(), outcome, &mut opened, &mut next_id));
    }
    Ok(json!({"format": format, "alerts": results, "notes": notes}))
}

fn describe(
    alert: &Alert,
    policy: &Policy,
    existing: Option<&Incident>,
    outcome: Result<Outcome, crate::domain::incident::TransitionError>,
    opened: &mut HashMap<String, Incident>,
    next_id: &mut IncidentId,
) -> Value {
    let team = policy.route(alert);
    let mut out = json!({
        "alert": alert,
        "fingerprint": alert.fingerprint.as_str(),
        "team": team.name,
    });
    match outcome {
        Ok(Outcome::Changed { incident, effects }) => {
            let decision = match existing {
                Some(e) => json!({"action": "fold", "incident": e.id.to_string()}),
                None => {
                    *next_id = incident.id.next();
                    json!({"action": "open", "incident": incident.id.to_string()})
                }
            };
            out["decision"] = decision;
            out["severity"] = json!({"level": incident.severity.to_string(), "reason": incident.severity_reason});
            out["commander"] = json!(incident.commander.as_ref().map(|u| u.to_string()));
            out["investigator"] = json!(incident.investigator.as_ref().map(|u| u.to_string()));
            out["thread"] = json!(match &incident.slack.thread_ts {
                Some(ts) => format!(
                    "reply thread on the alert message {ts} in {}",
                    incident.slack.channel.as_ref().map(|c| c.to_string()).unwrap_or_default()
                ),
                None => format!(
                    "new root message in {}",
                    incident.slack.channel.as_ref().map(|c| c.to_string()).unwrap_or_default()
                ),
            });
            out["messages"] = json!(effects.iter().map(effect_label).collect::<Vec<_>>());
            opened.insert(alert.fingerprint.to_string(), *incident);
        }
        Ok(Outcome::Ignored { reason }) => out["decision"] = json!({"action": "ignore", "reason": reason}),
        Err(e) => out["decision"] = json!({"action": "refuse", "reason": e.to_string()}),
    }
    out
}

fn effect_label(e: &Effect) -> String {
    match e {
        Effect::PostRoot => "post the incident's root message".into(),
        Effect::SyncHeader => "post or edit the incident header".into(),
        Effect::Reply(text) => format!("reply in the thread: {text}"),
        Effect::React { emoji, .. } => format!("react :{emoji}: on the alert message"),
        Effect::Answer(text) => format!("answer privately: {text}"),
        Effect::CreateIncidentChannel => "create the incident channel".into(),
        Effect::PostPostmortem => "post the postmortem draft".into(),
        Effect::UpdatePostmortem => "edit the postmortem draft".into(),
        Effect::RequestEvidence(_) => "ask Datadog for evidence (failing traces, per-customer error ratios)".into(),
        Effect::PublishEvidence { .. } => "post or edit the evidence message".into(),
        Effect::InviteToChannel(users) => format!("invite {} to the incident channel", users.len()),
        Effect::SuggestSeverity { severity, reason } => format!("suggest {severity} ({reason}) with a button"),
    }
}
