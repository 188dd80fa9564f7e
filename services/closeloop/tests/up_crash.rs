//! `closeloop up` as a child process, killed with SIGKILL while feedback streams in,
//! several times in a row: after each restart on the same data directory, every event
//! that got a 202 is categorised exactly once and reaches trends and notify exactly once.
//! What was in flight at the kill (no answer) is retried with its Idempotency-Key, as a
//! client would, and at the end every event is in every store exactly once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use closeloop_store::{Database, DatabaseArgs};
use closeloop_tests::send_signal;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// Kill cycles, events offered per cycle, and the pace they are offered at (500/s): the
/// stream is still flowing when the kill comes, while the services are busy with it.
const KILLS: usize = 3;
const PER_ROUND: usize = 3_000;
const PACE: Duration = Duration::from_millis(2);
/// Requests in flight at once (the kill catches up to this many without an answer).
const CONCURRENCY: usize = 16;
const API_KEY: &str = "Bearer dev-key-shopdesk";

struct Up {
    child: Child,
    ingest: String,
}

/// Starts `closeloop up` on `data` and waits for the address of its ingest API.
async fn start_up(data: &Path, sink_port: u16) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .arg("up")
        .env("DATABASE_URL", database_url(data))
        .env("INGEST_HTTP_ADDR", "127.0.0.1:0")
        .env("CATEGORISE_HTTP_ADDR", "127.0.0.1:0")
        .env("TRENDS_HTTP_ADDR", "127.0.0.1:0")
        .env("NOTIFY_HTTP_ADDR", "127.0.0.1:0")
        .env("CLOSELOOP_SINK_ADDR", format!("127.0.0.1:{sink_port}"))
        .env("CLOSELOOP_IN_MEMORY_BROKER", "false")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("closeloop up starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ingest = None;
    while ingest.is_none() {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .expect("up printed its addresses in time")
            .expect("stdout readable")
            .expect("up exited before printing its addresses");
        if let Some(journal) = line.strip_prefix("Broker journal ") {
            println!("restart: {journal}");
        }
        ingest = line
            .trim()
            .strip_prefix("ingest")
            .map(|rest| rest.trim().trim_end_matches("/v1/feedback").to_owned());
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Up {
        child,
        ingest: ingest.unwrap_or_default(),
    }
}

fn database_url(data: &Path) -> String {
    format!("sqlite://{}", data.join("closeloop.db").display())
}

/// One event as a client would send it: its own id, and that id as Idempotency-Key.
fn body(id: Uuid, n: usize) -> String {
    let english = n.is_multiple_of(2);
    let text = if english {
        format!("The delivery was late again and the parcel arrived damaged (order {n}).")
    } else {
        format!("Die Lieferung kam schon wieder zu spät, das Paket war beschädigt ({n}).")
    };
    serde_json::json!({
        "event_id": id,
        "channel": "review",
        "customer": {"id": format!("crash-{}", n % 97), "consent": true, "locale": if english {"en-GB"} else {"de-DE"}},
        "text": text,
        "rating": 1,
    })
    .to_string()
}

/// Posts `events` (CONCURRENCY at a time, one per `pace` at most) and records each 202
/// in `accepted`; other outcomes (no answer, 409 while a killed request's claim is
/// open) leave it out.
async fn offer(
    client: reqwest::Client,
    ingest: String,
    events: Vec<(Uuid, usize)>,
    pace: Duration,
    accepted: Arc<Mutex<BTreeSet<Uuid>>>,
) {
    let start = tokio::time::Instant::now();
    futures::stream::iter(events.into_iter().enumerate())
        .for_each_concurrent(CONCURRENCY, |(index, (id, n))| {
            let accepted = accepted.clone();
            let (client, ingest) = (&client, &ingest);
            async move {
                tokio::time::sleep_until(start + pace * index as u32).await;
                let response = client
                    .post(format!("{ingest}/v1/feedback"))
                    .header("authorization", API_KEY)
                    .header("content-type", "application/json")
                    .header("idempotency-key", id.to_string())
                    .body(body(id, n))
                    .send()
                    .await;
                if matches!(&response, Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED) {
                    accepted.lock().expect("not poisoned").insert(id);
                }
            }
        })
        .await;
}

/// The feedback ids each service stored (each table's primary key holds a feedback once
/// per theme at most, so being there is being there exactly once).
struct Stored {
    categorised: BTreeSet<Uuid>,
    in_trends: BTreeSet<Uuid>,
    in_notify: BTreeSet<Uuid>,
}

async fn ids(db: &Database, query: &str) -> BTreeSet<Uuid> {
    closeloop_store::sqlx::query_scalar::<_, String>(query)
        .fetch_all(db.pool())
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|id| id.parse().ok())
        .collect()
}

