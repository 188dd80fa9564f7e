//! Taxonomy versions at run time: every replica switches to the newest version on
//! `taxonomy.v1` without a restart, a restarted one starts with it, an invalid one is
//! skipped, and a version applied with a period reclassifies that period once.

use chrono::{Duration, Utc};
use closeloop_events::{
    Envelope, ErasureRequest, ErasureScope, Feedback, FeedbackCategorised, Period, ThemeMention,
};
use closeloop_testkit::eventually;
use uuid::Uuid;

use crate::helpers::{
    applied, build_categorise, classifier_version, feedback, spawn_categorise, zebra_taxonomy,
    Replica, Spawned, WAIT,
};

const GAUGE: &str = "closeloop_categorise_taxonomy_version_info";
const RECLASSIFIED: &str = "closeloop_categorise_reclassified_total";

/// Waits until `replica` classifies with `version`.
async fn wait_for_version(metric: impl AsyncFn() -> f64, version: &str) {
    eventually(WAIT, &format!("taxonomy {version} in use"), || async {
        (metric().await == 1.0).then_some(())
    })
    .await;
}

fn version_label(version: &str) -> String {
    format!(r#"version="{version}""#)
}

/// The categorised events of `id` so far, once at least `min` have come.
async fn categorised_of(categorise: &Spawned, id: Uuid, min: usize) -> Vec<FeedbackCategorised> {
    eventually(WAIT, "the categorised events", || async {
        let events: Vec<FeedbackCategorised> = categorise
            .events::<FeedbackCategorised>(1)
            .await
            .into_iter()
            .map(|keyed| keyed.event)
            .filter(|event| event.feedback.feedback_id == id)
            .collect();
        (events.len() >= min).then_some(events)
    })
    .await
}

async fn mentions_of(categorise: &Spawned, theme: &str) -> Vec<ThemeMention> {
    categorise
        .events::<ThemeMention>(1)
        .await
        .into_iter()
        .map(|keyed| keyed.event)
        .filter(|mention| mention.theme == theme)
        .collect()
}

fn zebra_feedback(customer: &str) -> Envelope<Feedback> {
    feedback(
        customer,
        "en-GB",
        "The zebra print on the box was lovely, but the delivery was late.",
        3,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_switches_to_an_applied_version_live() {
    let categorise = spawn_categorise().await;
    let replica = categorise.replica().await;
    let r2 = zebra_taxonomy("2026.12-r2");
    categorise.publish_taxonomy(applied(&r2, None)).await;
    let label = version_label("2026.12-r2");
    wait_for_version(async || categorise.metric(GAUGE, &[&label]).await, "r2").await;
    wait_for_version(async || replica.metric(GAUGE, &[&label]).await, "r2").await;
    let old = version_label("2026.12");
    assert_eq!(
        categorise.metric(GAUGE, &[&old]).await,
        0.0,
        "the old series is gone"
    );
    assert_eq!(replica.metric(GAUGE, &[&old]).await, 0.0);

    // Several customers (keys): the partitions, and so the feedback, are shared by both.
    let posted: Vec<Envelope<Feedback>> = (0..8)
        .map(|n| zebra_feedback(&format!("customer-{n}")))
        .collect();
    for envelope in &posted {
        categorise.publish(envelope).await;
    }
    let events = eventually(WAIT, "every feedback categorised", || async {
        let events = categorise.events::<FeedbackCategorised>(posted.len()).await;
        (events.len() >= posted.len()).then_some(events)
    })
    .await;
    for keyed in &events {
        assert_eq!(
            keyed.event.classifier_version,
            classifier_version("2026.12-r2")
        );
        assert!(
            keyed.event.themes.iter().any(|theme| theme.id == "zebra"),
            "{:?}",
            keyed.event.themes
        );
    }
    assert_eq!(mentions_of(&categorise, "zebra").await.len(), posted.len());
    replica.stop().await;
    categorise.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_starts_with_the_applied_version() {
    let built = build_categorise().await;
    let (broker, config) = (built.broker, built.config);
    let first = Replica::run(built.service);
    let publisher = closeloop_bus::Publisher::new(
        &closeloop_bus::PublisherConfig::new(broker.bootstrap_servers()),
        closeloop_bus::BusMetrics::unregistered(),
    )
    .expect("a publisher");
    let r2 = zebra_taxonomy("2026.12-r2");
    publisher
        .publish(&Envelope::new(applied(&r2, None)), None)
        .await
        .expect("published");
    let label = version_label("2026.12-r2");
    wait_for_version(async || first.metric(GAUGE, &[&label]).await, "r2").await;
    first.stop().await;

    // Feedback that waits for the restart: classified with r2, never with the file's.
    let waiting = zebra_feedback("erin");
    publisher.publish(&waiting, None).await.expect("published");
    let service = closeloop_categorise::Service::build(config.clone())
        .await
        .expect("categorise builds again");
    assert_eq!(service.taxonomy_version(), classifier_version("2026.12-r2"));
    let restarted = Replica::run(service);
    let categorised = eventually(WAIT, "the waiting feedback categorised", || async {
        closeloop_testkit::read_records(
            broker.bootstrap_servers(),
            closeloop_events::topics::FEEDBACK_CATEGORISED,
            1,
            std::time::Duration::from_millis(200),
            WAIT,
        )
        .await
        .into_iter()
        .find_map(|record| {
            let event: Envelope<FeedbackCategorised> = serde_json::from_value(record.value).ok()?;
            (event.data.feedback.feedback_id == waiting.data.feedback_id).then_some(event.data)
        })
    })
    .await;
    assert_eq!(
        categorised.classifier_version,
        classifier_version("2026.12-r2")
    );
    assert!(categorised.themes.iter().any(|theme| theme.id == "zebra"));
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_version_is_skipped_and_the_one_in_use_stays() {
    let categorise = spawn_categorise().await;
    let r2 = zebra_taxonomy("2026.12-r2");
    categorise.publish_taxonomy(applied(&r2, None)).await;
    // No themes at all: not a taxonomy categorise can classify with.
    let mut invalid = applied(&r2, None);
    invalid.version = "2026.12-r3".into();
    invalid.taxonomy = serde_json::json!({"version": "2026.12-r3", "themes": []});
    categorise.publish_taxonomy(invalid).await;
    eventually(WAIT, "both versions read", || async {
        let consumed = categorise
            .metric(
                "closeloop_events_consumed_total",
                &[r#"topic="taxonomy.v1""#],
            )
            .await;
        (consumed >= 2.0).then_some(())
    })
    .await;
    assert_eq!(
        categorise
            .metric(GAUGE, &[&version_label("2026.12-r2")])
            .await,
        1.0
    );
    assert_eq!(
        categorise
            .metric(GAUGE, &[&version_label("2026.12-r3")])
            .await,
        0.0
    );
    let posted = zebra_feedback("fred");
    categorise.publish(&posted).await;
    let events = categorised_of(&categorise, posted.data.feedback_id, 1).await;
    assert_eq!(
        events[0].classifier_version,
        classifier_version("2026.12-r2")
    );
    categorise.stop().await;
}

/// A reclassification count of `categorise`.
async fn counted(categorise: &Spawned, result: &str) -> f64 {
    categorise
        .metric(RECLASSIFIED, &[&format!(r#"result="{result}""#)])
        .await
}

/// The sum of the reclassification counts of `instances`.
async fn reclassified(instances: &[&dyn Scrape]) -> f64 {
    let mut sum = 0.0;
    for instance in instances {
        sum += instance.scrape(RECLASSIFIED).await;
    }
    sum
}

trait Scrape {
    fn scrape<'a>(&'a self, name: &'a str) -> futures::future::BoxFuture<'a, f64>;
}

impl Scrape for Spawned {
    fn scrape<'a>(&'a self, name: &'a str) -> futures::future::BoxFuture<'a, f64> {
        Box::pin(self.metric(name, &[]))
    }
}

impl Scrape for Replica {
    fn scrape<'a>(&'a self, name: &'a str) -> futures::future::BoxFuture<'a, f64> {
        Box::pin(self.metric(name, &[]))
    }
}

/// Feedback in a period and outside it, categorised under the built-in version.
struct History {
    inside: Envelope<Feedback>,
    plain: Envelope<Feedback>,
    outside: Envelope<Feedback>,
    /// In the period, from a customer erased since.
    erased: Envelope<Feedback>,
    period: Period,
}

async fn history(categorise: &Spawned) -> History {
    let now = Utc::now();
    let period = Period {
        since: now - Duration::hours(2),
        until: now - Duration::minutes(1),
    };
    let mut inside = zebra_feedback("gina");
    inside.data.received_at = now - Duration::hours(1);
    let mut plain = feedback("hal", "en-GB", "The delivery was late again.", 2);
    plain.data.received_at = now - Duration::hours(1);
    let mut outside = zebra_feedback("ivy");
    outside.data.received_at = now - Duration::hours(3);
    let mut erased = zebra_feedback("jack");
    erased.data.received_at = now - Duration::hours(1);
    for envelope in [&inside, &plain, &outside, &erased] {
        categorise.publish(envelope).await;
    }
    for envelope in [&inside, &plain, &outside, &erased] {
        let events = categorised_of(categorise, envelope.data.feedback_id, 1).await;
        assert!(!events[0].themes.iter().any(|theme| theme.id == "zebra"));
    }
    categorise
        .publisher
        .publish(
            &Envelope::new(ErasureRequest {
                customer_id: "jack".into(),
                source: "admin".into(),
                requested_at: Utc::now(),
                scope: ErasureScope::All,
            }),
            None,
        )
        .await
        .expect("the erasure published");
    // By whichever replica consumes it.
    eventually(WAIT, "the erasure applied", || async {
        let customer = categorise.stored_customer(erased.data.feedback_id).await?;
        customer.starts_with("erased:").then_some(())
    })
    .await;
    History {
        inside,
        plain,
        outside,
        erased,
        period,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reclassification_publishes_the_added_themes_once() {
    let categorise = spawn_categorise().await;
    let history = history(&categorise).await;
    let r2 = zebra_taxonomy("2026.12-r2");
    categorise
        .publish_taxonomy(applied(&r2, Some(history.period)))
        .await;
    // Three feedback in the period (one changes, one does not, one is of an erased
    // customer); the fourth is not looked at.
    eventually(WAIT, "the reclassification done", || async {
        (reclassified(&[&categorise]).await >= 3.0).then_some(())
    })
    .await;
    assert_eq!(counted(&categorise, "changed").await, 1.0);
    assert_eq!(counted(&categorise, "unchanged").await, 1.0);
    assert_eq!(counted(&categorise, "skipped").await, 1.0);

    let inside = categorised_of(&categorise, history.inside.data.feedback_id, 2).await;
    assert_eq!(inside.len(), 2, "categorised again once");
    let again = &inside[1];
    assert_eq!(again.classifier_version, classifier_version("2026.12-r2"));
    let themes: Vec<&str> = again.themes.iter().map(|theme| theme.id.as_str()).collect();
    assert!(themes.contains(&"zebra"), "{themes:?}");
    let zebras = mentions_of(&categorise, "zebra").await;
    assert_eq!(zebras.len(), 1, "{zebras:#?}");
    assert_eq!(zebras[0].feedback_id, history.inside.data.feedback_id);
    for untouched in [&history.plain, &history.outside, &history.erased] {
        let events = categorised_of(&categorise, untouched.data.feedback_id, 1).await;
        assert_eq!(events.len(), 1, "not published again");
    }
    // Only the added theme's mention: the themes it had already are not mentioned again.
    let of_inside = categorise
        .events::<ThemeMention>(1)
        .await
        .into_iter()
        .filter(|keyed| keyed.event.feedback_id == history.inside.data.feedback_id)
        .count();
    assert_eq!(of_inside, inside[0].themes.len() + 1);

    // The same event again: the job is done, nothing runs. A later version with the same
    // themes over the same period runs, and finds every theme stored.
    categorise
        .publish_taxonomy(applied(&r2, Some(history.period)))
        .await;
    let r3 = zebra_taxonomy("2026.12-r3");
    categorise
        .publish_taxonomy(applied(&r3, Some(history.period)))
        .await;
    eventually(WAIT, "the second reclassification done", || async {
        (reclassified(&[&categorise]).await >= 6.0).then_some(())
    })
    .await;
    assert_eq!(counted(&categorise, "changed").await, 1.0);
    assert_eq!(counted(&categorise, "unchanged").await, 3.0);
    assert_eq!(counted(&categorise, "skipped").await, 2.0);
    assert_eq!(mentions_of(&categorise, "zebra").await.len(), 1);
    assert_eq!(
        categorised_of(&categorise, history.inside.data.feedback_id, 2)
            .await
            .len(),
        2
    );
    categorise.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_one_reclassification_once() {
    let categorise = spawn_categorise().await;
    let replica = categorise.replica().await;
    let history = history(&categorise).await;
    let r2 = zebra_taxonomy("2026.12-r2");
    categorise
        .publish_taxonomy(applied(&r2, Some(history.period)))
        .await;
    eventually(WAIT, "both replicas read the version", || async {
        let label = version_label("2026.12-r2");
        let both = categorise.metric(GAUGE, &[&label]).await == 1.0
            && replica.metric(GAUGE, &[&label]).await == 1.0;
        both.then_some(())
    })
    .await;
    eventually(WAIT, "the reclassification done", || async {
        (reclassified(&[&categorise, &replica]).await >= 3.0).then_some(())
    })
    .await;
    assert_eq!(categorise.records("taxonomy.v1", 1).await.len(), 1);
    assert_eq!(
        reclassified(&[&categorise, &replica]).await,
        3.0,
        "one run looked at the three feedback of the period"
    );
    assert_eq!(mentions_of(&categorise, "zebra").await.len(), 1);
    replica.stop().await;
    categorise.stop().await;
}
