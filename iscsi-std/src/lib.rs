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

mod background;
mod links;
mod options;

use std::cell::OnceCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
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

use background::{background_loop, Lease, Shared, Slot};
pub use options::Options;

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
