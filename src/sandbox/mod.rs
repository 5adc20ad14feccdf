//! The built-in sandbox: a local Slack workspace (and, with evidence, a Datadog) on loopback,
//! speaking the real wire formats so the real adapters run against it unchanged. Used by the
//! integration tests and by `incident-commander demo`.

pub mod datadog;
pub mod driver;
pub mod harness;
pub mod slack;
pub mod trackers;

/// A Datadog webhook body in the default payload's shape: every value a string, the body in
/// `%%%` fences with the monitor link (`datadog/webhooks/real-captures/` in the reference
/// folder). `event` is the delivery's own id (offset by `id_base`), so every body is a separate
/// delivery; its number is also in the text, so each stored alert can be told apart.
pub fn datadog_webhook_body(id_base: usize, event: usize, monitor: usize, transition: &str, service: &str) -> String {
    serde_json::json!({
        "id": format!("{}", id_base + event), "event_type": "query_alert_monitor",
        "title": format!("[P2] [{transition} on {{service:{service},env:prod}}] Monitor {monitor} breached"),
        "date": format!("{}", 1_800_000_000_000u64 + event as u64 * 10),
        "body": format!("%%%\nvalue {event}\n\n[[Monitor Status](https://app.datadoghq.com/monitors/{monitor})]\n%%%"),
        "org": {"id": "1", "name": "sandbox"},
    })
    .to_string()
}
