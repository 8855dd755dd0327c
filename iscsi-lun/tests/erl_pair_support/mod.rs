//! Our initiator core against our target core (`Portal`, several
//! connections per session) and `iscsi-lun` RAM disks, in memory, on
//! virtual time, with faults injected at chosen PDUs: data digest
//! corruption (both directions), dropped Data-In PDUs, connection kills
//! (both sides see the close, the bytes in flight are lost) and partial
//! transmit drains.
//!
//! The oracle (RFC 7143 sections 7.1, 7.2, 7.8, 7.9, 13.2; issue 15):
//! - every task ends exactly once, and every command ends (bounded
//!   virtual time, no hang);
//! - no command executes twice at the logical unit (writes are counted by
//!   the unique stamp in their data, reads by ITT and CmdSN);
//! - every write reaches the LU with the data submitted (the stamp of
//!   every block names the write and the block);
//! - a good write's blocks hold its stamp or that of a write executed
//!   later; every stamp on the medium belongs to an executed write;
//! - a good read delivers exactly what one execution of it read;
//! - at ERL >= 1 a digest error or a lost PDU never costs the connection;
//!   at ERL 2 a connection kill never costs the session (no session
//!   reinstatement at the target, the TSIH never changes).
#![allow(dead_code)]

use iscsi_proto::time::Instant;
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_lun::{run_command, LogicalUnit, LuConfig, NexusId, RamDisk};
use iscsi_proto::initiator::{
    open_session, Event, Recovery, ScsiCommand, Session as Ini, SessionConfig, Spread, TaskId,
    TaskOutcome,
};
use iscsi_proto::login::{DigestType, OperationalParams};
use iscsi_proto::scsi::cdb::{read10, write10, RwFlags};
use iscsi_proto::scsi::Lun;
use iscsi_proto::target::{
    ConnectionHandle, Portal, PortalConfig, PortalEvent, SessionConfig as TgtConfig,
};

/// Target name.
pub const TARGET: &str = "iqn.2026-01.test.erlpair:disk";
/// Initiator name.
pub const INITIATOR: &str = "iqn.2026-01.test.erlpair:host";
/// Block size.
pub const BS: usize = 512;
/// Blocks on the one LUN (small, so that commands collide).
pub const BLOCKS: u32 = 16;
/// The target's Data-Out sequence reception timeout.
pub const DATA_OUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Virtual time bound for one run.
pub const LIMIT: Duration = Duration::from_secs(600);

/// A fault, applied at the first matching PDU once `at` PDUs have moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flip a data byte of an initiator Data-Out (data digest error).
    CorruptDataOut,
    /// Flip a data byte of a target Data-In (data digest error).
    CorruptDataIn,
    /// The target's next Data-In without the status is lost (a header
    /// digest error).
    DropDataIn,
    /// The target's next Data-In is lost, even one carrying the status.
    DropAnyDataIn,
    /// Kill connection number `n % live connections` (ERL 2).
    Kill(u8),
    /// The initiator's next Data-Out is lost (a header digest error), the
    /// last of its sequence (F=1) included: only the target's sequence
    /// reception timeout finds it (RFC 7143 section 7.1.4.1 b).
    DropDataOut,
    /// The connection carrying the initiator's next TASK REASSIGN dies as
    /// it is sent (the request lost with it): a connection that dies
    /// during its own recovery (RFC 7143 section 7.1.5; issue 15).
    KillReassign,
}

/// A command of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// READ (10) of `blocks` at `lba`.
    Read { lba: u32, blocks: u32 },
    /// WRITE (10) of `blocks` at `lba`.
    Write { lba: u32, blocks: u32 },
}

/// How the pair is set up.
#[derive(Debug, Clone)]
pub struct Setup {
    /// ErrorRecoveryLevel offered by both sides.
    pub erl: u8,
    /// MaxConnections offered by both sides; connections added up to it.
    pub connections: u16,
    /// Seed for chunk sizes and partial drains.
    pub seed: u64,
    /// ImmediateData.
    pub immediate_data: bool,
}

