//! The HTTP API: `POST /v1/feedback`, `POST /v1/feedback/batch`, `POST /v1/erasure`,
//! `PUT /v1/customers/{customer_id}/preferences`. Every request either publishes all of
//! its events and answers 202, or publishes none and answers a problem.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use closeloop_bus::Publisher;
use closeloop_events::{
    CustomerPreferences, DeliveryChannel, Envelope, ErasureRequest, ErasureScope, Feedback,
};
use closeloop_http::{
    parse_json, read_json_body, read_json_body_inflating, JsonObject, Problem, ProblemType,
};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;

use crate::config::SourceKey;
use crate::event_ids::EventIds;
use crate::idempotency::{Claim, Idempotency};
use crate::metrics::IngestMetrics;
use crate::submission::{language_tag, BatchSubmission, Limits, Submission};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";

pub struct ApiState {
    pub keys: Vec<SourceKey>,
    /// Keys whose erasures reach every source; they may also set a customer's
    /// preferences, and can do nothing else.
    pub admin_keys: Vec<SourceKey>,
    pub publisher: Publisher,
    pub idempotency: Idempotency,
    pub event_ids: EventIds,
    pub limits: Limits,
    /// The body limit, applied again to a gzip body after inflating it.
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub metrics: IngestMetrics,
    /// `None` when the limit is off.
    pub(crate) rate_limit: Option<closeloop_runtime::RateLimiter>,
}

pub fn routes(state: Arc<ApiState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            "/v1/feedback",
            post(post_feedback).fallback(method_not_allowed),
        )
        .route(
            "/v1/feedback/batch",
            post(post_batch).fallback(method_not_allowed),
        )
        .route(
            "/v1/erasure",
            post(post_erasure).fallback(method_not_allowed),
        )
        .route(
            "/v1/customers/{customer_id}/preferences",
            put(put_preferences).fallback(method_not_allowed_put),
        )
        .fallback(not_found)
        .layer(closeloop_http::BodyLimit::max(max_body_bytes))
        .with_state(state)
}

// Even the router's own answers are problem+json, so a client has one error format.
async fn method_not_allowed(State(state): State<Arc<ApiState>>) -> Response {
    only_method(&state, "POST")
}

async fn method_not_allowed_put(State(state): State<Arc<ApiState>>) -> Response {
    only_method(&state, "PUT")
}

/// 405 naming, in `Allow` and the detail, the one method the endpoint takes.
fn only_method(state: &ApiState, method: &'static str) -> Response {
    let response = state.metrics.reject(
        Problem::new(ProblemType::MethodNotAllowed)
            .detail(format!("this endpoint only takes {method}")),
    );
    ([(header::ALLOW, method)], response).into_response()
}

async fn not_found(State(state): State<Arc<ApiState>>) -> Response {
    let detail = "no such endpoint: POST /v1/feedback, /v1/feedback/batch or /v1/erasure, \
                  PUT /v1/customers/{customer_id}/preferences";
    state
        .metrics
        .reject(Problem::new(ProblemType::NotFound).detail(detail))
}

/// The 202 answer: the ids of the accepted events, in request order.
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    pub accepted: usize,
    pub event_ids: Vec<Uuid>,
    /// How many of them ingest had accepted before with the same content (a retry, an
    /// import run again): published again and deduplicated downstream, so no new
    /// events. Absent from answers stored before it was counted.
    #[serde(default)]
    pub duplicates: usize,
}

async fn post_feedback(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    accept(&state, &headers, body, Shape::Single)
        .await
        .unwrap_or_else(|problem| state.metrics.reject(problem))
}

async fn post_batch(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    accept(&state, &headers, body, Shape::Batch)
        .await
        .unwrap_or_else(|problem| state.metrics.reject(problem))
}

/// Which feedback endpoint a body was posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `POST /v1/feedback`: one [`Submission`].
    Single,
    /// `POST /v1/feedback/batch`: a [`BatchSubmission`].
    Batch,
}

impl Shape {
    fn as_str(self) -> &'static str {
        match self {
            Shape::Single => "single",
            Shape::Batch => "batch",
        }
    }
}

