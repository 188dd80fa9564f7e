use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{bindings, Offset, TopicPartitionList};

use crate::journal::{self, Backlog, JournalRecord};
use crate::{BusError, Journal, Restored, TopicSpec, TRACEPARENT_HEADER};

/// An in-process Kafka-protocol broker (librdkafka's mock cluster) listening on
/// 127.0.0.1, so `closeloop up` and the tests need no Kafka installation; any Kafka client
/// (`kcat -b <bootstrap>`) can talk to it.
///
/// The mock cluster handle is not `Send`, so it lives on a thread of its own for as long
/// as this value does; dropping it stops the brokers.
pub struct EmbeddedBroker {
    bootstrap: String,
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<thread::JoinHandle<()>>,
    journal: Option<Journal>,
}

/// Trouble to inject, for fault tests: what a real cluster does on a bad day.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The broker stops answering (its connections are closed).
    BrokerDown(i32),
    BrokerUp(i32),
    /// The next requests of this kind fail with these errors, one each.
    RequestErrors(RDKafkaApiKey, Vec<RDKafkaRespErr>),
    /// Moves a partition's leadership to another broker.
    PartitionLeader {
        topic: String,
        partition: i32,
        broker: i32,
    },
}

type Command = (Fault, mpsc::Sender<Result<(), String>>);

impl EmbeddedBroker {
    /// Starts `brokers` mock brokers and creates `topics` (replicated on all brokers).
    pub fn start(brokers: i32, topics: &[TopicSpec]) -> Result<Self, BusError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (commands_tx, commands_rx) = mpsc::channel::<Command>();
        let topics = topics.to_vec();
        let thread = thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let host = match mock_cluster_host(brokers) {
                    Ok(host) => host,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let Some(cluster) = host.client().mock_cluster() else {
                    let _ = ready_tx.send(Err("the client started no mock cluster".into()));
                    return;
                };
                for topic in &topics {
                    if let Err(e) = cluster.create_topic(&topic.name, topic.partitions, brokers) {
                        let _ = ready_tx.send(Err(format!("create topic {}: {e}", topic.name)));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Keep the cluster alive, applying faults, until the owner is gone.
                while let Ok((fault, reply)) = commands_rx.recv() {
                    let _ = reply.send(apply(&cluster, fault));
                }
                drop(cluster);
                drop(host);
            })
            .map_err(|e| BusError::Embedded(e.to_string()))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| BusError::Embedded("broker thread ended before start-up".into()))?
            .map_err(BusError::Embedded)?;
        tracing::info!(%bootstrap, brokers, "embedded broker listening");
        Ok(Self {
            bootstrap,
            commands: Some(commands_tx),
            thread: Some(thread),
            journal: None,
        })
    }

    /// [`EmbeddedBroker::start`] made durable by the journal in `dir`: what the journal
    /// holds that some consumer group had not processed yet goes back into the new
    /// broker, in order, and every group's position is committed, before anything else
    /// connects. Give [`EmbeddedBroker::journal`] to every publisher and consumer.
    pub async fn start_durable(
        brokers: i32,
        topics: &[TopicSpec],
        dir: &Path,
    ) -> Result<(Self, Restored), BusError> {
        let journal_error = |reason: std::io::Error| BusError::Journal {
            dir: dir.to_owned(),
            reason: reason.to_string(),
        };
        let (backlog, previous) = Backlog::load(dir).map_err(journal_error)?;
        let mut broker = Self::start(brokers, topics)?;
        let records = refill(&broker.bootstrap, &backlog).await?;
        let positions = backlog.translated_positions();
        commit_positions(&broker.bootstrap, &positions).await?;
        let journal = journal::open(dir, previous, &records, &positions, &backlog.consumers)
            .map_err(journal_error)?;
        let restored = Restored {
            records: records.len(),
            dropped: backlog.dropped,
            groups: positions.len(),
        };
        tracing::info!(
            dir = %dir.display(),
            records = restored.records,
            processed_before = restored.dropped,
            groups = restored.groups,
            "embedded broker restored from its journal"
        );
        broker.journal = Some(journal);
        Ok((broker, restored))
    }

    /// The journal of a broker started with [`EmbeddedBroker::start_durable`].
    pub fn journal(&self) -> Option<Journal> {
        self.journal.clone()
    }

    /// The `bootstrap.servers` list, e.g. `127.0.0.1:39231,127.0.0.1:40119`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Injects `fault` into the running cluster.
    pub fn inject(&self, fault: Fault) -> Result<(), BusError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        let gone = || BusError::Embedded("the embedded broker has stopped".into());
        self.commands
            .as_ref()
            .ok_or_else(gone)?
            .send((fault, reply_tx))
            .map_err(|_| gone())?;
        reply_rx
            .recv()
            .map_err(|_| gone())?
            .map_err(BusError::Embedded)
    }
}

