//! The impact of a theme on NPS and rating: how much higher the average score of a period
//! would be without the feedback that mentions the theme negatively. Pure, like the
//! detectors: scored feedback (its NPS answer, its rating, the themes it mentions and
//! those it mentions negatively) goes into an [`ImpactTally`], a ranked list of
//! [`ThemeImpact`]s comes out, the same for the same feedback in any order.
//!
//! Per measure (NPS, average NPS answer, rating), over the feedback of the period that
//! carries that score: `N` feedback with mean `m`; the `n_T` that mention theme T
//! negatively with mean `m_T`; the other `n_R = N − n_T` with mean `m_R`. Then
//!
//! ```text
//! m = (n_T·m_T + n_R·m_R) / N
//! impact = m_R − m = (n_T / N) · (m_R − m_T)          positive: the theme costs that much
//! se     = (n_T / N) · √(s_T² / n_T + s_R² / n_R)     s²: sample variances (Welch)
//! CI     = impact ± z·se                               z = 1.96: 95 %
//! ```
//!
//! The interval treats the counts as given (the share `n_T / N` is what was observed in
//! the period) and the two group means as independent samples of unequal variance, so it
//! is the Welch interval of the difference of means scaled by the share; the normal
//! approximation is reasonable once both groups hold [`ImpactConfig::min_count`] feedback
//! with bounded scores. Below that, in either group, the answer is "not enough data"
//! rather than a number (the rest must have enough feedback too: the mean *without* the
//! theme is what is estimated). A bootstrap would need the feedback itself and random
//! numbers; the closed form needs only counts, sums and sums of squares, so it is exact
//! to recompute and cheap enough to refresh every minute.
//!
//! NPS as teams know it (% promoters − % detractors, −100 to 100) is itself a mean: of
//! 100 per promoter (9–10), 0 per passive (7–8) and −100 per detractor (0–6). The same
//! formula therefore gives a theme's impact in NPS points, alongside the average 0–10
//! answer and the average 1–5 rating.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{check, ConfigError};

/// When an impact is a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactConfig {
    /// Feedback with the score both with the theme mentioned negatively and without it
    /// that an estimate needs; fewer is "not enough data".
    pub min_count: u32,
    /// Standard normal quantile of the interval (1.96: 95 %).
    pub z: f64,
}

impl Default for ImpactConfig {
    fn default() -> Self {
        Self {
            min_count: 10,
            z: 1.96,
        }
    }
}

impl ImpactConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Two in each group at least: a sample variance needs them.
        check(self.min_count >= 2, "min_count", "must be at least 2")?;
        check(
            self.z.is_finite() && self.z > 0.0,
            "z",
            "must be a positive number",
        )
    }
}

/// Count, sum and sum of squares of a sample: enough for its mean and variance, and the
/// moments of a part subtract from those of the whole.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The sample variance (n − 1), never negative (rounding).
    pub fn variance(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        Some(((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0))
    }

    fn minus(&self, part: &Moments) -> Moments {
        Moments {
            n: self.n.saturating_sub(part.n),
            sum: self.sum - part.sum,
            sum_sq: self.sum_sq - part.sum_sq,
        }
    }
}

/// An impact with its confidence interval, in the measure's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// The impact of removing `part` (the feedback mentioning a theme negatively) from `all`
/// on the mean; `None` when either group has fewer than `min_count` feedback.
pub fn impact(all: &Moments, part: &Moments, config: &ImpactConfig) -> Option<Estimate> {
    let min = u64::from(config.min_count.max(2));
    let rest = all.minus(part);
    if part.n < min || rest.n < min {
        return None;
    }
    let share = part.n as f64 / all.n as f64;
    let value = share * (rest.mean()? - part.mean()?);
    let se = share * (part.variance()? / part.n as f64 + rest.variance()? / rest.n as f64).sqrt();
    Some(Estimate {
        value,
        ci_low: value - config.z * se,
        ci_high: value + config.z * se,
    })
}

