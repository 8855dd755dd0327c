//! `mio` event-loop driver for the `iscsi-proto` sans-IO core: registers a
//! session's socket with a caller's `mio::Registry`; no protocol logic.
#![forbid(unsafe_code)]
// Bad input never panics: no unwrap, expect, panic or indexing outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
#![warn(missing_docs)]

pub mod client;
pub mod server;
