//! The portal's vocabulary: connection handles, I_T nexus ids, its
//! configuration, events and errors.

use crate::error::ConfigError;
use crate::login::negotiation::Negotiated;
use crate::login::{LoginStatus, SessionType};
use crate::prelude::*;
use crate::target::{CloseReason, ScsiRequest, SessionConfig, TaskId, UsageError};
#[cfg(doc)]
use crate::target::{Event, Portal, Session};
use crate::wire::{Isid, TmfFunction};

/// Identifies an I_T nexus (SCSI initiator port and target port) to the
/// logical units, which keep unit attentions and reservations per nexus.
///
/// RFC 7143 section 4.4.1: the SCSI initiator port of an iSCSI session is
/// named by the InitiatorName and the ISID, and this target serves one
/// target port, so the [`Portal`] derives the id from those two: it is the
/// same every time the initiator logs in with them (a reconnecting or
/// reinstating initiator keeps its reservations), and never 0 for a
/// Normal session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NexusId(pub u64);

impl NexusId {
    /// The nexus of the initiator port `InitiatorName` + `ISID`: a 64-bit
    /// FNV-1a hash of both, never 0.
    pub fn of(initiator_name: &str, isid: Isid) -> NexusId {
        NexusId(fnv1a(&isid.0, fnv1a(initiator_name.as_bytes(), FNV_OFFSET)).max(1))
    }
}

/// A connection accepted by a [`Portal`]. Opaque; its
/// [`index`](Self::index) is small and reused once the connection is
/// [removed](Portal::remove), so a driver may use it to index a slab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub(super) usize);

impl ConnectionHandle {
    /// The slot of the connection: below the most connections open at
    /// once plus the removed ones a recovering multi-connection session
    /// still names (at most 8 per session), reused once free again after
    /// [`Portal::remove`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// What a reset applies to (RFC 7143 section 11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetScope {
    /// LOGICAL UNIT RESET of this LUN (8-byte wire form).
    LogicalUnit(u64),
    /// TARGET WARM RESET (`cold` false) or TARGET COLD RESET (`cold`
    /// true): every logical unit.
    Target {
        /// Whether it was a cold reset (a power-on event).
        cold: bool,
    },
}

/// Everything a [`Portal`] needs. `#[non_exhaustive]`: build it with
/// [`PortalConfig::new`] and the `with_*` methods:
///
/// ```
/// use iscsi_proto::target::{PortalConfig, SessionConfig};
/// let cfg = PortalConfig::new(SessionConfig::new("iqn.2026-01.example:disk"))
///     .with_max_connections(1024);
/// assert_eq!(cfg.max_connections, 1024);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PortalConfig {
    /// The configuration every connection's [`Session`] starts from. Its
    /// `tsih` and `seed` are replaced per connection; its `portals` too
    /// when [`Portal::accept`] is told the local address.
    pub session: SessionConfig,
    /// Most connections open at once; [`Portal::accept`] refuses more.
    pub max_connections: usize,
}

impl PortalConfig {
    /// A portal of at most 256 connections, every session configured
    /// like `session`.
    pub fn new(session: SessionConfig) -> PortalConfig {
        PortalConfig {
            session,
            max_connections: 256,
        }
    }

    crate::target::config::with_fields! {
        /// Sets [`session`](Self::session).
        with_session: session: SessionConfig,
        /// Sets [`max_connections`](Self::max_connections).
        with_max_connections: max_connections: usize,
    }
}

