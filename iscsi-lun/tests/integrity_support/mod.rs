//! The integrity oracle: the initiator core, the target core and
//! `iscsi-lun` RAM disks in memory, on virtual time, driven by a sequence
//! of [`Op`]s (from proptest or from fuzzer bytes), with an oracle written
//! from RFC 7143 checking what the application and the medium see.
//!
//! Shared by `tests/integrity_model.rs` (proptest) and by the cargo-fuzz
//! target `fuzz/fuzz_targets/integrity.rs` (which includes this file with
//! `#[path]`), so both check exactly the same invariants.
//!
//! Unlike `pair_support`, nothing moves on its own: the initiator's
//! `poll_transmit` is drained only by [`Op::IniTx`] (a socket that "would
//! block" in between), bytes cross the wire only by [`Op::ToTarget`] /
//! [`Op::ToInitiator`] in the given cuts, and the target application may
//! hold commands ([`Op::Hold`]) before executing them ([`Op::Release`]).
//! The target application reacts to its events at once (it acknowledges
//! aborts as `iscsi_proto::target` asks), and its socket never blocks.
//!
//! The harness never panics on a misbehaving core: every breach is
//! recorded as a [`Violation`] naming its [`Invariant`], so that each
//! invariant is a separate, named check.
#![allow(dead_code)]

use iscsi_proto::time::Instant;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_lun::{run_command, LogicalUnit, LuConfig, NexusId, RamDisk};
use iscsi_proto::error::TaskError;
use iscsi_proto::initiator::{
    open_session, Event, Recovery, ScsiCommand, Session as Ini, SessionConfig, TaskId, TaskOutcome,
};
use iscsi_proto::login::OperationalParams;
use iscsi_proto::scsi::sense::SenseData;
use iscsi_proto::scsi::{cdb, Lun, ScsiStatus, SenseKey};
use iscsi_proto::target::{
    Event as TargetEvent, NopConfig, Phase as TgtPhase, ScsiRequest, Session as Tgt,
    SessionConfig as TgtConfig,
};
use iscsi_proto::wire::{
    AsyncEvent, AsyncMessage, DecoderConfig, Digests, Header, Pdu, PduDecoder, Serial, TmfFunction,
};

/// Target name.
pub const TARGET: &str = "iqn.2026-01.test.integrity:disk";
/// Initiator name.
pub const INITIATOR: &str = "iqn.2026-01.test.integrity:host";
/// Block size.
pub const BS: usize = 512;
/// Blocks per LUN (small, so that commands collide).
pub const BLOCKS: u8 = 24;
/// Number of LUNs (two, so that the scope of a TMF matters).
pub const LUNS: u8 = 2;
/// The I_T nexus of the (single) session.
pub const NEXUS: NexusId = NexusId(1);
/// Bound on the settling phase (virtual time).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(900);

// ---------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------

/// A task management function the application may issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfKind {
    /// ABORT TASK SET.
    AbortTaskSet,
    /// CLEAR TASK SET.
    ClearTaskSet,
    /// LOGICAL UNIT RESET.
    LogicalUnitReset,
    /// TARGET WARM RESET.
    TargetWarmReset,
    /// TARGET COLD RESET (the target drops the connection).
    TargetColdReset,
}

impl TmfKind {
    fn function(self) -> TmfFunction {
        match self {
            TmfKind::AbortTaskSet => TmfFunction::AbortTaskSet,
            TmfKind::ClearTaskSet => TmfFunction::ClearTaskSet,
            TmfKind::LogicalUnitReset => TmfFunction::LogicalUnitReset,
            TmfKind::TargetWarmReset => TmfFunction::TargetWarmReset,
            TmfKind::TargetColdReset => TmfFunction::TargetColdReset,
        }
    }
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Submit READ(10) of `blocks` blocks at `lba` on `lun` (all reduced
    /// into range).
    Read { lun: u8, lba: u8, blocks: u8 },
    /// Submit WRITE(10): every block carries a stamp naming this
    /// submission, so the medium tells which write put it there.
    Write { lun: u8, lba: u8, blocks: u8 },
    /// Submit COMPARE AND WRITE of one block (non-idempotent): the verify
    /// instance is the model's last known content of the block.
    CompareAndWrite { lun: u8, lba: u8 },
    /// Submit PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING KEY
    /// (non-idempotent: it bumps the PRgeneration), with a service action
    /// reservation key naming this submission.
    PrOut { lun: u8 },
    /// `Session::abort_task` on a live SCSI task (picked among them).
    AbortTask { pick: u8 },
    /// `Session::task_management`.
    Tmf { kind: TmfKind, lun: u8 },
    /// `Session::nop_ping`.
    Ping,
    /// A Text exchange in Full Feature Phase (`Session::send_targets`).
    Text,
    /// Asynchronous Message 1 (logout requested) from the target.
    AsyncLogout,
    /// Asynchronous Message 2 (the target drops the connection).
    AsyncDrop,
    /// Asynchronous Message 4 (renegotiation requested).
    AsyncNegotiate,
    /// Drain at most `n` PDUs of the initiator's `poll_transmit` onto the
    /// wire (0: all of them).
    IniTx { n: u8 },
    /// Deliver at most `n` bytes (0: all) of the initiator's output to the
    /// target.
    ToTarget { n: u16 },
    /// Deliver at most `n` bytes (0: all) of the target's output to the
    /// initiator.
    ToInitiator { n: u16 },
    /// The target application holds (true) or executes at once (false)
    /// the commands it receives.
    Hold(bool),
    /// The target application executes its `n` oldest held commands.
    Release { n: u8 },
    /// The TCP connection fails (both sides see it closed).
    Drop,
    /// Virtual time advances by `ms`, firing the timers due.
    Advance { ms: u32 },
}

/// Session parameters of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// The target's command window.
    pub window: u32,
    /// ImmediateData (both sides offer it).
    pub immediate_data: bool,
    /// InitialR2T (both sides offer it).
    pub initial_r2t: bool,
    /// Seed of the target.
    pub seed: u64,
    /// CmdSN of the leading login (near 2^32 to cross the wrap).
    pub initial_cmd_sn: u32,
    /// NOP pings from both sides on timers.
    pub keepalive: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            window: 4,
            immediate_data: true,
            initial_r2t: true,
            seed: 1,
            initial_cmd_sn: 1,
            keepalive: false,
        }
    }
}

// ---------------------------------------------------------------------
// Invariants
// ---------------------------------------------------------------------

/// The invariants, each a separate check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invariant {
    /// Every task the application started ends exactly once.
    ExactlyOnce,
    /// No TMF precedes on the wire a command it covers.
    TmfOrder,
    /// A task reported Aborted never reaches the medium afterwards.
    AbortedNotExecutedAfter,
    /// Non-idempotent commands execute at most once (and are not
    /// reissued); writes at most once unless reissued after a loss.
    AtMostOnce,
    /// The medium and GOOD reads agree with the model.
    Medium,
    /// Every task ends within bounded virtual time.
    NoHang,
}

