//! Every query the trends service runs, in one place. The SQL is the same for SQLite and
//! PostgreSQL (sqlx `Any` driver): `$n` placeholders, TEXT / BIGINT columns only, ids as
//! UUID text, times as Unix milliseconds, flags as 0/1. Sums are cast to BIGINT because
//! PostgreSQL sums BIGINT into NUMERIC, which the `Any` driver cannot decode.

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
    pub nps: Option<i64>,
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

/// Which mentions of a theme an evidence or statistics query covers: given in
/// `[from_ms, to_ms]` and strictly after `after_ms` (the last resolution), counted by
/// the detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span<'a> {
    pub theme: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub after_ms: i64,
}

/// Mentions of one (channel, touchpoint, negative) slice of a span.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceRow {
    pub channel: String,
    pub touchpoint: Option<String>,
    pub negative: bool,
    pub mentions: i64,
    pub distinct_customers: i64,
    pub rating_sum: i64,
    pub rating_count: i64,
    pub nps_sum: i64,
    pub nps_count: i64,
}

/// The counts of one time bucket of a span.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    pub bucket: i64,
    pub mentions: i64,
    pub negative_mentions: i64,
    pub distinct_customers: i64,
}

/// One row of `trends_actions`. Evidence and resolution stay JSON text here; the callers
/// decide what a row that does not parse means for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionRow {
    pub action_id: String,
    pub theme: String,
    pub status: String,
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

/// One entry of an action's history.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub at_ms: i64,
    pub kind: String,
    pub actor: String,
    pub note: Option<String>,
}

const ACTION_COLUMNS: &str = "action_id, theme, status, raised_at_ms, updated_at_ms, \
     evidence_json, resolution_json, resolved_at_ms, announced, acknowledged_by, \
     acknowledged_at_ms, assignee, reopened_count, reopened_by";

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
        acknowledged_by: row.try_get("acknowledged_by")?,
        acknowledged_at_ms: row.try_get("acknowledged_at_ms")?,
        assignee: row.try_get("assignee")?,
        reopened_count: row.try_get("reopened_count")?,
        reopened_by: row.try_get("reopened_by")?,
    })
}

/// Which actions a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Open,
    Acknowledged,
    Resolved,
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

