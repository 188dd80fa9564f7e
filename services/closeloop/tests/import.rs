//! `closeloop import` against a real ingest in this process, on the embedded broker with
//! its own SQLite file (or PostgreSQL schema): what lands on `feedback.raw.v1`, what
//! lands in the rejects file, what the summary says, and that an interrupted import
//! run again lands every row exactly once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use clap::Parser;
use closeloop::import::{import, ImportArgs, ImportError, SendError, Summary};
use closeloop_bus::{EmbeddedBroker, TopicSpec};
use closeloop_tests::{init_logs, read_topic, spawn_ingest_with};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const KEY: &str = "test-key-shopdesk";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ImportArgs,
}

/// The import's arguments as the command line would give them.
fn args(file: &Path, ingest: &str, more: &[&str]) -> ImportArgs {
    let mut argv = vec![
        "import".to_owned(),
        file.display().to_string(),
        "--url".into(),
        ingest.into(),
        "--api-key".into(),
        KEY.into(),
        "--source".into(),
        "shopdesk".into(),
    ];
    argv.extend(more.iter().map(|s| s.to_string()));
    Cli::parse_from(argv).args
}

/// A file in a fresh temporary directory, removed with it.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("closeloop-import-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self { dir }
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).expect("write the export");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An embedded broker and ingest on it for source `shopdesk`; returns ingest's base URL.
async fn ingest(
    adjust: impl FnOnce(&mut closeloop_ingest::Config),
) -> (EmbeddedBroker, String, CancellationToken) {
    init_logs();
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(3)).expect("broker");
    let (url, stop) = spawn_ingest_with(broker.bootstrap_servers(), "shopdesk", KEY, |config| {
        // A test may post many batches quickly; the rate limit has its own test below.
        config.rate_limit_per_source = 0.0;
        adjust(config);
    })
    .await;
    let base = url.trim_end_matches("/v1/feedback").to_owned();
    (broker, base, stop)
}

