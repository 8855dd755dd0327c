//! [`Portal`]: what spans the connections of one target portal (quinn's
//! `Endpoint` to the target [`Session`]'s `Connection`).
//!
//! A [`Session`] knows one connection and the session it belongs to. What
//! no single session can decide lives here:
//!
//! - **TSIH allocation**: non-zero (RFC 7143 section 11.13.3: "For a new
//!   session, the target MUST generate a non-zero TSIH") and unique among
//!   the live sessions, so that a TSIH names one session (section 4.4.3,
//!   "TSIH RULE").
//! - **Routing a new connection's login** (the table of RFC 7143 section
//!   6.3.1): TSIH 0 and a new ISID instantiate a new session; TSIH 0 and
//!   the ISID of a live session of the same initiator reinstate it (section
//!   6.3.5: the old session's connection closes and its tasks end); a
//!   non-zero TSIH of a live session would add a connection to it, which
//!   this target does not negotiate (MaxConnections is 1, section 13.2), so
//!   the login is refused with "Too many connections" (0x0206, section
//!   11.13.5); a TSIH no live session has is refused with "Session does not
//!   exist" (0x020a) by the session itself.
//! - **I_T nexus state**: which I_T nexuses exist (the SCSI initiator port
//!   is the InitiatorName plus the ISID, section 4.4.1), reported as
//!   [`PortalEvent::NexusCreated`], [`PortalEvent::SessionReinstated`] and
//!   [`PortalEvent::NexusLost`], so that the logical units keep unit
//!   attentions and reservation transport IDs per nexus.
//! - **Task management across sessions**: a LOGICAL UNIT RESET or a target
//!   reset received on one session is reported as [`PortalEvent::Reset`]
//!   with every nexus it affects (SAM-5 6.3.3: a logical unit reset
//!   establishes a unit attention for every I_T nexus); a TARGET COLD
//!   RESET closes every other session too (section 11.5.1: "the target
//!   MUST then close all of its TCP connections to all initiators").
//!
//! The portal reads no clock, does no I/O and draws no randomness: the
//! sessions' seeds are derived from the one seed given to [`Portal::new`].
//!
//! # Driving a [`Portal`]
//!
//! The methods come in four groups, as on [`Session`]:
//!
//! - (A) getters: [`connections`](Portal::connections),
//!   [`session`](Portal::session), [`is_closed`](Portal::is_closed), ...
//! - (B) inputs: [`accept`](Portal::accept) (a TCP connection arrived),
//!   [`handle_input`](Portal::handle_input) (bytes read from it),
//!   [`handle_timeout`](Portal::handle_timeout),
//!   [`handle_closed`](Portal::handle_closed) (the peer closed or the
//!   socket failed), [`remove`](Portal::remove) (the driver closed the
//!   socket for good);
//! - (C) application actions on one connection, forwarded to its session:
//!   [`complete`](Portal::complete), [`complete_write`](Portal::complete_write),
//!   [`abort_acknowledged`](Portal::abort_acknowledged),
//!   [`close_now`](Portal::close_now);
//! - (D) outputs: [`poll_event`](Portal::poll_event),
//!   [`poll_transmit`](Portal::poll_transmit),
//!   [`poll_touched`](Portal::poll_touched),
//!   [`poll_timeout`](Portal::poll_timeout).
//!
//! Drain order after every (B) or (C) call:
//!
//! ```text
//! portal.handle_input(h, now, &mut rx);            // (B)
//! while let Some(ev) = portal.poll_event() {       // (D) 1: events first,
//!     // Command -> execute, then portal.complete(...)   (C)
//!     // TaskAborted -> stop it, portal.abort_acknowledged(...)
//! }
//! flush(h);                                        // (D) 2: transmits of h
//! while let Some(o) = portal.poll_touched() { flush(o) } // and of others
//! // where flush(c) = write every portal.poll_transmit(c), then close the
//! // socket and portal.remove(c) once portal.is_closed(c)
//! arm one timer at portal.poll_timeout()           // (D) 3
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{CloseReason, Event, ScsiRequest, Session, SessionConfig, TaskId, Transmit};
use crate::error::ConfigError;
use crate::login::negotiation::Negotiated;
use crate::login::{LoginStatus, SessionType};
use crate::scsi::ScsiStatus;
use crate::wire::{
    data_trailer, encode_header, Bhs, Digests, Header, Isid, LoginResponse, Stage, TmfFunction,
    BHS_LEN,
};
use crate::NetworkPortal;

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
pub struct ConnectionHandle(usize);

