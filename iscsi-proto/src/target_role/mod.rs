//! The target role of the sans-IO core: one iSCSI session and its
//! connections (MaxConnections up to the configured value, RFC 7143
//! section 13.2; ErrorRecoveryLevel up to 2, section 7) as a state
//! machine.
//!
//! # Layout (the same as the initiator's)
//!
//! - [`Portal`] (`portal/`): what spans connections and sessions (TSIH
//!   allocation, session reinstatement, routing a new connection's login,
//!   I_T nexus state, task management across sessions). Drivers of a
//!   whole target use it; a single session can be driven directly.
//! - [`Session`] (`session.rs`): the session-wide state and the public A-D
//!   interface; it owns its connections (`connection.rs`: CID, phase,
//!   StatSN, login/text/keepalive state, digests, transmit queue), one
//!   served at a time (`session/connections.rs`); further connections
//!   join through the [`Portal`].
//! - `retention.rs`: what ErrorRecoveryLevel >= 1 keeps to retransmit
//!   (status PDUs until ExpStatSN, read Data-In until DataACK or status
//!   acknowledgement), within [`SessionConfig::retention_budget`].
//! - `session/`: the session's machinery, one file per part of the
//!   protocol: `login.rs` (RFC 7143 sections 6 and 11.12-11.13),
//!   `full_feature.rs` (dispatch and CmdSN ordering), `scsi_command.rs`
//!   (admission, R2T, Data-Out, recovery R2T), `completion.rs` (Data-In
//!   and status), `snack.rs` (SNACK, DataACK, ExpStatSN),
//!   `recovery.rs` (connection failure per ErrorRecoveryLevel, TASK
//!   REASSIGN, Time2Retain), `task_management.rs`, `text.rs`
//!   (SendTargets, FFP keys), `nop.rs`, `logout.rs`.
//! - `window.rs`: [`TargetWindow`], the CmdSN window (section 4.2.2.1).
//! - `event.rs`, `config.rs`: what the application sees and configures.
//!   Errors are the crate's ([`crate::error`]), shared with the initiator
//!   role; so is [`Transmit`].
//!
//! # Driving a [`Session`]
//!
//! The A-D contract and the drain order are documented on [`Session`]:
//!
//! ```text
//! let mut s = Session::new(config)?;
//! loop {
//!     // (B) input: bytes read from the socket, or a timer that fired
//!     s.handle_input(now, &mut rx_buf);          // or s.handle_timeout(now)
//!     // (D) outputs, in this order:
//!     while let Some(t) = s.poll_transmit(now) { write_vectored(t.as_io_slices(..)) }
//!     while let Some(ev) = s.poll_event() {
//!         // Event::Command(req) -> run it, then (C):
//!         // s.complete(req.task, status, sense, data_in)
//!         // Event::TaskAborted { task } -> stop it, then (C):
//!         // s.abort_acknowledged(task)
//!         // and drain poll_transmit again
//!     }
//!     if s.is_closed() { close the socket after flushing; break }
//!     arm one timer at s.poll_timeout()
//! }
//! ```
//!
//! The core never reads a clock, draws no randomness (CHAP challenges,
//! the initial StatSN and transfer tags come from [`SessionConfig::seed`]) and
//! holds bounded state: tasks are bounded by the command window and
//! [`SessionConfig::max_immediate_tasks`], write data by
//! [`SessionConfig::max_transfer_length`], and decoding pauses while
//! [`SessionConfig::max_queued_transmits`] PDUs wait.
//!
//! Task management (RFC 7143 section 11.5.1): a Task Management response
//! is sent only once every task it covers has stopped. A command whose
//! [`Event::Command`] was not polled yet is withdrawn from the event
//! queue (the application never sees it); one the application took is
//! reported as [`Event::TaskAborted`] and stops when the application
//! calls [`Session::abort_acknowledged`] (or completes it: the completion
//! is then discarded). Immediate ABORT TASK SET, CLEAR TASK SET and resets
//! also wait for the commands before their CmdSN that are still on the way
//! (within the advertised window), and abort them on arrival.
//!
//! Ordering: non-immediate commands are accepted in CmdSN order (RFC 7143
//! section 4.2.2.1); a read is reported as soon as it is accepted, a
//! write once all its data has arrived, so two writes may be reported in
//! a different order than their CmdSNs when their data arrives so.

mod config;
mod connection;
mod event;
mod portal;
mod retention;
mod session;
mod window;

pub use config::{NopConfig, SessionConfig, TargetAuth, TargetNode};
pub use event::{CloseReason, Event, ScsiRequest, TaskId};
pub use portal::{
    ConnectionHandle, NexusId, Portal, PortalConfig, PortalError, PortalEvent, ResetScope,
};
pub use session::{Phase, Session};
pub use window::{Admit, TargetWindow};

// The crate's error taxonomy and outgoing PDU, shared with the initiator
// role, re-exported for convenience.
pub use crate::error::{ConfigError, ProtocolError, UsageError};
pub use crate::transmit::Transmit;
