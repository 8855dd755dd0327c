//! The UNH-IOL "CHAP Test Suite for iSCSI Initiators" (v3.1), driven
//! through the initiator session against a hand-scripted target: the
//! target's CHAP_A, CHAP_I, CHAP_C (step 2) and, for mutual CHAP, CHAP_N
//! and CHAP_R (step 4) are chosen per test, and the initiator's keys or
//! the exact error it closes with are asserted (RFC 7143 section 12.1.3,
//! section 9.2.1 for reflection). See `conformance/COVERAGE.md`.

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, ProtocolError};
use iscsi_proto::initiator::{Auth, Event, Recovery, SessionConfig};
use iscsi_proto::login::chap::{
    ChapAlgorithm, ChapCredentials, ChapError, ChapSecret, TargetChapConfig,
};
use iscsi_proto::login::negotiation::{AuthMethod, TargetConfig};
use iscsi_proto::testing::{LoginResponder, Pair};
use iscsi_proto::wire::pdu::{self as w, Header, Stage};
use iscsi_proto::wire::text::{encode_hex, encode_pairs, parse_binary, parse_pairs};
use iscsi_proto::wire::Serial;

const USER: &str = "alice";
const SECRET: &str = "initiator-secret";
const TUSER: &str = "target-1";
const TSECRET: &str = "the-target-secret";
const CHALLENGE: [u8; 16] = [0x33; 16];

type Pairs = Vec<(String, String)>;

fn base() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:unh-init").with_target("iqn.2024-01.test:unh-disk")
}

fn one_way() -> SessionConfig {
    base().with_auth(Auth::chap(USER, SECRET), vec![])
}

/// Mutual CHAP; our challenge is `mine` (its first byte is our CHAP_I).
fn mutual(mine: Vec<u8>) -> SessionConfig {
    base().with_auth(Auth::mutual_chap(USER, SECRET, TUSER, TSECRET), mine)
}

