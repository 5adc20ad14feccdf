//! Evidence from Datadog: the math as properties, and the whole path against the sandbox Datadog
//! and Slack — isolated, several, global, no errors, an outage then recovery, site links, the
//! request budget, and severity rules that read the verdict.

mod common;

use std::sync::Arc;

use chrono::TimeDelta;
use common::*;
use incident_commander::app::clock::ManualClock;
use incident_commander::domain::evidence::{CustomerCount, Verdict, VerdictRules, blast_radius};
use incident_commander::domain::ids::{IncidentId, Severity};
use incident_commander::domain::incident::EntryKind;
use incident_commander::sandbox::datadog::{DatadogWorld, DdFault};
use incident_commander::sandbox::harness::{DatadogPost, Harness, HarnessOptions};
use incident_commander::sandbox::slack::StoredMessage;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn ratios_are_fractions_and_shares_add_up(counts in prop::collection::vec((0u64..5000, 0u64..5000), 1..20)) {
        let counts: Vec<CustomerCount> = counts.iter().enumerate().map(|(i, (r, e))| CustomerCount { customer: format!("c{i}"), requests: *r, errors: *e }).collect();
        let b = blast_radius(&counts, VerdictRules::default());
        for row in b.customers.iter().chain(b.others.iter()).chain(std::iter::once(&b.global)) {
            prop_assert!((0.0..=1.0).contains(&row.ratio), "ratio {}", row.ratio);
            prop_assert!((0.0..=1.0).contains(&row.share), "share {}", row.share);
        }
        let shares: f64 = b.customers.iter().chain(b.others.iter()).map(|r| r.share).sum();
        if b.global.errors > 0 {
            prop_assert!((shares - 1.0).abs() < 1e-9, "shares sum to {shares}");
        } else {
            prop_assert_eq!(b.verdict, Verdict::NoErrors);
        }
    }

    #[test]
    fn verdicts_do_not_change_when_traffic_scales(counts in prop::collection::vec((20u64..3000, 0u64..3000), 1..12), k in 2u64..50) {
        let make = |m: u64| -> Vec<CustomerCount> {
            counts.iter().enumerate().map(|(i, (r, e))| CustomerCount { customer: format!("c{i}"), requests: r * m, errors: (*e).min(*r) * m }).collect()
        };
        let rules = VerdictRules::default();
        prop_assert_eq!(blast_radius(&make(1), rules).verdict, blast_radius(&make(k), rules).verdict);
    }
}

fn latency() -> DatadogPost {
    DatadogPost::new("[P3] [Triggered on {service:api-gateway,env:prod}] API error rate high", 4242)
        .tags(&["team:backend"])
}

/// The evidence message in the incident's thread.
fn evidence_message(t: &Harness) -> StoredMessage {
    t.bot_messages().into_iter().find(|m| m.text.contains("Evidence from Datadog")).expect("an evidence message")
}

async fn start(world: DatadogWorld, policy: &str) -> (Harness, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let mut options = HarnessOptions::http(policy);
    options.clock = Some(clock.clone());
    options.datadog = Some(world);
    (Harness::start(options).await, clock)
}

fn isolated_world() -> DatadogWorld {
    DatadogWorld::api_gateway(&[
        ("acme", 100, 0.30),
        ("globex", 300, 0.001),
        ("initech", 200, 0.0),
        ("hooli", 150, 0.002),
        ("tiny", 1, 1.0),
    ])
}

