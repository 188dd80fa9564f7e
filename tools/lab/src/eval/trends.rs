//! `closeloop-lab eval trends`: how good is trend detection? Generates labelled streams of
//! theme mentions (scenarios), runs them through the real detector with the trends
//! service's semantics (one open action per theme, an operator who resolves it a few
//! hours later, reopening when the theme fires again after that), and prints precision,
//! recall and time-to-detect per scenario; then how often the effect verdict of a
//! resolution is right (see [`super::effect`]).
//!
//! Everything is in event time and seeded, so the figures are reproducible: the same
//! seed and sizes print the same table on every machine.

use std::collections::BTreeMap;
use std::fmt::Write;

use closeloop_trend::{Detector, DetectorConfig, DetectorSettings, Intake, Mention};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// The simulated operator resolves an action this long (event time) after it was raised.
const RESOLVE_AFTER_MS: i64 = 4 * HOUR;
/// As the service's default `TRENDS_REOPEN_WITHIN_HOURS`.
const REOPEN_WITHIN_MS: i64 = 7 * DAY;
/// An action shortly after an incident ended (the window still holds it) is not false.
const GRACE_MS: i64 = 2 * HOUR;
/// A day in the middle of which the scenarios put their incidents (10:00 UTC).
const MORNING: i64 = 10 * HOUR;

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Days of event time per scenario (the first `--warmup-days` are the detector's
    /// learning period: actions there are listed but not scored).
    #[arg(long, default_value_t = 14)]
    pub days: i64,
    /// Learning period at the start of each scenario, in days.
    #[arg(long, default_value_t = 2)]
    pub warmup_days: i64,
    /// Seed of the generated streams.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also run this many seeds (seed, seed+1, …) and print the totals over all of them.
    #[arg(long, default_value_t = 1)]
    pub runs: u64,
}

/// A deterministic generator (SplitMix64): the figures must not change with a random
/// crate's version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x853c_49e6_748f_ea9b)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Poisson-distributed count with mean `lambda` (Knuth; the means here are small).
    pub fn poisson(&mut self, lambda: f64) -> u32 {
        if lambda <= 0.0 {
            return 0;
        }
        let limit = (-lambda).exp();
        let mut product = self.unit();
        let mut count = 0;
        while product > limit {
            count += 1;
            product *= self.unit();
        }
        count
    }
}

/// A labelled problem: the theme really had an issue from `start_ms` to `end_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub theme: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One mention as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    pub theme: String,
    pub mention: Mention,
    pub arrival_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    /// In arrival order.
    pub arrivals: Vec<Arrival>,
    pub incidents: Vec<Incident>,
    /// Actions before this are the learning period's.
    pub score_from_ms: i64,
}

/// A theme of the background: its negative mentions per hour (mean over the day).
struct Background {
    theme: &'static str,
    negative_per_hour: f64,
}

/// A small shop's normal week: every theme gets a few complaints a day, well below the
/// recurrence floor, plus three times as many neutral or positive mentions.
const BACKGROUND: [Background; 8] = [
    Background {
        theme: "delivery_time",
        negative_per_hour: 0.15,
    },
    Background {
        theme: "price",
        negative_per_hour: 0.12,
    },
    Background {
        theme: "app_usability",
        negative_per_hour: 0.1,
    },
    Background {
        theme: "customer_service",
        negative_per_hour: 0.12,
    },
    Background {
        theme: "product_quality",
        negative_per_hour: 0.08,
    },
    Background {
        theme: "returns",
        negative_per_hour: 0.05,
    },
    Background {
        theme: "billing",
        negative_per_hour: 0.05,
    },
    Background {
        theme: "packaging",
        negative_per_hour: 0.03,
    },
];
const POSITIVE_PER_NEGATIVE: f64 = 3.0;
/// The busy theme of the seasonal scenario and its per-theme recurrence floor: at ~48
/// complaints a day it needs its own floor, which is what per-theme settings are for.
const BUSY_THEME: &str = "support_wait";
const BUSY_PER_HOUR: f64 = 2.0;
const BUSY_RECURRENCE_FLOOR: u32 = 80;

