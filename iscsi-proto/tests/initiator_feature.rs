//! Full Feature Phase of the initiator session against a scripted target:
//! the seed scenarios (NOP-In right after login and mid-read, keepalive,
//! silent target, window closed at login, stale updates), reads, writes in
//! every InitialR2T x ImmediateData combination, sense data, residuals,
//! task management races, async messages, Reject, logout and recovery.

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, ProtocolError, TaskError, TimerKind, UsageError};
use iscsi_proto::initiator::{
    Event, LogoutMode, Recovery, ScsiCommand, SessionConfig, TaskId, TaskOutcome,
};
use iscsi_proto::login::negotiation::TargetConfig;
use iscsi_proto::scsi::sense::SenseKey;
use iscsi_proto::testing::{LoginResponder, Pair, RESERVED};
use iscsi_proto::wire::ahs::Ahs;
use iscsi_proto::wire::pdu::{self as w, Header, Residual};
use iscsi_proto::wire::{Pdu, Serial};

fn cfg() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk")
}

fn logged_in(cfg: SessionConfig, mut r: LoginResponder) -> Pair {
    let mut p = Pair::new(cfg);
    p.login_with(&mut r);
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    p
}

fn plain() -> Pair {
    logged_in(cfg(), LoginResponder::plain())
}

fn closed_with(p: &Pair) -> Option<Option<ConnectionError>> {
    p.events.iter().find_map(|e| match e {
        Event::Closed(c) => Some(c.clone()),
        _ => None,
    })
}

fn scsi_cmd(pdu: &Pdu) -> w::ScsiCommand {
    match pdu.header {
        Header::ScsiCommand(c) => c,
        h => panic!("expected a SCSI Command, got {:?}", h.opcode()),
    }
}

fn good(p: &Pair, t: TaskId) -> iscsi_proto::initiator::ScsiResult {
    match p.outcome(t) {
        Some(TaskOutcome::Scsi(r)) => r.clone(),
        other => panic!("task {t:?}: {other:?}"),
    }
}

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];

/// Seed: storm-iser-unsolicited-nopin. The target sends a NOP-In ping in
/// the same TCP segment as the final Login Response.
#[test]
fn nop_in_right_after_final_login_response_same_segment() {
    let mut p = Pair::new(cfg());
    let mut r = LoginResponder::plain();
    loop {
        p.flush();
        let mut done = false;
        while let Some(pdu) = p.target.recv() {
            done |= r.handle(&mut p.target, &pdu);
        }
        if done {
            // Same segment: the ping follows the final response directly.
            p.target.nop_in_ping(0x55, 0x0001_0000_0000_0000, b"ping!");
            p.deliver();
            break;
        }
        p.deliver();
    }
    assert!(matches!(p.events.last(), Some(Event::LoggedIn { .. })));
    let reply = p.target.expect();
    let Header::NopOut(n) = reply.header else {
        panic!("expected the NOP-Out answer")
    };
    assert!(n.immediate);
    assert_eq!(
        (n.itt, n.ttt, n.lun),
        (RESERVED, 0x55, 0x0001_0000_0000_0000)
    );
    assert_eq!(&reply.data[..], b"ping!");
    // The ping did not consume a StatSN: ExpStatSN acknowledges only the
    // login responses.
    assert_eq!(n.exp_stat_sn, p.target.stat_sn);
    assert_eq!(p.session.exp_stat_sn(), p.target.stat_sn);
}

/// Seed: a target NOP-In ping between two Data-In PDUs of a read.
#[test]
fn nop_in_mid_read_is_answered_and_read_completes() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 8),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    assert!(c.read && !c.write && c.final_pdu);
    assert_eq!(c.expected_data_transfer_length, 8);
    p.target.ack_cmd(c.cmd_sn);
    p.target.data_in(c.itt, 0, 0, b"abcd", None);
    p.target.nop_in_ping(0x99, 0, b"");
    p.target
        .data_in(c.itt, 1, 4, b"efgh", Some((0, Residual::None)));
    p.deliver();
    let reply = p.target.expect();
    assert!(matches!(reply.header, Header::NopOut(n) if n.ttt == 0x99 && n.itt == RESERVED));
    assert_eq!(p.read_data(t), b"abcdefgh");
    let r = good(&p, t);
    assert!(r.is_good());
    assert_eq!(r.bytes_read, 8);
    assert_eq!(p.completions(t), 1);
}

