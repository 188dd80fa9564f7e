//! Every query the trends service runs, in one place. The SQL is the same for SQLite and
//! PostgreSQL (sqlx `Any` driver): `$n` placeholders, TEXT / BIGINT columns only, ids as
//! UUID text, times as Unix milliseconds, flags as 0/1.

use closeloop_store::sqlx::{self, Row};
use closeloop_store::Database;
use closeloop_trend::Mention;

/// One (feedback, theme) mention as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MentionRow {
    pub feedback_id: String,
    pub theme: String,
    pub customer_id: String,
    pub negative: bool,
    pub excerpt: String,
    pub channel: String,
    pub touchpoint: Option<String>,
    pub rating: Option<i64>,
    pub given_at_ms: i64,
}

/// A negative mention's quotable part, a candidate for an action's evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct ExcerptRow {
    pub feedback_id: String,
    pub customer_id: String,
    pub excerpt: String,
    pub given_at_ms: i64,
}

/// One row of `trends_actions`. Evidence and resolution stay JSON text here; the callers
/// decide what a row that does not parse means for them.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRow {
    pub action_id: String,
    pub theme: String,
    pub status: String,
    pub raised_at_ms: i64,
    pub updated_at_ms: i64,
    pub evidence_json: String,
    pub resolution_json: Option<String>,
    pub resolved_at_ms: Option<i64>,
    /// Whether the `raised` event was acknowledged by the broker.
    pub announced: bool,
}

const ACTION_COLUMNS: &str = "action_id, theme, status, raised_at_ms, updated_at_ms, \
     evidence_json, resolution_json, resolved_at_ms, announced";

