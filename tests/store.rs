//! The store contract: every backend runs the same tests (`contract!` below), durable backends
//! also the reopening and crash tests (`durable_contract!`). Then what is particular to sled (its
//! directory lock) and to the record format every backend writes.
//!
//! A new backend adds one `contract!` line (and `durable_contract!` if it keeps data).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use incident_commander::app::inbox::{InboxEvent, Origin, SlashCommand};
use incident_commander::app::outbox::{ChannelRef, Delivery, MessageKey, OutboxEntry, SlackOp};
use incident_commander::app::store::{
    Acceptance, Commit, DedupeKey, LoggedAlert, Place, Store, StoreError, ThreadMessage,
};
use incident_commander::domain::alert::Transition;
use incident_commander::domain::decide::{Action, Context, Event, Outcome, State, decide};
use incident_commander::domain::ids::{ChannelId, IncidentId, Priority, UserId};
use incident_commander::domain::incident::{Incident, MessagePart};
use incident_commander::store::records::{decode, encode};
use incident_commander::store::{MemoryStore, SledStore};
#[cfg(feature = "postgres")]
use incident_commander::store::{PgOptions, PgStore};

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

/// Accepts a batch without dedupe keys (so nothing is a duplicate): the events' positions.
fn accept_all(s: &dyn Store, batch: &[(InboxEvent, Option<DedupeKey>)]) -> Vec<u64> {
    s.accept_events(batch)
        .unwrap()
        .into_iter()
        .map(|a| match a {
            Acceptance::Accepted(seq) => seq,
            Acceptance::Duplicate => panic!("no keys, no duplicates"),
        })
        .collect()
}

fn root_key() -> MessageKey {
    MessageKey::incident(IncidentId::FIRST, MessagePart::Root)
}

/// The tests every backend passes, each on a fresh, empty store.
mod contract {
    use super::*;

    pub fn incident_round_trips_with_its_indexes(s: &dyn Store) {
        assert_eq!(s.next_incident_id().unwrap().to_string(), "INC-1");
        let mut incident = open_incident(1);
        incident.slack.thread_ts = Some("1700000000.000100".into());
        incident.slack.header_ts = Some("1700000000.000200".into());
        incident.slack.incident_channel = Some(channel(FRONT));
        s.commit(Commit { incident: Some(incident.clone()), ..Commit::default() }).unwrap();

        assert_eq!(s.get_incident(incident.id).unwrap(), Some(incident.clone()));
        assert_eq!(s.get_incident(IncidentId::new(2).unwrap()).unwrap(), None);
        assert_eq!(s.next_incident_id().unwrap().to_string(), "INC-2");
        let fp = incident.alerts.as_ref().unwrap().fingerprints[0].clone();
        assert_eq!(s.find_open_incident_by_fingerprint(&fp).unwrap().map(|i| i.id), Some(incident.id));
        let ch = channel(ALERTS);
        let at = |place: Place| s.find_incident(&place).unwrap().map(|i| i.id);
        assert_eq!(at(Place::message(&ch, "1700000000.000100")), Some(incident.id), "the thread parent");
        assert_eq!(at(Place::message(&ch, "1700000000.000200")), Some(incident.id), "the header");
        assert_eq!(at(Place::Channel(channel(FRONT))), Some(incident.id), "the dedicated channel");
        assert_eq!(at(Place::message(&ch, "1.0")), None);
        assert_eq!(at(Place::Channel(ch.clone())), None, "a thread's channel is not the incident's own");
        assert_eq!(s.open_incidents().unwrap().len(), 1);
    }

    pub fn incidents_list_oldest_first_and_ids_never_go_back(s: &dyn Store) {
        for n in [1, 2, 3] {
            s.commit(Commit { incident: Some(open_incident(n)), ..Commit::default() }).unwrap();
        }
        // Rewriting an old incident does not move the next id back.
        s.commit(Commit { incident: Some(open_incident(1)), ..Commit::default() }).unwrap();
        let ids: Vec<String> = s.all_incidents().unwrap().iter().map(|i| i.id.to_string()).collect();
        assert_eq!(ids, ["INC-1", "INC-2", "INC-3"]);
        assert_eq!(s.next_incident_id().unwrap().to_string(), "INC-4");
    }