/// Seed: discutils-pr64. An idle session pings at the interval; answered
/// pings keep it alive and never surface as task completions.
#[test]
fn idle_session_kept_alive() {
    let c = cfg().with_keepalive(Duration::from_secs(10), Duration::from_secs(5));
    let mut p = logged_in(c, LoginResponder::plain());
    let before = p.events.len();
    for round in 0..5 {
        p.advance(Duration::from_secs(10));
        let ping = p.target.expect();
        let Header::NopOut(n) = ping.header else {
            panic!("round {round}: expected a ping")
        };
        assert_ne!(n.itt, RESERVED, "keepalive uses a real ITT");
        assert_eq!(n.ttt, RESERVED);
        assert!(n.immediate);
        p.advance(Duration::from_secs(1));
        p.target.nop_in_reply(&n, Bytes::new());
        p.deliver();
    }
    assert!(p.session.is_logged_in());
    assert_eq!(p.events.len(), before, "no events for internal pings");
    assert_eq!(p.session.tasks_in_flight(), 0);
}

/// Any received PDU counts as liveness.
#[test]
fn any_pdu_counts_as_liveness() {
    let c = cfg().with_keepalive(Duration::from_secs(10), Duration::from_secs(5));
    let mut p = logged_in(c, LoginResponder::plain());
    p.advance(Duration::from_secs(10));
    assert!(matches!(p.target.expect().header, Header::NopOut(_)));
    p.advance(Duration::from_secs(4));
    // Not the answer, but a window update: the target is alive.
    let (e, m) = (p.target.exp_cmd_sn, p.target.max_cmd_sn);
    p.target.nop_in_update(e, m);
    p.deliver();
    p.advance(Duration::from_secs(4));
    assert!(closed_with(&p).is_none());
}

/// Seed: a target that goes silent; the keepalive timeout fires.
#[test]
fn silent_target_times_out() {
    let c = cfg().with_keepalive(Duration::from_secs(10), Duration::from_secs(5));
    let mut p = logged_in(c, LoginResponder::plain());
    p.advance(Duration::from_secs(10));
    assert!(matches!(p.target.expect().header, Header::NopOut(_)));
    p.advance(Duration::from_secs(4));
    assert!(closed_with(&p).is_none());
    p.advance(Duration::from_secs(1));
    assert_eq!(
        closed_with(&p),
        Some(Some(ConnectionError::TimedOut(TimerKind::Keepalive)))
    );
}

/// Seed: the final Login Response closes the window (MaxCmdSN = ExpCmdSN
/// - 1); a later NOP-In opens it.
#[test]
fn window_closed_at_login_then_opened_by_nop_in() {
    let mut r = LoginResponder::plain();
    r.window = (0, 0);
    let mut p = logged_in(cfg(), r);
    assert!(!p.session.window().is_open());
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    // Immediate commands still flow: a ping goes out.
    let ping = p.session.nop_ping(p.now, Bytes::new()).unwrap();
    p.flush();
    let first = p.target.expect();
    assert!(matches!(first.header, Header::NopOut(_)));
    assert_eq!(p.target.pending(), 0, "the command waits for the window");
    assert_eq!(p.session.queued_commands(), 1);
    let exp = p.target.exp_cmd_sn;
    p.target.nop_in_update(exp, exp.plus(3));
    p.deliver();
    let c = scsi_cmd(&p.target.expect());
    assert_eq!(c.cmd_sn, exp);
    assert_eq!(c.itt, t.itt());
    let _ = ping;
}

/// Stale and invalid window updates are ignored (RFC 7143 4.2.2.1).
#[test]
fn stale_window_update_ignored() {
    let mut p = plain();
    let (exp, max) = (
        p.session.window().exp_cmd_sn(),
        p.session.window().max_cmd_sn(),
    );
    // Stale: lower MaxCmdSN.
    p.target.nop_in_update(exp, max.minus(10));
    // Invalid: MaxCmdSN < ExpCmdSN - 1.
    p.target.nop_in_update(exp, exp.minus(5));
    p.deliver();
    assert_eq!(p.session.window().max_cmd_sn(), max);
    assert_eq!(p.session.window().exp_cmd_sn(), exp);
    assert!(p.session.is_logged_in());
}

#[test]
fn read_with_multiple_data_in_then_scsi_response_with_sense() {
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
    let chunk = vec![7u8; 1000];
    for i in 0..3u32 {
        p.target.data_in(c.itt, i, i * 1000, &chunk, None);
    }
    // Underflow: 3000 of 4096, and CHECK CONDITION with sense data.
    let sense = iscsi_proto::scsi::SenseData::new(SenseKey::MediumError, 0x11, 0x00).to_fixed();
    p.target
        .scsi_response(c.itt, 0x02, Residual::Underflow(1096), Some(&sense));
    p.cuts = vec![1, 7, 48, 3];
    p.deliver();
    let r = good(&p, t);
    assert_eq!(r.status, 0x02);
    assert_eq!(r.residual, Residual::Underflow(1096));
    assert_eq!(r.bytes_read, 3000);
    assert_eq!(r.sense.as_deref(), Some(&sense[..]));
    assert_eq!(r.sense_data.unwrap().key, SenseKey::MediumError);
    assert_eq!(p.read_data(t), vec![7u8; 3000]);
}

