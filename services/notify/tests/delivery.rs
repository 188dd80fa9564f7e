//! notify end to end on the embedded broker, against a local webhook receiver and a
//! local SMTP relay: who gets told, in which language, on which channel, signed how;
//! retries, dead letters, rate limits, idempotency on replay and across a crash
//! mid-delivery, erasure, the notifications API and `notifications.v1`.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    ErasureRequest, Evidence, Feedback, FeedbackCategorised, Language, NotificationOutcome,
    Resolution, SentimentLabel, SentimentResult, ThemeMatch, Touchpoint,
};
use closeloop_notify::{signature, Config, Service, SmtpUrl};
use closeloop_sinks::SmtpSink;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SECRET: &str = "whsec_c2VjcmV0LWZvci1ub3RpZnktdGVzdHM=";
const THEME: &str = "delivery_time";

/// One request the receiver saw, and what it answered (`None`: it never answered).
#[derive(Debug, Clone)]
struct Received {
    mode: String,
    headers: HeaderMap,
    body: Bytes,
    status: Option<u16>,
    at: Instant,
}

impl Received {
    fn webhook_id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }
    fn customer(&self) -> String {
        let body: Value = serde_json::from_slice(&self.body).unwrap();
        body["customer"]["id"].as_str().unwrap().to_owned()
    }
}

/// A webhook receiver: `/hook/ok` fails the first `fail_first` requests with 503 and
/// then accepts; `/hook/down` always answers 503; `/hook/busy` answers 429 with a long
/// `Retry-After`; `/hook/hang` never answers its first request (and accepts later ones).
#[derive(Default)]
struct Receiver {
    fail_first: AtomicU32,
    hung: AtomicU32,
    seen: Mutex<Vec<Received>>,
}

