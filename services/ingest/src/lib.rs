//! ingest: the HTTP front door. Support tools and survey systems POST feedback; each
//! request is authenticated per source, validated, deduplicated by `Idempotency-Key`,
//! published to `feedback.raw.v1`, and answered 202 only once the broker acknowledged.

pub mod api;
pub mod config;
mod event_ids;
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
    max_event_age: chrono::Duration,
}

impl Service {
    pub async fn build(config: Config) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let foundation = Foundation::start(Spec {
            publisher: PublisherConfig {
                delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
                ..PublisherConfig::new(&config.kafka.brokers)
            },
            // One commit holds the event ids of every request that waited for it, and
            // their random keys each dirty another page of the ledger's index: with
            // SQLite's 2 MiB the commit spilled and reread pages (a third of ingest's CPU
            // importing a million rows). 16 MiB: 14,600–15,100 → 16,800–17,100 rows/s.
            sqlite_cache_mib: Some(16),
            ..closeloop_runtime::spec!("ingest", config)
        })
        .await?;
        let registry = &foundation.telemetry.registry;
        let max_event_age = chrono::Duration::days(config.max_event_age_days);
        let state = Arc::new(api::ApiState {
            keys: config.api_keys.clone(),
            admin_keys: config.admin_keys.clone(),
            publisher: foundation.publisher.clone(),
            idempotency: idempotency::Idempotency::new(foundation.db.clone()),
            event_ids: event_ids::EventIds::new(foundation.db.clone()),
            max_body_bytes: config.max_body_bytes,
            limits: submission::Limits {
                max_text_chars: config.max_text_chars,
                max_event_age,
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
            max_event_age,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.foundation.http_addr()
    }

    /// Serves until `shutdown`, then finishes in-flight requests and flushes the producer.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let event_ids = event_ids::EventIds::new(self.foundation.db.clone());
        let max_event_age = self.max_event_age;
        self.foundation
            .run(shutdown, self.routes, |tasks| {
                let stop = tasks.stop_token();
                tasks.spawn("event id purge", async move {
                    purge_event_ids(event_ids, max_event_age, stop).await;
                    Ok::<(), std::convert::Infallible>(())
                });
            })
            .await
    }
}

/// Forgets, once an hour, the ids of feedback older than the oldest accepted: ingest
/// refuses such feedback anyway, so the ledger stays bounded by the traffic of that
/// period. A failed purge is retried the next hour; it costs only disk.
async fn purge_event_ids(
    event_ids: event_ids::EventIds,
    max_event_age: chrono::Duration,
    stop: CancellationToken,
) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every_hour.tick() => {}
        }
        let cutoff = (chrono::Utc::now() - max_event_age).timestamp_millis();
        match event_ids.purge(cutoff).await {
            Ok(purged) => tracing::debug!(purged, "old event ids purged"),
            Err(error) => tracing::warn!(%error, "could not purge old event ids"),
        }
    }
}
