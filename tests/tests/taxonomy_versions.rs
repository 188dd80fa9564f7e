//! A theme added at run time, end to end on the embedded broker: feedback no theme
//! covers → a proposed taxonomy version → its replay preview → applied with a
//! reclassification of the period → trends counts exactly what the preview said, new
//! feedback is classified by the new version, and reclassifying the period again (a
//! second version) neither counts a mention twice nor raises a second action.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use closeloop_tests::{
    count_rows, eventually, loop_configs, open_action, post_all, start_loop_with,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// A complaint about the points of a loyalty programme, which no built-in theme covers.
fn loyalty_complaint(n: usize) -> Value {
    let german = n % 3 == 2;
    let text = if german {
        "Meine ShopClub-Punkte sind nach dem letzten Einkauf verschwunden."
    } else {
        "My ShopClub points disappeared after the last purchase, very annoying."
    };
    json!({
        "channel": "app-store",
        "customer": {"id": format!("loyal-{n}"), "locale": if german { "de-DE" } else { "en-GB" }, "consent": true},
        "text": text,
        "rating": 1
    })
}

fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn post_json(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("trends answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_theme_added_at_run_time_counts_what_its_preview_said_once() {
    let mut configs = loop_configs();
    configs.trends.min_negative_mentions = 5;
    configs.trends.min_distinct_customers = 5;
    let databases = (
        configs.categorise.database.clone(),
        configs.trends.database.clone(),
    );
    let (stack, _sink) = start_loop_with(configs).await;
    let client = reqwest::Client::new();
    let trends = stack.trends;

    let since = Utc::now() - chrono::Duration::seconds(5);
    let complaints: Vec<Value> = (0..9).map(loyalty_complaint).collect();
    post_all(&stack, "loyal", &complaints).await;
    eventually(WAIT, "9 feedback categorised", || async {
        let stored = count_rows(
            &databases.0,
            "categorise",
            "SELECT COUNT(*) FROM categorise_feedback",
        )
        .await;
        (stored == 9).then_some(())
    })
    .await;
    let until = Utc::now() + chrono::Duration::seconds(1);
    let period = json!({"since": rfc3339(since), "until": rfc3339(until)});

    // Propose the theme and preview it over the period.
    let (status, proposal) = post_json(
        &client,
        format!("http://{trends}/v1/taxonomy/versions"),
        json!({"add_theme": {
            "id": "loyalty_points",
            "names": {"en": "ShopClub points", "de": "ShopClub-Punkte"},
            "keywords": {"en": ["shopclub"], "de": ["shopclub"]},
            "phrases": {"en": ["shopclub points"]}
        }}),
    )
    .await;
    assert_eq!(status, 201, "{proposal}");
    let version = proposal["version"].as_str().expect("a version").to_owned();
    let (status, job) = post_json(
        &client,
        format!("http://{trends}/v1/taxonomy/versions/{version}/preview"),
        period.clone(),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().expect("a job id").to_owned();
    let preview: Value = eventually(WAIT, "the preview done", || {
        let client = client.clone();
        let url = format!("http://{trends}/v1/taxonomy/previews/{job_id}");
        async move {
            let job: Value = client.get(url).send().await.ok()?.json().await.ok()?;
            assert_ne!(job["state"], "failed", "{job}");
            (job["state"] == "done").then_some(job)
        }
    })
    .await;
    let themes = preview["result"]["themes"]
        .as_array()
        .expect("themes")
        .clone();
    let added = themes
        .iter()
        .find(|t| t["theme"] == "loyalty_points")
        .and_then(|t| t["added"].as_i64())
        .expect("the new theme in the preview");
    assert_eq!(added, 9, "{preview}");
    assert_eq!(
        count_rows(
            &databases.1,
            "trends",
            "SELECT COUNT(*) FROM trends_mentions WHERE theme = 'loyalty_points'"
        )
        .await,
        0,
        "a preview changes nothing"
    );

    // Apply it with the period reclassified: trends counts what the preview said.
    let (status, applied) = post_json(
        &client,
        format!("http://{trends}/v1/taxonomy/versions/{version}/apply"),
        json!({"reclassify": period}),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    let count_loyalty = || async {
        count_rows(
            &databases.1,
            "trends",
            "SELECT COUNT(*) FROM trends_mentions WHERE theme = 'loyalty_points'",
        )
        .await
    };
    eventually(WAIT, "the reclassified mentions counted", || async {
        (count_loyalty().await == added).then_some(())
    })
    .await;

    // The new theme's complaints are a surge: one action.
    let action = open_action(&stack, "loyalty_points", WAIT).await;
    assert_eq!(action["theme_name"]["de"], "ShopClub-Punkte", "{action}");

    // New feedback is classified by the new version without a restart.
    post_all(&stack, "loyal-live", &[loyalty_complaint(100)]).await;
    eventually(
        WAIT,
        "the live complaint counted under the new theme",
        || async { (count_loyalty().await == added + 1).then_some(()) },
    )
    .await;
    let versions = count_rows(
        &databases.0,
        "categorise",
        &format!(
            "SELECT COUNT(*) FROM categorise_feedback WHERE classifier_version LIKE '%{version}'"
        ),
    )
    .await;
    assert_eq!(
        versions, 10,
        "the reclassified and the new feedback name the version"
    );

    // A second version reclassifying the same period adds nothing twice.
    let (status, second) = post_json(
        &client,
        format!("http://{trends}/v1/taxonomy/versions"),
        json!({"based_on": version, "edit_theme": {
            "id": "loyalty_points",
            "names": {"en": "ShopClub points", "de": "ShopClub-Punkte"},
            "keywords": {"en": ["shopclub"], "de": ["shopclub", "shopclubpunkte"]},
            "phrases": {"en": ["shopclub points"], "de": ["shopclub punkte"]}
        }}),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    let second = second["version"].as_str().expect("a version").to_owned();
    let (status, applied) = post_json(
        &client,
        format!("http://{trends}/v1/taxonomy/versions/{second}/apply"),
        json!({"reclassify": {"since": rfc3339(since), "until": rfc3339(Utc::now())}}),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    post_all(&stack, "loyal-after", &[loyalty_complaint(200)]).await;
    eventually(
        WAIT,
        "the complaint after the second version counted",
        || async { (count_loyalty().await == added + 2).then_some(()) },
    )
    .await;
    let open = count_rows(
        &databases.1,
        "trends",
        "SELECT COUNT(*) FROM trends_actions WHERE theme = 'loyalty_points' AND status <> 'resolved'",
    )
    .await;
    assert_eq!(open, 1, "one action for the new theme, raised once");
    stack.stop().await;
}
