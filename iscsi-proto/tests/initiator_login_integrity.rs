//! Login integrity (RFC 7143 sections 4.2.2.1, 6.3, 11.12.8, 11.13.6): the
//! initiator refuses a Login Response that skips a stage it did not ask
//! for, transits when it was not asked to, transits while still expecting
//! an answer, or hands over a CmdSN window the leading login did not set.
//! Each test quotes the RFC sentence it was written from.

use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, ProtocolError};
use iscsi_proto::initiator::{Auth, Event, ScsiCommand, SessionConfig};
use iscsi_proto::login::DigestType;
use iscsi_proto::testing::Pair;
use iscsi_proto::wire::pdu::{self as w, Header, Stage};
use iscsi_proto::wire::text::{encode_pairs, parse_pairs};
use iscsi_proto::wire::Serial;

const TSIH: u16 = 0x0d;

fn normal() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk")
}

fn kv(pairs: &[(String, String)]) -> Bytes {
    let mut v = Vec::new();
    encode_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut v).unwrap();
    Bytes::from(v)
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The next Login Request the initiator sent, with its pairs.
fn next_request(p: &mut Pair) -> (w::LoginRequest, Vec<(String, String)>) {
    p.flush();
    let pdu = p.target.expect();
    let Header::LoginRequest(req) = pdu.header else {
        panic!("not a login request: {:?}", pdu.header.opcode())
    };
    (req, parse_pairs(&pdu.data).unwrap())
}

/// Sends a success Login Response to `req` with an explicit window.
#[allow(clippy::too_many_arguments)]
fn answer_with_window(
    p: &mut Pair,
    req: &w::LoginRequest,
    transit: bool,
    csg: Stage,
    nsg: Stage,
    exp: Serial,
    max: Serial,
    pairs: &[(String, String)],
) {
    let final_ = transit && nsg == Stage::FullFeature;
    let resp = w::LoginResponse {
        transit,
        cont: false,
        csg,
        nsg: if transit { nsg } else { csg },
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih: if final_ { TSIH } else { 0 },
        itt: req.itt,
        stat_sn: p.target.next_stat_sn(),
        exp_cmd_sn: exp,
        max_cmd_sn: max,
        status_class: 0,
        status_detail: 0,
    };
    if final_ {
        p.target.exp_cmd_sn = exp;
        p.target.max_cmd_sn = max;
    }
    p.target.send(resp, kv(pairs));
    p.deliver();
}

/// Sends a success Login Response with the window RFC 7143 11.12.8 asks
/// for (ExpCmdSN = the login's CmdSN, 32 slots).
fn answer(
    p: &mut Pair,
    req: &w::LoginRequest,
    transit: bool,
    csg: Stage,
    nsg: Stage,
    pairs: &[(String, String)],
) {
    let exp = req.cmd_sn;
    answer_with_window(p, req, transit, csg, nsg, exp, exp.plus(31), pairs);
}

