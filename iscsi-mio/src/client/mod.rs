//! The initiator on a `mio` event loop: a [`Client`] wraps one
//! session and its non-blocking socket, registered with the caller's
//! [`Registry`] under the caller's [`Token`]. No protocol logic lives here:
//! sockets, clocks and wakeups only.
//!
//! The caller's loop (many clients may share one [`Poll`](mio::Poll), one token each:
//! the wait then ends no later than the *earliest* `poll_timeout()` of all
//! of them, and each gets [`Client::handle_timeout`] after every wait, a
//! no-op before its own deadline; `iscsi-mio/examples/multi.rs` runs
//! three sessions and a listener on one `Poll`):
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Instant;
//! use mio::{Events, Poll, Token};
//! use iscsi_proto::initiator::{Event, SessionConfig};
//! use iscsi_mio::client::Client;
//!
//! let mut poll = Poll::new()?;
//! // One clone of the registry, shared by every client of this `Poll`.
//! let registry = Arc::new(poll.registry().try_clone()?);
//! let cfg = SessionConfig::new("iqn.2026-11.example:host").with_target("iqn.2026-11.test:disk1");
//! let mut client = Client::new("127.0.0.1:3260", cfg, &registry, Token(7))?;
//! let mut events = Events::with_capacity(64);
//! while !client.is_closed() {
//!     let timeout = client.poll_timeout().map(|d| d.saturating_duration_since(Instant::now()));
//!     poll.poll(&mut events, timeout)?;
//!     for ev in events.iter() {
//!         if ev.token() == client.token() {
//!             client.handle_event(ev)?;
//!         }
//!     }
//!     client.handle_timeout()?; // a no-op before the deadline
//!     while let Some(ev) = client.poll_event() {
//!         if let Event::LoggedIn { .. } = ev { /* submit work */ }
//!     }
//! }
//! # Ok::<(), iscsi_mio::client::Error>(())
//! ```
//!
//! The session and everything but the socket live in a
//! [`DriverCore`] (shared with the other
//! drivers). After every input or action the client runs the core's drain
//! order: write until nothing is left or the socket would block (then it
//! adds write interest and resumes the partial write on the next writable
//! event), carry out the core's connection requests (a new non-blocking
//! connection under the same token), and leave the next deadline in
//! `Client::poll_timeout` ([`DriverCore::poll_timeout`]).
//!
//! What a client costs: one file descriptor (its socket; the registry is
//! the caller's, shared by every client on the `Poll`) and receive memory
//! that follows what is in flight (a few KiB while idle, up to
//! [`Client::set_max_read`] while busy; see `iscsi_proto::driver`'s
//! receive sizing).
//!
//! Errors: [`Error`] is the drivers' shared
//! [`iscsi_proto::driver::Error`]; its module documents how a refused
//! connection or login ([`Error::Connect`], [`Error::Login`]) differs from
//! the end of an established session ([`Error::Closed`], also the
//! reply of every task in flight at that moment and of every later
//! `start`), with and without session recovery. [`Event::Closed`] still
//! comes from [`Client::poll_event`]; `Client::close_error` ([`DriverCore::close_error`]) gives the
//! same error. A byte tap ([`Client::set_tap`]) sees every byte.
//!
//! Other threads submit through a [`Submitter`] (a channel plus the
//! [`Waker`] of the loop's `Poll`); on the waker's token the loop calls
//! [`Client::handle_wakeup`]. [`Blocking`] is a ready-made loop for one
//! session.

mod blocking;
mod links;

use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use std::collections::BTreeMap;

use iscsi_proto::driver::{reply, ConnRequest, DriverCore, Queued, Read as Got, Written};
pub use iscsi_proto::driver::{Action, Coalesce, Completed, Error, Reply, Tap};
use iscsi_proto::initiator::{Event, LogoutMode, ScsiCommand, SessionConfig, TaskId};
pub use iscsi_proto::scsi::{Capacity, Lun};
pub use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token, Waker};

pub use self::blocking::Blocking;

/// The driver is gone: its channel closed.
fn gone<T>(_: T) -> Error {
    Error::Closed(None)
}

/// Starts work on a [`Client`] from any thread: a channel plus the waker
/// of the `Poll` the client is registered with.
#[derive(Debug, Clone)]
pub struct Submitter {
    inbox: mpsc::Sender<Queued>,
    waker: Arc<Waker>,
}

