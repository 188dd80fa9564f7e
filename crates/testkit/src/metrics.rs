//! A service's Prometheus metrics as a test reads them: scrape `/metrics`, then ask for
//! one number ([`metric_value`]) or for every series name ([`series_names`]).
//!
//! The parser reads the text exposition format line by line
//! (`name{label="value",…} number [timestamp]`, `# …` comments skipped), matching names
//! exactly (`x_count` is not `x`) and labels as whole `label="value"` pairs, so a label
//! never matches inside another label's value.

use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The text of `http://{addr}/metrics`.
///
/// # Panics
///
/// When the service does not answer, or answers with an error status.
pub async fn scrape_metrics(addr: SocketAddr) -> String {
    let url = format!("http://{addr}/metrics");
    let response = reqwest::get(&url)
        .await
        .unwrap_or_else(|error| panic!("{url} does not answer: {error}"));
    let status = response.status();
    assert!(status.is_success(), "{url} answered {status}");
    response
        .text()
        .await
        .unwrap_or_else(|error| panic!("{url} body: {error}"))
}

/// The sum of the series of metric `name` in `text` whose labels include every one of
/// `labels`, each written as in the exposition: `r#"channel="email""#`. With no labels,
/// the sum over all series of `name`; 0 when there is none (an unset counter).
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> f64 {
    series(text)
        .filter(|series| series.name == name)
        .filter(|series| labels.iter().all(|label| series.labels.contains(label)))
        .map(|series| series.value)
        .sum()
}

/// The name of every series in `text` (`x_bucket`, `x_sum`, `x_count` for a histogram).
pub fn series_names(text: &str) -> BTreeSet<String> {
    series(text).map(|series| series.name.to_owned()).collect()
}

/// One sample line.
struct Series<'a> {
    name: &'a str,
    /// `label="value"` as written, escapes included.
    labels: Vec<&'a str>,
    value: f64,
}

fn series(text: &str) -> impl Iterator<Item = Series<'_>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_line)
}

fn parse_line(line: &str) -> Option<Series<'_>> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let close = label_set_end(inner)?;
        labels = split_labels(&inner[..close]);
        rest = &inner[close + 1..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Series {
        name,
        labels,
        value,
    })
}

/// The index of the `}` closing a label set, skipping quoted values (with `\"` escapes).
fn label_set_end(inner: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `a="1",b="x,y"` → `["a=\"1\"", "b=\"x,y\""]`.
fn split_labels(set: &str) -> Vec<&str> {
    let mut labels = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in set.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                labels.push(set[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    labels.push(set[start..].trim());
    labels.retain(|label| !label.is_empty());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# HELP closeloop_notifications_total Notifications by outcome.
# TYPE closeloop_notifications_total counter
closeloop_notifications_total{channel="email",outcome="delivered"} 2
closeloop_notifications_total{channel="webhook",outcome="delivered"} 3
closeloop_notifications_total{channel="webhook",outcome="retrying"} 1
closeloop_notifications_total_extra{channel="email",outcome="delivered"} 100
closeloop_odd{note="a, \"b\"} c",kind="x"} 7 1700000000000
closeloop_up 1
closeloop_seconds_bucket{le="+Inf"} 4
closeloop_seconds_count 4
closeloop_seconds_sum 0.5
"#;

    #[test]
    fn sums_the_series_that_have_every_label() {
        let sum =
            |labels: &[&str]| metric_value(EXPOSITION, "closeloop_notifications_total", labels);
        assert_eq!(sum(&[]), 6.0);
        assert_eq!(sum(&[r#"outcome="delivered""#]), 5.0);
        assert_eq!(
            sum(&[r#"outcome="delivered""#, r#"channel="webhook""#]),
            3.0
        );
        assert_eq!(sum(&[r#"channel="webhook""#, r#"outcome="retrying""#]), 1.0);
        assert_eq!(sum(&[r#"outcome="dead_lettered""#]), 0.0, "no such series");
    }

    #[test]
    fn names_match_whole() {
        assert_eq!(metric_value(EXPOSITION, "closeloop_seconds", &[]), 0.0);
        assert_eq!(
            metric_value(EXPOSITION, "closeloop_seconds_count", &[]),
            4.0
        );
        assert_eq!(metric_value(EXPOSITION, "closeloop_up", &[]), 1.0);
        assert_eq!(
            metric_value(EXPOSITION, "closeloop_notifications", &[]),
            0.0
        );
    }

    #[test]
    fn labels_match_whole_pairs_even_inside_quotes() {
        assert_eq!(
            metric_value(EXPOSITION, "closeloop_odd", &[r#"kind="x""#]),
            7.0
        );
        assert_eq!(
            metric_value(EXPOSITION, "closeloop_odd", &[r#"note="a, \"b\"} c""#]),
            7.0,
            "a value with a comma, an escaped quote and a brace; the timestamp is ignored"
        );
        assert_eq!(metric_value(EXPOSITION, "closeloop_odd", &[r#"c""#]), 0.0);
        assert_eq!(
            metric_value(EXPOSITION, "closeloop_seconds_bucket", &[r#"le="+Inf""#]),
            4.0
        );
    }

    #[test]
    fn lists_every_series_name() {
        let names = series_names(EXPOSITION);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                "closeloop_notifications_total",
                "closeloop_notifications_total_extra",
                "closeloop_odd",
                "closeloop_seconds_bucket",
                "closeloop_seconds_count",
                "closeloop_seconds_sum",
                "closeloop_up",
            ]
        );
    }
}
