use super::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn config() -> DetectorConfig {
    DetectorConfig {
        bucket_ms: 10 * MIN,
        window_ms: HOUR,
        allowed_lateness_ms: 10 * MIN,
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
fn late_mentions_count_within_the_lateness_and_are_dropped_beyond() {
    let mut detector = Detector::with_config(config());
    assert!(detector
        .observe("returns", &negative(0, "a", 200 * MIN))
        .counted());
    // 8 minutes late: counted, in the window.
    match detector.observe("returns", &negative(1, "b", 192 * MIN)) {
        Observation::Quiet(window) => assert_eq!(window.negative_mentions, 2),
        other => panic!("{other:?}"),
    }
    // 11 minutes late: dropped.
    assert_eq!(
        detector.observe("returns", &negative(2, "c", 189 * MIN)),
        Observation::TooLate
    );
    assert_eq!(detector.stats("returns").map(|s| s.dropped_late), Some(1));
}

#[test]
fn shuffling_within_the_lateness_gives_the_same_final_counts() {
    let ordered: Vec<Mention> = (0..300)
        .map(|i| negative(i, &format!("c{}", i % 37), i as i64 * 20_000))
        .collect();
    // Each mention delayed by up to 9 minutes of arrival (lateness is 10).
    let mut arrival: Vec<(i64, &Mention)> = ordered
        .iter()
        .enumerate()
        .map(|(i, m)| (m.at_ms + ((i as i64 * 7919) % 9) * MIN, m))
        .collect();
    arrival.sort_by_key(|(at, _)| *at);
    let mut in_order = Detector::with_config(config());
    let mut shuffled = Detector::with_config(config());
    for m in &ordered {
        in_order.observe("t", m);
    }
    for (_, m) in &arrival {
        assert!(shuffled.observe("t", m).counted(), "nothing too late");
    }
    let a = in_order.stats("t").expect("seen");
    let b = shuffled.stats("t").expect("seen");
    assert_eq!(a.window, b.window);
    assert_eq!(a.baseline_per_window, b.baseline_per_window);
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
