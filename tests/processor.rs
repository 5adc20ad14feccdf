//! The serial processor and the running app: restart safety, exactly-once handling, timers.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use incident_commander::app::clock::{Clock, ManualClock};
use incident_commander::app::inbox::{InboxEvent, Origin};
use incident_commander::app::metrics::Metrics;
use incident_commander::app::outbox::SlackOp;
use incident_commander::app::processor::{HandledAs, Processor};
use incident_commander::app::request::DomainOnly;
use incident_commander::app::store::{Acceptance, Store};
use incident_commander::domain::alert::Transition;
use incident_commander::domain::decide::{Action, Event};
use incident_commander::domain::ids::{IncidentId, Priority};
use incident_commander::startup::{RunningApp, Settings};
use incident_commander::store::SledStore;

fn alert_event(monitor: &str) -> InboxEvent {
    InboxEvent::Domain {
        event: Box::new(Event::Alert(webhook_alert(monitor, Transition::Triggered, Priority::P2, &["team:backend"]))),
        incident: None,
        origin: Origin::default(),
    }
}

fn processor(store: Arc<SledStore>, clock: Arc<dyn Clock>) -> Processor {
    Processor::new(store, Arc::new(policy()), clock, Arc::new(Metrics::new()), Box::new(DomainOnly)).unwrap()
}

const CRASH_DIR: &str = "INCIDENT_COMMANDER_TEST_PROCESSOR_CRASH_DIR";

#[test]
fn accepted_event_survives_a_crash_and_is_processed_exactly_once() {
    if let Ok(dir) = std::env::var(CRASH_DIR) {
        let s = SledStore::open(Path::new(&dir)).unwrap();
        s.accept_event(&alert_event("500"), Some(("Ev500", t0() + mins(60)))).unwrap();
        s.persist().unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "accepted_event_survives_a_crash_and_is_processed_exactly_once", "--nocapture"])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());

    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
    {
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut p = processor(store.clone(), clock.clone());
        let handled = p.step().unwrap().expect("the event from before the crash is waiting");
        assert_eq!(handled.outcome, HandledAs::Changed);
        assert_eq!(handled.incident, Some(IncidentId::FIRST));
        assert_eq!(p.step().unwrap(), None);
        store.persist().unwrap();
        let ops: Vec<&str> = store.pending_outbox().unwrap().iter().map(|(_, e)| e.op.method()).collect();
        assert_eq!(ops, ["chat.postMessage", "chat.postMessage"], "root message, then the header");
    }
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let mut p = processor(store.clone(), clock);
    assert_eq!(p.step().unwrap(), None, "nothing is processed twice after another restart");
    assert_eq!(store.all_incidents().unwrap().len(), 1);
}

#[test]
fn alerts_fold_into_the_open_incident_and_ids_count_from_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
    let mut p = processor(store.clone(), clock);
    for monitor in ["1", "1", "2", "1", "3"] {
        store.accept_event(&alert_event(monitor), None).unwrap();
    }
    let mut ids = Vec::new();
    while let Some(h) = p.step().unwrap() {
        ids.push(h.incident.unwrap().to_string());
    }
    assert_eq!(ids, ["INC-1", "INC-1", "INC-2", "INC-1", "INC-3"]);
    let first = store.get_incident(IncidentId::FIRST).unwrap().unwrap();
    assert_eq!(first.alerts.unwrap().count, 3);
}

#[test]
fn refusals_are_answered_to_the_person_who_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
    let mut p = processor(store.clone(), clock);
    store.accept_event(&alert_event("1"), None).unwrap();
    let origin = Origin { response_url: Some("http://127.0.0.1:1/respond".into()), ..Origin::default() };
    for (target, action) in [
        (Some(IncidentId::FIRST), Action::Resolve { summary: None }),
        (Some(IncidentId::new(9).unwrap()), Action::Acknowledge),
    ] {
        let event = Event::Act { by: user(ALICE), action };
        store
            .accept_event(
                &InboxEvent::Domain { event: Box::new(event), incident: target, origin: origin.clone() },
                None,
            )
            .unwrap();
    }
    let outcomes: Vec<HandledAs> = std::iter::from_fn(|| p.step().unwrap()).map(|h| h.outcome).collect();
    assert_eq!(outcomes, [HandledAs::Changed, HandledAs::Refused, HandledAs::Refused]);
    let answers: Vec<String> = store
        .pending_outbox()
        .unwrap()
        .into_iter()
        .filter_map(|(_, e)| match e.op {
            SlackOp::Respond { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 2);
    assert!(answers[0].contains("not mitigated yet"), "{answers:?}");
    assert!(answers[1].contains("INC-9 does not exist"), "{answers:?}");
}

#[test]
fn timers_survive_a_restart_and_fire_on_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    {
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut p = processor(store.clone(), clock.clone());
        store.accept_event(&alert_event("1"), None).unwrap();
        p.step().unwrap();
        store.persist().unwrap();
    }
    // A new process: deadlines come back from the stored incident.
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let mut p = processor(store.clone(), clock.clone());
    assert_eq!(p.next_deadline(), Some(t0() + mins(10)));
    clock.set(t0() + mins(9));
    assert_eq!(p.tick().unwrap(), 0);
    clock.set(t0() + mins(10));
    assert_eq!(p.tick().unwrap(), 1);
    let last = store.pending_outbox().unwrap().pop().unwrap().1;
    match last.op {
        SlackOp::PostMessage { message, .. } => {
            assert!(message.text.contains("has not been acknowledged for 10m"), "{}", message.text)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn running_app_answers_health_and_processes_accepted_events() {
    incident_commander::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        policy: policy(),
        listen: "127.0.0.1:0".parse().unwrap(),
        clock: Arc::new(ManualClock::new(t0())),
        tick_every: Duration::from_secs(3600),
        slack: None,
        webhook_token: None,
        trackers: Default::default(),
        dashboard_token: None,
        datadog: None,
    };
    let store = incident_commander::store::open_embedded(dir.path()).unwrap();
    let mut app = RunningApp::start(settings, store).await.unwrap();
    let client = reqwest::Client::new();
    let health: serde_json::Value =
        client.get(format!("http://{}/healthz", app.addr)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");

    let accepted = app.inbox.accept(alert_event("77"), Some("Ev77")).await.unwrap();
    assert!(matches!(accepted, Acceptance::Accepted(_)));
    assert_eq!(app.inbox.accept(alert_event("77"), Some("Ev77")).await.unwrap(), Acceptance::Duplicate);
    app.wait_handled(1).await;
    assert!(app.store.get_incident(IncidentId::FIRST).unwrap().is_some());
    // Several events offered together (a webhook with several alerts) are one write. The same
    // monitor again, so they join incident 1 rather than open more.
    let together = vec![(alert_event("77"), Some("Ev78".to_string())), (alert_event("77"), Some("Ev79".to_string()))];
    let results = app.inbox.accept_many(together).await.unwrap();
    assert!(results.iter().all(|r| matches!(r, Acceptance::Accepted(_))), "{results:?}");

    let metrics = client.get(format!("http://{}/metrics", app.addr)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("incident_commander_incidents_opened_total 1"), "{metrics}");
    assert!(metrics.contains("incident_commander_events_duplicate_total{kind=\"domain\"} 1"), "{metrics}");
    // One durable write per request here (each waited for the one before to be answered), the
    // duplicate's included: three writes for four events.
    assert!(metrics.contains("incident_commander_inbox_writes_total 3"), "{metrics}");
    app.shutdown().await.unwrap();
}
