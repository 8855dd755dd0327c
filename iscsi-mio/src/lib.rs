//! `mio` event-loop driver for the `iscsi-proto` sans-IO core: registers a
//! session's socket with a caller's `mio::Registry`; no protocol logic.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod server;
