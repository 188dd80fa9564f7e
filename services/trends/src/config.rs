//! The service's configuration: flags with environment fallbacks, parsed once by clap.

use std::net::SocketAddr;
use std::path::PathBuf;

use closeloop_trend::DetectorConfig;

/// Everything the trends service needs to know at start-up.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "trends",
    about = "Detects recurring negative themes in feedback.themes.v1 and raises actions on actions.v1"
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: closeloop_bus::KafkaArgs,
    #[command(flatten)]
    pub database: closeloop_store::DatabaseArgs,
    /// Address of the ops API and /metrics, /healthz, /readyz.
    #[arg(long, env = "TRENDS_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,
    /// When set, /v1/* requires `Authorization: Bearer <token>`.
    #[arg(long, env = "TRENDS_OPS_TOKEN", hide_env_values = true)]
    pub ops_token: Option<String>,
    /// Taxonomy file for theme display names [default: the built-in taxonomy].
    #[arg(long, env = "TRENDS_TAXONOMY")]
    pub taxonomy: Option<PathBuf>,
    /// Length of the sliding detection window, in minutes of event time.
    #[arg(long, env = "TRENDS_WINDOW_MINUTES", default_value_t = 60)]
    pub window_minutes: i64,
    /// Negative mentions within the window that raise an action.
    #[arg(long, env = "TRENDS_MIN_NEGATIVE_MENTIONS", default_value_t = 10)]
    pub min_negative_mentions: u32,
    /// Distinct customers those mentions must come from (one angry customer is no trend).
    #[arg(long, env = "TRENDS_MIN_DISTINCT_CUSTOMERS", default_value_t = 5)]
    pub min_distinct_customers: u32,
    /// How far behind the newest mention of a theme a late mention still counts.
    #[arg(long, env = "TRENDS_ALLOWED_LATENESS_MINUTES", default_value_t = 10)]
    pub allowed_lateness_minutes: i64,
    /// Kafka consumer group; instances in one group share the themes by partition.
    #[arg(long, env = "TRENDS_GROUP_ID", default_value = "closeloop-trends")]
    pub group_id: String,
}

impl Config {
    /// Checks the settings and returns the detector rule. A zero window or threshold would
    /// raise an action for every single complaint, so those are refused at start-up.
    pub fn validate(&self) -> Result<DetectorConfig, String> {
        if self.window_minutes <= 0 || self.window_minutes > 7 * 24 * 60 {
            return Err(format!(
                "window_minutes must be between 1 and {} (a week), got {}",
                7 * 24 * 60,
                self.window_minutes
            ));
        }
        if self.allowed_lateness_minutes < 0 || self.allowed_lateness_minutes > 7 * 24 * 60 {
            return Err(format!(
                "allowed_lateness_minutes must be between 0 and a week, got {}",
                self.allowed_lateness_minutes
            ));
        }
        if self.min_negative_mentions == 0 || self.min_distinct_customers == 0 {
            return Err(
                "min_negative_mentions and min_distinct_customers must be at least 1".into(),
            );
        }
        if self
            .ops_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err("ops_token must not be blank (leave it unset to disable auth)".into());
        }
        Ok(DetectorConfig {
            window_ms: self.window_minutes * 60_000,
            min_negative_mentions: self.min_negative_mentions,
            min_distinct_customers: self.min_distinct_customers,
            allowed_lateness_ms: self.allowed_lateness_minutes * 60_000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_give_the_documented_rule() {
        let config = Config::parse_from(["trends"]);
        let detector = config.validate().expect("defaults are valid");
        assert_eq!(detector.window_ms, 3_600_000);
        assert_eq!(detector.min_negative_mentions, 10);
        assert_eq!(detector.min_distinct_customers, 5);
        assert_eq!(detector.allowed_lateness_ms, 600_000);
        assert_eq!(config.group_id, "closeloop-trends");
    }

    #[test]
    fn nonsense_thresholds_are_rejected() {
        let config = Config::parse_from(["trends", "--window-minutes", "0"]);
        assert!(config.validate().is_err());
        let config = Config::parse_from(["trends", "--min-distinct-customers", "0"]);
        assert!(config.validate().is_err());
        let config = Config::parse_from(["trends", "--ops-token", " "]);
        assert!(config.validate().is_err());
    }
}
