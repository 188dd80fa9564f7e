//! Emerging topics: which phrases of recent feedback are significantly more common than
//! they used to be. Pure, like the theme detector: feedback (its customer, event time,
//! language, sentiment and phrases — `closeloop_classify::emerging` cuts them) goes into
//! a [`Tally`], a ranked list of [`Topic`]s comes out, the same for the same feedback in
//! any order.
//!
//! Two windows of event time end at the newest feedback: the *recent* window and the
//! *baseline* before it ([`Windows`]). A phrase counts the distinct customers whose
//! feedback contains it in each (one customer repeating a phrase is one voice), and so
//! does the whole list (`n_recent`, `n_baseline`: every customer with feedback of the
//! list's kind). The question per phrase is whether its *share* of customers grew, so
//! more feedback overall (growth, a campaign, an import) does not make every phrase
//! "emerging":
//!
//! ```text
//! share    = (baseline customers + α) / (n_baseline + ν)      α = 0.5, ν = 10: a 5 % prior
//! expected = n_recent · share
//! p        = P(X ≥ recent customers),  X ~ Poisson(expected)
//! ```
//!
//! The prior (α phrase customers among ν customers) keeps a phrase never seen before from
//! being infinitely surprising, and lets a brand-new install, with no baseline at all,
//! list a phrase once clearly more than 5 % of its customers use it (with 200 customers:
//! about 20 of them). Worth only ten customers, it hardly moves the share of a phrase with
//! a real baseline: a common phrase whose share stays the same is not listed however much
//! the volume grows. A phrase is listed
//! when at least `min_customers` distinct customers used it recently, `p ≤ max_p_value`
//! and recent customers ≥ `min_ratio` × expected. Ranked by p (most significant first;
//! computed in log space, so a big surge does not underflow to a tie at 0), then by
//! customers, then by the phrase.
//!
//! A phrase inside a listed longer one that covers nearly the same customers (at least
//! `cover_share` of them) says nothing the longer one does not: "new carrier speedy" is
//! listed once, not also as "carrier speedy" and "speedy". Every text that contains the
//! longer phrase contains the shorter one, so the longer one's customers are a subset
//! and the comparison of counts is exact.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::poisson::ln_upper_tail;

/// What an emerging phrase must have to be listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmergingConfig {
    /// Distinct customers in the recent window a listed phrase needs.
    pub min_customers: u32,
    /// Largest Poisson tail probability of the recent count under the baseline share.
    pub max_p_value: f64,
    /// Recent customers must be at least this multiple of the expected number.
    pub min_ratio: f64,
    /// The prior: `prior_customers` of every `prior_population` customers use any given
    /// phrase (α and ν above).
    pub prior_customers: f64,
    pub prior_population: f64,
    /// A phrase inside a listed longer one with at least this share of its customers
    /// is not listed on its own.
    pub cover_share: f64,
}

impl Default for EmergingConfig {
    fn default() -> Self {
        Self {
            min_customers: 5,
            max_p_value: 0.001,
            min_ratio: 2.0,
            prior_customers: 0.5,
            prior_population: 10.0,
            cover_share: 0.8,
        }
    }
}

fn check(ok: bool, field: &str, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field: field.to_owned(),
            reason: reason.to_owned(),
        })
    }
}

impl EmergingConfig {
    /// Refuses settings that would list every phrase or none.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.min_customers >= 1,
            "min_customers",
            "must be at least 1",
        )?;
        check(
            self.max_p_value > 0.0 && self.max_p_value < 1.0,
            "max_p_value",
            "must be between 0 and 1 (exclusive)",
        )?;
        check(
            self.min_ratio >= 1.0 && self.min_ratio.is_finite(),
            "min_ratio",
            "must be at least 1",
        )?;
        check(
            self.prior_customers > 0.0 && self.prior_population >= self.prior_customers,
            "prior",
            "needs 0 < prior customers <= prior population",
        )?;
        check(
            self.cover_share > 0.0 && self.cover_share <= 1.0,
            "cover_share",
            "must be in (0, 1]",
        )
    }
}

