//! `closeloop import`: history from exports (help-desk tickets, survey answers, app-store
//! reviews) into the loop, through ingest's own batch endpoint.
//!
//! ```text
//!  export file ──▶ reader thread ──────────────▶ batches ──▶ up to --concurrency ──▶ ingest
//!  (CSV / JSON     read a row, map it, give it     (bounded      POSTs in flight,      POST /v1/feedback/batch
//!   lines,          its stable event id;           channel)      retried, split on
//!   streamed)       unreadable rows ──┐                          refused items
//!                                     ▼                               │
//!                               rejects file  ◀───── refused rows ────┘
//!                               summary       ◀───── accepted / duplicates / rejected
//! ```
//!
//! Memory stays flat whatever the file's length: the reader holds one row, the channel
//! at most `--concurrency` batches, and at most `--concurrency` batches are in flight.
//! Each row's event id is stable ([`stable_id`]), so a run that was interrupted, or
//! failed because ingest went away, is simply run again: what ingest accepted before
//! comes back as a duplicate and is not doubled.

mod mapping;
mod read;
mod rejects;
mod send;
pub mod stable_id;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use closeloop_telemetry::Secret;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::progress::{bar, human_duration, thousands, Progress};
pub use mapping::{
    default_rejects_path, parse_date, Columns, DateRule, Defaults, Item, Mapping, MappingFile,
    Problem,
};
pub use read::{detect_delimiter, Format};
pub use send::SendError;

/// `closeloop import FILE`: flags, or the environment variables named beside them.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The export: CSV with a header row, or JSON lines (one object per line).
    pub file: PathBuf,
    /// ingest's base URL.
    #[arg(
        long,
        env = "CLOSELOOP_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The source's API key (as in ingest's INGEST_API_KEYS).
    #[arg(long, env = "CLOSELOOP_API_KEY", hide_env_values = true)]
    pub api_key: Secret,
    /// The source the API key belongs to; part of every row's stable event id.
    #[arg(long, env = "CLOSELOOP_SOURCE")]
    pub source: Option<String>,
    /// Mapping file (TOML): columns, defaults, value synonyms; flags override it.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// `csv` or `jsonl` [default: from the file's extension; .jsonl, .ndjson, .json are JSON lines].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// CSV delimiter: one character, or `tab` [default: detected from the header line, of , ; tab |].
    #[arg(long, value_parser = read::parse_delimiter)]
    pub delimiter: Option<u8>,
    #[command(flatten)]
    pub columns: Columns,
    #[command(flatten)]
    pub defaults: Defaults,
    /// A chrono format for the date column, tried before the built-in forms (e.g. `%m/%d/%Y %H:%M`).
    #[arg(long)]
    pub date_format: Option<String>,
    /// The zone of dates that name none, e.g. `+01:00` [default: UTC]. A fixed offset:
    /// no daylight-saving rules.
    #[arg(long)]
    pub utc_offset: Option<String>,
    /// Rows per request (ingest takes at most INGEST_MAX_BATCH, 1000 by default).
    #[arg(long, env = "IMPORT_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// Most bytes of JSON per request (ingest takes at most INGEST_MAX_BODY_BYTES, 2 MiB by default).
    #[arg(long, env = "IMPORT_MAX_BATCH_BYTES", default_value_t = 1024 * 1024)]
    pub max_batch_bytes: usize,
    /// Batches in flight at once.
    #[arg(long, env = "IMPORT_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// Attempts per request on 5xx, 408 and network errors before the import stops (429 waits as asked, without limit).
    #[arg(long, default_value_t = 10)]
    pub max_attempts: u32,
    /// First backoff between attempts, doubling up to 30 s.
    #[arg(long, default_value_t = 500)]
    pub retry_base_ms: u64,
    /// Timeout of one request.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Where rejected rows go [default: <FILE>.rejects.jsonl].
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Import only the first N rows (to try a mapping).
    #[arg(long)]
    pub limit: Option<u64>,
}

/// Why an import did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Config(String),
    #[error("mapping file {path}: {reason}")]
    Mapping { path: PathBuf, reason: String },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read the header: {reason}")]
    Header { path: PathBuf, reason: String },
    #[error("writing the rejects file {path}: {source}")]
    Rejects {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(
        "interrupted; run the same command again to finish (rows already accepted are not doubled)"
    )]
    Interrupted,
}

