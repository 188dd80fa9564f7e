//! The HTTP surface of trends, put together: the JSON API (see [`crate::api`]) and the
//! `/ops` page (see [`crate::ops`]), with the body limit and the problem-shaped 404 they
//! share. Neither knows of the other; this is the one place that sees both.

use std::sync::Arc;

use axum::Router;

use crate::context::Context;
use crate::{api, ops, preview};

/// Resolution bodies are a few kilobytes at most.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub(crate) fn router(ctx: Arc<Context>) -> Router {
    api::routes(ctx.clone())
        .merge(ops::routes())
        .merge(preview::api_routes(&ctx))
        .merge(preview::ops_routes())
        .layer(closeloop_http::BodyLimit::max(MAX_BODY_BYTES))
        .fallback(closeloop_http::not_found)
        .with_state(ctx)
}
