//! Blast radius: per-customer error ratios and the verdict (isolated to one customer, several,
//! global), plus the representative failing traces. Pure math on counts the Datadog client fetched.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::text::escape_untrusted;

/// Requests and errors of one customer in the evidence window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerCount {
    pub customer: String,
    pub requests: u64,
    pub errors: u64,
}

/// Thresholds for the verdict (policy `[datadog]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerdictRules {
    /// Customers with fewer requests are grouped as "others" (so 1 of 1 is not 100%).
    pub min_requests: u64,
    /// A customer's error ratio at or above this counts as elevated.
    pub elevated_ratio: f64,
    /// One customer holding at least this share of errors, at `isolation_factor` times everyone
    /// else's ratio, is an isolated incident.
    pub isolated_share: f64,
    pub isolation_factor: f64,
    /// At least this share of active customers elevated means global.
    pub global_share: f64,
}

impl Default for VerdictRules {
    fn default() -> Self {
        VerdictRules {
            min_requests: 20,
            elevated_ratio: 0.05,
            isolated_share: 0.8,
            isolation_factor: 5.0,
            global_share: 0.5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// No errors in the window.
    NoErrors,
    /// One customer holds most errors at a ratio far above everyone else's.
    Isolated { customer: String },
    /// A few customers are affected; the rest are fine.
    Several { customers: Vec<String> },
    /// The error ratio is elevated across most active customers.
    Global,
    /// Errors are low and spread thin: no clear blast radius.
    Scattered,
}

impl Verdict {
    /// The customers the verdict names: one when isolated, a few when several, none otherwise.
    pub fn customers(&self) -> &[String] {
        match self {
            Verdict::Isolated { customer } => std::slice::from_ref(customer),
            Verdict::Several { customers } => customers,
            _ => &[],
        }
    }

    /// The name severity rules use: `no_errors`, `isolated`, `several`, `global`, `scattered`.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::NoErrors => "no_errors",
            Verdict::Isolated { .. } => "isolated",
            Verdict::Several { .. } => "several",
            Verdict::Global => "global",
            Verdict::Scattered => "scattered",
        }
    }

    pub fn parse_kind(s: &str) -> Option<&'static str> {
        ["no_errors", "isolated", "several", "global", "scattered"].into_iter().find(|k| *k == s)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::NoErrors => f.write_str("no errors"),
            Verdict::Isolated { customer } => write!(f, "isolated to {customer}"),
            Verdict::Several { customers } => write!(f, "several customers: {}", customers.join(", ")),
            Verdict::Global => f.write_str("global"),
            Verdict::Scattered => f.write_str("scattered (no clear blast radius)"),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub requests: u64,
    pub errors: u64,
    /// errors / requests, in [0, 1].
    pub ratio: f64,
    /// This row's share of all errors, in [0, 1].
    pub share: f64,
}

/// Customers above the request minimum (sorted by errors, most first), the rest as "others",
/// the global totals, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlastRadius {
    pub customers: Vec<Row>,
    pub others: Option<Row>,
    /// How many customers "others" groups.
    pub others_count: usize,
    pub global: Row,
    pub verdict: Verdict,
}

fn ratio(errors: u64, requests: u64) -> f64 {
    if requests == 0 { 0.0 } else { (errors.min(requests)) as f64 / requests as f64 }
}

fn row(label: String, requests: u64, errors: u64, total_errors: u64) -> Row {
    let errors = errors.min(requests);
    Row {
        label,
        requests,
        errors,
        ratio: ratio(errors, requests),
        share: if total_errors == 0 { 0.0 } else { errors as f64 / total_errors as f64 },
    }
}

