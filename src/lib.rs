//! incident-commander: an on-call incident-commander Slack bot.
//!
//! Data flows one way: ingress → inbox → serial processor → outbox → egress. The pure core lives in
//! [`domain`]; [`policy`] reads the policy file; [`store`] persists; [`app`] is the imperative shell.

pub mod app;
pub mod cli;
pub mod datadog;
pub mod demo;
pub mod domain;
pub mod policy;
pub mod sandbox;
pub mod simulate;
pub mod slack;
pub mod sources;
pub mod store;
pub mod tls;
