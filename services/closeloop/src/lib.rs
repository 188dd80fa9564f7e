//! The all-in-one `closeloop` binary's library: the in-process stack (`up`), the demo,
//! the benchmarks and the local webhook sink. Tests drive the same code.

pub mod bench;
pub mod demo;
pub mod demo_corpus;
pub mod sink;
pub mod stack;
pub mod up;
