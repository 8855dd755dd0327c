//! Property tests of the initiator session (issue 4):
//!
//! - a reference model of the RFC 7143 section 4.2.2.1 CmdSN window and
//!   the section 4.2.2.2 StatSN acknowledgement, checked against the real
//!   session over random sequences of submissions, responses, pings and
//!   window updates (stale and invalid ones included), starting near 2^32
//!   so that every sequence number wraps;
//! - the same events for any cut of the byte stream.

use std::collections::HashMap;

use bytes::Bytes;
use iscsi_proto::initiator::{Event, ScsiCommand, SessionConfig, TaskId, TaskOutcome};
use iscsi_proto::testing::{LoginResponder, Pair, RESERVED};
use iscsi_proto::wire::pdu::{Header, Residual};
use iscsi_proto::wire::Serial;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Submit a command (read when the flag is set).
    Submit(bool),
    /// The target answers the n-th outstanding command (Data-In with
    /// status when the flag is set, else SCSI Response).
    Respond(usize, bool),
    /// A target ping (ITT 0xffffffff).
    TargetPing,
    /// An initiator ping.
    InitiatorPing,
    /// A window update: new window size, and a stale/invalid variant.
    Window(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Submit),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(i, b)| Op::Respond(i, b)),
        1 => Just(Op::TargetPing),
        1 => Just(Op::InitiatorPing),
        2 => (0u8..8, any::<u8>()).prop_map(|(s, v)| Op::Window(s, v)),
    ]
}

/// The reference model of the initiator's window (RFC 7143 4.2.2.1).
#[derive(Debug)]
struct WindowModel {
    exp: Serial,
    max: Serial,
}

impl WindowModel {
    fn update(&mut self, exp: Serial, max: Serial, cmd_sn: Serial) {
        // "If the PDU MaxCmdSN is less than the PDU ExpCmdSN-1 ..., they
        // are both ignored."
        if max.precedes(exp.minus(1)) {
            return;
        }
        // An ExpCmdSN beyond what was sent acknowledges nothing real.
        if exp.follows(cmd_sn) {
            return;
        }
        if max.follows(self.max) {
            self.max = max;
        }
        if exp.follows(self.exp) {
            self.exp = exp;
        }
    }
}

struct Harness {
    p: Pair,
    model: WindowModel,
    /// Every (ExpCmdSN, MaxCmdSN) the target put on the wire, in order,
    /// not yet delivered.
    sent_windows: Vec<(Serial, Serial)>,
    /// The next CmdSN the target expects.
    target_next: Serial,
    /// Commands received and not answered: (itt, read).
    outstanding: Vec<(u32, bool)>,
    /// Initiator pings received and not answered.
    pings: Vec<iscsi_proto::wire::pdu::NopOut>,
    submitted: Vec<TaskId>,
    ttt: u32,
}

impl Harness {
    fn target_send_window(&mut self) {
        self.sent_windows
            .push((self.p.target.exp_cmd_sn, self.p.target.max_cmd_sn));
    }

    /// Delivers the target's output, then checks the model and takes in
    /// what the initiator sent.
    fn step(&mut self) -> Result<(), TestCaseError> {
        self.p.deliver();
        let cmd_sn_before = self.p.session.window().cmd_sn();
        for (e, m) in self.sent_windows.drain(..) {
            self.model.update(e, m, cmd_sn_before);
        }
        self.receive()?;
        Ok(())
    }

