//! `--driver std|mio|smol`: one small interface over the three initiator
//! drivers, with exactly what the commands need (connect and log in,
//! discover, run one command, keep several in flight for the benchmark,
//! the negotiated values, log out).
//!
//! - `std`: [`iscsi_std::Client`], blocking socket calls on this thread.
//! - `mio`: [`iscsi_mio::client::Blocking`], a private `mio::Poll` driven
//!   on this thread inside each call.
//! - `smol`: [`iscsi_smol::Driver`] runs on a dedicated thread under
//!   `async_io::block_on`; this thread blocks on each reply with
//!   `async_io::block_on`. Commands in flight are the `Pending` futures of
//!   [`iscsi_smol::Client::submit`]; `wait_any` polls them all.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::thread::JoinHandle;

use bytes::Bytes;
use clap::ValueEnum;
use iscsi_proto::initiator::{ScsiCommand, ScsiResult, SessionConfig, TargetRecord, TaskId, TaskOutcome};
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
}

impl DriverKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Std => "std",
            DriverKind::Mio => "mio",
            DriverKind::Smol => "smol",
        }
    }
}

/// A completed SCSI command with its read data.
#[derive(Debug, Clone)]
pub struct Completed {
    /// Status, sense and residuals.
    pub result: ScsiResult,
    /// The bytes read (empty for writes).
    pub data: Bytes,
}

type SmolWait = Pin<Box<dyn Future<Output = iscsi_smol::Reply>>>;

/// The smol driver: the client handle, the driver thread and the tasks in
/// flight.
pub struct SmolSession {
    client: iscsi_smol::Client,
    thread: Option<JoinHandle<Result<(), iscsi_smol::Error>>>,
    pending: Vec<(TaskId, SmolWait)>,
}

/// The mio driver: its blocking loop and the tasks in flight.
pub struct MioSession {
    blocking: iscsi_mio::client::Blocking,
    in_flight: Vec<TaskId>,
}

/// A logged-in session on one of the drivers.
pub enum Session {
    /// `iscsi-std`.
    Std(Box<iscsi_std::Client>),
    /// `iscsi-mio`.
    Mio(Box<MioSession>),
    /// `iscsi-smol`.
    Smol(Box<SmolSession>),
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session({})", self.kind().name())
    }
}

/// Starts the smol driver on its own thread.
fn smol_start(
    portal: &str,
    config: SessionConfig,
) -> Result<(iscsi_smol::Client, JoinHandle<Result<(), iscsi_smol::Error>>), String> {
    let (client, driver) = iscsi_smol::Client::new(portal, config);
    let thread = std::thread::Builder::new()
        .name("iscsi-smol-driver".into())
        .spawn(move || async_io::block_on(driver.run()))
        .map_err(|e| format!("cannot start the smol driver thread: {e}"))?;
    Ok((client, thread))
}

