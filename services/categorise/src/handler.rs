use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use chrono::Utc;
use closeloop_bus::{BusError, Handler, HandlerError, Incoming, Publisher};
use closeloop_classify::{Classification, Classifier, Input};
use closeloop_events::text::excerpt;
use closeloop_events::{
    Envelope, ErasureRequest, Feedback, FeedbackCategorised, SentimentResult, ThemeMatch,
    ThemeMention,
};
use closeloop_runtime::Pseudonyms;
use closeloop_store::{sqlx, values, Backend, Database};
use futures::future::{try_join, try_join_all};

use crate::metrics::CategoriseMetrics;
use crate::versions::LiveClassifier;

/// Up to this much text a batch is classified right on the async worker (a few tenths of
/// a millisecond at the classifier's ~250k short texts/s); more goes to the blocking pool,
/// so a big batch does not hold up the other tasks of the runtime (in `closeloop up`,
/// every service's).
const INLINE_CLASSIFY_BYTES: usize = 4 * 1024;

/// Classifies one feedback into the categorised event (pure; the handler adds I/O).
pub fn categorise(classifier: &dyn Classifier, feedback: Feedback) -> FeedbackCategorised {
    let result: Classification = classifier.classify(&Input {
        text: &feedback.text,
        language_hint: feedback.customer.locale.as_deref(),
        rating: feedback.rating,
        nps: feedback.nps,
    });
    FeedbackCategorised {
        language: result.language,
        sentiment: SentimentResult {
            label: result.sentiment.label,
            score: result.sentiment.score,
            confidence: result.sentiment.confidence,
        },
        themes: result
            .themes
            .into_iter()
            .map(|hit| ThemeMatch {
                id: hit.id,
                score: hit.score,
                sentiment: hit.sentiment,
                matched_terms: hit.matched_terms,
            })
            .collect(),
        classifier_version: classifier.version(),
        explanation: result.explanation,
        feedback,
    }
}

pub(crate) fn db_error(error: sqlx::Error) -> HandlerError {
    if closeloop_store::is_transient(&error) {
        HandlerError::transient(error)
    } else {
        HandlerError::permanent(format!("database rejected the record: {error}"))
    }
}

/// A feedback categorised and ready to store and publish.
struct Prepared {
    feedback_id: String,
    content_hash: String,
    /// The customer's pseudonym: feedback received before its customer was erased is
    /// stored under it.
    pseudonym: String,
    /// The theme ids as a JSON array, as stored.
    theme_ids: String,
    categorised: Envelope<FeedbackCategorised>,
    mentions: Vec<Envelope<ThemeMention>>,
}

impl Prepared {
    fn new(classifier: &dyn Classifier, pseudonyms: &Pseudonyms, feedback: Feedback) -> Self {
        let content_hash = feedback.content_hash();
        let pseudonym = pseudonyms.of(&feedback.customer.id);
        let categorised = categorise(classifier, feedback);
        let theme_ids: Vec<&str> = categorised.themes.iter().map(|t| t.id.as_str()).collect();
        let theme_ids = serde_json::to_string(&theme_ids).unwrap_or_default();
        let mentions = mentions_of(&categorised);
        Self {
            feedback_id: categorised.feedback.feedback_id.to_string(),
            content_hash,
            pseudonym,
            theme_ids,
            categorised: Envelope::new(categorised),
            mentions,
        }
    }

    /// Binds this feedback's row, in the order of [`insert_sql`].
    fn bind<'q>(&'q self, insert: Insert<'q>, categorised_at_ms: i64) -> Insert<'q> {
        let categorised = &self.categorised.data;
        let feedback = &categorised.feedback;
        insert
            .bind(self.feedback_id.as_str())
            .bind(feedback.source.as_str())
            .bind(self.pseudonym.as_str())
            .bind(feedback.received_at.timestamp_millis())
            .bind(feedback.customer.id.as_str())
            .bind(feedback.channel.as_str())
            .bind(feedback.touchpoint.map(|t| t.as_str()))
            .bind(categorised.language.as_str())
            .bind(categorised.sentiment.label.as_str())
            .bind(f64::from(categorised.sentiment.score))
            .bind(f64::from(categorised.sentiment.confidence))
            .bind(self.theme_ids.as_str())
            .bind(feedback.rating.map(i64::from))
            .bind(feedback.nps.map(i64::from))
            .bind(categorised.classifier_version.as_str())
            .bind(feedback.given_at.timestamp_millis())
            .bind(categorised_at_ms)
            .bind(self.content_hash.as_str())
    }
}