fn mutual_default() -> SessionConfig {
    mutual((100..116).collect())
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

fn next_request(p: &mut Pair) -> (w::LoginRequest, Pairs) {
    let pdu = p.target.expect();
    let Header::LoginRequest(req) = pdu.header else {
        panic!("expected a Login Request, got {:?}", pdu.header.opcode());
    };
    (req, parse_pairs(&pdu.data).unwrap())
}

/// A security-stage Login Response; with `transit` the target moves on to
/// the operational stage.
fn reply(p: &mut Pair, req: &w::LoginRequest, transit: bool, stat_sn: u32, pairs: &[(&str, &str)]) {
    let h = w::LoginResponse {
        transit,
        cont: false,
        csg: Stage::Security,
        nsg: if transit {
            Stage::Operational
        } else {
            Stage::Security
        },
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih: 0,
        itt: req.itt,
        stat_sn: Serial(stat_sn),
        exp_cmd_sn: req.cmd_sn,
        max_cmd_sn: req.cmd_sn,
        status_class: 0,
        status_detail: 0,
    };
    p.target.send(h, Bytes::from(kv(pairs)));
    p.deliver();
}

/// Steps 0-1: AuthMethod=CHAP selected; returns the request carrying the
/// initiator's CHAP_A.
fn to_challenge(cfg: SessionConfig) -> (Pair, w::LoginRequest, Pairs) {
    let mut p = Pair::new(cfg);
    p.flush();
    let (req, pairs) = next_request(&mut p);
    assert_eq!(req.csg, Stage::Security);
    assert_eq!(
        value(&pairs, "AuthMethod").map(|v| v.contains("CHAP")),
        Some(true)
    );
    reply(&mut p, &req, false, 1, &[("AuthMethod", "CHAP")]);
    let (req2, pairs2) = next_request(&mut p);
    (p, req2, pairs2)
}

/// Step 2 with the given keys; returns the pair (closed or waiting).
fn challenge(cfg: SessionConfig, keys: &[(&str, &str)]) -> Pair {
    let (mut p, req, _) = to_challenge(cfg);
    reply(&mut p, &req, false, 2, keys);
    p
}

/// Step 2 with a valid MD5 challenge; returns the step-3 request.
fn to_step3(cfg: SessionConfig, id: &str, c: &[u8]) -> (Pair, w::LoginRequest, Pairs) {
    let (mut p, req, _) = to_challenge(cfg);
    reply(
        &mut p,
        &req,
        false,
        2,
        &[("CHAP_A", "5"), ("CHAP_I", id), ("CHAP_C", &encode_hex(c))],
    );
    let (req3, pairs3) = next_request(&mut p);
    (p, req3, pairs3)
}

/// Mutual CHAP through step 3; returns our CHAP_I and CHAP_C as sent.
fn to_step4(cfg: SessionConfig) -> (Pair, w::LoginRequest, u8, Vec<u8>) {
    let (p, req, pairs) = to_step3(cfg, "1", &CHALLENGE);
    let id: u8 = value(&pairs, "CHAP_I").unwrap().parse().unwrap();
    let c = parse_binary(value(&pairs, "CHAP_C").unwrap(), 1024).unwrap();
    (p, req, id, c)
}

/// The target's correct mutual response to our challenge.
fn target_response(id: u8, c: &[u8]) -> String {
    encode_hex(&ChapAlgorithm::Md5.response(id, &ChapSecret::new(TSECRET), c))
}

fn our_response(id: u8, c: &[u8]) -> String {
    encode_hex(&ChapAlgorithm::Md5.response(id, &ChapSecret::new(SECRET), c))
}

fn closed_with(p: &Pair) -> Option<ConnectionError> {
    p.events.iter().find_map(|e| match e {
        Event::Closed(c) => c.clone(),
        _ => None,
    })
}

/// The CHAP error the session closed with (it must not be logged in).
fn chap_error(p: &Pair) -> ChapError {
    assert!(!p.session.is_logged_in());
    match closed_with(p) {
        Some(ConnectionError::Protocol(ProtocolError::Chap(e))) => e,
        other => panic!("expected a CHAP error, got {other:?}"),
    }
}

/// Finishes a login whose security stage just succeeded.
fn finish_operational(p: &mut Pair) {
    let (req, _) = next_request(p);
    assert_eq!(req.csg, Stage::Operational);
    let h = w::LoginResponse {
        transit: true,
        cont: false,
        csg: Stage::Operational,
        nsg: Stage::FullFeature,
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih: 9,
        itt: req.itt,
        stat_sn: Serial(9),
        exp_cmd_sn: req.cmd_sn,
        max_cmd_sn: req.cmd_sn.plus(8),
        status_class: 0,
        status_detail: 0,
    };
    p.target.send(h, Bytes::new());
    p.deliver();
    assert!(p.session.is_logged_in(), "{:?}", p.events);
}

// ---------------------------------------------------------------------
// Group 1: CHAP_A
// ---------------------------------------------------------------------

/// UNH #1.1. RFC 7143 section 12.1.3: the initiator offers CHAP_A with MD5
/// (5) ("initiators MUST always offer it"); with the target's choice it
/// answers CHAP_N and CHAP_R = MD5(I || secret || C), then may transit.
#[test]
fn unh_chap_1_1_valid_chap_a_gets_a_correct_response() {
    let (_, req, pairs) = to_challenge(one_way());
    assert_eq!(value(&pairs, "CHAP_A"), Some("5"));
    assert!(!req.transit, "no transit before the challenge");
    let (mut p, req3, pairs3) = to_step3(one_way(), "9", &CHALLENGE);
    assert_eq!(value(&pairs3, "CHAP_N"), Some(USER));
    assert_eq!(
        value(&pairs3, "CHAP_R"),
        Some(our_response(9, &CHALLENGE).as_str())
    );
    assert_eq!(value(&pairs3, "CHAP_I"), None, "one-way CHAP");
    assert!(req3.transit && req3.nsg == Stage::Operational);
    reply(&mut p, &req3, true, 3, &[]);
    finish_operational(&mut p);
}

/// UNH #1.2.1. RFC 7143 section 12.1.3: the target's CHAP_A "is one of
/// A1,A2... that were proposed by the initiator"; an unknown or unoffered
/// number ends the login.
#[test]
fn unh_chap_1_2_1_invalid_numeric_chap_a_is_refused() {
    for a in ["99", "7", "0"] {
        let n: u64 = a.parse().unwrap();
        let p = challenge(
            one_way(),
            &[("CHAP_A", a), ("CHAP_I", "1"), ("CHAP_C", "0x0102030405")],
        );
        assert_eq!(chap_error(&p), ChapError::AlgorithmNotOffered(n), "{a}");
    }
}

/// UNH #1.2.2. CHAP_A is a number (RFC 7143 section 12.1.3); a
/// non-numeric value is malformed.
#[test]
fn unh_chap_1_2_2_non_numeric_chap_a_is_refused() {
    let p = challenge(
        one_way(),
        &[
            ("CHAP_A", "MD5"),
            ("CHAP_I", "1"),
            ("CHAP_C", "0x0102030405"),
        ],
    );
    assert!(matches!(
        chap_error(&p),
        ChapError::Malformed { key: "CHAP_A", .. }
    ));
}

/// UNH #1.3. RFC 7143 section 12.1.3 fixes the order: step 2 "MUST"
/// carry CHAP_A with CHAP_I and CHAP_C; a challenge without it ends the
/// login.
#[test]
fn unh_chap_1_3_chap_a_missing_from_the_challenge_is_refused() {
    let p = challenge(one_way(), &[("CHAP_I", "1"), ("CHAP_C", "0x0102030405")]);
    assert_eq!(chap_error(&p), ChapError::MissingKey("CHAP_A"));
}

// ---------------------------------------------------------------------
// Group 2: CHAP_I
// ---------------------------------------------------------------------

/// UNH #2.1. CHAP_I is one octet (RFC 1994): 0 and 255 are valid and the
/// response is computed over that identifier.
#[test]
fn unh_chap_2_1_valid_chap_i_values() {
    for id in [0u8, 255] {
        let (_, _, pairs) = to_step3(one_way(), &id.to_string(), &CHALLENGE);
        assert_eq!(
            value(&pairs, "CHAP_R"),
            Some(our_response(id, &CHALLENGE).as_str())
        );
    }
}

/// UNH #2.2. An identifier outside 0..=255 or not a number is refused.
#[test]
fn unh_chap_2_2_invalid_chap_i_is_refused() {
    let p = challenge(
        one_way(),
        &[("CHAP_A", "5"), ("CHAP_I", "256"), ("CHAP_C", "0x0102")],
    );
    assert_eq!(chap_error(&p), ChapError::BadIdentifier(256));
    let p = challenge(
        one_way(),
        &[("CHAP_A", "5"), ("CHAP_I", "one"), ("CHAP_C", "0x0102")],
    );
    assert!(matches!(
        chap_error(&p),
        ChapError::Malformed { key: "CHAP_I", .. }
    ));
}

/// UNH #2.3. A challenge without CHAP_I (out of order) is refused.
#[test]
fn unh_chap_2_3_chap_i_missing_from_the_challenge_is_refused() {
    let p = challenge(one_way(), &[("CHAP_A", "5"), ("CHAP_C", "0x0102")]);
    assert_eq!(chap_error(&p), ChapError::MissingKey("CHAP_I"));
}

/// UNH #2.4 (informative) and #2.5. With mutual CHAP our CHAP_I is our
/// own (the first byte of the caller's random challenge bytes), never a
/// copy of the target's; an equal identifier by chance is legal (only a
/// reused challenge is forbidden, RFC 7143 section 9.2.1).
#[test]
fn unh_chap_2_5_our_chap_i_is_not_reflected_from_the_target() {
    let (_, _, pairs) = to_step3(mutual_default(), "7", &CHALLENGE);
    assert_eq!(value(&pairs, "CHAP_I"), Some("100"));
    // Same identifier by chance, different challenge: accepted.
    let (mut p, req, pairs) = to_step3(mutual_default(), "100", &CHALLENGE);
    assert_eq!(value(&pairs, "CHAP_I"), Some("100"));
    let c: Vec<u8> = (100..116).collect();
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", TUSER), ("CHAP_R", &target_response(100, &c))],
    );
    finish_operational(&mut p);
}