impl Receiver {
    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
    fn accepted(&self) -> Vec<Received> {
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
            receiver.seen.lock().unwrap().push(Received {
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
    receiver.seen.lock().unwrap().push(Received {
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

async fn start_receiver(fail_first: u32) -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver::default());
    receiver.fail_first.store(fail_first, Ordering::SeqCst);
    let router = Router::new()
        .route("/hook/{mode}", post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (receiver, addr)
}

async fn start_smtp_sink() -> (SmtpSink, SocketAddr) {
    let sink = SmtpSink::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = sink.spawn(listener, CancellationToken::new()).unwrap();
    (sink, addr)
}

/// Collects every `notifications.v1` record.
#[derive(Clone, Default)]
struct Outcomes(Arc<Mutex<Vec<NotificationOutcome>>>);

impl Outcomes {
    fn all(&self) -> Vec<NotificationOutcome> {
        self.0.lock().unwrap().clone()
    }
    fn of(&self, customer: &str) -> Vec<(DeliveryOutcome, Option<String>)> {
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
        self.0.lock().unwrap().push(incoming.envelope.data.clone());
        Ok(())
    }
}

/// A running notify on a fresh broker and database.
struct Spawned {
    broker: EmbeddedBroker,
    config: Config,
    publisher: Publisher,
    outcomes: Outcomes,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), closeloop_notify::Error>>,
}

async fn spawn_notify(configure: impl FnOnce(&mut Config)) -> Spawned {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("broker");
    let mut config = Config::parse_from(["notify"]);
    config.kafka = KafkaArgs::new(broker.bootstrap_servers());
    config.database = closeloop_store::testing::database_args("notify");
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.retry_base_ms = 10;
    configure(&mut config);
    let (base, shutdown, handle) = start(&config).await;
    let publisher = Publisher::new(
        &PublisherConfig::new(broker.bootstrap_servers()),
        BusMetrics::unregistered(),
    )
    .unwrap();
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
        base,
        http: reqwest::Client::new(),
        shutdown,
        handle,
    }
}

type Running = (
    String,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), closeloop_notify::Error>>,
);

async fn start(config: &Config) -> Running {
    let service = Service::build(config.clone()).await.expect("notify builds");
    let base = format!("http://{}", service.http_addr());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(service.run_until_stopped(shutdown.clone()));
    (base, shutdown, handle)
}

impl Spawned {
    /// The whole service killed where it stands (no graceful shutdown), then started
    /// again on the same database and broker.
    async fn kill_and_restart(&mut self) {
        self.handle.abort();
        let _ = (&mut self.handle).await;
        let (base, shutdown, handle) = start(&self.config).await;
        self.base = base;
        self.shutdown = shutdown;
        self.handle = handle;
    }

    async fn get(&self, query: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/v1/notifications?{query}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn notifications(&self, action: Uuid) -> Value {
        self.get(&format!("action={action}")).await
    }

    async fn deliveries(&self, action: Uuid) -> HashMap<String, Value> {
        self.notifications(action).await["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| (row["customer_id"].as_str().unwrap().to_owned(), row.clone()))
            .collect()
    }

    /// A metric's value summed over the series whose line contains all of `labels`.
    async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn publish<E: closeloop_events::Event>(&self, event: E) {
        self.publisher
            .publish(&Envelope::new(event), None)
            .await
            .expect("acked");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("notify stops in time")
            .expect("notify task");
        assert!(result.is_ok(), "{result:?}");
        drop(self.broker);
    }
}

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not reached within 40 s: {what}");
}

fn categorised(
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

fn resolved(action_id: Uuid, evidence: &[Uuid]) -> ActionEvent {
    let now = Utc::now();
    ActionEvent {
        action_id,
        kind: ActionEventKind::Resolved,
        theme: THEME.into(),
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
    }
}

async fn publish_feedback(notify: &Spawned, feedback: &[FeedbackCategorised]) -> Vec<Uuid> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_action_notifies_each_consenting_customer_once() {
    let (receiver, addr) = start_receiver(2).await;
    let notify = spawn_notify(|config| {
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.webhook_secrets = vec![("shopdesk".into(), SECRET.into())];
    })
    .await;

    let feedback = [
        categorised(
            "anna",
            "shopdesk",
            Some("en-GB"),
            true,
            "The parcel took two weeks to arrive.",
        ),
        categorised(
            "bernd",
            "shopdesk",
            Some("de-DE"),
            true,
            "Die Lieferung kam\n viel zu spät.",
        ),
        categorised("carla", "shopdesk", None, true, "Delivery was late again"),
        categorised("dora", "shopdesk", None, false, "Late, late, late."),
    ];
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;

    wait_until("three deliveries accepted", || async {
        receiver.accepted().len() >= 3
    })
    .await;
    wait_until("all delivered in the API", || async {
        notify.notifications(action_id).await["counts"]["delivered"] == 3
    })
    .await;

    // Exactly one accepted request per consenting customer, each validly signed.
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 3, "{accepted:#?}");
    let mut bodies: HashMap<String, Value> = HashMap::new();
    let mut ids = HashSet::new();
    for request in &accepted {
        let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
        let id = header("webhook-id");
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        assert!((Utc::now().timestamp() - timestamp).abs() < 120);
        assert!(
            signature::verify(
                SECRET,
                &id,
                timestamp,
                &request.body,
                &header("webhook-signature")
            ),
            "signature must verify"
        );
        assert_eq!(header("content-type"), "application/json");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["type"], "closeloop.you_said_we_did");
        assert_eq!(
            body["delivery_id"],
            id.as_str(),
            "webhook-id is the delivery id"
        );
        assert_eq!(body["action_id"], action_id.to_string());
        assert_eq!(body["theme"], THEME);
        assert!(body["sent_at"].is_string());
        assert!(ids.insert(id), "one delivery id per customer");
        let customer = body["customer"]["id"].as_str().unwrap().to_owned();
        assert_eq!(body["customer"]["reference"], format!("REF-{customer}"));
        assert!(
            bodies.insert(customer, body).is_none(),
            "one accepted request per customer"
        );
    }
    assert_eq!(
        bodies.keys().cloned().collect::<HashSet<_>>(),
        HashSet::from(["anna".to_owned(), "bernd".to_owned(), "carla".to_owned()]),
        "dora did not consent"
    );
    let german = &bodies["bernd"];
    assert_eq!(german["language"], "de");
    assert_eq!(german["you_said"], "Die Lieferung kam viel zu spät.");
    assert_eq!(
        german["subject"],
        "Ihre Rückmeldung zum Thema Lieferzeit: Das haben wir getan"
    );
    let text = german["text"].as_str().unwrap();
    assert!(text.starts_with("Am "), "{text}");
    assert!(
        text.contains("zum Thema Lieferzeit geschrieben: „Die Lieferung kam viel zu spät.“ Das haben wir getan: Wir haben einen zweiten Versender. Danke, dass Sie uns das gesagt haben."),
        "{text}"
    );
    let english = bodies["anna"]["text"].as_str().unwrap();
    assert!(english.starts_with("On "), "{english}");
    assert!(
        english.contains("you told us about delivery time: \"The parcel took two weeks to arrive.\" We did: We added a second carrier. Thank you for telling us."),
        "{english}"
    );
    // A quote that does not end a sentence keeps the template's full stop.
    assert!(
        bodies["carla"]["text"]
            .as_str()
            .unwrap()
            .contains(": \"Delivery was late again\". We did:"),
        "{}",
        bodies["carla"]["text"]
    );
    assert_eq!(bodies["carla"]["language"], "en");

    // The two failures were retried under the same webhook-id, never as new deliveries.
    let seen = receiver.seen();
    assert_eq!(seen.len(), 5, "2 failed + 3 accepted");
    let all_ids: HashSet<String> = seen.iter().map(Received::webhook_id).collect();
    assert_eq!(all_ids, ids);
    assert!(seen.iter().all(|r| r.mode == "ok"));

    // A replayed Resolved record sends nothing new and counts nobody twice.
    notify.publish(resolved(action_id, &evidence)).await;
    wait_until("replay consumed", || async {
        notify
            .metric(
                "closeloop_events_consumed_total",
                &[r#"topic="actions.v1""#],
            )
            .await
            >= 2.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.seen().len(), 5, "no new request after the replay");

    let view = notify.notifications(action_id).await;
    assert_eq!(view["action_id"], action_id.to_string());
    assert_eq!(
        view["counts"],
        serde_json::json!({
            "pending": 0, "delivered": 3, "dead": 0, "cancelled": 0,
            "skipped_no_consent": 1, "skipped_no_route": 0
        })
    );
    assert_eq!(view["skipped"][0]["customer_id"], "dora");
    assert_eq!(view["skipped"][0]["reason"], "no_consent");
    let rows = view["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(row["status"], "delivered");
        assert_eq!(row["channel"], "webhook");
        assert_eq!(row["last_status_code"], 200);
        assert!(row["delivered_at"].is_string());
        assert!(row["created_at"].is_string());
        assert!(row["attempts"].as_i64().unwrap() >= 1);
    }
    let attempts: i64 = rows
        .iter()
        .map(|row| row["attempts"].as_i64().unwrap())
        .sum();
    assert_eq!(attempts, 5);
    let languages: HashMap<&str, &str> = rows
        .iter()
        .map(|row| {
            (
                row["customer_id"].as_str().unwrap(),
                row["language"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(languages["bernd"], "de");
    assert_eq!(languages["anna"], "en");

    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_skipped_total",
                &[r#"reason="no_consent""#]
            )
            .await,
        1.0,
        "the replay did not count dora again"
    );
    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_total",
                &[r#"outcome="delivered""#, r#"channel="webhook""#]
            )
            .await,
        3.0
    );
    assert_eq!(
        notify
            .metric(
                "closeloop_notification_delivery_seconds_count",
                &[r#"channel="webhook""#]
            )
            .await,
        3.0
    );

    // Every outcome is on notifications.v1: 2 retries, 3 deliveries, dora skipped.
    wait_until("outcomes published", || async {
        notify.outcomes.all().len() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = notify.outcomes.all();
    let count = |outcome: DeliveryOutcome| outcomes.iter().filter(|o| o.outcome == outcome).count();
    assert_eq!(count(DeliveryOutcome::Retrying), 2, "{outcomes:#?}");
    assert_eq!(count(DeliveryOutcome::Delivered), 3, "{outcomes:#?}");
    assert_eq!(
        notify.outcomes.of("dora"),
        [(DeliveryOutcome::Skipped, Some("no_consent".to_owned()))]
    );
    assert_eq!(outcomes.len(), 6, "{outcomes:#?}");

    // The API rejects bad queries with a problem document.
    for query in [
        "",
        "?action=not-a-uuid",
        "?status=lost",
        "?status=dead&limit=0",
        "?action=0190a8c0-0000-7000-8000-000000000000&status=dead",
    ] {
        let response = notify
            .http
            .get(format!("{}/v1/notifications{query}", notify.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }

    notify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_deliveries_die_visibly_and_erasure_cancels_pending_ones() {
    let (receiver, addr) = start_receiver(0).await;
    let notify = spawn_notify(|config| {
        config.max_attempts = 3;
        config.retry_base_ms = 10;
        config.webhooks = vec![
            ("down".into(), format!("http://{addr}/hook/down")),
            ("busy".into(), format!("http://{addr}/hook/busy")),
        ];
        config.webhook_secrets = vec![
            ("down".into(), SECRET.into()),
            ("busy".into(), SECRET.into()),
        ];
    })
    .await;

    let feedback = [
        categorised("erin", "down", None, true, "Never arrived"),
        categorised("finn", "busy", None, true, "Two weeks late"),
        categorised("gita", "nowhere", None, true, "Slow delivery"),
    ];
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;

    wait_until("erin dead, finn waiting", || async {
        let rows = notify.deliveries(action_id).await;
        rows.len() == 2 && rows["erin"]["status"] == "dead" && rows["finn"]["attempts"] == 1
    })
    .await;
    let rows = notify.deliveries(action_id).await;

    // Always 503: three attempts, then dead-lettered.
    assert_eq!(rows["erin"]["attempts"], 3);
    assert_eq!(rows["erin"]["last_status_code"], 503);
    assert!(rows["erin"]["last_error"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 attempts: HTTP 503"));
    assert!(rows["erin"]["delivered_at"].is_null());
    let erin_requests: Vec<Received> = receiver
        .seen()
        .into_iter()
        .filter(|r| r.mode == "down")
        .collect();
    assert_eq!(erin_requests.len(), 3);
    assert_eq!(
        erin_requests
            .iter()
            .map(Received::webhook_id)
            .collect::<HashSet<_>>()
            .len(),
        1,
        "retries keep the webhook-id"
    );

    // 429 with Retry-After 3600: still pending, not hammered.
    assert_eq!(rows["finn"]["status"], "pending");
    assert_eq!(rows["finn"]["last_status_code"], 429);

    // The dead letter is listed for operators, and counted.
    let dead = notify.get("status=dead").await;
    let dead = dead["deliveries"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["customer_id"], "erin");
    assert_eq!(dead[0]["action_id"], action_id.to_string());
    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_total",
                &[r#"outcome="dead_lettered""#, r#"channel="webhook""#]
            )
            .await,
        1.0
    );

    // Erasure cancels finn's pending delivery.
    notify
        .publish(ErasureRequest {
            customer_id: "finn".into(),
            source: "busy".into(),
            requested_at: Utc::now(),
        })
        .await;
    // The row stays for the audit trail, under finn's pseudonym instead of the id.
    let finn = closeloop_events::erased_customer_id("finn");
    wait_until("finn erased", || async {
        let rows = notify.deliveries(action_id).await;
        rows.get(&finn)
            .is_some_and(|row| row["status"] == "cancelled" && row["last_error"] == "erased")
            && !rows.contains_key("finn")
    })
    .await;
    assert_eq!(
        receiver.seen().iter().filter(|r| r.mode == "busy").count(),
        1
    );
    let view = notify.notifications(action_id).await;
    assert_eq!(
        view["counts"],
        serde_json::json!({
            "pending": 0, "delivered": 0, "dead": 1, "cancelled": 1,
            "skipped_no_consent": 0, "skipped_no_route": 1
        }),
        "gita's source has no webhook and no e-mail is configured: no route"
    );
    assert_eq!(view["skipped"][0]["customer_id"], "gita");
    assert_eq!(view["skipped"][0]["reason"], "no_route");

    // …and every one of those outcomes is on notifications.v1.
    wait_until("outcomes published", || async {
        notify.outcomes.of("finn").len() >= 2 && !notify.outcomes.of("gita").is_empty()
    })
    .await;
    let erin = notify.outcomes.of("erin");
    assert_eq!(
        erin.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        [
            DeliveryOutcome::Retrying,
            DeliveryOutcome::Retrying,
            DeliveryOutcome::DeadLettered
        ]
    );
    assert_eq!(
        notify.outcomes.of("gita"),
        [(DeliveryOutcome::Skipped, Some("no_route".to_owned()))]
    );
    assert_eq!(
        notify.outcomes.of("finn"),
        [
            (
                DeliveryOutcome::Retrying,
                Some("HTTP 429 Too Many Requests".to_owned())
            ),
            (DeliveryOutcome::Skipped, Some("erased".to_owned()))
        ]
    );

    // Still serving.
    for path in ["/healthz", "/readyz"] {
        let response = notify
            .http
            .get(format!("{}{path}", notify.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    notify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mail_reaches_the_smtp_relay_once_in_the_customers_language() {
    let (receiver, addr) = start_receiver(0).await;
    let (smtp, smtp_addr) = start_smtp_sink().await;
    // The relay refuses the first message for now (451): it must be sent again, once.
    smtp.fail_next(1);
    let notify = spawn_notify(|config| {
        config.smtp_url = Some(SmtpUrl(format!("smtp://{smtp_addr}")));
        config.email_from = Some("Customer Care <care@shop.example>".into());
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.webhook_secrets = vec![("shopdesk".into(), SECRET.into())];
    })
    .await;

    let mut carla = categorised("carla", "shopdesk", None, true, "Late again");
    carla.feedback.customer.email = None; // no address: the source's webhook instead
    let feedback = [
        categorised(
            "anna",
            "shopdesk",
            Some("en-US"),
            true,
            "My order took 3 weeks.",
        ),
        categorised(
            "bernd",
            "shopdesk",
            Some("de-AT"),
            true,
            "Die Lieferung kam <b>viel</b> zu spät & kaputt",
        ),
        carla,
        categorised("dora", "shopdesk", Some("de-DE"), false, "Zu spät!"),
    ];
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;

    wait_until("all three delivered", || async {
        notify.notifications(action_id).await["counts"]["delivered"] == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mails = smtp.received();
    assert_eq!(mails.len(), 2, "anna and bernd, once each: {mails:#?}");
    let by_rcpt: HashMap<String, _> = mails
        .iter()
        .map(|mail| (mail.rcpt_to.join(","), mail))
        .collect();
    let rows = notify.deliveries(action_id).await;
    assert_eq!(rows["anna"]["channel"], "email");
    assert_eq!(rows["bernd"]["channel"], "email");
    assert_eq!(rows["carla"]["channel"], "webhook");
    assert_eq!(rows["anna"]["last_status_code"], 250);

    let bernd = by_rcpt["bernd@example.com"];
    assert_eq!(bernd.mail_from, "care@shop.example");
    assert_eq!(
        bernd.header("Subject").as_deref(),
        Some("Ihre Rückmeldung zum Thema Lieferzeit: Das haben wir getan")
    );
    assert_eq!(
        bernd.header("Message-ID"),
        Some(format!(
            "<{}@shop.example>",
            rows["bernd"]["delivery_id"].as_str().unwrap()
        )),
        "the Message-ID is the delivery id, the same on every attempt"
    );
    let text = bernd.text().expect("a plain-text part");
    assert!(text.starts_with("Guten Tag,\n\nAm "), "{text}");
    assert!(
        text.contains("„Die Lieferung kam <b>viel</b> zu spät & kaputt“. Das haben wir getan: Wir haben einen zweiten Versender. Danke"),
        "{text}"
    );
    assert!(text.contains("Ihr Kundenservice"), "{text}");
    let html = bernd.html().expect("an HTML part");
    assert!(
        html.contains("„Die Lieferung kam &lt;b&gt;viel&lt;/b&gt; zu spät &amp; kaputt“"),
        "{html}"
    );
    assert!(!html.contains("<b>"), "{html}");

    let anna = by_rcpt["anna@example.com"];
    assert_eq!(
        anna.header("Subject").as_deref(),
        Some("You told us about delivery time: here is what we did")
    );
    let text = anna.text().unwrap();
    assert!(
        text.contains("you told us about delivery time: \"My order took 3 weeks.\" We did: We added a second carrier. Thank you"),
        "{text}"
    );

    // carla had no address: one webhook; dora did not consent: nothing at all.
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].customer(), "carla");
    assert!(!by_rcpt.contains_key("dora@example.com"));

    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_total",
                &[r#"channel="email""#, r#"outcome="delivered""#]
            )
            .await,
        2.0
    );
    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_total",
                &[r#"channel="email""#, r#"outcome="retrying""#]
            )
            .await,
        1.0,
        "the 451"
    );
    assert_eq!(
        notify
            .metric(
                "closeloop_notification_delivery_seconds_count",
                &[r#"channel="email""#]
            )
            .await,
        2.0
    );

    // Erasure clears what notify kept to write to them (the audit rows stay).
    notify
        .publish(ErasureRequest {
            customer_id: "bernd".into(),
            source: "shopdesk".into(),
            requested_at: Utc::now(),
        })
        .await;
    wait_until("bernd's erasure consumed", || async {
        notify
            .metric(
                "closeloop_events_consumed_total",
                &[r#"topic="privacy.erasure.v1""#],
            )
            .await
            >= 1.0
    })
    .await;
    // Replayed feedback of bernd's from before the erasure is not projected again: a
    // second action on the theme finds nobody called bernd.
    publish_feedback(&notify, &feedback[1..2]).await;
    let second = Uuid::now_v7();
    notify.publish(resolved(second, &[])).await;
    wait_until("second action handled", || async {
        notify.notifications(second).await["counts"]["delivered"] == 2
    })
    .await;
    let customers: HashSet<String> = notify.deliveries(second).await.into_keys().collect();
    assert_eq!(
        customers,
        HashSet::from(["anna".to_owned(), "carla".to_owned()])
    );
    assert!(!customers.contains("bernd"), "{customers:?}");
    notify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_notify_mid_delivery_and_restarting_sends_nothing_twice() {
    let (receiver, addr) = start_receiver(0).await;
    let mut notify = spawn_notify(|config| {
        config.webhooks = vec![
            ("fast".into(), format!("http://{addr}/hook/ok")),
            ("slow".into(), format!("http://{addr}/hook/hang")),
        ];
        config.webhook_secrets = vec![
            ("fast".into(), SECRET.into()),
            ("slow".into(), SECRET.into()),
        ];
        // A short lease, so the test does not wait half a minute for it to run out.
        config.http_timeout_ms = 3_000;
        config.lease_margin_ms = 500;
    })
    .await;

    let feedback = [
        categorised("ivan", "fast", None, true, "Late"),
        categorised("jana", "slow", Some("de-DE"), true, "Zu spät"),
    ];
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;

    // ivan's message is through; jana's request is in flight and unanswered.
    wait_until("ivan delivered, jana in flight", || async {
        let rows = notify.deliveries(action_id).await;
        rows.get("ivan").is_some_and(|r| r["status"] == "delivered")
            && receiver.seen().iter().any(|r| r.status.is_none())
    })
    .await;
    notify.kill_and_restart().await;
    // After the restart the action is replayed too (its offset may not have been
    // committed when notify died; publishing it again makes sure).
    notify.publish(resolved(action_id, &evidence)).await;

    wait_until("jana delivered after the restart", || async {
        notify.notifications(action_id).await["counts"]["delivered"] == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let seen = receiver.seen();
    let ivan: Vec<&Received> = seen.iter().filter(|r| r.customer() == "ivan").collect();
    assert_eq!(ivan.len(), 1, "ivan's delivery is not repeated: {seen:#?}");
    let jana: Vec<&Received> = seen.iter().filter(|r| r.customer() == "jana").collect();
    assert_eq!(jana.len(), 2, "the interrupted request, then one retry");
    assert_eq!(jana[0].status, None);
    assert_eq!(jana[1].status, Some(200));
    assert_eq!(
        jana[0].webhook_id(),
        jana[1].webhook_id(),
        "the same webhook-id, so a receiver that did see the first can drop the second"
    );
    assert_eq!(
        receiver.accepted().len(),
        2,
        "one accepted message per customer"
    );
    let rows = notify.deliveries(action_id).await;
    assert_eq!(rows.len(), 2, "the replayed action added nothing");
    assert_eq!(rows["jana"]["language"], "de");
    notify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_destination_gets_at_most_its_rate() {
    let (receiver, addr) = start_receiver(0).await;
    let notify = spawn_notify(|config| {
        config.webhooks = vec![("shopdesk".into(), format!("http://{addr}/hook/ok"))];
        config.webhook_secrets = vec![("shopdesk".into(), SECRET.into())];
        config.rate_per_second = 4.0;
        config.rate_burst = 1;
    })
    .await;
    let feedback: Vec<FeedbackCategorised> = (0..5)
        .map(|i| categorised(&format!("c{i}"), "shopdesk", None, true, "Late"))
        .collect();
    let evidence = publish_feedback(&notify, &feedback).await;
    let action_id = Uuid::now_v7();
    notify.publish(resolved(action_id, &evidence)).await;
    wait_until("all five delivered", || async {
        notify.notifications(action_id).await["counts"]["delivered"] == 5
    })
    .await;

    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 5, "each once");
    assert_eq!(
        receiver.seen().len(),
        5,
        "postponing is not a failed attempt"
    );
    // One per 250 ms after the first: four gaps take at least ~1 s (a lower bound, so
    // a slow machine cannot make it fail).
    let first = accepted.iter().map(|r| r.at).min().unwrap();
    let last = accepted.iter().map(|r| r.at).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(900),
        "{:?}",
        last - first
    );
    assert!(
        notify
            .metric(
                "closeloop_notifications_rate_limited_total",
                &[r#"channel="webhook""#]
            )
            .await
            >= 1.0
    );
    notify.stop().await;
}
