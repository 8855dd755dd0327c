//! Target login phase: AuthMethod None, CHAP, mutual CHAP, failures,
//! discovery sessions with SendTargets across several PDUs.

mod target_support;

use bytes::Bytes;
use iscsi_proto::login::chap::ChapAlgorithm;
use iscsi_proto::login::{ChapCredentials, ChapSecret, LoginStatus, SessionType};
use iscsi_proto::target::{CloseReason, Event as TargetEvent, Phase, TargetAuth, TargetNode};
use iscsi_proto::wire::text::{encode_hex, parse_binary, parse_number};
use iscsi_proto::wire::*;
use target_support::*;

fn status(h: &LoginResponse) -> LoginStatus {
    LoginStatus::from_raw(h.status_class, h.status_detail)
}

#[test]
fn login_none_single_request() {
    let mut h = Harness::new(config());
    let (r, p) = h.login(&[
        ("MaxRecvDataSegmentLength", "65536"),
        ("ImmediateData", "Yes"),
    ]);
    assert_eq!(r.tsih, 1);
    assert_eq!(r.isid, h.isid);
    // ExpCmdSN is the login's CmdSN (login is immediate); window depth 32.
    assert_eq!(r.exp_cmd_sn, Serial(1000));
    assert_eq!(r.max_cmd_sn, Serial(1031));
    assert_eq!(get(&p, "TargetPortalGroupTag"), Some("1"));
    assert_eq!(get(&p, "MaxRecvDataSegmentLength"), Some("8192"));
    assert_eq!(get(&p, "ImmediateData"), Some("Yes"));
    assert_eq!(h.s.phase(), Phase::FullFeature);
    let ev = h.events();
    match ev.as_slice() {
        [TargetEvent::LoggedIn {
            session_type,
            initiator_name,
            target_name,
            tsih,
            negotiated,
            ..
        }] => {
            assert_eq!(*session_type, SessionType::Normal);
            assert_eq!(initiator_name, INITIATOR);
            assert_eq!(target_name.as_deref(), Some(TARGET));
            assert_eq!(*tsih, 1);
            assert_eq!(negotiated.initiator_max_recv_data_segment_length, 65536);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn login_two_stages_statsn_advances_and_cbit_both_ways() {
    let mut cfg = config();
    cfg.targets[0].alias = Some("x".repeat(200));
    let mut h = Harness::new(cfg);
    // Security stage, text split over two requests with C=1.
    let text = kv(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("AuthMethod", "None"),
    ]);
    let (a, b) = text.split_at(10);
    let req = h.login_req(false, true, Stage::Security, Stage::Security);
    let (r1, p1) = h.login_step(req, Bytes::copy_from_slice(a));
    assert!(p1.is_empty() && !r1.transit && !r1.cont);
    let req = h.login_req(true, false, Stage::Security, Stage::Operational);
    let (r2, p2) = h.login_step(req, Bytes::copy_from_slice(b));
    assert_eq!(r2.stat_sn, r1.stat_sn.next());
    assert!(r2.transit);
    assert_eq!((r2.csg, r2.nsg), (Stage::Security, Stage::Operational));
    assert_eq!(get(&p2, "AuthMethod"), Some("None"));
    assert_eq!(r2.tsih, 0);
    // Operational stage.
    let req = h.login_req(true, false, Stage::Operational, Stage::FullFeature);
    let (r3, p3) = h.login_step(
        req,
        kv(&[("HeaderDigest", "CRC32C,None"), ("MaxBurstLength", "65536")]),
    );
    assert_eq!(r3.stat_sn, r2.stat_sn.next());
    assert_eq!(r3.tsih, 1);
    assert_eq!(get(&p3, "HeaderDigest"), Some("None"));
    assert_eq!(get(&p3, "MaxBurstLength"), Some("65536"));
    assert_eq!(get(&p3, "TargetAlias").map(str::len), Some(200));
}

#[test]
fn long_login_response_is_split_with_c_bit() {
    let mut cfg = config();
    // 9000 bytes of alias do not fit in one 8192-byte login PDU... an
    // alias is at most 255 bytes, so use many unknown keys instead.
    cfg.targets[0].alias = None;
    let mut h = Harness::new(cfg);
    let mut keys: Vec<(String, String)> = vec![
        ("InitiatorName".into(), INITIATOR.into()),
        ("TargetName".into(), TARGET.into()),
    ];
    for i in 0..700 {
        keys.push((format!("X-vendor-key-{i:04}"), "1".into()));
    }
    let mut text = Vec::new();
    iscsi_proto::wire::text::encode_pairs(keys.iter().map(|(k, v)| (k, v)), &mut text).unwrap();
    // Our request is itself longer than 8192: send it in two C=1 pieces.
    let text = Bytes::from(text);
    let cut = 8000;
    let req = h.login_req(false, true, Stage::Operational, Stage::Operational);
    let (r, _) = h.login_step(req, text.slice(..cut));
    assert!(!r.cont);
    let req = h.login_req(true, false, Stage::Operational, Stage::FullFeature);
    h.send(req, text.slice(cut..));
    let mut got = Vec::new();
    let mut rounds = 0;
    loop {
        let pdus = h.recv();
        assert_eq!(pdus.len(), 1);
        let Header::LoginResponse(r) = pdus[0].header else {
            panic!()
        };
        assert!(pdus[0].data.len() <= 8192);
        got.extend_from_slice(&pdus[0].data);
        if !r.cont {
            assert!(r.transit && r.nsg == Stage::FullFeature);
            break;
        }
        assert!(!r.transit, "C=1 requires T=0");
        rounds += 1;
        let req = h.login_req(true, false, Stage::Operational, Stage::FullFeature);
        h.send(req, Bytes::new());
    }
    assert!(rounds >= 1);
    let p = pairs(&got);
    assert_eq!(p.iter().filter(|(_, v)| v == "NotUnderstood").count(), 700);
    assert_eq!(h.s.phase(), Phase::FullFeature);
}

fn chap_cfg(mutual: bool) -> iscsi_proto::target::SessionConfig {
    let mut cfg = config();
    let ini = ChapCredentials::new("alice", b"alice-secret-123".to_vec());
    cfg.auth = if mutual {
        TargetAuth::mutual_chap(
            ini,
            ChapCredentials::new("target1", b"target-secret-456".to_vec()),
        )
    } else {
        TargetAuth::chap(ini)
    };
    cfg
}

/// Runs the CHAP exchange up to the target's answer to CHAP_N/CHAP_R.
fn chap_login(
    h: &mut Harness,
    secret: &[u8],
    mutual: Option<(u8, &[u8])>,
) -> (LoginResponse, Vec<(String, String)>) {
    let req = h.login_req(false, false, Stage::Security, Stage::Security);
    let (r, p) = h.login_step(
        req,
        kv(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "CHAP,None"),
        ]),
    );
    assert_eq!(status(&r), LoginStatus::Success);
    assert_eq!(get(&p, "AuthMethod"), Some("CHAP"));
    let req = h.login_req(false, false, Stage::Security, Stage::Security);
    let (_, p) = h.login_step(req, kv(&[("CHAP_A", "7,5")]));
    assert_eq!(get(&p, "CHAP_A"), Some("5"));
    let id = parse_number(get(&p, "CHAP_I").unwrap()).unwrap() as u8;
    let c = parse_binary(get(&p, "CHAP_C").unwrap(), 1024).unwrap();
    assert_eq!(c.len(), 16);
    let resp = ChapAlgorithm::Md5.response(id, &ChapSecret::new(secret.to_vec()), &c);
    let hexr = encode_hex(&resp);
    let mut keys = vec![("CHAP_N", "alice"), ("CHAP_R", hexr.as_str())];
    let (mi, mc);
    if let Some((i, ch)) = mutual {
        mi = i.to_string();
        mc = encode_hex(ch);
        keys.push(("CHAP_I", &mi));
        keys.push(("CHAP_C", &mc));
    }
    let req = h.login_req(true, false, Stage::Security, Stage::Operational);
    h.login_step(req, kv(&keys))
}

