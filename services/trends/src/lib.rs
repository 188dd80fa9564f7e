//! The trends service: reads `feedback.themes.v1`, counts mentions per theme by event
//! time, raises one action per theme on `actions.v1` when a theme surges or keeps
//! recurring (reopening its last action when it comes back soon after a resolution), and
//! serves the ops API and the `/ops` page through which an operator acknowledges, assigns
//! and resolves it with the message customers will get. A second consumer applies
//! `privacy.erasure.v1` (see [`erasure`]); a third stores the feedback that matched no
//! theme or is negative, from which the emerging topics are computed (see [`emerging`]),
//! and every scored feedback, from which each theme's impact on NPS and rating is
//! computed (see [`impact`]).
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
mod chart;
mod config;
mod context;
mod detection;
mod effect;
mod emerging;
mod erasure;
mod evidence;
mod impact;
mod metrics;
mod ops;
mod preview;
mod request;
mod routes;
mod store;
mod taxonomy;
mod workflow;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use closeloop_classify::{PhraseExtractor, Taxonomy};
use closeloop_runtime::Foundation;
use closeloop_store::StoreError;
use tokio_util::sync::CancellationToken;

pub use closeloop_runtime::Error;
pub use config::{parse_overrides, Config, ThemeOverride};

use auth::OpsAuth;
use context::Context;
use detection::{DetectionState, ThemesHandler};
use metrics::TrendsMetrics;
use store::TrendsStore;

/// A built, not yet running, trends service.
pub struct Service {
    ctx: Arc<Context>,
    foundation: Foundation,
    group_id: String,
}

impl Service {
    /// Connects and migrates the database, prepares the topics, rebuilds the detector
    /// windows from the stored mentions and binds the HTTP listener.
    pub async fn build(config: Config) -> Result<Service, Error> {
        let checked = config.validate().map_err(Error::Config)?;
        let taxonomy = match &config.taxonomy {
            Some(path) => Taxonomy::load(path).map_err(|e| Error::setup("taxonomy", e))?,
            None => Taxonomy::builtin(),
        };
        let foundation = Foundation::start(closeloop_runtime::spec!("trends", config)).await?;
        let store = TrendsStore::new(
            foundation.db.clone(),
            config.pseudonym.pseudonyms("trends", &foundation.db),
        );
        let metrics = TrendsMetrics::register(&foundation.telemetry.registry)?;
        let previews = preview::Previews::new(&foundation.telemetry.registry)?;

        let (detection, replayed) = DetectionState::rebuild(checked.detector, &store)
            .await
            .map_err(StoreError::from)?;
        let open = store.open_since().await.map_err(StoreError::from)?;
        for (theme, since_ms) in &open {
            metrics.opened(theme, *since_ms);
        }
        tracing::info!(
            replayed,
            open_actions = open.len(),
            "detector state rebuilt"
        );

        let ctx = Arc::new(Context {
            store,
            publisher: foundation.publisher.clone(),
            detection: Mutex::new(detection),
            transitions: Default::default(),
            metrics,
            ops: OpsAuth::new(
                config.ops_token,
                config.ops_session_ttl_minutes,
                config.ops_secure_cookie,
                &config.ops_origin,
            ),
            reopen_within_ms: checked.reopen_within_ms,
            historical_after_ms: checked.historical_after_ms,
            emerging: emerging::Emerging::new(checked.emerging, PhraseExtractor::new(&taxonomy)),
            impact: impact::Impact::new(checked.impact),
            effect: checked.effect,
            taxonomy: RwLock::new(Arc::new(taxonomy)),
            brokers: foundation.brokers.clone(),
            previews,
        });
        // The stored current version replaces the file's (run-time edits survive).
        taxonomy::follow_at_start(&ctx, &foundation.brokers).await?;
        Ok(Service {
            ctx,
            foundation,
            group_id: config.group_id,
        })
    }

    /// The address the HTTP server listens on (the real port when configured with 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.foundation.http_addr()
    }

    /// Consumes `feedback.themes.v1`, `feedback.categorised.v1` (emerging topics) and
    /// `privacy.erasure.v1`, keeps the emerging-topic lists fresh and serves HTTP until
    /// `shutdown` is cancelled (or a part fails), then finishes in-flight work, commits
    /// and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Service {
            ctx,
            foundation,
            group_id,
        } = self;
        let routes = routes::router(ctx.clone());
        foundation
            .run(shutdown, routes, |tasks| {
                let themes = ThemesHandler::new(ctx.clone());
                tasks.spawn(
                    "trends evidence settler",
                    detection::settle_evidence(themes.clone(), tasks.stop_token()),
                );
                tasks.consumer(&group_id, themes);
                // Emerging topics read every categorised feedback, in a group of their
                // own: a backlog there never holds up the themes' detection.
                tasks.spawn(
                    "trends emerging topics",
                    emerging::keep_fresh(ctx.clone(), tasks.stop_token()),
                );
                tasks.spawn(
                    "trends theme impact",
                    impact::keep_fresh(ctx.clone(), tasks.stop_token()),
                );
                // Did "we did" work: the effect of each resolution, by event time.
                tasks.spawn(
                    "trends effects",
                    effect::keep_measured(ctx.clone(), tasks.stop_token()),
                );
                tasks.consumer(
                    format!("{group_id}-topics"),
                    emerging::TopicFeedbackHandler::new(ctx.clone()),
                );
                // Every instance reads every taxonomy version: a group of its own.
                tasks.consumer(
                    format!("{group_id}-taxonomy-{}", uuid::Uuid::new_v4().simple()),
                    taxonomy::TaxonomyHandler::new(ctx.clone()),
                );
                // Erasure requests have their own consumer group, so a backlog of
                // mentions never delays them (and the other way round).
                tasks.consumer(
                    format!("{group_id}-erasure"),
                    erasure::ErasureHandler::new(ctx),
                );
            })
            .await
    }
}
