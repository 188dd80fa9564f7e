//! The state of one theme: bucketed counts by event time, the surge window sliding over
//! them, the learned baseline, the recurrence periods and the hysteresis.
//!
//! Everything is driven by event time only. The theme's *watermark* is the newest event
//! time seen; a mention older than `watermark - allowed_lateness` is too late. A bucket
//! leaves the surge window when the window slides past it, and is *folded* into the
//! baseline once no late mention can reach it any more — so the baseline never includes
//! the window it is compared with, and a late mention never changes a folded bucket.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::DetectorConfig;
use crate::poisson;
use crate::{Mention, Observation, Signal, Trigger, WindowStats};

/// How far one observed season moves a seasonal slot towards it: a week-old day still
/// weighs 0.7^7 ≈ 8%, so the profile adapts within a week without following one odd day.
const SEASONAL_WEIGHT: f64 = 0.3;
/// Variance of an exponentially weighted mean of Poisson counts, per unit of its mean:
/// w / (2 - w).
const SEASONAL_VARIANCE_FACTOR: f64 = SEASONAL_WEIGHT / (2.0 - SEASONAL_WEIGHT);

/// Counts of some mentions: all of them, the negative ones, negatives per customer.
#[derive(Debug, Default, Clone)]
struct Counts {
    mentions: u32,
    negative: u32,
    per_customer: HashMap<String, u32>,
}

impl Counts {
    fn add(&mut self, mention: &Mention) {
        self.mentions += 1;
        if mention.negative {
            self.negative += 1;
            *self
                .per_customer
                .entry(mention.customer_id.clone())
                .or_default() += 1;
        }
    }

    /// Negative mentions with each customer counted at most `cap` times.
    fn capped(&self, cap: u32) -> u32 {
        self.per_customer.values().map(|&n| n.min(cap)).sum()
    }
}

/// One bucket: `all` feeds the baseline; `windowed` is the part the surge window
/// currently counts (empty again after a resolution: those complaints were answered).
#[derive(Debug, Default)]
struct Bucket {
    all: Counts,
    windowed: Counts,
}

/// The surge window's running totals, kept incrementally so an observation is O(1).
#[derive(Debug, Default)]
struct Window {
    counts: Counts,
    capped: u32,
}

impl Window {
    fn add(&mut self, mention: &Mention, cap: u32) {
        self.counts.add(mention);
        if mention.negative && self.counts.per_customer[&mention.customer_id] <= cap {
            self.capped += 1;
        }
    }

    fn remove(&mut self, leaving: &Counts, cap: u32) {
        self.counts.mentions -= leaving.mentions;
        self.counts.negative -= leaving.negative;
        for (customer, &n) in &leaving.per_customer {
            if let Some(total) = self.counts.per_customer.get_mut(customer) {
                let before = (*total).min(cap);
                *total -= n.min(*total);
                self.capped -= before - (*total).min(cap);
                if *total == 0 {
                    self.counts.per_customer.remove(customer);
                }
            }
        }
    }
}

/// The theme's normal level of (capped) negative mentions per bucket.
#[derive(Debug, Default)]
struct Baseline {
    /// Exponentially weighted mean over recent buckets.
    recent: f64,
    /// Per bucket-of-the-season mean; `None` until that time of the season was seen.
    seasonal: Vec<Option<f64>>,
    /// The next bucket index to fold.
    next_fold: i64,
    /// Buckets folded so far (for the statistics).
    folded: u64,
}

#[derive(Debug, Clone)]
struct Active {
    since_ms: i64,
    last_fired_ms: i64,
    trigger: Trigger,
    evidence_start_ms: i64,
}