#[test]
fn chap_login_succeeds() {
    let mut h = Harness::new(chap_cfg(false));
    let (r, p) = chap_login(&mut h, b"alice-secret-123", None);
    assert_eq!(status(&r), LoginStatus::Success);
    assert!(r.transit && r.nsg == Stage::Operational);
    assert!(get(&p, "CHAP_N").is_none());
    let req = h.login_req(true, false, Stage::Operational, Stage::FullFeature);
    let (r, _) = h.login_step(req, Bytes::new());
    assert!(r.transit && r.tsih == 1);
    assert_eq!(h.s.phase(), Phase::FullFeature);
}

#[test]
fn mutual_chap_login_answers_the_challenge() {
    let mut h = Harness::new(chap_cfg(true));
    let ch = [9u8; 16];
    let (r, p) = chap_login(&mut h, b"alice-secret-123", Some((77, &ch)));
    assert_eq!(status(&r), LoginStatus::Success);
    assert_eq!(get(&p, "CHAP_N"), Some("target1"));
    let want =
        ChapAlgorithm::Md5.response(77, &ChapSecret::new(b"target-secret-456".to_vec()), &ch);
    assert_eq!(
        parse_binary(get(&p, "CHAP_R").unwrap(), 1024).unwrap(),
        want
    );
}

