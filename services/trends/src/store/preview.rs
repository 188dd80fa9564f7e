//! What a replay preview of a proposed taxonomy version reads besides the counted
//! themes (see [`super::taxonomy`]): which customers of a batch were erased.

use closeloop_store::sqlx;

use super::TrendsStore;

impl TrendsStore {
    /// The erasures (pseudonym, scope) recorded for any of `pseudonyms`.
    pub async fn erasures_of(
        &self,
        pseudonyms: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let mut found = Vec::new();
        for chunk in pseudonyms.chunks(500) {
            let sql = format!(
                "SELECT customer_id, source FROM trends_erasures WHERE customer_id IN {}",
                closeloop_store::values::placeholders(1, chunk.len())
            );
            let select = chunk
                .iter()
                .fold(sqlx::query_as(&sql), |select, id| select.bind(*id));
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
}
