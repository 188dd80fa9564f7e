//! Trend detection over theme mentions, by event time. Pure: no I/O, no clock. The same
//! set of mentions within the history horizon gives the same state and the same
//! episodes in any arrival order (late mentions count in the past buckets they belong to
//! and the detectors re-evaluate), so detection is testable with synthetic streams and a
//! restarted service rebuilds its state by replaying what it stored.
//!
//! Per theme, mentions are counted in epoch-aligned buckets of event time (all mentions,
//! negative ones, negatives per customer). Two detectors read those counts:
//!
//! - **surge**: the sliding window (the last `window` of event time) holds significantly
//!   more negative mentions than the theme's own baseline predicts — the Poisson tail
//!   probability of the count under the baseline is below `max_p_value` *and* the count
//!   is at least `min_ratio` times the baseline. The baseline is an exponentially
//!   weighted mean of past buckets, raised where needed to the learned level of the same
//!   time of day (seasonality), with a floor for themes without history.
//! - **recurrence**: in `k` of the last `n` periods (days, by default) at least `floor`
//!   distinct customers complained — the theme keeps coming back even if no single
//!   window stands out.
//!
//! Both need `min_distinct_customers` distinct complaining customers, and a customer's
//! mentions count at most `per_customer_cap` times, so one customer posting fifty times
//! neither raises a theme nor inflates its baseline. Hysteresis: once raised, a theme
//! stays active until neither detector fired for `cooldown`; a resolution resets it.
//!
//! [`effect`] judges whether a resolution worked: the theme's negative mentions per day
//! and their share, before vs after it (conditional tests that fit counts).
//!
//! [`emerging`] is the same kind of scorer for what no theme covers yet: phrases whose
//! share of recent feedback is significantly above their baseline, and [`impact`] says
//! how much each theme costs the average NPS and rating.

mod config;
pub mod effect;
pub mod emerging;
pub mod impact;
mod poisson;
mod theme;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use config::{
    span, ConfigError, DetectorConfig, DetectorSettings, RecurrenceConfig, SurgeConfig,
};
pub use effect::{Effect, EffectConfig, Verdict, WindowCounts};
pub use emerging::{EmergingConfig, Ranking, Tally, Topic, Windows};
pub use impact::{ImpactConfig, ImpactRanking, ImpactTally, Scores, ThemeImpact};
pub use poisson::upper_tail as poisson_upper_tail;
pub use theme::ThemeStats;

use theme::ThemeState;

/// One (feedback, theme) mention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    pub feedback_id: String,
    pub customer_id: String,
    pub negative: bool,
    /// Event time, Unix milliseconds.
    pub at_ms: i64,
}

/// What the surge window of a theme holds right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Start of the oldest bucket in the window.
    pub start_ms: i64,
    /// The theme's newest event time (the watermark).
    pub end_ms: i64,
    pub mentions: u32,
    pub negative_mentions: u32,
    /// Negative mentions with each customer counted at most `per_customer_cap` times:
    /// what the surge detector compares with the baseline.
    pub counted_negative_mentions: u32,
    /// Distinct customers among the negative mentions.
    pub distinct_customers: u32,
    /// What the baseline predicts for this window.
    pub expected_negative: f64,
    /// P(X >= counted | expected) under a Poisson model.
    pub p_value: f64,
}

/// Which detector fired, with the numbers that made it fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "detector", rename_all = "snake_case")]
pub enum Trigger {
    Surge {
        expected: f64,
        p_value: f64,
    },
    Recurrence {
        periods_above_floor: u32,
        periods: u32,
        floor: u32,
        distinct_customers: u32,
    },
}

impl Trigger {
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Surge { .. } => "surge",
            Trigger::Recurrence { .. } => "recurrence",
        }
    }

    /// The trigger in words, for an action's evidence.
    pub fn describe(&self, window: &WindowStats) -> String {
        match self {
            Trigger::Surge { expected, p_value } => format!(
                "surge: {} negative mentions from {} customers where {:.1} were expected (p = {:.1e})",
                window.counted_negative_mentions, window.distinct_customers, expected, p_value
            ),
            Trigger::Recurrence {
                periods_above_floor,
                periods,
                floor,
                distinct_customers,
            } => format!(
                "recurrence: >= {floor} complaining customers in {periods_above_floor} of the last \
                 {periods} periods, {distinct_customers} distinct customers"
            ),
        }
    }
}

