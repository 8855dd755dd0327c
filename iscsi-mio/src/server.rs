//! An embedded iSCSI target on one `mio` event loop.
//!
//! [`Server`] listens on one portal and accepts any number of
//! connections. Everything iSCSI and SCSI happens in
//! [`iscsi_lun::Target`] (an [`iscsi_proto::target::Portal`] and the
//! logical units); this module only moves bytes between sockets and the
//! target, and runs its timer. The one value the core wants unpredictable
//! comes from here: the portal's seed, read from `/dev/urandom` at bind.
//!
//! ```no_run
//! use iscsi_mio::server::{LunSpec, Server, TargetConfig};
//!
//! let mut cfg = TargetConfig::new(
//!     "127.0.0.1:3260".parse().unwrap(),
//!     "iqn.2026-01.example:disk",
//! );
//! cfg.luns.push(LunSpec::Ram(64 << 20));
//! let mut server = Server::bind(cfg).unwrap();
//! let stop = server.shutdown_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(60));
//!     stop.shutdown();
//! });
//! server.run().unwrap();
//! ```
//!
//! Per connection, after every readiness event or timer, the loop runs
//! the portal's documented drain order until nothing moves: read what the
//! socket has (bounded by one PDU beyond the receive limit), feed it to
//! the target, then write every transmit with vectored writes, keeping
//! the unsent remainder when the socket would block (until the next
//! WRITABLE edge); connections the portal touched meanwhile are driven
//! next.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

use bytes::BytesMut;
use iscsi_lun::{LogicalUnit, Target};
use iscsi_proto::driver::Clock;
use iscsi_proto::target::ConnectionHandle;
use iscsi_proto::time::Instant;
use iscsi_proto::transmit::TxQueue;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

pub use iscsi_lun::{LunSpec, TargetConfig, TargetError};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection slot `i` uses `Token(FIRST_CONN + i)`.
const FIRST_CONN: usize = 2;

/// Bytes asked of the socket per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// A connection whose receive buffer is empty at the end of a drive
/// keeps it only up to this capacity: an idle connection holds little.
const RX_KEEP: usize = 4 * 1024;
/// Transmits taken from a session ahead of the socket; the rest stay in
/// the session's queue, whose high-water mark throttles decoding.
const MAX_PENDING_TRANSMITS: usize = 64;
/// Most iovecs handed to one `write_vectored` call.
const MAX_IOVECS: usize = 64;

/// Stops a running [`Server`] from any thread: [`Server::run`] closes
/// every connection and returns.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<AtomicBool>, Arc<Waker>);

impl ShutdownHandle {
    /// Asks the server to stop; returns at once. Idempotent.
    pub fn shutdown(&self) {
        self.0.store(true, Ordering::Release);
        // A failed wake leaves nothing to do: the flag is also checked
        // after every poll wake-up.
        let _ = self.1.wake();
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One accepted connection's socket state.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    handle: ConnectionHandle,
    rx: BytesMut,
    /// Transmits not yet fully written (resumes partial writes).
    tx: TxQueue,
    /// Edge-triggered readiness as last seen (cleared on `WouldBlock`).
    readable: bool,
    writable: bool,
    /// The peer closed its side (or the socket failed).
    eof: bool,
    /// The socket failed: drop the connection without flushing.
    broken: bool,
}

/// The embedded iSCSI target: one listener, many sessions, shared LUNs.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    shutdown: ShutdownHandle,
    /// Indexed by [`ConnectionHandle::index`].
    conns: Vec<Option<Conn>>,
    target: Target,
    rx_cap: usize,
    /// Every socket read lands here first (zero-filled once, at bind),
    /// then only the bytes read are appended to the connection's `rx`.
    scratch: Vec<u8>,
    log: bool,
}

