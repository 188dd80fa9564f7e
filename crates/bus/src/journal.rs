//! The embedded broker's write-ahead journal: what makes a 202 of `closeloop up` survive
//! `kill -9`.
//!
//! librdkafka's mock cluster keeps everything in memory, so a restart starts an empty
//! broker. With a journal, every record is appended to a file (and synced) *after* the
//! broker acknowledged it and *before* `publish` returns, and every consumer group notes
//! how far it has processed each partition. On start-up the journal refills the fresh
//! broker with the records some group has not processed yet, in their order, and commits
//! each group's translated position; then the loop carries on where it stopped. Records
//! whose `publish` never returned may be missing; their producer never reported them as
//! done (no 202, no stored offset), so they are produced again by whoever retries.
//!
//! On disk: `<dir>/gen-<G>/<segment>.log`, each segment a sequence of frames
//! `len:u32 crc32:u32 body`. A torn frame at the end (a kill mid-write) is ignored. The
//! writer rolls to a new segment at 64 MiB or after a minute and deletes old segments once
//! every group consuming their topics has processed them; a restart compacts everything
//! into a new generation and only then removes the old one.
//!
//! Compacted topics (`closeloop_events::topics::COMPACTED`) are kept as Kafka compacts
//! them: the newest record of each key always, whatever groups processed, and no group
//! pins their records (a group of one instance that is gone, like categorise's
//! per-instance `taxonomy.v1` group, would otherwise pin them and their segments for
//! ever). So after a restart `taxonomy.v1` still holds the current version.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::room::{self, Room};
use crate::BusError;

/// When the writer closes a segment and looks for segments to delete.
#[derive(Debug, Clone, Copy)]
struct Rolling {
    /// A segment is closed and a new one begun beyond this size...
    segment_bytes: u64,
    /// ...or when it holds records and is this old, so processed records (customers'
    /// words and contact data among them) leave the disk soon, not after 64 MiB more.
    segment_max_age: Duration,
    /// How often a quiet writer looks for a segment to close or delete.
    idle_check: Duration,
}

const ROLLING: Rolling = Rolling {
    segment_bytes: 64 * 1024 * 1024,
    segment_max_age: Duration::from_secs(60),
    idle_check: Duration::from_secs(10),
};
/// Marks a generation whose compacted segment is complete and synced.
const COMPLETE_MARKER: &str = "complete";

const KIND_RECORD: u8 = 1;
const KIND_PROCESSED: u8 = 2;
const KIND_CONSUMES: u8 = 3;

/// Whether `topic` keeps the newest record of each key rather than what groups still need.
fn compacted(topic: &str) -> bool {
    closeloop_events::topics::COMPACTED.contains(&topic)
}

/// One record as the broker stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JournalRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub traceparent: Option<String>,
}

impl JournalRecord {
    /// What it weighs in the broker: key, payload and trace header.
    fn size(&self) -> usize {
        self.key.len() + self.payload.len() + self.traceparent.as_ref().map_or(0, String::len)
    }
}

/// Consumer group `group` has processed `topic`/`partition` up to (excluding) `next_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Position {
    group: String,
    topic: String,
    partition: i32,
}

enum Entry {
    Record(JournalRecord),
    Processed(Position, i64),
    /// Group `.0` consumes topic `.1`: its records are kept until the group processed
    /// them, even before it noted any progress.
    Consumes(String, String),
}

enum Op {
    Append(JournalRecord, oneshot::Sender<io::Result<()>>),
    Processed(Position, i64),
    Consumes(String, String),
}

/// Which groups consume which topic.
type Consumers = HashMap<String, HashSet<String>>;

/// A handle on the journal: cheap to clone, shared by every publisher and consumer of
/// the process. The file is written by one thread of its own, which syncs each batch of
/// appends once (group commit).
#[derive(Clone)]
pub struct Journal {
    ops: mpsc::Sender<Op>,
    dir: PathBuf,
    /// What the broker holds unprocessed, so publishers never outrun what it keeps.
    room: Arc<Room>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

impl Journal {
    /// Returns once every partition of `topic` has room for another record (see
    /// [`crate::room`]), or false after `timeout`.
    pub(crate) async fn wait_for_room(&self, topic: &str, timeout: std::time::Duration) -> bool {
        tokio::time::timeout(timeout, self.room.wait_for_room(topic))
            .await
            .is_ok()
    }

