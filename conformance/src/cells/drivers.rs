//! Cells that run the same checks on each of the project's four initiator
//! drivers (`iscsi-std` blocking, `iscsi-mio` event loop, `iscsi-smol` and
//! `iscsi-tokio` async) against real targets: many commands in flight on one session,
//! data compared with the target's backing file and read back, and (against
//! istgt, which pings idle initiators with NOP-In) a session left idle for
//! 10 s (five of its NOP-In intervals) that still works afterwards.
//!
//! Each driver is used through its own API, the way an application would:
//! `iscsi_std::Client` (`submit`/`wait_any`/`idle`), a hand-written loop
//! over `iscsi_mio::client::Client` on a private `mio::Poll` (with a poll
//! timeout for idling), and `iscsi_smol::Client` / `iscsi_tokio::Client`
//! with its `Driver` on a dedicated thread (under `async_io::block_on`, or
//! a current-thread tokio runtime; idling is a sleep while the driver runs).

use super::initiator_common::{
    check_capacity, compare, config, expect_good, file_region, lun, op_params, pdus, read_cmd,
    write_cmd, XorShift,
};
use crate::peers::{Istgt, IstgtConfig, Tgtd, TgtdConfig};
use crate::runner::{Cell, CellCtx};
use bytes::Bytes;
use iscsi_proto::initiator::{LogoutMode, ScsiCommand, ScsiResult, SessionConfig, TaskOutcome};
use iscsi_proto::scsi::cdb::{self, Capacity};
use iscsi_proto::scsi::sense::{SenseData, SenseKey};
use iscsi_proto::scsi::status::ScsiStatus;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const G: &str = "drivers";

/// Commands in flight at once on one session.
const IN_FLIGHT: usize = 32;

/// How long the istgt session stays idle.
const IDLE: Duration = Duration::from_secs(10);

/// The four drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Std,
    Mio,
    Smol,
    Tokio,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Std, Kind::Mio, Kind::Smol, Kind::Tokio];

    fn name(self) -> &'static str {
        match self {
            Kind::Std => "std",
            Kind::Mio => "mio",
            Kind::Smol => "smol",
            Kind::Tokio => "tokio",
        }
    }
}

/// How a logout failed: the target closed the session without a Logout
/// Response (the session is over; istgt does that now and then, see the
/// README), or anything else.
enum LogoutError {
    NoResponse(String),
    Other(String),
}

/// What the cells need from a driver.
trait Initiator {
    /// Runs one command to completion (any status).
    fn execute(&mut self, cmd: ScsiCommand) -> Result<(ScsiResult, Bytes), String>;
    /// Submits every command before waiting for any; returns the outcomes
    /// in submission order (each task ends exactly once) and, where the
    /// driver can tell, how many tasks the core held after the last submit.
    fn batch(&mut self, cmds: Vec<ScsiCommand>) -> Result<Batch, String>;
    /// Leaves the session idle for about `d`, the driver servicing it.
    fn idle(&mut self, d: Duration) -> Result<(), String>;
    /// NOP-Out ping; returns the echoed data.
    fn ping(&mut self, data: Bytes) -> Result<Bytes, String>;
    /// Logs out (after outstanding tasks) and ends the session.
    fn logout(self: Box<Self>) -> Result<(), LogoutError>;
}

/// Outcomes of a batch, in submission order, and the core's task count
/// right after the last submit (`None`: the driver has no such getter).
struct Batch {
    outcomes: Vec<(TaskOutcome, Bytes)>,
    held: Option<usize>,
}

fn connect(kind: Kind, portal: &str, cfg: SessionConfig) -> Result<Box<dyn Initiator>, String> {
    let r: Result<Box<dyn Initiator>, String> = match kind {
        Kind::Std => iscsi_std::Client::connect(portal, cfg, iscsi_std::Options::default())
            .map(|c| Box::new(StdInit(c)) as Box<dyn Initiator>)
            .map_err(|e| e.to_string()),
        Kind::Mio => MioInit::connect(portal, cfg).map(|c| Box::new(c) as Box<dyn Initiator>),
        Kind::Smol => SmolInit::connect(portal, cfg).map(|c| Box::new(c) as Box<dyn Initiator>),
        Kind::Tokio => TokioInit::connect(portal, cfg).map(|c| Box::new(c) as Box<dyn Initiator>),
    };
    r.map_err(|e| format!("{} login to {portal}: {e}", kind.name()))
}