#[tokio::test]
async fn an_isolated_customer_is_named_with_the_table_and_linked_traces() {
    let (mut t, _) = start(isolated_world(), POLICY).await;
    let alert_ts = t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1 · SEV3");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    assert_eq!(e.thread_ts.as_deref(), Some(alert_ts.as_str()), "in the incident's thread");
    assert!(e.text.contains("*Isolated to acme*"), "{}", e.text);
    assert!(
        e.text.contains("customer") && e.text.contains("requests") && e.text.contains("global"),
        "the table: {}",
        e.text
    );
    assert!(e.text.contains("other customers (1)"), "tiny (1 request) is grouped: {}", e.text);
    assert!(e.text.contains("30.0%"), "ratios to one decimal: {}", e.text);
    assert!(e.text.contains("<https://app.datadoghq.com/apm/trace/"), "trace links: {}", e.text);
    assert!(e.text.contains("TimeoutError") || e.text.contains("PSQLException"), "error types: {}", e.text);
    // The whole traces, looked up by id: from the frontend through the alerted service to the
    // database where the error began, with the teams from the policy.
    assert!(e.text.contains("crosses frontend → backend"), "{}", e.text);
    assert!(e.text.contains("path: web-shop (frontend) → *api-gateway* (backend) → orders-db (backend)"), "{}", e.text);
    assert!(e.text.contains("likely origin: `orders-db` SELECT orders — `PSQLException`"), "{}", e.text);
    assert!(
        e.text.contains("at `com.acme.orders.OrderRepo.reserve(OrderRepo.java:88)`"),
        "the failing code: {}",
        e.text
    );
    let traces: Vec<&str> = e.text.lines().filter(|l| l.contains("/apm/trace/")).collect();
    assert_eq!(traces.len(), 3, "{}", e.text);
    assert!(traces.iter().all(|l| l.contains("(customer acme,")), "the isolated customer's traces: {traces:#?}");
    let calls = t.datadog.as_ref().unwrap().calls();
    assert!(calls.len() <= 3, "at most 3 Datadog requests per open: {}", calls.len());
    let incident = t.app.store.get_incident(IncidentId::FIRST).unwrap().unwrap();
    let snapshot = incident.timeline.iter().find(|x| x.kind == EntryKind::Evidence).expect("a snapshot at opening");
    assert!(snapshot.text.starts_with("Evidence at opening: isolated to acme"), "{}", snapshot.text);
    t.finish();
}

#[tokio::test]
async fn several_customers_and_global_outages_are_told_apart() {
    let several = DatadogWorld::api_gateway(&[
        ("acme", 100, 0.3),
        ("globex", 100, 0.25),
        ("initech", 400, 0.001),
        ("hooli", 400, 0.0),
        ("umbrella", 400, 0.001),
    ]);
    let (mut t, _) = start(several, POLICY).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    assert!(e.text.contains("*Several customers* — acme, globex"), "{}", e.text);
    t.finish();

    let global = DatadogWorld::api_gateway(&[
        ("acme", 100, 0.12),
        ("globex", 200, 0.10),
        ("initech", 150, 0.11),
        ("hooli", 120, 0.09),
    ]);
    let (mut t, _) = start(global, POLICY).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    assert!(e.text.contains("*Global* — error ratio"), "{}", e.text);
    t.finish();

    let calm = DatadogWorld::api_gateway(&[("acme", 100, 0.0), ("globex", 200, 0.0)]);
    let (mut t, _) = start(calm, POLICY).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    assert!(e.text.contains("*No errors* in the window") && e.text.contains("No failing traces"), "{}", e.text);
    t.finish();
}

#[tokio::test]
async fn an_outage_never_delays_the_incident_and_evidence_fills_in_later() {
    let (mut t, _) = start(isolated_world(), POLICY).await;
    t.datadog.as_ref().unwrap().inject("*", DdFault::Status(503), 10);
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1 · SEV3");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog is unavailable");
    assert!(e.text.contains("HTTP 503") && e.text.contains("Trying again at 10:01 UTC"), "{}", e.text);
    // Datadog comes back; the retry a minute later fills the same message in.
    t.datadog.as_ref().unwrap().clear_faults();
    t.advance(TimeDelta::minutes(1)).await;
    let edited = t.sandbox.message(ALERTS, &e.ts).unwrap();
    assert!(edited.text.contains("*Isolated to acme*"), "{}", edited.text);
    assert!(edited.edits >= 1, "edited in place, not posted again");
    assert_eq!(t.bot_messages().iter().filter(|m| m.text.contains("Evidence from Datadog")).count(), 1);
    t.finish();
}

