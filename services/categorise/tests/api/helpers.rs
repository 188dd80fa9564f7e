//! What every categorise test needs: categorise on a fresh embedded broker and database
//! ([`spawn_categorise`]), a publisher for raw feedback, and ways to look at the outcome
//! (rows in its store, records on its topics, its metrics).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use closeloop_bus::{
    BusMetrics, EmbeddedBroker, Incoming, KafkaArgs, Publisher, PublisherConfig, TopicSpec,
};
use closeloop_categorise::{Config, Service};
use closeloop_classify::{Taxonomy, ThemeDef};
use closeloop_events::{
    topics, Channel, CustomerRef, Envelope, Event, Feedback, Period, TaxonomyApplied,
};
use closeloop_store::{sqlx, Database};
use closeloop_testkit::{metric_value, read_records, scrape_metrics, Record};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a test waits for an outcome before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// categorise built (store migrated, topics there, HTTP bound) on a fresh broker and
/// database, not yet consuming: [`Built::run`] starts it.
pub struct Built {
    pub broker: EmbeddedBroker,
    pub config: Config,
    pub service: Service,
}

/// A running categorise on a fresh broker and database.
pub struct Spawned {
    pub broker: EmbeddedBroker,
    pub config: Config,
    pub http_addr: SocketAddr,
    pub publisher: Publisher,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), closeloop_categorise::Error>>,
}

/// categorise built on a fresh broker (1 broker, 3 partitions per topic) and database.
pub async fn build_categorise() -> Built {
    closeloop_testkit::init_logs();
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("an embedded broker");
    let mut config = Config::parse_from(["categorise"]);
    config.kafka = KafkaArgs::new(broker.bootstrap_servers());
    config.database = closeloop_store::testing::database_args("categorise");
    config.http_addr = ([127, 0, 0, 1], 0).into();
    let service = Service::build(config.clone())
        .await
        .expect("categorise builds");
    Built {
        broker,
        config,
        service,
    }
}

/// categorise running on a fresh broker and database.
pub async fn spawn_categorise() -> Spawned {
    build_categorise().await.run()
}

impl Built {
    /// Starts consuming and serving.
    pub fn run(self) -> Spawned {
        let http_addr = self.service.http_addr();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(self.service.run_until_stopped(shutdown.clone()));
        let publisher = Publisher::new(
            &PublisherConfig::new(self.broker.bootstrap_servers()),
            BusMetrics::unregistered(),
        )
        .expect("a publisher for the test");
        Spawned {
            broker: self.broker,
            config: self.config,
            http_addr,
            publisher,
            shutdown,
            handle,
        }
    }
}

impl Spawned {
    /// Publishes `envelope` on `feedback.raw.v1`, keyed by customer, as ingest does.
    pub async fn publish(&self, envelope: &Envelope<Feedback>) {
        self.publisher
            .publish(envelope, None)
            .await
            .expect("the broker acknowledges the feedback");
    }

    /// Publishes bytes that are not a feedback envelope on `feedback.raw.v1`.
    pub async fn publish_raw(&self, key: &str, payload: &[u8]) {
        self.publisher
            .publish_bytes(topics::FEEDBACK_RAW, key, payload, None)
            .await
            .expect("the broker acknowledges the record");
    }

    /// The rows categorise stored for `feedback_id`.
    pub async fn stored_rows(&self, feedback_id: Uuid) -> i64 {
        let db = Database::connect(&self.config.database.config("categorise"))
            .await
            .expect("categorise's database");
        let count = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM categorise_feedback WHERE feedback_id = $1",
        )
        .bind(feedback_id.to_string())
        .fetch_one(db.pool())
        .await
        .expect("count categorise_feedback");
        db.close().await;
        count
    }

    /// The customer id stored for `feedback_id` (a pseudonym once erased).
    pub async fn stored_customer(&self, feedback_id: Uuid) -> Option<String> {
        let db = Database::connect(&self.config.database.config("categorise"))
            .await
            .expect("categorise's database");
        let customer = sqlx::query_scalar::<_, String>(
            "SELECT customer_id FROM categorise_feedback WHERE feedback_id = $1",
        )
        .bind(feedback_id.to_string())
        .fetch_optional(db.pool())
        .await
        .expect("read categorise_feedback");
        db.close().await;
        customer
    }

    /// Every record on `topic` so far, once at least `min` have come (or [`WAIT`] passed).
    pub async fn records(&self, topic: &str, min: usize) -> Vec<Record> {
        read_records(
            self.broker.bootstrap_servers(),
            topic,
            min,
            Duration::from_millis(500),
            WAIT,
        )
        .await
    }

    /// The events on `E`'s topic so far, with their keys, once at least `min` have come
    /// (or [`WAIT`] passed).
    pub async fn events<E: Event + DeserializeOwned>(&self, min: usize) -> Vec<Keyed<E>> {
        self.records(E::TOPIC, min)
            .await
            .into_iter()
            .map(|record| Keyed {
                key: record.key,
                event: serde_json::from_value::<Envelope<E>>(record.value)
                    .unwrap_or_else(|error| panic!("a {} record: {error}", E::SCHEMA))
                    .data,
            })
            .collect()
    }

    /// A metric's value summed over the series that have all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric_value(&scrape_metrics(self.http_addr).await, name, labels)
    }

    /// Stops categorise gracefully and checks that it stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("categorise stops in time")
            .expect("categorise task");
        assert!(result.is_ok(), "{result:?}");
    }
}