/// The recent window `(recent_start_ms, end_ms]` and the baseline before it,
/// `(baseline_start_ms, recent_start_ms]`, in event time (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    pub baseline_start_ms: i64,
    pub recent_start_ms: i64,
    pub end_ms: i64,
}

impl Windows {
    /// Windows of `recent_ms` and `baseline_ms` ending at `end_ms` (the newest feedback).
    pub fn ending_at(end_ms: i64, recent_ms: i64, baseline_ms: i64) -> Self {
        let recent_start_ms = end_ms.saturating_sub(recent_ms);
        Self {
            baseline_start_ms: recent_start_ms.saturating_sub(baseline_ms),
            recent_start_ms,
            end_ms,
        }
    }

    fn recent(&self, at_ms: i64) -> Option<bool> {
        if at_ms > self.recent_start_ms && at_ms <= self.end_ms {
            Some(true)
        } else if at_ms > self.baseline_start_ms && at_ms <= self.recent_start_ms {
            Some(false)
        } else {
            None
        }
    }
}

/// The sentiment of a feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    Positive,
    Neutral,
    Negative,
}

/// How many recent mentions of a phrase were positive, neutral and negative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToneMix {
    pub positive: u32,
    pub neutral: u32,
    pub negative: u32,
}

impl ToneMix {
    fn add(&mut self, tone: Tone) {
        match tone {
            Tone::Positive => self.positive += 1,
            Tone::Neutral => self.neutral += 1,
            Tone::Negative => self.negative += 1,
        }
    }
}

/// Customers and mentions (feedback) of a phrase, or of the whole list, in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub customers: u32,
    pub mentions: u32,
}

/// One feedback as the tally takes it.
#[derive(Debug, Clone, Copy)]
pub struct Feedback<'a> {
    /// The caller's handle of the feedback (an index into its rows): what
    /// [`Topic::examples`] names.
    pub handle: u32,
    pub customer_id: &'a str,
    pub at_ms: i64,
    pub language: &'a str,
    pub tone: Tone,
}

/// Most examples a topic keeps (the newest recent feedback, one per customer).
pub const EXAMPLES: usize = 3;

#[derive(Debug, Default)]
struct PhraseTally {
    recent: HashSet<u32>,
    baseline: HashSet<u32>,
    recent_mentions: u32,
    baseline_mentions: u32,
    tones: ToneMix,
    /// Bit per language (index into the tally's languages).
    languages: u64,
    /// Recent mentions per way of writing the phrase.
    texts: HashMap<String, u32>,
    first_seen_ms: i64,
    /// (event time, customer, handle), newest first, one per customer.
    examples: Vec<(i64, u32, u32)>,
}

/// Counts phrases of feedback in the two windows; [`Tally::rank`] lists the emerging ones.
#[derive(Debug)]
pub struct Tally {
    windows: Windows,
    customers: HashMap<String, u32>,
    languages: Vec<String>,
    phrases: HashMap<String, PhraseTally>,
    recent: HashSet<u32>,
    baseline: HashSet<u32>,
    recent_mentions: u32,
    baseline_mentions: u32,
}

/// A listed phrase: what it is, how often and by whom it was used, how surprising that
/// is, and where to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    /// Stemmed key, as counted.
    pub key: String,
    /// The most common way of writing it in the recent window.
    pub text: String,
    /// Words in the phrase.
    pub words: u32,
    /// Languages of the recent feedback that used it, sorted.
    pub languages: Vec<String>,
    pub recent: Counts,
    pub baseline: Counts,
    /// Distinct recent customers the baseline share predicts.
    pub expected: f64,
    /// Recent customers / expected.
    pub ratio: f64,
    /// P(X ≥ recent customers) under Poisson(expected); may be 0 when below f64's range.
    pub p_value: f64,
    /// −log10 of the p-value (exact also where `p_value` underflows): the rank.
    pub score: f64,
    /// Sentiment of the recent mentions.
    pub tones: ToneMix,
    /// Event time of its first mention in either window.
    pub first_seen_ms: i64,
    /// Handles of up to [`EXAMPLES`] recent feedback using it, newest first, one per
    /// customer.
    pub examples: Vec<u32>,
}

