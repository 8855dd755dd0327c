//! Async driver for the `iscsi-proto` sans-IO core on `async-io`: runs under
//! smol, async-std or any executor that can poll a future; no protocol logic.
//!
//! One task, the [`Driver`], owns the [`Session`], the socket
//! (`Async<TcpStream>`) and the timer (`async_io::Timer` at the core's
//! deadline); there is no lock around the core. A [`Client`] is a cheap
//! clone that sends requests to the driver over a channel; each task gets
//! its own reply channel, so any number of commands (up to the target's
//! command window; the core queues the rest) are in flight at once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), iscsi_smol::Error> {
//! use iscsi_proto::initiator::SessionConfig;
//! use iscsi_smol::Client;
//!
//! let cfg = SessionConfig::new("iqn.2026-11.example:host").with_target("iqn.2026-11.test:disk1");
//! // The driver runs on the caller's executor: here smol's.
//! let client = Client::connect("127.0.0.1:3260", cfg, |driver| smol::spawn(driver).detach()).await?;
//! let data = client.read(1 << 48, 0, 8, 512).await?;
//! client.logout().await?;
//! # let _ = data; Ok(()) }
//! ```
//!
//! The driver's loop is the core's drain order: after every input or
//! request, write transmits until none is left or the socket would block
//! (then wait for writability and resume the partial write with
//! `Transmit::parts_from`), handle the events, and wait for the next of:
//! a request, readable input, writability (only while blocked) or the
//! deadline from `poll_timeout`.
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

use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_channel::{bounded, unbounded, Receiver, Sender};
use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::future::{self, FutureExt};
use iscsi_proto::error::{ConfigError, ConnectionError, TaskError, UsageError};
use iscsi_proto::initiator::open_session;
pub use iscsi_proto::initiator::{Action, Coalesce, Completed};
use iscsi_proto::initiator::{
    Event, LogoutMode, LogoutResult, NetworkPortal, ReadData, RecvBuffer, ScsiCommand, ScsiResult,
    Session, SessionConfig, TargetRecord, TaskId, TaskOutcome,
};
use iscsi_proto::initiator::{LowWater, TxQueue};
pub use iscsi_proto::login::negotiation::Negotiated;
use iscsi_proto::scsi::cdb::{read16, write16, RwFlags};
use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};
use iscsi_proto::TaskMap;

/// Size of each socket read.
const READ_CHUNK: usize = 256 * 1024;
/// Reads per wakeup before the driver looks at requests again.
const READS_PER_WAKE: usize = 16;
/// PDUs taken from the core per vectored write.
const BATCH: usize = 64;
/// Non-task events kept for [`Client::events`] before new ones are dropped.
const EVENT_BACKLOG: usize = 256;

/// Errors of the async driver.
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
    /// The session failed (login failure, timeout, protocol violation...).
    #[error("{0}")]
    Connection(ConnectionError),
    /// The session ended (logged out, closed, or its driver stopped).
    #[error("session closed")]
    Closed,
    /// The core refused a call.
    #[error("{0}")]
    Usage(#[from] UsageError),
    /// The configuration is unusable (nothing was sent).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The operating system gave no random bytes for the ISID.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A task failed.
    #[error("{0}")]
    Task(TaskError),
    /// A read or write helper's command ended without GOOD status.
    #[error("SCSI command failed: status {:#04x}", .0.status)]
    Status(Box<ScsiResult>),
    /// A task ended with an outcome the operation did not expect.
    #[error("unexpected outcome: {0}")]
    Unexpected(String),
}

