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
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
