//! The validated policy: who is on call, how alerts route and grade, how timers run. Reading and
//! validating the TOML file is `crate::policy`'s job; the domain only consumes the result.

use chrono::TimeDelta;
use globset::GlobMatcher;

use super::alert::{Alert, Transition};
use super::evidence::VerdictKind;
use super::ids::{BotId, ChannelId, Priority, Severity, UserId};
use super::roster::Rotation;

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub slack: SlackPolicy,
    pub teams: Vec<Team>,
    /// Index into `teams` of the team that takes alerts no matcher claims.
    pub default_team: usize,
    pub severity: SeverityPolicy,
    pub timers: Timers,
    pub emoji: EmojiMap,
    pub alerts: AlertPolicy,
    pub datadog: DatadogPolicy,
    pub followups: FollowupPolicy,
}

#[derive(Debug, Clone)]
pub struct SlackPolicy {
    /// Channels whose alert messages the bot reads.
    pub alert_channels: Vec<ChannelId>,
    /// Bots besides Datadog's app whose messages are alerts.
    pub alert_bots: Vec<BotId>,
    /// People outside the teams who may change any incident.
    pub responders: Vec<UserId>,
    /// Severities that get a dedicated incident channel.
    pub incident_channel_severities: Vec<Severity>,
    /// Socket Mode reconnects when nothing has arrived for this long.
    pub socket_silence_limit: TimeDelta,
}

#[derive(Debug, Clone)]
pub struct Team {
    pub name: String,
    pub matchers: Vec<TagGlob>,
    pub rotation: Rotation,
    /// Where webhook alerts of this team open their thread.
    pub channel: ChannelId,
    /// Who to call after the rotation has been tried.
    pub escalation: Vec<UserId>,
}

impl Team {
    pub fn matches(&self, tags: &[String]) -> bool {
        self.matchers.iter().any(|m| tags.iter().any(|t| m.is_match(t)))
    }
}

/// A tag pattern such as `service:api-*`, matched case-insensitively.
#[derive(Debug, Clone)]
pub struct TagGlob {
    pattern: String,
    matcher: GlobMatcher,
}

impl TagGlob {
    pub fn new(pattern: &str) -> Result<TagGlob, String> {
        let glob = globset::GlobBuilder::new(pattern)
            .case_insensitive(true)
            .literal_separator(false)
            .build()
            .map_err(|e| format!("`{pattern}` is not a valid glob: {}", e.kind()))?;
        Ok(TagGlob { pattern: pattern.to_string(), matcher: glob.compile_matcher() })
    }

