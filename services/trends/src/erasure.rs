//! `privacy.erasure.v1` → forget a customer in trends' tables.
//!
//! Mentions are pseudonymised, not deleted: the customer's id becomes their pseudonym
//! (`erased:<hmac>`, see `closeloop_runtime::pseudonym`) and the excerpt is emptied. Detection
//! reads counts of mentions and of distinct customers; with every mention of the customer
//! under one pseudonym both stay what they were, so the database and the in-memory
//! detector (which a restart rebuilds from the database) never disagree. Deleting the
//! rows instead would shrink the counts behind the detector's back: a restart would
//! rebuild a smaller window and could drop, re-raise or reopen an action because of an
//! erasure, and published evidence would no longer add up. What is left (theme, time,
//! channel, sentiment, rating) no longer identifies anyone.
//!
//! Published evidence quotes customers: excerpts of the erased customer are removed from
//! every action's and historical finding's stored evidence, so the API and the ops page stop showing them.
//! (Copies already published on actions.v1 age out with the topic's retention.)
//!
//! Feedback kept for emerging topics (`trends_topic_feedback`) is pseudonymised the same
//! way and loses its excerpt and its phrases (the customer's words too); it then counts
//! among the list's customers but no longer towards any phrase. Excerpts of emerging
//! topics are read from the table per request, so no replica quotes them afterwards.
//!
//! Scored feedback for theme impact (`trends_feedback_scores`) has no step here: it holds
//! no customer id and no words — scores, theme ids and a time — linked to the customer
//! only through the feedback id, which the pseudonymised mentions keep as well.
//!
//! Scope: a source's erasure reaches the mentions that came through that source (and
//! those stored before mentions recorded their source); an admin's, every mention. A
//! customer erased by one source only can then count twice among a window's distinct
//! customers (under the pseudonym and, from the other source, under the id).

use std::collections::HashSet;
use std::sync::Arc;

use closeloop_bus::{Handler, HandlerError, Incoming};
use closeloop_events::ErasureRequest;
use serde_json::Value;

use crate::context::Context;
use crate::detection::db_error;

pub(crate) struct ErasureHandler {
    ctx: Arc<Context>,
}

impl ErasureHandler {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
}

impl Handler for ErasureHandler {
    type Event = ErasureRequest;

    async fn handle(&self, incoming: &Incoming<ErasureRequest>) -> Result<(), HandlerError> {
        let request = &incoming.envelope.data;
        let customer_id = request.customer_id.as_str();
        let scope = request.scope_key();
        let store = &self.ctx.store;
        // The ledger first, committed on its own: a mention inserted after it is stored
        // pseudonymised by the insert itself; one already under way is caught below.
        store
            .record_erasure(customer_id, scope, request.requested_at.timestamp_millis())
            .await
            .map_err(db_error)?;
        // Evidence is rewritten under the transition lock, so a raise or update that read
        // the mentions before they were pseudonymised cannot write its quotes back.
        let _transitions = self.ctx.transitions.of_every_theme().await;
        let (mentions, in_scope) = store
            .pseudonymise_mentions(customer_id, scope)
            .await
            .map_err(db_error)?;
        // A source's erasure removes the quotes of the feedback that came through it; an
        // erasure of every source, every quote of the customer.
        let quoted = request.only_source().map(|_| &in_scope);
        let mut scrubbed = 0;
        for (of, evidence_json) in store
            .evidence_mentioning(customer_id)
            .await
            .map_err(db_error)?
        {
            let Some(evidence) = without_excerpts_of(&evidence_json, customer_id, quoted) else {
                continue;
            };
            store
                .replace_evidence(&of, &evidence)
                .await
                .map_err(db_error)?;
            scrubbed += 1;
        }
        // The feedback emerging topics are counted from: their words go, the rows stay
        // (a replay is a no-op), and the lists are computed again without them.
        let topic_feedback = store
            .pseudonymise_topic_feedback(customer_id, scope)
            .await
            .map_err(db_error)?;
        self.ctx.emerging.refresh_soon();
        closeloop_runtime::erasure::scrub_after_erasure(store.database()).await?;
        // Every step is idempotent (a replay finds nothing left to change), so a retry
        // after a failure half-way finishes the job. Logged by pseudonym, never by id.
        tracing::info!(
            erasure_id = %incoming.envelope.event_id,
            pseudonym = %store.pseudonym_of(customer_id),
            scope,
            mentions,
            actions = scrubbed,
            topic_feedback,
            "erasure request applied"
        );
        Ok(())
    }
}

