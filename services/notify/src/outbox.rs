//! `notify_deliveries`: the persistent outbox. A message is written here, keyed by
//! (action, customer), before anything is sent; the delivery worker then drives each
//! row from `pending` to `delivered` or `dead`. Because the row exists first and the
//! key is unique, a replayed `actions.v1` record or a crash between "decided" and
//! "sent" can neither lose a message nor create a second one.

use std::collections::HashSet;

use closeloop_store::Database;

use closeloop_store::values;

use crate::frequency::{self, Cap, WhenCapped};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const DEAD: &str = "dead";
/// Will not be sent: the customer was erased while it was pending.
pub const CANCELLED: &str = "cancelled";
/// Waits for its customer's contact period to end (the frequency cap), then goes out
/// alone or combined with the others held for them.
pub const HELD: &str = "held";
/// Folded into another held delivery's combined message (`combined_into`), whose
/// outcome it takes once that one is delivered or dead.
pub const COMBINED: &str = "combined";
/// Every status, in the order the API lists counts.
pub const STATUSES: [&str; 6] = [PENDING, HELD, COMBINED, DELIVERED, DEAD, CANCELLED];

/// A delivery to be written.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub action_id: String,
    pub customer_id: String,
    pub source: String,
    pub channel: &'static str,
    pub language: String,
    /// The rendered webhook body, without `sent_at` (added per attempt).
    pub payload: String,
    pub created_at_ms: i64,
    /// Event time of the feedback the delivery answers.
    pub said_at_ms: i64,
}

/// A customer who is owed a message but will not get one, and why.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Skip {
    pub skip_id: String,
    pub action_id: String,
    pub customer_id: String,
    pub reason: String,
    pub created_at_ms: i64,
    /// The source of the mention that made them owed a message (what a scoped erasure
    /// matches); `None` for skips stored before skips recorded it.
    pub source: Option<String>,
}

/// What [`enqueue`] wrote.
#[derive(Debug, Default)]
pub struct Enqueued {
    /// New deliveries due now.
    pub queued: u64,
    /// New deliveries held by the frequency cap until their customer's period ends.
    pub held: u64,
    /// The skips that were new (those skipped by the frequency cap among them).
    pub new_skips: Vec<Skip>,
}

