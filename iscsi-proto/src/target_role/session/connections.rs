//! The connections of one session (RFC 7143 section 13.2, MaxConnections;
//! section 6.4, connection allegiance): which one is served, adding one
//! that logged in with the session's TSIH, and the inputs and outputs of
//! each, used by the [`crate::target::Portal`].
//!
//! The session serves one connection at a time: [`Session::with_conn`]
//! swaps the connection a task or request belongs to into `conn`, so the
//! protocol modules, which write to `self.conn`, answer on the right one.
//! The command window, the tasks and the held commands are the session's
//! (section 4.2.2.1: "CmdSN ... is session-wide"); StatSN, the login and
//! the transmit queue are each connection's (section 4.2.2.2).

use crate::prelude::*;
use crate::time::Instant;

use bytes::BytesMut;

use super::{Phase, Session};
use crate::target::connection::Connection;
use crate::target::event::CloseReason;
use crate::target::window::TargetWindow;
use crate::transmit::Transmit;

impl Session {
    /// Makes the connection `cid` the current one. False when the session
    /// has no such connection (the current one stays).
    pub(in crate::target) fn activate(&mut self, cid: u16) -> bool {
        if self.conn.cid == cid {
            return true;
        }
        let Some(i) = self.parked.iter().position(|c| c.cid == cid) else {
            return false;
        };
        if let Some(other) = self.parked.get_mut(i) {
            core::mem::swap(&mut self.conn, other);
        }
        true
    }

    /// Runs `f` with connection `cid` current (if the session has it),
    /// then restores the current one.
    pub(in crate::target) fn with_conn<R>(
        &mut self,
        cid: u16,
        f: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let prev = self.conn.cid;
        self.activate(cid);
        let r = f(self);
        self.activate(prev);
        r
    }

    /// The CIDs of the session's connections, the current one first.
    pub(in crate::target) fn cids(&self) -> Vec<u16> {
        core::iter::once(self.conn.cid)
            .chain(self.parked.iter().map(|c| c.cid))
            .collect()
    }

    /// Whether the session has (or had, failed) a connection with `cid`.
    pub(in crate::target) fn has_cid(&self, cid: u16) -> bool {
        self.connection(cid).is_some()
    }

    /// Forgets connection `cid` once it is closed and its socket gone
    /// (bounds the closed connections a long session keeps; what its tasks
    /// need for recovery was moved to the session when it failed).
    pub(in crate::target) fn forget_connection(&mut self, cid: u16) {
        if self.conn.cid == cid {
            if self.conn.phase == Phase::Closed {
                if let Some(other) = self.parked.pop() {
                    self.conn = other;
                }
            }
            return;
        }
        self.parked
            .retain(|c| c.cid != cid || c.phase != Phase::Closed);
    }

    /// Connections the session has (open or closed, not yet forgotten).
    pub(in crate::target) fn connection_count(&self) -> usize {
        1 + self.parked.len()
    }

    /// Connections in the Full Feature Phase.
    pub fn live_connections(&self) -> usize {
        core::iter::once(&self.conn)
            .chain(self.parked.iter())
            .filter(|c| c.phase == Phase::FullFeature)
            .count()
    }

    /// Whether connection `cid` is over (true for a CID the session does
    /// not have).
    pub(in crate::target) fn is_closed_on(&self, cid: u16) -> bool {
        self.connection(cid)
            .is_none_or(|c| c.phase == Phase::Closed)
    }

    fn connection(&self, cid: u16) -> Option<&Connection> {
        core::iter::once(&self.conn)
            .chain(self.parked.iter())
            .find(|c| c.cid == cid)
    }

    fn connection_mut(&mut self, cid: u16) -> Option<&mut Connection> {
        if self.conn.cid == cid {
            return Some(&mut self.conn);
        }
        self.parked.iter_mut().find(|c| c.cid == cid)
    }

    /// Whether the whole session is over: every connection closed and no
    /// task waiting for reassignment.
    pub fn is_finished(&self) -> bool {
        self.live_connections() == 0
            && core::iter::once(&self.conn)
                .chain(self.parked.iter())
                .all(|c| c.phase == Phase::Closed)
            && self.recovery.is_empty()
    }

