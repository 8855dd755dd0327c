//! The one error type of the three drivers (`iscsi_std::Error`,
//! `iscsi_mio::client::Error` and `iscsi_smol::Error` are this type).
//!
//! How a session's end is reported, the same on every driver:
//!
//! - **The target refused us** (the session never reached the Full
//!   Feature Phase): [`Error::Connect`] when the TCP connection could not
//!   be made (refused, timed out, no such host), [`Error::Login`] when the
//!   login did not complete (rejected by the target with a Login Response
//!   status, RFC 7143 section 11.13.5, timed out, or the connection closed
//!   during the login). [`Error::is_refused`] tells both.
//! - **An established session ended**: [`Error::Closed`], with the cause
//!   (`Some`: the connection was lost and not recovered, recovery gave
//!   up, a keepalive went unanswered, ...) or `None` (logged out, by the
//!   application or because the target asked for it). A task in flight at
//!   that moment ends with this error, and so does every later call.
//! - **With recovery configured** (`SessionConfig::recovery`) a lost
//!   connection does not end the session: the core connects and logs in
//!   again and reissues the commands that may safely run twice (RFC 7143
//!   section 6.3.5). A command that may have reached the target and must
//!   not run twice ends with [`Error::Task`]`(`[`TaskError::OutcomeUnknown`]`)`,
//!   a ping or task management function in flight with
//!   [`Error::Task`]`(`[`TaskError::ConnectionLost`]`)`; the session goes on
//!   (the application sees `Event::Recovering` and `Event::Reinstated`).
//!   Only when recovery gives up does the session end with
//!   [`Error::Closed`]`(Some(`[`ConnectionError::RecoveryFailed`]`))`.

use crate::prelude::*;
use std::io;

use crate::error::{ConfigError, ConnectionError, TaskError, UsageError};
use crate::initiator::ScsiResult;
use crate::scsi::helpers::CapacityError;
use crate::scsi::ScsiError;

/// Errors of the initiator drivers (see the module documentation for how
/// a session's end is reported).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The target refused the connection: the TCP connection could not be
    /// made, and the session never logged in.
    #[error("{}", connect_message(.addr, .source))]
    Connect {
        /// Where we tried to connect.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The target refused the session: the login did not complete (a
    /// Login Response with a failure status, `ConnectionError::LoginFailed`;
    /// a login timeout; the connection closed or a protocol error during
    /// the login). The session never reached the Full Feature Phase.
    #[error("{0}")]
    Login(ConnectionError),
    /// The established session ended before the operation finished:
    /// `Some(cause)` when the connection was lost (and not recovered),
    /// `None` after a logout. Every later call reports it again.
    #[error("{}", closed_message(.0))]
    Closed(Option<ConnectionError>),
    /// A socket, poll or thread error of the driver itself.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The core refused a call (nothing was sent).
    #[error("{0}")]
    Usage(#[from] UsageError),
    /// The configuration is unusable (nothing was sent).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A task failed while the session went on.
    #[error("{0}")]
    Task(TaskError),
    /// A read or write helper's command ended without GOOD status.
    #[error("SCSI command failed: status {:#04x}", .0.status)]
    Status(Box<ScsiResult>),
    /// A task ended with an outcome the operation did not expect.
    #[error("unexpected outcome: {0}")]
    Unexpected(String),
    /// A helper's SCSI data (e.g. READ CAPACITY's) was malformed.
    #[error("malformed SCSI data: {0}")]
    Scsi(ScsiError),
}

impl From<CapacityError> for Error {
    fn from(e: CapacityError) -> Error {
        match e {
            CapacityError::Status(r) => Error::Status(Box::new(r)),
            CapacityError::Parse(e) => Error::Scsi(e),
        }
    }
}

impl Error {
    /// Whether the target refused us ([`Error::Connect`] or
    /// [`Error::Login`]) rather than ending an established session.
    pub fn is_refused(&self) -> bool {
        matches!(self, Error::Connect { .. } | Error::Login(_))
    }

    /// The cause of a session's end, if this error is one: the refusal of
    /// a login or the loss of an established session.
    pub fn connection_error(&self) -> Option<&ConnectionError> {
        match self {
            Error::Login(e) | Error::Closed(Some(e)) => Some(e),
            _ => None,
        }
    }

    /// A copy, for errors that go to several waiters (an `io::Error` is
    /// not `Clone`: its kind and message are kept).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Connect { addr, source } => Error::Connect {
                addr: addr.clone(),
                source: copy_io(source),
            },
            Error::Login(e) => Error::Login(e.clone()),
            Error::Closed(e) => Error::Closed(e.clone()),
            Error::Io(e) => Error::Io(copy_io(e)),
            Error::Usage(e) => Error::Usage(e.clone()),
            Error::Config(e) => Error::Config(e.clone()),
            Error::Task(e) => Error::Task(e.clone()),
            Error::Status(r) => Error::Status(r.clone()),
            Error::Unexpected(s) => Error::Unexpected(s.clone()),
            Error::Scsi(e) => Error::Scsi(e.clone()),
        }
    }
}

fn copy_io(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

fn connect_message(addr: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => format!("connection refused: {addr}"),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("connection timed out: {addr}")
        }
        _ => format!("cannot connect to {addr}: {e}"),
    }
}

fn closed_message(cause: &Option<ConnectionError>) -> String {
    match cause {
        None => "session closed".into(),
        Some(e) => format!("session closed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal and the end of an established session are told apart
    /// (the refused target never let the session reach the Full Feature
    /// Phase, RFC 7143 section 11.13.5).
    #[test]
    fn refused_is_distinct_from_closed() {
        let refused = Error::Connect {
            addr: "h:3260".into(),
            source: io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(refused.is_refused());
        assert_eq!(refused.to_string(), "connection refused: h:3260");
        assert!(Error::Login(ConnectionError::Closed).is_refused());
        let lost = Error::Closed(Some(ConnectionError::Closed));
        assert!(!lost.is_refused());
        assert_eq!(lost.connection_error(), Some(&ConnectionError::Closed));
        assert_eq!(Error::Closed(None).to_string(), "session closed");
        assert!(matches!(refused.duplicate(), Error::Connect { source, .. }
            if source.kind() == io::ErrorKind::ConnectionRefused));
    }
}
