//! Storm mode: when alerts arrive in a channel faster than the policy's rate, repeats are counted
//! in one summary message per storm (edited in place) instead of producing messages each.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ChannelId, IncidentId};
use super::policy::Rate;

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
    /// When the summary was last posted or edited.
    pub summary_at: DateTime<Utc>,
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
    /// This alert started a storm: post its summary.
    Started(Storm),
    /// A storm is on; `summary_due` when the summary should be edited now (at most every
    /// [`SUMMARY_EVERY`], so a storm of any size edits it a bounded number of times).
    Raging { storm: Storm, summary_due: bool },
}

impl Weather {
    pub fn storm(&self) -> Option<&Storm> {
        match self {
            Weather::Calm => None,
            Weather::Started(s) | Weather::Raging { storm: s, .. } => Some(s),
        }
    }
}

/// How often, at most, the storm summary is edited while the storm goes on; it gets a last edit
/// when the storm is over.
pub const SUMMARY_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

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
                summary_at: now,
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
        if started {
            return Weather::Started(storm.clone());
        }
        let summary_due = now - storm.summary_at >= SUMMARY_EVERY;
        if summary_due {
            storm.summary_at = now;
        }
        Weather::Raging { storm: storm.clone(), summary_due }
    }

    /// The storm on in `channel`, if any.
    pub fn current(&self, channel: &ChannelId) -> Option<&Storm> {
        self.channels.get(channel).and_then(|w| w.storm.as_ref())
    }

    /// Records which incident a monitor's alerts went to, once it is known (an alert is observed
    /// before its incident is opened).
    pub fn note_incident(&mut self, channel: &ChannelId, monitor: &str, incident: IncidentId) {
        if let Some(count) =
            self.channels.get_mut(channel).and_then(|w| w.storm.as_mut()).and_then(|s| s.monitors.get_mut(monitor))
        {
            count.incident.get_or_insert(incident);
        }
    }

    /// Whether a storm is on in `channel`: alerts came within the last window.
    pub fn raging(&self, channel: &ChannelId, now: DateTime<Utc>, rate: Rate) -> bool {
        self.channels.get(channel).and_then(|w| w.storm.as_ref()).is_some_and(|storm| now - storm.last_at < rate.window)
    }

    /// Ends the storms that a whole window has passed without alerts, and returns them (for
    /// their summaries' last edit).
    pub fn end_calm(&mut self, now: DateTime<Utc>, rate: Rate) -> Vec<Storm> {
        let mut over = Vec::new();
        for w in self.channels.values_mut() {
            if w.storm.as_ref().is_some_and(|storm| now - storm.last_at >= rate.window) {
                over.extend(w.storm.take());
            }
            w.arrivals.retain(|t| *t > now - rate.window);
        }
        self.channels.retain(|_, w| w.storm.is_some() || !w.arrivals.is_empty());
        over
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::messages::storm_summary_message;
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
            assert!(matches!(watch.observe(&ch, "cpu", None, t(i), rate), Weather::Raging { .. }));
        }
        assert!(watch.raging(&ch, t(10), rate));
        let storm = watch.observe(&ch, "cpu", None, t(10), rate).storm().cloned().unwrap();
        assert_eq!(storm.total, 8);
        assert_eq!(storm.monitors["cpu"].alerts, 7);
        assert_eq!(storm.monitors["disk"].incident, Some(IncidentId::FIRST));
        // Another channel is unaffected.
        let other = ChannelId::parse("C0OTHER01").unwrap();
        assert_eq!(watch.observe(&other, "cpu", None, t(10), rate), Weather::Calm);
        // A quiet window ends the storm.
        assert!(!watch.raging(&ch, t(200), rate));
        assert_eq!(watch.observe(&ch, "cpu", None, t(200), rate), Weather::Calm);
        let summary = storm_summary_message(&storm, false);
        assert!(summary.contains("8 alerts from 2 monitors"), "{summary}");
        assert!(summary.contains("• cpu — 7 alerts"), "{summary}");
        assert!(storm_summary_message(&storm, true).contains("*Alert storm over*"));
    }

    #[test]
    fn the_summary_is_edited_at_most_every_ten_seconds_and_storms_end_on_a_timer() {
        let mut watch = StormWatch::default();
        let ch = ChannelId::parse("C0ALERTS1").unwrap();
        let rate = Rate { count: 2, window: TimeDelta::seconds(60) };
        let mut edits = 0;
        for i in 0..300 {
            // Ten alerts a second for 30 s.
            let at = Utc.timestamp_millis_opt(1_800_000_000_000 + i * 100).unwrap();
            if let Weather::Raging { summary_due: true, .. } = watch.observe(&ch, "cpu", None, at, rate) {
                edits += 1;
            }
        }
        assert_eq!(edits, 2, "one edit per ten seconds after the start, not one per alert");
        let last = Utc.timestamp_millis_opt(1_800_000_000_000 + 299 * 100).unwrap();
        assert!(watch.end_calm(last + TimeDelta::seconds(30), rate).is_empty(), "not a whole window yet");
        let over = watch.end_calm(last + TimeDelta::seconds(60), rate);
        assert_eq!(over.len(), 1);
        assert_eq!(over[0].total, 298);
        assert!(!watch.raging(&ch, last + TimeDelta::seconds(60), rate));
    }
}
