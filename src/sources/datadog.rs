//! Datadog webhook bodies: the default payload and the common custom templates.
//!
//! Every value is a string (absent ones may be the string `"null"`), the body is Markdown wrapped
//! in `%%%`, and fields may be flat (`alert_transition`, `alertTransition`) or nested under
//! `alert` / `event`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::title::{monitor_id, parse_title};
use super::{ParseError, complete, split_tags, text, time};
use crate::domain::alert::{Alert, AlertSource, Fingerprint, Link, Transition};
use crate::domain::ids::Priority;

/// The first value among `names`, looked up at the top level and then under `alert`, `event`
/// and `monitor`.
fn find(v: &Value, names: &[&str]) -> Option<String> {
    for scope in [Some(v), v.get("alert"), v.get("event"), v.get("monitor")].into_iter().flatten() {
        if let Some(found) = names.iter().find_map(|n| text(scope.get(*n))) {
            return Some(found);
        }
    }
    None
}

/// The Markdown body without the `%%%` fences.
pub fn strip_fences(body: &str) -> String {
    body.trim().trim_start_matches("%%%").trim_end_matches("%%%").trim().to_string()
}

/// The monitor's page, from the first monitor link in the text (keeping the site's host).
fn monitor_link(text: &str, id: &str) -> Option<String> {
    let marker = format!("/monitors/{id}");
    let at = text.find(&marker)?;
    let start = text[..at].rfind("https://").or_else(|| text[..at].rfind("http://"))?;
    let host = &text[start..at];
    (!host.contains(['(', ')', ' ', '[', ']'])).then(|| format!("{host}{marker}"))
}

pub fn parse_webhook(v: &Value, received_at: DateTime<Utc>) -> Result<Alert, ParseError> {
    if !v.is_object() {
        return Err(ParseError::new("a Datadog webhook body must be a JSON object"));
    }
    let raw_title = find(v, &["title", "eventTitle", "event_title", "alertTitle", "alert_title"]).ok_or_else(|| {
        ParseError::new(
            "missing title: the Datadog payload needs \"title\": \"$EVENT_TITLE\" (as in the default payload)",
        )
    })?;
    let parsed = parse_title(&raw_title);
    let body = find(v, &["body", "eventMsg", "event_msg", "textOnlyMsg", "text_only_msg", "message"])
        .map(|b| strip_fences(&b))
        .unwrap_or_default();
    let transition = find(v, &["alert_transition", "alertTransition", "transition"])
        .and_then(|t| Transition::parse(&t))
        .or(parsed.transition)
        .unwrap_or(Transition::Triggered);
    let priority = find(v, &["priority", "alert_priority", "alertPriority"])
        .and_then(|p| p.parse::<Priority>().ok())
        .or(parsed.priority);
    let link = find(v, &["link", "event_url", "eventUrl", "url"]);
    let monitor = find(v, &["alert_id", "alertId", "monitor_id", "monitorId"])
        .filter(|id| id.chars().all(|c| c.is_ascii_digit()))
        .or_else(|| monitor_id(&body))
        .or_else(|| link.as_deref().and_then(monitor_id));
    let scope = find(v, &["alert_scope", "alertScope", "scope"]).or(parsed.scope.clone());
    let mut tags = Vec::new();
    match v.get("tags") {
        Some(Value::Array(items)) => {
            tags.extend(items.iter().filter_map(|t| text(Some(t))).flat_map(|t| split_tags(&t)))
        }
        _ => tags.extend(find(v, &["tags"]).map(|t| split_tags(&t)).unwrap_or_default()),
    }
    if let Some(scope) = &scope {
        tags.extend(split_tags(scope));
    }
    if let Some(host) = find(v, &["hostname", "host"]) {
        tags.push(format!("host:{host}"));
    }
    let mut links = Vec::new();
    if let Some(id) = &monitor
        && let Some(url) = monitor_link(&body, id).or_else(|| link.as_deref().and_then(|l| monitor_link(l, id)))
    {
        links.push(Link { label: "Monitor".into(), url });
    }
    if let Some(l) = &link
        && !links.iter().any(|x| &x.url == l)
    {
        links.push(Link { label: "Event".into(), url: l.clone() });
    }
    let fingerprint = match &monitor {
        Some(id) => Fingerprint::for_monitor(id, scope.as_deref()),
        None => Fingerprint::from_title(AlertSource::DatadogWebhook, &raw_title),
    };
    Ok(complete(Alert {
        source: AlertSource::DatadogWebhook,
        fingerprint,
        transition,
        priority,
        title: raw_title,
        text: body,
        tags,
        service: find(v, &["service"]),
        env: find(v, &["env", "environment"]),
        monitor_id: monitor,
        scope,
        links,
        observed_at: time(v.get("date").or(v.get("last_updated")).or(v.get("lastUpdated")).or(v.get("date_posix")))
            .unwrap_or(received_at),
        slack: None,
    }))
}

