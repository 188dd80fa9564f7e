//! The ops API: list and read actions, acknowledge, assign, resolve (with the "we did"
//! message that notify sends to the customers who complained) and reopen them, and
//! per-window statistics of a theme. Every error is an RFC 9457 problem, including
//! malformed bodies (parsed here from raw bytes, not by axum's plain-text extractors).
//! The contract is `openapi.json` beside this crate, served at `/openapi.json`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use closeloop_telemetry::problem::FieldError;
use closeloop_telemetry::Problem;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::action::{time, Action, HistoryEntry};
use crate::auth::{bearer_token, tokens_match};
use crate::context::Context;
use crate::detection::check_theme;
use crate::store::{ActionFilter, ActionRow, Span, StatusFilter};
use crate::workflow::{self, database_problem};

/// Longest accepted resolution message, per language.
pub const MAX_MESSAGE_CHARS: usize = 2000;
const MAX_NAME_CHARS: usize = 200;
/// Resolution bodies are a few kilobytes at most.
const MAX_BODY_BYTES: usize = 64 * 1024;
const DEFAULT_LIST_LIMIT: i64 = 100;
const MAX_LIST_LIMIT: i64 = 500;
/// Languages customers are told in; notify knows no others.
pub const LANGUAGES: [&str; 2] = ["en", "de"];
/// Most windows one statistics request returns.
const MAX_STATS_WINDOWS: i64 = 1000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

pub(crate) fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/v1/actions", get(list_actions))
        .route("/v1/actions/{id}", get(get_action))
        .route("/v1/actions/{id}/acknowledge", post(acknowledge_action))
        .route("/v1/actions/{id}/assign", post(assign_action))
        .route("/v1/actions/{id}/resolve", post(resolve_action))
        .route("/v1/actions/{id}/reopen", post(reopen_action))
        .route("/v1/themes/{theme}/stats", get(theme_stats))
        // route_layer: only matched /v1 routes need the token, /metrics, probes, the
        // OpenAPI document and /ops (which signs in with a cookie) not.
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_token))
        .route("/openapi.json", get(openapi))
        .merge(crate::ops::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "Not found").detail("no such endpoint")
        })
        .with_state(ctx)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn require_token(State(ctx): State<Arc<Context>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &ctx.ops_token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        if !presented.is_some_and(|token| tokens_match(token, expected.expose())) {
            let mut response = Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized")
                .detail("send the ops token as `Authorization: Bearer <token>`")
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

fn to_action(ctx: &Context, row: &ActionRow) -> Result<Action, Problem> {
    Action::from_row(row, ctx.theme_name(&row.theme)).map_err(|error| {
        tracing::error!(%error, "stored action cannot be read");
        Problem::internal(error.to_string())
    })
}

fn invalid_query(pointer: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "Invalid query").errors(vec![FieldError {
        pointer: pointer.into(),
        detail: detail.into(),
    }])
}

fn query_rejection(rejection: QueryRejection) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "Invalid query").detail(rejection.body_text())
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
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIST_LIMIT,
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
            .ok_or_else(|| invalid_query("limit", format!("must be 1 to {MAX_LIST_LIMIT}")))?,
    };
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
    let actions = rows
        .iter()
        .map(|row| to_action(&ctx, row))
        .collect::<Result<_, _>>()?;
    Ok(Json(actions))
}

pub(crate) fn parse_action_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "Invalid action id")
            .detail(format!("{raw:?} is not a UUID"))
    })
}

fn action_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, Problem> {
    let Path(raw) = path.map_err(|rejection| {
        Problem::new(StatusCode::BAD_REQUEST, "Invalid action id").detail(rejection.body_text())
    })?;
    parse_action_id(&raw)
}

/// An action with its history, as the detail endpoint and the `/ops` page show it.
pub(crate) async fn action_detail(ctx: &Context, id: Uuid) -> Result<Action, Problem> {
    let row = ctx
        .store
        .action(&id.to_string())
        .await
        .map_err(|e| database_problem(&e))?
        .ok_or_else(|| workflow::TransitionError::NotFound(id).problem())?;
    let mut action = to_action(ctx, &row)?;
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

/// Decodes a JSON body: malformed JSON → 400, well-formed JSON of the wrong shape → 422
/// with a JSON pointer to the offending part.
fn decode<T: DeserializeOwned>(body: &[u8], title: &str) -> Result<T, Problem> {
    let malformed = |error: &serde_json::Error| {
        Problem::new(StatusCode::BAD_REQUEST, "Malformed JSON")
            .detail(format!("the body is not valid JSON: {error}"))
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(error) if error.inner().is_data() => {
            return Err(invalid_body(
                title,
                vec![FieldError {
                    pointer: json_pointer(error.path()),
                    detail: error.inner().to_string(),
                }],
            ));
        }
        Err(error) => return Err(malformed(error.inner())),
    };
    // Trailing garbage after the object makes the whole body malformed.
    deserializer.end().map_err(|error| malformed(&error))?;
    Ok(value)
}

fn invalid_body(title: &str, errors: Vec<FieldError>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, title)
        .detail(format!("{} field(s) are invalid", errors.len()))
        .errors(errors)
}

