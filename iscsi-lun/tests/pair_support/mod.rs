//! An in-memory, deterministic harness connecting the initiator core
//! (`iscsi_proto::initiator::Session`) to the target core
//! (`iscsi_proto::target::Session`), with `iscsi_lun::LogicalUnit`s over
//! `RamDisk`s executing the target's commands.
//!
//! No sockets, no threads, no clock: bytes move between the two sessions
//! through `BytesMut` buffers, time is an `Instant` base plus a virtual
//! offset, and the byte streams are cut into chunks whose sizes come from a
//! seeded generator, so any segmentation must give the same result.
//!
//! The harness also checks, as it goes:
//! - every initiator task completes exactly once, every target task is
//!   completed or aborted exactly once;
//! - every non-immediate SCSI Command the initiator sends carries a CmdSN
//!   inside the window the target has advertised so far (RFC 7143 section
//!   4.2.2.1), and consecutive ones are consecutive;
//! - timers re-arm after they fire (no spinning deadline).
#![allow(dead_code)]

use iscsi_proto::time::Instant;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_lun::{run_command, LogicalUnit, LuConfig, NexusId, RamDisk};
use iscsi_proto::initiator::{
    Event, ScsiCommand, ScsiResult, Session as Ini, SessionConfig, TaskId, TaskOutcome,
};
use iscsi_proto::login::OperationalParams;
use iscsi_proto::scsi::sense::SenseData;
use iscsi_proto::scsi::{Lun, SenseKey};
use iscsi_proto::target::{
    Event as TargetEvent, ScsiRequest, Session as Tgt, SessionConfig as TgtConfig,
    TaskId as TgtTaskId,
};
use iscsi_proto::wire::{Serial, TmfFunction};

/// Target name used by the tests.
pub const TARGET: &str = "iqn.2026-01.test.pair:disk";
/// Initiator name used by the tests.
pub const INITIATOR: &str = "iqn.2026-01.test.pair:host";
/// Block size of the RAM disks.
pub const BS: u32 = 512;
/// The nexus every command runs on (one session).
pub const NEXUS: NexusId = NexusId(7);

/// Opcodes we look at (RFC 7143 section 11.2.1.2).
pub mod op {
    /// NOP-Out.
    pub const NOP_OUT: u8 = 0x00;
    /// SCSI Command.
    pub const SCSI_CMD: u8 = 0x01;
    /// Task Management Function Request.
    pub const TMF_REQ: u8 = 0x02;
    /// SCSI Data-Out.
    pub const DATA_OUT: u8 = 0x05;
    /// Logout Request.
    pub const LOGOUT_REQ: u8 = 0x06;
    /// NOP-In.
    pub const NOP_IN: u8 = 0x20;
    /// SCSI Response.
    pub const SCSI_RSP: u8 = 0x21;
    /// Task Management Function Response.
    pub const TMF_RESP: u8 = 0x22;
    /// SCSI Data-In.
    pub const DATA_IN: u8 = 0x25;
    /// Asynchronous Message.
    pub const ASYNC: u8 = 0x32;
    /// R2T.
    pub const R2T: u8 = 0x31;
    /// Reject.
    pub const REJECT: u8 = 0x3f;
}

/// SplitMix64: the harness's only source of "randomness", seeded.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % ((hi - lo) as u64 + 1)) as usize
    }
}

/// How the byte streams are cut.
#[derive(Debug, Clone)]
pub enum Cuts {
    /// Everything available moves at once.
    Whole,
    /// Chunk sizes drawn from a seeded generator: tiny (1-8 bytes, cutting
    /// headers and digests), small, medium, or everything.
    Random(u64),
}

