//! The end-to-end run's progress: a bar redrawn in place on a terminal, a plain line
//! every few seconds anywhere else.
//!
//! Redrawing with `\r` is right for a person watching, but a log file or CI output keeps
//! every frame (a 60 s run wrote hundreds of them into one line), so when stdout is not a
//! terminal the same figures go out as ordinary lines, throttled.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::thousands;

/// How often a plain line is printed when stdout is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// What the run has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Seconds of offered load done, of `of`.
    pub second: u64,
    pub of: u64,
    pub accepted: u64,
    pub categorised: u64,
    /// Seconds spent waiting for the categorised events after the load stopped.
    pub draining: Option<u64>,
}

pub struct Progress {
    plain: bool,
    last_line: Option<Instant>,
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise.
    pub fn for_stdout() -> Self {
        Self {
            plain: !std::io::stdout().is_terminal(),
            last_line: None,
        }
    }

    pub fn show(&mut self, frame: &Frame) {
        let now = Instant::now();
        if !self.plain {
            print!("\r{}", bar_line(frame));
            let _ = std::io::stdout().flush();
        } else if due(self.last_line, now, PLAIN_EVERY) {
            println!("{}", plain_line(frame));
            self.last_line = Some(now);
        }
    }

    /// The last frame, always shown, and the end of the bar's line.
    pub fn finish(&mut self, frame: &Frame) {
        if self.plain {
            println!("{}", plain_line(frame));
        } else {
            println!("\r{}", bar_line(frame));
        }
    }
}

/// Whether a plain line is due: the first one at once, then one per `every`.
fn due(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= every)
}

fn bar_line(frame: &Frame) -> String {
    let width = 30usize;
    let done = (frame.second as usize * width / frame.of.max(1) as usize).min(width);
    format!(
        "  end-to-end [{}{}] {:>3}/{} s  accepted {:>9}  categorised {:>9}{}",
        "#".repeat(done),
        " ".repeat(width - done),
        frame.second,
        frame.of,
        thousands(frame.accepted),
        thousands(frame.categorised),
        frame
            .draining
            .map_or(String::new(), |s| format!("  draining {s:>3} s")),
    )
}

fn plain_line(frame: &Frame) -> String {
    let phase = match frame.draining {
        None => format!("{}/{} s", frame.second, frame.of),
        Some(seconds) => format!("{} s done, draining {seconds} s", frame.of),
    };
    format!(
        "  end-to-end {phase}: accepted {}, categorised {}",
        thousands(frame.accepted),
        thousands(frame.categorised)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(second: u64, draining: Option<u64>) -> Frame {
        Frame {
            second,
            of: 60,
            accepted: 150_000,
            categorised: 149_500,
            draining,
        }
    }

    #[test]
    fn plain_lines_carry_no_carriage_return() {
        assert_eq!(
            plain_line(&frame(30, None)),
            "  end-to-end 30/60 s: accepted 150,000, categorised 149,500"
        );
        assert_eq!(
            plain_line(&frame(60, Some(12))),
            "  end-to-end 60 s done, draining 12 s: accepted 150,000, categorised 149,500"
        );
        assert!(!plain_line(&frame(1, None)).contains('\r'));
    }

    #[test]
    fn the_bar_fills_with_the_seconds() {
        let half = bar_line(&frame(30, None));
        assert!(half.contains(&format!("[{}{}]", "#".repeat(15), " ".repeat(15))));
        let past_the_end = bar_line(&frame(90, Some(3)));
        assert!(past_the_end.contains(&format!("[{}]", "#".repeat(30))));
        assert!(past_the_end.ends_with("draining   3 s"));
    }

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
}
