//! Turning policy text into a [`Policy`], collecting every problem with its key path.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use serde::de::DeserializeOwned;
use serde_aux::serde_introspection::serde_introspect;
use toml::{Table, Value};

use super::raw::*;
use super::*;
use crate::domain::alert::Transition;
use crate::domain::evidence::VerdictKind;
use crate::domain::ids::{ChannelId, Priority, Severity, UserId};
use crate::domain::roster::Rotation;

/// One problem in a policy file: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `team[1].members`; empty for whole-file problems.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Every problem found in a policy file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects problems while validation walks the file.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { path: path.into(), message: message.into() });
    }
}

/// Default durations, as policy strings so the example file and the code cannot disagree on syntax.
const DEFAULT_ACK_TIMEOUT: [&str; 4] = ["5m", "15m", "30m", "2h"];
const DEFAULT_STATUS_UPDATE: [&str; 4] = ["15m", "30m", "1h", "4h"];
const DEFAULT_ROOT_CAUSE_REMINDER: &str = "24h";
const DEFAULT_ROTATION_LENGTH: &str = "7d";
const DEFAULT_ROTATION_START: &str = "2024-01-01T09:00:00";

pub(super) fn parse(text: &str) -> Result<Policy, ConfigErrors> {
    let table: Table = match text.parse::<Table>() {
        Ok(t) => t,
        Err(e) => {
            let at = e.span().map(|s| line_col(text, s.start)).unwrap_or_default();
            return Err(ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("{at}not valid TOML: {}", e.message().trim()),
            }]));
        }
    };
    let mut p = Problems::default();
    check_keys(&table, &mut p);
    let raw = RawPolicy {
        default_team: section(&table, "default_team", &mut p),
        slack: section(&table, "slack", &mut p),
        team: teams_section(&table, &mut p),
        severity: section(&table, "severity", &mut p),
        timers: section(&table, "timers", &mut p),
        emoji: section(&table, "emoji", &mut p),
        alerts: section(&table, "alerts", &mut p),
        datadog: section(&table, "datadog", &mut p),
        followups: section(&table, "followups", &mut p),
    };
    let policy = build(raw, &mut p);
    if p.0.is_empty() { Ok(policy.expect("a policy without problems is complete")) } else { Err(ConfigErrors(p.0)) }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}: ")
}

// ---------------------------------------------------------------------------------------------
// Unknown keys

fn check_keys(top: &Table, p: &mut Problems) {
    unknown_keys::<RawPolicy>(top, "", p);
    sub_table::<RawSlack>(top, "slack", "", p);
    if let Some(Value::Array(teams)) = top.get("team") {
        for (i, team) in teams.iter().enumerate() {
            if let Value::Table(t) = team {
                unknown_keys::<RawTeam>(t, &format!("team[{i}]"), p);
            }
        }
    }
    if let Some(severity) = sub_table::<RawSeverity>(top, "severity", "", p)
        && let Some(Value::Array(rules)) = severity.get("rule")
    {
        for (i, rule) in rules.iter().enumerate() {
            if let Value::Table(t) = rule {
                unknown_keys::<RawRule>(t, &format!("severity.rule[{i}]"), p);
            }
        }
    }
    if let Some(timers) = sub_table::<RawTimers>(top, "timers", "", p) {
        sub_table::<RawPerSeverity>(timers, "ack_timeout", "timers", p);
        sub_table::<RawPerSeverity>(timers, "status_update", "timers", p);
    }
    sub_table::<RawEmoji>(top, "emoji", "", p);
    if let Some(alerts) = sub_table::<RawAlerts>(top, "alerts", "", p) {
        sub_table::<RawRate>(alerts, "flapping", "alerts", p);
        sub_table::<RawRate>(alerts, "storm", "alerts", p);
    }
    sub_table::<RawDatadog>(top, "datadog", "", p);
    sub_table::<RawFollowups>(top, "followups", "", p);
}

