//! The whole loop on the embedded broker: feedback in → categorised → action raised →
//! resolved through the ops API → exactly the consenting customers who complained about
//! the theme receive exactly one correctly signed message each, in their language.

use closeloop_tests::{assert_the_loop_closes, start_loop};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_closes_for_exactly_the_consenting_complainers() {
    let (stack, sink) = start_loop().await;
    assert_the_loop_closes(&stack, &sink).await;
    stack.stop().await;
}
