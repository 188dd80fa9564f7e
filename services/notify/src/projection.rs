//! `notify_mentions`: notify's own projection of `feedback.categorised.v1`, one row per
//! (feedback, theme), holding just enough to decide who to tell about a resolved theme
//! and what to quote back to them. Contact data and the excerpt are stored only for
//! customers who consented, and the rows go away on erasure.

use std::collections::{BTreeMap, HashSet};

use closeloop_events::FeedbackCategorised;
use closeloop_runtime::Pseudonyms;
use closeloop_store::Database;
use uuid::Uuid;

use crate::message;
use closeloop_store::values;

/// Stores one row per theme of `categorised`; a replay changes nothing. Returns how
/// many rows were new (none for a replay, or for feedback older than its customer's
/// erasure).
pub async fn record(
    db: &Database,
    pseudonyms: &Pseudonyms,
    categorised: &FeedbackCategorised,
) -> Result<u64, sqlx::Error> {
    record_all(db, pseudonyms, [categorised]).await
}

/// Stores the rows of every feedback in `batch` in one transaction, with multi-row
/// statements. The result is the one of [`record`] called for each in order: a row
/// whose (feedback, theme) is already stored, or came earlier in the batch, is left
/// alone (the first one wins, as `ON CONFLICT DO NOTHING` has it one by one), and the
/// erasure ledger is checked row by row. Returns how many rows were new.
pub async fn record_all<'a>(
    db: &Database,
    pseudonyms: &Pseudonyms,
    batch: impl IntoIterator<Item = &'a FeedbackCategorised>,
) -> Result<u64, sqlx::Error> {
    let batch: Vec<&FeedbackCategorised> = batch.into_iter().collect();
    let consents = crate::preferences::consents(pseudonyms, batch.iter().copied());
    let mut seen = HashSet::new();
    let rows: Vec<Row> = batch
        .iter()
        .flat_map(|categorised| rows_of(pseudonyms, categorised))
        // Deduplicated here, not left to ON CONFLICT: which of two equal keys in one
        // statement wins is the database's business, and "the first" is what one by
        // one would keep.
        .filter(|row| seen.insert((row.feedback_id.clone(), row.theme.clone())))
        .collect();
    if rows.is_empty() && consents.is_empty() {
        return Ok(0);
    }
    let mut tx = db.pool().begin().await?;
    let mut inserted = 0;
    for chunk in rows.chunks(values::rows_per_statement(db.backend(), Row::COLUMNS)) {
        inserted += insert(&mut tx, db.backend(), chunk).await?;
    }
    // Every feedback speaks for its customer's consent, with themes or without.
    crate::preferences::record_consents(&mut tx, db.backend(), &consents).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// One `notify_mentions` row to insert, with what its erasure check needs.
#[derive(Debug)]
struct Row {
    feedback_id: String,
    theme: String,
    customer_id: String,
    source: String,
    language: String,
    consent: i64,
    email: Option<String>,
    reference: Option<String>,
    sentiment: &'static str,
    excerpt: Option<String>,
    given_at_ms: i64,
    text_language: Option<&'static str>,
    received_at_ms: i64,
    /// The customer's pseudonym, as the erasure ledger keys them.
    pseudonym: String,
}

impl Row {
    const COLUMNS: usize = 14;
}

/// The rows of one feedback: one per theme.
fn rows_of(pseudonyms: &Pseudonyms, categorised: &FeedbackCategorised) -> Vec<Row> {
    if categorised.themes.is_empty() {
        return Vec::new();
    }
    let feedback = &categorised.feedback;
    let customer = &feedback.customer;
    let text_language = message::text_language(categorised.language);
    // The locale is the customer's own choice; without one, the language they wrote in.
    let language = message::locale_language(customer.locale.as_deref())
        .or_else(|| text_language.map(str::to_owned))
        .unwrap_or_else(|| crate::template::FALLBACK_LANGUAGE.to_owned());
    // Privacy: without consent we will never contact the customer, so we keep neither
    // how to reach them nor what they wrote, only that they mentioned the theme (which
    // the skipped-for-no-consent metric needs).
    let (email, reference, excerpt) = if customer.consent {
        (
            customer.email.clone(),
            customer.reference.clone(),
            Some(message::excerpt(&feedback.text, message::EXCERPT_CHARS)),
        )
    } else {
        (None, None, None)
    };
    let feedback_id = feedback.feedback_id.to_string();
    let pseudonym = pseudonyms.of(&customer.id);
    categorised
        .themes
        .iter()
        .map(|theme| Row {
            feedback_id: feedback_id.clone(),
            theme: theme.id.clone(),
            customer_id: customer.id.clone(),
            source: feedback.source.clone(),
            language: language.clone(),
            consent: i64::from(customer.consent),
            email: email.clone(),
            reference: reference.clone(),
            sentiment: theme.sentiment.as_str(),
            excerpt: excerpt.clone(),
            given_at_ms: feedback.given_at.timestamp_millis(),
            text_language,
            received_at_ms: feedback.received_at.timestamp_millis(),
            pseudonym: pseudonym.clone(),
        })
        .collect()
}

/// Inserts `rows` in one statement; returns how many were new.
async fn insert(
    conn: &mut sqlx::AnyConnection,
    backend: closeloop_store::Backend,
    rows: &[Row],
) -> Result<u64, sqlx::Error> {
    // Feedback received before its customer asked to be forgotten stays forgotten. The
    // check is part of the insert so the transaction only ever writes (a read-then-write
    // transaction fails with SQLITE_BUSY_SNAPSHOT under contention). A VALUES list names
    // its columns column1… on both SQLite and PostgreSQL.
    let sql = format!(
        "INSERT INTO notify_mentions (feedback_id, theme, customer_id, source, language, \
         consent, email, reference, sentiment, excerpt, given_at_ms, text_language) \
         SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, \
         v.column7, v.column8, v.column9, v.column10, v.column11, v.column12 \
         FROM (VALUES {}) AS v \
         WHERE NOT EXISTS (SELECT 1 FROM notify_erasures e \
                           WHERE e.customer_id = v.column14 AND e.source IN (v.column4, '*') \
                             AND e.erased_at_ms >= v.column13) \
         ON CONFLICT DO NOTHING",
        values::placeholders(backend, rows.len(), Row::COLUMNS)
    );
    let mut query = sqlx::query(&sql);
    for row in rows {
        query = query
            .bind(&row.feedback_id)
            .bind(&row.theme)
            .bind(&row.customer_id)
            .bind(&row.source)
            .bind(&row.language)
            .bind(row.consent)
            .bind(row.email.clone())
            .bind(row.reference.clone())
            .bind(row.sentiment)
            .bind(row.excerpt.clone())
            .bind(row.given_at_ms)
            .bind(row.text_language)
            .bind(row.received_at_ms)
            .bind(&row.pseudonym);
    }
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

/// A mention of a theme, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Mention {
    pub feedback_id: String,
    pub customer_id: String,
    pub source: String,
    /// The language the customer's locale asks for (else the one they wrote in).
    pub language: String,
    /// The language they wrote in, when recognised.
    pub text_language: Option<String>,
    pub consent: i64,
    pub sentiment: String,
    pub email: Option<String>,
    pub reference: Option<String>,
    pub excerpt: Option<String>,
    pub given_at_ms: i64,
}

const MENTION_COLUMNS: &str = "feedback_id, customer_id, source, language, text_language, \
     consent, sentiment, email, reference, excerpt, given_at_ms";

/// Who is owed a message about a resolved theme, and what to quote back.
#[derive(Debug)]
pub struct Recipients {
    /// Per customer, their most recent qualifying negative mention of the theme.
    pub latest: BTreeMap<String, Mention>,
    /// Evidence feedback ids that are not (yet) in the projection.
    pub missing_evidence: usize,
}

/// The negative mentions of `themes` that are in `evidence` or were given in
/// `[from_ms, to_ms]`, reduced to the most recent one per customer.
pub async fn recipients(
    db: &Database,
    themes: &[&str],
    evidence: &[Uuid],
    from_ms: i64,
    to_ms: i64,
) -> Result<Recipients, sqlx::Error> {
    let evidence: Vec<String> = evidence.iter().map(Uuid::to_string).collect();
    let mut mentions: Vec<Mention> = Vec::new();
    let mut found = HashSet::new();
    // An action covers its own theme and the related themes that joined it: one
    // problem, so a customer who raised it under several of them hears once.
    for theme in themes {
        mentions.extend(
            sqlx::query_as::<_, Mention>(&format!(
                "SELECT {MENTION_COLUMNS} FROM notify_mentions \
                 WHERE theme = $1 AND sentiment = 'negative' AND given_at_ms >= $2 AND given_at_ms <= $3"
            ))
            .bind(theme)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(db.pool())
            .await?,
        );
        // Evidence may be older than the lookback window; fetch it by id, in chunks.
        for chunk in evidence.chunks(values::rows_per_statement(db.backend(), 1)) {
            let sql = format!(
                "SELECT {MENTION_COLUMNS} FROM notify_mentions \
                 WHERE theme = $1 AND feedback_id IN ({})",
                values::list(chunk.len(), 2)
            );
            let mut query = sqlx::query_as::<_, Mention>(&sql).bind(theme);
            for id in chunk {
                query = query.bind(id);
            }
            // Found regardless of sentiment: the evidence row exists, the projection is
            // not lagging; only negative ones make someone a recipient.
            let rows: Vec<Mention> = query.fetch_all(db.pool()).await?;
            for row in rows {
                found.insert(row.feedback_id.clone());
                if row.sentiment == "negative" {
                    mentions.push(row);
                }
            }
        }
    }
    let missing_evidence = evidence.iter().filter(|id| !found.contains(*id)).count();

    Ok(Recipients {
        latest: latest_per_customer(mentions),
        missing_evidence,
    })
}

/// The most recent mention per customer (ties broken by feedback id, for determinism).
fn latest_per_customer(mentions: Vec<Mention>) -> BTreeMap<String, Mention> {
    let mut latest: BTreeMap<String, Mention> = BTreeMap::new();
    for mention in mentions {
        match latest.get(&mention.customer_id) {
            Some(current)
                if (current.given_at_ms, &current.feedback_id)
                    >= (mention.given_at_ms, &mention.feedback_id) => {}
            _ => {
                latest.insert(mention.customer_id.clone(), mention);
            }
        }
    }
    latest
}

/// Deletes everything notify projected about a customer in `scope` (a source, or `*`
/// for every source) and remembers when, so their earlier feedback is not projected
/// again if it arrives late or is replayed. The ledger keeps the customer's pseudonym,
/// never their id. notify keeps no customer state beyond these per-feedback rows
/// (consent and contact data travel with each feedback), so nothing else is erased.
pub async fn erase(
    db: &Database,
    pseudonym: &str,
    customer_id: &str,
    scope: &str,
    erased_at_ms: i64,
) -> Result<u64, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO notify_erasures (customer_id, source, erased_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (customer_id, source) DO UPDATE SET erased_at_ms = CASE \
         WHEN excluded.erased_at_ms > notify_erasures.erased_at_ms THEN excluded.erased_at_ms \
         ELSE notify_erasures.erased_at_ms END",
    )
    .bind(pseudonym)
    .bind(scope)
    .bind(erased_at_ms)
    .execute(&mut *tx)
    .await?;
    let result = sqlx::query(
        "DELETE FROM notify_mentions WHERE customer_id = $1 AND ($2 = '*' OR source = $2)",
    )
    .bind(customer_id)
    .bind(scope)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};
    use closeloop_events::{
        Channel, CustomerRef, Feedback, Language, SentimentLabel, SentimentResult, ThemeMatch,
    };

    async fn database() -> Database {
        let db = Database::connect(&closeloop_store::testing::sqlite_config())
            .await
            .expect("sqlite");
        db.migrate(sqlx::migrate!("./migrations"))
            .await
            .expect("migrations");
        db
    }

    fn mention(
        customer: &str,
        consent: bool,
        sentiment: SentimentLabel,
        days_ago: i64,
        text: &str,
    ) -> FeedbackCategorised {
        FeedbackCategorised {
            feedback: Feedback {
                feedback_id: Uuid::now_v7(),
                source: "shopdesk".into(),
                channel: Channel::Ticket,
                touchpoint: None,
                customer: CustomerRef {
                    id: customer.into(),
                    locale: Some("de-CH".into()),
                    consent,
                    email: Some("x@example.com".into()),
                    reference: Some("T-1".into()),
                },
                text: text.into(),
                rating: None,
                nps: None,
                given_at: Utc::now() - Duration::days(days_ago),
                received_at: Utc::now(),
                metadata: serde_json::Map::new(),
            },
            language: Language::En,
            sentiment: SentimentResult {
                label: sentiment,
                score: 0.0,
                confidence: 1.0,
            },
            themes: vec![ThemeMatch {
                id: "delivery_time".into(),
                score: 1.0,
                sentiment,
                matched_terms: vec![],
            }],
            classifier_version: "test".into(),
            explanation: vec![],
        }
    }

    #[tokio::test]
    async fn an_action_reaches_the_complainers_of_its_related_themes_once() {
        let db = database().await;
        let late = mention("a", true, SentimentLabel::Negative, 0, "late");
        let mut lost = mention("a", true, SentimentLabel::Negative, 0, "parcel lost");
        lost.themes[0].id = "delivery".into();
        let mut parent_only = mention("b", true, SentimentLabel::Negative, 0, "no parcel");
        parent_only.themes[0].id = "delivery".into();
        let mut unrelated = mention("c", true, SentimentLabel::Negative, 0, "too pricey");
        unrelated.themes[0].id = "price".into();
        for m in [&late, &lost, &parent_only, &unrelated] {
            record(&db, &Pseudonyms::development(), m).await.unwrap();
        }
        let now = Utc::now().timestamp_millis();
        let window = (now - Duration::days(1).num_milliseconds(), now);
        let own = recipients(&db, &["delivery_time"], &[], window.0, window.1)
            .await
            .unwrap();
        assert_eq!(own.latest.keys().collect::<Vec<_>>(), ["a"]);
        let with_related = recipients(
            &db,
            &["delivery_time", "delivery"],
            &[parent_only.feedback.feedback_id],
            window.0,
            window.1,
        )
        .await
        .unwrap();
        assert_eq!(
            with_related.latest.keys().collect::<Vec<_>>(),
            ["a", "b"],
            "one entry per customer, whatever the theme"
        );
        assert_eq!(with_related.missing_evidence, 0);
    }

    /// A reclassification (a taxonomy version applied over a period) publishes the
    /// categorised event of a known feedback again, with a theme added: the projection is
    /// keyed by (feedback, theme), so its customer hears about the new theme too.
    #[tokio::test]
    async fn a_reclassified_feedback_adds_its_new_theme() {
        let db = database().await;
        let first = mention(
            "a",
            true,
            SentimentLabel::Negative,
            0,
            "late, and the app crashed",
        );
        let mut again = first.clone();
        again.themes.push(ThemeMatch {
            id: "app_release".into(),
            ..first.themes[0].clone()
        });
        again.classifier_version = "test-r2".into();
        let pseudonyms = Pseudonyms::development();
        assert_eq!(record(&db, &pseudonyms, &first).await.unwrap(), 1);
        assert_eq!(
            record(&db, &pseudonyms, &again).await.unwrap(),
            1,
            "the added theme"
        );
        assert_eq!(
            record(&db, &pseudonyms, &again).await.unwrap(),
            0,
            "a replay"
        );
        let found = recipients(&db, &["app_release"], &[], 0, Utc::now().timestamp_millis())
            .await
            .unwrap();
        assert_eq!(found.latest.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[tokio::test]
    async fn keeps_no_contact_data_without_consent_and_ignores_replays() {
        let db = database().await;
        let no = mention("c1", false, SentimentLabel::Negative, 0, "late");
        record(&db, &Pseudonyms::development(), &no).await.unwrap();
        record(&db, &Pseudonyms::development(), &no).await.unwrap();
        type Stored = (Option<String>, Option<String>, Option<String>, String);
        let rows: Vec<Stored> =
            sqlx::query_as("SELECT email, reference, excerpt, language FROM notify_mentions")
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert_eq!(rows, vec![(None, None, None, "de".to_owned())]);

        // With consent, the contact route and the excerpt are kept.
        let yes = mention("c2", true, SentimentLabel::Negative, 0, "late\nagain");
        record(&db, &Pseudonyms::development(), &yes).await.unwrap();
        let found = recipients(&db, &["delivery_time"], &[yes.feedback.feedback_id], 0, 0)
            .await
            .unwrap();
        let c2 = &found.latest["c2"];
        assert_eq!(c2.email.as_deref(), Some("x@example.com"));
        assert_eq!(c2.reference.as_deref(), Some("T-1"));
        assert_eq!(c2.excerpt.as_deref(), Some("late again"));
        assert_eq!(
            (c2.language.as_str(), c2.text_language.as_deref()),
            ("de", Some("en"))
        );
    }

    #[tokio::test]
    async fn recipients_are_negative_mentions_in_evidence_or_window() {
        let db = database().await;
        let recent_old = mention("a", true, SentimentLabel::Negative, 5, "older complaint");
        let recent_new = mention("a", true, SentimentLabel::Negative, 1, "newer complaint");
        let old_in_evidence = mention("b", true, SentimentLabel::Negative, 90, "ancient");
        let old_not_in_evidence = mention("c", true, SentimentLabel::Negative, 90, "ancient");
        let positive = mention("d", true, SentimentLabel::Positive, 1, "fast!");
        for m in [
            &recent_old,
            &recent_new,
            &old_in_evidence,
            &old_not_in_evidence,
            &positive,
        ] {
            record(&db, &Pseudonyms::development(), m).await.unwrap();
        }
        let not_projected = Uuid::now_v7();
        let now = Utc::now().timestamp_millis();
        let found = recipients(
            &db,
            &["delivery_time"],
            &[old_in_evidence.feedback.feedback_id, not_projected],
            now - Duration::days(30).num_milliseconds(),
            now,
        )
        .await
        .unwrap();
        assert_eq!(found.latest.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            found.latest["a"].excerpt.as_deref(),
            Some("newer complaint")
        );
        assert_eq!(found.missing_evidence, 1);

        let erased_at = Utc::now().timestamp_millis();
        let a = Pseudonyms::development().of("a");
        assert_eq!(erase(&db, &a, "a", "*", erased_at).await.unwrap(), 2);
        // Replayed or late feedback from before the erasure is not projected again…
        assert_eq!(
            record(&db, &Pseudonyms::development(), &recent_new)
                .await
                .unwrap(),
            0
        );
        // …feedback received after it is.
        let mut later = mention("a", true, SentimentLabel::Negative, 0, "new complaint");
        later.feedback.received_at = Utc::now() + Duration::seconds(1);
        assert_eq!(
            record(&db, &Pseudonyms::development(), &later)
                .await
                .unwrap(),
            1
        );
        let found = recipients(&db, &["delivery_time"], &[], 0, i64::MAX)
            .await
            .unwrap();
        assert_eq!(found.latest["a"].excerpt.as_deref(), Some("new complaint"));
    }

    #[tokio::test]
    async fn a_scoped_erasure_forgets_only_what_came_through_its_source() {
        let db = database().await;
        let pseudonyms = Pseudonyms::development();
        let shopdesk = mention("a", true, SentimentLabel::Negative, 1, "via shopdesk");
        let mut surveyhub = mention("a", true, SentimentLabel::Negative, 1, "via surveyhub");
        surveyhub.feedback.source = "surveyhub".into();
        for m in [&shopdesk, &surveyhub] {
            record(&db, &pseudonyms, m).await.unwrap();
        }
        let erased_at = Utc::now().timestamp_millis();
        let a = pseudonyms.of("a");
        assert_eq!(
            erase(&db, &a, "a", "surveyhub", erased_at).await.unwrap(),
            1
        );
        let left: Vec<String> = sqlx::query_scalar("SELECT source FROM notify_mentions")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(left, ["shopdesk"]);
        // A replay of the erased source's feedback stays forgotten; the other's counts.
        sqlx::query("DELETE FROM notify_mentions")
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(record(&db, &pseudonyms, &surveyhub).await.unwrap(), 0);
        assert_eq!(record(&db, &pseudonyms, &shopdesk).await.unwrap(), 1);
    }

    type Stored = (
        String,
        String,
        String,
        String,
        String,
        i64,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        i64,
        Option<String>,
    );

    async fn stored(db: &Database) -> Vec<Stored> {
        sqlx::query_as(
            "SELECT feedback_id, theme, customer_id, source, language, consent, email, \
             reference, sentiment, excerpt, given_at_ms, text_language FROM notify_mentions \
             ORDER BY feedback_id, theme",
        )
        .fetch_all(db.pool())
        .await
        .expect("rows")
    }

    fn with_theme(mut categorised: FeedbackCategorised, id: &str) -> FeedbackCategorised {
        let sentiment = categorised.themes[0].sentiment;
        categorised.themes.push(ThemeMatch {
            id: id.into(),
            score: 0.5,
            sentiment,
            matched_terms: vec![],
        });
        categorised
    }

    /// Feedback of several customers: more rows than one statement takes (on either
    /// backend), two themes,
    /// with and without consent, a replay inside the batch, a second record of one
    /// feedback id with other content (the first one wins), one without themes.
    fn mixed_batch() -> Vec<FeedbackCategorised> {
        let mut batch = Vec::new();
        for i in 0..values::rows_per_statement(closeloop_store::Backend::Postgres, Row::COLUMNS) + 7
        {
            let customer = format!("c{}", i % 13);
            let sentiment = if i % 3 == 0 {
                SentimentLabel::Positive
            } else {
                SentimentLabel::Negative
            };
            let feedback = mention(&customer, i % 2 == 0, sentiment, 1, &format!("text {i}"));
            batch.push(if i % 5 == 0 {
                with_theme(feedback, "packaging")
            } else {
                feedback
            });
        }
        batch.push(batch[3].clone());
        let mut changed = batch[4].clone();
        changed.feedback.text = "edited later".into();
        changed.feedback.customer.consent = !changed.feedback.customer.consent;
        batch.push(changed);
        let mut no_themes = mention("c1", true, SentimentLabel::Negative, 0, "nothing");
        no_themes.themes.clear();
        batch.push(no_themes);
        batch
    }

    #[tokio::test]
    async fn a_batch_stores_what_one_by_one_stores() {
        let pseudonyms = Pseudonyms::development();
        let batch = mixed_batch();
        let expected_rows = batch.iter().map(|f| f.themes.len() as u64).sum::<u64>() - 2;
        let one_by_one = crate::test_databases("a_batch_stores_what_one_by_one_stores").await;
        let together = crate::test_databases("a_batch_stores_what_one_by_one_stores").await;
        for (single, batched) in one_by_one.iter().zip(&together) {
            let mut inserted = 0;
            for categorised in &batch {
                inserted += record(single, &pseudonyms, categorised).await.unwrap();
            }
            assert_eq!(inserted, expected_rows);
            assert_eq!(
                record_all(batched, &pseudonyms, &batch).await.unwrap(),
                expected_rows
            );
            let rows = stored(batched).await;
            assert_eq!(rows, stored(single).await);
            // The first record of a feedback id is the one kept.
            let kept: Vec<&Stored> = rows
                .iter()
                .filter(|row| row.0 == batch[4].feedback.feedback_id.to_string())
                .collect();
            assert_eq!(kept.len(), 1);
            assert_eq!(kept[0].9.as_deref(), Some("text 4"));
        }
    }

    #[tokio::test]
    async fn a_replayed_batch_stores_nothing_twice() {
        let pseudonyms = Pseudonyms::development();
        let batch = mixed_batch();
        for db in crate::test_databases("a_replayed_batch_stores_nothing_twice").await {
            let first = record_all(&db, &pseudonyms, &batch).await.unwrap();
            let rows = stored(&db).await;
            assert_eq!(rows.len() as u64, first);
            assert_eq!(record_all(&db, &pseudonyms, &batch).await.unwrap(), 0);
            // A batch overlapping what is stored adds only what is new.
            let fresh = mention("z", true, SentimentLabel::Negative, 0, "new");
            let overlapping = [batch[0].clone(), fresh, batch[1].clone()];
            assert_eq!(record_all(&db, &pseudonyms, &overlapping).await.unwrap(), 1);
            assert_eq!(stored(&db).await.len(), rows.len() + 1);
            // The per-record path sees the batch's rows as its own.
            assert_eq!(record(&db, &pseudonyms, &batch[2]).await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn erased_customers_records_in_a_batch_are_handled_as_one_by_one() {
        let pseudonyms = Pseudonyms::development();
        let erased_at = Utc::now();
        let before = |customer: &str, source: &str, text: &str| {
            let mut m = mention(customer, true, SentimentLabel::Negative, 1, text);
            m.feedback.source = source.into();
            m.feedback.received_at = erased_at - Duration::seconds(10);
            m
        };
        let mut after = mention("a", true, SentimentLabel::Negative, 0, "a after");
        after.feedback.received_at = erased_at + Duration::seconds(1);
        let batch = vec![
            before("a", "shopdesk", "a before"),
            before("b", "surveyhub", "b via the erased source"),
            after,
            before("b", "shopdesk", "b via another source"),
            before("c", "shopdesk", "c never erased"),
        ];
        let one_by_one = crate::test_databases("erased_customers_records_in_a_batch").await;
        let together = crate::test_databases("erased_customers_records_in_a_batch").await;
        for (single, batched) in one_by_one.iter().zip(&together) {
            for db in [single, batched] {
                let at = erased_at.timestamp_millis();
                erase(db, &pseudonyms.of("a"), "a", "*", at).await.unwrap();
                erase(db, &pseudonyms.of("b"), "b", "surveyhub", at)
                    .await
                    .unwrap();
            }
            for categorised in &batch {
                record(single, &pseudonyms, categorised).await.unwrap();
            }
            assert_eq!(record_all(batched, &pseudonyms, &batch).await.unwrap(), 3);
            let rows = stored(batched).await;
            assert_eq!(rows, stored(single).await);
            let mut excerpts: Vec<&str> = rows.iter().filter_map(|r| r.9.as_deref()).collect();
            excerpts.sort_unstable();
            assert_eq!(
                excerpts,
                ["a after", "b via another source", "c never erased"]
            );
        }
    }
}
