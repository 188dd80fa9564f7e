//! From theme mentions to actions: the detector state shared with the HTTP API and the
//! `feedback.themes.v1` handler that raises, updates and reopens actions.
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
    ActionEventKind, Envelope, Evidence, EvidenceCounts, RelatedEvidence, SentimentLabel,
    ThemeMention,
};
use closeloop_trend::{
    Detector, DetectorConfig, DetectorSettings, Intake, Mention, Observation, Signal, ThemeStats,
    Trigger,
};
use uuid::Uuid;

use crate::action::{time, Action};
use crate::announce::{publish_or_undo, Undo};
use crate::context::Context;
use crate::evidence;
use crate::store::{is_unique_violation, ActionRow, FindingRow, LogRow, MentionRow, TrendsStore};

/// Who the history names for what the detector did.
pub const DETECTOR_ACTOR: &str = "closeloop-trends";

/// What an [`EvidenceMark`] names instead of an action for a historical finding (with
/// the episode's trigger time, so another episode is news).
fn historical_mark(signal: &Signal) -> EvidenceMark {
    EvidenceMark::of(&format!("historical@{}", signal.triggered_at_ms()), signal)
}

/// The detector, plus per theme what its action's evidence was last read for and
/// whether it may be behind the mentions since.
///
/// Evidence is read at once when it is news (a raise, a reopen, clearly more customers:
/// what `updated` events are sent for). Any other change — the episode fired again,
/// grew a little, or a late mention landed in its span — only marks the theme stale, and
/// the settler ([`ThemesHandler::settle`]) reads it again within [`SETTLE_EVERY`] (less
/// often under heavy load, see [`settle_evidence`]): the same stored evidence for the
/// same mentions however they were batched, without five queries over the whole span
/// for every batch of a surging theme.
#[derive(Debug)]
pub struct DetectionState {
    detector: Detector,
    reported: HashMap<String, EvidenceMark>,
    stale: HashSet<String>,
    /// Stale themes the settler took and is reading now.
    settling: usize,
}

/// How often stale evidence is read again.
pub const SETTLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What an action's evidence is read for: the episode's span and peak. The stored
/// evidence changes only when this changes or a mention lands inside the span, so
/// recounting on exactly those gives the same evidence for the same mentions, however
/// they were batched (one instance, or replicas taking partitions over).
#[derive(Debug, Clone, PartialEq, Eq)]
struct EvidenceMark {
    action_id: String,
    from_ms: i64,
    to_ms: i64,
    customers: u32,
}

impl EvidenceMark {
    fn of(action_id: &str, signal: &Signal) -> Self {
        Self {
            action_id: action_id.to_owned(),
            from_ms: signal.evidence_start_ms,
            to_ms: signal.window.end_ms,
            customers: signal_customers(signal),
        }
    }
}

/// Customers a signal is about: the episode's peak window for a surge (the same for any
/// arrival order of its mentions), all periods' for a recurrence.
pub fn signal_customers(signal: &Signal) -> u32 {
    match signal.trigger {
        Trigger::Surge { .. } => signal.customers(),
        Trigger::Recurrence {
            distinct_customers, ..
        } => distinct_customers,
    }
}

impl DetectionState {
    pub fn new(settings: DetectorSettings) -> Self {
        Self {
            detector: Detector::new(settings),
            reported: HashMap::new(),
            stale: HashSet::new(),
            settling: 0,
        }
    }

    pub fn config(&self, theme: &str) -> &DetectorConfig {
        self.detector.config(theme)
    }

    /// The detector's settings, for a replay with a detector of its own.
    pub fn settings(&self) -> &DetectorSettings {
        self.detector.settings()
    }

    /// See [`Detector::observe_batch`].
    pub fn observe_batch(
        &mut self,
        theme: &str,
        mentions: &[Mention],
    ) -> (Vec<Intake>, Observation) {
        self.detector.observe_batch(theme, mentions)
    }

    /// The theme's signal if it is active right now (without new input).
    pub fn current(&self, theme: &str) -> Option<Signal> {
        self.detector.current(theme)
    }

    /// See [`Detector::latest_episode`].
    pub fn latest_episode(&self, theme: &str) -> Option<Signal> {
        self.detector.latest_episode(theme)
    }

    pub fn stats(&self, theme: &str) -> Option<ThemeStats> {
        self.detector.stats(theme)
    }

    /// Restores from the store what the detector knew: each theme's resolution boundary,
    /// then the counted mentions of the history it needs (baseline, seasons, recurrence
    /// periods), replayed in event time order. Mentions given before the resolution land
    /// in the baseline only, exactly as they did live. Also returns how many mentions
    /// were replayed. Runs at start-up and whenever this instance is given partitions:
    /// their themes may have been counted by another instance until then.
    pub async fn rebuild(
        settings: DetectorSettings,
        store: &TrendsStore,
    ) -> Result<(Self, usize), closeloop_store::sqlx::Error> {
        let mut state = Self::new(settings);
        for (theme, resolved_at) in store.last_resolutions().await? {
            state.resolved(&theme, resolved_at);
        }
        let mut replayed = 0;
        for (theme, watermark) in store.theme_watermarks().await? {
            let history_ms = state.config(&theme).history_ms();
            let mentions = store
                .theme_mentions(&theme, watermark.saturating_sub(history_ms), i64::MIN)
                .await?;
            replayed += mentions.len();
            state.replay(&theme, &mentions);
        }
        Ok((state, replayed))
    }

    /// Takes the counts of a freshly rebuilt state, keeping what evidence was last
    /// reported (so a takeover sends no `updated` event that tells nothing new).
    fn take_counts_of(&mut self, rebuilt: DetectionState) {
        self.detector = rebuilt.detector;
    }

    /// Feeds stored mentions, as on start-up: one batch, in event-time order (the
    /// detector sorts it), so mentions that arrived late count where they belong.
    pub fn replay(&mut self, theme: &str, mentions: &[Mention]) {
        self.detector.observe_batch(theme, mentions);
    }

    pub fn resolved_at(&self, theme: &str) -> Option<i64> {
        self.detector.resolved_at(theme)
    }

