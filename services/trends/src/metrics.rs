//! The service's own metrics, registered on its telemetry registry next to the bus and
//! HTTP metrics. Labels are bounded: themes come from the taxonomy, events are a fixed set.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct TrendsMetrics {
    /// 1 while a theme has an open action, 0 after it was resolved.
    pub actions_open: IntGaugeVec,
    /// Action lifecycle events published, by `event` (raised, updated, resolved).
    pub actions_total: IntCounterVec,
}

impl TrendsMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let actions_open = IntGaugeVec::new(
            Opts::new("closeloop_actions_open", "Open actions, by theme."),
            &["theme"],
        )?;
        let actions_total = IntCounterVec::new(
            Opts::new(
                "closeloop_actions_total",
                "Action events published on actions.v1, by event.",
            ),
            &["event"],
        )?;
        registry.register(Box::new(actions_open.clone()))?;
        registry.register(Box::new(actions_total.clone()))?;
        // Zero series up front, so dashboards and rate() see the counters before the
        // first action is ever raised.
        for event in ["raised", "updated", "resolved"] {
            actions_total.with_label_values(&[event]);
        }
        Ok(Self {
            actions_open,
            actions_total,
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
}
