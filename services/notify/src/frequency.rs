//! The frequency cap: at most one "you said, we did" per customer per period (7 days by
//! default). The first message opens the customer's contact period and goes out; the
//! ones decided while it is open are held (status `held`, due when it ends) and then
//! go out as one combined message, which opens the next period — or, configured so,
//! they are skipped and counted (`frequency_cap`).
//!
//! Every notify replica may decide messages for the same customer at once (actions
//! of different themes are on different partitions), so the period is taken with one
//! conditional write on `notify_contact_periods`: the row moves forward only where the
//! period it holds has ended. On PostgreSQL the second writer waits for the first's
//! row lock and then finds the period open; SQLite has one writer at a time.

use closeloop_store::{values, Backend, Database};

use crate::outbox::execute_for_ids;

/// Skip reason of messages the cap dropped (`--when-capped skip`).
pub const FREQUENCY_CAP: &str = "frequency_cap";

/// What happens to a message decided while its customer's period is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WhenCapped {
    /// Held, and sent combined with the others held for the customer when the period ends.
    Hold,
    /// Not sent; counted as skipped (`frequency_cap`).
    Skip,
}

/// The cap as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub period_ms: i64,
    pub when_capped: WhenCapped,
}

/// A new delivery as [`open_periods`] needs it: id, customer, when it was decided.
pub(crate) type NewRow = (String, String, i64);

/// Opens a contact period, at its decision time, for the customer of each of `rows`
/// whose last period has ended (or who never had one). Returns the rows whose customer
/// is still in an open period: those the cap applies to.
pub(crate) async fn open_periods(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    cap: &Cap,
    rows: &[NewRow],
) -> Result<Vec<NewRow>, sqlx::Error> {
    // One row per customer, in customer order, so two replicas' statements lock the
    // periods of the same customers in the same order (no deadlock).
    let mut rows: Vec<&NewRow> = rows.iter().collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let mut capped: Vec<NewRow> = Vec::new();
    let mut first_per_customer: Vec<&NewRow> = Vec::new();
    for row in rows {
        match first_per_customer.last() {
            Some(last) if last.1 == row.1 => capped.push(row.clone()),
            _ => first_per_customer.push(row),
        }
    }
    const COLUMNS: usize = 3;
    let mut opened = std::collections::HashSet::new();
    for chunk in first_per_customer.chunks(values::rows_per_statement(backend, COLUMNS)) {
        let sql = format!(
            "INSERT INTO notify_contact_periods (customer_id, opened_at_ms, delivery_id) \
             VALUES {} ON CONFLICT (customer_id) DO UPDATE SET \
               opened_at_ms = excluded.opened_at_ms, delivery_id = excluded.delivery_id \
             WHERE notify_contact_periods.opened_at_ms + {} <= excluded.opened_at_ms \
             RETURNING delivery_id",
            values::placeholders(backend, chunk.len(), COLUMNS),
            cap.period_ms
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for (delivery_id, customer_id, at_ms) in chunk {
            query = query.bind(customer_id).bind(*at_ms).bind(delivery_id);
        }
        opened.extend(query.fetch_all(&mut *conn).await?);
    }
    capped.extend(
        first_per_customer
            .into_iter()
            .filter(|row| !opened.contains(&row.0))
            .cloned(),
    );
    Ok(capped)
}

/// Holds the deliveries `ids` until their customers' periods end.
pub(crate) async fn hold(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    cap: &Cap,
    ids: &[&str],
) -> Result<(), sqlx::Error> {
    let period_ms = cap.period_ms;
    execute_for_ids(conn, backend, &[], ids, |list| {
        format!(
            "UPDATE notify_deliveries SET status = 'held', next_attempt_at_ms = COALESCE(\
               (SELECT p.opened_at_ms + {period_ms} FROM notify_contact_periods p \
                WHERE p.customer_id = notify_deliveries.customer_id), next_attempt_at_ms) \
             WHERE delivery_id IN ({list})"
        )
    })
    .await
}

/// A held delivery, as the combined message is made of it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Held {
    pub delivery_id: String,
    pub action_id: String,
    pub channel: String,
    pub language: String,
    pub payload: Option<String>,
}

/// What [`release`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Messages now due: one per customer whose period ended.
    pub messages: usize,
    /// Held deliveries folded into another one's combined message.
    pub combined: usize,
}

