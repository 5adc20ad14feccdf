//! `incident-commander simulate`: what the bot would do with one payload, as JSON.
//!
//! The payload goes the bot's own way: into an inbox (in memory, holding copies of the stored
//! incidents when a data directory is given), through the Slack reader for Slack payloads, and
//! through the real processor, storms included. The report describes what the processor wrote:
//! each alert's decision, the incident it opened or folded into, and the Slack calls it queued.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::app::clock::ManualClock;
use crate::app::evidence::{EvidenceJob, EvidenceQueue, InFlight};
use crate::app::inbox::{InboxEvent, Origin, RawJson};
use crate::app::metrics::Metrics;
use crate::app::outbox::{ChannelRef, Form, MessageKey, OutboxEntry, SlackOp, ThreadRef};
use crate::app::processor::{Handled, HandledAs, Processor};
use crate::app::store::{DedupeKey, LoggedAlert, Store};
use crate::domain::decide::Event;
use crate::domain::ids::{BotId, ChannelId, UserId};
use crate::domain::incident::MessagePart;
use crate::domain::policy::Policy;
use crate::slack::client::BotIdentity;
use crate::slack::read::SlackReader;
use crate::sources::{self, Format, ParseError};
use crate::store::MemoryStore;

/// The bot as the simulation's Slack reader knows it (any id other than the payload's senders).
fn simulated_bot() -> BotIdentity {
    BotIdentity {
        user_id: UserId::parse("U0SIMULATE").expect("a valid user id"),
        bot_id: BotId::parse("B0SIMULATE").ok(),
        team_id: "T0SIMULATE".into(),
        workspace_url: None,
    }
}

/// Simulates `payload` against `policy` (and the incidents in `store`, if given) at `now`.
pub fn simulate(
    payload: &str,
    policy: &Policy,
    store: Option<&dyn Store>,
    now: DateTime<Utc>,
) -> Result<Value, ParseError> {
    let value: Value =
        serde_json::from_str(payload).map_err(|e| ParseError::new(format!("the payload is not JSON: {e}")))?;
    let format = sources::detect(&value).ok_or_else(|| {
        ParseError::new("unrecognised payload: expected a Slack event or message, a Datadog webhook, an Alertmanager (version 4) or a Grafana webhook body")
    })?;
    let events: Vec<(InboxEvent, Option<DedupeKey>)> = match format {
        Format::SlackEnvelope => {
            let event = value.get("event").ok_or_else(|| ParseError::new("event_callback without an event"))?;
            let event_id = value.get("event_id").and_then(Value::as_str).unwrap_or("Ev0SIMULATED").to_string();
            vec![(InboxEvent::SlackEvent { event_id, event: RawJson::of(event) }, None)]
        }
        Format::SlackMessage => {
            vec![(InboxEvent::SlackEvent { event_id: "Ev0SIMULATED".into(), event: RawJson::of(&value) }, None)]
        }
        webhook => sources::read_webhook(webhook, &value, now)?
            .into_iter()
            .map(|(alert, _key)| {
                let event = Event::Alert(alert);
                (InboxEvent::Domain { event: Box::new(event), incident: None, origin: Origin::default() }, None)
            })
            .collect(),
    };
    if events.is_empty() {
        return Err(ParseError::new("the payload holds no alerts"));
    }

    let stored = match store {
        Some(s) => s.all_incidents().map_err(|e| ParseError::new(e.to_string()))?,
        None => Vec::new(),
    };
    let memory = Arc::new(MemoryStore::with_incidents(stored));
    let policy = Arc::new(policy.clone());
    let reader = Box::new(SlackReader::new(policy.clone(), simulated_bot()));
    let clock = Arc::new(ManualClock::new(now));
    let (queue, mut jobs) = EvidenceQueue::new(InFlight::default());
    let mut processor = Processor::new(memory.clone(), policy.clone(), clock, Arc::new(Metrics::new()), reader)
        .map_err(|e| ParseError::new(e.to_string()))?
        .with_evidence(Some(queue));
    memory.accept_events(&events).map_err(|e| ParseError::new(e.to_string()))?;

    let failed = |e: crate::app::store::StoreError| ParseError::new(e.to_string());
    let mut results = Vec::new();
    let mut notes = Vec::new();
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    loop {
        let logged_before = memory.logged_alerts().len();
        let Some(handled) = processor.step().map_err(failed)? else { break };
        let calls: Vec<OutboxEntry> = memory
            .pending_outbox()
            .map_err(failed)?
            .into_iter()
            .filter(|(seq, _)| seen.insert(*seq))
            .map(|(_, e)| e)
            .collect();
        let asked: Vec<EvidenceJob> = std::iter::from_fn(|| jobs.try_recv().ok()).collect();
        let mut messages: Vec<String> = calls.iter().map(|c| call_label(&c.op)).collect();
        messages.extend(asked.iter().map(evidence_label));
        match memory.logged_alerts().get(logged_before) {
            Some(logged) => results.push(describe(logged, &handled, memory.as_ref(), &policy, messages)?),
            None => {
                notes.push(handled.detail.clone());
                if !messages.is_empty() {
                    notes.push(format!("and would: {}", messages.join("; ")));
                }
            }
        }
    }
    if matches!(format, Format::SlackEnvelope | Format::SlackMessage) {
        let message = value.get("event").unwrap_or(&value);
        let channel = message.get("channel").and_then(Value::as_str).and_then(|c| ChannelId::parse(c).ok());
        if let Some(channel) = channel.filter(|c| !policy.slack.alert_channels.contains(c)) {
            notes.push(format!("{channel} is not in slack.alert_channels: the bot reads alerts only there"));
        }
    }
    Ok(json!({"format": format, "alerts": results, "notes": notes}))
}

