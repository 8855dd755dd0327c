//! Full Feature Phase text negotiation on the initiator side
//! (`login::ffp`), written from RFC 7143 sections 6.2, 6.4 and 13.

use iscsi_proto::login::full_feature::{declare_max_recv_data_segment_length, text_response};
use iscsi_proto::login::{Negotiated, NegotiationError};
use iscsi_proto::testing::Pair;

fn logged_in() -> Negotiated {
    let mut p = Pair::new(
        iscsi_proto::initiator::SessionConfig::new("iqn.2024-01.test:init")
            .with_target("iqn.2024-01.test:disk"),
    );
    p.login();
    p.session.negotiated().unwrap().clone()
}

fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// RFC 7143 section 13.12: "Use: ALL, Declarative" ... "The initiator or
/// target declares the maximum data segment length in bytes it can receive
/// in an iSCSI PDU. The transmitter (initiator or target) is required to
/// send PDUs with a data segment that does not exceed
/// MaxRecvDataSegmentLength of the receiver."
#[test]
fn target_declared_max_recv_data_segment_length_is_applied_without_reply() {
    let n = logged_in();
    assert_ne!(n.target_max_recv_data_segment_length, 16384);
    let (m, replies) = text_response(&n, &pairs(&[("MaxRecvDataSegmentLength", "16384")])).unwrap();
    assert_eq!(m.target_max_recv_data_segment_length, 16384);
    assert!(
        replies.is_empty(),
        "a declaration needs no answer: {replies:?}"
    );
    // Nothing else changed.
    let mut back = m.clone();
    back.target_max_recv_data_segment_length = n.target_max_recv_data_segment_length;
    assert_eq!(back, n);
}

/// RFC 7143 section 13.12: "MaxRecvDataSegmentLength=<numerical-value-512-
/// to-(2**24 - 1)>": anything else is malformed and refused.
#[test]
fn malformed_max_recv_data_segment_length_is_refused() {
    let n = logged_in();
    for bad in [
        "511",
        "16777216",
        "0",
        "",
        "abc",
        "0x",
        "-1",
        "8192,4096",
        "Reject",
    ] {
        let r = text_response(&n, &pairs(&[("MaxRecvDataSegmentLength", bad)]));
        assert!(r.is_err(), "{bad:?} accepted: {r:?}");
    }
    // The bounds themselves and hex numbers are fine (section 6.1 numbers).
    for (good, v) in [("512", 512), ("16777215", 16_777_215), ("0x1000", 4096)] {
        let (m, _) = text_response(&n, &pairs(&[("MaxRecvDataSegmentLength", good)])).unwrap();
        assert_eq!(m.target_max_recv_data_segment_length, v, "{good}");
    }
}