/// The raw feedback events on the topic (at least `min`, then until quiet).
async fn raw_events(broker: &EmbeddedBroker, min: usize) -> Vec<Value> {
    read_topic(
        broker.bootstrap_servers(),
        closeloop_events::topics::FEEDBACK_RAW,
        min,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await
}

fn rejects_of(summary: &Summary) -> Vec<Value> {
    let path = summary.rejects.as_ref().expect("a rejects file");
    std::fs::read_to_string(path)
        .expect("the rejects file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn day(days_ago: i64) -> String {
    (Utc::now() - chrono::Duration::days(days_ago))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_edge_cases_go_through_and_bad_rows_land_in_the_rejects_file() {
    let (broker, url, _stop) = ingest(|_| {}).await;
    let scratch = Scratch::new();
    // Semicolons, a byte-order mark, quoted delimiters, doubled quotes and a line break
    // inside a quoted field; then one bad row of each kind.
    let csv = format!(
        "\u{feff}Ticket;Kunde;Datum;Sterne;Kanal;Nachricht\n\
         T-1;c-1;{};2;E-Mail;\"Lieferung kam zu spät; sehr ärgerlich\"\n\
         T-2;c-2;{};5;Chat;\"Support said \"\"sorted\"\" and it was\"\n\
         T-3;c-3;{};1;Ticket;\"Erste Zeile\nzweite Zeile: Paket beschädigt\"\n\
         T-4;c-4;{};;Umfrage;Plain text without quotes\n\
         T-5;c-5;{};4;App Store;Great app\n\
         T-6;c-6;{};3;Ticket;\n\
         T-7;c-7;{};7;Ticket;Rating out of range\n\
         T-8;c-8;31/02/2026;3;Ticket;Not a date\n\
         T-9;c-9;{};3;Fax;Unknown channel\n\
         T-10;c-10;{};2;Ticket;Older than ingest takes\n",
        day(1),
        day(2),
        day(3),
        day(4),
        day(5),
        day(6),
        day(7),
        day(8),
        day(400),
    );
    let file = scratch.file("tickets.csv", csv.as_bytes());
    let args = args(
        &file,
        &url,
        &[
            "--text",
            "Nachricht",
            "--customer-id",
            "Kunde",
            "--date",
            "Datum",
            "--rating",
            "Sterne",
            "--channel",
            "Kanal",
            "--reference",
            "Ticket",
            "--batch-size",
            "3",
            "--concurrency",
            "2",
        ],
    );
    let summary = import(&args, &CancellationToken::new(), |_| {})
        .await
        .expect("the import runs");
    assert!(summary.stopped.is_none(), "{summary}");
    let t = &summary.tally;
    assert_eq!(
        (t.read, t.accepted, t.duplicates, t.rejected),
        (10, 5, 0, 5),
        "{summary}"
    );
    assert_eq!(t.too_old, 1, "{summary}");
    assert_eq!(
        t.rejected_by_field,
        [
            ("channel", 1),
            ("date", 1),
            ("occurred_at", 1),
            ("rating", 1),
            ("text", 1)
        ]
        .into_iter()
        .map(|(f, n)| (f.to_owned(), n))
        .collect()
    );
    assert_eq!(
        summary.rejects.as_deref(),
        Some(scratch.dir.join("tickets.csv.rejects.jsonl").as_path()),
        "beside the input"
    );

    let rejects = rejects_of(&summary);
    let by_line: HashMap<u64, &Value> = rejects
        .iter()
        .map(|r| (r["line"].as_u64().expect("a line"), r))
        .collect();
    // The quoted line break makes the file one line longer than its rows.
    assert_eq!(by_line[&8]["stage"], "read");
    assert_eq!(by_line[&8]["errors"][0]["field"], "text");
    assert_eq!(by_line[&8]["record"]["Ticket"], "T-6");
    assert!(by_line[&9]["errors"][0]["reason"]
        .as_str()
        .expect("a reason")
        .contains("between 1 and 5"));
    assert_eq!(by_line[&10]["errors"][0]["field"], "date");
    assert_eq!(by_line[&11]["errors"][0]["field"], "channel");
    assert_eq!(by_line[&12]["stage"], "ingest");
    assert_eq!(by_line[&12]["status"], 422);
    assert!(by_line[&12]["errors"][0]["reason"]
        .as_str()
        .expect("ingest's reason")
        .contains("days in the past"));
    assert_eq!(by_line[&12]["item"]["customer"]["reference"], "T-10");

    let events = raw_events(&broker, 5).await;
    let texts: HashSet<&str> = events.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(
        texts,
        HashSet::from([
            "Lieferung kam zu spät; sehr ärgerlich",
            "Support said \"sorted\" and it was",
            "Erste Zeile\nzweite Zeile: Paket beschädigt",
            "Plain text without quotes",
            "Great app",
        ])
    );
    let first = events
        .iter()
        .find(|e| e["customer"]["reference"] == "T-1")
        .expect("T-1 landed");
    assert_eq!(first["channel"], "email");
    assert_eq!(first["rating"], 2);
    assert_eq!(first["source"], "shopdesk");
    let given_at =
        chrono::DateTime::parse_from_rfc3339(first["given_at"].as_str().expect("a date"))
            .expect("RFC 3339");
    let expected = Utc::now() - chrono::Duration::days(1);
    assert!(
        (given_at.with_timezone(&Utc) - expected)
            .num_seconds()
            .abs()
            < 120,
        "the row's own date: {given_at}"
    );
    let app = events
        .iter()
        .find(|e| e["customer"]["reference"] == "T-5")
        .expect("T-5 landed");
    assert_eq!(app["channel"], "app-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_run_again_lands_every_row_exactly_once() {
    let (broker, url, _stop) = ingest(|_| {}).await;
    let scratch = Scratch::new();
    let rows = 2_000;
    let mut csv = String::from("id,customer,date,text\n");
    for n in 0..rows {
        csv.push_str(&format!(
            "{n},c-{},{},\"Row {n}: the parcel was late, again\"\n",
            n % 97,
            day(n as i64 % 300)
        ));
    }
    let file = scratch.file("export.csv", csv.as_bytes());
    // No reference mapped: the ids come from the rows' content.
    let args = args(
        &file,
        &url,
        &[
            "--text",
            "text",
            "--customer-id",
            "customer",
            "--date",
            "date",
            "--batch-size",
            "100",
            "--concurrency",
            "4",
        ],
    );

    // The first run is stopped (as Ctrl-C would) once 500 rows have an outcome, with
    // batches still in flight.
    let stop = CancellationToken::new();
    let first = import(&args, &stop, |tally| {
        if tally.done() >= 500 {
            stop.cancel();
        }
    })
    .await
    .expect("the first run starts");
    assert!(
        matches!(first.stopped, Some(ImportError::Interrupted)),
        "{first}"
    );
    assert!(
        first.tally.done() >= 500 && first.tally.done() < rows,
        "{first}"
    );

    let second = import(&args, &CancellationToken::new(), |_| {})
        .await
        .expect("the second run starts");
    assert!(second.stopped.is_none(), "{second}");
    let t = &second.tally;
    assert_eq!((t.read, t.rejected), (rows, 0), "{second}");
    assert_eq!(t.accepted + t.duplicates, rows, "every row has an outcome");
    assert!(
        t.duplicates >= first.tally.accepted,
        "what the first run had accepted is known: {second}"
    );
    assert!(
        first.tally.accepted + t.accepted <= rows,
        "no row accepted twice as new"
    );

    // On the topic: every row, under one event id each. A batch sent by both runs is
    // there twice under the same ids (ingest republishes a retry; consumers dedupe by id).
    let events = raw_events(&broker, rows as usize).await;
    let mut ids_by_text: HashMap<String, HashSet<String>> = HashMap::new();
    for event in &events {
        ids_by_text
            .entry(event["text"].as_str().expect("a text").to_owned())
            .or_default()
            .insert(event["event_id"].as_str().expect("an id").to_owned());
    }
    assert_eq!(ids_by_text.len(), rows as usize, "every row landed");
    assert!(
        ids_by_text.values().all(|ids| ids.len() == 1),
        "one event id per row"
    );
    let distinct: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(distinct.len(), rows as usize, "exactly once by id");

    // A third run changes nothing: every row is a duplicate.
    let third = import(&args, &CancellationToken::new(), |_| {})
        .await
        .expect("the third run starts");
    assert_eq!(
        (third.tally.accepted, third.tally.duplicates),
        (0, rows),
        "{third}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_with_a_mapping_file_and_batches_over_ingests_limits() {
    // ingest takes at most 4 items and 2 KiB per request; the import asks for more and
    // is told (422 without an item, 413): it halves its batches until they pass.
    let (broker, url, _stop) = ingest(|config| {
        config.max_batch = 4;
        config.max_body_bytes = 2048;
    })
    .await;
    let scratch = Scratch::new();
    let mapping = scratch.file(
        "reviews.toml",
        br#"
source = "shopdesk"

[columns]
text = "review.body"
customer_id = "user.id"
locale = "user.lang"
rating = "stars"
date = "created"
channel = "store"
consent = "contact_ok"
metadata = ["app_version"]

[defaults]
channel = "app-store"
touchpoint = "usage"

[channel_values]
"Huawei AppGallery" = "app-store"
"#,
    );
    let mut jsonl = String::new();
    for n in 0..30 {
        jsonl.push_str(
            &serde_json::json!({
                "review": {"body": format!("Review {n}: crashes when I open the camera")},
                "user": {"id": format!("u-{n}"), "lang": "en-GB"},
                "stars": n % 5 + 1,
                "created": (Utc::now() - chrono::Duration::hours(n)).to_rfc3339(),
                "store": if n % 2 == 0 { "Google Play" } else { "Huawei AppGallery" },
                "contact_ok": n % 3 == 0,
                "app_version": "4.2.0",
            })
            .to_string(),
        );
        jsonl.push('\n');
    }
    let file = scratch.file("reviews.jsonl", jsonl.as_bytes());
    let mut args = args(&file, &url, &["--batch-size", "20"]);
    args.source = None;
    args.mapping = Some(mapping);
    let summary = import(&args, &CancellationToken::new(), |_| {})
        .await
        .expect("the import runs");
    assert!(summary.stopped.is_none(), "{summary}");
    assert_eq!(
        (summary.tally.accepted, summary.tally.rejected),
        (30, 0),
        "{summary}"
    );
    assert!(summary.rejects.is_none(), "no rejects, no file");
    let events = raw_events(&broker, 30).await;
    let third = events
        .iter()
        .find(|e| e["customer"]["id"] == "u-3")
        .expect("u-3 landed");
    assert_eq!(third["channel"], "app-store");
    assert_eq!(third["touchpoint"], "usage");
    assert_eq!(third["customer"]["consent"], true);
    assert_eq!(third["customer"]["locale"], "en-GB");
    assert_eq!(third["rating"], 4);
    assert_eq!(third["metadata"]["app_version"], "4.2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_or_no_ingest_stops_the_import_with_an_error() {
    let (_broker, url, _stop) = ingest(|_| {}).await;
    let scratch = Scratch::new();
    let file = scratch.file("one.csv", b"c,t\nc-1,late parcel\n");
    let mut wrong_key = args(&file, &url, &["--text", "t", "--customer-id", "c"]);
    wrong_key.api_key = "not-the-key".into();
    let summary = import(&wrong_key, &CancellationToken::new(), |_| {})
        .await
        .expect("starts");
    assert!(
        matches!(
            summary.stopped,
            Some(ImportError::Send(SendError::Unauthorised {
                status: 401,
                ..
            }))
        ),
        "{summary}"
    );
    assert_eq!(summary.tally.accepted, 0);

    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let closed = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let unreachable = args(
        &file,
        &closed,
        &[
            "--text",
            "t",
            "--customer-id",
            "c",
            "--max-attempts",
            "3",
            "--retry-base-ms",
            "10",
        ],
    );
    let summary = import(&unreachable, &CancellationToken::new(), |_| {})
        .await
        .expect("starts");
    assert!(
        matches!(
            summary.stopped,
            Some(ImportError::Send(SendError::Unreachable {
                attempts: 3,
                ..
            }))
        ),
        "{summary}"
    );
    assert!(summary.to_string().contains("unconfirmed"), "{summary}");

    // A mapped column missing from the header stops it before anything is sent.
    let missing = args(&file, &url, &["--text", "Text", "--customer-id", "c"]);
    let error = import(&missing, &CancellationToken::new(), |_| {})
        .await
        .expect_err("refused before sending");
    assert!(error.to_string().contains("\"Text\" (text)"), "{error}");
}

/// A stand-in for ingest that first asks the client to wait (429 with `Retry-After`),
/// then fails (503), then accepts.
async fn flaky_ingest() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/v1/feedback/batch",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let counter = counter.clone();
            async move {
                assert!(headers
                    .get("authorization")
                    .is_some_and(|v| v == &format!("Bearer {KEY}")));
                let call = counter.fetch_add(1, Ordering::SeqCst);
                let items = serde_json::from_str::<Value>(&body).expect("JSON")["items"]
                    .as_array()
                    .map_or(0, Vec::len);
                match call {
                    0 => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "1")],
                        "{}".to_owned(),
                    ),
                    1 => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "0")],
                        "{}".to_owned(),
                    ),
                    _ => (
                        StatusCode::ACCEPTED,
                        [("retry-after", "0")],
                        serde_json::json!({"accepted": items, "event_ids": [], "duplicates": 0})
                            .to_string(),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_and_server_errors_are_retried() {
    let (url, calls) = flaky_ingest().await;
    let scratch = Scratch::new();
    let file = scratch.file("two.csv", b"c,t\nc-1,late parcel\nc-2,broken box\n");
    let args = args(
        &file,
        &url,
        &["--text", "t", "--customer-id", "c", "--retry-base-ms", "10"],
    );
    let started = std::time::Instant::now();
    let summary = import(&args, &CancellationToken::new(), |_| {})
        .await
        .expect("starts");
    assert!(summary.stopped.is_none(), "{summary}");
    assert_eq!(summary.tally.accepted, 2);
    assert_eq!(summary.tally.retries, 2, "one 429, one 503");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_export_imports_as_the_readme_shows() {
    // The sample's dates are fixed; an ingest that takes old feedback keeps this test
    // from ageing with them.
    let (broker, url, _stop) = ingest(|config| config.max_event_age_days = 36_500).await;
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/samples");
    let scratch = Scratch::new();
    let rejects = scratch.dir.join("rejects.jsonl");
    let mut args = args(
        &samples.join("helpdesk-export.csv"),
        &url,
        &["--rejects", rejects.to_str().expect("UTF-8 path")],
    );
    args.source = None;
    args.mapping = Some(samples.join("helpdesk-mapping.toml"));
    let summary = import(&args, &CancellationToken::new(), |_| {})
        .await
        .expect("the sample imports");
    assert!(summary.stopped.is_none(), "{summary}");
    assert_eq!(
        (
            summary.tally.read,
            summary.tally.accepted,
            summary.tally.rejected
        ),
        (22, 20, 2),
        "{summary}"
    );
    let events = raw_events(&broker, 20).await;
    assert!(
        events
            .iter()
            .any(|e| e["text"].as_str().is_some_and(|t| t.contains('\n'))),
        "the multi-line ticket kept its line breaks"
    );
    assert!(events.iter().any(|e| e["customer"]["locale"] == "de-DE"));
}
