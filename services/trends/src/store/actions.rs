//! The action rows: raising, updating, acknowledging, resolving, reopening, and putting a
//! row back when its event could not be published. The partial unique index keeps one
//! unresolved action per theme.
//!
//! Statuses are [`ActionStatus`] on both sides: rows decode into it, and every status a
//! query compares with or sets is bound from it, never written into the SQL text. (The
//! one literal left is the unique index's predicate in the migrations, which is schema.)

use closeloop_events::{ActionEventKind, ActionStatus};
use closeloop_store::sqlx::{self, Row};
use closeloop_store::values;

use super::TrendsStore;

/// One row of `trends_actions`. Evidence and resolution stay JSON text here; the callers
/// decide what a row that does not parse means for them.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRow {
    pub action_id: String,
    pub theme: String,
    pub status: ActionStatus,
    pub raised_at_ms: i64,
    pub updated_at_ms: i64,
    pub evidence_json: String,
    pub resolution_json: Option<String>,
    /// When the action was last resolved; kept through a reopen, because it is also the
    /// boundary before which complaints count as answered.
    pub resolved_at_ms: Option<i64>,
    /// Whether the `raised` event was acknowledged by the broker.
    pub announced: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at_ms: Option<i64>,
    pub assignee: Option<String>,
    pub reopened_count: i64,
    pub reopened_by: Option<String>,
}

impl ActionRow {
    /// A just-raised action: open, not yet announced, nobody on it.
    pub fn raised(action_id: String, theme: String, at_ms: i64, evidence_json: String) -> Self {
        ActionRow {
            action_id,
            theme,
            status: ActionStatus::Open,
            raised_at_ms: at_ms,
            updated_at_ms: at_ms,
            evidence_json,
            resolution_json: None,
            resolved_at_ms: None,
            announced: false,
            acknowledged_by: None,
            acknowledged_at_ms: None,
            assignee: None,
            reopened_count: 0,
            reopened_by: None,
        }
    }
}

const ACTION_COLUMNS: &str = "action_id, theme, status, raised_at_ms, updated_at_ms, \
     evidence_json, resolution_json, resolved_at_ms, announced, acknowledged_by, \
     acknowledged_at_ms, assignee, reopened_count, reopened_by";

fn action_from_row(row: &sqlx::any::AnyRow) -> Result<ActionRow, sqlx::Error> {
    Ok(ActionRow {
        action_id: row.try_get("action_id")?,
        theme: row.try_get("theme")?,
        status: decode_status(row)?,
        raised_at_ms: row.try_get("raised_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        evidence_json: row.try_get("evidence_json")?,
        resolution_json: row.try_get("resolution_json")?,
        resolved_at_ms: row.try_get("resolved_at_ms")?,
        announced: row.try_get::<i64, _>("announced")? != 0,
        acknowledged_by: row.try_get("acknowledged_by")?,
        acknowledged_at_ms: row.try_get("acknowledged_at_ms")?,
        assignee: row.try_get("assignee")?,
        reopened_count: row.try_get("reopened_count")?,
        reopened_by: row.try_get("reopened_by")?,
    })
}

/// A status text no [`ActionStatus`] reads is a column that does not decode: only a hand
/// edit of the table can cause it, and callers report it like any other bad row.
fn decode_status(row: &sqlx::any::AnyRow) -> Result<ActionStatus, sqlx::Error> {
    let text: String = row.try_get("status")?;
    ActionStatus::try_from(text.as_str()).map_err(|error| sqlx::Error::ColumnDecode {
        index: "status".into(),
        source: Box::new(error),
    })
}

/// Which actions a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Is(ActionStatus),
    /// Open or acknowledged.
    Unresolved,
}

/// Filters of the action list.
#[derive(Debug, Clone, Default)]
pub struct ActionFilter {
    pub status: Option<StatusFilter>,
    pub theme: Option<String>,
    /// Only actions changed at or after this time.
    pub since_ms: Option<i64>,
    pub limit: i64,
}

