//! Every message the bot shows people, built in one place so wording stays consistent and is
//! snapshot-tested. Text is Slack mrkdwn; blocks are a small neutral model the Slack adapter
//! renders to Block Kit.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::alert::Transition;
use super::followup::{FiledTicket, Followup, Ticket};
use super::ids::{IncidentId, Severity, UserId};
use super::incident::{Incident, Role, RootCause, Status};
use super::policy::TrackerTarget;
use super::text::{defuse_broadcasts, escape_untrusted, safe_url};

/// A message: `text` is the notification fallback, `blocks` the rich layout (may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub text: String,
    pub blocks: Vec<Block>,
}

impl Message {
    pub fn text(text: impl Into<String>) -> Message {
        Message { text: text.into(), blocks: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Block {
    Header(String),
    Section(String),
    Fields(Vec<String>),
    Context(String),
    Actions(Vec<Control>),
    Divider,
    /// Standard Markdown (headings, tables), for long documents such as the postmortem.
    Markdown(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// A button; with `confirm`, Slack asks before sending the click.
    Button {
        action: ButtonAction,
        label: String,
        style: ButtonStyle,
        confirm: Option<Confirm>,
    },
    SeveritySelect {
        current: Severity,
    },
}

/// The question a button asks before it acts (Slack's confirmation dialog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    pub title: String,
    pub text: String,
    pub yes: String,
    pub no: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ButtonStyle {
    Default,
    Primary,
    Danger,
}

/// What a header button does. The Slack adapter encodes it as the button's `action_id` (and
/// [`ButtonAction::detail`] in its value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ButtonAction {
    /// Claim the commander role, which nobody holds.
    TakeCommand,
    /// Claim the investigator role, which nobody holds.
    Investigate,
    /// Take a held role over from `from` (the holder when the button was shown); for `from`
    /// themselves it confirms the role.
    TakeOver {
        role: super::incident::Role,
        from: UserId,
    },
    Mitigated,
    RootCauseFound,
    Resolve,
    /// Record a follow-up (opens a form); offered on the resolved header.
    AddFollowup,
    /// Accept a severity the rules suggested after a person had set it.
    AcceptSeverity(Severity),
}

impl ButtonAction {
    /// Stable ids for Slack's `action_id`.
    pub fn id(&self) -> String {
        match self {
            ButtonAction::TakeCommand => "take_command".into(),
            ButtonAction::Investigate => "investigate".into(),
            ButtonAction::TakeOver { role, .. } => format!("take_over_{role}"),
            ButtonAction::Mitigated => "mitigated".into(),
            ButtonAction::RootCauseFound => "root_cause_found".into(),
            ButtonAction::Resolve => "resolve".into(),
            ButtonAction::AddFollowup => "add_followup".into(),
            ButtonAction::AcceptSeverity(s) => format!("accept_severity_{}", s.level()),
        }
    }

    /// What the button carries besides its incident: the holder a take-over expects.
    pub fn detail(&self) -> Option<String> {
        match self {
            ButtonAction::TakeOver { from, .. } => Some(from.to_string()),
            _ => None,
        }
    }

    /// Reads an `action_id` back, with the [`ButtonAction::detail`] the button carried.
    pub fn from_id(id: &str, detail: Option<&str>) -> Option<ButtonAction> {
        let role = |name: &str| match name {
            "commander" => Some(super::incident::Role::Commander),
            "investigator" => Some(super::incident::Role::Investigator),
            _ => None,
        };
        if let Some(name) = id.strip_prefix("take_over_") {
            let from = UserId::parse(detail?).ok()?;
            return Some(ButtonAction::TakeOver { role: role(name)?, from });
        }
        Some(match id {
            "take_command" => ButtonAction::TakeCommand,
            "investigate" => ButtonAction::Investigate,
            "mitigated" => ButtonAction::Mitigated,
            "root_cause_found" => ButtonAction::RootCauseFound,
            "resolve" => ButtonAction::Resolve,
            "add_followup" => ButtonAction::AddFollowup,
            other => {
                let level = other.strip_prefix("accept_severity_")?.parse().ok()?;
                ButtonAction::AcceptSeverity(Severity::from_level(level)?)
            }
        })
    }
}

/// Renders a duration the way people read it in an incident: `4m`, `1h 5m`, `2d 3h`.
pub fn human_duration(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) if s == 0 => format!("{m}m"),
        (0, 0, m) => format!("{m}m {s}s"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The button for a role: claim it when nobody holds it; otherwise take it over from the holder,
/// after a confirmation that names them (for the holder, the click confirms the role).
fn role_control(incident: &Incident, role: Role, claim: &str, take_over: &str, style: ButtonStyle) -> Control {
    match incident.holder(role) {
        None => Control::Button {
            action: if role == Role::Commander { ButtonAction::TakeCommand } else { ButtonAction::Investigate },
            label: claim.into(),
            style,
            confirm: None,
        },
        Some(holder) => {
            let how = if incident.confirmed_roles.contains(&role) { "" } else { " (from the rotation)" };
            Control::Button {
                action: ButtonAction::TakeOver { role, from: holder.clone() },
                label: take_over.into(),
                style,
                confirm: Some(Confirm {
                    title: format!("Take over as {role}?"),
                    text: format!(
                        "{} is the {role} of {}{how}. You become the {role}; the thread is told. If you are {}, this confirms your role.",
                        holder.mention(),
                        incident.id,
                        holder.mention()
                    ),
                    yes: "Take over".into(),
                    no: "Cancel".into(),
                }),
            }
        }
    }
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn who(user: Option<&UserId>, missing: &str) -> String {
    user.map(UserId::mention).unwrap_or_else(|| missing.to_string())
}

/// The incident header: the thread's first reply, edited in place on every change.
/// Follow-ups named on the header; the rest are counted.
const HEADER_FOLLOWUPS: usize = 5;

pub fn header_message(incident: &Incident) -> Message {
    let id = incident.id;
    let status = match incident.status {
        Status::Resolved => ":white_check_mark: Resolved".to_string(),
        Status::Mitigated => ":large_green_circle: Mitigated".to_string(),
        Status::Acknowledged => ":large_yellow_circle: Acknowledged".to_string(),
        Status::Open => ":red_circle: Open (not acknowledged)".to_string(),
        Status::Reopened => ":red_circle: Reopened".to_string(),
    };
    let root_cause = match &incident.root_cause {
        RootCause::Unknown => "Unknown".to_string(),
        RootCause::Found { text, .. } => format!("Found: {}", defuse_broadcasts(text)),
    };
    let mut fields = vec![
        format!("*Severity*\n{} — {}", incident.severity, incident.severity_reason),
        format!("*Team*\n{}", incident.team),
        format!("*Commander*\n{}", role_holder(incident, super::incident::Role::Commander, "_unassigned_")),
        format!(
            "*Investigator*\n{}",
            role_holder(incident, super::incident::Role::Investigator, "_open: volunteer with Investigate_")
        ),
        format!("*Status*\n{status}"),
        format!("*Root cause*\n{root_cause}"),
    ];
    if let Some(alerts) = &incident.alerts {
        let state = if alerts.recovered { " (alert recovered)" } else { "" };
        fields.push(format!(
            "*Alerts*\n{} · last {} {}{state}",
            alerts.count,
            alerts.last_transition,
            clock(alerts.last_seen)
        ));
        if !alerts.links.is_empty() {
            let links: Vec<String> = alerts
                .links
                .iter()
                .filter_map(|l| Some(format!("<{}|{}>", safe_url(&l.url)?, escape_untrusted(&l.label))))
                .collect();
            fields.push(format!("*Links*\n{}", links.join(" · ")));
        }
    }
    if let Some(channel) = &incident.slack.incident_channel {
        fields.push(format!("*Channel*\n<#{channel}>"));
    }
    if !incident.followups.is_empty() {
        // Each follow-up with its ticket (the first few; `/incident followups` lists them all).
        let shown: Vec<String> = incident
            .followups
            .iter()
            .take(HEADER_FOLLOWUPS)
            .map(|f| {
                let ticket = match &f.ticket {
                    Ticket::Filed(t) => format!(" {}", ticket_link(t)),
                    Ticket::Pending { .. } => " (ticket pending)".into(),
                    Ticket::Untracked => String::new(),
                };
                format!("{}{ticket}{}", f.label(), if f.done { " ✓" } else { "" })
            })
            .collect();
        let more = incident.followups.len().saturating_sub(HEADER_FOLLOWUPS);
        let more = if more > 0 { format!(" · {more} more") } else { String::new() };
        fields.push(format!("*Follow-ups*\n{}{more}", shown.join(" · ")));
    }
    let title = format!("{id} · {} · {}", incident.severity, escape_untrusted(&incident.title));
    let mut blocks = vec![Block::Header(title.clone()), Block::Fields(fields)];
    if incident.is_open() {
        let button = |action: ButtonAction, label: &str, style: ButtonStyle| Control::Button {
            action,
            label: label.into(),
            style,
            confirm: None,
        };
        let mut controls = vec![
            role_control(incident, Role::Commander, "Take command", "Take over command", ButtonStyle::Primary),
            role_control(incident, Role::Investigator, "Investigate", "Take over investigation", ButtonStyle::Default),
        ];
        // Only buttons that can do what they say: Mitigated until it is, the root cause until it is
        // found, Resolve once mitigated (resolving needs mitigation).
        if incident.status != Status::Mitigated {
            controls.push(button(ButtonAction::Mitigated, "Mitigated", ButtonStyle::Default));
        }
        if !incident.root_cause.is_found() {
            controls.push(button(ButtonAction::RootCauseFound, "Root cause found", ButtonStyle::Default));
        }
        if incident.status == Status::Mitigated {
            controls.push(button(ButtonAction::Resolve, "Resolve", ButtonStyle::Danger));
        }
        controls.push(Control::SeveritySelect { current: incident.severity });
        blocks.push(Block::Actions(controls));
    } else {
        // Resolved: what is left is the work it leaves behind.
        blocks.push(Block::Actions(vec![Control::Button {
            action: ButtonAction::AddFollowup,
            label: "Add follow-up".into(),
            style: ButtonStyle::Primary,
            confirm: None,
        }]));
    }
    let d = incident.durations();
    let mut context = vec![format!("Opened {}", clock(incident.opened_at))];
    match d.to_acknowledge {
        Some(t) => context.push(format!("acknowledged after {}", human_duration(t))),
        None if incident.mitigated_at.is_some() || incident.resolved_at.is_some() => {
            context.push("never acknowledged".into())
        }
        None => {}
    }
    if let Some(t) = d.to_mitigate {
        context.push(format!("mitigated after {}", human_duration(t)));
    }
    if let Some(t) = d.to_resolve {
        context.push(format!("resolved after {}", human_duration(t)));
    }
    blocks.push(Block::Context(context.join(" · ")));
    let text = format!(
        "{title} — {} — commander {}, investigator {}",
        incident.status,
        who(incident.commander.as_ref(), "unassigned"),
        who(incident.investigator.as_ref(), "open")
    );
    Message { text, blocks }
}

/// The root message for incidents that did not start from a Slack message (webhooks, declares).
pub fn incident_root_message(incident: &Incident, source: &str) -> Message {
    Message::text(format!(
        ":rotating_light: *{}* — {} ({source}). Severity, roles and updates in the thread.",
        incident.id,
        escape_untrusted(&incident.title)
    ))
}

pub fn volunteer_needed_message(id: IncidentId, team: &str) -> String {
    format!(
        "Team {team} has one person on its rotation, so {id} has no investigator yet. Volunteer with the *Investigate* button or `/incident investigator @me`."
    )
}

pub fn transition_changed_message(from: Transition, to: Transition) -> String {
    match to {
        Transition::Recovered => format!(
            ":large_green_circle: The alert recovered (was {from}). The incident stays open until the commander resolves it."
        ),
        _ => format!(":warning: The alert is now *{to}* (was {from})."),
    }
}

/// The one note a thread gets after an alert storm held its per-alert messages.
pub fn storm_catch_up_message(held: &super::incident::HeldAlerts, now: Transition, last_seen: DateTime<Utc>) -> String {
    let flapping = if held.flapping { ", and it is flapping" } else { "" };
    let state = if now == held.first_transition {
        format!("it is *{now}* as before")
    } else {
        format!("it is now *{now}* (was {})", held.first_transition)
    };
    format!(
        ":thunder_cloud_and_rain: The alert storm is over. While it held this thread's messages (since {}), {} more alert{} arrived with {} state change{}{flapping}; {state}, last seen {}.",
        held.since.format("%H:%M:%S UTC"),
        held.alerts,
        if held.alerts == 1 { "" } else { "s" },
        held.transitions,
        if held.transitions == 1 { "" } else { "s" },
        last_seen.format("%H:%M:%S UTC"),
    )
}

pub fn flapping_message(count: u32, window: TimeDelta) -> String {
    format!(
        ":repeat: This alert is flapping: {count} state changes within {}. Further changes update the header without messages.",
        human_duration(window)
    )
}

pub fn role_changed_message(text: &str) -> String {
    format!(":busts_in_silhouette: {text}.")
}

/// The header marks roles the rotation assigned and nobody confirmed yet.
fn role_holder(incident: &Incident, role: super::incident::Role, missing: &str) -> String {
    match incident.holder(role) {
        Some(u) if incident.confirmed_roles.contains(&role) => u.mention(),
        Some(u) => format!("{} _(from the rotation)_", u.mention()),
        None => missing.to_string(),
    }
}

pub fn acknowledged_message(by: &UserId) -> String {
    format!(":eyes: {} acknowledged. Escalation stopped.", by.mention())
}

pub fn severity_changed_message(from: Severity, to: Severity, reason: &str) -> String {
    format!(":bar_chart: Severity {from} → *{to}*: {reason}")
}

pub fn status_update_message(by: &UserId, text: &str) -> String {
    format!(":mega: *Status update* from {}: {}", by.mention(), defuse_broadcasts(text))
}

pub fn note_added_message(by: &UserId) -> String {
    format!(":memo: Note from {} added to the timeline.", by.mention())
}

pub fn mitigated_message(
    by: &UserId,
    note: Option<&str>,
    investigator: Option<&UserId>,
    root_cause_known: bool,
) -> String {
    let note = note.map(|n| format!(": {}", defuse_broadcasts(n))).unwrap_or_default();
    let next = if root_cause_known {
        "Resolve when you are confident it is over.".to_string()
    } else {
        format!(
            "Root cause is still unknown — {} please record it with `/incident rootcause <text>`.",
            who(investigator, "investigator")
        )
    };
    format!(":large_green_circle: *Mitigated* by {}{note}. {next}", by.mention())
}

pub fn root_cause_message(by: &UserId, text: &str, updated: bool) -> String {
    let verb = if updated { "Root cause updated" } else { "Root cause found" };
    format!(":mag: *{verb}* by {}: {}", by.mention(), defuse_broadcasts(text))
}

pub fn resolved_message(incident: &Incident) -> String {
    let d = incident.durations();
    let after = d.to_resolve.map(human_duration).unwrap_or_default();
    let missing = if incident.root_cause.is_found() {
        String::new()
    } else {
        format!(
            " The root cause is missing from the postmortem — {} please add it with `/incident rootcause <text>`.",
            who(incident.investigator.as_ref(), "investigator")
        )
    };
    format!(":white_check_mark: *{} resolved* after {after}.{missing}", incident.id)
}

pub fn reopened_message(by: &UserId) -> String {
    format!(":rotating_light: Reopened by {}. The commander declares mitigation again when it is over.", by.mention())
}

pub fn escalation_message(id: IncidentId, waited: TimeDelta, who: &[&UserId]) -> String {
    let people: Vec<String> = who.iter().map(|u| u.mention()).collect();
    format!(
        ":sos: {id} has not been acknowledged for {}. {} — please acknowledge with `/incident ack` or take command.",
        human_duration(waited),
        people.join(" ")
    )
}

pub fn status_reminder_message(commander: Option<&UserId>, since: TimeDelta) -> String {
    format!(
        ":hourglass: {} — no status update for {}. Post one with `/incident status <what is happening>`.",
        who(commander, "Commander"),
        human_duration(since)
    )
}

pub fn root_cause_reminder_message(investigator: Option<&UserId>, since: TimeDelta) -> String {
    format!(
        ":mag: {} — mitigated {} ago and the root cause is still unknown. Record it with `/incident rootcause <text>`.",
        who(investigator, "Investigator"),
        human_duration(since)
    )
}

pub fn severity_suggestion_message(current: Severity, suggested: Severity, reason: &str) -> String {
    format!(
        ":bulb: The rules now suggest *{suggested}* ({reason}). The severity stays {current} because a person set it; press the button to accept the suggestion."
    )
}

/// The suggestion with its button.
pub fn severity_suggestion(current: Severity, suggested: Severity, reason: &str) -> Message {
    let text = severity_suggestion_message(current, suggested, reason);
    Message {
        text: text.clone(),
        blocks: vec![
            Block::Section(text),
            Block::Actions(vec![Control::Button {
                action: ButtonAction::AcceptSeverity(suggested),
                label: format!("Use {suggested}"),
                style: ButtonStyle::Primary,
                confirm: None,
            }]),
        ],
    }
}

/// When Datadog cannot be asked: the last good evidence stays, with why the refresh failed.
pub fn evidence_unavailable_message(reason: &str, last: Option<&str>, retry_at: DateTime<Utc>) -> String {
    let warning = format!(
        ":warning: Evidence from Datadog is unavailable: {}. Trying again at {}.",
        escape_untrusted(reason),
        retry_at.format("%H:%M UTC")
    );
    match last {
        Some(text) => format!("{text}\n{warning}"),
        None => warning,
    }
}

/// Posted in a new incident channel: what it is for and where the thread is.
pub fn incident_channel_intro_message(incident: &Incident, thread_link: Option<&str>) -> String {
    let thread = thread_link.map(|l| format!(" The incident thread: {l}")).unwrap_or_default();
    format!(
        ":rotating_light: This channel is for *{} · {} · {}*. Commander {}, investigator {}. Commands here apply to {} without naming it.{thread}",
        incident.id,
        incident.severity,
        escape_untrusted(&incident.title),
        who(incident.commander.as_ref(), "unassigned"),
        who(incident.investigator.as_ref(), "open"),
        incident.id,
    )
}

pub fn incident_channel_created_message(channel: &super::ids::ChannelId) -> String {
    format!(":loudspeaker: Dedicated channel: <#{channel}>. Role holders are invited.")
}

/// The timeline's note when the dedicated channel exists.
pub fn incident_channel_note(channel: &super::ids::ChannelId) -> String {
    format!("Dedicated channel <#{channel}> created")
}

/// A link to a thread: `https://<workspace>/archives/<channel>/p<ts without the dot>`.
pub fn thread_link(workspace_url: &str, channel: &super::ids::ChannelId, thread_ts: &str) -> String {
    format!("{}/archives/{channel}/p{}", workspace_url.trim_end_matches('/'), thread_ts.replace('.', ""))
}

/// One line per incident for `/incident list`.
pub fn incident_list_message(title: &str, incidents: &[&Incident]) -> String {
    if incidents.is_empty() {
        return format!("{title}: none.");
    }
    let mut out = format!("{title}:\n");
    for i in incidents {
        out.push_str(&format!(
            "• *{}* · {} · {} — {} — commander {}, investigator {}\n",
            i.id,
            i.severity,
            escape_untrusted(&i.title),
            i.status,
            who(i.commander.as_ref(), "unassigned"),
            who(i.investigator.as_ref(), "open"),
        ));
    }
    out.trim_end().to_string()
}

/// The incident's timeline for `/incident timeline`.
pub fn timeline_message(incident: &Incident) -> String {
    let mut out = format!("*Timeline of {} · {}*\n", incident.id, escape_untrusted(&incident.title));
    for e in &incident.timeline {
        out.push_str(&format!("• `{}` {} — {}\n", e.at.format("%m-%d %H:%M:%S"), e.actor, defuse_broadcasts(&e.text)));
    }
    out.trim_end().to_string()
}

/// Who is on call, one line per team, for `/incident oncall`.
pub fn oncall_line(team: &str, primary: &UserId, next: Option<&UserId>, until: &str) -> String {
    format!(
        "• *{team}*: {} (commander) until {until}; next {} (investigator)",
        primary.mention(),
        next.map(UserId::mention).unwrap_or_else(|| "nobody (one-member rotation)".into())
    )
}

/// When a command could mean several incidents: `typed` is the command as the person wrote it
/// (after `/incident`), so the example is their own command with an id added; `theirs` says the
/// candidates are the incidents they hold a role on (rather than every open one).
pub fn which_incident_message(candidates: &[&Incident], typed: &str, theirs: bool) -> String {
    let ids: Vec<String> = candidates.iter().map(|i| format!("`{}` ({})", i.id, escape_untrusted(&i.title))).collect();
    let lead = if theirs { "You are on several open incidents" } else { "Several incidents are open" };
    let typed = escape_untrusted(typed.trim());
    let example = if typed.is_empty() { candidates[0].id.to_string() } else { format!("{typed} {}", candidates[0].id) };
    format!("{lead}: {}. Add the id to the command, e.g. `/incident {example}`.", ids.join(", "))
}

/// A command named an incident that was never opened.
pub fn no_such_incident_message(id: IncidentId) -> String {
    format!("{id} does not exist. `/incident list all` shows every incident.")
}

/// An action reached the bot without an incident to apply to (a button on an unknown message).
pub fn which_incident_unnamed_message() -> String {
    "Which incident? Add its id (e.g. `INC-3`), or run the command in the incident's thread.".to_string()
}

/// A command needs an incident and none is open.
pub fn no_open_incident_message() -> String {
    "There is no open incident. `/incident declare <title>` opens one.".to_string()
}

/// A command named a team the policy does not have.
pub fn no_such_team_message(name: &str, teams: &[&str]) -> String {
    format!("There is no team `{}`. Teams: {}.", escape_untrusted(name), teams.join(", "))
}

/// `/incident oncall`: one line per team (see [`oncall_line`]).
pub fn oncall_message(lines: &[String]) -> String {
    format!("*On call now*\n{}", lines.join("\n"))
}

/// The root-cause button could not open its form (no incident or no trigger, or the click was
/// too old for a modal): what to type instead.
pub fn root_cause_command_hint(incident: Option<IncidentId>) -> String {
    let id = incident.map(|i| i.to_string()).unwrap_or_else(|| "INC-<n>".into());
    format!("Record the root cause with `/incident rootcause {id} <what caused it>`.")
}

pub fn followup_command_hint(incident: Option<IncidentId>) -> String {
    let id = incident.map(|i| i.to_string()).unwrap_or_else(|| "INC-<n>".into());
    format!("Record a follow-up with `/incident followup {id} <what to do> [@owner]`.")
}

/// The open reaction landed on a message that is not a known alert.
pub fn not_an_alert_message() -> String {
    "That message is not an alert I know, so I cannot open an incident from it. Use `/incident declare <title>` instead."
        .to_string()
}

/// Most monitors listed in the summary; the rest are summed up in one line.
pub const SUMMARY_MONITORS: usize = 20;

/// The storm summary message, edited in place as the storm goes on, and a last time when it is
/// `over`.
pub fn storm_summary_message(storm: &super::storm::Storm, over: bool) -> String {
    let first = if over {
        format!(
            ":white_sun_small_cloud: *Alert storm over* ({} to {}): {} alerts from {} monitors. Each incident's thread has a catch-up note.",
            storm.started_at.format("%H:%M:%S UTC"),
            storm.last_at.format("%H:%M:%S UTC"),
            storm.total,
            storm.monitors.len(),
        )
    } else {
        format!(
            ":thunder_cloud_and_rain: *Alert storm* since {}: {} alerts from {} monitors (last at {}). Repeats are counted here instead of posted one by one.",
            storm.started_at.format("%H:%M:%S UTC"),
            storm.total,
            storm.monitors.len(),
            storm.last_at.format("%H:%M:%S UTC"),
        )
    };
    let mut lines = vec![first];
    let mut monitors: Vec<(&String, &super::storm::MonitorCount)> = storm.monitors.iter().collect();
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

// Timeline entries: what the incident's record says happened, shown by `/incident timeline`
// and in the postmortem.

/// The first entry of an incident the bot opened.
pub fn opened_note(severity: Severity, reason: &str, commander: &UserId, investigator: Option<&UserId>) -> String {
    format!(
        "Opened as {severity} ({reason}); commander {} (primary on call), investigator {}",
        commander.mention(),
        investigator.map(UserId::mention).unwrap_or_else(|| "open (one-member rotation)".into())
    )
}

/// A person opened an incident from an alert that opened none (the open reaction).
pub fn opened_from_alert_note(transition: Transition, by: &UserId) -> String {
    format!("Opened from a {transition} alert by {}", by.mention())
}

/// The alert moved from one state to another (`edited`: by an edit of its message).
pub fn alert_transition_note(from: Transition, to: Transition, edited: bool) -> String {
    format!("Alert {from} → {to}{}", if edited { " (edited)" } else { "" })
}

/// The same alert again, in the same state.
pub fn alert_repeated_note(transition: Transition) -> String {
    format!("Alert repeated ({transition})")
}

/// What an edit changed in an alert: its state, its priority, its title.
pub fn alert_change_phrases(
    transition: (Transition, Transition),
    priority: (Option<super::ids::Priority>, Option<super::ids::Priority>),
    title: (&str, &str),
) -> Vec<String> {
    let mut changes = Vec::new();
    if transition.0 != transition.1 {
        changes.push(format!("{} → {}", transition.0, transition.1));
    }
    if priority.0 != priority.1 {
        let show = |p: Option<super::ids::Priority>| p.map(|p| p.to_string()).unwrap_or_else(|| "none".into());
        changes.push(format!("priority {} → {}", show(priority.0), show(priority.1)));
    }
    if title.0 != title.1 {
        changes.push(format!("title “{}” → “{}”", title.0, title.1));
    }
    changes
}

/// The alert's own message was edited in a way that changes the alert.
pub fn alert_edited_note(changes: &[String]) -> String {
    format!("The alert message was edited: {}", changes.join("; "))
}

/// The alert's own message was deleted in Slack.
pub fn alert_deleted_note(title: &str, id: IncidentId, status: Status) -> String {
    format!("The alert message “{}” was deleted in Slack; {id} stays {status}", title.trim())
}

/// The severity reason of a declaration with a severity.
pub fn declared_severity_reason(by: &UserId) -> String {
    format!("declared by {}", by.mention())
}

pub fn declared_note(by: &UserId) -> String {
    format!("Declared by {}", by.mention())
}

/// The private answer to the person who declared.
pub fn declared_answer(incident: &Incident) -> String {
    format!("Declared {} · {}: {}", incident.id, incident.severity, incident.title)
}

/// The severity reason when a person accepts the rules' suggestion.
pub fn suggestion_accepted_reason(by: &UserId) -> String {
    format!("suggestion accepted by {}", by.mention())
}

/// A message pinned to the timeline with the pin reaction.
pub fn pinned_note(by: &UserId, author: Option<&UserId>, text: &str) -> String {
    match author {
        Some(a) => format!("Pinned by {}: {} wrote “{}”", by.mention(), a.mention(), text.trim()),
        None => format!("Pinned by {}: “{}”", by.mention(), text.trim()),
    }
}

/// An escalation step and who it called.
pub fn escalation_note(step: u32, called: &[&UserId]) -> String {
    let names: Vec<String> = called.iter().map(|u| u.mention()).collect();
    format!("Escalation {step}: {}", names.join(" "))
}

/// The evidence as it stood at a moment the postmortem keeps (`label`: "at opening", ...).
pub fn evidence_note(label: &str, summary: &str) -> String {
    format!("Evidence {label}: {summary}")
}

/// The catch-up note's timeline entry after a storm held the incident's per-alert messages.
pub fn storm_held_note(held: &super::incident::HeldAlerts, last: Transition) -> String {
    format!(
        "During the alert storm since {}: {} alerts, {} state changes ({} → {last})",
        held.since.format("%H:%M:%S UTC"),
        held.alerts,
        held.transitions,
        held.first_transition,
    )
}

/// `alerts.resolve_on_recovery`: the recovery mitigated the incident...
pub fn mitigated_by_recovery_note() -> &'static str {
    "Mitigated: the alert recovered"
}

/// ...and resolved it, with this summary.
pub fn resolved_by_recovery_summary() -> &'static str {
    "the alert recovered (alerts.resolve_on_recovery)"
}

/// The rules would grade differently than the severity a person set.
pub fn severity_suggested_note(suggested: Severity, reason: &str, current: Severity) -> String {
    format!("Rules suggest {suggested} ({reason}); severity stays {current}")
}

pub fn status_reminded_note() -> &'static str {
    "Reminded the commander to post a status update"
}

pub fn root_cause_reminded_note() -> &'static str {
    "Reminded the investigator about the root cause"
}

pub fn acknowledged_note(by: &UserId) -> String {
    format!("Acknowledged by {}", by.mention())
}

pub fn severity_changed_note(from: Severity, to: Severity, reason: &str) -> String {
    format!("Severity {from} → {to}: {reason}")
}

pub fn status_update_note(text: &str) -> String {
    format!("Status update: {}", text.trim())
}

pub fn mitigated_note(by: &UserId, note: Option<&str>) -> String {
    match note {
        Some(n) => format!("Mitigated by {}: {n}", by.mention()),
        None => format!("Mitigated by {}", by.mention()),
    }
}

pub fn root_cause_note(text: &str, updated: bool) -> String {
    let verb = if updated { "Root cause updated" } else { "Root cause found" };
    format!("{verb}: {}", text.trim())
}

pub fn resolved_note(by: &super::incident::Actor, summary: Option<&str>) -> String {
    match summary {
        Some(s) => format!("Resolved by {by}: {s}"),
        None => format!("Resolved by {by}"),
    }
}

pub fn reopened_note(by: &UserId) -> String {
    format!("Reopened by {}", by.mention())
}

/// The notification text of the postmortem draft message.
pub fn postmortem_title(id: IncidentId) -> String {
    format!("Postmortem draft for {id}")
}

/// A ticket as a Slack link: `<url|OPS-12>`, or its key alone when the URL is not safe.
fn ticket_link(ticket: &FiledTicket) -> String {
    match safe_url(&ticket.url) {
        Some(url) => format!("<{url}|{}>", escape_untrusted(&ticket.key)),
        None => escape_untrusted(&ticket.key),
    }
}

fn owner_text(owner: Option<&UserId>) -> String {
    owner.map(|o| format!(" (owner {})", o.mention())).unwrap_or_else(|| " (no owner yet)".into())
}

/// The timeline's line for a follow-up.
pub fn followup_note(f: &Followup) -> String {
    format!("Follow-up {} by {}: “{}”{}", f.label(), f.by.mention(), f.text.trim(), owner_text(f.owner.as_ref()))
}

/// Said in the thread when a follow-up is recorded.
pub fn followup_recorded_message(f: &Followup, tracker: Option<&TrackerTarget>) -> String {
    let ticket = match tracker {
        Some(t) => format!(" Filing a ticket in {}…", escape_untrusted(&t.label())),
        None => " No tracker is configured, so it stays on the timeline and in the postmortem.".into(),
    };
    format!(
        ":clipboard: Follow-up *{}* recorded: {}{}.{ticket}",
        f.label(),
        defuse_broadcasts(f.text.trim()),
        owner_text(f.owner.as_ref())
    )
}

pub fn followup_done_note(f: &Followup) -> String {
    format!("Follow-up {} done: “{}”", f.label(), f.text.trim())
}

pub fn followup_done_message(by: &UserId, note: &str) -> String {
    format!(":white_check_mark: {} (marked by {}).", defuse_broadcasts(note), by.mention())
}

pub fn ticket_filed_note(f: &Followup, ticket: &FiledTicket) -> String {
    format!("Ticket {} filed for follow-up {}: {}", ticket.key, f.label(), ticket.url)
}

pub fn ticket_filed_message(f: &Followup, ticket: &FiledTicket) -> String {
    format!(
        ":ticket: {} filed for follow-up *{}*: {}",
        ticket_link(ticket),
        f.label(),
        defuse_broadcasts(f.text.trim())
    )
}

/// The first failure to file a ticket: the follow-up is kept and filed later.
pub fn ticket_delayed_message(label: &str, reason: &str, retry_at: DateTime<Utc>) -> String {
    format!(
        ":hourglass: The ticket for follow-up *{label}* could not be filed yet: {}. The follow-up is kept; I will try again at {} and keep trying until the tracker takes it.",
        escape_untrusted(reason),
        retry_at.format("%H:%M UTC")
    )
}

pub fn ticket_failed_note(label: &str, reason: &str, failures: u32) -> String {
    format!("Ticket for follow-up {label} not filed yet (attempt {failures}): {reason}")
}

/// One follow-up in a list: label, text, owner, ticket.
pub fn followup_line(f: &Followup) -> String {
    let ticket = match &f.ticket {
        Ticket::Untracked => String::new(),
        Ticket::Pending { last_error: Some(e), .. } => format!(" · ticket pending ({})", escape_untrusted(e)),
        Ticket::Pending { .. } => " · ticket pending".into(),
        Ticket::Filed(t) => format!(" · {}", ticket_link(t)),
    };
    let done = if f.done { " · done" } else { "" };
    format!(
        "• *{}* {}{}{ticket}{done}",
        f.label(),
        defuse_broadcasts(f.text.trim()),
        f.owner.as_ref().map(|o| format!(" — {}", o.mention())).unwrap_or_default()
    )
}

/// `/incident followups`: the open follow-ups of one incident, or of every incident.
pub fn followups_message(incidents: &[&Incident], one: Option<IncidentId>) -> String {
    let mut out = String::new();
    for incident in incidents {
        let open: Vec<&Followup> = incident.followups.iter().filter(|f| f.is_open()).collect();
        if open.is_empty() {
            continue;
        }
        out.push_str(&format!("*{} · {}*\n", incident.id, escape_untrusted(&incident.title)));
        for f in open {
            out.push_str(&followup_line(f));
            out.push('\n');
        }
    }
    if out.is_empty() {
        return match one {
            Some(id) => format!("{id} has no open follow-ups. Add one with `/incident followup {id} <text> [@owner]`."),
            None => {
                "No open follow-ups. Add one in an incident thread with `/incident followup <text> [@owner]`.".into()
            }
        };
    }
    format!("*Open follow-ups*\n{}", out.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(human_duration(TimeDelta::seconds(42)), "42s");
        assert_eq!(human_duration(TimeDelta::minutes(4)), "4m");
        assert_eq!(human_duration(TimeDelta::seconds(245)), "4m 5s");
        assert_eq!(human_duration(TimeDelta::minutes(65)), "1h 5m");
        assert_eq!(human_duration(TimeDelta::hours(51)), "2d 3h");
    }

    #[test]
    fn button_ids_round_trip() {
        let alice = UserId::parse("U0ALICE01").unwrap();
        for a in [
            ButtonAction::TakeCommand,
            ButtonAction::Investigate,
            ButtonAction::TakeOver { role: Role::Commander, from: alice.clone() },
            ButtonAction::TakeOver { role: Role::Investigator, from: alice },
            ButtonAction::Mitigated,
            ButtonAction::RootCauseFound,
            ButtonAction::Resolve,
            ButtonAction::AcceptSeverity(Severity::Sev2),
        ] {
            assert_eq!(ButtonAction::from_id(&a.id(), a.detail().as_deref()), Some(a));
        }
        assert_eq!(ButtonAction::from_id("accept_severity_9", None), None);
        assert_eq!(ButtonAction::from_id("take_over_commander", None), None, "a take-over names the holder");
    }

    fn alice() -> UserId {
        UserId::parse("U0ALICE01").unwrap()
    }

    fn bob() -> UserId {
        UserId::parse("U0BOB0001").unwrap()
    }

    /// Every answer the application gives instead of doing something, as people read it.
    #[test]
    fn answers_read_as_written() {
        let inc = IncidentId::new(9).unwrap();
        insta::assert_snapshot!(no_such_incident_message(inc), @"INC-9 does not exist. `/incident list all` shows every incident.");
        insta::assert_snapshot!(which_incident_unnamed_message(), @"Which incident? Add its id (e.g. `INC-3`), or run the command in the incident's thread.");
        insta::assert_snapshot!(no_open_incident_message(), @"There is no open incident. `/incident declare <title>` opens one.");
        insta::assert_snapshot!(no_such_team_message("pay<ments>", &["backend", "frontend"]), @"There is no team `pay&lt;ments&gt;`. Teams: backend, frontend.");
        insta::assert_snapshot!(root_cause_command_hint(Some(inc)), @"Record the root cause with `/incident rootcause INC-9 <what caused it>`.");
        insta::assert_snapshot!(root_cause_command_hint(None), @"Record the root cause with `/incident rootcause INC-<n> <what caused it>`.");
        insta::assert_snapshot!(not_an_alert_message(), @"That message is not an alert I know, so I cannot open an incident from it. Use `/incident declare <title>` instead.");
        let line = oncall_line("backend", &alice(), Some(&bob()), "Mon 09 Nov 09:00 UTC");
        insta::assert_snapshot!(oncall_message(&[line]), @r"
        *On call now*
        • *backend*: <@U0ALICE01> (commander) until Mon 09 Nov 09:00 UTC; next <@U0BOB0001> (investigator)
        ");
    }

    /// The timeline's entries, as `/incident timeline` and the postmortem show them.
    #[test]
    fn timeline_entries_read_as_written() {
        use super::super::alert::Transition::{Recovered, Triggered, Warn};
        use super::super::ids::Priority;
        insta::assert_snapshot!(opened_note(Severity::Sev2, "priority P2 (severity rule 3)", &alice(), Some(&bob())), @"Opened as SEV2 (priority P2 (severity rule 3)); commander <@U0ALICE01> (primary on call), investigator <@U0BOB0001>");
        insta::assert_snapshot!(opened_note(Severity::Sev3, "default", &alice(), None), @"Opened as SEV3 (default); commander <@U0ALICE01> (primary on call), investigator open (one-member rotation)");
        insta::assert_snapshot!(opened_from_alert_note(Warn, &bob()), @"Opened from a Warn alert by <@U0BOB0001>");
        insta::assert_snapshot!(alert_transition_note(Triggered, Recovered, false), @"Alert Triggered → Recovered");
        insta::assert_snapshot!(alert_transition_note(Recovered, Triggered, true), @"Alert Recovered → Triggered (edited)");
        insta::assert_snapshot!(alert_repeated_note(Triggered), @"Alert repeated (Triggered)");
        let changes =
            alert_change_phrases((Triggered, Recovered), (Some(Priority::P2), None), ("API errors", "API errors high"));
        insta::assert_snapshot!(alert_edited_note(&changes), @"The alert message was edited: Triggered → Recovered; priority P2 → none; title “API errors” → “API errors high”");
        assert!(
            alert_change_phrases((Warn, Warn), (None, None), ("a", "a")).is_empty(),
            "an unchanged alert has no phrases"
        );
        insta::assert_snapshot!(alert_deleted_note(" API errors ", IncidentId::FIRST, Status::Acknowledged), @"The alert message “API errors” was deleted in Slack; INC-1 stays Acknowledged");
        insta::assert_snapshot!(declared_note(&alice()), @"Declared by <@U0ALICE01>");
        insta::assert_snapshot!(pinned_note(&alice(), Some(&bob()), " rolled back "), @"Pinned by <@U0ALICE01>: <@U0BOB0001> wrote “rolled back”");
        insta::assert_snapshot!(pinned_note(&alice(), None, "the incident header"), @"Pinned by <@U0ALICE01>: “the incident header”");
        insta::assert_snapshot!(escalation_note(2, &[&alice(), &bob()]), @"Escalation 2: <@U0ALICE01> <@U0BOB0001>");
        insta::assert_snapshot!(evidence_note("at opening", "isolated to acme"), @"Evidence at opening: isolated to acme");
        insta::assert_snapshot!(severity_suggested_note(Severity::Sev1, "P1 alert in production", Severity::Sev3), @"Rules suggest SEV1 (P1 alert in production); severity stays SEV3");
        insta::assert_snapshot!(severity_changed_note(Severity::Sev3, Severity::Sev1, "customers down"), @"Severity SEV3 → SEV1: customers down");
        insta::assert_snapshot!(status_update_note(" rolled back "), @"Status update: rolled back");
        insta::assert_snapshot!(mitigated_note(&alice(), Some("rolled back")), @"Mitigated by <@U0ALICE01>: rolled back");
        insta::assert_snapshot!(root_cause_note("pool exhausted", true), @"Root cause updated: pool exhausted");
        insta::assert_snapshot!(reopened_note(&bob()), @"Reopened by <@U0BOB0001>");
        insta::assert_snapshot!(acknowledged_note(&bob()), @"Acknowledged by <@U0BOB0001>");
        insta::assert_snapshot!(incident_channel_note(&super::super::ids::ChannelId::parse("C0INC0001").unwrap()), @"Dedicated channel <#C0INC0001> created");
        insta::assert_snapshot!(thread_link("https://acme.slack.com/", &super::super::ids::ChannelId::parse("C0ALERTS1").unwrap(), "1700000000.000100"), @"https://acme.slack.com/archives/C0ALERTS1/p1700000000000100");
        insta::assert_snapshot!(postmortem_title(IncidentId::FIRST), @"Postmortem draft for INC-1");
    }

    #[test]
    fn the_storm_summary_counts_by_monitor() {
        use chrono::TimeZone;
        use std::collections::BTreeMap;
        let at = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap();
        let mut monitors = BTreeMap::new();
        monitors.insert(
            "cpu <high>".to_string(),
            super::super::storm::MonitorCount { alerts: 7, incident: Some(IncidentId::FIRST) },
        );
        monitors.insert("disk".to_string(), super::super::storm::MonitorCount { alerts: 1, incident: None });
        let storm = super::super::storm::Storm {
            id: 1,
            channel: super::super::ids::ChannelId::parse("C0ALERTS1").unwrap(),
            started_at: at(0),
            last_at: at(42),
            total: 8,
            monitors,
            summary_at: at(40),
        };
        insta::assert_snapshot!(storm_summary_message(&storm, false), @r"
        :thunder_cloud_and_rain: *Alert storm* since 08:00:00 UTC: 8 alerts from 2 monitors (last at 08:00:42 UTC). Repeats are counted here instead of posted one by one.
        • INC-1 · cpu &lt;high&gt; — 7 alerts
        • disk — 1 alert
        ");
        insta::assert_snapshot!(storm_summary_message(&storm, true).lines().next().unwrap(), @":white_sun_small_cloud: *Alert storm over* (08:00:00 UTC to 08:00:42 UTC): 8 alerts from 2 monitors. Each incident's thread has a catch-up note.");
    }
}
