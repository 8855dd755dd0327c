//! `--driver std|mio|smol|tokio`: one small interface over the four initiator
//! drivers, with exactly what the commands need (connect and log in,
//! discover, run one command, keep several in flight for the benchmark,
//! the negotiated values, log out).
//!
//! - `std`: [`iscsi_std::Client`], blocking socket calls on this thread.
//! - `mio`: [`iscsi_mio::client::Blocking`], a private `mio::Poll` driven
//!   on this thread inside each call.
//!
//! The four drivers share their core (`iscsi_proto::driver`): one error
//! type ([`Describe`] has one implementation), the same replies, and the
//! byte tap that `--pcap` installs on each.
//! - `smol`: [`iscsi_smol::Driver`] runs on a dedicated thread under
//!   `async_io::block_on` (which also drives the async-io reactor); this
//!   thread blocks on replies with `futures_lite::future::block_on` (a
//!   plain parker, so it never takes the reactor from the driver thread).
//!   A submitted command is a future (submit, then wait for the outcome)
//!   polled once to queue the request, so `submit` does not wait for the
//!   driver thread; `wait_any` polls all of them.
//! - `tokio`: [`iscsi_tokio::Driver`] runs on a dedicated thread under a
//!   current-thread tokio runtime (I/O and time enabled); this thread
//!   blocks on replies exactly as for smol (the clients' channels are
//!   runtime-agnostic), through the same [`AsyncSession`].
//!
//! Commands in flight are named by a [`Tag`], unique among the session's
//! commands in flight.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::thread::JoinHandle;

use bytes::Bytes;
use clap::ValueEnum;
use futures_lite::future::block_on;
use iscsi_proto::driver::{reply, Error};
use iscsi_proto::error::{ConnectionError, TimerKind};
use iscsi_proto::initiator::{ScsiCommand, SessionConfig, TargetRecord, TaskId, TaskOutcome};
use iscsi_proto::login::negotiation::Negotiated;

/// Which driver runs the session.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DriverKind {
    /// Blocking `std::net` driver (`iscsi-std`).
    #[default]
    Std,
    /// `mio` event-loop driver (`iscsi-mio`).
    Mio,
    /// Async driver on `async-io` (`iscsi-smol`), on its own thread.
    Smol,
    /// Async driver on tokio (`iscsi-tokio`), on its own thread.
    Tokio,
}

impl DriverKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Std => "std",
            DriverKind::Mio => "mio",
            DriverKind::Smol => "smol",
            DriverKind::Tokio => "tokio",
        }
    }
}

pub use iscsi_proto::initiator::Completed;

/// A command in flight on a [`Session`] (unique while in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(TagKind);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TagKind {
    /// The core's task id (std, mio).
    Task(TaskId),
    /// A number of this wrapper's own (smol hands out futures, not ids).
    Local(u64),
}

type SmolWait = Pin<Box<dyn Future<Output = iscsi_proto::driver::Reply>>>;
type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, Error>>>>;

/// What the tool needs of an async driver's client (`iscsi_smol::Client`
/// and `iscsi_tokio::Client` have the same methods).
pub trait AsyncClient: Clone + 'static {
    /// Waits for the Full Feature Phase.
    fn logged_in(&self) -> Boxed<()>;
    /// Starts `action` and waits for its reply.
    fn run(&self, action: iscsi_proto::driver::Action) -> SmolWait;
    /// Logs out.
    fn logout(&self) -> Boxed<()>;
}

macro_rules! async_client {
    ($t:ty) => {
        impl AsyncClient for $t {
            fn logged_in(&self) -> Boxed<()> {
                let c = self.clone();
                Box::pin(async move { c.logged_in().await })
            }
            fn run(&self, action: iscsi_proto::driver::Action) -> SmolWait {
                let c = self.clone();
                Box::pin(async move { c.start(action).await?.wait().await })
            }
            fn logout(&self) -> Boxed<()> {
                let c = self.clone();
                Box::pin(async move { c.logout().await.map(drop) })
            }
        }
    };
}
async_client!(iscsi_smol::Client);
async_client!(iscsi_tokio::Client);

