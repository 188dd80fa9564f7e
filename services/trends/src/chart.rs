//! A small inline SVG chart of an action's evidence over time, for `/ops`.
//!
//! Pure: evidence in, markup out — no I/O, no clock — so it is tested without HTTP.
//! The page's Content-Security-Policy (`default-src 'none'; style-src 'unsafe-inline'`)
//! allows inline `<svg>` markup but no script and nothing fetched, so the chart is
//! plain shapes with presentation attributes: no `<script>`, no `on…=` handlers, no
//! `href`, no `<style>` element. Every text in it goes through [`escape`], even the
//! times we format ourselves, so a change elsewhere cannot open a hole here.
//!
//! What it draws, on one time axis:
//! - one group per bucket of the series: all mentions as a muted bar, the negative
//!   ones as a red bar in front of it, and a `<title>` for the hover text;
//! - the evidence window (`window_start`–`window_end`) shaded behind the bars, and the
//!   moment the theme became active (`triggered_at`) as a vertical line;
//! - the baseline as a dashed line, when the evidence carries the detector's expected
//!   count (`expected_negative_mentions`, surge only), spread evenly over the window's
//!   buckets.
//!
//! The series holds only the buckets with mentions (the store groups by bucket), so
//! bars sit at their time, not at their index: a gap in the feedback is a gap in the
//! chart. The evidence does not say how wide a bucket is; it is the smallest step
//! between two buckets, or with a single bucket the whole window.

use std::fmt::Write;

use chrono::{DateTime, TimeDelta, Utc};
use closeloop_events::{Evidence, EvidenceBucket};

use closeloop_http::html::escape;

/// Size of the drawing, in SVG user units (the `viewBox`); the page scales it.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 150.0;
/// The plot area inside the drawing; the rest holds the axis labels.
const LEFT: f64 = 36.0;
const RIGHT: f64 = 472.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 118.0;

const NEGATIVE: &str = "#c62828";
const MENTIONS: &str = "#c9c9c9";
const WINDOW: &str = "#fff3cd";
const INK: &str = "#555";

/// The marks drawn next to the series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// When the theme became active (or, for an effect, was resolved).
    pub fired_at: Option<DateTime<Utc>>,
    /// Negative mentions the baseline predicted for the whole window.
    pub expected_negative: Option<f64>,
    /// What the marks are called in their hover texts.
    pub labels: Labels,
}

/// The names of a chart's marks: an action's evidence and a resolution's effect draw
/// the same shapes that mean different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels {
    pub window: &'static str,
    pub fired: &'static str,
    pub expected: &'static str,
}

impl Labels {
    /// An action's evidence: the detector's window, its firing and its baseline.
    pub const EVIDENCE: Labels = Labels {
        window: "window",
        fired: "fired",
        expected: "baseline",
    };
    /// A resolution's effect: the window after it, the resolution, the rate before it.
    pub const EFFECT: Labels = Labels {
        window: "after the resolution",
        fired: "resolved",
        expected: "before the resolution",
    };
}

impl Window {
    pub fn of(evidence: &Evidence) -> Window {
        Window {
            start: evidence.window_start,
            end: evidence.window_end,
            fired_at: evidence.triggered_at,
            expected_negative: evidence.expected_negative_mentions,
            labels: Labels::EVIDENCE,
        }
    }
}

