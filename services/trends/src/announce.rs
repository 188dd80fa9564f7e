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
