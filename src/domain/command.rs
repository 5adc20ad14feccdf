//! The `/incident` command grammar, shared by slash commands and mentions of the bot.
//!
//! [`Verb`] lists every verb once with its usage and summary; the help text is generated from it,
//! so it cannot drift from the parser.

use std::fmt;

use super::decide::Action;
use super::followup::parse_label;
use super::ids::{IncidentId, Severity, UserId};
use super::incident::Role;
use super::stats::StatsQuery;

/// Declares the verbs once: the enum, [`Verb::ALL`] (help's order) and each verb's name come from
/// this one list, so a verb cannot exist without being parsed and listed in help.
macro_rules! verbs {
    ($($(#[$doc:meta])* $verb:ident => $name:literal),+ $(,)?) => {
        /// Every verb the bot understands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Verb {
            $($(#[$doc])* $verb),+
        }

        impl Verb {
            /// Every verb, in the order help shows them.
            pub const ALL: &'static [Verb] = &[$(Verb::$verb),+];

            pub fn name(self) -> &'static str {
                match self {
                    $(Verb::$verb => $name),+
                }
            }
        }
    };
}

verbs! {
    /// Open an incident by hand.
    Declare => "declare",
    Ack => "ack",
    Sev => "sev",
    Commander => "commander",
    Investigator => "investigator",
    Status => "status",
    Mitigated => "mitigated",
    RootCause => "rootcause",
    Resolve => "resolve",
    Reopen => "reopen",
    Note => "note",
    /// Record work the incident leaves behind (or mark it done).
    Followup => "followup",
    Followups => "followups",
    Timeline => "timeline",
    List => "list",
    Oncall => "oncall",
    Stats => "stats",
    Help => "help",
}

impl Verb {
    /// Other spellings people type.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Verb::Ack => &["acknowledge"],
            Verb::Sev => &["severity"],
            Verb::Mitigated => &["mitigate"],
            Verb::RootCause => &["root-cause", "rca"],
            Verb::Oncall => &["on-call", "who"],
            Verb::Investigator => &["investigate"],
            Verb::Followup => &["follow-up", "action-item"],
            Verb::Followups => &["follow-ups", "action-items"],
            Verb::Stats => &["insights"],
            _ => &[],
        }
    }

    pub fn usage(self) -> &'static str {
        match self {
            Verb::Declare => "declare <title> [sev <1-4>] [team <name>]",
            Verb::Ack => "ack",
            Verb::Sev => "sev <1-4> [reason]",
            Verb::Commander => "commander [@user]",
            Verb::Investigator => "investigator [@user]",
            Verb::Status => "status <text>",
            Verb::Mitigated => "mitigated [note]",
            Verb::RootCause => "rootcause <text>",
            Verb::Resolve => "resolve [summary]",
            Verb::Reopen => "reopen",
            Verb::Note => "note <text>",
            Verb::Followup => "followup <text> [@owner] | followup done F-<n>",
            Verb::Followups => "followups [INC-n]",
            Verb::Stats => "stats [team] [since 30d]",
            Verb::Timeline => "timeline",
            Verb::List => "list [open|all|mine]",
            Verb::Oncall => "oncall [team]",
            Verb::Help => "help",
        }
    }

    pub fn summary(self) -> &'static str {
        match self {
            Verb::Declare => "open an incident by hand",
            Verb::Ack => "acknowledge: you are on it (stops escalation)",
            Verb::Sev => "set the severity (SEV1 is the most severe); a person's choice is never replaced by rules",
            Verb::Commander => "take the commander role, or hand it to @user (`@me` takes over)",
            Verb::Investigator => "take the investigator role, or hand it to @user (`@me` takes over)",
            Verb::Status => "post a status update (commander; resets the reminder)",
            Verb::Mitigated => "declare the impact over (commander)",
            Verb::RootCause => "record the root cause (investigator)",
            Verb::Resolve => "resolve a mitigated incident and draft the postmortem",
            Verb::Reopen => "reopen a resolved incident",
            Verb::Note => "add a note to the timeline",
            Verb::Followup => "record a follow-up (a ticket when a tracker is configured), or mark one done",
            Verb::Followups => "list open follow-ups, of one incident or all",
            Verb::Stats => "incidents by severity, time to acknowledge / mitigate / resolve / root cause, the slowest",
            Verb::Timeline => "show the incident's timeline",
            Verb::List => "list incidents (default: open)",
            Verb::Oncall => "who is on call now, for every team or one",
            Verb::Help => "this list",
        }
    }

    /// Whether the verb changes an incident (and so needs permission).
    pub fn changes_state(self) -> bool {
        !matches!(self, Verb::Timeline | Verb::List | Verb::Oncall | Verb::Help | Verb::Followups | Verb::Stats)
    }

    fn parse(word: &str) -> Option<Verb> {
        let w = word.to_ascii_lowercase();
        Verb::ALL.iter().copied().find(|v| v.name() == w || v.aliases().contains(&w.as_str()))
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who a role command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No one named: claim the role for yourself (refused if someone holds it).
    Claim,
    /// `@me`: take over from whoever holds it.
    Me,
    /// Hand the role to this person.
    User(UserId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListScope {
    Open,
    All,
    Mine,
}

/// A parsed command with its typed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Open an incident by hand.
    Declare { title: String, severity: Option<Severity>, team: Option<String> },
    /// Acknowledge the incident.
    Ack,
    /// Set the severity, with an optional reason.
    Sev { severity: Severity, reason: Option<String> },
    /// Claim or hand over the commander role.
    Commander(Target),
    /// Claim or hand over the investigator role.
    Investigator(Target),
    /// Post a status update.
    Status(String),
    /// Declare the impact over.
    Mitigated(Option<String>),
    /// Record the root cause.
    RootCause(String),
    /// Resolve the incident.
    Resolve(Option<String>),
    /// Reopen a resolved incident.
    Reopen,
    /// Add a note to the timeline.
    Note(String),
    /// Record a follow-up, with its owner if one is mentioned last.
    Followup { text: String, owner: Option<UserId> },
    /// Mark `F-<n>` done.
    FollowupDone(u32),
    /// List open follow-ups.
    Followups,
    /// Show the timeline.
    Timeline,
    /// List incidents.
    List(ListScope),
    /// Who is on call.
    Oncall(Option<String>),
    /// Insights over recent incidents.
    Stats(StatsQuery),
    /// Show the command list.
    Help,
}

impl Command {
    pub fn verb(&self) -> Verb {
        match self {
            Command::Declare { .. } => Verb::Declare,
            Command::Ack => Verb::Ack,
            Command::Sev { .. } => Verb::Sev,
            Command::Commander(_) => Verb::Commander,
            Command::Investigator(_) => Verb::Investigator,
            Command::Status(_) => Verb::Status,
            Command::Mitigated(_) => Verb::Mitigated,
            Command::RootCause(_) => Verb::RootCause,
            Command::Resolve(_) => Verb::Resolve,
            Command::Reopen => Verb::Reopen,
            Command::Note(_) => Verb::Note,
            Command::Followup { .. } | Command::FollowupDone(_) => Verb::Followup,
            Command::Followups => Verb::Followups,
            Command::Stats(_) => Verb::Stats,
            Command::Timeline => Verb::Timeline,
            Command::List(_) => Verb::List,
            Command::Oncall(_) => Verb::Oncall,
            Command::Help => Verb::Help,
        }
    }
}

/// What a command asks for: a read-only answer, a new incident, or an action on an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Help,
    Oncall(Option<String>),
    List(ListScope),
    Timeline,
    Followups,
    Stats(StatsQuery),
    Declare { title: String, severity: Option<Severity>, team: Option<String> },
    Act(Action),
}