    /// Appends an acknowledged record; returns once it is on disk.
    pub(crate) async fn append(&self, record: JournalRecord) -> Result<(), BusError> {
        self.room.appended(
            &record.topic,
            record.partition,
            record.offset,
            record.size(),
        );
        let (done, written) = oneshot::channel();
        let failed = |reason: String| BusError::Journal {
            dir: self.dir.clone(),
            reason,
        };
        self.ops
            .send(Op::Append(record, done))
            .map_err(|_| failed("the journal writer has stopped".into()))?;
        written
            .await
            .map_err(|_| failed("the journal writer has stopped".into()))?
            .map_err(|error| failed(error.to_string()))
    }

    /// Notes that `group` consumes `topic`, before it processes anything.
    pub(crate) fn consumes(&self, group: &str, topic: &str) {
        if compacted(topic) {
            return;
        }
        self.room.consumes(group, topic);
        let _ = self
            .ops
            .send(Op::Consumes(group.to_owned(), topic.to_owned()));
    }

    /// Notes that `group` processed `topic`/`partition` below `next_offset`. Not synced
    /// on its own: losing the latest notes only means redoing some idempotent work.
    pub(crate) fn processed(&self, group: &str, topic: &str, partition: i32, next_offset: i64) {
        if compacted(topic) {
            return;
        }
        let position = Position {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
        };
        self.room.processed(group, topic, partition, next_offset);
        // A stopped writer has already reported its failure through `append`.
        let _ = self.ops.send(Op::Processed(position, next_offset));
    }
}

/// What a journal held when the broker started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Records refilled into the broker: not yet processed by every group of their topic.
    pub records: usize,
    /// Records every group had processed, left behind.
    pub dropped: usize,
    /// Consumer groups whose positions were carried over.
    pub groups: usize,
}

/// The journal's contents, compacted: what must go back into a fresh broker.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    /// Per (topic, partition): the records to refill, in their old offset order.
    pub partitions: BTreeMap<(String, i32), Vec<JournalRecord>>,
    /// Per group and partition: the old offset processing stopped at.
    positions: HashMap<Position, i64>,
    pub consumers: Consumers,
    pub dropped: usize,
}

impl Backlog {
    /// Reads every segment of the newest complete generation in `dir`.
    pub fn load(dir: &Path) -> io::Result<(Self, Option<PathBuf>)> {
        let Some(generation) = newest_generation(dir)? else {
            return Ok((Self::default(), None));
        };
        let mut entries = Vec::new();
        for segment in segments(&generation)? {
            read_segment(&segment, &mut entries)?;
        }
        Ok((Self::compact(entries), Some(generation)))
    }

    fn compact(entries: Vec<Entry>) -> Self {
        let mut records: BTreeMap<(String, i32), BTreeMap<i64, JournalRecord>> = BTreeMap::new();
        let mut positions: HashMap<Position, i64> = HashMap::new();
        let mut consumers = Consumers::new();
        for entry in entries {
            match entry {
                Entry::Record(record) => {
                    records
                        .entry((record.topic.clone(), record.partition))
                        .or_default()
                        .entry(record.offset)
                        .or_insert(record);
                }
                // Groups pin nothing of a compacted topic.
                Entry::Processed(position, _) if compacted(&position.topic) => {}
                Entry::Consumes(_, topic) if compacted(&topic) => {}
                Entry::Processed(position, next) => {
                    consumers
                        .entry(position.topic.clone())
                        .or_default()
                        .insert(position.group.clone());
                    let known = positions.entry(position).or_insert(next);
                    *known = (*known).max(next);
                }
                Entry::Consumes(group, topic) => {
                    consumers.entry(topic).or_default().insert(group);
                }
            }
        }
        let mut partitions = BTreeMap::new();
        let mut dropped = 0;
        let low = ProcessedBy {
            consumers: &consumers,
            positions: &positions,
        };
        for ((topic, partition), mut by_offset) in records {
            if compacted(&topic) {
                let before = by_offset.len();
                by_offset = newest_per_key(by_offset);
                dropped += before - by_offset.len();
            }
            // A topic no group consumes keeps what its live segments held.
            let from = low.lowest(&topic, partition);
            let mut kept = Vec::new();
            for (offset, record) in by_offset {
                if from.is_some_and(|from| offset < from) {
                    dropped += 1;
                } else {
                    kept.push(record);
                }
            }
            if !kept.is_empty() {
                partitions.insert((topic, partition), kept);
            }
        }
        Backlog {
            partitions,
            positions,
            consumers,
            dropped,
        }
    }

