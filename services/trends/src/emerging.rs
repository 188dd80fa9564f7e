//! Emerging topics: phrases that surge in feedback no theme covers (and, as a second list,
//! in negative feedback of any kind), for the ops team to see before anybody wrote a theme
//! for them.
//!
//! ```text
//! feedback.categorised.v1 ──► TopicFeedbackHandler ──► trends_topic_feedback
//!   (own consumer group)       unmatched or negative:     one row per feedback:
//!                              phrases cut here            customer, sentiment, excerpt,
//!                              (closeloop_classify)        phrases, event time
//!
//! every TRENDS_EMERGING_REFRESH_SECONDS: newest event time ─► recent window + baseline
//!   ─► rows of both ─► closeloop_trend::emerging::Tally (per list) ─► ranked in memory
//!   ─► GET /v1/topics/emerging, /ops, closeloop_trends_emerging_topics{kind}
//! ```
//!
//! The same consumer stores every scored feedback for theme impact, in the same
//! transaction (see [`crate::impact`]).
//!
//! Phrases are cut here rather than in categorise, so categorise's hot path only counts
//! unmatched feedback (`closeloop_feedback_unmatched_total`). The lists are computed from
//! the shared database, so every replica computes the same whichever partitions it
//! consumes, and in event time ending at the newest stored feedback, so imported history
//! gives the lists it would have given live. Excerpts are read from the database per
//! request, so an erasure stops them being shown on every replica at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use closeloop_bus::{Handler, HandlerError, Incoming};
use closeloop_classify::{Language, PhraseExtractor};
use closeloop_events::{FeedbackCategorised, SentimentLabel};
use closeloop_trend::emerging::{Counts, Feedback, Tone, ToneMix};
use closeloop_trend::{EmergingConfig, Ranking, Tally, Topic, Windows};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::action::time;
use crate::context::Context;
use crate::detection::db_error;
use crate::store::{ScoreRow, TopicFeedbackRow, TopicScanRow, TrendsStore};

/// How long an excerpt of a feedback is kept (as categorise cuts theme mentions' excerpts).
const EXCERPT_CHARS: usize = 160;
/// Topics kept per list; the API shows up to this many.
pub(crate) const MAX_LISTED: usize = 100;

/// Which feedback a list is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Feedback that matched no theme.
    Unmatched,
    /// Negative feedback, with themes or without.
    Negative,
}

impl Kind {
    pub(crate) const ALL: [Kind; 2] = [Kind::Unmatched, Kind::Negative];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Unmatched => "unmatched",
            Kind::Negative => "negative",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// The settings the lists are computed with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub refresh: Duration,
    pub window_ms: i64,
    pub baseline_ms: i64,
    pub rules: EmergingConfig,
}

/// One list as last computed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    /// Customers and feedback of the list's kind in the window and in the baseline.
    pub recent: Counts,
    pub baseline: Counts,
    /// Ranked, with the feedback ids of each topic's examples.
    pub topics: Vec<(Topic, Vec<String>)>,
}

/// Both lists as last computed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lists {
    pub computed_at: Option<DateTime<Utc>>,
    /// `None` while no feedback is stored.
    pub windows: Option<Windows>,
    pub unmatched: Listing,
    pub negative: Listing,
}

impl Lists {
    pub(crate) fn of(&self, kind: Kind) -> &Listing {
        match kind {
            Kind::Unmatched => &self.unmatched,
            Kind::Negative => &self.negative,
        }
    }
}

/// What the handler, the refresher and the HTTP handlers share.
pub(crate) struct Emerging {
    pub settings: Settings,
    /// Follows the current taxonomy (see [`Emerging::set_extractor`]).
    extractor: RwLock<Arc<PhraseExtractor>>,
    /// Set once the taxonomy changed at run time: stored phrases were cut with an older
    /// one, so each is checked again against the current cues before it is counted.
    recheck: Mutex<Option<Arc<PhraseExtractor>>>,
    lists: Mutex<Arc<Lists>>,
    /// Rung when the lists should be computed again before the next round (an erasure).
    refresh_now: Notify,
}

impl Emerging {
    pub(crate) fn new(settings: Settings, extractor: PhraseExtractor) -> Self {
        Self {
            settings,
            extractor: RwLock::new(Arc::new(extractor)),
            recheck: Mutex::new(None),
            lists: Mutex::new(Arc::new(Lists::default())),
            refresh_now: Notify::new(),
        }
    }