/// One breach.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What happened.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}", self.invariant, self.what)
    }
}

// ---------------------------------------------------------------------
// Model of what the application did
// ---------------------------------------------------------------------

/// What a submission is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubKind {
    /// READ(10).
    Read { lun: u8, lba: u8, blocks: u8 },
    /// WRITE(10).
    Write { lun: u8, lba: u8, blocks: u8 },
    /// COMPARE AND WRITE, one block.
    Caw { lun: u8, lba: u8 },
    /// PERSISTENT RESERVE OUT.
    PrOut { lun: u8 },
    /// A task management function (ABORT TASK included).
    Tmf,
    /// A ping.
    Ping,
    /// A text exchange.
    Text,
}

impl SubKind {
    fn is_scsi(&self) -> bool {
        matches!(
            self,
            SubKind::Read { .. }
                | SubKind::Write { .. }
                | SubKind::Caw { .. }
                | SubKind::PrOut { .. }
        )
    }

    fn non_idempotent(&self) -> bool {
        matches!(self, SubKind::Caw { .. } | SubKind::PrOut { .. })
    }

    /// (lun, first block, blocks) the command may write.
    fn writes(&self) -> Option<(u8, u8, u8)> {
        match *self {
            SubKind::Write { lun, lba, blocks } => Some((lun, lba, blocks)),
            SubKind::Caw { lun, lba } => Some((lun, lba, 1)),
            _ => None,
        }
    }
}

/// One task the application started.
#[derive(Debug, Clone)]
pub struct Sub {
    /// Submission number, from 1 (the stamp in the data).
    pub id: u32,
    /// The initiator's handle.
    pub task: TaskId,
    /// What it is.
    pub kind: SubKind,
    /// Logical time of the submission.
    pub submitted: u64,
    /// Logical time its completion was reported.
    pub ended: Option<u64>,
    /// Its outcome.
    pub outcome: Option<TaskOutcome>,
    /// It was live when a connection was lost (so it may have run before
    /// and be reissued).
    pub live_at_loss: bool,
    /// Connection numbers its SCSI Command PDU was sent on.
    pub sent_on: Vec<u32>,
    /// Read data, assembled at the delivered offsets.
    pub data_in: Vec<u8>,
}

impl Sub {
    fn good(&self) -> bool {
        matches!(&self.outcome, Some(TaskOutcome::Scsi(r)) if r.is_good())
    }

    fn aborted(&self) -> bool {
        matches!(
            &self.outcome,
            Some(TaskOutcome::Failed(TaskError::Aborted(_)))
        )
    }

    /// Could this write have changed the medium? A GOOD write did; one
    /// whose outcome is unknown (connection lost, logged out, protocol
    /// error, never ended) may have; one that ended Aborted, Rejected or
    /// with a non-GOOD status did not, unless an earlier attempt on a lost
    /// connection may have run.
    fn may_have_applied(&self) -> bool {
        match &self.outcome {
            None => true,
            Some(TaskOutcome::Scsi(r)) if r.is_good() => true,
            Some(TaskOutcome::Scsi(_)) => self.live_at_loss,
            Some(TaskOutcome::Failed(TaskError::Aborted(_)))
            | Some(TaskOutcome::Failed(TaskError::Rejected(_))) => self.live_at_loss,
            Some(_) => true,
        }
    }
}

/// What the target's logical unit executed.
#[derive(Debug, Clone)]
pub struct Exec {
    /// Logical time.
    pub at: u64,
    /// The submission named by the data (write, COMPARE AND WRITE,
    /// PERSISTENT RESERVE OUT), if any.
    pub sub: Option<u32>,
    /// CDB opcode.
    pub opcode: u8,
    /// The LU's status.
    pub status: ScsiStatus,
    /// It failed on a pending unit attention (nothing was done).
    pub unit_attention: bool,
    /// Connection number.
    pub conn: u32,
}

/// The content block `lba` of `lun` gets from submission `sub`.
pub fn stamp(sub: u32, lun: u8, lba: u8) -> Vec<u8> {
    let mut v = vec![0u8; BS];
    v[..4].copy_from_slice(b"IMDL");
    v[4..8].copy_from_slice(&sub.to_be_bytes());
    v[8] = lun;
    v[9] = lba;
    let mut x = u64::from(sub) << 16 | u64::from(lun) << 8 | u64::from(lba);
    for chunk in v[16..].chunks_mut(8) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    v
}

/// Which submission wrote this block: `Some(0)` for the initial zeros,
/// `Some(id)` for a valid stamp of `id` at this place, `None` for
/// anything else (torn or misplaced data).
pub fn writer_of(block: &[u8], lun: u8, lba: u8) -> Option<u32> {
    if block.iter().all(|&b| b == 0) {
        return Some(0);
    }
    if block.len() != BS || &block[..4] != b"IMDL" {
        return None;
    }
    let id = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
    (block == stamp(id, lun, lba).as_slice()).then_some(id)
}

const PR_KEY_TAG: u64 = 0x4d44_4c00_0000_0000;

// ---------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------

/// A TMF as sent, for the wire-order check.
#[derive(Debug, Clone)]
struct SentTmf {
    function: TmfFunction,
    lun: u64,
    cmd_sn: Serial,
    ref_tag: u32,
    ref_cmd_sn: Serial,
}

/// The initiator, the target, the logical units and the wires, with the
/// oracle's bookkeeping.
pub struct World {
    /// Virtual time.
    pub now: Instant,
    start: Instant,
    /// The initiator.
    pub ini: Ini,
    /// The target connection.
    pub tgt: Tgt,
    tgt_cfg: TgtConfig,
    /// LUN 0, 1.
    pub lus: Vec<LogicalUnit>,
    lun_list: Vec<Lun>,
    i2t: BytesMut,
    t_rx: BytesMut,
    t2i: BytesMut,
    i_rx: BytesMut,
    /// The target already saw the current connection close.
    tgt_closed_seen: bool,
    /// The initiator already saw the current connection close.
    ini_closed_seen: bool,
    /// Connection number (1 for the first).
    pub conn: u32,
    /// Logical clock.
    pub clock: u64,
    /// Every submission.
    pub subs: Vec<Sub>,
    live: HashMap<TaskId, usize>,
    /// Every LU execution.
    pub execs: Vec<Exec>,
    hold: bool,
    held: VecDeque<ScsiRequest>,
    wire_dec: PduDecoder,
    wire_buf: BytesMut,
    wire_tmfs: Vec<SentTmf>,
    /// Breaches found.
    pub violations: Vec<Violation>,
    /// The session ended for good.
    pub session_over: bool,
    /// A readable log of the PDUs and events (kept when `INTEGRITY_TRACE`
    /// is set in the environment).
    pub trace: Option<Vec<String>>,
    tgt_dec: PduDecoder,
    tgt_wire: BytesMut,
}