impl Error {
    fn dup(&self) -> Error {
        match self {
            Error::Connect { addr, source } => Error::Connect {
                addr: addr.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Connection(e) => Error::Connection(e.clone()),
            _ => Error::Closed,
        }
    }
}

/// Why the session ended, set once by the driver before it stops, so a
/// request that reaches a driver already gone still learns the reason
/// (a refused connection, a failed login) instead of a bare `Closed`.
#[derive(Debug, Default)]
struct CloseReason(OnceLock<Error>);

impl CloseReason {
    fn get(&self) -> Error {
        self.0.get().map(Error::dup).unwrap_or(Error::Closed)
    }
}

/// How a task ended: its outcome and its read data.
pub type Reply = Result<(TaskOutcome, Bytes), Error>;

enum Request {
    Start {
        action: Action,
        started: Sender<Result<TaskId, Error>>,
        done: Sender<Reply>,
    },
    WaitLogin(Sender<Result<(), Error>>),
    Negotiated(Sender<Option<Negotiated>>),
}

/// A task in flight; [`Pending::wait`] yields how it ended.
#[derive(Debug)]
pub struct Pending {
    id: TaskId,
    done: Receiver<Reply>,
    reason: Arc<CloseReason>,
}

impl Pending {
    /// The task's id (for [`Client::abort`]).
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Waits for the task to end.
    pub async fn wait(self) -> Reply {
        self.done.recv().await.map_err(|_| self.reason.get())?
    }
}

/// A boxed driver future, for [`Client::connect`]'s spawner.
pub type DriverFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A handle on one session; clones share it.
#[derive(Debug, Clone)]
pub struct Client {
    requests: Sender<Request>,
    events: Receiver<Event>,
    reason: Arc<CloseReason>,
}

impl Client {
    /// A client and the driver that must run (on any executor) for the
    /// client to make progress. Login starts when the driver runs;
    /// [`Client::logged_in`] waits for it.
    pub fn new(portal: &str, config: SessionConfig) -> Result<(Client, Driver), Error> {
        let mut random = [0u8; 3];
        iscsi_sys::fill_random(&mut random)?;
        let session = open_session(config, Instant::now(), random)?;
        let (requests, rx) = unbounded();
        let (events_tx, events) = bounded(EVENT_BACKLOG);
        let reason = Arc::new(CloseReason::default());
        let driver = Driver {
            session,
            portal: portal.to_string(),
            conn: None,
            rx: RecvBuffer::default(),
            tx: TxQueue::default(),
            blocked: false,
            requests: rx,
            orphaned: false,
            waiters: TaskMap::new(),
            login_waiters: Vec::new(),
            events: events_tx,
            pending_connect: None,
            connect_error: None,
            logged_in_once: false,
            closed: None,
            reason: reason.clone(),
            low_water: LowWater::new(Coalesce::default()),
        };
        Ok((
            Client {
                requests,
                events,
                reason,
            },
            driver,
        ))
    }

    /// Connects and logs in: hands the driver to `spawn` (e.g.
    /// `|d| smol::spawn(d).detach()` or `|d| drop(async_std::task::spawn(d))`)
    /// and waits for the Full Feature Phase.
    pub async fn connect(
        portal: &str,
        config: SessionConfig,
        spawn: impl FnOnce(DriverFuture),
    ) -> Result<Client, Error> {
        let (client, driver) = Client::new(portal, config)?;
        spawn(Box::pin(async move {
            let _ = driver.run().await;
        }));
        client.logged_in().await?;
        Ok(client)
    }

    /// Runs a discovery session (SendTargets=All) and logs out. `config`
    /// must have no target name.
    pub async fn discover(
        portal: &str,
        config: SessionConfig,
        spawn: impl FnOnce(DriverFuture),
    ) -> Result<Vec<TargetRecord>, Error> {
        let client = Client::connect(portal, config, spawn).await?;
        let targets = match client.start(Action::SendTargets).await?.wait().await? {
            (TaskOutcome::Targets(t), _) => t,
            (other, _) => return Err(Error::Unexpected(format!("{other:?}"))),
        };
        client.logout().await?;
        Ok(targets)
    }

    /// Waits until the session is in the Full Feature Phase.
    pub async fn logged_in(&self) -> Result<(), Error> {
        let (tx, rx) = bounded(1);
        self.requests
            .send(Request::WaitLogin(tx))
            .await
            .map_err(|_| self.reason.get())?;
        rx.recv().await.map_err(|_| self.reason.get())?
    }

