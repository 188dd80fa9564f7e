//! ingest against hostile and broken requests: each gets a clear 4xx problem+json and
//! nothing reaches Kafka; good requests, and idempotent retries, behave.

use std::time::Duration;

use clap::Parser;
use closeloop_bus::{EmbeddedBroker, KafkaArgs, TopicSpec};
use closeloop_events::topics;
use closeloop_ingest::{Config, Service, SourceKey};
use closeloop_store::testing::database_args;
use closeloop_tests::{init_logs, read_topic};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const KEY: &str = "test-key-shopdesk";

struct Ingest {
    url: String,
    brokers: String,
    shutdown: CancellationToken,
    _broker: EmbeddedBroker,
}

async fn spawn_ingest() -> Ingest {
    init_logs();
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(2)).unwrap();
    let mut config = Config::parse_from(["ingest"]);
    config.kafka = KafkaArgs::new(broker.bootstrap_servers());
    config.database = database_args("ingest");
    config.http_addr = ([127, 0, 0, 1], 0).into();
    config.api_keys = vec![SourceKey {
        source: "shopdesk".into(),
        key: KEY.into(),
    }];
    config.max_batch = 10;
    config.max_body_bytes = 64 * 1024;
    let service = Service::build(config).await.unwrap();
    let url = format!("http://{}", service.http_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(service.run_until_stopped(shutdown.clone()));
    Ingest {
        url,
        brokers: broker.bootstrap_servers().to_owned(),
        shutdown,
        _broker: broker,
    }
}

fn valid() -> Value {
    json!({
        "channel": "ticket",
        "customer": { "id": "c-1", "locale": "en-GB", "consent": true },
        "text": "The parcel came late.",
        "rating": 2
    })
}

/// Valid until its metadata nests 10,000 arrays deep (past serde_json's recursion limit).
fn deeply_nested() -> Vec<u8> {
    format!(
        r#"{{"channel":"ticket","customer":{{"id":"c"}},"text":"x","metadata":{{"a":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_problem_and_publish_nothing() {
    let ingest = spawn_ingest().await;
    let client = reqwest::Client::new();
    let single = format!("{}/v1/feedback", ingest.url);
    let batch = format!("{}/v1/feedback/batch", ingest.url);

    let mut wrong_type = valid();
    wrong_type["rating"] = json!("five");
    let mut missing = valid();
    missing.as_object_mut().unwrap().remove("text");
    let mut out_of_range = valid();
    out_of_range["nps"] = json!(42);
    let mut unknown = valid();
    unknown["sentiment"] = json!("positive");
    let mut bad_channel = valid();
    bad_channel["channel"] = json!("carrier-pigeon");
    let mut half_bad_batch = vec![valid(); 3];
    half_bad_batch[2]["rating"] = json!(0);

    // (name, url, key, body bytes, expected status, expected pointer)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        u16,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            &single,
            Some(KEY),
            b"{\"channel\": ".to_vec(),
            400,
            None,
        ),
        (
            "not JSON at all",
            &single,
            Some(KEY),
            b"hello".to_vec(),
            400,
            None,
        ),
        (
            "invalid UTF-8",
            &single,
            Some(KEY),
            b"{\"text\": \"\xff\xfe\"}".to_vec(),
            400,
            None,
        ),
        (
            "deeply nested",
            &single,
            Some(KEY),
            deeply_nested(),
            400,
            None,
        ),
        (
            "wrong top-level type",
            &single,
            Some(KEY),
            b"[1, 2]".to_vec(),
            422,
            None,
        ),
        (
            "missing field",
            &single,
            Some(KEY),
            missing.to_string().into_bytes(),
            422,
            Some(""),
        ),
        (
            "wrong type",
            &single,
            Some(KEY),
            wrong_type.to_string().into_bytes(),
            422,
            Some("/rating"),
        ),
        (
            "out of range",
            &single,
            Some(KEY),
            out_of_range.to_string().into_bytes(),
            422,
            Some("/nps"),
        ),
        (
            "unknown field",
            &single,
            Some(KEY),
            unknown.to_string().into_bytes(),
            422,
            Some(""),
        ),
        (
            "unknown channel",
            &single,
            Some(KEY),
            bad_channel.to_string().into_bytes(),
            422,
            Some("/channel"),
        ),
        (
            "oversize body",
            &single,
            Some(KEY),
            vec![b' '; 100 * 1024],
            413,
            None,
        ),
        (
            "no API key",
            &single,
            None,
            valid().to_string().into_bytes(),
            401,
            None,
        ),
        (
            "unknown API key",
            &single,
            Some("not-a-key-of-anyone"),
            valid().to_string().into_bytes(),
            401,
            None,
        ),
        (
            "over-long batch",
            &batch,
            Some(KEY),
            json!({ "items": vec![valid(); 11] })
                .to_string()
                .into_bytes(),
            422,
            None,
        ),
        (
            "empty batch",
            &batch,
            Some(KEY),
            json!({ "items": [] }).to_string().into_bytes(),
            422,
            None,
        ),
        (
            "one bad item spoils the batch",
            &batch,
            Some(KEY),
            json!({ "items": half_bad_batch }).to_string().into_bytes(),
            422,
            Some("/items/2/rating"),
        ),
    ];
    for (name, url, key, body, status, pointer) in cases {
        let mut request = client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{name}");
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "application/problem+json",
            "{name}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], status, "{name}: {problem}");
        assert!(
            problem["title"].is_string() && problem["type"].is_string(),
            "{name}"
        );
        if let Some(pointer) = pointer {
            if !pointer.is_empty() {
                assert!(
                    problem["errors"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|e| e["pointer"] == pointer)),
                    "{name}: expected an error at {pointer}: {problem}"
                );
            }
        }
    }

    // The service still serves; exactly this one event reaches the topic.
    let response = client
        .post(&single)
        .bearer_auth(KEY)
        .json(&valid())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let records = read_topic(
        &ingest.brokers,
        topics::FEEDBACK_RAW,
        1,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        records.len(),
        1,
        "nothing from the bad requests: {records:?}"
    );
    assert_eq!(records[0]["schema"], "feedback.raw.v1");
    assert_eq!(records[0]["source"], "shopdesk");
    ingest.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_first_answer() {
    let ingest = spawn_ingest().await;
    let client = reqwest::Client::new();
    let batch = format!("{}/v1/feedback/batch", ingest.url);
    let body = json!({ "items": [valid(), valid()] });
    let post = |body: Value| {
        client
            .post(&batch)
            .bearer_auth(KEY)
            .header("Idempotency-Key", "order-42")
            .json(&body)
            .send()
    };
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["accepted"], 2);

    let again = post(body.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["event_ids"], first["event_ids"], "the first answer");

    let other_body = post(json!({ "items": [valid()] })).await.unwrap();
    assert_eq!(other_body.status(), 422, "same key, different body");

    let records = read_topic(
        &ingest.brokers,
        topics::FEEDBACK_RAW,
        2,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(records.len(), 2, "the replay published nothing new");
    ingest.shutdown.cancel();
}
