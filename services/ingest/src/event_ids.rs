//! The ledger of accepted event ids: one `event_id` names one event. A client may send
//! the same id again with the same content (a retry: accepted, published again, deduped
//! downstream), never with other content, whichever source sends it, because downstream
//! would otherwise hold two bodies under one id (categorise the first, trends and notify
//! both).

use closeloop_events::Feedback;
use closeloop_store::{sqlx, values, Backend, Database};
use tokio::sync::{mpsc, oneshot};

/// At most this many requests share one SQLite transaction.
const MAX_GROUP: usize = 256;

pub struct EventIds {
    db: Database,
    /// SQLite only: the queue of the group committer (see [`commit_groups`]).
    group: Option<mpsc::UnboundedSender<Pending>>,
}

/// A request waiting for the next group commit.
struct Pending {
    rows: Vec<Row>,
    now_ms: i64,
    done: oneshot::Sender<Result<Recorded, sqlx::Error>>,
}

/// What the ledger made of a request's ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Indexes (into the request's feedback, sorted) whose id was accepted before with
    /// other content; when there are any, nothing was recorded.
    pub conflicts: Vec<usize>,
    /// How many ids were accepted before with the same content: retries, or an import
    /// run again. Published again and deduplicated downstream, they are no new events.
    pub known: usize,
}

impl EventIds {
    /// On SQLite, spawns the group committer on the current tokio runtime.
    pub fn new(db: Database) -> Self {
        let group = (db.backend() == Backend::Sqlite).then(|| {
            let (queue, waiting) = mpsc::unbounded_channel();
            tokio::spawn(commit_groups(db.clone(), waiting));
            queue
        });
        Self { db, group }
    }

    /// Records the ids of `feedback` with their content hashes, all or none: see
    /// [`Recorded`].
    pub async fn record(
        &self,
        feedback: &[Feedback],
        now_ms: i64,
    ) -> Result<Recorded, sqlx::Error> {
        let mut rows: Vec<Row> = feedback
            .iter()
            .enumerate()
            .map(|(index, item)| {
                (
                    index,
                    item.feedback_id.to_string(),
                    item.content_hash(),
                    item.given_at.timestamp_millis(),
                )
            })
            .collect();
        // One order for every request, so two transactions inserting overlapping ids
        // wait for each other instead of deadlocking (PostgreSQL).
        rows.sort_by(|a, b| a.1.cmp(&b.1));
        if let Some(group) = &self.group {
            let (done, result) = oneshot::channel();
            let pending = Pending { rows, now_ms, done };
            // The committer lives as long as any sender: it cannot be gone while `self`
            // is here, but if it were, the request is recorded on its own.
            match group.send(pending) {
                Ok(()) => {
                    if let Ok(result) = result.await {
                        return result;
                    }
                    return Err(sqlx::Error::WorkerCrashed);
                }
                Err(mpsc::error::SendError(pending)) => {
                    return record_alone(&self.db, &pending.rows, now_ms).await;
                }
            }
        }
        record_alone(&self.db, &rows, now_ms).await
    }

    /// Forgets ids of feedback given before `cutoff_ms`: feedback that old is refused, so
    /// its id can no longer come with other content through ingest. Returns how many.
    pub async fn purge(&self, cutoff_ms: i64) -> Result<u64, sqlx::Error> {
        Ok(
            sqlx::query("DELETE FROM ingest_event_ids WHERE given_at_ms < $1")
                .bind(cutoff_ms)
                .execute(self.db.pool())
                .await?
                .rows_affected(),
        )
    }
}

/// (index, event id, content hash, given_at_ms) of one item.
type Row = (usize, String, String, i64);