/// Checks the keys of `parent.key` when it is a table, and returns it.
fn sub_table<'a, T: DeserializeOwned>(
    parent: &'a Table,
    key: &str,
    parent_path: &str,
    p: &mut Problems,
) -> Option<&'a Table> {
    let Some(Value::Table(t)) = parent.get(key) else { return None };
    unknown_keys::<T>(t, &join(parent_path, key), p);
    Some(t)
}

fn unknown_keys<T: DeserializeOwned>(table: &Table, path: &str, p: &mut Problems) {
    let known = serde_introspect::<T>();
    for key in table.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let hint = did_you_mean(key, known).map(|k| format!(" (did you mean {k}?)")).unwrap_or_default();
        p.add(join(path, key), format!("unknown key{hint}"));
    }
}

fn did_you_mean<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3) || (key.len() >= 3 && k.starts_with(key.as_str())))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

// ---------------------------------------------------------------------------------------------
// Shapes

/// Deserializes one top-level section on its own, so a type error in one section still lets the
/// others be checked.
fn section<T: DeserializeOwned + Default>(top: &Table, key: &str, p: &mut Problems) -> T {
    match top.get(key) {
        None => T::default(),
        Some(value) => deserialize_at(value.clone(), key, p).unwrap_or_default(),
    }
}

fn deserialize_at<T: DeserializeOwned>(value: Value, path: &str, p: &mut Problems) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." {
                path.to_string()
            } else if inner.starts_with('[') {
                format!("{path}{inner}")
            } else {
                join(path, &inner)
            };
            p.add(full, e.into_inner().message().trim().to_string());
            None
        }
    }
}

/// The teams that could be read, with their position in the file (a team with a type error is
/// reported once and left out, rather than reported again as missing every key).
fn teams_section(top: &Table, p: &mut Problems) -> Vec<(usize, RawTeam)> {
    match top.get("team") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| deserialize_at(v.clone(), &format!("team[{i}]"), p).map(|t| (i, t)))
            .collect(),
        Some(Value::Table(_)) => {
            p.add("team", "write each team as [[team]] (an array of tables), not [team]");
            Vec::new()
        }
        Some(_) => {
            p.add("team", "expected a list of teams, each written as a [[team]] table");
            Vec::new()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Meaning

/// Validates the raw values. Returns `None` if anything was wrong (the problems say what).
fn build(raw: RawPolicy, p: &mut Problems) -> Option<Policy> {
    let before = p.0.len();
    let slack = build_slack(raw.slack, p);
    let names: Vec<String> = raw.team.iter().filter_map(|(_, t)| t.name.clone()).collect();
    if let Some(name) = &raw.default_team
        && !names.contains(name)
    {
        p.add("default_team", format!("no team is named `{name}` (teams: {})", names.join(", ")));
    }
    let teams = build_teams(raw.team, &slack, p);
    let default_team = raw.default_team.and_then(|name| teams.iter().position(|t| t.name == name)).unwrap_or(0);
    let severity = build_severity(raw.severity, p);
    let timers = build_timers(raw.timers, p);
    let emoji = build_emoji(raw.emoji, p);
    let followups = build_followups(raw.followups, &emoji, p);
    let alerts = build_alerts(raw.alerts, p);
    let datadog = build_datadog(raw.datadog, p);
    if p.0.len() > before {
        return None;
    }
    Some(Policy {
        slack,
        teams,
        default_team,
        severity: severity?,
        timers: timers?,
        emoji,
        alerts: alerts?,
        datadog: datadog?,
        followups: followups?,
    })
}

fn ids<T: FromStr>(values: Vec<String>, path: &str, p: &mut Problems) -> Vec<T>
where
    T::Err: fmt::Display,
{
    values
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| match v.parse::<T>() {
            Ok(id) => Some(id),
            Err(e) => {
                p.add(format!("{path}[{i}]"), e.to_string());
                None
            }
        })
        .collect()
}

fn severity_level(level: i64, path: &str, p: &mut Problems) -> Option<Severity> {
    let sev = Severity::from_level(level);
    if sev.is_none() {
        p.add(path, format!("{level} is not a severity (use 1, 2, 3 or 4; 1 is the most severe)"));
    }
    sev
}

