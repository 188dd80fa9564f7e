//! Scored feedback for theme impact (`trends_feedback_scores`): one row per feedback with
//! an NPS answer or a rating, the themes it mentions and those it mentions negatively.
//! Nothing personal (see the migration), so an erasure leaves it alone.

use closeloop_store::{sqlx, values};

use super::TrendsStore;

/// One scored feedback.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ScoreRow {
    pub feedback_id: String,
    /// NPS answer, 0–10.
    pub nps: Option<i64>,
    /// Rating, 1–5.
    pub rating: Option<i64>,
    /// Theme ids, one per line: mentioned, and mentioned negatively.
    pub themes: String,
    pub negative_themes: String,
    pub given_at_ms: i64,
}

impl ScoreRow {
    const COLUMNS: usize = 6;
}

impl TrendsStore {
    /// Stores scored feedback within the caller's transaction; a feedback already stored
    /// (a replay) is left as it is. Returns how many rows were new.
    pub(super) async fn insert_scores_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        rows: &[ScoreRow],
    ) -> Result<u64, sqlx::Error> {
        let mut inserted = 0;
        let per_statement = values::rows_per_statement(self.db.backend(), ScoreRow::COLUMNS);
        for chunk in rows.chunks(per_statement) {
            let sql = format!(
                "INSERT INTO trends_feedback_scores \
                 (feedback_id, nps, rating, themes, negative_themes, given_at_ms) \
                 VALUES {} ON CONFLICT DO NOTHING",
                values::placeholders(self.db.backend(), chunk.len(), ScoreRow::COLUMNS)
            );
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query
                    .bind(&row.feedback_id)
                    .bind(row.nps)
                    .bind(row.rating)
                    .bind(&row.themes)
                    .bind(&row.negative_themes)
                    .bind(row.given_at_ms);
            }
            inserted += query.execute(&mut *conn).await?.rows_affected();
        }
        Ok(inserted)
    }

    /// The scored feedback given in `[from_ms, to_ms)`.
    pub async fn scores(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ScoreRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT feedback_id, nps, rating, themes, negative_themes, given_at_ms \
             FROM trends_feedback_scores WHERE given_at_ms >= $1 AND given_at_ms < $2",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.db.pool())
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::store;
    use super::*;

    fn row(feedback: &str, nps: Option<i64>, at_ms: i64) -> ScoreRow {
        ScoreRow {
            feedback_id: feedback.into(),
            nps,
            rating: Some(2),
            themes: "delivery_time\nprice\n".into(),
            negative_themes: "delivery_time\n".into(),
            given_at_ms: at_ms,
        }
    }

    #[tokio::test]
    async fn scores_are_stored_once_with_the_topic_feedback_and_read_back_by_event_time() {
        let store = store().await;
        let batch = [row("f1", Some(3), 100), row("f2", None, 200)];
        assert_eq!(store.insert_categorised(&[], &batch).await.unwrap(), (0, 2));
        assert_eq!(
            store.insert_categorised(&[], &batch).await.unwrap(),
            (0, 0),
            "a replay"
        );
        let mut rows = store.scores(100, 200).await.unwrap();
        assert_eq!(rows, [row("f1", Some(3), 100)], "[from, to)");
        rows = store.scores(0, 1_000).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows
            .iter()
            .any(|r| r.feedback_id == "f2" && r.nps.is_none()));
    }
}
