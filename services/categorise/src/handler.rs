use std::sync::Arc;

use chrono::Utc;
use closeloop_bus::{Handler, HandlerError, Incoming, Publisher};
use closeloop_classify::{Classification, Classifier, Input};
use closeloop_events::text::excerpt;
use closeloop_events::{
    Envelope, ErasureRequest, Feedback, FeedbackCategorised, SentimentResult, ThemeMatch,
    ThemeMention,
};
use closeloop_runtime::Pseudonyms;
use closeloop_store::{sqlx, Database};
use futures::future::try_join_all;

use crate::metrics::CategoriseMetrics;

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

fn db_error(error: sqlx::Error) -> HandlerError {
    if closeloop_store::is_transient(&error) {
        HandlerError::transient(error)
    } else {
        HandlerError::permanent(format!("database rejected the record: {error}"))
    }
}

pub struct CategoriseHandler {
    pub classifier: Arc<dyn Classifier>,
    pub db: Database,
    pub pseudonyms: Pseudonyms,
    pub publisher: Publisher,
    pub metrics: CategoriseMetrics,
}

impl Handler for CategoriseHandler {
    type Event = Feedback;

    async fn handle(&self, incoming: &Incoming<Feedback>) -> Result<(), HandlerError> {
        let categorised = categorise(self.classifier.as_ref(), incoming.envelope.data.clone());
        let feedback = &categorised.feedback;
        let theme_ids: Vec<&str> = categorised.themes.iter().map(|t| t.id.as_str()).collect();
        let content_hash = feedback.content_hash();
        let inserted = sqlx::query(
            "INSERT INTO categorise_feedback (feedback_id, source, customer_id, channel, touchpoint, \
             language, sentiment, score, confidence, themes, rating, nps, classifier_version, \
             given_at_ms, categorised_at_ms, content_hash) \
             VALUES ($1, $2, \
                     COALESCE((SELECT customer_id FROM categorise_erasures \
                               WHERE customer_id = $16 AND source IN ($2, '*') \
                                 AND erased_at_ms >= $17 LIMIT 1), $3), \
                     $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $18) \
             ON CONFLICT DO NOTHING",
        )
        .bind(feedback.feedback_id.to_string())
        .bind(&feedback.source)
        .bind(&feedback.customer.id)
        .bind(feedback.channel.as_str())
        .bind(feedback.touchpoint.map(|t| t.as_str()))
        .bind(categorised.language.as_str())
        .bind(categorised.sentiment.label.as_str())
        .bind(f64::from(categorised.sentiment.score))
        .bind(f64::from(categorised.sentiment.confidence))
        .bind(serde_json::to_string(&theme_ids).unwrap_or_default())
        .bind(feedback.rating.map(i64::from))
        .bind(feedback.nps.map(i64::from))
        .bind(&categorised.classifier_version)
        .bind(feedback.given_at.timestamp_millis())
        .bind(Utc::now().timestamp_millis())
        // Feedback received before its customer was erased is stored under the pseudonym.
        .bind(self.pseudonyms.of(&feedback.customer.id))
        .bind(feedback.received_at.timestamp_millis())
        .bind(&content_hash)
        .execute(self.db.pool())
        .await
        .map_err(db_error)?
        .rows_affected();
        let first_time = inserted == 1;
        if !first_time && !self.stored_as(feedback.feedback_id, &content_hash).await? {
            // Another body under a known id (ingest refuses it; a producer that bypasses
            // ingest may not): the first one stays the feedback, nothing of this one goes
            // downstream, so trends and notify never hold two bodies for one id.
            self.metrics.id_conflicts.inc();
            tracing::warn!(
                feedback_id = %feedback.feedback_id,
                "feedback id stored before with other content; not published"
            );
            return Ok(());
        }

        // Published even on a replay of the same feedback: the first attempt may have
        // crashed between the insert and the publish. Downstream dedupes by feedback id.
        let traceparent = incoming.traceparent.as_deref();
        let mentions: Vec<Envelope<ThemeMention>> = categorised
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
                })
            })
            .collect();
        let envelope = Envelope::new(categorised);
        let categorised = &envelope.data;
        let published = async {
            self.publisher.publish(&envelope, traceparent).await?;
            try_join_all(
                mentions
                    .iter()
                    .map(|mention| self.publisher.publish(mention, traceparent)),
            )
            .await
        };
        published.await.map_err(HandlerError::transient)?;

        if first_time {
            self.metrics
                .categorised
                .with_label_values(&[
                    categorised.language.as_str(),
                    categorised.sentiment.label.as_str(),
                ])
                .inc();
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
        tracing::debug!(
            feedback_id = %categorised.feedback.feedback_id,
            sentiment = categorised.sentiment.label.as_str(),
            themes = categorised.themes.len(),
            trace_id = traceparent.map(closeloop_bus::trace_id).unwrap_or_default(),
            "categorised"
        );
        Ok(())
    }
}

impl CategoriseHandler {
    /// Whether the feedback stored under `feedback_id` has this content hash.
    async fn stored_as(
        &self,
        feedback_id: uuid::Uuid,
        content_hash: &str,
    ) -> Result<bool, HandlerError> {
        let stored: Option<Option<String>> = sqlx::query_scalar(
            "SELECT content_hash FROM categorise_feedback WHERE feedback_id = $1",
        )
        .bind(feedback_id.to_string())
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error)?;
        Ok(stored.flatten().as_deref() == Some(content_hash))
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
}