fn build_slack(raw: RawSlack, p: &mut Problems) -> SlackPolicy {
    let incident_channel_severities = match raw.incident_channel_severities {
        None => vec![Severity::Sev1, Severity::Sev2],
        Some(levels) => levels
            .into_iter()
            .enumerate()
            .filter_map(|(i, l)| severity_level(l, &format!("slack.incident_channel_severities[{i}]"), p))
            .collect(),
    };
    let socket_silence_limit =
        duration(raw.socket_silence_limit.as_deref().unwrap_or("10m"), "slack.socket_silence_limit", p)
            .unwrap_or(TimeDelta::minutes(10));
    SlackPolicy {
        alert_channels: ids(raw.alert_channels, "slack.alert_channels", p),
        alert_bots: ids(raw.alert_bots, "slack.alert_bots", p),
        responders: ids(raw.responders, "slack.responders", p),
        incident_channel_severities,
        socket_silence_limit,
    }
}

fn build_teams(raw: Vec<(usize, RawTeam)>, slack: &SlackPolicy, p: &mut Problems) -> Vec<Team> {
    if raw.is_empty() && !p.0.iter().any(|e| e.path.starts_with("team")) {
        p.add("team", "at least one [[team]] is needed: alerts are routed to teams");
    }
    let mut teams = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, t) in raw {
        let at = |key: &str| format!("team[{i}].{key}");
        let name = match t.name.map(|n| n.trim().to_string()) {
            Some(n) if !n.is_empty() => {
                if names.iter().any(|seen| seen.eq_ignore_ascii_case(&n)) {
                    p.add(at("name"), format!("duplicate team name `{n}`; each team needs its own name"));
                }
                names.push(n.clone());
                Some(n)
            }
            Some(_) => {
                p.add(at("name"), "a team name cannot be empty");
                None
            }
            None => {
                p.add(at("name"), "missing; give the team a name, e.g. name = \"backend\"");
                None
            }
        };
        let matchers: Vec<TagGlob> = t
            .matchers
            .iter()
            .enumerate()
            .filter_map(|(j, m)| TagGlob::new(m).map_err(|e| p.add(format!("team[{i}].match[{j}]"), e)).ok())
            .collect();
        let members: Vec<UserId> = match t.members {
            Some(m) if m.is_empty() => {
                p.add(at("members"), "a rotation needs at least one member");
                Vec::new()
            }
            Some(m) => ids(m, &at("members"), p),
            None => {
                p.add(at("members"), "missing; list the rotation's Slack user ids in order, e.g. [\"U0123ABCD\"]");
                Vec::new()
            }
        };
        let escalation = ids(t.escalation, &at("escalation"), p);
        let start = rotation_start(t.rotation_start, &at("rotation_start"), p);
        let tz = match t.rotation_timezone.as_deref() {
            None => Some(chrono_tz::UTC),
            Some(s) => match s.parse::<chrono_tz::Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    let hint = chrono_tz::Tz::from_str_insensitive(s)
                        .map(|tz| format!(" (did you mean {}?)", tz.name()))
                        .unwrap_or_else(|_| " (use an IANA name such as \"Asia/Seoul\" or \"UTC\")".to_string());
                    p.add(at("rotation_timezone"), format!("unknown time zone `{s}`{hint}"));
                    None
                }
            },
        };
        let length =
            duration(t.rotation_length.as_deref().unwrap_or(DEFAULT_ROTATION_LENGTH), &at("rotation_length"), p);
        let channel = match t.channel {
            Some(c) => c.parse::<ChannelId>().map_err(|e| p.add(at("channel"), e.to_string())).ok(),
            None => match slack.alert_channels.first() {
                Some(c) => Some(c.clone()),
                None => {
                    p.add(
                        at("channel"),
                        "missing, and slack.alert_channels is empty: name the channel where this team's webhook alerts open their thread",
                    );
                    None
                }
            },
        };
        let rotation = match (&start, tz, length, members.is_empty()) {
            (Some(start), Some(tz), Some(length), false) => {
                Rotation::new(members, *start, tz, length).map_err(|e| p.add(at("members"), e.to_string())).ok()
            }
            _ => None,
        };
        if let (Some(name), Some(rotation), Some(channel)) = (name, rotation, channel) {
            teams.push(Team { name, matchers, rotation, channel, escalation });
        }
    }
    teams
}

