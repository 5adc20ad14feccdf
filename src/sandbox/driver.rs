//! The sandbox driver: the real bot wired to the sandbox Slack (and Datadog) over loopback,
//! driven like a conversation: people act as they do in Slack, and the driver waits until the
//! bot has handled it all. Every step returns an error rather than panicking, so the demo can
//! report a hiccup; the test harness (`super::harness`) adds the assertions.

use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};

use super::slack::{self, Delivery, DeliveryResult, Private, SandboxLimits, SlackSandbox, StoredMessage};
use crate::app::clock::{Clock, ManualClock, SystemClock};
use crate::policy::Policy;
use crate::slack::egress::EgressLimits;
use crate::slack::socket::SocketSettings;
use crate::startup::{RunningApp, Settings};

/// How long the driver waits for the bot to go quiet after a step.
pub const IDLE_WITHIN: Duration = Duration::from_secs(30);

/// The webhook token the driver configures.
/// The dashboard's token against the sandbox (tests, `demo --keep`).
pub const DASHBOARD_TOKEN: &str = "sandbox-dashboard-token";
pub const WEBHOOK_TOKEN: &str = "sandbox-webhook-token";

/// How the sandbox reaches the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Socket,
}

pub struct DriverOptions {
    pub mode: Mode,
    pub policy: String,
    pub egress: EgressLimits,
    pub sandbox_limits: SandboxLimits,
    /// Socket Mode's silence limit (watchdog).
    pub silence_limit: Duration,
    /// The bot's manual clock (timers fire when the test says). Every harness starts on one, at
    /// [`default_start`] unless told otherwise, so what a test sees never depends on the day it
    /// runs; `None` (see [`DriverOptions::on_wall_clock`]) is for tests about the wall clock.
    pub clock: Option<Arc<ManualClock>>,
    /// Use this data directory instead of a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    /// Start the sandbox Datadog with this world (evidence on).
    pub datadog: Option<super::datadog::DatadogWorld>,
    /// The `DD_SITE` the bot is told (links use its app host); the API is the sandbox either way.
    pub dd_site: String,
    /// Spans requests per hour the bot may make.
    pub dd_budget: u32,
    /// Display names of people and channels (by id); others are named after their id.
    pub names: Vec<(String, String)>,
}

impl DriverOptions {
    pub fn new(mode: Mode, policy: &str) -> DriverOptions {
        DriverOptions {
            mode,
            policy: policy.to_string(),
            egress: EgressLimits::fast(),
            sandbox_limits: SandboxLimits::RELAXED,
            silence_limit: Duration::from_secs(600),
            clock: Some(Arc::new(ManualClock::new(default_start()))),
            data_dir: None,
            datadog: None,
            dd_site: "datadoghq.com".into(),
            dd_budget: crate::datadog::SPANS_REQUESTS_PER_HOUR,
            names: Vec::new(),
        }
    }

    pub fn http(policy: &str) -> DriverOptions {
        DriverOptions::new(Mode::Http, policy)
    }

    pub fn socket(policy: &str) -> DriverOptions {
        DriverOptions::new(Mode::Socket, policy)
    }

    /// Runs the bot on the machine's clock instead of a manual one.
    pub fn on_wall_clock(mut self) -> DriverOptions {
        self.clock = None;
        self
    }
}

/// Where a harness's manual clock starts by default: Wednesday 2026-11-04 10:00 UTC, a working
/// hour in the middle of a rotation week.
pub fn default_start() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-04T10:00:00Z").expect("a valid instant").to_utc()
}

/// The bot and its sandbox, running.
pub struct Driver {
    pub sandbox: SlackSandbox,
    /// The sandbox Datadog, when evidence is on.
    pub datadog: Option<super::datadog::DatadogSandbox>,
    /// The sandbox GitHub and Jira (the policy's `[followups]` decides whether the bot uses one).
    pub trackers: super::trackers::TrackerSandbox,
    dd: Option<(String, u32)>,
    pub app: RunningApp,
    pub mode: Mode,
    policy: String,
    egress: EgressLimits,
    silence_limit: Duration,
    clock: Arc<dyn Clock>,
    manual_clock: Option<Arc<ManualClock>>,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    privates_seen: usize,
}

