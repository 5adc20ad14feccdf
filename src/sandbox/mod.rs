//! The built-in sandbox: a local Slack workspace (and, with evidence, a Datadog) on loopback,
//! speaking the real wire formats so the real adapters run against it unchanged. Used by the
//! integration tests and by `incident-commander demo`.

pub mod datadog;
pub mod driver;
pub mod harness;
pub mod slack;
