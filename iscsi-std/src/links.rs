//! The added connections of a session (MC/S, RFC 7143 section 13.2): one
//! blocking socket per CID, opened and closed as the driver core asks
//! (`DriverCore::poll_link`), written in full after every step, read
//! whenever it has input.
//!
//! A blocking driver has no way to sleep on several sockets at once: with
//! added connections up, a wait for input looks at every socket without
//! waiting, then waits on each in turn for at most [`SLICE`] (so input on
//! any connection is taken within one round of slices).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use iscsi_proto::driver::LinkRequest;

use crate::{connect, Error, Inner};

/// The longest wait on one socket while several are up.
pub(crate) const SLICE: Duration = Duration::from_millis(1);

/// The sockets of the added connections, by CID.
#[derive(Debug, Default)]
pub(crate) struct Links {
    streams: BTreeMap<u16, TcpStream>,
    /// Which socket the next sliced wait is on.
    turn: usize,
}

impl Links {
    /// Whether any added connection has a socket.
    pub(crate) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

impl Inner {
    /// Opens and closes the sockets the core asks for.
    pub(crate) fn link_requests(&mut self) {
        while let Some(r) = self.core.poll_link() {
            match r {
                LinkRequest::Close { cid } => {
                    if let Some(s) = self.links.streams.remove(&cid) {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
                LinkRequest::Open { cid, addr } => {
                    let up = connect(&addr, self.connect_timeout).and_then(|s| {
                        s.set_nodelay(true)?;
                        Ok((s.local_addr()?, s.peer_addr()?, s))
                    });
                    match up {
                        Ok((local, peer, s)) => {
                            self.links.streams.insert(cid, s);
                            self.core.link_connected(cid, Instant::now(), local, peer);
                        }
                        Err(_) => self.core.link_lost(cid, Instant::now()),
                    }
                }
            }
        }
    }

    /// Writes everything the added connections have (blocking writes).
    pub(crate) fn write_links(&mut self) {
        for cid in self.core.link_ids() {
            let Some(s) = self.links.streams.get(&cid) else {
                continue;
            };
            let _ = self
                .core
                .write_on(cid, Instant::now(), |b| (&*s).write_vectored(b));
        }
    }

    /// Reads every added connection that has input now; whether any had.
    pub(crate) fn read_ready_links(&mut self) -> bool {
        let mut any = false;
        for cid in self.core.link_ids() {
            let Some(s) = self.links.streams.get(&cid) else {
                continue;
            };
            if matches!(iscsi_sys::wait_readable(s, Duration::ZERO), Ok(true)) {
                let _ = self.core.read_on(cid, Instant::now(), |b| (&*s).read(b));
                any = true;
            }
        }
        any
    }

    /// The wait for input while added connections are up (see the module
    /// documentation): returns once something was read or a deadline
    /// (the core's, or `until`) passed.
    pub(crate) fn wait_for_input_links(&mut self, until: Option<Instant>) -> Result<(), Error> {
        loop {
            let now = Instant::now();
            if self.core.handle_timeout(now) {
                return Ok(());
            }
            if self.read_ready_links() | self.read_ready_primary() {
                return Ok(());
            }
            let deadline = [self.core.session_timeout(), until]
                .into_iter()
                .flatten()
                .min();
            if deadline.is_some_and(|d| d <= now) {
                return Ok(());
            }
            if self.links.is_empty() && self.conn.is_none() {
                return Ok(());
            }
            // One slice on one socket: the first connection, then each
            // added one.
            let n = self.links.streams.len() + 1;
            self.links.turn = (self.links.turn + 1) % n;
            let slice = deadline.map_or(SLICE, |d| d.saturating_duration_since(now).min(SLICE));
            let ready = match self.links.turn {
                0 => match self.conn.clone() {
                    Some(s) => iscsi_sys::wait_readable(&*s, slice),
                    None => Ok(false),
                },
                k => match self.links.streams.values().nth(k - 1) {
                    Some(s) => iscsi_sys::wait_readable(s, slice),
                    None => Ok(false),
                },
            };
            if ready.is_err() {
                std::thread::sleep(slice);
            }
        }
    }

    /// Reads the first connection if it has input now.
    fn read_ready_primary(&mut self) -> bool {
        let Some(s) = self.conn.clone() else {
            return false;
        };
        if !matches!(iscsi_sys::wait_readable(&*s, Duration::ZERO), Ok(true)) {
            return false;
        }
        self.read_input()
    }

    /// Closes every added connection's socket.
    pub(crate) fn close_links(&mut self) {
        for (_, s) in std::mem::take(&mut self.links.streams) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