/// The stamp of block `lba` written by write `id`: the id, the LBA, then
/// a pattern of both.
pub fn stamp(id: u32, lba: u32) -> Vec<u8> {
    let mut b = vec![0u8; BS];
    b[0..4].copy_from_slice(&id.to_be_bytes());
    b[4..8].copy_from_slice(&lba.to_be_bytes());
    for (i, x) in b.iter_mut().enumerate().skip(8) {
        *x = (i as u32).wrapping_mul(31).wrapping_add(id * 7 + lba) as u8;
    }
    b
}

/// The write id a block carries (`None` for zeros); panics on a block
/// that is neither zeros nor a well-formed stamp of `lba`.
pub fn stamp_of(block: &[u8], lba: u32) -> Result<Option<u32>, String> {
    if block.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let id = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
    if block != stamp(id, lba).as_slice() {
        return Err(format!("block {lba} holds garbage (claims write {id})"));
    }
    Ok(Some(id))
}

struct Link {
    h: ConnectionHandle,
    i2t: Vec<u8>,
    t2i: Vec<u8>,
    ini_rx: BytesMut,
    tgt_rx: BytesMut,
}

/// One execution of a read at the LU: LBA, blocks, the data read.
pub type ReadExec = (u32, u32, Vec<u8>);

/// What the initiator submitted.
#[derive(Debug, Clone)]
pub struct Sub {
    /// The command.
    pub cmd: Cmd,
    /// The write id (writes).
    pub id: u32,
    /// Read data as delivered.
    pub data: Vec<u8>,
    /// Outcomes reported (exactly one expected).
    pub outcomes: Vec<TaskOutcome>,
}

/// The pair.
pub struct Pair {
    /// Virtual time.
    pub now: Instant,
    start: Instant,
    /// The initiator.
    pub ini: Ini,
    /// The target portal.
    pub portal: Portal,
    lus: Vec<LogicalUnit>,
    lun_list: Vec<Lun>,
    links: BTreeMap<u16, Link>,
    rng: u64,
    /// PDUs moved so far.
    pub pdus: u32,
    faults: Vec<(u32, Fault)>,
    /// Faults applied.
    pub applied: Vec<Fault>,
    /// Submitted commands by task.
    pub subs: BTreeMap<TaskId, Sub>,
    /// Write executions by write id, in order (the execution index).
    pub write_execs: BTreeMap<u32, Vec<u64>>,
    /// Read executions by (ITT, CmdSN): (lba, blocks, data).
    pub read_execs: BTreeMap<(u32, u32), Vec<ReadExec>>,
    exec_seq: u64,
    /// Violations found.
    pub violations: Vec<String>,
    /// Portal: session reinstatements.
    pub tgt_reinstatements: usize,
    /// Portal: leading logins (new sessions).
    pub tgt_logins: Vec<u16>,
    /// Initiator: session-level recoveries (Event::Recovering).
    pub recoverings: usize,
    /// Initiator: Reinstated TSIHs.
    pub reinstated_tsihs: Vec<u16>,
    /// Initiator: connection closes with a cause.
    pub conn_failures: usize,
    /// The initiator session ended.
    pub closed: bool,
    first_tsih: u16,
    next_write: u32,
    /// Connection number to add next time (MC/S).
    pub want_connections: u16,
    /// A log of what happened, for failure messages.
    pub trace: Vec<String>,
    armed: bool,
}

