//! Arrival order does not matter: a multi-day stream delivered shuffled gives the same
//! action and detector state as delivered in order, and a restart after late mentions
//! rebuilds the same state (issue 18).

use std::time::Duration;

use chrono::{DateTime, Utc};
use closeloop_events::{Envelope, SentimentLabel, ThemeMention};
use serde_json::Value;

use crate::helpers::{counted, get_json, mention, Bus, TestApp, THEME};

const TOKEN: &str = "s3cret-ops-token";

/// Three days of event time ending an hour ago: two customers complaining every three
/// hours (below every threshold), and eight customers within 16 minutes on the second day.
fn three_days() -> Vec<Envelope<ThemeMention>> {
    let start = Utc::now() - chrono::Duration::days(3);
    let at = |minutes: i64| start + chrono::Duration::minutes(minutes);
    let negative = |customer: String, given_at: DateTime<Utc>| {
        mention(&customer, SentimentLabel::Negative, given_at)
    };
    let mut stream: Vec<_> = (0..23)
        .map(|i| negative(format!("b{}", i % 2), at(i * 180 + 7)))
        .collect();
    stream.extend((0..8).map(|i| negative(format!("s{i}"), at(30 * 60 + i * 2))));
    stream.sort_by_key(|m| m.data.given_at);
    stream
}

/// Same stream, a fixed permutation that delivers most mentions out of event-time order.
fn shuffled(stream: &[Envelope<ThemeMention>]) -> Vec<Envelope<ThemeMention>> {
    let n = stream.len();
    (0..n).map(|i| stream[(i * 17 + 5) % n].clone()).collect()
}

struct Outcome {
    actions: Vec<Value>,
    detector: Value,
}

async fn outcome(app: &TestApp) -> Outcome {
    let actions = get_json(app, "/v1/actions", TOKEN).await;
    let stats = get_json(
        app,
        &format!("/v1/themes/{THEME}/stats?window_minutes=60"),
        TOKEN,
    )
    .await;
    Outcome {
        actions: actions.as_array().expect("a JSON array").clone(),
        detector: stats["detector"].clone(),
    }
}

async fn deliver(
    bus: &Bus,
    database: closeloop_store::DatabaseArgs,
    stream: &[Envelope<ThemeMention>],
) -> (TestApp, Outcome) {
    let mut config = bus.config(database);
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    let app = TestApp::spawn(config).await;
    for mention in stream {
        bus.publish(mention).await;
    }
    counted(&app, stream.len()).await;
    let outcome = outcome(&app).await;
    (app, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffled_multi_day_stream_gives_the_same_action_as_in_order_and_survives_a_restart() {
    let stream = three_days();

    let bus = Bus::start();
    let (app, in_order) = deliver(
        &bus,
        closeloop_store::testing::database_args("trends"),
        &stream,
    )
    .await;
    app.stop().await;

    let bus = Bus::start();
    let database = closeloop_store::testing::database_args("trends");
    let (app, late) = deliver(&bus, database.clone(), &shuffled(&stream)).await;

    for outcome in [&in_order, &late] {
        assert_eq!(
            outcome.actions.len(),
            1,
            "one action: {:?}",
            outcome.actions
        );
        let evidence = &outcome.actions[0]["evidence"];
        assert_eq!(evidence["detector"], "surge");
        assert!(
            evidence["distinct_customers"].as_u64() >= Some(3),
            "{evidence}"
        );
    }
    let evidence = |o: &Outcome, key: &str| o.actions[0]["evidence"][key].clone();
    // The trigger's event time is the surge's, on the second day, whatever the order.
    assert!(evidence(&late, "triggered_at").is_string());
    assert_eq!(
        evidence(&in_order, "triggered_at"),
        evidence(&late, "triggered_at")
    );
    assert_eq!(
        in_order.detector["active_since"],
        Value::Null,
        "cooled down"
    );
    assert_eq!(in_order.detector, late.detector, "the same counts");
    assert_eq!(late.detector["dropped_beyond_horizon"], 0);

    // A restart rebuilds the same state from the stored mentions, late ones included.
    app.stop().await;
    let mut config = bus.config(database);
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    let restarted = TestApp::spawn(config).await;
    let rebuilt = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let rebuilt = outcome(&restarted).await;
            if rebuilt.detector != Value::Null {
                return rebuilt;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the theme's state rebuilt within 30 s");
    assert_eq!(rebuilt.detector, late.detector);
    assert_eq!(rebuilt.actions, late.actions, "nothing raised again");
    restarted.stop().await;
}
