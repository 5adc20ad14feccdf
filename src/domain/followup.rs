//! Follow-ups: the work an incident leaves behind, each with an owner and, when a tracker is
//! configured, a ticket filed exactly once.
//!
//! A follow-up is recorded at once; its ticket is asked for with [`super::Effect::FileTicket`]
//! and answered later with [`super::Event::TicketFiled`]. Until the tracker answers, the
//! follow-up is kept as pending and asked for again on a deadline, so a tracker that is down, a
//! timeout or a crash delays the ticket but never loses it.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{IncidentId, UserId};

/// One follow-up of an incident, `F-<number>` within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followup {
    pub number: u32,
    pub text: String,
    pub owner: Option<UserId>,
    pub by: UserId,
    pub at: DateTime<Utc>,
    /// The thread message it was made from (a reaction), so the same message makes one.
    #[serde(default)]
    pub message_ts: Option<String>,
    pub ticket: Ticket,
    /// Marked done with `/incident followup done F-n`.
    #[serde(default)]
    pub done: bool,
}

impl Followup {
    pub fn label(&self) -> String {
        format!("F-{}", self.number)
    }

    pub fn is_open(&self) -> bool {
        !self.done
    }
}

/// Where a follow-up's ticket stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ticket {
    /// No tracker is configured: the follow-up lives on the timeline and in the postmortem.
    Untracked,
    /// Asked for `requests` times, not filed yet; `last_error` says why the last attempt failed.
    Pending {
        requests: u32,
        failures: u32,
        last_error: Option<String>,
    },
    Filed(FiledTicket),
}

/// A ticket the tracker made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiledTicket {
    /// What people call it: `acme/ops#12`, `OPS-12`.
    pub key: String,
    pub url: String,
}

/// How long the bot waits for a tracker's answer before asking again (the next attempt first
/// looks for the ticket the unanswered one may have made).
pub const TICKET_ANSWER_TIMEOUT: TimeDelta = TimeDelta::minutes(2);

/// When to try again after `failures` failed attempts: 1, 2, 4 ... minutes, at most 30.
pub fn retry_after(failures: u32) -> TimeDelta {
    TimeDelta::minutes(1i64 << failures.saturating_sub(1).min(5)).min(TimeDelta::minutes(30))
}

/// The text that marks a ticket as this follow-up's, so a retry finds the ticket an unanswered
/// attempt made instead of making a second one. Stable across restarts and replicas.
pub fn ticket_marker(incident: IncidentId, number: u32) -> String {
    format!("incident-commander:{incident}:F-{number}")
}

/// Parses `F-3` / `f3` / `3`.
pub fn parse_label(word: &str) -> Option<u32> {
    let w = word.trim();
    let digits = w.strip_prefix(['F', 'f']).map(|r| r.trim_start_matches('-')).unwrap_or(w);
    digits.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_half_an_hour() {
        let minutes: Vec<i64> = (1..=8).map(|f| retry_after(f).num_minutes()).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn labels_parse_in_every_spelling() {
        assert_eq!(parse_label("F-3"), Some(3));
        assert_eq!(parse_label("f12"), Some(12));
        assert_eq!(parse_label("7"), Some(7));
        assert_eq!(parse_label("F-0"), None);
        assert_eq!(parse_label("x"), None);
    }

    #[test]
    fn the_marker_names_incident_and_follow_up() {
        assert_eq!(ticket_marker(IncidentId::new(4).unwrap(), 2), "incident-commander:INC-4:F-2");
    }
}
