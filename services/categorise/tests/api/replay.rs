//! At-least-once delivery means categorise sees some records twice (a crash between the
//! insert and the offset commit, a rebalance): the store keeps each feedback once.

use closeloop_events::FeedbackCategorised;
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
