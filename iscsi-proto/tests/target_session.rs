//! Target Full Feature Phase: command window, NOP both ways, task
//! management, logout, async logout request, Reject cases.

mod target_support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_proto::scsi::ScsiStatus;
use iscsi_proto::target::{CloseReason, Event as TargetEvent, NopConfig};
use iscsi_proto::wire::*;
use target_support::*;

const NO_TAG: u32 = 0xffff_ffff;

fn ffp(cfg: iscsi_proto::target::SessionConfig) -> Harness {
    let mut h = Harness::new(cfg);
    h.login(&[]);
    h.events();
    h
}

fn nop_out(h: &mut Harness, immediate: bool, itt: u32, ttt: u32) -> NopOut {
    let sn = h.cmd_sn;
    if !immediate {
        h.cmd_sn = sn.next();
    }
    NopOut {
        immediate,
        lun: 0,
        itt,
        ttt,
        cmd_sn: sn,
        exp_stat_sn: Serial(0),
    }
}

#[test]
fn window_is_advertised_and_commands_are_delivered_in_cmdsn_order() {
    let mut cfg = config();
    cfg.cmd_window = 4;
    let mut h = ffp(cfg);
    let c1 = h.cmd(true, false, 512, true); // CmdSN 1000
    let c2 = h.cmd(true, false, 512, true); // 1001
    let c3 = h.cmd(true, false, 512, true); // 1002
                                            // 1002 and 1001 arrive first: held.
    h.send(c3, Bytes::new());
    h.send(c2, Bytes::new());
    assert!(h.events().is_empty());
    assert_eq!(h.s.exp_cmd_sn(), Serial(1000));
    h.send(c1, Bytes::new());
    let ev = h.events();
    let itts: Vec<u32> = ev
        .iter()
        .map(|e| match e {
            TargetEvent::Command(r) => r.itt,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(itts, vec![c1.itt, c2.itt, c3.itt]);
    assert_eq!(h.s.exp_cmd_sn(), Serial(1003));
    // Window: 3 outstanding of depth 4, so MaxCmdSN stays at 1003 (the
    // login advertised 1000 + 4 - 1).
    assert_eq!(h.s.max_cmd_sn(), Serial(1003));
    // 1004 is beyond MaxCmdSN: dropped silently.
    h.cmd_sn = Serial(1004);
    let late = h.cmd(true, false, 512, true);
    h.send(late, Bytes::new());
    assert!(h.events().is_empty() && h.recv().is_empty());
    // A duplicate of an already delivered CmdSN: dropped silently too.
    let mut dup = c1;
    dup.itt = 0x777;
    h.send(dup, Bytes::new());
    assert!(h.events().is_empty() && h.recv().is_empty());
    // Completing one task opens the window by one, advertised in the response.
    let ev = ev;
    let TargetEvent::Command(r1) = &ev[0] else {
        panic!()
    };
    h.s.complete(r1.task, ScsiStatus::Good, None, pattern(512))
        .unwrap();
    let r = h.recv();
    let Header::DataIn(d) = r[0].header else {
        panic!()
    };
    assert_eq!(d.exp_cmd_sn, Serial(1003));
    assert_eq!(d.max_cmd_sn, Serial(1004));
}

#[test]
fn immediate_commands_are_delivered_at_once() {
    let mut h = ffp(config());
    let mut c = h.cmd(true, false, 512, true);
    c.immediate = true;
    c.cmd_sn = Serial(1005); // not next in order: immediate ignores that
    h.send(c, Bytes::new());
    let req = h.command_event();
    assert!(req.immediate);
    assert_eq!(h.s.exp_cmd_sn(), Serial(1000));
}

#[test]
fn nop_out_ping_is_echoed() {
    let mut h = ffp(config());
    let n = nop_out(&mut h, false, 0x42, NO_TAG);
    let before = h.s.stat_sn();
    h.send(n, Bytes::from_static(b"hello nop"));
    let r = h.recv();
    assert_eq!(r.len(), 1);
    let Header::NopIn(i) = r[0].header else {
        panic!()
    };
    assert_eq!((i.itt, i.ttt, i.stat_sn), (0x42, NO_TAG, before));
    assert_eq!(&r[0].data[..], b"hello nop");
    assert_eq!(i.exp_cmd_sn, Serial(1001));
    // A NOP-Out with ITT 0xffffffff gets no answer.
    let n = nop_out(&mut h, true, NO_TAG, NO_TAG);
    h.send(n, Bytes::new());
    assert!(h.recv().is_empty());
}

#[test]
fn nop_in_ping_answered_keeps_the_connection() {
    let mut cfg = config();
    cfg.nop = Some(NopConfig {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
    });
    let mut h = ffp(cfg);
    let t0 = h.now;
    assert_eq!(h.s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    h.advance(Duration::from_secs(5));
    h.s.handle_timeout(h.now);
    let r = h.recv();
    let Header::NopIn(ping) = r[0].header else {
        panic!()
    };
    assert_eq!(ping.itt, NO_TAG);
    assert_ne!(ping.ttt, NO_TAG);
    // StatSN is not advanced by an unsolicited NOP-In.
    assert_eq!(ping.stat_sn, h.s.stat_sn());
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(2)));
    h.advance(Duration::from_secs(1));
    let ans = nop_out(&mut h, true, NO_TAG, ping.ttt);
    h.send(ans, Bytes::new());
    assert!(h.recv().is_empty());
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(5)));
    h.advance(Duration::from_secs(2));
    h.s.handle_timeout(h.now);
    assert!(!h.s.is_closed());
    assert!(h.recv().is_empty());
}

