//! History is history (issue 16): an episode whose evidence lies entirely in the past —
//! imported exports, a replay long after the fact — is reported as a historical finding,
//! never raised as an action, so nobody is told "we did" about it; a surge of today in the
//! same theme is raised as always.

use chrono::{Duration, Utc};
use closeloop_events::{ActionEventKind, SentimentLabel};

use crate::helpers::{counted, get_json, mention, metric, ActionReader, Bus, TestApp, THEME};

const TOKEN: &str = "s3cret-ops-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surge_of_long_ago_is_a_finding_and_one_of_today_an_action() {
    let bus = Bus::start();
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    let app = TestApp::spawn(config).await;

    // Twenty days ago, eight customers within 16 minutes: a surge, but history.
    let long_ago = Utc::now() - Duration::days(20);
    let history: Vec<_> = (0..8)
        .map(|i| {
            mention(
                &format!("old{i}"),
                SentimentLabel::Negative,
                long_ago + Duration::minutes(2 * i),
            )
        })
        .collect();
    for m in &history {
        bus.publish(m).await;
    }
    counted(&app, history.len()).await;

    let actions = get_json(&app, "/v1/actions", TOKEN).await;
    assert_eq!(actions, serde_json::json!([]), "history raises no action");
    let findings = get_json(&app, "/v1/findings", TOKEN).await;
    let findings = findings.as_array().expect("a JSON array");
    assert_eq!(findings.len(), 1, "{findings:?}");
    let finding = &findings[0];
    assert_eq!(finding["theme"], THEME);
    assert_eq!(finding["evidence"]["detector"], "surge");
    assert!(
        finding["evidence"]["distinct_customers"].as_u64() >= Some(3),
        "{finding}"
    );
    let triggered_at: chrono::DateTime<Utc> =
        serde_json::from_value(finding["triggered_at"].clone()).expect("a time");
    assert!(triggered_at < Utc::now() - Duration::days(19), "{finding}");
    let text = closeloop_testkit::get_text(&app.url("/metrics")).await;
    assert_eq!(
        metric(&text, "closeloop_trends_historical_findings_total", ""),
        Some(1.0)
    );
    let bad = app
        .client
        .get(app.url("/v1/findings?limit=0"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);

    // Today, the same theme surges again: an action, announced as always.
    let today: Vec<_> = (0..6)
        .map(|i| {
            mention(
                &format!("new{i}"),
                SentimentLabel::Negative,
                Utc::now() - Duration::minutes(10 - i),
            )
        })
        .collect();
    for m in &today {
        bus.publish(m).await;
    }
    counted(&app, history.len() + today.len()).await;
    // The first event on actions.v1 is today's: nothing was announced for the history.
    let event = ActionReader::new(bus.brokers()).next().await;
    assert_eq!(event.kind, ActionEventKind::Raised);
    assert_eq!(event.theme, THEME);
    assert!(
        event.evidence.window_end > Utc::now() - Duration::hours(1),
        "{:?}",
        event.evidence
    );
    assert_eq!(
        get_json(&app, "/v1/findings", TOKEN)
            .await
            .as_array()
            .map(Vec::len),
        Some(1),
        "the finding stays"
    );
    app.stop().await;
}
