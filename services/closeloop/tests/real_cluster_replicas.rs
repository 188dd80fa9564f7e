//! Production form on a real Apache Kafka cluster (`KAFKA_TEST_BROKERS`, see
//! `deploy/kafka/cluster.sh`): two replicas of every service as child processes, in one
//! consumer group per service, under a steady stream. One replica of each is killed with
//! SIGKILL mid-stream and a new one of categorise, trends and notify joins later
//! (rebalances both ways). Then every event ingest accepted is categorised exactly once,
//! trends raises one action per theme with the same themes and counts as a single
//! replica given the same mentions, and no customer is told twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use closeloop::up::dev_webhook_secret;
use closeloop_bus::testing::RealCluster;
use closeloop_sinks::WebhookSink;
use closeloop_store::testing::database_args;
use closeloop_store::DatabaseArgs;
use closeloop_tests::{
    assert_categorised_exactly_once, assert_each_complainer_told_once, count_rows, eventually,
    resolve_all, send_signal, spawn_closeloop, wait_until_posted,
};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::process::Child;

const SOURCE: &str = "replicas";
const KEY: &str = "replicas-key";
const COMPLAINTS: usize = 1200;

/// A free port on 127.0.0.1 for a child's HTTP server.
async fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    listener.local_addr().expect("address")
}

/// `closeloop <name>` on the cluster and `database`, with `settings` as its environment.
fn service(
    name: &str,
    brokers: &str,
    database: &DatabaseArgs,
    settings: &[(&str, String)],
) -> Child {
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_closeloop(
        env!("CARGO_BIN_EXE_closeloop"),
        name,
        brokers,
        database,
        &settings,
    )
}

/// The services of the test, each with its database shared by all its replicas.
struct Fleet {
    brokers: String,
    ingest_db: DatabaseArgs,
    categorise_db: DatabaseArgs,
    trends_db: DatabaseArgs,
    notify_db: DatabaseArgs,
    sink: SocketAddr,
}

impl Fleet {
    fn ingest(&self, addr: SocketAddr) -> Child {
        let settings = [
            ("INGEST_HTTP_ADDR", addr.to_string()),
            ("INGEST_API_KEYS", format!("{SOURCE}={KEY}")),
        ];
        service("ingest", &self.brokers, &self.ingest_db, &settings)
    }

    fn categorise(&self) -> Child {
        let settings = [("CATEGORISE_HTTP_ADDR", "127.0.0.1:0".to_owned())];
        service("categorise", &self.brokers, &self.categorise_db, &settings)
    }

    fn trends(&self, addr: SocketAddr, database: &DatabaseArgs, group: &str) -> Child {
        let settings = [
            ("TRENDS_HTTP_ADDR", addr.to_string()),
            ("TRENDS_GROUP_ID", group.to_owned()),
            ("TRENDS_MIN_NEGATIVE_MENTIONS", "4".to_owned()),
            ("TRENDS_MIN_DISTINCT_CUSTOMERS", "3".to_owned()),
        ];
        service("trends", &self.brokers, database, &settings)
    }

    fn notify(&self, addr: SocketAddr) -> Child {
        let settings = [
            ("NOTIFY_HTTP_ADDR", addr.to_string()),
            (
                "NOTIFY_WEBHOOKS",
                format!("{SOURCE}=http://{}/webhooks/{SOURCE}", self.sink),
            ),
            (
                "NOTIFY_WEBHOOK_SECRETS",
                format!("{SOURCE}={}", dev_webhook_secret(SOURCE)),
            ),
            ("NOTIFY_RETRY_BASE_MS", "20".to_owned()),
            ("NOTIFY_RATE_PER_SECOND", "1000".to_owned()),
            ("NOTIFY_RATE_BURST", "1000".to_owned()),
        ];
        service("notify", &self.brokers, &self.notify_db, &settings)
    }
}

async fn ready(client: &reqwest::Client, addr: SocketAddr) -> Option<()> {
    let response = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .ok()?;
    response.status().is_success().then_some(())
}

