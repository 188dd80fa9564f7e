//! What the detectors are told: one [`DetectorConfig`] per theme, built from the global
//! settings with per-theme overrides ([`DetectorSettings`]). All times are milliseconds of
//! event time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Longest bucket, window or period accepted: longer ones keep too much state per theme
/// and are almost certainly a unit mistake.
const MAX_SPAN_MS: i64 = 31 * DAY;
/// Upper bound on buckets per theme (the window plus the history horizon a replay may
/// fold again, or one season).
const MAX_BUCKETS: i64 = 10_000;

/// The detection rules of one theme.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Granularity of the counts: event time is cut into buckets of this length, aligned
    /// to the Unix epoch (so the same events give the same buckets on every instance).
    pub bucket_ms: i64,
    /// Length of the surge window (a whole number of buckets); it slides bucket by bucket
    /// and ends at the newest event time seen for the theme.
    pub window_ms: i64,
    /// How far behind the newest event time of the theme a mention may arrive and still
    /// count in the bucket of its event time, whatever order it arrives in. Older ones are
    /// dropped (and reported as beyond the horizon). At least the longest detector span.
    pub history_horizon_ms: i64,
    /// Both detectors need at least this many distinct complaining customers: one angry
    /// customer posting fifty times is not a trend.
    pub min_distinct_customers: u32,
    /// Hysteresis: once raised, a theme stays active until neither detector has fired
    /// for this long (event time), so an action does not flap on and off at the edge.
    pub cooldown_ms: i64,
    pub surge: SurgeConfig,
    pub recurrence: RecurrenceConfig,
}

/// Surge: the current window is significantly above the theme's own baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurgeConfig {
    pub enabled: bool,
    /// Negative mentions (each customer counted at most `per_customer_cap` times) the
    /// window needs before significance is even considered.
    pub min_negative_mentions: u32,
    /// Largest Poisson tail probability P(X >= observed | baseline) that counts as a
    /// surge: the chance that the theme's normal level produced this window.
    pub max_p_value: f64,
    /// The window must also be at least this many times its expected count, so a busy
    /// theme is not raised for a statistically significant but small rise.
    pub min_ratio: f64,
    /// Half-life of the exponentially weighted baseline (event time).
    pub baseline_half_life_ms: i64,
    /// Expected negative mentions per window for a theme with no (or a silent)
    /// history: the floor under the baseline.
    pub min_baseline: f64,
    /// Length of the seasonal cycle whose shape the baseline learns per bucket of the
    /// cycle (a day: mornings are busier than nights); 0 turns seasonality off.
    pub season_ms: i64,
    /// A customer's negative mentions count at most this many times per window (and per
    /// bucket in the baseline), so one customer can neither surge a theme nor inflate
    /// its baseline.
    pub per_customer_cap: u32,
}

/// Recurrence: the theme keeps coming back, above a floor of distinct complaining
/// customers in `k` of the last `n` periods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecurrenceConfig {
    pub enabled: bool,
    /// Length of one period (a whole number of buckets), aligned to the Unix epoch.
    pub period_ms: i64,
    /// Distinct complaining customers a period needs to count as "above the floor".
    pub floor: u32,
    pub k: u32,
    pub n: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            bucket_ms: 10 * MINUTE,
            window_ms: HOUR,
            history_horizon_ms: 7 * DAY,
            min_distinct_customers: 5,
            cooldown_ms: 2 * HOUR,
            surge: SurgeConfig::default(),
            recurrence: RecurrenceConfig::default(),
        }
    }
}

impl Default for SurgeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_negative_mentions: 10,
            max_p_value: 0.0001,
            min_ratio: 2.0,
            baseline_half_life_ms: 6 * HOUR,
            min_baseline: 0.3,
            season_ms: DAY,
            per_customer_cap: 3,
        }
    }
}

impl Default for RecurrenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            period_ms: DAY,
            floor: 10,
            k: 3,
            n: 5,
        }
    }
}

/// A setting that makes no sense, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

pub(crate) fn check(ok: bool, field: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field: field.to_owned(),
            reason: reason.into(),
        })
    }
}

