//! The state of one theme: bucketed counts by event time, the surge window sliding over
//! them, the learned baseline, the recurrence periods and the hysteresis.
//!
//! Everything is driven by event time only. The theme's *watermark* is the newest event
//! time seen; a mention older than `watermark - history_horizon` is beyond the horizon and
//! dropped. A bucket leaves the surge window when the window slides past it and is then
//! *folded* into the baseline, so the baseline never includes the window it is compared
//! with.
//!
//! Arrival order does not matter: the pipeline does not keep event-time order (a backlog,
//! a replay or an import delivers old mentions after new ones). The theme keeps the
//! mentions within the horizon in a log sorted by a total order, and its derived state
//! ([`Counting`]: buckets, window, baseline, periods, hysteresis) is always the result of
//! counting that log in order, starting from a checkpoint (the count of the mentions that
//! left the horizon). A mention that sorts after everything seen is counted
//! incrementally; one that sorts before is inserted and the derived state is rebuilt by
//! replaying the log from the checkpoint. Every state is thus a function of the set of
//! mentions (and the resolution), not of the order they came in.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::config::DetectorConfig;
use crate::poisson;
use crate::{Intake, Mention, Observation, Peak, Signal, Trigger, WindowStats};

/// How far one observed season moves a seasonal slot towards it: a week-old day still
/// weighs 0.7^7 ≈ 8%, so the profile adapts within a week without following one odd day.
const SEASONAL_WEIGHT: f64 = 0.3;
/// Variance of an exponentially weighted mean of Poisson counts, per unit of its mean:
/// w / (2 - w).
const SEASONAL_VARIANCE_FACTOR: f64 = SEASONAL_WEIGHT / (2.0 - SEASONAL_WEIGHT);

/// A customer as the counts know them: a 64-bit hash of the id. Counting a mention
/// touches up to four per-customer maps and sets, and snapshots copy them; a number
/// instead of a copy of the id string each time made counting markedly cheaper. Two ids
/// share a key with probability about n²/2⁶⁵ for n customers of a theme (below 10⁻⁷ for
/// a million): a distinct-customer count one too low, at worst.
type CustomerKey = u64;

/// Maps and sets of customer keys hash with foldhash: the keys are hashes already, so
/// SipHash over them again on every count (and every replayed count) bought nothing.
type CustomerHasher = foldhash::fast::RandomState;
type HashMap<K, V> = std::collections::HashMap<K, V, CustomerHasher>;
type HashSet<K> = std::collections::HashSet<K, CustomerHasher>;

fn customer_key(customer_id: &str) -> CustomerKey {
    // SipHash with fixed keys: the same key in every process and every replay.
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(customer_id, &mut hasher);
    std::hash::Hasher::finish(&hasher)
}

/// Counts of some mentions: all of them, the negative ones, negatives per customer.
#[derive(Debug, Default, Clone)]
struct Counts {
    mentions: u32,
    negative: u32,
    per_customer: HashMap<CustomerKey, u32>,
}

impl Counts {
    fn add(&mut self, mention: &Mention, customer: CustomerKey) {
        self.mentions += 1;
        if mention.negative {
            self.negative += 1;
            *self.per_customer.entry(customer).or_default() += 1;
        }
    }

    /// Negative mentions with each customer counted at most `cap` times.
    fn capped(&self, cap: u32) -> u32 {
        self.per_customer.values().map(|&n| n.min(cap)).sum()
    }
}

/// One bucket: `all` feeds the baseline; `windowed` is the part the surge window
/// currently counts (empty again after a resolution: those complaints were answered).
#[derive(Debug, Default, Clone)]
struct Bucket {
    all: Counts,
    windowed: Counts,
}

/// The surge window's running totals, kept incrementally so an observation is O(1).
#[derive(Debug, Default, Clone)]
struct Window {
    counts: Counts,
    capped: u32,
}

