use std::collections::BTreeMap;

use super::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn config() -> DetectorConfig {
    DetectorConfig {
        bucket_ms: 10 * MIN,
        window_ms: HOUR,
        history_horizon_ms: 7 * DAY,
        min_distinct_customers: 3,
        cooldown_ms: HOUR,
        surge: SurgeConfig {
            enabled: true,
            min_negative_mentions: 5,
            max_p_value: 0.001,
            min_ratio: 2.0,
            baseline_half_life_ms: 6 * HOUR,
            min_baseline: 0.5,
            season_ms: 0,
            per_customer_cap: 2,
        },
        recurrence: RecurrenceConfig {
            enabled: false,
            period_ms: DAY,
            floor: 4,
            k: 3,
            n: 5,
        },
    }
}

fn negative(n: u64, customer: &str, at_ms: i64) -> Mention {
    Mention {
        feedback_id: format!("f{n}"),
        customer_id: customer.into(),
        negative: true,
        at_ms,
    }
}

/// Feeds `mentions` in order; returns the event times at which the theme was raised.
fn raised_at(detector: &mut Detector, theme: &str, mentions: &[Mention]) -> Vec<i64> {
    mentions
        .iter()
        .filter_map(|m| match detector.observe(theme, m) {
            Observation::Raised(signal) => Some(signal.window.end_ms),
            _ => None,
        })
        .collect()
}

/// `per_hour` negative mentions per hour from distinct customers, evenly spaced.
fn steady(from_ms: i64, hours: i64, per_hour: i64, tag: &str) -> Vec<Mention> {
    let step = HOUR / per_hour;
    (0..hours * per_hour)
        .map(|i| negative(i as u64, &format!("{tag}{i}"), from_ms + i * step))
        .collect()
}

#[test]
fn a_sudden_surge_above_the_learned_baseline_is_raised_once() {
    let mut detector = Detector::with_config(config());
    // Two days at 3 complaints an hour: the baseline learns ~3 per window.
    let background = steady(0, 48, 3, "bg");
    assert_eq!(
        raised_at(&mut detector, "delivery", &background),
        Vec::<i64>::new()
    );
    let stats = detector.stats("delivery").expect("seen");
    assert!(
        (stats.baseline_per_window - 3.0).abs() < 0.5,
        "baseline {}",
        stats.baseline_per_window
    );
    // Then 30 in the next half hour.
    let surge: Vec<Mention> = (0..30)
        .map(|i| negative(1000 + i, &format!("s{i}"), 48 * HOUR + i as i64 * MIN))
        .collect();
    let raised = raised_at(&mut detector, "delivery", &surge);
    assert_eq!(raised.len(), 1, "one rising edge: {raised:?}");
    // Detected within minutes of event time, not at the end of a window.
    assert!(
        raised[0] - 48 * HOUR <= 15 * MIN,
        "{}",
        raised[0] - 48 * HOUR
    );
    match detector.current("delivery") {
        Some(Signal {
            trigger: Trigger::Surge { expected, p_value },
            window,
            ..
        }) => {
            assert!(expected > 2.0 && expected < 5.0, "{expected}");
            assert!(p_value < 1e-6, "{p_value}");
            assert!(window.distinct_customers >= 25);
        }
        other => panic!("expected an active surge, got {other:?}"),
    }
}

#[test]
fn the_same_count_is_normal_for_a_busy_theme() {
    let mut detector = Detector::with_config(config());
    // A theme that always gets 20 an hour: 25 in an hour is not a surge.
    let busy = steady(0, 48, 20, "bg");
    // Only its very first hour, when the detector knew nothing about it, was news.
    let raised = raised_at(&mut detector, "busy", &busy);
    assert_eq!(raised.len(), 1);
    assert!(raised[0] < HOUR);
    let more = steady(48 * HOUR, 1, 25, "more");
    assert!(raised_at(&mut detector, "busy", &more).is_empty());
    // The same 25 for a quiet theme is.
    let quiet = steady(0, 48, 2, "q");
    assert!(raised_at(&mut detector, "quiet", &quiet).is_empty());
    assert_eq!(
        raised_at(&mut detector, "quiet", &steady(48 * HOUR, 1, 25, "s")).len(),
        1
    );
}