/// One `feedback.themes.v1` record per theme of `categorised`.
pub(crate) fn mentions_of(categorised: &FeedbackCategorised) -> Vec<Envelope<ThemeMention>> {
    let feedback = &categorised.feedback;
    categorised
        .themes
        .iter()
        .map(|theme| {
            Envelope::new(ThemeMention {
                feedback_id: feedback.feedback_id,
                theme: theme.id.clone(),
                customer_id: feedback.customer.id.clone(),
                source: feedback.source.clone(),
                channel: feedback.channel,
                touchpoint: feedback.touchpoint,
                language: categorised.language,
                sentiment: theme.sentiment,
                score: categorised.sentiment.score,
                rating: feedback.rating,
                nps: feedback.nps,
                excerpt: excerpt(&feedback.text, 160),
                given_at: feedback.given_at,
                received_at: Some(feedback.received_at),
            })
        })
        .collect()
}

type Insert<'q> = sqlx::query::QueryScalar<'q, sqlx::Any, String, sqlx::any::AnyArguments<'q>>;

const BINDS_PER_ROW: usize = 18;

/// An INSERT of `rows` feedback rows that returns the ids it stored. Feedback received
/// before its customer was erased (in its source's scope) is stored under the pseudonym.
/// Each parameter appears once, in the order of [`Prepared::bind`], as
/// [`values::placeholders`] asks (`WHERE 1 = 1`: SQLite cannot tell `ON CONFLICT` from a
/// join's `ON` after a bare `SELECT … FROM`).
fn insert_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO categorise_feedback (feedback_id, source, customer_id, channel, \
         touchpoint, language, sentiment, score, confidence, themes, rating, nps, \
         classifier_version, given_at_ms, categorised_at_ms, content_hash) \
         SELECT w.column1, w.column2, CASE WHEN w.erased THEN w.column3 ELSE w.column5 END, \
                w.column6, w.column7, w.column8, w.column9, w.column10, w.column11, \
                w.column12, w.column13, w.column14, w.column15, w.column16, w.column17, \
                w.column18 \
         FROM (SELECT v.*, EXISTS (SELECT 1 FROM categorise_erasures e \
                                   WHERE e.customer_id = v.column3 \
                                     AND e.source IN (v.column2, '*') \
                                     AND e.erased_at_ms >= v.column4) AS erased \
               FROM (VALUES {}) AS v) AS w \
         WHERE 1 = 1 ON CONFLICT DO NOTHING RETURNING feedback_id",
        values::placeholders(backend, rows, BINDS_PER_ROW)
    )
}

/// What storing a feedback found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Stored just now: published and counted.
    New,
    /// Stored before with the same content: published again (the first attempt may have
    /// crashed between the insert and the publish; downstream dedupes by feedback id).
    Again,
    /// Stored before with other content: the first body stays the feedback and nothing of
    /// this one goes downstream, so trends and notify never hold two bodies for one id.
    Conflict,
}

