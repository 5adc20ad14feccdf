//! A GitHub and a Jira on loopback, speaking their REST wire formats, for tests and the demo.
//!
//! Shapes follow the public API references: GitHub's "Create an issue" (201 with `number` and
//! `html_url`; errors `{"message", "errors": [{"resource", "code", "field"}],
//! "documentation_url"}`; 401 "Bad credentials"; 404 "Not Found" for a repository the token
//! cannot see; the issues list newest first, pull requests included with a `pull_request` key)
//! and Jira Cloud's "Create issue" (201 `{"id", "key", "self"}`; 400 `{"errorMessages": [],
//! "errors": {"field": "message"}}`; the description must be an Atlassian Document) and
//! "Search for issues using JQL (enhanced search)" (`GET /rest/api/3/search/jql`, answering
//! `{"issues": [...], "isLast"}`).
//!
//! Faults a test can ask for: the next requests answer 503, or a create makes the issue and then
//! answers 504 as if the answer were lost on the way (the retry must find it, not make another).

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

use crate::trackers::TrackerEnv;

pub const GITHUB_TOKEN: &str = "ghp_sandbox0000000000000000000000000000";
pub const JIRA_EMAIL: &str = "bot@sandbox.example";
pub const JIRA_API_TOKEN: &str = "ATATT3xSandbox";
/// The repository and project the sandbox holds.
pub const GITHUB_REPO: &str = "acme/ops";
pub const JIRA_PROJECT: &str = "OPS";

/// An issue the sandbox holds, in either tracker.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerIssue {
    pub tracker: &'static str,
    /// `acme/ops#3`, `OPS-3`.
    pub key: String,
    pub title: String,
    /// GitHub's Markdown body, or Jira's ADF description.
    pub body: Value,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 503 without doing anything.
    Unavailable,
    /// Make the issue, then answer 504 (the answer is lost).
    LoseAnswer,
}

#[derive(Default)]
struct World {
    github: Vec<Value>,
    jira: Vec<Value>,
    issues: Vec<TrackerIssue>,
    faults: Vec<Fault>,
    /// Every request, as `METHOD path`.
    requests: Vec<String>,
}

#[derive(Clone)]
pub struct TrackerSandbox {
    pub addr: std::net::SocketAddr,
    world: Arc<Mutex<World>>,
}

type Shared = Arc<Mutex<World>>;

fn lock(world: &Shared) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|p| p.into_inner())
}

impl TrackerSandbox {
    pub async fn start() -> std::io::Result<TrackerSandbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let world: Shared = Arc::default();
        let router = Router::new()
            .route("/repos/{owner}/{repo}/issues", post(github_create).get(github_list))
            .route("/rest/api/3/issue", post(jira_create))
            .route("/rest/api/3/search/jql", axum::routing::get(jira_search))
            .with_state(world.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(TrackerSandbox { addr, world })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The settings that point the bot at this sandbox (both trackers).
    pub fn env(&self) -> TrackerEnv {
        TrackerEnv {
            github_token: Some(GITHUB_TOKEN.into()),
            github_api_url: Some(self.base_url()),
            jira_base_url: Some(self.base_url()),
            jira_email: Some(JIRA_EMAIL.into()),
            jira_api_token: Some(JIRA_API_TOKEN.into()),
        }
    }

    /// Queues faults for the next requests (one each, in order).
    pub fn inject(&self, faults: &[Fault]) {
        lock(&self.world).faults.extend_from_slice(faults);
    }

    pub fn issues(&self) -> Vec<TrackerIssue> {
        lock(&self.world).issues.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        lock(&self.world).requests.clone()
    }
}

fn next_fault(world: &mut World, request: String) -> Option<Fault> {
    world.requests.push(request);
    (!world.faults.is_empty()).then(|| world.faults.remove(0))
}

fn github_error(status: StatusCode, message: &str, errors: Value) -> Response {
    let mut body = json!({"message": message, "documentation_url": "https://docs.github.com/rest/issues/issues#create-an-issue", "status": status.as_u16().to_string()});
    if !errors.is_null() {
        body["errors"] = errors;
    }
    (status, axum::Json(body)).into_response()
}

fn github_refusal(headers: &HeaderMap, owner: &str, repo: &str) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if auth != format!("Bearer {GITHUB_TOKEN}") && auth != format!("token {GITHUB_TOKEN}") {
        return Some(github_error(StatusCode::UNAUTHORIZED, "Bad credentials", Value::Null));
    }
    if headers.get("user-agent").is_none() {
        // GitHub refuses requests without a User-Agent.
        return Some(github_error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            Value::Null,
        ));
    }
    (format!("{owner}/{repo}") != GITHUB_REPO).then(|| github_error(StatusCode::NOT_FOUND, "Not Found", Value::Null))
}

