//! Theme impact (issue 14): scored categorised feedback in, each theme's impact on NPS
//! and rating out — ranked by the API and on `/ops`, "not enough data" below the minimum
//! count, bad parameters as problems, a replay changing nothing, the gauges, and the
//! impact quoted in an action's evidence.
//!
//! The feedback, all given yesterday (hand-computed figures below):
//! - 12 mention delivery negatively, NPS answer 2 (detractors), rating 1;
//! - 3 mention price negatively, NPS answer 6 (detractors), rating 3;
//! - 15 mention delivery positively, NPS answer 10 (promoters), rating 5;
//! - 2 mention delivery negatively without a score: not counted.
//!
//! NPS of all 30: 15 promoters − 15 detractors = 0; without the 12 delivery complaints:
//! (15 − 3) / 18 = 66.67 points. Rating: 96 / 30 = 3.2; without them 84 / 18 = 4.667, so
//! delivery costs 1.467 stars. Price has 3 scored complaints: not enough data (min 10).

use std::time::Duration;

use chrono::{DateTime, Utc};
use closeloop_events::{
    Channel, CustomerRef, Envelope, Feedback, FeedbackCategorised, Language, SentimentLabel,
    SentimentResult, ThemeMatch,
};
use closeloop_testkit::eventually;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    assert_bad_queries, consumed, get_json, metric, negative, ActionReader, Bus, TestApp,
};

const TOKEN: &str = "impact-token";

fn scored(
    customer: &str,
    nps: Option<u8>,
    rating: Option<u8>,
    theme: &str,
    sentiment: SentimentLabel,
    given_at: DateTime<Utc>,
) -> Envelope<FeedbackCategorised> {
    Envelope::new(FeedbackCategorised {
        feedback: Feedback {
            feedback_id: Uuid::now_v7(),
            source: "surveyhub".into(),
            channel: Channel::Survey,
            touchpoint: None,
            customer: CustomerRef {
                id: customer.into(),
                locale: None,
                consent: true,
                email: None,
                reference: None,
            },
            text: "about the parcel".into(),
            rating,
            nps,
            given_at,
            received_at: Utc::now(),
            metadata: Default::default(),
        },
        language: Language::En,
        sentiment: SentimentResult {
            label: sentiment,
            score: 0.0,
            confidence: 0.7,
        },
        themes: vec![ThemeMatch {
            id: theme.into(),
            score: 0.8,
            sentiment,
            matched_terms: vec![],
        }],
        classifier_version: "test".into(),
        explanation: vec![],
    })
}

/// The feedback above.
pub fn stream() -> Vec<Envelope<FeedbackCategorised>> {
    let at = Utc::now() - chrono::Duration::days(1);
    let mut stream = Vec::new();
    for i in 0..12 {
        stream.push(scored(
            &format!("late-{i}"),
            Some(2),
            Some(1),
            "delivery_time",
            SentimentLabel::Negative,
            at,
        ));
    }
    for i in 0..3 {
        stream.push(scored(
            &format!("dear-{i}"),
            Some(6),
            Some(3),
            "price",
            SentimentLabel::Negative,
            at,
        ));
    }
    for i in 0..15 {
        stream.push(scored(
            &format!("happy-{i}"),
            Some(10),
            Some(5),
            "delivery_time",
            SentimentLabel::Positive,
            at,
        ));
    }
    for i in 0..2 {
        stream.push(scored(
            &format!("silent-{i}"),
            None,
            None,
            "delivery_time",
            SentimentLabel::Negative,
            at,
        ));
    }
    stream
}

