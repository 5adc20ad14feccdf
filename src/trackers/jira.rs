//! Jira Cloud: `POST /rest/api/3/issue` makes the ticket, its description in the Atlassian
//! Document Format; a retry searches the project's tickets carrying the `incident-commander`
//! label (`GET /rest/api/3/search/jql`) for the follow-up's marker in their descriptions.
//!
//! Atlassian documents that this search may lag a little behind recent changes (its index is
//! eventually consistent). The first retry comes a minute after the failed attempt
//! ([`crate::domain::followup::retry_after`]), well past the usual lag of seconds, but a ticket
//! made moments before a crash and looked for sooner could be missed.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{exchange, refusal};
use crate::app::tickets::{TicketJob, Tracker};
use crate::domain::followup::FiledTicket;

/// Every ticket gets this label, so a retry can find the bot's tickets.
pub const LABEL: &str = "incident-commander";
/// How many of the newest labelled tickets a retry looks through for its marker.
const LOOK_BACK: usize = 50;

pub struct Jira {
    http: reqwest::Client,
    base: String,
    project: String,
    issue_type: String,
    email: String,
    token: SecretString,
}

impl Jira {
    pub fn new(
        http: reqwest::Client,
        base: String,
        project: String,
        issue_type: String,
        email: String,
        token: SecretString,
    ) -> Jira {
        Jira { http, base, project, issue_type, email, token }
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::RequestBuilder, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/rest/api/3/{path}", self.base), query)
            .map_err(|e| format!("JIRA_BASE_URL does not make a request address: {e}"))?;
        Ok(self
            .http
            .request(method, url)
            .basic_auth(&self.email, Some(self.token.expose_secret()))
            .header("accept", "application/json"))
    }

    /// The description as an ADF document: a paragraph each, the thread as a link, the marker.
    pub fn description(job: &TicketJob) -> Value {
        let text = |t: &str| json!({"type": "text", "text": t});
        let mut content: Vec<Value> =
            job.paragraphs.iter().map(|p| json!({"type": "paragraph", "content": [text(p)]})).collect();
        if let Some(url) = &job.thread_url {
            content.push(json!({"type": "paragraph", "content": [
                text("Slack thread: "),
                {"type": "text", "text": url, "marks": [{"type": "link", "attrs": {"href": url}}]},
            ]}));
        }
        content.push(json!({"type": "paragraph", "content": [text(&job.marker)]}));
        json!({"type": "doc", "version": 1, "content": content})
    }

    fn ticket(&self, key: &str) -> FiledTicket {
        FiledTicket { key: key.to_string(), url: format!("{}/browse/{key}", self.base) }
    }

    async fn refused(&self, response: reqwest::Response) -> String {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // Jira's errors: {"errorMessages": [...], "errors": {"field": "message"}}.
        let mut parts: Vec<String> = body["errorMessages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        if let Some(fields) = body["errors"].as_object() {
            parts.extend(fields.iter().map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default())));
        }
        let hint = match status.as_u16() {
            401 => "check JIRA_EMAIL and JIRA_API_TOKEN",
            403 => "the account may not create issues in this project",
            404 => "check JIRA_BASE_URL and followups.jira_project",
            _ => "",
        };
        refusal("Jira", status, &parts.join("; "), hint)
    }
}

/// Every text node of an ADF document, joined.
fn adf_text(node: &Value) -> String {
    let mut out = node["text"].as_str().unwrap_or_default().to_string();
    for child in node["content"].as_array().into_iter().flatten() {
        out.push(' ');
        out.push_str(&adf_text(child));
    }
    out
}

impl Tracker for Jira {
    fn name(&self) -> &'static str {
        "jira"
    }

    async fn find(&self, job: &TicketJob) -> Result<Option<FiledTicket>, String> {
        let jql = format!("project = \"{}\" AND labels = \"{LABEL}\" ORDER BY created DESC", self.project);
        let max = LOOK_BACK.to_string();
        let query = [("jql", jql.as_str()), ("fields", "summary,description"), ("maxResults", max.as_str())];
        let found = match exchange(self.request(reqwest::Method::GET, "search/jql", &query)?, "Jira", None).await? {
            Ok(found) => found,
            Err(refused) => return Err(self.refused(refused).await),
        };
        Ok(found["issues"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| adf_text(&i["fields"]["description"]).contains(&job.marker))
            .and_then(|i| i["key"].as_str())
            .map(|key| self.ticket(key)))
    }

    async fn create(&self, job: &TicketJob) -> Result<FiledTicket, String> {
        let mut labels = vec![LABEL.to_string()];
        labels.extend(job.labels.iter().filter(|l| l.as_str() != LABEL).cloned());
        let payload = json!({"fields": {
            "project": {"key": self.project},
            "issuetype": {"name": self.issue_type},
            "summary": job.title,
            "description": Self::description(job),
            "labels": labels,
        }});
        let request = self.request(reqwest::Method::POST, "issue", &[])?.json(&payload);
        let created = match exchange(request, "Jira", Some(reqwest::StatusCode::CREATED)).await? {
            Ok(created) => created,
            Err(refused) => return Err(self.refused(refused).await),
        };
        created["key"].as_str().map(|k| self.ticket(k)).ok_or_else(|| "Jira's answer has no issue key".to_string())
    }
}
