//! Forgetting a customer: the erasure ledger, pseudonymised mentions, and scrubbed
//! evidence quotes.

use closeloop_store::sqlx;

use super::TrendsStore;

impl TrendsStore {
    /// Remembers that a customer (by pseudonym) was erased at `erased_at_ms`.
    pub async fn record_erasure(
        &self,
        pseudonym: &str,
        erased_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO trends_erasures (customer_id, erased_at_ms) VALUES ($1, $2) \
             ON CONFLICT (customer_id) DO UPDATE SET erased_at_ms = CASE \
             WHEN excluded.erased_at_ms > trends_erasures.erased_at_ms \
             THEN excluded.erased_at_ms ELSE trends_erasures.erased_at_ms END",
        )
        .bind(pseudonym)
        .bind(erased_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Puts `pseudonym` in place of the customer's id on their mentions and forgets
    /// their words. Returns how many mentions were changed.
    pub async fn pseudonymise_mentions(
        &self,
        customer_id: &str,
        pseudonym: &str,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_mentions SET customer_id = $1, excerpt = '' WHERE customer_id = $2",
        )
        .bind(pseudonym)
        .bind(customer_id)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Actions (any status) whose evidence may quote `customer_id`: a cheap textual
    /// pre-filter; the caller checks each one exactly.
    pub async fn actions_mentioning(
        &self,
        customer_id: &str,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        // The id as it appears inside the JSON (quoted and escaped). LIKE wildcards in it
        // only widen the match, which the exact check afterwards narrows again.
        let quoted = serde_json::to_string(customer_id).unwrap_or_default();
        sqlx::query_as(
            "SELECT action_id, evidence_json FROM trends_actions WHERE evidence_json LIKE $1",
        )
        .bind(format!("%{quoted}%"))
        .fetch_all(self.db.pool())
        .await
    }

    /// Replaces an action's evidence whatever its status (erasure scrubbing quotes).
    pub async fn replace_evidence(
        &self,
        action_id: &str,
        evidence_json: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE trends_actions SET evidence_json = $2 WHERE action_id = $1")
            .bind(action_id)
            .bind(evidence_json)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