impl Pair {
    /// Logs in (and adds connections up to `setup.connections`).
    pub fn new(s: &Setup, faults: Vec<(u32, Fault)>) -> Pair {
        let start = Instant::ZERO;
        let mut tc = TgtConfig::new(TARGET);
        tc.targets[0].luns = vec![0];
        tc.seed = s.seed;
        tc.cmd_window = 8;
        // The sequence reception timeout that recovers a lost Data-Out
        // (RFC 7143 section 7.1.4.1 b).
        tc.data_out_timeout = Some(DATA_OUT_TIMEOUT);
        tc.params = OperationalParams {
            immediate_data: s.immediate_data,
            max_recv_data_segment_length: 1024,
            max_burst_length: 2048,
            first_burst_length: 1024,
            error_recovery_level: s.erl,
            max_connections: s.connections,
            data_digest: vec![DigestType::Crc32c],
            ..OperationalParams::default()
        };
        let mut ic = SessionConfig::new(INITIATOR)
            .with_target(TARGET)
            .with_error_recovery_level(s.erl)
            .with_max_connections(s.connections, Spread::RoundRobin)
            .with_recovery(Recovery {
                max_attempts: 8,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
            });
        ic.operational = OperationalParams {
            immediate_data: s.immediate_data,
            max_recv_data_segment_length: 1024,
            max_burst_length: 2048,
            first_burst_length: 1024,
            error_recovery_level: s.erl,
            max_connections: s.connections,
            data_digest: vec![DigestType::Crc32c],
            ..OperationalParams::default()
        };
        let ini = open_session(ic, start, [0x12, 0x34, 0x56]).expect("initiator config");
        let portal = Portal::new(PortalConfig::new(tc), s.seed).expect("target config");
        let list = vec![Lun::from_number(0)];
        let lu = LogicalUnit::new(
            RamDisk::new(u64::from(BLOCKS) * BS as u64, BS as u32).expect("RAM disk"),
            LuConfig {
                luns: list.clone(),
                ..LuConfig::default()
            },
        );
        let mut p = Pair {
            now: start,
            start,
            ini,
            portal,
            lus: vec![lu],
            lun_list: list,
            links: BTreeMap::new(),
            rng: s.seed ^ 0x5eed_5eed,
            pdus: 0,
            faults,
            applied: Vec::new(),
            subs: BTreeMap::new(),
            write_execs: BTreeMap::new(),
            read_execs: BTreeMap::new(),
            exec_seq: 0,
            violations: Vec::new(),
            tgt_reinstatements: 0,
            tgt_logins: Vec::new(),
            recoverings: 0,
            reinstated_tsihs: Vec::new(),
            conn_failures: 0,
            closed: false,
            first_tsih: 0,
            next_write: 1,
            want_connections: s.connections,
            trace: Vec::new(),
            armed: false,
        };
        p.ini_events();
        p.settle_until(|p| p.ini.is_logged_in());
        p.first_tsih = p.ini.tsih();
        for _ in 1..s.connections {
            match p.ini.add_connection(p.now) {
                Ok(cid) => p.trace.push(format!("add connection {cid}")),
                Err(e) => p.violations.push(format!("add_connection: {e}")),
            }
            p.ini_events();
        }
        let want = usize::from(s.connections);
        p.settle_until(|p| {
            p.ini.connection_ids().len() == want
                && p.ini
                    .connection_ids()
                    .iter()
                    .all(|&c| p.ini.is_connection_up(c))
        });
        if !p.ini.is_logged_in() {
            p.violations.push("login did not complete".into());
        }
        p.pdus = 0;
        p.armed = true;
        p
    }

    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chunk(&mut self, avail: usize) -> usize {
        let n = match self.next() % 4 {
            0 => 1 + (self.next() % 8) as usize,
            1 => 9 + (self.next() % 100) as usize,
            2 => 100 + (self.next() % 3000) as usize,
            _ => avail,
        };
        n.min(avail)
    }

