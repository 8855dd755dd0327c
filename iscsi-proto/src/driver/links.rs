//! The added connections of a session (MC/S, RFC 7143 section 13.2) as a
//! driver runs them: one receive buffer and one transmit queue per CID,
//! kept here so that a driver only opens, reads, writes and closes the
//! sockets it is told to.
//!
//! The first connection is driven by the [`DriverCore`] calls without a
//! CID, unchanged. For every added connection:
//!
//! 1. [`DriverCore::poll_link`] says when to open a socket for a CID
//!    ([`LinkRequest::Open`], after the core's `Event::OpenConnection`) and
//!    when to close one ([`LinkRequest::Close`], after
//!    `Event::CloseConnection` or the end of the session). The driver
//!    reports [`DriverCore::link_connected`] or
//!    [`DriverCore::link_lost`] (a failed connect included).
//! 2. Input: [`DriverCore::read_on`] with the socket's read.
//! 3. Output: [`DriverCore::write_on`] with the socket's vectored write,
//!    for every CID of [`DriverCore::link_ids`], after every call that
//!    fed the session (the core's drain order: every connection's
//!    transmits, then events).
//! 4. Waiting: readability while [`DriverCore::link_is_connected`],
//!    writability while [`DriverCore::link_wants_writable`] (then
//!    [`DriverCore::link_writable`]).
//!
//! With [`DriverCore::set_auto_connections`] (on by default) the driver
//! core asks the session for connections up to the negotiated
//! MaxConnections whenever the session (re)enters the Full Feature Phase,
//! so `SessionConfig::with_max_connections(n, ..)` alone yields `n`
//! connections when the target accepts them.

use crate::prelude::*;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::Instant;

use super::{DriverCore, Error, Read, Written, BATCH, IO_SLICES};
use crate::initiator::{RecvBuffer, TxQueue};

/// What the driver must do with the socket of an added connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum LinkRequest {
    /// Open a TCP connection for connection `cid` to `addr` (`host:port`,
    /// an IPv6 literal in brackets).
    Open {
        /// The connection ID.
        cid: u16,
        /// Where to connect.
        addr: String,
    },
    /// Close the socket of connection `cid` (if it still has one).
    Close {
        /// The connection ID.
        cid: u16,
    },
}

/// The state of one added connection.
#[derive(Debug, Default)]
pub(super) struct Link {
    rx: RecvBuffer,
    tx: TxQueue,
    /// (local, peer) once connected.
    addrs: Option<(SocketAddr, SocketAddr)>,
    /// Asked to open, not yet connected.
    connecting: bool,
    /// A write would block.
    blocked: bool,
}

impl Link {
    /// The receive buffer (released by the driver core when idle).
    pub(super) fn rx_mut(&mut self) -> &mut RecvBuffer {
        &mut self.rx
    }
}

impl DriverCore {
    /// Whether the driver core opens connections up to the negotiated
    /// MaxConnections by itself (default: yes).
    pub fn set_auto_connections(&mut self, on: bool) {
        self.auto_connections = on;
    }

    /// Asks the session for one more connection (see
    /// `Session::add_connection`); its [`LinkRequest::Open`] follows.
    pub fn add_connection(&mut self, now: Instant) -> Result<u16, Error> {
        self.check()?;
        let cid = self.session.add_connection(self.clock.to_core(now))?;
        self.drain();
        Ok(cid)
    }

    /// Opens connections until the session has as many as negotiated.
    pub(super) fn fill_connections(&mut self) {
        if !self.auto_connections {
            return;
        }
        let max = self
            .session
            .negotiated()
            .map_or(1, |n| usize::from(n.max_connections));
        let now = self.session.last_now();
        while self.session.connection_ids().len() < max {
            match self.session.add_connection(now) {
                Ok(cid) => tracing::debug!(target: "iscsi::driver", cid, "adding a connection"),
                Err(e) => {
                    tracing::debug!(target: "iscsi::driver", %e, "no further connection");
                    break;
                }
            }
        }
    }

    /// The next socket to open or close for an added connection.
    pub fn poll_link(&mut self) -> Option<LinkRequest> {
        let r = self.link_requests.pop_front()?;
        if let LinkRequest::Open { cid, .. } = &r {
            if let Some(l) = self.links.get_mut(cid) {
                l.connecting = true;
            }
        }
        Some(r)
    }

    /// Whether [`DriverCore::poll_link`] has a request.
    pub fn has_link_request(&self) -> bool {
        !self.link_requests.is_empty()
    }

    /// The CIDs of the added connections the driver has a socket for or
    /// is opening.
    pub fn link_ids(&self) -> Vec<u16> {
        self.links.keys().copied().collect()
    }

    /// Whether added connection `cid` has its socket up.
    pub fn link_is_connected(&self, cid: u16) -> bool {
        self.links.get(&cid).is_some_and(|l| l.addrs.is_some())
    }

    /// Whether the driver must wait for writability on `cid`'s socket (a
    /// connect in progress, or a write that would block).
    pub fn link_wants_writable(&self, cid: u16) -> bool {
        self.links
            .get(&cid)
            .is_some_and(|l| l.connecting || l.blocked)
    }

