//! What every initiator driver shares, with no I/O: [`DriverCore`] owns the
//! [`Session`] and everything a driver would otherwise repeat around it
//! (str0m's "drivers only move bytes"), and [`Error`] is the one error type
//! the drivers re-export.
//!
//! A driver keeps only its socket and its way of waiting. Its loop:
//!
//! 1. **Connection requests**: [`DriverCore::poll_conn`] says when to open a
//!    TCP connection (the address is formatted: `[v6]:port`) or close the
//!    one it has. The driver reports [`DriverCore::connected`],
//!    [`DriverCore::connect_failed`] or [`DriverCore::connection_lost`].
//! 2. **Input**: read into [`DriverCore::recv_space`] (a [`RecvBuffer`]:
//!    zero-filled once per region, PDUs handed out without a copy), then
//!    [`DriverCore::received`].
//! 3. **Output**: [`DriverCore::transmit`] fills `IoSlice`s for one
//!    vectored write (a [`TxQueue`]: resumes partial writes),
//!    [`DriverCore::written`] takes the count the socket accepted;
//!    [`DriverCore::write_with`] runs that loop with the driver's write
//!    call (and [`DriverCore::read_with`] one read), handling would-block,
//!    interruptions and a broken connection the same way on every driver.
//! 4. **Waiting**: for readability while [`DriverCore::is_connected`], for
//!    writability while [`DriverCore::wants_writable`] (a connection being
//!    opened, or a write that would block: then [`DriverCore::writable`]),
//!    and no later than [`DriverCore::poll_timeout`], then
//!    [`DriverCore::handle_timeout`]; the receive low-water mark
//!    (`SO_RCVLOWAT`, [`LowWater`]) comes from
//!    [`DriverCore::plan_low_water`] and is set with
//!    [`DriverCore::apply_low_water`].
//! 5. **Work and results**: [`DriverCore::start`] starts an [`Action`];
//!    the read data and outcome of a task started with `collect` are
//!    gathered by task ([`TaskMap`]) and taken with
//!    [`DriverCore::take_completed`] as a [`Reply`] (see [`reply`] for the
//!    conversions to each kind of result); every other event comes from
//!    [`DriverCore::poll_event`].
//!
//! Every call that feeds the session drains its events at once (the core's
//! drain order: a driver writes what [`DriverCore::transmit`] offers after
//! every input, action or timeout, before it waits again).
//!
//! A byte tap ([`Tap`], e.g. `iscsi --pcap`) sees every byte handed to the
//! socket (once written) and taken from it, on every driver.
//!
//! Time: the driver passes `std::time::Instant`s; a [`Clock`] (its epoch
//! is the `now` given to [`DriverCore::new`]) converts them to the core's
//! [`crate::time::Instant`] and deadlines back.
//!
//! How the end of a session is reported is documented on [`Error`]'s
//! module, [`error`].

mod clock;
pub mod error;
pub mod helpers;
mod links;
mod recv;
pub mod reply;

use crate::prelude::*;
use alloc::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Instant;

pub use self::clock::Clock;
pub use self::error::Error;
use self::links::Link;
pub use self::links::LinkRequest;
pub use self::recv::{IDLE_KEEP, MAX_READ, MIN_READ, RELEASE_AFTER};
pub use self::reply::Reply;
use crate::error::{ConnectionError, TaskError, UsageError};
use crate::initiator::{
    open_session, Event, LowWater, ReadData, RecvBuffer, Session, SessionConfig, TaskId,
    TaskOutcome, TxQueue,
};
pub use crate::initiator::{Action, Coalesce, Completed};
use crate::task_id::TaskMap;
use alloc::collections::BTreeMap;

/// PDUs taken from the session for one vectored write.
pub const BATCH: usize = 64;
/// `IoSlice`s one vectored write needs (header, data, trailer per PDU);
/// Linux takes up to 1024 per `writev`.
pub const IO_SLICES: usize = 3 * BATCH;
/// Session events (async messages, rejects, recovery notices, login and
/// close) kept for the application before newer ones are dropped; task
/// events (`DataIn`, `Complete`) are always kept.
pub const EVENT_BACKLOG: usize = 1024;

/// Which way bytes crossed the connection (for a [`Tap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Initiator to target.
    Sent,
    /// Target to initiator.
    Received,
}

/// A callback that sees every byte sent and received, with the local and
/// peer addresses of the connection (used by `iscsi --pcap`).
pub type Tap = Box<dyn FnMut(Direction, SocketAddr, SocketAddr, &[u8]) + Send>;

