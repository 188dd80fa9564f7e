//! The all-in-one `closeloop` binary's library: the in-process stack (`up`), the demo and
//! its corpus, `classify` (JSON lines) and the progress display it shares with the lab.
//! Tests and the lab tools (`tools/lab`: bench, eval) drive the same code.

pub mod classify_cmd;
pub mod demo;
pub mod demo_corpus;
pub mod logs;
pub mod progress;
pub mod stack;
pub mod up;
