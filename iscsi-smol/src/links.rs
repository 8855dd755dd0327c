//! The added connections of a session (MC/S, RFC 7143 section 13.2): one
//! `Async<TcpStream>` per CID, opened and closed as the driver core asks
//! (`DriverCore::poll_link`); the driver's wait races their readability
//! (and writability while a write is blocked) with everything else.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Async;
use iscsi_proto::driver::{DriverCore, LinkRequest, Read as Got};

use crate::Driver;

/// The sockets of the added connections, by CID.
pub(crate) type Links = BTreeMap<u16, Async<TcpStream>>;

/// What woke the driver on an added connection.
pub(crate) enum LinkWake {
    Readable(u16),
    Writable(u16),
}

/// Polls every added connection: readable, or writable where `core`
/// has a blocked write.
pub(crate) fn poll_links(links: &Links, blocked: &[u16], cx: &mut Context<'_>) -> Poll<LinkWake> {
    for (cid, s) in links {
        if s.poll_readable(cx).is_ready() {
            return Poll::Ready(LinkWake::Readable(*cid));
        }
        if blocked.contains(cid) && s.poll_writable(cx).is_ready() {
            return Poll::Ready(LinkWake::Writable(*cid));
        }
    }
    Poll::Pending
}

/// The CIDs whose writes wait for writability.
pub(crate) fn blocked(core: &DriverCore, links: &Links) -> Vec<u16> {
    links
        .keys()
        .copied()
        .filter(|c| core.link_wants_writable(*c))
        .collect()
}

impl Driver {
    /// Opens and closes the sockets the core asks for.
    pub(crate) async fn link_requests(&mut self) {
        while let Some(r) = self.core.poll_link() {
            match r {
                LinkRequest::Close { cid } => {
                    if let Some(s) = self.links.remove(&cid) {
                        let _ = s.get_ref().shutdown(std::net::Shutdown::Both);
                    }
                }
                LinkRequest::Open { cid, addr } => {
                    let resolved = addr.to_socket_addrs().and_then(|mut a| {
                        a.next()
                            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
                    });
                    let up = match resolved {
                        Ok(sa) => Async::<TcpStream>::connect(sa).await.and_then(|s| {
                            let _ = s.get_ref().set_nodelay(true);
                            Ok((s.get_ref().local_addr()?, s.get_ref().peer_addr()?, s))
                        }),
                        Err(e) => Err(e),
                    };
                    match up {
                        Ok((local, peer, s)) => {
                            self.links.insert(cid, s);
                            self.core.link_connected(cid, Instant::now(), local, peer);
                        }
                        Err(_) => self.core.link_lost(cid, Instant::now()),
                    }
                }
            }
        }
    }

    /// Writes what every added connection has, until it would block.
    pub(crate) fn write_links(&mut self) {
        for cid in self.core.link_ids() {
            let Some(s) = self.links.get(&cid) else {
                continue;
            };
            let mut stream: &TcpStream = s.get_ref();
            let _ = self
                .core
                .write_on(cid, Instant::now(), |b| stream.write_vectored(b));
        }
    }

    /// Reads added connection `cid` (a bounded number of times) until it
    /// would block.
    pub(crate) fn read_link(&mut self, cid: u16) {
        for _ in 0..crate::READS_PER_WAKE {
            let Some(s) = self.links.get(&cid) else {
                return;
            };
            let mut stream: &TcpStream = s.get_ref();
            match self.core.read_on(cid, Instant::now(), |b| stream.read(b)) {
                Got::Bytes(_) => self.step(),
                Got::Nothing | Got::Lost => return,
            }
        }
    }

    /// Closes every added connection's socket.
    pub(crate) fn close_links(&mut self) {
        for (_, s) in std::mem::take(&mut self.links) {
            let _ = s.get_ref().shutdown(std::net::Shutdown::Both);
        }
    }
}