/// The largest window counts seen during an active episode: its evidence. Unlike the
/// window at the moment a theme is raised, it does not depend on the order the mentions
/// arrived in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peak {
    pub mentions: u32,
    pub negative_mentions: u32,
    pub counted_negative_mentions: u32,
    pub distinct_customers: u32,
}

impl Peak {
    fn of(window: &WindowStats) -> Self {
        let mut peak = Self::default();
        peak.grow(window);
        peak
    }

    fn grow(&mut self, window: &WindowStats) {
        self.mentions = self.mentions.max(window.mentions);
        self.negative_mentions = self.negative_mentions.max(window.negative_mentions);
        self.counted_negative_mentions = self
            .counted_negative_mentions
            .max(window.counted_negative_mentions);
        self.distinct_customers = self.distinct_customers.max(window.distinct_customers);
    }
}

/// A theme that is raised: why, and what its window holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub trigger: Trigger,
    /// The window when a detector last fired: `end_ms` is the event time of the
    /// episode's last firing, where its evidence ends.
    pub window: WindowStats,
    /// Where the evidence for this trigger starts (the window for a surge, the oldest
    /// period for a recurrence).
    pub evidence_start_ms: i64,
    /// Event time at which the theme became active: the event time of the trigger.
    /// Mentions that arrive late can put it well before the time the signal is seen.
    pub active_since_ms: i64,
    /// The episode's largest window so far.
    pub peak: Peak,
}

impl Signal {
    /// Distinct complaining customers of the episode (its peak window): the evidence
    /// count, the same for any arrival order.
    pub fn customers(&self) -> u32 {
        self.peak.distinct_customers
    }

    /// Event time of the trigger (see [`Signal::active_since_ms`]).
    pub fn triggered_at_ms(&self) -> i64 {
        self.active_since_ms
    }
}

/// How one mention of a batch was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// Counted in the bucket of its event time (or seen already).
    Counted,
    /// Older than the theme's newest event time minus the history horizon: not counted.
    BeyondHorizon,
    /// Given before the theme's last resolution: feeds the baseline only.
    BeforeResolution,
}

/// The result of observing one mention.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Older than the theme's newest event time minus the history horizon: not counted.
    BeyondHorizon,
    /// Given before the theme's last resolution: answered by it. Part of the theme's
    /// baseline, not of the current incident.
    BeforeResolution,
    /// Counted; the theme is not raised.
    Quiet(WindowStats),
    /// Counted; the theme just became active (the rising edge), possibly in the past
    /// (late mentions made it fire at `active_since_ms`), or late mentions grew the
    /// evidence of an episode that already ended.
    Raised(Signal),
    /// Counted; the theme was already active and still is.
    Active(Signal),
}

impl Observation {
    /// The signal if the theme is active (raised now or before).
    pub fn signal(&self) -> Option<&Signal> {
        match self {
            Observation::Raised(signal) | Observation::Active(signal) => Some(signal),
            _ => None,
        }
    }

    /// Whether the mention was counted.
    pub fn counted(&self) -> bool {
        !matches!(
            self,
            Observation::BeyondHorizon | Observation::BeforeResolution
        )
    }
}

/// All themes' state. Themes are independent; a theme's state depends on the set of its
/// mentions within the horizon (and its resolution), not on their arrival order.
#[derive(Debug)]
pub struct Detector {
    settings: DetectorSettings,
    themes: HashMap<String, ThemeState>,
    /// Resolutions of themes this detector has not seen a mention of yet.
    pending_resolutions: HashMap<String, i64>,
}

impl Detector {
    /// `settings` must be valid ([`DetectorSettings::validate`]).
    pub fn new(settings: DetectorSettings) -> Self {
        Self {
            settings,
            themes: HashMap::new(),
            pending_resolutions: HashMap::new(),
        }
    }