    pub fn resolved_incident_leaves_the_fingerprint_index(s: &dyn Store) {
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

    pub fn commit_consumes_the_event_and_queues_calls_atomically(s: &dyn Store) {
        let Acceptance::Accepted(seq) = s.accept_event(&alert_event("100"), None).unwrap() else { panic!() };
        assert_eq!(s.inbox_len().unwrap(), 1);
        let call = OutboxEntry {
            incident: Some(IncidentId::FIRST),
            op: SlackOp::PostMessage {
                channel: ChannelRef::Id(channel(ALERTS)),
                thread: None,
                message: incident_commander::domain::messages::Message::text("hi"),
                key: Some(root_key()),
            },
            created_at: t0(),
        };
        let seqs = s
            .commit(Commit {
                consumed: Some(seq),
                incident: Some(open_incident(1)),
                outbox: vec![call.clone(), call.clone()],
                ..Commit::default()
            })
            .unwrap();
        assert_eq!(seqs.len(), 2);
        assert!(seqs[0] < seqs[1], "outbox positions grow");
        assert_eq!(s.inbox_len().unwrap(), 0);
        assert_eq!(s.next_inbox_event().unwrap(), None);
        assert!(s.get_incident(IncidentId::FIRST).unwrap().is_some());
        let pending = s.pending_outbox().unwrap();
        assert_eq!(pending, vec![(seqs[0], call.clone()), (seqs[1], call.clone())]);
        assert_eq!(s.pending_outbox_after(Some(seqs[0])).unwrap(), vec![(seqs[1], call)], "only what came after");
        assert_eq!(s.pending_outbox_after(Some(seqs[1])).unwrap(), vec![]);
        assert_eq!(s.pending_outbox_after(None).unwrap(), pending);

        // Completing a call remembers where it landed and reports it in the same write.
        let delivery = Delivery { channel: Some(channel(ALERTS)), ts: Some("1700000000.000300".into()) };
        let feedback = InboxEvent::delivered(Some(IncidentId::FIRST), &root_key(), &delivery).unwrap();
        s.complete_outbox(seqs[0], Some((&root_key(), &delivery)), Some(&feedback)).unwrap();
        assert_eq!(s.pending_outbox().unwrap().len(), 1);
        assert_eq!(s.get_message_ref(&root_key()).unwrap(), Some(delivery.clone()));
        assert_eq!(s.next_inbox_event().unwrap().map(|(_, e)| e), Some(feedback));
        s.complete_outbox(seqs[1], None, None).unwrap();
        assert!(s.pending_outbox().unwrap().is_empty());

        // A reference remembered before the call completes (multi-step calls).
        let channel_key = MessageKey::incident(IncidentId::FIRST, MessagePart::Channel);
        assert_eq!(s.get_message_ref(&channel_key).unwrap(), None);
        let created = Delivery { channel: Some(channel(FRONT)), ts: None };
        s.put_message_ref(&channel_key, &created).unwrap();
        assert_eq!(s.get_message_ref(&channel_key).unwrap(), Some(created));
    }

    pub fn the_inbox_is_oldest_first(s: &dyn Store) {
        let batch: Vec<_> = ["1", "2", "3"].iter().map(|m| (alert_event(m), None)).collect();
        let seqs = accept_all(s, &batch);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        for (seq, monitor) in seqs.iter().zip(["1", "2", "3"]) {
            let (next, event) = s.next_inbox_event().unwrap().unwrap();
            assert_eq!((next, event), (*seq, alert_event(monitor)));
            s.commit(Commit { consumed: Some(next), ..Commit::default() }).unwrap();
        }
        assert_eq!(s.inbox_len().unwrap(), 0);
        let Acceptance::Accepted(later) = s.accept_event(&alert_event("4"), None).unwrap() else { panic!() };
        assert!(later > seqs[2], "positions keep growing after the inbox empties");
    }

    pub fn dedupe_keys_refuse_repeats_until_they_expire(s: &dyn Store) {
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
        assert_eq!(s.inbox_len().unwrap(), 3);
        // Within one batch too: one webhook delivery carrying the same alert twice.
        let key = |k: &str| Some((k.to_string(), until));
        let batch = [(alert_event("5"), key("Ev5")), (alert_event("5"), key("Ev5")), (alert_event("6"), None)];
        let results = s.accept_events(&batch).unwrap();
        assert!(matches!(results[..], [Acceptance::Accepted(_), Acceptance::Duplicate, Acceptance::Accepted(_)]));
    }

    pub fn dead_letters_keep_the_event_and_its_reason(s: &dyn Store) {
        let Acceptance::Accepted(seq) = s.accept_event(&alert_event("9"), None).unwrap() else { panic!() };
        s.commit(Commit {
            consumed: Some(seq),
            dead_letter: Some("decide panicked: boom".into()),
            ..Commit::default()
        })
        .unwrap();
        assert_eq!(s.inbox_len().unwrap(), 0, "a dead letter is not retried");
        let dead = s.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].seq, dead[0].reason.as_str(), &dead[0].event),
            (seq, "decide panicked: boom", &alert_event("9"))
        );
    }

    pub fn the_alert_log_keeps_every_alert_and_an_edit_replaces_its_record(s: &dyn Store) {
        let posted = slack_alert("77", Transition::Triggered, "1700000000.000400");
        let logged = |alert: &incident_commander::domain::alert::Alert| LoggedAlert {
            alert: alert.clone(),
            incident: Some(IncidentId::FIRST),
            ignored: None,
        };
        s.commit(Commit { alert: Some(logged(&posted)), ..Commit::default() }).unwrap();
        let webhook = webhook_alert("78", Transition::Triggered, Priority::P2, &[]);
        s.commit(Commit {
            alert: Some(LoggedAlert { alert: webhook, incident: None, ignored: Some("no team".into()) }),
            ..Commit::default()
        })
        .unwrap();
        assert_eq!(s.alert_count().unwrap(), 2);
        let found = s.find_alert_by_message(&channel(ALERTS), "1700000000.000400").unwrap();
        assert_eq!(found, Some(logged(&posted)));
        let mut edited = posted.clone();
        edited.transition = Transition::Recovered;
        s.commit(Commit { alert_update: Some(logged(&edited)), ..Commit::default() }).unwrap();
        assert_eq!(s.alert_count().unwrap(), 2, "an edit is not a new alert");
        let found = s.find_alert_by_message(&channel(ALERTS), "1700000000.000400").unwrap().unwrap();
        assert_eq!(found.alert.transition, Transition::Recovered);
        // An edit of a message the log never had is dropped.
        let stranger = slack_alert("79", Transition::Triggered, "1700000000.000999");
        s.commit(Commit { alert_update: Some(logged(&stranger)), ..Commit::default() }).unwrap();
        assert_eq!(s.find_alert_by_message(&channel(ALERTS), "1700000000.000999").unwrap(), None);
        assert_eq!(s.alert_count().unwrap(), 2);
    }

    pub fn thread_messages_are_remembered_for_pins(s: &dyn Store) {
        let message = ThreadMessage {
            incident: IncidentId::FIRST,
            channel: channel(ALERTS),
            ts: "1700000000.000500".into(),
            user: Some(user(BOB)),
            text: "rolled back orders-api".into(),
        };
        s.commit(Commit { thread_message: Some(message.clone()), ..Commit::default() }).unwrap();
        assert_eq!(s.find_thread_message(&channel(ALERTS), "1700000000.000500").unwrap(), Some(message));
        assert_eq!(s.find_thread_message(&channel(ALERTS), "1700000000.000501").unwrap(), None);
    }

    /// Durable backends: `open` opens the same data every time (the previous handle is dropped
    /// first).
    pub fn data_survives_reopening(open: &dyn Fn() -> Arc<dyn Store>) {
        {
            let s = open();
            s.commit(Commit { incident: Some(open_incident(1)), ..Commit::default() }).unwrap();
            s.accept_event(&alert_event("7"), Some(("Ev7", t0() + mins(60)))).unwrap();
            s.put_message_ref(&root_key(), &Delivery { channel: Some(channel(ALERTS)), ts: Some("1.2".into()) })
                .unwrap();
            s.persist().unwrap();
        }
        let s = open();
        assert!(s.get_incident(IncidentId::FIRST).unwrap().is_some());
        assert_eq!(s.next_incident_id().unwrap().to_string(), "INC-2");
        assert_eq!(s.inbox_len().unwrap(), 1);
        assert!(s.get_message_ref(&root_key()).unwrap().is_some());
        assert_eq!(s.accept_event(&alert_event("7"), Some(("Ev7", t0() + mins(60)))).unwrap(), Acceptance::Duplicate);
    }
}

