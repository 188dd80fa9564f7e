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
    config.ops_token = Some(TOKEN.parse().expect("a token"));
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
        .header(reqwest::header::CONTENT_TYPE, "application/json")
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

    // Someone takes it on, then assigns it; both are events, and acknowledging twice
    // is a no-op. Bodies are checked like the resolution's.
    let acknowledge = format!("/v1/actions/{}/acknowledge", raised.action_id);
    let body = problem(
        post(acknowledge.clone())
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/acknowledged_by");
    for _ in 0..2 {
        let response = post(acknowledge.clone())
            .json(&json!({"acknowledged_by": "ana@ops"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let acknowledged = actions.next().await;
    assert_eq!(acknowledged.kind, ActionEventKind::Acknowledged);
    assert_eq!(acknowledged.status, ActionStatus::Acknowledged);
    assert_eq!(
        acknowledged.workflow.acknowledged_by.as_deref(),
        Some("ana@ops")
    );
    let assigned: Value = post(format!("/v1/actions/{}/assign", raised.action_id))
        .json(&json!({"assignee": "logistics", "assigned_by": "ana@ops"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(assigned["assignee"], "logistics");
    assert_eq!(assigned["status"], "acknowledged");
    let event = actions.next().await;
    assert_eq!(
        event.kind,
        ActionEventKind::Assigned,
        "no second acknowledged event"
    );
    assert_eq!(event.workflow.assignee.as_deref(), Some("logistics"));
    let unresolved: Value = get("/v1/actions?status=unresolved&theme=delivery_time")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unresolved.as_array().map(Vec::len), Some(1));
    let future =
        (Utc::now() + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let changed_later: Value = get(&format!("/v1/actions?since={future}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(changed_later, json!([]), "nothing changed after `since`");
    problem(
        get("/v1/actions?since=yesterday").send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;

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
    let resolved_ack = post(acknowledge.clone())
        .json(&json!({"acknowledged_by": "ana@ops"}))
        .send()
        .await
        .unwrap();
    problem(resolved_ack, StatusCode::CONFLICT).await;

    // Hysteresis: complaints given before the resolution arrive late; they were answered
    // by it and must not raise the theme again, however many customers sent them.
    let before = resolution.resolved_at - Duration::minutes(1);
    for customer in ["late1", "late2", "late3"] {
        bus.publish(&mention(customer, SentimentLabel::Negative, before))
            .await;
    }
    // A fresh surge soon after the resolution reopens the action (the fix did not hold),
    // counted from zero: had the late complaints counted, it would have come earlier.
    for customer in ["c4", "c5", "c4"] {
        bus.publish(&negative(customer)).await;
    }
    let reopened = actions.next().await;
    assert_eq!(reopened.kind, ActionEventKind::Reopened);
    assert_eq!(reopened.action_id, raised.action_id, "the same action");
    assert_eq!(reopened.status, ActionStatus::Open);
    assert_eq!(reopened.resolution, None);
    assert_eq!(reopened.workflow.reopened_count, 1);
    assert_eq!(reopened.workflow.assignee, None, "back in the queue");
    assert_eq!(reopened.evidence.negative_mentions, 3);
    assert_eq!(reopened.evidence.distinct_customers, 2);
    problem(
        post(format!("/v1/actions/{}/reopen", raised.action_id))
            .json(&json!({"reopened_by": "ana@ops"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    )
    .await;

    // Resolved again, then reopened by an operator.
    let response = post(resolve.clone()).json(&message).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(actions.next().await.kind, ActionEventKind::Resolved);
    let response = post(format!("/v1/actions/{}/reopen", raised.action_id))
        .json(&json!({"reopened_by": "ana@ops", "reason": "complaints continue by phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let event = actions.next().await;
    assert_eq!(event.kind, ActionEventKind::Reopened);
    assert_eq!(event.workflow.reopened_count, 2);
    assert_eq!(event.workflow.reopened_by.as_deref(), Some("ana@ops"));

    // The detail view tells the whole story, in order.
    let detail: Value = get(&format!("/v1/actions/{}", raised.action_id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let history: Vec<&str> = detail["history"]
        .as_array()
        .expect("history in the detail view")
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        history,
        [
            "raised",
            "updated",
            "acknowledged",
            "assigned",
            "resolved",
            "reopened",
            "resolved",
            "reopened"
        ]
    );
    assert_eq!(detail["history"][7]["note"], "complaints continue by phone");
    assert_eq!(
        detail["evidence"]["by_channel"]["review"]["negative_mentions"],
        3
    );
    assert_eq!(
        detail["evidence"]["by_touchpoint"]["delivery"]["mentions"],
        3
    );
    assert_eq!(detail["evidence"]["average_rating"], 1.0);
    assert_eq!(detail["evidence"]["detector"], "surge");

    // Theme statistics per window.
    let stats: Value = get("/v1/themes/delivery_time/stats?window_minutes=60")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let windows = stats["windows"].as_array().expect("windows");
    assert!(windows.len() >= 24, "a day of hourly windows");
    let negative: u64 = windows
        .iter()
        .map(|w| w["negative_mentions"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        negative, 11,
        "every stored negative mention, late ones included"
    );
    assert!(stats["detector"]["rules"]
        .as_str()
        .unwrap_or_default()
        .contains("surge"));
    problem(
        get("/v1/themes/Not-A-Theme/stats").send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        get("/v1/themes/delivery_time/stats?window_minutes=1&since=2020-01-01T00:00:00Z")
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;

    // The contract is public; the API behind it is not.
    let openapi = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(openapi.status(), StatusCode::OK);
    let spec: Value = openapi.json().await.unwrap();
    assert!(spec["paths"]["/v1/actions/{id}/resolve"]["post"].is_object());

    let metrics = closeloop_testkit::get_text(&app.url("/metrics")).await;
    let count = |event: &str| {
        metric(
            &metrics,
            "closeloop_actions_total",
            &format!("event=\"{event}\""),
        )
    };
    assert_eq!(count("raised"), Some(1.0));
    assert_eq!(count("updated"), Some(1.0));
    assert_eq!(count("acknowledged"), Some(1.0));
    assert_eq!(count("assigned"), Some(1.0));
    assert_eq!(count("resolved"), Some(2.0));
    assert_eq!(count("reopened"), Some(2.0));
    assert_eq!(
        metric(
            &metrics,
            "closeloop_actions_open",
            "theme=\"delivery_time\""
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "closeloop_trends_mentions_dropped_total",
            "reason=\"before_resolution\""
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "closeloop_trends_detection_delay_seconds_count",
            "service=\"trends\""
        ),
        Some(2.0),
        "raise and the surge reopen are timed"
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reopening_off_a_returning_theme_gets_a_new_action() {
    let bus = Bus::start();
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.reopen_within_hours = 0;
    let app = TestApp::spawn(config).await;
    let actions = ActionReader::new(bus.brokers());
    for customer in ["a", "b", "c"] {
        bus.publish(&negative(customer)).await;
    }
    let raised = actions.next().await;
    assert_eq!(raised.kind, ActionEventKind::Raised);
    let response = app
        .client
        .post(app.url(&format!("/v1/actions/{}/resolve", raised.action_id)))
        .json(&json!({"message": {"en": "Fixed."}, "resolved_by": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(actions.next().await.kind, ActionEventKind::Resolved);
    for customer in ["d", "e", "f"] {
        bus.publish(&negative(customer)).await;
    }
    let next = actions.next().await;
    assert_eq!(next.kind, ActionEventKind::Raised);
    assert_ne!(next.action_id, raised.action_id);
    assert_eq!(next.workflow.reopened_count, 0);
    app.stop().await;
}
