//! At-least-once delivery means categorise sees some records twice (a crash between the
//! insert and the offset commit, a rebalance): the store keeps each feedback once.

use closeloop_events::{FeedbackCategorised, ThemeMention};
use closeloop_testkit::eventually;

use crate::helpers::{feedback, spawn_categorise, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_feedback_is_stored_once() {
    let categorise = spawn_categorise().await;
    let complaint = feedback(
        "carla",
        "en-US",
        "The delivery was late again, terrible service.",
        1,
    );
    categorise.publish(&complaint).await;
    categorise.publish(&complaint).await; // the very same record, delivered again

    eventually(WAIT, "both records handled", || async {
        let consumed = categorise
            .metric(
                "closeloop_events_consumed_total",
                &[r#"topic="feedback.raw.v1""#],
            )
            .await;
        (consumed >= 2.0).then_some(())
    })
    .await;
    let id = complaint.data.feedback_id;
    assert_eq!(categorise.stored_rows(id).await, 1, "stored once");
    assert_eq!(
        categorise
            .metric("closeloop_feedback_categorised_total", &[])
            .await,
        1.0,
        "counted once"
    );
    // Publishing again downstream is allowed (consumers dedupe by feedback id); what
    // goes out is the same feedback.
    let published = categorise.events::<FeedbackCategorised>(1).await;
    assert!(!published.is_empty());
    assert!(
        published.iter().all(|r| r.event.feedback.feedback_id == id),
        "{published:#?}"
    );
    categorise.stop().await;
}

/// Ingest refuses a known event id with another body, but a producer that bypasses it
/// must not get a second body downstream either: categorise keeps the first feedback and
/// republishes only that one (a replay), never what the second body says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_body_under_a_known_id_publishes_nothing() {
    let categorise = spawn_categorise().await;
    let first = feedback(
        "dora",
        "en-GB",
        "The delivery was late again, terrible service.",
        1,
    );
    let mut second = first.clone();
    second.data.text = "Wonderful app, the new checkout is brilliant and fast.".into();
    second.data.rating = Some(5);
    second.data.customer.email = Some("someone-else@example.com".into());
    // One key, so one partition: handled in this order.
    categorise.publish(&first).await;
    categorise.publish(&second).await;
    categorise.publish(&first).await; // a true replay of the first

    eventually(WAIT, "all three records handled", || async {
        let conflicts = categorise
            .metric("closeloop_feedback_id_conflicts_total", &[])
            .await;
        let categorised = categorise.events::<FeedbackCategorised>(2).await;
        (conflicts >= 1.0 && categorised.len() >= 2).then_some(())
    })
    .await;
    let categorised = categorise.events::<FeedbackCategorised>(2).await;
    assert_eq!(
        categorised.len(),
        2,
        "the first and its replay: {categorised:#?}"
    );
    assert!(
        categorised.iter().all(|r| r.event.feedback == first.data),
        "only the first body goes out: {categorised:#?}"
    );
    let mentions = categorise.events::<ThemeMention>(1).await;
    assert!(
        mentions.iter().all(|m| m.event.excerpt == first.data.text),
        "no mention of the second body: {mentions:#?}"
    );
    assert_eq!(categorise.stored_rows(first.data.feedback_id).await, 1);
    categorise.stop().await;
}