    pub fn len(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }

    /// Each group's position in the refilled broker, where record `i` of a partition's
    /// backlog got offset `i`: the first kept record it had not processed.
    pub fn translated_positions(&self) -> BTreeMap<String, Vec<(String, i32, i64)>> {
        let mut by_group: BTreeMap<String, Vec<(String, i32, i64)>> = BTreeMap::new();
        for (position, old_next) in &self.positions {
            let kept = self
                .partitions
                .get(&(position.topic.clone(), position.partition))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let new_next = kept.partition_point(|record| record.offset < *old_next);
            by_group.entry(position.group.clone()).or_default().push((
                position.topic.clone(),
                position.partition,
                new_next as i64,
            ));
        }
        by_group
    }
}

/// Of one partition's records by offset, the newest of each key.
fn newest_per_key(by_offset: BTreeMap<i64, JournalRecord>) -> BTreeMap<i64, JournalRecord> {
    let mut newest: HashMap<Vec<u8>, i64> = HashMap::new();
    for (offset, record) in &by_offset {
        newest.insert(record.key.clone(), *offset);
    }
    by_offset
        .into_iter()
        .filter(|(offset, record)| newest.get(&record.key) == Some(offset))
        .collect()
}

/// For each topic, the groups that consume it and how far each got: a record may be
/// forgotten once every one of them has processed it.
struct ProcessedBy<'a> {
    consumers: &'a Consumers,
    positions: &'a HashMap<Position, i64>,
}

impl ProcessedBy<'_> {
    /// The lowest offset of `topic`/`partition` some group still needs; `None` when no
    /// group consumes the topic.
    fn lowest(&self, topic: &str, partition: i32) -> Option<i64> {
        let groups = self.consumers.get(topic)?;
        groups
            .iter()
            .map(|group| {
                let position = Position {
                    group: group.clone(),
                    topic: topic.to_owned(),
                    partition,
                };
                self.positions.get(&position).copied().unwrap_or(0)
            })
            .min()
    }
}

/// Writes a new generation holding `records` (with their new offsets) and the groups'
/// translated positions, marks it complete, removes older generations, and starts the
/// writer on it.
pub(crate) fn open(
    dir: &Path,
    previous: Option<PathBuf>,
    records: &[JournalRecord],
    positions: &BTreeMap<String, Vec<(String, i32, i64)>>,
    consumers: &Consumers,
) -> io::Result<Journal> {
    open_with(dir, previous, records, positions, consumers, ROLLING)
}

fn open_with(
    dir: &Path,
    previous: Option<PathBuf>,
    records: &[JournalRecord],
    positions: &BTreeMap<String, Vec<(String, i32, i64)>>,
    consumers: &Consumers,
    rolling: Rolling,
) -> io::Result<Journal> {
    fs::create_dir_all(dir)?;
    let number = previous
        .as_deref()
        .and_then(generation_number)
        .map_or(1, |n| n + 1);
    let generation = dir.join(format!("gen-{number:010}"));
    if generation.exists() {
        fs::remove_dir_all(&generation)?;
    }
    fs::create_dir_all(&generation)?;
    let writer = SegmentWriter::create(&generation, 1)?;
    let mut state = WriterState::new(generation.clone(), writer, rolling);
    state.consumers = consumers.clone();
    for (group, list) in positions {
        for (topic, partition, next) in list {
            let position = Position {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
            };
            state.processed.insert(position, *next);
        }
    }
    for record in records {
        state.track(record);
        state.writer.write(&Entry::Record(record.clone()))?;
    }
    state.write_progress()?;
    state.writer.sync()?;
    File::create(generation.join(COMPLETE_MARKER))?.sync_all()?;
    sync_dir(&generation)?;
    // Only now is the old generation redundant (a crash before this line restores from it).
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path != generation && generation_number(&path).is_some() {
            fs::remove_dir_all(&path)?;
        }
    }
    sync_dir(dir)?;

    let room = Arc::new(Room::new(room::LIMITS));
    for (topic, groups) in consumers {
        for group in groups {
            room.consumes(group, topic);
        }
    }
    for (group, list) in positions {
        for (topic, partition, next) in list {
            room.processed(group, topic, *partition, *next);
        }
    }
    for record in records {
        room.appended(
            &record.topic,
            record.partition,
            record.offset,
            record.size(),
        );
    }

    let (ops, receiver) = mpsc::channel();
    thread::Builder::new()
        .name("broker-journal".into())
        .spawn(move || state.run(receiver))?;
    Ok(Journal {
        ops,
        dir: dir.to_owned(),
        room,
    })
}