/// One request's rows in a transaction of its own (all or none).
async fn record_alone(db: &Database, rows: &[Row], now_ms: i64) -> Result<Recorded, sqlx::Error> {
    if rows.len() == 1 {
        // One statement is atomic on its own: no transaction to pay for on the hot
        // path of single-event requests.
        let mut conn = db.pool().acquire().await?;
        return insert_and_check(&mut conn, db.backend(), rows, now_ms).await;
    }
    // Write first, then read, in one transaction: a read-then-write transaction fails
    // with SQLITE_BUSY_SNAPSHOT under contention.
    let mut tx = db.pool().begin().await?;
    let recorded = insert_and_check(&mut tx, db.backend(), rows, now_ms).await?;
    if recorded.conflicts.is_empty() {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(recorded)
}

/// SQLite's group commit. SQLite has one writer at a time, and a commit per request
/// (its lock, its write to the log) capped single-event requests at a few thousand per
/// second, with connections sleeping in SQLite's busy handler while another wrote. So
/// the requests waiting meanwhile are recorded together, in one transaction: each one's
/// rows in a savepoint of its own, so a request refused for a conflict leaves the others
/// recorded. If the transaction fails, each request is tried alone and gets its own
/// answer.
async fn commit_groups(db: Database, mut waiting: mpsc::UnboundedReceiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while waiting.recv_many(&mut group, MAX_GROUP).await > 0 {
        match commit_group(&db, &group).await {
            Ok(results) => {
                for (pending, recorded) in group.drain(..).zip(results) {
                    // A request that gave up waiting needs no answer.
                    let _ = pending.done.send(Ok(recorded));
                }
            }
            Err(error) => {
                tracing::debug!(%error, requests = group.len(), "group commit failed; recording each request alone");
                for pending in group.drain(..) {
                    let result = record_alone(&db, &pending.rows, pending.now_ms).await;
                    let _ = pending.done.send(result);
                }
            }
        }
    }
}

async fn commit_group(db: &Database, group: &[Pending]) -> Result<Vec<Recorded>, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let mut results = Vec::with_capacity(group.len());
    for pending in group {
        // A single row that conflicts was not inserted: nothing to undo, no savepoint.
        let savepoint = pending.rows.len() > 1;
        if savepoint {
            sqlx::query("SAVEPOINT request").execute(&mut *tx).await?;
        }
        let recorded =
            insert_and_check(&mut tx, db.backend(), &pending.rows, pending.now_ms).await?;
        if savepoint {
            if !recorded.conflicts.is_empty() {
                sqlx::query("ROLLBACK TO SAVEPOINT request")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("RELEASE SAVEPOINT request")
                .execute(&mut *tx)
                .await?;
        }
        results.push(recorded);
    }
    tx.commit().await?;
    Ok(results)
}

/// Inserts the rows that are new; returns the indexes of those whose id is stored with
/// another hash (sorted) and how many are stored with the same one.
async fn insert_and_check(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[Row],
    now_ms: i64,
) -> Result<Recorded, sqlx::Error> {
    let mut inserted = 0;
    for chunk in rows.chunks(values::rows_per_statement(backend, 4)) {
        let insert = format!(
            "INSERT INTO ingest_event_ids (event_id, content_hash, given_at_ms, accepted_at_ms) \
             VALUES {} ON CONFLICT DO NOTHING",
            values::placeholders(backend, chunk.len(), 4)
        );
        let mut query = sqlx::query(&insert);
        for (_, id, hash, given_at_ms) in chunk {
            query = query.bind(id).bind(hash).bind(*given_at_ms).bind(now_ms);
        }
        inserted += query.execute(&mut *conn).await?.rows_affected();
    }
    if inserted == rows.len() as u64 {
        return Ok(Recorded::default());
    }
    let mut stored: Vec<(String, String)> = Vec::new();
    for chunk in rows.chunks(values::rows_per_statement(backend, 1)) {
        // One "row" of placeholders is the parenthesised IN list.
        let select = format!(
            "SELECT event_id, content_hash FROM ingest_event_ids WHERE event_id IN {}",
            values::placeholders(backend, 1, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (String, String)>(&select);
        for (_, id, _, _) in chunk {
            query = query.bind(id);
        }
        stored.extend(query.fetch_all(&mut *conn).await?);
    }
    let mut conflicts: Vec<usize> = rows
        .iter()
        .filter(|(_, id, hash, _)| {
            stored
                .iter()
                .any(|(stored_id, stored_hash)| stored_id == id && stored_hash != hash)
        })
        .map(|(index, ..)| *index)
        .collect();
    conflicts.sort_unstable();
    let known = (rows.len() - conflicts.len()).saturating_sub(inserted as usize);
    Ok(Recorded { conflicts, known })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};
    use closeloop_events::{Channel, CustomerRef};
    use closeloop_store::testing;
    use uuid::Uuid;

    async fn ledger(db_config: closeloop_store::StoreConfig) -> EventIds {
        let db = Database::connect(&db_config).await.unwrap();
        db.migrate(sqlx::migrate!("./migrations")).await.unwrap();
        EventIds::new(db)
    }

    fn feedback(text: &str) -> Feedback {
        let now = Utc::now();
        Feedback {
            feedback_id: Uuid::now_v7(),
            source: "shopdesk".into(),
            channel: Channel::Chat,
            touchpoint: None,
            customer: CustomerRef {
                id: "c-1".into(),
                locale: None,
                consent: false,
                email: None,
                reference: None,
            },
            text: text.into(),
            rating: None,
            nps: None,
            given_at: now,
            received_at: now,
            metadata: Default::default(),
        }
    }

    async fn one_id_one_content(ledger: EventIds) {
        let first = feedback("late parcel");
        assert_eq!(
            ledger
                .record(std::slice::from_ref(&first), 1)
                .await
                .unwrap(),
            Recorded::default()
        );
        // A retry a moment later: same content, other receiving time.
        let mut retry = first.clone();
        retry.received_at += Duration::seconds(3);
        retry.given_at = retry.received_at;
        let recorded = ledger.record(&[retry], 2).await.unwrap();
        assert!(recorded.conflicts.is_empty());
        assert_eq!(recorded.known, 1, "a retry is known");

        let mut other_text = first.clone();
        other_text.text = "great parcel".into();
        let mut other_source = first.clone();
        other_source.source = "surveyhub".into();
        let fresh = feedback("new");
        assert_eq!(
            ledger
                .record(&[fresh.clone(), other_text, other_source], 3)
                .await
                .unwrap()
                .conflicts,
            [1, 2]
        );
        // All or none: the fresh item of the refused batch was not recorded.
        let mut fresh_changed = fresh.clone();
        fresh_changed.text = "changed".into();
        assert!(ledger
            .record(&[fresh_changed], 4)
            .await
            .unwrap()
            .conflicts
            .is_empty());

        let mut old = feedback("old");
        old.given_at -= Duration::days(400);
        assert!(ledger
            .record(&[old.clone()], 5)
            .await
            .unwrap()
            .conflicts
            .is_empty());
        let cutoff = (Utc::now() - Duration::days(365)).timestamp_millis();
        assert_eq!(ledger.purge(cutoff).await.unwrap(), 1);
        old.text = "other".into();
        assert!(ledger.record(&[old], 6).await.unwrap().conflicts.is_empty());
    }

    #[tokio::test]
    async fn one_id_one_content_on_sqlite() {
        one_id_one_content(ledger(testing::sqlite_config()).await).await;
    }

    #[tokio::test]
    async fn one_id_one_content_on_postgres() {
        if let Some(config) =
            testing::postgres_config("ingest::event_ids::one_id_one_content_on_postgres")
        {
            one_id_one_content(ledger(config).await).await;
        }
    }

    /// Many requests at once share SQLite transactions: each still gets its own answer,
    /// and a refused batch leaves the requests committed with it recorded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_answered_one_by_one() {
        let ledger = std::sync::Arc::new(ledger(testing::sqlite_config()).await);
        let originals: Vec<Feedback> = (0..150).map(|i| feedback(&format!("text {i}"))).collect();
        let mut requests: Vec<Vec<Feedback>> = Vec::new();
        for original in &originals {
            requests.push(vec![original.clone()]);
            let mut changed = original.clone();
            changed.text.push_str(" changed");
            requests.push(vec![changed]);
        }
        // A batch whose second item conflicts with whichever version of #0 wins.
        let batch_fresh = feedback("batch fresh");
        let mut batch_conflict = originals[0].clone();
        batch_conflict.text = "neither version".into();
        requests.push(vec![batch_fresh.clone(), batch_conflict]);

        let answers = futures::future::join_all(requests.iter().map(|request| {
            let ledger = ledger.clone();
            async move { ledger.record(request, 1).await.expect("recorded") }
        }))
        .await;
        for (i, pair) in answers[..300].chunks(2).enumerate() {
            let accepted = pair.iter().filter(|r| r.conflicts.is_empty()).count();
            assert_eq!(
                accepted, 1,
                "exactly one content per id, pair {i}: {pair:?}"
            );
        }
        assert_eq!(answers[300].conflicts, [1]);
        // The refused batch recorded nothing: its fresh item may still take other content.
        let mut fresh_changed = batch_fresh;
        fresh_changed.text = "changed".into();
        assert!(ledger
            .record(&[fresh_changed], 2)
            .await
            .unwrap()
            .conflicts
            .is_empty());
    }
}
