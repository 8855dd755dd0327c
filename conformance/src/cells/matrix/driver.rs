//! The four initiator drivers behind one small trait, so the matrix cell
//! body is written once: `iscsi-std`'s blocking `Client`, `iscsi-mio`'s
//! ready-made `Blocking` loop (plus `Client::start_collected` for ABORT
//! TASK), and `iscsi-smol`'s and `iscsi-tokio`'s `Client` with its `Driver`
//! on a thread of its own (under `async_io::block_on`, or a current-thread
//! tokio runtime).

use bytes::Bytes;
use iscsi_proto::error::UsageError;
use iscsi_proto::initiator::{
    Action, ScsiCommand, ScsiResult, SessionConfig, TargetRecord, TaskId, TaskOutcome,
};
use iscsi_proto::login::negotiation::Negotiated;
use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};
use std::thread::JoinHandle;

/// Which driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `iscsi-std` (blocking).
    Std,
    /// `iscsi-mio` (event loop).
    Mio,
    /// `iscsi-smol` (async).
    Smol,
    /// `iscsi-tokio` (async).
    Tokio,
}

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [Kind::Std, Kind::Mio, Kind::Smol, Kind::Tokio];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Std => "std",
            Kind::Mio => "mio",
            Kind::Smol => "smol",
            Kind::Tokio => "tokio",
        }
    }
}

/// How ending a session (logout, or the logout after SendTargets) failed.
#[derive(Debug)]
pub(crate) enum EndError {
    /// The session closed without the Logout Response (istgt does that now
    /// and then; the caller decides, from the target's log, if it counts).
    NoResponse(String),
    /// Anything else.
    Other(String),
}

impl EndError {
    pub(crate) fn message(&self) -> &str {
        match self {
            EndError::NoResponse(m) | EndError::Other(m) => m,
        }
    }
}

/// What a matrix cell needs from a logged-in session.
pub(crate) trait Initiator {
    /// The negotiated values (the session is in the Full Feature Phase).
    fn negotiated(&mut self) -> Option<Negotiated>;
    /// Submits a command without waiting.
    fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, String>;
    /// Waits for some submitted task to end; each task is returned once.
    fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), String>;
    /// ABORT TASK of a submitted task, waits for the TMF response;
    /// `Ok(None)` when the core no longer holds the task because it
    /// already ended (an async driver processes input in the background,
    /// so a fast target's completion can beat the abort).
    fn abort(&mut self, task: TaskId) -> Result<Option<TmfResponse>, String>;
    /// A task management function on `lun`, waits for its response.
    fn tmf(&mut self, lun: u64, f: TmfFunction) -> Result<TmfResponse, String>;
    /// Runs one command to completion (any status).
    fn execute(&mut self, cmd: ScsiCommand) -> Result<(ScsiResult, Bytes), String>;
    /// Tasks the core holds, where the driver can tell.
    fn in_flight(&mut self) -> Option<usize>;
    /// Logs out after outstanding tasks.
    fn logout(self: Box<Self>) -> Result<(), EndError>;
}

fn classify_std(e: iscsi_std::Error) -> EndError {
    match e {
        iscsi_std::Error::Task(_) | iscsi_std::Error::Closed(_) => {
            EndError::NoResponse(e.to_string())
        }
        e => EndError::Other(e.to_string()),
    }
}

fn classify_mio(e: iscsi_mio::client::Error) -> EndError {
    use iscsi_mio::client::Error as E;
    match e {
        E::Task(_) | E::Closed(_) => EndError::NoResponse(e.to_string()),
        e => EndError::Other(e.to_string()),
    }
}

/// The async drivers' error is the drivers' shared one.
fn classify_async(e: iscsi_proto::driver::Error) -> EndError {
    match e {
        iscsi_proto::driver::Error::Task(_) | iscsi_proto::driver::Error::Closed(_) => {
            EndError::NoResponse(e.to_string())
        }
        e => EndError::Other(e.to_string()),
    }
}

fn tmf_outcome(o: TaskOutcome) -> Result<TmfResponse, String> {
    match o {
        TaskOutcome::TaskManagement(r) => Ok(r),
        other => Err(format!("TMF ended with {other:?}")),
    }
}

/// Logs in through driver `kind`.
pub(crate) fn connect(
    kind: Kind,
    portal: &str,
    cfg: SessionConfig,
) -> Result<Box<dyn Initiator>, String> {
    let r: Result<Box<dyn Initiator>, String> = match kind {
        Kind::Std => iscsi_std::Client::connect(portal, cfg, iscsi_std::Options::default())
            .map(|c| Box::new(StdInit(c)) as Box<dyn Initiator>)
            .map_err(|e| e.to_string()),
        Kind::Mio => iscsi_mio::client::Blocking::connect(portal, cfg)
            .map(|b| {
                Box::new(MioInit {
                    b,
                    outstanding: Vec::new(),
                }) as Box<dyn Initiator>
            })
            .map_err(|e| e.to_string()),
        Kind::Smol => SmolInit::connect(portal, cfg).map(|c| Box::new(c) as Box<dyn Initiator>),
        Kind::Tokio => TokioInit::connect(portal, cfg).map(|c| Box::new(c) as Box<dyn Initiator>),
    };
    r.map_err(|e| format!("{} login to {portal}: {e}", kind.name()))
}

