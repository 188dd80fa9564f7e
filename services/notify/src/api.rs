//! notify's HTTP API: what became of an action's notifications (status per customer,
//! counts including those skipped for want of consent), and the dead letters, for
//! operators and for the end-to-end tests. It names customers, so with an ops token
//! configured every `/v1` route wants it, exactly as trends' API does.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use closeloop_http::{OpsToken, Problem, ProblemType};
use closeloop_store::Database;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::frequency::{self, Cap, FREQUENCY_CAP};
use crate::handlers::{NO_CONSENT, NO_ROUTE};
use crate::outbox::{self, DeliveryRow, Skip};
use crate::preferences::{self, UNSUBSCRIBED};

/// The most deliveries `?status=` lists.
const STATUS_LIMIT_MAX: i64 = 1000;

#[derive(Clone)]
struct ApiState {
    db: Database,
    cap: Option<Cap>,
}

pub fn routes(db: Database, ops_token: Option<OpsToken>, cap: Option<Cap>) -> Router {
    Router::new()
        .route("/v1/notifications", get(list))
        .route("/v1/customers/{id}/preferences", get(customer))
        // route_layer: only matched /v1 routes need the token; /metrics and the probes
        // (served beside this router) and unknown paths do not.
        .route_layer(middleware::from_fn_with_state(
            ops_token,
            closeloop_http::require_ops_token,
        ))
        .fallback(closeloop_http::not_found)
        .with_state(ApiState { db, cap })
}

#[derive(Debug, Deserialize)]
struct ListParams {
    action: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
}

/// How an action's notifications stand.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Counts {
    pub pending: usize,
    /// Held by the frequency cap until the customer's period ends.
    pub held: usize,
    /// Sent as part of another action's combined message (see `combined_into`).
    pub combined: usize,
    pub delivered: usize,
    pub dead: usize,
    /// Stopped by an erasure request.
    pub cancelled: usize,
    pub skipped_no_consent: usize,
    pub skipped_no_route: usize,
    pub skipped_unsubscribed: usize,
    /// Skipped by the frequency cap (`NOTIFY_WHEN_CAPPED=skip`).
    pub skipped_frequency_cap: usize,
}

/// A customer who was not notified, and why.
#[derive(Debug, Serialize)]
pub struct SkipView {
    pub customer_id: String,
    pub reason: String,
    pub decided_at: Option<DateTime<Utc>>,
}

/// `GET /v1/notifications?action=…`
#[derive(Debug, Serialize)]
pub struct ActionNotifications {
    pub action_id: Uuid,
    pub counts: Counts,
    pub deliveries: Vec<DeliveryView>,
    pub skipped: Vec<SkipView>,
}

/// `GET /v1/notifications?status=…`
#[derive(Debug, Serialize)]
pub struct DeliveryList {
    pub status: String,
    pub deliveries: Vec<DeliveryView>,
}

fn counts(deliveries: &[DeliveryRow], skips: &[Skip]) -> Counts {
    let mut counts = Counts::default();
    for delivery in deliveries {
        match delivery.status.as_str() {
            outbox::PENDING => counts.pending += 1,
            outbox::HELD => counts.held += 1,
            outbox::COMBINED => counts.combined += 1,
            outbox::DELIVERED => counts.delivered += 1,
            outbox::DEAD => counts.dead += 1,
            outbox::CANCELLED => counts.cancelled += 1,
            _ => {}
        }
    }
    for skip in skips {
        match skip.reason.as_str() {
            NO_CONSENT => counts.skipped_no_consent += 1,
            NO_ROUTE => counts.skipped_no_route += 1,
            UNSUBSCRIBED => counts.skipped_unsubscribed += 1,
            FREQUENCY_CAP => counts.skipped_frequency_cap += 1,
            _ => {}
        }
    }
    counts
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
    /// The delivery whose combined message this one went out in (frequency cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub combined_into: Option<String>,
    /// When a held delivery goes out (its customer's period ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<DateTime<Utc>>,
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
            combined_into: row.combined_into,
            held_until: None,
        }
    }
}

fn bad_action(detail: &str) -> Response {
    Problem::new(ProblemType::InvalidParameter)
        .detail(detail)
        .into_response()
}

fn store_error(error: sqlx::Error) -> Response {
    Problem::from_database_error(&error).into_response()
}