/// Computes the table and the verdict from per-customer counts.
pub fn blast_radius(counts: &[CustomerCount], rules: VerdictRules) -> BlastRadius {
    let total_requests: u64 = counts.iter().map(|c| c.requests).sum();
    let total_errors: u64 = counts.iter().map(|c| c.errors.min(c.requests)).sum();
    let (mut active, small): (Vec<&CustomerCount>, Vec<&CustomerCount>) =
        counts.iter().filter(|c| c.requests > 0).partition(|c| c.requests >= rules.min_requests);
    active.sort_by(|a, b| b.errors.min(b.requests).cmp(&a.errors.min(a.requests)).then(a.customer.cmp(&b.customer)));
    let customers: Vec<Row> =
        active.iter().map(|c| row(c.customer.clone(), c.requests, c.errors, total_errors)).collect();
    let others = (!small.is_empty()).then(|| {
        let r = small.iter().map(|c| c.requests).sum();
        let e = small.iter().map(|c| c.errors.min(c.requests)).sum();
        row("others".into(), r, e, total_errors)
    });
    let global = row("global".into(), total_requests, total_errors, total_errors);
    let verdict = verdict(&customers, others.as_ref(), &global, rules);
    BlastRadius { customers, others, others_count: small.len(), global, verdict }
}

fn verdict(customers: &[Row], others: Option<&Row>, global: &Row, rules: VerdictRules) -> Verdict {
    if global.errors == 0 {
        return Verdict::NoErrors;
    }
    // Isolated: the top customer holds most errors at a ratio far above everyone else's.
    if let Some(top) = customers.first() {
        let rest_requests = global.requests - top.requests;
        let rest_errors = global.errors - top.errors;
        let rest_ratio = ratio(rest_errors, rest_requests);
        if top.share >= rules.isolated_share
            && top.ratio >= rules.elevated_ratio
            && (rest_requests == 0 || top.ratio >= rules.isolation_factor * rest_ratio)
        {
            return Verdict::Isolated { customer: top.label.clone() };
        }
    }
    let elevated: Vec<&Row> = customers.iter().filter(|r| r.ratio >= rules.elevated_ratio).collect();
    let active = customers.len() + usize::from(others.is_some_and(|o| o.requests > 0));
    if active > 0 && elevated.len() as f64 / active as f64 >= rules.global_share && elevated.len() >= 2 {
        return Verdict::Global;
    }
    if !elevated.is_empty() {
        let share: f64 = elevated.iter().map(|r| r.share).sum();
        let rest_requests: u64 = global.requests - elevated.iter().map(|r| r.requests).sum::<u64>();
        let rest_errors: u64 = global.errors - elevated.iter().map(|r| r.errors).sum::<u64>();
        let rest_ratio = ratio(rest_errors, rest_requests);
        let all_far_above = elevated.iter().all(|r| rest_requests == 0 || r.ratio >= 2.0 * rest_ratio);
        if share >= rules.isolated_share && all_far_above {
            return match elevated.as_slice() {
                [one] => Verdict::Isolated { customer: one.label.clone() },
                many => Verdict::Several { customers: many.iter().map(|r| r.label.clone()).collect() },
            };
        }
    }
    if global.ratio >= rules.elevated_ratio {
        return Verdict::Global;
    }
    Verdict::Scattered
}

/// A representative failing trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSample {
    pub trace_id: String,
    pub service: String,
    pub resource: String,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub customer: Option<String>,
    pub duration_ms: Option<u64>,
    pub at: DateTime<Utc>,
    /// Every service the trace touched, in order seen (e.g. frontend then backend).
    pub services: Vec<String>,
}

impl TraceSample {
    /// Whether the trace crosses from a frontend service to a backend one.
    pub fn crosses_frontend_backend(&self) -> bool {
        let frontend =
            |s: &str| ["web", "frontend", "browser", "ui", "rum"].iter().any(|w| s.to_lowercase().contains(w));
        self.services.iter().any(|s| frontend(s)) && self.services.iter().any(|s| !frontend(s))
    }
}

/// Picks up to `n` traces. Traces of the `affected` customers (those the verdict names) come
/// first, so the thread shows the failure the verdict is about; within each group distinct
/// (error type, resource) come first, newest first, then the newest rest.
pub fn pick_traces(samples: Vec<TraceSample>, n: usize, affected: &[String]) -> Vec<TraceSample> {
    let (first, rest): (Vec<_>, Vec<_>) =
        samples.into_iter().partition(|s| s.customer.as_ref().is_some_and(|c| affected.contains(c)));
    let mut picked = pick_varied(first, n);
    for s in pick_varied(rest, n) {
        if picked.len() == n {
            break;
        }
        if !picked.iter().any(|p| p.trace_id == s.trace_id) {
            picked.push(s);
        }
    }
    picked
}

