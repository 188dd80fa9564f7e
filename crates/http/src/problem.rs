//! RFC 9457 problem details: every HTTP error closeloop returns is
//! `application/problem+json` with a `type` from one catalogue ([`ProblemType`]), so the
//! same failure has the same `type`, `title` and status in every service, and a
//! `detail` a person can act on.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Where the problem types live; `type` is this plus the slug.
const TYPE_BASE: &str = "https://closeloop.dev/problems/";

/// How long a client should wait before retrying when the database is unavailable: long
/// enough for a failover or a restart, short enough that a blip costs little.
pub const DATABASE_RETRY_AFTER_SECONDS: u64 = 5;
/// How long before retrying when the broker did not acknowledge: ingest's producer
/// already waited for the broker, so the next attempt may as well come soon.
pub const BROKER_RETRY_AFTER_SECONDS: u64 = 1;

/// Every kind of failure the services answer with. A kind has one slug, title and
/// status; what differs per occurrence goes into the detail and the field errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// No such endpoint or resource.
    NotFound,
    MethodNotAllowed,
    /// No credentials, or credentials that are not valid.
    Unauthorized,
    /// A signed-in form whose anti-forgery token is missing or stale.
    FormExpired,
    /// A form posted from another site (its `Origin` or `Referer` is not ours).
    CrossSiteRequest,
    UnsupportedMediaType,
    BodyTooLarge,
    /// The body did not arrive within the server's body timeout.
    RequestTimeout,
    /// The body could not be read (or, for a form, decoded).
    UnreadableBody,
    /// The body is not JSON at all.
    MalformedJson,
    /// Well-formed JSON (or form) whose content is invalid; field errors say where.
    InvalidBody,
    /// A query or path parameter that is not valid.
    InvalidParameter,
    /// A header that is not valid.
    InvalidHeader,
    /// An `Idempotency-Key` sent again with a different body.
    IdempotencyKeyReused,
    /// A request with the same `Idempotency-Key` is still being processed.
    RequestInProgress,
    /// An `event_id` accepted before with other content: one id names one event.
    EventIdConflict,
    /// The request does not fit the resource's current state.
    Conflict,
    RateLimited,
    DatabaseUnavailable,
    BrokerUnavailable,
    /// Starting or shutting down.
    NotReady,
    Internal,
}

impl ProblemType {
    pub fn slug(self) -> &'static str {
        match self {
            ProblemType::NotFound => "not-found",
            ProblemType::MethodNotAllowed => "method-not-allowed",
            ProblemType::Unauthorized => "unauthorized",
            ProblemType::FormExpired => "form-expired",
            ProblemType::CrossSiteRequest => "cross-site-request",
            ProblemType::UnsupportedMediaType => "unsupported-media-type",
            ProblemType::BodyTooLarge => "body-too-large",
            ProblemType::RequestTimeout => "request-timeout",
            ProblemType::UnreadableBody => "unreadable-body",
            ProblemType::MalformedJson => "malformed-json",
            ProblemType::InvalidBody => "invalid-body",
            ProblemType::InvalidParameter => "invalid-parameter",
            ProblemType::InvalidHeader => "invalid-header",
            ProblemType::IdempotencyKeyReused => "idempotency-key-reused",
            ProblemType::RequestInProgress => "request-in-progress",
            ProblemType::EventIdConflict => "event-id-conflict",
            ProblemType::Conflict => "conflict",
            ProblemType::RateLimited => "rate-limited",
            ProblemType::DatabaseUnavailable => "database-unavailable",
            ProblemType::BrokerUnavailable => "broker-unavailable",
            ProblemType::NotReady => "not-ready",
            ProblemType::Internal => "internal",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemType::NotFound => "Not found",
            ProblemType::MethodNotAllowed => "Method not allowed",
            ProblemType::Unauthorized => "Unauthorized",
            ProblemType::FormExpired => "Form expired",
            ProblemType::CrossSiteRequest => "Cross-site request refused",
            ProblemType::UnsupportedMediaType => "Unsupported media type",
            ProblemType::BodyTooLarge => "Body too large",
            ProblemType::RequestTimeout => "Request timeout",
            ProblemType::UnreadableBody => "Unreadable body",
            ProblemType::MalformedJson => "Malformed JSON",
            ProblemType::InvalidBody => "Invalid request body",
            ProblemType::InvalidParameter => "Invalid parameter",
            ProblemType::InvalidHeader => "Invalid header",
            ProblemType::IdempotencyKeyReused => "Idempotency key reused",
            ProblemType::RequestInProgress => "Request in progress",
            ProblemType::EventIdConflict => "Event id conflict",
            ProblemType::Conflict => "Conflicting state",
            ProblemType::RateLimited => "Rate limited",
            ProblemType::DatabaseUnavailable => "Database unavailable",
            ProblemType::BrokerUnavailable => "Broker unavailable",
            ProblemType::NotReady => "Not ready",
            ProblemType::Internal => "Internal error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProblemType::NotFound => StatusCode::NOT_FOUND,
            ProblemType::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemType::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemType::FormExpired | ProblemType::CrossSiteRequest => StatusCode::FORBIDDEN,
            ProblemType::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProblemType::UnreadableBody
            | ProblemType::MalformedJson
            | ProblemType::InvalidParameter
            | ProblemType::InvalidHeader => StatusCode::BAD_REQUEST,
            ProblemType::InvalidBody | ProblemType::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ProblemType::RequestInProgress
            | ProblemType::Conflict
            | ProblemType::EventIdConflict => StatusCode::CONFLICT,
            ProblemType::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProblemType::DatabaseUnavailable
            | ProblemType::BrokerUnavailable
            | ProblemType::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `Retry-After` this kind always carries, if any.
    fn retry_after(self) -> Option<u64> {
        match self {
            ProblemType::DatabaseUnavailable => Some(DATABASE_RETRY_AFTER_SECONDS),
            ProblemType::BrokerUnavailable | ProblemType::RequestInProgress => {
                Some(BROKER_RETRY_AFTER_SECONDS)
            }
            _ => None,
        }
    }
}

/// One problem with a specific part of the request (a JSON pointer into the body, or
/// the name of a parameter).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    problem_type: ProblemType,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl Problem {
    pub fn new(problem_type: ProblemType) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{}", problem_type.slug()),
            title: problem_type.title().to_owned(),
            status: problem_type.status().as_u16(),
            detail: None,
            errors: Vec::new(),
            problem_type,
            retry_after: problem_type.retry_after(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// One field error, with `detail` saying what is wrong with the field.
    pub fn field(pointer: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }

    /// Overrides the kind's `Retry-After` (a rate limit knows when the client may retry).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::Internal).detail(detail)
    }

