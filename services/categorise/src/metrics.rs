use closeloop_events::Language;
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct CategoriseMetrics {
    pub categorised: IntCounterVec,
    /// Feedback that matched no theme, by language: over `categorised`, the share the
    /// taxonomy does not cover (an alert watches it jump).
    pub unmatched: IntCounterVec,
    pub theme_mentions: IntCounterVec,
    pub latency: HistogramVec,
    pub id_conflicts: IntCounter,
    /// 1 for the taxonomy version feedback is classified with now (the series of the
    /// version before is removed on a switch).
    pub taxonomy_version: IntGaugeVec,
    /// Feedback a reclassification looked at, by what it did: `changed` (themes added and
    /// published), `unchanged`, `skipped` (not stored here, erased, or another body).
    pub reclassified: IntCounterVec,
}

impl CategoriseMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let categorised = IntCounterVec::new(
            Opts::new(
                "closeloop_feedback_categorised_total",
                "Feedback categorised, by language and sentiment.",
            ),
            &["language", "sentiment"],
        )?;
        let unmatched = IntCounterVec::new(
            Opts::new(
                "closeloop_feedback_unmatched_total",
                "Feedback categorised that matched no theme, by language.",
            ),
            &["language"],
        )?;
        let theme_mentions = IntCounterVec::new(
            Opts::new(
                "closeloop_theme_mentions_total",
                "Theme mentions found, by theme and the sentiment of the mention.",
            ),
            &["theme", "sentiment"],
        )?;
        let latency = closeloop_telemetry::pipeline_latency_histogram()?;
        let id_conflicts = IntCounter::new(
            "closeloop_feedback_id_conflicts_total",
            "Feedback records whose id was stored before with other content (nothing of them is published).",
        )?;
        registry.register(Box::new(id_conflicts.clone()))?;
        registry.register(Box::new(categorised.clone()))?;
        registry.register(Box::new(unmatched.clone()))?;
        // Every language's series from the start, so the share reads 0, not "no data",
        // until the first feedback matches nothing.
        for language in [Language::En, Language::De, Language::Other] {
            unmatched.with_label_values(&[language.as_str()]);
        }
        registry.register(Box::new(theme_mentions.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        let taxonomy_version = IntGaugeVec::new(
            Opts::new(
                "closeloop_categorise_taxonomy_version_info",
                "The taxonomy version feedback is classified with (1 for the one in use).",
            ),
            &["version"],
        )?;
        registry.register(Box::new(taxonomy_version.clone()))?;
        let reclassified = IntCounterVec::new(
            Opts::new(
                "closeloop_categorise_reclassified_total",
                "Feedback looked at by a reclassification, by result (changed, unchanged, skipped).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(reclassified.clone()))?;
        for result in ["changed", "unchanged", "skipped"] {
            reclassified.with_label_values(&[result]);
        }
        Ok(Self {
            categorised,
            unmatched,
            theme_mentions,
            latency,
            id_conflicts,
            taxonomy_version,
            reclassified,
        })
    }
}
