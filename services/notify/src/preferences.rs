//! `notify_preferences`: how each customer wants to hear back. A row holds the last
//! `customers.preferences.v1` record applied (allowed channels, language, unsubscribed)
//! and the newest consent, whether it came with that record or with the customer's
//! feedback: both speak, and whichever is newer counts. Customers nobody told notify
//! anything about have no row; their feedback's consent decides, as it always did.

use std::collections::{BTreeMap, HashMap};

use closeloop_events::{CustomerPreferences, DeliveryChannel, FeedbackCategorised};
use closeloop_runtime::Pseudonyms;
use closeloop_store::{values, Backend, Database};

use crate::outbox::{self, Cancelled};

/// Skip and cancellation reason of customers who unsubscribed.
pub const UNSUBSCRIBED: &str = "unsubscribed";

/// A customer's preferences, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub customer_id: String,
    pub consent: bool,
    /// `None`: any channel.
    pub channels: Option<Vec<DeliveryChannel>>,
    pub language: Option<String>,
    pub unsubscribed: bool,
    /// `updated_at` of the last preference record applied, if any was.
    pub updated_at_ms: Option<i64>,
    /// The source (or [`closeloop_events::SET_BY_CUSTOMER`]) that changed them last.
    pub set_by: String,
}

impl Preferences {
    /// Whether messages may go out on `channel`.
    pub fn allows(&self, channel: DeliveryChannel) -> bool {
        self.channels
            .as_ref()
            .is_none_or(|channels| channels.contains(&channel))
    }

    /// The record that says the same, as of `updated_at` (what an unsubscribe
    /// publishes: everything as it was, and unsubscribed).
    pub fn to_record(
        &self,
        source: &str,
        updated_at: chrono::DateTime<chrono::Utc>,
    ) -> CustomerPreferences {
        CustomerPreferences {
            customer_id: self.customer_id.clone(),
            source: source.to_owned(),
            updated_at,
            consent: self.consent,
            channels: self.channels.clone(),
            language: self.language.clone(),
            unsubscribed: self.unsubscribed,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    customer_id: String,
    consent: i64,
    channels: Option<String>,
    language: Option<String>,
    unsubscribed: i64,
    updated_at_ms: Option<i64>,
    set_by: String,
}

impl From<Row> for Preferences {
    fn from(row: Row) -> Self {
        Preferences {
            customer_id: row.customer_id,
            consent: row.consent != 0,
            channels: row.channels.map(|text| parse_channels(&text)),
            language: row.language,
            unsubscribed: row.unsubscribed != 0,
            updated_at_ms: row.updated_at_ms,
            set_by: row.set_by,
        }
    }
}

const COLUMNS: &str =
    "customer_id, consent, channels, language, unsubscribed, updated_at_ms, set_by";

fn channels_text(channels: &[DeliveryChannel]) -> String {
    channels
        .iter()
        .map(DeliveryChannel::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_channels(text: &str) -> Vec<DeliveryChannel> {
    text.split(',')
        .filter_map(|name| match name.trim() {
            "email" => Some(DeliveryChannel::Email),
            "webhook" => Some(DeliveryChannel::Webhook),
            _ => None,
        })
        .collect()
}

/// The preferences of `customer_id`, if notify has any.
pub async fn get(db: &Database, customer_id: &str) -> Result<Option<Preferences>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notify_preferences WHERE customer_id = $1"
    ))
    .bind(customer_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(Preferences::from))
}

/// The preferences of each of `customers` notify has any for.
pub async fn of_customers<'a>(
    db: &Database,
    customers: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, Preferences>, sqlx::Error> {
    let customers: Vec<&str> = customers.into_iter().collect();
    let mut found = HashMap::new();
    for chunk in customers.chunks(values::rows_per_statement(db.backend(), 1)) {
        let sql = format!(
            "SELECT {COLUMNS} FROM notify_preferences WHERE customer_id IN ({})",
            values::list(chunk.len(), 1)
        );
        let mut query = sqlx::query_as::<_, Row>(&sql);
        for customer in chunk {
            query = query.bind(*customer);
        }
        for row in query.fetch_all(db.pool()).await? {
            found.insert(row.customer_id.clone(), Preferences::from(row));
        }
    }
    Ok(found)
}

/// The consent each customer of `batch` gave last (by receipt), for
/// [`record_consents`].
pub(crate) fn consents<'a>(
    pseudonyms: &Pseudonyms,
    batch: impl IntoIterator<Item = &'a FeedbackCategorised>,
) -> Vec<Consent> {
    // Deduplicated per customer: one multi-row upsert must not touch a row twice
    // (PostgreSQL refuses), and the newest is what one by one would leave.
    let mut latest: BTreeMap<&str, &FeedbackCategorised> = BTreeMap::new();
    for categorised in batch {
        let customer = categorised.feedback.customer.id.as_str();
        let at = categorised.feedback.received_at;
        match latest.get(customer) {
            Some(current) if current.feedback.received_at > at => {}
            _ => {
                latest.insert(customer, categorised);
            }
        }
    }
    latest
        .into_values()
        .map(|categorised| {
            let feedback = &categorised.feedback;
            Consent {
                customer_id: feedback.customer.id.clone(),
                consent: feedback.customer.consent,
                at_ms: feedback.received_at.timestamp_millis(),
                source: feedback.source.clone(),
                pseudonym: pseudonyms.of(&feedback.customer.id),
            }
        })
        .collect()
}

