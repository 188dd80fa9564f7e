//! What every notify test needs: notify on a fresh embedded broker and database
//! ([`spawn_notify`]), a scriptable webhook receiver ([`start_receiver`]), the local SMTP
//! relay ([`start_smtp_sink`]), the `notifications.v1` records it published
//! ([`Outcomes`]), and builders for the events notify consumes ([`categorised`],
//! [`resolved`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use clap::Parser;
use closeloop_bus::{
    run_consumer, BusMetrics, ConsumerConfig, EmbeddedBroker, Handler, HandlerError, Incoming,
    KafkaArgs, Publisher, PublisherConfig, TopicSpec,
};
use closeloop_events::{
    ActionEvent, ActionEventKind, ActionStatus, Channel, CustomerRef, DeliveryOutcome, Envelope,
    Evidence, Feedback, FeedbackCategorised, Language, NotificationOutcome, Resolution,
    SentimentLabel, SentimentResult, ThemeMatch, Touchpoint,
};
use closeloop_notify::{Config, Service};
use closeloop_sinks::SmtpSink;
use closeloop_testkit::{eventually, metric_value, scrape_metrics};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "whsec_c2VjcmV0LWZvci1ub3RpZnktdGVzdHM=";
pub const THEME: &str = "delivery_time";

/// One request the receiver saw, and what it answered (`None`: it never answered).
#[derive(Debug, Clone)]
pub struct Received {
    pub mode: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: Option<u16>,
    pub at: Instant,
}

impl Received {
    pub fn webhook_id(&self) -> String {
        self.headers["webhook-id"]
            .to_str()
            .expect("an ASCII webhook-id")
            .to_owned()
    }
    pub fn customer(&self) -> String {
        let body: Value = serde_json::from_slice(&self.body).expect("a JSON webhook body");
        body["customer"]["id"]
            .as_str()
            .expect("a customer id")
            .to_owned()
    }
}

/// A webhook receiver: `/hook/ok` fails the first `fail_first` requests with 503 and
/// then accepts; `/hook/down` always answers 503; `/hook/busy` answers 429 with a long
/// `Retry-After`; `/hook/hang` never answers its first request (and accepts later ones).
#[derive(Default)]
pub struct Receiver {
    fail_first: AtomicU32,
    hung: AtomicU32,
    seen: Mutex<Vec<Received>>,
}

impl Receiver {
    pub fn seen(&self) -> Vec<Received> {
        self.seen.lock().expect("not poisoned").clone()
    }
    pub fn accepted(&self) -> Vec<Received> {
        self.seen()
            .into_iter()
            .filter(|r| r.status == Some(200))
            .collect()
    }
}

async fn hook(
    State(receiver): State<Arc<Receiver>>,
    Path(mode): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, retry_after) = match mode.as_str() {
        "ok" => {
            let failing = receiver
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                (StatusCode::SERVICE_UNAVAILABLE, None)
            } else {
                (StatusCode::OK, None)
            }
        }
        "hang" if receiver.hung.fetch_add(1, Ordering::SeqCst) == 0 => {
            receiver.seen.lock().expect("not poisoned").push(Received {
                mode,
                headers,
                body,
                status: None,
                at: Instant::now(),
            });
            // The sender gives up (or dies) first; this request is never answered.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        "hang" => (StatusCode::OK, None),
        "busy" => (StatusCode::TOO_MANY_REQUESTS, Some("3600")),
        _ => (StatusCode::SERVICE_UNAVAILABLE, None),
    };
    receiver.seen.lock().expect("not poisoned").push(Received {
        mode,
        headers,
        body,
        status: Some(status.as_u16()),
        at: Instant::now(),
    });
    match retry_after {
        Some(seconds) => (status, [("retry-after", seconds)]).into_response(),
        None => status.into_response(),
    }
}

