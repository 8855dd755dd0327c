//! The initiator on a `mio` event loop: a [`Client`] wraps one
//! session and its non-blocking socket, registered with the caller's
//! [`Registry`] under the caller's [`Token`]. No protocol logic lives here:
//! sockets, clocks and wakeups only.
//!
//! The caller's loop (many clients may share one [`Poll`], one token each:
//! the wait then ends no later than the *earliest* `poll_timeout()` of all
//! of them, and each gets [`Client::handle_timeout`] after every wait, a
//! no-op before its own deadline; `iscsi-mio/examples/multi.rs` runs
//! three sessions and a listener on one `Poll`):
//!
//! ```no_run
//! use std::time::Instant;
//! use mio::{Events, Poll, Token};
//! use iscsi_proto::initiator::{Event, SessionConfig};
//! use iscsi_mio::client::Client;
//!
//! let mut poll = Poll::new()?;
//! let cfg = SessionConfig::new("iqn.2026-11.example:host").with_target("iqn.2026-11.test:disk1");
//! let mut client = Client::new("127.0.0.1:3260", cfg, poll.registry(), Token(7))?;
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

use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use bytes::Bytes;
use std::collections::BTreeMap;

use iscsi_proto::driver::{
    helpers, reply, ConnRequest, DriverCore, LinkRequest, Queued, Read as Got, Written,
};
pub use iscsi_proto::driver::{Action, Coalesce, Completed, Error, Reply, Tap};
use iscsi_proto::initiator::{
    Event, LogoutMode, LogoutResult, ScsiCommand, SessionConfig, TargetRecord, TaskId, TaskOutcome,
};
pub use iscsi_proto::scsi::{Capacity, Lun};
pub use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

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
    registry: Registry,
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
    /// (non-blocking; the socket is registered under `token`). Login
    /// proceeds as the caller's loop feeds events; [`Event::LoggedIn`]
    /// tells when it is done.
    pub fn new(
        portal: &str,
        config: SessionConfig,
        registry: &Registry,
        token: Token,
    ) -> Result<Client, Error> {
        let mut random = [0u8; 3];
        iscsi_sys::fill_random(&mut random)?;
        let mut core = DriverCore::new(portal, config, Instant::now(), random)?;
        core.set_auto_connections(false);
        let mut c = Client {
            core,
            registry: registry.try_clone()?,
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
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.read_ready()?;
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
            self.read_ready()?;
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
    /// (`reply::logged_out` turns it into a [`LogoutResult`]).
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

    /// Reads until the socket would block, feeding the core after each read.
    fn read_ready(&mut self) -> Result<(), Error> {
        while let Some(conn) = self.conn.as_mut().filter(|_| self.core.is_connected()) {
            match self.core.read_with(Instant::now(), |b| conn.stream.read(b)) {
                // Answers (R2T data, NOP-Outs) go out before more input.
                Got::Bytes(_) => self.drive_io()?,
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
/// Added connections (MC/S): the same byte moving as for the first one,
/// per CID (see `iscsi_proto::driver` links).
impl Client {
    /// A readiness event on added connection `cid`'s socket.
    fn handle_link_event(&mut self, cid: u16, event: &mio::event::Event) -> Result<(), Error> {
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

    fn link_request(&mut self, r: LinkRequest) -> Result<(), Error> {
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

    fn write_links(&mut self) {
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
    fn link_interest(&mut self) -> Result<(), Error> {
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

/// A ready-made loop for one session: its own `Poll`, blocking calls.
#[derive(Debug)]
pub struct Blocking {
    poll: Poll,
    events: Events,
    client: Client,
    waker: Arc<Waker>,
}

const CLIENT: Token = Token(0);
const WAKER: Token = Token(1);
/// Added connection `cid` is registered under `Token(LINKS + cid)`.
const LINKS: usize = 2;

impl Blocking {
    /// Connects to `portal` and logs in with `config`.
    pub fn connect(portal: &str, config: SessionConfig) -> Result<Blocking, Error> {
        let mut b = Blocking::new(portal, config)?;
        b.login()?;
        Ok(b)
    }

    /// A session for `portal` that has not logged in yet: set its client
    /// up ([`Blocking::client`]: a tap, the coalescing), then
    /// [`Blocking::login`].
    pub fn new(portal: &str, config: SessionConfig) -> Result<Blocking, Error> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut client = Client::new(portal, config, poll.registry(), CLIENT)?;
        client.set_link_tokens(LINKS);
        let events = Events::with_capacity(64);
        Ok(Blocking {
            poll,
            events,
            client,
            waker,
        })
    }

    /// Drives the session until it is in the Full Feature Phase.
    pub fn login(&mut self) -> Result<(), Error> {
        self.run_until(|c| c.session().is_logged_in())
    }

    /// Runs a discovery session (SendTargets=All) and logs out. `config`
    /// must have no target name.
    pub fn discover(portal: &str, config: SessionConfig) -> Result<Vec<TargetRecord>, Error> {
        Blocking::connect(portal, config)?.discover_targets()
    }

    /// SendTargets=All on this (discovery) session, then a logout.
    pub fn discover_targets(mut self) -> Result<Vec<TargetRecord>, Error> {
        let targets = reply::targets(self.wait_action(Action::SendTargets))?;
        self.logout()?;
        Ok(targets)
    }

    /// The client (for its getters, or to start work by hand).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// A handle for other threads; their work runs while this thread is
    /// inside a call of this `Blocking` (e.g. [`Blocking::run_until`]).
    pub fn submitter(&self) -> Submitter {
        self.client.submitter(self.waker.clone())
    }

    /// Drives the session until `done(client)` holds; fails if the
    /// session closes first. Events of other tokens than the client's and
    /// the waker's are ignored.
    pub fn run_until(&mut self, mut done: impl FnMut(&mut Client) -> bool) -> Result<(), Error> {
        let c = &mut self.client;
        loop {
            if done(c) {
                return Ok(());
            }
            c.core.check()?;
            // Work queued without a write (a deferred submit) goes out
            // before blocking.
            if c.core.has_output() {
                c.drive()?;
                if done(c) {
                    return Ok(());
                }
            }
            let timeout = c
                .poll_timeout()
                .map(|d| d.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut self.events, timeout) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e.into()),
                _ => {}
            }
            for ev in self.events.iter() {
                c.handle_event(ev)?;
            }
            c.handle_timeout()?;
            c.handle_wakeup()?;
        }
    }

    /// Events that reached the application so far (async messages,
    /// rejects, recovery notices; at most 1024 are kept).
    pub fn take_async_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.client.core.poll_event()).collect()
    }

    /// Submits a SCSI command without waiting; see [`Blocking::wait`].
    ///
    /// The command is written at once, unless completions wait to be
    /// collected: then it is written, with every command submitted
    /// meanwhile, in one vectored write by the next `submit` made with no
    /// completion waiting, or by the next call that waits for input.
    pub fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, Error> {
        let c = &mut self.client;
        let task = c.core.start(Instant::now(), Action::Scsi(cmd), true)?;
        if !c.core.has_completed() {
            c.drive()?;
        }
        Ok(task)
    }

    /// Waits for whichever task started with [`Blocking::submit`] ends
    /// first (in completion order).
    pub fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), Error> {
        let (task, r) = self.take(DriverCore::take_any_completed)?;
        r.map(|(o, d)| (task, o, d))
    }

    /// Waits for a task started with [`Blocking::submit`].
    pub fn wait(&mut self, task: TaskId) -> Reply {
        self.take(|c| c.take_completed(task))?
    }

    /// Drives the session until `take` yields something.
    fn take<T>(&mut self, mut take: impl FnMut(&mut DriverCore) -> Option<T>) -> Result<T, Error> {
        let mut got = None;
        self.run_until(|c| {
            got = take(&mut c.core);
            got.is_some()
        })?;
        got.ok_or(Error::Closed(None))
    }

    fn wait_action(&mut self, action: Action) -> Reply {
        let task = self.client.start_collected(action)?;
        self.wait(task)
    }

    /// Runs one SCSI command to completion.
    pub fn execute(&mut self, cmd: ScsiCommand) -> Result<Completed, Error> {
        reply::scsi(self.wait_action(Action::Scsi(cmd)))
    }

    /// Runs a task management function on `lun`.
    pub fn task_management(
        &mut self,
        lun: Lun,
        function: TmfFunction,
    ) -> Result<TmfResponse, Error> {
        let lun = lun.to_u64();
        reply::task_management(self.wait_action(Action::TaskManagement { lun, function }))
    }

    /// Runs `cmd` and requires GOOD status, sending it again once after a
    /// UNIT ATTENTION (the one a target reports on the first command of
    /// every session: tgtd, LIO; see [`iscsi_proto::scsi::helpers`]).
    pub fn execute_good(&mut self, cmd: ScsiCommand) -> Result<Completed, Error> {
        helpers::execute_good(|c| self.execute(c), cmd)
    }

    /// READ(16) of `blocks` blocks of `block_len` bytes at `lba` of `lun`
    /// ([`Blocking::execute_good`]).
    pub fn read(
        &mut self,
        lun: Lun,
        lba: u64,
        blocks: u32,
        block_len: u32,
    ) -> Result<Bytes, Error> {
        let cmd = helpers::read_command(lun, lba, blocks, block_len);
        self.execute_good(cmd).map(|c| c.data)
    }

    /// WRITE(16) of `data` (whole `block_len` blocks) at `lba` of `lun`
    /// ([`Blocking::execute_good`]).
    pub fn write(&mut self, lun: Lun, lba: u64, data: Bytes, block_len: u32) -> Result<(), Error> {
        let cmd = helpers::write_command(lun, lba, data, block_len)?;
        self.execute_good(cmd).map(drop)
    }

    /// The capacity and block size of `lun`: READ CAPACITY (16), or (10)
    /// where (16) is not supported.
    pub fn read_capacity(&mut self, lun: Lun) -> Result<Capacity, Error> {
        helpers::read_capacity(|c| self.execute(c), lun)
    }

    /// Logs out (after outstanding tasks finish) and closes the connection.
    pub fn logout(mut self) -> Result<LogoutResult, Error> {
        reply::logged_out(self.wait_action(Action::Logout(LogoutMode::WaitForTasks)))
    }
}
