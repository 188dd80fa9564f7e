//! The ledger of accepted event ids: one `event_id` names one event. A client may send
//! the same id again with the same content (a retry: accepted, published again, deduped
//! downstream), never with other content, whichever source sends it, because downstream
//! would otherwise hold two bodies under one id (categorise the first, trends and notify
//! both).

use closeloop_events::Feedback;
use closeloop_store::{sqlx, values, Backend, Database};

pub struct EventIds {
    db: Database,
}

impl EventIds {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records the ids of `feedback` with their content hashes, all or none. Returns the
    /// indexes (into `feedback`) whose id was accepted before with other content; when
    /// there are any, nothing is recorded.
    pub async fn record(
        &self,
        feedback: &[Feedback],
        now_ms: i64,
    ) -> Result<Vec<usize>, sqlx::Error> {
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
        if rows.len() == 1 {
            // One statement is atomic on its own: no transaction to pay for on the hot
            // path of single-event requests.
            let mut conn = self.db.pool().acquire().await?;
            return insert_and_check(&mut conn, self.db.backend(), &rows, now_ms).await;
        }
        // Write first, then read, in one transaction: a read-then-write transaction fails
        // with SQLITE_BUSY_SNAPSHOT under contention.
        let mut tx = self.db.pool().begin().await?;
        let conflicts = insert_and_check(&mut tx, self.db.backend(), &rows, now_ms).await?;
        if conflicts.is_empty() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(conflicts)
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

/// Inserts the rows that are new and returns the indexes of those whose id is stored
/// with another hash (sorted).
async fn insert_and_check(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[Row],
    now_ms: i64,
) -> Result<Vec<usize>, sqlx::Error> {
    let mut inserted = 0;
    for chunk in rows.chunks(values::rows_per_statement(backend, 4)) {
        let insert = format!(
            "INSERT INTO ingest_event_ids (event_id, content_hash, given_at_ms, accepted_at_ms) \
             VALUES {} ON CONFLICT DO NOTHING",
            values::placeholders(chunk.len(), 4)
        );
        let mut query = sqlx::query(&insert);
        for (_, id, hash, given_at_ms) in chunk {
            query = query.bind(id).bind(hash).bind(*given_at_ms).bind(now_ms);
        }
        inserted += query.execute(&mut *conn).await?.rows_affected();
    }
    if inserted == rows.len() as u64 {
        return Ok(Vec::new());
    }
    let mut stored: Vec<(String, String)> = Vec::new();
    for chunk in rows.chunks(values::rows_per_statement(backend, 1)) {
        // One "row" of placeholders is the parenthesised IN list.
        let select = format!(
            "SELECT event_id, content_hash FROM ingest_event_ids WHERE event_id IN {}",
            values::placeholders(1, chunk.len())
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
    Ok(conflicts)
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
        assert!(ledger
            .record(std::slice::from_ref(&first), 1)
            .await
            .unwrap()
            .is_empty());
        // A retry a moment later: same content, other receiving time.
        let mut retry = first.clone();
        retry.received_at += Duration::seconds(3);
        retry.given_at = retry.received_at;
        assert!(ledger.record(&[retry], 2).await.unwrap().is_empty());

        let mut other_text = first.clone();
        other_text.text = "great parcel".into();
        let mut other_source = first.clone();
        other_source.source = "surveyhub".into();
        let fresh = feedback("new");
        assert_eq!(
            ledger
                .record(&[fresh.clone(), other_text, other_source], 3)
                .await
                .unwrap(),
            [1, 2]
        );
        // All or none: the fresh item of the refused batch was not recorded.
        let mut fresh_changed = fresh.clone();
        fresh_changed.text = "changed".into();
        assert!(ledger.record(&[fresh_changed], 4).await.unwrap().is_empty());

        let mut old = feedback("old");
        old.given_at -= Duration::days(400);
        assert!(ledger.record(&[old.clone()], 5).await.unwrap().is_empty());
        let cutoff = (Utc::now() - Duration::days(365)).timestamp_millis();
        assert_eq!(ledger.purge(cutoff).await.unwrap(), 1);
        old.text = "other".into();
        assert!(ledger.record(&[old], 6).await.unwrap().is_empty());
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
}
