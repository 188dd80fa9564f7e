use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

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
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "closeloop_pipeline_latency_seconds",
                "Time from ingest accepting a feedback to this stage, by stage.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["stage"],
        )?;
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