impl Window {
    fn add(&mut self, mention: &Mention, customer: CustomerKey, cap: u32) {
        self.counts.add(mention, customer);
        if mention.negative && self.counts.per_customer[&customer] <= cap {
            self.capped += 1;
        }
    }

    fn remove(&mut self, leaving: &Counts, cap: u32) {
        self.counts.mentions -= leaving.mentions;
        self.counts.negative -= leaving.negative;
        for (customer, &n) in &leaving.per_customer {
            if let Some(total) = self.counts.per_customer.get_mut(customer) {
                let before = (*total).min(cap);
                *total -= n.min(*total);
                self.capped -= before - (*total).min(cap);
                if *total == 0 {
                    self.counts.per_customer.remove(customer);
                }
            }
        }
    }
}

/// The theme's normal level of (capped) negative mentions per bucket.
#[derive(Debug, Default, Clone)]
struct Baseline {
    /// Exponentially weighted mean over recent buckets.
    recent: f64,
    /// Per bucket-of-the-season mean; `None` until that time of the season was seen.
    seasonal: Vec<Option<f64>>,
    /// The next bucket index to fold.
    next_fold: i64,
    /// Buckets folded so far (for the statistics).
    folded: u64,
}

/// The theme's latest active episode since the last resolution: kept after it ended, so
/// that a replay can tell whether late mentions made a (past) episode appear or grow.
#[derive(Debug, Clone, PartialEq)]
struct Episode {
    since_ms: i64,
    last_fired_ms: i64,
    /// The window when a detector last fired (its `end_ms` is `last_fired_ms`): what the
    /// trigger's numbers describe, the same for any arrival order.
    fired: WindowStats,
    trigger: Trigger,
    evidence_start_ms: i64,
    /// The largest window seen while the episode was open: the evidence, which unlike
    /// the window at the moment of raising does not depend on arrival order.
    peak: Peak,
    /// Still active (a detector fired within the cooldown).
    open: bool,
}

impl Episode {
    fn signal(&self) -> Signal {
        Signal {
            trigger: self.trigger.clone(),
            window: self.fired.clone(),
            evidence_start_ms: self.evidence_start_ms,
            active_since_ms: self.since_ms,
            peak: self.peak.clone(),
        }
    }
}

/// A mention in the theme's log, ordered by (event time, feedback, customer): a total
/// order, so that mentions of the same instant are counted in the same order whatever
/// order they arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logged {
    mention: Mention,
    /// The mention's customer key, computed once: a replay counts the mention again.
    customer: CustomerKey,
}

impl Logged {
    fn new(mention: &Mention) -> Self {
        Logged {
            customer: customer_key(&mention.customer_id),
            mention: mention.clone(),
        }
    }
}

impl Ord for Logged {
    fn cmp(&self, other: &Self) -> Ordering {
        counting_order(&self.mention, &other.mention)
    }
}

/// The total order mentions are counted in: event time, then feedback, customer and
/// sentiment, so that ties at one instant do not depend on arrival order.
fn counting_order(a: &Mention, b: &Mention) -> Ordering {
    (a.at_ms, &a.feedback_id, &a.customer_id, a.negative).cmp(&(
        b.at_ms,
        &b.feedback_id,
        &b.customer_id,
        b.negative,
    ))
}

