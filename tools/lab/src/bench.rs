//! `closeloop-lab bench`: throughput and latency figures, printed as a table.
//!
//! Figures, not tests: nothing here fails on a slow machine. The load generator runs on
//! the same machine as what it measures, so read the figures with the machine's size in
//! mind (the table's first line names it).

mod cpu;
mod progress;
mod scrape;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use closeloop_bus::{EmbeddedBroker, KafkaArgs, TopicSpec};
use closeloop_classify::{Classifier, Input, LexiconClassifier};
use closeloop_events::{decode, topics, FeedbackCategorised};
use closeloop_ingest::SourceKey;
use closeloop_store::{redact_url, Backend, Database, DatabaseArgs, StoreConfig};
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use closeloop::demo::remove_sqlite_files;
use closeloop::demo_corpus::{self, DemoFeedback};
use closeloop::progress::thousands;
use closeloop::up::default_journal_dir;
use closeloop::up::{dev_key, dev_webhook_secret, DEV_SOURCES};
use closeloop_sinks::WebhookSink;
use std::path::PathBuf;

use cpu::CpuSample;
use progress::{Frame, Progress};
use watch::{drain_end, Categorised, DrainEnd};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds each throughput figure is measured for.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent HTTP requests of the ingest load generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Events per request in the batch figure.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Offered load of the end-to-end run, events per second.
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    /// Length of the end-to-end run, seconds.
    #[arg(long, default_value_t = 60)]
    pub e2e_seconds: u64,
    /// Events per request of the end-to-end and sustained parts: 1 posts single events,
    /// more posts batches (as a support tool's export would).
    #[arg(long, default_value_t = 1)]
    pub e2e_batch: usize,
    /// Offered rates of the sustained-rate search, events per second, tried in order
    /// until one falls behind.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2500,5000,7500,10000,12500,15000,20000"
    )]
    pub steps: Vec<u64>,
    /// Length of each step of the sustained-rate search, seconds.
    #[arg(long, default_value_t = 60)]
    pub step_seconds: u64,
    /// Database of the end-to-end and sustained runs' `closeloop up`: a SQLite file is
    /// recreated for each run; on PostgreSQL each run gets a schema of its own, dropped after.
    #[arg(long, default_value = "sqlite://data/bench.db")]
    pub database_url: String,
    /// Run the end-to-end part on this Kafka cluster (e.g. `deploy/kafka/cluster.sh`'s)
    /// instead of the embedded broker; its closeloop topics are emptied first.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Rows of the CSV export the import part generates and imports.
    #[arg(long, default_value_t = 1_000_000)]
    pub import_rows: u64,
    /// Only these parts; all when not given.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// rdkafka producer straight to the embedded broker (the ceiling).
    Producer,
    /// ingest: single-event requests and batches.
    Ingest,
    /// the classifier on one core.
    Classify,
    /// `closeloop up` as a child process under a fixed offered load.
    EndToEnd,
    /// The highest offered rate `closeloop up` sustains, stepping the rate.
    Sustained,
    /// `closeloop import` of a generated CSV export into ingest: rows/s and its memory.
    Import,
}

/// One line of the result table.
struct Row {
    part: String,
    figure: String,
    detail: String,
}

impl Row {
    fn new(part: impl Into<String>, figure: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            part: part.into(),
            figure: figure.into(),
            detail: detail.into(),
        }
    }
}

pub async fn run(args: BenchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let wants = |part| args.only.is_empty() || args.only.contains(&part);
    let corpus = demo_corpus::generate(11, 2000, chrono::Utc::now())?;
    let mut rows = Vec::new();
    let mut baselines = Baselines::default();
    println!("closeloop bench on {}\n", machine());

    if wants(Part::Producer) || wants(Part::Ingest) {
        let broker = EmbeddedBroker::start(1, &TopicSpec::all(6))?;
        let (raw, raw_cpu) =
            raw_producer(broker.bootstrap_servers(), &corpus, args.seconds).await?;
        baselines.producer_cpu_us = raw_cpu;
        rows.push(Row::new(
            "raw rdkafka producer",
            format!("{} events/s", thousands(raw)),
            format!(
                "idempotent, acks=all, embedded broker, 10k in flight{}",
                raw_cpu.map_or(String::new(), |us| format!(
                    "  {us:.1} µs CPU per event (producer + broker)"
                ))
            ),
        ));
        if wants(Part::Ingest) {
            rows.extend(ingest(&args, &broker, &corpus, raw).await?);
        }
    }
    if wants(Part::Classify) {
        let (row, cpu) = classify(&corpus, args.seconds);
        baselines.classify_cpu_us = cpu;
        rows.push(row);
    }
    if wants(Part::Import) {
        tokio::select! {
            result = import(&args, &corpus) => rows.push(result?),
            _ = shutdown.cancelled() => anyhow::bail!("interrupted"),
        }
    }
    if wants(Part::EndToEnd) {
        tokio::select! {
            result = end_to_end(&args, &corpus, &baselines) => rows.extend(result?),
            _ = shutdown.cancelled() => anyhow::bail!("interrupted"),
        }
    }
    if wants(Part::Sustained) {
        tokio::select! {
            result = sustained(&args, &corpus) => rows.extend(result?),
            _ = shutdown.cancelled() => anyhow::bail!("interrupted"),
        }
    }

    let width = rows
        .iter()
        .map(|r| r.part.chars().count())
        .max()
        .unwrap_or(0);
    let figure_width = rows
        .iter()
        .map(|r| r.figure.chars().count())
        .max()
        .unwrap_or(0);
    println!();
    for row in &rows {
        println!(
            "{:width$}  {:figure_width$}  {}",
            row.part, row.figure, row.detail
        );
    }
    Ok(())
}

/// CPU time per event of the parts measured before the end-to-end run, which it is
/// compared with: a ratio of two CPU times holds across machines better than either.
#[derive(Debug, Default)]
struct Baselines {
    /// Microseconds of CPU per event of the raw producer (with the broker it writes to).
    producer_cpu_us: Option<f64>,
    /// Microseconds of CPU per text of the classifier alone.
    classify_cpu_us: Option<f64>,
}

/// CPU model, cores and memory, so a figure is never read without its machine.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "? GiB".into());
    format!("{cpu}, {cores} cores, {memory}")
}

/// p50 / p99 / max of a set of latencies, in milliseconds.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn summary(&self) -> String {
        if self.0.is_empty() {
            return "no samples".into();
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index].as_secs_f64() * 1e3
        };
        format!(
            "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            at(0.50),
            at(0.99),
            at(1.0)
        )
    }
}

/// The corpus's feedback bodies as JSON: the producer ceiling's payloads and the ingest
/// bench's single-event requests.
fn raw_payloads(corpus: &[DemoFeedback]) -> Vec<Vec<u8>> {
    corpus
        .iter()
        .map(|item| serde_json::to_vec(&item.body).unwrap_or_default())
        .collect()
}

/// Acknowledged events per second, and CPU microseconds per event of this process (the
/// producer and the embedded broker it writes to, as in `closeloop up`).
async fn raw_producer(
    brokers: &str,
    corpus: &[DemoFeedback],
    seconds: u64,
) -> anyhow::Result<(u64, Option<f64>)> {
    print!("  raw producer …");
    let cpu_before = CpuSample::of_self();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "1")
        .create()?;
    let payloads = raw_payloads(corpus);
    let keys: Vec<String> = (0..400).map(|n| format!("c-{n}")).collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut acked = 0u64;
    let mut next = 0usize;
    while Instant::now() < deadline {
        while in_flight.len() < 10_000 {
            let payload = &payloads[next % payloads.len()];
            let key = &keys[next % keys.len()];
            next += 1;
            let record = FutureRecord::to("bench.raw.v1").key(key).payload(payload);
            in_flight.push(producer.send(record, Duration::from_secs(5)));
        }
        if let Some(result) = in_flight.next().await {
            if result.is_ok() {
                acked += 1;
            }
        }
    }
    while let Some(result) = in_flight.next().await {
        if result.is_ok() {
            acked += 1;
        }
    }
    let rate = (acked as f64 / started.elapsed().as_secs_f64()) as u64;
    let cpu = cpu_before
        .zip(CpuSample::of_self())
        .and_then(|(before, after)| cpu::micros_per_event(after.since(&before).0, acked));
    println!(" {} events/s", thousands(rate));
    Ok((rate, cpu))
}