fn rotation_start(raw: Option<Value>, path: &str, p: &mut Problems) -> Option<NaiveDateTime> {
    let text = match raw {
        None => DEFAULT_ROTATION_START.to_string(),
        Some(Value::String(s)) => s,
        Some(Value::Datetime(d)) => {
            if d.offset.is_some() {
                p.add(path, "give a local date-time without an offset; the zone comes from rotation_timezone");
                return None;
            }
            d.to_string()
        }
        Some(other) => {
            p.add(path, format!("expected a date-time such as \"2026-11-02T09:00:00\", found {}", other.type_str()));
            return None;
        }
    };
    let parsed = NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M"))
        .or_else(|_| NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M"))
        .or_else(|_| {
            NaiveDate::parse_from_str(&text, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        });
    match parsed {
        Ok(t) => Some(t),
        Err(_) => {
            let hint = if text.contains('+') || text.ends_with('Z') {
                "give a local date-time without an offset (the zone comes from rotation_timezone)"
            } else {
                "expected a local date-time such as \"2026-11-02T09:00:00\""
            };
            p.add(path, format!("`{text}` is not a date-time: {hint}"));
            None
        }
    }
}

/// Parses `"7d"`, `"30m"`, `"90s"`, `"1h 30m"`; zero and negative durations are refused.
pub fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let std = humantime::parse_duration(s.trim()).map_err(|_| {
        format!("`{s}` is not a duration; write a number and a unit, e.g. \"90s\", \"30m\", \"4h\", \"7d\"")
    })?;
    if std.is_zero() {
        return Err(format!("`{s}` is zero; durations must be longer than zero"));
    }
    TimeDelta::from_std(std).map_err(|_| format!("`{s}` is too long"))
}

fn duration(s: &str, path: &str, p: &mut Problems) -> Option<TimeDelta> {
    parse_duration(s).map_err(|e| p.add(path, e)).ok()
}

fn build_severity(raw: RawSeverity, p: &mut Problems) -> Option<SeverityPolicy> {
    let default = severity_level(raw.default.unwrap_or(3), "severity.default", p);
    let rules = match raw.rule {
        None => default_severity_rules(),
        Some(rules) => rules
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let at = |key: &str| format!("severity.rule[{i}].{key}");
                let severity = match r.severity {
                    Some(level) => severity_level(level, &at("severity"), p),
                    None => {
                        p.add(at("severity"), "missing; say which severity this rule gives, e.g. severity = 2");
                        None
                    }
                };
                let priority = ids::<Priority>(r.priority, &at("priority"), p);
                let tags: Vec<TagGlob> = r
                    .tags
                    .iter()
                    .enumerate()
                    .filter_map(|(j, g)| TagGlob::new(g).map_err(|e| p.add(format!("{}[{j}]", at("tags")), e)).ok())
                    .collect();
                let verdict: Vec<VerdictKind> = r
                    .verdict
                    .iter()
                    .enumerate()
                    .filter_map(|(j, v)| match VerdictKind::parse(v) {
                        Some(k) => Some(k),
                        None => {
                            p.add(
                                format!("{}[{j}]", at("verdict")),
                                format!("`{v}` is not a verdict (use isolated, several, global, no_errors, scattered)"),
                            );
                            None
                        }
                    })
                    .collect();
                let min_error_ratio = r.min_error_ratio.filter(|m| {
                    let ok = (0.0..=1.0).contains(m);
                    if !ok {
                        p.add(at("min_error_ratio"), format!("{m} is not a ratio between 0 and 1 (5% is 0.05)"));
                    }
                    ok
                });
                Some(SeverityRule {
                    severity: severity?,
                    reason: r.reason,
                    priority,
                    tags,
                    team: r.team,
                    verdict,
                    min_error_ratio,
                })
            })
            .collect(),
    };
    Some(SeverityPolicy { default: default?, rules })
}

