use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use closeloop_bus::{BusMetrics, EmbeddedBroker, KafkaArgs, Publisher, PublisherConfig, TopicSpec};
use closeloop_events::{
    decode, ActionEvent, Channel, Envelope, Language, SentimentLabel, ThemeMention, Touchpoint,
};
use closeloop_store::DatabaseArgs;
use closeloop_trends::{Config, Error, Service};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const THEME: &str = "delivery_time";

/// A broker with every closeloop topic and a publisher for the test's input.
pub struct Bus {
    pub broker: EmbeddedBroker,
    pub publisher: Publisher,
}

impl Bus {
    pub fn start() -> Bus {
        closeloop_telemetry::init_tracing(false);
        let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("embedded broker");
        let publisher = Publisher::new(
            &PublisherConfig::new(broker.bootstrap_servers()),
            BusMetrics::unregistered(),
        )
        .expect("publisher");
        Bus { broker, publisher }
    }

    pub fn brokers(&self) -> &str {
        self.broker.bootstrap_servers()
    }

    /// Test configuration: small thresholds (3 negative mentions from 2 customers; a
    /// theme without history is expected to have 0.05 per window, so 3 are a surge).
    pub fn config(&self, database: DatabaseArgs) -> Config {
        let mut config = Config::parse_from(["trends"]);
        config.kafka = KafkaArgs::new(self.brokers());
        config.database = database;
        config.http_addr = "127.0.0.1:0".parse().expect("address");
        config.min_negative_mentions = 3;
        config.min_distinct_customers = 2;
        config.surge_min_baseline = 0.05;
        config.group_id = format!("trends-{}", Uuid::now_v7().simple());
        config
    }

    pub async fn publish(&self, mention: &Envelope<ThemeMention>) {
        self.publisher
            .publish(mention, None)
            .await
            .expect("mention acknowledged");
    }
}

pub fn mention(
    customer: &str,
    sentiment: SentimentLabel,
    given_at: DateTime<Utc>,
) -> Envelope<ThemeMention> {
    Envelope::new(ThemeMention {
        feedback_id: Uuid::now_v7(),
        theme: THEME.into(),
        customer_id: customer.into(),
        source: "shopdesk".into(),
        channel: Channel::Review,
        touchpoint: Some(Touchpoint::Delivery),
        language: Language::En,
        sentiment,
        score: -0.7,
        rating: Some(1),
        nps: None,
        excerpt: format!("{customer}: the parcel took three weeks"),
        given_at,
        received_at: Some(Utc::now()),
    })
}

pub fn negative(customer: &str) -> Envelope<ThemeMention> {
    mention(customer, SentimentLabel::Negative, Utc::now())
}

/// A running service and an HTTP client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
}

impl TestApp {
    pub async fn spawn(config: Config) -> TestApp {
        let service = Service::build(config).await.expect("service builds");
        let address = format!("http://{}", service.http_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service.run_until_stopped(shutdown.clone()));
        TestApp {
            address,
            client: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Stops the service the way SIGTERM does and checks it stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("service stops in time")
            .expect("task did not panic")
            .expect("service stopped without error");
    }
}

/// Reads `actions.v1` from the beginning, as notify would.
pub struct ActionReader(StreamConsumer);

impl ActionReader {
    pub fn new(brokers: &str) -> ActionReader {
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("reader-{}", Uuid::now_v7().simple()))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("reader");
        consumer
            .subscribe(&[closeloop_events::topics::ACTIONS])
            .expect("subscribe");
        ActionReader(consumer)
    }

    pub async fn next(&self) -> ActionEvent {
        let message = tokio::time::timeout(Duration::from_secs(20), self.0.recv())
            .await
            .expect("an action event within 20 s")
            .expect("consume");
        decode::<ActionEvent>(message.payload().unwrap_or_default())
            .expect("a valid actions.v1 event")
            .data
    }
}

/// The value of the metric `name` whose labels include `label` (e.g. `event="raised"`;
/// `""` for a metric without labels).
pub fn metric(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|line| {
            let labelled = line.starts_with(&format!("{name}{{")) && line.contains(label);
            labelled || (label.is_empty() && line.starts_with(&format!("{name} ")))
        })
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Categorised feedback records trends has consumed.
pub async fn consumed(app: &TestApp) -> f64 {
    let text = closeloop_testkit::get_text(&app.url("/metrics")).await;
    metric(
        &text,
        "closeloop_events_consumed_total",
        "topic=\"feedback.categorised.v1\"",
    )
    .unwrap_or(0.0)
}

/// A GET of the API with the ops token, as JSON.
pub async fn get_json(app: &TestApp, path: &str, token: &str) -> serde_json::Value {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

/// Waits until the service counted `n` mentions (the handler observes the pipeline
/// latency only after a mention was counted and its action raised or updated) and its
/// stored evidence caught up with them.
pub async fn counted(app: &TestApp, n: usize) {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let text = closeloop_testkit::get_text(&app.url("/metrics")).await;
            let done = metric(
                &text,
                "closeloop_pipeline_latency_seconds_count",
                "stage=\"counted\"",
            )
            .is_some_and(|count| count >= n as f64)
                && metric(&text, "closeloop_trends_evidence_pending_themes", "") == Some(0.0);
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("every mention counted within 30 s");
}

/// Each `(query, pointer)` of `path` is a 400 problem naming `pointer`, and `path` wants
/// the ops token.
pub async fn assert_bad_queries(app: &TestApp, path: &str, token: &str, cases: &[(&str, &str)]) {
    for (query, pointer) in cases {
        let response = app
            .client
            .get(app.url(&format!("{path}?{query}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
        let problem: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(problem["errors"][0]["pointer"], *pointer, "{problem}");
    }
    let unauthorised = app.client.get(app.url(path)).send().await.expect("request");
    assert_eq!(unauthorised.status(), 401);
}