#[test]
fn nop_in_ping_unanswered_drops_the_connection() {
    let mut cfg = config();
    cfg.nop = Some(NopConfig {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
    });
    let mut h = ffp(cfg);
    let c = h.cmd(true, false, 512, true);
    h.send(c, Bytes::new());
    let t = h.task_of();
    h.advance(Duration::from_secs(5));
    h.s.handle_timeout(h.now);
    assert_eq!(h.recv().len(), 1);
    // A wrong TTT does not count as the answer.
    let ans = nop_out(&mut h, true, NO_TAG, 0x1234_5678);
    h.send(ans, Bytes::new());
    h.advance(Duration::from_secs(2));
    h.s.handle_timeout(h.now);
    assert!(h.s.is_closed());
    assert_eq!(h.s.poll_timeout(), None);
    let ev = h.events();
    assert_eq!(
        ev,
        vec![
            TargetEvent::TaskAborted { task: t },
            TargetEvent::Closed {
                reason: CloseReason::NopTimeout
            }
        ]
    );
}

fn tmf(h: &mut Harness, function: TmfFunction, lun: u64, rtt: u32) -> TaskMgmtRequest {
    let itt = h.next_itt();
    TaskMgmtRequest {
        immediate: true,
        function,
        lun,
        itt,
        referenced_task_tag: rtt,
        cmd_sn: h.cmd_sn,
        exp_stat_sn: Serial(0),
        ref_cmd_sn: Serial(0),
        exp_data_sn: Serial(0),
    }
}

fn tmf_response(h: &mut Harness) -> TaskMgmtResponse {
    let r = h.recv();
    assert_eq!(r.len(), 1, "{r:?}");
    let Header::TaskMgmtResponse(t) = r[0].header else {
        panic!()
    };
    t
}

#[test]
fn abort_task_aborts_and_the_task_is_never_answered() {
    let mut h = ffp(config());
    let c = h.cmd(true, false, 512, true);
    h.send(c, Bytes::new());
    let t = h.task_of();
    let req = tmf(&mut h, TmfFunction::AbortTask, 0, c.itt);
    h.send(req, Bytes::new());
    // The application was running the task: the response waits for its
    // acknowledgement (RFC 7143 section 11.5.1; tests/target_tmf.rs).
    let ev = h.events();
    assert_eq!(ev, vec![TargetEvent::TaskAborted { task: t }]);
    assert!(h.recv().is_empty());
    h.s.abort_acknowledged(t).unwrap();
    let resp = tmf_response(&mut h);
    assert_eq!(resp.response, TmfResponse::FunctionComplete);
    assert_eq!(resp.itt, req.itt);
    let ev = h.events();
    assert!(
        matches!(&ev[0], TargetEvent::TaskManagement { function: TmfFunction::AbortTask, aborted, .. } if aborted == &vec![t])
    );
    assert!(h
        .s
        .complete(t, ScsiStatus::Good, None, pattern(512))
        .is_err());
    assert!(h.recv().is_empty());
    // Unknown task outside the window: "Task does not exist".
    let mut req = tmf(&mut h, TmfFunction::AbortTask, 0, 0xdead);
    req.ref_cmd_sn = Serial(5);
    h.send(req, Bytes::new());
    assert_eq!(tmf_response(&mut h).response, TmfResponse::TaskDoesNotExist);
}

