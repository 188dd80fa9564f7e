//! The bus against the embedded broker: acknowledged publishing, the at-least-once
//! consumer loop, dead-lettering and retries.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use closeloop_bus::{
    run_consumer, BusMetrics, ConsumerConfig, EmbeddedBroker, Handler, HandlerError, Incoming,
    Publisher, PublisherConfig, Restored, TopicSpec,
};
use closeloop_events::{topics, DeadLetter, Envelope, ErasureRequest, ErasureScope};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
    /// Fail transiently this many times before succeeding.
    transient_failures: Arc<AtomicU32>,
}

impl Handler for Recorder {
    type Event = ErasureRequest;
    async fn handle(&self, incoming: &Incoming<ErasureRequest>) -> Result<(), HandlerError> {
        let customer = &incoming.envelope.data.customer_id;
        if customer == "poison" {
            return Err(HandlerError::permanent("customer id is poison"));
        }
        if self
            .transient_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(HandlerError::transient("database is down"));
        }
        self.seen.lock().unwrap().push(customer.clone());
        Ok(())
    }
}

fn erasure(customer: &str) -> Envelope<ErasureRequest> {
    Envelope::new(ErasureRequest {
        customer_id: customer.into(),
        source: "test".into(),
        requested_at: Utc::now(),
        scope: ErasureScope::All,
    })
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_retries_and_dead_letters() {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(2)).expect("broker");
    let brokers = broker.bootstrap_servers().to_owned();
    let metrics = BusMetrics::unregistered();
    let publisher = Publisher::new(&PublisherConfig::new(&brokers), metrics.clone()).unwrap();

    for customer in ["a", "poison", "b", "c"] {
        publisher
            .publish(&erasure(customer), None)
            .await
            .expect("acked");
    }
    // Garbage straight onto the topic: must be dead-lettered, not crash the loop.
    publisher
        .publish_bytes(topics::PRIVACY_ERASURE, "x", b"{not json", None)
        .await
        .unwrap();

    let recorder = Recorder::default();
    recorder.transient_failures.store(2, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let mut config = ConsumerConfig::new(&brokers, "test-group");
    config.retry_base = Duration::from_millis(10);
    let consumer = tokio::spawn(run_consumer(
        config,
        recorder.clone(),
        publisher.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    wait_for(|| recorder.seen.lock().unwrap().len() == 3).await;
    let mut seen = recorder.seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        ["a", "b", "c"],
        "every good record once, none skipped"
    );
    assert_eq!(
        metrics
            .retries
            .with_label_values(&[topics::PRIVACY_ERASURE])
            .get(),
        2
    );
    wait_for(|| {
        metrics
            .dead_lettered
            .with_label_values(&[topics::PRIVACY_ERASURE])
            .get()
            == 2
    })
    .await;
    shutdown.cancel();
    consumer.await.unwrap().unwrap();

    // The dead-letter topic holds both bad records with their reasons.
    let reader: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader
        .subscribe(&[&topics::dead_letter_of(topics::PRIVACY_ERASURE)])
        .unwrap();
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("dead letter arrives")
            .unwrap();
        let record: DeadLetter = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(record.origin_topic, topics::PRIVACY_ERASURE);
        reasons.push(record.error);
    }
    assert!(
        reasons.iter().any(|r| r.contains("invalid JSON")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("poison")), "{reasons:?}");

    // A restarted consumer in the same group finds everything committed: nothing again.
    let again = Recorder::default();
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        ConsumerConfig::new(&brokers, "test-group"),
        again.clone(),
        publisher.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    publisher.publish(&erasure("d"), None).await.unwrap();
    wait_for(|| !again.seen.lock().unwrap().is_empty()).await;
    assert_eq!(*again.seen.lock().unwrap(), ["d"]);
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
}

/// Publishes `per_customer` erasures for each of `customers` keys, the sequence number
/// in `source`, round-robin over the keys; a poison record after round `poison_after`.
async fn publish_sequenced(
    publisher: &Publisher,
    customers: usize,
    per_customer: u32,
    poison_after: Option<u32>,
) {
    for sequence in 0..per_customer {
        for customer in 0..customers {
            let mut event = erasure(&format!("customer-{customer}"));
            event.data.source = sequence.to_string();
            publisher.publish(&event, None).await.expect("acked");
        }
        if poison_after == Some(sequence) {
            publisher.publish(&erasure("poison"), None).await.unwrap();
        }
    }
}

/// Every record of [`publish_sequenced`] handled once, each key's in order.
fn assert_each_once_in_order(seen: &[(String, u32)], customers: usize, per_customer: u32) {
    assert_eq!(
        seen.len(),
        customers * per_customer as usize,
        "each good record once, none skipped"
    );
    for customer in 0..customers {
        let key = format!("customer-{customer}");
        let order: Vec<u32> = seen
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, sequence)| *sequence)
            .collect();
        assert_eq!(
            order,
            (0..per_customer).collect::<Vec<_>>(),
            "{key} in order"
        );
    }
}