async fn ingest(
    args: &BenchArgs,
    broker: &EmbeddedBroker,
    corpus: &[DemoFeedback],
    raw_rate: u64,
) -> anyhow::Result<Vec<Row>> {
    let (addr, stop, server) =
        start_ingest(broker, "sqlite://data/bench-ingest.db", args.batch_size).await?;

    // Request bodies are serialised before the clock starts, as the raw producer's
    // payloads are: the load generator shares this process's cores with ingest.
    let bodies: Vec<&Value> = corpus.iter().map(|item| &item.body).collect();
    let single_url = format!("http://{addr}/v1/feedback");
    print!("  ingest, single events …");
    let singles = raw_payloads(corpus).into_iter().map(Into::into).collect();
    let single = http_load(&single_url, args.connections, args.seconds, singles).await;
    println!(" {} requests/s", thousands(single.rate()));

    let batch_url = format!("http://{addr}/v1/feedback/batch");
    let batch_size = args.batch_size;
    print!("  ingest, batches of {batch_size} …");
    // Fewer connections: each batch request already carries hundreds of events.
    let connections = (args.connections / 8).max(2);
    // Consecutive batches walk through the corpus; after this many they repeat.
    let distinct = bodies.len() / gcd(bodies.len(), batch_size);
    let batch_bodies = (0..distinct)
        .map(|i| {
            let items: Vec<&Value> = (0..batch_size)
                .map(|j| bodies[(i * batch_size + j) % bodies.len()])
                .collect();
            request_body(&serde_json::json!({ "items": items }))
        })
        .collect();
    let batches = http_load(&batch_url, connections, args.seconds, batch_bodies).await;
    let batch_events = batches.rate() * batch_size as u64;
    println!(" {} events/s", thousands(batch_events));
    stop.cancel();
    let _ = server.await;

    let share = |rate: u64| {
        if raw_rate == 0 {
            String::new()
        } else {
            format!("{:.0}% of raw", rate as f64 * 100.0 / raw_rate as f64)
        }
    };
    Ok(vec![
        Row::new(
            "ingest single events",
            format!("{} requests/s", thousands(single.rate())),
            format!(
                "{}  {}  {} failed, {} connections",
                single.latencies.summary(),
                share(single.rate()),
                single.failed,
                args.connections
            ),
        ),
        Row::new(
            format!("ingest batches of {batch_size}"),
            format!("{} events/s", thousands(batch_events)),
            format!(
                "{} per batch  {}  {} failed, {} connections",
                batches.latencies.summary(),
                share(batch_events),
                batches.failed,
                connections
            ),
        ),
    ])
}

/// ingest in this process on `broker`, on a fresh database at `database_url`, for source
/// `bench` with key `bench-key`, without a rate limit (the bench measures throughput;
/// one source at full speed is what it is for).
async fn start_ingest(
    broker: &EmbeddedBroker,
    database_url: &str,
    max_batch: usize,
) -> anyhow::Result<(
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), closeloop_ingest::Error>>,
)> {
    let database = DatabaseArgs::new(database_url);
    remove_sqlite_files(&database.database_url);
    let mut config = closeloop_ingest::Config::parse_from(["ingest"]);
    config.kafka = KafkaArgs::new(broker.bootstrap_servers());
    config.database = database;
    config.http_addr = ([127, 0, 0, 1], 0).into();
    config.max_batch = config.max_batch.max(max_batch);
    config.rate_limit_per_source = 0.0;
    config.api_keys = vec![SourceKey {
        source: "bench".into(),
        key: "bench-key".into(),
    }];
    let service = closeloop_ingest::Service::build(config).await?;
    let addr = service.http_addr();
    let stop = CancellationToken::new();
    let server = tokio::spawn(service.run_until_stopped(stop.clone()));
    Ok((addr, stop, server))
}

struct HttpLoad {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latencies: Latencies,
}

impl HttpLoad {
    fn rate(&self) -> u64 {
        (self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)) as u64
    }
}

fn request_body(body: &impl serde::Serialize) -> bytes::Bytes {
    serde_json::to_vec(body).unwrap_or_default().into()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}

/// `connections` closed-loop clients posting the `bodies` in turn as fast as answers come
/// back.
async fn http_load(
    url: &str,
    connections: usize,
    seconds: u64,
    bodies: Vec<bytes::Bytes>,
) -> HttpLoad {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap_or_default();
    let bodies = Arc::new(bodies);
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for _ in 0..connections {
        let (client, url, bodies, counter) = (
            client.clone(),
            url.to_owned(),
            bodies.clone(),
            counter.clone(),
        );
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed) as usize;
                let payload = bodies
                    .get(i % bodies.len().max(1))
                    .cloned()
                    .unwrap_or_default();
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth("bench-key")
                    .header("content-type", "application/json")
                    .body(payload)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().as_u16() == 202 => {
                        ok += 1;
                        latencies.push(sent.elapsed());
                    }
                    _ => failed += 1,
                }
            }
            (ok, failed, latencies)
        }));
    }
    let mut load = HttpLoad {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Latencies(Vec::new()),
    };
    for client in clients {
        if let Ok((ok, failed, latencies)) = client.await {
            load.ok += ok;
            load.failed += failed;
            load.latencies.0.extend(latencies);
        }
    }
    load.elapsed = started.elapsed();
    load
}

/// The row, and CPU microseconds per text.
fn classify(corpus: &[DemoFeedback], seconds: u64) -> (Row, Option<f64>) {
    print!("  classify, one core …");
    let classifier = LexiconClassifier::default();
    let texts: Vec<(String, Option<String>)> = corpus
        .iter()
        .map(|item| {
            (
                item.body["text"].as_str().unwrap_or_default().to_owned(),
                item.body["customer"]["locale"].as_str().map(str::to_owned),
            )
        })
        .collect();
    // This thread's CPU time, not the wall clock: on a busy machine the thread waits for
    // a core, and that wait is not the classifier's cost.
    let cpu_before = cpu::this_thread();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut done = 0u64;
    let mut themes = 0usize;
    while Instant::now() < deadline {
        for (text, locale) in &texts {
            let result = classifier.classify(&Input {
                text,
                language_hint: locale.as_deref(),
                rating: None,
                nps: None,
            });
            themes += result.themes.len();
        }
        done += texts.len() as u64;
    }
    let rate = (done as f64 / started.elapsed().as_secs_f64()) as u64;
    let cpu = cpu_before
        .zip(cpu::this_thread())
        .and_then(|(before, after)| cpu::micros_per_event(after.saturating_sub(before), done));
    println!(" {} texts/s", thousands(rate));
    let average_chars =
        texts.iter().map(|(t, _)| t.chars().count()).sum::<usize>() / texts.len().max(1);
    let row = Row::new(
        "classify (one core)",
        format!("{} texts/s", thousands(rate)),
        format!(
            "demo corpus, {} distinct texts, {average_chars} chars on average, {:.2} themes per text{}",
            texts.len(),
            themes as f64 / done.max(1) as f64,
            cpu.map_or(String::new(), |us| format!("  {us:.1} µs CPU per text")),
        ),
    );
    (row, cpu)
}

/// Base URLs (`http://host:port`) of what `closeloop up` started, from what it printed.
#[derive(Default)]
struct UpAddresses {
    bootstrap: Option<String>,
    ingest: Option<String>,
    categorise: Option<String>,
    trends: Option<String>,
    notify: Option<String>,
}

impl UpAddresses {
    /// The services whose `/metrics` tell their CPU, by name.
    fn services(&self) -> Vec<(&'static str, &str)> {
        [
            ("ingest", &self.ingest),
            ("categorise", &self.categorise),
            ("trends", &self.trends),
            ("notify", &self.notify),
        ]
        .into_iter()
        .filter_map(|(name, url)| Some((name, url.as_deref()?)))
        .collect()
    }
}

/// Where one run of `closeloop up` keeps its data: the SQLite file and the embedded
/// broker's journal beside it, recreated for the run, or on PostgreSQL a schema of the
/// run's own that all four services share (as they can share one SQLite file) and a
/// journal of its own, both removed after the run. No run sees another's rows or replays
/// another's backlog, and nothing the bench did not create is touched.
struct RunDatabase {
    url: String,
    schema: Option<String>,
    journal: PathBuf,
}