    pub fn is_match(&self, tag: &str) -> bool {
        self.matcher.is_match(tag)
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

#[derive(Debug, Clone)]
pub struct SeverityPolicy {
    /// Used when no rule matches.
    pub default: Severity,
    /// Checked in order; the first match decides.
    pub rules: Vec<SeverityRule>,
}

/// One severity rule. Every condition that is set must hold; an unset condition holds always.
#[derive(Debug, Clone)]
pub struct SeverityRule {
    pub severity: Severity,
    pub reason: Option<String>,
    /// Any of these priorities.
    pub priority: Vec<Priority>,
    /// Every one of these globs matches some tag of the alert.
    pub tags: Vec<TagGlob>,
    /// Any of these team names.
    pub team: Vec<String>,
    /// Any of these evidence verdicts.
    pub verdict: Vec<VerdictKind>,
    /// The evidence's global error ratio is at least this (0 to 1).
    pub min_error_ratio: Option<f64>,
}

/// A duration for each severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerSeverity<T> {
    pub sev1: T,
    pub sev2: T,
    pub sev3: T,
    pub sev4: T,
}

impl<T: Copy> PerSeverity<T> {
    pub fn get(&self, severity: Severity) -> T {
        match severity {
            Severity::Sev1 => self.sev1,
            Severity::Sev2 => self.sev2,
            Severity::Sev3 => self.sev3,
            Severity::Sev4 => self.sev4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timers {
    /// An unacknowledged incident escalates after this long, and again after each further period.
    pub ack_timeout: PerSeverity<TimeDelta>,
    /// The commander is reminded to post a status update at this cadence.
    pub status_update: PerSeverity<TimeDelta>,
    /// A mitigated incident without a root cause reminds its investigator after this long.
    pub root_cause_reminder: TimeDelta,
}

/// Reaction names (without colons) that drive the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmojiMap {
    pub commander: String,
    pub investigator: String,
    pub acknowledge: String,
    pub open: String,
    pub pin: String,
    /// The bot's reaction on a duplicate alert message that folded into an open incident.
    pub folded: String,
}

/// `count` events within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: TimeDelta,
}

#[derive(Debug, Clone)]
pub struct AlertPolicy {
    /// Transitions that open an incident by themselves.
    pub open_on: Vec<Transition>,
    /// Whether a Recovered alert resolves its incident (otherwise that is the commander's call).
    pub resolve_on_recovery: bool,
    /// This many transitions within the window mark an incident as flapping.
    pub flapping: Rate,
    /// More alerts than this within the window in one channel start storm mode.
    pub storm: Rate,
}

#[derive(Debug, Clone)]
pub struct DatadogPolicy {
    /// Span attribute that names the customer, e.g. `@usr.org_id`.
    pub customer_facet: Option<String>,
    /// Env used when an alert names none.
    pub env: Option<String>,
    pub window_before: TimeDelta,
    pub window_after: TimeDelta,
    /// How often the evidence message refreshes while the incident is open.
    pub refresh: TimeDelta,
    /// Customers with fewer requests than this are grouped as "others".
    pub min_requests: u64,
    /// How many representative traces to link.
    pub traces: usize,
    /// Verdict thresholds.
    pub verdict: super::evidence::VerdictRules,
    /// A span-based metric counting spans, tagged by customer and status: when set, the
    /// per-customer table comes from the metrics API instead of spans aggregation.
    pub span_metric: Option<String>,
    /// The span-based metric's customer tag.
    pub span_metric_customer_tag: String,
}

/// Where follow-ups become tickets (`[followups]`), and how people ask for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowupPolicy {
    /// `None`: follow-ups stay on the timeline and in the postmortem only.
    pub tracker: Option<TrackerTarget>,
    /// Labels every ticket gets.
    pub labels: Vec<String>,
    /// The reaction that turns a thread message into a follow-up.
    pub emoji: String,
}

/// The tracker and the place in it that tickets are filed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerTarget {
    /// GitHub Issues in `owner/name`.
    GitHub { repo: String },
    /// Jira Cloud: a project key (`OPS`) and an issue type (`Task`).
    Jira { project: String, issue_type: String },
}

impl TrackerTarget {
    /// How a person reads where tickets go: `GitHub acme/ops`, `Jira OPS`.
    pub fn label(&self) -> String {
        match self {
            TrackerTarget::GitHub { repo } => format!("GitHub {repo}"),
            TrackerTarget::Jira { project, .. } => format!("Jira {project}"),
        }
    }
}

impl Policy {
    /// The team an alert belongs to: the first whose matchers match one of its tags, else the
    /// default team.
    pub fn route(&self, alert: &Alert) -> &Team {
        let tags = alert.routing_tags();
        self.teams.iter().find(|t| t.matches(&tags)).unwrap_or(&self.teams[self.default_team])
    }

    /// The team that owns a service by the teams' match rules (`service:<name>` against their
    /// globs), if one does; no default team, so ownership is never guessed.
    pub fn team_of_service(&self, service: &str) -> Option<&Team> {
        let tags = [format!("service:{service}")];
        self.teams.iter().find(|t| t.matches(&tags))
    }

    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.name.eq_ignore_ascii_case(name))
    }

    pub fn default_team(&self) -> &Team {
        &self.teams[self.default_team]
    }
}