/// Writes the deliveries and skips of one action in one transaction, many rows per
/// statement. A delivery or skip that already exists for its (action, customer) is left
/// untouched, and so is a delivery for a customer already skipped for the action (or
/// unsubscribed) and a skip for one already owed a delivery: a replay adds nothing.
///
/// With a frequency `cap`, each new delivery takes its customer's contact period (see
/// [`crate::frequency`]); where another message holds it, the delivery is held until
/// the period ends, or skipped, as the cap says.
pub async fn enqueue(
    db: &Database,
    deliveries: &[NewDelivery],
    skips: &[Skip],
    cap: Option<&Cap>,
) -> Result<Enqueued, sqlx::Error> {
    if deliveries.is_empty() && skips.is_empty() {
        return Ok(Enqueued::default());
    }
    let mut tx = db.pool().begin().await?;
    // attempts, next_attempt_at_ms and status are bound per row too, so every row is one
    // plain tuple of placeholders. The guards are part of the insert, so the transaction
    // starts with a write (see projection::insert).
    const DELIVERY_COLUMNS: usize = 12;
    let mut new_deliveries: Vec<frequency::NewRow> = Vec::new();
    for chunk in deliveries.chunks(values::rows_per_statement(db.backend(), DELIVERY_COLUMNS)) {
        let sql = format!(
            "INSERT INTO notify_deliveries (delivery_id, action_id, customer_id, source, \
             channel, language, payload, status, attempts, next_attempt_at_ms, created_at_ms, \
             said_at_ms) \
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, \
             v.column7, v.column8, v.column9, v.column10, v.column11, v.column12 \
             FROM (VALUES {}) AS v \
             WHERE NOT EXISTS (SELECT 1 FROM notify_skips s \
                               WHERE s.action_id = v.column2 AND s.customer_id = v.column3) \
               AND NOT EXISTS (SELECT 1 FROM notify_preferences p \
                               WHERE p.customer_id = v.column3 AND p.unsubscribed = 1) \
             ON CONFLICT DO NOTHING RETURNING delivery_id, customer_id, created_at_ms",
            values::placeholders(db.backend(), chunk.len(), DELIVERY_COLUMNS)
        );
        let mut query = sqlx::query_as::<_, frequency::NewRow>(&sql);
        for delivery in chunk {
            query = query
                .bind(&delivery.delivery_id)
                .bind(&delivery.action_id)
                .bind(&delivery.customer_id)
                .bind(&delivery.source)
                .bind(delivery.channel)
                .bind(&delivery.language)
                .bind(&delivery.payload)
                .bind(PENDING)
                .bind(0_i64)
                // Due at once.
                .bind(delivery.created_at_ms)
                .bind(delivery.created_at_ms)
                .bind(delivery.said_at_ms);
        }
        new_deliveries.extend(query.fetch_all(&mut *tx).await?);
    }
    let mut skips = skips.to_vec();
    let mut enqueued = Enqueued::default();
    let capped = match cap {
        Some(cap) => frequency::open_periods(&mut tx, db.backend(), cap, &new_deliveries).await?,
        None => Vec::new(),
    };
    if let Some(cap) = cap.filter(|_| !capped.is_empty()) {
        let ids: Vec<&str> = capped.iter().map(|(id, _, _)| id.as_str()).collect();
        match cap.when_capped {
            WhenCapped::Hold => {
                frequency::hold(&mut tx, db.backend(), cap, &ids).await?;
                enqueued.held = ids.len() as u64;
            }
            WhenCapped::Skip => {
                delete(&mut tx, db.backend(), &ids).await?;
                let by_id: std::collections::HashMap<&str, &NewDelivery> = deliveries
                    .iter()
                    .map(|d| (d.delivery_id.as_str(), d))
                    .collect();
                for id in &ids {
                    if let Some(delivery) = by_id.get(id) {
                        skips.push(Skip {
                            skip_id: uuid::Uuid::now_v7().to_string(),
                            action_id: delivery.action_id.clone(),
                            customer_id: delivery.customer_id.clone(),
                            reason: frequency::FREQUENCY_CAP.to_owned(),
                            created_at_ms: delivery.created_at_ms,
                            source: Some(delivery.source.clone()),
                        });
                    }
                }
            }
        }
    }
    enqueued.queued = (new_deliveries.len() - capped.len()) as u64;
    // RETURNING names the skips that were new (a conflicting row returns nothing), which
    // is what is counted and published.
    const SKIP_COLUMNS: usize = 6;
    let mut new_ids = HashSet::new();
    for chunk in skips.chunks(values::rows_per_statement(db.backend(), SKIP_COLUMNS)) {
        let sql = format!(
            "INSERT INTO notify_skips (skip_id, action_id, customer_id, reason, created_at_ms, \
             source) \
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6 \
             FROM (VALUES {}) AS v \
             WHERE NOT EXISTS (SELECT 1 FROM notify_deliveries d \
                               WHERE d.action_id = v.column2 AND d.customer_id = v.column3) \
             ON CONFLICT DO NOTHING RETURNING skip_id",
            values::placeholders(db.backend(), chunk.len(), SKIP_COLUMNS)
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for skip in chunk {
            query = query
                .bind(&skip.skip_id)
                .bind(&skip.action_id)
                .bind(&skip.customer_id)
                .bind(&skip.reason)
                .bind(skip.created_at_ms)
                .bind(skip.source.clone());
        }
        new_ids.extend(query.fetch_all(&mut *tx).await?);
    }
    tx.commit().await?;
    enqueued.new_skips = skips
        .into_iter()
        .filter(|skip| new_ids.contains(&skip.skip_id))
        .collect();
    Ok(enqueued)
}

/// Deletes deliveries by id (ones just written, which the frequency cap skipped).
async fn delete(
    conn: &mut sqlx::AnyConnection,
    backend: closeloop_store::Backend,
    ids: &[&str],
) -> Result<(), sqlx::Error> {
    execute_for_ids(conn, backend, &[], ids, |list| {
        format!("DELETE FROM notify_deliveries WHERE delivery_id IN ({list})")
    })
    .await
}

/// Runs the statement `sql` makes of an `IN (…)` list for every chunk of `ids`, the
/// `leading` parameters bound first (`$1…`) and the chunk's ids after them.
pub(crate) async fn execute_for_ids(
    conn: &mut sqlx::AnyConnection,
    backend: closeloop_store::Backend,
    leading: &[&str],
    ids: &[&str],
    sql: impl Fn(&str) -> String,
) -> Result<(), sqlx::Error> {
    let per_statement = values::rows_per_statement(backend, 1).saturating_sub(leading.len());
    for chunk in ids.chunks(per_statement.max(1)) {
        let sql = sql(&values::list(chunk.len(), leading.len() + 1));
        let mut query = sqlx::query(&sql);
        for value in leading.iter().chain(chunk) {
            query = query.bind(*value);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A pending delivery whose time has come.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub delivery_id: String,
    pub action_id: String,
    pub customer_id: String,
    pub source: String,
    pub channel: String,
    pub language: String,
    pub payload: Option<String>,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub created_at_ms: i64,
    pub said_at_ms: Option<i64>,
}

/// Up to `limit` pending deliveries due at `now_ms`, oldest due first.
pub async fn due(db: &Database, now_ms: i64, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, action_id, customer_id, source, channel, language, payload, \
         attempts, next_attempt_at_ms, created_at_ms, said_at_ms FROM notify_deliveries \
         WHERE status = $1 AND next_attempt_at_ms <= $2 \
           AND NOT EXISTS (SELECT 1 FROM notify_preferences p \
                           WHERE p.customer_id = notify_deliveries.customer_id \
                             AND p.unsubscribed = 1) \
         ORDER BY next_attempt_at_ms, delivery_id LIMIT $3",
    )
    .bind(PENDING)
    .bind(now_ms)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Takes a lease on a due delivery by moving its next attempt to `lease_until_ms`,
/// only if nobody else did since it was read. (The same move, to the time a rate limit
/// allows, postpones a delivery without counting an attempt.) Two notify instances sharing the outbox
/// therefore never send the same row at once, and if this process dies mid-send the
/// row simply becomes due again when the lease runs out (at-least-once; the stable
/// `webhook-id` lets the receiver drop the duplicate).
pub async fn claim(db: &Database, due: &Due, lease_until_ms: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE notify_deliveries SET next_attempt_at_ms = $1 \
         WHERE delivery_id = $2 AND status = $3 AND next_attempt_at_ms = $4",
    )
    .bind(lease_until_ms)
    .bind(&due.delivery_id)
    .bind(PENDING)
    .bind(due.next_attempt_at_ms)
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The result of one attempt, as it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Delivered { at_ms: i64 },
    Retry { next_attempt_at_ms: i64 },
    Dead,
}

/// Records an attempt's outcome. Only a row that is still pending is changed, so an
/// erasure that landed while the request was in flight is not undone.
pub async fn record_attempt(
    db: &Database,
    delivery_id: &str,
    attempts: i64,
    outcome: &Recorded,
    error: Option<&str>,
    status_code: Option<u16>,
) -> Result<bool, sqlx::Error> {
    let (status, next_attempt_at_ms, delivered_at_ms) = match outcome {
        Recorded::Delivered { at_ms } => (DELIVERED, *at_ms, Some(*at_ms)),
        Recorded::Retry { next_attempt_at_ms } => (PENDING, *next_attempt_at_ms, None),
        Recorded::Dead => (DEAD, 0, None),
    };
    // An ops alert quotes customers without naming them, so no erasure could find it:
    // once it is delivered or dead, its payload goes.
    let result = sqlx::query(
        "UPDATE notify_deliveries SET status = $1, attempts = $2, next_attempt_at_ms = $3, \
         last_error = $4, last_status_code = $5, delivered_at_ms = $6, \
         payload = CASE WHEN $1 <> $8 AND channel LIKE 'ops%' THEN NULL ELSE payload END \
         WHERE delivery_id = $7 AND status = $8",
    )
    .bind(status)
    .bind(attempts)
    .bind(next_attempt_at_ms)
    .bind(error.map(str::to_owned))
    .bind(status_code.map(i64::from))
    .bind(delivered_at_ms)
    .bind(delivery_id)
    .bind(PENDING)
    .execute(db.pool())
    .await?;
    let recorded = result.rows_affected() == 1;
    if recorded && !matches!(outcome, Recorded::Retry { .. }) {
        // What was folded into this message shares its fate.
        sqlx::query(
            "UPDATE notify_deliveries SET status = $1, delivered_at_ms = $2, attempts = $3 \
             WHERE combined_into = $4 AND status = $5",
        )
        .bind(status)
        .bind(delivered_at_ms)
        .bind(attempts)
        .bind(delivery_id)
        .bind(COMBINED)
        .execute(db.pool())
        .await?;
    }
    Ok(recorded)
}

/// A delivery stopped by an erasure.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Cancelled {
    pub delivery_id: String,
    pub action_id: String,
    pub channel: String,
    pub language: String,
    pub attempts: i64,
}

/// Cancels what the customer in `scope` (a source, or every source for `None`) is
/// still waiting for: pending, held and combined deliveries, with `reason` as their
/// last error. Part of the caller's transaction; returns the cancelled deliveries.
pub async fn cancel_waiting(
    conn: &mut sqlx::AnyConnection,
    customer_id: &str,
    scope: Option<&str>,
    reason: &str,
) -> Result<Vec<Cancelled>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE notify_deliveries SET status = $1, last_error = $2 \
         WHERE customer_id = $3 AND status IN ($4, $5, $6) AND ($7 = '*' OR source = $7) \
         RETURNING delivery_id, action_id, channel, language, attempts",
    )
    .bind(CANCELLED)
    .bind(reason)
    .bind(customer_id)
    .bind(PENDING)
    .bind(HELD)
    .bind(COMBINED)
    .bind(scope.unwrap_or(closeloop_events::ALL_SOURCES))
    .fetch_all(&mut *conn)
    .await
}

