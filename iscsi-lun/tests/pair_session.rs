//! Initiator core against target core in memory: login (none, CHAP,
//! mutual CHAP, failures), discovery, digests, NOP pings both ways,
//! target-requested logout, logout.

mod pair_support;

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::error::ConnectionError;
use iscsi_proto::initiator::{Auth, Event, LogoutMode, ScsiCommand, TaskOutcome};
use iscsi_proto::login::{ChapCredentials, DigestType, LoginStatus, SessionType, StatusClass};
use iscsi_proto::scsi::cdb;
use iscsi_proto::target::{CloseReason, Event as TargetEvent, NopConfig, TargetAuth, TargetNode};
use iscsi_proto::wire::{AsyncEvent, LogoutResponseCode};
use pair_support::*;

const DISK: u64 = 1 << 20;

fn closed_reason(h: &Harness) -> Option<Option<ConnectionError>> {
    h.events.iter().find_map(|e| match e {
        Event::Closed(r) => Some(r.clone()),
        _ => None,
    })
}

fn tgt_closed(h: &Harness) -> Option<CloseReason> {
    h.tevents.iter().find_map(|e| match e {
        TargetEvent::Closed { reason } => Some(reason.clone()),
        _ => None,
    })
}

/// A read of the first block works: the session is usable.
fn smoke_read(h: &mut Harness) {
    let (r, data) = h.run(ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::read10(0, 1, Default::default())),
        BS,
    ));
    assert!(r.is_good(), "{r:?}");
    assert_eq!(data, h.disk(0, 0, BS as usize));
}

fn logout_clean(h: &mut Harness) {
    let t = h.ini.logout(h.now, LogoutMode::WaitForTasks).unwrap();
    h.pump();
    match h.outcome(t) {
        Some(TaskOutcome::LoggedOut(r)) => assert_eq!(r.response, LogoutResponseCode::Success),
        other => panic!("logout outcome {other:?}"),
    }
    assert_eq!(closed_reason(h), Some(None));
    assert!(h.ini.is_closed());
    assert!(h.tevents.contains(&TargetEvent::LoggedOut));
    assert_eq!(tgt_closed(h), Some(CloseReason::LoggedOut));
    h.assert_target_settled();
}

#[test]
fn login_without_auth_then_logout() {
    for seed in 0..8 {
        let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(seed));
        h.login();
        let tsih = h.ini.tsih();
        assert_ne!(tsih, 0);
        assert_eq!(tsih, h.tgt.tsih());
        assert!(h.events.contains(&Event::LoggedIn { tsih }));
        match &h.tevents[0] {
            TargetEvent::LoggedIn {
                session_type,
                initiator_name,
                target_name,
                isid,
                ..
            } => {
                assert_eq!(*session_type, SessionType::Normal);
                assert_eq!(initiator_name, INITIATOR);
                assert_eq!(target_name.as_deref(), Some(TARGET));
                assert_eq!(*isid, h.ini.isid());
            }
            other => panic!("first target event {other:?}"),
        }
        smoke_read(&mut h);
        logout_clean(&mut h);
    }
}

fn chap_target(mutual: bool) -> iscsi_proto::target::SessionConfig {
    let mut c = tgt_config(1);
    let ini = ChapCredentials::new("alice", b"alice-secret-123".to_vec());
    c.auth = if mutual {
        TargetAuth::mutual_chap(
            ini,
            ChapCredentials::new("target", b"target-secret-9".to_vec()),
        )
    } else {
        TargetAuth::chap(ini)
    };
    c
}

#[test]
fn login_with_chap() {
    for seed in 0..4 {
        let cfg = ini_config().with_auth(Auth::chap("alice", b"alice-secret-123".to_vec()), vec![]);
        let mut h = Harness::new(cfg, chap_target(false), &[DISK], Cuts::Random(seed));
        h.login();
        smoke_read(&mut h);
        logout_clean(&mut h);
    }
}

#[test]
fn login_with_mutual_chap() {
    for seed in 0..4 {
        let cfg = ini_config().with_auth(
            Auth::mutual_chap(
                "alice",
                b"alice-secret-123".to_vec(),
                "target",
                b"target-secret-9".to_vec(),
            ),
            (0u8..16)
                .map(|i| i.wrapping_mul(37).wrapping_add(seed as u8))
                .collect(),
        );
        let mut h = Harness::new(cfg, chap_target(true), &[DISK], Cuts::Random(seed));
        h.login();
        smoke_read(&mut h);
        logout_clean(&mut h);
    }
}

