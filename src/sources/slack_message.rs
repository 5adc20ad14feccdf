//! Alert messages posted in Slack by Datadog's app or another alerting bot.
//!
//! Such posts often have an empty `text`: the content is in legacy `attachments[]` (title,
//! title_link, text, fallback, fields, color), in `attachments[].blocks`, or in top-level
//! `blocks`. Edits arrive as `message_changed` with the message nested in `message`.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::title::{monitor_id, parse_title};
use super::{ParseError, complete, split_tags, text};
use crate::domain::alert::{Alert, AlertSource, Fingerprint, Link, SlackMessageRef, Transition};
use crate::domain::ids::ChannelId;

/// Whether a message was posted by Datadog's Slack app (recognised by its bot profile or name).
pub fn is_datadog_app(message: &Value) -> bool {
    let names = [message.pointer("/bot_profile/name"), message.get("username")];
    names.into_iter().flatten().filter_map(Value::as_str).any(|n| n.to_ascii_lowercase().contains("datadog"))
}

/// What a `message` event is. Slack sends one event type for many things: new messages, edits
/// (including unfurls and thread-reply bookkeeping, which change nothing a person wrote),
/// deletions, joins and topic changes. Each is handled on purpose; only a new message can be an
/// alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MessageEvent<'a> {
    /// A new message: no subtype, `bot_message`, or `thread_broadcast` (a thread reply also
    /// shown in the channel, never an alert since it is a reply).
    Posted(&'a Value),
    /// `message_changed`: the message as it is now and, when Slack sent it, as it was. Seen for
    /// edits by the author, link unfurls (`slack/events/real-captures/message_changed_unfurl.json`)
    /// and a thread parent whose reply count changed.
    Edited { message: &'a Value, previous: Option<&'a Value> },
    /// `message_deleted` (`slack/events/real-captures/message_deleted.json`): the deleted ts and,
    /// when sent, the message as it was.
    Deleted { ts: &'a str, previous: Option<&'a Value> },
    /// `message_replied`: a thread parent's reply bookkeeping. Slack documents that the Events API
    /// sends it without its subtype: a `message` event with the parent nested in `message`.
    ThreadReplied,
    /// Any other subtype (`channel_join`, `channel_topic`, `file_share`, `tombstone`, ...).
    Other(&'a str),
}

/// Sorts a `message` event into [`MessageEvent`].
pub fn classify(event: &Value) -> MessageEvent<'_> {
    let nested = |k: &str| event.get(k).filter(|v| v.is_object());
    match event.get("subtype").and_then(Value::as_str) {
        // The documented `message_replied` without its subtype: a parent nested in `message`.
        None if nested("message").is_some() => MessageEvent::ThreadReplied,
        None | Some("bot_message") | Some("thread_broadcast") => MessageEvent::Posted(event),
        Some("message_changed") => match nested("message") {
            Some(message) => MessageEvent::Edited { message, previous: nested("previous_message") },
            None => MessageEvent::Other("message_changed"),
        },
        Some("message_deleted") => {
            let previous = nested("previous_message");
            match text_ref(event.get("deleted_ts")).or_else(|| previous.and_then(|p| text_ref(p.get("ts")))) {
                Some(ts) => MessageEvent::Deleted { ts, previous },
                None => MessageEvent::Other("message_deleted"),
            }
        }
        Some("message_replied") => MessageEvent::ThreadReplied,
        Some(other) => MessageEvent::Other(other),
    }
}

