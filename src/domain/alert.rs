//! The normalised alert every source is turned into, and its fingerprint.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::{ChannelId, Priority};

/// Where an alert came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSource {
    /// A monitor notification posted in Slack by Datadog's app.
    DatadogSlack,
    /// A message from another alerting bot listed in `slack.alert_bots`.
    SlackBot,
    /// Datadog's webhooks integration.
    DatadogWebhook,
    /// Prometheus Alertmanager's webhook receiver (version 4).
    Alertmanager,
    /// Grafana unified alerting's webhook contact point.
    Grafana,
    /// Declared by a person with `/incident declare`.
    Manual,
}

impl AlertSource {
    /// A stable name for metrics and exports: `datadog_slack`, `alertmanager` ...
    pub fn slug(self) -> &'static str {
        match self {
            AlertSource::DatadogSlack => "datadog_slack",
            AlertSource::SlackBot => "slack_bot",
            AlertSource::DatadogWebhook => "datadog_webhook",
            AlertSource::Alertmanager => "alertmanager",
            AlertSource::Grafana => "grafana",
            AlertSource::Manual => "manual",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AlertSource::DatadogSlack => "Datadog (Slack)",
            AlertSource::SlackBot => "alert bot (Slack)",
            AlertSource::DatadogWebhook => "Datadog webhook",
            AlertSource::Alertmanager => "Alertmanager",
            AlertSource::Grafana => "Grafana",
            AlertSource::Manual => "declared",
        }
    }

    fn key(self) -> &'static str {
        match self {
            AlertSource::DatadogSlack | AlertSource::DatadogWebhook => "datadog",
            AlertSource::SlackBot => "slack-bot",
            AlertSource::Alertmanager => "alertmanager",
            AlertSource::Grafana => "grafana",
            AlertSource::Manual => "manual",
        }
    }
}

/// The state change an alert reports, as monitors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transition {
    Triggered,
    ReTriggered,
    Warn,
    Recovered,
    NoData,
}

impl Transition {
    pub const ALL: [Transition; 5] =
        [Transition::Triggered, Transition::ReTriggered, Transition::Warn, Transition::Recovered, Transition::NoData];

