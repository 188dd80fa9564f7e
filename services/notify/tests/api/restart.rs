//! A crash mid-delivery: notify killed while a request is in flight, restarted on the
//! same database and broker, sends nothing twice and finishes what was interrupted.

use std::time::Duration;

use uuid::Uuid;

use crate::helpers::{
    categorised, publish_feedback, resolved, spawn_notify, start_receiver, wait_until, Received,
    SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_notify_mid_delivery_and_restarting_sends_nothing_twice() {
    let (receiver, addr) = start_receiver(0).await;
    let mut notify = spawn_notify(|config| {
        config.webhooks = vec![
            ("fast".into(), format!("http://{addr}/hook/ok")),
            ("slow".into(), format!("http://{addr}/hook/hang")),
        ];
        config.webhook_secrets = vec![
            ("fast".into(), SECRET.into()),
            ("slow".into(), SECRET.into()),
        ];
        // A short lease, so the test does not wait half a minute for it to run out.
        config.http_timeout_ms = 3_000;
        config.lease_margin_ms = 500;
    })
    .await;

    let feedback = [
        categorised("ivan", "fast", None, true, "Late"),
        categorised("jana", "slow", Some("de-DE"), true, "Zu spät"),
    ];
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;

    // ivan's message is through; jana's request is in flight and unanswered.
    wait_until("ivan delivered, jana in flight", || async {
        let rows = notify.deliveries(action_id).await;
        rows.get("ivan").is_some_and(|r| r["status"] == "delivered")
            && receiver.seen().iter().any(|r| r.status.is_none())
    })
    .await;
    notify.kill_and_restart().await;
    // After the restart the action is replayed too (its offset may not have been
    // committed when notify died; publishing it again makes sure).
    notify.publish(resolved(action_id, &evidence)).await;

    wait_until("jana delivered after the restart", || async {
        notify.notifications(action_id).await["counts"]["delivered"] == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let seen = receiver.seen();
    let ivan: Vec<&Received> = seen.iter().filter(|r| r.customer() == "ivan").collect();
    assert_eq!(ivan.len(), 1, "ivan's delivery is not repeated: {seen:#?}");
    let jana: Vec<&Received> = seen.iter().filter(|r| r.customer() == "jana").collect();
    assert_eq!(jana.len(), 2, "the interrupted request, then one retry");
    assert_eq!(jana[0].status, None);
    assert_eq!(jana[1].status, Some(200));
    assert_eq!(
        jana[0].webhook_id(),
        jana[1].webhook_id(),
        "the same webhook-id, so a receiver that did see the first can drop the second"
    );
    assert_eq!(
        receiver.accepted().len(),
        2,
        "one accepted message per customer"
    );
    let rows = notify.deliveries(action_id).await;
    assert_eq!(rows.len(), 2, "the replayed action added nothing");
    assert_eq!(rows["jana"]["language"], "de");
    notify.stop().await;
}