impl TrendsStore {
    /// When each theme's latest action was resolved: the hysteresis boundary.
    pub async fn last_resolutions(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        // A theme's resolutions include those of the actions that covered it.
        sqlx::query_as(
            "SELECT theme, MAX(resolved_at_ms) FROM ( \
               SELECT theme, resolved_at_ms FROM trends_actions \
               WHERE resolved_at_ms IS NOT NULL \
               UNION ALL \
               SELECT c.theme, a.resolved_at_ms FROM trends_action_themes c \
               JOIN trends_actions a ON a.action_id = c.action_id \
               WHERE a.resolved_at_ms IS NOT NULL \
             ) resolutions GROUP BY theme ORDER BY theme",
        )
        .fetch_all(self.db.pool())
        .await
    }

    /// When `theme`'s latest action was resolved, if ever: its own or one that covered it.
    pub async fn last_resolution(&self, theme: &str) -> Result<Option<i64>, sqlx::Error> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT MAX(resolved_at_ms) FROM trends_actions \
             WHERE resolved_at_ms IS NOT NULL AND (theme = $1 OR action_id IN \
             (SELECT action_id FROM trends_action_themes WHERE theme = $1))",
        )
        .bind(theme)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.and_then(|(at,)| at))
    }

    /// The theme's open or acknowledged action, if any (at most one: the unique index).
    pub async fn unresolved_action(&self, theme: &str) -> Result<Option<ActionRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {ACTION_COLUMNS} FROM trends_actions WHERE theme = $1 AND status <> $2"
        );
        let row = sqlx::query(&sql)
            .bind(theme)
            .bind(ActionStatus::Resolved.as_str())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(action_from_row).transpose()
    }

    /// The oldest unresolved action of any of `themes` (a theme's lineage): the action
    /// a surge of the theme joins.
    pub async fn unresolved_action_of_any(
        &self,
        themes: &[&str],
    ) -> Result<Option<ActionRow>, sqlx::Error> {
        if themes.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {ACTION_COLUMNS} FROM trends_actions WHERE status <> $1 AND theme IN ({}) \
             ORDER BY raised_at_ms, action_id LIMIT 1",
            values::list(themes.len(), 2)
        );
        let mut query = sqlx::query(&sql).bind(ActionStatus::Resolved.as_str());
        for theme in themes {
            query = query.bind(*theme);
        }
        let row = query.fetch_optional(self.db.pool()).await?;
        row.as_ref().map(action_from_row).transpose()
    }

    /// Names the unresolved action after `theme` (a more specific theme of its line that
    /// surged), with `evidence_json`, if it is still about `expected_theme` with
    /// `expected_evidence`. Fails with a unique violation when `theme` has an unresolved
    /// action of its own.
    pub async fn retitle_action(
        &self,
        action_id: &str,
        (expected_theme, expected_evidence): (&str, &str),
        theme: &str,
        evidence_json: &str,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_actions SET theme = $2, evidence_json = $3, updated_at_ms = $4 \
             WHERE action_id = $1 AND status <> $5 AND theme = $6 AND evidence_json = $7",
        )
        .bind(action_id)
        .bind(theme)
        .bind(evidence_json)
        .bind(now_ms)
        .bind(ActionStatus::Resolved.as_str())
        .bind(expected_theme)
        .bind(expected_evidence)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes that `action_id` covers `theme` too (a replay changes nothing).
    pub async fn cover_theme(
        &self,
        action_id: &str,
        theme: &str,
        at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO trends_action_themes (action_id, theme, joined_at_ms) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(action_id)
        .bind(theme)
        .bind(at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The theme's most recently resolved action, the candidate for a reopen.
    pub async fn latest_resolved_action(
        &self,
        theme: &str,
    ) -> Result<Option<ActionRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {ACTION_COLUMNS} FROM trends_actions WHERE theme = $1 AND status = $2 \
             ORDER BY resolved_at_ms DESC, action_id DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(theme)
            .bind(ActionStatus::Resolved.as_str())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(action_from_row).transpose()
    }

    /// The themes with an unresolved action, for the `closeloop_actions_open` gauge.
    /// Each unresolved action's theme with the time it became unresolved: its last
    /// reopening, or its raising.
    pub async fn open_since(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT a.theme, COALESCE((SELECT MAX(l.at_ms) FROM trends_action_log l \
             WHERE l.action_id = a.action_id AND l.kind = $1), a.raised_at_ms) \
             FROM trends_actions a WHERE a.status <> $2 ORDER BY a.theme",
        )
        .bind(ActionEventKind::Reopened.as_str())
        .bind(ActionStatus::Resolved.as_str())
        .fetch_all(self.db.pool())
        .await
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
        let mut clauses: Vec<String> = Vec::new();
        let mut parameter = 0;
        let status = match filter.status {
            Some(StatusFilter::Is(status)) => {
                parameter += 1;
                clauses.push(format!("status = ${parameter}"));
                Some(status)
            }
            Some(StatusFilter::Unresolved) => {
                parameter += 1;
                clauses.push(format!("status <> ${parameter}"));
                Some(ActionStatus::Resolved)
            }
            None => None,
        };
        if filter.theme.is_some() {
            parameter += 1;
            clauses.push(format!("theme = ${parameter}"));
        }
        if filter.since_ms.is_some() {
            parameter += 1;
            clauses.push(format!("updated_at_ms >= ${parameter}"));
        }
        let mut sql = format!("SELECT {ACTION_COLUMNS} FROM trends_actions");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY raised_at_ms DESC, action_id DESC LIMIT ${}",
            parameter + 1
        ));
        let mut query = sqlx::query(&sql);
        if let Some(status) = status {
            query = query.bind(status.as_str());
        }
        if let Some(theme) = &filter.theme {
            query = query.bind(theme);
        }
        if let Some(since) = filter.since_ms {
            query = query.bind(since);
        }
        let rows = query.bind(filter.limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(action_from_row).collect()
    }

    /// Inserts a new open action; `false` when the theme already has an unresolved one
    /// (the partial unique index refused it: another instance was quicker).
    pub async fn insert_action(&self, a: &ActionRow) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO trends_actions (action_id, theme, status, raised_at_ms, updated_at_ms, \
             evidence_json, resolution_json, resolved_at_ms, announced) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&a.action_id)
        .bind(&a.theme)
        .bind(a.status.as_str())
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

    /// [`Self::insert_action`] unless another theme of `lineage` (the themes on the line of
    /// the hierarchy the action's theme is on) has an unresolved action: two instances
    /// raising a parent and its child at once must leave one action, which the other
    /// theme then joins or renames. Raises on one line (`line`: its root theme) are
    /// serialised — on PostgreSQL by a transaction-scoped advisory lock, since two
    /// concurrent inserts of different themes would not see each other; SQLite has one
    /// writer at a time, and the statement reads under its write lock.
    pub async fn insert_action_alone(
        &self,
        a: &ActionRow,
        lineage: &[&str],
        line: &str,
    ) -> Result<bool, sqlx::Error> {
        if lineage.is_empty() {
            return self.insert_action(a).await;
        }
        let sql = format!(
            "INSERT INTO trends_actions (action_id, theme, status, raised_at_ms, updated_at_ms, \
             evidence_json, resolution_json, resolved_at_ms, announced) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE NOT EXISTS (\
             SELECT 1 FROM trends_actions WHERE status <> $10 AND theme IN ({})) \
             ON CONFLICT DO NOTHING",
            values::list(lineage.len(), 11)
        );
        let mut transaction = self.db.pool().begin().await?;
        if self.db.backend() == closeloop_store::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(line_lock_key(line))
                .execute(&mut *transaction)
                .await?;
        }
        let mut insert = sqlx::query(&sql)
            .bind(&a.action_id)
            .bind(&a.theme)
            .bind(a.status.as_str())
            .bind(a.raised_at_ms)
            .bind(a.updated_at_ms)
            .bind(&a.evidence_json)
            .bind(a.resolution_json.clone())
            .bind(a.resolved_at_ms)
            .bind(i64::from(a.announced))
            .bind(ActionStatus::Resolved.as_str());
        for theme in lineage {
            insert = insert.bind(*theme);
        }
        let done = insert.execute(&mut *transaction).await?;
        transaction.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Undoes `insert_action` when its `raised` event could not be published.
    pub async fn delete_action(&self, action_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM trends_actions WHERE action_id = $1 AND status = $2")
            .bind(action_id)
            .bind(ActionStatus::Open.as_str())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// New evidence for an unresolved action (and, with `announced`, the note that its
    /// `raised` event went out), if its evidence is still `expected`: the action's own
    /// theme and a related theme (see `covered_themes`) write it from different tasks.
    /// `false` if the action is resolved or its evidence changed meanwhile.
    pub async fn update_evidence(
        &self,
        action_id: &str,
        expected: &str,
        evidence_json: &str,
        announced: bool,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_actions SET evidence_json = $2, announced = $3, updated_at_ms = $4 \
             WHERE action_id = $1 AND status <> $5 AND evidence_json = $6",
        )
        .bind(action_id)
        .bind(evidence_json)
        .bind(i64::from(announced))
        .bind(now_ms)
        .bind(ActionStatus::Resolved.as_str())
        .bind(expected)
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

    /// Marks an unresolved action resolved; `false` if it was resolved already.
    pub async fn resolve_action(
        &self,
        action_id: &str,
        resolution_json: &str,
        resolved_at_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_actions SET status = $4, resolution_json = $2, \
             resolved_at_ms = $3, updated_at_ms = $3 \
             WHERE action_id = $1 AND status <> $4",
        )
        .bind(action_id)
        .bind(resolution_json)
        .bind(resolved_at_ms)
        .bind(ActionStatus::Resolved.as_str())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Acknowledges an unresolved action, optionally assigning it; `false` if it is
    /// resolved. An acknowledgement keeps the first acknowledger; an assignment replaces
    /// the assignee.
    pub async fn acknowledge_action(
        &self,
        action_id: &str,
        by: &str,
        assignee: Option<&str>,
        at_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_actions SET status = $5, \
             acknowledged_by = COALESCE(acknowledged_by, $2), \
             acknowledged_at_ms = COALESCE(acknowledged_at_ms, $3), \
             assignee = COALESCE($4, assignee), updated_at_ms = $3 \
             WHERE action_id = $1 AND status <> $6",
        )
        .bind(action_id)
        .bind(by)
        .bind(at_ms)
        .bind(assignee)
        .bind(ActionStatus::Acknowledged.as_str())
        .bind(ActionStatus::Resolved.as_str())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Reopens a resolved action (back to `open`, resolution cleared, nobody on it);
    /// `false` if it is not resolved. Fails with a unique violation when the theme has
    /// another unresolved action.
    pub async fn reopen_action(
        &self,
        action_id: &str,
        by: &str,
        evidence_json: Option<&str>,
        at_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_actions SET status = $5, resolution_json = NULL, \
             acknowledged_by = NULL, acknowledged_at_ms = NULL, assignee = NULL, \
             reopened_count = reopened_count + 1, reopened_by = $2, \
             evidence_json = COALESCE($3, evidence_json), updated_at_ms = $4 \
             WHERE action_id = $1 AND status = $6",
        )
        .bind(action_id)
        .bind(by)
        .bind(evidence_json)
        .bind(at_ms)
        .bind(ActionStatus::Open.as_str())
        .bind(ActionStatus::Resolved.as_str())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a row back as it was, when the event announcing its change could not be
    /// published (the change must not happen silently).
    pub async fn restore_action(&self, a: &ActionRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE trends_actions SET status = $2, evidence_json = $3, resolution_json = $4, \
             resolved_at_ms = $5, acknowledged_by = $6, acknowledged_at_ms = $7, assignee = $8, \
             reopened_count = $9, reopened_by = $10, updated_at_ms = $11, theme = $12 \
             WHERE action_id = $1",
        )
        .bind(&a.action_id)
        .bind(a.status.as_str())
        .bind(&a.evidence_json)
        .bind(a.resolution_json.clone())
        .bind(a.resolved_at_ms)
        .bind(a.acknowledged_by.clone())
        .bind(a.acknowledged_at_ms)
        .bind(a.assignee.clone())
        .bind(a.reopened_count)
        .bind(a.reopened_by.clone())
        .bind(a.updated_at_ms)
        .bind(&a.theme)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

/// The advisory-lock key of a line of the hierarchy (FNV-1a of its root theme's id,
/// with a prefix of its own so no other lock of the database collides by chance).
fn line_lock_key(line: &str) -> i64 {
    let hash = format!("closeloop-trends-line:{line}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::super::testing::store;
    use super::super::{is_unique_violation, LogRow};
    use super::*;

    fn action(id: &str) -> ActionRow {
        ActionRow::raised(id.into(), "delivery_time".into(), 1, "{}".into())
    }

    #[tokio::test]
    async fn a_theme_raises_alone_only_while_its_line_has_no_unresolved_action() {
        let store = store().await;
        let child = action("child");
        assert!(store
            .insert_action_alone(&child, &["delivery"], "delivery")
            .await
            .unwrap());
        let parent = ActionRow::raised("parent".into(), "delivery".into(), 2, "{}".into());
        assert!(
            !store
                .insert_action_alone(&parent, &["delivery_time"], "delivery")
                .await
                .unwrap(),
            "the child's action covers the parent"
        );
        let other = ActionRow::raised("other".into(), "price".into(), 2, "{}".into());
        assert!(
            store
                .insert_action_alone(&other, &["billing"], "price")
                .await
                .unwrap(),
            "another line raises"
        );
        assert!(store.resolve_action("child", "{}", 3).await.unwrap());
        assert!(
            store
                .insert_action_alone(&parent, &["delivery_time"], "delivery")
                .await
                .unwrap(),
            "once the child's action is resolved"
        );
    }

    #[tokio::test]
    async fn a_theme_covered_by_an_action_shares_its_resolution() {
        let store = store().await;
        assert!(store.insert_action(&action("a1")).await.unwrap());
        let lineage = ["delivery", "delivery_time"];
        let owner = store.unresolved_action_of_any(&lineage).await.unwrap();
        assert_eq!(owner.map(|a| a.action_id), Some("a1".to_owned()));
        assert!(store
            .unresolved_action_of_any(&["price"])
            .await
            .unwrap()
            .is_none());
        assert!(store.unresolved_action_of_any(&[]).await.unwrap().is_none());

        store.cover_theme("a1", "delivery", 5).await.unwrap();
        store.cover_theme("a1", "delivery", 6).await.unwrap();
        assert_eq!(store.last_resolution("delivery").await.unwrap(), None);
        // The evidence is written only over what the writer read.
        assert!(!store
            .update_evidence("a1", "{\"stale\":1}", "{\"x\":1}", true, 7)
            .await
            .unwrap());
        assert!(store
            .update_evidence("a1", "{}", "{\"x\":1}", true, 7)
            .await
            .unwrap());
        assert!(store.resolve_action("a1", "{}", 50).await.unwrap());
        assert_eq!(store.last_resolution("delivery").await.unwrap(), Some(50));
        assert_eq!(
            store.last_resolutions().await.unwrap(),
            [
                ("delivery".to_owned(), 50),
                ("delivery_time".to_owned(), 50)
            ]
        );
        assert!(
            store
                .latest_resolved_action("delivery")
                .await
                .unwrap()
                .is_none(),
            "a covered theme reopens nothing of another theme"
        );
    }

    #[tokio::test]
    async fn the_database_allows_one_unresolved_action_per_theme() {
        let store = store().await;
        assert!(store.insert_action(&action("a1")).await.unwrap());
        assert!(
            !store.insert_action(&action("a2")).await.unwrap(),
            "second open action refused"
        );
        assert!(store
            .acknowledge_action("a1", "ops", Some("logistics"), 20)
            .await
            .unwrap());
        assert!(
            !store.insert_action(&action("a2")).await.unwrap(),
            "an acknowledged action is still unresolved"
        );
        assert!(store
            .acknowledge_action("a1", "other", None, 30)
            .await
            .unwrap());
        let acknowledged = store.action("a1").await.unwrap().expect("stored");
        assert_eq!(acknowledged.status, ActionStatus::Acknowledged);
        assert_eq!(
            acknowledged.acknowledged_by.as_deref(),
            Some("ops"),
            "first one kept"
        );
        assert_eq!(acknowledged.assignee.as_deref(), Some("logistics"));

        assert!(store.resolve_action("a1", "{}", 50).await.unwrap());
        assert!(
            !store.resolve_action("a1", "{}", 60).await.unwrap(),
            "already resolved"
        );
        assert!(!store
            .acknowledge_action("a1", "ops", None, 60)
            .await
            .unwrap());
        assert_eq!(
            store
                .latest_resolved_action("delivery_time")
                .await
                .unwrap()
                .map(|a| a.action_id),
            Some("a1".to_owned())
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
        assert_eq!(
            store.open_since().await.unwrap(),
            [("delivery_time".to_owned(), 1)]
        );
        // a1 cannot be reopened while a2 is unresolved.
        let refused = store
            .reopen_action("a1", "ops", None, 70)
            .await
            .expect_err("unique index");
        assert!(is_unique_violation(&refused), "{refused}");
        let open = store
            .actions(&ActionFilter {
                status: Some(StatusFilter::Unresolved),
                theme: Some("delivery_time".into()),
                since_ms: Some(1),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].action_id, "a2");
        let resolved = store
            .actions(&ActionFilter {
                status: Some(StatusFilter::Is(ActionStatus::Resolved)),
                limit: 10,
                ..ActionFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            resolved
                .iter()
                .map(|a| a.action_id.as_str())
                .collect::<Vec<_>>(),
            ["a1"]
        );
        assert!(store.resolve_action("a2", "{}", 80).await.unwrap());
        assert!(store
            .reopen_action("a1", "ops", Some("{\"x\":1}"), 90)
            .await
            .unwrap());
        let reopened = store.action("a1").await.unwrap().expect("stored");
        assert_eq!(reopened.status, ActionStatus::Open);
        assert_eq!(reopened.reopened_count, 1);
        assert_eq!(reopened.resolution_json, None);
        assert_eq!(reopened.assignee, None);
        assert_eq!(reopened.evidence_json, "{\"x\":1}");
        assert_eq!(reopened.resolved_at_ms, Some(50), "the boundary stays");
        let recent = store
            .actions(&ActionFilter {
                since_ms: Some(85),
                limit: 10,
                ..ActionFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(recent.len(), 1, "only a1 changed after 85");

        let raised = LogRow {
            at_ms: 1,
            kind: "raised".into(),
            actor: "trends".into(),
            note: None,
        };
        // The same event twice (a replay): one history entry.
        store.log("e1", "a1", &raised).await.unwrap();
        store.log("e1", "a1", &raised).await.unwrap();
        assert_eq!(store.history("a1").await.unwrap().len(), 1, "logged once");

        // a1 was raised at 1 and reopened at 90: unresolved since its reopening.
        assert_eq!(
            store.open_since().await.unwrap(),
            [("delivery_time".to_owned(), 1)]
        );
        let reopened = LogRow {
            at_ms: 90,
            kind: "reopened".into(),
            actor: "ops".into(),
            note: None,
        };
        store.log("e2", "a1", &reopened).await.unwrap();
        assert_eq!(
            store.open_since().await.unwrap(),
            [("delivery_time".to_owned(), 90)]
        );
    }

    #[tokio::test]
    async fn a_status_no_action_status_reads_is_a_decode_error_naming_it() {
        let store = store().await;
        assert!(store.insert_action(&action("a1")).await.unwrap());
        // Only a hand edit of the table can do this.
        sqlx::query("UPDATE trends_actions SET status = 'on_hold' WHERE action_id = 'a1'")
            .execute(store.database().pool())
            .await
            .unwrap();
        let error = store.action("a1").await.expect_err("unknown status");
        assert!(
            matches!(&error, sqlx::Error::ColumnDecode { index, .. } if index == "status"),
            "{error:?}"
        );
        assert!(error.to_string().contains("on_hold"), "{error}");
    }
}