/// Builds mentions minute by minute from a rate function (negative mentions per hour
/// for a theme at a time).
struct Generator {
    rng: Rng,
    customers: u64,
    next_id: u64,
    events: Vec<(String, Mention)>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            rng: Rng::new(seed),
            customers: 50_000,
            next_id: 0,
            events: Vec::new(),
        }
    }

    fn mention(&mut self, theme: &str, customer: String, negative: bool, at_ms: i64) {
        self.next_id += 1;
        self.events.push((
            theme.to_owned(),
            Mention {
                feedback_id: format!("f{}", self.next_id),
                customer_id: customer,
                negative,
                at_ms,
            },
        ));
    }

    /// Mentions of `theme` over `[from_ms, to_ms)` at `rate(t)` negative ones per hour
    /// (and `positive_ratio` times as many others), from random customers.
    fn stream(
        &mut self,
        theme: &str,
        from_ms: i64,
        to_ms: i64,
        positive_ratio: f64,
        rate: impl Fn(i64) -> f64,
    ) {
        let mut minute = from_ms;
        while minute < to_ms {
            let negative_rate = rate(minute) / 60.0;
            for (negative, mean) in [
                (true, negative_rate),
                (false, negative_rate * positive_ratio),
            ] {
                for _ in 0..self.rng.poisson(mean) {
                    let at = minute + self.rng.below(MINUTE as u64) as i64;
                    let customer = format!("c{}", self.rng.below(self.customers));
                    self.mention(theme, customer, negative, at);
                }
            }
            minute += MINUTE;
        }
    }

    fn background(&mut self, days: i64, season: impl Fn(i64) -> f64 + Copy) {
        for theme in &BACKGROUND {
            let rate = theme.negative_per_hour;
            self.stream(
                theme.theme,
                0,
                days * DAY,
                POSITIVE_PER_NEGATIVE,
                move |t| rate * season(t),
            );
        }
    }

    /// Arrivals in event time order (ties in generation order).
    fn in_order(mut self) -> Vec<Arrival> {
        self.events.sort_by_key(|(_, m)| m.at_ms);
        self.events
            .into_iter()
            .map(|(theme, mention)| Arrival {
                arrival_ms: mention.at_ms,
                theme,
                mention,
            })
            .collect()
    }
}

fn flat(_: i64) -> f64 {
    1.0
}

/// Busiest mid-afternoon, quietest at night: 0.2× to 1.8× of the daily mean.
fn daily(t: i64) -> f64 {
    let hour = (t.rem_euclid(DAY)) as f64 / HOUR as f64;
    1.0 + 0.8 * (2.0 * std::f64::consts::PI * (hour - 9.0) / 24.0).sin()
}