/// The people and channels the policy names exist in the workspace; the bot is in every channel.
fn populate(sandbox: &SlackSandbox, policy: &Policy, names: &[(String, String)]) {
    let name_of =
        |id: &str, fallback: String| names.iter().find(|(i, _)| i == id).map(|(_, n)| n.clone()).unwrap_or(fallback);
    let mut users: Vec<String> = Vec::new();
    let mut channels: Vec<String> = policy.slack.alert_channels.iter().map(|c| c.to_string()).collect();
    for team in &policy.teams {
        users.extend(team.rotation.members().iter().map(|u| u.to_string()));
        users.extend(team.escalation.iter().map(|u| u.to_string()));
        channels.push(team.channel.to_string());
    }
    users.extend(policy.slack.responders.iter().map(|u| u.to_string()));
    users.sort();
    users.dedup();
    channels.sort();
    channels.dedup();
    for (id, _) in names.iter().filter(|(id, _)| id.starts_with(['U', 'W'])) {
        if !users.contains(id) {
            users.push(id.clone());
        }
    }
    for u in &users {
        sandbox.add_user(u, &name_of(u, u.to_lowercase()));
    }
    for c in &channels {
        let mut members: Vec<&str> = users.iter().map(String::as_str).collect();
        members.push(slack::BOT_USER_ID);
        sandbox.add_channel(c, &name_of(c, format!("alerts-{}", c.to_lowercase())), &members);
    }
}

#[allow(clippy::too_many_arguments)]
async fn start_bot(
    sandbox: &SlackSandbox,
    trackers: &super::trackers::TrackerSandbox,
    datadog: Option<(&super::datadog::DatadogSandbox, &str, u32)>,
    mode: Mode,
    policy: Policy,
    data_dir: PathBuf,
    clock: Arc<dyn Clock>,
    egress: EgressLimits,
    silence_limit: Duration,
) -> anyhow::Result<RunningApp> {
    let mut slack = sandbox.bot_settings(egress);
    if mode == Mode::Socket {
        slack.signing_secret = None;
        slack.socket = Some(SocketSettings {
            app_token: SecretString::from(slack::APP_TOKEN),
            silence_limit,
            connections: 1,
            reconnect_seconds: 1,
        });
    }
    let store = crate::store::open_embedded(&data_dir)
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    let settings = Settings {
        policy,
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        clock,
        tick_every: Duration::from_secs(3600),
        slack: Some(slack),
        webhook_token: Some(SecretString::from(WEBHOOK_TOKEN)),
        datadog: datadog.map(|(dd, site, budget)| crate::startup::DatadogSettings {
            site: crate::datadog::Site::resolve(site, Some(&dd.api_url())).expect("a known site"),
            api_key: SecretString::from(super::datadog::API_KEY),
            app_key: SecretString::from(super::datadog::APP_KEY),
            budget_per_hour: budget,
        }),
        trackers: trackers.env(),
        dashboard_token: Some(SecretString::from(DASHBOARD_TOKEN)),
    };
    let opened_before = sandbox.connections_opened();
    let app = RunningApp::start(settings, store).await?;
    match mode {
        Mode::Http => sandbox.set_delivery(Delivery::Http { base: format!("http://{}", app.addr) }),
        Mode::Socket => {
            sandbox.set_delivery(Delivery::Socket);
            anyhow::ensure!(
                sandbox.wait_connections(opened_before + 1, Duration::from_secs(20)).await,
                "the bot did not open a Socket Mode connection"
            );
        }
    }
    Ok(app)
}

impl Driver {
    /// Starts a sandbox workspace populated from the policy, then the bot against it.
    pub async fn start(options: DriverOptions) -> anyhow::Result<Driver> {
        crate::tls::install_crypto_provider();
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let sandbox = SlackSandbox::start(options.sandbox_limits).await.context("the sandbox Slack does not start")?;
        let policy = Policy::parse(&options.policy).map_err(|e| anyhow::anyhow!("the policy is not valid:\n{e}"))?;
        populate(&sandbox, &policy, &options.names);
        let (data_dir, temp) = match options.data_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::tempdir().context("cannot make a temporary data directory")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let clock: Arc<dyn Clock> = match &options.clock {
            Some(c) => c.clone(),
            None => Arc::new(SystemClock),
        };
        // Message timestamps follow the bot's clock, as Slack's follow real time.
        sandbox.set_epoch(clock.now().timestamp());
        let datadog = match &options.datadog {
            Some(world) => Some(
                super::datadog::DatadogSandbox::start(world.clone())
                    .await
                    .context("the sandbox Datadog does not start")?,
            ),
            None => None,
        };
        let dd = datadog.as_ref().map(|_| (options.dd_site.clone(), options.dd_budget));
        let trackers =
            super::trackers::TrackerSandbox::start().await.context("the sandbox GitHub and Jira do not start")?;
        let app = start_bot(
            &sandbox,
            &trackers,
            datadog.as_ref().zip(dd.as_ref()).map(|(d, (site, budget))| (d, site.as_str(), *budget)),
            options.mode,
            policy,
            data_dir.clone(),
            clock.clone(),
            options.egress.clone(),
            options.silence_limit,
        )
        .await
        .context("the bot does not start against the sandbox")?;
        Ok(Driver {
            sandbox,
            datadog,
            trackers,
            dd,
            app,
            mode: options.mode,
            policy: options.policy,
            egress: options.egress,
            silence_limit: options.silence_limit,
            clock,
            manual_clock: options.clock.clone(),
            data_dir,
            _temp: temp,
            privates_seen: 0,
        })
    }

