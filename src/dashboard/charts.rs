//! Charts as inline SVG, drawn on the server from the incidents: nothing is fetched, nothing
//! runs in the browser.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeDelta, Utc};
use maud::{Markup, html};

use crate::domain::ids::Severity;
use crate::domain::incident::Incident;
use crate::domain::stats::{Measure, duration_text, spread};

/// Weeks shown.
pub const WEEKS: i64 = 12;
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;
const SEVERITY_COLORS: [&str; 4] = ["#c0152f", "#e8590c", "#f2b705", "#6c8ebf"];
const TEAM_COLORS: [&str; 6] = ["#1f77b4", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#17becf"];

fn monday(t: DateTime<Utc>) -> NaiveDate {
    let d = t.date_naive();
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

/// The Mondays of the last [`WEEKS`] weeks, oldest first.
fn weeks(now: DateTime<Utc>) -> Vec<NaiveDate> {
    let this = monday(now);
    (0..WEEKS).rev().map(|w| this - Duration::weeks(w)).collect()
}

fn x_of(i: usize, n: usize) -> f64 {
    LEFT + (WIDTH - LEFT - 8.0) * (i as f64 + 0.5) / n as f64
}

fn y_of(v: f64, max: f64) -> f64 {
    HEIGHT - BOTTOM - (HEIGHT - BOTTOM - TOP) * (v / max)
}

fn axis(weeks: &[NaiveDate], max_label: &str) -> Markup {
    html! {
        line x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH - 4.0) y2=(HEIGHT - BOTTOM) stroke="#999" {}
        line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(HEIGHT - BOTTOM) stroke="#999" {}
        text x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" font-size="11" fill="#555" { (max_label) }
        text x=(LEFT - 6.0) y=(HEIGHT - BOTTOM) text-anchor="end" font-size="11" fill="#555" { "0" }
        @for (i, w) in weeks.iter().enumerate() {
            @if i % 2 == 1 || weeks.len() <= 6 {
                text x=(x_of(i, weeks.len())) y=(HEIGHT - 10.0) text-anchor="middle" font-size="11" fill="#555" { (w.format("%b %d").to_string()) }
            }
        }
    }
}

/// Stacked bars: incidents opened per week, by severity.
pub fn incidents_per_week(all: &[Incident], now: DateTime<Utc>) -> Markup {
    let weeks = weeks(now);
    let counts: Vec<[usize; 4]> = weeks
        .iter()
        .map(|w| {
            let mut c = [0; 4];
            for i in all.iter().filter(|i| monday(i.opened_at) == *w) {
                c[usize::from(i.severity.level() - 1).min(3)] += 1;
            }
            c
        })
        .collect();
    let max = counts.iter().map(|c| c.iter().sum::<usize>()).max().unwrap_or(0).max(1) as f64;
    let bar = (WIDTH - LEFT - 8.0) / weeks.len() as f64 * 0.7;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 24.0) } role="img" aria-label="Incidents per week by severity" {
            (axis(&weeks, &format!("{max}")))
            @for (i, (w, c)) in weeks.iter().zip(&counts).enumerate() {
                @let total: usize = c.iter().sum();
                g.week data-week=(w.to_string()) data-count=(total) {
                    title { (w.format("week of %Y-%m-%d").to_string()) ": " (total) " incidents" }
                    @for (s, n) in c.iter().enumerate().filter(|(_, n)| **n > 0) {
                        @let below: usize = c[..s].iter().sum();
                        rect x=(x_of(i, weeks.len()) - bar / 2.0) y=(y_of((below + n) as f64, max))
                            width=(bar) height=(y_of(below as f64, max) - y_of((below + n) as f64, max))
                            fill=(SEVERITY_COLORS[s]) data-severity=(Severity::ALL[s].to_string()) {}
                    }
                }
            }
            @for (s, sev) in Severity::ALL.iter().enumerate() {
                rect x=(LEFT + 80.0 * s as f64) y=(HEIGHT + 8.0) width="12" height="12" fill=(SEVERITY_COLORS[s]) {}
                text x=(LEFT + 16.0 + 80.0 * s as f64) y=(HEIGHT + 18.0) font-size="12" { (sev.to_string()) }
            }
        }
    }
}

/// Lines: the weekly median of one measure, one line per team.
pub fn median_by_team(all: &[Incident], now: DateTime<Utc>, measure: Measure) -> Markup {
    let weeks = weeks(now);
    let mut teams: Vec<&str> = all.iter().map(|i| i.team.as_str()).collect();
    teams.sort();
    teams.dedup();
    let series: Vec<(&str, Vec<Option<TimeDelta>>)> = teams
        .iter()
        .map(|t| {
            let points = weeks
                .iter()
                .map(|w| {
                    let values = all
                        .iter()
                        .filter(|i| i.team == *t && monday(i.opened_at) == *w)
                        .filter_map(|i| measure.of(i))
                        .collect();
                    spread(values).map(|s| s.median)
                })
                .collect();
            (*t, points)
        })
        .filter(|(_, p): &(&str, Vec<Option<TimeDelta>>)| p.iter().any(Option::is_some))
        .collect();
    if series.is_empty() {
        return html! { p.muted.empty { "No incident reached this point in the last 12 weeks." } };
    }
    let max = series.iter().flat_map(|(_, p)| p.iter().flatten()).max().copied().unwrap_or_default();
    let max_secs = max.num_seconds().max(60) as f64;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 24.0) } role="img"
            aria-label={ "Time to " (measure.label()) " by team" } {
            (axis(&weeks, &duration_text(TimeDelta::seconds(max_secs as i64))))
            @for (n, (team, points)) in series.iter().enumerate() {
                @let color = TEAM_COLORS[n % TEAM_COLORS.len()];
                @let coords: Vec<String> = points.iter().enumerate()
                    .filter_map(|(i, p)| p.map(|d| format!("{:.1},{:.1}", x_of(i, weeks.len()), y_of(d.num_seconds() as f64, max_secs))))
                    .collect();
                g.series data-team=(team) {
                    polyline points=(coords.join(" ")) fill="none" stroke=(color) stroke-width="2" {}
                    @for (i, p) in points.iter().enumerate() {
                        @if let Some(d) = p {
                            circle cx=(format!("{:.1}", x_of(i, weeks.len()))) cy=(format!("{:.1}", y_of(d.num_seconds() as f64, max_secs))) r="4" fill=(color)
                                data-median-seconds=(d.num_seconds()) {
                                title { (team) ", week of " (weeks[i].to_string()) ": median " (duration_text(*d)) }
                            }
                        }
                    }
                }
                rect x=(LEFT + 120.0 * n as f64) y=(HEIGHT + 8.0) width="12" height="12" fill=(color) {}
                text x=(LEFT + 16.0 + 120.0 * n as f64) y=(HEIGHT + 18.0) font-size="12" { (team) }
            }
        }
    }
}
