//! The application's rules between the adapters and the domain: what people and alert sources
//! asked for ([`Request`], in words no adapter owns), and how the bot takes it ([`resolve`]): a
//! domain event for the incident concerned, an answer, a call, or nothing, with the reason.
//!
//! The chat adapter reads its payloads into requests (`crate::slack::read`); this module finds
//! the incident a request is about (named, implied by the thread or channel, or the person's
//! only one), maps commands, buttons and reactions to domain actions, and answers the read-only
//! commands with the domain's queries.

use chrono::{DateTime, Utc};

use super::inbox::{InboxEvent, Origin};
use super::outbox::{ChannelRef, Form, SlackOp, ThreadRef};
use super::store::{Place, Store, StoreError, ThreadMessage};
use crate::domain::alert::{Alert, SlackMessageRef};
use crate::domain::command::{self, Intent};
use crate::domain::decide::{Action, Event};
use crate::domain::ids::{ChannelId, IncidentId, Severity, UserId};
use crate::domain::incident::{Incident, Role};
use crate::domain::messages::{self, ButtonAction, Message};
use crate::domain::policy::Policy;
use crate::domain::queries;

/// The domain event a request comes to, the incident it is about, and where answers go.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub event: Event,
    pub incident: Option<IncidentId>,
    pub origin: Origin,
}

/// How a command reached the bot, which decides where its answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A slash command: answers go back privately (through the response URL when there is one).
    Slash { response_url: Option<String> },
    /// A mention of the bot in message `ts`: help and read-only answers reply in a thread on it
    /// for everyone, refusals only to the person. `thread_ts` is the thread the mention is in.
    Mention { ts: String, thread_ts: Option<String> },
}

/// A control on one of the bot's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Button(ButtonAction),
    /// The severity menu.
    Severity(Severity),
}

/// A new message that is not an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedMessage {
    pub channel: ChannelId,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub user: Option<UserId>,
    pub text: String,
    /// Posted by the bot itself.
    pub own: bool,
}

/// What an adapter read from one inbox event.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A domain event, ready as it is (alert webhooks, evidence, delivery reports, the CLI).
    Domain(Derived),
    /// An alert message appeared in an alert channel.
    AlertPosted { alert: Alert, channel: ChannelId },
    /// An alert message was edited: `alert` is what it says now, `before` what it said before
    /// when the chat sent that (otherwise the alert log's copy is used).
    AlertEdited { channel: ChannelId, ts: String, alert: Alert, before: Option<Alert> },
    /// A message in an alert channel was deleted; `title` is its alert's title when the chat sent
    /// the message as it was.
    AlertDeleted { channel: ChannelId, ts: String, title: Option<String> },
    /// Any other new message: kept when it is in an incident's thread or channel, for pins.
    Message(PostedMessage),
    /// A command typed by a person (`/incident ...`, or a mention of the bot).
    Command { text: String, by: UserId, channel: ChannelId, via: Via },
    /// A reaction on a message.
    Reaction { by: UserId, channel: ChannelId, ts: String, emoji: String },
    /// A button or menu on one of the bot's messages. `incident` is the one the control names;
    /// `message` the message it is on (to find the incident otherwise).
    Control {
        by: UserId,
        control: Control,
        incident: Option<IncidentId>,
        message: Option<(ChannelId, String)>,
        origin: Origin,
        trigger_id: Option<String>,
    },
    /// The root-cause form was submitted.
    RootCauseSubmitted { by: UserId, incident: Option<IncidentId>, text: String },
    /// Nothing for the bot; the reason is logged.
    Ignore(String),
}

/// Reads raw chat events from the inbox into requests. The chat adapter provides one, so the
/// processor stays ignorant of wire formats; reading is pure (no store, no network).
pub trait Reader: Send + 'static {
    fn read(&self, event: &InboxEvent, now: DateTime<Utc>) -> Request;
}

/// Reads no chat events: for tools and tests that only feed domain events.
pub struct DomainOnly;

impl Reader for DomainOnly {
    fn read(&self, event: &InboxEvent, _now: DateTime<Utc>) -> Request {
        Request::Ignore(format!("{} events are not handled without a chat adapter", event.kind()))
    }
}

