//! The incident: two roles on two tracks, its alerts, its place in Slack, and its timeline.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::alert::{Alert, AlertSource, Fingerprint, Link, Transition};
use super::ids::{ChannelId, IncidentId, Severity, UserId};
use super::messages;

/// The commander's track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    Open,
    Acknowledged,
    Mitigated,
    Resolved,
    /// Resolved, then opened again; behaves like Acknowledged until mitigated again.
    Reopened,
}

impl Status {
    pub fn is_closed(self) -> bool {
        self == Status::Resolved
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Open => "Open",
            Status::Acknowledged => "Acknowledged",
            Status::Mitigated => "Mitigated",
            Status::Resolved => "Resolved",
            Status::Reopened => "Reopened",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The investigator's track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootCause {
    Unknown,
    Found { text: String, by: UserId, at: DateTime<Utc> },
}

impl RootCause {
    pub fn is_found(&self) -> bool {
        matches!(self, RootCause::Found { .. })
    }
}

/// The two roles every incident has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Quick mitigation and communication.
    Commander,
    /// Root cause.
    Investigator,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Commander => "commander",
            Role::Investigator => "investigator",
        }
    }

    pub fn other(self) -> Role {
        match self {
            Role::Commander => Role::Investigator,
            Role::Investigator => Role::Commander,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who set the current severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeveritySetBy {
    /// The policy's rules; later suggestions may replace it.
    Rules,
    /// A person; never replaced silently.
    Person(UserId),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityChange {
    pub at: DateTime<Utc>,
    pub severity: Severity,
    pub reason: String,
    pub by: SeveritySetBy,
}

/// What an incident knows about the alerts folded into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTrack {
    pub source: AlertSource,
    /// How many alerts (including repeats) folded into the incident.
    pub count: u64,
    pub fingerprints: Vec<Fingerprint>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub last_transition: Transition,
    /// The alert side says the problem is gone; the incident stays the commander's call.
    pub recovered: bool,
    pub monitor_id: Option<String>,
    pub service: Option<String>,
    pub env: Option<String>,
    pub tags: Vec<String>,
    pub links: Vec<Link>,
    /// Recent transition changes, for flapping detection (pruned to the policy window).
    pub recent_transitions: Vec<DateTime<Utc>>,
    pub flapping_noted: bool,
    /// Slack messages (ts) of the alerts folded in, so an edit of one is not counted again.
    #[serde(default)]
    pub messages: Vec<String>,
    /// The highest priority seen among the alerts.
    #[serde(default)]
    pub priority: Option<super::ids::Priority>,
}

/// How many alert message timestamps an incident remembers.
pub const MAX_REMEMBERED_MESSAGES: usize = 200;

impl AlertTrack {
    pub fn from_alert(alert: &Alert) -> AlertTrack {
        AlertTrack {
            source: alert.source,
            count: 1,
            fingerprints: vec![alert.fingerprint.clone()],
            first_seen: alert.observed_at,
            last_seen: alert.observed_at,
            last_transition: alert.transition,
            recovered: alert.transition == Transition::Recovered,
            monitor_id: alert.monitor_id.clone(),
            service: alert.service.clone(),
            env: alert.env.clone(),
            tags: alert.tags.clone(),
            links: alert.links.clone(),
            recent_transitions: Vec::new(),
            flapping_noted: false,
            messages: alert.slack.iter().map(|m| m.ts.clone()).collect(),
            priority: alert.priority,
        }
    }
}

/// Where the incident lives in Slack. Filled in as the messages are delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackLocation {
    /// The channel holding the incident thread.
    pub channel: Option<ChannelId>,
    /// The thread's parent: the alert message, or the root message the bot posted.
    pub thread_ts: Option<String>,
    /// The header, the thread's first reply.
    pub header_ts: Option<String>,
    /// The dedicated incident channel, for severities that get one.
    pub incident_channel: Option<ChannelId>,
}

/// The messages (and the channel) the bot posts for an incident and refers to later: edits go to
/// them, and egress reports where the first three landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagePart {
    /// The thread parent the bot posted (when the incident did not start from an alert message).
    Root,
    /// The header, the thread's first reply, edited as the incident changes.
    Header,
    /// The dedicated incident channel.
    Channel,
    Postmortem,
    Evidence,
}

