//! Forgetting a customer: the erasure ledger, pseudonymised mentions and feedback of
//! emerging topics, and scrubbed evidence quotes.

use std::collections::HashSet;

use closeloop_store::sqlx;

use super::TrendsStore;

impl TrendsStore {
    /// The pseudonym rows of `customer_id` get when they are erased.
    pub fn pseudonym_of(&self, customer_id: &str) -> String {
        self.pseudonyms.of(customer_id)
    }

    /// Remembers that a customer (by pseudonym) was erased at `erased_at_ms` in `scope`
    /// (a source, or `*` for every source).
    pub async fn record_erasure(
        &self,
        customer_id: &str,
        scope: &str,
        erased_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO trends_erasures (customer_id, source, erased_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (customer_id, source) DO UPDATE SET erased_at_ms = CASE \
             WHEN excluded.erased_at_ms > trends_erasures.erased_at_ms \
             THEN excluded.erased_at_ms ELSE trends_erasures.erased_at_ms END",
        )
        .bind(self.pseudonyms.of(customer_id))
        .bind(scope)
        .bind(erased_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Puts the customer's pseudonym in place of their id on their mentions in `scope`
    /// (a source, or `*`) and forgets their words. Mentions stored before mentions
    /// recorded their source (`source IS NULL`) are in every scope: which source they
    /// came through is unknown, and erasing too much beats keeping what was asked to go.
    /// Returns how many mentions were changed and the feedback ids of every mention of
    /// the customer in scope, including those an earlier attempt already changed (so a
    /// retry still finds the quotes to scrub).
    pub async fn pseudonymise_mentions(
        &self,
        customer_id: &str,
        scope: &str,
    ) -> Result<(u64, HashSet<String>), sqlx::Error> {
        let pseudonym = self.pseudonyms.of(customer_id);
        let feedback_ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT feedback_id FROM trends_mentions \
             WHERE customer_id IN ($1, $2) AND ($3 = '*' OR source = $3 OR source IS NULL)",
        )
        .bind(customer_id)
        .bind(&pseudonym)
        .bind(scope)
        .fetch_all(self.db.pool())
        .await?;
        let done = sqlx::query(
            "UPDATE trends_mentions SET customer_id = $1, excerpt = '' \
             WHERE customer_id = $2 AND ($3 = '*' OR source = $3 OR source IS NULL)",
        )
        .bind(&pseudonym)
        .bind(customer_id)
        .bind(scope)
        .execute(self.db.pool())
        .await?;
        Ok((done.rows_affected(), feedback_ids.into_iter().collect()))
    }

    /// Puts the customer's pseudonym in place of their id on their feedback stored for
    /// emerging topics in `scope` (a source, or `*`), and forgets their words: the
    /// excerpt and the phrases (which are their words too). The row stays, so a replay
    /// of the feedback changes nothing. Returns how many rows were changed.
    pub async fn pseudonymise_topic_feedback(
        &self,
        customer_id: &str,
        scope: &str,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_topic_feedback SET customer_id = $1, excerpt = NULL, phrases = '' \
             WHERE customer_id = $2 AND ($3 = '*' OR source = $3)",
        )
        .bind(self.pseudonyms.of(customer_id))
        .bind(customer_id)
        .bind(scope)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Evidence (of actions in any status, and of historical findings) that may quote
    /// `customer_id`: a cheap textual pre-filter; the caller checks each one exactly.
    pub async fn evidence_mentioning(
        &self,
        customer_id: &str,
    ) -> Result<Vec<(EvidenceOf, String)>, sqlx::Error> {
        // The id as it appears inside the JSON (quoted and escaped). LIKE wildcards in it
        // only widen the match, which the exact check afterwards narrows again.
        let quoted = serde_json::to_string(customer_id).unwrap_or_default();
        let pattern = format!("%{quoted}%");
        let actions: Vec<(String, String)> = sqlx::query_as(
            "SELECT action_id, evidence_json FROM trends_actions WHERE evidence_json LIKE $1",
        )
        .bind(&pattern)
        .fetch_all(self.db.pool())
        .await?;
        let findings: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT theme, triggered_at_ms, evidence_json FROM trends_findings \
             WHERE evidence_json LIKE $1",
        )
        .bind(&pattern)
        .fetch_all(self.db.pool())
        .await?;
        Ok(actions
            .into_iter()
            .map(|(id, json)| (EvidenceOf::Action(id), json))
            .chain(
                findings
                    .into_iter()
                    .map(|(theme, at, json)| (EvidenceOf::Finding(theme, at), json)),
            )
            .collect())
    }

