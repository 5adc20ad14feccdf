//! Fuzz target: title grammar, command grammar and escaping must never panic on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = incident_commander::sources::title::parse_title(s);
    let _ = incident_commander::sources::title::monitor_id(s);
    let _ = incident_commander::domain::command::parse(s);
    let escaped = incident_commander::domain::text::escape_untrusted(s);
    assert!(!escaped.contains('<'));
    let _ = incident_commander::domain::text::defuse_broadcasts(s);
});
