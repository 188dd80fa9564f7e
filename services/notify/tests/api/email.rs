//! E-mail through the local SMTP relay: once per customer in their language (a `451`
//! retried once), the webhook for a customer without an address, and erasure forgetting
//! the address.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use closeloop_events::{ErasureRequest, ErasureScope};
use closeloop_notify::SmtpUrl;
use uuid::Uuid;

use crate::helpers::{
    categorised, publish_feedback, resolved, spawn_notify, start_receiver, start_smtp_sink,
    wait_until, SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mail_reaches_the_smtp_relay_once_in_the_customers_language() {
    let (receiver, addr) = start_receiver(0).await;
    let (smtp, smtp_addr) = start_smtp_sink().await;
    // The relay refuses the first message for now (451): it must be sent again, once.
    smtp.fail_next(1);
    let notify = spawn_notify(|config| {
        config.smtp_url = Some(SmtpUrl(format!("smtp://{smtp_addr}")));
        config.email_from = Some("Customer Care <care@shop.example>".into());
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.webhook_secrets = vec![("shopdesk".into(), SECRET.into())];
        // Two actions for the same customers, both to be sent: no cap (tests/api/cap.rs).
        config.frequency_cap = Duration::ZERO;
    })
    .await;

    let mut carla = categorised("carla", "shopdesk", None, true, "Late again");
    carla.feedback.customer.email = None; // no address: the source's webhook instead
    let feedback = [
        categorised(
            "anna",
            "shopdesk",
            Some("en-US"),
            true,
            "My order took 3 weeks.",
        ),
        categorised(
            "bernd",
            "shopdesk",
            Some("de-AT"),
            true,
            "Die Lieferung kam <b>viel</b> zu spät & kaputt",
        ),
        carla,
        categorised("dora", "shopdesk", Some("de-DE"), false, "Zu spät!"),
    ];
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;

    wait_until("all three delivered", || async {
        notify.notifications(action_id).await["counts"]["delivered"] == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mails = smtp.received();
    assert_eq!(mails.len(), 2, "anna and bernd, once each: {mails:#?}");
    let by_rcpt: HashMap<String, _> = mails
        .iter()
        .map(|mail| (mail.rcpt_to.join(","), mail))
        .collect();
    let rows = notify.deliveries(action_id).await;
    assert_eq!(rows["anna"]["channel"], "email");
    assert_eq!(rows["bernd"]["channel"], "email");
    assert_eq!(rows["carla"]["channel"], "webhook");
    assert_eq!(rows["anna"]["last_status_code"], 250);

    let bernd = by_rcpt["bernd@example.com"];
    assert_eq!(bernd.mail_from, "care@shop.example");
    assert_eq!(
        bernd.header("Subject").as_deref(),
        Some("Ihre Rückmeldung zum Thema Lieferzeit: Das haben wir getan")
    );
    assert_eq!(
        bernd.header("Message-ID"),
        Some(format!(
            "<{}@shop.example>",
            rows["bernd"]["delivery_id"].as_str().unwrap()
        )),
        "the Message-ID is the delivery id, the same on every attempt"
    );
    let text = bernd.text().expect("a plain-text part");
    assert!(text.starts_with("Guten Tag,\n\nAm "), "{text}");
    assert!(
        text.contains("„Die Lieferung kam <b>viel</b> zu spät & kaputt“. Das haben wir getan: Wir haben einen zweiten Versender. Danke"),
        "{text}"
    );
    assert!(text.contains("Ihr Kundenservice"), "{text}");
    let html = bernd.html().expect("an HTML part");
    assert!(
        html.contains("„Die Lieferung kam &lt;b&gt;viel&lt;/b&gt; zu spät &amp; kaputt“"),
        "{html}"
    );
    assert!(!html.contains("<b>"), "{html}");

    let anna = by_rcpt["anna@example.com"];
    assert_eq!(
        anna.header("Subject").as_deref(),
        Some("You told us about delivery time: here is what we did")
    );
    let text = anna.text().unwrap();
    assert!(
        text.contains("you told us about delivery time: \"My order took 3 weeks.\" We did: We added a second carrier. Thank you"),
        "{text}"
    );

    // carla had no address: one webhook; dora did not consent: nothing at all.
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].customer(), "carla");
    assert!(!by_rcpt.contains_key("dora@example.com"));

    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_total",
                &[r#"channel="email""#, r#"outcome="delivered""#]
            )
            .await,
        2.0
    );
    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_total",
                &[r#"channel="email""#, r#"outcome="retrying""#]
            )
            .await,
        1.0,
        "the 451"
    );
    assert_eq!(
        notify
            .metric(
                "closeloop_notification_delivery_seconds_count",
                &[r#"channel="email""#]
            )
            .await,
        2.0
    );

    // Erasure clears what notify kept to write to them (the audit rows stay).
    notify
        .publish(ErasureRequest {
            customer_id: "bernd".into(),
            source: "shopdesk".into(),
            requested_at: Utc::now(),
            scope: ErasureScope::All,
        })
        .await;
    wait_until("bernd's erasure consumed", || async {
        notify
            .metric(
                "closeloop_events_consumed_total",
                &[r#"topic="privacy.erasure.v1""#],
            )
            .await
            >= 1.0
    })
    .await;
    // Replayed feedback of bernd's from before the erasure is not projected again: a
    // second action on the theme finds nobody called bernd.
    publish_feedback(&notify, &feedback[1..2]).await;
    let second = Uuid::now_v7();
    notify.publish(resolved(second, &[])).await;
    wait_until("second action handled", || async {
        notify.notifications(second).await["counts"]["delivered"] == 2
    })
    .await;
    let customers: HashSet<String> = notify.deliveries(second).await.into_keys().collect();
    assert_eq!(
        customers,
        HashSet::from(["anna".to_owned(), "carla".to_owned()])
    );
    assert!(!customers.contains("bernd"), "{customers:?}");
    notify.stop().await;
}