async fn github_create(
    State(world): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut w = lock(&world);
    let fault = next_fault(&mut w, format!("POST /repos/{owner}/{repo}/issues"));
    if fault == Some(Fault::Unavailable) {
        return github_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", Value::Null);
    }
    if let Some(r) = github_refusal(&headers, &owner, &repo) {
        return r;
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON", Value::Null);
    };
    let Some(title) = input["title"].as_str().filter(|t| !t.is_empty()) else {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed",
            json!([{"resource": "Issue", "code": "missing_field", "field": "title"}]),
        );
    };
    let number = w.github.len() as u64 + 1;
    let labels: Vec<String> =
        input["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(str::to_string)).collect();
    let issue = json!({
        "id": 2_000_000_000u64 + number,
        "node_id": format!("I_kwDOSandbox{number}"),
        "url": format!("https://api.github.com/repos/{GITHUB_REPO}/issues/{number}"),
        "repository_url": format!("https://api.github.com/repos/{GITHUB_REPO}"),
        "html_url": format!("https://github.com/{GITHUB_REPO}/issues/{number}"),
        "number": number,
        "state": "open",
        "title": title,
        "body": input["body"],
        "user": {"login": "incident-commander[bot]", "type": "Bot"},
        "labels": labels.iter().enumerate().map(|(i, l)| json!({"id": 100 + i, "name": l, "color": "ededed", "default": false})).collect::<Vec<_>>(),
        "assignees": [],
        "comments": 0,
        "created_at": "2026-11-04T10:00:00Z",
        "updated_at": "2026-11-04T10:00:00Z",
        "closed_at": null,
        "author_association": "NONE",
    });
    w.github.push(issue.clone());
    w.issues.push(TrackerIssue {
        tracker: "github",
        key: format!("{GITHUB_REPO}#{number}"),
        title: title.to_string(),
        body: input["body"].clone(),
        labels,
    });
    if fault == Some(Fault::LoseAnswer) {
        return github_error(StatusCode::GATEWAY_TIMEOUT, "We couldn't respond to your request in time.", Value::Null);
    }
    (StatusCode::CREATED, axum::Json(issue)).into_response()
}

async fn github_list(
    State(world): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let mut w = lock(&world);
    if next_fault(&mut w, format!("GET /repos/{owner}/{repo}/issues")) == Some(Fault::Unavailable) {
        return github_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", Value::Null);
    }
    if let Some(r) = github_refusal(&headers, &owner, &repo) {
        return r;
    }
    let per_page = query.iter().find(|(k, _)| k == "per_page").and_then(|(_, v)| v.parse().ok()).unwrap_or(30usize);
    // Newest first, as `sort=created&direction=desc` asks.
    let newest: Vec<Value> = w.github.iter().rev().take(per_page.min(100)).cloned().collect();
    axum::Json(newest).into_response()
}

fn jira_error(status: StatusCode, messages: &[&str], errors: Value) -> Response {
    (status, axum::Json(json!({"errorMessages": messages, "errors": errors}))).into_response()
}

fn jira_authorized(headers: &HeaderMap) -> bool {
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{JIRA_EMAIL}:{JIRA_API_TOKEN}"));
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Basic {want}"))
}

