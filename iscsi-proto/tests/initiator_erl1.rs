//! ErrorRecoveryLevel 1 at the initiator (RFC 7143 sections 7.1.4.1,
//! 7.1.4.2, 7.8, 7.9, 11.16), against the scripted target: each test
//! quotes the sentence it checks. The target retains what it sent and
//! answers SNACKs from it (`ScriptedTarget::serve_snack`).

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::error::{ConfigError, ConnectionError, TimerKind};
use iscsi_proto::initiator::{Event, ScsiCommand, Session, SessionConfig, TaskId, TaskOutcome};
use iscsi_proto::login::negotiation::{DigestType, TargetConfig};
use iscsi_proto::testing::{LoginResponder, Pair, ScriptedTarget, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header, Residual};
use iscsi_proto::wire::{Pdu, Serial};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const TUR: [u8; 6] = [0; 6];

fn cfg(level: u8) -> SessionConfig {
    let mut c = SessionConfig::new("iqn.2024-01.test:init")
        .with_target("iqn.2024-01.test:disk")
        .with_error_recovery_level(level);
    c.operational.header_digest = vec![DigestType::Crc32c];
    c.operational.data_digest = vec![DigestType::Crc32c];
    c.operational.max_outstanding_r2t = 4;
    // RFC 7143 section 13.19: at ErrorRecoveryLevel >= 1 more than one
    // outstanding R2T needs DataSequenceInOrder=No.
    c.operational.data_sequence_in_order = false;
    c
}

fn responder(level: u8) -> LoginResponder {
    let mut t = TargetConfig::default();
    t.params.error_recovery_level = level;
    t.params.header_digest = vec![DigestType::Crc32c, DigestType::None];
    t.params.data_digest = vec![DigestType::Crc32c, DigestType::None];
    t.params.max_outstanding_r2t = 4;
    t.params.data_sequence_in_order = false;
    LoginResponder::new(t, None)
}

fn session(ini: u8, tgt: u8) -> Pair {
    let mut p = Pair::new(cfg(ini));
    p.login_with(&mut responder(tgt));
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    p
}

fn erl1() -> Pair {
    let p = session(1, 1);
    assert_eq!(p.session.negotiated().unwrap().error_recovery_level, 1);
    p
}

fn scsi_cmd(pdu: &Pdu) -> w::ScsiCommand {
    match pdu.header {
        Header::ScsiCommand(c) => c,
        h => panic!("expected a SCSI Command, got {:?}", h.opcode()),
    }
}

fn snack(pdu: &Pdu) -> w::SnackRequest {
    match pdu.header {
        Header::SnackRequest(s) => s,
        h => panic!("expected a SNACK, got {:?}", h.opcode()),
    }
}

fn data_in(t: &mut ScriptedTarget, itt: u32, sn: u32, off: u32, status: Option<u8>) -> w::DataIn {
    let status = status.map(|s| w::DataInStatus {
        status: s,
        stat_sn: t.next_stat_sn(),
        residual: Residual::None,
    });
    w::DataIn {
        final_pdu: status.is_some(),
        ack: false,
        lun: 0,
        itt,
        ttt: RESERVED,
        exp_cmd_sn: t.exp_cmd_sn,
        max_cmd_sn: t.max_cmd_sn,
        data_sn: Serial(sn),
        buffer_offset: off,
        status,
    }
}

fn response(t: &mut ScriptedTarget, itt: u32, status: u8, exp_data_sn: u32) -> w::ScsiResponse {
    w::ScsiResponse {
        response: w::ScsiResponseCode::CommandCompleted,
        status,
        itt,
        snack_tag: 0,
        stat_sn: t.next_stat_sn(),
        exp_cmd_sn: t.exp_cmd_sn,
        max_cmd_sn: t.max_cmd_sn,
        exp_data_sn: Serial(exp_data_sn),
        bidi_read_residual: Residual::None,
        residual: Residual::None,
    }
}

