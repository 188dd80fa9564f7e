//! The service's own metrics, registered on its telemetry registry next to the bus and
//! HTTP metrics. Labels are bounded: themes come from the taxonomy, events and reasons
//! are fixed sets.

use chrono::{DateTime, Utc};
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Every `actions.v1` event kind, so each series exists from the start.
const EVENTS: [&str; 7] = [
    "raised",
    "updated",
    "acknowledged",
    "assigned",
    "resolved",
    "reopened",
    "effect_measured",
];

/// Every final effect verdict (`too_early` is never published), so each series exists
/// from the start.
const VERDICTS: [&str; 4] = ["improved", "no_change", "worse", "not_enough_data"];

#[derive(Clone)]
pub struct TrendsMetrics {
    /// 1 while a theme has an unresolved action, 0 after it was resolved.
    pub actions_open: IntGaugeVec,
    /// Action lifecycle events published, by `event`.
    pub actions_total: IntCounterVec,
    /// From the event time of the mention that made a theme fire to the action being
    /// raised or reopened: how late the ops team hears of it.
    pub detection_delay: Histogram,
    /// Mentions the detector did not count, by `reason` (beyond_horizon, before_resolution).
    pub mentions_dropped: IntCounterVec,
    /// Episodes found in the past and reported as historical findings, not raised.
    pub historical_findings: IntCounter,
    /// Themes whose stored evidence is behind their mentions until the settler reads it
    /// again (0 once evidence reflects every mention counted).
    pub evidence_pending: IntGauge,
    /// When each theme's unresolved action was raised or last reopened, as a Unix
    /// time, so an alert can say how long it has been waiting. Absent when resolved.
    pub opened_timestamp: GaugeVec,
    /// Feedback event time → action (`stage="action"`), accepted → counted
    /// (`stage="counted"`); shared with the other services.
    pub pipeline_latency: HistogramVec,
    /// Phrases listed as emerging topics, by `kind` (unmatched, negative).
    pub emerging: IntGaugeVec,
    /// How much higher NPS (points) and the average rating of the last `TRENDS_IMPACT_DAYS`
    /// would be without the feedback mentioning the theme negatively; absent while there
    /// is not enough data.
    pub theme_nps_impact: GaugeVec,
    pub theme_rating_impact: GaugeVec,
    /// Final effect verdicts of resolved actions published, by `verdict`.
    pub effect_verdicts: IntCounterVec,
    /// Taxonomy versions proposed, applied, and changes refused, by `change`.
    pub taxonomy_changes: IntCounterVec,
    /// 1 for the taxonomy version this instance classifies and names themes with.
    pub taxonomy_version: IntGaugeVec,
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
        let historical_findings = IntCounter::new(
            "closeloop_trends_historical_findings_total",
            "Episodes whose evidence lay entirely in the past: reported as historical findings, not raised.",
        )?;
        let evidence_pending = IntGauge::new(
            "closeloop_trends_evidence_pending_themes",
            "Themes whose stored evidence awaits being read again after their mentions changed.",
        )?;
        let opened_timestamp = GaugeVec::new(
            Opts::new(
                "closeloop_action_opened_timestamp_seconds",
                "Unix time the theme's unresolved action was raised or last reopened.",
            ),
            &["theme"],
        )?;
        let pipeline_latency = closeloop_telemetry::pipeline_latency_histogram()?;
        let emerging = IntGaugeVec::new(
            Opts::new(
                "closeloop_trends_emerging_topics",
                "Phrases listed as emerging topics when the lists were last computed, by kind.",
            ),
            &["kind"],
        )?;
        let theme_nps_impact = GaugeVec::new(
            Opts::new(
                "closeloop_theme_nps_impact",
                "NPS points the last period would gain without the feedback mentioning the theme negatively.",
            ),
            &["theme"],
        )?;
        let theme_rating_impact = GaugeVec::new(
            Opts::new(
                "closeloop_theme_rating_impact",
                "Average rating (1-5) the last period would gain without the feedback mentioning the theme negatively.",
            ),
            &["theme"],
        )?;
        registry.register(Box::new(theme_nps_impact.clone()))?;
        registry.register(Box::new(theme_rating_impact.clone()))?;
        let effect_verdicts = IntCounterVec::new(
            Opts::new(
                "closeloop_trends_effect_verdicts_total",
                "Final effect verdicts of resolved actions published on actions.v1, by verdict.",
            ),
            &["verdict"],
        )?;
        registry.register(Box::new(effect_verdicts.clone()))?;
        let taxonomy_changes = IntCounterVec::new(
            Opts::new(
                "closeloop_trends_taxonomy_changes_total",
                "Taxonomy versions proposed and applied, and changes refused, by change.",
            ),
            &["change"],
        )?;
        registry.register(Box::new(taxonomy_changes.clone()))?;
        let taxonomy_version = IntGaugeVec::new(
            Opts::new(
                "closeloop_trends_taxonomy_version_info",
                "1 for the taxonomy version this instance follows.",
            ),
            &["version"],
        )?;
        registry.register(Box::new(taxonomy_version.clone()))?;
        for change in ["proposed", "applied", "rejected"] {
            taxonomy_changes.with_label_values(&[change]);
        }
        registry.register(Box::new(emerging.clone()))?;
        registry.register(Box::new(actions_open.clone()))?;
        registry.register(Box::new(actions_total.clone()))?;
        registry.register(Box::new(detection_delay.clone()))?;
        registry.register(Box::new(mentions_dropped.clone()))?;
        registry.register(Box::new(historical_findings.clone()))?;
        registry.register(Box::new(evidence_pending.clone()))?;
        registry.register(Box::new(opened_timestamp.clone()))?;
        registry.register(Box::new(pipeline_latency.clone()))?;
        // Zero series up front, so dashboards and rate() see the counters before the
        // first action is ever raised.
        for event in EVENTS {
            actions_total.with_label_values(&[event]);
        }
        for reason in ["beyond_horizon", "before_resolution"] {
            mentions_dropped.with_label_values(&[reason]);
        }
        for verdict in VERDICTS {
            effect_verdicts.with_label_values(&[verdict]);
        }
        for kind in crate::emerging::Kind::ALL {
            emerging.with_label_values(&[kind.as_str()]);
        }
        Ok(Self {
            actions_open,
            actions_total,
            detection_delay,
            mentions_dropped,
            historical_findings,
            evidence_pending,
            opened_timestamp,
            pipeline_latency,
            emerging,
            theme_nps_impact,
            theme_rating_impact,
            effect_verdicts,
            taxonomy_changes,
            taxonomy_version,
        })
    }

    /// A theme's impact on NPS and rating; `None` removes the series (not enough data).
    pub(crate) fn theme_impact(&self, theme: &str, nps: Option<f64>, rating: Option<f64>) {
        for (gauge, value) in [
            (&self.theme_nps_impact, nps),
            (&self.theme_rating_impact, rating),
        ] {
            match value {
                Some(value) => gauge.with_label_values(&[theme]).set(value),
                None => {
                    let _ = gauge.remove_label_values(&[theme]);
                }
            }
        }
    }

    /// `change`: proposed, applied or rejected.
    pub(crate) fn taxonomy_change(&self, change: &str) {
        self.taxonomy_changes.with_label_values(&[change]).inc();
    }

    /// `version` is now the one followed: its series alone is 1.
    pub(crate) fn taxonomy_version(&self, version: &str) {
        self.taxonomy_version.reset();
        self.taxonomy_version.with_label_values(&[version]).set(1);
    }

    pub fn effect_verdict(&self, verdict: &str) {
        self.effect_verdicts.with_label_values(&[verdict]).inc();
    }

    /// The theme's action is unresolved since `since_ms` (raised or reopened then).
    pub fn opened(&self, theme: &str, since_ms: i64) {
        self.actions_open.with_label_values(&[theme]).set(1);
        self.opened_timestamp
            .with_label_values(&[theme])
            .set(since_ms as f64 / 1000.0);
    }

    pub fn closed(&self, theme: &str) {
        self.actions_open.with_label_values(&[theme]).set(0);
        // Removed rather than zeroed: `time() - min(...)` must not see a 1970 opening.
        let _ = self.opened_timestamp.remove_label_values(&[theme]);
    }

    pub fn event(&self, event: &str) {
        self.actions_total.with_label_values(&[event]).inc();
    }

    /// Records a detection delay; a negative one (a client clock ahead) counts as 0.
    /// Also the pipeline's `action` stage: the same span, on the shared histogram.
    pub fn detection_delay(&self, delay_ms: i64) {
        let seconds = delay_ms.max(0) as f64 / 1000.0;
        self.detection_delay.observe(seconds);
        self.pipeline_latency
            .with_label_values(&["action"])
            .observe(seconds);
    }

    /// Accepted by ingest → counted here (`stage="counted"`): how far behind the live
    /// stream the detector is. Mentions without `received_at` are not observed.
    pub fn counted(&self, received_at: Option<DateTime<Utc>>) {
        if let Some(received_at) = received_at {
            let seconds = (Utc::now() - received_at).num_milliseconds().max(0) as f64 / 1000.0;
            self.pipeline_latency
                .with_label_values(&["counted"])
                .observe(seconds);
        }
    }

    pub(crate) fn emerging_topics(&self, kind: crate::emerging::Kind, listed: usize) {
        self.emerging
            .with_label_values(&[kind.as_str()])
            .set(listed as i64);
    }

    pub fn dropped(&self, reason: &str) {
        self.mentions_dropped.with_label_values(&[reason]).inc();
    }
}
