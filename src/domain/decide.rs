//! `decide`: given an incident's state, one event, the time and the policy, what changes and what
//! the bot says. Pure: the app shell loads state, calls this, and persists the result with its
//! effects in one step.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::alert::{Alert, SlackMessageRef, Transition};
use super::evidence::{Evidence, evidence_message, evidence_summary};
use super::followup::{self, FiledTicket, Followup, Ticket};
use super::ids::{ChannelId, IncidentId, Severity, UserId};
use super::incident::{
    Actor, AlertTrack, Deadlines, EntryKind, EvidencePurpose, EvidenceState, HeldAlerts, Incident, MessagePart, Role,
    RootCause, SeveritySetBy, SlackLocation, Status, TransitionError,
};
use super::messages;
use super::messages::storm_summary_message;
use super::policy::Policy;
use super::severity::{Assessment, SeverityInput, assess};
use super::storm::{StormWatch, Weather};

/// Something that happened, as the domain sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// An alert arrived from any source.
    Alert(Alert),
    /// A person declared an incident by hand.
    Declare {
        by: UserId,
        title: String,
        severity: Option<Severity>,
        team: Option<String>,
        /// Where the command was typed, if the bot can post there.
        channel: Option<ChannelId>,
    },
    /// A person acted on an existing incident.
    Act { by: UserId, action: Action },
    /// Time passed: deadlines may be due.
    Tick,
    /// A reaction on an alert message asked to open an incident from it.
    OpenFromAlert { by: UserId, alert: Alert },
    /// Evidence from Datadog arrived (or could not be had, and why).
    Evidence { purpose: EvidencePurpose, result: Result<Box<Evidence>, String> },
    /// An alert's own Slack message was edited: `alert` is what it says now, `before` what it said
    /// before the edit. Slack sends edits for unfurls, thread replies and cosmetic changes too, so
    /// only a change of the alert itself (state, priority, title) changes the incident, and an
    /// edit never opens one.
    AlertEdited { alert: Box<Alert>, before: Box<Alert> },
    /// An alert's own Slack message was deleted.
    AlertDeleted { message: SlackMessageRef, title: String },
    /// One of the incident's own messages was delivered: where its root, header or dedicated
    /// channel landed.
    Delivered { part: MessagePart, channel: ChannelId, ts: String },
    /// The tracker answered for follow-up `F-<followup>`: its ticket, or why there is none yet.
    TicketFiled { followup: u32, result: Result<FiledTicket, String> },
}

/// What a person can do to an incident, however they asked (command, button, reaction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Acknowledge,
    SetSeverity {
        severity: Severity,
        reason: Option<String>,
    },
    /// Accept the rules' suggestion (the suggestion button).
    AcceptSuggestedSeverity {
        severity: Severity,
    },
    /// `user: None` claims the role for the actor; `take_over` allows replacing a holder.
    Claim {
        role: Role,
        user: Option<UserId>,
        take_over: bool,
    },
    /// Take a role over from `from`, who held it when the person chose to (a header button):
    /// refused if someone else holds it by then; for `from` themselves it confirms the role.
    TakeOver {
        role: Role,
        from: UserId,
    },
    Status {
        text: String,
    },
    Mitigated {
        note: Option<String>,
    },
    RootCause {
        text: String,
    },
    Resolve {
        summary: Option<String>,
    },
    Reopen,
    Note {
        text: String,
    },
    /// A message in the thread was pinned to the timeline (reaction).
    Pin {
        text: String,
        author: Option<UserId>,
    },
    /// Work the incident leaves behind; `message_ts` is the thread message it was made from (a
    /// reaction), which makes at most one.
    Followup {
        text: String,
        owner: Option<UserId>,
        message_ts: Option<String>,
    },
    /// `F-<number>` is done.
    FollowupDone {
        number: u32,
    },
}

impl Action {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Acknowledge => "ack",
            Action::SetSeverity { .. } => "sev",
            Action::AcceptSuggestedSeverity { .. } => "accept_severity",
            Action::Claim { role: Role::Commander, .. } => "commander",
            Action::Claim { role: Role::Investigator, .. } => "investigator",
            Action::TakeOver { role: Role::Commander, .. } => "take_over_commander",
            Action::TakeOver { role: Role::Investigator, .. } => "take_over_investigator",
            Action::Status { .. } => "status",
            Action::Mitigated { .. } => "mitigated",
            Action::RootCause { .. } => "rootcause",
            Action::Resolve { .. } => "resolve",
            Action::Reopen => "reopen",
            Action::Note { .. } => "note",
            Action::Pin { .. } => "pin",
            Action::Followup { .. } => "followup",
            Action::FollowupDone { .. } => "followup_done",
        }
    }
}

/// What the bot does because of a decision, relative to the incident decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Post the root message that parents the incident thread (incidents not from a Slack message).
    PostRoot,
    /// Post the header as the thread's first reply, or edit it in place if it exists.
    SyncHeader,
    /// A message in the incident thread (and the incident channel, if there is one).
    Reply(String),
    /// A reaction by the bot on a message.
    React { channel: ChannelId, ts: String, emoji: String },
    /// A private answer to the person who caused the event.
    Answer(String),
    /// Create the dedicated incident channel and invite the role holders.
    CreateIncidentChannel,
    /// Post the postmortem draft in the thread.
    PostPostmortem,
    /// Edit the postmortem draft posted earlier (late root cause, resolution evidence).
    UpdatePostmortem,
    /// Invite people to the incident's dedicated channel (new role holders).
    InviteToChannel(Vec<UserId>),
    /// The rules suggest another severity than the one a person set: offer it with a button.
    SuggestSeverity { severity: Severity, reason: String },
    /// Ask Datadog for evidence (answered later with [`Event::Evidence`]).
    RequestEvidence(EvidencePurpose),
    /// Post the evidence message (`first`) or edit it in place.
    PublishEvidence { text: String, first: bool },
    /// A message at the top of the incident's dedicated channel.
    PostInIncidentChannel(String),
    /// Post (`first`) or edit the one summary of an alert storm in `channel` (not an incident's
    /// message: it counts every incident's alerts).
    StormSummary { channel: ChannelId, storm: i64, text: String, first: bool },
    /// Ask the tracker for follow-up `F-<n>`'s ticket (answered later with
    /// [`Event::TicketFiled`]).
    FileTicket(u32),
}

/// The result of a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The incident (new or existing) changed; persist it and carry out the effects.
    Changed { incident: Box<Incident>, effects: Vec<Effect> },
    /// Nothing to do, and why (shown by `simulate`, logged by the bot).
    Ignored { reason: String },
}

