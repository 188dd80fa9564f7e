//! An action's history: one entry per published transition, keyed by the event's id.

use closeloop_store::sqlx;

use super::TrendsStore;

/// One entry of an action's history.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub at_ms: i64,
    pub kind: String,
    pub actor: String,
    pub note: Option<String>,
}

impl TrendsStore {
    /// Appends to an action's history; `event_id` (the `actions.v1` event's id) makes a
    /// repeated append a no-op.
    pub async fn log(
        &self,
        event_id: &str,
        action_id: &str,
        entry: &LogRow,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO trends_action_log (event_id, action_id, at_ms, kind, actor, note) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(event_id)
        .bind(action_id)
        .bind(entry.at_ms)
        .bind(&entry.kind)
        .bind(&entry.actor)
        .bind(entry.note.clone())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// An action's history, oldest first.
    pub async fn history(&self, action_id: &str) -> Result<Vec<LogRow>, sqlx::Error> {
        let rows: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT at_ms, kind, actor, note FROM trends_action_log WHERE action_id = $1 \
             ORDER BY at_ms, event_id",
        )
        .bind(action_id)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at_ms, kind, actor, note)| LogRow {
                at_ms,
                kind,
                actor,
                note,
            })
            .collect())
    }
}