/// What an impact is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Net Promoter Score, −100 to 100: 100 per promoter, −100 per detractor.
    Nps,
    /// The average NPS answer, 0 to 10.
    NpsScore,
    /// The average rating, 1 to 5.
    Rating,
}

impl Measure {
    pub const ALL: [Measure; 3] = [Measure::Nps, Measure::NpsScore, Measure::Rating];

    fn index(self) -> usize {
        self as usize
    }

    /// The value a feedback contributes, if it carries a valid score for the measure.
    fn value(self, scores: Scores) -> Option<f64> {
        match self {
            Measure::Nps => scores.nps.filter(|s| *s <= 10).map(|s| match s {
                9..=10 => 100.0,
                7..=8 => 0.0,
                _ => -100.0,
            }),
            Measure::NpsScore => scores.nps.filter(|s| *s <= 10).map(f64::from),
            Measure::Rating => scores.rating.filter(|r| (1..=5).contains(r)).map(f64::from),
        }
    }
}

/// The scores one feedback carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scores {
    /// NPS answer, 0–10.
    pub nps: Option<u8>,
    /// Rating, 1–5.
    pub rating: Option<u8>,
}

#[derive(Debug, Clone, Default)]
struct ThemeTally {
    mentions: u64,
    negative_mentions: u64,
    /// Per measure: the feedback mentioning the theme negatively.
    negative: [Moments; 3],
}

/// Scored feedback of a period, counted per theme.
#[derive(Debug, Clone, Default)]
pub struct ImpactTally {
    feedback: u64,
    /// Per measure: all feedback carrying the score.
    all: [Moments; 3],
    themes: BTreeMap<String, ThemeTally>,
}

/// One measure over the whole period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Overall {
    /// Feedback carrying the score.
    pub count: u64,
    /// Their mean (`None` without any).
    pub mean: Option<f64>,
}

/// A theme's impact on each measure: `None` is "not enough data".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThemeImpact {
    pub theme: String,
    /// Scored feedback mentioning the theme, and mentioning it negatively.
    pub mentions: u64,
    pub negative_mentions: u64,
    /// `negative_mentions / feedback`: the share of the scored feedback that would go.
    pub negative_share: f64,
    /// Negatively mentioning feedback that carries an NPS answer, and a rating.
    pub nps_count: u64,
    pub rating_count: u64,
    pub nps: Option<Estimate>,
    pub nps_score: Option<Estimate>,
    pub rating: Option<Estimate>,
}

impl ThemeImpact {
    pub fn of(&self, measure: Measure) -> Option<Estimate> {
        match measure {
            Measure::Nps => self.nps,
            Measure::NpsScore => self.nps_score,
            Measure::Rating => self.rating,
        }
    }
}

/// Every theme's impact, what costs most first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactRanking {
    /// Scored feedback (an NPS answer, a rating or both).
    pub feedback: u64,
    pub nps: Overall,
    pub nps_score: Overall,
    pub rating: Overall,
    pub themes: Vec<ThemeImpact>,
}

