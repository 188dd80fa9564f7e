//! Reading a topic from the beginning, as a fresh consumer group sees it: what a test
//! asserts on when the outcome of the code under test is a record.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

/// One record of a topic: its key and its payload as JSON (`Null` when the payload is
/// not JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Option<String>,
    pub value: serde_json::Value,
}

/// The payloads of [`read_records`].
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    min: usize,
    idle: Duration,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    read_records(brokers, topic, min, idle, timeout)
        .await
        .into_iter()
        .map(|record| record.value)
        .collect()
}

/// Reads every record of `topic` from the beginning, in a consumer group of its own:
/// until `timeout` while fewer than `min` have come, then until `idle` passes without a
/// new one. Returns what it read (possibly fewer than `min`: the caller asserts).
///
/// # Panics
///
/// When the consumer cannot be created or the broker reports an error.
pub async fn read_records(
    brokers: &str,
    topic: &str,
    min: usize,
    idle: Duration,
    timeout: Duration,
) -> Vec<Record> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|error| panic!("a consumer to read {topic}: {error}"));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|error| panic!("subscribing to {topic}: {error}"));
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    loop {
        let wait = if records.len() >= min {
            idle
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => records.push(Record {
                key: message
                    .key()
                    .map(|key| String::from_utf8_lossy(key).into_owned()),
                value: serde_json::from_slice(message.payload().unwrap_or_default())
                    .unwrap_or(serde_json::Value::Null),
            }),
            Ok(Err(error)) => panic!("reading {topic}: {error}"),
            Err(_) => return records,
        }
    }
}
