//! The sled store: round trips, indexes, crash durability, dedupe expiry, versioned records.

mod common;

use std::path::Path;

use common::*;
use incident_commander::domain::alert::Transition;
use incident_commander::domain::decide::{Action, Context, Event, Outcome, State, decide};
use incident_commander::domain::ids::{IncidentId, Priority};
use incident_commander::domain::incident::Incident;
use incident_commander::store::records::{decode, encode};
use incident_commander::store::{
    Acceptance, ChannelRef, Commit, Delivery, InboxEvent, MessageKey, Origin, OutboxEntry, SlackOp, SledStore, Store,
    StoreError,
};

fn open_incident(n: u64) -> Incident {
    let policy = policy();
    let alert = webhook_alert(&format!("{n}00"), Transition::Triggered, Priority::P2, &["team:backend"]);
    match decide(State::New { id: IncidentId::new(n).unwrap() }, &Event::Alert(alert), Context::new(t0(), &policy)) {
        Ok(Outcome::Changed { incident, .. }) => *incident,
        other => panic!("{other:?}"),
    }
}

fn alert_event(monitor: &str) -> InboxEvent {
    InboxEvent::Domain {
        event: Box::new(Event::Alert(webhook_alert(monitor, Transition::Triggered, Priority::P2, &["team:backend"]))),
        incident: None,
        origin: Origin::default(),
    }
}

fn store(dir: &Path) -> SledStore {
    SledStore::open(dir).expect("store opens")
}

#[test]
fn incident_round_trips_with_its_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    assert_eq!(s.next_incident_id().unwrap().to_string(), "INC-1");
    let mut incident = open_incident(1);
    incident.slack.thread_ts = Some("1700000000.000100".into());
    incident.slack.header_ts = Some("1700000000.000200".into());
    s.commit(Commit { incident: Some(incident.clone()), ..Commit::default() }).unwrap();

    assert_eq!(s.get_incident(incident.id).unwrap(), Some(incident.clone()));
    assert_eq!(s.next_incident_id().unwrap().to_string(), "INC-2");
    let fp = incident.alerts.as_ref().unwrap().fingerprints[0].clone();
    assert_eq!(s.find_open_incident_by_fingerprint(&fp).unwrap().map(|i| i.id), Some(incident.id));
    let ch = channel(ALERTS);
    assert_eq!(s.find_incident_by_message(&ch, "1700000000.000100").unwrap().map(|i| i.id), Some(incident.id));
    assert_eq!(s.find_incident_by_message(&ch, "1700000000.000200").unwrap().map(|i| i.id), Some(incident.id));
    assert_eq!(s.find_incident_by_message(&ch, "1.0").unwrap(), None);
    assert_eq!(s.open_incidents().unwrap().len(), 1);
}

#[test]
fn resolved_incident_leaves_the_fingerprint_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let policy = policy();
    let incident = open_incident(1);
    let fp = incident.alerts.as_ref().unwrap().fingerprints[0].clone();
    s.commit(Commit { incident: Some(incident.clone()), ..Commit::default() }).unwrap();
    let mut resolved = incident.clone();
    for action in [Action::Mitigated { note: None }, Action::Resolve { summary: None }] {
        let event = Event::Act { by: user(ALICE), action };
        resolved = match decide(State::Existing(&resolved), &event, Context::new(t0(), &policy)).unwrap() {
            Outcome::Changed { incident, .. } => *incident,
            other => panic!("{other:?}"),
        };
    }
    s.commit(Commit { incident: Some(resolved), ..Commit::default() }).unwrap();
    assert_eq!(s.find_open_incident_by_fingerprint(&fp).unwrap(), None, "a new alert opens a new incident");
    assert!(s.open_incidents().unwrap().is_empty());
    assert_eq!(s.all_incidents().unwrap().len(), 1);
}

#[test]
fn commit_consumes_the_event_and_queues_calls_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let Acceptance::Accepted(seq) = s.accept_event(&alert_event("100"), None).unwrap() else { panic!() };
    assert_eq!(s.inbox_len(), 1);
    let call = OutboxEntry {
        incident: Some(IncidentId::FIRST),
        op: SlackOp::PostMessage {
            channel: ChannelRef::Id(channel(ALERTS)),
            thread: None,
            message: incident_commander::domain::messages::Message::text("hi"),
            key: Some(MessageKey("INC-1/root".into())),
        },
        created_at: t0(),
    };
    let seqs = s
        .commit(Commit {
            consumed: Some(seq),
            incident: Some(open_incident(1)),
            outbox: vec![call.clone()],
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(seqs.len(), 1);
    assert_eq!(s.inbox_len(), 0);
    let pending = s.pending_outbox().unwrap();
    assert_eq!(pending, vec![(seqs[0], call)]);
    let delivery = Delivery { channel: Some(channel(ALERTS)), ts: Some("1700000000.000300".into()) };
    s.complete_outbox(seqs[0], Some((&MessageKey("INC-1/root".into()), &delivery)), None).unwrap();
    assert!(s.pending_outbox().unwrap().is_empty());
    assert_eq!(s.get_message_ref(&MessageKey("INC-1/root".into())).unwrap(), Some(delivery));
}

#[test]
fn dedupe_keys_refuse_repeats_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let until = t0() + mins(60);
    assert!(matches!(s.accept_event(&alert_event("1"), Some(("Ev1", until))).unwrap(), Acceptance::Accepted(_)));
    assert_eq!(s.accept_event(&alert_event("1"), Some(("Ev1", until))).unwrap(), Acceptance::Duplicate);
    assert!(matches!(
        s.accept_event(&alert_event("2"), Some(("Ev2", t0() + mins(120)))).unwrap(),
        Acceptance::Accepted(_)
    ));
    assert_eq!(s.expire_dedupe_keys(t0() + mins(30)).unwrap(), 0, "nothing is due yet");
    assert_eq!(s.expire_dedupe_keys(t0() + mins(61)).unwrap(), 1, "only Ev1 is past its time");
    assert!(matches!(s.accept_event(&alert_event("1"), Some(("Ev1", until))).unwrap(), Acceptance::Accepted(_)));
    assert_eq!(s.accept_event(&alert_event("2"), Some(("Ev2", until))).unwrap(), Acceptance::Duplicate);
    assert_eq!(s.inbox_len(), 3);
}

