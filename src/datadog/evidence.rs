//! Gathering an incident's evidence: representative failing traces and per-customer error ratios,
//! in at most three requests, then handing the result back to the processor as an event.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{DatadogClient, DatadogError};
use crate::app::clock::Clock;
use crate::app::inbox::Inbox;
use crate::app::metrics::Metrics;
use crate::domain::decide::Event;
use crate::domain::evidence::{CustomerCount, Evidence, TraceSample, blast_radius, pick_traces};
use crate::domain::ids::IncidentId;
use crate::domain::incident::{EvidencePurpose, Incident};
use crate::policy::DatadogPolicy;
use crate::store::{InboxEvent, Origin};

/// Error spans read per search; the representative traces are picked from them.
pub const SEARCH_LIMIT: u32 = 50;
/// Customers per aggregation (the rest are not shown individually anyway).
pub const CUSTOMER_BUCKETS: u32 = 100;
/// Evidence gathered at once; more wait their turn.
pub const CONCURRENT_JOBS: usize = 4;
/// The widest window asked about, whatever the alert's timestamps say (clock skew, old alerts).
pub const MAX_WINDOW: TimeDelta = TimeDelta::hours(6);

/// Jobs handed to the worker whose answer has not reached the inbox yet, so callers waiting
/// for the bot to settle can tell. A watch channel, so a waiter also wakes when the count falls
/// (the answer can be processed before the worker marks its job finished).
#[derive(Debug, Clone)]
pub struct InFlight(Arc<tokio::sync::watch::Sender<u64>>);

