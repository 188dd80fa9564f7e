//! `actions.v1`: the lifecycle of an action raised for a theme.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{topics, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Raised (or reopened), nobody has taken it on yet.
    Open,
    /// Someone acknowledged it or it was assigned; still unresolved.
    Acknowledged,
    Resolved,
}

impl ActionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionStatus::Open => "open",
            ActionStatus::Acknowledged => "acknowledged",
            ActionStatus::Resolved => "resolved",
        }
    }

    /// Parses the `as_str` form.
    pub fn parse(status: &str) -> Option<ActionStatus> {
        status.parse().ok()
    }
}

/// A status text that is none of [`ActionStatus`]'s `as_str` forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action status {0:?} (expected open, acknowledged or resolved)")]
pub struct UnknownActionStatus(pub String);

impl FromStr for ActionStatus {
    type Err = UnknownActionStatus;

    fn from_str(status: &str) -> Result<Self, Self::Err> {
        match status {
            "open" => Ok(ActionStatus::Open),
            "acknowledged" => Ok(ActionStatus::Acknowledged),
            "resolved" => Ok(ActionStatus::Resolved),
            _ => Err(UnknownActionStatus(status.to_owned())),
        }
    }
}

impl TryFrom<&str> for ActionStatus {
    type Error = UnknownActionStatus;

    fn try_from(status: &str) -> Result<Self, Self::Error> {
        status.parse()
    }
}

/// What happened to the action in this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionEventKind {
    Raised,
    Updated,
    /// Someone took the action on (status `acknowledged`).
    Acknowledged,
    /// The action got an assignee (status `acknowledged`).
    Assigned,
    Resolved,
    /// A resolved action is open again: by an operator, or because its theme surged
    /// again soon after the resolution.
    Reopened,
    /// The effect of the resolution was measured (the window after it has passed in
    /// event time): the event carries [`ActionEvent::effect`]. Tells no customer.
    EffectMeasured,
}

impl ActionEventKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionEventKind::Raised => "raised",
            ActionEventKind::Updated => "updated",
            ActionEventKind::Acknowledged => "acknowledged",
            ActionEventKind::Assigned => "assigned",
            ActionEventKind::Resolved => "resolved",
            ActionEventKind::Reopened => "reopened",
            ActionEventKind::EffectMeasured => "effect_measured",
        }
    }
}

/// One feedback quoted as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceExcerpt {
    pub feedback_id: Uuid,
    pub customer_id: String,
    pub excerpt: String,
    pub given_at: DateTime<Utc>,
}

/// Counts of one slice of the evidence span (a time bucket, a channel, a touchpoint).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvidenceCounts {
    pub mentions: u32,
    pub negative_mentions: u32,
    /// Distinct customers among the negative mentions.
    #[serde(default)]
    pub distinct_customers: u32,
}

/// The counts of one time bucket of the evidence span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceBucket {
    pub start: DateTime<Utc>,
    #[serde(flatten)]
    pub counts: EvidenceCounts,
}

/// How much higher a score's mean would be without the feedback mentioning a theme
/// negatively, with its 95 % confidence interval (trends' `GET /v1/themes/impact`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreImpact {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Why the action exists: what the detector saw, by event time. Fields after `excerpts`
/// were added later; they default when absent so older events still decode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// The detector that fired: `surge` or `recurrence`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detector: String,
    /// What fired, with its numbers, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Negative mentions the theme's baseline predicted for the window (surge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_negative_mentions: Option<f64>,
    /// Poisson tail probability of the window under the baseline (surge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// `negative_mentions / mentions`.
    #[serde(default)]
    pub negative_share: f64,
    /// Counts over time across the evidence span, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<EvidenceBucket>,
    /// Counts by channel (`review`, `ticket`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_channel: BTreeMap<String, EvidenceCounts>,
    /// Counts by touchpoint (`delivery`, `support`, …; `unknown` when not given).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_touchpoint: BTreeMap<String, EvidenceCounts>,
    /// Average rating (1–5) of the mentions that carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_rating: Option<f64>,
    /// Average NPS score (0–10) of the mentions that carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_nps: Option<f64>,
    /// Event time of the trigger: when the theme became active. Mentions that arrive
    /// late (a backlog, an import) can put it well before the action was raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_at: Option<DateTime<Utc>>,
    /// The theme's impact on NPS (points) over the last days when the evidence was put
    /// together; absent without enough scored feedback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nps_impact: Option<ScoreImpact>,
    /// Likewise on the average rating (1–5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating_impact: Option<ScoreImpact>,
    /// Themes of the same line of the hierarchy (the parent, a child) that surged while
    /// this action was unresolved: the same problem, so they joined this action instead
    /// of raising their own, and their complainers hear "we did" with this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<RelatedEvidence>,
}

