//! Prometheus Alertmanager (webhook version 4) and Grafana unified alerting webhook bodies: one
//! request carries many alerts, each with its own labels, status and fingerprint.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ParseError, complete, text, time};
use crate::domain::alert::{Alert, AlertSource, Fingerprint, Link, Transition};
use crate::domain::ids::Priority;

/// At most this many alerts are read from one request (Alertmanager truncates long groups too).
pub const MAX_ALERTS_PER_REQUEST: usize = 1000;

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), text(Some(v))?))).collect())
        .unwrap_or_default()
}

/// Maps a `severity` (or `priority`) label to a priority.
fn priority(labels: &BTreeMap<String, String>) -> Option<Priority> {
    if let Some(p) = labels.get("priority").and_then(|p| p.parse().ok()) {
        return Some(p);
    }
    Some(match labels.get("severity")?.to_ascii_lowercase().as_str() {
        "critical" | "page" | "emergency" | "p1" | "sev1" => Priority::P1,
        "error" | "high" | "major" | "p2" | "sev2" => Priority::P2,
        "warning" | "warn" | "medium" | "minor" | "p3" | "sev3" => Priority::P3,
        "info" | "low" | "p4" | "sev4" => Priority::P4,
        "none" | "debug" | "p5" => Priority::P5,
        _ => return None,
    })
}

/// Alertmanager computes fingerprints from labels; old versions omit them, so do the same.
fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn parse_group(v: &Value, source: AlertSource, received_at: DateTime<Utc>) -> Result<Vec<Alert>, ParseError> {
    let what = if source == AlertSource::Grafana { "Grafana" } else { "Alertmanager" };
    let alerts = v
        .get("alerts")
        .and_then(Value::as_array)
        .ok_or_else(|| ParseError::new(format!("an {what} webhook body needs an \"alerts\" array")))?;
    let common_labels = string_map(v.get("commonLabels"));
    let common_annotations = string_map(v.get("commonAnnotations"));
    let external = text(v.get("externalURL"));
    let mut out = Vec::new();
    for (i, a) in alerts.iter().take(MAX_ALERTS_PER_REQUEST).enumerate() {
        if !a.is_object() {
            return Err(ParseError::new(format!("alerts[{i}] is not an object")));
        }
        let mut labels = common_labels.clone();
        labels.extend(string_map(a.get("labels")));
        let mut annotations = common_annotations.clone();
        annotations.extend(string_map(a.get("annotations")));
        let status = text(a.get("status")).or_else(|| text(v.get("status"))).unwrap_or_else(|| "firing".into());
        let transition = match status.to_ascii_lowercase().as_str() {
            "resolved" | "ok" | "normal" => Transition::Recovered,
            "nodata" | "no_data" => Transition::NoData,
            _ => Transition::Triggered,
        };
        let name = labels.get("alertname").cloned().unwrap_or_else(|| "alert".into());
        let title = annotations
            .get("summary")
            .or_else(|| labels.get("summary"))
            .map(|s| format!("{name}: {s}"))
            .unwrap_or_else(|| name.clone());
        let text_body =
            annotations.get("description").or_else(|| annotations.get("message")).cloned().unwrap_or_default();
        let fingerprint = text(a.get("fingerprint")).unwrap_or_else(|| label_fingerprint(&string_map(a.get("labels"))));
        let mut links = Vec::new();
        for (label, key) in [
            ("Source", "generatorURL"),
            ("Dashboard", "dashboardURL"),
            ("Panel", "panelURL"),
            ("Silence", "silenceURL"),
        ] {
            if let Some(url) = text(a.get(key)) {
                links.push(Link { label: label.into(), url });
            }
        }
        if let Some(runbook) = annotations.get("runbook_url").or_else(|| annotations.get("runbook")) {
            links.push(Link { label: "Runbook".into(), url: runbook.clone() });
        }
        if links.is_empty()
            && let Some(url) = &external
        {
            links.push(Link { label: what.into(), url: url.clone() });
        }
        let observed_at = match transition {
            Transition::Recovered => time(a.get("endsAt")).or_else(|| time(a.get("startsAt"))),
            _ => time(a.get("startsAt")),
        }
        .unwrap_or(received_at);
        let tags: Vec<String> = labels.iter().map(|(k, v)| format!("{}:{v}", k.to_lowercase())).collect();
        out.push(complete(Alert {
            source,
            fingerprint: Fingerprint::from_source(source, &fingerprint),
            transition,
            priority: priority(&labels),
            title,
            text: text_body,
            tags,
            service: labels.get("service").or_else(|| labels.get("job")).cloned(),
            env: labels.get("env").or_else(|| labels.get("environment")).cloned(),
            monitor_id: None,
            scope: labels.get("instance").map(|i| format!("instance:{i}")),
            links,
            observed_at,
            slack: None,
        }));
    }
    if out.is_empty() {
        return Err(ParseError::new(format!("the {what} body has no alerts")));
    }
    Ok(out)
}

