//! The target role of the sans-IO core: one iSCSI connection (and its
//! session, one connection per session for now) as a state machine.
//!
//! # Driving a [`Session`]
//!
//! ```text
//! let mut s = Session::new(config)?;
//! loop {
//!     // (B) input: bytes read from the socket, or a timer that fired
//!     s.handle_input(now, &mut rx_buf);          // or s.handle_timeout(now)
//!     // (D) outputs, in this order:
//!     while let Some(t) = s.poll_transmit(now) { write_vectored(t.parts()) }
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
mod event;
mod ffp;
mod login;
mod portal;
mod session;
mod transmit;
mod window;

pub use config::{NopConfig, SessionConfig, TargetAuth, TargetNode};
pub use event::{CloseReason, ConfigError, Event, ProtocolError, ScsiRequest, TaskId, UsageError};
pub use portal::{
    ConnectionHandle, NexusId, Portal, PortalConfig, PortalError, PortalEvent, ResetScope,
};
pub use session::{Phase, Session};
pub use transmit::Transmit;
pub use window::{Admit, TargetWindow};