/// Read-only view of a theme for the ops API.
#[derive(Debug, Clone, PartialEq)]
pub struct ThemeStats {
    pub watermark_ms: i64,
    pub window: WindowStats,
    /// The learned level, in negative mentions per window (before the floor).
    pub baseline_per_window: f64,
    /// Distinct complaining customers per recurrence period, oldest first, as
    /// (period start, customers).
    pub periods: Vec<(i64, u32)>,
    /// Whether the theme is raised (in hysteresis) and since when (event time).
    pub active_since_ms: Option<i64>,
    pub dropped_late: u64,
    pub resolved_at_ms: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct ThemeState {
    watermark: i64,
    resolved_at: Option<i64>,
    buckets: BTreeMap<i64, Bucket>,
    /// The oldest bucket index the window counts (buckets below it have left).
    window_first: i64,
    window: Window,
    baseline: Baseline,
    /// Distinct negative customers per recurrence period index (the last `n` only).
    periods: BTreeMap<i64, HashSet<String>>,
    active: Option<Active>,
    dropped_late: u64,
}

impl ThemeState {
    /// A theme whose first mention is at `at_ms`.
    pub(crate) fn new(config: &DetectorConfig, at_ms: i64) -> Self {
        let bucket = bucket_of(config, at_ms);
        let season_slots = if config.surge.season_ms > 0 {
            (config.surge.season_ms / config.bucket_ms) as usize
        } else {
            0
        };
        Self {
            watermark: at_ms,
            resolved_at: None,
            buckets: BTreeMap::new(),
            window_first: bucket - config.window_buckets() + 1,
            window: Window::default(),
            baseline: Baseline {
                seasonal: vec![None; season_slots],
                // The lowest bucket a mention accepted from now on can land in.
                next_fold: bucket_of(config, at_ms - config.allowed_lateness_ms),
                ..Baseline::default()
            },
            periods: BTreeMap::new(),
            active: None,
            dropped_late: 0,
        }
    }

    pub(crate) fn resolved_at(&self) -> Option<i64> {
        self.resolved_at
    }

    pub(crate) fn observe(&mut self, config: &DetectorConfig, mention: &Mention) -> Observation {
        if mention.at_ms < self.watermark - config.allowed_lateness_ms {
            self.dropped_late += 1;
            return Observation::TooLate;
        }
        if mention.at_ms > self.watermark {
            self.advance(config, mention.at_ms);
        }
        if self.resolved_at.is_some_and(|at| mention.at_ms <= at) {
            // Answered by the resolution: part of the theme's history (the baseline),
            // not of the current incident.
            self.buckets
                .entry(bucket_of(config, mention.at_ms))
                .or_default()
                .all
                .add(mention);
            return Observation::BeforeResolution;
        }
        self.count(config, mention);
        self.evaluate(config)
    }

    /// After [`ThemeState::resolve`] with a resolution learnt late (made on another
    /// instance): counts the mentions given after it into the window and the periods
    /// again — they are in the baseline already — and re-evaluates.
    pub(crate) fn recount(
        &mut self,
        config: &DetectorConfig,
        mentions: &[Mention],
    ) -> Option<Signal> {
        let cap = config.surge.per_customer_cap;
        let oldest_period = period_of(config, self.watermark) - i64::from(config.recurrence.n) + 1;
        for mention in mentions {
            if self.resolved_at.is_some_and(|at| mention.at_ms <= at)
                || mention.at_ms > self.watermark
            {
                continue;
            }
            let index = bucket_of(config, mention.at_ms);
            if index >= self.window_first {
                self.buckets.entry(index).or_default().windowed.add(mention);
                self.window.add(mention, cap);
            }
            let period = period_of(config, mention.at_ms);
            if mention.negative && period >= oldest_period {
                self.periods
                    .entry(period)
                    .or_default()
                    .insert(mention.customer_id.clone());
            }
        }
        self.evaluate(config).signal().cloned()
    }

    /// Moves the watermark to `to_ms`: slides the window, folds what can no longer
    /// change into the baseline and forgets recurrence periods that fell out.
    fn advance(&mut self, config: &DetectorConfig, to_ms: i64) {
        self.watermark = to_ms;
        let current = bucket_of(config, to_ms);
        let first = current - config.window_buckets() + 1;
        let cap = config.surge.per_customer_cap;
        if first > self.window_first {
            for (_, bucket) in self.buckets.range(self.window_first..first) {
                self.window.remove(&bucket.windowed, cap);
            }
            self.window_first = first;
        }
        let settled = (to_ms - config.allowed_lateness_ms).div_euclid(config.bucket_ms);
        self.fold_until(config, first.min(settled));
        let oldest_period = period_of(config, to_ms) - i64::from(config.recurrence.n) + 1;
        self.periods = self.periods.split_off(&oldest_period);
    }

    fn fold_until(&mut self, config: &DetectorConfig, limit: i64) {
        let alpha =
            1.0 - 0.5f64.powf(config.bucket_ms as f64 / config.surge.baseline_half_life_ms as f64);
        while self.baseline.next_fold < limit {
            let start = self.baseline.next_fold;
            let present = self.buckets.range(start..limit).next().map(|(&i, _)| i);
            let gap_end = present.unwrap_or(limit);
            if gap_end > start {
                self.fold_empty(alpha, start, gap_end - start);
            }
            if let Some(index) = present {
                let counted = self
                    .buckets
                    .remove(&index)
                    .map(|b| b.all.capped(config.surge.per_customer_cap))
                    .unwrap_or(0);
                self.fold_one(alpha, index, f64::from(counted));
                self.baseline.next_fold = index + 1;
            } else {
                self.baseline.next_fold = limit;
            }
        }
    }

