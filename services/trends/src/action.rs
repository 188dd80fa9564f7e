//! An action as the API shows it and as `actions.v1` carries it, built from its stored row.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use closeloop_events::{
    ActionEffect, ActionEvent, ActionEventKind, ActionStatus, ActionWorkflow, Evidence, Resolution,
};
use serde::Serialize;
use uuid::Uuid;

use crate::store::{ActionRow, FindingRow, LogRow};

/// A stored action that cannot be read back: only possible if the table was edited by
/// hand, so callers report it rather than guess.
#[derive(Debug, thiserror::Error)]
#[error("action {action_id} is corrupt: {reason}")]
pub struct CorruptAction {
    pub action_id: String,
    pub reason: String,
}

/// One step of an action's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// raised, updated, acknowledged, assigned, resolved, reopened.
    pub kind: String,
    /// Who did it: the operator, or `closeloop-trends` for the detector.
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<LogRow> for HistoryEntry {
    fn from(row: LogRow) -> Self {
        HistoryEntry {
            at: time(row.at_ms),
            kind: row.kind,
            actor: row.actor,
            note: row.note,
        }
    }
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
    /// `null` unless resolved.
    pub resolution: Option<Resolution>,
    #[serde(flatten)]
    pub workflow: ActionWorkflow,
    /// Did the resolution work? `null` unless resolved and measured (see
    /// [`crate::effect`]); a reopened action's effect is moot and not shown.
    pub effect: Option<ActionEffect>,
    /// Only in the detail view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
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
            status: row.status,
            raised_at: time(row.raised_at_ms),
            updated_at: time(row.updated_at_ms),
            evidence,
            resolution,
            workflow: ActionWorkflow {
                acknowledged_by: row.acknowledged_by.clone(),
                acknowledged_at: row.acknowledged_at_ms.map(time),
                assignee: row.assignee.clone(),
                reopened_count: u32::try_from(row.reopened_count).unwrap_or(u32::MAX),
                reopened_by: row.reopened_by.clone(),
            },
            effect: None,
            history: None,
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
            workflow: self.workflow.clone(),
            effect: self.effect.clone(),
        }
    }
}

/// Unix milliseconds as a timestamp; the epoch for values chrono cannot represent
/// (never written by this service).
pub fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A historical finding as the API and `/ops` show it: an episode found in feedback whose
/// evidence lay entirely in the past, reported instead of raised (no one works on it, no
/// customer is told).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub theme: String,
    pub theme_name: BTreeMap<String, String>,
    /// Event time the detector fired first.
    pub triggered_at: DateTime<Utc>,
    /// When trends found it (wall clock).
    pub found_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub evidence: Evidence,
}

impl Finding {
    pub fn from_row(
        row: &FindingRow,
        theme_name: BTreeMap<String, String>,
    ) -> Result<Finding, serde_json::Error> {
        Ok(Finding {
            theme: row.theme.clone(),
            theme_name,
            triggered_at: time(row.triggered_at_ms),
            found_at: time(row.found_at_ms),
            updated_at: time(row.updated_at_ms),
            evidence: serde_json::from_str(&row.evidence_json)?,
        })
    }
}