fn submit(p: &mut Pair, cmd: ScsiCommand) -> (TaskId, w::ScsiCommand) {
    let task = p.session.submit(p.now, cmd).unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    p.target.ack_cmd(c.cmd_sn);
    (task, c)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn status_of(p: &Pair, t: TaskId) -> iscsi_proto::initiator::ScsiResult {
    match p.outcome(t) {
        Some(TaskOutcome::Scsi(r)) => r.clone(),
        other => panic!("task {t:?}: {other:?}"),
    }
}

fn no_connection_loss(p: &Pair) {
    assert_eq!(p.connects.len(), 1, "reconnected: {:?}", p.events);
    assert!(
        !p.events
            .iter()
            .any(|e| matches!(e, Event::Recovering { .. } | Event::Closed(_))),
        "{:?}",
        p.events
    );
}

fn closed_with(p: &Pair) -> Option<Option<ConnectionError>> {
    p.events.iter().find_map(|e| match e {
        Event::Closed(c) => Some(c.clone()),
        _ => None,
    })
}

/// RFC 7143 section 7.8: "When an initiator receives any iSCSI PDU with a
/// payload digest error, it MUST discard the PDU. If the discarded PDU is
/// an iSCSI data PDU, the initiator MUST do one of the following: a)
/// Request the desired data PDU through SNACK."
#[test]
fn data_digest_error_on_data_in_is_recovered_by_a_data_snack() {
    let mut p = erl1();
    let data = pattern(1536);
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 1536),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, None);
    p.target.send(h0, Bytes::copy_from_slice(&data[..512]));
    let h1 = data_in(&mut p.target, c.itt, 1, 512, None);
    p.target
        .send_corrupt(h1, Bytes::copy_from_slice(&data[512..1024]));
    let h2 = data_in(&mut p.target, c.itt, 2, 1024, Some(0));
    p.target.send(h2, Bytes::copy_from_slice(&data[1024..]));
    p.deliver();
    let s = snack(&p.target.expect());
    assert_eq!(s.snack_type, w::SnackType::DataR2t);
    assert_eq!(s.itt, c.itt, "section 11.16.3: the ITT of the command");
    assert_eq!(s.ttt_or_snack_tag, RESERVED, "section 11.16.4");
    assert_eq!(s.beg_run, Serial(1));
    assert_eq!(s.run_length, 0, "go-back-N: everything from BegRun");
    assert!(p.outcome(task).is_none(), "the data is not complete yet");
    // The Data-In after the lost one carried the status: not acknowledged
    // yet (it comes back with the data).
    assert_eq!(s.exp_stat_sn, h2.status.unwrap().stat_sn);
    assert_eq!(p.target.serve_snack(&s), 2);
    p.deliver();
    assert_eq!(p.completions(task), 1);
    assert!(status_of(&p, task).is_good());
    assert_eq!(p.read_data(task), data);
    no_connection_loss(&p);
}

/// RFC 7143 section 7.9: "When an initiator receives an iSCSI R2T/data PDU
/// with an out of order R2TSN/DataSN ... it means that the initiator must
/// have detected a header or payload digest error on one or more earlier
/// R2T/data PDUs. The initiator MUST address these implied digest errors";
/// "duplicate DataSNs ... it MUST discard the duplicates".
#[test]
fn data_sn_gap_asks_for_the_missing_data_and_drops_duplicates() {
    let mut p = erl1();
    let data = pattern(2048);
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 2048),
    );
    for sn in 0..4u32 {
        let last = sn == 3;
        let h = data_in(&mut p.target, c.itt, sn, sn * 512, last.then_some(0));
        let seg = Bytes::copy_from_slice(&data[sn as usize * 512..(sn as usize + 1) * 512]);
        if sn == 1 {
            p.target.lose(h, seg); // a header digest error on the way
        } else {
            p.target.send(h, seg);
        }
    }
    p.deliver();
    let s = snack(&p.target.expect());
    assert_eq!(
        (s.snack_type, s.beg_run, s.run_length),
        (w::SnackType::DataR2t, Serial(1), 0)
    );
    assert_eq!(p.target.pending(), 0, "one SNACK for the whole gap");
    // The target resends from DataSN 0 (a proactive duplicate included).
    let again = w::SnackRequest {
        beg_run: Serial(0),
        ..s
    };
    assert_eq!(p.target.serve_snack(&again), 4);
    p.deliver();
    assert_eq!(p.completions(task), 1);
    assert_eq!(p.read_data(task), data, "DataSN 0 delivered once, in order");
    no_connection_loss(&p);
}

