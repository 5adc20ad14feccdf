//! The policy file as written: serde shapes with every value still unvalidated.
//!
//! Values that need checking (ids, durations, zones) stay strings here so that validation can
//! report every problem at once instead of stopping at the first one serde meets.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawPolicy {
    pub default_team: Option<String>,
    pub slack: RawSlack,
    pub team: Vec<(usize, RawTeam)>,
    pub severity: RawSeverity,
    pub timers: RawTimers,
    pub emoji: RawEmoji,
    pub alerts: RawAlerts,
    pub datadog: RawDatadog,
    pub followups: RawFollowups,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawFollowups {
    pub tracker: Option<String>,
    pub github_repo: Option<String>,
    pub labels: Vec<String>,
    pub jira_project: Option<String>,
    pub jira_issue_type: Option<String>,
    pub emoji: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSlack {
    pub alert_channels: Vec<String>,
    pub alert_bots: Vec<String>,
    pub responders: Vec<String>,
    pub incident_channel_severities: Option<Vec<i64>>,
    pub socket_silence_limit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawTeam {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matchers: Vec<String>,
    pub members: Option<Vec<String>>,
    /// A string or an unquoted TOML local date-time.
    pub rotation_start: Option<toml::Value>,
    pub rotation_timezone: Option<String>,
    pub rotation_length: Option<String>,
    pub channel: Option<String>,
    pub escalation: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSeverity {
    pub default: Option<i64>,
    pub rule: Option<Vec<RawRule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRule {
    pub severity: Option<i64>,
    pub reason: Option<String>,
    pub priority: Vec<String>,
    pub tags: Vec<String>,
    pub team: Vec<String>,
    pub verdict: Vec<String>,
    pub min_error_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawTimers {
    pub ack_timeout: RawPerSeverity,
    pub status_update: RawPerSeverity,
    pub root_cause_reminder: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawPerSeverity {
    pub sev1: Option<String>,
    pub sev2: Option<String>,
    pub sev3: Option<String>,
    pub sev4: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawEmoji {
    pub commander: Option<String>,
    pub investigator: Option<String>,
    pub acknowledge: Option<String>,
    pub open: Option<String>,
    pub pin: Option<String>,
    pub folded: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAlerts {
    pub open_on: Option<Vec<String>>,
    pub resolve_on_recovery: Option<bool>,
    pub flapping: RawRate,
    pub storm: RawRate,
}

/// `count` events within `window`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRate {
    pub count: Option<i64>,
    pub window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDatadog {
    pub customer_facet: Option<String>,
    pub env: Option<String>,
    pub window_before: Option<String>,
    pub window_after: Option<String>,
    pub refresh: Option<String>,
    pub min_requests: Option<i64>,
    pub traces: Option<i64>,
    pub elevated_ratio: Option<f64>,
    pub isolated_share: Option<f64>,
    pub isolation_factor: Option<f64>,
    pub global_share: Option<f64>,
    pub span_metric: Option<String>,
    pub span_metric_customer_tag: Option<String>,
}
