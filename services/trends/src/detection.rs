//! From theme mentions to actions: the detector state shared with the HTTP API, the
//! evidence an action carries, and the `feedback.themes.v1` handler that raises and
//! updates actions.
//!
//! Idempotence comes from the store: a mention is inserted with `ON CONFLICT DO NOTHING`
//! and only a new row is fed to the detector, so a replayed record cannot count twice.
//! A replay still re-checks the theme, though: if the service crashed after storing the
//! mention but before raising the action, the replay is what raises it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use closeloop_bus::{Handler, HandlerError, Incoming};
use closeloop_events::{
    ActionEventKind, Envelope, Evidence, EvidenceExcerpt, SentimentLabel, ThemeMention,
};
use closeloop_trend::{Detector, DetectorConfig, Mention, Observation, WindowStats};
use uuid::Uuid;

use crate::action::{time, Action};
use crate::store::{ActionRow, ExcerptRow, MentionRow};
use crate::Context;

/// At most this many feedback ids in an action's evidence: enough to follow up on, small
/// enough for one Kafka record.
pub const MAX_EVIDENCE_IDS: usize = 500;
/// Excerpts quoted in an action's evidence.
pub const MAX_EXCERPTS: usize = 5;
/// How many recent negative mentions are read to choose the excerpts from.
const EXCERPT_CANDIDATES: i64 = 100;
/// Excerpts are cut to this many characters; categorise already sends short ones.
const MAX_EXCERPT_CHARS: usize = 280;

/// The detector plus what it must not count: per theme, the time its last action was
/// resolved. Complaints given before that were answered by the resolution, so they must
/// not raise the theme again (hysteresis).
#[derive(Debug)]
pub struct DetectionState {
    detector: Detector,
    resolved_at: HashMap<String, i64>,
}

impl DetectionState {
    pub fn new(config: DetectorConfig) -> Self {
        Self {
            detector: Detector::new(config),
            resolved_at: HashMap::new(),
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        self.detector.config()
    }

    /// Counts a new mention, unless it predates the theme's last resolution; returns the
    /// window if the theme is now above threshold.
    pub fn observe(&mut self, theme: &str, mention: Mention) -> Option<WindowStats> {
        if self
            .resolved_at
            .get(theme)
            .is_some_and(|&resolved| mention.at_ms <= resolved)
        {
            return None;
        }
        match self.detector.observe(theme, mention) {
            Observation::Triggered(stats) => Some(stats),
            Observation::Quiet(_) | Observation::TooLate => None,
        }
    }

    /// The window of `theme` if it is above threshold right now (without new input).
    pub fn triggered(&self, theme: &str) -> Option<WindowStats> {
        let config = self.detector.config();
        self.detector.stats(theme).filter(|stats| {
            stats.negative_mentions >= config.min_negative_mentions
                && stats.distinct_customers >= config.min_distinct_customers
        })
    }

    /// Feeds stored mentions (oldest first), as on start-up.
    pub fn replay(&mut self, theme: &str, mentions: impl IntoIterator<Item = Mention>) {
        for mention in mentions {
            self.observe(theme, mention);
        }
    }

    pub fn resolved_at(&self, theme: &str) -> Option<i64> {
        self.resolved_at.get(theme).copied()
    }

    /// The theme's action was resolved at `at_ms`: forget its window and ignore anything
    /// given up to then.
    pub fn resolved(&mut self, theme: &str, at_ms: i64) {
        let entry = self.resolved_at.entry(theme.to_owned()).or_insert(at_ms);
        *entry = (*entry).max(at_ms);
        self.detector.clear(theme);
    }
}

/// The evidence of an action from the detector's window and excerpt candidates (newest
/// first, as `TrendsStore::recent_negative_excerpts` returns them).
///
/// Excerpts are the most recent ones, one per customer: an operator deciding what to do
/// wants to see the problem as it is *now* and how widespread it is, not one customer's
/// five messages. (Shortest-first was the alternative; it favours fragments like
/// "late!!" that say nothing.)
pub fn build_evidence(stats: &WindowStats, rule: String, candidates: &[ExcerptRow]) -> Evidence {
    // The newest ids when capping: they describe the current state of the problem.
    let skip = stats.negative.len().saturating_sub(MAX_EVIDENCE_IDS);
    let feedback_ids = stats.negative[skip..]
        .iter()
        .filter_map(|m| Uuid::parse_str(&m.feedback_id).ok())
        .collect();
    // Only mentions the detector counted: not ones ignored by hysteresis or too late.
    let counted: HashSet<&str> = stats
        .negative
        .iter()
        .map(|m| m.feedback_id.as_str())
        .collect();
    let mut customers = HashSet::new();
    let excerpts = candidates
        .iter()
        .filter(|c| counted.contains(c.feedback_id.as_str()))
        .filter(|c| !c.excerpt.trim().is_empty())
        .filter(|c| customers.insert(c.customer_id.as_str()))
        .filter_map(|c| {
            Some(EvidenceExcerpt {
                feedback_id: Uuid::parse_str(&c.feedback_id).ok()?,
                customer_id: c.customer_id.clone(),
                excerpt: truncate_chars(c.excerpt.trim(), MAX_EXCERPT_CHARS),
                given_at: time(c.given_at_ms),
            })
        })
        .take(MAX_EXCERPTS)
        .collect();
    Evidence {
        window_start: time(stats.window_start_ms),
        window_end: time(stats.window_end_ms),
        mentions: stats.mentions,
        negative_mentions: stats.negative_mentions,
        distinct_customers: stats.distinct_customers,
        rule,
        feedback_ids,
        excerpts,
    }
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A theme id as the taxonomy allows it (`[a-z0-9_]+`, bounded): anything else cannot
/// have come from categorise and would only pollute metric labels and the tables.
fn check_theme(theme: &str) -> Result<(), String> {
    let valid = !theme.is_empty()
        && theme.len() <= 64
        && theme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!("invalid theme id {theme:?}"))
    }
}