/// The dedupe key of a webhook delivery: Datadog retries a delivery on 5xx with the same event id.
pub fn delivery_key(v: &Value) -> Option<String> {
    let id = find(v, &["id", "event_id", "eventId"])?;
    let transition = find(v, &["alert_transition", "alertTransition", "transition"]).unwrap_or_default();
    Some(format!("datadog-webhook:{id}:{transition}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-04T10:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn default_payload_with_markdown_body() {
        let payload = json!({
            "id": "8306082202796025694", "last_updated": "1759343824000", "event_type": "query_alert_monitor",
            "title": "[P1] [Triggered on {service:checkout,env:prod}] Checkout error rate high",
            "date": "1759343824000", "org": {"id": "352347", "name": "acme"},
            "body": "%%%\nErrors above 5%\n\n[[Monitor Status](https://app.datadoghq.com/monitors/221164084?from_ts=1&to_ts=2)]\n%%%",
        });
        let a = parse_webhook(&payload, now()).unwrap();
        assert_eq!(a.transition, Transition::Triggered);
        assert_eq!(a.priority, Some(Priority::P1));
        assert_eq!(a.monitor_id.as_deref(), Some("221164084"));
        assert_eq!(a.fingerprint.as_str(), "datadog:monitor:221164084:env:prod,service:checkout");
        assert_eq!(a.service.as_deref(), Some("checkout"));
        assert_eq!(a.env.as_deref(), Some("prod"));
        assert!(a.text.starts_with("Errors above 5%") && !a.text.contains("%%%"));
        assert_eq!(a.links[0].url, "https://app.datadoghq.com/monitors/221164084");
        assert_eq!(a.observed_at.timestamp(), 1759343824);
    }

    #[test]
    fn nested_template_with_null_strings() {
        let payload = json!({
            "id": "8546376597550758824", "title": "[Warn] RDS High Write Latency", "date": "1773666546000",
            "body": "%%%\nlatency\n%%%",
            "alert": {"alert_id": "266155000", "alert_scope": "", "alert_transition": "Warn", "alert_type": "warning"},
            "incident": {"incident_public_id": "null", "incident_severity": "null"},
            "event": {"aggreg_key": "abc", "event_url": "https://app.datadoghq.com/event/event?id=8546376597550758824"},
        });
        let a = parse_webhook(&payload, now()).unwrap();
        assert_eq!(a.transition, Transition::Warn);
        assert_eq!(a.monitor_id.as_deref(), Some("266155000"));
        assert_eq!(a.scope, None);
        assert_eq!(a.fingerprint.as_str(), "datadog:monitor:266155000");
        assert_eq!(a.links.last().unwrap().label, "Event");
    }

    #[test]
    fn camel_case_template_and_tag_list() {
        let payload = json!({
            "id": "1", "eventTitle": "[Recovered] API latency", "alertTransition": "Recovered", "alertId": "77",
            "alertScope": "service:api", "tags": "team:backend,env:staging", "priority": "P3", "hostname": "web-1",
            "alertCycleKey": "$ALERT_CYCLE_KEY",
        });
        let a = parse_webhook(&payload, now()).unwrap();
        assert_eq!(a.transition, Transition::Recovered);
        assert_eq!(a.priority, Some(Priority::P3));
        assert_eq!(a.tag("team"), Some("backend"));
        assert_eq!(a.tag("host"), Some("web-1"));
        assert_eq!(a.env.as_deref(), Some("staging"));
        assert_eq!(a.observed_at, now(), "no date: the receive time");
    }

    #[test]
    fn a_body_without_title_is_refused_with_the_fix() {
        let err = parse_webhook(&json!({"body": "x"}), now()).unwrap_err();
        assert!(err.0.contains("$EVENT_TITLE"), "{err}");
        assert!(parse_webhook(&json!([1, 2]), now()).is_err());
    }
}
