//! The loop on a real Apache Kafka cluster (3 KRaft nodes, topics with replication 3 and
//! `min.insync.replicas=2`; `deploy/kafka/cluster.sh`), found through
//! `KAFKA_TEST_BROKERS`: it closes, and a broker killed with SIGKILL mid-stream (each
//! node in turn, so the partition leaders and the active controller among them) loses
//! nothing ingest accepted, doubles nothing, raises no action twice and notifies no
//! customer twice.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use closeloop::up::dev_key;
use closeloop_bus::testing::RealCluster;
use closeloop_tests::{
    assert_categorised_exactly_once, assert_each_complainer_told_once, assert_the_loop_closes,
    eventually, loop_configs, post_complaints, resolve_all, start_loop_on, wait_until_posted,
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_closes_on_a_real_cluster() {
    let Some(cluster) = RealCluster::acquire("the_loop_closes_on_a_real_cluster").await else {
        return;
    };
    let (stack, sink) = start_loop_on(&cluster.brokers, loop_configs()).await;
    assert_the_loop_closes(&stack, &sink).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_killed_mid_stream_loses_and_doubles_nothing() {
    let Some(cluster) =
        RealCluster::acquire("a_broker_killed_mid_stream_loses_and_doubles_nothing").await
    else {
        return;
    };
    let configs = loop_configs();
    let categorise_db = configs.categorise.database.clone();
    let (stack, sink) = start_loop_on(&cluster.brokers, configs).await;

    let posted = Arc::new(AtomicUsize::new(0));
    let poster = {
        let url = format!("http://{}/v1/feedback", stack.ingest);
        let posted = posted.clone();
        tokio::spawn(async move {
            post_complaints(&url, &dev_key("shopdesk"), 900, 8, 29, posted).await
        })
    };
    // Every node in turn: one of them is the active controller, each leads partitions.
    for (node, at) in [(1, 100), (2, 350), (3, 600)] {
        wait_until_posted(&posted, at).await;
        cluster.kill_broker(node).await;
        wait_until_posted(&posted, at + 100).await;
        cluster.restart_broker(node).await;
    }
    let (accepted, refused) = poster.await.expect("poster");
    // While a leader moves, ingest may answer 503 (retry later), never half-accept.
    assert!(
        refused.iter().all(|status| *status == 503),
        "unexpected statuses: {refused:?}"
    );
    assert!(accepted.len() >= 600, "only {} accepted", accepted.len());
    println!(
        "{} accepted, {} refused with 503",
        accepted.len(),
        refused.len()
    );

    // A 503 after a broker timeout may still have landed: stored, never accepted.
    let unanswered = assert_categorised_exactly_once(&categorise_db, &accepted).await;
    assert!(
        unanswered <= refused.len(),
        "{unanswered} stored but never offered"
    );

    // One action per theme, however often the stream was interrupted.
    let client = reqwest::Client::new();
    let actions = eventually(Duration::from_secs(60), "an action", || {
        let client = client.clone();
        let url = format!("http://{}/v1/actions", stack.trends);
        async move {
            let actions: Value = client.get(url).send().await.ok()?.json().await.ok()?;
            let actions = actions.as_array()?.clone();
            (!actions.is_empty()).then_some(actions)
        }
    })
    .await;
    let mut per_theme: HashMap<&str, usize> = HashMap::new();
    for action in &actions {
        *per_theme
            .entry(action["theme"].as_str().unwrap_or_default())
            .or_default() += 1;
    }
    assert!(
        per_theme.values().all(|count| *count == 1),
        "an action raised twice: {per_theme:?}"
    );

    // Resolved: every complainer is told once.
    let action_ids: Vec<String> = actions
        .iter()
        .filter_map(|action| action["action_id"].as_str().map(str::to_owned))
        .collect();
    resolve_all(stack.trends, &action_ids).await;
    assert_each_complainer_told_once(stack.notify, &sink, &action_ids).await;
    stack.stop().await;
}
