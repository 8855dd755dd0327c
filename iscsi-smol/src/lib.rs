//! Async driver for the `iscsi-proto` sans-IO core on `async-io`: runs under
//! smol, async-std or any executor that can poll a future; no protocol logic.
//!
//! One task, the [`Driver`], owns the session (in its driver core), the socket
//! (`Async<TcpStream>`) and the timer (`async_io::Timer` at the core's
//! deadline); there is no lock around the core. A [`Client`] is a cheap
//! clone that sends requests to the driver over a channel; each task gets
//! its own reply channel, so any number of commands (up to the target's
//! command window; the core queues the rest) are in flight at once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), iscsi_smol::Error> {
//! use iscsi_proto::initiator::SessionConfig;
//! use iscsi_smol::{Client, Lun};
//!
//! let cfg = SessionConfig::new("iqn.2026-11.example:host").with_target("iqn.2026-11.test:disk1");
//! // The driver runs on the caller's executor: here smol's.
//! let client = Client::connect("127.0.0.1:3260", cfg, |driver| smol::spawn(driver).detach()).await?;
//! let data = client.read(Lun::from_number(1), 0, 8, 512).await?;
//! client.logout().await?;
//! # let _ = data; Ok(()) }
//! ```
//!
//! The session and everything but the socket and the timer live in a
//! [`iscsi_proto::driver::DriverCore`], shared with the other
//! drivers. The driver's loop is the core's drain order: after every input
//! or request, write until nothing is left or the socket would block (then
//! wait for writability; the partial write resumes), hand out the events,
//! carry out the core's connection requests, and wait for the next of: a
//! request, readable input, writability (only while blocked) or the
//! core's deadline. A byte tap ([`Driver::with_tap`]) sees every byte.
//!
//! `read`, `write` and `read_capacity` retry once the UNIT ATTENTION a
//! target reports on the first command of every session (tgtd, LIO:
//! SAM-5 5.14; see `iscsi_proto::scsi::helpers`); `execute` and `submit`
//! return every status as it came.
//!
//! Errors: [`Error`] is the drivers' shared [`iscsi_proto::driver::Error`].
//! A target that refuses us is [`Error::Connect`] (TCP) or
//! [`Error::Login`] (the login failed); an established session that ends
//! is [`Error::Closed`] (`None` after a logout), from every task in flight
//! at that moment ([`Pending::wait`]) and every later call. With session
//! recovery configured a lost connection is recovered instead: only a
//! command that cannot safely run twice fails, with
//! `Error::Task(TaskError::OutcomeUnknown)` (see the error module for the
//! whole contract).
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
mod links;

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_channel::{bounded, unbounded, Receiver, Sender};
use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::future::{self, FutureExt};
use iscsi_proto::driver::{reply, ConnRequest, DriverCore, Read as Got, Written};
pub use iscsi_proto::driver::{Action, Coalesce, Completed, Error, Reply, Tap};
use iscsi_proto::error::UsageError;
use iscsi_proto::initiator::{
    Event, LogoutMode, LogoutResult, ScsiCommand, SessionConfig, TargetRecord, TaskId,
};
pub use iscsi_proto::login::negotiation::Negotiated;
use iscsi_proto::scsi::cdb::{read16, write16, RwFlags};
use iscsi_proto::scsi::helpers::{is_unit_attention, CapacityProbe, Probe, UA_RETRIES};
pub use iscsi_proto::scsi::{Capacity, Lun};
pub use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};

/// Reads per wakeup before the driver looks at requests again.
const READS_PER_WAKE: usize = 16;
/// Non-task events kept for [`Client::events`] before new ones are dropped.
const EVENT_BACKLOG: usize = 256;

/// Why the session ended, set once by the driver before it stops, so a
/// request that reaches a driver already gone still learns the reason
/// (a refused connection, a failed login) instead of a bare `Closed`.
#[derive(Debug, Default)]
struct CloseReason(OnceLock<Error>);