/// Erasure: deliveries the customer in `scope` (a source, or `*` for every source) is
/// waiting for are cancelled and every stored payload of theirs (it quotes their words
/// and holds their contact route) is cleared. The rows themselves stay, under the
/// customer's `pseudonym` instead of their id (here and in the skips; skips stored
/// before skips recorded their source are in every scope), so the audit trail and the
/// (action, customer) idempotency survive without naming the customer. Their
/// preferences and contact period go too. Returns the cancelled deliveries.
pub async fn erase(
    db: &Database,
    pseudonym: &str,
    customer_id: &str,
    scope: &str,
) -> Result<Vec<Cancelled>, sqlx::Error> {
    // Write-only transaction (UPDATE … RETURNING, no SELECT first): see projection::record.
    let mut tx = db.pool().begin().await?;
    let only_source = (scope != closeloop_events::ALL_SOURCES).then_some(scope);
    let cancelled = cancel_waiting(&mut tx, customer_id, only_source, "erased").await?;
    sqlx::query(
        "UPDATE notify_deliveries SET payload = NULL, customer_id = $1 \
         WHERE customer_id = $2 AND ($3 = '*' OR source = $3)",
    )
    .bind(pseudonym)
    .bind(customer_id)
    .bind(scope)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE notify_skips SET customer_id = $1 \
         WHERE customer_id = $2 AND ($3 = '*' OR source = $3 OR source IS NULL)",
    )
    .bind(pseudonym)
    .bind(customer_id)
    .bind(scope)
    .execute(&mut *tx)
    .await?;
    crate::preferences::erase(&mut tx, customer_id, scope).await?;
    tx.commit().await?;
    Ok(cancelled)
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub delivery_id: String,
    pub action_id: String,
    pub customer_id: String,
    pub channel: String,
    pub language: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub last_status_code: Option<i64>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    pub combined_into: Option<String>,
}