/// Counts of a run so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows read from the file (blank lines are no rows).
    pub read: u64,
    /// New events ingest accepted.
    pub accepted: u64,
    /// Rows ingest had accepted before, or repeated earlier in the same batch with the
    /// same content: not doubled.
    pub duplicates: u64,
    /// Rows in the rejects file.
    pub rejected: u64,
    /// Of those, rows whose date ingest refused as older than it accepts.
    pub too_old: u64,
    /// Rejected rows by the field of their first problem.
    pub rejected_by_field: BTreeMap<String, u64>,
    /// Requests sent again (429, 5xx, network errors).
    pub retries: u64,
    /// Bytes of the file read, and its size (when known): the bar's share.
    pub bytes_read: u64,
    pub file_bytes: Option<u64>,
}

impl Tally {
    /// Rows with an outcome: accepted, duplicate or rejected.
    pub fn done(&self) -> u64 {
        self.accepted + self.duplicates + self.rejected
    }

    fn reject(&mut self, problems: &[Problem]) {
        self.rejected += 1;
        let field = problems
            .first()
            .map(|p| p.field.as_str())
            .filter(|f| !f.is_empty())
            .unwrap_or("row");
        *self.rejected_by_field.entry(field.to_owned()).or_default() += 1;
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Summary {
    pub tally: Tally,
    pub elapsed: Duration,
    pub file: PathBuf,
    pub source: String,
    /// The rejects file, when a row was rejected.
    pub rejects: Option<PathBuf>,
    /// Why the run stopped before the end of the file.
    pub stopped: Option<ImportError>,
}

impl Summary {
    pub fn rows_per_second(&self) -> f64 {
        self.tally.done() as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tally;
        let width = thousands(t.read).len().max(1);
        let verdict = match &self.stopped {
            None => "imported",
            Some(ImportError::Interrupted) => "interrupted",
            Some(_) => "stopped",
        };
        writeln!(
            f,
            "{verdict} {} as source {}",
            self.file.display(),
            self.source
        )?;
        writeln!(f, "  rows read    {:>width$}", thousands(t.read))?;
        writeln!(
            f,
            "  accepted     {:>width$}  new events",
            thousands(t.accepted)
        )?;
        writeln!(
            f,
            "  duplicates   {:>width$}  accepted before (an earlier run) or repeated in the file: not doubled",
            thousands(t.duplicates)
        )?;
        let by_field = t
            .rejected_by_field
            .iter()
            .map(|(field, n)| format!("{field} {}", thousands(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        match &self.rejects {
            Some(path) => writeln!(
                f,
                "  rejected     {:>width$}  {by_field} → {}",
                thousands(t.rejected),
                path.display()
            )?,
            None => writeln!(f, "  rejected     {:>width$}", thousands(t.rejected))?,
        }
        let unconfirmed = t.read.saturating_sub(t.done());
        if unconfirmed > 0 {
            writeln!(
                f,
                "  unconfirmed  {:>width$}  sent or about to be, no answer yet: run again to finish",
                thousands(unconfirmed)
            )?;
        }
        writeln!(
            f,
            "  elapsed      {:.1} s, {} rows/s{}",
            self.elapsed.as_secs_f64(),
            thousands(self.rows_per_second() as u64),
            if t.retries > 0 {
                format!(", {} requests retried", thousands(t.retries))
            } else {
                String::new()
            }
        )?;
        if t.too_old > 0 {
            writeln!(
                f,
                "  {} rows are older than ingest accepts (INGEST_MAX_EVENT_AGE_DAYS, 365 days by default): \
                 trend windows never count feedback that old. To keep them anyway, run ingest with a \
                 larger INGEST_MAX_EVENT_AGE_DAYS for the import and import the rejects again.",
                thousands(t.too_old)
            )?;
        }
        if let Some(reason) = &self.stopped {
            writeln!(f, "  {reason}")?;
        }
        Ok(())
    }
}

/// The progress frame of a run.
struct Frame<'a> {
    tally: &'a Tally,
    elapsed: Duration,
}

impl Frame<'_> {
    fn rate(&self) -> f64 {
        self.tally.done() as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// Rows in the whole file, estimated from the rows per byte read so far.
    fn estimated_rows(&self) -> Option<u64> {
        let t = self.tally;
        let size = t.file_bytes?;
        if t.bytes_read == 0 || t.read == 0 {
            return None;
        }
        let estimate = (t.read as f64 * size as f64 / t.bytes_read as f64) as u64;
        Some(estimate.max(t.read))
    }

    fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        let left = self.estimated_rows()?.saturating_sub(self.tally.done());
        (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate))
    }

    fn eta_text(&self) -> String {
        self.eta().map_or("–".into(), human_duration)
    }

    /// Rows done, accepted, duplicates, rejected, rows/s: as the lines show them.
    fn figures(&self) -> [String; 5] {
        let t = self.tally;
        [
            t.done(),
            t.accepted,
            t.duplicates,
            t.rejected,
            self.rate() as u64,
        ]
        .map(thousands)
    }
}

impl crate::progress::Frame for Frame<'_> {
    fn bar_line(&self) -> String {
        let [done, accepted, duplicates, rejected, rate] = self.figures();
        format!(
            "  import {} {done:>9} rows  accepted {accepted:>9}  duplicates {duplicates:>7}  rejected {rejected:>7}  {rate:>7} rows/s  ETA {:<10}",
            bar(self.tally.done(), self.estimated_rows().unwrap_or(0), 24),
            self.eta_text(),
        )
    }

    fn plain_line(&self) -> String {
        let [done, accepted, duplicates, rejected, rate] = self.figures();
        let of = self
            .estimated_rows()
            .map_or(String::new(), |n| format!(" of ~{}", thousands(n)));
        format!(
            "  import: {done} rows{of} done: {accepted} accepted, {duplicates} duplicates, {rejected} rejected; {rate} rows/s, ETA {}",
            self.eta_text(),
        )
    }
}

/// The command: progress on stdout while it runs, the summary at the end. An error when
/// the run did not finish (ingest unreachable or refusing the key, interrupted); rows
/// rejected alone are no error.
pub async fn run(args: ImportArgs, shutdown: CancellationToken) -> Result<Summary, ImportError> {
    let mut progress = Progress::for_stdout();
    let started = Instant::now();
    let mut summary = import(&args, &shutdown, |tally| {
        progress.show(&Frame {
            tally,
            elapsed: started.elapsed(),
        })
    })
    .await?;
    progress.finish(&Frame {
        tally: &summary.tally,
        elapsed: summary.elapsed,
    });
    println!("\n{summary}");
    match summary.stopped.take() {
        Some(reason) => Err(reason),
        None => Ok(summary),
    }
}

/// One batch from the reader: the rows to post, and what else became of the rows read.
#[derive(Default)]
struct Batch {
    items: Vec<send::Pending>,
    bytes: usize,
    /// Rows read into this batch, whatever became of them.
    read: u64,
    /// Rows repeating an earlier row of the batch, same id and content.
    duplicates: u64,
    /// (line, problems, the row as read).
    unreadable: Vec<(u64, Vec<Problem>, serde_json::Value)>,
    bytes_read: u64,
}

/// Runs an import to the end of the file, an interruption (`shutdown`) or a failure
/// that stops it; `observe` sees the counts after every batch and twice a second. Rows
/// rejected are in the summary and the rejects file; a stop is in `Summary::stopped`.
/// `Err` only when the import could not start (mapping, file, header, rejects file).
pub async fn import(
    args: &ImportArgs,
    shutdown: &CancellationToken,
    mut observe: impl FnMut(&Tally),
) -> Result<Summary, ImportError> {
    let file = match &args.mapping {
        Some(path) => MappingFile::load(path)?,
        None => MappingFile::default(),
    };
    let format = args
        .format
        .or(file.format)
        .unwrap_or_else(|| Format::from_path(&args.file));
    let delimiter = match (args.delimiter, &file.delimiter) {
        (Some(d), _) => Some(d),
        (None, Some(d)) => {
            Some(
                read::parse_delimiter(d).map_err(|reason| ImportError::Mapping {
                    path: args.mapping.clone().unwrap_or_default(),
                    reason,
                })?,
            )
        }
        (None, None) => None,
    };
    let mapping = Mapping::resolve(
        mapping::MappingFlags {
            source: args.source.clone(),
            columns: args.columns.clone(),
            defaults: args.defaults.clone(),
            date_format: args.date_format.clone(),
            utc_offset: args.utc_offset.clone(),
        },
        file,
        args.mapping.as_deref(),
    )?;
    if args.batch_size == 0 || args.concurrency == 0 || args.max_batch_bytes < 1024 {
        return Err(ImportError::Config(
            "--batch-size and --concurrency must be at least 1, --max-batch-bytes at least 1024"
                .into(),
        ));
    }
    let rows = read::Rows::open(&args.file, format, delimiter)?;
    if let Some(header) = rows.header() {
        mapping.check_header(header)?;
    }
    let sender = send::Sender::new(
        &args.url,
        args.api_key.clone(),
        Duration::from_secs(args.timeout_secs.max(1)),
        args.max_attempts,
        Duration::from_millis(args.retry_base_ms),
    )?;
    let rejects_path = args
        .rejects
        .clone()
        .unwrap_or_else(|| mapping::default_rejects_path(&args.file));
    let mut rejects = rejects::Rejects::create(&rejects_path)?;
    let source = mapping.source.clone();

    let mut tally = Tally {
        file_bytes: rows.size,
        ..Tally::default()
    };
    let bytes_read = Arc::clone(&rows.bytes_read);
    let started = Instant::now();
    let (batches, mut incoming) = mpsc::channel::<Batch>(args.concurrency);
    let shape = Shape {
        batch_size: args.batch_size,
        max_batch_bytes: args.max_batch_bytes,
        limit: args.limit,
    };
    let path = args.file.clone();
    let reader =
        tokio::task::spawn_blocking(move || read_batches(path, rows, &mapping, shape, &batches));

    let mut in_flight: FuturesUnordered<BoxFuture<'_, Result<send::Outcome, SendError>>> =
        FuturesUnordered::new();
    let mut reading = true;
    let mut stopped = None;
    let every = Duration::from_millis(500);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while reading || !in_flight.is_empty() {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                stopped = Some(ImportError::Interrupted);
                break;
            }
            Some(result) = in_flight.next(), if !in_flight.is_empty() => match result {
                Ok(outcome) => {
                    tally.accepted += outcome.accepted;
                    tally.duplicates += outcome.duplicates;
                    tally.retries += outcome.retries;
                    for refused in &outcome.refused {
                        rejects.refused(refused)?;
                        tally.reject(&refused.problems);
                        tally.too_old += u64::from(refused.too_old);
                    }
                    tally.bytes_read = bytes_read.load(Ordering::Relaxed);
                    observe(&tally);
                }
                Err(error) => {
                    stopped = Some(ImportError::Send(error));
                    break;
                }
            },
            batch = incoming.recv(), if reading && in_flight.len() < args.concurrency => match batch {
                Some(batch) => {
                    tally.read += batch.read;
                    tally.duplicates += batch.duplicates;
                    tally.bytes_read = batch.bytes_read;
                    for (line, problems, record) in &batch.unreadable {
                        rejects.unreadable(*line, problems, record)?;
                        tally.reject(problems);
                    }
                    if !batch.items.is_empty() {
                        in_flight.push(Box::pin(sender.send(batch.items)));
                    }
                }
                None => reading = false,
            },
            _ = tick.tick() => {
                tally.bytes_read = tally.bytes_read.max(bytes_read.load(Ordering::Relaxed));
                observe(&tally);
            }
        }
    }
    // Whatever is still in flight is abandoned (a new run sends it again), and the
    // reader stops at its next batch.
    drop(in_flight);
    drop(incoming);
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            stopped.get_or_insert(error);
        }
        Err(panic) => {
            stopped.get_or_insert(ImportError::Config(format!("the reader failed: {panic}")));
        }
    }
    let rejects = rejects.finish()?;
    Ok(Summary {
        tally,
        elapsed: started.elapsed(),
        file: args.file.clone(),
        source,
        rejects,
        stopped,
    })
}