/// UNH #2.6. Different random bytes give a different CHAP_I.
#[test]
fn unh_chap_2_6_chap_i_follows_the_callers_random_bytes() {
    let (_, _, a) = to_step3(mutual((100..116).collect()), "7", &CHALLENGE);
    let (_, _, b) = to_step3(mutual((200..216).collect()), "7", &CHALLENGE);
    assert_eq!(value(&a, "CHAP_I"), Some("100"));
    assert_eq!(value(&b, "CHAP_I"), Some("200"));
}

// ---------------------------------------------------------------------
// Group 3: CHAP_C
// ---------------------------------------------------------------------

/// UNH #3.1. RFC 7143 section 12.1.3: C's binary length "MUST NOT
/// exceed 1024 bytes": a 1024-byte challenge is answered.
#[test]
fn unh_chap_3_1_1024_byte_challenge_is_answered() {
    let c = vec![0xa5u8; 1024];
    let (_, _, pairs) = to_step3(one_way(), "3", &c);
    assert_eq!(value(&pairs, "CHAP_R"), Some(our_response(3, &c).as_str()));
}

/// UNH #3.2. A one-byte challenge is answered (no minimum is configured).
#[test]
fn unh_chap_3_2_one_byte_challenge_is_answered() {
    let (_, _, pairs) = to_step3(one_way(), "3", &[0x42]);
    assert_eq!(
        value(&pairs, "CHAP_R"),
        Some(our_response(3, &[0x42]).as_str())
    );
}

