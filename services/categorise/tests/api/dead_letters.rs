//! A record categorise can never handle goes to the dead-letter topic with what is needed
//! to look into it, and does not hold up the records behind it.

use closeloop_events::{topics, DeadLetter};
use closeloop_testkit::eventually;

use crate::helpers::{feedback, spawn_categorise, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_and_the_next_one_still_handled() {
    let categorise = spawn_categorise().await;
    // The same key as the good record: the same partition, so the poison comes first.
    categorise.publish_raw("dora", b"{not json").await;
    let next = feedback(
        "dora",
        "en-GB",
        "Two weeks late, the parcel never arrived on time.",
        1,
    );
    categorise.publish(&next).await;

    let dead_letter_topic = topics::dead_letter_of(topics::FEEDBACK_RAW);
    assert_eq!(dead_letter_topic, "feedback.raw.dlq.v1");
    let dead = categorise.records(&dead_letter_topic, 1).await;
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].key.as_deref(), Some("dora"), "the original key");
    let letter: DeadLetter =
        serde_json::from_value(dead[0].value.clone()).expect("a dead-letter record");
    assert_eq!(letter.origin_topic, topics::FEEDBACK_RAW);
    assert_eq!(letter.consumer_group, categorise.config.group_id);
    assert_eq!(letter.payload, "{not json");
    assert!(!letter.error.is_empty());

    let id = next.data.feedback_id;
    eventually(WAIT, "the record after the poison stored", || async {
        (categorise.stored_rows(id).await == 1).then_some(())
    })
    .await;
    assert_eq!(
        categorise
            .metric(
                "closeloop_events_dead_lettered_total",
                &[r#"topic="feedback.raw.v1""#]
            )
            .await,
        1.0
    );
    categorise.stop().await;
}
