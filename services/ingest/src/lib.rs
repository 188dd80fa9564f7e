//! ingest: the HTTP front door. Support tools and survey systems POST feedback; each
//! request is authenticated per source, validated, deduplicated by `Idempotency-Key`,
//! published to `feedback.raw.v1`, and answered 202 only once the broker acknowledged.

pub mod api;
pub mod config;
mod idempotency;
mod metrics;
pub mod submission;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use closeloop_bus::PublisherConfig;
use closeloop_runtime::{Foundation, Spec};
use tokio_util::sync::CancellationToken;

pub use closeloop_runtime::Error;
pub use config::{Config, SourceKey};

/// A built ingest service, listening but not yet serving.
pub struct Service {
    foundation: Foundation,
    routes: axum::Router,
}

impl Service {
    pub async fn build(config: Config) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let foundation = Foundation::start(Spec {
            publisher: PublisherConfig {
                delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
                ..PublisherConfig::new(&config.kafka.brokers)
            },
            ..closeloop_runtime::spec!("ingest", config)
        })
        .await?;
        let registry = &foundation.telemetry.registry;
        let state = Arc::new(api::ApiState {
            keys: config.api_keys.clone(),
            admin_keys: config.admin_keys.clone(),
            publisher: foundation.publisher.clone(),
            idempotency: idempotency::Idempotency::new(foundation.db.clone()),
            limits: submission::Limits {
                max_text_chars: config.max_text_chars,
                ..Default::default()
            },
            max_batch: config.max_batch,
            rate_limit: (config.rate_limit_per_source > 0.0).then(|| {
                closeloop_runtime::RateLimiter::new(
                    config.rate_limit_per_source,
                    config.rate_limit_burst,
                )
            }),
            metrics: metrics::IngestMetrics::register(registry)?,
        });
        Ok(Self {
            routes: api::routes(state, config.max_body_bytes),
            foundation,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.foundation.http_addr()
    }

    /// Serves until `shutdown`, then finishes in-flight requests and flushes the producer.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        self.foundation.run(shutdown, self.routes, |_| {}).await
    }
}
