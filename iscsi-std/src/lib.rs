//! Blocking driver for the `iscsi-proto` sans-IO core: `std::net` sockets and
//! `std::time` clocks around [`iscsi_proto::initiator::Session`], and no
//! protocol logic. Everything the protocol decides (what to send, when a
//! timer fires, where to reconnect) comes from the core's `poll_*` calls.
//!
//! `read`, `write` and `read_capacity` retry once the UNIT ATTENTION a
//! target reports on the first command of every session (tgtd, LIO:
//! SAM-5 5.14; see `iscsi_proto::scsi::helpers`); `execute` and `submit`
//! return every status as it came.
//!
//! ```no_run
//! use iscsi_proto::initiator::{ScsiCommand, SessionConfig};
//! use iscsi_proto::scsi::cdb::inquiry;
//! use iscsi_std::{Client, Lun, Options};
//!
//! let config = SessionConfig::new("iqn.2026-11.example:host").with_target("iqn.2026-11.test:disk1");
//! let mut client = Client::connect("127.0.0.1:3260", config, Options::default())?;
//! // INQUIRY is performed even with a UNIT ATTENTION pending (SAM-5 5.14).
//! let done = client.execute(ScsiCommand::read(Lun::ZERO, inquiry(96), 96))?;
//! println!("{} bytes of INQUIRY data", done.data.len());
//! for event in client.take_events() {
//!     println!("session event: {event:?}");
//! }
//! client.logout()?;
//! # Ok::<(), iscsi_std::Error>(())
//! ```
//!
//! The drive loop is the one the core documents: after every input or action,
//! carry out the core's connection requests and write everything it offers
//! (`DriverCore::write_with`), then block on the socket until input arrives
//! or the core's deadline (`DriverCore::poll_timeout`) passes.
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
//! The session and everything but the socket, the thread and the waiting
//! live in a [`iscsi_proto::driver::DriverCore`], shared with
//! the other drivers; [`Options::tap`] is its byte tap.
//!
//! Errors: [`Error`] is the drivers' shared [`iscsi_proto::driver::Error`].
//! A target that refuses us is [`Error::Connect`] (TCP) or [`Error::Login`]
//! (the login failed); an established session that ends is
//! [`Error::Closed`] (`None` after a logout), from every task in flight at
//! that moment ([`Client::wait`]) and every later call. With session
//! recovery configured (`SessionConfig::recovery`) a lost connection is
//! recovered instead: the commands that may run twice are reissued, and
//! one that may not fails with `Error::Task(TaskError::OutcomeUnknown)`
//! (see the error module for the whole contract).
//!
//! Cost per I/O: commands submitted while completions wait to be collected
//! go out together in one vectored write (see [`Client::submit`]); one
//! socket read takes every PDU that has arrived, into a receive buffer
//! that is zero-filled once per region rather than before every read;
//! completions and read data are kept in a queue and a slot per task tag,
//! with no hashing.
#![forbid(unsafe_code)]
// Bad input never panics: no unwrap, expect, panic or indexing outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
#![warn(missing_docs)]

mod links;

use std::cell::OnceCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi_proto::driver::{helpers, reply, ConnRequest, DriverCore, Read as Got, Written};
pub use iscsi_proto::driver::{Coalesce, Completed, Direction, Error, Reply, Tap};
use iscsi_proto::initiator::{
    Action, Event, LogoutMode, LogoutResult, ScsiCommand, Session, SessionConfig, SessionState,
    TargetRecord, TaskId, TaskOutcome,
};
pub use iscsi_proto::scsi::{Capacity, Lun};
pub use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};

/// Rounds of input, timers and output one background step runs before it
/// looks again whether the application wants the session.
const BACKGROUND_ROUNDS: usize = 64;
/// The longest the background thread waits without looking again.
const BACKGROUND_MAX_WAIT: Duration = Duration::from_secs(1);

