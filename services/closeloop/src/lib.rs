//! The all-in-one `closeloop` binary's library: the in-process stack (`up`), the demo,
//! the local webhook sink, `classify` (JSON lines) and `eval`. Tests drive the same code.

pub mod classify_cmd;
pub mod demo;
pub mod demo_corpus;
pub mod eval;
pub mod sink;
pub mod stack;
pub mod up;
