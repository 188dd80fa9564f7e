//! The measured effect of resolved actions: which ones still need measuring, the counts
//! of the windows around a resolution, and the stored verdicts.

use closeloop_events::ActionStatus;
use closeloop_store::sqlx;

use super::TrendsStore;

/// A theme's counted mentions in one window of event time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowRow {
    pub mentions: i64,
    pub negative_mentions: i64,
    pub distinct_customers: i64,
}

/// The stored effect of an action's resolution at `resolved_at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectRow {
    pub action_id: String,
    pub resolved_at_ms: i64,
    pub verdict: String,
    pub is_final: bool,
    pub effect_json: String,
    pub announced: bool,
}

/// A resolved action whose effect is not final or not announced yet.
#[derive(Debug, Clone, PartialEq)]
pub struct DueRow {
    pub action_id: String,
    pub theme: String,
    pub resolved_at_ms: i64,
}

impl TrendsStore {
    /// The event-time clock: the newest event time of any counted mention (all themes,
    /// so a theme that went quiet after its fix still sees its window pass).
    pub async fn event_clock(&self) -> Result<Option<i64>, sqlx::Error> {
        let (newest,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(given_at_ms) FROM trends_mentions WHERE counted = 1")
                .fetch_one(self.db.pool())
                .await?;
        Ok(newest)
    }

    /// Resolved actions without a final, announced effect of their latest resolution.
    pub async fn effects_due(&self) -> Result<Vec<DueRow>, sqlx::Error> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT a.action_id, a.theme, a.resolved_at_ms FROM trends_actions a \
             LEFT JOIN trends_effects e ON e.action_id = a.action_id \
             AND e.resolved_at_ms = a.resolved_at_ms \
             WHERE a.status = $1 AND a.resolved_at_ms IS NOT NULL \
             AND (e.action_id IS NULL OR e.final = 0 OR e.announced = 0) \
             ORDER BY a.resolved_at_ms, a.action_id",
        )
        .bind(ActionStatus::Resolved.as_str())
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(action_id, theme, resolved_at_ms)| DueRow {
                action_id,
                theme,
                resolved_at_ms,
            })
            .collect())
    }

    /// `theme`'s counted mentions given in `[from_ms, to_ms)`.
    pub async fn window_counts(
        &self,
        theme: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<WindowRow, sqlx::Error> {
        let (mentions, negative_mentions, distinct_customers): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(negative), 0) AS BIGINT), \
             COUNT(DISTINCT CASE WHEN negative = 1 THEN customer_id END) \
             FROM trends_mentions WHERE theme = $1 AND counted = 1 \
             AND given_at_ms >= $2 AND given_at_ms < $3",
        )
        .bind(theme)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(self.db.pool())
        .await?;
        Ok(WindowRow {
            mentions,
            negative_mentions,
            distinct_customers,
        })
    }

    /// `theme`'s counted mentions in `[from_ms, to_ms)` per bucket of `bucket_ms` counted
    /// from `from_ms` (not from the epoch: the buckets line up with the resolution), as
    /// (bucket index, mentions, negative mentions, distinct complaining customers),
    /// oldest first; buckets without mentions are absent.
    pub async fn window_series(
        &self,
        theme: &str,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, WindowRow)>, sqlx::Error> {
        let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT (given_at_ms - $2) / $4 AS bucket, COUNT(*), \
             CAST(COALESCE(SUM(negative), 0) AS BIGINT), \
             COUNT(DISTINCT CASE WHEN negative = 1 THEN customer_id END) \
             FROM trends_mentions WHERE theme = $1 AND counted = 1 \
             AND given_at_ms >= $2 AND given_at_ms < $3 GROUP BY 1 ORDER BY 1",
        )
        .bind(theme)
        .bind(from_ms)
        .bind(to_ms)
        .bind(bucket_ms.max(1))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(bucket, mentions, negative_mentions, distinct_customers)| {
                    (
                        bucket,
                        WindowRow {
                            mentions,
                            negative_mentions,
                            distinct_customers,
                        },
                    )
                },
            )
            .collect())
    }

    /// The stored effect of `action_id`'s resolution at `resolved_at_ms`, if measured.
    pub async fn effect(
        &self,
        action_id: &str,
        resolved_at_ms: i64,
    ) -> Result<Option<EffectRow>, sqlx::Error> {
        let row: Option<(String, i64, String, i64, String, i64)> = sqlx::query_as(
            "SELECT action_id, resolved_at_ms, verdict, final, effect_json, announced \
             FROM trends_effects WHERE action_id = $1 AND resolved_at_ms = $2",
        )
        .bind(action_id)
        .bind(resolved_at_ms)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(
            |(action_id, resolved_at_ms, verdict, is_final, effect_json, announced)| EffectRow {
                action_id,
                resolved_at_ms,
                verdict,
                is_final: is_final != 0,
                effect_json,
                announced: announced != 0,
            },
        ))
    }

    /// Stores a measurement, replacing one of an earlier resolution; a final one of the
    /// same resolution is kept (and its `announced` flag with it), so a verdict never
    /// changes once final. `false` when nothing was written.
    pub async fn store_effect(&self, row: &EffectRow) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO trends_effects (action_id, resolved_at_ms, verdict, final, effect_json, announced) \
             VALUES ($1, $2, $3, $4, $5, 0) \
             ON CONFLICT (action_id) DO UPDATE SET resolved_at_ms = excluded.resolved_at_ms, \
             verdict = excluded.verdict, final = excluded.final, \
             effect_json = excluded.effect_json, announced = 0, claimed_until_ms = NULL \
             WHERE trends_effects.resolved_at_ms <> excluded.resolved_at_ms \
             OR trends_effects.final = 0",
        )
        .bind(&row.action_id)
        .bind(row.resolved_at_ms)
        .bind(&row.verdict)
        .bind(i64::from(row.is_final))
        .bind(&row.effect_json)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes the right to publish the final effect of `action_id`'s resolution until
    /// `until_ms`; `false` when it is announced already or another instance holds an
    /// unexpired claim (as of `now_ms`).
    pub async fn claim_effect(
        &self,
        action_id: &str,
        resolved_at_ms: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_effects SET claimed_until_ms = $4 \
             WHERE action_id = $1 AND resolved_at_ms = $2 AND final = 1 AND announced = 0 \
             AND (claimed_until_ms IS NULL OR claimed_until_ms < $3)",
        )
        .bind(action_id)
        .bind(resolved_at_ms)
        .bind(now_ms)
        .bind(until_ms)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a claim up (the event was not acknowledged): the next round may try again.
    pub async fn release_effect(
        &self,
        action_id: &str,
        resolved_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE trends_effects SET claimed_until_ms = NULL \
             WHERE action_id = $1 AND resolved_at_ms = $2",
        )
        .bind(action_id)
        .bind(resolved_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The final effect's event was acknowledged: never publish it again.
    pub async fn mark_effect_announced(
        &self,
        action_id: &str,
        resolved_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE trends_effects SET announced = 1 \
             WHERE action_id = $1 AND resolved_at_ms = $2 AND final = 1",
        )
        .bind(action_id)
        .bind(resolved_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{mention, store};
    use super::*;

    #[tokio::test]
    async fn windows_count_their_half_open_span_and_a_final_effect_stays() {
        let store = store().await;
        let hour = 3_600_000;
        let mut quiet = mention("f3", "b", 2 * hour);
        quiet.negative = false;
        for row in [
            mention("f1", "a", 0),
            mention("f2", "a", hour - 1),
            quiet,
            mention("f4", "c", 2 * hour),
        ] {
            store.insert_mention(&row).await.unwrap();
        }
        let before = store.window_counts("delivery_time", 0, hour).await.unwrap();
        assert_eq!(
            before,
            WindowRow {
                mentions: 2,
                negative_mentions: 2,
                distinct_customers: 1
            }
        );
        let after = store
            .window_counts("delivery_time", hour, 3 * hour)
            .await
            .unwrap();
        assert_eq!((after.mentions, after.negative_mentions), (2, 1));
        let series = store
            .window_series("delivery_time", -hour, 3 * hour, hour)
            .await
            .unwrap();
        let buckets: Vec<i64> = series.iter().map(|(bucket, _)| *bucket).collect();
        assert_eq!(buckets, [1, 3]);
        assert_eq!(store.event_clock().await.unwrap(), Some(2 * hour));

        let mut row = EffectRow {
            action_id: "a1".into(),
            resolved_at_ms: hour,
            verdict: "too_early".into(),
            is_final: false,
            effect_json: "{}".into(),
            announced: false,
        };
        assert!(store.store_effect(&row).await.unwrap());
        row.verdict = "improved".into();
        row.is_final = true;
        assert!(store.store_effect(&row).await.unwrap(), "too early → final");
        assert!(store.claim_effect("a1", hour, 10, 20).await.unwrap());
        assert!(
            !store.claim_effect("a1", hour, 15, 25).await.unwrap(),
            "claimed"
        );
        store.release_effect("a1", hour).await.unwrap();
        assert!(
            store.claim_effect("a1", hour, 15, 25).await.unwrap(),
            "released"
        );
        assert!(
            store.claim_effect("a1", hour, 30, 40).await.unwrap(),
            "expired"
        );
        store.mark_effect_announced("a1", hour).await.unwrap();
        assert!(
            !store.claim_effect("a1", hour, 50, 60).await.unwrap(),
            "announced"
        );
        row.verdict = "worse".into();
        assert!(!store.store_effect(&row).await.unwrap(), "final stays");
        let stored = store.effect("a1", hour).await.unwrap().unwrap();
        assert_eq!(
            (stored.verdict.as_str(), stored.announced),
            ("improved", true)
        );
        assert_eq!(store.effect("a1", 2 * hour).await.unwrap(), None);
        row.resolved_at_ms = 5 * hour;
        assert!(store.store_effect(&row).await.unwrap(), "a new resolution");
        let stored = store.effect("a1", 5 * hour).await.unwrap().unwrap();
        assert!(!stored.announced);
    }
}
