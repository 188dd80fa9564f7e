//! Did "we did" work? For every resolved action, the theme's counts in the window of
//! event time before the resolution against the same-length window after it, judged by
//! [`closeloop_trend::effect`] — measured again every [`Settings::refresh`] until the
//! after window has passed on the event-time clock, then published once as an
//! `effect_measured` event on `actions.v1`.
//!
//! ```text
//! every refresh: clock = newest counted event time (all themes)
//!   for each resolved action without a final, announced effect:
//!     before = [resolved - W, resolved)   after = [resolved, resolved + W)
//!     counts ─► verdict (too early until clock >= resolved + W) ─► trends_effects
//!     final and not announced: under the theme's transition lock, still resolved?
//!       publish effect_measured ─► ack ─► announced = 1, metric, history
//! ```
//!
//! The resolution time is the operator's (wall clock) and mentions carry event time:
//! the windows are compared on the event-time axis, and "too early" is decided by the
//! newest event time trends has seen, never by the wall clock — so an imported backlog
//! measures the effect of an old resolution as soon as its after window is in.
//! A reopened action's effect is moot: it is neither shown nor published, and its next
//! resolution is measured afresh.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use closeloop_events::{
    ActionEffect, ActionEventKind, ActionStatus, EffectVerdict, Envelope, EvidenceBucket,
    EvidenceCounts,
};
use closeloop_store::sqlx;
use closeloop_trend::{Effect, EffectConfig, Verdict, WindowCounts};
use tokio_util::sync::CancellationToken;

use crate::action::{time, Action};
use crate::context::Context;
use crate::store::{ActionRow, DueRow, EffectRow, LogRow, WindowRow};

/// Who the history names for a measurement.
const ACTOR: &str = "closeloop-trends";
/// How long an instance holds the right to publish an effect (wall clock): far longer
/// than a publish takes, short enough that a crash delays the event only a little.
const CLAIM_MS: i64 = 60_000;
/// The chart and the `series` split each window into this many buckets (days, for the
/// default week).
const BUCKETS_PER_WINDOW: i64 = 7;

/// How effects are measured.
#[derive(Debug, Clone)]
pub struct Settings {
    pub refresh: Duration,
    pub rules: EffectConfig,
}