/// RFC 7143 section 7.9: "If the initiator wants to recover the missing
/// data for a command, it MUST NOT acknowledge the received responses that
/// start from the StatSN of the relevant command, until it has completed
/// receiving all the data PDUs of the command." The SCSI Response's
/// ExpDataSN (section 11.4.8) shows the missing Data-In.
#[test]
fn response_before_its_data_is_held_unacknowledged() {
    let mut p = erl1();
    let data = pattern(1024);
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 1024),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, None);
    p.target.send(h0, Bytes::copy_from_slice(&data[..512]));
    let h1 = data_in(&mut p.target, c.itt, 1, 512, None);
    p.target.lose(h1, Bytes::copy_from_slice(&data[512..]));
    let r = response(&mut p.target, c.itt, 0, 2);
    p.target.send(r, Bytes::new());
    p.deliver();
    let s = snack(&p.target.expect());
    assert_eq!(
        (s.snack_type, s.itt, s.beg_run),
        (w::SnackType::DataR2t, c.itt, Serial(1))
    );
    assert_eq!(s.exp_stat_sn, r.stat_sn, "the response is not acknowledged");
    assert!(p.outcome(task).is_none());
    assert_eq!(p.target.serve_snack(&s), 1);
    p.deliver();
    assert_eq!(p.completions(task), 1);
    assert_eq!(p.read_data(task), data);
    // Acknowledged now: the next command carries ExpStatSN past it.
    let (_, c2) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
    );
    assert_eq!(c2.exp_stat_sn, r.stat_sn.next());
    no_connection_loss(&p);
}

/// RFC 7143 section 7.9: "When an initiator receives an iSCSI status PDU
/// with an out of order StatSN that implies missing responses, it MUST
/// address the one or more missing status PDUs as described in Section
/// 7.8" (a Status SNACK, section 11.16: ITT 0xffffffff).
#[test]
fn stat_sn_gap_is_recovered_by_a_status_snack() {
    let mut p = erl1();
    let (a, ca) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
    );
    let (b, cb) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
    );
    let ra = response(&mut p.target, ca.itt, 0, 0);
    p.target.lose(ra, Bytes::new());
    let rb = response(&mut p.target, cb.itt, 0, 0);
    p.target.send(rb, Bytes::new());
    p.deliver();
    assert_eq!(
        p.completions(b),
        1,
        "status out of order is still delivered"
    );
    assert!(p.outcome(a).is_none());
    let s = snack(&p.target.expect());
    assert_eq!(s.snack_type, w::SnackType::Status);
    assert_eq!(s.itt, RESERVED);
    assert_eq!((s.beg_run, s.run_length), (ra.stat_sn, 1));
    assert_eq!(s.exp_stat_sn, ra.stat_sn);
    assert_eq!(p.target.serve_snack(&s), 1);
    p.deliver();
    assert_eq!(p.completions(a), 1);
    // Duplicates of both responses (a target answering the SNACK twice):
    // discarded, nothing completes twice.
    let both = w::SnackRequest {
        beg_run: ra.stat_sn,
        run_length: 2,
        ..s
    };
    assert_eq!(p.target.serve_snack(&both), 2);
    p.deliver();
    assert_eq!((p.completions(a), p.completions(b)), (1, 1));
    no_connection_loss(&p);
}