impl DetectorConfig {
    /// Refuses settings that would raise an action for every complaint, never raise one,
    /// or keep unbounded state.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.bucket_ms >= 1_000 && self.bucket_ms <= DAY,
            "bucket",
            "must be between 1 second and 1 day",
        )?;
        check(
            self.window_ms >= self.bucket_ms && self.window_ms <= MAX_SPAN_MS,
            "window",
            "must be at least one bucket and at most 31 days",
        )?;
        check(
            self.window_ms % self.bucket_ms == 0,
            "window",
            "must be a whole number of buckets",
        )?;
        check(
            self.history_horizon_ms <= MAX_SPAN_MS,
            "history_horizon",
            "must be at most 31 days",
        )?;
        check(
            self.history_horizon_ms >= self.window_ms,
            "history_horizon",
            "must be at least the window",
        )?;
        check(
            !self.recurrence.enabled
                || self.history_horizon_ms
                    >= i64::from(self.recurrence.n).saturating_mul(self.recurrence.period_ms),
            "history_horizon",
            "must be at least the recurrence span (n periods)",
        )?;
        check(
            (self.window_ms + self.history_horizon_ms) / self.bucket_ms <= MAX_BUCKETS,
            "bucket",
            format!("window + history horizon span more than {MAX_BUCKETS} buckets"),
        )?;
        check(
            self.min_distinct_customers >= 1,
            "min_distinct_customers",
            "must be at least 1",
        )?;
        check(
            (0..=MAX_SPAN_MS).contains(&self.cooldown_ms),
            "cooldown",
            "must be between 0 and 31 days",
        )?;
        check(
            self.surge.enabled || self.recurrence.enabled,
            "surge.enabled",
            "at least one detector must be enabled",
        )?;
        let s = &self.surge;
        check(
            s.min_negative_mentions >= 1,
            "surge.min_negative_mentions",
            "must be at least 1",
        )?;
        check(
            s.max_p_value > 0.0 && s.max_p_value < 1.0,
            "surge.max_p_value",
            "must be between 0 and 1 (exclusive)",
        )?;
        check(
            s.min_ratio.is_finite() && s.min_ratio >= 1.0,
            "surge.min_ratio",
            "must be at least 1",
        )?;
        check(
            s.baseline_half_life_ms >= self.bucket_ms && s.baseline_half_life_ms <= MAX_SPAN_MS,
            "surge.baseline_half_life",
            "must be between one bucket and 31 days",
        )?;
        check(
            s.min_baseline.is_finite() && s.min_baseline > 0.0,
            "surge.min_baseline",
            "must be above 0",
        )?;
        check(
            s.season_ms == 0
                || (s.season_ms >= self.window_ms
                    && s.season_ms % self.bucket_ms == 0
                    && s.season_ms / self.bucket_ms <= MAX_BUCKETS),
            "surge.season",
            "must be 0 (off) or a whole number of buckets, at least one window, at most 10000 buckets",
        )?;
        check(
            s.per_customer_cap >= 1,
            "surge.per_customer_cap",
            "must be at least 1",
        )?;
        let r = &self.recurrence;
        check(
            r.period_ms >= self.bucket_ms && r.period_ms <= MAX_SPAN_MS,
            "recurrence.period",
            "must be between one bucket and 31 days",
        )?;
        check(
            r.period_ms % self.bucket_ms == 0,
            "recurrence.period",
            "must be a whole number of buckets",
        )?;
        check(r.floor >= 1, "recurrence.floor", "must be at least 1")?;
        check(
            r.n >= 1 && r.n <= 366,
            "recurrence.n",
            "must be between 1 and 366",
        )?;
        check(
            r.k >= 1 && r.k <= r.n,
            "recurrence.k",
            "must be between 1 and n",
        )?;
        Ok(())
    }

    /// Buckets per surge window.
    pub fn window_buckets(&self) -> i64 {
        self.window_ms / self.bucket_ms
    }

    /// How much event time the detector needs to have seen to be fully warmed up: used
    /// to decide how far back a restarted service replays its stored mentions.
    pub fn history_ms(&self) -> i64 {
        let baseline = if self.surge.enabled {
            // Five half-lives leave 3% of the initial value: close enough to converged.
            (5 * self.surge.baseline_half_life_ms).max(3 * self.surge.season_ms)
        } else {
            0
        };
        let recurrence = if self.recurrence.enabled {
            i64::from(self.recurrence.n) * self.recurrence.period_ms
        } else {
            0
        };
        baseline
            .max(recurrence)
            .max(self.window_ms)
            .max(self.history_horizon_ms)
    }

    /// The surge rule in words, for an action's evidence and the ops page.
    pub fn describe_surge(&self) -> String {
        format!(
            "surge: >= {} negative mentions from >= {} distinct customers within {}, \
             >= {}x the baseline and p <= {}",
            self.surge.min_negative_mentions,
            self.min_distinct_customers,
            span(self.window_ms),
            self.surge.min_ratio,
            self.surge.max_p_value
        )
    }

    /// The recurrence rule in words.
    pub fn describe_recurrence(&self) -> String {
        format!(
            "recurrence: >= {} distinct complaining customers per {} in {} of the last {} \
             (>= {} distinct in all)",
            self.recurrence.floor,
            span(self.recurrence.period_ms),
            self.recurrence.k,
            self.recurrence.n,
            self.min_distinct_customers
        )
    }

    /// The enabled rules in words.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.surge.enabled {
            parts.push(self.describe_surge());
        }
        if self.recurrence.enabled {
            parts.push(self.describe_recurrence());
        }
        parts.join("; ")
    }
}

