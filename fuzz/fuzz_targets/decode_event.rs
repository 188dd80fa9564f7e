//! Arbitrary bytes decoded as every event type the way consumers decode them
//! (`closeloop_events::decode`, called by the bus consumer loop). Decoding must never panic,
//! and whatever decodes must survive a re-encode and decode unchanged: what a service
//! re-publishes (or an operator replays from a dead-letter topic) must mean the same thing.
#![no_main]

use closeloop_events::{
    decode, ActionEvent, CustomerPreferences, Envelope, ErasureRequest, Event, Feedback,
    FeedbackCategorised, NotificationOutcome, ThemeMention,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: Event + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(first) = decode::<T>(data) else {
        return;
    };
    let bytes = match serde_json::to_vec(&first) {
        Ok(bytes) => bytes,
        Err(error) => panic!("{}: decoded event does not encode: {error}", T::SCHEMA),
    };
    let second: Envelope<T> = match decode(&bytes) {
        Ok(second) => second,
        Err(error) => panic!(
            "{}: re-encoded event does not decode: {error}\n{}",
            T::SCHEMA,
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(first, second, "{}: round trip changed the event", T::SCHEMA);
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Feedback>(data);
    round_trip::<FeedbackCategorised>(data);
    round_trip::<ThemeMention>(data);
    round_trip::<ActionEvent>(data);
    round_trip::<NotificationOutcome>(data);
    round_trip::<ErasureRequest>(data);
    round_trip::<CustomerPreferences>(data);
});
