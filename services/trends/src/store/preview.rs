//! What a replay preview of a proposed taxonomy version reads: the themes trends counted
//! for a batch of feedback, and which of its customers were erased.

use closeloop_store::sqlx;

use super::TrendsStore;

impl TrendsStore {
    /// The erasures (pseudonym, scope) recorded for any of `pseudonyms`.
    pub async fn erasures_of(
        &self,
        pseudonyms: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        self.pairs_in(
            "SELECT customer_id, source FROM trends_erasures WHERE customer_id IN",
            pseudonyms,
        )
        .await
    }

    /// The themes trends counted for each of `feedback_ids` (a feedback without any has
    /// no entry): what a replay preview compares a proposed version with.
    pub async fn counted_themes(
        &self,
        feedback_ids: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        self.pairs_in(
            "SELECT feedback_id, theme FROM trends_mentions WHERE feedback_id IN",
            feedback_ids,
        )
        .await
    }

    /// The rows of `select_where_in` (a query ending in `... IN`, of two text columns)
    /// for `values`, in chunks a statement can bind.
    async fn pairs_in(
        &self,
        select_where_in: &str,
        values: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let mut found = Vec::new();
        for chunk in values.chunks(500) {
            let sql = format!(
                "{select_where_in} {}",
                closeloop_store::values::placeholders(self.db.backend(), 1, chunk.len())
            );
            let select = chunk
                .iter()
                .fold(sqlx::query_as(&sql), |select, value| select.bind(*value));
            found.extend(select.fetch_all(self.db.pool()).await?);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing;

    #[tokio::test]
    async fn erasures_are_found_by_pseudonym_with_their_scope() {
        let store = testing::store().await;
        let a = store.pseudonym_of("a");
        let b = store.pseudonym_of("b");
        store.record_erasure("a", "*", 10).await.expect("stored");
        store
            .record_erasure("b", "surveyhub", 10)
            .await
            .expect("stored");
        let mut found = store
            .erasures_of(&[a.as_str(), b.as_str(), "nobody"])
            .await
            .expect("read");
        found.sort();
        let mut expected = vec![(a, "*".to_owned()), (b, "surveyhub".to_owned())];
        expected.sort();
        assert_eq!(found, expected);
    }

    #[tokio::test]
    async fn counted_themes_are_read_by_feedback() {
        let store = testing::store().await;
        let mut mention = testing::mention("f1", "c1", 1_000);
        store.insert_mention(&mention).await.expect("stored");
        mention.theme = "delivery".into();
        store.insert_mention(&mention).await.expect("stored");
        let mut found = store.counted_themes(&["f1", "f2"]).await.expect("read");
        found.sort();
        assert_eq!(
            found,
            [
                ("f1".to_owned(), "delivery".to_owned()),
                ("f1".to_owned(), "delivery_time".to_owned())
            ]
        );
    }
}
