//! Read-only answers: what `/incident list`, `oncall` and `timeline` show, and which incident a
//! command that names none is about. Pure: the application loads the incidents and asks here.

use chrono::{DateTime, Utc};

use super::command::ListScope;
use super::ids::UserId;
use super::incident::Incident;
use super::messages;
use super::policy::Policy;

/// Whether a listing needs the closed incidents too (otherwise the open ones are enough).
pub fn list_needs_closed(scope: ListScope) -> bool {
    scope == ListScope::All
}

/// `/incident list [open|all|mine]` over `incidents` (every incident, or the open ones).
pub fn incident_list(incidents: &[Incident], scope: ListScope, user: &UserId) -> String {
    let chosen: Vec<&Incident> = match scope {
        ListScope::Mine => incidents.iter().filter(|i| i.is_open() && i.role_of(user).is_some()).collect(),
        ListScope::Open => incidents.iter().filter(|i| i.is_open()).collect(),
        ListScope::All => incidents.iter().collect(),
    };
    let title = match scope {
        ListScope::Open => "Open incidents",
        ListScope::All => "All incidents",
        ListScope::Mine => "Your open incidents",
    };
    messages::incident_list_message(title, &chosen)
}

/// `/incident oncall [team]`: who is on call now, per team.
pub fn oncall(policy: &Policy, team: Option<&str>, now: DateTime<Utc>) -> String {
    let teams: Vec<_> = match team {
        Some(name) => match policy.team(name) {
            Some(t) => vec![t],
            None => return messages::no_such_team_message(name, &team_names(policy)),
        },
        None => policy.teams.iter().collect(),
    };
    let lines: Vec<String> = teams
        .into_iter()
        .map(|t| {
            let shift = t.rotation.shift_at(now);
            let until = shift.ends_at.with_timezone(&t.rotation.time_zone()).format("%a %d %b %H:%M %Z").to_string();
            messages::oncall_line(&t.name, shift.primary, shift.next, &until)
        })
        .collect();
    messages::oncall_message(&lines)
}

/// The policy's team names, for answers that list them.
pub fn team_names(policy: &Policy) -> Vec<&str> {
    policy.teams.iter().map(|t| t.name.as_str()).collect()
}

/// The incident a command that names none is about: the one open incident the person holds a
/// role on, else the only open incident. Otherwise the answer says which ids to choose from,
/// with the person's own command (`typed`) as the example.
pub fn implied_incident<'a>(open: &'a [Incident], user: &UserId, typed: &str) -> Result<&'a Incident, String> {
    let mine: Vec<&Incident> = open.iter().filter(|i| i.role_of(user).is_some()).collect();
    match (mine.as_slice(), open) {
        ([one], _) => Ok(one),
        ([], [only]) => Ok(only),
        ([], []) => Err(messages::no_open_incident_message()),
        ([], many) => Err(messages::which_incident_message(&many.iter().collect::<Vec<_>>(), typed, false)),
        (several, _) => Err(messages::which_incident_message(several, typed, true)),
    }
}