impl Server {
    /// Opens the LUNs' storage, binds the listener and prepares the loop.
    /// Nothing is served until [`run`](Self::run).
    pub fn bind(config: TargetConfig) -> Result<Server, TargetError> {
        // The one draw of OS randomness: the portal derives every
        // session's seed from it (all zeros if the OS has none).
        let mut seed = [0u8; 8];
        let _ = iscsi_sys::fill_random(&mut seed);
        let target = Target::new(&config, u64::from_le_bytes(seed))?;
        let poll = Poll::new()?;
        let mut listener = listen(config.listen, config.max_connections)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Server {
            local_addr: listener.local_addr()?,
            shutdown: ShutdownHandle(Arc::default(), waker),
            poll,
            listener,
            conns: Vec::new(),
            rx_cap: target.portal().max_pdu_len().saturating_add(READ_CHUNK),
            scratch: vec![0; READ_CHUNK],
            target,
            log: config.log,
        })
    }

    /// The address the listener is bound to (the real port when the
    /// configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.target.portal().connections()
    }

    /// The logical units, LUN 0 first (e.g. to inspect or preload them
    /// before [`run`](Self::run)).
    pub fn logical_units(&mut self) -> &mut [LogicalUnit] {
        self.target.logical_units()
    }

    /// Serves until [`ShutdownHandle::shutdown`] is called, then closes
    /// every connection and returns. Errors only when polling itself fails.
    pub fn run(&mut self) -> Result<(), TargetError> {
        let mut events = Events::with_capacity(256);
        while !self.shutdown.is_shutdown() {
            // The portal keeps its sessions' deadlines ordered: asking
            // it on every wake-up costs O(log sessions).
            let now = clock_now();
            let wake = self.target.portal().poll_timeout();
            let timeout = wake.map(|d| d.saturating_duration_since(now));
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close_all();
                    return Err(e.into());
                }
                Ok(()) => {}
            }
            for ev in events.iter() {
                let idx = ev.token().0.wrapping_sub(FIRST_CONN);
                if ev.token() == LISTENER {
                    self.accept_all();
                } else if let Some(Some(c)) = self.conns.get_mut(idx) {
                    c.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                    self.drive(idx);
                }
            }
            // Only the due sessions are visited (the portal's index).
            let now = clock_now();
            if self
                .target
                .portal()
                .poll_timeout()
                .is_some_and(|d| d <= now)
            {
                self.target.handle_timeout(now);
            }
            while let Some(h) = self.target.portal_mut().poll_touched() {
                self.drive(h.index());
            }
        }
        self.close_all();
        Ok(())
    }

    /// Accepts every waiting connection and hands it to the target.
    fn accept_all(&mut self) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Per-connection failures (ECONNABORTED, EMFILE) must
                    // not stop the server; the listener stays registered.
                    if self.log && e.kind() != io::ErrorKind::WouldBlock {
                        eprintln!("iscsi-mio: accept failed: {e}");
                    }
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().ok();
            // Over `max_connections` the target refuses (and logs) it:
            // dropping the stream closes it at once.
            let Some(handle) = self.target.accept(clock_now(), local, Some(peer)) else {
                continue;
            };
            let (idx, registry) = (handle.index(), self.poll.registry());
            // Both interests for good: with edge triggering, WRITABLE only
            // fires again after a write met a full socket buffer.
            let interest = Interest::READABLE | Interest::WRITABLE;
            if registry
                .register(&mut stream, Token(FIRST_CONN + idx), interest)
                .is_err()
            {
                self.target.remove(handle);
                continue;
            }
            self.conns
                .resize_with(self.conns.len().max(idx + 1), || None);
            if let Some(slot) = self.conns.get_mut(idx) {
                *slot = Some(Conn {
                    stream,
                    handle,
                    rx: BytesMut::new(),
                    tx: TxQueue::default(),
                    readable: true,
                    writable: true,
                    eof: false,
                    broken: false,
                });
            }
            self.drive(idx);
        }
    }

    /// Runs the drain loop of one connection until nothing moves, then
    /// closes it if its session is over and its output flushed.
    fn drive(&mut self, idx: usize) {
        let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let (now, h) = (clock_now(), c.handle);
        loop {
            let open = !self.target.portal().is_closed(h);
            let mut progress = c.readable && !c.eof && open && c.rx.len() < self.rx_cap && {
                // No zero-fill per read: the scratch area was zeroed once;
                // only the bytes read are copied into `rx`, which grows
                // with what is in flight.
                let r = c.stream.read(&mut self.scratch);
                if let Ok(n) = r {
                    c.rx.extend_from_slice(self.scratch.get(..n).unwrap_or(&[]));
                }
                match &r {
                    Ok(n) => c.eof = *n == 0,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => (c.eof, c.broken) = (true, true),
                }
                if c.eof {
                    self.target.handle_closed(h, now);
                }
                // Bytes, or the end of the stream, came.
                r.is_ok()
            };
            // A closed session drops what is left (the portal clears it).
            if !c.rx.is_empty() {
                let before = c.rx.len();
                self.target.handle_input(h, now, &mut c.rx);
                progress |= c.rx.len() != before;
            }
            progress |= flush(&mut c, &mut self.target, now);
            if !progress || c.broken {
                break;
            }
        }
        if c.broken || (self.target.portal().is_closed(h) && c.tx.is_empty()) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            let _ = c.stream.shutdown(Shutdown::Both);
            self.target.remove(h);
        } else if let Some(slot) = self.conns.get_mut(idx) {
            if c.rx.is_empty() && c.rx.capacity() > RX_KEEP {
                c.rx = BytesMut::new();
            }
            *slot = Some(c);
        }
    }

    /// Closes every connection, flushing what the sockets take right now.
    fn close_all(&mut self) {
        let open: Vec<ConnectionHandle> = self.conns.iter().flatten().map(|c| c.handle).collect();
        for h in open {
            self.target.close_now(h);
            self.drive(h.index());
        }
    }
}

/// A non-blocking listener on `addr` whose accept queue holds
/// `max_connections` (the kernel caps it at `net.core.somaxconn`): std's
/// and mio's `bind` listen with 128, so a burst of more connects than
/// that waited for SYN retransmits. `socket2` sets the backlog without
/// unsafe code here.
fn listen(addr: SocketAddr, max_connections: usize) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(max_connections.max(128)).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The current time as the core's instant, against one epoch for the
/// process (see `iscsi_proto::time`).
fn clock_now() -> Instant {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    CLOCK.get_or_init(Clock::start).now()
}

/// Writes as much pending output as the socket takes, keeping the unsent
/// remainder. Returns whether anything was written or taken from the
/// portal.
fn flush(c: &mut Conn, target: &mut Target, now: Instant) -> bool {
    let (mut progress, h) = (false, c.handle);
    while !c.broken {
        let before = c.tx.len();
        c.tx.fill_with(MAX_PENDING_TRANSMITS, || {
            target.portal_mut().poll_transmit(h, now)
        });
        progress |= c.tx.len() != before;
        if c.tx.is_empty() || !c.writable {
            break;
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let n = c.tx.io_slices(&mut iov);
        match c.stream.write_vectored(iov.get(..n).unwrap_or(&[])) {
            Ok(0) => c.broken = true,
            Ok(written) => {
                progress = true;
                c.tx.advance(written);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                c.broken = true;
                target.handle_closed(h, now);
            }
        }
    }
    progress
}