/// Runs the contract on a backend; `$open` makes a fresh store (and whatever keeps it alive).
macro_rules! contract {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            /// A fresh store and what keeps it alive; `None` when the backend is not here.
            fn fresh() -> Option<(Arc<dyn Store>, Box<dyn std::any::Any>)> {
                $open()
            }

            #[test]
            fn incident_round_trips_with_its_indexes() {
                let Some((s, _keep)) = fresh() else { return };
                contract::incident_round_trips_with_its_indexes(s.as_ref());
            }

            #[test]
            fn incidents_list_oldest_first_and_ids_never_go_back() {
                let Some((s, _keep)) = fresh() else { return };
                contract::incidents_list_oldest_first_and_ids_never_go_back(s.as_ref());
            }

            #[test]
            fn resolved_incident_leaves_the_fingerprint_index() {
                let Some((s, _keep)) = fresh() else { return };
                contract::resolved_incident_leaves_the_fingerprint_index(s.as_ref());
            }

            #[test]
            fn commit_consumes_the_event_and_queues_calls_atomically() {
                let Some((s, _keep)) = fresh() else { return };
                contract::commit_consumes_the_event_and_queues_calls_atomically(s.as_ref());
            }

            #[test]
            fn the_inbox_is_oldest_first() {
                let Some((s, _keep)) = fresh() else { return };
                contract::the_inbox_is_oldest_first(s.as_ref());
            }

            #[test]
            fn dedupe_keys_refuse_repeats_until_they_expire() {
                let Some((s, _keep)) = fresh() else { return };
                contract::dedupe_keys_refuse_repeats_until_they_expire(s.as_ref());
            }

            #[test]
            fn dead_letters_keep_the_event_and_its_reason() {
                let Some((s, _keep)) = fresh() else { return };
                contract::dead_letters_keep_the_event_and_its_reason(s.as_ref());
            }

            #[test]
            fn the_alert_log_keeps_every_alert_and_an_edit_replaces_its_record() {
                let Some((s, _keep)) = fresh() else { return };
                contract::the_alert_log_keeps_every_alert_and_an_edit_replaces_its_record(s.as_ref());
            }

            #[test]
            fn thread_messages_are_remembered_for_pins() {
                let Some((s, _keep)) = fresh() else { return };
                contract::thread_messages_are_remembered_for_pins(s.as_ref());
            }
        }
    };
}

