//! Emerging topics (issue 15): English and German feedback that matched no theme, a new
//! topic surging over five weeks of steady background, all of it history (it ended ten
//! days ago: the windows are event time ending at the newest feedback). The topic is
//! listed first with its counts, a replay changes nothing, bad parameters are problems,
//! and an erased customer is no longer quoted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use closeloop_events::{
    Channel, CustomerRef, Envelope, ErasureRequest, ErasureScope, Feedback, FeedbackCategorised,
    Language, SentimentLabel, SentimentResult,
};
use closeloop_testkit::eventually;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{assert_bad_queries, consumed, get_json, metric, Bus, TestApp};

const TOKEN: &str = "s3cret-ops-token";

/// Categorised feedback that matched no theme.
fn unmatched(
    customer: &str,
    language: Language,
    label: SentimentLabel,
    text: &str,
    given_at: DateTime<Utc>,
) -> Envelope<FeedbackCategorised> {
    Envelope::new(FeedbackCategorised {
        feedback: Feedback {
            feedback_id: Uuid::now_v7(),
            source: "shopdesk".into(),
            channel: Channel::AppStore,
            touchpoint: None,
            customer: CustomerRef {
                id: customer.into(),
                locale: None,
                consent: true,
                email: None,
                reference: None,
            },
            text: text.into(),
            rating: None,
            nps: None,
            given_at,
            received_at: Utc::now(),
            metadata: Default::default(),
        },
        language,
        sentiment: SentimentResult {
            label,
            score: if label == SentimentLabel::Negative {
                -0.6
            } else {
                0.0
            },
            confidence: 0.7,
        },
        themes: vec![],
        classifier_version: "test".into(),
        explanation: vec![],
    })
}

const BACKGROUND_EN: [&str; 2] = [
    "Please add more size options for children",
    "The gift wrapping looked lovely",
];
const BACKGROUND_DE: [&str; 2] = [
    "Bitte mehr Größen für Kinder anbieten",
    "Die Geschenkverpackung sah schön aus",
];
const SURGE_EN: [&str; 4] = [
    "The new wallet app lost all my loyalty points",
    "My loyalty points vanished from the wallet app",
    "wallet app shows zero points since Monday",
    "Why does the wallet app reset my points?",
];
const SURGE_DE: [&str; 3] = [
    "Die neue Wallet-App hat meine Treuepunkte gelöscht",
    "Seit Montag zeigt die Wallet-App keine Punkte mehr",
    "Wallet-App zeigt null Treuepunkte",
];

/// Five weeks ending ten days ago: two customers a day on steady things, then eight
/// English and six German customers on the wallet app in the last two days.
pub(crate) fn stream() -> Vec<Envelope<FeedbackCategorised>> {
    let end = Utc::now() - chrono::Duration::days(10);
    let mut stream = Vec::new();
    for day in 0..35 {
        let at = end - chrono::Duration::days(day) - chrono::Duration::hours(3);
        let i = day as usize;
        stream.push(unmatched(
            &format!("bg-en-{day}"),
            Language::En,
            SentimentLabel::Neutral,
            BACKGROUND_EN[i % 2],
            at,
        ));
        stream.push(unmatched(
            &format!("bg-de-{day}"),
            Language::De,
            SentimentLabel::Neutral,
            BACKGROUND_DE[i % 2],
            at + chrono::Duration::hours(1),
        ));
    }
    for i in 0..8 {
        stream.push(unmatched(
            &format!("wallet-en-{i}"),
            Language::En,
            SentimentLabel::Negative,
            SURGE_EN[i % SURGE_EN.len()],
            end - chrono::Duration::hours(2 + 5 * i as i64),
        ));
    }
    for i in 0..6 {
        stream.push(unmatched(
            &format!("wallet-de-{i}"),
            Language::De,
            SentimentLabel::Negative,
            SURGE_DE[i % SURGE_DE.len()],
            end - chrono::Duration::hours(4 + 6 * i as i64),
        ));
    }
    stream
}

pub(crate) async fn publish(bus: &Bus, stream: &[Envelope<FeedbackCategorised>]) {
    for record in stream {
        bus.publisher
            .publish(record, None)
            .await
            .expect("feedback acknowledged");
    }
}

