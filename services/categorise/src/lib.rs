//! categorise: consumes `feedback.raw.v1`, detects language, sentiment and themes with
//! crates/classify, persists the result once, then publishes `feedback.categorised.v1`
//! and one `feedback.themes.v1` record per (feedback, theme), keyed by theme.

mod handler;
mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use closeloop_bus::{KafkaArgs, PublisherConfig};
use closeloop_classify::{LexiconClassifier, Taxonomy};
use closeloop_runtime::{Foundation, PseudonymArgs, Spec};
use closeloop_store::DatabaseArgs;
use tokio_util::sync::CancellationToken;

pub use closeloop_runtime::Error;
pub use handler::categorise;

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
    /// Timeouts and the connection bound of the HTTP server (`HTTP_*`).
    #[command(flatten)]
    pub http: closeloop_http::HttpLimits,
    /// Theme taxonomy (TOML); the built-in one when not given.
    #[arg(long, env = "CATEGORISE_TAXONOMY")]
    pub taxonomy: Option<PathBuf>,
    #[command(flatten)]
    pub pseudonym: PseudonymArgs,
    #[arg(
        long,
        env = "CATEGORISE_GROUP_ID",
        default_value = "closeloop-categorise"
    )]
    pub group_id: String,
}

pub struct Service {
    config: Config,
    foundation: Foundation,
    handler: handler::CategoriseHandler,
    erasure: handler::ErasureHandler,
}

impl Service {
    pub async fn build(config: Config) -> Result<Self, Error> {
        let taxonomy = match &config.taxonomy {
            Some(path) => Taxonomy::load(path).map_err(|e| Error::setup("taxonomy", e))?,
            None => Taxonomy::builtin(),
        };
        tracing::info!(
            version = %taxonomy.version,
            themes = taxonomy.themes.len(),
            "taxonomy loaded"
        );
        let foundation = Foundation::start(Spec {
            // Records leave as soon as they are ready: categorise publishes per record.
            publisher: PublisherConfig {
                linger: Duration::ZERO,
                ..PublisherConfig::new(&config.kafka.brokers)
            },
            ..closeloop_runtime::spec!("categorise", config)
        })
        .await?;
        let metrics = metrics::CategoriseMetrics::register(&foundation.telemetry.registry)?;
        let pseudonyms = config.pseudonym.pseudonyms("categorise", &foundation.db);
        let handler = handler::CategoriseHandler {
            classifier: Arc::new(LexiconClassifier::new(taxonomy)),
            db: foundation.db.clone(),
            publisher: foundation.publisher.clone(),
            metrics,
            pseudonyms: pseudonyms.clone(),
            uncounted: Default::default(),
        };
        let erasure = handler::ErasureHandler {
            db: foundation.db.clone(),
            pseudonyms,
        };
        Ok(Self {
            config,
            foundation,
            handler,
            erasure,
        })
    }

    /// The handler of `feedback.raw.v1`, for tests that hand it a batch themselves (the
    /// consumer batches only what happens to be fetched together).
    #[doc(hidden)]
    pub fn feedback_handler(
        &self,
    ) -> &impl closeloop_bus::Handler<Event = closeloop_events::Feedback> {
        &self.handler
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.foundation.http_addr()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Self {
            config,
            foundation,
            handler,
            erasure,
        } = self;
        foundation
            .run(
                shutdown,
                axum::Router::new().fallback(closeloop_http::not_found),
                |tasks| {
                    tasks.consumer(&config.group_id, handler);
                    // Erasures have a group of their own: a feedback backlog never delays them.
                    tasks.consumer(format!("{}-erasure", config.group_id), erasure);
                },
            )
            .await
    }
}