// ---------------------------------------------------------------- std

struct StdInit(iscsi_std::Client);

fn std_logout_error(e: iscsi_std::Error) -> LogoutError {
    match e {
        iscsi_std::Error::Task(_) | iscsi_std::Error::Closed(_) => {
            LogoutError::NoResponse(e.to_string())
        }
        e => LogoutError::Other(e.to_string()),
    }
}

impl Initiator for StdInit {
    fn execute(&mut self, cmd: ScsiCommand) -> Result<(ScsiResult, Bytes), String> {
        let d = self.0.execute(cmd).map_err(|e| e.to_string())?;
        Ok((d.result, d.data))
    }

    fn batch(&mut self, cmds: Vec<ScsiCommand>) -> Result<Batch, String> {
        let n = cmds.len();
        let mut ids = Vec::with_capacity(n);
        for (i, c) in cmds.into_iter().enumerate() {
            ids.push(self.0.submit(c).map_err(|e| format!("submit {i}: {e}"))?);
        }
        let held = self.0.session().tasks_in_flight();
        let mut out: Vec<Option<(TaskOutcome, Bytes)>> = vec![None; n];
        for k in 0..n {
            let (t, o, d) = self
                .0
                .wait_any()
                .map_err(|e| format!("wait_any after {k} of {n}: {e}"))?;
            let i = ids
                .iter()
                .position(|x| *x == t)
                .ok_or_else(|| format!("unknown task {t:?} ended"))?;
            let slot = out.get_mut(i).ok_or("task index out of range")?;
            if slot.replace((o, d)).is_some() {
                return Err(format!("task {t:?} ended twice"));
            }
        }
        let outcomes = out.into_iter().flatten().collect();
        Ok(Batch {
            outcomes,
            held: Some(held),
        })
    }

    fn idle(&mut self, d: Duration) -> Result<(), String> {
        self.0.idle(d).map_err(|e| e.to_string())
    }

    fn ping(&mut self, data: Bytes) -> Result<Bytes, String> {
        self.0.ping(data).map_err(|e| e.to_string())
    }

    fn logout(self: Box<Self>) -> Result<(), LogoutError> {
        self.0.logout().map(drop).map_err(std_logout_error)
    }
}

// ---------------------------------------------------------------- mio

use iscsi_mio::client::{Action as MioAction, Client as MioClient, Error as MioError};

/// One `iscsi_mio::client::Client` on a private `Poll`, driven by a loop
/// written here (the caller's loop of the crate's docs, plus a timeout).
struct MioInit {
    poll: mio::Poll,
    events: mio::Events,
    client: MioClient,
    /// Non-task events the client handed out (LoggedIn, async messages).
    app_events: usize,
}

impl MioInit {
    fn connect(portal: &str, cfg: SessionConfig) -> Result<MioInit, String> {
        let poll = mio::Poll::new().map_err(|e| e.to_string())?;
        let registry = poll.registry().try_clone().map_err(|e| e.to_string())?;
        let client = MioClient::new(portal, cfg, &std::sync::Arc::new(registry), mio::Token(0))
            .map_err(|e| e.to_string())?;
        let mut m = MioInit {
            poll,
            events: mio::Events::with_capacity(64),
            client,
            app_events: 0,
        };
        m.run(|c| c.session().is_logged_in(), None)
            .map_err(|e| e.to_string())?;
        Ok(m)
    }

