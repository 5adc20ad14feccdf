//! A local Datadog on 127.0.0.1 that answers as the real API does: spans search (POST and the GET
//! list), spans aggregate and v1 metric queries, in the wire formats of the recorded cassettes
//! (`datadog/api-cassettes/v2/spans/` in the reference folder) and the OpenAPI spec.
//!
//! What it holds to, because the real API does: a search returns only the spans its query
//! matches (a `service:` query gives that service's spans, never the rest of their traces; a
//! `trace_id:` query gives every span of those traces); an aggregation honours every `group_by`
//! entry's `limit`, `missing`, `sort` and `total` (spans without a facet are left out unless
//! `missing` names them); both keys are required (403); a malformed body is a 400 with the
//! reason; a window whose `from` is after its `to` is the recorded 422; and the spans endpoints
//! share one hourly budget (300 by default), past which they answer 429 with the
//! `X-RateLimit-*` headers (sent on every spans answer).

pub mod query;
pub mod world;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::{Value, json};

pub use self::query::Query;
pub use self::world::{AnonymousSpec, CustomerSpec, DatadogWorld, ServiceSpec};
use self::world::{failing_index, hash, split};

pub const API_KEY: &str = "sandbox-dd-api-key";
pub const APP_KEY: &str = "sandbox-dd-app-key";
/// "This endpoint is rate limited to 300 requests per hour", shared by the spans endpoints.
pub const SPANS_PER_HOUR: usize = 300;
/// Requests of one stream a search looks through, newest first (the sandbox's own limit).
const SCAN_PER_STREAM: u64 = 20_000;

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

/// A trace a search answered with: request `request` of stream `stream` in the window `from..to`.
#[derive(Debug, Clone, Copy)]
struct HandedOut {
    stream: usize,
    request: u64,
    failing: bool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

struct Inner {
    world: DatadogWorld,
    faults: HashMap<String, VecDeque<DdFault>>,
    calls: Vec<DdCall>,
    /// When each spans request of the last hour arrived.
    spans_requests: VecDeque<Instant>,
    spans_per_hour: usize,
    /// Traces handed out by searches, so a lookup by trace id finds the whole trace.
    traces: HashMap<String, HandedOut>,
}

#[derive(Clone)]
pub struct DatadogSandbox {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

type Shared = Arc<Mutex<Inner>>;

impl DatadogSandbox {
    pub async fn start(world: DatadogWorld) -> std::io::Result<DatadogSandbox> {
        // Clients built next to it (tests, the demo) need a TLS provider installed.
        crate::tls::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            world,
            faults: HashMap::new(),
            calls: Vec::new(),
            spans_requests: VecDeque::new(),
            spans_per_hour: SPANS_PER_HOUR,
            traces: HashMap::new(),
        }));
        let router = Router::new()
            .route("/api/v2/spans/events/search", post(search))
            .route("/api/v2/spans/events", get(list))
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