/// Stores a batch of feedback in one transaction and says, per record, what it found;
/// the same as storing the records one after another would.
async fn store(
    db: &Database,
    batch: &[Prepared],
    rows_per_statement: usize,
) -> Result<Vec<Stored>, sqlx::Error> {
    // Only the first of several records with one id can be new; the others compare with
    // what is stored, as they would coming after it.
    let mut seen = HashSet::with_capacity(batch.len());
    let firsts: Vec<&Prepared> = batch
        .iter()
        .filter(|prepared| seen.insert(prepared.feedback_id.as_str()))
        .collect();
    let categorised_at_ms = Utc::now().timestamp_millis();
    let mut inserted: HashSet<String> = HashSet::with_capacity(firsts.len());
    let mut transaction = db.pool().begin().await?;
    for rows in firsts.chunks(rows_per_statement.max(1)) {
        let sql = insert_sql(db.backend(), rows.len());
        let insert = rows.iter().fold(sqlx::query_scalar(&sql), |insert, row| {
            row.bind(insert, categorised_at_ms)
        });
        inserted.extend(insert.fetch_all(&mut *transaction).await?);
    }
    transaction.commit().await?;

    // `remove`: of several records with one id, only the first is new.
    let new: Vec<bool> = batch
        .iter()
        .map(|prepared| inserted.remove(&prepared.feedback_id))
        .collect();
    let mut seen = HashSet::new();
    let known: Vec<&str> = batch
        .iter()
        .zip(&new)
        .filter(|(prepared, new)| !**new && seen.insert(prepared.feedback_id.as_str()))
        .map(|(prepared, _)| prepared.feedback_id.as_str())
        .collect();
    // Looked up after the commit: a stored row's content never changes, and the
    // transaction (which an erasure's update cannot see into) stays as short as it can.
    let mut stored_hash: HashMap<String, Option<String>> = HashMap::with_capacity(known.len());
    for ids in known.chunks(rows_per_statement.max(1)) {
        let sql = format!(
            "SELECT feedback_id, content_hash FROM categorise_feedback \
             WHERE feedback_id IN {}",
            values::placeholders(db.backend(), 1, ids.len())
        );
        let select = ids
            .iter()
            .fold(sqlx::query_as(&sql), |select, id| select.bind(*id));
        stored_hash.extend(select.fetch_all(db.pool()).await?);
    }
    Ok(batch
        .iter()
        .zip(new)
        .map(|(prepared, new)| {
            let stored = stored_hash
                .get(&prepared.feedback_id)
                .and_then(Option::as_deref);
            if new {
                Stored::New
            } else if stored == Some(prepared.content_hash.as_str()) {
                Stored::Again
            } else {
                Stored::Conflict
            }
        })
        .collect())
}

pub struct CategoriseHandler {
    pub classifier: LiveClassifier,
    pub db: Database,
    pub pseudonyms: Pseudonyms,
    pub publisher: Publisher,
    pub metrics: CategoriseMetrics,
    /// Feedback a failed batch stored but could not publish: its retry finds it stored
    /// already and must still count it.
    pub uncounted: Mutex<HashSet<String>>,
}

impl Handler for CategoriseHandler {
    type Event = Feedback;
    const BATCHES: bool = true;

    /// A batch of one: the same path as a batch, which is what it falls back to.
    async fn handle(&self, incoming: &Incoming<Feedback>) -> Result<(), HandlerError> {
        self.categorise_batch(std::slice::from_ref(incoming)).await
    }

    async fn handle_batch(&self, batch: &[Incoming<Feedback>]) -> Result<(), HandlerError> {
        self.categorise_batch(batch).await
    }
}