impl PartialOrd for Logged {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Read-only view of a theme for the ops API.
#[derive(Debug, Clone, PartialEq)]
pub struct ThemeStats {
    pub watermark_ms: i64,
    pub window: WindowStats,
    /// The learned level, in negative mentions per window (before the floor).
    pub baseline_per_window: f64,
    /// Distinct complaining customers per recurrence period, oldest first, as
    /// (period start, customers).
    pub periods: Vec<(i64, u32)>,
    /// Whether the theme is raised (in hysteresis) and since when (event time).
    pub active_since_ms: Option<i64>,
    /// Mentions dropped because they were older than the watermark minus the horizon.
    pub dropped_beyond_horizon: u64,
    pub resolved_at_ms: Option<i64>,
}

/// One theme: the sorted log of its mentions within the horizon, the count of the ones
/// that left it, and the derived state of all of them.
#[derive(Debug)]
pub(crate) struct ThemeState {
    /// Mentions within the horizon (`watermark - history_horizon` and newer), sorted.
    log: BTreeSet<Logged>,
    /// The derived state of the mentions that left the log; `None` until one did (a
    /// replay then starts from the oldest mention in the log).
    checkpoint: Option<Counting>,
    /// The derived state of the checkpoint plus the log.
    counting: Counting,
    /// Derived states part-way through the log, where a replay can start.
    snapshots: Snapshots,
    resolved_at: Option<i64>,
    dropped_beyond_horizon: u64,
}

/// A snapshot of the derived state is taken every this many mentions counted...
const SNAPSHOT_EVERY: usize = 512;
/// ...and at most this many are kept; beyond that the older half is thinned out, so they
/// are dense where late mentions usually land (just behind the newest) and sparse further
/// back.
const MAX_SNAPSHOTS: usize = 32;

/// Where a replay can start instead of the checkpoint. Without them every late mention
/// would replay the theme's whole log (up to the horizon, days of mentions): a stream
/// that is slightly out of order everywhere, as the pipeline delivers it, would cost time
/// growing with the square of the log.
#[derive(Debug, Default)]
struct Snapshots {
    /// (the first mention not counted in it, the derived state of every mention of the
    /// checkpoint and the log before that one), in log order.
    taken: Vec<(Logged, Counting)>,
    /// Mentions counted since the last snapshot.
    counted: usize,
}

impl Snapshots {
    /// `counting` is about to count `next`: every [`SNAPSHOT_EVERY`] mentions, keep it.
    fn before(&mut self, next: &Logged, counting: &Counting) {
        self.counted += 1;
        if self.counted < SNAPSHOT_EVERY {
            return;
        }
        self.counted = 0;
        self.taken.push((next.clone(), counting.clone()));
        if self.taken.len() > MAX_SNAPSHOTS {
            let older_half = self.taken.len() / 2;
            let mut index = 0;
            self.taken.retain(|_| {
                index += 1;
                index > older_half || index % 2 == 0
            });
        }
    }

    /// The latest snapshot that does not count `late` or anything after it — still
    /// right with `late` inserted into the log — after forgetting the ones that are not.
    fn restore(&mut self, late: &Logged) -> Option<(Logged, Counting)> {
        let valid = self.taken.partition_point(|(next, _)| next <= late);
        self.taken.truncate(valid);
        self.counted = 0;
        self.taken.last().cloned()
    }

    /// Forgets the snapshots from before `first` (the checkpoint covers those mentions).
    fn forget_before(&mut self, first: Option<&Logged>) {
        match first {
            Some(first) => self.taken.retain(|(next, _)| next >= first),
            None => self.taken.clear(),
        }
    }

    fn clear(&mut self) {
        self.taken.clear();
        self.counted = 0;
    }
}

/// The derived state: what counting mentions in event-time order gives.
#[derive(Debug, Clone)]
struct Counting {
    watermark: i64,
    resolved_at: Option<i64>,
    buckets: BTreeMap<i64, Bucket>,
    /// The oldest bucket index the window counts (buckets below it have left).
    window_first: i64,
    window: Window,
    baseline: Baseline,
    /// Distinct negative customers per recurrence period index (the last `n` only).
    periods: BTreeMap<i64, HashSet<CustomerKey>>,
    episode: Option<Episode>,
}

/// What an observation changes about the theme's episode, to tell a new, moved or grown
/// one from one already reported: its start, its evidence span and its peak.
type EpisodeMark = Option<(i64, i64, i64, Peak)>;

impl ThemeState {
    /// A theme whose first mention is at `at_ms`.
    pub(crate) fn new(config: &DetectorConfig, at_ms: i64) -> Self {
        Self {
            log: BTreeSet::new(),
            checkpoint: None,
            counting: Counting::new(config, at_ms, None),
            snapshots: Snapshots::default(),
            resolved_at: None,
            dropped_beyond_horizon: 0,
        }
    }