/// Records what it handled per key, in order, and how many ran at once.
#[derive(Clone, Default)]
struct OrderRecorder {
    seen: Arc<Mutex<Vec<(String, u32)>>>,
    running: Arc<AtomicU32>,
    most_at_once: Arc<AtomicU32>,
}

impl Handler for OrderRecorder {
    type Event = ErasureRequest;
    async fn handle(&self, incoming: &Incoming<ErasureRequest>) -> Result<(), HandlerError> {
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(running, Ordering::SeqCst);
        let request = &incoming.envelope.data;
        let sequence: u32 = request.source.parse().expect("sequence in source");
        // Uneven work, so concurrent lanes would overtake each other.
        tokio::time::sleep(Duration::from_millis(u64::from(sequence % 7))).await;
        self.seen
            .lock()
            .unwrap()
            .push((request.customer_id.clone(), sequence));
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_one_key_stay_in_order_while_keys_run_concurrently() {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(2)).expect("broker");
    let brokers = broker.bootstrap_servers().to_owned();
    let metrics = BusMetrics::unregistered();
    let publisher = Publisher::new(&PublisherConfig::new(&brokers), metrics.clone()).unwrap();
    let customers = 12;
    let per_customer = 25u32;
    publish_sequenced(&publisher, customers, per_customer, None).await;

    let recorder = OrderRecorder::default();
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        ConsumerConfig::new(&brokers, "order-group"),
        recorder.clone(),
        publisher.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let total = customers * per_customer as usize;
    wait_for(|| recorder.seen.lock().unwrap().len() >= total).await;
    shutdown.cancel();
    consumer.await.unwrap().unwrap();

    let seen = recorder.seen.lock().unwrap().clone();
    assert_each_once_in_order(&seen, customers, per_customer);
    assert!(
        recorder.most_at_once.load(Ordering::SeqCst) > 1,
        "different keys were handled concurrently"
    );
}

/// The embedded broker made durable: what a consumer group had not processed when the
/// broker went away is back after a restart, in order, with the group's position; what
/// every group had processed is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_broker_gives_back_what_its_groups_had_not_processed() {
    let dir = std::env::temp_dir().join(format!("closeloop-durable-{}", uuid::Uuid::now_v7()));
    let topics = TopicSpec::all(2);
    let group = "durable-test";
    let consume = |broker: &EmbeddedBroker, recorder: Recorder, shutdown: CancellationToken| {
        let metrics = BusMetrics::unregistered();
        let config = ConsumerConfig {
            journal: broker.journal(),
            ..ConsumerConfig::new(broker.bootstrap_servers(), group)
        };
        let publisher = journaled(broker);
        tokio::spawn(run_consumer(config, recorder, publisher, metrics, shutdown))
    };
    {
        let (broker, restored) = EmbeddedBroker::start_durable(1, &topics, &dir)
            .await
            .expect("broker");
        assert_eq!(restored, Restored::default(), "a new journal is empty");
        let publisher = journaled(&broker);
        for customer in ["a", "b", "c"] {
            publisher.publish(&erasure(customer), None).await.unwrap();
        }
        let recorder = Recorder::default();
        let shutdown = CancellationToken::new();
        let consumer = consume(&broker, recorder.clone(), shutdown.clone());
        wait_for(|| recorder.seen.lock().unwrap().len() == 3).await;
        shutdown.cancel();
        consumer.await.unwrap().unwrap();
        // Published after the group stopped: nobody has processed these.
        for customer in ["d", "e"] {
            publisher.publish(&erasure(customer), None).await.unwrap();
        }
    }

