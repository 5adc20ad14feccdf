//! Gathering an incident's evidence from Datadog: representative failing traces followed across
//! the services they touched, and per-customer error ratios, in at most three requests. This is
//! the Datadog [`EvidenceSource`]; the worker that runs it is the application's.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::{DatadogClient, DatadogError, GroupBy};
use crate::app::evidence::{EvidenceJob, EvidenceSource};
use crate::domain::evidence::{
    CustomerCount, ErrorOrigin, Evidence, Hop, NO_CUSTOMER, OTHER_CUSTOMERS, TraceRead, TraceSample, VersionCount,
    blast_radius, pick_traces, top_frame, version_verdict,
};
use crate::domain::policy::DatadogPolicy;

/// Error spans read per search; the representative traces are picked from them.
pub const SEARCH_LIMIT: u32 = 50;
/// Customers per aggregation (the rest are not shown individually anyway).
pub const CUSTOMER_BUCKETS: u32 = 100;
/// The `missing` value asked for in the customer grouping: spans without the customer facet.
pub const NO_CUSTOMER_KEY: &str = "__incident_commander_no_customer__";
/// The `total` value asked for in the customer grouping: every matching span, listed customers
/// or not.
pub const ALL_CUSTOMERS_KEY: &str = "__incident_commander_all__";
/// The `missing` value asked for in the version grouping.
pub const NO_VERSION_KEY: &str = "__incident_commander_no_version__";
/// Versions counted per aggregation (more than a service runs at once).
pub const VERSION_BUCKETS: u32 = 10;
/// Span statuses per aggregation (`ok`, `error`, and room for anything else).
pub const STATUS_BUCKETS: u32 = 3;
/// Spans read by the trace lookup (one page; the API's maximum).
pub const TRACE_SPANS: u32 = crate::datadog::SEARCH_PAGE_MAX;
/// How far before and after the evidence window the trace lookup reaches, for traces that
/// started before it or ended after it.
pub const TRACE_MARGIN: TimeDelta = TimeDelta::minutes(5);

/// Reads a value at an attribute path (`@usr.org_id`, `_dd.p.tid`) in a span's attributes:
/// nested in `custom` as the spans API nests dotted attributes, or flat under the dotted name.
fn custom_value<'a>(attributes: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim_start_matches('@');
    let custom = attributes.get("custom")?;
    if let Some(v) = custom.get(path) {
        return Some(v);
    }
    let mut v = custom;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    Some(v)
}

/// A tag's value from the span's `tags` (`version:1.2.3`).
fn tag_value(attributes: &Value, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    attributes["tags"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|t| t.strip_prefix(&prefix).map(String::from))
}

fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The error a span carries (`error.type`, `error.message`, `error.stack`), if it failed.
fn span_error(a: &Value) -> Option<(Option<String>, Option<String>, Option<String>)> {
    let e = a.pointer("/custom/error").filter(|e| e.is_object());
    let failed = e.is_some_and(|e| ["type", "message", "msg", "stack"].iter().any(|k| as_text(e.get(*k)).is_some()))
        || a["status"].as_str() == Some("error");
    failed.then(|| {
        let get = |k: &[&str]| e.and_then(|e| k.iter().find_map(|k| as_text(e.get(*k))));
        (get(&["type", "kind"]), get(&["message", "msg"]), get(&["stack"]))
    })
}

