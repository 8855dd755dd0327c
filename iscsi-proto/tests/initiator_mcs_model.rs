//! MC/S at ErrorRecoveryLevel 2 under random connection kills (RFC 7143
//! sections 13.2, 7.1.4.3, 7.2.2, 11.5.1): a session with 1 to 4
//! connections, reads and TEST UNIT READYs spread over them, against a
//! target model that keeps its tasks across connections, answers TASK
//! REASSIGN and Logout reason 2, resends Data-In from ExpDataSN. Any
//! connection (the first included) is killed at random points, losing
//! what was in flight on it.
//!
//! Oracle: every task ends exactly once, good, with all its data; the
//! target receives each command exactly once; the session is never
//! reinstated (no login with TSIH 0 after the first) and keeps its TSIH.

use iscsi_proto::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use iscsi_proto::initiator::{
    open_session, Event, ScsiCommand, Session, SessionConfig, Spread, TaskId, TaskOutcome,
};
use iscsi_proto::login::negotiation::TargetConfig;
use iscsi_proto::testing::{LoginResponder, ScriptedTarget};
use iscsi_proto::wire::pdu::{self as w, Header, Residual};
use iscsi_proto::wire::Serial;
use proptest::prelude::*;

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const TUR: [u8; 6] = [0; 6];
const SEG: u32 = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Tm {
    pdus: u32,
    received: u32,
    next: u32,
    status_sent: bool,
    /// The connection the target answers this task on.
    cid: Option<u16>,
}

struct World {
    s: Session,
    now: Instant,
    t: BTreeMap<u16, ScriptedTarget>,
    rx: BTreeMap<u16, BytesMut>,
    events: Vec<Event>,
    tasks: BTreeMap<u32, Tm>,
    ahead: BTreeSet<u32>,
    exp: Serial,
    max: Serial,
    logins_tsih0: usize,
    /// Killed added connections not yet logged out: their tasks are still
    /// allegiant to them at the target.
    dead: BTreeSet<u16>,
    /// The first connection was killed and not yet recovered.
    primary_down: bool,
}

fn content(itt: u32, pdus: u32) -> Vec<u8> {
    (0..pdus * SEG)
        .map(|i| (i as u8) ^ (itt as u8).wrapping_mul(7))
        .collect()
}

impl World {
    fn primary(&self) -> u16 {
        self.s.connection_ids()[0]
    }

    fn sync_window(&mut self) {
        for t in self.t.values_mut() {
            t.exp_cmd_sn = self.exp;
            t.max_cmd_sn = self.max;
        }
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.s.poll_event() {
            match &ev {
                Event::Connect { .. } => {
                    let cid = self.primary();
                    self.t.insert(cid, ScriptedTarget::new());
                    self.rx.insert(cid, BytesMut::new());
                    self.s.handle_connected(self.now);
                }
                Event::OpenConnection { cid, .. } => {
                    self.t.insert(*cid, ScriptedTarget::new());
                    self.rx.insert(*cid, BytesMut::new());
                    self.s.handle_connected_on(*cid, self.now);
                }
                Event::CloseConnection { cid, .. } => {
                    self.t.remove(cid);
                    self.rx.remove(cid);
                }
                _ => {}
            }
            self.events.push(ev);
        }
    }

    fn flush(&mut self) {
        loop {
            self.drain_events();
            let mut any = false;
            for cid in self.s.connection_ids() {
                while let Some(tx) = self.s.poll_transmit_on(cid, self.now) {
                    any = true;
                    let mut v = Vec::new();
                    tx.write_to(&mut v);
                    if let Some(t) = self.t.get_mut(&cid) {
                        t.feed(&v).unwrap();
                    }
                }
            }
            self.drain_events();
            if !any {
                break;
            }
        }
    }

    fn deliver(&mut self, cid: u16) {
        let Some(t) = self.t.get_mut(&cid) else {
            return;
        };
        let out = t.take_output();
        let Some(rx) = self.rx.get_mut(&cid) else {
            return;
        };
        rx.extend_from_slice(&out);
        let mut buf = core::mem::take(rx);
        self.s.handle_input_on(cid, self.now, &mut buf);
        if let Some(rx) = self.rx.get_mut(&cid) {
            *rx = buf;
        }
        self.flush();
    }

    fn login(&mut self, cid: u16) {
        let mut tc = TargetConfig::default();
        tc.params.max_connections = 4;
        tc.params.error_recovery_level = 2;
        let mut r = LoginResponder::new(tc, None);
        let login_cmd_sn = self.s.window().cmd_sn();
        r.window = (self.exp.0.wrapping_sub(login_cmd_sn.0), 32);
        for _ in 0..50 {
            self.flush();
            let Some(t) = self.t.get_mut(&cid) else {
                return;
            };
            while let Some(pdu) = t.recv() {
                if let Header::LoginRequest(l) = pdu.header {
                    if l.tsih == 0 {
                        self.logins_tsih0 += 1;
                    }
                }
                r.handle(t, &pdu);
            }
            self.deliver(cid);
            if self.s.is_connection_up(cid) {
                // The responder set this target's window from ours.
                self.max = self.t[&cid].max_cmd_sn;
                self.sync_window();
                return;
            }
        }
        panic!("login of {cid} did not finish");
    }

