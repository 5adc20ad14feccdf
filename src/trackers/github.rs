//! GitHub Issues: `POST /repos/{owner}/{repo}/issues` makes the ticket; a retry lists the
//! repository's newest issues (`GET /repos/{owner}/{repo}/issues?state=all&sort=created`) and
//! looks for the follow-up's marker in their bodies. The list is read from the database, not a
//! search index, so a ticket made a moment ago is found.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{exchange, refusal};
use crate::app::tickets::{TicketJob, Tracker};
use crate::domain::followup::FiledTicket;

pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The REST API version the requests are written against.
const API_VERSION: &str = "2022-11-28";
/// How many of the newest issues a retry looks through for its marker.
const LOOK_BACK: usize = 100;

pub struct GitHub {
    http: reqwest::Client,
    api: String,
    repo: String,
    token: SecretString,
}

impl GitHub {
    pub fn new(http: reqwest::Client, api: String, repo: String, token: SecretString) -> GitHub {
        GitHub { http, api, repo, token }
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::RequestBuilder, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/repos/{}/{path}", self.api, self.repo), query)
            .map_err(|e| format!("GITHUB_API_URL does not make a request address: {e}"))?;
        Ok(self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose_secret())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION))
    }

    /// The ticket's Markdown: the paragraphs, the thread, and the marker as an HTML comment
    /// (not shown on the page, kept in the body the API returns).
    pub fn body(job: &TicketJob) -> String {
        let mut md = job.paragraphs.join("\n\n");
        if let Some(url) = &job.thread_url {
            md.push_str(&format!("\n\nSlack thread: {url}"));
        }
        md.push_str(&format!("\n\n<!-- {} -->", job.marker));
        md
    }

    fn ticket(&self, issue: &Value) -> Option<FiledTicket> {
        let number = issue["number"].as_u64()?;
        let url = issue["html_url"].as_str()?.to_string();
        Some(FiledTicket { key: format!("{}#{number}", self.repo), url })
    }

    async fn refused(&self, response: reqwest::Response) -> String {
        let status = response.status();
        let rate_limited = response.headers().get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()) == Some("0");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // GitHub's errors: {"message": "...", "errors": [{"resource", "field", "code", "message"}]}.
        let mut detail = body["message"].as_str().unwrap_or_default().to_string();
        for e in body["errors"].as_array().into_iter().flatten() {
            let what = e["message"].as_str().map(str::to_string).unwrap_or_else(|| {
                format!("{} {}", e["field"].as_str().unwrap_or_default(), e["code"].as_str().unwrap_or_default())
            });
            detail.push_str(&format!("; {}", what.trim()));
        }
        let hint = match status.as_u16() {
            401 => "check GITHUB_TOKEN".to_string(),
            403 if rate_limited => "rate limited; kept for later".to_string(),
            403 => "the token may not create issues here".to_string(),
            404 => format!("no repository {} that the token can see; check followups.github_repo", self.repo),
            410 => format!("issues are turned off in {}", self.repo),
            _ => String::new(),
        };
        refusal("GitHub", status, &detail, &hint)
    }
}

impl Tracker for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    async fn find(&self, job: &TicketJob) -> Result<Option<FiledTicket>, String> {
        let per_page = LOOK_BACK.to_string();
        let query = [("state", "all"), ("sort", "created"), ("direction", "desc"), ("per_page", per_page.as_str())];
        let issues = match exchange(self.request(reqwest::Method::GET, "issues", &query)?, "GitHub", None).await? {
            Ok(issues) => issues,
            Err(refused) => return Err(self.refused(refused).await),
        };
        Ok(issues
            .as_array()
            .into_iter()
            .flatten()
            // The issues list includes pull requests; they carry a `pull_request` key.
            .filter(|i| i.get("pull_request").is_none())
            .find(|i| i["body"].as_str().is_some_and(|b| b.contains(&job.marker)))
            .and_then(|i| self.ticket(i)))
    }

    async fn create(&self, job: &TicketJob) -> Result<FiledTicket, String> {
        let mut payload = json!({"title": job.title, "body": Self::body(job)});
        if !job.labels.is_empty() {
            payload["labels"] = json!(job.labels);
        }
        let request = self.request(reqwest::Method::POST, "issues", &[])?.json(&payload);
        let issue = match exchange(request, "GitHub", Some(reqwest::StatusCode::CREATED)).await? {
            Ok(issue) => issue,
            Err(refused) => return Err(self.refused(refused).await),
        };
        self.ticket(&issue).ok_or_else(|| "GitHub's answer has no issue number or html_url".to_string())
    }
}