#[test]
fn overflow_residual_and_data_in_status() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    p.target
        .data_in(c.itt, 0, 0, b"1234", Some((0, Residual::Overflow(12))));
    p.deliver();
    assert_eq!(good(&p, t).residual, Residual::Overflow(12));
}

#[test]
fn data_sn_gap_fails_the_connection() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 8),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    p.target.data_in(c.itt, 0, 0, b"abcd", None);
    p.target.data_in(c.itt, 2, 4, b"efgh", None);
    p.deliver();
    assert!(matches!(
        closed_with(&p),
        Some(Some(ConnectionError::Protocol(ProtocolError::OutOfOrder {
            what: "DataSN",
            ..
        })))
    ));
    assert_eq!(
        p.outcome(t),
        Some(&TaskOutcome::Failed(TaskError::ConnectionLost))
    );
}

#[test]
fn stat_sn_gap_fails_the_connection() {
    let mut p = plain();
    let _t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    // RFC 7143 4.2.2.2: a large jump ahead of ExpStatSN is a failure (a
    // small one may be status sent out of order, see the next test).
    for _ in 0..65 {
        p.target.next_stat_sn();
    }
    p.target.scsi_response(c.itt, 0, Residual::None, None);
    p.deliver();
    assert!(matches!(
        closed_with(&p),
        Some(Some(ConnectionError::Protocol(
            ProtocolError::StatSnGap { .. }
        )))
    ));
}

/// Regression (istgt 0.4, found by the conformance matrix): istgt numbers
/// a Task Management Function Response before a read's status but sends
/// it after, so StatSN N+1 arrives before N. A StatSN a little ahead of
/// ExpStatSN is remembered, not a connection failure (RFC 7143 4.2.2.2),
/// and ExpStatSN moves past both once the gap fills.
#[test]
fn stat_sn_out_of_order_is_tolerated() {
    let mut p = plain();
    let a = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    let b = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    let ca = scsi_cmd(&p.target.expect());
    let cb = scsi_cmd(&p.target.expect());
    let first = p.target.stat_sn;
    p.target.stat_sn = first.next();
    p.target.scsi_response(cb.itt, 0, Residual::None, None);
    p.target.stat_sn = first;
    p.target.scsi_response(ca.itt, 0, Residual::None, None);
    p.deliver();
    assert!(closed_with(&p).is_none(), "{:?}", p.events);
    good(&p, a);
    good(&p, b);
    assert_eq!(p.session.exp_stat_sn(), first.next().next());
    // Numbering goes on in order afterwards.
    let c = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    let cc = scsi_cmd(&p.target.expect());
    p.target.stat_sn = first.next().next();
    p.target.scsi_response(cc.itt, 0, Residual::None, None);
    p.deliver();
    good(&p, c);
    assert_eq!(p.session.exp_stat_sn(), first.next().next().next());
}