#[test]
fn abort_task_of_a_missing_cmdsn_plugs_the_gap() {
    let mut h = ffp(config());
    let lost = h.cmd(true, false, 512, true); // 1000, never sent
    let c2 = h.cmd(true, false, 512, true); // 1001
    h.send(c2, Bytes::new());
    assert!(h.events().is_empty());
    let mut req = tmf(&mut h, TmfFunction::AbortTask, 0, lost.itt);
    req.ref_cmd_sn = lost.cmd_sn;
    h.send(req, Bytes::new());
    assert_eq!(tmf_response(&mut h).response, TmfResponse::FunctionComplete);
    let ev = h.events();
    assert!(
        matches!(&ev[0], TargetEvent::Command(r) if r.itt == c2.itt),
        "{ev:?}"
    );
    assert_eq!(h.s.exp_cmd_sn(), Serial(1002));
}

#[test]
fn lun_reset_and_task_set_functions() {
    let mut cfg = config();
    cfg.targets[0].luns = vec![0, 1 << 48];
    let mut h = ffp(cfg);
    let a = h.cmd(true, false, 512, true);
    h.send(a, Bytes::new());
    let mut b = h.cmd(true, false, 512, true);
    b.lun = 1 << 48;
    h.send(b, Bytes::new());
    let ev = h.events();
    assert_eq!(ev.len(), 2);
    let req = tmf(&mut h, TmfFunction::LogicalUnitReset, 1 << 48, 0);
    h.send(req, Bytes::new());
    let ev2 = h.events();
    assert_eq!(ev2.len(), 1);
    let TargetEvent::TaskAborted { task } = ev2[0] else {
        panic!("{ev2:?}")
    };
    h.s.abort_acknowledged(task).unwrap();
    assert_eq!(tmf_response(&mut h).response, TmfResponse::FunctionComplete);
    let ev2 = [ev2, h.events()].concat();
    assert_eq!(ev2.len(), 2);
    assert!(
        matches!(&ev2[1], TargetEvent::TaskManagement { function: TmfFunction::LogicalUnitReset, lun, .. } if *lun == 1 << 48)
    );
    assert_eq!(h.s.live_tasks(), 1);
    // Unknown LUN.
    let req = tmf(&mut h, TmfFunction::AbortTaskSet, 7 << 48, 0);
    h.send(req, Bytes::new());
    assert_eq!(tmf_response(&mut h).response, TmfResponse::LunDoesNotExist);
    // Unsupported functions.
    for (f, want) in [
        (TmfFunction::ClearAca, TmfResponse::NotSupported),
        (TmfFunction::Other(14), TmfResponse::NotSupported),
        (
            TmfFunction::TaskReassign,
            TmfResponse::ReassignmentNotSupported,
        ),
    ] {
        let req = tmf(&mut h, f, 0, 0);
        h.send(req, Bytes::new());
        assert_eq!(tmf_response(&mut h).response, want);
    }
    // TARGET WARM RESET aborts the rest; COLD closes the connection.
    let req = tmf(&mut h, TmfFunction::TargetWarmReset, 0, 0);
    h.send(req, Bytes::new());
    assert_eq!(h.s.live_tasks(), 0);
    for e in h.events() {
        if let TargetEvent::TaskAborted { task } = e {
            h.s.abort_acknowledged(task).unwrap();
        }
    }
    assert_eq!(tmf_response(&mut h).response, TmfResponse::FunctionComplete);
    let req = tmf(&mut h, TmfFunction::TargetColdReset, 0, 0);
    h.send(req, Bytes::new());
    assert_eq!(tmf_response(&mut h).response, TmfResponse::FunctionComplete);
    assert!(h.s.is_closed());
    assert!(h.events().contains(&TargetEvent::Closed {
        reason: CloseReason::ColdReset
    }));
}