/// A duration in the largest unit that divides it: `1 h`, `90 min`, `2 d`.
pub fn span(ms: i64) -> String {
    if ms % DAY == 0 {
        format!("{} d", ms / DAY)
    } else if ms % HOUR == 0 {
        format!("{} h", ms / HOUR)
    } else if ms % MINUTE == 0 {
        format!("{} min", ms / MINUTE)
    } else {
        format!("{} s", ms / 1000)
    }
}

/// The global rules and the themes that deviate from them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectorSettings {
    pub default: DetectorConfig,
    /// Complete configurations for the themes that have overrides.
    #[serde(default)]
    pub themes: BTreeMap<String, DetectorConfig>,
}

impl DetectorSettings {
    pub fn new(default: DetectorConfig) -> Self {
        Self {
            default,
            themes: BTreeMap::new(),
        }
    }

    pub fn for_theme(&self, theme: &str) -> &DetectorConfig {
        self.themes.get(theme).unwrap_or(&self.default)
    }

    /// Validates the default and every theme's rules; the error names the theme.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default.validate()?;
        for (theme, config) in &self.themes {
            config.validate().map_err(|error| ConfigError {
                field: format!("themes.{theme}.{}", error.field),
                reason: error.reason,
            })?;
        }
        Ok(())
    }

    /// The longest history any theme needs (see [`DetectorConfig::history_ms`]).
    pub fn history_ms(&self) -> i64 {
        self.themes
            .values()
            .map(DetectorConfig::history_ms)
            .fold(self.default.history_ms(), i64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_described() {
        let config = DetectorConfig::default();
        config.validate().expect("valid");
        assert_eq!(config.window_buckets(), 6);
        let described = config.describe();
        assert!(described.contains("within 1 h"), "{described}");
        assert!(
            described.contains("per 1 d in 3 of the last 5"),
            "{described}"
        );
        assert_eq!(config.history_ms(), 7 * DAY);
    }

    #[test]
    fn nonsense_is_refused_with_the_field() {
        let bad = |change: fn(&mut DetectorConfig)| {
            let mut config = DetectorConfig::default();
            change(&mut config);
            config.validate().expect_err("invalid").field
        };
        assert_eq!(bad(|c| c.window_ms = 25 * MINUTE), "window");
        assert_eq!(bad(|c| c.bucket_ms = 0), "bucket");
        assert_eq!(
            bad(|c| c.min_distinct_customers = 0),
            "min_distinct_customers"
        );
        assert_eq!(bad(|c| c.surge.max_p_value = 1.0), "surge.max_p_value");
        assert_eq!(bad(|c| c.surge.min_ratio = 0.5), "surge.min_ratio");
        assert_eq!(bad(|c| c.surge.season_ms = 7 * MINUTE), "surge.season");
        assert_eq!(bad(|c| c.recurrence.k = 6), "recurrence.k");
        assert_eq!(
            bad(|c| {
                c.surge.enabled = false;
                c.recurrence.enabled = false
            }),
            "surge.enabled"
        );
        assert_eq!(
            bad(|c| {
                c.bucket_ms = MINUTE;
                c.window_ms = HOUR
            }),
            "bucket",
            "too many buckets"
        );
        assert_eq!(
            bad(|c| c.history_horizon_ms = 4 * DAY),
            "history_horizon",
            "shorter than the recurrence span"
        );
        assert_eq!(bad(|c| c.history_horizon_ms = 32 * DAY), "history_horizon");
    }

    #[test]
    fn theme_overrides_are_validated_by_name() {
        let mut settings = DetectorSettings::new(DetectorConfig::default());
        let mut price = DetectorConfig::default();
        price.recurrence.floor = 0;
        settings.themes.insert("price".into(), price);
        let error = settings.validate().expect_err("invalid");
        assert_eq!(error.field, "themes.price.recurrence.floor");
        assert_eq!(settings.for_theme("price").recurrence.floor, 0);
        assert_eq!(settings.for_theme("delivery_time").recurrence.floor, 10);
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(HOUR), "1 h");
        assert_eq!(span(90 * MINUTE), "90 min");
        assert_eq!(span(2 * DAY), "2 d");
        assert_eq!(span(1500), "1 s");
    }
}