    fn fold_one(&mut self, alpha: f64, index: i64, value: f64) {
        let baseline = &mut self.baseline;
        baseline.recent += alpha * (value - baseline.recent);
        if !baseline.seasonal.is_empty() {
            let slot = index.rem_euclid(baseline.seasonal.len() as i64) as usize;
            let seasonal = &mut baseline.seasonal[slot];
            *seasonal = Some(match *seasonal {
                Some(mean) => mean + SEASONAL_WEIGHT * (value - mean),
                None => value,
            });
        }
        baseline.folded += 1;
    }

    /// Folds `count` buckets without mentions from `start` on, in closed form: a long
    /// silence costs the same as a short one.
    fn fold_empty(&mut self, alpha: f64, start: i64, count: i64) {
        let baseline = &mut self.baseline;
        baseline.recent *= (1.0 - alpha).powf(count as f64);
        let slots = baseline.seasonal.len() as i64;
        if slots > 0 {
            let cycles = count / slots;
            let rest = count % slots;
            for offset in 0..slots.min(count) {
                let slot = (start + offset).rem_euclid(slots) as usize;
                let folds = cycles + i64::from(offset < rest);
                let keep = (1.0 - SEASONAL_WEIGHT).powf(folds as f64);
                let seasonal = &mut baseline.seasonal[slot];
                *seasonal = Some(seasonal.map_or(0.0, |mean| mean * keep));
            }
        }
        baseline.folded += count as u64;
    }

    fn count(&mut self, config: &DetectorConfig, mention: &Mention) {
        let index = bucket_of(config, mention.at_ms);
        let bucket = self.buckets.entry(index).or_default();
        bucket.all.add(mention);
        if index >= self.window_first {
            bucket.windowed.add(mention);
            self.window.add(mention, config.surge.per_customer_cap);
        }
        if mention.negative {
            let period = period_of(config, mention.at_ms);
            let oldest = period_of(config, self.watermark) - i64::from(config.recurrence.n) + 1;
            if period >= oldest {
                self.periods
                    .entry(period)
                    .or_default()
                    .insert(mention.customer_id.clone());
            }
        }
    }

    /// The expected negative mentions in the current window: per bucket the larger of
    /// the recent level and the seasonal level for that time of the season (busy
    /// mornings are normal if every morning is busy), the newest bucket pro rata, plus
    /// the seasonal estimate's standard error, and never below the configured floor.
    fn expected(&self, config: &DetectorConfig) -> f64 {
        let current = bucket_of(config, self.watermark);
        let elapsed =
            (self.watermark - current * config.bucket_ms + 1) as f64 / config.bucket_ms as f64;
        let slots = self.baseline.seasonal.len() as i64;
        let mut expected = 0.0;
        let mut seasonal_variance = 0.0;
        for index in self.window_first..=current {
            let seasonal = if slots > 0 {
                self.baseline.seasonal[index.rem_euclid(slots) as usize].unwrap_or(0.0)
            } else {
                0.0
            };
            let share = if index == current { elapsed } else { 1.0 };
            if seasonal > self.baseline.recent {
                expected += seasonal * share;
                seasonal_variance += seasonal * share * SEASONAL_VARIANCE_FACTOR;
            } else {
                expected += self.baseline.recent * share;
            }
        }
        // A seasonal level is learnt from one observation per season, so it is noisy:
        // one standard error on top keeps a low estimate from reading as a surge.
        (expected + seasonal_variance.sqrt()).max(config.surge.min_baseline)
    }

    fn window_stats(&self, config: &DetectorConfig) -> WindowStats {
        let expected = self.expected(config);
        let counted = self.window.capped;
        WindowStats {
            start_ms: self.window_first * config.bucket_ms,
            end_ms: self.watermark,
            mentions: self.window.counts.mentions,
            negative_mentions: self.window.counts.negative,
            counted_negative_mentions: counted,
            distinct_customers: self.window.counts.per_customer.len() as u32,
            expected_negative: expected,
            p_value: poisson::upper_tail(u64::from(counted), expected),
        }
    }

    fn surge(&self, config: &DetectorConfig, window: &WindowStats) -> Option<Trigger> {
        let surge = &config.surge;
        let fires = surge.enabled
            && window.counted_negative_mentions >= surge.min_negative_mentions
            && window.distinct_customers >= config.min_distinct_customers
            && f64::from(window.counted_negative_mentions)
                >= surge.min_ratio * window.expected_negative
            && window.p_value <= surge.max_p_value;
        fires.then_some(Trigger::Surge {
            expected: window.expected_negative,
            p_value: window.p_value,
        })
    }