/// Writes in all four InitialR2T x ImmediateData combinations: immediate
/// data, unsolicited Data-Out up to FirstBurstLength, then R2Ts; the data
/// the target reassembles equals the buffer.
#[test]
fn writes_in_all_four_initial_r2t_immediate_data_combinations() {
    for initial_r2t in [true, false] {
        for immediate in [true, false] {
            let mut c = cfg();
            c.operational.initial_r2t = initial_r2t;
            c.operational.immediate_data = immediate;
            c.operational.first_burst_length = 4096;
            c.operational.max_burst_length = 8192;
            c.operational.max_outstanding_r2t = 2;
            let mut tc = TargetConfig::default();
            tc.params.initial_r2t = initial_r2t;
            tc.params.immediate_data = immediate;
            tc.params.first_burst_length = 4096;
            tc.params.max_burst_length = 8192;
            tc.params.max_outstanding_r2t = 2;
            tc.params.max_recv_data_segment_length = 1024;
            let mut p = logged_in(c, LoginResponder::new(tc, None));
            let n = p.session.negotiated().unwrap().clone();
            assert_eq!((n.initial_r2t, n.immediate_data), (initial_r2t, immediate));
            let buf: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let data = Bytes::from(buf.clone());
            let t = p
                .session
                .submit(
                    p.now,
                    ScsiCommand::write(iscsi_proto::scsi::Lun::ZERO, &WRITE10[..], data),
                )
                .unwrap();
            p.flush();
            let mut got = vec![None::<u8>; buf.len()];
            let cmd_pdu = p.target.expect();
            let c = scsi_cmd(&cmd_pdu);
            assert!(c.write && !c.read);
            assert_eq!(c.expected_data_transfer_length, 20_000);
            let imm = cmd_pdu.data.len();
            let want_imm = if immediate { 1024 } else { 0 };
            assert_eq!(imm, want_imm, "ir2t={initial_r2t} imm={immediate}");
            for (i, b) in cmd_pdu.data.iter().enumerate() {
                got[i] = Some(*b);
            }
            // Unsolicited Data-Out (InitialR2T=No) up to FirstBurstLength.
            let mut unsolicited = 0;
            let mut expect_sn = 0;
            while let Some(pdu) = p.target.recv() {
                let Header::DataOut(d) = pdu.header else {
                    panic!("expected Data-Out")
                };
                assert_eq!(d.ttt, RESERVED);
                assert_eq!(d.data_sn, Serial(expect_sn));
                expect_sn += 1;
                assert!(pdu.data.len() <= 1024);
                for (i, b) in pdu.data.iter().enumerate() {
                    got[d.buffer_offset as usize + i] = Some(*b);
                }
                unsolicited += pdu.data.len();
                if d.final_pdu {
                    assert!(p.target.recv().is_none());
                }
            }
            let first_burst = if initial_r2t { imm } else { 4096 };
            assert_eq!(imm + unsolicited, first_burst);
            assert_eq!(c.final_pdu, unsolicited == 0);
            // Solicit the rest in MaxBurstLength pieces, two R2Ts at a time.
            let mut off = first_burst as u32;
            let mut r2t_sn = 0;
            while off < 20_000 {
                let mut batch = Vec::new();
                for _ in 0..2 {
                    if off >= 20_000 {
                        break;
                    }
                    let len = (20_000 - off).min(8192);
                    p.target.r2t(c.itt, 0x1000 + r2t_sn, r2t_sn, off, len);
                    batch.push((0x1000 + r2t_sn, off, len));
                    r2t_sn += 1;
                    off += len;
                }
                p.deliver();
                for (ttt, start, len) in batch {
                    let mut sn = 0;
                    let mut covered = 0;
                    loop {
                        let pdu = p.target.expect();
                        let Header::DataOut(d) = pdu.header else {
                            panic!("expected Data-Out")
                        };
                        assert_eq!(d.ttt, ttt);
                        assert_eq!(d.data_sn, Serial(sn));
                        assert_eq!(d.buffer_offset, start + covered);
                        assert!(pdu.data.len() <= 1024);
                        sn += 1;
                        for (i, b) in pdu.data.iter().enumerate() {
                            got[d.buffer_offset as usize + i] = Some(*b);
                        }
                        covered += pdu.data.len() as u32;
                        if d.final_pdu {
                            break;
                        }
                    }
                    assert_eq!(covered, len);
                }
            }
            let got: Vec<u8> = got
                .into_iter()
                .map(|b| b.expect("every byte sent"))
                .collect();
            assert_eq!(got, buf);
            p.target.scsi_response(c.itt, 0, Residual::None, None);
            p.deliver();
            assert!(good(&p, t).is_good());
        }
    }
}

#[test]
fn too_many_outstanding_r2ts_is_a_protocol_error() {
    let mut p = plain(); // MaxOutstandingR2T = 1
    let _t = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &WRITE10[..],
                Bytes::from(vec![0u8; 200_000]),
            ),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    while p.target.recv().is_some() {}
    p.target.r2t(c.itt, 1, 0, 65536, 1000);
    p.target.r2t(c.itt, 2, 1, 66536, 1000);
    // The driver has not polled the first burst yet.
    let out = p.target.take_output();
    let mut rx = bytes::BytesMut::from(&out[..]);
    p.session.handle_input(p.now, &mut rx);
    p.flush();
    p.events
        .extend(std::iter::from_fn(|| p.session.poll_event()));
    assert!(p.session.is_closed());
}

#[test]
fn extended_cdb_travels_in_an_ahs() {
    let mut p = plain();
    let cdb: Vec<u8> = (0..32).collect();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, cdb.clone()),
        )
        .unwrap();
    p.flush();
    let pdu = p.target.expect();
    let c = scsi_cmd(&pdu);
    assert_eq!(&c.cdb[..], &cdb[..16]);
    assert_eq!(
        pdu.ahs,
        vec![Ahs::ExtendedCdb(Bytes::from(cdb[16..].to_vec()))]
    );
    p.target.scsi_response(c.itt, 0, Residual::None, None);
    p.deliver();
    assert!(good(&p, t).is_good());
}

