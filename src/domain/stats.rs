//! Incident insights: how many incidents, how fast they were acknowledged, mitigated, resolved
//! and understood, by severity and by team, the slowest ones, and what is still owed (a root
//! cause, open follow-ups). A pure function of the incidents, the clock and the question.

use chrono::{DateTime, TimeDelta, Utc};

use super::ids::{IncidentId, Severity};
use super::incident::Incident;
use super::text::escape_untrusted;

/// The question `/incident stats [team] [since 30d]` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub team: Option<String>,
    pub since: TimeDelta,
}

/// The default window.
pub const DEFAULT_SINCE: TimeDelta = TimeDelta::days(30);
/// How many of the slowest incidents are listed.
pub const SLOWEST: usize = 5;

impl StatsQuery {
    /// Reads `[team] [since <duration>]` (also `30d` alone), as typed after `stats`.
    pub fn parse(words: &[&str]) -> Result<StatsQuery, String> {
        let mut team = None;
        let mut since = None;
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            if w.eq_ignore_ascii_case("since") || w.eq_ignore_ascii_case("last") {
                let Some(value) = words.get(i + 1) else {
                    return Err("`since` needs a duration, e.g. `since 30d`".into());
                };
                since = Some(window(value)?);
                i += 2;
                continue;
            }
            if let Ok(d) = window(w) {
                since = Some(d);
            } else if team.is_none() {
                team = Some(w.to_string());
            } else {
                return Err(format!("`{w}` is neither a team nor a window; use `/incident stats [team] [since 30d]`"));
            }
            i += 1;
        }
        Ok(StatsQuery { team, since: since.unwrap_or(DEFAULT_SINCE) })
    }
}

/// `30d`, `2w`, `12h`, `90m`.
fn window(text: &str) -> Result<TimeDelta, String> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || format!("`{text}` is not a window: use e.g. `30d`, `2w`, `12h`");
    let unit = t.chars().last().ok_or_else(bad)?;
    let n: i64 = t[..t.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    if n <= 0 || n > 3650 {
        return Err(bad());
    }
    Ok(match unit {
        'w' => TimeDelta::weeks(n),
        'd' => TimeDelta::days(n),
        'h' => TimeDelta::hours(n),
        'm' => TimeDelta::minutes(n),
        _ => return Err(bad()),
    })
}

/// What is measured from the opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    Acknowledge,
    Mitigate,
    Resolve,
    RootCause,
}

impl Measure {
    pub const ALL: [Measure; 4] = [Measure::Acknowledge, Measure::Mitigate, Measure::Resolve, Measure::RootCause];

    pub fn label(self) -> &'static str {
        match self {
            Measure::Acknowledge => "acknowledge",
            Measure::Mitigate => "mitigate",
            Measure::Resolve => "resolve",
            Measure::RootCause => "root cause",
        }
    }

    pub fn of(self, incident: &Incident) -> Option<TimeDelta> {
        let d = incident.durations();
        match self {
            Measure::Acknowledge => d.to_acknowledge,
            Measure::Mitigate => d.to_mitigate,
            Measure::Resolve => d.to_resolve,
            Measure::RootCause => d.to_root_cause,
        }
    }
}

/// Median and 90th percentile of one measure over a group (nearest rank), with how many
/// incidents had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    pub count: usize,
    pub median: TimeDelta,
    pub p90: TimeDelta,
}

/// Nearest-rank percentile `p` (0..=1) of `values`; `None` when empty.
pub fn spread(mut values: Vec<TimeDelta>) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    Some(Spread { count: values.len(), median: rank(0.5), p90: rank(0.9) })
}

/// One group's row: its incidents and the spread of each measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub group: String,
    pub incidents: usize,
    pub measures: Vec<(Measure, Option<Spread>)>,
}

/// An incident worth a look: the slowest to resolve (or still open the longest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slow {
    pub id: IncidentId,
    pub title: String,
    pub severity: Severity,
    pub team: String,
    /// Time to resolve, or open so far.
    pub took: TimeDelta,
    pub resolved: bool,
    pub link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub team: Option<String>,
    pub total: usize,
    pub by_severity: Vec<(Severity, usize)>,
    pub severity_rows: Vec<Row>,
    pub team_rows: Vec<Row>,
    pub slowest: Vec<Slow>,
    /// Mitigated or resolved, and still no root cause.
    pub without_root_cause: Vec<IncidentId>,
    /// Incidents with open follow-ups, and how many.
    pub open_followups: Vec<(IncidentId, usize)>,
}

