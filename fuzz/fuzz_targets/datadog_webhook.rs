//! Fuzz target: the datadog_webhook parser must never panic, whatever bytes arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let now = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let _ = incident_commander::sources::datadog::parse_webhook(&v, now);
    let _ = incident_commander::sources::parse_any(&v, now, &|_| true);
});
