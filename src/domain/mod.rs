//! The pure core: alerts, incidents, roles, rotations, severity, and `decide`.
//!
//! Nothing in here performs I/O or reads a clock: time comes in as an argument, and the shell in
//! `app/` persists what `decide` returns. A test keeps it that way (`tests/architecture.rs`).

pub mod alert;
pub mod command;
pub mod decide;
pub mod evidence;
pub mod followup;
pub mod ids;
pub mod incident;
pub mod messages;
pub mod policy;
pub mod postmortem;
pub mod queries;
pub mod roster;
pub mod severity;
pub mod stats;
pub mod storm;
pub mod text;

pub use alert::{Alert, AlertSource, Fingerprint, Transition};
pub use decide::{Action, Context, Effect, Event, Outcome, State, decide};
pub use ids::{BotId, ChannelId, IncidentId, Priority, Severity, UserId};
pub use incident::{Incident, Role, RootCause, Status, TransitionError};
