//! `closeloop demo --scenario new-topic`: the taxonomy grows with the feedback. Customers
//! start complaining about something no theme covers (the points of a new loyalty
//! programme, ShopClub, that never arrive);
//! trends lists it as an emerging topic; ops make it a theme, preview what the new
//! taxonomy version would move over the last hour, and apply it with a reclassification
//! of that hour; categorise switches to the version without a restart, and once the
//! complaints keep coming, the new theme surges and is raised as an action.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::demo::{post_feedback, DemoArgs};
use crate::demo_corpus::{self, DemoFeedback};
use crate::stack::Stack;

/// The new theme the scenario adds.
const THEME: &str = "shopclub_points";

/// Complaints about the new topic, English and German. (The programme has a name of its
/// own: "loyalty", "bonus" and "reward" are positive words to the sentiment lexicon, and a
/// cue word's tone colours its own theme's hit.)
const COMPLAINTS_EN: &[&str] = &[
    "My ShopClub points disappeared after the last purchase.",
    "Where are my ShopClub points? They never showed up.",
    "ShopClub points from two purchases still missing, very annoying.",
    "The ShopClub points I collected are simply gone.",
    "My ShopClub points are missing again, this is frustrating.",
];
const COMPLAINTS_DE: &[&str] = &[
    "Meine ShopClub-Punkte sind nach dem letzten Einkauf verschwunden.",
    "Wo bleiben meine ShopClub-Punkte? Sehr ärgerlich.",
    "Die ShopClub-Punkte von zwei Einkäufen fehlen immer noch.",
    "Schon wieder keine ShopClub Punkte erhalten, das nervt.",
];

/// `count` complaints about ShopClub points from different customers, dated over the
/// `minutes` before now.
fn complaints(first_customer: usize, count: usize, minutes: i64) -> Vec<DemoFeedback> {
    let now = Utc::now();
    (0..count)
        .map(|i| {
            let german = i % 3 == 2;
            let texts = if german { COMPLAINTS_DE } else { COMPLAINTS_EN };
            let at = now
                - chrono::Duration::seconds(minutes * 60 * (count - i) as i64 / count as i64)
                + chrono::Duration::seconds(1);
            DemoFeedback {
                source: demo_corpus::DEMO_SOURCES[i % demo_corpus::DEMO_SOURCES.len()],
                body: json!({
                    "occurred_at": at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    "channel": if i % 2 == 0 { "app-store" } else { "survey" },
                    "customer": {
                        "id": format!("club-{}", first_customer + i),
                        "locale": if german { "de-DE" } else { "en-GB" },
                        "consent": true,
                    },
                    "text": texts[i % texts.len()],
                    "rating": 1 + (i % 2),
                }),
                expected_theme: None,
                expected_negative: true,
            }
        })
        .collect()
}

