//! The UNH-IOL "Login Phase Test Suite for iSCSI Initiators" (v3.0), test
//! by test, against a hand-scripted target: each test sends the Login
//! Responses the UNH test station would send and asserts the exact Login
//! Request fields, keys or error of our initiator. See
//! `conformance/COVERAGE.md` for the mapping of every UNH test.

use bytes::{Bytes, BytesMut};
use iscsi_proto::error::{ConnectionError, ProtocolError};
use iscsi_proto::initiator::{Auth, Event, ScsiCommand, SessionConfig, TaskOutcome};
use iscsi_proto::login::negotiation::NegotiationError;
use iscsi_proto::login::DigestType;
use iscsi_proto::testing::{Pair, RESERVED};
use iscsi_proto::wire::frame::Digests;
use iscsi_proto::wire::pdu::{self as w, Header, Stage};
use iscsi_proto::wire::text::{encode_pairs, parse_pairs};
use iscsi_proto::wire::{Pdu, Serial};

const INIT: &str = "iqn.2024-01.test:unh-init";
const TGT: &str = "iqn.2024-01.test:unh-disk";

type Pairs = Vec<(String, String)>;

fn cfg() -> SessionConfig {
    SessionConfig::new(INIT).with_target(TGT)
}

fn kv(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_pairs(pairs.iter().copied(), &mut v).unwrap();
    v
}

fn value<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The next Login Request the initiator sent, with its keys.
fn next_request(p: &mut Pair) -> (w::LoginRequest, Pairs) {
    let pdu = p.target.expect();
    let Header::LoginRequest(req) = pdu.header else {
        panic!("expected a Login Request, got {:?}", pdu.header.opcode());
    };
    (req, parse_pairs(&pdu.data).unwrap())
}

/// A fresh session and its first Login Request.
fn start(cfg: SessionConfig) -> (Pair, w::LoginRequest, Pairs) {
    let mut p = Pair::new(cfg);
    p.flush();
    let (req, pairs) = next_request(&mut p);
    (p, req, pairs)
}

/// A successful Login Response to `req`. With `transit` the target moves
/// to `nsg`; the final one (NSG=FullFeaturePhase) carries `tsih`.
#[allow(clippy::too_many_arguments)]
fn reply(
    p: &mut Pair,
    req: &w::LoginRequest,
    transit: bool,
    nsg: Stage,
    tsih: u16,
    stat_sn: u32,
    pairs: &[(&str, &str)],
) {
    let h = w::LoginResponse {
        transit,
        cont: false,
        csg: req.csg,
        nsg: if transit { nsg } else { req.csg },
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih,
        itt: req.itt,
        stat_sn: Serial(stat_sn),
        exp_cmd_sn: req.cmd_sn,
        max_cmd_sn: req.cmd_sn.plus(31),
        status_class: 0,
        status_detail: 0,
    };
    if transit && nsg == Stage::FullFeature {
        p.target.stat_sn = Serial(stat_sn).next();
        p.target.exp_cmd_sn = req.cmd_sn;
        p.target.max_cmd_sn = req.cmd_sn.plus(31);
    }
    p.target.send(h, Bytes::from(kv(pairs)));
    p.deliver();
}

/// A response that keeps the target in the current stage (T=0).
fn stay(p: &mut Pair, req: &w::LoginRequest, stat_sn: u32, pairs: &[(&str, &str)]) {
    reply(p, req, false, req.csg, 0, stat_sn, pairs);
}

/// The final response (T=1, NSG=FullFeaturePhase, TSIH 0x0d).
fn finish(p: &mut Pair, req: &w::LoginRequest, stat_sn: u32, pairs: &[(&str, &str)]) {
    reply(p, req, true, Stage::FullFeature, 0x0d, stat_sn, pairs);
}

/// One operational round: the target answers the first request with
/// `pairs` and ends the login.
fn answer_with(cfg: SessionConfig, pairs: &[(&str, &str)]) -> Pair {
    let (mut p, req, _) = start(cfg);
    finish(&mut p, &req, 0x40, pairs);
    p
}

fn answer(pairs: &[(&str, &str)]) -> Pair {
    answer_with(cfg(), pairs)
}

fn closed_with(p: &Pair) -> Option<ConnectionError> {
    p.events.iter().find_map(|e| match e {
        Event::Closed(c) => c.clone(),
        _ => None,
    })
}

/// The negotiation error the session closed with.
fn negotiation_error(p: &Pair) -> NegotiationError {
    assert!(!p.session.is_logged_in(), "the login must fail");
    match closed_with(p) {
        Some(ConnectionError::Protocol(ProtocolError::Negotiation(e))) => e,
        other => panic!("expected a negotiation error, got {other:?}"),
    }
}

/// The section of the rule violation the session closed with.
fn violation_section(p: &Pair) -> &'static str {
    match closed_with(p) {
        Some(ConnectionError::Protocol(ProtocolError::Violation { section, .. })) => section,
        other => panic!("expected a protocol violation, got {other:?}"),
    }
}

