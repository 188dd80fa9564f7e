//! The at-least-once consumer loop, written once for every service (the pattern of
//! rust-rdkafka's `at_least_once.rs`): consume, handle, and only then store the offset,
//! which librdkafka commits in the background and once more on shutdown.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use closeloop_events::{decode, topics, DeadLetter, Envelope, Event};
use closeloop_telemetry::cpu::cpu_timed;
use futures::future::join_all;
use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{backoff, BusError, BusMetrics, Journal, Publisher, TRACEPARENT_HEADER};

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub group_id: String,
    /// First wait before retrying a transient failure; doubles up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Records taken from the client's queue and handled together: records with one key
    /// in order, different keys concurrently (or as one batch by a batching handler).
    /// 1 handles strictly one at a time.
    pub max_in_flight: usize,
    /// ...and at most about this many payload bytes.
    pub max_batch_bytes: usize,
    /// Set to true once the consumer has joined its group (its first assignment, even
    /// an empty one, arrived): what a service's readiness waits for.
    pub joined: Option<tokio::sync::watch::Sender<bool>>,
    /// The embedded broker's journal, told how far this group has processed.
    pub journal: Option<Journal>,
}

impl ConsumerConfig {
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            max_in_flight: 256,
            max_batch_bytes: 4 * 1024 * 1024,
            joined: None,
            journal: None,
        }
    }
}

/// A decoded record with where it came from.
#[derive(Debug, Clone)]
pub struct Incoming<E> {
    pub envelope: Envelope<E>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// W3C trace context of the producer, to pass on to what this record causes.
    pub traceparent: Option<String>,
}

/// Why a handler did not succeed, which decides what the loop does next.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (database down, broker busy): the record is retried with backoff
    /// and never skipped.
    #[error("transient: {0}")]
    Transient(Box<dyn std::error::Error + Send + Sync>),
    /// Can never succeed (invalid content): the record goes to the dead-letter topic.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandlerError {
    pub fn transient(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        HandlerError::Transient(error.into())
    }
    pub fn permanent(reason: impl std::fmt::Display) -> Self {
        HandlerError::Permanent(reason.to_string())
    }
}