/// RFC 7143 section 7.9 with section 11.19.2: a NOP-In (ITT 0xffffffff)
/// carries the next StatSN without advancing it, so it shows the status
/// lost before it ("This helps the initiator detect any missing StatSN(s)
/// and issue a SNACK for the status", section 7.1.4.2).
#[test]
fn nop_in_reveals_a_lost_last_response() {
    let mut p = erl1();
    let (a, ca) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
    );
    let ra = response(&mut p.target, ca.itt, 0, 0);
    p.target.lose(ra, Bytes::new());
    let (exp, max) = (p.target.exp_cmd_sn, p.target.max_cmd_sn);
    p.target.nop_in_update(exp, max);
    p.deliver();
    let s = snack(&p.target.expect());
    assert_eq!(
        (s.snack_type, s.beg_run, s.run_length),
        (w::SnackType::Status, ra.stat_sn, 1)
    );
    p.target.serve_snack(&s);
    p.deliver();
    assert_eq!(p.completions(a), 1);
    no_connection_loss(&p);
}

/// RFC 7143 section 7.8: "If the discarded PDU is a response PDU, the
/// initiator MUST do one of the following: a) Request PDU retransmission
/// with a status SNACK."
#[test]
fn data_digest_error_on_a_response_asks_for_its_status() {
    let mut p = erl1();
    let (a, ca) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
    );
    let ra = response(&mut p.target, ca.itt, 2, 0);
    let sense = [
        0u8, 18, 0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0,
    ];
    p.target.send_corrupt(ra, Bytes::copy_from_slice(&sense));
    p.deliver();
    let s = snack(&p.target.expect());
    assert_eq!(
        (s.snack_type, s.beg_run, s.run_length),
        (w::SnackType::Status, ra.stat_sn, 1)
    );
    assert!(p.outcome(a).is_none());
    p.target.serve_snack(&s);
    p.deliver();
    let r = status_of(&p, a);
    assert_eq!(r.status, 2);
    assert_eq!(
        r.sense.as_deref().map(|s| s[12]),
        Some(0x24),
        "the sense survived"
    );
    no_connection_loss(&p);
}

/// RFC 7143 section 7.9: "an out of order R2TSN ... The initiator MUST
/// address these implied digest errors" (an R2T SNACK: SNACK type 0,
/// section 11.16.1, BegRun an R2TSN); "duplicate R2TSNs (due to proactive
/// retransmission of R2Ts by the target) ... it MUST discard the
/// duplicates".
#[test]
fn r2t_sn_gap_is_recovered_by_an_r2t_snack() {
    let mut p = erl1();
    let data = Bytes::from(pattern(1024));
    let (task, c) = submit(
        &mut p,
        ScsiCommand::write(iscsi_proto::scsi::Lun::ZERO, &WRITE10[..], data.clone()),
    );
    let r2t = |t: &mut ScriptedTarget, sn: u32| w::R2t {
        lun: 0,
        itt: c.itt,
        ttt: 0x100 + sn,
        stat_sn: t.stat_sn,
        exp_cmd_sn: t.exp_cmd_sn,
        max_cmd_sn: t.max_cmd_sn,
        r2t_sn: Serial(sn),
        buffer_offset: sn * 512,
        desired_data_transfer_length: 512,
    };
    let r0 = r2t(&mut p.target, 0);
    p.target.lose(r0, Bytes::new());
    let r1 = r2t(&mut p.target, 1);
    p.target.send(r1, Bytes::new());
    p.deliver();
    let s = snack(&p.target.expect());
    assert_eq!(
        (s.snack_type, s.itt, s.beg_run, s.run_length),
        (w::SnackType::DataR2t, c.itt, Serial(0), 0)
    );
    assert_eq!(
        p.target.pending(),
        0,
        "no Data-Out for an R2T beyond the gap"
    );
    assert_eq!(p.target.serve_snack(&s), 2);
    p.deliver();
    let mut got = Vec::new();
    while let Some(pdu) = p.target.recv() {
        let Header::DataOut(d) = pdu.header else {
            panic!("expected Data-Out, got {:?}", pdu.header.opcode());
        };
        got.push((d.ttt, d.buffer_offset, pdu.data.clone()));
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, 0x100);
    assert_eq!(got[1].0, 0x101);
    assert_eq!(got[0].2, data.slice(..512));
    // A proactive duplicate of R2T 1: discarded.
    p.target.send(r1, Bytes::new());
    p.deliver();
    assert_eq!(p.target.pending(), 0);
    let r = response(&mut p.target, c.itt, 0, 2);
    p.target.send(r, Bytes::new());
    p.deliver();
    assert_eq!(p.completions(task), 1);
    no_connection_loss(&p);
}