/// Where a task's reply goes once it ended (e.g. the sending half of a
/// channel), for [`DriverCore::start_notify`].
pub type Notify = Box<dyn FnOnce(Reply) + Send>;

/// An action queued from another thread, with where its reply goes
/// ([`DriverCore::inbox`]).
pub type Queued = (Action, Notify);

/// What the driver must do with its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum ConnRequest {
    /// Close the connection it has (if any) and open one to this address
    /// (`host:port`, an IPv6 literal in brackets).
    Open(String),
    /// Close the connection (recovery begins, or the session is over).
    Close,
}

/// How [`DriverCore::write_with`] ended.
#[derive(Debug)]
#[must_use]
pub enum Written {
    /// Everything was written.
    All,
    /// The socket would block: wait for writability, tell the core
    /// ([`DriverCore::writable`]), then write again.
    WouldBlock,
    /// The connection broke (with the write's error, if any); the core was
    /// told and asks the driver to close the socket.
    Lost(Option<io::Error>),
}

/// How [`DriverCore::read_with`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Read {
    /// This many bytes were read and handed to the session.
    Bytes(usize),
    /// Nothing to read now (would block, or the read timed out).
    Nothing,
    /// The connection ended or broke; the core was told and asks the
    /// driver to close the socket.
    Lost,
}

/// The session and every piece of driver state that is not a socket or a
/// way of waiting (see the [module documentation](self)).
pub struct DriverCore {
    session: Session,
    /// Converts the driver's instants to the core's and back.
    clock: Clock,
    portal: String,
    rx: RecvBuffer,
    tx: TxQueue,
    low_water: LowWater,
    /// A receive low-water mark for the driver to set on its socket.
    mark: Option<usize>,
    /// The largest socket read (see `recv`).
    max_read: usize,
    /// The largest read asked for since the receive region was last
    /// released.
    rx_peak: usize,
    /// When an idle session's receive region is dropped (see `recv`).
    release_at: Option<crate::time::Instant>,
    tap: Option<Tap>,
    /// The connection's (local, peer) addresses; `None` while there is none.
    link: Option<(SocketAddr, SocketAddr)>,
    /// The address of the connection being opened ([`ConnRequest::Open`]
    /// taken, not yet [`DriverCore::connected`]).
    connecting: Option<String>,
    /// A write would block: nothing is written until
    /// [`DriverCore::writable`].
    blocked: bool,
    request: Option<ConnRequest>,
    collected: TaskMap<ReadData>,
    /// Where the reply of a task goes, for tasks started with one.
    notify: TaskMap<Notify>,
    /// Actions started from other threads, and the sending half for them.
    inbox: (mpsc::Sender<Queued>, mpsc::Receiver<Queued>),
    done: VecDeque<(TaskId, Reply)>,
    events: VecDeque<Event>,
    connect_error: Option<(String, io::Error)>,
    logged_in: bool,
    logged_in_once: bool,
    /// The session ended: `None` after a logout, else why. Sticky.
    ended: Option<Option<ConnectionError>>,
    /// The added connections (MC/S), by CID (see [`links`]).
    links: BTreeMap<u16, Link>,
    /// Sockets of added connections to open or close.
    link_requests: VecDeque<LinkRequest>,
    /// Open connections up to the negotiated MaxConnections.
    auto_connections: bool,
}

impl std::fmt::Debug for DriverCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverCore")
            .field("portal", &self.portal)
            .field("state", &self.session.state())
            .field("connected", &self.link.is_some())
            .field("tap", &self.tap.is_some())
            .finish()
    }
}

impl DriverCore {
    /// The session for `config`, to run against `portal` (`host:port`).
    /// `random`: three random bytes from the operating system for the
    /// ISID (see [`open_session`]). The first [`ConnRequest::Open`] is
    /// ready at once.
    pub fn new(
        portal: &str,
        config: SessionConfig,
        now: Instant,
        random: [u8; 3],
    ) -> Result<DriverCore, Error> {
        let clock = Clock::with_epoch(now);
        let mut core = DriverCore {
            session: open_session(config, clock.to_core(now), random)?,
            clock,
            portal: portal.to_string(),
            rx: RecvBuffer::default(),
            tx: TxQueue::default(),
            low_water: LowWater::new(Coalesce::default()),
            mark: None,
            max_read: MAX_READ,
            rx_peak: 0,
            release_at: None,
            tap: None,
            link: None,
            connecting: None,
            blocked: false,
            request: None,
            collected: TaskMap::new(),
            notify: TaskMap::new(),
            inbox: mpsc::channel(),
            done: VecDeque::new(),
            events: VecDeque::new(),
            connect_error: None,
            logged_in: false,
            logged_in_once: false,
            ended: None,
            links: BTreeMap::new(),
            link_requests: VecDeque::new(),
            auto_connections: true,
        };
        core.drain();
        Ok(core)
    }