/// Every scenario, generated for `days` of event time with a learning period of
/// `warmup_days`.
pub fn scenarios(seed: u64, days: i64, warmup_days: i64) -> Vec<Scenario> {
    let days = days.max(warmup_days + 4);
    let score_from_ms = warmup_days * DAY;
    // Incidents fall in the middle of the scored period.
    let incident_day = warmup_days + (days - warmup_days) / 2;
    let surge_start = incident_day * DAY + MORNING;
    let mut all = Vec::new();

    let mut background = Generator::new(seed);
    background.background(days, flat);
    all.push(Scenario {
        name: "background only",
        description: "8 themes at 0.7-3.6 complaints a day each; must raise nothing",
        arrivals: background.in_order(),
        incidents: vec![],
        score_from_ms,
    });

    let surge = |seed: u64| {
        let mut g = Generator::new(seed);
        g.background(days, flat);
        let end = surge_start + 3 * HOUR;
        g.stream("delivery_time", surge_start, end, 0.2, |_| 25.0);
        (
            g,
            Incident {
                theme: "delivery_time".into(),
                start_ms: surge_start,
                end_ms: end,
            },
        )
    };
    let (generator, incident) = surge(seed.wrapping_add(1));
    all.push(Scenario {
        name: "sudden surge",
        description: "delivery_time jumps from 0.15 to 25 complaints an hour for 3 h",
        arrivals: generator.in_order(),
        incidents: vec![incident],
        score_from_ms,
    });

    let mut growing = Generator::new(seed.wrapping_add(2));
    growing.background(days, flat);
    let grow_from = score_from_ms;
    let grow_to = days * DAY;
    growing.stream(
        "returns",
        grow_from,
        grow_to,
        POSITIVE_PER_NEGATIVE,
        move |t| {
            // From the background's 0.05 an hour to 1 an hour (24 a day) at the end.
            0.05 + 0.95 * (t - grow_from) as f64 / (grow_to - grow_from) as f64
        },
    );
    all.push(Scenario {
        name: "slowly growing",
        description:
            "returns grows steadily from 1 to 24 complaints a day; no single hour stands out",
        arrivals: growing.in_order(),
        incidents: vec![Incident {
            theme: "returns".into(),
            start_ms: grow_from,
            end_ms: grow_to,
        }],
        score_from_ms,
    });

    let mut spam = Generator::new(seed.wrapping_add(3));
    spam.background(days, flat);
    for (day, count) in [(incident_day, 60), (incident_day + 1, 40)] {
        let start = day * DAY + MORNING;
        for i in 0..count {
            spam.mention("price", "angry-customer".into(), true, start + i * MINUTE);
        }
    }
    all.push(Scenario {
        name: "one customer spamming",
        description: "one customer posts 60 complaints about price in an hour, 40 the next day",
        arrivals: spam.in_order(),
        incidents: vec![],
        score_from_ms,
    });

    let mut seasonal = Generator::new(seed.wrapping_add(4));
    seasonal.background(days, daily);
    seasonal.stream(BUSY_THEME, 0, days * DAY, 1.0, |t| BUSY_PER_HOUR * daily(t));
    let peak = incident_day * DAY + 14 * HOUR;
    seasonal.stream("app_usability", peak, peak + 2 * HOUR, 0.2, |_| 20.0);
    all.push(Scenario {
        name: "daily seasonal",
        description: "every theme busier by day than by night (0.2x-1.8x), one busy theme at 2 an hour; one 2 h surge at the afternoon peak",
        arrivals: seasonal.in_order(),
        incidents: vec![Incident { theme: "app_usability".into(), start_ms: peak, end_ms: peak + 2 * HOUR }],
        score_from_ms,
    });

    let (generator, incident) = surge(seed.wrapping_add(5));
    let mut rng = Rng::new(seed.wrapping_add(6));
    let mut arrivals = generator.in_order();
    for arrival in &mut arrivals {
        let roll = rng.unit();
        if roll < 0.03 {
            // Far beyond the allowed lateness: must be dropped, not break anything.
            arrival.arrival_ms += 15 * MINUTE + rng.below(45 * MINUTE as u64) as i64;
        } else if roll < 0.43 {
            arrival.arrival_ms += rng.below(9 * MINUTE as u64) as i64;
        }
    }
    arrivals.sort_by_key(|a| a.arrival_ms);
    all.push(Scenario {
        name: "late and out of order",
        description: "the sudden surge with 40% of mentions up to 9 min late and 3% 15-60 min late",
        arrivals,
        incidents: vec![incident],
        score_from_ms,
    });

    // Categorise is down for the surge's first hour; the hour's mentions then arrive
    // together, in random order.
    let (generator, incident) = surge(seed.wrapping_add(7));
    let mut rng = Rng::new(seed.wrapping_add(8));
    let outage_end = surge_start + HOUR;
    let arrivals = deliver_at_once(
        generator.in_order(),
        surge_start..outage_end,
        outage_end,
        &mut rng,
    );
    all.push(Scenario {
        name: "backlog after outage",
        description: "the sudden surge; categorise down for its first hour, that hour's mentions delivered together in random order after it",
        arrivals,
        incidents: vec![incident],
        score_from_ms,
    });

    // Three days of history, the surge among them, imported in one shuffled burst at
    // their end.
    let (generator, incident) = surge(seed.wrapping_add(9));
    let mut rng = Rng::new(seed.wrapping_add(10));
    let history = (incident_day - 1) * DAY..(incident_day + 2) * DAY;
    let arrivals = deliver_at_once(generator.in_order(), history.clone(), history.end, &mut rng);
    all.push(Scenario {
        name: "3 days posted at once",
        description: "the sudden surge inside 3 days of history that are all posted in one shuffled burst at their end",
        arrivals,
        incidents: vec![incident],
        score_from_ms,
    });
    all
}