    /// Drives the client until `done` holds (`Ok(true)`), `until` passes
    /// (`Ok(false)`) or the session closes (its error).
    fn run(
        &mut self,
        mut done: impl FnMut(&mut MioClient) -> bool,
        until: Option<Instant>,
    ) -> Result<bool, MioError> {
        loop {
            while self.client.poll_event().is_some() {
                self.app_events += 1;
            }
            if done(&mut self.client) {
                return Ok(true);
            }
            if let Some(e) = self.client.close_error() {
                return Err(e);
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
                    return Err(MioError::Io(e));
                }
            }
            for ev in self.events.iter() {
                self.client.handle_event(ev)?;
            }
            self.client.handle_timeout()?;
        }
    }

    /// Starts `action` (collected) and waits for its outcome.
    fn wait_action(&mut self, action: MioAction) -> Result<(TaskOutcome, Bytes), MioError> {
        let task = self.client.start_collected(action)?;
        let mut got = None;
        self.run(
            |c| {
                got = c.take_completed(task);
                got.is_some()
            },
            None,
        )?;
        got.ok_or(MioError::Closed(None))?
    }
}

impl Initiator for MioInit {
    fn execute(&mut self, cmd: ScsiCommand) -> Result<(ScsiResult, Bytes), String> {
        match self
            .wait_action(MioAction::Scsi(cmd))
            .map_err(|e| e.to_string())?
        {
            (TaskOutcome::Scsi(r), d) => Ok((r, d)),
            (other, _) => Err(format!("{other:?}")),
        }
    }

    fn batch(&mut self, cmds: Vec<ScsiCommand>) -> Result<Batch, String> {
        let n = cmds.len();
        let mut ids = Vec::with_capacity(n);
        for (i, c) in cmds.into_iter().enumerate() {
            let t = self
                .client
                .start_collected(MioAction::Scsi(c))
                .map_err(|e| format!("submit {i}: {e}"))?;
            ids.push(t);
        }
        let held = self.client.session().tasks_in_flight();
        let mut out: Vec<Option<iscsi_mio::client::Reply>> = (0..n).map(|_| None).collect();
        let mut left = n;
        self.run(
            |c| {
                for (id, slot) in ids.iter().zip(out.iter_mut()) {
                    if slot.is_none() {
                        if let Some(r) = c.take_completed(*id) {
                            *slot = Some(r);
                            left -= 1;
                        }
                    }
                }
                left == 0
            },
            None,
        )
        .map_err(|e| format!("waiting for {left} of {n}: {e}"))?;
        let outcomes = out.into_iter().flatten().collect::<Result<Vec<_>, _>>();
        Ok(Batch {
            outcomes: outcomes.map_err(|e| e.to_string())?,
            held: Some(held),
        })
    }