    /// The theme's action was resolved at `at_ms`: complaints given up to then were
    /// answered and must not raise the theme again (hysteresis).
    pub fn resolved(&mut self, theme: &str, at_ms: i64) {
        self.detector.resolved(theme, at_ms);
        self.reported.remove(theme);
    }

    /// A resolution made on another instance, learnt now; see [`Detector::resolved_late`].
    pub fn resolved_late(&mut self, theme: &str, at_ms: i64, after: &[Mention]) -> Option<Signal> {
        self.reported.remove(theme);
        self.detector.resolved_late(theme, at_ms, after)
    }

    /// Whether the evidence for `mark` must be read now: another action (or an instance
    /// that has not read it yet: restarted, or took the theme over), or clearly more
    /// customers than last read.
    fn is_news(&self, theme: &str, mark: &EvidenceMark) -> bool {
        match self.reported.get(theme) {
            Some(read) if read.action_id == mark.action_id => {
                mark.customers >= read.customers + update_step(read.customers)
            }
            _ => true,
        }
    }

    /// Whether the evidence last read differs from what `mark` describes.
    fn is_behind(&self, theme: &str, mark: &EvidenceMark) -> bool {
        self.reported.get(theme) != Some(mark)
    }

    fn reported(&mut self, theme: &str, mark: EvidenceMark) {
        self.stale.remove(theme);
        self.reported.insert(theme.to_owned(), mark);
    }

    /// The theme's stored evidence may be behind its mentions: the settler reads it again.
    fn mark_stale(&mut self, theme: &str) {
        if !self.stale.contains(theme) {
            self.stale.insert(theme.to_owned());
        }
    }

    /// Themes whose evidence is stale or being read again: 0 once the stored evidence
    /// reflects every mention counted.
    pub fn evidence_pending(&self) -> usize {
        self.stale.len() + self.settling
    }
}

/// How many more customers make an `updated` event worth sending: one while few are
/// affected, a tenth beyond that — a surge of a thousand customers is a handful of
/// updates, not a thousand (notify and whoever watches `actions.v1` would drown).
pub fn update_step(customers: u32) -> u32 {
    (customers / 10).max(1)
}

/// A theme id as the taxonomy allows it (`[a-z0-9_]+`, bounded): anything else cannot
/// have come from categorise and would only pollute metric labels and the tables.
pub fn check_theme(theme: &str) -> Result<(), String> {
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
    /// Mentions a batch stored but did not count yet (a failure stopped it): its retry
    /// finds them stored already and must still count them.
    uncounted: Arc<std::sync::Mutex<HashSet<(String, String)>>>,
}

/// What made the handler act: the signal and, for a new mention, the event time of the
/// trigger (for the detection delay; late mentions can put it well in the past).
struct Firing<'a> {
    signal: Signal,
    traceparent: Option<&'a str>,
    triggered_at_ms: Option<i64>,
    /// New mentions landed inside the evidence span: the evidence is behind even if the
    /// episode did not move.
    touched: bool,
}

