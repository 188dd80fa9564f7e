//! categorise: consumes `feedback.raw.v1`, detects language, sentiment and themes with
//! crates/classify, persists the result once, then publishes `feedback.categorised.v1`
//! and one `feedback.themes.v1` record per (feedback, theme), keyed by theme.

mod handler;
mod metrics;
mod reclassify;
mod versions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use closeloop_bus::{KafkaArgs, PublisherConfig};
use closeloop_classify::Taxonomy;
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
    taxonomy: versions::TaxonomyHandler,
    reclassifications: reclassify::Runner,
}

impl Service {
    pub async fn build(config: Config) -> Result<Self, Error> {
        let taxonomy = match &config.taxonomy {
            Some(path) => Taxonomy::load(path).map_err(|e| Error::setup("taxonomy", e))?,
            None => Taxonomy::builtin(),
        };
        let foundation = Foundation::start(Spec {
            // A batch's records are published together and awaited together: a few
            // milliseconds' linger sends them in a few requests rather than one each
            // (each request is a message set the broker stores and scans apart).
            publisher: PublisherConfig {
                linger: Duration::from_millis(5),
                ..PublisherConfig::new(&config.kafka.brokers)
            },
            ..closeloop_runtime::spec!("categorise", config)
        })
        .await?;
        let metrics = metrics::CategoriseMetrics::register(&foundation.telemetry.registry)?;
        // The newest version applied at run time wins over the file's, before the first
        // feedback is classified.
        let loaded = versions::load_current(&foundation.brokers)
            .await
            .map_err(|e| Error::setup("taxonomy.v1", e))?;
        let from_topic = loaded.taxonomy.is_some();
        let taxonomy = loaded.taxonomy.unwrap_or(taxonomy);
        tracing::info!(
            version = %taxonomy.version,
            themes = taxonomy.themes.len(),
            from = if from_topic { "taxonomy.v1" } else { "file" },
            "taxonomy loaded"
        );
        let classifier = versions::LiveClassifier::new(taxonomy, metrics.taxonomy_version.clone());
        let pseudonyms = config.pseudonym.pseudonyms("categorise", &foundation.db);
        let (jobs, reclassifications) = reclassify::jobs(
            foundation.db.clone(),
            foundation.publisher.clone(),
            foundation.brokers.clone(),
            metrics.clone(),
            pseudonyms.clone(),
        );
        let taxonomy = versions::TaxonomyHandler {
            classifier: classifier.clone(),
            loaded_up_to: loaded.last_offset,
            jobs,
        };
        let handler = handler::CategoriseHandler {
            classifier,
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
            taxonomy,
            reclassifications,
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

    /// The taxonomy version feedback is classified with now, for tests.
    #[doc(hidden)]
    pub fn taxonomy_version(&self) -> String {
        use closeloop_classify::Classifier;
        self.handler.classifier.current().version()
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
            taxonomy,
            reclassifications,
        } = self;
        foundation
            .run(
                shutdown,
                axum::Router::new().fallback(closeloop_http::not_found),
                |tasks| {
                    tasks.consumer(&config.group_id, handler);
                    // Erasures have a group of their own: a feedback backlog never delays them.
                    tasks.consumer(format!("{}-erasure", config.group_id), erasure);
                    // A group per instance: every replica reads every version.
                    tasks.consumer(
                        format!("{}-taxonomy-{}", config.group_id, uuid::Uuid::new_v4()),
                        taxonomy,
                    );
                    tasks.spawn(
                        "reclassifications",
                        reclassifications.run(tasks.stop_token()),
                    );
                },
            )
            .await
    }
}