#[test]
fn wrong_chap_secret_is_0201_and_closes() {
    let mut h = Harness::new(chap_cfg(false));
    let (r, _) = chap_login(&mut h, b"wrong-secret-000", None);
    assert_eq!(status(&r), LoginStatus::AuthenticationFailure);
    assert!(h.s.is_closed());
    let ev = h.events();
    assert!(ev.contains(&TargetEvent::LoginFailed {
        status: LoginStatus::AuthenticationFailure
    }));
    assert!(ev.contains(&TargetEvent::Closed {
        reason: CloseReason::LoginFailed(LoginStatus::AuthenticationFailure)
    }));
}

#[test]
fn chap_required_but_skipped_is_0201() {
    let mut h = Harness::new(chap_cfg(false));
    let req = h.login_req(true, false, Stage::Operational, Stage::FullFeature);
    let (r, _) = h.login_step(
        req,
        kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]),
    );
    assert_eq!(status(&r), LoginStatus::AuthenticationFailure);
    // Or transiting out of security without CHAP.
    let mut h = Harness::new(chap_cfg(false));
    let req = h.login_req(true, false, Stage::Security, Stage::Operational);
    let (r, _) = h.login_step(
        req,
        kv(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "None"),
        ]),
    );
    assert_eq!(status(&r), LoginStatus::AuthenticationFailure);
}

#[test]
fn login_failures_have_their_status() {
    let cases: Vec<(Vec<(&str, &str)>, LoginStatus)> = vec![
        (
            vec![
                ("InitiatorName", INITIATOR),
                ("TargetName", "iqn.2024-01.test:nope"),
            ],
            LoginStatus::NotFound,
        ),
        (vec![("TargetName", TARGET)], LoginStatus::MissingParameter),
        (
            vec![("InitiatorName", INITIATOR)],
            LoginStatus::MissingParameter,
        ),
        (
            vec![
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("MaxBurstLength", "1"),
            ],
            LoginStatus::Success, // answered Reject, not fatal
        ),
    ];
    for (keys, want) in cases {
        let mut h = Harness::new(config());
        let req = h.login_req(false, false, Stage::Operational, Stage::Operational);
        let (r, _) = h.login_step(req, kv(&keys));
        assert_eq!(status(&r), want, "{keys:?}");
        assert_eq!(h.s.is_closed(), want != LoginStatus::Success);
    }
}

