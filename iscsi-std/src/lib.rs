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
//! client.logout()?;
//! # Ok::<(), iscsi_std::Error>(())
//! ```
//!
//! The drive loop is the one the core documents: after every input or action,
//! write every [`Transmit`] from
//! `poll_transmit`, then take every event from `poll_event`, then block on the
//! socket until input arrives or the deadline from `poll_timeout` passes.
//!
//! Cost per I/O: commands submitted while completions wait to be collected
//! go out together in one vectored write (see [`Client::submit`]); one
//! socket read takes every PDU that has arrived, into a receive buffer
//! that is zero-filled once per region rather than before every read;
//! completions and read data are kept in a queue and a slot per task tag,
//! with no hashing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi_proto::error::{ConfigError, ConnectionError, TaskError, UsageError};
use iscsi_proto::initiator::open_session;
pub use iscsi_proto::initiator::Coalesce;
use iscsi_proto::initiator::{
    Event, LogoutMode, LogoutResult, LowWater, Portal, ReadData, RecvBuffer, ScsiCommand, Session,
    SessionConfig, TargetRecord, TaskId, TaskOutcome,
};

pub use iscsi_proto::initiator::Completed;
use iscsi_proto::transmit::Transmit;
use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};

/// PDUs written per vectored write (3 parts each at most; Linux takes up
/// to 1024 parts per `writev`).
const BATCH: usize = 64;
/// Task tags index their slot by their low 16 bits (the core's task slab,
/// `iscsi_proto::initiator::TaskTable`).
const SLOT_MASK: u32 = 0xffff;

/// Which way bytes crossed the socket (for [`Options::tap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Initiator to target.
    Sent,
    /// Target to initiator.
    Received,
}

/// A callback that sees every byte sent and received, with the local and
/// peer addresses (used by `iscsi --pcap`).
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(5),
            read_chunk: 256 * 1024,
            tap: None,
            coalesce: Coalesce::default(),
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
    stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
}

/// A logged-in (or discovery) session over a blocking TCP socket.
pub struct Client {
    session: Session,
    conn: Option<Conn>,
    portal: String,
    opts: Options,
    rx: RecvBuffer,
    /// Read data of tasks in flight, in a slot per task tag.
    reads: Vec<Option<(TaskId, ReadData)>>,
    batch: Vec<Transmit>,
    /// Completed tasks not yet collected, oldest first.
    done: VecDeque<(TaskId, TaskOutcome, Bytes)>,
    /// The read timeout set on the socket (`None`: blocking).
    armed: Option<Duration>,
    /// The receive low-water mark planner.
    low_water: LowWater,
    async_events: VecDeque<Event>,
    closed: Option<Option<ConnectionError>>,
    logged_in: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("portal", &self.portal)
            .field("logged_in", &self.logged_in)
            .finish()
    }
}

impl Client {
    /// Connects to `portal` (`host:port`), logs in with `config` (following
    /// redirects as the core asks) and returns once the session is in the
    /// Full Feature Phase.
    pub fn connect(portal: &str, config: SessionConfig, opts: Options) -> Result<Client, Error> {
        let now = Instant::now();
        let coalesce = opts.coalesce;
        let mut random = [0u8; 3];
        iscsi_sys::fill_random(&mut random)?;
        let mut client = Client {
            session: open_session(config, now, random)?,
            conn: None,
            portal: portal.to_string(),
            opts,
            rx: RecvBuffer::default(),
            reads: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            done: VecDeque::new(),
            armed: None,
            low_water: LowWater::new(coalesce),
            async_events: VecDeque::new(),
            closed: None,
            logged_in: false,
        };
        client.run_until(|c| c.logged_in)?;
        Ok(client)
    }

    /// Runs a discovery session (SendTargets=All) against `portal` and logs
    /// out. `config` must have no target name.
    pub fn discover(
        portal: &str,
        config: SessionConfig,
        opts: Options,
    ) -> Result<Vec<TargetRecord>, Error> {
        let mut client = Client::connect(portal, config, opts)?;
        let task = client.session.send_targets(Instant::now())?;
        let targets = match client.wait(task)? {
            (TaskOutcome::Targets(t), _) => t,
            (other, _) => return Err(Error::Unexpected(format!("{other:?}"))),
        };
        client.logout()?;
        Ok(targets)
    }

