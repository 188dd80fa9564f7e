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

/// What the bench reads of one `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    /// Thread or process name.
    name: String,
    parent: u32,
    /// CPU time used so far, user plus system, in clock ticks.
    ticks: u64,
    /// CPU time of its children that ended and were waited for, in clock ticks.
    reaped_children_ticks: u64,
}

fn parse_stat(line: &str) -> Option<Stat> {
    // The name is in parentheses and may itself hold spaces or ')': it ends at the last.
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    // After the name: state (field 3), ppid (4) ... utime (14), stime (15), cutime (16),
    // cstime (17).
    let field = |number: usize| fields.get(number - 3).copied();
    let parent: u32 = field(4)?.parse().ok()?;
    let utime: u64 = field(14)?.parse().ok()?;
    let stime: u64 = field(15)?.parse().ok()?;
    let cutime: i64 = field(16)?.parse().ok()?;
    let cstime: i64 = field(17)?.parse().ok()?;
    Some(Stat {
        name,
        parent,
        ticks: utime + stime,
        reaped_children_ticks: u64::try_from(cutime.max(0) + cstime.max(0)).unwrap_or(0),
    })
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
    parse_stat(&stat).map(|stat| ticks_to_duration(stat.ticks))
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
        let total = parse_stat(&std::fs::read_to_string(format!("{root}/stat")).ok()?)?.ticks;
        let mut groups: BTreeMap<String, u64> = BTreeMap::new();
        // A thread that ends between listing and reading is skipped: its time still
        // counts in the total.
        if let Ok(tasks) = std::fs::read_dir(format!("{root}/task")) {
            for task in tasks.flatten() {
                let stat = std::fs::read_to_string(task.path().join("stat")).ok();
                if let Some(stat) = stat.as_deref().and_then(parse_stat) {
                    *groups.entry(group_of(&stat.name)).or_default() += stat.ticks;
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

/// CPU time the PostgreSQL server on this machine has used so far: every `postgres`
/// process, plus what the postmaster's ended children used (the backends of connections
/// already closed); `None` when no PostgreSQL runs here.
pub fn postgres_server() -> Option<Duration> {
    let stats: Vec<(u32, Stat)> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = parse_stat(&std::fs::read_to_string(entry.path().join("stat")).ok()?)?;
            Some((pid, stat))
        })
        .filter(|(_, stat)| stat.name == "postgres")
        .collect();
    postgres_ticks(&stats).map(ticks_to_duration)
}

/// The server's ticks among `postgres` processes: each one's own, and those of the
/// postmaster's ended children (the postmaster is the one whose parent is not a `postgres`
/// process; every other server process is its child, so only its reaped ticks count).
fn postgres_ticks(processes: &[(u32, Stat)]) -> Option<u64> {
    if processes.is_empty() {
        return None;
    }
    let pids: std::collections::HashSet<u32> = processes.iter().map(|(pid, _)| *pid).collect();
    Some(
        processes
            .iter()
            .map(|(_, stat)| {
                stat.ticks
                    + if pids.contains(&stat.parent) {
                        0
                    } else {
                        stat.reaped_children_ticks
                    }
            })
            .sum(),
    )
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
            Some(Stat {
                name: "tokio-runtime-w".to_owned(),
                parent: 1,
                ticks: 731 + 96,
                reaped_children_ticks: 0,
            })
        );
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_is_read_to_the_last_parenthesis() {
        let line = "7 (odd) name (x)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        let stat = parse_stat(line).expect("a stat line");
        assert_eq!((stat.name.as_str(), stat.ticks), ("odd) name (x)", 11));
    }

    #[test]
    fn a_short_or_garbled_line_is_refused() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 many 6 0 0"), None);
    }

    #[test]
    fn the_postgres_server_is_its_processes_and_the_postmasters_reaped_backends() {
        let process = |parent, ticks, reaped_children_ticks| Stat {
            name: "postgres".to_owned(),
            parent,
            ticks,
            reaped_children_ticks,
        };
        let line = "15715 (postgres) S 1 15715 15715 0 -1 4194560 9 0 0 0 120 30 7000 900 20";
        assert_eq!(parse_stat(line), Some(process(1, 150, 7900)));
        let server = [
            (15715, process(1, 150, 7900)),
            (15716, process(15715, 40, 0)),
            // Only the postmaster's reaped children are the server's ended processes.
            (15800, process(15715, 500, 60)),
        ];
        assert_eq!(postgres_ticks(&server), Some(150 + 7900 + 40 + 500));
        assert_eq!(postgres_ticks(&[]), None);
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
