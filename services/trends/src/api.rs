//! The ops API: list and read actions, resolve them with the "we did" message that notify
//! sends to the customers who complained. Every error is an RFC 9457 problem, including
//! malformed bodies (parsed here from raw bytes, not by axum's plain-text extractors).

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
use chrono::Utc;
use closeloop_events::{ActionEventKind, ActionStatus, Envelope, Resolution};
use closeloop_telemetry::problem::FieldError;
use closeloop_telemetry::Problem;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::action::{time, Action};
use crate::store::{ActionFilter, ActionRow};
use crate::Context;

/// Longest accepted resolution message, per language.
pub const MAX_MESSAGE_CHARS: usize = 2000;
const MAX_RESOLVED_BY_CHARS: usize = 200;
/// Resolution bodies are a few kilobytes at most.
const MAX_BODY_BYTES: usize = 64 * 1024;
const DEFAULT_LIST_LIMIT: i64 = 100;
const MAX_LIST_LIMIT: i64 = 500;
/// Languages customers are told in; notify knows no others.
const LANGUAGES: [&str; 2] = ["en", "de"];

pub(crate) fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/v1/actions", get(list_actions))
        .route("/v1/actions/{id}", get(get_action))
        .route("/v1/actions/{id}/resolve", post(resolve_action))
        // route_layer: only matched /v1 routes need the token, /metrics and probes not.
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_token))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "Not found").detail("no such endpoint")
        })
        .with_state(ctx)
}

async fn require_token(State(ctx): State<Arc<Context>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &ctx.ops_token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        if !presented.is_some_and(|token| tokens_match(token, expected)) {
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

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Constant time in the token's content, so response timing does not reveal how much
/// of a guess was right (the length may leak; it is not the secret part).
fn tokens_match(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

fn database_problem(error: closeloop_store::sqlx::Error) -> Problem {
    tracing::error!(%error, "database error in ops API");
    if closeloop_store::is_transient(&error) {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Database unavailable")
            .detail("the database is busy or unreachable; try again shortly")
            .retry_after(5)
    } else {
        Problem::internal("database error")
    }
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

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    theme: Option<String>,
    limit: Option<String>,
}

async fn list_actions(
    State(ctx): State<Arc<Context>>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<Action>>, Problem> {
    let Query(params) = query.map_err(|rejection| {
        Problem::new(StatusCode::BAD_REQUEST, "Invalid query").detail(rejection.body_text())
    })?;
    let status = match params.status.as_deref() {
        None => None,
        Some(status @ ("open" | "resolved")) => Some(status.to_owned()),
        Some(_) => return Err(invalid_query("status", "must be `open` or `resolved`")),
    };
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
        limit,
    };
    let rows = ctx.store.actions(&filter).await.map_err(database_problem)?;
    let actions = rows
        .iter()
        .map(|row| to_action(&ctx, row))
        .collect::<Result<_, _>>()?;
    Ok(Json(actions))
}

fn action_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, Problem> {
    let Path(raw) = path.map_err(|rejection| {
        Problem::new(StatusCode::BAD_REQUEST, "Invalid action id").detail(rejection.body_text())
    })?;
    Uuid::parse_str(&raw).map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "Invalid action id")
            .detail(format!("{raw:?} is not a UUID"))
    })
}

fn not_found(id: Uuid) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "Action not found").detail(format!("no action {id}"))
}

