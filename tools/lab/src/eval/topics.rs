//! `closeloop-lab eval topics`: how soon does a new topic show among the emerging topics,
//! and how much of that list is noise? Generates weeks of everyday feedback in English and
//! German that no theme covers (many subjects and remarks at steady rates, customers from a
//! pool, some of them writing the same again), plants a topic the taxonomy does not know
//! at a chosen moment (a wallet app, loyalty points, a pickup locker, a self-checkout —
//! each in paraphrases, growing from a few to tens of customers a day), and feeds it
//! through the pieces the trends service uses: the classifier decides what is unmatched,
//! [`PhraseExtractor`] with the built-in taxonomy cuts the phrases, and
//! [`Tally`] with the service's default settings ranks them at every simulated refresh, in
//! windows of event time ending at the newest feedback.
//!
//! A listed phrase *belongs* to the planted topic when it shares a stemmed word with the
//! topic's key words; every other listed phrase is noise. A control scenario is the same
//! feedback without the topic: whatever it lists is a false alarm.
//!
//! Seeded and in event time, so the figures are the same on every machine.

use std::collections::BTreeSet;
use std::fmt::Write;

use closeloop_classify::{
    Classifier, Input, LexiconClassifier, PhraseExtractor, SentimentLabel, Taxonomy,
};
use closeloop_trend::emerging::{Feedback, Tone};
use closeloop_trend::{EmergingConfig, Tally, Windows};

use super::trends::Rng;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// As the service's `TRENDS_EMERGING_WINDOW_DAYS` and `TRENDS_EMERGING_BASELINE_DAYS`.
pub const WINDOW_MS: i64 = 7 * DAY;
pub const BASELINE_MS: i64 = 28 * DAY;
/// Topics listed, as the API's most (`limit=100`).
const LISTED: usize = 100;

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Days of feedback before the topic starts (the service's windows need 35 to be full).
    #[arg(long, default_value_t = 35)]
    pub history_days: i64,
    /// Days the run goes on after the topic starts.
    #[arg(long, default_value_t = 7)]
    pub topic_days: i64,
    /// Refreshes are simulated from this many days before the topic starts (false alarms
    /// before it are counted too).
    #[arg(long, default_value_t = 7)]
    pub watch_before_days: i64,
    /// Event time between two simulated refreshes, in minutes.
    #[arg(long, default_value_t = 60)]
    pub refresh_minutes: i64,
    /// Everyday feedback per day (before the classifier keeps the unmatched ones).
    #[arg(long, default_value_t = 150.0)]
    pub per_day: f64,
    /// Seed of the first run.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Runs (seed, seed+1, …); the planted topic changes with the seed.
    #[arg(long, default_value_t = 10)]
    pub runs: u64,
}

/// What a scenario is generated with.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub history_days: i64,
    pub topic_days: i64,
    pub watch_before_days: i64,
    pub refresh_ms: i64,
    pub per_day: f64,
}

impl From<&EvalArgs> for Shape {
    fn from(args: &EvalArgs) -> Self {
        Shape {
            history_days: args.history_days,
            topic_days: args.topic_days,
            watch_before_days: args.watch_before_days,
            refresh_ms: args.refresh_minutes * MINUTE,
            per_day: args.per_day,
        }
    }
}

/// Everyday subjects nobody wrote a theme for, and what people say about them.
const SUBJECTS_EN: &[&str] = &[
    "the music in the store",
    "the car park",
    "the opening hours",
    "the coffee corner",
    "the fitting rooms",
    "the lighting",
    "the toilets",
    "the lift",
    "the playground",
    "the christmas decoration",
    "the air conditioning",
    "the bakery counter",
    "the flower section",
    "the entrance door",
    "the trolleys",
    "the bike racks",
    "the escalator",
    "the recipe booklet",
    "the tasting stand",
    "the seating area",
    "the magazine shelf",
    "the bottle machine",
    "the garden centre",
    "the children's corner",
];
const REMARKS_EN: &[&str] = &[
    "is too loud",
    "was really nice today",
    "could be better",
    "smells odd",
    "needs a good clean",
    "feels cold",
    "was lovely",
    "is hard to find",
    "looks tired",
    "made my day",
    "was crowded this morning",
    "is much nicer now",
    "was closed again",
    "seems smaller than before",
];
const SUBJECTS_DE: &[&str] = &[
    "die Musik im Laden",
    "der Parkplatz",
    "die Öffnungszeiten",
    "die Kaffeeecke",
    "die Umkleiden",
    "die Beleuchtung",
    "die Toiletten",
    "der Aufzug",
    "der Spielplatz",
    "die Weihnachtsdeko",
    "die Klimaanlage",
    "die Bäckertheke",
    "die Blumenabteilung",
    "die Eingangstür",
    "die Einkaufswagen",
    "die Fahrradständer",
    "die Rolltreppe",
    "das Rezeptheft",
    "der Probierstand",
    "die Sitzecke",
    "das Zeitschriftenregal",
    "der Flaschenautomat",
    "das Gartencenter",
    "die Kinderecke",
];
const REMARKS_DE: &[&str] = &[
    "ist zu laut",
    "war heute richtig schön",
    "könnte besser sein",
    "riecht komisch",
    "müsste mal geputzt werden",
    "ist ungemütlich kalt",
    "war wunderbar",
    "ist schwer zu finden",
    "wirkt abgenutzt",
    "hat mir den Tag versüßt",
    "war heute morgen voll",
    "ist jetzt viel schöner",
    "war schon wieder zu",
    "wirkt kleiner als früher",
];

