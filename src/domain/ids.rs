//! Identifiers and small value types, validated once at construction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value could not be turned into one of the identifier types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(pub String);

/// An incident number, shown as `INC-<n>`. Numbers start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(u64);

impl IncidentId {
    /// The first incident of a fresh installation.
    pub const FIRST: IncidentId = IncidentId(1);

    pub fn new(n: u64) -> Result<Self, InvalidId> {
        if n == 0 {
            return Err(InvalidId("incident numbers start at 1".into()));
        }
        Ok(IncidentId(n))
    }

    pub fn number(self) -> u64 {
        self.0
    }

    pub fn next(self) -> IncidentId {
        IncidentId(self.0 + 1)
    }

    /// Finds an `INC-<n>` token (case-insensitive) in free text, as users type it.
    pub fn find_in(text: &str) -> Option<IncidentId> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).find_map(|word| word.parse().ok())
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{}", self.0)
    }
}

impl FromStr for IncidentId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("INC-"))
            .map(|_| &s[4..])
            .ok_or_else(|| InvalidId(format!("`{s}` is not an incident id (expected INC-<number>)")))?;
        let n: u64 =
            digits.parse().map_err(|_| InvalidId(format!("`{s}` is not an incident id (expected INC-<number>)")))?;
        IncidentId::new(n)
    }
}

fn is_slack_id(s: &str, prefixes: &[char]) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if prefixes.contains(&c))
        && (3..=24).contains(&s.len())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

macro_rules! slack_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, [$($prefix:literal),+]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Prefix letters a valid id starts with.
            pub const PREFIXES: &'static [char] = &[$($prefix),+];

            pub fn parse(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                if is_slack_id(&s, Self::PREFIXES) {
                    Ok($name(s))
                } else {
                    let prefixes: Vec<String> = Self::PREFIXES.iter().map(|c| c.to_string()).collect();
                    Err(InvalidId(format!(
                        "`{s}` is not a Slack {} id (expected {} followed by capital letters and digits, e.g. {}0123ABCD)",
                        $what,
                        prefixes.join(" or "),
                        Self::PREFIXES[0],
                    )))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $name::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }
    };
}

slack_id!(
    /// A Slack user id (`U…`, or `W…` on Enterprise Grid).
    UserId, "user", ['U', 'W']
);
slack_id!(
    /// A Slack conversation id: public channel `C…`, private channel `G…`, direct message `D…`.
    ChannelId, "channel", ['C', 'G', 'D']
);
slack_id!(
    /// A Slack bot id (`B…`), as found on messages posted by apps and integrations.
    BotId, "bot", ['B']
);

impl UserId {
    /// Renders a mention that Slack turns into a clickable, notifying `@name`.
    pub fn mention(&self) -> String {
        format!("<@{}>", self.0)
    }

    /// Reads a user reference as Slack delivers it inside command text: `<@U123>`, `<@U123|name>`,
    /// or a bare id.
    pub fn from_mention(s: &str) -> Option<UserId> {
        let inner = s
            .strip_prefix("<@")
            .and_then(|rest| rest.strip_suffix('>'))
            .map(|inner| inner.split('|').next().unwrap_or(inner))
            .unwrap_or(s);
        UserId::parse(inner).ok()
    }
}

/// Incident severity: SEV1 is the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Sev1, Severity::Sev2, Severity::Sev3, Severity::Sev4];

    pub fn from_level(level: i64) -> Option<Severity> {
        match level {
            1 => Some(Severity::Sev1),
            2 => Some(Severity::Sev2),
            3 => Some(Severity::Sev3),
            4 => Some(Severity::Sev4),
            _ => None,
        }
    }

    pub fn level(self) -> u8 {
        self as u8 + 1
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SEV{}", self.level())
    }
}

impl FromStr for Severity {
    type Err = InvalidId;

    /// Accepts `1`, `sev1`, `SEV-1`, `S1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let digits = lower
            .strip_prefix("sev")
            .or_else(|| lower.strip_prefix('s'))
            .unwrap_or(&lower)
            .trim_start_matches(['-', ' ']);
        digits
            .parse::<i64>()
            .ok()
            .and_then(Severity::from_level)
            .ok_or_else(|| InvalidId(format!("`{s}` is not a severity (use 1, 2, 3 or 4; SEV1 is the most severe)")))
    }
}

/// Monitor priority as Datadog labels it: P1 (highest) to P5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
    P5,
}

impl Priority {
    pub fn from_level(level: u8) -> Option<Priority> {
        [Priority::P1, Priority::P2, Priority::P3, Priority::P4, Priority::P5]
            .get(usize::from(level).checked_sub(1)?)
            .copied()
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", *self as u8 + 1)
    }
}

impl FromStr for Priority {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        t.strip_prefix(['P', 'p'])
            .and_then(|d| d.parse::<u8>().ok())
            .and_then(Priority::from_level)
            .ok_or_else(|| InvalidId(format!("`{s}` is not a priority (use P1 to P5)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_id_round_trips_and_is_found_in_text() {
        let id: IncidentId = "INC-42".parse().unwrap();
        assert_eq!(id.to_string(), "INC-42");
        assert_eq!("inc-7".parse::<IncidentId>().unwrap().number(), 7);
        assert!("INC-0".parse::<IncidentId>().is_err());
        assert!("INC-x".parse::<IncidentId>().is_err());
        assert_eq!(IncidentId::find_in("ack INC-12 please"), Some(IncidentId(12)));
        assert_eq!(IncidentId::find_in("status (INC-3): fixed"), Some(IncidentId(3)));
        assert_eq!(IncidentId::find_in("no id here"), None);
    }

    #[test]
    fn slack_ids_are_validated() {
        assert!(ChannelId::parse("C0ALERTS1").is_ok());
        assert!(ChannelId::parse("G0123ABCDE").is_ok());
        let err = ChannelId::parse("#alerts").unwrap_err();
        assert!(err.0.contains("not a Slack channel id"), "{err}");
        assert!(ChannelId::parse("C0alerts1").is_err());
        assert!(UserId::parse("U0AAA").is_ok());
        assert!(UserId::parse("U").is_err());
        assert!(UserId::parse("alice").is_err());
        assert!(BotId::parse("B0OTHERBOT").is_ok());
    }

    #[test]
    fn mentions_parse_in_every_form_slack_sends() {
        let want = UserId::parse("U0123ABCD").unwrap();
        assert_eq!(UserId::from_mention("<@U0123ABCD>"), Some(want.clone()));
        assert_eq!(UserId::from_mention("<@U0123ABCD|alice>"), Some(want.clone()));
        assert_eq!(UserId::from_mention("U0123ABCD"), Some(want.clone()));
        assert_eq!(UserId::from_mention("@alice"), None);
        assert_eq!(want.mention(), "<@U0123ABCD>");
    }

    #[test]
    fn severities_and_priorities_parse_leniently() {
        assert_eq!("2".parse::<Severity>().unwrap(), Severity::Sev2);
        assert_eq!("SEV1".parse::<Severity>().unwrap(), Severity::Sev1);
        assert_eq!("sev-3".parse::<Severity>().unwrap(), Severity::Sev3);
        assert!("5".parse::<Severity>().is_err());
        assert!(Severity::Sev1 < Severity::Sev4, "SEV1 sorts first: it is the most severe");
        assert_eq!("p2".parse::<Priority>().unwrap(), Priority::P2);
        assert_eq!(Priority::P5.to_string(), "P5");
        assert!("P6".parse::<Priority>().is_err());
    }
}
