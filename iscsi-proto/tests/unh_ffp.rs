//! The UNH-IOL "Full Feature Phase Test Suite for iSCSI Initiators"
//! (v3.1), for the tests no other file of `iscsi-proto/tests` already
//! covers: command numbering, immediate delivery, window sizes, ExpStatSN,
//! the A bit at ErrorRecoveryLevel 0, Data-In length, parallel writes and
//! SCSI Command PDU fields. See `conformance/COVERAGE.md`.

use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, ProtocolError};
use iscsi_proto::initiator::{Event, ScsiCommand, SessionConfig, TaskId, TaskOutcome};
use iscsi_proto::login::negotiation::TargetConfig;
use iscsi_proto::testing::{LoginResponder, Pair, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header, Residual, TaskAttr};
use iscsi_proto::wire::{Pdu, Serial, WireError};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const TUR: [u8; 6] = [0; 6];

fn cfg() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:unh-init").with_target("iqn.2024-01.test:unh-disk")
}

fn logged_in_with(cfg: SessionConfig, mut r: LoginResponder) -> Pair {
    let mut p = Pair::new(cfg);
    p.login_with(&mut r);
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    p
}

/// Logged in with a target window of `window` commands.
fn logged_in_window(window: u32) -> Pair {
    let mut r = LoginResponder::plain();
    r.window = (0, window);
    logged_in_with(cfg(), r)
}

fn plain() -> Pair {
    logged_in_with(cfg(), LoginResponder::plain())
}

fn scsi_cmd(pdu: &Pdu) -> w::ScsiCommand {
    match pdu.header {
        Header::ScsiCommand(c) => c,
        h => panic!("expected a SCSI Command, got {:?}", h.opcode()),
    }
}

fn data_out(pdu: &Pdu) -> w::DataOut {
    match pdu.header {
        Header::DataOut(d) => d,
        h => panic!("expected a Data-Out, got {:?}", h.opcode()),
    }
}

fn closed_with(p: &Pair) -> Option<ConnectionError> {
    p.events.iter().find_map(|e| match e {
        Event::Closed(c) => c.clone(),
        _ => None,
    })
}

fn good(p: &Pair, t: TaskId) -> iscsi_proto::initiator::ScsiResult {
    match p.outcome(t) {
        Some(TaskOutcome::Scsi(r)) => r.clone(),
        other => panic!("task {t:?}: {other:?}"),
    }
}

fn submit_tur(p: &mut Pair) -> TaskId {
    p.session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap()
}

/// Drains every SCSI Command the initiator sent so far.
fn sent_commands(p: &mut Pair) -> Vec<w::ScsiCommand> {
    let mut v = Vec::new();
    while let Some(pdu) = p.target.recv() {
        v.push(scsi_cmd(&pdu));
    }
    v
}

// ---------------------------------------------------------------------
// Test #1 and #2: command numbering and immediate delivery
// ---------------------------------------------------------------------

/// UNH #1.1. RFC 7143 section 4.2.2.1: CmdSN "is incremented by 1 for
/// every non-immediate command"; the first one after login carries the
/// login's CmdSN.
#[test]
fn unh_ffp_1_1_cmd_sn_increments_per_non_immediate_command() {
    let mut p = plain();
    let login_cmd_sn = match p.target.log[0].header {
        Header::LoginRequest(r) => r.cmd_sn,
        _ => panic!("first PDU is the Login Request"),
    };
    for _ in 0..5 {
        submit_tur(&mut p);
    }
    p.flush();
    let cmds = sent_commands(&mut p);
    assert_eq!(cmds.len(), 5);
    for (i, c) in cmds.iter().enumerate() {
        assert!(!c.immediate);
        assert_eq!(c.cmd_sn, login_cmd_sn.plus(i as u32));
    }
}

