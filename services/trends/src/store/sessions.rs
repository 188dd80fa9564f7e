//! `/ops` sessions: the hash of each session id, its CSRF token and when it expires.

use closeloop_store::sqlx;

use super::TrendsStore;

impl TrendsStore {
    pub async fn create_session(
        &self,
        id_hash: &str,
        csrf: &str,
        created_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO trends_ops_sessions (id_hash, csrf, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id_hash)
        .bind(csrf)
        .bind(created_at_ms)
        .bind(expires_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The CSRF token of the session, if it exists and has not expired at `now_ms`.
    pub async fn session_csrf(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT csrf FROM trends_ops_sessions WHERE id_hash = $1 AND expires_at_ms > $2",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(self.db.pool())
        .await
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM trends_ops_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Removes the sessions expired at `now_ms`; returns how many.
    pub async fn prune_sessions(&self, now_ms: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM trends_ops_sessions WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::store;

    #[tokio::test]
    async fn sessions_expire_are_pruned_and_end_on_delete() {
        let store = store().await;
        store.create_session("a", "csrf-a", 0, 1_000).await.unwrap();
        store.create_session("b", "csrf-b", 0, 5_000).await.unwrap();
        assert_eq!(
            store.session_csrf("a", 999).await.unwrap().as_deref(),
            Some("csrf-a")
        );
        assert_eq!(
            store.session_csrf("a", 1_000).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(store.session_csrf("c", 0).await.unwrap(), None, "unknown");
        assert_eq!(store.prune_sessions(1_000).await.unwrap(), 1);
        assert_eq!(store.prune_sessions(1_000).await.unwrap(), 0);
        assert_eq!(
            store.session_csrf("b", 1_000).await.unwrap().as_deref(),
            Some("csrf-b"),
            "a live session survives pruning"
        );
        store.delete_session("b").await.unwrap();
        assert_eq!(
            store.session_csrf("b", 0).await.unwrap(),
            None,
            "signed out"
        );
    }
}
