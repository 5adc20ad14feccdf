//! The bot reads time only from its injected clock. A bot on a manual clock set years away from
//! the machine's clock must show that clock's day everywhere: who is on call, the header's times,
//! the timeline, timers, and alerts that carry no time of their own. A new `Utc::now()` on any of
//! these paths makes this test fail whatever the date it runs on (the suite is also run with the
//! machine's clock shifted by `.ci/shifted-clock`).

mod common;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use common::*;
use incident_commander::app::clock::ManualClock;
use incident_commander::domain::IncidentId;
use incident_commander::sandbox::harness::{DatadogPost, Harness, HarnessOptions};
use serde_json::json;

#[tokio::test]
async fn a_bot_on_a_far_away_clock_shows_that_clock_everywhere() {
    // Wednesday 2031-06-18 03:00 UTC: week 241 of backend's rotation, so Bob is primary and Carol
    // next (Alice is primary on the harness's default day).
    let start = Utc.with_ymd_and_hms(2031, 6, 18, 3, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let mut options = HarnessOptions::http(POLICY);
    options.clock = Some(clock.clone());
    let mut t = Harness::start(options).await;

    let alert = DatadogPost::new("[P2] [Triggered on {service:api-gateway,env:prod}] API p99 latency high", 4242)
        .tags(&["team:backend"]);
    let ts = t.post_datadog_alert(ALERTS, &alert).await;
    let header = t.expect_reply(ALERTS, "INC-1 · SEV2");
    let blocks = header.blocks.to_string();
    assert!(blocks.contains(&format!("*Commander*\\n{}", user(BOB).mention())), "{blocks}");
    assert!(blocks.contains(&format!("*Investigator*\\n{}", user(CAROL).mention())), "{blocks}");
    assert!(blocks.contains("Opened 2031-06-18 03:00:00 UTC"), "{blocks}");
    assert!(ts.starts_with(&start.timestamp().to_string()[..6]), "message timestamps follow the clock: {ts}");

    // A webhook alert without a date of its own is stamped on arrival, by the bot's clock.
    let body = json!({
        "id": "8306082202796025694", "event_type": "query_alert_monitor",
        "title": "[P3] [Triggered on {service:api-payments,env:prod}] Payments queue backlog",
        "body": "%%%\nBacklog above 10k\n%%%",
    });
    let (status, answer) = t.webhook("datadog", &body).await;
    assert_eq!(status, 200, "{answer}");
    t.expect_reply(ALERTS, "*INC-2* — Payments queue backlog");
    t.expect_reply(ALERTS, "INC-2 · SEV3");
    let inc2 = t.app.store.get_incident(IncidentId::new(2).unwrap()).unwrap().unwrap();
    assert_eq!(inc2.alerts.unwrap().first_seen, start, "arrival time from the bot's clock");

    let answers = t.slash(ALICE, ALERTS, "oncall backend").await;
    assert!(
        answers[0].contains(&format!("{} (commander) until Mon 23 Jun 09:00 UTC", user(BOB).mention())),
        "{answers:?}"
    );

    // The ack timeouts (10 minutes at SEV2, 30 at SEV3) run on the same clock.
    t.advance(mins(11)).await;
    t.expect_reply(ALERTS, "INC-1 has not been acknowledged for 11m");
    t.advance(mins(20)).await;
    t.expect_reply(ALERTS, "INC-2 has not been acknowledged for 31m");
    for id in [1, 2] {
        let incident = t.app.store.get_incident(IncidentId::new(id).unwrap()).unwrap().unwrap();
        assert_eq!(incident.opened_at, start);
        for entry in &incident.timeline {
            assert_eq!(entry.at.date_naive(), start.date_naive(), "INC-{id}: {entry:?}");
        }
    }
    t.ack_all();
    t.finish();
}
