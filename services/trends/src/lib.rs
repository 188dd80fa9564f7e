//! The trends service: reads `feedback.themes.v1`, counts mentions per theme by event
//! time, raises one action per theme on `actions.v1` when a theme surges or keeps
//! recurring (reopening its last action when it comes back soon after a resolution), and
//! serves the ops API and the `/ops` page through which an operator acknowledges, assigns
//! and resolves it with the message customers will get. A second consumer applies
//! `privacy.erasure.v1` (see [`erasure`]).
//!
//! Shape (as every closeloop service): [`Config`] → [`Service::build`] (connect, migrate,
//! rebuild state, bind) → [`Service::run_until_stopped`] (consumer loop + HTTP server).
//! `main.rs`, `closeloop up` and the tests all run exactly this code.
//!
//! State lives in two places on purpose: the database is the truth (mentions, actions,
//! resolution times), the in-memory [`closeloop_trend::Detector`] is a cache of the
//! counts and baselines that [`Service::build`] rebuilds from it, so a restart neither
//! forgets a surge nor raises an action twice.

mod action;
mod announce;
mod api;
mod auth;
mod config;
mod context;
mod detection;
mod erasure;
mod evidence;
mod metrics;
mod ops;
mod request;
mod routes;
mod store;
mod workflow;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use closeloop_bus::{
    run_consumer, BusError, BusMetrics, ConsumerConfig, Publisher, PublisherConfig,
};
use closeloop_classify::{Taxonomy, TaxonomyError};
use closeloop_store::{sqlx, Database, StoreError};
use closeloop_telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{parse_overrides, Config, ThemeOverride};

use auth::OpsSecrets;
use context::Context;
use detection::{DetectionState, ThemesHandler};
use metrics::TrendsMetrics;
use store::TrendsStore;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    #[error("could not register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Http(#[from] closeloop_telemetry::HttpError),
    #[error("consumer task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A built, not yet running, trends service.
pub struct Service {
    ctx: Arc<Context>,
    telemetry: Telemetry,
    bus_metrics: BusMetrics,
    consumer: ConsumerConfig,
    listener: TcpListener,
    http_addr: SocketAddr,
}

impl Service {
    /// Connects and migrates the database, prepares the topics, rebuilds the detector
    /// windows from the stored mentions and binds the HTTP listener.
    pub async fn build(config: Config) -> Result<Service, Error> {
        let checked = config.validate().map_err(Error::Config)?;
        let taxonomy = match &config.taxonomy {
            Some(path) => Taxonomy::load(path)?,
            None => Taxonomy::builtin(),
        };

        let db = Database::connect(&config.database.config("trends")).await?;
        db.migrate(sqlx::migrate!("./migrations")).await?;
        let store = TrendsStore::new(db);

        config.kafka.prepare_topics().await?;
        let telemetry = Telemetry::new("trends");
        let bus_metrics = BusMetrics::register(&telemetry.registry)?;
        let metrics = TrendsMetrics::register(&telemetry.registry)?;
        let publisher = Publisher::new(
            &PublisherConfig::new(&config.kafka.brokers),
            bus_metrics.clone(),
        )?;

        let (detection, replayed) = DetectionState::rebuild(checked.detector, &store).await?;
        let open = store.open_since().await?;
        for (theme, since_ms) in &open {
            metrics.opened(theme, *since_ms);
        }
        tracing::info!(
            replayed,
            open_actions = open.len(),
            "detector state rebuilt"
        );

        let (listener, http_addr) = closeloop_telemetry::bind(config.http_addr).await?;

        let ctx = Arc::new(Context {
            store,
            publisher,
            detection: Mutex::new(detection),
            transitions: tokio::sync::Mutex::new(()),
            taxonomy,
            metrics,
            ops_secrets: OpsSecrets::new(config.ops_token.as_ref().map(|t| t.expose())),
            ops_token: config.ops_token,
            reopen_within_ms: checked.reopen_within_ms,
        });
        Ok(Service {
            ctx,
            telemetry,
            bus_metrics,
            consumer: ConsumerConfig::new(config.kafka.brokers, config.group_id),
            listener,
            http_addr,
        })
    }

    /// The address the HTTP server listens on (the real port when configured with 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Consumes `feedback.themes.v1` and serves HTTP until `shutdown` is cancelled, then
    /// finishes in-flight work, commits and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Service {
            ctx,
            telemetry,
            bus_metrics,
            consumer,
            listener,
            http_addr,
        } = self;
        // Any part failing stops the others: an instance that no longer consumes must
        // not keep answering as if it were healthy.
        let stop = shutdown.child_token();
        let erasure_consumer = ConsumerConfig {
            group_id: format!("{}-erasure", consumer.group_id),
            ..consumer.clone()
        };
        let erasure_metrics = bus_metrics.clone();
        let consumer = tokio::spawn({
            let stop = stop.clone();
            let handler = ThemesHandler::new(ctx.clone());
            let publisher = ctx.publisher.clone();
            async move {
                let result =
                    run_consumer(consumer, handler, publisher, bus_metrics, stop.clone()).await;
                stop.cancel();
                result
            }
        });
        // Erasure requests have their own consumer group, so a backlog of mentions never
        // delays them (and the other way round).
        let erasures = tokio::spawn({
            let stop = stop.clone();
            let handler = erasure::ErasureHandler::new(ctx.clone());
            let publisher = ctx.publisher.clone();
            async move {
                let result = run_consumer(
                    erasure_consumer,
                    handler,
                    publisher,
                    erasure_metrics,
                    stop.clone(),
                )
                .await;
                stop.cancel();
                result
            }
        });
        let router = telemetry.router(routes::router(ctx.clone()));
        telemetry.readiness.set(true);
        tracing::info!(%http_addr, "trends service running");
        let served = closeloop_telemetry::serve(listener, router, stop.clone()).await;
        telemetry.readiness.set(false);
        stop.cancel();
        let consumed = consumer.await;
        let erased = erasures.await;
        if let Err(error) = ctx.publisher.flush(Duration::from_secs(5)) {
            tracing::warn!(%error, "could not flush the publisher");
        }
        ctx.store.database().close().await;
        tracing::info!("trends service stopped");
        served?;
        consumed??;
        erased??;
        Ok(())
    }
}
