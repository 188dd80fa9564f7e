//! Helpers for the end-to-end tests in `tests/tests/`: spawn services on the embedded
//! broker with a fresh database each (a fresh PostgreSQL schema when `DATABASE_URL`
//! points at PostgreSQL), wait for conditions, read topics.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use closeloop::stack::{ServiceConfigs, Stack};
use closeloop::up::{dev_key, local_defaults};
use closeloop_bus::KafkaArgs;
use closeloop_ingest::SourceKey;
use closeloop_sinks::WebhookSink;
use closeloop_store::testing::database_args;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use closeloop_testkit::{eventually, init_logs, read_topic};

/// A feedback event as a support tool posts it, about delivery, from `customer`.
pub fn feedback(
    customer: &str,
    locale: &str,
    consent: bool,
    text: &str,
    rating: u8,
) -> serde_json::Value {
    serde_json::json!({
        "channel": "review",
        "touchpoint": "delivery",
        "customer": { "id": customer, "locale": locale, "consent": consent, "reference": format!("REF-{customer}") },
        "text": text,
        "rating": rating
    })
}

/// Settings for the whole loop with each service on its own fresh database, tuned to
/// raise an action from a handful of complaints (4 negative mentions from 3 customers)
/// and to retry deliveries quickly.
pub fn loop_configs() -> ServiceConfigs {
    let mut configs = ServiceConfigs::from_env(&database_args("shared")).with_ephemeral_ports();
    configs.ingest.database = database_args("ingest");
    configs.categorise.database = database_args("categorise");
    configs.trends.database = database_args("trends");
    configs.notify.database = database_args("notify");
    configs.trends.min_negative_mentions = 4;
    configs.trends.min_distinct_customers = 3;
    configs.notify.retry_base_ms = 20;
    configs
}

/// The whole loop of [`loop_configs`] in this process on a fresh embedded broker.
pub async fn start_loop() -> (Stack, WebhookSink) {
    start_loop_with(loop_configs()).await
}

/// The whole loop in this process on a fresh embedded broker (1 broker, 3 partitions);
/// its webhooks go to the returned sink, which verifies their signatures.
pub async fn start_loop_with(configs: ServiceConfigs) -> (Stack, WebhookSink) {
    with_webhook_sink(configs, |configs| async move {
        Stack::start_embedded(configs, 1, 3)
            .await
            .expect("stack starts")
    })
    .await
}

/// Points the webhooks of `configs` at a fresh signature-checking sink, starts the stack
/// with `start` and serves the sink until the stack stops.
async fn with_webhook_sink<F, Fut>(mut configs: ServiceConfigs, start: F) -> (Stack, WebhookSink)
where
    F: FnOnce(ServiceConfigs) -> Fut,
    Fut: std::future::Future<Output = Stack>,
{
    init_logs();
    let sink_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the webhook sink");
    let sink_addr = sink_listener.local_addr().expect("sink address");
    let secrets = local_defaults(&mut configs, sink_addr);
    let sink = WebhookSink::new(secrets, false);
    let stack = start(configs).await;
    sink.spawn(sink_listener, stack.shutdown_token())
        .expect("webhook sink listens");
    (stack, sink)
}

/// ingest alone on `brokers` with a fresh database, one source `source` with API key
/// `key`; returns its `/v1/feedback` URL and the token that stops it.
pub async fn spawn_ingest(brokers: &str, source: &str, key: &str) -> (String, CancellationToken) {
    spawn_ingest_with(brokers, source, key, |_| {}).await
}

/// [`spawn_ingest`] with its configuration changed by `adjust` before it starts.
pub async fn spawn_ingest_with(
    brokers: &str,
    source: &str,
    key: &str,
    adjust: impl FnOnce(&mut closeloop_ingest::Config),
) -> (String, CancellationToken) {
    let mut ingest = closeloop_ingest::Config::parse_from(["ingest"]);
    ingest.kafka = KafkaArgs::new(brokers);
    ingest.database = database_args("ingest");
    ingest.http_addr = ([127, 0, 0, 1], 0).into();
    ingest.api_keys = vec![SourceKey {
        source: source.into(),
        key: key.into(),
    }];
    adjust(&mut ingest);
    let service = closeloop_ingest::Service::build(ingest)
        .await
        .expect("ingest builds");
    let url = format!("http://{}/v1/feedback", service.http_addr());
    let stop = CancellationToken::new();
    tokio::spawn(service.run_until_stopped(stop.clone()));
    (url, stop)
}

