//! The sandbox Datadog answers as the real API does. The requests below are those of the recorded
//! cassettes in Datadog's own client test-suite (`datadog/api-cassettes/v2/spans/` in the
//! reference folder), transcribed here; the answers must have the recordings' shape. Then the
//! semantics the bot depends on: a service query gives that service's spans only, a trace id
//! lookup gives whole traces, and an aggregation honours limit, missing, sort and total.

use incident_commander::sandbox::datadog::{
    API_KEY, APP_KEY, AnonymousSpec, CustomerSpec, DatadogSandbox, DatadogWorld, ServiceSpec,
};
use serde_json::{Value, json};

/// The attribute keys of every span in the recorded search and list answers.
const SPAN_KEYS: [&str; 16] = [
    "custom",
    "end_timestamp",
    "env",
    "host",
    "ingestion_reason",
    "parent_id",
    "resource_hash",
    "resource_name",
    "retained_by",
    "service",
    "single_span",
    "span_id",
    "start_timestamp",
    "tags",
    "trace_id",
    "type",
];

fn world() -> DatadogWorld {
    let mut w = DatadogWorld::api_gateway(&[("acme", 60, 0.3), ("globex", 30, 0.01), ("initech", 20, 0.0)]);
    for c in &mut w.customers {
        c.service = Some("api-gateway".into());
    }
    // The service of the recorded pagination cassette (`service:python*`).
    let mut python = ServiceSpec::new("python-sample-app-spartancrimson", "pcf-spartancrimson");
    python.versions = vec![("1.0.0".into(), 1.0)];
    w.services.push(python);
    w.customers.push(CustomerSpec {
        name: "871f7c0c".into(),
        requests_per_minute: 2,
        error_rate: 0.0,
        service: Some("python-sample-app-spartancrimson".into()),
    });
    w.anonymous.push(AnonymousSpec { service: "api-gateway".into(), requests_per_minute: 40, error_rate: 0.05 });
    w
}

async fn post(dd: &DatadogSandbox, path: &str, body: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", dd.api_url()))
        .header("DD-API-KEY", API_KEY)
        .header("DD-APPLICATION-KEY", APP_KEY)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    k.sort();
    k
}

