//! `POST /api/v1/silences` (add), `GET /api/v1/silences` (those in force),
//! `DELETE /api/v1/silences/{id}` (end one now). Writes need the write
//! token ([`Tokens`]); a silence is in the store before the answer says so.

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use chrono::Utc;
use tracing::info;

use super::auth::Tokens;
use super::silence::{NewSilence, Silences};

#[derive(Clone)]
struct Api {
    silences: Silences,
    tokens: Tokens,
}

/// The silences' routes, to merge into the HTTP router.
pub fn routes(silences: Silences, tokens: Tokens) -> Router {
    Router::new()
        .route("/api/v1/silences", get(list).post(add))
        .route("/api/v1/silences/{id}", delete(expire))
        .with_state(Api { silences, tokens })
}

fn say(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, format!("{message}\n")).into_response()
}

async fn list(State(api): State<Api>) -> Response {
    let silences = api.silences.active(Utc::now());
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({ "silences": silences })),
    )
        .into_response()
}

async fn add(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<axum::Json<NewSilence>, JsonRejection>,
) -> Response {
    if let Err(refusal) = api.tokens.check_write(&headers) {
        return refusal.into_response();
    }
    let axum::Json(new) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return say(
                StatusCode::BAD_REQUEST,
                format_args!(
                    "bad silence: {}; send JSON like {{\"service\":\"orders\",\"for\":\"1h\",\"reason\":\"deploy\"}}",
                    rejection.body_text().replace('\n', " ")
                ),
            );
        }
    };
    let silence = match new.validate(Utc::now()) {
        Ok(silence) => silence,
        Err(why) => return say(StatusCode::BAD_REQUEST, format_args!("bad silence: {why}")),
    };
    match api.silences.add(silence).await {
        Ok(silence) => {
            info!(id = %silence.id, service = %silence.service, instance = ?silence.instance,
                ends_at = %silence.ends_at, reason = %silence.reason, "silence added");
            (StatusCode::CREATED, axum::Json(silence)).into_response()
        }
        Err(error) => say(
            StatusCode::SERVICE_UNAVAILABLE,
            format_args!("the silence was not kept: {error}"),
        ),
    }
}

async fn expire(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(refusal) = api.tokens.check_write(&headers) {
        return refusal.into_response();
    }
    match api.silences.expire(&id, Utc::now()).await {
        Ok(Some(silence)) => {
            info!(id = %silence.id, service = %silence.service, "silence expired");
            axum::Json(silence).into_response()
        }
        Ok(None) => say(
            StatusCode::NOT_FOUND,
            "no silence in force has that id; monitor silence list shows them",
        ),
        Err(error) => say(
            StatusCode::SERVICE_UNAVAILABLE,
            format_args!("the silence was not expired: {error}"),
        ),
    }
}