/// Driver options (socket-level only; protocol settings live in
/// [`SessionConfig`]). Built from [`Options::default`] (or
/// [`Options::new`]) with the `with_*` methods; new fields may be added.
///
/// ```
/// use std::time::Duration;
/// use iscsi_std::{Coalesce, Options};
///
/// let opts = Options::new()
///     .with_connect_timeout(Duration::from_secs(2))
///     .with_coalesce(Coalesce::OFF)
///     .with_background(None);
/// assert_eq!(opts.connect_timeout, Duration::from_secs(2));
/// ```
#[non_exhaustive]
pub struct Options {
    /// Timeout for each TCP connect.
    pub connect_timeout: Duration,
    /// The largest socket read: reads are sized by what is in flight (a
    /// few KiB while idle) up to this (default
    /// [`iscsi_proto::driver::MAX_READ`]), which bounds the receive memory
    /// of a busy session.
    pub max_read: usize,
    /// Optional byte tap (see [`Tap`]). With [`Options::background`] on it
    /// may also be called from the background thread (never from two
    /// threads at once).
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
            max_read: iscsi_proto::driver::MAX_READ,
            tap: None,
            coalesce: Coalesce::default(),
            background: Some(Duration::from_millis(50)),
        }
    }
}

impl Options {
    /// The defaults (the same as [`Options::default`]).
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets [`Options::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Options {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`Options::max_read`] (at least 1).
    pub fn with_max_read(mut self, bytes: usize) -> Options {
        self.max_read = bytes.max(1);
        self
    }

    /// Installs a byte tap ([`Options::tap`]).
    pub fn with_tap(mut self, tap: Tap) -> Options {
        self.tap = Some(tap);
        self
    }

    /// Sets receive coalescing ([`Options::coalesce`]).
    pub fn with_coalesce(mut self, coalesce: Coalesce) -> Options {
        self.coalesce = coalesce;
        self
    }

    /// Sets background driving ([`Options::background`]; `None` turns it
    /// off).
    pub fn with_background(mut self, quiet: Option<Duration>) -> Options {
        self.background = quiet;
        self
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("connect_timeout", &self.connect_timeout)
            .field("max_read", &self.max_read)
            .field("tap", &self.tap.is_some())
            .field("coalesce", &self.coalesce)
            .field("background", &self.background)
            .finish()
    }
}

/// The session and the driver state: owned by whichever thread drives.
#[derive(Debug)]
struct Inner {
    core: DriverCore,
    /// The connection, shared with the background thread's wait for input.
    conn: Option<Arc<TcpStream>>,
    /// The sockets of added connections (MC/S).
    links: links::Links,
    connect_timeout: Duration,
    /// The read timeout set on the socket (`None`: blocking).
    armed: Option<Duration>,
    /// An error the background thread met, for the application's next call.
    deferred: Option<Error>,
    /// The application's current call waited for input (drove the session).
    drove: bool,
}

/// Where the state lives between calls, and the background thread's flags.
#[derive(Debug)]
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

#[derive(Debug)]
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
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    /// The state, held here from [`Client::session`] until the next call
    /// that takes `&mut self`.
    parked: OnceCell<Box<Inner>>,
    background: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects to `portal` (`host:port`), logs in with `config` (following
    /// redirects as the core asks) and returns once the session is in the
    /// Full Feature Phase; then starts the background thread
    /// ([`Options::background`]).
    pub fn connect(portal: &str, config: SessionConfig, opts: Options) -> Result<Client, Error> {
        let mut random = [0u8; 3];
        iscsi_sys::fill_random(&mut random)?;
        let mut core = DriverCore::new(portal, config, Instant::now(), random)?;
        core.set_tap(opts.tap);
        core.set_max_read(opts.max_read);
        core.set_coalesce(opts.coalesce);
        let mut inner = Box::new(Inner {
            core,
            conn: None,
            links: links::Links::default(),
            connect_timeout: opts.connect_timeout,
            armed: None,
            deferred: None,
            drove: false,
        });
        inner.run_until(|c| c.core.is_logged_in())?;
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                inner: Some(inner),
                calls: 0,
                stop: false,
            }),
            cv: Condvar::new(),
        });
        let background = match opts.background {
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
        reply::targets(client.run_action(Action::SendTargets))
            .and_then(|t| client.logout().map(|_| t))
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
        self.parked
            .get_or_init(|| self.shared.take())
            .core
            .session()
    }

    /// Runs `f` on the sans-IO session (for its getters) without holding
    /// it beyond the call.
    pub fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> R {
        self.with_inner(|i| f(i.core.session()))
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
        i.pump()
    }

    /// Waits for a task to end; returns its outcome and any read data.
    /// A task in flight when the session ends reports the end
    /// ([`Error::Closed`]).
    pub fn wait(&mut self, task: TaskId) -> Reply {
        self.lease().get()?.wait(task)
    }

    /// Waits for whichever submitted task ends first (in completion order).
    pub fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), Error> {
        let mut l = self.lease();
        let i = l.get()?;
        i.take_deferred()?;
        let mut got = None;
        i.run_until(|c| {
            got = c.core.take_any_completed();
            got.is_some()
        })?;
        let (task, reply) = got.ok_or(Error::Closed(None))?;
        reply.map(|(o, d)| (task, o, d))
    }

    /// Starts `action`, writes it and waits for its reply.
    fn run_action(&mut self, action: Action) -> Reply {
        let mut l = self.lease();
        let i = l.get()?;
        i.check()?;
        let task = i.core.start(Instant::now(), action, true)?;
        i.pump()?;
        i.wait(task)
    }

    /// Runs one SCSI command to completion.
    pub fn execute(&mut self, cmd: ScsiCommand) -> Result<Completed, Error> {
        let mut l = self.lease();
        let i = l.get()?;
        let task = i.submit(cmd)?;
        reply::scsi(i.wait(task))
    }

    /// Runs a task management function on `lun` and waits for its response.
    pub fn task_management(
        &mut self,
        lun: Lun,
        function: TmfFunction,
    ) -> Result<TmfResponse, Error> {
        let lun = lun.to_u64();
        reply::task_management(self.run_action(Action::TaskManagement { lun, function }))
    }

    /// Runs `cmd` and requires GOOD status, sending it again once after a
    /// UNIT ATTENTION (the one a target reports on the first command of
    /// every session: tgtd, LIO; see [`iscsi_proto::scsi::helpers`]).
    pub fn execute_good(&mut self, cmd: ScsiCommand) -> Result<Completed, Error> {
        helpers::execute_good(|c| self.execute(c), cmd)
    }

    /// READ(16) of `blocks` blocks of `block_len` bytes at `lba` of `lun`
    /// ([`Client::execute_good`]).
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
    /// ([`Client::execute_good`]).
    pub fn write(&mut self, lun: Lun, lba: u64, data: Bytes, block_len: u32) -> Result<(), Error> {
        let cmd = helpers::write_command(lun, lba, data, block_len)?;
        self.execute_good(cmd).map(drop)
    }

    /// The capacity and block size of `lun`: READ CAPACITY (16), or (10)
    /// where (16) is not supported.
    pub fn read_capacity(&mut self, lun: Lun) -> Result<Capacity, Error> {
        helpers::read_capacity(|c| self.execute(c), lun)
    }

    /// Aborts a task (ABORT TASK) and waits for the response.
    pub fn abort(&mut self, task: TaskId) -> Result<TmfResponse, Error> {
        reply::task_management(self.run_action(Action::Abort(task)))
    }

    /// Sends a NOP-Out ping and waits for the echo.
    pub fn ping(&mut self, data: Bytes) -> Result<Bytes, Error> {
        reply::pong(self.run_action(Action::Ping(data)))
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
            Ok(i) => std::iter::from_fn(|| i.core.poll_event()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Logs out (closing the session after outstanding tasks finish) and
    /// closes the connection.
    pub fn logout(mut self) -> Result<LogoutResult, Error> {
        let result = reply::logged_out(self.run_action(Action::Logout(LogoutMode::WaitForTasks)));
        if let Ok(i) = self.lease().get() {
            i.close_conn();
            i.close_links();
        }
        result
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
        inner.close_links();
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

/// How long the background thread waits for `until`.
fn background_wait(until: Option<Instant>) -> Duration {
    until.map_or(BACKGROUND_MAX_WAIT, |u| {
        u.saturating_duration_since(Instant::now())
            .min(BACKGROUND_MAX_WAIT)
    })
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
                let t = background_wait(until);
                if !t.is_zero() && iscsi_sys::wait_readable(&*stream, t).is_err() {
                    // No way to wait on the socket here: look again after
                    // a quiet period.
                    std::thread::sleep(quiet.min(t));
                }
                g = shared.lock();
            }
            Wait::Timer(until) => {
                let t = background_wait(until);
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
        self.core.check()
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
        if self.core.session().state() == SessionState::LoggingOut {
            // The logout may be over already, its answer waiting in the
            // socket: take what has arrived, then report the session as
            // it now is (`Closed` once ended).
            self.read_ready_input();
            self.pump()?;
            self.check()?;
        }
        let task = self.core.start(Instant::now(), Action::Scsi(cmd), true)?;
        if !self.core.has_completed() {
            self.pump()?;
        }
        Ok(task)
    }

    fn wait(&mut self, task: TaskId) -> Reply {
        self.take_deferred()?;
        let mut got = None;
        self.run_until(|c| {
            got = c.core.take_completed(task);
            got.is_some()
        })?;
        got.ok_or_else(|| Error::Unexpected("task vanished".into()))?
    }

    fn close_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.armed = None;
    }

    /// Drives the session until `done(self)` holds or the session closes.
    fn run_until(&mut self, done: impl FnMut(&mut Inner) -> bool) -> Result<(), Error> {
        self.run(done, None)
    }

    /// Drives the session until `done(self)` holds, the session closes or
    /// (after at least one wait for input) `until` passes.
    fn run(
        &mut self,
        mut done: impl FnMut(&mut Inner) -> bool,
        until: Option<Instant>,
    ) -> Result<(), Error> {
        let mut waited = false;
        loop {
            // A result already in needs no write: commands `submit` held
            // stay held and go out together later (one write per batch).
            if done(self) {
                return Ok(());
            }
            // Everything queued goes out before blocking on input.
            self.pump()?;
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

    /// Carries out connection requests and writes until nothing moves (no
    /// waiting for input).
    fn pump(&mut self) -> Result<(), Error> {
        loop {
            while let Some(r) = self.core.poll_conn() {
                self.close_conn();
                if let ConnRequest::Open(addr) = r {
                    self.open(&addr);
                }
            }
            self.write_pending()?;
            self.link_requests();
            self.write_links();
            let stuck = self.conn.is_none() || !self.core.has_output();
            if stuck && !self.core.has_conn_request() && !self.core.has_link_request() {
                return Ok(());
            }
        }
    }

    /// Feeds the session whatever input is already in the socket, without
    /// waiting.
    fn read_ready_input(&mut self) {
        while let Some(stream) = self.conn.clone() {
            if !matches!(iscsi_sys::wait_readable(&*stream, Duration::ZERO), Ok(true)) {
                return;
            }
            self.read_input();
            if self.core.is_closed() {
                return;
            }
        }
    }

    /// Sets the socket's new receive low-water mark, if any (coalescing
    /// stops if that fails).
    fn apply_low_water(&mut self, stream: &TcpStream) {
        self.core
            .apply_low_water(|m| iscsi_sys::set_recv_low_water(stream, m).is_ok());
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
            if self.core.is_closed() {
                return Wait::Ended;
            }
            let now = Instant::now();
            if self.core.handle_timeout(now) {
                continue;
            }
            let core = self.core.session_timeout();
            if !self.links.is_empty() {
                // Several sockets: look at each, then again a slice later.
                if self.read_ready_links() {
                    continue;
                }
                let soon = now + links::SLICE;
                let at = core.map_or(soon, |c| c.min(soon));
                match self.conn.clone() {
                    Some(stream) => {
                        if matches!(iscsi_sys::wait_readable(&*stream, Duration::ZERO), Ok(true)) {
                            self.read_input();
                            continue;
                        }
                        return Wait::Input(stream, Some(at));
                    }
                    None => return Wait::Timer(Some(at)),
                }
            }
            let Some(stream) = self.conn.clone() else {
                return Wait::Timer(core);
            };
            match iscsi_sys::wait_readable(&*stream, Duration::ZERO) {
                Ok(true) => {
                    self.read_input();
                    continue;
                }
                Ok(false) => {}
                Err(_) => return Wait::Timer(core),
            }
            if self.core.low_water_timeout(now) {
                // The wait for the mark ended with too little in: the
                // planner decided the next mark.
                self.apply_low_water(&stream);
                continue;
            }
            self.core.plan_low_water(now);
            self.apply_low_water(&stream);
            return Wait::Input(stream, self.core.poll_timeout());
        }
        // Busy: look again at once (after checking for an application call).
        Wait::Timer(Some(Instant::now()))
    }

    /// Writes every pending PDU, batched into vectored writes.
    fn write_pending(&mut self) -> Result<(), Error> {
        let Some(stream) = self.conn.clone() else {
            return Ok(());
        };
        let w = self
            .core
            .write_with(Instant::now(), |s| (&*stream).write_vectored(s));
        if let Written::Lost(e) = w {
            self.close_conn();
            let gone = [ErrorKind::BrokenPipe, ErrorKind::ConnectionReset];
            if let Some(e) = e.filter(|e| !gone.contains(&e.kind())) {
                return Err(Error::Io(e));
            }
        }
        Ok(())
    }

    /// Opens a TCP connection where the core asked and tells the core.
    fn open(&mut self, addr: &str) {
        let stream = connect(addr, self.connect_timeout).and_then(|s| {
            s.set_nodelay(true)?;
            Ok((s.local_addr()?, s.peer_addr()?, s))
        });
        match stream {
            Ok((local, peer, s)) => {
                self.conn = Some(Arc::new(s));
                self.core.connected(Instant::now(), local, peer);
            }
            Err(e) => self.core.connect_failed(Instant::now(), e),
        }
    }

    /// Reads once from the socket (blocking up to its read timeout) and
    /// hands what came to the core; `false` if nothing came.
    fn read_input(&mut self) -> bool {
        let Some(stream) = self.conn.clone() else {
            return false;
        };
        if self.core.read_with(Instant::now(), |b| (&*stream).read(b)) == Got::Nothing {
            return false;
        }
        if !self.core.is_connected() {
            self.close_conn();
        }
        true
    }

    /// Blocks until bytes arrive or the core's next deadline (or `until`)
    /// passes.
    fn wait_for_input(&mut self, until: Option<Instant>) -> Result<(), Error> {
        self.drove = true;
        if !self.links.is_empty() {
            return self.wait_for_input_links(until);
        }
        let now = Instant::now();
        if self.core.handle_timeout(now) {
            return Ok(());
        }
        let core_deadline = self.core.session_timeout();
        let deadline = [core_deadline, until].into_iter().flatten().min();
        let Some(stream) = self.conn.clone() else {
            // No connection and nothing scheduled: the core is waiting for
            // a timer (e.g. Time2Wait before a reconnect).
            match deadline {
                Some(d) => {
                    std::thread::sleep(d.saturating_duration_since(now));
                    self.core.handle_timeout(Instant::now());
                    return Ok(());
                }
                None => return Err(self.core.close_error().unwrap_or(Error::Closed(None))),
            }
        };
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
        self.core.plan_low_water(now);
        self.apply_low_water(&stream);
        if let Some(d) = self.core.low_water_deadline() {
            let wait = d.min(deadline.unwrap_or(d)).saturating_duration_since(now);
            match iscsi_sys::wait_readable(&*stream, wait) {
                Ok(true) => {}
                Ok(false) => {
                    let _ = self.core.low_water_timeout(d);
                    self.apply_low_water(&stream);
                    if self.core.handle_timeout(Instant::now()) {
                        return Ok(());
                    }
                }
                Err(_) => {
                    self.core
                        .turn_off_low_water(|m| iscsi_sys::set_recv_low_water(&*stream, m).is_ok());
                }
            }
        }
        if !self.read_input() {
            self.core.handle_timeout(Instant::now());
        }
        Ok(())
    }
}

fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}
