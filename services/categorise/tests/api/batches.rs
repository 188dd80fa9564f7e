//! The batch path: what the consumer fetched together is classified, stored in one
//! transaction and published at once, with the same outcome as handling the records one
//! after another. The tests hand the batch to categorise's handler themselves (the
//! consumer batches only what happens to arrive together), then start categorise to
//! look at its store, topics and metrics.

use closeloop_bus::Handler;
use closeloop_events::{Envelope, Feedback, FeedbackCategorised, ThemeMention};
use uuid::Uuid;

use crate::helpers::{build_categorise, feedback, incoming, Keyed};

const LATE: &str = "The delivery was late again, terrible service.";
const PRAISE: &str = "Wonderful app, the new checkout is brilliant and fast.";
const DAMAGED: &str = "My parcel arrived two weeks late and the box was damaged.";

/// How many of `events` are about the feedback with `id`.
fn published_of(events: &[Keyed<FeedbackCategorised>], id: Uuid) -> usize {
    events
        .iter()
        .filter(|record| record.event.feedback.feedback_id == id)
        .count()
}

/// `envelope`'s feedback under the same id with another body, as a producer bypassing
/// ingest could send it.
fn other_body(envelope: &Envelope<Feedback>) -> Envelope<Feedback> {
    let mut other = envelope.clone();
    other.data.text = PRAISE.into();
    other.data.rating = Some(5);
    other.data.customer.email = Some("someone-else@example.com".into());
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_stored_once_each_and_published_with_a_mention_per_theme() {
    let built = build_categorise().await;
    let anna = feedback("anna", "en-GB", LATE, 1);
    let bernd = feedback(
        "bernd",
        "de-DE",
        "Super schnelle Lieferung, alles perfekt!",
        5,
    );
    let anna_again = feedback("anna", "en-GB", DAMAGED, 2); // another feedback, one key
    let batch = [
        incoming(&anna, 0),
        incoming(&bernd, 1),
        incoming(&anna_again, 2),
    ];
    built
        .service
        .feedback_handler()
        .handle_batch(&batch)
        .await
        .expect("the batch is handled");
    let categorise = built.run();

    let categorised = categorise.events::<FeedbackCategorised>(3).await;
    assert_eq!(categorised.len(), 3, "one record each: {categorised:#?}");
    let mut themes = 0;
    for envelope in [&anna, &bernd, &anna_again] {
        let id = envelope.data.feedback_id;
        let record = categorised
            .iter()
            .find(|record| record.event.feedback == envelope.data)
            .unwrap_or_else(|| panic!("{id} published"));
        assert_eq!(
            record.key.as_deref(),
            Some(envelope.data.customer.id.as_str()),
            "keyed by customer"
        );
        assert_eq!(categorise.stored_rows(id).await, 1, "{id} stored once");
        themes += record.event.themes.len();
    }
    assert!(themes > 0, "the texts name themes: {categorised:#?}");
    let mentions = categorise.events::<ThemeMention>(themes).await;
    assert_eq!(
        mentions.len(),
        themes,
        "one mention per theme: {mentions:#?}"
    );
    for record in &categorised {
        let mut expected: Vec<&str> = record.event.themes.iter().map(|t| t.id.as_str()).collect();
        let mut got: Vec<&str> = mentions
            .iter()
            .filter(|m| m.event.feedback_id == record.event.feedback.feedback_id)
            .map(|m| m.event.theme.as_str())
            .collect();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
    }
    assert!(mentions
        .iter()
        .all(|m| m.key.as_deref() == Some(m.event.theme.as_str())));
    assert_eq!(
        categorise
            .metric("closeloop_feedback_categorised_total", &[])
            .await,
        3.0
    );
    assert_eq!(
        categorise
            .metric("closeloop_theme_mentions_total", &[])
            .await,
        themes as f64
    );
    categorise.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_is_published_again_and_stored_once() {
    let built = build_categorise().await;
    let carla = feedback("carla", "en-US", LATE, 1);
    let dora = feedback("dora", "en-GB", PRAISE, 5);
    let batch = [incoming(&carla, 0), incoming(&dora, 1)];
    let handler = built.service.feedback_handler();
    handler.handle_batch(&batch).await.expect("the batch");
    // The same batch again, as after a crash before its offsets were committed.
    handler.handle_batch(&batch).await.expect("its replay");
    let categorise = built.run();

    let categorised = categorise.events::<FeedbackCategorised>(4).await;
    assert_eq!(
        categorised.len(),
        4,
        "each published twice: {categorised:#?}"
    );
    for envelope in [&carla, &dora] {
        let id = envelope.data.feedback_id;
        assert_eq!(published_of(&categorised, id), 2, "{id} published again");
        assert_eq!(categorise.stored_rows(id).await, 1, "{id} stored once");
    }
    assert_eq!(
        categorise
            .metric("closeloop_feedback_categorised_total", &[])
            .await,
        2.0,
        "counted once"
    );
    categorise.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_body_under_a_known_id_in_a_batch_is_counted_not_published() {
    let built = build_categorise().await;
    let first = feedback("emil", "en-GB", LATE, 1);
    let second = other_body(&first);
    let next = feedback("frida", "en-GB", DAMAGED, 2);
    let handler = built.service.feedback_handler();
    // The first one record by record (the path a batch falls back to), then a batch.
    handler
        .handle(&incoming(&first, 0))
        .await
        .expect("the first");
    handler
        .handle_batch(&[incoming(&second, 1), incoming(&next, 2)])
        .await
        .expect("the batch with the second body");
    let categorise = built.run();

    let categorised = categorise.events::<FeedbackCategorised>(2).await;
    assert_eq!(
        categorised.len(),
        2,
        "the first and the next: {categorised:#?}"
    );
    assert!(
        categorised
            .iter()
            .all(|r| r.event.feedback == first.data || r.event.feedback == next.data),
        "nothing of the second body: {categorised:#?}"
    );
    let mentions = categorise.events::<ThemeMention>(1).await;
    assert!(
        mentions.iter().all(|m| m.event.excerpt != PRAISE),
        "no mention of the second body: {mentions:#?}"
    );
    assert_eq!(categorise.stored_rows(first.data.feedback_id).await, 1);
    assert_eq!(categorise.stored_rows(next.data.feedback_id).await, 1);
    assert_eq!(
        categorise
            .metric("closeloop_feedback_id_conflicts_total", &[])
            .await,
        1.0
    );
    assert_eq!(
        categorise
            .metric("closeloop_feedback_categorised_total", &[])
            .await,
        2.0
    );
    categorise.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_repeated_within_a_batch_is_handled_as_if_one_came_after_the_other() {
    let built = build_categorise().await;
    let gina = feedback("gina", "en-GB", LATE, 1);
    let hugo = feedback("hugo", "en-GB", DAMAGED, 2);
    let hugo_other = other_body(&hugo);
    let ida = feedback("ida", "en-US", PRAISE, 5);
    let batch = [
        incoming(&gina, 0),
        incoming(&hugo, 1),
        incoming(&gina, 2),       // the same feedback again: published again
        incoming(&hugo_other, 3), // another body under hugo's id: not published
        incoming(&ida, 4),
    ];
    built
        .service
        .feedback_handler()
        .handle_batch(&batch)
        .await
        .expect("the batch is handled");
    let categorise = built.run();

    let categorised = categorise.events::<FeedbackCategorised>(4).await;
    assert_eq!(categorised.len(), 4, "{categorised:#?}");
    assert_eq!(published_of(&categorised, gina.data.feedback_id), 2);
    assert_eq!(published_of(&categorised, hugo.data.feedback_id), 1);
    assert_eq!(published_of(&categorised, ida.data.feedback_id), 1);
    assert!(
        categorised
            .iter()
            .all(|r| r.event.feedback != hugo_other.data),
        "the first body of hugo's id wins: {categorised:#?}"
    );
    for envelope in [&gina, &hugo, &ida] {
        let id = envelope.data.feedback_id;
        assert_eq!(categorise.stored_rows(id).await, 1, "{id} stored once");
    }
    assert_eq!(
        categorise
            .metric("closeloop_feedback_id_conflicts_total", &[])
            .await,
        1.0
    );
    assert_eq!(
        categorise
            .metric("closeloop_feedback_categorised_total", &[])
            .await,
        3.0,
        "each feedback counted once"
    );
    categorise.stop().await;
}