impl ThemesHandler {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            uncounted: Default::default(),
        }
    }

    fn uncounted(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.uncounted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn on_triggered(&self, theme: &str, trigger: Firing<'_>) -> Result<(), HandlerError> {
        let store = &self.ctx.store;
        if let Some(open) = store.unresolved_action(theme).await.map_err(db_error)? {
            let mark = EvidenceMark::of(&open.action_id, &trigger.signal);
            if open.announced && self.settles_later(theme, &mark, trigger.touched) {
                return Ok(());
            }
            let evidence = self.evidence(theme, &trigger.signal).await?;
            return self
                .update(open, evidence, &trigger.signal, trigger.traceparent)
                .await;
        }
        let Some(signal) = self.sync_resolution(theme, trigger.signal).await? else {
            return Ok(());
        };
        let trigger = Firing { signal, ..trigger };
        if self.is_historical(&trigger.signal) {
            let mark = historical_mark(&trigger.signal);
            if self.settles_later(theme, &mark, trigger.touched) {
                return Ok(());
            }
            return self.found_in_history(theme, &trigger.signal).await;
        }
        if let Some(owner) = self.covering_action(theme).await? {
            if self.is_more_specific(theme, &owner.theme) {
                return self
                    .retitle(owner, theme, &trigger.signal, trigger.traceparent)
                    .await;
            }
            let mark = EvidenceMark::of(&owner.action_id, &trigger.signal);
            if owner.announced && self.settles_later(theme, &mark, trigger.touched) {
                return Ok(());
            }
            return self
                .join(owner, theme, &trigger.signal, trigger.traceparent)
                .await;
        }
        let evidence = self.evidence(theme, &trigger.signal).await?;
        if let Some(resolved) = self.reopen_candidate(theme).await? {
            return self.reopen(resolved, evidence, &trigger).await;
        }
        self.raise(theme, evidence, &trigger).await
    }

    /// HTTP resolves can land on any trends instance, but the theme's window lives on
    /// the instance that owns its partition. Before raising, compare with the resolution
    /// time in the shared database; if it is newer than ours, recount the window without
    /// the complaints that resolution answered. Returns the signal if still active.
    async fn sync_resolution(
        &self,
        theme: &str,
        signal: Signal,
    ) -> Result<Option<Signal>, HandlerError> {
        let stored = self
            .ctx
            .store
            .last_resolution(theme)
            .await
            .map_err(db_error)?;
        let (known, history_ms) = {
            let detection = self.ctx.detection();
            (
                detection.resolved_at(theme),
                detection.config(theme).history_ms(),
            )
        };
        let Some(resolved_at) = stored.filter(|&stored| Some(stored) > known) else {
            return Ok(Some(signal));
        };
        let mentions = self
            .ctx
            .store
            .theme_mentions(theme, signal.window.end_ms - history_ms, resolved_at)
            .await
            .map_err(db_error)?;
        Ok(self
            .ctx
            .detection()
            .resolved_late(theme, resolved_at, &mentions))
    }

    /// Whether the signal's evidence ended longer ago (event time against the wall clock)
    /// than `TRENDS_HISTORICAL_AFTER_HOURS`: history, such as an import of old exports.
    fn is_historical(&self, signal: &Signal) -> bool {
        let after_ms = self.ctx.historical_after_ms;
        after_ms > 0 && Utc::now().timestamp_millis() - signal.window.end_ms > after_ms
    }

    /// Whether reading the evidence for `mark` can wait for the settler: it is not news.
    /// Marks the theme stale when the evidence is behind (`touched`: new mentions in
    /// its span).
    fn settles_later(&self, theme: &str, mark: &EvidenceMark, touched: bool) -> bool {
        let mut detection = self.ctx.detection();
        if detection.is_news(theme, mark) {
            return false;
        }
        if touched || detection.is_behind(theme, mark) {
            detection.mark_stale(theme);
        }
        true
    }

    /// An episode of the past: recorded as a historical finding (its evidence read as
    /// for an action), not raised, not announced — nobody is to work on it and no
    /// customer is to be told about it.
    async fn found_in_history(&self, theme: &str, signal: &Signal) -> Result<(), HandlerError> {
        let mark = historical_mark(signal);
        let evidence = self.evidence(theme, signal).await?;
        let now_ms = Utc::now().timestamp_millis();
        let row = FindingRow {
            theme: theme.to_owned(),
            triggered_at_ms: signal.triggered_at_ms(),
            evidence_end_ms: signal.window.end_ms,
            found_at_ms: now_ms,
            updated_at_ms: now_ms,
            evidence_json: serde_json::to_string(&evidence).map_err(HandlerError::permanent)?,
        };
        let new = self
            .ctx
            .store
            .record_finding(&row)
            .await
            .map_err(db_error)?;
        self.ctx.detection().reported(theme, mark);
        if new {
            self.ctx.metrics.historical_findings.inc();
            tracing::info!(
                theme,
                triggered_at = %time(row.triggered_at_ms),
                detector = %evidence.detector,
                negative_mentions = evidence.negative_mentions,
                distinct_customers = evidence.distinct_customers,
                "historical finding: an episode of the past, reported, not raised"
            );
        }
        Ok(())
    }

    /// The unresolved action of another theme on `theme`'s line of the hierarchy (its
    /// parent, a child): one problem gets one action, so a surge of the theme joins it.
    async fn covering_action(&self, theme: &str) -> Result<Option<ActionRow>, HandlerError> {
        let taxonomy = self.ctx.taxonomy();
        let lineage = taxonomy.lineage(theme);
        self.ctx
            .store
            .unresolved_action_of_any(&lineage)
            .await
            .map_err(db_error)
    }

    /// Whether `theme` refines `other` (is its child, grandchild, …): the more specific
    /// name of one problem.
    fn is_more_specific(&self, theme: &str, other: &str) -> bool {
        self.ctx.taxonomy().ancestors(theme).contains(&other)
    }

    /// The theme's evidence in the form a related theme contributes it.
    fn related(&self, theme: &str, evidence: Evidence) -> RelatedEvidence {
        RelatedEvidence {
            theme: theme.to_owned(),
            theme_name: self.ctx.theme_name(theme),
            counts: EvidenceCounts {
                mentions: evidence.mentions,
                negative_mentions: evidence.negative_mentions,
                distinct_customers: evidence.distinct_customers,
            },
            reason: evidence.reason,
            feedback_ids: evidence.feedback_ids,
            excerpts: evidence.excerpts,
        }
    }

    /// `theme` refines the theme of `owner`, the unresolved action of its line: the
    /// action takes the more specific name, with `theme`'s evidence as its own and its
    /// former theme's as related. Whichever of the two fires first, the same action
    /// results — what the same mentions give must not depend on their arrival order.
    async fn retitle(
        &self,
        owner: ActionRow,
        theme: &str,
        signal: &Signal,
        traceparent: Option<&str>,
    ) -> Result<(), HandlerError> {
        let previous: Evidence =
            serde_json::from_str(&owner.evidence_json).map_err(HandlerError::permanent)?;
        let mut evidence = self.evidence(theme, signal).await?;
        let mut related: Vec<RelatedEvidence> = previous
            .related
            .iter()
            .filter(|r| r.theme != theme)
            .cloned()
            .collect();
        related.insert(0, self.related(&owner.theme, previous));
        evidence.related = related;
        let evidence_json = serde_json::to_string(&evidence).map_err(HandlerError::permanent)?;
        let now_ms = Utc::now().timestamp_millis();
        let store = &self.ctx.store;
        store
            .cover_theme(&owner.action_id, &owner.theme, now_ms)
            .await
            .map_err(db_error)?;
        let retitled = match store
            .retitle_action(
                &owner.action_id,
                (&owner.theme, &owner.evidence_json),
                theme,
                &evidence_json,
                now_ms,
            )
            .await
        {
            Ok(retitled) => retitled,
            Err(error) if is_unique_violation(&error) => false,
            Err(error) => return Err(db_error(error)),
        };
        if !retitled {
            // Changed meanwhile (resolved, updated, or the theme raised its own on another
            // instance): the retry sees the actions as they are now.
            return Err(HandlerError::transient(
                "the action changed while a more specific theme took it over",
            ));
        }
        let row = store
            .action(&owner.action_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| HandlerError::transient("retitled action vanished"))?;
        let action =
            Action::from_row(&row, self.ctx.theme_name(theme)).map_err(HandlerError::permanent)?;
        // An action not announced yet is announced under its new theme by the next firing.
        if owner.announced {
            let envelope = publish_or_undo(
                &self.ctx,
                &action,
                ActionEventKind::Updated,
                traceparent,
                Undo::Restore(&owner),
            )
            .await
            .map_err(HandlerError::transient)?;
            self.ctx.metrics.event(ActionEventKind::Updated.as_str());
            let entry = LogRow {
                at_ms: now_ms,
                kind: ActionEventKind::Updated.as_str().into(),
                actor: DETECTOR_ACTOR.into(),
                note: Some(format!(
                    "{theme} surged: the more specific name of this problem; {} is related now",
                    owner.theme
                )),
            };
            self.ctx.log(&envelope, &owner.action_id, &entry).await;
        }
        self.ctx.metrics.closed(&owner.theme);
        self.ctx.metrics.opened(theme, owner.raised_at_ms);
        self.ctx
            .detection()
            .reported(theme, EvidenceMark::of(&owner.action_id, signal));
        tracing::info!(action_id = %owner.action_id, from = %owner.theme, to = theme, "action retitled to the more specific theme");
        Ok(())
    }

    /// Adds the theme's evidence to `owner`, the unresolved action of its lineage, as
    /// related evidence: the operators work one action, and on its resolution the
    /// theme's complainers hear "we did" with the owner's. An `updated` event goes out
    /// when the theme joins or clearly more of its customers are affected.
    async fn join(
        &self,
        owner: ActionRow,
        theme: &str,
        signal: &Signal,
        traceparent: Option<&str>,
    ) -> Result<(), HandlerError> {
        let mark = EvidenceMark::of(&owner.action_id, signal);
        let evidence = self.evidence(theme, signal).await?;
        let related = self.related(theme, evidence);
        let mut joined: Evidence =
            serde_json::from_str(&owner.evidence_json).map_err(HandlerError::permanent)?;
        let known = joined.related.iter().position(|r| r.theme == theme);
        let news = match known.map(|index| &joined.related[index]) {
            Some(same) if *same == related => {
                self.ctx.detection().reported(theme, mark);
                return Ok(());
            }
            Some(before) => {
                let customers = before.counts.distinct_customers;
                related.counts.distinct_customers >= customers + update_step(customers)
            }
            None => true,
        };
        let customers = related.counts.distinct_customers;
        match known {
            Some(index) => joined.related[index] = related,
            None => joined.related.push(related),
        }
        let now_ms = Utc::now().timestamp_millis();
        let store = &self.ctx.store;
        store
            .cover_theme(&owner.action_id, theme, now_ms)
            .await
            .map_err(db_error)?;
        let evidence_json = serde_json::to_string(&joined).map_err(HandlerError::permanent)?;
        // An action not announced yet is announced with this evidence by its own theme.
        let envelope = if news && owner.announced {
            let mut action = Action::from_row(&owner, self.ctx.theme_name(&owner.theme))
                .map_err(HandlerError::permanent)?;
            action.evidence = joined;
            action.updated_at = time(now_ms);
            let event = Envelope::new(action.event(ActionEventKind::Updated));
            // Published before the row is written, as in `update`.
            self.ctx
                .publisher
                .publish(&event, traceparent)
                .await
                .map_err(HandlerError::transient)?;
            Some(event)
        } else {
            None
        };
        let written = store
            .update_evidence(
                &owner.action_id,
                &owner.evidence_json,
                &evidence_json,
                owner.announced,
                now_ms,
            )
            .await
            .map_err(db_error)?;
        if !written {
            // Resolved or updated meanwhile: the retry sees the action as it is now.
            return Err(HandlerError::transient(
                "the action changed while a related theme joined it",
            ));
        }
        self.ctx.detection().reported(theme, mark);
        if let Some(envelope) = envelope {
            self.ctx.metrics.event(ActionEventKind::Updated.as_str());
            let entry = LogRow {
                at_ms: now_ms,
                kind: ActionEventKind::Updated.as_str().into(),
                actor: DETECTOR_ACTOR.into(),
                note: Some(format!(
                    "{theme} surged too: same problem, joined this action ({customers} customers)"
                )),
            };
            self.ctx.log(&envelope, &owner.action_id, &entry).await;
            tracing::info!(action_id = %owner.action_id, action_theme = %owner.theme, theme, customers, "related theme joined the action");
        }
        Ok(())
    }

    /// The theme's last resolved action if it was resolved recently enough that firing
    /// again means "the fix did not hold" rather than a new problem.
    async fn reopen_candidate(&self, theme: &str) -> Result<Option<ActionRow>, HandlerError> {
        let within = self.ctx.reopen_within_ms;
        if within == 0 {
            return Ok(None);
        }
        let latest = self
            .ctx
            .store
            .latest_resolved_action(theme)
            .await
            .map_err(db_error)?;
        let now_ms = Utc::now().timestamp_millis();
        Ok(latest.filter(|row| row.resolved_at_ms.is_some_and(|at| now_ms - at <= within)))
    }

    async fn evidence(&self, theme: &str, signal: &Signal) -> Result<Evidence, HandlerError> {
        let (config, after_ms) = {
            let detection = self.ctx.detection();
            (
                detection.config(theme).clone(),
                detection.resolved_at(theme).unwrap_or(i64::MIN),
            )
        };
        let (span, bucket_ms) = evidence::span_of(theme, signal, &config, after_ms);
        let gathered = evidence::gather(&self.ctx.store, span, bucket_ms)
            .await
            .map_err(db_error)?;
        let rule = match signal.trigger {
            Trigger::Surge { .. } => config.describe_surge(),
            Trigger::Recurrence { .. } => config.describe_recurrence(),
        };
        let mut evidence = evidence::assemble(span, signal, rule, &gathered);
        // What the theme costs, as last computed: a refresh old at most, and no query here.
        (evidence.nps_impact, evidence.rating_impact) = self.ctx.impact.quoted(theme);
        Ok(evidence)
    }

    async fn raise(
        &self,
        theme: &str,
        evidence: Evidence,
        trigger: &Firing<'_>,
    ) -> Result<(), HandlerError> {
        let store = &self.ctx.store;
        // The episode reached the present: what was reported of it as history is this
        // action now.
        store
            .forget_findings_since(theme, trigger.signal.triggered_at_ms())
            .await
            .map_err(db_error)?;
        let now_ms = Utc::now().timestamp_millis();
        let row = ActionRow::raised(
            Uuid::now_v7().to_string(),
            theme.to_owned(),
            now_ms,
            serde_json::to_string(&evidence).map_err(HandlerError::permanent)?,
        );
        let taxonomy = self.ctx.taxonomy();
        let lineage = taxonomy.lineage(theme);
        let line = taxonomy.ancestors(theme).last().copied().unwrap_or(theme);
        if !store
            .insert_action_alone(&row, &lineage, line)
            .await
            .map_err(db_error)?
        {
            // Another instance raised it first: the partial unique index kept one
            // unresolved action, and this mention becomes an update of it. (Or a theme of
            // its line raised one: the retry joins or renames that.)
            return match store.unresolved_action(theme).await.map_err(db_error)? {
                Some(open) => {
                    self.update(open, evidence, &trigger.signal, trigger.traceparent)
                        .await
                }
                None => Err(HandlerError::transient("open action changed concurrently")),
            };
        }
        let action =
            Action::from_row(&row, self.ctx.theme_name(theme)).map_err(HandlerError::permanent)?;
        let envelope = publish_or_undo(
            &self.ctx,
            &action,
            ActionEventKind::Raised,
            trigger.traceparent,
            Undo::Withdraw,
        )
        .await
        .map_err(HandlerError::transient)?;
        // If this fails the retry publishes `raised` once more for the same action id:
        // at-least-once, and consumers key on the action id.
        store
            .mark_announced(&row.action_id)
            .await
            .map_err(db_error)?;
        self.announced(&row, &envelope, ActionEventKind::Raised, trigger, &evidence)
            .await;
        Ok(())
    }

    async fn reopen(
        &self,
        resolved: ActionRow,
        evidence: Evidence,
        trigger: &Firing<'_>,
    ) -> Result<(), HandlerError> {
        let store = &self.ctx.store;
        let now_ms = Utc::now().timestamp_millis();
        let evidence_json = serde_json::to_string(&evidence).map_err(HandlerError::permanent)?;
        match store
            .reopen_action(
                &resolved.action_id,
                DETECTOR_ACTOR,
                Some(&evidence_json),
                now_ms,
            )
            .await
        {
            Ok(true) => {}
            // Reopened or replaced meanwhile (another instance): retry from the top.
            Ok(false) => {
                return Err(HandlerError::transient(
                    "resolved action changed concurrently",
                ))
            }
            Err(error) if is_unique_violation(&error) => {
                return Err(HandlerError::transient(
                    "another action of the theme was raised concurrently",
                ))
            }
            Err(error) => return Err(db_error(error)),
        }
        let row = store
            .action(&resolved.action_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| HandlerError::transient("reopened action vanished"))?;
        let action = Action::from_row(&row, self.ctx.theme_name(&row.theme))
            .map_err(HandlerError::permanent)?;
        let envelope = publish_or_undo(
            &self.ctx,
            &action,
            ActionEventKind::Reopened,
            trigger.traceparent,
            Undo::Restore(&resolved),
        )
        .await
        .map_err(HandlerError::transient)?;
        self.announced(
            &row,
            &envelope,
            ActionEventKind::Reopened,
            trigger,
            &evidence,
        )
        .await;
        Ok(())
    }

    /// Bookkeeping after a raise or reopen went out: metrics, history, log line.
    async fn announced(
        &self,
        row: &ActionRow,
        envelope: &Envelope<closeloop_events::ActionEvent>,
        kind: ActionEventKind,
        trigger: &Firing<'_>,
        evidence: &Evidence,
    ) {
        let now_ms = Utc::now().timestamp_millis();
        let metrics = &self.ctx.metrics;
        let since_ms = match kind {
            ActionEventKind::Reopened => now_ms,
            _ => row.raised_at_ms,
        };
        metrics.opened(&row.theme, since_ms);
        metrics.event(kind.as_str());
        if let Some(at_ms) = trigger.triggered_at_ms {
            metrics.detection_delay(now_ms - at_ms);
        }
        self.ctx.detection().reported(
            &row.theme,
            EvidenceMark::of(&row.action_id, &trigger.signal),
        );
        let entry = LogRow {
            at_ms: now_ms,
            kind: kind.as_str().into(),
            actor: DETECTOR_ACTOR.into(),
            note: Some(evidence.reason.clone()),
        };
        self.ctx.log(envelope, &row.action_id, &entry).await;
        tracing::info!(
            action_id = %row.action_id,
            theme = %row.theme,
            kind = kind.as_str(),
            detector = %evidence.detector,
            negative_mentions = evidence.negative_mentions,
            distinct_customers = evidence.distinct_customers,
            "action {}", kind.as_str()
        );
    }

    async fn update(
        &self,
        open: ActionRow,
        evidence: Evidence,
        signal: &Signal,
        traceparent: Option<&str>,
    ) -> Result<(), HandlerError> {
        let mark = EvidenceMark::of(&open.action_id, signal);
        let previous: Option<Evidence> = serde_json::from_str(&open.evidence_json).ok();
        // Related themes keep what they contributed; only they change it.
        let mut evidence = evidence;
        if let Some(previous) = &previous {
            evidence.related = previous.related.clone();
        }
        let kind = match &previous {
            // Stored but never announced (crash between insert and publish).
            _ if !open.announced => Some(ActionEventKind::Raised),
            // A replay: nothing new to say or store.
            Some(previous) if *previous == evidence => {
                self.ctx.detection().reported(&open.theme, mark);
                return Ok(());
            }
            // Only when clearly more customers are affected: an event per mention would
            // flood notify and the people watching actions.v1.
            Some(previous)
                if evidence.distinct_customers
                    < previous.distinct_customers + update_step(previous.distinct_customers) =>
            {
                None
            }
            // More customers, or stored evidence that no longer parses.
            _ => Some(ActionEventKind::Updated),
        };
        let evidence_json = serde_json::to_string(&evidence).map_err(HandlerError::permanent)?;
        let now_ms = Utc::now().timestamp_millis();
        let mut envelope = None;
        if let Some(kind) = kind {
            let mut action = Action::from_row(&open, self.ctx.theme_name(&open.theme))
                .map_err(HandlerError::permanent)?;
            action.evidence = evidence.clone();
            action.updated_at = time(now_ms);
            let event = Envelope::new(action.event(kind));
            // Published before the row is written, so a failure in between repeats the
            // event rather than losing it.
            self.ctx
                .publisher
                .publish(&event, traceparent)
                .await
                .map_err(HandlerError::transient)?;
            envelope = Some(event);
        }
        let written = self
            .ctx
            .store
            .update_evidence(
                &open.action_id,
                &open.evidence_json,
                &evidence_json,
                true,
                now_ms,
            )
            .await
            .map_err(db_error)?;
        if !written && self.still_unresolved(&open.action_id).await? {
            // A related theme wrote the evidence meanwhile: read it again and retry.
            return Err(HandlerError::transient(
                "the action's evidence changed concurrently",
            ));
        }
        self.ctx.detection().reported(&open.theme, mark);
        if let (Some(kind), Some(envelope)) = (kind, envelope) {
            if kind == ActionEventKind::Raised {
                self.ctx.metrics.opened(&open.theme, open.raised_at_ms);
            }
            self.ctx.metrics.event(kind.as_str());
            let entry = LogRow {
                at_ms: now_ms,
                kind: kind.as_str().into(),
                actor: DETECTOR_ACTOR.into(),
                note: Some(format!(
                    "{} negative mentions from {} customers",
                    evidence.negative_mentions, evidence.distinct_customers
                )),
            };
            self.ctx.log(&envelope, &open.action_id, &entry).await;
            tracing::info!(action_id = %open.action_id, theme = %open.theme, kind = kind.as_str(), "action {}", kind.as_str());
        }
        Ok(())
    }
}