    pub(crate) fn resolved_at(&self) -> Option<i64> {
        self.resolved_at
    }

    /// Counts `mentions` (any order) and applies the detectors, replaying the log at most
    /// once. Returns how each mention was taken, in the order given, and the theme's
    /// state after them: `Raised` when the batch started a new episode (or grew a past
    /// one's evidence through late mentions), `Active` while the episode goes on, else
    /// `Quiet`.
    pub(crate) fn observe_batch(
        &mut self,
        config: &DetectorConfig,
        mentions: &[Mention],
    ) -> (Vec<Intake>, Observation) {
        let before = self.episode_mark();
        let mut order: Vec<usize> = (0..mentions.len()).collect();
        // In event-time order, so a batch holding old and new mentions counts the old
        // ones before the new ones move the horizon past them.
        order.sort_by(|&a, &b| counting_order(&mentions[a], &mentions[b]));
        let mut intakes = vec![Intake::Counted; mentions.len()];
        // The earliest mention that sorted before what was counted: the replay's start.
        let mut earliest_late: Option<Logged> = None;
        for index in order {
            let mention = &mentions[index];
            if mention.at_ms < self.horizon_start(config) {
                self.dropped_beyond_horizon += 1;
                intakes[index] = Intake::BeyondHorizon;
                continue;
            }
            if self.resolved_at.is_some_and(|at| mention.at_ms <= at) {
                intakes[index] = Intake::BeforeResolution;
            }
            let logged = Logged::new(mention);
            let in_order = self.log.last().is_none_or(|last| &logged > last);
            if self.log.contains(&logged) {
                continue; // seen already: counted once
            }
            if in_order && earliest_late.is_none() {
                self.snapshots.before(&logged, &self.counting);
                self.counting.apply(config, &logged);
            } else if earliest_late.is_none() {
                earliest_late = Some(logged.clone());
            }
            self.log.insert(logged);
        }
        if let Some(late) = earliest_late {
            self.replay(config, Some(&late));
        }
        self.leave_horizon(config);
        (intakes, self.outcome(config, before))
    }

    fn horizon_start(&self, config: &DetectorConfig) -> i64 {
        self.counting
            .watermark
            .saturating_sub(config.history_horizon_ms)
    }

    /// Rebuilds the derived state from the sorted log after `late` (the earliest mention
    /// inserted out of order) was inserted: from the latest snapshot before it, or from
    /// the checkpoint (`late` unknown, or no snapshot before it).
    fn replay(&mut self, config: &DetectorConfig, late: Option<&Logged>) {
        let restored = late.and_then(|late| self.snapshots.restore(late));
        let (mut counting, from) = match restored {
            Some((next, counting)) => (counting, Bound::Included(next)),
            None => {
                self.snapshots.clear();
                let counting = match (&self.checkpoint, self.log.first()) {
                    (Some(checkpoint), _) => checkpoint.clone(),
                    (None, Some(first)) => {
                        Counting::new(config, first.mention.at_ms, self.resolved_at)
                    }
                    (None, None) => return,
                };
                (counting, Bound::Unbounded)
            }
        };
        for logged in self.log.range((from, Bound::Unbounded)) {
            self.snapshots.before(logged, &counting);
            counting.apply(config, logged);
        }
        self.counting = counting;
    }

    /// Moves the mentions older than the horizon from the log into the checkpoint: no
    /// mention that sorts before them is accepted any more.
    fn leave_horizon(&mut self, config: &DetectorConfig) {
        let start = self.horizon_start(config);
        while self
            .log
            .first()
            .is_some_and(|first| first.mention.at_ms < start)
        {
            let Some(logged) = self.log.pop_first() else {
                break;
            };
            self.checkpoint
                .get_or_insert_with(|| {
                    Counting::new(config, logged.mention.at_ms, self.resolved_at)
                })
                .apply(config, &logged);
        }
        self.snapshots.forget_before(self.log.first());
    }

