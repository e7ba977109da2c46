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

use crate::history::Reading;
use crate::metrics::{self, Metrics};
use crate::quiet::{self, Quiet};
use crate::status::Snapshots;

pub mod server;

/// The status page: one self-contained file, built into the binary.
const PAGE: &str = include_str!("page.html");

#[derive(Clone)]
struct Shared {
    snapshots: Snapshots,
    metrics: Arc<Metrics>,
    /// The store `/api/v1/history` reads (this monitor's fleet), when
    /// history is kept, and how its writes go.
    history: Option<Reading>,
    /// The silences the API writes, and the tokens it checks.
    quiet: Quiet,
}

/// Serve until `shutdown`. The listener is bound by the caller, so a bad
/// address is reported before monitoring starts.
pub async fn serve(
    listener: TcpListener,
    snapshots: Snapshots,
    metrics: Arc<Metrics>,
    history: Option<Reading>,
    quiet: Quiet,
    max_connections: usize,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stats = metrics.http.clone();
    let cap = server::fitted_cap(max_connections, server::raise_descriptor_limit());
    let shared = Shared {
        snapshots,
        metrics,
        history,
        quiet,
    };
    server::serve(listener, router(shared), cap, stats, shutdown).await
}

fn router(shared: Shared) -> Router {
    let tokens = shared.quiet.tokens.clone();
    let silences = quiet::api::routes(shared.quiet.silences.clone(), tokens.clone());
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/history", get(history))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(shared)
        .merge(silences)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            quiet::auth::guard_reads,
        ))
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

/// `?service=NAME`, optionally `&instance=ID` and `&limit=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    service: Option<String>,
    instance: Option<String>,
    limit: Option<usize>,
}

/// Transitions when no `limit` is given.
const HISTORY_LIMIT: usize = 100;

/// A service's (or one instance's) stored transitions, newest first. Read
/// on a blocking thread with a connection of its own, so a slow store slows
/// this request only.
async fn history(
    State(shared): State<Shared>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return bad_request(format!(
                "bad query string: {}; the parameters are service=NAME, instance=ID and limit=N",
                rejection.body_text()
            ));
        }
    };
    let Some(service) = query.service.filter(|s| !s.is_empty()) else {
        return bad_request(
            "the service parameter is required: /api/v1/history?service=NAME".into(),
        );
    };
    let Some(reading) = &shared.history else {
        return (
            StatusCode::NOT_FOUND,
            "no history is kept: set [history] path or url\n",
        )
            .into_response();
    };
    let limit = query.limit.unwrap_or(HISTORY_LIMIT);
    let found = crate::history::service_history(
        &reading.settings,
        reading.fleet.clone(),
        service.clone(),
        query.instance.clone(),
        limit,
    );
    match found.await {
        Ok(found) => {
            let mut body = serde_json::json!({
                "service": service,
                "instance": query.instance,
                "transitions": found.transitions,
                "uptime": found.uptime,
            });
            if query.instance.is_none() {
                body["service_changes"] = serde_json::json!(found.changes);
            }
            ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
    }
}

/// 200 while the monitor can judge, else 503, with the reason. A failing
/// history store is said too, but costs no 200: it costs history, not
/// heartbeats, and a supervisor must not restart a watcher for it.
async fn healthz(State(shared): State<Shared>) -> Response {
    let snapshot = shared.snapshots.fresh().await;
    let history = shared
        .history
        .as_ref()
        .and_then(|h| h.health.problem())
        .map(|problem| format!("; history store failing: {problem}"))
        .unwrap_or_default();
    match snapshot.health(tokio::time::Instant::now()) {
        Ok(()) => (StatusCode::OK, format!("ok{history}\n")).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{reason}{history}\n"),
        )
            .into_response(),
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!(
            "no such page: {}; try /, /metrics, /api/v1/status, /api/v1/history, /api/v1/silences or /healthz\n",
            uri.path()
        ),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: pages are read with GET; silences are added with POST and ended with DELETE /api/v1/silences/ID\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page judges no state itself: severity, tone and rank come with
    /// each instance from the status API, decided once next to the state.
    #[test]
    fn the_page_reads_what_states_mean_from_the_document() {
        for own_rule in [
            "SEVERITY",
            "\"never_seen\"",
            "\"down\"",
            "toLocaleTimeString",
        ] {
            assert!(!PAGE.contains(own_rule), "the page has {own_rule}");
        }
        for read in [
            "s.severity",
            "s.tone",
            "s.rank",
            "s.label",
            "doc.counts",
            "doc.link.since",
        ] {
            assert!(PAGE.contains(read), "the page does not read {read}");
        }
    }
}
