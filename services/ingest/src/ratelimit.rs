//! Per-source rate limit: one misbehaving (or compromised) source system cannot flood
//! `feedback.raw.v1` and starve the others.
//!
//! GCRA ("generic cell rate algorithm"): a token bucket kept as one number per source,
//! the theoretical arrival time (TAT) of the next event at the sustained rate. A request
//! costs one token per event (a batch of 50 costs 50); a source may be up to `burst`
//! events ahead of schedule. Unlike notify's limiter (which postpones outbox rows to a
//! wall-clock millisecond), this one counts in nanoseconds of a monotonic clock, as
//! the default rate (10k events/s) is finer than a millisecond, and it answers how long
//! to wait instead of waiting: the caller answers 429 with `Retry-After`.
//!
//! The sources are the configured API keys, a fixed set, so the map never grows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    /// Nanoseconds per event at the sustained rate.
    interval_ns: f64,
    /// How far ahead of schedule a source may get: `burst` events.
    tolerance_ns: u64,
    burst: u32,
    epoch: Instant,
    /// Per source: the TAT, in nanoseconds since `epoch`.
    tat_ns: Mutex<HashMap<String, u64>>,
}

impl RateLimiter {
    /// `per_second` events per second sustained (> 0), `burst` at once (at least 1).
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = burst.max(1);
        let interval_ns = 1e9 / per_second;
        Self {
            interval_ns,
            tolerance_ns: (interval_ns * f64::from(burst)) as u64,
            burst,
            epoch: Instant::now(),
            tat_ns: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` events' worth for `source` now, or says how long until they would
    /// be available (`Err`), taking nothing.
    pub fn try_acquire(&self, source: &str, cost: u32) -> Result<(), Duration> {
        let now_ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.try_acquire_at(source, cost, now_ns)
    }

    fn try_acquire_at(&self, source: &str, cost: u32, now_ns: u64) -> Result<(), Duration> {
        // A request larger than the burst could never pass; start-up refuses such a
        // configuration, and this keeps the limiter total anyway.
        let cost = cost.min(self.burst);
        let increment = (self.interval_ns * f64::from(cost)) as u64;
        // A poisoned lock only means another request panicked mid-update of one number;
        // the map is still usable.
        let mut tats = self
            .tat_ns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tat = tats.get(source).copied().unwrap_or(now_ns).max(now_ns);
        let new_tat = tat.saturating_add(increment);
        let allowed_from = new_tat.saturating_sub(self.tolerance_ns);
        if allowed_from > now_ns {
            return Err(Duration::from_nanos(allowed_from - now_ns));
        }
        match tats.get_mut(source) {
            Some(stored) => *stored = new_tat,
            None => {
                tats.insert(source.to_owned(), new_tat);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn allows_the_burst_then_the_sustained_rate() {
        let limiter = RateLimiter::new(2.0, 4); // one event per 500 ms, 4 at once
        let t = 100 * SECOND;
        assert_eq!(limiter.try_acquire_at("a", 3, t), Ok(()));
        assert_eq!(limiter.try_acquire_at("a", 1, t), Ok(()));
        assert_eq!(
            limiter.try_acquire_at("a", 1, t),
            Err(Duration::from_millis(500))
        );
        // Refused requests take nothing: still 500 ms to wait, then one event passes.
        assert_eq!(
            limiter.try_acquire_at("a", 1, t + SECOND / 4),
            Err(Duration::from_millis(250))
        );
        assert_eq!(limiter.try_acquire_at("a", 1, t + SECOND / 2), Ok(()));
        assert!(limiter.try_acquire_at("a", 1, t + SECOND / 2).is_err());
    }

    #[test]
    fn a_batch_costs_one_token_per_event() {
        let limiter = RateLimiter::new(10.0, 50);
        let t = SECOND;
        assert_eq!(limiter.try_acquire_at("a", 50, t), Ok(()));
        // 20 events need 2 s of refill at 10/s.
        assert_eq!(
            limiter.try_acquire_at("a", 20, t),
            Err(Duration::from_secs(2))
        );
        assert_eq!(limiter.try_acquire_at("a", 20, t + 2 * SECOND), Ok(()));
    }

    #[test]
    fn sources_have_their_own_buckets_and_idle_ones_refill() {
        let limiter = RateLimiter::new(1.0, 2);
        let t = 10 * SECOND;
        assert!(limiter.try_acquire_at("a", 2, t).is_ok());
        assert!(limiter.try_acquire_at("a", 1, t).is_err());
        assert!(limiter.try_acquire_at("b", 2, t).is_ok());
        // Long idle: the full burst again, but not more.
        let later = t + 3600 * SECOND;
        assert!(limiter.try_acquire_at("a", 2, later).is_ok());
        assert!(limiter.try_acquire_at("a", 1, later).is_err());
    }

    #[test]
    fn a_request_larger_than_the_burst_is_not_refused_forever() {
        let limiter = RateLimiter::new(1.0, 5);
        assert!(limiter.try_acquire_at("a", 100, SECOND).is_ok());
        assert!(limiter.try_acquire_at("a", 1, SECOND).is_err());
    }
}