/// Parses and validates a feedback request body into the events to publish, or the problem
/// to answer (nothing half-way). Pure (no I/O, `now` given), so the fuzzer calls exactly
/// the code the endpoints run (fuzz/fuzz_targets/ingest_request.rs).
pub fn parse_feedback_body(
    shape: Shape,
    body: &[u8],
    source: &str,
    now: DateTime<Utc>,
    limits: &Limits,
    max_batch: usize,
) -> Result<Vec<Feedback>, Problem> {
    let submissions = match shape {
        // Objects only: serde alone would also take a struct's fields as an array.
        Shape::Single => vec![parse_json::<JsonObject<Submission>>(body)?.0],
        Shape::Batch => parse_json::<JsonObject<BatchSubmission>>(body)?
            .0
            .items
            .into_iter()
            .map(|item| item.0)
            .collect(),
    };
    if submissions.is_empty() {
        return Err(Problem::new(ProblemType::InvalidBody)
            .detail("a batch needs at least one item in `items`"));
    }
    if submissions.len() > max_batch {
        return Err(Problem::new(ProblemType::InvalidBody).detail(format!(
            "a batch may carry at most {max_batch} items; this one has {}",
            submissions.len()
        )));
    }
    let mut feedback = Vec::with_capacity(submissions.len());
    let mut errors = Vec::new();
    for (index, submission) in submissions.into_iter().enumerate() {
        let prefix = match shape {
            Shape::Single => String::new(),
            Shape::Batch => format!("/items/{index}"),
        };
        match submission.into_feedback(source, now, limits, &prefix) {
            Ok(item) => feedback.push(item),
            Err(mut item_errors) => errors.append(&mut item_errors),
        }
    }
    // Two items with one event id would be answered as two accepted events while
    // downstream keeps one: refuse, like any other invalid item.
    let mut seen = std::collections::HashSet::with_capacity(feedback.len());
    if errors.is_empty() {
        for (index, item) in feedback.iter().enumerate() {
            if !seen.insert(item.feedback_id) {
                errors.push(Problem::field(
                    format!("/items/{index}/event_id"),
                    "repeats the event_id of an earlier item",
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(Problem::new(ProblemType::InvalidBody)
            .detail(format!(
                "{} field(s) are invalid; nothing was accepted",
                errors.len()
            ))
            .errors(errors));
    }
    Ok(feedback)
}

/// The shared path of both feedback endpoints.
async fn accept(
    state: &ApiState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    shape: Shape,
) -> Result<Response, Problem> {
    let source = authenticate(&state.keys, headers)?;
    let body = read_json_body_inflating(headers, body, state.max_body_bytes)?;
    let now = Utc::now();
    let mut feedback =
        parse_feedback_body(shape, &body, source, now, &state.limits, state.max_batch)?;

    let idempotency_key = idempotency_key(headers)?;
    // After validation (the cost is the number of events) and before the idempotency
    // claim (a 429 leaves nothing behind that would block the retry).
    check_rate(state, source, feedback.len())?;
    if let Some(key) = &idempotency_key {
        let hash = format!("{}:{:x}", shape.as_str(), Sha256::digest(&body));
        let ids: Vec<Uuid> = feedback.iter().map(|f| f.feedback_id).collect();
        let claim = state
            .idempotency
            .claim(source, key, &hash, &ids, now.timestamp_millis())
            .await
            .map_err(database_problem)?;
        match claim {
            Claim::New => {}
            Claim::TakeOver(original_ids) => {
                for (item, id) in feedback.iter_mut().zip(original_ids) {
                    item.feedback_id = id;
                }
            }
            Claim::Replay(response) => {
                let mut response = (
                    StatusCode::ACCEPTED,
                    [(header::CONTENT_TYPE, "application/json")],
                    response,
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(REPLAYED, HeaderValue::from_static("true"));
                return Ok(response);
            }
            Claim::Mismatch => {
                return Err(Problem::new(ProblemType::IdempotencyKeyReused)
                    .detail("this Idempotency-Key was used before with a different request body"))
            }
            Claim::InProgress => {
                return Err(Problem::new(ProblemType::RequestInProgress).detail(
                    "a request with this Idempotency-Key is being processed; retry shortly",
                ))
            }
        }
    }

    // Before publishing: one event id names one event, whichever source sends it.
    let recorded = match state
        .event_ids
        .record(&feedback, now.timestamp_millis())
        .await
    {
        Ok(recorded) => recorded,
        Err(error) => {
            release(state, source, idempotency_key.as_deref()).await;
            return Err(database_problem(error));
        }
    };
    let conflicts = recorded.conflicts;
    if !conflicts.is_empty() {
        // Nothing was published: the key is free for a corrected request.
        release(state, source, idempotency_key.as_deref()).await;
        let errors = conflicts
            .iter()
            .map(|&index| {
                let pointer = match shape {
                    Shape::Single => "/event_id".to_owned(),
                    Shape::Batch => format!("/items/{index}/event_id"),
                };
                Problem::field(pointer, "was accepted before with other content")
            })
            .collect();
        return Err(Problem::new(ProblemType::EventIdConflict)
            .detail(format!(
                "{} event id(s) were accepted before with other content; an event id names one event. Nothing was accepted",
                conflicts.len()
            ))
            .errors(errors));
    }

    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| closeloop_bus::is_valid_traceparent(v))
        .map(str::to_owned)
        .unwrap_or_else(closeloop_bus::new_traceparent);
    // The broker round trip as a span of the feedback's trace (exported with `otlp`).
    let span = tracing::info_span!("publish", trace_id = closeloop_bus::trace_id(&traceparent));
    closeloop_telemetry::continue_trace(&span, &traceparent);
    let published = publish_all(&state.publisher, &feedback, &traceparent)
        .instrument(span)
        .await;
    if let Err(reason) = published {
        // Some events may have reached the broker. The key keeps its event ids, so a retry
        // with it republishes those ids (deduped downstream) rather than new ones. A
        // client with neither Idempotency-Key nor event_id gets new ids on retry.
        if let Some(key) = &idempotency_key {
            if let Err(error) = state
                .idempotency
                .fail(source, key, Utc::now().timestamp_millis())
                .await
            {
                tracing::error!(%error, "could not mark the idempotent request failed");
            }
        }
        tracing::warn!(%reason, source, "broker did not acknowledge");
        return Err(Problem::new(ProblemType::BrokerUnavailable).detail(
            "the feedback could not be stored durably; retry later with the same Idempotency-Key or event ids, so nothing is doubled",
        ));
    }

    let answer = Accepted {
        accepted: feedback.len(),
        event_ids: feedback.iter().map(|f| f.feedback_id).collect(),
        duplicates: recorded.known,
    };
    let answer = serde_json::to_string(&answer).map_err(|e| Problem::internal(e.to_string()))?;
    if let Some(key) = &idempotency_key {
        // The events are in Kafka already; failing to remember the answer only means a
        // retry re-publishes the same ids, which downstream dedupes.
        if let Err(error) = state
            .idempotency
            .complete(source, key, &answer, Utc::now().timestamp_millis())
            .await
        {
            tracing::error!(%error, "could not store idempotent answer");
        }
    }
    for item in &feedback {
        state.metrics.accepted(source, item.channel.as_str());
    }
    tracing::info!(
        source,
        count = feedback.len(),
        trace_id = closeloop_bus::trace_id(&traceparent),
        "feedback accepted"
    );
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response())
}

/// Gives the idempotency key back after a refusal that published nothing.
async fn release(state: &ApiState, source: &str, key: Option<&str>) {
    if let Some(key) = key {
        if let Err(error) = state.idempotency.release(source, key).await {
            tracing::error!(%error, "could not release idempotency key");
        }
    }
}

/// Publishes every event and waits for all acknowledgements. All produce calls are in
/// flight together (librdkafka batches them on the wire), so a batch of n items costs
/// about one broker round trip, not n; the caller answers 202 only if every one was acked.
async fn publish_all(
    publisher: &Publisher,
    feedback: &[Feedback],
    traceparent: &str,
) -> Result<(), String> {
    let envelopes: Vec<Envelope<Feedback>> = feedback
        .iter()
        .map(|item| Envelope::with_id(item.feedback_id, item.given_at, item.clone()))
        .collect();
    let results = join_all(
        envelopes
            .iter()
            .map(|envelope| publisher.publish(envelope, Some(traceparent))),
    )
    .await;
    match results.into_iter().find_map(Result::err) {
        Some(error) => Err(error.to_string()),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureBody {
    customer_id: String,
}

async fn post_erasure(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let (source, scope) = erasure_scope(&state.keys, &state.admin_keys, &headers)?;
        let body = read_json_body(&headers, body)?;
        let JsonObject(request): JsonObject<ErasureBody> = parse_json(&body)?;
        check_rate(&state, source, 1)?;
        // The spelling feedback is stored under (NFC), so either spelling erases it.
        let customer_id =
            crate::submission::customer_id(&request.customer_id).map_err(|detail| {
                Problem::new(ProblemType::InvalidBody)
                    .detail("customer_id is invalid; nothing was accepted")
                    .errors(vec![Problem::field("/customer_id", detail)])
            })?;
        let envelope = Envelope::new(ErasureRequest {
            customer_id,
            source: source.to_owned(),
            requested_at: Utc::now(),
            scope,
        });
        state
            .publisher
            .publish(&envelope, None)
            .await
            .map_err(|_| {
                Problem::new(ProblemType::BrokerUnavailable)
                    .detail("the erasure request could not be stored; retry later")
            })?;
        Ok((
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "event_id": envelope.event_id })),
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(|problem| state.metrics.reject(problem))
}

/// Who asks for an erasure and what it reaches: a source's key erases what came through
/// that source; an admin key, the customer's data from every source.
fn erasure_scope<'a>(
    keys: &'a [SourceKey],
    admin_keys: &'a [SourceKey],
    headers: &HeaderMap,
) -> Result<(&'a str, ErasureScope), Problem> {
    match authenticate(admin_keys, headers) {
        Ok(admin) => Ok((admin, ErasureScope::All)),
        Err(_) => Ok((authenticate(keys, headers)?, ErasureScope::Source)),
    }
}

/// The path parameter naming the customer in `PUT /v1/customers/{customer_id}/preferences`,
/// and the pointer of its field error: the name erasure gives the same id in its body.
const CUSTOMER_ID_PARAM: &str = "customer_id";

/// The body of `PUT /v1/customers/{customer_id}/preferences`, exactly as sent. `consent`
/// is required but optional here, so that a missing one is pointed at (`/consent`) along
/// with every other invalid field rather than reported as a decoding error of the whole.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreferencesBody {
    #[serde(default)]
    consent: Option<bool>,
    /// `None` (absent or null): any channel.
    #[serde(default)]
    channels: Option<Vec<DeliveryChannel>>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    unsubscribed: Option<bool>,
}

async fn put_preferences(
    State(state): State<Arc<ApiState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let source = preferences_setter(&state.keys, &state.admin_keys, &headers)?;
        // Percent-decoded by axum (an id with `/` arrives as `%2F`); not UTF-8 is refused.
        let Path(raw_id) = path.map_err(|rejection| {
            Problem::new(ProblemType::InvalidParameter)
                .detail("the customer id in the path is invalid; nothing was accepted")
                .errors(vec![Problem::field(
                    CUSTOMER_ID_PARAM,
                    rejection.body_text(),
                )])
        })?;
        let customer_id = preferences_customer_id(&raw_id)?;
        let body = read_json_body(&headers, body)?;
        let preferences = parse_preferences_body(&body, customer_id, source, Utc::now())?;
        check_rate(&state, source, 1)?;
        let envelope = Envelope::new(preferences);
        state
            .publisher
            .publish(&envelope, None)
            .await
            .map_err(|error| {
                tracing::warn!(%error, source, "broker did not acknowledge");
                // A whole record, newest `updated_at` wins: sending it again is safe.
                Problem::new(ProblemType::BrokerUnavailable).detail(
                    "the preferences could not be stored; retry later with the same request",
                )
            })?;
        tracing::info!(source, event_id = %envelope.event_id, "preferences accepted");
        Ok((
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "event_id": envelope.event_id,
                "customer_id": envelope.data.customer_id,
            })),
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(|problem| state.metrics.reject(problem))
}

/// Who sets a customer's preferences: a source's key, or an admin key (the privacy team
/// answering a customer known to several sources, as with erasures). The record's
/// `source` is the key's name.
fn preferences_setter<'a>(
    keys: &'a [SourceKey],
    admin_keys: &'a [SourceKey],
    headers: &HeaderMap,
) -> Result<&'a str, Problem> {
    authenticate(keys, headers).or_else(|_| authenticate(admin_keys, headers))
}