/// How the application takes a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// A domain event for the processor to decide.
    Event(Box<Derived>),
    /// A private answer to the person who asked: a read-only answer, or (`refused`) why nothing
    /// was done and what to type instead.
    Answer { origin: Origin, text: String, refused: bool },
    /// Calls to make without changing any incident (a public reply, a form to open).
    Calls(Vec<SlackOp>),
    /// A message of an incident's thread or channel, to remember for pins.
    Remember(ThreadMessage),
    /// Nothing to do, and why.
    Ignore(String),
}

impl Resolution {
    fn event(event: Event, incident: Option<IncidentId>, origin: Origin) -> Resolution {
        Resolution::Event(Box::new(Derived { event, incident, origin }))
    }

    fn refuse(origin: &Origin, text: String) -> Resolution {
        Resolution::Answer { origin: origin.clone(), text, refused: true }
    }
}

/// Takes one request. Reads the store (never writes it); a storage error is returned so the
/// request is retried rather than answered wrongly.
pub fn resolve(
    request: Request,
    store: &dyn Store,
    policy: &Policy,
    now: DateTime<Utc>,
    workspace_url: Option<&str>,
) -> Result<Resolution, StoreError> {
    Ok(match request {
        Request::Domain(derived) => Resolution::Event(Box::new(derived)),
        Request::Ignore(reason) => Resolution::Ignore(reason),
        Request::AlertPosted { alert, channel } => {
            Resolution::event(Event::Alert(alert), None, Origin { channel: Some(channel), ..Origin::default() })
        }
        Request::AlertEdited { channel, ts, alert, before } => alert_edited(store, channel, &ts, alert, before)?,
        Request::AlertDeleted { channel, ts, title } => alert_deleted(store, channel, ts, title)?,
        Request::Message(message) => posted(store, message)?,
        Request::Command { text, by, channel, via } => {
            command(store, policy, now, workspace_url, &text, by, channel, via)?
        }
        Request::Reaction { by, channel, ts, emoji } => reaction(store, policy, by, channel, &ts, &emoji)?,
        Request::Control { by, control, incident, message, origin, trigger_id } => {
            control_used(store, by, control, incident, message, origin, trigger_id)?
        }
        Request::RootCauseSubmitted { by, incident, text } => {
            let origin = Origin { user: Some(by.clone()), ..Origin::default() };
            Resolution::event(Event::Act { by, action: Action::RootCause { text } }, incident, origin)
        }
    })
}

/// The incident whose alert message this is: the one the alert log says it went to, or the one
/// threaded on it.
fn incident_of_alert_message(
    store: &dyn Store,
    channel: &ChannelId,
    ts: &str,
    logged: Option<IncidentId>,
) -> Result<Option<IncidentId>, StoreError> {
    match logged {
        Some(id) => Ok(Some(id)),
        None => Ok(store.find_incident(&Place::message(channel, ts))?.map(|i| i.id)),
    }
}

/// An edit of an alert message, compared with the message as it was before (as the chat sent
/// it, or the alert log's copy). Unfurls and thread replies edit the message without changing
/// the alert; the domain sees both sides and decides. An edit never opens an incident.
fn alert_edited(
    store: &dyn Store,
    channel: ChannelId,
    ts: &str,
    alert: Alert,
    before: Option<Alert>,
) -> Result<Resolution, StoreError> {
    let logged = store.find_alert_by_message(&channel, ts)?;
    let Some(before) = before.or_else(|| logged.as_ref().map(|l| l.alert.clone())) else {
        return Ok(Resolution::Ignore(
            "an edit of a message that was never an alert here: edits never open incidents".into(),
        ));
    };
    let incident = incident_of_alert_message(store, &channel, ts, logged.and_then(|l| l.incident))?;
    let origin = Origin { channel: Some(channel), ..Origin::default() };
    Ok(Resolution::event(Event::AlertEdited { alert: Box::new(alert), before: Box::new(before) }, incident, origin))
}

