//! The crate's error taxonomy, one set of types for both roles (after
//! rustls's `Error`: whose fault it was decides the type).
//!
//! - [`ProtocolError`]: the **peer** broke RFC 7143 (the target, seen by
//!   the initiator; the initiator, seen by the target). Carries the RFC
//!   section and, where the RFC names one, the Reject reason
//!   (section 11.17.1). Wraps the wire, text, negotiation and CHAP errors
//!   of the lower layers.
//! - [`UsageError`]: the **caller** broke the API (acting on a session that
//!   is not logged in, naming an unknown task, ...). Nothing was sent. A
//!   full CmdSN window is not an error: commands queue.
//! - [`ConfigError`]: a **configuration** that cannot be used, reported
//!   where the session is built, in either role (never later as the peer's
//!   fault).
//! - Why a **connection** ended: [`ConnectionError`] in the initiator
//!   role; in the target role [`target::CloseReason`](crate::target::CloseReason),
//!   whose `Protocol` variant is this module's [`ProtocolError`] (the
//!   target's other reasons, such as a logout or a cold reset, are normal
//!   ends, not errors of either side).
//! - [`TaskError`] (initiator role): why one task ended without a normal
//!   outcome. The target role has no counterpart: its tasks end by the
//!   application's completion or by an abort event.
//!
//! | fault | initiator role | target role |
//! |---|---|---|
//! | peer broke a rule | `ProtocolError` (in `ConnectionError::Protocol`, `TaskError::Protocol`) | `ProtocolError` (in `CloseReason::Protocol`); most are answered with a Reject and the connection goes on |
//! | caller misuse | `UsageError` | `UsageError` |
//! | configuration | `ConfigError` from `initiator::Session::new` | `ConfigError` from `target::Session::new` |
//! | connection ended | `ConnectionError` | `target::CloseReason` |

use crate::login::chap::ChapError;
use crate::login::negotiation::NegotiationError;
use crate::login::status::{LoginStatus, StatusClass};
use crate::prelude::*;
use crate::wire::pdu::{RejectReason, TmfFunction};
use crate::wire::text::TextError;
use crate::wire::WireError;

/// The peer broke a rule of RFC 7143: the target, in the initiator role;
/// the initiator, in the target role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A PDU could not be decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Login or text key=value data is malformed.
    #[error(transparent)]
    Text(#[from] TextError),
    /// The operational negotiation failed.
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    /// CHAP failed (including a wrong mutual response from the target).
    #[error(transparent)]
    Chap(#[from] ChapError),
    /// A rule about PDU fields or sequencing was broken.
    #[error("{rule} (RFC 7143 section {section})")]
    Violation {
        /// What the peer did wrong.
        rule: &'static str,
        /// The RFC 7143 section of the rule.
        section: &'static str,
        /// The Reject reason (section 11.17.1) a receiver would use.
        reject: Option<RejectReason>,
    },
    /// A status-bearing PDU skipped StatSN values (section 4.2.2.2: the
    /// initiator uses ExpStatSN to acknowledge status "in order").
    #[error(
        "StatSN gap: expected {expected:#x}, received {received:#x} (RFC 7143 section 4.2.2.2)"
    )]
    StatSnGap {
        /// The ExpStatSN the initiator held.
        expected: u32,
        /// The StatSN the target sent.
        received: u32,
    },
    /// A Data-In or R2T sequence number was out of order (sections 11.7.4
    /// and 11.8.2).
    #[error("{what} out of order: expected {expected}, received {received} (RFC 7143 section {section})")]
    OutOfOrder {
        /// "DataSN" or "R2TSN".
        what: &'static str,
        /// The expected value.
        expected: u32,
        /// The received value.
        received: u32,
        /// The RFC 7143 section of the rule.
        section: &'static str,
    },
}

impl ProtocolError {
    /// A rule violation without a Reject reason.
    pub(crate) const fn violation(rule: &'static str, section: &'static str) -> Self {
        ProtocolError::Violation {
            rule,
            section,
            reject: Some(RejectReason::ProtocolError),
        }
    }