#[test]
fn unsupported_version_and_tsih() {
    let mut h = Harness::new(config());
    let mut req = h.login_req(false, false, Stage::Operational, Stage::Operational);
    req.version_min = 1;
    req.version_max = 2;
    let (r, _) = h.login_step(req, kv(&[("InitiatorName", INITIATOR)]));
    assert_eq!(status(&r), LoginStatus::UnsupportedVersion);
    let mut h = Harness::new(config());
    let mut req = h.login_req(false, false, Stage::Operational, Stage::Operational);
    req.tsih = 9;
    let (r, _) = h.login_step(req, kv(&[("InitiatorName", INITIATOR)]));
    assert_eq!(status(&r), LoginStatus::SessionDoesNotExist);
}

#[test]
fn non_login_pdu_during_login_is_020b() {
    let mut h = Harness::new(config());
    let nop = NopOut {
        immediate: true,
        lun: 0,
        itt: 5,
        ttt: 0xffff_ffff,
        cmd_sn: Serial(0),
        exp_stat_sn: Serial(0),
    };
    h.send(nop, Bytes::new());
    let r = h.recv();
    let Header::LoginResponse(r) = r[0].header else {
        panic!()
    };
    assert_eq!(status(&r), LoginStatus::InvalidDuringLogin);
    assert_eq!(r.itt, 5);
    assert!(h.s.is_closed());
}

/// `iscsi fuzz` finding (conformance/FUZZING.md): a first PDU with the
/// target-only Reject opcode (0x3f) and ITT 0x101 in bytes 16-19. RFC 7143
/// section 6.3: only Login Requests before the Full Feature Phase (0x020b
/// "Invalid request type during login", 11.13.5); the Login Response
/// carries the request's Initiator Task Tag (11.13), which every initiator
/// BHS holds at bytes 16-19 (11.2.1) even when the opcode's own layout
/// (a Reject) has none.
#[test]
fn target_opcode_during_login_echoes_bytes_16_to_19() {
    let mut h = Harness::new(config());
    let mut bhs = [0u8; 48];
    bhs[0] = 0x40 | 0x3f;
    bhs[1] = 0x80;
    bhs[16..20].copy_from_slice(&0x101u32.to_be_bytes());
    h.send_raw(&bhs);
    let r = h.recv();
    let Header::LoginResponse(r) = r[0].header else {
        panic!("{:?}", r[0].header)
    };
    assert_eq!(status(&r), LoginStatus::InvalidDuringLogin);
    assert_eq!(r.itt, 0x101);
}

#[test]
fn stage_mismatch_and_bad_transition_are_initiator_errors() {
    let mut h = Harness::new(config());
    let req = h.login_req(false, false, Stage::Security, Stage::Security);
    let (_, _) = h.login_step(
        req,
        kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]),
    );
    // CSG=1 while the target is still in the security stage.
    let req = h.login_req(false, false, Stage::Operational, Stage::Operational);
    let (r, _) = h.login_step(req, Bytes::new());
    assert_eq!(status(&r), LoginStatus::InitiatorError);
    let mut h = Harness::new(config());
    let req = h.login_req(true, false, Stage::Operational, Stage::Security);
    let (r, _) = h.login_step(
        req,
        kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]),
    );
    assert_eq!(status(&r), LoginStatus::InitiatorError);
}

