//! Did "we did" work? The effect of a resolved action: the theme's counts in the window
//! of event time before the resolution against the same-length window after it.
//!
//! Two conditional tests that fit counts, both one-sided each way:
//!
//! - **rate**: with equal windows and an unchanged rate, the after window's share of the
//!   `n = before + after` negative mentions is Binomial(n, ½) (the Poisson rate
//!   comparison conditioned on the total).
//! - **share**: the negative share of the theme's mentions, before vs after: Fisher's
//!   exact test (negatives among the after window's mentions are hypergeometric when
//!   the share did not change).
//!
//! A *seasonal dip* — fewer orders, so fewer mentions of every kind — lowers the negative
//! count but not the share; it must not be called "improved". So the verdict is
//! `improved` only when both the rate and the share fell significantly, `worse` only
//! when both rose (a seasonal peak is not "worse" either), else `no_change`. Before the
//! after window has passed in event time it is `too_early`; with fewer than
//! `min_negative_mentions` negatives in both windows together, `not_enough_data`.

use serde::{Deserialize, Serialize};

use crate::poisson::{binomial_tails, hypergeometric_tails};

const DAY_MS: f64 = 86_400_000.0;

/// How an effect is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectConfig {
    /// Length of each window (before and after the resolution), ms of event time.
    pub window_ms: i64,
    /// Fewer negative mentions than this in both windows together: not enough data.
    pub min_negative_mentions: u32,
    /// A one-sided p-value below this is a significant change.
    pub max_p_value: f64,
}

impl Default for EffectConfig {
    fn default() -> Self {
        Self {
            window_ms: 7 * 86_400_000,
            min_negative_mentions: 10,
            max_p_value: 0.05,
        }
    }
}

/// The verdict on a resolved action's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Negative mentions per day and their share both fell significantly.
    Improved,
    /// Neither fell (or rose) significantly in both measures.
    NoChange,
    /// Negative mentions per day and their share both rose significantly.
    Worse,
    /// The after window has not passed yet in event time.
    TooEarly,
    /// Too few negative mentions in the two windows to tell.
    NotEnoughData,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Improved,
        Verdict::NoChange,
        Verdict::Worse,
        Verdict::TooEarly,
        Verdict::NotEnoughData,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::NoChange => "no_change",
            Verdict::Worse => "worse",
            Verdict::TooEarly => "too_early",
            Verdict::NotEnoughData => "not_enough_data",
        }
    }

    /// Parses the `as_str` form.
    pub fn parse(verdict: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == verdict)
    }

    /// Whether the verdict can no longer change (the after window has passed).
    pub fn is_final(self) -> bool {
        self != Verdict::TooEarly
    }

    /// Whether an operator should decide on reopening the action: the fix did not show.
    pub fn suggests_reopen(self) -> bool {
        matches!(self, Verdict::Worse | Verdict::NoChange)
    }
}

/// A theme's counts in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCounts {
    pub mentions: u32,
    pub negative_mentions: u32,
    /// Distinct customers among the negative mentions.
    pub distinct_customers: u32,
}

impl WindowCounts {
    /// `negative_mentions / mentions`, 0 without mentions.
    pub fn negative_share(&self) -> f64 {
        if self.mentions == 0 {
            0.0
        } else {
            f64::from(self.negative_mentions) / f64::from(self.mentions)
        }
    }
}

/// One-sided p-values of a change, each way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tails {
    /// P(a result at least this low | no change).
    pub lower: f64,
    /// P(a result at least this high | no change).
    pub higher: f64,
}

/// The effect of a resolution: the counts, rates and tests behind the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub verdict: Verdict,
    pub before: WindowCounts,
    /// The after window so far (complete unless `too_early`).
    pub after: WindowCounts,
    pub negative_per_day_before: f64,
    /// Per day of the after window's elapsed part.
    pub negative_per_day_after: f64,
    /// `(after - before) / before` of the negative mentions per day; `None` when there
    /// were none before.
    pub change: Option<f64>,
    /// The rate test (binomial given the total); `None` while too early.
    pub rate_p: Option<Tails>,
    /// The share test (Fisher's exact); `None` while too early.
    pub share_p: Option<Tails>,
}