    /// `cid`'s socket is writable again after [`Written::WouldBlock`].
    pub fn link_writable(&mut self, cid: u16) {
        if let Some(l) = self.links.get_mut(&cid) {
            l.blocked = false;
        }
    }

    /// The socket of added connection `cid` is up.
    pub fn link_connected(&mut self, cid: u16, now: Instant, local: SocketAddr, peer: SocketAddr) {
        let Some(l) = self.links.get_mut(&cid) else {
            return;
        };
        l.connecting = false;
        l.addrs = Some((local, peer));
        self.session
            .handle_connected_on(cid, self.clock.to_core(now));
        self.drain();
    }

    /// The socket of added connection `cid` could not be opened or broke:
    /// the session decides (it closes the connection with
    /// [`LinkRequest::Close`]; at ErrorRecoveryLevel 2 its tasks move to
    /// another connection).
    pub fn link_lost(&mut self, cid: u16, now: Instant) {
        tracing::debug!(target: "iscsi::driver", cid, "added connection lost");
        if let Some(l) = self.links.get_mut(&cid) {
            l.addrs = None;
            l.connecting = false;
        }
        self.session.handle_closed_on(cid, self.clock.to_core(now));
        self.drain();
    }

    /// Reads once from `cid`'s socket with `read` and hands the bytes to
    /// the session; an end of stream or a read error is a
    /// [`DriverCore::link_lost`].
    pub fn read_on(
        &mut self,
        cid: u16,
        now: Instant,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> Read {
        let max_pdu = self.session.max_recv_pdu_len();
        let chunk = self.read_size();
        loop {
            let Some(l) = self.links.get_mut(&cid).filter(|l| l.addrs.is_some()) else {
                return Read::Lost;
            };
            match read(l.rx.spare(max_pdu, chunk)) {
                Ok(0) => {
                    self.link_lost(cid, now);
                    return Read::Lost;
                }
                Ok(n) => {
                    let got = l.rx.commit(n);
                    if let (Some(tap), Some((local, peer))) = (self.tap.as_mut(), l.addrs) {
                        tap(super::Direction::Received, local, peer, got);
                    }
                    self.session
                        .handle_input_on(cid, self.clock.to_core(now), l.rx.filled());
                    self.drain();
                    return Read::Bytes(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Read::Nothing;
                }
                Err(_) => {
                    self.link_lost(cid, now);
                    return Read::Lost;
                }
            }
        }
    }

    /// Writes what connection `cid` has to send with `write` until nothing
    /// is left, the socket would block or it broke (then
    /// [`DriverCore::link_lost`] is done here).
    pub fn write_on(
        &mut self,
        cid: u16,
        now: Instant,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> Written {
        let core_now = self.clock.to_core(now);
        loop {
            let Some(l) = self.links.get_mut(&cid).filter(|l| l.addrs.is_some()) else {
                return Written::All;
            };
            if l.blocked {
                return Written::WouldBlock;
            }
            let session = &mut self.session;
            l.tx.fill_with(BATCH, || session.poll_transmit_on(cid, core_now));
            let mut slices = [IoSlice::new(&[]); IO_SLICES];
            let n = l.tx.io_slices(&mut slices);
            if n == 0 {
                return Written::All;
            }
            match write(slices.get(..n).unwrap_or(&[])) {
                Ok(0) => {
                    self.link_lost(cid, now);
                    return Written::Lost(None);
                }
                Ok(k) => {
                    match (self.tap.as_mut(), l.addrs) {
                        (Some(tap), Some((local, peer))) => l
                            .tx
                            .advance_with(k, |part| tap(super::Direction::Sent, local, peer, part)),
                        _ => l.tx.advance(k),
                    }
                    self.drain();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    l.blocked = true;
                    return Written::WouldBlock;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.link_lost(cid, now);
                    return Written::Lost(Some(e));
                }
            }
        }
    }

    /// Whether added connections have bytes to write.
    pub(super) fn links_have_output(&self) -> bool {
        self.links.values().any(|l| !l.tx.is_empty())
    }

    /// The core opened connection `cid` (`Event::OpenConnection`).
    pub(super) fn open_link(&mut self, cid: u16, addr: String) {
        self.links.insert(cid, Link::default());
        self.link_requests
            .retain(|r| !matches!(r, LinkRequest::Close { cid: c } if *c == cid));
        self.link_requests
            .push_back(LinkRequest::Open { cid, addr });
    }

    /// The core closed connection `cid` (`Event::CloseConnection`).
    pub(super) fn close_link_on(&mut self, cid: u16) {
        if self.links.remove(&cid).is_some() {
            self.link_requests
                .retain(|r| !matches!(r, LinkRequest::Open { cid: c, .. } if *c == cid));
            self.link_requests.push_back(LinkRequest::Close { cid });
        }
    }

    /// The session is over: every added connection's socket closes.
    pub(super) fn close_all_links(&mut self) {
        for cid in self.link_ids() {
            self.close_link_on(cid);
        }
    }
}