/// The target's answers to an operational offer: the initiator's values
/// echoed (valid selections for every negotiated key), declarative keys
/// left out.
fn echo_answers(offer: &[(String, String)]) -> Vec<(String, String)> {
    offer
        .iter()
        .filter(|(k, _)| {
            ![
                "InitiatorName",
                "SessionType",
                "TargetName",
                "MaxRecvDataSegmentLength",
                "InitiatorAlias",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| {
            // The first value of a list is a valid selection.
            let v = v.split(',').next().unwrap_or_default().to_string();
            (k.clone(), v)
        })
        .collect()
}

fn closing_error(p: &Pair) -> Option<ConnectionError> {
    p.events.iter().find_map(|e| match e {
        Event::Closed(c) => c.clone(),
        _ => None,
    })
}

/// The login failed with a `ProtocolError` citing `section`.
fn assert_protocol_failure(p: &Pair, section: &str) {
    assert!(
        !p.events.iter().any(|e| matches!(e, Event::LoggedIn { .. })),
        "logged in: {:?}",
        p.events
    );
    assert!(!p.session.is_logged_in());
    match closing_error(p) {
        Some(ConnectionError::Protocol(e)) => {
            assert_eq!(e.rfc_section(), section, "{e}");
            assert!(matches!(e, ProtocolError::Violation { .. }), "{e:?}");
        }
        other => panic!("expected a protocol error ({section}), got {other:?}"),
    }
}

/// RFC 7143 section 6.3: "During this exchange, the next stage is selected
/// by the target through the 'next stage' code (NSG). The selected NSG MUST
/// NOT exceed the value stated by the initiator."
///
/// We ask for Security -> Operational (T=1) and require CRC32C header
/// digests; a target that jumps to FullFeature would leave digests off.
#[test]
fn nsg_above_the_requested_stage_fails_the_login() {
    let mut cfg = normal().with_auth(Auth::chap("alice", "initiator-secret"), vec![]);
    cfg.operational.header_digest = vec![DigestType::Crc32c];
    let mut p = Pair::new(cfg);
    let (req, pairs) = next_request(&mut p);
    assert_eq!(
        (req.csg, req.nsg, req.transit),
        (Stage::Security, Stage::Operational, true)
    );
    assert!(pairs.contains(&("AuthMethod".into(), "CHAP,None".into())));
    answer(
        &mut p,
        &req,
        true,
        Stage::Security,
        Stage::FullFeature,
        &owned(&[("AuthMethod", "None"), ("TargetPortalGroupTag", "1")]),
    );
    assert_protocol_failure(&p, "6.3");
    // Nothing else was sent: no command can go out without its digest.
    assert_eq!(p.target.pending(), 0);
}

/// RFC 7143 section 11.13.6: "If the status class is 0, the T bit MUST NOT
/// be set to 1 if the T bit in the request was set to 0." (and section 6.3:
/// "a target can only respond with a transition after one is proposed by
/// the initiator").
///
/// Our CHAP_A request has T=0; a target answering it with T=1 would move
/// the login past the security stage without authenticating us.
#[test]
fn transit_answer_to_a_request_without_transit_fails_the_login() {
    let cfg = normal().with_auth(Auth::chap("alice", "initiator-secret"), vec![]);
    let mut p = Pair::new(cfg);
    let (req, _) = next_request(&mut p);
    answer(
        &mut p,
        &req,
        false,
        Stage::Security,
        Stage::Security,
        &owned(&[("AuthMethod", "CHAP")]),
    );
    let (req, pairs) = next_request(&mut p);
    assert!(!req.transit, "the CHAP_A request has T=0");
    assert!(pairs.iter().any(|(k, _)| k == "CHAP_A"));
    answer(&mut p, &req, true, Stage::Security, Stage::Operational, &[]);
    assert_protocol_failure(&p, "11.13.6");
}

/// Section 11.13.6 again, for a would-be final response: "The Login
/// Final-Response that accepts a Login Request can only come as a response
/// to a Login Request with the T bit set to 1" (section 6.3). A T=1
/// Security -> FullFeature answer to our T=0 CHAP_A request must not log
/// in (it would also skip CHAP).
#[test]
fn final_response_to_a_request_without_transit_fails_the_login() {
    let cfg = normal().with_auth(Auth::chap("alice", "initiator-secret"), vec![]);
    let mut p = Pair::new(cfg);
    let (req, _) = next_request(&mut p);
    answer(
        &mut p,
        &req,
        false,
        Stage::Security,
        Stage::Security,
        &owned(&[("AuthMethod", "CHAP")]),
    );
    let (req, _) = next_request(&mut p);
    assert!(!req.transit);
    answer(&mut p, &req, true, Stage::Security, Stage::FullFeature, &[]);
    assert_protocol_failure(&p, "11.13.6");
}

/// RFC 7143 section 11.13.6: "A Login Response with a T bit set to 1 MUST
/// NOT contain key=value pairs that may require additional answers from
/// the initiator within the same stage." (section 6.3: "Targets MUST NOT
/// submit parameters that require an additional initiator Login Request in
/// a Login Response with the T bit set to 1.")
///
/// TaskReporting (section 13.23) is negotiated and we did not offer it: a
/// target offering it in the final response makes a new offer we would
/// have to answer.
#[test]
fn transit_response_with_a_new_offer_fails_the_login() {
    let mut p = Pair::new(normal());
    let (req, offer) = next_request(&mut p);
    assert_eq!(
        (req.csg, req.nsg, req.transit),
        (Stage::Operational, Stage::FullFeature, true)
    );
    assert!(!offer.iter().any(|(k, _)| k == "TaskReporting"));
    let mut reply = echo_answers(&offer);
    reply.push(("TaskReporting".into(), "RFC3720".into()));
    answer(
        &mut p,
        &req,
        true,
        Stage::Operational,
        Stage::FullFeature,
        &reply,
    );
    assert_protocol_failure(&p, "11.13.6");
}

/// The same offer with T=0 is a normal negotiation step: the initiator
/// answers it and the login completes.
#[test]
fn new_offer_without_transit_is_answered() {
    let mut p = Pair::new(normal());
    let (req, offer) = next_request(&mut p);
    let mut reply = echo_answers(&offer);
    reply.push(("TaskReporting".into(), "RFC3720".into()));
    answer(
        &mut p,
        &req,
        false,
        Stage::Operational,
        Stage::Operational,
        &reply,
    );
    let (req, pairs) = next_request(&mut p);
    assert!(
        pairs.iter().any(|(k, _)| k == "TaskReporting"),
        "the offer was answered: {pairs:?}"
    );
    answer(
        &mut p,
        &req,
        true,
        Stage::Operational,
        Stage::FullFeature,
        &[],
    );
    assert!(p.session.is_logged_in(), "{:?}", p.events);
}

/// Declarative keys (section 6.2: "Keys that do not require an answer are
/// marked as Declarative", e.g. TargetAlias 13.6, TargetPortalGroupTag 13.9,
/// MaxRecvDataSegmentLength 13.12) need no answer and are fine with T=1.
#[test]
fn transit_response_with_declarations_logs_in() {
    let mut p = Pair::new(normal());
    let (req, offer) = next_request(&mut p);
    let mut reply = echo_answers(&offer);
    reply.extend(owned(&[
        ("TargetAlias", "disk-1"),
        ("TargetPortalGroupTag", "1"),
        ("MaxRecvDataSegmentLength", "65536"),
    ]));
    answer(
        &mut p,
        &req,
        true,
        Stage::Operational,
        Stage::FullFeature,
        &reply,
    );
    assert!(
        p.events.contains(&Event::LoggedIn { tsih: TSIH }),
        "{:?}",
        p.events
    );
    let n = p.session.negotiated().unwrap();
    assert_eq!(n.target_alias.as_deref(), Some("disk-1"));
    assert_eq!(n.target_max_recv_data_segment_length, 65536);
}

/// Drives a leading login whose final response carries `exp`/`max`, then
/// submits a command. Returns the CmdSN it went out with, or `None` if the
/// login failed (the failure must then be a typed protocol error).
fn login_with_window(exp_off: u32, max_off: u32) -> (Pair, Serial, Option<Serial>) {
    let mut p = Pair::new(normal());
    let (req, offer) = next_request(&mut p);
    let login_cmd_sn = req.cmd_sn;
    let exp = login_cmd_sn.plus(exp_off);
    let max = login_cmd_sn.plus(max_off);
    answer_with_window(
        &mut p,
        &req,
        true,
        Stage::Operational,
        Stage::FullFeature,
        exp,
        max,
        &echo_answers(&offer),
    );
    if !p.session.is_logged_in() {
        return (p, login_cmd_sn, None);
    }
    p.session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
        )
        .unwrap();
    p.flush();
    let sent = p.target.recv().map(|pdu| match pdu.header {
        Header::ScsiCommand(c) => c.cmd_sn,
        other => panic!("unexpected {:?}", other.opcode()),
    });
    (p, login_cmd_sn, sent)
}

/// RFC 7143 section 11.12.8: "If the Login Request is a leading Login
/// Request, the target MUST use the value presented in CmdSN as the target
/// value for ExpCmdSN." and "if the leading login carries the CmdSN 123,
/// all other Login Requests in the same Login Phase carry the CmdSN 123 and
/// the first non-immediate command in the Full Feature Phase also carries
/// the CmdSN 123."
///
/// A final response with ExpCmdSN ahead of (or behind) the login's CmdSN
/// breaks that MUST. The login fails with a typed error; it never logs in
/// with a window no command can enter.
#[test]
fn final_response_exp_cmd_sn_not_the_login_cmd_sn_fails_the_login() {
    for exp_off in [4u32, 1, u32::MAX, 0x8000_0000] {
        let (p, login_cmd_sn, sent) = login_with_window(exp_off, exp_off.wrapping_add(31));
        if let Some(cmd_sn) = sent {
            panic!("logged in and sent CmdSN {cmd_sn:?} (login CmdSN {login_cmd_sn:?})");
        }
        assert_protocol_failure(&p, "11.12.8");
    }
}

/// The well-behaved case: ExpCmdSN = the login's CmdSN, and the first
/// command carries that CmdSN.
#[test]
fn first_command_carries_the_login_cmd_sn() {
    let (p, login_cmd_sn, sent) = login_with_window(0, 31);
    assert!(p.session.is_logged_in());
    assert_eq!(sent, Some(login_cmd_sn));
    assert_eq!(p.target.exp_cmd_sn, login_cmd_sn);
}

/// RFC 7143 section 4.2.2.1: "The target MUST NOT transmit a MaxCmdSN that
/// is less than ExpCmdSN-1." The final Login Response sets the first
/// window of the session; an invalid one fails the login instead of being
/// ignored into a window that never opens.
#[test]
fn final_response_max_cmd_sn_below_exp_cmd_sn_minus_one_fails_the_login() {
    for max_off in [u32::MAX - 1, 0x8000_0000] {
        let (p, _, sent) = login_with_window(0, max_off);
        assert_eq!(sent, None, "max offset {max_off:#x}");
        assert_protocol_failure(&p, "4.2.2.1");
    }
    // MaxCmdSN = ExpCmdSN - 1 is a closed window, not an error.
    let (p, _, sent) = login_with_window(0, u32::MAX);
    assert!(p.session.is_logged_in());
    assert_eq!(sent, None, "the command waits for the window");
}