/// What the tally found: the ranked topics and the list's own counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub windows: Windows,
    /// Customers and feedback of the list in the recent window…
    pub recent: Counts,
    /// …and in the baseline.
    pub baseline: Counts,
    pub topics: Vec<Topic>,
}

impl Tally {
    pub fn new(windows: Windows) -> Self {
        Self {
            windows,
            customers: HashMap::new(),
            languages: Vec::new(),
            phrases: HashMap::new(),
            recent: HashSet::new(),
            baseline: HashSet::new(),
            recent_mentions: 0,
            baseline_mentions: 0,
        }
    }

    /// Counts one feedback with its phrases as `(key, text)`, each once (a phrase
    /// repeated within one feedback counts once). Feedback outside both windows is
    /// ignored.
    pub fn add<'p>(
        &mut self,
        feedback: Feedback<'_>,
        phrases: impl IntoIterator<Item = (&'p str, &'p str)>,
    ) {
        let Some(recent) = self.windows.recent(feedback.at_ms) else {
            return;
        };
        let next = self.customers.len() as u32;
        let customer = *self
            .customers
            .entry(feedback.customer_id.to_owned())
            .or_insert(next);
        let language = match self.languages.iter().position(|l| l == feedback.language) {
            Some(index) => index,
            None => {
                self.languages.push(feedback.language.to_owned());
                self.languages.len() - 1
            }
        };
        if recent {
            self.recent.insert(customer);
            self.recent_mentions += 1;
        } else {
            self.baseline.insert(customer);
            self.baseline_mentions += 1;
        }
        let mut seen = HashSet::new();
        for (key, text) in phrases {
            if key.is_empty() || !seen.insert(key) {
                continue;
            }
            let phrase = self
                .phrases
                .entry(key.to_owned())
                .or_insert_with(|| PhraseTally {
                    first_seen_ms: i64::MAX,
                    ..PhraseTally::default()
                });
            phrase.first_seen_ms = phrase.first_seen_ms.min(feedback.at_ms);
            if !recent {
                phrase.baseline.insert(customer);
                phrase.baseline_mentions += 1;
                continue;
            }
            phrase.recent.insert(customer);
            phrase.recent_mentions += 1;
            phrase.tones.add(feedback.tone);
            if language < 64 {
                phrase.languages |= 1 << language;
            }
            *phrase.texts.entry(text.to_owned()).or_default() += 1;
            keep_example(
                &mut phrase.examples,
                (feedback.at_ms, customer, feedback.handle),
            );
        }
    }

    /// The emerging phrases, most significant first (at most `limit`).
    pub fn rank(self, config: &EmergingConfig, limit: usize) -> Ranking {
        let n_recent = self.recent.len() as f64;
        let n_baseline = self.baseline.len() as f64;
        let mut listed: Vec<(f64, Topic)> = self
            .phrases
            .iter()
            .filter(|(_, p)| p.recent.len() as u32 >= config.min_customers)
            .filter_map(|(key, p)| {
                let recent = p.recent.len() as u32;
                let share = (p.baseline.len() as f64 + config.prior_customers)
                    / (n_baseline + config.prior_population);
                let expected = n_recent * share;
                let ratio = f64::from(recent) / expected;
                let ln_p = ln_upper_tail(u64::from(recent), expected);
                let significant = ln_p <= config.max_p_value.ln() && ratio >= config.min_ratio;
                significant.then(|| (ln_p, topic(key, p, &self.languages, expected, ratio, ln_p)))
            })
            .collect();
        listed.sort_by(|(a, ta), (b, tb)| {
            a.total_cmp(b)
                .then(tb.recent.customers.cmp(&ta.recent.customers))
                .then(ta.key.cmp(&tb.key))
        });
        let topics: Vec<Topic> = listed.into_iter().map(|(_, t)| t).collect();
        let topics = without_covered(topics, config.cover_share)
            .into_iter()
            .take(limit)
            .collect();
        Ranking {
            windows: self.windows,
            recent: Counts {
                customers: self.recent.len() as u32,
                mentions: self.recent_mentions,
            },
            baseline: Counts {
                customers: self.baseline.len() as u32,
                mentions: self.baseline_mentions,
            },
            topics,
        }
    }
}

