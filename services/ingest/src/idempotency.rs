//! `Idempotency-Key` handling (zero2prod-style: the answer is stored with the key, so a
//! retry gets the first answer and publishes nothing new).

use closeloop_store::{sqlx, Database};
use uuid::Uuid;

/// A claim that has not been completed within this long is presumed abandoned (the
/// process died between claiming and answering) and may be taken over.
const STALE_CLAIM_MS: i64 = 30_000;

#[derive(Debug, PartialEq)]
pub enum Claim {
    /// First time: publish these events, then `complete`.
    New,
    /// Seen and answered before: return this answer again.
    Replay(String),
    /// Same key with another body: a client bug.
    Mismatch,
    /// Another request with this key is being processed right now.
    InProgress,
    /// An abandoned or failed claim: publish with these (the original) event ids, then
    /// `complete`.
    TakeOver(Vec<Uuid>),
}

pub struct Idempotency {
    db: Database,
}

impl Idempotency {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub async fn claim(
        &self,
        source: &str,
        key: &str,
        request_hash: &str,
        event_ids: &[Uuid],
        now_ms: i64,
    ) -> Result<Claim, sqlx::Error> {
        let ids = serde_json::to_string(event_ids).unwrap_or_else(|_| "[]".into());
        let inserted = sqlx::query(
            "INSERT INTO ingest_requests \
             (source, idempotency_key, request_hash, event_ids, status, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT DO NOTHING",
        )
        .bind(source)
        .bind(key)
        .bind(request_hash)
        .bind(&ids)
        .bind(now_ms)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::New);
        }
        let row: Option<(String, String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT request_hash, event_ids, status, response, updated_at_ms \
             FROM ingest_requests WHERE source = $1 AND idempotency_key = $2",
        )
        .bind(source)
        .bind(key)
        .fetch_optional(self.db.pool())
        .await?;
        let Some((hash, stored_ids, status, response, updated_at_ms)) = row else {
            // Released between our insert and select: let the client retry.
            return Ok(Claim::InProgress);
        };
        if hash != request_hash {
            return Ok(Claim::Mismatch);
        }
        if let (Some(response), "done") = (response, status.as_str()) {
            return Ok(Claim::Replay(response));
        }
        if status != "failed" && now_ms - updated_at_ms < STALE_CLAIM_MS {
            return Ok(Claim::InProgress);
        }
        // Take over only if nobody else did in the meantime.
        let taken = sqlx::query(
            "UPDATE ingest_requests SET status = 'pending', updated_at_ms = $1 \
             WHERE source = $2 AND idempotency_key = $3 AND status = $4 AND updated_at_ms = $5",
        )
        .bind(now_ms)
        .bind(source)
        .bind(key)
        .bind(&status)
        .bind(updated_at_ms)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(Claim::InProgress);
        }
        Ok(Claim::TakeOver(
            serde_json::from_str(&stored_ids).unwrap_or_default(),
        ))
    }

    pub async fn complete(
        &self,
        source: &str,
        key: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE ingest_requests SET status = 'done', response = $1, updated_at_ms = $2 \
             WHERE source = $3 AND idempotency_key = $4",
        )
        .bind(response)
        .bind(now_ms)
        .bind(source)
        .bind(key)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Marks the claim failed after a publish that may have reached the broker in part:
    /// the key stays bound to its event ids, so the client's retry (same key) publishes
    /// the same ids again at once, which downstream dedupes, instead of new ids that
    /// would double what got through.
    pub async fn fail(&self, source: &str, key: &str, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE ingest_requests SET status = 'failed', updated_at_ms = $1 \
             WHERE source = $2 AND idempotency_key = $3 AND status = 'pending'",
        )
        .bind(now_ms)
        .bind(source)
        .bind(key)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Gives the key back when nothing was published (the request was refused after its
    /// claim), so the client's retry starts afresh.
    pub async fn release(&self, source: &str, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "DELETE FROM ingest_requests WHERE source = $1 AND idempotency_key = $2 AND status = 'pending'",
        )
        .bind(source)
        .bind(key)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_store::testing;

    async fn idempotency(db_config: closeloop_store::StoreConfig) -> Idempotency {
        let db = Database::connect(&db_config).await.unwrap();
        db.migrate(sqlx::migrate!("./migrations")).await.unwrap();
        Idempotency::new(db)
    }

    async fn lifecycle(store: Idempotency) {
        let ids = vec![Uuid::now_v7()];
        assert_eq!(
            store.claim("s", "k", "h1", &ids, 1_000).await.unwrap(),
            Claim::New
        );
        assert_eq!(
            store.claim("s", "k", "h1", &ids, 2_000).await.unwrap(),
            Claim::InProgress
        );
        assert_eq!(
            store.claim("s", "k", "h2", &ids, 2_000).await.unwrap(),
            Claim::Mismatch
        );
        assert_eq!(
            store.claim("other", "k", "h1", &ids, 2_000).await.unwrap(),
            Claim::New,
            "keys are per source"
        );
        // Abandoned: a later request takes over with the original ids.
        assert_eq!(
            store
                .claim("s", "k", "h1", &[Uuid::now_v7()], 1_000 + STALE_CLAIM_MS)
                .await
                .unwrap(),
            Claim::TakeOver(ids.clone())
        );
        store
            .complete("s", "k", "{\"ok\":1}", 50_000)
            .await
            .unwrap();
        assert_eq!(
            store.claim("s", "k", "h1", &ids, 60_000).await.unwrap(),
            Claim::Replay("{\"ok\":1}".into())
        );
        // A failed publish keeps the ids: the retry takes over at once, not after the
        // stale time, with the ids that may have reached the broker.
        let failed_ids = vec![Uuid::now_v7(), Uuid::now_v7()];
        store.claim("s", "f", "h", &failed_ids, 1).await.unwrap();
        store.fail("s", "f", 2).await.unwrap();
        assert_eq!(
            store
                .claim("s", "f", "h", &[Uuid::now_v7()], 3)
                .await
                .unwrap(),
            Claim::TakeOver(failed_ids.clone())
        );
        assert_eq!(
            store
                .claim("s", "f", "h", &[Uuid::now_v7()], 4)
                .await
                .unwrap(),
            Claim::InProgress,
            "taken over: pending again"
        );
        // A released claim can be made again.
        store.claim("s", "r", "h", &ids, 1).await.unwrap();
        store.release("s", "r").await.unwrap();
        assert_eq!(
            store.claim("s", "r", "h", &ids, 2).await.unwrap(),
            Claim::New
        );
    }

    #[tokio::test]
    async fn lifecycle_on_sqlite() {
        lifecycle(idempotency(testing::sqlite_config()).await).await;
    }

    #[tokio::test]
    async fn lifecycle_on_postgres() {
        if let Some(config) = testing::postgres_config("ingest::idempotency::lifecycle_on_postgres")
        {
            lifecycle(idempotency(config).await).await;
        }
    }
}