/// RFC 7143 section 11.7.2 (A bit): "the target requests positive
/// acknowledgement"; section 11.16: DataACK carries "a copy of the Target
/// Transfer Tag and LUN provided with the SCSI Data-In PDU with the A bit
/// set", ITT 0xffffffff, and BegRun the first DataSN not acknowledged.
#[test]
fn a_bit_is_answered_with_a_data_ack() {
    let mut p = erl1();
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 1024),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, None);
    p.target.send(h0, Bytes::from(vec![1u8; 512]));
    let mut h1 = data_in(&mut p.target, c.itt, 1, 512, Some(0));
    h1.ack = true;
    h1.ttt = 0x4242;
    h1.lun = 0x0001_0000_0000_0000;
    p.target.send(h1, Bytes::from(vec![2u8; 512]));
    p.deliver();
    let s = snack(&p.target.expect());
    assert_eq!(s.snack_type, w::SnackType::DataAck);
    assert_eq!(s.itt, RESERVED);
    assert_eq!(s.ttt_or_snack_tag, 0x4242);
    assert_eq!(s.lun, 0x0001_0000_0000_0000);
    assert_eq!((s.beg_run, s.run_length), (Serial(2), 0));
    assert_eq!(p.completions(task), 1);
}

/// RFC 7143 section 7.8: the target may "reject the SNACK with a Reject
/// PDU with a reason code of 'SNACK reject' in which case ... ii) If the
/// status was already sent ... The initiator in this case MUST wait for
/// the status to be received and then discard it, so as to internally
/// signal the completion with CHECK CONDITION Status and an iSCSI
/// Condition of 'protocol service CRC error'."
#[test]
fn rejected_data_snack_ends_the_command_with_a_crc_error() {
    let mut p = erl1();
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 1024),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, None);
    p.target.send_corrupt(h0, Bytes::from(vec![1u8; 512]));
    let h1 = data_in(&mut p.target, c.itt, 1, 512, None);
    p.target.send(h1, Bytes::from(vec![2u8; 512]));
    let r = response(&mut p.target, c.itt, 0, 2);
    p.target.send(r, Bytes::new());
    p.deliver();
    let s = p.target.expect();
    assert_eq!(snack(&s).snack_type, w::SnackType::DataR2t);
    p.target.reject_snack(&s);
    p.deliver();
    let res = status_of(&p, task);
    assert_eq!(res.status, 2, "CHECK CONDITION");
    let sense = res.sense.expect("sense data");
    assert_eq!((sense[2] & 0x0f, sense[12], sense[13]), (0x0b, 0x47, 0x05));
    assert_eq!(p.completions(task), 1);
    // The held response is acknowledged: no Status SNACK for it later.
    let (_, c2) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
    );
    assert!(c2.exp_stat_sn.follows(r.stat_sn));
    no_connection_loss(&p);
}

/// RFC 7143 section 7.8 (i): "If the status has not already been sent for
/// the command, the target MUST terminate the command with a CHECK
/// CONDITION Status and an iSCSI Condition of 'SNACK rejected'": that
/// status is the command's outcome, even though its data is incomplete.
#[test]
fn rejected_data_snack_then_the_targets_check_condition() {
    let mut p = erl1();
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 1024),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, None);
    p.target.send_corrupt(h0, Bytes::from(vec![1u8; 512]));
    p.deliver();
    let s = p.target.expect();
    p.target.reject_snack(&s);
    let r = response(&mut p.target, c.itt, 2, 1);
    // Sense key ABORTED COMMAND, ASC/ASCQ 0x11/0x13 "SNACK rejected".
    let sense = [
        0u8, 18, 0x70, 0, 0x0b, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x11, 0x13, 0, 0, 0, 0,
    ];
    p.target.send(r, Bytes::copy_from_slice(&sense));
    p.deliver();
    let res = status_of(&p, task);
    assert_eq!(res.status, 2);
    assert_eq!(
        res.sense.as_deref().map(|s| (s[12], s[13])),
        Some((0x11, 0x13))
    );
    no_connection_loss(&p);
}