fn not_admissible(p: &Pair, key: &str) {
    match negotiation_error(p) {
        NegotiationError::NotAdmissible { key: k, .. } => assert_eq!(k, key),
        other => panic!("expected NotAdmissible for {key}, got {other:?}"),
    }
}

fn logged_in(p: &Pair) {
    assert!(p.session.is_logged_in(), "{:?}", p.events);
}

fn scsi_command(pdu: &Pdu) -> w::ScsiCommand {
    match pdu.header {
        Header::ScsiCommand(c) => c,
        h => panic!("expected a SCSI Command, got {:?}", h.opcode()),
    }
}

const TUR: [u8; 6] = [0; 6];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 4, 0];

// ---------------------------------------------------------------------
// Test #1: standard login
// ---------------------------------------------------------------------

/// UNH #1.1. RFC 7143 section 6.3: a normal session logs in with one
/// Login Request (T=1, CSG=1, NSG=3) and enters Full Feature Phase on the
/// target's final response; section 4.2.2.1: the first command carries the
/// login's CmdSN.
#[test]
fn unh_login_1_1_standard_login_reaches_full_feature_phase() {
    let (mut p, req, pairs) = start(cfg());
    assert!(req.transit && !req.cont);
    assert_eq!((req.csg, req.nsg), (Stage::Operational, Stage::FullFeature));
    assert_eq!((req.tsih, req.cid), (0, 0));
    assert_eq!((req.cmd_sn, req.exp_stat_sn), (Serial(1), Serial(0)));
    assert_eq!(value(&pairs, "SessionType"), Some("Normal"));
    finish(&mut p, &req, 0x77, &[]);
    logged_in(&p);
    assert!(p.events.contains(&Event::LoggedIn { tsih: 0x0d }));
    p.session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    p.flush();
    let c = scsi_command(&p.target.expect());
    assert_eq!(c.cmd_sn, req.cmd_sn);
    assert_eq!(c.exp_stat_sn, Serial(0x78));
}

// ---------------------------------------------------------------------
// Test #2: TSIH
// ---------------------------------------------------------------------

/// UNH #2.1. RFC 7143 section 11.12.6: a new session is requested with
/// TSIH 0; section 11.13.3: the target sets the TSIH "in the final
/// response", and the initiator keeps it for the session.
#[test]
fn unh_login_2_1_tsih_zero_then_taken_from_the_final_response() {
    let (mut p, req, _) = start(cfg());
    assert_eq!(req.tsih, 0);
    stay(&mut p, &req, 1, &[]);
    let (req2, _) = next_request(&mut p);
    assert_eq!(req2.tsih, 0, "TSIH stays 0 until the final response");
    reply(&mut p, &req2, true, Stage::FullFeature, 0x1234, 2, &[]);
    logged_in(&p);
    assert_eq!(p.session.tsih(), 0x1234);
    assert!(p.events.contains(&Event::LoggedIn { tsih: 0x1234 }));
}

/// UNH #2.2. RFC 7143 section 11.13.3: the final response of a new
/// session "MUST" carry a non-zero TSIH; TSIH 0 there ends the login.
#[test]
fn unh_login_2_2_final_response_with_tsih_zero_is_refused() {
    let (mut p, req, _) = start(cfg());
    reply(&mut p, &req, true, Stage::FullFeature, 0, 1, &[]);
    assert!(!p.session.is_logged_in());
    assert_eq!(violation_section(&p), "11.13.3");
}

// ---------------------------------------------------------------------
// Test #3: T bit
// ---------------------------------------------------------------------

/// UNH #3.1. RFC 7143 section 6.3: the stage changes only when the target
/// answers with T=1; a T=0 answer keeps the initiator in the operational
/// stage and it asks again (T=1, same CSG/NSG, same ITT and CmdSN).
#[test]
fn unh_login_3_1_no_transition_until_the_target_sets_t() {
    let (mut p, req, _) = start(cfg());
    stay(&mut p, &req, 1, &[]);
    assert!(!p.session.is_logged_in());
    let (req2, _) = next_request(&mut p);
    assert!(req2.transit);
    assert_eq!(
        (req2.csg, req2.nsg),
        (Stage::Operational, Stage::FullFeature)
    );
    assert_eq!((req2.itt, req2.cmd_sn), (req.itt, req.cmd_sn));
    finish(&mut p, &req2, 2, &[]);
    logged_in(&p);
}

/// UNH #3.2. RFC 7143 section 6.3: a target may delay the transition for
/// several exchanges; the initiator waits (no Full Feature PDU, no
/// duplicate keys) and logs in when T=1 finally comes.
#[test]
fn unh_login_3_2_delayed_t_bit_is_waited_for() {
    let (mut p, mut req, _) = start(cfg());
    for sn in 1..=4u32 {
        stay(&mut p, &req, sn, &[]);
        assert!(!p.session.is_logged_in());
        let (r, pairs) = next_request(&mut p);
        assert!(r.transit && r.nsg == Stage::FullFeature);
        assert!(pairs.is_empty(), "nothing is re-offered: {pairs:?}");
        assert_eq!(p.target.pending(), 0, "one request per response");
        req = r;
    }
    finish(&mut p, &req, 5, &[]);
    logged_in(&p);
}

