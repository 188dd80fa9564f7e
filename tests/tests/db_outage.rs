//! PostgreSQL going away under categorise: a TCP proxy between categorise and the
//! database refuses and drops every connection for a while, twice — once while
//! categorise keeps running, once while it is stopped gracefully and started again.
//! Every accepted event must end up categorised exactly once, in the store and on
//! feedback.categorised.v1, and nothing may be dead-lettered: a database that is down is
//! a transient failure, retried with backoff, never skipped, and never committed past.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use closeloop_bus::{EmbeddedBroker, KafkaArgs, TopicSpec};
use closeloop_events::topics;
use closeloop_store::testing::{database_args, postgres_url};
use closeloop_store::DatabaseArgs;
use closeloop_tests::{
    categorised_ids, eventually, init_logs, post_complaints, read_topic, spawn_ingest,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const KEY: &str = "outage-key";
const EVENTS: usize = 300;

/// A TCP proxy to `upstream` that can be cut (new connections are closed at once and
/// open ones dropped) and restored.
struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, watch) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut up = watch.clone();
                if !*up.borrow() {
                    continue; // dropped: the client sees the connection closed
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = up.wait_for(|up| !*up) => {} // cut: both ends dropped
                    }
                });
            }
        });
        Self { addr, up }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// `url` split around its `host:port`: (before, host:port, after).
fn split_host(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    (format!("{scheme}://{user}"), host, format!("/{path}"))
}

struct Categorise {
    config: closeloop_categorise::Config,
    running: Option<(JoinHandle<()>, CancellationToken, SocketAddr)>,
}

impl Categorise {
    async fn start(&mut self) {
        let service = closeloop_categorise::Service::build(self.config.clone())
            .await
            .expect("categorise builds");
        let addr = service.http_addr();
        let stop = CancellationToken::new();
        let run = service.run_until_stopped(stop.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = run.await {
                panic!("categorise failed: {error}");
            }
        });
        self.running = Some((task, stop, addr));
    }

    /// A graceful stop (SIGTERM): commits what was processed, and only that.
    async fn stop(&mut self) {
        if let Some((task, stop, _)) = self.running.take() {
            stop.cancel();
            task.await.expect("categorise stops cleanly");
        }
    }

    async fn retries(&self) -> f64 {
        let Some((_, _, addr)) = &self.running else {
            return 0.0;
        };
        let Ok(response) = reqwest::get(format!("http://{addr}/metrics")).await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with("closeloop_event_retries_total{"))
            .filter(|line| line.contains(topics::FEEDBACK_RAW))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

async fn reached(progress: &Arc<AtomicUsize>, n: usize) {
    eventually(Duration::from_secs(60), "posting progresses", || {
        let progress = progress.clone();
        async move { (progress.load(Ordering::Relaxed) >= n).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn categorise_survives_the_database_going_away() {
    init_logs();
    let Some(url) = postgres_url() else {
        println!("SKIPPED categorise_survives_the_database_going_away: needs DATABASE_URL");
        return;
    };
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("broker");
    let brokers = broker.bootstrap_servers();

    let (ingest_url, ingest_stop) = spawn_ingest(brokers, "outage", KEY).await;

    // categorise reaches PostgreSQL only through the proxy; the test reads it directly.
    let direct = database_args("categorise");
    let (before, upstream, after) = split_host(&url);
    let proxy = Proxy::start(upstream).await;
    let mut config = closeloop_categorise::Config::parse_from(["categorise"]);
    config.kafka = KafkaArgs::new(brokers);
    config.database = DatabaseArgs {
        database_url: format!("{before}{}{after}", proxy.addr),
        ..direct.clone()
    };
    config.http_addr = ([127, 0, 0, 1], 0).into();
    let mut categorise = Categorise {
        config,
        running: None,
    };
    categorise.start().await;

    let progress = Arc::new(AtomicUsize::new(0));
    let poster = {
        let progress = progress.clone();
        tokio::spawn(
            async move { post_complaints(&ingest_url, KEY, EVENTS, 4, 29, progress).await },
        )
    };

    // First outage: categorise keeps running and must wait it out.
    reached(&progress, 60).await;
    proxy.cut();
    eventually(Duration::from_secs(60), "categorise retrying", || async {
        (categorise.retries().await > 0.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();

    // Second outage: categorise is stopped while it cannot write, and started again
    // after the database is back. What it could not process must not have been
    // committed, or it would be lost.
    reached(&progress, 180).await;
    let retries = categorise.retries().await;
    proxy.cut();
    eventually(
        Duration::from_secs(60),
        "categorise retrying again",
        || async { (categorise.retries().await > retries).then_some(()) },
    )
    .await;
    categorise.stop().await;
    proxy.restore();
    categorise.start().await;

    let (accepted, refused) = poster.await.expect("poster");
    // Ingest does not touch the database without an Idempotency-Key, so the outage
    // must not refuse anything.
    assert!(refused.is_empty(), "ingest refused: {refused:?}");
    assert_eq!(accepted.len(), EVENTS);
    let expected: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    assert_eq!(expected.len(), EVENTS, "ingest handed out an id twice");

    let stored = eventually(
        Duration::from_secs(120),
        "every accepted event categorised",
        || async {
            let ids = categorised_ids(&direct).await;
            (ids.len() >= EVENTS).then_some(ids)
        },
    )
    .await;
    let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
    assert_eq!(stored.len(), stored_set.len(), "a feedback stored twice");
    assert_eq!(stored_set, expected, "stored ids differ from accepted ids");

    // Published exactly once each: the publish follows the insert, so a failed insert
    // published nothing and its retry publishes once.
    let categorised = read_topic(
        brokers,
        topics::FEEDBACK_CATEGORISED,
        EVENTS,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .await;
    let mut published: HashMap<String, usize> = HashMap::new();
    for record in &categorised {
        let id = record["feedback"]["feedback_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no feedback id: {record}"));
        *published.entry(id.to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    let published_set: HashSet<&str> = published.keys().map(String::as_str).collect();
    assert_eq!(
        published_set, expected,
        "published ids differ from accepted ids"
    );

    // Nothing was given up on.
    let dead = read_topic(
        brokers,
        &topics::dead_letter_of(topics::FEEDBACK_RAW),
        0,
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .await;
    assert!(dead.is_empty(), "dead-lettered during the outage: {dead:?}");

    categorise.stop().await;
    ingest_stop.cancel();
}
