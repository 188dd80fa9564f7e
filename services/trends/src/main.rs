//! `trends` as its own process: logs, configuration from flags and environment, and the
//! service until SIGTERM / Ctrl-C (production runs each service so; `closeloop up` runs
//! all four in one process).

closeloop_runtime::main!(closeloop_trends);