/// An async driver (smol or tokio): the client handle, the driver thread
/// and the tasks in flight.
pub struct AsyncSession<C> {
    client: C,
    thread: Option<JoinHandle<Result<(), Error>>>,
    pending: Vec<(Tag, SmolWait)>,
    next_tag: u64,
}

/// The smol driver's session.
pub type SmolSession = AsyncSession<iscsi_smol::Client>;

/// A logged-in session on one of the drivers.
pub struct Session {
    inner: Inner,
    /// Commands submitted and not yet collected by `wait_any`.
    outstanding: usize,
}

enum Inner {
    /// `iscsi-std`.
    Std(Box<iscsi_std::Client>),
    /// `iscsi-mio`.
    Mio(Box<iscsi_mio::client::Blocking>),
    /// `iscsi-smol`.
    Smol(Box<SmolSession>),
    /// `iscsi-tokio`.
    Tokio(Box<AsyncSession<iscsi_tokio::Client>>),
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Session({}, {} in flight)",
            self.kind().name(),
            self.outstanding
        )
    }
}

/// Starts the smol driver on its own thread.
fn smol_start(
    portal: &str,
    config: SessionConfig,
    opts: iscsi_std::Options,
) -> Result<(iscsi_smol::Client, JoinHandle<Result<(), Error>>), String> {
    let (client, driver) = iscsi_smol::Client::new(portal, config).map_err(|e| e.describe())?;
    let mut driver = driver.with_coalesce(opts.coalesce);
    if let Some(tap) = opts.tap {
        driver = driver.with_tap(tap);
    }
    let thread = std::thread::Builder::new()
        .name("iscsi-smol-driver".into())
        .spawn(move || async_io::block_on(driver.run()))
        .map_err(|e| format!("cannot start the smol driver thread: {e}"))?;
    Ok((client, thread))
}

/// Starts the tokio driver on its own thread (a current-thread runtime
/// with I/O and time).
fn tokio_start(
    portal: &str,
    config: SessionConfig,
    opts: iscsi_std::Options,
) -> Result<(iscsi_tokio::Client, JoinHandle<Result<(), Error>>), String> {
    let (client, driver) = iscsi_tokio::Client::new(portal, config).map_err(|e| e.describe())?;
    let mut driver = driver.with_coalesce(opts.coalesce);
    if let Some(tap) = opts.tap {
        driver = driver.with_tap(tap);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let thread = std::thread::Builder::new()
        .name("iscsi-tokio-driver".into())
        .spawn(move || runtime.block_on(driver.run()))
        .map_err(|e| format!("cannot start the tokio driver thread: {e}"))?;
    Ok((client, thread))
}

/// Logs in on an async driver started by `start`.
fn async_connect<C: AsyncClient>(
    (client, thread): (C, JoinHandle<Result<(), Error>>),
) -> Result<Box<AsyncSession<C>>, String> {
    match block_on(client.logged_in()) {
        Ok(()) => Ok(Box::new(AsyncSession {
            client,
            thread: Some(thread),
            pending: Vec::new(),
            next_tag: 0,
        })),
        Err(e) => {
            drop(client);
            Err(smol_failure(e, thread))
        }
    }
}

/// A discovery session on an async driver started by `start`.
fn async_discover<C: AsyncClient>(
    (client, thread): (C, JoinHandle<Result<(), Error>>),
) -> Result<Vec<TargetRecord>, String> {
    let result = block_on(async {
        client.logged_in().await?;
        let targets = reply::targets(client.run(iscsi_proto::driver::Action::SendTargets).await)?;
        client.logout().await?;
        Ok(targets)
    });
    drop(client);
    match result {
        Ok(targets) => {
            let _ = thread.join();
            Ok(targets)
        }
        Err(e) => Err(smol_failure(e, thread)),
    }
}

/// Why an async (smol, tokio) session failed. A request that reaches the driver after it
/// ended only learns "session closed"; the driver's own result names the
/// cause (e.g. "connection refused"), so the thread is joined for it. The
/// driver ends once the session failed or (with the client dropped) logs
/// out, so the join does not hang.
fn smol_failure(e: Error, thread: JoinHandle<Result<(), Error>>) -> String {
    match (e, thread.join()) {
        (Error::Closed(None), Ok(Err(cause))) => cause.describe(),
        (e, _) => e.describe(),
    }
}

/// A mio session set up as the options ask (coalescing, the tap), not
/// logged in yet.
fn mio_start(
    portal: &str,
    config: SessionConfig,
    opts: iscsi_std::Options,
) -> Result<iscsi_mio::client::Blocking, Error> {
    let mut b = iscsi_mio::client::Blocking::new(portal, config)?;
    b.client().set_coalesce(opts.coalesce);
    if let Some(tap) = opts.tap {
        b.client().set_tap(tap);
    }
    b.login()?;
    Ok(b)
}

/// One line for a failure of any driver. Most errors say it well
/// already; a timeout names the exchange that went unanswered.
pub trait Describe {
    /// The message.
    fn describe(&self) -> String;
}

/// The line for a failed TCP connect, the same on every driver.
pub fn describe_connect(addr: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!("connection refused: {addr}"),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            format!("connection timed out: {addr}")
        }
        _ => format!("cannot connect to {addr}: {e}"),
    }
}