/// Every customer delivery of an action, in creation order (ops alerts, the `ops_*`
/// channels, have their own ledger and are not the customers' business).
pub async fn for_action(db: &Database, action_id: &str) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, action_id, customer_id, channel, language, status, attempts, \
         last_error, last_status_code, created_at_ms, delivered_at_ms, combined_into \
         FROM notify_deliveries WHERE action_id = $1 AND channel NOT LIKE 'ops%' \
         ORDER BY created_at_ms, delivery_id",
    )
    .bind(action_id)
    .fetch_all(db.pool())
    .await
}

/// Customer deliveries of every action in `status`, most recent first, at most `limit`.
pub async fn with_status(
    db: &Database,
    status: &str,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, action_id, customer_id, channel, language, status, attempts, \
         last_error, last_status_code, created_at_ms, delivered_at_ms, combined_into \
         FROM notify_deliveries WHERE status = $1 AND channel NOT LIKE 'ops%' \
         ORDER BY created_at_ms DESC, delivery_id DESC LIMIT $2",
    )
    .bind(status)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Every skip of an action, in creation order.
pub async fn skips_for_action(db: &Database, action_id: &str) -> Result<Vec<Skip>, sqlx::Error> {
    sqlx::query_as(
        "SELECT skip_id, action_id, customer_id, reason, created_at_ms, source FROM notify_skips \
         WHERE action_id = $1 ORDER BY created_at_ms, customer_id",
    )
    .bind(action_id)
    .fetch_all(db.pool())
    .await
}