/// The writer thread's view: the open segment, what each live segment holds, and how
/// far every group got (to delete segments nobody needs any more).
struct WriterState {
    generation: PathBuf,
    writer: SegmentWriter,
    rolling: Rolling,
    /// Per segment number: the highest offset it holds of each partition.
    live: BTreeMap<u64, HashMap<(String, i32), i64>>,
    processed: HashMap<Position, i64>,
    consumers: Consumers,
    /// The newest record of each key of the compacted topics, by (topic, partition, key):
    /// written again into every new segment, so deleting older segments never loses it.
    newest: HashMap<(String, i32, Vec<u8>), JournalRecord>,
}

impl WriterState {
    fn new(generation: PathBuf, writer: SegmentWriter, rolling: Rolling) -> Self {
        let mut live = BTreeMap::new();
        live.insert(writer.number, HashMap::new());
        Self {
            generation,
            writer,
            rolling,
            live,
            processed: HashMap::new(),
            consumers: Consumers::new(),
            newest: HashMap::new(),
        }
    }

    /// Every group's topics and positions, so no older segment is needed for them.
    fn write_progress(&mut self) -> io::Result<()> {
        for (topic, groups) in &self.consumers {
            for group in groups {
                self.writer
                    .write(&Entry::Consumes(group.clone(), topic.clone()))?;
            }
        }
        for (position, next) in &self.processed {
            self.writer
                .write(&Entry::Processed(position.clone(), *next))?;
        }
        Ok(())
    }

    fn track(&mut self, record: &JournalRecord) {
        if compacted(&record.topic) {
            let key = (record.topic.clone(), record.partition, record.key.clone());
            let newer = self
                .newest
                .get(&key)
                .is_none_or(|known| known.offset <= record.offset);
            if newer {
                self.newest.insert(key, record.clone());
            }
        }
        let highest = self
            .live
            .entry(self.writer.number)
            .or_default()
            .entry((record.topic.clone(), record.partition))
            .or_insert(record.offset);
        *highest = (*highest).max(record.offset);
    }

