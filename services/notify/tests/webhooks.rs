//! notify end to end on the embedded broker, against a local webhook receiver: who gets
//! told, in which language, signed how; retries, dead deliveries, idempotency on
//! replay, erasure, and the notifications API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use clap::Parser;
use closeloop_bus::{BusMetrics, EmbeddedBroker, KafkaArgs, Publisher, PublisherConfig, TopicSpec};
use closeloop_events::{
    ActionEvent, ActionEventKind, ActionStatus, Channel, CustomerRef, Envelope, ErasureRequest,
    Evidence, Feedback, FeedbackCategorised, Language, Resolution, SentimentLabel, SentimentResult,
    ThemeMatch, Touchpoint,
};
use closeloop_notify::{signature, Config, Service};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SECRET: &str = "whsec_c2VjcmV0LWZvci1ub3RpZnktdGVzdHM=";
const THEME: &str = "delivery_time";

/// One request the receiver saw, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    mode: String,
    headers: HeaderMap,
    body: Bytes,
    status: u16,
}

/// A webhook receiver: `/hook/ok` fails the first `fail_first` requests with 503 and
/// then accepts; `/hook/down` always answers 503; `/hook/busy` answers 429 with a long
/// `Retry-After`.
#[derive(Default)]
struct Receiver {
    fail_first: AtomicU32,
    seen: Mutex<Vec<Received>>,
}

impl Receiver {
    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
    fn accepted(&self) -> Vec<Received> {
        self.seen()
            .into_iter()
            .filter(|r| r.status == 200)
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
        "busy" => (StatusCode::TOO_MANY_REQUESTS, Some("3600")),
        _ => (StatusCode::SERVICE_UNAVAILABLE, None),
    };
    receiver.seen.lock().unwrap().push(Received {
        mode,
        headers,
        body,
        status: status.as_u16(),
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

/// A running notify on a fresh broker and database.
struct Spawned {
    _broker: EmbeddedBroker,
    publisher: Publisher,
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
    let service = Service::build(config).await.expect("notify builds");
    let base = format!("http://{}", service.http_addr());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(service.run_until_stopped(shutdown.clone()));
    let publisher = Publisher::new(
        &PublisherConfig::new(broker.bootstrap_servers()),
        BusMetrics::unregistered(),
    )
    .unwrap();
    Spawned {
        _broker: broker,
        publisher,
        base,
        http: reqwest::Client::new(),
        shutdown,
        handle,
    }
}

impl Spawned {
    async fn notifications(&self, action: Uuid) -> Vec<Value> {
        let response = self
            .http
            .get(format!("{}/v1/notifications?action={action}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
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

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("notify stops in time")
            .expect("notify task");
        assert!(result.is_ok(), "{result:?}");
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
            excerpts: vec![],
        },
        resolution: Some(Resolution {
            message: BTreeMap::from([
                ("en".into(), "We added a second carrier.".into()),
                ("de".into(), "Wir haben einen zweiten Versender.".into()),
            ]),
            resolved_by: "ops@example.com".into(),
            resolved_at: now,
        }),
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
    notify
        .publisher
        .publish(&Envelope::new(resolved(action_id, &evidence)), None)
        .await
        .expect("acked");

    wait_until("three deliveries accepted", || async {
        receiver.accepted().len() >= 3
    })
    .await;
    wait_until("all delivered in the API", || async {
        let rows = notify.notifications(action_id).await;
        rows.len() == 3 && rows.iter().all(|row| row["status"] == "delivered")
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
    let text = german["text"].as_str().unwrap();
    assert!(text.starts_with("Am "), "{text}");
    assert!(
        text.contains("zum Thema Lieferzeit geschrieben: „Die Lieferung kam viel zu spät.“. Das haben wir getan: Wir haben einen zweiten Versender. Danke"),
        "{text}"
    );
    let english = bodies["anna"]["text"].as_str().unwrap();
    assert!(english.starts_with("On "), "{english}");
    assert!(
        english.contains("you told us about delivery time: \"The parcel took two weeks to arrive.\". We did: We added a second carrier. Thank you for telling us."),
        "{english}"
    );
    assert_eq!(bodies["carla"]["language"], "en");

    // The two failures were retried under the same webhook-id, never as new deliveries.
    let seen = receiver.seen();
    assert_eq!(seen.len(), 5, "2 failed + 3 accepted");
    let all_ids: HashSet<String> = seen
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(all_ids, ids);
    assert!(seen.iter().all(|r| r.mode == "ok"));

    // A replayed Resolved record sends nothing new.
    notify
        .publisher
        .publish(&Envelope::new(resolved(action_id, &evidence)), None)
        .await
        .expect("acked");
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

    let rows = notify.notifications(action_id).await;
    assert_eq!(rows.len(), 3);
    for row in &rows {
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

    assert!(
        notify
            .metric(
                "closeloop_notifications_skipped_total",
                &[r#"reason="no_consent""#]
            )
            .await
            >= 1.0
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

    // The API rejects a missing or malformed action id with a problem document.
    for query in ["", "?action=not-a-uuid"] {
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
async fn failing_deliveries_die_and_erasure_cancels_pending_ones() {
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
    notify
        .publisher
        .publish(&Envelope::new(resolved(action_id, &evidence)), None)
        .await
        .expect("acked");

    let by_customer = |rows: Vec<Value>| -> HashMap<String, Value> {
        rows.into_iter()
            .map(|row| (row["customer_id"].as_str().unwrap().to_owned(), row))
            .collect()
    };
    wait_until("erin dead, gita dead, finn waiting", || async {
        let rows = by_customer(notify.notifications(action_id).await);
        rows.len() == 3
            && rows["erin"]["status"] == "dead"
            && rows["gita"]["status"] == "dead"
            && rows["finn"]["attempts"] == 1
    })
    .await;
    let rows = by_customer(notify.notifications(action_id).await);

    // Always 503: three attempts, then given up.
    assert_eq!(rows["erin"]["attempts"], 3);
    assert_eq!(rows["erin"]["last_status_code"], 503);
    assert!(rows["erin"]["last_error"].as_str().unwrap().contains("503"));
    assert!(rows["erin"]["delivered_at"].is_null());
    assert_eq!(
        receiver.seen().iter().filter(|r| r.mode == "down").count(),
        3
    );

    // No route for the source: dead at once, nothing sent.
    assert_eq!(
        rows["gita"]["last_error"],
        "no webhook configured for source nowhere"
    );

    // 429 with Retry-After 3600: still pending, not hammered.
    assert_eq!(rows["finn"]["status"], "pending");
    assert_eq!(rows["finn"]["last_status_code"], 429);

    // Erasure gives up finn's pending delivery.
    notify
        .publisher
        .publish(
            &Envelope::new(ErasureRequest {
                customer_id: "finn".into(),
                source: "busy".into(),
                requested_at: Utc::now(),
            }),
            None,
        )
        .await
        .expect("acked");
    wait_until("finn erased", || async {
        let rows = by_customer(notify.notifications(action_id).await);
        rows["finn"]["status"] == "dead" && rows["finn"]["last_error"] == "erased"
    })
    .await;
    assert_eq!(
        receiver.seen().iter().filter(|r| r.mode == "busy").count(),
        1
    );

    assert_eq!(
        notify
            .metric(
                "closeloop_notifications_total",
                &[r#"outcome="dead_lettered""#]
            )
            .await,
        2.0
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
