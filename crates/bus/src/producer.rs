use std::time::Duration;

use closeloop_events::{Envelope, Event};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::journal::JournalRecord;
use crate::{BusError, BusMetrics, Journal, TRACEPARENT_HEADER};

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub brokers: String,
    /// How long a record may wait for the broker before `publish` fails.
    pub delivery_timeout: Duration,
    /// Batching delay. Small for request/response paths, where a caller waits.
    pub linger: Duration,
    /// The embedded broker's journal: every acknowledged record is appended to it
    /// before `publish` returns.
    pub journal: Option<Journal>,
}

impl PublisherConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            delivery_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(1),
            journal: None,
        }
    }
}

/// Where the broker stored an acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// An idempotent producer (`enable.idempotence`, `acks=all`). Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    metrics: BusMetrics,
    journal: Option<Journal>,
    delivery_timeout: Duration,
}

impl Publisher {
    pub fn new(config: &PublisherConfig, metrics: BusMetrics) -> Result<Self, BusError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().max(1).to_string(),
            )
            .create()?;
        Ok(Self {
            producer,
            metrics,
            journal: config.journal.clone(),
            delivery_timeout: config.delivery_timeout,
        })
    }

    /// Publishes one event to its topic, keyed by its key, and waits for the broker's ack.
    pub async fn publish<E: Event>(
        &self,
        envelope: &Envelope<E>,
        traceparent: Option<&str>,
    ) -> Result<Delivered, BusError> {
        let payload = serde_json::to_vec(envelope).map_err(|source| BusError::Encode {
            topic: E::TOPIC.to_owned(),
            source,
        })?;
        self.publish_bytes(E::TOPIC, envelope.key(), &payload, traceparent)
            .await
    }

    /// Publishes a pre-encoded record and waits for the broker's ack.
    pub async fn publish_bytes(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        traceparent: Option<&str>,
    ) -> Result<Delivered, BusError> {
        if let Some(journal) = &self.journal {
            // The embedded broker would delete unprocessed records beyond its limit: a
            // record it cannot keep is refused here instead of lost later.
            if !journal.wait_for_room(topic, self.delivery_timeout).await {
                self.metrics.failed.with_label_values(&[topic]).inc();
                return Err(BusError::NotAcknowledged {
                    topic: topic.to_owned(),
                    reason: "the embedded broker holds as many unprocessed records as it can \
                             keep; its consumers are behind"
                        .into(),
                });
            }
        }
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(traceparent) = traceparent {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: TRACEPARENT_HEADER,
                value: Some(traceparent),
            }));
        }
        // A zero queue timeout would fail fast when the local queue is full; waiting is
        // right here because the caller is waiting for the ack anyway.
        match self.producer.send(record, Duration::from_secs(5)).await {
            Ok(delivery) => {
                if let Some(journal) = &self.journal {
                    let journaled = journal
                        .append(JournalRecord {
                            topic: topic.to_owned(),
                            partition: delivery.partition,
                            offset: delivery.offset,
                            key: key.as_bytes().to_vec(),
                            payload: payload.to_vec(),
                            traceparent: traceparent.map(str::to_owned),
                        })
                        .await;
                    if let Err(error) = journaled {
                        self.metrics.failed.with_label_values(&[topic]).inc();
                        return Err(error);
                    }
                }
                self.metrics.produced.with_label_values(&[topic]).inc();
                Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((error, _)) => {
                self.metrics.failed.with_label_values(&[topic]).inc();
                Err(BusError::NotAcknowledged {
                    topic: topic.to_owned(),
                    reason: error.to_string(),
                })
            }
        }
    }

    /// Waits until every queued record was delivered (or `timeout` passed).
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.producer.flush(timeout).map_err(BusError::from)
    }
}
