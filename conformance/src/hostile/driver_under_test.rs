//! The four initiator drivers behind one small interface, used the way
//! an application would use each: `iscsi_std::Client`, a hand-written loop
//! over `iscsi_mio::client::Client` on a private `mio::Poll`, and
//! `iscsi_smol::Client` / `iscsi_tokio::Client` with its `Driver` on a
//! dedicated thread.
//!
//! Errors are kept typed ([`DrvError`]) so that cells can assert the exact
//! `ConnectionError` / `TaskError` the core reported through each driver.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, TaskError};
use iscsi_proto::initiator::{Action, LogoutMode, ScsiCommand, SessionConfig, TaskId, TaskOutcome};

/// Which driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `iscsi-std`, blocking.
    Std,
    /// `iscsi-mio`, event loop.
    Mio,
    /// `iscsi-smol`, async.
    Smol,
    /// `iscsi-tokio`, async.
    Tokio,
}

impl Kind {
    /// All four.
    pub const ALL: [Kind; 4] = [Kind::Std, Kind::Mio, Kind::Smol, Kind::Tokio];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Std => "std",
            Kind::Mio => "mio",
            Kind::Smol => "smol",
            Kind::Tokio => "tokio",
        }
    }
}

/// A driver error with the core's typed reasons kept.
#[derive(Debug)]
pub enum DrvError {
    /// The session ended with this reason (`None`: a clean close).
    Connection(Option<ConnectionError>),
    /// A task failed.
    Task(TaskError),
    /// Anything else (usage, I/O, unexpected outcomes), as text.
    Other(String),
}

impl std::fmt::Display for DrvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrvError::Connection(Some(e)) => write!(f, "session closed: {e}"),
            DrvError::Connection(None) => write!(f, "session closed"),
            DrvError::Task(e) => write!(f, "task failed: {e}"),
            DrvError::Other(s) => f.write_str(s),
        }
    }
}

/// The drivers' one error type (`iscsi_std::Error`,
/// `iscsi_mio::client::Error` and `iscsi_smol::Error` are
/// `iscsi_proto::driver::Error`): a refused login or a session that ended
/// is a `Connection`.
impl From<iscsi_std::Error> for DrvError {
    fn from(e: iscsi_std::Error) -> Self {
        use iscsi_std::Error as E;
        match e {
            E::Login(c) => DrvError::Connection(Some(c)),
            E::Closed(c) => DrvError::Connection(c),
            E::Task(t) => DrvError::Task(t),
            e => DrvError::Other(e.to_string()),
        }
    }
}

impl From<DrvError> for String {
    fn from(e: DrvError) -> String {
        e.to_string()
    }
}

/// What the cells need from a driver.
pub trait Drv {
    /// Which driver this is.
    fn kind(&self) -> Kind;
    /// Starts a SCSI command (returns once the core accepted it).
    fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, DrvError>;
    /// Drives the session until `task` ends; its outcome (also a
    /// `TaskOutcome::Failed`) and read data.
    fn wait(&mut self, task: TaskId) -> Result<(TaskOutcome, Bytes), DrvError>;
    /// Drives the session until it ends, for at most `limit`; why it
    /// ended (`None`: logged out).
    fn closed_reason(&mut self, limit: Duration) -> Result<Option<ConnectionError>, String>;
    /// Logs out.
    fn logout(self: Box<Self>) -> Result<(), DrvError>;
    /// Non-immediate commands the core holds back (window closed), where
    /// the driver can tell.
    fn queued(&self) -> Option<usize>;
}

/// Connects and logs in with driver `kind`.
pub fn connect(kind: Kind, portal: &str, cfg: SessionConfig) -> Result<Box<dyn Drv>, DrvError> {
    Ok(match kind {
        Kind::Std => Box::new(StdDrv(iscsi_std::Client::connect(
            portal,
            cfg,
            iscsi_std::Options::default(),
        )?)),
        Kind::Mio => Box::new(MioDrv::connect(portal, cfg)?),
        Kind::Smol => Box::new(SmolDrv::connect(portal, cfg)?),
        Kind::Tokio => Box::new(TokioDrv::connect(portal, cfg)?),
    })
}

/// Runs one command to completion: its outcome and data.
pub fn run(d: &mut dyn Drv, cmd: ScsiCommand) -> Result<(TaskOutcome, Bytes), DrvError> {
    let t = d.submit(cmd)?;
    d.wait(t)
}

