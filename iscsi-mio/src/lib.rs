//! `mio` event-loop driver for the `iscsi-proto` sans-IO core: registers a
//! session's socket with a caller's `mio::Registry`; no protocol logic.
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

pub mod client;
pub mod server;