    /// Returns the trigger and where its evidence starts (the oldest period counted).
    fn recurrence(&self, config: &DetectorConfig) -> Option<(Trigger, i64)> {
        let rule = &config.recurrence;
        if !rule.enabled {
            return None;
        }
        let above = self
            .periods
            .values()
            .filter(|customers| customers.len() >= rule.floor as usize)
            .count() as u32;
        if above < rule.k {
            return None;
        }
        let distinct: HashSet<&String> = self.periods.values().flatten().collect();
        if (distinct.len() as u32) < config.min_distinct_customers {
            return None;
        }
        let oldest = period_of(config, self.watermark) - i64::from(rule.n) + 1;
        Some((
            Trigger::Recurrence {
                periods_above_floor: above,
                periods: rule.n,
                floor: rule.floor,
                distinct_customers: distinct.len() as u32,
            },
            oldest * rule.period_ms,
        ))
    }

    /// Applies both detectors and the hysteresis to the current state.
    fn evaluate(&mut self, config: &DetectorConfig) -> Observation {
        let window = self.window_stats(config);
        let fired = match self.surge(config, &window) {
            Some(trigger) => Some((trigger, window.start_ms)),
            None => self.recurrence(config),
        };
        let now = self.watermark;
        match (fired, &mut self.active) {
            (Some((trigger, evidence_start_ms)), None) => {
                self.active = Some(Active {
                    since_ms: now,
                    last_fired_ms: now,
                    trigger: trigger.clone(),
                    evidence_start_ms,
                });
                Observation::Raised(Signal {
                    trigger,
                    window,
                    evidence_start_ms,
                    active_since_ms: now,
                })
            }
            (Some((trigger, evidence_start_ms)), Some(active)) => {
                active.last_fired_ms = now;
                active.trigger = trigger.clone();
                active.evidence_start_ms = evidence_start_ms;
                Observation::Active(Signal {
                    trigger,
                    window,
                    evidence_start_ms,
                    active_since_ms: active.since_ms,
                })
            }
            (None, Some(active)) if now - active.last_fired_ms < config.cooldown_ms => {
                Observation::Active(Signal {
                    trigger: active.trigger.clone(),
                    window,
                    evidence_start_ms: active.evidence_start_ms,
                    active_since_ms: active.since_ms,
                })
            }
            (None, _) => {
                self.active = None;
                Observation::Quiet(window)
            }
        }
    }

    /// The signal if the theme is active, without new input.
    pub(crate) fn current(&self, config: &DetectorConfig) -> Option<Signal> {
        let active = self.active.as_ref()?;
        Some(Signal {
            trigger: active.trigger.clone(),
            window: self.window_stats(config),
            evidence_start_ms: active.evidence_start_ms,
            active_since_ms: active.since_ms,
        })
    }

    /// The theme's action was resolved at `at_ms` (a time the customers can compare with
    /// when they complained): the window and the recurrence periods forget everything,
    /// mentions given up to then are ignored from now on, and the theme is quiet again.
    /// The baseline keeps its history: it describes the theme, not the incident.
    pub(crate) fn resolve(&mut self, at_ms: i64) {
        if self.resolved_at.is_some_and(|known| known >= at_ms) {
            return;
        }
        self.resolved_at = Some(at_ms);
        for bucket in self.buckets.values_mut() {
            bucket.windowed = Counts::default();
        }
        self.window = Window::default();
        self.periods.clear();
        self.active = None;
    }

    pub(crate) fn stats(&self, config: &DetectorConfig) -> ThemeStats {
        ThemeStats {
            watermark_ms: self.watermark,
            window: self.window_stats(config),
            baseline_per_window: self.baseline.recent * config.window_buckets() as f64,
            periods: self
                .periods
                .iter()
                .map(|(&index, customers)| {
                    (index * config.recurrence.period_ms, customers.len() as u32)
                })
                .collect(),
            active_since_ms: self.active.as_ref().map(|a| a.since_ms),
            dropped_late: self.dropped_late,
            resolved_at_ms: self.resolved_at,
        }
    }
}

fn bucket_of(config: &DetectorConfig, at_ms: i64) -> i64 {
    at_ms.div_euclid(config.bucket_ms)
}

fn period_of(config: &DetectorConfig, at_ms: i64) -> i64 {
    at_ms.div_euclid(config.recurrence.period_ms)
}