/// A discovery session (SendTargets=All, then logout) through `kind`.
pub(crate) fn discover(
    kind: Kind,
    portal: &str,
    cfg: SessionConfig,
) -> Result<Vec<TargetRecord>, EndError> {
    match kind {
        Kind::Std => iscsi_std::Client::discover(portal, cfg, iscsi_std::Options::default())
            .map_err(classify_std),
        Kind::Mio => iscsi_mio::client::Blocking::discover(portal, cfg).map_err(classify_mio),
        Kind::Smol => {
            let mut thread = None;
            let r =
                futures_lite::future::block_on(iscsi_smol::Client::discover(portal, cfg, |f| {
                    thread = Some(spawn_driver(f));
                }));
            end_discovery(thread, "smol", r)
        }
        Kind::Tokio => {
            let mut thread = None;
            let r =
                futures_lite::future::block_on(iscsi_tokio::Client::discover(portal, cfg, |f| {
                    thread = Some(spawn_tokio_driver(f));
                }));
            end_discovery(thread, "tokio", r)
        }
    }
}

/// The driver ends with the discovery session; its thread must finish.
fn end_discovery(
    thread: Option<JoinHandle<()>>,
    label: &str,
    r: Result<Vec<TargetRecord>, iscsi_proto::driver::Error>,
) -> Result<Vec<TargetRecord>, EndError> {
    if let Some(Err(_)) = thread.map(JoinHandle::join) {
        return Err(EndError::Other(format!(
            "the {label} driver thread panicked"
        )));
    }
    r.map_err(classify_async)
}

fn spawn_driver(f: iscsi_smol::DriverFuture) -> JoinHandle<()> {
    std::thread::spawn(move || async_io::block_on(f))
}

/// The tokio driver on a thread of its own, under a current-thread runtime.
fn spawn_tokio_driver(f: iscsi_tokio::DriverFuture) -> JoinHandle<()> {
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(f);
        }
    })
}

// ---------------------------------------------------------------- std

struct StdInit(iscsi_std::Client);

impl Initiator for StdInit {
    fn negotiated(&mut self) -> Option<Negotiated> {
        self.0.session().negotiated().cloned()
    }

    fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, String> {
        self.0.submit(cmd).map_err(|e| e.to_string())
    }

    fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), String> {
        self.0.wait_any().map_err(|e| e.to_string())
    }

    fn abort(&mut self, task: TaskId) -> Result<Option<TmfResponse>, String> {
        match self.0.abort(task) {
            Ok(r) => Ok(Some(r)),
            Err(iscsi_std::Error::Usage(UsageError::UnknownTask(_))) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn tmf(&mut self, lun: u64, f: TmfFunction) -> Result<TmfResponse, String> {
        self.0
            .task_management(iscsi_proto::scsi::Lun::from_u64(lun), f)
            .map_err(|e| e.to_string())
    }

    fn execute(&mut self, cmd: ScsiCommand) -> Result<(ScsiResult, Bytes), String> {
        let d = self.0.execute(cmd).map_err(|e| e.to_string())?;
        Ok((d.result, d.data))
    }

    fn in_flight(&mut self) -> Option<usize> {
        Some(self.0.session().tasks_in_flight())
    }

    fn logout(self: Box<Self>) -> Result<(), EndError> {
        self.0.logout().map(drop).map_err(classify_std)
    }
}

// ---------------------------------------------------------------- mio

struct MioInit {
    b: iscsi_mio::client::Blocking,
    /// Submitted tasks not yet returned by `wait_any`, oldest first.
    outstanding: Vec<TaskId>,
}

impl MioInit {
    fn wait_collected(&mut self, task: TaskId) -> Result<TaskOutcome, String> {
        let (o, _) = self.b.wait(task).map_err(|e| e.to_string())?;
        Ok(o)
    }
}

impl Initiator for MioInit {
    fn negotiated(&mut self) -> Option<Negotiated> {
        self.b.client().session().negotiated().cloned()
    }

    fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, String> {
        let t = self.b.submit(cmd).map_err(|e| e.to_string())?;
        self.outstanding.push(t);
        Ok(t)
    }

    fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), String> {
        if self.outstanding.is_empty() {
            return Err("wait_any with no task outstanding".into());
        }
        let ids = self.outstanding.clone();
        let mut got = None;
        self.b
            .run_until(|c| {
                for id in &ids {
                    if let Some(r) = c.take_completed(*id) {
                        got = Some((*id, r));
                        return true;
                    }
                }
                false
            })
            .map_err(|e| e.to_string())?;
        let (id, r) = got.ok_or("run_until returned without a task")?;
        self.outstanding.retain(|t| *t != id);
        let (o, d) = r.map_err(|e| e.to_string())?;
        Ok((id, o, d))
    }

    fn abort(&mut self, task: TaskId) -> Result<Option<TmfResponse>, String> {
        use iscsi_mio::client::Error as E;
        let t = match self.b.client().start_collected(Action::Abort(task)) {
            Ok(t) => t,
            Err(E::Usage(UsageError::UnknownTask(_))) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        tmf_outcome(self.wait_collected(t)?).map(Some)
    }

    fn tmf(&mut self, lun: u64, f: TmfFunction) -> Result<TmfResponse, String> {
        self.b
            .task_management(iscsi_proto::scsi::Lun::from_u64(lun), f)
            .map_err(|e| e.to_string())
    }

    fn execute(&mut self, cmd: ScsiCommand) -> Result<(ScsiResult, Bytes), String> {
        let d = self.b.execute(cmd).map_err(|e| e.to_string())?;
        Ok((d.result, d.data))
    }

    fn in_flight(&mut self) -> Option<usize> {
        Some(self.b.client().session().tasks_in_flight())
    }

    fn logout(self: Box<Self>) -> Result<(), EndError> {
        self.b.logout().map(drop).map_err(classify_mio)
    }
}

// ---------------------------------------------------------------- smol, tokio

/// An async driver's `Client` (`$krate`: iscsi_smol or iscsi_tokio, the
/// same API) with its driver on a thread of its own, started by `$spawn`.
macro_rules! async_init {
    ($name:ident, $krate:ident, $spawn:path, $label:literal) => {
        struct $name {
            client: $krate::Client,
            thread: Option<JoinHandle<()>>,
            /// Submitted tasks not yet waited for, oldest first.
            pending: Vec<$krate::Pending>,
        }

        impl $name {
            fn connect(portal: &str, cfg: SessionConfig) -> Result<$name, String> {
                let mut thread = None;
                let r = futures_lite::future::block_on($krate::Client::connect(portal, cfg, |f| {
                    thread = Some($spawn(f));
                }));
                match r {
                    Ok(client) => Ok($name {
                        client,
                        thread,
                        pending: Vec::new(),
                    }),
                    Err(e) => {
                        if let Some(t) = thread {
                            let _ = t.join();
                        }
                        Err(e.to_string())
                    }
                }
            }
        }

        impl Initiator for $name {
            fn negotiated(&mut self) -> Option<Negotiated> {
                // The async driver owns the session; the negotiated values are not
                // reachable from a `Client` (see the README's matrix section).
                None
            }

            fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, String> {
                let p = futures_lite::future::block_on(self.client.submit(cmd))
                    .map_err(|e| e.to_string())?;
                let id = p.id();
                self.pending.push(p);
                Ok(id)
            }

            fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), String> {
                if self.pending.is_empty() {
                    return Err("wait_any with no task outstanding".into());
                }
                let p = self.pending.remove(0);
                let id = p.id();
                let (o, d) = futures_lite::future::block_on(p.wait()).map_err(|e| e.to_string())?;
                Ok((id, o, d))
            }

            fn abort(&mut self, task: TaskId) -> Result<Option<TmfResponse>, String> {
                match futures_lite::future::block_on(self.client.abort(task)) {
                    Ok(r) => Ok(Some(r)),
                    Err($krate::Error::Usage(UsageError::UnknownTask(_))) => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            }

            fn tmf(&mut self, lun: u64, f: TmfFunction) -> Result<TmfResponse, String> {
                futures_lite::future::block_on(
                    self.client
                        .task_management(iscsi_proto::scsi::Lun::from_u64(lun), f),
                )
                .map_err(|e| e.to_string())
            }

            fn execute(&mut self, cmd: ScsiCommand) -> Result<(ScsiResult, Bytes), String> {
                let d = futures_lite::future::block_on(self.client.execute(cmd))
                    .map_err(|e| e.to_string())?;
                Ok((d.result, d.data))
            }

            fn in_flight(&mut self) -> Option<usize> {
                None
            }

            fn logout(mut self: Box<Self>) -> Result<(), EndError> {
                let r = futures_lite::future::block_on(self.client.logout());
                let thread = self.thread.take();
                drop(self);
                if let Some(Err(_)) = thread.map(JoinHandle::join) {
                    return Err(EndError::Other(format!(
                        "the {} driver thread panicked",
                        $label
                    )));
                }
                r.map(drop).map_err(classify_async)
            }
        }
    };
}

async_init!(SmolInit, iscsi_smol, spawn_driver, "smol");
async_init!(TokioInit, iscsi_tokio, spawn_tokio_driver, "tokio");