    /// One configuration for every theme.
    pub fn with_config(config: DetectorConfig) -> Self {
        Self::new(DetectorSettings::new(config))
    }

    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    pub fn config(&self, theme: &str) -> &DetectorConfig {
        self.settings.for_theme(theme)
    }

    /// Counts `mention` for `theme` and applies the detectors.
    pub fn observe(&mut self, theme: &str, mention: &Mention) -> Observation {
        let (intakes, observation) = self.observe_batch(theme, std::slice::from_ref(mention));
        match intakes.first() {
            Some(Intake::BeyondHorizon) => Observation::BeyondHorizon,
            Some(Intake::BeforeResolution) => Observation::BeforeResolution,
            _ => observation,
        }
    }

    /// Counts a batch of `theme`'s mentions, in any order, and applies the detectors:
    /// mentions older than the newest one seen cost one rebuild per batch, not one per
    /// mention. Returns how each mention was taken (in the order given) and the theme's
    /// state after the batch (`Raised` if the batch made an episode start, move or grow
    /// — once, even if it holds several).
    pub fn observe_batch(
        &mut self,
        theme: &str,
        mentions: &[Mention],
    ) -> (Vec<Intake>, Observation) {
        let config = self.settings.for_theme(theme);
        let state = match self.themes.get_mut(theme) {
            Some(state) => state,
            None => {
                let Some(first) = mentions.iter().map(|m| m.at_ms).min() else {
                    return (Vec::new(), Observation::BeforeResolution);
                };
                let mut state = ThemeState::new(config, first);
                if let Some(at) = self.pending_resolutions.remove(theme) {
                    state.resolve(config, at);
                }
                self.themes.entry(theme.to_owned()).or_insert(state)
            }
        };
        state.observe_batch(config, mentions)
    }

    /// The theme's action was resolved at `at_ms`: complaints given up to then were
    /// answered and no longer count; the theme is quiet until it fires again. An older
    /// resolution than one already known changes nothing.
    pub fn resolved(&mut self, theme: &str, at_ms: i64) {
        let config = self.settings.for_theme(theme);
        match self.themes.get_mut(theme) {
            Some(state) => state.resolve(config, at_ms),
            None => {
                let known = self
                    .pending_resolutions
                    .entry(theme.to_owned())
                    .or_insert(at_ms);
                *known = (*known).max(at_ms);
            }
        }
    }

    /// A resolution learnt late (made elsewhere, e.g. through another instance's API):
    /// resolves the theme as [`Detector::resolved`] does, then counts `mentions_after`
    /// (the theme's stored mentions given after `at_ms`, oldest first) into the current
    /// incident again. Returns the signal if the theme is active after that.
    pub fn resolved_late(
        &mut self,
        theme: &str,
        at_ms: i64,
        mentions_after: &[Mention],
    ) -> Option<Signal> {
        self.resolved(theme, at_ms);
        let config = self.settings.for_theme(theme);
        self.themes.get_mut(theme)?.recount(config, mentions_after)
    }

    pub fn resolved_at(&self, theme: &str) -> Option<i64> {
        match self.themes.get(theme) {
            Some(state) => state.resolved_at(),
            None => self.pending_resolutions.get(theme).copied(),
        }
    }

    /// The theme's signal if it is active right now (without new input).
    pub fn current(&self, theme: &str) -> Option<Signal> {
        self.themes.get(theme)?.current()
    }

    /// The signal of the theme's latest episode since its last resolution, open or ended:
    /// the span its evidence covers, for mentions that arrive late into it.
    pub fn latest_episode(&self, theme: &str) -> Option<Signal> {
        self.themes.get(theme)?.latest_episode()
    }

    /// What the detector knows about `theme`, if it saw a mention of it.
    pub fn stats(&self, theme: &str) -> Option<ThemeStats> {
        let state = self.themes.get(theme)?;
        Some(state.stats(self.settings.for_theme(theme)))
    }

    /// The themes seen so far, sorted.
    pub fn themes(&self) -> Vec<String> {
        let mut themes: Vec<String> = self.themes.keys().cloned().collect();
        themes.sort();
        themes
    }
}

#[cfg(test)]
mod tests;