    fn receive(&mut self) -> Result<(), TestCaseError> {
        let mut got = Vec::new();
        while let Some(pdu) = self.p.target.recv() {
            got.push(pdu);
        }
        for pdu in got {
            match pdu.header {
                Header::ScsiCommand(c) => {
                    prop_assert!(!c.immediate);
                    // Invariant: non-immediate commands only inside the
                    // window the initiator had been given.
                    prop_assert!(
                        c.cmd_sn.in_window(self.model.exp, self.model.max),
                        "CmdSN {:?} outside [{:?}, {:?}]",
                        c.cmd_sn,
                        self.model.exp,
                        self.model.max
                    );
                    // Consecutive numbering, no gaps or reuse.
                    prop_assert_eq!(c.cmd_sn, self.target_next);
                    self.target_next = self.target_next.next();
                    // ExpStatSN acknowledges every status delivered.
                    prop_assert_eq!(c.exp_stat_sn, self.p.target.stat_sn);
                    self.outstanding.push((c.itt, c.read));
                }
                Header::NopOut(n) => {
                    prop_assert!(n.immediate);
                    prop_assert_eq!(n.exp_stat_sn, self.p.target.stat_sn);
                    if n.itt != RESERVED {
                        self.pings.push(n);
                    }
                }
                h => prop_assert!(false, "unexpected {:?}", h.opcode()),
            }
        }
        // The target acknowledges everything it received.
        self.p.target.exp_cmd_sn = self.target_next;
        if self.p.target.max_cmd_sn.precedes(self.target_next.minus(1)) {
            self.p.target.max_cmd_sn = self.target_next.minus(1);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let w = self.p.session.window();
        prop_assert_eq!(w.exp_cmd_sn(), self.model.exp);
        prop_assert_eq!(w.max_cmd_sn(), self.model.max);
        prop_assert_eq!(w.cmd_sn(), self.target_next);
        // ExpStatSN = highest contiguous StatSN + 1; target pings never
        // consume a StatSN.
        prop_assert_eq!(self.p.session.exp_stat_sn(), self.p.target.stat_sn);
        prop_assert!(self.p.session.is_logged_in());
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Submit(read) => {
                let cmd = if read {
                    ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &[0x28u8; 10][..], 4)
                } else {
                    ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..])
                };
                let t = self.p.session.submit(self.p.now, cmd).unwrap();
                self.submitted.push(t);
            }
            Op::Respond(i, data_in) => {
                if !self.outstanding.is_empty() {
                    let (itt, read) = self.outstanding.remove(i % self.outstanding.len());
                    self.target_send_window();
                    if read && data_in {
                        self.p
                            .target
                            .data_in(itt, 0, 0, b"data", Some((0, Residual::None)));
                    } else {
                        self.p.target.scsi_response(itt, 0, Residual::None, None);
                    }
                } else if let Some(n) = self.pings.pop() {
                    self.target_send_window();
                    self.p.target.nop_in_reply(&n, Bytes::new());
                }
            }
            Op::TargetPing => {
                self.ttt = self.ttt.wrapping_add(1) & 0x7fff_ffff;
                self.target_send_window();
                self.p.target.nop_in_ping(self.ttt, 0, b"");
            }
            Op::InitiatorPing => {
                let t = self.p.session.nop_ping(self.p.now, Bytes::new()).unwrap();
                self.submitted.push(t);
            }
            Op::Window(size, variant) => {
                let exp = self.target_next;
                let max = exp.plus(u32::from(size)).minus(1);
                if max.follows(self.p.target.max_cmd_sn) {
                    self.p.target.max_cmd_sn = max;
                }
                let (e, m) = match variant % 4 {
                    // Stale: an older ExpCmdSN and a lower MaxCmdSN.
                    0 => (exp.minus(u32::from(variant % 3)), max.minus(3)),
                    // Invalid: MaxCmdSN < ExpCmdSN - 1.
                    1 => (exp, exp.minus(2 + u32::from(variant % 5))),
                    _ => (exp, self.p.target.max_cmd_sn),
                };
                self.sent_windows.push((e, m));
                self.p.target.nop_in_update(e, m);
            }
        }
        self.p.flush();
        self.receive()?;
        self.step()?;
        self.check()
    }

    /// Opens the window, answers everything, and checks every task ended
    /// exactly once.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..1000 {
            let exp = self.target_next;
            self.p.target.max_cmd_sn = exp.plus(64);
            self.sent_windows.push((exp, exp.plus(64)));
            self.p.target.nop_in_update(exp, exp.plus(64));
            for (itt, _) in std::mem::take(&mut self.outstanding) {
                self.target_send_window();
                self.p.target.scsi_response(itt, 0, Residual::None, None);
            }
            for n in std::mem::take(&mut self.pings) {
                self.target_send_window();
                self.p.target.nop_in_reply(&n, Bytes::new());
            }
            self.step()?;
            self.check()?;
            if self.outstanding.is_empty()
                && self.pings.is_empty()
                && self.p.session.tasks_in_flight() == 0
            {
                break;
            }
        }
        prop_assert_eq!(self.p.session.tasks_in_flight(), 0);
        let mut count: HashMap<TaskId, usize> = HashMap::new();
        for e in &self.p.events {
            if let Event::Complete { task, outcome } = e {
                prop_assert!(!matches!(outcome, TaskOutcome::Failed(_)), "{:?}", outcome);
                *count.entry(*task).or_default() += 1;
            }
        }
        for t in &self.submitted {
            prop_assert_eq!(count.get(t).copied(), Some(1), "task {:?}", t);
        }
        prop_assert_eq!(count.len(), self.submitted.len());
        Ok(())
    }
}

