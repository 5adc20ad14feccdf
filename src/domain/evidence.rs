//! Blast radius: per-customer error ratios and the verdict (isolated to one customer, several,
//! global), plus the representative failing traces. Pure math on counts the Datadog client fetched.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::text::escape_untrusted;

/// The row for spans that carry no customer at all (health checks, anonymous traffic, jobs):
/// they count in the global ratio and in the verdict like any customer.
pub const NO_CUSTOMER: &str = "(no customer)";
/// The row for customers the per-customer query could not list one by one (past its group
/// limit): their traffic is what the total holds beyond the listed customers.
pub const OTHER_CUSTOMERS: &str = "(other customers)";

/// Requests and errors of one customer in the evidence window. `customer` may be
/// [`NO_CUSTOMER`] or [`OTHER_CUSTOMERS`] for the traffic no single customer name covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerCount {
    pub customer: String,
    pub requests: u64,
    pub errors: u64,
}

/// How a customer label reads in a sentence.
pub fn customer_label(label: &str) -> String {
    match label {
        NO_CUSTOMER => "requests without a customer".to_string(),
        OTHER_CUSTOMERS => "customers past the table".to_string(),
        other => escape_untrusted(other),
    }
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

    /// What kind of verdict it is, as severity rules name it.
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::NoErrors => VerdictKind::NoErrors,
            Verdict::Isolated { .. } => VerdictKind::Isolated,
            Verdict::Several { .. } => VerdictKind::Several,
            Verdict::Global => VerdictKind::Global,
            Verdict::Scattered => VerdictKind::Scattered,
        }
    }
}

