//! The end-to-end run's progress frame. Drawing it (a bar on a terminal, a plain line
//! every few seconds elsewhere) is the product's `closeloop::progress`, shared with
//! `closeloop import`.

pub use closeloop::progress::Progress;
use closeloop::progress::{bar, thousands};

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

impl closeloop::progress::Frame for Frame {
    fn bar_line(&self) -> String {
        format!(
            "  end-to-end {} {:>3}/{} s  accepted {:>9}  categorised {:>9}{}",
            bar(self.second, self.of, 30),
            self.second,
            self.of,
            thousands(self.accepted),
            thousands(self.categorised),
            self.draining
                .map_or(String::new(), |s| format!("  draining {s:>3} s")),
        )
    }

    fn plain_line(&self) -> String {
        let phase = match self.draining {
            None => format!("{}/{} s", self.second, self.of),
            Some(seconds) => format!("{} s done, draining {seconds} s", self.of),
        };
        format!(
            "  end-to-end {phase}: accepted {}, categorised {}",
            thousands(self.accepted),
            thousands(self.categorised)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop::progress::Frame as _;

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
            frame(30, None).plain_line(),
            "  end-to-end 30/60 s: accepted 150,000, categorised 149,500"
        );
        assert_eq!(
            frame(60, Some(12)).plain_line(),
            "  end-to-end 60 s done, draining 12 s: accepted 150,000, categorised 149,500"
        );
        assert!(!frame(1, None).plain_line().contains('\r'));
    }

    #[test]
    fn the_bar_fills_with_the_seconds() {
        let half = frame(30, None).bar_line();
        assert!(half.contains(&format!("[{}{}]", "#".repeat(15), " ".repeat(15))));
        let past_the_end = frame(90, Some(3)).bar_line();
        assert!(past_the_end.contains(&format!("[{}]", "#".repeat(30))));
        assert!(past_the_end.ends_with("draining   3 s"));
    }
}
