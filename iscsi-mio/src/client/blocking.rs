//! [`Blocking`]: a ready-made loop for one session on its own `Poll`.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use iscsi_proto::driver::{helpers, reply, DriverCore};
use iscsi_proto::initiator::{
    Event, LogoutMode, LogoutResult, ScsiCommand, SessionConfig, TargetRecord, TaskId, TaskOutcome,
};
use mio::{Events, Poll, Token, Waker};

use super::{
    Action, Capacity, Client, Completed, Error, Lun, Reply, Submitter, TmfFunction, TmfResponse,
};

/// A ready-made loop for one session: its own `Poll`, blocking calls.
#[derive(Debug)]
pub struct Blocking {
    poll: Poll,
    events: Events,
    client: Client,
    waker: Arc<Waker>,
}

const CLIENT: Token = Token(0);
const WAKER: Token = Token(1);
/// Added connection `cid` is registered under `Token(LINKS + cid)`.
const LINKS: usize = 2;

impl Blocking {
    /// Connects to `portal` and logs in with `config`.
    pub fn connect(portal: &str, config: SessionConfig) -> Result<Blocking, Error> {
        let mut b = Blocking::new(portal, config)?;
        b.login()?;
        Ok(b)
    }

    /// A session for `portal` that has not logged in yet: set its client
    /// up ([`Blocking::client`]: a tap, the coalescing), then
    /// [`Blocking::login`].
    pub fn new(portal: &str, config: SessionConfig) -> Result<Blocking, Error> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let registry = Arc::new(poll.registry().try_clone()?);
        let mut client = Client::new(portal, config, &registry, CLIENT)?;
        client.set_link_tokens(LINKS);
        let events = Events::with_capacity(64);
        Ok(Blocking {
            poll,
            events,
            client,
            waker,
        })
    }

    /// Drives the session until it is in the Full Feature Phase.
    pub fn login(&mut self) -> Result<(), Error> {
        self.run_until(|c| c.session().is_logged_in())
    }

    /// Runs a discovery session (SendTargets=All) and logs out. `config`
    /// must have no target name.
    pub fn discover(portal: &str, config: SessionConfig) -> Result<Vec<TargetRecord>, Error> {
        Blocking::connect(portal, config)?.discover_targets()
    }

    /// SendTargets=All on this (discovery) session, then a logout.
    pub fn discover_targets(mut self) -> Result<Vec<TargetRecord>, Error> {
        let targets = reply::targets(self.wait_action(Action::SendTargets))?;
        self.logout()?;
        Ok(targets)
    }

    /// The client (for its getters, or to start work by hand).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// A handle for other threads; their work runs while this thread is
    /// inside a call of this `Blocking` (e.g. [`Blocking::run_until`]).
    pub fn submitter(&self) -> Submitter {
        self.client.submitter(self.waker.clone())
    }

    /// Drives the session until `done(client)` holds; fails if the
    /// session closes first. Events of other tokens than the client's and
    /// the waker's are ignored.
    pub fn run_until(&mut self, mut done: impl FnMut(&mut Client) -> bool) -> Result<(), Error> {
        let c = &mut self.client;
        loop {
            if done(c) {
                return Ok(());
            }
            c.core.check()?;
            // Work queued without a write (a deferred submit) goes out
            // before blocking.
            if c.core.has_output() {
                c.drive()?;
                if done(c) {
                    return Ok(());
                }
            }
            let timeout = c
                .poll_timeout()
                .map(|d| d.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut self.events, timeout) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e.into()),
                _ => {}
            }
            for ev in self.events.iter() {
                c.handle_event(ev)?;
            }
            c.handle_timeout()?;
            c.handle_wakeup()?;
        }
    }

    /// Events that reached the application so far (async messages,
    /// rejects, recovery notices; at most 1024 are kept).
    pub fn take_async_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.client.core.poll_event()).collect()
    }

    /// Submits a SCSI command without waiting; see [`Blocking::wait`].
    ///
    /// The command is written at once, unless completions wait to be
    /// collected: then it is written, with every command submitted
    /// meanwhile, in one vectored write by the next `submit` made with no
    /// completion waiting, or by the next call that waits for input.
    pub fn submit(&mut self, cmd: ScsiCommand) -> Result<TaskId, Error> {
        let c = &mut self.client;
        let task = c.core.start(Instant::now(), Action::Scsi(cmd), true)?;
        if !c.core.has_completed() {
            c.drive()?;
        }
        Ok(task)
    }

    /// Waits for whichever task started with [`Blocking::submit`] ends
    /// first (in completion order).
    pub fn wait_any(&mut self) -> Result<(TaskId, TaskOutcome, Bytes), Error> {
        let (task, r) = self.take(DriverCore::take_any_completed)?;
        r.map(|(o, d)| (task, o, d))
    }

    /// Waits for a task started with [`Blocking::submit`].
    pub fn wait(&mut self, task: TaskId) -> Reply {
        self.take(|c| c.take_completed(task))?
    }

    /// Drives the session until `take` yields something.
    fn take<T>(&mut self, mut take: impl FnMut(&mut DriverCore) -> Option<T>) -> Result<T, Error> {
        let mut got = None;
        self.run_until(|c| {
            got = take(&mut c.core);
            got.is_some()
        })?;
        got.ok_or(Error::Closed(None))
    }

    fn wait_action(&mut self, action: Action) -> Reply {
        let task = self.client.start_collected(action)?;
        self.wait(task)
    }

    /// Runs one SCSI command to completion.
    pub fn execute(&mut self, cmd: ScsiCommand) -> Result<Completed, Error> {
        reply::scsi(self.wait_action(Action::Scsi(cmd)))
    }

    /// Runs a task management function on `lun`.
    pub fn task_management(
        &mut self,
        lun: Lun,
        function: TmfFunction,
    ) -> Result<TmfResponse, Error> {
        let lun = lun.to_u64();
        reply::task_management(self.wait_action(Action::TaskManagement { lun, function }))
    }

    /// Runs `cmd` and requires GOOD status, sending it again once after a
    /// UNIT ATTENTION (the one a target reports on the first command of
    /// every session: tgtd, LIO; see [`iscsi_proto::scsi::helpers`]).
    pub fn execute_good(&mut self, cmd: ScsiCommand) -> Result<Completed, Error> {
        helpers::execute_good(|c| self.execute(c), cmd)
    }

    /// READ(16) of `blocks` blocks of `block_len` bytes at `lba` of `lun`
    /// ([`Blocking::execute_good`]).
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
    /// ([`Blocking::execute_good`]).
    pub fn write(&mut self, lun: Lun, lba: u64, data: Bytes, block_len: u32) -> Result<(), Error> {
        let cmd = helpers::write_command(lun, lba, data, block_len)?;
        self.execute_good(cmd).map(drop)
    }

    /// The capacity and block size of `lun`: READ CAPACITY (16), or (10)
    /// where (16) is not supported.
    pub fn read_capacity(&mut self, lun: Lun) -> Result<Capacity, Error> {
        helpers::read_capacity(|c| self.execute(c), lun)
    }

    /// Logs out (after outstanding tasks finish) and closes the connection.
    pub fn logout(mut self) -> Result<LogoutResult, Error> {
        reply::logged_out(self.wait_action(Action::Logout(LogoutMode::WaitForTasks)))
    }
}