/// A deleted message: when it was an incident's alert, the incident notes it.
fn alert_deleted(
    store: &dyn Store,
    channel: ChannelId,
    ts: String,
    title: Option<String>,
) -> Result<Resolution, StoreError> {
    let logged = store.find_alert_by_message(&channel, &ts)?;
    let logged_incident = logged.as_ref().and_then(|l| l.incident);
    let Some(incident) = incident_of_alert_message(store, &channel, &ts, logged_incident)? else {
        return Ok(Resolution::Ignore("a deleted message that was not an incident's alert".into()));
    };
    let title = logged.map(|l| l.alert.title).or(title).unwrap_or_else(|| "the alert".into());
    let origin = Origin { channel: Some(channel.clone()), ..Origin::default() };
    let message = SlackMessageRef { channel, ts };
    Ok(Resolution::event(Event::AlertDeleted { message, title }, Some(incident), origin))
}

/// A message in an incident's thread (or dedicated channel) is remembered for pins.
fn posted(store: &dyn Store, m: PostedMessage) -> Result<Resolution, StoreError> {
    let place = match m.thread_ts.as_deref().filter(|t| *t != m.ts) {
        Some(thread) => Place::message(&m.channel, thread),
        None => Place::Channel(m.channel.clone()),
    };
    Ok(match store.find_incident(&place)? {
        Some(incident) => Resolution::Remember(ThreadMessage {
            incident: incident.id,
            channel: m.channel,
            ts: m.ts,
            user: m.user,
            text: m.text,
        }),
        None if m.own => Resolution::Ignore("the bot's own message".into()),
        None => Resolution::Ignore("not an alert and not in an incident thread".into()),
    })
}

/// A command: read-only verbs are answered here, the rest become domain events for the incident
/// named, implied (the thread or channel it was typed in), or the person's only one.
#[allow(clippy::too_many_arguments)]
fn command(
    store: &dyn Store,
    policy: &Policy,
    now: DateTime<Utc>,
    workspace_url: Option<&str>,
    text: &str,
    by: UserId,
    channel: ChannelId,
    via: Via,
) -> Result<Resolution, StoreError> {
    let (origin, implied) = match &via {
        Via::Slash { response_url } => {
            let origin = Origin {
                user: Some(by.clone()),
                channel: Some(channel.clone()),
                thread_ts: None,
                response_url: response_url.clone(),
            };
            // In an incident's own channel the incident is implied.
            (origin, store.find_incident(&Place::Channel(channel.clone()))?.map(|i| i.id))
        }
        Via::Mention { ts, thread_ts } => {
            let origin = Origin {
                user: Some(by.clone()),
                channel: Some(channel.clone()),
                thread_ts: Some(thread_ts.clone().unwrap_or_else(|| ts.clone())),
                response_url: None,
            };
            let implied = match thread_ts {
                Some(t) => store.find_incident(&Place::message(&channel, t))?.map(|i| i.id),
                None => None,
            };
            (origin, implied)
        }
    };
    // Help and read-only answers: in the thread of a mention for everyone, else privately.
    let reply = |text: String| match &via {
        Via::Mention { .. } => Resolution::Calls(vec![SlackOp::PostMessage {
            channel: ChannelRef::Id(channel.clone()),
            thread: origin.thread_ts.clone().map(ThreadRef::Ts),
            message: Message::text(text),
            key: None,
        }]),
        Via::Slash { .. } => Resolution::Answer { origin: origin.clone(), text, refused: false },
    };
    let parsed = match command::parse(text) {
        Ok(parsed) => parsed,
        Err(command::CommandError::Empty) if matches!(via, Via::Mention { .. }) => {
            return Ok(reply(command::help_text()));
        }
        Err(e) => return Ok(Resolution::refuse(&origin, e.to_string())),
    };
    let named = parsed.incident.or(implied);
    let target = |store: &dyn Store| -> Result<Result<Incident, String>, StoreError> {
        target(store, named, &by, &parsed.typed)
    };
    let action = match parsed.command.clone().intent() {
        Intent::Help => return Ok(reply(command::help_text())),
        Intent::Oncall(team) => return Ok(reply(queries::oncall(policy, team.as_deref(), now))),
        Intent::List(scope) => {
            let incidents =
                if queries::list_needs_closed(scope) { store.all_incidents()? } else { store.open_incidents()? };
            return Ok(reply(queries::incident_list(&incidents, scope, &by)));
        }
        Intent::Stats(query) => {
            if let Some(t) = &query.team
                && policy.team(t).is_none()
            {
                return Ok(Resolution::refuse(
                    &origin,
                    messages::no_such_team_message(t, &queries::team_names(policy)),
                ));
            }
            let all = store.all_incidents()?;
            return Ok(reply(crate::domain::stats::stats(&all, &query, now, workspace_url).message()));
        }
        Intent::Followups => {
            let incidents = match named {
                Some(id) => match store.get_incident(id)? {
                    Some(i) => vec![i],
                    None => return Ok(Resolution::refuse(&origin, messages::no_such_incident_message(id))),
                },
                None => store.all_incidents()?,
            };
            return Ok(reply(messages::followups_message(&incidents.iter().collect::<Vec<_>>(), named)));
        }
        Intent::Timeline => {
            return Ok(match target(store)? {
                Ok(incident) => reply(messages::timeline_message(&incident)),
                Err(text) => Resolution::refuse(&origin, text),
            });
        }
        Intent::Declare { title, severity, team } => {
            if let Some(t) = &team
                && policy.team(t).is_none()
            {
                return Ok(Resolution::refuse(
                    &origin,
                    messages::no_such_team_message(t, &queries::team_names(policy)),
                ));
            }
            // Direct messages cannot hold an incident thread; use the team's channel then.
            let channel = (!channel.as_str().starts_with('D')).then_some(channel);
            return Ok(Resolution::event(Event::Declare { by, title, severity, team, channel }, None, origin));
        }
        Intent::Act(action) => action,
    };
    Ok(match target(store)? {
        Ok(incident) => Resolution::event(Event::Act { by, action }, Some(incident.id), origin),
        Err(text) => Resolution::refuse(&origin, text),
    })
}

