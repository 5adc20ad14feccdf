//! Turns the domain's effects into the Slack calls the outbox holds.

use chrono::{DateTime, Utc};

use super::inbox::Origin;
use super::outbox::{ChannelRef, MessageKey, OutboxEntry, SlackOp, ThreadRef};
use crate::domain::decide::Effect;
use crate::domain::incident::{Actor, Incident, MessagePart};
use crate::domain::messages::{self, Message};
use crate::domain::postmortem::postmortem_markdown;

fn key(incident: &Incident, part: MessagePart) -> MessageKey {
    MessageKey::incident(incident.id, part)
}

fn root_key(incident: &Incident) -> MessageKey {
    key(incident, MessagePart::Root)
}

/// The thread parent: the alert message, or the root the bot posted (by key until its ts is known).
fn thread_of(incident: &Incident) -> ThreadRef {
    match &incident.slack.thread_ts {
        Some(ts) => ThreadRef::Ts(ts.clone()),
        None => ThreadRef::Message(root_key(incident)),
    }
}

fn postmortem(incident: &Incident) -> Message {
    Message {
        text: messages::postmortem_title(incident.id),
        blocks: vec![messages::Block::Markdown(postmortem_markdown(incident))],
    }
}

/// Slack channel names: lower case, digits, `-` and `_`, at most 80 characters.
fn incident_channel_name(incident: &Incident) -> String {
    let mut slug = String::new();
    for c in incident.title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let prefix = format!("inc-{}-", incident.id.number());
    let room = 80 - prefix.len();
    let slug: String = slug.trim_end_matches('-').chars().take(room.min(40)).collect();
    format!("{prefix}{}", slug.trim_end_matches('-'))
}

/// The calls for the channel-wide effects of a decision (storm summaries): no incident's.
pub fn channel_entries(effects: &[Effect], now: DateTime<Utc>) -> Vec<OutboxEntry> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::StormSummary { channel, storm, text, first } => {
                let key = MessageKey::Storm { channel: channel.clone(), storm: *storm };
                let message = Message::text(text.clone());
                let channel = ChannelRef::Id(channel.clone());
                Some(if *first {
                    SlackOp::PostMessage { channel, thread: None, message, key: Some(key) }
                } else {
                    SlackOp::UpdateMessage { channel, key, message }
                })
            }
            _ => None,
        })
        .map(|op| OutboxEntry { incident: None, op, created_at: now })
        .collect()
}