    /// The sans-IO session (for its getters).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Submits a command without waiting; see [`Client::wait`].
    ///
    /// The command is written at once, unless completions are waiting to
    /// be collected: then it is held and written, together with every
    /// command submitted meanwhile, in one vectored write by the next
    /// `submit` made with no completion waiting, the next call that waits
    /// for input ([`Client::wait`], [`Client::wait_any`], [`Client::idle`],
    /// ...) or [`Client::flush`]. An application that keeps commands in
    /// flight (collect one, submit one) thus pays one write per batch of
    /// completions instead of one per command. An application that submits
    /// while completions wait and then stops calling the client should call
    /// [`Client::flush`].
    pub fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, Error> {
        let task = self.session.submit(Instant::now(), cmd)?;
        if self.done.is_empty() {
            self.flush()?;
        }
        Ok(task)
    }

    /// Writes every PDU the session has ready (commands held by
    /// [`Client::submit`] included).
    pub fn flush(&mut self) -> Result<(), Error> {
        self.write_pending()
    }

    /// Waits for a task to end; returns its outcome and any read data.
    pub fn wait(&mut self, task: TaskId) -> Result<(TaskOutcome, Bytes), Error> {
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

    /// Waits for whichever submitted task ends first (in completion order).
    pub fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), Error> {
        self.run_until(|c| !c.done.is_empty())?;
        let done = self
            .done
            .pop_front()
            .ok_or_else(|| Error::Unexpected("no task".into()))?;
        Ok(done)
    }

