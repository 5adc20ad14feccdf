//! From Slack payloads (events, slash commands, interactions) to the application's requests.
//!
//! Pure reading of Slack's wire formats: which event it is, who sent it, where, and what it says.
//! What a request means for an incident is the application's business (`app::request`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::blocks::{
    FOLLOWUP_INPUT, FOLLOWUP_OWNER, FOLLOWUP_VIEW, ROOT_CAUSE_INPUT, ROOT_CAUSE_VIEW, SEVERITY_SELECT,
};
use super::client::BotIdentity;
use crate::app::inbox::{InboxEvent, Origin, SlashCommand};
use crate::app::request::{Control, PostedMessage, Reader, Request, Via};
use crate::domain::ids::{ChannelId, IncidentId, Severity, UserId};
use crate::domain::messages::ButtonAction;
use crate::domain::policy::Policy;
use crate::sources::slack_message::{MessageEvent, classify, is_datadog_app, parse_event, parse_message};

/// Reads Slack payloads as the bot `bot` in a workspace configured by `policy` (its alert
/// channels and alert bots).
pub struct SlackReader {
    policy: Arc<Policy>,
    bot: BotIdentity,
}

impl SlackReader {
    pub fn new(policy: Arc<Policy>, bot: BotIdentity) -> SlackReader {
        SlackReader { policy, bot }
    }
}