/// UNH #2.1. RFC 7143 section 4.2.2.1: an immediate PDU (I=1) carries the
/// current CmdSN and does not advance it; the next non-immediate command
/// gets that same CmdSN.
#[test]
fn unh_ffp_2_1_immediate_pdu_does_not_advance_cmd_sn() {
    let mut p = plain();
    submit_tur(&mut p);
    p.flush();
    let first = scsi_cmd(&p.target.expect());
    p.session.nop_ping(p.now, Bytes::new()).unwrap();
    p.flush();
    let Header::NopOut(n) = p.target.expect().header else {
        panic!("expected a NOP-Out")
    };
    assert!(n.immediate);
    assert_ne!(n.itt, RESERVED);
    assert_eq!(n.ttt, RESERVED);
    assert_eq!(n.cmd_sn, first.cmd_sn.next());
    submit_tur(&mut p);
    p.flush();
    let second = scsi_cmd(&p.target.expect());
    assert_eq!(second.cmd_sn, first.cmd_sn.next());
}

/// UNH #2.2. RFC 7143 section 11.5: task management requests go out as
/// immediate PDUs (CmdSN not advanced); ABORT TASK names the task by ITT
/// and RefCmdSN (section 11.5.5).
#[test]
fn unh_ffp_2_2_task_management_is_delivered_immediately() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4096),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    p.session.abort_task(p.now, t).unwrap();
    p.flush();
    let Header::TaskMgmtRequest(m) = p.target.expect().header else {
        panic!("expected a Task Management Function Request")
    };
    assert!(m.immediate);
    assert_eq!(m.function, w::TmfFunction::AbortTask);
    assert_eq!(m.referenced_task_tag, c.itt);
    assert_eq!(m.ref_cmd_sn, c.cmd_sn);
    assert_eq!(m.cmd_sn, c.cmd_sn.next());
    submit_tur(&mut p);
    p.flush();
    let next = scsi_cmd(&p.target.expect());
    assert_eq!(
        next.cmd_sn,
        c.cmd_sn.next(),
        "the TMF did not consume a CmdSN"
    );
}

// ---------------------------------------------------------------------
// Test #3: the command window
// ---------------------------------------------------------------------

/// UNH #3.1. RFC 7143 section 4.2.2.1: the window is closed once
/// MaxCmdSN = ExpCmdSN - 1; a target cannot shrink a window it granted
/// (the initiator ignores a MaxCmdSN lower than its own), so it closes when
/// the initiator has used every slot and the responses do not advance
/// MaxCmdSN. Commands then wait until an update (here a NOP-In) opens it,
/// and go out in CmdSN order.
#[test]
fn unh_ffp_3_1_window_closed_mid_session_holds_commands() {
    let mut p = logged_in_window(2);
    let first: Vec<TaskId> = (0..2).map(|_| submit_tur(&mut p)).collect();
    p.flush();
    let cmds = sent_commands(&mut p);
    assert_eq!(cmds.len(), 2);
    let last = cmds[1].cmd_sn;
    // Both answered; ExpCmdSN advances, MaxCmdSN stays: closed.
    p.target.exp_cmd_sn = last.next();
    p.target.max_cmd_sn = last;
    for c in &cmds {
        p.target.scsi_response(c.itt, 0, Residual::None, None);
    }
    p.deliver();
    assert!(first.iter().all(|t| good(&p, *t).is_good()));
    assert!(!p.session.window().is_open());
    for _ in 0..3 {
        submit_tur(&mut p);
    }
    p.flush();
    assert_eq!(p.target.pending(), 0, "window closed: nothing sent");
    assert_eq!(p.session.queued_commands(), 3);
    // A stale update (MaxCmdSN below ExpCmdSN - 1) is ignored.
    p.target.nop_in_update(last.next(), last.minus(5));
    p.deliver();
    assert_eq!(p.target.pending(), 0);
    // Open two slots.
    p.target.nop_in_update(last.next(), last.plus(2));
    p.deliver();
    let cmds = sent_commands(&mut p);
    assert_eq!(
        cmds.iter().map(|c| c.cmd_sn).collect::<Vec<_>>(),
        vec![last.next(), last.plus(2)]
    );
    assert_eq!(p.session.queued_commands(), 1);
}