#[test]
fn bidirectional_command_has_read_length_ahs_and_residuals() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::bidi(
                iscsi_proto::scsi::Lun::ZERO,
                &[0x53u8; 10][..],
                Bytes::from_static(b"wxyz"),
                16,
            ),
        )
        .unwrap();
    p.flush();
    let pdu = p.target.expect();
    let c = scsi_cmd(&pdu);
    assert!(c.read && c.write);
    assert_eq!(c.expected_data_transfer_length, 4);
    assert!(pdu.ahs.contains(&Ahs::BidiReadLength(16)));
    p.target.data_in(c.itt, 0, 0, b"0123456789", None);
    let h = w::ScsiResponse {
        response: w::ScsiResponseCode::CommandCompleted,
        status: 0,
        itt: c.itt,
        snack_tag: 0,
        stat_sn: p.target.next_stat_sn(),
        exp_cmd_sn: p.target.exp_cmd_sn,
        max_cmd_sn: p.target.max_cmd_sn,
        exp_data_sn: Serial(1),
        bidi_read_residual: Residual::Underflow(6),
        residual: Residual::None,
    };
    p.target.send(h, Bytes::new());
    p.deliver();
    let r = good(&p, t);
    assert_eq!(r.bidi_read_residual, Residual::Underflow(6));
    assert_eq!(r.bytes_read, 10);
}

/// ABORT TASK racing the task's own completion: the task completes once,
/// with its real status; the TMF completes with the target's answer.
#[test]
fn abort_task_racing_completion() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    let tmf = p.session.abort_task(p.now, t).unwrap();
    p.flush();
    let req = p.target.expect();
    let Header::TaskMgmtRequest(m) = req.header else {
        panic!("expected TMF")
    };
    assert!(m.immediate);
    assert_eq!(m.function, w::TmfFunction::AbortTask);
    assert_eq!(m.referenced_task_tag, t.itt());
    assert_eq!(m.ref_cmd_sn, c.cmd_sn);
    // The response for the task wins the race.
    p.target
        .data_in(c.itt, 0, 0, b"done", Some((0, Residual::None)));
    p.target
        .tmf_response(m.itt, w::TmfResponse::FunctionComplete);
    p.deliver();
    assert!(good(&p, t).is_good());
    assert_eq!(p.completions(t), 1);
    assert_eq!(
        p.outcome(tmf),
        Some(&TaskOutcome::TaskManagement(
            w::TmfResponse::FunctionComplete
        ))
    );
}

#[test]
fn lun_reset_aborts_affected_tasks_exactly_once() {
    let mut p = plain();
    let a = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4),
        )
        .unwrap();
    let b = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4),
        )
        .unwrap();
    let other_lun = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::from_number(1), &READ10[..], 4),
        )
        .unwrap();
    p.flush();
    let ca = scsi_cmd(&p.target.expect());
    let _cb = scsi_cmd(&p.target.expect());
    let co = scsi_cmd(&p.target.expect());
    let tmf = p
        .session
        .task_management(p.now, 0, w::TmfFunction::LogicalUnitReset)
        .unwrap();
    p.flush();
    let Header::TaskMgmtRequest(m) = p.target.expect().header else {
        panic!()
    };
    assert_eq!(m.referenced_task_tag, RESERVED);
    // a completes before the TMF answer; b is aborted by it; a late
    // response for b is ignored.
    p.target
        .data_in(ca.itt, 0, 0, b"aaaa", Some((0, Residual::None)));
    p.target
        .tmf_response(m.itt, w::TmfResponse::FunctionComplete);
    p.target.scsi_response(b.itt(), 0, Residual::None, None);
    p.target
        .data_in(co.itt, 0, 0, b"oooo", Some((0, Residual::None)));
    p.deliver();
    assert!(good(&p, a).is_good());
    assert_eq!(
        p.outcome(b),
        Some(&TaskOutcome::Failed(TaskError::Aborted(
            w::TmfFunction::LogicalUnitReset
        )))
    );
    assert!(good(&p, other_lun).is_good());
    for t in [a, b, other_lun, tmf] {
        assert_eq!(p.completions(t), 1);
    }
    assert!(p.session.is_logged_in());
    assert_eq!(p.session.tasks_in_flight(), 0);
}

