//! Conformance harness: helpers to start real iSCSI targets (tgtd, istgt) on
//! free loopback ports, capture their traffic with tshark, and a tiny runner
//! that executes a list of [`runner::Cell`]s with a per-cell watchdog and
//! prints a summary table.
//!
//! Run everything through `conformance/run` (it installs the peers when they
//! are missing). Nothing here runs under `cargo test --workspace` except the
//! self-contained unit tests.
//!
//! Adding a cell: see [`runner::Cell`] and `conformance/README.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cells;
pub mod hostile;
pub mod peers;
pub mod runner;
pub mod tools;
