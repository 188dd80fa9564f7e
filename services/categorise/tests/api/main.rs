//! categorise end to end on the embedded broker with a fresh database per test: raw
//! feedback in, stored once, published as `feedback.categorised.v1` plus one
//! `feedback.themes.v1` record per theme; replays, poison records, readiness and metrics.
//!
//! One binary (as zero2prod's `tests/api`), one module per concern; what they share is in
//! `helpers`.

mod batches;
mod classification;
mod dead_letters;
mod helpers;
mod ops;
mod replay;
mod taxonomy;