/// A verdict's kind, as severity rules (`verdict = ["global"]`) and stored incidents name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    NoErrors,
    Isolated,
    Several,
    Global,
    Scattered,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 5] = [
        VerdictKind::NoErrors,
        VerdictKind::Isolated,
        VerdictKind::Several,
        VerdictKind::Global,
        VerdictKind::Scattered,
    ];

    /// The name in the policy file: `no_errors`, `isolated`, `several`, `global`, `scattered`.
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::NoErrors => "no_errors",
            VerdictKind::Isolated => "isolated",
            VerdictKind::Several => "several",
            VerdictKind::Global => "global",
            VerdictKind::Scattered => "scattered",
        }
    }

    pub fn parse(s: &str) -> Option<VerdictKind> {
        VerdictKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::NoErrors => f.write_str("no errors"),
            Verdict::Isolated { customer } => write!(f, "isolated to {}", customer_label(customer)),
            Verdict::Several { customers } => {
                let names: Vec<String> = customers.iter().map(|c| customer_label(c)).collect();
                write!(f, "several customers: {}", names.join(", "))
            }
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
/// the traffic without a customer, the global totals, and the verdict over all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlastRadius {
    pub customers: Vec<Row>,
    /// Customers below the request minimum, and those the query could not list one by one.
    pub others: Option<Row>,
    /// How many listed customers "others" groups (the unlisted ones are not counted).
    pub others_count: usize,
    /// "others" includes customers past the query's group limit.
    #[serde(default)]
    pub others_unlisted: bool,
    /// Spans without the customer attribute.
    #[serde(default)]
    pub no_customer: Option<Row>,
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

/// Computes the table and the verdict from per-customer counts (including the
/// [`NO_CUSTOMER`] and [`OTHER_CUSTOMERS`] rows, when the query had them).
pub fn blast_radius(counts: &[CustomerCount], rules: VerdictRules) -> BlastRadius {
    let total_requests: u64 = counts.iter().map(|c| c.requests).sum();
    let total_errors: u64 = counts.iter().map(|c| c.errors.min(c.requests)).sum();
    let special = |c: &&CustomerCount| c.customer == NO_CUSTOMER || c.customer == OTHER_CUSTOMERS;
    let (mut active, small): (Vec<&CustomerCount>, Vec<&CustomerCount>) =
        counts.iter().filter(|c| c.requests > 0 && !special(c)).partition(|c| c.requests >= rules.min_requests);
    active.sort_by(|a, b| b.errors.min(b.requests).cmp(&a.errors.min(a.requests)).then(a.customer.cmp(&b.customer)));
    let customers: Vec<Row> =
        active.iter().map(|c| row(c.customer.clone(), c.requests, c.errors, total_errors)).collect();
    let sum = |rows: &[&CustomerCount]| -> (u64, u64) {
        (rows.iter().map(|c| c.requests).sum(), rows.iter().map(|c| c.errors.min(c.requests)).sum())
    };
    let unlisted: Vec<&CustomerCount> =
        counts.iter().filter(|c| c.customer == OTHER_CUSTOMERS && c.requests > 0).collect();
    let mut grouped = small.clone();
    grouped.extend(unlisted.iter().copied());
    let others = (!grouped.is_empty()).then(|| {
        let (r, e) = sum(&grouped);
        row("others".into(), r, e, total_errors)
    });
    let none: Vec<&CustomerCount> = counts.iter().filter(|c| c.customer == NO_CUSTOMER && c.requests > 0).collect();
    let no_customer = (!none.is_empty()).then(|| {
        let (r, e) = sum(&none);
        row(NO_CUSTOMER.into(), r, e, total_errors)
    });
    let global = row("global".into(), total_requests, total_errors, total_errors);
    // The traffic without a customer weighs in the verdict as a customer of its own.
    let mut candidates = customers.clone();
    if let Some(n) = &no_customer
        && n.requests >= rules.min_requests
    {
        candidates.push(n.clone());
        candidates.sort_by(|a, b| b.errors.cmp(&a.errors).then(a.label.cmp(&b.label)));
    }
    let verdict = verdict(&candidates, others.as_ref(), &global, rules);
    BlastRadius {
        customers,
        others,
        others_count: small.len(),
        others_unlisted: !unlisted.is_empty(),
        no_customer,
        global,
        verdict,
    }
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

/// A representative failing trace: the failing span of the alerted service that picked it, and
/// (after the whole trace was read) the path of services it took and where the error began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSample {
    /// The lower 64 bits of the trace id, in decimal, as the spans API gives it.
    pub trace_id: String,
    /// The upper 64 bits of a 128-bit trace id, lowercase hex, from the `_dd.p.tid` tag.
    #[serde(default)]
    pub trace_id_high: Option<String>,
    pub service: String,
    pub resource: String,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub customer: Option<String>,
    pub duration_ms: Option<u64>,
    pub at: DateTime<Utc>,
    /// Every service the trace touched, in the order of its path (entry point first).
    pub services: Vec<String>,
    /// From the entry point down to the deepest failing span (empty until the whole trace was
    /// read).
    #[serde(default)]
    pub path: Vec<Hop>,
    /// Where the error began: the deepest failing span.
    #[serde(default)]
    pub origin: Option<ErrorOrigin>,
    /// The alerted service's version on this trace.
    #[serde(default)]
    pub version: Option<String>,
    /// How much of the trace was read.
    #[serde(default)]
    pub read: TraceRead,
}

/// One service on a trace's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub service: String,
    /// Whether this service's span failed.
    pub failed: bool,
}

/// The deepest failing span of a trace: the likely origin of the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorOrigin {
    pub service: String,
    pub resource: String,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// The top frame of `error.stack`: the code that failed.
    pub frame: Option<String>,
}

/// How much of a trace the evidence saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceRead {
    /// Only the failing span that picked it (the trace lookup failed or was not made).
    #[default]
    SpanOnly,
    /// Every span of the trace.
    Whole,
    /// The trace had more spans than one lookup returns: the path may be partial.
    TooLarge,
}

