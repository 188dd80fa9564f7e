//! The whole loop on the embedded broker: feedback in → categorised → action raised →
//! resolved through the ops API → exactly the consenting customers who complained about
//! the theme receive exactly one correctly signed message each, in their language.

use std::time::Duration;

use closeloop_tests::{assert_the_loop_closes, start_loop};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_closes_for_exactly_the_consenting_complainers() {
    let (stack, sink) = start_loop().await;
    assert_the_loop_closes(&stack, &sink).await;
    stack.stop().await;
}

/// What `closeloop up` waits for before it says it is up: every service ready, i.e.
/// every consumer in its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_started_loop_turns_ready() {
    let (mut stack, _sink) = start_loop().await;
    stack
        .wait_ready(Duration::from_secs(120))
        .await
        .expect("every service turns ready");
    for addr in [stack.ingest, stack.categorise, stack.trends, stack.notify] {
        let status = reqwest::get(format!("http://{addr}/readyz"))
            .await
            .expect("/readyz answers")
            .status();
        assert_eq!(status, reqwest::StatusCode::OK, "{addr}");
    }
    stack.stop().await;
}
