//! The main path: a raw feedback is classified, stored once, and published as one
//! `feedback.categorised.v1` record plus one `feedback.themes.v1` record per theme.

use closeloop_events::{FeedbackCategorised, Language, SentimentLabel, ThemeMention};

use crate::helpers::{feedback, spawn_categorise, Keyed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_stored_once_and_published_with_one_mention_per_theme() {
    let categorise = spawn_categorise().await;
    let complaint = feedback(
        "anna",
        "en-GB",
        "My parcel arrived two weeks late and the box was damaged. Really disappointing.",
        1,
    );
    let praise = feedback(
        "bernd",
        "de-DE",
        "Super schnelle Lieferung, alles perfekt verpackt. Vielen Dank!",
        5,
    );
    categorise.publish(&complaint).await;
    categorise.publish(&praise).await;

    let categorised = categorise.events::<FeedbackCategorised>(2).await;
    assert_eq!(categorised.len(), 2, "one record each: {categorised:#?}");
    let of = |envelope: &closeloop_events::Envelope<closeloop_events::Feedback>| {
        categorised
            .iter()
            .find(|record| record.event.feedback == envelope.data)
            .unwrap_or_else(|| panic!("{} categorised", envelope.data.customer.id))
    };

    let english = of(&complaint);
    assert_eq!(english.key.as_deref(), Some("anna"), "keyed by customer");
    assert_eq!(english.event.language, Language::En);
    assert_eq!(english.event.sentiment.label, SentimentLabel::Negative);
    assert!(
        english.event.themes.iter().any(|t| t.id == "delivery_time"),
        "{:?}",
        english.event.themes
    );

    let german = of(&praise);
    assert_eq!(german.key.as_deref(), Some("bernd"));
    assert_eq!(german.event.language, Language::De);
    assert_eq!(german.event.sentiment.label, SentimentLabel::Positive);
    assert!(!german.event.themes.is_empty(), "{german:#?}");

    let expected = english.event.themes.len() + german.event.themes.len();
    let mentions = categorise.events::<ThemeMention>(expected).await;
    assert_eq!(mentions.len(), expected, "{mentions:#?}");
    for item in [english, german] {
        assert_one_mention_per_theme(&item.event, &mentions);
        let stored = categorise
            .stored_rows(item.event.feedback.feedback_id)
            .await;
        assert_eq!(stored, 1, "{} stored once", item.event.feedback.customer.id);
    }
    categorise.stop().await;
}

/// `mentions` holds exactly one record per theme of `categorised`, keyed by the theme and
/// carrying the feedback's language and customer.
fn assert_one_mention_per_theme(
    categorised: &FeedbackCategorised,
    mentions: &[Keyed<ThemeMention>],
) {
    let feedback = &categorised.feedback;
    let of_it: Vec<&Keyed<ThemeMention>> = mentions
        .iter()
        .filter(|m| m.event.feedback_id == feedback.feedback_id)
        .collect();
    let mut themes: Vec<&str> = of_it.iter().map(|m| m.event.theme.as_str()).collect();
    themes.sort_unstable();
    let mut expected: Vec<&str> = categorised.themes.iter().map(|t| t.id.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(
        themes, expected,
        "one mention per theme of {}",
        feedback.customer.id
    );
    for mention in of_it {
        assert_eq!(
            mention.key.as_deref(),
            Some(mention.event.theme.as_str()),
            "keyed by theme"
        );
        assert_eq!(mention.event.language, categorised.language);
        assert_eq!(mention.event.customer_id, feedback.customer.id);
    }
}
