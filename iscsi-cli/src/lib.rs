//! The `iscsi` tool is the binary of this package (`src/main.rs`). This
//! library holds the parts of it that tests drive directly: the driver
//! layer ([`driver`], `--driver std|mio|smol`), the tool's block I/O
//! ([`tool`]: READ/WRITE loops, the recovery policy) and the benchmark
//! engine ([`mod@bench`]). `cargo test` also compiles the embedding examples
//! of the workspace README as doc tests.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

pub mod bench;
pub mod driver;
pub mod plot;
pub mod tool;

/// The workspace README: its Rust code blocks (the std, mio and smol
/// embedding examples) are compiled as doc tests. Only built for doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