/// The incident an event is about, as the processor found it.
#[derive(Debug, Clone, Copy)]
pub enum State<'a> {
    /// No incident yet: one opened by this event gets `id`.
    New {
        id: IncidentId,
    },
    Existing(&'a Incident),
}

/// The clock reading and the policy, shared by every decision, and the weather of the channel the
/// event concerns.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub now: DateTime<Utc>,
    pub policy: &'a Policy,
    /// The channel is in an alert storm (see [`super::storm`]): per-alert messages are held and
    /// counted, and told in one catch-up note when it is over.
    pub storm: bool,
    /// The workspace's address (`https://acme.slack.com/`), to link threads; `None` leaves links
    /// out.
    pub workspace_url: Option<&'a str>,
}

impl<'a> Context<'a> {
    /// Calm weather.
    pub fn new(now: DateTime<Utc>, policy: &'a Policy) -> Context<'a> {
        Context { now, policy, storm: false, workspace_url: None }
    }

    /// The same, during an alert storm in the event's channel (or not).
    pub fn in_storm(self, storm: bool) -> Context<'a> {
        Context { storm, ..self }
    }

    /// The same, linking threads in this workspace.
    pub fn in_workspace(self, workspace_url: Option<&'a str>) -> Context<'a> {
        Context { workspace_url, ..self }
    }
}

/// One event's decision in its channel's weather, with the channel-wide effects it caused.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Result<Outcome, TransitionError>,
    /// Effects for the channel rather than the incident: the storm summary, posted or edited.
    pub channel_effects: Vec<Effect>,
}

/// Decides one event as [`decide`] does, first weighing it in its channel's weather: every alert
/// counts toward its channel's rate, and in a storm the incident's per-alert messages are held
/// (see [`super::storm`]); the storm's one summary is posted when it starts and edited now and
/// then while it lasts. A timer pass on an incident whose channel is in a storm holds its
/// reminders too.
pub fn decide_in_weather(state: State<'_>, event: &Event, storms: &mut StormWatch, ctx: Context<'_>) -> Decision {
    let existing = match state {
        State::Existing(incident) => Some(incident),
        State::New { .. } => None,
    };
    let rate = ctx.policy.alerts.storm;
    let weather = match event {
        Event::Alert(alert) | Event::OpenFromAlert { alert, .. } => {
            let channel = weather_channel(alert, existing, ctx.policy);
            let weather = storms.observe(&channel, &alert.name(), existing.map(|i| i.id), ctx.now, rate);
            Some((channel, alert, weather))
        }
        _ => None,
    };
    let storm = match (&weather, event, existing) {
        (Some((_, _, weather)), _, _) => weather.storm().is_some(),
        (None, Event::Tick, Some(incident)) => {
            incident.slack.channel.as_ref().is_some_and(|c| storms.raging(c, ctx.now, rate))
        }
        _ => false,
    };
    let outcome = decide(state, event, ctx.in_storm(storm));
    let mut channel_effects = Vec::new();
    if let Some((channel, alert, weather)) = weather {
        if let (Ok(Outcome::Changed { incident, .. }), None) = (&outcome, existing) {
            storms.note_incident(&channel, &alert.name(), incident.id);
        }
        let first = match weather {
            Weather::Calm | Weather::Raging { summary_due: false, .. } => None,
            Weather::Started(_) => Some(true),
            Weather::Raging { .. } => Some(false),
        };
        if let (Some(first), Some(storm)) = (first, storms.current(&channel)) {
            channel_effects.push(Effect::StormSummary {
                channel: channel.clone(),
                storm: storm.id,
                text: storm_summary_message(storm, false),
                first,
            });
        }
    }
    Decision { outcome, channel_effects }
}

/// The timers' pass over the weather: storms that a whole window has passed without alerts are
/// over, and their summaries get a last edit.
pub fn clear_weather(storms: &mut StormWatch, ctx: Context<'_>) -> Vec<Effect> {
    storms
        .end_calm(ctx.now, ctx.policy.alerts.storm)
        .into_iter()
        .map(|storm| Effect::StormSummary {
            channel: storm.channel.clone(),
            storm: storm.id,
            text: storm_summary_message(&storm, true),
            first: false,
        })
        .collect()
}

/// The channel whose weather an alert belongs to: where it was posted, or where its incident
/// lives, or (for a new incident from a webhook) its team's channel.
fn weather_channel(alert: &Alert, existing: Option<&Incident>, policy: &Policy) -> ChannelId {
    alert
        .slack
        .as_ref()
        .map(|m| m.channel.clone())
        .or_else(|| existing.and_then(|i| i.slack.channel.clone()))
        .unwrap_or_else(|| policy.route(alert).channel.clone())
}

/// Decides one event. Refusals come back as [`TransitionError`]s whose text tells the person what
/// to do instead.
pub fn decide(state: State<'_>, event: &Event, ctx: Context<'_>) -> Result<Outcome, TransitionError> {
    match (state, event) {
        (State::New { id }, Event::Alert(alert)) => Ok(open_from_alert(id, alert, None, ctx)),
        (State::New { id }, Event::OpenFromAlert { by, alert }) => Ok(open_from_alert(id, alert, Some(by), ctx)),
        (State::Existing(incident), Event::Alert(alert) | Event::OpenFromAlert { alert, .. }) => {
            Ok(fold_alert(incident, alert, ctx))
        }
        (State::New { id }, Event::Declare { by, title, severity, team, channel }) => {
            Ok(declare(id, by, title, *severity, team.as_deref(), channel.as_ref(), ctx))
        }
        (State::Existing(incident), Event::Declare { .. }) => Ok(Outcome::Ignored {
            reason: format!("{} already exists; a declaration always opens a new incident", incident.id),
        }),
        (State::Existing(incident), Event::Act { by, action }) => act(incident, by, action, ctx),
        (State::New { .. }, Event::Act { .. }) => Ok(Outcome::Ignored { reason: "no such incident".into() }),
        (State::Existing(incident), Event::Tick) => Ok(tick(incident, ctx)),
        (State::New { .. }, Event::Tick) => Ok(Outcome::Ignored { reason: "no incident to check".into() }),
        (State::Existing(incident), Event::Evidence { purpose, result }) => {
            Ok(evidence(incident, *purpose, result, ctx))
        }
        (State::New { .. }, Event::Evidence { .. }) => {
            Ok(Outcome::Ignored { reason: "evidence for no incident".into() })
        }
        (State::Existing(incident), Event::AlertEdited { alert, before }) => {
            Ok(edit_alert(incident, alert, before, ctx))
        }
        (State::New { .. }, Event::AlertEdited { .. }) => Ok(Outcome::Ignored {
            reason: "an edited message whose alert has no incident: edits never open incidents".into(),
        }),
        (State::Existing(incident), Event::AlertDeleted { title, .. }) => Ok(alert_deleted(incident, title, ctx)),
        (State::New { .. }, Event::AlertDeleted { .. }) => {
            Ok(Outcome::Ignored { reason: "a deleted message whose alert has no incident".into() })
        }
        (State::Existing(incident), Event::Delivered { part, channel, ts }) => {
            Ok(delivered(incident, *part, channel, ts, ctx))
        }
        (State::New { .. }, Event::Delivered { .. }) => {
            Ok(Outcome::Ignored { reason: "delivery for an unknown incident".into() })
        }
        (State::Existing(incident), Event::TicketFiled { followup, result }) => {
            Ok(ticket_filed(incident, *followup, result, ctx))
        }
        (State::New { .. }, Event::TicketFiled { .. }) => {
            Ok(Outcome::Ignored { reason: "a ticket for an unknown incident".into() })
        }
    }
}

