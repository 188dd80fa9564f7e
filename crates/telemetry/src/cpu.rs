//! CPU time spent polling a future, whichever worker threads it ran on: the CPU cost of a
//! service's handlers, even when several services share one process (`closeloop up`).
//!
//! A future's CPU time cannot be read from the process or from one thread (a task moves
//! between workers and shares them with others), so each poll reads the polling thread's
//! CPU clock before and after. Work a future hands to other threads (librdkafka's, the
//! blocking pool, SQLite's workers) is not its own and is not counted.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::Counter;

/// CPU time the calling thread has used so far; `None` where the clock is missing.
pub fn thread_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec it is given.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (status == 0).then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

pin_project_lite::pin_project! {
    /// A future whose polls add their CPU time to a counter of seconds.
    pub struct CpuTimed<F> {
        #[pin]
        inner: F,
        seconds: Counter,
    }
}

/// Counts the CPU time spent polling `future` into `seconds`.
pub fn cpu_timed<F: Future>(future: F, seconds: Counter) -> CpuTimed<F> {
    CpuTimed {
        inner: future,
        seconds,
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let before = thread_time();
        let poll = this.inner.poll(cx);
        if let (Some(before), Some(after)) = (before, thread_time()) {
            this.seconds
                .inc_by(after.saturating_sub(before).as_secs_f64());
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_done_in_the_future_is_counted_and_waiting_is_not() {
        let seconds = Counter::new("cpu_seconds_total", "test").unwrap();
        cpu_timed(
            async {
                tokio::time::sleep(Duration::from_millis(200)).await;
            },
            seconds.clone(),
        )
        .await;
        let asleep = seconds.get();
        assert!(asleep < 0.1, "sleeping counted {asleep} s of CPU");

        cpu_timed(
            async {
                let started = thread_time().unwrap();
                // Busy until the thread's own clock moved 50 ms.
                while thread_time().unwrap() - started < Duration::from_millis(50) {
                    std::hint::black_box(0u64);
                }
            },
            seconds.clone(),
        )
        .await;
        assert!(seconds.get() - asleep >= 0.05, "counted {}", seconds.get());
    }
}
