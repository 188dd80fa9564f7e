//! The only crate that knows rdkafka. It gives services three things:
//!
//! - [`Publisher`]: an idempotent, `acks=all` producer whose `publish` returns only once
//!   the broker acknowledged the record;
//! - [`run_consumer`]: the at-least-once consumer loop (decode → handle → store the offset
//!   only after the handler succeeded; dead-letter what can never succeed; retry, never
//!   skip, what failed for a passing reason);
//! - [`EmbeddedBroker`]: librdkafka's mock cluster, a real Kafka-protocol broker on
//!   127.0.0.1 for `closeloop up` and the tests, made durable by a [`Journal`].

mod consumer;
mod embedded;
mod journal;
mod metrics;
mod producer;
mod reader;
mod room;
pub mod testing;
mod topics;

use std::time::Duration;

pub use consumer::{run_consumer, ConsumerConfig, Handler, HandlerError, Incoming};
pub use embedded::{EmbeddedBroker, Fault};
pub use journal::{Journal, Restored};
pub use metrics::BusMetrics;
pub use producer::{Delivered, Publisher, PublisherConfig};
pub use reader::{Progress, TopicReader};
pub use topics::{ensure_topics, recreate_topics, TopicSpec};

/// Where the Kafka cluster is: flags and environment shared by every service.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (`host:port,host:port`).
    #[arg(
        long = "brokers",
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Partitions per topic when a service creates missing topics.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor for topics a service creates.
    #[arg(long, env = "KAFKA_REPLICATION", default_value_t = 1)]
    pub replication: i32,
    /// Create missing topics at start-up.
    #[arg(long, env = "KAFKA_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,
    /// The embedded broker's journal, when the cluster is the embedded one of `up`:
    /// publishers append acknowledged records to it, consumers note their progress.
    #[arg(skip)]
    pub journal: Option<Journal>,
}

impl KafkaArgs {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            partitions: 6,
            replication: 1,
            create_topics: false,
            journal: None,
        }
    }

    /// Creates the topics if configured to.
    pub async fn prepare_topics(&self) -> Result<(), BusError> {
        if self.create_topics {
            ensure_topics(
                &self.brokers,
                &TopicSpec::all(self.partitions),
                self.replication,
            )
            .await?;
        }
        Ok(())
    }
}

/// The W3C trace-context header carried on every record.
pub const TRACEPARENT_HEADER: &str = "traceparent";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka client error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("could not encode event for {topic}: {source}")]
    Encode {
        topic: String,
        source: serde_json::Error,
    },
    #[error("broker did not acknowledge the record on {topic}: {reason}")]
    NotAcknowledged { topic: String, reason: String },
    #[error("embedded broker: {0}")]
    Embedded(String),
    #[error("broker journal in {}: {reason}", dir.display())]
    Journal {
        dir: std::path::PathBuf,
        reason: String,
    },
    #[error("reading {topic}: {reason}")]
    Read { topic: String, reason: String },
    #[error("could not take over partitions of {topic}: {reason}")]
    Assignment { topic: String, reason: String },
}

/// A fresh W3C `traceparent` (version 00, sampled) for work that starts here.
pub fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// Whether `value` is a well-formed W3C `traceparent` worth passing on.
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1] != "00000000000000000000000000000000"
}

/// The trace id part of a `traceparent`, for log fields.
pub fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

/// Exponential backoff with full jitter, used wherever a transient failure is retried.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(max);
    let jitter = rand::random::<f64>();
    // Half fixed, half random: never hammer, never wait for nothing.
    capped.mul_f64(0.5 + 0.5 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_well_formed() {
        let traceparent = new_traceparent();
        assert!(is_valid_traceparent(&traceparent), "{traceparent}");
        assert_eq!(trace_id(&traceparent).len(), 32);
        assert!(!is_valid_traceparent("00-abc-def-01"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let first = backoff(0, base, max);
        assert!(first >= Duration::from_millis(50) && first <= base);
        let late = backoff(30, base, max);
        assert!(late >= max / 2 && late <= max);
    }
}
