//! What operators and the orchestrator see: `/readyz` turns ready only once the
//! consumers have joined their groups, and `/metrics` counts what was categorised (and
//! what matched no theme).

use closeloop_bus::Fault;
use closeloop_testkit::eventually;

use crate::helpers::{build_categorise, feedback, status, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_joined_and_metrics_count_what_was_categorised() {
    let built = build_categorise().await;
    // With the only broker down, no consumer can join its group.
    built
        .broker
        .inject(Fault::BrokerDown(1))
        .expect("the broker goes down");
    let categorise = built.run();
    let addr = categorise.http_addr;
    eventually(WAIT, "/healthz answering", || async {
        (status(addr, "/healthz").await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(
        status(addr, "/readyz").await,
        Some(503),
        "serving, but not ready before the consumers joined"
    );

    categorise
        .broker
        .inject(Fault::BrokerUp(1))
        .expect("the broker comes back");
    eventually(WAIT, "/readyz ready once joined", || async {
        (status(addr, "/readyz").await == Some(200)).then_some(())
    })
    .await;

    let complaint = feedback(
        "emil",
        "en-GB",
        "The parcel came a week late, really disappointing.",
        1,
    );
    categorise.publish(&complaint).await;
    let categorised = eventually(WAIT, "the feedback counted", || async {
        let count = categorise
            .metric(
                "closeloop_feedback_categorised_total",
                &[r#"language="en""#, r#"sentiment="negative""#],
            )
            .await;
        (count >= 1.0).then_some(count)
    })
    .await;
    assert_eq!(categorised, 1.0);
    assert!(
        categorise
            .metric(
                "closeloop_theme_mentions_total",
                &[r#"theme="delivery_time""#]
            )
            .await
            >= 1.0
    );
    // Feedback no theme covers is counted as unmatched, by language; matched feedback
    // is not.
    let unmatched = |language: &'static str| {
        let categorise = &categorise;
        async move {
            let label = format!(r#"language="{language}""#);
            categorise
                .metric("closeloop_feedback_unmatched_total", &[label.as_str()])
                .await
        }
    };
    assert_eq!(
        unmatched("en").await,
        0.0,
        "the series exists from the start"
    );
    let new_topic = feedback(
        "frieda",
        "de-DE",
        "Meine Treuepunkte sind über Nacht verschwunden.",
        3,
    );
    categorise.publish(&new_topic).await;
    eventually(WAIT, "the unmatched feedback counted", || async {
        (unmatched("de").await == 1.0).then_some(())
    })
    .await;
    assert_eq!(unmatched("en").await, 0.0);
    categorise.stop().await;
}