    /// The target reads what connection `cid` carried.
    fn process(&mut self, cid: u16) {
        let Some(t) = self.t.get_mut(&cid) else {
            return;
        };
        let mut pdus = Vec::new();
        while let Some(p) = t.recv() {
            pdus.push(p);
        }
        for pdu in pdus {
            match pdu.header {
                Header::ScsiCommand(c) => {
                    let m = self.tasks.get_mut(&c.itt).expect("known command");
                    m.received += 1;
                    m.cid = Some(cid);
                    // ExpCmdSN over contiguous CmdSNs (RFC 7143 4.2.2.1).
                    self.ahead.insert(c.cmd_sn.0);
                    while self.ahead.remove(&self.exp.0) {
                        self.exp = self.exp.next();
                        self.max = self.max.next();
                    }
                    self.sync_window();
                }
                Header::TaskMgmtRequest(r) => {
                    assert_eq!(r.function, w::TmfFunction::TaskReassign);
                    let m = self
                        .tasks
                        .get_mut(&r.referenced_task_tag)
                        .expect("known task");
                    let still = m.cid.is_some_and(|c| {
                        c != cid && (self.dead.contains(&c) || self.t.contains_key(&c))
                    });
                    let resp = if still {
                        // RFC 7143 section 11.6.1: 3, "Task still allegiant".
                        w::TmfResponse::TaskStillAllegiant
                    } else if m.received > 0 {
                        m.cid = Some(cid);
                        m.next = r.exp_data_sn.0;
                        m.status_sent = false;
                        w::TmfResponse::FunctionComplete
                    } else {
                        w::TmfResponse::TaskDoesNotExist
                    };
                    self.t.get_mut(&cid).unwrap().tmf_response(r.itt, resp);
                }
                Header::LogoutRequest(l) => {
                    assert_eq!(l.reason, w::LogoutReason::RemoveForRecovery);
                    self.dead.remove(&l.cid);
                    for m in self.tasks.values_mut() {
                        if m.cid == Some(l.cid) {
                            m.cid = None;
                        }
                    }
                    self.t.get_mut(&cid).unwrap().logout_response(l.itt, 2, 20);
                }
                h => panic!("unexpected {:?}", h.opcode()),
            }
        }
    }

    fn progress(&mut self, i: usize) {
        let itts: Vec<u32> = self.tasks.keys().copied().collect();
        let Some(&itt) = itts.get(i % itts.len().max(1)) else {
            return;
        };
        let m = self.tasks[&itt];
        let Some(cid) = m.cid else { return };
        if m.received == 0 || m.status_sent || !self.s.is_connection_up(cid) {
            return;
        }
        let Some(t) = self.t.get_mut(&cid) else {
            return;
        };
        let m = self.tasks.get_mut(&itt).unwrap();
        if m.pdus == 0 {
            t.scsi_response(itt, 0, Residual::None, None);
            m.status_sent = true;
            return;
        }
        let data = content(itt, m.pdus);
        let k = m.next;
        let last = k + 1 == m.pdus;
        t.data_in(
            itt,
            k,
            k * SEG,
            &data[(k * SEG) as usize..((k + 1) * SEG) as usize],
            last.then_some((0, Residual::None)),
        );
        m.next += 1;
        m.status_sent = last;
    }

    fn kill(&mut self, cid: u16) {
        if !self.s.is_connection_up(cid) {
            return;
        }
        if let Some(t) = self.t.get_mut(&cid) {
            let _ = t.take_output();
            while t.recv().is_some() {}
        }
        if cid == self.primary() {
            // Reinstated with the same CID (an implicit logout): its tasks
            // wait for reassignment.
            for m in self.tasks.values_mut() {
                if m.cid == Some(cid) {
                    m.cid = None;
                }
            }
            self.t.remove(&cid);
            self.s.handle_closed(self.now);
            self.flush();
            self.primary_down = true;
        } else {
            self.dead.insert(cid);
            self.s.handle_closed_on(cid, self.now);
            self.flush();
        }
    }