    /// The spans endpoints' shared hourly budget (Datadog's is 300).
    pub fn set_spans_per_hour(&self, n: usize) {
        self.lock().spans_per_hour = n;
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

/// A JSON:API error answer, as recorded (`{"errors": [{"title", "detail"}]}`).
fn error(status: StatusCode, title: &str, detail: impl Into<String>) -> Response {
    let detail = detail.into();
    (status, axum::Json(json!({"errors": [{"title": title, "detail": detail}]}))).into_response()
}

fn bad_request(detail: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "Bad Request", detail)
}

/// Rate-limit headers as Datadog sends them on its rate-limited endpoints.
fn limit_headers(resp: &mut Response, limit: usize, remaining: usize, reset: u64) {
    let h = resp.headers_mut();
    let num = |n: u64| HeaderValue::from_str(&n.to_string()).expect("digits are a header value");
    h.insert("x-ratelimit-limit", num(limit as u64));
    h.insert("x-ratelimit-period", num(3600));
    h.insert("x-ratelimit-remaining", num(remaining as u64));
    h.insert("x-ratelimit-reset", num(reset));
    h.insert("x-ratelimit-name", HeaderValue::from_static("spans"));
}

/// Checks keys, applies faults and the spans budget, records the call. `Err` is the answer to
/// send instead; `Ok` carries the rate-limit headers' values for a spans answer.
async fn gate(
    state: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &Value,
    query: Value,
) -> Result<Option<(usize, usize, u64)>, Response> {
    let key = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let spans = path.starts_with("/api/v2/spans/");
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
    let mut limits = None;
    match fault {
        Some(DdFault::Delay(d)) => tokio::time::sleep(d).await,
        Some(DdFault::RateLimited(reset)) => {
            status = 429;
            let mut r =
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"errors": ["Too many requests"]}))).into_response();
            limit_headers(&mut r, SPANS_PER_HOUR, 0, reset);
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
    if answer.is_none() && spans {
        let mut inner = state.lock().expect("lock");
        let now = Instant::now();
        while inner.spans_requests.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600)) {
            inner.spans_requests.pop_front();
        }
        let limit = inner.spans_per_hour;
        let reset = inner
            .spans_requests
            .front()
            .map(|t| 3600u64.saturating_sub(now.duration_since(*t).as_secs()))
            .unwrap_or(3600);
        if inner.spans_requests.len() >= limit {
            status = 429;
            let mut r =
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"errors": ["Too many requests"]}))).into_response();
            limit_headers(&mut r, limit, 0, reset);
            answer = Some(r);
        } else {
            inner.spans_requests.push_back(now);
            limits = Some((limit, limit - inner.spans_requests.len(), reset));
        }
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
        None => Ok(limits),
    }
}

/// The answer to a JSON POST so far: its body (or why it is not JSON) and the rate-limit headers,
/// once keys, faults and the budget let it through.
type Posted = (Result<Value, serde_json::Error>, Option<(usize, usize, u64)>);

async fn gate_post(state: &Shared, headers: &HeaderMap, path: &str, body: &[u8]) -> Result<Posted, Response> {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let limits = gate(state, headers, "POST", path, parsed.as_ref().unwrap_or(&Value::Null), Value::Null).await?;
    Ok((parsed, limits))
}

fn with_limits(mut resp: Response, limits: Option<(usize, usize, u64)>) -> Response {
    if let Some((limit, remaining, reset)) = limits {
        limit_headers(&mut resp, limit, remaining, reset);
    }
    resp
}

/// A time bound: epoch milliseconds (number or string), ISO 8601, or date math (`now`, `now-15m`).
fn time_bound(v: &Value, default: &str) -> Result<DateTime<Utc>, String> {
    let text = match v {
        Value::Null => default.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("`{other}` is not a time")),
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Utc.timestamp_millis_opt(ms).single().ok_or_else(|| format!("`{text}` is out of range"));
    }
    if let Some(rest) = text.strip_prefix("now") {
        let now = Utc::now();
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, amount) = rest.split_at(1);
        let unit = amount.chars().last().ok_or("empty date math")?;
        let n: i64 = amount[..amount.len() - 1].parse().map_err(|_| format!("`{text}` is not date math"))?;
        let delta = match unit {
            's' => TimeDelta::seconds(n),
            'm' => TimeDelta::minutes(n),
            'h' => TimeDelta::hours(n),
            'd' => TimeDelta::days(n),
            'w' => TimeDelta::weeks(n),
            _ => return Err(format!("`{text}` is not date math")),
        };
        return match sign {
            "-" => Ok(now - delta),
            "+" => Ok(now + delta),
            _ => Err(format!("`{text}` is not date math")),
        };
    }
    DateTime::parse_from_rfc3339(&text).map(|t| t.to_utc()).map_err(|_| format!("`{text}` is not a time"))
}

