use std::sync::mpsc;
use std::thread;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::{BusError, TopicSpec};

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
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
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
        })
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
