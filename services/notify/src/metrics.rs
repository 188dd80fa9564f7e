//! notify's own metrics, registered once in the service's registry and passed around
//! in the handlers' and worker's context (no globals).

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The `result` values of `closeloop_ops_alerts_total`.
pub const OPS_ALERT_RESULTS: [&str; 5] = [
    "queued",
    "suppressed",
    "delivered",
    "failed",
    "dead_lettered",
];

#[derive(Clone)]
pub struct NotifyMetrics {
    /// Attempt outcomes by channel and outcome (`delivered`, `retrying`, `dead_lettered`).
    pub notifications: IntCounterVec,
    /// Customers owed a notification who were not sent one, by reason (`no_consent`,
    /// `no_route`, `unsubscribed`, `frequency_cap`, `erased`).
    pub skipped: IntCounterVec,
    /// Outbox row created → destination accepted it, by channel.
    pub delivery_seconds: HistogramVec,
    /// One attempt (request or SMTP transaction), by channel.
    pub attempt_seconds: HistogramVec,
    /// Sends postponed by the per-destination rate limit, by channel.
    pub rate_limited: IntCounterVec,
    /// Outbox rows by status (`pending`, `held`, `combined`, `delivered`, `dead`,
    /// `cancelled`).
    pub outbox: IntGaugeVec,
    /// `notifications.v1` records that could not be published (the outbox stays the truth).
    pub outcome_publish_failures: IntCounter,
    /// Feedback event time → its "you said, we did" delivered (`stage="notified"`).
    pub pipeline_latency: HistogramVec,
    /// Messages held by the frequency cap until their customer's period ends.
    pub held: IntCounter,
    /// Held messages folded into another one's combined message.
    pub combined: IntCounter,
    /// Preference records that changed a customer's preferences, by what they say
    /// (`subscribed`, `unsubscribed`).
    pub preference_updates: IntCounterVec,
    /// One-click unsubscribe requests by result (`unsubscribed`, `invalid`, `expired`).
    pub unsubscribes: IntCounterVec,
    /// Ops alerts by target kind (`slack`, `teams`, `webhook`) and result (`queued`,
    /// `suppressed` by the quiet period, `delivered`, `failed` attempt that will be
    /// retried, `dead_lettered`).
    pub ops_alerts: IntCounterVec,
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
        let delivery_seconds = HistogramVec::new(
            HistogramOpts::new(
                "closeloop_notification_delivery_seconds",
                "Time from a notification being queued to its delivery, by channel.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
            &["channel"],
        )?;
        let attempt_seconds = HistogramVec::new(
            HistogramOpts::new(
                "closeloop_notification_attempt_seconds",
                "Duration of one delivery attempt, by channel.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["channel"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "closeloop_notifications_rate_limited_total",
                "Sends postponed because their destination had used its rate.",
            ),
            &["channel"],
        )?;
        let outbox = IntGaugeVec::new(
            Opts::new(
                "closeloop_notification_outbox",
                "Notification outbox rows by status (refreshed every few seconds).",
            ),
            &["status"],
        )?;
        let outcome_publish_failures = IntCounter::with_opts(Opts::new(
            "closeloop_notification_outcome_publish_failures_total",
            "notifications.v1 records that could not be published.",
        ))?;
        let pipeline_latency = closeloop_telemetry::pipeline_latency_histogram()?;
        let held = IntCounter::with_opts(Opts::new(
            "closeloop_notifications_held_total",
            "Notifications held by the frequency cap until their customer's period ends.",
        ))?;
        let combined = IntCounter::with_opts(Opts::new(
            "closeloop_notifications_combined_total",
            "Held notifications sent as part of another one's combined message.",
        ))?;
        let preference_updates = IntCounterVec::new(
            Opts::new(
                "closeloop_notify_preference_updates_total",
                "Customer preference records that changed what notify knows, by what they say.",
            ),
            &["state"],
        )?;
        let unsubscribes = IntCounterVec::new(
            Opts::new(
                "closeloop_notify_unsubscribe_requests_total",
                "One-click unsubscribe requests, by result.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(delivery_seconds.clone()))?;
        registry.register(Box::new(attempt_seconds.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(outbox.clone()))?;
        registry.register(Box::new(outcome_publish_failures.clone()))?;
        registry.register(Box::new(pipeline_latency.clone()))?;
        // Known label values start at 0, so the series exist (and rates work) before
        // the first unsubscribe.
        for state in ["subscribed", "unsubscribed"] {
            preference_updates.with_label_values(&[state]);
        }
        for result in ["unsubscribed", "invalid", "expired"] {
            unsubscribes.with_label_values(&[result]);
        }
        let ops_alerts = IntCounterVec::new(
            Opts::new(
                "closeloop_ops_alerts_total",
                "Ops alerts (Slack, Teams, webhook) by target kind and result.",
            ),
            &["kind", "result"],
        )?;
        for kind in crate::ops_alert::Target::ALL {
            for result in OPS_ALERT_RESULTS {
                ops_alerts.with_label_values(&[kind.as_str(), result]);
            }
        }
        registry.register(Box::new(ops_alerts.clone()))?;
        registry.register(Box::new(held.clone()))?;
        registry.register(Box::new(combined.clone()))?;
        registry.register(Box::new(preference_updates.clone()))?;
        registry.register(Box::new(unsubscribes.clone()))?;
        Ok(Self {
            notifications,
            skipped,
            delivery_seconds,
            attempt_seconds,
            rate_limited,
            outbox,
            outcome_publish_failures,
            pipeline_latency,
            held,
            combined,
            preference_updates,
            unsubscribes,
            ops_alerts,
        })
    }
}