/// The evidence JSON without the excerpts quoting `customer_id` (only those of
/// `feedback_ids` when given), or `None` when it has none (or is not the JSON object
/// it should be: then there is nothing to scrub). Works on the JSON value, so fields
/// this version does not know survive.
fn without_excerpts_of(
    evidence_json: &str,
    customer_id: &str,
    feedback_ids: Option<&HashSet<String>>,
) -> Option<String> {
    let mut evidence: Value = serde_json::from_str(evidence_json).ok()?;
    let quotes_them = |excerpt: &Value| {
        excerpt["customer_id"].as_str() == Some(customer_id)
            && feedback_ids.is_none_or(|ids| {
                excerpt["feedback_id"]
                    .as_str()
                    .is_some_and(|id| ids.contains(id))
            })
    };
    let mut removed = 0;
    let mut scrub = |excerpts: Option<&mut Value>| {
        if let Some(excerpts) = excerpts.and_then(Value::as_array_mut) {
            let before = excerpts.len();
            excerpts.retain(|excerpt| !quotes_them(excerpt));
            removed += before - excerpts.len();
        }
    };
    scrub(evidence.get_mut("excerpts"));
    // Related themes that joined the action quote their customers too.
    if let Some(related) = evidence.get_mut("related").and_then(Value::as_array_mut) {
        for theme in related {
            scrub(theme.get_mut("excerpts"));
        }
    }
    if removed == 0 {
        return None;
    }
    serde_json::to_string(&evidence).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_only_the_erased_customers_excerpts() {
        let evidence = json!({
            "mentions": 3,
            "future_field": {"kept": true},
            "excerpts": [
                {"feedback_id": "f1", "customer_id": "anna", "excerpt": "late"},
                {"feedback_id": "f2", "customer_id": "bob", "excerpt": "late too"},
            ]
        })
        .to_string();
        let scrubbed: Value =
            serde_json::from_str(&without_excerpts_of(&evidence, "anna", None).unwrap()).unwrap();
        assert_eq!(scrubbed["excerpts"].as_array().unwrap().len(), 1);
        assert_eq!(scrubbed["excerpts"][0]["customer_id"], "bob");
        assert_eq!(scrubbed["future_field"]["kept"], true);
        assert_eq!(scrubbed["mentions"], 3);
        assert!(without_excerpts_of(&evidence, "carl", None).is_none());
        assert!(without_excerpts_of("not json", "anna", None).is_none());
    }

    #[test]
    fn removes_the_quotes_of_related_themes_too() {
        let evidence = json!({
            "excerpts": [{"feedback_id": "f1", "customer_id": "bob", "excerpt": "late"}],
            "related": [{
                "theme": "delivery",
                "excerpts": [
                    {"feedback_id": "f2", "customer_id": "anna", "excerpt": "parcel lost"},
                    {"feedback_id": "f3", "customer_id": "bob", "excerpt": "no parcel"},
                ]
            }]
        })
        .to_string();
        let scrubbed: Value =
            serde_json::from_str(&without_excerpts_of(&evidence, "anna", None).unwrap()).unwrap();
        assert_eq!(scrubbed["excerpts"].as_array().unwrap().len(), 1);
        let related = scrubbed["related"][0]["excerpts"].as_array().unwrap();
        assert_eq!(related.len(), 1);
        assert_eq!(related[0]["customer_id"], "bob");
    }

    #[test]
    fn a_scoped_erasure_removes_only_the_quotes_of_its_feedback() {
        let evidence = json!({
            "excerpts": [
                {"feedback_id": "f1", "customer_id": "anna", "excerpt": "via shopdesk"},
                {"feedback_id": "f2", "customer_id": "anna", "excerpt": "via surveyhub"},
                {"feedback_id": "f3", "customer_id": "bob", "excerpt": "late too"},
            ]
        })
        .to_string();
        let surveyhub: HashSet<String> = ["f2".to_owned(), "f3".to_owned()].into();
        let scrubbed: Value = serde_json::from_str(
            &without_excerpts_of(&evidence, "anna", Some(&surveyhub)).unwrap(),
        )
        .unwrap();
        let left: Vec<&str> = scrubbed["excerpts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["feedback_id"].as_str().unwrap())
            .collect();
        assert_eq!(left, ["f1", "f3"], "anna's other source and bob stay");
        let nothing: HashSet<String> = HashSet::new();
        assert!(without_excerpts_of(&evidence, "anna", Some(&nothing)).is_none());
    }
}