impl Submitter {
    /// Queues `action` and wakes the loop; the receiver yields the reply
    /// once the task ends.
    pub fn start(&self, action: Action) -> Result<mpsc::Receiver<Reply>, Error> {
        let (reply, rx) = mpsc::channel();
        let notify = Box::new(move |r| drop(reply.send(r)));
        self.inbox.send((action, notify)).map_err(gone)?;
        self.waker.wake()?;
        Ok(rx)
    }

    /// Runs a SCSI command and blocks this thread until it completes.
    pub fn execute(&self, cmd: ScsiCommand) -> Result<Completed, Error> {
        let rx = self.start(Action::Scsi(cmd))?;
        reply::scsi(rx.recv().map_err(gone)?)
    }
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    interest: Interest,
}

/// One initiator session on a caller's `mio` registry. Its getters are
/// the [`DriverCore`]'s (through `Deref`): [`DriverCore::session`],
/// [`DriverCore::is_closed`], [`DriverCore::close_error`] (why the session
/// ended, as an error), [`DriverCore::poll_timeout`] (the deadline for the
/// caller's poll: call [`Client::handle_timeout`] once it passes).
#[derive(Debug)]
pub struct Client {
    core: DriverCore,
    /// The caller's registry (a clone shared by every client of a `Poll`).
    registry: Arc<Registry>,
    token: Token,
    conn: Option<Conn>,
    /// The sockets of added connections (MC/S), by CID.
    links: BTreeMap<u16, Conn>,
    /// Added connection `cid` is registered under `Token(base + cid)`;
    /// `None`: no added connections.
    link_base: Option<usize>,
}

impl std::ops::Deref for Client {
    type Target = DriverCore;

    fn deref(&self) -> &DriverCore {
        &self.core
    }
}

impl Client {
    /// Creates a session for `portal` (`host:port`) and starts connecting
    /// (non-blocking; the socket is registered with `registry` under
    /// `token`). Login proceeds as the caller's loop feeds events;
    /// [`Event::LoggedIn`] tells when it is done.
    ///
    /// `registry` is a clone of the `Poll`'s registry
    /// (`Arc::new(poll.registry().try_clone()?)`), made once and shared by
    /// every client of that `Poll`: a client then costs one file
    /// descriptor, its socket.
    pub fn new(
        portal: &str,
        config: SessionConfig,
        registry: &Arc<Registry>,
        token: Token,
    ) -> Result<Client, Error> {
        let mut random = [0u8; 3];
        iscsi_sys::fill_random(&mut random)?;
        let mut core = DriverCore::new(portal, config, Instant::now(), random)?;
        core.set_auto_connections(false);
        let mut c = Client {
            core,
            registry: Arc::clone(registry),
            token,
            conn: None,
            links: BTreeMap::new(),
            link_base: None,
        };
        c.drive()?;
        Ok(c)
    }

    /// Sets receive coalescing (`SO_RCVLOWAT`, see
    /// `iscsi_proto::initiator::coalesce`): on by default with
    /// [`Coalesce::default`]; [`Coalesce::OFF`] turns it off. Applies from
    /// the next wait.
    pub fn set_coalesce(&mut self, coalesce: Coalesce) {
        self.core.set_coalesce(coalesce);
        self.apply_low_water();
    }

    /// Sets the largest socket read (default
    /// [`iscsi_proto::driver::MAX_READ`]): reads are sized by what is in
    /// flight, up to this, so this bounds the receive memory of a busy
    /// session.
    pub fn set_max_read(&mut self, bytes: usize) {
        self.core.set_max_read(bytes);
    }

    /// Installs a byte tap: it sees every byte written to and read from
    /// the connection (e.g. `iscsi --pcap`).
    pub fn set_tap(&mut self, tap: Tap) {
        self.core.set_tap(Some(tap));
    }

    /// The token the socket is registered under.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Lets the session have several connections (MC/S, RFC 7143 section
    /// 13.2): the socket of added connection `cid` is registered under
    /// `Token(base + cid)` (the caller keeps `base..base + 65536` free, or
    /// as many as MaxConnections needs), and connections are opened up to
    /// the negotiated MaxConnections. Call before login.
    pub fn set_link_tokens(&mut self, base: usize) {
        self.link_base = Some(base);
        self.core.set_auto_connections(true);
    }

