//! What an operator does to an action — acknowledge, assign, resolve, reopen — shared by
//! the JSON API and the `/ops` page. Each transition runs under the transitions lock,
//! changes the row, and publishes its `actions.v1` event; if the broker does not take
//! the event, the row is put back, so no change happens without its event.

use std::collections::BTreeMap;

use chrono::Utc;
use closeloop_events::{ActionEventKind, ActionStatus, Envelope, Resolution};
use closeloop_http::{Problem, ProblemType};
use closeloop_store::sqlx;
use uuid::Uuid;

use crate::action::{time, Action, CorruptAction};
use crate::announce::{publish_or_undo, Undo};
use crate::context::{Context, ThemeTransition};
use crate::store::{is_unique_violation, ActionRow, LogRow};

/// What an operator can do to an action. Its name is the last path segment of the step's
/// API route (`/v1/actions/{id}/<step>`) and of its `/ops` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Acknowledge,
    /// Acknowledge with an assignee (or change the assignee).
    Assign,
    Resolve,
    Reopen,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Acknowledge, Step::Assign, Step::Resolve, Step::Reopen];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Acknowledge => "acknowledge",
            Step::Assign => "assign",
            Step::Resolve => "resolve",
            Step::Reopen => "reopen",
        }
    }

    /// Parses the `as_str` form.
    pub fn parse(step: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|known| known.as_str() == step)
    }

    /// The event a step publishes when it changes the action.
    pub fn event_kind(self) -> ActionEventKind {
        match self {
            Step::Acknowledge => ActionEventKind::Acknowledged,
            Step::Assign => ActionEventKind::Assigned,
            Step::Resolve => ActionEventKind::Resolved,
            Step::Reopen => ActionEventKind::Reopened,
        }
    }
}

/// A step with its checked input (see [`crate::request`]), ready to [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Acknowledge {
        by: String,
    },
    Assign {
        assignee: String,
        by: String,
    },
    Resolve {
        /// What was done, per language: `en`, and `de` where given.
        message: BTreeMap<String, String>,
        resolved_by: String,
    },
    Reopen {
        by: String,
        reason: Option<String>,
    },
}

/// Takes `command`'s step on action `id`.
pub async fn apply(ctx: &Context, id: Uuid, command: Command) -> Result<Action, TransitionError> {
    match command {
        Command::Acknowledge { by } => acknowledge(ctx, id, &by, None).await,
        Command::Assign { assignee, by } => acknowledge(ctx, id, &by, Some(&assignee)).await,
        Command::Resolve {
            message,
            resolved_by,
        } => resolve(ctx, id, message, &resolved_by).await,
        Command::Reopen { by, reason } => reopen(ctx, id, &by, reason.as_deref()).await,
    }
}

/// Why a transition did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no action {0}")]
    NotFound(Uuid),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the event could not be published ({0}); nothing changed")]
    Bus(String),
    #[error(transparent)]
    Corrupt(#[from] CorruptAction),
}

impl TransitionError {
    pub fn problem(&self) -> Problem {
        match self {
            TransitionError::NotFound(id) => {
                Problem::new(ProblemType::NotFound).detail(format!("no action {id}"))
            }
            TransitionError::Conflict(detail) => {
                Problem::new(ProblemType::Conflict).detail(detail.clone())
            }
            TransitionError::Database(error) => database_problem(error),
            TransitionError::Bus(_) => Problem::new(ProblemType::BrokerUnavailable)
                .detail("the change could not be published; nothing changed, try again"),
            TransitionError::Corrupt(error) => {
                tracing::error!(%error, "stored action cannot be read");
                Problem::internal(error.to_string())
            }
        }
    }
}

pub fn database_problem(error: &sqlx::Error) -> Problem {
    Problem::from_database_error(error)
}

/// Takes the transition lock of the action's theme (an action's theme never changes).
async fn lock_theme_of(ctx: &Context, id: Uuid) -> Result<ThemeTransition<'_>, TransitionError> {
    let theme = load(ctx, id).await?.theme;
    Ok(ctx.transitions.of_theme(&theme).await)
}

async fn load(ctx: &Context, id: Uuid) -> Result<ActionRow, TransitionError> {
    ctx.store
        .action(&id.to_string())
        .await?
        .ok_or(TransitionError::NotFound(id))
}

/// Publishes `kind` for `action`; on failure puts `before` back and reports it.
async fn publish_or_restore(
    ctx: &Context,
    before: &ActionRow,
    action: &Action,
    kind: ActionEventKind,
) -> Result<Envelope<closeloop_events::ActionEvent>, TransitionError> {
    publish_or_undo(ctx, action, kind, None, Undo::Restore(before))
        .await
        .map_err(|error| TransitionError::Bus(error.to_string()))
}

async fn reread(ctx: &Context, id: Uuid) -> Result<Action, TransitionError> {
    let row = load(ctx, id).await?;
    Ok(Action::from_row(&row, ctx.theme_name(&row.theme))?)
}