    /// Submits a command.
    pub fn submit(&mut self, cmd: Cmd) {
        let lun = Lun::from_number(0);
        let (sc, id) = match cmd {
            Cmd::Read { lba, blocks } => (
                ScsiCommand::read(
                    lun,
                    read10(lba, blocks as u16, RwFlags::default()),
                    blocks * BS as u32,
                ),
                0,
            ),
            Cmd::Write { lba, blocks } => {
                let id = self.next_write;
                self.next_write += 1;
                let mut data = Vec::new();
                for b in lba..lba + blocks {
                    data.extend_from_slice(&stamp(id, b));
                }
                (
                    ScsiCommand::write(
                        lun,
                        write10(lba, blocks as u16, RwFlags::default()),
                        Bytes::from(data),
                    ),
                    id,
                )
            }
        };
        match self.ini.submit(self.now, sc) {
            Ok(t) => {
                self.subs.insert(
                    t,
                    Sub {
                        cmd,
                        id,
                        data: Vec::new(),
                        outcomes: Vec::new(),
                    },
                );
            }
            Err(e) => self.violations.push(format!("submit {cmd:?}: {e}")),
        }
        self.ini_events();
    }

    fn fault_due(&mut self, f: impl Fn(Fault) -> bool) -> Option<Fault> {
        // No fault before the session and its connections are up: a
        // failed leading login has no session to recover.
        if !self.armed {
            return None;
        }
        let at = self.pdus;
        let i = self
            .faults
            .iter()
            .position(|&(t, fault)| t <= at && f(fault))?;
        let (_, fault) = self.faults.remove(i);
        self.applied.push(fault);
        Some(fault)
    }

    fn open_link(&mut self, cid: u16) {
        self.kill_link_quietly(cid);
        match self.portal.accept(self.now, None) {
            Ok(h) => {
                self.links.insert(
                    cid,
                    Link {
                        h,
                        i2t: Vec::new(),
                        t2i: Vec::new(),
                        ini_rx: BytesMut::new(),
                        tgt_rx: BytesMut::new(),
                    },
                );
            }
            Err(e) => self
                .violations
                .push(format!("portal refused a connection: {e}")),
        }
    }

    /// The initiator closed `cid`'s socket: the target sees the end.
    fn kill_link_quietly(&mut self, cid: u16) {
        if let Some(l) = self.links.remove(&cid) {
            self.portal.handle_closed(l.h, self.now);
            self.portal.remove(l.h);
            self.tgt_events();
        }
    }

    fn ini_events(&mut self) {
        while let Some(ev) = self.ini.poll_event() {
            self.trace
                .push(format!("{:?} ini {ev:?}", self.now - self.start));
            match ev {
                Event::Connect { .. } => {
                    let cid = self.ini.connection_ids()[0];
                    self.open_link(cid);
                    self.ini.handle_connected(self.now);
                }
                Event::OpenConnection { cid, .. } => {
                    self.open_link(cid);
                    self.ini.handle_connected_on(cid, self.now);
                }
                Event::CloseConnection { cid, cause } => {
                    if cause.is_some() {
                        self.conn_failures += 1;
                    }
                    self.kill_link_quietly(cid);
                }
                Event::Recovering { .. } => {
                    self.recoverings += 1;
                    let cid = self.ini.connection_ids()[0];
                    self.kill_link_quietly(cid);
                }
                Event::Reinstated { tsih } => self.reinstated_tsihs.push(tsih),
                Event::DataIn { task, offset, data } => {
                    if let Some(s) = self.subs.get_mut(&task) {
                        let end = offset as usize + data.len();
                        if s.data.len() < end {
                            s.data.resize(end, 0);
                        }
                        s.data[offset as usize..end].copy_from_slice(&data);
                    }
                }
                Event::Complete { task, outcome } => {
                    if let Some(s) = self.subs.get_mut(&task) {
                        s.outcomes.push(outcome);
                    }
                }
                Event::Closed(_) => {
                    self.closed = true;
                    let cids: Vec<u16> = self.links.keys().copied().collect();
                    for c in cids {
                        self.kill_link_quietly(c);
                    }
                }
                _ => {}
            }
        }
    }