impl RunDatabase {
    fn fresh(url: &str) -> anyhow::Result<Self> {
        let (schema, journal) = match Backend::of_url(url) {
            Some(Backend::Sqlite) => {
                remove_sqlite_files(url);
                (None, default_journal_dir(url))
            }
            Some(Backend::Postgres) => {
                let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
                let journal = PathBuf::from(format!("data/{schema}-broker"));
                (Some(schema), journal)
            }
            None => anyhow::bail!("--database-url must be sqlite://… or postgres://…, not {url}"),
        };
        Ok(Self {
            url: url.to_owned(),
            schema,
            journal,
        })
    }

    /// Removes what the run created on PostgreSQL: its journal and its schema (a SQLite
    /// run's file and journal stay until the next run recreates them, for a look after).
    async fn remove_run_data(&self) -> anyhow::Result<()> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let _ = std::fs::remove_dir_all(&self.journal);
        let database = Database::connect(&StoreConfig::new(&self.url)).await?;
        let dropped =
            closeloop_store::sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(database.pool())
                .await;
        database.close().await;
        dropped.with_context(|| format!("could not drop the bench's schema {schema}"))?;
        Ok(())
    }
}

/// `closeloop up` as a child process, with the webhook sink its notifications go to.
struct UpRun {
    child: tokio::process::Child,
    addresses: UpAddresses,
    sink: WebhookSink,
    sink_stop: CancellationToken,
    database: RunDatabase,
}

impl UpRun {
    async fn start(args: &BenchArgs) -> anyhow::Result<Self> {
        let database = RunDatabase::fresh(&args.database_url)?;
        let sink_listener = TcpListener::bind("127.0.0.1:0").await?;
        let sink_addr = sink_listener.local_addr()?;
        let secrets: HashMap<String, String> = DEV_SOURCES
            .iter()
            .map(|source| (source.to_string(), dev_webhook_secret(source)))
            .collect();
        let sink = WebhookSink::new(secrets.clone(), false);
        let sink_stop = CancellationToken::new();
        sink.spawn(sink_listener, sink_stop.clone())?;
        let (child, addresses) = start_up(args, &database, sink_addr, &secrets).await?;
        Ok(Self {
            child,
            addresses,
            sink,
            sink_stop,
            database,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        self.sink_stop.cancel();
        if let Err(error) = self.database.remove_run_data().await {
            eprintln!("{error:#}");
        }
    }
}

async fn end_to_end(
    args: &BenchArgs,
    corpus: &[DemoFeedback],
    baselines: &Baselines,
) -> anyhow::Result<Vec<Row>> {
    let up = UpRun::start(args).await?;
    let result = drive(args, corpus, &up, baselines).await;
    up.stop().await;
    result
}

async fn start_up(
    args: &BenchArgs,
    database: &RunDatabase,
    sink: SocketAddr,
    secrets: &HashMap<String, String>,
) -> anyhow::Result<(tokio::process::Child, UpAddresses)> {
    let join = |pairs: Vec<String>| pairs.join(",");
    let webhooks = join(
        DEV_SOURCES
            .iter()
            .map(|s| format!("{s}=http://{sink}/webhooks/{s}"))
            .collect(),
    );
    let webhook_secrets = join(secrets.iter().map(|(s, k)| format!("{s}={k}")).collect());
    // This binary's hidden `up` runs the product's `closeloop::up`, the code `closeloop up`
    // runs, so the bench measures the product without needing its binary built beside.
    let asked_log = std::env::var("BENCH_UP_LOG").ok();
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.arg("up");
    if let Some(brokers) = &args.brokers {
        command.args(["--brokers", brokers, "--fresh-topics"]);
    }
    match &database.schema {
        Some(schema) => command.env("DATABASE_SCHEMA", schema),
        None => command.env_remove("DATABASE_SCHEMA"),
    };
    command
        .env("CLOSELOOP_BROKER_JOURNAL", &database.journal)
        .env_remove("CLOSELOOP_IN_MEMORY_BROKER");
    let mut child = command
        .env("DATABASE_URL", &database.url)
        .env("INGEST_HTTP_ADDR", "127.0.0.1:0")
        .env("CATEGORISE_HTTP_ADDR", "127.0.0.1:0")
        .env("TRENDS_HTTP_ADDR", "127.0.0.1:0")
        .env("NOTIFY_HTTP_ADDR", "127.0.0.1:0")
        .env("CLOSELOOP_SINK_ADDR", "127.0.0.1:0")
        .env("NOTIFY_WEBHOOKS", webhooks)
        .env("NOTIFY_WEBHOOK_SECRETS", webhook_secrets)
        // `BENCH_UP_LOG` lets a profiling run ask for more (e.g. `sqlx::query=debug`).
        .env("RUST_LOG", asked_log.as_deref().unwrap_or("warn"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("could not start `closeloop up`")?;
    let stdout = child.stdout.take().context("no stdout of `closeloop up`")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addresses = UpAddresses::default();
    let base = |url: &str, suffix: &str| url.split_once(suffix).map(|(base, _)| base.to_owned());
    let read = async {
        while let Some(line) = lines.next_line().await? {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["Kafka", "bootstrap", addr, ..] => addresses.bootstrap = Some(addr.to_string()),
                ["ingest", url, ..] => addresses.ingest = base(url, "/v1/feedback"),
                ["categorise", url, ..] => addresses.categorise = base(url, "/metrics"),
                ["trends", "(ops", "API)", url, ..] => addresses.trends = base(url, "/v1/actions"),
                ["notify", url, ..] => addresses.notify = base(url, "/v1/notifications"),
                ["Ctrl-C", ..] => return Ok::<_, anyhow::Error>(()),
                _ => {}
            }
        }
        anyhow::bail!("`closeloop up` ended before it was up")
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .context("`closeloop up` did not come up within 120 s")??;
    // Keep draining its stdout (where its logs go) so it never blocks on a full pipe;
    // a run that asked for logs gets them on stderr.
    let forward_logs = asked_log.is_some();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if forward_logs {
                eprintln!("{line}");
            }
        }
    });
    Ok((child, addresses))
}

/// How long the drain waits with nothing new arriving before it calls the loop stalled.
const STALL_AFTER: Duration = Duration::from_secs(30);
/// How long the drain waits in all.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// Requests the load generator keeps in flight at most.
const IN_FLIGHT: u32 = 4096;

/// A corpus item as a live source sends it: it occurred now. The corpus's own times span
/// 50 minutes and the load goes through all of it every second or so: sent as they are,
/// every theme's event time would jump 50 minutes back each time, and trends would
/// recount most of its window on nearly every batch (a backfill, not a live stream).
struct Live<'a> {
    body: &'a Value,
    occurred_at: &'a str,
}

impl serde::Serialize for Live<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = self.body.as_object().into_iter().flatten();
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in fields.filter(|(key, _)| *key != "occurred_at") {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("occurred_at", self.occurred_at)?;
        map.end()
    }
}

/// The end-to-end runs' open-loop load: requests leave on schedule whether or not
/// earlier ones were answered, up to [`IN_FLIGHT`] (events beyond it are not offered).
struct Load<'a> {
    client: reqwest::Client,
    single_url: String,
    batch_url: String,
    corpus: &'a [DemoFeedback],
    /// Events per request: 1 posts to `/v1/feedback`, more to `/v1/feedback/batch`.
    batch: usize,
    /// Events sent so far.
    sent: u64,
    /// Events not sent because every request slot was waiting.
    not_offered: u64,
    accepted: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// Request → 202, per request.
    latencies: Arc<Mutex<Vec<Duration>>>,
    in_flight: Arc<Semaphore>,
}