impl MessagePart {
    pub const ALL: [MessagePart; 5] =
        [MessagePart::Root, MessagePart::Header, MessagePart::Channel, MessagePart::Postmortem, MessagePart::Evidence];

    pub fn as_str(self) -> &'static str {
        match self {
            MessagePart::Root => "root",
            MessagePart::Header => "header",
            MessagePart::Channel => "channel",
            MessagePart::Postmortem => "postmortem",
            MessagePart::Evidence => "evidence",
        }
    }
}

/// Who did something on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// The bot itself (timers, rules).
    Bot,
    /// A monitoring system, through an alert.
    Monitor(AlertSource),
    Person(UserId),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Bot => f.write_str("incident-commander"),
            Actor::Monitor(s) => f.write_str(s.label()),
            Actor::Person(u) => f.write_str(&u.mention()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    Opened,
    AlertFolded,
    AlertTransition,
    Flapping,
    RoleChanged,
    SeverityChanged,
    SeveritySuggested,
    Acknowledged,
    StatusUpdate,
    Note,
    Pinned,
    Escalated,
    Reminder,
    Mitigated,
    RootCause,
    Resolved,
    Reopened,
    Evidence,
    /// The alert's own message was edited so that the alert changed (state, priority, title).
    AlertEdited,
    /// The alert's own message was deleted in Slack.
    AlertDeleted,
    /// What an alert storm held back, told once the storm is over.
    StormSummary,
    /// A follow-up was recorded, or marked done.
    Followup,
    /// A follow-up's ticket was filed, or could not be yet.
    Ticket,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub kind: EntryKind,
    pub text: String,
}

/// Deadlines the timers act on; stored with the incident so they survive restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// When to escalate if still unacknowledged.
    pub escalate_at: Option<DateTime<Utc>>,
    /// How many escalation steps were taken.
    pub escalations: u32,
    /// When to remind the commander to post a status update.
    pub status_reminder_at: Option<DateTime<Utc>>,
    /// When to remind the investigator about the root cause.
    pub root_cause_reminder_at: Option<DateTime<Utc>>,
    /// When to refresh the evidence message.
    #[serde(default)]
    pub evidence_refresh_at: Option<DateTime<Utc>>,
    /// When to check whether the alert storm holding this incident's messages is over.
    #[serde(default)]
    pub storm_catch_up_at: Option<DateTime<Utc>>,
    /// When to ask the tracker again for the tickets still pending (after a failure, or when an
    /// answer is overdue). Runs on resolved incidents too: follow-ups outlive the incident.
    #[serde(default)]
    pub ticket_retry_at: Option<DateTime<Utc>>,
}

