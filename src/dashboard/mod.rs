//! The read-only web dashboard: open and recent incidents, one incident whole, and insights as
//! server-rendered SVG. Off unless `DASHBOARD_TOKEN` is set; a request carries the token as
//! `Authorization: Bearer <token>`, or signs in once through `/login` (then an HttpOnly cookie).
//! No page changes an incident; alert text is untrusted and every value is escaped (maud escapes
//! by default; the postmortem's Markdown is rendered with raw HTML shown as text).

mod charts;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::app::clock::Clock;
use crate::app::store::Store;
use crate::domain::ids::IncidentId;
use crate::domain::incident::Incident;

/// The cookie a sign-in sets.
pub const COOKIE: &str = "ic_dashboard";

#[derive(Clone)]
pub struct DashboardState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub token: SecretString,
    /// `https://acme.slack.com/`, to link threads; `None` leaves the links out.
    pub workspace_url: Option<String>,
}

pub fn routes(state: DashboardState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/incidents/{id}", get(incident_page))
        .route("/insights", get(insights))
        .route("/login", get(login_form).post(login))
        .route("/dashboard.css", get(stylesheet))
        .with_state(state)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn signed_in(state: &DashboardState, headers: &HeaderMap) -> bool {
    let token = state.token.expose_secret().as_bytes();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim().as_bytes(), token));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_string))
        .any(|t| same(t.as_bytes(), token));
    bearer || cookie
}

fn unauthorized() -> Response {
    let page = pages::login(Some("Sign in with the dashboard token (DASHBOARD_TOKEN) to see incidents."));
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Html(page.into_string())).into_response()
}

/// Reads from the store off the async runtime; a store that does not answer is a 503 saying
/// what could not be read.
async fn read<T: Send + 'static>(
    state: &DashboardState,
    what: String,
    f: impl FnOnce(&dyn Store) -> Result<T, crate::app::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("cannot read {what}: {e}")).into_response()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read {what}: {e}")).into_response()),
    }
}

async fn incidents(state: &DashboardState) -> Result<Vec<Incident>, Response> {
    read(state, "the incidents".into(), |store| store.all_incidents()).await
}

/// `/` filters: `team`, `severity` (1-4), `status` (`open`, `resolved`, `all`).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    pub team: Option<String>,
    pub severity: Option<String>,
    pub status: Option<String>,
}

async fn index(State(state): State<DashboardState>, headers: HeaderMap, Query(filters): Query<Filters>) -> Response {
    if !signed_in(&state, &headers) {
        return unauthorized();
    }
    match incidents(&state).await {
        Ok(all) => Html(pages::index(&all, &filters, state.clock.now()).into_string()).into_response(),
        Err(r) => r,
    }
}

async fn incident_page(State(state): State<DashboardState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !signed_in(&state, &headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<IncidentId>() else {
        return (StatusCode::NOT_FOUND, Html(pages::not_found(&id).into_string())).into_response();
    };
    match read(&state, id.to_string(), move |store| store.get_incident(id)).await {
        Ok(Some(incident)) => {
            Html(pages::incident(&incident, state.clock.now(), state.workspace_url.as_deref()).into_string())
                .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, Html(pages::not_found(&id.to_string()).into_string())).into_response(),
        Err(r) => r,
    }
}

async fn insights(State(state): State<DashboardState>, headers: HeaderMap) -> Response {
    if !signed_in(&state, &headers) {
        return unauthorized();
    }
    match incidents(&state).await {
        Ok(all) => Html(pages::insights(&all, state.clock.now()).into_string()).into_response(),
        Err(r) => r,
    }
}

async fn login_form() -> Html<String> {
    Html(pages::login(None).into_string())
}

#[derive(Deserialize)]
struct Login {
    token: String,
    /// Where to go once signed in: a path on this dashboard (anything else goes to `/`).
    #[serde(default)]
    next: Option<String>,
}

async fn login(State(state): State<DashboardState>, Form(form): Form<Login>) -> Response {
    if !same(form.token.trim().as_bytes(), state.token.expose_secret().as_bytes()) {
        let page = pages::login(Some("That is not the dashboard token."));
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    }
    // Lax: the cookie comes along when a person follows a link to the dashboard; HttpOnly: no
    // script reads it.
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000", form.token.trim());
    let next = form.next.as_deref().filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'));
    ([(header::SET_COOKIE, cookie)], Redirect::to(next.unwrap_or("/"))).into_response()
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], pages::STYLESHEET)
        .into_response()
}