#[test]
fn abort_of_a_queued_command_is_local() {
    let mut r = LoginResponder::plain();
    r.window = (0, 0);
    let mut p = logged_in(cfg(), r);
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    let tmf = p.session.abort_task(p.now, t).unwrap();
    p.flush();
    assert_eq!(p.target.pending(), 0);
    assert_eq!(
        p.outcome(t),
        Some(&TaskOutcome::Failed(TaskError::Aborted(
            w::TmfFunction::AbortTask
        )))
    );
    assert!(matches!(
        p.outcome(tmf),
        Some(TaskOutcome::TaskManagement(_))
    ));
    assert_eq!(
        p.session.abort_task(p.now, t),
        Err(UsageError::UnknownTask(t))
    );
}

#[test]
fn async_logout_request_logs_out() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    p.target
        .async_message(w::AsyncEvent::LogoutRequested, [0, 0, 10], &[]);
    p.deliver();
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, Event::AsyncEvent(n) if n.event == w::AsyncEvent::LogoutRequested)));
    // New work is refused while the logout waits for the task.
    assert_eq!(
        p.session.submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..])
        ),
        Err(UsageError::LoggingOut)
    );
    assert_eq!(p.target.pending(), 0, "waits for the outstanding task");
    p.target.scsi_response(c.itt, 0, Residual::None, None);
    p.deliver();
    assert!(good(&p, t).is_good());
    let Header::LogoutRequest(l) = p.target.expect().header else {
        panic!("expected a logout")
    };
    p.target.logout_response(l.itt, 0, 0);
    p.deliver();
    assert_eq!(p.events.last(), Some(&Event::Closed(None)));
}

#[test]
fn async_logout_request_deadline_aborts_stragglers() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    let _ = p.target.expect();
    p.target
        .async_message(w::AsyncEvent::LogoutRequested, [0, 0, 3], &[]);
    p.deliver();
    p.advance(Duration::from_secs(3));
    assert_eq!(
        p.outcome(t),
        Some(&TaskOutcome::Failed(TaskError::LoggedOut))
    );
    assert!(matches!(p.target.expect().header, Header::LogoutRequest(_)));
}

#[test]
fn reject_fails_the_rejected_task() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    let cmd = p.target.expect();
    p.target.reject(w::RejectReason::InvalidPduField, &cmd);
    // A Reject for something that is no task of ours is surfaced as such.
    let fake = Pdu::new(
        w::NopOut {
            immediate: true,
            lun: 0,
            itt: RESERVED,
            ttt: 7,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
        },
        Bytes::new(),
    );
    p.target.reject(w::RejectReason::ProtocolError, &fake);
    p.deliver();
    assert_eq!(
        p.outcome(t),
        Some(&TaskOutcome::Failed(TaskError::Rejected(
            w::RejectReason::InvalidPduField
        )))
    );
    assert!(p.events.contains(&Event::Rejected {
        reason: w::RejectReason::ProtocolError
    }));
    assert!(p.session.is_logged_in());
}

#[test]
fn logout_aborting_tasks() {
    let mut p = plain();
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    let lo = p.session.logout(p.now, LogoutMode::AbortTasks).unwrap();
    assert_eq!(
        p.outcome(t).cloned().or_else(|| {
            p.flush();
            p.outcome(t).cloned()
        }),
        Some(TaskOutcome::Failed(TaskError::LoggedOut))
    );
    p.flush();
    let mut saw_logout = None;
    while let Some(pdu) = p.target.recv() {
        if let Header::LogoutRequest(l) = pdu.header {
            saw_logout = Some(l);
        }
    }
    let l = saw_logout.expect("logout sent");
    p.target.logout_response(l.itt, 2, 20);
    p.deliver();
    assert!(matches!(p.outcome(lo), Some(TaskOutcome::LoggedOut(r)) if r.time2retain == 20));
    assert_eq!(p.completions(t), 1);
}

#[test]
fn usage_errors() {
    let mut p = Pair::new(cfg());
    assert_eq!(
        p.session.submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..])
        ),
        Err(UsageError::NotLoggedIn)
    );
    let mut p = plain();
    assert!(matches!(
        p.session.submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, Bytes::new())
        ),
        Err(UsageError::InvalidCommand(_))
    ));
    // A task that has ended is unknown.
    let ended = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    p.target.scsi_response(ended.itt(), 0, Residual::None, None);
    p.deliver();
    assert!(p.outcome(ended).is_some());
    assert_eq!(
        p.session.abort_task(p.now, ended),
        Err(UsageError::UnknownTask(ended))
    );
    let mut d = Pair::new(SessionConfig::new("iqn.2024-01.test:init"));
    d.login();
    assert_eq!(
        d.session.submit(
            d.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..])
        ),
        Err(UsageError::DiscoverySession)
    );
}