impl CategoriseHandler {
    /// Classifies the batch, stores it in one transaction, publishes what it causes
    /// without waiting for each record in turn, and only then counts it.
    async fn categorise_batch(&self, batch: &[Incoming<Feedback>]) -> Result<(), HandlerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let prepared = self.prepare(batch).await?;
        let stored = store(
            &self.db,
            &prepared,
            values::rows_per_statement(self.db.backend(), BINDS_PER_ROW),
        )
        .await
        .map_err(db_error)?;
        let published = self.publish(batch, &prepared, &stored).await;
        let mut uncounted = self
            .uncounted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = published {
            uncounted.extend(
                prepared
                    .iter()
                    .zip(&stored)
                    .filter(|(_, stored)| **stored == Stored::New)
                    .map(|(prepared, _)| prepared.feedback_id.clone()),
            );
            return Err(HandlerError::transient(error));
        }
        // Counted once the whole batch went out: a retried batch counts nothing twice,
        // and nothing it stored before its publish failed once.
        for ((incoming, prepared), stored) in batch.iter().zip(&prepared).zip(&stored) {
            let stored = match stored {
                Stored::Again if uncounted.remove(&prepared.feedback_id) => Stored::New,
                stored => *stored,
            };
            self.account(incoming, prepared, stored);
        }
        Ok(())
    }

    /// Classifies the batch (pure CPU), off the async workers when it is large.
    async fn prepare(&self, batch: &[Incoming<Feedback>]) -> Result<Vec<Prepared>, HandlerError> {
        let text: usize = batch.iter().map(|i| i.envelope.data.text.len()).sum();
        let feedback: Vec<Feedback> = batch.iter().map(|i| i.envelope.data.clone()).collect();
        // One version for the whole batch, even when it switches meanwhile.
        let classifier = self.classifier.current();
        let pseudonyms = self.pseudonyms.clone();
        let prepare = move || {
            feedback
                .into_iter()
                .map(|feedback| Prepared::new(classifier.as_ref(), &pseudonyms, feedback))
                .collect()
        };
        if text <= INLINE_CLASSIFY_BYTES {
            return Ok(prepare());
        }
        match tokio::task::spawn_blocking(prepare).await {
            Ok(prepared) => Ok(prepared),
            // A panicking classifier panics here, as it would on the worker.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down.
            Err(error) => Err(HandlerError::transient(error)),
        }
    }

    /// Publishes the categorised event and theme mentions of every record not in
    /// conflict: all produced at once, then awaited together.
    async fn publish(
        &self,
        batch: &[Incoming<Feedback>],
        prepared: &[Prepared],
        stored: &[Stored],
    ) -> Result<(), BusError> {
        let outgoing = || {
            batch
                .iter()
                .zip(prepared)
                .zip(stored)
                .filter(|(_, stored)| **stored != Stored::Conflict)
                .map(|((incoming, prepared), _)| (incoming.traceparent.as_deref(), prepared))
        };
        let categorised = try_join_all(outgoing().map(|(traceparent, prepared)| {
            self.publisher.publish(&prepared.categorised, traceparent)
        }));
        let mentions = try_join_all(outgoing().flat_map(|(traceparent, prepared)| {
            prepared
                .mentions
                .iter()
                .map(move |mention| self.publisher.publish(mention, traceparent))
        }));
        try_join(categorised, mentions).await?;
        Ok(())
    }

    /// Metrics and the log line of one record of a batch that is stored and published.
    fn account(&self, incoming: &Incoming<Feedback>, prepared: &Prepared, stored: Stored) {
        let categorised = &prepared.categorised.data;
        match stored {
            Stored::Conflict => {
                // Ingest refuses another body under a known id; a producer that bypasses
                // ingest may not.
                self.metrics.id_conflicts.inc();
                tracing::warn!(
                    feedback_id = %prepared.feedback_id,
                    "feedback id stored before with other content; not published"
                );
                return;
            }
            Stored::Again => {}
            Stored::New => {
                self.metrics
                    .categorised
                    .with_label_values(&[
                        categorised.language.as_str(),
                        categorised.sentiment.label.as_str(),
                    ])
                    .inc();
                if categorised.themes.is_empty() {
                    self.metrics
                        .unmatched
                        .with_label_values(&[categorised.language.as_str()])
                        .inc();
                }
                for theme in &categorised.themes {
                    self.metrics
                        .theme_mentions
                        .with_label_values(&[&theme.id, theme.sentiment.as_str()])
                        .inc();
                }
                let latency = Utc::now() - categorised.feedback.received_at;
                self.metrics
                    .latency
                    .with_label_values(&["categorised"])
                    .observe(latency.num_microseconds().unwrap_or(0).max(0) as f64 / 1e6);
            }
        }
        let traceparent = incoming.traceparent.as_deref();
        tracing::debug!(
            feedback_id = %prepared.feedback_id,
            sentiment = categorised.sentiment.label.as_str(),
            themes = categorised.themes.len(),
            trace_id = traceparent.map(closeloop_bus::trace_id).unwrap_or_default(),
            "categorised"
        );
    }
}

/// Forgets which feedback a customer gave (GDPR erasure).
///
/// The rows stay, under the customer's pseudonym instead of their id: they hold no text
/// or contact data, and keeping them keeps "every accepted feedback categorised exactly
/// once" checkable and a replayed feedback a no-op (deleting them would let a replay of
/// the raw topic insert the feedback again).
pub struct ErasureHandler {
    pub db: Database,
    pub pseudonyms: Pseudonyms,
}

impl Handler for ErasureHandler {
    type Event = ErasureRequest;

