//! Deliveries that fail: dead-lettered after the last attempt and listed for operators,
//! a `429` waited out rather than hammered, sources without a route skipped, and an
//! erasure cancelling what is still pending.

use std::collections::HashSet;

use chrono::Utc;
use closeloop_events::{DeliveryOutcome, ErasureRequest, ErasureScope};
use uuid::Uuid;

use crate::helpers::{
    categorised, publish_feedback, resolved, spawn_notify, start_receiver, wait_until, Received,
    SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_deliveries_die_visibly_and_erasure_cancels_pending_ones() {
    let (receiver, addr) = start_receiver(0).await;
    let notify = spawn_notify(|config| {
        config.max_attempts = 3;
        config.retry_base_ms = 10;
        config.webhooks = vec![
            ("down".into(), format!("http://{addr}/hook/down")),
            ("busy".into(), format!("http://{addr}/hook/busy")),
        ];
        config.webhook_secrets = vec![
            ("down".into(), SECRET.into()),
            ("busy".into(), SECRET.into()),
        ];
    })
    .await;

    let feedback = [
        categorised("erin", "down", None, true, "Never arrived"),
        categorised("finn", "busy", None, true, "Two weeks late"),
        categorised("gita", "nowhere", None, true, "Slow delivery"),
    ];
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;

    wait_until("erin dead, finn waiting", || async {
        let rows = notify.deliveries(action_id).await;
        rows.len() == 2 && rows["erin"]["status"] == "dead" && rows["finn"]["attempts"] == 1
    })
    .await;
    let rows = notify.deliveries(action_id).await;

    // Always 503: three attempts, then dead-lettered.
    assert_eq!(rows["erin"]["attempts"], 3);
    assert_eq!(rows["erin"]["last_status_code"], 503);
    assert!(rows["erin"]["last_error"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 attempts: HTTP 503"));
    assert!(rows["erin"]["delivered_at"].is_null());
    let erin_requests: Vec<Received> = receiver
        .seen()
        .into_iter()
        .filter(|r| r.mode == "down")
        .collect();
    assert_eq!(erin_requests.len(), 3);
    assert_eq!(
        erin_requests
            .iter()
            .map(Received::webhook_id)
            .collect::<HashSet<_>>()
            .len(),
        1,
        "retries keep the webhook-id"
    );

    // 429 with Retry-After 3600: still pending, not hammered.
    assert_eq!(rows["finn"]["status"], "pending");
    assert_eq!(rows["finn"]["last_status_code"], 429);

    // The dead letter is listed for operators, and counted.
    let dead = notify.get("status=dead").await;
    let dead = dead["deliveries"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["customer_id"], "erin");
    assert_eq!(dead[0]["action_id"], action_id.to_string());
    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_total",
                &[r#"outcome="dead_lettered""#, r#"channel="webhook""#]
            )
            .await,
        1.0
    );

    // Erasure cancels finn's pending delivery.
    notify
        .publish(ErasureRequest {
            customer_id: "finn".into(),
            source: "busy".into(),
            requested_at: Utc::now(),
            scope: ErasureScope::All,
        })
        .await;
    // The row stays for the audit trail, under finn's pseudonym instead of the id.
    let finn = closeloop_runtime::Pseudonyms::development().of("finn");
    wait_until("finn erased", || async {
        let rows = notify.deliveries(action_id).await;
        rows.get(&finn)
            .is_some_and(|row| row["status"] == "cancelled" && row["last_error"] == "erased")
            && !rows.contains_key("finn")
    })
    .await;
    assert_eq!(
        receiver.seen().iter().filter(|r| r.mode == "busy").count(),
        1
    );
    let view = notify.notifications(action_id).await;
    assert_eq!(
        view["counts"],
        serde_json::json!({
            "pending": 0, "held": 0, "combined": 0, "delivered": 0, "dead": 1, "cancelled": 1,
            "skipped_no_consent": 0, "skipped_no_route": 1, "skipped_unsubscribed": 0,
            "skipped_frequency_cap": 0
        }),
        "gita's source has no webhook and no e-mail is configured: no route"
    );
    assert_eq!(view["skipped"][0]["customer_id"], "gita");
    assert_eq!(view["skipped"][0]["reason"], "no_route");

    // …and every one of those outcomes is on notifications.v1.
    wait_until("outcomes published", || async {
        !notify.outcomes.of("finn").is_empty()
            && !notify.outcomes.of(&finn).is_empty()
            && !notify.outcomes.of("gita").is_empty()
    })
    .await;
    let erin = notify.outcomes.of("erin");
    assert_eq!(
        erin.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        [
            DeliveryOutcome::Retrying,
            DeliveryOutcome::Retrying,
            DeliveryOutcome::DeadLettered
        ]
    );
    assert_eq!(
        notify.outcomes.of("gita"),
        [(DeliveryOutcome::Skipped, Some("no_route".to_owned()))]
    );
    assert_eq!(
        notify.outcomes.of("finn"),
        [(
            DeliveryOutcome::Retrying,
            Some("HTTP 429 Too Many Requests".to_owned())
        )]
    );
    // Published after the erasure, so it names the pseudonym, not finn.
    assert_eq!(
        notify.outcomes.of(&finn),
        [(DeliveryOutcome::Skipped, Some("erased".to_owned()))]
    );

    // Still serving.
    for path in ["/healthz", "/readyz"] {
        let response = notify
            .http
            .get(format!("{}{path}", notify.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    notify.stop().await;
}
