//! W3C trace context travels with a feedback: the `traceparent` a support tool sends to
//! ingest is on the raw, categorised and theme-mention records it causes and on the
//! action it raises, so its trace id finds it in every service's logs.

use std::time::{Duration, Instant};

use closeloop::up::dev_key;
use closeloop_bus::TRACEPARENT_HEADER;
use closeloop_events::topics;
use closeloop_tests::{feedback, open_action, start_loop};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::Message;

/// The trace id of the `traceparent` header of every record of `topic`, until `count`
/// were read (or 30 s passed).
async fn trace_ids(brokers: &str, topic: &str, count: usize) -> Vec<String> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("trace-reader-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ids = Vec::new();
    while ids.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(message) = tokio::time::timeout(left, consumer.recv()).await else {
            break;
        };
        let message = message.expect("record");
        let traceparent = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|header| header.key == TRACEPARENT_HEADER)
                .and_then(|header| header.value)
                .map(|value| String::from_utf8_lossy(value).into_owned())
        });
        let traceparent = traceparent.unwrap_or_default();
        ids.push(closeloop_bus::trace_id(&traceparent).to_owned());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_feedback_carries_its_trace_id_through_every_topic() {
    let (stack, _sink) = start_loop().await;
    let client = reqwest::Client::new();
    let complaints = [
        (
            "ana",
            "My parcel arrived two weeks late. Really disappointing.",
        ),
        ("ana", "Still waiting, the delivery is late again!"),
        (
            "ben",
            "Die Lieferung kam eine Woche zu spät, sehr ärgerlich.",
        ),
        ("cai", "Delivery was delayed by ten days, terrible."),
        (
            "dan",
            "The order was delivered far too late, awful experience.",
        ),
    ];
    let trace_of = |i: usize| format!("4bf92f3577b34da6a3ce929d0e0e47{i:02}");
    for (i, (customer, text)) in complaints.iter().enumerate() {
        let response = client
            .post(format!("http://{}/v1/feedback", stack.ingest))
            .bearer_auth(dev_key("shopdesk"))
            .header(
                "traceparent",
                format!("00-{}-00f067aa0ba902b7-01", trace_of(i)),
            )
            .json(&feedback(customer, "en-GB", true, text, 1))
            .send()
            .await
            .expect("ingest answers");
        assert_eq!(response.status(), 202);
    }
    open_action(&stack, "delivery_time", Duration::from_secs(60)).await;

    let sent: Vec<String> = (0..complaints.len()).map(trace_of).collect();
    let brokers = &stack.bootstrap_servers;
    let mut raw = trace_ids(brokers, topics::FEEDBACK_RAW, sent.len()).await;
    raw.sort();
    assert_eq!(raw, sent, "feedback.raw.v1");
    let mut categorised = trace_ids(brokers, topics::FEEDBACK_CATEGORISED, sent.len()).await;
    categorised.sort();
    assert_eq!(categorised, sent, "feedback.categorised.v1");
    // One mention or more per feedback, each with its feedback's trace.
    let mentions = trace_ids(brokers, topics::FEEDBACK_THEMES, sent.len()).await;
    assert!(mentions.len() >= sent.len());
    assert!(mentions.iter().all(|id| sent.contains(id)), "{mentions:?}");
    // The action carries the trace of the mention that raised it.
    let action = trace_ids(brokers, topics::ACTIONS, 1).await;
    assert_eq!(action.len(), 1);
    assert!(sent.contains(&action[0]), "{action:?}");
    stack.stop().await;
}
