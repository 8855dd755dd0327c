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
//!   non-zero TSIH of a live session adds a connection to it when the
//!   session negotiated MaxConnections above its live connections (section
//!   13.2, MC/S) or ErrorRecoveryLevel 1 or 2 with the CID of one of its
//!   connections (section 6.3.4, connection reinstatement; at level 2 the
//!   old connection's tasks wait for TASK REASSIGN), and is otherwise
//!   refused with "Too many connections" (0x0206, section 11.13.5); a TSIH
//!   no live session has is refused with "Session does not exist" (0x020a)
//!   by the session itself.
//! - **Sessions of several connections**: a connection's login runs in a
//!   fresh [`Session`]; once a joining login succeeds, its connection
//!   moves into the session it joined ([`PortalEvent::ConnectionJoined`]),
//!   which then answers each task on the connection it came in on
//!   (section 6.4).
//! - **I_T nexus state**: which I_T nexuses exist (the SCSI initiator port
//!   is the InitiatorName plus the ISID, section 4.4.1), reported as
//!   [`PortalEvent::NexusCreated`], [`PortalEvent::SessionReinstated`] and
//!   [`PortalEvent::NexusLost`], so that the logical units keep unit
//!   attentions and reservation transport IDs per nexus.
//! - **Task management across sessions**: a LOGICAL UNIT RESET or a target
//!   reset received on one session is reported as [`PortalEvent::Reset`]
//!   with every nexus it affects (SAM-5 6.3.3: a logical unit reset
//!   establishes a unit attention for every I_T nexus); the other
//!   sessions' tasks on that unit (every task, for a target reset) are
//!   aborted as well (section 11.5.1: these functions "may affect commands
//!   from other sessions"), a command whose event still waits here being
//!   withdrawn before the application sees it; a TARGET COLD RESET closes
//!   every other session too (section 11.5.1: "the target
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

use crate::prelude::*;
use crate::time::Instant;
use alloc::collections::VecDeque;
use core::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use crate::error::ConfigError;
use crate::login::SessionType;
use crate::network_portal::NetworkPortal;
use crate::scsi::ScsiStatus;
use crate::target::{Session, SessionConfig, TaskId, Transmit};
use crate::wire::{Isid, BHS_LEN};

mod cross;
mod deadlines;
mod event;

use event::event_connection;
pub use event::{ConnectionHandle, NexusId, PortalConfig, PortalError, PortalEvent, ResetScope};

/// What the login told the portal about a connection's session.
#[derive(Debug, Clone)]
pub(super) struct Login {
    session_type: SessionType,
    isid: Isid,
    nexus: Option<NexusId>,
}

/// One accepted connection.
#[derive(Debug)]
struct Conn {
    /// The slot of its session in `Portal::sessions`.
    session: usize,
    /// Its CID within the session, once logged in (before, the session
    /// is its own and has only it).
    cid: Option<u16>,
    /// The TSIH reserved for its session (given at login).
    tsih: u16,
    /// Whether the first Login Request was routed.
    routed: bool,
    /// A Login Response the portal itself answers with (section 11.13.5).
    refusal: Option<Transmit>,
    login: Option<Login>,
    touched: bool,
    /// The driver removed it while its session lives on (other
    /// connections, or tasks waiting for reassignment): the handle still
    /// names the session for the application's answers.
    removed: bool,
    /// A new connection with its CID replaced it (RFC 7143 section 6.3.4):
    /// it is closed, and names the session only for the application.
    replaced: bool,
    /// Commands reported on this handle and not yet answered through it:
    /// a removed connection keeps naming its session while any is left.
    held: u32,
}

/// Most removed connections a session keeps naming (oldest forgotten
/// first).
const MAX_GHOSTS: usize = 8;

