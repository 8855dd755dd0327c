//! A sans-IO iSCSI protocol core (RFC 7143, which consolidates RFC 3720),
//! for both roles: initiator and target.
//!
//! This crate never reads a clock, opens a socket, spawns a thread or draws
//! randomness: bytes and time enter through arguments, PDUs and events leave
//! through `poll_*` calls. Drivers supply the I/O.
//!
//! # The layers
//!
//! ```text
//!            application (submit, abort_task, logout, ... / poll_event)
//!                 |                                      |
//!   driver::DriverCore (optional: what every       target::Portal (TSIH, reinstatement,
//!   initiator driver shares: per-task results,     routing a new connection's login,
//!   transmit batching, receive buffer, the one     I_T nexus, task management across
//!   driver Error, a byte tap)                      sessions)
//!                 |                                      |
//!   initiator::Session ---owns--> Connection       target::Session ---owns--> Connection
//!   (ISID, TSIH, CmdSN window,    (CID, StatSN,    (the same split, the same A-D contract)
//!   tasks, recovery, timers)      login, digests,
//!                                 transmit queue,
//!                                 keepalive)
//!                 |                                      |
//!   login: key table, negotiation engine (both roles), CHAP, text negotiation
//!   scsi:  CDB builders, sense data, LUNs
//!   wire:  BHS views, PDU Reprs, framing, digests, the streaming decoder,
//!          text key=value codec, serial numbers
//! ```
//!
//! A PDU enters as bytes at `handle_input(now, &mut BytesMut)` and leaves as
//! a [`Transmit`](transmit::Transmit) (header, data, trailer: one
//! `write_vectored`) from `poll_transmit`. Time enters only as `now`
//! arguments; the next deadline is `poll_timeout`. Randomness (the ISID,
//! CHAP challenges, TSIH and tag seeds) is passed in by the driver.
//!
//! # The contract of a session, in both roles
//!
//! Public methods come in four groups (as in quinn-proto): (A) getters,
//! (B) inputs `handle_*`, (C) application actions, (D) outputs `poll_*`.
//! After any B or C call, drain in this order: `poll_transmit` until `None`
//! (or the socket would block), then `poll_event` until `None`, then arm one
//! timer at `poll_timeout`. See [`initiator::Session`], [`target::Session`]
//! and [`target::Portal`].
//!
//! # Drivers and their example loops
//!
//! | runtime | crate | example loop (in the repository) |
//! |---|---|---|
//! | blocking `std::net` | `iscsi-std` | `iscsi-std/examples/blocking.rs` |
//! | `mio` event loop | `iscsi-mio` | `iscsi-mio/examples/client.rs` (initiator), `iscsi-mio/examples/serve.rs` (target) |
//! | async (smol, async-std, any executor) | `iscsi-smol` | `iscsi-smol/examples/smol_client.rs` |
//! | your own | this crate | [`driver::DriverCore`] (its page shows the loop), or the bare [`initiator::Session`] loop on its page |
//!
//! `docs/ARCHITECTURE.md` in the repository says where to change what.
//!
//! # `no_std`
//!
//! The crate is `#![no_std]` with `alloc`. The default feature `std` adds
//! what needs the standard library: the [`driver`] module (it uses
//! `std::sync::mpsc`, `std::io` and `std::net`), hardware CRC32C (without
//! `std` the digests use a table-driven software CRC32C) and the `testing`
//! and `fuzzing` features. Time is a [`time::Instant`], a value the core
//! only compares and adds durations to, so a port without
//! `std::time::Instant` can drive it; `docs/PORTING.md` in the repository
//! walks through a port.
//!
//! # Modules
//!
//! - [`wire`]: zero-copy views and `Repr`s of every PDU, AHS, digests, the
//!   streaming decoder, the text key=value codec and RFC 1982 serial numbers.
//! - [`login`]: the RFC 7143 section 13 key table, the negotiation engine,
//!   CHAP, Full Feature Phase text negotiation, SendTargets.
//! - [`scsi`]: CDB builders and sense-data decoding for the initiator.
//! - [`initiator`]: the initiator session ([`initiator::Session`]) and its
//!   connection.
//! - [`target`]: the target role ([`target::Portal`], [`target::Session`]
//!   and its connection; source in `src/target_role/`).
//! - [`time`]: the core's [`time::Instant`].
//! - `driver` (feature `std`): what the initiator drivers share ([`driver::DriverCore`],
//!   [`driver::Error`], [`driver::Clock`]): they only move bytes.
//! - [`error`]: the error taxonomy of both roles (peer, caller,
//!   configuration, connection, task).
//! - [`transmit`]: [`transmit::Transmit`], one encoded PDU in three parts,
//!   and [`transmit::TxQueue`], a batch of them for vectored writes.
//! - [`TaskId`], [`TaskMap`]: the opaque task handle of both roles and a
//!   table keyed by it; [`NetworkPortal`]: a TCP address of a node.
//! - `testing` (feature `testing`): a scripted target and an in-memory pair
//!   harness for tests of the session and of drivers.
#![no_std]
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

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

/// The `alloc` names the standard prelude would bring (the crate is
/// `no_std`): `use crate::prelude::*;` where a file needs them.
#[allow(unused_imports)]
pub(crate) mod prelude {
    pub(crate) use alloc::borrow::ToOwned;
    pub(crate) use alloc::boxed::Box;
    pub(crate) use alloc::string::{String, ToString};
    pub(crate) use alloc::vec::Vec;
    pub(crate) use alloc::{format, vec};
}

#[cfg(feature = "std")]
pub mod driver;
pub mod error;
pub mod initiator;
pub mod login;
mod network_portal;
pub mod scsi;
pub mod stats;

// The target role lives in `src/target_role/` but keeps the public path
// `iscsi_proto::target`: a folder named `target/` is skipped by tools (search,
// editors, backup) and matched by the common `.gitignore` pattern `target/`
// meant for Cargo's build output.
#[path = "target_role/mod.rs"]
pub mod target;

mod task_id;
pub mod time;
mod trace_format;
pub mod transmit;
pub mod wire;

pub use network_portal::NetworkPortal;
pub use task_id::{TaskId, TaskMap};
// The names an application needs next to a session, where it looks first.
pub use scsi::Lun;
pub use wire::pdu::{TmfFunction, TmfResponse};
pub use wire::Isid;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

/// `docs/PORTING.md`'s minimal driver, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../docs/PORTING.md")]
pub struct PortingDoc;