/// UNH #3.2. A large window (1000 commands): 64 commands go out at once.
#[test]
fn unh_ffp_3_2_large_window_sends_everything() {
    let mut p = logged_in_window(1000);
    for _ in 0..64 {
        submit_tur(&mut p);
    }
    p.flush();
    let cmds = sent_commands(&mut p);
    assert_eq!(cmds.len(), 64);
    assert_eq!(p.session.queued_commands(), 0);
}

/// UNH #3.3. A window of one command (MaxCmdSN = ExpCmdSN): one command
/// is outstanding at a time; each response that advances the window lets
/// exactly the next one out.
#[test]
fn unh_ffp_3_3_single_command_window() {
    let mut p = logged_in_window(1);
    let tasks: Vec<TaskId> = (0..3).map(|_| submit_tur(&mut p)).collect();
    p.flush();
    for (i, t) in tasks.iter().enumerate() {
        let cmds = sent_commands(&mut p);
        assert_eq!(cmds.len(), 1, "round {i}");
        let c = cmds[0];
        p.target.ack_cmd(c.cmd_sn);
        p.target.scsi_response(c.itt, 0, Residual::None, None);
        p.deliver();
        assert!(good(&p, *t).is_good());
    }
    assert_eq!(p.target.pending(), 0);
}

// ---------------------------------------------------------------------
// Test #5: ExpStatSN
// ---------------------------------------------------------------------

/// UNH #5.1. RFC 7143 section 4.2.2.2: every PDU carries ExpStatSN = the
/// last StatSN received + 1, acknowledging status in order.
#[test]
fn unh_ffp_5_1_exp_stat_sn_acknowledges_each_status() {
    let mut p = plain();
    for _ in 0..4 {
        let expected = p.target.stat_sn;
        let t = submit_tur(&mut p);
        p.flush();
        let c = scsi_cmd(&p.target.expect());
        assert_eq!(c.exp_stat_sn, expected);
        p.target.ack_cmd(c.cmd_sn);
        p.target.scsi_response(c.itt, 0, Residual::None, None);
        p.deliver();
        assert!(good(&p, t).is_good());
        assert_eq!(p.session.exp_stat_sn(), expected.next());
    }
}

// ---------------------------------------------------------------------
// Test #10: Data-In
// ---------------------------------------------------------------------

/// UNH #10.2. RFC 7143 section 11.7.2: "The initiator MUST ignore the A
/// bit set to 1 for sessions with ErrorRecoveryLevel=0": no SNACK is sent
/// and the read completes.
#[test]
fn unh_ffp_10_2_a_bit_ignored_at_error_recovery_level_0() {
    let mut p = plain();
    assert_eq!(p.session.negotiated().unwrap().error_recovery_level, 0);
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 8),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    p.target.ack_cmd(c.cmd_sn);
    let h = w::DataIn {
        final_pdu: false,
        ack: true,
        lun: 0,
        itt: c.itt,
        ttt: 0x1234,
        exp_cmd_sn: p.target.exp_cmd_sn,
        max_cmd_sn: p.target.max_cmd_sn,
        data_sn: Serial(0),
        buffer_offset: 0,
        status: None,
    };
    p.target.send(h, Bytes::from_static(b"abcd"));
    p.target
        .data_in(c.itt, 1, 4, b"efgh", Some((0, Residual::None)));
    p.deliver();
    assert_eq!(p.target.pending(), 0, "no SNACK or other PDU");
    assert_eq!(p.read_data(t), b"abcdefgh");
    assert!(good(&p, t).is_good());
}

// ---------------------------------------------------------------------
// Test #11: Data-In / Data-Out lengths
// ---------------------------------------------------------------------