pub fn parse_alertmanager(v: &Value, received_at: DateTime<Utc>) -> Result<Vec<Alert>, ParseError> {
    if let Some(version) = text(v.get("version"))
        && version != "4"
    {
        return Err(ParseError::new(format!(
            "Alertmanager webhook version {version} is not supported (expected \"4\")"
        )));
    }
    parse_group(v, AlertSource::Alertmanager, received_at)
}

pub fn parse_grafana(v: &Value, received_at: DateTime<Utc>) -> Result<Vec<Alert>, ParseError> {
    parse_group(v, AlertSource::Grafana, received_at)
}

/// The dedupe key of one alert in a delivery: its fingerprint, status and start, so a retried
/// delivery is recognised while a later firing of the same alert is not.
pub fn alert_key(source: AlertSource, alert: &Alert) -> String {
    format!("{source:?}:{}:{}:{}", alert.fingerprint, alert.transition, alert.observed_at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-04T10:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn alertmanager_v4_group_with_and_without_fingerprints() {
        let body = json!({
            "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "incident-commander", "groupLabels": {"alertname": "HighErrorRate"},
            "commonLabels": {"alertname": "HighErrorRate", "team": "frontend", "severity": "critical"},
            "commonAnnotations": null, "externalURL": "http://alertmanager:9093",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "HighErrorRate", "service": "web-shop", "env": "prod", "instance": "web-1"},
                 "annotations": {"summary": "5xx above 5%", "description": "web-shop errors", "runbook_url": "https://runbooks.example/5xx"},
                 "startsAt": "2026-11-04T09:58:01.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "http://prometheus:9090/graph?g0.expr=x\u{0026}g0.tab=1", "fingerprint": "c0ffee0123456789"},
                {"status": "resolved", "labels": {"alertname": "HighErrorRate", "service": "web-cart"},
                 "annotations": {}, "startsAt": "2026-11-04T09:00:00Z", "endsAt": "2026-11-04T09:30:00Z", "generatorURL": ""}
            ]
        });
        let alerts = parse_alertmanager(&body, now()).unwrap();
        assert_eq!(alerts.len(), 2);
        let a = &alerts[0];
        assert_eq!(a.fingerprint.as_str(), "alertmanager:c0ffee0123456789");
        assert_eq!(a.transition, Transition::Triggered);
        assert_eq!(a.priority, Some(Priority::P1));
        assert_eq!(a.title, "HighErrorRate: 5xx above 5%");
        assert_eq!(a.tag("team"), Some("frontend"));
        assert_eq!(a.service.as_deref(), Some("web-shop"));
        assert_eq!(a.links.iter().map(|l| l.label.as_str()).collect::<Vec<_>>(), ["Source", "Runbook"]);
        let b = &alerts[1];
        assert_eq!(b.transition, Transition::Recovered);
        assert!(b.fingerprint.as_str().starts_with("alertmanager:"), "computed from labels when absent");
        assert_eq!(b.observed_at.to_rfc3339(), "2026-11-04T09:30:00+00:00");
        assert_eq!(b.links[0].label, "Alertmanager", "falls back to the external URL");
    }

    #[test]
    fn grafana_unified_alerting_body() {
        let body = json!({
            "receiver": "ic", "status": "firing", "orgId": 1, "state": "alerting", "version": "1",
            "groupKey": "{}/{}:{}", "truncatedAlerts": 0, "title": "[FIRING:1] Disk", "message": "...",
            "commonLabels": {"grafana_folder": "infra"}, "externalURL": "https://grafana.example/",
            "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull", "team": "backend", "severity": "warning"},
                        "annotations": {"summary": "disk 95%"}, "startsAt": "2026-11-04T09:59:00Z",
                        "endsAt": "0001-01-01T00:00:00Z", "values": {"A": 95.1}, "fingerprint": "abc123",
                        "dashboardURL": "https://grafana.example/d/x", "silenceURL": "https://grafana.example/alerting/silence/new"}]
        });
        let alerts = parse_grafana(&body, now()).unwrap();
        assert_eq!(alerts[0].fingerprint.as_str(), "grafana:abc123");
        assert_eq!(alerts[0].priority, Some(Priority::P3));
        assert_eq!(alerts[0].tag("grafana_folder"), Some("infra"));
    }

    #[test]
    fn bodies_without_alerts_or_with_other_versions_are_refused() {
        assert!(parse_alertmanager(&json!({"version": "4", "alerts": []}), now()).unwrap_err().0.contains("no alerts"));
        assert!(
            parse_alertmanager(&json!({"version": "3", "alerts": [{}]}), now()).unwrap_err().0.contains("version 3")
        );
        assert!(parse_alertmanager(&json!({"alerts": [1]}), now()).unwrap_err().0.contains("alerts[0]"));
    }
}