contract!(memory, || Some((Arc::new(MemoryStore::new()) as Arc<dyn Store>, Box::new(()) as Box<dyn std::any::Any>)));
contract!(sled, || {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    Some((store, Box::new(dir) as Box<dyn std::any::Any>))
});
#[cfg(feature = "postgres")]
contract!(postgres, || {
    let db = common::pg::test_database()?;
    let store: Arc<dyn Store> = Arc::new(PgStore::open(&PgOptions::sole(&db.url)).unwrap());
    // The database is dropped with every session on it, the store's too.
    Some((store, Box::new(db) as Box<dyn std::any::Any>))
});

#[test]
fn sled_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    contract::data_survives_reopening(&|| Arc::new(SledStore::open(&path).unwrap()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_data_survives_reopening() {
    let Some(db) = common::pg::test_database() else { return };
    contract::data_survives_reopening(&|| Arc::new(PgStore::open(&PgOptions::sole(&db.url)).unwrap()));
}

/// Set in the child process of the crash test: where to write before aborting.
const CRASH_DIR: &str = "INCIDENT_COMMANDER_TEST_CRASH_DIR";

#[test]
fn sled_acknowledged_write_survives_a_crash() {
    if let Ok(dir) = std::env::var(CRASH_DIR) {
        // Child: accept, make durable as the inbox's writer does before ingress answers 200,
        // then die without running destructors or a clean shutdown.
        let s = SledStore::open(Path::new(&dir)).unwrap();
        s.accept_event(&alert_event("42"), Some(("EvCrash", t0() + mins(60)))).unwrap();
        s.persist_accepted().unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sled_acknowledged_write_survives_a_crash", "--nocapture"])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborts");
    let s = SledStore::open(dir.path()).unwrap();
    let (_, event) = s.next_inbox_event().unwrap().expect("the acknowledged event is on disk");
    assert_eq!(event, alert_event("42"));
    assert_eq!(s.accept_event(&alert_event("42"), Some(("EvCrash", t0() + mins(60)))).unwrap(), Acceptance::Duplicate);
}

#[test]
fn a_held_sled_directory_is_refused_and_a_released_one_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let first = SledStore::open(dir.path()).unwrap();
    // sled holds an exclusive lock; a second open in any process fails with a clear message
    // (after a short wait, cut here to 50 ms).
    let second = SledStore::open_waiting(dir.path(), std::time::Duration::from_millis(50));
    let Err(err) = second else { panic!("two stores on one directory") };
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("in use by another incident-commander process"), "{err}");
    first.commit(Commit { incident: Some(open_incident(1)), ..Commit::default() }).unwrap();
    first.persist().unwrap();
    drop(first);
    // Reopening right after the last handle drops waits for sled's threads to let go.
    let again = SledStore::open(dir.path()).unwrap();
    assert!(again.get_incident(IncidentId::FIRST).unwrap().is_some(), "the data is there after reopening");
}

/// sled keeps one inbox record per accepted batch and the processor's place as a position: an
/// event consumed without effects is only marked in memory until the next persist, so a crash
/// before that hands it (and only it) to the processor again.
#[test]
fn sled_consumption_without_effects_is_durable_at_the_next_persist() {
    let dir = tempfile::tempdir().unwrap();
    let seqs: Vec<u64> = {
        let s = SledStore::open(dir.path()).unwrap();
        let batch: Vec<_> = ["1", "2", "3", "4"].iter().map(|m| (alert_event(m), None)).collect();
        let seqs = accept_all(&s, &batch);
        s.persist().unwrap();
        for _ in 0..2 {
            let (seq, _) = s.next_inbox_event().unwrap().unwrap();
            s.commit(Commit { consumed: Some(seq), ..Commit::default() }).unwrap();
        }
        s.persist().unwrap();
        // Consumed after the last persist: not durable yet.
        let (seq, _) = s.next_inbox_event().unwrap().unwrap();
        s.commit(Commit { consumed: Some(seq), ..Commit::default() }).unwrap();
        assert_eq!(s.inbox_len().unwrap(), 1);
        seqs
    };
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.inbox_len().unwrap(), 2, "the two consumed before the persist stay consumed");
    assert_eq!(s.next_inbox_event().unwrap(), Some((seqs[2], alert_event("3"))));
    let snapshot = s.snapshot().unwrap();
    assert_eq!(snapshot.inbox, vec![(seqs[2], alert_event("3")), (seqs[3], alert_event("4"))]);
    // A step with effects writes the position in its own transaction.
    s.commit(Commit { consumed: Some(seqs[2]), incident: Some(open_incident(1)), ..Commit::default() }).unwrap();
    s.persist().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.next_inbox_event().unwrap(), Some((seqs[3], alert_event("4"))));
    s.commit(Commit { consumed: Some(seqs[3]), ..Commit::default() }).unwrap();
    s.persist().unwrap();
    let Acceptance::Accepted(later) = s.accept_event(&alert_event("5"), None).unwrap() else { panic!() };
    assert!(later > seqs[3], "positions keep growing across restarts");
    assert_eq!(s.next_inbox_event().unwrap(), Some((later, alert_event("5"))));
}