/// Collects field problems of a body.
#[derive(Default)]
pub(crate) struct Fields(pub Vec<FieldError>);

impl Fields {
    pub fn add(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.0.push(FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        });
    }

    /// A required, non-blank name (who did it, who it is assigned to), trimmed.
    pub fn name(&mut self, pointer: &str, value: Option<String>) -> String {
        let value = value.unwrap_or_default().trim().to_owned();
        if value.is_empty() {
            self.add(pointer, "is required");
        } else if value.chars().count() > MAX_NAME_CHARS {
            self.add(
                pointer,
                format!("must be at most {MAX_NAME_CHARS} characters"),
            );
        }
        value
    }

    /// An optional free text, trimmed; blank counts as absent.
    pub fn note(&mut self, pointer: &str, value: Option<String>) -> Option<String> {
        let value = value
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())?;
        if value.chars().count() > MAX_MESSAGE_CHARS {
            self.add(
                pointer,
                format!("must be at most {MAX_MESSAGE_CHARS} characters"),
            );
        }
        Some(value)
    }

    pub fn finish<T>(self, title: &str, value: T) -> Result<T, Problem> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(invalid_body(title, self.0))
        }
    }
}

/// A checked resolution request: `message.en` present, only `en`/`de`, nothing blank or
/// oversized.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolveRequest {
    pub message: BTreeMap<String, String>,
    pub resolved_by: String,
}

/// The body as sent, every field optional so that a missing one is reported with its
/// own pointer rather than as a generic decoding error.
#[derive(Debug, Deserialize)]
struct ResolveBody {
    message: Option<BTreeMap<String, String>>,
    resolved_by: Option<String>,
}

/// Checks a resolution's message and author (shared with the `/ops` form).
pub(crate) fn check_resolution(
    message: Option<BTreeMap<String, String>>,
    resolved_by: Option<String>,
) -> Result<ResolveRequest, Problem> {
    let mut fields = Fields::default();
    let mut checked = BTreeMap::new();
    match message {
        None => fields.add("/message", "is required"),
        Some(given) => {
            if !given.contains_key("en") {
                fields.add("/message/en", "is required");
            }
            for (language, text) in given {
                let pointer = format!("/message/{}", escape_pointer(&language));
                if !LANGUAGES.contains(&language.as_str()) {
                    fields.add(pointer, "only `en` and `de` are supported");
                } else if text.trim().is_empty() {
                    fields.add(pointer, "must not be blank");
                } else if text.chars().count() > MAX_MESSAGE_CHARS {
                    fields.add(
                        pointer,
                        format!("must be at most {MAX_MESSAGE_CHARS} characters"),
                    );
                } else {
                    checked.insert(language, text.trim().to_owned());
                }
            }
        }
    }
    let resolved_by = fields.name("/resolved_by", resolved_by);
    fields.finish(
        "Invalid resolution",
        ResolveRequest {
            message: checked,
            resolved_by,
        },
    )
}

/// Parses and checks a resolve body: malformed JSON → 400, well-formed JSON of the wrong
/// shape or content → 422 with a JSON pointer per problem.
pub fn parse_resolve(body: &[u8]) -> Result<ResolveRequest, Problem> {
    let body: ResolveBody = decode(body, "Invalid resolution")?;
    check_resolution(body.message, body.resolved_by)
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(escape_pointer(key)),
            Segment::Enum { variant } => Some(escape_pointer(variant)),
            Segment::Unknown => None,
        })
        .fold(String::new(), |pointer, part| pointer + "/" + &part)
}

/// RFC 6901 escaping of one reference token.
fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        Problem::new(rejection.status(), "Unreadable body").detail(rejection.body_text())
    })
}