impl ImpactTally {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one feedback: its scores, the themes it mentions, and those of them it
    /// mentions negatively. Feedback without a valid score is not counted.
    pub fn add<'a>(
        &mut self,
        scores: Scores,
        mentioned: impl IntoIterator<Item = &'a str>,
        negative: impl IntoIterator<Item = &'a str>,
    ) {
        let values = Measure::ALL.map(|m| m.value(scores));
        if values.iter().all(Option::is_none) {
            return;
        }
        self.feedback += 1;
        for (moments, value) in self.all.iter_mut().zip(values) {
            if let Some(x) = value {
                moments.add(x);
            }
        }
        for theme in mentioned {
            self.themes.entry(theme.to_owned()).or_default().mentions += 1;
        }
        for theme in negative {
            let tally = self.themes.entry(theme.to_owned()).or_default();
            tally.negative_mentions += 1;
            for (moments, value) in tally.negative.iter_mut().zip(values) {
                if let Some(x) = value {
                    moments.add(x);
                }
            }
        }
    }

    /// Each theme's impact, ranked: the largest NPS impact first, then the largest rating
    /// impact, themes without enough data after those with, then by negative mentions
    /// and by id.
    pub fn rank(&self, config: &ImpactConfig) -> ImpactRanking {
        let overall = |m: Measure| Overall {
            count: self.all[m.index()].n,
            mean: self.all[m.index()].mean(),
        };
        let mut themes: Vec<ThemeImpact> = self
            .themes
            .iter()
            .map(|(theme, tally)| {
                let estimate =
                    |m: Measure| impact(&self.all[m.index()], &tally.negative[m.index()], config);
                ThemeImpact {
                    theme: theme.clone(),
                    mentions: tally.mentions,
                    negative_mentions: tally.negative_mentions,
                    negative_share: tally.negative_mentions as f64 / self.feedback as f64,
                    nps_count: tally.negative[Measure::Nps.index()].n,
                    rating_count: tally.negative[Measure::Rating.index()].n,
                    nps: estimate(Measure::Nps),
                    nps_score: estimate(Measure::NpsScore),
                    rating: estimate(Measure::Rating),
                }
            })
            .collect();
        // Larger first, a number before "not enough data".
        let key = |e: Option<Estimate>| e.map_or(f64::NEG_INFINITY, |e| e.value);
        themes.sort_by(|a, b| {
            key(b.nps)
                .total_cmp(&key(a.nps))
                .then(key(b.rating).total_cmp(&key(a.rating)))
                .then(b.negative_mentions.cmp(&a.negative_mentions))
                .then(a.theme.cmp(&b.theme))
        });
        ImpactRanking {
            feedback: self.feedback,
            nps: overall(Measure::Nps),
            nps_score: overall(Measure::NpsScore),
            rating: overall(Measure::Rating),
            themes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-9,
            "{actual} is not {expected}"
        );
    }

    fn moments(values: &[f64]) -> Moments {
        let mut m = Moments::default();
        for v in values {
            m.add(*v);
        }
        m
    }

    #[test]
    fn moments_give_the_mean_and_the_sample_variance() {
        let m = moments(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        close(m.mean().unwrap(), 5.0);
        close(m.variance().unwrap(), 32.0 / 7.0);
        assert_eq!(moments(&[3.0]).variance(), None);
        assert_eq!(Moments::default().mean(), None);
    }

    #[test]
    fn the_impact_is_the_share_times_the_gap_with_a_welch_interval() {
        // Theme: 2, 2, 4, 4 (mean 3, s² = 4/3); rest: 8, 8, 10, 10 (mean 9, s² = 4/3).
        // All 8: mean 6. Without the theme: 9. Impact 3 = 4/8 · (9 − 3).
        // se = 1/2 · √(4/3/4 + 4/3/4) = 1/2 · √(2/3).
        let part = moments(&[2.0, 2.0, 4.0, 4.0]);
        let all = moments(&[2.0, 2.0, 4.0, 4.0, 8.0, 8.0, 10.0, 10.0]);
        let config = ImpactConfig {
            min_count: 4,
            z: 1.96,
        };
        let e = impact(&all, &part, &config).expect("enough data");
        close(e.value, 3.0);
        close(
            e.value,
            all.minus(&part).mean().unwrap() - all.mean().unwrap(),
        );
        let se = 0.5 * (2.0f64 / 3.0).sqrt();
        close(e.ci_low, 3.0 - 1.96 * se);
        close(e.ci_high, 3.0 + 1.96 * se);
    }

    #[test]
    fn too_few_on_either_side_is_not_enough_data() {
        let config = ImpactConfig {
            min_count: 3,
            z: 1.96,
        };
        let all = moments(&[1.0, 1.0, 5.0, 5.0, 5.0]);
        assert!(impact(&all, &moments(&[1.0, 1.0]), &config).is_none());
        // Three with the theme, only two without.
        assert!(impact(&all, &moments(&[1.0, 1.0, 5.0]), &config).is_none());
        let all = moments(&[1.0, 1.0, 5.0, 5.0, 5.0, 5.0]);
        assert!(impact(&all, &moments(&[1.0, 1.0, 5.0]), &config).is_some());
    }

    #[test]
    fn nps_counts_promoters_minus_detractors() {
        // 10 feedback: 4 promoters, 2 passives, 4 detractors → NPS 0.
        // Delivery is mentioned negatively by the 4 detractors (answers 0, 2, 4, 6):
        // without them 4 promoters of 6 → NPS 66.67; impact 66.67.
        let mut tally = ImpactTally::new();
        for answer in [9, 10, 9, 10, 7, 8] {
            tally.add(
                Scores {
                    nps: Some(answer),
                    rating: None,
                },
                ["app"],
                [],
            );
        }
        for answer in [0, 2, 4, 6] {
            tally.add(
                Scores {
                    nps: Some(answer),
                    rating: Some(1),
                },
                ["delivery", "app"],
                ["delivery"],
            );
        }
        let config = ImpactConfig {
            min_count: 2,
            z: 1.96,
        };
        let ranking = tally.rank(&config);
        assert_eq!(ranking.feedback, 10);
        close(ranking.nps.mean.unwrap(), 0.0);
        close(ranking.nps_score.mean.unwrap(), 65.0 / 10.0);
        assert_eq!(ranking.rating.count, 4);
        let delivery = &ranking.themes[0];
        assert_eq!(delivery.theme, "delivery");
        assert_eq!((delivery.mentions, delivery.negative_mentions), (4, 4));
        close(delivery.negative_share, 0.4);
        let nps = delivery.nps.expect("enough data");
        close(nps.value, 200.0 / 3.0);
        // Detractors only on one side: s_T = 0; the rest: values 100×4, 0×2 →
        // mean 200/3, s² = (4·(100/3)² + 2·(200/3)²) / 5 = 16000/9 … se = 0.4·√(s²/6).
        let s2_rest = (4.0 * (100.0f64 / 3.0).powi(2) + 2.0 * (200.0f64 / 3.0).powi(2)) / 5.0;
        let se = 0.4 * (s2_rest / 6.0).sqrt();
        close(nps.ci_high - nps.value, 1.96 * se);
        // Average answer: all 65/10, without the four detractors 53/6 → impact 7/3
        // = 0.4 · (53/6 − 12/4).
        close(delivery.nps_score.unwrap().value, 7.0 / 3.0);
        // Every rated feedback mentions delivery: no rest to compare with.
        assert_eq!(delivery.rating, None);
        let app = &ranking.themes[1];
        assert_eq!((app.mentions, app.negative_mentions), (10, 0));
        assert_eq!(app.nps, None, "no negative mentions");
    }

    #[test]
    fn themes_are_ranked_by_what_they_cost_and_unscored_feedback_is_ignored() {
        let mut tally = ImpactTally::new();
        let scored = |nps| Scores {
            nps: Some(nps),
            rating: None,
        };
        for _ in 0..4 {
            tally.add(scored(10), [], []);
            tally.add(scored(0), ["a"], ["a"]);
            tally.add(scored(5), ["b"], ["b"]);
        }
        tally.add(Scores::default(), ["a", "c"], ["a", "c"]);
        tally.add(
            Scores {
                nps: Some(11),
                rating: Some(9),
            },
            ["c"],
            ["c"],
        );
        let ranking = tally.rank(&ImpactConfig {
            min_count: 2,
            z: 1.96,
        });
        assert_eq!(ranking.feedback, 12);
        let order: Vec<&str> = ranking.themes.iter().map(|t| t.theme.as_str()).collect();
        assert_eq!(order, ["a", "b"]);
        // a: all mean 5, without a's four zeros 7.5 → 2.5; b: without the fives 5 → 0.
        close(ranking.themes[0].nps_score.unwrap().value, 2.5);
        close(ranking.themes[1].nps_score.unwrap().value, 0.0);
    }

    #[test]
    fn the_config_is_checked() {
        assert!(ImpactConfig::default().validate().is_ok());
        let config = ImpactConfig {
            min_count: 1,
            z: 1.96,
        };
        assert!(config.validate().is_err());
        let config = ImpactConfig {
            min_count: 10,
            z: f64::NAN,
        };
        assert!(config.validate().is_err());
    }
}