#[tokio::test]
async fn bad_keys_and_rate_limits_say_why() {
    let (mut t, _) = start(isolated_world(), POLICY).await;
    t.datadog.as_ref().unwrap().inject("*", DdFault::RateLimited(42), 1);
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "unavailable");
    assert!(e.text.contains("rate limit reached (resets in 42s)"), "{}", e.text);
    t.datadog.as_ref().unwrap().inject("*", DdFault::Status(403), 5);
    t.advance(TimeDelta::minutes(1)).await;
    let e = t.sandbox.message(ALERTS, &e.ts).unwrap();
    assert!(e.text.contains("refused the keys") && e.text.contains("apm_read"), "{}", e.text);
    t.finish();
}

#[tokio::test]
async fn links_follow_the_datadog_site() {
    let clock = Arc::new(ManualClock::new(t0()));
    let mut options = HarnessOptions::http(POLICY);
    options.clock = Some(clock);
    options.datadog = Some(isolated_world());
    options.dd_site = "datadoghq.eu".into();
    let mut t = Harness::start(options).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    assert!(e.text.contains("<https://app.datadoghq.eu/apm/trace/"), "{}", e.text);
    t.finish();
}

#[tokio::test]
async fn the_spans_request_budget_is_respected() {
    let clock = Arc::new(ManualClock::new(t0()));
    let mut options = HarnessOptions::http(POLICY);
    options.clock = Some(clock);
    options.datadog = Some(isolated_world());
    options.dd_budget = 2;
    let mut t = Harness::start(options).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    t.expect_reply(ALERTS, "*Isolated to acme*");
    t.post_datadog_alert(
        ALERTS,
        &DatadogPost::new("[P3] [Triggered on {service:api-gateway,env:staging}] Latency", 5150),
    )
    .await;
    t.expect_reply(ALERTS, "INC-2");
    let e = t.expect_reply(ALERTS, "unavailable");
    assert!(e.text.contains("request budget (300 per hour) is spent") || e.text.contains("budget"), "{}", e.text);
    assert_eq!(t.datadog.as_ref().unwrap().calls().len(), 2, "no request beyond the budget");
    t.finish();
}

#[tokio::test]
async fn severity_rules_read_the_verdict_and_snapshots_reach_the_postmortem() {
    let policy = POLICY.replace(
        "[timers]",
        "[[severity.rule]]\nseverity = 1\nreason = \"every customer is failing\"\nverdict = [\"global\"]\nmin_error_ratio = 0.05\n\n[[severity.rule]]\nseverity = 3\n\n[timers]",
    );
    let global = DatadogWorld::api_gateway(&[
        ("acme", 100, 0.12),
        ("globex", 200, 0.10),
        ("initech", 150, 0.11),
        ("hooli", 120, 0.09),
    ]);
    let (mut t, _) = start(global, &policy).await;
    let alert_ts = t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1 · ");
    t.expect_reply(ALERTS, "*Global*");
    t.expect_reply(ALERTS, "SEV3 → *SEV1*: every customer is failing");
    let incident = t.app.store.get_incident(IncidentId::FIRST).unwrap().unwrap();
    assert_eq!(incident.severity, Severity::Sev1);
    t.expect_reply(ALERTS, "Dedicated channel");
    let channel = incident.slack.incident_channel.clone().unwrap();
    t.expect_reply(channel.as_str(), "This channel is for");
    t.mention(ALICE, ALERTS, Some(&alert_ts), "mitigated").await;
    t.expect_reply(ALERTS, "*Mitigated*");
    t.mention(BOB, ALERTS, Some(&alert_ts), "rootcause bad deploy").await;
    t.expect_reply(ALERTS, "Root cause found");
    t.mention(ALICE, ALERTS, Some(&alert_ts), "resolve").await;
    t.expect_reply(ALERTS, "resolved*");
    let pm = t.expect_reply(ALERTS, "Postmortem draft");
    let md = t.sandbox.message(ALERTS, &pm.ts).unwrap().blocks.to_string();
    for label in ["Evidence at opening: global", "Evidence at mitigation: global", "Evidence at resolution: global"] {
        assert!(md.contains(label), "{label} in the postmortem's impact: {md}");
    }
    let _ = evidence_message(&t);
    t.finish();
}