impl ThemesHandler {
    async fn still_unresolved(&self, action_id: &str) -> Result<bool, HandlerError> {
        let row = self.ctx.store.action(action_id).await.map_err(db_error)?;
        Ok(row.is_some_and(|row| row.status != closeloop_events::ActionStatus::Resolved))
    }
}

impl Handler for ThemesHandler {
    type Event = ThemeMention;

    /// Until now another instance may have counted the themes of these partitions (the
    /// key is the theme): recount from the shared store before detecting on them.
    async fn partitions_assigned(&self, partitions: &[i32]) -> Result<(), HandlerError> {
        // No transition may interleave: a resolve in between would be missed by the
        // rebuilt counts.
        let _transitions = self.ctx.transitions.of_every_theme().await;
        let settings = self.ctx.detection().detector.settings().clone();
        let (rebuilt, replayed) = DetectionState::rebuild(settings, &self.ctx.store)
            .await
            .map_err(db_error)?;
        self.ctx.detection().take_counts_of(rebuilt);
        // The rebuilt counts hold every stored mention.
        self.uncounted().clear();
        tracing::info!(
            ?partitions,
            replayed,
            "detector state rebuilt for new partitions"
        );
        Ok(())
    }

    const BATCHES: bool = true;

    async fn handle(&self, incoming: &Incoming<ThemeMention>) -> Result<(), HandlerError> {
        let row = mention_row(&incoming.envelope.data)?;
        let inserted = self
            .ctx
            .store
            .insert_mention(&row)
            .await
            .map_err(db_error)?;
        // A batch that failed may have stored it without counting it.
        let new = inserted
            || self
                .uncounted()
                .contains(&(row.feedback_id.clone(), row.theme.clone()));
        self.detect(&row.theme, &[(&row, new)], incoming.traceparent.as_deref())
            .await?;
        if new {
            self.ctx.metrics.counted(incoming.envelope.data.received_at);
        }
        Ok(())
    }