/// Waits until the sink has received at least `count` webhooks.
pub async fn received_at_least(sink: &WebhookSink, count: usize, timeout: Duration) {
    eventually(timeout, &format!("{count} delivered notifications"), || {
        let sink = sink.clone();
        async move { (sink.received().len() >= count).then_some(()) }
    })
    .await;
}

/// Posts each body to ingest as the dev source `shopdesk`, with idempotency keys
/// `{key_prefix}-{index}`, and asserts every one was accepted.
pub async fn post_all(stack: &Stack, key_prefix: &str, bodies: &[serde_json::Value]) {
    let client = reqwest::Client::new();
    for (i, body) in bodies.iter().enumerate() {
        let response = client
            .post(format!("http://{}/v1/feedback", stack.ingest))
            .bearer_auth(dev_key("shopdesk"))
            .header("Idempotency-Key", format!("{key_prefix}-{i}"))
            .json(body)
            .send()
            .await
            .expect("ingest answers");
        let status = response.status();
        assert_eq!(status, 202, "{:?}", response.text().await);
    }
}

/// Waits until trends has an unresolved action for `theme` and returns it as the API
/// shows it.
pub async fn open_action(stack: &Stack, theme: &str, timeout: Duration) -> serde_json::Value {
    let client = reqwest::Client::new();
    eventually(timeout, &format!("an open {theme} action"), || {
        let client = client.clone();
        let url = format!("http://{}/v1/actions?status=open", stack.trends);
        async move {
            let actions: serde_json::Value =
                client.get(url).send().await.ok()?.json().await.ok()?;
            actions
                .as_array()?
                .iter()
                .find(|a| a["theme"] == theme)
                .cloned()
        }
    })
    .await
}

/// Resolves an action through the ops API with an English and a German "we did".
pub async fn resolve(stack: &Stack, action_id: &str, en: &str, de: &str) {
    resolve_at(stack.trends, action_id, en, de).await;
}

/// Resolves an action through the ops API of trends at `trends`.
pub async fn resolve_at(trends: SocketAddr, action_id: &str, en: &str, de: &str) {
    let response = reqwest::Client::new()
        .post(format!("http://{trends}/v1/actions/{action_id}/resolve"))
        .json(&serde_json::json!({
            "message": { "en": en, "de": de },
            "resolved_by": "ops@example.com"
        }))
        .send()
        .await
        .expect("trends answers");
    let status = response.status();
    assert_eq!(status, 200, "{:?}", response.text().await);
}

/// The `n`th of a stream of complaints posted to ingest, from one of `customers`
/// customers (the fault tests' load).
pub fn complaint(n: usize, customers: usize) -> serde_json::Value {
    serde_json::json!({
        "channel": "ticket",
        "customer": {"id": format!("cust-{}", n % customers), "locale": "en-GB", "consent": true},
        "text": format!("Order {n}: the parcel arrived late and the box was damaged."),
        "rating": 2
    })
}

