//! Announcing an action's change on `actions.v1`. The row is written first (so the
//! partial unique index can refuse a second unresolved action before anything is said),
//! then the event is published; if the broker does not take it, the row change is undone,
//! so no change happens without its event. The detector's raise and reopen and every
//! operator transition go through [`publish_or_undo`].

use closeloop_bus::BusError;
use closeloop_events::{ActionEvent, ActionEventKind, Envelope};

use crate::action::Action;
use crate::context::Context;
use crate::store::ActionRow;

/// How to take back a row change whose event was not published.
#[derive(Debug, Clone, Copy)]
pub enum Undo<'a> {
    /// The row was inserted: delete it, so the retry raises afresh. Should the delete
    /// fail too, the row stays with `announced = 0` and the retry announces it instead.
    Withdraw,
    /// The row was changed: put it back as it was before.
    Restore(&'a ActionRow),
}

/// Publishes `kind` for `action` (already stored); on failure undoes the store change as
/// `undo` says and returns the broker's error. A failed undo is logged, not returned:
/// the caller's answer is the same either way (the change was not announced).
pub async fn publish_or_undo(
    ctx: &Context,
    action: &Action,
    kind: ActionEventKind,
    traceparent: Option<&str>,
    undo: Undo<'_>,
) -> Result<Envelope<ActionEvent>, BusError> {
    let envelope = Envelope::new(action.event(kind));
    let Err(error) = ctx.publisher.publish(&envelope, traceparent).await else {
        return Ok(envelope);
    };
    let action_id = action.action_id.to_string();
    tracing::warn!(%action_id, %error, kind = kind.as_str(), "event not acknowledged, undoing");
    match undo {
        Undo::Withdraw => {
            if let Err(db) = ctx.store.delete_action(&action_id).await {
                tracing::warn!(%action_id, error = %db, "could not withdraw unannounced action");
            }
        }
        Undo::Restore(before) => {
            if let Err(db) = ctx.store.restore_action(before).await {
                tracing::error!(%action_id, error = %db, "could not undo the change");
            }
        }
    }
    Err(error)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use closeloop_events::Evidence;
    use uuid::Uuid;

    use super::*;
    use crate::context::testing::context_without_broker;

    #[tokio::test]
    async fn an_unpublished_raise_is_withdrawn_and_an_unpublished_change_put_back() {
        let ctx = context_without_broker().await;
        let evidence = serde_json::to_string(&Evidence::default()).expect("evidence");
        let raised = ActionRow::raised(Uuid::now_v7().to_string(), "price".into(), 1, evidence);
        let store = &ctx.store;

        assert!(store.insert_action(&raised).await.unwrap());
        let action = Action::from_row(&raised, BTreeMap::new()).unwrap();
        publish_or_undo(&ctx, &action, ActionEventKind::Raised, None, Undo::Withdraw)
            .await
            .expect_err("no broker");
        assert_eq!(store.action(&raised.action_id).await.unwrap(), None);

        assert!(store.insert_action(&raised).await.unwrap());
        assert!(store
            .acknowledge_action(&raised.action_id, "ops", Some("pricing"), 5)
            .await
            .unwrap());
        let assigned = store.action(&raised.action_id).await.unwrap().unwrap();
        let action = Action::from_row(&assigned, BTreeMap::new()).unwrap();
        publish_or_undo(
            &ctx,
            &action,
            ActionEventKind::Assigned,
            None,
            Undo::Restore(&raised),
        )
        .await
        .expect_err("no broker");
        assert_eq!(
            store.action(&raised.action_id).await.unwrap(),
            Some(raised),
            "as before the assignment"
        );
    }
}
