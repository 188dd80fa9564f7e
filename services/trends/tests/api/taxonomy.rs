//! Themes at run time (issue 15): versions proposed and applied through the API, published
//! on `taxonomy.v1` in order, refused with pointers when invalid or stale, published again
//! by a restart when an earlier run could not, and followed by every instance.

use std::time::Duration;

use closeloop_bus::TopicReader;
use closeloop_events::{Envelope, TaxonomyApplied};
use closeloop_store::sqlx;
use closeloop_testkit::eventually;
use serde_json::{json, Value};

use crate::helpers::{get_json, metric, negative, ActionReader, Bus, TestApp};

pub const TOKEN: &str = "s3cret-ops-token";

pub async fn spawn(bus: &Bus, database: closeloop_store::DatabaseArgs) -> TestApp {
    let mut config = bus.config(database);
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    config.emerging_refresh_seconds = 1;
    TestApp::spawn(config).await
}

/// A POST of `body` with the ops token: status and JSON answer.
pub async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub fn wallet_theme() -> Value {
    json!({
        "id": "wallet_app",
        "names": {"en": "Wallet app", "de": "Wallet-App"},
        "phrases": {"en": ["wallet app"], "de": ["wallet app"]},
        "keywords": {"en": ["wallet"], "de": ["wallet"]},
        "parent": null
    })
}

/// Every `taxonomy.v1` record, oldest first.
async fn published(bus: &Bus) -> Vec<TaxonomyApplied> {
    let mut reader = TopicReader::<TaxonomyApplied>::open(bus.brokers(), None)
        .await
        .expect("reader");
    let mut all = Vec::new();
    while let Some(batch) = reader.next_batch(100).await.expect("read") {
        all.extend(batch.into_iter().map(|incoming| incoming.envelope.data));
    }
    all
}

async fn metrics(app: &TestApp) -> String {
    closeloop_testkit::get_text(&app.url("/metrics")).await
}

/// Waits until `app` follows `version`.
async fn follows(app: &TestApp, version: &str) {
    let label = format!("version=\"{version}\"");
    eventually(
        Duration::from_secs(30),
        &format!("following {version}"),
        || async {
            let text = metrics(app).await;
            (metric(&text, "closeloop_trends_taxonomy_version_info", &label) == Some(1.0))
                .then_some(())
        },
    )
    .await;
}

