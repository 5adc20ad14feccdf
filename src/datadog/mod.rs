//! The Datadog API client (reqwest): site-aware URLs, keys that never print, timeouts, typed
//! errors, the spans APIs' shared request budget (300 per hour per organisation) and a short cache
//! so that folds and refreshes of one incident do not ask again.

pub mod evidence;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// "This endpoint is rate limited to 300 requests per hour" (spans search, list, aggregate).
pub const SPANS_REQUESTS_PER_HOUR: u32 = 300;
/// How long an answer is reused for the same query (folds and refreshes within it do not ask again).
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Longest wait for one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A Datadog site: where the API lives and where people open links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub api_base: String,
    pub app_base: String,
}

impl Site {
    /// Every Datadog site as its documentation lists it (`DD_SITE`), with its API host and the
    /// host people open links on.
    pub const ALL: [(&'static str, &'static str, &'static str); 9] = [
        ("datadoghq.com", "https://api.datadoghq.com", "https://app.datadoghq.com"),
        ("us3.datadoghq.com", "https://api.us3.datadoghq.com", "https://us3.datadoghq.com"),
        ("us5.datadoghq.com", "https://api.us5.datadoghq.com", "https://us5.datadoghq.com"),
        ("datadoghq.eu", "https://api.datadoghq.eu", "https://app.datadoghq.eu"),
        ("ap1.datadoghq.com", "https://api.ap1.datadoghq.com", "https://ap1.datadoghq.com"),
        ("ap2.datadoghq.com", "https://api.ap2.datadoghq.com", "https://ap2.datadoghq.com"),
        ("uk1.datadoghq.com", "https://api.uk1.datadoghq.com", "https://uk1.datadoghq.com"),
        ("ddog-gov.com", "https://api.ddog-gov.com", "https://app.ddog-gov.com"),
        ("us2.ddog-gov.com", "https://api.us2.ddog-gov.com", "https://us2.ddog-gov.com"),
    ];

    /// Sites by their `DD_SITE` name (or the host people use, `app.datadoghq.com`, or the short
    /// names `us1`, `eu`, `gov`...); `api_url` (from `DD_API_URL`) overrides the API base.
    pub fn resolve(site: &str, api_url: Option<&str>) -> Result<Site, String> {
        let name = site.trim().trim_start_matches("https://").trim_end_matches('/').to_ascii_lowercase();
        let name = match name.as_str() {
            "" | "us1" | "app.datadoghq.com" => "datadoghq.com".to_string(),
            "eu" | "eu1" | "app.datadoghq.eu" => "datadoghq.eu".to_string(),
            "gov" | "us1-fed" | "app.ddog-gov.com" => "ddog-gov.com".to_string(),
            "us2-fed" => "us2.ddog-gov.com".to_string(),
            short @ ("us3" | "us5" | "ap1" | "ap2" | "uk1") => format!("{short}.datadoghq.com"),
            other => other.to_string(),
        };
        let Some((_, api, app)) = Site::ALL.iter().find(|(n, _, _)| *n == name) else {
            let names: Vec<&str> = Site::ALL.iter().map(|(n, _, _)| *n).collect();
            return Err(format!("DD_SITE={} is not a Datadog site; use one of {}", site.trim(), names.join(", ")));
        };
        Ok(Site {
            api_base: api_url.map(|u| u.trim_end_matches('/').to_string()).unwrap_or_else(|| api.to_string()),
            app_base: app.to_string(),
        })
    }
}

/// Why a request failed, by what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatadogError {
    #[error("Datadog rate limit reached{}", .reset.map(|r| format!(" (resets in {}s)", r.as_secs())).unwrap_or_default())]
    RateLimited { reset: Option<Duration> },
    #[error("the spans request budget ({SPANS_REQUESTS_PER_HOUR} per hour) is spent; next request in {}s", .retry_in.as_secs())]
    BudgetSpent { retry_in: Duration },
    #[error("Datadog refused the keys ({0}): check DD_API_KEY, DD_APP_KEY and the apm_read scope")]
    Forbidden(String),
    #[error("Datadog is unavailable: {0}")]
    Unavailable(String),
    #[error("Datadog refused the query: {0}")]
    BadRequest(String),
}

/// The most spans one search page returns ("maximum: 1000").
pub const SEARCH_PAGE_MAX: u32 = 1000;

/// One level of an aggregation's grouping (`SpansGroupBy`).
#[derive(Debug, Clone, Copy)]
pub struct GroupBy<'a> {
    pub facet: &'a str,
    /// The most buckets at this level (Datadog's default is 10).
    pub limit: u32,
    /// The value spans without the facet are grouped under; without one they are left out.
    pub missing: Option<&'a str>,
    /// A bucket under this value counts every matching span, past the limit too.
    pub total: Option<&'a str>,
}