pub async fn start_receiver(fail_first: u32) -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver::default());
    receiver.fail_first.store(fail_first, Ordering::SeqCst);
    let router = Router::new()
        .route("/hook/{mode}", post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the receiver");
    let addr = listener.local_addr().expect("the receiver's address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (receiver, addr)
}

pub async fn start_smtp_sink() -> (SmtpSink, SocketAddr) {
    let sink = SmtpSink::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the SMTP relay");
    let addr = sink
        .spawn(listener, CancellationToken::new())
        .expect("the SMTP relay serves");
    (sink, addr)
}

/// Collects every `notifications.v1` record.
#[derive(Clone, Default)]
pub struct Outcomes(Arc<Mutex<Vec<NotificationOutcome>>>);

impl Outcomes {
    pub fn all(&self) -> Vec<NotificationOutcome> {
        self.0.lock().expect("not poisoned").clone()
    }
    pub fn of(&self, customer: &str) -> Vec<(DeliveryOutcome, Option<String>)> {
        self.all()
            .into_iter()
            .filter(|o| o.customer_id == customer)
            .map(|o| (o.outcome, o.error))
            .collect()
    }
}

impl Handler for Outcomes {
    type Event = NotificationOutcome;
    async fn handle(&self, incoming: &Incoming<NotificationOutcome>) -> Result<(), HandlerError> {
        self.0
            .lock()
            .expect("not poisoned")
            .push(incoming.envelope.data.clone());
        Ok(())
    }
}

/// A running notify on a fresh broker and database.
pub struct Spawned {
    pub broker: EmbeddedBroker,
    pub config: Config,
    pub publisher: Publisher,
    pub outcomes: Outcomes,
    /// `http://{http_addr}`.
    pub base: String,
    pub http_addr: SocketAddr,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<Result<(), closeloop_notify::Error>>,
}

pub async fn spawn_notify(configure: impl FnOnce(&mut Config)) -> Spawned {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("broker");
    let mut config = Config::parse_from(["notify"]);
    config.kafka = KafkaArgs::new(broker.bootstrap_servers());
    config.database = closeloop_store::testing::database_args("notify");
    config.http_addr = ([127, 0, 0, 1], 0).into();
    config.retry_base_ms = 10;
    configure(&mut config);
    let (http_addr, shutdown, handle) = start(&config).await;
    let publisher = Publisher::new(
        &PublisherConfig::new(broker.bootstrap_servers()),
        BusMetrics::unregistered(),
    )
    .expect("a publisher for the test");
    let outcomes = Outcomes::default();
    tokio::spawn(run_consumer(
        ConsumerConfig::new(broker.bootstrap_servers(), "test-outcomes"),
        outcomes.clone(),
        publisher.clone(),
        BusMetrics::unregistered(),
        CancellationToken::new(),
    ));
    Spawned {
        broker,
        config,
        publisher,
        outcomes,
        base: format!("http://{http_addr}"),
        http_addr,
        http: reqwest::Client::new(),
        shutdown,
        handle,
    }
}

type Running = (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), closeloop_notify::Error>>,
);

async fn start(config: &Config) -> Running {
    let service = Service::build(config.clone()).await.expect("notify builds");
    let http_addr = service.http_addr();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(service.run_until_stopped(shutdown.clone()));
    (http_addr, shutdown, handle)
}

impl Spawned {
    /// The whole service killed where it stands (no graceful shutdown), then started
    /// again on the same database and broker.
    pub async fn kill_and_restart(&mut self) {
        self.handle.abort();
        let _ = (&mut self.handle).await;
        let (http_addr, shutdown, handle) = start(&self.config).await;
        self.base = format!("http://{http_addr}");
        self.http_addr = http_addr;
        self.shutdown = shutdown;
        self.handle = handle;
    }

    /// A second notify on the same database and broker (a replica in the same consumer
    /// groups), stopped with [`Replica::stop`].
    pub async fn replica(&self) -> Replica {
        let (http_addr, shutdown, handle) = start(&self.config).await;
        Replica {
            http_addr,
            shutdown,
            handle,
        }
    }

    /// `GET {path}` on notify, with the ops token when one is configured.
    pub async fn get_path(&self, path: &str) -> Value {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = &self.config.ops_token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.expect("notify answers");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// `GET /v1/notifications?{query}`, with the ops token when one is configured.
    pub async fn get(&self, query: &str) -> Value {
        let mut request = self
            .http
            .get(format!("{}/v1/notifications?{query}", self.base));
        if let Some(token) = &self.config.ops_token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.expect("the notifications API answers");
        assert_eq!(response.status(), 200);
        response.json().await.expect("a JSON body")
    }

    pub async fn notifications(&self, action: Uuid) -> Value {
        self.get(&format!("action={action}")).await
    }

    pub async fn deliveries(&self, action: Uuid) -> HashMap<String, Value> {
        self.notifications(action).await["deliveries"]
            .as_array()
            .expect("a list of deliveries")
            .iter()
            .map(|row| {
                let customer = row["customer_id"].as_str().expect("a customer id");
                (customer.to_owned(), row.clone())
            })
            .collect()
    }

    /// A metric's value summed over the series that have all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric_value(&scrape_metrics(self.http_addr).await, name, labels)
    }

