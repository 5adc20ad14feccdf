//! A local Datadog on 127.0.0.1: spans search, spans aggregate and v1 metric queries with the
//! real response shapes, over a world of services, customers and error rates, with fault
//! injection and a record of every call.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const API_KEY: &str = "sandbox-dd-api-key";
pub const APP_KEY: &str = "sandbox-dd-app-key";

/// A customer and how its requests fare.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSpec {
    pub name: String,
    pub requests_per_minute: u64,
    /// Share of this customer's requests that fail, 0 to 1.
    pub error_rate: f64,
    /// Only this service's traffic (`None`: every service's).
    pub service: Option<String>,
}

/// A backend service, the frontend that calls it, and how it fails.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub env: String,
    pub resources: Vec<String>,
    /// The frontend service whose requests reach this one (traces then cross both).
    pub frontend: Option<String>,
    /// Error types and messages, cycled through.
    pub errors: Vec<(String, String)>,
}

/// The world the sandbox answers from.
#[derive(Debug, Clone, PartialEq)]
pub struct DatadogWorld {
    pub services: Vec<ServiceSpec>,
    pub customers: Vec<CustomerSpec>,
    /// The span attribute naming the customer, e.g. `@usr.org_id`.
    pub facet: String,
}

impl DatadogWorld {
    /// `api-gateway` behind `web-shop`, with the given customers.
    pub fn api_gateway(customers: &[(&str, u64, f64)]) -> DatadogWorld {
        DatadogWorld {
            services: vec![ServiceSpec {
                name: "api-gateway".into(),
                env: "prod".into(),
                resources: vec!["POST /orders".into(), "GET /cart".into()],
                frontend: Some("web-shop".into()),
                errors: vec![
                    ("TimeoutError".into(), "upstream timed out after 2s (db pool)".into()),
                    ("PSQLException".into(), "too many connections for role \"orders\"".into()),
                ],
            }],
            customers: customers
                .iter()
                .map(|(n, rpm, rate)| CustomerSpec {
                    name: n.to_string(),
                    requests_per_minute: *rpm,
                    error_rate: *rate,
                    service: None,
                })
                .collect(),
            facet: "@usr.org_id".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum DdFault {
    /// 429 with `X-RateLimit-Reset` seconds.
    RateLimited(u64),
    Status(u16),
    Delay(Duration),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DdCall {
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub body: Value,
    pub query: Value,
    pub status: u16,
}

struct Inner {
    world: DatadogWorld,
    faults: HashMap<String, VecDeque<DdFault>>,
    calls: Vec<DdCall>,
}

#[derive(Clone)]
pub struct DatadogSandbox {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

type Shared = Arc<Mutex<Inner>>;

impl DatadogSandbox {
    pub async fn start(world: DatadogWorld) -> std::io::Result<DatadogSandbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner { world, faults: HashMap::new(), calls: Vec::new() }));
        let router = Router::new()
            .route("/api/v2/spans/events/search", post(search))
            .route("/api/v2/spans/analytics/aggregate", post(aggregate))
            .route("/api/v1/query", get(metric_query))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(DatadogSandbox { addr, inner })
    }

    /// The `DD_API_URL` to point the bot at.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("datadog sandbox lock")
    }

    pub fn set_world(&self, world: DatadogWorld) {
        self.lock().world = world;
    }

    /// The next `times` calls to `path` (e.g. `/api/v2/spans/analytics/aggregate`, or `*`) fail.
    pub fn inject(&self, path: &str, fault: DdFault, times: usize) {
        let mut inner = self.lock();
        let q = inner.faults.entry(path.to_string()).or_default();
        for _ in 0..times {
            q.push_back(fault.clone());
        }
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn calls(&self) -> Vec<DdCall> {
        self.lock().calls.clone()
    }
}

fn hash(parts: &[&str]) -> u64 {
    let d = Sha256::digest(parts.join("\u{1f}").as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Checks keys, applies faults, records the call. `Err` is the answer to send instead.
async fn gate(
    state: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &Value,
    query: Value,
) -> Result<(), Response> {
    let key = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let fault = {
        let mut inner = state.lock().expect("lock");
        inner
            .faults
            .get_mut(path)
            .and_then(VecDeque::pop_front)
            .or_else(|| inner.faults.get_mut("*").and_then(VecDeque::pop_front))
    };
    let mut status = 200u16;
    let mut answer: Option<Response> = None;
    match fault {
        Some(DdFault::Delay(d)) => tokio::time::sleep(d).await,
        Some(DdFault::RateLimited(reset)) => {
            status = 429;
            let mut r =
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"errors": ["Too many requests"]}))).into_response();
            let h = r.headers_mut();
            h.insert("x-ratelimit-limit", "300".parse().expect("digits"));
            h.insert("x-ratelimit-period", "3600".parse().expect("digits"));
            h.insert("x-ratelimit-remaining", "0".parse().expect("digits"));
            h.insert("x-ratelimit-reset", reset.to_string().parse().expect("digits"));
            answer = Some(r);
        }
        Some(DdFault::Status(code)) => {
            status = code;
            answer = Some(
                (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    axum::Json(json!({"errors": ["Internal error"]})),
                )
                    .into_response(),
            );
        }
        None => {}
    }
    if answer.is_none() && (key("dd-api-key") != API_KEY || key("dd-application-key") != APP_KEY) {
        status = 403;
        answer = Some((StatusCode::FORBIDDEN, axum::Json(json!({"errors": ["Forbidden"]}))).into_response());
    }
    state.lock().expect("lock").calls.push(DdCall {
        at: Utc::now(),
        method: method.into(),
        path: path.into(),
        body: body.clone(),
        query,
        status,
    });
    match answer {
        Some(a) => Err(a),
        None => Ok(()),
    }
}