    fn episode_mark(&self) -> EpisodeMark {
        let episode = self.counting.episode.as_ref()?;
        Some((
            episode.since_ms,
            episode.evidence_start_ms,
            episode.last_fired_ms,
            episode.peak.clone(),
        ))
    }

    fn outcome(&self, config: &DetectorConfig, before: EpisodeMark) -> Observation {
        let window = self.counting.window_stats(config);
        let Some(episode) = &self.counting.episode else {
            return Observation::Quiet(window);
        };
        let unchanged = before.as_ref().is_some_and(|(since, start, fired, peak)| {
            (*since, *start, *fired)
                == (
                    episode.since_ms,
                    episode.evidence_start_ms,
                    episode.last_fired_ms,
                )
                && *peak == episode.peak
        });
        match before {
            Some((since, ..)) if since == episode.since_ms && episode.open => {
                Observation::Active(episode.signal())
            }
            Some(_) if unchanged => Observation::Quiet(window),
            // New, moved by late mentions, or a past episode whose evidence grew.
            _ => Observation::Raised(episode.signal()),
        }
    }

    /// A resolution learnt late (made on another instance): resolves, then makes sure
    /// `mentions` (the theme's stored mentions given after it) are in the log, and
    /// rebuilds. Returns the signal if the theme is active after that.
    pub(crate) fn recount(
        &mut self,
        config: &DetectorConfig,
        mentions: &[Mention],
    ) -> Option<Signal> {
        let start = self.horizon_start(config);
        let mut earliest_missing: Option<Logged> = None;
        for mention in mentions.iter().filter(|m| m.at_ms >= start) {
            let logged = Logged::new(mention);
            if !self.log.contains(&logged) {
                if earliest_missing
                    .as_ref()
                    .is_none_or(|earliest| &logged < earliest)
                {
                    earliest_missing = Some(logged.clone());
                }
                self.log.insert(logged);
            }
        }
        if let Some(missing) = earliest_missing {
            self.replay(config, Some(&missing));
            self.leave_horizon(config);
        }
        self.current()
    }

    /// The signal if the theme is active, without new input.
    pub(crate) fn current(&self) -> Option<Signal> {
        self.counting
            .episode
            .as_ref()
            .filter(|e| e.open)
            .map(Episode::signal)
    }

    /// The signal of the theme's latest episode since its last resolution, open or ended.
    pub(crate) fn latest_episode(&self) -> Option<Signal> {
        self.counting.episode.as_ref().map(Episode::signal)
    }

    /// The theme's action was resolved at `at_ms` (a time the customers can compare with
    /// when they complained): mentions given up to then feed only the baseline, the
    /// window and the recurrence periods count only later ones, and the theme is quiet
    /// until it fires again. The resolution is a parameter of the state, so a replay
    /// applies it again. An older resolution than one already known changes nothing.
    pub(crate) fn resolve(&mut self, config: &DetectorConfig, at_ms: i64) {
        if self.resolved_at.is_some_and(|known| known >= at_ms) {
            return;
        }
        self.resolved_at = Some(at_ms);
        if let Some(checkpoint) = &mut self.checkpoint {
            checkpoint.resolve(at_ms);
        }
        self.counting.resolve(at_ms);
        // The snapshots counted without the resolution.
        self.snapshots.clear();
        // Mentions after the resolution that were counted before it (and cleared) count
        // again, as they would had the resolution been known first.
        if self
            .log
            .last()
            .is_some_and(|last| last.mention.at_ms > at_ms)
        {
            self.replay(config, None);
        }
    }