#[test]
fn chap_wrong_secret_fails_with_authentication_failure() {
    let cfg = ini_config().with_auth(Auth::chap("alice", b"not-the-secret!!".to_vec()), vec![]);
    let mut h = Harness::new(cfg, chap_target(false), &[DISK], Cuts::Random(3));
    h.pump();
    assert!(h.ini.is_closed());
    assert!(!h.events.iter().any(|e| matches!(e, Event::LoggedIn { .. })));
    match closed_reason(&h) {
        Some(Some(ConnectionError::LoginFailed { class, status, .. })) => {
            assert_eq!(class, StatusClass::InitiatorError);
            assert_eq!(status, LoginStatus::AuthenticationFailure);
        }
        other => panic!("expected LoginFailed, got {other:?}"),
    }
    assert!(h.tevents.contains(&TargetEvent::LoginFailed {
        status: LoginStatus::AuthenticationFailure
    }));
    assert!(h.tgt.is_closed());
    // Exactly one Closed event.
    let closes = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::Closed(_)))
        .count();
    assert_eq!(closes, 1);
}

#[test]
fn chap_wrong_user_fails_with_authentication_failure() {
    let cfg = ini_config().with_auth(Auth::chap("mallory", b"alice-secret-123".to_vec()), vec![]);
    let mut h = Harness::new(cfg, chap_target(false), &[DISK], Cuts::Whole);
    h.pump();
    match closed_reason(&h) {
        Some(Some(ConnectionError::LoginFailed { status, .. })) => {
            assert_eq!(status, LoginStatus::AuthenticationFailure)
        }
        other => panic!("expected LoginFailed, got {other:?}"),
    }
}

#[test]
fn mutual_chap_wrong_target_secret_is_refused_by_initiator() {
    // The target proves itself with a secret the initiator does not
    // expect: the initiator must not enter Full Feature Phase.
    let cfg = ini_config().with_auth(
        Auth::mutual_chap(
            "alice",
            b"alice-secret-123".to_vec(),
            "target",
            b"other-secret-99".to_vec(),
        ),
        vec![7; 16],
    );
    let mut h = Harness::new(cfg, chap_target(true), &[DISK], Cuts::Random(11));
    h.pump();
    assert!(h.ini.is_closed());
    assert!(!h.ini.is_logged_in());
    assert!(!h.events.iter().any(|e| matches!(e, Event::LoggedIn { .. })));
    assert!(matches!(closed_reason(&h), Some(Some(_))), "{:?}", h.events);
}

#[test]
fn chap_required_but_initiator_offers_none() {
    let mut h = Harness::new(ini_config(), chap_target(false), &[DISK], Cuts::Whole);
    h.pump();
    assert!(h.ini.is_closed());
    assert!(
        matches!(
            closed_reason(&h),
            Some(Some(ConnectionError::LoginFailed { .. }))
        ),
        "{:?}",
        h.events
    );
}

#[test]
fn unknown_target_name_is_not_found() {
    let cfg =
        iscsi_proto::initiator::SessionConfig::new(INITIATOR).with_target("iqn.2026-01.test:nope");
    let mut h = Harness::new(cfg, tgt_config(1), &[DISK], Cuts::Whole);
    h.pump();
    match closed_reason(&h) {
        Some(Some(ConnectionError::LoginFailed { status, .. })) => {
            assert_eq!(status, LoginStatus::NotFound)
        }
        other => panic!("expected LoginFailed NotFound, got {other:?}"),
    }
}