/// UNH #3.3. A 1025-byte challenge is refused.
#[test]
fn unh_chap_3_3_1025_byte_challenge_is_refused() {
    let c = encode_hex(&[0xa5u8; 1025]);
    let p = challenge(
        one_way(),
        &[("CHAP_A", "5"), ("CHAP_I", "3"), ("CHAP_C", &c)],
    );
    assert_eq!(chap_error(&p), ChapError::TooLong { len: 1025 });
}

/// UNH #3.4. An empty challenge is refused.
#[test]
fn unh_chap_3_4_empty_challenge_is_refused() {
    let p = challenge(
        one_way(),
        &[("CHAP_A", "5"), ("CHAP_I", "3"), ("CHAP_C", "")],
    );
    assert!(matches!(
        chap_error(&p),
        ChapError::Malformed { key: "CHAP_C", .. }
    ));
}

/// UNH #3.5. A challenge PDU without CHAP_C is refused.
#[test]
fn unh_chap_3_5_chap_c_missing_is_refused() {
    let p = challenge(one_way(), &[("CHAP_A", "5"), ("CHAP_I", "3")]);
    assert_eq!(chap_error(&p), ChapError::MissingKey("CHAP_C"));
}

/// UNH #3.6.3. Our mutual CHAP_C is the caller's random bytes, so two
/// sessions started with different random bytes offer different
/// challenges (the CLI draws 32 bytes from /dev/urandom per session).
#[test]
fn unh_chap_3_6_3_parallel_sessions_offer_their_own_challenges() {
    let (_, _, _, a) = to_step4(mutual((100..116).collect()));
    let (_, _, _, b) = to_step4(mutual((200..216).collect()));
    assert_eq!(a, (100..116).collect::<Vec<u8>>());
    assert_eq!(b, (200..216).collect::<Vec<u8>>());
}

fn chap_responder() -> LoginResponder {
    let mut c = TargetChapConfig::new(ChapCredentials::new(USER, SECRET));
    c.mutual = Some(ChapCredentials::new(TUSER, TSECRET));
    LoginResponder::new(
        TargetConfig {
            auth_methods: vec![AuthMethod::Chap],
            ..TargetConfig::default()
        },
        Some(c),
    )
}

/// The CHAP_C values the initiator sent, in order.
fn sent_challenges(p: &Pair) -> Vec<String> {
    p.target
        .log
        .iter()
        .filter_map(|pdu| {
            parse_pairs(&pdu.data)
                .ok()
                .and_then(|kv| value(&kv, "CHAP_C").map(str::to_owned))
        })
        .collect()
}