#[test]
fn a_new_theme_is_judged_against_the_floor() {
    let mut detector = Detector::with_config(config());
    // Five complaints from three customers, no history: P(X >= 5 | 0.5) = 1.7e-4.
    let mentions = [
        negative(1, "a", MIN),
        negative(2, "b", 2 * MIN),
        negative(3, "a", 3 * MIN),
        negative(4, "c", 4 * MIN),
        negative(5, "b", 5 * MIN),
    ];
    let observed: Vec<Observation> = mentions
        .iter()
        .map(|m| detector.observe("new", m))
        .collect();
    assert!(observed[..4]
        .iter()
        .all(|o| matches!(o, Observation::Quiet(_))));
    match &observed[4] {
        Observation::Raised(signal) => {
            assert_eq!(signal.window.negative_mentions, 5);
            assert_eq!(signal.window.counted_negative_mentions, 5);
            assert_eq!(signal.window.distinct_customers, 3);
            assert_eq!(signal.window.expected_negative, 0.5);
            assert_eq!(signal.trigger.name(), "surge");
        }
        other => panic!("expected a raise, got {other:?}"),
    }
}

#[test]
fn one_customer_spamming_never_raises_and_is_capped() {
    let mut settings = config();
    settings.recurrence.enabled = true;
    settings.recurrence.floor = 1;
    settings.recurrence.k = 1;
    let mut detector = Detector::with_config(settings);
    let spam: Vec<Mention> = (0..200)
        .map(|i| negative(i, "angry", i as i64 * 30_000))
        .collect();
    assert!(raised_at(&mut detector, "price", &spam).is_empty());
    let stats = detector.stats("price").expect("seen");
    assert_eq!(stats.window.distinct_customers, 1);
    assert_eq!(
        stats.window.counted_negative_mentions, 2,
        "capped per customer"
    );
    assert!(stats.window.negative_mentions > 100);
    // Nor does the spammer inflate the baseline: capped per bucket, 2 per 10 minutes.
    assert!(
        stats.baseline_per_window <= 12.0,
        "{}",
        stats.baseline_per_window
    );
    // Two more customers make three distinct: the surge's capped count (2 + 1 + 1) stays
    // below its minimum of five, while recurrence (one customer a day is its floor here)
    // now sees the three distinct customers it requires.
    let others = [
        negative(900, "b", 100 * MIN),
        negative(901, "c", 100 * MIN + 1),
    ];
    assert_eq!(raised_at(&mut detector, "price", &others).len(), 1);
    let signal = detector.current("price").expect("raised");
    assert_eq!(signal.trigger.name(), "recurrence");
    assert_eq!(signal.window.counted_negative_mentions, 4);
}

#[test]
fn positive_mentions_do_not_count() {
    let mut detector = Detector::with_config(config());
    let praise: Vec<Mention> = (0..50)
        .map(|i| Mention {
            negative: false,
            ..negative(i, &format!("c{i}"), i as i64 * MIN)
        })
        .collect();
    assert!(raised_at(&mut detector, "staff", &praise).is_empty());
    let stats = detector.stats("staff").expect("seen");
    assert_eq!(stats.window.negative_mentions, 0);
    assert!(stats.window.mentions > 0);
}