/// UNH #11.1.2. RFC 7143 section 13.12: a Data-In whose data segment
/// exceeds the MaxRecvDataSegmentLength the initiator declared (8192) is
/// a protocol error; the connection is closed.
#[test]
fn unh_ffp_11_1_2_data_in_above_our_mrdsl_fails_the_connection() {
    let mut p = plain();
    assert_eq!(
        p.session
            .negotiated()
            .unwrap()
            .initiator_max_recv_data_segment_length,
        8192
    );
    p.session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 16384),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    p.target.data_in(c.itt, 0, 0, &[0x5a; 8193], None);
    p.deliver();
    assert!(p.session.is_closed() || !p.session.is_logged_in());
    match closed_with(&p) {
        Some(ConnectionError::Protocol(ProtocolError::Wire(e))) => {
            assert!(matches!(e, WireError::DataSegmentTooLong { .. }), "{e:?}")
        }
        other => panic!("{other:?}"),
    }
}

/// UNH #11.2.1 / #11.3 / #11.4. RFC 7143 section 11.7.1 and 11.7.5:
/// unsolicited Data-Out PDUs carry TTT 0xffffffff, DataSN from 0, offsets
/// following the immediate data, and F=1 on the last one only.
#[test]
fn unh_ffp_11_2_1_unsolicited_data_out_f_bit_data_sn_and_offsets() {
    let mut c = cfg();
    c.operational.initial_r2t = false;
    c.operational.first_burst_length = 8192;
    let mut tc = TargetConfig::default();
    tc.params.initial_r2t = false;
    tc.params.first_burst_length = 8192;
    tc.params.max_recv_data_segment_length = 2048;
    let mut p = logged_in_with(c, LoginResponder::new(tc, None));
    p.session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &WRITE10[..],
                Bytes::from(vec![7u8; 16384]),
            ),
        )
        .unwrap();
    p.flush();
    let cmd = p.target.expect();
    let sc = scsi_cmd(&cmd);
    assert!(!sc.final_pdu, "unsolicited Data-Out follows");
    assert_eq!(cmd.data.len(), 2048);
    let mut outs = Vec::new();
    while let Some(pdu) = p.target.recv() {
        outs.push((data_out(&pdu), pdu.data.len()));
    }
    assert_eq!(outs.len(), 3, "8192 - 2048 in 2048-byte PDUs");
    for (i, (d, len)) in outs.iter().enumerate() {
        assert_eq!(d.itt, sc.itt);
        assert_eq!(d.ttt, RESERVED);
        assert_eq!(d.data_sn, Serial(i as u32));
        assert_eq!(d.buffer_offset as usize, 2048 + i * 2048);
        assert_eq!(*len, 2048);
        assert_eq!(d.final_pdu, i == 2);
    }
}

/// UNH #11.2.2. RFC 7143 section 11.7.1: the last Data-Out answering an
/// R2T has F=1, the others F=0; DataSN restarts at 0 for each R2T.
#[test]
fn unh_ffp_11_2_2_solicited_data_out_f_bit_per_r2t() {
    let mut tc = TargetConfig::default();
    tc.params.max_recv_data_segment_length = 1024;
    let mut c = cfg();
    c.operational.immediate_data = false;
    let mut p = logged_in_with(c, LoginResponder::new(tc, None));
    p.session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &WRITE10[..],
                Bytes::from(vec![1u8; 6144]),
            ),
        )
        .unwrap();
    p.flush();
    let sc = scsi_cmd(&p.target.expect());
    assert!(sc.final_pdu);
    for (r2t_sn, off) in [(0u32, 0u32), (1, 3072)] {
        p.target.r2t(sc.itt, 0x700 + r2t_sn, r2t_sn, off, 3072);
        p.deliver();
        let mut n = 0u32;
        while let Some(pdu) = p.target.recv() {
            let d = data_out(&pdu);
            assert_eq!(d.ttt, 0x700 + r2t_sn);
            assert_eq!(d.data_sn, Serial(n));
            assert_eq!(d.buffer_offset, off + n * 1024);
            assert_eq!(d.final_pdu, n == 2);
            n += 1;
        }
        assert_eq!(n, 3);
    }
}