/// A topic the taxonomy does not know, in paraphrases, and the words that name it.
#[derive(Debug)]
pub struct Planted {
    pub name: &'static str,
    pub en: &'static [&'static str],
    pub de: &'static [&'static str],
    /// Key words (English and German); a listed phrase sharing a stemmed word with them
    /// belongs to the topic.
    pub key_words_en: &'static str,
    pub key_words_de: &'static str,
}

pub const PLANTED: [Planted; 4] = [
    Planted {
        name: "digital wallet",
        en: &[
            "the digital wallet keeps closing itself",
            "Digital wallet shows a white screen since yesterday",
            "since the last version the digital wallet won't open",
            "my digital wallet just shows a blank page",
            "the wallet vanished from my phone",
        ],
        de: &[
            "Die digitale Wallet schließt sich sofort wieder",
            "Wallet zeigt nur einen weißen Bildschirm",
            "seit gestern öffnet die Wallet nicht mehr",
            "Die neue Wallet geht gar nicht",
        ],
        key_words_en: "wallet",
        key_words_de: "Wallet",
    },
    Planted {
        name: "loyalty points",
        en: &[
            "my loyalty points vanished",
            "loyalty points disappeared after my last shopping trip",
            "where are my loyalty points?",
            "the loyalty points from my last visit are gone",
            "loyalty point balance is zero again",
        ],
        de: &[
            "Meine Treuepunkte sind verschwunden",
            "Treuepunkte wurden nicht gutgeschrieben",
            "Wo sind meine Treuepunkte geblieben?",
            "die Treuepunkte vom letzten Einkauf fehlen",
        ],
        key_words_en: "loyalty points",
        key_words_de: "Treuepunkte",
    },
    Planted {
        name: "pickup locker",
        en: &[
            "the pickup locker at the station is always full",
            "pickup locker did not open for me",
            "the new pickup locker never opens",
            "pickup lockers at the station are full every evening",
        ],
        de: &[
            "Die Abholstation am Bahnhof ist ständig voll",
            "die Abholstation ging heute nicht auf",
            "Abholstation am Bahnhof schon wieder voll",
            "Die neue Abholstation geht nie auf",
        ],
        key_words_en: "pickup locker",
        key_words_de: "Abholstation",
    },
    Planted {
        name: "scan & go",
        en: &[
            "the Scan & Go handset keeps beeping at me",
            "Scan and Go handset rejects my own bag",
            "the new Scan & Go handsets are empty every morning",
            "scan & go beeps for every single item",
        ],
        de: &[
            "Der Scan & Go Handscanner piept ständig",
            "der Handscanner erkennt meine Tasche nicht",
            "die Handscanner sind morgens immer leer",
        ],
        key_words_en: "scan handset",
        key_words_de: "Handscanner",
    },
];

/// One unmatched feedback as the service stores it: its phrases already cut.
#[derive(Debug, Clone)]
struct Row {
    customer: String,
    at_ms: i64,
    language: &'static str,
    tone: Tone,
    /// (key, text)
    phrases: Vec<(String, String)>,
    planted: bool,
}

