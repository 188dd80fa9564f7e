//! Figures read off the services' `/metrics` (Prometheus text exposition): what the bench
//! cannot see from outside, such as how many records a service consumed, the CPU its
//! handlers used, or how late trends counted a mention.

/// The series of metric `name` (a counter, or one histogram series such as `…_bucket`)
/// whose labels include `label` (all when `None`): each series' labels and value.
fn series<'a>(
    metrics: &'a str,
    name: &str,
    label: Option<(&str, &str)>,
) -> impl Iterator<Item = (&'a str, f64)> {
    let prefix = format!("{name}{{");
    let wanted = label.map(|(key, value)| format!("{key}=\"{value}\""));
    metrics.lines().filter_map(move |line| {
        let rest = line.strip_prefix(prefix.as_str())?;
        let (labels, value) = rest.split_once('}')?;
        if let Some(wanted) = &wanted {
            if !labels.split(',').any(|l| l == wanted) {
                return None;
            }
        }
        Some((labels, value.trim().parse::<f64>().ok()?))
    })
}

/// The sum of metric `name` over its series with `label`; `None` when there is none.
pub fn sum_of(metrics: &str, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    series(metrics, name, label)
        .map(|(_, value)| value)
        .reduce(|a, b| a + b)
}

/// Upper bounds of the histogram buckets that hold the quantiles `qs` of histogram `name`
/// (the series with `label`): Prometheus' buckets, so "p99 ≤ 0.5 s", not exact values.
/// `None` when the histogram has no observations.
pub fn quantile_bounds(
    metrics: &str,
    name: &str,
    label: (&str, &str),
    qs: &[f64],
) -> Option<Vec<f64>> {
    let mut buckets: Vec<(f64, f64)> = series(metrics, &format!("{name}_bucket"), Some(label))
        .filter_map(|(labels, count)| {
            let le = labels
                .split(',')
                .find_map(|l| l.strip_prefix("le=\""))?
                .trim_end_matches('"');
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    Some(
        qs.iter()
            .map(|q| {
                buckets
                    .iter()
                    .find(|(_, count)| *count >= q * total)
                    .map_or(f64::INFINITY, |(bound, _)| *bound)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP closeloop_events_consumed_total Records consumed.
closeloop_events_consumed_total{service="categorise",topic="feedback.raw.v1"} 1200
closeloop_events_consumed_total{service="categorise",topic="other.v1"} 5
closeloop_consumer_cpu_seconds_total{service="trends",topic="feedback.themes.v1"} 1.5
closeloop_consumer_cpu_seconds_total{service="trends",topic="actions.v1"} 0.25
closeloop_pipeline_latency_seconds_bucket{service="trends",stage="counted",le="0.1"} 10
closeloop_pipeline_latency_seconds_bucket{service="trends",stage="counted",le="0.5"} 90
closeloop_pipeline_latency_seconds_bucket{service="trends",stage="counted",le="1"} 99
closeloop_pipeline_latency_seconds_bucket{service="trends",stage="counted",le="+Inf"} 100
closeloop_pipeline_latency_seconds_bucket{service="trends",stage="action",le="+Inf"} 3
"#;

    #[test]
    fn sums_series_with_a_label_or_all_of_them() {
        let consumed = sum_of(
            METRICS,
            "closeloop_events_consumed_total",
            Some(("topic", "feedback.raw.v1")),
        );
        assert_eq!(consumed, Some(1200.0));
        assert_eq!(
            sum_of(METRICS, "closeloop_consumer_cpu_seconds_total", None),
            Some(1.75)
        );
        assert_eq!(sum_of(METRICS, "closeloop_missing_total", None), None);
    }

    #[test]
    fn quantiles_are_the_bounds_of_the_buckets_that_hold_them() {
        let bounds = quantile_bounds(
            METRICS,
            "closeloop_pipeline_latency_seconds",
            ("stage", "counted"),
            &[0.5, 0.99, 1.0],
        );
        assert_eq!(bounds, Some(vec![0.5, 1.0, f64::INFINITY]));
        let none = quantile_bounds(
            METRICS,
            "closeloop_pipeline_latency_seconds",
            ("stage", "notified"),
            &[0.5],
        );
        assert_eq!(none, None);
    }
}
