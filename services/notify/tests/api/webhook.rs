//! The happy path over webhooks: each consenting customer told once, in their language,
//! signed; retries keep the webhook-id; a replayed action sends nothing new; the
//! notifications API, its metrics and `notifications.v1` agree.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use closeloop_events::DeliveryOutcome;
use closeloop_notify::signature;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    categorised, publish_feedback, resolved, spawn_notify, start_receiver, wait_until, Received,
    SECRET, THEME,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_action_notifies_each_consenting_customer_once() {
    let (receiver, addr) = start_receiver(2).await;
    let notify = spawn_notify(|config| {
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.webhook_secrets = vec![("shopdesk".into(), SECRET.into())];
    })
    .await;

    let feedback = [
        categorised(
            "anna",
            "shopdesk",
            Some("en-GB"),
            true,
            "The parcel took two weeks to arrive.",
        ),
        categorised(
            "bernd",
            "shopdesk",
            Some("de-DE"),
            true,
            "Die Lieferung kam\n viel zu spät.",
        ),
        categorised("carla", "shopdesk", None, true, "Delivery was late again"),
        categorised("dora", "shopdesk", None, false, "Late, late, late."),
    ];
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;

    wait_until("three deliveries accepted", || async {
        receiver.accepted().len() >= 3
    })
    .await;
    wait_until("all delivered in the API", || async {
        notify.notifications(action_id).await["counts"]["delivered"] == 3
    })
    .await;

    // Exactly one accepted request per consenting customer, each validly signed.
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 3, "{accepted:#?}");
    let mut bodies: HashMap<String, Value> = HashMap::new();
    let mut ids = HashSet::new();
    for request in &accepted {
        let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
        let id = header("webhook-id");
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        assert!((Utc::now().timestamp() - timestamp).abs() < 120);
        assert!(
            signature::verify(
                SECRET,
                &id,
                timestamp,
                &request.body,
                &header("webhook-signature")
            ),
            "signature must verify"
        );
        assert_eq!(header("content-type"), "application/json");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["type"], "closeloop.you_said_we_did");
        assert_eq!(
            body["delivery_id"],
            id.as_str(),
            "webhook-id is the delivery id"
        );
        assert_eq!(body["action_id"], action_id.to_string());
        assert_eq!(body["theme"], THEME);
        assert!(body["sent_at"].is_string());
        assert!(ids.insert(id), "one delivery id per customer");
        let customer = body["customer"]["id"].as_str().unwrap().to_owned();
        assert_eq!(body["customer"]["reference"], format!("REF-{customer}"));
        assert!(
            bodies.insert(customer, body).is_none(),
            "one accepted request per customer"
        );
    }
    assert_eq!(
        bodies.keys().cloned().collect::<HashSet<_>>(),
        HashSet::from(["anna".to_owned(), "bernd".to_owned(), "carla".to_owned()]),
        "dora did not consent"
    );
    let german = &bodies["bernd"];
    assert_eq!(german["language"], "de");
    assert_eq!(german["you_said"], "Die Lieferung kam viel zu spät.");
    assert_eq!(
        german["subject"],
        "Ihre Rückmeldung zum Thema Lieferzeit: Das haben wir getan"
    );
    let text = german["text"].as_str().unwrap();
    assert!(text.starts_with("Am "), "{text}");
    assert!(
        text.contains("zum Thema Lieferzeit geschrieben: „Die Lieferung kam viel zu spät.“ Das haben wir getan: Wir haben einen zweiten Versender. Danke, dass Sie uns das gesagt haben."),
        "{text}"
    );
    let english = bodies["anna"]["text"].as_str().unwrap();
    assert!(english.starts_with("On "), "{english}");
    assert!(
        english.contains("you told us about delivery time: \"The parcel took two weeks to arrive.\" We did: We added a second carrier. Thank you for telling us."),
        "{english}"
    );
    // A quote that does not end a sentence keeps the template's full stop.
    assert!(
        bodies["carla"]["text"]
            .as_str()
            .unwrap()
            .contains(": \"Delivery was late again\". We did:"),
        "{}",
        bodies["carla"]["text"]
    );
    assert_eq!(bodies["carla"]["language"], "en");

    // The two failures were retried under the same webhook-id, never as new deliveries.
    let seen = receiver.seen();
    assert_eq!(seen.len(), 5, "2 failed + 3 accepted");
    let all_ids: HashSet<String> = seen.iter().map(Received::webhook_id).collect();
    assert_eq!(all_ids, ids);
    assert!(seen.iter().all(|r| r.mode == "ok"));

    // A replayed Resolved record sends nothing new and counts nobody twice.
    notify.publish(resolved(action_id, &evidence)).await;
    wait_until("replay consumed", || async {
        notify
            .metric(
                "closeloop_events_consumed_total",
                &[r#"topic="actions.v1""#],
            )
            .await
            >= 2.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.seen().len(), 5, "no new request after the replay");

    let view = notify.notifications(action_id).await;
    assert_eq!(view["action_id"], action_id.to_string());
    assert_eq!(
        view["counts"],
        serde_json::json!({
            "pending": 0, "held": 0, "combined": 0, "delivered": 3, "dead": 0, "cancelled": 0,
            "skipped_no_consent": 1, "skipped_no_route": 0, "skipped_unsubscribed": 0,
            "skipped_frequency_cap": 0
        })
    );
    assert_eq!(view["skipped"][0]["customer_id"], "dora");
    assert_eq!(view["skipped"][0]["reason"], "no_consent");
    let rows = view["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(row["status"], "delivered");
        assert_eq!(row["channel"], "webhook");
        assert_eq!(row["last_status_code"], 200);
        assert!(row["delivered_at"].is_string());
        assert!(row["created_at"].is_string());
        assert!(row["attempts"].as_i64().unwrap() >= 1);
    }
    let attempts: i64 = rows
        .iter()
        .map(|row| row["attempts"].as_i64().unwrap())
        .sum();
    assert_eq!(attempts, 5);
    let languages: HashMap<&str, &str> = rows
        .iter()
        .map(|row| {
            (
                row["customer_id"].as_str().unwrap(),
                row["language"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(languages["bernd"], "de");
    assert_eq!(languages["anna"], "en");

    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_skipped_total",
                &[r#"reason="no_consent""#]
            )
            .await,
        1.0,
        "the replay did not count dora again"
    );
    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_total",
                &[r#"outcome="delivered""#, r#"channel="webhook""#]
            )
            .await,
        3.0
    );
    assert_eq!(
        notify
            .metric(
                "closeloop_notification_delivery_seconds_count",
                &[r#"channel="webhook""#]
            )
            .await,
        3.0
    );

    // Every outcome is on notifications.v1: 2 retries, 3 deliveries, dora skipped.
    wait_until("outcomes published", || async {
        notify.outcomes.all().len() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = notify.outcomes.all();
    let count = |outcome: DeliveryOutcome| outcomes.iter().filter(|o| o.outcome == outcome).count();
    assert_eq!(count(DeliveryOutcome::Retrying), 2, "{outcomes:#?}");
    assert_eq!(count(DeliveryOutcome::Delivered), 3, "{outcomes:#?}");
    assert_eq!(
        notify.outcomes.of("dora"),
        [(DeliveryOutcome::Skipped, Some("no_consent".to_owned()))]
    );
    assert_eq!(outcomes.len(), 6, "{outcomes:#?}");

    // The API rejects bad queries with a problem document.
    for query in [
        "",
        "?action=not-a-uuid",
        "?status=lost",
        "?status=dead&limit=0",
        "?action=0190a8c0-0000-7000-8000-000000000000&status=dead",
    ] {
        let response = notify
            .http
            .get(format!("{}/v1/notifications{query}", notify.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }

    notify.stop().await;
}