impl CloseReason {
    fn get(&self) -> Error {
        self.0.get().map_or(Error::Closed(None), Error::duplicate)
    }
}

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
        let core = DriverCore::new(portal, config, Instant::now(), random)?;
        let (requests, rx) = unbounded();
        let (events_tx, events) = bounded(EVENT_BACKLOG);
        let reason = Arc::new(CloseReason::default());
        let driver = Driver {
            core,
            conn: None,
            links: links::Links::new(),
            requests: rx,
            orphaned: false,
            login_waiters: Vec::new(),
            events: events_tx,
            reason: reason.clone(),
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
        let targets = reply::targets(client.start(Action::SendTargets).await?.wait().await)?;
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
        reply::scsi(self.submit(cmd).await?.wait().await)
    }

    /// Runs `cmd` and requires GOOD status, sending it again once after
    /// a UNIT ATTENTION (the one a target reports on the first command of
    /// every session: tgtd, LIO; SAM-5 5.14.1 says the command was not
    /// performed). See [`iscsi_proto::scsi::helpers`].
    pub async fn execute_good(&self, cmd: ScsiCommand) -> Result<Completed, Error> {
        let mut retries = UA_RETRIES;
        loop {
            let done = self.execute(cmd.clone()).await?;
            if retries > 0 && is_unit_attention(&done.result) {
                retries -= 1;
                continue;
            }
            return reply::good(done);
        }
    }

    /// READ(16) of `blocks` blocks of `block_len` bytes at `lba` of
    /// `lun`; fails unless the status is GOOD (a first UNIT ATTENTION is
    /// retried: [`Client::execute_good`]).
    pub async fn read(
        &self,
        lun: Lun,
        lba: u64,
        blocks: u32,
        block_len: u32,
    ) -> Result<Bytes, Error> {
        let len = blocks.saturating_mul(block_len);
        let cdb = read16(lba, blocks, RwFlags::default());
        let done = self.execute_good(ScsiCommand::read(lun, cdb, len)).await?;
        Ok(done.data)
    }

    /// WRITE(16) of `data` (a whole number of `block_len` blocks) at
    /// `lba` of `lun`; fails unless the status is GOOD (a first UNIT
    /// ATTENTION is retried: [`Client::execute_good`]).
    pub async fn write(
        &self,
        lun: Lun,
        lba: u64,
        data: Bytes,
        block_len: u32,
    ) -> Result<(), Error> {
        let blocks = u32::try_from(data.len() / block_len.max(1) as usize)
            .map_err(|_| Error::Usage(UsageError::InvalidCommand("write too long")))?;
        let cdb = write16(lba, blocks, RwFlags::default());
        self.execute_good(ScsiCommand::write(lun, cdb, data))
            .await
            .map(drop)
    }

    /// The capacity and block size of `lun`: READ CAPACITY (16), or (10)
    /// where (16) is not supported ([`CapacityProbe`]).
    pub async fn read_capacity(&self, lun: Lun) -> Result<Capacity, Error> {
        let (mut probe, mut cmd) = CapacityProbe::start(lun);
        loop {
            let done = self.execute(cmd).await?;
            match probe.next(done.result, &done.data) {
                Probe::Send(next) => cmd = next,
                Probe::Done(c) => return Ok(c),
                Probe::Failed(e) => return Err(e.into()),
            }
        }
    }

    /// Runs a task management function on `lun`.
    pub async fn task_management(
        &self,
        lun: Lun,
        function: TmfFunction,
    ) -> Result<TmfResponse, Error> {
        let lun = lun.to_u64();
        let p = self.start(Action::TaskManagement { lun, function }).await?;
        reply::task_management(p.wait().await)
    }

    /// Aborts a task (ABORT TASK).
    pub async fn abort(&self, task: TaskId) -> Result<TmfResponse, Error> {
        reply::task_management(self.start(Action::Abort(task)).await?.wait().await)
    }

    /// Sends a NOP-Out ping and waits for the echo.
    pub async fn ping(&self, data: Bytes) -> Result<Bytes, Error> {
        reply::pong(self.start(Action::Ping(data)).await?.wait().await)
    }

    /// Logs out once outstanding tasks finish; the driver then ends.
    pub async fn logout(&self) -> Result<LogoutResult, Error> {
        let p = self.start(Action::Logout(LogoutMode::WaitForTasks)).await?;
        reply::logged_out(p.wait().await)
    }
}

/// The task that owns the session, its socket and its timer; run it with
/// [`Driver::run`] on any executor.
#[derive(Debug)]
pub struct Driver {
    core: DriverCore,
    conn: Option<Async<TcpStream>>,
    /// The sockets of added connections (MC/S).
    links: links::Links,
    requests: Receiver<Request>,
    orphaned: bool,
    login_waiters: Vec<Sender<Result<(), Error>>>,
    events: Sender<Event>,
    reason: Arc<CloseReason>,
}