/// What a service does with each record of one topic.
pub trait Handler: Send + Sync + 'static {
    type Event: Event;

    /// Whether the loop hands fetched records over together, to [`Handler::handle_batch`].
    const BATCHES: bool = false;

    /// Must be idempotent: after a crash the same record may be handled again.
    fn handle(
        &self,
        incoming: &Incoming<Self::Event>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Handles records of many keys at once (each key's records in offset order), for a
    /// handler with `BATCHES`: `Ok` only when every record's effects are durable. A
    /// transient error retries the whole batch (so it must be idempotent like `handle`);
    /// a permanent one hands the records to [`Handler::handle`] one by one, so only the
    /// poison record goes to the dead-letter topic.
    fn handle_batch(
        &self,
        batch: &[Incoming<Self::Event>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async move {
            for incoming in batch {
                self.handle(incoming).await?;
            }
            Ok(())
        }
    }

    /// This consumer was just given `partitions` of the topic (at start or in a
    /// rebalance), before any of their records reaches [`Handler::handle`]. A handler that
    /// keeps state per key rebuilds it here from its store: the previous owner may have
    /// handled records this instance never saw. A transient error is retried; a permanent
    /// one stops the consumer.
    fn partitions_assigned(
        &self,
        partitions: &[i32],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = partitions;
        async { Ok(()) }
    }
}

/// Consumes `H::Event::TOPIC` in consumer group `config.group_id` until `shutdown` is
/// cancelled, then commits what was processed and returns.
pub async fn run_consumer<H: Handler>(
    config: ConsumerConfig,
    handler: H,
    dead_letters: Publisher,
    metrics: BusMetrics,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let topic = H::Event::TOPIC;
    let context = GroupContext {
        group: config.group_id.clone(),
        lag: metrics.consumer_lag.clone(),
        changes: Mutex::new(Vec::new()),
        joined: config.joined.clone(),
    };
    let consumer: StreamConsumer<GroupContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // Offsets are stored by hand, after the handler succeeded.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("statistics.interval.ms", "5000")
        .create_with_context(context)?;
    let consumer = ClosesOffRuntime(Some(consumer));
    if let Some(journal) = &config.journal {
        journal.consumes(&config.group_id, topic);
    }
    consumer.subscribe(&[topic])?;
    tracing::info!(topic, group = %config.group_id, "consumer started");
    // Every series of the topic exists from the start (at 0), so rate() and the alerts
    // see it before its first failure rather than only after.
    for counter in [
        &metrics.consumed,
        &metrics.failed,
        &metrics.dead_lettered,
        &metrics.retries,
    ] {
        counter.with_label_values(&[topic]);
    }

    // The series every batch adds to, looked up once rather than per batch.
    let batch_records = metrics.batch_records.with_label_values(&[topic]);
    let handler_cpu = metrics
        .handler_cpu_seconds
        .with_label_values(&[H::Event::TOPIC]);

    let dead_letter_topic = topics::dead_letter_of(topic);
    let record = Record {
        config: &config,
        handler: &handler,
        dead_letters: &dead_letters,
        dead_letter_topic: &dead_letter_topic,
        shutdown: &shutdown,
        metrics: &metrics,
    };
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = consumer.recv() => message,
        };
        // Rebalances happen inside `recv`: what they revoked leaves the batch (its next
        // owner handles it), what they assigned is announced to the handler below.
        let mut batch: Vec<BorrowedMessage<'_>> = Vec::new();
        let mut assigned: BTreeSet<i32> = BTreeSet::new();
        apply_ownership_changes(&consumer, &mut batch, &mut assigned);
        match message {
            Ok(message) => batch.push(message),
            Err(error) => {
                // Broker trouble surfaces here; librdkafka reconnects by itself.
                tracing::warn!(topic, %error, "consumer error");
                metrics.failed.with_label_values(&[topic]).inc();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Whatever else is already fetched joins the batch; nothing waits for more.
        let mut bytes: usize = batch.iter().map(payload_len).sum();
        while !batch.is_empty()
            && batch.len() < config.max_in_flight.max(1)
            && bytes < config.max_batch_bytes
        {
            let next = consumer.recv().now_or_never();
            apply_ownership_changes(&consumer, &mut batch, &mut assigned);
            match next {
                Some(Ok(message)) => {
                    bytes += payload_len(&message);
                    batch.push(message);
                }
                Some(Err(error)) => {
                    tracing::warn!(topic, %error, "consumer error");
                    metrics.failed.with_label_values(&[topic]).inc();
                    break;
                }
                None => break,
            }
        }
        if !assigned.is_empty() {
            let partitions: Vec<i32> = assigned.into_iter().collect();
            if !announce_assignment(&record, &partitions).await? {
                break; // shutdown while retrying: nothing of the batch was handled
            }
        }
        if batch.is_empty() {
            continue;
        }
        batch_records.observe(batch.len() as f64);
        let cpu = handler_cpu.clone();
        let handled = if H::BATCHES {
            cpu_timed(handle_together(&record, &batch), cpu).await
        } else {
            cpu_timed(handle_batch(&record, &batch), cpu).await
        };
        // Offsets are stored only up to the first record of each partition that was not
        // handled, so a commit never passes over unprocessed work.
        let mut blocked: HashSet<i32> = HashSet::new();
        let mut last_handled: HashMap<i32, &BorrowedMessage<'_>> = HashMap::new();
        for (message, done) in batch.iter().zip(&handled) {
            if !done {
                blocked.insert(message.partition());
            } else if !blocked.contains(&message.partition()) {
                last_handled.insert(message.partition(), message);
            }
        }
        for message in last_handled.values() {
            if let Err(error) = consumer.store_offset_from_message(message) {
                // The partition was revoked meanwhile; its next owner processes the
                // records again, which idempotent handlers allow.
                tracing::warn!(topic, %error, "could not store offset");
            } else if let Some(journal) = &config.journal {
                journal.processed(
                    &config.group_id,
                    topic,
                    message.partition(),
                    message.offset() + 1,
                );
            }
        }
        if !blocked.is_empty() {
            break; // only shutdown leaves a record unhandled
        }
    }

    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(topic, %error, "final commit failed"),
    }
    // Leaving the group cleanly lets a successor take the partitions at once; it is
    // waited for here, on a blocking thread, but not for ever.
    let mut consumer = consumer;
    if let Some(consumer) = consumer.0.take() {
        let closed = tokio::task::spawn_blocking(move || drop(consumer));
        if tokio::time::timeout(Duration::from_secs(15), closed)
            .await
            .is_err()
        {
            tracing::warn!(topic, "consumer did not close within 15 s");
        }
    }
    tracing::info!(topic, group = %config.group_id, "consumer stopped");
    Ok(())
}

fn payload_len(message: &BorrowedMessage<'_>) -> usize {
    message.payload_len() + message.key().map_or(0, <[u8]>::len)
}

/// A partition assignment or revocation, noted by the rebalance callback.
#[derive(Debug)]
enum OwnershipChange {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Applies the rebalances that happened in the last `recv`: records fetched from a
/// revoked partition are dropped unhandled (handling them now could race its new owner,
/// which rebuilds its state from the store), and newly assigned partitions are collected
/// to be announced to the handler.
fn apply_ownership_changes(
    consumer: &StreamConsumer<GroupContext>,
    batch: &mut Vec<BorrowedMessage<'_>>,
    assigned: &mut BTreeSet<i32>,
) {
    for change in consumer.context().take_changes() {
        match change {
            OwnershipChange::Revoked(partitions) => {
                batch.retain(|message| !partitions.contains(&message.partition()));
                assigned.retain(|partition| !partitions.contains(partition));
            }
            OwnershipChange::Assigned(partitions) => assigned.extend(partitions),
        }
    }
}

/// Tells the handler about newly assigned partitions, retrying transient failures.
/// False when shutdown came first.
async fn announce_assignment<H: Handler>(
    record: &Record<'_, H>,
    partitions: &[i32],
) -> Result<bool, BusError> {
    let topic = H::Event::TOPIC;
    let mut attempt = 0u32;
    loop {
        match record.handler.partitions_assigned(partitions).await {
            Ok(()) => return Ok(true),
            Err(HandlerError::Permanent(reason)) => {
                return Err(BusError::Assignment {
                    topic: topic.to_owned(),
                    reason,
                })
            }
            Err(HandlerError::Transient(error)) => {
                record.metrics.retries.with_label_values(&[topic]).inc();
                let wait = backoff(attempt, record.config.retry_base, record.config.retry_max);
                tracing::warn!(topic, ?partitions, attempt, %error, "could not take over partitions, will retry");
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = record.shutdown.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// A consumer whose close never runs on an async worker. Closing waits for the group
/// (leave, final commit) and can block for a session timeout or hang outright in
/// librdkafka (rust-rdkafka#509); when the loop's task is aborted, the consumer is
/// handed to a thread of its own to close there.
pub(crate) struct ClosesOffRuntime<C: ConsumerContext + 'static = GroupContext>(
    pub(crate) Option<StreamConsumer<C>>,
);

impl<C: ConsumerContext + 'static> std::ops::Deref for ClosesOffRuntime<C> {
    type Target = StreamConsumer<C>;
    fn deref(&self) -> &Self::Target {
        // Taken only at the end of the loop, after its last use.
        self.0.as_ref().expect("consumer is open")
    }
}

impl<C: ConsumerContext + 'static> Drop for ClosesOffRuntime<C> {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            // If no thread can be started, it closes here after all.
            let _ = std::thread::Builder::new()
                .name("consumer-close".into())
                .spawn(move || drop(consumer));
        }
    }
}

/// What handling one record needs, borrowed from the consumer loop.
struct Record<'a, H> {
    config: &'a ConsumerConfig,
    handler: &'a H,
    dead_letters: &'a Publisher,
    dead_letter_topic: &'a str,
    shutdown: &'a CancellationToken,
    metrics: &'a BusMetrics,
}

