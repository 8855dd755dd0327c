//! Conformance harness: helpers to start real iSCSI targets (tgtd, istgt) on
//! free loopback ports and hostile scripted targets. Run through
//! `conformance/run`; nothing here runs under `cargo test --workspace` unless
//! it is self-contained.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