impl GroupBy<'_> {
    fn as_json(&self) -> Value {
        // Sorted by span count, largest first: the default sort is alphabetical.
        let mut g = json!({"facet": self.facet, "limit": self.limit,
                           "sort": {"type": "measure", "aggregation": "count", "order": "desc"}});
        if let Some(m) = self.missing {
            g["missing"] = json!(m);
        }
        if let Some(t) = self.total {
            g["total"] = json!(t);
        }
        g
    }
}

/// The client.
pub struct DatadogClient {
    http: reqwest::Client,
    site: Site,
    api_key: SecretString,
    app_key: SecretString,
    budget: DefaultDirectRateLimiter,
    cache: Mutex<HashMap<String, (Instant, Value)>>,
    /// Requests actually sent (not answered from the cache), for tests and metrics.
    sent: std::sync::atomic::AtomicU64,
    /// The spans budget per hour, and when spans requests went out in the last hour, so the
    /// metrics can tell what is left (the limiter itself does not say).
    per_hour: u32,
    spans_sent: Mutex<std::collections::VecDeque<Instant>>,
}

impl DatadogClient {
    pub fn new(site: Site, api_key: SecretString, app_key: SecretString) -> Result<DatadogClient, String> {
        // reqwest is built without a default TLS provider; make sure ring is installed.
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("incident-commander/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let quota = Quota::per_hour(NonZeroU32::new(SPANS_REQUESTS_PER_HOUR).expect("positive"));
        Ok(DatadogClient {
            http,
            site,
            api_key,
            app_key,
            budget: RateLimiter::direct(quota),
            cache: Mutex::new(HashMap::new()),
            sent: std::sync::atomic::AtomicU64::new(0),
            per_hour: SPANS_REQUESTS_PER_HOUR,
            spans_sent: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// A smaller spans budget than Datadog's (tests; organisations sharing the budget with
    /// other tools).
    pub fn with_budget(mut self, per_hour: u32) -> DatadogClient {
        self.budget = RateLimiter::direct(Quota::per_hour(NonZeroU32::new(per_hour.max(1)).expect("positive")));
        self.per_hour = per_hour.max(1);
        self
    }

    /// Spans requests left in the last hour's budget.
    pub fn budget_left(&self) -> u64 {
        let mut sent = self.spans_sent.lock().expect("budget lock");
        while sent.front().is_some_and(|t| t.elapsed() >= std::time::Duration::from_secs(3600)) {
            sent.pop_front();
        }
        u64::from(self.per_hour).saturating_sub(sent.len() as u64)
    }

    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Requests sent so far (cache hits not counted).
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cached(&self, key: &str) -> Option<Value> {
        let mut cache = self.cache.lock().expect("cache lock");
        cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        cache.get(key).map(|(_, v)| v.clone())
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        query: &[(&str, String)],
        spans: bool,
    ) -> Result<Value, DatadogError> {
        let key = format!("{method} {path} {} {query:?}", body.map(|b| b.to_string()).unwrap_or_default());
        if let Some(v) = self.cached(&key) {
            return Ok(v);
        }
        if spans && let Err(not_until) = self.budget.check() {
            let retry_in =
                not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            return Err(DatadogError::BudgetSpent { retry_in });
        }
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if spans {
            self.spans_sent.lock().expect("budget lock").push_back(Instant::now());
        }
        let url = url::Url::parse_with_params(&format!("{}{path}", self.site.api_base), query)
            .map_err(|e| DatadogError::BadRequest(format!("bad API URL {}: {e}", self.site.api_base)))?;
        let mut req = self
            .http
            .request(method, url)
            .header("DD-API-KEY", self.api_key.expose_secret())
            .header("DD-APPLICATION-KEY", self.app_key.expose_secret())
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                DatadogError::Unavailable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
            } else {
                DatadogError::Unavailable(format!("cannot reach {}: {}", self.site.api_base, e.without_url()))
            }
        })?;
        let status = resp.status();
        let reset = resp
            .headers()
            .get("x-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.map_err(|e| DatadogError::Unavailable(e.to_string()))?;
        let detail = || {
            serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v["errors"].as_array().map(|a| {
                        a.iter()
                            .map(|e| {
                                e.as_str().map(String::from).unwrap_or_else(|| {
                                    e["detail"].as_str().or(e["title"].as_str()).unwrap_or_default().to_string()
                                })
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| text.chars().take(200).collect())
        };
        match status.as_u16() {
            200..=299 => {
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| DatadogError::Unavailable(format!("unreadable answer: {e}")))?;
                self.cache.lock().expect("cache lock").insert(key, (Instant::now(), v.clone()));
                Ok(v)
            }
            429 => Err(DatadogError::RateLimited { reset }),
            401 | 403 => Err(DatadogError::Forbidden(format!("HTTP {}: {}", status.as_u16(), detail()))),
            400..=499 => Err(DatadogError::BadRequest(format!("HTTP {}: {}", status.as_u16(), detail()))),
            _ => Err(DatadogError::Unavailable(format!("HTTP {}", status.as_u16()))),
        }
    }

    /// `POST /api/v2/spans/events/search`: spans matching `query` (span search syntax), in
    /// `sort` order (`-timestamp`: newest first), at most `limit` (the API allows 1000).
    pub async fn search_spans(
        &self,
        query: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
        sort: &str,
    ) -> Result<Value, DatadogError> {
        let body = json!({"data": {"type": "search_request", "attributes": {
            "filter": {"query": query, "from": from.timestamp_millis().to_string(), "to": to.timestamp_millis().to_string()},
            "options": {"timezone": "GMT"},
            "page": {"limit": limit.min(SEARCH_PAGE_MAX)},
            "sort": sort,
        }}});
        self.send(reqwest::Method::POST, "/api/v2/spans/events/search", Some(&body), &[], true).await
    }

    /// `POST /api/v2/spans/analytics/aggregate`: span counts, grouped level by level as `groups`
    /// says (every group's limit, missing value, sort and total explicit).
    pub async fn aggregate_spans(
        &self,
        query: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        groups: &[GroupBy<'_>],
    ) -> Result<Value, DatadogError> {
        let group_by: Vec<Value> = groups.iter().map(GroupBy::as_json).collect();
        let body = json!({"data": {"type": "aggregate_request", "attributes": {
            "compute": [{"aggregation": "count", "type": "total"}],
            "filter": {"query": query, "from": from.timestamp_millis().to_string(), "to": to.timestamp_millis().to_string()},
            "group_by": group_by,
        }}});
        self.send(reqwest::Method::POST, "/api/v2/spans/analytics/aggregate", Some(&body), &[], true).await
    }

    /// `GET /api/v1/query` (seconds in, milliseconds out).
    pub async fn query_metric(
        &self,
        query: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Value, DatadogError> {
        let q =
            [("from", from.timestamp().to_string()), ("to", to.timestamp().to_string()), ("query", query.to_string())];
        let v = self.send(reqwest::Method::GET, "/api/v1/query", None, &q, false).await?;
        if v["status"] == "error" {
            return Err(DatadogError::BadRequest(v["error"].as_str().unwrap_or("query error").to_string()));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_map_to_api_and_app_hosts() {
        let us1 = Site::resolve("datadoghq.com", None).unwrap();
        assert_eq!(
            (us1.api_base.as_str(), us1.app_base.as_str()),
            ("https://api.datadoghq.com", "https://app.datadoghq.com")
        );
        let eu = Site::resolve("datadoghq.eu", None).unwrap();
        assert_eq!(eu.app_base, "https://app.datadoghq.eu");
        let us5 = Site::resolve("us5.datadoghq.com", None).unwrap();
        assert_eq!(
            (us5.api_base.as_str(), us5.app_base.as_str()),
            ("https://api.us5.datadoghq.com", "https://us5.datadoghq.com")
        );
        assert_eq!(Site::resolve("ap1.datadoghq.com", None).unwrap().api_base, "https://api.ap1.datadoghq.com");
        assert_eq!(Site::resolve("ddog-gov.com", None).unwrap().app_base, "https://app.ddog-gov.com");
        assert_eq!(Site::resolve("us3.datadoghq.com", None).unwrap().app_base, "https://us3.datadoghq.com");
        let local = Site::resolve("datadoghq.eu", Some("http://127.0.0.1:9999/")).unwrap();
        assert_eq!(
            (local.api_base.as_str(), local.app_base.as_str()),
            ("http://127.0.0.1:9999", "https://app.datadoghq.eu")
        );
        for (name, api, app) in [
            ("ap2.datadoghq.com", "https://api.ap2.datadoghq.com", "https://ap2.datadoghq.com"),
            ("uk1.datadoghq.com", "https://api.uk1.datadoghq.com", "https://uk1.datadoghq.com"),
            ("us2.ddog-gov.com", "https://api.us2.ddog-gov.com", "https://us2.ddog-gov.com"),
            ("AP2", "https://api.ap2.datadoghq.com", "https://ap2.datadoghq.com"),
            ("app.datadoghq.com", "https://api.datadoghq.com", "https://app.datadoghq.com"),
        ] {
            let site = Site::resolve(name, None).unwrap();
            assert_eq!((site.api_base.as_str(), site.app_base.as_str()), (api, app), "{name}");
        }
        let err = Site::resolve("datadog.com", None).unwrap_err();
        assert!(err.contains("DD_SITE=datadog.com is not a Datadog site") && err.contains("us2.ddog-gov.com"), "{err}");
    }

    #[test]
    fn keys_never_print() {
        let client = DatadogClient::new(
            Site::resolve("datadoghq.com", None).unwrap(),
            SecretString::from("api-secret-123"),
            SecretString::from("app-secret-456"),
        )
        .unwrap();
        let debug = format!("{:?}", client.api_key);
        assert!(!debug.contains("api-secret-123"), "{debug}");
    }
}
