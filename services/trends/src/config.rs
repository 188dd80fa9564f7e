//! The service's configuration: flags with environment fallbacks, parsed once by clap, and
//! an optional TOML file with per-theme detector overrides.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use clap::ArgAction;
use closeloop_runtime::parse_period;
use closeloop_trend::{
    DetectorConfig, DetectorSettings, EffectConfig, EmergingConfig, ImpactConfig, RecurrenceConfig,
    SurgeConfig,
};
use serde::Deserialize;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Everything the trends service needs to know at start-up.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "trends",
    about = "Detects surging and recurring negative themes in feedback.themes.v1 and raises actions on actions.v1"
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: closeloop_bus::KafkaArgs,
    #[command(flatten)]
    pub database: closeloop_store::DatabaseArgs,
    #[command(flatten)]
    pub pseudonym: closeloop_runtime::PseudonymArgs,
    /// Address of the ops API, the /ops page and /metrics, /healthz, /readyz.
    #[arg(long, env = "TRENDS_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,
    /// Timeouts and the connection bound of the HTTP server (`HTTP_*`).
    #[command(flatten)]
    pub http: closeloop_http::HttpLimits,
    /// When set, /v1/* requires `Authorization: Bearer <token>` and /ops a sign-in with it.
    #[arg(long, env = "TRENDS_OPS_TOKEN", hide_env_values = true)]
    pub ops_token: Option<closeloop_http::OpsToken>,
    /// How long an /ops sign-in lasts, in minutes (expired sessions are pruned).
    #[arg(long, env = "TRENDS_OPS_SESSION_TTL_MINUTES", default_value_t = 480)]
    pub ops_session_ttl_minutes: i64,
    /// Mark the /ops session cookie `Secure` (browsers then send it over HTTPS only): set
    /// it wherever /ops is served over HTTPS; off for `up` on http://localhost.
    #[arg(long, env = "TRENDS_OPS_SECURE_COOKIE", default_value_t = false, action = ArgAction::Set)]
    pub ops_secure_cookie: bool,
    /// The origins (`https://ops.example.com`, comma-separated) /ops forms may be posted
    /// from [default: the request's own `Host`, over http or https]. Set it behind a
    /// proxy that rewrites `Host`.
    #[arg(long, env = "TRENDS_OPS_ORIGIN", value_delimiter = ',')]
    pub ops_origin: Vec<String>,
    /// Taxonomy file for theme display names [default: the built-in taxonomy].
    #[arg(long, env = "TRENDS_TAXONOMY")]
    pub taxonomy: Option<PathBuf>,
    /// Granularity of the counts, in minutes of event time (divides the window).
    #[arg(long, env = "TRENDS_BUCKET_MINUTES", default_value_t = 10)]
    pub bucket_minutes: i64,
    /// Length of the sliding surge window, in minutes of event time.
    #[arg(long, env = "TRENDS_WINDOW_MINUTES", default_value_t = 60)]
    pub window_minutes: i64,
    /// Surge: negative mentions within the window needed before significance is tested.
    #[arg(long, env = "TRENDS_MIN_NEGATIVE_MENTIONS", default_value_t = 10)]
    pub min_negative_mentions: u32,
    /// Both detectors: distinct complaining customers needed (one angry customer is no trend).
    #[arg(long, env = "TRENDS_MIN_DISTINCT_CUSTOMERS", default_value_t = 5)]
    pub min_distinct_customers: u32,
    /// How far behind the newest mention of a theme a mention still counts, in its own
    /// event-time bucket and whatever order it arrives in (at least the recurrence span).
    #[arg(long, env = "TRENDS_HISTORY_HORIZON_DAYS", default_value_t = 7)]
    pub history_horizon_days: i64,
    /// Hysteresis: a raised theme stays active until no detector fired for this long.
    #[arg(long, env = "TRENDS_COOLDOWN_MINUTES", default_value_t = 120)]
    pub cooldown_minutes: i64,
    /// Surge detector on or off.
    #[arg(long, env = "TRENDS_SURGE_ENABLED", default_value_t = true, action = ArgAction::Set)]
    pub surge_enabled: bool,
    /// Surge: largest Poisson tail probability of the window under the baseline.
    #[arg(long, env = "TRENDS_SURGE_MAX_P_VALUE", default_value_t = 0.0001)]
    pub surge_max_p_value: f64,
    /// Surge: the window must be at least this many times the baseline.
    #[arg(long, env = "TRENDS_SURGE_MIN_RATIO", default_value_t = 2.0)]
    pub surge_min_ratio: f64,
    /// Surge: half-life of the baseline's exponentially weighted mean, in hours.
    #[arg(long, env = "TRENDS_SURGE_HALF_LIFE_HOURS", default_value_t = 6)]
    pub surge_half_life_hours: i64,
    /// Surge: expected negative mentions per window for a theme without history.
    #[arg(long, env = "TRENDS_SURGE_MIN_BASELINE", default_value_t = 0.3)]
    pub surge_min_baseline: f64,
    /// Surge: length of the seasonal cycle the baseline learns, in hours (0 = off).
    #[arg(long, env = "TRENDS_SURGE_SEASON_HOURS", default_value_t = 24)]
    pub surge_season_hours: i64,
    /// Surge: a customer's negative mentions count at most this often per window.
    #[arg(long, env = "TRENDS_PER_CUSTOMER_CAP", default_value_t = 3)]
    pub per_customer_cap: u32,
    /// Recurrence detector on or off.
    #[arg(long, env = "TRENDS_RECURRENCE_ENABLED", default_value_t = true, action = ArgAction::Set)]
    pub recurrence_enabled: bool,
    /// Recurrence: length of one period, in hours.
    #[arg(long, env = "TRENDS_RECURRENCE_PERIOD_HOURS", default_value_t = 24)]
    pub recurrence_period_hours: i64,
    /// Recurrence: distinct complaining customers a period needs.
    #[arg(long, env = "TRENDS_RECURRENCE_FLOOR", default_value_t = 10)]
    pub recurrence_floor: u32,
    /// Recurrence: periods above the floor needed ...
    #[arg(long, env = "TRENDS_RECURRENCE_K", default_value_t = 3)]
    pub recurrence_k: u32,
    /// ... among the last this many.
    #[arg(long, env = "TRENDS_RECURRENCE_N", default_value_t = 5)]
    pub recurrence_n: u32,
    /// TOML file with per-theme overrides of the detector settings (`[themes.<id>]`).
    #[arg(long, env = "TRENDS_DETECTOR_CONFIG")]
    pub detector_config: Option<PathBuf>,
    /// A theme that fires again within this many hours of its action's resolution
    /// reopens that action instead of raising a new one (0 = always a new action).
    #[arg(long, env = "TRENDS_REOPEN_WITHIN_HOURS", default_value_t = 168)]
    pub reopen_within_hours: i64,
    /// An episode whose evidence ended more than this many hours ago (event time, e.g.
    /// found in imported history) is a historical finding: reported, never raised as an
    /// action, so no customer is told about it (0 = raise whatever the age).
    #[arg(long, env = "TRENDS_HISTORICAL_AFTER_HOURS", default_value_t = 72)]
    pub historical_after_hours: i64,
    /// Emerging topics: how often the lists are computed again from the stored feedback,
    /// in seconds.
    #[arg(long, env = "TRENDS_EMERGING_REFRESH_SECONDS", default_value_t = 60)]
    pub emerging_refresh_seconds: u64,
    /// Emerging topics: the recent window, in days of event time ending at the newest
    /// stored feedback.
    #[arg(long, env = "TRENDS_EMERGING_WINDOW_DAYS", default_value_t = 7)]
    pub emerging_window_days: i64,
    /// Emerging topics: the baseline, in days of event time before the window.
    #[arg(long, env = "TRENDS_EMERGING_BASELINE_DAYS", default_value_t = 28)]
    pub emerging_baseline_days: i64,
    /// Emerging topics: distinct customers in the window a listed phrase needs.
    #[arg(long, env = "TRENDS_EMERGING_MIN_CUSTOMERS", default_value_t = 5)]
    pub emerging_min_customers: u32,
    /// Emerging topics: largest Poisson tail probability of the window's customers under
    /// the phrase's baseline share.
    #[arg(long, env = "TRENDS_EMERGING_MAX_P_VALUE", default_value_t = 0.001)]
    pub emerging_max_p_value: f64,
    /// Emerging topics: the window's customers must be at least this multiple of what the
    /// baseline share predicts.
    #[arg(long, env = "TRENDS_EMERGING_MIN_RATIO", default_value_t = 2.0)]
    pub emerging_min_ratio: f64,
    /// Theme impact: the period the ranking on `/ops`, the action evidence and the
    /// `closeloop_theme_*_impact` gauges cover, in days up to now.
    #[arg(long, env = "TRENDS_IMPACT_DAYS", default_value_t = 30)]
    pub impact_days: i64,
    /// Theme impact: scored feedback needed both with the theme mentioned negatively and
    /// without it; fewer is "not enough data".
    #[arg(long, env = "TRENDS_IMPACT_MIN_COUNT", default_value_t = 10)]
    pub impact_min_count: u32,
    /// Theme impact: how often the gauges and the evidence figures are computed again, in
    /// seconds.
    #[arg(long, env = "TRENDS_IMPACT_REFRESH_SECONDS", default_value_t = 60)]
    pub impact_refresh_seconds: u64,
    /// Effect of a resolution: the length of the windows of event time compared, before
    /// and after it (`7d`, `36h`, `90m`).
    #[arg(long, env = "TRENDS_EFFECT_WINDOW", default_value = "7d", value_parser = parse_period)]
    pub effect_window: Duration,
    /// Effect: fewer negative mentions than this in both windows together are not
    /// enough data for a verdict.
    #[arg(
        long,
        env = "TRENDS_EFFECT_MIN_NEGATIVE_MENTIONS",
        default_value_t = 10
    )]
    pub effect_min_negative_mentions: u32,
    /// Effect: a one-sided p-value below this is a significant change.
    #[arg(long, env = "TRENDS_EFFECT_MAX_P_VALUE", default_value_t = 0.05)]
    pub effect_max_p_value: f64,
    /// Effect: how often the effects of resolved actions are measured again (`1m`, `30s`).
    #[arg(long, env = "TRENDS_EFFECT_REFRESH", default_value = "1m", value_parser = parse_period)]
    pub effect_refresh: Duration,
    /// Kafka consumer group; instances in one group share the themes by partition.
    #[arg(long, env = "TRENDS_GROUP_ID", default_value = "closeloop-trends")]
    pub group_id: String,
}

