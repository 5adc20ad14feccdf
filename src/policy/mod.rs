//! The policy file: reading and validating its TOML into the domain's [`Policy`].
//!
//! [`Policy::parse`] reads TOML text and returns either a validated [`Policy`] or every problem
//! found, each naming the key path and the fix. Reading the file is the caller's business, so this
//! module stays pure like the domain it builds.

mod raw;
mod validate;

pub use crate::domain::policy::*;
pub use validate::{ConfigError, ConfigErrors, parse_duration};

impl Policy {
    /// Parses and validates policy text. `source` names the file in messages.
    pub fn parse(text: &str) -> Result<Policy, ConfigErrors> {
        validate::parse(text)
    }
}