/// What one feedback says about its customer's consent.
#[derive(Debug)]
pub(crate) struct Consent {
    customer_id: String,
    consent: bool,
    at_ms: i64,
    source: String,
    pseudonym: String,
}

/// Feedback's consent, into the rows of its customers, where it is newer than what the
/// row holds (and its customer was not erased after it arrived). Part of the caller's
/// transaction, so the feedback's mentions and its consent land together.
pub(crate) async fn record_consents(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    consents: &[Consent],
) -> Result<(), sqlx::Error> {
    const COLUMNS: usize = 5;
    for chunk in consents.chunks(values::rows_per_statement(backend, COLUMNS)) {
        // `WHERE NOT EXISTS` also settles SQLite's INSERT … SELECT … ON CONFLICT parse.
        let sql = format!(
            "INSERT INTO notify_preferences (customer_id, consent, consent_at_ms, unsubscribed, set_by) \
             SELECT v.column1, v.column2, v.column3, 0, v.column4 FROM (VALUES {}) AS v \
             WHERE NOT EXISTS (SELECT 1 FROM notify_erasures e \
                               WHERE e.customer_id = v.column5 AND e.source IN (v.column4, '*') \
                                 AND e.erased_at_ms >= v.column3) \
             ON CONFLICT (customer_id) DO UPDATE SET consent = excluded.consent, \
               consent_at_ms = excluded.consent_at_ms, set_by = excluded.set_by \
             WHERE excluded.consent_at_ms > notify_preferences.consent_at_ms",
            values::placeholders(backend, chunk.len(), COLUMNS)
        );
        let mut query = sqlx::query(&sql);
        for consent in chunk {
            query = query
                .bind(&consent.customer_id)
                .bind(i64::from(consent.consent))
                .bind(consent.at_ms)
                .bind(&consent.source)
                .bind(&consent.pseudonym);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// What applying a preference record did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Whether it was newer than what notify had (else it changed nothing).
    pub changed: bool,
    /// Deliveries the customer was waiting for that will now not be sent.
    pub cancelled: Vec<Cancelled>,
}

/// Applies `record` if it is newer than the last one applied (and its customer was not
/// erased after it was made). When it unsubscribes the customer, their pending and held
/// deliveries are cancelled in the same transaction, so nothing more goes out.
pub async fn apply(
    db: &Database,
    pseudonyms: &Pseudonyms,
    record: &CustomerPreferences,
) -> Result<Applied, sqlx::Error> {
    let updated_at_ms = record.updated_at.timestamp_millis();
    let mut tx = db.pool().begin().await?;
    let changed = sqlx::query(
        "INSERT INTO notify_preferences (customer_id, consent, consent_at_ms, channels, language, \
           unsubscribed, updated_at_ms, set_by) \
         SELECT $1, $2, $3, $4, $5, $6, $3, $7 \
         WHERE NOT EXISTS (SELECT 1 FROM notify_erasures e \
                           WHERE e.customer_id = $8 AND e.source IN ($7, '*') \
                             AND e.erased_at_ms >= $3) \
         ON CONFLICT (customer_id) DO UPDATE SET \
           consent = CASE WHEN excluded.consent_at_ms > notify_preferences.consent_at_ms \
                     THEN excluded.consent ELSE notify_preferences.consent END, \
           consent_at_ms = CASE WHEN excluded.consent_at_ms > notify_preferences.consent_at_ms \
                     THEN excluded.consent_at_ms ELSE notify_preferences.consent_at_ms END, \
           channels = excluded.channels, language = excluded.language, \
           unsubscribed = excluded.unsubscribed, updated_at_ms = excluded.updated_at_ms, \
           set_by = excluded.set_by \
         WHERE notify_preferences.updated_at_ms IS NULL \
            OR excluded.updated_at_ms > notify_preferences.updated_at_ms",
    )
    .bind(&record.customer_id)
    .bind(i64::from(record.consent))
    .bind(updated_at_ms)
    .bind(record.channels.as_deref().map(channels_text))
    .bind(record.language.clone())
    .bind(i64::from(record.unsubscribed))
    .bind(&record.source)
    .bind(pseudonyms.of(&record.customer_id))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let cancelled = if changed && record.unsubscribed {
        outbox::cancel_waiting(&mut tx, &record.customer_id, None, UNSUBSCRIBED).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    Ok(Applied { changed, cancelled })
}

/// Erasure: the customer's preferences go, for an erasure of every source, or of the
/// source that set them last. So does their contact period (it only says when they
/// were last written to).
pub async fn erase(
    conn: &mut sqlx::AnyConnection,
    customer_id: &str,
    scope: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM notify_preferences WHERE customer_id = $1 AND ($2 = '*' OR set_by = $2)",
    )
    .bind(customer_id)
    .bind(scope)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM notify_contact_periods WHERE customer_id = $1")
        .bind(customer_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