/// Proposes `change` (on the current version) and applies it: the applied version.
async fn propose_and_apply(app: &TestApp, change: Value) -> String {
    let (status, proposed) = post(app, "/v1/taxonomy/versions", change).await;
    assert_eq!(status, 201, "{proposed}");
    let version = proposed["version"].as_str().expect("a version").to_owned();
    let (status, applied) = post(
        app,
        &format!("/v1/taxonomy/versions/{version}/apply"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_theme_is_added_edited_and_retired_and_each_version_published_in_order() {
    let bus = Bus::start();
    let app = spawn(&bus, closeloop_store::testing::database_args("trends")).await;
    let first = get_json(&app, "/v1/taxonomy", TOKEN).await;
    let root = first["version"].as_str().expect("version").to_owned();
    assert_eq!(first["based_on"], Value::Null);
    assert!(first["themes"].as_array().is_some_and(|t| t.len() > 5));

    // Proposed: stored, not current.
    let response = app
        .client
        .post(app.url("/v1/taxonomy/versions"))
        .bearer_auth(TOKEN)
        .json(&json!({"add_theme": wallet_theme()}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let proposed: Value = response.json().await.expect("JSON");
    let added = format!("{root}-r2");
    assert_eq!(proposed["version"], added.as_str());
    assert_eq!(location, format!("/v1/taxonomy/versions/{added}"));
    assert_eq!(proposed["state"], "proposed");
    assert_eq!(proposed["based_on"], root.as_str());
    assert_eq!(proposed["current"], false);
    assert_eq!(proposed["change"], "added theme wallet_app");
    assert_eq!(get_json(&app, "/v1/taxonomy", TOKEN).await["version"], root);

    // Applied, with a reclassification period riding on the event.
    let since = chrono::Utc::now() - chrono::Duration::days(7);
    let until = chrono::Utc::now();
    let (status, applied) = post(
        &app,
        &format!("/v1/taxonomy/versions/{added}/apply"),
        json!({"reclassify": {"since": since.to_rfc3339(), "until": until.to_rfc3339()}}),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["state"], "applied");
    assert_eq!(applied["current"], true);
    follows(&app, &added).await;
    let current = get_json(&app, "/v1/taxonomy", TOKEN).await;
    assert_eq!(current["version"], added.as_str());
    assert!(current["themes"]
        .as_array()
        .expect("themes")
        .iter()
        .any(|t| t["id"] == "wallet_app"));

    // Actions name the new theme as the applied version does.
    let actions = ActionReader::new(bus.brokers());
    for customer in ["c1", "c2", "c3"] {
        let mut complaint = negative(customer);
        complaint.data.theme = "wallet_app".into();
        bus.publish(&Envelope::new(complaint.data)).await;
    }
    let raised = actions.next().await;
    assert_eq!(raised.theme, "wallet_app");
    assert_eq!(raised.theme_name["de"], "Wallet-App");

    let mut edited_theme = wallet_theme();
    edited_theme["keywords"]["en"] = json!(["wallet", "loyalty"]);
    let edited = propose_and_apply(&app, json!({"edit_theme": edited_theme})).await;
    let retired = propose_and_apply(
        &app,
        json!({"based_on": edited, "retire_theme": "wallet_app"}),
    )
    .await;
    assert_eq!(
        (edited.as_str(), retired.as_str()),
        (format!("{root}-r3").as_str(), format!("{root}-r4").as_str())
    );
    follows(&app, &retired).await;

    // Newest first, the current one flagged.
    let versions = get_json(&app, "/v1/taxonomy/versions", TOKEN).await;
    let listed: Vec<(&str, &str, bool)> = versions
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap_or_default(),
                v["state"].as_str().unwrap_or_default(),
                v["current"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (retired.as_str(), "applied", true),
            (edited.as_str(), "applied", false),
            (added.as_str(), "applied", false),
            (root.as_str(), "applied", false),
        ]
    );
    let one = get_json(&app, &format!("/v1/taxonomy/versions/{edited}"), TOKEN).await;
    assert_eq!(one["taxonomy"]["version"], edited.as_str());
    let wallet = one["taxonomy"]["themes"]
        .as_array()
        .expect("themes")
        .iter()
        .find(|t| t["id"] == "wallet_app")
        .cloned()
        .expect("the edited theme");
    assert_eq!(wallet["keywords"]["en"], json!(["wallet", "loyalty"]));

    // Published in order: the seeded file version, then each applied one.
    let events = published(&bus).await;
    let order: Vec<&str> = events.iter().map(|e| e.version.as_str()).collect();
    assert_eq!(order, [&root, &added, &edited, &retired]);
    assert_eq!(events[1].change, "added theme wallet_app");
    assert_eq!(events[1].based_on.as_deref(), Some(root.as_str()));
    let period = events[1].reclassify.expect("a reclassification");
    assert_eq!(period.since.timestamp(), since.timestamp());
    assert_eq!(period.until.timestamp(), until.timestamp());
    assert_eq!(events[2].reclassify, None);
    assert_eq!(events[3].change, "retired theme wallet_app");

    // Applied already, unknown: problems.
    let (status, problem) = post(
        &app,
        &format!("/v1/taxonomy/versions/{retired}/apply"),
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    let (status, _) = post(&app, "/v1/taxonomy/versions/nope/apply", json!({})).await;
    assert_eq!(status, 404);
    let unknown = app
        .client
        .get(app.url("/v1/taxonomy/versions/nope"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
    let unauthorised = app
        .client
        .get(app.url("/v1/taxonomy"))
        .send()
        .await
        .expect("request");
    assert_eq!(unauthorised.status(), 401);

    let text = metrics(&app).await;
    let changes = |change: &str| {
        metric(
            &text,
            "closeloop_trends_taxonomy_changes_total",
            &format!("change=\"{change}\""),
        )
    };
    assert_eq!(changes("proposed"), Some(3.0));
    assert_eq!(changes("applied"), Some(3.0));
    assert_eq!(changes("rejected"), Some(1.0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_changes_are_refused_with_pointers() {
    let bus = Bus::start();
    let app = spawn(&bus, closeloop_store::testing::database_args("trends")).await;
    let with = |patch: Value| {
        let mut theme = wallet_theme();
        for (key, value) in patch.as_object().expect("an object") {
            theme[key] = value.clone();
        }
        theme
    };
    let cases = [
        (
            json!({"add_theme": with(json!({"id": "Wallet App"}))}),
            vec!["/add_theme/id"],
        ),
        (
            json!({"add_theme": with(json!({"id": "delivery"}))}),
            vec!["/add_theme/id"],
        ),
        (
            json!({"add_theme": with(json!({"names": {"en": "Wallet"}}))}),
            vec!["/add_theme/names/de"],
        ),
        (
            json!({"add_theme": with(json!({"parent": "nope"}))}),
            vec!["/add_theme/parent"],
        ),
        (
            json!({"add_theme": with(json!({"keywords": {"fr": ["portefeuille"]}}))}),
            vec!["/add_theme/keywords/fr"],
        ),
        (
            json!({"add_theme": with(json!({"keywords": {}, "phrases": {}}))}),
            vec!["/add_theme/keywords"],
        ),
        (
            json!({"edit_theme": with(json!({"id": "nope"}))}),
            vec!["/edit_theme/id"],
        ),
        (json!({"retire_theme": "nope"}), vec!["/retire_theme"]),
        // delivery_time refines delivery.
        (json!({"retire_theme": "delivery"}), vec!["/retire_theme"]),
        (
            json!({"based_on": "1999.01", "retire_theme": "price"}),
            vec!["/based_on"],
        ),
        (
            json!({"retire_theme": "price", "add_theme": wallet_theme()}),
            vec![""],
        ),
        (
            json!({"retire_theme": "price", "colour": "red"}),
            vec!["/colour"],
        ),
    ];
    for (body, pointers) in cases {
        let (status, problem) = post(&app, "/v1/taxonomy/versions", body.clone()).await;
        assert_eq!(status, 422, "{body} → {problem}");
        let got: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["pointer"].as_str())
            .collect();
        assert_eq!(got, pointers, "{body} → {problem}");
    }
    // A reclassification period that is not one.
    let (status, proposed) = post(
        &app,
        "/v1/taxonomy/versions",
        json!({"add_theme": wallet_theme()}),
    )
    .await;
    assert_eq!(status, 201);
    let apply = format!(
        "/v1/taxonomy/versions/{}/apply",
        proposed["version"].as_str().expect("version")
    );
    let (status, problem) = post(
        &app,
        &apply,
        json!({"reclassify": {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/reclassify/since");
    let (status, problem) = post(&app, &apply, json!({"reclassify": {"since": "x"}})).await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/reclassify/since");
    assert_eq!(problem["errors"][1]["pointer"], "/reclassify/until");
    // Nothing of that was stored: only the file's version and the valid proposal.
    let versions = get_json(&app, "/v1/taxonomy/versions", TOKEN).await;
    assert_eq!(versions.as_array().map(Vec::len), Some(2), "{versions}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_apply_once() {
    let bus = Bus::start();
    let app = spawn(&bus, closeloop_store::testing::database_args("trends")).await;
    // Two proposals on one base: the first apply wins, the other is stale.
    let (_, a) = post(
        &app,
        "/v1/taxonomy/versions",
        json!({"add_theme": wallet_theme()}),
    )
    .await;
    let (_, b) = post(
        &app,
        "/v1/taxonomy/versions",
        json!({"retire_theme": "price"}),
    )
    .await;
    let apply = |v: &Value| {
        format!(
            "/v1/taxonomy/versions/{}/apply",
            v["version"].as_str().unwrap_or_default()
        )
    };
    let (apply_a, apply_b) = (apply(&a), apply(&b));
    let (first, second) = tokio::join!(
        post(&app, &apply_a, json!({})),
        post(&app, &apply_b, json!({}))
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{first:?} {second:?}");
    let refused = if first.0 == 409 { &first.1 } else { &second.1 };
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("propose the change again"), "{detail}");

    // One proposal applied twice at once: exactly one applies.
    // (Whichever won above, a theme of another id can be added.)
    let mut loyalty = wallet_theme();
    loyalty["id"] = json!("loyalty_points");
    let (status, c) = post(&app, "/v1/taxonomy/versions", json!({"add_theme": loyalty})).await;
    assert_eq!(status, 201, "{c}");
    let apply_c = apply(&c);
    let (first, second) = tokio::join!(
        post(&app, &apply_c, json!({})),
        post(&app, &apply_c, json!({}))
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{first:?} {second:?}");
    let events = published(&bus).await;
    assert_eq!(events.len(), 3, "the file's version and two applied ones");
    assert_eq!(events[2].version, c["version"].as_str().unwrap_or_default());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_publishes_what_was_not_and_follows_the_stored_version() {
    let bus = Bus::start();
    let database = closeloop_store::testing::database_args("trends");
    let first = spawn(&bus, database.clone()).await;
    let (status, proposed) = post(
        &first,
        "/v1/taxonomy/versions",
        json!({"add_theme": wallet_theme()}),
    )
    .await;
    assert_eq!(status, 201);
    let version = proposed["version"].as_str().expect("version").to_owned();
    first.stop().await;

    // Applied by an instance that stopped before the broker acknowledged it.
    let db = closeloop_store::Database::connect(&database.config("trends"))
        .await
        .expect("connect");
    sqlx::query(
        "UPDATE trends_taxonomy_versions SET applied_seq = 2, applied_at_ms = $2 \
         WHERE version = $1",
    )
    .bind(&version)
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(db.pool())
    .await
    .expect("applied");

    let second = spawn(&bus, database.clone()).await;
    follows(&second, &version).await;
    assert_eq!(
        get_json(&second, "/v1/taxonomy", TOKEN).await["version"],
        version.as_str()
    );
    let events = published(&bus).await;
    assert_eq!(
        events.last().map(|e| e.version.as_str()),
        Some(version.as_str())
    );
    let (unpublished,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM trends_taxonomy_versions \
         WHERE applied_seq IS NOT NULL AND published_at_ms IS NULL",
    )
    .fetch_one(db.pool())
    .await
    .expect("count");
    assert_eq!(unpublished, 0);
    second.stop().await;

    // The topic's newest record is another version (a topic created anew, a journal that
    // lost records, a hand-made event): the next start publishes the current one again.
    let mut other = events.last().expect("an event").taxonomy.clone();
    other["version"] = json!("handmade-1");
    bus.publisher
        .publish(
            &Envelope::new(TaxonomyApplied {
                version: "handmade-1".into(),
                based_on: None,
                taxonomy: other,
                change: "by hand".into(),
                applied_at: chrono::Utc::now(),
                reclassify: None,
            }),
            None,
        )
        .await
        .expect("published");
    let third = spawn(&bus, database).await;
    let events = published(&bus).await;
    assert_eq!(
        events.last().map(|e| e.version.as_str()),
        Some(version.as_str())
    );
    assert!(events.iter().filter(|e| e.version == version).count() >= 2);
    follows(&third, &version).await;
    db.close().await;
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_follows_the_version_another_applied() {
    let bus = Bus::start();
    let database = closeloop_store::testing::database_args("trends");
    let one = spawn(&bus, database.clone()).await;
    let other = spawn(&bus, database).await;
    let version = propose_and_apply(&one, json!({"add_theme": wallet_theme()})).await;
    follows(&other, &version).await;

    // An invalid version on the topic is skipped; a valid one is followed.
    let mut taxonomy = get_json(&one, &format!("/v1/taxonomy/versions/{version}"), TOKEN).await
        ["taxonomy"]
        .clone();
    taxonomy["version"] = json!("handmade-1");
    let event = |version: &str, taxonomy: Value| {
        Envelope::new(TaxonomyApplied {
            version: version.into(),
            based_on: None,
            taxonomy,
            change: "by hand".into(),
            applied_at: chrono::Utc::now(),
            reclassify: None,
        })
    };
    bus.publisher
        .publish(
            &event("broken-1", json!({"version": "broken-1", "themes": []})),
            None,
        )
        .await
        .expect("published");
    bus.publisher
        .publish(&event("handmade-1", taxonomy), None)
        .await
        .expect("published");
    follows(&other, "handmade-1").await;
    follows(&one, "handmade-1").await;
    let text = metrics(&other).await;
    assert_eq!(
        metric(
            &text,
            "closeloop_trends_taxonomy_version_info",
            "version=\"broken-1\""
        ),
        None,
        "never followed"
    );
    one.stop().await;
    other.stop().await;
}

/// The CSRF token the page's forms carry.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned()
}

/// The `href` of the first link with `class`.
fn link_of(page: &str, class: &str) -> String {
    page.split(&format!("class=\"{class}\" href=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the link")
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_makes_an_emerging_topic_a_theme_and_it_is_no_longer_emerging() {
    let bus = Bus::start();
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.ops_token = None;
    config.emerging_refresh_seconds = 1;
    let app = TestApp::spawn(config).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = |path: &str| {
        let url = app.url(path);
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("text")
        }
    };
    crate::emerging::publish(&bus, &crate::emerging::stream()).await;
    eventually(
        Duration::from_secs(60),
        "the wallet app emerging",
        || async {
            let list = get_json(&app, "/v1/topics/emerging", TOKEN).await;
            (list["topics"][0]["key"] == "wallet app").then_some(())
        },
    )
    .await;

    // The section, an edit form prefilled with the theme, and the emerging row's link.
    let shown = page("/ops").await;
    assert!(shown.contains("<h2 id=\"themes\">Themes</h2>"), "{shown}");
    assert!(shown.contains("id=\"theme-delivery_time\""), "{shown}");
    assert!(shown.contains("id=\"retire-delivery_time\""), "{shown}");
    assert!(shown.contains("id=\"no-proposals\""), "{shown}");
    let edit = page("/ops?edit_theme=delivery_time").await;
    assert!(
        edit.contains("name=\"id\" value=\"delivery_time\" readonly"),
        "{edit}"
    );
    assert!(
        edit.contains("<option value=\"delivery\" selected>"),
        "{edit}"
    );
    let link = link_of(&shown, "make-theme");
    assert!(link.starts_with("/ops?new_theme=wallet%20app"), "{link}");
    let prefilled = page(&link).await;
    assert!(
        prefilled.contains("name=\"id\" value=\"wallet_app\""),
        "{prefilled}"
    );
    assert!(prefilled.contains("name=\"phrases_en\" value=\"wallet app\""));
    assert!(prefilled.contains("name=\"phrases_de\" value=\"wallet app\""));
    let csrf = csrf_of(&prefilled);
    let root = get_json(&app, "/v1/taxonomy", TOKEN).await["version"]
        .as_str()
        .expect("version")
        .to_owned();

    let post = |path: &str, fields: Vec<(&str, &str)>| {
        client
            .post(app.url(path))
            .header("origin", app.address.clone())
            .form(&fields)
            .send()
    };
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("change", "add"),
        ("based_on", root.as_str()),
        ("id", "wallet_app"),
        ("name_en", "Wallet app"),
        ("phrases_en", "wallet app"),
        ("phrases_de", "wallet app"),
        ("parent", ""),
    ];
    // Refused: the page says why, with the form as it was sent.
    let refused = post("/ops/themes", fields.clone()).await.expect("post");
    assert_eq!(refused.status(), 422);
    let refused = refused.text().await.expect("page");
    assert!(
        refused.contains("add_theme names de: is required"),
        "{refused}"
    );
    assert!(refused.contains("name=\"phrases_en\" value=\"wallet app\""));
    fields.push(("name_de", "Wallet-App"));
    let proposed = post("/ops/themes", fields).await.expect("post");
    assert_eq!(proposed.status(), 303);
    let version = format!("{root}-r2");
    let shown = page("/ops").await;
    assert!(
        shown.contains(&format!("id=\"apply-{version}\"")),
        "{shown}"
    );
    let applied = post(
        &format!("/ops/themes/{version}/apply"),
        vec![("csrf", csrf.as_str()), ("since", ""), ("until", "")],
    )
    .await
    .expect("post");
    assert_eq!(applied.status(), 303);
    follows(&app, &version).await;
    let shown = page("/ops?notice=taxonomy_applied").await;
    assert!(shown.contains("id=\"theme-wallet_app\""), "{shown}");
    assert!(shown.contains("Taxonomy version applied"), "{shown}");

    // Its phrase is a cue now: no longer emerging.
    let after = chrono::Utc::now();
    let list = crate::emerging::list_after(&app, "unmatched", after).await;
    let keys: Vec<&str> = list["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert!(!keys.contains(&"wallet app"), "{keys:?}");
    app.stop().await;
}
