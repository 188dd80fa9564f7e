//! The HTTP edge every service shares: RFC 9457 problems from one catalogue of problem
//! types, JSON bodies decoded with RFC 6901 pointers to what is wrong, bearer
//! credentials, HTML escaping, body limits answered before the body is read, and binding
//! and serving a router until shutdown within time and connection limits.

pub mod body;
pub mod credentials;
pub mod html;
mod limit;
pub mod problem;
mod server;

pub use body::{
    deserialize_object, inflate_gzip, parse_json, read_json_body, read_json_body_inflating,
    JsonObject,
};
pub use credentials::{bearer_token, require_ops_token, tokens_match, OpsToken};
pub use limit::{BodyLimit, EarlyLimit};
pub use problem::{FieldError, Problem, ProblemType};
pub use server::{bind, serve, serve_with, HttpError, HttpLimits, ServerMetrics};

/// The answer to a request for a path no route matches: problem+json like every other
/// error, so a client has one error format.
pub async fn not_found() -> Problem {
    Problem::new(ProblemType::NotFound).detail("no such endpoint")
}