impl Deadlines {
    pub fn next(&self) -> Option<DateTime<Utc>> {
        [
            self.escalate_at,
            self.status_reminder_at,
            self.root_cause_reminder_at,
            self.evidence_refresh_at,
            self.storm_catch_up_at,
            self.ticket_retry_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// What an alert storm held back for one incident: its alerts are counted here instead of each
/// posting a note, and the thread gets one catch-up note when the storm is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAlerts {
    pub since: DateTime<Utc>,
    /// Alerts folded in while held.
    pub alerts: u64,
    /// Alert state changes among them.
    pub transitions: u64,
    /// The state the alert was in when holding began.
    pub first_transition: Transition,
    /// The flapping note was due during the storm.
    pub flapping: bool,
    /// The header was last brought up to date at this time (it is refreshed now and then during
    /// a storm, not on every alert).
    pub header_synced_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub title: String,
    pub team: String,
    pub severity: Severity,
    pub severity_reason: String,
    pub severity_set_by: SeveritySetBy,
    pub severity_history: Vec<SeverityChange>,
    pub commander: Option<UserId>,
    pub investigator: Option<UserId>,
    pub status: Status,
    pub root_cause: RootCause,
    /// The alerts behind the incident; `None` for incidents declared by hand.
    pub alerts: Option<AlertTrack>,
    pub slack: SlackLocation,
    pub timeline: Vec<TimelineEntry>,
    pub deadlines: Deadlines,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub mitigated_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_status_update_at: Option<DateTime<Utc>>,
    pub resolution_summary: Option<String>,
    /// The last severity the rules suggested without applying it (a person had set it), so the
    /// same suggestion is not posted twice.
    #[serde(default)]
    pub suggested_severity: Option<Severity>,
    /// What the evidence from Datadog last said.
    #[serde(default)]
    pub evidence: Option<EvidenceState>,
    /// The postmortem draft was posted (later changes edit it).
    #[serde(default)]
    pub postmortem_posted: bool,
    /// Roles their holder took or confirmed themselves (rotation assignments are tentative).
    #[serde(default)]
    pub confirmed_roles: Vec<Role>,
    /// Set while an alert storm holds this incident's per-alert messages.
    #[serde(default)]
    pub held: Option<HeldAlerts>,
    /// The work it leaves behind, in the order recorded (`F-1`, `F-2` ...).
    #[serde(default)]
    pub followups: Vec<super::followup::Followup>,
}

/// Why evidence was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EvidencePurpose {
    Open,
    Refresh,
    Mitigation,
    Resolution,
}

/// The incident's view of its evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvidenceState {
    /// The evidence message exists (later results edit it).
    pub posted: bool,
    /// The verdict kind (`isolated`, `global`...) and global error ratio of the last good result.
    pub verdict: Option<super::evidence::VerdictKind>,
    pub error_ratio: Option<f64>,
    /// The last good result, in one line.
    pub summary: Option<String>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Timeline snapshots taken (open, mitigation, resolution).
    pub snapshots: Vec<EvidencePurpose>,
    /// The last good evidence message, kept so a failed refresh does not blank it.
    pub last_text: Option<String>,
}

/// A transition the rules refuse, with what to do instead. The text is shown to the person who
/// asked, so it says what to type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("{0} is already resolved. To work on it again, use `/incident reopen {0}`.")]
    AlreadyResolved(IncidentId),
    #[error(
        "{0} is not mitigated yet, so it cannot be resolved. The commander declares mitigation first with `/incident mitigated {0}`."
    )]
    ResolveBeforeMitigated(IncidentId),
    #[error("{id} was already acknowledged by {by}.")]
    AlreadyAcknowledged { id: IncidentId, by: String },
    #[error(
        "{0} is already mitigated. Use `/incident status {0} <text>` to post an update, or `/incident resolve {0}` when it is over."
    )]
    AlreadyMitigated(IncidentId),
    #[error("{0} is not resolved, so there is nothing to reopen.")]
    NotResolved(IncidentId),
    #[error("{user} is the {held} of {id}; one person cannot be both commander and investigator. Hand the {held} role to someone else first (`/incident {held} @someone {id}`).", user = .user.mention())]
    SamePersonBothRoles { id: IncidentId, user: UserId, held: Role },
    #[error("{holder} is already the {role} of {id}. To take over, use `/incident {role} @me {id}`.", holder = .holder.mention())]
    RoleHeld { id: IncidentId, role: Role, holder: UserId },
    #[error("{holder} took the {role} role of {id} meanwhile. To take over from them, use `/incident {role} @me {id}`.", holder = .holder.mention())]
    RoleChangedMeanwhile { id: IncidentId, role: Role, holder: UserId },
    #[error("{user} is already the {role} of {id}.", user = .user.mention())]
    AlreadyInRole { id: IncidentId, role: Role, user: UserId },
    #[error("{id} is already {severity}.")]
    SameSeverity { id: IncidentId, severity: Severity },
    #[error("{what} needs some text, e.g. `/incident {verb} {id} {example}`.")]
    MissingText { id: IncidentId, what: &'static str, verb: &'static str, example: &'static str },
    #[error("{id} has no follow-up F-{number}. `/incident followups {id}` lists them.")]
    NoSuchFollowup { id: IncidentId, number: u32 },
    #[error("F-{number} of {id} is already done.")]
    FollowupAlreadyDone { id: IncidentId, number: u32 },
    #[error("That message is already follow-up F-{number} of {id}.")]
    FollowupExists { id: IncidentId, number: u32 },
    #[error("{user} may not change {id}: only members of team {team}, its role holders and the configured responders can. Ask the commander, or get added to `slack.responders` in the policy.", user = .user.mention())]
    NotAllowed { id: IncidentId, user: UserId, team: String },
}

