//! categorise: consumes `feedback.raw.v1`, detects language, sentiment and themes with
//! crates/classify, persists the result once, then publishes `feedback.categorised.v1`
//! and one `feedback.themes.v1` record per (feedback, theme), keyed by theme.

mod handler;
mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use closeloop_bus::{
    run_consumer, BusError, BusMetrics, ConsumerConfig, KafkaArgs, Publisher, PublisherConfig,
};
use closeloop_classify::{LexiconClassifier, Taxonomy, TaxonomyError};
use closeloop_store::{Database, DatabaseArgs, StoreError};
use closeloop_telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use handler::{categorise, excerpt};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "categorise",
    about = "Classifies raw feedback: language, sentiment, themes"
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[arg(long, env = "CATEGORISE_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,
    /// Theme taxonomy (TOML); the built-in one when not given.
    #[arg(long, env = "CATEGORISE_TAXONOMY")]
    pub taxonomy: Option<PathBuf>,
    #[arg(
        long,
        env = "CATEGORISE_GROUP_ID",
        default_value = "closeloop-categorise"
    )]
    pub group_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Http(#[from] closeloop_http::HttpError),
}

pub struct Service {
    config: Config,
    listener: TcpListener,
    http_addr: SocketAddr,
    telemetry: Telemetry,
    bus_metrics: BusMetrics,
    publisher: Publisher,
    handler: handler::CategoriseHandler,
    erasure: handler::ErasureHandler,
    db: Database,
}

impl Service {
    pub async fn build(config: Config) -> Result<Self, Error> {
        let taxonomy = match &config.taxonomy {
            Some(path) => Taxonomy::load(path)?,
            None => Taxonomy::builtin(),
        };
        tracing::info!(
            version = %taxonomy.version,
            themes = taxonomy.themes.len(),
            "taxonomy loaded"
        );
        let db = Database::connect(&config.database.config("categorise")).await?;
        db.migrate(sqlx::migrate!("./migrations")).await?;
        config.kafka.prepare_topics().await?;
        let telemetry = Telemetry::new("categorise");
        let bus_metrics = BusMetrics::register(&telemetry.registry)?;
        let publisher = Publisher::new(
            &PublisherConfig {
                linger: Duration::ZERO,
                ..PublisherConfig::new(&config.kafka.brokers)
            },
            bus_metrics.clone(),
        )?;
        let metrics = metrics::CategoriseMetrics::register(&telemetry.registry)?;
        let handler = handler::CategoriseHandler {
            classifier: Arc::new(LexiconClassifier::new(taxonomy)),
            db: db.clone(),
            publisher: publisher.clone(),
            metrics,
        };
        let erasure = handler::ErasureHandler { db: db.clone() };
        let (listener, http_addr) = closeloop_http::bind(config.http_addr).await?;
        Ok(Self {
            config,
            listener,
            http_addr,
            telemetry,
            bus_metrics,
            publisher,
            handler,
            erasure,
            db,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let brokers = &self.config.kafka.brokers;
        let consumer = run_consumer(
            ConsumerConfig::new(brokers, &self.config.group_id),
            self.handler,
            self.publisher.clone(),
            self.bus_metrics.clone(),
            shutdown.clone(),
        );
        let erasure = run_consumer(
            ConsumerConfig::new(brokers, format!("{}-erasure", self.config.group_id)),
            self.erasure,
            self.publisher.clone(),
            self.bus_metrics.clone(),
            shutdown.clone(),
        );
        let router = self.telemetry.router(axum::Router::new());
        let http = closeloop_http::serve(self.listener, router, shutdown.clone());
        self.telemetry.readiness.set(true);
        tracing::info!("categorise running");
        let (consumed, erased, served) = tokio::join!(consumer, erasure, http);
        self.telemetry.readiness.set(false);
        if let Err(error) = self.publisher.flush(Duration::from_secs(10)) {
            tracing::warn!(%error, "producer flush on shutdown failed");
        }
        self.db.close().await;
        consumed?;
        erased?;
        Ok(served?)
    }
}
