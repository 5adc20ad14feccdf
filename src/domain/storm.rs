//! Storm mode: when alerts arrive in a channel faster than the policy's rate, repeats are counted
//! in one summary message per storm (edited in place) instead of producing messages each.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ChannelId, IncidentId};
use super::text::escape_untrusted;
use crate::policy::Rate;

/// One storm in one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storm {
    /// Distinguishes storms in one channel (the start time in ms).
    pub id: i64,
    pub channel: ChannelId,
    pub started_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub total: u64,
    /// Per monitor (alert title): alerts counted and the incident they belong to.
    pub monitors: BTreeMap<String, MonitorCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorCount {
    pub alerts: u64,
    pub incident: Option<IncidentId>,
}

/// What an alert's arrival means for its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weather {
    /// Normal traffic: messages as usual.
    Calm,
    /// This alert started a storm.
    Started(Storm),
    /// A storm is on; the summary needs an edit.
    Raging(Storm),
}

impl Weather {
    pub fn storm(&self) -> Option<&Storm> {
        match self {
            Weather::Calm => None,
            Weather::Started(s) | Weather::Raging(s) => Some(s),
        }
    }
}

#[derive(Debug, Default)]
struct ChannelWeather {
    arrivals: VecDeque<DateTime<Utc>>,
    storm: Option<Storm>,
}

/// Alert arrival rates per channel. Kept in memory by the processor: after a restart a storm
/// that is still going starts a new summary.
#[derive(Debug, Default)]
pub struct StormWatch {
    channels: HashMap<ChannelId, ChannelWeather>,
}

impl StormWatch {
    /// Records an alert in `channel` at `now` (its monitor label and incident) and says whether
    /// the channel is in a storm. A storm starts when more than `rate.count` alerts arrived within
    /// `rate.window`, and ends once a window passes with fewer than that.
    pub fn observe(
        &mut self,
        channel: &ChannelId,
        monitor: &str,
        incident: Option<IncidentId>,
        now: DateTime<Utc>,
        rate: Rate,
    ) -> Weather {
        let w = self.channels.entry(channel.clone()).or_default();
        w.arrivals.push_back(now);
        while w.arrivals.front().is_some_and(|t| *t <= now - rate.window) {
            w.arrivals.pop_front();
        }
        let busy = w.arrivals.len() as u32 > rate.count;
        if let Some(storm) = &w.storm
            && !busy
            && now - storm.last_at >= rate.window
        {
            w.storm = None;
        }
        let started = if busy && w.storm.is_none() {
            w.storm = Some(Storm {
                id: now.timestamp_millis(),
                channel: channel.clone(),
                started_at: now,
                last_at: now,
                total: 0,
                monitors: BTreeMap::new(),
            });
            true
        } else {
            false
        };
        let Some(storm) = w.storm.as_mut() else { return Weather::Calm };
        storm.last_at = now;
        storm.total += 1;
        let entry = storm.monitors.entry(monitor.to_string()).or_insert(MonitorCount { alerts: 0, incident });
        entry.alerts += 1;
        if entry.incident.is_none() {
            entry.incident = incident;
        }
        if started { Weather::Started(storm.clone()) } else { Weather::Raging(storm.clone()) }
    }
}

/// Most monitors listed in the summary; the rest are summed up in one line.
pub const SUMMARY_MONITORS: usize = 20;

/// The storm summary message, edited in place as the storm goes on.
pub fn storm_summary_message(storm: &Storm) -> String {
    let mut lines = vec![format!(
        ":thunder_cloud_and_rain: *Alert storm* since {}: {} alerts from {} monitors (last at {}). Repeats are counted here instead of posted one by one.",
        storm.started_at.format("%H:%M:%S UTC"),
        storm.total,
        storm.monitors.len(),
        storm.last_at.format("%H:%M:%S UTC"),
    )];
    let mut monitors: Vec<(&String, &MonitorCount)> = storm.monitors.iter().collect();
    monitors.sort_by(|a, b| b.1.alerts.cmp(&a.1.alerts).then(a.0.cmp(b.0)));
    for (name, count) in monitors.iter().take(SUMMARY_MONITORS) {
        let incident = count.incident.map(|i| format!("{i} · ")).unwrap_or_default();
        lines.push(format!(
            "• {incident}{} — {} alert{}",
            escape_untrusted(name),
            count.alerts,
            if count.alerts == 1 { "" } else { "s" }
        ));
    }
    if monitors.len() > SUMMARY_MONITORS {
        let rest: u64 = monitors[SUMMARY_MONITORS..].iter().map(|(_, c)| c.alerts).sum();
        lines.push(format!("• and {} more monitors — {rest} alerts", monitors.len() - SUMMARY_MONITORS));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn storm_starts_above_the_rate_counts_everything_and_ends_when_calm() {
        let mut watch = StormWatch::default();
        let ch = ChannelId::parse("C0ALERTS1").unwrap();
        let rate = Rate { count: 3, window: TimeDelta::seconds(60) };
        for i in 0..3 {
            assert_eq!(watch.observe(&ch, "cpu", None, t(i), rate), Weather::Calm);
        }
        let started = watch.observe(&ch, "disk", Some(IncidentId::FIRST), t(3), rate);
        assert!(matches!(started, Weather::Started(_)));
        for i in 4..10 {
            assert!(matches!(watch.observe(&ch, "cpu", None, t(i), rate), Weather::Raging(_)));
        }
        let storm = watch.observe(&ch, "cpu", None, t(10), rate).storm().cloned().unwrap();
        assert_eq!(storm.total, 8);
        assert_eq!(storm.monitors["cpu"].alerts, 7);
        assert_eq!(storm.monitors["disk"].incident, Some(IncidentId::FIRST));
        // Another channel is unaffected.
        let other = ChannelId::parse("C0OTHER01").unwrap();
        assert_eq!(watch.observe(&other, "cpu", None, t(10), rate), Weather::Calm);
        // A quiet window ends the storm.
        assert_eq!(watch.observe(&ch, "cpu", None, t(200), rate), Weather::Calm);
        let summary = storm_summary_message(&storm);
        assert!(summary.contains("8 alerts from 2 monitors"), "{summary}");
        assert!(summary.contains("• cpu — 7 alerts"), "{summary}");
    }
}