pub(crate) fn db_error(error: closeloop_store::sqlx::Error) -> HandlerError {
    if closeloop_store::is_transient(&error) {
        HandlerError::transient(error)
    } else {
        HandlerError::permanent(format!("database: {error}"))
    }
}

/// Handles `feedback.themes.v1`.
#[derive(Clone)]
pub struct ThemesHandler {
    ctx: Arc<Context>,
}

impl ThemesHandler {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    async fn on_triggered(
        &self,
        theme: &str,
        stats: WindowStats,
        traceparent: Option<&str>,
    ) -> Result<(), HandlerError> {
        let store = &self.ctx.store;
        if let Some(open) = store.open_action(theme).await.map_err(db_error)? {
            let evidence = self.evidence(theme, &stats).await?;
            return self.update(open, evidence, traceparent).await;
        }
        let Some(stats) = self.sync_resolution(theme, stats).await? else {
            return Ok(());
        };
        self.raise(theme, &stats, traceparent).await
    }

    /// HTTP resolves can land on any trends instance, but the theme's window lives on
    /// the instance that owns its partition. Before raising, compare with the resolution
    /// time in the shared database; if it is newer than ours, rebuild the window without
    /// the complaints that resolution answered. Returns the window if still triggered.
    async fn sync_resolution(
        &self,
        theme: &str,
        stats: WindowStats,
    ) -> Result<Option<WindowStats>, HandlerError> {
        let stored = self
            .ctx
            .store
            .last_resolution(theme)
            .await
            .map_err(db_error)?;
        let (known, keep_ms) = {
            let detection = self.ctx.detection();
            let config = detection.config();
            (
                detection.resolved_at(theme),
                config.window_ms + config.allowed_lateness_ms,
            )
        };
        let Some(resolved_at) = stored.filter(|&stored| Some(stored) > known) else {
            return Ok(Some(stats));
        };
        let mentions = self
            .ctx
            .store
            .theme_mentions(theme, stats.window_end_ms - keep_ms, resolved_at)
            .await
            .map_err(db_error)?;
        let mut detection = self.ctx.detection();
        detection.resolved(theme, resolved_at);
        detection.replay(theme, mentions);
        Ok(detection.triggered(theme))
    }

