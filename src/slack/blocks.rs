//! Block Kit rendering of the domain's neutral message model, within Slack's documented limits.

use serde_json::{Value, json};

use crate::domain::ids::Severity;
use crate::domain::messages::{Block, ButtonStyle, Control, Message};

/// Header block text: "Maximum length for the text in this field is 150 characters."
pub const HEADER_MAX: usize = 150;
/// Section text: "Maximum length for the text in this field is 3000 characters."
pub const SECTION_MAX: usize = 3000;
/// Section fields: at most 10, each at most 2000 characters.
pub const FIELDS_MAX: usize = 10;
pub const FIELD_MAX: usize = 2000;
/// Markdown block: at most 12,000 characters.
pub const MARKDOWN_MAX: usize = 12_000;
/// Message text: Slack truncates `text` over 40,000 characters.
pub const TEXT_MAX: usize = 40_000;
/// Confirmation dialog: "Maximum length for this field is 100 characters" (the title).
pub const CONFIRM_TITLE_MAX: usize = 100;
/// Confirmation dialog: the confirm and deny button texts, at most 30 characters each.
pub const CONFIRM_BUTTON_MAX: usize = 30;
/// Confirmation dialog: the explanatory text, at most 300 characters.
pub const CONFIRM_TEXT_MAX: usize = 300;
/// action_id of the severity select on the header.
pub const SEVERITY_SELECT: &str = "set_severity";

/// callback_id of the root-cause modal; its private_metadata is the incident id.
pub const ROOT_CAUSE_VIEW: &str = "root_cause";
/// block_id / action_id of the modal's text input.
pub const ROOT_CAUSE_INPUT: &str = "root_cause_text";

/// A form about an incident: `callback_id` tells the submission apart, `private_metadata` carries
/// the incident id.
fn form(callback_id: &str, incident: &str, title: &str, blocks: Vec<Value>) -> Value {
    json!({
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": incident,
        "title": {"type": "plain_text", "text": clip(&format!("{title} {incident}"), 24)},
        "submit": {"type": "plain_text", "text": "Record"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    })
}

/// A multi-line text input whose block id and action id are both `id`.
fn text_input(id: &str, label: &str, example: &str) -> Value {
    json!({
        "type": "input",
        "block_id": id,
        "label": {"type": "plain_text", "text": label},
        "element": {"type": "plain_text_input", "action_id": id, "multiline": true,
                    "placeholder": {"type": "plain_text", "text": example}},
    })
}

/// The modal asking the investigator for the root cause.
pub fn root_cause_modal(incident: &str) -> Value {
    let input =
        text_input(ROOT_CAUSE_INPUT, "What caused it?", "e.g. connection pool exhausted after the 10:02 config change");
    form(ROOT_CAUSE_VIEW, incident, "Root cause", vec![input])
}

/// callback_id of the follow-up modal; its private_metadata is the incident id.
pub const FOLLOWUP_VIEW: &str = "followup";
/// block_id / action_id of the follow-up text, and of the owner picker.
pub const FOLLOWUP_INPUT: &str = "followup_text";
pub const FOLLOWUP_OWNER: &str = "followup_owner";

/// The modal asking for a follow-up: what to do, and optionally who owns it.
pub fn followup_modal(incident: &str) -> Value {
    let owner = json!({
        "type": "input",
        "block_id": FOLLOWUP_OWNER,
        "optional": true,
        "label": {"type": "plain_text", "text": "Owner"},
        "element": {"type": "users_select", "action_id": FOLLOWUP_OWNER},
    });
    let text = text_input(FOLLOWUP_INPUT, "What should be done?", "e.g. alert on connection pool saturation");
    form(FOLLOWUP_VIEW, incident, "Follow-up", vec![text, owner])
}

/// Escapes `<` and `>` that are not Slack markup (`<@U…>`, `<#C…>`, `<!…>`, `<http…>`), so
/// usage placeholders such as `<text>` show as typed instead of being eaten as links.
pub fn escape_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['<', '>']) {
        out.push_str(&rest[..i]);
        let c = &rest[i..];
        if c.starts_with('<') {
            let markup = ["<@", "<#", "<!", "<http://", "<https://", "<mailto:"].iter().any(|p| c.starts_with(p));
            match (markup, c.find('>')) {
                (true, Some(end)) => {
                    out.push_str(&c[..=end]);
                    rest = &c[end + 1..];
                    continue;
                }
                _ => out.push_str("&lt;"),
            }
        } else {
            out.push_str("&gt;");
        }
        rest = &c[1..];
    }
    out.push_str(rest);
    out
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn mrkdwn(text: &str, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": clip(&escape_placeholders(text), max)})
}

fn severity_option(s: Severity) -> Value {
    json!({"text": {"type": "plain_text", "text": s.to_string()}, "value": s.level().to_string()})
}