    fn tgt_events(&mut self) {
        while let Some(ev) = self.portal.poll_event() {
            self.trace
                .push(format!("{:?} tgt {ev:?}", self.now - self.start));
            match ev {
                PortalEvent::LoggedIn { tsih, .. } => self.tgt_logins.push(tsih),
                PortalEvent::SessionReinstated { .. } => self.tgt_reinstatements += 1,
                PortalEvent::Command {
                    connection,
                    nexus,
                    request,
                } => self.execute(connection, nexus, &request),
                PortalEvent::TaskAborted { connection, task } => {
                    let _ = self.portal.abort_acknowledged(connection, task);
                }
                _ => {}
            }
        }
    }

    fn execute(
        &mut self,
        h: ConnectionHandle,
        nexus: NexusId,
        req: &iscsi_proto::target::ScsiRequest,
    ) {
        self.exec_seq += 1;
        let cdb = &req.cdb;
        let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]);
        let blocks = u32::from(u16::from_be_bytes([cdb[7], cdb[8]]));
        if cdb[0] == 0x2a {
            // Every block of the data must be the stamp of one write.
            let mut id = None;
            for (i, b) in req.data_out.chunks(BS).enumerate() {
                match stamp_of(b, lba + i as u32) {
                    Ok(Some(x)) if id.is_none() || id == Some(x) => id = Some(x),
                    other => self.violations.push(format!(
                        "write at {lba} reached the LU with bad data in block {i}: {other:?}"
                    )),
                }
            }
            if let Some(id) = id {
                self.write_execs.entry(id).or_default().push(self.exec_seq);
            }
        }
        let (out, written) = run_command(&mut self.lus, &self.lun_list, nexus, req);
        if cdb[0] == 0x28 {
            self.read_execs
                .entry((req.itt, req.cmd_sn.0))
                .or_default()
                .push((lba, blocks, out.data_in.to_vec()));
        }
        let sense = out.sense_bytes().map(|s| Bytes::copy_from_slice(&s));
        let _ = match written {
            Some(n) => self
                .portal
                .complete_write(h, req.task, out.status, sense, n),
            None => self
                .portal
                .complete(h, req.task, out.status, sense, out.data_in),
        };
    }

    fn sniff(&mut self, who: &str, cid: u16, v: &[u8]) {
        let w = |at: usize| u32::from_be_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
        let op = v[0] & 0x3f;
        if matches!(
            op,
            0x01 | 0x02 | 0x05 | 0x06 | 0x10 | 0x21 | 0x22 | 0x31 | 0x3f | 0x26
        ) {
            self.trace.push(format!(
                "{who} cid {cid} PDU op {op:#04x} flags {:#04x} itt {:#x} ttt {:#x} sn24 {} sn28 {} sn36 {} off {} len44 {}",
                v[1],
                w(16),
                w(20),
                w(24),
                w(28),
                w(36),
                w(40),
                w(44)
            ));
        }
    }

    fn cid_of(&self, h: ConnectionHandle) -> Option<u16> {
        self.links.iter().find(|(_, l)| l.h == h).map(|(&c, _)| c)
    }

    /// One round: transmits (maybe partial), deliveries in random cuts,
    /// faults. Returns whether anything moved.
    fn round(&mut self) -> bool {
        let mut moved = false;
        // Kills.
        if !self.links.is_empty() {
            if let Some(Fault::Kill(n)) = self.fault_due(|f| matches!(f, Fault::Kill(_))) {
                let cids: Vec<u16> = self.links.keys().copied().collect();
                let cid = cids[usize::from(n) % cids.len()];
                self.trace.push(format!("KILL cid {cid}"));
                if let Some(l) = self.links.remove(&cid) {
                    self.portal.handle_closed(l.h, self.now);
                    self.portal.remove(l.h);
                }
                self.tgt_events();
                self.ini.handle_closed_on(cid, self.now);
                self.ini_events();
                moved = true;
            }
        }
        // Initiator transmits (partial drains).
        for cid in self.ini.connection_ids() {
            let limit = if self.next() % 3 == 0 { 1 } else { usize::MAX };
            let mut n = 0;
            while n < limit {
                let Some(t) = self.ini.poll_transmit_on(cid, self.now) else {
                    break;
                };
                n += 1;
                moved = true;
                let mut v = Vec::new();
                t.write_to(&mut v);
                self.pdus += 1;
                self.sniff("ini", cid, &v);
                // Task Management Request (0x02), function 8 TASK
                // REASSIGN (RFC 7143 section 11.5.1).
                if v[0] & 0x3f == 0x02
                    && v[1] & 0x7f == 8
                    && self.fault_due(|f| f == Fault::KillReassign).is_some()
                {
                    self.trace
                        .push(format!("KILL cid {cid} sending TASK REASSIGN"));
                    if let Some(l) = self.links.remove(&cid) {
                        self.portal.handle_closed(l.h, self.now);
                        self.portal.remove(l.h);
                    }
                    self.tgt_events();
                    self.ini.handle_closed_on(cid, self.now);
                    self.ini_events();
                    break;
                }
                if v[0] & 0x3f == 0x05 && v.len() > 52 {
                    match self.fault_due(|f| f == Fault::CorruptDataOut || f == Fault::DropDataOut)
                    {
                        Some(Fault::CorruptDataOut) => {
                            self.trace.push(format!("CORRUPT Data-Out on {cid}"));
                            v[48] ^= 0x5a;
                        }
                        Some(_) => {
                            self.trace.push(format!("DROP Data-Out on {cid}"));
                            continue;
                        }
                        None => {}
                    }
                }
                if let Some(l) = self.links.get_mut(&cid) {
                    l.i2t.extend_from_slice(&v);
                }
            }
            self.ini_events();
        }
        // To the target.
        let cids: Vec<u16> = self.links.keys().copied().collect();
        for cid in &cids {
            let Some(avail) = self.links.get(cid).map(|l| l.i2t.len()) else {
                continue;
            };
            if avail > 0 {
                let n = self.chunk(avail);
                let Some(l) = self.links.get_mut(cid) else {
                    continue;
                };
                let chunk: Vec<u8> = l.i2t.drain(..n).collect();
                l.tgt_rx.extend_from_slice(&chunk);
                let h = l.h;
                let mut buf = std::mem::take(&mut l.tgt_rx);
                self.portal.handle_input(h, self.now, &mut buf);
                if let Some(l) = self.links.get_mut(cid) {
                    l.tgt_rx = buf;
                }
                moved = true;
                self.tgt_events();
            }
        }
        // Target transmits (every connection).
        let cids: Vec<u16> = self.links.keys().copied().collect();
        for cid in &cids {
            let Some(h) = self.links.get(cid).map(|l| l.h) else {
                continue;
            };
            while let Some(t) = self.portal.poll_transmit(h, self.now) {
                moved = true;
                let mut v = Vec::new();
                t.write_to(&mut v);
                self.pdus += 1;
                self.sniff("tgt", *cid, &v);
                if v[0] & 0x3f == 0x25 && v.len() > 52 {
                    // A lost Data-In carrying the status (S bit) with no
                    // PDU after it is never detected (no timer: see
                    // `erl1_last_status_data_in_lost`, ignored): only
                    // corruption applies to those.
                    let status = v[1] & 0x01 != 0;
                    if let Some(f) = self.fault_due(|f| {
                        f == Fault::CorruptDataIn
                            || f == Fault::DropAnyDataIn
                            || (f == Fault::DropDataIn && !status)
                    }) {
                        self.trace.push(format!("{f:?} on {cid}"));
                        if f != Fault::CorruptDataIn {
                            continue;
                        }
                        v[48] ^= 0x5a;
                    }
                }
                if let Some(l) = self.links.get_mut(cid) {
                    l.t2i.extend_from_slice(&v);
                }
            }
            while self.portal.poll_touched().is_some() {}
            self.tgt_events();
        }
        // To the initiator.
        for cid in &cids {
            let Some(avail) = self.links.get(cid).map(|l| l.t2i.len()) else {
                continue;
            };
            if avail > 0 {
                let n = self.chunk(avail);
                let Some(l) = self.links.get_mut(cid) else {
                    continue;
                };
                let chunk: Vec<u8> = l.t2i.drain(..n).collect();
                l.ini_rx.extend_from_slice(&chunk);
                let mut buf = std::mem::take(&mut l.ini_rx);
                self.ini.handle_input_on(*cid, self.now, &mut buf);
                if let Some(l) = self.links.get_mut(cid) {
                    l.ini_rx = buf;
                }
                moved = true;
                self.ini_events();
            }
        }
        // A connection the target closed (and flushed): the initiator
        // sees the end.
        for cid in cids {
            let Some(l) = self.links.get(&cid) else {
                continue;
            };
            if self.portal.is_closed(l.h) && l.t2i.is_empty() && l.i2t.is_empty() {
                self.trace.push(format!("target closed cid {cid}"));
                if let Some(l) = self.links.remove(&cid) {
                    self.portal.remove(l.h);
                }
                self.tgt_events();
                self.ini.handle_closed_on(cid, self.now);
                self.ini_events();
                moved = true;
            }
        }
        moved
    }

    /// Runs rounds, advancing virtual time when nothing moves, until
    /// `done` or the time limit.
    pub fn settle_until(&mut self, done: impl Fn(&Pair) -> bool) {
        let mut idle_rounds = 0u32;
        let mut rounds = 0u32;
        loop {
            rounds += 1;
            if rounds > 20_000 {
                self.violations
                    .push("livelock: 20000 rounds without settling".into());
                return;
            }
            if done(self) || self.closed {
                return;
            }
            if self.now - self.start > LIMIT {
                self.violations
                    .push(format!("no progress within {LIMIT:?} of virtual time"));
                return;
            }
            if self.round() {
                idle_rounds = 0;
                continue;
            }
            idle_rounds += 1;
            if idle_rounds > 3 {
                let next = [self.ini.poll_timeout(), self.portal.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) => {
                        self.now = self.now.max(t);
                        self.ini.handle_timeout(self.now);
                        self.ini_events();
                        self.portal.handle_timeout(self.now);
                        self.tgt_events();
                    }
                    None => {
                        if !done(self) {
                            self.violations
                                .push("stuck: nothing moves, no timer".into());
                        }
                        return;
                    }
                }
                idle_rounds = 0;
            }
        }
    }

    /// Every task ended.
    pub fn all_ended(&self) -> bool {
        self.subs.values().all(|s| !s.outcomes.is_empty())
    }

    /// Runs to the end and checks the oracle; returns the violations.
    pub fn finish(&mut self, erl: u8) -> Vec<String> {
        self.settle_until(|p| p.all_ended());
        let mut v = std::mem::take(&mut self.violations);
        for (t, s) in &self.subs {
            if s.outcomes.len() != 1 {
                v.push(format!(
                    "{t:?} {:?} ended {} times",
                    s.cmd,
                    s.outcomes.len()
                ));
            }
        }
        // Executed at most once.
        for (id, e) in &self.write_execs {
            if e.len() > 1 {
                v.push(format!("write {id} executed {} times", e.len()));
            }
        }
        for (k, e) in &self.read_execs {
            if e.len() > 1 {
                v.push(format!(
                    "read (itt, cmdsn) {k:?} executed {} times",
                    e.len()
                ));
            }
        }
        let good = |o: &TaskOutcome| matches!(o, TaskOutcome::Scsi(r) if r.status == 0);
        // Every command ends good: recovery never loses a command here.
        for s in self.subs.values() {
            if let Some(o) = s.outcomes.first() {
                if !good(o) {
                    v.push(format!("{:?} ended {o:?}", s.cmd));
                }
            }
        }
        // Writes: good ones executed exactly once.
        for s in self.subs.values() {
            if let Cmd::Write { .. } = s.cmd {
                let n = self.write_execs.get(&s.id).map_or(0, Vec::len);
                if s.outcomes.first().is_some_and(good) && n != 1 {
                    v.push(format!("good write {} executed {n} times", s.id));
                }
            }
        }
        // Reads: a good read's data is exactly one execution's.
        for s in self.subs.values() {
            if let Cmd::Read { lba, blocks } = s.cmd {
                if s.outcomes.first().is_some_and(good) {
                    let hit = self
                        .read_execs
                        .values()
                        .flatten()
                        .any(|(l, b, d)| *l == lba && *b == blocks && *d == s.data);
                    if !hit {
                        v.push(format!(
                            "read {lba}+{blocks}: data delivered ({} bytes) is no execution's",
                            s.data.len()
                        ));
                    }
                }
            }
        }
        // The medium.
        let mut medium = vec![0u8; BLOCKS as usize * BS];
        {
            let lu = &mut self.lus[0];
            let req_data = read_all(lu, &self.lun_list);
            medium[..req_data.len()].copy_from_slice(&req_data);
        }
        for lba in 0..BLOCKS {
            let b = &medium[lba as usize * BS..(lba as usize + 1) * BS];
            let holder = match stamp_of(b, lba) {
                Ok(h) => h,
                Err(e) => {
                    v.push(e);
                    continue;
                }
            };
            if let Some(id) = holder {
                if !self.write_execs.contains_key(&id) {
                    v.push(format!("block {lba} holds write {id}, never executed"));
                }
            }
            let at = holder
                .and_then(|id| self.write_execs.get(&id))
                .and_then(|e| e.last().copied())
                .unwrap_or(0);
            for s in self.subs.values() {
                if let Cmd::Write { lba: l, blocks } = s.cmd {
                    if (l..l + blocks).contains(&lba) && s.outcomes.first().is_some_and(good) {
                        let mine = self
                            .write_execs
                            .get(&s.id)
                            .and_then(|e| e.first().copied())
                            .unwrap_or(u64::MAX);
                        if mine > at {
                            v.push(format!(
                                "block {lba}: good write {} (exec {mine}) overwritten by an \
                                 earlier one ({holder:?}, exec {at})",
                                s.id
                            ));
                        }
                    }
                }
            }
        }
        // Recovery costs.
        if erl >= 1 {
            let faults_only_digest = !self.applied.iter().any(|f| matches!(f, Fault::Kill(_)));
            if faults_only_digest && (self.recoverings > 0 || self.conn_failures > 0) {
                v.push(format!(
                    "a digest error or lost PDU cost a connection at ERL {erl} \
                     ({} session recoveries, {} connection failures)",
                    self.recoverings, self.conn_failures
                ));
            }
        }
        if erl == 2 {
            if self.tgt_reinstatements > 0 || self.tgt_logins.len() > 1 {
                v.push(format!(
                    "session reinstated at ERL 2 ({} reinstatements, leading logins with TSIHs {:?})",
                    self.tgt_reinstatements, self.tgt_logins
                ));
            }
            if self.reinstated_tsihs.iter().any(|&t| t != self.first_tsih) {
                v.push(format!(
                    "TSIH changed: {} -> {:?}",
                    self.first_tsih, self.reinstated_tsihs
                ));
            }
        }
        if self.closed {
            v.push("the session ended".into());
        }
        v
    }
}

fn read_all(lu: &mut LogicalUnit, _list: &[Lun]) -> Vec<u8> {
    let mut all = vec![0u8; BLOCKS as usize * BS];
    if lu.device().read_at(0, &mut all).is_err() {
        return Vec::new();
    }
    all
}
