//! Customer preferences (`customers.preferences.v1`) decide consent, channel and
//! language; the one-click unsubscribe link every message carries works by the RFC 8058
//! POST and through its page, and refuses forged and expired links; erasure removes the
//! preferences.

use std::time::Duration;

use chrono::Utc;
use closeloop_events::{CustomerPreferences, DeliveryChannel, ErasureRequest, ErasureScope};
use closeloop_notify::unsubscribe::{Links, DEVELOPMENT_KEY};
use closeloop_telemetry::Secret;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    categorised, publish_feedback, resolved, spawn_notify, start_receiver, wait_until, Spawned,
    SECRET,
};

fn preferences(customer: &str, consent: bool) -> CustomerPreferences {
    CustomerPreferences {
        customer_id: customer.into(),
        source: "shopdesk".into(),
        updated_at: Utc::now(),
        consent,
        channels: None,
        language: None,
        unsubscribed: false,
    }
}

async fn preferences_applied(notify: &Spawned, count: f64) {
    wait_until("preferences applied", || async {
        notify
            .metric(
                "closeloop_events_consumed_total",
                &[r#"topic="customers.preferences.v1""#],
            )
            .await
            >= count
    })
    .await;
}

async fn resolve_and_wait(notify: &Spawned, evidence: &[Uuid], settled: u64) -> Uuid {
    let action = Uuid::now_v7();
    notify.publish(resolved(action, evidence)).await;
    wait_until("the action's notifications settled", || async {
        let counts = &notify.notifications(action).await["counts"];
        let total: u64 = [
            "delivered",
            "dead",
            "skipped_no_consent",
            "skipped_no_route",
            "skipped_unsubscribed",
        ]
        .iter()
        .map(|key| counts[*key].as_u64().unwrap_or(0))
        .sum();
        total == settled
    })
    .await;
    action
}

#[tokio::test]
async fn preferences_decide_consent_channel_and_language() {
    let (receiver, addr) = start_receiver(0).await;
    let notify = spawn_notify(|config| {
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.webhook_secrets = vec![("shopdesk".into(), SECRET.into())];
    })
    .await;
    // Feedback says yes, the later preference record says no; and the other way round.
    let ids = publish_feedback(
        &notify,
        &[
            categorised("ava", "shopdesk", Some("en-GB"), true, "Late"),
            categorised("ben", "shopdesk", None, true, "Late"),
            categorised("cara", "shopdesk", None, false, "Late"),
        ],
    )
    .await;
    wait_until("feedback projected", || async {
        notify
            .metric(
                "closeloop_events_consumed_total",
                &[r#"topic="feedback.categorised.v1""#],
            )
            .await
            >= 3.0
    })
    .await;
    notify
        .publish(CustomerPreferences {
            language: Some("de-AT".into()),
            channels: Some(vec![DeliveryChannel::Webhook]),
            ..preferences("ava", true)
        })
        .await;
    notify.publish(preferences("ben", false)).await;
    notify.publish(preferences("cara", true)).await;
    preferences_applied(&notify, 3.0).await;

    let action = resolve_and_wait(&notify, &ids, 3).await;
    let view = notify.notifications(action).await;
    assert_eq!(view["counts"]["delivered"], 2, "{view}");
    assert_eq!(view["counts"]["skipped_no_consent"], 1, "{view}");
    let deliveries = notify.deliveries(action).await;
    assert_eq!(
        deliveries["ava"]["language"], "de",
        "her preferences name German"
    );
    assert_eq!(deliveries["ava"]["channel"], "webhook");
    assert!(
        deliveries.contains_key("cara"),
        "consent given later counts"
    );
    assert!(
        !deliveries.contains_key("ben"),
        "consent withdrawn later counts"
    );
    // What notify knows of ava.
    let ava = notify.get_path("/v1/customers/ava/preferences").await;
    assert_eq!(ava["preferences"]["language"], "de-AT");
    assert_eq!(
        ava["preferences"]["channels"],
        serde_json::json!(["webhook"])
    );
    assert_eq!(ava["preferences"]["set_by"], "shopdesk");
    // A record older than the one applied changes nothing.
    notify
        .publish(CustomerPreferences {
            updated_at: Utc::now() - chrono::Duration::hours(1),
            ..preferences("ava", false)
        })
        .await;
    preferences_applied(&notify, 4.0).await;
    let ava = notify.get_path("/v1/customers/ava/preferences").await;
    assert_eq!(ava["preferences"]["consent"], true);
    // Every webhook payload carries the customer's unsubscribe link.
    for request in receiver.accepted() {
        let body: Value = serde_json::from_slice(&request.body).expect("JSON");
        let url = body["unsubscribe_url"]
            .as_str()
            .expect("an unsubscribe URL");
        assert!(
            url.starts_with(&format!("{}/unsubscribe/", notify.base)),
            "{url}"
        );
    }
    notify.stop().await;
}

#[tokio::test]
async fn unsubscribe_by_one_click_and_by_the_page_and_never_again() {
    let (receiver, addr) = start_receiver(0).await;
    let notify = spawn_notify(|config| {
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.frequency_cap = Duration::ZERO;
    })
    .await;
    let ids = publish_feedback(
        &notify,
        &[
            categorised("dana", "shopdesk", None, true, "Late"),
            categorised("olaf", "shopdesk", Some("de-DE"), true, "Zu spät"),
            categorised("pia", "shopdesk", None, true, "Late"),
        ],
    )
    .await;
    resolve_and_wait(&notify, &ids, 3).await;
    let link = |customer: &str| {
        receiver
            .accepted()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).expect("JSON"))
            .find(|body| body["customer"]["id"] == customer)
            .and_then(|body| body["unsubscribe_url"].as_str().map(str::to_owned))
            .expect("the customer's link")
    };
    let http = reqwest::Client::new();

    // RFC 8058: the mail client's one POST unsubscribes at once.
    let response = http
        .post(link("dana"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("notify answers");
    assert_eq!(response.status(), 200);
    assert!(response
        .text()
        .await
        .unwrap_or_default()
        .contains("You are unsubscribed"));

    // The page: a GET only asks (link scanners GET), in the customer's language…
    let page = http
        .get(link("olaf"))
        .header("accept-language", "de-DE,de;q=0.9")
        .send()
        .await
        .expect("notify answers");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap_or_default();
    assert!(
        html.contains("<form method=\"post\">") && html.contains("Abmelden"),
        "{html}"
    );
    let olaf = notify.get_path("/v1/customers/olaf/preferences").await;
    assert_eq!(
        olaf["preferences"]["unsubscribed"], false,
        "a GET changes nothing"
    );
    // …and its button posts the same form.
    let response = http
        .post(link("olaf"))
        .form(&[("List-Unsubscribe", "One-Click")])
        .send()
        .await
        .expect("notify answers");
    assert_eq!(response.status(), 200);
    let olaf = notify.get_path("/v1/customers/olaf/preferences").await;
    assert_eq!(olaf["preferences"]["unsubscribed"], true, "{olaf}");
    assert_eq!(olaf["preferences"]["set_by"], "customer:unsubscribe");
    // A second click is harmless.
    let again = http
        .post(link("olaf"))
        .header("accept-language", "de")
        .send()
        .await
        .expect("notify answers");
    assert_eq!(again.status(), 200);
    assert!(again
        .text()
        .await
        .unwrap_or_default()
        .contains("bereits abgemeldet"));

    // A forged link (pia's, naming dana) and an expired one are refused.
    let pia = link("pia");
    let (base, token) = pia.rsplit_once('/').expect("a token");
    let (_, rest) = token.split_once('.').expect("a signed token");
    let forged = format!("{base}/{}.{rest}", base64_url("dana"));
    for url in [forged.as_str(), &format!("{base}/garbage")] {
        let response = http.post(url).send().await.expect("notify answers");
        assert_eq!(response.status(), 404, "{url}");
    }
    let expired = Links::new(
        Secret::new(DEVELOPMENT_KEY),
        &notify.base,
        chrono::Duration::seconds(-10),
    )
    .url("pia", Utc::now());
    let response = http.post(&expired).send().await.expect("notify answers");
    assert_eq!(response.status(), 410);
    assert_eq!(
        notify
            .metric(
                "closeloop_notify_unsubscribe_requests_total",
                &[r#"result="invalid""#]
            )
            .await,
        2.0
    );
    let pia_view = notify.get_path("/v1/customers/pia/preferences").await;
    assert_eq!(pia_view["preferences"]["unsubscribed"], false, "{pia_view}");

    // The unsubscribes went out as preference records (notify applied its own too).
    preferences_applied(&notify, 2.0).await;
    // Never messaged again: the next resolution skips them with that reason.
    let second = resolve_and_wait(&notify, &ids, 3).await;
    let view = notify.notifications(second).await;
    assert_eq!(view["counts"]["skipped_unsubscribed"], 2, "{view}");
    assert_eq!(view["counts"]["delivered"], 1, "{view}");
    let sent_to: Vec<String> = receiver.accepted().iter().map(|r| r.customer()).collect();
    assert_eq!(sent_to.iter().filter(|c| *c == "dana").count(), 1);
    assert_eq!(sent_to.iter().filter(|c| *c == "pia").count(), 2);
    notify.stop().await;
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn erasure_removes_preferences_and_old_records_stay_out() {
    let notify = spawn_notify(|_| {}).await;
    let requested_at = Utc::now();
    notify
        .publish(CustomerPreferences {
            updated_at: requested_at - chrono::Duration::seconds(5),
            ..preferences("gus", true)
        })
        .await;
    preferences_applied(&notify, 1.0).await;
    let gus = notify.get_path("/v1/customers/gus/preferences").await;
    assert_eq!(gus["preferences"]["consent"], true);
    notify
        .publish(ErasureRequest {
            customer_id: "gus".into(),
            source: "admin".into(),
            requested_at,
            scope: ErasureScope::All,
        })
        .await;
    wait_until("gus erased", || async {
        notify.get_path("/v1/customers/gus/preferences").await["preferences"].is_null()
    })
    .await;
    // A record made before the erasure, arriving late, is not applied again.
    notify
        .publish(CustomerPreferences {
            updated_at: requested_at - chrono::Duration::seconds(1),
            ..preferences("gus", true)
        })
        .await;
    preferences_applied(&notify, 2.0).await;
    let gus = notify.get_path("/v1/customers/gus/preferences").await;
    assert!(gus["preferences"].is_null(), "{gus}");
    notify.stop().await;
}