/// Posts `count` of [`complaint`]s (from `customers` customers) to ingest's `url` with
/// API key `key`, `concurrency` at a time, counting each answered one in `progress`;
/// returns the accepted event ids and every status that was not 202.
pub async fn post_complaints(
    url: &str,
    key: &str,
    count: usize,
    concurrency: usize,
    customers: usize,
    progress: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (Vec<String>, Vec<u16>) {
    use futures::StreamExt;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    let client = reqwest::Client::new();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    futures::stream::iter(0..count)
        .for_each_concurrent(concurrency, |n| {
            let (client, accepted, refused, progress) = (
                client.clone(),
                accepted.clone(),
                refused.clone(),
                progress.clone(),
            );
            async move {
                let response = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&complaint(n, customers))
                    .send()
                    .await
                    .expect("ingest answers");
                let status = response.status().as_u16();
                let body: serde_json::Value =
                    response.json().await.unwrap_or(serde_json::Value::Null);
                if status == 202 {
                    let ids = body["event_ids"].as_array().cloned().unwrap_or_default();
                    assert_eq!(ids.len(), 1, "{body}");
                    let id = ids[0].as_str().unwrap_or_default().to_owned();
                    accepted.lock().expect("not poisoned").push(id);
                } else {
                    refused.lock().expect("not poisoned").push(status);
                }
                progress.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    let accepted = accepted.lock().expect("not poisoned").clone();
    let refused = refused.lock().expect("not poisoned").clone();
    (accepted, refused)
}

/// The feedback ids in categorise's store.
pub async fn categorised_ids(database: &closeloop_store::DatabaseArgs) -> Vec<String> {
    let db = closeloop_store::Database::connect(&database.config("categorise"))
        .await
        .expect("categorise database");
    let ids = closeloop_store::sqlx::query_scalar::<_, String>(
        "SELECT feedback_id FROM categorise_feedback",
    )
    .fetch_all(db.pool())
    .await
    .expect("read categorise_feedback");
    db.close().await;
    ids
}

/// The loop closes on `stack`: feedback in EN and DE → categorised → a delivery-time
/// action raised → resolved through the ops API → exactly the consenting customers who
/// complained about the theme receive exactly one correctly signed message each, in
/// their language.
pub async fn assert_the_loop_closes(stack: &Stack, sink: &WebhookSink) {
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
    post_all(stack, "k", &posts).await;

    let action = open_action(stack, "delivery_time", Duration::from_secs(60)).await;
    assert_eq!(action["evidence"]["distinct_customers"], 4, "{action}");
    let action_id = action["action_id"].as_str().unwrap().to_owned();

    resolve(
        stack,
        &action_id,
        "We added a second carrier.",
        "Wir haben einen zweiten Versanddienstleister beauftragt.",
    )
    .await;

    received_at_least(sink, 3, Duration::from_secs(30)).await;
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
}

/// The whole loop of `configs` in this process on the real cluster at `brokers` (topics
/// already created); its webhooks go to the returned sink.
pub async fn start_loop_on(brokers: &str, mut configs: ServiceConfigs) -> (Stack, WebhookSink) {
    configs.set_brokers(brokers);
    with_webhook_sink(configs, |configs| async move {
        Stack::start(configs).await.expect("stack starts")
    })
    .await
}

/// Waits (up to 3 min: the pipeline catches up after faults on a loaded machine) until
/// categorise's store on `database` holds every id in `accepted`, then asserts it holds
/// each exactly once. Returns how many other feedbacks it holds: published by ingest but
/// never answered with a 202 (ingest killed mid-request, or a 503 after a broker timeout
/// whose record did land), which a fault test may or may not allow.
pub async fn assert_categorised_exactly_once(
    database: &closeloop_store::DatabaseArgs,
    accepted: &[String],
) -> usize {
    let expected: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    assert_eq!(
        expected.len(),
        accepted.len(),
        "ingest handed out an id twice"
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    // Until every accepted id is there: a count would also count what ingest published
    // without answering.
    let stored = loop {
        let ids = categorised_ids(database).await;
        let present: HashSet<&str> = ids.iter().map(String::as_str).collect();
        if expected.is_subset(&present) || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
    assert_eq!(stored.len(), stored_set.len(), "a feedback stored twice");
    let missing: Vec<&&str> = expected.difference(&stored_set).collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted events not categorised, e.g. {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
    stored_set.len() - expected.len()
}

/// Waits until notify at `notify` has settled every notification of each action in
/// `action_ids` (delivered, or held by the frequency cap), then asserts that no customer
/// was told twice about one action, that under the cap (7 days by default, so for the
/// whole test) each customer got exactly one message whatever the number of actions, and
/// that `sink` received each delivered one once, correctly signed, and nothing else.
pub async fn assert_each_complainer_told_once(
    notify: SocketAddr,
    sink: &WebhookSink,
    action_ids: &[String],
) {
    let client = reqwest::Client::new();
    let mut delivered_to: HashMap<String, usize> = HashMap::new();
    for id in action_ids {
        let url = format!("http://{notify}/v1/notifications?action={id}");
        let deliveries = eventually(Duration::from_secs(120), "deliveries made", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
                let deliveries = body["deliveries"].as_array()?.clone();
                let done = !deliveries.is_empty()
                    && deliveries
                        .iter()
                        .all(|d| d["status"] == "delivered" || d["status"] == "held");
                done.then_some(deliveries)
            }
        })
        .await;
        let customers: HashSet<&str> = deliveries
            .iter()
            .map(|d| d["customer_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            customers.len(),
            deliveries.len(),
            "a customer told twice: {deliveries:?}"
        );
        for delivery in deliveries.iter().filter(|d| d["status"] == "delivered") {
            let customer = delivery["customer_id"].as_str().unwrap_or_default();
            *delivered_to.entry(customer.to_owned()).or_default() += 1;
        }
    }
    let twice: Vec<_> = delivered_to.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "customers messaged twice in one period: {twice:?}"
    );
    let due = delivered_to.len();
    received_at_least(sink, due, Duration::from_secs(60)).await;
    let received = sink.received();
    let webhook_ids: HashSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
    assert_eq!(webhook_ids.len(), received.len(), "a webhook sent twice");
    assert_eq!(received.len(), due, "messages other than the deliveries");
    assert_eq!(sink.rejected(), 0, "every signature verified");
}

/// The single number `query` gives in `service`'s store; 0 before the store exists.
pub async fn count_rows(
    database: &closeloop_store::DatabaseArgs,
    service: &str,
    query: &str,
) -> i64 {
    let Ok(db) = closeloop_store::Database::connect(&database.config(service)).await else {
        return 0;
    };
    let count = closeloop_store::sqlx::query_scalar::<_, i64>(query)
        .fetch_one(db.pool())
        .await
        .unwrap_or(0);
    db.close().await;
    count
}

/// Resolves every action in `action_ids` through the ops API of trends at `trends`.
pub async fn resolve_all(trends: SocketAddr, action_ids: &[String]) {
    for id in action_ids {
        resolve_at(
            trends,
            id,
            "We changed carriers.",
            "Wir haben den Paketdienst gewechselt.",
        )
        .await;
    }
}

/// Waits (up to 2 min) until a load generator has had `n` requests answered, so a fault
/// test can strike mid-stream.
pub async fn wait_until_posted(posted: &std::sync::Arc<std::sync::atomic::AtomicUsize>, n: usize) {
    eventually(Duration::from_secs(120), "posting progresses", || {
        let posted = posted.clone();
        async move { (posted.load(std::sync::atomic::Ordering::Relaxed) >= n).then_some(()) }
    })
    .await;
}

/// `closeloop <name>` (the binary at `binary`) as a child process on `brokers` and
/// `database`, with `settings` as its environment; killed when dropped.
pub fn spawn_closeloop(
    binary: &str,
    name: &str,
    brokers: &str,
    database: &closeloop_store::DatabaseArgs,
    settings: &[(&str, &str)],
) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(binary);
    command
        .arg(name)
        .env("KAFKA_BROKERS", brokers)
        .env("KAFKA_CREATE_TOPICS", "false")
        .env("DATABASE_URL", &database.database_url)
        .envs(settings.iter().copied())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    match &database.database_schema {
        Some(schema) => command.env("DATABASE_SCHEMA", schema),
        None => command.env_remove("DATABASE_SCHEMA"),
    };
    command
        .spawn()
        .unwrap_or_else(|error| panic!("closeloop {name} does not start: {error}"))
}

/// Sends `signal` (`-KILL`, `-TERM`) to a child process.
pub fn send_signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("child still running").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}