/// The inbox's writer makes a batch durable without writing the processor's place each time
/// (each write of it is a transaction, two more log writes): events consumed without effects
/// stay to be handed again after a crash until 1,024 of them wait, or any other persist.
#[test]
fn sled_writer_persists_write_the_processors_place_every_1024_events() {
    let dir = tempfile::tempdir().unwrap();
    let consume = |s: &SledStore, n: usize| {
        for _ in 0..n {
            let (seq, _) = s.next_inbox_event().unwrap().unwrap();
            s.commit(Commit { consumed: Some(seq), ..Commit::default() }).unwrap();
        }
    };
    let batch: Vec<_> = (0..1100).map(|i| (alert_event(&i.to_string()), None)).collect();
    let seqs = {
        let s = SledStore::open(dir.path()).unwrap();
        let seqs = accept_all(&s, &batch);
        s.persist_accepted().unwrap();
        consume(&s, 1000);
        s.persist_accepted().unwrap();
        seqs
    };
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.inbox_len().unwrap(), 1100, "1,000 consumed: the place is not written yet");
    consume(&s, 1024);
    s.persist_accepted().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.inbox_len().unwrap(), 76, "1,024 consumed: the writer's persist wrote the place");
    assert_eq!(s.next_inbox_event().unwrap().map(|(seq, _)| seq), Some(seqs[1024]));
    consume(&s, 1);
    s.persist().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.inbox_len().unwrap(), 75, "any other persist writes it at once");
}

/// A batch record carries its events' dedupe keys (one insert makes both durable); when the
/// processor is done with the record and it is dropped, its keys move to an expiry record, and
/// they refuse redeliveries and expire across reopening either way.
#[test]
fn sled_dedupe_keys_outlive_their_inbox_record() {
    let dir = tempfile::tempdir().unwrap();
    let (near, far) = (t0() + mins(60), t0() + mins(120));
    {
        let s = SledStore::open(dir.path()).unwrap();
        let batch = vec![(alert_event("1"), Some(("Ev1".to_string(), near)))];
        s.accept_events(&batch).unwrap();
        s.persist_accepted().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.accept_event(&alert_event("1"), Some(("Ev1", near))).unwrap(), Acceptance::Duplicate);
    let (seq, _) = s.next_inbox_event().unwrap().unwrap();
    s.commit(Commit { consumed: Some(seq), ..Commit::default() }).unwrap();
    s.accept_event(&alert_event("2"), Some(("Ev2", far))).unwrap();
    s.persist().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.inbox_len().unwrap(), 1, "the first record is dropped, the second waits");
    assert_eq!(s.accept_event(&alert_event("1"), Some(("Ev1", far))).unwrap(), Acceptance::Duplicate);
    assert_eq!(s.accept_event(&alert_event("2"), Some(("Ev2", far))).unwrap(), Acceptance::Duplicate);
    assert_eq!(s.expire_dedupe_keys(near + mins(1)).unwrap(), 1, "Ev1 is due; Ev2's record still holds it");
    assert!(matches!(s.accept_event(&alert_event("1"), Some(("Ev1", far))).unwrap(), Acceptance::Accepted(_)));
    s.persist().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.accept_event(&alert_event("2"), Some(("Ev2", far))).unwrap(), Acceptance::Duplicate);
    assert_eq!(s.accept_event(&alert_event("1"), Some(("Ev1", far))).unwrap(), Acceptance::Duplicate, "accepted again");
}

/// A data directory written by a build with one inbox record per event (layout 1) opens with its
/// waiting events in order and its dedupe keys still refusing and expiring.
#[test]
fn a_sled_directory_of_layout_1_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let until = t0() + mins(60);
    {
        // Layout 1 as that build wrote it: `inbox` position -> event record, `dedupe_keys`
        // key -> expiry, `dedupe_keys_by_expiry` expiry ++ key -> (), `meta` layout_version 1.
        let db = ::sled::open(dir.path().join("db")).unwrap();
        let inbox = db.open_tree("inbox").unwrap();
        for (seq, monitor) in [(7u64, "1"), (8, "2"), (70_000, "3")] {
            inbox.insert(seq.to_be_bytes(), encode(&alert_event(monitor))).unwrap();
        }
        let expiry = (until.timestamp_millis() as u64).to_be_bytes();
        db.open_tree("dedupe_keys").unwrap().insert("Ev1", &expiry).unwrap();
        let mut by_expiry = expiry.to_vec();
        by_expiry.extend_from_slice(b"Ev1");
        db.open_tree("dedupe_keys_by_expiry").unwrap().insert(by_expiry, &[]).unwrap();
        db.open_tree("meta").unwrap().insert("layout_version", &1u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.inbox_len().unwrap(), 3);
    let mut order = Vec::new();
    while let Some((seq, event)) = s.next_inbox_event().unwrap() {
        order.push(event);
        s.commit(Commit { consumed: Some(seq), ..Commit::default() }).unwrap();
    }
    assert_eq!(order, vec![alert_event("1"), alert_event("2"), alert_event("3")]);
    assert_eq!(s.accept_event(&alert_event("1"), Some(("Ev1", until))).unwrap(), Acceptance::Duplicate);
    assert_eq!(s.expire_dedupe_keys(until + mins(1)).unwrap(), 1, "layout 1's expiry entry is read");
    assert!(matches!(s.accept_event(&alert_event("1"), Some(("Ev1", until))).unwrap(), Acceptance::Accepted(_)));
    s.persist().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.next_inbox_event().unwrap().map(|(_, e)| e), Some(alert_event("1")), "migrated once, not twice");
    assert_eq!(s.inbox_len().unwrap(), 1);
}