async fn jira_create(State(world): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut w = lock(&world);
    let fault = next_fault(&mut w, "POST /rest/api/3/issue".into());
    if fault == Some(Fault::Unavailable) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    if !jira_authorized(&headers) {
        // Jira Cloud answers a bad API token with 401 and a plain-text body.
        return (StatusCode::UNAUTHORIZED, "Client must be authenticated to access this resource.").into_response();
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return jira_error(StatusCode::BAD_REQUEST, &["Unexpected character in the request body"], json!({}));
    };
    let fields = &input["fields"];
    if fields["project"]["key"].as_str() != Some(JIRA_PROJECT) {
        return jira_error(StatusCode::BAD_REQUEST, &[], json!({"project": "valid project is required"}));
    }
    if !matches!(fields["issuetype"]["name"].as_str(), Some("Task" | "Bug" | "Story")) {
        return jira_error(StatusCode::BAD_REQUEST, &[], json!({"issuetype": "Specify a valid issue type"}));
    }
    let Some(summary) = fields["summary"].as_str().filter(|s| !s.is_empty()) else {
        return jira_error(
            StatusCode::BAD_REQUEST,
            &[],
            json!({"summary": "You must specify a summary of the issue."}),
        );
    };
    let description = &fields["description"];
    if !description.is_null() && (description["type"] != "doc" || description["version"] != 1) {
        return jira_error(
            StatusCode::BAD_REQUEST,
            &[],
            json!({"description": "Operation value must be an Atlassian Document (see the Atlassian Document Format)"}),
        );
    }
    let labels: Vec<String> =
        fields["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(str::to_string)).collect();
    if labels.iter().any(|l| l.contains(' ')) {
        return jira_error(StatusCode::BAD_REQUEST, &[], json!({"labels": "The label can't contain spaces."}));
    }
    let n = w.jira.len() as u64 + 1;
    let (id, key) = ((10_000 + n).to_string(), format!("{JIRA_PROJECT}-{n}"));
    w.jira.push(json!({
        "id": id, "key": key, "self": format!("https://sandbox.atlassian.net/rest/api/3/issue/{id}"),
        "fields": {"summary": summary, "description": description, "labels": labels, "project": {"key": JIRA_PROJECT}},
    }));
    w.issues.push(TrackerIssue {
        tracker: "jira",
        key: key.clone(),
        title: summary.to_string(),
        body: description.clone(),
        labels,
    });
    if fault == Some(Fault::LoseAnswer) {
        return (StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout").into_response();
    }
    let created = json!({"id": id, "key": key, "self": format!("https://sandbox.atlassian.net/rest/api/3/issue/{id}")});
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

/// Understands the JQL the bot sends: `project = "X" AND labels = "Y" ORDER BY created DESC`.
async fn jira_search(
    State(world): State<Shared>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let mut w = lock(&world);
    if next_fault(&mut w, "GET /rest/api/3/search/jql".into()) == Some(Fault::Unavailable) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    if !jira_authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "Client must be authenticated to access this resource.").into_response();
    }
    let jql = query.iter().find(|(k, _)| k == "jql").map(|(_, v)| v.clone()).unwrap_or_default();
    let clause = |name: &str| {
        let rest = jql.split(&format!("{name} = \"")).nth(1)?;
        rest.split('"').next().map(str::to_string)
    };
    let (project, label) = (clause("project"), clause("labels"));
    let max = query.iter().find(|(k, _)| k == "maxResults").and_then(|(_, v)| v.parse().ok()).unwrap_or(50usize);
    let issues: Vec<Value> = w
        .jira
        .iter()
        .rev()
        .filter(|i| project.as_deref().is_none_or(|p| i["fields"]["project"]["key"] == p))
        .filter(|i| {
            label.as_deref().is_none_or(|l| i["fields"]["labels"].as_array().is_some_and(|ls| ls.iter().any(|x| x == l)))
        })
        .take(max)
        .map(|i| json!({"id": i["id"], "key": i["key"], "self": i["self"], "fields": {"summary": i["fields"]["summary"], "description": i["fields"]["description"]}}))
        .collect();
    axum::Json(json!({"issues": issues, "isLast": true})).into_response()
}
