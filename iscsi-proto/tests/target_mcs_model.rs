//! A model of one ErrorRecoveryLevel 2 session of 1-4 connections on the
//! target `Portal`, driven by random interleavings (proptest): commands
//! spread over the connections with CmdSNs out of order across them,
//! connections killed with their unsent PDUs lost, reconnection with the
//! same CID (RFC 7143 section 6.3.4) and TASK REASSIGN of what was
//! outstanding (section 11.5.1), Status SNACKs (section 11.16), and an
//! application that runs commands late (some while their connection is
//! down).
//!
//! Time also jumps past DefaultTime2Wait + DefaultTime2Retain (section
//! 13.16: "the maximum time ... before all active tasks are terminated")
//! while connections are dead: their tasks and retained statuses go, the
//! application's pending ones are aborted (never executed after), and the
//! session ends with its last connection.
//!
//! Oracles (the issue's): every command ends exactly once at the
//! initiator (those of an expired connection at most once), no command executes twice at the logical unit, write data
//! reaches the medium as sent, read data is what the medium held when the
//! read executed, and the medium equals the model (the writes applied in
//! execution order).

mod target_support;

use iscsi_proto::time::Instant;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_proto::login::OperationalParams;
use iscsi_proto::scsi::ScsiStatus;
use iscsi_proto::target::{
    ConnectionHandle, Portal, PortalConfig, PortalEvent, ScsiRequest, SessionConfig,
};
use iscsi_proto::wire::*;
use proptest::prelude::*;
use target_support::{kv, INITIATOR, TARGET};

const BLOCK: usize = 512;
const BLOCKS: usize = 8;

#[derive(Debug, Clone)]
enum Op {
    /// A write of one block, on connection `conn % n`.
    Write { conn: usize, block: usize, fill: u8 },
    /// A read of one block.
    Read { conn: usize, block: usize },
    /// Two reads sent in reverse CmdSN order on two connections.
    Swapped { a: usize, b: usize, block: usize },
    /// The application runs the `k % pending`-th command waiting.
    Execute { k: usize },
    /// Connection `conn % n` dies: what it had not sent is lost.
    Kill { conn: usize },
    /// Dead connections log in again and reassign their tasks.
    Recover,
    /// A Status SNACK for everything unacknowledged on `conn % n`.
    StatusSnack { conn: usize },
    /// The initiator reads what connection `conn % n` sent so far.
    Deliver { conn: usize },
    /// The initiator gives up on live connection `conn % n` and logs in
    /// again with its CID (connection reinstatement, section 6.3.4).
    Reinstate { conn: usize },
    /// Logout "remove the connection for recovery" (section 11.14, reason
    /// 2) of `from % n`, sent on `to % n`, whose tasks are then
    /// reassigned to `to`.
    Move { from: usize, to: usize },
    /// Time passes beyond DefaultTime2Wait + DefaultTime2Retain (RFC 7143
    /// section 13.16) with the dead connections not recovered.
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, 0..BLOCKS, any::<u8>()).prop_map(|(conn, block, fill)| Op::Write {
            conn,
            block,
            fill
        }),
        (0..4usize, 0..BLOCKS).prop_map(|(conn, block)| Op::Read { conn, block }),
        (0..4usize, 0..4usize, 0..BLOCKS).prop_map(|(a, b, block)| Op::Swapped { a, b, block }),
        (0..8usize).prop_map(|k| Op::Execute { k }),
        (0..8usize).prop_map(|k| Op::Execute { k }),
        (0..4usize).prop_map(|conn| Op::Kill { conn }),
        Just(Op::Recover),
        (0..4usize).prop_map(|conn| Op::StatusSnack { conn }),
        (0..4usize).prop_map(|conn| Op::Deliver { conn }),
        (0..4usize).prop_map(|conn| Op::Deliver { conn }),
        (0..4usize).prop_map(|conn| Op::Deliver { conn }),
        (0..4usize).prop_map(|conn| Op::Reinstate { conn }),
        (0..4usize, 0..4usize).prop_map(|(from, to)| Op::Move { from, to }),
        Just(Op::Expire),
    ]
}

/// One command as the initiator sees it.
#[derive(Debug, Clone)]
struct Cmd {
    write: bool,
    block: usize,
    data: Bytes,
    /// Index of the connection (cid - 1) it is allegiant to.
    conn: usize,
    read_back: BytesMut,
    ended: u32,
    /// Its connection died and Time2Retain expired before it ended: the
    /// target dropped it (it may have executed once, or not at all).
    expired: bool,
    /// Its executions when it expired: none may follow.
    executed_at_expiry: u32,
}

