//! ingest: the HTTP front door. Support tools and survey systems POST feedback; each
//! request is authenticated per source, validated, deduplicated by `Idempotency-Key`,
//! published to `feedback.raw.v1`, and answered 202 only once the broker acknowledged.

pub mod api;
pub mod config;
mod idempotency;
mod metrics;
mod ratelimit;
pub mod submission;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use closeloop_bus::{BusError, BusMetrics, Publisher, PublisherConfig};
use closeloop_store::{Database, StoreError};
use closeloop_telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, SourceKey};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Http(#[from] closeloop_http::HttpError),
}

/// A built ingest service, listening but not yet serving.
pub struct Service {
    listener: TcpListener,
    http_addr: SocketAddr,
    router: axum::Router,
    telemetry: Telemetry,
    publisher: Publisher,
    db: Database,
}

impl Service {
    pub async fn build(config: Config) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let db = Database::connect(&config.database.config("ingest")).await?;
        db.migrate(sqlx::migrate!("./migrations")).await?;
        config.kafka.prepare_topics().await?;
        let telemetry = Telemetry::new("ingest");
        let bus_metrics = BusMetrics::register(&telemetry.registry)?;
        let publisher = Publisher::new(
            &PublisherConfig {
                delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
                ..PublisherConfig::new(&config.kafka.brokers)
            },
            bus_metrics,
        )?;
        let state = Arc::new(api::ApiState {
            keys: config.api_keys.clone(),
            publisher: publisher.clone(),
            idempotency: idempotency::Idempotency::new(db.clone()),
            limits: submission::Limits {
                max_text_chars: config.max_text_chars,
                ..Default::default()
            },
            max_batch: config.max_batch,
            rate_limit: (config.rate_limit_per_source > 0.0).then(|| {
                ratelimit::RateLimiter::new(config.rate_limit_per_source, config.rate_limit_burst)
            }),
            metrics: metrics::IngestMetrics::register(&telemetry.registry)?,
        });
        let router = telemetry.router(api::routes(state, config.max_body_bytes));
        let (listener, http_addr) = closeloop_http::bind(config.http_addr).await?;
        Ok(Self {
            listener,
            http_addr,
            router,
            telemetry,
            publisher,
            db,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until `shutdown`, then finishes in-flight requests and flushes the producer.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        tracing::info!(addr = %self.http_addr(), "ingest listening");
        self.telemetry.readiness.set(true);
        let served = closeloop_http::serve(self.listener, self.router, shutdown).await;
        self.telemetry.readiness.set(false);
        if let Err(error) = self.publisher.flush(Duration::from_secs(10)) {
            tracing::warn!(%error, "producer flush on shutdown failed");
        }
        self.db.close().await;
        Ok(served?)
    }
}