/// A data directory of layout 2 (a tree of dedupe keys beside the per-batch expiry records)
/// opens with its keys still refusing, read from the expiry records; an expired key stays
/// expired after reopening.
#[test]
fn a_sled_directory_of_layout_2_keeps_its_dedupe_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (near, far) = (t0() + mins(60), t0() + mins(120));
    {
        // Layout 2 as that build wrote it: `inbox` batch number -> batch record, `dedupe_keys`
        // key -> expiry, `dedupe_keys_by_expiry` latest expiry ++ batch number -> JSON key list.
        let db = ::sled::open(dir.path().join("db")).unwrap();
        let batch = [alert_event("1"), alert_event("2")];
        // A batch record of version 1 (this build's version 2 without its `dedupe` part).
        let record = incident_commander::store::records::encode_inbox_batch(&[&batch[0], &batch[1]], &[], 0);
        let record = String::from_utf8(record).unwrap().replacen(r#"{"v":2,"#, r#"{"v":1,"#, 1).into_bytes();
        db.open_tree("inbox").unwrap().insert(1u64.to_be_bytes(), record).unwrap();
        let ms = |t: chrono::DateTime<chrono::Utc>| (t.timestamp_millis() as u64).to_be_bytes();
        let keys = db.open_tree("dedupe_keys").unwrap();
        keys.insert("Ev1", &ms(near)).unwrap();
        keys.insert("Ev2", &ms(far)).unwrap();
        let by_expiry = db.open_tree("dedupe_keys_by_expiry").unwrap();
        let mut first = ms(near).to_vec();
        first.extend_from_slice(&1u64.to_be_bytes());
        by_expiry.insert(first, br#"["Ev1"]"#).unwrap();
        let mut second = ms(far).to_vec();
        second.extend_from_slice(&2u64.to_be_bytes());
        by_expiry.insert(second, br#"["Ev2"]"#).unwrap();
        db.open_tree("meta").unwrap().insert("layout_version", &2u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.inbox_len().unwrap(), 2);
    assert_eq!(s.accept_event(&alert_event("1"), Some(("Ev1", far))).unwrap(), Acceptance::Duplicate);
    assert_eq!(s.accept_event(&alert_event("2"), Some(("Ev2", far))).unwrap(), Acceptance::Duplicate);
    assert_eq!(s.expire_dedupe_keys(near + mins(1)).unwrap(), 1, "Ev1's record is due, Ev2's is not");
    s.persist().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.accept_event(&alert_event("2"), Some(("Ev2", far))).unwrap(), Acceptance::Duplicate);
    assert!(
        matches!(s.accept_event(&alert_event("1"), Some(("Ev1", far))).unwrap(), Acceptance::Accepted(_)),
        "an expired key does not come back on reopening"
    );
    assert_eq!(s.snapshot().unwrap().dedupe_keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["Ev1", "Ev2"]);
}

/// A write larger than one inbox record spans several, in order, without positions colliding.
#[test]
fn a_sled_batch_larger_than_a_record_keeps_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let event = InboxEvent::SlashCommand {
        command: SlashCommand {
            command: "/incident".into(),
            text: "help".into(),
            user_id: UserId::parse("U0ALICE01").unwrap(),
            channel_id: ChannelId::parse(ALERTS).unwrap(),
            response_url: None,
            trigger_id: None,
        },
    };
    let batch: Vec<_> = (0..(1 << 16) + 3).map(|_| (event.clone(), None)).collect();
    let seqs = accept_all(&s, &batch);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "positions grow through the record boundary");
    assert_eq!(s.inbox_len().unwrap(), batch.len());
    for expected in &seqs[..(1 << 16) + 1] {
        let (seq, _) = s.next_inbox_event().unwrap().unwrap();
        assert_eq!(seq, *expected);
        s.commit(Commit { consumed: Some(seq), ..Commit::default() }).unwrap();
    }
    assert_eq!(s.inbox_len().unwrap(), 2);
}