    /// Installs (or removes) the byte tap.
    pub fn set_tap(&mut self, tap: Option<Tap>) {
        self.tap = tap;
    }

    /// Sets receive coalescing (see [`crate::initiator::coalesce`]); the
    /// socket goes back to mark 1 at the next
    /// [`DriverCore::apply_low_water`].
    pub fn set_coalesce(&mut self, coalesce: Coalesce) {
        if self.low_water.mark() != 1 {
            self.mark = Some(1);
        }
        self.low_water = LowWater::new(coalesce);
    }

    /// The clock converting this driver's instants to the session's
    /// (for the session's getters that return instants).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The sans-IO session (for its getters).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The portal the session was created for.
    pub fn portal(&self) -> &str {
        &self.portal
    }

    /// Whether the session is in the Full Feature Phase (since the last
    /// `LoggedIn` or `Reinstated`, until recovery begins).
    pub fn is_logged_in(&self) -> bool {
        self.logged_in
    }

    /// Whether the driver has a connection up.
    pub fn is_connected(&self) -> bool {
        self.link.is_some()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.ended.is_some()
    }

    /// Why the session is over, as the error every call now reports
    /// (`None` while it runs): a refusal ([`Error::Connect`],
    /// [`Error::Login`]) if it never logged in, else [`Error::Closed`].
    pub fn close_error(&self) -> Option<Error> {
        let reason = self.ended.as_ref()?;
        if self.logged_in_once {
            return Some(Error::Closed(reason.clone()));
        }
        Some(match (&self.connect_error, reason) {
            (Some((addr, e)), _) => Error::Connect {
                addr: addr.clone(),
                source: io::Error::new(e.kind(), e.to_string()),
            },
            (None, Some(e)) => Error::Login(e.clone()),
            (None, None) => Error::Closed(None),
        })
    }

