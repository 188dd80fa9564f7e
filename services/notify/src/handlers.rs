//! The three consumers' handlers: project feedback, turn a resolved action into outbox
//! rows, erase a customer. Each is idempotent, as `run_consumer` requires: a replayed
//! record runs into `ON CONFLICT DO NOTHING` or deletes what is already gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use closeloop_bus::{Handler, HandlerError, Incoming};
use closeloop_events::{
    ActionEvent, ActionEventKind, DeliveryChannel, ErasureRequest, FeedbackCategorised, Resolution,
};
use closeloop_store::Database;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::message::{self, Parts};
use crate::metrics::NotifyMetrics;
use crate::outbox::{self, NewDelivery};
use crate::projection::{self, Mention};

/// How long a resolved action waits for its evidence to show up in the projection.
/// feedback.categorised.v1 and actions.v1 are consumed independently, so right after a
/// start (or with a backlog on one topic) an action can overtake the feedback it cites;
/// waiting briefly keeps those customers from being silently left out. Beyond this
/// the evidence is taken to be gone for good (erased, or older than notify's data).
const EVIDENCE_GRACE: Duration = Duration::from_secs(30);

/// What the handlers share: store, metrics, and the worker's doorbell.
#[derive(Clone)]
pub struct Context {
    pub db: Database,
    pub metrics: NotifyMetrics,
    /// Rung after new outbox rows are committed, so they go out now, not at the next poll.
    pub wake: Arc<Notify>,
    pub lookback: chrono::Duration,
}

/// A store error, classified the way the consumer loop needs it.
fn db_error(error: sqlx::Error) -> HandlerError {
    if closeloop_store::is_transient(&error) {
        HandlerError::transient(error)
    } else {
        HandlerError::permanent(error)
    }
}

/// `feedback.categorised.v1` → `notify_mentions`.
pub struct FeedbackHandler {
    pub ctx: Context,
}

impl Handler for FeedbackHandler {
    type Event = FeedbackCategorised;

    async fn handle(&self, incoming: &Incoming<FeedbackCategorised>) -> Result<(), HandlerError> {
        projection::record(&self.ctx.db, &incoming.envelope.data)
            .await
            .map_err(db_error)
    }
}

/// `actions.v1` (kind `resolved`) → one outbox row per consenting customer.
pub struct ActionHandler {
    pub ctx: Context,
    /// When each action was first seen with evidence missing from the projection.
    waiting: Mutex<HashMap<Uuid, Instant>>,
}

impl ActionHandler {
    pub fn new(ctx: Context) -> Self {
        Self {
            ctx,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to keep waiting for missing evidence of `action_id`.
    fn keep_waiting(&self, action_id: Uuid) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let since = *waiting.entry(action_id).or_insert_with(Instant::now);
        since.elapsed() < EVIDENCE_GRACE
    }

    fn done_waiting(&self, action_id: Uuid) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&action_id);
    }
}

impl Handler for ActionHandler {
    type Event = ActionEvent;

    async fn handle(&self, incoming: &Incoming<ActionEvent>) -> Result<(), HandlerError> {
        let action = &incoming.envelope.data;
        // Only a resolution closes the loop; raised / updated / reopened tell nobody.
        if action.kind != ActionEventKind::Resolved {
            return Ok(());
        }
        let Some(resolution) = &action.resolution else {
            return Err(HandlerError::permanent(format!(
                "action {} is resolved but carries no resolution message",
                action.action_id
            )));
        };
        let to_ms = resolution.resolved_at.timestamp_millis();
        let from_ms = to_ms.saturating_sub(self.ctx.lookback.num_milliseconds());
        let recipients = projection::recipients(
            &self.ctx.db,
            &action.theme,
            &action.evidence.feedback_ids,
            from_ms,
            to_ms,
        )
        .await
        .map_err(db_error)?;
        if recipients.missing_evidence > 0 {
            if self.keep_waiting(action.action_id) {
                return Err(HandlerError::transient(format!(
                    "{} evidence feedback of action {} not projected yet",
                    recipients.missing_evidence, action.action_id
                )));
            }
            tracing::warn!(
                action_id = %action.action_id,
                missing = recipients.missing_evidence,
                "evidence feedback unknown to notify; notifying the customers it knows"
            );
        }
        self.done_waiting(action.action_id);

        let now_ms = Utc::now().timestamp_millis();
        let mut deliveries = Vec::new();
        for mention in recipients.latest.values() {
            if mention.consent == 0 {
                // Counted on every replay of the record too; a replay is rare and the
                // alternative (remembering who was skipped) would store more about
                // customers who asked not to be contacted.
                self.ctx
                    .metrics
                    .skipped
                    .with_label_values(&["no_consent"])
                    .inc();
                tracing::info!(
                    action_id = %action.action_id,
                    customer_id = %mention.customer_id,
                    "customer did not consent to be contacted: not notified"
                );
                continue;
            }
            deliveries.push(delivery(action, resolution, mention, now_ms));
        }
        let inserted = outbox::enqueue(&self.ctx.db, &deliveries)
            .await
            .map_err(db_error)?;
        tracing::info!(
            action_id = %action.action_id,
            theme = %action.theme,
            recipients = deliveries.len(),
            new = inserted,
            "resolved action queued for notification"
        );
        if inserted > 0 {
            self.ctx.wake.notify_one();
        }
        Ok(())
    }
}

/// The outbox row for one customer: the message is rendered now, in their language,
/// so what is sent (and retried) is exactly what was decided.
fn delivery(
    action: &ActionEvent,
    resolution: &Resolution,
    mention: &Mention,
    now_ms: i64,
) -> NewDelivery {
    let delivery_id = Uuid::now_v7();
    let language = mention.language.as_str();
    let you_said = mention.excerpt.as_deref().unwrap_or_default();
    let we_did = message::clean(resolution.message_in(language));
    let told_at = chrono::DateTime::from_timestamp_millis(mention.given_at_ms)
        .unwrap_or(resolution.resolved_at);
    let text = message::render(
        language,
        &Parts {
            told_at,
            theme_name: message::theme_name(&action.theme_name, language, &action.theme),
            you_said,
            we_did: &we_did,
        },
    );
    let payload = serde_json::json!({
        "type": "closeloop.you_said_we_did",
        "delivery_id": delivery_id,
        "action_id": action.action_id,
        "theme": action.theme,
        "customer": { "id": mention.customer_id, "reference": mention.reference },
        "language": language,
        "you_said": message::clean(you_said),
        "we_did": we_did,
        "text": text,
    });
    NewDelivery {
        delivery_id: delivery_id.to_string(),
        action_id: action.action_id.to_string(),
        customer_id: mention.customer_id.clone(),
        source: mention.source.clone(),
        channel: DeliveryChannel::Webhook.as_str(),
        language: language.to_owned(),
        payload: payload.to_string(),
        created_at_ms: now_ms,
    }
}

/// `privacy.erasure.v1` → forget the customer.
pub struct ErasureHandler {
    pub ctx: Context,
}

impl Handler for ErasureHandler {
    type Event = ErasureRequest;

    async fn handle(&self, incoming: &Incoming<ErasureRequest>) -> Result<(), HandlerError> {
        let customer_id = &incoming.envelope.data.customer_id;
        let mentions = projection::erase(&self.ctx.db, customer_id)
            .await
            .map_err(db_error)?;
        let cancelled = outbox::erase(&self.ctx.db, customer_id)
            .await
            .map_err(db_error)?;
        tracing::info!(
            %customer_id,
            mentions,
            cancelled_deliveries = cancelled,
            "customer erased"
        );
        Ok(())
    }
}