/// The customer id of a preferences path as feedback is keyed by it (trimmed, NFC), so
/// either spelling reaches the same customer; a 400 pointing at the path parameter when
/// it is no valid id.
pub fn preferences_customer_id(raw: &str) -> Result<String, Problem> {
    crate::submission::customer_id(raw).map_err(|detail| {
        Problem::new(ProblemType::InvalidParameter)
            .detail("the customer id in the path is invalid; nothing was accepted")
            .errors(vec![Problem::field(CUSTOMER_ID_PARAM, detail)])
    })
}

/// Parses and validates a preferences body into the record to publish, or the problem to
/// answer with a pointer per invalid field. Pure (`now` given), like
/// [`parse_feedback_body`].
pub fn parse_preferences_body(
    body: &[u8],
    customer_id: String,
    source: &str,
    now: DateTime<Utc>,
) -> Result<CustomerPreferences, Problem> {
    let JsonObject(body): JsonObject<PreferencesBody> = parse_json(body)?;
    let mut errors = Vec::new();
    if body.consent.is_none() {
        errors.push(Problem::field("/consent", "is required: true or false"));
    }
    if let Some(channels) = &body.channels {
        // Refused, not read as "never": `consent` and `unsubscribed` already say that,
        // and an empty list is as likely a client's filter that matched nothing, which
        // would silently cut the customer off.
        if channels.is_empty() {
            errors.push(Problem::field(
                "/channels",
                "must name at least one channel (email, webhook): to stop messages, send \
                 \"consent\": false or \"unsubscribed\": true; for any channel, leave \
                 channels out or send null",
            ));
        }
        for (index, channel) in channels.iter().enumerate() {
            if channels[..index].contains(channel) {
                errors.push(Problem::field(
                    format!("/channels/{index}"),
                    format!("repeats {}: name each channel once", channel.as_str()),
                ));
            }
        }
    }
    let language = match body.language.as_deref().map(language_tag) {
        Some(Err(detail)) => {
            errors.push(Problem::field("/language", detail));
            None
        }
        Some(Ok(tag)) => Some(tag),
        None => None,
    };
    match body.consent {
        Some(consent) if errors.is_empty() => Ok(CustomerPreferences {
            customer_id,
            source: source.to_owned(),
            updated_at: now,
            consent,
            channels: body.channels,
            language,
            unsubscribed: body.unsubscribed.unwrap_or(false),
        }),
        _ => Err(Problem::new(ProblemType::InvalidBody)
            .detail(format!(
                "{} field(s) are invalid; nothing was accepted",
                errors.len()
            ))
            .errors(errors)),
    }
}