/// LUN field of LUN `n`.
pub fn lun_field(n: u8) -> u64 {
    Lun::from_number(u16::from(n)).to_u64()
}

fn lu_for(luns: u8) -> Vec<LogicalUnit> {
    let list: Vec<Lun> = (0..luns).map(|n| Lun::from_number(u16::from(n))).collect();
    (0..luns)
        .map(|_| {
            let cfg = LuConfig {
                luns: list.clone(),
                ..LuConfig::default()
            };
            LogicalUnit::new(
                RamDisk::new(u64::from(BLOCKS) * BS as u64, BS as u32).expect("RAM disk"),
                cfg,
            )
        })
        .collect()
}

impl World {
    /// A world logged in and in Full Feature Phase (or with a violation
    /// recorded when login fails).
    pub fn new(s: &Setup) -> World {
        let start = Instant::ZERO;
        let mut tc = TgtConfig::new(TARGET);
        tc.targets[0].luns = (0..LUNS).map(lun_field).collect();
        tc.seed = s.seed;
        tc.cmd_window = s.window.max(1);
        tc.params = OperationalParams {
            immediate_data: s.immediate_data,
            initial_r2t: s.initial_r2t,
            max_recv_data_segment_length: 1024,
            max_burst_length: 2048,
            first_burst_length: 1024,
            ..OperationalParams::default()
        };
        let mut ic = SessionConfig::new(INITIATOR)
            .with_target(TARGET)
            .with_initial_cmd_sn(s.initial_cmd_sn)
            .with_recovery(Recovery {
                max_attempts: 4,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(8),
            });
        ic.operational = OperationalParams {
            immediate_data: s.immediate_data,
            initial_r2t: s.initial_r2t,
            max_recv_data_segment_length: 2048,
            max_burst_length: 2048,
            first_burst_length: 1024,
            ..OperationalParams::default()
        };
        if s.keepalive {
            tc.nop = Some(NopConfig {
                interval: Duration::from_secs(4),
                timeout: Duration::from_secs(20),
            });
            ic = ic.with_keepalive(Duration::from_secs(5), Duration::from_secs(20));
        }
        let ini = open_session(ic, start, [0x12, 0x34, 0x56]).expect("valid initiator config");
        let tgt = Tgt::new(tc.clone()).expect("valid target config");
        let mut w = World {
            now: start,
            start,
            ini,
            tgt,
            tgt_cfg: tc,
            lus: lu_for(LUNS),
            lun_list: (0..LUNS).map(|n| Lun::from_number(u16::from(n))).collect(),
            i2t: BytesMut::new(),
            t_rx: BytesMut::new(),
            t2i: BytesMut::new(),
            i_rx: BytesMut::new(),
            tgt_closed_seen: false,
            ini_closed_seen: false,
            conn: 0,
            clock: 0,
            subs: Vec::new(),
            live: HashMap::new(),
            execs: Vec::new(),
            hold: false,
            held: VecDeque::new(),
            wire_dec: wire_decoder(),
            wire_buf: BytesMut::new(),
            wire_tmfs: Vec::new(),
            violations: Vec::new(),
            session_over: false,
            trace: std::env::var_os("INTEGRITY_TRACE").map(|_| Vec::new()),
            tgt_dec: wire_decoder(),
            tgt_wire: BytesMut::new(),
        };
        w.ini_events();
        w.pump_all();
        if !w.ini.is_logged_in() {
            w.violate(
                Invariant::NoHang,
                "the initial login did not complete".into(),
            );
        }
        w
    }