/// What a related theme (see [`Evidence::related`]) contributed to an action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelatedEvidence {
    pub theme: String,
    /// The theme's display name per language.
    #[serde(default)]
    pub theme_name: BTreeMap<String, String>,
    #[serde(flatten)]
    pub counts: EvidenceCounts,
    /// What fired for the related theme, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Its negative feedback (capped like [`Evidence::feedback_ids`]).
    pub feedback_ids: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excerpts: Vec<EvidenceExcerpt>,
}

/// Who is working on an action and how often it came back. Added after the first
/// version of `actions.v1`: every field defaults, so older events still decode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionWorkflow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// How many times the action was reopened after a resolution.
    #[serde(default)]
    pub reopened_count: u32,
    /// Who reopened it last, and why (operator reopen) or `closeloop-trends` (surge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopened_by: Option<String>,
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

/// Whether a resolution worked: the theme's negative mentions per day and their share in
/// the window before the resolution against the same-length window after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectVerdict {
    /// Negative mentions per day and their share both fell significantly.
    Improved,
    /// No significant change (a fall in volume alone, e.g. a seasonal dip, is none).
    NoChange,
    /// Negative mentions per day and their share both rose significantly.
    Worse,
    /// The window after the resolution has not passed yet in event time.
    TooEarly,
    /// Too few negative mentions in both windows to tell.
    NotEnoughData,
}

impl EffectVerdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            EffectVerdict::Improved => "improved",
            EffectVerdict::NoChange => "no_change",
            EffectVerdict::Worse => "worse",
            EffectVerdict::TooEarly => "too_early",
            EffectVerdict::NotEnoughData => "not_enough_data",
        }
    }
}