/// Whether `error` is the unique index refusing a second unresolved action of a theme.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
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
             channel, touchpoint, rating, nps, given_at_ms) \
             VALUES ($1, $2, \
                     COALESCE((SELECT customer_id FROM trends_erasures \
                               WHERE customer_id = $11 AND erased_at_ms >= $10), $3), \
                     $4, \
                     CASE WHEN EXISTS (SELECT 1 FROM trends_erasures \
                                       WHERE customer_id = $11 AND erased_at_ms >= $10) \
                          THEN '' ELSE $5 END, \
                     $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
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
        // A mention given before its customer was erased is stored pseudonymised.
        .bind(closeloop_events::erased_customer_id(&m.customer_id))
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Remembers that a customer (by pseudonym) was erased at `erased_at_ms`.
    pub async fn record_erasure(
        &self,
        pseudonym: &str,
        erased_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO trends_erasures (customer_id, erased_at_ms) VALUES ($1, $2) \
             ON CONFLICT (customer_id) DO UPDATE SET erased_at_ms = CASE \
             WHEN excluded.erased_at_ms > trends_erasures.erased_at_ms \
             THEN excluded.erased_at_ms ELSE trends_erasures.erased_at_ms END",
        )
        .bind(pseudonym)
        .bind(erased_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Puts `pseudonym` in place of the customer's id on their mentions and forgets
    /// their words. Returns how many mentions were changed.
    pub async fn pseudonymise_mentions(
        &self,
        customer_id: &str,
        pseudonym: &str,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_mentions SET customer_id = $1, excerpt = '' WHERE customer_id = $2",
        )
        .bind(pseudonym)
        .bind(customer_id)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Actions (any status) whose evidence may quote `customer_id`: a cheap textual
    /// pre-filter; the caller checks each one exactly.
    pub async fn actions_mentioning(
        &self,
        customer_id: &str,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        // The id as it appears inside the JSON (quoted and escaped). LIKE wildcards in it
        // only widen the match, which the exact check afterwards narrows again.
        let quoted = serde_json::to_string(customer_id).unwrap_or_default();
        sqlx::query_as(
            "SELECT action_id, evidence_json FROM trends_actions WHERE evidence_json LIKE $1",
        )
        .bind(format!("%{quoted}%"))
        .fetch_all(self.db.pool())
        .await
    }

    /// Replaces an action's evidence whatever its status (erasure scrubbing quotes).
    pub async fn replace_evidence(
        &self,
        action_id: &str,
        evidence_json: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE trends_actions SET evidence_json = $2 WHERE action_id = $1")
            .bind(action_id)
            .bind(evidence_json)
            .execute(self.db.pool())
            .await?;
        Ok(())
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

    /// The newest negative mentions of a span, newest first.
    pub async fn recent_negative_excerpts(
        &self,
        span: Span<'_>,
        limit: i64,
    ) -> Result<Vec<ExcerptRow>, sqlx::Error> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT feedback_id, customer_id, excerpt, given_at_ms FROM trends_mentions \
             WHERE theme = $1 AND negative = 1 AND counted = 1 AND given_at_ms >= $2 \
             AND given_at_ms <= $3 AND given_at_ms > $4 \
             ORDER BY given_at_ms DESC, feedback_id DESC LIMIT $5",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
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

    /// The span's mentions by channel, touchpoint and sentiment, with rating and NPS sums.
    pub async fn slices(&self, span: Span<'_>) -> Result<Vec<SliceRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT channel, touchpoint, negative, COUNT(*) AS mentions, \
             COUNT(DISTINCT customer_id) AS customers, \
             CAST(COALESCE(SUM(rating), 0) AS BIGINT) AS rating_sum, COUNT(rating) AS rating_count, \
             CAST(COALESCE(SUM(nps), 0) AS BIGINT) AS nps_sum, COUNT(nps) AS nps_count \
             FROM trends_mentions WHERE theme = $1 AND counted = 1 AND given_at_ms >= $2 \
             AND given_at_ms <= $3 AND given_at_ms > $4 \
             GROUP BY channel, touchpoint, negative ORDER BY channel, touchpoint, negative",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SliceRow {
                    channel: row.try_get("channel")?,
                    touchpoint: row.try_get("touchpoint")?,
                    negative: row.try_get::<i64, _>("negative")? != 0,
                    mentions: row.try_get("mentions")?,
                    distinct_customers: row.try_get("customers")?,
                    rating_sum: row.try_get("rating_sum")?,
                    rating_count: row.try_get("rating_count")?,
                    nps_sum: row.try_get("nps_sum")?,
                    nps_count: row.try_get("nps_count")?,
                })
            })
            .collect()
    }

    /// Distinct customers with a negative mention in the span.
    pub async fn distinct_complainers(&self, span: Span<'_>) -> Result<i64, sqlx::Error> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(DISTINCT customer_id) FROM trends_mentions WHERE theme = $1 \
             AND negative = 1 AND counted = 1 AND given_at_ms >= $2 AND given_at_ms <= $3 \
             AND given_at_ms > $4",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
        .fetch_one(self.db.pool())
        .await?;
        Ok(count)
    }

    /// The ids of the span's negative mentions, newest first.
    pub async fn negative_ids(
        &self,
        span: Span<'_>,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT feedback_id FROM trends_mentions WHERE theme = $1 AND negative = 1 \
             AND counted = 1 AND given_at_ms >= $2 AND given_at_ms <= $3 AND given_at_ms > $4 \
             ORDER BY given_at_ms DESC, feedback_id DESC LIMIT $5",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The span's counts per bucket of `bucket_ms` (epoch-aligned), oldest first; buckets
    /// without mentions are absent.
    pub async fn series(
        &self,
        span: Span<'_>,
        bucket_ms: i64,
    ) -> Result<Vec<SeriesRow>, sqlx::Error> {
        // Shifting by a whole number of buckets keeps the division on non-negative
        // numbers, where SQLite and PostgreSQL both truncate the same way.
        let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT (given_at_ms - $5) / $6 AS bucket, COUNT(*), \
             CAST(COALESCE(SUM(negative), 0) AS BIGINT), \
             COUNT(DISTINCT CASE WHEN negative = 1 THEN customer_id END) \
             FROM trends_mentions WHERE theme = $1 AND counted = 1 AND given_at_ms >= $2 \
             AND given_at_ms <= $3 AND given_at_ms > $4 \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
        .bind(span.from_ms.div_euclid(bucket_ms) * bucket_ms)
        .bind(bucket_ms)
        .fetch_all(self.db.pool())
        .await?;
        let origin = span.from_ms.div_euclid(bucket_ms);
        Ok(rows
            .into_iter()
            .map(|(bucket, mentions, negative, distinct)| SeriesRow {
                bucket: origin + bucket,
                mentions,
                negative_mentions: negative,
                distinct_customers: distinct,
            })
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

    /// The theme's open or acknowledged action, if any (at most one: the unique index).
    pub async fn unresolved_action(&self, theme: &str) -> Result<Option<ActionRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {ACTION_COLUMNS} FROM trends_actions WHERE theme = $1 AND status <> 'resolved'"
        );
        let row = sqlx::query(&sql)
            .bind(theme)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(action_from_row).transpose()
    }

    /// The theme's most recently resolved action, the candidate for a reopen.
    pub async fn latest_resolved_action(
        &self,
        theme: &str,
    ) -> Result<Option<ActionRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {ACTION_COLUMNS} FROM trends_actions WHERE theme = $1 AND status = 'resolved' \
             ORDER BY resolved_at_ms DESC, action_id DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(theme)
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
             WHERE l.action_id = a.action_id AND l.kind = 'reopened'), a.raised_at_ms) \
             FROM trends_actions a WHERE a.status <> 'resolved' ORDER BY a.theme",
        )
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
        match filter.status {
            Some(StatusFilter::Open) => clauses.push("status = 'open'".into()),
            Some(StatusFilter::Acknowledged) => clauses.push("status = 'acknowledged'".into()),
            Some(StatusFilter::Resolved) => clauses.push("status = 'resolved'".into()),
            Some(StatusFilter::Unresolved) => clauses.push("status <> 'resolved'".into()),
            None => {}
        }
        let mut parameter = 0;
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

    /// New evidence for an unresolved action (and, with `announced`, the note that its
    /// `raised` event went out). `false` if the action is resolved (by now).
    pub async fn update_evidence(
        &self,
        action_id: &str,
        evidence_json: &str,
        announced: bool,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_actions SET evidence_json = $2, announced = $3, updated_at_ms = $4 \
             WHERE action_id = $1 AND status <> 'resolved'",
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

    /// Marks an unresolved action resolved; `false` if it was resolved already.
    pub async fn resolve_action(
        &self,
        action_id: &str,
        resolution_json: &str,
        resolved_at_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE trends_actions SET status = 'resolved', resolution_json = $2, \
             resolved_at_ms = $3, updated_at_ms = $3 \
             WHERE action_id = $1 AND status <> 'resolved'",
        )
        .bind(action_id)
        .bind(resolution_json)
        .bind(resolved_at_ms)
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
            "UPDATE trends_actions SET status = 'acknowledged', \
             acknowledged_by = COALESCE(acknowledged_by, $2), \
             acknowledged_at_ms = COALESCE(acknowledged_at_ms, $3), \
             assignee = COALESCE($4, assignee), updated_at_ms = $3 \
             WHERE action_id = $1 AND status <> 'resolved'",
        )
        .bind(action_id)
        .bind(by)
        .bind(at_ms)
        .bind(assignee)
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
            "UPDATE trends_actions SET status = 'open', resolution_json = NULL, \
             acknowledged_by = NULL, acknowledged_at_ms = NULL, assignee = NULL, \
             reopened_count = reopened_count + 1, reopened_by = $2, \
             evidence_json = COALESCE($3, evidence_json), updated_at_ms = $4 \
             WHERE action_id = $1 AND status = 'resolved'",
        )
        .bind(action_id)
        .bind(by)
        .bind(evidence_json)
        .bind(at_ms)
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
             reopened_count = $9, reopened_by = $10, updated_at_ms = $11 WHERE action_id = $1",
        )
        .bind(&a.action_id)
        .bind(&a.status)
        .bind(&a.evidence_json)
        .bind(a.resolution_json.clone())
        .bind(a.resolved_at_ms)
        .bind(a.acknowledged_by.clone())
        .bind(a.acknowledged_at_ms)
        .bind(a.assignee.clone())
        .bind(a.reopened_count)
        .bind(a.reopened_by.clone())
        .bind(a.updated_at_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

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
            nps: None,
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
            ..ActionRow::default()
        }
    }

    fn span(from_ms: i64, to_ms: i64, after_ms: i64) -> Span<'static> {
        Span {
            theme: "delivery_time",
            from_ms,
            to_ms,
            after_ms,
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
    async fn evidence_aggregates_by_slice_and_bucket() {
        let store = store().await;
        let minute = 60_000;
        let rows = [
            (
                "f1",
                "a",
                true,
                "review",
                Some("delivery"),
                Some(1),
                None,
                minute,
            ),
            (
                "f2",
                "a",
                true,
                "review",
                Some("delivery"),
                Some(2),
                None,
                2 * minute,
            ),
            ("f3", "b", true, "ticket", None, None, Some(3), 11 * minute),
            (
                "f4",
                "c",
                false,
                "ticket",
                None,
                Some(5),
                Some(9),
                12 * minute,
            ),
            ("f5", "d", true, "ticket", None, None, None, 30 * minute),
        ];
        for (id, customer, negative, channel, touchpoint, rating, nps, at) in rows {
            let row = MentionRow {
                negative,
                channel: channel.into(),
                touchpoint: touchpoint.map(str::to_owned),
                rating,
                nps,
                ..mention(id, customer, at)
            };
            store.insert_mention(&row).await.unwrap();
        }
        // f5 is outside the span.
        let span = span(0, 20 * minute, i64::MIN);
        let slices = store.slices(span).await.unwrap();
        let review = slices
            .iter()
            .find(|s| s.channel == "review")
            .expect("review slice");
        assert_eq!(review.mentions, 2);
        assert_eq!(review.distinct_customers, 1);
        assert_eq!((review.rating_sum, review.rating_count), (3, 2));
        let ticket_negative = slices
            .iter()
            .find(|s| s.channel == "ticket" && s.negative)
            .expect("negative ticket slice");
        assert_eq!((ticket_negative.nps_sum, ticket_negative.nps_count), (3, 1));
        assert_eq!(store.distinct_complainers(span).await.unwrap(), 2);
        assert_eq!(
            store.negative_ids(span, 2).await.unwrap(),
            ["f3", "f2"],
            "newest first, capped"
        );
        let series = store.series(span, 10 * minute).await.unwrap();
        assert_eq!(
            series,
            [
                SeriesRow {
                    bucket: 0,
                    mentions: 2,
                    negative_mentions: 2,
                    distinct_customers: 1
                },
                SeriesRow {
                    bucket: 1,
                    mentions: 2,
                    negative_mentions: 1,
                    distinct_customers: 1
                },
            ]
        );
        // After a resolution at minute 5 only the later mentions count.
        let after = Span {
            after_ms: 5 * minute,
            ..span
        };
        assert_eq!(store.distinct_complainers(after).await.unwrap(), 1);
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
        assert_eq!(acknowledged.status, "acknowledged");
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
        assert!(store.resolve_action("a2", "{}", 80).await.unwrap());
        assert!(store
            .reopen_action("a1", "ops", Some("{\"x\":1}"), 90)
            .await
            .unwrap());
        let reopened = store.action("a1").await.unwrap().expect("stored");
        assert_eq!(reopened.status, "open");
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
}