    /// The batch's mentions stored in one transaction, then counted per theme as one
    /// detector batch (any order; late ones land in their event-time buckets).
    async fn handle_batch(&self, batch: &[Incoming<ThemeMention>]) -> Result<(), HandlerError> {
        let rows = batch
            .iter()
            .map(|incoming| mention_row(&incoming.envelope.data))
            .collect::<Result<Vec<_>, _>>()?;
        let inserted = self
            .ctx
            .store
            .insert_mentions(&rows)
            .await
            .map_err(db_error)?;
        let new: Vec<bool> = {
            let mut uncounted = self.uncounted();
            // A mention twice in one batch is new at most once.
            let mut in_batch = HashSet::new();
            rows.iter()
                .zip(inserted)
                .map(|(row, inserted)| {
                    let key = (row.feedback_id.clone(), row.theme.clone());
                    let new = inserted || uncounted.contains(&key);
                    if inserted {
                        uncounted.insert(key.clone());
                    }
                    new && in_batch.insert(key)
                })
                .collect()
        };
        // Themes are independent: each theme's mentions as one batch, the themes at once.
        let mut by_theme: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, row) in rows.iter().enumerate() {
            by_theme.entry(row.theme.as_str()).or_default().push(index);
        }
        let (rows, new) = (&rows, &new);
        // Every theme runs to its end or its first failure (none is cut off mid-way).
        futures::future::join_all(by_theme.into_iter().map(|(theme, indices)| async move {
            let theme_rows: Vec<(&MentionRow, bool)> =
                indices.iter().map(|&i| (&rows[i], new[i])).collect();
            // The newest record's trace carries the action it may raise.
            let traceparent = indices
                .last()
                .and_then(|&i| batch[i].traceparent.as_deref());
            self.detect(theme, &theme_rows, traceparent).await?;
            for &index in indices.iter().filter(|&&i| new[i]) {
                self.ctx
                    .metrics
                    .counted(batch[index].envelope.data.received_at);
            }
            Ok::<_, HandlerError>(())
        }))
        .await
        .into_iter()
        .collect()
    }
}

