//! The real binary as a child process: `closeloop categorise` killed with SIGKILL
//! mid-stream and restarted loses nothing and stores nothing twice; stopped with
//! SIGTERM it finishes, commits and exits cleanly, so its successor redoes nothing.
//! `closeloop trends` killed with SIGKILL mid-stream and restarted raises no action twice.

use std::time::{Duration, Instant};

use chrono::Utc;
use closeloop_bus::{BusMetrics, EmbeddedBroker, Publisher, PublisherConfig, TopicSpec};
use closeloop_events::{
    topics, ActionEvent, Channel, CustomerRef, Envelope, Feedback, Language, SentimentLabel,
    ThemeMention,
};
use closeloop_store::testing::database_args;
use closeloop_store::DatabaseArgs;
use closeloop_tests::{count_rows, send_signal, spawn_closeloop};

/// `closeloop <name>` on `broker` and `database`, with `settings` as its environment.
fn service(
    name: &str,
    broker: &EmbeddedBroker,
    database: &DatabaseArgs,
    settings: &[(&str, &str)],
) -> Child {
    spawn_closeloop(
        env!("CARGO_BIN_EXE_closeloop"),
        name,
        broker.bootstrap_servers(),
        database,
        settings,
    )
}
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::process::Child;
use uuid::Uuid;

fn feedback(n: usize) -> Envelope<Feedback> {
    Envelope::new(Feedback {
        feedback_id: Uuid::now_v7(),
        source: "signals".into(),
        channel: Channel::Survey,
        touchpoint: None,
        customer: CustomerRef {
            id: format!("cust-{}", n % 23),
            locale: Some("de-DE".into()),
            consent: true,
            email: None,
            reference: None,
        },
        text: format!("Bestellung {n}: Lieferung kam zu spät, der Support war aber freundlich."),
        rating: Some(3),
        nps: None,
        given_at: Utc::now(),
        received_at: Utc::now(),
        metadata: Default::default(),
    })
}

async fn publish(broker: &EmbeddedBroker, range: std::ops::Range<usize>) {
    let publisher = Publisher::new(
        &PublisherConfig::new(broker.bootstrap_servers()),
        BusMetrics::unregistered(),
    )
    .expect("publisher");
    for n in range {
        publisher
            .publish(&feedback(n), None)
            .await
            .expect("published");
    }
}

fn categorise(broker: &EmbeddedBroker, database: &DatabaseArgs, group: &str) -> Child {
    service(
        "categorise",
        broker,
        database,
        &[
            ("CATEGORISE_HTTP_ADDR", "127.0.0.1:0"),
            ("CATEGORISE_GROUP_ID", group),
        ],
    )
}

/// Rows in categorise's store, once the child has created it.
async fn stored(database: &DatabaseArgs) -> i64 {
    count_rows(
        database,
        "categorise",
        "SELECT COUNT(*) FROM categorise_feedback",
    )
    .await
}