/// Used when the file has no `[[severity.rule]]`: the monitor's priority decides.
fn default_severity_rules() -> Vec<SeverityRule> {
    [
        (Severity::Sev1, vec![Priority::P1]),
        (Severity::Sev2, vec![Priority::P2]),
        (Severity::Sev3, vec![Priority::P3]),
        (Severity::Sev4, vec![Priority::P4, Priority::P5]),
    ]
    .into_iter()
    .map(|(severity, priority)| SeverityRule {
        severity,
        reason: None,
        priority,
        tags: Vec::new(),
        team: Vec::new(),
        verdict: Vec::new(),
        min_error_ratio: None,
    })
    .collect()
}

fn per_severity(
    raw: RawPerSeverity,
    defaults: [&str; 4],
    path: &str,
    p: &mut Problems,
) -> Option<PerSeverity<TimeDelta>> {
    let mut get = |v: Option<String>, default: &str, key: &str| {
        duration(v.as_deref().unwrap_or(default), &format!("{path}.{key}"), p)
    };
    let sev1 = get(raw.sev1, defaults[0], "sev1");
    let sev2 = get(raw.sev2, defaults[1], "sev2");
    let sev3 = get(raw.sev3, defaults[2], "sev3");
    let sev4 = get(raw.sev4, defaults[3], "sev4");
    Some(PerSeverity { sev1: sev1?, sev2: sev2?, sev3: sev3?, sev4: sev4? })
}

fn build_timers(raw: RawTimers, p: &mut Problems) -> Option<Timers> {
    let ack_timeout = per_severity(raw.ack_timeout, DEFAULT_ACK_TIMEOUT, "timers.ack_timeout", p);
    let status_update = per_severity(raw.status_update, DEFAULT_STATUS_UPDATE, "timers.status_update", p);
    let root_cause_reminder = duration(
        raw.root_cause_reminder.as_deref().unwrap_or(DEFAULT_ROOT_CAUSE_REMINDER),
        "timers.root_cause_reminder",
        p,
    );
    Some(Timers { ack_timeout: ack_timeout?, status_update: status_update?, root_cause_reminder: root_cause_reminder? })
}

/// An emoji name as Slack spells it (`eyes`, without colons), or a problem at `path`.
fn emoji_name(v: Option<String>, default: &str, path: &str, p: &mut Problems) -> String {
    let v = v.unwrap_or_else(|| default.to_string());
    let trimmed = v.trim().trim_matches(':').to_string();
    let valid = !trimmed.is_empty()
        && trimmed.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-+'".contains(c));
    if !valid {
        p.add(path, format!("`{v}` is not a Slack emoji name (lower-case letters, digits, _ - +, e.g. \"eyes\")"));
    }
    trimmed
}

const TRACKERS: &str = "\"github\" or \"jira\"";