/// Egress says where one of the incident's messages landed: the thread root and header are
/// remembered (later messages thread on them and edits find them); a new dedicated channel is
/// noted, announced in the thread, shown on the header and introduced in the channel itself.
fn delivered(incident: &Incident, part: MessagePart, channel: &ChannelId, ts: &str, ctx: Context<'_>) -> Outcome {
    let mut next = incident.clone();
    match part {
        MessagePart::Root => {
            next.slack.channel = Some(channel.clone());
            next.slack.thread_ts = Some(ts.to_string());
            changed(next, Vec::new())
        }
        MessagePart::Header => {
            next.slack.header_ts = Some(ts.to_string());
            changed(next, Vec::new())
        }
        MessagePart::Channel => {
            next.slack.incident_channel = Some(channel.clone());
            next.record(ctx.now, Actor::Bot, EntryKind::Note, messages::incident_channel_note(channel));
            let thread = next.thread_url(ctx.workspace_url);
            let effects = vec![
                Effect::SyncHeader,
                Effect::Reply(messages::incident_channel_created_message(channel)),
                Effect::PostInIncidentChannel(messages::incident_channel_intro_message(&next, thread.as_deref())),
            ];
            changed(next, effects)
        }
        MessagePart::Postmortem | MessagePart::Evidence => {
            Outcome::Ignored { reason: format!("the {} needs no delivery report", part.as_str()) }
        }
    }
}

fn changed(incident: Incident, effects: Vec<Effect>) -> Outcome {
    Outcome::Changed { incident: Box::new(incident), effects }
}

fn severity_for(
    alert_priority: Option<super::ids::Priority>,
    tags: &[String],
    team: &str,
    policy: &Policy,
) -> Assessment {
    assess(&policy.severity, SeverityInput { priority: alert_priority, tags, team, evidence: None })
}

/// The postmortem effect: posted the first time, edited after.
fn postmortem_effect(incident: &mut Incident) -> Effect {
    if std::mem::replace(&mut incident.postmortem_posted, true) {
        Effect::UpdatePostmortem
    } else {
        Effect::PostPostmortem
    }
}