    async fn evidence(&self, theme: &str, stats: &WindowStats) -> Result<Evidence, HandlerError> {
        let candidates = self
            .ctx
            .store
            .recent_negative_excerpts(
                theme,
                stats.window_start_ms,
                stats.window_end_ms,
                EXCERPT_CANDIDATES,
            )
            .await
            .map_err(db_error)?;
        let rule = self.ctx.detection().config().describe();
        Ok(build_evidence(stats, rule, &candidates))
    }

    async fn raise(
        &self,
        theme: &str,
        stats: &WindowStats,
        traceparent: Option<&str>,
    ) -> Result<(), HandlerError> {
        let store = &self.ctx.store;
        let evidence = self.evidence(theme, stats).await?;
        let now_ms = Utc::now().timestamp_millis();
        let row = ActionRow {
            action_id: Uuid::now_v7().to_string(),
            theme: theme.to_owned(),
            status: "open".into(),
            raised_at_ms: now_ms,
            updated_at_ms: now_ms,
            evidence_json: serde_json::to_string(&evidence).map_err(HandlerError::permanent)?,
            resolution_json: None,
            resolved_at_ms: None,
            announced: false,
        };
        if !store.insert_action(&row).await.map_err(db_error)? {
            // Another instance raised it first: the partial unique index kept one open
            // action, and this mention becomes an update of it.
            return match store.open_action(theme).await.map_err(db_error)? {
                Some(open) => self.update(open, evidence, traceparent).await,
                None => Err(HandlerError::transient("open action changed concurrently")),
            };
        }
        let action =
            Action::from_row(&row, self.ctx.theme_name(theme)).map_err(HandlerError::permanent)?;
        let envelope = Envelope::new(action.event(ActionEventKind::Raised));
        if let Err(error) = self.ctx.publisher.publish(&envelope, traceparent).await {
            // Without the row the retry raises afresh. Should the delete fail too, the
            // row stays with announced = 0 and the retry announces it instead.
            if let Err(db) = store.delete_action(&row.action_id).await {
                tracing::warn!(action_id = %row.action_id, error = %db, "could not withdraw unannounced action");
            }
            return Err(HandlerError::transient(error));
        }
        // If this fails the retry publishes `raised` once more for the same action id:
        // at-least-once, and consumers key on the action id.
        store
            .mark_announced(&row.action_id)
            .await
            .map_err(db_error)?;
        self.ctx.metrics.opened(theme);
        self.ctx.metrics.event("raised");
        tracing::info!(
            action_id = %action.action_id,
            theme,
            negative_mentions = evidence.negative_mentions,
            distinct_customers = evidence.distinct_customers,
            "action raised"
        );
        Ok(())
    }

    async fn update(
        &self,
        open: ActionRow,
        evidence: Evidence,
        traceparent: Option<&str>,
    ) -> Result<(), HandlerError> {
        let previous: Option<Evidence> = serde_json::from_str(&open.evidence_json).ok();
        let kind = match &previous {
            // Stored but never announced (crash between insert and publish).
            _ if !open.announced => Some(ActionEventKind::Raised),
            // A replay: nothing new to say or store.
            Some(previous) if *previous == evidence => return Ok(()),
            // Only when more customers are affected: an event per mention would flood
            // notify and the people watching actions.v1.
            Some(previous) if evidence.distinct_customers <= previous.distinct_customers => None,
            // More customers, or stored evidence that no longer parses.
            _ => Some(ActionEventKind::Updated),
        };
        let evidence_json = serde_json::to_string(&evidence).map_err(HandlerError::permanent)?;
        let now_ms = Utc::now().timestamp_millis();
        if let Some(kind) = kind {
            let mut action = Action::from_row(&open, self.ctx.theme_name(&open.theme))
                .map_err(HandlerError::permanent)?;
            action.evidence = evidence;
            action.updated_at = time(now_ms);
            let envelope = Envelope::new(action.event(kind));
            // Published before the row is written, so a failure in between repeats the
            // event rather than losing it.
            self.ctx
                .publisher
                .publish(&envelope, traceparent)
                .await
                .map_err(HandlerError::transient)?;
        }
        self.ctx
            .store
            .update_evidence(&open.action_id, &evidence_json, true, now_ms)
            .await
            .map_err(db_error)?;
        match kind {
            Some(ActionEventKind::Raised) => {
                self.ctx.metrics.opened(&open.theme);
                self.ctx.metrics.event("raised");
                tracing::info!(action_id = %open.action_id, theme = %open.theme, "action raised (announced late)");
            }
            Some(_) => {
                self.ctx.metrics.event("updated");
                tracing::info!(action_id = %open.action_id, theme = %open.theme, "action updated");
            }
            None => {}
        }
        Ok(())
    }
}