#[tokio::test]
async fn a_span_based_metric_can_feed_the_table() {
    let policy = POLICY.replace(
        "customer_facet = \"@usr.org_id\"",
        "customer_facet = \"@usr.org_id\"\nspan_metric = \"ic.spans\"\nspan_metric_customer_tag = \"customer\"",
    );
    let (mut t, _) = start(isolated_world(), &policy).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    assert!(e.text.contains("*Isolated to acme*"), "{}", e.text);
    let paths: Vec<String> = t.datadog.as_ref().unwrap().calls().iter().map(|c| c.path.clone()).collect();
    assert_eq!(
        paths.iter().filter(|p| *p == "/api/v1/query").count(),
        1,
        "one query, grouped by customer and status: {paths:?}"
    );
    assert_eq!(paths.len(), 3, "the query, the failing spans, the whole traces: {paths:?}");
    t.finish();
}

/// The measured case against the real API's semantics: thousands of spans without a customer
/// (500-odd errors), acme failing, more than 100 quiet customers past the grouping's limit.
/// Every span counts in global and in the verdict; nobody's share is overstated.
#[tokio::test]
async fn every_request_counts_in_global_and_the_verdict() {
    use incident_commander::sandbox::datadog::AnonymousSpec;
    let mut world = DatadogWorld::api_gateway(&[("acme", 80, 0.4)]).with_quiet_customers(150, 4, None);
    world.anonymous.push(AnonymousSpec { service: "api-gateway".into(), requests_per_minute: 400, error_rate: 0.1 });
    let (mut t, _) = start(world, POLICY).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    // 15 minutes: anonymous 6,000 (600 errors), acme 1,200 (480), 150 quiet customers 9,000.
    assert!(e.text.contains("global                     16,200    1,080    6.7%  100.0%"), "{}", e.text);
    assert!(e.text.contains("no customer                 6,000      600   10.0%   55.6%"), "{}", e.text);
    assert!(e.text.contains("acme                        1,200      480   40.0%   44.4%"), "{}", e.text);
    assert!(e.text.contains("other customers ("), "customers past the listed ones: {}", e.text);
    assert!(e.text.contains("*Several customers* — requests without a customer, acme"), "{}", e.text);
    // The aggregation asked for every span: missing customers named, a total, explicit sort.
    let calls = t.datadog.as_ref().unwrap().calls();
    let agg = calls.iter().find(|c| c.path.ends_with("/aggregate")).unwrap();
    let group_by = &agg.body["data"]["attributes"]["group_by"];
    assert_eq!(group_by[0]["facet"], "@usr.org_id");
    assert!(group_by[0]["missing"].is_string() && group_by[0]["total"].is_string(), "{group_by}");
    assert_eq!(group_by[0]["limit"], 100);
    assert_eq!(group_by[0]["sort"], serde_json::json!({"type": "measure", "aggregation": "count", "order": "desc"}));
    t.finish();
}

#[tokio::test]
async fn errors_on_one_version_read_as_a_bad_deploy() {
    let mut world = DatadogWorld::api_gateway(&[("acme", 100, 0.05), ("globex", 300, 0.05), ("initech", 200, 0.05)]);
    world.services[0].versions = vec![("2.4.1".into(), 0.3), ("2.4.0".into(), 0.7)];
    world.services[0].bad_version = Some("2.4.1".into());
    let (mut t, _) = start(world, POLICY).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    assert!(e.text.contains("*Errors concentrate in version 2.4.1* — 100.0% of errors"), "{}", e.text);
    assert!(
        e.text.contains("(customer globex, ") && e.text.contains("version 2.4.1, "),
        "the traces show the version: {}",
        e.text
    );
    t.finish();
}

