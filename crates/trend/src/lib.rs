//! Trend detection over theme mentions, by event time. Pure: no I/O, no clock. The same
//! mentions in the same order always give the same signals, so detection is testable
//! with synthetic streams and a restarted service can rebuild its state by replaying.
//!
//! This first detector is a sliding window per theme: raise when, within `window` before
//! the newest event time seen for the theme, at least `min_negative_mentions` negative
//! mentions came from at least `min_distinct_customers` distinct customers. The distinct
//! customer floor is what stops one angry customer posting fifty times from raising an
//! action.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Length of the sliding window, in milliseconds of event time.
    pub window_ms: i64,
    pub min_negative_mentions: u32,
    pub min_distinct_customers: u32,
    /// How far behind the newest event a mention may arrive and still count.
    pub allowed_lateness_ms: i64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            window_ms: 60 * 60 * 1000,
            min_negative_mentions: 10,
            min_distinct_customers: 5,
            allowed_lateness_ms: 10 * 60 * 1000,
        }
    }
}

impl DetectorConfig {
    /// The rule in words, for an action's evidence.
    pub fn describe(&self) -> String {
        format!(
            ">= {} negative mentions from >= {} distinct customers within {} min",
            self.min_negative_mentions,
            self.min_distinct_customers,
            self.window_ms / 60_000
        )
    }
}

/// One (feedback, theme) mention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    pub feedback_id: String,
    pub customer_id: String,
    pub negative: bool,
    /// Event time, Unix milliseconds.
    pub at_ms: i64,
}

/// What the window of one theme holds right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub mentions: u32,
    pub negative_mentions: u32,
    /// Distinct customers among the negative mentions.
    pub distinct_customers: u32,
    /// The negative mentions in the window, oldest first.
    pub negative: Vec<Mention>,
}

/// The result of observing one mention.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Older than the window plus allowed lateness: not counted.
    TooLate,
    /// Counted; the theme is below the thresholds.
    Quiet(WindowStats),
    /// Counted; the theme is above the thresholds.
    Triggered(WindowStats),
}

#[derive(Debug, Default)]
struct ThemeWindow {
    /// Mentions ordered by event time.
    mentions: VecDeque<Mention>,
    /// The newest event time seen for the theme (the window's end).
    watermark_ms: i64,
}

#[derive(Debug)]
pub struct Detector {
    config: DetectorConfig,
    themes: HashMap<String, ThemeWindow>,
}