pub async fn publish(bus: &Bus, stream: &[Envelope<FeedbackCategorised>]) {
    for record in stream {
        bus.publisher
            .publish(record, None)
            .await
            .expect("feedback acknowledged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn themes_are_ranked_by_what_they_cost_and_a_replay_changes_nothing() {
    let bus = Bus::start();
    // No ops token: /ops is open (the token is sent and ignored).
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.impact_refresh_seconds = 1;
    let app = TestApp::spawn(config).await;
    let stream = stream();
    publish(&bus, &stream).await;
    eventually(
        Duration::from_secs(60),
        "every feedback consumed",
        || async { (consumed(&app).await >= stream.len() as f64).then_some(()) },
    )
    .await;

    let ranking = get_json(&app, "/v1/themes/impact", TOKEN).await;
    assert_eq!(ranking["feedback"], 30, "{ranking}");
    assert_eq!(ranking["min_count"], 10);
    assert_eq!(ranking["nps"]["mean"], 0.0);
    assert_eq!(ranking["rating"]["mean"], 3.2);
    let delivery = &ranking["themes"][0];
    assert_eq!(delivery["theme"], "delivery_time", "{ranking}");
    assert_eq!(delivery["mentions"], 27);
    assert_eq!(delivery["negative_mentions"], 12);
    assert_eq!(delivery["negative_share"], 0.4);
    let nps = &delivery["nps_impact"];
    assert_eq!(nps["value"], 66.67, "{delivery}");
    assert!(nps["ci_low"].as_f64() < Some(66.67) && nps["ci_high"].as_f64() > Some(66.67));
    assert_eq!(delivery["rating_impact"]["value"], 1.467, "{delivery}");
    let price = &ranking["themes"][1];
    assert_eq!(price["theme"], "price");
    assert_eq!(price["negative_mentions"], 3);
    assert_eq!(price["nps_impact"], "not_enough_data");
    assert_eq!(price["rating_impact"], "not_enough_data");

    // A period without the feedback: nothing to rank.
    let before = get_json(
        &app,
        "/v1/themes/impact?since=2020-01-01T00:00:00Z&until=2020-02-01T00:00:00Z",
        TOKEN,
    )
    .await;
    assert_eq!(before["feedback"], 0);
    assert_eq!(before["themes"], serde_json::json!([]));

    // /ops ranks it under "What costs us most".
    let page = closeloop_testkit::get_text(&app.url("/ops")).await;
    assert!(page.contains("<h2>What costs us most</h2>"), "{page}");
    let table = page
        .split("<table id=\"theme-impact\">")
        .nth(1)
        .expect("the ranking");
    let first = table
        .find("data-theme=\"delivery_time\"")
        .expect("delivery");
    let second = table.find("data-theme=\"price\"").expect("price");
    assert!(first < second, "{table}");
    assert!(table.contains("+66.67 points"), "{table}");

    // The gauges, refreshed every second; price has none (not enough data).
    let text = eventually(Duration::from_secs(30), "the impact gauges", || async {
        let text = closeloop_testkit::get_text(&app.url("/metrics")).await;
        metric(
            &text,
            "closeloop_theme_nps_impact",
            "theme=\"delivery_time\"",
        )
        .is_some()
        .then_some(text)
    })
    .await;
    let gauge = metric(
        &text,
        "closeloop_theme_nps_impact",
        "theme=\"delivery_time\"",
    )
    .unwrap_or_default();
    assert!((gauge - 200.0 / 3.0).abs() < 1e-6, "{gauge}");
    let stars = metric(
        &text,
        "closeloop_theme_rating_impact",
        "theme=\"delivery_time\"",
    )
    .unwrap_or_default();
    assert!((stars - (84.0 / 18.0 - 3.2)).abs() < 1e-6, "{stars}");
    assert_eq!(
        metric(&text, "closeloop_theme_nps_impact", "theme=\"price\""),
        None
    );

    // The same records again: stored once, counted once.
    publish(&bus, &stream).await;
    eventually(Duration::from_secs(30), "the replay consumed", || async {
        (consumed(&app).await >= 2.0 * stream.len() as f64).then_some(())
    })
    .await;
    let replayed = get_json(&app, "/v1/themes/impact", TOKEN).await;
    assert_eq!(replayed["feedback"], ranking["feedback"]);
    assert_eq!(
        replayed["themes"], ranking["themes"],
        "a replay changes nothing"
    );

    // An action raised now quotes what the theme costs.
    let actions = ActionReader::new(bus.brokers());
    for customer in ["a", "b", "c"] {
        bus.publish(&negative(customer)).await;
    }
    let raised = actions.next().await;
    let quoted = raised
        .evidence
        .nps_impact
        .expect("the NPS impact in evidence");
    assert_eq!(quoted.value, 66.67);
    assert_eq!(raised.evidence.rating_impact.map(|i| i.value), Some(1.467));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_periods_are_problems_that_name_the_parameter() {
    let bus = Bus::start();
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    let app = TestApp::spawn(config).await;
    assert_bad_queries(
        &app,
        "/v1/themes/impact",
        TOKEN,
        &[
            ("since=yesterday", "since"),
            ("until=2025-13-01T00:00:00Z", "until"),
            (
                "since=2025-02-01T00:00:00Z&until=2025-01-01T00:00:00Z",
                "since",
            ),
        ],
    )
    .await;
    let empty = get_json(&app, "/v1/themes/impact", TOKEN).await;
    assert_eq!(empty["feedback"], 0);
    assert_eq!(empty["nps"]["mean"], Value::Null);
    app.stop().await;
}