/// Per theme: the action count and the counted mentions, as trends on `database` has them.
async fn actions_by_theme(
    client: &reqwest::Client,
    trends: SocketAddr,
) -> BTreeMap<String, Vec<Value>> {
    let actions: Value = client
        .get(format!("http://{trends}/v1/actions"))
        .send()
        .await
        .expect("trends answers")
        .json()
        .await
        .expect("actions as JSON");
    let mut by_theme: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for action in actions.as_array().cloned().unwrap_or_default() {
        let theme = action["theme"].as_str().unwrap_or_default().to_owned();
        by_theme.entry(theme).or_default().push(action);
    }
    by_theme
}

/// Complaints from 29 customers, posted to whichever ingest replica answers; returns the
/// accepted event ids (a refused or unanswered request is simply not accepted).
async fn post_complaints(urls: Vec<String>, posted: Arc<AtomicUsize>) -> Vec<String> {
    let client = reqwest::Client::new();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    futures::stream::iter(0..COMPLAINTS)
        .for_each_concurrent(8, |n| {
            let (client, urls, accepted, posted) =
                (client.clone(), urls.clone(), accepted.clone(), posted.clone());
            async move {
                let body = serde_json::json!({
                    "channel": "ticket",
                    "customer": {"id": format!("cust-{}", n % 29), "locale": if n % 2 == 0 { "en-GB" } else { "de-DE" }, "consent": true},
                    "text": if n % 2 == 0 {
                        format!("Order {n}: the parcel arrived late and the box was damaged.")
                    } else {
                        format!("Bestellung {n}: Die Lieferung kam viel zu spät.")
                    },
                    "rating": 2
                });
                // Round robin; a dead replica's requests go to the other one.
                for attempt in 0..urls.len() {
                    let url = &urls[(n + attempt) % urls.len()];
                    let Ok(response) = client.post(url).bearer_auth(KEY).json(&body).send().await
                    else {
                        continue;
                    };
                    if response.status() != 202 {
                        continue;
                    }
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    if let Some(id) = answer["event_ids"][0].as_str() {
                        accepted.lock().expect("not poisoned").push(id.to_owned());
                    }
                    break;
                }
                posted.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    let accepted = accepted.lock().expect("not poisoned").clone();
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_killed_and_added_mid_stream_lose_and_double_nothing() {
    let test = "replicas_killed_and_added_mid_stream_lose_and_double_nothing";
    let Some(cluster) = RealCluster::acquire(test).await else {
        return;
    };
    let client = reqwest::Client::new();
    let sink_listener = TcpListener::bind("127.0.0.1:0").await.expect("sink port");
    let fleet = Fleet {
        brokers: cluster.brokers.clone(),
        ingest_db: database_args("ingest"),
        categorise_db: database_args("categorise"),
        trends_db: database_args("trends"),
        notify_db: database_args("notify"),
        sink: sink_listener.local_addr().expect("sink address"),
    };
    let sink = WebhookSink::new(
        [(SOURCE.to_owned(), dev_webhook_secret(SOURCE))].into(),
        false,
    );
    let stop_sink = tokio_util::sync::CancellationToken::new();
    sink.spawn(sink_listener, stop_sink.clone())
        .expect("webhook sink listens");

    let ingest_addrs = [free_addr().await, free_addr().await];
    let trends_addrs = [free_addr().await, free_addr().await, free_addr().await];
    let notify_addrs = [free_addr().await, free_addr().await, free_addr().await];
    let mut ingest: Vec<Child> = ingest_addrs.iter().map(|a| fleet.ingest(*a)).collect();
    let mut categorise = vec![fleet.categorise(), fleet.categorise()];
    let mut trends: Vec<Child> = trends_addrs[..2]
        .iter()
        .map(|a| fleet.trends(*a, &fleet.trends_db, "closeloop-trends"))
        .collect();
    let mut notify: Vec<Child> = notify_addrs[..2].iter().map(|a| fleet.notify(*a)).collect();
    for addr in ingest_addrs
        .iter()
        .chain(&trends_addrs[..2])
        .chain(&notify_addrs[..2])
    {
        eventually(Duration::from_secs(60), &format!("{addr} ready"), || {
            ready(&client, *addr)
        })
        .await;
    }

    let posted = Arc::new(AtomicUsize::new(0));
    let poster = tokio::spawn(post_complaints(
        ingest_addrs
            .iter()
            .map(|a| format!("http://{a}/v1/feedback"))
            .collect(),
        posted.clone(),
    ));
    wait_until_posted(&posted, 300).await;
    // One replica of each dies without a word: no commit, no leaving the group.
    let mut dead = vec![ingest.remove(0)];
    dead.push(categorise.remove(0));
    dead.push(trends.remove(0));
    dead.push(notify.remove(0));
    for child in &dead {
        send_signal(child, "-KILL");
    }
    wait_until_posted(&posted, 700).await;
    // New replicas join: partitions move to them.
    categorise.push(fleet.categorise());
    trends.push(fleet.trends(trends_addrs[2], &fleet.trends_db, "closeloop-trends"));
    notify.push(fleet.notify(notify_addrs[2]));
    let accepted = poster.await.expect("poster");
    assert!(
        accepted.len() >= COMPLAINTS * 9 / 10,
        "only {} accepted",
        accepted.len()
    );

    // Every accepted event categorised exactly once.
    // The killed ingest may have published requests it never answered: stored, not
    // accepted (their clients retried on the other replica, as a client would).
    let unanswered = assert_categorised_exactly_once(&fleet.categorise_db, &accepted).await;
    println!(
        "{} accepted, {unanswered} published but unanswered",
        accepted.len()
    );

    // trends on the replicas vs one trends replica reading the same mentions alone.
    let single_db = database_args("trends");
    let single_addr = free_addr().await;
    let _single = fleet.trends(single_addr, &single_db, "closeloop-trends-single");
    let mentions = "SELECT COUNT(*) FROM trends_mentions";
    let counted = eventually(
        Duration::from_secs(180),
        "both trends counted everything",
        || {
            let (replicas, single) = (fleet.trends_db.clone(), single_db.clone());
            async move {
                let a = count_rows(&replicas, "trends", mentions).await;
                let b = count_rows(&single, "trends", mentions).await;
                (a > 0 && a == b).then_some(a)
            }
        },
    )
    .await;
    let replicas_view = trends_addrs[1];
    let by_replicas = eventually(Duration::from_secs(60), "actions on the replicas", || {
        let client = client.clone();
        async move {
            let actions = actions_by_theme(&client, replicas_view).await;
            (!actions.is_empty()).then_some(actions)
        }
    })
    .await;
    for (theme, actions) in &by_replicas {
        assert_eq!(
            actions.len(),
            1,
            "{theme}: an action raised twice: {actions:?}"
        );
    }
    // The same actions with the same evidence. Both count the last mentions' evidence
    // just after storing them, so they agree within moments, not at once.
    eventually(
        Duration::from_secs(60),
        "the same actions and evidence alone (differences printed above)",
        || {
            let client = client.clone();
            async move {
                let replicated = actions_by_theme(&client, replicas_view).await;
                let single = actions_by_theme(&client, single_addr).await;
                let evidence = |actions: &BTreeMap<String, Vec<Value>>| -> Vec<(String, Value)> {
                    actions
                        .iter()
                        .map(|(theme, actions)| {
                            let evidence = &actions[0]["evidence"];
                            (
                                theme.clone(),
                                json!([evidence["distinct_customers"], evidence["negative_mentions"]]),
                            )
                        })
                        .collect()
                };
                let (replicated, single) = (evidence(&replicated), evidence(&single));
                if replicated != single {
                    println!("evidence (customers, negative mentions) differs: replicas {replicated:?} vs single {single:?}");
                    return None;
                }
                Some(())
            }
        },
    )
    .await;
    println!(
        "{counted} mentions counted; actions per theme: {:?}",
        by_replicas.keys()
    );

    // Resolved: every complainer is told once, whichever notify replica sends it.
    let action_ids: Vec<String> = by_replicas
        .values()
        .filter_map(|actions| actions[0]["action_id"].as_str().map(str::to_owned))
        .collect();
    resolve_all(replicas_view, &action_ids).await;
    assert_each_complainer_told_once(notify_addrs[1], &sink, &action_ids).await;
    stop_sink.cancel();
}