#[test]
fn discovery_send_targets_records_parsed() {
    for seed in [0u64, 1, 2, 99] {
        let mut tc = tgt_config(1);
        tc.targets.push(TargetNode {
            name: "iqn.2026-01.test.pair:second".into(),
            alias: None,
            luns: vec![0],
        });
        tc.portals = vec![
            iscsi_proto::NetworkPortal {
                host: "192.0.2.10".into(),
                port: 3260,
                portal_group_tag: Some(1),
            },
            iscsi_proto::NetworkPortal {
                host: "2001:db8::1".into(),
                port: 3261,
                portal_group_tag: Some(2),
            },
        ];
        let cfg = iscsi_proto::initiator::SessionConfig::new(INITIATOR);
        assert!(cfg.is_discovery());
        let mut h = Harness::new(cfg, tc, &[DISK], Cuts::Random(seed));
        h.login();
        assert!(matches!(
            h.tevents[0],
            TargetEvent::LoggedIn {
                session_type: SessionType::Discovery,
                ..
            }
        ));
        // SCSI commands are refused locally in a discovery session.
        assert!(h
            .ini
            .submit(
                h.now,
                ScsiCommand::new(
                    iscsi_proto::scsi::Lun::from_u64(lun(0)),
                    Bytes::from_static(&[0; 6])
                )
            )
            .is_err());
        let t = h.ini.send_targets(h.now).unwrap();
        h.pump();
        let recs = match h.outcome(t) {
            Some(TaskOutcome::Targets(r)) => r.clone(),
            other => panic!("send targets outcome {other:?}"),
        };
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert_eq!(recs[0].name, TARGET);
        assert_eq!(recs[1].name, "iqn.2026-01.test.pair:second");
        for r in &recs {
            assert_eq!(r.addresses.len(), 2, "{r:?}");
            assert_eq!(r.addresses[0].host, "192.0.2.10");
            assert_eq!(r.addresses[0].port, Some(3260));
            assert_eq!(r.addresses[0].portal_group_tag, Some(1));
            assert_eq!(r.addresses[1].host, "2001:db8::1");
            assert_eq!(r.addresses[1].port, Some(3261));
            assert_eq!(r.addresses[1].portal_group_tag, Some(2));
        }
        logout_clean(&mut h);
    }
}

#[test]
fn discovery_refused_when_not_allowed() {
    let mut tc = tgt_config(1);
    tc.allow_discovery = false;
    let cfg = iscsi_proto::initiator::SessionConfig::new(INITIATOR);
    let mut h = Harness::new(cfg, tc, &[DISK], Cuts::Whole);
    h.pump();
    match closed_reason(&h) {
        Some(Some(ConnectionError::LoginFailed { status, .. })) => {
            assert_eq!(status, LoginStatus::SessionTypeNotSupported)
        }
        other => panic!("expected LoginFailed, got {other:?}"),
    }
}

#[test]
fn crc32c_header_and_data_digests() {
    for seed in 0..4 {
        let mut tc = tgt_config(1);
        tc.params.header_digest = vec![DigestType::Crc32c, DigestType::None];
        tc.params.data_digest = vec![DigestType::Crc32c, DigestType::None];
        tc.params.max_recv_data_segment_length = 4096;
        let mut ic = ini_config();
        ic.operational.header_digest = vec![DigestType::Crc32c];
        ic.operational.data_digest = vec![DigestType::Crc32c];
        ic.operational.max_recv_data_segment_length = 2048;
        let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(seed));
        h.login();
        let n = h.ini.negotiated().unwrap();
        assert!(n.header_digest && n.data_digest);
        let tn = h.tgt.negotiated().unwrap();
        assert!(tn.header_digest && tn.data_digest);

        // Writes and reads spanning several PDUs, all with digests.
        let data = pattern(seed, 20 * 1024);
        let (r, _) = h.run(ScsiCommand::write(
            iscsi_proto::scsi::Lun::from_u64(lun(0)),
            Bytes::copy_from_slice(&cdb::write10(8, 40, Default::default())),
            data.clone(),
        ));
        assert!(r.is_good(), "{r:?}");
        assert_eq!(h.disk(0, 8 * 512, data.len()), data[..]);
        let (r, back) = h.run(ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(lun(0)),
            Bytes::copy_from_slice(&cdb::read10(8, 40, Default::default())),
            20 * 1024,
        ));
        assert!(r.is_good(), "{r:?}");
        assert_eq!(back, data[..]);

        // Every Full Feature Phase PDU carried a 4-byte header digest, and
        // a data segment was followed by padding plus a 4-byte data digest.
        let ffp_ini: Vec<_> = h.ini_pdus.iter().filter(|s| s.opcode != 0x03).collect();
        assert!(!ffp_ini.is_empty());
        for s in ffp_ini {
            assert_eq!(s.header_len, 48 + 4, "{s:?}");
            let pad = (4 - s.dsl as usize % 4) % 4;
            let trailer = if s.dsl > 0 { pad + 4 } else { 0 };
            assert_eq!(s.wire_len, 52 + s.dsl as usize + trailer, "{s:?}");
        }
        let data_in = h.tgt_sent(op::DATA_IN);
        assert!(data_in.len() >= 10, "20 KiB in segments of <= 2 KiB");
        for s in h.tgt_pdus.iter().filter(|s| s.opcode != 0x23) {
            assert_eq!(s.header_len, 52, "{s:?}");
            assert!(
                s.dsl <= 2048,
                "segment above the initiator's MaxRecvDataSegmentLength"
            );
        }
        logout_clean(&mut h);
    }
}