// ---------------------------------------------------------------------
// Tests #4 and #5: StatSN / ExpStatSN
// ---------------------------------------------------------------------

/// UNH #4.1. RFC 7143 section 11.13.4: the first Login Response carries
/// the initial StatSN (here 0); the initiator acknowledges it with
/// ExpStatSN = StatSN + 1 in its next request.
#[test]
fn unh_login_4_1_stat_sn_zero_is_acknowledged() {
    let (mut p, req, _) = start(cfg());
    stay(&mut p, &req, 0, &[]);
    let (req2, _) = next_request(&mut p);
    assert_eq!(req2.exp_stat_sn, Serial(1));
    finish(&mut p, &req2, 1, &[]);
    logged_in(&p);
    assert_eq!(p.session.exp_stat_sn(), Serial(2));
}

/// UNH #4.2. Same with a non-zero initial StatSN that wraps (RFC 1982
/// arithmetic, RFC 7143 section 4.2.2.2).
#[test]
fn unh_login_4_2_non_zero_stat_sn_is_acknowledged_across_the_wrap() {
    let (mut p, req, _) = start(cfg());
    stay(&mut p, &req, 0xffff_ffff, &[]);
    let (req2, _) = next_request(&mut p);
    assert_eq!(req2.exp_stat_sn, Serial(0));
    finish(&mut p, &req2, 0, &[]);
    logged_in(&p);
    assert_eq!(p.session.exp_stat_sn(), Serial(1));
}

/// UNH #5.1. RFC 7143 section 11.12.8: every Login Request's ExpStatSN
/// acknowledges the last Login Response (0 in the very first request); the
/// first Full Feature PDU continues from the final response's StatSN.
#[test]
fn unh_login_5_1_exp_stat_sn_in_every_login_request() {
    let (mut p, req, _) = start(cfg());
    assert_eq!(req.exp_stat_sn, Serial(0));
    stay(&mut p, &req, 0x500, &[]);
    let (req2, _) = next_request(&mut p);
    assert_eq!(req2.exp_stat_sn, Serial(0x501));
    stay(&mut p, &req2, 0x501, &[]);
    let (req3, _) = next_request(&mut p);
    assert_eq!(req3.exp_stat_sn, Serial(0x502));
    finish(&mut p, &req3, 0x502, &[]);
    let t = p.session.nop_ping(p.now, Bytes::new()).unwrap();
    p.flush();
    let Header::NopOut(n) = p.target.expect().header else {
        panic!("expected a NOP-Out")
    };
    assert_eq!(n.exp_stat_sn, Serial(0x503));
    assert!(p.outcome(t).is_none());
}

// ---------------------------------------------------------------------
// Test #6: negotiate once
// ---------------------------------------------------------------------

/// UNH #6.1. RFC 7143 section 6.2: "Neither the initiator nor the target
/// should attempt to declare or negotiate a parameter more than once
/// during login". Across a CHAP security stage and two operational rounds,
/// no key is sent twice.
#[test]
fn unh_login_6_1_no_key_is_sent_twice_during_login() {
    let c = cfg().with_auth(Auth::chap("alice", "initiator-secret"), vec![]);
    let (mut p, req, pairs1) = start(c);
    let mut all: Pairs = pairs1;
    // Security: select None, move to the operational stage.
    reply(
        &mut p,
        &req,
        true,
        Stage::Operational,
        0,
        1,
        &[("AuthMethod", "None")],
    );
    let (req2, pairs2) = next_request(&mut p);
    assert_eq!(req2.csg, Stage::Operational);
    all.extend(pairs2);
    // Answer part of the offer and stay; then end.
    stay(&mut p, &req2, 2, &[("HeaderDigest", "None")]);
    let (req3, pairs3) = next_request(&mut p);
    all.extend(pairs3);
    finish(&mut p, &req3, 3, &[("DataDigest", "None")]);
    logged_in(&p);
    let mut keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    let n = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key was sent twice: {all:?}");
}

/// UNH #6.2. RFC 7143 section 6.2: a renegotiation attempt "MUST be
/// detected"; "if detected by the initiator, the initiator MUST drop the
/// connection". ImmediateData answered in two separate responses.
#[test]
fn unh_login_6_2_key_repeated_in_separate_responses_drops_the_connection() {
    let (mut p, req, _) = start(cfg());
    stay(&mut p, &req, 1, &[("ImmediateData", "Yes")]);
    let (req2, _) = next_request(&mut p);
    finish(&mut p, &req2, 2, &[("ImmediateData", "Yes")]);
    match negotiation_error(&p) {
        NegotiationError::Duplicate { key } => assert_eq!(key, "ImmediateData"),
        other => panic!("{other:?}"),
    }
    assert!(p.session.is_closed());
}