/// The header of one PDU as sent, decoded just enough for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniff {
    /// Opcode (6 bits).
    pub opcode: u8,
    /// The I bit.
    pub immediate: bool,
    /// The F bit.
    pub final_bit: bool,
    /// DataSegmentLength.
    pub dsl: u32,
    /// Header length as sent (BHS + AHS + header digest).
    pub header_len: usize,
    /// Bytes 16..20: Initiator Task Tag.
    pub itt: u32,
    /// Bytes 20..24: Target Transfer Tag (where defined).
    pub ttt: u32,
    /// Bytes 24..28: CmdSN (requests) or StatSN (responses).
    pub sn24: u32,
    /// Bytes 28..32: ExpStatSN (requests) or ExpCmdSN (responses).
    pub sn28: u32,
    /// Bytes 32..36: MaxCmdSN (responses).
    pub sn32: u32,
    /// Bytes 36..40: DataSN / R2TSN.
    pub sn36: u32,
    /// Bytes 40..44: Buffer Offset.
    pub offset: u32,
    /// Bytes 44..48: Desired Data Transfer Length (R2T) / residual.
    pub word44: u32,
    /// Total bytes on the wire.
    pub wire_len: usize,
}

fn be32(h: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = h.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_be_bytes(b)
}

impl Sniff {
    fn parse(header: &[u8], wire_len: usize) -> Sniff {
        assert!(header.len() >= 48, "PDU header shorter than a BHS");
        Sniff {
            opcode: header[0] & 0x3f,
            immediate: header[0] & 0x40 != 0,
            final_bit: header[1] & 0x80 != 0,
            dsl: be32(header, 4) & 0x00ff_ffff,
            header_len: header.len(),
            itt: be32(header, 16),
            ttt: be32(header, 20),
            sn24: be32(header, 24),
            sn28: be32(header, 28),
            sn32: be32(header, 32),
            sn36: be32(header, 36),
            offset: be32(header, 40),
            word44: be32(header, 44),
            wire_len,
        }
    }
}

/// How a target task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TgtEnd {
    /// `complete` / `complete_write` was called.
    Completed,
    /// `TaskAborted` was reported.
    Aborted,
}

/// One LUN of the target.
pub fn ram_lu(bytes: u64, luns: &[Lun]) -> LogicalUnit {
    let cfg = LuConfig {
        luns: luns.to_vec(),
        ..LuConfig::default()
    };
    LogicalUnit::new(RamDisk::new(bytes, BS).expect("RAM disk"), cfg)
}