/// A Status SNACK the target rejects leaves a response lost for good: the
/// session falls back to the ErrorRecoveryLevel 0 path (RFC 7143 section
/// 7.8 b/c: the connection is logged out or dropped).
#[test]
fn rejected_status_snack_falls_back_to_connection_failure() {
    let mut p = erl1();
    let (a, ca) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
    );
    let (_b, cb) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
    );
    let ra = response(&mut p.target, ca.itt, 0, 0);
    p.target.lose(ra, Bytes::new());
    let rb = response(&mut p.target, cb.itt, 0, 0);
    p.target.send(rb, Bytes::new());
    p.deliver();
    let s = p.target.expect();
    assert_eq!(snack(&s).snack_type, w::SnackType::Status);
    p.target.reject_snack(&s);
    p.deliver();
    assert!(
        matches!(closed_with(&p), Some(Some(ConnectionError::Protocol(_)))),
        "{:?}",
        p.events
    );
    assert_eq!(p.completions(a), 1, "every task ends exactly once");
}

/// Bounded retries (`ErrorRecovery::snack_retries`): an unanswered SNACK
/// is sent again after `snack_timeout` (RFC 7143 section 7.1.4.1 b:
/// "Sequence reception timeout ... using the option of a SNACK"); after
/// the last round the connection fails (the ErrorRecoveryLevel 0 path).
#[test]
fn unanswered_snacks_are_retried_then_the_connection_fails() {
    let mut p = erl1();
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 1024),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, None);
    p.target.send_corrupt(h0, Bytes::from(vec![1u8; 512]));
    p.deliver();
    let first = snack(&p.target.expect());
    let timeout = p.session.config().error_recovery.snack_timeout;
    let retries = p.session.config().error_recovery.snack_retries;
    for _ in 0..retries {
        p.advance(timeout);
        assert_eq!(snack(&p.target.expect()), first, "the same SNACK again");
        assert!(closed_with(&p).is_none());
    }
    p.advance(timeout);
    assert_eq!(
        closed_with(&p),
        Some(Some(ConnectionError::TimedOut(TimerKind::Snack)))
    );
    assert_eq!(p.completions(task), 1);
}

/// Progress resets the retry count: a SNACK answered late still counts.
#[test]
fn a_late_answer_before_the_last_round_recovers() {
    let mut p = erl1();
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, Some(0));
    p.target.send_corrupt(h0, Bytes::from(vec![1u8; 512]));
    p.deliver();
    let s = snack(&p.target.expect());
    let timeout = p.session.config().error_recovery.snack_timeout;
    p.advance(timeout);
    let _again = p.target.expect();
    p.target.serve_snack(&s);
    p.deliver();
    assert_eq!(p.completions(task), 1);
    p.advance(timeout * 10);
    assert_eq!(p.target.pending(), 0, "no SNACK once the data is in");
    no_connection_loss(&p);
}

/// RFC 7143 section 13.20: ErrorRecoveryLevel is the lower of both
/// offers; at level 0 a data digest error still ends the connection
/// (section 7.8, escalation to session recovery).
#[test]
fn at_level_0_a_data_digest_error_still_ends_the_connection() {
    let mut p = session(1, 0);
    assert_eq!(p.session.negotiated().unwrap().error_recovery_level, 0);
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, Some(0));
    p.target.send_corrupt(h0, Bytes::from(vec![1u8; 512]));
    p.deliver();
    assert!(matches!(
        closed_with(&p),
        Some(Some(ConnectionError::DigestFailure(_)))
    ));
    assert_eq!(p.completions(task), 1);
}

