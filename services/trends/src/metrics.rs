//! The service's own metrics, registered on its telemetry registry next to the bus and
//! HTTP metrics. Labels are bounded: themes come from the taxonomy, events and reasons
//! are fixed sets.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Every `actions.v1` event kind, so each series exists from the start.
const EVENTS: [&str; 6] = [
    "raised",
    "updated",
    "acknowledged",
    "assigned",
    "resolved",
    "reopened",
];

#[derive(Clone)]
pub struct TrendsMetrics {
    /// 1 while a theme has an unresolved action, 0 after it was resolved.
    pub actions_open: IntGaugeVec,
    /// Action lifecycle events published, by `event`.
    pub actions_total: IntCounterVec,
    /// From the event time of the mention that made a theme fire to the action being
    /// raised or reopened: how late the ops team hears of it.
    pub detection_delay: Histogram,
    /// Mentions the detector did not count, by `reason` (too_late, before_resolution).
    pub mentions_dropped: IntCounterVec,
}

impl TrendsMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let actions_open = IntGaugeVec::new(
            Opts::new("closeloop_actions_open", "Unresolved actions, by theme."),
            &["theme"],
        )?;
        let actions_total = IntCounterVec::new(
            Opts::new(
                "closeloop_actions_total",
                "Action events published on actions.v1, by event.",
            ),
            &["event"],
        )?;
        let detection_delay = Histogram::with_opts(
            HistogramOpts::new(
                "closeloop_trends_detection_delay_seconds",
                "Event time of the mention that made a theme fire → action raised or reopened.",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
                86400.0,
            ]),
        )?;
        let mentions_dropped = IntCounterVec::new(
            Opts::new(
                "closeloop_trends_mentions_dropped_total",
                "Theme mentions the detector did not count, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(actions_open.clone()))?;
        registry.register(Box::new(actions_total.clone()))?;
        registry.register(Box::new(detection_delay.clone()))?;
        registry.register(Box::new(mentions_dropped.clone()))?;
        // Zero series up front, so dashboards and rate() see the counters before the
        // first action is ever raised.
        for event in EVENTS {
            actions_total.with_label_values(&[event]);
        }
        for reason in ["too_late", "before_resolution"] {
            mentions_dropped.with_label_values(&[reason]);
        }
        Ok(Self {
            actions_open,
            actions_total,
            detection_delay,
            mentions_dropped,
        })
    }

    pub fn opened(&self, theme: &str) {
        self.actions_open.with_label_values(&[theme]).set(1);
    }

    pub fn closed(&self, theme: &str) {
        self.actions_open.with_label_values(&[theme]).set(0);
    }

    pub fn event(&self, event: &str) {
        self.actions_total.with_label_values(&[event]).inc();
    }

    /// Records a detection delay; a negative one (a client clock ahead) counts as 0.
    pub fn detection_delay(&self, delay_ms: i64) {
        self.detection_delay
            .observe(delay_ms.max(0) as f64 / 1000.0);
    }

    pub fn dropped(&self, reason: &str) {
        self.mentions_dropped.with_label_values(&[reason]).inc();
    }
}