/// The two cores, the logical units and the wires between them.
pub struct Harness {
    /// Virtual time now.
    pub now: Instant,
    /// The time the harness started at.
    pub start: Instant,
    /// The initiator.
    pub ini: Ini,
    /// The target connection.
    pub tgt: Tgt,
    tgt_cfg: TgtConfig,
    /// The logical units, LUN 0, 1, ...
    pub lus: Vec<LogicalUnit>,
    lun_list: Vec<Lun>,
    cuts: Cuts,
    rng: Rng,
    /// Bytes the initiator sent that the target has not received yet.
    i2t: BytesMut,
    /// The target's receive buffer.
    t_rx: BytesMut,
    /// Bytes the target sent that the initiator has not received yet.
    t2i: BytesMut,
    /// The initiator's receive buffer.
    i_rx: BytesMut,
    /// Every initiator event, in order (Connect included).
    pub events: Vec<Event>,
    /// Every target event, in order.
    pub tevents: Vec<TargetEvent>,
    /// Read data per task, assembled at the delivered offsets.
    pub data_in: HashMap<TaskId, Vec<u8>>,
    /// Outcomes per task (more than one is a bug, asserted on arrival).
    pub outcomes: BTreeMap<TaskId, TaskOutcome>,
    /// Hold target commands instead of executing them.
    pub hold: bool,
    /// Commands held (see [`Harness::release`]).
    pub held: Vec<ScsiRequest>,
    /// Do not acknowledge `TaskAborted` at once (as an application still
    /// stopping the task): the tasks wait in `unacked_aborts` until
    /// [`Harness::ack_aborts`].
    pub defer_abort_acks: bool,
    /// Aborted tasks not acknowledged yet (with `defer_abort_acks`).
    pub unacked_aborts: Vec<TgtTaskId>,
    /// How each target task ended, by (connection number, task).
    pub tgt_ends: HashMap<(usize, TgtTaskId), TgtEnd>,
    /// Every command delivered by a target connection, by (connection
    /// number, task).
    pub tgt_commands: Vec<(usize, TgtTaskId)>,
    /// Drop everything the target sends (a black hole), to starve the
    /// initiator's timers.
    pub drop_t2i: bool,
    /// Flip the first data byte of the next initiator PDU with this opcode
    /// and a data segment (a data digest error when digests are on).
    pub corrupt_next_ini_data: Option<u8>,
    /// Same for the target's next PDU with this opcode.
    pub corrupt_next_tgt_data: Option<u8>,
    /// At most this many initiator PDUs taken per round (a slow socket:
    /// the rest stay queued in the session while input is processed).
    pub ini_tx_per_step: Option<usize>,
    /// PDUs the initiator sent (in send order).
    pub ini_pdus: Vec<Sniff>,
    /// PDUs the target sent (in send order).
    pub tgt_pdus: Vec<Sniff>,
    /// The highest MaxCmdSN the target advertised so far.
    pub advertised_max: Option<Serial>,
    /// CmdSN of the last non-immediate SCSI Command sent.
    last_cmd_sn: Option<Serial>,
    /// Largest `queued_commands()` observed on the initiator.
    pub max_queued: usize,
    /// Largest `live_tasks()` observed on the target.
    pub max_tgt_live: usize,
    ini_saw_close: bool,
    tgt_saw_close: bool,
    /// Number of `Event::Connect`s handled.
    pub connects: usize,
}

impl Harness {
    /// A harness with one RAM LUN of `disk_bytes` per entry of `luns`.
    pub fn new(ini_cfg: SessionConfig, tgt_cfg: TgtConfig, luns: &[u64], cuts: Cuts) -> Harness {
        // A fixed base: real time is never read again.
        let start = Instant::ZERO;
        let lun_list: Vec<Lun> = (0..luns.len())
            .map(|i| Lun::from_number(i as u16))
            .collect();
        let lus = luns.iter().map(|&b| ram_lu(b, &lun_list)).collect();
        let seed = match cuts {
            Cuts::Whole => 0,
            Cuts::Random(s) => s,
        };
        let tgt = Tgt::new(tgt_cfg.clone()).expect("valid target config");
        Harness {
            now: start,
            start,
            ini: iscsi_proto::initiator::open_session(ini_cfg, start, [0x12, 0x34, 0x56])
                .expect("valid initiator config"),
            tgt,
            tgt_cfg,
            lus,
            lun_list,
            cuts,
            rng: Rng(seed ^ 0x5eed),
            i2t: BytesMut::new(),
            t_rx: BytesMut::new(),
            t2i: BytesMut::new(),
            i_rx: BytesMut::new(),
            events: Vec::new(),
            tevents: Vec::new(),
            data_in: HashMap::new(),
            outcomes: BTreeMap::new(),
            hold: false,
            held: Vec::new(),
            defer_abort_acks: false,
            unacked_aborts: Vec::new(),
            tgt_ends: HashMap::new(),
            tgt_commands: Vec::new(),
            drop_t2i: false,
            corrupt_next_ini_data: None,
            corrupt_next_tgt_data: None,
            ini_tx_per_step: None,
            ini_pdus: Vec::new(),
            tgt_pdus: Vec::new(),
            advertised_max: None,
            last_cmd_sn: None,
            max_queued: 0,
            max_tgt_live: 0,
            ini_saw_close: false,
            tgt_saw_close: false,
            connects: 0,
        }
    }

