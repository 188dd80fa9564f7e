//! The all-in-one `closeloop` binary's library: the in-process stack (`up`), the demo,
//! the benchmarks, the local webhook sink, `classify` (JSON lines) and `eval`. Tests drive
//! the same code.

pub mod bench;
pub mod classify_cmd;
pub mod demo;
pub mod demo_corpus;
pub mod eval;
pub mod sink;
pub mod stack;
pub mod up;