/// The sans-IO target portal: accepts connections, routes their logins,
/// owns their [`Session`]s and what spans them. See the module
/// documentation for the driving loop.
#[derive(Debug)]
pub struct Portal {
    template: SessionConfig,
    max_connections: usize,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    sessions: Vec<Option<Session>>,
    free_sessions: Vec<usize>,
    live: usize,
    next_tsih: u16,
    seed: u64,
    seed_counter: u64,
    events: VecDeque<PortalEvent>,
    touched: VecDeque<ConnectionHandle>,
    /// Connections logging in to join a session (its slot).
    joins: Vec<(ConnectionHandle, usize)>,
    /// The sessions' deadlines, ordered (`poll_timeout` in O(log n)).
    deadlines: deadlines::Deadlines,
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
            sessions: Vec::new(),
            free_sessions: Vec::new(),
            live: 0,
            next_tsih: 1,
            seed,
            seed_counter: 0,
            events: VecDeque::new(),
            touched: VecDeque::new(),
            joins: Vec::new(),
            deadlines: deadlines::Deadlines::default(),
        })
    }

    // ----- (A) getters -----

    /// Connections open (accepted, not yet removed).
    pub fn connections(&self) -> usize {
        self.live
    }

    /// The session of a connection (shared by every connection of a
    /// multi-connection session).
    pub fn session(&self, h: ConnectionHandle) -> Option<&Session> {
        let c = self.conn(h)?;
        self.sessions.get(c.session).and_then(Option::as_ref)
    }

    /// Whether the connection is over: once its transmits are written,
    /// close the socket and [`remove`](Self::remove) it. True for an
    /// unknown handle.
    pub fn is_closed(&self, h: ConnectionHandle) -> bool {
        let Some(c) = self.conn(h) else {
            return true;
        };
        if c.removed || c.replaced {
            return true;
        }
        let closed = match (self.session(h), c.cid) {
            (None, _) => true,
            (Some(s), None) => s.is_closed(),
            (Some(s), Some(cid)) => s.is_closed_on(cid),
        };
        c.refusal.is_none() && closed
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
        self.settle();
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
        let slot = self.put_session(session);
        let conn = Conn {
            session: slot,
            cid: None,
            tsih,
            routed: false,
            refusal: None,
            login: None,
            touched: false,
            removed: false,
            replaced: false,
            held: 0,
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
        self.settle();
        let Some(c) = self.conn_mut(h) else {
            return;
        };
        if c.removed || c.replaced {
            buf.clear();
            return;
        }
        if !c.routed {
            // Route once the whole BHS of the first Login Request is here.
            if buf.len() < BHS_LEN {
                return;
            }
            c.routed = true;
            match self.route(buf) {
                Some(Route::Refuse(status)) => {
                    self.refuse(h, buf, status);
                    return;
                }
                Some(Route::Join(target)) => self.prepare_join(h, target),
                None => {}
            }
        }
        let Some((slot, cid)) = self.conn(h).map(|c| (c.session, c.cid)) else {
            return;
        };
        let before = buf.len();
        if let Some(s) = self.sess_mut(slot) {
            match cid {
                Some(cid) => s.handle_input_on(cid, now, buf),
                None => s.handle_input(now, buf),
            }
        }
        self.drain(h);
        // Siblings only need another look when this input changed the
        // session (a PDU was consumed). A connection whose decoding is
        // paused (its transmit queue is full) consumes nothing; touching
        // its siblings then would make two paused connections touch each
        // other for ever, and the driver would never get back to its
        // socket events (the MC/S livelock of session 6: no writable
        // event, so the queue that paused decoding never drained).
        if buf.len() != before {
            self.touch_siblings(h);
        }
    }

    /// Runs the timers of every session that is due. Only those are
    /// visited (the deadline index): O(due * log n).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle();
        for slot in self.deadlines.due(now) {
            let due = self
                .sessions
                .get(slot)
                .and_then(Option::as_ref)
                .and_then(Session::poll_timeout)
                .is_some_and(|t| t <= now);
            if !due {
                continue;
            }
            if let Some(s) = self.sess_mut(slot) {
                s.handle_timeout(now);
            }
            self.drain_session(slot, None);
            for h in self.handles_of(slot) {
                self.touch(h);
            }
            self.reap(slot);
        }
    }

    /// The peer closed the connection, or the socket failed.
    pub fn handle_closed(&mut self, h: ConnectionHandle, now: Instant) {
        self.settle();
        let Some((slot, cid, replaced)) = self.conn_mut(h).map(|c| {
            c.refusal = None;
            (c.session, c.cid, c.replaced)
        }) else {
            return;
        };
        if replaced {
            // Its connection is gone from the session already.
            return;
        }
        if let Some(s) = self.sess_mut(slot) {
            match cid {
                Some(cid) => s.handle_closed_on(cid, now),
                None => s.handle_closed(now),
            }
        }
        self.drain(h);
        self.touch_siblings(h);
    }

    /// The driver closed the socket: the connection is forgotten, and its
    /// session too unless it lives on (other connections, or tasks
    /// waiting for reassignment at ErrorRecoveryLevel 2: the handle then
    /// keeps naming it for [`complete`](Self::complete)). When the last
    /// session of an I_T nexus is gone, [`PortalEvent::NexusLost`] follows.
    pub fn remove(&mut self, h: ConnectionHandle) {
        self.settle();
        let Some(c) = self.conn_mut(h) else {
            return;
        };
        if c.removed {
            return;
        }
        c.removed = true;
        c.refusal = None;
        let (slot, cid, replaced) = (c.session, c.cid, c.replaced);
        self.joins.retain(|(j, _)| *j != h);
        self.live = self.live.saturating_sub(1);
        if let Some(s) = self.sess_mut(slot).filter(|_| !replaced) {
            match cid {
                Some(cid) => {
                    if !s.is_closed_on(cid) {
                        s.drop_on(cid);
                    }
                    s.forget_connection(cid);
                }
                None => s.close_now(),
            }
        }
        // Closed-connection events of a removed connection are moot.
        self.events.retain(|e| event_connection(e) != Some(h));
        self.drain_session(slot, Some(h));
        self.events
            .retain(|e| !matches!(e, PortalEvent::Closed { connection, .. } if *connection == h));
        self.reap(slot);
        self.trim_ghosts(slot);
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
        self.settle();
        self.session_mut(h)?
            .complete(task, status, sense, data_in)?;
        self.answered(h);
        self.after_action(h);
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
        self.settle();
        self.session_mut(h)?
            .complete_write(task, status, sense, scsi_write_len)?;
        self.answered(h);
        self.after_action(h);
        Ok(())
    }

    /// [`Session::abort_acknowledged`] on the task's connection.
    pub fn abort_acknowledged(
        &mut self,
        h: ConnectionHandle,
        task: TaskId,
    ) -> Result<(), PortalError> {
        self.settle();
        self.session_mut(h)?.abort_acknowledged(task)?;
        self.answered(h);
        self.after_action(h);
        Ok(())
    }

    /// Closes a connection's session without a word to the initiator
    /// ([`Session::close_now`]), e.g. when the server shuts down (every
    /// connection of the session closes).
    pub fn close_now(&mut self, h: ConnectionHandle) {
        self.settle();
        let mut gone = false;
        if let Some(c) = self.conn_mut(h) {
            c.refusal = None;
            gone = c.removed || c.replaced;
        }
        if !gone {
            if let Ok(s) = self.session_mut(h) {
                s.close_now();
            }
        }
        self.after_action(h);
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
        let c = self.conns.get_mut(h.0).and_then(Option::as_mut)?;
        if c.removed || c.replaced {
            return None;
        }
        if let Some(t) = c.refusal.take() {
            return Some(t);
        }
        let (slot, cid) = (c.session, c.cid);
        let s = self.sess_mut(slot)?;
        match cid {
            Some(cid) => s.poll_transmit_on(cid),
            None => s.poll_transmit(now),
        }
    }

    /// A connection that has new transmits (or closed) because of
    /// something not fed through it: a timer, a completion, another
    /// connection or session. Flush it like the one fed.
    #[must_use]
    pub fn poll_touched(&mut self) -> Option<ConnectionHandle> {
        let h = self.touched.pop_front()?;
        if let Some(c) = self.conn_mut(h) {
            c.touched = false;
        }
        Some(h)
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout)
    /// must be called: the minimum of every session's
    /// [`Session::poll_timeout`], from an ordered index (O(log n) plus the
    /// sessions changed since the last input), so a driver may ask it
    /// after every wake-up.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.earliest(&self.sessions)
    }

    // ----- internals -----

    fn conn(&self, h: ConnectionHandle) -> Option<&Conn> {
        self.conns.get(h.0).and_then(Option::as_ref)
    }

    fn conn_mut(&mut self, h: ConnectionHandle) -> Option<&mut Conn> {
        self.conns.get_mut(h.0).and_then(Option::as_mut)
    }

    fn session_mut(&mut self, h: ConnectionHandle) -> Result<&mut Session, PortalError> {
        let slot = self
            .conn(h)
            .map(|c| c.session)
            .ok_or(PortalError::UnknownConnection(h))?;
        self.sess_mut(slot).ok_or(PortalError::UnknownConnection(h))
    }

    /// The session in `slot`, for a change: its deadline is re-indexed
    /// (every mutable access to a session goes through here or marks the
    /// slot itself).
    fn sess_mut(&mut self, slot: usize) -> Option<&mut Session> {
        self.deadlines.mark(slot);
        self.sessions.get_mut(slot).and_then(Option::as_mut)
    }

    /// Re-indexes the deadlines of the sessions changed since the last
    /// call (start of every input and action).
    fn settle(&mut self) {
        self.deadlines.settle(&self.sessions);
    }

    fn put_session(&mut self, s: Session) -> usize {
        match self.free_sessions.pop() {
            Some(i) => {
                if let Some(slot) = self.sessions.get_mut(i) {
                    *slot = Some(s);
                }
                self.deadlines.mark(i);
                i
            }
            None => {
                self.sessions.push(Some(s));
                self.deadlines.mark(self.sessions.len() - 1);
                self.sessions.len() - 1
            }
        }
    }

    /// The connections (removed ones included) of session `slot`.
    fn handles_of(&self, slot: usize) -> Vec<ConnectionHandle> {
        self.conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.session == slot))
            .map(|(i, _)| ConnectionHandle(i))
            .collect()
    }

    /// After an application action on `h`: its session's events, and
    /// every connection of the session may have something to send (a
    /// task answers on its own connection, section 6.4).
    fn after_action(&mut self, h: ConnectionHandle) {
        self.touch(h);
        self.drain(h);
        self.touch_siblings(h);
        if let Some(slot) = self.conn(h).map(|c| c.session) {
            self.reap(slot);
        }
    }

    /// Touches the other live connections of `h`'s session.
    fn touch_siblings(&mut self, h: ConnectionHandle) {
        let Some(slot) = self.conn(h).map(|c| c.session) else {
            return;
        };
        let single = self
            .sessions
            .get(slot)
            .and_then(Option::as_ref)
            .is_none_or(|s| s.connection_count() <= 1);
        if single {
            // One connection: nobody else to flush (the common case).
            return;
        }
        for o in self.handles_of(slot) {
            if o != h && self.conn(o).is_some_and(|c| !c.removed) {
                self.touch(o);
            }
        }
    }

    /// Frees a session that is over and whose connections are all
    /// removed, with their slots (RFC 7143 section 11.13.3: its TSIH is
    /// free again).
    fn reap(&mut self, slot: usize) {
        let finished = self
            .sessions
            .get(slot)
            .and_then(Option::as_ref)
            .is_none_or(Session::is_finished);
        if !finished {
            return;
        }
        let handles = self.handles_of(slot);
        let all_removed = handles
            .iter()
            .all(|&o| self.conn(o).is_none_or(|c| c.removed));
        if !all_removed {
            return;
        }
        let mut nexus = None;
        for o in handles {
            if let Some(c) = self.conns.get_mut(o.0).and_then(Option::take) {
                nexus = nexus.or(c.login.and_then(|l| l.nexus));
                self.free.push(o.0);
            }
        }
        if let Some(s) = self.sessions.get_mut(slot) {
            if s.take().is_some() {
                self.free_sessions.push(slot);
            }
        }
        self.deadlines.mark(slot);
        if let Some(nexus) = nexus {
            if self.sessions_of(nexus, None).next().is_none() {
                self.events.push_back(PortalEvent::NexusLost { nexus });
            }
        }
    }

    /// A command reported on `h` was answered (or its abort acknowledged).
    fn answered(&mut self, h: ConnectionHandle) {
        if let Some(c) = self.conn_mut(h) {
            c.held = c.held.saturating_sub(1);
        }
    }

    /// Bounds the removed connections a live session keeps naming: the
    /// oldest beyond [`MAX_GHOSTS`] go, unless a command the application
    /// may still answer through it was reported on it.
    fn trim_ghosts(&mut self, slot: usize) {
        let ghosts: Vec<ConnectionHandle> = self
            .handles_of(slot)
            .into_iter()
            .filter(|&o| self.conn(o).is_some_and(|c| c.removed))
            .collect();
        let mut extra = ghosts.len().saturating_sub(MAX_GHOSTS);
        for o in ghosts {
            if extra == 0 {
                break;
            }
            if self.conn(o).is_some_and(|c| c.held == 0)
                && self.conns.get_mut(o.0).and_then(Option::take).is_some()
            {
                self.free.push(o.0);
                extra -= 1;
            }
        }
    }

    fn touch(&mut self, h: ConnectionHandle) {
        if let Some(c) = self.conn_mut(h) {
            if !c.touched && !c.removed {
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
}

/// Where a first Login Request with a non-zero TSIH goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Route {
    /// Refused by the portal with this status.
    Refuse(crate::login::LoginStatus),
    /// Joins the session in this slot.
    Join(usize),
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
