//! The frequency cap: at most one message per customer per period, with two notify
//! replicas deciding messages at once; what the period holds goes out combined when it
//! ends (or is skipped, when so configured).

use std::collections::HashMap;
use std::time::Duration;

use closeloop_notify::frequency::WhenCapped;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    categorised, publish_feedback, resolved_on, spawn_notify, start_receiver, wait_until, SECRET,
};

const THEMES: [&str; 3] = ["delivery_time", "packaging", "refunds"];
const CUSTOMERS: [&str; 2] = ["dora", "emil"];

/// Both customers complained about all three themes.
async fn complaints(notify: &crate::helpers::Spawned) -> HashMap<&'static str, Vec<Uuid>> {
    let mut evidence = HashMap::new();
    for theme in THEMES {
        let feedback: Vec<_> = CUSTOMERS
            .iter()
            .map(|customer| {
                let mut f =
                    categorised(customer, "shopdesk", None, true, &format!("{theme} is bad"));
                f.themes[0].id = theme.into();
                f
            })
            .collect();
        evidence.insert(theme, publish_feedback(notify, &feedback).await);
    }
    evidence
}

fn per_customer(bodies: &[Value]) -> HashMap<String, Vec<Value>> {
    let mut by_customer: HashMap<String, Vec<Value>> = HashMap::new();
    for body in bodies {
        let customer = body["customer"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        by_customer.entry(customer).or_default().push(body.clone());
    }
    by_customer
}

#[tokio::test]
async fn two_replicas_send_one_message_per_period_and_combine_the_rest() {
    let (receiver, addr) = start_receiver(0).await;
    let notify = spawn_notify(|config| {
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.webhook_secrets = vec![("shopdesk".into(), SECRET.into())];
        config.frequency_cap = Duration::from_secs(8);
        config.when_capped = WhenCapped::Hold;
    })
    .await;
    let replica = notify.replica().await;
    let evidence = complaints(&notify).await;
    // Three themes resolved at once: actions.v1 is keyed by theme, so the two replicas
    // decide messages for the same customers concurrently.
    let actions: Vec<Uuid> = THEMES.iter().map(|_| Uuid::now_v7()).collect();
    for (theme, action) in THEMES.iter().zip(&actions) {
        notify
            .publish(resolved_on(theme, *action, &evidence[theme]))
            .await;
    }
    // Within the period: exactly one message per customer, the rest held.
    wait_until(
        "every customer's first message and the rest held",
        || async {
            let mut delivered = 0;
            let mut held = 0;
            for action in &actions {
                let counts = &notify.notifications(*action).await["counts"];
                delivered += counts["delivered"].as_u64().unwrap_or(0);
                held += counts["held"].as_u64().unwrap_or(0);
            }
            delivered == 2 && held == 4
        },
    )
    .await;
    let first = receiver.accepted();
    let bodies: Vec<Value> = first
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect();
    for (customer, messages) in per_customer(&bodies) {
        assert_eq!(
            messages.len(),
            1,
            "{customer} got one message in the period"
        );
    }
    let status = notify.get_path("/v1/customers/dora/preferences").await;
    assert_eq!(status["held"].as_array().map(Vec::len), Some(2), "{status}");
    assert_eq!(status["frequency_cap"]["period_seconds"], 8);
    assert!(status["held"][0]["held_until"].is_string(), "{status}");

    // When the period ends, what it held goes out as one combined message each.
    wait_until("every action delivered to both customers", || async {
        let mut delivered = 0;
        for action in &actions {
            delivered += notify.notifications(*action).await["counts"]["delivered"]
                .as_u64()
                .unwrap_or(0);
        }
        delivered == 6
    })
    .await;
    let bodies: Vec<Value> = receiver
        .accepted()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect();
    for (customer, messages) in per_customer(&bodies) {
        assert_eq!(messages.len(), 2, "{customer}: {messages:?}");
        let combined = messages[1]["combined"]
            .as_array()
            .expect("a combined message");
        assert_eq!(combined.len(), 2, "{customer}: {combined:?}");
        let mut themes: Vec<&str> = messages
            .iter()
            .flat_map(|m| match m["combined"].as_array() {
                Some(parts) => parts
                    .iter()
                    .map(|p| p["theme"].as_str().unwrap_or_default())
                    .collect(),
                None => vec![m["theme"].as_str().unwrap_or_default()],
            })
            .collect();
        themes.sort_unstable();
        assert_eq!(
            themes,
            ["delivery_time", "packaging", "refunds"],
            "{customer}"
        );
        assert_eq!(messages[1]["subject"], "What we did about your feedback");
        let text = messages[1]["text"].as_str().unwrap_or_default();
        assert_eq!(text.matches("We did:").count(), 2, "{text}");
    }
    // The two folded into another's message say so.
    let mut combined_into = 0;
    for action in &actions {
        combined_into += notify
            .deliveries(*action)
            .await
            .values()
            .filter(|row| row["combined_into"].is_string())
            .count();
    }
    assert_eq!(combined_into, 2);
    let replica_held = closeloop_testkit::metric_value(
        &closeloop_testkit::scrape_metrics(replica.http_addr).await,
        "closeloop_notifications_held_total",
        &[],
    );
    let held = notify
        .metric("closeloop_notifications_held_total", &[])
        .await;
    assert_eq!(held + replica_held, 4.0, "held by either replica");
    replica.stop().await;
    notify.stop().await;
}

#[tokio::test]
async fn messages_beyond_the_cap_can_be_skipped_instead() {
    let (receiver, addr) = start_receiver(0).await;
    let notify = spawn_notify(|config| {
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.frequency_cap = Duration::from_secs(3600);
        config.when_capped = WhenCapped::Skip;
    })
    .await;
    let evidence = complaints(&notify).await;
    let actions: Vec<Uuid> = THEMES.iter().map(|_| Uuid::now_v7()).collect();
    for (theme, action) in THEMES.iter().zip(&actions) {
        notify
            .publish(resolved_on(theme, *action, &evidence[theme]))
            .await;
    }
    wait_until("one message each, the rest skipped", || async {
        let mut delivered = 0;
        let mut skipped = 0;
        for action in &actions {
            let counts = &notify.notifications(*action).await["counts"];
            delivered += counts["delivered"].as_u64().unwrap_or(0);
            skipped += counts["skipped_frequency_cap"].as_u64().unwrap_or(0);
        }
        delivered == 2 && skipped == 4
    })
    .await;
    assert_eq!(receiver.accepted().len(), 2);
    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_skipped_total",
                &[r#"reason="frequency_cap""#]
            )
            .await,
        4.0
    );
    // A replay of a resolution decides nothing new.
    notify
        .publish(resolved_on(THEMES[2], actions[2], &evidence[THEMES[2]]))
        .await;
    wait_until("replay consumed", || async {
        notify
            .metric(
                "closeloop_events_consumed_total",
                &[r#"topic="actions.v1""#],
            )
            .await
            >= 4.0
    })
    .await;
    assert_eq!(receiver.accepted().len(), 2);
    notify.stop().await;
}
