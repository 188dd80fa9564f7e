//! What the bench saw of `feedback.categorised.v1`, and how it tells a slow loop from a
//! lost record.
//!
//! The watcher reads the topic from the start as its own consumer group. Offsets of a
//! partition are contiguous (an idempotent, non-transactional producer writes them), so a
//! jump means records the broker no longer had when the watcher got there: the embedded
//! broker (librdkafka's mock cluster) keeps only about 5 MiB per partition and drops the
//! oldest records beyond that, read or not. Counting the jump, rather than waiting for
//! records that will never come, is what lets the bench say where events went.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use uuid::Uuid;

#[derive(Debug, Default)]
pub struct Categorised {
    /// Accepted → categorised, once per feedback.
    pub latencies: Vec<Duration>,
    seen: HashSet<Uuid>,
    /// Records for a feedback already seen (categorise handles at least once).
    pub duplicates: u64,
    /// Records the watcher never read: offsets it jumped over.
    pub skipped: u64,
    pub undecodable: u64,
    next_offset: HashMap<i32, i64>,
}

impl Categorised {
    /// Feedback seen categorised, each once.
    pub fn distinct(&self) -> u64 {
        self.seen.len() as u64
    }

    /// Notes the record at `partition`/`offset`: its feedback and latency, or `None` when
    /// it could not be decoded.
    pub fn note(&mut self, partition: i32, offset: i64, feedback: Option<(Uuid, Duration)>) {
        // Every run starts on empty topics, so each partition's first record is offset 0.
        let expected = self.next_offset.entry(partition).or_insert(0);
        self.skipped += offset.saturating_sub(*expected).max(0) as u64;
        *expected = (*expected).max(offset + 1);
        match feedback {
            Some((id, latency)) => {
                if self.seen.insert(id) {
                    self.latencies.push(latency);
                } else {
                    self.duplicates += 1;
                }
            }
            None => self.undecodable += 1,
        }
    }
}

/// Why the drain stops, once it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Every accepted event was seen categorised.
    AllSeen,
    /// Nothing new for a while: what is missing is not coming.
    Stalled,
    /// The drain's limit ran out while events were still arriving.
    TimedOut,
}

/// Whether the drain is over: `seen` of `accepted` seen, nothing new for `quiet`,
/// `draining` in all.
pub fn drain_end(
    accepted: u64,
    seen: u64,
    quiet: Duration,
    draining: Duration,
    stall_after: Duration,
    limit: Duration,
) -> Option<DrainEnd> {
    if seen >= accepted {
        Some(DrainEnd::AllSeen)
    } else if quiet >= stall_after {
        Some(DrainEnd::Stalled)
    } else if draining >= limit {
        Some(DrainEnd::TimedOut)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn contiguous_offsets_skip_nothing_and_repeats_count_once() {
        let mut seen = Categorised::default();
        let ms = Duration::from_millis;
        seen.note(0, 0, Some((id(1), ms(5))));
        seen.note(0, 1, Some((id(2), ms(7))));
        seen.note(1, 0, Some((id(3), ms(9))));
        seen.note(1, 1, Some((id(1), ms(50)))); // handled again after a retry
        seen.note(1, 2, None);
        assert_eq!(seen.distinct(), 3);
        assert_eq!(seen.duplicates, 1);
        assert_eq!(seen.undecodable, 1);
        assert_eq!(seen.skipped, 0);
        assert_eq!(seen.latencies, vec![ms(5), ms(7), ms(9)]);
    }

    #[test]
    fn records_the_broker_dropped_before_they_were_read_are_counted_as_skipped() {
        let mut seen = Categorised::default();
        // The partition's first records were gone when the watcher started reading...
        seen.note(0, 4000, Some((id(1), Duration::ZERO)));
        // ...and later it fell behind again.
        seen.note(0, 4001, Some((id(2), Duration::ZERO)));
        seen.note(0, 9001, Some((id(3), Duration::ZERO)));
        // Another partition is independent; a record delivered twice moves nothing back.
        seen.note(1, 0, Some((id(4), Duration::ZERO)));
        seen.note(0, 9001, Some((id(3), Duration::ZERO)));
        assert_eq!(seen.skipped, 4000 + 4999);
        assert_eq!(seen.distinct(), 4);
    }

    #[test]
    fn the_drain_ends_when_all_are_seen_when_nothing_comes_or_at_its_limit() {
        let s = Duration::from_secs;
        let end =
            |seen, quiet, draining| drain_end(100, seen, s(quiet), s(draining), s(30), s(300));
        assert_eq!(end(100, 0, 1), Some(DrainEnd::AllSeen));
        assert_eq!(end(99, 29, 200), None);
        assert_eq!(end(99, 30, 200), Some(DrainEnd::Stalled));
        assert_eq!(end(99, 1, 300), Some(DrainEnd::TimedOut));
    }

    /// Why the watcher must expect jumps: the embedded broker keeps about 5 MiB per
    /// partition and drops the oldest records beyond that, whether anyone read them or
    /// not (librdkafka's mock cluster, `rd_kafka_mock_msgset_new`).
    #[tokio::test]
    async fn the_embedded_broker_drops_unread_records_beyond_a_few_mebibytes() {
        use closeloop_bus::{EmbeddedBroker, TopicSpec};
        use rdkafka::config::ClientConfig;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::producer::{FutureProducer, FutureRecord};

        let topic = TopicSpec::new("retention.v1", 1);
        let broker = EmbeddedBroker::start(1, &[topic]).expect("broker");
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let payload = vec![b'x'; 1024];
        let records = 8 * 1024; // 8 MiB, uncompressed
        let sends: Vec<_> = (0..records)
            .map(|_| {
                producer.send(
                    FutureRecord::<(), _>::to("retention.v1").payload(&payload),
                    Duration::from_secs(30),
                )
            })
            .collect();
        for sent in futures::future::join_all(sends).await {
            sent.expect("acknowledged");
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .create()
            .expect("consumer");
        let (low, high) = tokio::task::spawn_blocking(move || {
            consumer.fetch_watermarks("retention.v1", 0, Duration::from_secs(10))
        })
        .await
        .expect("joined")
        .expect("watermarks");
        assert_eq!(high, records);
        assert!(
            low > 0 && low < records,
            "nothing read, yet the broker starts at {low} of {high}"
        );
    }
}
