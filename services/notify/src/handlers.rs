//! The three consumers' handlers: project feedback, turn a resolved action into outbox
//! rows, erase a customer. Each is idempotent, as `run_consumer` requires: a replayed
//! record runs into `ON CONFLICT DO NOTHING` or deletes what is already gone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use closeloop_bus::{Handler, HandlerError, Incoming, Publisher};
use closeloop_events::{
    ActionEvent, ActionEventKind, CustomerPreferences, DeliveryChannel, DeliveryOutcome,
    ErasureRequest, FeedbackCategorised, NotificationOutcome, Resolution,
};
use closeloop_runtime::Pseudonyms;
use closeloop_store::Database;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::email::{self, EmailPayload};
use crate::frequency::{Cap, Held};
use crate::message;
use crate::metrics::NotifyMetrics;
use crate::ops_alert::{self, OpsAlerts};
use crate::outbox::{self, Cancelled, NewDelivery, Skip};
use crate::preferences::{self, Preferences, UNSUBSCRIBED};
use crate::projection::{self, Mention};
use crate::template::{Parts, Rendered, Templates};
use crate::unsubscribe::Links;
use crate::worker::{channel_of, publish_outcome};

/// How long a resolved action waits for its evidence to show up in the projection.
/// feedback.categorised.v1 and actions.v1 are consumed independently, so right after a
/// start (or with a backlog on one topic) an action can overtake the feedback it cites;
/// waiting briefly keeps those customers from being silently left out. Beyond this
/// the evidence is taken to be gone for good (erased, or older than notify's data).
const EVIDENCE_GRACE: Duration = Duration::from_secs(30);

/// Skip reasons, as stored, counted and published.
pub const NO_CONSENT: &str = "no_consent";
pub const NO_ROUTE: &str = "no_route";
pub const ERASED: &str = "erased";

/// Which channel to prefer when a customer can be reached on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Prefer {
    /// E-mail when the customer gave an address and SMTP is configured, else webhook.
    Email,
    /// The source's webhook when it has one, else e-mail.
    Webhook,
}

/// How customers can be reached: which sources have a webhook, whether SMTP is set up.
#[derive(Debug, Clone)]
pub struct Routing {
    pub webhook_sources: HashSet<String>,
    pub email: bool,
    pub prefer: Prefer,
}

impl Routing {
    /// The channel for `mention`'s customer (with the address for e-mail), among those
    /// their preferences allow, or `None` when there is no way to reach them.
    pub fn route(
        &self,
        mention: &Mention,
        preferences: Option<&Preferences>,
    ) -> Option<(DeliveryChannel, Option<String>)> {
        let allows = |channel| preferences.is_none_or(|p| p.allows(channel));
        let email = (self.email && allows(DeliveryChannel::Email))
            .then_some(mention.email.as_deref())
            .flatten()
            .and_then(email::parse_address)
            .map(|address| (DeliveryChannel::Email, Some(address.to_string())));
        let webhook = (allows(DeliveryChannel::Webhook)
            && self.webhook_sources.contains(&mention.source))
        .then_some((DeliveryChannel::Webhook, None));
        match self.prefer {
            Prefer::Email => email.or(webhook),
            Prefer::Webhook => webhook.or(email),
        }
    }
}

/// What the handlers share: store, metrics, publisher, how to word and route
/// messages, and the worker's doorbell.
#[derive(Clone)]
pub struct Context {
    pub db: Database,
    pub metrics: NotifyMetrics,
    /// For `notifications.v1` records of customers who are skipped.
    pub publisher: Publisher,
    pub templates: Arc<Templates>,
    pub routing: Arc<Routing>,
    /// Rung after new outbox rows are committed, so they go out now, not at the next poll.
    pub wake: Arc<Notify>,
    pub lookback: chrono::Duration,
    /// Erased customers' pseudonyms.
    pub pseudonyms: Pseudonyms,
    /// The frequency cap, unless it is off.
    pub cap: Option<Cap>,
    /// Makes the unsubscribe link every message carries.
    pub links: Arc<Links>,
    /// Ops alert routes and settings, `None` when none are configured.
    pub ops: Option<Arc<OpsAlerts>>,
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

impl FeedbackHandler {
    /// One record or a whole batch: one transaction either way, so the per-record
    /// fallback and the batch path write exactly the same rows.
    async fn project(&self, records: &[Incoming<FeedbackCategorised>]) -> Result<(), HandlerError> {
        let batch = records.iter().map(|incoming| &incoming.envelope.data);
        projection::record_all(&self.ctx.db, &self.ctx.pseudonyms, batch)
            .await
            .map(|_| ())
            .map_err(db_error)
    }
}

impl Handler for FeedbackHandler {
    type Event = FeedbackCategorised;
    const BATCHES: bool = true;