/// One alert's report: what arrived, where it routes, what the processor decided.
fn describe(
    logged: &LoggedAlert,
    handled: &Handled,
    store: &MemoryStore,
    policy: &Policy,
    messages: Vec<String>,
) -> Result<Value, ParseError> {
    let alert = &logged.alert;
    let mut out = json!({
        "alert": alert,
        "fingerprint": alert.fingerprint.as_str(),
        "team": policy.route(alert).name,
        "messages": messages,
    });
    let incident = match logged.incident {
        Some(id) => store.get_incident(id).map_err(|e| ParseError::new(e.to_string()))?,
        None => None,
    };
    out["decision"] = match (&incident, handled.outcome) {
        (Some(i), HandledAs::Changed) if handled.detail == "opened" => {
            json!({"action": "open", "incident": i.id.to_string()})
        }
        (Some(i), _) => json!({"action": "fold", "incident": i.id.to_string()}),
        (None, HandledAs::Refused) => json!({"action": "refuse", "reason": handled.detail}),
        (None, _) => {
            json!({"action": "ignore", "reason": logged.ignored.clone().unwrap_or_else(|| handled.detail.clone())})
        }
    };
    if let Some(incident) = incident {
        out["severity"] = json!({"level": incident.severity.to_string(), "reason": incident.severity_reason});
        out["commander"] = json!(incident.commander.as_ref().map(|u| u.to_string()));
        out["investigator"] = json!(incident.investigator.as_ref().map(|u| u.to_string()));
        let channel = incident.slack.channel.as_ref().map(|c| c.to_string()).unwrap_or_default();
        out["thread"] = json!(match &incident.slack.thread_ts {
            Some(ts) => format!("reply thread on the alert message {ts} in {channel}"),
            None => format!("new root message in {channel}"),
        });
    }
    Ok(out)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// A queued Slack call in words.
fn call_label(op: &SlackOp) -> String {
    let part = |key: &MessageKey| key.part().map(MessagePart::as_str).unwrap_or("message");
    match op {
        SlackOp::PostMessage { key: Some(MessageKey::Storm { channel, .. }), message, .. } => {
            format!("post the alert storm summary in {channel}: {}", first_line(&message.text))
        }
        SlackOp::PostMessage { key: Some(key), thread: None, channel, .. } if key.part() == Some(MessagePart::Root) => {
            format!("post the incident's root message in {}", channel_label(channel))
        }
        SlackOp::PostMessage { key: Some(key), .. } if key.part() == Some(MessagePart::Header) => {
            "post the incident header in the thread".into()
        }
        SlackOp::PostMessage { key: Some(key), .. } => format!("post the {} in the thread", part(key)),
        SlackOp::PostMessage { thread: Some(ThreadRef::Ts(_) | ThreadRef::Message(_)), message, .. } => {
            format!("reply in the thread: {}", first_line(&message.text))
        }
        SlackOp::PostMessage { channel, message, .. } => {
            format!("post in {}: {}", channel_label(channel), first_line(&message.text))
        }
        SlackOp::UpdateMessage { key: MessageKey::Storm { .. }, message, .. } => {
            format!("edit the alert storm summary: {}", first_line(&message.text))
        }
        SlackOp::UpdateMessage { key, .. } => format!("edit the incident {}", part(key)),
        SlackOp::AddReaction { emoji, .. } => format!("react :{emoji}: on the alert message"),
        SlackOp::PostEphemeral { text, .. } | SlackOp::Respond { text, .. } => {
            format!("answer privately: {}", first_line(text))
        }
        SlackOp::CreateChannel { name, invite, .. } => {
            format!("create the incident channel #{name} and invite {}", invite.len())
        }
        SlackOp::Invite { users, .. } => format!("invite {} to the incident channel", users.len()),
        SlackOp::AskForm { form: Form::RootCause, .. } => "open the root-cause form".into(),
        SlackOp::AskForm { form: Form::Followup, .. } => "open the follow-up form".into(),
    }
}

fn channel_label(channel: &ChannelRef) -> String {
    match channel {
        ChannelRef::Id(id) => id.to_string(),
        ChannelRef::Created(_) => "the incident channel".into(),
    }
}

fn evidence_label(job: &EvidenceJob) -> String {
    format!(
        "ask Datadog for evidence about {} from {} to {} (failing traces, per-customer error ratios; when DD_API_KEY and DD_APP_KEY are set)",
        job.service.as_deref().unwrap_or("the alerted service"),
        job.from.format("%H:%M UTC"),
        job.to.format("%H:%M UTC"),
    )
}