impl ConnectionHandle {
    /// The slot of the connection: below the most connections open at
    /// once, reused after [`Portal::remove`].
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

/// Everything a [`Portal`] needs.
#[derive(Debug, Clone)]
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
    Session(#[from] super::UsageError),
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

/// What the login told the portal about a connection's session.
#[derive(Debug, Clone)]
struct Login {
    session_type: SessionType,
    isid: Isid,
    nexus: Option<NexusId>,
}

/// One accepted connection.
#[derive(Debug)]
struct Conn {
    session: Session,
    /// The TSIH reserved for its session (given at login).
    tsih: u16,
    /// Whether the first Login Request was routed.
    routed: bool,
    /// A Login Response the portal itself answers with (section 11.13.5).
    refusal: Option<Transmit>,
    login: Option<Login>,
    touched: bool,
}

/// The sans-IO target portal: accepts connections, routes their logins,
/// owns their [`Session`]s and what spans them. See the module
/// documentation for the driving loop.
#[derive(Debug)]
pub struct Portal {
    template: SessionConfig,
    max_connections: usize,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    next_tsih: u16,
    seed: u64,
    seed_counter: u64,
    events: VecDeque<PortalEvent>,
    touched: VecDeque<ConnectionHandle>,
}

impl Portal {
    /// A portal whose sessions start from `config.session`, their seeds
    /// derived from `seed` (give it OS randomness once: the CHAP
    /// challenges, initial StatSNs and transfer tags come from it).
    pub fn new(config: PortalConfig, seed: u64) -> Result<Portal, ConfigError> {
        let mut probe = config.session.clone();
        probe.tsih = 1;
        // Surface configuration errors now rather than at every accept.
        Session::new(probe)?;
        Ok(Portal {
            template: config.session,
            max_connections: config.max_connections.max(1),
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_tsih: 1,
            seed,
            seed_counter: 0,
            events: VecDeque::new(),
            touched: VecDeque::new(),
        })
    }

    // ----- (A) getters -----

    /// Connections open (accepted, not yet removed).
    pub fn connections(&self) -> usize {
        self.live
    }

    /// The session of a connection.
    pub fn session(&self, h: ConnectionHandle) -> Option<&Session> {
        self.conn(h).map(|c| &c.session)
    }

    /// Whether the connection is over: once its transmits are written,
    /// close the socket and [`remove`](Self::remove) it. True for an
    /// unknown handle.
    pub fn is_closed(&self, h: ConnectionHandle) -> bool {
        self.conn(h)
            .is_none_or(|c| c.refusal.is_none() && c.session.is_closed())
    }

    /// The largest PDU a session of this portal accepts: BHS, the longest
    /// AHS (RFC 7143 section 11.2.1.2: TotalAHSLength counts 4-byte
    /// words in one byte), both digests, the largest data segment (our
    /// MaxRecvDataSegmentLength, section 13.12, or the 8192 bytes of the
    /// login phase) and its padding. A driver buffers this much (plus one
    /// read) before decoding must make progress.
    pub fn max_pdu_len(&self) -> usize {
        let segment = usize::try_from(self.template.params.max_recv_data_segment_length);
        segment
            .unwrap_or(usize::MAX)
            .max(8192)
            .saturating_add(BHS_LEN + 255 * 4 + 4 + 3 + 4)
    }

    /// The I_T nexus of a connection's Normal session, once logged in.
    pub fn nexus(&self, h: ConnectionHandle) -> Option<NexusId> {
        self.conn(h)
            .and_then(|c| c.login.as_ref())
            .and_then(|l| l.nexus)
    }

    // ----- (B) inputs -----

    /// A TCP connection arrived; `local` is the address it arrived on
    /// (reported by SendTargets). Gives its session a TSIH unique among
    /// the live sessions and a seed of its own.
    pub fn accept(
        &mut self,
        _now: Instant,
        local: Option<SocketAddr>,
    ) -> Result<ConnectionHandle, PortalError> {
        if self.live >= self.max_connections {
            return Err(PortalError::TooManyConnections(self.live));
        }
        let tsih = self.take_tsih().ok_or(PortalError::NoTsih)?;
        let mut cfg = self.template.clone();
        cfg.tsih = tsih;
        cfg.seed = self.take_seed();
        if let Some(local) = local {
            cfg.portals = vec![NetworkPortal {
                host: local.ip().to_string(),
                port: local.port(),
                portal_group_tag: Some(cfg.portal_group_tag),
            }];
        }
        // The template was checked by `new`; only the TSIH (non-zero), the
        // seed and the portals changed.
        let session = Session::new(cfg)?;
        let conn = Conn {
            session,
            tsih,
            routed: false,
            refusal: None,
            login: None,
            touched: false,
        };
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if let Some(slot) = self.conns.get_mut(idx) {
            *slot = Some(conn);
        }
        self.live += 1;
        Ok(ConnectionHandle(idx))
    }

    /// Bytes read from the connection: whole PDUs are consumed from `buf`
    /// ([`Session::handle_input`]); the first Login Request is routed
    /// first (RFC 7143 section 6.3.1).
    pub fn handle_input(&mut self, h: ConnectionHandle, now: Instant, buf: &mut BytesMut) {
        let Some(c) = self.conn_mut(h) else {
            return;
        };
        if !c.routed {
            // Route once the whole BHS of the first Login Request is here.
            if buf.len() < BHS_LEN {
                return;
            }
            c.routed = true;
            if let Some(status) = self.route(buf) {
                self.refuse(h, buf, status);
                return;
            }
        }
        if let Some(c) = self.conn_mut(h) {
            c.session.handle_input(now, buf);
        }
        self.drain(h);
    }

    /// Runs the timers of every session that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let h = ConnectionHandle(idx);
            let due = self
                .conn(h)
                .and_then(|c| c.session.poll_timeout())
                .is_some_and(|t| t <= now);
            if due {
                if let Some(c) = self.conn_mut(h) {
                    c.session.handle_timeout(now);
                }
                self.touch(h);
                self.drain(h);
            }
        }
    }