/// Opening deadlines for a fresh incident.
fn initial_deadlines(severity: Severity, now: DateTime<Utc>, policy: &Policy) -> Deadlines {
    Deadlines {
        escalate_at: Some(now + policy.timers.ack_timeout.get(severity)),
        escalations: 0,
        status_reminder_at: Some(now + policy.timers.status_update.get(severity)),
        root_cause_reminder_at: None,
        evidence_refresh_at: Some(now + policy.datadog.refresh),
        storm_catch_up_at: None,
        ticket_retry_at: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn new_incident(
    id: IncidentId,
    title: String,
    team_name: &str,
    assessment: Assessment,
    set_by: SeveritySetBy,
    alerts: Option<AlertTrack>,
    slack: SlackLocation,
    ctx: Context<'_>,
) -> Incident {
    let team = ctx.policy.team(team_name).unwrap_or_else(|| ctx.policy.default_team());
    let shift = team.rotation.shift_at(ctx.now);
    let mut incident = Incident {
        id,
        title,
        team: team.name.clone(),
        severity: assessment.severity,
        severity_reason: assessment.reason.clone(),
        severity_set_by: set_by.clone(),
        severity_history: vec![super::incident::SeverityChange {
            at: ctx.now,
            severity: assessment.severity,
            reason: assessment.reason.clone(),
            by: set_by,
        }],
        commander: Some(shift.primary.clone()),
        investigator: shift.next.cloned(),
        status: Status::Open,
        root_cause: RootCause::Unknown,
        alerts,
        slack,
        timeline: Vec::new(),
        deadlines: initial_deadlines(assessment.severity, ctx.now, ctx.policy),
        opened_at: ctx.now,
        acknowledged_at: None,
        mitigated_at: None,
        resolved_at: None,
        last_status_update_at: None,
        resolution_summary: None,
        suggested_severity: None,
        evidence: None,
        postmortem_posted: false,
        confirmed_roles: Vec::new(),
        held: None,
        followups: Vec::new(),
    };
    let note = messages::opened_note(incident.severity, &assessment.reason, shift.primary, shift.next);
    incident.record(ctx.now, Actor::Bot, EntryKind::Opened, note);
    incident
}

fn opening_effects(incident: &Incident, needs_root: bool, ctx: Context<'_>) -> Vec<Effect> {
    let mut effects = Vec::new();
    if needs_root {
        effects.push(Effect::PostRoot);
    }
    effects.push(Effect::SyncHeader);
    if incident.investigator.is_none() {
        effects.push(Effect::Reply(messages::volunteer_needed_message(incident.id, &incident.team)));
    }
    if ctx.policy.slack.incident_channel_severities.contains(&incident.severity) {
        effects.push(Effect::CreateIncidentChannel);
    }
    effects.push(Effect::RequestEvidence(EvidencePurpose::Open));
    effects
}

fn open_from_alert(id: IncidentId, alert: &Alert, by: Option<&UserId>, ctx: Context<'_>) -> Outcome {
    if by.is_none() && !ctx.policy.alerts.open_on.contains(&alert.transition) {
        let reason = match alert.transition {
            Transition::Recovered => "a Recovered alert with no open incident: nothing to do".to_string(),
            t => format!(
                "{t} alerts do not open incidents (alerts.open_on); react with :{}: on the alert to open one",
                ctx.policy.emoji.open
            ),
        };
        return Outcome::Ignored { reason };
    }
    let team = ctx.policy.route(alert);
    let tags = alert.routing_tags();
    let assessment = severity_for(alert.priority, &tags, &team.name, ctx.policy);
    let slack = match &alert.slack {
        Some(SlackMessageRef { channel, ts }) => {
            SlackLocation { channel: Some(channel.clone()), thread_ts: Some(ts.clone()), ..SlackLocation::default() }
        }
        None => SlackLocation { channel: Some(team.channel.clone()), ..SlackLocation::default() },
    };
    let needs_root = slack.thread_ts.is_none();
    let title = alert.name();
    let mut incident = new_incident(
        id,
        title,
        &team.name,
        assessment,
        SeveritySetBy::Rules,
        Some(AlertTrack::from_alert(alert)),
        slack,
        ctx,
    );
    if let Some(by) = by {
        incident.record(
            ctx.now,
            Actor::Person(by.clone()),
            EntryKind::Note,
            messages::opened_from_alert_note(alert.transition, by),
        );
    }
    let effects = opening_effects(&incident, needs_root, ctx);
    changed(incident, effects)
}

/// How often, at most, an incident's header is edited while a storm holds its messages (the
/// header stays roughly current; the storm summary carries the live counts).
pub const STORM_HEADER_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

fn fold_alert(current: &Incident, alert: &Alert, ctx: Context<'_>) -> Outcome {
    let mut incident = current.clone();
    let policy = ctx.policy;
    let thread_ts = incident.slack.thread_ts.clone();
    let track = incident.alerts.get_or_insert_with(|| AlertTrack::from_alert(alert));
    // The same Slack message again (a reaction opening an alert already folded in) is not a new
    // alert.
    let same_message = alert
        .slack
        .as_ref()
        .is_some_and(|m| thread_ts.as_deref() == Some(m.ts.as_str()) || track.messages.contains(&m.ts));
    if !same_message {
        track.count += 1;
        if let Some(m) = &alert.slack {
            track.messages.push(m.ts.clone());
            let excess = track.messages.len().saturating_sub(super::incident::MAX_REMEMBERED_MESSAGES);
            track.messages.drain(..excess);
        }
    }
    track.last_seen = track.last_seen.max(alert.observed_at);
    if let Some(p) = alert.priority {
        track.priority = Some(track.priority.map_or(p, |q| q.min(p)));
    }
    if !track.fingerprints.contains(&alert.fingerprint) {
        track.fingerprints.push(alert.fingerprint.clone());
    }
    let previous = track.last_transition;
    let mut effects = Vec::new();
    let change = apply_transition(&mut incident, alert.transition, ctx);
    let monitor = Actor::Monitor(alert.source);
    if ctx.storm && incident.is_open() {
        hold_for_storm(&mut incident, previous, change.as_ref(), ctx, &mut effects);
    } else {
        effects.push(Effect::SyncHeader);
        match change.and_then(|c| c.note) {
            Some((kind, text)) => {
                let note = messages::alert_transition_note(previous, alert.transition, false);
                incident.record(ctx.now, monitor.clone(), kind, note);
                effects.push(Effect::Reply(text));
            }
            None if !same_message => incident.record(
                ctx.now,
                monitor.clone(),
                EntryKind::AlertFolded,
                messages::alert_repeated_note(alert.transition),
            ),
            None => {}
        }
        if let Some(SlackMessageRef { channel, ts }) = &alert.slack
            && !same_message
        {
            effects.push(Effect::React {
                channel: channel.clone(),
                ts: ts.clone(),
                emoji: policy.emoji.folded.clone(),
            });
        }
    }
    if alert.transition.is_problem() && incident.is_open() {
        reassess_severity(&mut incident, alert, ctx, &mut effects);
    }
    resolve_on_recovery(&mut incident, alert, ctx, &mut effects);
    changed(incident, effects)
}

/// A change of the alert's state, as the incident took it in.
struct TransitionChange {
    /// The thread note it calls for, with its timeline kind; `None` once flapping was noted.
    note: Option<(EntryKind, String)>,
}

/// Moves the incident's alert track to `to`, keeping count of changes for flapping. `None` when
/// the alert was already in that state.
fn apply_transition(incident: &mut Incident, to: Transition, ctx: Context<'_>) -> Option<TransitionChange> {
    let policy = ctx.policy;
    let track = incident.alerts.as_mut()?;
    let previous = track.last_transition;
    if previous == to {
        return None;
    }
    track.last_transition = to;
    track.recovered = to == Transition::Recovered;
    let window_start = ctx.now - policy.alerts.flapping.window;
    track.recent_transitions.retain(|t| *t >= window_start);
    track.recent_transitions.push(ctx.now);
    let flapping = track.recent_transitions.len() as u32 >= policy.alerts.flapping.count;
    let note = if flapping && !track.flapping_noted {
        track.flapping_noted = true;
        let text = messages::flapping_message(track.recent_transitions.len() as u32, policy.alerts.flapping.window);
        Some((EntryKind::Flapping, text))
    } else if !track.flapping_noted {
        Some((EntryKind::AlertTransition, messages::transition_changed_message(previous, to)))
    } else {
        None
    };
    Some(TransitionChange { note })
}

/// During a storm an alert folds in silently: it is counted for the catch-up note, the header is
/// refreshed at most every [`STORM_HEADER_EVERY`], and the catch-up waits for a storm window
/// without alerts.
fn hold_for_storm(
    incident: &mut Incident,
    previous: Transition,
    change: Option<&TransitionChange>,
    ctx: Context<'_>,
    effects: &mut Vec<Effect>,
) {
    let held = incident.held.get_or_insert(HeldAlerts {
        since: ctx.now,
        alerts: 0,
        transitions: 0,
        first_transition: previous,
        flapping: false,
        header_synced_at: None,
    });
    held.alerts += 1;
    if let Some(change) = change {
        held.transitions += 1;
        if matches!(change.note, Some((EntryKind::Flapping, _))) {
            held.flapping = true;
        }
    }
    if held.header_synced_at.is_none_or(|t| ctx.now - t >= STORM_HEADER_EVERY) {
        held.header_synced_at = Some(ctx.now);
        effects.push(Effect::SyncHeader);
    }
    incident.deadlines.storm_catch_up_at = Some(ctx.now + ctx.policy.alerts.storm.window);
}

/// What a storm held back, told in the thread once: on the first timer pass after the storm, or
/// when the incident is resolved before that.
fn catch_up(incident: &mut Incident, now: DateTime<Utc>, effects: &mut Vec<Effect>) {
    incident.deadlines.storm_catch_up_at = None;
    let Some(held) = incident.held.take() else { return };
    let Some(track) = &incident.alerts else { return };
    let text = messages::storm_catch_up_message(&held, track.last_transition, track.last_seen);
    incident.record(now, Actor::Bot, EntryKind::StormSummary, messages::storm_held_note(&held, track.last_transition));
    effects.push(Effect::Reply(text));
    effects.push(Effect::SyncHeader);
}

/// `alerts.resolve_on_recovery`: a Recovered alert mitigates and resolves its incident.
fn resolve_on_recovery(incident: &mut Incident, alert: &Alert, ctx: Context<'_>, effects: &mut Vec<Effect>) {
    if alert.transition != Transition::Recovered || !ctx.policy.alerts.resolve_on_recovery || !incident.is_open() {
        return;
    }
    let monitor = Actor::Monitor(alert.source);
    if incident.status != Status::Mitigated {
        incident.status = Status::Mitigated;
        incident.mitigated_at = Some(ctx.now);
        incident.deadlines.escalate_at = None;
        incident.record(ctx.now, monitor.clone(), EntryKind::Mitigated, messages::mitigated_by_recovery_note());
    }
    catch_up(incident, ctx.now, effects);
    if incident.resolve(Some(messages::resolved_by_recovery_summary()), &monitor, ctx.now).is_ok() {
        effects.push(Effect::Reply(messages::resolved_message(incident)));
        effects.push(postmortem_effect(incident));
        effects.push(Effect::RequestEvidence(EvidencePurpose::Resolution));
    }
}

/// What an edit changed in the alert itself, as timeline phrases (empty: nothing that matters).
fn alert_changes(before: &Alert, after: &Alert) -> Vec<String> {
    messages::alert_change_phrases(
        (before.transition, after.transition),
        (before.priority, after.priority),
        (&before.name(), &after.name()),
    )
}

/// An alert message was edited. Only a change of the alert itself counts; it is compared with
/// the message as it was before the edit, never with the incident's latest state (a later alert
/// may have moved that on).
fn edit_alert(current: &Incident, alert: &Alert, before: &Alert, ctx: Context<'_>) -> Outcome {
    if !current.is_open() {
        return Outcome::Ignored {
            reason: format!("{} is resolved: an edit of its alert message changes nothing", current.id),
        };
    }
    let changes = alert_changes(before, alert);
    if changes.is_empty() {
        return Outcome::Ignored {
            reason: "the edit left the alert as it was (an unfurl, a thread reply or a cosmetic change)".into(),
        };
    }
    let mut incident = current.clone();
    let mut effects = vec![Effect::SyncHeader];
    let monitor = Actor::Monitor(alert.source);
    incident.record(ctx.now, monitor.clone(), EntryKind::AlertEdited, messages::alert_edited_note(&changes));
    if let Some(track) = incident.alerts.as_mut()
        && let Some(p) = alert.priority
    {
        track.priority = Some(track.priority.map_or(p, |q| q.min(p)));
    }
    let previous = incident.alerts.as_ref().map(|t| t.last_transition);
    if let Some(TransitionChange { note: Some((kind, text)) }) = apply_transition(&mut incident, alert.transition, ctx)
    {
        let from = previous.unwrap_or(before.transition);
        incident.record(ctx.now, monitor, kind, messages::alert_transition_note(from, alert.transition, true));
        effects.push(Effect::Reply(text));
    }
    if alert.transition.is_problem() {
        reassess_severity(&mut incident, alert, ctx, &mut effects);
    }
    resolve_on_recovery(&mut incident, alert, ctx, &mut effects);
    changed(incident, effects)
}

/// An alert message was deleted in Slack: the incident stays as it is, and the timeline says so.
fn alert_deleted(current: &Incident, title: &str, ctx: Context<'_>) -> Outcome {
    let mut incident = current.clone();
    incident.record(
        ctx.now,
        Actor::Bot,
        EntryKind::AlertDeleted,
        messages::alert_deleted_note(title, incident.id, incident.status),
    );
    changed(incident, Vec::new())
}

/// A later alert may call for another severity. Rules-set severities follow upwards on their own;
/// a person's choice is never replaced: the suggestion is offered once, with a button.
fn reassess_severity(incident: &mut Incident, alert: &Alert, ctx: Context<'_>, effects: &mut Vec<Effect>) {
    let tags = alert.routing_tags();
    let suggestion = severity_now(incident, alert.priority, &tags, ctx);
    apply_suggestion(incident, suggestion, ctx, effects);
}

/// What the rules say now, from an alert's facts and the latest evidence.
fn severity_now(
    incident: &Incident,
    priority: Option<super::ids::Priority>,
    tags: &[String],
    ctx: Context<'_>,
) -> Assessment {
    let evidence = incident.evidence.as_ref().and_then(|e| {
        Some(super::severity::EvidenceFacts { verdict: e.verdict?, error_ratio: e.error_ratio.unwrap_or(0.0) })
    });
    assess(&ctx.policy.severity, SeverityInput { priority, tags, team: &incident.team, evidence })
}

fn apply_suggestion(incident: &mut Incident, suggestion: Assessment, ctx: Context<'_>, effects: &mut Vec<Effect>) {
    if suggestion.severity == incident.severity || incident.suggested_severity == Some(suggestion.severity) {
        return;
    }
    match &incident.severity_set_by {
        SeveritySetBy::Rules if suggestion.severity < incident.severity => {
            let previous = incident.severity;
            incident.apply_severity(suggestion.severity, suggestion.reason.clone(), SeveritySetBy::Rules, ctx.now);
            rearm_for_severity(incident, ctx);
            effects.push(Effect::Reply(messages::severity_changed_message(
                previous,
                suggestion.severity,
                &suggestion.reason,
            )));
            if ctx.policy.slack.incident_channel_severities.contains(&suggestion.severity)
                && incident.slack.incident_channel.is_none()
            {
                effects.push(Effect::CreateIncidentChannel);
            }
        }
        _ => {
            incident.suggested_severity = Some(suggestion.severity);
            incident.record(
                ctx.now,
                Actor::Bot,
                EntryKind::SeveritySuggested,
                messages::severity_suggested_note(suggestion.severity, &suggestion.reason, incident.severity),
            );
            effects.push(Effect::SuggestSeverity { severity: suggestion.severity, reason: suggestion.reason });
        }
    }
}

fn declare(
    id: IncidentId,
    by: &UserId,
    title: &str,
    severity: Option<Severity>,
    team: Option<&str>,
    channel: Option<&ChannelId>,
    ctx: Context<'_>,
) -> Outcome {
    let policy = ctx.policy;
    let team = team
        .and_then(|t| policy.team(t))
        .or_else(|| policy.teams.iter().find(|t| t.rotation.contains(by)))
        .unwrap_or_else(|| policy.default_team());
    let (assessment, set_by) = match severity {
        Some(s) => (
            Assessment { severity: s, reason: messages::declared_severity_reason(by) },
            SeveritySetBy::Person(by.clone()),
        ),
        None => (severity_for(None, &[], &team.name, policy), SeveritySetBy::Rules),
    };
    let slack = SlackLocation {
        channel: Some(channel.cloned().unwrap_or_else(|| team.channel.clone())),
        ..SlackLocation::default()
    };
    let mut incident = new_incident(id, title.trim().to_string(), &team.name, assessment, set_by, None, slack, ctx);
    incident.record(ctx.now, Actor::Person(by.clone()), EntryKind::Note, messages::declared_note(by));
    let mut effects = opening_effects(&incident, true, ctx);
    effects.push(Effect::Answer(messages::declared_answer(&incident)));
    changed(incident, effects)
}

/// Team members, escalation contacts, role holders and configured responders may change an incident.
pub fn may_change(incident: &Incident, user: &UserId, policy: &Policy) -> bool {
    incident.role_of(user).is_some()
        || policy.slack.responders.contains(user)
        || policy.team(&incident.team).is_some_and(|t| t.rotation.contains(user) || t.escalation.contains(user))
}

fn act(current: &Incident, by: &UserId, action: &Action, ctx: Context<'_>) -> Result<Outcome, TransitionError> {
    if !may_change(current, by, ctx.policy) {
        return Err(TransitionError::NotAllowed { id: current.id, user: by.clone(), team: current.team.clone() });
    }
    let mut incident = current.clone();
    let now = ctx.now;
    let policy = ctx.policy;
    let mut effects = Vec::new();
    match action {
        Action::Acknowledge => {
            incident.acknowledge(by, now)?;
            effects.push(Effect::Reply(messages::acknowledged_message(by)));
        }
        Action::SetSeverity { severity, reason } => {
            let previous = incident.set_severity_by_person(*severity, reason.clone(), by, now)?;
            incident.suggested_severity = None;
            rearm_for_severity(&mut incident, ctx);
            effects.push(Effect::Reply(messages::severity_changed_message(
                previous,
                *severity,
                &incident.severity_reason,
            )));
            if policy.slack.incident_channel_severities.contains(severity) && incident.slack.incident_channel.is_none()
            {
                effects.push(Effect::CreateIncidentChannel);
            }
        }
        Action::AcceptSuggestedSeverity { severity } => {
            incident.ensure_open_for(*severity)?;
            incident.suggested_severity = None;
            let previous = incident.severity;
            let reason = messages::suggestion_accepted_reason(by);
            incident.apply_severity(*severity, reason.clone(), SeveritySetBy::Person(by.clone()), now);
            rearm_for_severity(&mut incident, ctx);
            effects.push(Effect::Reply(messages::severity_changed_message(previous, *severity, &reason)));
        }
        Action::Claim { role, user, take_over } => {
            let target = user.clone().unwrap_or_else(|| by.clone());
            incident.assign(*role, &target, by, *take_over, now)?;
            role_changed(&incident, target, &mut effects);
        }
        Action::TakeOver { role, from } => {
            match incident.holder(*role) {
                Some(holder) if holder != from && holder != by => {
                    return Err(TransitionError::RoleChangedMeanwhile {
                        id: incident.id,
                        role: *role,
                        holder: holder.clone(),
                    });
                }
                _ => {}
            }
            incident.assign(*role, by, by, true, now)?;
            role_changed(&incident, by.clone(), &mut effects);
        }
        Action::Status { text } => {
            incident.post_status(text, by, now)?;
            if incident.status != Status::Mitigated {
                incident.deadlines.status_reminder_at = Some(now + policy.timers.status_update.get(incident.severity));
            }
            effects.push(Effect::Reply(messages::status_update_message(by, text.trim())));
        }
        Action::Mitigated { note } => {
            incident.mitigate(note.as_deref(), by, now)?;
            incident.deadlines.status_reminder_at = None;
            if !incident.root_cause.is_found() {
                incident.deadlines.root_cause_reminder_at = Some(now + policy.timers.root_cause_reminder);
            }
            effects.push(Effect::RequestEvidence(EvidencePurpose::Mitigation));
            effects.push(Effect::Reply(messages::mitigated_message(
                by,
                note.as_deref().map(str::trim).filter(|n| !n.is_empty()),
                incident.investigator.as_ref(),
                incident.root_cause.is_found(),
            )));
        }
        Action::RootCause { text } => {
            let updated = incident.find_root_cause(text, by, now)?;
            effects.push(Effect::Reply(messages::root_cause_message(by, text.trim(), updated)));
            if incident.status.is_closed() {
                effects.push(postmortem_effect(&mut incident));
            }
        }
        Action::Resolve { summary } => {
            if incident.status == Status::Mitigated {
                catch_up(&mut incident, now, &mut effects);
            }
            incident.resolve(summary.as_deref(), &Actor::Person(by.clone()), now)?;
            effects.push(Effect::Reply(messages::resolved_message(&incident)));
            effects.push(postmortem_effect(&mut incident));
            effects.push(Effect::RequestEvidence(EvidencePurpose::Resolution));
        }
        Action::Reopen => {
            incident.reopen(by, now)?;
            incident.deadlines.status_reminder_at = Some(now + policy.timers.status_update.get(incident.severity));
            effects.push(Effect::Reply(messages::reopened_message(by)));
        }
        Action::Note { text } => {
            incident.add_note(text, by, now)?;
            effects.push(Effect::Answer(messages::note_added_message(by)));
        }
        Action::Pin { text, author } => {
            let quoted = messages::pinned_note(by, author.as_ref(), text);
            incident.record(now, Actor::Person(by.clone()), EntryKind::Pinned, quoted);
        }
        Action::Followup { text, owner, message_ts } => {
            record_followup(&mut incident, by, text, owner.as_ref(), message_ts.as_deref(), ctx, &mut effects)?;
        }
        Action::FollowupDone { number } => {
            let Some(f) = incident.followups.iter_mut().find(|f| f.number == *number) else {
                return Err(TransitionError::NoSuchFollowup { id: incident.id, number: *number });
            };
            if f.done {
                return Err(TransitionError::FollowupAlreadyDone { id: incident.id, number: *number });
            }
            f.done = true;
            let note = messages::followup_done_note(f);
            incident.record(now, Actor::Person(by.clone()), EntryKind::Followup, note.clone());
            effects.push(Effect::Reply(messages::followup_done_message(by, &note)));
            if incident.postmortem_posted {
                effects.push(Effect::UpdatePostmortem);
            }
        }
    }
    effects.insert(0, Effect::SyncHeader);
    Ok(changed(incident, effects))
}

/// A role changed hands (or was confirmed): say so in the thread and bring the new holder into
/// the incident channel.
fn role_changed(incident: &Incident, holder: UserId, effects: &mut Vec<Effect>) {
    let text = incident.timeline.last().map(|e| e.text.clone()).unwrap_or_default();
    effects.push(Effect::Reply(messages::role_changed_message(&text)));
    if incident.slack.incident_channel.is_some() {
        effects.push(Effect::InviteToChannel(vec![holder]));
    }
}

/// After a severity change, pending timers follow the new severity's cadence.
fn rearm_for_severity(incident: &mut Incident, ctx: Context<'_>) {
    let timers = &ctx.policy.timers;
    if incident.deadlines.escalate_at.is_some() {
        incident.deadlines.escalate_at = Some(ctx.now + timers.ack_timeout.get(incident.severity));
    }
    if incident.deadlines.status_reminder_at.is_some() {
        let since = incident.last_status_update_at.unwrap_or(incident.opened_at);
        incident.deadlines.status_reminder_at =
            Some((since + timers.status_update.get(incident.severity)).max(ctx.now));
    }
}

/// Who an escalation calls: the commander, plus the next on the rotation at the first step, then
/// the team's escalation group (or, without one, everyone else on the rotation).
fn escalation_targets<'a>(incident: &'a Incident, step: u32, policy: &'a Policy) -> Vec<&'a UserId> {
    let mut call: Vec<&UserId> = incident.commander.iter().collect();
    if let Some(team) = policy.team(&incident.team) {
        let rest = team.rotation.after_primary(incident.opened_at);
        let extra: Vec<&UserId> = match step {
            1 => rest.into_iter().take(1).collect(),
            _ if team.escalation.is_empty() => rest,
            _ => team.escalation.iter().collect(),
        };
        for user in extra {
            if !call.contains(&user) {
                call.push(user);
            }
        }
    }
    call
}

/// How many times an unacknowledged incident escalates before the bot stops calling people.
pub const MAX_ESCALATIONS: u32 = 3;

fn tick(current: &Incident, ctx: Context<'_>) -> Outcome {
    let now = ctx.now;
    let policy = ctx.policy;
    let mut incident = current.clone();
    let mut effects = Vec::new();
    if incident.deadlines.ticket_retry_at.is_some_and(|t| t <= now) {
        request_pending_tickets(&mut incident, now, &mut effects);
    }
    if !incident.is_open() {
        if effects.is_empty() && incident == *current {
            return Outcome::Ignored { reason: format!("{} is resolved", incident.id) };
        }
        return changed(incident, effects);
    }
    if incident.deadlines.escalate_at.is_some_and(|t| t <= now) {
        incident.deadlines.escalations += 1;
        let step = incident.deadlines.escalations;
        let call = escalation_targets(current, step, policy);
        effects.push(Effect::Reply(messages::escalation_message(incident.id, now - incident.opened_at, &call)));
        incident.record(now, Actor::Bot, EntryKind::Escalated, messages::escalation_note(step, &call));
        incident.deadlines.escalate_at =
            (step < MAX_ESCALATIONS).then(|| now + policy.timers.ack_timeout.get(incident.severity));
    }
    if incident.deadlines.status_reminder_at.is_some_and(|t| t <= now) {
        let since = now - incident.last_status_update_at.unwrap_or(incident.opened_at);
        effects.push(Effect::Reply(messages::status_reminder_message(incident.commander.as_ref(), since)));
        incident.record(now, Actor::Bot, EntryKind::Reminder, messages::status_reminded_note());
        incident.deadlines.status_reminder_at = Some(now + policy.timers.status_update.get(incident.severity));
    }
    if incident.deadlines.root_cause_reminder_at.is_some_and(|t| t <= now) {
        if incident.root_cause.is_found() {
            incident.deadlines.root_cause_reminder_at = None;
        } else {
            let since = now - incident.mitigated_at.unwrap_or(incident.opened_at);
            effects.push(Effect::Reply(messages::root_cause_reminder_message(incident.investigator.as_ref(), since)));
            incident.record(now, Actor::Bot, EntryKind::Reminder, messages::root_cause_reminded_note());
            incident.deadlines.root_cause_reminder_at = Some(now + policy.timers.root_cause_reminder);
        }
    }
    if incident.deadlines.evidence_refresh_at.is_some_and(|t| t <= now) {
        effects.push(Effect::RequestEvidence(EvidencePurpose::Refresh));
        incident.deadlines.evidence_refresh_at = Some(now + policy.datadog.refresh);
    }
    if incident.deadlines.storm_catch_up_at.is_some_and(|t| t <= now) {
        if ctx.storm {
            // Still storming in the incident's channel: look again a window later.
            incident.deadlines.storm_catch_up_at = Some(now + policy.alerts.storm.window);
        } else {
            catch_up(&mut incident, now, &mut effects);
        }
    }
    if effects.is_empty() && incident == *current {
        return Outcome::Ignored { reason: "nothing due".into() };
    }
    changed(incident, effects)
}

/// How soon a failed evidence request is tried again.
pub const EVIDENCE_RETRY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Evidence arrived: show it (editing the message in place), snapshot it on the timeline at
/// opening, mitigation and resolution, and let severity rules look at it. A failure keeps the last
/// good evidence on screen, says why the refresh failed, and tries again soon.
fn evidence(
    current: &Incident,
    purpose: EvidencePurpose,
    result: &Result<Box<Evidence>, String>,
    ctx: Context<'_>,
) -> Outcome {
    let mut incident = current.clone();
    let mut effects = Vec::new();
    let now = ctx.now;
    let state = incident.evidence.get_or_insert_with(EvidenceState::default);
    let first = !state.posted;
    state.posted = true;
    match result {
        Ok(e) => {
            let team_of = |service: &str| ctx.policy.team_of_service(service).map(|t| t.name.clone());
            let text = evidence_message(e, &team_of);
            let summary = evidence_summary(e);
            state.last_error = None;
            state.last_text = Some(text.clone());
            state.summary = Some(summary.clone());
            state.verdict = e.blast.as_ref().map(|b| b.verdict.kind());
            state.error_ratio = e.blast.as_ref().map(|b| b.global.ratio);
            effects.push(Effect::PublishEvidence { text, first });
            let snapshot = match purpose {
                EvidencePurpose::Open | EvidencePurpose::Refresh
                    if !state.snapshots.contains(&EvidencePurpose::Open) =>
                {
                    Some((EvidencePurpose::Open, "at opening"))
                }
                EvidencePurpose::Mitigation => Some((EvidencePurpose::Mitigation, "at mitigation")),
                EvidencePurpose::Resolution => Some((EvidencePurpose::Resolution, "at resolution")),
                _ => None,
            };
            if let Some((which, label)) = snapshot
                && !state.snapshots.contains(&which)
            {
                state.snapshots.push(which);
                incident.record(now, Actor::Bot, EntryKind::Evidence, messages::evidence_note(label, &summary));
                if which == EvidencePurpose::Resolution && incident.postmortem_posted {
                    effects.push(Effect::UpdatePostmortem);
                }
            }
            if incident.is_open() {
                let (priority, tags) = match &incident.alerts {
                    Some(a) => (a.priority, a.tags.clone()),
                    None => (None, Vec::new()),
                };
                let suggestion = severity_now(&incident, priority, &tags, ctx);
                apply_suggestion(&mut incident, suggestion, ctx, &mut effects);
            }
        }
        Err(reason) => {
            state.last_error = Some(reason.clone());
            let text = messages::evidence_unavailable_message(reason, state.last_text.as_deref(), now + EVIDENCE_RETRY);
            effects.push(Effect::PublishEvidence { text, first });
            if incident.is_open() {
                let retry = now + EVIDENCE_RETRY;
                incident.deadlines.evidence_refresh_at =
                    Some(incident.deadlines.evidence_refresh_at.map_or(retry, |t| t.min(retry)));
            }
        }
    }
    changed(incident, effects)
}

/// Records a follow-up and, with a tracker configured, asks for its ticket. Follow-ups are
/// recorded on resolved incidents too: that is when most are written.
fn record_followup(
    incident: &mut Incident,
    by: &UserId,
    text: &str,
    owner: Option<&UserId>,
    message_ts: Option<&str>,
    ctx: Context<'_>,
    effects: &mut Vec<Effect>,
) -> Result<(), TransitionError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TransitionError::MissingText {
            id: incident.id,
            what: "A follow-up",
            verb: "followup",
            example: "add an alert on pool saturation @owner",
        });
    }
    if let Some(ts) = message_ts
        && let Some(existing) = incident.followups.iter().find(|f| f.message_ts.as_deref() == Some(ts))
    {
        return Err(TransitionError::FollowupExists { id: incident.id, number: existing.number });
    }
    let number = incident.followups.iter().map(|f| f.number).max().unwrap_or(0) + 1;
    let tracker = ctx.policy.followups.tracker.as_ref();
    let followup = Followup {
        number,
        text: text.to_string(),
        owner: owner.cloned(),
        by: by.clone(),
        at: ctx.now,
        message_ts: message_ts.map(str::to_string),
        ticket: match tracker {
            Some(_) => Ticket::Pending { requests: 0, failures: 0, last_error: None },
            None => Ticket::Untracked,
        },
        done: false,
    };
    incident.record(ctx.now, Actor::Person(by.clone()), EntryKind::Followup, messages::followup_note(&followup));
    effects.push(Effect::Reply(messages::followup_recorded_message(&followup, tracker)));
    incident.followups.push(followup);
    if tracker.is_some() {
        request_ticket(incident, number, ctx.now, effects);
    }
    if incident.postmortem_posted {
        effects.push(Effect::UpdatePostmortem);
    }
    Ok(())
}