impl Command {
    /// What the command means, whoever typed it and wherever.
    pub fn intent(self) -> Intent {
        let claim = |role: Role, target: Target| match target {
            Target::Claim => Action::Claim { role, user: None, take_over: false },
            Target::Me => Action::Claim { role, user: None, take_over: true },
            Target::User(u) => Action::Claim { role, user: Some(u), take_over: true },
        };
        Intent::Act(match self {
            Command::Help => return Intent::Help,
            Command::Oncall(team) => return Intent::Oncall(team),
            Command::List(scope) => return Intent::List(scope),
            Command::Timeline => return Intent::Timeline,
            Command::Followups => return Intent::Followups,
            Command::Stats(q) => return Intent::Stats(q),
            Command::Followup { text, owner } => Action::Followup { text, owner, message_ts: None },
            Command::FollowupDone(number) => Action::FollowupDone { number },
            Command::Declare { title, severity, team } => return Intent::Declare { title, severity, team },
            Command::Ack => Action::Acknowledge,
            Command::Sev { severity, reason } => Action::SetSeverity { severity, reason },
            Command::Commander(target) => claim(Role::Commander, target),
            Command::Investigator(target) => claim(Role::Investigator, target),
            Command::Status(text) => Action::Status { text },
            Command::Mitigated(note) => Action::Mitigated { note },
            Command::RootCause(text) => Action::RootCause { text },
            Command::Resolve(summary) => Action::Resolve { summary },
            Command::Reopen => Action::Reopen,
            Command::Note(text) => Action::Note { text },
        })
    }
}

