//! notify end to end on the embedded broker, against a local webhook receiver and a
//! local SMTP relay: who gets told, in which language, on which channel, signed how;
//! retries, dead letters, rate limits, idempotency on replay and across a crash
//! mid-delivery, erasure, the notifications API and `notifications.v1`.//!
//! One binary (as zero2prod's `tests/api`), one module per concern; what they share is in
//! `helpers`.

mod auth;
mod cap;
mod email;
mod failures;
mod helpers;
mod ops_alerts;
mod preferences;
mod rate_limit;
mod restart;
mod webhook;