async fn resolve_action(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Action>, Problem> {
    let id = action_id(path)?;
    let request = parse_resolve(&read_body(body)?)?;
    let action = workflow::resolve(&ctx, id, request.message, &request.resolved_by)
        .await
        .map_err(|e| e.problem())?;
    Ok(Json(action))
}

#[derive(Debug, Deserialize)]
struct AcknowledgeBody {
    acknowledged_by: Option<String>,
}

async fn acknowledge_action(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Action>, Problem> {
    let id = action_id(path)?;
    let body: AcknowledgeBody = decode(&read_body(body)?, "Invalid acknowledgement")?;
    let mut fields = Fields::default();
    let by = fields.name("/acknowledged_by", body.acknowledged_by);
    let by = fields.finish("Invalid acknowledgement", by)?;
    let action = workflow::acknowledge(&ctx, id, &by, None)
        .await
        .map_err(|e| e.problem())?;
    Ok(Json(action))
}

#[derive(Debug, Deserialize)]
struct AssignBody {
    assignee: Option<String>,
    assigned_by: Option<String>,
}

async fn assign_action(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Action>, Problem> {
    let id = action_id(path)?;
    let body: AssignBody = decode(&read_body(body)?, "Invalid assignment")?;
    let mut fields = Fields::default();
    let assignee = fields.name("/assignee", body.assignee);
    let by = fields.name("/assigned_by", body.assigned_by);
    let (assignee, by) = fields.finish("Invalid assignment", (assignee, by))?;
    let action = workflow::acknowledge(&ctx, id, &by, Some(&assignee))
        .await
        .map_err(|e| e.problem())?;
    Ok(Json(action))
}

#[derive(Debug, Deserialize)]
struct ReopenBody {
    reopened_by: Option<String>,
    reason: Option<String>,
}

async fn reopen_action(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Action>, Problem> {
    let id = action_id(path)?;
    let body: ReopenBody = decode(&read_body(body)?, "Invalid reopen")?;
    let mut fields = Fields::default();
    let by = fields.name("/reopened_by", body.reopened_by);
    let reason = fields.note("/reason", body.reason);
    let (by, reason) = fields.finish("Invalid reopen", (by, reason))?;
    let action = workflow::reopen(&ctx, id, &by, reason.as_deref())
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
    pub dropped_late: u64,
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
        Problem::new(StatusCode::BAD_REQUEST, "Invalid theme").detail(rejection.body_text())
    })?;
    check_theme(&theme)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "Invalid theme").detail(e))?;
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
        dropped_late: stats.dropped_late,
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

    fn pointers(problem: &Problem) -> Vec<&str> {
        problem.errors.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn a_valid_resolution_is_trimmed_and_kept() {
        let request = parse_resolve(
            br#"{"message": {"en": " Second carrier added. ", "de": "Zweiter Versender."},
                 "resolved_by": "ops@example.com", "ignored": true}"#,
        )
        .expect("valid");
        assert_eq!(request.message["en"], "Second carrier added.");
        assert_eq!(request.message["de"], "Zweiter Versender.");
        assert_eq!(request.resolved_by, "ops@example.com");
        assert!(parse_resolve(br#"{"message": {"en": "x"}, "resolved_by": "me"}"#).is_ok());
    }

    #[test]
    fn malformed_json_is_a_400() {
        for body in [
            &b"{not json"[..],
            b"",
            b"{\"message\": {\"en\": \"x\"}} trailing",
            b"\xff",
        ] {
            let problem = parse_resolve(body).expect_err("malformed");
            assert_eq!(problem.status, 400, "{body:?}");
        }
    }

    #[test]
    fn wrong_types_are_a_422_with_a_pointer() {
        let problem = parse_resolve(br#"{"message": {"en": 5}, "resolved_by": "me"}"#)
            .expect_err("wrong type");
        assert_eq!(problem.status, 422);
        assert_eq!(pointers(&problem), ["/message/en"]);
        let problem = parse_resolve(br#"["not", "an", "object"]"#).expect_err("wrong type");
        assert_eq!(problem.status, 422);
    }

    #[test]
    fn content_rules_are_a_422_listing_every_field() {
        let problem = parse_resolve(br#"{"message": {"de": "Nur Deutsch"}}"#).expect_err("no en");
        assert_eq!(problem.status, 422);
        assert_eq!(pointers(&problem), ["/message/en", "/resolved_by"]);

        let problem =
            parse_resolve(br#"{"message": {"en": "  ", "fr": "Bonjour"}, "resolved_by": "me"}"#)
                .expect_err("blank en, unknown language");
        assert_eq!(pointers(&problem), ["/message/en", "/message/fr"]);

        let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        let body = serde_json::json!({"message": {"en": "ok", "de": long}, "resolved_by": "me"});
        let problem = parse_resolve(body.to_string().as_bytes()).expect_err("too long");
        assert_eq!(pointers(&problem), ["/message/de"]);
        let exactly = "ü".repeat(MAX_MESSAGE_CHARS);
        let body = serde_json::json!({"message": {"en": exactly}, "resolved_by": "me"});
        assert!(
            parse_resolve(body.to_string().as_bytes()).is_ok(),
            "2000 characters, not bytes"
        );

        let problem = parse_resolve(br#"{"resolved_by": "me"}"#).expect_err("no message");
        assert_eq!(pointers(&problem), ["/message"]);
    }

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
                "/v1/themes/{theme}/stats",
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

    #[test]
    fn acknowledge_and_reopen_bodies_are_checked() {
        let mut fields = Fields::default();
        assert_eq!(fields.name("/by", Some("  ops ".into())), "ops");
        assert_eq!(fields.note("/reason", Some("   ".into())), None);
        assert!(fields.0.is_empty());
        fields.name("/by", None);
        fields.name("/assignee", Some("x".repeat(MAX_NAME_CHARS + 1)));
        let problem = fields.finish("Invalid", ()).expect_err("two problems");
        assert_eq!(problem.status, 422);
        assert_eq!(pointers(&problem), ["/by", "/assignee"]);
        let wrong: Result<AssignBody, _> = decode(br#"{"assignee": 3}"#, "Invalid assignment");
        assert_eq!(pointers(&wrong.expect_err("wrong type")), ["/assignee"]);
    }
}
