//! Reading a topic's records once, from a point in time up to where the topic ended when
//! reading began, outside any consumer group: what a replay preview, a reclassification
//! and a service catching up on a compacted topic need. Nothing is committed.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use chrono::{DateTime, Utc};
use closeloop_events::Event;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::consumer::{incoming_of, ClosesOffRuntime};
use crate::{BusError, Incoming};

/// How long a metadata or offset request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting longer than this for the next record, with records still due, is an error
/// (a broker gone, or records deleted under the reader).
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// How far a [`TopicReader`] has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records read so far, decodable or not.
    pub read: u64,
    /// Records between the starting offsets and the ends: what `read` grows to.
    pub total: u64,
    /// Records that were not a valid event of the topic (already dead-lettered by the
    /// topic's own consumers): skipped.
    pub skipped: u64,
}

/// Reads `E::TOPIC` from the first record at or after `since` (by record timestamp; the
/// start when `None`) to the end each partition had when the reader opened. It may start
/// earlier than `since` (a broker that cannot look offsets up by time), so callers filter
/// by the event's own time.
pub struct TopicReader<E> {
    consumer: ClosesOffRuntime<DefaultConsumerContext>,
    /// Per partition still to read, the offset where reading stops.
    ends: HashMap<i32, i64>,
    progress: Progress,
    _event: PhantomData<E>,
}

impl<E: Event> TopicReader<E> {
    pub async fn open(brokers: &str, since: Option<DateTime<Utc>>) -> Result<Self, BusError> {
        let topic = E::TOPIC;
        let read_error = |reason: String| BusError::Read {
            topic: topic.to_owned(),
            reason,
        };
        let config = {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", brokers)
                // Never joins or commits: the id only satisfies the client.
                .set("group.id", "closeloop-topic-reader")
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "false");
            config
        };
        // Metadata and offset lookups block: off the async workers.
        let lookup = config.clone();
        let ranges = tokio::task::spawn_blocking(move || start_and_end::<E>(&lookup, since))
            .await
            .map_err(|error| read_error(error.to_string()))??;
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        let mut progress = Progress::default();
        for (partition, start, end) in ranges {
            if start < end {
                assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
                ends.insert(partition, end);
                progress.total += u64::try_from(end - start).unwrap_or(0);
            }
        }
        let consumer: StreamConsumer = config.create()?;
        if !ends.is_empty() {
            consumer.assign(&assignment)?;
        }
        Ok(Self {
            consumer: ClosesOffRuntime(Some(consumer)),
            ends,
            progress,
            _event: PhantomData,
        })
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Up to `max` more records (those that decode), in offset order per partition;
    /// `None` once every partition reached its end.
    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Incoming<E>>>, BusError> {
        if self.ends.is_empty() {
            return Ok(None);
        }
        let mut batch = Vec::new();
        let mut idle = Duration::ZERO;
        while !self.ends.is_empty() && batch.len() < max.max(1) {
            // Short waits, so a partition whose last offsets hold no record (compacted,
            // or a transaction marker) is noticed as finished by its position.
            let wait = Duration::from_millis(if batch.is_empty() { 500 } else { 50 });
            let message = match tokio::time::timeout(wait, self.consumer.recv()).await {
                Ok(message) => message?,
                Err(_) if !batch.is_empty() => break,
                Err(_) => {
                    self.drop_finished_partitions()?;
                    idle += wait;
                    if idle >= IDLE_LIMIT && !self.ends.is_empty() {
                        return Err(BusError::Read {
                            topic: E::TOPIC.to_owned(),
                            reason: format!(
                                "no record for {}s with {} of {} records still to read",
                                IDLE_LIMIT.as_secs(),
                                self.progress.total.saturating_sub(self.progress.read),
                                self.progress.total
                            ),
                        });
                    }
                    continue;
                }
            };
            idle = Duration::ZERO;
            let partition = message.partition();
            let Some(&end) = self.ends.get(&partition) else {
                continue;
            };
            if message.offset() >= end {
                self.ends.remove(&partition);
                continue;
            }
            self.progress.read += 1;
            match incoming_of::<E>(&message) {
                Ok(incoming) => batch.push(incoming),
                Err(_) => self.progress.skipped += 1,
            }
            if message.offset() + 1 >= end {
                self.ends.remove(&partition);
            }
        }
        Ok(Some(batch))
    }