/// Per-theme overrides as written in the detector config file; every field optional,
/// unknown fields refused (a typo must not silently keep the default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThemeOverride {
    pub bucket_minutes: Option<i64>,
    pub window_minutes: Option<i64>,
    pub history_horizon_days: Option<i64>,
    pub min_distinct_customers: Option<u32>,
    pub cooldown_minutes: Option<i64>,
    #[serde(default)]
    pub surge: SurgeOverride,
    #[serde(default)]
    pub recurrence: RecurrenceOverride,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeOverride {
    pub enabled: Option<bool>,
    pub min_negative_mentions: Option<u32>,
    pub max_p_value: Option<f64>,
    pub min_ratio: Option<f64>,
    pub half_life_hours: Option<i64>,
    pub min_baseline: Option<f64>,
    pub season_hours: Option<i64>,
    pub per_customer_cap: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurrenceOverride {
    pub enabled: Option<bool>,
    pub period_hours: Option<i64>,
    pub floor: Option<u32>,
    pub k: Option<u32>,
    pub n: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    #[serde(default)]
    themes: BTreeMap<String, ThemeOverride>,
}

impl ThemeOverride {
    fn apply(&self, base: &DetectorConfig) -> DetectorConfig {
        let mut c = base.clone();
        let minutes = |v: Option<i64>, current: i64| v.map_or(current, |m| m * MINUTE_MS);
        let hours = |v: Option<i64>, current: i64| v.map_or(current, |h| h * HOUR_MS);
        c.bucket_ms = minutes(self.bucket_minutes, c.bucket_ms);
        c.window_ms = minutes(self.window_minutes, c.window_ms);
        c.history_horizon_ms = self
            .history_horizon_days
            .map_or(c.history_horizon_ms, |d| d.saturating_mul(DAY_MS));
        c.min_distinct_customers = self
            .min_distinct_customers
            .unwrap_or(c.min_distinct_customers);
        c.cooldown_ms = minutes(self.cooldown_minutes, c.cooldown_ms);
        let s = &self.surge;
        c.surge.enabled = s.enabled.unwrap_or(c.surge.enabled);
        c.surge.min_negative_mentions = s
            .min_negative_mentions
            .unwrap_or(c.surge.min_negative_mentions);
        c.surge.max_p_value = s.max_p_value.unwrap_or(c.surge.max_p_value);
        c.surge.min_ratio = s.min_ratio.unwrap_or(c.surge.min_ratio);
        c.surge.baseline_half_life_ms = hours(s.half_life_hours, c.surge.baseline_half_life_ms);
        c.surge.min_baseline = s.min_baseline.unwrap_or(c.surge.min_baseline);
        c.surge.season_ms = hours(s.season_hours, c.surge.season_ms);
        c.surge.per_customer_cap = s.per_customer_cap.unwrap_or(c.surge.per_customer_cap);
        let r = &self.recurrence;
        c.recurrence.enabled = r.enabled.unwrap_or(c.recurrence.enabled);
        c.recurrence.period_ms = hours(r.period_hours, c.recurrence.period_ms);
        c.recurrence.floor = r.floor.unwrap_or(c.recurrence.floor);
        c.recurrence.k = r.k.unwrap_or(c.recurrence.k);
        c.recurrence.n = r.n.unwrap_or(c.recurrence.n);
        c
    }
}

/// Parses the per-theme override file's text on top of `default`.
pub fn parse_overrides(
    text: &str,
    default: &DetectorConfig,
) -> Result<BTreeMap<String, DetectorConfig>, String> {
    let file: OverrideFile = toml::from_str(text).map_err(|e| e.to_string())?;
    file.themes
        .iter()
        .map(|(theme, overrides)| {
            crate::detection::check_theme(theme)?;
            Ok((theme.clone(), overrides.apply(default)))
        })
        .collect()
}

/// The settings `validate` found good.
#[derive(Debug, Clone)]
pub struct Checked {
    pub detector: DetectorSettings,
    /// 0 = never reopen automatically.
    pub reopen_within_ms: i64,
    /// 0 = nothing is historical.
    pub historical_after_ms: i64,
    pub emerging: crate::emerging::Settings,
    pub impact: crate::impact::Settings,
    pub effect: crate::effect::Settings,
}

impl Config {
    /// The global detector rules from the flags.
    pub fn detector_default(&self) -> DetectorConfig {
        DetectorConfig {
            bucket_ms: self.bucket_minutes.saturating_mul(MINUTE_MS),
            window_ms: self.window_minutes.saturating_mul(MINUTE_MS),
            history_horizon_ms: self.history_horizon_days.saturating_mul(DAY_MS),
            min_distinct_customers: self.min_distinct_customers,
            cooldown_ms: self.cooldown_minutes.saturating_mul(MINUTE_MS),
            surge: SurgeConfig {
                enabled: self.surge_enabled,
                min_negative_mentions: self.min_negative_mentions,
                max_p_value: self.surge_max_p_value,
                min_ratio: self.surge_min_ratio,
                baseline_half_life_ms: self.surge_half_life_hours.saturating_mul(HOUR_MS),
                min_baseline: self.surge_min_baseline,
                season_ms: self.surge_season_hours.saturating_mul(HOUR_MS),
                per_customer_cap: self.per_customer_cap,
            },
            recurrence: RecurrenceConfig {
                enabled: self.recurrence_enabled,
                period_ms: self.recurrence_period_hours.saturating_mul(HOUR_MS),
                floor: self.recurrence_floor,
                k: self.recurrence_k,
                n: self.recurrence_n,
            },
        }
    }

    /// Checks the settings (reading the override file, if any). A zero window or
    /// threshold would raise an action for every single complaint, so those are refused
    /// at start-up with the setting's name.
    pub fn validate(&self) -> Result<Checked, String> {
        let default = self.detector_default();
        let themes = match &self.detector_config {
            None => BTreeMap::new(),
            Some(path) => read_overrides(path, &default)?,
        };
        let detector = DetectorSettings { default, themes };
        detector
            .validate()
            .map_err(|e| format!("detector setting {e}"))?;
        if !(1..=30 * 24 * 60).contains(&self.ops_session_ttl_minutes) {
            return Err(format!(
                "ops_session_ttl_minutes must be between 1 and 30 days, got {}",
                self.ops_session_ttl_minutes
            ));
        }
        for origin in &self.ops_origin {
            crate::auth::check_origin(origin).map_err(|e| format!("ops_origin {origin:?}: {e}"))?;
        }
        if !(0..=365 * 24).contains(&self.reopen_within_hours) {
            return Err(format!(
                "reopen_within_hours must be between 0 and a year, got {}",
                self.reopen_within_hours
            ));
        }
        if !(0..=10 * 365 * 24).contains(&self.historical_after_hours) {
            return Err(format!(
                "historical_after_hours must be between 0 and ten years, got {}",
                self.historical_after_hours
            ));
        }
        Ok(Checked {
            detector,
            reopen_within_ms: self.reopen_within_hours * HOUR_MS,
            historical_after_ms: self.historical_after_hours * HOUR_MS,
            emerging: self.emerging()?,
            impact: self.impact()?,
            effect: self.effect()?,
        })
    }

    /// The theme-impact settings, checked.
    fn impact(&self) -> Result<crate::impact::Settings, String> {
        if !(1..=24 * 3600).contains(&self.impact_refresh_seconds) {
            return Err(format!(
                "impact_refresh_seconds must be between 1 and a day, got {}",
                self.impact_refresh_seconds
            ));
        }
        if !(1..=365).contains(&self.impact_days) {
            return Err(format!(
                "impact_days must be between 1 and 365, got {}",
                self.impact_days
            ));
        }
        let rules = ImpactConfig {
            min_count: self.impact_min_count,
            ..ImpactConfig::default()
        };
        rules
            .validate()
            .map_err(|e| format!("impact setting {e}"))?;
        Ok(crate::impact::Settings {
            refresh: std::time::Duration::from_secs(self.impact_refresh_seconds),
            period_ms: self.impact_days * DAY_MS,
            rules,
        })
    }

    /// The effect settings, checked.
    fn effect(&self) -> Result<crate::effect::Settings, String> {
        let window_ms = i64::try_from(self.effect_window.as_millis()).unwrap_or(i64::MAX);
        if !(MINUTE_MS..=365 * DAY_MS).contains(&window_ms) {
            return Err(format!(
                "effect_window must be between a minute and a year, got {:?}",
                self.effect_window
            ));
        }
        if self.effect_refresh.is_zero() || self.effect_refresh > Duration::from_secs(86_400) {
            return Err(format!(
                "effect_refresh must be between 1s and a day, got {:?}",
                self.effect_refresh
            ));
        }
        if !(self.effect_max_p_value > 0.0 && self.effect_max_p_value < 1.0) {
            return Err(format!(
                "effect_max_p_value must be between 0 and 1, got {}",
                self.effect_max_p_value
            ));
        }
        Ok(crate::effect::Settings {
            refresh: self.effect_refresh,
            rules: EffectConfig {
                window_ms,
                min_negative_mentions: self.effect_min_negative_mentions,
                max_p_value: self.effect_max_p_value,
            },
        })
    }

    /// The emerging-topics settings, checked.
    fn emerging(&self) -> Result<crate::emerging::Settings, String> {
        if !(1..=24 * 3600).contains(&self.emerging_refresh_seconds) {
            return Err(format!(
                "emerging_refresh_seconds must be between 1 and a day, got {}",
                self.emerging_refresh_seconds
            ));
        }
        if !(1..=90).contains(&self.emerging_window_days) {
            return Err(format!(
                "emerging_window_days must be between 1 and 90, got {}",
                self.emerging_window_days
            ));
        }
        if !(1..=365).contains(&self.emerging_baseline_days) {
            return Err(format!(
                "emerging_baseline_days must be between 1 and 365, got {}",
                self.emerging_baseline_days
            ));
        }
        let rules = EmergingConfig {
            min_customers: self.emerging_min_customers,
            max_p_value: self.emerging_max_p_value,
            min_ratio: self.emerging_min_ratio,
            ..EmergingConfig::default()
        };
        rules
            .validate()
            .map_err(|e| format!("emerging setting {e}"))?;
        Ok(crate::emerging::Settings {
            refresh: std::time::Duration::from_secs(self.emerging_refresh_seconds),
            window_ms: self.emerging_window_days * DAY_MS,
            baseline_ms: self.emerging_baseline_days * DAY_MS,
            rules,
        })
    }
}

fn read_overrides(
    path: &Path,
    default: &DetectorConfig,
) -> Result<BTreeMap<String, DetectorConfig>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read detector config {}: {e}", path.display()))?;
    parse_overrides(&text, default).map_err(|e| format!("detector config {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_give_the_documented_rules() {
        let config = Config::parse_from(["trends"]);
        let checked = config.validate().expect("defaults are valid");
        assert_eq!(checked.detector.default, DetectorConfig::default());
        assert!(checked.detector.themes.is_empty());
        assert_eq!(checked.reopen_within_ms, 7 * 24 * HOUR_MS);
        assert_eq!(checked.emerging.rules, EmergingConfig::default());
        assert_eq!(checked.emerging.window_ms, 7 * DAY_MS);
        assert_eq!(checked.emerging.baseline_ms, 28 * DAY_MS);
        assert_eq!(checked.emerging.refresh.as_secs(), 60);
        assert_eq!(checked.impact.rules, ImpactConfig::default());
        assert_eq!(checked.impact.period_ms, 30 * DAY_MS);
        assert_eq!(checked.effect.rules, EffectConfig::default());
        assert_eq!(checked.effect.refresh.as_secs(), 60);
        assert_eq!(config.group_id, "closeloop-trends");
    }

    #[test]
    fn nonsense_is_rejected_with_the_setting() {
        let error = |args: &[&str]| {
            let mut all = vec!["trends"];
            all.extend_from_slice(args);
            Config::parse_from(all).validate().expect_err("invalid")
        };
        assert!(error(&["--window-minutes", "0"]).contains("window"));
        assert!(error(&["--window-minutes", "25"]).contains("whole number of buckets"));
        assert!(error(&["--min-distinct-customers", "0"]).contains("min_distinct_customers"));
        assert!(error(&["--surge-max-p-value", "2"]).contains("max_p_value"));
        assert!(error(&["--recurrence-k", "9"]).contains("recurrence.k"));
        assert!(error(&["--ops-session-ttl-minutes", "0"]).contains("ops_session_ttl"));
        assert!(error(&["--ops-origin", "https://ops.example.com/ops"]).contains("ops_origin"));
        assert!(error(&["--ops-origin", "ops.example.com"]).contains("ops_origin"));
        let blank = Config::try_parse_from(["trends", "--ops-token", " "]).expect_err("blank");
        assert!(blank.to_string().contains("must not be blank"), "{blank}");
        assert!(
            error(&["--surge-enabled", "false", "--recurrence-enabled", "false"])
                .contains("at least one detector")
        );
        assert!(error(&["--detector-config", "/nonexistent.toml"]).contains("cannot read"));
        assert!(error(&["--emerging-refresh-seconds", "0"]).contains("emerging_refresh"));
        assert!(error(&["--impact-min-count", "1"]).contains("min_count"));
        assert!(error(&["--impact-days", "0"]).contains("impact_days"));
        assert!(error(&["--effect-window", "30s"]).contains("effect_window"));
        assert!(error(&["--effect-refresh", "0"]).contains("effect_refresh"));
        assert!(error(&["--effect-max-p-value", "1"]).contains("effect_max_p_value"));
        assert!(error(&["--emerging-window-days", "0"]).contains("emerging_window_days"));
        assert!(error(&["--emerging-baseline-days", "400"]).contains("emerging_baseline"));
        assert!(error(&["--emerging-min-customers", "0"]).contains("min_customers"));
        assert!(error(&["--emerging-max-p-value", "1.5"]).contains("max_p_value"));
    }

    #[test]
    fn the_ops_token_never_reaches_debug_output() {
        let config = Config::parse_from(["trends", "--ops-token", "tok-s3cret-value"]);
        assert_eq!(
            config.ops_token.as_ref().map(|t| t.expose()),
            Some("tok-s3cret-value")
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("ops_token: Some([redacted])"), "{printed}");
    }

    #[test]
    fn theme_overrides_apply_on_top_of_the_flags() {
        let config = Config::parse_from(["trends", "--min-distinct-customers", "4"]);
        let default = config.detector_default();
        let themes = parse_overrides(
            r#"
            [themes.price]
            min_distinct_customers = 10
            window_minutes = 120
            [themes.price.surge]
            max_p_value = 0.00001
            [themes.price.recurrence]
            enabled = false
            [themes.delivery_time.recurrence]
            floor = 20
            "#,
            &default,
        )
        .expect("valid file");
        let price = &themes["price"];
        assert_eq!(price.min_distinct_customers, 10);
        assert_eq!(price.window_ms, 2 * HOUR_MS);
        assert_eq!(price.surge.max_p_value, 0.00001);
        assert!(!price.recurrence.enabled);
        assert_eq!(
            price.surge.min_ratio, default.surge.min_ratio,
            "not overridden"
        );
        assert_eq!(themes["delivery_time"].recurrence.floor, 20);
        assert_eq!(
            themes["delivery_time"].min_distinct_customers, 4,
            "from the flag"
        );
    }

    #[test]
    fn a_bad_override_file_names_the_problem() {
        let default = DetectorConfig::default();
        let typo =
            parse_overrides("[themes.price]\nwindow_minute = 5\n", &default).expect_err("typo");
        assert!(typo.contains("window_minute"), "{typo}");
        let theme =
            parse_overrides("[themes.Price]\nwindow_minutes = 60\n", &default).expect_err("theme");
        assert!(theme.contains("Price"), "{theme}");
        let settings = DetectorSettings {
            themes: parse_overrides("[themes.price]\nwindow_minutes = 25\n", &default)
                .expect("parses"),
            default,
        };
        let error = settings
            .validate()
            .expect_err("not a whole number of buckets");
        assert_eq!(error.field, "themes.price.window");
    }
}