struct World {
    p: Portal,
    now: Instant,
    isid: Isid,
    tsih: u16,
    cmd_sn: Serial,
    itt: u32,
    /// Per connection index: its handle, alive or not, its ExpStatSN.
    conns: Vec<(ConnectionHandle, bool, Option<Serial>)>,
    cmds: BTreeMap<u32, Cmd>,
    // The application and the logical unit.
    pending: VecDeque<(ConnectionHandle, ScsiRequest)>,
    executed: BTreeMap<u32, u32>,
    medium: Vec<u8>,
    model: Vec<u8>,
    read_at_execution: BTreeMap<u32, Bytes>,
    /// The session ended (Time2Retain expired with no live connection).
    gone: bool,
}

impl World {
    fn new(n: usize) -> World {
        let mut s = SessionConfig::new(TARGET);
        s.params = OperationalParams::default();
        s.params.error_recovery_level = 2;
        s.params.max_connections = 4;
        let mut w = World {
            p: Portal::new(PortalConfig::new(s), 3).unwrap(),
            now: Instant::from_millis(1_000_000),
            isid: Isid::from_fields(0, 1, 2, 3, 4),
            tsih: 0,
            cmd_sn: Serial(1),
            itt: 0,
            conns: Vec::new(),
            cmds: BTreeMap::new(),
            pending: VecDeque::new(),
            executed: BTreeMap::new(),
            medium: vec![0; BLOCK * BLOCKS],
            model: vec![0; BLOCK * BLOCKS],
            read_at_execution: BTreeMap::new(),
            gone: false,
        };
        for i in 0..n {
            let h = w.login(i);
            w.conns.push((h, true, None));
        }
        w
    }

