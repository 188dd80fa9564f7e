//! An action's evidence: what the detector saw, read back from the stored mentions of the
//! span the trigger covers (the surge window, or the recurrence periods), after the
//! theme's last resolution. The numbers an operator judges the action by — counts over
//! time, negative share, distinct customers, channels and touchpoints, rating and NPS —
//! and a handful of excerpts that show the problem in the customers' words.

use closeloop_events::text::excerpt;
use std::collections::{BTreeMap, HashSet};

use closeloop_events::{Evidence, EvidenceBucket, EvidenceCounts, EvidenceExcerpt};
use closeloop_store::sqlx;
use closeloop_trend::{DetectorConfig, Signal, Trigger};
use uuid::Uuid;

use crate::action::time;
use crate::store::{ExcerptRow, SeriesRow, SliceRow, Span, TrendsStore};

/// At most this many feedback ids in an action's evidence: enough to follow up on, small
/// enough for one Kafka record.
pub const MAX_EVIDENCE_IDS: usize = 500;
/// Excerpts quoted in an action's evidence.
pub const MAX_EXCERPTS: usize = 5;
/// How many recent negative mentions are read to choose the excerpts from.
const EXCERPT_CANDIDATES: i64 = 100;
/// Excerpts are cut to this many characters; categorise already sends short ones.
const MAX_EXCERPT_CHARS: usize = 280;
/// The series has at most about this many points; longer spans get coarser buckets.
const MAX_SERIES_POINTS: i64 = 48;

/// What was queried for one piece of evidence.
#[derive(Debug, Default)]
pub struct Gathered {
    pub slices: Vec<SliceRow>,
    pub distinct_customers: i64,
    pub negative_ids: Vec<String>,
    pub series: Vec<SeriesRow>,
    pub series_bucket_ms: i64,
    pub candidates: Vec<ExcerptRow>,
}

/// The span the evidence of `signal` covers and the bucket its series uses.
pub fn span_of<'a>(
    theme: &'a str,
    signal: &Signal,
    config: &DetectorConfig,
    after_ms: i64,
) -> (Span<'a>, i64) {
    let span = Span {
        theme,
        from_ms: signal.evidence_start_ms,
        to_ms: signal.window.end_ms,
        after_ms,
    };
    let base = match signal.trigger {
        Trigger::Surge { .. } => config.bucket_ms,
        Trigger::Recurrence { .. } => config.recurrence.period_ms,
    };
    let length = (span.to_ms - span.from_ms).max(1);
    let points = length / base + 1;
    let bucket = if points > MAX_SERIES_POINTS {
        base * (points / MAX_SERIES_POINTS + 1)
    } else {
        base
    };
    (span, bucket)
}

