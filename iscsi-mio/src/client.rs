//! The initiator on a `mio` event loop: a [`Client`] wraps one
//! [`Session`] and its non-blocking socket, registered with the caller's
//! [`Registry`] under the caller's [`Token`]. No protocol logic lives here:
//! sockets, clocks and wakeups only.
//!
//! The caller's loop (many clients may share one [`Poll`], one token each):
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
//! After every input or action the client runs the core's drain order
//! itself: write transmits until none is left or the socket would block
//! (then it adds write interest and resumes the partial write with
//! a [`TxQueue`] on the next writable event), handle the core's
//! events (a [`Event::Connect`] opens a non-blocking connection under the
//! same token), and leave the next deadline in [`Client::poll_timeout`].
//!
//! Other threads submit through a [`Submitter`] (a channel plus the
//! [`Waker`] of the loop's `Poll`); on the waker's token the loop calls
//! [`Client::handle_wakeup`]. [`Blocking`] is a ready-made loop for one
//! session.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use bytes::Bytes;
use iscsi_proto::error::{ConfigError, ConnectionError, TaskError, UsageError};
use iscsi_proto::initiator::open_session;
pub use iscsi_proto::initiator::{Action, Coalesce, Completed};
use iscsi_proto::initiator::{
    Event, LogoutMode, LogoutResult, NetworkPortal, ReadData, RecvBuffer, ScsiCommand, Session,
    SessionConfig, TargetRecord, TaskId, TaskOutcome,
};
use iscsi_proto::initiator::{LowWater, TxQueue};
use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};
use iscsi_proto::TaskMap;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

/// Size of each socket read.
const READ_CHUNK: usize = 256 * 1024;
/// PDUs taken from the core per vectored write (3 slices each at most).
const BATCH: usize = 64;

/// Errors of the mio driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection could not be made (and the session never logged in).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where we tried to connect.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
    /// A poll or registry error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The session failed (login failure, timeout, protocol violation...).
    #[error("{0}")]
    Connection(ConnectionError),
    /// The session ended (logged out or closed) before the operation finished.
    #[error("session closed")]
    Closed,
    /// The core refused a call.
    #[error("{0}")]
    Usage(#[from] UsageError),
    /// The configuration is unusable (nothing was sent).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A task failed.
    #[error("{0}")]
    Task(TaskError),
    /// A task ended with an outcome the operation did not expect.
    #[error("unexpected outcome: {0}")]
    Unexpected(String),
}

/// How a task started by a [`Submitter`] or collected by the client ended:
/// its outcome and its read data.
pub type Reply = Result<(TaskOutcome, Bytes), Error>;

type Request = (Action, mpsc::Sender<Reply>);

/// Starts work on a [`Client`] from any thread: a channel plus the waker
/// of the `Poll` the client is registered with.
#[derive(Debug, Clone)]
pub struct Submitter {
    tx: mpsc::Sender<Request>,
    waker: Arc<Waker>,
}

impl Submitter {
    /// Queues `action` and wakes the loop; the receiver yields the reply
    /// once the task ends.
    pub fn start(&self, action: Action) -> Result<mpsc::Receiver<Reply>, Error> {
        let (reply, rx) = mpsc::channel();
        self.tx.send((action, reply)).map_err(|_| Error::Closed)?;
        self.waker.wake()?;
        Ok(rx)
    }

    /// Runs a SCSI command and blocks this thread until it completes.
    pub fn execute(&self, cmd: ScsiCommand) -> Result<Completed, Error> {
        let rx = self.start(Action::Scsi(cmd))?;
        scsi_reply(rx.recv().map_err(|_| Error::Closed)?)
    }
}

