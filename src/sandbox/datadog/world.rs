//! What the sandbox Datadog knows: services and the requests customers send them, turned into
//! spans the way APM records them. A request enters at its service's frontend (when it has one),
//! reaches the service, and goes on down its chain of downstream calls (a backend, a database); a
//! failing request
//! fails on every hop, and the error begins at the deepest one. Spans carry the attributes the
//! real spans API returns (modelled on `api-cassettes/v2/spans/Search-spans-returns-OK-response`):
//! decimal 64-bit trace and span ids, `parent_id` "0" at the root, ISO timestamps, `custom` with
//! `duration` in nanoseconds, `error.type` / `error.message` / `error.stack`, `http`, `version`,
//! the customer attribute, and `_dd.p.tid` (the upper half of the 128-bit trace id).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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

/// Traffic that carries no customer attribute (health checks, anonymous users, jobs).
#[derive(Debug, Clone, PartialEq)]
pub struct AnonymousSpec {
    pub service: String,
    pub requests_per_minute: u64,
    pub error_rate: f64,
}

/// A service, what is in front of it and behind it, and how it fails.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub env: String,
    pub resources: Vec<String>,
    /// The service requests enter at (a web frontend): traces start there.
    pub frontend: Option<String>,
    /// The services a request goes on to, each calling the next (a backend, then its database):
    /// failures begin at the last.
    pub downstream: Vec<String>,
    /// Error types and messages where failures begin (here, or at the last `downstream`), cycled
    /// through.
    pub errors: Vec<(String, String)>,
    /// The `error.stack` of a failure where it begins.
    pub stack: Option<String>,
    /// Versions running and the share of traffic each serves (none: the service reports none).
    pub versions: Vec<(String, f64)>,
    /// When set, failures happen on this version only (a bad deploy).
    pub bad_version: Option<String>,
    /// Cache calls the service makes per request (spans of service `cache`), to make big traces.
    pub fan_out: u32,
}

impl ServiceSpec {
    pub fn new(name: &str, env: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            env: env.into(),
            resources: vec!["GET /".into()],
            frontend: None,
            downstream: Vec::new(),
            errors: vec![("Error".into(), "failed".into())],
            stack: None,
            versions: Vec::new(),
            bad_version: None,
            fan_out: 0,
        }
    }
}

/// The world the sandbox answers from.
#[derive(Debug, Clone, PartialEq)]
pub struct DatadogWorld {
    pub services: Vec<ServiceSpec>,
    pub customers: Vec<CustomerSpec>,
    /// Traffic without the customer attribute.
    pub anonymous: Vec<AnonymousSpec>,
    /// The span attribute naming the customer, e.g. `@usr.org_id`.
    pub facet: String,
}