    /// The values negotiated at login (RFC 7143 section 13), once the
    /// session is in the Full Feature Phase; `None` before.
    pub async fn negotiated(&self) -> Result<Option<Negotiated>, Error> {
        let (tx, rx) = bounded(1);
        self.requests
            .send(Request::Negotiated(tx))
            .await
            .map_err(|_| self.reason.get())?;
        rx.recv().await.map_err(|_| self.reason.get())
    }

    /// Non-task events (async messages, rejects, recovery notices, the
    /// login and the close); at most 256 wait, newer ones are dropped.
    pub fn events(&self) -> Receiver<Event> {
        self.events.clone()
    }

    /// Starts `action`; returns once the core accepted it.
    pub async fn start(&self, action: Action) -> Result<Pending, Error> {
        let (started, started_rx) = bounded(1);
        let (done, done_rx) = bounded(1);
        let req = Request::Start {
            action,
            started,
            done,
        };
        self.requests
            .send(req)
            .await
            .map_err(|_| self.reason.get())?;
        let id = started_rx.recv().await.map_err(|_| self.reason.get())??;
        Ok(Pending {
            id,
            done: done_rx,
            reason: self.reason.clone(),
        })
    }

    /// Submits a SCSI command without waiting for it.
    pub async fn submit(&self, cmd: ScsiCommand) -> Result<Pending, Error> {
        self.start(Action::Scsi(cmd)).await
    }

