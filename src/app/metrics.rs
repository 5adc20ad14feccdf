//! Counters and gauges served at `GET /metrics` in the Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
    pub result: String,
}

/// Every metric the bot exports.
pub struct Metrics {
    registry: Registry,
    /// Events accepted into the inbox, by kind.
    pub events_accepted: Family<KindLabel, Counter>,
    /// Deliveries refused as duplicates (retries, redeliveries).
    pub events_duplicate: Family<KindLabel, Counter>,
    /// Events processed, by outcome (changed, ignored, refused, failed).
    pub events_processed: Family<OutcomeLabel, Counter>,
    /// Slack and Datadog calls, by method and result.
    pub api_calls: Family<MethodLabel, Counter>,
    pub incidents_opened: Counter,
    pub inbox_depth: Gauge,
    pub outbox_depth: Gauge,
    /// Socket Mode reconnects forced by the silence watchdog.
    pub socket_watchdog_reconnects: Counter,
    /// 1 while this replica is the leader, 0 while it follows.
    pub leader: Gauge,
    /// When this replica took its current role (Unix seconds, on the bot's clock).
    pub role_since: Gauge,
    /// Times this replica became the leader.
    pub leader_elections_won: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("incident_commander");
        let m = Metrics {
            events_accepted: Family::default(),
            events_duplicate: Family::default(),
            events_processed: Family::default(),
            api_calls: Family::default(),
            incidents_opened: Counter::default(),
            inbox_depth: Gauge::default(),
            outbox_depth: Gauge::default(),
            socket_watchdog_reconnects: Counter::default(),
            leader: Gauge::default(),
            role_since: Gauge::default(),
            leader_elections_won: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("events_accepted", "Events accepted into the inbox", m.events_accepted.clone());
        registry.register("events_duplicate", "Deliveries refused as duplicates", m.events_duplicate.clone());
        registry.register("events_processed", "Events processed, by outcome", m.events_processed.clone());
        registry.register("api_calls", "Slack and Datadog API calls, by method and result", m.api_calls.clone());
        registry.register("incidents_opened", "Incidents opened", m.incidents_opened.clone());
        registry.register("inbox_depth", "Events waiting in the inbox", m.inbox_depth.clone());
        registry.register("outbox_depth", "Slack calls waiting in the outbox", m.outbox_depth.clone());
        registry.register(
            "socket_watchdog_reconnects",
            "Socket Mode reconnects forced by the silence watchdog",
            m.socket_watchdog_reconnects.clone(),
        );
        registry.register("leader", "1 while this replica is the leader, 0 while it follows", m.leader.clone());
        registry.register(
            "role_since_timestamp_seconds",
            "When this replica took its current role (Unix time)",
            m.role_since.clone(),
        );
        registry.register(
            "leader_elections_won",
            "Times this replica became the leader",
            m.leader_elections_won.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn processed(&self, outcome: &str) {
        self.events_processed.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
    }

    pub fn api_call(&self, method: &str, result: &str) {
        self.api_calls.get_or_create(&MethodLabel { method: method.into(), result: result.into() }).inc();
    }
}
