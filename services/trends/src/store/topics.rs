//! The feedback emerging topics are found in (`trends_topic_feedback`): stored once per
//! feedback, read back per span of event time, quoted by id.

use closeloop_store::{sqlx, values};

use super::{ScoreRow, TrendsStore};

/// One feedback as stored for emerging topics.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicFeedbackRow {
    pub feedback_id: String,
    pub customer_id: String,
    /// The source it came through (what a scoped erasure matches).
    pub source: String,
    pub language: String,
    pub sentiment: String,
    /// Whether it matched at least one theme.
    pub matched: bool,
    pub excerpt: String,
    /// `key<TAB>text` per phrase, one per line.
    pub phrases: String,
    pub given_at_ms: i64,
}

impl TopicFeedbackRow {
    const COLUMNS: usize = 10;
}

/// What the lists are computed from: a stored feedback without its excerpt.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TopicScanRow {
    pub feedback_id: String,
    pub customer_id: String,
    pub language: String,
    pub sentiment: String,
    pub matched: i64,
    pub phrases: String,
    pub given_at_ms: i64,
}

/// A quotable feedback (its customer not erased).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TopicExcerptRow {
    pub feedback_id: String,
    pub customer_id: String,
    pub excerpt: String,
    pub given_at_ms: i64,
}

impl TrendsStore {
    /// Stores feedback for emerging topics in one transaction; a feedback already stored
    /// (a replay) is left as it is, and one of a customer erased in its source's scope
    /// after it was given is stored under the pseudonym without their words. Returns how
    /// many rows were new.
    #[cfg(test)]
    pub async fn insert_topic_feedback(
        &self,
        rows: &[TopicFeedbackRow],
    ) -> Result<u64, sqlx::Error> {
        Ok(self.insert_categorised(rows, &[]).await?.0)
    }

    /// What the categorised-feedback consumer stores, in one transaction: feedback for
    /// emerging topics (as [`TrendsStore::insert_topic_feedback`]) and scored feedback
    /// for theme impact (as [`TrendsStore::insert_scores_in`]). Returns how many rows of
    /// each were new.
    pub async fn insert_categorised(
        &self,
        topics: &[TopicFeedbackRow],
        scores: &[ScoreRow],
    ) -> Result<(u64, u64), sqlx::Error> {
        if topics.is_empty() && scores.is_empty() {
            return Ok((0, 0));
        }
        let mut tx = self.db.pool().begin().await?;
        let topics = self.insert_topic_rows(&mut tx, topics).await?;
        let scores = self.insert_scores_in(&mut tx, scores).await?;
        tx.commit().await?;
        Ok((topics, scores))
    }

