//! Alert formats into [`Alert`]: Datadog (its Slack app and its webhooks), other alerting bots in
//! Slack, Prometheus Alertmanager and Grafana webhooks.
//!
//! Parsers are lenient with what they do not need and strict with what they do; they never panic
//! on any input (property tests and fuzz targets check that).

pub mod datadog;
pub mod prometheus;
pub mod slack_message;
pub mod title;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::domain::alert::Alert;

/// Why a payload could not be read as alerts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(s: impl Into<String>) -> ParseError {
        ParseError(s.into())
    }
}

/// The payload formats `simulate` and the webhooks understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// An Events API envelope (`event_callback`) holding a message.
    SlackEnvelope,
    /// A bare Slack message event.
    SlackMessage,
    DatadogWebhook,
    Alertmanager,
    Grafana,
}

/// Guesses a JSON payload's format.
pub fn detect(payload: &Value) -> Option<Format> {
    let obj = payload.as_object()?;
    let s = |k: &str| obj.get(k).and_then(Value::as_str);
    if s("type") == Some("event_callback") {
        return Some(Format::SlackEnvelope);
    }
    if s("type") == Some("message") && (obj.contains_key("ts") || obj.contains_key("subtype")) {
        return Some(Format::SlackMessage);
    }
    if obj.get("alerts").is_some_and(Value::is_array) {
        let grafana = obj.contains_key("orgId") || obj.contains_key("state") || s("version") == Some("1");
        return Some(if grafana { Format::Grafana } else { Format::Alertmanager });
    }
    let datadog_keys =
        ["event_type", "alert_transition", "alertTransition", "eventTitle", "alert", "event", "body", "last_updated"];
    if obj.contains_key("title") || datadog_keys.iter().any(|k| obj.contains_key(*k)) {
        return Some(Format::DatadogWebhook);
    }
    None
}

/// A string field, treating Datadog's template placeholders for absent values (`"null"`, empty,
/// an unexpanded `$VARIABLE`) as absent.
pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    let s = match v? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    let absent = s.is_empty()
        || s.eq_ignore_ascii_case("null")
        || s.eq_ignore_ascii_case("none")
        || (s.starts_with('$') && s[1..].chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    (!absent).then_some(s)
}

/// Epoch milliseconds or seconds (as numbers or strings), or RFC 3339.
pub(crate) fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let raw = text(v)?;
    if let Ok(n) = raw.parse::<i64>() {
        let (secs, ms) = if n > 10_000_000_000 { (n / 1000, n % 1000) } else { (n, 0) };
        return Utc.timestamp_opt(secs, (ms * 1_000_000) as u32).single();
    }
    DateTime::parse_from_rfc3339(&raw).ok().map(|t| t.with_timezone(&Utc)).filter(|t| t.timestamp() > 0)
}

/// `key:value` tags from a Datadog scope (`{host:a,env:prod}`) or a tag list (`"a:b, c:d"`).
pub(crate) fn split_tags(s: &str) -> Vec<String> {
    s.trim_matches(|c| c == '{' || c == '}')
        .split([',', ' '])
        .map(|t| t.trim().trim_matches('"'))
        .filter(|t| !t.is_empty() && *t != "*")
        .map(|t| match t.split_once(':') {
            Some((k, v)) => format!("{}:{}", k.trim().to_lowercase(), v.trim()),
            None => t.to_lowercase(),
        })
        .collect()
}

/// Fills `service` and `env` from tags when the source did not name them.
pub(crate) fn complete(mut alert: Alert) -> Alert {
    if alert.service.is_none() {
        alert.service = alert.tag("service").map(String::from);
    }
    if alert.env.is_none() {
        alert.env = alert.tag("env").or_else(|| alert.tag("environment")).map(String::from);
    }
    let mut seen = std::collections::HashSet::new();
    alert.tags.retain(|t| seen.insert(t.clone()));
    alert
}

/// Reads a webhook body of `format` into its alerts, each with the delivery key that dedupes a
/// redelivery of it (when the source gives one). Slack payloads are not webhooks: they are read
/// by the Slack adapter.
pub fn read_webhook(
    format: Format,
    payload: &Value,
    received_at: DateTime<Utc>,
) -> Result<Vec<(Alert, Option<String>)>, ParseError> {
    let keyed = |alerts: Vec<Alert>| -> Vec<(Alert, Option<String>)> {
        alerts.into_iter().map(|a| (a.clone(), Some(prometheus::alert_key(a.source, &a)))).collect()
    };
    match format {
        Format::DatadogWebhook => {
            Ok(vec![(datadog::parse_webhook(payload, received_at)?, datadog::delivery_key(payload))])
        }
        Format::Alertmanager => Ok(keyed(prometheus::parse_alertmanager(payload, received_at)?)),
        Format::Grafana => Ok(keyed(prometheus::parse_grafana(payload, received_at)?)),
        Format::SlackEnvelope | Format::SlackMessage => {
            Err(ParseError::new("a Slack payload is not a webhook body: Slack delivers it to /slack/events"))
        }
    }
}

/// Reads any supported payload into alerts (a Slack payload needs to come from an alert bot; see
/// [`slack_message::parse_message`] for the rules).
pub fn parse_any(
    payload: &Value,
    received_at: DateTime<Utc>,
    is_alert_bot: &dyn Fn(&Value) -> bool,
) -> Result<(Format, Vec<Alert>), ParseError> {
    let format = detect(payload).ok_or_else(|| {
        ParseError::new("unrecognised payload: expected a Slack event or message, a Datadog webhook, an Alertmanager (version 4) or a Grafana webhook body")
    })?;
    let alerts = match format {
        Format::SlackEnvelope => {
            let event = payload.get("event").ok_or_else(|| ParseError::new("event_callback without an event"))?;
            slack_message::parse_event(event, received_at, is_alert_bot)?.into_iter().collect()
        }
        Format::SlackMessage => slack_message::parse_event(payload, received_at, is_alert_bot)?.into_iter().collect(),
        Format::DatadogWebhook => vec![datadog::parse_webhook(payload, received_at)?],
        Format::Alertmanager => prometheus::parse_alertmanager(payload, received_at)?,
        Format::Grafana => prometheus::parse_grafana(payload, received_at)?,
    };
    Ok((format, alerts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_and_nulls_are_absent() {
        for absent in [json!("null"), json!(""), json!("$ALERT_SCOPE"), json!(null), json!({})] {
            assert_eq!(text(Some(&absent)), None, "{absent}");
        }
        assert_eq!(text(Some(&json!(" P1 "))), Some("P1".into()));
        assert_eq!(text(Some(&json!(42))), Some("42".into()));
    }

    #[test]
    fn times_read_in_every_form() {
        let ms = time(Some(&json!("1751007029000"))).unwrap();
        assert_eq!(ms.to_rfc3339(), "2025-06-27T06:50:29+00:00");
        assert_eq!(time(Some(&json!(1751007029))).unwrap(), ms);
        assert_eq!(time(Some(&json!("2019-09-27T16:27:56.612666101Z"))).unwrap().timestamp(), 1569601676);
        assert_eq!(time(Some(&json!("0001-01-01T00:00:00Z"))), None, "Go's zero time is absent");
    }

    #[test]
    fn tags_split_from_scopes_and_lists() {
        assert_eq!(split_tags("{host:web-1,env:prod}"), ["host:web-1", "env:prod"]);
        assert_eq!(split_tags("Service:api, team:backend *"), ["service:api", "team:backend"]);
    }
}
