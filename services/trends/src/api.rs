//! The ops API: list and read actions, acknowledge, assign, resolve (with the "we did"
//! message that notify sends to the customers who complained) and reopen them,
//! per-window statistics of a theme, and the emerging topics no theme covers yet. Every error is an RFC 9457 problem, including
//! malformed bodies (read here as raw bytes, not by axum's plain-text extractors, and
//! checked in [`crate::request`]).
//! The contract is `openapi.json` beside this crate, served at `/openapi.json`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use closeloop_http::FieldError;
use closeloop_http::{Problem, ProblemType};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::action::{time, Action, Finding, HistoryEntry};
use crate::context::Context;
use crate::detection::check_theme;
use crate::emerging::{self, EmergingView, Kind};
use crate::impact::{self, ImpactView};
use crate::request::{self, parse_action_id};
use crate::store::{ActionFilter, ActionRow, Span, StatusFilter};
use crate::workflow::{self, database_problem, Step};

const DEFAULT_LIST_LIMIT: i64 = 100;
const MAX_LIST_LIMIT: i64 = 500;
/// Most windows one statistics request returns.
const MAX_STATS_WINDOWS: i64 = 1000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The `/v1` routes (bearer token required when one is configured) and the OpenAPI
/// document; [`crate::routes`] adds the `/ops` page and what all routes share.
pub(crate) fn routes(ctx: Arc<Context>) -> Router<Arc<Context>> {
    let mut routes = Router::new()
        .route("/v1/actions", get(list_actions))
        .route("/v1/actions/{id}", get(get_action));
    for step in Step::ALL {
        routes = routes.route(
            &format!("/v1/actions/{{id}}/{}", step.as_str()),
            post(
                move |state: State<Arc<Context>>,
                      path: Result<Path<String>, PathRejection>,
                      headers: HeaderMap,
                      body: Result<Bytes, BytesRejection>| {
                    take_step(step, state, path, headers, body)
                },
            ),
        );
    }
    routes
        .route("/v1/themes/{theme}/stats", get(theme_stats))
        .route("/v1/findings", get(list_findings))
        .route("/v1/topics/emerging", get(emerging_topics))
        .route("/v1/themes/impact", get(themes_impact))
        .merge(crate::taxonomy::routes())
        // route_layer: only matched /v1 routes need the token, /metrics, probes, the
        // OpenAPI document and /ops (which signs in with a cookie) not.
        .route_layer(middleware::from_fn_with_state(
            ctx.ops.token().cloned(),
            closeloop_http::require_ops_token,
        ))
        .route("/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The stored action as the API shows it, with its measured effect.
async fn to_action(ctx: &Context, row: &ActionRow) -> Result<Action, Problem> {
    let mut action = Action::from_row(row, ctx.theme_name(&row.theme)).map_err(|error| {
        tracing::error!(%error, "stored action cannot be read");
        Problem::internal(error.to_string())
    })?;
    action.effect = crate::effect::of(ctx, row)
        .await
        .map_err(|e| database_problem(&e))?;
    Ok(action)
}

fn invalid_query(pointer: &str, detail: impl Into<String>) -> Problem {
    Problem::new(ProblemType::InvalidParameter).errors(vec![FieldError {
        pointer: pointer.into(),
        detail: detail.into(),
    }])
}

fn query_rejection(rejection: QueryRejection) -> Problem {
    Problem::new(ProblemType::InvalidParameter).detail(rejection.body_text())
}

/// An RFC 3339 time in a query parameter.
fn parse_time(name: &str, value: &str) -> Result<i64, Problem> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|_| invalid_query(name, "must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z"))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    theme: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

/// A list's `limit` parameter.
fn list_limit(limit: Option<&str>) -> Result<i64, Problem> {
    match limit {
        None => Ok(DEFAULT_LIST_LIMIT),
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
            .ok_or_else(|| invalid_query("limit", format!("must be 1 to {MAX_LIST_LIMIT}"))),
    }
}

/// The list's `status` filter: a status, or `unresolved` for open and acknowledged.
fn status_filter(status: &str) -> Option<StatusFilter> {
    match status {
        "unresolved" => Some(StatusFilter::Unresolved),
        status => status.parse().ok().map(StatusFilter::Is),
    }
}

async fn list_actions(
    State(ctx): State<Arc<Context>>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<Action>>, Problem> {
    let Query(params) = query.map_err(query_rejection)?;
    let status = match params.status.as_deref() {
        None => None,
        Some(status) => Some(status_filter(status).ok_or_else(|| {
            invalid_query(
                "status",
                "must be `open`, `acknowledged`, `resolved` or `unresolved`",
            )
        })?),
    };
    if let Some(theme) = &params.theme {
        check_theme(theme).map_err(|e| invalid_query("theme", e))?;
    }
    let since_ms = params
        .since
        .as_deref()
        .map(|since| parse_time("since", since))
        .transpose()?;
    let limit = list_limit(params.limit.as_deref())?;
    let filter = ActionFilter {
        status,
        theme: params.theme,
        since_ms,
        limit,
    };
    let rows = ctx
        .store
        .actions(&filter)
        .await
        .map_err(|e| database_problem(&e))?;
    let mut actions = Vec::with_capacity(rows.len());
    for row in &rows {
        actions.push(to_action(&ctx, row).await?);
    }
    Ok(Json(actions))
}

#[derive(Debug, Deserialize)]
struct FindingParams {
    theme: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/findings`: historical findings, the most recent trigger first.
async fn list_findings(
    State(ctx): State<Arc<Context>>,
    query: Result<Query<FindingParams>, QueryRejection>,
) -> Result<Json<Vec<Finding>>, Problem> {
    let Query(params) = query.map_err(query_rejection)?;
    if let Some(theme) = &params.theme {
        check_theme(theme).map_err(|e| invalid_query("theme", e))?;
    }
    let limit = list_limit(params.limit.as_deref())?;
    let rows = ctx
        .store
        .findings(params.theme.as_deref(), limit)
        .await
        .map_err(|e| database_problem(&e))?;
    let findings = rows
        .iter()
        .map(|row| {
            Finding::from_row(row, ctx.theme_name(&row.theme)).map_err(|error| {
                tracing::error!(%error, theme = %row.theme, "stored finding cannot be read");
                Problem::internal(error.to_string())
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Json(findings))
}

#[derive(Debug, Deserialize)]
struct EmergingParams {
    kind: Option<String>,
    limit: Option<String>,
}

/// Topics shown when no `limit` is given.
const DEFAULT_EMERGING_LIMIT: usize = 20;

/// `GET /v1/topics/emerging`: the phrases surging in unmatched (or negative) feedback,
/// as last computed, with excerpts read now.
async fn emerging_topics(
    State(ctx): State<Arc<Context>>,
    query: Result<Query<EmergingParams>, QueryRejection>,
) -> Result<Json<EmergingView>, Problem> {
    let Query(params) = query.map_err(query_rejection)?;
    let kind = match params.kind.as_deref() {
        None => Kind::Unmatched,
        Some(raw) => Kind::parse(raw)
            .ok_or_else(|| invalid_query("kind", "must be `unmatched` or `negative`"))?,
    };
    let limit = match params.limit.as_deref() {
        None => DEFAULT_EMERGING_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=emerging::MAX_LISTED).contains(n))
            .ok_or_else(|| {
                invalid_query("limit", format!("must be 1 to {}", emerging::MAX_LISTED))
            })?,
    };
    let view = emerging::view(&ctx.store, &ctx.emerging, kind, limit)
        .await
        .map_err(|e| database_problem(&e))?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
struct ImpactParams {
    since: Option<String>,
    until: Option<String>,
}

/// `GET /v1/themes/impact`: per theme, how much higher NPS and the average rating of the
/// period (event time; the last `TRENDS_IMPACT_DAYS` by default) would be without the
/// feedback that mentions it negatively, what costs most first.
async fn themes_impact(
    State(ctx): State<Arc<Context>>,
    query: Result<Query<ImpactParams>, QueryRejection>,
) -> Result<Json<ImpactView>, Problem> {
    let Query(params) = query.map_err(query_rejection)?;
    let until_ms = match params.until.as_deref() {
        Some(until) => parse_time("until", until)?,
        None => Utc::now().timestamp_millis(),
    };
    let since_ms = match params.since.as_deref() {
        Some(since) => parse_time("since", since)?,
        None => until_ms - ctx.impact.settings.period_ms,
    };
    if since_ms >= until_ms {
        return Err(invalid_query("since", "must be before `until`"));
    }
    let view = impact::view(&ctx, since_ms, until_ms)
        .await
        .map_err(|e| database_problem(&e))?;
    Ok(Json(view))
}

fn action_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, Problem> {
    let Path(raw) = path.map_err(|rejection| {
        Problem::new(ProblemType::InvalidParameter).detail(rejection.body_text())
    })?;
    parse_action_id(&raw)
}

/// An action with its history, as the detail endpoint shows it.
async fn action_detail(ctx: &Context, id: Uuid) -> Result<Action, Problem> {
    let row = ctx
        .store
        .action(&id.to_string())
        .await
        .map_err(|e| database_problem(&e))?
        .ok_or_else(|| workflow::TransitionError::NotFound(id).problem())?;
    let mut action = to_action(ctx, &row).await?;
    let history = ctx
        .store
        .history(&row.action_id)
        .await
        .map_err(|e| database_problem(&e))?;
    action.history = Some(history.into_iter().map(HistoryEntry::from).collect());
    Ok(action)
}

async fn get_action(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Action>, Problem> {
    let id = action_id(path)?;
    Ok(Json(action_detail(&ctx, id).await?))
}

/// `POST /v1/actions/{id}/<step>`: acknowledge, assign, resolve (with the "we did"
/// message) or reopen.
async fn take_step(
    step: Step,
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Action>, Problem> {
    let id = action_id(path)?;
    let command = request::from_json(step, &closeloop_http::read_json_body(&headers, body)?)?;
    let action = workflow::apply(&ctx, id, command)
        .await
        .map_err(|e| e.problem())?;
    Ok(Json(action))
}

#[derive(Debug, Deserialize)]
struct StatsParams {
    window_minutes: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// One window of a theme's statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowCounts {
    pub start: DateTime<Utc>,
    pub mentions: u32,
    pub negative_mentions: u32,
    pub negative_share: f64,
    pub distinct_customers: u32,
}

/// What the detector currently holds for a theme.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorView {
    pub rules: String,
    pub watermark: DateTime<Utc>,
    pub current_window: closeloop_trend::WindowStats,
    pub baseline_per_window: f64,
    pub active_since: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub dropped_beyond_horizon: u64,
    /// Distinct complaining customers per recurrence period (start, customers).
    pub recurrence_periods: Vec<(DateTime<Utc>, u32)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThemeStatsResponse {
    pub theme: String,
    pub theme_name: BTreeMap<String, String>,
    pub window_minutes: i64,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Every window from `since` to `until`, oldest first, empty ones included.
    pub windows: Vec<WindowCounts>,
    /// `null` when this instance has not seen the theme (another instance owns it).
    pub detector: Option<DetectorView>,
}

async fn theme_stats(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<ThemeStatsResponse>, Problem> {
    let Path(theme) = path.map_err(|rejection| {
        Problem::new(ProblemType::InvalidParameter).detail(rejection.body_text())
    })?;
    check_theme(&theme).map_err(|e| Problem::new(ProblemType::InvalidParameter).detail(e))?;
    let Query(params) = query.map_err(query_rejection)?;
    let (default_window_ms, stats) = {
        let detection = ctx.detection();
        (detection.config(&theme).window_ms, detection.stats(&theme))
    };
    let window_ms = match params.window_minutes.as_deref() {
        None => default_window_ms,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=31 * 24 * 60).contains(m))
            .map(|m| m * 60_000)
            .ok_or_else(|| invalid_query("window_minutes", "must be 1 to 44640 (31 days)"))?,
    };
    let until_ms = match params.until.as_deref() {
        Some(until) => parse_time("until", until)?,
        None => Utc::now().timestamp_millis(),
    };
    let since_ms = match params.since.as_deref() {
        Some(since) => parse_time("since", since)?,
        None => until_ms - DAY_MS,
    };
    if since_ms > until_ms {
        return Err(invalid_query("since", "must not be after `until`"));
    }
    let first = since_ms.div_euclid(window_ms);
    let last = until_ms.div_euclid(window_ms);
    if last - first + 1 > MAX_STATS_WINDOWS {
        return Err(invalid_query(
            "window_minutes",
            format!("at most {MAX_STATS_WINDOWS} windows per request: widen the window or narrow since/until"),
        ));
    }
    let span = Span {
        theme: &theme,
        from_ms: first * window_ms,
        to_ms: until_ms,
        after_ms: i64::MIN,
    };
    let rows = ctx
        .store
        .series(span, window_ms)
        .await
        .map_err(|e| database_problem(&e))?;
    let mut rows = rows.into_iter().peekable();
    let mut windows = Vec::new();
    for index in first..=last {
        let row = rows.next_if(|row| row.bucket == index);
        let (mentions, negative, distinct) = row
            .map(|r| (r.mentions, r.negative_mentions, r.distinct_customers))
            .unwrap_or_default();
        windows.push(WindowCounts {
            start: time(index * window_ms),
            mentions: mentions as u32,
            negative_mentions: negative as u32,
            negative_share: if mentions > 0 {
                (negative as f64 / mentions as f64 * 100.0).round() / 100.0
            } else {
                0.0
            },
            distinct_customers: distinct as u32,
        });
    }
    let rules = ctx.detection().config(&theme).describe();
    let detector = stats.map(|stats| DetectorView {
        rules,
        watermark: time(stats.watermark_ms),
        current_window: stats.window,
        baseline_per_window: (stats.baseline_per_window * 100.0).round() / 100.0,
        active_since: stats.active_since_ms.map(time),
        resolved_at: stats.resolved_at_ms.map(time),
        dropped_beyond_horizon: stats.dropped_beyond_horizon,
        recurrence_periods: stats
            .periods
            .into_iter()
            .map(|(start, customers)| (time(start), customers))
            .collect(),
    });
    Ok(Json(ThemeStatsResponse {
        theme_name: ctx.theme_name(&theme),
        theme,
        window_minutes: window_ms / 60_000,
        since: time(since_ms),
        until: time(until_ms),
        windows,
        detector,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_covers_every_route() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert!(spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")));
        let paths = spec["paths"].as_object().expect("paths");
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        documented.sort();
        assert_eq!(
            documented,
            [
                "/v1/actions",
                "/v1/actions/{id}",
                "/v1/actions/{id}/acknowledge",
                "/v1/actions/{id}/assign",
                "/v1/actions/{id}/reopen",
                "/v1/actions/{id}/resolve",
                "/v1/findings",
                "/v1/taxonomy",
                "/v1/taxonomy/previews/{id}",
                "/v1/taxonomy/versions",
                "/v1/taxonomy/versions/{version}",
                "/v1/taxonomy/versions/{version}/apply",
                "/v1/taxonomy/versions/{version}/preview",
                "/v1/themes/impact",
                "/v1/themes/{theme}/stats",
                "/v1/topics/emerging",
            ],
            "keep openapi.json in step with router()"
        );
        for (path, item) in paths {
            for (method, operation) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let responses = operation["responses"].as_object().expect("responses");
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} documents 401"
                );
                assert!(
                    responses.keys().any(|code| code.starts_with('2')),
                    "{method} {path} documents success"
                );
            }
        }
    }
}