    fn run(mut self, ops: mpsc::Receiver<Op>) {
        loop {
            let first = match ops.recv_timeout(self.rolling.idle_check) {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Quiet: still close an old segment and drop what every group is past.
                    let tidied = if self.segment_due() {
                        self.roll()
                    } else {
                        self.delete_processed()
                    };
                    if let Err(error) = tidied {
                        tracing::error!(%error, "broker journal roll failed; stopping the journal");
                        return;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // Everything already queued joins this batch and shares one sync.
            let mut waiting = Vec::new();
            let mut result = self.apply(first, &mut waiting);
            while result.is_ok() {
                match ops.try_recv() {
                    Ok(op) => result = self.apply(op, &mut waiting),
                    Err(_) => break,
                }
            }
            if !waiting.is_empty() {
                result = result.and_then(|()| self.writer.sync());
            } else {
                result = result.and_then(|()| self.writer.flush());
            }
            if result.is_ok()
                && (self.writer.len >= self.rolling.segment_bytes || self.segment_due())
            {
                result = self.roll();
            }
            for done in waiting {
                let _ = done.send(match &result {
                    Ok(()) => Ok(()),
                    Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
                });
            }
            if let Err(error) = result {
                // A journal that cannot write cannot promise anything: every later append
                // fails too, so producers answer "not stored" instead of losing records.
                tracing::error!(%error, "broker journal write failed; stopping the journal");
                return;
            }
        }
        let _ = self.writer.sync();
    }

    fn apply(
        &mut self,
        op: Op,
        waiting: &mut Vec<oneshot::Sender<io::Result<()>>>,
    ) -> io::Result<()> {
        match op {
            Op::Append(record, done) => {
                waiting.push(done);
                self.track(&record);
                self.writer.write(&Entry::Record(record))
            }
            Op::Consumes(group, topic) => {
                if !self
                    .consumers
                    .entry(topic.clone())
                    .or_default()
                    .insert(group.clone())
                {
                    return Ok(());
                }
                self.writer.write(&Entry::Consumes(group, topic))
            }
            Op::Processed(position, next) => {
                self.consumers
                    .entry(position.topic.clone())
                    .or_default()
                    .insert(position.group.clone());
                let known = self.processed.entry(position.clone()).or_insert(next);
                if next < *known {
                    return Ok(());
                }
                *known = next;
                self.writer.write(&Entry::Processed(position, next))
            }
        }
    }

    fn segment_due(&self) -> bool {
        self.writer.holds_records && self.writer.opened.elapsed() >= self.rolling.segment_max_age
    }

    /// Starts the next segment (with every group's position, so older segments are not
    /// needed for it) and deletes segments every consuming group is past.
    fn roll(&mut self) -> io::Result<()> {
        self.writer.sync()?;
        let number = self.writer.number + 1;
        self.writer = SegmentWriter::create(&self.generation, number)?;
        self.live.insert(number, HashMap::new());
        self.write_progress()?;
        let newest: Vec<JournalRecord> = self.newest.values().cloned().collect();
        for record in newest {
            self.track(&record);
            self.writer.write(&Entry::Record(record))?;
        }
        // Copies alone do not make the segment due for rolling (it would roll every
        // minute just to copy them again).
        self.writer.holds_records = false;
        self.writer.sync()?;
        self.delete_processed()
    }

    /// Deletes the closed segments every consuming group is past.
    fn delete_processed(&mut self) -> io::Result<()> {
        let open = self.writer.number;
        let low = ProcessedBy {
            consumers: &self.consumers,
            positions: &self.processed,
        };
        let done: Vec<u64> = self
            .live
            .iter()
            .filter(|(segment, _)| **segment != open)
            .filter(|(_, highest)| {
                // A topic nobody here consumes (dead letters, notification outcomes)
                // never pins a segment: its records live as long as their segment.
                highest.iter().all(|((topic, partition), offset)| {
                    low.lowest(topic, *partition)
                        .is_none_or(|from| *offset < from)
                })
            })
            .map(|(segment, _)| *segment)
            .collect();
        for segment in done {
            fs::remove_file(segment_path(&self.generation, segment))?;
            self.live.remove(&segment);
        }
        Ok(())
    }
}

struct SegmentWriter {
    number: u64,
    file: BufWriter<File>,
    len: u64,
    opened: Instant,
    holds_records: bool,
}

impl SegmentWriter {
    fn create(generation: &Path, number: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(generation, number))?;
        sync_dir(generation)?;
        Ok(Self {
            number,
            len: file.metadata()?.len(),
            file: BufWriter::with_capacity(1 << 20, file),
            opened: Instant::now(),
            holds_records: false,
        })
    }

    fn write(&mut self, entry: &Entry) -> io::Result<()> {
        let body = encode(entry);
        let len = u32::try_from(body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        self.file.write_all(&len.to_le_bytes())?;
        self.file.write_all(&crc32fast::hash(&body).to_le_bytes())?;
        self.file.write_all(&body)?;
        self.len += 8 + u64::from(len);
        self.holds_records |= matches!(entry, Entry::Record(_));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

fn segment_path(generation: &Path, number: u64) -> PathBuf {
    generation.join(format!("{number:010}.log"))
}

fn generation_number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("gen-")?
        .parse()
        .ok()
}

/// The complete generation with the highest number (an incomplete one is a restore that
/// was cut off; the generation before it still holds everything).
fn newest_generation(dir: &Path) -> io::Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(number) = generation_number(&path) else {
            continue;
        };
        if path.join(COMPLETE_MARKER).exists() && newest.as_ref().is_none_or(|(n, _)| number > *n) {
            newest = Some((number, path));
        }
    }
    Ok(newest.map(|(_, path)| path))
}

fn segments(generation: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = fs::read_dir(generation)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    found.sort();
    Ok(found)
}

fn read_segment(path: &Path, entries: &mut Vec<Entry>) -> io::Result<()> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut rest = bytes.as_slice();
    while rest.len() >= 8 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let Some(body) = rest.get(8..8 + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        match decode(body) {
            Some(entry) => entries.push(entry),
            None => break,
        }
        rest = &rest[8 + len..];
    }
    if !rest.is_empty() {
        // Only the end of the last segment can be torn: a kill during a write whose
        // `publish` therefore never returned.
        tracing::warn!(path = %path.display(), bytes = rest.len(), "ignoring a torn record at the end of the broker journal");
    }
    Ok(())
}

