//! CPU time, read from `/proc`: CPU seconds per event is a figure that carries across
//! machines far better than events per second on a shared or smaller box, and the ratio of
//! two such figures measured in one run carries best.
//!
//! `closeloop up` runs its four services on one tokio runtime, so its threads are named
//! by what they are (tokio workers, librdkafka's threads, SQLite workers, the broker's
//! journal), not by service: the breakdown is per kind of thread. Linux only; elsewhere
//! the figures are simply missing.

use std::collections::BTreeMap;
use std::time::Duration;

/// Thread (or process) name and CPU time used so far, in clock ticks, from one
/// `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` line.
fn parse_stat(line: &str) -> Option<(String, u64)> {
    // The name is in parentheses and may itself hold spaces or ')': it ends at the last.
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?.to_owned();
    let mut fields = line.get(close + 1..)?.split_whitespace();
    // After the name: state (field 3) ... utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

/// Threads that do the same job share a name up to a number (`rdk:broker1`,
/// `sqlx-sqlite-worker-3`): the group is the name without it.
fn group_of(thread_name: &str) -> String {
    thread_name
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches(['-', '_', ':', '#'])
        .to_owned()
}

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0 // the value of every common Linux architecture
    }
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / ticks_per_second())
}

/// CPU time the calling thread has used so far.
pub fn this_thread() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks_to_duration(ticks))
}

/// CPU time of a process, whole and per group of threads, at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    /// The whole process, including threads that have ended.
    pub total: Duration,
    /// Live threads' CPU time by group (see [`group_of`]).
    pub groups: BTreeMap<String, Duration>,
}

impl CpuSample {
    /// `pid`'s CPU time now; `None` when `/proc` cannot tell (not Linux, process gone).
    pub fn of(pid: u32) -> Option<Self> {
        Self::read(&format!("/proc/{pid}"))
    }

    /// This process's CPU time now.
    pub fn of_self() -> Option<Self> {
        Self::read("/proc/self")
    }

    fn read(root: &str) -> Option<Self> {
        let (_, total) = parse_stat(&std::fs::read_to_string(format!("{root}/stat")).ok()?)?;
        let mut groups: BTreeMap<String, u64> = BTreeMap::new();
        // A thread that ends between listing and reading is skipped: its time still
        // counts in the total.
        if let Ok(tasks) = std::fs::read_dir(format!("{root}/task")) {
            for task in tasks.flatten() {
                let stat = std::fs::read_to_string(task.path().join("stat")).ok();
                if let Some((name, ticks)) = stat.as_deref().and_then(parse_stat) {
                    *groups.entry(group_of(&name)).or_default() += ticks;
                }
            }
        }
        Some(Self {
            total: ticks_to_duration(total),
            groups: groups
                .into_iter()
                .map(|(group, ticks)| (group, ticks_to_duration(ticks)))
                .collect(),
        })
    }

    /// CPU time used between `earlier` and this sample, per group; groups that used
    /// none are left out, the busiest first.
    pub fn since(&self, earlier: &CpuSample) -> (Duration, Vec<(String, Duration)>) {
        let total = self.total.saturating_sub(earlier.total);
        let mut groups: Vec<(String, Duration)> = self
            .groups
            .iter()
            .map(|(group, now)| {
                let before = earlier.groups.get(group).copied().unwrap_or_default();
                (group.clone(), now.saturating_sub(before))
            })
            .filter(|(_, used)| !used.is_zero())
            .collect();
        groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        (total, groups)
    }
}

/// CPU microseconds per event; `None` without events.
pub fn micros_per_event(cpu: Duration, events: u64) -> Option<f64> {
    (events > 0).then(|| cpu.as_secs_f64() * 1e6 / events as f64)
}

/// `cpu` split by group as "name 41%, other 12%": the largest `top`, the rest summed.
pub fn shares(total: Duration, groups: &[(String, Duration)], top: usize) -> String {
    if total.is_zero() {
        return String::new();
    }
    let share = |used: Duration| used.as_secs_f64() * 100.0 / total.as_secs_f64();
    let mut parts: Vec<String> = groups
        .iter()
        .take(top)
        .map(|(group, used)| format!("{group} {:.0}%", share(*used)))
        .collect();
    let rest: Duration = groups.iter().skip(top).map(|(_, used)| *used).sum();
    if !rest.is_zero() {
        parts.push(format!("other {:.0}%", share(rest)));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_user_plus_system_ticks() {
        let line = "4242 (tokio-runtime-w) S 1 4242 4242 0 -1 4194560 2145 0 0 0 \
                    731 96 0 0 20 0 9 0 123456 1048576 2048 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(("tokio-runtime-w".to_owned(), 731 + 96))
        );
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_is_read_to_the_last_parenthesis() {
        let line = "7 (odd) name (x)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat(line), Some(("odd) name (x)".to_owned(), 11)));
    }

    #[test]
    fn a_short_or_garbled_line_is_refused() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 many 6 0 0"), None);
    }

    #[test]
    fn numbered_threads_share_a_group() {
        assert_eq!(group_of("rdk:broker1"), "rdk:broker");
        assert_eq!(group_of("rdk:broker-1"), "rdk:broker");
        assert_eq!(group_of("sqlx-sqlite-worker-12"), "sqlx-sqlite-worker");
        assert_eq!(group_of("tokio-runtime-w"), "tokio-runtime-w");
        assert_eq!(group_of("rdk:main"), "rdk:main");
    }

    #[test]
    fn usage_since_an_earlier_sample_is_per_group_busiest_first() {
        let ms = Duration::from_millis;
        let earlier = CpuSample {
            total: ms(1000),
            groups: [("a".to_owned(), ms(500)), ("b".to_owned(), ms(400))].into(),
        };
        let later = CpuSample {
            total: ms(4000),
            groups: [
                ("a".to_owned(), ms(1500)),
                ("b".to_owned(), ms(400)),
                ("new".to_owned(), ms(2000)),
            ]
            .into(),
        };
        let (total, groups) = later.since(&earlier);
        assert_eq!(total, ms(3000));
        assert_eq!(
            groups,
            vec![("new".to_owned(), ms(2000)), ("a".to_owned(), ms(1000))]
        );
        assert_eq!(shares(total, &groups, 1), "new 67%, other 33%");
        assert_eq!(shares(Duration::ZERO, &groups, 1), "");
    }

    #[test]
    fn micros_per_event_needs_events() {
        assert_eq!(
            micros_per_event(Duration::from_secs(3), 1_000_000),
            Some(3.0)
        );
        assert_eq!(micros_per_event(Duration::from_secs(3), 0), None);
    }
}
