//! Login, discovery and logout of the initiator session against a scripted
//! target: the ESX capture replayed, every status class, redirects, multi-PDU
//! text, CHAP and mutual CHAP.

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, ProtocolError, TimerKind};
use iscsi_proto::initiator::{Auth, Event, LogoutMode, SessionConfig, TaskOutcome};
use iscsi_proto::login::chap::{ChapCredentials, ChapError, TargetChapConfig};
use iscsi_proto::login::discovery::{DiscoveredTarget, TargetAddress};
use iscsi_proto::login::negotiation::{AuthMethod, TargetConfig};
use iscsi_proto::login::status::{LoginStatus, StatusClass};
use iscsi_proto::testing::{LoginResponder, LoginScript, Pair, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header, Isid, Stage};
use iscsi_proto::wire::text::{encode_pairs, parse_pairs};
use iscsi_proto::wire::Serial;

const ESX_NAME: &str = "iqn.1998-01.com.vmware:wdc-tse-h171-3c00d9ce";

fn esx_config() -> SessionConfig {
    let mut cfg = SessionConfig::new(ESX_NAME).with_isid(Isid([0x00, 0x02, 0x3d, 0, 0, 0]));
    cfg.operational.max_recv_data_segment_length = 32768;
    cfg.operational.default_time2wait = 0;
    cfg.operational.default_time2retain = 0;
    cfg.operational.offer_markers = true;
    cfg
}

fn kv(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_pairs(pairs.iter().copied(), &mut v).unwrap();
    v
}

