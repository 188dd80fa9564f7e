//! notify's HTTP API: what became of an action's notifications, for operators and
//! for the end-to-end tests.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use closeloop_store::Database;
use closeloop_telemetry::Problem;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::outbox::{self, DeliveryRow};

#[derive(Clone)]
struct ApiState {
    db: Database,
}

pub fn routes(db: Database) -> Router {
    Router::new()
        .route("/v1/notifications", get(list))
        .with_state(ApiState { db })
}

#[derive(Debug, Deserialize)]
struct ListParams {
    action: Option<String>,
}

/// One delivery, as `GET /v1/notifications` shows it.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub delivery_id: String,
    pub action_id: String,
    pub customer_id: String,
    pub channel: String,
    pub language: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub last_status_code: Option<i64>,
    pub created_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(row: DeliveryRow) -> Self {
        Self {
            delivery_id: row.delivery_id,
            action_id: row.action_id,
            customer_id: row.customer_id,
            channel: row.channel,
            language: row.language,
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error,
            last_status_code: row.last_status_code,
            created_at: DateTime::from_timestamp_millis(row.created_at_ms),
            delivered_at: row
                .delivered_at_ms
                .and_then(DateTime::from_timestamp_millis),
        }
    }
}

fn bad_action(detail: &str) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, "Invalid query")
        .detail(detail)
        .into_response()
}

/// `GET /v1/notifications?action=<uuid>`
async fn list(
    State(state): State<ApiState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return bad_action("the query string could not be read; use ?action=<uuid>");
    };
    let Some(action) = params.action else {
        return bad_action("the `action` query parameter is required: ?action=<uuid>");
    };
    let Ok(action) = Uuid::parse_str(action.trim()) else {
        return bad_action("`action` must be a UUID");
    };
    match outbox::for_action(&state.db, &action.to_string()).await {
        Ok(rows) => {
            Json(rows.into_iter().map(DeliveryView::from).collect::<Vec<_>>()).into_response()
        }
        Err(error) if closeloop_store::is_transient(&error) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Database unavailable")
                .detail("try again shortly")
                .retry_after(1)
                .into_response()
        }
        Err(error) => {
            tracing::error!(%error, "could not list notifications");
            Problem::internal("could not read notifications").into_response()
        }
    }
}