/// The caller misused the [`Portal`], or it cannot take a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortalError {
    /// No connection has this handle (it was removed, or never existed).
    #[error("unknown connection {0:?}")]
    UnknownConnection(ConnectionHandle),
    /// [`PortalConfig::max_connections`] connections are open.
    #[error("{0} connections are open already")]
    TooManyConnections(usize),
    /// Every non-zero TSIH names a live session (RFC 7143 section 11.13.3).
    #[error("no TSIH left: every non-zero value names a live session")]
    NoTsih,
    /// The session refused the action.
    #[error(transparent)]
    Session(#[from] UsageError),
    /// A connection's session configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// An event for the application, from [`Portal::poll_event`]. Events of
/// one connection come in the order its session produced them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortalEvent {
    /// The login of `connection` succeeded ([`Event::LoggedIn`]).
    LoggedIn {
        /// The connection.
        connection: ConnectionHandle,
        /// Its I_T nexus (None for a Discovery session).
        nexus: Option<NexusId>,
        /// Normal or Discovery.
        session_type: SessionType,
        /// The InitiatorName.
        initiator_name: String,
        /// The TargetName (None for Discovery sessions).
        target_name: Option<String>,
        /// The ISID.
        isid: Isid,
        /// The TSIH given to the session.
        tsih: u16,
        /// Every negotiated value.
        negotiated: Box<Negotiated>,
    },
    /// The login of `connection` was refused with `status`; the
    /// connection closes ([`PortalEvent::Closed`] follows).
    LoginFailed {
        /// The connection.
        connection: ConnectionHandle,
        /// The status sent in the Login Response.
        status: LoginStatus,
        /// The InitiatorName, if the initiator declared it.
        initiator_name: Option<String>,
    },
    /// The first live session of an initiator port logged in: the I_T
    /// nexus exists from now on (e.g. give the logical units its
    /// TransportID).
    NexusCreated {
        /// The nexus.
        nexus: NexusId,
        /// The InitiatorName.
        initiator_name: String,
        /// The ISID.
        isid: Isid,
    },
    /// RFC 7143 section 6.3.5: a login with TSIH 0 and the ISID of the
    /// live session on `old` reinstated it on `new`: the old session's
    /// connection closes (its events follow) and "all the tasks that were
    /// active on the old session" end. The I_T nexus stays.
    SessionReinstated {
        /// The nexus, unchanged.
        nexus: NexusId,
        /// The InitiatorName.
        initiator_name: String,
        /// The ISID.
        isid: Isid,
        /// The connection of the replaced session.
        old: ConnectionHandle,
        /// The connection of the new session.
        new: ConnectionHandle,
    },
    /// The last session of this I_T nexus is gone (its connection was
    /// [removed](Portal::remove)).
    NexusLost {
        /// The nexus.
        nexus: NexusId,
    },
    /// A SCSI command to execute ([`Event::Command`]); answer with
    /// [`Portal::complete`] or [`Portal::complete_write`].
    Command {
        /// The connection it came on.
        connection: ConnectionHandle,
        /// Its I_T nexus.
        nexus: NexusId,
        /// The command.
        request: ScsiRequest,
    },
    /// A delivered task was aborted ([`Event::TaskAborted`]): stop it, then
    /// call [`Portal::abort_acknowledged`].
    TaskAborted {
        /// The connection.
        connection: ConnectionHandle,
        /// The task.
        task: TaskId,
    },
    /// A task management function was performed on `connection`
    /// ([`Event::TaskManagement`]).
    TaskManagement {
        /// The connection.
        connection: ConnectionHandle,
        /// Its I_T nexus.
        nexus: NexusId,
        /// The function.
        function: TmfFunction,
        /// The LUN field of the request.
        lun: u64,
        /// Delivered tasks it aborted (each also reported as `TaskAborted`).
        aborted: Vec<TaskId>,
    },
    /// A LOGICAL UNIT RESET, TARGET WARM RESET or TARGET COLD RESET was
    /// performed through nexus `by`: the logical units in `scope` reset
    /// and establish a unit attention for every nexus in `nexuses` (SAM-5
    /// 6.3.3 and 5.14: every I_T nexus, `by` included).
    Reset {
        /// What was reset.
        scope: ResetScope,
        /// The nexus the request came through.
        by: NexusId,
        /// Every I_T nexus of the portal, sorted, `by` included.
        nexuses: Vec<NexusId>,
    },
    /// A connection logged in with the TSIH of a live session and joined
    /// it (RFC 7143 section 6.3.1: a further connection, MC/S, section
    /// 13.2; or connection reinstatement, section 6.3.4, when
    /// `reinstated` names the connection it replaces). Its tasks are
    /// reported on it from now on.
    ConnectionJoined {
        /// The new connection.
        connection: ConnectionHandle,
        /// The session's TSIH.
        tsih: u16,
        /// Its CID.
        cid: u16,
        /// The connection with the same CID it replaces, if any.
        reinstated: Option<ConnectionHandle>,
    },
    /// The initiator of `connection` logged out; it closes after the
    /// response.
    LoggedOut {
        /// The connection.
        connection: ConnectionHandle,
    },
    /// The connection is over ([`Event::Closed`]): write its pending
    /// transmits, close the socket, then [`Portal::remove`] it.
    Closed {
        /// The connection.
        connection: ConnectionHandle,
        /// Why.
        reason: CloseReason,
    },
}

/// The connection an event is about, if one.
pub(super) fn event_connection(e: &PortalEvent) -> Option<ConnectionHandle> {
    match e {
        PortalEvent::LoggedIn { connection, .. }
        | PortalEvent::LoginFailed { connection, .. }
        | PortalEvent::Command { connection, .. }
        | PortalEvent::TaskAborted { connection, .. }
        | PortalEvent::TaskManagement { connection, .. }
        | PortalEvent::LoggedOut { connection }
        | PortalEvent::ConnectionJoined { connection, .. }
        | PortalEvent::Closed { connection, .. } => Some(*connection),
        _ => None,
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
