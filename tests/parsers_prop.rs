//! Property tests: the parsers of untrusted input never panic, and the title grammar reads back
//! what it is given.

use chrono::{TimeZone, Utc};
use incident_commander::domain::alert::Transition;
use incident_commander::domain::command;
use incident_commander::domain::ids::Priority;
use incident_commander::domain::text::{defuse_broadcasts, escape_untrusted};
use incident_commander::sources::title::{monitor_id, parse_title};
use incident_commander::sources::{datadog, parse_any, prometheus, slack_message};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON, biased towards the keys the parsers look at.
fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "type",
        "subtype",
        "title",
        "text",
        "body",
        "alerts",
        "labels",
        "annotations",
        "status",
        "event",
        "message",
        "attachments",
        "blocks",
        "fields",
        "ts",
        "channel",
        "bot_id",
        "username",
        "alert",
        "version",
        "fingerprint",
        "startsAt",
        "endsAt",
        "date",
        "tags",
        "alert_transition",
        "elements",
        "value",
        "orgId",
        "bot_profile",
        "name",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "message",
            "bot_message",
            "message_changed",
            "firing",
            "resolved",
            "4",
            "1",
            "[P1] [Triggered on {a:b}] x",
            "https://app.datadoghq.com/monitors/12",
            "C0ALERTS1",
            "1700000000.000100",
            "Datadog",
            "null",
            "%%%\nbody\n%%%",
            "0001-01-01T00:00:00Z"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn now() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn parsers_never_panic_on_any_json(v in json_value()) {
        let _ = datadog::parse_webhook(&v, now());
        let _ = prometheus::parse_alertmanager(&v, now());
        let _ = prometheus::parse_grafana(&v, now());
        let _ = slack_message::parse_event(&v, now(), &|_| true);
        let _ = parse_any(&v, now(), &|_| true);
    }

    #[test]
    fn text_parsers_never_panic_on_any_string(s in ".{0,200}") {
        let _ = parse_title(&s);
        let _ = monitor_id(&s);
        let _ = command::parse(&s);
        let escaped = escape_untrusted(&s);
        prop_assert!(!escaped.contains('<') && !escaped.contains('>'));
        let defused = defuse_broadcasts(&s);
        prop_assert!(!defused.contains("<!channel") && !defused.contains("<!here") && !defused.contains("<!everyone"));
    }

    #[test]
    fn title_grammar_reads_back_its_parts(
        p in 1u8..=5,
        t in prop::sample::select(Transition::ALL.to_vec()),
        scope in prop::option::of("[a-z]{1,8}:[a-z0-9-]{1,8}"),
        name in "[A-Za-z][A-Za-z0-9 ]{0,30}[A-Za-z0-9]",
    ) {
        let marker = match &scope {
            Some(s) => format!("[{} on {{{s}}}]", t.name()),
            None => format!("[{}]", t.name()),
        };
        let title = format!("[P{p}] {marker} {name}");
        let parsed = parse_title(&title);
        prop_assert_eq!(parsed.priority, Priority::from_level(p));
        prop_assert_eq!(parsed.transition, Some(t));
        prop_assert_eq!(parsed.scope, scope);
        prop_assert_eq!(parsed.name, name.trim().to_string());
    }
}
