//! The one copy of what closeloop's test suites need around the code under test: logs
//! on demand, waiting for an outcome instead of sleeping, reading what landed on a
//! topic, and reading a service's Prometheus metrics.
//!
//! A dev-dependency only: nothing here is built into a service. The helpers panic with
//! a message saying what did not happen, because a panic is how a test fails; they are
//! meant to be called from tests, never from product code.

mod metrics;
mod topic;

use std::future::Future;
use std::time::{Duration, Instant};

pub use metrics::{metric_value, scrape_metrics, series_names};
pub use topic::{read_records, read_topic, Record};

/// How long [`eventually`] waits between two checks.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Logs of the services under test, when `RUST_LOG` asks for them (then filtered by it);
/// silent otherwise. Calling it again, from every test, is harmless.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        closeloop_telemetry::init_tracing(false);
    }
}

/// Polls `check` every 100 ms until it returns `Some`, and returns that value; panics
/// with "timed out waiting for: {what}" once `timeout` has passed.
///
/// `check` runs at least once, and once more after the deadline would pass, so a slow
/// check does not fail a test that would have succeeded.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The body of a GET of `url` as text; panics (naming the URL) when there is none.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"))
        .text()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: reading the body: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eventually_returns_the_first_value() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(5), "the third call", || {
            calls += 1;
            let seen = calls;
            async move { (seen == 3).then_some(seen) }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out waiting for: never")]
    async fn eventually_gives_up_with_what_it_waited_for() {
        eventually(Duration::from_millis(50), "never", || async { None::<()> }).await;
    }
}
