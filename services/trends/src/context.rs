//! The handles the consumer handlers and the HTTP handlers share: store, publisher,
//! detector state and the locks that keep them consistent. Passed down as one
//! `Arc<Context>` rather than held in globals.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use closeloop_bus::Publisher;
use closeloop_classify::{Language, PhraseExtractor, Taxonomy};

use crate::auth::OpsAuth;
use crate::detection::DetectionState;
use crate::emerging::Emerging;
use crate::impact::Impact;
use crate::metrics::TrendsMetrics;
use crate::store::{self, TrendsStore};

/// Action transitions: one at a time per theme (themes are independent, so mentions of
/// different themes are counted and acted on concurrently), and what touches every theme
/// (an erasure rewriting evidence, a rebuild of the counts) alone.
#[derive(Default)]
pub(crate) struct Transitions {
    every_theme: tokio::sync::RwLock<()>,
    themes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one theme's action changes.
pub(crate) struct ThemeTransition<'a> {
    _theme: tokio::sync::OwnedMutexGuard<()>,
    _every_theme: tokio::sync::RwLockReadGuard<'a, ()>,
}

impl Transitions {
    pub(crate) async fn of_theme(&self, theme: &str) -> ThemeTransition<'_> {
        let every_theme = self.every_theme.read().await;
        let lock = self
            .themes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(theme.to_owned())
            .or_default()
            .clone();
        ThemeTransition {
            _theme: lock.lock_owned().await,
            _every_theme: every_theme,
        }
    }

    /// Waits until no theme is in a transition and keeps all of them out.
    pub(crate) async fn of_every_theme(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.every_theme.write().await
    }
}

/// The handles shared by the consumer handler and the HTTP handlers.
pub(crate) struct Context {
    pub(crate) store: TrendsStore,
    pub(crate) publisher: Publisher,
    /// Never held across an await: every use is a short, synchronous update.
    pub(crate) detection: Mutex<DetectionState>,
    /// Held across a whole action transition (raise, update, resolve), awaits included,
    /// so the consumer and the API never interleave on the same action.
    pub(crate) transitions: Transitions,
    /// The current taxonomy version: swapped whole when another becomes current (see
    /// [`crate::taxonomy`]); read through [`Context::taxonomy`].
    pub(crate) taxonomy: RwLock<Arc<Taxonomy>>,
    pub(crate) metrics: TrendsMetrics,
    /// The ops token and the `/ops` sessions.
    pub(crate) ops: OpsAuth,
    /// 0 = never reopen automatically.
    pub(crate) reopen_within_ms: i64,
    /// Episodes whose evidence ended longer ago are historical findings (0 = none is).
    pub(crate) historical_after_ms: i64,
    /// The emerging-topic lists, their settings and the phrase extractor.
    pub(crate) emerging: Emerging,
    /// The themes' impact on NPS and rating as last computed, and its settings.
    pub(crate) impact: Impact,
    /// How the effects of resolutions are measured.
    pub(crate) effect: crate::effect::Settings,
    /// The Kafka bootstrap servers, for reading a topic once (a replay preview).
    pub(crate) brokers: String,
    /// The replay previews of taxonomy versions this instance runs and ran.
    pub(crate) previews: crate::preview::Previews,
}

impl Context {
    pub(crate) fn detection(&self) -> MutexGuard<'_, DetectionState> {
        // A panic while holding the lock leaves at worst a window that is slightly off;
        // refusing all further work because of it would be worse.
        self.detection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends to an action's history. The transition already happened and was
    /// announced; a history entry lost to a database hiccup is logged, not retried.
    pub(crate) async fn log(
        &self,
        envelope: &closeloop_events::Envelope<closeloop_events::ActionEvent>,
        action_id: &str,
        entry: &store::LogRow,
    ) {
        if let Err(error) = self
            .store
            .log(&envelope.event_id.to_string(), action_id, entry)
            .await
        {
            tracing::warn!(%action_id, %error, "could not write the action's history");
        }
    }

    /// The current taxonomy version.
    pub(crate) fn taxonomy(&self) -> Arc<Taxonomy> {
        self.taxonomy
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Makes `taxonomy` the current version of this instance, with a phrase extractor
    /// that leaves its cues out (a phrase that became a cue is no longer emerging).
    /// False when it already was current.
    pub(crate) fn switch_taxonomy(&self, taxonomy: Taxonomy) -> bool {
        if self.taxonomy().version == taxonomy.version {
            return false;
        }
        let extractor = PhraseExtractor::new(&taxonomy);
        let version = taxonomy.version.clone();
        *self
            .taxonomy
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(taxonomy);
        self.emerging.set_extractor(extractor);
        self.metrics.taxonomy_version(&version);
        true
    }

    /// The theme's display name per language, as actions carry it.
    pub(crate) fn theme_name(&self, theme: &str) -> BTreeMap<String, String> {
        let taxonomy = self.taxonomy();
        [Language::En, Language::De]
            .into_iter()
            .map(|language| {
                (
                    language.as_str().to_owned(),
                    taxonomy.theme_name(theme, language),
                )
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex, RwLock};
    use std::time::Duration;

    use closeloop_bus::{BusMetrics, Publisher, PublisherConfig};
    use closeloop_classify::{PhraseExtractor, Taxonomy};
    use closeloop_trend::{DetectorSettings, EmergingConfig};

    use super::Context;
    use crate::auth::OpsAuth;
    use crate::detection::DetectionState;
    use crate::metrics::TrendsMetrics;
    use crate::store::testing;

    /// A context whose publisher points at a port nobody listens on, so every publish
    /// fails after a short delivery timeout.
    pub(crate) async fn context_without_broker() -> Context {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let brokers = closed.local_addr().expect("address").to_string();
        drop(closed);
        let registry = prometheus::Registry::new();
        let publisher = Publisher::new(
            &PublisherConfig {
                delivery_timeout: Duration::from_millis(200),
                ..PublisherConfig::new(brokers.clone())
            },
            BusMetrics::register(&registry).expect("bus metrics"),
        )
        .expect("publisher");
        Context {
            store: testing::store().await,
            publisher,
            detection: Mutex::new(DetectionState::new(DetectorSettings::default())),
            transitions: Default::default(),
            taxonomy: RwLock::new(Arc::new(Taxonomy::builtin())),
            metrics: TrendsMetrics::register(&registry).expect("metrics"),
            ops: OpsAuth::new(None, 60, false, &[]),
            reopen_within_ms: 0,
            historical_after_ms: 0,
            emerging: crate::emerging::Emerging::new(
                crate::emerging::Settings {
                    refresh: Duration::from_secs(60),
                    window_ms: 7 * 24 * 3_600_000,
                    baseline_ms: 28 * 24 * 3_600_000,
                    rules: EmergingConfig::default(),
                },
                PhraseExtractor::new(&Taxonomy::builtin()),
            ),
            impact: crate::impact::Impact::new(crate::impact::Settings {
                refresh: Duration::from_secs(60),
                period_ms: 30 * 24 * 3_600_000,
                rules: closeloop_trend::ImpactConfig::default(),
            }),
            effect: crate::effect::Settings {
                refresh: Duration::from_secs(60),
                rules: closeloop_trend::EffectConfig::default(),
            },
            previews: crate::preview::Previews::new(&registry).expect("preview metrics"),
            brokers,
        }
    }
}