fn start_of(a: &Value) -> DateTime<Utc> {
    a["start_timestamp"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

fn duration_ms(a: &Value) -> Option<u64> {
    a.pointer("/custom/duration").and_then(Value::as_f64).map(|ns| (ns / 1_000_000.0).round() as u64)
}

/// The upper half of a 128-bit trace id, when a span carries it (`_dd.p.tid`).
fn trace_id_high(a: &Value) -> Option<String> {
    as_text(custom_value(a, "_dd.p.tid"))
        .or_else(|| tag_value(a, "_dd.p.tid"))
        .filter(|h| h.len() <= 16 && h.chars().all(|c| c.is_ascii_hexdigit()) && h.chars().any(|c| c != '0'))
}

fn version_of(a: &Value) -> Option<String> {
    as_text(custom_value(a, "version")).or_else(|| tag_value(a, "version"))
}

/// Failing spans of the alerted service from a search answer, one sample per trace (its first
/// failing span), newest trace first.
pub fn traces_from_search(answer: &Value, facet: Option<&str>) -> Vec<TraceSample> {
    let Some(spans) = answer["data"].as_array() else { return Vec::new() };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for span in spans {
        let a = &span["attributes"];
        let Some(trace_id) = as_text(a.get("trace_id")) else { continue };
        if !seen.insert(trace_id.clone()) {
            continue;
        }
        let (error_type, error_message, _) = span_error(a).unwrap_or_default();
        let service = as_text(a.get("service")).unwrap_or_default();
        out.push(TraceSample {
            trace_id,
            trace_id_high: trace_id_high(a),
            services: vec![service.clone()],
            service,
            resource: as_text(a.get("resource_name")).unwrap_or_default(),
            error_type,
            error_message,
            customer: facet.and_then(|f| as_text(custom_value(a, f))),
            duration_ms: duration_ms(a),
            at: start_of(a),
            path: Vec::new(),
            origin: None,
            version: version_of(a),
            read: TraceRead::SpanOnly,
        });
    }
    out.sort_by_key(|t| std::cmp::Reverse(t.at));
    out
}

/// Fills in what the whole trace shows, from the trace lookup's spans: the path of services from
/// the entry point to the deepest failing span, that span as the likely origin (with the top
/// frame of its stack), the whole trace's duration, the customer and the 128-bit id. `complete`
/// says the lookup returned every span it matched.
pub fn read_trace(sample: &mut TraceSample, answer: &Value, facet: Option<&str>, complete: bool) {
    let spans: Vec<&Value> = answer["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| &s["attributes"])
        .filter(|a| as_text(a.get("trace_id")).as_deref() == Some(sample.trace_id.as_str()))
        .collect();
    if spans.is_empty() {
        return;
    }
    let id = |a: &Value| as_text(a.get("span_id")).unwrap_or_default();
    let by_id: HashMap<String, &Value> = spans.iter().map(|a| (id(a), *a)).collect();
    let parent = |a: &Value| as_text(a.get("parent_id")).filter(|p| p != "0" && by_id.contains_key(p));
    let depth = |a: &Value| {
        let mut d = 0;
        let mut cur = parent(a);
        while let Some(p) = cur {
            d += 1;
            if d > spans.len() {
                break; // a cycle in bad data
            }
            cur = by_id.get(&p).and_then(|a| parent(a));
        }
        d
    };
    let failed: Vec<&Value> = spans.iter().copied().filter(|a| span_error(a).is_some()).collect();
    let has_failed_child = |a: &Value| failed.iter().any(|c| parent(c).as_deref() == Some(id(a).as_str()));
    // The deepest failing span whose children all succeeded: where the error began.
    let origin = failed
        .iter()
        .copied()
        .filter(|a| !has_failed_child(a))
        .max_by(|x, y| depth(x).cmp(&depth(y)).then(start_of(x).cmp(&start_of(y))));
    let root = spans.iter().copied().find(|a| parent(a).is_none()).unwrap_or(spans[0]);
    let mut chain: Vec<&Value> = Vec::new();
    if let Some(o) = origin {
        let mut cur = Some(o);
        while let Some(a) = cur {
            chain.push(a);
            if chain.len() > spans.len() {
                break;
            }
            cur = parent(a).and_then(|p| by_id.get(&p).copied());
        }
        chain.reverse();
    }
    let mut path: Vec<Hop> = Vec::new();
    for a in &chain {
        let service = as_text(a.get("service")).unwrap_or_default();
        let failed = span_error(a).is_some();
        match path.last_mut() {
            Some(last) if last.service == service => last.failed |= failed,
            _ => path.push(Hop { service, failed }),
        }
    }
    if let Some(o) = origin {
        let (error_type, error_message, stack) = span_error(o).unwrap_or_default();
        sample.origin = Some(ErrorOrigin {
            service: as_text(o.get("service")).unwrap_or_default(),
            resource: as_text(o.get("resource_name")).unwrap_or_default(),
            error_type,
            error_message,
            frame: stack.as_deref().and_then(top_frame),
        });
    }
    if !path.is_empty() {
        sample.services = path.iter().map(|h| h.service.clone()).collect();
        sample.path = path;
    }
    sample.duration_ms = duration_ms(root).or(sample.duration_ms);
    if sample.customer.is_none() {
        sample.customer = facet.and_then(|f| spans.iter().find_map(|a| as_text(custom_value(a, f))));
    }
    if sample.trace_id_high.is_none() {
        sample.trace_id_high = spans.iter().find_map(|a| trace_id_high(a));
    }
    sample.read = if complete { TraceRead::Whole } else { TraceRead::TooLarge };
}

/// The counts of one aggregation bucket.
fn bucket_count(bucket: &Value) -> u64 {
    match &bucket["attributes"]["compute"]["c0"] {
        Value::Number(n) => n.as_f64().unwrap_or(0.0).max(0.0).round() as u64,
        Value::Array(points) => points.iter().filter_map(|p| p["value"].as_f64()).sum::<f64>().max(0.0).round() as u64,
        _ => 0,
    }
}

/// Per-customer and per-version counts from an aggregation grouped by `[facet, status,
/// version]` (customers with [`NO_CUSTOMER_KEY`] for missing and [`ALL_CUSTOMERS_KEY`] as the
/// total; `facet` `None` when the grouping was `[status, version]` only). Customers past the
/// group limit come back as [`OTHER_CUSTOMERS`]: what the total holds beyond the listed ones.
pub fn counts_from_aggregate(answer: &Value, facet: Option<&str>) -> (Vec<CustomerCount>, Vec<VersionCount>) {
    let mut customers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut total: Option<(u64, u64)> = None;
    let mut versions_all: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut versions_listed: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for bucket in answer["data"].as_array().into_iter().flatten() {
        let by = &bucket["attributes"]["by"];
        let n = bucket_count(bucket);
        let is_error = by.get("status").and_then(Value::as_str) == Some("error");
        let add = |entry: &mut (u64, u64)| {
            entry.0 += n;
            if is_error {
                entry.1 += n;
            }
        };
        let version = as_text(by.get("version")).filter(|v| v != NO_VERSION_KEY);
        let customer = match facet {
            Some(f) => as_text(by.get(f)).unwrap_or_else(|| NO_CUSTOMER_KEY.to_string()),
            None => ALL_CUSTOMERS_KEY.to_string(),
        };
        if customer == ALL_CUSTOMERS_KEY {
            add(total.get_or_insert((0, 0)));
            if let Some(v) = version {
                add(versions_all.entry(v).or_default());
            }
        } else {
            let key = if customer == NO_CUSTOMER_KEY { NO_CUSTOMER.to_string() } else { customer };
            add(customers.entry(key).or_default());
            if let Some(v) = version {
                add(versions_listed.entry(v).or_default());
            }
        }
    }
    let listed: (u64, u64) = customers.values().fold((0, 0), |acc, (r, e)| (acc.0 + r, acc.1 + e));
    if let Some((r, e)) = total
        && facet.is_some()
    {
        let beyond = (r.saturating_sub(listed.0), e.saturating_sub(listed.1));
        if beyond.0 > 0 {
            customers.insert(OTHER_CUSTOMERS.to_string(), beyond);
        }
    }
    let versions = if versions_all.is_empty() { versions_listed } else { versions_all };
    let customers = if facet.is_some() {
        customers
            .into_iter()
            .map(|(customer, (requests, errors))| CustomerCount { customer, requests, errors })
            .collect()
    } else {
        Vec::new()
    };
    (
        customers,
        versions.into_iter().map(|(version, (requests, errors))| VersionCount { version, requests, errors }).collect(),
    )
}

/// Per-customer counts from a v1 metrics answer grouped `by {tag,status}`: each series'
/// `tag_set` names its customer (`customer:acme`, trimmed) and status; a series without the
/// customer tag (or Datadog's `N/A`) is traffic without a customer. Point sums are rounded (ten
/// points of 0.3 are 3 errors, not 2).
pub fn counts_from_metric(answer: &Value, tag: &str) -> Vec<CustomerCount> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for series in answer["series"].as_array().into_iter().flatten() {
        let tags: Vec<&str> = series["tag_set"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let value_of = |key: &str| {
            tags.iter().find_map(|t| {
                let (k, v) = t.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let customer = value_of(tag)
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("n/a"))
            .unwrap_or_else(|| NO_CUSTOMER.to_string());
        let is_error = value_of("status").as_deref() == Some("error");
        let sum: f64 =
            series["pointlist"].as_array().into_iter().flatten().filter_map(|p| p.get(1).and_then(Value::as_f64)).sum();
        let entry = out.entry(customer).or_default();
        entry.0 += sum.max(0.0);
        if is_error {
            entry.1 += sum.max(0.0);
        }
    }
    out.into_iter()
        .map(|(customer, (requests, errors))| CustomerCount {
            customer,
            requests: requests.round() as u64,
            errors: errors.round() as u64,
        })
        .collect()
}

fn quote(s: &str) -> String {
    if s.contains([' ', ':', '"', '(', ')']) { format!("\"{}\"", s.replace('"', "\\\"")) } else { s.to_string() }
}

/// Asks Datadog in at most three requests: the counts (one spans aggregation by customer, status
/// and version, or one metric query), the failing spans of the alerted service (one search), and
/// the whole traces of the ones picked (one search on their trace ids).
pub async fn gather(
    client: &DatadogClient,
    dd: &DatadogPolicy,
    job: &EvidenceJob,
    now: DateTime<Utc>,
) -> Result<Evidence, DatadogError> {
    let Some(service) = &job.service else {
        return Err(DatadogError::BadRequest(
            "the alert names no service: add a service tag to the monitor to get evidence".into(),
        ));
    };
    let mut scope = format!("service:{}", quote(service));
    if let Some(env) = &job.env {
        scope.push_str(&format!(" env:{}", quote(env)));
    }
    let (blast, versions) = match (&dd.span_metric, &dd.customer_facet) {
        (Some(metric), _) => {
            let tag = &dd.span_metric_customer_tag;
            let filter = match &job.env {
                Some(env) => format!("service:{service},env:{env}"),
                None => format!("service:{service}"),
            };
            let answer = client
                .query_metric(&format!("sum:{metric}{{{filter}}} by {{{tag},status}}.as_count()"), job.from, job.to)
                .await?;
            (Some(blast_radius(&counts_from_metric(&answer, tag), dd.verdict)), None)
        }
        (None, facet) => {
            let status = GroupBy { facet: "status", limit: STATUS_BUCKETS, missing: Some("unknown"), total: None };
            let version =
                GroupBy { facet: "version", limit: VERSION_BUCKETS, missing: Some(NO_VERSION_KEY), total: None };
            let groups: Vec<GroupBy> = match facet {
                Some(f) => vec![
                    GroupBy {
                        facet: f,
                        limit: CUSTOMER_BUCKETS,
                        missing: Some(NO_CUSTOMER_KEY),
                        total: Some(ALL_CUSTOMERS_KEY),
                    },
                    status,
                    version,
                ],
                None => vec![status, version],
            };
            let answer = client.aggregate_spans(&scope, job.from, job.to, &groups).await?;
            let (customers, versions) = counts_from_aggregate(&answer, facet.as_deref());
            let blast = facet.as_ref().map(|_| blast_radius(&customers, dd.verdict));
            (blast, version_verdict(&versions, dd.verdict))
        }
    };
    let mut notes = Vec::new();
    let traces = if dd.traces == 0 {
        Vec::new()
    } else {
        let answer =
            client.search_spans(&format!("{scope} status:error"), job.from, job.to, SEARCH_LIMIT, "-timestamp").await?;
        let affected = blast.as_ref().map(|b| b.verdict.customers()).unwrap_or_default();
        let mut picked = pick_traces(traces_from_search(&answer, dd.customer_facet.as_deref()), dd.traces, affected);
        if !picked.is_empty() {
            // Real Datadog answers a service query with that service's spans only: the rest of
            // each trace (its frontend, its downstream calls) needs a lookup by trace id.
            let ids: Vec<&str> = picked.iter().map(|t| t.trace_id.as_str()).collect();
            let query = format!("trace_id:({})", ids.join(" OR "));
            match client
                .search_spans(&query, job.from - TRACE_MARGIN, job.to + TRACE_MARGIN, TRACE_SPANS, "timestamp")
                .await
            {
                Ok(whole) => {
                    let returned = whole["data"].as_array().map(Vec::len).unwrap_or(0);
                    let complete = whole.pointer("/meta/page/after").and_then(Value::as_str).is_none()
                        && returned < TRACE_SPANS as usize;
                    for t in &mut picked {
                        read_trace(t, &whole, dd.customer_facet.as_deref(), complete);
                    }
                    if !complete {
                        notes.push(format!(
                            "The traces had more than {TRACE_SPANS} spans between them: paths may be partial."
                        ));
                    }
                }
                Err(e) => notes.push(format!("Trace paths are not shown: the trace lookup failed ({e}).")),
            }
        }
        picked
    };
    Ok(Evidence {
        fetched_at: now,
        window_from: job.from,
        window_to: job.to,
        service: job.service.clone(),
        env: job.env.clone(),
        blast,
        versions,
        traces,
        app_base: client.site().app_base.clone(),
        notes,
    })
}

/// Datadog as the bot's evidence source: the client and what the policy asks of it.
pub struct DatadogEvidence {
    pub client: DatadogClient,
    pub policy: DatadogPolicy,
}

impl EvidenceSource for DatadogEvidence {
    fn name(&self) -> &'static str {
        "datadog"
    }

    fn usage(&self) -> Option<(u64, u64)> {
        Some((self.client.requests_sent(), self.client.budget_left()))
    }

    async fn gather(&self, job: &EvidenceJob, now: DateTime<Utc>) -> Result<Evidence, String> {
        gather(&self.client, &self.policy, job, now).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A span as the spans API returns it (shaped like the recorded
    /// `api-cassettes/v2/spans/Search-spans-returns-OK-response` answer).
    fn span(trace: &str, id: &str, parent: &str, service: &str, resource: &str, ms: u32, custom: Value) -> Value {
        json!({"id": format!("AY{id}"), "type": "spans", "attributes": {
            "custom": custom, "env": "prod", "host": format!("{service}-1"), "ingestion_reason": "auto",
            "parent_id": parent, "resource_hash": "2c8cc8275262b3cd", "resource_name": resource,
            "retained_by": "retention_filter", "service": service, "single_span": false, "span_id": id,
            "start_timestamp": format!("2026-11-04T10:00:00.{ms:03}Z"), "end_timestamp": format!("2026-11-04T10:00:01.{ms:03}Z"),
            "tags": [format!("service:{service}"), "env:prod"], "trace_id": trace, "type": "web"}})
    }

    #[test]
    fn a_whole_trace_gives_the_path_and_the_deepest_error() {
        let search = json!({"data": [
            span("3740652481065462946", "20", "10", "api-gateway", "POST /orders", 20, json!({"duration": 2_100_000_000u64, "version": "2.4.1",
                "usr": {"org_id": "acme"}, "error": {"type": "TimeoutError", "message": "upstream timed out"}})),
        ], "meta": {"status": "done"}});
        let mut traces = traces_from_search(&search, Some("@usr.org_id"));
        assert_eq!(traces.len(), 1);
        assert_eq!((traces[0].version.as_deref(), traces[0].customer.as_deref()), (Some("2.4.1"), Some("acme")));
        let whole = json!({"data": [
            span("3740652481065462946", "10", "0", "web-checkout", "GET /checkout", 0, json!({"duration": 2_300_000_000u64,
                "_dd": {"p": {"tid": "6aa3372f00000000"}}, "error": {"type": "HTTPError", "message": "502 from api-gateway"}})),
            span("3740652481065462946", "20", "10", "api-gateway", "POST /orders", 20, json!({"duration": 2_100_000_000u64,
                "error": {"type": "TimeoutError", "message": "upstream timed out"}})),
            span("3740652481065462946", "30", "20", "orders-db", "SELECT orders", 30, json!({"duration": 2_000_000_000u64,
                "error": {"type": "PSQLException", "message": "remaining connection slots are reserved",
                          "stack": "org.postgresql.util.PSQLException: remaining connection slots are reserved\n\tat com.acme.orders.OrderRepo.reserve(OrderRepo.java:88)"}})),
            span("3740652481065462946", "31", "20", "inventory", "GET /stock", 25, json!({"duration": 5_000_000u64})),
        ]});
        read_trace(&mut traces[0], &whole, Some("@usr.org_id"), true);
        let t = &traces[0];
        let path: Vec<(&str, bool)> = t.path.iter().map(|h| (h.service.as_str(), h.failed)).collect();
        assert_eq!(path, [("web-checkout", true), ("api-gateway", true), ("orders-db", true)]);
        let origin = t.origin.as_ref().unwrap();
        assert_eq!((origin.service.as_str(), origin.error_type.as_deref()), ("orders-db", Some("PSQLException")));
        assert_eq!(origin.frame.as_deref(), Some("com.acme.orders.OrderRepo.reserve(OrderRepo.java:88)"));
        assert_eq!(t.duration_ms, Some(2300), "the whole trace's duration, from its root");
        assert_eq!(t.read, TraceRead::Whole);
        assert_eq!(t.page_id(), "6aa3372f0000000033e9779cda172ca2");
        // A lookup that was cut short says so.
        let mut partial = traces_from_search(&search, None).remove(0);
        read_trace(&mut partial, &json!({"data": [whole["data"][1].clone(), whole["data"][2].clone()]}), None, false);
        assert_eq!(partial.read, TraceRead::TooLarge);
        assert_eq!(partial.path[0].service, "api-gateway", "the path starts where the spans read begin");
    }

    #[test]
    fn aggregates_count_every_span_missing_customers_and_customers_past_the_limit() {
        let bucket = |customer: &str, status: &str, version: &str, n: u64| {
            json!({"type": "bucket", "id": format!("{customer}{status}{version}"), "attributes": {
                "by": {"@usr.org_id": customer, "status": status, "version": version}, "compute": {"c0": n}}})
        };
        let answer = json!({"data": [
            bucket("acme", "error", "2.4.1", 400), bucket("acme", "ok", "2.4.1", 600),
            bucket(NO_CUSTOMER_KEY, "error", "2.4.1", 500), bucket(NO_CUSTOMER_KEY, "ok", "2.4.1", 4500),
            bucket("globex", "ok", NO_VERSION_KEY, 300),
            bucket(ALL_CUSTOMERS_KEY, "error", "2.4.1", 910), bucket(ALL_CUSTOMERS_KEY, "ok", "2.4.1", 5200),
            bucket(ALL_CUSTOMERS_KEY, "ok", NO_VERSION_KEY, 1000),
        ], "meta": {"status": "done"}});
        let (customers, versions) = counts_from_aggregate(&answer, Some("@usr.org_id"));
        let get = |name: &str| customers.iter().find(|c| c.customer == name).map(|c| (c.requests, c.errors));
        assert_eq!(get("acme"), Some((1000, 400)));
        assert_eq!(get(NO_CUSTOMER), Some((5000, 500)));
        assert_eq!(get(OTHER_CUSTOMERS), Some((7110 - 6300, 10)), "what the total holds past the listed customers");
        assert_eq!(versions, [VersionCount { version: "2.4.1".into(), requests: 6110, errors: 910 }]);
        // Without a customer facet: only versions.
        let (none, _) = counts_from_aggregate(&answer, None);
        assert!(none.is_empty());
    }

    #[test]
    fn metric_sums_are_rounded_and_tags_trimmed() {
        let points: Vec<Value> = (0..10).map(|i| json!([1_800_000_000_000u64 + i, 0.3])).collect();
        let answer = json!({"status": "ok", "series": [
            {"tag_set": ["customer: acme", "status:error"], "pointlist": points},
            {"tag_set": ["customer: acme", "status:ok"], "pointlist": [[1.0, 97.0]]},
            {"tag_set": ["status:ok"], "pointlist": [[1.0, 40.0]]},
            {"tag_set": ["customer:N/A", "status:error"], "pointlist": [[1.0, 2.0], [2.0, null]]},
        ]});
        let counts = counts_from_metric(&answer, "customer");
        assert_eq!(counts[0], CustomerCount { customer: NO_CUSTOMER.into(), requests: 42, errors: 2 });
        assert_eq!(
            counts[1],
            CustomerCount { customer: "acme".into(), requests: 100, errors: 3 },
            "ten points of 0.3 are 3 errors"
        );
    }
}
