//! Bearer credentials (RFC 6750), comparing secrets without leaking them by timing, and
//! the ops token that guards the operators' APIs (trends' and notify's `/v1`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::problem::{Problem, ProblemType};

/// The token of a `Bearer` credential (the scheme is case-insensitive, RFC 9110), if it
/// is one and the token is not empty.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Constant time in the secret's content, so response timing does not reveal how much
/// of a guess was right (the length may leak; it is not the secret part).
pub fn tokens_match(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The operators' token: configured once per service (`TRENDS_OPS_TOKEN`,
/// `NOTIFY_OPS_TOKEN`), presented as `Authorization: Bearer <token>`. One type and one
/// check, so the services cannot drift in how they guard their APIs. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OpsToken(String);

impl OpsToken {
    /// The token itself, for the one place that needs it (a client header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        tokens_match(presented, &self.0)
    }

    /// `Ok` when the request carries the token as a bearer credential, else the 401
    /// problem (with `WWW-Authenticate: Bearer`).
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), Problem> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        if presented.is_some_and(|token| self.matches(token)) {
            Ok(())
        } else {
            Err(Problem::new(ProblemType::Unauthorized)
                .detail("send the ops token as `Authorization: Bearer <token>`"))
        }
    }
}

impl std::fmt::Debug for OpsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A blank token would be a token anyone can guess: refused when the configuration is
/// parsed (unset it to run without auth). Only a blank value is ever echoed in the error.
/// The only way to make one (no `From<&str>`: clap would prefer it and skip this check).
impl std::str::FromStr for OpsToken {
    type Err = &'static str;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.trim().is_empty() {
            return Err("the ops token must not be blank (leave it unset to disable auth)");
        }
        Ok(Self(value.to_owned()))
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`) that lets a request through only
/// with the ops token, when one is configured; without one every request passes.
pub async fn require_ops_token(
    State(token): State<Option<OpsToken>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &token {
        if let Err(problem) = token.authorize(request.headers()) {
            return problem.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials() {
        assert_eq!(bearer_token("Bearer k"), Some("k"));
        assert_eq!(bearer_token("bearer  k "), Some("k"));
        assert_eq!(bearer_token("Bearer "), None, "an empty token is no token");
        assert_eq!(bearer_token("Bearer    "), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Basic k"), None);
        assert_eq!(bearer_token("k"), None);
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cre", "s3cret"));
        assert!(!tokens_match("s3creT", "s3cret"));
        assert!(!tokens_match("", "s3cret"));
    }

    #[test]
    fn the_ops_token_is_checked_and_never_printed() {
        let token: OpsToken = "s3cret-ops".parse().expect("a token");
        assert!(" ".parse::<OpsToken>().is_err(), "blank");
        assert!("".parse::<OpsToken>().is_err(), "empty");
        assert_eq!(format!("{token:?}"), "[redacted]");
        let mut headers = HeaderMap::new();
        assert!(token.authorize(&headers).is_err(), "no credentials");
        headers.insert(header::AUTHORIZATION, "Bearer s3cret-op".parse().unwrap());
        let refused = token.authorize(&headers).expect_err("wrong token");
        assert_eq!(refused.problem_type(), ProblemType::Unauthorized);
        headers.insert(header::AUTHORIZATION, "Basic s3cret-ops".parse().unwrap());
        assert!(token.authorize(&headers).is_err(), "another scheme");
        headers.insert(header::AUTHORIZATION, "bearer s3cret-ops".parse().unwrap());
        assert!(token.authorize(&headers).is_ok());
    }
}
