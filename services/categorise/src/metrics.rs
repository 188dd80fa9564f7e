use prometheus::{HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct CategoriseMetrics {
    pub categorised: IntCounterVec,
    pub theme_mentions: IntCounterVec,
    pub latency: HistogramVec,
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
        let theme_mentions = IntCounterVec::new(
            Opts::new(
                "closeloop_theme_mentions_total",
                "Theme mentions found, by theme and the sentiment of the mention.",
            ),
            &["theme", "sentiment"],
        )?;
        let latency = closeloop_telemetry::pipeline_latency_histogram()?;
        registry.register(Box::new(categorised.clone()))?;
        registry.register(Box::new(theme_mentions.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self {
            categorised,
            theme_mentions,
            latency,
        })
    }
}