    fn idle(&mut self, d: Duration) -> Result<(), String> {
        let until = Instant::now() + d;
        self.run(|_| false, Some(until))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn ping(&mut self, data: Bytes) -> Result<Bytes, String> {
        match self
            .wait_action(MioAction::Ping(data))
            .map_err(|e| e.to_string())?
        {
            (TaskOutcome::Pong(d), _) => Ok(d),
            (other, _) => Err(format!("{other:?}")),
        }
    }

    fn logout(mut self: Box<Self>) -> Result<(), LogoutError> {
        match self.wait_action(MioAction::Logout(LogoutMode::WaitForTasks)) {
            Ok((TaskOutcome::LoggedOut(_), _)) => Ok(()),
            Ok((TaskOutcome::Failed(e), _)) => Err(LogoutError::NoResponse(e.to_string())),
            Ok((other, _)) => Err(LogoutError::Other(format!("{other:?}"))),
            Err(e @ (MioError::Closed(_) | MioError::Task(_))) => {
                Err(LogoutError::NoResponse(e.to_string()))
            }
            Err(e) => Err(LogoutError::Other(e.to_string())),
        }
    }
}

// ---------------------------------------------------------------- smol, tokio

/// An async driver's client (`$krate::Client`) with its driver on a
/// dedicated thread, run there by `$run` (smol: `async_io::block_on`;
/// tokio: a current-thread runtime). The two crates have the same API.
macro_rules! async_init {
    ($name:ident, $krate:ident, $label:literal, $run:expr) => {
        /// `Client` of an async driver with its driver on a dedicated thread.
        struct $name {
            client: $krate::Client,
            thread: Option<JoinHandle<Result<(), $krate::Error>>>,
        }

        impl $name {
            fn connect(portal: &str, cfg: SessionConfig) -> Result<$name, String> {
                let (client, driver) =
                    $krate::Client::new(portal, cfg).map_err(|e| format!("smol client: {e}"))?;
                let thread = std::thread::Builder::new()
                    .name(format!("{}-driver", $label))
                    .spawn(move || ($run)(driver))
                    .map_err(|e| format!("driver thread: {e}"))?;
                match futures_lite::future::block_on(client.logged_in()) {
                    Ok(()) => Ok($name {
                        client,
                        thread: Some(thread),
                    }),
                    Err(e) => {
                        drop(client);
                        // The driver's own result names the cause when the
                        // request only learnt "session closed".
                        match thread.join() {
                            Ok(Err(cause)) => Err(cause.to_string()),
                            _ => Err(e.to_string()),
                        }
                    }
                }
            }
        }

        impl Initiator for $name {
            fn execute(&mut self, cmd: ScsiCommand) -> Result<(ScsiResult, Bytes), String> {
                let d = futures_lite::future::block_on(self.client.execute(cmd))
                    .map_err(|e| e.to_string())?;
                Ok((d.result, d.data))
            }

            fn batch(&mut self, cmds: Vec<ScsiCommand>) -> Result<Batch, String> {
                let client = &self.client;
                let outcomes = futures_lite::future::block_on(async {
                    let mut pending = Vec::with_capacity(cmds.len());
                    for (i, c) in cmds.into_iter().enumerate() {
                        // Returns once the core accepted the command.
                        let p = client
                            .submit(c)
                            .await
                            .map_err(|e| format!("submit {i}: {e}"))?;
                        pending.push(p);
                    }
                    let mut out = Vec::with_capacity(pending.len());
                    for (i, p) in pending.into_iter().enumerate() {
                        out.push(p.wait().await.map_err(|e| format!("task {i}: {e}"))?);
                    }
                    Ok::<_, String>(out)
                })?;
                Ok(Batch {
                    outcomes,
                    held: None,
                })
            }

            fn idle(&mut self, d: Duration) -> Result<(), String> {
                // The driver runs on its own thread: this one just waits.
                std::thread::sleep(d);
                Ok(())
            }

            fn ping(&mut self, data: Bytes) -> Result<Bytes, String> {
                futures_lite::future::block_on(self.client.ping(data)).map_err(|e| e.to_string())
            }

            fn logout(mut self: Box<Self>) -> Result<(), LogoutError> {
                let r = futures_lite::future::block_on(self.client.logout());
                let thread = self.thread.take();
                drop(self);
                // After the logout the driver ends; its thread must finish.
                if let Some(Err(_)) = thread.map(JoinHandle::join) {
                    return Err(LogoutError::Other("the driver thread panicked".into()));
                }
                match r {
                    Ok(_) => Ok(()),
                    Err(e @ ($krate::Error::Task(_) | $krate::Error::Closed(_))) => {
                        Err(LogoutError::NoResponse(e.to_string()))
                    }
                    Err(e) => Err(LogoutError::Other(e.to_string())),
                }
            }
        }
    };
}

async_init!(SmolInit, iscsi_smol, "smol", |d: iscsi_smol::Driver| {
    async_io::block_on(d.run())
});
async_init!(TokioInit, iscsi_tokio, "tokio", |d: iscsi_tokio::Driver| {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(d.run()),
        Err(e) => Err(iscsi_tokio::Error::Io(e)),
    }
});

// ---------------------------------------------------------------- checks

fn is_unit_attention(r: &ScsiResult) -> bool {
    let sense = r
        .sense_data
        .or_else(|| r.sense.as_ref().and_then(|s| SenseData::parse(s).ok()));
    matches!(sense, Some(s) if s.key == SenseKey::UnitAttention)
}

