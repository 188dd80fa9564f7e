//! Taxonomy versions at run time: categorise classifies with the newest valid version
//! read from `taxonomy.v1`, switching live, and hands the reclassifications the versions
//! ask for to [`crate::reclassify`].

use std::sync::{Arc, PoisonError, RwLock};

use closeloop_bus::{BusError, Handler, HandlerError, Incoming, TopicReader};
use closeloop_classify::{Classifier, LexiconClassifier, Taxonomy, TaxonomyError};
use closeloop_events::TaxonomyApplied;
use prometheus::IntGaugeVec;

use crate::reclassify::Jobs;

/// The classifier in use, swapped whole when a new version arrives: a batch takes one
/// [`Arc`] and classifies all of it with that version.
#[derive(Clone)]
pub struct LiveClassifier {
    current: Arc<RwLock<Arc<LexiconClassifier>>>,
    gauge: IntGaugeVec,
}

impl LiveClassifier {
    pub fn new(taxonomy: Taxonomy, gauge: IntGaugeVec) -> Self {
        gauge.with_label_values(&[&taxonomy.version]).set(1);
        Self {
            current: Arc::new(RwLock::new(Arc::new(LexiconClassifier::new(taxonomy)))),
            gauge,
        }
    }

    pub fn current(&self) -> Arc<LexiconClassifier> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Classifies with `taxonomy` from now on.
    pub fn switch(&self, taxonomy: Taxonomy) {
        let version = taxonomy.version.clone();
        let next = Arc::new(LexiconClassifier::new(taxonomy));
        let before = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *current, next)
        };
        let before_version = taxonomy_version(&before);
        if before_version != version {
            let _ = self.gauge.remove_label_values(&[&before_version]);
        }
        self.gauge.with_label_values(&[&version]).set(1);
        tracing::info!(
            from = %before_version,
            to = %version,
            "taxonomy switched: feedback is classified with the new version from now on"
        );
    }
}

/// The taxonomy version a classifier names (`lexicon-2+taxonomy-<version>`).
fn taxonomy_version(classifier: &LexiconClassifier) -> String {
    let version = classifier.version();
    match version.split_once("+taxonomy-") {
        Some((_, taxonomy)) => taxonomy.to_owned(),
        None => version,
    }
}

/// The taxonomy an applied version carries, validated again (the event names the same
/// version as the taxonomy it carries, or it is not trusted).
pub fn taxonomy_of(applied: &TaxonomyApplied) -> Result<Taxonomy, InvalidVersion> {
    let taxonomy = Taxonomy::from_json(applied.taxonomy.clone())?;
    if taxonomy.version != applied.version {
        return Err(InvalidVersion::Mismatch {
            event: applied.version.clone(),
            taxonomy: taxonomy.version,
        });
    }
    Ok(taxonomy)
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidVersion {
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    #[error("the event names version {event:?} but carries taxonomy {taxonomy:?}")]
    Mismatch { event: String, taxonomy: String },
}

/// What `taxonomy.v1` held when categorise started.
pub struct Loaded {
    /// The last valid version on the topic, if any.
    pub taxonomy: Option<Taxonomy>,
    /// The offset of the last record read (partition 0; the topic has one): records up
    /// to here are not switched to again by the live consumer.
    pub last_offset: Option<i64>,
}

/// Reads `taxonomy.v1` to its end: the version to start with, before any feedback is
/// classified, so a restarted replica never classifies with an older version.
pub async fn load_current(brokers: &str) -> Result<Loaded, BusError> {
    let mut reader = TopicReader::<TaxonomyApplied>::open(brokers, None).await?;
    let mut loaded = Loaded {
        taxonomy: None,
        last_offset: None,
    };
    while let Some(batch) = reader.next_batch(100).await? {
        for incoming in batch {
            loaded.last_offset = Some(incoming.offset.max(loaded.last_offset.unwrap_or(-1)));
            match taxonomy_of(&incoming.envelope.data) {
                Ok(taxonomy) => loaded.taxonomy = Some(taxonomy),
                Err(error) => tracing::error!(
                    version = %incoming.envelope.data.version,
                    offset = incoming.offset,
                    %error,
                    "taxonomy.v1 holds an invalid taxonomy; skipped"
                ),
            }
        }
    }
    Ok(loaded)
}

/// `taxonomy.v1`, in a consumer group of this instance's own (every instance reads every
/// record): switches to each newer version and submits the reclassifications asked for.
pub struct TaxonomyHandler {
    pub classifier: LiveClassifier,
    /// The last offset [`load_current`] read: the group starts at the earliest record, and
    /// switching back through older versions would be wrong.
    pub loaded_up_to: Option<i64>,
    pub jobs: Jobs,
}

impl Handler for TaxonomyHandler {
    type Event = TaxonomyApplied;

    async fn handle(&self, incoming: &Incoming<TaxonomyApplied>) -> Result<(), HandlerError> {
        let applied = &incoming.envelope.data;
        let taxonomy = match taxonomy_of(applied) {
            Ok(taxonomy) => taxonomy,
            Err(error) => {
                // Trends validates before it applies; a record that still fails here is
                // logged and left: the version in use stays.
                tracing::error!(
                    version = %applied.version,
                    offset = incoming.offset,
                    %error,
                    "invalid taxonomy on taxonomy.v1; skipped, the version in use stays"
                );
                return Ok(());
            }
        };
        let newer = self
            .loaded_up_to
            .is_none_or(|loaded| incoming.offset > loaded);
        if let Some(period) = applied.reclassify {
            // Every instance submits; the job table lets one run it. Also for records
            // read at start: a job whose event came while no instance ran is not lost
            // (a finished job is not run again).
            self.jobs
                .submit(&applied.version, period, &applied.taxonomy)
                .await?;
        }
        if newer {
            self.classifier.switch(taxonomy);
        }
        Ok(())
    }
}
