use std::net::SocketAddr;

use closeloop_bus::KafkaArgs;
use closeloop_store::DatabaseArgs;
use closeloop_telemetry::Secret;

/// ingest's configuration: flags, or the environment variables named beside them.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ingest",
    about = "HTTP API that accepts customer feedback and publishes it to feedback.raw.v1"
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[arg(long, env = "INGEST_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Timeouts and the connection bound of the HTTP server (`HTTP_*`).
    #[command(flatten)]
    pub http: closeloop_http::HttpLimits,
    /// API keys per source, `source=key` (repeat the flag, or comma-separate in the env).
    #[arg(long = "api-key", env = "INGEST_API_KEYS", value_delimiter = ',', value_parser = parse_source_key)]
    pub api_keys: Vec<SourceKey>,
    /// Admin keys, `name=key` like the source keys: they may only request erasures, and
    /// theirs reach a customer's data from every source (a source's key erases only
    /// what came through that source), and set a customer's preferences.
    #[arg(long = "admin-key", env = "INGEST_ADMIN_KEYS", value_delimiter = ',', value_parser = parse_source_key)]
    pub admin_keys: Vec<SourceKey>,
    /// Most events one batch request may carry.
    #[arg(long, env = "INGEST_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "INGEST_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest feedback text accepted, in characters.
    #[arg(long, env = "INGEST_MAX_TEXT_CHARS", default_value_t = 10_000)]
    pub max_text_chars: usize,
    /// Oldest `occurred_at` accepted, in days before now; also how long accepted event
    /// ids are remembered to refuse the same id with other content.
    #[arg(long, env = "INGEST_MAX_EVENT_AGE_DAYS", default_value_t = crate::submission::DEFAULT_MAX_EVENT_AGE_DAYS)]
    pub max_event_age_days: i64,
    /// How long a request waits for the broker's acknowledgement before answering 503.
    #[arg(long, env = "INGEST_DELIVERY_TIMEOUT_MS", default_value_t = 10_000)]
    pub delivery_timeout_ms: u64,
    /// Events per second each source may send, sustained (a batch of 50 counts 50);
    /// over it, requests get 429 with `Retry-After`. 0 turns the limit off.
    #[arg(long, env = "INGEST_RATE_LIMIT_PER_SOURCE", default_value_t = 10_000.0)]
    pub rate_limit_per_source: f64,
    /// Events a source may send at once before the sustained rate applies; at least
    /// `max_batch`, so every allowed batch can pass.
    #[arg(long, env = "INGEST_RATE_LIMIT_BURST", default_value_t = 20_000)]
    pub rate_limit_burst: u32,
}

impl Config {
    /// Settings clap cannot check alone.
    pub fn validate(&self) -> Result<(), String> {
        if self.api_keys.is_empty() {
            return Err(
                "no API keys configured: set INGEST_API_KEYS=source=key,… or --api-key".into(),
            );
        }
        // One key, one meaning: a key that were both would make its erasures' scope a
        // matter of which list was checked first.
        for admin in &self.admin_keys {
            if let Some(source) = self
                .api_keys
                .iter()
                .find(|source| source.key.matches(admin.key.expose()))
            {
                return Err(format!(
                    "the admin key {} is also the API key of source {}: use distinct keys",
                    admin.source, source.source
                ));
            }
        }
        if !(1..=100 * 365).contains(&self.max_event_age_days) {
            return Err(format!(
                "INGEST_MAX_EVENT_AGE_DAYS must be 1 to 36500 days, not {}",
                self.max_event_age_days
            ));
        }
        let rate = self.rate_limit_per_source;
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(format!(
                "INGEST_RATE_LIMIT_PER_SOURCE must be a number of events per second, 0 for no limit, not {rate}"
            ));
        }
        if rate > 0.0 && (self.rate_limit_burst as usize) < self.max_batch.max(1) {
            return Err(format!(
                "INGEST_RATE_LIMIT_BURST ({}) must be at least INGEST_MAX_BATCH ({}), or no batch of that size could ever pass",
                self.rate_limit_burst, self.max_batch
            ));
        }
        Ok(())
    }
}

/// One source system and the API key it authenticates with (never printed: `Secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKey {
    pub source: String,
    pub key: Secret,
}

fn parse_source_key(value: &str) -> Result<SourceKey, String> {
    let (source, key) = value
        .split_once('=')
        .ok_or_else(|| "expected source=key".to_owned())?;
    let source = source.trim();
    if !crate::submission::is_valid_source(source) {
        return Err(format!(
            "invalid source name {source:?}: use 1-64 of a-z, 0-9, '-', '_'"
        ));
    }
    if key.len() < 8 {
        return Err(format!("API key of {source} is shorter than 8 characters"));
    }
    Ok(SourceKey {
        source: source.to_owned(),
        key: Secret::new(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn parses_keys_from_flags() {
        let config = Config::parse_from([
            "ingest",
            "--api-key",
            "shopdesk=secret-123,surveyhub=other-456",
        ]);
        assert_eq!(config.api_keys.len(), 2);
        assert_eq!(config.api_keys[1].source, "surveyhub");
        assert!(!format!("{:?}", config.api_keys).contains("secret"));
        assert!(!format!("{config:?}").contains("secret-123"));
        assert!(format!("{config:?}").contains("shopdesk"));
    }

    #[test]
    fn rate_limit_defaults_and_checks() {
        let config = Config::parse_from(["ingest", "--api-key", "a=key-aaaaaaaa"]);
        assert_eq!(config.rate_limit_per_source, 10_000.0);
        assert_eq!(config.rate_limit_burst, 20_000);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.max_event_age_days, 365);
        let mut config = config;
        config.max_event_age_days = 0;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("INGEST_MAX_EVENT_AGE_DAYS"));
        config.max_event_age_days = 30;
        config.rate_limit_burst = 10;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("INGEST_RATE_LIMIT_BURST"));
        config.rate_limit_per_source = 0.0; // off: the burst does not matter
        assert_eq!(config.validate(), Ok(()));
        config.rate_limit_per_source = -1.0;
        assert!(config.validate().is_err());
        config.rate_limit_per_source = f64::NAN;
        assert!(config.validate().is_err());
        config.rate_limit_per_source = 1.0;
        config.rate_limit_burst = 5000;
        config.api_keys.clear();
        assert!(config.validate().unwrap_err().contains("INGEST_API_KEYS"));
    }

    #[test]
    fn admin_keys_are_parsed_like_source_keys_and_must_differ_from_them() {
        let config = Config::parse_from([
            "ingest",
            "--api-key",
            "shopdesk=secret-123",
            "--admin-key",
            "privacy=admin-key-456",
        ]);
        assert_eq!(config.admin_keys[0].source, "privacy");
        assert!(!format!("{config:?}").contains("admin-key-456"));
        assert_eq!(config.validate(), Ok(()));
        let clash = Config::parse_from([
            "ingest",
            "--api-key",
            "shopdesk=secret-123",
            "--admin-key",
            "privacy=secret-123",
        ]);
        assert!(clash.validate().unwrap_err().contains("distinct keys"));
    }

    #[test]
    fn rejects_short_keys_and_bad_sources() {
        assert!(parse_source_key("shopdesk=short").is_err());
        assert!(parse_source_key("Shop Desk=long-enough-key").is_err());
        assert!(parse_source_key("no-equals-sign").is_err());
    }
}