impl TraceSample {
    /// The trace's id as the trace page knows it: 32 hex digits for a 128-bit trace (upper half
    /// from `_dd.p.tid`, lower half from the spans API), the decimal id otherwise.
    pub fn page_id(&self) -> String {
        match (&self.trace_id_high, self.trace_id.parse::<u64>()) {
            (Some(high), Ok(low)) if high.len() <= 16 && high.chars().all(|c| c.is_ascii_hexdigit()) => {
                format!("{:0>16}{low:016x}", high.to_ascii_lowercase())
            }
            _ => self.trace_id.clone(),
        }
    }

    /// The link that opens the trace.
    pub fn link(&self, app_base: &str) -> String {
        format!("{}/apm/trace/{}", app_base.trim_end_matches('/'), self.page_id())
    }

    /// The teams along the path, in order, each once (`team_of` names a service's team).
    pub fn teams(&self, team_of: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let mut teams: Vec<String> = Vec::new();
        let services: Vec<&str> = if self.path.is_empty() {
            self.services.iter().map(String::as_str).collect()
        } else {
            self.path.iter().map(|h| h.service.as_str()).collect()
        };
        for team in services.into_iter().filter_map(team_of) {
            if teams.last() != Some(&team) {
                teams.push(team);
            }
        }
        teams
    }
}

/// The top frame of a stack trace: the line naming the code that failed. Python prints the
/// innermost call last (`File "...", line N, in f`), Java, JavaScript and .NET first (`at ...`),
/// Go under the goroutine header, Ruby as `file.rb:N:in ...`.
pub fn top_frame(stack: &str) -> Option<String> {
    let lines: Vec<&str> = stack.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let clip = |s: &str| s.chars().take(160).collect::<String>();
    if stack.contains("Traceback (most recent call last)") {
        return lines.iter().rev().find(|l| l.starts_with("File \"")).map(|l| clip(l));
    }
    if let Some(at) = lines.iter().find_map(|l| l.strip_prefix("at ")) {
        return Some(clip(at));
    }
    if let Some(i) = lines.iter().position(|l| l.starts_with("goroutine ")) {
        let func = lines.get(i + 1)?;
        let place = lines.get(i + 2).map(|p| p.split(" +0x").next().unwrap_or(p)).unwrap_or_default();
        return Some(clip(&format!("{func} {place}").replace("(...)", "()")));
    }
    lines.iter().find(|l| l.contains(".rb:") && l.contains(":in ")).map(|l| clip(l))
}

/// Requests and errors of one version of the alerted service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCount {
    pub version: String,
    pub requests: u64,
    pub errors: u64,
}

/// Whether the errors concentrate in one version of the alerted service (a bad deploy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VersionVerdict {
    /// One version holds most errors at a ratio far above the others'.
    Concentrated { version: String, share: f64, ratio: f64, rest_ratio: f64 },
    /// Several versions serve traffic and fail alike.
    Spread { versions: usize },
    /// All traffic is on one version.
    One { version: String },
}

/// Reads the versions the service reported (none: `None`), with the verdict's thresholds.
pub fn version_verdict(counts: &[VersionCount], rules: VerdictRules) -> Option<VersionVerdict> {
    let live: Vec<&VersionCount> = counts.iter().filter(|v| v.requests > 0).collect();
    match live.as_slice() {
        [] => None,
        [one] => Some(VersionVerdict::One { version: one.version.clone() }),
        _ => {
            let requests: u64 = live.iter().map(|v| v.requests).sum();
            let errors: u64 = live.iter().map(|v| v.errors.min(v.requests)).sum();
            let top = live.iter().max_by_key(|v| (v.errors.min(v.requests), std::cmp::Reverse(v.version.clone())))?;
            let top_errors = top.errors.min(top.requests);
            let share = if errors == 0 { 0.0 } else { top_errors as f64 / errors as f64 };
            let top_ratio = ratio(top_errors, top.requests);
            let rest_ratio = ratio(errors - top_errors, requests - top.requests);
            if errors > 0
                && share >= rules.isolated_share
                && top_ratio >= rules.elevated_ratio
                && top_ratio >= rules.isolation_factor * rest_ratio
            {
                Some(VersionVerdict::Concentrated { version: top.version.clone(), share, ratio: top_ratio, rest_ratio })
            } else {
                Some(VersionVerdict::Spread { versions: live.len() })
            }
        }
    }
}

