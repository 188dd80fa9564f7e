//! Arbitrary bytes as the body of `POST /v1/feedback` and `POST /v1/feedback/batch`,
//! through the same parse-and-validate function the endpoints call. It must never panic,
//! a rejection must be a 4xx problem, and accepted feedback must obey the limits and
//! survive the trip onto the bus (`feedback.raw.v1`) unchanged.
#![no_main]

use chrono::{TimeZone, Utc};
use closeloop_events::{decode, Envelope, Feedback};
use closeloop_ingest::api::{parse_feedback_body, Shape};
use closeloop_ingest::submission::Limits;
use libfuzzer_sys::fuzz_target;

const MAX_BATCH: usize = 100;

fuzz_target!(|data: &[u8]| {
    // A fixed clock keeps every run reproducible.
    let Some(now) = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single() else {
        return;
    };
    let limits = Limits::default();
    for shape in [Shape::Single, Shape::Batch] {
        match parse_feedback_body(shape, data, "shopdesk", now, &limits, MAX_BATCH) {
            Err(problem) => assert!(
                (400..500).contains(&problem.status),
                "{shape:?}: rejected with status {}: {problem:?}",
                problem.status
            ),
            Ok(feedback) => {
                assert!(!feedback.is_empty() && feedback.len() <= MAX_BATCH);
                for item in feedback {
                    check(&item, &limits, now);
                }
            }
        }
    }
});

fn check(item: &Feedback, limits: &Limits, now: chrono::DateTime<Utc>) {
    assert!(!item.text.trim().is_empty(), "empty text accepted");
    assert!(item.text.chars().count() <= limits.max_text_chars);
    assert!(!item.customer.id.is_empty() && item.customer.id.len() <= 200);
    assert!(item.rating.is_none_or(|r| (1..=5).contains(&r)));
    assert!(item.nps.is_none_or(|n| n <= 10));
    assert!(item.given_at <= now + limits.max_future_skew);
    // What ingest publishes, categorise must decode to the same feedback.
    let envelope = Envelope::with_id(item.feedback_id, item.given_at, item.clone());
    let bytes = match serde_json::to_vec(&envelope) {
        Ok(bytes) => bytes,
        Err(error) => panic!("accepted feedback does not encode: {error}"),
    };
    match decode::<Feedback>(&bytes) {
        Ok(back) => assert_eq!(back, envelope, "accepted feedback changed on the bus"),
        Err(error) => panic!(
            "accepted feedback does not decode: {error}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}