    /// The CID an event's token names, if it is an added connection's.
    fn link_cid(&self, token: Token) -> Option<u16> {
        let base = self.link_base?;
        let cid = u16::try_from(token.0.checked_sub(base)?).ok()?;
        self.links.contains_key(&cid).then_some(cid)
    }

    /// The next event for the application: everything the core emits
    /// except `Connect` (handled here) and the data and completions of
    /// collected tasks.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    /// A handle for other threads; `waker` must belong to the `Poll` this
    /// client is registered with, and its token must lead the loop to
    /// [`Client::handle_wakeup`].
    pub fn submitter(&self, waker: Arc<Waker>) -> Submitter {
        Submitter {
            inbox: self.core.inbox(),
            waker,
        }
    }

    /// Handles a readiness event for [`Client::token`] (others are ignored).
    ///
    /// `Err` is the driver's own failure (the socket could not be
    /// registered with the `Registry`): this client cannot go on and
    /// should be dropped; other clients on the same `Poll` are unaffected.
    /// The end of the session (a refused login, a connection lost and not
    /// recovered, a logout) is not an `Err`: it comes as [`Event::Closed`]
    /// from [`Client::poll_event`], and `is_closed()` turns true.
    pub fn handle_event(&mut self, event: &mio::event::Event) -> Result<(), Error> {
        if let Some(cid) = self.link_cid(event.token()) {
            return self.handle_link_event(cid, event);
        }
        if event.token() != self.token {
            return Ok(());
        }
        if !self.core.is_connected() {
            self.check_connected();
        }
        if self.core.is_connected() {
            if event.is_writable() {
                self.core.writable();
            }
            // After a short read the socket is empty (epoll(7), edge
            // triggered: new bytes bring a new event), unless the event
            // also reports the end of the stream, which must be read.
            let closing = event.is_read_closed() || event.is_error();
            if event.is_readable() || closing {
                self.read_ready(!closing)?;
            }
        }
        self.drive()
    }

    /// Fires the core's timer if its deadline has passed, and ends a wait
    /// for a receive low-water mark that has lasted its longest (harmless
    /// before).
    pub fn handle_timeout(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        if self.core.low_water_deadline().is_some_and(|d| d <= now) {
            // Whatever is there, below the mark: take it.
            self.read_ready(false)?;
            let _ = self.core.low_water_timeout(now);
            self.drive()?;
        }
        if self.core.handle_timeout(now) {
            self.drive()?;
        }
        Ok(())
    }

    /// Sets the socket's new receive low-water mark, if any.
    fn apply_low_water(&mut self) {
        if let Some(conn) = self.conn.as_ref().filter(|_| self.core.is_connected()) {
            let stream = &conn.stream;
            self.core
                .apply_low_water(|m| iscsi_sys::set_recv_low_water(stream, m).is_ok());
        }
    }

    /// Starts the work queued by [`Submitter`]s (call on the waker's token;
    /// harmless otherwise).
    pub fn handle_wakeup(&mut self) -> Result<(), Error> {
        if self.core.start_queued(Instant::now()) {
            self.drive()?;
        }
        Ok(())
    }

    /// Submits a SCSI command; its data and completion come as
    /// [`Event::DataIn`] and [`Event::Complete`] from [`Client::poll_event`].
    pub fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, Error> {
        self.start(Action::Scsi(cmd))
    }

    /// Starts `action`; its events come from [`Client::poll_event`].
    pub fn start(&mut self, action: Action) -> Result<TaskId, Error> {
        let task = self.core.start(Instant::now(), action, false)?;
        self.drive()?;
        Ok(task)
    }

    /// Starts `action` and gathers its read data and outcome in the client
    /// (no events): take them with [`Client::take_completed`].
    pub fn start_collected(&mut self, action: Action) -> Result<TaskId, Error> {
        let task = self.core.start(Instant::now(), action, true)?;
        self.drive()?;
        Ok(task)
    }

    /// Starts one SCSI command whose data and outcome the client gathers
    /// (no events): [`Client::take_completed`] gives them once it ended
    /// (`reply::scsi` turns that into a [`Completed`]).
    pub fn execute(&mut self, cmd: ScsiCommand) -> Result<TaskId, Error> {
        self.start_collected(Action::Scsi(cmd))
    }