/// Asks the tracker for one follow-up's ticket, with a deadline to ask again if no answer comes.
fn request_ticket(incident: &mut Incident, number: u32, now: DateTime<Utc>, effects: &mut Vec<Effect>) {
    if let Some(Ticket::Pending { requests, .. }) =
        incident.followups.iter_mut().find(|f| f.number == number).map(|f| &mut f.ticket)
    {
        *requests += 1;
        effects.push(Effect::FileTicket(number));
        let overdue = now + followup::TICKET_ANSWER_TIMEOUT;
        incident.deadlines.ticket_retry_at =
            Some(incident.deadlines.ticket_retry_at.map_or(overdue, |t| t.min(overdue)));
    }
}

/// The retry deadline passed: ask again for every ticket still pending.
fn request_pending_tickets(incident: &mut Incident, now: DateTime<Utc>, effects: &mut Vec<Effect>) {
    incident.deadlines.ticket_retry_at = None;
    let pending: Vec<u32> = incident.pending_tickets().map(|f| f.number).collect();
    for number in pending {
        request_ticket(incident, number, now, effects);
    }
}

/// The tracker answered: link the ticket in the thread, the timeline and the postmortem, or keep
/// the follow-up pending and say (once) that it will be filed later.
fn ticket_filed(current: &Incident, number: u32, result: &Result<FiledTicket, String>, ctx: Context<'_>) -> Outcome {
    let mut incident = current.clone();
    let now = ctx.now;
    let mut effects = Vec::new();
    let Some(followup) = incident.followups.iter_mut().find(|f| f.number == number) else {
        return Outcome::Ignored { reason: format!("{} has no follow-up F-{number}", current.id) };
    };
    let Ticket::Pending { failures, last_error, .. } = &mut followup.ticket else {
        return Outcome::Ignored { reason: format!("F-{number} of {} needs no ticket now", current.id) };
    };
    match result {
        Ok(ticket) => {
            followup.ticket = Ticket::Filed(ticket.clone());
            let followup = followup.clone();
            incident.record(now, Actor::Bot, EntryKind::Ticket, messages::ticket_filed_note(&followup, ticket));
            effects.push(Effect::SyncHeader);
            effects.push(Effect::Reply(messages::ticket_filed_message(&followup, ticket)));
            if incident.postmortem_posted {
                effects.push(Effect::UpdatePostmortem);
            }
            if incident.pending_tickets().next().is_none() {
                incident.deadlines.ticket_retry_at = None;
            }
        }
        Err(reason) => {
            *failures += 1;
            *last_error = Some(reason.clone());
            let (failures, label) = (*failures, followup.label());
            let retry = now + followup::retry_after(failures);
            // Said in the thread on the first failure; later ones only on the timeline.
            if failures == 1 {
                effects.push(Effect::Reply(messages::ticket_delayed_message(&label, reason, retry)));
            }
            incident.record(now, Actor::Bot, EntryKind::Ticket, messages::ticket_failed_note(&label, reason, failures));
            incident.deadlines.ticket_retry_at = Some(retry);
        }
    }
    changed(incident, effects)
}