/// The client that owns the mock cluster (librdkafka starts one for a client configured
/// with `test.mock.num.brokers`; dropping the client stops it).
///
/// The mock's groups wait 3 s after their first member joins before assigning partitions,
/// as a real broker's `group.initial.rebalance.delay.ms` does, so that members starting
/// together share one rebalance. In one process every member starts within milliseconds,
/// and the wait only delayed the first records by 3 s (the real cluster of the tests runs
/// with 0 too, `deploy/kafka/cluster.sh`).
fn mock_cluster_host(brokers: i32) -> Result<BaseProducer, String> {
    let host: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", brokers.to_string())
        .create()
        .map_err(|e| e.to_string())?;
    // SAFETY: the client is alive for the whole call, and librdkafka returns either null
    // or the mock cluster it owns, which `rd_kafka_mock_group_initial_rebalance_delay_ms`
    // only configures (it takes the cluster's own lock).
    unsafe {
        let cluster = bindings::rd_kafka_handle_mock_cluster(host.client().native_ptr());
        if cluster.is_null() {
            return Err("the client started no mock cluster".into());
        }
        bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
    }
    Ok(host)
}

/// Produces every record of `backlog` into the fresh broker, each partition in its old
/// order, and returns them with their new offsets (a fresh partition starts at 0, so
/// record `i` of a partition's backlog must land at offset `i`).
async fn refill(bootstrap: &str, backlog: &Backlog) -> Result<Vec<JournalRecord>, BusError> {
    if backlog.partitions.is_empty() {
        return Ok(Vec::new());
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let mut refilled = Vec::with_capacity(backlog.len());
    for ((topic, partition), records) in &backlog.partitions {
        // Queued in order without waiting; the idempotent producer keeps the order.
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let mut message = FutureRecord::to(topic)
                .partition(*partition)
                .key(&record.key)
                .payload(&record.payload);
            if let Some(traceparent) = &record.traceparent {
                message = message.headers(OwnedHeaders::new().insert(Header {
                    key: TRACEPARENT_HEADER,
                    value: Some(traceparent),
                }));
            }
            deliveries.push(producer.send(message, Duration::from_secs(30)));
        }
        for (index, (record, delivery)) in records
            .iter()
            .zip(futures::future::join_all(deliveries).await)
            .enumerate()
        {
            let delivery = delivery.map_err(|(error, _)| BusError::NotAcknowledged {
                topic: topic.clone(),
                reason: error.to_string(),
            })?;
            if delivery.offset != index as i64 {
                return Err(BusError::Embedded(format!(
                    "refilling {topic}/{partition}: record {index} landed at offset {}",
                    delivery.offset
                )));
            }
            refilled.push(JournalRecord {
                offset: delivery.offset,
                ..record.clone()
            });
        }
    }
    Ok(refilled)
}

/// Commits each group's position, so its consumers resume where the old broker had them.
async fn commit_positions(
    bootstrap: &str,
    positions: &BTreeMap<String, Vec<(String, i32, i64)>>,
) -> Result<(), BusError> {
    for (group, list) in positions {
        let mut offsets = TopicPartitionList::new();
        for (topic, partition, next) in list {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        // A blocking call on a fresh local broker: milliseconds.
        tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|error| BusError::Embedded(error.to_string()))??;
    }
    Ok(())
}

fn apply(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    fault: Fault,
) -> Result<(), String> {
    match fault {
        Fault::BrokerDown(id) => cluster.broker_down(id),
        Fault::BrokerUp(id) => cluster.broker_up(id),
        Fault::RequestErrors(api, errors) => {
            cluster.request_errors(api, &errors);
            Ok(())
        }
        Fault::PartitionLeader {
            topic,
            partition,
            broker,
        } => cluster.partition_leader(&topic, partition, Some(broker)),
    }
    .map_err(|error| error.to_string())
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
