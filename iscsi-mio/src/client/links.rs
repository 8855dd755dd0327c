//! Added connections (MC/S): the same byte moving as for the first one,
//! per CID (see `iscsi_proto::driver` links).

use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::time::Instant;

use iscsi_proto::driver::{LinkRequest, Read as Got};
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{Client, Conn, Error};

impl Client {
    /// A readiness event on added connection `cid`'s socket.
    pub(super) fn handle_link_event(
        &mut self,
        cid: u16,
        event: &mio::event::Event,
    ) -> Result<(), Error> {
        if !self.core.link_is_connected(cid) {
            self.check_link_connected(cid);
        }
        if self.core.link_is_connected(cid) {
            if event.is_writable() {
                self.core.link_writable(cid);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.read_link(cid)?;
            }
        }
        self.drive()
    }

    fn check_link_connected(&mut self, cid: u16) {
        let Some(conn) = self.links.get(&cid) else {
            return;
        };
        let s = &conn.stream;
        let up = s.take_error().and_then(|e| e.map_or(Ok(()), Err));
        match up.and_then(|()| Ok((s.local_addr()?, s.peer_addr()?))) {
            Ok((local, peer)) => self.core.link_connected(cid, Instant::now(), local, peer),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(_) => self.core.link_lost(cid, Instant::now()),
        }
    }

    fn read_link(&mut self, cid: u16) -> Result<(), Error> {
        loop {
            let Some(conn) = self.links.get_mut(&cid) else {
                return Ok(());
            };
            match self
                .core
                .read_on(cid, Instant::now(), |b| conn.stream.read(b))
            {
                Got::Bytes(_) => self.drive_io()?,
                Got::Nothing | Got::Lost => return Ok(()),
            }
        }
    }

    pub(super) fn link_request(&mut self, r: LinkRequest) -> Result<(), Error> {
        match r {
            LinkRequest::Close { cid } => {
                if let Some(mut c) = self.links.remove(&cid) {
                    let _ = self.registry.deregister(&mut c.stream);
                    let _ = c.stream.shutdown(std::net::Shutdown::Both);
                }
            }
            LinkRequest::Open { cid, addr } => {
                let Some(base) = self.link_base else {
                    self.core.link_lost(cid, Instant::now());
                    return Ok(());
                };
                let token = Token(base.saturating_add(usize::from(cid)));
                let resolved = addr
                    .to_socket_addrs()
                    .and_then(|mut a| a.next().ok_or_else(|| io::ErrorKind::NotFound.into()));
                match resolved.and_then(TcpStream::connect) {
                    Ok(mut stream) => {
                        let _ = stream.set_nodelay(true);
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        self.registry.register(&mut stream, token, interest)?;
                        self.links.insert(cid, Conn { stream, interest });
                    }
                    Err(_) => self.core.link_lost(cid, Instant::now()),
                }
            }
        }
        Ok(())
    }

    pub(super) fn write_links(&mut self) {
        for cid in self.core.link_ids() {
            let Some(conn) = self.links.get_mut(&cid) else {
                continue;
            };
            let _ = self
                .core
                .write_on(cid, Instant::now(), |s| conn.stream.write_vectored(s));
        }
    }

    /// Write interest on an added connection only while it connects or a
    /// write is blocked.
    pub(super) fn link_interest(&mut self) -> Result<(), Error> {
        let Some(base) = self.link_base else {
            return Ok(());
        };
        for (cid, conn) in self.links.iter_mut() {
            let want = if self.core.link_wants_writable(*cid) {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if want != conn.interest {
                let token = Token(base.saturating_add(usize::from(*cid)));
                self.registry.reregister(&mut conn.stream, token, want)?;
                conn.interest = want;
            }
        }
        Ok(())
    }
}