    pub fn log(&mut self, f: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            let line = format!("t={} {}", self.clock, f());
            t.push(line);
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn violate(&mut self, invariant: Invariant, what: String) {
        self.violations.push(Violation { invariant, what });
    }

    // ----- the initiator side -----

    /// Drains the initiator's events (the application reacts at once).
    fn ini_events(&mut self) {
        while let Some(ev) = self.ini.poll_event() {
            if !matches!(ev, Event::DataIn { .. }) {
                self.log(|| format!("ini event {ev:?}"));
            }
            match ev {
                Event::Connect { .. } => self.reconnect(),
                Event::DataIn { task, offset, data } => {
                    if let Some(&i) = self.live.get(&task) {
                        let buf = &mut self.subs[i].data_in;
                        let end = offset as usize + data.len();
                        if buf.len() < end {
                            buf.resize(end, 0);
                        }
                        buf[offset as usize..end].copy_from_slice(&data);
                    }
                }
                Event::Complete { task, outcome } => {
                    let at = self.tick();
                    match self.live.remove(&task) {
                        Some(i) => {
                            self.subs[i].ended = Some(at);
                            self.subs[i].outcome = Some(outcome);
                        }
                        None => self.violate(
                            Invariant::ExactlyOnce,
                            format!(
                                "Event::Complete for {task:?} which is not a live task \
                                 (ended twice, or never started): {outcome:?}"
                            ),
                        ),
                    }
                }
                Event::Recovering { .. } => {
                    for &i in self.live.values() {
                        self.subs[i].live_at_loss = true;
                    }
                    self.close_tgt_side();
                }
                Event::Closed(_) => {
                    self.session_over = true;
                    self.close_tgt_side();
                }
                _ => {}
            }
        }
    }

    /// The initiator dropped the TCP connection: the target sees it.
    fn close_tgt_side(&mut self) {
        self.ini_closed_seen = true;
        if !self.tgt_closed_seen {
            self.tgt_closed_seen = true;
            self.tgt.handle_closed(self.now);
            self.tgt_app();
        }
        self.i2t.clear();
        self.t_rx.clear();
        self.t2i.clear();
        self.i_rx.clear();
    }

    /// `Event::Connect`: a new TCP connection to a fresh target connection
    /// (session reinstatement on the target side: the old tasks are gone).
    fn reconnect(&mut self) {
        if self.conn > 0 && !self.tgt_closed_seen {
            self.tgt.handle_closed(self.now);
            self.tgt_app();
        }
        // Session reinstatement terminates every task of the old session
        // (RFC 7143 section 6.3.5): nothing held survives it.
        self.held.clear();
        self.conn += 1;
        self.tgt = Tgt::new(self.tgt_cfg.clone()).expect("valid target config");
        self.tgt_closed_seen = false;
        self.ini_closed_seen = false;
        self.i2t.clear();
        self.t_rx.clear();
        self.t2i.clear();
        self.i_rx.clear();
        self.wire_dec = wire_decoder();
        self.wire_buf.clear();
        self.wire_tmfs.clear();
        self.tgt_dec = wire_decoder();
        self.tgt_wire.clear();
        self.log(|| "new TCP connection".into());
        self.ini.handle_connected(self.now);
    }

    fn new_sub(&mut self, task: TaskId, kind: SubKind) -> u32 {
        let at = self.tick();
        let id = self.subs.len() as u32 + 1;
        if let Some(&old) = self.live.get(&task) {
            let old_id = self.subs[old].id;
            self.violate(
                Invariant::ExactlyOnce,
                format!("{task:?} handed out again while submission {old_id} still live"),
            );
        }
        self.live.insert(task, self.subs.len());
        self.subs.push(Sub {
            id,
            task,
            kind,
            submitted: at,
            ended: None,
            outcome: None,
            live_at_loss: false,
            sent_on: Vec::new(),
            data_in: Vec::new(),
        });
        id
    }

    /// The model's last known content of a block (the writer that
    /// definitely came last among the ended ones), for COMPARE AND WRITE.
    fn known_block(&self, lun: u8, lba: u8) -> Vec<u8> {
        let mut best: Option<&Sub> = None;
        for s in &self.subs {
            let covers = s
                .kind
                .writes()
                .is_some_and(|(l, a, n)| l == lun && (a..a + n).contains(&lba));
            if covers && s.good() && best.is_none_or(|b| b.ended < s.ended) {
                best = Some(s);
            }
        }
        match best {
            Some(s) => stamp(s.id, lun, lba),
            None => vec![0u8; BS],
        }
    }

    fn submit(&mut self, kind: SubKind) {
        let next_id = self.subs.len() as u32 + 1;
        let cmd = match kind {
            SubKind::Read { lun, lba, blocks } => ScsiCommand::read(
                iscsi_proto::scsi::Lun::from_u64(lun_field(lun)),
                Bytes::copy_from_slice(&cdb::read10(
                    u32::from(lba),
                    u16::from(blocks),
                    Default::default(),
                )),
                u32::from(blocks) * BS as u32,
            ),
            SubKind::Write { lun, lba, blocks } => {
                let mut data = Vec::with_capacity(usize::from(blocks) * BS);
                for b in lba..lba + blocks {
                    data.extend_from_slice(&stamp(next_id, lun, b));
                }
                ScsiCommand::write(
                    iscsi_proto::scsi::Lun::from_u64(lun_field(lun)),
                    Bytes::copy_from_slice(&cdb::write10(
                        u32::from(lba),
                        u16::from(blocks),
                        Default::default(),
                    )),
                    Bytes::from(data),
                )
            }
            SubKind::Caw { lun, lba } => {
                let mut data = self.known_block(lun, lba);
                data.extend_from_slice(&stamp(next_id, lun, lba));
                let mut c = [0u8; 16];
                c[0] = 0x89;
                c[2..10].copy_from_slice(&u64::from(lba).to_be_bytes());
                c[13] = 1;
                ScsiCommand::write(
                    iscsi_proto::scsi::Lun::from_u64(lun_field(lun)),
                    Bytes::copy_from_slice(&c),
                    Bytes::from(data),
                )
            }
            SubKind::PrOut { lun } => {
                // SPC-4 6.16: REGISTER AND IGNORE EXISTING KEY (6),
                // PARAMETER LIST LENGTH 24.
                let c = [0x5f, 0x06, 0, 0, 0, 0, 0, 0, 24, 0];
                let mut p = vec![0u8; 24];
                p[8..16].copy_from_slice(&(PR_KEY_TAG | u64::from(next_id)).to_be_bytes());
                ScsiCommand::write(
                    iscsi_proto::scsi::Lun::from_u64(lun_field(lun)),
                    Bytes::copy_from_slice(&c),
                    Bytes::from(p),
                )
            }
            _ => return,
        };
        if let Ok(task) = self.ini.submit(self.now, cmd) {
            self.new_sub(task, kind);
        }
        self.ini_events();
    }

    fn abort_task(&mut self, pick: u8) {
        let mut live: Vec<(u32, TaskId)> = self
            .live
            .values()
            .map(|&i| &self.subs[i])
            .filter(|s| s.kind.is_scsi())
            .map(|s| (s.id, s.task))
            .collect();
        if live.is_empty() {
            return;
        }
        live.sort_unstable();
        let (_, victim) = live[usize::from(pick) % live.len()];
        if let Ok(t) = self.ini.abort_task(self.now, victim) {
            self.new_sub(t, SubKind::Tmf);
        }
        self.ini_events();
    }

    fn tmf(&mut self, kind: TmfKind, lun: u8) {
        if let Ok(t) = self
            .ini
            .task_management(self.now, lun_field(lun % LUNS), kind.function())
        {
            self.new_sub(t, SubKind::Tmf);
        }
        self.ini_events();
    }

    /// Drains up to `n` PDUs (0: all) from the initiator onto the wire,
    /// decoding them for the wire checks.
    fn ini_tx(&mut self, n: usize) {
        let mut budget = if n == 0 { usize::MAX } else { n };
        while budget > 0 {
            let Some(t) = self.ini.poll_transmit(self.now) else {
                break;
            };
            budget -= 1;
            let mut v = Vec::with_capacity(t.len());
            t.write_to(&mut v);
            drop(t);
            self.wire_buf.extend_from_slice(&v);
            if !self.ini_closed_seen {
                self.i2t.extend_from_slice(&v);
            }
            self.sniff();
        }
        self.ini_events();
    }

    /// RFC 7143 section 11.5.1 (RFC 3720 10.5.1): "Task management
    /// requests must act on all the commands from the same session having
    /// a CmdSN lower than the task management CmdSN", and for immediate
    /// requests "the operations involved ... may be postponed to allow the
    /// target to receive all relevant tasks". A target receiving a TMF
    /// before a command it covers cannot act on it; the initiator must not
    /// let such a command trail its TMF on the connection. For ABORT TASK
    /// the covered command is the referenced task (Referenced Task Tag,
    /// RefCmdSN: section 11.5.4/11.5.5).
    fn sniff(&mut self) {
        loop {
            let pdu: Pdu = match self.wire_dec.decode(&mut self.wire_buf) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(_) => {
                    // This harness negotiates no digests: a decode error is
                    // the initiator's (other checks will notice).
                    self.wire_buf.clear();
                    return;
                }
            };
            self.log(|| format!("ini -> {:?}", pdu.header));
            match pdu.header {
                Header::TaskMgmtRequest(t) => self.wire_tmfs.push(SentTmf {
                    function: t.function,
                    lun: t.lun,
                    cmd_sn: t.cmd_sn,
                    ref_tag: t.referenced_task_tag,
                    ref_cmd_sn: t.ref_cmd_sn,
                }),
                Header::ScsiCommand(c) => {
                    for t in &self.wire_tmfs {
                        let covered = match t.function {
                            TmfFunction::AbortTask => {
                                c.itt == t.ref_tag && c.cmd_sn == t.ref_cmd_sn
                            }
                            TmfFunction::AbortTaskSet
                            | TmfFunction::ClearTaskSet
                            | TmfFunction::LogicalUnitReset => {
                                c.lun == t.lun && c.cmd_sn.precedes(t.cmd_sn)
                            }
                            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                                c.cmd_sn.precedes(t.cmd_sn)
                            }
                            _ => false,
                        };
                        if covered {
                            let what = format!(
                                "SCSI Command ITT {:#x} CmdSN {} LUN {:#x} sent after the {:?} \
                                 (CmdSN {}, RefCmdSN {}, ref ITT {:#x}) that covers it",
                                c.itt,
                                c.cmd_sn.get(),
                                c.lun,
                                t.function,
                                t.cmd_sn.get(),
                                t.ref_cmd_sn.get(),
                                t.ref_tag
                            );
                            self.violations.push(Violation {
                                invariant: Invariant::TmfOrder,
                                what,
                            });
                        }
                    }
                    // Which submission this is (the task is live in the
                    // initiator when its command goes out).
                    if let Some(&i) = self
                        .live
                        .iter()
                        .find_map(|(t, i)| (t.itt() == c.itt).then_some(i))
                    {
                        let conn = self.conn;
                        let s = &mut self.subs[i];
                        if s.kind.non_idempotent() && s.sent_on.iter().any(|&k| k != conn) {
                            let what = format!(
                                "non-idempotent submission {} ({:?}) reissued on connection \
                                 {conn} after being sent on connection(s) {:?}",
                                s.id, s.kind, s.sent_on
                            );
                            self.violations.push(Violation {
                                invariant: Invariant::AtMostOnce,
                                what,
                            });
                        }
                        s.sent_on.push(conn);
                    }
                }
                _ => {}
            }
        }
    }

    fn deliver_to_target(&mut self, n: usize) {
        if self.tgt_closed_seen {
            self.i2t.clear();
            return;
        }
        if self.i2t.is_empty() {
            return;
        }
        let n = if n == 0 {
            self.i2t.len()
        } else {
            n.min(self.i2t.len())
        };
        let chunk = self.i2t.split_to(n);
        self.t_rx.extend_from_slice(&chunk);
        self.tgt.handle_input(self.now, &mut self.t_rx);
        self.tgt_app();
    }

    fn deliver_to_initiator(&mut self, n: usize) {
        if self.ini_closed_seen {
            self.t2i.clear();
            return;
        }
        if !self.t2i.is_empty() {
            let n = if n == 0 {
                self.t2i.len()
            } else {
                n.min(self.t2i.len())
            };
            let chunk = self.t2i.split_to(n);
            self.i_rx.extend_from_slice(&chunk);
            self.ini.handle_input(self.now, &mut self.i_rx);
            self.ini_events();
        }
        self.fin_to_initiator();
    }

    /// The target closed and everything it sent has arrived: the TCP
    /// connection ends for the initiator too.
    fn fin_to_initiator(&mut self) {
        if self.tgt.is_closed() && self.t2i.is_empty() && !self.ini_closed_seen {
            self.ini_closed_seen = true;
            self.tgt_closed_seen = true;
            self.ini.handle_closed(self.now);
            self.ini_events();
        }
    }

    // ----- the target side -----

    /// The target application: reacts to every event, then flushes.
    fn tgt_app(&mut self) {
        loop {
            while let Some(ev) = self.tgt.poll_event() {
                self.log(|| match &ev {
                    TargetEvent::Command(r) => format!(
                        "tgt event Command {:?} ITT {:#x} CmdSN {} LUN {:#x} CDB {:02x?} ({} bytes out)",
                        r.task,
                        r.itt,
                        r.cmd_sn.get(),
                        r.lun,
                        &r.cdb[..],
                        r.data_out.len()
                    ),
                    TargetEvent::LoggedIn { tsih, .. } => format!("tgt event LoggedIn tsih {tsih}"),
                    other => format!("tgt event {other:?}"),
                });
                match ev {
                    TargetEvent::Command(req) => {
                        if self.hold {
                            self.held.push_back(req);
                        } else {
                            self.execute(&req);
                        }
                    }
                    TargetEvent::TaskAborted { task } => {
                        // Stop it: it must no longer touch the medium.
                        self.held.retain(|r| r.task != task);
                        if !self.tgt.is_closed() {
                            let _ = self.tgt.abort_acknowledged(task);
                        }
                    }
                    TargetEvent::TaskManagement { function, lun, .. } => {
                        self.task_management(function, lun)
                    }
                    TargetEvent::Closed { .. } => self.held.clear(),
                    _ => {}
                }
            }
            let mut any = false;
            while let Some(t) = self.tgt.poll_transmit(self.now) {
                any = true;
                if self.trace.is_some() {
                    t.write_to(&mut self.tgt_wire);
                    while let Ok(Some(p)) = self.tgt_dec.decode(&mut self.tgt_wire) {
                        self.log(|| format!("tgt -> {:?}", p.header));
                    }
                }
                if !self.ini_closed_seen {
                    t.write_to(&mut self.t2i);
                }
            }
            if !any {
                break;
            }
        }
        if self.ini_closed_seen {
            self.t2i.clear();
        }
    }

    /// SAM-5: resets set a unit attention.
    fn task_management(&mut self, function: TmfFunction, lun: u64) {
        let ua = |code| SenseData::with_code(SenseKey::UnitAttention, code);
        match function {
            TmfFunction::LogicalUnitReset => {
                if let Some(lu) = Lun::from_u64(lun)
                    .number()
                    .and_then(|n| self.lus.get_mut(usize::from(n)))
                {
                    lu.add_unit_attention(NEXUS, ua((0x29, 0x03)));
                }
            }
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                for lu in &mut self.lus {
                    lu.add_unit_attention(NEXUS, ua((0x29, 0x02)));
                }
            }
            _ => {}
        }
    }

    /// Runs one command on its logical unit and completes it.
    fn execute(&mut self, req: &ScsiRequest) {
        let (out, written) = run_command(&mut self.lus, &self.lun_list, NEXUS, req);
        let opcode = req.cdb.first().copied().unwrap_or(0);
        let d = &req.data_out;
        let sub = match opcode {
            0x2a if d.len() >= 8 && &d[..4] == b"IMDL" => {
                Some(u32::from_be_bytes([d[4], d[5], d[6], d[7]]))
            }
            0x89 if d.len() >= BS + 8 && &d[BS..BS + 4] == b"IMDL" => Some(u32::from_be_bytes([
                d[BS + 4],
                d[BS + 5],
                d[BS + 6],
                d[BS + 7],
            ])),
            0x5f if d.len() >= 16 => {
                let k = u64::from_be_bytes([d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]]);
                (k & !0xffff_ffff == PR_KEY_TAG).then_some(k as u32)
            }
            _ => None,
        };
        let at = self.tick();
        self.execs.push(Exec {
            at,
            sub,
            opcode,
            status: out.status,
            unit_attention: out.sense.is_some_and(|s| s.key == SenseKey::UnitAttention),
            conn: self.conn,
        });
        let sense = out.sense_bytes().map(|s| Bytes::copy_from_slice(&s));
        let _ = match written {
            Some(n) => self.tgt.complete_write(req.task, out.status, sense, n),
            None => self.tgt.complete(req.task, out.status, sense, out.data_in),
        };
    }

    fn release(&mut self, n: usize) {
        let n = if n == 0 { self.held.len() } else { n };
        for _ in 0..n {
            let Some(req) = self.held.pop_front() else {
                break;
            };
            self.execute(&req);
        }
        self.tgt_app();
    }

    fn async_message(&mut self, which: u8) {
        if self.tgt.phase() != TgtPhase::FullFeature {
            return;
        }
        match which {
            1 => {
                let _ = self.tgt.request_logout(5);
            }
            2 => {
                let _ = self.tgt.drop_connection(1, 0);
            }
            _ => {
                // The target core has no API for AsyncEvent 4: the
                // message is added after what the target already sent
                // (a PDU boundary), numbered with the target's next
                // StatSN, which the initiator accepts as a duplicate later.
                let m = AsyncMessage {
                    lun: 0,
                    stat_sn: self.tgt.stat_sn(),
                    exp_cmd_sn: self.tgt.exp_cmd_sn(),
                    max_cmd_sn: self.tgt.max_cmd_sn(),
                    event: AsyncEvent::NegotiationRequested,
                    vcode: 0,
                    parameter1: 0,
                    parameter2: 0,
                    parameter3: 10,
                };
                // This harness negotiates no digests.
                let _ = Pdu::new(m, Bytes::new()).encode(&mut self.t2i, Digests::NONE);
            }
        }
        self.tgt_app();
    }

    // ----- time -----

    /// Advances virtual time by `d`, firing every timer due on the way
    /// (without draining the initiator's transmit queue: that is
    /// [`Op::IniTx`]'s job).
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1000 {
            let next = [self.ini.poll_timeout(), self.tgt_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(next) = next else {
                break;
            };
            if next > self.now {
                self.now = next;
            }
            if self.ini.poll_timeout().is_some_and(|t| t <= self.now) {
                self.ini.handle_timeout(self.now);
                self.ini_events();
            }
            if self.tgt_timeout().is_some_and(|t| t <= self.now) {
                self.tgt.handle_timeout(self.now);
                self.tgt_app();
                self.fin_to_initiator();
            }
        }
        self.now = end;
    }

    fn tgt_timeout(&self) -> Option<Instant> {
        if self.tgt_closed_seen {
            None
        } else {
            self.tgt.poll_timeout()
        }
    }

    // ----- running -----

    /// Applies one op.
    pub fn apply(&mut self, op: &Op) {
        let clamp = |lba: u8, blocks: u8| {
            let blocks = 1 + blocks % 4;
            let lba = lba % (BLOCKS - blocks + 1);
            (lba, blocks)
        };
        match *op {
            Op::Read { lun, lba, blocks } => {
                let (lba, blocks) = clamp(lba, blocks);
                self.submit(SubKind::Read {
                    lun: lun % LUNS,
                    lba,
                    blocks,
                })
            }
            Op::Write { lun, lba, blocks } => {
                let (lba, blocks) = clamp(lba, blocks);
                self.submit(SubKind::Write {
                    lun: lun % LUNS,
                    lba,
                    blocks,
                })
            }
            Op::CompareAndWrite { lun, lba } => self.submit(SubKind::Caw {
                lun: lun % LUNS,
                lba: lba % BLOCKS,
            }),
            Op::PrOut { lun } => self.submit(SubKind::PrOut { lun: lun % LUNS }),
            Op::AbortTask { pick } => self.abort_task(pick),
            Op::Tmf { kind, lun } => self.tmf(kind, lun),
            Op::Ping => {
                if let Ok(t) = self.ini.nop_ping(self.now, Bytes::from_static(b"ping")) {
                    self.new_sub(t, SubKind::Ping);
                }
                self.ini_events();
            }
            Op::Text => {
                if let Ok(t) = self.ini.send_targets(self.now) {
                    self.new_sub(t, SubKind::Text);
                }
                self.ini_events();
            }
            Op::AsyncLogout => self.async_message(1),
            Op::AsyncDrop => self.async_message(2),
            Op::AsyncNegotiate => self.async_message(4),
            Op::IniTx { n } => self.ini_tx(usize::from(n)),
            Op::ToTarget { n } => self.deliver_to_target(usize::from(n)),
            Op::ToInitiator { n } => self.deliver_to_initiator(usize::from(n)),
            Op::Hold(h) => self.hold = h,
            Op::Release { n } => self.release(usize::from(n)),
            Op::Drop => {
                if !self.ini_closed_seen {
                    self.ini_closed_seen = true;
                    self.ini.handle_closed(self.now);
                }
                if !self.tgt_closed_seen {
                    self.tgt_closed_seen = true;
                    self.tgt.handle_closed(self.now);
                    self.tgt_app();
                }
                self.i2t.clear();
                self.t_rx.clear();
                self.t2i.clear();
                self.i_rx.clear();
                self.ini_events();
            }
            Op::Advance { ms } => self.advance(Duration::from_millis(u64::from(ms))),
        }
    }

    /// Everything moves until nothing does (bounded).
    fn pump_all(&mut self) {
        for _ in 0..100_000 {
            let before = (
                self.i2t.len(),
                self.t2i.len(),
                self.clock,
                self.ini.has_transmit(),
                self.held.len(),
                self.conn,
            );
            self.ini_tx(0);
            self.deliver_to_target(0);
            self.deliver_to_initiator(0);
            self.ini_tx(0);
            let after = (
                self.i2t.len(),
                self.t2i.len(),
                self.clock,
                self.ini.has_transmit(),
                self.held.len(),
                self.conn,
            );
            if before == after && self.i2t.is_empty() && self.t2i.is_empty() {
                return;
            }
        }
    }

    /// The end: the target executes what it holds, everything is
    /// delivered, time advances; every task must end within
    /// [`SETTLE_LIMIT`].
    pub fn settle(&mut self) {
        self.hold = false;
        let deadline = self.now + SETTLE_LIMIT;
        loop {
            self.release(0);
            self.pump_all();
            self.release(0);
            self.pump_all();
            if self.live.is_empty() || self.now >= deadline {
                break;
            }
            let next = [self.ini.poll_timeout(), self.tgt_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline)
                .min(deadline);
            self.advance(next.saturating_duration_since(self.now));
        }
        if !self.live.is_empty() {
            let mut left: Vec<String> = self
                .live
                .values()
                .map(|&i| format!("{} {:?}", self.subs[i].id, self.subs[i].kind))
                .collect();
            left.sort();
            self.violate(
                Invariant::NoHang,
                format!(
                    "after {SETTLE_LIMIT:?} of virtual time these tasks never ended: {left:?} \
                     (initiator state {:?})",
                    self.ini.state()
                ),
            );
        }
    }

    // ----- the end-of-run checks -----

    /// Runs the checks that need the whole history.
    pub fn check_end(&mut self) {
        self.check_aborted_not_executed_after();
        self.check_at_most_once();
        self.check_medium();
    }

    /// "According to [SAM2], for all the tasks covered by the Task
    /// Management response ... additional responses MUST NOT be delivered
    /// to the SCSI layer after the Task Management response" and "The
    /// iSCSI target MUST ensure that no responses for the tasks covered by
    /// a task management function are delivered to the iSCSI initiator
    /// after the Task Management response" (RFC 7143 section 11.5.1): a
    /// task reported aborted is over for the application; its command must
    /// not reach the medium afterwards.
    fn check_aborted_not_executed_after(&mut self) {
        let mut found = Vec::new();
        for e in &self.execs {
            let Some(id) = e.sub else { continue };
            let Some(s) = self.subs.get(id as usize - 1) else {
                continue;
            };
            if e.unit_attention {
                continue;
            }
            if s.aborted() && s.ended.is_some_and(|t| t < e.at) {
                found.push(format!(
                    "submission {id} {:?} was reported {:?} at t={} but the LU executed it at \
                     t={} (status {:?}, connection {})",
                    s.kind,
                    s.outcome.as_ref().expect("ended"),
                    s.ended.unwrap_or(0),
                    e.at,
                    e.status,
                    e.conn
                ));
            }
        }
        for what in found {
            self.violate(Invariant::AbortedNotExecutedAfter, what);
        }
    }

    /// RFC 7143 section 4.2.2.1 ("deterministic and in order delivery")
    /// and RFC 3720 section 9.6 (kept in RFC 7143 section 4.2.9):
    /// "inadvertent retries of SCSI commands when it is not known if the
    /// previous SCSI command was processed is a potential data integrity
    /// risk" and "the execution model also assumes that the command is
    /// executed exactly once". A non-idempotent command runs at most once;
    /// a write at most once unless it was live at a connection loss
    /// (reissued idempotent write).
    fn check_at_most_once(&mut self) {
        let mut count: BTreeMap<u32, usize> = BTreeMap::new();
        for e in &self.execs {
            if let Some(id) = e.sub {
                if !e.unit_attention {
                    *count.entry(id).or_default() += 1;
                }
            }
        }
        let mut found = Vec::new();
        for (id, n) in count {
            let Some(s) = self.subs.get(id as usize - 1) else {
                found.push(format!("the LU executed unknown submission {id}"));
                continue;
            };
            if n > 1 && (s.kind.non_idempotent() || !s.live_at_loss) {
                found.push(format!(
                    "submission {id} {:?} executed {n} times by the LU (outcome {:?}, live at a \
                     connection loss: {})",
                    s.kind, s.outcome, s.live_at_loss
                ));
            }
        }
        // A GOOD write / COMPARE AND WRITE / PR OUT ran at least once.
        for s in &self.subs {
            if s.good()
                && matches!(
                    s.kind,
                    SubKind::Write { .. } | SubKind::Caw { .. } | SubKind::PrOut { .. }
                )
                && !self
                    .execs
                    .iter()
                    .any(|e| e.sub == Some(s.id) && e.status == ScsiStatus::Good)
            {
                found.push(format!(
                    "submission {} {:?} reported GOOD but the LU never executed it with GOOD",
                    s.id, s.kind
                ));
            }
        }
        for what in found {
            self.violate(Invariant::AtMostOnce, what);
        }
    }

    /// The values block (`lun`, `lba`) may hold for a reader that started
    /// at `start` (`u64::MAX`: the final medium): the writes that may have
    /// applied and had started by then, and the initial zeros, minus those
    /// a GOOD write certainly overwrote before `start` (it began after
    /// they ended and ended before `start`).
    fn candidates(&self, lun: u8, lba: u8, start: u64, end: u64) -> Vec<u32> {
        let writers: Vec<&Sub> = self
            .subs
            .iter()
            .filter(|s| {
                s.kind
                    .writes()
                    .is_some_and(|(l, a, n)| l == lun && (a..a + n).contains(&lba))
            })
            .collect();
        let superseded = |ended: u64| {
            writers
                .iter()
                .any(|y| y.good() && y.submitted > ended && y.ended.is_some_and(|e| e < start))
        };
        let mut out = Vec::new();
        if !superseded(0) {
            out.push(0);
        }
        for x in &writers {
            if x.submitted < end && x.may_have_applied() && !superseded(x.ended.unwrap_or(u64::MAX))
            {
                out.push(x.id);
            }
        }
        out
    }

    /// The medium (and every GOOD read) holds, per block, a value a write
    /// reported successful or of unknown outcome could have put there, and
    /// the last successful write where the order is certain (SAM-5 task
    /// ordering over RFC 7143 section 4.2.2.1's in-order delivery).
    fn check_medium(&mut self) {
        let mut found = Vec::new();
        for lun in 0..LUNS {
            for lba in 0..BLOCKS {
                let mut block = vec![0u8; BS];
                if self.lus[usize::from(lun)]
                    .device()
                    .read_at(u64::from(lba) * BS as u64, &mut block)
                    .is_err()
                {
                    found.push(format!("LUN {lun} block {lba}: RAM disk read failed"));
                    continue;
                }
                let cands = self.candidates(lun, lba, u64::MAX, u64::MAX);
                match writer_of(&block, lun, lba) {
                    None => found.push(format!("LUN {lun} block {lba}: torn or foreign data")),
                    Some(w) if !cands.contains(&w) => found.push(format!(
                        "LUN {lun} block {lba} holds submission {w}'s data ({}); the model \
                         allows only {cands:?}",
                        self.describe(w)
                    )),
                    Some(_) => {}
                }
            }
        }
        for s in &self.subs {
            let SubKind::Read { lun, lba, blocks } = s.kind else {
                continue;
            };
            let Some(TaskOutcome::Scsi(r)) = &s.outcome else {
                continue;
            };
            if !r.is_good() {
                continue;
            }
            let len = usize::from(blocks) * BS;
            if s.data_in.len() != len || r.bytes_read as usize != len {
                found.push(format!(
                    "read {} {:?} GOOD with {} bytes of data ({} reported), expected {len}",
                    s.id,
                    s.kind,
                    s.data_in.len(),
                    r.bytes_read
                ));
                continue;
            }
            for (k, block) in s.data_in.chunks(BS).enumerate() {
                let b = lba + k as u8;
                let cands = self.candidates(lun, b, s.submitted, s.ended.unwrap_or(u64::MAX));
                match writer_of(block, lun, b) {
                    None => found.push(format!(
                        "read {} returned torn or foreign data for LUN {lun} block {b}",
                        s.id
                    )),
                    Some(w) if !cands.contains(&w) => found.push(format!(
                        "read {} returned submission {w}'s data ({}) for LUN {lun} block {b}; \
                         the model allows only {cands:?}",
                        s.id,
                        self.describe(w)
                    )),
                    Some(_) => {}
                }
            }
        }
        for what in found {
            self.violate(Invariant::Medium, what);
        }
    }

    fn describe(&self, id: u32) -> String {
        match id.checked_sub(1).and_then(|i| self.subs.get(i as usize)) {
            None => "initial zeros".into(),
            Some(s) => format!(
                "{:?}, outcome {:?}, submitted t={} ended t={:?}",
                s.kind,
                s.outcome.as_ref().map(short_outcome),
                s.submitted,
                s.ended
            ),
        }
    }

    /// Violations of `inv`.
    pub fn of(&self, inv: Invariant) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.invariant == inv)
            .collect()
    }

    /// A summary of what happened, for failure messages (with the trace
    /// when `INTEGRITY_TRACE` is set).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.trace {
            for line in t {
                s.push_str(&format!("  | {line}\n"));
            }
        }
        for sub in &self.subs {
            s.push_str(&format!(
                "  #{} {:?} {:?} t={}..{:?} {}{}\n",
                sub.id,
                sub.task,
                sub.kind,
                sub.submitted,
                sub.ended,
                sub.outcome
                    .as_ref()
                    .map(short_outcome)
                    .unwrap_or_else(|| "LIVE".into()),
                if sub.live_at_loss {
                    " (live at loss)"
                } else {
                    ""
                }
            ));
        }
        for e in &self.execs {
            if let Some(id) = e.sub {
                s.push_str(&format!(
                    "  exec t={} sub {id} opcode {:#04x} {:?}{} conn {}\n",
                    e.at,
                    e.opcode,
                    e.status,
                    if e.unit_attention { " (UA)" } else { "" },
                    e.conn
                ));
            }
        }
        s
    }
}