/// The scenario with every mention arriving when it was given, if it is not already so:
/// what the late deliveries are measured against.
pub fn live_version(scenario: &Scenario) -> Option<Scenario> {
    if scenario
        .arrivals
        .iter()
        .all(|a| a.arrival_ms == a.mention.at_ms)
    {
        return None;
    }
    let mut arrivals = scenario.arrivals.clone();
    for arrival in &mut arrivals {
        arrival.arrival_ms = arrival.mention.at_ms;
    }
    arrivals.sort_by_key(|a| a.arrival_ms);
    Some(Scenario {
        arrivals,
        incidents: scenario.incidents.clone(),
        ..*scenario
    })
}

/// Delivers the mentions given within `given` together, in random order, at
/// `arrive_ms` (as a backlog or an import does); the rest on time.
fn deliver_at_once(
    arrivals: Vec<Arrival>,
    given: std::ops::Range<i64>,
    arrive_ms: i64,
    rng: &mut Rng,
) -> Vec<Arrival> {
    let mut keyed: Vec<((i64, u64), Arrival)> = arrivals
        .into_iter()
        .map(|mut arrival| {
            if given.contains(&arrival.mention.at_ms) {
                arrival.arrival_ms = arrive_ms;
                ((arrive_ms, rng.next_u64()), arrival)
            } else {
                ((arrival.arrival_ms, 0), arrival)
            }
        })
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    keyed.into_iter().map(|(_, arrival)| arrival).collect()
}

/// The detector settings the evaluation uses: the service defaults, plus the busy
/// theme's own recurrence floor.
pub fn settings() -> DetectorSettings {
    let mut settings = DetectorSettings::new(DetectorConfig::default());
    let mut busy = DetectorConfig::default();
    busy.recurrence.floor = BUSY_RECURRENCE_FLOOR;
    settings.themes.insert(BUSY_THEME.into(), busy);
    settings
}