    /// Stops the bot cleanly and starts it again on the same data and sandbox.
    pub async fn restart(mut self) -> anyhow::Result<Driver> {
        self.app.shutdown().await.context("the bot does not stop cleanly")?;
        let parsed = Policy::parse(&self.policy).map_err(|e| anyhow::anyhow!("the policy is not valid:\n{e}"))?;
        let dd_args =
            self.datadog.as_ref().zip(self.dd.as_ref()).map(|(d, (site, budget))| (d, site.as_str(), *budget));
        self.app = start_bot(
            &self.sandbox,
            &self.trackers,
            dd_args,
            self.mode,
            parsed,
            self.data_dir.clone(),
            self.clock.clone(),
            self.egress.clone(),
            self.silence_limit,
        )
        .await
        .context("the bot does not start again")?;
        Ok(self)
    }

    /// Stops the bot cleanly; returns its data directory (and the guard keeping a temporary one).
    pub async fn stop(self) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
        self.app.shutdown().await.context("the bot does not stop cleanly")?;
        Ok((self.data_dir, self._temp))
    }

    /// Waits until the bot has handled everything and delivered every call, and the sandbox has
    /// delivered every event those calls caused (the bot's own messages coming back, thread
    /// updates, unfurls), until nothing more happens.
    pub async fn idle(&mut self) -> anyhow::Result<()> {
        let settle = async {
            loop {
                self.sandbox.settle().await;
                self.app.wait_idle().await;
                if self.sandbox.pending_events() == 0 {
                    break;
                }
            }
        };
        tokio::time::timeout(IDLE_WITHIN, settle)
            .await
            .map_err(|_| anyhow::anyhow!("the bot was still busy after {} s", IDLE_WITHIN.as_secs()))
    }

    fn acked(result: DeliveryResult, what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(result.is_acked(), "{what} was not accepted by the bot: {result:?}");
        Ok(())
    }

    /// A person posts `text` in `channel` (in a thread if `thread_ts`). Returns the message ts.
    pub async fn say(
        &mut self,
        user: &str,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
    ) -> anyhow::Result<String> {
        let (ts, result) = self.sandbox.post_as_user(user, channel, text, thread_ts).await;
        Self::acked(result, "the message")?;
        self.idle().await?;
        Ok(ts)
    }

    /// A person mentions the bot: `@incident-commander <text>`.
    pub async fn mention(
        &mut self,
        user: &str,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
    ) -> anyhow::Result<String> {
        let text = format!("<@{}> {text}", slack::BOT_USER_ID);
        self.say(user, channel, thread_ts, &text).await
    }

    /// A person runs `/incident <text>`; returns the private answers it produced.
    pub async fn slash(&mut self, user: &str, channel: &str, text: &str) -> anyhow::Result<Vec<String>> {
        let result = self.sandbox.slash(user, channel, text).await;
        Self::acked(result, "the slash command")?;
        self.idle().await?;
        Ok(self.new_privates().into_iter().map(|p| p.text).collect())
    }

    /// A person reacts to a message.
    pub async fn react(&mut self, user: &str, channel: &str, ts: &str, emoji: &str) -> anyhow::Result<()> {
        let result = self.sandbox.react(user, channel, ts, emoji).await;
        Self::acked(result, "the reaction")?;
        self.idle().await
    }

    /// A person clicks the button `action_id` on a bot message.
    pub async fn click(&mut self, user: &str, channel: &str, ts: &str, action_id: &str) -> anyhow::Result<Vec<String>> {
        let message =
            self.sandbox.message(channel, ts).ok_or_else(|| anyhow::anyhow!("no message {ts} in {channel}"))?;
        let button = find_control(&message.blocks, action_id)
            .ok_or_else(|| anyhow::anyhow!("no button `{action_id}` on message {ts} in {channel}"))?;
        let result = self
            .sandbox
            .click(
                user,
                channel,
                ts,
                json!({"type": "button", "action_id": action_id, "block_id": "actions", "value": button["value"]}),
            )
            .await;
        Self::acked(result, "the click")?;
        self.idle().await?;
        Ok(self.new_privates().into_iter().map(|p| p.text).collect())
    }

    /// A person picks a severity in the header's select.
    pub async fn select_severity(
        &mut self,
        user: &str,
        channel: &str,
        ts: &str,
        level: u8,
    ) -> anyhow::Result<Vec<String>> {
        let message =
            self.sandbox.message(channel, ts).ok_or_else(|| anyhow::anyhow!("no message {ts} in {channel}"))?;
        let select = find_control(&message.blocks, crate::slack::blocks::SEVERITY_SELECT)
            .ok_or_else(|| anyhow::anyhow!("no severity select on message {ts} in {channel}"))?;
        let action = json!({
            "type": "static_select", "action_id": crate::slack::blocks::SEVERITY_SELECT, "block_id": "actions",
            "selected_option": {"text": {"type": "plain_text", "text": format!("SEV{level}")}, "value": level.to_string()},
            "value": select["value"],
        });
        let result = self.sandbox.click(user, channel, ts, action).await;
        Self::acked(result, "the selection")?;
        self.idle().await?;
        Ok(self.new_privates().into_iter().map(|p| p.text).collect())
    }

    /// Datadog's Slack app posts a monitor notification in `channel` (legacy attachments, empty
    /// `text`, as the app does). Returns the message ts.
    pub async fn post_datadog_alert(&mut self, channel: &str, alert: &DatadogPost) -> anyhow::Result<String> {
        let (ts, result) =
            self.sandbox.post_as_bot(slack::DATADOG_BOT_ID, slack::DATADOG_APP_ID, channel, alert.content()).await;
        Self::acked(result, "the Datadog post")?;
        self.idle().await?;
        Ok(ts)
    }

    /// Datadog's app edits its post (`message_changed`).
    pub async fn edit_datadog_alert(&mut self, channel: &str, ts: &str, alert: &DatadogPost) -> anyhow::Result<()> {
        let result = self.sandbox.edit_bot_message(channel, ts, alert.content()).await;
        Self::acked(result, "the Datadog edit")?;
        self.idle().await
    }

    /// Posts an alert webhook body to `/webhooks/<source>` with the harness's token. Returns the
    /// status and the JSON answer.
    pub async fn webhook(&mut self, source: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let (status, answer) = self.webhook_with_token(source, body, Some(WEBHOOK_TOKEN)).await?;
        self.idle().await?;
        Ok((status, answer))
    }

    /// Like [`Driver::webhook`] with any token (or none), without waiting for processing.
    pub async fn webhook_with_token(
        &mut self,
        source: &str,
        body: &Value,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let client = reqwest::Client::new();
        let mut req = client.post(format!("http://{}/webhooks/{source}", self.app.addr)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.context("the bot does not answer on its webhook")?;
        let status = resp.status().as_u16();
        let answer = resp.json().await.unwrap_or(Value::Null);
        Ok((status, answer))
    }

    /// Moves the bot's manual clock on and runs its timers (needs `DriverOptions::clock`).
    pub async fn advance(&mut self, by: chrono::TimeDelta) -> anyhow::Result<()> {
        let clock = self.manual_clock.clone().ok_or_else(|| anyhow::anyhow!("advancing time needs a manual clock"))?;
        let now = clock.advance(by);
        self.sandbox.set_epoch(now.timestamp());
        tokio::time::timeout(IDLE_WITHIN, self.app.run_timers())
            .await
            .map_err(|_| anyhow::anyhow!("the timers did not finish within {} s", IDLE_WITHIN.as_secs()))?;
        self.idle().await
    }

    /// Submits the root-cause modal the bot opened most recently.
    pub async fn submit_root_cause(&mut self, user: &str, text: &str) -> anyhow::Result<()> {
        self.submit_form(user, &[(crate::slack::blocks::ROOT_CAUSE_INPUT, text)]).await
    }

    /// Submits the follow-up modal the bot opened most recently, with an owner picked or not.
    pub async fn submit_followup(&mut self, user: &str, text: &str, owner: Option<&str>) -> anyhow::Result<()> {
        let mut values = vec![(crate::slack::blocks::FOLLOWUP_INPUT, text)];
        values.extend(owner.map(|o| (crate::slack::blocks::FOLLOWUP_OWNER, o)));
        self.submit_form(user, &values).await
    }

    /// Fills in the modal the bot opened most recently (block id, value) and submits it.
    async fn submit_form(&mut self, user: &str, values: &[(&str, &str)]) -> anyhow::Result<()> {
        let (view_id, _, _) = self.sandbox.views().pop().ok_or_else(|| anyhow::anyhow!("the bot opened no form"))?;
        let result = self.sandbox.submit_view(user, &view_id, values).await;
        Self::acked(result, "the modal submission")?;
        self.idle().await
    }

    /// Private answers (ephemeral messages, response URLs) not yet returned.
    pub fn new_privates(&mut self) -> Vec<Private> {
        let all = self.sandbox.privates();
        let fresh = all[self.privates_seen..].to_vec();
        self.privates_seen = all.len();
        fresh
    }

    /// Messages the bot posted, in order.
    pub fn bot_messages(&self) -> Vec<StoredMessage> {
        self.sandbox.messages().into_iter().filter(|m| m.bot_id.as_deref() == Some(slack::BOT_ID)).collect()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The bot's manual clock, when it runs on one.
    pub fn manual_clock(&self) -> Option<Arc<ManualClock>> {
        self.manual_clock.clone()
    }
}

/// Whether a message's text or any of its block texts contains `needle`.
/// Whether a message holds `needle`, in its text or blocks as sent or as Slack shows them (with
/// `&lt;`, `&gt;` and `&amp;` decoded).
pub fn message_contains(m: &StoredMessage, needle: &str) -> bool {
    let shown = |s: &str| s.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    let blocks = m.blocks.to_string();
    m.text.contains(needle)
        || blocks.contains(needle)
        || shown(&m.text).contains(needle)
        || shown(&blocks).contains(needle)
}

fn find_control<'a>(blocks: &'a Value, action_id: &str) -> Option<&'a Value> {
    blocks
        .as_array()?
        .iter()
        .filter(|b| b["type"] == "actions")
        .find_map(|b| b["elements"].as_array()?.iter().find(|e| e["action_id"] == action_id))
}

