//! Raise → update → resolve through the real service, and the ops API's error answers.

use chrono::{Duration, Utc};
use closeloop_events::{ActionEventKind, ActionStatus, SentimentLabel};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{mention, metric, negative, ActionReader, Bus, TestApp, THEME};

const TOKEN: &str = "s3cret-ops-token";

async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are RFC 9457 problems"
    );
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status.as_u16());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surge_raises_one_action_that_an_operator_resolves() {
    let bus = Bus::start();
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.ops_token = Some(TOKEN.into());
    let app = TestApp::spawn(config).await;
    let actions = ActionReader::new(bus.brokers());

    // Below threshold: a positive mention, and one customer's two complaints.
    bus.publish(&mention("happy", SentimentLabel::Positive, Utc::now()))
        .await;
    bus.publish(&negative("c1")).await;
    bus.publish(&negative("c1")).await;
    // The third negative mention, from a second customer, crosses it.
    bus.publish(&negative("c2")).await;

    let raised = actions.next().await;
    assert_eq!(raised.kind, ActionEventKind::Raised);
    assert_eq!(raised.theme, THEME);
    assert_eq!(raised.status, ActionStatus::Open);
    assert_eq!(raised.theme_name["en"], "Delivery time");
    assert_eq!(raised.theme_name["de"], "Lieferzeit");
    assert_eq!(raised.evidence.mentions, 4);
    assert_eq!(raised.evidence.negative_mentions, 3);
    assert_eq!(raised.evidence.distinct_customers, 2);
    assert_eq!(raised.evidence.feedback_ids.len(), 3);
    assert_eq!(
        raised.evidence.excerpts.len(),
        2,
        "one excerpt per customer"
    );
    assert!(
        raised.evidence.rule.contains(">= 3 negative mentions"),
        "{}",
        raised.evidence.rule
    );

    // More complaints from the same customers update nothing worth an event; a new
    // customer does. Same key, same partition: had the first mention caused an event
    // (or a second action), it would come before this one.
    bus.publish(&negative("c2")).await;
    bus.publish(&negative("c3")).await;
    let updated = actions.next().await;
    assert_eq!(updated.kind, ActionEventKind::Updated);
    assert_eq!(updated.action_id, raised.action_id, "still the one action");
    assert_eq!(updated.evidence.negative_mentions, 5);
    assert_eq!(updated.evidence.distinct_customers, 3);

    // Probes and metrics need no token; the ops API does.
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let response = app.client.get(app.url("/v1/actions")).send().await.unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .client
        .get(app.url("/v1/actions"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;
    let get = |path: &str| app.client.get(app.url(path)).bearer_auth(TOKEN);
    let post = |path: String| app.client.post(app.url(&path)).bearer_auth(TOKEN);

    let listed: Value = get("/v1/actions?status=open")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = listed.as_array().expect("a JSON array");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["action_id"], raised.action_id.to_string());
    assert_eq!(listed[0]["status"], "open");
    assert_eq!(listed[0]["theme_name"]["de"], "Lieferzeit");
    assert_eq!(listed[0]["evidence"]["distinct_customers"], 3);
    assert!(listed[0]["resolution"].is_null());
    let resolved: Value = get("/v1/actions?status=resolved")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resolved, json!([]));
    problem(
        get("/v1/actions?status=bogus").send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;

    let one = get(&format!("/v1/actions/{}", raised.action_id))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    problem(
        get("/v1/actions/not-a-uuid").send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let unknown = format!("/v1/actions/{}", Uuid::now_v7());
    problem(get(&unknown).send().await.unwrap(), StatusCode::NOT_FOUND).await;

    // Bad resolutions are refused with problems and change nothing.
    let resolve = format!("/v1/actions/{}/resolve", raised.action_id);
    let bad_json = post(resolve.clone())
        .body("{\"message\": ")
        .send()
        .await
        .unwrap();
    problem(bad_json, StatusCode::BAD_REQUEST).await;
    let wrong_type = post(resolve.clone())
        .json(&json!({"message": "not a map", "resolved_by": "ops@example.com"}))
        .send()
        .await
        .unwrap();
    let body = problem(wrong_type, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["pointer"], "/message");
    let no_english = post(resolve.clone())
        .json(&json!({"message": {"de": "Erledigt."}, "resolved_by": "ops@example.com"}))
        .send()
        .await
        .unwrap();
    let body = problem(no_english, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["pointer"], "/message/en");
    let message = json!({
        "message": {"en": "We added a second carrier.", "de": "Wir haben einen zweiten Versender."},
        "resolved_by": "ops@example.com"
    });
    let unknown_resolve = post(format!("{unknown}/resolve"))
        .json(&message)
        .send()
        .await
        .unwrap();
    problem(unknown_resolve, StatusCode::NOT_FOUND).await;

    // The real resolution.
    let response = post(resolve.clone()).json(&message).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["resolution"]["resolved_by"], "ops@example.com");

    let event = actions.next().await;
    assert_eq!(event.kind, ActionEventKind::Resolved);
    assert_eq!(event.action_id, raised.action_id);
    assert_eq!(event.status, ActionStatus::Resolved);
    let resolution = event
        .resolution
        .expect("the resolution travels with the event");
    assert_eq!(resolution.message_in("en"), "We added a second carrier.");
    assert_eq!(
        resolution.message_in("de"),
        "Wir haben einen zweiten Versender."
    );

    let again = post(resolve.clone()).json(&message).send().await.unwrap();
    problem(again, StatusCode::CONFLICT).await;

    // Hysteresis: complaints given before the resolution arrive late; they were answered
    // by it and must not raise the theme again, however many customers sent them.
    let before = resolution.resolved_at - Duration::minutes(1);
    for customer in ["late1", "late2", "late3"] {
        bus.publish(&mention(customer, SentimentLabel::Negative, before))
            .await;
    }
    // A fresh surge after the resolution raises a new action, counted from zero: had the
    // late complaints counted, an action would have been raised before this one.
    for customer in ["c4", "c5", "c4"] {
        bus.publish(&negative(customer)).await;
    }
    let reraised = actions.next().await;
    assert_eq!(reraised.kind, ActionEventKind::Raised);
    assert_ne!(reraised.action_id, raised.action_id);
    assert_eq!(reraised.evidence.negative_mentions, 3);
    assert_eq!(reraised.evidence.distinct_customers, 2);

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&metrics, "closeloop_actions_total", "event=\"raised\""),
        Some(2.0)
    );
    assert_eq!(
        metric(&metrics, "closeloop_actions_total", "event=\"updated\""),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "closeloop_actions_total", "event=\"resolved\""),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "closeloop_actions_open",
            "theme=\"delivery_time\""
        ),
        Some(1.0)
    );

    app.stop().await;
}
