//! `incident-commander demo`: the real bot against the built-in sandbox Slack and Datadog, playing
//! a scenario, then printing what people would have seen in Slack.
//!
//! The bot is the real one (Socket Mode listener, egress, processor, sled store in a temporary
//! directory, Datadog client); only Slack and Datadog are the loopback sandboxes. Timers run on a
//! demo clock that `wait` steps move, so escalations and reminders appear within seconds.

mod transcript;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::clock::{Clock, ManualClock};
use crate::domain::ids::IncidentId;
use crate::domain::incident::Incident;
use crate::policy::Policy;
use crate::sandbox::datadog::{AnonymousSpec, CustomerSpec, DatadogWorld, ServiceSpec};
use crate::sandbox::driver::{DatadogPost, Driver, DriverOptions, Mode};

/// The built-in policy and scenario.
pub const DEFAULT_POLICY: &str = include_str!("policy.toml");
pub const DEFAULT_SCENARIO: &str = include_str!("scenario.toml");

/// A scenario file (see `docs/demo.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// When the demo clock starts (RFC 3339); default: now.
    pub start: Option<DateTime<Utc>>,
    /// Slack user id -> display name.
    #[serde(default)]
    pub people: BTreeMap<String, String>,
    /// Slack channel id -> name (without `#`).
    #[serde(default)]
    pub channels: BTreeMap<String, String>,
    pub datadog: Option<ScenarioDatadog>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioDatadog {
    #[serde(default = "default_facet")]
    pub facet: String,
    #[serde(default, rename = "service")]
    pub services: Vec<ScenarioService>,
    #[serde(default, rename = "customer")]
    pub customers: Vec<ScenarioCustomer>,
    /// Traffic without the customer attribute (health checks, anonymous visitors).
    #[serde(default, rename = "anonymous")]
    pub anonymous: Vec<ScenarioAnonymous>,
    /// This many more customers with a little traffic and no errors (`quiet-001`...).
    #[serde(default)]
    pub quiet_customers: usize,
    /// The quiet customers use this service only (default: every service).
    #[serde(default)]
    pub quiet_service: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioAnonymous {
    pub service: String,
    pub requests_per_minute: u64,
    pub error_rate: f64,
}

fn default_facet() -> String {
    "@usr.org_id".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioService {
    pub name: String,
    pub env: String,
    /// The service requests enter at (traces start there).
    #[serde(default)]
    pub frontend: Option<String>,
    /// The services a request goes on to, each calling the next; failures begin at the last.
    #[serde(default)]
    pub downstream: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    /// Error types and messages where failures begin.
    #[serde(default)]
    pub errors: Vec<(String, String)>,
    /// The `error.stack` of a failure where it begins.
    #[serde(default)]
    pub stack: Option<String>,
    /// Versions running, with their share of traffic.
    #[serde(default)]
    pub versions: Vec<(String, f64)>,
    /// Failures happen on this version only.
    #[serde(default)]
    pub bad_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioCustomer {
    pub name: String,
    pub requests_per_minute: u64,
    pub error_rate: f64,
    #[serde(default)]
    pub service: Option<String>,
}

/// One step: optionally move the clock (`wait`), then at most one action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Move the demo clock by this much first (e.g. "2m"); timers fire.
    pub wait: Option<String>,
    /// A narrator line printed in the log.
    pub note: Option<String>,
    pub datadog_alert: Option<DatadogAlertStep>,
    pub say: Option<SayStep>,
    pub mention: Option<SayStep>,
    pub slash: Option<SlashStep>,
    pub react: Option<ReactStep>,
    pub click: Option<ClickStep>,
    pub root_cause: Option<RootCauseStep>,
    pub webhook: Option<WebhookStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogAlertStep {
    pub channel: String,
    pub monitor: u64,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SayStep {
    pub who: String,
    pub channel: String,
    pub text: String,
    /// `INC-<n>`: post in that incident's thread.
    pub thread: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlashStep {
    pub who: String,
    pub channel: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactStep {
    pub who: String,
    pub emoji: String,
    /// `INC-<n> header` or `INC-<n> alert`.
    pub on: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickStep {
    pub who: String,
    /// `take_command`, `investigate`, `mitigated`, `root_cause_found`, `resolve`.
    pub button: String,
    pub on: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootCauseStep {
    pub who: String,
    pub on: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookStep {
    /// `datadog`, `alertmanager` or `grafana`.
    pub source: String,
    /// The body, as JSON text.
    pub body: String,
}

/// What a demo run produced.
pub struct DemoRun {
    /// The channels and threads as people saw them.
    pub transcript: String,
    /// What happened step by step (notes, private answers).
    pub log: String,
    /// Postmortem drafts of resolved incidents.
    pub postmortems: Vec<(IncidentId, String)>,
    /// Every Slack and Datadog call, one JSON object per line.
    pub calls: Vec<Value>,
    pub elapsed: Duration,
    /// The bot and the sandbox, still running (for `--keep`).
    pub driver: Driver,
}

impl Scenario {
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        toml::from_str(text).map_err(|e| anyhow!("the scenario is not valid: {}", e.message().trim()))
    }

    /// Checks every step names known people, channels, actions and incidents.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (i, step) in self.steps.iter().enumerate() {
            let n = i + 1;
            let actions = [
                step.datadog_alert.is_some(),
                step.say.is_some(),
                step.mention.is_some(),
                step.slash.is_some(),
                step.react.is_some(),
                step.click.is_some(),
                step.root_cause.is_some(),
                step.webhook.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() > 1 {
                bail!("step {n}: one action per step (split it in two)");
            }
            if let Some(w) = &step.wait {
                crate::policy::parse_duration(w).map_err(|e| anyhow!("step {n}: wait: {e}"))?;
            }
            let who = [
                step.say.as_ref().map(|s| &s.who),
                step.mention.as_ref().map(|s| &s.who),
                step.slash.as_ref().map(|s| &s.who),
                step.react.as_ref().map(|s| &s.who),
                step.click.as_ref().map(|s| &s.who),
                step.root_cause.as_ref().map(|s| &s.who),
            ];
            for name in who.into_iter().flatten() {
                self.person(name).map_err(|e| anyhow!("step {n}: {e}"))?;
            }
            let channels = [
                step.datadog_alert.as_ref().map(|s| &s.channel),
                step.say.as_ref().map(|s| &s.channel),
                step.mention.as_ref().map(|s| &s.channel),
                step.slash.as_ref().map(|s| &s.channel),
            ];
            for name in channels.into_iter().flatten() {
                self.channel(name).map_err(|e| anyhow!("step {n}: {e}"))?;
            }
            if let Some(w) = &step.webhook {
                if !["datadog", "alertmanager", "grafana"].contains(&w.source.as_str()) {
                    bail!("step {n}: webhook source `{}` is not datadog, alertmanager or grafana", w.source);
                }
                serde_json::from_str::<Value>(&w.body)
                    .map_err(|e| anyhow!("step {n}: webhook body is not JSON: {e}"))?;
            }
        }
        Ok(())
    }

    fn person(&self, name: &str) -> anyhow::Result<String> {
        let name = name.trim_start_matches('@');
        self.people
            .iter()
            .find(|(id, n)| n.as_str() == name || id.as_str() == name)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| anyhow!("nobody is called `{name}` in [people]"))
    }

    fn channel(&self, name: &str) -> anyhow::Result<String> {
        let name = name.trim_start_matches('#');
        self.channels
            .iter()
            .find(|(id, n)| n.as_str() == name || id.as_str() == name)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| anyhow!("no channel is called `{name}` in [channels]"))
    }

    fn world(&self) -> Option<DatadogWorld> {
        let dd = self.datadog.as_ref()?;
        Some(
            DatadogWorld {
                facet: dd.facet.clone(),
                services: dd
                    .services
                    .iter()
                    .map(|s| ServiceSpec {
                        name: s.name.clone(),
                        env: s.env.clone(),
                        resources: s.resources.clone(),
                        frontend: s.frontend.clone(),
                        downstream: s.downstream.clone(),
                        errors: s.errors.clone(),
                        stack: s.stack.clone(),
                        versions: s.versions.clone(),
                        bad_version: s.bad_version.clone(),
                        fan_out: 0,
                    })
                    .collect(),
                anonymous: dd
                    .anonymous
                    .iter()
                    .map(|a| AnonymousSpec {
                        service: a.service.clone(),
                        requests_per_minute: a.requests_per_minute,
                        error_rate: a.error_rate,
                    })
                    .collect(),
                customers: dd
                    .customers
                    .iter()
                    .map(|c| CustomerSpec {
                        name: c.name.clone(),
                        requests_per_minute: c.requests_per_minute,
                        error_rate: c.error_rate,
                        service: c.service.clone(),
                    })
                    .collect(),
            }
            .with_quiet_customers(dd.quiet_customers, 2, dd.quiet_service.as_deref()),
        )
    }
}

fn incident_ref(text: &str) -> anyhow::Result<IncidentId> {
    IncidentId::find_in(text).ok_or_else(|| anyhow!("`{text}` names no incident (write INC-<n>)"))
}

fn incident(h: &Driver, id: IncidentId) -> anyhow::Result<Incident> {
    h.app.store.get_incident(id)?.ok_or_else(|| anyhow!("{id} does not exist at this point of the scenario"))
}

/// Plays `scenario` against `policy` and returns what happened.
pub async fn run(scenario: &Scenario, policy_text: &str) -> anyhow::Result<DemoRun> {
    let started = Instant::now();
    Policy::parse(policy_text).map_err(|e| anyhow!("the policy is not valid:\n{e}"))?;
    scenario.validate()?;
    let clock = Arc::new(ManualClock::new(scenario.start.unwrap_or_else(Utc::now)));
    let mut options = DriverOptions::new(Mode::Socket, policy_text);
    options.clock = Some(clock.clone());
    options.datadog = scenario.world();
    options.names =
        scenario.people.iter().chain(scenario.channels.iter()).map(|(a, b)| (a.clone(), b.clone())).collect();
    let mut h = Driver::start(options).await?;
    let names: BTreeMap<String, String> = h
        .sandbox
        .users()
        .into_iter()
        .map(|u| (u.id, u.name))
        .chain(h.sandbox.channels().into_iter().map(|c| (c.id, c.name)))
        .collect();
    let mut log = String::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        let n = i + 1;
        if let Some(wait) = &step.wait {
            let d = crate::policy::parse_duration(wait).map_err(|e| anyhow!("step {n}: {e}"))?;
            h.advance(d).await.with_context(|| format!("step {n}: waiting {wait}"))?;
        }
        let at = clock.now().format("%H:%M");
        if let Some(note) = &step.note {
            log.push_str(&format!("[{at}] {note}\n"));
        }
        let answered = play(&mut h, scenario, step).await.with_context(|| format!("step {n}"))?;
        for (who, text) in answered {
            let to = names.get(&who).map(|s| s.as_str()).unwrap_or("the person who asked");
            log.push_str(&format!("        (only {to} sees) {}\n", transcript::humanize(&text, &names)));
        }
        for p in h.new_privates() {
            let to = p.user.as_deref().and_then(|u| names.get(u)).map(|s| s.as_str()).unwrap_or("the person who asked");
            log.push_str(&format!("        (only {to} sees) {}\n", transcript::humanize(&p.text, &names)));
        }
    }
    h.idle().await?;
    // Channels the bot created during the run get their names too.
    let names: BTreeMap<String, String> =
        names.into_iter().chain(h.sandbox.channels().into_iter().map(|c| (c.id, c.name))).collect();
    let transcript = transcript::render(&h, &names);
    let mut postmortems = Vec::new();
    for i in h.app.store.all_incidents()? {
        if i.postmortem_posted {
            postmortems.push((i.id, crate::domain::postmortem::postmortem_markdown(&i)));
        }
    }
    let mut calls: Vec<Value> = h
        .sandbox
        .calls()
        .into_iter()
        .map(|c| json!({"service": "slack", "at": c.at, "method": c.method, "params": c.params, "status": c.status, "response": c.response}))
        .collect();
    if let Some(dd) = &h.datadog {
        calls.extend(dd.calls().into_iter().map(|c| {
            json!({"service": "datadog", "at": c.at, "method": c.method, "path": c.path, "body": c.body, "query": c.query, "status": c.status})
        }));
    }
    calls.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
    // The sandbox trackers keep requests in order, without times.
    calls.extend(h.trackers.requests().into_iter().map(|r| json!({"service": "tracker", "request": r})));
    Ok(DemoRun { transcript, log, postmortems, calls, elapsed: started.elapsed(), driver: h })
}

/// Plays one step; returns the private answers it produced, with who got them.
async fn play(h: &mut Driver, s: &Scenario, step: &Step) -> anyhow::Result<Vec<(String, String)>> {
    let mut answers = Vec::new();
    if let Some(a) = &step.datadog_alert {
        let channel = s.channel(&a.channel)?;
        let tags: Vec<&str> = a.tags.iter().map(String::as_str).collect();
        h.post_datadog_alert(&channel, &DatadogPost::new(&a.title, a.monitor).body(&a.body).tags(&tags)).await?;
    }
    if let Some(x) = &step.say {
        let thread = thread_of(h, x.thread.as_deref())?;
        h.say(&s.person(&x.who)?, &s.channel(&x.channel)?, thread.as_deref(), &x.text).await?;
    }
    if let Some(x) = &step.mention {
        let thread = thread_of(h, x.thread.as_deref())?;
        h.mention(&s.person(&x.who)?, &s.channel(&x.channel)?, thread.as_deref(), &x.text).await?;
    }
    if let Some(x) = &step.slash {
        let who = s.person(&x.who)?;
        for text in h.slash(&who, &s.channel(&x.channel)?, &x.text).await? {
            answers.push((who.clone(), text));
        }
    }
    if let Some(x) = &step.react {
        let id = incident_ref(&x.on)?;
        let i = incident(h, id)?;
        let channel = i.slack.channel.clone().ok_or_else(|| anyhow!("{id} has no channel yet"))?;
        let ts = if x.on.contains("alert") {
            i.slack.thread_ts.clone().ok_or_else(|| anyhow!("{id} has no alert message"))?
        } else {
            i.slack.header_ts.clone().ok_or_else(|| anyhow!("{id} has no header yet"))?
        };
        h.react(&s.person(&x.who)?, channel.as_str(), &ts, &x.emoji).await?;
    }
    if let Some(x) = &step.click {
        let i = incident(h, incident_ref(&x.on)?)?;
        let (channel, ts) = header_of(&i)?;
        let who = s.person(&x.who)?;
        for text in h.click(&who, &channel, &ts, &x.button).await? {
            answers.push((who.clone(), text));
        }
    }
    if let Some(x) = &step.root_cause {
        let i = incident(h, incident_ref(&x.on)?)?;
        let (channel, ts) = header_of(&i)?;
        let who = s.person(&x.who)?;
        h.click(&who, &channel, &ts, "root_cause_found").await?;
        h.submit_root_cause(&who, &x.text).await?;
    }
    if let Some(x) = &step.webhook {
        let body: Value = serde_json::from_str(&x.body)?;
        let (status, answer) = h.webhook(&x.source, &body).await?;
        if status != 200 {
            bail!("the bot refused the {} webhook ({status}): {answer}", x.source);
        }
    }
    Ok(answers)
}

fn header_of(i: &Incident) -> anyhow::Result<(String, String)> {
    match (&i.slack.channel, &i.slack.header_ts) {
        (Some(c), Some(ts)) => Ok((c.to_string(), ts.clone())),
        _ => bail!("{} has no header yet", i.id),
    }
}

fn thread_of(h: &Driver, incident: Option<&str>) -> anyhow::Result<Option<String>> {
    match incident {
        None => Ok(None),
        Some(r) => {
            let i = self::incident(h, incident_ref(r)?)?;
            Ok(Some(i.slack.thread_ts.ok_or_else(|| anyhow!("{} has no thread yet", i.id))?))
        }
    }
}

/// Writes the transcript, the log, the postmortems and the call record into `dir`.
pub fn write_outputs(run: &DemoRun, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let mut write = |name: String, text: &str| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    write("transcript.txt".into(), &format!("{}\n{}", run.log, run.transcript))?;
    for (id, md) in &run.postmortems {
        write(format!("postmortem-{id}.md"), md)?;
    }
    let lines: Vec<String> = run.calls.iter().map(|c| c.to_string()).collect();
    write("calls.jsonl".into(), &(lines.join("\n") + "\n"))?;
    Ok(written)
}