fn expect_span_shape(span: &Value) {
    assert_eq!(keys(span), ["attributes", "id", "type"], "{span}");
    assert_eq!(span["type"], "spans");
    assert_eq!(keys(&span["attributes"]), SPAN_KEYS, "{span}");
    let a = &span["attributes"];
    for decimal in ["trace_id", "span_id", "parent_id"] {
        assert!(a[decimal].as_str().unwrap().chars().all(|c| c.is_ascii_digit()), "{decimal} is decimal: {a}");
    }
    assert!(a["start_timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(a["custom"]["duration"].is_u64(), "duration in nanoseconds");
}

#[tokio::test]
async fn the_recorded_requests_get_answers_of_the_recorded_shape() {
    let dd = DatadogSandbox::start(world()).await.unwrap();
    // Aggregate-spans-returns-OK-response: a 5-minute count timeseries over everything.
    let (status, _, a) = post(&dd, "/api/v2/spans/analytics/aggregate",
        r#"{"data":{"attributes":{"compute":[{"aggregation":"count","interval":"5m","type":"timeseries"}],"filter":{"from":"now-15m","query":"*","to":"now"}},"type":"aggregate_request"}}"#).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(keys(&a), ["data", "meta"]);
    assert_eq!(keys(&a["meta"]), ["elapsed", "request_id", "status"]);
    assert_eq!(a["meta"]["status"], "done");
    let bucket = &a["data"][0];
    assert_eq!((bucket["type"].as_str(), keys(&bucket["attributes"])), (Some("bucket"), vec!["by", "compute"]));
    assert_eq!(bucket["attributes"]["by"], json!({}));
    let points = bucket["attributes"]["compute"]["c0"].as_array().unwrap();
    assert!((3..=4).contains(&points.len()), "15 minutes in 5-minute points: {points:?}");
    assert!(points.iter().all(|p| keys(p) == ["time", "value"] && p["value"].is_u64()));

    // Search-spans-returns-OK-response-with-pagination: two spans a page, following the cursor.
    let body = |cursor: Option<&str>| {
        let mut page = json!({"limit": 2});
        if let Some(c) = cursor {
            page["cursor"] = json!(c);
        }
        json!({"data": {"attributes": {"filter": {"from": "now-15m", "query": "service:python*", "to": "now"},
               "options": {"timezone": "GMT"}, "page": page, "sort": "timestamp"}, "type": "search_request"}})
        .to_string()
    };
    let (status, headers, first) = post(&dd, "/api/v2/spans/events/search", &body(None)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(keys(&first), ["data", "links", "meta"]);
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    first["data"].as_array().unwrap().iter().for_each(expect_span_shape);
    assert!(
        first["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["attributes"]["service"] == "python-sample-app-spartancrimson")
    );
    assert!(first["links"]["next"].as_str().unwrap().contains("page%5Bcursor%5D="));
    assert_eq!(headers["x-ratelimit-limit"], "300", "rate-limit headers on every spans answer");
    let mut cursor = first["meta"]["page"]["after"].as_str().unwrap().to_string();
    let mut pages = 1;
    loop {
        let (status, _, next) = post(&dd, "/api/v2/spans/events/search", &body(Some(&cursor))).await;
        assert_eq!(status, 200);
        pages += 1;
        match next.pointer("/meta/page/after").and_then(Value::as_str) {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(pages < 200, "the cursor ends");
    }
    assert!(pages > 2);

    // Get-a-list-of-spans-returns-OK-response: the GET list, default page of 10.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v2/spans/events", dd.api_url()))
        .header("DD-API-KEY", API_KEY)
        .header("DD-APPLICATION-KEY", APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(keys(&list), ["data", "links", "meta"]);
    assert_eq!(list["data"].as_array().unwrap().len(), 10);
    list["data"].as_array().unwrap().iter().for_each(expect_span_shape);

    // Search-spans-returns-Unprocessable-Entity-response: `from` after `to`.
    let (status, _, e) = post(&dd, "/api/v2/spans/events/search",
        r#"{"data":{"attributes":{"filter":{"from":"now","query":"service:web* AND @http.status_code:[200 TO 299]","to":"now-15m"},"options":{"timezone":"GMT"},"page":{"limit":10},"sort":"timestamp"},"type":"search_request"}}"#).await;
    assert_eq!(status, 422);
    assert_eq!(
        e,
        json!({"errors": [{"title": "Generic Error", "detail": "invalid_argument(Field 'filter.from,to' is invalid: 'from' should be anterior to 'to')"}]})
    );
}

#[tokio::test]
async fn a_service_query_gives_that_service_and_a_trace_lookup_the_whole_trace() {
    let dd = DatadogSandbox::start(world()).await.unwrap();
    let search = |query: &str, limit: u32| {
        json!({"data": {"type": "search_request", "attributes": {"filter": {"query": query, "from": "now-15m", "to": "now"},
               "page": {"limit": limit}, "sort": "-timestamp"}}}).to_string()
    };
    let (_, _, errors) =
        post(&dd, "/api/v2/spans/events/search", &search("service:api-gateway env:prod status:error", 50)).await;
    let spans = errors["data"].as_array().unwrap();
    assert!(!spans.is_empty());
    assert!(spans.iter().all(|s| s["attributes"]["service"] == "api-gateway"), "never other services' spans");
    assert!(spans.iter().all(|s| s["attributes"]["custom"]["error"]["type"].is_string()));
    let ids: Vec<&str> = spans.iter().take(3).map(|s| s["attributes"]["trace_id"].as_str().unwrap()).collect();
    let (_, _, whole) =
        post(&dd, "/api/v2/spans/events/search", &search(&format!("trace_id:({})", ids.join(" OR ")), 1000)).await;
    let whole = whole["data"].as_array().unwrap();
    assert_eq!(whole.len(), 9, "three traces of three spans each");
    let mut services: Vec<&str> = whole.iter().map(|s| s["attributes"]["service"].as_str().unwrap()).collect();
    services.sort();
    services.dedup();
    assert_eq!(services, ["api-gateway", "orders-db", "web-shop"]);
    let roots = whole.iter().filter(|s| s["attributes"]["parent_id"] == "0").count();
    assert_eq!(roots, 3, "each trace starts at the frontend");
    assert!(
        whole.iter().any(|s| s["attributes"]["custom"]["error"]["stack"].is_string()),
        "the origin carries a stack"
    );
}

#[tokio::test]
async fn aggregations_honour_limit_missing_sort_and_total() {
    let dd = DatadogSandbox::start(world()).await.unwrap();
    let body = |group_by: Value| {
        json!({"data": {"type": "aggregate_request", "attributes": {
            "compute": [{"aggregation": "count", "type": "total"}],
            "filter": {"query": "service:api-gateway", "from": "now-10m", "to": "now"},
            "group_by": group_by}}})
        .to_string()
    };
    let count = |a: &Value, customer: &str| -> u64 {
        a["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["attributes"]["by"]["@usr.org_id"] == customer)
            .map(|b| b["attributes"]["compute"]["c0"].as_u64().unwrap())
            .sum()
    };
    // Without `missing`, spans without the customer are left out; with it, they are a bucket.
    let (_, _, plain) = post(&dd, "/api/v2/spans/analytics/aggregate", &body(json!([{"facet": "@usr.org_id"}]))).await;
    let plain_total: u64 =
        plain["data"].as_array().unwrap().iter().map(|b| b["attributes"]["compute"]["c0"].as_u64().unwrap()).sum();
    assert_eq!(plain_total, 600 + 300 + 200, "customers' spans only (10 minutes)");
    let (_, _, full) = post(&dd, "/api/v2/spans/analytics/aggregate", &body(json!([
        {"facet": "@usr.org_id", "limit": 2, "missing": "none", "total": "all", "sort": {"type": "measure", "aggregation": "count", "order": "desc"}},
        {"facet": "status", "limit": 3},
    ]))).await;
    assert_eq!(count(&full, "acme"), 600);
    assert_eq!(count(&full, "none"), 400);
    assert_eq!(count(&full, "globex"), 0, "past the limit of two");
    assert_eq!(count(&full, "all"), 600 + 300 + 200 + 400, "the total counts every span");
    let errors = full["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["attributes"]["by"]["@usr.org_id"] == "all" && b["attributes"]["by"]["status"] == "error")
        .unwrap();
    assert_eq!(errors["attributes"]["compute"]["c0"], 180 + 3 + 20, "acme, globex, none");
    // Alphabetical by default: globex before initech... and `limit` keeps the first.
    let (_, _, alpha) =
        post(&dd, "/api/v2/spans/analytics/aggregate", &body(json!([{"facet": "@usr.org_id", "limit": 1}]))).await;
    assert_eq!(alpha["data"][0]["attributes"]["by"]["@usr.org_id"], "acme");
    // Bad requests say why.
    let (status, _, e) = post(&dd, "/api/v2/spans/analytics/aggregate", &body(json!([{"limit": 3}]))).await;
    assert_eq!((status, e["errors"][0]["detail"].as_str()), (400, Some("every group_by needs a facet")));
    let (status, _, _) = post(
        &dd,
        "/api/v2/spans/analytics/aggregate",
        &body(json!([{"facet": "a", "limit": 1000}, {"facet": "b", "limit": 11}])),
    )
    .await;
    assert_eq!(status, 400, "limits multiply past 10000");
    let (status, _, _) = post(&dd, "/api/v2/spans/analytics/aggregate", "{not json").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn keys_are_required_and_the_hourly_budget_is_enforced() {
    let dd = DatadogSandbox::start(world()).await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v2/spans/events/search", dd.api_url()))
        .header("DD-API-KEY", API_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "both keys are required");
    dd.set_spans_per_hour(2);
    let body = r#"{"data":{"type":"search_request","attributes":{"filter":{"query":"*"},"page":{"limit":1}}}}"#;
    for expected in [200, 200, 429] {
        let (status, headers, _) = post(&dd, "/api/v2/spans/events/search", body).await;
        assert_eq!(status, expected);
        if status == 429 {
            assert_eq!(headers["x-ratelimit-remaining"], "0");
            assert!(headers["x-ratelimit-reset"].to_str().unwrap().parse::<u64>().unwrap() <= 3600);
            assert_eq!(headers["x-ratelimit-period"], "3600");
        }
    }
}
