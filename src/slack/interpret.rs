//! From Slack payloads (events, slash commands, interactions) to domain events and direct answers.
//!
//! Runs inside the serial processor, so it may read the store; it never writes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::blocks::{ROOT_CAUSE_INPUT, ROOT_CAUSE_VIEW, SEVERITY_SELECT};
use super::client::BotIdentity;
use crate::app::processor::{Derived, Interpretation, Interpreter};
use crate::app::render;
use crate::domain::alert::SlackMessageRef;
use crate::domain::command::{self, Command, CommandError, ListScope, Target};
use crate::domain::decide::{Action, Event};
use crate::domain::ids::{ChannelId, IncidentId, Severity, UserId};
use crate::domain::incident::{Incident, Role};
use crate::domain::messages::{self, ButtonAction, Message};
use crate::policy::Policy;
use crate::sources::slack_message::{MessageEvent, classify, is_datadog_app, parse_event, parse_message};
use crate::store::records::SlashCommand;
use crate::store::{ChannelRef, InboxEvent, Origin, OutboxEntry, SlackOp, Store, ThreadMessage, ThreadRef};

/// Alert parsing plugs in here (see `sources`): given a message event in an alert channel, the
/// domain event it means, if any.
pub type AlertReader =
    Box<dyn Fn(&Value, &Policy, &BotIdentity, &dyn Store, DateTime<Utc>) -> Option<Interpretation> + Send>;

pub struct SlackInterpreter {
    policy: Arc<Policy>,
    bot: BotIdentity,
    alerts: Option<AlertReader>,
}

impl SlackInterpreter {
    pub fn new(policy: Arc<Policy>, bot: BotIdentity) -> SlackInterpreter {
        SlackInterpreter { policy, bot, alerts: None }
    }

    /// Reads alert messages with `reader`.
    pub fn with_alerts(mut self, reader: AlertReader) -> SlackInterpreter {
        self.alerts = Some(reader);
        self
    }
}

impl Interpreter for SlackInterpreter {
    fn interpret(&mut self, event: &InboxEvent, store: &dyn Store, now: DateTime<Utc>) -> Interpretation {
        match event {
            InboxEvent::SlackEvent { event, .. } => self.slack_event(event, store, now),
            InboxEvent::SlashCommand { command } => self.slash(command, store, now),
            InboxEvent::Interaction { payload } => self.interaction(payload, store, now),
            other => Interpretation::Ignore(format!("{} events are not Slack events", other.kind())),
        }
    }
}

fn calls(ops: Vec<SlackOp>, now: DateTime<Utc>) -> Interpretation {
    Interpretation::Calls(ops.into_iter().map(|op| OutboxEntry { incident: None, op, created_at: now }).collect())
}