// ------------------------------------------------------------------ std

/// `iscsi_std::Client`.
pub struct StdDrv(pub iscsi_std::Client);

impl Drv for StdDrv {
    fn kind(&self) -> Kind {
        Kind::Std
    }
    fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, DrvError> {
        Ok(self.0.submit(cmd)?)
    }
    fn wait(&mut self, task: TaskId) -> Result<(TaskOutcome, Bytes), DrvError> {
        Ok(self.0.wait(task)?)
    }
    fn closed_reason(&mut self, limit: Duration) -> Result<Option<ConnectionError>, String> {
        std_closed_reason(&mut self.0, limit)
    }
    fn logout(self: Box<Self>) -> Result<(), DrvError> {
        self.0.logout().map(drop).map_err(DrvError::from)
    }
    fn queued(&self) -> Option<usize> {
        Some(self.0.session().queued_commands())
    }
}

/// Idles `c` until its session ends (at most `limit`): the close reason.
pub fn std_closed_reason(
    c: &mut iscsi_std::Client,
    limit: Duration,
) -> Result<Option<ConnectionError>, String> {
    let until = Instant::now() + limit;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match c.idle(left) {
            Ok(()) if left.is_zero() => {
                return Err(format!("the session was still open after {limit:?}"))
            }
            Ok(()) => {}
            Err(iscsi_std::Error::Login(e)) => return Ok(Some(e)),
            Err(iscsi_std::Error::Closed(e)) => return Ok(e),
            Err(e) => return Err(format!("idle: {e}")),
        }
    }
}

// ------------------------------------------------------------------ mio

use iscsi_mio::client::Client as MioClient;

/// `iscsi_mio::client::Client` on a private `Poll`, driven by a loop
/// written here (the caller's loop of the crate's docs, with a deadline).
pub struct MioDrv {
    poll: mio::Poll,
    events: mio::Events,
    client: MioClient,
}

impl MioDrv {
    fn connect(portal: &str, cfg: SessionConfig) -> Result<MioDrv, DrvError> {
        let poll = mio::Poll::new().map_err(|e| DrvError::Other(e.to_string()))?;
        let registry = poll
            .registry()
            .try_clone()
            .map_err(iscsi_std::Error::from)?;
        let client = MioClient::new(portal, cfg, &std::sync::Arc::new(registry), mio::Token(0))?;
        let mut m = MioDrv {
            poll,
            events: mio::Events::with_capacity(64),
            client,
        };
        m.run(|c| c.session().is_logged_in(), None)?;
        Ok(m)
    }

    /// Drives the client until `done` (`Ok(true)`), `until` (`Ok(false)`)
    /// or the session's end (its error).
    fn run(
        &mut self,
        mut done: impl FnMut(&mut MioClient) -> bool,
        until: Option<Instant>,
    ) -> Result<bool, DrvError> {
        loop {
            while self.client.poll_event().is_some() {}
            if done(&mut self.client) {
                return Ok(true);
            }
            if let Some(e) = self.client.close_error() {
                return Err(e.into());
            }
            let now = Instant::now();
            if until.is_some_and(|u| now >= u) {
                return Ok(false);
            }
            let deadline = match (self.client.poll_timeout(), until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = deadline.map(|d| d.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(DrvError::Other(e.to_string()));
                }
            }
            for ev in self.events.iter() {
                self.client.handle_event(ev)?;
            }
            self.client.handle_timeout()?;
        }
    }
}