async fn get_action(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Action>, Problem> {
    let id = action_id(path)?;
    let row = ctx
        .store
        .action(&id.to_string())
        .await
        .map_err(database_problem)?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(to_action(&ctx, &row)?))
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

/// Parses and checks a resolve body: malformed JSON → 400, well-formed JSON of the wrong
/// shape or content → 422 with a JSON pointer per problem.
pub fn parse_resolve(body: &[u8]) -> Result<ResolveRequest, Problem> {
    let malformed = |error: &serde_json::Error| {
        Problem::new(StatusCode::BAD_REQUEST, "Malformed JSON")
            .detail(format!("the body is not valid JSON: {error}"))
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let body: ResolveBody = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(body) => body,
        Err(error) if error.inner().is_data() => {
            return Err(invalid_resolution(vec![FieldError {
                pointer: json_pointer(error.path()),
                detail: error.inner().to_string(),
            }]));
        }
        Err(error) => return Err(malformed(error.inner())),
    };
    // Trailing garbage after the object makes the whole body malformed.
    deserializer.end().map_err(|error| malformed(&error))?;

    let mut errors = Vec::new();
    let mut field = |pointer: String, detail: &str| {
        errors.push(FieldError {
            pointer,
            detail: detail.to_owned(),
        })
    };
    let mut message = BTreeMap::new();
    match body.message {
        None => field("/message".into(), "is required"),
        Some(given) => {
            if !given.contains_key("en") {
                field("/message/en".into(), "is required");
            }
            for (language, text) in given {
                let pointer = format!("/message/{}", escape_pointer(&language));
                if !LANGUAGES.contains(&language.as_str()) {
                    field(pointer, "only `en` and `de` are supported");
                } else if text.trim().is_empty() {
                    field(pointer, "must not be blank");
                } else if text.chars().count() > MAX_MESSAGE_CHARS {
                    field(pointer, "must be at most 2000 characters");
                } else {
                    message.insert(language, text.trim().to_owned());
                }
            }
        }
    }
    let resolved_by = body.resolved_by.unwrap_or_default().trim().to_owned();
    if resolved_by.is_empty() {
        field("/resolved_by".into(), "is required");
    } else if resolved_by.chars().count() > MAX_RESOLVED_BY_CHARS {
        field("/resolved_by".into(), "must be at most 200 characters");
    }
    if errors.is_empty() {
        Ok(ResolveRequest {
            message,
            resolved_by,
        })
    } else {
        Err(invalid_resolution(errors))
    }
}

fn invalid_resolution(errors: Vec<FieldError>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid resolution")
        .detail(format!("{} field(s) are invalid", errors.len()))
        .errors(errors)
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

async fn resolve_action(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Action>, Problem> {
    let id = action_id(path)?;
    let body = body.map_err(|rejection| {
        Problem::new(rejection.status(), "Unreadable body").detail(rejection.body_text())
    })?;
    let request = parse_resolve(&body)?;

    // Serialised with the consumer's raise/update, so the window cleared below cannot be
    // refilled by a handler that read it just before.
    let _transition = ctx.transitions.lock().await;
    let store = &ctx.store;
    let row = store
        .action(&id.to_string())
        .await
        .map_err(database_problem)?
        .ok_or_else(|| not_found(id))?;
    let already_resolved = || {
        Problem::new(StatusCode::CONFLICT, "Already resolved")
            .detail(format!("action {id} is already resolved"))
    };
    if row.status != ActionStatus::Open.as_str() {
        return Err(already_resolved());
    }
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let resolution = Resolution {
        message: request.message,
        resolved_by: request.resolved_by,
        resolved_at: time(now_ms),
    };
    let resolution_json =
        serde_json::to_string(&resolution).map_err(|error| Problem::internal(error.to_string()))?;
    if !store
        .resolve_action(&row.action_id, &resolution_json, now_ms)
        .await
        .map_err(database_problem)?
    {
        return Err(already_resolved());
    }
    let mut action = to_action(&ctx, &row)?;
    action.status = ActionStatus::Resolved;
    action.updated_at = time(now_ms);
    action.resolution = Some(resolution);

    let envelope = Envelope::new(action.event(ActionEventKind::Resolved));
    if let Err(error) = ctx.publisher.publish(&envelope, None).await {
        // Customers must not miss the message: leave the action open so the operator
        // can resolve it again once the broker is back.
        tracing::warn!(action_id = %id, %error, "resolved event not acknowledged, reopening");
        if let Err(db) = store.reopen_action(&row.action_id, row.updated_at_ms).await {
            tracing::error!(action_id = %id, error = %db, "could not reopen the action");
        }
        return Err(
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Event bus unavailable")
                .detail("the resolution could not be published; the action stays open")
                .retry_after(5),
        );
    }

    ctx.detection().resolved(&row.theme, now_ms);
    ctx.metrics.closed(&row.theme);
    ctx.metrics.event("resolved");
    tracing::info!(action_id = %id, theme = %row.theme, "action resolved");
    Ok(Json(action))
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
    fn bearer_tokens_are_compared_exactly() {
        assert_eq!(bearer_token("Bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_token("bearer  s3cret "), Some("s3cret"));
        assert_eq!(bearer_token("Basic s3cret"), None);
        assert_eq!(bearer_token("s3cret"), None);
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cre", "s3cret"));
        assert!(!tokens_match("s3creT", "s3cret"));
    }
}