/// Measures the effects every [`Settings::refresh`] until `stop`.
pub(crate) async fn keep_measured(
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut every = tokio::time::interval(ctx.effect.refresh);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        match measure(&ctx).await {
            Ok(published) if published > 0 => tracing::info!(published, "effects measured"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not measure the effects; trying again"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MeasureError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("effect cannot be stored: {0}")]
    Json(#[from] serde_json::Error),
}

/// Measures every resolved action whose effect is not final and announced; returns how
/// many `effect_measured` events were published.
pub(crate) async fn measure(ctx: &Context) -> Result<usize, MeasureError> {
    let Some(clock_ms) = ctx.store.event_clock().await? else {
        return Ok(0);
    };
    let mut published = 0;
    for due in ctx.store.effects_due().await? {
        let effect = measure_one(ctx, &due, clock_ms).await?;
        let row = EffectRow {
            action_id: due.action_id.clone(),
            resolved_at_ms: due.resolved_at_ms,
            verdict: effect.verdict.as_str().to_owned(),
            is_final: effect.verdict != EffectVerdict::TooEarly,
            effect_json: serde_json::to_string(&effect)?,
            announced: false,
        };
        ctx.store.store_effect(&row).await?;
        if row.is_final && announce(ctx, &due).await? {
            published += 1;
        }
    }
    Ok(published)
}

/// The effect of `due`'s resolution as the store holds it now.
async fn measure_one(
    ctx: &Context,
    due: &DueRow,
    clock_ms: i64,
) -> Result<ActionEffect, sqlx::Error> {
    let rules = &ctx.effect.rules;
    let resolved = due.resolved_at_ms;
    let (from, to) = (
        resolved.saturating_sub(rules.window_ms),
        resolved.saturating_add(rules.window_ms),
    );
    let before = ctx.store.window_counts(&due.theme, from, resolved).await?;
    let after = ctx.store.window_counts(&due.theme, resolved, to).await?;
    let bucket_ms = (rules.window_ms / BUCKETS_PER_WINDOW).max(1);
    let series = ctx
        .store
        .window_series(&due.theme, from, to, bucket_ms)
        .await?
        .into_iter()
        .map(|(bucket, counts)| EvidenceBucket {
            start: time(from.saturating_add(bucket.saturating_mul(bucket_ms))),
            counts: evidence_counts(counts),
        })
        .collect();
    let effect = closeloop_trend::effect::assess(
        rules,
        window_counts(before),
        window_counts(after),
        clock_ms.saturating_sub(resolved),
    );
    Ok(action_effect(&effect, from, resolved, to, clock_ms, series))
}

/// Publishes the final effect of `due` once: under the theme's transition lock (no
/// reopen in between), only if the action is still resolved by the same resolution, and
/// only by the instance that claimed it in the store (replicas share the database).
/// `true` when it was published now.
async fn announce(ctx: &Context, due: &DueRow) -> Result<bool, MeasureError> {
    let _transition = ctx.transitions.of_theme(&due.theme).await;
    let Some(row) = ctx.store.action(&due.action_id).await? else {
        return Ok(false);
    };
    let current =
        row.status == ActionStatus::Resolved && row.resolved_at_ms == Some(due.resolved_at_ms);
    let Some(stored) = ctx.store.effect(&due.action_id, due.resolved_at_ms).await? else {
        return Ok(false);
    };
    if !current || !stored.is_final || stored.announced {
        return Ok(false);
    }
    let effect: ActionEffect = serde_json::from_str(&stored.effect_json)?;
    let now_ms = Utc::now().timestamp_millis();
    if !ctx
        .store
        .claim_effect(
            &due.action_id,
            due.resolved_at_ms,
            now_ms,
            now_ms + CLAIM_MS,
        )
        .await?
    {
        return Ok(false);
    }
    let Ok(mut action) = Action::from_row(&row, ctx.theme_name(&row.theme)) else {
        tracing::error!(action_id = %row.action_id, "stored action cannot be read; effect not published");
        return Ok(false);
    };
    let verdict = effect.verdict;
    action.effect = Some(effect);
    let envelope = Envelope::new(action.event(ActionEventKind::EffectMeasured));
    if let Err(error) = ctx.publisher.publish(&envelope, None).await {
        // Stays unannounced: the next round publishes it.
        tracing::warn!(action_id = %row.action_id, %error, "effect_measured not acknowledged; trying again");
        ctx.store
            .release_effect(&due.action_id, due.resolved_at_ms)
            .await?;
        return Ok(false);
    }
    ctx.store
        .mark_effect_announced(&due.action_id, due.resolved_at_ms)
        .await?;
    ctx.metrics.effect_verdict(verdict.as_str());
    ctx.metrics.event(ActionEventKind::EffectMeasured.as_str());
    let entry = LogRow {
        at_ms: Utc::now().timestamp_millis(),
        kind: ActionEventKind::EffectMeasured.as_str().into(),
        actor: ACTOR.into(),
        note: Some(verdict.as_str().to_owned()),
    };
    ctx.log(&envelope, &row.action_id, &entry).await;
    tracing::info!(action_id = %row.action_id, theme = %row.theme, verdict = verdict.as_str(), "effect measured");
    Ok(true)
}

/// The stored effect of `row`'s current resolution, for the API and `/ops`: none unless
/// the action is resolved (a reopened action's effect is moot) and measured.
pub(crate) async fn of(
    ctx: &Context,
    row: &ActionRow,
) -> Result<Option<ActionEffect>, sqlx::Error> {
    let (ActionStatus::Resolved, Some(resolved_at_ms)) = (row.status, row.resolved_at_ms) else {
        return Ok(None);
    };
    let Some(stored) = ctx.store.effect(&row.action_id, resolved_at_ms).await? else {
        return Ok(None);
    };
    match serde_json::from_str(&stored.effect_json) {
        Ok(effect) => Ok(Some(effect)),
        Err(error) => {
            tracing::error!(action_id = %row.action_id, %error, "stored effect cannot be read");
            Ok(None)
        }
    }
}

fn window_counts(row: WindowRow) -> WindowCounts {
    let counts = evidence_counts(row);
    WindowCounts {
        mentions: counts.mentions,
        negative_mentions: counts.negative_mentions,
        distinct_customers: counts.distinct_customers,
    }
}

fn evidence_counts(row: WindowRow) -> EvidenceCounts {
    let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    EvidenceCounts {
        mentions: count(row.mentions),
        negative_mentions: count(row.negative_mentions),
        distinct_customers: count(row.distinct_customers),
    }
}

/// The verdict as `actions.v1` carries it.
fn event_verdict(verdict: Verdict) -> EffectVerdict {
    match verdict {
        Verdict::Improved => EffectVerdict::Improved,
        Verdict::NoChange => EffectVerdict::NoChange,
        Verdict::Worse => EffectVerdict::Worse,
        Verdict::TooEarly => EffectVerdict::TooEarly,
        Verdict::NotEnoughData => EffectVerdict::NotEnoughData,
    }
}

/// The pure assessment with its windows, as the API and `actions.v1` show it.
fn action_effect(
    effect: &Effect,
    before_start_ms: i64,
    resolved_at_ms: i64,
    after_end_ms: i64,
    clock_ms: i64,
    series: Vec<EvidenceBucket>,
) -> ActionEffect {
    let counts = |w: WindowCounts| EvidenceCounts {
        mentions: w.mentions,
        negative_mentions: w.negative_mentions,
        distinct_customers: w.distinct_customers,
    };
    ActionEffect {
        verdict: event_verdict(effect.verdict),
        reopen_suggested: effect.verdict.suggests_reopen(),
        before_start: time(before_start_ms),
        resolved_at: time(resolved_at_ms),
        after_end: time(after_end_ms),
        before: counts(effect.before),
        after: counts(effect.after),
        negative_per_day_before: effect.negative_per_day_before,
        negative_per_day_after: effect.negative_per_day_after,
        negative_share_before: effect.before.negative_share(),
        negative_share_after: effect.after.negative_share(),
        change: effect.change,
        p_rate_lower: effect.rate_p.map(|p| p.lower),
        p_rate_higher: effect.rate_p.map(|p| p.higher),
        p_share_lower: effect.share_p.map(|p| p.lower),
        p_share_higher: effect.share_p.map(|p| p.higher),
        measured_at: time(clock_ms),
        series,
    }
}
