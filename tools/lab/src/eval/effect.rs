//! The effect verdict's part of `closeloop-lab eval trends`: did "we did" work? Generates
//! a theme's mentions for a week before and a week after a resolution (seeded, in event
//! time), judges them with the trends service's rule (`closeloop_trend::effect`, default
//! settings) and counts how often the verdict is the right one.
//!
//! Each day's volume varies ±30 % around the theme's level (real feedback is more
//! variable than a Poisson count), and each mention is negative with the scenario's
//! share: a fix lowers the share, a seasonal dip lowers the volume, neither changes the
//! other.

use std::fmt::Write;

use closeloop_trend::{EffectConfig, Verdict, WindowCounts};

use super::trends::Rng;

const DAYS: i64 = 7;
const DAY_MS: i64 = 86_400_000;

/// A theme's level in one window: mentions per day and the share of them negative.
#[derive(Debug, Clone, Copy)]
struct Level {
    per_day: f64,
    negative_share: f64,
}

/// A labelled resolution: the level before and after it, and the verdict that is right.
#[derive(Debug, Clone, Copy)]
pub struct EffectScenario {
    pub name: &'static str,
    pub description: &'static str,
    before: Level,
    after: Level,
    pub right: Verdict,
}

pub fn scenarios() -> Vec<EffectScenario> {
    let level = |per_day, negative_share| Level {
        per_day,
        negative_share,
    };
    vec![
        EffectScenario {
            name: "fix works",
            description: "40 mentions/day; negative share 30 % → 15 %",
            before: level(40.0, 0.30),
            after: level(40.0, 0.15),
            right: Verdict::Improved,
        },
        EffectScenario {
            name: "fix works a little",
            description: "40 mentions/day; negative share 30 % → 22 %",
            before: level(40.0, 0.30),
            after: level(40.0, 0.22),
            right: Verdict::Improved,
        },
        EffectScenario {
            name: "fix does not work",
            description: "40 mentions/day; negative share 30 % → 30 %",
            before: level(40.0, 0.30),
            after: level(40.0, 0.30),
            right: Verdict::NoChange,
        },
        EffectScenario {
            name: "seasonal dip",
            description: "40 → 20 mentions/day (fewer orders); negative share 30 % → 30 %",
            before: level(40.0, 0.30),
            after: level(20.0, 0.30),
            right: Verdict::NoChange,
        },
        EffectScenario {
            name: "fix works in a dip",
            description: "40 → 20 mentions/day; negative share 30 % → 15 %",
            before: level(40.0, 0.30),
            after: level(20.0, 0.15),
            right: Verdict::Improved,
        },
        EffectScenario {
            name: "worse",
            description: "40 mentions/day; negative share 20 % → 35 %",
            before: level(40.0, 0.20),
            after: level(40.0, 0.35),
            right: Verdict::Worse,
        },
        EffectScenario {
            name: "small theme",
            description: "2 mentions/day; negative share 30 % → 30 %",
            before: level(2.0, 0.30),
            after: level(2.0, 0.30),
            right: Verdict::NotEnoughData,
        },
    ]
}

/// A week of a theme at `level`.
fn week(rng: &mut Rng, level: Level) -> WindowCounts {
    let mut counts = WindowCounts::default();
    for _ in 0..DAYS {
        let day_level = level.per_day * (0.7 + 0.6 * rng.unit());
        let volume = rng.poisson(day_level);
        let negatives = (0..volume)
            .filter(|_| rng.unit() < level.negative_share)
            .count() as u32;
        counts.mentions += volume;
        counts.negative_mentions += negatives;
        // Customers rarely complain twice about one theme in a week: about one in ten does.
        counts.distinct_customers += negatives - negatives / 10;
    }
    counts
}

/// How often each verdict came out of `trials` runs of `scenario`.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub counts: [u32; 5],
    pub trials: u32,
}

impl Tally {
    fn of(&self, verdict: Verdict) -> u32 {
        Verdict::ALL
            .iter()
            .position(|v| *v == verdict)
            .map_or(0, |i| self.counts[i])
    }

    pub fn right(&self, scenario: &EffectScenario) -> f64 {
        f64::from(self.of(scenario.right)) / f64::from(self.trials.max(1))
    }
}

pub fn evaluate(scenario: &EffectScenario, seed: u64, trials: u32) -> Tally {
    let config = EffectConfig::default();
    // Every scenario draws from the same stream: they differ only in their levels.
    let mut rng = Rng::new(seed);
    let mut tally = Tally {
        trials,
        ..Tally::default()
    };
    for _ in 0..trials {
        let before = week(&mut rng, scenario.before);
        let after = week(&mut rng, scenario.after);
        let verdict =
            closeloop_trend::effect::assess(&config, before, after, DAYS * DAY_MS).verdict;
        if let Some(i) = Verdict::ALL.iter().position(|v| *v == verdict) {
            tally.counts[i] += 1;
        }
    }
    tally
}

/// The table: per scenario, how often each verdict came out and how often the right one.
pub fn report(seed: u64, trials: u32) -> String {
    let mut out = String::new();
    let config = EffectConfig::default();
    let _ = writeln!(
        out,
        "effect verdict — {trials} resolutions per scenario (seed {seed}), a week each side, \
         at least {} negatives, one-sided p < {}:",
        config.min_negative_mentions, config.max_p_value
    );
    let _ = writeln!(
        out,
        "{:<20} {:<16} {:>8} {:>9} {:>6} {:>8} {:>6}  levels",
        "scenario", "right verdict", "improved", "no_change", "worse", "too_few", "right"
    );
    let (mut right, mut all) = (0.0, 0.0);
    for scenario in scenarios() {
        let tally = evaluate(&scenario, seed, trials);
        right += f64::from(tally.of(scenario.right));
        all += f64::from(tally.trials);
        let _ = writeln!(
            out,
            "{:<20} {:<16} {:>8} {:>9} {:>6} {:>8} {:>5.1}%  {}",
            scenario.name,
            scenario.right.as_str(),
            tally.of(Verdict::Improved),
            tally.of(Verdict::NoChange),
            tally.of(Verdict::Worse),
            tally.of(Verdict::NotEnoughData),
            100.0 * tally.right(&scenario),
            scenario.description
        );
    }
    let _ = writeln!(out, "right overall: {:.1}%", 100.0 * right / all.max(1.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn right(name: &str) -> f64 {
        let scenario = scenarios()
            .into_iter()
            .find(|s| s.name == name)
            .expect("a scenario");
        evaluate(&scenario, 7, 200).right(&scenario)
    }

    #[test]
    fn the_verdict_is_mostly_right_and_a_seasonal_dip_is_never_improved() {
        assert!(right("fix works") > 0.95);
        assert!(right("fix does not work") > 0.9);
        assert!(right("worse") > 0.9);
        assert!(right("fix works in a dip") > 0.8);
        let dip = scenarios()
            .into_iter()
            .find(|s| s.name == "seasonal dip")
            .expect("a scenario");
        let tally = evaluate(&dip, 7, 200);
        assert!(
            tally.of(Verdict::Improved) <= 10,
            "a dip is called improved at most as often as the test's false-positive rate: {tally:?}"
        );
    }

    #[test]
    fn the_report_is_reproducible() {
        assert_eq!(report(3, 50), report(3, 50));
        assert!(report(3, 50).contains("seasonal dip"));
    }
}
