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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_resolution_does_not_bring_answered_complaints_back() {
    let bus = Bus::start();
    let database = closeloop_store::testing::database_args("trends");
    let actions = ActionReader::new(bus.brokers());

    let first = TestApp::spawn(bus.config(database.clone())).await;
    for customer in ["c1", "c2", "c3"] {
        bus.publish(&negative(customer)).await;
    }
    let raised = actions.next().await;
    assert_eq!(raised.kind, ActionEventKind::Raised);
    let response = first
        .client
        .post(first.url(&format!("/v1/actions/{}/resolve", raised.action_id)))
        .json(&serde_json::json!({"message": {"en": "Fixed."}, "resolved_by": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(actions.next().await.kind, ActionEventKind::Resolved);
    first.stop().await;

    // A new consumer group replays every mention, the answered ones included: they
    // must neither reopen the action nor count towards the next incident.
    let second = TestApp::spawn(bus.config(database)).await;
    bus.publish(&negative("c4")).await;
    bus.publish(&negative("c5")).await;
    // Two fresh complaints are not enough on their own (three are needed) ...
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let listed: Value = second
        .client
        .get(second.url("/v1/actions?status=unresolved"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed,
        serde_json::json!([]),
        "nothing reopened by the replay"
    );
    // ... a third is, and reopens the action once, with only the fresh complaints.
    bus.publish(&negative("c6")).await;
    let reopened = actions.next().await;
    assert_eq!(reopened.kind, ActionEventKind::Reopened);
    assert_eq!(reopened.action_id, raised.action_id);
    assert_eq!(reopened.evidence.negative_mentions, 3);
    assert_eq!(reopened.evidence.distinct_customers, 3);
    second.stop().await;
}