    /// Forgets the partitions whose position passed their end without a record there.
    fn drop_finished_partitions(&mut self) -> Result<(), BusError> {
        let positions = self.consumer.position()?;
        for element in positions.elements() {
            if let (Offset::Offset(position), Some(&end)) =
                (element.offset(), self.ends.get(&element.partition()))
            {
                if position >= end {
                    self.ends.remove(&element.partition());
                }
            }
        }
        Ok(())
    }
}

/// Per partition: the first offset to read and the end offset.
fn start_and_end<E: Event>(
    config: &ClientConfig,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<(i32, i64, i64)>, BusError> {
    let topic = E::TOPIC;
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut watermarks = Vec::with_capacity(partitions.len());
    for &partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT)?;
        watermarks.push((partition, low, high));
    }
    let Some(since) = since else {
        return Ok(watermarks);
    };
    let mut wanted = TopicPartitionList::new();
    for &partition in &partitions {
        wanted.add_partition_offset(topic, partition, Offset::Offset(since.timestamp_millis()))?;
    }
    // A broker that cannot look offsets up by time is read from the start instead: more
    // records, which the caller filters by time anyway.
    let by_time = consumer.offsets_for_times(wanted, REQUEST_TIMEOUT).ok();
    Ok(watermarks
        .into_iter()
        .map(|(partition, low, high)| {
            let found = by_time
                .as_ref()
                .and_then(|list| list.find_partition(topic, partition))
                .map(|element| element.offset());
            let start = match found {
                Some(Offset::Offset(offset)) => offset.clamp(low, high),
                // "No record at or after `since`" — or a broker that does not look offsets
                // up by time at all (librdkafka's mock cluster answers this for every
                // time): read from the start, the caller filters.
                _ => low,
            };
            (partition, start, high)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BusMetrics, EmbeddedBroker, Publisher, PublisherConfig, TopicSpec};
    use closeloop_events::{Envelope, Period, TaxonomyApplied};

    fn applied(version: &str) -> TaxonomyApplied {
        TaxonomyApplied {
            version: version.into(),
            based_on: None,
            taxonomy: serde_json::json!({}),
            change: String::new(),
            applied_at: Utc::now(),
            reclassify: None::<Period>,
        }
    }

    #[tokio::test]
    async fn reads_every_record_up_to_the_end_it_found_and_no_further() {
        let broker = EmbeddedBroker::start(1, &TopicSpec::all(2)).expect("broker");
        let before = Utc::now() - chrono::Duration::seconds(1);
        let empty = TopicReader::<TaxonomyApplied>::open(broker.bootstrap_servers(), None)
            .await
            .expect("open");
        assert_eq!(empty.progress().total, 0);
        let mut empty = empty;
        assert!(empty.next_batch(10).await.expect("read").is_none());

        let publisher = Publisher::new(
            &PublisherConfig::new(broker.bootstrap_servers()),
            BusMetrics::unregistered(),
        )
        .expect("publisher");
        for version in ["1", "2", "3"] {
            publisher
                .publish(&Envelope::new(applied(version)), None)
                .await
                .expect("published");
        }
        let mut reader = TopicReader::<TaxonomyApplied>::open(broker.bootstrap_servers(), None)
            .await
            .expect("open");
        // Published after the reader opened: not read.
        publisher
            .publish(&Envelope::new(applied("4")), None)
            .await
            .expect("published");
        let mut versions = Vec::new();
        while let Some(batch) = reader.next_batch(2).await.expect("read") {
            assert!(batch.len() <= 2);
            versions.extend(batch.into_iter().map(|i| i.envelope.data.version));
        }
        assert_eq!(versions, ["1", "2", "3"]);
        assert_eq!(
            reader.progress(),
            Progress {
                read: 3,
                total: 3,
                skipped: 0
            }
        );

        // From a time before every record: all four.
        let mut reader =
            TopicReader::<TaxonomyApplied>::open(broker.bootstrap_servers(), Some(before))
                .await
                .expect("open");
        let mut all = 0;
        while let Some(batch) = reader.next_batch(10).await.expect("read") {
            all += batch.len();
        }
        assert_eq!(all, 4);
    }
}
