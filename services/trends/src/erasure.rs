//! `privacy.erasure.v1` → forget a customer in trends' tables.
//!
//! Mentions are pseudonymised, not deleted: the customer's id becomes their pseudonym
//! (`erased:<sha256>`, the same in every service) and the excerpt is emptied. Detection
//! reads counts of mentions and of distinct customers; with every mention of the customer
//! under one pseudonym both stay what they were, so the database and the in-memory
//! detector (which a restart rebuilds from the database) never disagree. Deleting the
//! rows instead would shrink the counts behind the detector's back: a restart would
//! rebuild a smaller window and could drop, re-raise or reopen an action because of an
//! erasure, and published evidence would no longer add up. What is left (theme, time,
//! channel, sentiment, rating) no longer identifies anyone.
//!
//! Published evidence quotes customers: excerpts of the erased customer are removed from
//! every action's stored evidence, so the API and the ops page stop showing them.
//! (Copies already published on actions.v1 age out with the topic's retention.)

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
        let pseudonym = request.tombstone();
        let store = &self.ctx.store;
        // The ledger first, committed on its own: a mention inserted after it is stored
        // pseudonymised by the insert itself; one already under way is caught below.
        store
            .record_erasure(&pseudonym, request.requested_at.timestamp_millis())
            .await
            .map_err(db_error)?;
        // Evidence is rewritten under the transition lock, so a raise or update that read
        // the mentions before they were pseudonymised cannot write its quotes back.
        let _transition = self.ctx.transitions.lock().await;
        let mentions = store
            .pseudonymise_mentions(customer_id, &pseudonym)
            .await
            .map_err(db_error)?;
        let mut scrubbed = 0;
        for (action_id, evidence_json) in store
            .actions_mentioning(customer_id)
            .await
            .map_err(db_error)?
        {
            let Some(evidence) = without_excerpts_of(&evidence_json, customer_id) else {
                continue;
            };
            store
                .replace_evidence(&action_id, &evidence)
                .await
                .map_err(db_error)?;
            scrubbed += 1;
        }
        // Every step is idempotent (a replay finds nothing left to change), so a retry
        // after a failure half-way finishes the job.
        tracing::info!(mentions, actions = scrubbed, "erasure request applied");
        Ok(())
    }
}

/// The evidence JSON without the excerpts quoting `customer_id`, or `None` when it has
/// none (or is not the JSON object it should be: then there is nothing to scrub). Works
/// on the JSON value, so fields this version does not know survive.
fn without_excerpts_of(evidence_json: &str, customer_id: &str) -> Option<String> {
    let mut evidence: Value = serde_json::from_str(evidence_json).ok()?;
    let excerpts = evidence.get_mut("excerpts")?.as_array_mut()?;
    let before = excerpts.len();
    excerpts.retain(|excerpt| excerpt["customer_id"].as_str() != Some(customer_id));
    if excerpts.len() == before {
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
            serde_json::from_str(&without_excerpts_of(&evidence, "anna").unwrap()).unwrap();
        assert_eq!(scrubbed["excerpts"].as_array().unwrap().len(), 1);
        assert_eq!(scrubbed["excerpts"][0]["customer_id"], "bob");
        assert_eq!(scrubbed["future_field"]["kept"], true);
        assert_eq!(scrubbed["mentions"], 3);
        assert!(without_excerpts_of(&evidence, "carl").is_none());
        assert!(without_excerpts_of("not json", "anna").is_none());
    }
}
