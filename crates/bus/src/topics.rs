use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::BusError;

/// A topic closeloop needs, with its partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Kept by key (`cleanup.policy=compact`) rather than deleted by age.
    pub compacted: bool,
}

impl TopicSpec {
    /// A topic deleted by age.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            compacted: false,
        }
    }

    /// Every closeloop topic and its dead-letter topic, each with `partitions` partitions
    /// (one for the topics whose records must stay in one order).
    pub fn all(partitions: i32) -> Vec<TopicSpec> {
        use closeloop_events::topics::{dead_letter_of, ALL, COMPACTED, SINGLE_PARTITION};
        ALL.iter()
            .flat_map(|topic| {
                let own = TopicSpec {
                    name: topic.to_string(),
                    partitions: if SINGLE_PARTITION.contains(topic) {
                        1
                    } else {
                        partitions
                    },
                    compacted: COMPACTED.contains(topic),
                };
                [own, TopicSpec::new(dead_letter_of(topic), partitions)]
            })
            .collect()
    }
}

/// Creates the topics that do not exist yet (an existing topic is left as it is).
pub async fn ensure_topics(
    brokers: &str,
    specs: &[TopicSpec],
    replication: i32,
) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            let topic = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(replication),
            );
            let topic = if spec.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            };
            // With three copies, an acknowledged record (acks=all) is on at least two
            // brokers, so losing one broker loses nothing and the topic stays writable.
            if replication >= 3 {
                topic.set("min.insync.replicas", "2")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::Kafka(KafkaError::AdminOp(code)))
                    .inspect_err(|_| tracing::error!(%topic, ?code, "could not create topic"));
            }
        }
    }
    Ok(())
}

/// Deletes the topics of `specs` and creates them anew, empty (with `replication` copies),
/// for tests and benchmarks that must not see an earlier run's records. Waits until the
/// cluster lists every topic with a leader for each partition.
pub async fn recreate_topics(
    brokers: &str,
    specs: &[TopicSpec],
    replication: i32,
) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(&names, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((_, code)) => return Err(BusError::Kafka(KafkaError::AdminOp(code))),
        }
    }
    // Deletion finishes in the background: creating too early fails, so retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ensure_topics(brokers, specs, replication).await {
            Ok(()) if all_led(&admin, specs) => return Ok(()),
            Ok(()) => {}
            Err(error) if Instant::now() > deadline => return Err(error),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            return Err(BusError::Kafka(KafkaError::AdminOp(
                RDKafkaErrorCode::OperationTimedOut,
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the cluster lists every topic of `specs` with a leader for each partition.
fn all_led(admin: &AdminClient<DefaultClientContext>, specs: &[TopicSpec]) -> bool {
    let Ok(metadata) = admin.inner().fetch_metadata(None, Duration::from_secs(5)) else {
        return false;
    };
    specs.iter().all(|spec| {
        metadata.topics().iter().any(|topic| {
            topic.name() == spec.name
                && topic.error().is_none()
                && topic.partitions().len() == spec.partitions as usize
                && topic.partitions().iter().all(|p| p.leader() >= 0)
        })
    })
}