#[test]
fn recurrence_raises_a_theme_that_keeps_coming_back() {
    let mut settings = config();
    settings.surge.enabled = false;
    settings.recurrence.enabled = true;
    let mut detector = Detector::with_config(settings);
    // Five distinct customers a day, spread out: no window stands out.
    let mut mentions = Vec::new();
    for day in 0..5 {
        for i in 0..5 {
            let at = day * DAY + i * 4 * HOUR;
            mentions.push(negative((day * 10 + i) as u64, &format!("d{day}c{i}"), at));
        }
    }
    let raised = raised_at(&mut detector, "returns", &mentions);
    // Day 0 and day 1 complete (5 >= 4) and the fourth customer of day 2 is the third
    // period above the floor.
    assert_eq!(raised, vec![2 * DAY + 12 * HOUR]);
    match detector.current("returns").map(|s| s.trigger) {
        Some(Trigger::Recurrence {
            periods_above_floor,
            periods,
            floor,
            distinct_customers,
        }) => {
            assert_eq!((periods, floor), (5, 4));
            assert!(periods_above_floor >= 3);
            assert!(distinct_customers >= 14);
        }
        other => panic!("expected recurrence, got {other:?}"),
    }
}

#[test]
fn recurrence_below_the_floor_or_too_rare_stays_quiet() {
    let mut settings = config();
    settings.surge.enabled = false;
    settings.recurrence.enabled = true;
    let mut detector = Detector::with_config(settings);
    let mut mentions = Vec::new();
    for day in 0..10 {
        // Three customers a day (below the floor of four) ...
        for i in 0..3 {
            mentions.push(negative(0, &format!("d{day}c{i}"), day * DAY + i * HOUR));
        }
        // ... and every fourth day a fourth: only 2 of any 5 days are above the floor.
        if day % 4 == 0 {
            mentions.push(negative(0, &format!("d{day}x"), day * DAY + 5 * HOUR));
        }
    }
    assert!(raised_at(&mut detector, "packaging", &mentions).is_empty());
}

#[test]
fn hysteresis_keeps_a_theme_raised_through_the_cooldown() {
    let mut detector = Detector::with_config(DetectorConfig {
        cooldown_ms: 2 * HOUR,
        ..config()
    });
    let burst = |from: i64, tag: &str| -> Vec<Mention> {
        (0..8)
            .map(|i| negative(0, &format!("{tag}{i}"), from + i * MIN))
            .collect()
    };
    assert_eq!(raised_at(&mut detector, "app", &burst(0, "a")).len(), 1);
    // 70 minutes later the window is empty, but the theme is still within its cooldown.
    let quiet = negative(0, "z", 70 * MIN);
    assert!(matches!(
        detector.observe("app", &quiet),
        Observation::Active(_)
    ));
    // A new burst within the cooldown is the same activity, not a second raise.
    assert!(raised_at(&mut detector, "app", &burst(90 * MIN, "b")).is_empty());
    // After a full cooldown without firing, the theme is quiet again ...
    let later = negative(0, "y", 90 * MIN + 8 * MIN + 2 * HOUR);
    assert!(matches!(
        detector.observe("app", &later),
        Observation::Quiet(_)
    ));
    // ... and the next burst is a new raise.
    assert_eq!(
        raised_at(&mut detector, "app", &burst(6 * HOUR, "c")).len(),
        1
    );
}

#[test]
fn a_mention_beyond_the_horizon_is_dropped_and_counted() {
    let mut detector = Detector::with_config(config());
    assert!(detector
        .observe("returns", &negative(0, "a", 8 * DAY))
        .counted());
    // Six days late: within the 7-day horizon, counted.
    assert!(detector
        .observe("returns", &negative(1, "b", 2 * DAY))
        .counted());
    // Seven days and a minute late: dropped, and counted as such.
    assert_eq!(
        detector.observe("returns", &negative(2, "c", DAY - MIN)),
        Observation::BeyondHorizon
    );
    let stats = detector.stats("returns").expect("seen");
    assert_eq!(stats.dropped_beyond_horizon, 1);
    assert_eq!(stats.watermark_ms, 8 * DAY);
}