    /// The peer closed the connection, or the socket failed.
    pub fn handle_closed(&mut self, h: ConnectionHandle, now: Instant) {
        if let Some(c) = self.conn_mut(h) {
            c.session.handle_closed(now);
            c.refusal = None;
        }
        self.drain(h);
    }

    /// The driver closed the socket: the connection and its session are
    /// forgotten, its TSIH free again. When it was the last session of its
    /// I_T nexus, [`PortalEvent::NexusLost`] follows.
    pub fn remove(&mut self, h: ConnectionHandle) {
        let Some(mut c) = self.conns.get_mut(h.0).and_then(Option::take) else {
            return;
        };
        c.session.close_now();
        self.free.push(h.0);
        self.live = self.live.saturating_sub(1);
        // Closed-session events of a removed connection are moot.
        self.events.retain(|e| event_connection(e) != Some(h));
        if let Some(nexus) = c.login.and_then(|l| l.nexus) {
            if self.sessions_of(nexus, None).next().is_none() {
                self.events.push_back(PortalEvent::NexusLost { nexus });
            }
        }
    }

    // ----- (C) actions -----

    /// [`Session::complete`] on the task's connection.
    pub fn complete(
        &mut self,
        h: ConnectionHandle,
        task: TaskId,
        status: ScsiStatus,
        sense: Option<Bytes>,
        data_in: Bytes,
    ) -> Result<(), PortalError> {
        let c = self.conn_mut(h).ok_or(PortalError::UnknownConnection(h))?;
        c.session.complete(task, status, sense, data_in)?;
        self.touch(h);
        self.drain(h);
        Ok(())
    }

    /// [`Session::complete_write`] on the task's connection.
    pub fn complete_write(
        &mut self,
        h: ConnectionHandle,
        task: TaskId,
        status: ScsiStatus,
        sense: Option<Bytes>,
        scsi_write_len: u32,
    ) -> Result<(), PortalError> {
        let c = self.conn_mut(h).ok_or(PortalError::UnknownConnection(h))?;
        c.session
            .complete_write(task, status, sense, scsi_write_len)?;
        self.touch(h);
        self.drain(h);
        Ok(())
    }

