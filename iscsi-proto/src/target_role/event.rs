//! What the target session reports to the application ([`Event`],
//! [`ScsiRequest`]) and why a connection ended ([`CloseReason`]).

use crate::prelude::*;
use bytes::Bytes;

use crate::error::ProtocolError;
use crate::login::negotiation::Negotiated;
use crate::login::{LoginStatus, SessionType};
use crate::wire::{Isid, Serial, TaskAttr, TmfFunction};

pub use crate::task_id::TaskId;

/// A SCSI command ready for execution: all its write data has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiRequest {
    /// The handle to pass to [`Session::complete`](super::Session::complete).
    pub task: TaskId,
    /// The LUN field, 8-byte wire form.
    pub lun: u64,
    /// The CDB: the 16 bytes of the BHS followed by any Extended CDB AHS.
    pub cdb: Bytes,
    /// Task attribute (RFC 7143 section 11.3.1).
    pub attr: TaskAttr,
    /// Initiator Task Tag (for logging).
    pub itt: u32,
    /// CmdSN of the command.
    pub cmd_sn: Serial,
    /// Whether the command was sent for immediate delivery.
    pub immediate: bool,
    /// The write data: a zero-copy slice of the receive buffer when it
    /// arrived in one PDU, otherwise assembled into one buffer. Empty for
    /// commands without the W bit.
    pub data_out: Bytes,
    /// Expected Data Transfer Length when the R bit is set, else 0.
    pub expected_read_len: u32,
    /// Expected Data Transfer Length when the W bit is set, else 0.
    pub expected_write_len: u32,
}

/// An event for the application, from [`Session::poll_event`](super::Session::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The login phase ended successfully; the session is in Full Feature Phase.
    LoggedIn {
        /// Normal or Discovery.
        session_type: SessionType,
        /// The InitiatorName.
        initiator_name: String,
        /// The TargetName (None for discovery sessions).
        target_name: Option<String>,
        /// The initiator's ISID.
        isid: Isid,
        /// The TSIH given to the session.
        tsih: u16,
        /// Every negotiated value.
        negotiated: Box<Negotiated>,
    },
    /// The login was refused with this status; the connection closes.
    LoginFailed {
        /// The status sent in the Login Response.
        status: LoginStatus,
    },
    /// A SCSI command to execute; answer with [`Session::complete`](super::Session::complete).
    Command(ScsiRequest),
    /// A task was aborted (task management, or the connection ended): it
    /// will never be answered. Stop it, so that it no longer touches the
    /// medium, then call
    /// [`Session::abort_acknowledged`](super::Session::abort_acknowledged):
    /// the Task Management response waits for that (RFC 7143 section
    /// 11.5.1). No acknowledgement is needed once the connection closed.
    TaskAborted {
        /// The task.
        task: TaskId,
    },
    /// A task management function was performed (RFC 7143 section 11.5),
    /// so the application can reset reservations, unit attentions, etc.
    TaskManagement {
        /// The function.
        function: TmfFunction,
        /// The LUN field of the request.
        lun: u64,
        /// Delivered tasks it aborted (each also reported as `TaskAborted`).
        aborted: Vec<TaskId>,
    },
    /// The initiator logged out; the connection closes after the response.
    LoggedOut,
    /// The connection is over: flush the pending transmits, then close
    /// the socket. Every live task is gone.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why a target connection (and, with one connection per session, its
/// session) ended: the target role's counterpart of the initiator's
/// [`ConnectionError`](crate::error::ConnectionError). A broken rule is the
/// crate's [`ProtocolError`] (see [`crate::error`] for the taxonomy); the
/// other reasons are ends that are nobody's fault (a logout, a reset) or
/// the transport's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The login was rejected with this status (RFC 7143 section 11.13.5:
    /// after a non-zero Status-Class both sides close the connection).
    #[error("login rejected: {0}")]
    LoginFailed(LoginStatus),
    /// Logout completed (RFC 7143 section 11.14).
    #[error("logged out")]
    LoggedOut,
    /// No NOP-Out answered the NOP-In ping in time (RFC 7143 section 11.19).
    #[error("NOP-In ping not answered in time (RFC 7143 section 11.19)")]
    NopTimeout,
    /// A header digest error: the stream cannot be trusted (RFC 7143 section 7.8).
    #[error("header digest error (RFC 7143 section 7.8)")]
    HeaderDigest,
    /// The initiator broke the protocol in a way that ends the connection.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// TARGET COLD RESET (RFC 7143 section 11.5.1: the target "MUST ...
    /// terminate all of its TCP connections").
    #[error("target cold reset (RFC 7143 section 11.5.1)")]
    ColdReset,
    /// The application closed the connection.
    #[error("closed by the application")]
    Application,
    /// The peer closed the TCP connection.
    #[error("connection closed by the peer")]
    PeerClosed,
    /// A new connection logged in with this connection's CID (RFC 7143
    /// section 6.3.4, connection reinstatement).
    #[error("connection reinstated (RFC 7143 section 6.3.4)")]
    Reinstated,
    /// The initiator logged this connection out from another connection
    /// (RFC 7143 section 11.14, reasons 1 and 2).
    #[error("logged out from another connection (RFC 7143 section 11.14)")]
    LoggedOutElsewhere,
    /// No connection came back before DefaultTime2Retain expired (RFC
    /// 7143 section 7.1.5): the session's remaining tasks ended with it.
    #[error("Time2Retain expired (RFC 7143 section 7.1.5)")]
    RetentionExpired,
    /// Awaited Data-Out did not come within
    /// [`SessionConfig::data_out_timeout`](crate::target::SessionConfig::data_out_timeout)
    /// and could not be recovered by a recovery R2T (ErrorRecoveryLevel 0,
    /// or several timeouts in a row: RFC 7143 sections 7.1.4.1, 7.1.5).
    #[error("Data-Out sequence reception timeout (RFC 7143 section 7.1.4.1)")]
    DataOutTimeout,
}