impl Reader for SlackReader {
    fn read(&self, event: &InboxEvent, now: DateTime<Utc>) -> Request {
        match event {
            InboxEvent::SlackEvent { event, .. } => match event.parse() {
                Ok(event) => self.slack_event(&event, now),
                Err(e) => Request::Ignore(format!("a Slack event that is not JSON: {e}")),
            },
            InboxEvent::SlashCommand { command } => slash(command),
            InboxEvent::Interaction { payload } => interaction(payload),
            other => Request::Ignore(format!("{} events are not Slack events", other.kind())),
        }
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn user_at(v: &Value, pointer: &str) -> Option<UserId> {
    v.pointer(pointer).and_then(Value::as_str).and_then(|u| UserId::parse(u).ok())
}

fn channel_at(v: &Value, pointer: &str) -> Option<ChannelId> {
    v.pointer(pointer).and_then(Value::as_str).and_then(|c| ChannelId::parse(c).ok())
}

impl SlackReader {
    fn is_own(&self, event: &Value) -> bool {
        let user = str_of(event, "user");
        let bot = str_of(event, "bot_id");
        user == Some(self.bot.user_id.as_str())
            || (bot.is_some() && bot == self.bot.bot_id.as_ref().map(|b| b.as_str()))
    }

    fn is_alert_bot(&self, message: &Value) -> bool {
        is_datadog_app(message)
            || str_of(message, "bot_id").is_some_and(|b| self.policy.slack.alert_bots.iter().any(|a| a.as_str() == b))
    }

    /// The alert channel a message event is in, if it is in one.
    fn alert_channel(&self, event: &Value) -> Option<ChannelId> {
        let channel = channel_at(event, "/channel")?;
        self.policy.slack.alert_channels.contains(&channel).then_some(channel)
    }

    fn slack_event(&self, event: &Value, now: DateTime<Utc>) -> Request {
        match str_of(event, "type") {
            Some("app_mention") => self.mention(event),
            Some("message") => self.message(event, now),
            Some("reaction_added") => self.reaction(event),
            Some(other) => Request::Ignore(format!("{other} events are not used")),
            None => Request::Ignore("event without a type".into()),
        }
    }

    /// Every kind of `message` event, each on purpose: new messages may be alerts or thread
    /// messages to remember; edits and deletions of alert messages concern their incident;
    /// thread bookkeeping, joins and the like are not alerts.
    fn message(&self, event: &Value, now: DateTime<Utc>) -> Request {
        match classify(event) {
            MessageEvent::Posted(message) => {
                let own = self.is_own(message);
                if !own && let Some(alert) = self.alert_message(event, now) {
                    return alert;
                }
                let (Some(channel), Some(ts)) = (channel_at(event, "/channel"), str_of(event, "ts")) else {
                    return Request::Ignore("a message without its channel or ts".into());
                };
                Request::Message(PostedMessage {
                    channel,
                    ts: ts.to_string(),
                    thread_ts: str_of(event, "thread_ts").map(String::from),
                    user: user_at(event, "/user"),
                    text: str_of(event, "text").unwrap_or_default().to_string(),
                    own,
                })
            }
            MessageEvent::Edited { message, previous } => self.edited(event, message, previous, now),
            MessageEvent::Deleted { ts, previous } => self.deleted(event, ts, previous, now),
            MessageEvent::ThreadReplied => {
                Request::Ignore("a thread parent's reply count changed (message_replied): not an alert".into())
            }
            MessageEvent::Other(subtype) => Request::Ignore(format!("{subtype} messages are not alerts")),
        }
    }

    /// A new message in an alert channel from Datadog's app or a configured alert bot is an alert.
    fn alert_message(&self, event: &Value, now: DateTime<Utc>) -> Option<Request> {
        let channel = self.alert_channel(event)?;
        let is_alert_bot = |m: &Value| self.is_alert_bot(m);
        match parse_event(event, now, &is_alert_bot) {
            Ok(Some(alert)) => Some(Request::AlertPosted { alert, channel }),
            Ok(None) => None,
            Err(e) => Some(Request::Ignore(format!("unreadable alert message: {e}"))),
        }
    }

    /// An edited message: an alert edit when it is an alert message now, with the message as it
    /// was before when Slack sent it (`previous_message`).
    fn edited(&self, event: &Value, message: &Value, previous: Option<&Value>, now: DateTime<Utc>) -> Request {
        if self.is_own(message) || previous.is_some_and(|p| self.is_own(p)) {
            return Request::Ignore("an edit of the bot's own message".into());
        }
        let Some(channel) = self.alert_channel(event) else {
            return Request::Ignore("an edit outside the alert channels".into());
        };
        let Some(ts) = str_of(message, "ts").or_else(|| previous.and_then(|p| str_of(p, "ts"))) else {
            return Request::Ignore("an edit without the message's ts".into());
        };
        let is_alert_bot = |m: &Value| self.is_alert_bot(m);
        let read = |m: &Value| parse_message(m, Some(channel.as_str()), Some(ts), now, &is_alert_bot);
        let alert = match read(message) {
            Ok(Some(alert)) => alert,
            Ok(None) => return Request::Ignore("an edit of a message that is not an alert".into()),
            Err(e) => return Request::Ignore(format!("an edit that cannot be read as an alert: {e}")),
        };
        let before = previous.and_then(|p| read(p).ok().flatten());
        Request::AlertEdited { channel, ts: ts.to_string(), alert, before }
    }

    /// A deleted message in an alert channel.
    fn deleted(&self, event: &Value, ts: &str, previous: Option<&Value>, now: DateTime<Utc>) -> Request {
        if previous.is_some_and(|p| self.is_own(p)) {
            return Request::Ignore("one of the bot's own messages was deleted".into());
        }
        let Some(channel) = self.alert_channel(event) else {
            return Request::Ignore("a deletion outside the alert channels".into());
        };
        let is_alert_bot = |m: &Value| self.is_alert_bot(m);
        let title = previous
            .and_then(|p| parse_message(p, Some(channel.as_str()), Some(ts), now, &is_alert_bot).ok().flatten())
            .map(|a| a.title);
        Request::AlertDeleted { channel, ts: ts.to_string(), title }
    }

    /// `@incident-commander <command>`: same grammar as the slash command.
    fn mention(&self, event: &Value) -> Request {
        if self.is_own(event) {
            return Request::Ignore("the bot mentioned itself".into());
        }
        let (Some(by), Some(channel), Some(ts)) =
            (user_at(event, "/user"), channel_at(event, "/channel"), str_of(event, "ts"))
        else {
            return Request::Ignore("mention without a readable user, channel or ts".into());
        };
        let mention = format!("<@{}>", self.bot.user_id);
        let text = str_of(event, "text").unwrap_or_default().replace(&mention, " ");
        let via = Via::Mention { ts: ts.to_string(), thread_ts: str_of(event, "thread_ts").map(String::from) };
        Request::Command { text, by, channel, via }
    }

    /// A reaction on a message.
    fn reaction(&self, event: &Value) -> Request {
        if self.is_own(event) {
            return Request::Ignore("the bot's own reaction".into());
        }
        let (Some(by), Some(channel), Some(ts), Some(emoji)) = (
            user_at(event, "/user"),
            channel_at(event, "/item/channel"),
            event.pointer("/item/ts").and_then(Value::as_str),
            str_of(event, "reaction"),
        ) else {
            return Request::Ignore("reaction without user, item or name".into());
        };
        Request::Reaction { by, channel, ts: ts.to_string(), emoji: emoji.to_string() }
    }
}

fn slash(cmd: &SlashCommand) -> Request {
    Request::Command {
        text: cmd.text.clone(),
        by: cmd.user_id.clone(),
        channel: cmd.channel_id.clone(),
        via: Via::Slash { response_url: cmd.response_url.clone() },
    }
}

fn interaction(payload: &Value) -> Request {
    match str_of(payload, "type") {
        Some("block_actions") => block_action(payload),
        Some("view_submission") => view_submission(payload),
        other => Request::Ignore(format!("{} interactions are not used", other.unwrap_or("untyped"))),
    }
}

/// A button or the severity menu on one of the bot's messages.
fn block_action(payload: &Value) -> Request {
    let Some(by) = user_at(payload, "/user/id") else {
        return Request::Ignore("interaction without a user".into());
    };
    let channel = channel_at(payload, "/container/channel_id").or_else(|| channel_at(payload, "/channel/id"));
    let origin = Origin {
        user: Some(by.clone()),
        channel: channel.clone(),
        thread_ts: None,
        response_url: str_of(payload, "response_url").map(String::from),
    };
    let Some(action) = payload.pointer("/actions/0") else {
        return Request::Ignore("interaction without an action".into());
    };
    let action_id = str_of(action, "action_id").unwrap_or_default();
    // A button's value is its incident, then what the action needs besides (a take-over: the
    // holder it expects).
    let mut value = str_of(action, "value").unwrap_or_default().split_whitespace();
    let (value_incident, detail) = (value.next(), value.next());
    let incident = value_incident.and_then(|v| v.parse::<IncidentId>().ok());
    let message_ts = payload.pointer("/container/message_ts").and_then(Value::as_str);
    let message = channel.zip(message_ts.map(String::from));
    let control = if action_id == SEVERITY_SELECT {
        match action.pointer("/selected_option/value").and_then(Value::as_str).and_then(|v| v.parse::<Severity>().ok())
        {
            Some(severity) => Control::Severity(severity),
            None => return Request::Ignore("severity select without a value".into()),
        }
    } else {
        match ButtonAction::from_id(action_id, detail) {
            Some(button) => Control::Button(button),
            None => return Request::Ignore(format!("unknown action `{action_id}`")),
        }
    };
    let trigger_id = str_of(payload, "trigger_id").map(String::from);
    Request::Control { by, control, incident, message, origin, trigger_id }
}

/// One of the bot's modals was submitted (root cause, follow-up).
fn view_submission(payload: &Value) -> Request {
    let form = payload.pointer("/view/callback_id").and_then(Value::as_str);
    if form != Some(ROOT_CAUSE_VIEW) && form != Some(FOLLOWUP_VIEW) {
        return Request::Ignore("a view this bot did not open".into());
    }
    let Some(by) = user_at(payload, "/user/id") else {
        return Request::Ignore("view submission without a user".into());
    };
    let incident =
        payload.pointer("/view/private_metadata").and_then(Value::as_str).and_then(|m| m.parse::<IncidentId>().ok());
    let state = |block: &str, field: &str| {
        payload.pointer(&format!("/view/state/values/{block}/{block}/{field}")).and_then(Value::as_str)
    };
    if form == Some(FOLLOWUP_VIEW) {
        let text = state(FOLLOWUP_INPUT, "value").unwrap_or_default().to_string();
        let owner = state(FOLLOWUP_OWNER, "selected_user").and_then(|u| UserId::parse(u).ok());
        let origin = Origin { user: Some(by.clone()), ..Origin::default() };
        return Request::Domain(crate::app::request::Derived {
            event: crate::domain::decide::Event::Act {
                by,
                action: crate::domain::decide::Action::Followup { text, owner, message_ts: None },
            },
            incident,
            origin,
        });
    }
    let text = state(ROOT_CAUSE_INPUT, "value").unwrap_or_default().to_string();
    Request::RootCauseSubmitted { by, incident, text }
}
