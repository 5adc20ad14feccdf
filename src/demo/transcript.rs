//! The transcript: every channel and thread as people would see them in Slack, bot messages in
//! their final (edited) state.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::sandbox::driver::Driver;
use crate::sandbox::slack::{self, StoredMessage};

/// Slack markup made readable: `<@U1>` -> `@alice`, `<#C1>` -> `#alerts`, `<url|label>` -> `label`,
/// and the entities Slack uses for `&`, `<`, `>`.
pub fn humanize(text: &str, names: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tail = &rest[start + 1..];
        let Some(end) = tail.find('>') else {
            out.push('<');
            rest = tail;
            continue;
        };
        let inner = &tail[..end];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        let shown = if let Some(id) = target.strip_prefix('@') {
            format!("@{}", names.get(id).cloned().unwrap_or_else(|| label.unwrap_or(id).to_string()))
        } else if let Some(id) = target.strip_prefix('#') {
            format!("#{}", names.get(id).cloned().unwrap_or_else(|| label.unwrap_or(id).to_string()))
        } else if target.starts_with("http") {
            match label {
                Some(l) => format!("{l} ({target})"),
                None => target.to_string(),
            }
        } else {
            label.unwrap_or(target).to_string()
        };
        out.push_str(&shown);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace('\u{2060}', "")
}

/// A bot message's visible text: its blocks (header, fields, sections, buttons) when it has
/// them, else its text.
fn visible(m: &StoredMessage) -> String {
    if let Some(attachments) = m.attachments.as_array().filter(|a| !a.is_empty()) {
        let mut lines: Vec<String> = Vec::new();
        if !m.text.is_empty() {
            lines.push(m.text.clone());
        }
        for a in attachments {
            for key in ["title", "text"] {
                if let Some(t) = a[key].as_str().filter(|t| !t.is_empty()) {
                    lines.push(t.to_string());
                }
            }
        }
        return lines.join("\n");
    }
    let Some(blocks) = m.blocks.as_array().filter(|b| !b.is_empty()) else { return m.text.clone() };
    let mut lines = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => lines.push(format!("*{}*", b["text"]["text"].as_str().unwrap_or_default())),
            Some("section") => {
                if let Some(t) = b["text"]["text"].as_str() {
                    lines.push(t.to_string());
                }
                for f in b["fields"].as_array().into_iter().flatten() {
                    let t = f["text"].as_str().unwrap_or_default();
                    match t.split_once('\n') {
                        Some((k, v)) => lines.push(format!("{}: {}", k.trim_matches('*'), v.replace('\n', " "))),
                        None => lines.push(t.to_string()),
                    }
                }
            }
            Some("context") => {
                for e in b["elements"].as_array().into_iter().flatten() {
                    lines.push(format!("_{}_", e["text"].as_str().unwrap_or_default()));
                }
            }
            Some("actions") => {
                let controls: Vec<String> = b["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| match e["type"].as_str() {
                        Some("static_select") => {
                            format!("[{} ▾]", e["initial_option"]["text"]["text"].as_str().unwrap_or("select"))
                        }
                        _ => format!("[{}]", e["text"]["text"].as_str().unwrap_or("button")),
                    })
                    .collect();
                lines.push(controls.join(" "));
            }
            Some("markdown") => lines.push(b["text"].as_str().unwrap_or_default().to_string()),
            _ => {}
        }
    }
    lines.join("\n")
}

fn author(m: &StoredMessage, names: &BTreeMap<String, String>) -> String {
    if m.bot_id.as_deref() == Some(slack::BOT_ID) {
        return "incident-commander".into();
    }
    if let Some(u) = &m.user {
        return names.get(u).cloned().unwrap_or_else(|| u.clone());
    }
    let raw: &Value = &m.raw;
    raw["username"]
        .as_str()
        .or(raw["bot_profile"]["name"].as_str())
        .map(|n| format!("{n} (app)"))
        .unwrap_or_else(|| "a bot".into())
}

fn clock(ts: &str) -> String {
    let secs = ts.split('.').next().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.format("%H:%M").to_string()).unwrap_or_default()
}

fn push_message(out: &mut String, m: &StoredMessage, names: &BTreeMap<String, String>, indent: &str) {
    let text = humanize(&visible(m), names);
    let edited = if m.edits > 0 { format!("  (edited {}×; final state)", m.edits) } else { String::new() };
    out.push_str(&format!("{indent}{}  {}{edited}\n", clock(&m.ts), author(m, names)));
    for line in text.lines() {
        out.push_str(&format!("{indent}       {line}\n"));
    }
    if !m.reactions.is_empty() {
        let reactions: Vec<String> = m
            .reactions
            .iter()
            .map(|(emoji, users)| {
                let who: Vec<String> = users
                    .iter()
                    .map(|u| {
                        if u == slack::BOT_USER_ID {
                            "incident-commander".into()
                        } else {
                            names.get(u).cloned().unwrap_or(u.clone())
                        }
                    })
                    .collect();
                format!(":{emoji}: {}", who.join(", "))
            })
            .collect();
        out.push_str(&format!("{indent}       reactions: {}\n", reactions.join("   ")));
    }
}

/// Every channel with messages, its top-level messages in order, each thread indented below.
pub fn render(h: &Driver, names: &BTreeMap<String, String>) -> String {
    let messages = h.sandbox.messages();
    let mut channels: Vec<(String, String)> = h.sandbox.channels().into_iter().map(|c| (c.id, c.name)).collect();
    channels.sort_by(|a, b| a.1.cmp(&b.1));
    let mut out = String::new();
    for (id, name) in channels {
        let top: Vec<&StoredMessage> = messages.iter().filter(|m| m.channel == id && m.thread_ts.is_none()).collect();
        if top.is_empty() {
            continue;
        }
        out.push_str(&format!("━━━ #{name} ━━━\n"));
        for m in top {
            push_message(&mut out, m, names, "");
            let replies: Vec<&StoredMessage> =
                messages.iter().filter(|r| r.channel == id && r.thread_ts.as_deref() == Some(m.ts.as_str())).collect();
            if !replies.is_empty() {
                out.push_str(&format!("       └─ thread ({} replies)\n", replies.len()));
                for r in replies {
                    push_message(&mut out, r, names, "          ");
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_markup_reads_as_people_see_it() {
        let names: BTreeMap<String, String> =
            [("U0A".to_string(), "alice".to_string()), ("C0X".to_string(), "alerts".to_string())].into();
        assert_eq!(
            humanize("<@U0A> see <#C0X> and <https://x.example/a|the trace> &lt;!channel&gt;", &names),
            "@alice see #alerts and the trace (https://x.example/a) <!channel>"
        );
    }
}