/// The status of `GET http://{addr}{path}`; `None` while nothing answers.
pub async fn status(addr: SocketAddr, path: &str) -> Option<u16> {
    let response = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
    Some(response.status().as_u16())
}

/// A raw feedback envelope from `customer` (with `locale`), as ingest publishes it.
pub fn feedback(customer: &str, locale: &str, text: &str, rating: u8) -> Envelope<Feedback> {
    Envelope::new(Feedback {
        feedback_id: Uuid::now_v7(),
        source: "shopdesk".into(),
        channel: Channel::Review,
        touchpoint: None,
        customer: CustomerRef {
            id: customer.into(),
            locale: Some(locale.into()),
            consent: true,
            email: None,
            reference: None,
        },
        text: text.into(),
        rating: Some(rating),
        nps: None,
        given_at: Utc::now(),
        received_at: Utc::now(),
        metadata: serde_json::Map::new(),
    })
}

/// `envelope` as the consumer hands it to a handler: from `feedback.raw.v1` at `offset`,
/// with a trace context.
pub fn incoming(envelope: &Envelope<Feedback>, offset: i64) -> Incoming<Feedback> {
    Incoming {
        envelope: envelope.clone(),
        topic: topics::FEEDBACK_RAW.to_owned(),
        partition: 0,
        offset,
        traceparent: Some(closeloop_bus::new_traceparent()),
    }
}

/// An event as it was read from its topic, with the record's key.
#[derive(Debug, Clone)]
pub struct Keyed<E> {
    pub key: Option<String>,
    pub event: E,
}

/// One more categorise instance (a replica, or a restart) on a broker and database that
/// are already there.
pub struct Replica {
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), closeloop_categorise::Error>>,
}

impl Replica {
    /// Builds categorise with `config` and runs it.
    pub async fn start(config: &Config) -> Replica {
        let service = Service::build(config.clone())
            .await
            .expect("categorise builds");
        Replica::run(service)
    }

    pub fn run(service: Service) -> Replica {
        let http_addr = service.http_addr();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(service.run_until_stopped(shutdown.clone()));
        Replica {
            http_addr,
            shutdown,
            handle,
        }
    }

    /// A metric's value summed over the series that have all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric_value(&scrape_metrics(self.http_addr).await, name, labels)
    }

    /// Stops this instance gracefully and checks that it stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("categorise stops in time")
            .expect("categorise task");
        assert!(result.is_ok(), "{result:?}");
    }
}

impl Spawned {
    /// Another instance on this one's broker and database.
    pub async fn replica(&self) -> Replica {
        Replica::start(&self.config).await
    }

    /// Publishes an applied taxonomy version on `taxonomy.v1`, as trends does.
    pub async fn publish_taxonomy(&self, applied: TaxonomyApplied) {
        self.publisher
            .publish(&Envelope::new(applied), None)
            .await
            .expect("the broker acknowledges the taxonomy");
    }
}

/// The built-in taxonomy as `version`, with theme `zebra` added: found by the word
/// "zebra", which no built-in theme knows.
pub fn zebra_taxonomy(version: &str) -> Taxonomy {
    let both = |en: &str, de: &str| {
        BTreeMap::from([
            ("en".to_owned(), en.to_owned()),
            ("de".to_owned(), de.to_owned()),
        ])
    };
    let cue = |word: &str| {
        BTreeMap::from([
            ("en".to_owned(), vec![word.to_owned()]),
            ("de".to_owned(), vec![word.to_owned()]),
        ])
    };
    Taxonomy::builtin()
        .with_theme_added(
            version,
            ThemeDef {
                id: "zebra".into(),
                names: both("Zebra", "Zebra"),
                keywords: cue("zebra"),
                phrases: BTreeMap::new(),
                weak: BTreeMap::new(),
                parent: None,
            },
        )
        .expect("a valid taxonomy")
}

/// `taxonomy` applied, as trends publishes it.
pub fn applied(taxonomy: &Taxonomy, reclassify: Option<Period>) -> TaxonomyApplied {
    TaxonomyApplied {
        version: taxonomy.version.clone(),
        based_on: Some(Taxonomy::builtin().version),
        taxonomy: taxonomy.to_json(),
        change: "added theme zebra".into(),
        applied_at: Utc::now(),
        reclassify,
    }
}

/// `lexicon-2+taxonomy-<version>`, as categorised events name it.
pub fn classifier_version(version: &str) -> String {
    use closeloop_classify::Classifier;
    let mut taxonomy = Taxonomy::builtin();
    taxonomy.version = version.to_owned();
    closeloop_classify::LexiconClassifier::new(taxonomy).version()
}