/// The chart of `series` (oldest first) with `window`'s marks; `label` names it for
/// screen readers. An empty series gives an empty string: nothing to draw.
pub fn svg(series: &[EvidenceBucket], window: &Window, label: &str) -> String {
    let (Some(first), Some(last)) = (series.first(), series.last()) else {
        return String::new();
    };
    let bucket = bucket_width(series, window);
    let from = first.start;
    let to = last.start + bucket;
    let span_ms = (to - from).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| {
        let offset = (t - from).num_milliseconds() as f64 / span_ms;
        LEFT + offset.clamp(0.0, 1.0) * (RIGHT - LEFT)
    };
    let expected = expected_per_bucket(window, bucket);
    let max = series
        .iter()
        .map(|b| f64::from(b.counts.mentions.max(b.counts.negative_mentions)))
        .chain(expected)
        .fold(0.0, f64::max);
    let scale = if max > 0.0 { (BOTTOM - TOP) / max } else { 0.0 };
    let y = |value: f64| BOTTOM - value * scale;

    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         font-family=\"system-ui,sans-serif\" font-size=\"10\" style=\"max-width:100%;height:auto\">\
         <title>{}</title>",
        escape(label),
        escape(label),
    );
    // The window, clipped to the chart.
    let (shade_from, shade_to) = (x(window.start), x(window.end));
    if shade_to > shade_from {
        let _ = write!(
            out,
            "<rect class=\"window\" x=\"{shade_from:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{WINDOW}\">\
             <title>{} {} – {}</title></rect>",
            shade_to - shade_from,
            BOTTOM - TOP,
            escape(window.labels.window),
            escape(&when(window.start)),
            escape(&when(window.end)),
        );
    }
    let bar_width = ((x(from + bucket) - x(from)) - 1.0).max(1.0);
    for b in series {
        let left = x(b.start);
        let (all, negative) = (
            f64::from(b.counts.mentions),
            f64::from(b.counts.negative_mentions),
        );
        let _ = write!(
            out,
            "<g class=\"bucket\"><title>{}</title>\
             <rect class=\"mentions\" x=\"{left:.1}\" y=\"{:.1}\" width=\"{bar_width:.1}\" height=\"{:.1}\" fill=\"{MENTIONS}\"/>\
             <rect class=\"negative\" x=\"{left:.1}\" y=\"{:.1}\" width=\"{bar_width:.1}\" height=\"{:.1}\" fill=\"{NEGATIVE}\"/></g>",
            escape(&format!(
                "{} — {} negative of {}",
                when(b.start),
                b.counts.negative_mentions,
                b.counts.mentions
            )),
            y(all),
            all * scale,
            y(negative),
            negative * scale,
        );
    }
    if let Some(expected) = expected {
        let _ = write!(
            out,
            "<line class=\"expected\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"{INK}\" \
             stroke-width=\"1.5\" stroke-dasharray=\"5 3\"><title>{1}</title></line>",
            y(expected),
            escape(&format!(
                "{}: {expected:.2} negative per bucket",
                window.labels.expected
            )),
        );
    }
    if let Some(fired_at) = window.fired_at.filter(|t| (from..=to).contains(t)) {
        let _ = write!(
            out,
            "<line class=\"fired\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{BOTTOM}\" stroke=\"#222\" \
             stroke-width=\"1.5\"><title>{1}</title></line>",
            x(fired_at),
            escape(&format!("{} {}", window.labels.fired, when(fired_at))),
        );
    }
    // Axes: the baseline of the bars, the maximum count, the first and last bucket.
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{BOTTOM}\" y2=\"{BOTTOM}\" stroke=\"{INK}\"/>\
         <text class=\"max\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{INK}\">{}</text>\
         <text x=\"{:.1}\" y=\"{BOTTOM}\" text-anchor=\"end\" fill=\"{INK}\">0</text>\
         <text class=\"first\" x=\"{LEFT}\" y=\"{:.1}\" fill=\"{INK}\">{}</text>",
        LEFT - 4.0,
        TOP + 4.0,
        escape(&format_count(max)),
        LEFT - 4.0,
        BOTTOM + 14.0,
        escape(&when(first.start)),
    );
    if series.len() > 1 {
        let _ = write!(
            out,
            "<text class=\"last\" x=\"{RIGHT}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{INK}\">{}</text>",
            BOTTOM + 14.0,
            escape(&when(last.start)),
        );
    }
    let _ = write!(
        out,
        "<text x=\"{LEFT}\" y=\"{:.1}\" fill=\"{INK}\"><tspan fill=\"{NEGATIVE}\">■</tspan> negative \
         <tspan fill=\"{MENTIONS}\">■</tspan> all mentions</text></svg>",
        BOTTOM + 28.0,
    );
    out
}

/// The chart of an evidence's series, or nothing without one.
pub fn of(evidence: &Evidence, label: &str) -> String {
    svg(&evidence.series, &Window::of(evidence), label)
}

