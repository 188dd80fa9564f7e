//! For tests against a real Kafka cluster (`deploy/kafka/cluster.sh`), found the way the
//! PostgreSQL tests find theirs: through an environment variable, [`BROKERS_VAR`]. Every
//! such test starts from fresh closeloop topics (replication 3, `min.insync.replicas=2`),
//! one test at a time per test binary ([`RealCluster::acquire`]).

use std::path::PathBuf;

use tokio::sync::{Mutex, MutexGuard};

use crate::{recreate_topics, TopicSpec};

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
        recreate_topics(&brokers, &TopicSpec::all(PARTITIONS), 3)
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