#[test]
fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = store(dir.path());
        s.commit(Commit { incident: Some(open_incident(1)), ..Commit::default() }).unwrap();
        s.accept_event(&alert_event("7"), Some(("Ev7", t0() + mins(60)))).unwrap();
        s.flush().unwrap();
    }
    let s = store(dir.path());
    assert!(s.get_incident(IncidentId::FIRST).unwrap().is_some());
    assert_eq!(s.next_incident_id().unwrap().to_string(), "INC-2");
    assert_eq!(s.inbox_len(), 1);
    assert_eq!(s.accept_event(&alert_event("7"), Some(("Ev7", t0() + mins(60)))).unwrap(), Acceptance::Duplicate);
}

/// Set in the child process of the crash test: where to write before aborting.
const CRASH_DIR: &str = "INCIDENT_COMMANDER_TEST_CRASH_DIR";

#[test]
fn acknowledged_write_survives_a_crash() {
    if let Ok(dir) = std::env::var(CRASH_DIR) {
        // Child: accept, make durable (what ingress does before answering 200), then die without
        // running destructors or a clean shutdown.
        let s = store(Path::new(&dir));
        s.accept_event(&alert_event("42"), Some(("EvCrash", t0() + mins(60)))).unwrap();
        s.flush().unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "acknowledged_write_survives_a_crash", "--nocapture"])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborts");
    let s = store(dir.path());
    let (_, event) = s.next_inbox_event().unwrap().expect("the acknowledged event is on disk");
    assert_eq!(event, alert_event("42"));
    assert_eq!(s.accept_event(&alert_event("42"), Some(("EvCrash", t0() + mins(60)))).unwrap(), Acceptance::Duplicate);
}

/// Bytes written by each released record version, read back by this build.
#[test]
fn version_1_records_from_disk_still_read() {
    let incident: Incident = decode(include_bytes!("data/incident_v1.json")).expect("v1 incident reads");
    assert_eq!(incident.id.to_string(), "INC-1");
    assert_eq!(incident.commander, Some(user(ALICE)));
    assert_eq!(incident.alerts.as_ref().unwrap().count, 1);
    let event: InboxEvent = decode(include_bytes!("data/inbox_event_v1.json")).expect("v1 inbox event reads");
    assert!(matches!(event, InboxEvent::Domain { event, .. } if matches!(*event, Event::Alert(_))));
}

#[test]
fn records_from_a_newer_version_are_refused_clearly() {
    let err = decode::<Incident>(br#"{"v":99,"data":{}}"#).unwrap_err();
    assert!(err.contains("newer version"), "{err}");
    let err = decode::<Incident>(b"not json").unwrap_err();
    assert!(err.contains("not a record envelope"), "{err}");
}

/// Writes the `tests/data` files from the current format. Run by hand when a new record version
/// is released: `REGENERATE_TEST_DATA=1 cargo test --test store regenerate`.
#[test]
fn regenerate_test_data() {
    if std::env::var("REGENERATE_TEST_DATA").is_err() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    std::fs::write(dir.join("incident_v1.json"), encode(&open_incident(1))).unwrap();
    std::fs::write(dir.join("inbox_event_v1.json"), encode(&alert_event("100"))).unwrap();
}

#[test]
fn a_held_data_directory_is_refused_and_a_released_one_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let first = store(dir.path());
    // sled holds an exclusive lock; a second open in any process fails with a clear message
    // (after a short wait, cut here to 50 ms).
    let second = SledStore::open_waiting(dir.path(), std::time::Duration::from_millis(50));
    let Err(err) = second else { panic!("two stores on one directory") };
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("in use by another incident-commander process"), "{err}");
    first.commit(Commit { incident: Some(open_incident(1)), ..Commit::default() }).unwrap();
    first.flush().unwrap();
    drop(first);
    // Reopening right after the last handle drops waits for sled's threads to let go.
    let again = store(dir.path());
    assert!(again.get_incident(IncidentId::FIRST).unwrap().is_some(), "the data is there after reopening");
}
