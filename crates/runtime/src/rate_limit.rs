//! A keyed rate limit: ingest limits each source, notify each destination (a webhook
//! receiver's host, an e-mail domain), so one key can neither flood nor starve the rest.
//!
//! GCRA ("generic cell rate algorithm"): a token bucket kept as one number per key, the
//! theoretical arrival time (TAT) of the next unit at the sustained rate, in nanoseconds
//! of a monotonic clock (ingest's default rate, 10k events/s, is finer than a
//! millisecond). A key may be up to `burst` units ahead of schedule. It never waits: it
//! says how long until the units would be available, and the caller answers 429 with
//! `Retry-After` (ingest) or postpones the delivery (notify).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Keys not seen for this long are forgotten (their bucket is full again anyway), so
/// the map does not grow with every destination ever contacted.
const IDLE_FORGET: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
pub struct RateLimiter {
    /// Nanoseconds per unit at the sustained rate.
    interval_ns: f64,
    /// How far ahead of schedule a key may get: `burst` units.
    tolerance_ns: u64,
    burst: u32,
    epoch: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Per key: the TAT, in nanoseconds since `epoch`.
    tat_ns: HashMap<String, u64>,
    last_sweep_ns: u64,
}

impl RateLimiter {
    /// `per_second` units per second sustained (> 0), `burst` at once (at least 1).
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = burst.max(1);
        let interval_ns = 1e9 / per_second.max(1e-6);
        Self {
            interval_ns,
            tolerance_ns: (interval_ns * f64::from(burst)) as u64,
            burst,
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    /// Takes `cost` units for `key` now, or says how long until they would be available
    /// (`Err`), taking nothing.
    pub fn try_acquire(&self, key: &str, cost: u32) -> Result<(), Duration> {
        self.try_acquire_at(key, cost, self.epoch.elapsed())
    }

    /// [`RateLimiter::try_acquire`] at `now`, a time since the limiter was created.
    pub fn try_acquire_at(&self, key: &str, cost: u32, now: Duration) -> Result<(), Duration> {
        let now_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        // A request larger than the burst could never pass; start-up refuses such a
        // configuration, and this keeps the limiter total anyway.
        let cost = cost.min(self.burst);
        let increment = (self.interval_ns * f64::from(cost)) as u64;
        // A poisoned lock only means another caller panicked mid-update of one number.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sweep(now_ns);
        let tat = state.tat_ns.get(key).copied().unwrap_or(now_ns).max(now_ns);
        let new_tat = tat.saturating_add(increment);
        let allowed_from = new_tat.saturating_sub(self.tolerance_ns);
        if allowed_from > now_ns {
            return Err(Duration::from_nanos(allowed_from - now_ns));
        }
        match state.tat_ns.get_mut(key) {
            Some(stored) => *stored = new_tat,
            None => {
                state.tat_ns.insert(key.to_owned(), new_tat);
            }
        }
        Ok(())
    }
}

impl State {
    fn sweep(&mut self, now_ns: u64) {
        let idle_ns = IDLE_FORGET.as_nanos() as u64;
        if now_ns.saturating_sub(self.last_sweep_ns) < idle_ns {
            return;
        }
        self.last_sweep_ns = now_ns;
        self.tat_ns
            .retain(|_, tat| tat.saturating_add(idle_ns) > now_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn allows_the_burst_then_the_sustained_rate() {
        let limiter = RateLimiter::new(2.0, 4); // one unit per 500 ms, 4 at once
        let t = 100 * SECOND;
        assert_eq!(limiter.try_acquire_at("a", 3, t), Ok(()));
        assert_eq!(limiter.try_acquire_at("a", 1, t), Ok(()));
        assert_eq!(
            limiter.try_acquire_at("a", 1, t),
            Err(Duration::from_millis(500))
        );
        // Refused requests take nothing: still 250 ms to wait, then one unit passes.
        assert_eq!(
            limiter.try_acquire_at("a", 1, t + SECOND / 4),
            Err(Duration::from_millis(250))
        );
        assert_eq!(limiter.try_acquire_at("a", 1, t + SECOND / 2), Ok(()));
        assert!(limiter.try_acquire_at("a", 1, t + SECOND / 2).is_err());
        // Another key has its own bucket.
        assert_eq!(limiter.try_acquire_at("b", 4, t + SECOND / 2), Ok(()));
    }

    #[test]
    fn a_batch_costs_one_unit_per_event() {
        let limiter = RateLimiter::new(10.0, 50);
        assert_eq!(limiter.try_acquire_at("a", 50, SECOND), Ok(()));
        // 20 events need 2 s of refill at 10/s.
        assert_eq!(
            limiter.try_acquire_at("a", 20, SECOND),
            Err(Duration::from_secs(2))
        );
        assert_eq!(limiter.try_acquire_at("a", 20, 3 * SECOND), Ok(()));
    }

    #[test]
    fn an_idle_key_gets_its_burst_back_but_not_more() {
        let limiter = RateLimiter::new(1.0, 2);
        let t = 10 * SECOND;
        assert!(limiter.try_acquire_at("a", 2, t).is_ok());
        assert!(limiter.try_acquire_at("a", 1, t).is_err());
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

    #[test]
    fn forgets_idle_keys() {
        let limiter = RateLimiter::new(10.0, 1);
        for i in 0..100 {
            limiter
                .try_acquire_at(&format!("host-{i}"), 1, SECOND)
                .unwrap();
        }
        limiter
            .try_acquire_at("fresh", 1, SECOND + 2 * IDLE_FORGET)
            .unwrap();
        let state = limiter.state.lock().unwrap();
        assert_eq!(state.tat_ns.len(), 1);
    }
}