    /// Starts the logout (after outstanding tasks finish): the session
    /// then ends, `is_closed()` turns true and
    /// [`Client::take_completed`] gives the task's reply
    /// (`reply::logged_out` turns it into a [`LogoutResult`](iscsi_proto::initiator::LogoutResult)).
    pub fn logout(&mut self) -> Result<TaskId, Error> {
        self.start_collected(Action::Logout(LogoutMode::WaitForTasks))
    }

    /// The reply of a collected task, once it ended.
    pub fn take_completed(&mut self, task: TaskId) -> Option<Reply> {
        self.core.take_completed(task)
    }

    /// [`Client::drive_io`], then the plan for the next wait for input.
    fn drive(&mut self) -> Result<(), Error> {
        self.drive_io()?;
        self.core.plan_low_water(Instant::now());
        self.apply_low_water();
        Ok(())
    }

    /// The drain order: connection requests and writes until neither
    /// makes progress; then the write interest.
    fn drive_io(&mut self) -> Result<(), Error> {
        loop {
            while let Some(r) = self.core.poll_conn() {
                self.close_conn();
                if let ConnRequest::Open(addr) = r {
                    self.open(addr)?;
                }
            }
            self.write_out();
            while let Some(r) = self.core.poll_link() {
                self.link_request(r)?;
            }
            self.write_links();
            if !self.core.has_conn_request() && !self.core.has_link_request() {
                break;
            }
        }
        self.link_interest()?;
        // Write interest only while a connect or a blocked write is pending.
        if let Some(conn) = self.conn.as_mut() {
            let want = if self.core.wants_writable() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if want != conn.interest {
                self.registry
                    .reregister(&mut conn.stream, self.token, want)?;
                conn.interest = want;
            }
        }
        Ok(())
    }

    /// Writes until nothing is left or the socket would block.
    fn write_out(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let w = self
            .core
            .write_with(Instant::now(), |s| conn.stream.write_vectored(s));
        if let Written::Lost(_) = w {
            self.close_conn();
        }
    }

    /// Reads until the socket would block (or, with `stop_short`, until a
    /// read returns less than it asked for: the socket is then empty),
    /// feeding the core after each read.
    fn read_ready(&mut self, stop_short: bool) -> Result<(), Error> {
        while let Some(conn) = self.conn.as_mut().filter(|_| self.core.is_connected()) {
            let mut short = false;
            let got = self.core.read_with(Instant::now(), |b| {
                let asked = b.len();
                let r = conn.stream.read(b);
                short = matches!(r, Ok(n) if n < asked);
                r
            });
            match got {
                // Answers (R2T data, NOP-Outs) go out before more input.
                Got::Bytes(_) => {
                    self.drive_io()?;
                    if short && stop_short {
                        return Ok(());
                    }
                }
                Got::Nothing => return Ok(()),
                Got::Lost => self.close_conn(),
            }
        }
        Ok(())
    }

    /// A writable (or error) event on a connecting socket: did it connect?
    fn check_connected(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let s = &conn.stream;
        let up = s.take_error().and_then(|e| e.map_or(Ok(()), Err));
        match up.and_then(|()| Ok((s.local_addr()?, s.peer_addr()?))) {
            Ok((local, peer)) => self.core.connected(Instant::now(), local, peer),
            // Spurious wakeup: still connecting.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => {
                self.close_conn();
                self.core.connect_failed(Instant::now(), e);
            }
        }
    }

    fn close_conn(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = self.registry.deregister(&mut c.stream);
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Opens a non-blocking connection where the core asked, under the
    /// same token.
    fn open(&mut self, addr: String) -> Result<(), Error> {
        // Name resolution blocks (std has no other); IP literals do not.
        let resolved = addr
            .to_socket_addrs()
            .and_then(|mut a| a.next().ok_or_else(|| io::ErrorKind::NotFound.into()));
        match resolved.and_then(TcpStream::connect) {
            Ok(mut stream) => {
                let _ = stream.set_nodelay(true);
                let interest = Interest::READABLE | Interest::WRITABLE;
                self.registry.register(&mut stream, self.token, interest)?;
                self.conn = Some(Conn { stream, interest });
            }
            // The core decides: retry later (recovery) or close.
            Err(e) => self.core.connect_failed(Instant::now(), e),
        }
        Ok(())
    }
}