impl Session {
    /// Connects to `portal` and logs in with `config` on driver `kind`.
    /// `opts` (socket options and the pcap tap) only applies to `std`.
    pub fn connect(
        kind: DriverKind,
        portal: &str,
        config: SessionConfig,
        opts: iscsi_std::Options,
    ) -> Result<Session, String> {
        match kind {
            DriverKind::Std => iscsi_std::Client::connect(portal, config, opts)
                .map(|c| Session::Std(Box::new(c)))
                .map_err(|e| e.to_string()),
            DriverKind::Mio => iscsi_mio::client::Blocking::connect(portal, config)
                .map(|blocking| {
                    Session::Mio(Box::new(MioSession {
                        blocking,
                        in_flight: Vec::new(),
                    }))
                })
                .map_err(|e| e.to_string()),
            DriverKind::Smol => {
                let (client, thread) = smol_start(portal, config)?;
                match async_io::block_on(client.logged_in()) {
                    Ok(()) => Ok(Session::Smol(Box::new(SmolSession {
                        client,
                        thread: Some(thread),
                        pending: Vec::new(),
                    }))),
                    Err(e) => {
                        // The driver ends when the session fails; with the
                        // client gone it also ends if it were still running.
                        drop(client);
                        let _ = thread.join();
                        Err(e.to_string())
                    }
                }
            }
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
                iscsi_std::Client::discover(portal, config, opts).map_err(|e| e.to_string())
            }
            DriverKind::Mio => {
                iscsi_mio::client::Blocking::discover(portal, config).map_err(|e| e.to_string())
            }
            DriverKind::Smol => {
                let (client, thread) = smol_start(portal, config)?;
                let result = async_io::block_on(async {
                    client.logged_in().await?;
                    let p = client.start(iscsi_smol::Action::SendTargets).await?;
                    let targets = match p.wait().await? {
                        (TaskOutcome::Targets(t), _) => t,
                        (other, _) => {
                            return Err(iscsi_smol::Error::Unexpected(format!("{other:?}")))
                        }
                    };
                    client.logout().await?;
                    Ok(targets)
                });
                drop(client);
                let _ = thread.join();
                result.map_err(|e| e.to_string())
            }
        }
    }

    /// Which driver runs this session.
    pub fn kind(&self) -> DriverKind {
        match self {
            Session::Std(_) => DriverKind::Std,
            Session::Mio(_) => DriverKind::Mio,
            Session::Smol(_) => DriverKind::Smol,
        }
    }

    /// The operational values agreed at login (`None` on the smol
    /// driver, whose client does not expose the session's getters).
    pub fn negotiated(&mut self) -> Option<Negotiated> {
        match self {
            Session::Std(c) => c.session().negotiated().cloned(),
            Session::Mio(m) => m.blocking.client().session().negotiated().cloned(),
            Session::Smol(_) => None,
        }
    }

    /// Runs one SCSI command to completion (any status).
    pub fn execute(&mut self, cmd: ScsiCommand) -> Result<Completed, String> {
        match self {
            Session::Std(c) => c
                .execute(cmd)
                .map(|d| Completed {
                    result: d.result,
                    data: d.data,
                })
                .map_err(|e| e.to_string()),
            Session::Mio(m) => m
                .blocking
                .execute(cmd)
                .map(|d| Completed {
                    result: d.result,
                    data: d.data,
                })
                .map_err(|e| e.to_string()),
            Session::Smol(s) => async_io::block_on(s.client.execute(cmd))
                .map(|d| Completed {
                    result: d.result,
                    data: d.data,
                })
                .map_err(|e| e.to_string()),
        }
    }

    /// Submits a command without waiting; [`Session::wait_any`] collects it.
    pub fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, String> {
        match self {
            Session::Std(c) => c.submit(cmd).map_err(|e| e.to_string()),
            Session::Mio(m) => {
                let task = m.blocking.submit(cmd).map_err(|e| e.to_string())?;
                m.in_flight.push(task);
                Ok(task)
            }
            Session::Smol(s) => {
                let p = async_io::block_on(s.client.submit(cmd)).map_err(|e| e.to_string())?;
                let id = p.id();
                s.pending.push((id, Box::pin(p.wait())));
                Ok(id)
            }
        }
    }

    /// Waits for whichever submitted task ends first: its id, outcome and
    /// read data. Fails (rather than blocking forever) when nothing was
    /// submitted on the mio or smol driver.
    pub fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), String> {
        match self {
            Session::Std(c) => c.wait_any().map_err(|e| e.to_string()),
            Session::Mio(m) => {
                if m.in_flight.is_empty() {
                    return Err("no command in flight".into());
                }
                let in_flight = &m.in_flight;
                let mut got = None;
                m.blocking
                    .run_until(|c| {
                        for (i, t) in in_flight.iter().enumerate() {
                            if let Some(r) = c.take_completed(*t) {
                                got = Some((i, r));
                                return true;
                            }
                        }
                        false
                    })
                    .map_err(|e| e.to_string())?;
                let (i, (outcome, data)) = got.ok_or("session closed")?;
                let task = m.in_flight.swap_remove(i);
                Ok((task, outcome, data))
            }
            Session::Smol(s) => {
                if s.pending.is_empty() {
                    return Err("no command in flight".into());
                }
                let pending = &mut s.pending;
                let (i, reply) = async_io::block_on(futures_lite::future::poll_fn(|cx| {
                    for (i, (_, wait)) in pending.iter_mut().enumerate() {
                        if let Poll::Ready(r) = wait.as_mut().poll(cx) {
                            return Poll::Ready((i, r));
                        }
                    }
                    Poll::Pending
                }));
                let (task, _) = s.pending.swap_remove(i);
                let (outcome, data) = reply.map_err(|e| e.to_string())?;
                Ok((task, outcome, data))
            }
        }
    }

    /// Logs out (after outstanding tasks finish) and closes the
    /// connection; on smol also waits for the driver thread to end.
    pub fn logout(self) -> Result<(), String> {
        match self {
            Session::Std(c) => c.logout().map(drop).map_err(|e| e.to_string()),
            Session::Mio(m) => m.blocking.logout().map(drop).map_err(|e| e.to_string()),
            Session::Smol(mut s) => {
                let result = async_io::block_on(s.client.logout());
                s.pending.clear();
                let thread = s.thread.take();
                drop(s);
                let ended = match thread.map(JoinHandle::join) {
                    Some(Err(_)) => Err("the smol driver thread panicked".to_string()),
                    _ => Ok(()),
                };
                result.map(drop).map_err(|e| e.to_string())?;
                ended
            }
        }
    }
}