/// A command and the incident it names, if any (`INC-<n>` anywhere in the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub command: Command,
    pub incident: Option<IncidentId>,
    /// The command as typed (whitespace collapsed), for answers that show it back.
    pub typed: String,
}

/// Why a command could not be read; the text says what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("Tell me what to do, e.g. `/incident ack`. `/incident help` lists every command.")]
    Empty,
    #[error("I don't know `{word}`.{hint} `/incident help` lists every command.")]
    UnknownVerb { word: String, hint: String },
    #[error("`{verb}` needs more: `/incident {usage}`.")]
    MissingArgument { verb: Verb, usage: &'static str },
    #[error("`{value}` is not a severity: use `/incident sev <1-4> [reason]`, SEV1 being the most severe.")]
    BadSeverity { value: String },
    #[error("`{value}` is not a person: mention them (`@name`) or write `@me`.")]
    BadUser { value: String },
    #[error("`{value}` is not a list: use `/incident list open`, `all` or `mine`.")]
    BadListScope { value: String },
    #[error("{0}")]
    BadStats(String),
    #[error("`{value}` is not a follow-up: use `/incident followup done F-<n>` (`/incident followups` lists them).")]
    BadFollowup { value: String },
}

/// Parses the text after `/incident` (or after the bot's mention).
pub fn parse(text: &str) -> Result<Parsed, CommandError> {
    let incident = IncidentId::find_in(text);
    let words: Vec<&str> = text.split_whitespace().filter(|w| !is_incident_token(w)).collect();
    let Some((first, rest)) = words.split_first() else { return Err(CommandError::Empty) };
    let verb = Verb::parse(first).ok_or_else(|| unknown(first))?;
    let rest_text = rest.join(" ");
    let text_arg = || (!rest_text.is_empty()).then(|| rest_text.clone());
    let required = |verb: Verb| text_arg().ok_or(CommandError::MissingArgument { verb, usage: verb.usage() });
    let command = match verb {
        Verb::Declare => parse_declare(rest)?,
        Verb::Ack => Command::Ack,
        Verb::Sev => {
            let Some((level, reason)) = rest.split_first() else {
                return Err(CommandError::MissingArgument { verb, usage: verb.usage() });
            };
            let severity = level.parse().map_err(|_| CommandError::BadSeverity { value: level.to_string() })?;
            let reason = reason.join(" ");
            Command::Sev { severity, reason: (!reason.is_empty()).then_some(reason) }
        }
        Verb::Commander => Command::Commander(parse_target(rest)?),
        Verb::Investigator => Command::Investigator(parse_target(rest)?),
        Verb::Status => Command::Status(required(verb)?),
        Verb::Mitigated => Command::Mitigated(text_arg()),
        Verb::RootCause => Command::RootCause(required(verb)?),
        Verb::Resolve => Command::Resolve(text_arg()),
        Verb::Reopen => Command::Reopen,
        Verb::Note => Command::Note(required(verb)?),
        Verb::Followup => parse_followup(rest)?,
        Verb::Followups => Command::Followups,
        Verb::Stats => Command::Stats(StatsQuery::parse(rest).map_err(CommandError::BadStats)?),
        Verb::Timeline => Command::Timeline,
        Verb::List => Command::List(match rest.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            None | Some("open") => ListScope::Open,
            Some("all") => ListScope::All,
            Some("mine") => ListScope::Mine,
            Some(other) => return Err(CommandError::BadListScope { value: other.to_string() }),
        }),
        Verb::Oncall => Command::Oncall(rest.first().map(|t| t.to_string())),
        Verb::Help => Command::Help,
    };
    Ok(Parsed { command, incident, typed: text.split_whitespace().collect::<Vec<_>>().join(" ") })
}