#[test]
fn a_late_mention_counts_in_the_old_bucket_it_belongs_to() {
    let mut settings = config();
    settings.recurrence.enabled = true;
    let mut detector = Detector::with_config(settings);
    detector.observe("t", &negative(0, "a", 2 * DAY + 10 * HOUR));
    detector.observe("t", &negative(1, "b", 3 * DAY));
    let periods = |d: &Detector| d.stats("t").expect("seen").periods;
    assert_eq!(periods(&detector), vec![(2 * DAY, 1), (3 * DAY, 1)]);
    // A day late, for day 2: that period counts one more customer, the window nothing.
    match detector.observe("t", &negative(2, "c", 2 * DAY + 11 * HOUR)) {
        Observation::Quiet(window) => assert_eq!(window.negative_mentions, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(periods(&detector), vec![(2 * DAY, 2), (3 * DAY, 1)]);
    // Late into the current window: the window counts it.
    match detector.observe("t", &negative(3, "d", 3 * DAY - 20 * MIN)) {
        Observation::Quiet(window) => assert_eq!(window.negative_mentions, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn shuffled_arrival_gives_the_same_final_counts() {
    let ordered: Vec<Mention> = (0..300)
        .map(|i| negative(i, &format!("c{}", i % 37), i as i64 * 20_000))
        .collect();
    // Each mention delayed by up to 5 hours of arrival.
    let mut arrival: Vec<(i64, &Mention)> = ordered
        .iter()
        .enumerate()
        .map(|(i, m)| (m.at_ms + ((i as i64 * 7919) % 300) * MIN, m))
        .collect();
    arrival.sort_by_key(|(at, _)| *at);
    let mut in_order = Detector::with_config(config());
    let mut shuffled = Detector::with_config(config());
    for m in &ordered {
        in_order.observe("t", m);
    }
    for (_, m) in &arrival {
        assert!(shuffled.observe("t", m).counted(), "nothing dropped");
    }
    assert_eq!(in_order.stats("t"), shuffled.stats("t"));
}

/// Long enough for many snapshots (and their thinning): local disorder everywhere, as
/// the pipeline delivers it, plus a few mentions days late, still within the horizon.
#[test]
fn replays_from_snapshots_give_the_same_counts_as_the_ordered_stream() {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    let ordered: Vec<Mention> = (0..40_000)
        .map(|i| negative(i, &format!("c{}", i % 500), i as i64 * 8_000))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut arrival: Vec<Mention> = Vec::with_capacity(ordered.len());
    let (mut held_back, mut rest): (Vec<Mention>, Vec<Mention>) = ordered
        .iter()
        .cloned()
        .partition(|m| m.feedback_id.ends_with("777"));
    for chunk in rest.chunks_mut(50) {
        chunk.shuffle(&mut rng);
    }
    // The held-back ones arrive in the middle and at the end, days after their time.
    let middle = rest.len() / 2;
    arrival.extend(rest.drain(..middle));
    let late_half = held_back.len() / 2;
    arrival.extend(held_back.drain(..late_half));
    arrival.append(&mut rest);
    arrival.append(&mut held_back);

    let mut in_order = Detector::with_config(config());
    for m in &ordered {
        in_order.observe("t", m);
    }
    let mut delivered = Detector::with_config(config());
    for batch in arrival.chunks(25) {
        let (intakes, _) = delivered.observe_batch("t", batch);
        assert!(intakes.iter().all(|i| *i == Intake::Counted), "{intakes:?}");
    }
    assert_eq!(delivered.stats("t"), in_order.stats("t"));
    assert_eq!(delivered.current("t"), in_order.current("t"));
}

#[test]
fn mentions_of_the_same_instant_count_the_same_in_any_order() {
    let mut a = Detector::with_config(config());
    let mut b = Detector::with_config(config());
    let tie: Vec<Mention> = (0..8)
        .map(|i| negative(i, &format!("c{}", i % 3), HOUR))
        .collect();
    for m in &tie {
        a.observe("t", m);
    }
    for m in tie.iter().rev() {
        b.observe("t", m);
    }
    assert_eq!(a.stats("t"), b.stats("t"));
    // The same mention twice counts once.
    b.observe("t", &tie[0]);
    assert_eq!(a.stats("t"), b.stats("t"));
}

#[test]
fn a_replay_keeps_the_resolution() {
    let mut detector = Detector::with_config(config());
    let surge: Vec<Mention> = (0..10)
        .map(|i| negative(i as u64, &format!("s{i}"), 5 * HOUR + i * MIN))
        .collect();
    assert_eq!(raised_at(&mut detector, "t", &surge).len(), 1);
    detector.resolved("t", 5 * HOUR + 20 * MIN);
    // A late mention from before the resolution: answered, only in the baseline.
    assert_eq!(
        detector.observe("t", &negative(100, "late", 5 * HOUR + 2 * MIN)),
        Observation::BeforeResolution
    );
    // A late mention after it, older than the newest: counted after a replay that
    // keeps the resolution (the surge before it stays answered).
    detector.observe("t", &negative(101, "x", 5 * HOUR + 30 * MIN));
    match detector.observe("t", &negative(102, "y", 5 * HOUR + 25 * MIN)) {
        Observation::Quiet(window) => assert_eq!(window.negative_mentions, 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(detector.resolved_at("t"), Some(5 * HOUR + 20 * MIN));
}

/// The service's semantics: one unresolved action per theme (never resolved here), its
/// evidence the latest signal's customers.
fn actions(
    observations: &mut dyn FnMut(&mut Detector) -> Vec<(String, Observation)>,
) -> (Detector, BTreeMap<String, (u32, u32)>) {
    let mut settings = config();
    settings.recurrence.enabled = true;
    settings.surge.season_ms = DAY;
    let mut detector = Detector::with_config(settings);
    let mut actions: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for (theme, observation) in observations(&mut detector) {
        match observation {
            Observation::Raised(signal) => {
                let action = actions.entry(theme).or_insert((1, 0));
                action.1 = signal.customers();
            }
            Observation::Active(signal) => {
                let action = actions.get_mut(&theme).expect("active after raised");
                action.1 = signal.customers();
            }
            _ => {}
        }
    }
    (detector, actions)
}

/// Three days: a quiet background theme, a theme that surges on the third day, and one
/// that recurs every day.
fn multi_day_stream() -> Vec<(String, Mention)> {
    let mut stream = Vec::new();
    let mut add = |theme: &str, m: Mention| stream.push((theme.to_owned(), m));
    let mut n = 0;
    // Three customers complain now and then: below the recurrence floor of 4 a day.
    for i in 0..3 * 24 {
        n += 1;
        add(
            "background",
            negative(n, &format!("b{}", i % 3), i * HOUR + 7 * MIN),
        );
        n += 1;
        add(
            "surging",
            negative(n, &format!("g{}", i % 3), i * HOUR + 41 * MIN),
        );
    }
    for i in 0..30 {
        n += 1;
        add(
            "surging",
            negative(n, &format!("s{i}"), 2 * DAY + 9 * HOUR + i * MIN),
        );
    }
    for day in 0..3 {
        for c in 0..5 {
            n += 1;
            let customer = format!("r{day}-{c}");
            add(
                "recurring",
                negative(n, &customer, day * DAY + 15 * HOUR + c * 17 * MIN),
            );
        }
    }
    stream.sort_by_key(|(_, m)| m.at_ms);
    stream
}

#[test]
fn any_arrival_order_gives_the_same_actions_and_counts() {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    let stream = multi_day_stream();
    let (in_order, expected) = actions(&mut |detector| {
        stream
            .iter()
            .map(|(theme, m)| (theme.clone(), detector.observe(theme, m)))
            .collect()
    });
    let raised: Vec<&String> = expected.keys().collect();
    assert_eq!(raised, ["recurring", "surging"], "{expected:?}");
    for seed in 0..24 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut shuffled = stream.clone();
        shuffled.shuffle(&mut rng);
        let (detector, got) = actions(&mut |detector| {
            let mut observations = Vec::new();
            let mut rest = shuffled.as_slice();
            while !rest.is_empty() {
                // Odd seeds one by one, even ones in batches (as the service takes them).
                let size = if seed % 2 == 1 {
                    1
                } else {
                    rng.random_range(1..=40).min(rest.len())
                };
                let (batch, tail) = rest.split_at(size);
                rest = tail;
                let mut by_theme: BTreeMap<&str, Vec<Mention>> = BTreeMap::new();
                for (theme, m) in batch {
                    by_theme.entry(theme).or_default().push(m.clone());
                }
                for (theme, mentions) in by_theme {
                    let (intakes, observation) = detector.observe_batch(theme, &mentions);
                    assert!(intakes.iter().all(|i| *i == Intake::Counted), "{intakes:?}");
                    observations.push((theme.to_owned(), observation));
                }
            }
            observations
        });
        assert_eq!(got, expected, "seed {seed}");
        for theme in ["background", "surging", "recurring"] {
            assert_eq!(
                detector.stats(theme),
                in_order.stats(theme),
                "seed {seed}, {theme}"
            );
            // The episode the evidence is read from (its span and numbers) too.
            assert_eq!(
                detector.latest_episode(theme),
                in_order.latest_episode(theme),
                "seed {seed}, {theme}"
            );
        }
    }
}

#[test]
fn the_same_input_gives_the_same_output() {
    let run = || {
        let mut settings = config();
        settings.recurrence.enabled = true;
        settings.surge.season_ms = DAY;
        let mut detector = Detector::with_config(settings);
        (0..3000)
            .map(|n: i64| {
                let customer = format!("c{}", (n * 31) % 97);
                let theme = ["a", "b", "c"][(n % 3) as usize];
                let at = n * 90_000 + (n * 7919) % (8 * MIN);
                detector.observe(theme, &negative(n as u64, &customer, at))
            })
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run());
    assert!(first.iter().any(|o| matches!(o, Observation::Raised(_))));
}

#[test]
fn a_resolution_forgets_the_incident_but_not_the_baseline() {
    let mut detector = Detector::with_config(config());
    let background = steady(0, 24, 2, "bg");
    raised_at(&mut detector, "t", &background);
    let surge: Vec<Mention> = (0..10)
        .map(|i| negative(0, &format!("s{i}"), 24 * HOUR + i * MIN))
        .collect();
    assert_eq!(raised_at(&mut detector, "t", &surge).len(), 1);
    let baseline = detector.stats("t").expect("seen").baseline_per_window;
    assert!(baseline > 1.0, "{baseline}");

    detector.resolved("t", 24 * HOUR + 10 * MIN);
    assert_eq!(detector.current("t"), None, "quiet after the resolution");
    let stats = detector.stats("t").expect("seen");
    assert_eq!(stats.window.negative_mentions, 0);
    assert_eq!(stats.baseline_per_window, baseline);
    // Complaints given before the resolution arrive late: answered, not counted.
    assert_eq!(
        detector.observe("t", &negative(0, "late", 24 * HOUR + 5 * MIN)),
        Observation::BeforeResolution
    );
    // New complaints count from zero and can raise again.
    let again: Vec<Mention> = (0..10)
        .map(|i| negative(0, &format!("n{i}"), 24 * HOUR + 11 * MIN + i * MIN))
        .collect();
    assert_eq!(raised_at(&mut detector, "t", &again).len(), 1);
    // An older resolution never moves the boundary back.
    detector.resolved("t", MIN);
    assert_eq!(detector.resolved_at("t"), Some(24 * HOUR + 10 * MIN));
}

#[test]
fn a_resolution_learnt_late_recounts_what_came_after_it() {
    let mut local = Detector::with_config(config());
    let mentions: Vec<Mention> = (0..12)
        .map(|i| negative(i as u64, &format!("c{i}"), i * MIN))
        .collect();
    raised_at(&mut local, "t", &mentions);
    // Resolved elsewhere at minute 5: the 6 mentions after it are the incident now.
    let after: Vec<Mention> = mentions[6..].to_vec();
    let signal = local
        .resolved_late("t", 5 * MIN, &after)
        .expect("still a surge");
    assert_eq!(signal.window.negative_mentions, 6);
    assert_eq!(local.resolved_at("t"), Some(5 * MIN));
    // The same as a detector that knew of the resolution all along.
    let mut knew = Detector::with_config(config());
    raised_at(&mut knew, "t", &mentions[..6]);
    knew.resolved("t", 5 * MIN);
    raised_at(&mut knew, "t", &after);
    assert_eq!(
        knew.stats("t").map(|s| s.window),
        local.stats("t").map(|s| s.window)
    );
}

#[test]
fn a_resolution_before_the_first_mention_is_kept() {
    let mut detector = Detector::with_config(config());
    detector.resolved("t", 10 * MIN);
    assert_eq!(detector.resolved_at("t"), Some(10 * MIN));
    assert_eq!(
        detector.observe("t", &negative(0, "a", 5 * MIN)),
        Observation::BeforeResolution
    );
    assert!(detector.observe("t", &negative(0, "a", 11 * MIN)).counted());
    assert_eq!(detector.resolved_at("t"), Some(10 * MIN));
}

#[test]
fn the_baseline_learns_the_daily_shape() {
    let mut settings = config();
    settings.surge.season_ms = DAY;
    let mut detector = Detector::with_config(settings.clone());
    let mut without_seasons = Detector::with_config(config());
    // Four days: 1 an hour at night, 12 an hour from 09:00 to 12:00.
    let mut mentions = Vec::new();
    for day in 0..4 {
        for hour in 0..24 {
            let per_hour = if (9..12).contains(&hour) { 12 } else { 1 };
            let from = day * DAY + hour * HOUR;
            mentions.extend(steady(from, 1, per_hour, &format!("d{day}h{hour}-")));
        }
    }
    let seasonal = raised_at(&mut detector, "t", &mentions);
    let plain = raised_at(&mut without_seasons, "t", &mentions);
    // Without seasonality every morning looks like a surge; with it only the first one
    // (when the detector had never seen a morning) does.
    assert_eq!(plain.len(), 4, "{plain:?}");
    assert_eq!(seasonal.len(), 1, "{seasonal:?}");
    assert!(seasonal[0] < DAY);
    // The morning rush at night would still be a surge.
    let night = steady(4 * DAY + 2 * HOUR, 1, 12, "night");
    assert_eq!(raised_at(&mut detector, "t", &night).len(), 1);
}

#[test]
fn a_long_silence_decays_the_baseline_in_one_step() {
    let mut detector = Detector::with_config(config());
    raised_at(&mut detector, "t", &steady(0, 24, 6, "bg"));
    let before = detector.stats("t").expect("seen").baseline_per_window;
    assert!(before > 4.0, "{before}");
    // A year later.
    detector.observe("t", &negative(0, "x", 365 * DAY));
    let after = detector.stats("t").expect("seen").baseline_per_window;
    assert!(after < 1e-6, "{after}");
}

#[test]
fn themes_have_their_own_rules() {
    let mut settings = DetectorSettings::new(config());
    let mut strict = config();
    strict.min_distinct_customers = 10;
    settings.themes.insert("price".into(), strict);
    let mut detector = Detector::new(settings);
    let burst: Vec<Mention> = (0..8)
        .map(|i| negative(0, &format!("c{i}"), i * MIN))
        .collect();
    assert_eq!(raised_at(&mut detector, "delivery", &burst).len(), 1);
    assert!(raised_at(&mut detector, "price", &burst).is_empty());
    assert_eq!(detector.config("price").min_distinct_customers, 10);
    assert_eq!(detector.themes(), ["delivery", "price"]);
}