/// Runs a command and requires GOOD, retrying a UNIT ATTENTION (SAM-5
/// 5.14: reported once per I_T nexus after login) a few times.
fn exec(c: &mut dyn Initiator, cmd: ScsiCommand, what: &str) -> Result<Bytes, String> {
    for _ in 0..4 {
        let (r, d) = c.execute(cmd.clone()).map_err(|e| format!("{what}: {e}"))?;
        if r.is_good() {
            return Ok(d);
        }
        if !is_unit_attention(&r) {
            return Err(format!("{what}: status {}", ScsiStatus::from_u8(r.status)));
        }
    }
    Err(format!("{what}: UNIT ATTENTION four times"))
}

fn read_capacity(c: &mut dyn Initiator, l: u64) -> Result<Capacity, String> {
    let d = exec(
        c,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(l),
            cdb::read_capacity10().to_vec(),
            8,
        ),
        "READ CAPACITY(10)",
    )?;
    Capacity::parse10(&d).map_err(|e| format!("READ CAPACITY(10) data: {e}"))
}

/// A random LBA where `len` bytes fit on a LUN of `cap`.
fn random_lba(rng: &mut XorShift, cap: &Capacity, len: usize) -> Result<u64, String> {
    let blocks = (len / cap.block_len.max(1) as usize) as u64;
    let total = cap.num_blocks().ok_or("capacity overflows")?;
    let room = total
        .checked_sub(blocks)
        .ok_or("the LUN is smaller than the test data")?;
    Ok(rng.next_u64() % (room + 1))
}

/// Writes `data` at `lba` as [`IN_FLIGHT`] commands all in flight at once;
/// returns a note on how many the core held.
fn write_in_flight(
    c: &mut dyn Initiator,
    l: u64,
    lba: u64,
    data: &Bytes,
    bs: u32,
) -> Result<String, String> {
    let per = data.len() / IN_FLIGHT;
    let cmds = (0..IN_FLIGHT)
        .map(|i| {
            let at = lba + (i * per / bs as usize) as u64;
            write_cmd(l, at, data.slice(i * per..(i + 1) * per), bs)
        })
        .collect();
    let b = c.batch(cmds)?;
    check_held(&b)?;
    for (i, (o, _)) in b.outcomes.iter().enumerate() {
        expect_good(o, &format!("WRITE(16) {i}"))?;
    }
    Ok(held_note(&b))
}

/// Reads `len` bytes at `lba` as [`IN_FLIGHT`] commands in flight at once.
fn read_in_flight(
    c: &mut dyn Initiator,
    l: u64,
    lba: u64,
    len: usize,
    bs: u32,
) -> Result<Vec<u8>, String> {
    let per = len / IN_FLIGHT;
    let cmds = (0..IN_FLIGHT)
        .map(|i| {
            read_cmd(
                l,
                lba + (i * per / bs as usize) as u64,
                (per / bs as usize) as u32,
                bs,
            )
        })
        .collect();
    let b = c.batch(cmds)?;
    check_held(&b)?;
    let mut out = Vec::with_capacity(len);
    for (i, (o, d)) in b.outcomes.iter().enumerate() {
        expect_good(o, &format!("READ(16) {i}"))?;
        if d.len() != per {
            return Err(format!("READ(16) {i}: {} bytes, {per} expected", d.len()));
        }
        out.extend_from_slice(d);
    }
    Ok(out)
}

/// Every command of the batch ended, and (where the driver can tell) all
/// of them were held by the core at once.
fn check_held(b: &Batch) -> Result<(), String> {
    if b.outcomes.len() != IN_FLIGHT {
        return Err(format!("{} of {IN_FLIGHT} tasks ended", b.outcomes.len()));
    }
    match b.held {
        Some(n) if n != IN_FLIGHT => Err(format!("{n} tasks in flight after {IN_FLIGHT} submits")),
        _ => Ok(()),
    }
}

