//! The events real Slack sends besides the one a person's action obviously causes: the app's own
//! messages coming back as events, `message_changed` for a thread parent when a reply lands in its
//! thread (and `message_replied`, which the Events API sends without its subtype), and
//! `message_changed` when Slack unfurls a link. The sandbox sends them by default, so the bot is
//! tested against them everywhere.
//!
//! Every shape here is modelled on a recorded payload in the reference folder, named at each
//! builder: `slack/events/real-captures/` (real workspace captures) and the Slack documentation
//! examples in `slack/docs-excerpts/events_api_doc_examples.txt`.

use serde_json::{Value, json};

/// Which secondary events the sandbox sends. All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondaryEvents {
    /// The app's own `chat.postMessage` and `chat.update` come back as `message` events (an app
    /// subscribed to `message.channels` receives its own messages, as real Slack does).
    pub own_messages: bool,
    /// A reply in a thread edits its parent (`reply_count`, `latest_reply`, `reply_users`): a
    /// `message_changed` for the parent.
    pub thread_parent_changed: bool,
    /// The same reply also sends `message_replied`, without its subtype (Slack documents this as
    /// a known bug of the Events API).
    pub message_replied: bool,
    /// A link in a message's text unfurls: a `message_changed` adding the preview attachment.
    /// Apps' own posts unfurl text links only with `unfurl_links: true`, as on Slack.
    pub unfurls: bool,
}

impl Default for SecondaryEvents {
    fn default() -> SecondaryEvents {
        SecondaryEvents { own_messages: true, thread_parent_changed: true, message_replied: true, unfurls: true }
    }
}

impl SecondaryEvents {
    /// None of them: only the events a test delivers itself.
    pub const NONE: SecondaryEvents =
        SecondaryEvents { own_messages: false, thread_parent_changed: false, message_replied: false, unfurls: false };
}

/// A message as Slack nests it inside another event (`message`, `previous_message`): without the
/// envelope-level fields (`real-captures/message_changed_unfurl.json` has no `channel` or
/// `event_ts` inside `message`).
pub fn nested(raw: &Value) -> Value {
    let mut m = raw.clone();
    if let Some(obj) = m.as_object_mut() {
        for k in ["channel", "event_ts", "channel_type"] {
            obj.remove(k);
        }
    }
    m
}

/// `message_changed`, shaped like `real-captures/message_changed_unfurl.json`: `hidden`, the
/// message as it is now and as it was, the event's own ts.
pub fn message_changed(channel: &str, event_ts: &str, now: &Value, before: &Value) -> Value {
    json!({
        "type": "message", "subtype": "message_changed", "hidden": true, "channel": channel,
        "ts": event_ts, "event_ts": event_ts, "channel_type": "channel",
        "message": nested(now), "previous_message": nested(before),
    })
}

/// `message_replied` as the Events API delivers it: no `subtype` (the documentation's "bug
/// alert"), the parent nested with `thread_ts`, `reply_count` and `replies`
/// (docs.slack.dev/reference/events/message/message_replied).
pub fn message_replied(channel: &str, event_ts: &str, parent: &Value, replies: &[(String, String)]) -> Value {
    let mut message = nested(parent);
    message["replies"] = Value::Array(replies.iter().map(|(user, ts)| json!({"user": user, "ts": ts})).collect());
    json!({
        "type": "message", "hidden": true, "channel": channel, "event_ts": event_ts, "ts": event_ts,
        "message": message,
    })
}

/// `message_deleted`, shaped like `real-captures/message_deleted.json`.
pub fn message_deleted(channel: &str, event_ts: &str, previous: &Value) -> Value {
    json!({
        "type": "message", "subtype": "message_deleted", "hidden": true, "channel": channel,
        "previous_message": nested(previous), "deleted_ts": previous["ts"],
        "ts": event_ts, "event_ts": event_ts, "channel_type": "channel",
    })
}