    pub(crate) fn stats(&self, config: &DetectorConfig) -> ThemeStats {
        let counting = &self.counting;
        ThemeStats {
            watermark_ms: counting.watermark,
            window: counting.window_stats(config),
            baseline_per_window: counting.baseline.recent * config.window_buckets() as f64,
            periods: counting
                .periods
                .iter()
                .map(|(&index, customers)| {
                    (index * config.recurrence.period_ms, customers.len() as u32)
                })
                .collect(),
            active_since_ms: self.current().map(|s| s.active_since_ms),
            dropped_beyond_horizon: self.dropped_beyond_horizon,
            resolved_at_ms: self.resolved_at,
        }
    }
}

impl Counting {
    /// The state before the first mention, at `at_ms`.
    fn new(config: &DetectorConfig, at_ms: i64, resolved_at: Option<i64>) -> Self {
        let bucket = bucket_of(config, at_ms);
        let season_slots = if config.surge.season_ms > 0 {
            (config.surge.season_ms / config.bucket_ms) as usize
        } else {
            0
        };
        Self {
            watermark: at_ms,
            resolved_at,
            buckets: BTreeMap::new(),
            window_first: bucket - config.window_buckets() + 1,
            window: Window::default(),
            baseline: Baseline {
                seasonal: vec![None; season_slots],
                next_fold: bucket,
                ..Baseline::default()
            },
            periods: BTreeMap::new(),
            episode: None,
        }
    }

    /// Counts a mention that is not older than any counted so far.
    fn apply(&mut self, config: &DetectorConfig, logged: &Logged) {
        let (mention, customer) = (&logged.mention, logged.customer);
        if mention.at_ms > self.watermark {
            self.advance(config, mention.at_ms);
        }
        if self.resolved_at.is_some_and(|at| mention.at_ms <= at) {
            // Answered by the resolution: part of the theme's history (the baseline),
            // not of the current incident.
            self.buckets
                .entry(bucket_of(config, mention.at_ms))
                .or_default()
                .all
                .add(mention, customer);
            return;
        }
        self.count(config, mention, customer);
        self.evaluate(config);
    }

    /// Moves the watermark to `to_ms`: slides the window, folds the buckets that left
    /// it into the baseline and forgets recurrence periods that fell out. (A late
    /// mention for a folded bucket rebuilds the state by a replay, so nothing waits for
    /// lateness here.)
    fn advance(&mut self, config: &DetectorConfig, to_ms: i64) {
        self.watermark = to_ms;
        let current = bucket_of(config, to_ms);
        let first = current - config.window_buckets() + 1;
        let cap = config.surge.per_customer_cap;
        if first > self.window_first {
            for (_, bucket) in self.buckets.range(self.window_first..first) {
                self.window.remove(&bucket.windowed, cap);
            }
            self.window_first = first;
        }
        self.fold_until(config, first);
        let oldest_period = period_of(config, to_ms) - i64::from(config.recurrence.n) + 1;
        self.periods = self.periods.split_off(&oldest_period);
    }
    fn fold_until(&mut self, config: &DetectorConfig, limit: i64) {
        let alpha =
            1.0 - 0.5f64.powf(config.bucket_ms as f64 / config.surge.baseline_half_life_ms as f64);
        while self.baseline.next_fold < limit {
            let start = self.baseline.next_fold;
            let present = self.buckets.range(start..limit).next().map(|(&i, _)| i);
            let gap_end = present.unwrap_or(limit);
            if gap_end > start {
                self.fold_empty(alpha, start, gap_end - start);
            }
            if let Some(index) = present {
                let counted = self
                    .buckets
                    .remove(&index)
                    .map(|b| b.all.capped(config.surge.per_customer_cap))
                    .unwrap_or(0);
                self.fold_one(alpha, index, f64::from(counted));
                self.baseline.next_fold = index + 1;
            } else {
                self.baseline.next_fold = limit;
            }
        }
    }

    fn fold_one(&mut self, alpha: f64, index: i64, value: f64) {
        let baseline = &mut self.baseline;
        baseline.recent += alpha * (value - baseline.recent);
        if !baseline.seasonal.is_empty() {
            let slot = index.rem_euclid(baseline.seasonal.len() as i64) as usize;
            let seasonal = &mut baseline.seasonal[slot];
            *seasonal = Some(match *seasonal {
                Some(mean) => mean + SEASONAL_WEIGHT * (value - mean),
                None => value,
            });
        }
        baseline.folded += 1;
    }