/// Up to `n` traces: distinct (error type, resource) first, newest first, then the newest rest.
fn pick_varied(mut samples: Vec<TraceSample>, n: usize) -> Vec<TraceSample> {
    samples.sort_by(|a, b| b.at.cmp(&a.at).then(a.trace_id.cmp(&b.trace_id)));
    samples.dedup_by(|a, b| a.trace_id == b.trace_id);
    let mut picked: Vec<TraceSample> = Vec::new();
    let mut kinds = std::collections::HashSet::new();
    for s in &samples {
        if picked.len() == n {
            break;
        }
        if kinds.insert((s.error_type.clone(), s.resource.clone())) {
            picked.push(s.clone());
        }
    }
    for s in samples {
        if picked.len() == n {
            break;
        }
        if !picked.iter().any(|p| p.trace_id == s.trace_id) {
            picked.push(s);
        }
    }
    picked
}

/// What the evidence message shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub fetched_at: DateTime<Utc>,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    pub service: Option<String>,
    pub env: Option<String>,
    /// `None` when no customer facet is configured.
    pub blast: Option<BlastRadius>,
    pub traces: Vec<TraceSample>,
    /// Trace links point here: `https://app.datadoghq.com`.
    pub app_base: String,
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Rows shown in the table besides "others" and "global".
pub const TABLE_ROWS: usize = 8;

/// The one-line verdict: `*Isolated to acme* — 92.0% of errors, error ratio 41.3% vs 0.4% for everyone else`.
pub fn verdict_line(b: &BlastRadius) -> String {
    match &b.verdict {
        Verdict::Isolated { customer } => {
            let row = b.customers.iter().find(|r| &r.label == customer);
            match row {
                Some(r) => {
                    let rest = ratio(b.global.errors - r.errors, b.global.requests - r.requests);
                    format!(
                        "*Isolated to {}* — {} of errors, error ratio {} vs {} for everyone else",
                        escape_untrusted(customer),
                        pct(r.share),
                        pct(r.ratio),
                        pct(rest)
                    )
                }
                None => format!("*Isolated to {}*", escape_untrusted(customer)),
            }
        }
        Verdict::Several { customers } => {
            let names: Vec<String> = customers.iter().map(|c| escape_untrusted(c)).collect();
            format!("*Several customers* — {}", names.join(", "))
        }
        Verdict::Global => format!(
            "*Global* — error ratio {} across {} active customers",
            pct(b.global.ratio),
            b.customers.len() + b.others_count
        ),
        Verdict::NoErrors => "*No errors* in the window".to_string(),
        Verdict::Scattered => format!("*Scattered* — error ratio {} with no clear blast radius", pct(b.global.ratio)),
    }
}

/// The per-customer table, monospace.
pub fn table(b: &BlastRadius) -> String {
    let mut lines =
        vec![format!("{:<22} {:>10} {:>8} {:>7} {:>7}", "customer", "requests", "errors", "ratio", "share")];
    let mut push = |label: &str, r: &Row| {
        let label: String = label.chars().take(22).collect();
        lines.push(format!(
            "{:<22} {:>10} {:>8} {:>7} {:>7}",
            label,
            thousands(r.requests),
            thousands(r.errors),
            pct(r.ratio),
            pct(r.share)
        ));
    };
    for r in b.customers.iter().take(TABLE_ROWS) {
        push(&escape_untrusted(&r.label), r);
    }
    let hidden = b.customers.len().saturating_sub(TABLE_ROWS);
    let mut others = b.others.clone();
    if hidden > 0 {
        let extra = &b.customers[TABLE_ROWS..];
        let o = others.get_or_insert(Row { label: "others".into(), requests: 0, errors: 0, ratio: 0.0, share: 0.0 });
        o.requests += extra.iter().map(|r| r.requests).sum::<u64>();
        o.errors += extra.iter().map(|r| r.errors).sum::<u64>();
        o.ratio = ratio(o.errors, o.requests);
        o.share = if b.global.errors == 0 { 0.0 } else { o.errors as f64 / b.global.errors as f64 };
    }
    if let Some(o) = &others {
        push(&format!("others ({})", b.others_count + hidden), o);
    }
    push("global", &b.global);
    format!("```\n{}\n```", lines.join("\n"))
}

