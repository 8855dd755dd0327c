//! ErrorRecoveryLevel 1 under random loss (RFC 7143 sections 7.8, 7.9,
//! 11.16): reads whose Data-In and responses are interleaved at random,
//! with data digest errors, header digest errors and lost PDUs at random
//! first transmissions. The scripted target answers every SNACK
//! from what it retained. Oracle: every task ends exactly once, with all
//! its data, in order; no command is sent twice; the connection is never
//! dropped (recovery stays within the command and the connection).

use bytes::Bytes;
use iscsi_proto::initiator::{Event, ScsiCommand, SessionConfig, TaskId, TaskOutcome};
use iscsi_proto::login::negotiation::{DigestType, TargetConfig};
use iscsi_proto::testing::{LoginResponder, Pair, ScriptedTarget, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header, Residual};
use iscsi_proto::wire::Serial;
use proptest::prelude::*;

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const SEG: usize = 512;

fn erl1_pair() -> Pair {
    let mut c = SessionConfig::new("iqn.2024-01.test:init")
        .with_target("iqn.2024-01.test:disk")
        .with_error_recovery_level(1);
    c.operational.header_digest = vec![DigestType::Crc32c];
    c.operational.data_digest = vec![DigestType::Crc32c];
    let mut t = TargetConfig::default();
    t.params.error_recovery_level = 1;
    t.params.header_digest = vec![DigestType::Crc32c];
    t.params.data_digest = vec![DigestType::Crc32c];
    let mut p = Pair::new(c);
    p.login_with(&mut LoginResponder::new(t, None));
    assert!(p.session.is_logged_in());
    p
}

/// One read as the target plays it.
#[derive(Debug, Clone)]
struct Plan {
    /// Data-In PDUs (512 bytes each).
    pdus: u32,
    /// Status in a separate SCSI Response (else in the last Data-In).
    separate: bool,
    /// A bit on this Data-In, if any.
    ack_at: Option<u32>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (1u32..5, any::<bool>(), proptest::option::of(0u32..5)).prop_map(|(pdus, separate, ack)| Plan {
        pdus,
        separate,
        ack_at: ack.filter(|a| *a < pdus),
    })
}

fn content(task: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ task as u8)
        .collect()
}

/// What happens to a PDU's first transmission.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Sent,
    /// Data digest error (a PDU without data is lost instead).
    Corrupt,
    /// Lost: a header digest error discarded it (RFC 7143 section 7.9).
    Lost,
    /// Header digest error on the wire (the initiator finds the next PDU).
    BadHeader,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Sent),
        2 => Just(Fate::Corrupt),
        2 => Just(Fate::Lost),
        2 => Just(Fate::BadHeader)
    ]
}

/// Puts a PDU on the wire (or not) as `f` says; returns whether the PDU
/// on the wire now ends with a bad header. Two bad headers in a row are
/// not generated: the second hides where the first one's successor
/// starts, and the connection must close then (RFC 7143 section 7.8; see
/// `header_digest_error_with_a_wrong_length_closes_the_connection`).
fn emit(
    t: &mut ScriptedTarget,
    h: impl Into<Header>,
    data: Bytes,
    f: Fate,
    last_bad: bool,
) -> bool {
    match f {
        Fate::Sent => t.send(h, data),
        Fate::Corrupt if !data.is_empty() => t.send_corrupt(h, data),
        Fate::Corrupt | Fate::Lost => {
            t.lose(h, data);
            return last_bad;
        }
        Fate::BadHeader if last_bad => t.send(h, data),
        Fate::BadHeader => {
            t.send_corrupt_header(h, data, false);
            return true;
        }
    }
    false
}