pub(crate) async fn play(
    args: &DemoArgs,
    stack: &Stack,
    ops: &reqwest::Client,
    started: Instant,
) -> anyhow::Result<()> {
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let trends = stack.trends;
    let since = Utc::now() - chrono::Duration::hours(1);

    // 1. The usual mix of feedback, and a topic no theme covers.
    let background: Vec<DemoFeedback> = demo_corpus::generate(args.seed, args.events, Utc::now())?
        .into_iter()
        .filter(|f| f.expected_theme != Some("delivery_time"))
        .collect();
    let wave = complaints(1, 24, 40);
    println!(
        "\n① {} feedback events of the usual mix, and {} complaints about something the taxonomy does not know:",
        background.len(),
        wave.len()
    );
    for sample in wave.iter().take(3) {
        println!("   “{}”", sample.body["text"].as_str().unwrap_or_default());
    }
    let (accepted, failed) = post_feedback(stack, &background, "topic-background").await?;
    let (wave_accepted, wave_failed) = post_feedback(stack, &wave, "topic-wave").await?;
    println!(
        "   ingest accepted {} ({} failed); no theme matches the complaints, so no action can be raised for them",
        accepted + wave_accepted,
        failed + wave_failed
    );

    // 2. trends lists it as an emerging topic.
    println!("\n② looking for topics no theme covers …");
    let topic = loop {
        let listing: Value = ops
            .get(format!("http://{trends}/v1/topics/emerging?kind=unmatched"))
            .send()
            .await?
            .json()
            .await?;
        let found = listing["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                let key = t["key"].as_str().unwrap_or_default();
                key.contains("shopclub")
            });
        if let Some(topic) = found {
            break topic.clone();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the topic was not listed in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "   ✦ emerging after {:.1} s: “{}” — {} customers in the window (expected {:.1}), p = {:.1e}",
        started.elapsed().as_secs_f64(),
        topic["phrase"].as_str().unwrap_or("?"),
        topic["window"]["customers"],
        topic["expected_customers"].as_f64().unwrap_or_default(),
        topic["p_value"].as_f64().unwrap_or(1.0),
    );
    if let Some(excerpt) = topic["excerpts"].as_array().and_then(|e| e.first()) {
        println!(
            "     e.g. “{}”",
            excerpt["excerpt"].as_str().unwrap_or_default()
        );
    }

    // 3. Ops make it a theme: a proposed taxonomy version.
    let response = ops
        .post(format!("http://{trends}/v1/taxonomy/versions"))
        .json(&json!({
            "add_theme": {
                "id": THEME,
                "names": {"en": "ShopClub points", "de": "ShopClub-Punkte"},
                "keywords": {"en": ["shopclub"], "de": ["shopclub", "shopclubpunkte"]},
                "phrases": {"en": ["shopclub points"], "de": ["shopclub punkte"]}
            }
        }))
        .send()
        .await?;
    let proposal = expect_json(response, "proposing the theme").await?;
    let version = proposal["version"].as_str().unwrap_or_default().to_owned();
    println!(
        "\n③ ops made it a theme: “ShopClub points” / “ShopClub-Punkte” → proposed taxonomy version {version} (based on {})",
        proposal["based_on"].as_str().unwrap_or("?")
    );

    // 4. Preview: what would the version move over the last hour?
    let until = Utc::now();
    let period = json!({
        "since": since.to_rfc3339_opts(SecondsFormat::Secs, true),
        "until": until.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    let response = ops
        .post(format!(
            "http://{trends}/v1/taxonomy/versions/{version}/preview"
        ))
        .json(&period)
        .send()
        .await?;
    let job = expect_json(response, "starting the preview").await?;
    let job_id = job["id"].as_str().unwrap_or_default().to_owned();
    let preview = loop {
        let job: Value = ops
            .get(format!("http://{trends}/v1/taxonomy/previews/{job_id}"))
            .send()
            .await?
            .json()
            .await?;
        match job["state"].as_str() {
            Some("done") => break job,
            Some("failed") => anyhow::bail!("the preview failed: {}", job["error"]),
            _ => {}
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the preview did not finish in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let result = &preview["result"];
    println!(
        "\n④ preview over the last hour, before anything changes: {} feedback re-classified from feedback.raw.v1, {} would change",
        result["totals"]["in_period"], result["totals"]["changed"]
    );
    for theme in result["themes"].as_array().into_iter().flatten() {
        println!(
            "   {:<16} +{} / −{}",
            theme["theme"].as_str().unwrap_or("?"),
            theme["added"],
            theme["dropped"]
        );
        for example in theme["added_examples"]
            .as_array()
            .into_iter()
            .flatten()
            .take(2)
        {
            println!(
                "     + “{}”",
                example["excerpt"].as_str().unwrap_or_default()
            );
        }
    }
    for detector in result["detectors"].as_array().into_iter().flatten() {
        if detector["changed"] == true {
            println!(
                "   detector for {}: would {}fire (today: {})",
                detector["theme"].as_str().unwrap_or("?"),
                if detector["after"]["fired"] == true {
                    ""
                } else {
                    "not "
                },
                if detector["before"]["fired"] == true {
                    "fires"
                } else {
                    "silent"
                },
            );
        }
    }

    // 5. Apply it, reclassifying the hour, and the complaints keep coming.
    let response = ops
        .post(format!(
            "http://{trends}/v1/taxonomy/versions/{version}/apply"
        ))
        .json(&json!({ "reclassify": period }))
        .send()
        .await?;
    expect_json(response, "applying the version").await?;
    println!(
        "\n⑤ applied {version}: categorise switched without a restart and re-classifies the hour; more complaints arrive …"
    );
    let more = complaints(101, 16, 5);
    post_feedback(stack, &more, "topic-more").await?;
    let action = loop {
        let actions: Value = ops
            .get(format!("http://{trends}/v1/actions?status=open"))
            .send()
            .await?
            .json()
            .await?;
        let found = actions
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["theme"] == THEME);
        if let Some(action) = found {
            break action.clone();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no action was raised for the new theme in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let evidence = &action["evidence"];
    println!(
        "   ⚑ action raised after {:.1} s: “{}” — {} negative mentions from {} customers ({})",
        started.elapsed().as_secs_f64(),
        action["theme_name"]["en"].as_str().unwrap_or(THEME),
        evidence["negative_mentions"],
        evidence["distinct_customers"],
        evidence["rule"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// The JSON body of a successful answer; the problem's detail otherwise.
async fn expect_json(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(
        status.is_success(),
        "{what} failed: {status} {}",
        body["detail"].as_str().unwrap_or_default()
    );
    Ok(body)
}
