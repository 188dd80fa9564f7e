//! The all-in-one `closeloop` binary's library: the in-process stack (`up`), the demo and
//! its corpus, `classify` (JSON lines), `import` (history from exports) and the progress
//! display they share with the lab. Tests and the lab tools (`tools/lab`: bench, eval)
//! drive the same code.

pub mod classify_cmd;
pub mod demo;
pub mod demo_corpus;
mod demo_topic;
pub mod import;
pub mod logs;
pub mod progress;
pub mod stack;
pub mod up;
