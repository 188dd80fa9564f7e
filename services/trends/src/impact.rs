//! Theme impact: how much higher the average NPS and rating of a period would be without
//! the feedback that mentions a theme negatively — "what costs us most".
//!
//! ```text
//! feedback.categorised.v1 ──► TopicFeedbackHandler ──► trends_feedback_scores
//!   (the emerging-topics       with an NPS answer or     one row per feedback: nps, rating,
//!    consumer, same tx)         a rating                  themes, negative themes, event time
//!
//! GET /v1/themes/impact, /ops ──► rows of the period ──► closeloop_trend::impact (pure)
//! every TRENDS_IMPACT_REFRESH_SECONDS: the last TRENDS_IMPACT_DAYS ──► gauges
//!   closeloop_theme_{nps,rating}_impact{theme}, and the figures an action's evidence carries
//! ```
//!
//! The formula and its interval are in [`closeloop_trend::impact`]. Every feedback with a
//! score is stored, not only those with themes: the mean *without* a theme needs all of
//! them. Periods are in event time (when the customer gave the feedback).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use closeloop_events::{FeedbackCategorised, ScoreImpact, SentimentLabel};
use closeloop_trend::impact::{Estimate, Overall};
use closeloop_trend::{ImpactConfig, ImpactRanking, ImpactTally, Scores, ThemeImpact};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::action::time;
use crate::context::Context;
use crate::store::{ScoreRow, TrendsStore};

/// The settings the impact is computed with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub refresh: Duration,
    /// The period the gauges, `/ops` and the evidence cover, up to now.
    pub period_ms: i64,
    pub rules: ImpactConfig,
}

/// The last periodic computation: what the gauges show and actions' evidence quotes.
pub(crate) struct Impact {
    pub settings: Settings,
    latest: Mutex<Arc<BTreeMap<String, ThemeImpact>>>,
    /// Themes with a gauge set, so one that falls out of the period loses its series.
    gauged: Mutex<BTreeSet<String>>,
}

impl Impact {
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            settings,
            latest: Mutex::new(Arc::default()),
            gauged: Mutex::default(),
        }
    }

    /// The theme's impact as last computed (`None` before that, or without scored
    /// feedback mentioning it).
    fn of_theme(&self, theme: &str) -> Option<ThemeImpact> {
        self.latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(theme)
            .cloned()
    }

    /// The theme's NPS and rating impact as last computed, as evidence quotes them.
    pub(crate) fn quoted(&self, theme: &str) -> (Option<ScoreImpact>, Option<ScoreImpact>) {
        let Some(impact) = self.of_theme(theme) else {
            return (None, None);
        };
        let quote = |estimate: Option<Estimate>, digits| {
            ImpactValue::of(estimate, digits)
                .estimate()
                .map(|e| ScoreImpact {
                    value: e.value,
                    ci_low: e.ci_low,
                    ci_high: e.ci_high,
                })
        };
        (quote(impact.nps, 2), quote(impact.rating, 3))
    }

    fn set(&self, ranking: &ImpactRanking) {
        let themes = ranking
            .themes
            .iter()
            .map(|t| (t.theme.clone(), t.clone()))
            .collect();
        *self
            .latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(themes);
    }
}

/// Theme ids, one per line (ids never hold a newline: the taxonomy's are checked).
fn lines<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for id in ids {
        out.push_str(id);
        out.push('\n');
    }
    out
}

/// The stored form of a categorised feedback, if it carries a score.
pub(crate) fn score_row_of(categorised: &FeedbackCategorised) -> Option<ScoreRow> {
    let feedback = &categorised.feedback;
    if feedback.nps.is_none() && feedback.rating.is_none() {
        return None;
    }
    let themes = &categorised.themes;
    Some(ScoreRow {
        feedback_id: feedback.feedback_id.to_string(),
        nps: feedback.nps.map(i64::from),
        rating: feedback.rating.map(i64::from),
        themes: lines(themes.iter().map(|t| t.id.as_str())),
        // As trends counts a mention negative: the sentiment of the part about the theme.
        negative_themes: lines(
            themes
                .iter()
                .filter(|t| t.sentiment == SentimentLabel::Negative)
                .map(|t| t.id.as_str()),
        ),
        given_at_ms: feedback.given_at.timestamp_millis(),
    })
}

/// Every theme's impact over `[from_ms, to_ms)` of event time.
pub(crate) async fn compute(
    store: &TrendsStore,
    from_ms: i64,
    to_ms: i64,
    rules: &ImpactConfig,
) -> Result<ImpactRanking, closeloop_store::sqlx::Error> {
    let rows = store.scores(from_ms, to_ms).await?;
    Ok(rank(&rows, rules))
}

/// The ranking of stored rows (pure).
fn rank(rows: &[ScoreRow], rules: &ImpactConfig) -> ImpactRanking {
    let mut tally = ImpactTally::new();
    let score = |v: Option<i64>| v.and_then(|v| u8::try_from(v).ok());
    for row in rows {
        tally.add(
            Scores {
                nps: score(row.nps),
                rating: score(row.rating),
            },
            row.themes.lines(),
            row.negative_themes.lines(),
        );
    }
    tally.rank(rules)
}

/// Computes the last period's impact every [`Settings::refresh`] until `stop`: the gauges
/// and the figures new evidence quotes.
pub(crate) async fn keep_fresh(
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut every = tokio::time::interval(ctx.impact.settings.refresh);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        let settings = &ctx.impact.settings;
        let now = Utc::now().timestamp_millis();
        match compute(
            &ctx.store,
            now - settings.period_ms,
            now + 1,
            &settings.rules,
        )
        .await
        {
            Ok(ranking) => {
                // Evidence first: a gauge seen means new evidence quotes the same figures.
                ctx.impact.set(&ranking);
                publish(&ctx, &ranking);
            }
            Err(error) => {
                tracing::warn!(%error, "could not compute the themes' impact; trying again")
            }
        }
    }
}