#[test]
fn digests_switch_on_after_the_final_response() {
    let mut cfg = config();
    cfg.params.header_digest = vec![iscsi_proto::login::DigestType::Crc32c];
    cfg.params.data_digest = vec![iscsi_proto::login::DigestType::Crc32c];
    let mut h = Harness::new(cfg);
    let (_, p) = h.login(&[("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")]);
    assert_eq!(get(&p, "HeaderDigest"), Some("CRC32C"));
    assert_eq!(h.tx_digests, Digests::BOTH);
    // A NOP-Out with digests is answered (with digests: the harness's
    // decoder checks them).
    let nop = NopOut {
        immediate: true,
        lun: 0,
        itt: 77,
        ttt: 0xffff_ffff,
        cmd_sn: h.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    h.send(nop, Bytes::from_static(b"ping"));
    let r = h.recv();
    assert_eq!(r.len(), 1);
    assert!(matches!(r[0].header, Header::NopIn(n) if n.itt == 77));
    assert_eq!(&r[0].data[..], b"ping");
}

fn discovery_cfg() -> iscsi_proto::target::SessionConfig {
    let mut cfg = config();
    cfg.targets = (0..40)
        .map(|i| TargetNode::new(format!("iqn.2024-01.test:target-number-{i:03}")))
        .collect();
    cfg.portals = vec![
        iscsi_proto::NetworkPortal {
            host: "127.0.0.1".into(),
            port: 3260,
            portal_group_tag: Some(1),
        },
        iscsi_proto::NetworkPortal {
            host: "::1".into(),
            port: 3260,
            portal_group_tag: Some(1),
        },
    ];
    cfg
}

fn discovery_login(h: &mut Harness) {
    let req = h.login_req(true, false, Stage::Operational, Stage::FullFeature);
    let (r, p) = h.login_step(
        req,
        kv(&[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            ("MaxRecvDataSegmentLength", "512"),
            ("InitialR2T", "No"),
        ]),
    );
    assert_eq!(status(&r), LoginStatus::Success);
    assert_eq!(get(&p, "InitialR2T"), Some("Irrelevant"));
    assert_eq!(h.s.session_type(), SessionType::Discovery);
}

#[test]
fn discovery_send_targets_spans_several_text_responses() {
    let mut h = Harness::new(discovery_cfg());
    discovery_login(&mut h);
    let itt = 0x55;
    let mut req = TextRequest {
        immediate: true,
        final_pdu: true,
        cont: false,
        lun: 0,
        itt,
        ttt: 0xffff_ffff,
        cmd_sn: h.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    h.send(req, kv(&[("SendTargets", "All")]));
    let mut text = Vec::new();
    let mut pieces = 0;
    let mut last_stat = None;
    loop {
        let r = h.recv();
        assert_eq!(r.len(), 1);
        let Header::TextResponse(t) = r[0].header else {
            panic!()
        };
        assert_eq!(t.itt, itt);
        assert!(r[0].data.len() <= 512);
        if let Some(s) = last_stat {
            assert_eq!(t.stat_sn, Serial::next(s));
        }
        last_stat = Some(t.stat_sn);
        text.extend_from_slice(&r[0].data);
        pieces += 1;
        if t.final_pdu {
            assert!(!t.cont);
            assert_eq!(t.ttt, 0xffff_ffff);
            break;
        }
        assert!(t.cont && t.ttt != 0xffff_ffff);
        req.ttt = t.ttt;
        h.send(req, Bytes::new());
    }
    assert!(pieces > 3, "{pieces}");
    let targets = iscsi_proto::login::discovery::parse_send_targets(&pairs(&text)).unwrap();
    assert_eq!(targets.len(), 40);
    assert_eq!(targets[7].name, "iqn.2024-01.test:target-number-007");
    assert_eq!(targets[7].addresses.len(), 2);
    assert_eq!(targets[7].addresses[1].host, "::1");
    assert_eq!(targets[7].addresses[1].portal_group_tag, Some(1));
}

#[test]
fn discovery_session_refuses_scsi_and_answers_logout() {
    let mut h = Harness::new(discovery_cfg());
    discovery_login(&mut h);
    h.events();
    let c = h.cmd(true, false, 512, true);
    h.send(c, Bytes::new());
    let r = h.recv();
    assert!(
        matches!(r[0].header, Header::Reject(j) if j.reason == RejectReason::CommandNotSupported)
    );
    assert_eq!(&r[0].data[..], &Header::ScsiCommand(c).to_bytes(0, 0)[..]);
    assert!(h.events().is_empty());
    // SendTargets=<one name>.
    let req = TextRequest {
        immediate: true,
        final_pdu: true,
        cont: false,
        lun: 0,
        itt: 9,
        ttt: 0xffff_ffff,
        cmd_sn: h.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    h.send(
        req,
        kv(&[
            ("SendTargets", "iqn.2024-01.test:target-number-003"),
            ("X-foo", "1"),
        ]),
    );
    let r = h.recv();
    let p = pairs(&r[0].data);
    assert_eq!(
        get(&p, "TargetName"),
        Some("iqn.2024-01.test:target-number-003")
    );
    assert_eq!(get(&p, "X-foo"), Some("NotUnderstood"));
    let lo = LogoutRequest {
        immediate: true,
        reason: LogoutReason::CloseSession,
        itt: 10,
        cid: 3,
        cmd_sn: h.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    h.send(lo, Bytes::new());
    let r = h.recv();
    assert!(
        matches!(r[0].header, Header::LogoutResponse(l) if l.response == LogoutResponseCode::Success)
    );
    assert!(h.s.is_closed());
}

#[test]
fn discovery_not_allowed_is_0209() {
    let mut cfg = config();
    cfg.allow_discovery = false;
    let mut h = Harness::new(cfg);
    let req = h.login_req(true, false, Stage::Operational, Stage::FullFeature);
    let (r, _) = h.login_step(
        req,
        kv(&[("InitiatorName", INITIATOR), ("SessionType", "Discovery")]),
    );
    assert_eq!(status(&r), LoginStatus::SessionTypeNotSupported);
}

#[test]
fn login_is_the_same_for_any_stream_cut() {
    let mut whole = Harness::new(chap_cfg(true));
    let mut cut = Harness::new(chap_cfg(true));
    cut.chunk = Some(7);
    let a = chap_login(&mut whole, b"alice-secret-123", Some((1, &[3u8; 20])));
    let b = chap_login(&mut cut, b"alice-secret-123", Some((1, &[3u8; 20])));
    assert_eq!(a, b);
}

#[test]
fn small_max_burst_without_first_burst_gets_a_first_burst_offer() {
    // RFC 7143 section 13.14: "FirstBurstLength MUST NOT exceed
    // MaxBurstLength." The initiator lowers MaxBurstLength below the
    // FirstBurstLength default (65536) and does not negotiate it: the
    // target offers FirstBurstLength and holds the transit until answered.
    let mut h = Harness::new(config());
    let keys = [
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("SessionType", "Normal"),
        ("MaxBurstLength", "16384"),
    ];
    let req = h.login_req(true, false, Stage::Operational, Stage::FullFeature);
    let (r, p) = h.login_step(req, kv(&keys));
    assert_eq!(status(&r), LoginStatus::Success, "{p:?}");
    assert!(!r.transit, "transit with an unanswered offer");
    assert_eq!(get(&p, "MaxBurstLength"), Some("16384"));
    assert_eq!(get(&p, "FirstBurstLength"), Some("16384"));
    // The answer (Min: at most the offer) ends the stage.
    let req = h.login_req(true, false, Stage::Operational, Stage::FullFeature);
    let (r, p) = h.login_step(req, kv(&[("FirstBurstLength", "8192")]));
    assert_eq!(status(&r), LoginStatus::Success, "{p:?}");
    assert!(r.transit);
    assert_eq!(r.nsg, Stage::FullFeature);
    let n = h.s.negotiated().expect("negotiated");
    assert_eq!((n.max_burst_length, n.first_burst_length), (16384, 8192));
    assert_eq!(h.s.phase(), Phase::FullFeature);
}

#[test]
fn max_burst_above_first_burst_needs_no_offer() {
    let mut h = Harness::new(config());
    let (_, p) = h.login(&[("MaxBurstLength", "131072")]);
    assert_eq!(get(&p, "FirstBurstLength"), None);
    let n = h.s.negotiated().expect("negotiated");
    assert_eq!((n.max_burst_length, n.first_burst_length), (131072, 65536));
}