/// A private answer wrapped as calls.
fn answer(origin: &Origin, text: &str, now: DateTime<Utc>) -> Interpretation {
    calls(render::answer(origin, text).into_iter().collect(), now)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

impl SlackInterpreter {
    fn is_own(&self, event: &Value) -> bool {
        let user = str_of(event, "user");
        let bot = str_of(event, "bot_id");
        user == Some(self.bot.user_id.as_str())
            || (bot.is_some() && bot == self.bot.bot_id.as_ref().map(|b| b.as_str()))
    }

    fn slack_event(&self, event: &Value, store: &dyn Store, now: DateTime<Utc>) -> Interpretation {
        match str_of(event, "type") {
            Some("app_mention") => self.mention(event, store, now),
            Some("message") => self.message(event, store, now),
            Some("reaction_added") => self.reaction(event, store),
            Some(other) => Interpretation::Ignore(format!("{other} events are not used")),
            None => Interpretation::Ignore("event without a type".into()),
        }
    }

    /// Every kind of `message` event, each on purpose: new messages may be alerts or thread
    /// messages to remember; edits and deletions of alert messages concern their incident;
    /// thread bookkeeping, joins and the like are not alerts.
    fn message(&self, event: &Value, store: &dyn Store, now: DateTime<Utc>) -> Interpretation {
        match classify(event) {
            MessageEvent::Posted(message) => {
                let own = self.is_own(message);
                if !own && let Some(alert) = self.alert_message(event, now) {
                    return alert;
                }
                if let Some(message) = thread_message(event, store) {
                    return Interpretation::Remember(message);
                }
                Interpretation::Ignore(if own {
                    "the bot's own message".into()
                } else {
                    "not an alert and not in an incident thread".into()
                })
            }
            MessageEvent::Edited { message, previous } => self.edited(event, message, previous, store, now),
            MessageEvent::Deleted { ts, previous } => self.deleted(event, ts, previous, store, now),
            MessageEvent::ThreadReplied => {
                Interpretation::Ignore("a thread parent's reply count changed (message_replied): not an alert".into())
            }
            MessageEvent::Other(subtype) => Interpretation::Ignore(format!("{subtype} messages are not alerts")),
        }
    }

    fn is_alert_bot(&self, message: &Value) -> bool {
        is_datadog_app(message)
            || str_of(message, "bot_id").is_some_and(|b| self.policy.slack.alert_bots.iter().any(|a| a.as_str() == b))
    }

    /// The alert channel a message event is in, if it is in one.
    fn alert_channel(&self, event: &Value) -> Option<ChannelId> {
        let channel = str_of(event, "channel").and_then(|c| ChannelId::parse(c).ok())?;
        self.policy.slack.alert_channels.contains(&channel).then_some(channel)
    }

    /// An edited message: an alert edit when it was (and is) an alert message, compared with the
    /// message as it was before the edit (`previous_message`, or the alert log's copy when Slack
    /// left it out). Unfurls and thread replies edit the message without changing the alert; the
    /// domain sees both sides and decides.
    fn edited(
        &self,
        event: &Value,
        message: &Value,
        previous: Option<&Value>,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Interpretation {
        if self.is_own(message) || previous.is_some_and(|p| self.is_own(p)) {
            return Interpretation::Ignore("an edit of the bot's own message".into());
        }
        let Some(channel) = self.alert_channel(event) else {
            return Interpretation::Ignore("an edit outside the alert channels".into());
        };
        let Some(ts) = str_of(message, "ts").or_else(|| previous.and_then(|p| str_of(p, "ts"))) else {
            return Interpretation::Ignore("an edit without the message's ts".into());
        };
        let is_alert_bot = |m: &Value| self.is_alert_bot(m);
        let read = |m: &Value| parse_message(m, Some(channel.as_str()), Some(ts), now, &is_alert_bot);
        let alert = match read(message) {
            Ok(Some(alert)) => alert,
            Ok(None) => return Interpretation::Ignore("an edit of a message that is not an alert".into()),
            Err(e) => return Interpretation::Ignore(format!("an edit that cannot be read as an alert: {e}")),
        };
        let logged = store.find_alert_by_message(&channel, ts).ok().flatten();
        let before = previous.and_then(|p| read(p).ok().flatten()).or_else(|| logged.as_ref().map(|l| l.alert.clone()));
        let Some(before) = before else {
            return Interpretation::Ignore(
                "an edit of a message that was never an alert here: edits never open incidents".into(),
            );
        };
        let incident = logged
            .and_then(|l| l.incident)
            .or_else(|| store.find_incident_by_message(&channel, ts).ok().flatten().map(|i| i.id));
        let origin = Origin { channel: Some(channel), ..Origin::default() };
        let event = Event::AlertEdited { alert: Box::new(alert), before: Box::new(before) };
        Interpretation::Event(Box::new(Derived { event, incident, origin }))
    }

    /// A deleted message: when it was an alert message with an incident, the incident notes it.
    fn deleted(
        &self,
        event: &Value,
        ts: &str,
        previous: Option<&Value>,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Interpretation {
        if previous.is_some_and(|p| self.is_own(p)) {
            return Interpretation::Ignore("one of the bot's own messages was deleted".into());
        }
        let Some(channel) = self.alert_channel(event) else {
            return Interpretation::Ignore("a deletion outside the alert channels".into());
        };
        let logged = store.find_alert_by_message(&channel, ts).ok().flatten();
        let incident = logged
            .as_ref()
            .and_then(|l| l.incident)
            .or_else(|| store.find_incident_by_message(&channel, ts).ok().flatten().map(|i| i.id));
        let Some(incident) = incident else {
            return Interpretation::Ignore("a deleted message that was not an incident's alert".into());
        };
        let is_alert_bot = |m: &Value| self.is_alert_bot(m);
        let title = logged.map(|l| l.alert.title).or_else(|| {
            let alert = parse_message(previous?, Some(channel.as_str()), Some(ts), now, &is_alert_bot).ok()??;
            Some(alert.title)
        });
        let message = SlackMessageRef { channel: channel.clone(), ts: ts.to_string() };
        let event = Event::AlertDeleted { message, title: title.unwrap_or_else(|| "the alert".into()) };
        let origin = Origin { channel: Some(channel), ..Origin::default() };
        Interpretation::Event(Box::new(Derived { event, incident: Some(incident), origin }))
    }

    /// A new message in an alert channel from Datadog's app or a configured alert bot is an alert.
    fn alert_message(&self, event: &Value, now: DateTime<Utc>) -> Option<Interpretation> {
        let channel = self.alert_channel(event)?;
        let is_alert_bot = |m: &Value| self.is_alert_bot(m);
        match parse_event(event, now, &is_alert_bot) {
            Ok(Some(alert)) => {
                let origin = Origin { channel: Some(channel), ..Origin::default() };
                Some(Interpretation::Event(Box::new(Derived { event: Event::Alert(alert), incident: None, origin })))
            }
            Ok(None) => None,
            Err(e) => Some(Interpretation::Ignore(format!("unreadable alert message: {e}"))),
        }
    }

    /// `@incident-commander <command>`: same grammar as the slash command. Help and errors go in a
    /// thread on the mention (errors only to the person who asked).
    fn mention(&self, event: &Value, store: &dyn Store, now: DateTime<Utc>) -> Interpretation {
        if self.is_own(event) {
            return Interpretation::Ignore("the bot mentioned itself".into());
        }
        let (Some(user), Some(channel), Some(ts)) =
            (str_of(event, "user"), str_of(event, "channel"), str_of(event, "ts"))
        else {
            return Interpretation::Ignore("mention without user, channel or ts".into());
        };
        let (Ok(user), Ok(channel)) = (UserId::parse(user), ChannelId::parse(channel)) else {
            return Interpretation::Ignore("mention with unreadable ids".into());
        };
        let thread_ts = str_of(event, "thread_ts").unwrap_or(ts).to_string();
        let mention = format!("<@{}>", self.bot.user_id);
        let text = str_of(event, "text").unwrap_or_default().replace(&mention, " ");
        let origin = Origin {
            user: Some(user.clone()),
            channel: Some(channel.clone()),
            thread_ts: Some(thread_ts.clone()),
            response_url: None,
        };
        let in_thread = str_of(event, "thread_ts")
            .and_then(|t| store.find_incident_by_message(&channel, t).ok().flatten())
            .map(|i| i.id);
        let reply_channel = channel.clone();
        let public_reply = move |text: String| {
            calls(
                vec![SlackOp::PostMessage {
                    channel: ChannelRef::Id(reply_channel.clone()),
                    thread: Some(ThreadRef::Ts(thread_ts.clone())),
                    message: Message::text(text),
                    key: None,
                }],
                now,
            )
        };
        match command::parse(&text) {
            Ok(parsed) if parsed.command == Command::Help => public_reply(command::help_text()),
            Ok(parsed) => self.command(parsed, in_thread, user, channel, origin, store, now, public_reply),
            Err(CommandError::Empty) => public_reply(command::help_text()),
            Err(e) => answer(&origin, &e.to_string(), now),
        }
    }

    fn slash(&self, cmd: &SlashCommand, store: &dyn Store, now: DateTime<Utc>) -> Interpretation {
        let origin = Origin {
            user: Some(cmd.user_id.clone()),
            channel: Some(cmd.channel_id.clone()),
            thread_ts: None,
            response_url: cmd.response_url.clone(),
        };
        let parsed = match command::parse(&cmd.text) {
            Ok(p) => p,
            Err(e) => return answer(&origin, &e.to_string(), now),
        };
        // In an incident's own channel the incident is implied.
        let in_channel = store.find_incident_by_message(&cmd.channel_id, "").ok().flatten().map(|i| i.id);
        let reply_origin = origin.clone();
        let reply = move |text: String| answer(&reply_origin, &text, now);
        self.command(parsed, in_channel, cmd.user_id.clone(), cmd.channel_id.clone(), origin, store, now, reply)
    }

    /// Runs a parsed command for `user`. Read-only verbs are answered here; the rest become
    /// domain events for the incident named, implied (`implied`: the thread or channel it was
    /// typed in), or the caller's only one.
    #[allow(clippy::too_many_arguments)]
    fn command(
        &self,
        parsed: command::Parsed,
        implied: Option<IncidentId>,
        user: UserId,
        channel: ChannelId,
        origin: Origin,
        store: &dyn Store,
        now: DateTime<Utc>,
        reply: impl Fn(String) -> Interpretation,
    ) -> Interpretation {
        let named = parsed.incident.or(implied);
        let typed = parsed.typed.as_str();
        let action = match parsed.command {
            Command::Help => return reply(command::help_text()),
            Command::Oncall(team) => return reply(self.oncall(team.as_deref(), now)),
            Command::List(scope) => return reply(list(store, scope, &user)),
            Command::Timeline => {
                return match self.target(named, &user, typed, store) {
                    Ok(incident) => reply(messages::timeline_message(&incident)),
                    Err(text) => answer(&origin, &text, now),
                };
            }
            Command::Declare { title, severity, team } => {
                if let Some(t) = &team
                    && self.policy.team(t).is_none()
                {
                    let names: Vec<&str> = self.policy.teams.iter().map(|t| t.name.as_str()).collect();
                    return answer(&origin, &format!("There is no team `{t}`. Teams: {}.", names.join(", ")), now);
                }
                // Direct messages cannot hold an incident thread; use the team's channel then.
                let channel = (!channel.as_str().starts_with('D')).then_some(channel);
                let event = Event::Declare { by: user, title, severity, team, channel };
                return Interpretation::Event(Box::new(Derived { event, incident: None, origin }));
            }
            Command::Ack => Action::Acknowledge,
            Command::Sev { severity, reason } => Action::SetSeverity { severity, reason },
            Command::Commander(target) => claim(Role::Commander, target),
            Command::Investigator(target) => claim(Role::Investigator, target),
            Command::Status(text) => Action::Status { text },
            Command::Mitigated(note) => Action::Mitigated { note },
            Command::RootCause(text) => Action::RootCause { text },
            Command::Resolve(summary) => Action::Resolve { summary },
            Command::Reopen => Action::Reopen,
            Command::Note(text) => Action::Note { text },
        };
        match self.target(named, &user, typed, store) {
            Ok(incident) => Interpretation::Event(Box::new(Derived {
                event: Event::Act { by: user, action },
                incident: Some(incident.id),
                origin,
            })),
            Err(text) => answer(&origin, &text, now),
        }
    }

    /// The incident a command is about: named, implied, or the caller's only open one.
    fn target(
        &self,
        named: Option<IncidentId>,
        user: &UserId,
        typed: &str,
        store: &dyn Store,
    ) -> Result<Incident, String> {
        if let Some(id) = named {
            return store
                .get_incident(id)
                .map_err(|e| format!("Cannot read {id}: {e}"))?
                .ok_or_else(|| format!("{id} does not exist. `/incident list all` shows every incident."));
        }
        let open = store.open_incidents().map_err(|e| format!("Cannot read incidents: {e}"))?;
        let mine: Vec<&Incident> = open.iter().filter(|i| i.role_of(user).is_some()).collect();
        match (mine.as_slice(), open.as_slice()) {
            ([one], _) => Ok((*one).clone()),
            ([], [only]) => Ok(only.clone()),
            ([], []) => Err("There is no open incident. `/incident declare <title>` opens one.".into()),
            ([], many) => Err(messages::which_incident_message(&many.iter().collect::<Vec<_>>(), typed, false)),
            (several, _) => Err(messages::which_incident_message(several, typed, true)),
        }
    }

    fn oncall(&self, team: Option<&str>, now: DateTime<Utc>) -> String {
        let teams: Vec<_> = match team {
            Some(name) => match self.policy.team(name) {
                Some(t) => vec![t],
                None => {
                    let names: Vec<&str> = self.policy.teams.iter().map(|t| t.name.as_str()).collect();
                    return format!("There is no team `{name}`. Teams: {}.", names.join(", "));
                }
            },
            None => self.policy.teams.iter().collect(),
        };
        let mut out = String::from("*On call now*\n");
        for t in teams {
            let shift = t.rotation.shift_at(now);
            let until = shift.ends_at.with_timezone(&t.rotation.time_zone()).format("%a %d %b %H:%M %Z").to_string();
            out.push_str(&messages::oncall_line(&t.name, shift.primary, shift.next, &until));
            out.push('\n');
        }
        out.trim_end().to_string()
    }

    fn interaction(&self, payload: &Value, store: &dyn Store, now: DateTime<Utc>) -> Interpretation {
        if str_of(payload, "type") == Some("view_submission") {
            return self.view_submission(payload);
        }
        if str_of(payload, "type") != Some("block_actions") {
            return Interpretation::Ignore(format!(
                "{} interactions are not used",
                str_of(payload, "type").unwrap_or("untyped")
            ));
        }
        let Some(user) = payload.pointer("/user/id").and_then(Value::as_str).and_then(|u| UserId::parse(u).ok()) else {
            return Interpretation::Ignore("interaction without a user".into());
        };
        let channel = payload
            .pointer("/container/channel_id")
            .or_else(|| payload.pointer("/channel/id"))
            .and_then(Value::as_str)
            .and_then(|c| ChannelId::parse(c).ok());
        let origin = Origin {
            user: Some(user.clone()),
            channel: channel.clone(),
            thread_ts: None,
            response_url: str_of(payload, "response_url").map(String::from),
        };
        let Some(action) = payload.pointer("/actions/0") else {
            return Interpretation::Ignore("interaction without an action".into());
        };
        let action_id = str_of(action, "action_id").unwrap_or_default();
        // A button's value is its incident, then what the action needs besides (a take-over: the
        // holder it expects).
        let mut value = str_of(action, "value").unwrap_or_default().split_whitespace();
        let (value_incident, detail) = (value.next(), value.next());
        let incident = value_incident.and_then(|v| v.parse::<IncidentId>().ok()).or_else(|| {
            let ts = payload.pointer("/container/message_ts").and_then(Value::as_str)?;
            store.find_incident_by_message(channel.as_ref()?, ts).ok().flatten().map(|i| i.id)
        });
        let domain_action = if action_id == SEVERITY_SELECT {
            match action
                .pointer("/selected_option/value")
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<Severity>().ok())
            {
                Some(severity) => Action::SetSeverity { severity, reason: None },
                None => return Interpretation::Ignore("severity select without a value".into()),
            }
        } else {
            match ButtonAction::from_id(action_id, detail) {
                Some(ButtonAction::TakeOver { role, from }) => Action::TakeOver { role, from },
                Some(ButtonAction::TakeCommand) => {
                    Action::Claim { role: Role::Commander, user: None, take_over: false }
                }
                Some(ButtonAction::Investigate) => {
                    Action::Claim { role: Role::Investigator, user: None, take_over: false }
                }
                Some(ButtonAction::Mitigated) => Action::Mitigated { note: None },
                Some(ButtonAction::Resolve) => Action::Resolve { summary: None },
                Some(ButtonAction::AcceptSeverity(severity)) => Action::AcceptSuggestedSeverity { severity },
                Some(ButtonAction::RootCauseFound) => {
                    let (Some(id), Some(trigger_id)) = (incident, str_of(payload, "trigger_id")) else {
                        return Interpretation::Answer {
                            origin,
                            text: "Record the root cause with `/incident rootcause INC-<n> <what caused it>`.".into(),
                        };
                    };
                    let op = SlackOp::AskRootCause { trigger_id: trigger_id.to_string(), incident: id, user, channel };
                    return calls(vec![op], now);
                }
                None => return Interpretation::Ignore(format!("unknown action `{action_id}`")),
            }
        };
        Interpretation::Event(Box::new(Derived {
            event: Event::Act { by: user, action: domain_action },
            incident,
            origin,
        }))
    }

    /// The root-cause modal was submitted.
    fn view_submission(&self, payload: &Value) -> Interpretation {
        if payload.pointer("/view/callback_id").and_then(Value::as_str) != Some(ROOT_CAUSE_VIEW) {
            return Interpretation::Ignore("a view this bot did not open".into());
        }
        let Some(user) = payload.pointer("/user/id").and_then(Value::as_str).and_then(|u| UserId::parse(u).ok()) else {
            return Interpretation::Ignore("view submission without a user".into());
        };
        let incident = payload
            .pointer("/view/private_metadata")
            .and_then(Value::as_str)
            .and_then(|m| m.parse::<IncidentId>().ok());
        let text = payload
            .pointer(&format!("/view/state/values/{ROOT_CAUSE_INPUT}/{ROOT_CAUSE_INPUT}/value"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let origin = Origin { user: Some(user.clone()), ..Origin::default() };
        Interpretation::Event(Box::new(Derived {
            event: Event::Act { by: user, action: Action::RootCause { text } },
            incident,
            origin,
        }))
    }

    /// Reactions: on a header or an alert message, claim roles and acknowledge; on an alert that
    /// opened nothing, open an incident; on any message of an incident thread, pin it to the
    /// timeline. Emoji names come from the policy's `[emoji]`.
    fn reaction(&self, event: &Value, store: &dyn Store) -> Interpretation {
        if self.is_own(event) {
            return Interpretation::Ignore("the bot's own reaction".into());
        }
        let (Some(user), Some(channel), Some(ts), Some(emoji)) = (
            str_of(event, "user").and_then(|u| UserId::parse(u).ok()),
            event.pointer("/item/channel").and_then(Value::as_str).and_then(|c| ChannelId::parse(c).ok()),
            event.pointer("/item/ts").and_then(Value::as_str),
            str_of(event, "reaction"),
        ) else {
            return Interpretation::Ignore("reaction without user, item or name".into());
        };
        let emoji_map = &self.policy.emoji;
        // Skin-tone variants (`eyes::skin-tone-2`) count as the base emoji.
        let base = emoji.split("::").next().unwrap_or(emoji);
        let origin = |thread_ts: Option<String>| Origin {
            user: Some(user.clone()),
            channel: Some(channel.clone()),
            thread_ts,
            response_url: None,
        };
        let act = |incident: &Incident, action: Action| {
            Interpretation::Event(Box::new(Derived {
                event: Event::Act { by: user.clone(), action },
                incident: Some(incident.id),
                origin: origin(incident.slack.thread_ts.clone()),
            }))
        };
        let incident = store.find_incident_by_message(&channel, ts).ok().flatten();
        if base == emoji_map.pin {
            return match pin(&channel, ts, incident.as_ref(), store) {
                Some((incident, action)) => act(&incident, action),
                None => Interpretation::Ignore("pin on a message outside any incident thread".into()),
            };
        }
        if let Some(incident) = incident {
            let action = if base == emoji_map.commander {
                Action::Claim { role: Role::Commander, user: None, take_over: false }
            } else if base == emoji_map.investigator {
                Action::Claim { role: Role::Investigator, user: None, take_over: false }
            } else if base == emoji_map.acknowledge {
                Action::Acknowledge
            } else {
                return Interpretation::Ignore(format!(":{emoji}: has no meaning here"));
            };
            return act(&incident, action);
        }
        if base == emoji_map.open {
            return match store.find_alert_by_message(&channel, ts).ok().flatten() {
                Some(logged) => Interpretation::Event(Box::new(Derived {
                    event: Event::OpenFromAlert { by: user.clone(), alert: logged.alert },
                    incident: None,
                    origin: origin(None),
                })),
                None => Interpretation::Answer {
                    origin: origin(None),
                    text: "That message is not an alert I know, so I cannot open an incident from it. Use `/incident declare <title>` instead.".into(),
                },
            };
        }
        Interpretation::Ignore(format!(":{emoji}: on a message that is not an incident's"))
    }
}

/// What a pin reaction copies to the timeline, and for which incident.
fn pin(channel: &ChannelId, ts: &str, parent: Option<&Incident>, store: &dyn Store) -> Option<(Incident, Action)> {
    if let Some(message) = store.find_thread_message(channel, ts).ok().flatten() {
        let incident = store.get_incident(message.incident).ok().flatten()?;
        return Some((incident, Action::Pin { text: message.text, author: message.user }));
    }
    // The thread's parent (the alert) or the header.
    let incident = parent?.clone();
    let text = match store.find_alert_by_message(channel, ts).ok().flatten() {
        Some(logged) => logged.alert.title,
        None if incident.slack.header_ts.as_deref() == Some(ts) => "the incident header".to_string(),
        None => "a message in the thread".to_string(),
    };
    Some((incident, Action::Pin { text, author: None }))
}

/// A message in an incident's thread (or dedicated channel), to remember for pins.
fn thread_message(event: &Value, store: &dyn Store) -> Option<ThreadMessage> {
    if str_of(event, "subtype").is_some_and(|s| s != "bot_message" && s != "thread_broadcast") {
        return None;
    }
    let channel = str_of(event, "channel").and_then(|c| ChannelId::parse(c).ok())?;
    let ts = str_of(event, "ts")?;
    let incident = match str_of(event, "thread_ts").filter(|t| *t != ts) {
        Some(thread) => store.find_incident_by_message(&channel, thread).ok().flatten(),
        None => store.find_incident_by_message(&channel, "").ok().flatten(),
    }?;
    Some(ThreadMessage {
        incident: incident.id,
        channel,
        ts: ts.to_string(),
        user: str_of(event, "user").and_then(|u| UserId::parse(u).ok()),
        text: str_of(event, "text").unwrap_or_default().to_string(),
    })
}

fn claim(role: Role, target: Target) -> Action {
    match target {
        Target::Claim => Action::Claim { role, user: None, take_over: false },
        Target::Me => Action::Claim { role, user: None, take_over: true },
        Target::User(u) => Action::Claim { role, user: Some(u), take_over: true },
    }
}

fn list(store: &dyn Store, scope: ListScope, user: &UserId) -> String {
    let all = match scope {
        ListScope::All => store.all_incidents(),
        ListScope::Open | ListScope::Mine => store.open_incidents(),
    };
    let all = match all {
        Ok(a) => a,
        Err(e) => return format!("Cannot read incidents: {e}"),
    };
    let chosen: Vec<&Incident> = match scope {
        ListScope::Mine => all.iter().filter(|i| i.role_of(user).is_some()).collect(),
        _ => all.iter().collect(),
    };
    let title = match scope {
        ListScope::Open => "Open incidents",
        ListScope::All => "All incidents",
        ListScope::Mine => "Your open incidents",
    };
    messages::incident_list_message(title, &chosen)
}
