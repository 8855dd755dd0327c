//! Blocking driver for the `iscsi-proto` sans-IO core: `std::net` sockets and
//! `std::time` clocks around [`iscsi_proto::initiator::Session`], and no
//! protocol logic. Everything the protocol decides (what to send, when a
//! timer fires, where to reconnect) comes from the core's `poll_*` calls.
//!
//! ```no_run
//! use iscsi_proto::initiator::{ScsiCommand, SessionConfig};
//! use iscsi_std::{Client, Options};
//!
//! let config = SessionConfig::new("iqn.2026-11.example:host").with_target("iqn.2026-11.test:disk1");
//! let mut client = Client::connect("127.0.0.1:3260", config, Options::default())?;
//! let inquiry = [0x12, 0, 0, 0, 96, 0];
//! let done = client.execute(ScsiCommand::read(0, inquiry.to_vec(), 96))?;
//! println!("{} bytes of INQUIRY data", done.data.len());
//! for event in client.take_events() {
//!     println!("session event: {event:?}");
//! }
//! client.logout()?;
//! # Ok::<(), iscsi_std::Error>(())
//! ```
//!
//! The drive loop is the one the core documents: after every input or action,
//! write every [`Transmit`] from
//! `poll_transmit`, then take every event from `poll_event`, then block on the
//! socket until input arrives or the deadline from `poll_timeout` passes.
//!
//! Who drives: the application's own calls do, on the application's
//! thread (a call that waits reads the socket itself). Between calls, a
//! background thread takes over once the application has left the client
//! alone for [`Options::background`] (on by default): it answers the
//! target's NOP-In pings, runs the core's timers (keepalive, session
//! recovery, the logout a target asks for with AsyncEvent 1) and writes what
//! the core queues, so a session left alone for minutes is still logged in
//! when it is used again. The session and the driver's state sit behind a
//! mutex that each call holds for its whole duration; the background thread
//! waits for input without it and steps back as soon as a call begins.
//!
//! Cost per I/O: commands submitted while completions wait to be collected
//! go out together in one vectored write (see [`Client::submit`]); one
//! socket read takes every PDU that has arrived, into a receive buffer
//! that is zero-filled once per region rather than before every read;
//! completions and read data are kept in a queue and a slot per task tag,
//! with no hashing.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi_proto::error::{ConfigError, ConnectionError, TaskError, UsageError};
use iscsi_proto::initiator::open_session;
pub use iscsi_proto::initiator::Coalesce;
use iscsi_proto::initiator::{
    Event, LogoutMode, LogoutResult, LowWater, NetworkPortal, ReadData, RecvBuffer, ScsiCommand,
    Session, SessionConfig, SessionState, TargetRecord, TaskId, TaskOutcome,
};
use iscsi_proto::TaskMap;

pub use iscsi_proto::initiator::Completed;
use iscsi_proto::transmit::Transmit;
use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};

/// PDUs written per vectored write (3 parts each at most; Linux takes up
/// to 1024 parts per `writev`).
const BATCH: usize = 64;
/// Rounds of input, timers and output one background step runs before it
/// looks again whether the application wants the session.
const BACKGROUND_ROUNDS: usize = 64;
/// The longest the background thread waits without looking again.
const BACKGROUND_MAX_WAIT: Duration = Duration::from_secs(1);

/// Which way bytes crossed the socket (for [`Options::tap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Initiator to target.
    Sent,
    /// Target to initiator.
    Received,
}

/// A callback that sees every byte sent and received, with the local and
/// peer addresses (used by `iscsi --pcap`). With [`Options::background`]
/// on it may also be called from the background thread (never from two
/// threads at once).
pub type Tap = Box<dyn FnMut(Direction, SocketAddr, SocketAddr, &[u8]) + Send>;

