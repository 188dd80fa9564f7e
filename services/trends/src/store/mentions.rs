//! Storing theme mentions and reading them back in event time order, as the detector
//! counts them.

use std::collections::HashSet;

use closeloop_store::{sqlx, values, Backend};
use closeloop_trend::Mention;

use super::TrendsStore;

/// One (feedback, theme) mention as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MentionRow {
    pub feedback_id: String,
    pub theme: String,
    pub customer_id: String,
    /// The source the feedback came through (what a scoped erasure matches).
    pub source: String,
    pub negative: bool,
    pub excerpt: String,
    pub channel: String,
    pub touchpoint: Option<String>,
    pub rating: Option<i64>,
    pub nps: Option<i64>,
    pub given_at_ms: i64,
}

/// Parameters per stored mention (see [`insert_sql`]).
const MENTION_BINDS: usize = 12;

/// `INSERT … SELECT … FROM (VALUES …)` for `rows` mentions, returning the keys of those
/// that were new. A mention given before its customer was erased (in its source's scope)
/// is stored pseudonymised and without its words. Each parameter appears once, in
/// order, as [`values::placeholders`] asks (`WHERE 1 = 1`: SQLite cannot tell
/// `ON CONFLICT` from a join's `ON` after a bare `SELECT … FROM`).
fn insert_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO trends_mentions (feedback_id, theme, customer_id, negative, excerpt, \
         channel, touchpoint, rating, nps, given_at_ms, source) \
         SELECT w.column1, w.column2, CASE WHEN w.erased THEN w.column11 ELSE w.column3 END, \
                w.column4, CASE WHEN w.erased THEN '' ELSE w.column5 END, w.column6, \
                w.column7, w.column8, w.column9, w.column10, w.column12 \
         FROM (SELECT v.*, EXISTS (SELECT 1 FROM trends_erasures e \
                                   WHERE e.customer_id = v.column11 \
                                     AND e.source IN (v.column12, '*') \
                                     AND e.erased_at_ms >= v.column10) AS erased \
               FROM (VALUES {}) AS v) AS w \
         WHERE 1 = 1 ON CONFLICT DO NOTHING RETURNING feedback_id, theme",
        values::placeholders(backend, rows, MENTION_BINDS)
    )
}

impl TrendsStore {
    /// Stores a mention; `false` when it was already there (a replayed record).
    pub async fn insert_mention(&self, m: &MentionRow) -> Result<bool, sqlx::Error> {
        let inserted = self.insert_mentions(std::slice::from_ref(m)).await?;
        Ok(inserted.first().copied().unwrap_or(false))
    }