fn action_from_row(row: &sqlx::any::AnyRow) -> Result<ActionRow, sqlx::Error> {
    Ok(ActionRow {
        action_id: row.try_get("action_id")?,
        theme: row.try_get("theme")?,
        status: row.try_get("status")?,
        raised_at_ms: row.try_get("raised_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        evidence_json: row.try_get("evidence_json")?,
        resolution_json: row.try_get("resolution_json")?,
        resolved_at_ms: row.try_get("resolved_at_ms")?,
        announced: row.try_get::<i64, _>("announced")? != 0,
    })
}

/// Filters of the action list.
#[derive(Debug, Clone, Default)]
pub struct ActionFilter {
    pub status: Option<String>,
    pub theme: Option<String>,
    pub limit: i64,
}

/// The trends tables behind a cheap-to-clone handle.
#[derive(Debug, Clone)]
pub struct TrendsStore {
    db: Database,
}

impl TrendsStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Stores a mention; `false` when it was already there (a replayed record).
    pub async fn insert_mention(&self, m: &MentionRow) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO trends_mentions (feedback_id, theme, customer_id, negative, excerpt, \
             channel, touchpoint, rating, given_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&m.feedback_id)
        .bind(&m.theme)
        .bind(&m.customer_id)
        .bind(i64::from(m.negative))
        .bind(&m.excerpt)
        .bind(&m.channel)
        .bind(m.touchpoint.clone())
        .bind(m.rating)
        .bind(m.given_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The newest event time per theme: where each theme's window ends on start-up.
    pub async fn theme_watermarks(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT theme, MAX(given_at_ms) FROM trends_mentions GROUP BY theme ORDER BY theme",
        )
        .fetch_all(self.db.pool())
        .await
    }

    /// The mentions of `theme` at or after `from_ms` and strictly after `after_ms`, in event
    /// time order (ties by feedback id, so a replay is deterministic).
    pub async fn theme_mentions(
        &self,
        theme: &str,
        from_ms: i64,
        after_ms: i64,
    ) -> Result<Vec<Mention>, sqlx::Error> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT feedback_id, customer_id, negative, given_at_ms FROM trends_mentions \
             WHERE theme = $1 AND given_at_ms >= $2 AND given_at_ms > $3 \
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

    /// The newest negative mentions of `theme` in `(start_ms, end_ms]`, newest first.
    pub async fn recent_negative_excerpts(
        &self,
        theme: &str,
        start_ms: i64,
        end_ms: i64,
        limit: i64,
    ) -> Result<Vec<ExcerptRow>, sqlx::Error> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT feedback_id, customer_id, excerpt, given_at_ms FROM trends_mentions \
             WHERE theme = $1 AND negative = 1 AND given_at_ms > $2 AND given_at_ms <= $3 \
             ORDER BY given_at_ms DESC, feedback_id DESC LIMIT $4",
        )
        .bind(theme)
        .bind(start_ms)
        .bind(end_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(feedback_id, customer_id, excerpt, given_at_ms)| ExcerptRow {
                    feedback_id,
                    customer_id,
                    excerpt,
                    given_at_ms,
                },
            )
            .collect())
    }

    /// When each theme's latest action was resolved: the hysteresis boundary.
    pub async fn last_resolutions(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT theme, MAX(resolved_at_ms) FROM trends_actions \
             WHERE resolved_at_ms IS NOT NULL GROUP BY theme ORDER BY theme",
        )
        .fetch_all(self.db.pool())
        .await
    }

    /// When `theme`'s latest action was resolved, if ever.
    pub async fn last_resolution(&self, theme: &str) -> Result<Option<i64>, sqlx::Error> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT MAX(resolved_at_ms) FROM trends_actions \
             WHERE theme = $1 AND resolved_at_ms IS NOT NULL",
        )
        .bind(theme)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.and_then(|(at,)| at))
    }

    pub async fn open_action(&self, theme: &str) -> Result<Option<ActionRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {ACTION_COLUMNS} FROM trends_actions WHERE theme = $1 AND status = 'open'"
        );
        let row = sqlx::query(&sql)
            .bind(theme)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(action_from_row).transpose()
    }

    /// The themes with an open action, for the `closeloop_actions_open` gauge.
    pub async fn open_themes(&self) -> Result<Vec<String>, sqlx::Error> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT theme FROM trends_actions WHERE status = 'open' ORDER BY theme")
                .fetch_all(self.db.pool())
                .await?;
        Ok(rows.into_iter().map(|(theme,)| theme).collect())
    }

    pub async fn action(&self, action_id: &str) -> Result<Option<ActionRow>, sqlx::Error> {
        let sql = format!("SELECT {ACTION_COLUMNS} FROM trends_actions WHERE action_id = $1");
        let row = sqlx::query(&sql)
            .bind(action_id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(action_from_row).transpose()
    }

    /// Newest first.
    pub async fn actions(&self, filter: &ActionFilter) -> Result<Vec<ActionRow>, sqlx::Error> {
        // Only fixed SQL fragments are concatenated; every value is a bind parameter.
        let mut clauses = Vec::new();
        let mut binds: Vec<&str> = Vec::new();
        if let Some(status) = &filter.status {
            binds.push(status);
            clauses.push(format!("status = ${}", binds.len()));
        }
        if let Some(theme) = &filter.theme {
            binds.push(theme);
            clauses.push(format!("theme = ${}", binds.len()));
        }
        let mut sql = format!("SELECT {ACTION_COLUMNS} FROM trends_actions");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY raised_at_ms DESC, action_id DESC LIMIT ${}",
            binds.len() + 1
        ));
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        let rows = query.bind(filter.limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(action_from_row).collect()
    }

    /// Inserts a new open action; `false` when the theme already has one (the partial
    /// unique index refused it: another instance was quicker).
    pub async fn insert_action(&self, a: &ActionRow) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO trends_actions (action_id, theme, status, raised_at_ms, updated_at_ms, \
             evidence_json, resolution_json, resolved_at_ms, announced) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&a.action_id)
        .bind(&a.theme)
        .bind(&a.status)
        .bind(a.raised_at_ms)
        .bind(a.updated_at_ms)
        .bind(&a.evidence_json)
        .bind(a.resolution_json.clone())
        .bind(a.resolved_at_ms)
        .bind(i64::from(a.announced))
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Undoes `insert_action` when its `raised` event could not be published.
    pub async fn delete_action(&self, action_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM trends_actions WHERE action_id = $1 AND status = 'open'")
            .bind(action_id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// New evidence for an open action (and, with `announced`, the note that its
    /// `raised` event went out). `false` if the action is no longer open.
    pub async fn update_evidence(
        &self,
        action_id: &str,
        evidence_json: &str,
        announced: bool,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_actions SET evidence_json = $2, announced = $3, updated_at_ms = $4 \
             WHERE action_id = $1 AND status = 'open'",
        )
        .bind(action_id)
        .bind(evidence_json)
        .bind(i64::from(announced))
        .bind(now_ms)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn mark_announced(&self, action_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE trends_actions SET announced = 1 WHERE action_id = $1")
            .bind(action_id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Marks an open action resolved; `false` if it was not open (any more).
    pub async fn resolve_action(
        &self,
        action_id: &str,
        resolution_json: &str,
        resolved_at_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_actions SET status = 'resolved', resolution_json = $2, \
             resolved_at_ms = $3, updated_at_ms = $3 WHERE action_id = $1 AND status = 'open'",
        )
        .bind(action_id)
        .bind(resolution_json)
        .bind(resolved_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Undoes `resolve_action` when the `resolved` event could not be published.
    pub async fn reopen_action(
        &self,
        action_id: &str,
        updated_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE trends_actions SET status = 'open', resolution_json = NULL, \
             resolved_at_ms = NULL, updated_at_ms = $2 WHERE action_id = $1",
        )
        .bind(action_id)
        .bind(updated_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> TrendsStore {
        let db =
            Database::connect(&closeloop_store::testing::database_args("trends").config("trends"))
                .await
                .expect("connect");
        db.migrate(sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        TrendsStore::new(db)
    }

    fn mention(feedback: &str, customer: &str, at_ms: i64) -> MentionRow {
        MentionRow {
            feedback_id: feedback.into(),
            theme: "delivery_time".into(),
            customer_id: customer.into(),
            negative: true,
            excerpt: format!("late again ({feedback})"),
            channel: "review".into(),
            touchpoint: None,
            rating: Some(1),
            given_at_ms: at_ms,
        }
    }

    fn action(id: &str) -> ActionRow {
        ActionRow {
            action_id: id.into(),
            theme: "delivery_time".into(),
            status: "open".into(),
            raised_at_ms: 1,
            updated_at_ms: 1,
            evidence_json: "{}".into(),
            resolution_json: None,
            resolved_at_ms: None,
            announced: false,
        }
    }

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
        assert_eq!(
            store.theme_watermarks().await.unwrap(),
            [("delivery_time".to_owned(), 200)]
        );
        let excerpts = store
            .recent_negative_excerpts("delivery_time", 0, 200, 10)
            .await
            .unwrap();
        assert_eq!(excerpts[0].feedback_id, "f2", "newest first");
    }

    #[tokio::test]
    async fn the_database_allows_one_open_action_per_theme() {
        let store = store().await;
        assert!(store.insert_action(&action("a1")).await.unwrap());
        assert!(
            !store.insert_action(&action("a2")).await.unwrap(),
            "second open action refused"
        );
        assert!(store.resolve_action("a1", "{}", 50).await.unwrap());
        assert!(
            !store.resolve_action("a1", "{}", 60).await.unwrap(),
            "already resolved"
        );
        assert!(
            store.insert_action(&action("a2")).await.unwrap(),
            "a resolved theme may raise again"
        );
        assert_eq!(
            store.last_resolution("delivery_time").await.unwrap(),
            Some(50)
        );
        assert_eq!(store.last_resolution("price").await.unwrap(), None);
        assert_eq!(store.open_themes().await.unwrap(), ["delivery_time"]);
        let open = store
            .actions(&ActionFilter {
                status: Some("open".into()),
                theme: Some("delivery_time".into()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].action_id, "a2");
    }
}
