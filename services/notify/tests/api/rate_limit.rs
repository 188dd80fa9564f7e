//! The per-destination rate limit: postponed, not failed.

use std::time::Duration;

use closeloop_events::FeedbackCategorised;
use uuid::Uuid;

use crate::helpers::{
    categorised, publish_feedback, resolved, spawn_notify, start_receiver, wait_until, SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_destination_gets_at_most_its_rate() {
    let (receiver, addr) = start_receiver(0).await;
    let notify = spawn_notify(|config| {
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.webhook_secrets = vec![("shopdesk".into(), SECRET.into())];
        config.rate_per_second = 4.0;
        config.rate_burst = 1;
    })
    .await;
    let feedback: Vec<FeedbackCategorised> = (0..5)
        .map(|i| categorised(&format!("c{i}"), "shopdesk", None, true, "Late"))
        .collect();
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;
    wait_until("all five delivered", || async {
        notify.notifications(action_id).await["counts"]["delivered"] == 5
    })
    .await;

    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 5, "each once");
    assert_eq!(
        receiver.seen().len(),
        5,
        "postponing is not a failed attempt"
    );
    // One per 250 ms after the first: four gaps take at least ~1 s (a lower bound, so
    // a slow machine cannot make it fail).
    let first = accepted.iter().map(|r| r.at).min().unwrap();
    let last = accepted.iter().map(|r| r.at).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(900),
        "{:?}",
        last - first
    );
    assert!(
        notify
            .metric(
                "closeloop_notifications_rate_limited_total",
                &[r#"channel="webhook""#]
            )
            .await
            >= 1.0
    );
    notify.stop().await;
}