    /// [`Session::abort_acknowledged`] on the task's connection.
    pub fn abort_acknowledged(
        &mut self,
        h: ConnectionHandle,
        task: TaskId,
    ) -> Result<(), PortalError> {
        let c = self.conn_mut(h).ok_or(PortalError::UnknownConnection(h))?;
        c.session.abort_acknowledged(task)?;
        self.touch(h);
        self.drain(h);
        Ok(())
    }

    /// Closes a connection without a word to the initiator
    /// ([`Session::close_now`]), e.g. when the server shuts down.
    pub fn close_now(&mut self, h: ConnectionHandle) {
        if let Some(c) = self.conn_mut(h) {
            c.session.close_now();
            c.refusal = None;
        }
        self.touch(h);
        self.drain(h);
    }

    // ----- (D) outputs -----

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PortalEvent> {
        self.events.pop_front()
    }

    /// The next PDU to write on connection `h`, in order.
    #[must_use]
    pub fn poll_transmit(&mut self, h: ConnectionHandle, now: Instant) -> Option<Transmit> {
        let c = self.conn_mut(h)?;
        c.refusal.take().or_else(|| c.session.poll_transmit(now))
    }

    /// A connection that has new transmits (or closed) because of
    /// something not fed through it: a timer, a completion, another
    /// session's reinstatement or cold reset. Flush it like the one fed.
    #[must_use]
    pub fn poll_touched(&mut self) -> Option<ConnectionHandle> {
        let h = self.touched.pop_front()?;
        if let Some(c) = self.conn_mut(h) {
            c.touched = false;
        }
        Some(h)
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout)
    /// must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .iter()
            .flatten()
            .filter_map(|c| c.session.poll_timeout())
            .min()
    }

    // ----- internals -----

    fn conn(&self, h: ConnectionHandle) -> Option<&Conn> {
        self.conns.get(h.0).and_then(Option::as_ref)
    }

    fn conn_mut(&mut self, h: ConnectionHandle) -> Option<&mut Conn> {
        self.conns.get_mut(h.0).and_then(Option::as_mut)
    }

    fn touch(&mut self, h: ConnectionHandle) {
        if let Some(c) = self.conn_mut(h) {
            if !c.touched {
                c.touched = true;
                self.touched.push_back(h);
            }
        }
    }

    /// RFC 7143 section 4.4.3 (TSIH RULE) and 11.13.3: a non-zero TSIH,
    /// skipping those held by live connections.
    fn take_tsih(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            let t = self.next_tsih;
            self.next_tsih = self.next_tsih.wrapping_add(1).max(1);
            if t != 0 && !self.conns.iter().flatten().any(|c| c.tsih == t) {
                return Some(t);
            }
        }
        None
    }

    /// One seed per session: SplitMix64 over the portal's seed and a
    /// counter.
    fn take_seed(&mut self) -> u64 {
        self.seed_counter = self.seed_counter.wrapping_add(1);
        splitmix(self.seed ^ splitmix(self.seed_counter))
    }

    /// RFC 7143 section 6.3.1: a first Login Request with a non-zero TSIH
    /// and the ISID of a live session would add a connection to it, which
    /// is not negotiated here (MaxConnections=1, section 13.2): "Too many
    /// connections" (0x0206, section 11.13.5). A TSIH of no live session
    /// is left to the session ("Session does not exist", 0x020a).
    fn route(&self, buf: &[u8]) -> Option<LoginStatus> {
        let bhs = Bhs::new_checked(buf.get(..BHS_LEN)?).ok()?;
        let Ok(Header::LoginRequest(req)) = Header::parse(&bhs) else {
            return None;
        };
        if req.tsih == 0 {
            return None;
        }
        let existing = self.conns.iter().flatten().any(|c| {
            c.tsih == req.tsih
                && !c.session.is_closed()
                && c.login
                    .as_ref()
                    .is_some_and(|l| l.isid == req.isid && l.session_type == SessionType::Normal)
        });
        existing.then_some(LoginStatus::TooManyConnections)
    }

    /// Answers the first Login Request with a non-zero Status-Class and
    /// closes the connection (RFC 7143 section 11.13.5: "the initiator and
    /// target MUST close the TCP connection").
    fn refuse(&mut self, h: ConnectionHandle, buf: &mut BytesMut, status: LoginStatus) {
        let header = Bhs::new_checked(buf.get(..BHS_LEN).unwrap_or(&[]))
            .ok()
            .and_then(|b| Header::parse(&b).ok());
        buf.clear();
        let Some(Header::LoginRequest(req)) = header else {
            return;
        };
        let (class, detail) = status.raw();
        let seed = self.take_seed();
        let response = Header::LoginResponse(LoginResponse {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: Stage::Security,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            // RFC 7143 section 11.13.3: "this field should be set to the
            // TSIH provided by the initiator".
            tsih: req.tsih,
            itt: req.itt,
            stat_sn: crate::wire::Serial(seed as u32),
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn,
            status_class: class,
            status_detail: detail,
        });
        let mut out = BytesMut::new();
        if encode_header(&mut out, &response, &[], 0, Digests::NONE).is_err() {
            return;
        }
        let Some(c) = self.conn_mut(h) else {
            return;
        };
        c.session.close_now();
        // The session never saw a byte: its Closed event is replaced.
        while c.session.poll_event().is_some() {}
        c.refusal = Some(Transmit {
            header: out.freeze(),
            data: Bytes::new(),
            trailer: data_trailer(&[], Digests::NONE),
        });
        let initiator_name = None;
        self.events.push_back(PortalEvent::LoginFailed {
            connection: h,
            status,
            initiator_name,
        });
        self.events.push_back(PortalEvent::Closed {
            connection: h,
            reason: CloseReason::LoginFailed(status),
        });
    }

    /// Moves the session events of `h` to the portal's queue, acting on
    /// those that span sessions.
    fn drain(&mut self, h: ConnectionHandle) {
        while let Some(ev) = self.conn_mut(h).and_then(|c| c.session.poll_event()) {
            self.on_event(h, ev);
        }
    }

    fn on_event(&mut self, h: ConnectionHandle, ev: Event) {
        let nexus = self.nexus(h).unwrap_or(NexusId(0));
        let out = match ev {
            Event::LoggedIn {
                session_type,
                initiator_name,
                target_name,
                isid,
                tsih,
                negotiated,
            } => {
                self.logged_in(h, session_type, &initiator_name, isid);
                let nexus = self.nexus(h);
                self.events.push_back(PortalEvent::LoggedIn {
                    connection: h,
                    nexus,
                    session_type,
                    initiator_name: initiator_name.clone(),
                    target_name,
                    isid,
                    tsih,
                    negotiated,
                });
                if let Some(nexus) = nexus {
                    self.nexus_up(h, nexus, initiator_name, isid);
                }
                return;
            }
            Event::LoginFailed { status } => PortalEvent::LoginFailed {
                connection: h,
                status,
                initiator_name: self
                    .session(h)
                    .and_then(Session::initiator_name)
                    .map(str::to_owned),
            },
            Event::Command(request) => PortalEvent::Command {
                connection: h,
                nexus,
                request,
            },
            Event::TaskAborted { task } => PortalEvent::TaskAborted {
                connection: h,
                task,
            },
            Event::TaskManagement {
                function,
                lun,
                aborted,
            } => {
                self.events.push_back(PortalEvent::TaskManagement {
                    connection: h,
                    nexus,
                    function,
                    lun,
                    aborted,
                });
                self.task_management(h, nexus, function, lun);
                return;
            }
            Event::LoggedOut => PortalEvent::LoggedOut { connection: h },
            Event::Closed { reason } => PortalEvent::Closed {
                connection: h,
                reason,
            },
        };
        self.events.push_back(out);
    }

    fn logged_in(
        &mut self,
        h: ConnectionHandle,
        session_type: SessionType,
        name: &str,
        isid: Isid,
    ) {
        let nexus = (session_type == SessionType::Normal).then(|| NexusId::of(name, isid));
        if let Some(c) = self.conn_mut(h) {
            c.login = Some(Login {
                session_type,
                isid,
                nexus,
            });
        }
    }

    /// A Normal session of `nexus` logged in on `new`: RFC 7143 section
    /// 6.3.5, "Session reinstatement is the process of the initiator
    /// logging in with an ISID that is possibly active from the target's
    /// perspective. Thus implicitly logging out the session that
    /// corresponds to the ISID and reinstating a new iSCSI session in its
    /// place (with the same ISID). [...] Session reinstatement causes all
    /// the tasks that were active on the old session to be immediately
    /// terminated by the target without further notice to the initiator."
    /// Done once the new login succeeded, so that a login that fails
    /// (e.g. authentication) leaves the old session alone.
    fn nexus_up(&mut self, new: ConnectionHandle, nexus: NexusId, name: String, isid: Isid) {
        let others: Vec<ConnectionHandle> = self.sessions_of(nexus, Some(new)).collect();
        if others.is_empty() {
            self.events.push_back(PortalEvent::NexusCreated {
                nexus,
                initiator_name: name,
                isid,
            });
            return;
        }
        for old in others {
            let live = self.session(old).is_some_and(|s| !s.is_closed());
            if !live {
                continue;
            }
            self.events.push_back(PortalEvent::SessionReinstated {
                nexus,
                initiator_name: name.clone(),
                isid,
                old,
                new,
            });
            self.close_now(old);
        }
    }

    /// Connections (other than `except`) whose Normal session logged in on
    /// `nexus`, closed or not, until removed.
    fn sessions_of(
        &self,
        nexus: NexusId,
        except: Option<ConnectionHandle>,
    ) -> impl Iterator<Item = ConnectionHandle> + '_ {
        self.conns.iter().enumerate().filter_map(move |(i, c)| {
            let h = ConnectionHandle(i);
            let on = c
                .as_ref()
                .and_then(|c| c.login.as_ref())
                .is_some_and(|l| l.nexus == Some(nexus));
            (on && Some(h) != except).then_some(h)
        })
    }

    /// Task management that reaches beyond the session it came on (RFC
    /// 7143 section 11.5.1: "LOGICAL UNIT RESET, TARGET WARM RESET and
    /// TARGET COLD RESET may affect commands from other sessions").
    fn task_management(
        &mut self,
        h: ConnectionHandle,
        by: NexusId,
        function: TmfFunction,
        lun: u64,
    ) {
        let scope = match function {
            TmfFunction::LogicalUnitReset => ResetScope::LogicalUnit(lun),
            TmfFunction::TargetWarmReset => ResetScope::Target { cold: false },
            TmfFunction::TargetColdReset => ResetScope::Target { cold: true },
            _ => return,
        };
        // SAM-5 6.3.3 / 5.14: the reset establishes a unit attention for
        // every I_T nexus, including the one it came through.
        let mut nexuses: Vec<NexusId> = self
            .conns
            .iter()
            .flatten()
            .filter_map(|c| c.login.as_ref().and_then(|l| l.nexus))
            .chain(std::iter::once(by).filter(|n| n.0 != 0))
            .collect();
        nexuses.sort_unstable();
        nexuses.dedup();
        self.events
            .push_back(PortalEvent::Reset { scope, by, nexuses });
        if scope == (ResetScope::Target { cold: true }) {
            // RFC 7143 section 11.5.1: "For the TARGET COLD RESET function,
            // the target MUST then close all of its TCP connections to all
            // initiators (terminates all sessions)." The issuing session
            // closes itself after its response.
            let others: Vec<ConnectionHandle> = (0..self.conns.len())
                .map(ConnectionHandle)
                .filter(|&o| o != h && !self.is_closed(o))
                .collect();
            for o in others {
                self.close_now(o);
            }
        }
    }
}

/// The connection an event is about, if one.
fn event_connection(e: &PortalEvent) -> Option<ConnectionHandle> {
    match e {
        PortalEvent::LoggedIn { connection, .. }
        | PortalEvent::LoginFailed { connection, .. }
        | PortalEvent::Command { connection, .. }
        | PortalEvent::TaskAborted { connection, .. }
        | PortalEvent::TaskManagement { connection, .. }
        | PortalEvent::LoggedOut { connection }
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

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