/// UNH #6.3. The same with ImmediateData twice in one response.
#[test]
fn unh_login_6_3_key_repeated_in_one_response_drops_the_connection() {
    let p = answer(&[("ImmediateData", "Yes"), ("ImmediateData", "Yes")]);
    match negotiation_error(&p) {
        NegotiationError::Duplicate { key } => assert_eq!(key, "ImmediateData"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------
// Test #7: Login Request contents and invalid answers
// ---------------------------------------------------------------------

/// UNH #7.1. RFC 7143 section 11.12: the Login Request header (versions
/// 0, C=0, ISID as configured, a non-reserved ITT) and section 13.5/13.21:
/// the first PDU carries InitiatorName and SessionType; no key is
/// proposed with a reserved constant.
#[test]
fn unh_login_7_1_login_request_header_and_mandatory_keys() {
    let c = cfg().with_isid(w::Isid([0x40, 0x00, 0x01, 0x37, 0x00, 0x01]));
    let (_, req, pairs) = start(c);
    assert_eq!((req.version_max, req.version_min), (0, 0));
    assert!(!req.cont);
    assert_eq!(req.isid, w::Isid([0x40, 0x00, 0x01, 0x37, 0x00, 0x01]));
    assert_ne!(req.itt, RESERVED);
    assert_eq!(value(&pairs, "InitiatorName"), Some(INIT));
    assert_eq!(value(&pairs, "SessionType"), Some("Normal"));
    for (k, v) in &pairs {
        assert!(
            !matches!(v.as_str(), "Reject" | "Irrelevant" | "NotUnderstood"),
            "{k}={v}"
        );
    }
}

/// UNH #7.2. RFC 7143 section 6.2.1: the acceptor answers a list with
/// one value from it; the initiator applies the chosen value and refuses
/// one it did not offer.
#[test]
fn unh_login_7_2_list_answer_is_taken_from_the_offered_list() {
    let mut c = cfg();
    c.operational.header_digest = vec![DigestType::Crc32c, DigestType::None];
    c.operational.data_digest = vec![DigestType::Crc32c, DigestType::None];
    let (_, _, pairs) = start(c.clone());
    assert_eq!(value(&pairs, "HeaderDigest"), Some("CRC32C,None"));
    let p = answer_with(
        c.clone(),
        &[("HeaderDigest", "None"), ("DataDigest", "CRC32C")],
    );
    logged_in(&p);
    let n = p.session.negotiated().unwrap();
    assert!(!n.header_digest && n.data_digest);
    let mut c2 = cfg();
    c2.operational.header_digest = vec![DigestType::None];
    let p = answer_with(c2, &[("HeaderDigest", "CRC32C")]);
    not_admissible(&p, "HeaderDigest");
}

/// UNH #7.3. RFC 7143 section 6.2.1: an AuthMethod answer must be one of
/// the offered values; anything else ends the login.
#[test]
fn unh_login_7_3_invalid_auth_method_answer_is_refused() {
    let c = cfg().with_auth(Auth::chap("alice", "initiator-secret"), vec![]);
    for bad in ["SRP", "KRB5", "Bogus"] {
        let (mut p, req, pairs) = start(c.clone());
        assert_eq!(value(&pairs, "AuthMethod"), Some("CHAP,None"));
        stay(&mut p, &req, 1, &[("AuthMethod", bad)]);
        assert!(!p.session.is_logged_in());
        not_admissible(&p, "AuthMethod");
    }
}

/// UNH #7.4. RFC 7143 section 13.14: FirstBurstLength is a Min key
/// (section 6.2.2): an answer above our offer "is considered a protocol
/// error".
#[test]
fn unh_login_7_4_first_burst_length_answer_too_high_is_refused() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "FirstBurstLength"), Some("65536"));
    let p = answer(&[("FirstBurstLength", "131072")]);
    not_admissible(&p, "FirstBurstLength");
}

/// UNH #7.5. RFC 7143 section 13.11: ImmediateData is Yes or No and an
/// AND key: a value that is neither, or Yes against our No, is refused.
#[test]
fn unh_login_7_5_immediate_data_invalid_value_is_refused() {
    let p = answer(&[("ImmediateData", "Maybe")]);
    match negotiation_error(&p) {
        NegotiationError::InvalidValue { key, section, .. } => {
            assert_eq!((key.as_str(), section), ("ImmediateData", "13.11"))
        }
        other => panic!("{other:?}"),
    }
    let mut c = cfg();
    c.operational.immediate_data = false;
    let p = answer_with(c, &[("ImmediateData", "Yes")]);
    not_admissible(&p, "ImmediateData");
}