/// An action the simulated service raised (or reopened).
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedAction {
    pub theme: String,
    /// Event time of the trigger (where the detector fired; with late mentions this
    /// can be well before the action was raised).
    pub at_ms: i64,
    /// When it was raised or reopened, on the arrival clock: later than `at_ms` when
    /// the mentions that made it fire arrived late.
    pub raised_ms: i64,
    pub reopened: bool,
    pub detector: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioResult {
    pub name: &'static str,
    pub mentions: usize,
    pub dropped_beyond_horizon: usize,
    pub warmup_actions: Vec<SimulatedAction>,
    pub actions: Vec<SimulatedAction>,
    pub true_positives: usize,
    pub false_positives: usize,
    pub incidents: usize,
    pub detected: usize,
    /// Per detected incident: first true action − incident start.
    pub time_to_detect_ms: Vec<i64>,
}

impl ScenarioResult {
    /// `None` when nothing was raised (no action, so nothing to be wrong about).
    pub fn precision(&self) -> Option<f64> {
        let all = self.true_positives + self.false_positives;
        (all > 0).then(|| self.true_positives as f64 / all as f64)
    }

    /// `None` when the scenario has no incident.
    pub fn recall(&self) -> Option<f64> {
        (self.incidents > 0).then(|| self.detected as f64 / self.incidents as f64)
    }
}

/// Runs `scenario` through a detector with the service's action semantics.
pub fn evaluate(scenario: &Scenario, settings: &DetectorSettings) -> ScenarioResult {
    let mut detector = Detector::new(settings.clone());
    // Per theme: open action (resolve at), last resolution.
    let mut open: BTreeMap<String, i64> = BTreeMap::new();
    let mut last_resolved: BTreeMap<String, i64> = BTreeMap::new();
    let mut clock = i64::MIN;
    let mut all_actions = Vec::new();
    let mut dropped_beyond_horizon = 0;
    // Per theme with an open action: its index in `all_actions`.
    let mut open_action: BTreeMap<String, usize> = BTreeMap::new();
    // What arrives at the same instant is one batch per theme, as the service takes it.
    for arrived in scenario
        .arrivals
        .chunk_by(|a, b| a.arrival_ms == b.arrival_ms)
    {
        clock = clock.max(arrived[0].arrival_ms);
        // The operator resolves what is due by now.
        let due: Vec<(String, i64)> = open
            .iter()
            .filter(|(_, &at)| at <= clock)
            .map(|(theme, &at)| (theme.clone(), at))
            .collect();
        for (theme, at) in due {
            open.remove(&theme);
            open_action.remove(&theme);
            detector.resolved(&theme, at);
            last_resolved.insert(theme, at);
        }
        let mut batches: Vec<(&str, Vec<Mention>)> = Vec::new();
        for arrival in arrived {
            match batches
                .iter_mut()
                .find(|(theme, _)| *theme == arrival.theme)
            {
                Some((_, mentions)) => mentions.push(arrival.mention.clone()),
                None => batches.push((&arrival.theme, vec![arrival.mention.clone()])),
            }
        }
        for (theme, mentions) in batches {
            let (intakes, observation) = detector.observe_batch(theme, &mentions);
            dropped_beyond_horizon += intakes
                .iter()
                .filter(|intake| **intake == Intake::BeyondHorizon)
                .count();
            let Some(signal) = observation.signal() else {
                continue;
            };
            let at_ms = signal.triggered_at_ms();
            if let Some(&index) = open_action.get(theme) {
                // Late mentions moved the trigger earlier: the action's evidence says so.
                let action: &mut SimulatedAction = &mut all_actions[index];
                action.at_ms = action.at_ms.min(at_ms);
                continue;
            }
            let raised_ms = clock.max(at_ms);
            let reopened = last_resolved
                .get(theme)
                .is_some_and(|&resolved| at_ms - resolved <= REOPEN_WITHIN_MS);
            // The operator answers a few hours after hearing of it, not after the trigger.
            open.insert(theme.to_owned(), raised_ms + RESOLVE_AFTER_MS);
            open_action.insert(theme.to_owned(), all_actions.len());
            all_actions.push(SimulatedAction {
                theme: theme.to_owned(),
                at_ms,
                raised_ms,
                reopened,
                detector: signal.trigger.name(),
            });
        }
    }
    let (warmup_actions, actions): (Vec<_>, Vec<_>) = all_actions
        .into_iter()
        .partition(|a| a.at_ms < scenario.score_from_ms);
    let within = |action: &SimulatedAction, incident: &Incident| {
        action.theme == incident.theme
            && action.at_ms >= incident.start_ms
            && action.at_ms <= incident.end_ms + GRACE_MS
    };
    let true_positives = actions
        .iter()
        .filter(|a| scenario.incidents.iter().any(|i| within(a, i)))
        .count();
    let time_to_detect_ms: Vec<i64> = scenario
        .incidents
        .iter()
        .filter_map(|incident| {
            actions
                .iter()
                .filter(|a| within(a, incident))
                .map(|a| a.at_ms - incident.start_ms)
                .min()
        })
        .collect();
    ScenarioResult {
        name: scenario.name,
        mentions: scenario.arrivals.len(),
        dropped_beyond_horizon,
        warmup_actions,
        true_positives,
        false_positives: actions.len() - true_positives,
        incidents: scenario.incidents.len(),
        detected: time_to_detect_ms.len(),
        time_to_detect_ms,
        actions,
    }
}

fn duration(ms: i64) -> String {
    if ms >= DAY {
        format!("{:.1} d", ms as f64 / DAY as f64)
    } else if ms >= HOUR {
        format!("{:.1} h", ms as f64 / HOUR as f64)
    } else {
        format!("{} min", ms / MINUTE)
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

/// The results as the table `closeloop-lab eval trends` prints.
pub fn report(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>9} {:>7} {:>3} {:>3} {:>9} {:>6}  {:<14} learning-period actions",
        "scenario",
        "mentions",
        "incidents",
        "actions",
        "TP",
        "FP",
        "precision",
        "recall",
        "time-to-detect",
    );
    for r in results {
        let detect = match r.time_to_detect_ms.as_slice() {
            [] => "-".to_owned(),
            delays => delays
                .iter()
                .map(|&d| duration(d))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>9} {:>7} {:>3} {:>3} {:>9} {:>6}  {:<14} {}",
            r.name,
            r.mentions,
            r.incidents,
            r.actions.len(),
            r.true_positives,
            r.false_positives,
            ratio(r.precision()),
            ratio(r.recall()),
            detect,
            r.warmup_actions.len()
        );
    }
    out
}