#[tokio::test]
async fn three_requests_per_open_and_per_refresh_and_128_bit_links() {
    let (mut t, _) = start(isolated_world(), POLICY).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    let paths = |t: &Harness| t.datadog.as_ref().unwrap().calls().iter().map(|c| c.path.clone()).collect::<Vec<_>>();
    assert_eq!(
        paths(&t),
        ["/api/v2/spans/analytics/aggregate", "/api/v2/spans/events/search", "/api/v2/spans/events/search"],
        "counts, failing spans, whole traces"
    );
    let lookup = &t.datadog.as_ref().unwrap().calls()[2];
    let q = lookup.body["data"]["attributes"]["filter"]["query"].as_str().unwrap().to_string();
    assert!(q.starts_with("trace_id:(") && q.matches(" OR ").count() == 2, "one lookup for the three traces: {q}");
    // Links open the 128-bit trace (upper half from `_dd.p.tid`), labels tell them apart.
    let links: Vec<&str> = e.text.split("/apm/trace/").skip(1).map(|r| r.split('|').next().unwrap()).collect();
    assert_eq!(links.len(), 3);
    assert!(links.iter().all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())), "{links:?}");
    let labels: std::collections::HashSet<&str> =
        e.text.split("|trace ").skip(1).map(|r| r.split('>').next().unwrap()).collect();
    assert_eq!(labels.len(), 3, "three distinct labels: {labels:?}");
    // A refresh asks the same three things once more (the policy refreshes every 6 hours).
    t.advance(TimeDelta::hours(6)).await;
    assert_eq!(paths(&t).len(), 6, "{:?}", paths(&t));
    // /metrics counts them and tells what is left of the hour's spans budget.
    let metrics = reqwest::get(format!("http://{}/metrics", t.app.addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("incident_commander_datadog_requests_total 6"), "{metrics}");
    assert!(metrics.contains("incident_commander_datadog_spans_budget_remaining 294"), "{metrics}");
    t.ack_all();
    t.finish();
}

#[tokio::test]
async fn a_trace_too_large_to_read_whole_is_said() {
    let mut world = isolated_world();
    world.services[0].fan_out = 600;
    let (mut t, _) = start(world, POLICY).await;
    t.post_datadog_alert(ALERTS, &latency()).await;
    t.expect_reply(ALERTS, "INC-1");
    let e = t.expect_reply(ALERTS, "Evidence from Datadog");
    assert!(e.text.contains("The traces had more than 1000 spans between them: paths may be partial."), "{}", e.text);
    assert!(e.text.contains("the trace was too large to read whole"), "{}", e.text);
    t.finish();
}

#[tokio::test]
async fn every_documented_site_links_to_its_own_app() {
    for (site, app) in [
        ("ap2.datadoghq.com", "https://ap2.datadoghq.com/apm/trace/"),
        ("uk1.datadoghq.com", "https://uk1.datadoghq.com/apm/trace/"),
        ("us2.ddog-gov.com", "https://us2.ddog-gov.com/apm/trace/"),
    ] {
        let mut options = HarnessOptions::http(POLICY);
        options.datadog = Some(isolated_world());
        options.dd_site = site.into();
        let mut t = Harness::start(options).await;
        t.post_datadog_alert(ALERTS, &latency()).await;
        t.expect_reply(ALERTS, "INC-1");
        let e = t.expect_reply(ALERTS, "Evidence from Datadog");
        assert!(e.text.contains(&format!("<{app}")), "{site}: {}", e.text);
        t.finish();
    }
}