    /// Folds `count` buckets without mentions from `start` on, in closed form: a long
    /// silence costs the same as a short one.
    fn fold_empty(&mut self, alpha: f64, start: i64, count: i64) {
        let baseline = &mut self.baseline;
        baseline.recent *= (1.0 - alpha).powf(count as f64);
        let slots = baseline.seasonal.len() as i64;
        if slots > 0 {
            let cycles = count / slots;
            let rest = count % slots;
            for offset in 0..slots.min(count) {
                let slot = (start + offset).rem_euclid(slots) as usize;
                let folds = cycles + i64::from(offset < rest);
                let keep = (1.0 - SEASONAL_WEIGHT).powf(folds as f64);
                let seasonal = &mut baseline.seasonal[slot];
                *seasonal = Some(seasonal.map_or(0.0, |mean| mean * keep));
            }
        }
        baseline.folded += count as u64;
    }

    fn count(&mut self, config: &DetectorConfig, mention: &Mention, customer: CustomerKey) {
        let index = bucket_of(config, mention.at_ms);
        let bucket = self.buckets.entry(index).or_default();
        bucket.all.add(mention, customer);
        if index >= self.window_first {
            bucket.windowed.add(mention, customer);
            self.window
                .add(mention, customer, config.surge.per_customer_cap);
        }
        if mention.negative {
            let period = period_of(config, mention.at_ms);
            let oldest = period_of(config, self.watermark) - i64::from(config.recurrence.n) + 1;
            if period >= oldest {
                self.periods.entry(period).or_default().insert(customer);
            }
        }
    }

    /// The expected negative mentions in the current window: per bucket the larger of
    /// the recent level and the seasonal level for that time of the season (busy
    /// mornings are normal if every morning is busy), the newest bucket pro rata, plus
    /// the seasonal estimate's standard error, and never below the configured floor.
    fn expected(&self, config: &DetectorConfig) -> f64 {
        let current = bucket_of(config, self.watermark);
        let elapsed =
            (self.watermark - current * config.bucket_ms + 1) as f64 / config.bucket_ms as f64;
        let slots = self.baseline.seasonal.len() as i64;
        let mut expected = 0.0;
        let mut seasonal_variance = 0.0;
        for index in self.window_first..=current {
            let seasonal = if slots > 0 {
                self.baseline.seasonal[index.rem_euclid(slots) as usize].unwrap_or(0.0)
            } else {
                0.0
            };
            let share = if index == current { elapsed } else { 1.0 };
            if seasonal > self.baseline.recent {
                expected += seasonal * share;
                seasonal_variance += seasonal * share * SEASONAL_VARIANCE_FACTOR;
            } else {
                expected += self.baseline.recent * share;
            }
        }
        // A seasonal level is learnt from one observation per season, so it is noisy:
        // one standard error on top keeps a low estimate from reading as a surge.
        (expected + seasonal_variance.sqrt()).max(config.surge.min_baseline)
    }

    fn window_stats(&self, config: &DetectorConfig) -> WindowStats {
        let mut window = self.window_counts(config);
        with_p_value(&mut window);
        window
    }

    /// [`Self::window_stats`] with the p-value left at 1: the Poisson tail is most of an
    /// evaluation's cost, and every counted (or replayed) mention is evaluated, so it is
    /// computed only for a window that could fire or is kept ([`with_p_value`]).
    fn window_counts(&self, config: &DetectorConfig) -> WindowStats {
        WindowStats {
            start_ms: self.window_first * config.bucket_ms,
            end_ms: self.watermark,
            mentions: self.window.counts.mentions,
            negative_mentions: self.window.counts.negative,
            counted_negative_mentions: self.window.capped,
            distinct_customers: self.window.counts.per_customer.len() as u32,
            expected_negative: self.expected(config),
            p_value: 1.0,
        }
    }