/// `service:x env:y status:error` -> parts.
struct SpanQuery {
    service: Option<String>,
    env: Option<String>,
    errors_only: bool,
}

fn parse_query(q: &str) -> SpanQuery {
    let mut out = SpanQuery { service: None, env: None, errors_only: false };
    for term in q.split_whitespace() {
        let (k, v) = term.split_once(':').unwrap_or((term, ""));
        let v = v.trim_matches('"').to_string();
        match k {
            "service" => out.service = Some(v),
            "env" => out.env = Some(v),
            "status" => out.errors_only = v == "error",
            _ => {}
        }
    }
    out
}

fn window(filter: &Value) -> (DateTime<Utc>, DateTime<Utc>) {
    let ms = |v: &Value| v.as_str().and_then(|s| s.parse::<i64>().ok()).or_else(|| v.as_i64());
    let from = ms(&filter["from"])
        .and_then(|m| Utc.timestamp_millis_opt(m).single())
        .unwrap_or_else(|| Utc::now() - chrono::TimeDelta::minutes(15));
    let to = ms(&filter["to"]).and_then(|m| Utc.timestamp_millis_opt(m).single()).unwrap_or_else(Utc::now);
    (from, to.max(from))
}

fn minutes(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    (((to - from).num_seconds() as f64) / 60.0).ceil().max(1.0) as u64
}

fn matching<'a>(world: &'a DatadogWorld, q: &SpanQuery) -> Vec<&'a ServiceSpec> {
    world
        .services
        .iter()
        .filter(|s| q.service.as_ref().is_none_or(|n| *n == s.name) && q.env.as_ref().is_none_or(|e| *e == s.env))
        .collect()
}