/// The incident a command is about: named, or implied (see [`queries::implied_incident`]). The
/// error is the answer to give.
fn target(
    store: &dyn Store,
    named: Option<IncidentId>,
    user: &UserId,
    typed: &str,
) -> Result<Result<Incident, String>, StoreError> {
    if let Some(id) = named {
        return Ok(store.get_incident(id)?.ok_or_else(|| messages::no_such_incident_message(id)));
    }
    let open = store.open_incidents()?;
    Ok(queries::implied_incident(&open, user, typed).cloned())
}

/// A button or the severity menu.
fn control_used(
    store: &dyn Store,
    by: UserId,
    control: Control,
    incident: Option<IncidentId>,
    message: Option<(ChannelId, String)>,
    origin: Origin,
    trigger_id: Option<String>,
) -> Result<Resolution, StoreError> {
    let incident = match (incident, &message) {
        (Some(id), _) => Some(id),
        (None, Some((channel, ts))) => store.find_incident(&Place::message(channel, ts))?.map(|i| i.id),
        (None, None) => None,
    };
    let action = match control {
        Control::Severity(severity) => Action::SetSeverity { severity, reason: None },
        Control::Button(ButtonAction::TakeOver { role, from }) => Action::TakeOver { role, from },
        Control::Button(ButtonAction::TakeCommand) => {
            Action::Claim { role: Role::Commander, user: None, take_over: false }
        }
        Control::Button(ButtonAction::Investigate) => {
            Action::Claim { role: Role::Investigator, user: None, take_over: false }
        }
        Control::Button(ButtonAction::Mitigated) => Action::Mitigated { note: None },
        Control::Button(ButtonAction::Resolve) => Action::Resolve { summary: None },
        Control::Button(ButtonAction::AcceptSeverity(severity)) => Action::AcceptSuggestedSeverity { severity },
        Control::Button(button @ (ButtonAction::RootCauseFound | ButtonAction::AddFollowup)) => {
            // A form asks for the text; without an incident or a trigger, say what to type.
            let (form, hint): (Form, fn(Option<IncidentId>) -> String) = match button {
                ButtonAction::RootCauseFound => (Form::RootCause, messages::root_cause_command_hint),
                _ => (Form::Followup, messages::followup_command_hint),
            };
            return Ok(match (incident, trigger_id) {
                (Some(id), Some(trigger_id)) => Resolution::Calls(vec![SlackOp::AskForm {
                    trigger_id,
                    incident: id,
                    user: by,
                    channel: origin.channel.clone(),
                    form,
                }]),
                (id, _) => Resolution::refuse(&origin, hint(id)),
            });
        }
    };
    Ok(Resolution::event(Event::Act { by, action }, incident, origin))
}