fn is_incident_token(word: &str) -> bool {
    IncidentId::find_in(word).is_some()
        && word.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_ascii_uppercase().starts_with("INC-")
}

fn unknown(word: &str) -> CommandError {
    let lower = word.to_ascii_lowercase();
    let close = Verb::ALL
        .iter()
        .copied()
        .map(|v| (strsim::damerau_levenshtein(&lower, v.name()), v))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    let hint = close.map(|(_, v)| format!(" Did you mean `/incident {}`?", v.usage())).unwrap_or_default();
    CommandError::UnknownVerb { word: word.to_string(), hint }
}

fn parse_target(rest: &[&str]) -> Result<Target, CommandError> {
    match rest.first() {
        None => Ok(Target::Claim),
        Some(w) if matches!(w.to_ascii_lowercase().as_str(), "@me" | "me" | "myself") => Ok(Target::Me),
        Some(w) => {
            UserId::from_mention(w).map(Target::User).ok_or_else(|| CommandError::BadUser { value: w.to_string() })
        }
    }
}

/// `declare <title> [sev N] [team T]`: the options may appear anywhere; the rest is the title.
/// `followup <text> [@owner]` or `followup done F-<n>`.
fn parse_followup(rest: &[&str]) -> Result<Command, CommandError> {
    let missing = || CommandError::MissingArgument { verb: Verb::Followup, usage: Verb::Followup.usage() };
    if let [done, label] = rest
        && done.eq_ignore_ascii_case("done")
    {
        return parse_label(label)
            .map(Command::FollowupDone)
            .ok_or(CommandError::BadFollowup { value: label.to_string() });
    }
    let (owner, words) = match rest.split_last() {
        Some((last, words)) if last.starts_with("<@") => match UserId::from_mention(last) {
            Some(owner) => (Some(owner), words),
            None => return Err(CommandError::BadUser { value: last.to_string() }),
        },
        _ => (None, rest),
    };
    if words.is_empty() {
        return Err(missing());
    }
    Ok(Command::Followup { text: words.join(" "), owner })
}

fn parse_declare(rest: &[&str]) -> Result<Command, CommandError> {
    let mut title = Vec::new();
    let mut severity = None;
    let mut team = None;
    let mut i = 0;
    while i < rest.len() {
        let word = rest[i];
        let lower = word.to_ascii_lowercase();
        if (lower == "sev" || lower == "severity") && i + 1 < rest.len() {
            severity =
                Some(rest[i + 1].parse().map_err(|_| CommandError::BadSeverity { value: rest[i + 1].to_string() })?);
            i += 2;
        } else if lower.starts_with("sev") && lower.len() > 3 && word.parse::<Severity>().is_ok() {
            severity = word.parse().ok();
            i += 1;
        } else if lower == "team" && i + 1 < rest.len() {
            team = Some(rest[i + 1].to_string());
            i += 2;
        } else {
            title.push(word);
            i += 1;
        }
    }
    if title.is_empty() {
        return Err(CommandError::MissingArgument { verb: Verb::Declare, usage: Verb::Declare.usage() });
    }
    Ok(Command::Declare { title: title.join(" "), severity, team })
}

