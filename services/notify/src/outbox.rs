//! `notify_deliveries`: the persistent outbox. A message is written here, keyed by
//! (action, customer), before anything is sent; the delivery worker then drives each
//! row from `pending` to `delivered` or `dead`. Because the row exists first and the
//! key is unique, a replayed `actions.v1` record or a crash between "decided" and
//! "sent" can neither lose a message nor create a second one.

use closeloop_store::Database;

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const DEAD: &str = "dead";

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
}

/// Writes the deliveries in one transaction; returns how many were new (a delivery
/// that already exists for its (action, customer) is left untouched).
pub async fn enqueue(db: &Database, deliveries: &[NewDelivery]) -> Result<u64, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let mut inserted = 0;
    for delivery in deliveries {
        let result = sqlx::query(
            "INSERT INTO notify_deliveries (delivery_id, action_id, customer_id, source, channel, \
             language, payload, status, attempts, next_attempt_at_ms, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&delivery.delivery_id)
        .bind(&delivery.action_id)
        .bind(&delivery.customer_id)
        .bind(&delivery.source)
        .bind(delivery.channel)
        .bind(&delivery.language)
        .bind(&delivery.payload)
        .bind(PENDING)
        .bind(delivery.created_at_ms)
        .execute(&mut *tx)
        .await?;
        inserted += result.rows_affected();
    }
    tx.commit().await?;
    Ok(inserted)
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
}

/// Up to `limit` pending deliveries due at `now_ms`, oldest due first.
pub async fn due(db: &Database, now_ms: i64, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, action_id, customer_id, source, channel, language, payload, \
         attempts, next_attempt_at_ms, created_at_ms FROM notify_deliveries \
         WHERE status = $1 AND next_attempt_at_ms <= $2 \
         ORDER BY next_attempt_at_ms, delivery_id LIMIT $3",
    )
    .bind(PENDING)
    .bind(now_ms)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Takes a lease on a due delivery by moving its next attempt to `lease_until_ms`,
/// only if nobody else did since it was read. Two notify instances sharing the outbox
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
    let result = sqlx::query(
        "UPDATE notify_deliveries SET status = $1, attempts = $2, next_attempt_at_ms = $3, \
         last_error = $4, last_status_code = $5, delivered_at_ms = $6 \
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
    Ok(result.rows_affected() == 1)
}

/// Erasure: pending deliveries of the customer are given up ("erased") and every
/// stored payload of theirs (it quotes their words and their reference) is cleared.
/// The rows themselves stay, keyed by the pseudonymous customer id, so the audit trail
/// and the (action, customer) idempotency survive.
pub async fn erase(db: &Database, customer_id: &str) -> Result<u64, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let dead = sqlx::query(
        "UPDATE notify_deliveries SET status = $1, last_error = 'erased', payload = NULL \
         WHERE customer_id = $2 AND status = $3",
    )
    .bind(DEAD)
    .bind(customer_id)
    .bind(PENDING)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("UPDATE notify_deliveries SET payload = NULL WHERE customer_id = $1")
        .bind(customer_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(dead)
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
}

/// Every delivery of an action, in creation order.
pub async fn for_action(db: &Database, action_id: &str) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, action_id, customer_id, channel, language, status, attempts, \
         last_error, last_status_code, created_at_ms, delivered_at_ms FROM notify_deliveries \
         WHERE action_id = $1 ORDER BY created_at_ms, delivery_id",
    )
    .bind(action_id)
    .fetch_all(db.pool())
    .await
}