fn encode(entry: &Entry) -> Vec<u8> {
    let mut body = Vec::new();
    match entry {
        Entry::Record(record) => {
            body.push(KIND_RECORD);
            put_bytes(&mut body, record.topic.as_bytes());
            body.extend_from_slice(&record.partition.to_le_bytes());
            body.extend_from_slice(&record.offset.to_le_bytes());
            put_bytes(&mut body, &record.key);
            put_bytes(&mut body, &record.payload);
            match &record.traceparent {
                Some(traceparent) => {
                    body.push(1);
                    put_bytes(&mut body, traceparent.as_bytes());
                }
                None => body.push(0),
            }
        }
        Entry::Consumes(group, topic) => {
            body.push(KIND_CONSUMES);
            put_bytes(&mut body, group.as_bytes());
            put_bytes(&mut body, topic.as_bytes());
        }
        Entry::Processed(position, next) => {
            body.push(KIND_PROCESSED);
            put_bytes(&mut body, position.group.as_bytes());
            put_bytes(&mut body, position.topic.as_bytes());
            body.extend_from_slice(&position.partition.to_le_bytes());
            body.extend_from_slice(&next.to_le_bytes());
        }
    }
    body
}

fn put_bytes(body: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths fit: a frame is at most u32::MAX long, checked when written.
    body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    body.extend_from_slice(bytes);
}

