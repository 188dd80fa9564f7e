//! Faults, in process: a service crashing mid-stream (its task aborted, so nothing is
//! committed on the way out), broker trouble from the mock cluster, poison records on
//! every consumed topic. Whatever happens, every event ingest accepted (202) is
//! categorised exactly once in the store, and bad records end up in a dead-letter topic.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use closeloop::stack::{ServiceConfigs, Stack};
use closeloop::up::local_defaults;
use closeloop_bus::{EmbeddedBroker, Fault, KafkaArgs, TopicSpec};
use closeloop_events::topics;
use closeloop_store::testing::database_args;
use closeloop_tests::{
    assert_categorised_exactly_once, complaint, init_logs, post_complaints, read_topic,
    spawn_ingest, wait_until_posted,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const KEY: &str = "fault-key";

fn feedback(n: usize) -> Value {
    complaint(n, 37)
}

/// Ingest and categorise on `brokers`, each a task that can be aborted like a crash.
struct Pipeline {
    ingest_url: String,
    categorise: closeloop_categorise::Config,
    categorise_task: Option<(JoinHandle<()>, CancellationToken)>,
    _ingest_stop: CancellationToken,
}

impl Pipeline {
    async fn start(brokers: &str) -> Self {
        let (ingest_url, stop) = spawn_ingest(brokers, "faults", KEY).await;

        let mut categorise = closeloop_categorise::Config::parse_from(["categorise"]);
        categorise.kafka = KafkaArgs::new(brokers);
        categorise.database = database_args("categorise");
        categorise.http_addr = ([127, 0, 0, 1], 0).into();
        let mut pipeline = Self {
            ingest_url,
            categorise,
            categorise_task: None,
            _ingest_stop: stop,
        };
        pipeline.start_categorise().await;
        pipeline
    }

    async fn start_categorise(&mut self) {
        let service = closeloop_categorise::Service::build(self.categorise.clone())
            .await
            .expect("categorise builds");
        let stop = CancellationToken::new();
        let run = service.run_until_stopped(stop.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = run.await {
                panic!("categorise failed: {error}");
            }
        });
        self.categorise_task = Some((task, stop));
    }

    /// A crash: the task is dropped wherever it is, nothing is committed on the way out.
    async fn crash_categorise(&mut self) {
        if let Some((task, _stop)) = self.categorise_task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Posts `count` complaints, `concurrency` at a time; returns the accepted event ids
/// and every status that was not 202.
async fn post_all(
    url: &str,
    count: usize,
    concurrency: usize,
    progress: Arc<AtomicUsize>,
) -> (Vec<String>, Vec<u16>) {
    post_complaints(url, KEY, count, concurrency, 37, progress).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn categorise_crashing_mid_stream_loses_and_doubles_nothing() {
    init_logs();
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("broker");
    let mut pipeline = Pipeline::start(broker.bootstrap_servers()).await;
    let posted = Arc::new(AtomicUsize::new(0));
    let poster = {
        let (url, posted) = (pipeline.ingest_url.clone(), posted.clone());
        tokio::spawn(async move { post_all(&url, 600, 8, posted).await })
    };
    // Crash twice while the stream flows, restarting with the same database and group.
    for threshold in [150, 350] {
        wait_until_posted(&posted, threshold).await;
        pipeline.crash_categorise().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        pipeline.start_categorise().await;
    }
    let (accepted, refused) = poster.await.expect("poster");
    assert!(refused.is_empty(), "ingest refused: {refused:?}");
    assert_eq!(accepted.len(), 600);
    let unanswered =
        assert_categorised_exactly_once(&pipeline.categorise.database, &accepted).await;
    assert_eq!(unanswered, 0, "feedback stored that ingest did not accept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_trouble_loses_nothing_that_was_accepted() {
    init_logs();
    let broker = EmbeddedBroker::start(3, &TopicSpec::all(3)).expect("broker");
    let pipeline = Pipeline::start(broker.bootstrap_servers()).await;
    let posted = Arc::new(AtomicUsize::new(0));
    let poster = {
        let (url, posted) = (pipeline.ingest_url.clone(), posted.clone());
        tokio::spawn(async move { post_all(&url, 400, 8, posted).await })
    };
    wait_until_posted(&posted, 50).await;
    // Fetches and offset commits fail with retriable errors for a while. Produce requests
    // are not given injected errors: after a failed batch, the idempotent producer counts
    // it as written once a later batch of the partition is acknowledged, which a real
    // broker guarantees (it refuses the later batch as out of sequence) but the mock
    // cluster does not check, so the mock alone would lose the failed batch. Produce
    // failures come below from leadership moves and a broker going away, as on a real
    // cluster (tests/real_cluster.rs kills real brokers).
    broker
        .inject(Fault::RequestErrors(
            RDKafkaApiKey::Fetch,
            vec![
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            ],
        ))
        .expect("inject fetch errors");
    broker
        .inject(Fault::RequestErrors(
            RDKafkaApiKey::OffsetCommit,
            vec![
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            ],
        ))
        .expect("inject commit errors");
    wait_until_posted(&posted, 120).await;
    // Leadership moves.
    for partition in 0..3 {
        for topic in [topics::FEEDBACK_RAW, topics::FEEDBACK_CATEGORISED] {
            broker
                .inject(Fault::PartitionLeader {
                    topic: topic.into(),
                    partition,
                    broker: 1 + (partition + 1) % 3,
                })
                .expect("move leader");
        }
    }
    wait_until_posted(&posted, 200).await;
    // A broker goes away and comes back.
    broker.inject(Fault::BrokerDown(2)).expect("broker down");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.inject(Fault::BrokerUp(2)).expect("broker up");

    let (accepted, refused) = poster.await.expect("poster");
    // A request may be refused (503, retry later) while the broker is away, but never
    // half-accepted: what was refused is not in the store, what was accepted is.
    assert!(
        refused.iter().all(|status| *status == 503),
        "unexpected statuses: {refused:?}"
    );
    assert!(accepted.len() >= 300, "only {} accepted", accepted.len());
    let unanswered =
        assert_categorised_exactly_once(&pipeline.categorise.database, &accepted).await;
    assert_eq!(unanswered, 0, "feedback stored that ingest did not accept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_on_every_topic_are_dead_lettered_and_work_goes_on() {
    init_logs();
    let mut configs = ServiceConfigs::from_env(&database_args("shared")).with_ephemeral_ports();
    configs.ingest.database = database_args("ingest");
    configs.categorise.database = database_args("categorise");
    configs.trends.database = database_args("trends");
    configs.notify.database = database_args("notify");
    local_defaults(&mut configs, ([127, 0, 0, 1], 9).into());
    let stack = Stack::start_embedded(configs, 1, 1)
        .await
        .expect("stack starts");
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap_servers)
        .create()
        .expect("producer");

    let consumed = [
        topics::FEEDBACK_RAW,
        topics::FEEDBACK_CATEGORISED,
        topics::FEEDBACK_THEMES,
        topics::ACTIONS,
        topics::PRIVACY_ERASURE,
    ];
    let poison: [&[u8]; 3] = [
        b"\xff\xfe not even UTF-8",
        br#"{"schema": "something.else.v1", "event_id": "x"}"#,
        br#"{"schema": "feedback.raw.v1", "event_id": "0190b5a0-0000-7000-8000-000000000000", "occurred_at": "2026-11-25T10:00:00Z", "text": 42}"#,
    ];
    for topic in consumed {
        for payload in poison {
            producer
                .send(
                    FutureRecord::to(topic).key("poison").payload(payload),
                    Duration::from_secs(5),
                )
                .await
                .expect("poison produced");
        }
    }

    // The services keep going: a valid feedback after the poison goes all the way.
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/feedback", stack.ingest))
        .bearer_auth(closeloop::up::dev_key("shopdesk"))
        .json(&feedback(1))
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(response.status(), 202);
    let categorised = read_topic(
        &stack.bootstrap_servers,
        topics::FEEDBACK_CATEGORISED,
        4,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        categorised
            .iter()
            .any(|record| record["schema"] == "feedback.categorised.v1"),
        "the valid feedback was not categorised after the poison"
    );

    for topic in consumed {
        // Every consumer group of the topic dead-letters each poison record once.
        let groups = if topic == topics::PRIVACY_ERASURE {
            2
        } else {
            1
        };
        let dead = read_topic(
            &stack.bootstrap_servers,
            &topics::dead_letter_of(topic),
            poison.len() * groups,
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
        .await;
        assert!(
            dead.len() >= poison.len() * groups,
            "{topic}: {} dead letters, expected {}: {dead:?}",
            dead.len(),
            poison.len() * groups
        );
        for letter in &dead {
            assert_eq!(letter["origin_topic"], topic, "{letter}");
            assert!(
                letter["origin_offset"].is_i64(),
                "no origin offset: {letter}"
            );
            assert!(
                letter["error"].as_str().is_some_and(|e| !e.is_empty()),
                "no reason: {letter}"
            );
        }
    }
    stack.stop().await;
}