async fn stored(data: &Path) -> Stored {
    let args = DatabaseArgs::new(database_url(data));
    let db = Database::connect(&args.config("up-crash-test"))
        .await
        .expect("database opens");
    let stored = Stored {
        categorised: ids(&db, "SELECT feedback_id FROM categorise_feedback").await,
        in_trends: ids(&db, "SELECT DISTINCT feedback_id FROM trends_mentions").await,
        in_notify: ids(&db, "SELECT DISTINCT feedback_id FROM notify_mentions").await,
    };
    db.close().await;
    stored
}

/// Waits until every event of `accepted` is in every store.
async fn wait_until_caught_up(data: &Path, accepted: &BTreeSet<Uuid>, round: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let stored = stored(data).await;
        let missing = |set: &BTreeSet<Uuid>| accepted.difference(set).count();
        let (categorised, trends, notify) = (
            missing(&stored.categorised),
            missing(&stored.in_trends),
            missing(&stored.in_notify),
        );
        if categorised + trends + notify == 0 {
            println!(
                "{round}: accepted {}, categorised {}, reached trends {}, reached notify {}",
                accepted.len(),
                accepted.len() - categorised,
                accepted.len() - trends,
                accepted.len() - notify,
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{round}: of {} accepted, {categorised} not categorised, {trends} not in trends, {notify} not in notify",
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("closeloop-up-crash-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("data dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accepted_feedback_survives_kill_9_of_up_and_is_processed_exactly_once() {
    let data = data_dir();
    let sink_port = free_port();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let events: Vec<(Uuid, usize)> = (0..KILLS * PER_ROUND)
        .map(|n| (Uuid::now_v7(), n))
        .collect();
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));

    for round in 0..KILLS {
        let mut up = start_up(&data, sink_port).await;
        // What an earlier kill left unanswered is offered again, as a client retries.
        let unanswered: Vec<(Uuid, usize)> = {
            let accepted = accepted.lock().expect("not poisoned");
            events[..round * PER_ROUND]
                .iter()
                .filter(|(id, _)| !accepted.contains(id))
                .copied()
                .collect()
        };
        let before = accepted.lock().expect("not poisoned").len();
        let batch: Vec<(Uuid, usize)> = unanswered
            .into_iter()
            .chain(
                events[round * PER_ROUND..(round + 1) * PER_ROUND]
                    .iter()
                    .copied(),
            )
            .collect();
        let sending = tokio::spawn(offer(
            client.clone(),
            up.ingest.clone(),
            batch,
            PACE,
            accepted.clone(),
        ));
        // Kill mid-stream, everywhere: once a third of this round's events got their 202
        // and categorise has stored a sixth (trends and notify are then at work too).
        let deadline = Instant::now() + Duration::from_secs(120);
        while accepted.lock().expect("not poisoned").len() < before + PER_ROUND / 3
            || stored(&data).await.categorised.len() < before + PER_ROUND / 6
        {
            assert!(
                Instant::now() < deadline,
                "round {round}: the loop is too slow"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        send_signal(&up.child, "-KILL");
        let _ = up.child.wait().await;
        let _ = sending.await;
        let at_kill = accepted.lock().expect("not poisoned").clone();

        let mut restarted = start_up(&data, sink_port).await;
        wait_until_caught_up(&data, &at_kill, &format!("kill {}", round + 1)).await;
        send_signal(&restarted.child, "-TERM");
        let _ = restarted.child.wait().await;
    }

    // The last run: everything still unanswered is retried until it is accepted.
    let mut up = start_up(&data, sink_port).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let unanswered: Vec<(Uuid, usize)> = {
            let accepted = accepted.lock().expect("not poisoned");
            events
                .iter()
                .filter(|(id, _)| !accepted.contains(id))
                .copied()
                .collect()
        };
        if unanswered.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} events never accepted",
            unanswered.len()
        );
        offer(
            client.clone(),
            up.ingest.clone(),
            unanswered,
            Duration::ZERO,
            accepted.clone(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all = accepted.lock().expect("not poisoned").clone();
    assert_eq!(all.len(), events.len());
    wait_until_caught_up(&data, &all, "end").await;
    let stored = stored(&data).await;
    assert_eq!(
        stored.categorised, all,
        "categorised exactly the accepted events"
    );
    send_signal(&up.child, "-TERM");
    let _ = up.child.wait().await;
    let _ = std::fs::remove_dir_all(&data);
}