    /// `Err` with [`DriverCore::close_error`] once the session is over.
    pub fn check(&self) -> Result<(), Error> {
        match self.close_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Starts `action` (see [`Session::start`]). With `collect`, its read
    /// data and outcome are gathered here for
    /// [`DriverCore::take_completed`] instead of coming as events.
    pub fn start(&mut self, now: Instant, action: Action, collect: bool) -> Result<TaskId, Error> {
        self.check()?;
        let task = match self.session.start(self.clock.to_core(now), action) {
            Ok(t) => t,
            Err(e) => return Err(self.refusal(e)),
        };
        if collect {
            self.collected.insert(task, ReadData::default());
        }
        self.drain();
        Ok(task)
    }

    /// Starts `action` like [`DriverCore::start`] with `collect`, and
    /// hands its reply to `notify` once it ends (when the session's
    /// events have been drained) instead of keeping it for
    /// [`DriverCore::take_completed`]. A refused action's error goes to
    /// `notify` too.
    pub fn start_notify(
        &mut self,
        now: Instant,
        action: Action,
        notify: Notify,
    ) -> Result<TaskId, Error> {
        let started = match self.check() {
            Ok(()) => self
                .session
                .start(self.clock.to_core(now), action)
                .map_err(|e| self.refusal(e)),
            Err(e) => Err(e),
        };
        let task = match started {
            Ok(t) => t,
            Err(e) => {
                notify(Err(e.duplicate()));
                return Err(e);
            }
        };
        self.collected.insert(task, ReadData::default());
        self.notify.insert(task, notify);
        self.drain();
        Ok(task)
    }

    /// A handle that queues actions from any thread, each with where its
    /// reply goes; the driver starts them with [`DriverCore::start_queued`]
    /// once woken (the waking is the driver's: a `mio::Waker`, ...).
    pub fn inbox(&self) -> mpsc::Sender<Queued> {
        self.inbox.0.clone()
    }

    /// Starts the actions queued through [`DriverCore::inbox`] (a refused
    /// one's error goes to its `Notify`); returns whether there were any.
    pub fn start_queued(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Ok((action, notify)) = self.inbox.1.try_recv() {
            any = true;
            let _ = self.start_notify(now, action, notify);
        }
        any
    }

    /// The error for a call the session refused.
    fn refusal(&mut self, e: UsageError) -> Error {
        if e != UsageError::Closed {
            return e.into();
        }
        self.drain();
        self.close_error().unwrap_or(Error::Closed(None))
    }

    /// What the driver must do with its connection next, if anything.
    #[must_use]
    pub fn poll_conn(&mut self) -> Option<ConnRequest> {
        let r = self.request.take();
        match &r {
            Some(ConnRequest::Open(addr)) => self.connecting = Some(addr.clone()),
            Some(ConnRequest::Close) => self.connecting = None,
            None => {}
        }
        r
    }

    /// Whether the driver must wait for writability: a connection being
    /// opened, or a write that would block. (Readability: whenever
    /// [`DriverCore::is_connected`]; the deadline:
    /// [`DriverCore::poll_timeout`].)
    pub fn wants_writable(&self) -> bool {
        self.connecting.is_some() || self.blocked
    }

    /// The socket is writable again after [`Written::WouldBlock`].
    pub fn writable(&mut self) {
        self.blocked = false;
    }

    /// The driver stops driving a session that is not over (e.g. every
    /// handle on it is gone and it cannot log out): it counts as closed
    /// (`Error::Closed(None)`) from now on, and the connection is to be
    /// closed.
    pub fn abandon(&mut self) {
        if self.ended.is_none() {
            self.ended = Some(None);
            self.close_link();
            self.close_all_links();
            self.fail_collected();
            self.drain();
        }
    }

    /// Whether [`DriverCore::poll_conn`] has a request.
    pub fn has_conn_request(&self) -> bool {
        self.request.is_some()
    }

    /// The connection asked for by [`ConnRequest::Open`] is up.
    pub fn connected(&mut self, now: Instant, local: SocketAddr, peer: SocketAddr) {
        self.reset_link();
        self.link = Some((local, peer));
        self.connect_error = None;
        self.session.handle_connected(self.clock.to_core(now));
        self.drain();
    }

    /// The connection asked for by [`ConnRequest::Open`] could not be
    /// made: the session decides (retry later, or end with
    /// [`Error::Connect`] naming the address).
    pub fn connect_failed(&mut self, now: Instant, error: io::Error) {
        let addr = self
            .connecting
            .take()
            .unwrap_or_else(|| self.portal.clone());
        self.close_link();
        self.connect_error = Some((addr, error));
        self.session.handle_closed(self.clock.to_core(now));
        self.drain();
    }

    /// The connection broke (end of stream, reset, a write error): the
    /// session decides (recover, or end with [`Error::Closed`]); the
    /// driver is asked to close its socket ([`ConnRequest::Close`]).
    pub fn connection_lost(&mut self, now: Instant) {
        tracing::debug!(target: "iscsi::driver", "connection lost");
        self.close_link();
        self.session.handle_closed(self.clock.to_core(now));
        self.drain();
    }

    fn reset_link(&mut self) {
        self.link = None;
        self.connecting = None;
        self.blocked = false;
        // A new connection starts with no receive memory (see `recv`).
        self.rx = RecvBuffer::default();
        self.rx_peak = 0;
        self.release_at = None;
        self.tx.clear();
        self.low_water.reset();
        self.mark = None;
    }

    /// Whether bytes wait to be written (taken from the session or not).
    pub fn has_output(&self) -> bool {
        !self.tx.is_empty() || self.session.has_transmit() || self.links_have_output()
    }

    /// The unwritten bytes as slices for one vectored write (at most
    /// [`BATCH`] PDUs; `slices` should have [`IO_SLICES`] entries);
    /// returns how many were filled (0: nothing to write, no connection,
    /// or a write would block).
    pub fn transmit<'a>(&'a mut self, now: Instant, slices: &mut [IoSlice<'a>]) -> usize {
        if self.link.is_none() || self.blocked {
            return 0;
        }
        self.tx
            .fill(&mut self.session, self.clock.to_core(now), BATCH);
        self.tx.io_slices(slices)
    }

    /// `n` bytes of [`DriverCore::transmit`]'s slices were written.
    pub fn written(&mut self, n: usize) {
        match (self.tap.as_mut(), self.link) {
            (Some(tap), Some((local, peer))) => self
                .tx
                .advance_with(n, |part| tap(Direction::Sent, local, peer, part)),
            _ => self.tx.advance(n),
        }
        self.drain();
    }

    /// Writes what there is with `write`, the driver's non-blocking (or
    /// blocking) vectored write, until nothing is left, the socket would
    /// block or the connection broke ([`DriverCore::connection_lost`] is
    /// then done here). The core does no I/O: `write` does.
    pub fn write_with(
        &mut self,
        now: Instant,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> Written {
        if self.blocked {
            return Written::WouldBlock;
        }
        loop {
            let mut slices = [IoSlice::new(&[]); IO_SLICES];
            let n = self.transmit(now, &mut slices);
            if n == 0 {
                return Written::All;
            }
            match write(slices.get(..n).unwrap_or(&[])) {
                Ok(0) => {
                    self.connection_lost(now);
                    return Written::Lost(None);
                }
                Ok(k) => self.written(k),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Written::WouldBlock;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.connection_lost(now);
                    return Written::Lost(Some(e));
                }
            }
        }
    }

    /// When [`DriverCore::handle_timeout`] must be called: the session's
    /// next deadline, the end of a wait for the receive low-water mark, or
    /// when an idle session's receive memory is released.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let at = self.low_water.earliest(self.session.poll_timeout());
        let at = match (at, self.release_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        at.map(|t| self.clock.to_std(t))
    }

    /// The session's own next deadline (without the low-water wait of
    /// [`DriverCore::poll_timeout`]).
    #[must_use]
    pub fn session_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout().map(|t| self.clock.to_std(t))
    }