/// Serves every SNACK the initiator sent until nothing moves.
fn settle(p: &mut Pair) {
    for _ in 0..64 {
        p.deliver();
        let mut served = 0;
        while let Some(pdu) = p.target.recv() {
            match pdu.header {
                Header::SnackRequest(s) if s.snack_type != w::SnackType::DataAck => {
                    served += p.target.serve_snack(&s);
                }
                Header::SnackRequest(_) => {}
                h => panic!("unexpected {:?}", h.opcode()),
            }
        }
        if served == 0 && !p.target.has_output() {
            return;
        }
    }
    panic!("recovery did not settle");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn every_read_ends_once_with_its_data(
        plans in proptest::collection::vec(plan(), 1..6),
        order in proptest::collection::vec(0usize..6, 0..40),
        fates in proptest::collection::vec(fate(), 40),
    ) {
        let mut p = erl1_pair();
        let mut tasks: Vec<(TaskId, u32)> = Vec::new();
        for pl in &plans {
            let len = pl.pdus as usize * SEG;
            let task = p.session.submit(p.now, ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], len as u32)).unwrap();
            p.flush();
            let Header::ScsiCommand(c) = p.target.expect().header else { panic!("command") };
            p.target.ack_cmd(c.cmd_sn);
            tasks.push((task, c.itt));
        }
        // Each task's PDUs in order; tasks interleaved as `order` says.
        let mut next: Vec<u32> = vec![0; plans.len()];
        let total = |pl: &Plan| pl.pdus + u32::from(pl.separate);
        let mut picks = order.iter().copied().chain((0..plans.len()).cycle().take(64));
        let mut fates = fates.iter().copied().chain(std::iter::repeat(Fate::Sent));
        let mut last_bad = false;
        while next.iter().zip(&plans).any(|(n, pl)| *n < total(pl)) {
            let Some(i) = picks.next().map(|i| i % plans.len()) else { break };
            let pl = &plans[i];
            if next[i] >= total(pl) { continue; }
            let k = next[i];
            next[i] += 1;
            let itt = tasks[i].1;
            let f = fates.next().unwrap_or(Fate::Sent);
            if k < pl.pdus {
                let last = k + 1 == pl.pdus && !pl.separate;
                let data = content(i, pl.pdus as usize * SEG);
                let seg = Bytes::copy_from_slice(&data[k as usize * SEG..(k as usize + 1) * SEG]);
                let status = last.then(|| w::DataInStatus { status: 0, stat_sn: p.target.next_stat_sn(), residual: Residual::None });
                let ack = pl.ack_at == Some(k);
                let h = w::DataIn {
                    final_pdu: last, ack, lun: 0, itt,
                    ttt: if ack { 0x1000 + k } else { RESERVED },
                    exp_cmd_sn: p.target.exp_cmd_sn, max_cmd_sn: p.target.max_cmd_sn,
                    data_sn: Serial(k), buffer_offset: k * SEG as u32, status,
                };
                last_bad = emit(&mut p.target, h, seg, f, last_bad);
            } else {
                let h = w::ScsiResponse {
                    response: w::ScsiResponseCode::CommandCompleted, status: 0, itt, snack_tag: 0,
                    stat_sn: p.target.next_stat_sn(), exp_cmd_sn: p.target.exp_cmd_sn,
                    max_cmd_sn: p.target.max_cmd_sn, exp_data_sn: Serial(pl.pdus),
                    bidi_read_residual: Residual::None, residual: Residual::None,
                };
                last_bad = emit(&mut p.target, h, Bytes::new(), f, last_bad);
            }
        }
        // A NOP-In with the next StatSN shows any status lost at the end
        // (RFC 7143 section 7.1.4.2).
        let (exp, max) = (p.target.exp_cmd_sn, p.target.max_cmd_sn);
        p.target.nop_in_update(exp, max);
        settle(&mut p);
        for (i, (task, itt)) in tasks.iter().enumerate() {
            prop_assert_eq!(p.completions(*task), 1, "task {} ({:#x}) events {:?}", i, itt, p.events);
            match p.outcome(*task) {
                Some(TaskOutcome::Scsi(r)) => prop_assert!(r.is_good()),
                other => prop_assert!(false, "task {}: {:?}", i, other),
            }
            prop_assert_eq!(p.read_data(*task), content(i, plans[i].pdus as usize * SEG));
            let sent = p.target.log.iter().filter(|pdu| matches!(pdu.header, Header::ScsiCommand(c) if c.itt == *itt)).count();
            prop_assert_eq!(sent, 1, "no command sent twice");
        }
        prop_assert_eq!(p.connects.len(), 1);
        let lost = p.events.iter().any(|e| matches!(e, Event::Recovering { .. } | Event::Closed(_)));
        prop_assert!(!lost, "connection recovery where SNACK suffices: {:?}", p.events);
    }
}
