//! The whole loop on the embedded broker: feedback in → categorised → action raised →
//! resolved through the ops API → exactly the consenting customers who complained about
//! the theme receive exactly one correctly signed message each, in their language.

use std::collections::HashMap;
use std::time::Duration;

use closeloop::sink::WebhookSink;
use closeloop::stack::{ServiceConfigs, Stack};
use closeloop::up::{dev_key, local_defaults};
use closeloop_store::testing::database_args;
use closeloop_tests::{eventually, init_logs};
use serde_json::{json, Value};
use tokio::net::TcpListener;

fn feedback(customer: &str, locale: &str, consent: bool, text: &str, rating: u8) -> Value {
    json!({
        "channel": "review",
        "touchpoint": "delivery",
        "customer": { "id": customer, "locale": locale, "consent": consent, "reference": format!("REF-{customer}") },
        "text": text,
        "rating": rating
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_closes_for_exactly_the_consenting_complainers() {
    init_logs();
    let mut configs = ServiceConfigs::from_env(&database_args("shared")).with_ephemeral_ports();
    configs.ingest.database = database_args("ingest");
    configs.categorise.database = database_args("categorise");
    configs.trends.database = database_args("trends");
    configs.notify.database = database_args("notify");
    configs.trends.min_negative_mentions = 4;
    configs.trends.min_distinct_customers = 3;
    configs.notify.retry_base_ms = 20;
    let sink_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secrets = local_defaults(&mut configs, sink_listener.local_addr().unwrap());
    let sink = WebhookSink::new(secrets, false);
    let stack = Stack::start_embedded(configs, 1, 3)
        .await
        .expect("stack starts");
    sink.spawn(sink_listener, stack.shutdown_token());
    let client = reqwest::Client::new();

    let posts = [
        feedback(
            "anna",
            "en-GB",
            true,
            "My parcel arrived two weeks late. Really disappointing.",
            1,
        ),
        feedback(
            "anna",
            "en-GB",
            true,
            "Still waiting, the delivery is late again!",
            1,
        ),
        feedback(
            "bernd",
            "de-DE",
            true,
            "Die Lieferung kam eine Woche zu spät, sehr ärgerlich.",
            1,
        ),
        feedback(
            "chris",
            "en-US",
            true,
            "Delivery was delayed by ten days, terrible.",
            2,
        ),
        feedback(
            "dora",
            "en-IE",
            false,
            "The order was delivered far too late, awful experience.",
            1,
        ),
        feedback(
            "emil",
            "de-AT",
            true,
            "Super schnelle Lieferung, vielen Dank!",
            5,
        ),
        feedback(
            "fay",
            "en-GB",
            true,
            "Way too expensive for what you get, the price is a rip-off.",
            1,
        ),
    ];
    for (i, body) in posts.iter().enumerate() {
        let response = client
            .post(format!("http://{}/v1/feedback", stack.ingest))
            .bearer_auth(dev_key("shopdesk"))
            .header("Idempotency-Key", format!("k-{i}"))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
    }

    let action: Value = eventually(
        Duration::from_secs(60),
        "an open delivery_time action",
        || {
            let client = client.clone();
            let url = format!("http://{}/v1/actions?status=open", stack.trends);
            async move {
                let actions: Value = client.get(url).send().await.ok()?.json().await.ok()?;
                actions
                    .as_array()?
                    .iter()
                    .find(|a| a["theme"] == "delivery_time")
                    .cloned()
            }
        },
    )
    .await;
    assert_eq!(action["evidence"]["distinct_customers"], 4, "{action}");
    let action_id = action["action_id"].as_str().unwrap().to_owned();

    let response = client
        .post(format!(
            "http://{}/v1/actions/{action_id}/resolve",
            stack.trends
        ))
        .json(&json!({
            "message": {
                "en": "We added a second carrier.",
                "de": "Wir haben einen zweiten Versanddienstleister beauftragt."
            },
            "resolved_by": "ops@example.com"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);

    eventually(
        Duration::from_secs(30),
        "three delivered notifications",
        || {
            let sink = sink.clone();
            async move { (sink.received().len() >= 3).then_some(()) }
        },
    )
    .await;
    // Give a wrong extra delivery the chance to show up before asserting there is none.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let received = sink.received();
    let by_customer: HashMap<String, &Value> = received
        .iter()
        .map(|r| {
            (
                r.payload["customer"]["id"].as_str().unwrap().to_owned(),
                &r.payload,
            )
        })
        .collect();
    let mut customers: Vec<&str> = by_customer.keys().map(String::as_str).collect();
    customers.sort();
    assert_eq!(
        customers,
        ["anna", "bernd", "chris"],
        "only consenting complainers"
    );
    assert_eq!(received.len(), 3, "one message each, anna too");
    assert_eq!(sink.rejected(), 0, "every signature verified");

    let bernd = by_customer["bernd"];
    assert_eq!(bernd["language"], "de");
    let text = bernd["text"].as_str().unwrap();
    assert!(
        text.contains("Wir haben einen zweiten Versanddienstleister beauftragt."),
        "{text}"
    );
    assert!(
        text.contains("Lieferung kam eine Woche zu spät"),
        "quotes the customer: {text}"
    );
    let anna = by_customer["anna"];
    assert_eq!(anna["language"], "en");
    assert!(anna["text"]
        .as_str()
        .unwrap()
        .contains("We added a second carrier."));
    assert_eq!(anna["customer"]["reference"], "REF-anna");

    let deliveries: Value = client
        .get(format!(
            "http://{}/v1/notifications?action={action_id}",
            stack.notify
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deliveries = deliveries["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3);
    assert!(
        deliveries.iter().all(|d| d["status"] == "delivered"),
        "{deliveries:?}"
    );

    stack.stop().await;
}