/// A monitor notification as Datadog's Slack app posts it.
#[derive(Debug, Clone)]
pub struct DatadogPost {
    /// e.g. `[P2] [Triggered on {service:api,env:prod}] API latency high`.
    pub title: String,
    pub monitor_id: u64,
    pub body: String,
    pub tags: Vec<String>,
}

impl DatadogPost {
    pub fn new(title: &str, monitor_id: u64) -> DatadogPost {
        DatadogPost { title: title.into(), monitor_id, body: String::new(), tags: Vec::new() }
    }

    pub fn body(mut self, body: &str) -> DatadogPost {
        self.body = body.into();
        self
    }

    pub fn tags(mut self, tags: &[&str]) -> DatadogPost {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    /// The message content: empty `text`, one legacy attachment, Datadog's bot profile.
    pub fn content(&self) -> Value {
        let color = if self.title.contains("Recovered") {
            "#2eb67d"
        } else if self.title.contains("Warn") {
            "#ecb22e"
        } else {
            "#e01e5a"
        };
        let mut text = self.body.clone();
        if !self.tags.is_empty() {
            text.push_str(&format!("\nTags: {}", self.tags.join(", ")));
        }
        json!({
            "text": "",
            "username": "Datadog",
            "bot_profile": {"id": slack::DATADOG_BOT_ID, "app_id": slack::DATADOG_APP_ID, "name": "Datadog", "deleted": false, "team_id": slack::TEAM_ID},
            "attachments": [{
                "fallback": self.title,
                "title": self.title,
                "title_link": format!("https://app.datadoghq.com/monitors/{}?link_source=monitor_notif", self.monitor_id),
                "text": text,
                "color": color,
                "mrkdwn_in": ["text"],
            }],
        })
    }
}
