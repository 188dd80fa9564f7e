//! Backpressure for the embedded broker. librdkafka's mock cluster keeps at most 5 MiB or
//! 100,000 message sets per partition and deletes the oldest records beyond that, read or
//! not (`rdkafka_mock.c`, not configurable): a consumer that falls that far behind would
//! silently skip accepted records. So publishers wait while any partition of their topic
//! holds more unprocessed records than a safe share of that limit, until the consumers
//! caught up (or the publisher gives up and reports the record as not stored).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Unprocessed bytes per partition beyond which publishers wait (of the mock's 5 MiB).
pub(crate) const MAX_UNPROCESSED_BYTES: usize = 2 * 1024 * 1024;
/// Unprocessed records per partition beyond which publishers wait (of the mock's 100,000
/// message sets: a record may be a set of its own).
pub(crate) const MAX_UNPROCESSED_RECORDS: usize = 40_000;
/// What a record costs in the mock's accounting beyond its key and payload (the record
/// batch header and framing, roughly).
const RECORD_OVERHEAD: usize = 96;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub bytes: usize,
    pub records: usize,
}

pub(crate) const LIMITS: Limits = Limits {
    bytes: MAX_UNPROCESSED_BYTES,
    records: MAX_UNPROCESSED_RECORDS,
};

/// The unprocessed part of every consumed partition, and how far each group got.
#[derive(Debug)]
pub(crate) struct Room {
    limits: Limits,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Topic → the groups consuming it.
    consumers: HashMap<String, HashSet<String>>,
    /// (group, topic, partition) → the next offset the group will process.
    positions: HashMap<(String, String, i32), i64>,
    partitions: HashMap<(String, i32), Unprocessed>,
}

#[derive(Debug, Default)]
struct Unprocessed {
    /// (offset, cost), oldest first.
    records: VecDeque<(i64, usize)>,
    bytes: usize,
}

impl Room {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn consumes(&self, group: &str, topic: &str) {
        self.state()
            .consumers
            .entry(topic.to_owned())
            .or_default()
            .insert(group.to_owned());
    }

    /// A record the broker acknowledged: unprocessed until every consuming group is past
    /// it. Topics nobody consumes (dead letters, outcomes) take no room.
    pub(crate) fn appended(&self, topic: &str, partition: i32, offset: i64, size: usize) {
        let mut state = self.state();
        if !state.consumers.contains_key(topic) {
            return;
        }
        let low = state.lowest_position(topic, partition);
        if low.is_some_and(|low| offset < low) {
            return;
        }
        let unprocessed = state
            .partitions
            .entry((topic.to_owned(), partition))
            .or_default();
        let cost = size + RECORD_OVERHEAD;
        unprocessed.records.push_back((offset, cost));
        unprocessed.bytes += cost;
    }

    pub(crate) fn processed(&self, group: &str, topic: &str, partition: i32, next_offset: i64) {
        let mut state = self.state();
        let position = state
            .positions
            .entry((group.to_owned(), topic.to_owned(), partition))
            .or_insert(next_offset);
        *position = (*position).max(next_offset);
        let Some(low) = state.lowest_position(topic, partition) else {
            return;
        };
        let Some(unprocessed) = state.partitions.get_mut(&(topic.to_owned(), partition)) else {
            return;
        };
        let mut freed = false;
        while let Some(&(offset, cost)) = unprocessed.records.front() {
            if offset >= low {
                break;
            }
            unprocessed.records.pop_front();
            unprocessed.bytes -= cost;
            freed = true;
        }
        drop(state);
        if freed {
            self.freed.notify_waiters();
        }
    }

    /// Whether every partition of `topic` has room for more.
    pub(crate) fn has_room(&self, topic: &str) -> bool {
        let state = self.state();
        state
            .partitions
            .iter()
            .filter(|((name, _), _)| name == topic)
            .all(|(_, unprocessed)| {
                unprocessed.bytes < self.limits.bytes
                    && unprocessed.records.len() < self.limits.records
            })
    }

    /// Returns once every partition of `topic` has room.
    pub(crate) async fn wait_for_room(&self, topic: &str) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            if self.has_room(topic) {
                return;
            }
            freed.await;
        }
    }
}

impl State {
    /// The lowest next offset among the groups consuming `topic`; None while one of them
    /// has not noted any progress on the partition (it may still need everything).
    fn lowest_position(&self, topic: &str, partition: i32) -> Option<i64> {
        let groups = self.consumers.get(topic)?;
        let mut low: Option<i64> = None;
        for group in groups {
            let next = *self
                .positions
                .get(&(group.clone(), topic.to_owned(), partition))?;
            low = Some(low.map_or(next, |low: i64| low.min(next)));
        }
        low
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn room() -> Room {
        Room::new(Limits {
            bytes: 1000,
            records: 5,
        })
    }

    #[test]
    fn unconsumed_topics_take_no_room() {
        let room = room();
        for offset in 0..100 {
            room.appended("dlq", 0, offset, 500);
        }
        assert!(room.has_room("dlq"));
    }

    #[test]
    fn room_is_taken_by_bytes_or_records_and_freed_by_the_slowest_group() {
        let room = room();
        room.consumes("fast", "t");
        room.consumes("slow", "t");
        room.appended("t", 0, 0, 500);
        assert!(room.has_room("t"));
        room.appended("t", 0, 1, 500);
        assert!(!room.has_room("t"), "bytes");
        room.processed("fast", "t", 0, 2);
        assert!(!room.has_room("t"), "the slow group has not processed them");
        room.processed("slow", "t", 0, 1);
        assert!(room.has_room("t"));
        for offset in 2..6 {
            room.appended("t", 0, offset, 1);
        }
        assert!(!room.has_room("t"), "records");
        assert!(room.has_room("other"));
        room.processed("slow", "t", 0, 6);
        room.processed("fast", "t", 0, 6);
        assert!(room.has_room("t"));
    }

    #[tokio::test]
    async fn a_waiting_publisher_goes_on_once_the_consumers_caught_up() {
        let room = Arc::new(room());
        room.consumes("g", "t");
        room.processed("g", "t", 1, 0);
        for offset in 0..5 {
            room.appended("t", 1, offset, 10);
        }
        let waiting = tokio::spawn({
            let room = room.clone();
            async move { room.wait_for_room("t").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        room.processed("g", "t", 1, 3);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("released")
            .expect("joined");
    }
}