impl DatadogWorld {
    /// `api-gateway` behind the `web-shop` frontend, calling `orders-db`, with the given customers
    /// (name, requests per minute, error rate).
    pub fn api_gateway(customers: &[(&str, u64, f64)]) -> DatadogWorld {
        DatadogWorld {
            services: vec![ServiceSpec {
                name: "api-gateway".into(),
                env: "prod".into(),
                resources: vec!["POST /orders".into(), "GET /cart".into()],
                frontend: Some("web-shop".into()),
                downstream: vec!["orders-db".into()],
                errors: vec![
                    ("PSQLException".into(), "too many connections for role \"orders\"".into()),
                    ("TimeoutError".into(), "connection pool exhausted after 2000ms".into()),
                ],
                stack: Some(
                    "org.postgresql.util.PSQLException: too many connections for role \"orders\"\n\tat com.acme.orders.OrderRepo.reserve(OrderRepo.java:88)\n\tat com.acme.orders.OrderService.place(OrderService.java:41)"
                        .into(),
                ),
                versions: vec![("2.4.0".into(), 1.0)],
                bad_version: None,
                fan_out: 0,
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
            anonymous: Vec::new(),
            facet: "@usr.org_id".into(),
        }
    }

    /// Adds `n` quiet customers (`quiet-001`...) with a little traffic and no errors, to `service`
    /// only or (`None`) to every service.
    pub fn with_quiet_customers(mut self, n: usize, requests_per_minute: u64, service: Option<&str>) -> DatadogWorld {
        for i in 0..n {
            self.customers.push(CustomerSpec {
                name: format!("quiet-{:03}", i + 1),
                requests_per_minute,
                error_rate: 0.0,
                service: service.map(String::from),
            });
        }
        self
    }

    fn spec(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Every stream of requests: a customer's (or anonymous) traffic to one service.
    pub fn streams(&self) -> Vec<Stream> {
        let mut out = Vec::new();
        for (si, s) in self.services.iter().enumerate() {
            for c in self.customers.iter().filter(|c| c.service.as_ref().is_none_or(|n| *n == s.name)) {
                out.push(Stream {
                    service: si,
                    customer: Some(c.name.clone()),
                    rpm: c.requests_per_minute,
                    rate: c.error_rate,
                });
            }
            for a in self.anonymous.iter().filter(|a| a.service == s.name) {
                out.push(Stream { service: si, customer: None, rpm: a.requests_per_minute, rate: a.error_rate });
            }
        }
        out
    }

    /// The hops of a request to `service`: frontend, the service, downstream.
    pub fn chain(&self, service: &ServiceSpec) -> Vec<Hop> {
        let mut hops = Vec::new();
        let resource = service.resources.first().cloned().unwrap_or_else(|| "GET /".into());
        if let Some(f) = &service.frontend {
            let path = resource.split_whitespace().last().unwrap_or("/").to_string();
            hops.push(Hop { service: f.clone(), resource: format!("GET {path}"), kind: HopKind::Frontend });
        }
        hops.push(Hop { service: service.name.clone(), resource, kind: HopKind::Service });
        for (n, d) in service.downstream.iter().enumerate() {
            let last = n + 1 == service.downstream.len();
            let name = d.split('-').next().unwrap_or("rows");
            hops.push(if last {
                Hop { service: d.clone(), resource: format!("SELECT {name}"), kind: HopKind::Downstream }
            } else {
                let resource = service.resources.first().cloned().unwrap_or_else(|| "GET /".into());
                Hop { service: d.clone(), resource: format!("{resource} ({name})"), kind: HopKind::Service }
            });
        }
        hops
    }

    /// How many requests a stream sends in the window, and how many of them fail.
    pub fn volume(&self, stream: &Stream, from: DateTime<Utc>, to: DateTime<Utc>) -> (u64, u64) {
        let minutes = ((to - from).num_milliseconds().max(0) as f64 / 60_000.0).max(0.0);
        let requests = (stream.rpm as f64 * minutes).round() as u64;
        (requests, (requests as f64 * stream.rate).round() as u64)
    }

    /// The versions of a hop's service, with traffic shares (empty: none reported).
    pub fn versions_of(&self, service: &str) -> Vec<(String, f64)> {
        self.spec(service).map(|s| s.versions.clone()).unwrap_or_default()
    }

    pub fn bad_version_of(&self, service: &str) -> Option<String> {
        self.spec(service).and_then(|s| s.bad_version.clone())
    }

    /// The spans of request `i` of `stream` (in the window `from..to`), root first.
    pub fn request_spans(
        &self,
        streams: &[Stream],
        stream: usize,
        i: u64,
        failing: bool,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Value> {
        let st = &streams[stream];
        let service = &self.services[st.service];
        let (requests, _) = self.volume(st, from, to);
        let step = (to - from).num_milliseconds().max(1) as f64 / requests.max(1) as f64;
        let start = from + TimeDelta::milliseconds(((i as f64 + 0.5) * step) as i64);
        let key = format!("{}/{}/{}", service.name, st.customer.as_deref().unwrap_or("-"), i);
        let trace = hash(&[&key]) >> 1;
        let high = format!("{:08x}00000000", start.timestamp() as u32);
        let hops = self.chain(service);
        let (etype, emsg) = service
            .errors
            .get(i as usize % service.errors.len().max(1))
            .cloned()
            .unwrap_or(("Error".into(), "failed".into()));
        let total_ms = 120 + (hash(&[&key, "ms"]) % 900) + if failing { 1500 } else { 0 };
        let mut out = Vec::new();
        let mut parent = "0".to_string();
        for (depth, hop) in hops.iter().enumerate() {
            let span_id = (hash(&[&key, &hop.service]) >> 1).to_string();
            let hop_start = start + TimeDelta::milliseconds(depth as i64 * 15);
            let hop_ms = total_ms.saturating_sub(depth as u64 * 30);
            let versions = self.versions_of(&hop.service);
            let version = if failing && let Some(bad) = self.bad_version_of(&hop.service) {
                Some(bad)
            } else {
                pick_version(&versions, hash(&[&key, "v"]))
            };
            let origin = depth == hops.len() - 1;
            let mut custom = json!({
                "duration": hop_ms * 1_000_000,
                "env": service.env,
                "span": {"kind": if hop.kind == HopKind::Downstream { "client" } else { "server" }},
                "_dd": {"p": {"tid": high}},
            });
            if hop.kind != HopKind::Downstream {
                let method = hop.resource.split_whitespace().next().unwrap_or("GET");
                let code = if failing { if hop.kind == HopKind::Frontend { "502" } else { "500" } } else { "200" };
                custom["http"] =
                    json!({"method": method, "status_code": code, "route": hop.resource.split_whitespace().last()});
            } else {
                custom["db"] = json!({"system": "postgresql", "statement": hop.resource});
            }
            if let Some(v) = &version {
                custom["version"] = json!(v);
            }
            if let Some(c) = &st.customer {
                set_path(&mut custom, &self.facet, json!(c));
            }
            if failing {
                custom["error"] = if origin {
                    let mut e = json!({"type": etype, "message": emsg});
                    if let Some(stack) = &service.stack {
                        e["stack"] = json!(stack);
                    }
                    e
                } else {
                    let below = &hops[depth + 1].service;
                    match hop.kind {
                        HopKind::Frontend => {
                            json!({"type": "HTTPError", "message": format!("502 Bad Gateway from {below}")})
                        }
                        _ => json!({"type": "UpstreamError", "message": format!("{below} failed: {etype}")}),
                    }
                };
            }
            let mut tags =
                vec![format!("env:{}", service.env), format!("service:{}", hop.service), "source:apm".to_string()];
            if let Some(v) = &version {
                tags.push(format!("version:{v}"));
            }
            out.push(json!({
                "id": format!("AY{:x}", hash(&[&key, &hop.service, "id"]) >> 8),
                "type": "spans",
                "attributes": {
                    "custom": custom,
                    "end_timestamp": iso(hop_start + TimeDelta::milliseconds(hop_ms as i64)),
                    "env": service.env,
                    "host": format!("{}-{}", hop.service, 1 + hash(&[&key, "host"]) % 3),
                    "ingestion_reason": "auto",
                    "parent_id": parent,
                    "resource_hash": format!("{:016x}", hash(&[&hop.resource])),
                    "resource_name": hop.resource,
                    "retained_by": "retention_filter",
                    "service": hop.service,
                    "single_span": false,
                    "span_id": span_id,
                    "start_timestamp": iso(hop_start),
                    "tags": tags,
                    "trace_id": trace.to_string(),
                    "type": match hop.kind { HopKind::Downstream => "sql", _ => "web" },
                },
            }));
            if hop.kind == HopKind::Service {
                for n in 0..service.fan_out {
                    let id = (hash(&[&key, "cache", &n.to_string()]) >> 1).to_string();
                    let at = hop_start + TimeDelta::milliseconds(1 + n as i64 % 10);
                    out.push(json!({
                        "id": format!("AY{:x}", hash(&[&key, "cache-id", &n.to_string()]) >> 8),
                        "type": "spans",
                        "attributes": {
                            "custom": {"duration": 200_000, "env": service.env, "span": {"kind": "client"}},
                            "end_timestamp": iso(at), "env": service.env, "host": "cache-1",
                            "ingestion_reason": "auto", "parent_id": span_id, "resource_hash": "0f1e2d3c4b5a6978",
                            "resource_name": "GET key", "retained_by": "retention_filter", "service": "cache",
                            "single_span": false, "span_id": id, "start_timestamp": iso(at),
                            "tags": [format!("env:{}", service.env), "service:cache"], "trace_id": trace.to_string(), "type": "cache",
                        },
                    }));
                }
            }
            parent = span_id;
        }
        out
    }
}

/// A stream of requests: one customer's (or anonymous) traffic to one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Index into `DatadogWorld::services`.
    pub service: usize,
    pub customer: Option<String>,
    pub rpm: u64,
    pub rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopKind {
    Frontend,
    Service,
    Downstream,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    pub service: String,
    pub resource: String,
    pub kind: HopKind,
}

/// Which of `n` requests fail when `failing` of them do: spread evenly.
pub fn failing_index(k: u64, failing: u64, requests: u64) -> u64 {
    (k * requests).checked_div(failing).unwrap_or(0)
}

fn pick_version(versions: &[(String, f64)], h: u64) -> Option<String> {
    if versions.is_empty() {
        return None;
    }
    let total: f64 = versions.iter().map(|(_, s)| s).sum();
    let mut x = (h % 10_000) as f64 / 10_000.0 * total;
    for (v, share) in versions {
        if x < *share {
            return Some(v.clone());
        }
        x -= share;
    }
    versions.last().map(|(v, _)| v.clone())
}

/// Splits `n` by shares, rounding so the parts add up to `n`.
pub fn split(n: u64, shares: &[(String, f64)]) -> Vec<(String, u64)> {
    let total: f64 = shares.iter().map(|(_, s)| s).sum();
    let mut out = Vec::new();
    let mut left = n;
    for (i, (name, share)) in shares.iter().enumerate() {
        let part = if i + 1 == shares.len() {
            left
        } else {
            ((n as f64 * share / total.max(f64::MIN_POSITIVE)).round() as u64).min(left)
        };
        left -= part;
        out.push((name.clone(), part));
    }
    out
}

pub fn hash(parts: &[&str]) -> u64 {
    let d = Sha256::digest(parts.join("\u{1f}").as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Sets a dotted attribute path (`@usr.org_id`) in a span's custom attributes.
pub fn set_path(v: &mut Value, facet: &str, value: Value) {
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
