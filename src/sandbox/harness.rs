//! The test harness: the sandbox driver with test assertions. A step the bot does not accept
//! fails the test with the reason; `expect_reply` finds the bot's next message containing a
//! text; `finish` fails when the bot said something the test never looked at.
//!
//! ```text
//! let mut t = Harness::start(HarnessOptions::http(policy_text)).await;
//! t.mention(ALICE, "C0ALERTS1", None, "help").await;
//! t.expect_reply("C0ALERTS1", "declare");
//! t.finish();
//! ```

use std::collections::HashSet;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;

use serde_json::Value;

pub use super::driver::{
    DatadogPost, Driver, DriverOptions as HarnessOptions, Mode, WEBHOOK_TOKEN, default_start, message_contains,
};
use super::slack::StoredMessage;

/// The bot and its sandbox, running, under test.
pub struct Harness {
    driver: Driver,
    seen: HashSet<(String, String)>,
}

impl Deref for Harness {
    type Target = Driver;
    fn deref(&self) -> &Driver {
        &self.driver
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Driver {
        &mut self.driver
    }
}

/// The step's result, or the test fails with its reason.
fn must<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e:#}"))
}

impl Harness {
    /// Starts a sandbox workspace populated from the policy, then the bot against it.
    pub async fn start(options: HarnessOptions) -> Harness {
        Harness { driver: must(Driver::start(options).await), seen: HashSet::new() }
    }

    /// Stops the bot cleanly and starts it again on the same data and sandbox.
    pub async fn restart(self) -> Harness {
        Harness { driver: must(self.driver.restart().await), seen: self.seen }
    }

    /// Stops the bot cleanly; returns its data directory (and the guard keeping a temporary one).
    pub async fn stop(self) -> (PathBuf, Option<tempfile::TempDir>) {
        must(self.driver.stop().await)
    }

    pub async fn idle(&mut self) {
        must(self.driver.idle().await)
    }

    pub async fn say(&mut self, user: &str, channel: &str, thread_ts: Option<&str>, text: &str) -> String {
        must(self.driver.say(user, channel, thread_ts, text).await)
    }

    pub async fn mention(&mut self, user: &str, channel: &str, thread_ts: Option<&str>, text: &str) -> String {
        must(self.driver.mention(user, channel, thread_ts, text).await)
    }

    pub async fn slash(&mut self, user: &str, channel: &str, text: &str) -> Vec<String> {
        must(self.driver.slash(user, channel, text).await)
    }

    pub async fn react(&mut self, user: &str, channel: &str, ts: &str, emoji: &str) {
        must(self.driver.react(user, channel, ts, emoji).await)
    }

    pub async fn click(&mut self, user: &str, channel: &str, ts: &str, action_id: &str) -> Vec<String> {
        must(self.driver.click(user, channel, ts, action_id).await)
    }

    pub async fn select_severity(&mut self, user: &str, channel: &str, ts: &str, level: u8) -> Vec<String> {
        must(self.driver.select_severity(user, channel, ts, level).await)
    }

    pub async fn post_datadog_alert(&mut self, channel: &str, alert: &DatadogPost) -> String {
        must(self.driver.post_datadog_alert(channel, alert).await)
    }

    pub async fn edit_datadog_alert(&mut self, channel: &str, ts: &str, alert: &DatadogPost) {
        must(self.driver.edit_datadog_alert(channel, ts, alert).await)
    }

    pub async fn webhook(&mut self, source: &str, body: &Value) -> (u16, Value) {
        must(self.driver.webhook(source, body).await)
    }

    pub async fn webhook_with_token(&mut self, source: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        must(self.driver.webhook_with_token(source, body, token).await)
    }

    pub async fn advance(&mut self, by: chrono::TimeDelta) {
        must(self.driver.advance(by).await)
    }

    pub async fn submit_root_cause(&mut self, user: &str, text: &str) {
        must(self.driver.submit_root_cause(user, text).await)
    }

    pub async fn submit_followup(&mut self, user: &str, text: &str, owner: Option<&str>) {
        must(self.driver.submit_followup(user, text, owner).await)
    }

    /// The first bot message in `channel` not looked at yet whose text (or blocks) contains
    /// `needle`; it counts as looked at.
    pub fn expect_reply(&mut self, channel: &str, needle: &str) -> StoredMessage {
        let found = self
            .bot_messages()
            .into_iter()
            .filter(|m| m.channel == channel && !self.seen.contains(&(m.channel.clone(), m.ts.clone())))
            .find(|m| message_contains(m, needle));
        let Some(m) = found else {
            let texts: Vec<String> =
                self.bot_messages().iter().filter(|m| m.channel == channel).map(|m| m.text.clone()).collect();
            let calls: Vec<String> = self
                .sandbox
                .calls()
                .iter()
                .map(|c| format!("{}ms {} {} -> {}", c.elapsed_ms, c.method, c.status, c.response))
                .collect();
            panic!(
                "no unread bot message in {channel} contains {needle:?}; bot messages there: {texts:#?}\nSlack calls:\n{}",
                calls.join("\n")
            );
        };
        self.seen.insert((m.channel.clone(), m.ts.clone()));
        m
    }

    /// Marks every bot message so far as looked at.
    pub fn ack_all(&mut self) {
        for m in self.bot_messages() {
            self.seen.insert((m.channel, m.ts));
        }
    }

    /// Fails if the bot posted a message the test never looked at.
    pub fn finish(self) {
        let unread: Vec<String> = self
            .bot_messages()
            .into_iter()
            .filter(|m| !self.seen.contains(&(m.channel.clone(), m.ts.clone())))
            .map(|m| format!("{} {}: {}", m.channel, m.ts, m.text))
            .collect();
        assert!(unread.is_empty(), "the bot posted messages the test never looked at:\n{}", unread.join("\n"));
    }
}