fn row(group: String, incidents: &[&Incident]) -> Row {
    let measures =
        Measure::ALL.iter().map(|m| (*m, spread(incidents.iter().filter_map(|i| m.of(i)).collect()))).collect();
    Row { group, incidents: incidents.len(), measures }
}

/// The insights over the incidents opened in the window (and, with a team, of that team).
/// `workspace_url` links the slowest incidents' threads.
pub fn stats(incidents: &[Incident], query: &StatsQuery, now: DateTime<Utc>, workspace_url: Option<&str>) -> Stats {
    let from = now - query.since;
    let mut chosen: Vec<&Incident> = incidents
        .iter()
        .filter(|i| i.opened_at >= from && i.opened_at <= now)
        .filter(|i| query.team.as_deref().is_none_or(|t| i.team.eq_ignore_ascii_case(t)))
        .collect();
    chosen.sort_by_key(|i| i.id);
    let mut severities: Vec<Severity> = chosen.iter().map(|i| i.severity).collect();
    severities.sort();
    severities.dedup();
    let by_severity = severities.iter().map(|s| (*s, chosen.iter().filter(|i| i.severity == *s).count())).collect();
    let severity_rows = severities
        .iter()
        .map(|s| row(s.to_string(), &chosen.iter().copied().filter(|i| i.severity == *s).collect::<Vec<_>>()))
        .collect();
    let mut teams: Vec<&str> = chosen.iter().map(|i| i.team.as_str()).collect();
    teams.sort();
    teams.dedup();
    let team_rows = teams
        .iter()
        .map(|t| row(t.to_string(), &chosen.iter().copied().filter(|i| i.team == *t).collect::<Vec<_>>()))
        .collect();
    let mut slowest: Vec<Slow> = chosen
        .iter()
        .map(|i| Slow {
            id: i.id,
            title: i.title.clone(),
            severity: i.severity,
            team: i.team.clone(),
            took: i.resolved_at.unwrap_or(now) - i.opened_at,
            resolved: i.resolved_at.is_some(),
            link: i.thread_url(workspace_url),
        })
        .collect();
    slowest.sort_by(|a, b| b.took.cmp(&a.took).then(a.id.cmp(&b.id)));
    slowest.truncate(SLOWEST);
    let without_root_cause = chosen
        .iter()
        .filter(|i| (i.mitigated_at.is_some() || !i.is_open()) && !i.root_cause.is_found())
        .map(|i| i.id)
        .collect();
    let open_followups = chosen
        .iter()
        .map(|i| (i.id, i.followups.iter().filter(|f| f.is_open()).count()))
        .filter(|(_, n)| *n > 0)
        .collect();
    Stats {
        from,
        to: now,
        team: query.team.clone(),
        total: chosen.len(),
        by_severity,
        severity_rows,
        team_rows,
        slowest,
        without_root_cause,
        open_followups,
    }
}

/// A duration to the second, the way people say it: `45s`, `12m 30s`, `3h 05m`, `2d 04h`.
pub fn duration_text(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {s:02}s"),
        (0, h, m) => format!("{h}h {m:02}m"),
        (d, h, _) => format!("{d}d {h:02}h"),
    }
}

fn spread_text(s: &Option<Spread>) -> String {
    match s {
        Some(s) => format!("{} / {} ({})", duration_text(s.median), duration_text(s.p90), s.count),
        None => "—".into(),
    }
}

fn window_text(d: TimeDelta) -> String {
    if d.num_days() > 0 && d == TimeDelta::days(d.num_days()) { format!("{}d", d.num_days()) } else { duration_text(d) }
}

fn table(out: &mut String, title: &str, rows: &[Row]) {
    out.push_str(&format!("*{title}* (median / p90 (incidents measured))\n```\n"));
    let header = ["", "incidents", "acknowledge", "mitigate", "resolve", "root cause"];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let mut line = vec![r.group.clone(), r.incidents.to_string()];
        line.extend(r.measures.iter().map(|(_, s)| spread_text(s)));
        lines.push(line);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    for line in lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str("```\n");
}