/// The stored form of a mention; permanent error for a theme id that cannot be one.
fn mention_row(mention: &ThemeMention) -> Result<MentionRow, HandlerError> {
    check_theme(&mention.theme).map_err(HandlerError::permanent)?;
    Ok(MentionRow {
        feedback_id: mention.feedback_id.to_string(),
        theme: mention.theme.clone(),
        customer_id: mention.customer_id.clone(),
        source: mention.source.clone(),
        negative: mention.sentiment == SentimentLabel::Negative,
        excerpt: mention.excerpt.clone(),
        channel: mention.channel.as_str().to_owned(),
        touchpoint: mention.touchpoint.map(|t| t.as_str().to_owned()),
        rating: mention.rating.map(i64::from),
        nps: mention.nps.map(i64::from),
        given_at_ms: mention.given_at.timestamp_millis(),
    })
}

impl ThemesHandler {
    /// Counts stored mentions of one theme (`inserted`: new, not a replay) as one batch —
    /// mentions older than the theme's newest cost one rebuild of its counts per batch —
    /// and raises or updates the theme's action when a detector fires.
    async fn detect(
        &self,
        theme: &str,
        rows: &[(&MentionRow, bool)],
        traceparent: Option<&str>,
    ) -> Result<(), HandlerError> {
        let store = &self.ctx.store;
        // One action transition per theme at a time: a resolve arriving over HTTP must
        // not interleave with raising or updating (it clears the window this reads).
        let _transition = self.ctx.transitions.of_theme(theme).await;
        let new: Vec<&MentionRow> = rows
            .iter()
            .filter(|(_, inserted)| *inserted)
            .map(|(row, _)| *row)
            .collect();
        let (intakes, observation, latest) = {
            let mut detection = self.ctx.detection();
            if new.is_empty() {
                // Replayed records only: re-check the theme (a crash may have come
                // between storing them and raising the action).
                match detection.current(theme) {
                    Some(signal) => (Vec::new(), Observation::Active(signal), None),
                    None => return Ok(()),
                }
            } else {
                let mut uncounted = self.uncounted();
                for row in &new {
                    uncounted.remove(&(row.feedback_id.clone(), row.theme.clone()));
                }
                drop(uncounted);
                let mentions: Vec<Mention> = new
                    .iter()
                    .map(|row| Mention {
                        feedback_id: row.feedback_id.clone(),
                        customer_id: row.customer_id.clone(),
                        negative: row.negative,
                        at_ms: row.given_at_ms,
                    })
                    .collect();
                let (intakes, observation) = detection.observe_batch(theme, &mentions);
                (intakes, observation, detection.latest_episode(theme))
            }
        };
        // Late mentions inside the span of the latest episode change its evidence even
        // when the detector has nothing new to say.
        let touched = latest.as_ref().is_some_and(|episode| {
            new.iter().zip(&intakes).any(|(row, intake)| {
                *intake == Intake::Counted
                    && (episode.evidence_start_ms..=episode.window.end_ms)
                        .contains(&row.given_at_ms)
            })
        });
        for (row, intake) in new.iter().zip(&intakes) {
            match intake {
                Intake::Counted => {}
                Intake::BeyondHorizon => {
                    self.ctx.metrics.dropped("beyond_horizon");
                    // So that a restart, replaying in event time order, agrees.
                    store
                        .mark_not_counted(&row.feedback_id, &row.theme)
                        .await
                        .map_err(db_error)?;
                }
                Intake::BeforeResolution => self.ctx.metrics.dropped("before_resolution"),
            }
        }
        let signal = match observation {
            Observation::Raised(signal) | Observation::Active(signal) => signal,
            Observation::Quiet(_) if touched => {
                // An episode that is over got late mentions: its evidence is behind.
                self.ctx.detection().mark_stale(theme);
                self.publish_pending();
                return Ok(());
            }
            _ => return Ok(()),
        };
        let trigger = Firing {
            triggered_at_ms: (!new.is_empty()).then_some(signal.triggered_at_ms()),
            signal,
            traceparent,
            touched,
        };
        let outcome = self.on_triggered(theme, trigger).await;
        self.publish_pending();
        outcome
    }

