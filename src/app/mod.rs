//! The application layer: the rules between the adapters and the pure domain, and the serial
//! shell that runs them.
//!
//! - [`request`]: what people and alert sources ask, in adapter-neutral words, and how the bot
//!   takes it (target resolution, commands, buttons, reactions, read-only answers).
//! - [`processor`]: load, decide, commit; the one writer. [`inbox`] feeds it durably; [`render`]
//!   turns the domain's effects into the [`outbox`]'s calls.
//! - [`store`]: the persistence port every backend implements (`crate::store`).
//! - [`evidence`]: the evidence port and its worker (Datadog implements it in `crate::datadog`).
//! - [`tickets`]: the tracker port and its worker (GitHub and Jira in `crate::trackers`); both
//!   workers run on [`jobs`].
//! - [`clock`] and [`metrics`]: time and counters, injected.
//!
//! Adapters (`slack`, `datadog`, `http`) depend on this module, never the reverse; `startup`
//! wires them together.

pub mod clock;
pub mod evidence;
pub mod inbox;
pub mod jobs;
pub mod metrics;
pub mod outbox;
pub mod processor;
pub mod render;
pub mod request;
pub mod store;
pub mod tickets;
