//! Progress of a long run on stdout: a bar redrawn in place on a terminal, a plain line
//! every few seconds anywhere else. `closeloop import` and the lab's bench use it.
//!
//! Redrawing with `\r` is right for a person watching, but a log file or CI output keeps
//! every frame (a 60 s run wrote hundreds of them into one line), so when stdout is not a
//! terminal the same figures go out as ordinary lines, throttled.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a plain line is printed when stdout is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// What a run shows of itself: one line to redraw in place, one to print as it is.
pub trait Frame {
    /// The line redrawn on a terminal (no line break).
    fn bar_line(&self) -> String;
    /// The line printed every few seconds elsewhere (no carriage return).
    fn plain_line(&self) -> String;
}

pub struct Progress {
    plain: bool,
    every: Duration,
    last_line: Option<Instant>,
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise.
    pub fn for_stdout() -> Self {
        Self {
            plain: !std::io::stdout().is_terminal(),
            every: PLAIN_EVERY,
            last_line: None,
        }
    }

    pub fn show(&mut self, frame: &impl Frame) {
        let now = Instant::now();
        if !self.plain {
            print!("\r{}", frame.bar_line());
            let _ = std::io::stdout().flush();
        } else if due(self.last_line, now, self.every) {
            println!("{}", frame.plain_line());
            self.last_line = Some(now);
        }
    }

    /// The last frame, always shown, and the end of the bar's line.
    pub fn finish(&mut self, frame: &impl Frame) {
        if self.plain {
            println!("{}", frame.plain_line());
        } else {
            println!("\r{}", frame.bar_line());
        }
    }
}

/// Whether a plain line is due: the first one at once, then one per `every`.
fn due(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= every)
}

/// `[#####     ]`: `done` of `of`, `width` characters between the brackets.
pub fn bar(done: u64, of: u64, width: usize) -> String {
    let filled = if of == 0 {
        0
    } else {
        ((done.min(of) as u128 * width as u128) / of as u128) as usize
    };
    format!("[{}{}]", "#".repeat(filled), " ".repeat(width - filled))
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as a person reads it: `42 s`, `3 min 05 s`, `2 h 07 min`.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {:02} s", seconds / 60, seconds % 60),
        _ => format!("{} h {:02} min", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_throttled() {
        let start = Instant::now();
        let every = Duration::from_secs(5);
        assert!(due(None, start, every), "the first line at once");
        assert!(!due(Some(start), start + Duration::from_secs(4), every));
        assert!(due(Some(start), start + every, every));
        // A clock reading before the last line (never expected) does not print.
        assert!(!due(Some(start + every), start, every));
    }

    #[test]
    fn the_bar_fills_in_proportion_and_stops_at_full() {
        assert_eq!(bar(0, 10, 4), "[    ]");
        assert_eq!(bar(5, 10, 4), "[##  ]");
        assert_eq!(bar(15, 10, 4), "[####]");
        assert_eq!(bar(3, 0, 4), "[    ]", "nothing known of the total");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human_duration(Duration::from_secs(42)), "42 s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(human_duration(Duration::from_secs(7620)), "2 h 07 min");
    }
}