/// `GET /v1/notifications?action=<uuid>` or `?status=dead[&limit=n]`
async fn list(
    State(state): State<ApiState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return bad_action(
            "the query string could not be read; use ?action=<uuid> or ?status=<status>",
        );
    };
    match (params.action, params.status) {
        (Some(action), None) => {
            let Ok(action) = Uuid::parse_str(action.trim()) else {
                return bad_action("`action` must be a UUID");
            };
            for_action(&state.db, action).await
        }
        (None, Some(status)) => {
            let status = status.trim().to_ascii_lowercase();
            if !outbox::STATUSES.contains(&status.as_str()) {
                return bad_action(&format!(
                    "`status` must be one of {}",
                    outbox::STATUSES.join(", ")
                ));
            }
            let limit = params.limit.unwrap_or(100);
            if !(1..=STATUS_LIMIT_MAX).contains(&limit) {
                return bad_action(&format!("`limit` must be between 1 and {STATUS_LIMIT_MAX}"));
            }
            match outbox::with_status(&state.db, &status, limit).await {
                Ok(rows) => Json(DeliveryList {
                    status,
                    deliveries: rows.into_iter().map(DeliveryView::from).collect(),
                })
                .into_response(),
                Err(error) => store_error(error),
            }
        }
        (Some(_), Some(_)) => bad_action("give either `action` or `status`, not both"),
        (None, None) => bad_action(
            "the `action` (?action=<uuid>) or `status` (?status=dead) query parameter is required",
        ),
    }
}

async fn for_action(db: &Database, action: Uuid) -> Response {
    let action_id = action.to_string();
    let deliveries = match outbox::for_action(db, &action_id).await {
        Ok(rows) => rows,
        Err(error) => return store_error(error),
    };
    let skips = match outbox::skips_for_action(db, &action_id).await {
        Ok(rows) => rows,
        Err(error) => return store_error(error),
    };
    Json(ActionNotifications {
        action_id: action,
        counts: counts(&deliveries, &skips),
        deliveries: deliveries.into_iter().map(DeliveryView::from).collect(),
        skipped: skips
            .into_iter()
            .map(|skip| SkipView {
                customer_id: skip.customer_id,
                decided_at: DateTime::from_timestamp_millis(skip.created_at_ms),
                reason: skip.reason,
            })
            .collect(),
    })
    .into_response()
}

/// `GET /v1/customers/{id}/preferences`: what notify knows of how a customer wants to
/// hear back, their contact period under the frequency cap, and what is held for them.
#[derive(Debug, Serialize)]
pub struct CustomerView {
    pub customer_id: String,
    /// `None` until a preference record or feedback of theirs arrived.
    pub preferences: Option<PreferencesView>,
    pub frequency_cap: Option<CapView>,
    pub held: Vec<DeliveryView>,
}

#[derive(Debug, Serialize)]
pub struct PreferencesView {
    pub consent: bool,
    /// `None`: any channel.
    pub channels: Option<Vec<closeloop_events::DeliveryChannel>>,
    pub language: Option<String>,
    pub unsubscribed: bool,
    pub updated_at: Option<DateTime<Utc>>,
    pub set_by: String,
}

#[derive(Debug, Serialize)]
pub struct CapView {
    pub period_seconds: i64,
    pub when_capped: &'static str,
    /// The customer's current (or last) period: when it opened and when it ends.
    pub period_opened_at: Option<DateTime<Utc>>,
    pub period_ends_at: Option<DateTime<Utc>>,
}

async fn customer(
    State(state): State<ApiState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let id = id.trim().to_owned();
    if id.is_empty() {
        return bad_action("the customer id must not be empty");
    }
    let known = match preferences::get(&state.db, &id).await {
        Ok(known) => known,
        Err(error) => return store_error(error),
    };
    let period = match frequency::period(&state.db, &id).await {
        Ok(period) => period,
        Err(error) => return store_error(error),
    };
    let held = match outbox::held_for_customer(&state.db, &id).await {
        Ok(rows) => rows,
        Err(error) => return store_error(error),
    };
    let frequency_cap = state.cap.map(|cap| CapView {
        period_seconds: cap.period_ms / 1000,
        when_capped: match cap.when_capped {
            frequency::WhenCapped::Hold => "hold",
            frequency::WhenCapped::Skip => "skip",
        },
        period_opened_at: period
            .as_ref()
            .and_then(|p| DateTime::from_timestamp_millis(p.opened_at_ms)),
        period_ends_at: period.as_ref().and_then(|p| {
            DateTime::from_timestamp_millis(p.opened_at_ms.saturating_add(cap.period_ms))
        }),
    });
    let held_until = frequency_cap.as_ref().and_then(|cap| cap.period_ends_at);
    Json(CustomerView {
        customer_id: id,
        preferences: known.map(|p| PreferencesView {
            consent: p.consent,
            channels: p.channels,
            language: p.language,
            unsubscribed: p.unsubscribed,
            updated_at: p.updated_at_ms.and_then(DateTime::from_timestamp_millis),
            set_by: p.set_by,
        }),
        frequency_cap,
        held: held
            .into_iter()
            .map(|row| DeliveryView {
                held_until,
                ..DeliveryView::from(row)
            })
            .collect(),
    })
    .into_response()
}