impl Handler for ThemesHandler {
    type Event = ThemeMention;

    async fn handle(&self, incoming: &Incoming<ThemeMention>) -> Result<(), HandlerError> {
        let mention = &incoming.envelope.data;
        check_theme(&mention.theme).map_err(HandlerError::permanent)?;
        let given_at_ms = mention.given_at.timestamp_millis();
        let row = MentionRow {
            feedback_id: mention.feedback_id.to_string(),
            theme: mention.theme.clone(),
            customer_id: mention.customer_id.clone(),
            negative: mention.sentiment == SentimentLabel::Negative,
            excerpt: mention.excerpt.clone(),
            channel: mention.channel.as_str().to_owned(),
            touchpoint: mention.touchpoint.map(|t| t.as_str().to_owned()),
            rating: mention.rating.map(i64::from),
            given_at_ms,
        };
        let inserted = self
            .ctx
            .store
            .insert_mention(&row)
            .await
            .map_err(db_error)?;

        // One action transition at a time: a resolve arriving over HTTP must not
        // interleave with raising or updating (it clears the window this reads).
        let _transition = self.ctx.transitions.lock().await;
        let triggered = {
            let mut detection = self.ctx.detection();
            if inserted {
                detection.observe(
                    &row.theme,
                    Mention {
                        feedback_id: row.feedback_id.clone(),
                        customer_id: row.customer_id.clone(),
                        negative: row.negative,
                        at_ms: given_at_ms,
                    },
                )
            } else {
                detection.triggered(&row.theme)
            }
        };
        match triggered {
            Some(stats) => {
                self.on_triggered(&row.theme, stats, incoming.traceparent.as_deref())
                    .await
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn config() -> DetectorConfig {
        DetectorConfig {
            window_ms: 60 * MIN,
            min_negative_mentions: 3,
            min_distinct_customers: 2,
            allowed_lateness_ms: 10 * MIN,
        }
    }

    fn negative(id: Uuid, customer: &str, at_ms: i64) -> Mention {
        Mention {
            feedback_id: id.to_string(),
            customer_id: customer.into(),
            negative: true,
            at_ms,
        }
    }

    fn stats_of(mentions: &[Mention]) -> WindowStats {
        let mut detector = Detector::new(DetectorConfig {
            min_negative_mentions: 1,
            min_distinct_customers: 1,
            ..config()
        });
        let mut last = None;
        for m in mentions {
            last = Some(detector.observe("t", m.clone()));
        }
        match last {
            Some(Observation::Triggered(stats)) => stats,
            other => panic!("expected a window, got {other:?}"),
        }
    }

    fn candidate(m: &Mention, excerpt: &str) -> ExcerptRow {
        ExcerptRow {
            feedback_id: m.feedback_id.clone(),
            customer_id: m.customer_id.clone(),
            excerpt: excerpt.into(),
            given_at_ms: m.at_ms,
        }
    }

    #[test]
    fn evidence_quotes_the_newest_excerpt_of_each_customer() {
        let mentions: Vec<Mention> = ["a", "b", "a", "c", "a", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(n, c)| negative(Uuid::now_v7(), c, n as i64 * MIN))
            .collect();
        let stats = stats_of(&mentions);
        // Newest first, as the store returns them; one blank excerpt is skipped.
        let mut candidates: Vec<ExcerptRow> = mentions
            .iter()
            .enumerate()
            .map(|(n, m)| candidate(m, &format!("complaint {n}")))
            .rev()
            .collect();
        candidates[0].excerpt = "   ".into();
        // An id the detector did not count (e.g. before a resolution) is never quoted.
        candidates.insert(
            0,
            candidate(&negative(Uuid::now_v7(), "z", 7 * MIN), "old news"),
        );

        let evidence = build_evidence(&stats, "rule".into(), &candidates);
        assert_eq!(evidence.negative_mentions, 8);
        assert_eq!(evidence.distinct_customers, 6);
        assert_eq!(evidence.rule, "rule");
        assert_eq!(evidence.feedback_ids.len(), 8);
        assert_eq!(evidence.window_end, time(7 * MIN));
        assert_eq!(evidence.window_start, time(-53 * MIN));
        let quoted: Vec<(&str, &str)> = evidence
            .excerpts
            .iter()
            .map(|e| (e.customer_id.as_str(), e.excerpt.as_str()))
            .collect();
        assert_eq!(
            quoted,
            [
                ("e", "complaint 6"),
                ("d", "complaint 5"),
                ("a", "complaint 4"),
                ("c", "complaint 3"),
                ("b", "complaint 1"),
            ]
        );
    }

    #[test]
    fn evidence_ids_are_capped_to_the_newest() {
        let mentions: Vec<Mention> = (0..MAX_EVIDENCE_IDS + 20)
            .map(|n| negative(Uuid::now_v7(), &format!("c{}", n % 9), n as i64))
            .collect();
        let stats = stats_of(&mentions);
        let evidence = build_evidence(&stats, "rule".into(), &[]);
        assert_eq!(evidence.negative_mentions as usize, MAX_EVIDENCE_IDS + 20);
        assert_eq!(evidence.feedback_ids.len(), MAX_EVIDENCE_IDS);
        let newest = mentions.last().map(|m| m.feedback_id.clone());
        assert_eq!(evidence.feedback_ids.last().map(Uuid::to_string), newest);
        assert!(evidence.excerpts.is_empty());
    }

    #[test]
    fn long_excerpts_are_cut_on_a_character_boundary() {
        let long = "ü".repeat(MAX_EXCERPT_CHARS + 10);
        let cut = truncate_chars(&long, MAX_EXCERPT_CHARS);
        assert_eq!(cut.chars().count(), MAX_EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_chars("short", MAX_EXCERPT_CHARS), "short");
    }

    #[test]
    fn resolved_complaints_do_not_raise_again() {
        let mut state = DetectionState::new(config());
        let t = "delivery_time";
        assert!(state
            .observe(t, negative(Uuid::now_v7(), "a", MIN))
            .is_none());
        assert!(state
            .observe(t, negative(Uuid::now_v7(), "b", 2 * MIN))
            .is_none());
        assert!(state
            .observe(t, negative(Uuid::now_v7(), "c", 3 * MIN))
            .is_some());
        assert!(state.triggered(t).is_some());

        state.resolved(t, 3 * MIN);
        assert!(state.triggered(t).is_none(), "window cleared");
        // Late complaints from before the resolution are ignored, however many.
        for n in 0..5 {
            let late = negative(Uuid::now_v7(), &format!("late{n}"), 2 * MIN + n);
            assert!(state.observe(t, late).is_none());
        }
        assert!(state.triggered(t).is_none());
        // New complaints after it count from zero.
        assert!(state
            .observe(t, negative(Uuid::now_v7(), "x", 4 * MIN))
            .is_none());
        assert!(state
            .observe(t, negative(Uuid::now_v7(), "y", 5 * MIN))
            .is_none());
        let stats = state
            .observe(t, negative(Uuid::now_v7(), "x", 6 * MIN))
            .expect("raised anew");
        assert_eq!(stats.negative_mentions, 3);
        // An older resolution never moves the boundary back.
        state.resolved(t, MIN);
        assert_eq!(state.resolved_at(t), Some(3 * MIN));
    }

    #[test]
    fn theme_ids_are_checked() {
        assert!(check_theme("delivery_time").is_ok());
        assert!(check_theme("").is_err());
        assert!(check_theme("Delivery").is_err());
        assert!(check_theme(&"a".repeat(65)).is_err());
    }
}