// ---------------------------------------------------------------------
// Test #12: R2T handling
// ---------------------------------------------------------------------

/// UNH #12.3. RFC 7143 section 11.8.3: Data-Out answers an R2T at exactly
/// its Buffer Offset and Desired Data Transfer Length, even when the R2Ts
/// arrive out of offset order (DataSequenceInOrder only constrains the
/// target) and with MaxOutstandingR2T > 1.
#[test]
fn unh_ffp_12_3_r2t_buffer_offsets_are_honoured() {
    let mut c = cfg();
    c.operational.immediate_data = false;
    c.operational.max_outstanding_r2t = 2;
    let mut tc = TargetConfig::default();
    tc.params.max_outstanding_r2t = 2;
    let mut p = logged_in_with(c, LoginResponder::new(tc, None));
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &WRITE10[..],
                Bytes::from(data.clone()),
            ),
        )
        .unwrap();
    p.flush();
    let sc = scsi_cmd(&p.target.expect());
    p.target.r2t(sc.itt, 0xa, 0, 4096, 4096);
    p.target.r2t(sc.itt, 0xb, 1, 0, 4096);
    p.deliver();
    let mut got = vec![0u8; 8192];
    let mut seen = Vec::new();
    while let Some(pdu) = p.target.recv() {
        let d = data_out(&pdu);
        let range = match d.ttt {
            0xa => 4096..8192,
            0xb => 0..4096,
            other => panic!("unknown TTT {other:#x}"),
        };
        let off = d.buffer_offset as usize;
        assert!(range.contains(&off) && off + pdu.data.len() <= range.end);
        got[off..off + pdu.data.len()].copy_from_slice(&pdu.data);
        seen.push(d.ttt);
    }
    assert!(seen.contains(&0xa) && seen.contains(&0xb));
    assert_eq!(got, data);
    p.target.scsi_response(sc.itt, 0, Residual::None, None);
    p.deliver();
    assert!(good(&p, t).is_good());
}

/// UNH #12.4. RFC 7143 section 11.8: two writes outstanding at once;
/// interleaved R2Ts are answered per task (ITT and TTT echoed), and both
/// complete.
#[test]
fn unh_ffp_12_4_parallel_writes_with_interleaved_r2ts() {
    let mut c = cfg();
    c.operational.immediate_data = false;
    let mut p = logged_in_with(c, LoginResponder::plain());
    let t1 = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &WRITE10[..],
                Bytes::from(vec![0x11u8; 1024]),
            ),
        )
        .unwrap();
    let t2 = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &WRITE10[..],
                Bytes::from(vec![0x22u8; 1024]),
            ),
        )
        .unwrap();
    p.flush();
    let c1 = scsi_cmd(&p.target.expect());
    let c2 = scsi_cmd(&p.target.expect());
    assert_ne!(c1.itt, c2.itt);
    p.target.r2t(c2.itt, 0x22, 0, 0, 1024);
    p.target.r2t(c1.itt, 0x11, 0, 0, 1024);
    p.deliver();
    let mut answered = Vec::new();
    while let Some(pdu) = p.target.recv() {
        let d = data_out(&pdu);
        let fill = if d.itt == c1.itt { 0x11 } else { 0x22 };
        assert_eq!(d.ttt, fill as u32, "TTT echoed for its own task");
        assert!(pdu.data.iter().all(|b| *b == fill));
        assert!(d.final_pdu);
        answered.push(d.itt);
    }
    assert_eq!(answered, vec![c2.itt, c1.itt]);
    p.target.ack_cmd(c2.cmd_sn);
    p.target.scsi_response(c2.itt, 0, Residual::None, None);
    p.target.scsi_response(c1.itt, 0, Residual::None, None);
    p.deliver();
    assert!(good(&p, t1).is_good() && good(&p, t2).is_good());
}

