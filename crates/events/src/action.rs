//! `actions.v1`: the lifecycle of an action raised for a theme.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{topics, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Open,
    Resolved,
}

impl ActionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionStatus::Open => "open",
            ActionStatus::Resolved => "resolved",
        }
    }
}

/// What happened to the action in this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionEventKind {
    Raised,
    Updated,
    Resolved,
    Reopened,
}

/// One feedback quoted as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceExcerpt {
    pub feedback_id: Uuid,
    pub customer_id: String,
    pub excerpt: String,
    pub given_at: DateTime<Utc>,
}

/// Why the action exists: what the detector saw, by event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub mentions: u32,
    pub negative_mentions: u32,
    pub distinct_customers: u32,
    /// The detector rule that fired, e.g. `">= 5 negative mentions from >= 3 customers in 1h"`.
    pub rule: String,
    /// The negative feedback that makes up the evidence (capped).
    pub feedback_ids: Vec<Uuid>,
    /// A few representative excerpts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excerpts: Vec<EvidenceExcerpt>,
}

/// The operator's answer: what was done, per language (at least `en`; `de` where given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub message: BTreeMap<String, String>,
    pub resolved_by: String,
    pub resolved_at: DateTime<Utc>,
}

impl Resolution {
    /// The message in `language`, falling back to English, then to any language given.
    pub fn message_in(&self, language: &str) -> &str {
        self.message
            .get(language)
            .or_else(|| self.message.get("en"))
            .or_else(|| self.message.values().next())
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// The `actions.v1` payload: the action as it stands after `kind` happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionEvent {
    pub action_id: Uuid,
    pub kind: ActionEventKind,
    pub theme: String,
    /// The theme's display name per language.
    #[serde(default)]
    pub theme_name: BTreeMap<String, String>,
    pub status: ActionStatus,
    pub raised_at: DateTime<Utc>,
    pub evidence: Evidence,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

impl Event for ActionEvent {
    const SCHEMA: &'static str = "actions.v1";
    const TOPIC: &'static str = topics::ACTIONS;
    fn key(&self) -> &str {
        &self.theme
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    #[test]
    fn resolved_action_round_trips() {
        let now = Utc::now();
        let json = round_trip(ActionEvent {
            action_id: Uuid::now_v7(),
            kind: ActionEventKind::Resolved,
            theme: "delivery_time".into(),
            theme_name: BTreeMap::from([("en".into(), "Delivery time".into())]),
            status: ActionStatus::Resolved,
            raised_at: now,
            evidence: Evidence {
                window_start: now,
                window_end: now,
                mentions: 9,
                negative_mentions: 7,
                distinct_customers: 5,
                rule: "test".into(),
                feedback_ids: vec![Uuid::now_v7()],
                excerpts: vec![],
            },
            resolution: Some(Resolution {
                message: BTreeMap::from([
                    ("en".into(), "We added a second carrier.".into()),
                    ("de".into(), "Wir haben einen zweiten Versender.".into()),
                ]),
                resolved_by: "ops@example.com".into(),
                resolved_at: now,
            }),
        });
        assert_eq!(json["kind"], "resolved");
        assert_eq!(json["status"], "resolved");
        assert_eq!(
            json["resolution"]["message"]["de"],
            "Wir haben einen zweiten Versender."
        );
    }

    #[test]
    fn resolution_message_falls_back_to_english() {
        let resolution = Resolution {
            message: BTreeMap::from([("en".into(), "Fixed.".into())]),
            resolved_by: "ops".into(),
            resolved_at: Utc::now(),
        };
        assert_eq!(resolution.message_in("de"), "Fixed.");
        assert_eq!(resolution.message_in("en"), "Fixed.");
    }
}