async fn search(State(state): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err(r) = gate(&state, &headers, "POST", "/api/v2/spans/events/search", &body, Value::Null).await {
        return r;
    }
    let attrs = &body["data"]["attributes"];
    let q = parse_query(attrs["filter"]["query"].as_str().unwrap_or("*"));
    let (from, to) = window(&attrs["filter"]);
    let limit = attrs["page"]["limit"].as_u64().unwrap_or(10).min(1000) as usize;
    let world = state.lock().expect("lock").world.clone();
    let mins = minutes(from, to);
    let span_ms = (to - from).num_milliseconds().max(1);
    let mut spans = Vec::new();
    for service in matching(&world, &q) {
        for customer in world.customers.iter().filter(|c| c.service.as_ref().is_none_or(|s| *s == service.name)) {
            let errors = ((customer.requests_per_minute * mins) as f64 * customer.error_rate).round() as u64;
            for i in 0..errors.min(8) {
                let trace = hash(&[&service.name, &customer.name, &i.to_string()]) >> 1;
                let offset = (hash(&["t", &customer.name, &i.to_string()]) % span_ms as u64) as i64;
                let start = from + chrono::TimeDelta::milliseconds(offset);
                let (etype, emsg) = service
                    .errors
                    .get((i as usize) % service.errors.len().max(1))
                    .cloned()
                    .unwrap_or(("Error".into(), "failed".into()));
                let resource =
                    service.resources.get((i as usize) % service.resources.len().max(1)).cloned().unwrap_or_default();
                let mut custom = json!({"duration": 1_500_000_000u64 + (i * 100_000_000), "env": service.env,
                    "error": {"type": etype, "message": emsg, "stack": "..."}, "span": {"kind": "server"},
                    "http": {"status_code": "500", "method": resource.split(' ').next().unwrap_or("GET")}});
                set_path(&mut custom, &world.facet, json!(customer.name));
                let mk = |service_name: &str,
                          resource: &str,
                          start: DateTime<Utc>,
                          span_id: u64,
                          parent: &str,
                          custom: Value| {
                    json!({"id": format!("AY{span_id:x}"), "type": "spans", "attributes": {
                        "trace_id": trace.to_string(), "span_id": span_id.to_string(), "parent_id": parent,
                        "service": service_name, "resource_name": resource, "resource_hash": format!("{:x}", hash(&[resource])),
                        "env": service.env, "host": format!("{service_name}-1"),
                        "start_timestamp": start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "end_timestamp": (start + chrono::TimeDelta::milliseconds(1500)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "tags": [format!("env:{}", service.env), format!("service:{service_name}")],
                        "custom": custom, "ingestion_reason": "auto", "retained_by": "retention_filter", "single_span": false}})
                };
                if let Some(frontend) = &service.frontend {
                    let mut fc = json!({"duration": 1_600_000_000u64, "error": {"type": "HTTPError", "message": "502 Bad Gateway from api"}, "span": {"kind": "client"}});
                    set_path(&mut fc, &world.facet, json!(customer.name));
                    spans.push((
                        start,
                        mk(
                            frontend,
                            &format!("GET /{}", resource.to_lowercase().replace(' ', "-")),
                            start,
                            trace ^ 1,
                            "0",
                            fc,
                        ),
                    ));
                }
                let start2 = start + chrono::TimeDelta::milliseconds(20);
                spans.push((start2, mk(&service.name, &resource, start2, trace ^ 2, &(trace ^ 1).to_string(), custom)));
            }
        }
    }
    spans.sort_by_key(|s| std::cmp::Reverse(s.0));
    let data: Vec<Value> = spans.into_iter().take(limit).map(|(_, s)| s).collect();
    axum::Json(json!({"data": data, "meta": {"elapsed": 12, "page": {"after": null}, "request_id": "sandbox", "status": "done"}, "links": {}})).into_response()
}

fn set_path(v: &mut Value, facet: &str, value: Value) {
    let parts: Vec<&str> = facet.trim_start_matches('@').split('.').collect();
    let mut cur = v;
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*p] = value;
            return;
        }
        if !cur[*p].is_object() {
            cur[*p] = json!({});
        }
        cur = &mut cur[*p];
    }
}