/// How rows are cut into batches.
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch_size: usize,
    max_batch_bytes: usize,
    limit: Option<u64>,
}

/// The reader thread: rows → mapped items → batches, until the file ends, `limit` rows
/// were read, or the receiver is gone (the import stopped).
fn read_batches(
    path: PathBuf,
    mut rows: read::Rows,
    mapping: &Mapping,
    shape: Shape,
    out: &mpsc::Sender<Batch>,
) -> Result<(), ImportError> {
    let mut batch = Batch::default();
    // Event id → index in `batch.items`: a row repeated within a batch is a duplicate
    // (same content) or refused (same reference, other content) here, because ingest
    // would refuse the whole batch for it.
    let mut ids: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    let mut read = 0u64;
    let bytes = Arc::clone(&rows.bytes_read);
    let flush = |batch: &mut Batch, ids: &mut std::collections::HashMap<Uuid, usize>| -> bool {
        batch.bytes_read = bytes.load(Ordering::Relaxed);
        ids.clear();
        out.blocking_send(std::mem::take(batch)).is_ok()
    };
    loop {
        if shape.limit.is_some_and(|limit| read >= limit) {
            break;
        }
        let Some(row) = rows.next_row().map_err(|source| ImportError::Read {
            path: path.clone(),
            source,
        })?
        else {
            break;
        };
        read += 1;
        batch.read += 1;
        match row.fields {
            Err(error) => batch.unreadable.push((
                row.line,
                vec![Problem::new("row", error.reason)],
                error.raw,
            )),
            Ok(fields) => match mapping.map(&fields) {
                Err(problems) => batch
                    .unreadable
                    .push((row.line, problems, fields.to_json())),
                Ok(item) => {
                    let json = serde_json::to_string(&item).map_err(|e| {
                        ImportError::Config(format!("encoding line {}: {e}", row.line))
                    })?;
                    match ids.get(&item.event_id).map(|&i| &batch.items[i]) {
                        Some(first) if first.json == json => batch.duplicates += 1,
                        Some(first) => batch.unreadable.push((
                            row.line,
                            vec![Problem::new(
                                "reference",
                                format!(
                                    "line {} has the same reference with other content: a reference must name one row",
                                    first.line
                                ),
                            )],
                            fields.to_json(),
                        )),
                        None => {
                            if !batch.items.is_empty()
                                && batch.bytes + json.len() + 16 > shape.max_batch_bytes
                            {
                                // The row opens the next batch; the rows read so far
                                // belong to this one.
                                batch.read -= 1;
                                if !flush(&mut batch, &mut ids) {
                                    return Ok(());
                                }
                                batch.read = 1;
                            }
                            ids.insert(item.event_id, batch.items.len());
                            batch.bytes += json.len() + 1;
                            batch.items.push(send::Pending {
                                line: row.line,
                                event_id: item.event_id,
                                occurred_at: item.occurred_at,
                                json,
                            });
                        }
                    }
                }
            },
        }
        if (batch.items.len() >= shape.batch_size || batch.unreadable.len() >= 1000)
            && !flush(&mut batch, &mut ids)
        {
            return Ok(());
        }
    }
    if batch.read > 0 {
        flush(&mut batch, &mut ids);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Frame as _;
    use read::tempfile_lite::TempFile;

    fn rows_of(csv: &str) -> (TempFile, read::Rows) {
        let file = TempFile::new("csv");
        std::fs::write(&file.path, csv).expect("write the export");
        let rows = read::Rows::open(&file.path, Format::Csv, None).expect("opens");
        (file, rows)
    }

    fn mapping(reference: bool) -> Mapping {
        Mapping::resolve(
            mapping::MappingFlags {
                source: Some("shopdesk".into()),
                columns: Columns {
                    text: Some("text".into()),
                    customer_id: Some("customer".into()),
                    reference: reference.then(|| "ref".into()),
                    ..Columns::default()
                },
                ..mapping::MappingFlags::default()
            },
            MappingFile::default(),
            None,
        )
        .expect("a mapping")
    }

    fn batches(csv: &str, reference: bool, shape: Shape) -> Vec<Batch> {
        let (file, rows) = rows_of(csv);
        let (out, mut incoming) = mpsc::channel(100);
        read_batches(file.path.clone(), rows, &mapping(reference), shape, &out).expect("reads");
        drop(out);
        let mut batches = Vec::new();
        while let Some(batch) = incoming.blocking_recv() {
            batches.push(batch);
        }
        batches
    }

    const WIDE: Shape = Shape {
        batch_size: 500,
        max_batch_bytes: 1 << 20,
        limit: None,
    };

    #[test]
    fn a_row_repeated_within_a_batch_is_a_duplicate_or_refused() {
        let batches = batches(
            "ref,customer,text\n\
             T-1,c-1,late\n\
             T-1,c-1,late\n\
             T-1,c-1,changed\n\
             T-2,c-2,fine\n\
             T-3,c-3,\n",
            true,
            WIDE,
        );
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert_eq!(batch.read, 5);
        assert_eq!(batch.items.len(), 2, "T-1 once, T-2");
        assert_eq!(batch.duplicates, 1, "the same row again");
        let lines: Vec<u64> = batch.unreadable.iter().map(|(line, ..)| *line).collect();
        assert_eq!(lines, [4, 6]);
        assert_eq!(batch.unreadable[0].1[0].field, "reference");
        assert!(batch.unreadable[0].1[0].reason.contains("line 2"));
        assert_eq!(batch.unreadable[1].1[0].field, "text");
        assert_eq!(batch.unreadable[1].2["ref"], "T-3", "the row as read");
        let item: serde_json::Value = serde_json::from_str(&batch.items[0].json).expect("an item");
        assert_eq!(item["customer"]["reference"], "T-1");
        assert_eq!(item["channel"], "other", "the default channel");
        assert_eq!(item["event_id"], batch.items[0].event_id.to_string());
    }

    #[test]
    fn batches_end_at_their_size_or_bytes_and_the_limit_ends_reading() {
        let csv: String = std::iter::once("customer,text\n".to_owned())
            .chain((0..10).map(|n| format!("c-{n},text number {n}\n")))
            .collect();
        let sizes = |batches: &[Batch]| -> Vec<(usize, u64)> {
            batches.iter().map(|b| (b.items.len(), b.read)).collect()
        };
        let by_count = batches(
            &csv,
            false,
            Shape {
                batch_size: 4,
                ..WIDE
            },
        );
        assert_eq!(sizes(&by_count), [(4, 4), (4, 4), (2, 2)]);

        // Each item is about 150 bytes of JSON: two fit in 400.
        let by_bytes = batches(
            &csv,
            false,
            Shape {
                max_batch_bytes: 400,
                ..WIDE
            },
        );
        assert!(
            by_bytes.iter().all(|b| b.items.len() == 2),
            "{:?}",
            sizes(&by_bytes)
        );
        assert_eq!(by_bytes.iter().map(|b| b.read).sum::<u64>(), 10);

        let limited = batches(
            &csv,
            false,
            Shape {
                limit: Some(5),
                ..WIDE
            },
        );
        assert_eq!(sizes(&limited), [(5, 5)]);
    }

    #[test]
    fn progress_estimates_the_rows_left_from_the_bytes_read() {
        let tally = Tally {
            read: 1000,
            accepted: 900,
            duplicates: 50,
            rejected: 50,
            bytes_read: 100_000,
            file_bytes: Some(1_000_000),
            ..Tally::default()
        };
        let frame = Frame {
            tally: &tally,
            elapsed: Duration::from_secs(10),
        };
        assert_eq!(frame.estimated_rows(), Some(10_000));
        assert_eq!(
            frame.eta(),
            Some(Duration::from_secs(90)),
            "9,000 rows at 100/s"
        );
        assert_eq!(
            frame.plain_line(),
            "  import: 1,000 rows of ~10,000 done: 900 accepted, 50 duplicates, 50 rejected; 100 rows/s, ETA 1 min 30 s"
        );
        assert!(frame.bar_line().contains("[##                      ]"));
    }

    #[test]
    fn the_summary_names_what_happened() {
        let summary = Summary {
            tally: Tally {
                read: 12,
                accepted: 8,
                duplicates: 1,
                rejected: 2,
                too_old: 1,
                rejected_by_field: [("occurred_at".to_owned(), 1), ("text".to_owned(), 1)]
                    .into_iter()
                    .collect(),
                ..Tally::default()
            },
            elapsed: Duration::from_secs(2),
            file: "export.csv".into(),
            source: "shopdesk".into(),
            rejects: Some("export.csv.rejects.jsonl".into()),
            stopped: Some(ImportError::Interrupted),
        };
        let text = summary.to_string();
        assert!(
            text.starts_with("interrupted export.csv as source shopdesk"),
            "{text}"
        );
        assert!(
            text.contains("rejected      2  occurred_at 1, text 1 → export.csv.rejects.jsonl"),
            "{text}"
        );
        assert!(text.contains("unconfirmed   1"), "{text}");
        assert!(text.contains("INGEST_MAX_EVENT_AGE_DAYS"), "{text}");
        assert!(text.contains("run the same command again"), "{text}");
    }
}