/// Keeps the newest [`EXAMPLES`] mentions, one per customer (their newest).
fn keep_example(examples: &mut Vec<(i64, u32, u32)>, candidate: (i64, u32, u32)) {
    let (at, customer, handle) = candidate;
    let newer = |a: &(i64, u32, u32)| (a.0, std::cmp::Reverse(a.2));
    if let Some(held) = examples.iter_mut().find(|e| e.1 == customer) {
        if newer(&candidate) > newer(held) {
            *held = (at, customer, handle);
        }
    } else {
        examples.push(candidate);
    }
    examples.sort_by_key(|e| std::cmp::Reverse(newer(e)));
    examples.truncate(EXAMPLES);
}

fn topic(
    key: &str,
    p: &PhraseTally,
    languages: &[String],
    expected: f64,
    ratio: f64,
    ln_p: f64,
) -> Topic {
    // The most common way of writing it; ties by text, so any order gives the same.
    let text = p
        .texts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map_or_else(|| key.to_owned(), |(text, _)| text.clone());
    let mut used: Vec<String> = languages
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 64 && p.languages & (1 << i) != 0)
        .map(|(_, l)| l.clone())
        .collect();
    used.sort();
    Topic {
        key: key.to_owned(),
        text,
        words: key.split(' ').count() as u32,
        languages: used,
        recent: Counts {
            customers: p.recent.len() as u32,
            mentions: p.recent_mentions,
        },
        baseline: Counts {
            customers: p.baseline.len() as u32,
            mentions: p.baseline_mentions,
        },
        expected,
        ratio,
        p_value: ln_p.exp(),
        score: -ln_p / std::f64::consts::LN_10,
        tones: p.tones,
        first_seen_ms: p.first_seen_ms,
        examples: p.examples.iter().map(|e| e.2).collect(),
    }
}