impl Drv for MioDrv {
    fn kind(&self) -> Kind {
        Kind::Mio
    }
    fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, DrvError> {
        Ok(self.client.start_collected(Action::Scsi(cmd))?)
    }
    fn wait(&mut self, task: TaskId) -> Result<(TaskOutcome, Bytes), DrvError> {
        let mut got = None;
        let r = self.run(
            |c| {
                got = c.take_completed(task);
                got.is_some()
            },
            None,
        );
        if got.is_none() {
            got = self.client.take_completed(task);
        }
        match (got, r) {
            (Some(g), _) => Ok(g?),
            (None, Err(e)) => Err(e),
            (None, Ok(_)) => Err(DrvError::Other("task vanished".into())),
        }
    }
    fn closed_reason(&mut self, limit: Duration) -> Result<Option<ConnectionError>, String> {
        match self.run(|_| false, Some(Instant::now() + limit)) {
            Ok(_) => Err(format!("the session was still open after {limit:?}")),
            Err(DrvError::Connection(c)) => Ok(c),
            Err(e) => Err(e.to_string()),
        }
    }
    fn logout(mut self: Box<Self>) -> Result<(), DrvError> {
        let t = self
            .client
            .start_collected(Action::Logout(LogoutMode::WaitForTasks))?;
        match self.wait(t)? {
            (TaskOutcome::LoggedOut(_), _) => Ok(()),
            (TaskOutcome::Failed(e), _) => Err(DrvError::Task(e)),
            (o, _) => Err(DrvError::Other(format!("logout: {o:?}"))),
        }
    }
    fn queued(&self) -> Option<usize> {
        Some(self.client.session().queued_commands())
    }
}

// ------------------------------------------------------------------ smol, tokio

/// An async driver's `Client` (`$krate`: iscsi_smol or iscsi_tokio, the
/// same API) with its driver on a dedicated thread run by `$run`; the
/// driver's own result (why the session ended) comes over a channel.
macro_rules! async_drv {
    ($name:ident, $krate:ident, $kind:expr, $label:literal, $run:expr) => {
        /// An async driver's `Client` with its driver on a dedicated thread.
        pub struct $name {
            client: $krate::Client,
            pending: HashMap<TaskId, $krate::Pending>,
            result: mpsc::Receiver<Result<(), $krate::Error>>,
        }

        impl $name {
            fn connect(portal: &str, cfg: SessionConfig) -> Result<$name, DrvError> {
                let (client, driver) = $krate::Client::new(portal, cfg)?;
                let (tx, result) = mpsc::channel();
                std::thread::Builder::new()
                    .name(format!("hostile-{}", $label))
                    .spawn(move || {
                        let _ = tx.send(($run)(driver));
                    })
                    .map_err(|e| DrvError::Other(format!("driver thread: {e}")))?;
                match futures_lite::future::block_on(client.logged_in()) {
                    Ok(()) => Ok($name {
                        client,
                        pending: HashMap::new(),
                        result,
                    }),
                    Err(e) => {
                        drop(client);
                        // The driver's own result names the cause.
                        match result.recv_timeout(Duration::from_secs(10)) {
                            Ok(Err(cause)) => Err(cause.into()),
                            _ => Err(e.into()),
                        }
                    }
                }
            }
        }

        impl Drv for $name {
            fn kind(&self) -> Kind {
                $kind
            }
            fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, DrvError> {
                let p = futures_lite::future::block_on(self.client.submit(cmd))?;
                let id = p.id();
                self.pending.insert(id, p);
                Ok(id)
            }
            fn wait(&mut self, task: TaskId) -> Result<(TaskOutcome, Bytes), DrvError> {
                let p = self
                    .pending
                    .remove(&task)
                    .ok_or_else(|| DrvError::Other(format!("unknown task {task:?}")))?;
                Ok(futures_lite::future::block_on(p.wait())?)
            }
            fn closed_reason(
                &mut self,
                limit: Duration,
            ) -> Result<Option<ConnectionError>, String> {
                match self.result.recv_timeout(limit) {
                    Ok(Ok(())) => Ok(None),
                    Ok(Err(e)) => match DrvError::from(e) {
                        DrvError::Connection(c) => Ok(c),
                        e => Err(e.to_string()),
                    },
                    Err(_) => Err(format!("the driver was still running after {limit:?}")),
                }
            }
            fn logout(self: Box<Self>) -> Result<(), DrvError> {
                futures_lite::future::block_on(self.client.logout())?;
                match self.result.recv_timeout(Duration::from_secs(10)) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(DrvError::Other(
                        "the driver did not end after logout".into(),
                    )),
                }
            }
            fn queued(&self) -> Option<usize> {
                None
            }
        }
    };
}

async_drv!(
    SmolDrv,
    iscsi_smol,
    Kind::Smol,
    "smol",
    |d: iscsi_smol::Driver| { async_io::block_on(d.run()) }
);
async_drv!(
    TokioDrv,
    iscsi_tokio,
    Kind::Tokio,
    "tokio",
    |d: iscsi_tokio::Driver| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(d.run()),
            Err(e) => Err(iscsi_tokio::Error::Io(e)),
        }
    }
);
