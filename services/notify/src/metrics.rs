//! notify's own metrics, registered once in the service's registry and passed around
//! in the handlers' and worker's context (no globals).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct NotifyMetrics {
    /// Attempt outcomes by channel and outcome (`delivered`, `retrying`, `dead_lettered`).
    pub notifications: IntCounterVec,
    /// Recipients not notified, by reason (`no_consent`).
    pub skipped: IntCounterVec,
    /// Outbox row created → receiver accepted it.
    pub delivery_seconds: Histogram,
    /// `notifications.v1` records that could not be published (the outbox stays the truth).
    pub outcome_publish_failures: IntCounter,
}

impl NotifyMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let notifications = IntCounterVec::new(
            Opts::new(
                "closeloop_notifications_total",
                "Notification attempt outcomes by channel and outcome.",
            ),
            &["channel", "outcome"],
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "closeloop_notifications_skipped_total",
                "Customers owed a notification who were not notified, by reason.",
            ),
            &["reason"],
        )?;
        let delivery_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "closeloop_notification_delivery_seconds",
                "Time from a notification being queued to its delivery.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
        )?;
        let outcome_publish_failures = IntCounter::with_opts(Opts::new(
            "closeloop_notification_outcome_publish_failures_total",
            "notifications.v1 records that could not be published.",
        ))?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(delivery_seconds.clone()))?;
        registry.register(Box::new(outcome_publish_failures.clone()))?;
        Ok(Self {
            notifications,
            skipped,
            delivery_seconds,
            outcome_publish_failures,
        })
    }
}