/// Takes `events` from the source's rate limit, or answers 429.
fn check_rate(state: &ApiState, source: &str, events: usize) -> Result<(), Problem> {
    let Some(limiter) = &state.rate_limit else {
        return Ok(());
    };
    let cost = u32::try_from(events).unwrap_or(u32::MAX);
    limiter.try_acquire(source, cost).map_err(|wait| {
        // Whole seconds, rounded up: a client that waits that long gets through.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Problem::new(ProblemType::RateLimited)
            .detail(format!(
                "source {source} sent more events than its rate limit allows; nothing was accepted, retry in {seconds} s"
            ))
            .retry_after(seconds.max(1))
    })
}

/// The source whose API key the request carries. Every configured key is compared, in
/// constant time, so the response time tells nothing about which key nearly matched.
fn authenticate<'a>(keys: &'a [SourceKey], headers: &HeaderMap) -> Result<&'a str, Problem> {
    let unauthorized =
        |detail: &str| Problem::new(ProblemType::Unauthorized).detail(detail.to_owned());
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(closeloop_http::bearer_token)
        .ok_or_else(|| unauthorized("send `Authorization: Bearer <API key of your source>`"))?;
    let mut matched = None;
    for source_key in keys {
        if source_key.key.matches(presented) {
            matched = Some(source_key.source.as_str());
        }
    }
    matched.ok_or_else(|| unauthorized("the API key is not valid for any source"))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    // Visible ASCII and spaces only: no tab or other control character reaches a log.
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(Problem::new(ProblemType::InvalidHeader)
            .detail("the Idempotency-Key header must be 1 to 255 visible ASCII characters"));
    }
    Ok(Some(key.to_owned()))
}