/// Totals of one scenario over several runs.
fn totals(name: &str, results: &[&ScenarioResult]) -> String {
    let sum = |f: fn(&ScenarioResult) -> usize| results.iter().map(|r| f(r)).sum::<usize>();
    let (tp, fp) = (sum(|r| r.true_positives), sum(|r| r.false_positives));
    let (incidents, detected) = (sum(|r| r.incidents), sum(|r| r.detected));
    let mut delays: Vec<i64> = results
        .iter()
        .flat_map(|r| r.time_to_detect_ms.clone())
        .collect();
    delays.sort_unstable();
    let detect = match (delays.get(delays.len() / 2), delays.last()) {
        (Some(&median), Some(&max)) => format!("{} / {}", duration(median), duration(max)),
        _ => "-".to_owned(),
    };
    format!(
        "{:<24} {:>7} {:>5} {:>5} {:>9} {:>8}  {}",
        name,
        tp + fp,
        tp,
        fp,
        ratio((tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64)),
        if incidents > 0 {
            format!("{detected}/{incidents}")
        } else {
            "n/a".into()
        },
        detect
    )
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=30).contains(&args.warmup_days) && args.days > args.warmup_days && args.days <= 365,
        "--days must be above --warmup-days (1 to 30) and at most 365"
    );
    anyhow::ensure!((1..=1000).contains(&args.runs), "--runs must be 1 to 1000");
    let settings = settings();
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("detector settings: {e}"))?;
    println!(
        "closeloop eval trends — seed {}, {} days per scenario (the first {} are the learning period), detector defaults:",
        args.seed, args.days, args.warmup_days
    );
    println!("  {}", settings.default.describe());
    println!("  ({BUSY_THEME}: recurrence floor {BUSY_RECURRENCE_FLOOR})\n");
    let generated = scenarios(args.seed, args.days, args.warmup_days);
    let results: Vec<ScenarioResult> = generated.iter().map(|s| evaluate(s, &settings)).collect();
    print!("{}", report(&results));
    println!();
    for (scenario, result) in generated.iter().zip(&results) {
        println!("{}: {}", scenario.name, scenario.description);
        for action in &result.actions {
            let found_late = if action.raised_ms - action.at_ms > 10 * MINUTE {
                format!(
                    " (found late: raised at day {:.2}, {} after the trigger)",
                    action.raised_ms as f64 / DAY as f64,
                    duration(action.raised_ms - action.at_ms)
                )
            } else {
                String::new()
            };
            println!(
                "    {} {} by {} at day {:.2}{found_late}",
                if action.reopened {
                    "reopened"
                } else {
                    "raised  "
                },
                action.theme,
                action.detector,
                action.at_ms as f64 / DAY as f64
            );
        }
        if let Some(live) = live_version(scenario) {
            let live = evaluate(&live, &settings);
            println!(
                "    the same mentions live (in event-time order): {} actions, time to detect {}",
                live.actions.len(),
                live.time_to_detect_ms
                    .iter()
                    .map(|&ms| duration(ms))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if result.dropped_beyond_horizon > 0 {
            println!(
                "    {} mentions dropped as beyond the history horizon",
                result.dropped_beyond_horizon
            );
        }
    }
    // Did "we did" work: the effect verdict on labelled resolutions, 200 per seed run.
    println!();
    print!(
        "{}",
        super::effect::report(args.seed, 200 * u32::try_from(args.runs).unwrap_or(1000))
    );
    if args.runs > 1 {
        let mut all: Vec<ScenarioResult> = Vec::new();
        // The late deliveries' mentions, delivered live: what they are measured against.
        let mut live: Vec<ScenarioResult> = Vec::new();
        for seed in (0..args.runs).map(|i| args.seed.wrapping_add(i)) {
            for scenario in scenarios(seed, args.days, args.warmup_days) {
                all.push(evaluate(&scenario, &settings));
                live.extend(live_version(&scenario).map(|s| evaluate(&s, &settings)));
            }
        }
        println!(
            "\ntotals over {} seeds ({}..={}), {} scored days each:",
            args.runs,
            args.seed,
            args.seed.wrapping_add(args.runs - 1),
            args.days - args.warmup_days
        );
        println!(
            "{:<24} {:>7} {:>5} {:>5} {:>9} {:>8}  time-to-detect median / max",
            "scenario", "actions", "TP", "FP", "precision", "detected",
        );
        for scenario in &generated {
            let of_scenario: Vec<&ScenarioResult> =
                all.iter().filter(|r| r.name == scenario.name).collect();
            println!("{}", totals(scenario.name, &of_scenario));
            let of_live: Vec<&ScenarioResult> =
                live.iter().filter(|r| r.name == scenario.name).collect();
            if !of_live.is_empty() {
                println!("{}", totals("  the same, live", &of_live));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small sizes: 8 days with 2 of learning, all scenarios.
    fn results(seed: u64) -> Vec<ScenarioResult> {
        let settings = settings();
        scenarios(seed, 8, 2)
            .iter()
            .map(|s| evaluate(s, &settings))
            .collect()
    }

    fn by_name<'a>(results: &'a [ScenarioResult], name: &str) -> &'a ScenarioResult {
        results.iter().find(|r| r.name == name).expect("scenario")
    }

    #[test]
    fn detection_quality_holds_on_small_streams() {
        for seed in [7, 8] {
            let results = results(seed);
            let table = report(&results);
            for quiet in ["background only", "one customer spamming"] {
                let r = by_name(&results, quiet);
                assert_eq!(
                    r.actions.len(),
                    0,
                    "seed {seed}: {quiet} raised something\n{table}"
                );
            }
            for detected in [
                "sudden surge",
                "slowly growing",
                "daily seasonal",
                "late and out of order",
                "backlog after outage",
                "3 days posted at once",
            ] {
                let r = by_name(&results, detected);
                assert_eq!(
                    r.recall(),
                    Some(1.0),
                    "seed {seed}: {detected} missed\n{table}"
                );
                assert_eq!(
                    r.false_positives, 0,
                    "seed {seed}: {detected} false alarm\n{table}"
                );
            }
            // A sudden surge is seen within the hour, late data or not.
            for fast in [
                "sudden surge",
                "late and out of order",
                "daily seasonal",
                "backlog after outage",
                "3 days posted at once",
            ] {
                let delay = by_name(&results, fast).time_to_detect_ms[0];
                assert!(
                    delay <= HOUR,
                    "seed {seed}: {fast} took {}\n{table}",
                    duration(delay)
                );
            }
            let slow = by_name(&results, "slowly growing");
            assert_eq!(slow.actions[0].detector, "recurrence", "{table}");
        }
    }

    #[test]
    fn the_evaluation_is_reproducible() {
        assert_eq!(results(11), results(11));
        assert_ne!(
            scenarios(11, 8, 2)[0].arrivals,
            scenarios(12, 8, 2)[0].arrivals,
            "the seed matters"
        );
    }

    #[test]
    fn the_late_scenario_really_is_late_and_out_of_order() {
        let scenarios = scenarios(7, 8, 2);
        let late = scenarios
            .iter()
            .find(|s| s.name == "late and out of order")
            .expect("scenario");
        let out_of_order = late
            .arrivals
            .windows(2)
            .filter(|w| w[1].mention.at_ms < w[0].mention.at_ms)
            .count();
        assert!(out_of_order > 30, "{out_of_order}");
        let result = evaluate(late, &settings());
        assert_eq!(
            result.dropped_beyond_horizon, 0,
            "an hour late is well within the horizon"
        );
    }

    #[test]
    fn a_burst_of_history_finds_the_surge_where_it_happened_and_says_it_is_late() {
        let results = results(7);
        let burst = by_name(&results, "3 days posted at once");
        assert_eq!(burst.dropped_beyond_horizon, 0);
        let action = &burst.actions[0];
        // The trigger is in the surge's first hour; the action comes with the burst.
        assert!(action.raised_ms - action.at_ms > DAY, "{action:?}");
    }

    #[test]
    fn late_deliveries_detect_what_the_live_stream_detects_when_it_does() {
        let settings = settings();
        for seed in [7, 8] {
            for scenario in scenarios(seed, 8, 2) {
                let Some(live) = live_version(&scenario) else {
                    continue;
                };
                let late = evaluate(&scenario, &settings);
                let live = evaluate(&live, &settings);
                assert_eq!(
                    late.detected, live.detected,
                    "seed {seed}: {}",
                    scenario.name
                );
                assert_eq!(
                    late.time_to_detect_ms, live.time_to_detect_ms,
                    "seed {seed}: {}",
                    scenario.name
                );
            }
        }
    }

    #[test]
    fn scores_count_what_they_should() {
        let scenario = Scenario {
            name: "t",
            description: "",
            arrivals: vec![],
            incidents: vec![Incident {
                theme: "a".into(),
                start_ms: 10 * HOUR,
                end_ms: 12 * HOUR,
            }],
            score_from_ms: 0,
        };
        let result = evaluate(&scenario, &settings());
        assert_eq!((result.precision(), result.recall()), (None, Some(0.0)));
        assert!(report(&[result]).contains("n/a"));
    }

    #[test]
    fn the_generator_draws_what_it_is_asked_for() {
        let mut rng = Rng::new(1);
        let n = 20_000;
        let mean = (0..n).map(|_| f64::from(rng.poisson(2.5))).sum::<f64>() / n as f64;
        assert!((mean - 2.5).abs() < 0.05, "{mean}");
        assert!((0..1000).all(|_| rng.unit() < 1.0));
        assert!((daily(15 * HOUR) - 1.8).abs() < 1e-9 && (daily(3 * HOUR) - 0.2).abs() < 1e-9);
    }
}