#[test]
fn header_digest_only() {
    let mut tc = tgt_config(1);
    tc.params.header_digest = vec![DigestType::Crc32c];
    let mut ic = ini_config();
    ic.operational.header_digest = vec![DigestType::Crc32c, DigestType::None];
    let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(5));
    h.login();
    let n = h.ini.negotiated().unwrap();
    assert!(n.header_digest && !n.data_digest);
    smoke_read(&mut h);
    let s = h.ini_sent(op::SCSI_CMD);
    assert_eq!(s[0].header_len, 52);
    logout_clean(&mut h);
}

#[test]
fn target_nop_in_pings_answered_while_idle() {
    let mut tc = tgt_config(1);
    tc.nop = Some(NopConfig {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(3),
    });
    let mut h = Harness::new(ini_config(), tc, &[DISK], Cuts::Random(21));
    h.login();
    // A minute of idleness: a ping every ~5 s, each answered in time.
    h.advance(Duration::from_secs(60));
    let pings: Vec<_> = h
        .tgt_sent(op::NOP_IN)
        .into_iter()
        .filter(|s| s.ttt != 0xffff_ffff)
        .map(|s| s.ttt)
        .collect();
    assert!(pings.len() >= 10, "only {} pings", pings.len());
    // RFC 7143 section 11.18: the answer echoes the Target Transfer Tag
    // with ITT 0xffffffff.
    let answers: Vec<_> = h
        .ini_sent(op::NOP_OUT)
        .into_iter()
        .filter(|s| s.ttt != 0xffff_ffff)
        .collect();
    assert_eq!(answers.len(), pings.len());
    for (a, p) in answers.iter().zip(&pings) {
        assert_eq!(a.ttt, *p);
        assert_eq!(a.itt, 0xffff_ffff);
        assert!(a.immediate);
    }
    assert!(!h.tgt.is_closed(), "{:?}", tgt_closed(&h));
    assert!(h.ini.is_logged_in());
    // No task events from the pings.
    assert!(h.outcomes.is_empty());
    smoke_read(&mut h);
    logout_clean(&mut h);
}

#[test]
fn initiator_keepalive_pings() {
    let ic = ini_config().with_keepalive(Duration::from_secs(10), Duration::from_secs(5));
    let mut h = Harness::new(ic, tgt_config(1), &[DISK], Cuts::Random(8));
    h.login();
    h.advance(Duration::from_secs(95));
    let pings: Vec<_> = h
        .ini_sent(op::NOP_OUT)
        .into_iter()
        .filter(|s| s.itt != 0xffff_ffff)
        .cloned()
        .collect();
    assert!(pings.len() >= 8, "only {} keepalives", pings.len());
    let pongs = h
        .tgt_sent(op::NOP_IN)
        .into_iter()
        .filter(|s| s.itt != 0xffff_ffff)
        .count();
    assert_eq!(pongs, pings.len());
    assert!(h.ini.is_logged_in());
    assert!(!h.tgt.is_closed());
    // Keepalives are internal: no task completions surface.
    assert!(h.outcomes.is_empty());

    // An explicit ping is a task and completes with the echoed data.
    let t = h
        .ini
        .nop_ping(h.now, Bytes::from_static(b"hello pair"))
        .unwrap();
    h.pump();
    assert_eq!(
        h.outcome(t),
        Some(&TaskOutcome::Pong(Bytes::from_static(b"hello pair")))
    );
    logout_clean(&mut h);
}

#[test]
fn keepalive_and_target_nop_together() {
    let mut tc = tgt_config(1);
    tc.nop = Some(NopConfig {
        interval: Duration::from_secs(7),
        timeout: Duration::from_secs(2),
    });
    let ic = ini_config().with_keepalive(Duration::from_secs(3), Duration::from_secs(2));
    let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(4));
    h.login();
    h.advance(Duration::from_secs(120));
    assert!(h.ini.is_logged_in());
    assert!(!h.tgt.is_closed());
    smoke_read(&mut h);
    logout_clean(&mut h);
}

