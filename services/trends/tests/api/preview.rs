//! Replay preview of a proposed taxonomy version: raw feedback on `feedback.raw.v1`, the
//! mentions trends counted of it (as categorise would have published them with the
//! current taxonomy), a proposal stored beside the current version, and a preview over a
//! period that says what the proposal would add and drop and how the detector would fire.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use closeloop_classify::{Classifier, Input, LexiconClassifier, Taxonomy};
use closeloop_events::{
    Channel, CustomerRef, Envelope, ErasureRequest, ErasureScope, Feedback, ThemeMention,
};
use closeloop_store::{sqlx, Database, DatabaseArgs};
use closeloop_testkit::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{counted, metric, Bus, TestApp};

const TOKEN: &str = "preview-ops-token";
const NEW_THEME: &str = "gift_wrap";
const RETIRED: &str = "delivery_time";
const ERASED: &str = "erased-customer";

struct Given {
    text: &'static str,
    locale: &'static str,
    customer: String,
    /// Hours before now it was received (and given).
    hours_ago: i64,
}

fn given(text: &'static str, locale: &'static str, customer: &str, hours_ago: i64) -> Given {
    Given {
        text,
        locale,
        customer: customer.to_owned(),
        hours_ago,
    }
}

fn feedback(given: &Given, now: DateTime<Utc>) -> Feedback {
    let at = now - chrono::Duration::hours(given.hours_ago);
    Feedback {
        feedback_id: Uuid::now_v7(),
        source: "shopdesk".into(),
        channel: Channel::Review,
        touchpoint: None,
        customer: CustomerRef {
            id: given.customer.clone(),
            locale: Some(given.locale.into()),
            consent: false,
            email: None,
            reference: None,
        },
        text: given.text.into(),
        rating: Some(1),
        nps: None,
        given_at: at,
        received_at: at,
        metadata: Default::default(),
    }
}

/// The mentions categorise publishes for `feedback` with `classifier`.
fn mentions(classifier: &LexiconClassifier, feedback: &Feedback) -> Vec<Envelope<ThemeMention>> {
    let result = classifier.classify(&Input {
        text: &feedback.text,
        language_hint: feedback.customer.locale.as_deref(),
        rating: feedback.rating,
        nps: feedback.nps,
    });
    result
        .themes
        .iter()
        .map(|hit| {
            Envelope::new(ThemeMention {
                feedback_id: feedback.feedback_id,
                theme: hit.id.clone(),
                customer_id: feedback.customer.id.clone(),
                source: feedback.source.clone(),
                channel: feedback.channel,
                touchpoint: None,
                language: result.language,
                sentiment: hit.sentiment,
                score: result.sentiment.score,
                rating: feedback.rating,
                nps: feedback.nps,
                excerpt: closeloop_events::text::excerpt(&feedback.text, 160),
                given_at: feedback.given_at,
                received_at: Some(feedback.received_at),
            })
        })
        .collect()
}

fn themes_of(classifier: &LexiconClassifier, feedback: &Feedback) -> BTreeSet<String> {
    mentions(classifier, feedback)
        .into_iter()
        .map(|m| m.data.theme)
        .collect()
}