impl Incident {
    pub fn is_open(&self) -> bool {
        !self.status.is_closed()
    }

    /// The incident thread's address in Slack, once the thread exists and the workspace's address
    /// (`https://acme.slack.com/`) is known.
    pub fn thread_url(&self, workspace_url: Option<&str>) -> Option<String> {
        match (workspace_url, &self.slack.channel, &self.slack.thread_ts) {
            (Some(base), Some(c), Some(t)) => Some(messages::thread_link(base, c, t)),
            _ => None,
        }
    }

    /// Follow-ups whose ticket the tracker has not made yet.
    pub fn pending_tickets(&self) -> impl Iterator<Item = &super::followup::Followup> {
        self.followups.iter().filter(|f| matches!(f.ticket, super::followup::Ticket::Pending { .. }))
    }

    /// The next deadline the timers should act on: every deadline while open; once resolved,
    /// only the ticket retries (follow-ups outlive the incident).
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        if self.is_open() { self.deadlines.next() } else { self.deadlines.ticket_retry_at }
    }

    pub fn holder(&self, role: Role) -> Option<&UserId> {
        match role {
            Role::Commander => self.commander.as_ref(),
            Role::Investigator => self.investigator.as_ref(),
        }
    }

    fn holder_mut(&mut self, role: Role) -> &mut Option<UserId> {
        match role {
            Role::Commander => &mut self.commander,
            Role::Investigator => &mut self.investigator,
        }
    }

    pub fn role_of(&self, user: &UserId) -> Option<Role> {
        if self.commander.as_ref() == Some(user) {
            Some(Role::Commander)
        } else if self.investigator.as_ref() == Some(user) {
            Some(Role::Investigator)
        } else {
            None
        }
    }

    pub fn record(&mut self, at: DateTime<Utc>, actor: Actor, kind: EntryKind, text: impl Into<String>) {
        self.timeline.push(TimelineEntry { at, actor, kind, text: text.into() });
    }

    /// Refuses changes to a resolved incident, and a severity it already has.
    pub fn ensure_open_for(&self, severity: Severity) -> Result<(), TransitionError> {
        self.ensure_open()?;
        if self.severity == severity {
            return Err(TransitionError::SameSeverity { id: self.id, severity });
        }
        Ok(())
    }

    fn ensure_open(&self) -> Result<(), TransitionError> {
        if self.status.is_closed() { Err(TransitionError::AlreadyResolved(self.id)) } else { Ok(()) }
    }

    /// The commander (or anyone allowed) acknowledges: the escalation timer stops.
    pub fn acknowledge(&mut self, by: &UserId, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure_open()?;
        match self.status {
            Status::Open | Status::Reopened => {
                if self.commander.as_ref() == Some(by) && !self.confirmed_roles.contains(&Role::Commander) {
                    self.confirmed_roles.push(Role::Commander);
                }
                self.status = Status::Acknowledged;
                self.acknowledged_at.get_or_insert(now);
                self.deadlines.escalate_at = None;
                self.record(now, Actor::Person(by.clone()), EntryKind::Acknowledged, messages::acknowledged_note(by));
                Ok(())
            }
            _ => {
                let by = self
                    .timeline
                    .iter()
                    .rev()
                    .find(|e| e.kind == EntryKind::Acknowledged)
                    .map(|e| e.actor.to_string())
                    .unwrap_or_else(|| "someone".to_string());
                Err(TransitionError::AlreadyAcknowledged { id: self.id, by })
            }
        }
    }

    /// Gives `role` to `user`. With `take_over` false, a role held by someone else is refused with
    /// how to take it over. Returns the previous holder.
    pub fn assign(
        &mut self,
        role: Role,
        user: &UserId,
        by: &UserId,
        take_over: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, TransitionError> {
        self.ensure_open()?;
        if self.holder(role) == Some(user) {
            // The rotation assigned it; the holder taking it themselves confirms it, once.
            if user == by && !self.confirmed_roles.contains(&role) {
                self.confirmed_roles.push(role);
                let text = format!("{} confirmed the {role} role", user.mention());
                self.record(now, Actor::Person(by.clone()), EntryKind::RoleChanged, text);
                return Ok(Some(user.clone()));
            }
            return Err(TransitionError::AlreadyInRole { id: self.id, role, user: user.clone() });
        }
        if self.holder(role.other()) == Some(user) {
            return Err(TransitionError::SamePersonBothRoles { id: self.id, user: user.clone(), held: role.other() });
        }
        if let Some(holder) = self.holder(role)
            && !take_over
        {
            return Err(TransitionError::RoleHeld { id: self.id, role, holder: holder.clone() });
        }
        let previous = self.holder_mut(role).replace(user.clone());
        self.confirmed_roles.retain(|r| *r != role);
        if user == by {
            self.confirmed_roles.push(role);
        }
        let text = match (&previous, user == by) {
            (None, true) => format!("{} took the {role} role", user.mention()),
            (None, false) => format!("{} made {} {role}", by.mention(), user.mention()),
            (Some(prev), true) => format!("{} took over as {role} from {}", user.mention(), prev.mention()),
            (Some(prev), false) => {
                format!("{} handed the {role} role from {} to {}", by.mention(), prev.mention(), user.mention())
            }
        };
        self.record(now, Actor::Person(by.clone()), EntryKind::RoleChanged, text);
        Ok(previous)
    }

    /// A person sets the severity; it will not be replaced by rules afterwards.
    pub fn set_severity_by_person(
        &mut self,
        severity: Severity,
        reason: Option<String>,
        by: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Severity, TransitionError> {
        self.ensure_open()?;
        if severity == self.severity && self.severity_set_by == SeveritySetBy::Person(by.clone()) {
            return Err(TransitionError::SameSeverity { id: self.id, severity });
        }
        let previous = self.severity;
        let reason = reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| format!("set by {}", by.mention()));
        self.apply_severity(severity, reason, SeveritySetBy::Person(by.clone()), now);
        Ok(previous)
    }

    /// Applies a severity (from rules or a person) and records it in the history and timeline.
    pub fn apply_severity(&mut self, severity: Severity, reason: String, by: SeveritySetBy, now: DateTime<Utc>) {
        let previous = self.severity;
        self.severity = severity;
        self.severity_reason = reason.clone();
        self.severity_set_by = by.clone();
        self.severity_history.push(SeverityChange { at: now, severity, reason: reason.clone(), by: by.clone() });
        let actor = match &by {
            SeveritySetBy::Rules => Actor::Bot,
            SeveritySetBy::Person(u) => Actor::Person(u.clone()),
        };
        self.record(
            now,
            actor,
            EntryKind::SeverityChanged,
            messages::severity_changed_note(previous, severity, &reason),
        );
    }

    pub fn post_status(&mut self, text: &str, by: &UserId, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure_open()?;
        non_empty(self.id, text, "A status update", "status", "Rolled back the deploy; error rate falling")?;
        self.last_status_update_at = Some(now);
        self.record(now, Actor::Person(by.clone()), EntryKind::StatusUpdate, messages::status_update_note(text));
        Ok(())
    }

    pub fn add_note(&mut self, text: &str, by: &UserId, now: DateTime<Utc>) -> Result<(), TransitionError> {
        non_empty(self.id, text, "A note", "note", "Deploy 4512 went out at 10:02")?;
        self.record(now, Actor::Person(by.clone()), EntryKind::Note, text.trim());
        Ok(())
    }

    /// The commander declares the impact over.
    pub fn mitigate(&mut self, note: Option<&str>, by: &UserId, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure_open()?;
        if self.status == Status::Mitigated {
            return Err(TransitionError::AlreadyMitigated(self.id));
        }
        // Mitigation stops the escalation but is not an acknowledgement: time to acknowledge stays
        // unknown for an incident nobody acknowledged, so slow or missing acknowledgement shows.
        self.status = Status::Mitigated;
        self.mitigated_at = Some(now);
        self.deadlines.escalate_at = None;
        let text = messages::mitigated_note(by, note.map(str::trim).filter(|n| !n.is_empty()));
        self.record(now, Actor::Person(by.clone()), EntryKind::Mitigated, text);
        Ok(())
    }

    /// The investigator records the root cause. Allowed after resolution too, for the postmortem.
    pub fn find_root_cause(&mut self, text: &str, by: &UserId, now: DateTime<Utc>) -> Result<bool, TransitionError> {
        non_empty(self.id, text, "A root cause", "rootcause", "Connection pool exhausted after config change")?;
        let updated = self.root_cause.is_found();
        self.root_cause = RootCause::Found { text: text.trim().to_string(), by: by.clone(), at: now };
        self.deadlines.root_cause_reminder_at = None;
        self.record(now, Actor::Person(by.clone()), EntryKind::RootCause, messages::root_cause_note(text, updated));
        Ok(updated)
    }

    /// Resolving needs mitigation first.
    pub fn resolve(&mut self, summary: Option<&str>, by: &Actor, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure_open()?;
        if self.status != Status::Mitigated {
            return Err(TransitionError::ResolveBeforeMitigated(self.id));
        }
        self.status = Status::Resolved;
        self.resolved_at = Some(now);
        self.deadlines = Deadlines::default();
        self.resolution_summary = summary.map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let text = messages::resolved_note(by, self.resolution_summary.as_deref());
        self.record(now, by.clone(), EntryKind::Resolved, text);
        Ok(())
    }

    pub fn reopen(&mut self, by: &UserId, now: DateTime<Utc>) -> Result<(), TransitionError> {
        if self.status != Status::Resolved {
            return Err(TransitionError::NotResolved(self.id));
        }
        self.status = Status::Reopened;
        self.mitigated_at = None;
        self.resolved_at = None;
        self.record(now, Actor::Person(by.clone()), EntryKind::Reopened, messages::reopened_note(by));
        Ok(())
    }

    /// Time to acknowledge, mitigate and resolve, from opening.
    pub fn durations(&self) -> IncidentDurations {
        let since_open = |t: Option<DateTime<Utc>>| t.map(|t| t - self.opened_at);
        IncidentDurations {
            to_acknowledge: since_open(self.acknowledged_at),
            to_mitigate: since_open(self.mitigated_at),
            to_resolve: since_open(self.resolved_at),
            to_root_cause: match &self.root_cause {
                RootCause::Found { at, .. } => Some(*at - self.opened_at),
                RootCause::Unknown => None,
            },
        }
    }
}

/// The numbers behind MTTA, MTTM and MTTR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentDurations {
    pub to_acknowledge: Option<TimeDelta>,
    pub to_mitigate: Option<TimeDelta>,
    pub to_resolve: Option<TimeDelta>,
    pub to_root_cause: Option<TimeDelta>,
}

fn non_empty(
    id: IncidentId,
    text: &str,
    what: &'static str,
    verb: &'static str,
    example: &'static str,
) -> Result<(), TransitionError> {
    if text.trim().is_empty() { Err(TransitionError::MissingText { id, what, verb, example }) } else { Ok(()) }
}