/// The version line next to the customer verdict.
pub fn version_line(v: &VersionVerdict) -> String {
    match v {
        VersionVerdict::Concentrated { version, share, ratio, rest_ratio } => format!(
            "*Errors concentrate in version {}* — {} of errors, error ratio {} vs {} on the other versions: a bad deploy?",
            escape_untrusted(version),
            pct(*share),
            pct(*ratio),
            pct(*rest_ratio)
        ),
        VersionVerdict::Spread { versions } => format!("Errors are spread across {versions} versions: not one deploy"),
        VersionVerdict::One { version } => format!("All traffic is on version {}", escape_untrusted(version)),
    }
}

/// Picks up to `n` traces. Traces of the `affected` customers (those the verdict names) come
/// first, so the thread shows the failure the verdict is about; within each group distinct
/// (error type, resource) come first, newest first, then the newest rest.
pub fn pick_traces(samples: Vec<TraceSample>, n: usize, affected: &[String]) -> Vec<TraceSample> {
    let named = |s: &TraceSample| match &s.customer {
        Some(c) => affected.contains(c),
        None => affected.iter().any(|a| a == NO_CUSTOMER),
    };
    let (first, rest): (Vec<_>, Vec<_>) = samples.into_iter().partition(|s| named(s));
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
    /// Whether the errors concentrate in one version of the service; `None` when it reports none.
    #[serde(default)]
    pub versions: Option<VersionVerdict>,
    pub traces: Vec<TraceSample>,
    /// Trace links point here: `https://app.datadoghq.com`.
    pub app_base: String,
    /// What the evidence could not show, in a sentence each (a failed trace lookup, a trace too
    /// large to read whole).
    #[serde(default)]
    pub notes: Vec<String>,
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
            let row = b.customers.iter().chain(b.no_customer.iter()).find(|r| &r.label == customer);
            match row {
                Some(r) => {
                    let rest = ratio(b.global.errors - r.errors, b.global.requests - r.requests);
                    format!(
                        "*Isolated to {}* — {} of errors, error ratio {} vs {} for everyone else",
                        customer_label(customer),
                        pct(r.share),
                        pct(r.ratio),
                        pct(rest)
                    )
                }
                None => format!("*Isolated to {}*", customer_label(customer)),
            }
        }
        Verdict::Several { customers } => {
            let names: Vec<String> = customers.iter().map(|c| customer_label(c)).collect();
            format!("*Several customers* — {}", names.join(", "))
        }
        Verdict::Global => format!(
            "*Global* — error ratio {} across {}{} active customers{}",
            pct(b.global.ratio),
            b.customers.len() + b.others_count,
            if b.others_unlisted { "+" } else { "" },
            if b.no_customer.is_some() { " and requests without a customer" } else { "" }
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
        let more = if b.others_unlisted { "+" } else { "" };
        push(&format!("other customers ({}{more})", b.others_count + hidden), o);
    }
    if let Some(n) = &b.no_customer {
        push("no customer", n);
    }
    push("global", &b.global);
    format!("```\n{}\n```", lines.join("\n"))
}

/// Labels that tell the traces apart: the end of each trace's id, as short as keeps them
/// distinct (at least 8 characters). The low bits of trace ids are random, so their ends differ.
pub fn trace_labels(traces: &[TraceSample]) -> Vec<String> {
    let ids: Vec<String> = traces.iter().map(TraceSample::page_id).collect();
    let longest = ids.iter().map(String::len).max().unwrap_or(0);
    let tail = |id: &str, k: usize| id.chars().skip(id.chars().count().saturating_sub(k)).collect::<String>();
    let mut k = 8.min(longest);
    while k < longest {
        let tails: std::collections::HashSet<String> = ids.iter().map(|id| tail(id, k)).collect();
        if tails.len() == ids.len() {
            break;
        }
        k += 1;
    }
    ids.iter().map(|id| if id.len() > k { format!("…{}", tail(id, k)) } else { id.clone() }).collect()
}

