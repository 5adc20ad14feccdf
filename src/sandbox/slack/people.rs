//! People and apps acting in the sandbox workspace: posting, editing, deleting, reacting,
//! running slash commands, clicking, submitting forms. Each act changes the world and is
//! delivered to the bot as Slack would deliver it.

use serde_json::{Value, json};

use super::secondary;
use super::world::StoredMessage;
use super::{APP_ID, BOT_USER_ID, Delivery, DeliveryResult, SlackSandbox, TEAM_ID};

impl SlackSandbox {
    // -----------------------------------------------------------------------------------------
    // People acting in the workspace

    pub(super) fn store_message(&self, msg: StoredMessage) {
        self.world().messages.push(msg);
    }

    /// A person posts a message (in a thread when `thread_ts` is set). Returns its ts and the
    /// delivery result.
    pub async fn post_as_user(
        &self,
        user: &str,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> (String, DeliveryResult) {
        let ts = self.world().ts();
        let mut event = json!({
            "type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
            "event_ts": ts, "channel_type": "channel", "team": TEAM_ID,
            "client_msg_id": format!("cm-{ts}"),
        });
        if let Some(t) = thread_ts {
            event["thread_ts"] = json!(t);
            let parent = self.message(channel, t);
            event["parent_user_id"] = json!(parent.and_then(|m| m.user.or(m.bot_id)).unwrap_or_default());
        }
        self.store_message(StoredMessage::from_raw(channel, event.clone()));
        let mut results = vec![self.deliver_event(event).await];
        {
            // What Slack sends next: the parent's thread update, and previews of the links (a
            // person's links always unfurl).
            let mut w = self.world();
            if let Some(parent) = thread_ts {
                w.after_reply(channel, parent, user, &ts);
            }
            w.unfurl_links(channel, &ts);
        }
        if text.contains(&format!("<@{BOT_USER_ID}>")) {
            let mut mention = json!({
                "type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel,
                "event_ts": ts, "team": TEAM_ID,
            });
            if let Some(t) = thread_ts {
                mention["thread_ts"] = json!(t);
            }
            results.push(self.deliver_event(mention).await);
        }
        (ts, results.into_iter().last().expect("at least one delivery"))
    }

    /// An integration (e.g. Datadog's app) posts a bot message with this content
    /// (`text`, `attachments`, `blocks`, `username`, `bot_profile` ...). Returns its ts. As on
    /// Slack, links in an app's text unfurl only when the content says `"unfurl_links": true`
    /// (a request flag, not part of the message).
    pub async fn post_as_bot(
        &self,
        bot_id: &str,
        app_id: &str,
        channel: &str,
        content: Value,
    ) -> (String, DeliveryResult) {
        let ts = self.world().ts();
        let mut event = json!({
            "type": "message", "subtype": "bot_message", "bot_id": bot_id, "app_id": app_id,
            "ts": ts, "channel": channel, "event_ts": ts, "channel_type": "channel", "team": TEAM_ID,
        });
        let mut unfurl = false;
        if let (Value::Object(target), Value::Object(extra)) = (&mut event, content) {
            for (k, v) in extra {
                if k == "unfurl_links" {
                    unfurl = v.as_bool() == Some(true);
                    continue;
                }
                target.insert(k, v);
            }
        }
        self.store_message(StoredMessage::from_raw(channel, event.clone()));
        let result = self.deliver_event(event).await;
        if unfurl {
            self.world().unfurl_links(channel, &ts);
        }
        (ts, result)
    }

    /// Someone deletes a message (`message_deleted`, as in `real-captures/message_deleted.json`).
    /// A parent with replies stays as a tombstone, as Slack shows it; any other message goes.
    pub async fn delete_message(&self, channel: &str, ts: &str) -> DeliveryResult {
        let (previous, event_ts) = {
            let mut w = self.world();
            let has_replies =
                w.messages.iter().any(|m| m.channel == channel && m.thread_ts.as_deref() == Some(ts) && m.ts != ts);
            let Some(at) = w.messages.iter().position(|m| m.channel == channel && m.ts == ts) else {
                return DeliveryResult::Refused(404, "no such message".into());
            };
            let previous = w.messages[at].raw.clone();
            if has_replies {
                let m = &mut w.messages[at];
                m.text = "This message was deleted.".into();
                m.attachments = Value::Null;
                m.blocks = Value::Null;
                m.raw = json!({"type": "message", "subtype": "tombstone", "hidden": true, "text": m.text,
                               "ts": ts, "thread_ts": ts, "reply_count": previous["reply_count"]});
            } else {
                w.messages.remove(at);
            }
            (previous, w.ts())
        };
        self.deliver_event(secondary::message_deleted(channel, &event_ts, &previous)).await
    }

    /// An integration edits its message (`message_changed`), e.g. Datadog updating an alert.
    pub async fn edit_bot_message(&self, channel: &str, ts: &str, content: Value) -> DeliveryResult {
        let (previous, mut message) = {
            let mut w = self.world();
            let Some(m) = w.message_mut(channel, ts) else {
                return DeliveryResult::Refused(404, "no such message".into());
            };
            let previous = m.raw.clone();
            let mut updated = m.raw.clone();
            if let (Value::Object(target), Value::Object(extra)) = (&mut updated, content) {
                for (k, v) in extra {
                    target.insert(k, v);
                }
            }
            m.raw = updated.clone();
            m.text = updated["text"].as_str().unwrap_or_default().into();
            m.attachments = updated["attachments"].clone();
            m.blocks = updated["blocks"].clone();
            m.edits += 1;
            (previous, updated)
        };
        let event_ts = self.world().ts();
        message["edited"] = json!({"user": message["bot_id"], "ts": event_ts});
        let event = json!({
            "type": "message", "subtype": "message_changed", "hidden": true, "channel": channel,
            "ts": event_ts, "event_ts": event_ts, "channel_type": "channel",
            "message": message, "previous_message": previous,
        });
        self.deliver_event(event).await
    }

    /// A person reacts to a message.
    pub async fn react(&self, user: &str, channel: &str, ts: &str, emoji: &str) -> DeliveryResult {
        let item_user = {
            let mut w = self.world();
            let Some(m) = w.message_mut(channel, ts) else {
                return DeliveryResult::Refused(404, "no such message".into());
            };
            match m.reactions.iter_mut().find(|(name, _)| name == emoji) {
                Some((_, users)) => users.push(user.into()),
                None => m.reactions.push((emoji.into(), vec![user.into()])),
            }
            m.user.clone().or_else(|| m.bot_id.clone()).unwrap_or_default()
        };
        let event_ts = self.world().ts();
        self.deliver_event(json!({
            "type": "reaction_added", "user": user, "reaction": emoji, "item_user": item_user,
            "item": {"type": "message", "channel": channel, "ts": ts}, "event_ts": event_ts,
        }))
        .await
    }

    /// Delivers the last slash command again, byte for byte (same trigger id), as a proxy retry
    /// or a Socket Mode redelivery would.
    pub async fn resend_last_slash(&self) -> DeliveryResult {
        let Some(fields) = self.world().last_slash.clone() else {
            return DeliveryResult::Refused(0, "no slash command was sent yet".into());
        };
        self.send_slash(fields).await
    }

    /// A person runs `/incident <text>` in a channel. The answer arrives at a response URL the
    /// sandbox serves; see [`SlackSandbox::privates`].
    pub async fn slash(&self, user: &str, channel: &str, text: &str) -> DeliveryResult {
        let (n, channel_name, user_name) = {
            let mut w = self.world();
            w.next_id += 1;
            let channel_name = w.channel(channel).map(|c| c.name.clone()).unwrap_or_else(|| "unknown".into());
            let user_name = w.users.iter().find(|u| u.id == user).map(|u| u.name.clone()).unwrap_or_default();
            (w.next_id, channel_name, user_name)
        };
        let fields = vec![
            ("token", "sandbox-verification".to_string()),
            ("team_id", TEAM_ID.to_string()),
            ("team_domain", "sandbox".to_string()),
            ("channel_id", channel.to_string()),
            ("channel_name", channel_name),
            ("user_id", user.to_string()),
            ("user_name", user_name),
            ("command", "/incident".to_string()),
            ("text", text.to_string()),
            ("api_app_id", APP_ID.to_string()),
            ("response_url", format!("http://{}/respond/{n}", self.addr)),
            ("trigger_id", format!("{n}.{n}.sandboxtrigger")),
        ];
        self.world().last_slash = Some(fields.clone());
        self.send_slash(fields).await
    }

    pub(super) async fn send_slash(&self, fields: Vec<(&'static str, String)>) -> DeliveryResult {
        let delivery = self.world().delivery.clone();
        match delivery {
            Delivery::Http { base } => {
                let body = serde_urlencoded::to_string(&fields).expect("form encodes");
                self.signed_post(&format!("{base}/slack/commands"), "application/x-www-form-urlencoded", body, None)
                    .await
            }
            Delivery::Socket => {
                let payload: serde_json::Map<String, Value> =
                    fields.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                self.send_envelope("slash_commands", Value::Object(payload), true).await
            }
            Delivery::None => DeliveryResult::NotDelivered,
        }
    }

    /// A person clicks a button (or picks from a select) on a bot message.
    pub async fn click(&self, user: &str, channel: &str, message_ts: &str, action: Value) -> DeliveryResult {
        let n = {
            let mut w = self.world();
            w.next_id += 1;
            w.next_id
        };
        let mut action = action;
        action["action_ts"] = json!(format!("{}.{n:06}", 1_700_000_000 + n));
        let message = self.message(channel, message_ts).map(|m| m.raw).unwrap_or(Value::Null);
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": user, "name": user, "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": "sandbox-verification",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
            "trigger_id": format!("{n}.{n}.sandboxclick"),
            "team": {"id": TEAM_ID, "domain": "sandbox"},
            "channel": {"id": channel, "name": channel},
            "message": message,
            "response_url": format!("http://{}/respond/{n}", self.addr),
            "actions": [action],
        });
        self.deliver_interaction(payload).await
    }
}