    let (broker, restored) = EmbeddedBroker::start_durable(1, &topics, &dir)
        .await
        .expect("restarted broker");
    assert_eq!(
        (restored.records, restored.dropped, restored.groups),
        (2, 3, 1)
    );
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let consumer = consume(&broker, recorder.clone(), shutdown.clone());
    wait_for(|| recorder.seen.lock().unwrap().len() >= 2).await;
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    let mut seen = recorder.seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["d", "e"]);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

fn journaled(broker: &EmbeddedBroker) -> Publisher {
    Publisher::new(
        &PublisherConfig {
            journal: broker.journal(),
            ..PublisherConfig::new(broker.bootstrap_servers())
        },
        BusMetrics::unregistered(),
    )
    .expect("publisher")
}

/// A batching handler: takes a fetched batch whole, all or nothing, like a service that
/// writes a batch in one transaction.
#[derive(Clone, Default)]
struct BatchRecorder {
    seen: Arc<Mutex<Vec<(String, u32)>>>,
    batch_sizes: Arc<Mutex<Vec<usize>>>,
    transient_failures: Arc<AtomicU32>,
}

impl BatchRecorder {
    fn note(&self, incoming: &Incoming<ErasureRequest>) {
        let request = &incoming.envelope.data;
        let sequence: u32 = request.source.parse().expect("sequence in source");
        self.seen
            .lock()
            .unwrap()
            .push((request.customer_id.clone(), sequence));
    }
}

impl Handler for BatchRecorder {
    type Event = ErasureRequest;
    const BATCHES: bool = true;

    async fn handle(&self, incoming: &Incoming<ErasureRequest>) -> Result<(), HandlerError> {
        if incoming.envelope.data.customer_id == "poison" {
            return Err(HandlerError::permanent("customer id is poison"));
        }
        self.note(incoming);
        Ok(())
    }