/// The list once it was computed after `after`.
pub(crate) async fn list_after(app: &TestApp, kind: &str, after: DateTime<Utc>) -> Value {
    eventually(
        Duration::from_secs(30),
        "the emerging topics computed again",
        || async move {
            let list = get_json(app, &format!("/v1/topics/emerging?kind={kind}"), TOKEN).await;
            let computed_at: DateTime<Utc> =
                serde_json::from_value(list["computed_at"].clone()).ok()?;
            (computed_at > after).then_some(list)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_topic_in_unmatched_feedback_is_listed_first_and_a_replay_changes_nothing() {
    let bus = Bus::start();
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    config.emerging_refresh_seconds = 1;
    let app = TestApp::spawn(config).await;
    let stream = stream();
    publish(&bus, &stream).await;
    eventually(
        Duration::from_secs(60),
        "every feedback consumed",
        || async { (consumed(&app).await >= stream.len() as f64).then_some(()) },
    )
    .await;

    let list = list_after(&app, "unmatched", Utc::now()).await;
    assert_eq!(list["kind"], "unmatched");
    let first = &list["topics"][0];
    assert_eq!(first["phrase"], "wallet app", "{first}");
    assert_eq!(first["languages"], serde_json::json!(["de", "en"]));
    assert_eq!(first["window"]["mentions"], 14);
    assert_eq!(
        first["baseline"],
        serde_json::json!({"customers": 0, "mentions": 0})
    );
    assert_eq!(first["sentiment"]["negative"], 14);
    assert!(first["rate_ratio"].as_f64() > Some(5.0), "{first}");
    assert!(first["p_value"].as_f64() < Some(1e-6), "{first}");
    let excerpts = first["excerpts"].as_array().expect("excerpts");
    assert_eq!(excerpts.len(), 3, "{first}");
    assert!(excerpts.iter().all(|e| e["excerpt"]
        .as_str()
        .is_some_and(|t| t.to_lowercase().contains("wallet"))));
    // The steady background is not emerging; the window is the last 7 days of event time
    // before the newest feedback, ten days ago.
    let listed: Vec<&str> = list["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    for steady in ["gift wrap", "size option", "geschenkverpackung"] {
        assert!(!listed.iter().any(|k| k.contains(steady)), "{listed:?}");
    }
    assert_eq!(list["totals"]["window"]["customers"], 7 * 2 + 14, "{list}");
    let window_end: DateTime<Utc> = serde_json::from_value(list["window"]["end"].clone()).unwrap();
    assert!(
        window_end < Utc::now() - chrono::Duration::days(9),
        "{list}"
    );
    // Negative feedback of any kind is the other list; the surge is all of it.
    let negative = get_json(&app, "/v1/topics/emerging?kind=negative&limit=1", TOKEN).await;
    assert_eq!(negative["topics"].as_array().map(Vec::len), Some(1));
    assert_eq!(negative["totals"]["window"]["customers"], 14);
    let text = closeloop_testkit::get_text(&app.url("/metrics")).await;
    assert!(
        metric(
            &text,
            "closeloop_trends_emerging_topics",
            "kind=\"unmatched\""
        ) >= Some(1.0),
        "{text}"
    );

    // The same records again: stored once, counted once.
    publish(&bus, &stream).await;
    eventually(Duration::from_secs(30), "the replay consumed", || async {
        (consumed(&app).await >= 2.0 * stream.len() as f64).then_some(())
    })
    .await;
    let replayed = list_after(&app, "unmatched", Utc::now()).await;
    assert_eq!(
        replayed["topics"], list["topics"],
        "a replay changes nothing"
    );
    assert_eq!(replayed["totals"], list["totals"]);

    // Bad parameters are problems that name them.
    assert_bad_queries(
        &app,
        "/v1/topics/emerging",
        TOKEN,
        &[
            ("kind=positive", "kind"),
            ("limit=0", "limit"),
            ("limit=x", "limit"),
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_customer_is_no_longer_quoted() {
    let bus = Bus::start();
    // No ops token: /ops is open (the token is sent and ignored).
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.emerging_refresh_seconds = 1;
    let app = TestApp::spawn(config).await;
    publish(&bus, &stream()).await;

    let quoted = eventually(
        Duration::from_secs(60),
        "the wallet app listed with excerpts, all 14 customers counted",
        || async {
            let list = get_json(&app, "/v1/topics/emerging", TOKEN).await;
            let first = list["topics"].get(0)?;
            let customer = first["excerpts"].get(0)?["customer_id"]
                .as_str()?
                .to_owned();
            // The whole stream counted: a refresh part-way through would quote others
            // and make the erasure's outcome below indistinguishable from it.
            (first["key"] == "wallet app" && first["window"]["customers"] == 14).then_some(customer)
        },
    )
    .await;
    let page = closeloop_testkit::get_text(&app.url("/ops")).await;
    assert!(page.contains("<table id=\"emerging-topics\">"), "{page}");
    assert!(page.contains("<td>wallet app</td>"), "{page}");

    let erasure = Envelope::new(ErasureRequest {
        customer_id: quoted.clone(),
        source: "privacy-admin".into(),
        requested_at: Utc::now(),
        scope: ErasureScope::All,
    });
    bus.publisher
        .publish(&erasure, None)
        .await
        .expect("erasure acknowledged");
    let list = eventually(
        Duration::from_secs(30),
        "the erased customer no longer quoted or counted",
        || async {
            let list = get_json(&app, "/v1/topics/emerging", TOKEN).await;
            let erased = !list.to_string().contains(&quoted)
                && list["topics"][0]["window"]["customers"] != 14;
            erased.then_some(list)
        },
    )
    .await;
    // Their words no longer count: one customer fewer, the others still quoted.
    let first = &list["topics"][0];
    assert_eq!(first["key"], "wallet app", "{list}");
    assert_eq!(first["window"]["customers"], 13, "{first}");
    assert_eq!(
        first["excerpts"].as_array().map(Vec::len),
        Some(3),
        "{first}"
    );
    app.stop().await;
}