fn short_outcome(o: &TaskOutcome) -> String {
    match o {
        TaskOutcome::Scsi(r) if r.is_good() => "GOOD".into(),
        TaskOutcome::Scsi(r) => format!(
            "status {:#04x} sense {:?}",
            r.status,
            r.sense_data.map(|s| (s.key, s.asc, s.ascq))
        ),
        TaskOutcome::Failed(e) => format!("Failed({e:?})"),
        other => format!("{other:?}"),
    }
}

fn wire_decoder() -> PduDecoder {
    PduDecoder::new(DecoderConfig {
        max_data_segment_length: 1 << 24,
        ..DecoderConfig::default()
    })
}

/// Runs a scenario to its end: the ops, then settling, then the checks.
pub fn run(setup: &Setup, ops: &[Op]) -> World {
    let mut w = World::new(setup);
    for op in ops {
        w.log(|| format!("op {op:?}"));
        w.apply(op);
    }
    w.log(|| "settle".into());
    w.settle();
    w.check_end();
    w
}

// ---------------------------------------------------------------------
// Ops from bytes (the fuzz target)
// ---------------------------------------------------------------------

/// Decodes a setup and ops from arbitrary bytes (the fuzz target's
/// input): every byte string is a valid scenario.
pub fn decode(data: &[u8]) -> (Setup, Vec<Op>) {
    let mut it = data.iter().copied();
    let mut next = move || it.next();
    let b0 = next().unwrap_or(0);
    let b1 = next().unwrap_or(0);
    let setup = Setup {
        window: 1 + u32::from(b0 & 7),
        immediate_data: b0 & 8 != 0,
        initial_r2t: b0 & 16 != 0,
        keepalive: b0 & 32 != 0,
        initial_cmd_sn: if b0 & 64 != 0 {
            u32::MAX - u32::from(b1 & 15)
        } else {
            1
        },
        seed: u64::from(b1),
    };
    let mut ops = Vec::new();
    while ops.len() < 256 {
        let Some(tag) = next() else { break };
        let a = next().unwrap_or(0);
        let op = match tag % 32 {
            0..=3 => Op::Read {
                lun: a >> 7,
                lba: a & 0x1f,
                blocks: (a >> 5) & 3,
            },
            4..=7 => Op::Write {
                lun: a >> 7,
                lba: a & 0x1f,
                blocks: (a >> 5) & 3,
            },
            8 => Op::CompareAndWrite {
                lun: a >> 7,
                lba: a & 0x1f,
            },
            9 => Op::PrOut { lun: a & 1 },
            10 | 11 => Op::AbortTask { pick: a },
            12 => Op::Tmf {
                kind: match a % 9 {
                    0 | 1 => TmfKind::AbortTaskSet,
                    2 | 3 => TmfKind::ClearTaskSet,
                    4 | 5 => TmfKind::LogicalUnitReset,
                    6 | 7 => TmfKind::TargetWarmReset,
                    _ => TmfKind::TargetColdReset,
                },
                lun: (a >> 4) & 1,
            },
            13 => Op::Ping,
            14 => Op::Text,
            15 => match a % 3 {
                0 => Op::AsyncLogout,
                1 => Op::AsyncDrop,
                _ => Op::AsyncNegotiate,
            },
            16..=19 => Op::IniTx { n: a % 5 },
            20..=22 => Op::ToTarget {
                n: if a < 64 { 0 } else { u16::from(a) * 4 },
            },
            23..=25 => Op::ToInitiator {
                n: if a < 64 { 0 } else { u16::from(a) * 4 },
            },
            26 => Op::Hold(a & 1 != 0),
            27 => Op::Release { n: a % 4 },
            28 => Op::Drop,
            _ => Op::Advance {
                ms: [10, 300, 1500, 3000, 6000, 21_000, 40_000, 100][usize::from(a % 8)],
            },
        };
        ops.push(op);
    }
    (setup, ops)
}
