//! The loop on a real Apache Kafka cluster (3 KRaft nodes, topics with replication 3 and
//! `min.insync.replicas=2`; `deploy/kafka/cluster.sh`), found through
//! `KAFKA_TEST_BROKERS`: it closes, and a broker killed with SIGKILL mid-stream (each
//! node in turn, so the partition leaders and the active controller among them) loses
//! nothing ingest accepted, doubles nothing, raises no action twice and notifies no
//! customer twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use closeloop::up::dev_key;
use closeloop_bus::testing::RealCluster;
use closeloop_tests::{
    assert_the_loop_closes, categorised_ids, eventually, loop_configs, post_complaints, resolve,
    start_loop_on,
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
    let reached = |n: usize| {
        let posted = posted.clone();
        async move {
            eventually(Duration::from_secs(120), "posting progresses", || {
                let posted = posted.clone();
                async move { (posted.load(Ordering::Relaxed) >= n).then_some(()) }
            })
            .await
        }
    };
    // Every node in turn: one of them is the active controller, each leads partitions.
    for (node, at) in [(1, 100), (2, 350), (3, 600)] {
        reached(at).await;
        cluster.kill_broker(node).await;
        reached(at + 100).await;
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

    let expected: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    assert_eq!(expected.len(), accepted.len(), "an id handed out twice");
    let deadline = Instant::now() + Duration::from_secs(180);
    let stored = loop {
        let ids = categorised_ids(&categorise_db).await;
        if ids.len() >= accepted.len() || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
    assert_eq!(stored.len(), stored_set.len(), "a feedback stored twice");
    let missing: Vec<&&str> = expected.difference(&stored_set).collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted events not categorised, e.g. {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(stored_set, expected, "stored ids differ from accepted ids");

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
    for action in &actions {
        let id = action["action_id"].as_str().expect("action id");
        resolve(
            &stack,
            id,
            "We changed carriers.",
            "Wir haben den Paketdienst gewechselt.",
        )
        .await;
    }
    let mut due = 0;
    for action in &actions {
        let id = action["action_id"].as_str().expect("action id");
        let url = format!("http://{}/v1/notifications?action={id}", stack.notify);
        let deliveries = eventually(Duration::from_secs(120), "deliveries made", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
                let deliveries = body["deliveries"].as_array()?.clone();
                (!deliveries.is_empty() && deliveries.iter().all(|d| d["status"] == "delivered"))
                    .then_some(deliveries)
            }
        })
        .await;
        let customers: HashSet<&str> = deliveries
            .iter()
            .map(|d| d["customer_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            customers.len(),
            deliveries.len(),
            "a customer told twice: {deliveries:?}"
        );
        due += deliveries.len();
    }
    eventually(
        Duration::from_secs(60),
        "every delivery at the sink",
        || {
            let sink = sink.clone();
            async move { (sink.received().len() >= due).then_some(()) }
        },
    )
    .await;
    let received = sink.received();
    let webhook_ids: HashSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
    assert_eq!(webhook_ids.len(), received.len(), "a webhook sent twice");
    assert_eq!(received.len(), due, "messages other than the deliveries");
    stack.stop().await;
}