async fn aggregate(State(state): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err(r) = gate(&state, &headers, "POST", "/api/v2/spans/analytics/aggregate", &body, Value::Null).await {
        return r;
    }
    let attrs = &body["data"]["attributes"];
    let q = parse_query(attrs["filter"]["query"].as_str().unwrap_or("*"));
    let (from, to) = window(&attrs["filter"]);
    let facets: Vec<String> = attrs["group_by"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["facet"].as_str().map(String::from))
        .collect();
    let world = state.lock().expect("lock").world.clone();
    let mins = minutes(from, to);
    let mut buckets = Vec::new();
    let services = matching(&world, &q);
    for customer in &world.customers {
        let served = services.iter().filter(|s| customer.service.as_ref().is_none_or(|n| *n == s.name)).count() as u64;
        let requests: u64 = served * customer.requests_per_minute * mins;
        if requests == 0 {
            continue;
        }
        let errors = (requests as f64 * customer.error_rate).round() as u64;
        for (status, n) in [("error", errors), ("ok", requests - errors)] {
            if n == 0 || (q.errors_only && status == "ok") {
                continue;
            }
            let mut by = serde_json::Map::new();
            for f in &facets {
                if f == "status" {
                    by.insert(f.clone(), json!(status));
                } else if *f == world.facet {
                    by.insert(f.clone(), json!(customer.name));
                }
            }
            buckets.push(json!({"type": "bucket", "id": format!("{:x}", hash(&[&customer.name, status])), "attributes": {"by": by, "compute": {"c0": n}}}));
        }
    }
    axum::Json(json!({"data": buckets, "meta": {"elapsed": 9, "request_id": "sandbox", "status": "done"}}))
        .into_response()
}

async fn metric_query(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let query = params.get("query").cloned().unwrap_or_default();
    if let Err(r) = gate(&state, &headers, "GET", "/api/v1/query", &Value::Null, json!(params)).await {
        return r;
    }
    let secs = |k: &str| params.get(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(from), Some(to)) = (secs("from"), secs("to")) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"errors": ["from and to are required (seconds)"]})))
            .into_response();
    };
    let world = state.lock().expect("lock").world.clone();
    // sum:<metric>{service:x,env:y[,status:error]} by {customer}.as_count()
    let scope = query.split_once('{').and_then(|(_, r)| r.split_once('}')).map(|(s, _)| s).unwrap_or_default();
    let errors_only = scope.contains("status:error");
    let service = scope.split(',').find_map(|t| t.strip_prefix("service:")).map(String::from);
    let tag = query
        .rsplit_once("by {")
        .and_then(|(_, r)| r.split_once('}'))
        .map(|(t, _)| t.to_string())
        .unwrap_or_else(|| "customer".into());
    let mins = ((to - from).max(60) / 60) as u64;
    let series: Vec<Value> = world
        .customers
        .iter()
        .filter(|c| {
            world.services.iter().any(|s| {
                service.as_ref().is_none_or(|n| *n == s.name) && c.service.as_ref().is_none_or(|cs| *cs == s.name)
            })
        })
        .map(|c| {
            let requests = c.requests_per_minute * mins;
            let value = if errors_only { (requests as f64 * c.error_rate).round() } else { requests as f64 };
            json!({"metric": query.split(':').nth(1).and_then(|m| m.split('{').next()).unwrap_or("metric"), "scope": format!("{tag}:{}", c.name),
                   "tag_set": [format!("{tag}:{}", c.name)], "pointlist": [[(to * 1000) as f64, value]], "interval": (to - from), "length": 1,
                   "start": from * 1000, "end": to * 1000, "aggr": "sum", "expression": query, "display_name": "spans", "unit": null, "query_index": 0})
        })
        .collect();
    axum::Json(json!({"status": "ok", "res_type": "time_series", "resp_version": 1, "query": query, "from_date": from * 1000, "to_date": to * 1000,
                      "series": series, "group_by": [tag], "message": "", "values": [], "times": []}))
    .into_response()
}