/// The initiator offers only what it implements (RFC 7143 section 13.20).
#[test]
fn levels_above_two_are_refused_by_the_configuration() {
    let c = cfg(3).with_isid(iscsi_proto::wire::Isid::random([1, 2, 3], 0));
    assert!(matches!(
        Session::new(c, iscsi_proto::time::Instant::from_millis(1_000_000)),
        Err(ConfigError::Invalid(_))
    ));
    let mut c = cfg(1).with_isid(iscsi_proto::wire::Isid::random([1, 2, 3], 0));
    c.error_recovery.snack_timeout = Duration::ZERO;
    assert!(Session::new(c, iscsi_proto::time::Instant::from_millis(1_000_000)).is_err());
}

/// RFC 7143 section 7.8: "When a target or an initiator receives any iSCSI
/// PDU with a header digest error, it MUST either discard the header and
/// all data up to the beginning of a later PDU or close the connection";
/// section 7.1.4.1 c: a "Header digest error, which manifests as a
/// sequence reception timeout or a sequence error", recovered with a
/// SNACK. The later PDU is found when its own header digest checks.
#[test]
fn header_digest_error_discards_the_pdu_and_the_gap_recovers_it() {
    let mut p = erl1();
    let data = pattern(1536);
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 1536),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, None);
    p.target.send(h0, Bytes::copy_from_slice(&data[..512]));
    let h1 = data_in(&mut p.target, c.itt, 1, 512, None);
    p.target
        .send_corrupt_header(h1, Bytes::copy_from_slice(&data[512..1024]), false);
    let h2 = data_in(&mut p.target, c.itt, 2, 1024, Some(0));
    p.target.send(h2, Bytes::copy_from_slice(&data[1024..]));
    p.deliver();
    let s = snack(&p.target.expect());
    assert_eq!(
        (s.snack_type, s.beg_run),
        (w::SnackType::DataR2t, Serial(1))
    );
    p.target.serve_snack(&s);
    p.deliver();
    assert_eq!(p.completions(task), 1);
    assert_eq!(p.read_data(task), data);
    no_connection_loss(&p);
}

/// The last PDU's header is bad: the initiator waits for the next PDU to
/// find where it starts (a NOP-In here), then asks for the lost status.
#[test]
fn header_digest_error_on_the_last_pdu_waits_for_the_next_one() {
    let mut p = erl1();
    let (task, c) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
    );
    let r = response(&mut p.target, c.itt, 2, 0);
    let sense = [
        0u8, 18, 0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0,
    ];
    p.target
        .send_corrupt_header(r, Bytes::copy_from_slice(&sense), false);
    p.deliver();
    assert!(p.outcome(task).is_none());
    assert_eq!(p.target.pending(), 0);
    let (exp, max) = (p.target.exp_cmd_sn, p.target.max_cmd_sn);
    p.target.nop_in_update(exp, max);
    p.deliver();
    let s = snack(&p.target.expect());
    assert_eq!(
        (s.snack_type, s.beg_run, s.run_length),
        (w::SnackType::Status, r.stat_sn, 1)
    );
    p.target.serve_snack(&s);
    p.deliver();
    assert_eq!(status_of(&p, task).status, 2);
    no_connection_loss(&p);
}

/// When the header that follows does not check either (here the bad
/// header's DataSegmentLength itself is wrong), where a later PDU begins
/// cannot be "reliably ascertained": the connection closes (section 7.8).
#[test]
fn header_digest_error_with_a_wrong_length_closes_the_connection() {
    let mut p = erl1();
    let (task, c) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 1024),
    );
    let h0 = data_in(&mut p.target, c.itt, 0, 0, None);
    p.target
        .send_corrupt_header(h0, Bytes::from(vec![1u8; 512]), true);
    let h1 = data_in(&mut p.target, c.itt, 1, 512, Some(0));
    p.target.send(h1, Bytes::from(vec![2u8; 512]));
    p.target.nop_in_update(Serial(1), Serial(40));
    p.deliver();
    assert!(matches!(
        closed_with(&p),
        Some(Some(ConnectionError::DigestFailure(_)))
    ));
    assert_eq!(p.completions(task), 1);
}