/// A thread parent after a reply from `user` at `reply_ts`: Slack's thread bookkeeping fields
/// (as listed on the parent in `shape-samples/MessageRepliedPayload.json`).
pub fn with_reply(parent: &Value, user: &str, reply_ts: &str) -> Value {
    let mut p = parent.clone();
    let count = p["reply_count"].as_u64().unwrap_or(0) + 1;
    let mut users: Vec<String> = p["reply_users"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if !users.iter().any(|u| u == user) {
        users.push(user.to_string());
    }
    p["thread_ts"] = p["ts"].clone();
    p["reply_count"] = json!(count);
    p["reply_users_count"] = json!(users.len());
    p["reply_users"] = json!(users);
    p["latest_reply"] = json!(reply_ts);
    p["is_locked"] = json!(false);
    p["subscribed"] = json!(false);
    p
}

/// The app's own post coming back as an event, shaped like `real-captures/message_bot_in_thread.json`:
/// no subtype, `bot_id` and `app_id` with the bot's `user`, `bot_profile`, `parent_user_id` in a
/// thread.
pub fn own_message(raw: &Value, channel: &str, bot_profile: Value, parent_user: Option<&str>) -> Value {
    let mut event = raw.clone();
    if let Some(obj) = event.as_object_mut() {
        obj.remove("subtype");
        obj.insert("channel".into(), json!(channel));
        obj.insert("event_ts".into(), raw["ts"].clone());
        obj.insert("channel_type".into(), json!("channel"));
        obj.insert("bot_profile".into(), bot_profile);
        if let Some(parent) = parent_user {
            obj.insert("parent_user_id".into(), json!(parent));
        }
    }
    event
}

/// The links in a message's text, in Slack's markup (`<https://x>` or `<https://x|label>`).
pub fn links_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<http") {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        let inner = &after[..end];
        let url = inner.split('|').next().unwrap_or(inner);
        if !out.iter().any(|u| u == url) {
            out.push(url.to_string());
        }
        rest = &after[end..];
    }
    out
}

/// The preview attachment Slack adds for a link: a message unfurl for links to Slack messages
/// (`is_msg_unfurl`, as in `real-captures/message_changed_unfurl.json`), a page preview otherwise.
pub fn unfurl(url: &str, id: u64) -> Value {
    let host = url.split("//").nth(1).and_then(|r| r.split('/').next()).unwrap_or(url);
    if host.ends_with(".slack.com") && url.contains("/archives/") {
        json!({
            "from_url": url, "original_url": url, "id": id, "is_msg_unfurl": true,
            "fallback": "[a message in Slack]", "text": "a message in Slack", "footer": "Posted in Slack",
            "mrkdwn_in": ["text"],
        })
    } else {
        json!({
            "from_url": url, "original_url": url, "id": id, "service_name": host,
            "title": format!("Page on {host}"), "title_link": url, "text": format!("A preview of {url}"),
            "fallback": format!("{host}: Page on {host}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_read_from_slack_markup() {
        assert_eq!(
            links_in("see <https://grafana.example/d/1|dashboard> and <http://x.example> <@U1> <#C1>"),
            ["https://grafana.example/d/1", "http://x.example"]
        );
        assert!(links_in("no links, <!here>").is_empty());
    }

    #[test]
    fn a_reply_updates_the_parents_thread_bookkeeping() {
        let parent = json!({"type": "message", "ts": "1.1", "user": "U1", "text": "hi", "channel": "C1"});
        let once = with_reply(&parent, "U2", "2.2");
        let twice = with_reply(&once, "U2", "3.3");
        assert_eq!((twice["reply_count"].as_u64(), twice["reply_users_count"].as_u64()), (Some(2), Some(1)));
        assert_eq!((twice["thread_ts"].as_str(), twice["latest_reply"].as_str()), (Some("1.1"), Some("3.3")));
        let changed = message_changed("C1", "4.4", &twice, &once);
        assert!(changed["message"].get("channel").is_none(), "nested messages carry no channel");
        let replied = message_replied("C1", "4.5", &twice, &[("U2".into(), "2.2".into())]);
        assert!(replied.get("subtype").is_none(), "as the Events API sends it");
    }
}
