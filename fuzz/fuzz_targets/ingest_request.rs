//! Arbitrary bytes as the body of `POST /v1/feedback` and `POST /v1/feedback/batch`,
//! through the same parse-and-validate function the endpoints call, both as sent and as a
//! `Content-Encoding: gzip` body (inflated by the same function, with its size limit). It
//! must never panic, a rejection must be a 4xx problem, and accepted feedback must obey
//! the limits (visible text, `occurred_at` in range, NFC customer ids without control
//! characters) and survive the trip onto the bus (`feedback.raw.v1`) unchanged.
#![no_main]

use chrono::{TimeZone, Utc};
use closeloop_events::{decode, Envelope, Feedback};
use closeloop_ingest::api::{parse_feedback_body, Shape};
use closeloop_ingest::submission::Limits;
use libfuzzer_sys::fuzz_target;
use unicode_normalization::is_nfc;

const MAX_BATCH: usize = 100;
/// Small, so inflating stops early and a bomb costs the fuzzer little.
const MAX_BODY_BYTES: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // A fixed clock keeps every run reproducible.
    let Some(now) = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single() else {
        return;
    };
    let limits = Limits::default();
    parse(data, now, &limits);
    match closeloop_http::inflate_gzip(data, MAX_BODY_BYTES) {
        Ok(inflated) => {
            assert!(inflated.len() <= MAX_BODY_BYTES, "inflated past the limit");
            parse(&inflated, now, &limits);
        }
        Err(problem) => assert!(
            matches!(problem.status, 400 | 413),
            "gzip refused with status {}: {problem:?}",
            problem.status
        ),
    }
});

fn parse(data: &[u8], now: chrono::DateTime<Utc>, limits: &Limits) {
    for shape in [Shape::Single, Shape::Batch] {
        match parse_feedback_body(shape, data, "shopdesk", now, limits, MAX_BATCH) {
            Err(problem) => assert!(
                (400..500).contains(&problem.status),
                "{shape:?}: rejected with status {}: {problem:?}",
                problem.status
            ),
            Ok(feedback) => {
                assert!(!feedback.is_empty() && feedback.len() <= MAX_BATCH);
                for item in feedback {
                    check(&item, limits, now);
                }
            }
        }
    }
}

fn check(item: &Feedback, limits: &Limits, now: chrono::DateTime<Utc>) {
    assert!(!item.text.trim().is_empty(), "empty text accepted");
    assert!(item.text.chars().count() <= limits.max_text_chars);
    assert!(!item.customer.id.is_empty() && item.customer.id.len() <= 200);
    assert!(item.rating.is_none_or(|r| (1..=5).contains(&r)));
    assert!(item.nps.is_none_or(|n| n <= 10));
    assert!(item.given_at <= now + limits.max_future_skew);
    assert!(
        item.given_at >= now - limits.max_event_age,
        "too old accepted"
    );
    assert!(
        item.text
            .chars()
            .any(|c| !c.is_whitespace() && !c.is_control()),
        "text without a visible character accepted"
    );
    assert!(is_nfc(&item.customer.id), "customer id not in NFC");
    assert!(!item.customer.id.chars().any(char::is_control));
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
