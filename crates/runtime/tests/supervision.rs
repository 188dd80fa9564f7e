//! The skeleton's promises, on the in-process broker: ready only once every consumer
//! joined its group, and the first failing task stops the whole service with its error.

use std::time::{Duration, Instant};

use closeloop_bus::{
    EmbeddedBroker, Handler, HandlerError, Incoming, KafkaArgs, PublisherConfig, TopicSpec,
};
use closeloop_events::{Envelope, Feedback};
use closeloop_runtime::{Error, Foundation, Spec};
use closeloop_store::{testing::sqlite_url, DatabaseArgs};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Tells the test each record it handled.
struct Probe(mpsc::UnboundedSender<()>);

impl Handler for Probe {
    type Event = Feedback;
    async fn handle(&self, _incoming: &Incoming<Feedback>) -> Result<(), HandlerError> {
        let _ = self.0.send(());
        Ok(())
    }
}

async fn foundation(brokers: &str) -> Foundation {
    Foundation::start(Spec {
        name: "probe",
        database: &DatabaseArgs::new(sqlite_url()),
        kafka: &KafkaArgs::new(brokers),
        http_addr: ([127, 0, 0, 1], 0).into(),
        http: closeloop_http::HttpLimits::default(),
        migrations: sqlx::migrate!("tests/migrations"),
        publisher: PublisherConfig::new(brokers),
        sqlite_cache_mib: None,
    })
    .await
    .expect("foundation starts")
}

async fn status(path: &str, foundation_addr: std::net::SocketAddr) -> Option<u16> {
    let response = reqwest::get(format!("http://{foundation_addr}{path}"))
        .await
        .ok()?;
    Some(response.status().as_u16())
}

async fn wait_for_status(path: &str, addr: std::net::SocketAddr, wanted: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(path, addr).await != Some(wanted) {
        assert!(Instant::now() < deadline, "{path} never answered {wanted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn feedback() -> Envelope<Feedback> {
    let json = serde_json::json!({
        "schema": "feedback.raw.v1",
        "event_id": uuid::Uuid::now_v7(),
        "occurred_at": "2026-11-25T10:00:00Z",
        "feedback_id": uuid::Uuid::now_v7(),
        "source": "probe",
        "channel": "chat",
        "customer": {"id": "c1"},
        "text": "hello",
        "given_at": "2026-11-25T10:00:00Z",
        "received_at": "2026-11-25T10:00:00Z"
    });
    serde_json::from_value(json).expect("a feedback envelope")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_a_consumer_has_not_joined() {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(1)).expect("broker");
    let foundation = foundation(broker.bootstrap_servers()).await;
    let addr = foundation.http_addr();
    let publisher = foundation.publisher.clone();
    let (handled, mut handled_rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(
        foundation.run(shutdown.clone(), axum::Router::new(), |tasks| {
            tasks.consumer("probe-live", Probe(handled));
            // A second consumer whose broker never answers: it never joins.
            let (never, _) = mpsc::unbounded_channel();
            let mut unreachable = closeloop_bus::ConsumerConfig::new("127.0.0.1:9", "probe-stuck");
            unreachable.retry_max = Duration::from_millis(100);
            tasks.consumer_with(unreachable, Probe(never));
        }),
    );
    // The live consumer joined and handles records; the service still is not ready.
    publisher
        .publish(&feedback(), None)
        .await
        .expect("published");
    tokio::time::timeout(Duration::from_secs(60), handled_rx.recv())
        .await
        .expect("the live consumer handles the record");
    assert_eq!(status("/healthz", addr).await, Some(200));
    assert_eq!(status("/readyz", addr).await, Some(503));
    shutdown.cancel();
    run.await.expect("run task").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_joined_and_the_first_failure_stops_everything() {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(1)).expect("broker");
    let foundation = foundation(broker.bootstrap_servers()).await;
    let addr = foundation.http_addr();
    let (handled, _handled_rx) = mpsc::unbounded_channel();
    let (fail, failed) = tokio::sync::oneshot::channel::<()>();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(
        foundation.run(shutdown.clone(), axum::Router::new(), |tasks| {
            tasks.consumer("probe-live", Probe(handled));
            tasks.spawn("probe task", async move {
                let _ = failed.await;
                Err(std::io::Error::other("boom"))
            });
        }),
    );
    wait_for_status("/readyz", addr, 200).await;
    fail.send(()).expect("task waits");
    // The caller's token is not cancelled: the failure alone stops the consumer and the
    // server, and its error comes back.
    let outcome = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the service stops")
        .expect("run task");
    match outcome {
        Err(Error::Task { task, source }) => {
            assert_eq!(task, "probe task");
            assert_eq!(source.to_string(), "boom");
        }
        other => panic!("expected the task's failure, got {other:?}"),
    }
    assert!(!shutdown.is_cancelled());
    assert_eq!(status("/readyz", addr).await, None, "the server is gone");
}