/// What feeding a scenario gave.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub seed: u64,
    /// The planted topic's name, `None` for the control.
    pub topic: Option<&'static str>,
    /// Feedback generated, and how much of it matched no theme (the list's feedback).
    pub generated: usize,
    pub unmatched: usize,
    /// Planted feedback generated, and how much of it matched no theme.
    pub planted: usize,
    pub planted_unmatched: usize,
    /// Topic start → the first refresh listing a phrase of it.
    pub detect_ms: Option<i64>,
    /// Its best rank (1 = top) at that refresh.
    pub first_rank: Option<usize>,
    /// Listed phrases at the last refresh: the topic's and noise.
    pub end_topic: usize,
    pub end_noise: usize,
    /// Summed over the refreshes from the topic's start: the topic's and noise.
    pub after_topic: usize,
    pub after_noise: usize,
    /// Noise listed over the refreshes before the topic's start (summed), and refreshes.
    pub before_noise: usize,
    pub refreshes_before: usize,
    pub refreshes_after: usize,
    /// Refreshes listing any noise at all.
    pub refreshes_with_noise: usize,
    /// Distinct noise phrases ever listed.
    pub noise_phrases: BTreeSet<String>,
    /// The noise phrases listed at the last refresh.
    pub end_noise_phrases: Vec<String>,
}

impl RunResult {
    pub fn end_precision(&self) -> Option<f64> {
        let listed = self.end_topic + self.end_noise;
        (listed > 0).then(|| self.end_topic as f64 / listed as f64)
    }

    pub fn precision_over_time(&self) -> Option<f64> {
        let listed = self.after_topic + self.after_noise;
        (listed > 0).then(|| self.after_topic as f64 / listed as f64)
    }
}

/// The pieces the service computes with, built once.
pub struct Pipeline {
    classifier: LexiconClassifier,
    extractor: PhraseExtractor,
    rules: EmergingConfig,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            classifier: LexiconClassifier::new(Taxonomy::builtin()),
            extractor: PhraseExtractor::new(&Taxonomy::builtin()),
            rules: EmergingConfig::default(),
        }
    }
}

/// The planted topic of a seed.
pub fn planted_of(seed: u64) -> &'static Planted {
    &PLANTED[(seed % PLANTED.len() as u64) as usize]
}

impl Pipeline {
    /// The stemmed words of the topic's key words.
    fn key_stems(&self, planted: &Planted) -> BTreeSet<String> {
        let mut stems = BTreeSet::new();
        for (words, lang) in [
            (planted.key_words_en, closeloop_classify::Language::En),
            (planted.key_words_de, closeloop_classify::Language::De),
        ] {
            for phrase in self.extractor.phrases(words, lang) {
                stems.extend(phrase.key.split(' ').map(str::to_owned));
            }
        }
        stems
    }

