//! An action as the API shows it and as `actions.v1` carries it, built from its stored row.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use closeloop_events::{ActionEvent, ActionEventKind, ActionStatus, Evidence, Resolution};
use serde::Serialize;
use uuid::Uuid;

use crate::store::ActionRow;

/// A stored action that cannot be read back: only possible if the table was edited by
/// hand, so callers report it rather than guess.
#[derive(Debug, thiserror::Error)]
#[error("action {action_id} is corrupt: {reason}")]
pub struct CorruptAction {
    pub action_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub action_id: Uuid,
    pub theme: String,
    pub theme_name: BTreeMap<String, String>,
    pub status: ActionStatus,
    pub raised_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub evidence: Evidence,
    /// `null` until resolved.
    pub resolution: Option<Resolution>,
}

impl Action {
    pub fn from_row(
        row: &ActionRow,
        theme_name: BTreeMap<String, String>,
    ) -> Result<Action, CorruptAction> {
        let corrupt = |reason: String| CorruptAction {
            action_id: row.action_id.clone(),
            reason,
        };
        let action_id = Uuid::parse_str(&row.action_id).map_err(|e| corrupt(e.to_string()))?;
        let status = match row.status.as_str() {
            "open" => ActionStatus::Open,
            "resolved" => ActionStatus::Resolved,
            other => return Err(corrupt(format!("unknown status {other:?}"))),
        };
        let evidence = serde_json::from_str(&row.evidence_json)
            .map_err(|e| corrupt(format!("evidence: {e}")))?;
        let resolution = row
            .resolution_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(format!("resolution: {e}")))?;
        Ok(Action {
            action_id,
            theme: row.theme.clone(),
            theme_name,
            status,
            raised_at: time(row.raised_at_ms),
            updated_at: time(row.updated_at_ms),
            evidence,
            resolution,
        })
    }

    /// The `actions.v1` payload saying that `kind` just happened to this action.
    pub fn event(&self, kind: ActionEventKind) -> ActionEvent {
        ActionEvent {
            action_id: self.action_id,
            kind,
            theme: self.theme.clone(),
            theme_name: self.theme_name.clone(),
            status: self.status,
            raised_at: self.raised_at,
            evidence: self.evidence.clone(),
            resolution: self.resolution.clone(),
        }
    }
}

/// Unix milliseconds as a timestamp; the epoch for values chrono cannot represent
/// (never written by this service).
pub fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
