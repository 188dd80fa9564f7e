//! Helpers for the end-to-end tests in `tests/tests/`: spawn services on the embedded
//! broker with a fresh database each (a fresh PostgreSQL schema when `DATABASE_URL`
//! points at PostgreSQL), wait for conditions, read topics.

use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

/// Logs of the services under test, when `RUST_LOG` asks for them.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        closeloop_telemetry::init_tracing(false);
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every record of `topic` from the beginning until `idle` passes without a new
/// one (after at least `min` records or `timeout`).
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    min: usize,
    idle: Duration,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    loop {
        let wait = if records.len() >= min {
            idle
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                records.push(serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null));
            }
            Ok(Err(error)) => panic!("reading {topic}: {error}"),
            Err(_) => return records,
        }
    }
}