impl<'a> Load<'a> {
    fn new(ingest: &str, corpus: &'a [DemoFeedback], batch: usize) -> Self {
        Self {
            client: reqwest::Client::new(),
            single_url: format!("{ingest}/v1/feedback"),
            batch_url: format!("{ingest}/v1/feedback/batch"),
            corpus,
            batch: batch.max(1),
            sent: 0,
            not_offered: 0,
            accepted: Arc::default(),
            failed: Arc::default(),
            latencies: Arc::default(),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT as usize)),
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Offers `rate` events per second for `seconds`, in 10 ms ticks; `each_second` is
    /// called with the seconds done and the events accepted so far.
    async fn offer(&mut self, rate: u64, seconds: u64, mut each_second: impl FnMut(u64, u64)) {
        let ticks_per_second = 100u64;
        let per_tick = rate as f64 / ticks_per_second as f64;
        let mut due = 0.0;
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / ticks_per_second));
        for n in 0..seconds * ticks_per_second {
            tick.tick().await;
            due += per_tick;
            while due >= self.batch as f64 {
                due -= self.batch as f64;
                self.send();
            }
            if n % ticks_per_second == ticks_per_second - 1 {
                each_second((n + 1) / ticks_per_second, self.accepted());
            }
        }
    }

    /// One request of `batch` events, answered in the background.
    fn send(&mut self) {
        let events = self.batch as u64;
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.not_offered += events;
            return;
        };
        let first = self.sent as usize;
        self.sent += events;
        let item = |i: usize| &self.corpus[(first + i) % self.corpus.len()];
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let live = |i: usize| Live {
            body: &item(i).body,
            occurred_at: &now,
        };
        // A batch is one source's: it goes under the first item's key.
        let request = if self.batch == 1 {
            self.client.post(&self.single_url).json(&live(0))
        } else {
            let items: Vec<Live> = (0..self.batch).map(live).collect();
            self.client
                .post(&self.batch_url)
                .json(&serde_json::json!({ "items": items }))
        }
        .bearer_auth(dev_key(item(0).source));
        let (accepted, failed, latencies) = (
            self.accepted.clone(),
            self.failed.clone(),
            self.latencies.clone(),
        );
        tokio::spawn(async move {
            let posted = Instant::now();
            match request.send().await {
                Ok(r) if r.status().as_u16() == 202 => {
                    accepted.fetch_add(events, Ordering::Relaxed);
                    if let Ok(mut l) = latencies.lock() {
                        l.push(posted.elapsed());
                    }
                }
                _ => {
                    failed.fetch_add(events, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
    }

    /// Waits until every request sent has been answered.
    async fn settle(&self) {
        let _all = self.in_flight.acquire_many(IN_FLIGHT).await;
    }
}

/// Waits until `seen()` reaches `accepted`, nothing new arrives for [`STALL_AFTER`], or
/// [`DRAIN_LIMIT`] passes; `on_change` runs whenever more were seen.
async fn drain(
    accepted: u64,
    seen: impl Fn() -> u64,
    mut on_change: impl FnMut(),
    progress: &mut Progress,
    offered_seconds: u64,
) -> DrainEnd {
    let started = Instant::now();
    let (mut last_seen, mut last_change) = (seen(), Instant::now());
    loop {
        let now_seen = seen();
        if now_seen != last_seen {
            (last_seen, last_change) = (now_seen, Instant::now());
            on_change();
        }
        let frame = Frame {
            second: offered_seconds,
            of: offered_seconds,
            accepted,
            categorised: now_seen,
            draining: Some(started.elapsed().as_secs()),
        };
        if let Some(end) = drain_end(
            accepted,
            now_seen,
            last_change.elapsed(),
            started.elapsed(),
            STALL_AFTER,
            DRAIN_LIMIT,
        ) {
            progress.finish(&frame);
            return end;
        }
        progress.show(&frame);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A consumer of `feedback.categorised.v1` beside the loop: what a downstream service sees.
struct Watcher {
    categorised: Arc<Mutex<Categorised>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Watcher {
    /// Starts watching from the topic's beginning; returns once its partitions are
    /// assigned, so the first events' latency is the loop's, not a group join's.
    async fn start(bootstrap: &str) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            // Assigned, never joined: the id only satisfies the client.
            .set("group.id", "bench-watcher")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let topic = topics::FEEDBACK_CATEGORISED;
        let partitions = partition_count(bootstrap, topic)
            .await
            .with_context(|| format!("no metadata for {topic}"))?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let categorised = Arc::new(Mutex::new(Categorised::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch_categorised(
            consumer,
            categorised.clone(),
            stop.clone(),
        ));
        Ok(Self {
            categorised,
            stop,
            task,
        })
    }

    fn seen(&self) -> u64 {
        self.categorised.lock().map_or(0, |c| c.distinct())
    }

    async fn finish(self) -> Categorised {
        self.stop.cancel();
        let _ = self.task.await;
        self.categorised
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

async fn drive(
    args: &BenchArgs,
    corpus: &[DemoFeedback],
    up: &UpRun,
    baselines: &Baselines,
) -> anyhow::Result<Vec<Row>> {
    let addresses = &up.addresses;
    let (Some(bootstrap), Some(ingest), Some(trends)) = (
        addresses.bootstrap.clone(),
        addresses.ingest.clone(),
        addresses.trends.clone(),
    ) else {
        anyhow::bail!("could not read the addresses `closeloop up` printed");
    };
    let pid = up.pid();
    let watcher = Watcher::start(&bootstrap).await?;
    let client = reqwest::Client::new();
    let mut load = Load::new(&ingest, corpus, args.e2e_batch);
    let mut progress = Progress::for_stdout();
    // On PostgreSQL the loop's work is partly the server's: measured when it runs here.
    let server_here = postgres_runs_here(&args.database_url);
    let server_cpu = || server_here.then(cpu::postgres_server).flatten();
    let cpu_before = pid.and_then(CpuSample::of);
    let server_before = server_cpu();
    let services_before = ServiceWork::read(&client, addresses).await;
    let started = Instant::now();
    load.offer(args.rate, args.e2e_seconds, |second, accepted| {
        progress.show(&Frame {
            second,
            of: args.e2e_seconds,
            accepted,
            categorised: watcher.seen(),
            draining: None,
        })
    })
    .await;
    load.settle().await;
    let offered_seconds = started.elapsed().as_secs_f64();
    let accepted_total = load.accepted();

    // The loop's CPU time as of the last categorised event seen: the quiet wait of a
    // stalled drain is not its cost.
    let mut cpu_after = None;
    let mut server_after = None;
    let drain = drain(
        accepted_total,
        || watcher.seen(),
        || {
            cpu_after = pid.and_then(CpuSample::of);
            server_after = server_cpu();
        },
        &mut progress,
        args.e2e_seconds,
    )
    .await;
    let cpu_after = cpu_after.or_else(|| pid.and_then(CpuSample::of));
    let server_after = server_after.or_else(server_cpu);
    let categorised = watcher.finish().await;
    let counted = trends_counted(&client, &trends).await;
    let services_after = ServiceWork::read(&client, addresses).await;

    // Where the missing events went: what categorise consumed, what the broker dropped.
    let categorise_consumed = match &addresses.categorise {
        Some(url) => categorise_consumed(&client, url).await,
        None => None,
    };
    let dropped = dropped_by_broker(&bootstrap).await;

    let notified = notify_round(&client, &trends, &up.sink).await?;
    let peak_rss = pid.and_then(peak_rss_kib);

    let accept = load
        .latencies
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    let mut rows = vec![
        Row::new(
            format!(
                "end-to-end @ {}/s, {} s{}",
                thousands(args.rate),
                args.e2e_seconds,
                if args.brokers.is_some() {
                    ", real Kafka"
                } else {
                    ""
                }
            ),
            format!(
                "{} events/s offered",
                thousands((load.sent as f64 / offered_seconds) as u64)
            ),
            format!(
                "{} accepted, {} failed, {} not offered ({IN_FLIGHT} requests in flight){}",
                thousands(accepted_total),
                load.failed(),
                load.not_offered,
                requests_of(load.batch)
            ),
        ),
        Row::new("  request → 202", "", Latencies(accept).summary()),
        Row::new(
            "  accepted → categorised",
            "",
            format!(
                "{}  ({} of {} seen by a consumer{})",
                Latencies(categorised.latencies.clone()).summary(),
                thousands(categorised.distinct()),
                thousands(accepted_total),
                match drain {
                    DrainEnd::AllSeen => String::new(),
                    DrainEnd::Stalled => format!(
                        "; nothing new for {} s, stopped waiting",
                        STALL_AFTER.as_secs()
                    ),
                    DrainEnd::TimedOut => format!(
                        "; still arriving after {} s, stopped waiting",
                        DRAIN_LIMIT.as_secs()
                    ),
                }
            ),
        ),
        Row::new(
            "  accepted → counted by trends",
            "",
            counted.unwrap_or_else(|| "no mention counted".into()),
        ),
    ];
    if categorised.distinct() < accepted_total || dropped.iter().any(|(_, n)| *n > 0) {
        rows.push(Row::new(
            "  missing events",
            "",
            missing_detail(accepted_total, categorise_consumed, &categorised, &dropped),
        ));
    }
    rows.push(match notified {
        Some((count, latencies)) => Row::new(
            "  resolved → notified",
            "",
            format!(
                "{}  ({count} customers, webhook)",
                Latencies(latencies).summary()
            ),
        ),
        None => Row::new("  resolved → notified", "", "no action was raised"),
    });
    if let (Some(before), Some(after)) = (&cpu_before, &cpu_after) {
        let server = server_before
            .zip(server_after)
            .map(|(before, after)| after.saturating_sub(before));
        rows.extend(cpu_rows(before, after, server, accepted_total, baselines));
    }
    rows.extend(ServiceWork::rows(
        &services_before,
        &services_after,
        accepted_total,
    ));
    rows.push(Row::new(
        "peak RSS of closeloop up",
        peak_rss.map_or("unknown".into(), |kib| {
            format!("{:.0} MiB", kib as f64 / 1024.0)
        }),
        match &args.brokers {
            Some(brokers) => format!(
                "4 services on Kafka at {brokers}, {}",
                redact_url(&args.database_url)
            ),
            None => format!(
                "embedded broker + 4 services, {}",
                redact_url(&args.database_url)
            ),
        },
    ));
    Ok(rows)
}

/// ", in batches of N" when the load posts batches.
fn requests_of(batch: usize) -> String {
    if batch > 1 {
        format!(", posted in batches of {batch}")
    } else {
        String::new()
    }
}

/// The highest offered rate the loop sustains: each step offers its rate for
/// `--step-seconds` on one `closeloop up`, starting with an empty backlog; a step is
/// sustained when ingest took every event and the backlog (accepted, not yet categorised)
/// did not grow over the step's second half (see [`Step::judge`]).
async fn sustained(args: &BenchArgs, corpus: &[DemoFeedback]) -> anyhow::Result<Vec<Row>> {
    let up = UpRun::start(args).await?;
    let result = step_rates(args, corpus, &up).await;
    up.stop().await;
    result
}

async fn step_rates(
    args: &BenchArgs,
    corpus: &[DemoFeedback],
    up: &UpRun,
) -> anyhow::Result<Vec<Row>> {
    let (Some(bootstrap), Some(ingest)) = (&up.addresses.bootstrap, &up.addresses.ingest) else {
        anyhow::bail!("could not read the addresses `closeloop up` printed");
    };
    let watcher = Watcher::start(bootstrap).await?;
    let mut load = Load::new(ingest, corpus, args.e2e_batch);
    let mut progress = Progress::for_stdout();
    let mut steps = Vec::new();
    let mut best = None;
    for &rate in &args.steps {
        let (failed_before, not_offered_before) = (load.failed(), load.not_offered);
        // (accepted, categorised) at the end of each second of the step.
        let mut samples = Vec::new();
        load.offer(rate, args.step_seconds, |_, accepted| {
            samples.push((accepted, watcher.seen()))
        })
        .await;
        let step = Step::judge(
            rate,
            args.step_seconds,
            &samples,
            load.failed() - failed_before + load.not_offered - not_offered_before,
        );
        println!("  {}", step.detail());
        load.settle().await;
        // The next step starts with the backlog gone (or as far as it goes).
        drain(
            load.accepted(),
            || watcher.seen(),
            || {},
            &mut progress,
            args.step_seconds,
        )
        .await;
        let sustained = step.sustained;
        steps.push(step);
        if !sustained {
            break;
        }
        best = Some(rate);
    }
    let _ = watcher.finish().await;
    let mut rows = vec![Row::new(
        format!("sustained rate, {} s steps", args.step_seconds),
        best.map_or("none".into(), |rate| {
            format!("{} events/s", thousands(rate))
        }),
        format!(
            "highest offered rate without a growing backlog{}; {}",
            requests_of(load.batch),
            redact_url(&args.database_url)
        ),
    )];
    rows.extend(steps.iter().map(|step| {
        Row::new(
            format!("  step {}/s", thousands(step.rate)),
            "",
            step.detail(),
        )
    }));
    Ok(rows)
}

/// One step of the sustained-rate search.
#[derive(Debug, PartialEq)]
struct Step {
    rate: u64,
    /// Over the step's second half, per second.
    accepted_per_second: u64,
    categorised_per_second: u64,
    /// Accepted and not yet categorised at the half and at the end.
    backlog: (u64, u64),
    /// How fast the backlog grew over the second half, events per second.
    growth_per_second: f64,
    /// Events ingest refused or the generator could not send.
    refused: u64,
    sustained: bool,
}

impl Step {
    /// `samples`: (accepted, categorised) at the end of each second. The backlog's trend
    /// over the second half is its least-squares slope over those seconds, not the
    /// difference of two samples: a single second's backlog moves with whatever batch was
    /// in flight. A backlog that grows by more than 1 % of the offered rate per second is
    /// growing (over an hour that would be more than half a minute of load behind).
    fn judge(rate: u64, seconds: u64, samples: &[(u64, u64)], refused: u64) -> Self {
        let last = samples.len().saturating_sub(1);
        let (half, end) = match samples {
            [] => ((0, 0), (0, 0)),
            _ => (samples[last / 2], samples[last]),
        };
        // Seconds between the half-way sample and the last one.
        let span = (last - last / 2).max(1) as u64;
        let backlog = |(accepted, seen): (u64, u64)| accepted.saturating_sub(seen);
        let second_half: Vec<f64> = samples
            .get(last / 2..)
            .unwrap_or_default()
            .iter()
            .map(|&sample| backlog(sample) as f64)
            .collect();
        let growth_per_second = slope(&second_half);
        let accepted_per_second = (end.0 - half.0) / span;
        let sustained = samples.len() as u64 == seconds
            && refused == 0
            && accepted_per_second * 100 >= rate * 95
            && growth_per_second * 100.0 <= rate as f64;
        Self {
            rate,
            accepted_per_second,
            categorised_per_second: (end.1 - half.1) / span,
            backlog: (backlog(half), backlog(end)),
            growth_per_second,
            refused,
            sustained,
        }
    }

    fn detail(&self) -> String {
        format!(
            "{}/s offered: {} — second half accepted {}/s, categorised {}/s, backlog {} → {} ({:+.0}/s){}",
            thousands(self.rate),
            if self.sustained {
                "sustained"
            } else {
                "falls behind"
            },
            thousands(self.accepted_per_second),
            thousands(self.categorised_per_second),
            thousands(self.backlog.0),
            thousands(self.backlog.1),
            self.growth_per_second,
            if self.refused > 0 {
                format!(", {} refused or not offered", thousands(self.refused))
            } else {
                String::new()
            }
        )
    }
}

/// Accepted → counted by trends, from trends' `closeloop_pipeline_latency_seconds`
/// (`stage="counted"`), once trends stopped counting (or after a minute): p50 and p99 as
/// the histogram's bucket bounds.
async fn trends_counted(client: &reqwest::Client, trends: &str) -> Option<String> {
    let scrape = || async {
        let text = metrics_text(client, trends).await?;
        let count = scrape::sum_of(
            &text,
            "closeloop_pipeline_latency_seconds_count",
            Some(("stage", "counted")),
        );
        Some((text, count))
    };
    let started = Instant::now();
    let (mut text, mut count) = scrape().await?;
    let mut last_change = Instant::now();
    while last_change.elapsed() < Duration::from_secs(3) && started.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (now_text, now_count) = scrape().await?;
        if now_count != count {
            last_change = Instant::now();
        }
        (text, count) = (now_text, now_count);
    }
    let bounds = scrape::quantile_bounds(
        &text,
        "closeloop_pipeline_latency_seconds",
        ("stage", "counted"),
        &[0.5, 0.99],
    )?;
    let show = |seconds: f64| {
        if seconds.is_finite() {
            format!("≤ {seconds} s")
        } else {
            "beyond the largest bucket".into()
        }
    };
    Some(format!(
        "p50 {}  p99 {}  ({} mentions counted; trends' histogram buckets)",
        show(bounds[0]),
        show(bounds[1]),
        thousands(count.unwrap_or(0.0) as u64)
    ))
}

async fn metrics_text(client: &reqwest::Client, base: &str) -> Option<String> {
    client
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// What each service's `/metrics` tells so far: the CPU seconds its handlers used (HTTP
/// requests and consumed records, polled on any thread; work handed to librdkafka's
/// threads, the blocking pool or SQLite's workers is not in it), and how many batches of
/// how many records its consumers handled.
#[derive(Debug, Default)]
struct ServiceWork(Vec<ServiceSample>);

#[derive(Debug, Clone, Copy)]
struct ServiceSample {
    name: &'static str,
    cpu_seconds: f64,
    batches: f64,
    batched_records: f64,
}

impl ServiceSample {
    fn of(name: &'static str, metrics: &str) -> Self {
        let sum = |metric| scrape::sum_of(metrics, metric, None).unwrap_or(0.0);
        Self {
            name,
            cpu_seconds: sum("closeloop_http_cpu_seconds_total")
                + sum("closeloop_consumer_cpu_seconds_total"),
            batches: sum("closeloop_consumer_batch_records_count"),
            batched_records: sum("closeloop_consumer_batch_records_sum"),
        }
    }
}

impl ServiceWork {
    async fn read(client: &reqwest::Client, addresses: &UpAddresses) -> Self {
        let mut services = Vec::new();
        for (name, url) in addresses.services() {
            if let Some(text) = metrics_text(client, url).await {
                services.push(ServiceSample::of(name, &text));
            }
        }
        Self(services)
    }

    /// Each service's sample in `after` with the one in `before` subtracted.
    fn since(&self, before: &Self) -> Vec<ServiceSample> {
        self.0
            .iter()
            .map(|after| {
                let earlier = before.0.iter().find(|b| b.name == after.name);
                let minus =
                    |f: fn(&ServiceSample) -> f64| (f(after) - earlier.map_or(0.0, f)).max(0.0);
                ServiceSample {
                    name: after.name,
                    cpu_seconds: minus(|s| s.cpu_seconds),
                    batches: minus(|s| s.batches),
                    batched_records: minus(|s| s.batched_records),
                }
            })
            .collect()
    }

    /// The handlers' CPU per accepted event and their consumers' mean batch, by service:
    /// a batch pays a transaction and a poll, so small ones cost more per record.
    fn rows(before: &Self, after: &Self, events: u64) -> Vec<Row> {
        if events == 0 || after.0.is_empty() {
            return Vec::new();
        }
        let delta = after.since(before);
        let per_event = delta
            .iter()
            .map(|s| {
                let micros = s.cpu_seconds * 1e6 / events as f64;
                format!("{} {micros:.1} µs", s.name)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut rows = vec![Row::new(
            "    by service",
            "",
            format!("{per_event} (handlers' own polls, per accepted event)"),
        )];
        let batches = delta
            .iter()
            .filter(|s| s.batches > 0.0)
            .map(|s| format!("{} {:.0}", s.name, s.batched_records / s.batches))
            .collect::<Vec<_>>();
        if !batches.is_empty() {
            rows.push(Row::new(
                "    records per batch",
                "",
                format!(
                    "{} (mean over the run, all consumed topics)",
                    batches.join(", ")
                ),
            ));
        }
        rows
    }
}

/// Whether `url` names a PostgreSQL server on this machine, whose processes the bench
/// can then measure.
fn postgres_runs_here(url: &str) -> bool {
    Backend::of_url(url) == Some(Backend::Postgres)
        && reqwest::Url::parse(url).is_ok_and(|url| {
            matches!(
                url.host_str(),
                None | Some("" | "localhost" | "127.0.0.1" | "[::1]" | "::1")
            )
        })
}

/// CPU time of `closeloop up` per accepted event, by kind of thread, and compared with
/// the raw producer and the classifier measured in the same run; with the database
/// server's (`server`, PostgreSQL on this machine) beside it.
fn cpu_rows(
    before: &CpuSample,
    after: &CpuSample,
    server: Option<Duration>,
    events: u64,
    baselines: &Baselines,
) -> Vec<Row> {
    let (total, groups) = after.since(before);
    let Some(per_event) = cpu::micros_per_event(total, events) else {
        return Vec::new();
    };
    let mut compared = Vec::new();
    if let Some(producer) = baselines.producer_cpu_us.filter(|us| *us > 0.0) {
        compared.push(format!("{:.1}× the raw producer's", per_event / producer));
    }
    if let Some(classify) = baselines.classify_cpu_us.filter(|us| *us > 0.0) {
        compared.push(format!(
            "{:.1}× the classifier's alone",
            per_event / classify
        ));
    }
    let mut rows = vec![Row::new(
        "  CPU per event",
        format!("{per_event:.0} µs"),
        format!(
            "closeloop up, all services and broker: {:.1} CPU s for {} events{}",
            total.as_secs_f64(),
            thousands(events),
            if compared.is_empty() {
                String::new()
            } else {
                format!("; {}", compared.join(", "))
            }
        ),
    )];
    let shares = cpu::shares(total, &groups, 5);
    if !shares.is_empty() {
        // The services share one runtime, so threads tell kinds of work, not services.
        rows.push(Row::new("    by thread", "", shares));
    }
    if let Some(server) = server {
        if let Some(server_per_event) = cpu::micros_per_event(server, events) {
            rows.push(Row::new(
                "  + PostgreSQL server",
                format!("{server_per_event:.0} µs"),
                format!(
                    "its processes on this machine: {:.1} CPU s; the loop with its database {:.0} µs per event",
                    server.as_secs_f64(),
                    per_event + server_per_event
                ),
            ));
        }
    }
    rows
}

/// Where the events that were never seen categorised went, as far as the bench can tell.
fn missing_detail(
    accepted: u64,
    categorise_consumed: Option<u64>,
    seen: &Categorised,
    dropped: &[(&str, u64)],
) -> String {
    let mut parts = vec![format!(
        "{} not seen categorised",
        thousands(accepted.saturating_sub(seen.distinct()))
    )];
    if let Some(consumed) = categorise_consumed {
        parts.push(format!(
            "categorise consumed {} of {}",
            thousands(consumed),
            topics::FEEDBACK_RAW
        ));
    }
    for (topic, count) in dropped {
        if *count > 0 {
            parts.push(format!(
                "the broker no longer holds the first {} records of {topic}",
                thousands(*count)
            ));
        }
    }
    if seen.skipped > 0 {
        parts.push(format!(
            "the bench's consumer jumped over {} records",
            thousands(seen.skipped)
        ));
    }
    parts.join("; ")
}

/// How many records of `feedback.raw.v1` categorise consumed, from its `/metrics`.
async fn categorise_consumed(client: &reqwest::Client, categorise: &str) -> Option<u64> {
    let text = metrics_text(client, categorise).await?;
    let consumed = scrape::sum_of(
        &text,
        "closeloop_events_consumed_total",
        Some(("topic", topics::FEEDBACK_RAW)),
    );
    consumed.map(|n| n as u64)
}

/// How many partitions `topic` has, from the cluster's metadata (blocking).
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Option<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let partitions = metadata.topics().first()?.partitions().len();
    (partitions > 0).then_some(partitions as i32)
}

/// [`partitions_of`], off the runtime.
async fn partition_count(bootstrap: &str, topic: &'static str) -> Option<i32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    tokio::task::spawn_blocking(move || partitions_of(&consumer, topic))
        .await
        .ok()
        .flatten()
}

/// Records the broker no longer holds at the start of the loop's two topics (the low
/// watermarks summed over partitions): on fresh topics, records deleted whether or not
/// anyone had read them. Empty when the broker cannot be asked.
async fn dropped_by_broker(bootstrap: &str) -> Vec<(&'static str, u64)> {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create();
    let Ok(consumer) = consumer else {
        return Vec::new();
    };
    // Metadata and watermark requests block: off the runtime.
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(5);
        [topics::FEEDBACK_RAW, topics::FEEDBACK_CATEGORISED]
            .into_iter()
            .filter_map(|topic| {
                let partitions = partitions_of(&consumer, topic)?;
                let mut low_total = 0u64;
                for partition in 0..partitions {
                    let (low, _high) = consumer.fetch_watermarks(topic, partition, timeout).ok()?;
                    low_total += low.max(0) as u64;
                }
                Some((topic, low_total))
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

async fn watch_categorised(
    consumer: StreamConsumer,
    seen: Arc<Mutex<Categorised>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            message = consumer.recv() => message,
        };
        let Ok(message) = message else { continue };
        let feedback = decode::<FeedbackCategorised>(message.payload().unwrap_or_default())
            .ok()
            .map(|event| {
                let latency = (chrono::Utc::now() - event.data.feedback.received_at)
                    .to_std()
                    .unwrap_or_default();
                (event.data.feedback.feedback_id, latency)
            });
        if let Ok(mut seen) = seen.lock() {
            seen.note(message.partition(), message.offset(), feedback);
        }
    }
}

/// Resolves the open action with the most evidence and times each customer's message.
async fn notify_round(
    client: &reqwest::Client,
    trends: &str,
    sink: &WebhookSink,
) -> anyhow::Result<Option<(usize, Vec<Duration>)>> {
    let actions: Vec<Value> = client
        .get(format!("{trends}/v1/actions?status=open"))
        .send()
        .await?
        .json()
        .await?;
    let Some(id) = actions
        .first()
        .and_then(|action| action["action_id"].as_str())
    else {
        return Ok(None);
    };
    let before = sink.received().len();
    let resolved = Instant::now();
    let response = client
        .post(format!("{trends}/v1/actions/{id}/resolve"))
        .json(&serde_json::json!({
            "resolved_by": "bench",
            "message": {"en": "We fixed it.", "de": "Wir haben es behoben."}
        }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "resolving the action failed: {}",
        response.status()
    );
    // Time each arrival; done once nothing new came for 3 s.
    let mut latencies = Vec::new();
    let mut count = before;
    let mut last_change = Instant::now();
    while last_change.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = sink.received().len();
        for _ in count..now {
            latencies.push(resolved.elapsed());
        }
        if now != count {
            count = now;
            last_change = Instant::now();
        }
    }
    Ok(Some((latencies.len(), latencies)))
}

/// `closeloop import` of a generated export of `--import-rows` rows (texts of the demo
/// corpus, each row its own ticket) into ingest in this process on the embedded broker.
/// The importer runs as a child process (this binary's hidden `import`, the product's
/// code), so its peak memory is its own.
async fn import(args: &BenchArgs, corpus: &[DemoFeedback]) -> anyhow::Result<Row> {
    let file = PathBuf::from("data/bench-import.csv");
    print!("  import: writing {} rows …", thousands(args.import_rows));
    let bytes = write_export(&file, args.import_rows, corpus)?;
    println!(" {:.0} MiB", bytes as f64 / 1024.0 / 1024.0);
    let broker = EmbeddedBroker::start(1, &TopicSpec::all(6))?;
    let (addr, stop, server) = start_ingest(&broker, "sqlite://data/bench-import.db", 500).await?;
    let result = import_child(&file, addr).await;
    stop.cancel();
    let _ = server.await;
    let _ = std::fs::remove_file(&file);
    let outcome = result?;
    Ok(Row::new(
        format!("import, {}-row CSV", thousands(outcome.read)),
        format!("{} rows/s", thousands(outcome.rows_per_second as u64)),
        format!(
            "peak RSS of the importer {}, {} CPU per row; {} accepted, {} duplicates, {} rejected in {:.1} s; \
             batches of 500, 4 in flight, ingest + embedded broker in the bench's process",
            outcome.peak_rss_kib.map_or("unknown".into(), |kib| format!(
                "{:.0} MiB",
                kib as f64 / 1024.0
            )),
            cpu::micros_per_event(Duration::from_secs_f64(outcome.cpu_seconds), outcome.read)
                .map_or("unknown".into(), |us| format!("{us:.1} µs")),
            thousands(outcome.accepted),
            thousands(outcome.duplicates),
            thousands(outcome.rejected),
            outcome.seconds,
        ),
    ))
}

/// Writes a help-desk-like CSV export of `rows` rows; returns its size in bytes.
fn write_export(path: &std::path::Path, rows: u64, corpus: &[DemoFeedback]) -> anyhow::Result<u64> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = csv::Writer::from_path(path)?;
    out.write_record(["ticket", "customer", "created", "rating", "channel", "text"])?;
    let now = chrono::Utc::now();
    // How a help desk names its channels (each one a built-in synonym).
    let channels = ["E-Mail", "Chat", "Kontaktformular", "Telefon", "Ticket"];
    for n in 0..rows {
        let item = &corpus[n as usize % corpus.len()].body;
        // Within the last 300 days: ingest takes a year.
        let created = now - chrono::Duration::seconds((n * 7919 % (300 * 86_400)) as i64);
        out.write_record([
            format!("T-{n}"),
            item["customer"]["id"].as_str().unwrap_or("c-0").to_owned(),
            created.format("%Y-%m-%d %H:%M:%S").to_string(),
            item["rating"]
                .as_u64()
                .map_or(String::new(), |r| r.to_string()),
            channels[n as usize % channels.len()].to_owned(),
            item["text"].as_str().unwrap_or("no text").to_owned(),
        ])?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// What the importer child reported.
#[derive(Debug, Default)]
struct ImportOutcome {
    read: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    seconds: f64,
    rows_per_second: f64,
    peak_rss_kib: Option<u64>,
    /// The importer's CPU time, all threads, start to end.
    cpu_seconds: f64,
}

/// The line the hidden `import` prints last, for [`import_child`] to read: the
/// summary's counts, and this process's peak memory and CPU time.
pub fn import_report(summary: &closeloop::import::Summary) -> String {
    let t = &summary.tally;
    let peak_rss_kib = peak_rss_kib(std::process::id());
    let cpu = CpuSample::of_self().map_or(0.0, |sample| sample.total.as_secs_f64());
    format!(
        "bench-import read={} accepted={} duplicates={} rejected={} seconds={:.3} rows_per_second={} peak_rss_kib={} cpu_seconds={cpu:.3}",
        t.read,
        t.accepted,
        t.duplicates,
        t.rejected,
        summary.elapsed.as_secs_f64(),
        summary.rows_per_second() as u64,
        peak_rss_kib.unwrap_or(0)
    )
}

fn parse_import_report(line: &str) -> Option<ImportOutcome> {
    let fields = line.strip_prefix("bench-import ")?;
    let mut outcome = ImportOutcome::default();
    for field in fields.split_whitespace() {
        let (name, value) = field.split_once('=')?;
        match name {
            "read" => outcome.read = value.parse().ok()?,
            "accepted" => outcome.accepted = value.parse().ok()?,
            "duplicates" => outcome.duplicates = value.parse().ok()?,
            "rejected" => outcome.rejected = value.parse().ok()?,
            "seconds" => outcome.seconds = value.parse().ok()?,
            "rows_per_second" => outcome.rows_per_second = value.parse().ok()?,
            "peak_rss_kib" => outcome.peak_rss_kib = value.parse().ok().filter(|&k| k > 0),
            "cpu_seconds" => outcome.cpu_seconds = value.parse().ok()?,
            _ => {}
        }
    }
    Some(outcome)
}

/// Runs this binary's hidden `import` on `file` into ingest at `addr`, passing its
/// progress lines through.
async fn import_child(file: &std::path::Path, addr: SocketAddr) -> anyhow::Result<ImportOutcome> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("import")
        .arg(file)
        .args(["--url", &format!("http://{addr}")])
        .args(["--api-key", "bench-key", "--source", "bench"])
        .args(["--reference", "ticket", "--customer-id", "customer"])
        .args(["--date", "created", "--rating", "rating"])
        .args(["--channel", "channel", "--text", "text"])
        .args(["--rejects", "data/bench-import.rejects.jsonl"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("could not start the importer")?;
    let stdout = child.stdout.take().context("no stdout of the importer")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut outcome = None;
    while let Some(line) = lines.next_line().await? {
        match parse_import_report(&line) {
            Some(report) => outcome = Some(report),
            None if !line.trim().is_empty() => println!("  {line}"),
            None => {}
        }
    }
    let status = child.wait().await?;
    anyhow::ensure!(status.success(), "the importer failed: {status}");
    outcome.context("the importer did not report its figures")
}

/// The high-water mark of a process's resident memory.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|line| line.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The least-squares slope of `values` taken one second apart, per second (0 for fewer
/// than two values).
fn slope(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    if values.len() < 2 {
        return 0.0;
    }
    let mean_t = (n - 1.0) / 2.0;
    let mean_v = values.iter().sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (t, value) in values.iter().enumerate() {
        let dt = t as f64 - mean_t;
        covariance += dt * (value - mean_v);
        variance += dt * dt;
    }
    covariance / variance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_on_postgresql_gets_a_schema_of_its_own_removed_after_it() {
        let Some(config) = closeloop_store::testing::postgres_config(
            "a_run_on_postgresql_gets_a_schema_of_its_own_removed_after_it",
        ) else {
            return;
        };
        let run = RunDatabase::fresh(&config.url).expect("a PostgreSQL URL");
        let schema = run.schema.clone().expect("a schema of the run's own");
        assert!(schema.starts_with("bench_"), "{schema}");
        assert!(run.journal.ends_with(format!("{schema}-broker")));
        // What `closeloop up` does with it: every service's tables in that schema.
        let used = Database::connect(&StoreConfig::new(&config.url).with_schema(&schema))
            .await
            .expect("connect");
        used.close().await;
        let exists = || async {
            let database = Database::connect(&StoreConfig::new(&config.url))
                .await
                .expect("connect");
            let (count,): (i64,) = closeloop_store::sqlx::query_as(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
            )
            .bind(&schema)
            .fetch_one(database.pool())
            .await
            .expect("query");
            database.close().await;
            count == 1
        };
        assert!(exists().await);
        run.remove_run_data().await.expect("removed");
        assert!(!exists().await);
        let other = RunDatabase::fresh(&config.url).expect("a PostgreSQL URL");
        assert_ne!(other.schema, run.schema, "each run has its own");
    }

    #[test]
    fn only_a_postgresql_server_on_this_machine_is_measured() {
        assert!(postgres_runs_here(
            "postgres://postgres@127.0.0.1:5432/test"
        ));
        assert!(postgres_runs_here("postgresql://u:secret@localhost/db"));
        assert!(postgres_runs_here("postgres://u@[::1]:5432/db"));
        assert!(!postgres_runs_here("postgres://u@db.example.com:5432/db"));
        assert!(!postgres_runs_here("sqlite://data/bench.db"));
    }

    #[test]
    fn the_database_server_row_adds_its_cpu_to_the_loops() {
        let sample = |ms| CpuSample {
            total: Duration::from_millis(ms),
            groups: Default::default(),
        };
        let rows = cpu_rows(
            &sample(1_000),
            &sample(3_000),
            Some(Duration::from_millis(1_000)),
            10_000,
            &Baselines::default(),
        );
        assert_eq!(rows[0].figure, "200 µs");
        let server = rows.iter().find(|row| row.part.contains("PostgreSQL"));
        let server = server.expect("a row for the database server");
        assert_eq!(server.figure, "100 µs");
        assert!(
            server.detail.contains("300 µs per event"),
            "{}",
            server.detail
        );
        let without = cpu_rows(&sample(0), &sample(1), None, 10, &Baselines::default());
        assert!(without.iter().all(|row| !row.part.contains("PostgreSQL")));
    }

    #[test]
    fn service_rows_give_cpu_per_event_and_the_mean_batch_of_the_run_only() {
        let metrics = |cpu: f64, batches: u32, records: u32| {
            format!(
                "closeloop_http_cpu_seconds_total{{service=\"trends\"}} 0.5\n\
                 closeloop_consumer_cpu_seconds_total{{service=\"trends\",topic=\"a\"}} {cpu}\n\
                 closeloop_consumer_batch_records_sum{{service=\"trends\",topic=\"a\"}} {records}\n\
                 closeloop_consumer_batch_records_count{{service=\"trends\",topic=\"a\"}} {batches}\n"
            )
        };
        let before = ServiceWork(vec![ServiceSample::of("trends", &metrics(1.0, 10, 100))]);
        let after = ServiceWork(vec![
            ServiceSample::of("trends", &metrics(3.0, 20, 2100)),
            // A service without consumers shows no batch figure.
            ServiceSample::of(
                "ingest",
                "closeloop_http_cpu_seconds_total{service=\"ingest\"} 1\n",
            ),
        ]);
        let rows = ServiceWork::rows(&before, &after, 1000);
        assert_eq!(rows.len(), 2);
        assert!(
            rows[0]
                .detail
                .starts_with("trends 2000.0 µs, ingest 1000.0 µs"),
            "{}",
            rows[0].detail
        );
        // 2,000 records in 10 batches during the run, whatever came before it.
        assert!(
            rows[1].detail.starts_with("trends 200 ("),
            "{}",
            rows[1].detail
        );
        assert!(ServiceWork::rows(&before, &after, 0).is_empty());
    }

    #[test]
    fn a_step_is_sustained_while_the_backlog_holds_and_ingest_takes_everything() {
        // 1,000/s offered for 4 s; the loop keeps up one second behind.
        let keeping_up = [(1000, 0), (2000, 1000), (3000, 2000), (4000, 3000)];
        let step = Step::judge(1000, 4, &keeping_up, 0);
        assert!(step.sustained, "{step:?}");
        assert_eq!(step.accepted_per_second, 1000);
        assert_eq!(step.categorised_per_second, 1000);
        assert_eq!(step.backlog, (1000, 1000));

        // Categorised at a quarter of the rate: the backlog grows by 1,500 over 2 s.
        let behind = [(1000, 250), (2000, 500), (3000, 750), (4000, 1000)];
        let step = Step::judge(1000, 4, &behind, 0);
        assert!(!step.sustained, "{step:?}");
        assert_eq!(step.backlog, (1500, 3000));

        // Keeping up with a backlog that jumps with each batch in flight: no trend.
        let jittery: Vec<(u64, u64)> = (1..=8u64)
            .map(|t| {
                (
                    t * 1000 + 2000,
                    t * 1000 + 2000 - [700, 1300][t as usize % 2],
                )
            })
            .collect();
        let step = Step::judge(1000, 8, &jittery, 0);
        assert!(step.sustained, "{step:?}");
        assert!(step.growth_per_second.abs() < 200.0, "{step:?}");

        // Categorised at 97 % of the rate: 30/s more behind every second, which two
        // samples a second's load apart would not have called growing.
        let slipping: Vec<(u64, u64)> = (1..=8u64).map(|t| (t * 1000, t * 970)).collect();
        let step = Step::judge(1000, 8, &slipping, 0);
        assert!(!step.sustained, "{step:?}");
        assert!((step.growth_per_second - 30.0).abs() < 1e-6, "{step:?}");

        // Keeping up, but only because ingest refused part of the load.
        assert!(!Step::judge(1000, 4, &keeping_up, 3).sustained);
        // Cut short (interrupted): not a judgement of the rate.
        assert!(!Step::judge(1000, 4, &keeping_up[..2], 0).sustained);
        assert!(!Step::judge(1000, 4, &[], 0).sustained);
    }

    #[test]
    fn the_import_report_reads_back() {
        let outcome = parse_import_report(
            "bench-import read=1000000 accepted=999000 duplicates=0 rejected=1000 seconds=50.000 rows_per_second=20000 peak_rss_kib=30720 cpu_seconds=12.5",
        )
        .expect("a report");
        assert_eq!(outcome.read, 1_000_000);
        assert_eq!(outcome.rejected, 1000);
        assert_eq!(outcome.peak_rss_kib, Some(30_720));
        assert_eq!(outcome.cpu_seconds, 12.5);
        assert!(parse_import_report("  rows read 12").is_none());
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(
            Latencies(samples).summary(),
            "p50 50.0 ms  p99 99.0 ms  max 100.0 ms"
        );
        assert_eq!(Latencies(Vec::new()).summary(), "no samples");
    }
}