async fn wait_for_stored(database: &DatabaseArgs, at_least: i64, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let count = stored(database).await;
        if count >= at_least {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "only {count} of {at_least} categorised in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many records `topic` holds (all partitions), read from the beginning.
async fn records_in(broker: &EmbeddedBroker, topic: &str) -> usize {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", format!("count-{}", Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("counting consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut count = 0;
    // Joining the group takes a while; after the first record, 3 s of quiet ends it.
    let mut wait = Duration::from_secs(30);
    while let Ok(Ok(message)) = tokio::time::timeout(wait, consumer.recv()).await {
        if message.payload().is_some() {
            count += 1;
        }
        wait = Duration::from_secs(3);
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_categorises_everything_exactly_once() {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("broker");
    let database = database_args("categorise");
    let group = format!("signals-{}", Uuid::now_v7());
    publish(&broker, 0..400).await;

    let first = categorise(&broker, &database, &group);
    let done_before_kill = wait_for_stored(&database, 60, Duration::from_secs(60)).await;
    send_signal(&first, "-KILL");
    let status = first.wait_with_output().await.expect("first exits").status;
    assert!(
        !status.success(),
        "SIGKILL should not look like a clean exit"
    );

    // More arrives while it is down.
    publish(&broker, 400..500).await;
    let mut second = categorise(&broker, &database, &group);
    let count = wait_for_stored(&database, 500, Duration::from_secs(60)).await;
    assert_eq!(
        count, 500,
        "killed after {done_before_kill}: stored {count}"
    );
    // Settle: the successor may replay what the first had not committed; still once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&database).await, 500);
    send_signal(&second, "-TERM");
    let _ = second.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_commits_and_exits_cleanly() {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("broker");
    let database = database_args("categorise");
    let group = format!("signals-{}", Uuid::now_v7());
    publish(&broker, 0..200).await;

    let mut first = categorise(&broker, &database, &group);
    wait_for_stored(&database, 200, Duration::from_secs(60)).await;
    send_signal(&first, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), first.wait())
        .await
        .expect("exits within 20 s of SIGTERM")
        .expect("exit status");
    assert!(status.success(), "SIGTERM exit: {status}");

    // The successor in the same group starts after the committed offsets: it handles
    // only the new record, so the categorised topic holds each feedback once.
    let mut second = categorise(&broker, &database, &group);
    publish(&broker, 200..201).await;
    wait_for_stored(&database, 201, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        records_in(&broker, closeloop_events::topics::FEEDBACK_CATEGORISED).await,
        201,
        "records were categorised again after a clean shutdown"
    );
    send_signal(&second, "-TERM");
    let _ = second.wait().await;
}

/// A negative mention of `theme` by its own customer.
fn mention(theme: &str, n: usize) -> Envelope<ThemeMention> {
    Envelope::new(ThemeMention {
        feedback_id: Uuid::now_v7(),
        theme: theme.into(),
        customer_id: format!("{theme}-customer-{n}"),
        source: "signals".into(),
        channel: Channel::Review,
        touchpoint: None,
        language: Language::En,
        sentiment: SentimentLabel::Negative,
        score: -0.8,
        rating: Some(1),
        nps: None,
        excerpt: format!("complaint {n} about {theme}"),
        given_at: Utc::now(),
        received_at: Some(Utc::now()),
    })
}

async fn publish_mentions(broker: &EmbeddedBroker, themes: &[&str], range: std::ops::Range<usize>) {
    let publisher = Publisher::new(
        &PublisherConfig::new(broker.bootstrap_servers()),
        BusMetrics::unregistered(),
    )
    .expect("publisher");
    for n in range {
        for theme in themes {
            publisher
                .publish(&mention(theme, n), None)
                .await
                .expect("published");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_killed_mid_stream_raises_no_action_twice() {
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("broker");
    let database = database_args("trends");
    let group = format!("signals-{}", Uuid::now_v7());
    let themes = ["delivery_time", "price", "billing", "support"];
    let settings = [
        ("TRENDS_HTTP_ADDR", "127.0.0.1:0"),
        ("TRENDS_GROUP_ID", group.as_str()),
        ("TRENDS_MIN_NEGATIVE_MENTIONS", "5"),
        ("TRENDS_MIN_DISTINCT_CUSTOMERS", "3"),
    ];
    let mentions = "SELECT COUNT(*) FROM trends_mentions";
    publish_mentions(&broker, &themes, 0..30).await;

    let first = service("trends", &broker, &database, &settings);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_rows(&database, "trends", mentions).await < 40 {
        assert!(Instant::now() < deadline, "trends stored too few mentions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send_signal(&first, "-KILL");
    let _ = first.wait_with_output().await;

    // More complaints while it is down, then its successor.
    publish_mentions(&broker, &themes, 30..40).await;
    let mut second = service("trends", &broker, &database, &settings);
    let total = (themes.len() * 40) as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_rows(&database, "trends", mentions).await < total {
        assert!(Instant::now() < deadline, "trends did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count_rows(&database, "trends", mentions).await, total);
    let actions = "SELECT COUNT(*) FROM trends_actions";
    assert_eq!(
        count_rows(&database, "trends", actions).await,
        themes.len() as i64,
        "one action per theme"
    );
    send_signal(&second, "-TERM");
    let _ = second.wait().await;

    // actions.v1 may repeat an event (published, then killed before it was recorded),
    // but never carries a second action for a theme.
    let mut action_ids =
        std::collections::BTreeMap::<String, std::collections::BTreeSet<Uuid>>::new();
    for event in read_all::<ActionEvent>(&broker, topics::ACTIONS).await {
        action_ids
            .entry(event.theme.clone())
            .or_default()
            .insert(event.action_id);
    }
    assert_eq!(action_ids.len(), themes.len(), "{action_ids:?}");
    assert!(
        action_ids.values().all(|ids| ids.len() == 1),
        "a theme with two actions: {action_ids:?}"
    );
}

/// Every record of `topic`, decoded, read from the beginning until 3 s of quiet.
async fn read_all<E: closeloop_events::Event>(broker: &EmbeddedBroker, topic: &str) -> Vec<E> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", format!("read-{}", Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reading consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut events = Vec::new();
    let mut wait = Duration::from_secs(30);
    while let Ok(Ok(message)) = tokio::time::timeout(wait, consumer.recv()).await {
        let payload = message.payload().unwrap_or_default();
        let envelope: Envelope<E> = closeloop_events::decode(payload).expect("an event");
        events.push(envelope.data);
        wait = Duration::from_secs(3);
    }
    events
}