/// Reads frames written by [`encode`]; `None` for anything else.
fn decode(body: &[u8]) -> Option<Entry> {
    let mut reader = Reader(body);
    let entry = match reader.u8()? {
        KIND_RECORD => Entry::Record(JournalRecord {
            topic: reader.string()?,
            partition: reader.i32()?,
            offset: reader.i64()?,
            key: reader.bytes()?.to_vec(),
            payload: reader.bytes()?.to_vec(),
            traceparent: match reader.u8()? {
                0 => None,
                _ => Some(reader.string()?),
            },
        }),
        KIND_PROCESSED => {
            let group = reader.string()?;
            let topic = reader.string()?;
            let partition = reader.i32()?;
            let next = reader.i64()?;
            Entry::Processed(
                Position {
                    group,
                    topic,
                    partition,
                },
                next,
            )
        }
        KIND_CONSUMES => Entry::Consumes(reader.string()?, reader.string()?),
        _ => return None,
    };
    reader.0.is_empty().then_some(entry)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(len)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, partition: i32, offset: i64) -> JournalRecord {
        JournalRecord {
            topic: topic.into(),
            partition,
            offset,
            key: format!("k{offset}").into_bytes(),
            payload: vec![0, 159, 146, 150, offset as u8],
            traceparent: (offset % 2 == 0).then(|| "00-trace-01".into()),
        }
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("closeloop-journal-{}", uuid::Uuid::now_v7()))
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_ignored() {
        let dir = temp_dir();
        fs::create_dir_all(&dir).unwrap();
        let mut writer = SegmentWriter::create(&dir, 1).unwrap();
        let position = Position {
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
        };
        writer.write(&Entry::Record(record("t", 2, 7))).unwrap();
        writer
            .write(&Entry::Processed(position.clone(), 8))
            .unwrap();
        writer.write(&Entry::Record(record("t", 2, 8))).unwrap();
        writer.sync().unwrap();
        // A kill in the middle of the last frame leaves half of it.
        let path = segment_path(&dir, 1);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut entries = Vec::new();
        read_segment(&path, &mut entries).unwrap();
        assert_eq!(entries.len(), 2, "the torn record is left out");
        assert!(matches!(&entries[0], Entry::Record(r) if *r == record("t", 2, 7)));
        assert!(matches!(&entries[1], Entry::Processed(p, 8) if *p == position));
        fs::remove_dir_all(&dir).unwrap();
    }

    fn processed(group: &str, topic: &str, partition: i32, next: i64) -> Entry {
        Entry::Processed(
            Position {
                group: group.into(),
                topic: topic.into(),
                partition,
            },
            next,
        )
    }

    #[test]
    fn compaction_keeps_what_the_slowest_group_has_not_processed() {
        let mut entries: Vec<Entry> = (0..10).map(|o| Entry::Record(record("t", 0, o))).collect();
        entries.extend((0..4).map(|o| Entry::Record(record("dlq", 0, o))));
        entries.push(processed("fast", "t", 0, 9));
        entries.push(processed("slow", "t", 0, 3));
        entries.push(processed("slow", "t", 0, 6));
        // A late, lower note (a rebalance) never moves a group back.
        entries.push(processed("slow", "t", 0, 5));
        // The same record journaled twice (a retried append) is kept once.
        entries.push(Entry::Record(record("t", 0, 8)));
        let backlog = Backlog::compact(entries);
        let kept: Vec<i64> = backlog.partitions[&("t".to_string(), 0)]
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(kept, vec![6, 7, 8, 9]);
        assert_eq!(backlog.dropped, 6);
        assert_eq!(
            backlog.partitions[&("dlq".to_string(), 0)].len(),
            4,
            "a topic nobody consumes is kept"
        );
        let positions = backlog.translated_positions();
        assert_eq!(positions["slow"], vec![("t".to_string(), 0, 0)]);
        assert_eq!(positions["fast"], vec![("t".to_string(), 0, 3)]);
    }

    fn keyed(topic: &str, offset: i64, key: &str) -> JournalRecord {
        JournalRecord {
            key: key.as_bytes().to_vec(),
            ..record(topic, 0, offset)
        }
    }

    #[test]
    fn compaction_keeps_the_newest_record_of_each_key_of_a_compacted_topic() {
        let taxonomy = closeloop_events::topics::TAXONOMY;
        let mut entries: Vec<Entry> = (0..4)
            .map(|o| Entry::Record(keyed(taxonomy, o, "taxonomy")))
            .collect();
        entries.push(Entry::Record(keyed(taxonomy, 4, "other")));
        entries.push(Entry::Record(keyed(taxonomy, 5, "taxonomy")));
        // A group that processed everything, and one that never did: neither matters.
        entries.push(processed("done", taxonomy, 0, 6));
        entries.push(Entry::Consumes("gone".into(), taxonomy.into()));
        let backlog = Backlog::compact(entries);
        let kept: Vec<i64> = backlog.partitions[&(taxonomy.to_string(), 0)]
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(kept, vec![4, 5]);
        assert_eq!(backlog.dropped, 4);
        assert!(!backlog.consumers.contains_key(taxonomy));
        assert!(backlog.translated_positions().is_empty());
    }

    #[tokio::test]
    async fn the_newest_record_of_a_compacted_topic_survives_deleted_segments() {
        let dir = temp_dir();
        let taxonomy = closeloop_events::topics::TAXONOMY;
        let rolling = Rolling {
            segment_bytes: 1,
            ..ROLLING
        };
        let journal = fresh_journal(&dir, rolling);
        // Consumed in a group that is gone by the restart: it pins nothing.
        journal.consumes("instance-1", taxonomy);
        journal
            .append(keyed(taxonomy, 0, "taxonomy"))
            .await
            .unwrap();
        journal
            .append(keyed(taxonomy, 1, "taxonomy"))
            .await
            .unwrap();
        for offset in 0..3 {
            journal.append(record("t", 0, offset)).await.unwrap();
        }
        journal.processed("g", "t", 0, 3);
        journal.append(record("t", 0, 3)).await.unwrap();
        drop(journal);
        let (backlog, generation) = wait_for_backlog(&dir, 2).await;
        let offsets = |topic: &str| -> Vec<i64> {
            backlog.partitions[&(topic.to_string(), 0)]
                .iter()
                .map(|r| r.offset)
                .collect()
        };
        assert_eq!(offsets(taxonomy), vec![1], "the newest version, once");
        assert_eq!(offsets("t"), vec![3]);
        let generation = generation.expect("a complete generation");
        let mut first_segments = Vec::new();
        read_segment(&segment_path(&generation, 1), &mut first_segments)
            .expect_err("the segment of the first records was deleted");

        // Restored into a new generation, it is still there after another restart.
        let records: Vec<JournalRecord> = backlog.partitions.values().flatten().cloned().collect();
        let journal = open_with(
            &dir,
            Some(generation),
            &records,
            &backlog.translated_positions(),
            &backlog.consumers,
            rolling,
        )
        .unwrap();
        drop(journal);
        let (again, _) = wait_for_backlog(&dir, 2).await;
        assert_eq!(again.partitions[&(taxonomy.to_string(), 0)].len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn appends_survive_a_restart_and_consumed_segments_are_deleted() {
        let dir = temp_dir();
        // Tiny segments: every batch rolls over.
        let rolling = Rolling {
            segment_bytes: 1,
            ..ROLLING
        };
        let journal = fresh_journal(&dir, rolling);
        for offset in 0..5 {
            journal.append(record("t", 0, offset)).await.unwrap();
        }
        journal.processed("g", "t", 0, 3);
        // A later append makes the writer roll and sweep (the note went first).
        journal.append(record("t", 0, 5)).await.unwrap();
        drop(journal);
        let (backlog, generation) = wait_for_backlog(&dir, 3).await;
        let offsets: Vec<i64> = backlog.partitions[&("t".to_string(), 0)]
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, vec![3, 4, 5]);
        let generation = generation.expect("a complete generation");
        assert!(
            segments(&generation).unwrap().len() < 7,
            "segments of processed records were deleted"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn processed_records_leave_the_disk_without_further_traffic() {
        let dir = temp_dir();
        let rolling = Rolling {
            segment_bytes: u64::MAX,
            segment_max_age: Duration::from_millis(50),
            idle_check: Duration::from_millis(10),
        };
        let journal = fresh_journal(&dir, rolling);
        for offset in 0..3 {
            journal.append(record("t", 0, offset)).await.unwrap();
        }
        // Nothing more is written: the quiet writer closes the old segment and deletes it.
        let records_on_disk = || {
            let mut entries = Vec::new();
            for generation in fs::read_dir(&dir).unwrap() {
                for segment in segments(&generation.unwrap().path()).unwrap() {
                    read_segment(&segment, &mut entries).unwrap();
                }
            }
            entries
                .iter()
                .filter(|entry| matches!(entry, Entry::Record(_)))
                .count()
        };
        assert_eq!(records_on_disk(), 3);
        journal.processed("g", "t", 0, 3);
        for _ in 0..500 {
            if records_on_disk() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(records_on_disk(), 0, "processed records are still on disk");
        drop(journal);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A new journal in `dir` whose topic "t" group "g" consumes.
    fn fresh_journal(dir: &Path, rolling: Rolling) -> Journal {
        let journal =
            open_with(dir, None, &[], &BTreeMap::new(), &Consumers::new(), rolling).unwrap();
        journal.consumes("g", "t");
        journal
    }

    /// The writer thread finishes its last batch after the handle is dropped.
    async fn wait_for_backlog(dir: &Path, records: usize) -> (Backlog, Option<PathBuf>) {
        for _ in 0..200 {
            let (backlog, generation) = Backlog::load(dir).unwrap();
            if backlog.len() == records {
                return (backlog, generation);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the journal never held {records} records");
    }

    #[test]
    fn an_incomplete_generation_is_not_restored_from() {
        let dir = temp_dir();
        fs::create_dir_all(dir.join("gen-0000000001")).unwrap();
        File::create(dir.join("gen-0000000001").join(COMPLETE_MARKER)).unwrap();
        fs::create_dir_all(dir.join("gen-0000000002")).unwrap();
        assert_eq!(
            newest_generation(&dir).unwrap(),
            Some(dir.join("gen-0000000001"))
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