fn build_followups(raw: RawFollowups, emoji: &EmojiMap, p: &mut Problems) -> Option<FollowupPolicy> {
    let before = p.0.len();
    let reaction = emoji_name(raw.emoji, "ticket", "followups.emoji", p);
    let taken = [
        ("commander", &emoji.commander),
        ("investigator", &emoji.investigator),
        ("acknowledge", &emoji.acknowledge),
        ("open", &emoji.open),
        ("pin", &emoji.pin),
    ];
    if let Some((other, _)) = taken.iter().find(|(_, v)| **v == reaction) {
        p.add("followups.emoji", format!("`{reaction}` is already the {other} reaction; give follow-ups their own"));
    }
    let non_empty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let tracker = match non_empty(raw.tracker).map(|t| t.to_ascii_lowercase()).as_deref() {
        None => {
            for (key, set) in [
                ("github_repo", raw.github_repo.is_some()),
                ("jira_project", raw.jira_project.is_some()),
                ("jira_issue_type", raw.jira_issue_type.is_some()),
            ] {
                if set {
                    p.add(format!("followups.{key}"), format!("set without `tracker`: add tracker = {TRACKERS}"));
                }
            }
            None
        }
        Some("github") => match non_empty(raw.github_repo) {
            Some(repo) if is_github_repo(&repo) => Some(TrackerTarget::GitHub { repo }),
            Some(repo) => {
                p.add("followups.github_repo", format!("`{repo}` is not a repository: write \"owner/name\""));
                None
            }
            None => {
                p.add("followups.github_repo", "tracker = \"github\" needs the repository, e.g. \"acme/ops\"");
                None
            }
        },
        Some("jira") => {
            let issue_type = non_empty(raw.jira_issue_type).unwrap_or_else(|| "Task".to_string());
            match non_empty(raw.jira_project) {
                Some(project)
                    if project.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && project.starts_with(|c: char| c.is_ascii_alphabetic()) =>
                {
                    Some(TrackerTarget::Jira { project: project.to_ascii_uppercase(), issue_type })
                }
                Some(project) => {
                    p.add("followups.jira_project", format!("`{project}` is not a Jira project key (e.g. \"OPS\")"));
                    None
                }
                None => {
                    p.add("followups.jira_project", "tracker = \"jira\" needs the project key, e.g. \"OPS\"");
                    None
                }
            }
        }
        Some(other) => {
            p.add("followups.tracker", format!("`{other}` is not a tracker: use {TRACKERS}"));
            None
        }
    };
    let mut labels = Vec::new();
    for (i, label) in raw.labels.into_iter().enumerate() {
        let label = label.trim().to_string();
        if label.is_empty() || label.len() > 50 {
            p.add(format!("followups.labels[{i}]"), "a label has 1 to 50 characters");
        } else if matches!(tracker, Some(TrackerTarget::Jira { .. })) && label.contains(char::is_whitespace) {
            p.add(format!("followups.labels[{i}]"), format!("Jira labels cannot contain spaces: `{label}`"));
        } else {
            labels.push(label);
        }
    }
    (p.0.len() == before).then_some(FollowupPolicy { tracker, labels, emoji: reaction })
}

fn is_github_repo(repo: &str) -> bool {
    let part = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    matches!(repo.split_once('/'), Some((owner, name)) if part(owner) && part(name))
}

fn build_emoji(raw: RawEmoji, p: &mut Problems) -> EmojiMap {
    let mut name = |v: Option<String>, default: &str, key: &str| emoji_name(v, default, &format!("emoji.{key}"), p);
    let map = EmojiMap {
        commander: name(raw.commander, "cop", "commander"),
        investigator: name(raw.investigator, "mag", "investigator"),
        acknowledge: name(raw.acknowledge, "eyes", "acknowledge"),
        open: name(raw.open, "rotating_light", "open"),
        pin: name(raw.pin, "pushpin", "pin"),
        folded: name(raw.folded, "repeat", "folded"),
    };
    let all = [
        ("commander", &map.commander),
        ("investigator", &map.investigator),
        ("acknowledge", &map.acknowledge),
        ("open", &map.open),
        ("pin", &map.pin),
    ];
    for (i, (key, value)) in all.iter().enumerate() {
        if let Some((other, _)) = all[..i].iter().find(|(_, v)| v == value) {
            p.add(
                format!("emoji.{key}"),
                format!("`{value}` is already the {other} reaction; give each action its own emoji"),
            );
        }
    }
    map
}

fn build_rate(raw: RawRate, default: (i64, &str), path: &str, p: &mut Problems) -> Option<Rate> {
    let count = raw.count.unwrap_or(default.0);
    let count = match u32::try_from(count) {
        Ok(c) if c >= 2 => Some(c),
        _ => {
            p.add(format!("{path}.count"), format!("{count} is too small; use 2 or more"));
            None
        }
    };
    let window = duration(raw.window.as_deref().unwrap_or(default.1), &format!("{path}.window"), p);
    Some(Rate { count: count?, window: window? })
}

