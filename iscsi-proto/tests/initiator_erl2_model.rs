//! ErrorRecoveryLevel 2 under random connection kills (RFC 7143 sections
//! 7.1.4.3, 7.2, 11.5.1): reads and TEST UNIT READYs against a target
//! model that keeps its tasks across connections (Time2Retain), answers
//! TASK REASSIGN ("Function complete" for a task it has, "Task does not
//! exist" for one it never received), resends Data-In from ExpDataSN and
//! status it had sent. The connection is killed at random points, losing
//! whatever was in flight either way.
//!
//! Oracle: every task ends exactly once, good, with all its data; the
//! target receives each command exactly once (none is executed twice, none
//! is sent as a new command twice); the session is never reinstated
//! (connection recovery suffices: no login with TSIH 0 after the first)
//! and keeps its TSIH.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::initiator::{Event, ScsiCommand, SessionConfig, TaskId, TaskOutcome};
use iscsi_proto::login::negotiation::TargetConfig;
use iscsi_proto::testing::{LoginResponder, Pair};
use iscsi_proto::wire::pdu::{self as w, Header, Residual};
use iscsi_proto::wire::Serial;
use proptest::prelude::*;

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const TUR: [u8; 6] = [0; 6];
const SEG: u32 = 4;

fn responder(exp_cmd_sn: Option<(Serial, Serial)>) -> LoginResponder {
    let mut t = TargetConfig::default();
    t.params.error_recovery_level = 2;
    let mut r = LoginResponder::new(t, None);
    if let Some((login_cmd_sn, exp)) = exp_cmd_sn {
        r.window = (exp.0.wrapping_sub(login_cmd_sn.0), 32);
    }
    r
}

/// The target's view of one command.
#[derive(Debug, Clone, Copy)]
struct TaskModel {
    /// Data-In PDUs of the read (0: TEST UNIT READY).
    pdus: u32,
    /// Times the SCSI Command PDU arrived.
    received: u32,
    /// Next DataSN to send.
    next: u32,
    /// Status sent (its PDU may still be lost by a kill).
    status_sent: bool,
}

struct Model {
    tasks: BTreeMap<u32, TaskModel>,
    order: Vec<u32>,
    /// CmdSNs received ahead of ExpCmdSN (a hole before them).
    ahead: BTreeSet<u32>,
}

fn content(itt: u32, pdus: u32) -> Vec<u8> {
    (0..pdus * SEG)
        .map(|i| (i as u8) ^ (itt as u8).wrapping_mul(13))
        .collect()
}

impl Model {
    /// The target reads what the initiator sent.
    fn receive(&mut self, p: &mut Pair) {
        while let Some(pdu) = p.target.recv() {
            match pdu.header {
                Header::ScsiCommand(c) => {
                    let t = self.tasks.get_mut(&c.itt).expect("known command");
                    t.received += 1;
                    // RFC 7143 section 4.2.2.1: ExpCmdSN advances over
                    // contiguous CmdSNs only.
                    self.ahead.insert(c.cmd_sn.0);
                    while self.ahead.remove(&p.target.exp_cmd_sn.0) {
                        p.target.exp_cmd_sn = p.target.exp_cmd_sn.next();
                        p.target.max_cmd_sn = p.target.max_cmd_sn.next();
                    }
                }
                Header::TaskMgmtRequest(r) => {
                    assert_eq!(r.function, w::TmfFunction::TaskReassign);
                    let t = self
                        .tasks
                        .get_mut(&r.referenced_task_tag)
                        .expect("reassign of a known task");
                    let resp = if t.received > 0 {
                        // RFC 7143 section 11.5.6: resend from ExpDataSN.
                        t.next = r.exp_data_sn.0;
                        t.status_sent = false;
                        w::TmfResponse::FunctionComplete
                    } else {
                        w::TmfResponse::TaskDoesNotExist
                    };
                    p.target.tmf_response(r.itt, resp);
                }
                h => panic!("unexpected {:?}", h.opcode()),
            }
        }
    }