impl Stats {
    /// The Slack answer.
    pub fn message(&self) -> String {
        let scope = match &self.team {
            Some(t) => format!("team {}", escape_untrusted(t)),
            None => "all teams".into(),
        };
        let mut out = format!(
            "*Incident stats · {scope} · last {}* ({} to {})\n",
            window_text(self.to - self.from),
            self.from.format("%Y-%m-%d"),
            self.to.format("%Y-%m-%d %H:%M UTC")
        );
        if self.total == 0 {
            out.push_str("No incidents opened in this window.");
            return out;
        }
        let sev: Vec<String> = self.by_severity.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        out.push_str(&format!("{} incidents · {}\n", self.total, sev.join(" · ")));
        table(&mut out, "By severity", &self.severity_rows);
        table(&mut out, "By team", &self.team_rows);
        out.push_str("*Slowest*\n");
        for s in &self.slowest {
            let name = match &s.link {
                Some(l) => format!("<{l}|{}>", s.id),
                None => s.id.to_string(),
            };
            let took = if s.resolved {
                format!("resolved after {}", duration_text(s.took))
            } else {
                format!("open for {}", duration_text(s.took))
            };
            out.push_str(&format!(
                "• {name} {} · {} · {} — {took}\n",
                s.severity,
                escape_untrusted(&s.team),
                escape_untrusted(&s.title)
            ));
        }
        let ids = |v: &[IncidentId]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        if !self.without_root_cause.is_empty() {
            out.push_str(&format!("*Without a root cause:* {}\n", ids(&self.without_root_cause)));
        }
        if !self.open_followups.is_empty() {
            let list: Vec<String> = self.open_followups.iter().map(|(i, n)| format!("{i} ({n})")).collect();
            out.push_str(&format!("*With open follow-ups:* {}\n", list.join(", ")));
        }
        out.trim_end().to_string()
    }
}

/// The columns of [`incidents_csv`].
pub const CSV_COLUMNS: [&str; 21] = [
    "id",
    "title",
    "team",
    "severity",
    "status",
    "source",
    "alerts",
    "opened_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "seconds_to_acknowledge",
    "seconds_to_mitigate",
    "seconds_to_resolve",
    "seconds_to_root_cause",
    "commander",
    "investigator",
    "root_cause",
    "followups",
    "open_followups",
    "tickets",
];

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break, quotes doubled.
/// Fields starting with `=`, `+`, `-` or `@` get a leading `'` so a spreadsheet shows alert text
/// instead of running it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_string() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

/// One row per incident, oldest first, with a header row.
pub fn incidents_csv(incidents: &[Incident]) -> String {
    let mut sorted: Vec<&Incident> = incidents.iter().collect();
    sorted.sort_by_key(|i| i.id);
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let secs = |d: Option<TimeDelta>| d.map(|d| d.num_seconds().to_string()).unwrap_or_default();
    for i in sorted {
        let d = i.durations();
        let tickets: Vec<&str> = i
            .followups
            .iter()
            .filter_map(|f| match &f.ticket {
                super::followup::Ticket::Filed(t) => Some(t.url.as_str()),
                _ => None,
            })
            .collect();
        let row = [
            i.id.to_string(),
            i.title.clone(),
            i.team.clone(),
            i.severity.to_string(),
            i.status.to_string(),
            i.alerts.as_ref().map(|a| a.source.slug()).unwrap_or("manual").to_string(),
            i.alerts.as_ref().map(|a| a.count).unwrap_or(0).to_string(),
            i.opened_at.to_rfc3339(),
            time(i.acknowledged_at),
            time(i.mitigated_at),
            time(i.resolved_at),
            secs(d.to_acknowledge),
            secs(d.to_mitigate),
            secs(d.to_resolve),
            secs(d.to_root_cause),
            i.commander.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            i.investigator.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            match &i.root_cause {
                super::incident::RootCause::Found { text, .. } => text.clone(),
                super::incident::RootCause::Unknown => String::new(),
            },
            i.followups.len().to_string(),
            i.followups.iter().filter(|f| f.is_open()).count().to_string(),
            tickets.join(" "),
        ];
        let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}