/// RFC 7143 section 6.2: "Any key not understood by the acceptor may be
/// ignored by the acceptor without affecting the basic function. However,
/// the answer for a key not understood MUST be key=NotUnderstood."
#[test]
fn unknown_keys_are_answered_not_understood() {
    let n = logged_in();
    let (m, replies) = text_response(
        &n,
        &pairs(&[
            ("X-com.example.Feature", "On"),
            ("X#Frobnicate", "1"),
            ("Bogus", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(m, n);
    assert_eq!(
        replies,
        pairs(&[
            ("X-com.example.Feature", "NotUnderstood"),
            ("X#Frobnicate", "NotUnderstood"),
            ("Bogus", "NotUnderstood"),
        ])
    );
}

/// RFC 7143 section 13: "Keys that can only be used during login have the
/// use: IO (initialize only), while those that can be used in both the
/// Login Phase and Full Feature Phase have the use: ALL" (and LO keys only
/// during the leading login). Section 6.2.1: "If an acceptor does not
/// support, does not understand, or is not allowed to use any of the
/// proposed options with a specific originator, it may use the constant
/// 'Reject' or terminate the negotiation."
///
/// A target offering a login-only key in Full Feature Phase gets Reject and
/// the negotiated value stays.
#[test]
fn login_only_negotiated_keys_are_rejected() {
    let n = logged_in();
    let offer = pairs(&[
        ("MaxBurstLength", "4096"),
        ("HeaderDigest", "CRC32C,None"),
        ("ErrorRecoveryLevel", "2"),
        ("InitialR2T", "No"),
        ("MaxConnections", "4"),
        ("AuthMethod", "CHAP"),
    ]);
    let (m, replies) = text_response(&n, &offer).unwrap();
    assert_eq!(m, n, "nothing negotiated in FFP for login-only keys");
    let expect: Vec<(String, String)> = offer
        .iter()
        .map(|(k, _)| (k.clone(), "Reject".to_string()))
        .collect();
    assert_eq!(replies, expect);
}

/// RFC 7143 section 6.2: "If a specific key is not relevant for the
/// current negotiation, the acceptor may answer with the constant
/// 'Irrelevant' for all types of negotiation." A login-only declaration
/// (TargetPortalGroupTag, section 13.9, "Use: IO by target") has no
/// meaning in Full Feature Phase: Irrelevant, and it is not applied.
#[test]
fn login_only_declarations_are_irrelevant() {
    let n = logged_in();
    let (m, replies) = text_response(&n, &pairs(&[("TargetPortalGroupTag", "77")])).unwrap();
    assert_eq!(m, n);
    assert_eq!(replies, pairs(&[("TargetPortalGroupTag", "Irrelevant")]));
}

/// RFC 7143 section 13.6: TargetAlias, "Use: ALL, Declarative": applied,
/// no answer.
#[test]
fn target_alias_is_applied() {
    let n = logged_in();
    let (m, replies) = text_response(&n, &pairs(&[("TargetAlias", "renamed disk")])).unwrap();
    assert_eq!(m.target_alias.as_deref(), Some("renamed disk"));
    assert!(replies.is_empty());
}

/// RFC 7143 section 6.2: "The constants 'None', 'Reject', 'Irrelevant',
/// and 'NotUnderstood' are reserved and MUST ONLY be used as described
/// here. Violation of this rule is a protocol error (in particular the use
/// of 'Reject', 'Irrelevant', and 'NotUnderstood' as proposed values)."
#[test]
fn reserved_constants_as_proposals_are_protocol_errors() {
    let n = logged_in();
    for (k, v) in [
        ("X-com.example.Feature", "Reject"),
        ("MaxBurstLength", "Irrelevant"),
        ("TargetAlias", "NotUnderstood"),
    ] {
        match text_response(&n, &pairs(&[(k, v)])) {
            Err(NegotiationError::ReservedValue { .. }) => {}
            other => panic!("{k}={v}: {other:?}"),
        }
    }
}

/// RFC 7143 section 6.4: "Neither the initiator nor the target should
/// attempt to declare or negotiate a parameter more than once during any
/// negotiation sequence ... except for responses to specific keys that
/// explicitly allow repeated key declarations (e.g., TargetAddress)."
#[test]
fn duplicate_keys_are_refused_except_target_address() {
    let n = logged_in();
    let r = text_response(
        &n,
        &pairs(&[
            ("MaxRecvDataSegmentLength", "4096"),
            ("MaxRecvDataSegmentLength", "8192"),
        ]),
    );
    assert!(
        matches!(r, Err(NegotiationError::Duplicate { .. })),
        "{r:?}"
    );
    let (_, replies) = text_response(
        &n,
        &pairs(&[
            ("TargetAddress", "10.0.0.1:3260,1"),
            ("TargetAddress", "10.0.0.2:3260,1"),
        ]),
    )
    .unwrap();
    assert!(replies.is_empty());
}

/// RFC 7143 section 13 "Senders": InitiatorName, InitiatorAlias,
/// SessionType and SendTargets are the initiator's keys; a target sending
/// them is a protocol error.
#[test]
fn initiator_only_keys_from_the_target_are_refused() {
    let n = logged_in();
    for (k, v) in [
        ("InitiatorAlias", "me"),
        ("InitiatorName", "iqn.2024-01.test:other"),
        ("SessionType", "Normal"),
        ("SendTargets", "All"),
    ] {
        match text_response(&n, &pairs(&[(k, v)])) {
            Err(NegotiationError::WrongSender { .. }) => {}
            other => panic!("{k}={v}: {other:?}"),
        }
    }
}

/// Malformed text (an invalid key name, section 6.1) is refused, never a
/// panic.
#[test]
fn invalid_key_names_are_refused() {
    let n = logged_in();
    for k in ["", "has space", "ünïcode", &"K".repeat(64)] {
        assert!(text_response(&n, &pairs(&[(k, "1")])).is_err(), "{k:?}");
    }
}

/// RFC 7143 section 13.25 (obsoleted marker keys): a responder "SHOULD
/// respond with the constant 'Reject'" to IFMarker/OFMarker and "MUST"
/// for IFMarkInt/OFMarkInt; never NotUnderstood.
#[test]
fn obsolete_marker_keys_are_rejected() {
    let n = logged_in();
    let (_, replies) =
        text_response(&n, &pairs(&[("IFMarker", "Yes"), ("OFMarkInt", "1~2048")])).unwrap();
    assert_eq!(
        replies,
        pairs(&[("IFMarker", "Reject"), ("OFMarkInt", "Reject")])
    );
}

/// Our own declaration (RFC 7143 section 13.12, "Use: ALL, Declarative"):
/// MaxRecvDataSegmentLength re-declared in Full Feature Phase.
#[test]
fn our_max_recv_data_segment_length_declaration() {
    let n = logged_in();
    let (m, out) = declare_max_recv_data_segment_length(&n, 65536).unwrap();
    assert_eq!(out, pairs(&[("MaxRecvDataSegmentLength", "65536")]));
    assert_eq!(m.initiator_max_recv_data_segment_length, 65536);
    assert_eq!(
        m.target_max_recv_data_segment_length,
        n.target_max_recv_data_segment_length
    );
    for bad in [0, 511, 1 << 24] {
        assert!(
            declare_max_recv_data_segment_length(&n, bad).is_err(),
            "{bad}"
        );
    }
}

/// Proptest-lite: arbitrary pairs never panic.
#[test]
fn arbitrary_pairs_never_panic() {
    let n = logged_in();
    let keys = [
        "MaxRecvDataSegmentLength",
        "TargetAlias",
        "X-a",
        "CHAP_C",
        "HeaderDigest",
        "",
        "=",
    ];
    let values = [
        "",
        "0",
        "512",
        "0x",
        "Yes",
        "Reject",
        "a,b",
        "\u{0}",
        "99999999999999999999",
    ];
    for k in keys {
        for v in values {
            let _ = text_response(&n, &pairs(&[(k, v)]));
        }
    }
}