/// Stores the built-in taxonomy as the current version (unless the service seeded it
/// already) and `proposal` as proposed on it.
async fn store_versions(db: &Database, proposals: &[(&str, &Taxonomy, i64)]) -> String {
    let builtin = Taxonomy::builtin();
    sqlx::query(
        "INSERT INTO trends_taxonomy_versions (version, seq, based_on, taxonomy_json, change, \
         created_at_ms, applied_seq, applied_at_ms) VALUES ($1, 1, NULL, $2, 'the file', 1, 1, 1) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&builtin.version)
    .bind(builtin.to_json().to_string())
    .execute(db.pool())
    .await
    .expect("current version stored");
    for (change, taxonomy, seq) in proposals {
        sqlx::query(
            "INSERT INTO trends_taxonomy_versions (version, seq, based_on, taxonomy_json, \
             change, created_at_ms) VALUES ($1, $2, $3, $4, $5, 2)",
        )
        .bind(&taxonomy.version)
        .bind(*seq)
        .bind(&builtin.version)
        .bind(taxonomy.to_json().to_string())
        .bind(*change)
        .execute(db.pool())
        .await
        .expect("proposal stored");
    }
    builtin.version
}

async fn start(app: &TestApp, version: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/taxonomy/versions/{version}/preview")))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// Starts a preview and waits until it is done.
async fn preview(app: &TestApp, version: &str, body: Value) -> Value {
    let started = start(app, version, body).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()["location"]
        .to_str()
        .expect("a location")
        .to_owned();
    let job: Value = started.json().await.expect("JSON");
    assert_eq!(
        location,
        format!("/v1/taxonomy/previews/{}", job["id"].as_str().unwrap())
    );
    assert_eq!(job["version"], version);
    assert!(job["progress"]["read"].is_u64(), "{job}");
    assert!(job["progress"]["total"].is_u64(), "{job}");
    eventually(Duration::from_secs(60), "the preview done", || async {
        let job: Value = app
            .client
            .get(app.url(&location))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (job["state"] != "running").then_some(job)
    })
    .await
}

fn theme<'a>(result: &'a Value, id: &str) -> &'a Value {
    result["themes"]
        .as_array()
        .and_then(|themes| themes.iter().find(|t| t["theme"] == id))
        .unwrap_or_else(|| panic!("{id} in {result}"))
}

fn detector<'a>(result: &'a Value, id: &str) -> &'a Value {
    result["detectors"]
        .as_array()
        .and_then(|themes| themes.iter().find(|t| t["theme"] == id))
        .unwrap_or_else(|| panic!("{id} in {result}"))
}

async fn erase(bus: &Bus, db: &Database, customer: &str) {
    let erasure = Envelope::new(ErasureRequest {
        customer_id: customer.into(),
        source: "privacy-admin".into(),
        requested_at: Utc::now(),
        scope: ErasureScope::All,
    });
    bus.publisher
        .publish(&erasure, None)
        .await
        .expect("erasure acknowledged");
    eventually(Duration::from_secs(30), "the erasure recorded", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM trends_erasures")
            .fetch_one(db.pool())
            .await
            .ok()?;
        (n > 0).then_some(())
    })
    .await;
}

