//! The `iscsi` tool is the binary of this package (`src/main.rs`). This
//! library target exists only so that `cargo test` compiles the embedding
//! examples of the workspace README as doc tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The workspace README: its Rust code blocks (the std, mio and smol
/// embedding examples) are compiled as doc tests. Only built for doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