/// The command list, generated from [`Verb::ALL`].
pub fn help_text() -> String {
    let mut out =
        String::from("*incident-commander* — use `/incident <command>`, or mention me in an incident thread.\n");
    for verb in Verb::ALL.iter().copied() {
        out.push_str(&format!("• `{}` — {}\n", verb.usage(), verb.summary()));
    }
    out.push_str(
        "Name an incident with `INC-<n>` anywhere in the command; inside an incident thread or channel it is implied.",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(text: &str) -> Command {
        parse(text).unwrap().command
    }

    #[test]
    fn every_verb_parses_and_appears_in_help() {
        let help = help_text();
        for verb in Verb::ALL.iter().copied() {
            assert!(help.contains(verb.usage()), "{verb} missing from help");
        }
        assert_eq!(cmd("ack"), Command::Ack);
        assert_eq!(cmd("ACKNOWLEDGE"), Command::Ack);
        assert_eq!(cmd("reopen"), Command::Reopen);
        assert_eq!(cmd("timeline"), Command::Timeline);
        assert_eq!(cmd("help"), Command::Help);
        assert_eq!(cmd("status rolling back now"), Command::Status("rolling back now".into()));
        assert_eq!(cmd("mitigated"), Command::Mitigated(None));
        assert_eq!(cmd("mitigated flag off"), Command::Mitigated(Some("flag off".into())));
        assert_eq!(cmd("rootcause bad index"), Command::RootCause("bad index".into()));
        assert_eq!(cmd("resolve"), Command::Resolve(None));
        assert_eq!(cmd("note hi"), Command::Note("hi".into()));
        assert_eq!(cmd("list"), Command::List(ListScope::Open));
        assert_eq!(cmd("list mine"), Command::List(ListScope::Mine));
        assert_eq!(cmd("oncall frontend"), Command::Oncall(Some("frontend".into())));
    }

    #[test]
    fn incident_token_anywhere_selects_the_incident() {
        let p = parse("status INC-12 db failover done").unwrap();
        assert_eq!(p.incident, Some(IncidentId::new(12).unwrap()));
        assert_eq!(p.command, Command::Status("db failover done".into()));
        let p = parse("INC-3 ack").unwrap();
        assert_eq!((p.command, p.incident.map(|i| i.number())), (Command::Ack, Some(3)));
    }

    #[test]
    fn severity_takes_a_level_and_an_optional_reason() {
        assert_eq!(
            cmd("sev 1 checkout down"),
            Command::Sev { severity: Severity::Sev1, reason: Some("checkout down".into()) }
        );
        assert_eq!(cmd("sev SEV3"), Command::Sev { severity: Severity::Sev3, reason: None });
        let err = parse("sev 9").unwrap_err();
        assert!(err.to_string().contains("`/incident sev <1-4> [reason]`"), "{err}");
        assert!(matches!(parse("sev").unwrap_err(), CommandError::MissingArgument { verb: Verb::Sev, .. }));
    }

    #[test]
    fn role_targets_read_every_mention_form() {
        assert_eq!(cmd("commander"), Command::Commander(Target::Claim));
        assert_eq!(cmd("commander @me"), Command::Commander(Target::Me));
        let u = UserId::parse("U0123ABCD").unwrap();
        assert_eq!(cmd("investigator <@U0123ABCD|alice>"), Command::Investigator(Target::User(u.clone())));
        assert_eq!(cmd("investigator <@U0123ABCD>"), Command::Investigator(Target::User(u)));
        assert!(matches!(parse("commander @alice").unwrap_err(), CommandError::BadUser { .. }));
    }

    #[test]
    fn declare_picks_options_out_of_the_title() {
        assert_eq!(
            cmd("declare Checkout is down sev 1 team frontend"),
            Command::Declare {
                title: "Checkout is down".into(),
                severity: Some(Severity::Sev1),
                team: Some("frontend".into())
            }
        );
        assert_eq!(
            cmd("declare SEV2 Payments slow"),
            Command::Declare { title: "Payments slow".into(), severity: Some(Severity::Sev2), team: None }
        );
        assert!(matches!(
            parse("declare sev 2").unwrap_err(),
            CommandError::MissingArgument { verb: Verb::Declare, .. }
        ));
    }

    #[test]
    fn errors_say_what_to_type() {
        assert_eq!(parse("  ").unwrap_err(), CommandError::Empty);
        let err = parse("resolv").unwrap_err();
        assert_eq!(
            err.to_string(),
            "I don't know `resolv`. Did you mean `/incident resolve [summary]`? `/incident help` lists every command."
        );
        let err = parse("status").unwrap_err();
        assert_eq!(err.to_string(), "`status` needs more: `/incident status <text>`.");
        assert!(parse("list some").unwrap_err().to_string().contains("open`, `all` or `mine`"));
    }
}