/// Session recovery at ErrorRecoveryLevel 0: wait Time2Wait, reconnect,
/// log in with the same ISID and TSIH 0, reissue outstanding commands with
/// new CmdSNs; each completes exactly once.
#[test]
fn recovery_reissues_outstanding_tasks() {
    let c = cfg().with_recovery(Recovery {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(10),
    });
    let mut r = LoginResponder::plain();
    let mut p = logged_in(c, LoginResponder::plain());
    let a = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4),
        )
        .unwrap();
    let b = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    let ca = scsi_cmd(&p.target.expect());
    let cb = scsi_cmd(&p.target.expect());
    // Half of a's data arrives, then the connection dies.
    p.target.data_in(ca.itt, 0, 0, b"ab", None);
    p.deliver();
    p.session.handle_closed(p.now);
    p.flush();
    let rec = p
        .events
        .iter()
        .find_map(|e| match e {
            Event::Recovering { attempt, after, .. } => Some((*attempt, *after)),
            _ => None,
        })
        .expect("recovering");
    assert_eq!(rec, (1, Duration::from_secs(2)), "DefaultTime2Wait = 2 s");
    let connects = p.connects.len();
    p.advance(Duration::from_secs(2));
    assert_eq!(p.connects.len(), connects + 1);
    p.login_with(&mut r);
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, Event::Reinstated { .. })));
    // The leading login reused the ISID with TSIH 0.
    let login = p
        .target
        .log
        .iter()
        .rev()
        .find_map(|pdu| match pdu.header {
            Header::LoginRequest(l) => Some(l),
            _ => None,
        })
        .unwrap();
    assert_eq!(login.tsih, 0);
    assert_eq!(login.isid, p.session.isid());
    let ra = scsi_cmd(&p.target.expect());
    let rb = scsi_cmd(&p.target.expect());
    assert_eq!((ra.itt, rb.itt), (ca.itt, cb.itt), "same order");
    // New CmdSNs, consecutive from the new login's CmdSN.
    assert_eq!(ra.cmd_sn, login.cmd_sn);
    assert_eq!(rb.cmd_sn, ra.cmd_sn.next());
    assert_ne!(ra.cmd_sn, ca.cmd_sn);
    assert!(ra.cmd_sn.follows(cb.cmd_sn));
    p.target
        .data_in(ra.itt, 0, 0, b"abcd", Some((0, Residual::None)));
    p.target.scsi_response(rb.itt, 0, Residual::None, None);
    p.deliver();
    assert!(good(&p, a).is_good());
    assert!(good(&p, b).is_good());
    assert_eq!((p.completions(a), p.completions(b)), (1, 1));
}

#[test]
fn recovery_gives_up_after_max_attempts() {
    let c = cfg().with_recovery(Recovery {
        max_attempts: 2,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(4),
    });
    let mut p = logged_in(c, LoginResponder::plain());
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    for _ in 0..3 {
        p.session.handle_closed(p.now);
        p.flush();
        p.advance(Duration::from_secs(60));
    }
    assert!(matches!(
        closed_with(&p),
        Some(Some(ConnectionError::RecoveryFailed { attempts: 2, .. }))
    ));
    assert_eq!(
        p.outcome(t),
        Some(&TaskOutcome::Failed(TaskError::ConnectionLost))
    );
    assert_eq!(p.completions(t), 1);
}

#[test]
fn send_targets_across_several_pdus_with_ttt_continuation() {
    let mut p = Pair::new(SessionConfig::new("iqn.2024-01.test:init"));
    p.login();
    let t = p.session.send_targets(p.now).unwrap();
    p.flush();
    let Header::TextRequest(req) = p.target.expect().header else {
        panic!()
    };
    let body = b"TargetName=iqn.2024-01.test:a\0TargetAddress=10.0.0.1:3260,1\0TargetAddress=[fe80::2]:3261,2\0TargetName=iqn.2024-01.test:b\0TargetAddress=host.example,3\0";
    let (first, rest) = body.split_at(40);
    let (second, third) = rest.split_at(50);
    p.target.text_response(req.itt, false, true, 0x77, first);
    p.deliver();
    let Header::TextRequest(c1) = p.target.expect().header else {
        panic!()
    };
    assert_eq!((c1.itt, c1.ttt), (req.itt, 0x77));
    assert!(c1.cmd_sn.follows(req.cmd_sn));
    p.target.text_response(req.itt, false, false, 0x78, second);
    p.deliver();
    let pdu = p.target.expect();
    let Header::TextRequest(c2) = pdu.header else {
        panic!()
    };
    assert_eq!(c2.ttt, 0x78);
    assert!(pdu.data.is_empty());
    p.target
        .text_response(req.itt, true, false, RESERVED, third);
    p.deliver();
    let Some(TaskOutcome::Targets(ts)) = p.outcome(t) else {
        panic!("{:?}", p.events)
    };
    assert_eq!(ts.len(), 2);
    assert_eq!(ts[0].addresses.len(), 2);
    assert_eq!(ts[0].addresses[1].host, "fe80::2");
    assert_eq!(ts[1].addresses[0].host, "host.example");
    assert_eq!(ts[1].addresses[0].port, None);
}