fn keys_of(data: &[u8]) -> Vec<String> {
    parse_pairs(data)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

fn closed_with(p: &Pair) -> Option<Option<ConnectionError>> {
    p.events.iter().find_map(|e| match e {
        Event::Closed(c) => Some(c.clone()),
        _ => None,
    })
}

/// Frames 7-37 of the ESX capture: discovery login, SendTargets=All, logout.
#[test]
fn esx_discovery_exchange_replayed() {
    let mut p = Pair::new(esx_config());
    p.flush();
    let login = p.target.expect();
    let Header::LoginRequest(req) = login.header else {
        panic!("not a login request")
    };
    // Frame 7: T=1 C=0 CSG=1 NSG=3, ISID 00023d000000, TSIH 0, CID 0,
    // CmdSN 1, ExpStatSN 0.
    assert!(req.transit && !req.cont);
    assert_eq!((req.csg, req.nsg), (Stage::Operational, Stage::FullFeature));
    assert_eq!(req.isid.0, [0x00, 0x02, 0x3d, 0, 0, 0]);
    assert_eq!((req.tsih, req.cid), (0, 0));
    assert_eq!((req.cmd_sn, req.exp_stat_sn), (Serial(1), Serial(0)));
    // Frame 8: the same keys as ESX, with the same values.
    let pairs = parse_pairs(&login.data).unwrap();
    let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let mut esx = vec![
        "InitiatorName",
        "SessionType",
        "HeaderDigest",
        "DataDigest",
        "DefaultTime2Wait",
        "DefaultTime2Retain",
        "IFMarker",
        "OFMarker",
        "ErrorRecoveryLevel",
        "MaxRecvDataSegmentLength",
    ];
    esx.sort_unstable();
    assert_eq!(keys, esx);
    for (k, v) in [
        ("InitiatorName", ESX_NAME),
        ("SessionType", "Discovery"),
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("DefaultTime2Wait", "0"),
        ("DefaultTime2Retain", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("ErrorRecoveryLevel", "0"),
        ("MaxRecvDataSegmentLength", "32768"),
    ] {
        assert!(
            pairs.iter().any(|(a, b)| a == k && b == v),
            "{k}={v} missing"
        );
    }
    // Frame 11: the target's final Login Response.
    let resp = w::LoginResponse {
        transit: true,
        cont: false,
        csg: Stage::Operational,
        nsg: Stage::FullFeature,
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih: 0x000d,
        itt: req.itt,
        stat_sn: Serial(0),
        exp_cmd_sn: Serial(1),
        max_cmd_sn: Serial(0x1f),
        status_class: 0,
        status_detail: 0,
    };
    p.target.send(
        resp,
        Bytes::from(kv(&[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("ErrorRecoveryLevel", "0"),
            ("TargetPortalGroupTag", "1"),
            ("MaxRecvDataSegmentLength", "65536"),
        ])),
    );
    p.deliver();
    assert!(p.events.contains(&Event::LoggedIn { tsih: 0x0d }));
    let neg = p.session.negotiated().unwrap();
    assert_eq!(neg.target_max_recv_data_segment_length, 65536);
    assert_eq!(neg.target_portal_group_tag, Some(1));

    // Frames 32-33: SendTargets=All.
    let task = p.session.send_targets(p.now).unwrap();
    p.flush();
    let text = p.target.expect();
    let Header::TextRequest(t) = text.header else {
        panic!("not a text request")
    };
    assert!(t.final_pdu && !t.cont && !t.immediate);
    assert_eq!(t.ttt, RESERVED);
    assert_eq!(t.lun, 0);
    assert_eq!((t.cmd_sn, t.exp_stat_sn), (Serial(1), Serial(1)));
    assert_eq!(&text.data[..], b"SendTargets=All\0");
    // Frame 35.
    let tr = w::TextResponse {
        final_pdu: true,
        cont: false,
        lun: 0,
        itt: t.itt,
        ttt: RESERVED,
        stat_sn: Serial(1),
        exp_cmd_sn: Serial(2),
        max_cmd_sn: Serial(0x20),
    };
    p.target.send(
        tr,
        Bytes::from(kv(&[
            ("TargetName", "iqn.1992-05.com.emc:bb0050568c51390000-2"),
            ("TargetAddress", "10.131.13.10:3260,1"),
        ])),
    );
    p.deliver();
    assert_eq!(
        p.outcome(task),
        Some(&TaskOutcome::Targets(vec![DiscoveredTarget {
            name: "iqn.1992-05.com.emc:bb0050568c51390000-2".into(),
            addresses: vec![TargetAddress {
                host: "10.131.13.10".into(),
                port: Some(3260),
                portal_group_tag: Some(1),
            }],
        }]))
    );

    // Frames 36-37: logout.
    let lo = p.session.logout(p.now, LogoutMode::WaitForTasks).unwrap();
    p.flush();
    let req = p.target.expect();
    let Header::LogoutRequest(l) = req.header else {
        panic!("not a logout request")
    };
    assert!(l.immediate);
    assert_eq!(l.reason, w::LogoutReason::CloseSession);
    assert_eq!((l.cmd_sn, l.exp_stat_sn, l.cid), (Serial(2), Serial(2), 0));
    let lr = w::LogoutResponse {
        response: w::LogoutResponseCode::Success,
        itt: l.itt,
        stat_sn: Serial(2),
        exp_cmd_sn: Serial(2),
        max_cmd_sn: Serial(0x20),
        time2wait: 2,
        time2retain: 0,
    };
    p.target.send(lr, Bytes::new());
    p.deliver();
    match p.outcome(lo) {
        Some(TaskOutcome::LoggedOut(r)) => {
            assert_eq!((r.time2wait, r.time2retain), (2, 0));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(p.events.last(), Some(&Event::Closed(None)));
    assert!(p.session.is_closed());
}

fn normal() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk")
}

#[test]
fn every_failure_status_class_is_typed() {
    for (class, detail) in [
        (2u8, 0u8),
        (2, 1),
        (2, 2),
        (2, 3),
        (2, 4),
        (2, 5),
        (2, 6),
        (2, 7),
        (2, 8),
        (2, 9),
        (2, 0x0a),
        (2, 0x0b),
        (3, 0),
        (3, 1),
        (3, 2),
        (4, 7),
    ] {
        let mut p = Pair::new(normal());
        let mut r = LoginResponder::plain();
        r.script
            .push_back(LoginScript::Status(class, detail, vec![]));
        p.login_with(&mut r);
        let err = closed_with(&p).expect("closed").expect("with an error");
        match err {
            ConnectionError::LoginFailed {
                class: c,
                detail: d,
                status,
            } => {
                assert_eq!(c, StatusClass::from_u8(class));
                assert_eq!(d, detail);
                assert_eq!(status, LoginStatus::from_raw(class, detail));
            }
            other => panic!("({class},{detail}): {other:?}"),
        }
        assert!(!p.events.iter().any(|e| matches!(e, Event::LoggedIn { .. })));
    }
}

fn redirect(status: u8, addr: &str) -> LoginScript {
    LoginScript::Status(1, status, vec![("TargetAddress".into(), addr.into())])
}

#[test]
fn temporary_redirect_reconnects_to_the_new_portal() {
    let mut p = Pair::new(normal());
    let mut r = LoginResponder::plain();
    r.script.push_back(redirect(1, "10.0.0.2:3261,2"));
    p.login_with(&mut r);
    // The redirect produced a Connect; the harness reconnected; log in.
    p.login_with(&mut r);
    assert!(p.session.is_logged_in());
    assert_eq!(p.connects.len(), 2);
    let portal = p.connects[1].clone().unwrap();
    assert_eq!((portal.host.as_str(), portal.port), ("10.0.0.2", 3261));
    assert_eq!(portal.portal_group_tag, Some(2));
}

#[test]
fn permanent_redirect_ipv6_and_default_port() {
    let mut p = Pair::new(normal());
    let mut r = LoginResponder::plain();
    r.script.push_back(redirect(2, "[fe80::1]"));
    p.login_with(&mut r);
    p.login_with(&mut r);
    assert!(p.session.is_logged_in());
    let portal = p.connects[1].clone().unwrap();
    assert_eq!((portal.host.as_str(), portal.port), ("fe80::1", 3260));
    assert_eq!(p.session.target_portal(), Some(&portal));
}

#[test]
fn redirect_loop_is_an_error() {
    let mut cfg = normal();
    cfg.max_redirects = 3;
    let mut p = Pair::new(cfg);
    let mut r = LoginResponder::plain();
    for _ in 0..10 {
        r.script.push_back(redirect(1, "target.example:3260"));
    }
    for _ in 0..10 {
        p.login_with(&mut r);
        if p.session.is_closed() {
            break;
        }
    }
    assert_eq!(
        closed_with(&p),
        Some(Some(ConnectionError::TooManyRedirects(3)))
    );
    assert_eq!(p.connects.len(), 4);
}

#[test]
fn multi_pdu_login_response_is_reassembled() {
    let mut p = Pair::new(normal());
    let mut r = LoginResponder::new(
        TargetConfig {
            target_alias: Some("a-rather-long-target-alias-to-force-splitting".into()),
            ..TargetConfig::default()
        },
        None,
    );
    r.max_segment = 7;
    p.login_with(&mut r);
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    assert!(r.requests > 5, "the text took several round trips");
    // Every request answering a C=1 response was empty with C=0 and T=0.
    let neg = p.session.negotiated().unwrap();
    assert_eq!(
        neg.target_alias.as_deref(),
        Some("a-rather-long-target-alias-to-force-splitting")
    );
}

fn chap_target(mutual: bool) -> LoginResponder {
    let mut c = TargetChapConfig::new(ChapCredentials::new("alice", "initiator-secret"));
    if mutual {
        c.mutual = Some(ChapCredentials::new("target-1", "the-target-secret"));
    }
    LoginResponder::new(
        TargetConfig {
            auth_methods: vec![AuthMethod::Chap],
            ..TargetConfig::default()
        },
        Some(c),
    )
}

#[test]
fn chap_login() {
    let cfg = normal().with_auth(Auth::chap("alice", "initiator-secret"), vec![]);
    let mut p = Pair::new(cfg);
    let mut r = chap_target(false);
    p.login_with(&mut r);
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    assert_eq!(
        p.session.negotiated().unwrap().auth_method,
        AuthMethod::Chap
    );
    // The first request offered CHAP,None in the security stage.
    let first = &p.target.log[0];
    let Header::LoginRequest(req) = first.header else {
        panic!()
    };
    assert_eq!(req.csg, Stage::Security);
    let pairs = parse_pairs(&first.data).unwrap();
    assert!(pairs.contains(&("AuthMethod".into(), "CHAP,None".into())));
}

#[test]
fn mutual_chap_login() {
    let cfg = normal().with_auth(
        Auth::mutual_chap("alice", "initiator-secret", "target-1", "the-target-secret"),
        (100..116).collect(),
    );
    let mut p = Pair::new(cfg);
    let mut r = chap_target(true);
    p.login_with(&mut r);
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    let sent: Vec<String> = p
        .target
        .log
        .iter()
        .flat_map(|pdu| keys_of(&pdu.data))
        .collect();
    assert!(
        sent.contains(&"CHAP_C".to_string()),
        "we challenged the target"
    );
}

#[test]
fn wrong_mutual_chap_response_is_refused() {
    let cfg = normal().with_auth(
        Auth::mutual_chap("alice", "initiator-secret", "target-1", "the-target-secret"),
        (100..116).collect(),
    );
    let mut p = Pair::new(cfg);
    let mut r = chap_target(true);
    r.corrupt_mutual_response = true;
    p.login_with(&mut r);
    assert!(!p.session.is_logged_in());
    assert_eq!(
        closed_with(&p),
        Some(Some(ConnectionError::Protocol(ProtocolError::Chap(
            ChapError::AuthenticationFailed
        ))))
    );
}

#[test]
fn wrong_initiator_secret_is_authentication_failure() {
    let cfg = normal().with_auth(Auth::chap("alice", "not-the-secret"), vec![]);
    let mut p = Pair::new(cfg);
    let mut r = chap_target(false);
    p.login_with(&mut r);
    match closed_with(&p) {
        Some(Some(ConnectionError::LoginFailed { status, .. })) => {
            assert_eq!(status, LoginStatus::AuthenticationFailure)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn login_timeout_fires() {
    let mut p = Pair::new(normal().with_login_timeout(Duration::from_secs(10)));
    p.flush();
    assert_eq!(p.target.pending(), 1);
    p.advance(Duration::from_secs(9));
    assert!(closed_with(&p).is_none());
    p.advance(Duration::from_secs(1));
    assert_eq!(
        closed_with(&p),
        Some(Some(ConnectionError::TimedOut(TimerKind::Login)))
    );
}

#[test]
fn digests_switch_on_after_the_final_login_response() {
    let mut cfg = normal();
    cfg.operational.header_digest = vec![iscsi_proto::login::DigestType::Crc32c];
    cfg.operational.data_digest = vec![iscsi_proto::login::DigestType::Crc32c];
    let mut p = Pair::new(cfg);
    let mut tc = TargetConfig::default();
    tc.params.header_digest = vec![iscsi_proto::login::DigestType::Crc32c];
    tc.params.data_digest = vec![iscsi_proto::login::DigestType::Crc32c];
    let mut r = LoginResponder::new(tc, None);
    p.login_with(&mut r);
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    let n = p.session.negotiated().unwrap();
    assert!(n.header_digest && n.data_digest);
    // A ping with data round-trips with both digests (the scripted target
    // decodes with digests on, so a missing digest would fail to decode).
    let t = p
        .session
        .nop_ping(p.now, Bytes::from_static(b"hello"))
        .unwrap();
    p.flush();
    let nop = p.target.expect();
    let Header::NopOut(h) = nop.header else {
        panic!()
    };
    assert_eq!(&nop.data[..], b"hello");
    p.target.nop_in_reply(&h, nop.data.clone());
    p.deliver();
    assert_eq!(
        p.outcome(t),
        Some(&TaskOutcome::Pong(Bytes::from_static(b"hello")))
    );
}

/// tgtd answers a failed login with a zeroed ISID and ITT: the status must
/// still be reported as the login failure (found against tgtd; RFC 7143
/// section 11.13.5 makes the other fields of a reject meaningless).
#[test]
fn reject_with_foreign_isid_reports_the_status() {
    let mut p = Pair::new(normal());
    p.flush();
    let login = p.target.expect();
    let Header::LoginRequest(req) = login.header else {
        panic!("not a login request")
    };
    let resp = w::LoginResponse {
        transit: false,
        cont: false,
        csg: Stage::Security,
        nsg: Stage::Security,
        version_max: 0,
        version_active: 0,
        isid: w::Isid([0; 6]),
        tsih: 0,
        itt: req.itt.wrapping_add(7),
        stat_sn: Serial(0),
        exp_cmd_sn: Serial(0),
        max_cmd_sn: Serial(0),
        status_class: 2,
        status_detail: 1,
    };
    p.target.send(resp, Bytes::new());
    p.deliver();
    match closed_with(&p).expect("closed").expect("with an error") {
        ConnectionError::LoginFailed { status, .. } => {
            assert_eq!(status, LoginStatus::AuthenticationFailure)
        }
        other => panic!("{other:?}"),
    }
}

/// `Debug` of a configuration never shows CHAP secrets (they end up in
/// logs when callers print their configuration).
#[test]
fn config_debug_redacts_secrets() {
    let cfg = SessionConfig::new("iqn.2024-01.test:i").with_auth(
        Auth::mutual_chap("user", "initiator-secret-1", "tgt", "target-secret-22"),
        b"challenge-bytes!".to_vec(),
    );
    let text = format!("{cfg:?} {:?}", cfg.auth);
    for secret in ["initiator-secret-1", "target-secret-22", "challenge-bytes!"] {
        assert!(!text.contains(secret), "{secret} in {text}");
        let bytes = format!("{:?}", secret.as_bytes());
        assert!(
            !text.contains(&bytes[1..bytes.len() - 1]),
            "{secret} bytes in {text}"
        );
    }
    assert!(text.contains("user") && text.contains("tgt"));
}