async fn finish(
    ctx: &Context,
    action: &Action,
    envelope: &Envelope<closeloop_events::ActionEvent>,
    kind: ActionEventKind,
    actor: &str,
    note: Option<String>,
) {
    ctx.metrics.event(kind.as_str());
    let entry = LogRow {
        at_ms: Utc::now().timestamp_millis(),
        kind: kind.as_str().into(),
        actor: actor.into(),
        note,
    };
    ctx.log(envelope, &action.action_id.to_string(), &entry)
        .await;
    tracing::info!(action_id = %action.action_id, theme = %action.theme, kind = kind.as_str(), actor, "action {}", kind.as_str());
}

/// Someone takes the action on, optionally assigning it. Acknowledging twice (or
/// assigning the same assignee again) changes nothing and publishes nothing.
async fn acknowledge(
    ctx: &Context,
    id: Uuid,
    by: &str,
    assignee: Option<&str>,
) -> Result<Action, TransitionError> {
    let _transition = lock_theme_of(ctx, id).await?;
    let row = load(ctx, id).await?;
    if row.status == ActionStatus::Resolved {
        return Err(TransitionError::Conflict(format!(
            "action {id} is resolved; reopen it first"
        )));
    }
    let already = row.status == ActionStatus::Acknowledged;
    let same_assignee = match assignee {
        None => true,
        Some(wanted) => row.assignee.as_deref() == Some(wanted),
    };
    if already && same_assignee {
        return Ok(Action::from_row(&row, ctx.theme_name(&row.theme))?);
    }
    let now_ms = Utc::now().timestamp_millis();
    if !ctx
        .store
        .acknowledge_action(&row.action_id, by, assignee, now_ms)
        .await?
    {
        return Err(TransitionError::Conflict(format!(
            "action {id} was resolved meanwhile"
        )));
    }
    let action = reread(ctx, id).await?;
    let step = if assignee.is_some() {
        Step::Assign
    } else {
        Step::Acknowledge
    };
    let kind = step.event_kind();
    let envelope = publish_or_restore(ctx, &row, &action, kind).await?;
    let note = assignee.map(|a| format!("assigned to {a}"));
    finish(ctx, &action, &envelope, kind, by, note).await;
    Ok(action)
}

/// The action is done: `message` goes to the customers who complained (via notify).
async fn resolve(
    ctx: &Context,
    id: Uuid,
    message: BTreeMap<String, String>,
    resolved_by: &str,
) -> Result<Action, TransitionError> {
    // Serialised with the consumer's raise/update, so the window cleared below cannot be
    // refilled by a handler that read it just before.
    let _transition = lock_theme_of(ctx, id).await?;
    let row = load(ctx, id).await?;
    if row.status == ActionStatus::Resolved {
        return Err(TransitionError::Conflict(format!(
            "action {id} is already resolved"
        )));
    }
    let now_ms = Utc::now().timestamp_millis();
    let resolution = Resolution {
        message,
        resolved_by: resolved_by.to_owned(),
        resolved_at: time(now_ms),
    };
    let resolution_json = serde_json::to_string(&resolution)
        .map_err(|e| TransitionError::Conflict(format!("resolution cannot be stored: {e}")))?;
    if !ctx
        .store
        .resolve_action(&row.action_id, &resolution_json, now_ms)
        .await?
    {
        return Err(TransitionError::Conflict(format!(
            "action {id} is already resolved"
        )));
    }
    let action = reread(ctx, id).await?;
    // Customers must not miss the message: on failure the action stays unresolved so
    // the operator can resolve it again once the broker is back.
    let envelope = publish_or_restore(ctx, &row, &action, ActionEventKind::Resolved).await?;
    ctx.detection().resolved(&row.theme, now_ms);
    ctx.metrics.closed(&row.theme);
    finish(
        ctx,
        &action,
        &envelope,
        ActionEventKind::Resolved,
        resolved_by,
        None,
    )
    .await;
    Ok(action)
}

/// The fix did not hold: the resolved action is open again (its theme must not have
/// another unresolved action).
async fn reopen(
    ctx: &Context,
    id: Uuid,
    reopened_by: &str,
    reason: Option<&str>,
) -> Result<Action, TransitionError> {
    let _transition = lock_theme_of(ctx, id).await?;
    let row = load(ctx, id).await?;
    if row.status != ActionStatus::Resolved {
        return Err(TransitionError::Conflict(format!(
            "action {id} is not resolved"
        )));
    }
    let now_ms = Utc::now().timestamp_millis();
    match ctx
        .store
        .reopen_action(&row.action_id, reopened_by, None, now_ms)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(TransitionError::Conflict(format!(
                "action {id} is not resolved"
            )))
        }
        Err(error) if is_unique_violation(&error) => {
            return Err(TransitionError::Conflict(format!(
                "theme {} already has an unresolved action",
                row.theme
            )))
        }
        Err(error) => return Err(error.into()),
    }
    let action = reread(ctx, id).await?;
    let envelope = publish_or_restore(ctx, &row, &action, ActionEventKind::Reopened).await?;
    ctx.metrics.opened(&row.theme, now_ms);
    finish(
        ctx,
        &action,
        &envelope,
        ActionEventKind::Reopened,
        reopened_by,
        reason.map(str::to_owned),
    )
    .await;
    Ok(action)
}
