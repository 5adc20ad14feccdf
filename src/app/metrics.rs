//! Counters and gauges served at `GET /metrics` in the Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::incident::Incident;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityTeamLabel {
    pub severity: String,
    pub team: String,
}

/// Bucket bounds for the incident durations: 30 s to a day.
const DURATION_BUCKETS: [f64; 12] =
    [30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14_400.0, 28_800.0, 86_400.0];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Incident durations by severity and team.
pub type Durations = Family<SeverityTeamLabel, Histogram, fn() -> Histogram>;

/// What a decision changed that the incident metrics count: the opening, and each first
/// acknowledgement, mitigation and resolution with its time from the opening.
pub struct IncidentChange {
    label: SeverityTeamLabel,
    opened: bool,
    acknowledged: Option<chrono::TimeDelta>,
    mitigated: Option<chrono::TimeDelta>,
    resolved: Option<chrono::TimeDelta>,
}

impl IncidentChange {
    pub fn between(before: Option<&Incident>, after: &Incident) -> IncidentChange {
        let d = after.durations();
        let newly = |f: fn(&Incident) -> Option<chrono::DateTime<chrono::Utc>>, took: Option<chrono::TimeDelta>| {
            took.filter(|_| before.and_then(f) != f(after))
        };
        IncidentChange {
            label: SeverityTeamLabel { severity: after.severity.to_string(), team: after.team.clone() },
            opened: before.is_none(),
            acknowledged: newly(|i| i.acknowledged_at, d.to_acknowledge),
            mitigated: newly(|i| i.mitigated_at, d.to_mitigate),
            resolved: newly(|i| i.resolved_at, d.to_resolve),
        }
    }
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
    /// Incidents opened, by their severity at opening.
    pub incidents: Family<SeverityLabel, Counter>,
    /// Alerts received, by source (folded and ignored ones included).
    pub alerts: Family<SourceLabel, Counter>,
    /// Time from opening to acknowledgement, mitigation and resolution.
    pub time_to_acknowledge: Durations,
    pub time_to_mitigate: Durations,
    pub time_to_resolve: Durations,
    /// Datadog requests sent, and what is left of the spans budget this hour.
    pub datadog_requests: Counter,
    pub datadog_budget_remaining: Gauge,
    pub inbox_depth: Gauge,
    pub outbox_depth: Gauge,
    /// Transactions the inbox's writer made durable, one flush each: `events_accepted` over this
    /// is how many events a flush carries.
    pub inbox_writes: Counter,
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
            incidents: Family::default(),
            alerts: Family::default(),
            time_to_acknowledge: Family::new_with_constructor(duration_histogram),
            time_to_mitigate: Family::new_with_constructor(duration_histogram),
            time_to_resolve: Family::new_with_constructor(duration_histogram),
            datadog_requests: Counter::default(),
            datadog_budget_remaining: Gauge::default(),
            inbox_depth: Gauge::default(),
            outbox_depth: Gauge::default(),
            inbox_writes: Counter::default(),
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
        registry.register("incidents", "Incidents opened, by severity at opening", m.incidents.clone());
        registry.register("alerts", "Alerts received, by source", m.alerts.clone());
        registry.register(
            "time_to_acknowledge_seconds",
            "Time from opening to acknowledgement, by severity and team",
            m.time_to_acknowledge.clone(),
        );
        registry.register(
            "time_to_mitigate_seconds",
            "Time from opening to mitigation, by severity and team",
            m.time_to_mitigate.clone(),
        );
        registry.register(
            "time_to_resolve_seconds",
            "Time from opening to resolution, by severity and team",
            m.time_to_resolve.clone(),
        );
        registry.register(
            "datadog_requests",
            "Datadog API requests sent (cache hits not counted)",
            m.datadog_requests.clone(),
        );
        registry.register(
            "datadog_spans_budget_remaining",
            "Spans API requests left in the current hour's budget",
            m.datadog_budget_remaining.clone(),
        );
        registry.register("inbox_depth", "Events waiting in the inbox", m.inbox_depth.clone());
        registry.register("outbox_depth", "Slack calls waiting in the outbox", m.outbox_depth.clone());
        registry.register(
            "inbox_writes",
            "Batches of accepted events the inbox writer stored, each in one transaction and one flush",
            m.inbox_writes.clone(),
        );
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

    /// Records what [`IncidentChange::between`] found, once the change is committed.
    pub fn incident_changed(&self, change: IncidentChange) {
        if change.opened {
            self.incidents.get_or_create(&SeverityLabel { severity: change.label.severity.clone() }).inc();
        }
        for (family, took) in [
            (&self.time_to_acknowledge, change.acknowledged),
            (&self.time_to_mitigate, change.mitigated),
            (&self.time_to_resolve, change.resolved),
        ] {
            if let Some(t) = took {
                family.get_or_create(&change.label).observe(t.num_milliseconds().max(0) as f64 / 1000.0);
            }
        }
    }

    pub fn alert_received(&self, source: &str) {
        self.alerts.get_or_create(&SourceLabel { source: source.into() }).inc();
    }

    pub fn api_call(&self, method: &str, result: &str) {
        self.api_calls.get_or_create(&MethodLabel { method: method.into(), result: result.into() }).inc();
    }
}