/// Customers released per call; the rest wait for the next poll.
const RELEASE_BATCH: i64 = 100;

/// For every customer whose period ended with deliveries held: opens their next period
/// and makes the oldest held delivery the one message due now, its payload `combine`d
/// from all of theirs (unchanged when it is alone); the others become `combined` into it.
pub async fn release(
    db: &Database,
    cap: &Cap,
    now_ms: i64,
    combine: impl Fn(&[Held]) -> String,
) -> Result<Released, sqlx::Error> {
    let customers: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT customer_id FROM notify_deliveries \
         WHERE status = 'held' AND next_attempt_at_ms <= $1 LIMIT $2",
    )
    .bind(now_ms)
    .bind(RELEASE_BATCH)
    .fetch_all(db.pool())
    .await?;
    let mut released = Released::default();
    for customer_id in customers {
        // Opened first: the transaction starts with a write, and of two replicas
        // releasing the same customer only one gets past it.
        let mut tx = db.pool().begin().await?;
        let opened: Option<String> = sqlx::query_scalar(&format!(
            "INSERT INTO notify_contact_periods (customer_id, opened_at_ms, delivery_id) \
             VALUES ($1, $2, '') ON CONFLICT (customer_id) DO UPDATE SET \
               opened_at_ms = excluded.opened_at_ms \
             WHERE notify_contact_periods.opened_at_ms + {} <= excluded.opened_at_ms \
             RETURNING customer_id",
            cap.period_ms
        ))
        .bind(&customer_id)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        if opened.is_none() {
            // Another message opened a period since they were held: wait for its end.
            sqlx::query(&format!(
                "UPDATE notify_deliveries SET next_attempt_at_ms = COALESCE(\
                   (SELECT p.opened_at_ms + {} FROM notify_contact_periods p \
                    WHERE p.customer_id = notify_deliveries.customer_id), next_attempt_at_ms) \
                 WHERE customer_id = $1 AND status = 'held'",
                cap.period_ms
            ))
            .bind(&customer_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            continue;
        }
        let held: Vec<Held> = sqlx::query_as(
            "SELECT delivery_id, action_id, channel, language, payload FROM notify_deliveries \
             WHERE customer_id = $1 AND status = 'held' ORDER BY created_at_ms, delivery_id",
        )
        .bind(&customer_id)
        .fetch_all(&mut *tx)
        .await?;
        let Some(carrier) = held.first() else {
            // Cancelled meanwhile: no message, so no period either.
            tx.rollback().await?;
            continue;
        };
        let payload = match held.len() {
            1 => carrier.payload.clone(),
            _ => Some(combine(&held)),
        };
        sqlx::query(
            "UPDATE notify_deliveries SET status = 'pending', next_attempt_at_ms = $1, \
             payload = $2 WHERE delivery_id = $3",
        )
        .bind(now_ms)
        .bind(payload)
        .bind(&carrier.delivery_id)
        .execute(&mut *tx)
        .await?;
        let others: Vec<&str> = held[1..].iter().map(|h| h.delivery_id.as_str()).collect();
        execute_for_ids(
            &mut tx,
            db.backend(),
            &[carrier.delivery_id.as_str()],
            &others,
            |list| {
                format!(
                    "UPDATE notify_deliveries SET status = 'combined', combined_into = $1, \
                     payload = NULL WHERE delivery_id IN ({list})"
                )
            },
        )
        .await?;
        sqlx::query("UPDATE notify_contact_periods SET delivery_id = $1 WHERE customer_id = $2")
            .bind(&carrier.delivery_id)
            .bind(&customer_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        released.messages += 1;
        released.combined += others.len();
    }
    Ok(released)
}

/// A customer's contact period, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Period {
    pub opened_at_ms: i64,
    pub delivery_id: String,
}

