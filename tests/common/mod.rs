//! Builders shared by the integration tests: a policy, alerts, fixed times.
#![allow(dead_code)]

#[cfg(feature = "postgres")]
pub mod pg;

use chrono::{DateTime, TimeZone, Utc};
use incident_commander::domain::alert::{Alert, AlertSource, Fingerprint, SlackMessageRef, Transition};
use incident_commander::domain::ids::{ChannelId, Priority, UserId};
use incident_commander::policy::Policy;

pub const ALERTS: &str = "C0ALERTS1";
pub const FRONT: &str = "C0FRONT01";
pub const ALICE: &str = "U0ALICE01";
pub const BOB: &str = "U0BOB0001";
pub const CAROL: &str = "U0CAROL01";
pub const DAVE: &str = "U0DAVE001";
pub const ERIN: &str = "U0ERIN001";
pub const LEAD: &str = "U0LEAD001";
pub const OUTSIDER: &str = "U0OUTSIDE";
pub const SRE: &str = "U0SRE0001";

/// Backend: Alice, Bob, Carol weekly from Monday 2026-11-02 09:00 UTC; escalation to Lead.
/// Frontend: Dave, Erin. Solo: Frank alone.
pub const POLICY: &str = r#"
[slack]
alert_channels = ["C0ALERTS1", "C0FRONT01"]
responders = ["U0SRE0001"]
incident_channel_severities = [1]

[[team]]
name = "backend"
match = ["team:backend", "service:api-*", "service:orders-*"]
members = ["U0ALICE01", "U0BOB0001", "U0CAROL01"]
rotation_start = "2026-11-02T09:00:00"
rotation_timezone = "UTC"
rotation_length = "7d"
channel = "C0ALERTS1"
escalation = ["U0LEAD001"]

[[team]]
name = "frontend"
match = ["team:frontend", "service:web-*"]
members = ["U0DAVE001", "U0ERIN001"]
rotation_start = "2026-11-02T09:00:00"
channel = "C0FRONT01"

[[team]]
name = "solo"
match = ["team:solo"]
members = ["U0FRANK01"]
channel = "C0ALERTS1"

[timers]
root_cause_reminder = "2h"

[timers.ack_timeout]
sev1 = "5m"
sev2 = "10m"
sev3 = "30m"
sev4 = "2h"

[timers.status_update]
sev1 = "15m"
sev2 = "30m"
sev3 = "1h"
sev4 = "4h"

[datadog]
customer_facet = "@usr.org_id"
refresh = "6h"
"#;

pub fn policy() -> Policy {
    Policy::parse(POLICY).expect("the test policy is valid")
}

pub fn policy_with(extra: &str) -> Policy {
    Policy::parse(&format!("{POLICY}\n{extra}")).expect("the test policy is valid")
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub fn channel(id: &str) -> ChannelId {
    ChannelId::parse(id).unwrap()
}

/// Wednesday 2026-11-04 10:00 UTC: Alice is primary on backend, Bob is next.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 4, 10, 0, 0).unwrap()
}

pub fn mins(n: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::minutes(n)
}

/// A Datadog webhook alert for monitor `monitor` with the given transition and tags.
pub fn webhook_alert(monitor: &str, transition: Transition, priority: Priority, tags: &[&str]) -> Alert {
    Alert {
        source: AlertSource::DatadogWebhook,
        fingerprint: Fingerprint::for_monitor(monitor, None),
        transition,
        priority: Some(priority),
        title: format!("[{priority}] [{transition}] API error rate high"),
        text: "Error rate above 5%".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        service: Some("api-gateway".into()),
        env: Some("prod".into()),
        monitor_id: Some(monitor.into()),
        scope: None,
        links: vec![],
        observed_at: t0(),
        slack: None,
    }
}

/// The same alert as it arrives in Slack, posted by Datadog's app as message `ts`.
pub fn slack_alert(monitor: &str, transition: Transition, ts: &str) -> Alert {
    Alert {
        source: AlertSource::DatadogSlack,
        slack: Some(SlackMessageRef { channel: channel(ALERTS), ts: ts.into() }),
        ..webhook_alert(monitor, transition, Priority::P2, &["team:backend"])
    }
}
