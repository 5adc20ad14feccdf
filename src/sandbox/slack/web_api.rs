//! The Web API the bot calls: `/api/<method>` with JSON or form bodies, tokens, Slack's rate
//! limits and injected faults, each call recorded; and response URLs.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::secondary;
use super::world::{CallRecord, Channel, Fault, Private, StoredMessage};
use super::{APP_ID, APP_TOKEN, BOT_ID, BOT_TOKEN, BOT_USER_ID, Shared, TEAM_ID};

// ---------------------------------------------------------------------------------------------
// Web API

/// Parameters from the query string, a JSON body or a form body, merged.
fn params(query: &HashMap<String, String>, headers: &HeaderMap, body: &[u8]) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in query {
        out.insert(k.clone(), json!(v));
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            out.extend(map);
        }
    } else if !body.is_empty()
        && let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
    {
        for (k, v) in pairs {
            let value =
                serde_json::from_str::<Value>(&v).ok().filter(|v| v.is_array() || v.is_object()).unwrap_or(json!(v));
            out.insert(k, value);
        }
    }
    Value::Object(out)
}

/// A boolean Web API argument, sent as JSON `true` or as the form value `true` / `1`.
fn flag(v: &Value) -> bool {
    v.as_bool().unwrap_or(false) || matches!(v.as_str(), Some("true" | "1"))
}

/// The bot's profile as Slack attaches it to the app's messages (`real-captures/message_bot_in_thread.json`).
fn bot_profile() -> Value {
    json!({"id": BOT_ID, "deleted": false, "name": "incident-commander", "updated": 1_700_000_000,
           "app_id": APP_ID, "team_id": TEAM_ID,
           "icons": {"image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png"}})
}

fn api_error(error: &str) -> (StatusCode, Value) {
    (StatusCode::OK, json!({"ok": false, "error": error}))
}

pub(super) async fn web_api(
    State(state): State<Shared>,
    Path(method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let params = params(&query, &headers, &body);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| params["token"].as_str().map(String::from))
        .unwrap_or_default();

    let fault = {
        let mut w = state.world.lock().expect("world");
        let queued = w.faults.get_mut(&method).and_then(VecDeque::pop_front);
        queued.or_else(|| {
            if method == "auth.test" {
                return None;
            }
            let chaos = w.chaos.clone()?;
            w.chaos_calls += 1;
            let n = w.chaos_calls;
            (n % chaos.every == 0).then(|| chaos.faults[((n / chaos.every) as usize) % chaos.faults.len()].clone())
        })
    };
    let mut retry_after = None;
    let (status, response) = match fault {
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            call(&state, &method, &params, &token)
        }
        Some(Fault::RateLimited(after)) => {
            retry_after = after;
            (StatusCode::TOO_MANY_REQUESTS, json!({"ok": false, "error": "ratelimited"}))
        }
        Some(Fault::Status(code)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"ok": false, "error": "internal_error"}),
        ),
        Some(Fault::ApiError(e)) => api_error(&e),
        Some(Fault::Timeout(d)) => {
            tokio::time::sleep(d).await;
            (StatusCode::GATEWAY_TIMEOUT, json!({"ok": false, "error": "request_timeout"}))
        }
        None => match rate_limited(&state, &method, &params) {
            Some(after) => {
                retry_after = Some(after);
                (StatusCode::TOO_MANY_REQUESTS, json!({"ok": false, "error": "ratelimited"}))
            }
            None => call(&state, &method, &params, &token),
        },
    };
    {
        let mut w = state.world.lock().expect("world");
        let elapsed_ms = w.started.elapsed().as_millis();
        w.calls.push(CallRecord {
            at: Utc::now(),
            elapsed_ms,
            method: method.clone(),
            params: params.clone(),
            status: status.as_u16(),
            response: response.clone(),
        });
    }
    let mut resp =
        (status, [("content-type", "application/json; charset=utf-8")], response.to_string()).into_response();
    if let Some(after) = retry_after {
        resp.headers_mut().insert("retry-after", after.to_string().parse().expect("digits are a header value"));
    }
    resp
}