/// UNH #3.6.4. RFC 1994 section 2.3: "Each challenge value SHOULD be
/// unique"; RFC 7143 section 12.1.3 (mutual CHAP). A session that logs in
/// again (ERL 0 session recovery) offers a different mutual challenge than
/// the first time (it used to resend the same one: the core now derives a
/// fresh challenge per login from the caller's random bytes).
#[test]
fn unh_chap_3_6_4_serial_logins_offer_a_fresh_challenge() {
    let c = mutual_default().with_recovery(Recovery {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    });
    let mut p = Pair::new(c);
    p.login_with(&mut chap_responder());
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    p.session.handle_closed(p.now);
    p.flush();
    p.advance(Duration::from_secs(2));
    p.login_with(&mut chap_responder());
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, Event::Reinstated { .. })));
    let sent = sent_challenges(&p);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_ne!(sent[0], sent[1], "the second login reused the challenge");
}

/// UNH #3.7 and #3.8. RFC 7143 section 9.2.1: "Originators MUST NOT
/// reuse the CHAP challenge sent by the Responder for the other direction
/// of a bidirectional authentication"; the initiator refuses to send (or
/// accept) a mutual challenge equal to the target's.
#[test]
fn unh_chap_3_7_reflected_challenge_is_refused() {
    let mine: Vec<u8> = (100..116).collect();
    let (mut p, req, _) = to_challenge(mutual(mine.clone()));
    reply(
        &mut p,
        &req,
        false,
        2,
        &[
            ("CHAP_A", "5"),
            ("CHAP_I", "1"),
            ("CHAP_C", &encode_hex(&mine)),
        ],
    );
    assert_eq!(chap_error(&p), ChapError::ReflectedChallenge);
    // Nothing was answered: no CHAP_R left the initiator.
    assert_eq!(p.target.pending(), 0);
}

// ---------------------------------------------------------------------
// Group 4: CHAP_N
// ---------------------------------------------------------------------

/// UNH #4.1. CHAP_N is the configured name, sent verbatim.
#[test]
fn unh_chap_4_1_chap_n_is_the_configured_name() {
    let (_, _, pairs) = to_step3(one_way(), "1", &CHALLENGE);
    assert_eq!(value(&pairs, "CHAP_N"), Some(USER));
}

/// UNH #4.2 and #4.3. Long (255 bytes) and one-byte names are sent intact.
#[test]
fn unh_chap_4_2_long_and_short_names_are_sent_intact() {
    for name in ["x".repeat(255), "y".to_owned()] {
        let c = base().with_auth(Auth::chap(name.clone(), SECRET), vec![]);
        let (_, _, pairs) = to_step3(c, "1", &CHALLENGE);
        assert_eq!(value(&pairs, "CHAP_N"), Some(name.as_str()));
    }
}

/// UNH #4.4. A target CHAP_N longer than any configured name (4096
/// bytes) does not verify: the target is not authenticated.
#[test]
fn unh_chap_4_4_over_long_target_name_is_refused() {
    let (mut p, req, id, c) = to_step4(mutual_default());
    let long = "t".repeat(4096);
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", &long), ("CHAP_R", &target_response(id, &c))],
    );
    assert_eq!(chap_error(&p), ChapError::WrongName);
}

/// UNH #4.5. The target's step 4 without CHAP_N is refused (RFC 7143
/// section 12.1.3: "CHAP_N=<N> CHAP_R=<R>").
#[test]
fn unh_chap_4_5_target_answer_without_chap_n_is_refused() {
    let (mut p, req, id, c) = to_step4(mutual_default());
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_R", &target_response(id, &c))],
    );
    assert_eq!(chap_error(&p), ChapError::MissingKey("CHAP_N"));
}

/// UNH #4.6. A target that answers with our own name (reflected CHAP_N)
/// is not the configured target: refused.
#[test]
fn unh_chap_4_6_reflected_chap_n_is_refused() {
    let (mut p, req, id, c) = to_step4(mutual_default());
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", USER), ("CHAP_R", &target_response(id, &c))],
    );
    assert_eq!(chap_error(&p), ChapError::WrongName);
}