/// UNH #7.6. RFC 7143 section 6.2: "the answer for a key not understood
/// MUST be key=NotUnderstood"; the login goes on.
#[test]
fn unh_login_7_6_unknown_keys_are_answered_not_understood() {
    let (mut p, req, _) = start(cfg());
    stay(
        &mut p,
        &req,
        1,
        &[("X-com.example.Vendor", "1"), ("NoSuchKey", "abc")],
    );
    let (req2, pairs) = next_request(&mut p);
    assert_eq!(value(&pairs, "X-com.example.Vendor"), Some("NotUnderstood"));
    assert_eq!(value(&pairs, "NoSuchKey"), Some("NotUnderstood"));
    finish(&mut p, &req2, 2, &[]);
    logged_in(&p);
}

// ---------------------------------------------------------------------
// Test #8: invalid PDU during login
// ---------------------------------------------------------------------

/// UNH #8.1. RFC 7143 section 6.3: only Login Responses may arrive during
/// the login; anything else ends it.
#[test]
fn unh_login_8_1_non_login_pdu_during_login_drops_the_connection() {
    let (mut p, _, _) = start(cfg());
    p.target.nop_in_ping(0x10, 0, b"");
    p.deliver();
    assert!(!p.session.is_logged_in());
    assert!(p.session.is_closed());
    assert_eq!(violation_section(&p), "6.3");
}

// ---------------------------------------------------------------------
// Test #9: digests
// ---------------------------------------------------------------------

/// UNH #9.1. RFC 7143 section 13.1: HeaderDigest and DataDigest are
/// offered as lists in order of preference; with none configured the
/// initiator offers None.
#[test]
fn unh_login_9_1_digest_offers() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "HeaderDigest"), Some("None"));
    assert_eq!(value(&pairs, "DataDigest"), Some("None"));
    let mut c = cfg();
    c.operational.header_digest = vec![DigestType::Crc32c, DigestType::None];
    c.operational.data_digest = vec![DigestType::None, DigestType::Crc32c];
    let (_, _, pairs) = start(c);
    assert_eq!(value(&pairs, "HeaderDigest"), Some("CRC32C,None"));
    assert_eq!(value(&pairs, "DataDigest"), Some("None,CRC32C"));
}

/// UNH #9.2. RFC 7143 section 13.1: each digest follows the target's
/// answer from the first Full Feature PDU on: here no header digest but a
/// data digest (the scripted target decodes with exactly that setting,
/// so a wrong choice would fail to decode).
#[test]
fn unh_login_9_2_digest_answers_apply_per_kind() {
    let mut c = cfg();
    c.operational.header_digest = vec![DigestType::Crc32c, DigestType::None];
    c.operational.data_digest = vec![DigestType::Crc32c, DigestType::None];
    let mut p = answer_with(c, &[("HeaderDigest", "None"), ("DataDigest", "CRC32C")]);
    logged_in(&p);
    p.target.set_digests(Digests {
        header: false,
        data: true,
    });
    let t = p
        .session
        .nop_ping(p.now, Bytes::from_static(b"digest"))
        .unwrap();
    p.flush();
    let ping = p.target.expect();
    let Header::NopOut(h) = ping.header else {
        panic!("expected a NOP-Out")
    };
    assert_eq!(&ping.data[..], b"digest");
    p.target.nop_in_reply(&h, ping.data.clone());
    p.deliver();
    assert_eq!(
        p.outcome(t),
        Some(&TaskOutcome::Pong(Bytes::from_static(b"digest")))
    );
}

/// UNH #9.3. RFC 7143 section 13.1 / 7.8: CRC32C digests are computed and
/// checked; a PDU whose header digest does not match ends the connection.
#[test]
fn unh_login_9_3_crc32c_digests_are_checked() {
    let mut c = cfg();
    c.operational.header_digest = vec![DigestType::Crc32c];
    c.operational.data_digest = vec![DigestType::Crc32c];
    let mut p = answer_with(c, &[("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")]);
    logged_in(&p);
    p.target.set_digests(Digests {
        header: true,
        data: true,
    });
    // A well-formed target ping is answered.
    p.target.nop_in_ping(0x21, 0, b"abcd");
    p.deliver();
    let Header::NopOut(n) = p.target.expect().header else {
        panic!("expected a NOP-Out")
    };
    assert_eq!(n.ttt, 0x21);
    // The same ping with one header-digest bit flipped.
    p.target.nop_in_ping(0x22, 0, b"abcd");
    let mut bytes = BytesMut::from(&p.target.take_output()[..]);
    bytes[48] ^= 0x01;
    p.target.send_raw(&bytes);
    p.deliver();
    assert!(matches!(
        closed_with(&p),
        Some(ConnectionError::DigestFailure(_))
    ));
}

// ---------------------------------------------------------------------
// Tests #10 to #12
// ---------------------------------------------------------------------

/// UNH #10.1. RFC 7143 section 13.2: MaxConnections is a Min key; we
/// offer 1, accept 1 and refuse a larger answer.
#[test]
fn unh_login_10_1_max_connections() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "MaxConnections"), Some("1"));
    let p = answer(&[("MaxConnections", "1")]);
    logged_in(&p);
    assert_eq!(p.session.negotiated().unwrap().max_connections, 1);
    let p = answer(&[("MaxConnections", "4")]);
    not_admissible(&p, "MaxConnections");
}