fn text_ref(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// Whether an attachment is a link preview Slack added (`from_url`, `is_msg_unfurl`... as in
/// `slack/events/real-captures/message_changed_unfurl.json`), not content of the message.
fn is_unfurl(attachment: &Value) -> bool {
    ["from_url", "original_url", "app_unfurl_url"].iter().any(|k| attachment.get(*k).is_some())
        || ["is_msg_unfurl", "is_app_unfurl", "is_reply_unfurl", "is_thread_root_unfurl"]
            .iter()
            .any(|k| attachment.get(*k).and_then(Value::as_bool) == Some(true))
}

/// Every piece of text a message carries, in reading order, with the links it points to.
fn texts(message: &Value) -> (Vec<String>, Vec<String>) {
    let mut texts = Vec::new();
    let mut links = Vec::new();
    if let Some(atts) = message.get("attachments").and_then(Value::as_array) {
        // Link previews Slack added (unfurls) are not what the alert said.
        for a in atts.iter().filter(|a| !is_unfurl(a)) {
            texts.extend(text(a.get("title")));
            if let Some(l) = text(a.get("title_link")) {
                links.push(l);
            }
            for key in ["pretext", "text", "fallback"] {
                texts.extend(text(a.get(key)));
            }
            if let Some(fields) = a.get("fields").and_then(Value::as_array) {
                for f in fields {
                    match (text(f.get("title")), text(f.get("value"))) {
                        (Some(t), Some(v)) => texts.push(format!("{t}: {v}")),
                        (None, Some(v)) => texts.push(v),
                        _ => {}
                    }
                }
            }
            if let Some(blocks) = a.get("blocks") {
                block_texts(blocks, &mut texts, &mut links);
            }
        }
    }
    if let Some(blocks) = message.get("blocks") {
        block_texts(blocks, &mut texts, &mut links);
    }
    if let Some(t) = text(message.get("text")) {
        texts.push(t);
    }
    (texts, links)
}

/// Text in Block Kit: headers, sections (text and fields), context, rich text; and button URLs.
fn block_texts(blocks: &Value, out: &mut Vec<String>, links: &mut Vec<String>) {
    let Some(blocks) = blocks.as_array() else { return };
    for b in blocks {
        if let Some(t) = text(b.pointer("/text/text")) {
            out.push(t);
        }
        for list in ["fields", "elements"] {
            if let Some(items) = b.get(list).and_then(Value::as_array) {
                for item in items {
                    if let Some(t) = text(item.get("text")).or_else(|| text(item.pointer("/text/text"))) {
                        out.push(t);
                    }
                    if let Some(u) = text(item.get("url")) {
                        links.push(u);
                    }
                    // rich_text sections nest their elements one level deeper.
                    if let Some(inner) = item.get("elements").and_then(Value::as_array) {
                        let line: String = inner
                            .iter()
                            .filter_map(|e| text(e.get("text")).or_else(|| text(e.get("url"))))
                            .collect::<Vec<_>>()
                            .join("");
                        if !line.is_empty() {
                            out.push(line);
                        }
                        links.extend(inner.iter().filter_map(|e| text(e.get("url"))));
                    }
                }
            }
        }
    }
}

/// Strips Slack's link markup from a title line: `<https://x|[Triggered] Name>` -> `[Triggered] Name`.
fn unlink(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('<').and_then(|x| x.strip_suffix('>')) {
        Some(inner) => inner.split_once('|').map(|(_, label)| label.to_string()).unwrap_or_else(|| inner.to_string()),
        None => s.replace('*', ""),
    }
}

fn transition_from_color(message: &Value) -> Option<Transition> {
    let color = message.pointer("/attachments/0/color").and_then(Value::as_str)?.to_ascii_lowercase();
    match color.as_str() {
        "danger" | "#e01e5a" | "#d00000" | "#ff0000" => Some(Transition::Triggered),
        "warning" | "#ecb22e" | "#ffa500" => Some(Transition::Warn),
        "good" | "#2eb67d" | "#36a64f" => Some(Transition::Recovered),
        _ => None,
    }
}

/// Reads a new message event from an alert bot into an alert. `Ok(None)` means "not an alert":
/// not from an alert bot, a person's message, a thread reply, an edit, a deletion, a join. (Edits
/// are read with [`parse_message`] on both sides of the edit.)
pub fn parse_event(
    event: &Value,
    received_at: DateTime<Utc>,
    is_alert_bot: &dyn Fn(&Value) -> bool,
) -> Result<Option<Alert>, ParseError> {
    if event.get("type").and_then(Value::as_str) != Some("message") {
        return Ok(None);
    }
    let MessageEvent::Posted(message) = classify(event) else { return Ok(None) };
    parse_message(message, text(event.get("channel")).as_deref(), None, received_at, is_alert_bot)
}

/// Reads one message object (a new message, or either side of an edit) into an alert. `channel`
/// and `ts` stand in when the message object lacks them (edits nest the message without its
/// channel, and some without their ts).
pub fn parse_message(
    message: &Value,
    channel: Option<&str>,
    ts: Option<&str>,
    received_at: DateTime<Utc>,
    is_alert_bot: &dyn Fn(&Value) -> bool,
) -> Result<Option<Alert>, ParseError> {
    let is_bot =
        message.get("bot_id").is_some() || message.get("subtype").and_then(Value::as_str) == Some("bot_message");
    if !is_bot || !is_alert_bot(message) {
        return Ok(None);
    }
    let ts = text(message.get("ts"))
        .or_else(|| ts.map(String::from))
        .ok_or_else(|| ParseError::new("message without ts"))?;
    if text(message.get("thread_ts")).is_some_and(|t| t != ts) {
        return Ok(None);
    }
    let channel = text(message.get("channel"))
        .or_else(|| channel.map(String::from))
        .and_then(|c| ChannelId::parse(c).ok())
        .ok_or_else(|| ParseError::new("message without a channel"))?;
    let (texts, mut links) = texts(message);
    let Some(first) = texts.first() else { return Ok(None) };
    let title_line = texts
        .iter()
        .flat_map(|t| t.lines())
        .map(unlink)
        .find(|line| parse_title(line).transition.is_some())
        .unwrap_or_else(|| unlink(first.lines().next().unwrap_or_default()));
    let parsed = parse_title(&title_line);
    let all_text = texts.join("\n");
    let monitor = links.iter().find_map(|l| monitor_id(l)).or_else(|| monitor_id(&all_text));
    let mut tags = Vec::new();
    if let Some(scope) = &parsed.scope {
        tags.extend(split_tags(scope));
    }
    for line in all_text.lines() {
        let lower = line.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("tags:").map(|_| &line[5..]) {
            tags.extend(split_tags(rest));
        }
    }
    let source = if is_datadog_app(message) { AlertSource::DatadogSlack } else { AlertSource::SlackBot };
    let fingerprint = match &monitor {
        Some(id) => Fingerprint::for_monitor(id, parsed.scope.as_deref()),
        None => Fingerprint::from_title(source, &title_line),
    };
    links.retain(|l| l.starts_with("http"));
    links.dedup();
    let links = links
        .into_iter()
        .take(3)
        .map(|url| Link { label: if monitor_id(&url).is_some() { "Monitor".into() } else { "Link".into() }, url })
        .collect();
    let body: Vec<&str> = texts.iter().map(String::as_str).filter(|t| unlink(t) != title_line).collect();
    let observed_at = ts
        .split('.')
        .next()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .unwrap_or(received_at);
    Ok(Some(complete(Alert {
        source,
        fingerprint,
        transition: parsed.transition.or_else(|| transition_from_color(message)).unwrap_or(Transition::Triggered),
        priority: parsed.priority,
        title: title_line,
        text: body.join("\n"),
        tags,
        service: None,
        env: None,
        monitor_id: monitor,
        scope: parsed.scope,
        links,
        observed_at,
        slack: Some(SlackMessageRef { channel, ts }),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    fn any_bot(_: &Value) -> bool {
        true
    }

    #[test]
    fn legacy_attachments_with_empty_text() {
        let event = json!({
            "type": "message", "subtype": "bot_message", "text": "", "bot_id": "B0DATADOG1", "username": "Datadog",
            "ts": "1800000000.000100", "channel": "C0ALERTS1",
            "attachments": [{
                "fallback": "[P2] [Triggered on {service:api-gateway,env:prod}] API p99 latency high",
                "title": "[P2] [Triggered on {service:api-gateway,env:prod}] API p99 latency high",
                "title_link": "https://app.datadoghq.com/monitors/4242?group=service%3Aapi-gateway",
                "text": "p99 latency above 800ms\nTags: team:backend, service:api-gateway",
                "color": "#e01e5a",
                "fields": [{"title": "Notified", "value": "@slack-alerts-backend", "short": true}]
            }]
        });
        let a = parse_event(&event, now(), &|m| is_datadog_app(m)).unwrap().unwrap();
        assert_eq!(a.source, AlertSource::DatadogSlack);
        assert_eq!(a.transition, Transition::Triggered);
        assert_eq!(a.monitor_id.as_deref(), Some("4242"));
        assert_eq!(a.fingerprint.as_str(), "datadog:monitor:4242:env:prod,service:api-gateway");
        assert_eq!(a.tag("team"), Some("backend"));
        assert_eq!(a.service.as_deref(), Some("api-gateway"));
        assert_eq!(a.slack.as_ref().unwrap().ts, "1800000000.000100");
        assert_eq!(a.links[0].label, "Monitor");
    }

    #[test]
    fn blocks_only_message_and_blocks_inside_attachments() {
        let top = json!({
            "type": "message", "bot_id": "B0OTHERBOT", "ts": "1800000000.000200", "channel": "C0ALERTS1", "text": "",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "[Recovered] Checkout errors"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "<https://app.datadoghq.eu/monitors/99|Monitor>"}}
            ]
        });
        let a = parse_event(&top, now(), &any_bot).unwrap().unwrap();
        assert_eq!(
            (a.transition, a.monitor_id.as_deref(), a.source),
            (Transition::Recovered, Some("99"), AlertSource::SlackBot)
        );

        let nested = json!({
            "type": "message", "subtype": "bot_message", "bot_id": "B0OTHERBOT", "ts": "1800000000.000300", "channel": "C0ALERTS1",
            "attachments": [{"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*[Warn] Queue depth growing*"}}], "color": "warning"}]
        });
        let a = parse_event(&nested, now(), &any_bot).unwrap().unwrap();
        assert_eq!(a.transition, Transition::Warn);
        assert_eq!(a.title, "[Warn] Queue depth growing");
    }

    #[test]
    fn edits_read_the_nested_message() {
        let edit = json!({
            "type": "message", "subtype": "message_changed", "channel": "C0ALERTS1", "ts": "1800000009.000001",
            "message": {"type": "message", "bot_id": "B0DATADOG1", "username": "Datadog", "ts": "1800000000.000100",
                        "attachments": [{"title": "[Recovered] API p99 latency high", "title_link": "https://app.datadoghq.com/monitors/4242"}]},
            "previous_message": {"ts": "1800000000.000100"}
        });
        assert_eq!(parse_event(&edit, now(), &|m| is_datadog_app(m)).unwrap(), None, "an edit is not a new alert");
        let MessageEvent::Edited { message, previous } = classify(&edit) else { panic!("an edit") };
        let a = parse_message(message, Some("C0ALERTS1"), None, now(), &|m| is_datadog_app(m)).unwrap().unwrap();
        assert_eq!(a.transition, Transition::Recovered);
        assert_eq!(a.slack.unwrap().ts, "1800000000.000100", "the edited message keeps its ts");
        assert_eq!(previous.unwrap()["ts"], "1800000000.000100");
    }

    /// Each `message` event shape Slack sends, as in the reference captures.
    #[test]
    fn every_message_subtype_is_sorted_on_purpose() {
        // slack/events/real-captures/message_changed_unfurl.json: an unfurl nests the message, with
        // the preview as an attachment flagged `is_msg_unfurl` / `from_url`.
        let unfurl = json!({
            "type": "message", "subtype": "message_changed", "hidden": true, "channel": "C0ALERTS1",
            "ts": "1800000009.001500", "event_ts": "1800000009.001500", "channel_type": "channel",
            "message": {"type": "message", "text": "<https://acme.slack.com/archives/C0ALERTS1/p1800000000000100>",
                        "user": "U0ALICE01", "ts": "1800000008.524439",
                        "attachments": [{"from_url": "https://acme.slack.com/archives/C0ALERTS1/p1800000000000100",
                                         "is_msg_unfurl": true, "id": 1, "fallback": "[Triggered] x", "text": "[Triggered] x"}]},
            "previous_message": {"type": "message", "text": "<https://acme.slack.com/archives/C0ALERTS1/p1800000000000100>",
                                 "user": "U0ALICE01", "ts": "1800000008.524439"},
        });
        let MessageEvent::Edited { message, previous } = classify(&unfurl) else { panic!("an edit") };
        assert_eq!(message["ts"], "1800000008.524439");
        assert!(previous.is_some());
        let (texts, _) = texts(message);
        assert!(!texts.iter().any(|t| t.contains("[Triggered] x")), "the preview is not the message's text: {texts:?}");
        // slack/events/real-captures/message_deleted.json.
        let deleted = json!({
            "type": "message", "subtype": "message_deleted", "hidden": true, "channel": "C0ALERTS1",
            "previous_message": {"type": "message", "text": "bye", "user": "U0ALICE01", "ts": "1800000000.046509"},
            "deleted_ts": "1800000000.046509", "ts": "1800000100.001500", "event_ts": "1800000100.001500",
        });
        assert!(matches!(classify(&deleted), MessageEvent::Deleted { ts: "1800000000.046509", previous: Some(_) }));
        // message_replied as the Events API sends it: without its subtype (Slack's documented bug).
        let replied = json!({
            "type": "message", "hidden": true, "channel": "C0ALERTS1", "event_ts": "1800000010.017506", "ts": "1800000010.017506",
            "message": {"type": "message", "user": "U0ALICE01", "text": "x", "thread_ts": "1800000000.003543",
                        "reply_count": 1, "replies": [{"user": "U0BOB0001", "ts": "1800000010.017503"}], "ts": "1800000000.003543"},
        });
        assert_eq!(classify(&replied), MessageEvent::ThreadReplied);
        let mut with_subtype = replied.clone();
        with_subtype["subtype"] = json!("message_replied");
        assert_eq!(classify(&with_subtype), MessageEvent::ThreadReplied);
        // thread_broadcast: a reply also sent to the channel; posted, but a reply, so not an alert.
        let broadcast = json!({
            "type": "message", "subtype": "thread_broadcast", "text": "[Triggered] also in channel", "bot_id": "B0X",
            "ts": "1800000012.620769", "thread_ts": "1800000000.703009", "channel": "C0ALERTS1",
            "root": {"type": "message", "text": "root", "ts": "1800000000.703009", "reply_count": 1},
        });
        assert!(matches!(classify(&broadcast), MessageEvent::Posted(_)));
        assert_eq!(parse_event(&broadcast, now(), &any_bot).unwrap(), None);
        let join = json!({"type": "message", "subtype": "channel_join", "user": "U0BOB0001", "text": "<@U0BOB0001> has joined the channel", "ts": "1.1", "channel": "C0ALERTS1"});
        assert_eq!(classify(&join), MessageEvent::Other("channel_join"));
        // An edit whose message lacks its ts (as in Bolt's message_changed fixture) still reads,
        // with the ts from previous_message.
        let no_ts = json!({"type": "message", "subtype": "message_changed", "channel": "C0ALERTS1",
                           "message": {"type": "message", "bot_id": "B0X", "text": "[Recovered] Disk full"},
                           "previous_message": {"type": "message", "bot_id": "B0X", "text": "[Triggered] Disk full", "ts": "1800000000.000200"}});
        let MessageEvent::Edited { message, .. } = classify(&no_ts) else { panic!("an edit") };
        let a = parse_message(message, Some("C0ALERTS1"), Some("1800000000.000200"), now(), &any_bot).unwrap().unwrap();
        assert_eq!((a.transition, a.slack.unwrap().ts.as_str()), (Transition::Recovered, "1800000000.000200"));
    }

    #[test]
    fn people_thread_replies_and_other_bots_are_not_alerts() {
        let person = json!({"type": "message", "user": "U0ALICE01", "text": "[Triggered] hi", "ts": "1.1", "channel": "C0ALERTS1"});
        assert_eq!(parse_event(&person, now(), &any_bot).unwrap(), None);
        let reply = json!({"type": "message", "bot_id": "B0X", "text": "[Triggered] x", "ts": "2.2", "thread_ts": "1.1", "channel": "C0ALERTS1"});
        assert_eq!(parse_event(&reply, now(), &any_bot).unwrap(), None);
        let other =
            json!({"type": "message", "bot_id": "B0X", "text": "[Triggered] x", "ts": "2.2", "channel": "C0ALERTS1"});
        assert_eq!(parse_event(&other, now(), &|_| false).unwrap(), None);
        let deleted = json!({"type": "message", "subtype": "message_deleted", "channel": "C0ALERTS1", "ts": "3.3"});
        assert_eq!(parse_event(&deleted, now(), &any_bot).unwrap(), None);
    }
}