    /// The name as it appears in a Datadog title, e.g. `Re-Triggered`.
    pub fn name(self) -> &'static str {
        match self {
            Transition::Triggered => "Triggered",
            Transition::ReTriggered => "Re-Triggered",
            Transition::Warn => "Warn",
            Transition::Recovered => "Recovered",
            Transition::NoData => "No Data",
        }
    }

    /// Reads the names monitors use, case-insensitively: `Triggered`, `Re-Triggered`, `Warn`,
    /// `Warning`, `Recovered`, `Resolved`, `No Data`, `NoData`, `Alert`, `firing`.
    pub fn parse(s: &str) -> Option<Transition> {
        let k: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        Some(match k.as_str() {
            "triggered" | "alert" | "alerting" | "firing" | "error" => Transition::Triggered,
            "retriggered" => Transition::ReTriggered,
            "warn" | "warning" => Transition::Warn,
            "recovered" | "resolved" | "ok" | "normal" | "success" => Transition::Recovered,
            "nodata" => Transition::NoData,
            _ => return None,
        })
    }

    /// True for transitions that say something is wrong.
    pub fn is_problem(self) -> bool {
        !matches!(self, Transition::Recovered)
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Identity of "the same alert" across repeats: while an incident with this fingerprint is open,
/// new alerts with it fold into that incident.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// A Datadog monitor, per alerting scope (`host:a` and `host:b` of a multi-alert are separate).
    pub fn for_monitor(monitor_id: &str, scope: Option<&str>) -> Fingerprint {
        let scope = scope.map(normalise_scope).unwrap_or_default();
        if scope.is_empty() {
            Fingerprint(format!("datadog:monitor:{monitor_id}"))
        } else {
            Fingerprint(format!("datadog:monitor:{monitor_id}:{scope}"))
        }
    }

    /// A fingerprint the source computed itself (Alertmanager, Grafana).
    pub fn from_source(source: AlertSource, external: &str) -> Fingerprint {
        Fingerprint(format!("{}:{}", source.key(), external.trim()))
    }

    /// Fallback: a stable hash of the source and the title with its volatile parts removed
    /// (priority and transition markers, numbers, case, spacing), so `[Triggered] CPU 91%` and
    /// `[Recovered] CPU 12%` are the same alert.
    pub fn from_title(source: AlertSource, title: &str) -> Fingerprint {
        let normalised = normalise_title(title);
        let digest = Sha256::digest(format!("{}\n{}", source.key(), normalised).as_bytes());
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        Fingerprint(format!("{}:title:{hex}", source.key()))
    }

    /// Rebuilds a fingerprint from its stored text.
    pub fn from_stored(s: impl Into<String>) -> Fingerprint {
        Fingerprint(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sorted, lower-cased `k:v` pairs so `{host:b,env:prod}` equals `{env:prod, host:b}`.
fn normalise_scope(scope: &str) -> String {
    let mut parts: Vec<String> = scope
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    parts.sort();
    parts.join(",")
}

/// Lower-cases, drops `[...]` markers and ` on {...}` scopes' volatile values, replaces digit runs
/// with `#`, and collapses whitespace.
pub fn normalise_title(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    let mut depth = 0u32;
    let mut last_digit = false;
    for c in title.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_ascii_digit() => {
                if !last_digit {
                    out.push('#');
                }
                last_digit = true;
                continue;
            }
            c => out.extend(c.to_lowercase()),
        }
        last_digit = false;
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A link an alert carries (the monitor, a dashboard, a runbook).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// The Slack message an alert arrived as, when it arrived through Slack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlackMessageRef {
    pub channel: ChannelId,
    pub ts: String,
}

/// One alert, normalised from whatever format it arrived in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub source: AlertSource,
    pub fingerprint: Fingerprint,
    pub transition: Transition,
    pub priority: Option<Priority>,
    pub title: String,
    pub text: String,
    /// `key:value` (or bare) tags, lower-cased keys, as monitors attach them.
    pub tags: Vec<String>,
    pub service: Option<String>,
    pub env: Option<String>,
    /// Datadog monitor id, when the alert is from a Datadog monitor.
    pub monitor_id: Option<String>,
    /// The alerting scope, e.g. `host:web-1,env:prod`.
    pub scope: Option<String>,
    pub links: Vec<Link>,
    pub observed_at: DateTime<Utc>,
    /// The alert's own message, for alerts that arrived in a Slack channel.
    pub slack: Option<SlackMessageRef>,
}

impl Alert {
    /// The title without the `[P1] [Triggered on …]` markers: what the alert is about, the same
    /// across its state changes (incident titles and storm summaries use it).
    pub fn name(&self) -> String {
        let mut rest = self.title.trim();
        while let Some(stripped) = rest.strip_prefix('[') {
            match stripped.find(']') {
                Some(end) => rest = stripped[end + 1..].trim_start(),
                None => break,
            }
        }
        if rest.is_empty() { self.title.trim().to_string() } else { rest.to_string() }
    }

    /// The value of the first tag `key:value` with this key.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find_map(|t| {
            let (k, v) = t.split_once(':')?;
            (k == key).then_some(v)
        })
    }

    /// Tags plus the derived `service:`/`env:` ones, for routing and rules.
    pub fn routing_tags(&self) -> Vec<String> {
        let mut tags = self.tags.clone();
        if let Some(s) = &self.service {
            tags.push(format!("service:{s}"));
        }
        if let Some(e) = &self.env {
            tags.push(format!("env:{e}"));
        }
        tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_fingerprint_ignores_scope_order_and_case() {
        let a = Fingerprint::for_monitor("12345", Some("host:web-1,env:prod"));
        let b = Fingerprint::for_monitor("12345", Some("{env:prod, HOST:web-1}"));
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "datadog:monitor:12345:env:prod,host:web-1");
        assert_ne!(a, Fingerprint::for_monitor("12345", Some("host:web-2,env:prod")));
        assert_eq!(Fingerprint::for_monitor("9", None).as_str(), "datadog:monitor:9");
        assert_eq!(Fingerprint::for_monitor("9", Some(" ")).as_str(), "datadog:monitor:9");
    }

    #[test]
    fn title_fingerprint_is_stable_across_transitions_and_numbers() {
        let fired = Fingerprint::from_title(AlertSource::SlackBot, "[P2] [Triggered] CPU at 91% on web-1");
        let recovered = Fingerprint::from_title(AlertSource::SlackBot, "[Recovered]  cpu at 12% on web-1");
        assert_eq!(fired, recovered);
        // Pinned value: a change here would split open incidents from their new alerts after an upgrade.
        assert_eq!(fired.as_str(), "slack-bot:title:222f4a440ed2260ea71e73d3");
        let other_source = Fingerprint::from_title(AlertSource::Grafana, "CPU at 91% on web-1");
        assert_ne!(fired, other_source);
        let other_alert = Fingerprint::from_title(AlertSource::SlackBot, "Disk at 91% on web-1");
        assert_ne!(fired, other_alert);
    }

    #[test]
    fn normalised_title_drops_markers_and_digits() {
        assert_eq!(normalise_title("[P1] [Triggered on {host:a}] API  latency 250ms"), "api latency #ms");
    }

    #[test]
    fn transitions_parse_from_every_spelling() {
        assert_eq!(Transition::parse("Re-Triggered"), Some(Transition::ReTriggered));
        assert_eq!(Transition::parse("No Data"), Some(Transition::NoData));
        assert_eq!(Transition::parse("firing"), Some(Transition::Triggered));
        assert_eq!(Transition::parse("resolved"), Some(Transition::Recovered));
        assert_eq!(Transition::parse("Warning"), Some(Transition::Warn));
        assert_eq!(Transition::parse("bogus"), None);
        for t in Transition::ALL {
            assert_eq!(Transition::parse(t.name()), Some(t));
        }
    }
}