    /// Runs one SCSI command to completion (any status).
    pub async fn execute(&self, cmd: ScsiCommand) -> Result<Completed, Error> {
        match self.submit(cmd).await?.wait().await? {
            (TaskOutcome::Scsi(result), data) => Ok(Completed { result, data }),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// READ(16) of `blocks` blocks of `block_len` bytes at `lba`; fails
    /// unless the status is GOOD.
    pub async fn read(
        &self,
        lun: u64,
        lba: u64,
        blocks: u32,
        block_len: u32,
    ) -> Result<Bytes, Error> {
        let len = blocks.saturating_mul(block_len);
        let cdb = read16(lba, blocks, RwFlags::default());
        let done = self
            .execute(ScsiCommand::read(lun, cdb.to_vec(), len))
            .await?;
        good(done).map(|c| c.data)
    }

    /// WRITE(16) of `data` (a whole number of `block_len` blocks) at
    /// `lba`; fails unless the status is GOOD.
    pub async fn write(
        &self,
        lun: u64,
        lba: u64,
        data: Bytes,
        block_len: u32,
    ) -> Result<(), Error> {
        let blocks = u32::try_from(data.len() / block_len.max(1) as usize)
            .map_err(|_| Error::Usage(UsageError::InvalidCommand("write too long")))?;
        let cdb = write16(lba, blocks, RwFlags::default());
        let done = self
            .execute(ScsiCommand::write(lun, cdb.to_vec(), data))
            .await?;
        good(done).map(drop)
    }

    /// Runs a task management function.
    pub async fn task_management(
        &self,
        lun: u64,
        function: TmfFunction,
    ) -> Result<TmfResponse, Error> {
        tmf(self
            .start(Action::TaskManagement { lun, function })
            .await?
            .wait()
            .await?)
    }

    /// Aborts a task (ABORT TASK).
    pub async fn abort(&self, task: TaskId) -> Result<TmfResponse, Error> {
        tmf(self.start(Action::Abort(task)).await?.wait().await?)
    }

    /// Sends a NOP-Out ping and waits for the echo.
    pub async fn ping(&self, data: Bytes) -> Result<Bytes, Error> {
        match self.start(Action::Ping(data)).await?.wait().await? {
            (TaskOutcome::Pong(d), _) => Ok(d),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Logs out once outstanding tasks finish; the driver then ends.
    pub async fn logout(&self) -> Result<LogoutResult, Error> {
        let p = self.start(Action::Logout(LogoutMode::WaitForTasks)).await?;
        match p.wait().await? {
            (TaskOutcome::LoggedOut(r), _) => Ok(r),
            (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
            (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }
}

fn good(done: Completed) -> Result<Completed, Error> {
    if done.result.is_good() {
        Ok(done)
    } else {
        Err(Error::Status(Box::new(done.result)))
    }
}

fn tmf(reply: (TaskOutcome, Bytes)) -> Result<TmfResponse, Error> {
    match reply {
        (TaskOutcome::TaskManagement(r), _) => Ok(r),
        (TaskOutcome::Failed(e), _) => Err(Error::Task(e)),
        (other, _) => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

struct Waiter {
    data: ReadData,
    done: Sender<Reply>,
}

/// The task that owns the session, its socket and its timer; run it with
/// [`Driver::run`] on any executor.
pub struct Driver {
    session: Session,
    portal: String,
    conn: Option<Async<TcpStream>>,
    rx: RecvBuffer,
    tx: TxQueue,
    blocked: bool,
    requests: Receiver<Request>,
    orphaned: bool,
    /// Tasks in flight, in a slot per task tag (no hashing).
    waiters: TaskMap<Waiter>,
    login_waiters: Vec<Sender<Result<(), Error>>>,
    events: Sender<Event>,
    pending_connect: Option<Option<NetworkPortal>>,
    connect_error: Option<(String, io::Error)>,
    logged_in_once: bool,
    closed: Option<Option<ConnectionError>>,
    reason: Arc<CloseReason>,
    /// The receive low-water mark planner (receive coalescing).
    low_water: LowWater,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("portal", &self.portal)
            .field("state", &self.session.state())
            .finish()
    }
}

enum Wake {
    Request(Option<Request>),
    Readable,
    Writable,
    Timer,
}

impl Driver {
    /// Sets receive coalescing (`SO_RCVLOWAT`, see
    /// `iscsi_proto::initiator::coalesce`) before [`Driver::run`]: on by
    /// default with [`Coalesce::default`]; [`Coalesce::OFF`] turns it off.
    pub fn with_coalesce(mut self, coalesce: Coalesce) -> Driver {
        self.low_water = LowWater::new(coalesce);
        self
    }

    /// Runs the session until it closes: `Ok` after a logout, else why it
    /// ended. When every [`Client`] is dropped the driver logs out.
    pub async fn run(mut self) -> Result<(), Error> {
        loop {
            self.drive().await;
            if self.closed.is_some() {
                return self.finish();
            }
            self.plan_wait();
            match self.wait().await {
                Wake::Request(Some(r)) => {
                    self.request(r);
                    // Take what else is queued before writing (batching).
                    while let Ok(r) = self.requests.try_recv() {
                        self.request(r);
                    }
                }
                Wake::Request(None) => self.orphan(),
                Wake::Readable => self.read_ready(),
                Wake::Writable => self.blocked = false,
                Wake::Timer => {
                    let now = Instant::now();
                    if self.low_water.deadline().is_some_and(|d| d <= now) {
                        // The wait for the low-water mark lasted its
                        // longest: take whatever is there.
                        self.read_ready();
                        if let Some(mark) = self.low_water.timeout() {
                            self.set_low_water(mark);
                        }
                    }
                    if self.session.poll_timeout().is_some_and(|d| d <= now) {
                        self.session.handle_timeout(now);
                    }
                }
            }
        }
    }

    /// The session is over: refuse what is still queued (with why it
    /// ended) and stop.
    fn finish(self) -> Result<(), Error> {
        let err = self.close_error();
        // Recorded before the channel closes: a client whose request finds
        // the channel closed reads it from there.
        let _ = self.reason.0.set(err.dup());
        self.requests.close();
        while let Ok(r) = self.requests.try_recv() {
            match r {
                Request::WaitLogin(tx) => drop(tx.try_send(Err(err.dup()))),
                Request::Negotiated(tx) => drop(tx),
                Request::Start { started, .. } => drop(started.try_send(Err(err.dup()))),
            }
        }
        match err {
            Error::Closed => Ok(()),
            e => Err(e),
        }
    }

    /// Plans the next wait's receive low-water mark.
    fn plan_wait(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let pending = self.blocked || !self.tx.is_empty() || self.session.has_transmit();
        let buffered = self.rx.filled().len();
        let now = Instant::now();
        if let Some(mark) = self.low_water.plan(&self.session, buffered, pending, now) {
            self.set_low_water(mark);
        }
    }

    /// Sets the socket's receive low-water mark; if that fails, coalescing
    /// stops.
    fn set_low_water(&mut self, mark: usize) {
        if let Some(conn) = self.conn.as_ref() {
            let stream = conn.get_ref();
            self.low_water
                .apply(mark, |m| iscsi_sys::set_recv_low_water(stream, m).is_ok());
        }
    }

    /// Waits for the next request, input, writability or deadline.
    async fn wait(&self) -> Wake {
        let requests = async {
            if self.orphaned {
                future::pending().await
            } else {
                Wake::Request(self.requests.recv().await.ok())
            }
        };
        let read = async {
            match &self.conn {
                Some(c) => {
                    let _ = c.readable().await;
                    Wake::Readable
                }
                None => future::pending().await,
            }
        };
        let write = async {
            match &self.conn {
                Some(c) if self.blocked => {
                    let _ = c.writable().await;
                    Wake::Writable
                }
                _ => future::pending().await,
            }
        };
        let deadline = self.low_water.earliest(self.session.poll_timeout());
        let timer = async {
            match deadline {
                Some(d) => {
                    Timer::at(d).await;
                    Wake::Timer
                }
                None => future::pending().await,
            }
        };
        requests.or(read).or(write).or(timer).await
    }

    /// All clients are gone: log out (or stop if not logged in).
    fn orphan(&mut self) {
        self.orphaned = true;
        let now = Instant::now();
        if self.session.logout(now, LogoutMode::AbortTasks).is_err() {
            self.close_conn();
            self.closed = Some(self.closed.take().flatten());
        }
    }

    fn request(&mut self, r: Request) {
        let now = Instant::now();
        match r {
            Request::Negotiated(tx) => {
                let _ = tx.try_send(self.session.negotiated().cloned());
            }
            Request::WaitLogin(tx) => {
                if self.session.is_logged_in() {
                    let _ = tx.try_send(Ok(()));
                } else {
                    self.login_waiters.push(tx);
                }
            }
            Request::Start {
                action,
                started,
                done,
            } => {
                let r = self.session.start(now, action);
                match r {
                    Ok(task) => {
                        let data = ReadData::default();
                        self.waiters.insert(task, Waiter { data, done });
                        let _ = started.try_send(Ok(task));
                    }
                    Err(e) => drop(started.try_send(Err(e.into()))),
                }
            }
        }
    }

    /// The drain order: transmit, events, connect where asked, repeat
    /// until nothing moves.
    async fn drive(&mut self) {
        loop {
            self.step();
            match self.pending_connect.take() {
                Some(portal) => self.open(portal).await,
                None => return,
            }
        }
    }

    fn step(&mut self) {
        loop {
            self.flush();
            self.drain_events();
            let writable = self.conn.is_some() && !self.blocked;
            if self.pending_connect.is_some() || !(writable && self.session.has_transmit()) {
                return;
            }
        }
    }

    /// Vectored writes until nothing is left or the socket would block.
    fn flush(&mut self) {
        if self.tx.is_empty() && !self.session.has_transmit() {
            return;
        }
        let now = Instant::now();
        loop {
            let Some(conn) = self.conn.as_ref().filter(|_| !self.blocked) else {
                return;
            };
            self.tx.fill(&mut self.session, now, BATCH);
            if self.tx.is_empty() {
                return;
            }
            let mut slices = [IoSlice::new(&[]); BATCH * 3];
            let n = self.tx.io_slices(&mut slices);
            let mut stream: &TcpStream = conn.get_ref();
            match stream.write_vectored(slices.get(..n).unwrap_or(&[])) {
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

    /// Reads (a bounded number of times) until the socket would block,
    /// feeding the core and answering after each read.
    fn read_ready(&mut self) {
        for _ in 0..READS_PER_WAKE {
            let Some(conn) = self.conn.as_ref() else {
                return;
            };
            // Zero-filled once per region, not before every read.
            let max_pdu = self.session.max_recv_pdu_len();
            let mut stream: &TcpStream = conn.get_ref();
            let r = stream.read(self.rx.spare(max_pdu, READ_CHUNK));
            match r {
                Ok(0) => {
                    return self.connection_lost();
                }
                Ok(n) => {
                    let now = Instant::now();
                    self.low_water.on_input(n, now);
                    self.rx.commit(n);
                    self.session.handle_input(now, self.rx.filled());
                    self.step();
                    if self.pending_connect.is_some() {
                        return;
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => {}
                    _ => return self.connection_lost(),
                },
            }
        }
    }

    fn close_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.get_ref().shutdown(std::net::Shutdown::Both);
        }
        self.rx.clear();
        self.tx.clear();
        self.blocked = false;
        self.low_water.reset();
    }

    fn connection_lost(&mut self) {
        tracing::debug!(target: "iscsi::driver", driver = "smol", "connection lost");
        self.close_conn();
        self.session.handle_closed(Instant::now());
    }

    fn close_error(&self) -> Error {
        if let (false, Some((addr, e))) = (self.logged_in_once, &self.connect_error) {
            return Error::Connect {
                addr: addr.clone(),
                source: io::Error::new(e.kind(), e.to_string()),
            };
        }
        match &self.closed {
            Some(Some(e)) => Error::Connection(e.clone()),
            _ => Error::Closed,
        }
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Connect { portal } => self.pending_connect = Some(portal),
                Event::DataIn { task, offset, data } => {
                    if let Some(w) = self.waiters.get_mut(task) {
                        w.data.push(offset, data);
                    }
                }
                Event::Complete { task, outcome } => {
                    if let Some(w) = self.waiters.remove(task) {
                        let _ = w.done.try_send(Ok((outcome, w.data.into_bytes())));
                    }
                }
                Event::LoggedIn { tsih } => {
                    self.logged_in_once = true;
                    for w in self.login_waiters.drain(..) {
                        let _ = w.try_send(Ok(()));
                    }
                    let _ = self.events.try_send(Event::LoggedIn { tsih });
                }
                Event::Closed(reason) => {
                    self.close_conn();
                    self.closed = Some(reason.clone());
                    let err = self.close_error();
                    for (_, w) in self.waiters.drain() {
                        let _ = w.done.try_send(Err(err.dup()));
                    }
                    for w in self.login_waiters.drain(..) {
                        let _ = w.try_send(Err(err.dup()));
                    }
                    let _ = self.events.try_send(Event::Closed(reason));
                }
                Event::Recovering { .. } => {
                    self.close_conn();
                    let _ = self.events.try_send(ev);
                }
                other => drop(self.events.try_send(other)),
            }
        }
    }

    /// Connects where the core asked, racing the core's deadline (the
    /// login timeout covers the TCP connect).
    async fn open(&mut self, portal: Option<NetworkPortal>) {
        self.close_conn();
        let addr = match &portal {
            Some(p) if p.host.contains(':') => format!("[{}]:{}", p.host, p.port),
            Some(p) => format!("{}:{}", p.host, p.port),
            None => self.portal.clone(),
        };
        tracing::debug!(target: "iscsi::driver", driver = "smol", %addr, "connecting");
        // Name resolution blocks (std has no other); IP literals do not.
        let resolved = addr.to_socket_addrs().and_then(|mut a| {
            a.next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
        });
        let connected = match resolved {
            Ok(sa) => {
                let connect = async { Some(Async::<TcpStream>::connect(sa).await) };
                let deadline = self.session.poll_timeout();
                let timer = async {
                    match deadline {
                        Some(d) => {
                            Timer::at(d).await;
                            None
                        }
                        None => future::pending().await,
                    }
                };
                connect.or(timer).await
            }
            Err(e) => Some(Err(e)),
        };
        let now = Instant::now();
        match connected {
            Some(Ok(stream)) => {
                let _ = stream.get_ref().set_nodelay(true);
                self.conn = Some(stream);
                self.session.handle_connected(now);
            }
            Some(Err(e)) => {
                // The core decides: retry later (recovery) or close.
                self.connect_error = Some((addr, e));
                self.session.handle_closed(now);
            }
            None => self.session.handle_timeout(now),
        }
    }
}