/// The line for a session failure.
pub fn describe_connection(e: &ConnectionError) -> String {
    match e {
        ConnectionError::TimedOut(TimerKind::Login) => {
            "login timed out: the target did not complete the login in time (see --timeout)".into()
        }
        ConnectionError::TimedOut(TimerKind::Keepalive) => {
            "the target stopped answering: a keepalive NOP-Out went unanswered (RFC 7143 section 11.18; see --timeout)".into()
        }
        ConnectionError::TimedOut(TimerKind::Logout) => {
            "logout timed out: the target did not answer the Logout Request".into()
        }
        ConnectionError::RecoveryFailed { attempts, last } => format!(
            "session recovery failed after {attempts} attempts: {}",
            describe_connection(last)
        ),
        e => e.to_string(),
    }
}

/// Every driver's error (`iscsi_std::Error`, `iscsi_mio::client::Error`
/// and `iscsi_smol::Error` are this one type).
impl Describe for Error {
    fn describe(&self) -> String {
        match self {
            Error::Login(c) | Error::Closed(Some(c)) => describe_connection(c),
            Error::Connect { addr, source } => describe_connect(addr, source),
            e => e.to_string(),
        }
    }
}

impl Describe for iscsi_proto::error::UsageError {
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl Session {
    /// Connects to `portal` and logs in with `config` on driver `kind`.
    /// `opts`: the socket options apply to `std` only, the coalescing and
    /// the byte tap (`--pcap`) to every driver.
    pub fn connect(
        kind: DriverKind,
        portal: &str,
        config: SessionConfig,
        opts: iscsi_std::Options,
    ) -> Result<Session, String> {
        let inner = match kind {
            DriverKind::Std => iscsi_std::Client::connect(portal, config, opts)
                .map(|c| Inner::Std(Box::new(c)))
                .map_err(|e| e.describe()),
            DriverKind::Mio => mio_start(portal, config, opts)
                .map(|blocking| Inner::Mio(Box::new(blocking)))
                .map_err(|e| e.describe()),
            DriverKind::Smol => async_connect(smol_start(portal, config, opts)?).map(Inner::Smol),
            DriverKind::Tokio => {
                async_connect(tokio_start(portal, config, opts)?).map(Inner::Tokio)
            }
        }?;
        let mut session = Session {
            inner,
            outstanding: 0,
        };
        session.await_connections()?;
        if let Some(n) = session.negotiated() {
            // `iscsi -v`: what the session runs with (RFC 7143 sections
            // 13.2 MaxConnections, 13.20 ErrorRecoveryLevel).
            tracing::info!(
                target: "iscsi::login",
                ErrorRecoveryLevel = n.error_recovery_level,
                MaxConnections = n.max_connections,
                connections = session.connections().unwrap_or(1),
                "session ready"
            );
        }
        Ok(session)
    }

    /// Drives the session until every connection the driver opened
    /// (up to the negotiated MaxConnections) has logged in or been given
    /// up (`std` and `mio`; the async drivers bring theirs up on their own
    /// thread).
    fn await_connections(&mut self) -> Result<(), String> {
        let all_up = |s: &iscsi_proto::initiator::Session| {
            s.connection_ids().iter().all(|c| s.is_connection_up(*c))
        };
        match &mut self.inner {
            Inner::Std(c) => {
                while !c.with_session(all_up) {
                    c.poll_idle().map_err(|e| e.describe())?;
                }
                Ok(())
            }
            Inner::Mio(m) => m
                .run_until(|c| all_up(c.session()))
                .map_err(|e| e.describe()),
            Inner::Smol(_) | Inner::Tokio(_) => Ok(()),
        }
    }

    /// The connections of the session in the Full Feature Phase (`None`
    /// on the async drivers, whose clients do not expose the session).
    pub fn connections(&mut self) -> Option<usize> {
        let up = |s: &iscsi_proto::initiator::Session| {
            s.connection_ids()
                .iter()
                .filter(|c| s.is_connection_up(**c))
                .count()
        };
        match &mut self.inner {
            Inner::Std(c) => Some(c.with_session(up)),
            Inner::Mio(m) => Some(up(m.client().session())),
            Inner::Smol(_) | Inner::Tokio(_) => None,
        }
    }

    /// What the session counted (`None` on the async drivers, whose
    /// clients do not expose the session).
    pub fn stats(&mut self) -> Option<iscsi_proto::stats::SessionStats> {
        match &mut self.inner {
            Inner::Std(c) => Some(c.with_session(|s| *s.stats())),
            Inner::Mio(m) => Some(*m.client().session().stats()),
            Inner::Smol(_) | Inner::Tokio(_) => None,
        }
    }

    /// A discovery session (SendTargets=All) on driver `kind`, logged out
    /// before returning.
    pub fn discover(
        kind: DriverKind,
        portal: &str,
        config: SessionConfig,
        opts: iscsi_std::Options,
    ) -> Result<Vec<TargetRecord>, String> {
        match kind {
            DriverKind::Std => {
                iscsi_std::Client::discover(portal, config, opts).map_err(|e| e.describe())
            }
            DriverKind::Mio => mio_start(portal, config, opts)
                .and_then(|b| b.discover_targets())
                .map_err(|e| e.describe()),
            DriverKind::Smol => async_discover(smol_start(portal, config, opts)?),
            DriverKind::Tokio => async_discover(tokio_start(portal, config, opts)?),
        }
    }

    /// Which driver runs this session.
    pub fn kind(&self) -> DriverKind {
        match &self.inner {
            Inner::Std(_) => DriverKind::Std,
            Inner::Mio(_) => DriverKind::Mio,
            Inner::Smol(_) => DriverKind::Smol,
            Inner::Tokio(_) => DriverKind::Tokio,
        }
    }

    /// The operational values agreed at login (`None` on the async
    /// drivers, whose clients do not expose the session's getters).
    pub fn negotiated(&mut self) -> Option<Negotiated> {
        match &mut self.inner {
            Inner::Std(c) => c.session().negotiated().cloned(),
            Inner::Mio(m) => m.client().session().negotiated().cloned(),
            Inner::Smol(_) | Inner::Tokio(_) => None,
        }
    }

    /// Runs one SCSI command to completion (any status).
    pub fn execute(&mut self, cmd: ScsiCommand) -> Result<Completed, String> {
        match &mut self.inner {
            Inner::Std(c) => c.execute(cmd).map_err(|e| e.describe()),
            Inner::Mio(m) => m.execute(cmd).map_err(|e| e.describe()),
            Inner::Smol(s) => s.execute(cmd),
            Inner::Tokio(s) => s.execute(cmd),
        }
    }

    /// Submits a command without waiting; [`Session::wait_any`] collects
    /// it. On smol the core's refusal of a command (a usage error) comes
    /// from `wait_any`, as the submit does not wait for the driver thread.
    pub fn submit(&mut self, cmd: ScsiCommand) -> Result<Tag, String> {
        let tag = match &mut self.inner {
            Inner::Std(c) => Tag(TagKind::Task(c.submit(cmd).map_err(|e| e.describe())?)),
            Inner::Mio(m) => Tag(TagKind::Task(m.submit(cmd).map_err(|e| e.describe())?)),
            Inner::Smol(s) => s.submit(cmd),
            Inner::Tokio(s) => s.submit(cmd),
        };
        self.outstanding += 1;
        Ok(tag)
    }

    /// Waits for whichever submitted task ends first: its id, outcome and
    /// read data. Fails (rather than blocking forever) when nothing is in
    /// flight.
    pub fn wait_any(&mut self) -> Result<(Tag, TaskOutcome, Bytes), String> {
        if self.outstanding == 0 {
            return Err("no command in flight".into());
        }
        let r = self.wait_any_inner();
        self.outstanding -= 1;
        r
    }

    fn wait_any_inner(&mut self) -> Result<(Tag, TaskOutcome, Bytes), String> {
        match &mut self.inner {
            Inner::Std(c) => c
                .wait_any()
                .map(|(t, o, d)| (Tag(TagKind::Task(t)), o, d))
                .map_err(|e| e.describe()),
            // `outstanding` (checked by `wait_any`) says a task is in
            // flight: the wait cannot block forever.
            Inner::Mio(m) => m
                .wait_any()
                .map(|(t, o, d)| (Tag(TagKind::Task(t)), o, d))
                .map_err(|e| e.describe()),
            Inner::Smol(s) => s.wait_any(),
            Inner::Tokio(s) => s.wait_any(),
        }
    }

    /// Logs out (after outstanding tasks finish) and closes the
    /// connection; on smol also waits for the driver thread to end.
    pub fn logout(self) -> Result<(), String> {
        match self.inner {
            Inner::Std(c) => c.logout().map(drop).map_err(|e| e.describe()),
            Inner::Mio(m) => m.logout().map(drop).map_err(|e| e.describe()),
            Inner::Smol(s) => s.logout(),
            Inner::Tokio(s) => s.logout(),
        }
    }
}

impl<C: AsyncClient> AsyncSession<C> {
    fn execute(&mut self, cmd: ScsiCommand) -> Result<Completed, String> {
        let r = block_on(self.client.run(iscsi_proto::driver::Action::Scsi(cmd)));
        reply::scsi(r).map_err(|e| e.describe())
    }

