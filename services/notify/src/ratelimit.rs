//! Per-destination rate limit (a webhook receiver's host, an e-mail domain), so a
//! resolved action with thousands of recipients does not flood one receiver.
//!
//! GCRA ("generic cell rate algorithm", a token bucket kept as one timestamp per
//! destination): a destination may take `burst` sends at once and then one per
//! `1 / rate` seconds. A send that is not allowed yet is not waited for in the worker
//! (that would hold up every other destination): the caller postpones the outbox row
//! to the returned time instead.

use std::collections::HashMap;
use std::time::Duration;

/// Destinations not seen for this long are forgotten (their bucket is full again
/// anyway), so the map does not grow with every host ever contacted.
const IDLE_FORGET_MS: i64 = 10 * 60 * 1000;

#[derive(Debug)]
pub struct RateLimiter {
    /// Time between two sends at the sustained rate.
    interval_ms: i64,
    /// How far ahead of schedule a destination may get (the burst).
    tolerance_ms: i64,
    /// Per destination: the theoretical arrival time of the next send.
    next_at_ms: HashMap<String, i64>,
    last_sweep_ms: i64,
}

impl RateLimiter {
    /// `per_second` sends per second sustained, `burst` at once (both at least 1).
    pub fn new(per_second: f64, burst: u32) -> Self {
        let interval = Duration::from_secs_f64(1.0 / per_second.max(0.001));
        let interval_ms = (interval.as_millis() as i64).max(1);
        Self {
            interval_ms,
            tolerance_ms: interval_ms * i64::from(burst.max(1) - 1),
            next_at_ms: HashMap::new(),
            last_sweep_ms: 0,
        }
    }

    /// Takes a send slot for `destination` at `now_ms` if one is free (`Ok`), else
    /// says from when on one will be (`Err(at_ms)`), without taking it.
    pub fn try_acquire(&mut self, destination: &str, now_ms: i64) -> Result<(), i64> {
        self.sweep(now_ms);
        let next_at = self.next_at_ms.get(destination).copied().unwrap_or(now_ms);
        let allowed_from = next_at - self.tolerance_ms;
        if now_ms < allowed_from {
            return Err(allowed_from);
        }
        self.next_at_ms.insert(
            destination.to_owned(),
            next_at.max(now_ms) + self.interval_ms,
        );
        Ok(())
    }

    fn sweep(&mut self, now_ms: i64) {
        if now_ms - self.last_sweep_ms < IDLE_FORGET_MS {
            return;
        }
        self.last_sweep_ms = now_ms;
        self.next_at_ms
            .retain(|_, next_at| *next_at + IDLE_FORGET_MS > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_sustained_rate() {
        let mut limiter = RateLimiter::new(2.0, 3); // one per 500 ms, 3 at once
        let t = 1_000_000;
        assert_eq!(limiter.try_acquire("a", t), Ok(()));
        assert_eq!(limiter.try_acquire("a", t), Ok(()));
        assert_eq!(limiter.try_acquire("a", t), Ok(()));
        assert_eq!(limiter.try_acquire("a", t), Err(t + 500));
        assert_eq!(limiter.try_acquire("a", t + 499), Err(t + 500));
        assert_eq!(limiter.try_acquire("a", t + 500), Ok(()));
        assert_eq!(limiter.try_acquire("a", t + 500), Err(t + 1000));
        // Another destination has its own bucket.
        assert_eq!(limiter.try_acquire("b", t + 500), Ok(()));
    }

    #[test]
    fn an_idle_destination_gets_its_burst_back() {
        let mut limiter = RateLimiter::new(1.0, 2);
        let t = 5_000;
        assert!(limiter.try_acquire("a", t).is_ok());
        assert!(limiter.try_acquire("a", t).is_ok());
        assert!(limiter.try_acquire("a", t).is_err());
        let later = t + 60_000;
        assert!(limiter.try_acquire("a", later).is_ok());
        assert!(limiter.try_acquire("a", later).is_ok());
        assert!(limiter.try_acquire("a", later).is_err());
    }

    #[test]
    fn forgets_idle_destinations() {
        let mut limiter = RateLimiter::new(10.0, 1);
        for i in 0..100 {
            limiter.try_acquire(&format!("host-{i}"), 0).unwrap();
        }
        limiter.try_acquire("fresh", IDLE_FORGET_MS * 2).unwrap();
        assert_eq!(limiter.next_at_ms.len(), 1);
    }
}