/// Bytes written by each released record version, read back by this build.
#[test]
fn records_of_earlier_versions_from_disk_still_read() {
    let incident: Incident = decode(include_bytes!("data/incident_v1.json")).expect("v1 incident reads");
    assert_eq!(incident.id.to_string(), "INC-1");
    assert_eq!(incident.commander, Some(user(ALICE)));
    assert_eq!(incident.alerts.as_ref().unwrap().count, 1);
    let event: InboxEvent = decode(include_bytes!("data/inbox_event_v1.json")).expect("v1 inbox event reads");
    assert!(matches!(event, InboxEvent::Domain { event, .. } if matches!(*event, Event::Alert(_))));
    // Version 1 kept a Slack event as an object (a user's reply in a thread: the fields of the
    // recorded captures `message_plain_user.json` plus `thread_ts` and `parent_user_id` as in
    // `message_bot_in_thread.json`); version 2 keeps its text.
    let event: InboxEvent =
        decode(include_bytes!("data/inbox_event_v1_slack_event.json")).expect("v1 Slack event reads");
    let InboxEvent::SlackEvent { event_id, event } = &event else { panic!("{event:?}") };
    assert_eq!(event_id, "Ev0PV52K25");
    let message = event.parse().expect("the event's text is JSON");
    assert_eq!((message["type"].as_str(), message["thread_ts"].as_str()), (Some("message"), Some("1762250000.000100")));
    // A batch of such events, as layout 2 of the sled store wrote them.
    let v1 = std::str::from_utf8(include_bytes!("data/inbox_event_v1_slack_event.json")).unwrap();
    let data = &v1[v1.find(r#""data":"#).unwrap() + 7..v1.len() - 2];
    let batch = format!(r#"{{"v":1,"data":{{"event_v":1,"events":[{data},{data}]}}}}"#);
    let events = incident_commander::store::records::decode_inbox_batch(batch.as_bytes()).expect("a v1 batch reads");
    assert_eq!(events.len(), 2);
    assert!(matches!(&events[1], InboxEvent::SlackEvent { event, .. } if event.parse().unwrap() == message));
    let current: InboxEvent = decode(include_bytes!("data/inbox_event_v2.json")).expect("v2 Slack event reads");
    assert!(matches!(&current, InboxEvent::SlackEvent { event, .. } if event.parse().unwrap() == message));
    // Message keys were always written as text.
    let entry: OutboxEntry = serde_json::from_value(serde_json::json!({
        "incident": 3, "created_at": "2026-11-04T10:00:00Z",
        "op": {"op": "update_message", "channel": {"Id": "C0ALERTS1"}, "key": "INC-3/header",
               "message": {"text": "x", "blocks": []}}
    }))
    .expect("an outbox entry as written before message keys were typed");
    let SlackOp::UpdateMessage { key, .. } = entry.op else { panic!("{:?}", entry.op) };
    assert_eq!(key, MessageKey::incident(IncidentId::new(3).unwrap(), MessagePart::Header));
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
    // The Slack event of `inbox_event_v1_slack_event.json`, as this build writes it.
    let v1: InboxEvent = decode(include_bytes!("data/inbox_event_v1_slack_event.json")).unwrap();
    std::fs::write(dir.join("inbox_event_v2.json"), encode(&v1)).unwrap();
}

/// What is particular to PostgreSQL: replicas on one database, elected leadership, fencing,
/// schema versions, and moving a sled deployment in.
#[cfg(feature = "postgres")]
mod postgres_replicas {
    use super::*;
    use incident_commander::app::store::Role;
    use incident_commander::store::Replication;
    use std::time::{Duration, Instant};

    fn replica(url: &str, name: &str) -> PgStore {
        PgStore::open(&PgOptions { replication: Replication::Elect { name: name.into() }, ..PgOptions::sole(url) })
            .unwrap()
    }

    /// Waits (on the store's role signal) until `store` has `role`.
    fn until_role(store: &PgStore, role: Role) -> Duration {
        let started = Instant::now();
        let mut rx = store.role();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|r| *r == role))
                .await
                .expect("the role changes in time")
                .expect("the store is alive");
        });
        started.elapsed()
    }

    #[test]
    fn one_replica_leads_a_follower_is_fenced_and_takes_over_when_the_leader_goes() {
        let Some(db) = common::pg::test_database() else { return };
        let a = replica(&db.url, "a");
        until_role(&a, Role::Leader);
        let b = replica(&db.url, "b");
        assert_eq!(*b.role().borrow(), Role::Follower);
        // Every replica takes events in; only the leader commits.
        let Acceptance::Accepted(seq) = b.accept_event(&alert_event("1"), Some(("ev-1", t0() + mins(60)))).unwrap()
        else {
            panic!("accepted")
        };
        let refused = b.commit(Commit { consumed: Some(seq), incident: Some(open_incident(1)), ..Commit::default() });
        assert!(matches!(refused, Err(StoreError::Fenced { .. })), "{refused:?}");
        a.commit(Commit { consumed: Some(seq), incident: Some(open_incident(1)), ..Commit::default() }).unwrap();
        assert_eq!(b.inbox_len().unwrap(), 0);

        drop(a);
        let took = until_role(&b, Role::Leader);
        assert!(took < Duration::from_secs(10), "took over in {took:?}");
        b.commit(Commit { incident: Some(open_incident(2)), ..Commit::default() }).unwrap();
        let holder = db.query("SELECT holder, term FROM ic_leader");
        assert_eq!(holder[0].get::<_, String>(0), "b");
        assert_eq!(holder[0].get::<_, i64>(1), 2, "a new term per leadership");
    }

    #[test]
    fn a_leader_whose_term_ended_cannot_commit() {
        let Some(db) = common::pg::test_database() else { return };
        let a = replica(&db.url, "a");
        until_role(&a, Role::Leader);
        // Another replica started a term behind this one's back (its lock session was lost and
        // taken over while this process was paused): every write of the old term is refused.
        db.query("UPDATE ic_leader SET term = term + 1, holder = 'b'");
        let refused = a.commit(Commit { incident: Some(open_incident(1)), ..Commit::default() });
        assert!(matches!(refused, Err(StoreError::Fenced { .. })), "{refused:?}");
        let delivery = Delivery { channel: Some(channel(ALERTS)), ts: Some("1.1".into()) };
        assert!(matches!(a.put_message_ref(&root_key(), &delivery), Err(StoreError::Fenced { .. })));
        assert!(matches!(a.complete_outbox(1, None, None), Err(StoreError::Fenced { .. })));
        assert_eq!(a.all_incidents().unwrap().len(), 0, "nothing of the old term landed");
        // Taking events in is not a leader's write: it goes on.
        assert!(matches!(a.accept_event(&alert_event("2"), None), Ok(Acceptance::Accepted(_))));
    }

    #[test]
    fn replicas_accepting_the_same_deliveries_at_once_store_each_once() {
        let Some(db) = common::pg::test_database() else { return };
        let stores: Vec<Arc<PgStore>> =
            (0..3).map(|_| Arc::new(PgStore::open(&PgOptions::sole(&db.url)).unwrap())).collect();
        let threads: Vec<_> = stores
            .iter()
            .map(|s| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut accepted = 0;
                    for n in 0..200 {
                        let key = format!("delivery-{n}");
                        if let Acceptance::Accepted(_) =
                            s.accept_event(&alert_event(&n.to_string()), Some((&key, t0() + mins(60)))).unwrap()
                        {
                            accepted += 1;
                        }
                    }
                    accepted
                })
            })
            .collect();
        let accepted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(accepted, 200, "each delivery accepted by exactly one replica");
        assert_eq!(stores[0].inbox_len().unwrap(), 200);
    }

    #[test]
    fn a_schema_newer_than_the_build_is_refused() {
        let Some(db) = common::pg::test_database() else { return };
        drop(PgStore::open(&PgOptions::sole(&db.url)).unwrap());
        assert_eq!(incident_commander::store::postgres::schema_version(&db.url).unwrap(), 1);
        db.query("INSERT INTO ic_schema_migrations (version, name) VALUES (99, 'from the future')");
        let err = PgStore::open(&PgOptions::sole(&db.url)).err().expect("refused");
        let text = err.to_string();
        assert!(text.contains("version 99") && text.contains("upgrade the binary"), "{text}");
    }
}

