//! For tests against a real Kafka cluster (`deploy/kafka/cluster.sh`), found the way the
//! PostgreSQL tests find theirs: through an environment variable, [`BROKERS_VAR`]. Every
//! such test starts from fresh closeloop topics (replication 3, `min.insync.replicas=2`),
//! one test at a time per test binary ([`RealCluster::acquire`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::{Mutex, MutexGuard};

use crate::{ensure_topics, BusError, TopicSpec};

/// Bootstrap servers of the real cluster the tests may use (and wipe).
pub const BROKERS_VAR: &str = "KAFKA_TEST_BROKERS";

/// Partitions per topic in real-cluster tests: more than any test has replicas.
pub const PARTITIONS: i32 = 6;

static ONE_TEST_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The real cluster, held by one test at a time.
pub struct RealCluster {
    pub brokers: String,
    _turn: MutexGuard<'static, ()>,
}

impl RealCluster {
    /// The cluster of [`BROKERS_VAR`] with fresh closeloop topics, or `None` (after
    /// printing `SKIPPED <test>: …`) when the variable is not set.
    pub async fn acquire(test: &str) -> Option<RealCluster> {
        let Some(brokers) = std::env::var(BROKERS_VAR).ok().filter(|b| !b.is_empty()) else {
            eprintln!(
                "SKIPPED {test}: {BROKERS_VAR} is not set (start a cluster with deploy/kafka/cluster.sh)"
            );
            return None;
        };
        let turn = ONE_TEST_AT_A_TIME.lock().await;
        recreate_topics(&brokers)
            .await
            .unwrap_or_else(|error| panic!("fresh topics on {brokers}: {error}"));
        Some(RealCluster {
            brokers,
            _turn: turn,
        })
    }

    /// Kills broker `node` (1–3) with SIGKILL.
    pub async fn kill_broker(&self, node: u32) {
        cluster_script(&["kill", &node.to_string()]).await;
    }

    /// Starts broker `node` again and waits until the cluster serves it.
    pub async fn restart_broker(&self, node: u32) {
        cluster_script(&["start-node", &node.to_string()]).await;
    }
}

/// Runs `deploy/kafka/cluster.sh` with `args`, panicking when it fails.
async fn cluster_script(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kafka/cluster.sh");
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .await
        .unwrap_or_else(|error| panic!("{} does not run: {error}", script.display()));
    assert!(status.success(), "cluster.sh {args:?} failed: {status}");
}

/// Deletes every closeloop topic and creates it anew, empty.
async fn recreate_topics(brokers: &str) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let specs = TopicSpec::all(PARTITIONS);
    let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(&names, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => {
                return Err(BusError::Embedded(format!("delete {topic}: {code}")));
            }
        }
    }
    // Deletion finishes in the background: creating too early fails, so retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ensure_topics(brokers, &specs, 3).await {
            Ok(()) if topics_listed(&admin, &names) => return Ok(()),
            Ok(()) => {}
            Err(error) if Instant::now() > deadline => return Err(error),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether every topic in `names` shows up in the cluster's metadata with leaders.
fn topics_listed(admin: &AdminClient<DefaultClientContext>, names: &[&str]) -> bool {
    let Ok(metadata) = admin.inner().fetch_metadata(None, Duration::from_secs(5)) else {
        return false;
    };
    names.iter().all(|name| {
        metadata.topics().iter().any(|topic| {
            topic.name() == *name
                && topic.error().is_none()
                && topic.partitions().len() == PARTITIONS as usize
                && topic.partitions().iter().all(|p| p.leader() >= 0)
        })
    })
}