    fn chunk_len(&mut self, avail: usize) -> usize {
        match self.cuts {
            Cuts::Whole => avail,
            Cuts::Random(_) => {
                let n = match self.rng.next_u64() % 4 {
                    0 => self.rng.range(1, 8),
                    1 => self.rng.range(9, 100),
                    2 => self.rng.range(101, 6000),
                    _ => avail,
                };
                n.min(avail)
            }
        }
    }

    // ----- draining -----

    fn drain_ini_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.ini.poll_event() {
            any = true;
            match &ev {
                Event::Connect { .. } => {
                    self.connects += 1;
                    if self.connects > 1 {
                        // The old connection is gone for the target too:
                        // its tasks are aborted (reported under the old
                        // connection number).
                        self.connects -= 1;
                        if !self.tgt.is_closed() {
                            self.tgt.handle_closed(self.now);
                        }
                        self.drain_tgt_events();
                        while self.tgt.poll_transmit(self.now).is_some() {}
                        self.connects += 1;
                        // A new TCP connection: a fresh target connection.
                        self.tgt = Tgt::new(self.tgt_cfg.clone()).expect("valid target config");
                        self.tgt_saw_close = false;
                        self.ini_saw_close = false;
                        // A new session numbers commands afresh.
                        self.advertised_max = None;
                        self.last_cmd_sn = None;
                    }
                    self.i2t.clear();
                    self.t_rx.clear();
                    self.t2i.clear();
                    self.i_rx.clear();
                    self.ini.handle_connected(self.now);
                }
                Event::DataIn { task, offset, data } => {
                    let buf = self.data_in.entry(*task).or_default();
                    let end = *offset as usize + data.len();
                    if buf.len() < end {
                        buf.resize(end, 0);
                    }
                    buf[*offset as usize..end].copy_from_slice(data);
                }
                Event::Complete { task, outcome } => {
                    let prev = self.outcomes.insert(*task, outcome.clone());
                    assert!(
                        prev.is_none(),
                        "task {task:?} completed twice: {prev:?} then {outcome:?}"
                    );
                }
                // The initiator dropped the TCP connection.
                Event::Closed(_) | Event::Recovering { .. } if !self.tgt_saw_close => {
                    self.tgt_saw_close = true;
                    self.tgt.handle_closed(self.now);
                }
                _ => {}
            }
            self.events.push(ev);
        }
        any
    }

    fn drain_ini_transmits(&mut self) -> bool {
        let mut any = false;
        let mut budget = self.ini_tx_per_step.unwrap_or(usize::MAX);
        while budget > 0 {
            let Some(t) = self.ini.poll_transmit(self.now) else {
                break;
            };
            budget -= 1;
            any = true;
            let s = Sniff::parse(t.header(), t.len());
            self.check_window(&s);
            let mut v = Vec::with_capacity(t.len());
            t.write_to(&mut v);
            if self.corrupt_next_ini_data == Some(s.opcode) && s.dsl > 0 {
                self.corrupt_next_ini_data = None;
                v[s.header_len] ^= 0x01;
            }
            self.ini_pdus.push(s);
            self.i2t.extend_from_slice(&v);
        }
        self.max_queued = self.max_queued.max(self.ini.queued_commands());
        any
    }

    /// RFC 7143 section 4.2.2.1: a non-immediate command may be sent only
    /// with ExpCmdSN <= CmdSN <= MaxCmdSN; what the initiator can know of
    /// MaxCmdSN is at most what the target advertised.
    fn check_window(&mut self, s: &Sniff) {
        if s.opcode != op::SCSI_CMD || s.immediate {
            return;
        }
        let sn = Serial(s.sn24);
        let max = self
            .advertised_max
            .expect("a SCSI command before any MaxCmdSN was advertised");
        assert!(
            !sn.follows(max),
            "CmdSN {sn:?} sent outside the advertised window (MaxCmdSN {max:?})"
        );
        if let Some(last) = self.last_cmd_sn {
            assert_eq!(sn, last.next(), "non-immediate CmdSNs must be consecutive");
        }
        self.last_cmd_sn = Some(sn);
    }

    fn drain_tgt_transmits(&mut self) -> bool {
        let mut any = false;
        while let Some(t) = self.tgt.poll_transmit(self.now) {
            any = true;
            let s = Sniff::parse(t.header(), t.len());
            // Every target PDU carries MaxCmdSN at bytes 32..36 (RFC 7143
            // section 11), except the Login Response before the session
            // exists, which still carries a valid one.
            let m = Serial(s.sn32);
            self.advertised_max = Some(match self.advertised_max {
                Some(cur) if !m.follows(cur) => cur,
                _ => m,
            });
            let at = self.t2i.len() + s.header_len;
            t.write_to(&mut self.t2i);
            if self.corrupt_next_tgt_data == Some(s.opcode) && s.dsl > 0 {
                self.corrupt_next_tgt_data = None;
                self.t2i[at] ^= 0x01;
            }
            self.tgt_pdus.push(s);
        }
        any
    }

    fn drain_tgt_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.tgt.poll_event() {
            any = true;
            match &ev {
                TargetEvent::Command(req) => {
                    self.tgt_commands.push((self.connects, req.task));
                    if self.hold {
                        self.held.push(req.clone());
                    } else {
                        self.execute(req);
                    }
                }
                TargetEvent::TaskAborted { task } => {
                    // The application stops the task (drops the held
                    // command) and says so; aborts reported by a close
                    // need no acknowledgement.
                    self.held.retain(|r| r.task != *task);
                    self.end_tgt(*task, TgtEnd::Aborted);
                    if self.defer_abort_acks {
                        self.unacked_aborts.push(*task);
                    } else if !self.tgt.is_closed() {
                        self.tgt
                            .abort_acknowledged(*task)
                            .expect("acknowledging a reported abort");
                    }
                }
                TargetEvent::TaskManagement { function, lun, .. } => {
                    self.task_management(*function, *lun);
                }
                _ => {}
            }
            self.tevents.push(ev);
        }
        self.max_tgt_live = self.max_tgt_live.max(self.tgt.live_tasks());
        any
    }

    fn end_tgt(&mut self, task: TgtTaskId, end: TgtEnd) {
        let prev = self.tgt_ends.insert((self.connects, task), end);
        assert!(
            prev.is_none(),
            "target task {task:?} ended twice: {prev:?} then {end:?}"
        );
    }

    /// Runs one command on its logical unit and completes it at the target
    /// (as the mio server does).
    pub fn execute(&mut self, req: &ScsiRequest) {
        let (out, written) = run_command(&mut self.lus, &self.lun_list, NEXUS, req);
        let sense = out.sense_bytes().map(|s| Bytes::copy_from_slice(&s));
        let r = match written {
            Some(n) => self.tgt.complete_write(req.task, out.status, sense, n),
            None => self.tgt.complete(req.task, out.status, sense, out.data_in),
        };
        r.expect("completing a live target task");
        self.end_tgt(req.task, TgtEnd::Completed);
    }

    /// SAM-5: a LOGICAL UNIT RESET sets a unit attention (29/03) on the
    /// logical unit reset.
    fn task_management(&mut self, function: TmfFunction, lun: u64) {
        if function == TmfFunction::LogicalUnitReset {
            if let Some(lu) = Lun::from_u64(lun)
                .number()
                .and_then(|n| self.lus.get_mut(usize::from(n)))
            {
                lu.add_unit_attention(
                    NEXUS,
                    SenseData::with_code(SenseKey::UnitAttention, (0x29, 0x03)),
                );
            }
        }
    }

    /// Acknowledges the aborts deferred by `defer_abort_acks`, then pumps.
    pub fn ack_aborts(&mut self) {
        for task in std::mem::take(&mut self.unacked_aborts) {
            self.tgt
                .abort_acknowledged(task)
                .expect("acknowledging a reported abort");
        }
        self.pump();
    }

    /// Executes the held commands (those not aborted meanwhile).
    pub fn release(&mut self) {
        let held = std::mem::take(&mut self.held);
        for req in &held {
            self.execute(req);
        }
        self.pump();
    }

    // ----- moving bytes -----

    fn move_i2t(&mut self) -> bool {
        if self.i2t.is_empty() || self.tgt.is_closed() {
            return false;
        }
        let n = self.chunk_len(self.i2t.len());
        let chunk = self.i2t.split_to(n);
        self.t_rx.extend_from_slice(&chunk);
        true
    }

    fn move_t2i(&mut self) -> bool {
        if self.t2i.is_empty() || self.ini.is_closed() {
            return false;
        }
        let n = self.chunk_len(self.t2i.len());
        let chunk = self.t2i.split_to(n);
        if !self.drop_t2i {
            self.i_rx.extend_from_slice(&chunk);
        }
        true
    }

    /// One round of the drain order on both sides; true if anything moved.
    fn step(&mut self) -> bool {
        let mut any = self.drain_ini_events();
        any |= self.drain_ini_transmits();
        any |= self.move_i2t();
        if !self.t_rx.is_empty() && !self.tgt.is_closed() {
            let before = self.t_rx.len();
            self.tgt.handle_input(self.now, &mut self.t_rx);
            any |= self.t_rx.len() != before;
        }
        any |= self.drain_tgt_events();
        any |= self.drain_tgt_transmits();
        any |= self.move_t2i();
        if !self.i_rx.is_empty() && !self.ini.is_closed() {
            let before = self.i_rx.len();
            self.ini.handle_input(self.now, &mut self.i_rx);
            any |= self.i_rx.len() != before;
        }
        any |= self.drain_ini_events();
        // The target closed and everything it sent has arrived: the TCP
        // connection ends for the initiator too.
        if self.tgt.is_closed() && self.t2i.is_empty() && !self.ini_saw_close {
            self.ini_saw_close = true;
            self.tgt_saw_close = true;
            if !self.i_rx.is_empty() {
                self.ini.handle_input(self.now, &mut self.i_rx);
            }
            self.ini.handle_closed(self.now);
            any = true;
        }
        any
    }

    /// Runs both sides until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..10_000_000u32 {
            if !self.step() {
                return;
            }
        }
        panic!("the pair never went quiet");
    }

    /// Advances virtual time by `d`, firing every timer due on the way (in
    /// deadline order) and pumping after each.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000u32 {
            let next = [self.ini.poll_timeout(), self.tgt.poll_timeout()]
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
            let (it, tt) = (self.ini.poll_timeout(), self.tgt.poll_timeout());
            if it.is_some_and(|t| t <= self.now) {
                self.ini.handle_timeout(self.now);
            }
            if tt.is_some_and(|t| t <= self.now) && !self.tgt.is_closed() {
                self.tgt.handle_timeout(self.now);
            }
            self.pump();
            // A timer that fired must move on (or the core would spin).
            let again = [self.ini.poll_timeout(), self.tgt.poll_timeout()]
                .into_iter()
                .flatten()
                .any(|t| t <= self.now);
            assert!(
                !again || self.ini.is_closed() || self.tgt.is_closed(),
                "a timer fired at {:?} did not re-arm later",
                self.now - self.start
            );
        }
        self.now = end;
        self.pump();
    }

    // ----- convenience -----

    /// Pumps until both sides are in Full Feature Phase; panics otherwise.
    pub fn login(&mut self) {
        self.pump();
        assert!(
            self.ini.is_logged_in(),
            "initiator not logged in: {:?} / target events {:?}",
            self.events,
            self.tevents
        );
        assert!(self.tgt.negotiated().is_some());
    }

    /// Submits a command (panics on a usage error).
    pub fn submit(&mut self, cmd: ScsiCommand) -> TaskId {
        self.ini.submit(self.now, cmd).expect("submit")
    }

    /// The outcome of `task`, if it ended.
    pub fn outcome(&self, task: TaskId) -> Option<&TaskOutcome> {
        self.outcomes.get(&task)
    }

    /// The SCSI result of `task` (panics if it did not end with one).
    #[track_caller]
    pub fn scsi(&self, task: TaskId) -> &ScsiResult {
        match self.outcomes.get(&task) {
            Some(TaskOutcome::Scsi(r)) => r,
            other => panic!("task {task:?}: expected a SCSI result, got {other:?}"),
        }
    }

    /// The read data of `task` (empty if none arrived).
    pub fn read_data(&self, task: TaskId) -> &[u8] {
        self.data_in.get(&task).map(|v| &v[..]).unwrap_or(&[])
    }

    /// Runs a command to completion and returns its result and read data.
    #[track_caller]
    pub fn run(&mut self, cmd: ScsiCommand) -> (ScsiResult, Vec<u8>) {
        let t = self.submit(cmd);
        self.pump();
        (self.scsi(t).clone(), self.read_data(t).to_vec())
    }

    /// `len` bytes of LUN `lun` at byte `offset`, straight from the RAM disk.
    pub fn disk(&self, lun: usize, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.lus[lun]
            .device()
            .read_at(offset, &mut v)
            .expect("disk read");
        v
    }

    /// Asserts every target task ended exactly once and no command is held.
    #[track_caller]
    pub fn assert_target_settled(&self) {
        assert!(self.held.is_empty(), "commands still held");
        for key in &self.tgt_commands {
            assert!(
                self.tgt_ends.contains_key(key),
                "target task {key:?} never ended"
            );
        }
        assert_eq!(self.tgt.live_tasks(), 0, "target tasks still live");
    }

    /// PDUs of `opcode` the initiator sent.
    pub fn ini_sent(&self, opcode: u8) -> Vec<&Sniff> {
        self.ini_pdus
            .iter()
            .filter(|s| s.opcode == opcode)
            .collect()
    }

    /// PDUs of `opcode` the target sent.
    pub fn tgt_sent(&self, opcode: u8) -> Vec<&Sniff> {
        self.tgt_pdus
            .iter()
            .filter(|s| s.opcode == opcode)
            .collect()
    }
}