#[test]
fn logout_close_session_and_wrong_cid() {
    let mut h = ffp(config());
    let mut lo = LogoutRequest {
        immediate: true,
        reason: LogoutReason::CloseConnection,
        itt: 0x31,
        cid: 99,
        cmd_sn: h.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    h.send(lo, Bytes::new());
    let r = h.recv();
    assert!(
        matches!(r[0].header, Header::LogoutResponse(l) if l.response == LogoutResponseCode::CidNotFound)
    );
    lo.reason = LogoutReason::RemoveForRecovery;
    h.send(lo, Bytes::new());
    let r = h.recv();
    assert!(
        matches!(r[0].header, Header::LogoutResponse(l) if l.response == LogoutResponseCode::RecoveryNotSupported)
    );
    lo.reason = LogoutReason::CloseSession;
    h.send(lo, Bytes::new());
    let r = h.recv();
    let Header::LogoutResponse(l) = r[0].header else {
        panic!()
    };
    assert_eq!(l.response, LogoutResponseCode::Success);
    assert_eq!((l.time2wait, l.time2retain), (2, 20));
    assert_eq!(
        h.events(),
        vec![
            TargetEvent::LoggedOut,
            TargetEvent::Closed {
                reason: CloseReason::LoggedOut
            }
        ]
    );
    // Input after the end is ignored.
    let n = nop_out(&mut h, true, 1, NO_TAG);
    h.send(n, Bytes::new());
    assert!(h.recv().is_empty());
}

#[test]
fn async_logout_request() {
    let mut h = ffp(config());
    let before = h.s.stat_sn();
    h.s.request_logout(10).unwrap();
    let r = h.recv();
    let Header::AsyncMessage(a) = r[0].header else {
        panic!()
    };
    assert_eq!(a.event, AsyncEvent::LogoutRequested);
    assert_eq!(a.parameter3, 10);
    assert_eq!(a.stat_sn, before);
    assert_eq!(h.s.stat_sn(), before.next());
}

#[test]
fn reject_cases() {
    let mut h = ffp(config());
    // SNACK at ErrorRecoveryLevel 0.
    let snack = SnackRequest {
        snack_type: SnackType::Status,
        lun: 0,
        itt: 3,
        ttt_or_snack_tag: 0,
        exp_stat_sn: Serial(0),
        beg_run: Serial(0),
        run_length: 0,
    };
    h.send(snack, Bytes::new());
    let r = h.recv();
    assert!(matches!(r[0].header, Header::Reject(j) if j.reason == RejectReason::SnackReject));
    assert_eq!(
        &r[0].data[..],
        &Header::SnackRequest(snack).to_bytes(0, 0)[..]
    );
    // Unknown opcode 0x1c (vendor specific).
    let mut raw = [0u8; 48];
    raw[0] = 0x1c;
    raw[16..20].copy_from_slice(&9u32.to_be_bytes());
    h.send_raw(&raw);
    let r = h.recv();
    assert!(
        matches!(r[0].header, Header::Reject(j) if j.reason == RejectReason::CommandNotSupported)
    );
    assert_eq!(&r[0].data[..], &raw[..]);
    // A target opcode from the initiator.
    let nin = NopIn {
        lun: 0,
        itt: 1,
        ttt: NO_TAG,
        stat_sn: Serial(0),
        exp_cmd_sn: Serial(0),
        max_cmd_sn: Serial(0),
    };
    h.send(nin, Bytes::new());
    let r = h.recv();
    assert!(matches!(r[0].header, Header::Reject(j) if j.reason == RejectReason::ProtocolError));
    // An ITT already in use.
    let c = h.cmd(true, false, 512, true);
    h.send(c, Bytes::new());
    h.events();
    let mut again = h.cmd(true, false, 512, true);
    again.itt = c.itt;
    h.send(again, Bytes::new());
    let r = h.recv();
    assert!(matches!(r[0].header, Header::Reject(j) if j.reason == RejectReason::TaskInProgress));
    // Each Reject advanced StatSN.
    assert_eq!(h.s.rejects_sent(), 4);
    assert!(!h.s.is_closed());
}

#[test]
fn header_digest_error_drops_the_connection() {
    let mut cfg = config();
    cfg.params.header_digest = vec![iscsi_proto::login::DigestType::Crc32c];
    let mut h = Harness::new(cfg);
    h.login(&[("HeaderDigest", "CRC32C")]);
    h.events();
    let n = nop_out(&mut h, true, 5, NO_TAG);
    let mut b = BytesMut::new();
    Pdu::new(n, Bytes::new())
        .encode(&mut b, h.tx_digests)
        .unwrap();
    b[50] ^= 1;
    h.send_raw(&b);
    assert!(h.s.is_closed());
    assert_eq!(
        h.events(),
        vec![TargetEvent::Closed {
            reason: CloseReason::HeaderDigest
        }]
    );
    assert!(h.recv().is_empty());
}

#[test]
fn data_segment_above_our_limit_drops_the_connection() {
    let mut h = ffp(config());
    let n = nop_out(&mut h, true, 5, NO_TAG);
    let mut raw = Header::NopOut(n).to_bytes(0, 9000);
    raw[5..8].copy_from_slice(&[0, 0x23, 0x28]);
    let mut b = BytesMut::from(&raw[..]);
    let now = h.now;
    h.s.handle_input(now, &mut b);
    assert!(h.s.is_closed());
    assert!(matches!(
        h.events().as_slice(),
        [TargetEvent::Closed {
            reason: CloseReason::Protocol(_)
        }]
    ));
}

#[test]
fn text_in_ffp_not_understood_and_send_targets_self() {
    let mut cfg = config();
    cfg.portals = vec![iscsi_proto::NetworkPortal {
        host: "10.0.0.1".into(),
        port: 3260,
        portal_group_tag: Some(1),
    }];
    let mut h = ffp(cfg);
    let sn = h.cmd_sn;
    h.cmd_sn = sn.next();
    let req = TextRequest {
        immediate: false,
        final_pdu: true,
        cont: false,
        lun: 0,
        itt: 0x66,
        ttt: NO_TAG,
        cmd_sn: sn,
        exp_stat_sn: Serial(0),
    };
    h.send(
        req,
        kv(&[
            ("SendTargets", ""),
            ("X-com.example.foo", "bar"),
            ("SendTargets", "All"),
        ]),
    );
    let r = h.recv();
    let p = pairs(&r[0].data);
    assert_eq!(get(&p, "TargetName"), Some(TARGET));
    assert_eq!(get(&p, "TargetAddress"), Some("10.0.0.1:3260,1"));
    assert_eq!(get(&p, "X-com.example.foo"), Some("NotUnderstood"));
    assert!(p.contains(&("SendTargets".into(), "Reject".into())));
    assert_eq!(h.s.exp_cmd_sn(), sn.next());
}

#[test]
fn transmit_queue_high_water_mark_pauses_decoding() {
    let mut cfg = config();
    cfg.max_queued_transmits = 2;
    let mut h = ffp(cfg);
    let mut b = BytesMut::new();
    for i in 0..5 {
        let n = nop_out(&mut h, true, 100 + i, NO_TAG);
        Pdu::new(n, Bytes::new())
            .encode(&mut b, Digests::NONE)
            .unwrap();
    }
    let now = h.now;
    h.s.handle_input(now, &mut b);
    assert_eq!(b.len(), 3 * 48);
    assert_eq!(h.recv().len(), 2);
    h.s.handle_input(now, &mut b);
    assert_eq!(h.recv().len(), 2);
    h.s.handle_input(now, &mut b);
    assert!(b.is_empty());
    assert_eq!(h.recv().len(), 1);
}