/// The window of a `filter` (defaults `now-15m` to `now`), or the answer refusing it: a `from`
/// after `to` gets the recorded 422.
fn window(filter: &Value) -> Result<(DateTime<Utc>, DateTime<Utc>), Box<Response>> {
    let from = time_bound(&filter["from"], "now-15m").map_err(|e| Box::new(bad_request(e)))?;
    let to = time_bound(&filter["to"], "now").map_err(|e| Box::new(bad_request(e)))?;
    if from > to {
        return Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Generic Error",
            "invalid_argument(Field 'filter.from,to' is invalid: 'from' should be anterior to 'to')",
        )));
    }
    Ok((from, to))
}

/// A search request's parts, from the POST body or the GET list's parameters.
struct SearchRequest {
    query: String,
    filter: Value,
    sort: String,
    limit: usize,
    offset: usize,
}

async fn search(State(state): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (parsed, limits) = match gate_post(&state, &headers, "/api/v2/spans/events/search", &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body = match parsed {
        Ok(v) if v.is_object() => v,
        Ok(_) => return bad_request("the body must be a JSON object"),
        Err(e) => return bad_request(format!("malformed JSON: {e}")),
    };
    if !body["data"].is_object() && !body["data"].is_null() {
        return bad_request("`data` must be an object");
    }
    let attrs = &body["data"]["attributes"];
    let limit = match attrs["page"]["limit"].as_u64() {
        None if attrs["page"]["limit"].is_null() => 10,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        _ => return bad_request("page.limit must be between 1 and 1000"),
    };
    let offset = match attrs["page"]["cursor"].as_str() {
        Some(c) => match decode_cursor(c) {
            Some(o) => o,
            None => return bad_request("page.cursor is not a cursor this API returned"),
        },
        None => 0,
    };
    let request = SearchRequest {
        query: attrs["filter"]["query"].as_str().unwrap_or("*").to_string(),
        filter: attrs["filter"].clone(),
        sort: attrs["sort"].as_str().unwrap_or("timestamp").to_string(),
        limit,
        offset,
    };
    with_limits(run_search(&state, request, true), limits)
}

async fn list(
    State(state): State<Shared>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Response {
    let limits = match gate(&state, &headers, "GET", "/api/v2/spans/events", &Value::Null, json!(params)).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let limit = match params.get("page[limit]").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return bad_request("page[limit] must be between 1 and 1000"),
    };
    let offset = match params.get("page[cursor]") {
        Some(c) => match decode_cursor(c) {
            Some(o) => o,
            None => return bad_request("page[cursor] is not a cursor this API returned"),
        },
        None => 0,
    };
    let request = SearchRequest {
        query: params.get("filter[query]").cloned().unwrap_or_else(|| "*".into()),
        filter: json!({"from": params.get("filter[from]"), "to": params.get("filter[to]")}),
        sort: params.get("sort").cloned().unwrap_or_else(|| "timestamp".into()),
        limit,
        offset,
    };
    with_limits(run_search(&state, request, false), limits)
}

/// An opaque cursor (Datadog's are base64 JSON; this one is hex JSON of the next offset).
fn encode_cursor(offset: usize) -> String {
    json!({"after": offset}).to_string().bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| cursor.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    let v: Value = serde_json::from_slice(&bytes?).ok()?;
    v["after"].as_u64().map(|n| n as usize)
}

fn run_search(state: &Shared, req: SearchRequest, posted: bool) -> Response {
    let query = match Query::parse(&req.query) {
        Ok(q) => q,
        Err(e) => return bad_request(format!("invalid query: {e}")),
    };
    let descending = match req.sort.as_str() {
        "timestamp" => false,
        "-timestamp" => true,
        other => return bad_request(format!("sort must be `timestamp` or `-timestamp`, not `{other}`")),
    };
    let (from, to) = match window(&req.filter) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let started = Instant::now();
    let mut inner = state.lock().expect("lock");
    let world = inner.world.clone();
    let streams = world.streams();
    let wanted = req.offset + req.limit;
    let mut found: Vec<Value> = Vec::new();
    let ids = query.values_of("trace_id");
    if !ids.is_empty() {
        // A lookup by trace id: every span of those traces (the window is the traces' own).
        for id in &ids {
            if let Some(h) = inner.traces.get(id).copied()
                && h.stream < streams.len()
            {
                found.extend(
                    world.request_spans(&streams, h.stream, h.request, h.failing, h.from, h.to).into_iter().filter(
                        |s| {
                            let at = start_of(s);
                            at >= world::iso(from) && at <= world::iso(to) && query.matches(&s["attributes"])
                        },
                    ),
                );
            }
        }
    } else {
        // Every stream's requests, newest first, until each has given enough matches.
        let errors_only = query.matches_only_errors();
        for (si, stream) in streams.iter().enumerate() {
            let service = &world.services[stream.service];
            if !world.chain(service).iter().any(|hop| query.may_match_service(&hop.service)) {
                continue;
            }
            let (requests, failing) = world.volume(stream, from, to);
            let candidates: Box<dyn Iterator<Item = (u64, bool)>> = if errors_only {
                Box::new((0..failing).rev().map(|k| (failing_index(k, failing, requests), true)))
            } else {
                let failing_set: std::collections::HashSet<u64> =
                    (0..failing).map(|k| failing_index(k, failing, requests)).collect();
                Box::new((0..requests).rev().map(move |i| (i, failing_set.contains(&i))))
            };
            let mut matched = 0;
            for (i, fails) in candidates.take(SCAN_PER_STREAM as usize) {
                for s in world.request_spans(&streams, si, i, fails, from, to) {
                    if query.matches(&s["attributes"]) {
                        let id = s["attributes"]["trace_id"].as_str().unwrap_or_default().to_string();
                        inner.traces.insert(id, HandedOut { stream: si, request: i, failing: fails, from, to });
                        found.push(s);
                        matched += 1;
                    }
                }
                // One more than the page needs tells whether another page follows.
                if matched > wanted {
                    break;
                }
            }
        }
    }
    found.sort_by(|a, b| start_of(a).cmp(&start_of(b)).then_with(|| a["id"].as_str().cmp(&b["id"].as_str())));
    if descending {
        found.reverse();
    }
    let more = found.len() > wanted;
    let page: Vec<Value> = found.into_iter().skip(req.offset).take(req.limit).collect();
    if page.is_empty() && req.offset > 0 {
        // The recorded last page carries only `data`.
        return axum::Json(json!({"data": []})).into_response();
    }
    let mut meta = json!({"elapsed": started.elapsed().as_millis() as u64 + 7, "request_id": request_id(&req.query), "status": "done"});
    let mut answer = json!({"data": page});
    if more {
        let cursor = encode_cursor(wanted);
        meta["page"] = json!({"after": cursor});
        let next = url::Url::parse_with_params(
            "https://api.datadoghq.com/api/v2/spans/events",
            &[
                ("filter[from]", from.timestamp_millis().to_string()),
                ("filter[query]", req.query.clone()),
                ("filter[to]", to.timestamp_millis().to_string()),
                ("page[cursor]", cursor),
                ("page[limit]", req.limit.to_string()),
                ("sort", req.sort.clone()),
            ],
        )
        .map(|u| u.to_string())
        .unwrap_or_default();
        answer["links"] = json!({"next": next});
    }
    answer["meta"] = meta;
    let _ = posted;
    axum::Json(answer).into_response()
}

fn start_of(span: &Value) -> String {
    span["attributes"]["start_timestamp"].as_str().unwrap_or_default().to_string()
}

fn request_id(seed: &str) -> String {
    format!("pddv1ChZ{:016x}", hash(&[seed, &Utc::now().timestamp_nanos_opt().unwrap_or(0).to_string()]))
}

/// One group-by level, as the request gave it.
struct Grouping {
    facet: String,
    limit: usize,
    missing: Option<Value>,
    total: Option<Value>,
    by_count: bool,
    descending: bool,
}

/// A class of spans that share every attribute an aggregation can look at, and how many there are.
struct Class {
    attributes: Value,
    count: u64,
}

/// Every span in the window as classes: per stream, hop, version and status.
fn classes(world: &DatadogWorld, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Class> {
    let mut out = Vec::new();
    for stream in world.streams() {
        let service = &world.services[stream.service];
        let (requests, failing) = world.volume(&stream, from, to);
        for hop in world.chain(service) {
            let versions = world.versions_of(&hop.service);
            let bad = world.bad_version_of(&hop.service);
            let parts: Vec<(Option<String>, u64, u64)> = if versions.is_empty() {
                vec![(None, requests - failing, failing)]
            } else {
                let ok = split(requests - failing, &versions);
                let errors: Vec<(String, u64)> = match &bad {
                    Some(b) => versions.iter().map(|(v, _)| (v.clone(), if v == b { failing } else { 0 })).collect(),
                    None => split(failing, &versions),
                };
                ok.into_iter().zip(errors).map(|((v, o), (_, e))| (Some(v), o, e)).collect()
            };
            for (version, ok, errors) in parts {
                for (status, count) in [("ok", ok), ("error", errors)] {
                    if count == 0 {
                        continue;
                    }
                    let mut custom = json!({"env": service.env});
                    if status == "error" {
                        custom["error"] = json!({"type": "Error"});
                    }
                    if let Some(v) = &version {
                        custom["version"] = json!(v);
                    }
                    if let Some(c) = &stream.customer {
                        world::set_path(&mut custom, &world.facet, json!(c));
                    }
                    let mut attributes = json!({"service": hop.service, "env": service.env, "resource_name": hop.resource, "custom": custom});
                    if let Some(v) = &version {
                        attributes["version"] = json!(v);
                    }
                    out.push(Class { attributes, count });
                }
            }
        }
    }
    out
}

fn facet_value(attributes: &Value, facet: &str) -> Option<String> {
    if facet == "status" {
        return Some(query::status_of(attributes).to_string());
    }
    query::value_of(attributes, facet)
}

fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Groups `classes` level by level into buckets (`by` values and their count).
fn group(classes: &[&Class], levels: &[Grouping], by: serde_json::Map<String, Value>, out: &mut Vec<(Value, u64)>) {
    let Some((level, rest)) = levels.split_first() else {
        out.push((Value::Object(by), classes.iter().map(|c| c.count).sum()));
        return;
    };
    let mut values: BTreeMap<String, (Value, Vec<&Class>)> = BTreeMap::new();
    for c in classes {
        let key = match facet_value(&c.attributes, &level.facet) {
            Some(v) => json!(v),
            None => match &level.missing {
                Some(m) => m.clone(),
                None => continue,
            },
        };
        values.entry(key_text(&key)).or_insert_with(|| (key, Vec::new())).1.push(c);
    }
    let mut keys: Vec<(String, Value, Vec<&Class>, u64)> = values
        .into_iter()
        .map(|(k, (v, cs))| {
            let n = cs.iter().map(|c| c.count).sum();
            (k, v, cs, n)
        })
        .collect();
    if level.by_count {
        keys.sort_by(|a, b| a.3.cmp(&b.3).then_with(|| b.0.cmp(&a.0)));
    } else {
        keys.sort_by(|a, b| a.0.cmp(&b.0));
    }
    if level.descending {
        keys.reverse();
    }
    for (_, value, cs, _) in keys.into_iter().take(level.limit) {
        let mut by = by.clone();
        by.insert(level.facet.clone(), value);
        group(&cs, rest, by, out);
    }
    if let Some(total) = &level.total {
        let key = match total {
            Value::Bool(true) => json!("__total__"),
            Value::Bool(false) => return,
            other => other.clone(),
        };
        let mut by = by.clone();
        by.insert(level.facet.clone(), key);
        group(classes, rest, by, out);
    }
}

fn interval(text: &str) -> Option<TimeDelta> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(TimeDelta::milliseconds(ms));
    }
    let (n, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: i64 = n.parse().ok()?;
    Some(match unit {
        "s" => TimeDelta::seconds(n),
        "m" => TimeDelta::minutes(n),
        "h" => TimeDelta::hours(n),
        "d" => TimeDelta::days(n),
        _ => return None,
    })
}

async fn aggregate(State(state): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (parsed, limits) = match gate_post(&state, &headers, "/api/v2/spans/analytics/aggregate", &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body = match parsed {
        Ok(v) if v["data"].is_object() => v,
        Ok(_) => {
            return bad_request(
                "the body must be {\"data\": {\"type\": \"aggregate_request\", \"attributes\": {...}}}",
            );
        }
        Err(e) => return bad_request(format!("malformed JSON: {e}")),
    };
    let attrs = &body["data"]["attributes"];
    let query = match Query::parse(attrs["filter"]["query"].as_str().unwrap_or("*")) {
        Ok(q) => q,
        Err(e) => return bad_request(format!("invalid query: {e}")),
    };
    let (from, to) = match window(&attrs["filter"]) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let computes: Vec<&Value> = match &attrs["compute"] {
        Value::Null => Vec::new(),
        Value::Array(c) => c.iter().collect(),
        _ => return bad_request("compute must be a list"),
    };
    for c in &computes {
        if c["aggregation"].as_str() != Some("count") {
            return bad_request(format!(
                "aggregation `{}` is not supported here (the sandbox counts)",
                c["aggregation"]
            ));
        }
        if c["type"].as_str() == Some("timeseries") && c["interval"].as_str().and_then(interval).is_none() {
            return bad_request("a timeseries compute needs an interval such as `5m`");
        }
    }
    let mut levels = Vec::new();
    let mut product: u64 = 1;
    for g in attrs["group_by"].as_array().into_iter().flatten() {
        let Some(facet) = g["facet"].as_str() else { return bad_request("every group_by needs a facet") };
        let limit = match &g["limit"] {
            Value::Null => 10,
            v => match v.as_u64() {
                Some(n) if n >= 1 => n,
                _ => return bad_request(format!("group_by limit for `{facet}` must be a positive number")),
            },
        };
        product = product.saturating_mul(limit);
        let sort = &g["sort"];
        let by_count = sort["type"].as_str() == Some("measure")
            || (sort.is_object() && sort["type"].is_null() && sort["aggregation"].is_string());
        levels.push(Grouping {
            facet: facet.to_string(),
            limit: limit as usize,
            missing: (!g["missing"].is_null()).then(|| g["missing"].clone()),
            total: (!g["total"].is_null()).then(|| g["total"].clone()),
            by_count,
            descending: sort["order"].as_str() == Some("desc"),
        });
    }
    if product > 10_000 {
        return bad_request("the product of the group_by limits must not exceed 10000");
    }
    let started = Instant::now();
    let world = state.lock().expect("lock").world.clone();
    let all = classes(&world, from, to);
    let matching: Vec<&Class> = all.iter().filter(|c| query.matches(&c.attributes)).collect();
    let mut buckets = Vec::new();
    group(&matching, &levels, serde_json::Map::new(), &mut buckets);
    let data: Vec<Value> = buckets
        .into_iter()
        .map(|(by, n)| {
            let mut compute = serde_json::Map::new();
            for (i, c) in computes.iter().enumerate() {
                let value = if c["type"].as_str() == Some("timeseries") {
                    let step = c["interval"].as_str().and_then(interval).unwrap_or(TimeDelta::minutes(5));
                    let step_ms = step.num_milliseconds().max(1);
                    let first = from.timestamp_millis() / step_ms * step_ms;
                    let points: Vec<i64> =
                        (0..).map(|k| first + k * step_ms).take_while(|t| *t < to.timestamp_millis()).collect();
                    let each = n / points.len().max(1) as u64;
                    let extra = n - each * points.len() as u64;
                    json!(
                        points
                            .iter()
                            .enumerate()
                            .map(|(k, t)| json!({
                                "time": world::iso(Utc.timestamp_millis_opt(*t).single().unwrap_or(from)),
                                "value": each + u64::from((k as u64) < extra),
                            }))
                            .collect::<Vec<_>>()
                    )
                } else {
                    json!(n)
                };
                compute.insert(format!("c{i}"), value);
            }
            json!({"type": "bucket", "id": uuid_like(&by.to_string()), "attributes": {"compute": compute, "by": by}})
        })
        .collect();
    let meta = json!({"elapsed": started.elapsed().as_millis() as u64 + 9, "request_id": request_id("aggregate"), "status": "done"});
    with_limits(axum::Json(json!({"data": data, "meta": meta})).into_response(), limits)
}

fn uuid_like(seed: &str) -> String {
    let h = format!("{:016x}{:016x}", hash(&[seed, "a"]), hash(&[seed, "b"]));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

async fn metric_query(
    State(state): State<Shared>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
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
    // sum:<metric>{service:x,env:y[,status:error]} by {customer[,status]}.as_count()
    let scope = query.split_once('{').and_then(|(_, r)| r.split_once('}')).map(|(s, _)| s).unwrap_or_default();
    let service = scope.split(',').find_map(|t| t.strip_prefix("service:")).map(String::from);
    let errors_only = scope.contains("status:error");
    let tags: Vec<String> = query
        .rsplit_once("by {")
        .and_then(|(_, r)| r.split_once('}'))
        .map(|(t, _)| t.split(',').map(|t| t.trim().to_string()).collect())
        .unwrap_or_else(|| vec!["customer".into()]);
    let (from_t, to_t) = (
        Utc.timestamp_opt(from, 0).single().unwrap_or_default(),
        Utc.timestamp_opt(to, 0).single().unwrap_or_default(),
    );
    let mut groups: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for stream in world.streams() {
        let s = &world.services[stream.service];
        if service.as_ref().is_some_and(|n| *n != s.name) {
            continue;
        }
        let (requests, failing) = world.volume(&stream, from_t, to_t);
        for (status, n) in [("ok", requests - failing), ("error", failing)] {
            if errors_only && status == "ok" {
                continue;
            }
            let mut set = Vec::new();
            for tag in &tags {
                match tag.as_str() {
                    "status" => set.push(format!("status:{status}")),
                    "customer" | "org" | "org_id" => {
                        if let Some(c) = &stream.customer {
                            set.push(format!("{tag}:{c}"));
                        }
                    }
                    _ => {}
                }
            }
            *groups.entry(set).or_default() += n as f64;
        }
    }
    let metric = query.split(':').nth(1).and_then(|m| m.split('{').next()).unwrap_or("metric").to_string();
    let series: Vec<Value> = groups
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(set, value)| {
            json!({"metric": metric, "scope": set.join(","), "tag_set": set, "pointlist": [[(to * 1000) as f64, value]],
                   "interval": (to - from), "length": 1, "start": from * 1000, "end": to * 1000, "aggr": "sum",
                   "expression": query, "display_name": metric, "unit": null, "query_index": 0, "attributes": {}})
        })
        .collect();
    axum::Json(json!({"status": "ok", "res_type": "time_series", "resp_version": 1, "query": query, "from_date": from * 1000, "to_date": to * 1000,
                      "series": series, "group_by": tags, "message": "", "values": [], "times": []}))
    .into_response()
}