    /// Generates the scenario of `seed` (with the planted topic or without) and feeds it.
    pub fn run(&self, seed: u64, shape: Shape, plant: bool) -> RunResult {
        let planted = planted_of(seed);
        let topic_start = shape.history_days * DAY;
        let end = topic_start + shape.topic_days * DAY;
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(11));
        // (at, customer, language, text, planted)
        let mut texts: Vec<(i64, String, &'static str, String, bool)> = Vec::new();
        // Steady, uneven rates: each subject its own weight, the same all run long.
        let weights: Vec<f64> = (0..SUBJECTS_EN.len())
            .map(|_| 0.2 + rng.unit() * 1.8)
            .collect();
        let total: f64 = weights.iter().sum();
        let pool = 3_000;
        let mut last_of: std::collections::HashMap<u64, (String, &'static str)> =
            std::collections::HashMap::new();
        let mut hour = 0;
        while hour < end {
            for _ in 0..rng.poisson(shape.per_day / 24.0) {
                let at = hour + rng.below(HOUR as u64) as i64;
                let customer = rng.below(pool);
                // Some customers say the same again.
                if rng.unit() < 0.08 {
                    if let Some((text, lang)) = last_of.get(&customer).cloned() {
                        texts.push((at, format!("c{customer}"), lang, text, false));
                        continue;
                    }
                }
                let mut pick = rng.unit() * total;
                let mut subject = 0;
                while subject + 1 < weights.len() && pick >= weights[subject] {
                    pick -= weights[subject];
                    subject += 1;
                }
                let german = rng.unit() < 0.4;
                let (subjects, remarks, lang) = if german {
                    (SUBJECTS_DE, REMARKS_DE, "de")
                } else {
                    (SUBJECTS_EN, REMARKS_EN, "en")
                };
                let remark = remarks[rng.below(remarks.len() as u64) as usize];
                let text = capitalised(&format!("{} {remark}", subjects[subject]));
                last_of.insert(customer, (text.clone(), lang));
                texts.push((at, format!("c{customer}"), lang, text, false));
            }
            if plant && hour >= topic_start {
                // A few customers a day at first, about thirty after five days.
                let days_in = (hour - topic_start) as f64 / DAY as f64;
                let per_day = (3.0 + 5.4 * days_in).min(30.0);
                for _ in 0..rng.poisson(per_day / 24.0) {
                    let at = hour + rng.below(HOUR as u64) as i64;
                    let customer = format!("c{}", rng.below(pool));
                    let (variants, lang) = if rng.unit() < 0.4 {
                        (planted.de, "de")
                    } else {
                        (planted.en, "en")
                    };
                    let text = variants[rng.below(variants.len() as u64) as usize];
                    texts.push((at, customer, lang, text.to_owned(), true));
                }
            }
            hour += HOUR;
        }
        texts.sort_by_key(|t| t.0);

        // As categorise and trends do: classify, keep what matched no theme, cut phrases.
        let generated = texts.len();
        let planted_count = texts.iter().filter(|t| t.4).count();
        let rows: Vec<Row> = texts
            .into_iter()
            .filter_map(|(at_ms, customer, hint, text, planted)| {
                let c = self.classifier.classify(&Input {
                    text: &text,
                    language_hint: Some(hint),
                    ..Input::default()
                });
                if !c.themes.is_empty() {
                    return None;
                }
                let tone = match c.sentiment.label {
                    SentimentLabel::Negative => Tone::Negative,
                    SentimentLabel::Positive => Tone::Positive,
                    _ => Tone::Neutral,
                };
                let phrases = self
                    .extractor
                    .phrases(&text, c.language)
                    .into_iter()
                    .map(|p| (p.key, p.text))
                    .collect();
                Some(Row {
                    customer,
                    at_ms,
                    language: c.language.as_str(),
                    tone,
                    phrases,
                    planted,
                })
            })
            .collect();

        let stems = self.key_stems(planted);
        let belongs = |key: &str| key.split(' ').any(|w| stems.contains(w));
        let mut result = RunResult {
            seed,
            topic: plant.then_some(planted.name),
            generated,
            unmatched: rows.len(),
            planted: planted_count,
            planted_unmatched: rows.iter().filter(|r| r.planted).count(),
            detect_ms: None,
            first_rank: None,
            end_topic: 0,
            end_noise: 0,
            after_topic: 0,
            after_noise: 0,
            before_noise: 0,
            refreshes_before: 0,
            refreshes_after: 0,
            refreshes_with_noise: 0,
            noise_phrases: BTreeSet::new(),
            end_noise_phrases: Vec::new(),
        };
        let mut refresh = topic_start - shape.watch_before_days * DAY;
        while refresh <= end {
            // The newest feedback at the refresh: the windows end there.
            let upto = rows.partition_point(|r| r.at_ms <= refresh);
            if upto == 0 {
                refresh += shape.refresh_ms;
                continue;
            }
            let windows = Windows::ending_at(rows[upto - 1].at_ms, WINDOW_MS, BASELINE_MS);
            let from = rows.partition_point(|r| r.at_ms <= windows.baseline_start_ms);
            let mut tally = Tally::new(windows);
            for (handle, row) in rows[from..upto].iter().enumerate() {
                tally.add(
                    Feedback {
                        handle: handle as u32,
                        customer_id: &row.customer,
                        at_ms: row.at_ms,
                        language: row.language,
                        tone: row.tone,
                    },
                    row.phrases.iter().map(|(k, t)| (k.as_str(), t.as_str())),
                );
            }
            let ranking = tally.rank(&self.rules, LISTED);
            let mut ours = 0;
            let mut noise = 0;
            let mut best_rank = None;
            result.end_noise_phrases.clear();
            for (rank, topic) in ranking.topics.iter().enumerate() {
                if plant && belongs(&topic.key) {
                    ours += 1;
                    best_rank.get_or_insert(rank + 1);
                } else {
                    noise += 1;
                    result.noise_phrases.insert(topic.key.clone());
                    result.end_noise_phrases.push(topic.key.clone());
                }
            }
            if noise > 0 {
                result.refreshes_with_noise += 1;
            }
            if refresh < topic_start {
                result.refreshes_before += 1;
                result.before_noise += noise;
            } else {
                result.refreshes_after += 1;
                result.after_topic += ours;
                result.after_noise += noise;
                if result.detect_ms.is_none() && ours > 0 {
                    result.detect_ms = Some(refresh - topic_start);
                    result.first_rank = best_rank;
                }
            }
            result.end_topic = ours;
            result.end_noise = noise;
            refresh += shape.refresh_ms;
        }
        result
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
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

/// One line per run, then the totals, as `eval topics` prints them.
pub fn report(planted: &[RunResult], control: &[RunResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<15} {:>9} {:>9} {:>8} {:>14} {:>5} {:>14} {:>13} {:>12}  noise at the end",
        "seed",
        "topic",
        "feedback",
        "unmatched",
        "planted",
        "time to list",
        "rank",
        "precision end",
        "over time",
        "noise before"
    );
    for r in planted {
        let _ = writeln!(
            out,
            "{:<5} {:<15} {:>9} {:>9} {:>8} {:>14} {:>5} {:>14} {:>13} {:>12}  {}",
            r.seed,
            r.topic.unwrap_or("-"),
            r.generated,
            r.unmatched,
            format!("{}/{}", r.planted_unmatched, r.planted),
            r.detect_ms.map_or_else(|| "not found".to_owned(), duration),
            r.first_rank
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            format!(
                "{} ({}+{})",
                ratio(r.end_precision()),
                r.end_topic,
                r.end_noise
            ),
            ratio(r.precision_over_time()),
            r.before_noise,
            r.end_noise_phrases.join(", "),
        );
    }
    let runs = planted.len();
    let found: Vec<i64> = {
        let mut d: Vec<i64> = planted.iter().filter_map(|r| r.detect_ms).collect();
        d.sort_unstable();
        d
    };
    let missed = runs - found.len();
    let median = found.get(found.len() / 2).copied();
    let worst = if missed > 0 {
        "not found".to_owned()
    } else {
        found
            .last()
            .map_or_else(|| "-".to_owned(), |&ms| duration(ms))
    };
    let mut ranks: Vec<usize> = planted.iter().filter_map(|r| r.first_rank).collect();
    ranks.sort_unstable();
    let sum = |f: fn(&RunResult) -> usize, rs: &[RunResult]| rs.iter().map(f).sum::<usize>();
    let end_listed = sum(|r| r.end_topic + r.end_noise, planted);
    let after_listed = sum(|r| r.after_topic + r.after_noise, planted);
    let _ = writeln!(
        out,
        "\nplanted topic, {runs} runs: listed in {}/{runs}; time from its start to listed median {} / worst {} (not found counts as worst); rank when first listed median {} / worst {}",
        found.len(),
        median.map_or_else(|| "-".to_owned(), duration),
        worst,
        ranks.get(ranks.len() / 2).map_or_else(|| "-".to_owned(), |r| r.to_string()),
        ranks.last().map_or_else(|| "-".to_owned(), |r| r.to_string()),
    );
    let _ = writeln!(
        out,
        "  precision at the end {} ({} of {} listed phrases are the topic's); over every refresh from its start {} ({} of {}); noise listed before its start: {} phrase-refreshes over {} refreshes",
        ratio((end_listed > 0).then(|| sum(|r| r.end_topic, planted) as f64 / end_listed as f64)),
        sum(|r| r.end_topic, planted),
        end_listed,
        ratio((after_listed > 0).then(|| sum(|r| r.after_topic, planted) as f64 / after_listed as f64)),
        sum(|r| r.after_topic, planted),
        after_listed,
        sum(|r| r.before_noise, planted),
        sum(|r| r.refreshes_before, planted),
    );
    let refreshes = sum(|r| r.refreshes_before + r.refreshes_after, control);
    let listed = sum(|r| r.before_noise + r.after_noise, control);
    let with_noise = sum(|r| r.refreshes_with_noise, control);
    let distinct: BTreeSet<&String> = control.iter().flat_map(|r| &r.noise_phrases).collect();
    let _ = writeln!(
        out,
        "control (no topic), {} runs: {} of {} refreshes list anything; {} phrase-refreshes listed, {} at the last refresh; distinct phrases ever listed: {}{}",
        control.len(),
        with_noise,
        refreshes,
        listed,
        sum(|r| r.end_noise, control),
        distinct.len(),
        if distinct.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                distinct
                    .iter()
                    .take(8)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    out
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=365).contains(&args.history_days)
            && (1..=60).contains(&args.topic_days)
            && (0..=args.history_days).contains(&args.watch_before_days),
        "--history-days 1 to 365, --topic-days 1 to 60, --watch-before-days at most --history-days"
    );
    anyhow::ensure!(
        (1..=24 * 60).contains(&args.refresh_minutes),
        "--refresh-minutes must be 1 to 1440"
    );
    anyhow::ensure!(
        args.per_day > 0.0 && args.per_day <= 10_000.0,
        "--per-day must be above 0 and at most 10000"
    );
    anyhow::ensure!((1..=1000).contains(&args.runs), "--runs must be 1 to 1000");
    let pipeline = Pipeline::default();
    pipeline
        .rules
        .validate()
        .map_err(|e| anyhow::anyhow!("emerging settings: {e}"))?;
    let shape = Shape::from(args);
    println!(
        "closeloop eval topics — seeds {}..={}, {} days of history, the topic for {} days, a refresh every {} min from {} days before it, ~{} feedback/day; service defaults: window {} d, baseline {} d, {:?}\n",
        args.seed,
        args.seed.wrapping_add(args.runs - 1),
        args.history_days,
        args.topic_days,
        args.refresh_minutes,
        args.watch_before_days,
        args.per_day,
        WINDOW_MS / DAY,
        BASELINE_MS / DAY,
        pipeline.rules,
    );
    let seeds: Vec<u64> = (0..args.runs).map(|i| args.seed.wrapping_add(i)).collect();
    let planted: Vec<RunResult> = seeds
        .iter()
        .map(|&s| pipeline.run(s, shape, true))
        .collect();
    let control: Vec<RunResult> = seeds
        .iter()
        .map(|&s| pipeline.run(s, shape, false))
        .collect();
    print!("{}", report(&planted, &control));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small: three weeks of history, three days of topic, a refresh every six hours.
    fn shape() -> Shape {
        Shape {
            history_days: 21,
            topic_days: 3,
            watch_before_days: 3,
            refresh_ms: 6 * HOUR,
            per_day: 80.0,
        }
    }

    #[test]
    fn a_planted_topic_is_listed_and_the_control_lists_little() {
        let pipeline = Pipeline::default();
        // Seed 4 plants the digital wallet, seed 5 the loyalty points (of four topics).
        for seed in [4, 5] {
            let planted = pipeline.run(seed, shape(), true);
            let control = pipeline.run(seed, shape(), false);
            let table = report(
                std::slice::from_ref(&planted),
                std::slice::from_ref(&control),
            );
            assert!(planted.planted > 10, "{table}");
            assert_eq!(
                planted.planted_unmatched, planted.planted,
                "the planted texts match no theme: {table}"
            );
            assert!(planted.detect_ms.is_some(), "{table}");
            assert!(planted.end_topic > 0, "{table}");
            assert_eq!(planted.first_rank, Some(1), "tops the list: {table}");
            let refreshes = control.refreshes_before + control.refreshes_after;
            assert!(refreshes > 10, "{table}");
            assert!(
                control.end_noise <= 2,
                "little noise without a topic: {table}"
            );
            assert!(
                control.noise_phrases.len() <= 10,
                "little noise without a topic: {table}"
            );
        }
    }

    #[test]
    fn every_planted_topic_matches_no_theme_and_names_its_key_words() {
        let pipeline = Pipeline::default();
        let mut bad = Vec::new();
        for planted in &PLANTED {
            let stems = pipeline.key_stems(planted);
            assert!(!stems.is_empty(), "{}", planted.name);
            for (texts, hint) in [(planted.en, "en"), (planted.de, "de")] {
                for text in texts {
                    let c = pipeline.classifier.classify(&Input {
                        text,
                        language_hint: Some(hint),
                        ..Input::default()
                    });
                    if !c.themes.is_empty() {
                        bad.push(format!(
                            "{text}: {:?}",
                            c.themes
                                .iter()
                                .map(|t| (&t.id, &t.matched_terms))
                                .collect::<Vec<_>>()
                        ));
                        continue;
                    }
                    let keys: Vec<String> = pipeline
                        .extractor
                        .phrases(text, c.language)
                        .into_iter()
                        .map(|p| p.key)
                        .collect();
                    assert!(
                        keys.iter().any(|k| k.split(' ').any(|w| stems.contains(w))),
                        "{text}: {keys:?} vs {stems:?}"
                    );
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn the_evaluation_is_reproducible() {
        let pipeline = Pipeline::default();
        let shape = Shape {
            history_days: 3,
            topic_days: 1,
            watch_before_days: 1,
            refresh_ms: 12 * HOUR,
            per_day: 40.0,
        };
        let a = pipeline.run(9, shape, true);
        let b = pipeline.run(9, shape, true);
        assert_eq!(report(&[a], &[]), report(&[b], &[]));
    }
}