fn scsi_reply(reply: Reply) -> Result<Completed, Error> {
    match reply? {
        (TaskOutcome::Scsi(result), data) => Ok(Completed { result, data }),
        (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
        (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

struct Conn {
    stream: TcpStream,
    connected: bool,
    interest: Interest,
}

/// A task whose data and outcome the client gathers instead of surfacing
/// them as events.
struct Collected {
    data: ReadData,
    reply: Option<mpsc::Sender<Reply>>,
}

/// One initiator session on a caller's `mio` registry.
pub struct Client {
    session: Session,
    registry: Registry,
    token: Token,
    portal: String,
    conn: Option<Conn>,
    rx: RecvBuffer,
    /// Transmits taken from the core and not fully written; `sent` bytes
    /// of the first are on the wire.
    tx: TxQueue,
    blocked: bool,
    events: VecDeque<Event>,
    /// Collected tasks in flight, in a slot per task tag (no hashing).
    collected: TaskMap<Collected>,
    /// Collected tasks that ended, oldest first.
    completed: VecDeque<(TaskId, TaskOutcome, Bytes)>,
    requests: mpsc::Receiver<Request>,
    request_tx: mpsc::Sender<Request>,
    connect_error: Option<(String, io::Error)>,
    logged_in_once: bool,
    closed: Option<Option<ConnectionError>>,
    /// The receive low-water mark planner (receive coalescing).
    low_water: LowWater,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("portal", &self.portal)
            .field("token", &self.token)
            .field("state", &self.session.state())
            .finish()
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
        let (request_tx, requests) = mpsc::channel();
        let mut random = [0u8; 3];
        iscsi_sys::fill_random(&mut random)?;
        let mut c = Client {
            session: open_session(config, Instant::now(), random)?,
            registry: registry.try_clone()?,
            token,
            portal: portal.to_string(),
            conn: None,
            rx: RecvBuffer::default(),
            tx: TxQueue::default(),
            blocked: false,
            events: VecDeque::new(),
            collected: TaskMap::new(),
            completed: VecDeque::new(),
            requests,
            request_tx,
            connect_error: None,
            logged_in_once: false,
            closed: None,
            low_water: LowWater::new(Coalesce::default()),
        };
        c.drive()?;
        Ok(c)
    }

    /// Sets receive coalescing (`SO_RCVLOWAT`, see
    /// `iscsi_proto::initiator::coalesce`): on by default with
    /// [`Coalesce::default`]; [`Coalesce::OFF`] turns it off. Applies from
    /// the next wait.
    pub fn set_coalesce(&mut self, coalesce: Coalesce) {
        if self.low_water.mark() != 1 {
            self.set_low_water(1);
        }
        self.low_water = LowWater::new(coalesce);
    }

    /// The token the socket is registered under.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The sans-IO session (for its getters).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Whether the session is over ([`Event::Closed`] was seen).
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Why the session ended, as an error (`None` while it runs).
    pub fn close_error(&self) -> Option<Error> {
        let reason = self.closed.as_ref()?;
        if let (false, Some((addr, e))) = (self.logged_in_once, &self.connect_error) {
            return Some(Error::Connect {
                addr: addr.clone(),
                source: io::Error::new(e.kind(), e.to_string()),
            });
        }
        Some(match reason {
            Some(e) => Error::Connection(e.clone()),
            None => Error::Closed,
        })
    }

    /// The deadline for the caller's poll timeout: call
    /// [`Client::handle_timeout`] once it passes (the core's timers, and
    /// the end of a wait for a receive low-water mark).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.low_water.earliest(self.session.poll_timeout())
    }

    /// The next event for the application: everything the core emits
    /// except `Connect` (handled here) and the data and completions of
    /// collected tasks.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A handle for other threads; `waker` must belong to the `Poll` this
    /// client is registered with, and its token must lead the loop to
    /// [`Client::handle_wakeup`].
    pub fn submitter(&self, waker: Arc<Waker>) -> Submitter {
        Submitter {
            tx: self.request_tx.clone(),
            waker,
        }
    }

    /// Handles a readiness event for [`Client::token`] (others are ignored).
    pub fn handle_event(&mut self, event: &mio::event::Event) -> Result<(), Error> {
        if event.token() != self.token {
            return Ok(());
        }
        let connecting = self.conn.as_ref().is_some_and(|c| !c.connected);
        if connecting {
            self.check_connected();
        }
        if self.conn.as_ref().is_some_and(|c| c.connected) {
            if event.is_writable() {
                self.blocked = false;
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
        if self.low_water.deadline().is_some_and(|d| d <= now) {
            // Whatever is there, below the mark: take it.
            self.read_ready()?;
            if let Some(mark) = self.low_water.timeout() {
                self.set_low_water(mark);
            }
            self.drive()?;
        }
        if self.session.poll_timeout().is_some_and(|d| d <= now) {
            self.session.handle_timeout(now);
            self.drive()?;
        }
        Ok(())
    }

    /// Sets the socket's receive low-water mark; if that fails, coalescing
    /// stops.
    fn set_low_water(&mut self, mark: usize) {
        if let Some(conn) = self.conn.as_ref().filter(|c| c.connected) {
            let stream = &conn.stream;
            self.low_water
                .apply(mark, |m| iscsi_sys::set_recv_low_water(stream, m).is_ok());
        }
    }

    /// Plans the next wait's low-water mark (after the socket has been
    /// read until it would block).
    fn plan_wait(&mut self) {
        if !self.conn.as_ref().is_some_and(|c| c.connected) {
            return;
        }
        let pending = self.blocked || !self.tx.is_empty() || self.session.has_transmit();
        let buffered = self.rx.filled().len();
        if let Some(mark) = self
            .low_water
            .plan(&self.session, buffered, pending, Instant::now())
        {
            self.set_low_water(mark);
        }
    }

    /// Starts the work queued by [`Submitter`]s (call on the waker's token;
    /// harmless otherwise).
    pub fn handle_wakeup(&mut self) -> Result<(), Error> {
        let mut any = false;
        while let Ok((action, reply)) = self.requests.try_recv() {
            any = true;
            if let Err(e) = self.start_inner(action, Some(reply.clone()), true) {
                let _ = reply.send(Err(e));
            }
        }
        if any {
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
        let task = self.start_inner(action, None, false)?;
        self.drive()?;
        Ok(task)
    }

    /// Starts `action` and gathers its read data and outcome in the client
    /// (no events): take them with [`Client::take_completed`].
    pub fn start_collected(&mut self, action: Action) -> Result<TaskId, Error> {
        let task = self.start_inner(action, None, true)?;
        self.drive()?;
        Ok(task)
    }

    /// The outcome and read data of a collected task, once it ended.
    pub fn take_completed(&mut self, task: TaskId) -> Option<(TaskOutcome, Bytes)> {
        let i = self.completed.iter().position(|c| c.0 == task)?;
        self.completed.remove(i).map(|(_, o, d)| (o, d))
    }

    /// The collected task that ended first, with its outcome and read data.
    pub fn take_any_completed(&mut self) -> Option<(TaskId, TaskOutcome, Bytes)> {
        self.completed.pop_front()
    }

    /// Whether ended collected tasks wait for [`Client::take_completed`].
    pub fn has_completed(&self) -> bool {
        !self.completed.is_empty()
    }

    /// Starts `action` like [`Client::start_collected`], but leaves its
    /// PDUs queued: they go out, with everything else queued, at the next
    /// event handled or [`Client::flush`] (one vectored write for a batch
    /// of commands).
    pub fn start_deferred(&mut self, action: Action) -> Result<TaskId, Error> {
        self.start_inner(action, None, true)
    }

    /// Writes what is queued (see [`Client::start_deferred`]).
    pub fn flush(&mut self) -> Result<(), Error> {
        self.drive()
    }

    fn start_inner(
        &mut self,
        action: Action,
        reply: Option<mpsc::Sender<Reply>>,
        collect: bool,
    ) -> Result<TaskId, Error> {
        let task = self.session.start(Instant::now(), action)?;
        if collect {
            let data = ReadData::default();
            self.collected.insert(task, Collected { data, reply });
        }
        Ok(task)
    }

    /// [`Client::drive_io`], then the plan for the next wait for input.
    fn drive(&mut self) -> Result<(), Error> {
        self.drive_io()?;
        self.plan_wait();
        Ok(())
    }

    /// The drain order: transmit, then events, until neither makes
    /// progress; then fix the write interest.
    fn drive_io(&mut self) -> Result<(), Error> {
        loop {
            self.write_out();
            self.drain_events()?;
            let writable = self.conn.as_ref().is_some_and(|c| c.connected) && !self.blocked;
            if !(writable && self.session.has_transmit()) {
                break;
            }
        }
        // Write interest only while a connect or a blocked write is pending.
        if let Some(conn) = self.conn.as_mut() {
            let want = if !conn.connected || self.blocked {
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

    /// Writes queued PDUs with vectored writes until none is left or the
    /// socket would block.
    fn write_out(&mut self) {
        if self.tx.is_empty() && !self.session.has_transmit() {
            return;
        }
        let now = Instant::now();
        loop {
            let Some(conn) = self.conn.as_mut().filter(|c| c.connected && !self.blocked) else {
                return;
            };
            self.tx.fill(&mut self.session, now, BATCH);
            if self.tx.is_empty() {
                return;
            }
            let mut slices = [IoSlice::new(&[]); BATCH * 3];
            let n = self.tx.io_slices(&mut slices);
            match conn.stream.write_vectored(slices.get(..n).unwrap_or(&[])) {
                Ok(0) => return self.connection_lost(),
                Ok(written) => self.tx.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.connection_lost(),
            }
        }
    }

    /// Reads until the socket would block, feeding the core after each read.
    fn read_ready(&mut self) -> Result<(), Error> {
        loop {
            let Some(conn) = self.conn.as_mut().filter(|c| c.connected) else {
                return Ok(());
            };
            // Zero-filled once per region, not before every read.
            let max_pdu = self.session.max_recv_pdu_len();
            let r = conn.stream.read(self.rx.spare(max_pdu, READ_CHUNK));
            match r {
                Ok(0) => {
                    self.connection_lost();
                    return Ok(());
                }
                Ok(n) => {
                    let now = Instant::now();
                    self.low_water.on_input(n, now);
                    self.rx.commit(n);
                    self.session.handle_input(now, self.rx.filled());
                    // Answers (R2T data, NOP-Outs) go out before more input.
                    self.drive_io()?;
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(()),
                    io::ErrorKind::Interrupted => {}
                    _ => {
                        self.connection_lost();
                        return Ok(());
                    }
                },
            }
        }
    }

    /// A writable (or error) event on a connecting socket: did it connect?
    fn check_connected(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let failed = match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match conn.stream.peer_addr() {
                Ok(_) => None,
                // Spurious wakeup: still connecting.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Some(e),
            },
        };
        match failed {
            None => {
                conn.connected = true;
                self.session.handle_connected(Instant::now());
            }
            Some(e) => {
                let addr = conn.stream.peer_addr().map(|a| a.to_string());
                self.connect_error = Some((addr.unwrap_or_else(|_| self.portal.clone()), e));
                self.connection_lost();
            }
        }
    }

    fn close_conn(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = self.registry.deregister(&mut c.stream);
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        self.rx.clear();
        self.tx.clear();
        self.blocked = false;
        self.low_water.reset();
    }

    fn connection_lost(&mut self) {
        tracing::debug!(target: "iscsi::driver", driver = "mio", "connection lost");
        self.close_conn();
        self.session.handle_closed(Instant::now());
    }

    fn drain_events(&mut self) -> Result<(), Error> {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Connect { portal } => {
                    self.open(portal)?;
                    continue;
                }
                Event::DataIn { task, offset, data } => {
                    if let Some(c) = self.collected.get_mut(task) {
                        c.data.push(offset, data);
                        continue;
                    }
                    self.events.push_back(Event::DataIn { task, offset, data });
                }
                Event::Complete { task, outcome } => {
                    if let Some(c) = self.collected.remove(task) {
                        let data = c.data.into_bytes();
                        match c.reply {
                            Some(reply) => drop(reply.send(Ok((outcome, data)))),
                            None => self.completed.push_back((task, outcome, data)),
                        }
                        continue;
                    }
                    self.events.push_back(Event::Complete { task, outcome });
                }
                Event::LoggedIn { tsih } => {
                    self.logged_in_once = true;
                    self.events.push_back(Event::LoggedIn { tsih });
                }
                Event::Closed(reason) => {
                    self.close_conn();
                    for (_, c) in self.collected.drain() {
                        if let Some(reply) = c.reply {
                            let _ = reply.send(Err(Error::Closed));
                        }
                    }
                    self.closed = Some(reason.clone());
                    self.events.push_back(Event::Closed(reason));
                }
                Event::Recovering { .. } => {
                    self.close_conn();
                    self.events.push_back(ev);
                }
                other => self.events.push_back(other),
            }
        }
        Ok(())
    }

    /// Opens a non-blocking connection where the core asked, under the
    /// same token.
    fn open(&mut self, portal: Option<NetworkPortal>) -> Result<(), Error> {
        self.close_conn();
        let addr = match &portal {
            Some(p) if p.host.contains(':') => format!("[{}]:{}", p.host, p.port),
            Some(p) => format!("{}:{}", p.host, p.port),
            None => self.portal.clone(),
        };
        tracing::debug!(target: "iscsi::driver", driver = "mio", %addr, "connecting");
        // Name resolution blocks (std has no other); IP literals do not.
        let resolved = addr.to_socket_addrs().and_then(|mut a| {
            a.next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
        });
        let stream = resolved.and_then(TcpStream::connect);
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // The core decides: retry later (recovery) or close.
                self.connect_error = Some((addr, e));
                self.session.handle_closed(Instant::now());
                return Ok(());
            }
        };
        let _ = stream.set_nodelay(true);
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.registry.register(&mut stream, self.token, interest)?;
        self.conn = Some(Conn {
            stream,
            connected: false,
            interest,
        });
        Ok(())
    }
}

/// Drives `client` on `poll` until `done(client)` holds; fails if the
/// session closes first. Events of other tokens are ignored, so this is
/// for a `Poll` that serves this client alone (plus its waker).
pub fn run_until(
    poll: &mut Poll,
    events: &mut Events,
    client: &mut Client,
    mut done: impl FnMut(&mut Client) -> bool,
) -> Result<(), Error> {
    loop {
        if done(client) {
            return Ok(());
        }
        if let Some(e) = client.close_error() {
            return Err(e);
        }
        // Work queued without a write (`Client::start_deferred`) goes out
        // before blocking.
        if client.session.has_transmit() {
            client.drive()?;
            if done(client) {
                return Ok(());
            }
        }
        let now = Instant::now();
        let timeout = client
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now));
        if let Err(e) = poll.poll(events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::Io(e));
            }
        }
        for ev in events.iter() {
            client.handle_event(ev)?;
        }
        client.handle_timeout()?;
        client.handle_wakeup()?;
    }
}

