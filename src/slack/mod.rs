//! slack-morphism glue: the Web API client, rate-limited durable egress, HTTP and Socket Mode
//! ingress, Block Kit rendering, and the interpreter from Slack payloads to domain events.

pub mod blocks;
pub mod client;
pub mod egress;
pub mod ingress;
pub mod read;
pub mod socket;