fn run_model(
    cmd_sn: u32,
    stat_sn: u32,
    window: u32,
    cuts: Vec<usize>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let cfg = SessionConfig::new("iqn.2024-01.test:init")
        .with_target("iqn.2024-01.test:disk")
        .with_initial_cmd_sn(cmd_sn);
    let mut p = Pair::new(cfg);
    p.target.stat_sn = Serial(stat_sn);
    p.cuts = cuts;
    let mut r = LoginResponder::plain();
    r.window = (0, window);
    p.login_with(&mut r);
    prop_assert!(p.session.is_logged_in());
    let model = WindowModel {
        exp: p.session.window().exp_cmd_sn(),
        max: p.session.window().max_cmd_sn(),
    };
    prop_assert_eq!(model.exp, Serial(cmd_sn));
    let mut h = Harness {
        target_next: Serial(cmd_sn),
        p,
        model,
        sent_windows: Vec::new(),
        outstanding: Vec::new(),
        pings: Vec::new(),
        submitted: Vec::new(),
        ttt: 0,
    };
    h.check()?;
    for op in ops {
        h.apply(op)?;
    }
    h.drain()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The session against the reference model, sequence numbers starting
    /// within 64 of 2^32 so they wrap during the run.
    #[test]
    fn session_matches_reference_model(
        cmd_back in 0u32..64,
        stat_back in 0u32..64,
        window in 0u32..6,
        cuts in prop::collection::vec(1usize..120, 0..8),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run_model(
            0u32.wrapping_sub(cmd_back),
            0u32.wrapping_sub(stat_back),
            window,
            cuts,
            ops,
        )?;
    }
}

#[test]
fn model_smoke_wraps() {
    let ops = (0..40)
        .map(|i| match i % 5 {
            0 | 1 => Op::Submit(i % 2 == 0),
            2 => Op::Window(3, 2),
            3 => Op::Respond(i, true),
            _ => Op::TargetPing,
        })
        .collect();
    run_model(u32::MAX - 3, u32::MAX - 1, 2, vec![5, 17], ops).unwrap();
}

/// A fixed exchange: login, a read with three Data-Ins, a target ping in
/// between, a ping, sense data; returns the events.
fn scenario(cuts: Vec<usize>) -> Vec<Event> {
    let cfg = SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk");
    let mut p = Pair::new(cfg);
    p.cuts = cuts;
    p.login();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &[0x28u8; 10][..], 3000),
        )
        .unwrap();
    let w = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &[0x2au8; 10][..],
                Bytes::from(vec![9u8; 5000]),
            ),
        )
        .unwrap();
    p.flush();
    let Header::ScsiCommand(c) = p.target.expect().header else {
        panic!()
    };
    let Header::ScsiCommand(wc) = p.target.expect().header else {
        panic!()
    };
    while p.target.recv().is_some() {}
    p.target.data_in(c.itt, 0, 0, &[1u8; 1000], None);
    p.target.nop_in_ping(5, 0, b"abc");
    p.target.data_in(c.itt, 1, 1000, &[2u8; 1000], None);
    p.target.r2t(wc.itt, 0x42, 0, 4096, 904);
    p.target
        .data_in(c.itt, 2, 2000, &[3u8; 1000], Some((0, Residual::None)));
    p.deliver();
    while p.target.recv().is_some() {}
    let sense = [
        0x70u8, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0,
    ];
    p.target
        .scsi_response(wc.itt, 2, Residual::None, Some(&sense));
    let _ = t;
    let _ = w;
    p.deliver();
    p.take_events()
}

proptest! {
    /// Same events whatever the cut of the byte stream.
    #[test]
    fn same_events_for_any_cut(cuts in prop::collection::vec(1usize..200, 1..16)) {
        let reference = scenario(Vec::new());
        prop_assert_eq!(scenario(cuts), reference);
    }
}