    /// Runs one SCSI command to completion.
    pub fn execute(&mut self, cmd: ScsiCommand) -> Result<Completed, Error> {
        let task = self.submit(cmd)?;
        match self.wait(task)? {
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
        let task = self
            .session
            .task_management(Instant::now(), lun, function)?;
        self.tmf_result(task)
    }

    /// Aborts a task (ABORT TASK) and waits for the response.
    pub fn abort(&mut self, task: TaskId) -> Result<TmfResponse, Error> {
        let tmf = self.session.abort_task(Instant::now(), task)?;
        self.tmf_result(tmf)
    }

    fn tmf_result(&mut self, task: TaskId) -> Result<TmfResponse, Error> {
        self.write_pending()?;
        match self.wait(task)? {
            (TaskOutcome::TaskManagement(r), _) => Ok(r),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends a NOP-Out ping and waits for the echo.
    pub fn ping(&mut self, data: Bytes) -> Result<Bytes, Error> {
        let task = self.session.nop_ping(Instant::now(), data)?;
        self.write_pending()?;
        match self.wait(task)? {
            (TaskOutcome::Pong(d), _) => Ok(d),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Asynchronous events received so far (SCSI events, vendor events...).
    pub fn take_async_events(&mut self) -> Vec<Event> {
        self.async_events.drain(..).collect()
    }

    /// Logs out (closing the session after outstanding tasks finish) and
    /// closes the connection.
    pub fn logout(mut self) -> Result<LogoutResult, Error> {
        let task = self
            .session
            .logout(Instant::now(), LogoutMode::WaitForTasks)?;
        let result = match self.wait(task)? {
            (TaskOutcome::LoggedOut(r), _) => r,
            (TaskOutcome::Failed(e), _) => return Err(Error::Task(e)),
            (other, _) => return Err(Error::Unexpected(format!("{other:?}"))),
        };
        if let Some(c) = self.conn.take() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        Ok(result)
    }

    /// Services the connection while the application has nothing to do,
    /// for about `duration` (at least one wait for input): answers the
    /// target's NOP-In pings (RFC 7143 section 11.18: a NOP-In with a
    /// valid TTT "MUST" be answered), sends keepalive pings and runs the
    /// core's timers. A blocking client that is neither waiting on a task
    /// nor idling does not read its socket, so a long-idle application
    /// should call this (or [`Client::poll_idle`]) regularly, e.g. every
    /// few seconds, from the thread that owns the client.
    pub fn idle(&mut self, duration: Duration) -> Result<(), Error> {
        let until = Instant::now() + duration;
        self.run(|_| false, Some(until))
    }

    /// Services whatever input is already waiting (blocking for at most
    /// about a millisecond), then returns; see [`Client::idle`].
    pub fn poll_idle(&mut self) -> Result<(), Error> {
        self.idle(Duration::ZERO)
    }

    /// Drives the session until `done(self)` holds or the session closes.
    fn run_until(&mut self, done: impl FnMut(&Client) -> bool) -> Result<(), Error> {
        self.run(done, None)
    }

    /// Drives the session until `done(self)` holds, the session closes or
    /// (after at least one wait for input) `until` passes.
    fn run(
        &mut self,
        mut done: impl FnMut(&Client) -> bool,
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
            if let Some(closed) = self.closed.take() {
                return Err(match closed {
                    Some(e) => Error::Connection(e),
                    None => Error::Closed,
                });
            }
            if waited && until.is_some_and(|u| Instant::now() >= u) {
                return Ok(());
            }
            self.wait_for_input(until)?;
            waited = true;
        }
    }

    /// Writes every pending PDU, batched into vectored writes.
    fn write_pending(&mut self) -> Result<(), Error> {
        let Some(conn) = self.conn.as_mut() else {
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
            if let Err(e) = write_all_vectored(&mut conn.stream, &parts[..n]) {
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
        if let Some(c) = self.conn.take() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        self.rx.clear();
        self.armed = None;
        self.low_water.reset();
        self.session.handle_closed(Instant::now());
    }

    fn drain_events(&mut self) -> Result<(), Error> {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Connect { portal } => self.open(portal)?,
                Event::LoggedIn { .. } | Event::Reinstated { .. } => self.logged_in = true,
                Event::DataIn { task, offset, data } => {
                    let i = (task.0 & SLOT_MASK) as usize;
                    if self.reads.len() <= i {
                        self.reads.resize_with(i + 1, || None);
                    }
                    if let Some(slot) = self.reads.get_mut(i) {
                        match slot {
                            Some((t, r)) if *t == task => r.push(offset, data),
                            _ => {
                                let mut r = ReadData::default();
                                r.push(offset, data);
                                *slot = Some((task, r));
                            }
                        }
                    }
                }
                Event::Complete { task, outcome } => {
                    let slot = self.reads.get_mut((task.0 & SLOT_MASK) as usize);
                    let data = match slot {
                        Some(s) if s.as_ref().is_some_and(|(t, _)| *t == task) => {
                            s.take().map(|(_, r)| r.into_bytes()).unwrap_or_default()
                        }
                        _ => Bytes::new(),
                    };
                    self.done.push_back((task, outcome, data));
                }
                Event::Closed(reason) => {
                    if let Some(c) = self.conn.take() {
                        let _ = c.stream.shutdown(Shutdown::Both);
                    }
                    self.closed = Some(reason);
                }
                Event::Recovering { .. } => {
                    self.logged_in = false;
                    if let Some(c) = self.conn.take() {
                        let _ = c.stream.shutdown(Shutdown::Both);
                    }
                }
                other => self.async_events.push_back(other),
            }
        }
        Ok(())
    }

    /// Opens a TCP connection where the core asked and tells the core.
    fn open(&mut self, portal: Option<Portal>) -> Result<(), Error> {
        if let Some(c) = self.conn.take() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
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
            stream,
            local,
            peer,
        });
        self.session.handle_connected(Instant::now());
        Ok(())
    }

    /// Blocks until bytes arrive or the core's next deadline (or `until`)
    /// passes.
    fn wait_for_input(&mut self, until: Option<Instant>) -> Result<(), Error> {
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
        let Some(conn) = self.conn.as_mut() else {
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
            conn.stream.set_read_timeout(timeout)?;
            self.armed = timeout;
        }
        // Receive coalescing: with a mark above 1 the kernel holds back
        // readability until that many bytes are in; the wait for it ends by
        // the planner's deadline, then the mark drops to 1 if nothing came.
        let buffered = self.rx.filled().len();
        if let Some(mark) = self.low_water.plan(&self.session, buffered, false, now) {
            let stream = &conn.stream;
            self.low_water
                .apply(mark, |m| iscsi_sys::set_recv_low_water(stream, m).is_ok());
        }
        if let Some(d) = self.low_water.deadline() {
            let wait = d.min(deadline.unwrap_or(d)).saturating_duration_since(now);
            match iscsi_sys::wait_readable(&conn.stream, wait) {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(mark) = self.low_water.timeout() {
                        let stream = &conn.stream;
                        self.low_water
                            .apply(mark, |m| iscsi_sys::set_recv_low_water(stream, m).is_ok());
                    }
                    if core_deadline.is_some_and(|c| c <= Instant::now()) {
                        self.session.handle_timeout(Instant::now());
                        return Ok(());
                    }
                }
                Err(_) => {
                    let stream = &conn.stream;
                    self.low_water
                        .turn_off(|m| iscsi_sys::set_recv_low_water(stream, m).is_ok());
                }
            }
        }
        let max_pdu = self.session.max_recv_pdu_len();
        let buf = self.rx.spare(max_pdu, self.opts.read_chunk);
        let r = conn.stream.read(buf);
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
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if core_deadline.is_some_and(|c| c <= now) {
                    self.session.handle_timeout(now);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.connection_lost(),
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
fn write_all_vectored(stream: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
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