    /// Stores mentions in one transaction, many rows per statement (one statement per
    /// mention had cost trends a round trip to the database's thread each); per mention,
    /// whether it was new. A mention repeated within `rows` is new only the first time.
    pub async fn insert_mentions(&self, rows: &[MentionRow]) -> Result<Vec<bool>, sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        let mut new = Vec::new();
        for chunk in rows.chunks(values::rows_per_statement(self.db.backend(), MENTION_BINDS)) {
            let sql = insert_sql(self.db.backend(), chunk.len());
            let insert =
                chunk
                    .iter()
                    .fold(sqlx::query_as::<_, (String, String)>(&sql), |insert, m| {
                        insert
                            .bind(&m.feedback_id)
                            .bind(&m.theme)
                            .bind(&m.customer_id)
                            .bind(i64::from(m.negative))
                            .bind(&m.excerpt)
                            .bind(&m.channel)
                            .bind(m.touchpoint.clone())
                            .bind(m.rating)
                            .bind(m.nps)
                            .bind(m.given_at_ms)
                            .bind(self.pseudonyms.of(&m.customer_id))
                            .bind(&m.source)
                    });
            new.extend(insert.fetch_all(&mut *tx).await?);
        }
        tx.commit().await?;
        let mut new: HashSet<(&str, &str)> = new
            .iter()
            .map(|(feedback, theme)| (feedback.as_str(), theme.as_str()))
            .collect();
        Ok(rows
            .iter()
            .map(|m| new.remove(&(m.feedback_id.as_str(), m.theme.as_str())))
            .collect())
    }

    /// Notes that the detector did not count a mention (it came too late), so a restart
    /// does not count it either.
    pub async fn mark_not_counted(
        &self,
        feedback_id: &str,
        theme: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE trends_mentions SET counted = 0 WHERE feedback_id = $1 AND theme = $2")
            .bind(feedback_id)
            .bind(theme)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// The newest event time per theme: where each theme's window ends on start-up.
    pub async fn theme_watermarks(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT theme, MAX(given_at_ms) FROM trends_mentions GROUP BY theme ORDER BY theme",
        )
        .fetch_all(self.db.pool())
        .await
    }

    /// The counted mentions of `theme` at or after `from_ms` and strictly after
    /// `after_ms`, in event time order (ties by feedback id, so a replay is
    /// deterministic).
    pub async fn theme_mentions(
        &self,
        theme: &str,
        from_ms: i64,
        after_ms: i64,
    ) -> Result<Vec<Mention>, sqlx::Error> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT feedback_id, customer_id, negative, given_at_ms FROM trends_mentions \
             WHERE theme = $1 AND given_at_ms >= $2 AND given_at_ms > $3 AND counted = 1 \
             ORDER BY given_at_ms, feedback_id",
        )
        .bind(theme)
        .bind(from_ms)
        .bind(after_ms)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(feedback_id, customer_id, negative, at_ms)| Mention {
                feedback_id,
                customer_id,
                negative: negative != 0,
                at_ms,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{mention, span, store};

    #[tokio::test]
    async fn replayed_mentions_are_stored_once_and_read_back_in_event_time_order() {
        let store = store().await;
        assert!(store
            .insert_mention(&mention("f2", "b", 200))
            .await
            .unwrap());
        assert!(store
            .insert_mention(&mention("f1", "a", 100))
            .await
            .unwrap());
        assert!(
            !store
                .insert_mention(&mention("f1", "a", 100))
                .await
                .unwrap(),
            "replay"
        );
        let replayed = store.theme_mentions("delivery_time", 0, 100).await.unwrap();
        assert_eq!(replayed.len(), 1, "only after the resolution boundary");
        assert_eq!(replayed[0].feedback_id, "f2");
        let all = store
            .theme_mentions("delivery_time", 0, i64::MIN)
            .await
            .unwrap();
        assert_eq!(
            all.iter()
                .map(|m| m.feedback_id.as_str())
                .collect::<Vec<_>>(),
            ["f1", "f2"]
        );
        // A mention the detector dropped as too late is not replayed either.
        store.mark_not_counted("f1", "delivery_time").await.unwrap();
        let counted = store
            .theme_mentions("delivery_time", 0, i64::MIN)
            .await
            .unwrap();
        assert_eq!(counted.len(), 1);
        assert_eq!(
            store.theme_watermarks().await.unwrap(),
            [("delivery_time".to_owned(), 200)]
        );
        let excerpts = store
            .recent_negative_excerpts(span(0, 200, i64::MIN), 10)
            .await
            .unwrap();
        assert_eq!(excerpts.len(), 1);
        assert_eq!(excerpts[0].feedback_id, "f2");
    }

    #[tokio::test]
    async fn a_batch_is_stored_at_once_and_tells_which_mentions_were_new() {
        let store = store().await;
        assert!(store
            .insert_mention(&mention("f1", "a", 100))
            .await
            .unwrap());
        let batch = [
            mention("f1", "a", 100), // stored before: a replay
            mention("f2", "b", 200),
            mention("f3", "c", 300),
            mention("f2", "b", 200), // twice in one batch: new only the first time
        ];
        assert_eq!(
            store.insert_mentions(&batch).await.unwrap(),
            [false, true, true, false]
        );
        let all = store
            .theme_mentions("delivery_time", 0, i64::MIN)
            .await
            .unwrap();
        assert_eq!(
            all.iter()
                .map(|m| m.feedback_id.as_str())
                .collect::<Vec<_>>(),
            ["f1", "f2", "f3"]
        );
        assert_eq!(
            store.insert_mentions(&batch).await.unwrap(),
            [false; 4],
            "the whole batch again"
        );
    }
}