enum Wake {
    Request(Option<Request>),
    Readable,
    Writable,
    Timer,
    Link(links::LinkWake),
}

impl Driver {
    /// Sets receive coalescing (`SO_RCVLOWAT`, see
    /// `iscsi_proto::initiator::coalesce`) before [`Driver::run`]: on by
    /// default with [`Coalesce::default`]; [`Coalesce::OFF`] turns it off.
    pub fn with_coalesce(mut self, coalesce: Coalesce) -> Driver {
        self.core.set_coalesce(coalesce);
        self
    }

    /// Installs a byte tap before [`Driver::run`]: it sees every byte
    /// written to and read from the connection (e.g. `iscsi --pcap`).
    pub fn with_tap(mut self, tap: Tap) -> Driver {
        self.core.set_tap(Some(tap));
        self
    }

    /// Runs the session until it closes: `Ok` after a logout, else why it
    /// ended. When every [`Client`] is dropped the driver logs out.
    pub async fn run(mut self) -> Result<(), Error> {
        loop {
            self.drive().await;
            if self.core.is_closed() {
                return self.finish();
            }
            self.core.plan_low_water(Instant::now());
            self.apply_low_water();
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
                Wake::Writable => self.core.writable(),
                Wake::Link(links::LinkWake::Readable(cid)) => self.read_link(cid),
                Wake::Link(links::LinkWake::Writable(cid)) => self.core.link_writable(cid),
                Wake::Timer => {
                    let now = Instant::now();
                    if self.core.low_water_deadline().is_some_and(|d| d <= now) {
                        // The wait for the low-water mark lasted its
                        // longest: take whatever is there.
                        self.read_ready();
                        let _ = self.core.low_water_timeout(now);
                        self.apply_low_water();
                    }
                    self.core.handle_timeout(now);
                }
            }
        }
    }

    /// The session is over: refuse what is still queued (with why it
    /// ended) and stop.
    fn finish(mut self) -> Result<(), Error> {
        self.close_links();
        let err = self.core.close_error().unwrap_or(Error::Closed(None));
        // Recorded before the channel closes: a client whose request finds
        // the channel closed reads it from there.
        let _ = self.reason.0.set(err.duplicate());
        self.requests.close();
        while let Ok(r) = self.requests.try_recv() {
            match r {
                Request::WaitLogin(tx) => drop(tx.try_send(Err(err.duplicate()))),
                Request::Negotiated(tx) => drop(tx),
                Request::Start { started, .. } => drop(started.try_send(Err(err.duplicate()))),
            }
        }
        match err {
            Error::Closed(None) => Ok(()),
            e => Err(e),
        }
    }

    /// Sets the socket's new receive low-water mark, if any.
    fn apply_low_water(&mut self) {
        if let Some(conn) = self.conn.as_ref() {
            let stream = conn.get_ref();
            self.core
                .apply_low_water(|m| iscsi_sys::set_recv_low_water(stream, m).is_ok());
        }
    }

    /// Waits for the next request, input, writability or deadline. Only
    /// the fields it needs are borrowed across the wait (the core, with
    /// its tap and reply callbacks, need not be `Sync`).
    fn wait(&self) -> impl Future<Output = Wake> + Send + '_ {
        let deadline = self.core.poll_timeout();
        let (conn, blocked) = (self.conn.as_ref(), self.core.wants_writable());
        let requests = (!self.orphaned).then_some(&self.requests);
        let link_blocked = links::blocked(&self.core, &self.links);
        Self::wait_for(requests, conn, blocked, deadline, &self.links, link_blocked)
    }

    async fn wait_for(
        requests: Option<&Receiver<Request>>,
        conn: Option<&Async<TcpStream>>,
        blocked: bool,
        deadline: Option<Instant>,
        links: &links::Links,
        link_blocked: Vec<u16>,
    ) -> Wake {
        let link =
            future::poll_fn(|cx| links::poll_links(links, &link_blocked, cx).map(Wake::Link));
        let requests = async {
            match requests {
                Some(r) => Wake::Request(r.recv().await.ok()),
                None => future::pending().await,
            }
        };
        let read = async {
            match conn {
                Some(c) => {
                    let _ = c.readable().await;
                    Wake::Readable
                }
                None => future::pending().await,
            }
        };
        let write = async {
            match conn {
                Some(c) if blocked => {
                    let _ = c.writable().await;
                    Wake::Writable
                }
                _ => future::pending().await,
            }
        };
        let timer = async {
            match deadline {
                Some(d) => {
                    Timer::at(d).await;
                    Wake::Timer
                }
                None => future::pending().await,
            }
        };
        requests.or(read).or(write).or(link).or(timer).await
    }

    /// All clients are gone: log out (or stop if not logged in).
    fn orphan(&mut self) {
        self.orphaned = true;
        let logout = Action::Logout(LogoutMode::AbortTasks);
        if self.core.start(Instant::now(), logout, true).is_err() {
            self.core.abandon();
        }
    }

    fn request(&mut self, r: Request) {
        match r {
            Request::Negotiated(tx) => {
                let _ = tx.try_send(self.core.session().negotiated().cloned());
            }
            Request::WaitLogin(tx) => {
                if self.core.session().is_logged_in() {
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
                let notify = Box::new(move |r| drop(done.try_send(r)));
                let r = self.core.start_notify(Instant::now(), action, notify);
                let _ = started.try_send(r);
            }
        }
    }

    /// The drain order: write, hand out events, carry out connection
    /// requests, repeat until nothing moves.
    async fn drive(&mut self) {
        loop {
            self.step();
            if self.core.has_link_request() {
                self.link_requests().await;
                continue;
            }
            match self.core.poll_conn() {
                Some(ConnRequest::Open(addr)) => {
                    self.close_conn();
                    self.open(addr).await;
                }
                Some(ConnRequest::Close) => self.close_conn(),
                None => return,
            }
        }
    }

    /// Writes until nothing is left or the socket would block, then hands
    /// out the events.
    fn step(&mut self) {
        self.write_links();
        if let Some(conn) = self.conn.as_ref() {
            let mut stream: &TcpStream = conn.get_ref();
            let w = self
                .core
                .write_with(Instant::now(), |s| stream.write_vectored(s));
            if let Written::Lost(_) = w {
                self.close_conn();
            }
        }
        while let Some(ev) = self.core.poll_event() {
            match &ev {
                Event::LoggedIn { .. } => {
                    for w in self.login_waiters.drain(..) {
                        let _ = w.try_send(Ok(()));
                    }
                }
                Event::Closed(_) => {
                    let err = self.core.close_error().unwrap_or(Error::Closed(None));
                    for w in self.login_waiters.drain(..) {
                        let _ = w.try_send(Err(err.duplicate()));
                    }
                }
                _ => {}
            }
            let _ = self.events.try_send(ev);
        }
    }

    /// Reads (a bounded number of times) until the socket would block,
    /// feeding the core and answering after each read.
    fn read_ready(&mut self) {
        for _ in 0..READS_PER_WAKE {
            let Some(conn) = self.conn.as_ref() else {
                return;
            };
            let mut stream: &TcpStream = conn.get_ref();
            match self.core.read_with(Instant::now(), |b| stream.read(b)) {
                Got::Bytes(_) => {
                    self.step();
                    if self.core.has_conn_request() {
                        return;
                    }
                }
                Got::Nothing => return,
                Got::Lost => return self.close_conn(),
            }
        }
    }

    fn close_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.get_ref().shutdown(std::net::Shutdown::Both);
        }
    }

    /// Connects where the core asked, racing the core's deadline (the
    /// login timeout covers the TCP connect).
    async fn open(&mut self, addr: String) {
        // Name resolution blocks (std has no other); IP literals do not.
        let resolved = addr.to_socket_addrs().and_then(|mut a| {
            a.next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
        });
        let connected = match resolved {
            Ok(sa) => {
                let connect = async { Some(Async::<TcpStream>::connect(sa).await) };
                let deadline = self.core.session_timeout();
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
        let up = connected.map(|r| {
            r.and_then(|s| {
                let _ = s.get_ref().set_nodelay(true);
                Ok((s.get_ref().local_addr()?, s.get_ref().peer_addr()?, s))
            })
        });
        match up {
            Some(Ok((local, peer, stream))) => {
                self.conn = Some(stream);
                self.core.connected(now, local, peer);
            }
            // The core decides: retry later (recovery) or close.
            Some(Err(e)) => self.core.connect_failed(now, e),
            None => drop(self.core.handle_timeout(now)),
        }
    }
}