    pub async fn publish<E: closeloop_events::Event>(&self, event: E) {
        self.publisher
            .publish(&Envelope::new(event), None)
            .await
            .expect("acked");
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("notify stops in time")
            .expect("notify task");
        assert!(result.is_ok(), "{result:?}");
        drop(self.broker);
    }
}

/// A second notify instance (see [`Spawned::replica`]).
pub struct Replica {
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), closeloop_notify::Error>>,
}

impl Replica {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("the replica stops in time")
            .expect("replica task");
        assert!(result.is_ok(), "{result:?}");
    }
}

/// Waits (up to 40 s) until `done` holds: [`eventually`] for a yes/no condition.
pub async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(Duration::from_secs(40), what, || {
        let done = done();
        async move { done.await.then_some(()) }
    })
    .await;
}

pub fn categorised(
    customer: &str,
    source: &str,
    locale: Option<&str>,
    consent: bool,
    text: &str,
) -> FeedbackCategorised {
    FeedbackCategorised {
        feedback: Feedback {
            feedback_id: Uuid::now_v7(),
            source: source.into(),
            channel: Channel::Review,
            touchpoint: Some(Touchpoint::Delivery),
            customer: CustomerRef {
                id: customer.into(),
                locale: locale.map(str::to_owned),
                consent,
                email: Some(format!("{customer}@example.com")),
                reference: Some(format!("REF-{customer}")),
            },
            text: text.into(),
            rating: Some(1),
            nps: None,
            given_at: Utc::now(),
            received_at: Utc::now(),
            metadata: serde_json::Map::new(),
        },
        language: if locale.is_some_and(|l| l.starts_with("de")) {
            Language::De
        } else {
            Language::En
        },
        sentiment: SentimentResult {
            label: SentimentLabel::Negative,
            score: -0.7,
            confidence: 0.9,
        },
        themes: vec![ThemeMatch {
            id: THEME.into(),
            score: 0.9,
            sentiment: SentimentLabel::Negative,
            matched_terms: vec!["late".into()],
        }],
        classifier_version: "test".into(),
        explanation: vec![],
    }
}

pub fn resolved(action_id: Uuid, evidence: &[Uuid]) -> ActionEvent {
    resolved_on(THEME, action_id, evidence)
}

/// [`resolved`] on another theme.
pub fn resolved_on(theme: &str, action_id: Uuid, evidence: &[Uuid]) -> ActionEvent {
    let now = Utc::now();
    ActionEvent {
        action_id,
        kind: ActionEventKind::Resolved,
        theme: theme.into(),
        theme_name: BTreeMap::from([
            ("en".into(), "delivery time".into()),
            ("de".into(), "Lieferzeit".into()),
        ]),
        status: ActionStatus::Resolved,
        raised_at: now,
        evidence: Evidence {
            window_start: now,
            window_end: now,
            mentions: evidence.len() as u32,
            negative_mentions: evidence.len() as u32,
            distinct_customers: evidence.len() as u32,
            rule: "test".into(),
            feedback_ids: evidence.to_vec(),
            ..Default::default()
        },
        resolution: Some(Resolution {
            message: BTreeMap::from([
                ("en".into(), "We added a second carrier.".into()),
                ("de".into(), "Wir haben einen zweiten Versender.".into()),
            ]),
            resolved_by: "ops@example.com".into(),
            resolved_at: now,
        }),
        workflow: Default::default(),
        effect: None,
    }
}

pub async fn publish_feedback(notify: &Spawned, feedback: &[FeedbackCategorised]) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for item in feedback {
        notify
            .publisher
            .publish(&Envelope::new(item.clone()), None)
            .await
            .expect("acked");
        ids.push(item.feedback.feedback_id);
    }
    ids
}
