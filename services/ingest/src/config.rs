use std::net::SocketAddr;

use closeloop_bus::KafkaArgs;
use closeloop_store::DatabaseArgs;

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
    /// API keys per source, `source=key` (repeat the flag, or comma-separate in the env).
    #[arg(long = "api-key", env = "INGEST_API_KEYS", value_delimiter = ',', value_parser = parse_source_key)]
    pub api_keys: Vec<SourceKey>,
    /// Most events one batch request may carry.
    #[arg(long, env = "INGEST_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "INGEST_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest feedback text accepted, in characters.
    #[arg(long, env = "INGEST_MAX_TEXT_CHARS", default_value_t = 10_000)]
    pub max_text_chars: usize,
    /// How long a request waits for the broker's acknowledgement before answering 503.
    #[arg(long, env = "INGEST_DELIVERY_TIMEOUT_MS", default_value_t = 10_000)]
    pub delivery_timeout_ms: u64,
}

/// One source system and the API key it authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceKey {
    pub source: String,
    pub key: String,
}

impl std::fmt::Debug for SourceKey {
    // Keys never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceKey({}=***)", self.source)
    }
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
        key: key.to_owned(),
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
    }

    #[test]
    fn rejects_short_keys_and_bad_sources() {
        assert!(parse_source_key("shopdesk=short").is_err());
        assert!(parse_source_key("Shop Desk=long-enough-key").is_err());
        assert!(parse_source_key("no-equals-sign").is_err());
    }
}