/// The evidence message (edited in place on refresh).
pub fn evidence_message(e: &Evidence) -> String {
    let scope = [e.service.as_ref().map(|s| format!("service `{s}`")), e.env.as_ref().map(|v| format!("env `{v}`"))]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        ":mag_right: *Evidence from Datadog* ({}{} to {}, refreshed {})\n",
        if scope.is_empty() { String::new() } else { format!("{scope}, ") },
        e.window_from.format("%H:%M"),
        e.window_to.format("%H:%M UTC"),
        e.fetched_at.format("%H:%M:%S UTC"),
    );
    match &e.blast {
        Some(b) => {
            out.push_str(&format!("{}\n{}\n", verdict_line(b), table(b)));
        }
        None => out.push_str("_Per-customer table off: set `datadog.customer_facet` in the policy._\n"),
    }
    if e.traces.is_empty() {
        out.push_str("No failing traces in the window.");
    } else {
        out.push_str("*Failing traces*\n");
        for t in &e.traces {
            let link = format!("{}/apm/trace/{}", e.app_base.trim_end_matches('/'), t.trace_id);
            let error = match (&t.error_type, &t.error_message) {
                (Some(ty), Some(msg)) => format!(
                    "`{}`: {}",
                    escape_untrusted(ty),
                    escape_untrusted(&msg.chars().take(140).collect::<String>())
                ),
                (Some(ty), None) => format!("`{}`", escape_untrusted(ty)),
                (None, Some(msg)) => escape_untrusted(&msg.chars().take(140).collect::<String>()),
                (None, None) => "error".into(),
            };
            let mut extras = Vec::new();
            if let Some(c) = &t.customer {
                extras.push(format!("customer {}", escape_untrusted(c)));
            }
            if let Some(d) = t.duration_ms {
                extras.push(format!("{d} ms"));
            }
            if t.crosses_frontend_backend() {
                extras.push(format!("crosses frontend → backend ({})", t.services.join(" → ")));
            }
            out.push_str(&format!(
                "• <{link}|trace {}> `{}` {} — {}{}\n",
                t.trace_id.chars().take(12).collect::<String>(),
                escape_untrusted(&t.service),
                escape_untrusted(&t.resource),
                error,
                if extras.is_empty() { String::new() } else { format!(" ({})", extras.join(", ")) }
            ));
        }
    }
    out.trim_end().to_string()
}