    /// Fires the session's timer if its deadline has passed (harmless
    /// before); returns whether it fired. Also releases an idle session's
    /// receive memory when that is due (see [`DriverCore::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let now = self.clock.to_core(now);
        self.release_if_due(now);
        if self.session.poll_timeout().is_none_or(|d| d > now) {
            return false;
        }
        self.session.handle_timeout(now);
        self.drain();
        true
    }

    /// Plans the next wait for input (receive coalescing, see
    /// [`LowWater::plan`]; output still to write, a blocked write
    /// included, means no coalescing). A new mark is set by
    /// [`DriverCore::apply_low_water`].
    pub fn plan_low_water(&mut self, now: Instant) {
        if self.link.is_none() {
            return;
        }
        let pending = self.blocked || self.has_output();
        let buffered = self.rx.filled().len();
        let now = self.clock.to_core(now);
        self.plan_release(now);
        if let Some(m) = self.low_water.plan(&self.session, buffered, pending, now) {
            self.mark = Some(m);
        }
    }

    /// Sets a new receive low-water mark, if there is one, with `set`, the
    /// driver's socket call (`SO_RCVLOWAT`; true on success). If it fails,
    /// coalescing stops.
    pub fn apply_low_water(&mut self, set: impl FnMut(usize) -> bool) {
        if let Some(m) = self.mark.take() {
            self.low_water.apply(m, set);
        }
    }

    /// When the wait for the planned mark must end (`None` while the
    /// mark is 1).
    pub fn low_water_deadline(&self) -> Option<Instant> {
        self.low_water.deadline().map(|t| self.clock.to_std(t))
    }

    /// The wait for the low-water mark has lasted its longest, and the
    /// driver has read what there was: the planner decides the next mark
    /// (see [`LowWater::timeout`]). Returns false before the deadline.
    pub fn low_water_timeout(&mut self, now: Instant) -> bool {
        let now = self.clock.to_core(now);
        if self.low_water.deadline().is_none_or(|d| d > now) {
            return false;
        }
        if let Some(m) = self.low_water.timeout() {
            self.mark = Some(m);
        }
        true
    }

    /// Stops coalescing when the driver cannot wait on its socket (the
    /// mark goes back to 1 with `set`).
    pub fn turn_off_low_water(&mut self, set: impl FnOnce(usize) -> bool) {
        self.mark = None;
        self.low_water.turn_off(set);
    }

    /// The next event for the application: every [`Event`] of the core
    /// except `Connect` (a [`ConnRequest`]) and the data and completion
    /// of collected tasks (at most [`EVENT_BACKLOG`] session events wait).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The reply of a collected task, once it ended.
    #[must_use]
    pub fn take_completed(&mut self, task: TaskId) -> Option<Reply> {
        self.take_completed_if(|t| t == task).map(|(_, r)| r)
    }

    /// The collected task that ended first, with its reply.
    #[must_use]
    pub fn take_any_completed(&mut self) -> Option<(TaskId, Reply)> {
        self.done.pop_front()
    }

    /// The first ended collected task for which `pick` holds.
    #[must_use]
    pub fn take_completed_if(
        &mut self,
        mut pick: impl FnMut(TaskId) -> bool,
    ) -> Option<(TaskId, Reply)> {
        let i = self.done.iter().position(|(t, _)| pick(*t))?;
        self.done.remove(i)
    }

    /// Whether ended collected tasks wait to be taken.
    pub fn has_completed(&self) -> bool {
        !self.done.is_empty()
    }

    /// Takes the session's events: connection requests, collected task
    /// data and replies, the rest for [`DriverCore::poll_event`]. The
    /// calls that feed the session do this already.
    pub fn drain(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Connect { portal } => {
                    self.reset_link();
                    let addr = portal.map_or_else(|| self.portal.clone(), |p| p.address());
                    tracing::debug!(target: "iscsi::driver", %addr, "connecting");
                    self.request = Some(ConnRequest::Open(addr));
                }
                Event::DataIn { task, offset, data } => match self.collected.get_mut(task) {
                    Some(r) => r.push(offset, data),
                    None => self.events.push_back(Event::DataIn { task, offset, data }),
                },
                Event::Complete { task, outcome } => match self.collected.remove(task) {
                    Some(r) => self.done.push_back((task, Ok((outcome, r.into_bytes())))),
                    None => self.events.push_back(Event::Complete { task, outcome }),
                },
                Event::LoggedIn { tsih } => {
                    self.logged_in = true;
                    self.logged_in_once = true;
                    self.push_event(Event::LoggedIn { tsih });
                    self.fill_connections();
                }
                Event::Reinstated { .. } => {
                    self.logged_in = true;
                    self.push_event(ev);
                    self.fill_connections();
                }
                Event::OpenConnection { cid, portal } => {
                    let addr = portal.map_or_else(|| self.portal.clone(), |p| p.address());
                    tracing::debug!(target: "iscsi::driver", cid, %addr, "connecting");
                    self.open_link(cid, addr);
                }
                Event::CloseConnection { cid, cause } => {
                    self.close_link_on(cid);
                    self.push_event(Event::CloseConnection { cid, cause });
                }
                Event::Recovering { .. } => {
                    self.logged_in = false;
                    self.close_link();
                    self.push_event(ev);
                }
                Event::Closed(reason) => {
                    self.logged_in = false;
                    self.close_link();
                    self.ended = Some(reason.clone());
                    self.close_all_links();
                    self.fail_collected();
                    self.push_event(Event::Closed(reason));
                }
                other => self.push_event(other),
            }
        }
        // After the whole batch: a task that died with the session has
        // its reply rewritten by then (see `fail_collected`).
        let notify = &mut self.notify;
        while let Some(i) = (!notify.is_empty())
            .then(|| self.done.iter().position(|(t, _)| notify.get(*t).is_some()))
            .flatten()
        {
            if let Some((task, reply)) = self.done.remove(i) {
                if let Some(f) = notify.remove(task) {
                    f(reply);
                }
            }
        }
    }

    /// Queues a session event (not a task's) for the application; beyond
    /// [`EVENT_BACKLOG`] waiting, newer ones are dropped.
    fn push_event(&mut self, ev: Event) {
        if self.events.len() < EVENT_BACKLOG {
            self.events.push_back(ev);
        }
    }

    fn close_link(&mut self) {
        self.request = Some(ConnRequest::Close);
        self.reset_link();
    }

    /// The session ended: a task that died with the connection reports
    /// the session's end (one shape for a lost session: [`Error::Closed`],
    /// or the refusal if it never logged in), and so does every collected
    /// task left.
    fn fail_collected(&mut self) {
        let Some(err) = self.close_error() else {
            return;
        };
        for (_, reply) in self.done.iter_mut() {
            let lost = matches!(
                reply,
                Ok((TaskOutcome::Failed(TaskError::ConnectionLost), _))
            );
            if lost && !matches!(err, Error::Closed(None)) {
                *reply = Err(err.duplicate());
            }
        }
        let left: Vec<TaskId> = self.collected.drain().map(|(t, _)| t).collect();
        for task in left {
            self.done.push_back((task, Err(err.duplicate())));
        }
    }
}