    /// The first connection comes back (after Time2Wait), while the added
    /// ones may have carried on or died meanwhile.
    fn recover_primary(&mut self) {
        if !core::mem::take(&mut self.primary_down) {
            return;
        }
        let cid = self.primary();
        {
            let after = self.events.iter().rev().find_map(|e| match e {
                Event::Recovering { after, .. } => Some(*after),
                _ => None,
            });
            let after = after.expect("recovering");
            self.now += after;
            if self.s.poll_timeout().is_some_and(|d| d <= self.now) {
                self.s.handle_timeout(self.now);
            }
            self.flush();
            self.login(cid);
            self.process(cid);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Progress(usize),
    Deliver(usize),
    Kill(usize),
    /// A new command (0: TEST UNIT READY, else a read of that many PDUs).
    Submit(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0usize..8).prop_map(Step::Progress),
        4 => (0usize..4).prop_map(Step::Deliver),
        1 => (0usize..4).prop_map(Step::Kill),
        1 => (0u32..3).prop_map(Step::Submit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn mcs_kills_never_lose_or_repeat_a_command(
        conns in 1usize..=4,
        least in any::<bool>(),
        reads in proptest::collection::vec(0u32..3, 1..8),
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let spread = if least { Spread::LeastOutstanding } else { Spread::RoundRobin };
        let cfg = SessionConfig::new("iqn.2024-01.test:init")
            .with_target("iqn.2024-01.test:disk")
            .with_error_recovery_level(2)
            .with_max_connections(4, spread);
        let now = Instant::from_millis(1_000_000);
        let s = open_session(cfg, now, [1, 2, 3]).unwrap();
        let mut wd = World {
            s, now, t: BTreeMap::new(), rx: BTreeMap::new(), events: Vec::new(),
            tasks: BTreeMap::new(), ahead: BTreeSet::new(), exp: Serial(1), max: Serial(32),
            logins_tsih0: 0, dead: BTreeSet::new(), primary_down: false,
        };
        wd.flush();
        let p = wd.primary();
        wd.login(p);
        wd.exp = wd.t[&p].exp_cmd_sn;
        wd.max = wd.t[&p].max_cmd_sn;
        let tsih = wd.s.tsih();
        for _ in 1..conns {
            let cid = wd.s.add_connection(wd.now).unwrap();
            wd.flush();
            wd.login(cid);
        }
        let mut tasks: Vec<(TaskId, u32)> = Vec::new();
        for pdus in &reads {
            let cmd = if *pdus == 0 {
                ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..])
            } else {
                ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], pdus * SEG)
            };
            let task = wd.s.submit(wd.now, cmd).unwrap();
            wd.tasks.insert(task.itt(), Tm { pdus: *pdus, ..Tm::default() });
            tasks.push((task, task.itt()));
        }
        wd.flush();
        let mut kills = 0;
        for st in steps {
            let ids = wd.s.connection_ids();
            match st {
                Step::Progress(i) => wd.progress(i),
                Step::Deliver(c) => {
                    let cid = ids[c % ids.len()];
                    if cid == wd.primary() {
                        wd.recover_primary();
                    }
                    wd.deliver(cid);
                    wd.process(cid);
                }
                Step::Kill(c) if kills < 4 => {
                    kills += 1;
                    wd.kill(ids[c % ids.len()]);
                }
                Step::Kill(_) => {}
                Step::Submit(pdus) => {
                    let cmd = if pdus == 0 {
                        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..])
                    } else {
                        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], pdus * SEG)
                    };
                    if let Ok(task) = wd.s.submit(wd.now, cmd) {
                        wd.tasks.insert(task.itt(), Tm { pdus, ..Tm::default() });
                        tasks.push((task, task.itt()));
                        wd.flush();
                    }
                }
            }
        }
        wd.recover_primary();
        for round in 0..300 {
            for cid in wd.s.connection_ids() {
                wd.deliver(cid);
                wd.process(cid);
            }
            for i in 0..tasks.len() {
                wd.progress(i);
            }
            let done = tasks.iter().all(|(t, _)| wd.events.iter().any(|e| matches!(e, Event::Complete { task, .. } if task == t)));
            if done && wd.t.values().all(|t| !t.has_output()) {
                break;
            }
            prop_assert!(round < 299, "did not settle: {:?}", wd.events);
        }
        for (task, itt) in &tasks {
            let n = wd.events.iter().filter(|e| matches!(e, Event::Complete { task: t, .. } if t == task)).count();
            prop_assert_eq!(n, 1, "task {:#x}: {:?}", itt, wd.events);
            let outcome = wd.events.iter().find_map(|e| match e {
                Event::Complete { task: t, outcome } if t == task => Some(outcome.clone()),
                _ => None,
            });
            match outcome {
                Some(TaskOutcome::Scsi(r)) => prop_assert!(r.is_good()),
                other => prop_assert!(false, "task {:#x}: {:?}", itt, other),
            }
            let m = wd.tasks[itt];
            prop_assert_eq!(m.received, 1, "command {:#x} received {} times", itt, m.received);
            if m.pdus > 0 {
                let mut parts: Vec<(u32, Vec<u8>)> = wd.events.iter().filter_map(|e| match e {
                    Event::DataIn { task: t, offset, data } if t == task => Some((*offset, data.to_vec())),
                    _ => None,
                }).collect();
                parts.sort();
                let got: Vec<u8> = parts.into_iter().flat_map(|(_, d)| d).collect();
                prop_assert_eq!(got, content(*itt, m.pdus));
            }
        }
        prop_assert_eq!(wd.logins_tsih0, 1, "no session reinstatement");
        prop_assert_eq!(wd.s.tsih(), tsih);
    }
}
