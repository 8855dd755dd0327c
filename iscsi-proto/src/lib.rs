//! A sans-IO iSCSI protocol core (RFC 7143, which consolidates RFC 3720).
//!
//! This crate never reads a clock, opens a socket, spawns a thread or draws
//! randomness: bytes and time enter through arguments, PDUs and events leave
//! through `poll_*` calls. Drivers (`iscsi-std`, `iscsi-mio`, `iscsi-smol`)
//! supply the I/O.
//!
//! Module map:
//! - [`wire`]: zero-copy views and `Repr`s of every PDU, AHS, digests, the
//!   streaming decoder, the text key=value codec and RFC 1982 serial numbers.
//! - [`login`]: the RFC 7143 section 13 key table, the negotiation engine and CHAP.
//! - [`scsi`]: CDB builders and sense-data decoding for the initiator.
//! - [`target`]: the target role ([`target::Session`] and its connection):
//!   login, command window, tasks, R2T, Data-In (source in `src/target_role/`).
//! - [`initiator`]: the initiator session state machine ([`initiator::Session`]).
//! - [`error`]: the error taxonomy of both roles (peer, caller, configuration,
//!   connection).
//! - [`driver`]: what the initiator drivers share ([`driver::DriverCore`],
//!   [`driver::Error`]): they only move bytes.
//! - [`transmit`]: [`transmit::Transmit`], one encoded PDU in three parts.
//! - `testing` (feature `testing`): a scripted target and an in-memory pair
//!   harness for tests of the session and of drivers.
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

pub mod driver;
pub mod error;
pub mod initiator;
pub mod login;
pub mod scsi;
// The target role lives in `src/target_role/` but keeps the public path
// `iscsi_proto::target`: a folder named `target/` is skipped by tools (search,
// editors, backup) and matched by the common `.gitignore` pattern `target/`
// meant for Cargo's build output.
#[path = "target_role/mod.rs"]
pub mod target;
mod task_id;
mod trace_format;
pub mod transmit;
pub mod wire;

pub use initiator::NetworkPortal;
pub use task_id::{TaskId, TaskMap};

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