/// Initiator configuration for a normal session to [`TARGET`].
pub fn ini_config() -> SessionConfig {
    SessionConfig::new(INITIATOR).with_target(TARGET)
}

/// Target configuration serving [`TARGET`] with `nluns` LUNs.
pub fn tgt_config(nluns: u16) -> TgtConfig {
    let mut c = TgtConfig::new(TARGET);
    c.targets[0].luns = (0..nluns).map(|n| Lun::from_number(n).to_u64()).collect();
    c.seed = 0x1234_5678;
    c
}

/// Operational values with these burst limits and R2T policy.
pub fn params(
    initial_r2t: bool,
    immediate_data: bool,
    mrdsl: u32,
    max_burst: u32,
    first_burst: u32,
) -> OperationalParams {
    OperationalParams {
        initial_r2t,
        immediate_data,
        max_recv_data_segment_length: mrdsl,
        max_burst_length: max_burst,
        first_burst_length: first_burst,
        ..OperationalParams::default()
    }
}

/// A deterministic pattern for `len` bytes, distinct per `tag`.
pub fn pattern(tag: u64, len: usize) -> Bytes {
    let mut r = Rng(tag.wrapping_mul(0x9e37_79b9).wrapping_add(len as u64));
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let w = r.next_u64().to_le_bytes();
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&w[..n]);
    }
    Bytes::from(v)
}

/// LUN field for LUN number `n`.
pub fn lun(n: u16) -> u64 {
    Lun::from_number(n).to_u64()
}