/// A ready-made loop for one session: its own `Poll`, blocking calls.
pub struct Blocking {
    poll: Poll,
    events: Events,
    client: Client,
    waker: Arc<Waker>,
    async_events: Vec<Event>,
}

impl std::fmt::Debug for Blocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking")
            .field("client", &self.client)
            .finish()
    }
}

const CLIENT: Token = Token(0);
const WAKER: Token = Token(1);

impl Blocking {
    /// Connects to `portal` and logs in with `config`.
    pub fn connect(portal: &str, config: SessionConfig) -> Result<Blocking, Error> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let client = Client::new(portal, config, poll.registry(), CLIENT)?;
        let mut b = Blocking {
            poll,
            events: Events::with_capacity(64),
            client,
            waker,
            async_events: Vec::new(),
        };
        b.run_until(|c| c.session().is_logged_in())?;
        Ok(b)
    }

    /// Runs a discovery session (SendTargets=All) and logs out. `config`
    /// must have no target name.
    pub fn discover(portal: &str, config: SessionConfig) -> Result<Vec<TargetRecord>, Error> {
        let mut b = Blocking::connect(portal, config)?;
        let targets = match b.wait_action(Action::SendTargets)? {
            (TaskOutcome::Targets(t), _) => t,
            (other, _) => return Err(Error::Unexpected(format!("{other:?}"))),
        };
        b.logout()?;
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

    /// Drives the session until `done(client)` holds (see [`run_until`]).
    pub fn run_until(&mut self, mut done: impl FnMut(&mut Client) -> bool) -> Result<(), Error> {
        let async_events = &mut self.async_events;
        run_until(&mut self.poll, &mut self.events, &mut self.client, |c| {
            while let Some(ev) = c.poll_event() {
                if async_events.len() < 1024 {
                    async_events.push(ev);
                }
            }
            done(c)
        })
    }

    /// Events that reached the application so far (async messages,
    /// rejects, recovery notices; at most 1024 are kept).
    pub fn take_async_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.async_events)
    }

    /// Submits a SCSI command without waiting; see [`Blocking::wait`].
    ///
    /// The command is written at once, unless completions wait to be
    /// collected: then it is written, with every command submitted
    /// meanwhile, in one vectored write by the next `submit` made with no
    /// completion waiting, or by the next call that waits for input.
    pub fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, Error> {
        if self.client.has_completed() {
            self.client.start_deferred(Action::Scsi(cmd))
        } else {
            self.client.start_collected(Action::Scsi(cmd))
        }
    }

    /// Waits for whichever task started with [`Blocking::submit`] ends
    /// first (in completion order).
    pub fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), Error> {
        let mut got = None;
        self.run_until(|c| {
            got = c.take_any_completed();
            got.is_some()
        })?;
        got.ok_or(Error::Closed)
    }

    /// Waits for a task started with [`Blocking::submit`].
    pub fn wait(&mut self, task: TaskId) -> Result<(TaskOutcome, Bytes), Error> {
        let mut got = None;
        self.run_until(|c| {
            got = c.take_completed(task);
            got.is_some()
        })?;
        got.ok_or(Error::Closed)
    }

    fn wait_action(&mut self, action: Action) -> Result<(TaskOutcome, Bytes), Error> {
        let task = self.client.start_collected(action)?;
        self.wait(task)
    }

    /// Runs one SCSI command to completion.
    pub fn execute(&mut self, cmd: ScsiCommand) -> Result<Completed, Error> {
        let r = self.wait_action(Action::Scsi(cmd));
        scsi_reply(r)
    }

    /// Runs a task management function.
    pub fn task_management(
        &mut self,
        lun: u64,
        function: TmfFunction,
    ) -> Result<TmfResponse, Error> {
        match self.wait_action(Action::TaskManagement { lun, function })? {
            (TaskOutcome::TaskManagement(r), _) => Ok(r),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Logs out (after outstanding tasks finish) and closes the connection.
    pub fn logout(mut self) -> Result<LogoutResult, Error> {
        match self.wait_action(Action::Logout(LogoutMode::WaitForTasks))? {
            (TaskOutcome::LoggedOut(r), _) => Ok(r),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }
}