#[test]
fn ping_round_trip_and_target_ping_does_not_consume_stat_sn() {
    let mut p = plain();
    let before = p.session.exp_stat_sn();
    p.target.nop_in_ping(1, 0, b"");
    p.target.nop_in_ping(2, 0, b"");
    p.deliver();
    assert_eq!(p.session.exp_stat_sn(), before);
    let t = p
        .session
        .nop_ping(p.now, Bytes::from_static(b"xyz"))
        .unwrap();
    p.flush();
    let mut answered = 0;
    while let Some(pdu) = p.target.recv() {
        let Header::NopOut(n) = pdu.header else {
            panic!()
        };
        if n.itt == RESERVED {
            answered += 1;
        } else {
            p.target.nop_in_reply(&n, pdu.data.clone());
        }
    }
    assert_eq!(answered, 2);
    p.deliver();
    assert_eq!(
        p.outcome(t),
        Some(&TaskOutcome::Pong(Bytes::from_static(b"xyz")))
    );
    assert_eq!(p.session.exp_stat_sn(), before.next());
}

#[test]
fn async_events_are_surfaced_and_drop_notice_sets_time2wait() {
    let c = cfg().with_recovery(Recovery {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    });
    let mut p = logged_in(c, LoginResponder::plain());
    // SCSI async event with sense data.
    let sense = [
        0x70u8, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3f, 0x0e, 0, 0, 0, 0,
    ];
    let mut seg = vec![0, sense.len() as u8];
    seg.extend_from_slice(&sense);
    p.target
        .async_message(w::AsyncEvent::ScsiEvent, [0, 0, 0], &seg);
    // Renegotiation request: answered by an (empty) Text Request.
    p.target
        .async_message(w::AsyncEvent::NegotiationRequested, [0, 0, 5], &[]);
    // Vendor event.
    p.target
        .async_message(w::AsyncEvent::VendorSpecific, [1, 2, 3], b"v");
    p.deliver();
    let notices: Vec<_> = p
        .events
        .iter()
        .filter_map(|e| match e {
            Event::AsyncEvent(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 3);
    assert_eq!(&notices[0].sense[..], &sense[..]);
    assert_eq!(notices[2].parameters, [1, 2, 3]);
    let Header::TextRequest(t) = p.target.expect().header else {
        panic!("expected a Text Request for the renegotiation")
    };
    p.target.text_response(t.itt, true, false, RESERVED, b"");
    p.deliver();
    assert!(!p.events.iter().any(|e| matches!(e, Event::Complete { .. })));
    // Drop notice with Time2Wait 7: recovery waits 7 s.
    p.target
        .async_message(w::AsyncEvent::DropConnection, [0, 7, 20], &[]);
    p.deliver();
    p.session.handle_closed(p.now);
    p.flush();
    assert!(p.events.iter().any(|e| matches!(
        e,
        Event::Recovering { attempt: 1, after, .. } if *after == Duration::from_secs(7)
    )));
}

/// Fuzz finding (initiator_stream, CI): a renegotiation request (AsyncEvent
/// 4) while the window is closed queues an internal Text Request;
/// `queued_commands` counts the caller's commands only, like
/// `tasks_in_flight`, so it must not report it.
#[test]
fn internal_text_request_is_not_a_queued_command() {
    let mut r = LoginResponder::plain();
    r.window = (0, 0);
    let mut p = logged_in(cfg(), r);
    assert!(!p.session.window().is_open());
    p.target
        .async_message(w::AsyncEvent::NegotiationRequested, [0, 0, 5], &[]);
    p.deliver();
    assert_eq!(p.session.queued_commands(), 0);
    assert_eq!(p.session.tasks_in_flight(), 0);
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    assert_eq!(p.session.queued_commands(), 1);
    // Opening the window lets both out, the internal one first (CmdSN order).
    let exp = p.target.exp_cmd_sn;
    p.target.nop_in_update(exp, exp.plus(3));
    p.deliver();
    assert_eq!(p.session.queued_commands(), 0);
    let Header::TextRequest(_) = p.target.expect().header else {
        panic!("expected the renegotiation Text Request first")
    };
    let c = scsi_cmd(&p.target.expect());
    assert_eq!(c.itt, t.itt());
}