/// Driver options (socket-level only; protocol settings live in
/// [`SessionConfig`]).
pub struct Options {
    /// Timeout for each TCP connect.
    pub connect_timeout: Duration,
    /// Size of each socket read.
    pub read_chunk: usize,
    /// Optional byte tap.
    pub tap: Option<Tap>,
    /// Receive coalescing (`SO_RCVLOWAT`): with many tasks in flight, wake
    /// once several responses are in rather than for each
    /// (`iscsi_proto::initiator::coalesce`). On by default;
    /// [`Coalesce::OFF`] turns it off.
    pub coalesce: Coalesce,
    /// Background driving: once the application has made no call that
    /// waits for input ([`Client::wait`], [`Client::execute`], ...) for
    /// this long, a thread of the client answers the target's NOP-In pings
    /// (RFC 7143 section 11.18), runs the core's timers and writes what the
    /// core queues, until the application calls again. `None` turns it off:
    /// the session then moves only inside calls, and a long-idle
    /// application must call [`Client::idle`] regularly or a target that
    /// pings will drop it. Default: 50 ms.
    pub background: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(5),
            read_chunk: 256 * 1024,
            tap: None,
            coalesce: Coalesce::default(),
            background: Some(Duration::from_millis(50)),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_chunk", &self.read_chunk)
            .field("tap", &self.tap.is_some())
            .field("coalesce", &self.coalesce)
            .field("background", &self.background)
            .finish()
    }
}

/// Errors of the blocking driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection could not be made.
    #[error("{}", connect_message(.addr, .source))]
    Connect {
        /// Where we tried to connect.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
    /// A socket error after connecting.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The session failed (login failure, timeout, protocol violation...).
    /// Every later call reports it again.
    #[error("{0}")]
    Connection(ConnectionError),
    /// The session ended (logged out, by the application or because the
    /// target asked for it, or closed) before the operation finished.
    /// Every later call reports it again; [`Client::take_events`] tells
    /// what happened.
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

fn connect_message(addr: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => format!("connection refused: {addr}"),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("connection timed out: {addr}")
        }
        _ => format!("cannot connect to {addr}: {e}"),
    }
}

struct Conn {
    /// Shared with the background thread's wait for input.
    stream: Arc<TcpStream>,
    local: SocketAddr,
    peer: SocketAddr,
}

/// The session and the driver state: owned by whichever thread drives.
struct Inner {
    session: Session,
    conn: Option<Conn>,
    portal: String,
    opts: Options,
    rx: RecvBuffer,
    /// Read data of tasks in flight, in a slot per task tag.
    reads: TaskMap<ReadData>,
    batch: Vec<Transmit>,
    /// Completed tasks not yet collected, oldest first.
    done: VecDeque<(TaskId, TaskOutcome, Bytes)>,
    /// The read timeout set on the socket (`None`: blocking).
    armed: Option<Duration>,
    /// The receive low-water mark planner.
    low_water: LowWater,
    /// Session events for the application.
    events: VecDeque<Event>,
    /// The session ended: `None` after a logout, else why. Sticky.
    ended: Option<Option<ConnectionError>>,
    /// An error the background thread met, for the application's next call.
    deferred: Option<Error>,
    /// The application's current call waited for input (drove the session).
    drove: bool,
    logged_in: bool,
}