fn database_problem(error: closeloop_store::sqlx::Error) -> Problem {
    Problem::from_database_error(&error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422() {
        let problem = parse_json::<Submission>(b"{\"text\": ").unwrap_err();
        assert_eq!(problem.status, 400);
        let problem = parse_json::<Submission>(
            br#"{"channel":"chat","customer":{"id":"c"},"text":"x","rating":"five"}"#,
        )
        .unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].pointer, "/rating");
        let problem = parse_json::<serde_json::Value>(b"{} {}").unwrap_err();
        assert_eq!(problem.status, 400, "one JSON value, nothing after it");
        assert!(parse_json::<serde_json::Value>(b" {}\n").is_ok());
    }

    #[test]
    fn parse_feedback_body_takes_objects_only() {
        let parse = |shape, body: &str| {
            parse_feedback_body(
                shape,
                body.as_bytes(),
                "shopdesk",
                Utc::now(),
                &Limits::default(),
                10,
            )
        };
        let item = r#"{"channel":"chat","customer":{"id":"c"},"text":"late"}"#;
        let positional = r#"[null,null,"chat",null,["c"],"late"]"#;
        assert!(parse(Shape::Single, item).is_ok());
        assert_eq!(parse(Shape::Single, positional).unwrap_err().status, 422);
        let problem = parse(
            Shape::Batch,
            &format!(r#"{{"items":[{item},{positional}]}}"#),
        )
        .unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].pointer, "/items/1");
        assert_eq!(
            parse(Shape::Batch, &format!("[[{item}]]"))
                .unwrap_err()
                .status,
            422
        );
    }

    #[test]
    fn authenticates_by_key() {
        let keys = vec![
            SourceKey {
                source: "a".into(),
                key: "key-aaaaaaaa".into(),
            },
            SourceKey {
                source: "b".into(),
                key: "key-bbbbbbbb".into(),
            },
        ];
        let mut headers = HeaderMap::new();
        assert_eq!(authenticate(&keys, &headers).unwrap_err().status, 401);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer key-bbbbbbbb"),
        );
        assert_eq!(authenticate(&keys, &headers).unwrap(), "b");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer key-cccccccc"),
        );
        assert_eq!(authenticate(&keys, &headers).unwrap_err().status, 401);
    }

    #[test]
    fn a_source_key_erases_its_source_and_an_admin_key_every_source() {
        let keys = vec![SourceKey {
            source: "shopdesk".into(),
            key: "key-aaaaaaaa".into(),
        }];
        let admins = vec![SourceKey {
            source: "privacy".into(),
            key: "key-admin-1".into(),
        }];
        let mut headers = HeaderMap::new();
        let bearer = |key: &'static str| HeaderValue::from_str(&format!("Bearer {key}")).unwrap();
        headers.insert(header::AUTHORIZATION, bearer("key-aaaaaaaa"));
        assert_eq!(
            erasure_scope(&keys, &admins, &headers).unwrap(),
            ("shopdesk", ErasureScope::Source)
        );
        headers.insert(header::AUTHORIZATION, bearer("key-admin-1"));
        assert_eq!(
            erasure_scope(&keys, &admins, &headers).unwrap(),
            ("privacy", ErasureScope::All)
        );
        // An admin key is no source's key: it cannot send feedback.
        assert_eq!(authenticate(&keys, &headers).unwrap_err().status, 401);
        headers.insert(header::AUTHORIZATION, bearer("key-unknown"));
        assert_eq!(
            erasure_scope(&keys, &admins, &headers).unwrap_err().status,
            401
        );
    }

    fn preferences(body: &str) -> Result<CustomerPreferences, Problem> {
        parse_preferences_body(
            body.as_bytes(),
            "c-7".into(),
            "shopdesk",
            DateTime::UNIX_EPOCH,
        )
    }

    fn pointers(problem: &Problem) -> Vec<&str> {
        problem.errors.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn preferences_default_to_any_channel_their_locale_and_subscribed() {
        for body in [
            r#"{"consent": true}"#,
            r#"{"consent": true, "channels": null, "language": null, "unsubscribed": null}"#,
        ] {
            let record = preferences(body).unwrap();
            assert_eq!(
                record,
                CustomerPreferences {
                    customer_id: "c-7".into(),
                    source: "shopdesk".into(),
                    updated_at: DateTime::UNIX_EPOCH,
                    consent: true,
                    channels: None,
                    language: None,
                    unsubscribed: false,
                },
                "{body}"
            );
        }
        let record = preferences(
            r#"{"consent": false, "channels": ["webhook", "email"], "language": " de-CH ",
                "unsubscribed": true}"#,
        )
        .unwrap();
        assert!(!record.consent && record.unsubscribed);
        assert_eq!(
            record.channels,
            Some(vec![DeliveryChannel::Webhook, DeliveryChannel::Email])
        );
        assert_eq!(record.language.as_deref(), Some("de-CH"), "stored trimmed");
    }

    #[test]
    fn every_invalid_preference_is_pointed_at() {
        let problem =
            preferences(r#"{"channels": ["email", "webhook", "email"], "language": "de CH<b>"}"#)
                .unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(pointers(&problem), ["/consent", "/channels/2", "/language"]);
        let problem = preferences(r#"{"consent": null}"#).unwrap_err();
        assert_eq!(pointers(&problem), ["/consent"], "null is no answer");
        // The same check as a feedback's customer.locale, with the same words.
        let problem = preferences(r#"{"consent": true, "language": ""}"#).unwrap_err();
        assert_eq!(pointers(&problem), ["/language"]);
        assert_eq!(
            problem.errors[0].detail,
            crate::submission::language_tag("").unwrap_err()
        );
    }

    #[test]
    fn an_empty_channel_list_is_refused_with_what_to_send_instead() {
        let problem = preferences(r#"{"consent": true, "channels": []}"#).unwrap_err();
        assert_eq!(pointers(&problem), ["/channels"]);
        let detail = &problem.errors[0].detail;
        for hint in ["\"consent\": false", "\"unsubscribed\": true", "null"] {
            assert!(detail.contains(hint), "{detail}");
        }
    }

    #[test]
    fn preference_shapes_are_refused_by_serde_with_a_pointer() {
        let problem =
            preferences(r#"{"consent": true, "channels": ["email", "sms"]}"#).unwrap_err();
        assert_eq!(
            (problem.status, pointers(&problem)),
            (422, vec!["/channels/1"])
        );
        let problem = preferences(r#"{"consent": "yes"}"#).unwrap_err();
        assert_eq!(
            (problem.status, pointers(&problem)),
            (422, vec!["/consent"])
        );
        for unknown in [
            r#"{"consent": true, "frequency": "daily"}"#,
            r#"{"consent": true, "customer_id": "someone-else"}"#,
            r#"{"consent": true, "source": "surveyhub"}"#,
        ] {
            assert_eq!(preferences(unknown).unwrap_err().status, 422, "{unknown}");
        }
        assert_eq!(
            preferences("[true]").unwrap_err().status,
            422,
            "objects only"
        );
        assert_eq!(preferences(r#"{"consent": tru"#).unwrap_err().status, 400);
        assert_eq!(preferences("").unwrap_err().status, 400);
    }

    #[test]
    fn the_path_customer_id_is_normalised_or_refused_with_a_400() {
        assert_eq!(
            preferences_customer_id(" Jose\u{301} ").unwrap(),
            "Jos\u{e9}",
            "the spelling feedback is keyed by"
        );
        for bad in [" ", "c-1\nlevel=INFO", "c\u{202E}1", &"x".repeat(201)] {
            let problem = preferences_customer_id(bad).unwrap_err();
            assert_eq!(problem.status, 400, "{bad:?}");
            assert_eq!(pointers(&problem), [CUSTOMER_ID_PARAM]);
        }
    }

    #[test]
    fn a_source_key_or_an_admin_key_sets_preferences_under_its_name() {
        let keys = vec![SourceKey {
            source: "shopdesk".into(),
            key: "key-aaaaaaaa".into(),
        }];
        let admins = vec![SourceKey {
            source: "privacy".into(),
            key: "key-admin-1".into(),
        }];
        let mut headers = HeaderMap::new();
        assert_eq!(
            preferences_setter(&keys, &admins, &headers)
                .unwrap_err()
                .status,
            401
        );
        for (key, name) in [("key-aaaaaaaa", "shopdesk"), ("key-admin-1", "privacy")] {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
            );
            assert_eq!(preferences_setter(&keys, &admins, &headers).unwrap(), name);
        }
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer key-unknown"),
        );
        assert_eq!(
            preferences_setter(&keys, &admins, &headers)
                .unwrap_err()
                .status,
            401
        );
    }
}