    fn submit(&mut self, cmd: ScsiCommand) -> Tag {
        let mut task = self.client.run(iscsi_proto::driver::Action::Scsi(cmd));
        // The first poll queues the request (an unbounded channel)
        // and then waits for the driver's answer. If the driver
        // thread already answered, the result (even a refusal) is
        // kept for `wait_any` like any other: whether it was that
        // fast is a race, so `submit` must not depend on it.
        if let Some(r) = block_on(futures_lite::future::poll_once(task.as_mut())) {
            task = Box::pin(futures_lite::future::ready(r));
        }
        let tag = Tag(TagKind::Local(self.next_tag));
        self.next_tag = self.next_tag.wrapping_add(1);
        self.pending.push((tag, task));
        tag
    }

    fn wait_any(&mut self) -> Result<(Tag, TaskOutcome, Bytes), String> {
        if self.pending.is_empty() {
            return Err("no command in flight".into());
        }
        let pending = &mut self.pending;
        let (i, reply) = block_on(futures_lite::future::poll_fn(|cx| {
            for (i, (_, wait)) in pending.iter_mut().enumerate() {
                if let Poll::Ready(r) = wait.as_mut().poll(cx) {
                    return Poll::Ready((i, r));
                }
            }
            Poll::Pending
        }));
        let (task, _) = self.pending.swap_remove(i);
        let (outcome, data) = reply.map_err(|e| e.describe())?;
        Ok((task, outcome, data))
    }