fn held_note(b: &Batch) -> String {
    match b.held {
        Some(n) => format!("{n} in flight"),
        None => format!("{IN_FLIGHT} submitted before the first wait"),
    }
}

/// tgtd: 2 MiB of random data at a random LBA, 32 WRITE(16) in flight,
/// tgtd's backing file compared, 32 READ(16) in flight, compared.
fn tgtd_cell(ctx: &mut CellCtx, kind: Kind) -> Result<(), String> {
    const LEN: usize = 2 << 20;
    let t = Tgtd::start(&TgtdConfig::default())?;
    let l = lun(1);
    let mut rng = XorShift::from_time();
    let seed = rng.state();
    let data = Bytes::from(rng.bytes(LEN));
    let mut note = String::new();
    let r = ctx.captured(t.port(), || {
        let mut c = connect(kind, &t.portal(), config(Some(t.iqn()), op_params()))?;
        let cap = read_capacity(c.as_mut(), l)?;
        check_capacity(&cap, t.backing_file())?;
        let lba = random_lba(&mut rng, &cap, LEN)?;
        exec(
            c.as_mut(),
            ScsiCommand::new(
                iscsi_proto::scsi::Lun::from_u64(l),
                cdb::test_unit_ready().to_vec(),
            ),
            "TEST UNIT READY",
        )?;
        let held = write_in_flight(c.as_mut(), l, lba, &data, cap.block_len)?;
        let on_disk = file_region(t.backing_file(), lba * u64::from(cap.block_len), LEN)?;
        compare("backing file", &data, &on_disk)?;
        let back = read_in_flight(c.as_mut(), l, lba, LEN, cap.block_len)?;
        compare("read-back", &data, &back)?;
        c.logout().map_err(|e| match e {
            LogoutError::NoResponse(m) | LogoutError::Other(m) => format!("logout: {m}"),
        })?;
        note = format!(
            "{}: 2 MiB at LBA {lba} (seed {seed:#x}), {held}",
            kind.name()
        );
        Ok(())
    })?;
    if r.count_opcode(0x01) < 2 * IN_FLIGHT {
        let (_, lost) = pdus(&r.pcap, t.port())?;
        if lost == 0 {
            return Err(format!(
                "only {} SCSI Command PDUs on the wire",
                r.count_opcode(0x01)
            ));
        }
    }
    ctx.note(note);
    Ok(())
}