// ---------------------------------------------------------------------
// Test #15: NOP
// ---------------------------------------------------------------------

/// UNH #15.3. RFC 7143 section 11.19: a NOP-In with TTT 0xffffffff asks
/// for no answer (it only updates the window) and, like a ping, carries a
/// StatSN that is not consumed; the initiator's next PDU confirms the
/// unchanged ExpStatSN.
#[test]
fn unh_ffp_15_3_unsolicited_nop_in_is_not_answered_and_exp_stat_sn_confirmed() {
    let mut p = plain();
    let before = p.session.exp_stat_sn();
    let (exp, max) = (p.target.exp_cmd_sn, p.target.max_cmd_sn.plus(5));
    p.target.nop_in_update(exp, max);
    p.deliver();
    assert_eq!(p.target.pending(), 0, "no NOP-Out answers TTT 0xffffffff");
    assert_eq!(p.session.window().max_cmd_sn(), max);
    p.session.nop_ping(p.now, Bytes::new()).unwrap();
    p.flush();
    let Header::NopOut(n) = p.target.expect().header else {
        panic!("expected a NOP-Out")
    };
    assert_eq!(n.exp_stat_sn, before);
}

// ---------------------------------------------------------------------
// Test #16: SCSI Command PDU fields
// ---------------------------------------------------------------------

/// UNH #16.1.1. RFC 7143 section 11.3: a write with immediate data: W=1,
/// R=0, F=1 (no unsolicited Data-Out follows with InitialR2T=Yes),
/// ATTR as requested, EDTL = the whole transfer, the CDB padded to 16
/// bytes, the data segment = the immediate data.
#[test]
fn unh_ffp_16_1_1_scsi_command_fields_with_immediate_data() {
    let mut p = plain();
    let n = p.session.negotiated().unwrap().clone();
    assert!(n.immediate_data && n.initial_r2t);
    p.session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &WRITE10[..],
                Bytes::from(vec![9u8; 512]),
            )
            .with_attr(TaskAttr::Ordered),
        )
        .unwrap();
    p.flush();
    let pdu = p.target.expect();
    let c = scsi_cmd(&pdu);
    assert!(c.write && !c.read && c.final_pdu && !c.immediate);
    assert_eq!(c.attr, TaskAttr::Ordered);
    assert_eq!(c.lun, 0);
    assert_eq!(c.expected_data_transfer_length, 512);
    assert_eq!(&c.cdb[..10], &WRITE10[..]);
    assert!(c.cdb[10..].iter().all(|b| *b == 0));
    assert_eq!(&pdu.data[..], &[9u8; 512][..]);
}

/// UNH #16.1.2. The same without immediate data (ImmediateData=No): the
/// data segment is empty, F=1, and a read has R=1, W=0.
#[test]
fn unh_ffp_16_1_2_scsi_command_fields_without_immediate_data() {
    let mut c = cfg();
    c.operational.immediate_data = false;
    let mut p = logged_in_with(c, LoginResponder::plain());
    p.session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &WRITE10[..],
                Bytes::from(vec![9u8; 512]),
            ),
        )
        .unwrap();
    p.flush();
    let pdu = p.target.expect();
    let w = scsi_cmd(&pdu);
    assert!(w.write && !w.read && w.final_pdu);
    assert_eq!(w.attr, TaskAttr::Simple);
    assert!(pdu.data.is_empty());
    assert_eq!(w.expected_data_transfer_length, 512);
    p.session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4096),
        )
        .unwrap();
    p.flush();
    let pdu = p.target.expect();
    let r = scsi_cmd(&pdu);
    assert!(r.read && !r.write && r.final_pdu);
    assert!(pdu.data.is_empty());
    assert_eq!(r.expected_data_transfer_length, 4096);
    assert_eq!(r.cmd_sn, w.cmd_sn.next());
}