/// `topics` (ranked) without the phrases inside a longer listed one that has at least
/// `cover_share` of their recent customers.
fn without_covered(topics: Vec<Topic>, cover_share: f64) -> Vec<Topic> {
    let words: Vec<Vec<&str>> = topics.iter().map(|t| t.key.split(' ').collect()).collect();
    let covered: Vec<bool> = topics
        .iter()
        .enumerate()
        .map(|(i, short)| {
            topics.iter().enumerate().any(|(j, long)| {
                words[j].len() > words[i].len()
                    && words[j].windows(words[i].len()).any(|w| w == words[i])
                    && f64::from(long.recent.customers)
                        >= cover_share * f64::from(short.recent.customers)
            })
        })
        .collect();
    topics
        .into_iter()
        .zip(covered)
        .filter(|(_, covered)| !covered)
        .map(|(t, _)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 60 * 60 * 1000;
    const END: i64 = 100 * DAY;

    fn windows() -> Windows {
        Windows::ending_at(END, 7 * DAY, 28 * DAY)
    }

    /// Feedback as (customer, days before the end, phrases).
    struct Stream(Vec<(String, i64, Vec<&'static str>)>);

    impl Stream {
        fn new() -> Self {
            Stream(Vec::new())
        }

        fn add(&mut self, customer: impl Into<String>, days_ago: f64, phrases: &[&'static str]) {
            let at = END - (days_ago * DAY as f64) as i64;
            self.0.push((customer.into(), at, phrases.to_vec()));
        }

        /// Steady background: `per_day` customers a day over both windows, each saying
        /// one of `phrases` (by turns).
        fn steady(&mut self, per_day: usize, phrases: &[&'static str]) {
            for day in 0..35 {
                for i in 0..per_day {
                    let n = day * per_day + i;
                    self.add(
                        format!("bg{n}"),
                        day as f64 + 0.5,
                        &[phrases[n % phrases.len()]],
                    );
                }
            }
        }

        fn tally(&self, order: impl Iterator<Item = usize>) -> Tally {
            let mut tally = Tally::new(windows());
            for i in order {
                let (customer, at, phrases) = &self.0[i];
                tally.add(
                    Feedback {
                        handle: i as u32,
                        customer_id: customer,
                        at_ms: *at,
                        language: if i % 2 == 0 { "en" } else { "de" },
                        tone: Tone::Negative,
                    },
                    phrases.iter().map(|p| (*p, *p)),
                );
            }
            tally
        }

        fn rank(&self, config: &EmergingConfig) -> Ranking {
            self.tally(0..self.0.len()).rank(config, 100)
        }
    }

    fn keys(ranking: &Ranking) -> Vec<&str> {
        ranking.topics.iter().map(|t| t.key.as_str()).collect()
    }

    #[test]
    fn a_real_surge_is_ranked_over_steady_noise() {
        let mut stream = Stream::new();
        stream.steady(20, &["checkout", "colour", "size chart", "gift wrap"]);
        // Twelve customers this week on something new; six on something a bit new.
        for i in 0..12 {
            stream.add(format!("s{i}"), 1.0 + i as f64 / 10.0, &["wallet"]);
        }
        for i in 0..6 {
            stream.add(format!("t{i}"), 2.0, &["voucher app"]);
        }
        let ranking = stream.rank(&EmergingConfig::default());
        assert_eq!(keys(&ranking), ["wallet", "voucher app"], "{ranking:#?}");
        let wallet = &ranking.topics[0];
        assert_eq!(
            wallet.recent,
            Counts {
                customers: 12,
                mentions: 12
            }
        );
        assert_eq!(wallet.baseline, Counts::default());
        assert!(wallet.p_value < 1e-10 && wallet.ratio > 10.0, "{wallet:?}");
        assert!(wallet.score > ranking.topics[1].score);
        assert_eq!(wallet.languages, ["de", "en"]);
        assert_eq!(wallet.tones.negative, 12);
        // The list's own counts: 7 days × 20 background + 18, and 28 days × 20.
        assert_eq!(ranking.recent.customers, 140 + 18);
        assert_eq!(ranking.baseline.customers, 560);
    }

    #[test]
    fn more_feedback_overall_is_not_a_surge() {
        // The same four phrases, five times the volume this week: every share is as it
        // was, nothing is emerging.
        let mut stream = Stream::new();
        stream.steady(8, &["checkout", "colour", "size chart", "gift wrap"]);
        for i in 0..280 {
            let phrase = ["checkout", "colour", "size chart", "gift wrap"][i % 4];
            stream.add(format!("x{i}"), (i % 7) as f64 + 0.5, &[phrase]);
        }
        assert!(stream.rank(&EmergingConfig::default()).topics.is_empty());
    }

    #[test]
    fn one_customer_is_one_voice_and_too_few_customers_are_no_topic() {
        let mut stream = Stream::new();
        stream.steady(5, &["checkout"]);
        for i in 0..40 {
            stream.add("loud", i as f64 / 10.0, &["wallet", "wallet"]);
        }
        for i in 0..4 {
            stream.add(format!("few{i}"), 1.0, &["voucher"]);
        }
        let ranking = stream.rank(&EmergingConfig::default());
        assert!(ranking.topics.is_empty(), "{ranking:#?}");
        let lenient = EmergingConfig {
            min_customers: 4,
            ..EmergingConfig::default()
        };
        assert_eq!(keys(&stream.rank(&lenient)), ["voucher"]);
    }

    #[test]
    fn a_phrase_inside_a_longer_one_with_the_same_customers_is_listed_once() {
        let mut stream = Stream::new();
        stream.steady(10, &["checkout", "colour"]);
        let all = [
            "new carrier speedi",
            "new carrier",
            "carrier speedi",
            "new",
            "carrier",
            "speedi",
        ];
        for i in 0..10 {
            stream.add(format!("s{i}"), 1.0, &all);
        }
        // "speedi" is also said without the rest, by as many again: it is a topic of
        // its own beside the longer phrase.
        for i in 0..10 {
            stream.add(format!("z{i}"), 2.0, &["speedi"]);
        }
        let ranking = stream.rank(&EmergingConfig::default());
        assert_eq!(
            keys(&ranking),
            ["speedi", "new carrier speedi"],
            "{ranking:#?}"
        );
        assert_eq!(ranking.topics[0].recent.customers, 20);
    }

    #[test]
    fn a_brand_new_install_lists_only_what_many_customers_say() {
        // No baseline at all: measured against the 5 % prior.
        let mut stream = Stream::new();
        for i in 0..200 {
            let phrases: &[&str] = if i < 45 {
                &["wallet"]
            } else if i < 57 {
                &["voucher"]
            } else {
                &[]
            };
            stream.add(format!("c{i}"), (i % 7) as f64, phrases);
        }
        let ranking = stream.rank(&EmergingConfig::default());
        assert_eq!(ranking.baseline, Counts::default());
        assert_eq!(keys(&ranking), ["wallet"], "{ranking:#?}");
        assert!(
            (ranking.topics[0].expected - 10.0).abs() < 1e-9,
            "200 × 5 %"
        );
    }

    #[test]
    fn the_same_feedback_in_any_order_gives_the_same_list() {
        let mut stream = Stream::new();
        stream.steady(6, &["checkout", "colour", "gift wrap"]);
        for i in 0..9 {
            stream.add(
                format!("s{i}"),
                i as f64 / 2.0,
                &["wallet", "wallet broken"],
            );
            stream.add(format!("s{i}"), i as f64 / 3.0, &["wallet", "app"]);
        }
        let n = stream.0.len();
        let config = EmergingConfig::default();
        let in_order = stream.tally(0..n).rank(&config, 100);
        let reversed = stream.tally((0..n).rev()).rank(&config, 100);
        let shuffled = stream
            .tally((0..n).map(|i| (i * 37 + 11) % n))
            .rank(&config, 100);
        assert!(!in_order.topics.is_empty());
        assert_eq!(in_order, reversed);
        assert_eq!(in_order, shuffled);
        // Examples: the newest feedback of three different customers.
        // "wallet" itself is inside "wallet broken", said by the same customers.
        let keys = keys(&in_order);
        assert!(!keys.contains(&"wallet"), "{keys:?}");
        let wallet = in_order
            .topics
            .iter()
            .find(|t| t.key == "wallet broken")
            .expect("listed");
        assert_eq!(wallet.examples.len(), EXAMPLES);
        let customers: HashSet<&str> = wallet
            .examples
            .iter()
            .map(|&h| stream.0[h as usize].0.as_str())
            .collect();
        assert_eq!(customers.len(), EXAMPLES);
        assert!(customers.contains("s0"), "newest: {customers:?}");
    }

    #[test]
    fn feedback_outside_both_windows_is_not_counted() {
        let mut stream = Stream::new();
        for i in 0..10 {
            stream.add(format!("old{i}"), 40.0, &["wallet"]);
            stream.add(format!("future{i}"), -1.0, &["wallet"]);
        }
        let ranking = stream.rank(&EmergingConfig::default());
        assert_eq!(ranking.recent, Counts::default());
        assert_eq!(ranking.baseline, Counts::default());
        assert!(ranking.topics.is_empty());
    }

    #[test]
    fn nonsense_settings_are_refused() {
        assert!(EmergingConfig::default().validate().is_ok());
        let bad = |config: EmergingConfig| config.validate().expect_err("invalid").field;
        let d = EmergingConfig::default;
        assert_eq!(
            bad(EmergingConfig {
                min_customers: 0,
                ..d()
            }),
            "min_customers"
        );
        assert_eq!(
            bad(EmergingConfig {
                max_p_value: 1.0,
                ..d()
            }),
            "max_p_value"
        );
        assert_eq!(
            bad(EmergingConfig {
                min_ratio: 0.5,
                ..d()
            }),
            "min_ratio"
        );
        assert_eq!(
            bad(EmergingConfig {
                prior_customers: 0.0,
                ..d()
            }),
            "prior"
        );
        assert_eq!(
            bad(EmergingConfig {
                cover_share: 0.0,
                ..d()
            }),
            "cover_share"
        );
    }
}
