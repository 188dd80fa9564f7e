use std::sync::mpsc;
use std::thread;

use rdkafka::mocking::MockCluster;

use crate::{BusError, TopicSpec};

/// An in-process Kafka-protocol broker (librdkafka's mock cluster) listening on
/// 127.0.0.1, so `closeloop up` and the tests need no Kafka installation; any Kafka client
/// (`kcat -b <bootstrap>`) can talk to it.
///
/// The mock cluster handle is not `Send`, so it lives on a thread of its own for as long
/// as this value does; dropping it stops the brokers.
pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts `brokers` mock brokers and creates `topics` (replicated on all brokers).
    pub fn start(brokers: i32, topics: &[TopicSpec]) -> Result<Self, BusError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
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
                // Keep the cluster alive until told to stop (or the owner is gone).
                let _ = stop_rx.recv();
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
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` list, e.g. `127.0.0.1:39231,127.0.0.1:40119`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
