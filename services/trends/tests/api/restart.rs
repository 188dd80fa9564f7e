//! A restarted service rebuilds its windows from the database and re-consumes what it
//! had seen without raising the same action twice.

use closeloop_events::ActionEventKind;
use serde_json::Value;

use crate::helpers::{negative, ActionReader, Bus, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_and_a_full_replay_raise_nothing_twice() {
    let bus = Bus::start();
    let database = closeloop_store::testing::database_args("trends");
    let actions = ActionReader::new(bus.brokers());

    let first = TestApp::spawn(bus.config(database.clone())).await;
    let mentions = [negative("c1"), negative("c2"), negative("c3")];
    for mention in &mentions {
        bus.publish(mention).await;
    }
    let raised = actions.next().await;
    assert_eq!(raised.kind, ActionEventKind::Raised);
    assert_eq!(raised.evidence.distinct_customers, 3);
    first.stop().await;

    // Same database, new consumer group: the topic is consumed again from the start, and
    // the same mentions are published once more on top (a producer retrying).
    let second = TestApp::spawn(bus.config(database)).await;
    for mention in &mentions {
        bus.publish(mention).await;
    }
    // A new customer's complaint as the marker that everything before it was handled:
    // it updates the action. A second `raised` would have come before it.
    bus.publish(&negative("c4")).await;
    let next = actions.next().await;
    assert_eq!(
        next.kind,
        ActionEventKind::Updated,
        "no second raised event"
    );
    assert_eq!(next.action_id, raised.action_id);
    assert_eq!(next.evidence.distinct_customers, 4);
    assert_eq!(
        next.evidence.negative_mentions, 4,
        "replayed mentions were not counted twice"
    );

    let listed: Value = second
        .client
        .get(second.url("/v1/actions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = listed.as_array().expect("a JSON array");
    assert_eq!(listed.len(), 1, "exactly one action: {listed:?}");
    assert_eq!(listed[0]["status"], "open");
    second.stop().await;
}
