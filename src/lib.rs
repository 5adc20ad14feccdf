//! incident-commander: an on-call incident-commander Slack bot.
//!
//! Data flows one way: ingress → inbox → serial processor → outbox → egress. Dependencies point
//! one way too (docs/design.md has the map; `tests/architecture.rs` enforces it):
//!
//! - [`domain`]: the pure core (incidents, alerts, `decide`, messages, queries, policy types);
//!   [`policy`] reads the policy file into it; [`sources`] reads alert payloads into it.
//! - [`app`]: the application layer: requests and their rules, the processor, the store and
//!   evidence ports.
//! - Adapters: [`store`] (sled, memory), [`slack`], [`datadog`], [`http`].
//! - [`startup`] wires them; [`cli`], [`simulate`] and (feature `sandbox`) `sandbox` and `demo`
//!   sit on top.

pub mod app;
pub mod cli;
pub mod dashboard;
pub mod datadog;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod domain;
pub mod http;
pub mod policy;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod simulate;
pub mod slack;
pub mod sources;
pub mod startup;
pub mod store;
pub mod tls;
pub mod trackers;