/// Block Kit JSON for a message's blocks. `incident` becomes the value of every control, so an
/// interaction names the incident it is about.
pub fn render_blocks(message: &Message, incident: Option<&str>) -> Vec<Value> {
    let value = incident.unwrap_or_default();
    message
        .blocks
        .iter()
        .map(|block| match block {
            Block::Header(text) => {
                json!({"type": "header", "text": {"type": "plain_text", "text": clip(text, HEADER_MAX), "emoji": true}})
            }
            Block::Section(text) => json!({"type": "section", "text": mrkdwn(text, SECTION_MAX)}),
            Block::Fields(fields) => json!({
                "type": "section",
                "fields": fields.iter().take(FIELDS_MAX).map(|f| mrkdwn(f, FIELD_MAX)).collect::<Vec<_>>(),
            }),
            Block::Context(text) => json!({"type": "context", "elements": [mrkdwn(text, SECTION_MAX)]}),
            Block::Divider => json!({"type": "divider"}),
            Block::Markdown(text) => {
                json!({"type": "markdown", "text": clip(&escape_placeholders(text), MARKDOWN_MAX)})
            }
            Block::Actions(controls) => json!({
                "type": "actions",
                "elements": controls.iter().map(|c| match c {
                    Control::Button { action, label, style, confirm } => {
                        let value = match action.detail() {
                            Some(detail) => format!("{value} {detail}"),
                            None => value.to_string(),
                        };
                        let mut b = json!({
                            "type": "button",
                            "action_id": action.id(),
                            "text": {"type": "plain_text", "text": label, "emoji": true},
                            "value": value,
                        });
                        if let Some(c) = confirm {
                            b["confirm"] = json!({
                                "title": {"type": "plain_text", "text": clip(&c.title, CONFIRM_TITLE_MAX)},
                                "text": mrkdwn(&c.text, CONFIRM_TEXT_MAX),
                                "confirm": {"type": "plain_text", "text": clip(&c.yes, CONFIRM_BUTTON_MAX)},
                                "deny": {"type": "plain_text", "text": clip(&c.no, CONFIRM_BUTTON_MAX)},
                            });
                        }
                        match style {
                            ButtonStyle::Primary => b["style"] = json!("primary"),
                            ButtonStyle::Danger => b["style"] = json!("danger"),
                            ButtonStyle::Default => {}
                        }
                        b
                    }
                    Control::SeveritySelect { current } => json!({
                        "type": "static_select",
                        "action_id": SEVERITY_SELECT,
                        "placeholder": {"type": "plain_text", "text": "Severity"},
                        "initial_option": severity_option(*current),
                        "options": Severity::ALL.iter().map(|s| severity_option(*s)).collect::<Vec<_>>(),
                    }),
                }).collect::<Vec<_>>(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::messages::ButtonAction;

    #[test]
    fn placeholders_are_escaped_but_markup_is_kept() {
        assert_eq!(
            escape_placeholders("use `/incident status <text>` <@U1> <#C1> <!here> <https://x.example|x> a > b"),
            "use `/incident status &lt;text&gt;` <@U1> <#C1> <!here> <https://x.example|x> a &gt; b"
        );
        assert_eq!(escape_placeholders("&lt;!channel&gt; stays"), "&lt;!channel&gt; stays");
    }

    #[test]
    fn header_text_is_clipped_to_slacks_limit() {
        let long = "x".repeat(400);
        let blocks = render_blocks(&Message { text: String::new(), blocks: vec![Block::Header(long)] }, None);
        let text = blocks[0]["text"]["text"].as_str().unwrap();
        assert_eq!(text.chars().count(), HEADER_MAX);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn controls_carry_the_incident_and_stable_action_ids() {
        let message = Message {
            text: String::new(),
            blocks: vec![Block::Actions(vec![
                Control::Button {
                    action: ButtonAction::Resolve,
                    label: "Resolve".into(),
                    style: ButtonStyle::Danger,
                    confirm: None,
                },
                Control::SeveritySelect { current: Severity::Sev2 },
            ])],
        };
        let blocks = render_blocks(&message, Some("INC-4"));
        insta::assert_json_snapshot!(blocks, @r#"
        [
          {
            "elements": [
              {
                "action_id": "resolve",
                "style": "danger",
                "text": {
                  "emoji": true,
                  "text": "Resolve",
                  "type": "plain_text"
                },
                "type": "button",
                "value": "INC-4"
              },
              {
                "action_id": "set_severity",
                "initial_option": {
                  "text": {
                    "text": "SEV2",
                    "type": "plain_text"
                  },
                  "value": "2"
                },
                "options": [
                  {
                    "text": {
                      "text": "SEV1",
                      "type": "plain_text"
                    },
                    "value": "1"
                  },
                  {
                    "text": {
                      "text": "SEV2",
                      "type": "plain_text"
                    },
                    "value": "2"
                  },
                  {
                    "text": {
                      "text": "SEV3",
                      "type": "plain_text"
                    },
                    "value": "3"
                  },
                  {
                    "text": {
                      "text": "SEV4",
                      "type": "plain_text"
                    },
                    "value": "4"
                  }
                ],
                "placeholder": {
                  "text": "Severity",
                  "type": "plain_text"
                },
                "type": "static_select"
              }
            ],
            "type": "actions"
          }
        ]
        "#);
    }
}