    async fn insert_topic_rows(
        &self,
        conn: &mut sqlx::AnyConnection,
        rows: &[TopicFeedbackRow],
    ) -> Result<u64, sqlx::Error> {
        let mut inserted = 0;
        let per_statement =
            values::rows_per_statement(self.db.backend(), TopicFeedbackRow::COLUMNS);
        for chunk in rows.chunks(per_statement) {
            // A VALUES list names its columns column1… on SQLite and PostgreSQL alike;
            // the erasure check is part of the insert, so the transaction only writes.
            // (`WHERE 1 = 1`: SQLite cannot tell `ON CONFLICT` from a join's `ON` after a
            // bare `SELECT … FROM`.)
            let sql = format!(
                "INSERT INTO trends_topic_feedback (feedback_id, customer_id, source, language, \
                 sentiment, matched, excerpt, phrases, given_at_ms) \
                 SELECT w.column1, CASE WHEN w.erased THEN w.column10 ELSE w.column2 END, \
                        w.column3, w.column4, w.column5, w.column6, \
                        CASE WHEN w.erased THEN NULL ELSE w.column7 END, \
                        CASE WHEN w.erased THEN '' ELSE w.column8 END, w.column9 \
                 FROM (SELECT v.*, EXISTS (SELECT 1 FROM trends_erasures e \
                                           WHERE e.customer_id = v.column10 \
                                             AND e.source IN (v.column3, '*') \
                                             AND e.erased_at_ms >= v.column9) AS erased \
                       FROM (VALUES {}) AS v) AS w \
                 WHERE 1 = 1 ON CONFLICT DO NOTHING",
                values::placeholders(self.db.backend(), chunk.len(), TopicFeedbackRow::COLUMNS)
            );
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query
                    .bind(&row.feedback_id)
                    .bind(&row.customer_id)
                    .bind(&row.source)
                    .bind(&row.language)
                    .bind(&row.sentiment)
                    .bind(i64::from(row.matched))
                    .bind(&row.excerpt)
                    .bind(&row.phrases)
                    .bind(row.given_at_ms)
                    .bind(self.pseudonyms.of(&row.customer_id));
            }
            inserted += query.execute(&mut *conn).await?.rows_affected();
        }
        Ok(inserted)
    }

    /// The event time of the newest stored feedback: where the windows end.
    pub async fn newest_topic_feedback(&self) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT MAX(given_at_ms) FROM trends_topic_feedback")
            .fetch_one(self.db.pool())
            .await
    }

    /// The stored feedback given in `(from_ms, to_ms]`, ordered by feedback id (so the
    /// caller's handles are the same on every replica).
    pub async fn topic_feedback(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<TopicScanRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT feedback_id, customer_id, language, sentiment, matched, phrases, given_at_ms \
             FROM trends_topic_feedback WHERE given_at_ms > $1 AND given_at_ms <= $2 \
             ORDER BY feedback_id",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.db.pool())
        .await
    }

    /// The excerpts of those of `feedback_ids` that still have one (an erased customer's
    /// do not).
    pub async fn topic_excerpts(
        &self,
        feedback_ids: &[String],
    ) -> Result<Vec<TopicExcerptRow>, sqlx::Error> {
        let mut found = Vec::with_capacity(feedback_ids.len());
        let per_statement = values::max_binds(self.db.backend());
        for chunk in feedback_ids.chunks(per_statement) {
            let sql = format!(
                "SELECT feedback_id, customer_id, excerpt, given_at_ms FROM trends_topic_feedback \
                 WHERE feedback_id IN ({}) AND excerpt IS NOT NULL",
                values::list(chunk.len(), 1)
            );
            let mut query = sqlx::query_as(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            found.extend(query.fetch_all(self.db.pool()).await?);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::store;
    use super::*;

    fn row(feedback: &str, customer: &str, source: &str, at_ms: i64) -> TopicFeedbackRow {
        TopicFeedbackRow {
            feedback_id: feedback.into(),
            customer_id: customer.into(),
            source: source.into(),
            language: "en".into(),
            sentiment: "negative".into(),
            matched: false,
            excerpt: format!("the wallet is broken ({feedback})"),
            phrases: "wallet\twallet\nwallet broken\twallet is broken".into(),
            given_at_ms: at_ms,
        }
    }

    #[tokio::test]
    async fn feedback_is_stored_once_and_read_back_by_event_time() {
        let store = store().await;
        assert_eq!(store.newest_topic_feedback().await.unwrap(), None);
        let batch = [
            row("f2", "b", "shopdesk", 200),
            row("f1", "a", "shopdesk", 100),
            row("f2", "b", "shopdesk", 200),
        ];
        assert_eq!(store.insert_topic_feedback(&batch).await.unwrap(), 2);
        assert_eq!(
            store.insert_topic_feedback(&batch).await.unwrap(),
            0,
            "a replay"
        );
        assert_eq!(store.newest_topic_feedback().await.unwrap(), Some(200));
        let rows = store.topic_feedback(100, 200).await.unwrap();
        assert_eq!(rows.len(), 1, "(from, to]: {rows:?}");
        assert_eq!(rows[0].feedback_id, "f2");
        assert_eq!(rows[0].matched, 0);
        let all = store.topic_feedback(0, 200).await.unwrap();
        assert_eq!(
            all.iter()
                .map(|r| r.feedback_id.as_str())
                .collect::<Vec<_>>(),
            ["f1", "f2"]
        );
        let excerpts = store
            .topic_excerpts(&["f1".into(), "nope".into()])
            .await
            .unwrap();
        assert_eq!(excerpts.len(), 1);
        assert_eq!(excerpts[0].excerpt, "the wallet is broken (f1)");
        assert_eq!(excerpts[0].customer_id, "a");
    }

    #[tokio::test]
    async fn an_erasure_forgets_the_words_now_and_of_feedback_arriving_later() {
        let store = store().await;
        let pseudonym = store.pseudonym_of("a");
        store
            .insert_topic_feedback(&[
                row("f1", "a", "shopdesk", 100),
                row("f2", "a", "surveyhub", 100),
                row("f3", "b", "surveyhub", 100),
            ])
            .await
            .unwrap();
        store.record_erasure("a", "surveyhub", 1_000).await.unwrap();
        assert_eq!(
            store
                .pseudonymise_topic_feedback("a", "surveyhub")
                .await
                .unwrap(),
            1
        );
        // Given before the erasure, arriving after it: stored without their words.
        store
            .insert_topic_feedback(&[
                row("f4", "a", "surveyhub", 500),
                row("f5", "a", "shopdesk", 500),
            ])
            .await
            .unwrap();
        let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT feedback_id, customer_id, excerpt, phrases FROM trends_topic_feedback \
             ORDER BY feedback_id",
        )
        .fetch_all(store.database().pool())
        .await
        .unwrap();
        let words = |id: &str| {
            let row = rows.iter().find(|r| r.0 == id).expect("stored");
            (row.1.clone(), row.2.is_some(), !row.3.is_empty())
        };
        assert_eq!(words("f1"), ("a".into(), true, true), "shopdesk's stays");
        assert_eq!(words("f2"), (pseudonym.clone(), false, false));
        assert_eq!(words("f3"), ("b".into(), true, true));
        assert_eq!(words("f4"), (pseudonym.clone(), false, false));
        assert_eq!(words("f5"), ("a".into(), true, true));
        let quotable = store
            .topic_excerpts(&["f1".into(), "f2".into(), "f4".into()])
            .await
            .unwrap();
        assert_eq!(quotable.len(), 1, "{quotable:?}");
        // Everything of the customer, and a retry finds nothing left to change.
        assert_eq!(
            store.pseudonymise_topic_feedback("a", "*").await.unwrap(),
            2
        );
        assert_eq!(
            store.pseudonymise_topic_feedback("a", "*").await.unwrap(),
            0
        );
    }
}