/// Sets the gauges of the themes with enough data and removes the others'.
fn publish(ctx: &Context, ranking: &ImpactRanking) {
    let mut gauged = ctx
        .impact
        .gauged
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut now = BTreeSet::new();
    for theme in &ranking.themes {
        if theme.nps.is_some() || theme.rating.is_some() {
            now.insert(theme.theme.clone());
        }
        ctx.metrics.theme_impact(
            &theme.theme,
            theme.nps.map(|e| e.value),
            theme.rating.map(|e| e.value),
        );
    }
    for gone in gauged.difference(&now) {
        ctx.metrics.theme_impact(gone, None, None);
    }
    *gauged = now;
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// An impact as the API shows it: a number with its interval, or `"not_enough_data"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ImpactValue {
    Estimate(Estimate),
    NotEnoughData(&'static str),
}

impl ImpactValue {
    fn of(estimate: Option<Estimate>, digits: i32) -> Self {
        match estimate {
            Some(e) => ImpactValue::Estimate(Estimate {
                value: round(e.value, digits),
                ci_low: round(e.ci_low, digits),
                ci_high: round(e.ci_high, digits),
            }),
            None => ImpactValue::NotEnoughData("not_enough_data"),
        }
    }

    pub fn estimate(&self) -> Option<Estimate> {
        match self {
            ImpactValue::Estimate(e) => Some(*e),
            ImpactValue::NotEnoughData(_) => None,
        }
    }
}

/// One measure over the whole period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OverallView {
    pub count: u64,
    pub mean: Option<f64>,
}

impl OverallView {
    fn of(overall: Overall, digits: i32) -> Self {
        Self {
            count: overall.count,
            mean: overall.mean.map(|m| round(m, digits)),
        }
    }
}

/// One theme's impact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThemeImpactView {
    pub theme: String,
    pub theme_name: BTreeMap<String, String>,
    /// Scored feedback of the period mentioning the theme, and mentioning it negatively.
    pub mentions: u64,
    pub negative_mentions: u64,
    /// Share of the period's scored feedback that mentions it negatively.
    pub negative_share: f64,
    /// In NPS points (−100 to 100): how much higher NPS would be without the feedback
    /// mentioning the theme negatively.
    pub nps_impact: ImpactValue,
    /// On the average 0–10 NPS answer.
    pub nps_score_impact: ImpactValue,
    /// On the average 1–5 rating.
    pub rating_impact: ImpactValue,
}

/// `GET /v1/themes/impact`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImpactView {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Scored feedback needed on both sides of a theme for a number.
    pub min_count: u32,
    /// Feedback of the period with an NPS answer or a rating.
    pub feedback: u64,
    pub nps: OverallView,
    pub nps_score: OverallView,
    pub rating: OverallView,
    /// What costs most first (NPS impact, then rating impact).
    pub themes: Vec<ThemeImpactView>,
}

/// Every theme's impact over `[since_ms, until_ms)`, ranked, for the API and `/ops`.
pub(crate) async fn view(
    ctx: &Context,
    since_ms: i64,
    until_ms: i64,
) -> Result<ImpactView, closeloop_store::sqlx::Error> {
    let rules = &ctx.impact.settings.rules;
    let ranking = compute(&ctx.store, since_ms, until_ms, rules).await?;
    Ok(ImpactView {
        since: time(since_ms),
        until: time(until_ms),
        min_count: rules.min_count,
        feedback: ranking.feedback,
        nps: OverallView::of(ranking.nps, 1),
        nps_score: OverallView::of(ranking.nps_score, 2),
        rating: OverallView::of(ranking.rating, 2),
        themes: ranking
            .themes
            .into_iter()
            .map(|t| ThemeImpactView {
                theme_name: ctx.theme_name(&t.theme),
                mentions: t.mentions,
                negative_mentions: t.negative_mentions,
                negative_share: round(t.negative_share, 4),
                nps_impact: ImpactValue::of(t.nps, 2),
                nps_score_impact: ImpactValue::of(t.nps_score, 3),
                rating_impact: ImpactValue::of(t.rating, 3),
                theme: t.theme,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_rows_are_ranked_and_bad_scores_ignored() {
        let row = |id: &str, nps: i64, negative: &str| ScoreRow {
            feedback_id: id.into(),
            nps: Some(nps),
            rating: None,
            themes: negative.into(),
            negative_themes: negative.into(),
            given_at_ms: 0,
        };
        let mut rows = vec![];
        for i in 0..3 {
            rows.push(row(&format!("p{i}"), 10, ""));
            rows.push(row(&format!("d{i}"), 0, "delivery_time\n"));
        }
        rows.push(row("bad", 300, "delivery_time\n"));
        let ranking = rank(
            &rows,
            &ImpactConfig {
                min_count: 3,
                z: 1.96,
            },
        );
        assert_eq!(ranking.feedback, 6, "an NPS of 300 is not a score");
        let delivery = &ranking.themes[0];
        assert_eq!(delivery.theme, "delivery_time");
        // NPS 0 with them, 100 without: 100 points.
        assert_eq!(delivery.nps.map(|e| e.value), Some(100.0));
        let json = serde_json::to_value(ImpactValue::of(None, 2)).unwrap();
        assert_eq!(json, "not_enough_data");
    }
}