/// UNH #11.1. RFC 7143 sections 13.4/13.5: InitiatorName in the first
/// Login Request of every session; TargetName in that of a normal session
/// and not in a discovery session.
#[test]
fn unh_login_11_1_initiator_name_and_target_name() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "InitiatorName"), Some(INIT));
    assert_eq!(value(&pairs, "TargetName"), Some(TGT));
    let (_, _, pairs) = start(SessionConfig::new(INIT));
    assert_eq!(value(&pairs, "InitiatorName"), Some(INIT));
    assert_eq!(value(&pairs, "SessionType"), Some("Discovery"));
    assert_eq!(value(&pairs, "TargetName"), None);
}

/// UNH #12.1. RFC 7143 section 13.25: markers are obsolete; "When an
/// IFMarker or OFMarker key is received, a compliant iSCSI implementation
/// SHOULD respond with the constant Reject value"; the login goes on.
#[test]
fn unh_login_12_1_marker_offers_are_answered_reject() {
    let (mut p, req, pairs) = start(cfg());
    assert_eq!(value(&pairs, "IFMarker"), None, "markers are not offered");
    stay(
        &mut p,
        &req,
        1,
        &[
            ("IFMarker", "Yes"),
            ("OFMarker", "Yes"),
            ("OFMarkInt", "2048~8192"),
        ],
    );
    let (req2, pairs) = next_request(&mut p);
    for k in ["IFMarker", "OFMarker", "OFMarkInt"] {
        assert_eq!(value(&pairs, k), Some("Reject"), "{k}");
    }
    finish(&mut p, &req2, 2, &[]);
    logged_in(&p);
}

// ---------------------------------------------------------------------
// Test #13: boolean negotiation
// ---------------------------------------------------------------------

/// UNH #13.1. RFC 7143 section 6.2.2: boolean keys are offered with Yes
/// or No; the configured values are what the initiator offers.
#[test]
fn unh_login_13_1_boolean_offers_carry_the_configured_values() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "InitialR2T"), Some("Yes"));
    assert_eq!(value(&pairs, "ImmediateData"), Some("Yes"));
    let mut c = cfg();
    c.operational.initial_r2t = false;
    c.operational.immediate_data = false;
    let (_, _, pairs) = start(c);
    assert_eq!(value(&pairs, "InitialR2T"), Some("No"));
    assert_eq!(value(&pairs, "ImmediateData"), Some("No"));
}

/// UNH #13.2. RFC 7143 section 6.2.2: InitialR2T is OR (No offered, Yes
/// answered: Yes) and ImmediateData AND (Yes offered, No answered: No).
#[test]
fn unh_login_13_2_legal_boolean_answers_are_applied() {
    let mut c = cfg();
    c.operational.initial_r2t = false;
    let p = answer_with(c, &[("InitialR2T", "Yes"), ("ImmediateData", "No")]);
    logged_in(&p);
    let n = p.session.negotiated().unwrap();
    assert!(n.initial_r2t);
    assert!(!n.immediate_data);
}

/// UNH #13.3. RFC 7143 section 6.2.2: an OR key offered Yes answered No,
/// or an AND key offered No answered Yes, "is considered a protocol
/// error"; so is a value that is not Yes or No.
#[test]
fn unh_login_13_3_illegal_boolean_answers_are_refused() {
    let p = answer(&[("InitialR2T", "No")]);
    not_admissible(&p, "InitialR2T");
    let mut c = cfg();
    c.operational.immediate_data = false;
    let p = answer_with(c, &[("ImmediateData", "Yes")]);
    not_admissible(&p, "ImmediateData");
    let p = answer(&[("DataPDUInOrder", "yes please")]);
    match negotiation_error(&p) {
        NegotiationError::InvalidValue { key, section, .. } => {
            assert_eq!((key.as_str(), section), ("DataPDUInOrder", "13.18"))
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------
// Tests #14 to #16: lengths
// ---------------------------------------------------------------------

/// UNH #14.1. RFC 7143 section 13.12: MaxRecvDataSegmentLength is
/// declarative; every PDU the initiator sends carries at most the
/// target's declared value (immediate data and each Data-Out), with
/// contiguous offsets.
#[test]
fn unh_login_14_1_target_mrdsl_bounds_every_data_segment() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "MaxRecvDataSegmentLength"), Some("8192"));
    let mut c = cfg();
    c.operational.initial_r2t = false;
    let mut p = answer_with(
        c,
        &[
            ("MaxRecvDataSegmentLength", "512"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
        ],
    );
    logged_in(&p);
    assert_eq!(
        p.session
            .negotiated()
            .unwrap()
            .target_max_recv_data_segment_length,
        512
    );
    let data: Vec<u8> = (0..2048u32).map(|i| i as u8).collect();
    p.session
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
    let cmd = p.target.expect();
    assert!(cmd.data.len() <= 512);
    let mut got = cmd.data.to_vec();
    while let Some(pdu) = p.target.recv() {
        let Header::DataOut(d) = pdu.header else {
            panic!("expected Data-Out")
        };
        assert!(pdu.data.len() <= 512, "Data-Out of {}", pdu.data.len());
        assert_eq!(d.buffer_offset as usize, got.len());
        got.extend_from_slice(&pdu.data);
    }
    assert_eq!(got, data);
}

/// UNH #15.1. RFC 7143 section 13.13: MaxBurstLength is a Min key: a
/// lower answer is used, a higher one refused.
#[test]
fn unh_login_15_1_max_burst_length() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "MaxBurstLength"), Some("262144"));
    let p = answer(&[("MaxBurstLength", "16384"), ("FirstBurstLength", "8192")]);
    logged_in(&p);
    let n = p.session.negotiated().unwrap();
    assert_eq!((n.max_burst_length, n.first_burst_length), (16384, 8192));
    let p = answer(&[("MaxBurstLength", "524288")]);
    not_admissible(&p, "MaxBurstLength");
}

