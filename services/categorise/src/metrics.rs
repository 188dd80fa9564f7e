use closeloop_events::Language;
use prometheus::{HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct CategoriseMetrics {
    pub categorised: IntCounterVec,
    /// Feedback that matched no theme, by language: over `categorised`, the share the
    /// taxonomy does not cover (an alert watches it jump).
    pub unmatched: IntCounterVec,
    pub theme_mentions: IntCounterVec,
    pub latency: HistogramVec,
    pub id_conflicts: IntCounter,
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
        Ok(Self {
            categorised,
            unmatched,
            theme_mentions,
            latency,
            id_conflicts,
        })
    }
}