/// Where the state lives between calls, and the background thread's flags.
struct Slot {
    /// `None` while a call (or a background step) holds it.
    inner: Option<Box<Inner>>,
    /// Application calls made so far that drove the session (waited for
    /// input); calls that did not (a refused action, `take_events`...) do
    /// not hold the background thread back.
    calls: u64,
    /// The client is being dropped: the background thread ends.
    stop: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    /// Signalled when the background thread puts the state back, and on
    /// stop.
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // Nothing panics while the lock is held: a poisoned lock still
        // holds a consistent slot.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the state out of the slot, waiting while the background
    /// thread holds it (one step: no blocking wait for input).
    fn take(&self) -> Box<Inner> {
        let mut g = self.lock();
        loop {
            if let Some(inner) = g.inner.take() {
                return inner;
            }
            g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The state out of the slot; put back on drop (also when unwinding, so a
/// panicking [`Tap`] cannot lose it).
struct Lease<'a> {
    shared: &'a Shared,
    inner: Option<Box<Inner>>,
    /// Held by the application (counts as a call) rather than the
    /// background thread (wakes waiting calls).
    app: bool,
}

impl Lease<'_> {
    /// The state (always there until the lease is dropped).
    fn get(&mut self) -> Result<&mut Inner, Error> {
        self.inner
            .as_deref_mut()
            .ok_or_else(|| Error::Unexpected("driver state lost".into()))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut inner = self.inner.take();
        let drove = inner
            .as_deref_mut()
            .is_some_and(|i| std::mem::take(&mut i.drove));
        let mut g = self.shared.lock();
        g.inner = inner;
        if self.app {
            if drove {
                g.calls = g.calls.wrapping_add(1);
            }
        } else {
            drop(g);
            self.shared.cv.notify_all();
        }
    }
}

/// A logged-in (or discovery) session over a blocking TCP socket.
///
/// The application's calls drive the session; between calls a background
/// thread does (see [`Options::background`]). Dropping the client closes
/// the connection without logging out and stops the thread.
pub struct Client {
    shared: Arc<Shared>,
    /// The state, held here from [`Client::session`] until the next call
    /// that takes `&mut self`.
    parked: OnceCell<Box<Inner>>,
    background: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_inner(|i| {
            f.debug_struct("Client")
                .field("portal", &i.portal)
                .field("logged_in", &i.logged_in)
                .field("background", &self.background.is_some())
                .finish()
        })
    }
}

impl Client {
    /// Connects to `portal` (`host:port`), logs in with `config` (following
    /// redirects as the core asks) and returns once the session is in the
    /// Full Feature Phase; then starts the background thread
    /// ([`Options::background`]).
    pub fn connect(portal: &str, config: SessionConfig, opts: Options) -> Result<Client, Error> {
        let now = Instant::now();
        let coalesce = opts.coalesce;
        let background = opts.background;
        let mut random = [0u8; 3];
        iscsi_sys::fill_random(&mut random)?;
        let mut inner = Box::new(Inner {
            session: open_session(config, now, random)?,
            conn: None,
            portal: portal.to_string(),
            opts,
            rx: RecvBuffer::default(),
            reads: TaskMap::new(),
            batch: Vec::with_capacity(BATCH),
            done: VecDeque::new(),
            armed: None,
            low_water: LowWater::new(coalesce),
            events: VecDeque::new(),
            ended: None,
            deferred: None,
            drove: false,
            logged_in: false,
        });
        inner.run_until(|c| c.logged_in)?;
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                inner: Some(inner),
                calls: 0,
                stop: false,
            }),
            cv: Condvar::new(),
        });
        let background = match background {
            Some(quiet) => {
                let s = shared.clone();
                let thread = std::thread::Builder::new()
                    .name("iscsi-std".into())
                    .spawn(move || background_loop(&s, quiet))?;
                Some(thread)
            }
            None => None,
        };
        Ok(Client {
            shared,
            parked: OnceCell::new(),
            background,
        })
    }

    /// Runs a discovery session (SendTargets=All) against `portal` and logs
    /// out. `config` must have no target name.
    pub fn discover(
        portal: &str,
        config: SessionConfig,
        opts: Options,
    ) -> Result<Vec<TargetRecord>, Error> {
        let mut client = Client::connect(portal, config, opts)?;
        let targets = {
            let mut l = client.lease();
            let i = l.get()?;
            i.check()?;
            let task = i.session.send_targets(Instant::now())?;
            match i.wait(task)? {
                (TaskOutcome::Targets(t), _) => t,
                (other, _) => return Err(Error::Unexpected(format!("{other:?}"))),
            }
        };
        client.logout()?;
        Ok(targets)
    }

    /// The state, for one call of the application.
    fn lease(&mut self) -> Lease<'_> {
        let inner = match self.parked.take() {
            Some(i) => i,
            None => self.shared.take(),
        };
        Lease {
            shared: &self.shared,
            inner: Some(inner),
            app: true,
        }
    }

    /// Runs `f` on the state without taking it out of the slot.
    fn with_inner<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        if let Some(i) = self.parked.get() {
            return f(i);
        }
        let mut g = self.shared.lock();
        loop {
            if let Some(i) = g.inner.as_deref() {
                return f(i);
            }
            g = self
                .shared
                .cv
                .wait(g)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The sans-IO session (for its getters).
    ///
    /// The reference borrows the client, so the session is held for the
    /// application from here until the next call that takes `&mut self`:
    /// meanwhile the background thread does not drive it. Prefer
    /// [`Client::with_session`] before leaving the client alone.
    pub fn session(&self) -> &Session {
        &self.parked.get_or_init(|| self.shared.take()).session
    }

    /// Runs `f` on the sans-IO session (for its getters) without holding
    /// it beyond the call.
    pub fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> R {
        self.with_inner(|i| f(&i.session))
    }

    /// Submits a command without waiting; see [`Client::wait`].
    ///
    /// The command is written at once, unless completions are waiting to
    /// be collected: then it is held and written, together with every
    /// command submitted meanwhile, in one vectored write by the next
    /// `submit` made with no completion waiting, the next call that waits
    /// for input ([`Client::wait`], [`Client::wait_any`], [`Client::idle`],
    /// ...), [`Client::flush`], or the background thread once the
    /// application has left the client alone ([`Options::background`]). An
    /// application that keeps commands in flight (collect one, submit one)
    /// thus pays one write per batch of completions instead of one per
    /// command.
    pub fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, Error> {
        self.lease().get()?.submit(cmd)
    }

    /// Writes every PDU the session has ready (commands held by
    /// [`Client::submit`] included).
    pub fn flush(&mut self) -> Result<(), Error> {
        let mut l = self.lease();
        let i = l.get()?;
        i.check()?;
        i.write_pending()
    }

    /// Waits for a task to end; returns its outcome and any read data.
    pub fn wait(&mut self, task: TaskId) -> Result<(TaskOutcome, Bytes), Error> {
        self.lease().get()?.wait(task)
    }

    /// Waits for whichever submitted task ends first (in completion order).
    pub fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), Error> {
        let mut l = self.lease();
        let i = l.get()?;
        i.take_deferred()?;
        i.run_until(|c| !c.done.is_empty())?;
        let done = i
            .done
            .pop_front()
            .ok_or_else(|| Error::Unexpected("no task".into()))?;
        Ok(done)
    }

    /// Runs one SCSI command to completion.
    pub fn execute(&mut self, cmd: ScsiCommand) -> Result<Completed, Error> {
        let mut l = self.lease();
        let i = l.get()?;
        let task = i.submit(cmd)?;
        match i.wait(task)? {
            (TaskOutcome::Scsi(result), data) => Ok(Completed { result, data }),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Runs a task management function and waits for its response.
    pub fn task_management(
        &mut self,
        lun: u64,
        function: TmfFunction,
    ) -> Result<TmfResponse, Error> {
        let mut l = self.lease();
        let i = l.get()?;
        i.check()?;
        let task = i.session.task_management(Instant::now(), lun, function)?;
        i.tmf_result(task)
    }

    /// Aborts a task (ABORT TASK) and waits for the response.
    pub fn abort(&mut self, task: TaskId) -> Result<TmfResponse, Error> {
        let mut l = self.lease();
        let i = l.get()?;
        i.check()?;
        let tmf = i.session.abort_task(Instant::now(), task)?;
        i.tmf_result(tmf)
    }

    /// Sends a NOP-Out ping and waits for the echo.
    pub fn ping(&mut self, data: Bytes) -> Result<Bytes, Error> {
        let mut l = self.lease();
        let i = l.get()?;
        i.check()?;
        let task = i.session.nop_ping(Instant::now(), data)?;
        i.write_pending()?;
        match i.wait(task)? {
            (TaskOutcome::Pong(d), _) => Ok(d),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Takes every session event received so far, oldest first: every
    /// [`Event`] of the core except those the driver consumes itself
    /// (`Connect`, which it carries out, and `DataIn`/`Complete`, which
    /// become the results of [`Client::wait`] and friends). That includes
    /// `LoggedIn`, `Recovering` (a connection failed and session recovery
    /// began), `Reinstated` (recovery succeeded: the target sees a new
    /// session and will report a UNIT ATTENTION), `AsyncEvent`, `Rejected`
    /// and `Closed`, whether they arrived during a call or while the
    /// background thread drove the session.
    pub fn take_events(&mut self) -> Vec<Event> {
        match self.lease().get() {
            Ok(i) => i.events.drain(..).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The same as [`Client::take_events`] (its former name).
    pub fn take_async_events(&mut self) -> Vec<Event> {
        self.take_events()
    }

    /// Logs out (closing the session after outstanding tasks finish) and
    /// closes the connection.
    pub fn logout(mut self) -> Result<LogoutResult, Error> {
        let mut l = self.lease();
        let i = l.get()?;
        i.check()?;
        let task = i.session.logout(Instant::now(), LogoutMode::WaitForTasks)?;
        let result = match i.wait(task)? {
            (TaskOutcome::LoggedOut(r), _) => r,
            (TaskOutcome::Failed(e), _) => return Err(Error::Task(e)),
            (other, _) => return Err(Error::Unexpected(format!("{other:?}"))),
        };
        i.close_conn();
        Ok(result)
    }

    /// Services the connection on the application's thread for about
    /// `duration` (at least one wait for input): answers the target's
    /// NOP-In pings (RFC 7143 section 11.18: a NOP-In with a valid TTT
    /// "MUST" be answered), sends keepalive pings and runs the core's
    /// timers. With [`Options::background`] on (the default) the
    /// background thread does this on its own between calls; with it off,
    /// a long-idle application should call this (or [`Client::poll_idle`])
    /// regularly, e.g. every few seconds.
    pub fn idle(&mut self, duration: Duration) -> Result<(), Error> {
        let mut l = self.lease();
        let i = l.get()?;
        i.take_deferred()?;
        let until = Instant::now() + duration;
        i.run(|_| false, Some(until))
    }

    /// Services whatever input is already waiting (blocking for at most
    /// about a millisecond), then returns; see [`Client::idle`].
    pub fn poll_idle(&mut self) -> Result<(), Error> {
        self.idle(Duration::ZERO)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cv.notify_all();
        // Close the connection as dropping its socket always did; this also
        // ends a background wait for input on it.
        let mut inner = match self.parked.take() {
            Some(i) => i,
            None => self.shared.take(),
        };
        inner.close_conn();
        drop(inner);
        if let Some(t) = self.background.take() {
            let _ = t.join();
        }
    }
}

/// What the background thread waits for after a step.
enum Wait {
    /// Input on this socket, or the deadline.
    Input(Arc<TcpStream>, Option<Instant>),
    /// A deadline (no connection, or no way to wait on the socket).
    Timer(Option<Instant>),
    /// The session is over: nothing more to drive.
    Ended,
}

/// The background thread: drives the session while the application makes
/// no call (see [`Options::background`]).
fn background_loop(shared: &Shared, quiet: Duration) {
    let mut seen: Option<u64> = None;
    let mut g = shared.lock();
    loop {
        if g.stop {
            return;
        }
        // Drive only once a whole quiet period passed with no call that
        // waited for input, and none in progress.
        let idle = g.inner.is_some() && seen == Some(g.calls);
        if !idle {
            seen = Some(g.calls);
            g = shared
                .cv
                .wait_timeout(g, quiet)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        }
        let inner = g.inner.take();
        drop(g);
        let mut lease = Lease {
            shared,
            inner,
            app: false,
        };
        let wait = match lease.get() {
            Ok(i) => i.background_step(),
            Err(_) => Wait::Ended,
        };
        drop(lease);
        match wait {
            Wait::Ended => return,
            Wait::Input(stream, until) => {
                let t = until.map_or(BACKGROUND_MAX_WAIT, |u| {
                    u.saturating_duration_since(Instant::now())
                        .min(BACKGROUND_MAX_WAIT)
                });
                if !t.is_zero() && iscsi_sys::wait_readable(&*stream, t).is_err() {
                    // No way to wait on the socket here: look again after
                    // a quiet period.
                    std::thread::sleep(quiet.min(t));
                }
                g = shared.lock();
            }
            Wait::Timer(until) => {
                let t = until.map_or(BACKGROUND_MAX_WAIT, |u| {
                    u.saturating_duration_since(Instant::now())
                        .min(BACKGROUND_MAX_WAIT)
                });
                g = shared.lock();
                if !t.is_zero() && !g.stop {
                    g = shared
                        .cv
                        .wait_timeout(g, t)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

impl Inner {
    /// The session's end or an error of the background thread, before an
    /// action.
    fn check(&mut self) -> Result<(), Error> {
        self.take_deferred()?;
        match &self.ended {
            None => Ok(()),
            Some(None) => Err(Error::Closed),
            Some(Some(e)) => Err(Error::Connection(e.clone())),
        }
    }

    /// Reports an error the background thread met, if any.
    fn take_deferred(&mut self) -> Result<(), Error> {
        match self.deferred.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, Error> {
        self.check()?;
        if self.session.state() == SessionState::LoggingOut {
            // The logout may be over already, its answer waiting in the
            // socket: take what has arrived, then report the session as
            // it now is (`Closed` once ended).
            self.read_ready_input();
            self.pump()?;
            self.check()?;
        }
        let task = self.session.submit(Instant::now(), cmd)?;
        if self.done.is_empty() {
            self.write_pending()?;
        }
        Ok(task)
    }

    fn wait(&mut self, task: TaskId) -> Result<(TaskOutcome, Bytes), Error> {
        self.take_deferred()?;
        self.run_until(|c| c.done.iter().any(|d| d.0 == task))?;
        let i = self
            .done
            .iter()
            .position(|d| d.0 == task)
            .ok_or_else(|| Error::Unexpected("task vanished".into()))?;
        let (_, outcome, data) = self
            .done
            .remove(i)
            .ok_or_else(|| Error::Unexpected("task vanished".into()))?;
        Ok((outcome, data))
    }

    fn tmf_result(&mut self, task: TaskId) -> Result<TmfResponse, Error> {
        self.write_pending()?;
        match self.wait(task)? {
            (TaskOutcome::TaskManagement(r), _) => Ok(r),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    fn close_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }

    /// Drives the session until `done(self)` holds or the session closes.
    fn run_until(&mut self, done: impl FnMut(&Inner) -> bool) -> Result<(), Error> {
        self.run(done, None)
    }

    /// Drives the session until `done(self)` holds, the session closes or
    /// (after at least one wait for input) `until` passes.
    fn run(
        &mut self,
        mut done: impl FnMut(&Inner) -> bool,
        until: Option<Instant>,
    ) -> Result<(), Error> {
        let mut waited = false;
        loop {
            self.drain_events()?;
            if done(self) {
                return Ok(());
            }
            // Everything queued goes out before blocking on input.
            self.write_pending()?;
            self.drain_events()?;
            // An event (e.g. Connect) may have queued PDUs: send them before
            // blocking on input.
            if self.conn.is_some() && self.session.has_transmit() {
                continue;
            }
            if done(self) {
                return Ok(());
            }
            self.check()?;
            if waited && until.is_some_and(|u| Instant::now() >= u) {
                return Ok(());
            }
            self.wait_for_input(until)?;
            waited = true;
        }
    }

    /// Writes and handles events until nothing moves (no waiting).
    fn pump(&mut self) -> Result<(), Error> {
        loop {
            self.drain_events()?;
            self.write_pending()?;
            self.drain_events()?;
            if self.conn.is_none() || !self.session.has_transmit() {
                return Ok(());
            }
        }
    }

    /// Feeds the session whatever input is already in the socket, without
    /// waiting.
    fn read_ready_input(&mut self) {
        while let Some(conn) = self.conn.as_ref() {
            let stream = conn.stream.clone();
            if !matches!(iscsi_sys::wait_readable(&*stream, Duration::ZERO), Ok(true)) {
                return;
            }
            self.read_input();
            if self.ended.is_some() {
                return;
            }
        }
    }

    /// One step of the background thread: everything that can be done
    /// without waiting (timers due, input already in, output, events);
    /// then what to wait for.
    fn background_step(&mut self) -> Wait {
        for _ in 0..BACKGROUND_ROUNDS {
            if let Err(e) = self.pump() {
                tracing::debug!(target: "iscsi::driver", driver = "std", error = %e, "background step failed");
                if self.deferred.is_none() {
                    self.deferred = Some(e);
                }
            }
            if self.ended.is_some() {
                return Wait::Ended;
            }
            let now = Instant::now();
            let core = self.session.poll_timeout();
            if core.is_some_and(|d| d <= now) {
                self.session.handle_timeout(now);
                continue;
            }
            let Some(conn) = self.conn.as_ref() else {
                return Wait::Timer(core);
            };
            let stream = conn.stream.clone();
            match iscsi_sys::wait_readable(&*stream, Duration::ZERO) {
                Ok(true) => {
                    self.read_input();
                    continue;
                }
                Ok(false) => {}
                Err(_) => return Wait::Timer(core),
            }
            if self.low_water.deadline().is_some_and(|d| d <= now) {
                // The wait for the mark ended with too little in: the
                // planner decides the next mark.
                if let Some(mark) = self.low_water.timeout() {
                    self.low_water
                        .apply(mark, |m| iscsi_sys::set_recv_low_water(&*stream, m).is_ok());
                }
                continue;
            }
            let buffered = self.rx.filled().len();
            if let Some(mark) = self.low_water.plan(&self.session, buffered, false, now) {
                self.low_water
                    .apply(mark, |m| iscsi_sys::set_recv_low_water(&*stream, m).is_ok());
            }
            return Wait::Input(stream, self.low_water.earliest(core));
        }
        // Busy: look again at once (after checking for an application call).
        Wait::Timer(Some(Instant::now()))
    }

    /// Writes every pending PDU, batched into vectored writes.
    // Indexing is in bounds: a batch holds at most BATCH transmits of at
    // most 3 parts each, and `parts` has 3 * BATCH slots.
    #[allow(clippy::indexing_slicing)]
    fn write_pending(&mut self) -> Result<(), Error> {
        let Some(conn) = self.conn.as_ref() else {
            return Ok(());
        };
        if !self.session.has_transmit() {
            return Ok(());
        }
        let now = Instant::now();
        // The batch buffer is reused across calls and the part list lives on
        // the stack: sending a PDU allocates nothing.
        let mut batch = std::mem::take(&mut self.batch);
        let result = loop {
            batch.clear();
            while batch.len() < BATCH {
                match self.session.poll_transmit(now) {
                    Some(t) => batch.push(t),
                    None => break,
                }
            }
            if batch.is_empty() {
                break Ok(());
            }
            let mut parts: [&[u8]; 3 * BATCH] = [&[]; 3 * BATCH];
            let mut n = 0;
            for p in batch
                .iter()
                .flat_map(|t| t.parts_from(0))
                .filter(|p| !p.is_empty())
            {
                parts[n] = p;
                n += 1;
            }
            if let Some(tap) = self.opts.tap.as_mut() {
                for p in &parts[..n] {
                    tap(Direction::Sent, conn.local, conn.peer, p);
                }
            }
            if let Err(e) = write_all_vectored(&conn.stream, &parts[..n]) {
                break Err(e);
            }
        };
        batch.clear();
        self.batch = batch;
        if let Err(e) = result {
            self.connection_lost();
            return match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Ok(()),
                _ => Err(Error::Io(e)),
            };
        }
        Ok(())
    }

    fn connection_lost(&mut self) {
        tracing::debug!(target: "iscsi::driver", driver = "std", "connection lost");
        self.close_conn();
        self.rx.clear();
        self.armed = None;
        self.low_water.reset();
        self.session.handle_closed(Instant::now());
    }

    fn drain_events(&mut self) -> Result<(), Error> {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Connect { portal } => self.open(portal)?,
                Event::DataIn { task, offset, data } => match self.reads.get_mut(task) {
                    Some(r) => r.push(offset, data),
                    None => {
                        let mut r = ReadData::default();
                        r.push(offset, data);
                        self.reads.insert(task, r);
                    }
                },
                Event::Complete { task, outcome } => {
                    let data = self
                        .reads
                        .remove(task)
                        .map(ReadData::into_bytes)
                        .unwrap_or_default();
                    self.done.push_back((task, outcome, data));
                }
                other => {
                    match &other {
                        Event::LoggedIn { .. } | Event::Reinstated { .. } => self.logged_in = true,
                        Event::Closed(reason) => {
                            self.close_conn();
                            self.ended = Some(reason.clone());
                        }
                        Event::Recovering { .. } => {
                            self.logged_in = false;
                            self.close_conn();
                        }
                        _ => {}
                    }
                    self.events.push_back(other);
                }
            }
        }
        Ok(())
    }

    /// Opens a TCP connection where the core asked and tells the core.
    fn open(&mut self, portal: Option<NetworkPortal>) -> Result<(), Error> {
        self.close_conn();
        self.rx.clear();
        self.armed = None;
        self.low_water.reset();
        let addr = match &portal {
            Some(p) if p.host.contains(':') => format!("[{}]:{}", p.host, p.port),
            Some(p) => format!("{}:{}", p.host, p.port),
            None => self.portal.clone(),
        };
        tracing::debug!(target: "iscsi::driver", driver = "std", %addr, "connecting");
        let stream = connect(&addr, self.opts.connect_timeout)?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let peer = stream.peer_addr()?;
        self.conn = Some(Conn {
            stream: Arc::new(stream),
            local,
            peer,
        });
        self.session.handle_connected(Instant::now());
        Ok(())
    }

    /// Reads once from the socket (blocking up to its read timeout) and
    /// hands what came to the core; `false` if nothing came.
    fn read_input(&mut self) -> bool {
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        let max_pdu = self.session.max_recv_pdu_len();
        let buf = self.rx.spare(max_pdu, self.opts.read_chunk);
        let r = (&*conn.stream).read(buf);
        let now = Instant::now();
        match r {
            Ok(0) => self.connection_lost(),
            Ok(n) => {
                self.low_water.on_input(n, now);
                let got = self.rx.commit(n);
                if let Some(tap) = self.opts.tap.as_mut() {
                    tap(Direction::Received, conn.local, conn.peer, got);
                }
                self.session.handle_input(now, self.rx.filled());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                return false;
            }
            Err(_) => self.connection_lost(),
        }
        true
    }

    /// Blocks until bytes arrive or the core's next deadline (or `until`)
    /// passes.
    fn wait_for_input(&mut self, until: Option<Instant>) -> Result<(), Error> {
        self.drove = true;
        let now = Instant::now();
        let core_deadline = self.session.poll_timeout();
        if let Some(d) = core_deadline {
            if d <= now {
                self.session.handle_timeout(now);
                return Ok(());
            }
        }
        let deadline = match (core_deadline, until) {
            (Some(d), Some(u)) => Some(d.min(u)),
            (d, u) => d.or(u),
        };
        let Some(conn) = self.conn.as_ref() else {
            // No connection and nothing scheduled: the core is waiting for
            // a timer (e.g. Time2Wait before a reconnect).
            match deadline {
                Some(d) => {
                    std::thread::sleep(d.saturating_duration_since(now));
                    let now = Instant::now();
                    if core_deadline.is_some_and(|c| c <= now) {
                        self.session.handle_timeout(now);
                    }
                    return Ok(());
                }
                None => return Err(Error::Closed),
            }
        };
        let stream = conn.stream.clone();
        let timeout = deadline.map(|d| {
            d.saturating_duration_since(now)
                .max(Duration::from_millis(1))
        });
        // SO_RCVTIMEO applies afresh to every read: keep the one set while
        // it is within an eighth (at least a millisecond) of the wait we
        // need, rather than a system call before every read.
        let keep = match (self.armed, timeout) {
            (None, None) => true,
            (Some(a), Some(t)) => a.abs_diff(t) <= (t / 8).max(Duration::from_millis(1)),
            _ => false,
        };
        if !keep {
            stream.set_read_timeout(timeout)?;
            self.armed = timeout;
        }
        // Receive coalescing: with a mark above 1 the kernel holds back
        // readability until that many bytes are in; the wait for it ends by
        // the planner's deadline, then the mark drops to 1 if nothing came.
        let buffered = self.rx.filled().len();
        if let Some(mark) = self.low_water.plan(&self.session, buffered, false, now) {
            self.low_water
                .apply(mark, |m| iscsi_sys::set_recv_low_water(&*stream, m).is_ok());
        }
        if let Some(d) = self.low_water.deadline() {
            let wait = d.min(deadline.unwrap_or(d)).saturating_duration_since(now);
            match iscsi_sys::wait_readable(&*stream, wait) {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(mark) = self.low_water.timeout() {
                        self.low_water
                            .apply(mark, |m| iscsi_sys::set_recv_low_water(&*stream, m).is_ok());
                    }
                    if core_deadline.is_some_and(|c| c <= Instant::now()) {
                        self.session.handle_timeout(Instant::now());
                        return Ok(());
                    }
                }
                Err(_) => {
                    self.low_water
                        .turn_off(|m| iscsi_sys::set_recv_low_water(&*stream, m).is_ok());
                }
            }
        }
        if !self.read_input() {
            let now = Instant::now();
            if core_deadline.is_some_and(|c| c <= now) {
                self.session.handle_timeout(now);
            }
        }
        Ok(())
    }
}

fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|source| Error::Connect {
            addr: addr.to_string(),
            source,
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(Error::Connect {
        addr: addr.to_string(),
        source: last,
    })
}

/// `write_all` for a list of buffers, with `write_vectored`.
// Indexing is in bounds: `idx < parts.len()` is the loop condition, `off`
// never exceeds `parts[idx].len()` (it only grows by less than what is
// left of that part), and `count <= slices.len()`.
#[allow(clippy::indexing_slicing)]
fn write_all_vectored(mut stream: &TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut idx = 0;
    let mut off = 0;
    while idx < parts.len() {
        // At most 3 * BATCH parts: the IoSlices fit on the stack.
        let mut slices = [IoSlice::new(&[]); 3 * BATCH];
        let count = (parts.len() - idx).min(slices.len());
        slices[0] = IoSlice::new(&parts[idx][off..]);
        for (slot, p) in slices[1..count].iter_mut().zip(&parts[idx + 1..]) {
            *slot = IoSlice::new(p);
        }
        let mut n = match stream.write_vectored(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 && idx < parts.len() {
            let left = parts[idx].len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}