/// The smallest step between two buckets; with one bucket, the window it sits in
/// (an hour when the window says nothing useful).
fn bucket_width(series: &[EvidenceBucket], window: &Window) -> TimeDelta {
    let step = series
        .windows(2)
        .map(|pair| pair[1].start - pair[0].start)
        .filter(|step| *step > TimeDelta::zero())
        .min();
    step.unwrap_or_else(|| {
        let rest = window.end - series[0].start;
        if rest > TimeDelta::zero() && rest <= TimeDelta::days(31) {
            rest
        } else {
            TimeDelta::hours(1)
        }
    })
}

/// The window's expected count spread over the buckets it covers.
fn expected_per_bucket(window: &Window, bucket: TimeDelta) -> Option<f64> {
    let expected = window
        .expected_negative
        .filter(|e| e.is_finite() && *e >= 0.0)?;
    let bucket_ms = bucket.num_milliseconds().max(1);
    let window_ms = (window.end - window.start).num_milliseconds().max(0);
    let buckets = (window_ms + bucket_ms - 1) / bucket_ms;
    Some(expected / buckets.max(1) as f64)
}

fn format_count(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_events::EvidenceCounts;

    const HOSTILE: &str = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>";

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_796_306_400, 0).expect("a time") + TimeDelta::minutes(minutes)
    }

    fn bucket(minutes: i64, mentions: u32, negative: u32) -> EvidenceBucket {
        EvidenceBucket {
            start: at(minutes),
            counts: EvidenceCounts {
                mentions,
                negative_mentions: negative,
                distinct_customers: negative,
            },
        }
    }

    fn window(minutes: i64) -> Window {
        Window {
            start: at(0),
            end: at(minutes),
            fired_at: Some(at(minutes - 5)),
            expected_negative: Some(3.0),
            labels: Labels::EVIDENCE,
        }
    }

    /// The `attribute="…"` values of every element with `class="{class}"`, as numbers.
    fn attribute(svg: &str, class: &str, attribute: &str) -> Vec<f64> {
        svg.split(&format!("class=\"{class}\""))
            .skip(1)
            .map(|rest| {
                let value = rest
                    .split(&format!(" {attribute}=\""))
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .expect("the attribute");
                value.parse().expect("a number")
            })
            .collect()
    }

    /// Equal to the 0.1 the chart writes numbers with.
    fn close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 0.051, "{actual:?} vs {expected:?}");
        }
    }

    fn assert_inert(svg: &str) {
        let lower = svg.to_lowercase();
        assert!(!lower.contains("<script"), "{svg}");
        assert!(!lower.contains("href"), "{svg}");
        assert!(!lower.contains("<img"), "{svg}");
        assert!(!lower.contains("<style"), "{svg}");
        assert!(!lower.contains("url("), "{svg}");
        // Attribute names, read from inside the tags (escaped text has no `<`).
        // Values are quoted and escaped, so a `"` always ends one.
        for tag in lower.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap_or_default();
            let mut rest = tag.trim_start_matches(|c: char| c != ' ');
            loop {
                rest = rest.trim_start();
                if rest.is_empty() || rest == "/" {
                    break;
                }
                let end = rest.find(['=', ' ']).unwrap_or(rest.len());
                let name = &rest[..end];
                assert!(!name.starts_with("on"), "an event handler in <{tag}>");
                rest = &rest[end..];
                if let Some(value) = rest.strip_prefix("=\"") {
                    let close = value.find('"').expect("a closing quote");
                    rest = &value[close + 1..];
                }
            }
        }
    }

    #[test]
    fn bars_scale_to_the_largest_count() {
        let series = [bucket(0, 10, 5), bucket(10, 4, 4), bucket(20, 2, 0)];
        let svg = svg(&series, &window(30), "delivery time");
        assert_eq!(svg.matches("<g class=\"bucket\">").count(), 3);
        let all = attribute(&svg, "mentions", "height");
        let negative = attribute(&svg, "negative", "height");
        let full = BOTTOM - TOP;
        close(&all, &[full, full * 0.4, full * 0.2]);
        close(&negative, &[full * 0.5, full * 0.4, 0.0]);
        assert!(svg.contains("<text class=\"max\""), "{svg}");
        assert!(svg.contains(">10</text>"), "the maximum is labelled: {svg}");
        assert!(svg.contains(">2026-12-03 14:00</text>"), "{svg}");
        assert!(svg.contains(">2026-12-03 14:20</text>"), "{svg}");
        assert!(
            svg.contains("<title>2026-12-03 14:00 — 5 negative of 10</title>"),
            "{svg}"
        );
        // Three buckets of ten minutes; the bars sit side by side at their time.
        let x = attribute(&svg, "negative", "x");
        assert!(x[0] < x[1] && x[1] < x[2], "{x:?}");
        assert_inert(&svg);
    }

    #[test]
    fn a_gap_in_the_feedback_is_a_gap_in_the_chart() {
        let svg = svg(
            &[bucket(0, 1, 1), bucket(10, 1, 1), bucket(50, 1, 1)],
            &window(60),
            "t",
        );
        let x = attribute(&svg, "negative", "x");
        let step = x[1] - x[0];
        assert!((x[2] - x[1] - 4.0 * step).abs() < 0.5, "{x:?}");
    }

    #[test]
    fn the_baseline_is_spread_over_the_window_and_the_firing_is_marked() {
        // Three expected in a 30-minute window of 10-minute buckets: one per bucket.
        let series = [bucket(0, 4, 2), bucket(10, 4, 4), bucket(20, 4, 4)];
        let svg = svg(&series, &window(30), "t");
        let line = attribute(&svg, "expected", "y1");
        close(&line, &[BOTTOM - (BOTTOM - TOP) / 4.0]);
        assert!(svg.contains("stroke-dasharray"), "{svg}");
        assert!(svg.contains("baseline: 1.00 negative per bucket"), "{svg}");
        assert_eq!(svg.matches("<line class=\"fired\"").count(), 1, "{svg}");
        assert_eq!(svg.matches("<rect class=\"window\"").count(), 1, "{svg}");

        let recurrence = Window {
            expected_negative: None,
            fired_at: None,
            ..window(30)
        };
        let svg = super::svg(&series, &recurrence, "t");
        assert!(
            !svg.contains("class=\"expected\""),
            "nothing to draw: {svg}"
        );
        assert!(!svg.contains("class=\"fired\""), "{svg}");
    }

    #[test]
    fn empty_zero_and_single_bucket_series_render_sensibly() {
        assert_eq!(svg(&[], &window(30), "t"), "");

        let zero = svg(&[bucket(0, 0, 0), bucket(10, 0, 0)], &window(20), "t");
        close(&attribute(&zero, "mentions", "height"), &[0.0, 0.0]);
        assert!(!zero.contains("NaN") && !zero.contains("inf"), "{zero}");

        let one = svg(&[bucket(0, 3, 2)], &window(60), "t");
        assert_eq!(one.matches("<g class=\"bucket\">").count(), 1);
        assert!(!one.contains("NaN") && !one.contains("inf"), "{one}");
        let width = attribute(&one, "negative", "width")[0];
        assert!(width > 100.0, "one bucket fills the chart: {width}");

        // Odd windows (an older event without one, a bogus expectation) still draw.
        let odd = Window {
            start: DateTime::<Utc>::default(),
            end: DateTime::<Utc>::default(),
            fired_at: None,
            expected_negative: Some(f64::NAN),
            labels: Labels::EVIDENCE,
        };
        let svg = svg(&[bucket(0, 3, 2)], &odd, "t");
        assert!(
            !svg.contains("NaN") && !svg.contains("class=\"expected\""),
            "{svg}"
        );
        assert_inert(&svg);
    }

    #[test]
    fn every_text_is_escaped() {
        let svg = svg(&[bucket(0, 3, 2), bucket(10, 1, 1)], &window(20), HOSTILE);
        assert_inert(&svg);
        assert!(
            svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;&lt;img"),
            "{svg}"
        );
        assert!(!svg.contains("\"><img"), "{svg}");
    }
}