    fn login(&mut self, i: usize) -> ConnectionHandle {
        let h = self.p.accept(self.now, None).unwrap();
        let req = LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: self.tsih,
            itt: 0,
            cid: i as u16 + 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: Serial(0),
        };
        let mut keys = vec![
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
        ];
        if self.tsih == 0 {
            keys.extend([
                ("ErrorRecoveryLevel", "2"),
                ("MaxConnections", "4"),
                ("InitialR2T", "Yes"),
                ("ImmediateData", "No"),
            ]);
        }
        self.raw_send(h, Pdu::new(req, kv(&keys)));
        let pdus = self.take(h);
        let Header::LoginResponse(r) = pdus[0].header else {
            panic!("{pdus:?}")
        };
        assert_eq!(r.status_class, 0, "{r:?}");
        self.tsih = r.tsih;
        self.pump();
        h
    }

    fn raw_send(&mut self, h: ConnectionHandle, pdu: Pdu) {
        let mut buf = BytesMut::new();
        pdu.encode(&mut buf, Digests::NONE).unwrap();
        self.p.handle_input(h, self.now, &mut buf);
    }

    /// Sends on live connection `i` and handles what comes back.
    fn send(&mut self, i: usize, hd: impl Into<Header>, data: Bytes) {
        let h = self.conns[i].0;
        self.raw_send(h, Pdu::new(hd, data));
        self.pump();
    }

    fn take(&mut self, h: ConnectionHandle) -> Vec<Pdu> {
        let mut dec = PduDecoder::new(DecoderConfig {
            digests: Digests::NONE,
            max_data_segment_length: 0x00ff_ffff,
        });
        let mut buf = BytesMut::new();
        while let Some(t) = self.p.poll_transmit(h, self.now) {
            t.write_to(&mut buf);
        }
        std::iter::from_fn(|| dec.decode(&mut buf).unwrap()).collect()
    }

    /// Portal events to the application. What the connections send
    /// waits in their queues until [`World::deliver`] (so a connection that
    /// dies loses it).
    fn pump(&mut self) {
        while let Some(e) = self.p.poll_event() {
            match e {
                PortalEvent::Command {
                    connection,
                    request,
                    ..
                } => self.pending.push_back((connection, request)),
                PortalEvent::TaskAborted { connection, task } => {
                    // The application stops the task: never executed.
                    self.pending.retain(|(_, r)| r.task != task);
                    let _ = self.p.abort_acknowledged(connection, task);
                }
                _ => {}
            }
        }
        while self.p.poll_touched().is_some() {}
    }

    /// The initiator reads and handles what live connection `i` sent.
    /// False when there was nothing.
    fn deliver(&mut self, i: usize) -> bool {
        let (h, alive, _) = self.conns[i];
        if !alive {
            return false;
        }
        let pdus = self.take(h);
        let any = !pdus.is_empty();
        for p in pdus {
            self.initiator(i, p);
        }
        any
    }

    /// The initiator's handling of one PDU from connection `i`.
    fn initiator(&mut self, i: usize, p: Pdu) {
        let stat = |w: &mut World, sn: Serial| {
            let e = &mut w.conns[i].2;
            if e.is_none_or(|x| sn.next().follows(x)) {
                *e = Some(sn.next());
            }
        };
        match p.header {
            Header::R2t(r) => {
                let Some(c) = self.cmds.get(&r.itt) else {
                    panic!("R2T for unknown ITT {}", r.itt)
                };
                assert_eq!(
                    c.conn, i,
                    "R2T on another connection (RFC 7143 section 6.4)"
                );
                let (o, n) = (
                    r.buffer_offset as usize,
                    r.desired_data_transfer_length as usize,
                );
                let data = c.data.slice(o..o + n);
                let d = DataOut {
                    final_pdu: true,
                    lun: 0,
                    itt: r.itt,
                    ttt: r.ttt,
                    exp_stat_sn: self.conns[i].2.unwrap_or(Serial(0)),
                    data_sn: Serial(0),
                    buffer_offset: r.buffer_offset,
                };
                self.send(i, d, data);
            }
            Header::DataIn(d) => {
                let c = self.cmds.get_mut(&d.itt).expect("Data-In for a known ITT");
                assert_eq!(
                    c.conn, i,
                    "Data-In on another connection (RFC 7143 section 6.4)"
                );
                if c.ended == 0 {
                    let o = d.buffer_offset as usize;
                    if c.read_back.len() < o + p.data.len() {
                        c.read_back.resize(o + p.data.len(), 0);
                    }
                    c.read_back[o..o + p.data.len()].copy_from_slice(&p.data);
                }
                if let Some(s) = d.status {
                    assert_eq!(s.status, 0);
                    stat(self, s.stat_sn);
                    self.end(d.itt);
                }
            }
            Header::ScsiResponse(r) => {
                assert_eq!(r.status, 0, "{r:?}");
                stat(self, r.stat_sn);
                self.end(r.itt);
            }
            Header::TaskMgmtResponse(r) => {
                stat(self, r.stat_sn);
                assert_eq!(r.response, TmfResponse::FunctionComplete, "{r:?}");
            }
            Header::Reject(r) => panic!("Reject {r:?}"),
            _ => {}
        }
    }

    /// A status arrived: the command ended (once; later copies are the
    /// replicas a SNACK or a reassignment asked for).
    fn end(&mut self, itt: u32) {
        let c = self.cmds.get_mut(&itt).expect("status for a known ITT");
        c.ended += 1;
    }

    fn issue(&mut self, i: usize, write: bool, block: usize, data: Bytes, sn: Serial) {
        self.itt += 1;
        let itt = self.itt;
        let mut cdb = [0u8; 16];
        cdb[0] = if write { 0x2a } else { 0x28 };
        cdb[5] = block as u8;
        cdb[8] = 1;
        self.cmds.insert(
            itt,
            Cmd {
                write,
                block,
                data,
                conn: i,
                read_back: BytesMut::new(),
                ended: 0,
                expired: false,
                executed_at_expiry: 0,
            },
        );
        let c = ScsiCommand {
            immediate: false,
            final_pdu: true,
            read: !write,
            write,
            attr: TaskAttr::Simple,
            lun: 0,
            itt,
            expected_data_transfer_length: BLOCK as u32,
            cmd_sn: sn,
            exp_stat_sn: self.conns[i].2.unwrap_or(Serial(0)),
            cdb,
        };
        self.send(i, c, Bytes::new());
    }

    /// The application runs pending command `k` on the logical unit.
    fn execute(&mut self, k: usize) {
        if self.pending.is_empty() {
            return;
        }
        let k = k % self.pending.len();
        let Some((h, req)) = self.pending.remove(k) else {
            return;
        };
        *self.executed.entry(req.itt).or_default() += 1;
        let block = req.cdb[5] as usize;
        let range = block * BLOCK..(block + 1) * BLOCK;
        let r = if req.expected_write_len > 0 {
            assert_eq!(req.data_out, self.cmds[&req.itt].data, "write data as sent");
            self.medium[range.clone()].copy_from_slice(&req.data_out);
            self.model[range].copy_from_slice(&self.cmds[&req.itt].data);
            self.p
                .complete_write(h, req.task, ScsiStatus::Good, None, BLOCK as u32)
        } else {
            let data = Bytes::copy_from_slice(&self.medium[range]);
            self.read_at_execution.insert(req.itt, data.clone());
            self.p.complete(h, req.task, ScsiStatus::Good, None, data)
        };
        r.expect("a delivered task completes");
        self.pump();
    }

    fn live(&self, i: usize) -> Option<usize> {
        let n = self.conns.len();
        (0..n).map(|k| (i + k) % n).find(|&k| self.conns[k].1)
    }

    fn run(&mut self, op: &Op) {
        if self.gone {
            return;
        }
        let n = self.conns.len();
        match *op {
            Op::Expire => {
                let dead: Vec<usize> = (0..n).filter(|&i| !self.conns[i].1).collect();
                if dead.is_empty() {
                    return;
                }
                // Defaults: Time2Wait 2 s + Time2Retain 20 s (section
                // 13.15, 13.16).
                self.now += Duration::from_secs(23);
                self.p.handle_timeout(self.now);
                self.pump();
                for (itt, c) in self.cmds.iter_mut() {
                    if dead.contains(&c.conn) && c.ended == 0 && !c.expired {
                        c.expired = true;
                        c.executed_at_expiry = self.executed.get(itt).copied().unwrap_or(0);
                    }
                }
                self.gone = dead.len() == n;
            }
            Op::Write { conn, block, fill } => {
                let Some(i) = self.live(conn % n) else { return };
                let sn = self.cmd_sn;
                self.cmd_sn = sn.next();
                let data = Bytes::from(vec![fill; BLOCK]);
                self.issue(i, true, block, data, sn);
            }
            Op::Read { conn, block } => {
                let Some(i) = self.live(conn % n) else { return };
                let sn = self.cmd_sn;
                self.cmd_sn = sn.next();
                self.issue(i, false, block, Bytes::new(), sn);
            }
            Op::Swapped { a, b, block } => {
                let (Some(i), Some(j)) = (self.live(a % n), self.live(b % n)) else {
                    return;
                };
                let sn = self.cmd_sn;
                self.cmd_sn = sn.next().next();
                self.issue(i, false, block, Bytes::new(), sn.next());
                self.issue(j, false, block, Bytes::new(), sn);
            }
            Op::Execute { k } => self.execute(k),
            Op::Kill { conn } => {
                let i = conn % n;
                if !self.conns[i].1 {
                    return;
                }
                let h = self.conns[i].0;
                // What the target had not written yet is lost.
                while self.p.poll_transmit(h, self.now).is_some() {}
                self.p.handle_closed(h, self.now);
                self.p.remove(h);
                self.conns[i].1 = false;
                self.pump();
            }
            Op::Recover => self.recover(),
            Op::StatusSnack { conn } => {
                let Some(i) = self.live(conn % n) else { return };
                let s = SnackRequest {
                    snack_type: SnackType::Status,
                    lun: 0,
                    itt: 0xffff_ffff,
                    ttt_or_snack_tag: 0xffff_ffff,
                    exp_stat_sn: self.conns[i].2.unwrap_or(Serial(0)),
                    beg_run: Serial(0),
                    run_length: 0,
                };
                let h = self.conns[i].0;
                self.deliver(i);
                self.raw_send(h, Pdu::new(s, Bytes::new()));
                // Nothing unacknowledged draws a Reject: tolerated here.
                let pdus = self.take(h);
                for p in pdus {
                    if !matches!(p.header, Header::Reject(_)) {
                        self.initiator(i, p);
                    }
                }
                self.pump();
            }
            Op::Deliver { conn } => {
                self.deliver(conn % n);
            }
            Op::Move { from, to } => {
                let (f, t) = (from % n, to % n);
                if f == t || !self.conns[f].1 || !self.conns[t].1 {
                    return;
                }
                self.deliver(t);
                self.itt += 1;
                let lo = LogoutRequest {
                    immediate: true,
                    reason: LogoutReason::RemoveForRecovery,
                    itt: self.itt,
                    cid: f as u16 + 1,
                    cmd_sn: self.cmd_sn,
                    exp_stat_sn: self.conns[t].2.unwrap_or(Serial(0)),
                };
                let ht = self.conns[t].0;
                self.raw_send(ht, Pdu::new(lo, Bytes::new()));
                let pdus = self.take(ht);
                assert!(
                    matches!(pdus[0].header, Header::LogoutResponse(l) if l.response == LogoutResponseCode::Success),
                    "{pdus:?}"
                );
                // The removed connection: closed by the target, its unsent
                // PDUs lost; the initiator closes its socket.
                let old = self.conns[f].0;
                assert!(self.p.is_closed(old));
                while self.p.poll_transmit(old, self.now).is_some() {}
                self.p.remove(old);
                self.conns[f].1 = false;
                self.pump();
                let open: Vec<u32> = self
                    .cmds
                    .iter()
                    .filter(|(_, c)| c.conn == f && c.ended == 0 && !c.expired)
                    .map(|(itt, _)| *itt)
                    .collect();
                for itt in open {
                    if let Some(c) = self.cmds.get_mut(&itt) {
                        c.conn = t;
                        c.read_back.clear();
                    }
                    self.itt += 1;
                    let req = TaskMgmtRequest {
                        immediate: true,
                        function: TmfFunction::TaskReassign,
                        lun: 0,
                        itt: self.itt,
                        referenced_task_tag: itt,
                        cmd_sn: self.cmd_sn,
                        exp_stat_sn: Serial(0),
                        ref_cmd_sn: Serial(0),
                        exp_data_sn: Serial(0),
                    };
                    self.send(t, req, Bytes::new());
                }
            }
            Op::Reinstate { conn } => {
                let i = conn % n;
                if !self.conns[i].1 {
                    return;
                }
                let old = self.conns[i].0;
                let h = self.login(i);
                // The old socket: what it had not delivered is lost.
                while self.p.poll_transmit(old, self.now).is_some() {}
                self.p.handle_closed(old, self.now);
                self.p.remove(old);
                self.conns[i] = (h, true, None);
                self.pump();
                self.reassign_open(i);
            }
        }
    }

    /// Every dead connection logs in again with its CID (connection
    /// reinstatement) and reassigns its unfinished commands.
    fn recover(&mut self) {
        if self.gone {
            return;
        }
        for i in 0..self.conns.len() {
            if self.conns[i].1 {
                continue;
            }
            let h = self.login(i);
            self.conns[i] = (h, true, None);
            self.reassign_open(i);
        }
    }

    /// TASK REASSIGN of the unfinished commands of connection `i` on its
    /// new instance.
    fn reassign_open(&mut self, i: usize) {
        {
            let open: Vec<u32> = self
                .cmds
                .iter()
                .filter(|(_, c)| c.conn == i && c.ended == 0 && !c.expired)
                .map(|(itt, _)| *itt)
                .collect();
            for itt in open {
                if let Some(c) = self.cmds.get_mut(&itt) {
                    c.read_back.clear();
                }
                self.itt += 1;
                let req = TaskMgmtRequest {
                    immediate: true,
                    function: TmfFunction::TaskReassign,
                    lun: 0,
                    itt: self.itt,
                    referenced_task_tag: itt,
                    cmd_sn: self.cmd_sn,
                    exp_stat_sn: Serial(0),
                    ref_cmd_sn: Serial(0),
                    exp_data_sn: Serial(0),
                };
                self.send(i, req, Bytes::new());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn erl2_mcs_model(n in 1..=4usize, ops in proptest::collection::vec(op(), 1..40)) {
        let mut w = World::new(n);
        for op in &ops {
            w.run(op);
        }
        // Quiesce: recover, deliver, run everything still waiting.
        for _ in 0..16 {
            w.recover();
            let mut busy = false;
            for i in 0..w.conns.len() {
                busy |= w.deliver(i);
            }
            busy |= !w.pending.is_empty();
            while !w.pending.is_empty() {
                w.execute(0);
            }
            if !busy {
                break;
            }
        }
        for (itt, c) in &w.cmds {
            if c.expired {
                // Dropped at Time2Retain expiry: never executed after it
                // (nothing reaches the medium after its abort), at most
                // once, and ended at most once.
                let n = w.executed.get(itt).copied().unwrap_or(0);
                prop_assert_eq!(n, c.executed_at_expiry, "itt {} ran after expiry {:?}", itt, c);
                prop_assert!(n <= 1, "itt {} {:?}", itt, c);
                prop_assert!(c.ended <= 1, "itt {} {:?}", itt, c);
                continue;
            }
            // No command executes twice; every one executed once.
            prop_assert_eq!(w.executed.get(itt).copied(), Some(1), "itt {} {:?}", itt, c);
            // Every command ended at the initiator.
            prop_assert!(c.ended >= 1, "itt {} never ended: {:?}", itt, c);
            if !c.write {
                prop_assert_eq!(&c.read_back[..], &w.read_at_execution[itt][..], "itt {}", itt);
            }
            let _ = c.block;
        }
        prop_assert_eq!(&w.medium, &w.model);
    }
}