fn build_alerts(raw: RawAlerts, p: &mut Problems) -> Option<AlertPolicy> {
    let open_on = match raw.open_on {
        None => vec![Transition::Triggered, Transition::ReTriggered, Transition::NoData],
        Some(names) => names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let t = Transition::parse(n);
                if t.is_none() {
                    p.add(
                        format!("alerts.open_on[{i}]"),
                        format!("`{n}` is not a transition (use Triggered, Re-Triggered, Warn, No Data)"),
                    );
                }
                if t == Some(Transition::Recovered) {
                    p.add(format!("alerts.open_on[{i}]"), "a Recovered alert cannot open an incident");
                }
                t
            })
            .collect(),
    };
    let flapping = build_rate(raw.flapping, (4, "10m"), "alerts.flapping", p);
    let storm = build_rate(raw.storm, (10, "1m"), "alerts.storm", p);
    Some(AlertPolicy {
        open_on,
        resolve_on_recovery: raw.resolve_on_recovery.unwrap_or(false),
        flapping: flapping?,
        storm: storm?,
    })
}

fn build_datadog(raw: RawDatadog, p: &mut Problems) -> Option<DatadogPolicy> {
    let customer_facet = raw.customer_facet.map(|f| f.trim().to_string()).filter(|f| {
        let ok = !f.is_empty() && !f.contains(char::is_whitespace);
        if !ok {
            p.add("datadog.customer_facet", "expected a span attribute path such as \"@usr.org_id\"");
        }
        ok
    });
    let window_before = duration(raw.window_before.as_deref().unwrap_or("15m"), "datadog.window_before", p);
    let window_after = duration(raw.window_after.as_deref().unwrap_or("5m"), "datadog.window_after", p);
    let refresh = duration(raw.refresh.as_deref().unwrap_or("5m"), "datadog.refresh", p);
    let min_requests = match raw.min_requests.unwrap_or(20) {
        n if n >= 1 => Some(n as u64),
        n => {
            p.add("datadog.min_requests", format!("{n} is too small; use 1 or more"));
            None
        }
    };
    let traces = match raw.traces.unwrap_or(3) {
        n @ 0..=10 => Some(n as usize),
        n => {
            p.add("datadog.traces", format!("{n} is out of range; link between 0 and 10 traces"));
            None
        }
    };
    let defaults = crate::domain::evidence::VerdictRules::default();
    let mut fraction = |v: Option<f64>, default: f64, key: &str| -> Option<f64> {
        match v {
            None => Some(default),
            Some(x) if (0.0..=1.0).contains(&x) => Some(x),
            Some(x) => {
                p.add(format!("datadog.{key}"), format!("{x} is not between 0 and 1 (50% is 0.5)"));
                None
            }
        }
    };
    let elevated_ratio = fraction(raw.elevated_ratio, defaults.elevated_ratio, "elevated_ratio");
    let isolated_share = fraction(raw.isolated_share, defaults.isolated_share, "isolated_share");
    let global_share = fraction(raw.global_share, defaults.global_share, "global_share");
    let isolation_factor = match raw.isolation_factor {
        None => Some(defaults.isolation_factor),
        Some(f) if f >= 1.0 => Some(f),
        Some(f) => {
            p.add(
                "datadog.isolation_factor",
                format!("{f} is too small; use 1 or more (how many times everyone else's ratio)"),
            );
            None
        }
    };
    let span_metric = raw.span_metric.map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
    Some(DatadogPolicy {
        customer_facet,
        env: raw.env.filter(|e| !e.trim().is_empty()),
        window_before: window_before?,
        window_after: window_after?,
        refresh: refresh?,
        min_requests: min_requests?,
        traces: traces?,
        verdict: crate::domain::evidence::VerdictRules {
            min_requests: min_requests?,
            elevated_ratio: elevated_ratio?,
            isolated_share: isolated_share?,
            isolation_factor: isolation_factor?,
            global_share: global_share?,
        },
        span_metric,
        span_metric_customer_tag: raw.span_metric_customer_tag.unwrap_or_else(|| "customer".into()),
    })
}