/// UNH #16.1. RFC 7143 section 13.14: FirstBurstLength below
/// MaxBurstLength is accepted as answered.
#[test]
fn unh_login_16_1_first_burst_below_max_burst_is_accepted() {
    let p = answer(&[("FirstBurstLength", "4096"), ("MaxBurstLength", "65536")]);
    logged_in(&p);
    let n = p.session.negotiated().unwrap();
    assert_eq!((n.first_burst_length, n.max_burst_length), (4096, 65536));
}

/// UNH #16.2. RFC 7143 section 13.14: "FirstBurstLength MUST NOT exceed
/// MaxBurstLength"; answers that end that way fail the login.
#[test]
fn unh_login_16_2_first_burst_above_max_burst_is_refused() {
    let p = answer(&[("MaxBurstLength", "16384"), ("FirstBurstLength", "65536")]);
    match negotiation_error(&p) {
        NegotiationError::FirstBurstExceedsMaxBurst { first, max } => {
            assert_eq!((first, max), (65536, 16384))
        }
        other => panic!("{other:?}"),
    }
}

/// UNH #16.3. RFC 7143 section 13.14: the initiator's own offer keeps
/// FirstBurstLength at most MaxBurstLength; a configuration that would not
/// is refused before anything is sent.
#[test]
fn unh_login_16_3_first_burst_offered_by_the_initiator() {
    let mut c = cfg();
    c.operational.max_burst_length = 32768;
    c.operational.first_burst_length = 16384;
    let (_, _, pairs) = start(c);
    assert_eq!(value(&pairs, "FirstBurstLength"), Some("16384"));
    assert_eq!(value(&pairs, "MaxBurstLength"), Some("32768"));
    // A configuration the RFC forbids ("FirstBurstLength MUST NOT exceed
    // MaxBurstLength") is the caller's error, reported where the session
    // is built, never as the target's violation after a login attempt.
    let mut bad = cfg().with_isid(iscsi_proto::wire::Isid::random([1, 2, 3], 0));
    bad.operational.max_burst_length = 16384;
    bad.operational.first_burst_length = 65536;
    let r = iscsi_proto::initiator::Session::new(bad, iscsi_proto::time::Instant::ZERO);
    assert!(
        matches!(r, Err(iscsi_proto::error::ConfigError::Negotiation(_))),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------
// Tests #17 to #23: the other keys
// ---------------------------------------------------------------------

/// UNH #17.1. RFC 7143 section 13.16: DefaultTime2Retain is a Min key.
#[test]
fn unh_login_17_1_default_time2retain() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "DefaultTime2Retain"), Some("20"));
    let p = answer(&[("DefaultTime2Retain", "10")]);
    assert_eq!(p.session.negotiated().unwrap().default_time2retain, 10);
    let p = answer(&[("DefaultTime2Retain", "30")]);
    not_admissible(&p, "DefaultTime2Retain");
}

/// UNH #18.1. RFC 7143 section 13.15: DefaultTime2Wait is a Max key.
#[test]
fn unh_login_18_1_default_time2wait() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "DefaultTime2Wait"), Some("2"));
    let p = answer(&[("DefaultTime2Wait", "5")]);
    assert_eq!(p.session.negotiated().unwrap().default_time2wait, 5);
    let p = answer(&[("DefaultTime2Wait", "1")]);
    not_admissible(&p, "DefaultTime2Wait");
}

/// UNH #19.1. RFC 7143 section 13.17: MaxOutstandingR2T is a Min key.
#[test]
fn unh_login_19_1_max_outstanding_r2t() {
    let mut c = cfg();
    c.operational.max_outstanding_r2t = 4;
    let (_, _, pairs) = start(c.clone());
    assert_eq!(value(&pairs, "MaxOutstandingR2T"), Some("4"));
    let p = answer_with(c.clone(), &[("MaxOutstandingR2T", "2")]);
    assert_eq!(p.session.negotiated().unwrap().max_outstanding_r2t, 2);
    let p = answer_with(c, &[("MaxOutstandingR2T", "8")]);
    not_admissible(&p, "MaxOutstandingR2T");
}

