//! Every metric the Grafana dashboard and the Prometheus alerts query is one the services
//! really export: the whole loop runs (feedback → action → resolution → notifications,
//! plus a rejected request and a customer without consent), every service's `/metrics` is
//! scraped, and each name found in `deploy/` must be among the scraped series. A renamed
//! metric or a typo in a panel fails here instead of leaving a dashboard silently empty.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use closeloop_tests::{
    eventually, feedback, loop_configs, open_action, post_all, received_at_least, resolve,
    start_loop_with,
};

/// The files whose queries must find data, relative to the repository root.
const QUERYING_FILES: [&str; 2] = [
    "deploy/prometheus/alerts.yml",
    "deploy/grafana/dashboards/closeloop.json",
];

/// Every `closeloop_…` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "closeloop_";
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let name_len = rest[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - at);
        if !preceded_by_word {
            names.insert(rest[at..at + name_len].to_owned());
        }
        rest = &rest[at + name_len..];
    }
    names
}

/// The metric names queried by the dashboard and the alerts.
fn queried_metrics() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    QUERYING_FILES
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|error| panic!("{file}: {error}"));
            metric_names(&text)
        })
        .collect()
}

/// The series names in a Prometheus text exposition (`name{labels} value` or `name value`).
fn exported_series(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn scrape(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics text")
}

#[test]
fn metric_names_are_found_whole() {
    let names = metric_names(
        r#"sum(rate(closeloop_events_failed_total[5m])) / x_closeloop_not_this + closeloop_up"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["closeloop_events_failed_total", "closeloop_up"]
    );
    assert_eq!(
        exported_series("# HELP a b\na_total{x=\"1\"} 1\nb 2\n"),
        BTreeSet::from(["a_total".to_owned(), "b".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let queried = queried_metrics();
    assert!(
        queried.len() >= 15,
        "the deploy files query only {queried:?}"
    );

    // Theme impact is a number (and its gauges a series) from two scored feedback on
    // each side, computed every second.
    let mut configs = loop_configs();
    configs.trends.impact_min_count = 2;
    configs.trends.impact_refresh_seconds = 1;
    let (stack, sink) = start_loop_with(configs).await;
    let services = [stack.ingest, stack.categorise, stack.trends, stack.notify];
    let with_nps = |mut feedback: serde_json::Value, nps: u8| {
        feedback["nps"] = nps.into();
        feedback
    };
    post_all(
        &stack,
        "m",
        &[
            feedback("ana", "en-GB", true, "My parcel arrived two weeks late.", 1),
            feedback("ana", "en-GB", true, "The delivery is late again!", 1),
            with_nps(
                feedback("ben", "de-DE", true, "Die Lieferung kam viel zu spät.", 1),
                2,
            ),
            with_nps(
                feedback("cai", "en-US", true, "Delivery was delayed by ten days.", 2),
                3,
            ),
            feedback(
                "dan",
                "en-IE",
                false,
                "The order was delivered far too late.",
                1,
            ),
            with_nps(
                feedback("eve", "en-GB", true, "Lovely quality, great product.", 5),
                10,
            ),
            with_nps(
                feedback("fin", "en-GB", true, "Great value, very happy.", 5),
                9,
            ),
        ],
    )
    .await;
    let rejected = reqwest::Client::new()
        .post(format!("http://{}/v1/feedback", stack.ingest))
        .body("{not json")
        .send()
        .await
        .expect("ingest answers");
    assert!(rejected.status().is_client_error());

    // Some series exist only at some point of the loop (the opening time of an action
    // only while it is unresolved), so the union over the loop's stages counts.
    let action = open_action(&stack, "delivery_time", Duration::from_secs(60)).await;
    let mut exported = BTreeSet::new();
    for addr in services {
        exported.extend(exported_series(&scrape(addr).await));
    }
    // The API shows the action as soon as it is stored; its metrics follow once the
    // broker acknowledged the event.
    let opened = "closeloop_action_opened_timestamp_seconds";
    let trends_metrics = eventually(Duration::from_secs(30), opened, || async {
        let series = exported_series(&scrape(stack.trends).await);
        series.contains(opened).then_some(series)
    })
    .await;
    exported.extend(trends_metrics);
    let action_id = action["action_id"].as_str().expect("action id");
    resolve(
        &stack,
        action_id,
        "We added a carrier.",
        "Wir haben einen Versender mehr.",
    )
    .await;
    received_at_least(&sink, 3, Duration::from_secs(30)).await;

    // Consumer lag comes from librdkafka's statistics, every 5 s: scrape until it shows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        for addr in services {
            exported.extend(exported_series(&scrape(addr).await));
        }
        let missing: Vec<&String> = queried.difference(&exported).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        missing.is_empty(),
        "queried by deploy/ but not exported: {missing:?}"
    );

    // Every stage of the end-to-end latency the dashboard plots by stage.
    let mut stages = String::new();
    for addr in services {
        stages.push_str(&scrape(addr).await);
    }
    for stage in ["categorised", "action", "notified"] {
        let label = format!("stage=\"{stage}\"");
        assert!(
            stages.lines().any(|line| line
                .starts_with("closeloop_pipeline_latency_seconds_count{")
                && line.contains(&label)),
            "no {stage} latency exported"
        );
    }
    stack.stop().await;
}