    /// The RFC 7143 section of the rule that was broken.
    pub fn rfc_section(&self) -> &'static str {
        match self {
            ProtocolError::Wire(e) => e.rfc_section(),
            ProtocolError::Text(_) => "6.1",
            ProtocolError::Negotiation(_) => "6.2",
            ProtocolError::Chap(_) => "12.1.3",
            ProtocolError::Violation { section, .. } => section,
            ProtocolError::StatSnGap { .. } => "4.2.2.2",
            ProtocolError::OutOfOrder { section, .. } => section,
        }
    }

    /// The Reject reason (section 11.17.1) that fits this error, if any.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            ProtocolError::Wire(e) => e.reject_reason(),
            ProtocolError::Violation { reject, .. } => *reject,
            ProtocolError::OutOfOrder { .. } => Some(RejectReason::ProtocolError),
            _ => None,
        }
    }
}

/// The caller used the session API wrongly, in either role. Nothing was
/// sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The session has not reached Full Feature Phase yet (or is being
    /// recovered and the action cannot wait). Target role: the connection
    /// is still in its login phase.
    #[error("the session is not logged in")]
    NotLoggedIn,
    /// The session (target role: the connection) is closed.
    #[error("the session is closed")]
    Closed,
    /// A logout is in progress; no new task may start.
    #[error("a logout is in progress")]
    LoggingOut,
    /// No task with this id is in flight. Target role: no live task the
    /// application was given has this id (it was completed, aborted, or
    /// never existed).
    #[error("unknown task {0:?}")]
    UnknownTask(crate::task_id::TaskId),
    /// SCSI commands and task management are not allowed in a discovery
    /// session (RFC 7143 section 13.21: a discovery session is "restricted
    /// to the Text Request and Logout").
    #[error("not allowed in a discovery session (RFC 7143 section 13.21)")]
    DiscoverySession,
    /// Every task tag is in use.
    #[error("too many tasks in flight")]
    TooManyTasks,
    /// The command is malformed: the reason says why.
    #[error("invalid command: {0}")]
    InvalidCommand(&'static str),
    /// A connection operation (MC/S: `Session::add_connection`,
    /// `Session::logout_connection`) is not possible now.
    #[error("connection operation refused: {0}")]
    Connection(&'static str),
    /// A data segment longer than the target accepts (its
    /// MaxRecvDataSegmentLength, RFC 7143 section 13.12).
    #[error("data of {len} bytes exceeds the target's MaxRecvDataSegmentLength {limit} (RFC 7143 section 13.12)")]
    DataTooLong {
        /// The length given.
        len: usize,
        /// The limit.
        limit: u32,
    },
    /// The task cannot be aborted (it is not a SCSI command).
    #[error("task {0:?} is not a SCSI command")]
    NotAbortable(crate::task_id::TaskId),
    /// Target role: sense data longer than a SCSI Response can carry (its
    /// SenseLength field is 2 bytes, RFC 7143 section 11.4.7.1).
    #[error("sense data longer than 65535 bytes (RFC 7143 section 11.4.7.1)")]
    SenseTooLong,
}

/// A configuration is unusable, in either role; reported where the
/// session is built ([`initiator::Session::new`](crate::initiator::Session::new),
/// [`target::Session::new`](crate::target::Session::new)), before anything
/// is sent, never later as if the peer had broken a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No ISID was given. The core draws no randomness: the random part
    /// of the ISID (RFC 7143 section 11.12.5, type 2 "Random") must come
    /// from the caller; the drivers fill it from the operating system. Two
    /// initiators with the same InitiatorName and ISID reinstate each
    /// other's sessions (section 6.3.5).
    #[error("no ISID configured: two sessions with the same InitiatorName and ISID replace each other (RFC 7143 section 6.3.5)")]
    MissingIsid,
    /// An ISID of the reserved type 3 (RFC 7143 section 11.12.5).
    #[error("ISID type 3 is reserved (RFC 7143 section 11.12.5)")]
    ReservedIsid,
    /// Operational values, names or authentication settings outside the
    /// RFC's ranges (e.g. FirstBurstLength above MaxBurstLength, section
    /// 13.14).
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    /// CHAP settings are unusable.
    #[error("CHAP configuration: {0}")]
    Chap(#[from] ChapError),
    /// Target role: no target node configured.
    #[error("no target node configured")]
    NoTargets,
    /// Target role: TSIH 0 is reserved (RFC 7143 section 11.12.6: the
    /// target sets a non-zero TSIH in the final Login Response).
    #[error("TSIH 0 is reserved (RFC 7143 section 11.12.6)")]
    ZeroTsih,
    /// Target role: command window depth 0.
    #[error("command window depth must be at least 1")]
    ZeroWindow,
    /// Target role: a CHAP challenge length outside 1..=1024 (RFC 7143
    /// section 12.1.3).
    #[error("CHAP challenge length must be 1..=1024 (RFC 7143 section 12.1.3)")]
    ChallengeLength,
    /// A duration or count that makes the session unusable: the reason
    /// names it.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
}

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimerKind {
    /// The login (TCP connect included) did not finish in time.
    Login,
    /// The target did not answer a keepalive NOP-Out in time.
    Keepalive,
    /// The target did not answer the Logout Request in time.
    Logout,
    /// A command's per-task timeout passed and neither ABORT TASK nor
    /// LOGICAL UNIT RESET ended it (`SessionConfig::task_timeout`).
    Task,
    /// SNACKs went unanswered for `ErrorRecovery::snack_retries` rounds
    /// (RFC 7143 section 7.1.4, ErrorRecoveryLevel 1).
    Snack,
    /// ErrorRecoveryLevel 2: the connection was not replaced within
    /// Time2Wait + Time2Retain (RFC 7143 section 13.16).
    Retain,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A deadline passed.
    #[error("timed out ({0:?})")]
    TimedOut(TimerKind),
    /// The transport closed or failed.
    #[error("connection closed by the peer or the transport")]
    Closed,
    /// A header digest did not match (RFC 7143 section 7.8): the stream can
    /// no longer be delimited.
    #[error("digest failure (RFC 7143 section 7.8): {0}")]
    DigestFailure(WireError),
    /// The target refused the login (RFC 7143 section 11.13.5).
    #[error("login failed: {status} (class {class:?}, RFC 7143 section 11.13.5)")]
    LoginFailed {
        /// The Status-Class.
        class: StatusClass,
        /// The Status-Detail byte.
        detail: u8,
        /// The decoded status, which names it.
        status: LoginStatus,
    },
    /// The target asked for a logout (AsyncEvent 1, RFC 7143 section
    /// 11.9.1) and the session logged out; with recovery configured it logs
    /// in again (reported as `Event::Recovering` with this cause).
    #[error("the target asked for a logout (RFC 7143 section 11.9.1)")]
    TargetLogout,
    /// The target closed the connection shortly after each of several
    /// logins in a row: another initiator with the same InitiatorName and
    /// ISID is most likely reinstating the session each time (RFC 7143
    /// section 6.3.5), and the two would take turns forever.
    #[error("the target closed the session right after each of {times} logins: another initiator with the same InitiatorName and ISID is taking it over (RFC 7143 section 6.3.5)")]
    TakenOver {
        /// Short-lived logins in a row.
        times: u32,
    },
    /// A PDU we were about to send could not be encoded (for instance a
    /// data segment above 2^24 - 1 bytes, RFC 7143 section 11.2.1.6). Never
    /// dropped silently: the connection ends with this error.
    #[error("could not encode an outgoing PDU: {0}")]
    Encode(WireError),
    /// The configuration was changed after `Session::new` validated it
    /// (its fields are public) and is now unusable.
    #[error("configuration: {0}")]
    InvalidConfig(ConfigError),
    /// More redirections than `SessionConfig::max_redirects` (RFC 7143
    /// section 11.13.5, class 1).
    #[error("redirected more than {0} times")]
    TooManyRedirects(u8),
    /// The target broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Session recovery gave up after this many attempts; the last failure
    /// follows.
    #[error("recovery failed after {attempts} attempts: {last}")]
    RecoveryFailed {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<ConnectionError>,
    },
}

/// Why a task ended without its normal outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// A task management function aborted it (RFC 7143 section 11.5.1).
    #[error("aborted by {0:?}")]
    Aborted(TmfFunction),
    /// The target rejected the PDU that carried it (RFC 7143 section 11.17).
    #[error("rejected by the target: {0:?} (RFC 7143 section 11.17.1)")]
    Rejected(RejectReason),
    /// The connection was lost and the session was not (or could not be)
    /// recovered.
    #[error("connection lost")]
    ConnectionLost,
    /// The connection was lost after the command may have reached the
    /// target, and the command is not one that may run twice (see
    /// `initiator::Reissue`): whether it ran is unknown. Session recovery
    /// did not send it again (RFC 7143 section 6.3.5).
    #[error("outcome unknown: connection lost after the command was sent")]
    OutcomeUnknown,
    /// The command's per-task timeout passed (`SessionConfig::task_timeout`)
    /// and the target confirmed its abort.
    #[error("timed out (aborted after the per-task timeout)")]
    TimedOut,
    /// The session was logged out before the task finished.
    #[error("session logged out")]
    LoggedOut,
    /// The target answered it in a way that breaks the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}