    async fn handle(&self, incoming: &Incoming<FeedbackCategorised>) -> Result<(), HandlerError> {
        self.project(std::slice::from_ref(incoming)).await
    }

    async fn handle_batch(
        &self,
        batch: &[Incoming<FeedbackCategorised>],
    ) -> Result<(), HandlerError> {
        self.project(batch).await
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
        // Only a resolution closes the loop; every other kind (raised, updated,
        // reopened, and any added later) tells no customer, but may alert ops.
        match action.kind {
            ActionEventKind::Resolved => {}
            _ => return self.alert_ops(incoming).await,
        }
        let Some(resolution) = &action.resolution else {
            return Err(HandlerError::permanent(format!(
                "action {} is resolved but carries no resolution message",
                action.action_id
            )));
        };
        let to_ms = resolution.resolved_at.timestamp_millis();
        let from_ms = to_ms.saturating_sub(self.ctx.lookback.num_milliseconds());
        // Related themes joined the action as the same problem: their complainers too.
        let related = &action.evidence.related;
        let themes: Vec<&str> = std::iter::once(action.theme.as_str())
            .chain(related.iter().map(|r| r.theme.as_str()))
            .collect();
        let evidence: Vec<Uuid> = action
            .evidence
            .feedback_ids
            .iter()
            .chain(related.iter().flat_map(|r| &r.feedback_ids))
            .copied()
            .collect();
        let recipients = projection::recipients(&self.ctx.db, &themes, &evidence, from_ms, to_ms)
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

        let preferences =
            preferences::of_customers(&self.ctx.db, recipients.latest.keys().map(String::as_str))
                .await
                .map_err(db_error)?;
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        let action_id = action.action_id.to_string();
        let mut deliveries = Vec::new();
        let mut skips = Vec::new();
        for mention in recipients.latest.values() {
            let skip = |reason: &str| Skip {
                skip_id: Uuid::now_v7().to_string(),
                action_id: action_id.clone(),
                customer_id: mention.customer_id.clone(),
                reason: reason.to_owned(),
                created_at_ms: now_ms,
                source: Some(mention.source.clone()),
            };
            let preferences = preferences.get(&mention.customer_id);
            if preferences.is_some_and(|p| p.unsubscribed) {
                skips.push(skip(UNSUBSCRIBED));
                continue;
            }
            // The newest consent: the preferences hold it when there are any.
            let consent = preferences.map_or(mention.consent != 0, |p| p.consent);
            if !consent {
                skips.push(skip(NO_CONSENT));
                continue;
            }
            match self.ctx.routing.route(mention, preferences) {
                Some((channel, address)) => deliveries.push(delivery(
                    &self.ctx,
                    action,
                    resolution,
                    mention,
                    preferences,
                    (channel, address),
                    now,
                )),
                None => skips.push(skip(NO_ROUTE)),
            }
        }
        let enqueued = outbox::enqueue(&self.ctx.db, &deliveries, &skips, self.ctx.cap.as_ref())
            .await
            .map_err(db_error)?;
        tracing::info!(
            action_id = %action.action_id,
            theme = %action.theme,
            recipients = deliveries.len(),
            queued = enqueued.queued,
            held = enqueued.held,
            skipped = skips.len(),
            "resolved action queued for notification"
        );
        self.ctx.metrics.held.inc_by(enqueued.held);
        if enqueued.queued > 0 {
            self.ctx.wake.notify_one();
        }
        // Only skips new in this run are counted and published, so a replay of the
        // action counts nobody twice.
        for skip in enqueued.new_skips {
            self.ctx
                .metrics
                .skipped
                .with_label_values(&[skip.reason.as_str()])
                .inc();
            tracing::info!(
                action_id = %action.action_id,
                customer_id = ?skip.customer_id,
                reason = %skip.reason,
                "customer not notified"
            );
            let language = recipients
                .latest
                .get(&skip.customer_id)
                .map(|mention| mention.language.clone())
                .unwrap_or_default();
            let record = NotificationOutcome {
                delivery_id: Uuid::parse_str(&skip.skip_id).unwrap_or_default(),
                action_id: action.action_id,
                customer_id: skip.customer_id,
                channel: DeliveryChannel::Webhook,
                outcome: DeliveryOutcome::Skipped,
                attempt: 0,
                language,
                status_code: None,
                error: Some(skip.reason),
            };
            publish_outcome(&self.ctx.publisher, &self.ctx.metrics, record).await;
        }
        Ok(())
    }
}

impl ActionHandler {
    /// Raised, reopened and escalating actions → ops alerts (see [`ops_alert`]).
    async fn alert_ops(&self, incoming: &Incoming<ActionEvent>) -> Result<(), HandlerError> {
        let Some(ops) = &self.ctx.ops else {
            return Ok(());
        };
        let action = &incoming.envelope.data;
        let decided = ops_alert::decide(
            &self.ctx.db,
            ops,
            action,
            incoming.envelope.occurred_at.timestamp_millis(),
            Utc::now().timestamp_millis(),
        )
        .await
        .map_err(db_error)?;
        let counter = |target: ops_alert::Target, result: &str| {
            self.ctx
                .metrics
                .ops_alerts
                .with_label_values(&[target.as_str(), result])
                .inc()
        };
        for (target, kind) in &decided.queued {
            counter(*target, "queued");
            tracing::info!(action_id = %action.action_id, theme = %action.theme, target = target.as_str(), alert = kind.as_str(), "ops alert queued");
        }
        for target in &decided.suppressed {
            counter(*target, "suppressed");
            tracing::info!(action_id = %action.action_id, theme = %action.theme, target = target.as_str(), "ops alert suppressed: the route's quiet period for this theme is running");
        }
        if !decided.queued.is_empty() {
            self.ctx.wake.notify_one();
        }
        Ok(())
    }
}

/// The outbox row for one customer: the message is rendered now, in their language,
/// so what is sent (and retried) is exactly what was decided.
fn delivery(
    ctx: &Context,
    action: &ActionEvent,
    resolution: &Resolution,
    mention: &Mention,
    preferences: Option<&Preferences>,
    (channel, address): (DeliveryChannel, Option<String>),
    now: chrono::DateTime<Utc>,
) -> NewDelivery {
    let templates = &ctx.templates;
    let delivery_id = Uuid::now_v7();
    // The language their preferences name, else their locale's, else the one they wrote in.
    let mut preferred = Vec::new();
    let chosen = preferences
        .and_then(|p| p.language.as_deref())
        .and_then(|tag| message::locale_language(Some(tag)));
    preferred.extend(chosen.as_deref());
    preferred.push(mention.language.as_str());
    preferred.extend(mention.text_language.as_deref());
    let language = templates.pick(&preferred);
    let you_said = mention.excerpt.as_deref().unwrap_or_default();
    let we_did = message::clean(resolution.message_in(language));
    let told_at = chrono::DateTime::from_timestamp_millis(mention.given_at_ms)
        .unwrap_or(resolution.resolved_at);
    let rendered: Rendered = templates.render(
        language,
        &Parts {
            told_at,
            theme_name: message::theme_name(&action.theme_name, language, &action.theme),
            you_said,
            we_did: &we_did,
        },
    );
    let unsubscribe_url = ctx.links.url(&mention.customer_id, now);
    let payload = match (channel, address) {
        (DeliveryChannel::Email, Some(to)) => serde_json::to_value(EmailPayload {
            to,
            subject: rendered.subject,
            text: rendered.email_text,
            html: rendered.email_html,
            body: Some(rendered.text),
            unsubscribe_url: Some(unsubscribe_url),
        })
        .unwrap_or_default(),
        _ => serde_json::json!({
            "type": "closeloop.you_said_we_did",
            "delivery_id": delivery_id,
            "action_id": action.action_id,
            "theme": action.theme,
            "customer": { "id": mention.customer_id, "reference": mention.reference },
            "language": language,
            "you_said": message::clean(you_said),
            "we_did": we_did,
            "subject": rendered.subject,
            "text": rendered.text,
            "unsubscribe_url": unsubscribe_url,
        }),
    };
    NewDelivery {
        delivery_id: delivery_id.to_string(),
        action_id: action.action_id.to_string(),
        customer_id: mention.customer_id.clone(),
        source: mention.source.clone(),
        channel: channel.as_str(),
        language: language.to_owned(),
        payload: payload.to_string(),
        created_at_ms: now.timestamp_millis(),
        said_at_ms: mention.given_at_ms,
    }
}

/// The payload of the one message that stands for all of `held` (oldest first, the
/// first one its carrier), on the carrier's channel and in its language: an e-mail of
/// their bodies under the combined subject, or the carrier's webhook body with the
/// combined `text` and every message it stands for under `combined`.
pub fn combined_payload(templates: &Templates, held: &[Held]) -> String {
    let parsed: Vec<serde_json::Map<String, serde_json::Value>> = held
        .iter()
        .map(|h| {
            h.payload
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_default()
        })
        .collect();
    let field = |payload: &serde_json::Map<String, serde_json::Value>, name: &str| {
        payload
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    // An e-mail payload keeps its body apart; a webhook payload's `text` is the body.
    let bodies: Vec<String> = parsed
        .iter()
        .filter_map(|payload| field(payload, "body").or_else(|| field(payload, "text")))
        .collect();
    let (Some(carrier), Some(carrier_payload)) = (held.first(), parsed.first()) else {
        return String::new();
    };
    let rendered = templates.render_combined(&carrier.language, &bodies);
    if carrier.channel == DeliveryChannel::Email.as_str() {
        if let Ok(mut email) = serde_json::from_value::<EmailPayload>(serde_json::Value::Object(
            carrier_payload.clone(),
        )) {
            email.subject = rendered.subject;
            email.text = rendered.email_text;
            email.html = rendered.email_html;
            email.body = Some(rendered.text);
            return serde_json::to_string(&email).unwrap_or_default();
        }
    }
    let mut body = carrier_payload.clone();
    let parts: Vec<serde_json::Value> = held
        .iter()
        .zip(&parsed)
        .map(|(h, payload)| {
            serde_json::json!({
                "delivery_id": h.delivery_id,
                "action_id": h.action_id,
                "theme": payload.get("theme"),
                "you_said": payload.get("you_said"),
                "we_did": payload.get("we_did"),
                "text": field(payload, "body").or_else(|| field(payload, "text")),
            })
        })
        .collect();
    body.insert("subject".into(), rendered.subject.into());
    body.insert("text".into(), rendered.text.into());
    body.insert("combined".into(), parts.into());
    serde_json::Value::Object(body).to_string()
}

/// Counts and publishes deliveries cancelled for `reason`; `customer` is what their
/// audit records name (an erased customer's pseudonym).
pub async fn report_cancelled(
    ctx: &Context,
    cancelled: Vec<Cancelled>,
    customer: &str,
    reason: &str,
) {
    for delivery in cancelled {
        ctx.metrics.skipped.with_label_values(&[reason]).inc();
        let record = NotificationOutcome {
            delivery_id: Uuid::parse_str(&delivery.delivery_id).unwrap_or_default(),
            action_id: Uuid::parse_str(&delivery.action_id).unwrap_or_default(),
            customer_id: customer.to_owned(),
            channel: channel_of(&delivery.channel),
            outcome: DeliveryOutcome::Skipped,
            attempt: u32::try_from(delivery.attempts).unwrap_or(u32::MAX),
            language: delivery.language,
            status_code: None,
            error: Some(reason.to_owned()),
        };
        publish_outcome(&ctx.publisher, &ctx.metrics, record).await;
    }
}

/// `customers.preferences.v1` → `notify_preferences` (newest record wins); an
/// unsubscribe also cancels what the customer was waiting for.
pub struct PreferencesHandler {
    pub ctx: Context,
}

impl Handler for PreferencesHandler {
    type Event = CustomerPreferences;

    async fn handle(&self, incoming: &Incoming<CustomerPreferences>) -> Result<(), HandlerError> {
        let record = &incoming.envelope.data;
        let applied = preferences::apply(&self.ctx.db, &self.ctx.pseudonyms, record)
            .await
            .map_err(db_error)?;
        if applied.changed {
            self.ctx
                .metrics
                .preference_updates
                .with_label_values(&[if record.unsubscribed {
                    "unsubscribed"
                } else {
                    "subscribed"
                }])
                .inc();
        }
        tracing::info!(
            pseudonym = %self.ctx.pseudonyms.of(&record.customer_id),
            set_by = %record.source,
            changed = applied.changed,
            unsubscribed = record.unsubscribed,
            cancelled = applied.cancelled.len(),
            "customer preferences"
        );
        report_cancelled(
            &self.ctx,
            applied.cancelled,
            &record.customer_id,
            UNSUBSCRIBED,
        )
        .await;
        Ok(())
    }
}

/// `privacy.erasure.v1` → forget the customer (what came through the erasure's scope).
pub struct ErasureHandler {
    pub ctx: Context,
}

impl Handler for ErasureHandler {
    type Event = ErasureRequest;

    async fn handle(&self, incoming: &Incoming<ErasureRequest>) -> Result<(), HandlerError> {
        let request = &incoming.envelope.data;
        let customer_id = &request.customer_id;
        let pseudonym = self.ctx.pseudonyms.of(customer_id);
        let scope = request.scope_key();
        let mentions = projection::erase(
            &self.ctx.db,
            &pseudonym,
            customer_id,
            scope,
            request.requested_at.timestamp_millis(),
        )
        .await
        .map_err(db_error)?;
        let cancelled = outbox::erase(&self.ctx.db, &pseudonym, customer_id, scope)
            .await
            .map_err(db_error)?;
        closeloop_runtime::erasure::scrub_after_erasure(&self.ctx.db).await?;
        // The pseudonym, never the id: the log must not name whom it forgot.
        tracing::info!(
            erasure_id = %incoming.envelope.event_id,
            %pseudonym,
            scope,
            mentions,
            cancelled_deliveries = cancelled.len(),
            "customer erased"
        );
        // The audit record of a cancellation names the pseudonym too.
        report_cancelled(&self.ctx, cancelled, &pseudonym, ERASED).await;
        Ok(())
    }
}