/// Reactions: on a header or an alert message, claim roles and acknowledge; on an alert that
/// opened nothing, open an incident; on any message of an incident thread, pin it to the
/// timeline. Emoji names come from the policy's `[emoji]`; skin-tone variants
/// (`eyes::skin-tone-2`) count as the base emoji.
fn reaction(
    store: &dyn Store,
    policy: &Policy,
    by: UserId,
    channel: ChannelId,
    ts: &str,
    emoji: &str,
) -> Result<Resolution, StoreError> {
    let emoji_map = &policy.emoji;
    let base = emoji.split("::").next().unwrap_or(emoji);
    let origin = |thread_ts: Option<String>| Origin {
        user: Some(by.clone()),
        channel: Some(channel.clone()),
        thread_ts,
        response_url: None,
    };
    let act = |incident: &Incident, action: Action| {
        Resolution::event(
            Event::Act { by: by.clone(), action },
            Some(incident.id),
            origin(incident.slack.thread_ts.clone()),
        )
    };
    let incident = store.find_incident(&Place::message(&channel, ts))?;
    if base == emoji_map.pin {
        return Ok(match pin(store, &channel, ts, incident.as_ref())? {
            Some((incident, action)) => act(&incident, action),
            None => Resolution::Ignore("pin on a message outside any incident thread".into()),
        });
    }
    if base == policy.followups.emoji {
        // Any message of the thread becomes a follow-up, its text the work; one per message.
        return Ok(match pin(store, &channel, ts, incident.as_ref())? {
            Some((incident, Action::Pin { text, .. })) => {
                act(&incident, Action::Followup { text, owner: None, message_ts: Some(ts.to_string()) })
            }
            _ => Resolution::Ignore(format!(":{emoji}: on a message outside any incident thread")),
        });
    }
    if let Some(incident) = incident {
        let action = if base == emoji_map.commander {
            Action::Claim { role: Role::Commander, user: None, take_over: false }
        } else if base == emoji_map.investigator {
            Action::Claim { role: Role::Investigator, user: None, take_over: false }
        } else if base == emoji_map.acknowledge {
            Action::Acknowledge
        } else {
            return Ok(Resolution::Ignore(format!(":{emoji}: has no meaning here")));
        };
        return Ok(act(&incident, action));
    }
    if base == emoji_map.open {
        return Ok(match store.find_alert_by_message(&channel, ts)? {
            Some(logged) => {
                Resolution::event(Event::OpenFromAlert { by: by.clone(), alert: logged.alert }, None, origin(None))
            }
            None => Resolution::refuse(&origin(None), messages::not_an_alert_message()),
        });
    }
    Ok(Resolution::Ignore(format!(":{emoji}: on a message that is not an incident's")))
}

/// What a pin reaction copies to the timeline, and for which incident.
fn pin(
    store: &dyn Store,
    channel: &ChannelId,
    ts: &str,
    parent: Option<&Incident>,
) -> Result<Option<(Incident, Action)>, StoreError> {
    if let Some(message) = store.find_thread_message(channel, ts)? {
        let Some(incident) = store.get_incident(message.incident)? else { return Ok(None) };
        return Ok(Some((incident, Action::Pin { text: message.text, author: message.user })));
    }
    // The thread's parent (the alert) or the header.
    let Some(incident) = parent.cloned() else { return Ok(None) };
    let text = match store.find_alert_by_message(channel, ts)? {
        Some(logged) => logged.alert.title,
        None if incident.slack.header_ts.as_deref() == Some(ts) => "the incident header".to_string(),
        None => "a message in the thread".to_string(),
    };
    Ok(Some((incident, Action::Pin { text, author: None })))
}
