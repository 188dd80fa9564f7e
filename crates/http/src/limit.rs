//! A route's body limit, enforced twice: a declared `Content-Length` over the limit is
//! answered 413 before anything reads the body — so a client that sent
//! `Expect: 100-continue` never gets "100 Continue" (hyper sends it only when the body
//! is first read) and nothing uploads megabytes only to be refused — and a body without
//! a length (chunked) is cut at the limit while it is read, as axum's
//! [`DefaultBodyLimit`] does.

use std::task::{Context, Poll};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use futures::future::{ready, Either, Ready};
use tower::{Layer, Service};

use crate::problem::{Problem, ProblemType};

/// `.layer(BodyLimit::max(bytes))` on a router, in place of `DefaultBodyLimit::max`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    max: usize,
}

impl BodyLimit {
    pub fn max(max: usize) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for BodyLimit {
    type Service = EarlyLimit<<DefaultBodyLimit as Layer<S>>::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        EarlyLimit {
            inner: DefaultBodyLimit::max(self.max).layer(inner),
            max: self.max,
        }
    }
}

/// The service of [`BodyLimit`].
#[derive(Debug, Clone)]
pub struct EarlyLimit<S> {
    inner: S,
    max: usize,
}

impl<S, B> Service<Request<B>> for EarlyLimit<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // hyper has already refused a Content-Length that is not a number (400).
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        match declared {
            Some(length) if length > self.max as u64 => {
                let problem = Problem::new(ProblemType::BodyTooLarge).detail(format!(
                    "the body is {length} bytes; at most {} are accepted",
                    self.max
                ));
                let mut response = problem.into_response();
                // The body stays unread, so the connection cannot carry another request:
                // say so, or the client would reuse it and find it closed.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                Either::Left(ready(Ok(response)))
            }
            _ => Either::Right(self.inner.call(request)),
        }
    }
}