    pub(crate) fn extractor(&self) -> Arc<PhraseExtractor> {
        self.extractor
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Cuts phrases with `extractor` (a new taxonomy's) from now on, and computes the
    /// lists again soon without the phrases that became its cues.
    pub(crate) fn set_extractor(&self, extractor: PhraseExtractor) {
        let extractor = Arc::new(extractor);
        *self
            .extractor
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = extractor.clone();
        *self
            .recheck
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(extractor);
        self.refresh_soon();
    }

    /// The lists as last computed.
    pub(crate) fn lists(&self) -> Arc<Lists> {
        self.lists
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, lists: Lists) {
        *self
            .lists
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(lists);
    }

    /// Computes the lists again now rather than at the next round.
    pub(crate) fn refresh_soon(&self) {
        self.refresh_now.notify_one();
    }

    /// The stored form of a categorised feedback, if it belongs to a list: it matched no
    /// theme or it is negative.
    pub(crate) fn row_of(&self, categorised: &FeedbackCategorised) -> Option<TopicFeedbackRow> {
        let matched = !categorised.themes.is_empty();
        let negative = categorised.sentiment.label == SentimentLabel::Negative;
        if matched && !negative {
            return None;
        }
        let feedback = &categorised.feedback;
        let mut phrases = String::new();
        for phrase in self
            .extractor()
            .phrases(&feedback.text, categorised.language)
        {
            // Keys are folded words and texts are cleaned: neither holds a tab or newline.
            phrases.push_str(&phrase.key);
            phrases.push('\t');
            phrases.push_str(&phrase.text);
            phrases.push('\n');
        }
        Some(TopicFeedbackRow {
            feedback_id: feedback.feedback_id.to_string(),
            customer_id: feedback.customer.id.clone(),
            source: feedback.source.clone(),
            language: categorised.language.as_str().to_owned(),
            sentiment: categorised.sentiment.label.as_str().to_owned(),
            matched,
            excerpt: closeloop_events::text::excerpt(&feedback.text, EXCERPT_CHARS),
            phrases,
            given_at_ms: feedback.given_at.timestamp_millis(),
        })
    }
}

/// `feedback.categorised.v1` → `trends_topic_feedback`.
pub(crate) struct TopicFeedbackHandler {
    ctx: Arc<Context>,
}

impl TopicFeedbackHandler {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// One record or a whole batch: one transaction either way, for the emerging topics'
    /// feedback and the scored feedback of theme impact ([`crate::impact`]) alike. A
    /// feedback twice in the batch is stored once (the first, as one by one would).
    async fn store(&self, records: &[Incoming<FeedbackCategorised>]) -> Result<(), HandlerError> {
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<&FeedbackCategorised> = records
            .iter()
            .map(|incoming| &incoming.envelope.data)
            .filter(|data| seen.insert(data.feedback.feedback_id))
            .collect();
        let topics: Vec<TopicFeedbackRow> = firsts
            .iter()
            .filter_map(|data| self.ctx.emerging.row_of(data))
            .collect();
        let scores: Vec<ScoreRow> = firsts
            .iter()
            .filter_map(|data| crate::impact::score_row_of(data))
            .collect();
        self.ctx
            .store
            .insert_categorised(&topics, &scores)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

impl Handler for TopicFeedbackHandler {
    type Event = FeedbackCategorised;
    const BATCHES: bool = true;

    async fn handle(&self, incoming: &Incoming<FeedbackCategorised>) -> Result<(), HandlerError> {
        self.store(std::slice::from_ref(incoming)).await
    }

    async fn handle_batch(
        &self,
        batch: &[Incoming<FeedbackCategorised>],
    ) -> Result<(), HandlerError> {
        self.store(batch).await
    }
}

#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error("database: {0}")]
    Database(#[from] closeloop_store::sqlx::Error),
    #[error("the computation failed: {0}")]
    Computation(#[from] tokio::task::JoinError),
}

/// Computes the lists every [`Settings::refresh`] (and when asked to sooner) until `stop`.
pub(crate) async fn keep_fresh(
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut every = tokio::time::interval(ctx.emerging.settings.refresh);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = every.tick() => {}
            _ = ctx.emerging.refresh_now.notified() => {}
        }
        let started = std::time::Instant::now();
        match refresh(&ctx).await {
            Ok(rows) => tracing::debug!(
                rows,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "emerging topics computed"
            ),
            Err(error) => {
                tracing::warn!(%error, "could not compute the emerging topics; trying again")
            }
        }
    }
}

/// Computes both lists from the store and publishes them; returns how many feedback rows
/// they were computed from.
async fn refresh(ctx: &Context) -> Result<usize, RefreshError> {
    let computed_at = Some(Utc::now());
    let settings = &ctx.emerging.settings;
    let Some(newest) = ctx.store.newest_topic_feedback().await? else {
        for kind in Kind::ALL {
            ctx.metrics.emerging_topics(kind, 0);
        }
        ctx.emerging.set(Lists {
            computed_at,
            ..Lists::default()
        });
        return Ok(0);
    };
    let windows = Windows::ending_at(newest, settings.window_ms, settings.baseline_ms);
    let rows = ctx
        .store
        .topic_feedback(windows.baseline_start_ms, windows.end_ms)
        .await?;
    let n = rows.len();
    let rules = settings.rules.clone();
    let recheck = ctx
        .emerging
        .recheck
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    // Counting five weeks of feedback is CPU work: off the async workers.
    let (unmatched, negative) = tokio::task::spawn_blocking(move || {
        let rows = match recheck {
            Some(extractor) => without_cues(rows, &extractor),
            None => rows,
        };
        compute(&rows, windows, &rules)
    })
    .await?;
    ctx.metrics
        .emerging_topics(Kind::Unmatched, unmatched.topics.len());
    ctx.metrics
        .emerging_topics(Kind::Negative, negative.topics.len());
    ctx.emerging.set(Lists {
        computed_at,
        windows: Some(windows),
        unmatched,
        negative,
    });
    Ok(n)
}

/// The rows without the phrases `extractor` no longer cuts (they became a theme's cues
/// since the rows were stored): each phrase is cut again from its own text.
fn without_cues(mut rows: Vec<TopicScanRow>, extractor: &PhraseExtractor) -> Vec<TopicScanRow> {
    let mut kept: HashMap<(String, String), bool> = HashMap::new();
    for row in &mut rows {
        let language = Language::from_locale(&row.language);
        let mut phrases = String::with_capacity(row.phrases.len());
        for line in row.phrases.lines() {
            let Some((key, text)) = line.split_once('\t') else {
                continue;
            };
            let keep = *kept
                .entry((row.language.clone(), key.to_owned()))
                .or_insert_with(|| {
                    extractor
                        .phrases(text, language)
                        .iter()
                        .any(|phrase| phrase.key == key)
                });
            if keep {
                phrases.push_str(line);
                phrases.push('\n');
            }
        }
        row.phrases = phrases;
    }
    rows
}

/// Both lists from the stored rows (pure).
fn compute(rows: &[TopicScanRow], windows: Windows, rules: &EmergingConfig) -> (Listing, Listing) {
    let mut unmatched = Tally::new(windows);
    let mut negative = Tally::new(windows);
    for (handle, row) in rows.iter().enumerate() {
        let tone = match row.sentiment.as_str() {
            "negative" => Tone::Negative,
            "positive" => Tone::Positive,
            _ => Tone::Neutral,
        };
        let feedback = Feedback {
            handle: handle as u32,
            customer_id: &row.customer_id,
            at_ms: row.given_at_ms,
            language: &row.language,
            tone,
        };
        let phrases = || row.phrases.lines().filter_map(|line| line.split_once('\t'));
        if row.matched == 0 {
            unmatched.add(feedback, phrases());
        }
        if tone == Tone::Negative {
            negative.add(feedback, phrases());
        }
    }
    let listing = |ranking: Ranking| Listing {
        recent: ranking.recent,
        baseline: ranking.baseline,
        topics: ranking
            .topics
            .into_iter()
            .map(|topic| {
                let ids = topic
                    .examples
                    .iter()
                    .filter_map(|&h| rows.get(h as usize))
                    .map(|row| row.feedback_id.clone())
                    .collect();
                (topic, ids)
            })
            .collect(),
    };
    (
        listing(unmatched.rank(rules, MAX_LISTED)),
        listing(negative.rank(rules, MAX_LISTED)),
    )
}

/// A span of event time: after `start`, up to and including `end`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Customers and feedback (mentions) in the window and in the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountsView {
    pub window: Counts,
    pub baseline: Counts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExcerptView {
    pub feedback_id: String,
    pub customer_id: String,
    pub excerpt: String,
    pub given_at: DateTime<Utc>,
}

/// One emerging phrase, as the API and `/ops` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicView {
    /// The most common way customers wrote it in the window.
    pub phrase: String,
    /// The stemmed key it is counted by.
    pub key: String,
    pub words: u32,
    pub languages: Vec<String>,
    /// Distinct customers and mentions in the window and in the baseline.
    pub window: Counts,
    pub baseline: Counts,
    /// Customers in the window the baseline share predicts.
    pub expected_customers: f64,
    /// Window customers / expected.
    pub rate_ratio: f64,
    pub p_value: f64,
    /// −log10(p): the rank.
    pub score: f64,
    /// Sentiment of its mentions in the window.
    pub sentiment: ToneMix,
    /// Its first mention within the baseline and window.
    pub first_seen: DateTime<Utc>,
    /// Up to three: the newest feedback of different customers.
    pub excerpts: Vec<ExcerptView>,
}

/// `GET /v1/topics/emerging`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmergingView {
    pub kind: &'static str,
    /// When the lists were last computed (`null` before the first time).
    pub computed_at: Option<DateTime<Utc>>,
    /// The recent window and the baseline before it (`null` while no feedback is stored).
    pub window: Option<SpanView>,
    pub baseline: Option<SpanView>,
    /// The list's own customers and feedback in the window and the baseline.
    pub totals: CountsView,
    /// What a listed phrase needs.
    pub rule: String,
    pub topics: Vec<TopicView>,
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    if value.is_finite() {
        (value * scale).round() / scale
    } else {
        value
    }
}

/// The rule a listed phrase meets, in words.
fn describe(settings: &Settings) -> String {
    let rules = &settings.rules;
    format!(
        "at least {} distinct customers in the last {} days, at least {}× and significantly \
         (Poisson p ≤ {}) above their share of customers in the {} days before",
        rules.min_customers,
        settings.window_ms / (24 * 3_600_000),
        rules.min_ratio,
        rules.max_p_value,
        settings.baseline_ms / (24 * 3_600_000),
    )
}

/// The `limit` first topics of the `kind` list, with their excerpts read now.
pub(crate) async fn view(
    store: &TrendsStore,
    emerging: &Emerging,
    kind: Kind,
    limit: usize,
) -> Result<EmergingView, closeloop_store::sqlx::Error> {
    let lists = emerging.lists();
    let listing = lists.of(kind);
    let shown = &listing.topics[..limit.min(listing.topics.len())];
    let ids: Vec<String> = shown.iter().flat_map(|(_, ids)| ids.clone()).collect();
    let excerpts: HashMap<String, ExcerptView> = store
        .topic_excerpts(&ids)
        .await?
        .into_iter()
        .map(|row| {
            let view = ExcerptView {
                feedback_id: row.feedback_id.clone(),
                customer_id: row.customer_id,
                excerpt: row.excerpt,
                given_at: time(row.given_at_ms),
            };
            (row.feedback_id, view)
        })
        .collect();
    let topics = shown
        .iter()
        .map(|(topic, ids)| TopicView {
            phrase: topic.text.clone(),
            key: topic.key.clone(),
            words: topic.words,
            languages: topic.languages.clone(),
            window: topic.recent,
            baseline: topic.baseline,
            expected_customers: round(topic.expected, 3),
            rate_ratio: round(topic.ratio, 2),
            p_value: topic.p_value,
            score: round(topic.score, 2),
            sentiment: topic.tones,
            first_seen: time(topic.first_seen_ms),
            excerpts: ids
                .iter()
                .filter_map(|id| excerpts.get(id).cloned())
                .collect(),
        })
        .collect();
    let span = |start_ms, end_ms| SpanView {
        start: time(start_ms),
        end: time(end_ms),
    };
    Ok(EmergingView {
        kind: kind.as_str(),
        computed_at: lists.computed_at,
        window: lists.windows.map(|w| span(w.recent_start_ms, w.end_ms)),
        baseline: lists
            .windows
            .map(|w| span(w.baseline_start_ms, w.recent_start_ms)),
        totals: CountsView {
            window: listing.recent,
            baseline: listing.baseline,
        },
        rule: describe(&emerging.settings),
        topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_classify::Taxonomy;
    use closeloop_events::{
        Channel, CustomerRef, Feedback as RawFeedback, Language, SentimentResult, ThemeMatch,
    };
    use uuid::Uuid;

    fn emerging() -> Emerging {
        Emerging::new(
            Settings {
                refresh: Duration::from_secs(60),
                window_ms: 7 * 24 * 3_600_000,
                baseline_ms: 28 * 24 * 3_600_000,
                rules: EmergingConfig::default(),
            },
            PhraseExtractor::new(&Taxonomy::builtin()),
        )
    }

    fn categorised(text: &str, label: SentimentLabel, themes: &[&str]) -> FeedbackCategorised {
        let now = Utc::now();
        FeedbackCategorised {
            feedback: RawFeedback {
                feedback_id: Uuid::now_v7(),
                source: "shopdesk".into(),
                channel: Channel::Review,
                touchpoint: None,
                customer: CustomerRef {
                    id: "c-1".into(),
                    locale: None,
                    consent: true,
                    email: None,
                    reference: None,
                },
                text: text.into(),
                rating: None,
                nps: None,
                given_at: now,
                received_at: now,
                metadata: Default::default(),
            },
            language: Language::De,
            sentiment: SentimentResult {
                label,
                score: 0.0,
                confidence: 0.5,
            },
            themes: themes
                .iter()
                .map(|id| ThemeMatch {
                    id: (*id).into(),
                    score: 0.6,
                    sentiment: label,
                    matched_terms: vec![],
                })
                .collect(),
            classifier_version: "test".into(),
            explanation: vec![],
        }
    }

    #[test]
    fn unmatched_and_negative_feedback_is_kept_with_its_phrases() {
        let emerging = emerging();
        let text = "Die Paketstation am Bahnhof ist ständig voll";
        let row = emerging
            .row_of(&categorised(text, SentimentLabel::Neutral, &[]))
            .expect("unmatched");
        assert!(!row.matched);
        assert_eq!(row.language, "de");
        assert_eq!(row.excerpt, text);
        assert!(
            row.phrases
                .lines()
                .any(|l| l == "paket station\tPaketstation"),
            "{}",
            row.phrases
        );
        let negative = emerging
            .row_of(&categorised(text, SentimentLabel::Negative, &["delivery"]))
            .expect("negative");
        assert!(negative.matched);
        assert!(emerging
            .row_of(&categorised(text, SentimentLabel::Positive, &["delivery"]))
            .is_none());
    }

    #[test]
    fn the_lists_are_computed_per_kind_from_the_stored_rows() {
        let day = 24 * 3_600_000;
        let end = 100 * day;
        let row = |id: usize,
                   customer: &str,
                   days_ago: i64,
                   sentiment: &str,
                   matched: i64,
                   phrases: &str| {
            TopicScanRow {
                feedback_id: format!("f{id:03}"),
                customer_id: customer.into(),
                language: "en".into(),
                sentiment: sentiment.into(),
                matched,
                phrases: phrases.into(),
                given_at_ms: end - days_ago * day,
            }
        };
        let mut rows = Vec::new();
        // Background in both windows, then eight customers on a new thing, unmatched and
        // neutral, and six complaining about a matched theme's new aspect.
        for i in 0..60 {
            rows.push(row(
                i,
                &format!("bg{i}"),
                i as i64 % 35,
                "neutral",
                0,
                "colour\tcolour\n",
            ));
        }
        for i in 0..8 {
            rows.push(row(
                100 + i,
                &format!("w{i}"),
                1,
                "neutral",
                0,
                "wallet\tWallet\n",
            ));
        }
        for i in 0..6 {
            rows.push(row(
                200 + i,
                &format!("n{i}"),
                2,
                "negative",
                1,
                "express\texpress\n",
            ));
        }
        let windows = Windows::ending_at(end, 7 * day, 28 * day);
        let (unmatched, negative) = compute(&rows, windows, &EmergingConfig::default());
        let keys = |l: &Listing| {
            l.topics
                .iter()
                .map(|(t, _)| t.key.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&unmatched), ["wallet"]);
        assert_eq!(keys(&negative), ["express"]);
        let (wallet, examples) = &unmatched.topics[0];
        assert_eq!(wallet.text, "Wallet");
        assert_eq!(examples.len(), 3);
        assert!(
            examples.iter().all(|id| id.starts_with("f10")),
            "{examples:?}"
        );
        assert_eq!(negative.recent.customers, 6, "only negative feedback");
    }
}