/// UNH #20.1. RFC 7143 section 13.20: ErrorRecoveryLevel is a Min key;
/// the initiator implements level 0 and offers 0 whatever is configured,
/// so any higher answer is refused.
#[test]
fn unh_login_20_1_error_recovery_level() {
    let mut c = cfg();
    c.operational.error_recovery_level = 2;
    let (_, _, pairs) = start(c);
    assert_eq!(value(&pairs, "ErrorRecoveryLevel"), Some("0"));
    let p = answer(&[("ErrorRecoveryLevel", "0")]);
    assert_eq!(p.session.negotiated().unwrap().error_recovery_level, 0);
    let p = answer(&[("ErrorRecoveryLevel", "1")]);
    not_admissible(&p, "ErrorRecoveryLevel");
}

/// UNH #21.1. RFC 7143 section 13.21: SessionType is declared by the
/// initiator only (Normal or Discovery); a target sending it is refused.
#[test]
fn unh_login_21_1_session_type() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "SessionType"), Some("Normal"));
    let (_, _, pairs) = start(SessionConfig::new(INIT));
    assert_eq!(value(&pairs, "SessionType"), Some("Discovery"));
    let p = answer(&[("SessionType", "Discovery")]);
    assert!(matches!(
        negotiation_error(&p),
        NegotiationError::WrongSender { .. }
    ));
}

/// UNH #22.1. RFC 7143 section 12.1: AuthMethod is offered in the
/// security stage as a list; the target's choice decides whether CHAP
/// follows (CHAP_A offered) or the operational stage starts directly.
#[test]
fn unh_login_22_1_auth_method() {
    let c = cfg().with_auth(Auth::chap("alice", "initiator-secret"), vec![]);
    // Target selects None and transits.
    let (mut p, req, pairs) = start(c.clone());
    assert_eq!(req.csg, Stage::Security);
    assert_eq!(value(&pairs, "AuthMethod"), Some("CHAP,None"));
    reply(
        &mut p,
        &req,
        true,
        Stage::Operational,
        0,
        1,
        &[("AuthMethod", "None")],
    );
    let (req2, pairs2) = next_request(&mut p);
    assert_eq!(req2.csg, Stage::Operational);
    assert_eq!(value(&pairs2, "CHAP_A"), None);
    finish(&mut p, &req2, 2, &[]);
    logged_in(&p);
    // Target selects CHAP: CHAP_A follows in the security stage.
    let (mut p, req, _) = start(c);
    stay(&mut p, &req, 1, &[("AuthMethod", "CHAP")]);
    let (req2, pairs2) = next_request(&mut p);
    assert_eq!(req2.csg, Stage::Security);
    assert!(!req2.transit, "no transit before CHAP is done");
    assert_eq!(value(&pairs2, "CHAP_A"), Some("5"));
}

/// UNH #23.1 (title cut off in the transcription after "Tar"; read as the
/// target-declared keys). RFC 7143 sections 13.6 and 13.9: TargetAlias and
/// TargetPortalGroupTag declared by the target are recorded.
#[test]
fn unh_login_23_1_target_alias_and_portal_group_tag() {
    let p = answer(&[("TargetPortalGroupTag", "5"), ("TargetAlias", "disk one")]);
    logged_in(&p);
    let n = p.session.negotiated().unwrap();
    assert_eq!(n.target_portal_group_tag, Some(5));
    assert_eq!(n.target_alias.as_deref(), Some("disk one"));
}

// ---------------------------------------------------------------------
// Remaining RFC 7143 section 13 keys (the tail of the UNH table of
// contents was not readable; these close every key an initiator handles)
// ---------------------------------------------------------------------

/// RFC 7143 section 13.7: InitiatorAlias is declared when configured.
#[test]
fn unh_login_tail_initiator_alias_declared() {
    let mut c = cfg();
    c.initiator_alias = Some("host one".into());
    let (_, _, pairs) = start(c);
    assert_eq!(value(&pairs, "InitiatorAlias"), Some("host one"));
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "InitiatorAlias"), None);
}

/// RFC 7143 sections 13.18/13.19: DataPDUInOrder and DataSequenceInOrder
/// are OR keys: offered Yes, a No answer is refused.
#[test]
fn unh_login_tail_data_pdu_and_sequence_in_order() {
    let (_, _, pairs) = start(cfg());
    assert_eq!(value(&pairs, "DataPDUInOrder"), Some("Yes"));
    assert_eq!(value(&pairs, "DataSequenceInOrder"), Some("Yes"));
    let p = answer(&[("DataPDUInOrder", "No")]);
    not_admissible(&p, "DataPDUInOrder");
    let p = answer(&[("DataSequenceInOrder", "No")]);
    not_admissible(&p, "DataSequenceInOrder");
}