/// Handles a batch: one lane per key, each in offset order, the lanes concurrently (a
/// key is what must stay ordered: a customer, a theme). Returns, per record of `batch`,
/// whether it was handled (or dead-lettered); false only when shutdown interrupted it.
async fn handle_batch<H: Handler>(
    record: &Record<'_, H>,
    batch: &[BorrowedMessage<'_>],
) -> Vec<bool> {
    let mut handled = vec![false; batch.len()];
    for (index, done) in handle_in_lanes(record, batch, 0..batch.len()).await {
        handled[index] = done;
    }
    handled
}

/// Handles the records of `batch` at `indices` in per-key lanes; gives back, per index
/// it got to, whether that record was handled (a lane stops at its first failure).
async fn handle_in_lanes<H: Handler>(
    record: &Record<'_, H>,
    batch: &[BorrowedMessage<'_>],
    indices: impl IntoIterator<Item = usize>,
) -> Vec<(usize, bool)> {
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut lane_of_key: HashMap<(i32, Option<&[u8]>), usize> = HashMap::new();
    for index in indices {
        let message = &batch[index];
        let lane = *lane_of_key
            .entry((message.partition(), message.key()))
            .or_insert_with(|| {
                lanes.push(Vec::new());
                lanes.len() - 1
            });
        lanes[lane].push(index);
    }
    let outcomes = join_all(lanes.into_iter().map(|lane| async move {
        let mut outcomes = Vec::with_capacity(lane.len());
        for index in lane {
            let done = handle_record(record, &batch[index]).await;
            outcomes.push((index, done));
            if !done {
                break; // the rest of the lane waits for the next owner or start
            }
        }
        outcomes
    }))
    .await;
    outcomes.into_iter().flatten().collect()
}

/// Handles a fetched batch with [`Handler::handle_batch`]: records that cannot be decoded
/// go to the dead-letter topic alone, the rest is handed over at once and retried as a
/// whole while the failure is transient. A permanent failure falls back to the
/// per-record lanes, so the poison record is found and dead-lettered alone. Returns, per
/// record, whether it was handled; all false when shutdown interrupted the retries.
async fn handle_together<H: Handler>(
    record: &Record<'_, H>,
    batch: &[BorrowedMessage<'_>],
) -> Vec<bool> {
    let started = Instant::now();
    let mut handled = vec![false; batch.len()];
    let mut decoded: Vec<Incoming<H::Event>> = Vec::with_capacity(batch.len());
    let mut decoded_index: Vec<usize> = Vec::with_capacity(batch.len());
    for (index, message) in batch.iter().enumerate() {
        match incoming_of::<H::Event>(message) {
            Ok(incoming) => {
                decoded.push(incoming);
                decoded_index.push(index);
            }
            Err(reason) => {
                if !dead_letter_counted(record, message, &reason).await {
                    return handled;
                }
                record
                    .metrics
                    .consumed
                    .with_label_values(&[H::Event::TOPIC])
                    .inc();
                handled[index] = true;
            }
        }
    }
    if decoded.is_empty() {
        return handled;
    }
    let topic = H::Event::TOPIC;
    let span = tracing::info_span!("batch", topic, records = decoded.len());
    let mut attempt = 0u32;
    let outcome = async {
        loop {
            match record.handler.handle_batch(&decoded).await {
                Ok(()) => return Some(true),
                Err(HandlerError::Permanent(reason)) => {
                    tracing::warn!(%reason, "batch refused; handling its records one by one");
                    return Some(false);
                }
                Err(HandlerError::Transient(error)) => {
                    record.metrics.retries.with_label_values(&[topic]).inc();
                    let wait =
                        backoff(attempt, record.config.retry_base, record.config.retry_max);
                    tracing::warn!(attempt, %error, retry_in_ms = wait.as_millis() as u64, "batch failed, will retry");
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = record.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
    .instrument(span)
    .await;
    match outcome {
        None => handled,
        Some(true) => {
            let seconds = started.elapsed().as_secs_f64();
            record
                .metrics
                .consumed
                .with_label_values(&[topic])
                .inc_by(decoded.len() as u64);
            let histogram = record
                .metrics
                .processing_seconds
                .with_label_values(&[topic]);
            for index in decoded_index {
                histogram.observe(seconds);
                handled[index] = true;
            }
            handled
        }
        Some(false) => {
            for (index, done) in handle_in_lanes(record, batch, decoded_index).await {
                handled[index] = done;
            }
            handled
        }
    }
}

/// Dead-letters a record and counts it; false when shutdown came first.
async fn dead_letter_counted<H: Handler>(
    record: &Record<'_, H>,
    message: &BorrowedMessage<'_>,
    reason: &str,
) -> bool {
    let published = dead_letter(
        record.dead_letters,
        record.dead_letter_topic,
        &record.config.group_id,
        message,
        reason,
        record.shutdown,
        record.config,
    )
    .await;
    if published {
        let topic = message.topic();
        record
            .metrics
            .dead_lettered
            .with_label_values(&[topic])
            .inc();
    }
    published
}

/// Handles one record (retrying transient failures, dead-lettering permanent ones) and
/// counts it; false when shutdown came first.
async fn handle_record<H: Handler>(record: &Record<'_, H>, message: &BorrowedMessage<'_>) -> bool {
    let topic = message.topic();
    let started = Instant::now();
    let outcome = process(
        record.config,
        record.handler,
        message,
        record.shutdown,
        record.metrics,
    )
    .await;
    match outcome {
        Processed::Done => {}
        Processed::DeadLetter(reason) => {
            if !dead_letter_counted(record, message, &reason).await {
                return false; // shutting down before the dead letter was written
            }
        }
        Processed::Interrupted => return false,
    }
    record.metrics.consumed.with_label_values(&[topic]).inc();
    record
        .metrics
        .processing_seconds
        .with_label_values(&[topic])
        .observe(started.elapsed().as_secs_f64());
    true
}

enum Processed {
    Done,
    DeadLetter(String),
    /// Shutdown came while waiting to retry: the record stays uncommitted.
    Interrupted,
}

async fn process<H: Handler>(
    config: &ConsumerConfig,
    handler: &H,
    message: &BorrowedMessage<'_>,
    shutdown: &CancellationToken,
    metrics: &BusMetrics,
) -> Processed {
    let topic = message.topic();
    let incoming = match incoming_of::<H::Event>(message) {
        Ok(incoming) => incoming,
        Err(reason) => return Processed::DeadLetter(reason),
    };
    // Every log line of the handler carries the trace id, so one feedback can be
    // followed through all services by grepping for it.
    let span = tracing::info_span!(
        "record",
        topic,
        partition = incoming.partition,
        offset = incoming.offset,
        trace_id = incoming
            .traceparent
            .as_deref()
            .map(crate::trace_id)
            .unwrap_or_default(),
    );
    if let Some(traceparent) = &incoming.traceparent {
        closeloop_telemetry::continue_trace(&span, traceparent);
    }
    async {
        let outcome = handle_with_retries(config, handler, &incoming, shutdown, metrics).await;
        if let Processed::Done = outcome {
            // In the record's span: with `closeloop_bus=debug`, one line per service
            // and record, carrying the trace id.
            tracing::debug!(event_id = %incoming.envelope.event_id, "record handled");
        }
        outcome
    }
    .instrument(span)
    .await
}

/// The record decoded, with where it came from; the reason when it cannot be decoded.
pub(crate) fn incoming_of<E: Event>(message: &BorrowedMessage<'_>) -> Result<Incoming<E>, String> {
    let envelope =
        decode::<E>(message.payload().unwrap_or_default()).map_err(|error| error.to_string())?;
    let traceparent = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == TRACEPARENT_HEADER)
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
            .map(str::to_owned)
    });
    Ok(Incoming {
        envelope,
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        traceparent,
    })
}

async fn handle_with_retries<H: Handler>(
    config: &ConsumerConfig,
    handler: &H,
    incoming: &Incoming<H::Event>,
    shutdown: &CancellationToken,
    metrics: &BusMetrics,
) -> Processed {
    let topic = incoming.topic.as_str();
    let mut attempt = 0u32;
    loop {
        match handler.handle(incoming).await {
            Ok(()) => return Processed::Done,
            Err(HandlerError::Permanent(reason)) => return Processed::DeadLetter(reason),
            Err(HandlerError::Transient(error)) => {
                metrics.retries.with_label_values(&[topic]).inc();
                let wait = backoff(attempt, config.retry_base, config.retry_max);
                tracing::warn!(
                    topic,
                    partition = incoming.partition,
                    offset = incoming.offset,
                    attempt,
                    %error,
                    retry_in_ms = wait.as_millis() as u64,
                    "handler failed, will retry"
                );
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = shutdown.cancelled() => return Processed::Interrupted,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Writes the record to the dead-letter topic, retrying until the broker took it (a
/// record is never dropped). Returns false if shutdown interrupted the retries.
async fn dead_letter(
    publisher: &Publisher,
    dead_letter_topic: &str,
    group: &str,
    message: &BorrowedMessage<'_>,
    reason: &str,
    shutdown: &CancellationToken,
    config: &ConsumerConfig,
) -> bool {
    tracing::warn!(
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        reason,
        "dead-lettering record"
    );
    let record = DeadLetter {
        origin_topic: message.topic().to_owned(),
        origin_partition: message.partition(),
        origin_offset: message.offset(),
        consumer_group: group.to_owned(),
        error: reason.to_owned(),
        payload: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
        failed_at: Utc::now(),
    };
    let payload = match serde_json::to_vec(&record) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(%error, "dead letter could not be encoded");
            return true;
        }
    };
    let key = message
        .key()
        .and_then(|key| std::str::from_utf8(key).ok())
        .unwrap_or_default();
    let mut attempt = 0;
    loop {
        match publisher
            .publish_bytes(dead_letter_topic, key, &payload, None)
            .await
        {
            Ok(_) => return true,
            Err(error) => {
                tracing::warn!(%error, attempt, "could not write dead letter, will retry");
                attempt += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff(attempt, config.retry_base, config.retry_max)) => {}
                }
            }
        }
    }
}

/// The consumer's view of its group: publishes librdkafka's per-partition lag as a gauge
/// and notes partition assignments and revocations for the loop.
pub(crate) struct GroupContext {
    group: String,
    lag: prometheus::IntGaugeVec,
    /// Filled by the rebalance callbacks (inside `recv`), drained by the loop right after.
    changes: Mutex<Vec<OwnershipChange>>,
    joined: Option<tokio::sync::watch::Sender<bool>>,
}

impl GroupContext {
    fn note(&self, change: OwnershipChange) {
        if let Some(joined) = &self.joined {
            joined.send_replace(true);
        }
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(change);
    }

    fn take_changes(&self) -> Vec<OwnershipChange> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<i32> {
    list.elements()
        .iter()
        .map(|element| element.partition())
        .collect()
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, partition_stats) in &stats.partitions {
                // -1 is librdkafka's internal "unassigned" partition; a negative lag means
                // not known yet (no committed offset or watermark).
                if *partition < 0 || partition_stats.consumer_lag < 0 {
                    continue;
                }
                self.lag
                    .with_label_values(&[topic, &partition.to_string(), &self.group])
                    .set(partition_stats.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions = partitions_of(list);
            tracing::info!(group = %self.group, ?partitions, "partitions revoked");
            // Everything handled so far has its offset stored: commit it before the
            // partitions go, so their next owner starts where this one stopped.
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(error) => {
                    tracing::warn!(group = %self.group, %error, "commit on revocation failed")
                }
            }
            // The gauge would otherwise keep the last lag this instance saw.
            for element in list.elements() {
                let partition = element.partition().to_string();
                let _ = self
                    .lag
                    .remove_label_values(&[element.topic(), &partition, &self.group]);
            }
            self.note(OwnershipChange::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = partitions_of(list);
                tracing::info!(group = %self.group, ?partitions, "partitions assigned");
                self.note(OwnershipChange::Assigned(partitions));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(group = %self.group, %error, "rebalance failed")
            }
        }
    }
}