    /// Reads again the evidence of every theme marked stale: the open action's, or the
    /// historical finding's, for the theme's latest episode (nothing is raised here). A
    /// theme that fails stays stale for the next round.
    pub(crate) async fn settle(&self) {
        let themes: Vec<String> = {
            let mut detection = self.ctx.detection();
            let themes: Vec<String> = detection.stale.drain().collect();
            detection.settling = themes.len();
            themes
        };
        for theme in themes {
            if let Err(error) = self.settle_theme(&theme).await {
                tracing::warn!(%theme, %error, "could not bring the evidence up to date; trying again");
                self.ctx.detection().mark_stale(&theme);
            }
            let mut detection = self.ctx.detection();
            detection.settling = detection.settling.saturating_sub(1);
        }
        self.publish_pending();
    }

    async fn settle_theme(&self, theme: &str) -> Result<(), HandlerError> {
        let _transition = self.ctx.transitions.of_theme(theme).await;
        let Some(episode) = self.ctx.detection().latest_episode(theme) else {
            return Ok(());
        };
        match self
            .ctx
            .store
            .unresolved_action(theme)
            .await
            .map_err(db_error)?
        {
            Some(open) => {
                let evidence = self.evidence(theme, &episode).await?;
                self.update(open, evidence, &episode, None).await
            }
            None if self.is_historical(&episode) => self.found_in_history(theme, &episode).await,
            None => match self.covering_action(theme).await? {
                Some(owner) if self.is_more_specific(theme, &owner.theme) => {
                    self.retitle(owner, theme, &episode, None).await
                }
                Some(owner) => self.join(owner, theme, &episode, None).await,
                None => Ok(()),
            },
        }
    }

    /// Sets the gauge of themes whose evidence awaits the settler.
    fn publish_pending(&self) {
        let pending = self.ctx.detection().evidence_pending();
        self.ctx.metrics.evidence_pending.set(pending as i64);
    }
}

/// Runs [`ThemesHandler::settle`] every [`SETTLE_EVERY`] until `stop`, or less often when
/// a round takes long: reading a theme's evidence aggregates its whole span, which under
/// heavy load (a surge of hours at thousands of mentions a second) takes long, so the
/// pause after a round is at least [`SETTLE_PAUSE_FACTOR`] times the round and the settler
/// never takes more than a tenth of the time from counting.
pub(crate) async fn settle_evidence(
    handler: ThemesHandler,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut pause = SETTLE_EVERY;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(pause) => {
                let started = std::time::Instant::now();
                handler.settle().await;
                pause = settle_pause(started.elapsed());
            }
        }
    }
}