impl Default for InFlight {
    fn default() -> Self {
        InFlight(Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

impl InFlight {
    pub fn count(&self) -> u64 {
        *self.0.borrow()
    }

    pub fn started(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    pub fn finished(&self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Changes of the count, for waiting on it.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// What to ask Datadog about, for one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceJob {
    pub incident: IncidentId,
    pub purpose: EvidencePurpose,
    pub service: Option<String>,
    pub env: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl EvidenceJob {
    /// The window runs from `window_before` ahead of the first alert to now (or the resolution).
    pub fn for_incident(
        incident: &Incident,
        purpose: EvidencePurpose,
        now: DateTime<Utc>,
        dd: &DatadogPolicy,
    ) -> EvidenceJob {
        let to = incident.resolved_at.unwrap_or(now);
        // The first alert anchors the window, as long as its clock agrees with ours.
        let first =
            incident.alerts.as_ref().map(|a| a.first_seen).unwrap_or(incident.opened_at).clamp(to - MAX_WINDOW, to);
        let from = (first - dd.window_before).max(to - MAX_WINDOW - dd.window_before);
        let to = to.max(from + TimeDelta::minutes(1));
        EvidenceJob {
            incident: incident.id,
            purpose,
            service: incident.alerts.as_ref().and_then(|a| a.service.clone()),
            env: incident.alerts.as_ref().and_then(|a| a.env.clone()).or_else(|| dd.env.clone()),
            from,
            to,
        }
    }
}

/// Reads a value at a facet path (`@usr.org_id`) in a span's attributes.
fn facet_value<'a>(attributes: &'a Value, facet: &str) -> Option<&'a Value> {
    let path = facet.trim_start_matches('@');
    let mut v = attributes.get("custom")?;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    Some(v)
}

fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Error spans from a search answer, grouped by trace (services in order), newest trace first.
pub fn traces_from_search(answer: &Value, facet: Option<&str>) -> Vec<TraceSample> {
    let Some(spans) = answer["data"].as_array() else { return Vec::new() };
    let mut by_trace: HashMap<String, Vec<&Value>> = HashMap::new();
    for span in spans {
        let a = &span["attributes"];
        if let Some(id) = as_text(a.get("trace_id")) {
            by_trace.entry(id).or_default().push(a);
        }
    }
    let mut out = Vec::new();
    for (trace_id, mut spans) in by_trace {
        spans.sort_by_key(|a| a["start_timestamp"].as_str().unwrap_or_default().to_string());
        let mut services: Vec<String> = Vec::new();
        for a in &spans {
            if let Some(s) = as_text(a.get("service"))
                && !services.contains(&s)
            {
                services.push(s);
            }
        }
        // The deepest span with an error says the most: the last one in time order.
        let Some(a) = spans.last() else { continue };
        let at = a["start_timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(DateTime::UNIX_EPOCH);
        let error = a.pointer("/custom/error");
        out.push(TraceSample {
            trace_id,
            service: as_text(a.get("service")).unwrap_or_default(),
            resource: as_text(a.get("resource_name")).unwrap_or_default(),
            error_type: error.and_then(|e| as_text(e.get("type")).or_else(|| as_text(e.get("kind")))),
            error_message: error.and_then(|e| as_text(e.get("message")).or_else(|| as_text(e.get("msg")))),
            customer: facet.and_then(|f| as_text(facet_value(a, f))),
            duration_ms: a.pointer("/custom/duration").and_then(Value::as_u64).map(|ns| ns / 1_000_000),
            at,
            services,
        });
    }
    out
}

/// Per-customer counts from an aggregation grouped by `[facet, status]`.
pub fn counts_from_aggregate(answer: &Value, facet: &str) -> Vec<CustomerCount> {
    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for bucket in answer["data"].as_array().into_iter().flatten() {
        let by = &bucket["attributes"]["by"];
        let customer = as_text(by.get(facet)).unwrap_or_else(|| "unknown".into());
        let n = match &bucket["attributes"]["compute"]["c0"] {
            Value::Number(n) => n.as_f64().unwrap_or(0.0).max(0.0) as u64,
            Value::Array(points) => points.iter().filter_map(|p| p["value"].as_f64()).sum::<f64>().max(0.0) as u64,
            _ => 0,
        };
        let entry = counts.entry(customer).or_default();
        entry.0 += n;
        if by.get("status").and_then(Value::as_str) == Some("error") {
            entry.1 += n;
        }
    }
    counts.into_iter().map(|(customer, (requests, errors))| CustomerCount { customer, requests, errors }).collect()
}

/// Sums of a v1 metrics answer per value of `tag` (`tag_set: ["customer:acme"]`).
pub fn sums_from_metric(answer: &Value, tag: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for series in answer["series"].as_array().into_iter().flatten() {
        let key = series["tag_set"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|t| t.strip_prefix(&format!("{tag}:")).map(String::from))
            .unwrap_or_else(|| "unknown".into());
        let sum: f64 =
            series["pointlist"].as_array().into_iter().flatten().filter_map(|p| p.get(1).and_then(Value::as_f64)).sum();
        *out.entry(key).or_default() += sum.max(0.0) as u64;
    }
    out
}

fn quote(s: &str) -> String {
    if s.contains([' ', ':', '"']) { format!("\"{}\"", s.replace('"', "\\\"")) } else { s.to_string() }
}

/// Asks Datadog: one spans aggregation (or two metric queries) and one spans search.
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
    let blast = match (&dd.span_metric, &dd.customer_facet) {
        (Some(metric), _) => {
            let tag = &dd.span_metric_customer_tag;
            let filter = match &job.env {
                Some(env) => format!("service:{service},env:{env}"),
                None => format!("service:{service}"),
            };
            let all = client
                .query_metric(&format!("sum:{metric}{{{filter}}} by {{{tag}}}.as_count()"), job.from, job.to)
                .await?;
            let errors = client
                .query_metric(
                    &format!("sum:{metric}{{{filter},status:error}} by {{{tag}}}.as_count()"),
                    job.from,
                    job.to,
                )
                .await?;
            let all = sums_from_metric(&all, tag);
            let errors = sums_from_metric(&errors, tag);
            let counts: Vec<CustomerCount> = all
                .into_iter()
                .map(|(customer, requests)| CustomerCount {
                    errors: errors.get(&customer).copied().unwrap_or(0),
                    customer,
                    requests,
                })
                .collect();
            Some(blast_radius(&counts, dd.verdict))
        }
        (None, Some(facet)) => {
            let answer = client
                .aggregate_spans(&scope, job.from, job.to, &[(facet.as_str(), CUSTOMER_BUCKETS), ("status", 2)])
                .await?;
            Some(blast_radius(&counts_from_aggregate(&answer, facet), dd.verdict))
        }
        (None, None) => None,
    };
    let traces = if dd.traces == 0 {
        Vec::new()
    } else {
        let answer = client.search_spans(&format!("{scope} status:error"), job.from, job.to, SEARCH_LIMIT).await?;
        let affected = blast.as_ref().map(|b| b.verdict.customers()).unwrap_or_default();
        pick_traces(traces_from_search(&answer, dd.customer_facet.as_deref()), dd.traces, affected)
    };
    Ok(Evidence {
        fetched_at: now,
        window_from: job.from,
        window_to: job.to,
        service: job.service.clone(),
        env: job.env.clone(),
        blast,
        traces,
        app_base: client.site().app_base.clone(),
    })
}

/// Starts the worker that gathers evidence for jobs and puts the results in the inbox.
pub fn spawn_worker(
    client: Arc<DatadogClient>,
    dd: DatadogPolicy,
    inbox: Inbox,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    in_flight: InFlight,
    shutdown: CancellationToken,
) -> (mpsc::UnboundedSender<EvidenceJob>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<EvidenceJob>();
    let handle = tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(CONCURRENT_JOBS));
        let tasks = tokio_util::task::TaskTracker::new();
        loop {
            let job = tokio::select! {
                j = rx.recv() => j,
                _ = shutdown.cancelled() => None,
            };
            let Some(job) = job else { break };
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (client, dd, inbox, clock, metrics) =
                (client.clone(), dd.clone(), inbox.clone(), clock.clone(), metrics.clone());
            let in_flight = in_flight.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let result = gather(&client, &dd, &job, clock.now()).await;
                match &result {
                    Ok(e) => {
                        metrics.api_call("datadog.evidence", "ok");
                        info!(incident = %job.incident, verdict = e.blast.as_ref().map(|b| b.verdict.to_string()), traces = e.traces.len(), "evidence gathered");
                    }
                    Err(err) => {
                        metrics.api_call("datadog.evidence", "failed");
                        warn!(incident = %job.incident, error = %err, "evidence unavailable");
                    }
                }
                let event = Event::Evidence { purpose: job.purpose, result: result.map(Box::new).map_err(|e| e.to_string()) };
                let inbox_event = InboxEvent::Domain { event: Box::new(event), incident: Some(job.incident), origin: Origin::default() };
                if let Err(e) = inbox.accept(inbox_event, None).await {
                    warn!(error = %e, "cannot hand the evidence to the processor");
                }
                in_flight.finished();
            });
        }
        tasks.close();
        tasks.wait().await;
    });
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn search_answers_group_spans_into_traces() {
        let answer = json!({"data": [
            {"id": "a", "type": "spans", "attributes": {"trace_id": "111", "service": "web-shop", "resource_name": "GET /checkout",
              "start_timestamp": "2026-11-04T10:00:00.000Z", "custom": {"error": {"type": "HTTPError", "message": "502 from api"}}}},
            {"id": "b", "type": "spans", "attributes": {"trace_id": "111", "service": "api-gateway", "resource_name": "POST /orders",
              "start_timestamp": "2026-11-04T10:00:00.050Z", "custom": {"duration": 2500000000u64, "usr": {"org_id": "acme"},
              "error": {"type": "TimeoutError", "message": "db timeout"}}}},
        ], "meta": {"status": "done"}});
        let traces = traces_from_search(&answer, Some("@usr.org_id"));
        assert_eq!(traces.len(), 1);
        let t = &traces[0];
        assert_eq!(t.services, ["web-shop", "api-gateway"]);
        assert_eq!(
            (t.service.as_str(), t.error_type.as_deref(), t.customer.as_deref(), t.duration_ms),
            ("api-gateway", Some("TimeoutError"), Some("acme"), Some(2500))
        );
        assert!(t.crosses_frontend_backend());
    }

    #[test]
    fn aggregate_and_metric_answers_become_counts() {
        let agg = json!({"data": [
            {"type": "bucket", "id": "1", "attributes": {"by": {"@usr.org_id": "acme", "status": "error"}, "compute": {"c0": 40}}},
            {"type": "bucket", "id": "2", "attributes": {"by": {"@usr.org_id": "acme", "status": "ok"}, "compute": {"c0": 60}}},
            {"type": "bucket", "id": "3", "attributes": {"by": {"@usr.org_id": "globex", "status": "ok"}, "compute": {"c0": [{"time": "t", "value": 500}]}}},
        ]});
        let counts = counts_from_aggregate(&agg, "@usr.org_id");
        assert_eq!(
            counts,
            vec![
                CustomerCount { customer: "acme".into(), requests: 100, errors: 40 },
                CustomerCount { customer: "globex".into(), requests: 500, errors: 0 }
            ]
        );
        let metric = json!({"status": "ok", "series": [{"tag_set": ["customer:acme"], "pointlist": [[1.0, 10.0], [2.0, null], [3.0, 5.0]]}]});
        assert_eq!(sums_from_metric(&metric, "customer").get("acme"), Some(&15));
    }
}