    /// [`Session::handle_input`] for connection `cid`.
    pub(in crate::target) fn handle_input_on(
        &mut self,
        cid: u16,
        now: Instant,
        buf: &mut BytesMut,
    ) {
        if self.activate(cid) {
            self.handle_input(now, buf);
        } else {
            buf.clear();
        }
    }

    /// The peer closed connection `cid` (or its socket failed).
    pub(in crate::target) fn handle_closed_on(&mut self, cid: u16, now: Instant) {
        if self.activate(cid) {
            self.handle_closed(now);
        }
    }

    /// The driver dropped connection `cid` without a word from the peer
    /// (its socket is gone): a connection failure.
    pub(in crate::target) fn drop_on(&mut self, cid: u16) {
        if self.activate(cid) && self.conn.phase != Phase::Closed {
            self.connection_failed(CloseReason::PeerClosed);
        }
    }

    /// The next PDU to write on connection `cid`.
    pub(in crate::target) fn poll_transmit_on(&mut self, cid: u16) -> Option<Transmit> {
        self.connection_mut(cid)?.pop_transmit()
    }

    /// The next event with the CID of the connection it concerns.
    pub(in crate::target) fn poll_event_on(&mut self) -> Option<(u16, crate::target::Event)> {
        self.events.pop_front()
    }

    /// Runs the timers of every connection and of the session.
    pub(in crate::target) fn handle_timeout_all(&mut self, now: Instant) {
        self.now = Some(now);
        for cid in self.cids() {
            if self.activate(cid) {
                self.keepalive(now);
            }
        }
        self.retention_timeout(now);
        self.data_out_timeout(now);
        self.update_timer();
    }

    /// Lets a connection that logged in elsewhere with this session's TSIH
    /// join it (RFC 7143 section 6.3.1, second row of the table: "TSIH
    /// non-zero ... instantiate a new connection in the existing session",
    /// or section 6.3.4, connection reinstatement, when its CID is in use).
    /// The joining [`Session`] was prepared with [`Session::expect_join`].
    pub(in crate::target) fn add_connection(&mut self, mut joining: Session) {
        let conn = core::mem::replace(&mut joining.conn, Connection::new(crate::wire::Serial(0)));
        let cid = conn.cid;
        // Section 6.3.4: "the target ... MUST close the old connection"
        // with the same CID; its tasks wait for reassignment at
        // ErrorRecoveryLevel 2 and are terminated below that.
        if self
            .connection(cid)
            .is_some_and(|c| c.phase != Phase::Closed)
        {
            self.with_conn(cid, |s| s.connection_failed(CloseReason::Reinstated));
        }
        // Forget the dead connection with that CID, and a closed current
        // one that nobody uses any more.
        self.parked.retain(|c| c.cid != cid);
        let mut conn = conn;
        if self.erl() >= 1 {
            conn.status_log = Some(crate::target::retention::StatusLog::new(
                self.cfg.retention_budget,
            ));
        }
        if self.conn.cid == cid || self.conn.phase == Phase::Closed && self.live_connections() == 0
        {
            let old = core::mem::replace(&mut self.conn, conn);
            if old.cid != cid && old.phase != Phase::Closed {
                self.parked.push(old);
            }
        } else {
            self.parked.push(conn);
        }
        self.update_timer();
    }

    /// Prepares a fresh session (a new TCP connection's) to log in as a
    /// further connection of the session `tsih` (RFC 7143 section 6.3.1):
    /// its Login Request may carry that TSIH, and its window is the
    /// session's (section 4.2.2.1: the window is session-wide).
    pub(in crate::target) fn expect_join(&mut self, tsih: u16, window: TargetWindow) {
        self.recovery.joining = Some((tsih, window));
    }

    /// The session's command window (for a joining connection's login).
    pub(in crate::target) fn window(&self) -> TargetWindow {
        self.window.clone()
    }

    /// The negotiated ErrorRecoveryLevel.
    pub(in crate::target) fn erl(&self) -> u8 {
        self.error_recovery_level()
    }
}
