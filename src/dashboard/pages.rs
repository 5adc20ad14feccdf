//! The dashboard's pages, as maud templates: every interpolated value is escaped.

use chrono::{DateTime, TimeDelta, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Filters;
use super::charts;
use crate::domain::followup::Ticket;
use crate::domain::ids::Severity;
use crate::domain::incident::{Incident, RootCause, Status};
use crate::domain::stats::duration_text;

pub const STYLESHEET: &str = r#"
:root { --fg:#1d1d1f; --muted:#6b6b70; --line:#e3e3e8; --bg:#fafafa; --sev1:#c0152f; --sev2:#e8590c; --sev3:#f2b705; --sev4:#6c8ebf; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
header.top { display:flex; gap:1.2rem; align-items:baseline; flex-wrap:wrap; padding:.8rem 1.2rem; background:#fff; border-bottom:1px solid var(--line); }
header.top a { color:var(--fg); text-decoration:none; font-weight:600; }
main { padding:1rem 1.2rem; max-width:72rem; margin:0 auto; }
h1 { font-size:1.35rem; margin:.2rem 0 1rem; } h2 { font-size:1.1rem; margin:1.6rem 0 .6rem; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; background:#fff; }
th, td { text-align:left; padding:.45rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:.8rem; text-transform:uppercase; letter-spacing:.03em; color:var(--muted); }
.sev { display:inline-block; min-width:3.2rem; text-align:center; border-radius:.3rem; color:#fff; font-weight:600; font-size:.8rem; padding:.1rem .3rem; }
.sev-1 { background:var(--sev1); } .sev-2 { background:var(--sev2); } .sev-3 { background:var(--sev3); color:#1d1d1f; } .sev-4 { background:var(--sev4); }
.muted { color:var(--muted); }
form.filters { display:flex; gap:.6rem; flex-wrap:wrap; align-items:end; margin-bottom:1rem; }
form.filters label { display:flex; flex-direction:column; font-size:.8rem; color:var(--muted); }
select, input, button { font:inherit; padding:.3rem .5rem; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.3rem 1rem; background:#fff; padding:.8rem 1rem; border:1px solid var(--line); }
dl.facts dt { color:var(--muted); }
ol.timeline { list-style:none; padding:0; margin:0; background:#fff; border:1px solid var(--line); }
ol.timeline li { padding:.4rem .8rem; border-bottom:1px solid var(--line); }
pre { white-space:pre-wrap; background:#fff; border:1px solid var(--line); padding:.8rem; overflow-x:auto; }
.postmortem { background:#fff; border:1px solid var(--line); padding:.2rem 1rem; }
.chart { background:#fff; border:1px solid var(--line); padding:.6rem; margin-bottom:1rem; }
.chart svg { width:100%; height:auto; }
@media (max-width: 40rem) { th.wide, td.wide { display:none; } main { padding:.6rem; } }
"#;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · incident-commander" }
                link rel="stylesheet" href="/dashboard.css";
            }
            body {
                header.top {
                    a href="/" { "incident-commander" }
                    a href="/" { "Incidents" }
                    a href="/insights" { "Insights" }
                }
                main { (body) }
            }
        }
    }
}

fn severity(s: Severity) -> Markup {
    html! { span class={ "sev sev-" (s.level()) } { (s.to_string()) } }
}

fn person(user: Option<&crate::domain::ids::UserId>) -> String {
    user.map(|u| u.to_string()).unwrap_or_else(|| "—".into())
}

/// Where each track stands: the commander's status, the investigator's root cause.
fn tracks(i: &Incident) -> String {
    let rc = if i.root_cause.is_found() { "root cause found" } else { "root cause unknown" };
    format!("{} · {rc}", i.status.label())
}

fn incident_rows(list: &[&Incident], now: DateTime<Utc>) -> Markup {
    html! {
        div.scroll { table {
            thead { tr {
                th { "Severity" } th { "Incident" } th { "Team" } th.wide { "Commander" } th.wide { "Investigator" }
                th { "Open for" } th { "Tracks" }
            } }
            tbody {
                @for i in list {
                    tr data-incident=(i.id.to_string()) {
                        td { (severity(i.severity)) }
                        td { a href={ "/incidents/" (i.id.to_string()) } { (i.id.to_string()) } " " (i.title) }
                        td { (i.team) }
                        td.wide { (person(i.commander.as_ref())) }
                        td.wide { (person(i.investigator.as_ref())) }
                        td { (duration_text(i.resolved_at.unwrap_or(now) - i.opened_at)) }
                        td { (tracks(i)) }
                    }
                }
            }
        } }
    }
}

fn chosen(filters: &Filters, i: &Incident) -> bool {
    let team = filters.team.as_deref().filter(|t| !t.is_empty());
    let severity = filters.severity.as_deref().and_then(|s| s.parse::<u8>().ok());
    team.is_none_or(|t| i.team.eq_ignore_ascii_case(t))
        && severity.is_none_or(|s| i.severity.level() == s)
        && match filters.status.as_deref().unwrap_or("all") {
            "open" => i.is_open(),
            "resolved" => i.status == Status::Resolved,
            _ => true,
        }
}

/// `/`: open incidents first (most severe, then oldest), then the recently resolved.
pub fn index(all: &[Incident], filters: &Filters, now: DateTime<Utc>) -> Markup {
    let mut teams: Vec<&str> = all.iter().map(|i| i.team.as_str()).collect();
    teams.sort();
    teams.dedup();
    let mut open: Vec<&Incident> = all.iter().filter(|i| i.is_open() && chosen(filters, i)).collect();
    open.sort_by_key(|i| (i.severity, i.opened_at));
    let mut recent: Vec<&Incident> = all.iter().filter(|i| !i.is_open() && chosen(filters, i)).collect();
    recent.sort_by_key(|i| std::cmp::Reverse(i.resolved_at));
    recent.truncate(50);
    let selected = |a: Option<&str>, b: &str| a == Some(b);
    layout(
        "Incidents",
        html! {
            h1 { "Incidents" }
            form.filters method="get" action="/" {
                label { "Team" select name="team" {
                    option value="" { "all" }
                    @for t in &teams { option value=(t) selected[selected(filters.team.as_deref(), t)] { (t) } }
                } }
                label { "Severity" select name="severity" {
                    option value="" { "all" }
                    @for s in Severity::ALL {
                        option value=(s.level()) selected[selected(filters.severity.as_deref(), &s.level().to_string())] { (s.to_string()) }
                    }
                } }
                label { "Status" select name="status" {
                    @for (v, l) in [("all", "all"), ("open", "open"), ("resolved", "resolved")] {
                        option value=(v) selected[selected(filters.status.as_deref(), v)] { (l) }
                    }
                } }
                button type="submit" { "Filter" }
            }
            h2 id="open" { "Open (" (open.len()) ")" }
            @if open.is_empty() { p.muted { "No open incidents." } } @else { (incident_rows(&open, now)) }
            h2 id="recent" { "Recently resolved (" (recent.len()) ")" }
            @if recent.is_empty() { p.muted { "Nothing resolved yet." } } @else { (incident_rows(&recent, now)) }
        },
    )
}

/// A message written for Slack, with its `<url|label>` links as links (only http and https);
/// everything else is text.
fn slack_text(text: &str) -> Markup {
    let mut parts: Vec<Markup> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else { break };
        let inner = &rest[start + 1..start + len];
        let (target, label) = inner.split_once('|').unwrap_or((inner, inner));
        parts.push(html! { (rest[..start]) });
        match crate::domain::text::safe_url(target) {
            Some(url) => parts.push(html! { a href=(url) { (label) } }),
            None => parts.push(html! { (rest[start..=start + len]) }),
        }
        rest = &rest[start + len + 1..];
    }
    parts.push(html! { (rest) });
    html! { @for p in parts { (p) } }
}

/// The postmortem's Markdown as HTML; raw HTML in it (alert text, notes) is shown as text.
fn markdown(md: &str) -> Markup {
    use pulldown_cmark::{Event, Parser};
    let events = Parser::new(md).map(|e| match e {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    PreEscaped(out)
}

/// `/incidents/INC-n`.
pub fn incident(i: &Incident, now: DateTime<Utc>, workspace_url: Option<&str>) -> Markup {
    let thread = i.thread_url(workspace_url);
    let d = i.durations();
    let took = |t: Option<TimeDelta>| t.map(duration_text).unwrap_or_else(|| "—".into());
    layout(
        &i.id.to_string(),
        html! {
            h1 { (severity(i.severity)) " " (i.id.to_string()) " · " (i.title) }
            dl.facts {
                dt { "Status" } dd { (tracks(i)) }
                dt { "Severity" } dd { (i.severity.to_string()) " — " (i.severity_reason) }
                dt { "Team" } dd { (i.team) }
                dt { "Commander" } dd { (person(i.commander.as_ref())) }
                dt { "Investigator" } dd { (person(i.investigator.as_ref())) }
                dt { "Opened" } dd { (i.opened_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()) " (" (duration_text(now - i.opened_at)) " ago)" }
                dt { "Acknowledged / mitigated / resolved after" } dd { (took(d.to_acknowledge)) " / " (took(d.to_mitigate)) " / " (took(d.to_resolve)) }
                @if let RootCause::Found { text, .. } = &i.root_cause { dt { "Root cause" } dd { (text) } }
                dt { "Slack" } dd {
                    @if let Some(url) = &thread { a href=(url) { "the incident thread" } } @else { span.muted { "thread not posted yet" } }
                }
            }
            h2 { "Evidence" }
            @match &i.evidence {
                Some(e) => {
                    @if let Some(s) = &e.summary { p { (s) } }
                    @if let Some(text) = &e.last_text { pre.evidence { (slack_text(text)) } }
                    @if let Some(err) = &e.last_error { p.muted { "Last refresh failed: " (err) } }
                }
                None => { p.muted { "No evidence yet." } }
            }
            h2 { "Follow-ups" }
            @if i.followups.is_empty() { p.muted { "None recorded." } } @else {
                ul.followups { @for f in &i.followups {
                    li {
                        strong { (f.label()) } " " (f.text)
                        @if let Some(o) = &f.owner { " — owner " (o.to_string()) }
                        @match &f.ticket {
                            Ticket::Filed(t) => { " · " a href=(t.url) { (t.key) } }
                            Ticket::Pending { .. } => { " · ticket pending" }
                            Ticket::Untracked => {}
                        }
                        @if f.done { " · done" }
                    }
                } }
            }
            h2 { "Timeline" }
            ol.timeline { @for e in &i.timeline {
                li { span.muted { (e.at.format("%Y-%m-%d %H:%M:%S").to_string()) } " · " (e.actor.to_string()) " · " (e.text) }
            } }
            h2 { "Postmortem draft" }
            div.postmortem { (markdown(&crate::domain::postmortem::postmortem_markdown(i))) }
        },
    )
}

/// `/insights`: charts over the last twelve weeks.
pub fn insights(all: &[Incident], now: DateTime<Utc>) -> Markup {
    layout(
        "Insights",
        html! {
            h1 { "Insights" }
            p.muted { "The last 12 weeks, by the week an incident opened (weeks start on Monday, UTC)." }
            div.chart id="per-week" { h2 { "Incidents per week by severity" } (charts::incidents_per_week(all, now)) }
            @for measure in crate::domain::stats::Measure::ALL {
                div.chart id={ "time-to-" (measure.label().replace(' ', "-")) } {
                    h2 { "Time to " (measure.label()) ", weekly median by team" }
                    (charts::median_by_team(all, now, measure))
                }
            }
        },
    )
}

pub fn login(problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(p) = problem { p { (p) } }
            form method="post" action="/login" {
                label { "Dashboard token " input type="password" name="token" autocomplete="current-password"; }
                " " button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn not_found(what: &str) -> Markup {
    layout(
        "Not found",
        html! { h1 { "Not found" } p { "There is no incident " (what) ". " a href="/" { "All incidents" } } },
    )
}
