//! The all-in-one `closeloop` binary's library: the in-process stack (`up`), the demo and
//! its corpus and `classify` (JSON lines). Tests and the lab tools
//! (`tools/lab`: bench, eval) drive the same code.

pub mod classify_cmd;
pub mod demo;
pub mod demo_corpus;
pub mod logs;
pub mod stack;
pub mod up;
