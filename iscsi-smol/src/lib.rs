//! Async driver for the `iscsi-proto` sans-IO core on `async-io`: runs under
//! smol, async-std or any executor that can poll a future; no protocol logic.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
