//! The handles the consumer handlers and the HTTP handlers share: store, publisher,
//! detector state and the locks that keep them consistent. Passed down as one
//! `Arc<Context>` rather than held in globals.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use closeloop_bus::Publisher;
use closeloop_classify::{Language, Taxonomy};

use crate::auth::OpsAuth;
use crate::detection::DetectionState;
use crate::metrics::TrendsMetrics;
use crate::store::{self, TrendsStore};

/// The handles shared by the consumer handler and the HTTP handlers.
pub(crate) struct Context {
    pub(crate) store: TrendsStore,
    pub(crate) publisher: Publisher,
    /// Never held across an await: every use is a short, synchronous update.
    pub(crate) detection: Mutex<DetectionState>,
    /// Held across a whole action transition (raise, update, resolve), awaits included,
    /// so the consumer and the API never interleave on the same action.
    pub(crate) transitions: tokio::sync::Mutex<()>,
    pub(crate) taxonomy: Taxonomy,
    pub(crate) metrics: TrendsMetrics,
    /// The ops token and the `/ops` sessions.
    pub(crate) ops: OpsAuth,
    /// 0 = never reopen automatically.
    pub(crate) reopen_within_ms: i64,
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

    /// The theme's display name per language, as actions carry it.
    pub(crate) fn theme_name(&self, theme: &str) -> BTreeMap<String, String> {
        [Language::En, Language::De]
            .into_iter()
            .map(|language| {
                (
                    language.as_str().to_owned(),
                    self.taxonomy.theme_name(theme, language),
                )
            })
            .collect()
    }
}
