//! The whole loop on the embedded broker: feedback in → categorised → action raised →
//! resolved through the ops API → exactly the consenting customers who complained about
//! the theme receive exactly one correctly signed message each, in their language.

use std::collections::HashMap;
use std::time::Duration;

use closeloop_tests::{feedback, open_action, post_all, received_at_least, resolve, start_loop};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_closes_for_exactly_the_consenting_complainers() {
    let (stack, sink) = start_loop().await;
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
    post_all(&stack, "k", &posts).await;

    let action = open_action(&stack, "delivery_time", Duration::from_secs(60)).await;
    assert_eq!(action["evidence"]["distinct_customers"], 4, "{action}");
    let action_id = action["action_id"].as_str().unwrap().to_owned();

    resolve(
        &stack,
        &action_id,
        "We added a second carrier.",
        "Wir haben einen zweiten Versanddienstleister beauftragt.",
    )
    .await;

    received_at_least(&sink, 3, Duration::from_secs(30)).await;
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