fn error_text(error_type: Option<&String>, message: Option<&String>) -> String {
    let clip = |m: &String| escape_untrusted(&m.chars().take(140).collect::<String>());
    match (error_type, message) {
        (Some(ty), Some(msg)) => format!("`{}`: {}", escape_untrusted(ty), clip(msg)),
        (Some(ty), None) => format!("`{}`", escape_untrusted(ty)),
        (None, Some(msg)) => clip(msg),
        (None, None) => "error".into(),
    }
}

/// One trace of the evidence message: the failing span of the alerted service, then (when the
/// whole trace was read) its path from the entry point, the teams it crossed and the likely origin.
fn trace_lines(t: &TraceSample, label: &str, app_base: &str, team_of: &dyn Fn(&str) -> Option<String>) -> String {
    let mut extras = Vec::new();
    if let Some(c) = &t.customer {
        extras.push(format!("customer {}", escape_untrusted(c)));
    }
    if let Some(d) = t.duration_ms {
        extras.push(format!("{} ms", thousands(d)));
    }
    if let Some(v) = &t.version {
        extras.push(format!("version {}", escape_untrusted(v)));
    }
    let teams = t.teams(team_of);
    if teams.len() > 1 {
        let teams: Vec<String> = teams.iter().map(|t| escape_untrusted(t)).collect();
        extras.push(format!("crosses {}", teams.join(" → ")));
    }
    let mut out = format!(
        "• <{}|trace {label}> `{}` {} — {}{}",
        t.link(app_base),
        escape_untrusted(&t.service),
        escape_untrusted(&t.resource),
        error_text(t.error_type.as_ref(), t.error_message.as_ref()),
        if extras.is_empty() { String::new() } else { format!(" ({})", extras.join(", ")) }
    );
    // A trace that stayed in the alerted service says nothing more than its first line.
    let elsewhere =
        t.path.len() > 1 || t.origin.as_ref().is_some_and(|o| o.service != t.service || o.resource != t.resource);
    if elsewhere {
        let hops: Vec<String> = t
            .path
            .iter()
            .map(|h| {
                let team =
                    team_of(&h.service).map(|team| format!(" ({})", escape_untrusted(&team))).unwrap_or_default();
                let name = escape_untrusted(&h.service);
                if h.service == t.service { format!("*{name}*{team}") } else { format!("{name}{team}") }
            })
            .collect();
        out.push_str(&format!("\n    path: {}", hops.join(" → ")));
    }
    if let Some(o) = t.origin.as_ref().filter(|_| elsewhere) {
        let frame = o.frame.as_ref().map(|f| format!(" at `{}`", escape_untrusted(f))).unwrap_or_default();
        out.push_str(&format!(
            "\n    likely origin: `{}` {} — {}{frame}",
            escape_untrusted(&o.service),
            escape_untrusted(&o.resource),
            error_text(o.error_type.as_ref(), o.error_message.as_ref())
        ));
    }
    if t.read == TraceRead::TooLarge {
        out.push_str("\n    _(the trace was too large to read whole: its path may be partial)_");
    }
    out
}