/// On PostgreSQL, events consumed without effects are deleted together: the inbox's reads skip
/// them at once, their rows go in one delete once 256 wait (or at the next persist), and a store
/// opened before that (after a crash, or on the next leader) hands the undeleted ones out again.
#[cfg(feature = "postgres")]
#[test]
fn postgres_deletes_effect_free_consumptions_together() {
    let Some(db) = common::pg::test_database() else { return };
    let s = PgStore::open(&PgOptions::sole(&db.url)).unwrap();
    let events: Vec<_> = (0..300).map(|i| (alert_event(&i.to_string()), None)).collect();
    s.accept_events(&events).unwrap();
    let rows = || db.query("SELECT count(*) FROM ic_inbox")[0].get::<_, i64>(0);
    for handled in 1..=260 {
        let (seq, _) = s.next_inbox_event().unwrap().expect("events are waiting");
        s.commit(Commit { consumed: Some(seq), ..Commit::default() }).unwrap();
        assert_eq!(s.inbox_len().unwrap(), 300 - handled, "a consumed event leaves the inbox at once");
    }
    assert_eq!(rows(), 300 - 256, "the first 256 went in one delete, the next 4 wait");
    let reopened = PgStore::open(&PgOptions::sole(&db.url)).unwrap();
    assert_eq!(reopened.inbox_len().unwrap(), 44, "not deleted yet: handled again after a crash");
    drop(reopened);
    s.persist().unwrap();
    assert_eq!(rows(), 40);
    assert_eq!(s.inbox_len().unwrap(), 40);
    let (seq, _) = s.next_inbox_event().unwrap().unwrap();
    s.commit(Commit { consumed: Some(seq), incident: Some(open_incident(1)), ..Commit::default() }).unwrap();
    assert_eq!(rows(), 39, "a step that writes deletes its own event");
    for _ in 0..2 {
        let (seq, _) = s.next_inbox_event().unwrap().unwrap();
        s.commit(Commit { consumed: Some(seq), ..Commit::default() }).unwrap();
    }
    assert_eq!(rows(), 39);
    let (seq, _) = s.next_inbox_event().unwrap().unwrap();
    s.commit(Commit { consumed: Some(seq), incident: Some(open_incident(2)), ..Commit::default() }).unwrap();
    assert_eq!(rows(), 36, "and the consumed ones waiting, in the same transaction");
    assert_eq!(s.inbox_len().unwrap(), 36);
}
