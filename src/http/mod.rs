//! The HTTP adapter: health and metrics, the alert webhooks, and the refusals every HTTP
//! ingress shares (Slack's routes live in `crate::slack::ingress`).

pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::metrics::Metrics;
use crate::app::store::{RoleState, Store, StoreError};

/// A refused request: the status and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: String,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        tracing::warn!(status = self.status.as_u16(), reason = self.reason.as_str(), "request rejected");
        (self.status, Json(json!({"ok": false, "error": self.reason}))).into_response()
    }
}

pub fn rejection(status: StatusCode, reason: impl Into<String>) -> Rejection {
    Rejection { status, reason: reason.into() }
}

/// A POST's headers and body, moved out of the request: axum's `HeaderMap` extractor clones the
/// map, which every signed or token-checked delivery paid on the ingress's busiest path.
pub struct Posted {
    pub headers: axum::http::HeaderMap,
    pub body: axum::body::Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Posted {
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Posted, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let headers = std::mem::take(&mut parts.headers);
        // The body limit travels in the extensions, which stay with the parts.
        let request = axum::extract::Request::from_parts(parts, body);
        let body = <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(request, state).await?;
        Ok(Posted { headers, body })
    }
}

/// A refused request as a handler's response.
pub fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    rejection(status, reason).into_response()
}

/// What the health and metrics routes read.
#[derive(Clone)]
pub struct OpsState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Leader or follower, and since when.
    pub role: tokio::sync::watch::Receiver<RoleState>,
}

pub fn ops_routes(state: OpsState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(state)
}

/// 200 with queue depths while the store answers; 503 when it does not.
async fn healthz(State(state): State<OpsState>) -> Response {
    let store = state.store.clone();
    let depths = tokio::task::spawn_blocking(move || {
        let open = store.open_incidents()?.len();
        let outbox = store.pending_outbox()?.len();
        Ok::<_, StoreError>((store.inbox_len()?, outbox, open))
    })
    .await;
    match depths {
        Ok(Ok((inbox, outbox, open))) => {
            state.metrics.inbox_depth.set(inbox as i64);
            state.metrics.outbox_depth.set(outbox as i64);
            let role = *state.role.borrow();
            Json(json!({"status": "ok", "inbox": inbox, "outbox": outbox, "open_incidents": open,
                        "role": role.role.as_str(), "role_since": role.since.to_rfc3339()}))
            .into_response()
        }
        Ok(Err(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "error", "error": e.to_string()}))).into_response()
        }
        Err(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "error", "error": e.to_string()}))).into_response()
        }
    }
}

async fn metrics(State(state): State<OpsState>) -> Response {
    let store = state.store.clone();
    if let Ok(Ok(depth)) = tokio::task::spawn_blocking(move || store.inbox_len()).await {
        state.metrics.inbox_depth.set(depth as i64);
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
        .into_response()
}