/// The calls for one decision. `is_new` says whether the incident was opened by it (the header is
/// then posted rather than edited).
pub fn outbox_entries(
    incident: &Incident,
    is_new: bool,
    effects: &[Effect],
    origin: &Origin,
    now: DateTime<Utc>,
) -> Vec<OutboxEntry> {
    let Some(channel) = incident.slack.channel.clone() else {
        tracing::warn!(incident = %incident.id, "incident has no Slack channel; its messages are not sent");
        return answers_only(incident, effects, origin, now);
    };
    let entry = |op: SlackOp| OutboxEntry { incident: Some(incident.id), op, created_at: now };
    let thread = thread_of(incident);
    let mut out = Vec::new();
    for effect in effects {
        match effect {
            Effect::PostRoot => out.push(entry(SlackOp::PostMessage {
                channel: ChannelRef::Id(channel.clone()),
                thread: None,
                message: messages::incident_root_message(incident, &source_label(incident)),
                key: Some(root_key(incident)),
            })),
            Effect::SyncHeader => {
                let message = messages::header_message(incident);
                out.push(entry(if is_new {
                    SlackOp::PostMessage {
                        channel: ChannelRef::Id(channel.clone()),
                        thread: Some(thread.clone()),
                        message,
                        key: Some(key(incident, MessagePart::Header)),
                    }
                } else {
                    SlackOp::UpdateMessage {
                        channel: ChannelRef::Id(channel.clone()),
                        key: key(incident, MessagePart::Header),
                        message,
                    }
                }));
            }
            Effect::Reply(text) => out.push(entry(SlackOp::PostMessage {
                channel: ChannelRef::Id(channel.clone()),
                thread: Some(thread.clone()),
                message: Message::text(text.clone()),
                key: None,
            })),
            Effect::React { channel, ts, emoji } => {
                out.push(entry(SlackOp::AddReaction { channel: channel.clone(), ts: ts.clone(), emoji: emoji.clone() }))
            }
            Effect::Answer(text) => out.extend(answer(origin, text).map(entry)),
            Effect::CreateIncidentChannel => {
                let invite = [&incident.commander, &incident.investigator].into_iter().flatten().cloned().collect();
                out.push(entry(SlackOp::CreateChannel {
                    key: key(incident, MessagePart::Channel),
                    name: incident_channel_name(incident),
                    invite,
                    purpose: format!("{} · {} · {}", incident.id, incident.severity, incident.title),
                }));
            }
            Effect::InviteToChannel(users) => out.push(entry(SlackOp::Invite {
                channel: ChannelRef::Created(key(incident, MessagePart::Channel)),
                users: users.clone(),
            })),
            Effect::SuggestSeverity { severity, reason } => out.push(entry(SlackOp::PostMessage {
                channel: ChannelRef::Id(channel.clone()),
                thread: Some(thread.clone()),
                message: messages::severity_suggestion(incident.severity, *severity, reason),
                key: None,
            })),
            Effect::UpdatePostmortem => out.push(entry(SlackOp::UpdateMessage {
                channel: ChannelRef::Id(channel.clone()),
                key: key(incident, MessagePart::Postmortem),
                message: postmortem(incident),
            })),
            Effect::PublishEvidence { text, first } => {
                let key = key(incident, MessagePart::Evidence);
                let message = Message::text(text.clone());
                out.push(entry(if *first {
                    SlackOp::PostMessage {
                        channel: ChannelRef::Id(channel.clone()),
                        thread: Some(thread.clone()),
                        message,
                        key: Some(key),
                    }
                } else {
                    SlackOp::UpdateMessage { channel: ChannelRef::Id(channel.clone()), key, message }
                }));
            }
            // Not a Slack call: the processor hands it to the evidence worker.
            Effect::RequestEvidence(_) | Effect::FileTicket(_) => {}
            Effect::PostPostmortem => out.push(entry(SlackOp::PostMessage {
                channel: ChannelRef::Id(channel.clone()),
                thread: Some(thread.clone()),
                message: postmortem(incident),
                key: Some(key(incident, MessagePart::Postmortem)),
            })),
            Effect::PostInIncidentChannel(text) => {
                if let Some(room) = &incident.slack.incident_channel {
                    out.push(entry(SlackOp::PostMessage {
                        channel: ChannelRef::Id(room.clone()),
                        thread: None,
                        message: Message::text(text.clone()),
                        key: None,
                    }))
                }
            }
            // Not the incident's message: see `channel_entries`.
            Effect::StormSummary { .. } => {}
        }
    }
    out
}

fn answers_only(incident: &Incident, effects: &[Effect], origin: &Origin, now: DateTime<Utc>) -> Vec<OutboxEntry> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Answer(text) => answer(origin, text),
            _ => None,
        })
        .map(|op| OutboxEntry { incident: Some(incident.id), op, created_at: now })
        .collect()
}

/// Where the incident came from, as the root message names it: the alert source, or who declared it.
fn source_label(incident: &Incident) -> String {
    if let Some(alerts) = &incident.alerts {
        return alerts.source.label().to_string();
    }
    // The declarer is the first person on the timeline: the declare itself records them.
    let declarer = incident.timeline.iter().find_map(|e| match &e.actor {
        Actor::Person(user) => Some(user),
        _ => None,
    });
    match declarer {
        Some(user) => format!("declared by {}", user.mention()),
        None => "declared".into(),
    }
}

/// A private answer to whoever caused the event: through the slash command's response URL, or as
/// an ephemeral message where they acted.
pub fn answer(origin: &Origin, text: &str) -> Option<SlackOp> {
    if let Some(url) = &origin.response_url {
        return Some(SlackOp::Respond { url: url.clone(), text: text.to_string() });
    }
    match (&origin.channel, &origin.user) {
        (Some(channel), Some(user)) => Some(SlackOp::PostEphemeral {
            channel: channel.clone(),
            user: user.clone(),
            thread_ts: origin.thread_ts.clone(),
            text: text.to_string(),
        }),
        _ => {
            tracing::info!(answer = text, "no one to answer (the event has no user or channel)");
            None
        }
    }
}