/// The evidence message (edited in place on refresh). `team_of` names the team that owns a
/// service, by the policy's team match rules.
pub fn evidence_message(e: &Evidence, team_of: &dyn Fn(&str) -> Option<String>) -> String {
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
        Some(b) => out.push_str(&format!("{}\n", verdict_line(b))),
        None => out.push_str("_Per-customer table off: set `datadog.customer_facet` in the policy._\n"),
    }
    if let Some(v) = &e.versions {
        out.push_str(&format!("{}\n", version_line(v)));
    }
    if let Some(b) = &e.blast {
        out.push_str(&format!("{}\n", table(b)));
    }
    if e.traces.is_empty() {
        out.push_str("No failing traces in the window.");
    } else {
        out.push_str("*Failing traces*\n");
        for (t, label) in e.traces.iter().zip(trace_labels(&e.traces)) {
            out.push_str(&trace_lines(t, &label, &e.app_base, team_of));
            out.push('\n');
        }
    }
    for note in &e.notes {
        out.push_str(&format!("\n_{}_", escape_untrusted(note)));
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
        assert!(t.contains("other customers (4)"), "{t}");
        assert!(t.contains("10.0%"), "{t}");
        assert!(t.lines().last().unwrap() == "```");
    }

    fn sample(id: &str, ty: &str, res: &str, customer: Option<&str>, s: i64) -> TraceSample {
        TraceSample {
            trace_id: id.into(),
            trace_id_high: None,
            service: "api".into(),
            resource: res.into(),
            error_type: Some(ty.into()),
            error_message: None,
            customer: customer.map(String::from),
            duration_ms: None,
            at: DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap(),
            services: vec!["web-shop".into(), "api".into()],
            path: Vec::new(),
            origin: None,
            version: None,
            read: TraceRead::SpanOnly,
        }
    }

    #[test]
    fn traces_prefer_distinct_errors_then_newest() {
        let t = |id: &str, ty: &str, res: &str, s: i64| sample(id, ty, res, None, s);
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
    }

    #[test]
    fn traces_of_the_customers_the_verdict_names_come_first() {
        let t = |id: &str, ty: &str, customer: &str, s: i64| sample(id, ty, "POST /orders", Some(customer), s);
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
        // Requests without a customer are a customer of their own for the pick.
        let anonymous = vec![t("6", "Timeout", "acme", 50), sample("7", "Timeout", "GET /health", None, 1)];
        let none = Verdict::Isolated { customer: NO_CUSTOMER.into() };
        assert_eq!(ids(pick_traces(anonymous, 1, none.customers())), ["7"]);
    }

    /// The measured case: 5,000 spans without a customer (500 errors), acme 1,000 with 400, and
    /// quiet customers. Every span counts in global, and acme holds 42% of errors, not 90%.
    #[test]
    fn traffic_without_a_customer_and_past_the_limit_counts_everywhere() {
        let counts = [
            c(NO_CUSTOMER, 5000, 500),
            c("acme", 1000, 400),
            c("globex", 3000, 20),
            c("initech", 3000, 16),
            c("hooli", 3254, 16),
        ];
        let b = blast_radius(&counts, VerdictRules::default());
        assert_eq!((b.global.requests, b.global.errors), (15_254, 952));
        assert!((b.global.ratio - 952.0 / 15_254.0).abs() < 1e-9, "about 6.2% global: {}", b.global.ratio);
        let acme = b.customers.iter().find(|r| r.label == "acme").unwrap();
        assert!((acme.share - 400.0 / 952.0).abs() < 1e-9, "acme holds 42% of errors");
        assert_eq!(b.no_customer.as_ref().map(|n| n.errors), Some(500));
        assert_eq!(
            b.verdict,
            Verdict::Several { customers: vec![NO_CUSTOMER.into(), "acme".into()] },
            "not isolated to acme: requests without a customer fail too"
        );
        assert_eq!(verdict_line(&b), "*Several customers* — requests without a customer, acme");
        let t = table(&b);
        assert!(t.contains("no customer") && t.contains("5,000"), "{t}");
        // Customers past the query's limit are one row and count in global.
        let b = blast_radius(&[c("acme", 1000, 400), c(OTHER_CUSTOMERS, 9000, 9)], VerdictRules::default());
        assert_eq!(b.global.requests, 10_000);
        assert!(b.others_unlisted && b.others.as_ref().unwrap().requests == 9000);
        assert!(table(&b).contains("other customers (0+)"), "{}", table(&b));
        assert_eq!(b.verdict, Verdict::Isolated { customer: "acme".into() });
    }

    #[test]
    fn a_version_holding_the_errors_is_a_likely_bad_deploy() {
        let v = |name: &str, requests: u64, errors: u64| VersionCount { version: name.into(), requests, errors };
        let rules = VerdictRules::default();
        let bad = version_verdict(&[v("2.4.1", 900, 300), v("2.4.0", 9000, 9)], rules).unwrap();
        assert!(matches!(&bad, VersionVerdict::Concentrated { version, .. } if version == "2.4.1"), "{bad:?}");
        assert!(
            version_line(&bad).starts_with("*Errors concentrate in version 2.4.1* — 97.1% of errors"),
            "{}",
            version_line(&bad)
        );
        assert_eq!(
            version_verdict(&[v("2.4.1", 900, 90), v("2.4.0", 9000, 800)], rules),
            Some(VersionVerdict::Spread { versions: 2 })
        );
        assert_eq!(version_verdict(&[v("1.0", 10, 5)], rules), Some(VersionVerdict::One { version: "1.0".into() }));
        assert_eq!(version_verdict(&[], rules), None);
    }

    #[test]
    fn trace_ids_open_the_trace_page_and_labels_tell_them_apart() {
        let mut t = sample("3740652481065462946", "Timeout", "GET /", None, 0);
        assert_eq!(t.page_id(), "3740652481065462946", "a 64-bit id stays decimal");
        t.trace_id_high = Some("6aa3372f00000000".into());
        assert_eq!(t.page_id(), "6aa3372f0000000033e9779cda172ca2", "upper half from _dd.p.tid, lower half in hex");
        assert_eq!(
            t.link("https://app.datadoghq.eu/"),
            "https://app.datadoghq.eu/apm/trace/6aa3372f0000000033e9779cda172ca2"
        );
        let ids = ["3740652481065462946", "3740652481065462947", "3740652481999462946"];
        let traces: Vec<TraceSample> = ids.iter().map(|id| sample(id, "E", "r", None, 0)).collect();
        let labels = trace_labels(&traces);
        assert_eq!(labels, ["…65462946", "…65462947", "…99462946"]);
        // Ids that share their last 8 digits get longer labels.
        let traces: Vec<TraceSample> =
            ["1111111165462946", "2222222265462946"].iter().map(|id| sample(id, "E", "r", None, 0)).collect();
        assert_eq!(trace_labels(&traces), ["…165462946", "…265462946"]);
    }

    #[test]
    fn the_top_frame_is_the_code_that_failed() {
        let python = "Traceback (most recent call last):\n  File \"app/views.py\", line 12, in checkout\n    reserve()\n  File \"orders/repo.py\", line 88, in reserve\n    cur.execute(q)\npsycopg2.OperationalError: too many connections";
        assert_eq!(top_frame(python).as_deref(), Some("File \"orders/repo.py\", line 88, in reserve"));
        let java = "java.sql.SQLTransientConnectionException: pool exhausted\n\tat com.acme.orders.OrderRepo.reserve(OrderRepo.java:88)\n\tat com.acme.orders.OrderService.place(OrderService.java:41)";
        assert_eq!(top_frame(java).as_deref(), Some("com.acme.orders.OrderRepo.reserve(OrderRepo.java:88)"));
        let go = "panic: pool exhausted\n\ngoroutine 42 [running]:\nmain.reserve(...)\n\t/app/orders/repo.go:88 +0x1d\nmain.main()\n\t/app/main.go:12 +0x20";
        assert_eq!(top_frame(go).as_deref(), Some("main.reserve() /app/orders/repo.go:88"));
        let ruby = "app/models/order.rb:88:in `reserve'\napp/controllers/orders_controller.rb:12:in `create'";
        assert_eq!(top_frame(ruby).as_deref(), Some("app/models/order.rb:88:in `reserve'"));
        assert_eq!(top_frame("just a message"), None);
    }
}