    /// A database failure as clients see it: 503 with `Retry-After` when retrying can
    /// help (connection lost, busy, failing over), else 500. The error itself is logged,
    /// never shown: it may name tables or values.
    pub fn from_database_error(error: &closeloop_store::sqlx::Error) -> Self {
        if closeloop_store::is_transient(error) {
            tracing::warn!(%error, "database unavailable");
            Self::new(ProblemType::DatabaseUnavailable)
                .detail("the database is busy or unreachable; nothing was changed, retry shortly")
        } else {
            tracing::error!(%error, "database error");
            Self::internal("database error")
        }
    }

    pub fn problem_type(&self) -> ProblemType {
        self.problem_type
    }

    pub fn status(&self) -> StatusCode {
        self.problem_type.status()
    }
}

impl From<ProblemType> for Problem {
    fn from(problem_type: ProblemType) -> Self {
        Self::new(problem_type)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        if self.problem_type == ProblemType::Unauthorized {
            // RFC 9110 §11.6.1: a 401 names the scheme it wants.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_rfc_9457() {
        let problem = Problem::new(ProblemType::InvalidBody)
            .detail("2 fields are invalid")
            .errors(vec![Problem::field("/rating", "must be between 1 and 5")]);
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["type"], "https://closeloop.dev/problems/invalid-body");
        assert_eq!(json["title"], "Invalid request body");
        assert_eq!(json["status"], 422);
        assert_eq!(json["errors"][0]["pointer"], "/rating");
        let response = problem.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn every_kind_has_its_own_slug_and_a_consistent_status() {
        use std::collections::HashSet;
        let all = [
            ProblemType::NotFound,
            ProblemType::MethodNotAllowed,
            ProblemType::Unauthorized,
            ProblemType::FormExpired,
            ProblemType::CrossSiteRequest,
            ProblemType::UnsupportedMediaType,
            ProblemType::BodyTooLarge,
            ProblemType::RequestTimeout,
            ProblemType::UnreadableBody,
            ProblemType::MalformedJson,
            ProblemType::InvalidBody,
            ProblemType::InvalidParameter,
            ProblemType::InvalidHeader,
            ProblemType::IdempotencyKeyReused,
            ProblemType::EventIdConflict,
            ProblemType::RequestInProgress,
            ProblemType::Conflict,
            ProblemType::RateLimited,
            ProblemType::DatabaseUnavailable,
            ProblemType::BrokerUnavailable,
            ProblemType::NotReady,
            ProblemType::Internal,
        ];
        let slugs: HashSet<_> = all.iter().map(|kind| kind.slug()).collect();
        assert_eq!(slugs.len(), all.len());
        for kind in all {
            let status = kind.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{kind:?}"
            );
            assert!(kind
                .slug()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-'));
        }
    }

    #[test]
    fn database_outages_ask_to_retry_and_other_database_errors_do_not() {
        let outage = Problem::from_database_error(&closeloop_store::sqlx::Error::PoolTimedOut)
            .into_response();
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            outage.headers()[header::RETRY_AFTER],
            DATABASE_RETRY_AFTER_SECONDS.to_string().as_str()
        );
        let bug = Problem::from_database_error(&closeloop_store::sqlx::Error::RowNotFound)
            .into_response();
        assert_eq!(bug.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(bug.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn a_401_names_the_bearer_scheme() {
        let response = Problem::new(ProblemType::Unauthorized).into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
