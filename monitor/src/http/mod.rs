//! The HTTP endpoint (`--listen`, `[http] listen`): Prometheus metrics, the
//! status API, a health check for supervisors, and a status page for people.
//! Every handler reads a snapshot of the status board ([`Snapshots`]) or the
//! metrics' atomics; none touches the engine or the detector, so no request
//! can slow detection.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, Metrics};
use crate::status::Snapshots;

/// The status page: one self-contained file, built into the binary.
const PAGE: &str = include_str!("page.html");

#[derive(Clone)]
struct Shared {
    snapshots: Snapshots,
    metrics: Arc<Metrics>,
}

/// Serve until `shutdown`. The listener is bound by the caller, so a bad
/// address is reported before monitoring starts.
pub async fn serve(
    listener: TcpListener,
    snapshots: Snapshots,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(Shared { snapshots, metrics }))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE))
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        shared.metrics.encode(),
    )
}

/// `?service=NAME` keeps one service's instances.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    service: Option<String>,
}

async fn status(
    State(shared): State<Shared>,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return bad_request(format!(
                "bad query string: {}; the one parameter is service=NAME",
                rejection.body_text()
            ));
        }
    };
    let snapshot = shared.snapshots.fresh().await;
    let mut document = snapshot.document.clone();
    if let Some(service) = &query.service {
        document.services.retain(|s| &s.service == service);
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(document)).into_response()
}

async fn healthz(State(shared): State<Shared>) -> Response {
    let snapshot = shared.snapshots.fresh().await;
    match snapshot.health(tokio::time::Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!(
            "no such page: {}; try /, /metrics, /api/v1/status or /healthz\n",
            uri.path()
        ),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: every page here is read with GET\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Severity;

    /// The page judges states in its own script; it must agree with the
    /// monitor's one rule.
    #[test]
    fn the_page_judges_states_as_the_monitor_does() {
        let start = PAGE
            .find("const SEVERITY = {")
            .expect("the page's severity map");
        let map = &PAGE[start..start + PAGE[start..].find("};").unwrap()];
        let pairs: Vec<(&str, &str)> = map["const SEVERITY = {".len()..]
            .split(',')
            .filter_map(|pair| pair.split_once(':'))
            .map(|(state, severity)| (state.trim(), severity.trim().trim_matches('"')))
            .collect();
        assert!(pairs.len() >= 8, "{pairs:?}");
        for (state, severity) in &pairs {
            let expected = serde_json::to_value(Severity::of(state)).unwrap();
            assert_eq!(expected, *severity, "{state}");
        }
        for state in [
            "up",
            "left",
            "suspect",
            "flapping",
            "slow",
            "degraded",
            "down",
            "never_seen",
        ] {
            assert!(
                pairs.iter().any(|(s, _)| *s == state),
                "{state} missing from the page"
            );
        }
    }
}