    /// Logs out and waits for the driver thread to end.
    fn logout(mut self: Box<Self>) -> Result<(), String> {
        let result = block_on(self.client.logout());
        self.pending.clear();
        let thread = self.thread.take();
        drop(self);
        let ended = match thread.map(JoinHandle::join) {
            Some(Err(_)) => Err("the async driver thread panicked".to_string()),
            _ => Ok(()),
        };
        result.map_err(|e| e.describe())?;
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iscsi_mio::server::{LunSpec, Server, TargetConfig};
    use iscsi_proto::scsi::cdb::{self, Capacity, RwFlags};
    use iscsi_proto::scsi::lun::Lun;
    use std::collections::HashMap;
    use std::net::SocketAddr;

    const TARGET: &str = "iqn.2026-11.rs.iscsi:driver-test";
    const INITIATOR: &str = "iqn.2026-11.rs.iscsi:driver-test-initiator";

    /// An embedded target (mio server, 16 MiB RAM disk) on a free loopback
    /// port, stopped when `f` returns.
    fn with_target(f: impl FnOnce(String)) {
        let mut cfg = TargetConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), TARGET);
        cfg.luns.push(LunSpec::Ram(16 << 20));
        cfg.log = false;
        let server = Server::bind(cfg).unwrap();
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || {
            let mut server = server;
            server.run()
        });
        f(addr.to_string());
        stop.shutdown();
        thread.join().unwrap().unwrap();
    }

    fn config() -> SessionConfig {
        SessionConfig::new(INITIATOR)
            .with_target(TARGET)
            .with_operational(crate::tool::tuned_params())
    }

    /// Every driver: discovery, login, negotiated values, READ CAPACITY,
    /// 32 writes then 32 reads in flight, each collected exactly once by
    /// `wait_any` and checked, `wait_any` with nothing in flight fails,
    /// logout.
    fn exercise(kind: DriverKind) {
        with_target(|portal| {
            let found = Session::discover(
                kind,
                &portal,
                SessionConfig::new(INITIATOR),
                Default::default(),
            )
            .unwrap();
            assert!(found.iter().any(|t| t.name == TARGET), "{found:?}");

            let mut s = Session::connect(kind, &portal, config(), Default::default()).unwrap();
            assert_eq!(s.kind(), kind);
            match kind {
                DriverKind::Smol | DriverKind::Tokio => assert!(s.negotiated().is_none()),
                _ => {
                    let n = s.negotiated().expect("negotiated values after login");
                    assert!(n.max_burst_length >= 8192);
                }
            }
            let lun = Lun::from_number(0);
            let cap = s
                .execute(ScsiCommand::read(lun, cdb::read_capacity10().to_vec(), 8))
                .unwrap();
            let cap = Capacity::parse10(&cap.data).unwrap();
            assert_eq!(cap.total_bytes(), Some(16 << 20));
            let bs = cap.block_len;
            assert!(s.wait_any().unwrap_err().contains("no command in flight"));
            // A command the core refuses (no CDB) fails at submit, or on
            // smol (whose submit does not wait for the driver) at wait_any;
            // either way nothing stays in flight and the session works on.
            match s.submit(ScsiCommand::new(lun, Vec::<u8>::new())) {
                Err(e) => assert!(!is_async(kind), "{e}"),
                Ok(_) => {
                    assert!(is_async(kind));
                    let e = s.wait_any().unwrap_err();
                    assert!(!e.contains("no command in flight"), "{e}");
                }
            }
            assert!(s.wait_any().unwrap_err().contains("no command in flight"));

            const N: usize = 32;
            const PER: usize = 16 * 1024;
            let data = Bytes::from(crate::bench::XorShift::new(kind as u64 + 7).bytes(N * PER));
            let blocks = (PER as u32) / bs;
            let lba = |i: usize| 100 + (i as u64) * u64::from(blocks);
            let mut writes = HashMap::new();
            for i in 0..N {
                let cdb = cdb::write16(lba(i), blocks, RwFlags::default());
                let chunk = data.slice(i * PER..(i + 1) * PER);
                let t = s.submit(ScsiCommand::write(lun, cdb, chunk)).unwrap();
                assert!(writes.insert(t, i).is_none(), "task id reused");
            }
            for _ in 0..N {
                let (t, outcome, _) = s.wait_any().unwrap();
                assert!(
                    writes.remove(&t).is_some(),
                    "unknown or repeated task {t:?}"
                );
                assert!(
                    matches!(outcome, TaskOutcome::Scsi(ref r) if r.is_good()),
                    "{outcome:?}"
                );
            }
            assert!(writes.is_empty());
            assert!(s.wait_any().is_err());

            let mut reads = HashMap::new();
            for i in 0..N {
                let cdb = cdb::read16(lba(i), blocks, RwFlags::default());
                let t = s.submit(ScsiCommand::read(lun, cdb, PER as u32)).unwrap();
                reads.insert(t, i);
            }
            for _ in 0..N {
                let (t, outcome, got) = s.wait_any().unwrap();
                let i = reads.remove(&t).expect("unknown or repeated task");
                assert!(
                    matches!(outcome, TaskOutcome::Scsi(ref r) if r.is_good()),
                    "{outcome:?}"
                );
                assert!(got[..] == data[i * PER..(i + 1) * PER], "read {i} differs");
            }
            // One command through `execute` after the batch.
            let one = s
                .execute(ScsiCommand::read(
                    lun,
                    cdb::read16(lba(5), blocks, RwFlags::default()).to_vec(),
                    PER as u32,
                ))
                .unwrap();
            assert!(one.data[..] == data[5 * PER..6 * PER]);
            s.logout().unwrap();
        });
    }

    #[test]
    fn std_driver() {
        exercise(DriverKind::Std);
    }

    #[test]
    fn mio_driver() {
        exercise(DriverKind::Mio);
    }

    #[test]
    fn smol_driver() {
        exercise(DriverKind::Smol);
    }

    #[test]
    fn tokio_driver() {
        exercise(DriverKind::Tokio);
    }

    fn is_async(kind: DriverKind) -> bool {
        matches!(kind, DriverKind::Smol | DriverKind::Tokio)
    }

    /// A refused connection is an error on every driver, not a hang.
    #[test]
    fn connection_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let portal = l.local_addr().unwrap().to_string();
        drop(l);
        for kind in DriverKind::value_variants().iter().copied() {
            let e = Session::connect(kind, &portal, config(), Default::default()).unwrap_err();
            assert!(e.contains("refused"), "{kind:?}: {e}");
        }
    }

    #[test]
    fn names_match_the_command_line() {
        for kind in DriverKind::value_variants().iter().copied() {
            assert_eq!(DriverKind::from_str(kind.name(), false).unwrap(), kind);
        }
        assert_eq!(DriverKind::default(), DriverKind::Std);
    }
}