/// Applies Slack's limits: chat.postMessage per channel, every other method per minute.
fn rate_limited(state: &Shared, method: &str, params: &Value) -> Option<u64> {
    let mut w = state.world.lock().expect("world");
    let now = Instant::now();
    let limits = w.limits;
    let (key, max, window, times) = if method == "chat.postMessage" {
        let channel = params["channel"].as_str().unwrap_or_default().to_string();
        let (max, window) = limits.post_per_channel;
        (channel, max, window, &mut w.post_times)
    } else {
        (method.to_string(), limits.per_method_per_minute, Duration::from_secs(60), &mut w.method_times)
    };
    let q = times.entry(key).or_default();
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
    if q.len() as u32 >= max {
        let wait = window.saturating_sub(now.duration_since(*q.front().expect("non-empty")));
        return Some(wait.as_secs().max(1));
    }
    q.push_back(now);
    None
}

/// Runs one Web API method against the world.
fn call(state: &Shared, method: &str, p: &Value, token: &str) -> (StatusCode, Value) {
    let is_app_method = method == "apps.connections.open";
    let mut w = state.world.lock().expect("world");
    let valid = if is_app_method { token == APP_TOKEN } else { token == BOT_TOKEN && w.bot_token_valid };
    if token.is_empty() {
        return api_error("not_authed");
    }
    if !valid {
        return api_error("invalid_auth");
    }
    let s = |k: &str| p[k].as_str().map(str::to_string).unwrap_or_default();
    match method {
        "auth.test" => (
            StatusCode::OK,
            json!({"ok": true, "url": "https://sandbox.slack.com/", "team": "Sandbox", "user": "incident-commander",
                   "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": false}),
        ),
        "apps.connections.open" => {
            let n = w.next_id;
            (StatusCode::OK, json!({"ok": true, "url": format!("ws://{}/socket?ticket={n}", state.addr)}))
        }
        "chat.postMessage" => {
            let channel = s("channel");
            let Some(c) = w.channel(&channel) else { return api_error("channel_not_found") };
            if !c.members.iter().any(|m| m == BOT_USER_ID) {
                return api_error("not_in_channel");
            }
            let text = s("text");
            if text.is_empty() && p["blocks"].is_null() && p["attachments"].is_null() {
                return api_error("no_text");
            }
            let ts = w.ts();
            let thread_ts = p["thread_ts"].as_str().map(String::from);
            if let Some(t) = &thread_ts
                && !w.messages.iter().any(|m| m.channel == channel && &m.ts == t)
            {
                return api_error("thread_not_found");
            }
            let mut message = json!({"type": "message", "subtype": "bot_message", "text": text, "user": BOT_USER_ID,
                                     "bot_id": BOT_ID, "app_id": APP_ID, "ts": ts, "team": TEAM_ID});
            for key in ["blocks", "attachments"] {
                if !p[key].is_null() {
                    message[key] = p[key].clone();
                }
            }
            if let Some(t) = &thread_ts {
                message["thread_ts"] = json!(t);
            }
            // Message metadata: a JSON object in a JSON body, a URL-encoded JSON string in a form.
            let metadata = match &p["metadata"] {
                Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                other => other.clone(),
            };
            let mut stored = message.clone();
            if metadata["event_type"].is_string() {
                stored["metadata"] = metadata;
            }
            w.messages.push(StoredMessage::from_raw(&channel, stored));
            // What Slack sends the app next: its own message as an event, the thread parent's
            // update, and (only when asked with unfurl_links) the previews of its text links.
            if w.secondary.own_messages {
                let parent_user = thread_ts
                    .as_deref()
                    .and_then(|t| w.messages.iter().find(|m| m.channel == channel && m.ts == t))
                    .and_then(|m| m.user.clone().or_else(|| m.bot_id.clone()));
                let event = secondary::own_message(&message, &channel, bot_profile(), parent_user.as_deref());
                w.enqueue(event);
            }
            if let Some(t) = &thread_ts {
                w.after_reply(&channel, t, BOT_USER_ID, &ts);
            }
            if flag(&p["unfurl_links"]) {
                w.unfurl_links(&channel, &ts);
            }
            (StatusCode::OK, json!({"ok": true, "channel": channel, "ts": ts, "message": message}))
        }
        "chat.update" => {
            let (channel, ts) = (s("channel"), s("ts"));
            let text = s("text");
            let blocks = p["blocks"].clone();
            let Some(m) = w.message_mut(&channel, &ts) else { return api_error("message_not_found") };
            if m.bot_id.as_deref() != Some(BOT_ID) {
                return api_error("cant_update_message");
            }
            let before = m.raw.clone();
            m.text = text.clone();
            if !blocks.is_null() {
                m.blocks = blocks.clone();
                m.raw["blocks"] = blocks;
            }
            m.raw["text"] = json!(text);
            m.edits += 1;
            if w.secondary.own_messages {
                let mut now = w.message_mut(&channel, &ts).map(|m| m.raw.clone()).unwrap_or_default();
                let event_ts = w.ts();
                now["edited"] = json!({"user": BOT_USER_ID, "ts": event_ts});
                w.enqueue(secondary::message_changed(&channel, &event_ts, &now, &before));
            }
            (
                StatusCode::OK,
                json!({"ok": true, "channel": channel, "ts": ts, "text": text, "message": {"text": text, "user": BOT_USER_ID}}),
            )
        }
        "chat.postEphemeral" => {
            let (channel, user) = (s("channel"), s("user"));
            if w.channel(&channel).is_none() {
                return api_error("channel_not_found");
            }
            let ts = w.ts();
            w.privates.push(Private { user: Some(user), channel: Some(channel), text: s("text"), via: "ephemeral" });
            (StatusCode::OK, json!({"ok": true, "message_ts": ts}))
        }
        "chat.getPermalink" => {
            let (channel, ts) = (s("channel"), s("message_ts"));
            if w.channel(&channel).is_none() {
                return api_error("channel_not_found");
            }
            let link = format!("https://sandbox.slack.com/archives/{channel}/p{}", ts.replace('.', ""));
            (StatusCode::OK, json!({"ok": true, "channel": channel, "permalink": link}))
        }
        "reactions.add" => {
            let (channel, ts, name) = (s("channel"), s("timestamp"), s("name"));
            let Some(m) = w.message_mut(&channel, &ts) else { return api_error("message_not_found") };
            match m.reactions.iter_mut().find(|(n, _)| *n == name) {
                Some((_, users)) if users.iter().any(|u| u == BOT_USER_ID) => return api_error("already_reacted"),
                Some((_, users)) => users.push(BOT_USER_ID.into()),
                None => m.reactions.push((name, vec![BOT_USER_ID.into()])),
            }
            (StatusCode::OK, json!({"ok": true}))
        }
        "conversations.create" => {
            let name = s("name");
            let valid = !name.is_empty()
                && name.len() <= 80
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !valid {
                return api_error("invalid_name_specials");
            }
            if w.channels.iter().any(|c| c.name == name) {
                return api_error("name_taken");
            }
            let private = p["is_private"].as_bool().unwrap_or(false) || s("is_private") == "true";
            let id = w.id(if private { "G" } else { "C" });
            w.channels.push(Channel {
                id: id.clone(),
                name,
                members: vec![BOT_USER_ID.into()],
                is_private: private,
                purpose: String::new(),
                pins: Vec::new(),
            });
            let json = w.channel_json(w.channel(&id).expect("just added"));
            (StatusCode::OK, json!({"ok": true, "channel": json}))
        }
        "conversations.invite" => {
            let channel = s("channel");
            let users: Vec<String> = match &p["users"] {
                Value::Array(a) => a.iter().filter_map(|u| u.as_str().map(String::from)).collect(),
                other => other.as_str().unwrap_or_default().split(',').map(|u| u.trim().to_string()).collect(),
            };
            let known: Vec<String> = w.users.iter().map(|u| u.id.clone()).collect();
            let Some(c) = w.channel_mut(&channel) else { return api_error("channel_not_found") };
            if !c.members.iter().any(|m| m == BOT_USER_ID) {
                return api_error("not_in_channel");
            }
            for u in users.into_iter().filter(|u| !u.is_empty()) {
                if !known.contains(&u) {
                    return api_error("user_not_found");
                }
                if !c.members.contains(&u) {
                    c.members.push(u);
                }
            }
            let json = w.channel_json(w.channel(&channel).expect("exists"));
            (StatusCode::OK, json!({"ok": true, "channel": json}))
        }
        "conversations.setPurpose" => {
            let channel = s("channel");
            let purpose = s("purpose");
            let Some(c) = w.channel_mut(&channel) else { return api_error("channel_not_found") };
            c.purpose = purpose.clone();
            (StatusCode::OK, json!({"ok": true, "purpose": purpose}))
        }
        "conversations.info" => {
            let Some(c) = w.channel(&s("channel")) else { return api_error("channel_not_found") };
            (StatusCode::OK, json!({"ok": true, "channel": w.channel_json(c)}))
        }
        "conversations.join" => {
            let channel = s("channel");
            let Some(c) = w.channel_mut(&channel) else { return api_error("channel_not_found") };
            if c.is_private {
                return api_error("method_not_supported_for_channel_type");
            }
            if !c.members.iter().any(|m| m == BOT_USER_ID) {
                c.members.push(BOT_USER_ID.into());
            }
            let json = w.channel_json(w.channel(&channel).expect("exists"));
            (StatusCode::OK, json!({"ok": true, "channel": json}))
        }
        // Both read back at most `limit` messages (default 100, as Slack's), with each message's
        // metadata only when asked for with `include_all_metadata` (as Slack does).
        "conversations.replies" => {
            let (channel, ts) = (s("channel"), s("ts"));
            let msgs: Vec<Value> = w
                .messages
                .iter()
                .filter(|m| m.channel == channel && (m.ts == ts || m.thread_ts.as_deref() == Some(ts.as_str())))
                .take(limit(p))
                .map(|m| with_metadata(&m.raw, flag(&p["include_all_metadata"])))
                .collect();
            if msgs.is_empty() {
                return api_error("thread_not_found");
            }
            (StatusCode::OK, json!({"ok": true, "messages": msgs, "has_more": false}))
        }
        "conversations.history" => {
            let channel = s("channel");
            if w.channel(&channel).is_none() {
                return api_error("channel_not_found");
            }
            let msgs: Vec<Value> = w
                .messages
                .iter()
                .rev()
                .filter(|m| m.channel == channel && m.thread_ts.is_none())
                .take(limit(p))
                .map(|m| with_metadata(&m.raw, flag(&p["include_all_metadata"])))
                .collect();
            (StatusCode::OK, json!({"ok": true, "messages": msgs, "has_more": false}))
        }
        "pins.add" => {
            let (channel, ts) = (s("channel"), s("timestamp"));
            if w.message_mut(&channel, &ts).is_none() {
                return api_error("message_not_found");
            }
            let Some(c) = w.channel_mut(&channel) else { return api_error("channel_not_found") };
            if c.pins.contains(&ts) {
                return api_error("already_pinned");
            }
            c.pins.push(ts);
            (StatusCode::OK, json!({"ok": true}))
        }
        "views.open" => {
            let trigger = s("trigger_id");
            if trigger.is_empty() {
                return api_error("invalid_arguments");
            }
            if trigger.contains("expired") {
                return api_error("expired_trigger_id");
            }
            let id = w.id("V");
            let view = p["view"].clone();
            w.views.push((id.clone(), trigger, view.clone()));
            let mut out = view;
            out["id"] = json!(id);
            out["team_id"] = json!(TEAM_ID);
            out["app_id"] = json!(APP_ID);
            out["bot_id"] = json!(BOT_ID);
            out["state"] = json!({"values": {}});
            out["hash"] = json!(format!("1700000000.{id}"));
            out["root_view_id"] = json!(id);
            out["app_installed_team_id"] = json!(TEAM_ID);
            (StatusCode::OK, json!({"ok": true, "view": out}))
        }
        "users.info" => {
            let id = s("user");
            let Some(u) = w.users.iter().find(|u| u.id == id) else { return api_error("user_not_found") };
            (
                StatusCode::OK,
                json!({"ok": true, "user": {"id": u.id, "team_id": TEAM_ID, "name": u.name, "real_name": u.real_name,
                       "deleted": false, "is_bot": u.id == BOT_USER_ID, "tz": "UTC",
                       "profile": {"display_name": u.name, "real_name": u.real_name}}}),
            )
        }
        _ => api_error("unknown_method"),
    }
}

pub(super) async fn respond(State(state): State<Shared>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = payload["text"].as_str().unwrap_or_default().to_string();
    let mut w = state.world.lock().expect("world");
    let elapsed_ms = w.started.elapsed().as_millis();
    w.calls.push(CallRecord {
        at: Utc::now(),
        elapsed_ms,
        method: "response_url".into(),
        params: json!({"id": id, "body": payload}),
        status: 200,
        response: json!("ok"),
    });
    w.privates.push(Private { user: None, channel: None, text, via: "response_url" });
    (StatusCode::OK, "ok").into_response()
}

/// A read's `limit` (Slack's default 100, at most 999).
fn limit(p: &Value) -> usize {
    let n = p["limit"].as_u64().or_else(|| p["limit"].as_str().and_then(|v| v.parse().ok()));
    n.unwrap_or(100).clamp(1, 999) as usize
}

/// A stored message as a read returns it: its metadata only when asked for.
fn with_metadata(raw: &Value, include: bool) -> Value {
    let mut m = raw.clone();
    if !include && let Some(o) = m.as_object_mut() {
        o.remove("metadata");
    }
    m
}