    /// The target sends the next PDU of task `i`, if it has one.
    fn progress(&mut self, p: &mut Pair, i: usize) {
        let Some(itt) = self.order.get(i % self.order.len().max(1)).copied() else {
            return;
        };
        let Some(t) = self.tasks.get_mut(&itt) else {
            return;
        };
        if t.received == 0 || t.status_sent {
            return;
        }
        if t.pdus == 0 {
            t.status_sent = true;
            p.target.scsi_response(itt, 0, Residual::None, None);
            return;
        }
        let data = content(itt, t.pdus);
        let k = t.next;
        let last = k + 1 == t.pdus;
        let seg = &data[(k * SEG) as usize..((k + 1) * SEG) as usize];
        p.target
            .data_in(itt, k, k * SEG, seg, last.then_some((0, Residual::None)));
        t.next += 1;
        t.status_sent = last;
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// The target sends one PDU of a task.
    Progress(usize),
    /// Bytes move both ways and the target reads them.
    Deliver,
    /// The connection dies: what is in flight is lost.
    Kill,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0usize..8).prop_map(Step::Progress),
        3 => Just(Step::Deliver),
        1 => Just(Step::Kill),
    ]
}

/// Kills the connection and recovers it (the target keeps its tasks).
fn kill(p: &mut Pair, model: &mut Model) {
    // In flight both ways: lost.
    let _ = p.target.take_output();
    while p.target.recv().is_some() {}
    p.session.handle_closed(p.now);
    p.flush();
    let after = p
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Recovering { after, .. } => Some(*after),
            _ => None,
        })
        .expect("recovering");
    let connects = p.connects.len();
    p.advance(after);
    assert_eq!(p.connects.len(), connects + 1);
    let login_cmd_sn = p.session.window().cmd_sn();
    let exp = p.target.exp_cmd_sn;
    p.login_with(&mut responder(Some((login_cmd_sn, exp))));
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    model.receive(p);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn connection_kills_never_lose_or_repeat_a_command(
        reads in proptest::collection::vec(0u32..4, 1..6),
        flush_after in 0usize..6,
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let cfg = SessionConfig::new("iqn.2024-01.test:init")
            .with_target("iqn.2024-01.test:disk")
            .with_error_recovery_level(2);
        let mut p = Pair::new(cfg);
        p.login_with(&mut responder(None));
        prop_assert!(p.session.is_logged_in());
        let tsih = p.session.tsih();
        let mut model = Model { tasks: BTreeMap::new(), order: Vec::new(), ahead: BTreeSet::new() };
        let mut tasks: Vec<(TaskId, u32)> = Vec::new();
        let mut kills = 0;
        for (n, pdus) in reads.iter().enumerate() {
            let cmd = if *pdus == 0 {
                ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..])
            } else {
                ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], pdus * SEG)
            };
            let task = p.session.submit(p.now, cmd).unwrap();
            let itt = task.itt();
            model.tasks.insert(itt, TaskModel { pdus: *pdus, received: 0, next: 0, status_sent: false });
            model.order.push(itt);
            tasks.push((task, itt));
            // Some commands stay queued on the connection (CmdSN taken,
            // not sent) when a kill comes first.
            if n < flush_after {
                p.flush();
            }
        }
        for s in steps {
            match s {
                Step::Progress(i) => model.progress(&mut p, i),
                Step::Deliver => {
                    p.deliver();
                    model.receive(&mut p);
                }
                Step::Kill if kills < 4 => {
                    kills += 1;
                    kill(&mut p, &mut model);
                }
                Step::Kill => {}
            }
        }
        // Drain: everything moves until every task is done.
        for round in 0..200 {
            p.deliver();
            model.receive(&mut p);
            for i in 0..model.order.len() {
                model.progress(&mut p, i);
            }
            if tasks.iter().all(|(t, _)| p.completions(*t) == 1) && !p.target.has_output() {
                break;
            }
            prop_assert!(round < 199, "did not settle: {:?}", p.events);
        }
        for (task, itt) in &tasks {
            prop_assert_eq!(p.completions(*task), 1, "task {:#x}: {:?}", itt, p.events);
            match p.outcome(*task) {
                Some(TaskOutcome::Scsi(r)) => prop_assert!(r.is_good()),
                other => prop_assert!(false, "task {:#x}: {:?}", itt, other),
            }
            let m = model.tasks[itt];
            prop_assert_eq!(m.received, 1, "command {:#x} received {} times", itt, m.received);
            if m.pdus > 0 {
                prop_assert_eq!(p.read_data(*task), content(*itt, m.pdus));
            }
        }
        let reinstated = p.target.log.iter().skip(1).any(|pdu| matches!(pdu.header, Header::LoginRequest(l) if l.tsih == 0));
        prop_assert!(!reinstated, "session reinstatement where connection recovery suffices");
        prop_assert_eq!(p.session.tsih(), tsih);
        let _ = (Bytes::new(), Duration::ZERO);
    }
}