    async fn handle_batch(&self, batch: &[Incoming<ErasureRequest>]) -> Result<(), HandlerError> {
        if batch
            .iter()
            .any(|incoming| incoming.envelope.data.customer_id == "poison")
        {
            return Err(HandlerError::permanent("a poison record in the batch"));
        }
        if self
            .transient_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(HandlerError::transient("database is down"));
        }
        self.batch_sizes.lock().unwrap().push(batch.len());
        for incoming in batch {
            self.note(incoming);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batching_handler_gets_fetched_records_together_and_poison_still_goes_alone() {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(2)).expect("broker");
    let brokers = broker.bootstrap_servers().to_owned();
    let metrics = BusMetrics::unregistered();
    let publisher = Publisher::new(&PublisherConfig::new(&brokers), metrics.clone()).unwrap();
    let customers = 10;
    let per_customer = 30u32;
    publish_sequenced(&publisher, customers, per_customer, Some(per_customer / 2)).await;
    // Published before the consumer starts, so its first fetches return many records.
    let recorder = BatchRecorder::default();
    recorder.transient_failures.store(2, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let mut config = ConsumerConfig::new(&brokers, "batch-group");
    config.retry_base = Duration::from_millis(10);
    let consumer = tokio::spawn(run_consumer(
        config,
        recorder.clone(),
        publisher.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let total = customers * per_customer as usize;
    wait_for(|| recorder.seen.lock().unwrap().len() >= total).await;
    wait_for(|| {
        metrics
            .dead_lettered
            .with_label_values(&[topics::PRIVACY_ERASURE])
            .get()
            == 1
    })
    .await;
    shutdown.cancel();
    consumer.await.unwrap().unwrap();

    let seen = recorder.seen.lock().unwrap().clone();
    assert_each_once_in_order(&seen, customers, per_customer);
    let sizes = recorder.batch_sizes.lock().unwrap().clone();
    assert!(
        sizes.iter().any(|size| *size > 1),
        "records were handed over together: {sizes:?}"
    );
    // Each record, the poison one included, was fetched into exactly one batch, and the
    // histogram counted the batches, not the records.
    let batches = metrics
        .batch_records
        .with_label_values(&[topics::PRIVACY_ERASURE]);
    assert_eq!(batches.get_sample_sum(), (total + 1) as f64);
    assert!(
        batches.get_sample_count() < (total + 1) as u64,
        "batches: {}",
        batches.get_sample_count()
    );
    assert_eq!(
        metrics
            .retries
            .with_label_values(&[topics::PRIVACY_ERASURE])
            .get(),
        2,
        "a transient failure retried the batch"
    );
    assert_eq!(
        metrics
            .consumed
            .with_label_values(&[topics::PRIVACY_ERASURE])
            .get(),
        total as u64 + 1
    );
}

/// Handles nothing until the gate opens, then records like [`Recorder`].
#[derive(Clone)]
struct Gated {
    open: Arc<tokio::sync::Semaphore>,
    recorder: Recorder,
}

impl Handler for Gated {
    type Event = ErasureRequest;
    async fn handle(&self, incoming: &Incoming<ErasureRequest>) -> Result<(), HandlerError> {
        let _pass = self.open.acquire().await.map_err(HandlerError::transient)?;
        self.recorder.handle(incoming).await
    }
}

/// librdkafka's mock cluster deletes a partition's oldest records beyond ~5 MiB, read or
/// not: with a journal, publishers are held back before that, and nothing is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_wait_for_slow_consumers_instead_of_the_broker_dropping_records() {
    let dir = std::env::temp_dir().join(format!("closeloop-room-{}", uuid::Uuid::now_v7()));
    let (broker, _) = EmbeddedBroker::start_durable(1, &TopicSpec::all(1), &dir)
        .await
        .expect("broker");
    let gated = Gated {
        open: Arc::new(tokio::sync::Semaphore::new(0)),
        recorder: Recorder::default(),
    };
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        ConsumerConfig {
            journal: broker.journal(),
            ..ConsumerConfig::new(broker.bootstrap_servers(), "slow-group")
        },
        gated.clone(),
        journaled(&broker),
        BusMetrics::unregistered(),
        shutdown.clone(),
    ));
    let publisher = Publisher::new(
        &PublisherConfig {
            journal: broker.journal(),
            delivery_timeout: Duration::from_secs(2),
            ..PublisherConfig::new(broker.bootstrap_servers())
        },
        BusMetrics::unregistered(),
    )
    .expect("publisher");
    // 20 KiB records: the mock would start deleting after about 260 of them.
    let big = |n: usize| {
        let mut event = erasure(&format!("customer-{n}"));
        event.data.source = format!("{n}-{}", "x".repeat(20 * 1024));
        event
    };
    let mut published = 0;
    let refusal = loop {
        match publisher.publish(&big(published), None).await {
            Ok(_) => published += 1,
            Err(error) => break error.to_string(),
        }
        assert!(published < 1000, "never held back");
    };
    assert!(refusal.contains("consumers are behind"), "{refusal}");
    let client: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()
        .expect("client");
    let (low, high) = client
        .fetch_watermarks(topics::PRIVACY_ERASURE, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!(
        (low, high),
        (0, published as i64),
        "the broker kept every record"
    );

    // The consumer catches up: every record handled, none skipped, and there is room again.
    gated.open.add_permits(1 << 20);
    wait_for(|| gated.recorder.seen.lock().unwrap().len() == published).await;
    publisher
        .publish(&big(published), None)
        .await
        .expect("room again");
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