    async fn handle(&self, incoming: &Incoming<ErasureRequest>) -> Result<(), HandlerError> {
        let request = &incoming.envelope.data;
        let pseudonym = self.pseudonyms.of(&request.customer_id);
        // Only the feedback that came through the erasure's scope (`*`: every source).
        let scope = request.scope_key();
        // The ledger first, committed on its own: a feedback insert that starts after it
        // sees it and stores the pseudonym; one that was already under way is caught by
        // the update below.
        sqlx::query(
            "INSERT INTO categorise_erasures (customer_id, source, erased_at_ms) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (customer_id, source) DO UPDATE SET erased_at_ms = CASE \
             WHEN excluded.erased_at_ms > categorise_erasures.erased_at_ms \
             THEN excluded.erased_at_ms ELSE categorise_erasures.erased_at_ms END",
        )
        .bind(&pseudonym)
        .bind(scope)
        .bind(request.requested_at.timestamp_millis())
        .execute(self.db.pool())
        .await
        .map_err(db_error)?;
        let erased = sqlx::query(
            "UPDATE categorise_feedback SET customer_id = $1 \
             WHERE customer_id = $2 AND ($3 = '*' OR source = $3)",
        )
        .bind(&pseudonym)
        .bind(&request.customer_id)
        .bind(scope)
        .execute(self.db.pool())
        .await
        .map_err(db_error)?
        .rows_affected();
        closeloop_runtime::erasure::scrub_after_erasure(&self.db).await?;
        // The pseudonym, never the id: the log must not name whom it forgot.
        tracing::info!(
            erasure_id = %incoming.envelope.event_id,
            %pseudonym,
            scope,
            erased,
            "erasure request applied"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_classify::LexiconClassifier;
    use closeloop_events::{Channel, CustomerRef, Language, SentimentLabel};
    use uuid::Uuid;

    fn feedback(text: &str, locale: &str) -> Feedback {
        Feedback {
            feedback_id: Uuid::now_v7(),
            source: "shopdesk".into(),
            channel: Channel::Review,
            touchpoint: None,
            customer: CustomerRef {
                id: "c".into(),
                locale: Some(locale.into()),
                consent: true,
                email: None,
                reference: None,
            },
            text: text.into(),
            rating: None,
            nps: None,
            given_at: Utc::now(),
            received_at: Utc::now(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn categorises_german_delivery_complaint() {
        let classifier = LexiconClassifier::default();
        let result = categorise(
            &classifier,
            feedback(
                "Die Lieferung kam schon wieder viel zu spät, sehr ärgerlich!",
                "de-DE",
            ),
        );
        assert_eq!(result.language, Language::De);
        assert_eq!(result.sentiment.label, SentimentLabel::Negative);
        assert!(
            result.themes.iter().any(|t| t.id == "delivery_time"),
            "{:?}",
            result.themes
        );
        assert!(result.classifier_version.starts_with("lexicon"));
    }

    /// categorise's store, fresh: PostgreSQL when `DATABASE_URL` says so, else SQLite.
    async fn migrated_store() -> Database {
        let args = closeloop_store::testing::database_args("categorise");
        let db = Database::connect(&args.config("categorise"))
            .await
            .expect("a database");
        db.migrate(sqlx::migrate!("./migrations"))
            .await
            .expect("categorise's migrations");
        db
    }

    #[tokio::test]
    async fn a_batch_whose_publish_failed_is_counted_when_its_retry_goes_out() {
        use closeloop_bus::{BusMetrics, EmbeddedBroker, Fault, PublisherConfig, TopicSpec};

        let broker = EmbeddedBroker::start(1, &TopicSpec::all(1)).expect("embedded broker");
        // A broker that is down fails the publish in a second, not in the default minutes.
        let publisher = Publisher::new(
            &PublisherConfig {
                delivery_timeout: std::time::Duration::from_secs(1),
                ..PublisherConfig::new(broker.bootstrap_servers())
            },
            BusMetrics::unregistered(),
        )
        .expect("publisher");
        let handler = CategoriseHandler {
            classifier: crate::versions::LiveClassifier::new(
                closeloop_classify::Taxonomy::builtin(),
                prometheus::IntGaugeVec::new(prometheus::Opts::new("v", "v"), &["version"])
                    .expect("gauge"),
            ),
            db: migrated_store().await,
            pseudonyms: Pseudonyms::development(),
            publisher,
            metrics: CategoriseMetrics::register(&prometheus::Registry::new()).expect("metrics"),
            uncounted: Default::default(),
        };
        let complaint = Incoming {
            envelope: Envelope::new(feedback("The parcel came a week late.", "en-GB")),
            topic: closeloop_events::topics::FEEDBACK_RAW.to_owned(),
            partition: 0,
            offset: 0,
            traceparent: None,
        };
        let batch = std::slice::from_ref(&complaint);
        let counted = || {
            handler
                .metrics
                .categorised
                .with_label_values(&["en", "negative"])
                .get()
        };
        broker.inject(Fault::BrokerDown(1)).expect("broker down");
        assert!(
            handler.handle_batch(batch).await.is_err(),
            "stored, but not published"
        );
        assert_eq!(counted(), 0, "nothing counted before it went out");
        broker.inject(Fault::BrokerUp(1)).expect("broker up");
        // The producer reconnects after a backoff of its own, which can outlast one
        // delivery timeout: retried as the consumer loop retries, until it goes out.
        let mut attempts = 0;
        while let Err(error) = handler.handle_batch(batch).await {
            attempts += 1;
            assert!(attempts < 30, "the retry never went out: {error}");
            assert_eq!(counted(), 0, "nothing counted while it fails");
        }
        assert_eq!(counted(), 1);
        handler.handle_batch(batch).await.expect("a replay");
        assert_eq!(counted(), 1, "a replay counts nothing");
    }

    #[tokio::test]
    async fn a_batch_stored_in_small_statements_finds_what_one_by_one_would() {
        let db = migrated_store().await;
        let classifier = LexiconClassifier::default();
        let pseudonyms = Pseudonyms::development();
        let prepare =
            |feedback: &Feedback| Prepared::new(&classifier, &pseudonyms, feedback.clone());
        let other_body = |feedback: &Feedback| {
            let mut other = feedback.clone();
            other.text = "Something else entirely.".into();
            other
        };
        let known = feedback("The delivery was late again.", "en-GB");
        let stored = store(&db, &[prepare(&known)], 2).await.expect("stored");
        assert_eq!(stored, [Stored::New]);
        // Erased (every source) after this feedback was received: stored under the
        // pseudonym.
        let mut erased = feedback("Tolles Produkt, gerne wieder.", "de-DE");
        erased.customer.id = "erased-customer".into();
        sqlx::query(
            "INSERT INTO categorise_erasures (customer_id, source, erased_at_ms) \
             VALUES ($1, '*', $2)",
        )
        .bind(pseudonyms.of("erased-customer"))
        .bind(erased.received_at.timestamp_millis() + 1)
        .execute(db.pool())
        .await
        .expect("an erasure");
        let (a, b, c) = (
            feedback("Great support, thank you!", "en-GB"),
            feedback("The app crashes at checkout.", "en-US"),
            feedback("Die Rechnung war falsch.", "de-DE"),
        );
        // Two rows per statement: a repeated id falls into another statement than its
        // first occurrence.
        let batch = [
            prepare(&a),
            prepare(&known),
            prepare(&b),
            prepare(&a),
            prepare(&other_body(&known)),
            prepare(&other_body(&b)),
            prepare(&erased),
            prepare(&c),
        ];
        let stored = store(&db, &batch, 2).await.expect("stored");
        use Stored::{Again, Conflict, New};
        assert_eq!(
            stored,
            [New, Again, New, Again, Conflict, Conflict, New, New]
        );

        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT feedback_id, customer_id, content_hash FROM categorise_feedback",
        )
        .fetch_all(db.pool())
        .await
        .expect("the rows");
        assert_eq!(rows.len(), 5, "{rows:?}");
        for feedback in [&known, &a, &b, &erased, &c] {
            let id = feedback.feedback_id.to_string();
            let (_, customer, hash) = rows
                .iter()
                .find(|(stored, _, _)| *stored == id)
                .unwrap_or_else(|| panic!("{id} stored"));
            assert_eq!(hash.as_deref(), Some(feedback.content_hash().as_str()));
            let expected = if feedback.customer.id == "erased-customer" {
                pseudonyms.of("erased-customer")
            } else {
                feedback.customer.id.clone()
            };
            assert_eq!(*customer, expected);
        }
        db.close().await;
    }
}