    /// Replaces stored evidence whatever its action's status (erasure scrubbing quotes).
    pub async fn replace_evidence(
        &self,
        of: &EvidenceOf,
        evidence_json: &str,
    ) -> Result<(), sqlx::Error> {
        let query = match of {
            EvidenceOf::Action(action_id) => {
                sqlx::query("UPDATE trends_actions SET evidence_json = $2 WHERE action_id = $1")
                    .bind(action_id)
                    .bind(evidence_json)
            }
            EvidenceOf::Finding(theme, triggered_at_ms) => sqlx::query(
                "UPDATE trends_findings SET evidence_json = $3 \
                 WHERE theme = $1 AND triggered_at_ms = $2",
            )
            .bind(theme)
            .bind(triggered_at_ms)
            .bind(evidence_json),
        };
        query.execute(self.db.pool()).await?;
        Ok(())
    }
}

/// Whose stored evidence it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceOf {
    Action(String),
    /// A historical finding: theme and trigger time.
    Finding(String, i64),
}

#[cfg(test)]
mod tests {
    use super::super::testing::{mention, store};
    use super::super::MentionRow;

    fn via(source: &str, row: MentionRow) -> MentionRow {
        MentionRow {
            source: source.into(),
            ..row
        }
    }

    async fn customers(store: &super::TrendsStore) -> Vec<(String, String, String)> {
        closeloop_store::sqlx::query_as(
            "SELECT feedback_id, customer_id, excerpt FROM trends_mentions ORDER BY feedback_id",
        )
        .fetch_all(store.database().pool())
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_scoped_erasure_reaches_only_its_sources_mentions_then_and_later() {
        let store = store().await;
        let a = store.pseudonym_of("a");
        store
            .insert_mention(&via("shopdesk", mention("f1", "a", 100)))
            .await
            .unwrap();
        store
            .insert_mention(&via("surveyhub", mention("f2", "a", 100)))
            .await
            .unwrap();
        store.record_erasure("a", "surveyhub", 1_000).await.unwrap();
        let (changed, in_scope) = store.pseudonymise_mentions("a", "surveyhub").await.unwrap();
        assert_eq!(changed, 1);
        assert_eq!(in_scope, ["f2".to_owned()].into());
        // Late mentions given before the erasure: surveyhub's stored pseudonymised,
        // shopdesk's as they are.
        store
            .insert_mention(&via("surveyhub", mention("f3", "a", 500)))
            .await
            .unwrap();
        store
            .insert_mention(&via("shopdesk", mention("f4", "a", 500)))
            .await
            .unwrap();
        let rows = customers(&store).await;
        let expected = |id: &str, customer: &str, kept: bool| {
            let excerpt = if kept {
                format!("late again ({id})")
            } else {
                String::new()
            };
            (id.to_owned(), customer.to_owned(), excerpt)
        };
        assert_eq!(
            rows,
            [
                expected("f1", "a", true),
                expected("f2", &a, false),
                expected("f3", &a, false),
                expected("f4", "a", true),
            ]
        );
        // A retry still finds what it already changed; an erasure of every source the rest.
        let (changed, in_scope) = store.pseudonymise_mentions("a", "surveyhub").await.unwrap();
        assert_eq!((changed, in_scope.len()), (0, 2));
        let (changed, _) = store.pseudonymise_mentions("a", "*").await.unwrap();
        assert_eq!(changed, 2);
    }
}