/// Judges the effect from the two windows' counts. `elapsed_ms` is how much of the after
/// window has passed in event time (clamped to the window): the verdict is final once
/// it reaches `config.window_ms`.
pub fn assess(
    config: &EffectConfig,
    before: WindowCounts,
    after: WindowCounts,
    elapsed_ms: i64,
) -> Effect {
    let window_days = config.window_ms.max(1) as f64 / DAY_MS;
    let elapsed_days = elapsed_ms.clamp(1, config.window_ms.max(1)) as f64 / DAY_MS;
    let per_day_before = f64::from(before.negative_mentions) / window_days;
    let per_day_after = f64::from(after.negative_mentions) / elapsed_days;
    let change =
        (before.negative_mentions > 0).then(|| (per_day_after - per_day_before) / per_day_before);
    let mut effect = Effect {
        verdict: Verdict::TooEarly,
        before,
        after,
        negative_per_day_before: per_day_before,
        negative_per_day_after: per_day_after,
        change,
        rate_p: None,
        share_p: None,
    };
    if elapsed_ms < config.window_ms {
        return effect;
    }
    let (b, a) = (
        u64::from(before.negative_mentions),
        u64::from(after.negative_mentions),
    );
    let (lower, higher) = binomial_tails(a, a + b, 0.5);
    let rate = Tails { lower, higher };
    // Negatives among the after window's mentions, out of all mentions of both windows.
    // Counts are checked: a window cannot hold more negatives than mentions.
    let mentions = |w: WindowCounts| u64::from(w.mentions.max(w.negative_mentions));
    let (lower, higher) = hypergeometric_tails(
        a,
        mentions(after),
        a + b,
        mentions(before) + mentions(after),
    );
    let share = Tails { lower, higher };
    let alpha = config.max_p_value;
    effect.verdict = if a + b < u64::from(config.min_negative_mentions) {
        Verdict::NotEnoughData
    } else if rate.lower < alpha && share.lower < alpha {
        Verdict::Improved
    } else if rate.higher < alpha && share.higher < alpha {
        Verdict::Worse
    } else {
        Verdict::NoChange
    };
    effect.rate_p = Some(rate);
    effect.share_p = Some(share);
    effect
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEK: i64 = 7 * 86_400_000;

    fn counts(mentions: u32, negative_mentions: u32) -> WindowCounts {
        WindowCounts {
            mentions,
            negative_mentions,
            distinct_customers: negative_mentions,
        }
    }

    fn verdict(before: WindowCounts, after: WindowCounts) -> Verdict {
        assess(&EffectConfig::default(), before, after, WEEK).verdict
    }

    #[test]
    fn fewer_complaints_among_as_many_mentions_is_improved() {
        let effect = assess(
            &EffectConfig::default(),
            counts(200, 60),
            counts(200, 20),
            WEEK,
        );
        assert_eq!(effect.verdict, Verdict::Improved);
        assert!((effect.negative_per_day_before - 60.0 / 7.0).abs() < 1e-9);
        assert!((effect.change.unwrap() + 2.0 / 3.0).abs() < 1e-9);
        assert!(effect.rate_p.unwrap().lower < 1e-4);
        assert!(effect.share_p.unwrap().lower < 1e-4);
        assert!(!effect.verdict.suggests_reopen());
    }

    #[test]
    fn the_same_level_after_is_no_change_and_suggests_a_reopen() {
        let effect = assess(
            &EffectConfig::default(),
            counts(200, 50),
            counts(190, 47),
            WEEK,
        );
        assert_eq!(effect.verdict, Verdict::NoChange);
        assert!(effect.verdict.suggests_reopen());
        assert!(effect.verdict.is_final());
    }

    #[test]
    fn more_complaints_and_a_higher_share_is_worse() {
        assert_eq!(verdict(counts(200, 20), counts(200, 60)), Verdict::Worse);
        assert!(Verdict::Worse.suggests_reopen());
    }

    #[test]
    fn a_seasonal_dip_is_not_improved() {
        // Half the mentions, half the complaints: the share did not move.
        assert_eq!(verdict(counts(400, 80), counts(200, 40)), Verdict::NoChange);
        // And a seasonal peak is not worse.
        assert_eq!(verdict(counts(200, 40), counts(400, 80)), Verdict::NoChange);
    }

    #[test]
    fn before_the_after_window_passed_it_is_too_early() {
        let effect = assess(
            &EffectConfig::default(),
            counts(200, 60),
            counts(10, 0),
            WEEK / 7,
        );
        assert_eq!(effect.verdict, Verdict::TooEarly);
        assert!(!effect.verdict.is_final() && !effect.verdict.suggests_reopen());
        assert_eq!(effect.rate_p, None);
        // The rate so far is per elapsed day.
        assert_eq!(effect.negative_per_day_after, 0.0);
    }

    #[test]
    fn few_complaints_are_not_enough_data() {
        assert_eq!(
            verdict(counts(50, 5), counts(50, 4)),
            Verdict::NotEnoughData
        );
        assert_eq!(verdict(counts(0, 0), counts(0, 0)), Verdict::NotEnoughData);
        assert!(!Verdict::NotEnoughData.suggests_reopen());
    }

    #[test]
    fn zero_after_is_improved_when_mentions_go_on() {
        assert_eq!(verdict(counts(100, 30), counts(100, 0)), Verdict::Improved);
        // Zero mentions at all after: the share cannot be tested — a volume drop to
        // nothing looks like a dip, not like a fix.
        assert_eq!(verdict(counts(100, 30), counts(0, 0)), Verdict::NoChange);
    }

    #[test]
    fn zero_before_has_no_relative_change() {
        let effect = assess(
            &EffectConfig::default(),
            counts(100, 0),
            counts(100, 30),
            WEEK,
        );
        assert_eq!(effect.change, None);
        assert_eq!(effect.verdict, Verdict::Worse);
        // Nothing at all before: no share to compare with.
        assert_eq!(verdict(counts(0, 0), counts(100, 30)), Verdict::NoChange);
    }

    #[test]
    fn inconsistent_counts_do_not_panic() {
        // More negatives than mentions (never written, but input is input).
        let effect = assess(&EffectConfig::default(), counts(3, 40), counts(1, 2), WEEK);
        assert!(effect.verdict.is_final());
    }

    #[test]
    fn verdicts_round_trip_their_names() {
        for verdict in Verdict::ALL {
            assert_eq!(Verdict::parse(verdict.as_str()), Some(verdict));
        }
        assert_eq!(Verdict::parse("better"), None);
    }
}