/// UNH #4.7. The configured target name with the right response: the
/// target is authenticated and the login completes.
#[test]
fn unh_chap_4_7_expected_chap_n_and_response_authenticate_the_target() {
    let (mut p, req, id, c) = to_step4(mutual_default());
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", TUSER), ("CHAP_R", &target_response(id, &c))],
    );
    finish_operational(&mut p);
}

/// UNH #4.8. A different name (even differing only in case) with a
/// correct response is refused.
#[test]
fn unh_chap_4_8_different_chap_n_is_refused() {
    let (mut p, req, id, c) = to_step4(mutual_default());
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", "Target-1"), ("CHAP_R", &target_response(id, &c))],
    );
    assert_eq!(chap_error(&p), ChapError::WrongName);
}

// ---------------------------------------------------------------------
// Group 5: CHAP_R
// ---------------------------------------------------------------------

/// UNH #5.1. RFC 7143 section 12.1.3: "If target authentication fails,
/// the initiator MUST close the connection": a response that is not a
/// binary value is refused.
#[test]
fn unh_chap_5_1_malformed_chap_r_is_refused() {
    let (mut p, req, _, _) = to_step4(mutual_default());
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", TUSER), ("CHAP_R", "0xnothex")],
    );
    assert!(matches!(
        chap_error(&p),
        ChapError::Malformed { key: "CHAP_R", .. }
    ));
}

/// UNH #5.2. A response longer than the MD5 digest (17 bytes) does not
/// verify; one above 1024 bytes is refused as too long.
#[test]
fn unh_chap_5_2_too_long_chap_r_is_refused() {
    let (mut p, req, id, c) = to_step4(mutual_default());
    let mut r = ChapAlgorithm::Md5.response(id, &ChapSecret::new(TSECRET), &c);
    r.push(0);
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", TUSER), ("CHAP_R", &encode_hex(&r))],
    );
    assert_eq!(chap_error(&p), ChapError::AuthenticationFailed);
    let (mut p, req, _, _) = to_step4(mutual_default());
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", TUSER), ("CHAP_R", &encode_hex(&[1u8; 1025]))],
    );
    assert_eq!(chap_error(&p), ChapError::TooLong { len: 1025 });
}

/// UNH #5.3. A truncated response (15 bytes) does not verify.
#[test]
fn unh_chap_5_3_too_short_chap_r_is_refused() {
    let (mut p, req, id, c) = to_step4(mutual_default());
    let r = ChapAlgorithm::Md5.response(id, &ChapSecret::new(TSECRET), &c);
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", TUSER), ("CHAP_R", &encode_hex(&r[..15]))],
    );
    assert_eq!(chap_error(&p), ChapError::AuthenticationFailed);
}

// ---------------------------------------------------------------------
// Group 5 tail (table of contents cut off after #5.3)
// ---------------------------------------------------------------------

/// RFC 7143 section 9.2.1: a target response equal to the one we would
/// compute for our own challenge with our own secret "MUST be treated as
/// an authentication failure" (reflected CHAP_R).
#[test]
fn unh_chap_5_tail_reflected_chap_r_is_refused() {
    let (mut p, req, id, c) = to_step4(mutual_default());
    reply(
        &mut p,
        &req,
        true,
        3,
        &[("CHAP_N", TUSER), ("CHAP_R", &our_response(id, &c))],
    );
    assert_eq!(chap_error(&p), ChapError::ReflectedResponse);
}

/// RFC 7143 section 12.1.3: the target must not leave the security stage
/// before mutual authentication: T=1 without CHAP_N/CHAP_R is refused.
#[test]
fn unh_chap_5_tail_transit_without_target_response_is_refused() {
    let (mut p, req, _, _) = to_step4(mutual_default());
    reply(&mut p, &req, true, 3, &[]);
    assert!(p.session.is_closed());
    assert_eq!(chap_error(&p), ChapError::MissingKey("CHAP_N"));
}
