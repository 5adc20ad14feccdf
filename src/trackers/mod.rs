//! Trackers that turn follow-ups into tickets: GitHub Issues ([`github`]) and Jira Cloud
//! ([`jira`]), both implementing [`crate::app::tickets::Tracker`] over reqwest.
//!
//! Settings come from the environment (`GITHUB_TOKEN`, `GITHUB_API_URL`, `JIRA_BASE_URL`,
//! `JIRA_EMAIL`, `JIRA_API_TOKEN`) and the policy's `[followups]` (which tracker, where).

pub mod github;
pub mod jira;

use std::time::Duration;

use secrecy::SecretString;

use crate::domain::policy::TrackerTarget;

/// How long one tracker request may take; a slower answer counts as a failure and is retried
/// (the retry first looks for the ticket the slow request may have made).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The tracker the settings describe.
pub enum AnyTracker {
    GitHub(github::GitHub),
    Jira(jira::Jira),
    /// The policy names a tracker whose settings are missing or wrong: every request fails with
    /// the problems, so the thread says what to fix while the follow-ups wait.
    Misconfigured(Vec<String>),
}

/// The environment a tracker reads, as the process got it (`None` for unset).
#[derive(Debug, Clone, Default)]
pub struct TrackerEnv {
    pub github_token: Option<String>,
    pub github_api_url: Option<String>,
    pub jira_base_url: Option<String>,
    pub jira_email: Option<String>,
    pub jira_api_token: Option<String>,
}

impl TrackerEnv {
    pub fn from_process() -> TrackerEnv {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        TrackerEnv {
            github_token: var("GITHUB_TOKEN"),
            github_api_url: var("GITHUB_API_URL"),
            jira_base_url: var("JIRA_BASE_URL"),
            jira_email: var("JIRA_EMAIL"),
            jira_api_token: var("JIRA_API_TOKEN"),
        }
    }
}

/// A `KEY: problem` line for every setting the target needs and lacks or has wrong.
pub fn problems(target: &TrackerTarget, env: &TrackerEnv) -> Vec<String> {
    let mut out = Vec::new();
    let url = |key: &str, value: Option<&String>, out: &mut Vec<String>| {
        if let Some(v) = value
            && let Err(e) = base_url(v)
        {
            out.push(format!("{key}: {e}"));
        }
    };
    match target {
        TrackerTarget::GitHub { .. } => {
            if env.github_token.is_none() {
                out.push("GITHUB_TOKEN: not set; tracker = \"github\" needs a token that may create issues".into());
            }
            url("GITHUB_API_URL", env.github_api_url.as_ref(), &mut out);
        }
        TrackerTarget::Jira { .. } => {
            match &env.jira_base_url {
                None => out.push("JIRA_BASE_URL: not set; e.g. https://acme.atlassian.net".into()),
                Some(v) => url("JIRA_BASE_URL", Some(v), &mut out),
            }
            if env.jira_email.is_none() {
                out.push("JIRA_EMAIL: not set; the Atlassian account the API token belongs to".into());
            }
            if env.jira_api_token.is_none() {
                out.push("JIRA_API_TOKEN: not set; create one at id.atlassian.com (API tokens)".into());
            }
        }
    }
    out
}

/// `http(s)://host[:port][/path]` without a trailing slash.
fn base_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{text}` is not an http(s) address"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

impl AnyTracker {
    /// The tracker for `target`, or every problem with its settings.
    pub fn from_settings(target: &TrackerTarget, env: &TrackerEnv) -> Result<AnyTracker, Vec<String>> {
        let problems = problems(target, env);
        if !problems.is_empty() {
            return Err(problems);
        }
        let secret = |v: &Option<String>| SecretString::from(v.clone().unwrap_or_default());
        let http = client().map_err(|e| vec![e])?;
        Ok(match target {
            TrackerTarget::GitHub { repo } => {
                let api =
                    base_url(env.github_api_url.as_deref().unwrap_or(github::DEFAULT_API_URL)).map_err(|e| vec![e])?;
                AnyTracker::GitHub(github::GitHub::new(http, api, repo.clone(), secret(&env.github_token)))
            }
            TrackerTarget::Jira { project, issue_type } => {
                let base = base_url(env.jira_base_url.as_deref().unwrap_or_default()).map_err(|e| vec![e])?;
                AnyTracker::Jira(jira::Jira::new(
                    http,
                    base,
                    project.clone(),
                    issue_type.clone(),
                    env.jira_email.clone().unwrap_or_default(),
                    secret(&env.jira_api_token),
                ))
            }
        })
    }
}

fn client() -> Result<reqwest::Client, String> {
    // reqwest is built without a default TLS provider; make sure ring is installed.
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("incident-commander/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// What a failed request says, for the incident thread: the tracker, the status and the
/// tracker's own words, trimmed.
fn refusal(tracker: &str, status: reqwest::StatusCode, detail: &str, hint: &str) -> String {
    let detail: String = detail.trim().chars().take(300).collect();
    let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
    let hint = if hint.is_empty() { String::new() } else { format!(" ({hint})") };
    format!("{tracker} answered {}{detail}{hint}", status.as_u16())
}

/// Sends `request`: the JSON answer when the status is `expect` (any success when `None`);
/// otherwise the response, for the tracker to say why it refused.
async fn exchange(
    request: reqwest::RequestBuilder,
    tracker: &str,
    expect: Option<reqwest::StatusCode>,
) -> Result<Result<serde_json::Value, reqwest::Response>, String> {
    let response = request.send().await.map_err(|e| unreachable(tracker, &e))?;
    let wanted = match expect {
        Some(status) => response.status() == status,
        None => response.status().is_success(),
    };
    if !wanted {
        return Ok(Err(response));
    }
    response.json().await.map(Ok).map_err(|e| format!("{tracker} sent an unreadable answer: {e}"))
}

fn unreachable(tracker: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("{tracker} did not answer within {} s", REQUEST_TIMEOUT.as_secs())
    } else {
        format!("cannot reach {tracker}: {e}")
    }
}

impl crate::app::tickets::Tracker for AnyTracker {
    fn name(&self) -> &'static str {
        match self {
            AnyTracker::GitHub(t) => t.name(),
            AnyTracker::Jira(t) => t.name(),
            AnyTracker::Misconfigured(_) => "tracker",
        }
    }

    async fn find(
        &self,
        job: &crate::app::tickets::TicketJob,
    ) -> Result<Option<crate::domain::followup::FiledTicket>, String> {
        match self {
            AnyTracker::GitHub(t) => t.find(job).await,
            AnyTracker::Jira(t) => t.find(job).await,
            AnyTracker::Misconfigured(problems) => Err(misconfigured(problems)),
        }
    }

    async fn create(
        &self,
        job: &crate::app::tickets::TicketJob,
    ) -> Result<crate::domain::followup::FiledTicket, String> {
        match self {
            AnyTracker::GitHub(t) => t.create(job).await,
            AnyTracker::Jira(t) => t.create(job).await,
            AnyTracker::Misconfigured(problems) => Err(misconfigured(problems)),
        }
    }
}

fn misconfigured(problems: &[String]) -> String {
    format!("the tracker settings are incomplete ({})", problems.join("; "))
}