/// The customer's current (or last) contact period.
pub async fn period(db: &Database, customer_id: &str) -> Result<Option<Period>, sqlx::Error> {
    sqlx::query_as(
        "SELECT opened_at_ms, delivery_id FROM notify_contact_periods WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(db.pool())
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{self, NewDelivery};

    fn delivery(action: &str, customer: &str, at_ms: i64) -> NewDelivery {
        NewDelivery {
            delivery_id: uuid::Uuid::now_v7().to_string(),
            action_id: action.into(),
            customer_id: customer.into(),
            source: "shopdesk".into(),
            channel: "webhook",
            language: "en".into(),
            payload: format!("{{\"text\":\"about {action}\"}}"),
            created_at_ms: at_ms,
            said_at_ms: 0,
        }
    }

    const CAP: Cap = Cap {
        period_ms: 1000,
        when_capped: WhenCapped::Hold,
    };

    async fn statuses(db: &Database) -> Vec<(String, String)> {
        sqlx::query_as("SELECT action_id, status FROM notify_deliveries ORDER BY action_id")
            .fetch_all(db.pool())
            .await
            .expect("rows")
    }

    #[tokio::test]
    async fn one_message_per_period_the_rest_held_then_combined() {
        for db in crate::test_databases("one_message_per_period_the_rest_held_then_combined").await
        {
            let cap = Some(&CAP);
            let first = outbox::enqueue(&db, &[delivery("a1", "c", 0)], &[], cap)
                .await
                .unwrap();
            assert_eq!((first.queued, first.held), (1, 0));
            for (action, at) in [("a2", 10), ("a3", 20)] {
                let later = outbox::enqueue(&db, &[delivery(action, "c", at)], &[], cap)
                    .await
                    .unwrap();
                assert_eq!((later.queued, later.held), (0, 1), "{action}");
            }
            // Another customer has a period of their own.
            let other = outbox::enqueue(&db, &[delivery("a2", "d", 10)], &[], cap)
                .await
                .unwrap();
            assert_eq!(other.queued, 1);

            // Before the period ends nothing is released.
            let combine = |held: &[Held]| format!("{} combined", held.len());
            assert_eq!(
                release(&db, &CAP, 999, combine).await.unwrap(),
                Released::default()
            );
            // At its end the oldest held one carries both.
            let released = release(&db, &CAP, 1000, combine).await.unwrap();
            assert_eq!(
                released,
                Released {
                    messages: 1,
                    combined: 1
                }
            );
            let rows = statuses(&db).await;
            let c: Vec<&str> = rows.iter().map(|(_, s)| s.as_str()).collect();
            assert_eq!(c, ["pending", "pending", "pending", "combined"], "{rows:?}");
            let payload: Option<String> = sqlx::query_scalar(
                "SELECT payload FROM notify_deliveries WHERE action_id = 'a2' AND customer_id = 'c'",
            )
            .fetch_one(db.pool())
            .await
            .unwrap();
            assert_eq!(payload.as_deref(), Some("2 combined"));
            // The combined message opened the next period: a new one is held again.
            let next = outbox::enqueue(&db, &[delivery("a4", "c", 1500)], &[], cap)
                .await
                .unwrap();
            assert_eq!(next.held, 1);
            assert_eq!(
                period(&db, "c").await.unwrap().map(|p| p.opened_at_ms),
                Some(1000)
            );
        }
    }

    #[tokio::test]
    async fn held_messages_wait_for_a_period_another_message_opened() {
        for db in
            crate::test_databases("held_messages_wait_for_a_period_another_message_opened").await
        {
            let cap = Some(&CAP);
            outbox::enqueue(&db, &[delivery("a1", "c", 0)], &[], cap)
                .await
                .unwrap();
            outbox::enqueue(&db, &[delivery("a2", "c", 10)], &[], cap)
                .await
                .unwrap();
            // The period ends and, before the worker releases a2, a3 opens the next one.
            let a3 = outbox::enqueue(&db, &[delivery("a3", "c", 1200)], &[], cap)
                .await
                .unwrap();
            assert_eq!(a3.queued, 1);
            let released = release(&db, &CAP, 1300, |_| String::new()).await.unwrap();
            assert_eq!(released.messages, 0, "the period a3 opened still runs");
            let due: i64 = sqlx::query_scalar(
                "SELECT next_attempt_at_ms FROM notify_deliveries WHERE action_id = 'a2'",
            )
            .fetch_one(db.pool())
            .await
            .unwrap();
            assert_eq!(due, 2200, "held until the new period ends");
            assert_eq!(
                release(&db, &CAP, 2200, |_| String::new())
                    .await
                    .unwrap()
                    .messages,
                1
            );
        }
    }
}