impl Detector {
    pub fn new(config: DetectorConfig) -> Self {
        Self {
            config,
            themes: HashMap::new(),
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Counts `mention` for `theme` and says whether the theme is now above threshold.
    pub fn observe(&mut self, theme: &str, mention: Mention) -> Observation {
        let window_ms = self.config.window_ms;
        let lateness_ms = self.config.allowed_lateness_ms;
        let window = self.themes.entry(theme.to_owned()).or_default();
        if !window.mentions.is_empty()
            && mention.at_ms < window.watermark_ms - window_ms - lateness_ms
        {
            return Observation::TooLate;
        }
        window.watermark_ms = window.watermark_ms.max(mention.at_ms);
        // Insert in event-time order (late events land in the middle); equal times keep
        // arrival order, which keeps the result deterministic.
        let position = window
            .mentions
            .partition_point(|existing| existing.at_ms <= mention.at_ms);
        window.mentions.insert(position, mention);
        // Keep what a late event could still need: the window plus the lateness.
        let keep_from = window.watermark_ms - window_ms - lateness_ms;
        while window
            .mentions
            .front()
            .is_some_and(|oldest| oldest.at_ms < keep_from)
        {
            window.mentions.pop_front();
        }
        let stats = stats(window, window_ms);
        if stats.negative_mentions >= self.config.min_negative_mentions
            && stats.distinct_customers >= self.config.min_distinct_customers
        {
            Observation::Triggered(stats)
        } else {
            Observation::Quiet(stats)
        }
    }

    /// Forgets what the window of `theme` holds: after an action was resolved, the
    /// complaints that led to it must not raise it again.
    pub fn clear(&mut self, theme: &str) {
        if let Some(window) = self.themes.get_mut(theme) {
            window.mentions.clear();
        }
    }

    /// The current window of `theme`, if any mention was seen.
    pub fn stats(&self, theme: &str) -> Option<WindowStats> {
        self.themes
            .get(theme)
            .map(|window| stats(window, self.config.window_ms))
    }
}

fn stats(window: &ThemeWindow, window_ms: i64) -> WindowStats {
    let start = window.watermark_ms - window_ms;
    let in_window = window.mentions.iter().filter(|m| m.at_ms > start);
    let mut mentions = 0;
    let mut negative = Vec::new();
    for mention in in_window {
        mentions += 1;
        if mention.negative {
            negative.push(mention.clone());
        }
    }
    let distinct: HashSet<&str> = negative.iter().map(|m| m.customer_id.as_str()).collect();
    WindowStats {
        window_start_ms: start,
        window_end_ms: window.watermark_ms,
        mentions,
        negative_mentions: negative.len() as u32,
        distinct_customers: distinct.len() as u32,
        negative,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn config() -> DetectorConfig {
        DetectorConfig {
            window_ms: 60 * MIN,
            min_negative_mentions: 5,
            min_distinct_customers: 3,
            allowed_lateness_ms: 10 * MIN,
        }
    }

    fn mention(n: usize, customer: &str, negative: bool, at_ms: i64) -> Mention {
        Mention {
            feedback_id: format!("f{n}"),
            customer_id: customer.into(),
            negative,
            at_ms,
        }
    }

    #[test]
    fn triggers_on_enough_negative_mentions_from_enough_customers() {
        let mut detector = Detector::new(config());
        let customers = ["a", "b", "c", "a", "b"];
        let mut last = None;
        for (n, customer) in customers.iter().enumerate() {
            last = Some(detector.observe("delivery", mention(n, customer, true, n as i64 * MIN)));
        }
        match last.unwrap() {
            Observation::Triggered(stats) => {
                assert_eq!(stats.negative_mentions, 5);
                assert_eq!(stats.distinct_customers, 3);
                assert_eq!(stats.negative.len(), 5);
            }
            other => panic!("expected a trigger, got {other:?}"),
        }
    }

    #[test]
    fn one_customer_spamming_never_triggers() {
        let mut detector = Detector::new(config());
        for n in 0..50 {
            let observed = detector.observe("price", mention(n, "angry", true, n as i64 * 1000));
            assert!(matches!(observed, Observation::Quiet(_)), "{observed:?}");
        }
    }

    #[test]
    fn positive_mentions_do_not_count() {
        let mut detector = Detector::new(config());
        for n in 0..20 {
            let observed = detector.observe(
                "staff",
                mention(n, &format!("c{n}"), false, n as i64 * 1000),
            );
            assert!(matches!(observed, Observation::Quiet(_)));
        }
    }

    #[test]
    fn mentions_spread_beyond_the_window_do_not_trigger() {
        let mut detector = Detector::new(config());
        for n in 0..10 {
            // One complaint every 20 minutes: at most 3 in any hour.
            let observed = detector.observe(
                "billing",
                mention(n, &format!("c{n}"), true, n as i64 * 20 * MIN),
            );
            assert!(
                matches!(observed, Observation::Quiet(_)),
                "at {n}: {observed:?}"
            );
        }
    }

    #[test]
    fn late_events_count_within_lateness_and_are_dropped_beyond() {
        let mut detector = Detector::new(config());
        detector.observe("returns", mention(0, "a", true, 200 * MIN));
        // 65 minutes late: outside the window but within window + lateness → counted
        // (kept), though outside the current window's stats.
        let kept = detector.observe("returns", mention(1, "b", true, 135 * MIN));
        assert!(matches!(kept, Observation::Quiet(ref s) if s.negative_mentions == 1));
        assert_eq!(
            detector.observe("returns", mention(2, "c", true, 100 * MIN)),
            Observation::TooLate
        );
        // Out of order but inside the window: counted.
        let observed = detector.observe("returns", mention(3, "d", true, 190 * MIN));
        assert!(matches!(observed, Observation::Quiet(ref s) if s.negative_mentions == 2));
    }

    #[test]
    fn same_input_same_output() {
        let run = || {
            let mut detector = Detector::new(config());
            (0..40)
                .map(|n| {
                    let customer = format!("c{}", n % 7);
                    detector.observe(
                        "support",
                        mention(n, &customer, n % 3 != 0, (n as i64 * 7919) % (90 * MIN)),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn clear_forgets_the_window() {
        let mut detector = Detector::new(config());
        for (n, c) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            detector.observe("account", mention(n, c, true, n as i64 * MIN));
        }
        detector.clear("account");
        let observed = detector.observe("account", mention(9, "f", true, 6 * MIN));
        assert!(matches!(observed, Observation::Quiet(ref s) if s.negative_mentions == 1));
    }
}