async fn service_db(database: &DatabaseArgs) -> Database {
    Database::connect(&database.config("trends"))
        .await
        .expect("the service's database")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_shows_what_a_proposal_adds_and_drops_and_how_detection_changes() {
    let bus = Bus::start();
    let database = closeloop_store::testing::database_args("trends");
    let mut config = bus.config(database.clone());
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    let app = TestApp::spawn(config).await;
    let db = service_db(&database).await;

    let builtin = Taxonomy::builtin();
    let gift_wrap = serde_json::from_value(json!({
        "id": NEW_THEME,
        "names": {"en": "Gift wrapping", "de": "Geschenkverpackung"},
        "keywords": {"en": ["wrapping"], "de": ["geschenkpapier"]}
    }))
    .expect("a theme");
    let added = builtin
        .with_theme_added(&format!("{}-r2", builtin.version), gift_wrap)
        .expect("valid proposal");
    let retired = builtin
        .with_theme_retired(&format!("{}-r3", builtin.version), RETIRED)
        .expect("valid proposal");
    let current = store_versions(
        &db,
        &[
            ("added gift_wrap", &added, 2),
            ("retired delivery_time", &retired, 3),
        ],
    )
    .await;

    let now = Utc::now();
    let mut all = Vec::new();
    // The cue, in the period: four customers in English, two in German.
    for (i, text) in [
        "The wrapping was torn, terrible.",
        "Awful wrapping, everything was crushed.",
        "The wrapping was ripped and dirty, very disappointing.",
        "Terrible wrapping again.",
    ]
    .into_iter()
    .enumerate()
    {
        all.push(given(text, "en-GB", &format!("en-{i}"), 1));
    }
    for (i, text) in [
        "Das Geschenkpapier war zerrissen, schrecklich.",
        "Furchtbares Geschenkpapier, alles kaputt.",
    ]
    .into_iter()
    .enumerate()
    {
        all.push(given(text, "de-DE", &format!("de-{i}"), 2));
    }
    // Without the cue, in the period (some of delivery time).
    all.push(given(
        "The delivery took three weeks.",
        "en-GB",
        "late-1",
        3,
    ));
    all.push(given(
        "The delivery took three weeks, again.",
        "en-GB",
        "late-2",
        3,
    ));
    all.push(given("Great staff, thank you.", "en-GB", "happy-1", 3));
    // The cue, but received before the period.
    all.push(given(
        "The wrapping was torn, terrible.",
        "en-GB",
        "old-1",
        30,
    ));
    // The cue, from a customer who is erased.
    all.push(given(
        "The wrapping was torn, terrible.",
        "en-GB",
        ERASED,
        1,
    ));

    let classifier = LexiconClassifier::new(builtin.clone());
    let proposed = LexiconClassifier::new(added.clone());
    let mut published = 0;
    let mut retired_in_period = 0;
    let mut expected_added = 0;
    for one in &all {
        let feedback = feedback(one, now);
        let in_period = one.hours_ago < 24 && one.customer != ERASED;
        if in_period && themes_of(&classifier, &feedback).contains(RETIRED) {
            retired_in_period += 1;
        }
        if in_period && themes_of(&proposed, &feedback).contains(NEW_THEME) {
            expected_added += 1;
        }
        for mention in mentions(&classifier, &feedback) {
            bus.publish(&mention).await;
            published += 1;
        }
        bus.publisher
            .publish(&Envelope::new(feedback), None)
            .await
            .expect("feedback acknowledged");
    }
    assert_eq!(
        expected_added, 6,
        "the cue is found in every text that has it"
    );
    assert_eq!(
        retired_in_period, 2,
        "the delivery texts are about delivery time"
    );
    counted(&app, published).await;
    erase(&bus, &db, ERASED).await;

    let period = json!({
        "since": (now - chrono::Duration::hours(24)).to_rfc3339(),
        "until": (now + chrono::Duration::minutes(1)).to_rfc3339(),
    });
    let job = preview(&app, &added.version, period.clone()).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["compared_with"], current.as_str());
    assert_eq!(job["progress"]["read"], job["progress"]["total"], "{job}");
    let result = &job["result"];
    let totals = &result["totals"];
    assert_eq!(totals["in_period"], 10, "{totals}");
    assert_eq!(totals["skipped_erased"], 1, "{totals}");
    assert_eq!(totals["read"], all.len(), "{totals}");
    let gift = theme(result, NEW_THEME);
    assert_eq!(gift["added"], 6, "{gift}");
    assert_eq!(gift["dropped"], 0, "{gift}");
    let examples = gift["added_examples"].as_array().expect("examples");
    assert_eq!(examples.len(), 3, "{gift}");
    for example in examples {
        assert!(
            example["excerpt"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains("wrapping")
                    || e.to_lowercase().contains("geschenkpapier")),
            "{example}"
        );
        assert!(example["feedback_id"].is_string() && example["language"].is_string());
    }
    let surge = detector(result, NEW_THEME);
    assert_eq!(surge["before"]["fired"], false, "{surge}");
    assert_eq!(surge["after"]["fired"], true, "{surge}");
    assert_eq!(surge["after"]["triggers"][0], "surge", "{surge}");
    assert!(surge["after"]["first_at"].is_string(), "{surge}");
    assert_eq!(surge["changed"], true);

    // Retiring a theme drops what was counted of it in the period.
    let job = preview(&app, &retired.version, period.clone()).await;
    assert_eq!(job["state"], "done", "{job}");
    let dropped = theme(&job["result"], RETIRED);
    assert_eq!(dropped["dropped"], retired_in_period, "{dropped}");
    assert_eq!(dropped["added"], 0, "{dropped}");
    assert_eq!(
        dropped["dropped_examples"].as_array().map(Vec::len),
        Some(2)
    );

    // A period with none of it.
    let job = preview(
        &app,
        &added.version,
        json!({
            "since": (now - chrono::Duration::days(20)).to_rfc3339(),
            "until": (now - chrono::Duration::days(10)).to_rfc3339(),
        }),
    )
    .await;
    assert_eq!(job["result"]["totals"]["in_period"], 0, "{job}");
    assert_eq!(job["result"]["themes"], json!([]), "{job}");

    let metrics = closeloop_testkit::get_text(&app.url("/metrics")).await;
    assert_eq!(
        metric(
            &metrics,
            "closeloop_trends_taxonomy_previews_total",
            "result=\"done\""
        ),
        Some(3.0)
    );

    // The page renders the preview for a signed-in operator.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signed_in = client
        .post(app.url("/ops/login"))
        .header("origin", &app.address)
        .form(&[("token", TOKEN)])
        .send()
        .await
        .expect("sign in");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .expect("a cookie")
        .split(';')
        .next()
        .expect("a cookie")
        .to_owned();
    let ops = client
        .get(app.url("/ops"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("page");
    let csrf = ops
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token")
        .to_owned();
    let forged = client
        .post(app.url(&format!("/ops/taxonomy/versions/{}/preview", added.version)))
        .header("origin", &app.address)
        .header("cookie", &cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .expect("form");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let since = period["since"].as_str().unwrap_or_default().to_owned();
    let posted = client
        .post(app.url(&format!("/ops/taxonomy/versions/{}/preview", added.version)))
        .header("origin", &app.address)
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("since", since.as_str()),
            ("until", ""),
        ])
        .send()
        .await
        .expect("form");
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    let page_at = posted.headers()["location"]
        .to_str()
        .expect("a location")
        .to_owned();
    assert!(page_at.starts_with("/ops/taxonomy/previews/"), "{page_at}");
    let page = eventually(Duration::from_secs(60), "the preview page done", || async {
        let page = client
            .get(app.url(&page_at))
            .header("cookie", &cookie)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (!page.contains("http-equiv=\"refresh\"")).then_some(page)
    })
    .await;
    assert!(
        page.contains(&format!("id=\"theme-{NEW_THEME}\"")),
        "{page}"
    );
    assert!(page.contains("+6 added"), "{page}");
    assert!(page.contains("id=\"detectors\""), "{page}");
    let anonymous = client.get(app.url(&page_at)).send().await.expect("page");
    assert!(anonymous
        .text()
        .await
        .unwrap_or_default()
        .contains("name=\"token\""));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_previews_are_problems_with_pointers() {
    let bus = Bus::start();
    let database = closeloop_store::testing::database_args("trends");
    let mut config = bus.config(database.clone());
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    let app = TestApp::spawn(config).await;
    let db = service_db(&database).await;
    let builtin = Taxonomy::builtin();
    let retired = builtin
        .with_theme_retired(&format!("{}-r2", builtin.version), RETIRED)
        .expect("valid proposal");
    store_versions(&db, &[("retired", &retired, 2)]).await;

    for (body, pointer) in [
        (
            json!({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}),
            "/since",
        ),
        (json!({"since": "yesterday"}), "/since"),
        (json!({"until": 17}), "/until"),
        (
            json!({"since": "2026-01-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"}),
            "/since",
        ),
    ] {
        let response = start(&app, &retired.version, body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("JSON");
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
    }
    let unknown = start(&app, "no-such-version", json!({})).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );

    for id in [Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        let response = app
            .client
            .get(app.url(&format!("/v1/taxonomy/previews/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let anonymous = app
        .client
        .post(app.url(&format!(
            "/v1/taxonomy/versions/{}/preview",
            retired.version
        )))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // No body at all: the last seven days (nothing in them here).
    let started = app
        .client
        .post(app.url(&format!(
            "/v1/taxonomy/versions/{}/preview",
            retired.version
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let job: Value = started.json().await.expect("JSON");
    let since = DateTime::parse_from_rfc3339(job["period"]["since"].as_str().unwrap_or_default())
        .expect("since");
    let until = DateTime::parse_from_rfc3339(job["period"]["until"].as_str().unwrap_or_default())
        .expect("until");
    assert_eq!(until - since, chrono::Duration::days(7));
    app.stop().await;
}