/// The customer's deliveries held by the frequency cap, oldest first.
pub async fn held_for_customer(
    db: &Database,
    customer_id: &str,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, action_id, customer_id, channel, language, status, attempts, \
         last_error, last_status_code, created_at_ms, delivered_at_ms, combined_into \
         FROM notify_deliveries WHERE customer_id = $1 AND status = $2 \
         ORDER BY created_at_ms, delivery_id",
    )
    .bind(customer_id)
    .bind(HELD)
    .fetch_all(db.pool())
    .await
}

/// How many deliveries are in each status, over all actions (for the outbox gauge).
pub async fn status_counts(db: &Database) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, COUNT(*) FROM notify_deliveries GROUP BY status")
        .fetch_all(db.pool())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enqueues without a frequency cap: what was queued and which skips were new.
    async fn plain(
        db: &Database,
        deliveries: &[NewDelivery],
        skips: &[Skip],
    ) -> Result<(u64, Vec<Skip>), sqlx::Error> {
        let enqueued = enqueue(db, deliveries, skips, None).await?;
        Ok((enqueued.queued, enqueued.new_skips))
    }

    async fn database() -> Database {
        let db = Database::connect(&closeloop_store::testing::sqlite_config())
            .await
            .expect("sqlite");
        db.migrate(sqlx::migrate!("./migrations"))
            .await
            .expect("migrations");
        db
    }

    fn delivery(action: &str, customer: &str) -> NewDelivery {
        NewDelivery {
            delivery_id: uuid::Uuid::now_v7().to_string(),
            action_id: action.into(),
            customer_id: customer.into(),
            source: "shopdesk".into(),
            channel: "webhook",
            language: "en".into(),
            payload: "{}".into(),
            created_at_ms: 1,
            said_at_ms: 0,
        }
    }

    fn skip(action: &str, customer: &str) -> Skip {
        Skip {
            skip_id: uuid::Uuid::now_v7().to_string(),
            action_id: action.into(),
            customer_id: customer.into(),
            reason: "no_consent".into(),
            created_at_ms: 1,
            source: Some("shopdesk".into()),
        }
    }

    #[tokio::test]
    async fn one_delivery_and_one_skip_per_action_and_customer() {
        let db = database().await;
        let (new, skips) = plain(&db, &[delivery("a1", "c1")], &[skip("a1", "c2")])
            .await
            .unwrap();
        assert_eq!((new, skips.len()), (1, 1));
        // A replay decides afresh (new ids) but the keys already exist: nothing new.
        let (new, skips) = plain(&db, &[delivery("a1", "c1")], &[skip("a1", "c2")])
            .await
            .unwrap();
        assert_eq!((new, skips.len()), (0, 0));
        assert_eq!(for_action(&db, "a1").await.unwrap().len(), 1);
        assert_eq!(skips_for_action(&db, "a1").await.unwrap().len(), 1);
        let (new, _) = plain(&db, &[delivery("a2", "c1")], &[]).await.unwrap();
        assert_eq!(new, 1, "another action is another message");
    }

    #[tokio::test]
    async fn many_rows_are_enqueued_at_once_and_a_replay_adds_none() {
        let mut configs = vec![closeloop_store::testing::sqlite_config()];
        configs.extend(closeloop_store::testing::postgres_config(
            "many_rows_are_enqueued_at_once_and_a_replay_adds_none",
        ));
        for config in configs {
            let db = Database::connect(&config).await.expect("database");
            db.migrate(sqlx::migrate!("./migrations"))
                .await
                .expect("migrations");
            // More rows than one statement takes, for both tables.
            let customers = values::rows_per_statement(db.backend(), 6) + 3;
            let deliveries: Vec<NewDelivery> = (0..customers)
                .map(|i| delivery("a1", &format!("d{i}")))
                .collect();
            let skips: Vec<Skip> = (0..customers)
                .map(|i| skip("a1", &format!("s{i}")))
                .collect();
            let (new, new_skips) = plain(&db, &deliveries, &skips).await.unwrap();
            assert_eq!((new, new_skips.len()), (customers as u64, customers));
            assert_eq!(for_action(&db, "a1").await.unwrap().len(), customers);
            let due_now = due(&db, 1, i64::MAX).await.unwrap();
            assert_eq!(
                due_now.len(),
                customers,
                "every new delivery is due at once"
            );
            assert!(due_now
                .iter()
                .all(|d| d.attempts == 0 && d.said_at_ms == Some(0)));

            // A replay decided afresh (new ids), plus one customer new to the action:
            // only that one is written, and only its skip is reported as new.
            let mut replay: Vec<Skip> = (0..customers)
                .map(|i| skip("a1", &format!("s{i}")))
                .collect();
            replay.insert(7, skip("a1", "late"));
            let again: Vec<NewDelivery> = (0..customers)
                .map(|i| delivery("a1", &format!("d{i}")))
                .collect();
            let (new, new_skips) = plain(&db, &again, &replay).await.unwrap();
            assert_eq!(new, 0);
            assert_eq!(new_skips, vec![replay[7].clone()]);
            assert_eq!(
                skips_for_action(&db, "a1").await.unwrap().len(),
                customers + 1
            );
        }
    }

    #[tokio::test]
    async fn erasure_cancels_pending_and_clears_payloads() {
        let db = database().await;
        let pending = delivery("a1", "c1");
        let done = delivery("a2", "c1");
        plain(&db, &[pending.clone(), done.clone()], &[])
            .await
            .unwrap();
        let recorded = record_attempt(
            &db,
            &done.delivery_id,
            1,
            &Recorded::Delivered { at_ms: 5 },
            None,
            Some(200),
        )
        .await
        .unwrap();
        assert!(recorded);
        let cancelled = erase(&db, "erased:c1", "c1", "*").await.unwrap();
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].delivery_id, pending.delivery_id);
        let payloads: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT status, payload FROM notify_deliveries ORDER BY action_id")
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert_eq!(
            payloads,
            vec![(CANCELLED.to_owned(), None), (DELIVERED.to_owned(), None)]
        );
        let customers: Vec<String> =
            sqlx::query_scalar("SELECT customer_id FROM notify_deliveries")
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert_eq!(
            customers,
            vec!["erased:c1".to_owned(); 2],
            "the rows stay under the pseudonym"
        );
        // An attempt that was in flight during the erasure does not revive the row.
        let late = record_attempt(
            &db,
            &pending.delivery_id,
            1,
            &Recorded::Delivered { at_ms: 6 },
            None,
            Some(200),
        )
        .await
        .unwrap();
        assert!(!late);
        assert!(due(&db, i64::MAX, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_scoped_erasure_leaves_other_sources_alone() {
        let db = database().await;
        let shopdesk = delivery("a1", "c1");
        let surveyhub = NewDelivery {
            source: "surveyhub".into(),
            ..delivery("a2", "c1")
        };
        let skip_surveyhub = Skip {
            source: Some("surveyhub".into()),
            ..skip("a3", "c1")
        };
        let skip_shopdesk = skip("a4", "c1");
        let legacy = Skip {
            source: None,
            ..skip("a5", "c1")
        };
        plain(
            &db,
            &[shopdesk.clone(), surveyhub.clone()],
            &[skip_surveyhub, skip_shopdesk, legacy],
        )
        .await
        .unwrap();
        let cancelled = erase(&db, "erased:c1", "c1", "surveyhub").await.unwrap();
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].delivery_id, surveyhub.delivery_id);
        let deliveries: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT action_id, customer_id, payload FROM notify_deliveries ORDER BY action_id",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(
            deliveries,
            vec![
                ("a1".into(), "c1".into(), Some("{}".into())),
                ("a2".into(), "erased:c1".into(), None),
            ]
        );
        let skips: Vec<(String, String)> =
            sqlx::query_as("SELECT action_id, customer_id FROM notify_skips ORDER BY action_id")
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert_eq!(
            skips,
            vec![
                ("a3".into(), "erased:c1".into()),
                ("a4".into(), "c1".into()),
                ("a5".into(), "erased:c1".into()),
            ],
            "a skip of unknown source is erased by any source"
        );
    }
}