/// The measured effect of a resolution (see `closeloop_trend::effect` for the tests).
/// Windows are event time: `before_start..resolved_at` and `resolved_at..after_end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionEffect {
    pub verdict: EffectVerdict,
    /// `worse` or `no_change`: an operator should decide whether to reopen the action.
    pub reopen_suggested: bool,
    pub before_start: DateTime<Utc>,
    pub resolved_at: DateTime<Utc>,
    pub after_end: DateTime<Utc>,
    pub before: EvidenceCounts,
    /// The after window so far (complete unless `too_early`).
    pub after: EvidenceCounts,
    pub negative_per_day_before: f64,
    pub negative_per_day_after: f64,
    pub negative_share_before: f64,
    pub negative_share_after: f64,
    /// Relative change of the negative mentions per day; absent when there were none before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<f64>,
    /// One-sided p-values (absent while too early): the negative rate fell / rose
    /// (binomial given the total), the negative share fell / rose (Fisher's exact test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_rate_lower: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_rate_higher: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_share_lower: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_share_higher: Option<f64>,
    /// The event-time clock (newest mention trends has seen) when this was measured.
    pub measured_at: DateTime<Utc>,
    /// Counts over time across both windows (buckets counted from `before_start`),
    /// oldest first; buckets without mentions are absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<EvidenceBucket>,
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
    #[serde(flatten, default)]
    pub workflow: ActionWorkflow,
    /// The resolution's measured effect: on `effect_measured`, and on later events of
    /// an action that has one. Absent in older events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<ActionEffect>,
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
                ..Evidence::default()
            },
            resolution: Some(Resolution {
                message: BTreeMap::from([
                    ("en".into(), "We added a second carrier.".into()),
                    ("de".into(), "Wir haben einen zweiten Versender.".into()),
                ]),
                resolved_by: "ops@example.com".into(),
                resolved_at: now,
            }),
            workflow: ActionWorkflow::default(),
            effect: None,
        });
        assert_eq!(json["kind"], "resolved");
        assert!(json.get("effect").is_none(), "absent when none");
        assert_eq!(json["status"], "resolved");
        assert_eq!(
            json["resolution"]["message"]["de"],
            "Wir haben einen zweiten Versender."
        );
    }

    #[test]
    fn a_first_version_event_still_decodes() {
        let first_version = serde_json::json!({
            "action_id": Uuid::now_v7(),
            "kind": "raised",
            "theme": "delivery_time",
            "status": "open",
            "raised_at": "2025-01-01T00:00:00Z",
            "evidence": {
                "window_start": "2025-01-01T00:00:00Z",
                "window_end": "2025-01-01T01:00:00Z",
                "mentions": 4, "negative_mentions": 3, "distinct_customers": 2,
                "rule": "r", "feedback_ids": []
            }
        });
        let event: ActionEvent = serde_json::from_value(first_version).expect("decodes");
        assert_eq!(event.workflow, ActionWorkflow::default());
        assert_eq!(event.effect, None);
        assert_eq!(event.evidence.negative_share, 0.0);
        assert!(event.evidence.by_channel.is_empty());
        assert_eq!(event.evidence.nps_impact, None);
    }

    #[test]
    fn workflow_fields_are_flat_and_new_kinds_round_trip() {
        let now = Utc::now();
        let json = round_trip(ActionEvent {
            action_id: Uuid::now_v7(),
            kind: ActionEventKind::Assigned,
            theme: "price".into(),
            theme_name: BTreeMap::new(),
            status: ActionStatus::Acknowledged,
            raised_at: now,
            evidence: Evidence {
                by_channel: BTreeMap::from([(
                    "review".into(),
                    EvidenceCounts {
                        mentions: 3,
                        negative_mentions: 2,
                        distinct_customers: 2,
                    },
                )]),
                series: vec![EvidenceBucket {
                    start: now,
                    counts: EvidenceCounts::default(),
                }],
                nps_impact: Some(ScoreImpact {
                    value: 4.5,
                    ci_low: 1.0,
                    ci_high: 8.0,
                }),
                ..Evidence::default()
            },
            resolution: None,
            workflow: ActionWorkflow {
                assignee: Some("logistics".into()),
                reopened_count: 1,
                ..ActionWorkflow::default()
            },
            effect: None,
        });
        assert_eq!(json["kind"], "assigned");
        assert_eq!(json["status"], "acknowledged");
        assert_eq!(json["assignee"], "logistics");
        assert_eq!(json["reopened_count"], 1);
        assert_eq!(
            json["evidence"]["by_channel"]["review"]["negative_mentions"],
            2
        );
        assert_eq!(json["evidence"]["series"][0]["mentions"], 0);
        assert_eq!(
            ActionStatus::parse("acknowledged"),
            Some(ActionStatus::Acknowledged)
        );
        assert_eq!(ActionStatus::parse("nope"), None);
    }

    #[test]
    fn statuses_parse_from_their_text_and_name_what_is_unknown() {
        for status in [
            ActionStatus::Open,
            ActionStatus::Acknowledged,
            ActionStatus::Resolved,
        ] {
            assert_eq!(status.as_str().parse::<ActionStatus>(), Ok(status));
            assert_eq!(ActionStatus::try_from(status.as_str()), Ok(status));
        }
        let error = "Resolved"
            .parse::<ActionStatus>()
            .expect_err("case matters");
        assert_eq!(error, UnknownActionStatus("Resolved".into()));
        assert!(error.to_string().contains("\"Resolved\""), "{error}");
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

    #[test]
    fn an_effect_measured_event_round_trips() {
        let now = Utc::now();
        let json = round_trip(ActionEvent {
            action_id: Uuid::now_v7(),
            kind: ActionEventKind::EffectMeasured,
            theme: "price".into(),
            theme_name: BTreeMap::new(),
            status: ActionStatus::Resolved,
            raised_at: now,
            evidence: Evidence::default(),
            resolution: None,
            workflow: ActionWorkflow::default(),
            effect: Some(ActionEffect {
                verdict: EffectVerdict::NoChange,
                reopen_suggested: true,
                before_start: now,
                resolved_at: now,
                after_end: now,
                before: EvidenceCounts::default(),
                after: EvidenceCounts::default(),
                negative_per_day_before: 3.0,
                negative_per_day_after: 2.5,
                negative_share_before: 0.3,
                negative_share_after: 0.28,
                change: Some(-1.0 / 6.0),
                p_rate_lower: Some(0.3),
                p_rate_higher: Some(0.8),
                p_share_lower: None,
                p_share_higher: None,
                measured_at: now,
                series: vec![],
            }),
        });
        assert_eq!(json["kind"], "effect_measured");
        assert_eq!(ActionEventKind::EffectMeasured.as_str(), "effect_measured");
        assert_eq!(json["effect"]["verdict"], "no_change");
        assert_eq!(json["effect"]["reopen_suggested"], true);
        assert!(json["effect"].get("p_share_lower").is_none());
        assert_eq!(EffectVerdict::NotEnoughData.as_str(), "not_enough_data");
    }
}