/// One line for the timeline and the postmortem's impact section.
pub fn evidence_summary(e: &Evidence) -> String {
    match &e.blast {
        Some(b) => format!(
            "{}; {} errors of {} requests ({}) between {} and {}",
            b.verdict,
            thousands(b.global.errors),
            thousands(b.global.requests),
            pct(b.global.ratio),
            e.window_from.format("%H:%M"),
            e.window_to.format("%H:%M UTC"),
        ),
        None => format!(
            "{} failing traces between {} and {}",
            e.traces.len(),
            e.window_from.format("%H:%M"),
            e.window_to.format("%H:%M UTC")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, requests: u64, errors: u64) -> CustomerCount {
        CustomerCount { customer: name.into(), requests, errors }
    }

    #[test]
    fn one_customer_holding_the_errors_is_isolated() {
        let b = blast_radius(
            &[c("acme", 1000, 400), c("globex", 3000, 6), c("initech", 2000, 4), c("tiny", 3, 3)],
            VerdictRules::default(),
        );
        assert_eq!(b.verdict, Verdict::Isolated { customer: "acme".into() });
        assert_eq!(b.others_count, 1, "a customer below min_requests is grouped");
        assert_eq!(b.others.as_ref().unwrap().requests, 3);
        assert!((b.global.ratio - 413.0 / 6003.0).abs() < 1e-9);
        assert!(
            verdict_line(&b).starts_with("*Isolated to acme* — 96.9% of errors, error ratio 40.0% vs 0.3%"),
            "{}",
            verdict_line(&b)
        );
    }

    #[test]
    fn errors_everywhere_are_global_and_a_few_are_several() {
        let global = blast_radius(
            &[c("a", 1000, 150), c("b", 1000, 120), c("c", 1000, 180), c("d", 500, 60)],
            VerdictRules::default(),
        );
        assert_eq!(global.verdict, Verdict::Global);
        let several = blast_radius(
            &[c("a", 1000, 300), c("b", 1000, 250), c("c", 5000, 5), c("d", 5000, 5), c("e", 5000, 5), c("f", 5000, 5)],
            VerdictRules::default(),
        );
        assert_eq!(several.verdict, Verdict::Several { customers: vec!["a".into(), "b".into()] });
        let none = blast_radius(&[c("a", 1000, 0)], VerdictRules::default());
        assert_eq!(none.verdict, Verdict::NoErrors);
        let scattered = blast_radius(&[c("a", 1000, 5), c("b", 1000, 4), c("c", 1000, 6)], VerdictRules::default());
        assert_eq!(scattered.verdict, Verdict::Scattered);
    }

    #[test]
    fn table_shows_one_decimal_and_groups_the_tail() {
        let counts: Vec<CustomerCount> = (0..12).map(|i| c(&format!("cust{i:02}"), 1000, 100 - i)).collect();
        let b = blast_radius(&counts, VerdictRules::default());
        let t = table(&b);
        assert!(t.contains("cust00") && !t.contains("cust11"));
        assert!(t.contains("others (4)"), "{t}");
        assert!(t.contains("10.0%"), "{t}");
        assert!(t.lines().last().unwrap() == "```");
    }

    #[test]
    fn traces_prefer_distinct_errors_then_newest() {
        let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let t = |id: &str, ty: &str, res: &str, s: i64| TraceSample {
            trace_id: id.into(),
            service: "api".into(),
            resource: res.into(),
            error_type: Some(ty.into()),
            error_message: None,
            customer: None,
            duration_ms: None,
            at: at(s),
            services: vec!["web-shop".into(), "api".into()],
        };
        let picked = pick_traces(
            vec![
                t("1", "Timeout", "GET /a", 10),
                t("2", "Timeout", "GET /a", 20),
                t("3", "DbError", "GET /b", 5),
                t("4", "Timeout", "GET /a", 15),
            ],
            3,
            &[],
        );
        let ids: Vec<&str> = picked.iter().map(|p| p.trace_id.as_str()).collect();
        assert_eq!(ids, ["2", "3", "4"]);
        assert!(picked[0].crosses_frontend_backend());
    }

    #[test]
    fn traces_of_the_customers_the_verdict_names_come_first() {
        let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let t = |id: &str, ty: &str, customer: &str, s: i64| TraceSample {
            trace_id: id.into(),
            service: "api".into(),
            resource: "POST /orders".into(),
            error_type: Some(ty.into()),
            error_message: None,
            customer: Some(customer.into()),
            duration_ms: None,
            at: at(s),
            services: vec!["api".into()],
        };
        let samples = vec![
            t("1", "DbError", "globex", 30),
            t("2", "Timeout", "acme", 10),
            t("3", "Timeout", "acme", 20),
            t("4", "PoolExhausted", "acme", 5),
            t("5", "Teapot", "initech", 40),
        ];
        let isolated = Verdict::Isolated { customer: "acme".into() };
        let ids = |picked: Vec<TraceSample>| picked.into_iter().map(|p| p.trace_id).collect::<Vec<_>>();
        assert_eq!(ids(pick_traces(samples.clone(), 3, isolated.customers())), ["3", "4", "2"]);
        assert_eq!(ids(pick_traces(samples.clone(), 4, isolated.customers())), ["3", "4", "2", "5"]);
        assert_eq!(ids(pick_traces(samples, 3, Verdict::Global.customers())), ["5", "1", "3"]);
    }
}