/// How much longer than a settling round the pause after it is, at least.
const SETTLE_PAUSE_FACTOR: u32 = 9;

/// The pause after a settling round that took `round`.
fn settle_pause(round: std::time::Duration) -> std::time::Duration {
    SETTLE_EVERY.max(round * SETTLE_PAUSE_FACTOR)
}

#[cfg(test)]
mod tests {
    use closeloop_bus::{BusMetrics, EmbeddedBroker, Publisher, PublisherConfig, TopicSpec};
    use closeloop_events::{Channel, Language};

    use super::*;
    use crate::context::testing::context_without_broker;

    #[test]
    fn settling_takes_at_most_a_tenth_of_the_time() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(settle_pause(ms(5)), SETTLE_EVERY);
        assert_eq!(settle_pause(ms(400)), ms(3_600));
        let round = ms(700);
        let share = round.as_secs_f64() / (round + settle_pause(round)).as_secs_f64();
        assert!(share <= 0.1 + 1e-9, "{share}");
    }

    fn incoming(n: usize, given_at: chrono::DateTime<Utc>) -> Incoming<ThemeMention> {
        Incoming {
            envelope: Envelope::new(ThemeMention {
                feedback_id: Uuid::now_v7(),
                theme: "delivery_time".into(),
                customer_id: format!("customer-{n}"),
                source: "shopdesk".into(),
                channel: Channel::Review,
                touchpoint: None,
                language: Language::En,
                sentiment: SentimentLabel::Negative,
                score: -0.8,
                rating: Some(1),
                nps: None,
                excerpt: "three weeks for a parcel".into(),
                given_at,
                received_at: Some(Utc::now()),
            }),
            topic: closeloop_events::topics::FEEDBACK_THEMES.into(),
            partition: 0,
            offset: n as i64,
            traceparent: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_failed_to_raise_raises_when_retried_and_counts_once() {
        let failing = Arc::new(context_without_broker().await);
        let handler = ThemesHandler::new(failing.clone());
        let start = Utc::now() - chrono::Duration::minutes(5);
        let batch: Vec<_> = (0..30)
            .map(|n| incoming(n, start + chrono::Duration::seconds(n as i64)))
            .collect();
        // The theme's mentions are counted as one batch and the detector fires; the raise
        // cannot be announced (no broker), so the batch fails after it was counted.
        handler.handle_batch(&batch).await.expect_err("no broker");
        let counted = |ctx: &Context| {
            ctx.detection()
                .stats("delivery_time")
                .map_or(0, |stats| stats.window.negative_mentions)
        };
        assert_eq!(counted(&failing), 30, "counted before the raise failed");

        // The retry, with the broker back (same store, same counts so far).
        let broker = EmbeddedBroker::start(1, &TopicSpec::all(1)).expect("broker");
        let publisher = Publisher::new(
            &PublisherConfig::new(broker.bootstrap_servers()),
            BusMetrics::unregistered(),
        )
        .expect("publisher");
        let detection = std::mem::replace(
            &mut *failing.detection(),
            DetectionState::new(DetectorSettings::default()),
        );
        let working = Arc::new(Context {
            store: failing.store.clone(),
            publisher,
            detection: std::sync::Mutex::new(detection),
            ..context_without_broker().await
        });
        let retried = ThemesHandler {
            ctx: working.clone(),
            uncounted: handler.uncounted.clone(),
        };
        retried.handle_batch(&batch).await.expect("retried");
        assert_eq!(counted(&working), 30, "every mention counted once");
        assert!(
            working
                .store
                .unresolved_action("delivery_time")
                .await
                .unwrap()
                .is_some(),
            "the action was raised"
        );
        retried.handle_batch(&batch).await.expect("a replay");
        assert_eq!(counted(&working), 30, "a replay counts nothing");

        // A mention twice in one batch (and a new one beside it) counts once.
        let fresh = incoming(30, start + chrono::Duration::seconds(40));
        retried
            .handle_batch(&[fresh.clone(), fresh])
            .await
            .expect("handled");
        assert_eq!(counted(&working), 31, "the repeat counted once");
    }

    #[test]
    fn theme_ids_are_checked() {
        assert!(check_theme("delivery_time").is_ok());
        assert!(check_theme("").is_err());
        assert!(check_theme("Delivery").is_err());
        assert!(check_theme(&"a".repeat(65)).is_err());
    }

    #[test]
    fn evidence_is_read_at_once_for_news_and_later_when_only_behind() {
        let mark = |action_id: &str, to_ms: i64, customers: u32| EvidenceMark {
            action_id: action_id.into(),
            from_ms: 0,
            to_ms,
            customers,
        };
        let mut state = DetectionState::new(DetectorSettings::default());
        assert!(state.is_news("t", &mark("a1", 10, 3)), "nothing read yet");
        state.reported("t", mark("a1", 10, 3));
        assert!(!state.is_news("t", &mark("a1", 10, 3)));
        assert!(!state.is_behind("t", &mark("a1", 10, 3)));
        assert!(
            state.is_news("t", &mark("a1", 10, 4)),
            "one more of few customers"
        );
        let fired_again = mark("a1", 11, 3);
        assert!(!state.is_news("t", &fired_again) && state.is_behind("t", &fired_again));
        assert!(state.is_news("t", &mark("a2", 10, 3)), "another action");
        state.reported("t", mark("a1", 10, 40));
        assert!(
            !state.is_news("t", &mark("a1", 10, 43)),
            "a tenth more is needed"
        );
        assert!(state.is_news("t", &mark("a1", 10, 44)));

        state.mark_stale("t");
        state.mark_stale("t");
        assert_eq!(state.evidence_pending(), 1);
        state.reported("t", mark("a1", 12, 40));
        assert_eq!(state.evidence_pending(), 0, "reading it settles it");
        state.resolved("t", 10);
        assert!(
            state.is_news("t", &mark("a1", 12, 40)),
            "a resolution forgets what was read"
        );
    }
}