    /// Whether the window surges; sets its p-value when that decides it.
    fn surge(&self, config: &DetectorConfig, window: &mut WindowStats) -> Option<Trigger> {
        let surge = &config.surge;
        let could_fire = surge.enabled
            && window.counted_negative_mentions >= surge.min_negative_mentions
            && window.distinct_customers >= config.min_distinct_customers
            && f64::from(window.counted_negative_mentions)
                >= surge.min_ratio * window.expected_negative;
        if !could_fire {
            return None;
        }
        with_p_value(window);
        (window.p_value <= surge.max_p_value).then_some(Trigger::Surge {
            expected: window.expected_negative,
            p_value: window.p_value,
        })
    }

    /// Returns the trigger and where its evidence starts (the oldest period counted).
    fn recurrence(&self, config: &DetectorConfig) -> Option<(Trigger, i64)> {
        let rule = &config.recurrence;
        if !rule.enabled {
            return None;
        }
        let above = self
            .periods
            .values()
            .filter(|customers| customers.len() >= rule.floor as usize)
            .count() as u32;
        if above < rule.k {
            return None;
        }
        let distinct: HashSet<&CustomerKey> = self.periods.values().flatten().collect();
        if (distinct.len() as u32) < config.min_distinct_customers {
            return None;
        }
        let oldest = period_of(config, self.watermark) - i64::from(rule.n) + 1;
        Some((
            Trigger::Recurrence {
                periods_above_floor: above,
                periods: rule.n,
                floor: rule.floor,
                distinct_customers: distinct.len() as u32,
            },
            oldest * rule.period_ms,
        ))
    }

    /// Applies both detectors and the hysteresis to the current state.
    fn evaluate(&mut self, config: &DetectorConfig) {
        let mut window = self.window_counts(config);
        let fired = match self.surge(config, &mut window) {
            Some(trigger) => Some((trigger, window.start_ms)),
            // The episode keeps the window it fired with, p-value included.
            None => self
                .recurrence(config)
                .inspect(|_| with_p_value(&mut window)),
        };
        let now = self.watermark;
        let open = self.episode.as_mut().filter(|episode| episode.open);
        match (fired, open) {
            (Some((trigger, evidence_start_ms)), None) => {
                self.episode = Some(Episode {
                    since_ms: now,
                    last_fired_ms: now,
                    fired: window.clone(),
                    trigger,
                    evidence_start_ms,
                    peak: Peak::of(&window),
                    open: true,
                });
            }
            (Some((trigger, evidence_start_ms)), Some(episode)) => {
                episode.last_fired_ms = now;
                episode.fired = window.clone();
                episode.trigger = trigger;
                episode.evidence_start_ms = evidence_start_ms;
                episode.peak.grow(&window);
            }
            (None, Some(episode)) if now - episode.last_fired_ms < config.cooldown_ms => {
                episode.peak.grow(&window);
            }
            (None, Some(episode)) => episode.open = false,
            (None, None) => {}
        }
    }

    /// See [`ThemeState::resolve`]: the window and the periods forget everything, the
    /// episode ends; the baseline keeps its history (it describes the theme, not the
    /// incident).
    fn resolve(&mut self, at_ms: i64) {
        self.resolved_at = Some(at_ms);
        for bucket in self.buckets.values_mut() {
            bucket.windowed = Counts::default();
        }
        self.window = Window::default();
        self.periods.clear();
        self.episode = None;
    }
}

/// Sets the window's p-value: how likely its expected level gives its counted negative
/// mentions or more.
fn with_p_value(window: &mut WindowStats) {
    window.p_value = poisson::upper_tail(
        u64::from(window.counted_negative_mentions),
        window.expected_negative,
    );
}

fn bucket_of(config: &DetectorConfig, at_ms: i64) -> i64 {
    at_ms.div_euclid(config.bucket_ms)
}

fn period_of(config: &DetectorConfig, at_ms: i64) -> i64 {
    at_ms.div_euclid(config.recurrence.period_ms)
}