/// istgt (NopInInterval 2): 1 MiB at a random LBA, 32 writes in flight,
/// 10 s idle, 32 reads in flight and compared, ping, READ CAPACITY,
/// logout, backing file compared; istgt's NOP-Ins during the idle time
/// are on the wire and exactly those that ask for an answer got one.
fn istgt_cell(ctx: &mut CellCtx, kind: Kind) -> Result<(), String> {
    const LEN: usize = 1 << 20;
    let t = Istgt::start(&IstgtConfig {
        nop_in_interval: 2,
        ..IstgtConfig::default()
    })?;
    let l = lun(0);
    let mut rng = XorShift::from_time();
    let seed = rng.state();
    let data = Bytes::from(rng.bytes(LEN));
    let mut note = String::new();
    let r = ctx.captured(t.port(), || {
        let cfg = config(Some(t.iqn()), op_params());
        let isid: String = cfg
            .isid
            .unwrap_or_default()
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut c = connect(kind, &t.portal(), cfg)?;
        let cap = read_capacity(c.as_mut(), l)?;
        check_capacity(&cap, t.backing_file())?;
        let lba = random_lba(&mut rng, &cap, LEN)?;
        exec(
            c.as_mut(),
            ScsiCommand::new(
                iscsi_proto::scsi::Lun::from_u64(l),
                cdb::test_unit_ready().to_vec(),
            ),
            "TEST UNIT READY",
        )?;
        let held = write_in_flight(c.as_mut(), l, lba, &data, cap.block_len)?;
        let t0 = Instant::now();
        c.idle(IDLE).map_err(|e| format!("idle: {e}"))?;
        let idled = t0.elapsed();
        // Each driver's idle ends only once the time is up (a lower bound,
        // not a timing measurement): an early return would idle nothing.
        if idled < IDLE {
            return Err(format!("idle returned after {:.1} s", idled.as_secs_f64()));
        }
        let back = read_in_flight(c.as_mut(), l, lba, LEN, cap.block_len)
            .map_err(|e| format!("after {:.1} s idle: {e}", idled.as_secs_f64()))?;
        compare("read-back after idling", &data, &back)?;
        let echo = c
            .ping(Bytes::from_static(b"still-there"))
            .map_err(|e| format!("ping after idling: {e}"))?;
        if &echo[..] != b"still-there" {
            return Err(format!("ping echoed {echo:?}"));
        }
        let cap2 = read_capacity(c.as_mut(), l)?;
        check_capacity(&cap2, t.backing_file())?;
        let mut dropped = false;
        match c.logout() {
            Ok(()) => {}
            // istgt 0.4 now and then closes the connection after a Logout
            // Request without the Logout Response (README): accepted when
            // its log confirms the logout of this session's ISID.
            Err(LogoutError::NoResponse(e)) => {
                let log = std::fs::read_to_string(t.log_file()).unwrap_or_default();
                let confirmed = log
                    .lines()
                    .any(|l| l.starts_with("Logout from") && l.contains(&format!("ISID={isid}")));
                if !confirmed {
                    return Err(format!("logout: {e}; istgt log: {}", t.log_tail(4)));
                }
                dropped = true;
            }
            Err(LogoutError::Other(e)) => return Err(format!("logout: {e}")),
        }
        let on_disk = file_region(t.backing_file(), lba * u64::from(cap.block_len), LEN)?;
        compare("backing file", &data, &on_disk)?;
        note = format!(
            "{}: 1 MiB at LBA {lba} (seed {seed:#x}), {held}, idle {:.1} s{}",
            kind.name(),
            idled.as_secs_f64(),
            if dropped {
                "; istgt closed without a Logout Response"
            } else {
                ""
            }
        );
        Ok(())
    })?;
    // Target NOP-In: ITT 0xffffffff (RFC 7143 11.19.2); an answer is
    // wanted only when TTT != 0xffffffff (11.19.1), and then a NOP-Out with
    // ITT 0xffffffff echoing it "MUST" follow (11.18).
    let (all, lost) = pdus(&r.pcap, t.port())?;
    let itt = |p: &super::initiator_common::PduInfo| p.num("InitiatorTaskTag");
    let nop_in: Vec<_> = all
        .iter()
        .filter(|p| p.opcode == 0x20 && itt(p) == Some(0xffff_ffff))
        .collect();
    let asked = nop_in
        .iter()
        .filter(|p| p.num("TargetTransferTag") != Some(0xffff_ffff))
        .count();
    let answers = all
        .iter()
        .filter(|p| p.opcode == 0x00 && itt(p) == Some(0xffff_ffff))
        .count();
    if nop_in.is_empty() && lost == 0 {
        return Err("istgt sent no NOP-In during the idle time".into());
    }
    if answers != asked && lost == 0 {
        return Err(format!(
            "{asked} NOP-In asked for an answer, {answers} NOP-Out answered"
        ));
    }
    ctx.note(format!(
        "{note}; {} NOP-In ({asked} asking), {answers} answered",
        nop_in.len()
    ));
    Ok(())
}

pub(super) fn cells() -> Vec<Cell> {
    let mut v = Vec::new();
    for kind in Kind::ALL {
        v.push(
            Cell::new(G, &format!("tgtd-{}", kind.name()), move |ctx| {
                tgtd_cell(ctx, kind)
            })
            .with_timeout(Duration::from_secs(90)),
        );
    }
    for kind in Kind::ALL {
        v.push(
            Cell::new(G, &format!("istgt-{}", kind.name()), move |ctx| {
                istgt_cell(ctx, kind)
            })
            .with_timeout(Duration::from_secs(120)),
        );
    }
    v
}