#[test]
fn target_requested_logout_is_honoured() {
    for seed in 0..4 {
        let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(seed));
        h.login();
        // A command in flight when the request arrives still completes.
        h.hold = true;
        let t = h.submit(ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(lun(0)),
            Bytes::copy_from_slice(&cdb::read10(0, 4, Default::default())),
            2048,
        ));
        h.pump();
        assert_eq!(h.held.len(), 1);
        h.tgt.request_logout(10).unwrap();
        h.pump();
        let notice = h
            .events
            .iter()
            .find_map(|e| match e {
                Event::AsyncEvent(n) => Some(n.clone()),
                _ => None,
            })
            .expect("async event");
        assert_eq!(notice.event, AsyncEvent::LogoutRequested);
        assert_eq!(notice.parameters[2], 10);
        // New work is refused while the logout is pending.
        assert!(h
            .ini
            .submit(
                h.now,
                ScsiCommand::new(
                    iscsi_proto::scsi::Lun::from_u64(lun(0)),
                    Bytes::copy_from_slice(&cdb::test_unit_ready())
                )
            )
            .is_err());
        // The logout waits for the outstanding task.
        assert!(h.ini_sent(op::LOGOUT_REQ).is_empty());
        h.hold = false;
        h.release();
        assert!(h.scsi(t).is_good());
        assert_eq!(h.ini_sent(op::LOGOUT_REQ).len(), 1);
        assert_eq!(closed_reason(&h), Some(None));
        assert!(h.tevents.contains(&TargetEvent::LoggedOut));
        h.assert_target_settled();
    }
}

#[test]
fn target_requested_logout_deadline_abandons_stuck_tasks() {
    let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(2));
    h.login();
    h.hold = true;
    let t = h.submit(ScsiCommand::new(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::test_unit_ready()),
    ));
    h.pump();
    h.tgt.request_logout(4).unwrap();
    h.pump();
    assert!(h.ini_sent(op::LOGOUT_REQ).is_empty());
    // Parameter3 seconds pass: the initiator logs out anyway.
    h.advance(Duration::from_secs(5));
    assert_eq!(h.ini_sent(op::LOGOUT_REQ).len(), 1);
    assert!(
        matches!(h.outcome(t), Some(TaskOutcome::Failed(_))),
        "{:?}",
        h.outcome(t)
    );
    assert_eq!(closed_reason(&h), Some(None));
    // The target aborted the held command when the connection ended.
    assert!(h.held.is_empty());
    h.assert_target_settled();
}

#[test]
fn app_adopts_target_requested_logout() {
    let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Whole);
    h.login();
    h.hold = true;
    h.submit(ScsiCommand::new(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::test_unit_ready()),
    ));
    h.pump();
    h.tgt.request_logout(30).unwrap();
    h.pump();
    let lt = h.ini.logout(h.now, LogoutMode::AbortTasks).unwrap();
    h.pump();
    assert!(matches!(h.outcome(lt), Some(TaskOutcome::LoggedOut(_))));
    assert_eq!(closed_reason(&h), Some(None));
    assert_eq!(h.outcomes.len(), 2);
    h.assert_target_settled();
}

#[test]
fn logout_waits_for_tasks() {
    let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(77));
    h.login();
    h.hold = true;
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            h.submit(ScsiCommand::read(
                iscsi_proto::scsi::Lun::from_u64(lun(0)),
                Bytes::copy_from_slice(&cdb::read10(i, 1, Default::default())),
                512,
            ))
        })
        .collect();
    h.pump();
    let lt = h.ini.logout(h.now, LogoutMode::WaitForTasks).unwrap();
    h.pump();
    assert!(h.ini_sent(op::LOGOUT_REQ).is_empty());
    assert!(h.outcome(lt).is_none());
    h.hold = false;
    h.release();
    for t in tasks {
        assert!(h.scsi(t).is_good());
    }
    assert!(matches!(h.outcome(lt), Some(TaskOutcome::LoggedOut(_))));
    assert_eq!(closed_reason(&h), Some(None));
    h.assert_target_settled();
}

#[test]
fn logout_abort_tasks() {
    let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(78));
    h.login();
    h.hold = true;
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            h.submit(ScsiCommand::read(
                iscsi_proto::scsi::Lun::from_u64(lun(0)),
                Bytes::copy_from_slice(&cdb::read10(i, 1, Default::default())),
                512,
            ))
        })
        .collect();
    h.pump();
    let lt = h.ini.logout(h.now, LogoutMode::AbortTasks).unwrap();
    h.pump();
    for t in &tasks {
        assert_eq!(
            h.outcome(*t),
            Some(&TaskOutcome::Failed(
                iscsi_proto::error::TaskError::LoggedOut
            ))
        );
    }
    assert!(matches!(h.outcome(lt), Some(TaskOutcome::LoggedOut(_))));
    assert_eq!(closed_reason(&h), Some(None));
    // The target dropped the held commands when the session ended.
    assert!(h.held.is_empty());
    h.assert_target_settled();
    assert!(h.ini.logout(h.now, LogoutMode::AbortTasks).is_err());
}