/// Reads everything the evidence of a span needs.
pub async fn gather(
    store: &TrendsStore,
    span: Span<'_>,
    bucket_ms: i64,
) -> Result<Gathered, sqlx::Error> {
    Ok(Gathered {
        slices: store.slices(span).await?,
        distinct_customers: store.distinct_complainers(span).await?,
        negative_ids: store.negative_ids(span, MAX_EVIDENCE_IDS as i64).await?,
        series: store.series(span, bucket_ms).await?,
        series_bucket_ms: bucket_ms,
        candidates: store
            .recent_negative_excerpts(span, EXCERPT_CANDIDATES)
            .await?,
    })
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Builds the evidence from what [`gather`] read and the signal.
///
/// Excerpts are the most recent ones, one per customer: an operator deciding what to do
/// wants to see the problem as it is *now* and how widespread it is, not one customer's
/// five messages. (Shortest-first was the alternative; it favours fragments like
/// "late!!" that say nothing.)
pub fn assemble(span: Span<'_>, signal: &Signal, rule: String, gathered: &Gathered) -> Evidence {
    let mut mentions = 0;
    let mut negative = 0;
    let mut by_channel: BTreeMap<String, EvidenceCounts> = BTreeMap::new();
    let mut by_touchpoint: BTreeMap<String, EvidenceCounts> = BTreeMap::new();
    let (mut rating_sum, mut rating_count, mut nps_sum, mut nps_count) = (0i64, 0i64, 0i64, 0i64);
    for slice in &gathered.slices {
        mentions += slice.mentions;
        let touchpoint = slice.touchpoint.clone().unwrap_or_else(|| "unknown".into());
        for counts in [
            by_channel.entry(slice.channel.clone()).or_default(),
            by_touchpoint.entry(touchpoint).or_default(),
        ] {
            counts.mentions += count(slice.mentions);
            if slice.negative {
                counts.negative_mentions += count(slice.mentions);
                // Slices of one channel differ by touchpoint, so a customer may be in
                // two: an upper bound, exact whenever a channel has one touchpoint.
                counts.distinct_customers += count(slice.distinct_customers);
            }
        }
        if slice.negative {
            negative += slice.mentions;
        }
        rating_sum += slice.rating_sum;
        rating_count += slice.rating_count;
        nps_sum += slice.nps_sum;
        nps_count += slice.nps_count;
    }
    let average = |sum: i64, n: i64| (n > 0).then(|| round2(sum as f64 / n as f64));

    let feedback_ids: Vec<Uuid> = gathered
        .negative_ids
        .iter()
        .rev()
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect();
    let mut customers = HashSet::new();
    let excerpts = gathered
        .candidates
        .iter()
        .filter(|c| !c.excerpt.trim().is_empty())
        .filter(|c| customers.insert(c.customer_id.as_str()))
        .filter_map(|c| {
            Some(EvidenceExcerpt {
                feedback_id: Uuid::parse_str(&c.feedback_id).ok()?,
                customer_id: c.customer_id.clone(),
                excerpt: excerpt(&c.excerpt, MAX_EXCERPT_CHARS),
                given_at: time(c.given_at_ms),
            })
        })
        .take(MAX_EXCERPTS)
        .collect();
    let series = gathered
        .series
        .iter()
        .map(|row| EvidenceBucket {
            start: time(row.bucket * gathered.series_bucket_ms),
            counts: EvidenceCounts {
                mentions: count(row.mentions),
                negative_mentions: count(row.negative_mentions),
                distinct_customers: count(row.distinct_customers),
            },
        })
        .collect();
    let (expected, p_value) = match signal.trigger {
        Trigger::Surge { expected, p_value } => (Some(round2(expected)), Some(p_value)),
        Trigger::Recurrence { .. } => (None, None),
    };
    Evidence {
        window_start: time(span.from_ms),
        window_end: time(span.to_ms),
        mentions: count(mentions),
        negative_mentions: count(negative),
        distinct_customers: count(gathered.distinct_customers),
        rule,
        feedback_ids,
        excerpts,
        detector: signal.trigger.name().to_owned(),
        reason: signal.trigger.describe(&signal.window),
        expected_negative_mentions: expected,
        p_value,
        negative_share: if mentions > 0 {
            round2(negative as f64 / mentions as f64)
        } else {
            0.0
        },
        series,
        by_channel,
        by_touchpoint,
        average_rating: average(rating_sum, rating_count),
        average_nps: average(nps_sum, nps_count),
        triggered_at: Some(time(signal.triggered_at_ms())),
        // Filled in by the caller, which knows the theme's last computed impact.
        nps_impact: None,
        rating_impact: None,
        // Filled by related themes (`ThemesHandler::join`), kept by updates.
        related: Vec::new(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_trend::{Peak, WindowStats};

    const MIN: i64 = 60_000;

    fn signal(trigger: Trigger) -> Signal {
        Signal {
            trigger,
            window: WindowStats {
                start_ms: 0,
                end_ms: 60 * MIN,
                mentions: 9,
                negative_mentions: 7,
                counted_negative_mentions: 7,
                distinct_customers: 5,
                expected_negative: 0.5,
                p_value: 1e-6,
            },
            evidence_start_ms: 0,
            active_since_ms: 60 * MIN,
            peak: Peak {
                mentions: 9,
                negative_mentions: 7,
                counted_negative_mentions: 7,
                distinct_customers: 5,
            },
        }
    }

    fn surge() -> Signal {
        signal(Trigger::Surge {
            expected: 0.5,
            p_value: 1e-6,
        })
    }

    fn slice(channel: &str, touchpoint: Option<&str>, negative: bool, mentions: i64) -> SliceRow {
        SliceRow {
            channel: channel.into(),
            touchpoint: touchpoint.map(str::to_owned),
            negative,
            mentions,
            distinct_customers: mentions.min(2),
            rating_sum: mentions,
            rating_count: mentions,
            nps_sum: 0,
            nps_count: 0,
        }
    }

    fn candidate(id: Uuid, customer: &str, excerpt: &str, at: i64) -> ExcerptRow {
        ExcerptRow {
            feedback_id: id.to_string(),
            customer_id: customer.into(),
            excerpt: excerpt.into(),
            given_at_ms: at,
        }
    }

    fn span() -> Span<'static> {
        Span {
            theme: "t",
            from_ms: 0,
            to_ms: 60 * MIN,
            after_ms: i64::MIN,
        }
    }

    #[test]
    fn counts_shares_breakdowns_and_averages() {
        let gathered = Gathered {
            slices: vec![
                slice("review", Some("delivery"), true, 4),
                slice("review", Some("delivery"), false, 2),
                slice("ticket", None, true, 3),
            ],
            distinct_customers: 5,
            series_bucket_ms: 10 * MIN,
            series: vec![SeriesRow {
                bucket: 3,
                mentions: 9,
                negative_mentions: 7,
                distinct_customers: 5,
            }],
            ..Gathered::default()
        };
        let evidence = assemble(span(), &surge(), "rule".into(), &gathered);
        assert_eq!(evidence.mentions, 9);
        assert_eq!(evidence.negative_mentions, 7);
        assert_eq!(evidence.distinct_customers, 5);
        assert_eq!(evidence.negative_share, 0.78);
        assert_eq!(evidence.by_channel["review"].mentions, 6);
        assert_eq!(evidence.by_channel["review"].negative_mentions, 4);
        assert_eq!(evidence.by_channel["ticket"].negative_mentions, 3);
        assert_eq!(evidence.by_touchpoint["delivery"].mentions, 6);
        assert_eq!(evidence.by_touchpoint["unknown"].mentions, 3);
        assert_eq!(evidence.average_rating, Some(1.0));
        assert_eq!(evidence.average_nps, None, "no NPS given");
        assert_eq!(evidence.series[0].start, time(30 * MIN));
        assert_eq!(evidence.detector, "surge");
        assert_eq!(evidence.expected_negative_mentions, Some(0.5));
        assert!(
            evidence.reason.starts_with("surge: 7 negative mentions"),
            "{}",
            evidence.reason
        );
    }

    #[test]
    fn excerpts_are_the_newest_of_each_customer() {
        let ids: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
        // Newest first, as the store returns them.
        let customers = ["f", "e", "d", "a", "c", "a", "b", "a"];
        let mut candidates: Vec<ExcerptRow> = customers
            .iter()
            .enumerate()
            .map(|(n, c)| {
                candidate(
                    ids[n],
                    c,
                    &format!("complaint {}", 7 - n),
                    (7 - n as i64) * MIN,
                )
            })
            .collect();
        candidates[0].excerpt = "   ".into();
        let gathered = Gathered {
            negative_ids: ids.iter().map(Uuid::to_string).collect(),
            candidates,
            series_bucket_ms: 10 * MIN,
            ..Gathered::default()
        };
        let evidence = assemble(span(), &surge(), "rule".into(), &gathered);
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
        // Ids oldest first, as the window reads.
        assert_eq!(evidence.feedback_ids.first(), ids.last());
    }

    #[test]
    fn recurrence_evidence_spans_the_periods_with_coarser_buckets() {
        let config = DetectorConfig::default();
        let mut recurring = signal(Trigger::Recurrence {
            periods_above_floor: 3,
            periods: 5,
            floor: 8,
            distinct_customers: 30,
        });
        recurring.evidence_start_ms = 0;
        recurring.window.end_ms = 4 * 24 * 60 * MIN + 5;
        let (span, bucket) = span_of("t", &recurring, &config, 7);
        assert_eq!((span.from_ms, span.after_ms), (0, 7));
        assert_eq!(bucket, config.recurrence.period_ms);
        let evidence = assemble(span, &recurring, "rule".into(), &Gathered::default());
        assert_eq!(evidence.detector, "recurrence");
        assert_eq!(evidence.p_value, None);
        assert_eq!(evidence.negative_share, 0.0);
        // A surge over a long window gets buckets coarse enough for ~48 points.
        let mut long = surge();
        long.window.end_ms = 24 * 60 * MIN;
        let (_, bucket) = span_of("t", &long, &config, 0);
        assert!(
            bucket > config.bucket_ms && (24 * 60 * MIN) / bucket <= 48,
            "{bucket}"
        );
    }

    #[test]
    fn long_excerpts_are_cut_on_a_character_boundary() {
        let long = "ü".repeat(MAX_EXCERPT_CHARS + 10);
        let cut = excerpt(&long, MAX_EXCERPT_CHARS);
        assert_eq!(cut.chars().count(), MAX_EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(" short ", MAX_EXCERPT_CHARS), "short");
    }
}
