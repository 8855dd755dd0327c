//! Blocking driver for the `iscsi-proto` sans-IO core: `std::net` sockets and
//! `std::time` clocks around the protocol state machines, no protocol logic.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
