//! The negotiation engines (RFC 7143 sections 6.2 and 13): every result
//! function from both sides, special answers, refusals, the ESX seed, and
//! the initiator against the target engine.

use iscsi_proto::login::keys::{self, ResultRule, Scope, Usage};
use iscsi_proto::login::negotiation::*;
use iscsi_proto::wire::text::parse_pairs;

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(kk, _)| kk == k)
        .map(|(_, v)| v.as_str())
}

fn normal_cfg() -> InitiatorConfig {
    let mut cfg = InitiatorConfig::new("iqn.2024-01.test:init", SessionType::Normal);
    cfg.target_name = Some("iqn.2024-01.test:disk".to_owned());
    cfg
}

fn initiator(params: OperationalParams) -> (InitiatorNegotiator, Vec<(String, String)>) {
    let mut cfg = normal_cfg();
    cfg.params = params;
    let mut ini = InitiatorNegotiator::new(cfg).unwrap();
    ini.login_keys();
    let offer = ini.operational_offer();
    (ini, offer)
}

fn target(params: OperationalParams) -> TargetNegotiator {
    TargetNegotiator::new(TargetConfig {
        params,
        ..TargetConfig::default()
    })
    .unwrap()
}

#[test]
fn keys_table_covers_rfc7143_section13() {
    for name in [
        "HeaderDigest",
        "DataDigest",
        "MaxConnections",
        "SendTargets",
        "TargetName",
        "InitiatorName",
        "TargetAlias",
        "InitiatorAlias",
        "TargetAddress",
        "TargetPortalGroupTag",
        "InitialR2T",
        "ImmediateData",
        "MaxRecvDataSegmentLength",
        "MaxBurstLength",
        "FirstBurstLength",
        "DefaultTime2Wait",
        "DefaultTime2Retain",
        "MaxOutstandingR2T",
        "DataPDUInOrder",
        "DataSequenceInOrder",
        "ErrorRecoveryLevel",
        "SessionType",
        "AuthMethod",
        "OFMarker",
        "IFMarker",
        "OFMarkInt",
        "IFMarkInt",
        "iSCSIProtocolLevel",
        "TaskReporting",
    ] {
        assert!(keys::lookup(name).is_some(), "{name}");
    }
    let k = |n| keys::lookup(n).unwrap();
    assert_eq!(k("MaxBurstLength").rule, ResultRule::Min);
    assert_eq!(k("DefaultTime2Wait").rule, ResultRule::Max);
    assert_eq!(k("InitialR2T").rule, ResultRule::Or);
    assert_eq!(k("ImmediateData").rule, ResultRule::And);
    assert_eq!(k("HeaderDigest").rule, ResultRule::List);
    assert_eq!(k("MaxRecvDataSegmentLength").rule, ResultRule::Declarative);
    assert_eq!(k("MaxRecvDataSegmentLength").scope, Scope::Connection);
    assert_eq!(k("MaxConnections").usage, Usage::LeadingOnly);
    assert_eq!(
        k("MaxRecvDataSegmentLength").value,
        keys::ValueType::Number {
            min: 512,
            max: (1 << 24) - 1
        }
    );
    assert_eq!(k("OFMarker").rule, ResultRule::Obsolete);
    assert!(keys::lookup("headerdigest").is_none());
    assert!(keys::is_extension_key("X-com.example.foo"));
    assert!(keys::is_extension_key("X#Bar"));
    // Every default is a valid value of its own key.
    for def in keys::KEYS {
        if let Some(d) = def.default {
            let v = match def.value {
                keys::ValueType::Number { min, max } => {
                    let n: u64 = d.parse().unwrap();
                    n >= min && n <= max
                }
                keys::ValueType::Bool => d == "Yes" || d == "No",
                keys::ValueType::List(known) | keys::ValueType::Enum(known) => known.contains(&d),
                _ => true,
            };
            assert!(v, "{}", def.name);
        }
    }
}

#[test]
fn initiator_normal_offer_has_rfc_defaults_and_no_discovery_irrelevance() {
    let (_, offer) = initiator(OperationalParams::default());
    assert_eq!(get(&offer, "MaxBurstLength"), Some("262144"));
    assert_eq!(get(&offer, "FirstBurstLength"), Some("65536"));
    assert_eq!(get(&offer, "InitialR2T"), Some("Yes"));
    assert_eq!(get(&offer, "ImmediateData"), Some("Yes"));
    assert_eq!(get(&offer, "MaxRecvDataSegmentLength"), Some("8192"));
    assert_eq!(get(&offer, "DefaultTime2Retain"), Some("20"));
    assert_eq!(get(&offer, "HeaderDigest"), Some("None"));
    // Not offered unless asked for.
    assert_eq!(get(&offer, "iSCSIProtocolLevel"), None);
    assert_eq!(get(&offer, "IFMarker"), None);
}

#[test]
fn initiator_login_keys_and_security_offer() {
    let mut cfg = normal_cfg();
    cfg.auth_methods = vec![AuthMethod::Chap, AuthMethod::None];
    cfg.initiator_alias = Some("host1".into());
    let mut ini = InitiatorNegotiator::new(cfg).unwrap();
    let lk = ini.login_keys();
    assert_eq!(get(&lk, "InitiatorName"), Some("iqn.2024-01.test:init"));
    assert_eq!(get(&lk, "SessionType"), Some("Normal"));
    assert_eq!(get(&lk, "TargetName"), Some("iqn.2024-01.test:disk"));
    assert_eq!(get(&lk, "InitiatorAlias"), Some("host1"));
    assert_eq!(ini.security_offer(), vec![p("AuthMethod", "CHAP,None")]);
    assert_eq!(ini.pending_answers(), vec!["AuthMethod"]);
    // CHAP_* keys are left to the CHAP module.
    let replies = ini
        .handle_response(&[
            p("AuthMethod", "CHAP"),
            p("CHAP_A", "5"),
            p("TargetPortalGroupTag", "1"),
        ])
        .unwrap();
    assert!(replies.is_empty());
    assert_eq!(ini.auth_method(), Some(AuthMethod::Chap));
    // AuthMethod answered with a value we did not offer is a protocol error.
    let mut ini = InitiatorNegotiator::new(normal_cfg()).unwrap();
    ini.security_offer();
    assert!(matches!(
        ini.handle_response(&[p("AuthMethod", "CHAP")]),
        Err(NegotiationError::NotAdmissible { .. })
    ));
}

#[test]
fn config_validation() {
    let mut cfg = InitiatorConfig::new("iqn.x", SessionType::Normal);
    assert!(matches!(
        InitiatorNegotiator::new(cfg.clone()),
        Err(NegotiationError::InvalidConfig {
            key: "TargetName",
            ..
        })
    ));
    cfg.target_name = Some("iqn.t".into());
    cfg.params.first_burst_length = 300_000;
    assert!(matches!(
        InitiatorNegotiator::new(cfg.clone()),
        Err(NegotiationError::InvalidConfig {
            key: "FirstBurstLength",
            ..
        })
    ));
    cfg.params = OperationalParams {
        max_recv_data_segment_length: 100,
        ..Default::default()
    };
    assert!(matches!(
        InitiatorNegotiator::new(cfg.clone()),
        Err(NegotiationError::InvalidConfig {
            key: "MaxRecvDataSegmentLength",
            ..
        })
    ));
    cfg.params = OperationalParams {
        error_recovery_level: 3,
        ..Default::default()
    };
    assert!(InitiatorNegotiator::new(cfg).is_err());
}

// ---- min / max -----------------------------------------------------------

#[test]
fn rule_min_initiator_side_accepts_lower_refuses_higher() {
    let (mut ini, _) = initiator(OperationalParams::default());
    ini.handle_response(&[
        p("MaxBurstLength", "131072"),
        p("FirstBurstLength", "0x8000"),
    ])
    .unwrap();
    let n = ini.finish().unwrap();
    assert_eq!(n.max_burst_length, 131072);
    assert_eq!(n.first_burst_length, 32768);

    let (mut ini, _) = initiator(OperationalParams::default());
    let err = ini
        .handle_response(&[p("MaxBurstLength", "262145")])
        .unwrap_err();
    assert!(matches!(&err, NegotiationError::NotAdmissible { key, .. } if key == "MaxBurstLength"));
    assert!(err.to_string().contains("13.13"), "{err}");
    // Below the key's range (512) is invalid too.
    let (mut ini, _) = initiator(OperationalParams::default());
    assert!(matches!(
        ini.handle_response(&[p("MaxBurstLength", "511")]),
        Err(NegotiationError::InvalidValue { .. })
    ));
    let (mut ini, _) = initiator(OperationalParams::default());
    assert!(ini
        .handle_response(&[p("ErrorRecoveryLevel", "1")])
        .is_err());
}

#[test]
fn rule_min_target_side_answers_minimum() {
    let mut tgt = target(OperationalParams {
        max_burst_length: 65536,
        ..Default::default()
    });
    let out = tgt
        .handle_request(
            &[
                p("MaxBurstLength", "1048576"),
                p("FirstBurstLength", "8192"),
                p("MaxConnections", "4"),
            ],
            LoginStage::Operational,
        )
        .unwrap();
    assert_eq!(get(&out, "MaxBurstLength"), Some("65536"));
    assert_eq!(get(&out, "FirstBurstLength"), Some("8192"));
    assert_eq!(get(&out, "MaxConnections"), Some("1"));
    let n = tgt.finish().unwrap();
    assert_eq!(
        (n.max_burst_length, n.first_burst_length, n.max_connections),
        (65536, 8192, 1)
    );
}

#[test]
fn rule_max_both_sides() {
    // Initiator: DefaultTime2Wait is Maximum; answers below our offer are refused.
    let (mut ini, _) = initiator(OperationalParams {
        default_time2wait: 5,
        ..Default::default()
    });
    assert!(matches!(
        ini.handle_response(&[p("DefaultTime2Wait", "4")]),
        Err(NegotiationError::NotAdmissible { .. })
    ));
    let (mut ini, _) = initiator(OperationalParams {
        default_time2wait: 5,
        ..Default::default()
    });
    ini.handle_response(&[p("DefaultTime2Wait", "10")]).unwrap();
    assert_eq!(ini.finish().unwrap().default_time2wait, 10);
    // Target side answers the maximum; out-of-range offers get Reject.
    let mut tgt = target(OperationalParams {
        default_time2wait: 7,
        ..Default::default()
    });
    let out = tgt
        .handle_request(
            &[p("DefaultTime2Wait", "3"), p("DefaultTime2Retain", "4000")],
            LoginStage::Operational,
        )
        .unwrap();
    assert_eq!(get(&out, "DefaultTime2Wait"), Some("7"));
    assert_eq!(get(&out, "DefaultTime2Retain"), Some("Reject"));
    let n = tgt.finish().unwrap();
    assert_eq!((n.default_time2wait, n.default_time2retain), (7, 20));
}

// ---- boolean AND / OR -----------------------------------------------------

#[test]
fn rule_and_both_sides() {
    // Target side: ImmediateData is AND.
    for (ours, theirs, want) in [
        (true, "Yes", "Yes"),
        (true, "No", "No"),
        (false, "Yes", "No"),
    ] {
        let mut tgt = target(OperationalParams {
            immediate_data: ours,
            ..Default::default()
        });
        let out = tgt
            .handle_request(&[p("ImmediateData", theirs)], LoginStage::Operational)
            .unwrap();
        assert_eq!(get(&out, "ImmediateData"), Some(want));
        assert_eq!(tgt.finish().unwrap().immediate_data, want == "Yes");
    }
    // Initiator offered No: a Yes answer is not admissible.
    let (mut ini, _) = initiator(OperationalParams {
        immediate_data: false,
        ..Default::default()
    });
    let err = ini
        .handle_response(&[p("ImmediateData", "Yes")])
        .unwrap_err();
    assert!(
        matches!(err, NegotiationError::NotAdmissible { ref key, .. } if key == "ImmediateData")
    );
    // Offered No and no answer: the outcome is No (answer optional).
    let (ini, _) = initiator(OperationalParams {
        immediate_data: false,
        ..Default::default()
    });
    assert!(!ini.finish().unwrap().immediate_data);
    // Offered Yes, answered No.
    let (mut ini, _) = initiator(OperationalParams::default());
    ini.handle_response(&[p("ImmediateData", "No")]).unwrap();
    assert!(!ini.finish().unwrap().immediate_data);
}

#[test]
fn rule_or_both_sides() {
    for (ours, theirs, want) in [
        (false, "No", "No"),
        (false, "Yes", "Yes"),
        (true, "No", "Yes"),
    ] {
        let mut tgt = target(OperationalParams {
            initial_r2t: ours,
            ..Default::default()
        });
        let out = tgt
            .handle_request(&[p("InitialR2T", theirs)], LoginStage::Operational)
            .unwrap();
        assert_eq!(get(&out, "InitialR2T"), Some(want));
        assert_eq!(tgt.finish().unwrap().initial_r2t, want == "Yes");
    }
    let (mut ini, _) = initiator(OperationalParams::default()); // InitialR2T=Yes
    assert!(ini.handle_response(&[p("InitialR2T", "No")]).is_err());
    let (mut ini, _) = initiator(OperationalParams {
        initial_r2t: false,
        data_pdu_in_order: false,
        ..Default::default()
    });
    ini.handle_response(&[p("InitialR2T", "Yes"), p("DataPDUInOrder", "No")])
        .unwrap();
    let n = ini.finish().unwrap();
    assert!(n.initial_r2t);
    assert!(!n.data_pdu_in_order);
    // Malformed boolean.
    let (mut ini, _) = initiator(OperationalParams::default());
    assert!(matches!(
        ini.handle_response(&[p("DataSequenceInOrder", "yes")]),
        Err(NegotiationError::InvalidValue { .. })
    ));
}

// ---- list -----------------------------------------------------------------

#[test]
fn rule_list_both_sides() {
    let digests = OperationalParams {
        header_digest: vec![DigestType::Crc32c, DigestType::None],
        data_digest: vec![DigestType::Crc32c],
        ..Default::default()
    };
    // Target with CRC32C,None picks the first of the initiator's list it supports.
    let mut tgt = target(digests.clone());
    let out = tgt
        .handle_request(
            &[
                p("HeaderDigest", "X-foo,CRC32C,None"),
                p("DataDigest", "None"),
            ],
            LoginStage::Operational,
        )
        .unwrap();
    assert_eq!(get(&out, "HeaderDigest"), Some("CRC32C"));
    // Target supports only CRC32C for data: None offered alone -> Reject.
    assert_eq!(get(&out, "DataDigest"), Some("Reject"));
    let n = tgt.finish().unwrap();
    assert!(n.header_digest);
    assert!(!n.data_digest);

    // Initiator: answers must be one value we offered.
    let (mut ini, offer) = initiator(digests.clone());
    assert_eq!(get(&offer, "HeaderDigest"), Some("CRC32C,None"));
    ini.handle_response(&[p("HeaderDigest", "CRC32C"), p("DataDigest", "CRC32C")])
        .unwrap();
    let n = ini.finish().unwrap();
    assert!(n.header_digest && n.data_digest);
    let (mut ini, _) = initiator(OperationalParams::default());
    assert!(matches!(
        ini.handle_response(&[p("HeaderDigest", "CRC32C")]),
        Err(NegotiationError::NotAdmissible { .. })
    ));
    let (mut ini, _) = initiator(digests.clone());
    assert!(ini
        .handle_response(&[p("HeaderDigest", "CRC32C,None")])
        .is_err());
    // Reject of DataDigest=CRC32C leaves the default None, which we did not
    // offer: the initiator must fail.
    let (mut ini, _) = initiator(digests);
    assert!(matches!(
        ini.handle_response(&[p("DataDigest", "Reject")]),
        Err(NegotiationError::Rejected { .. })
    ));
}

#[test]
fn rule_declarative_both_directions() {
    let (mut ini, _) = initiator(OperationalParams {
        max_recv_data_segment_length: 262144,
        ..Default::default()
    });
    ini.handle_response(&[
        p("MaxRecvDataSegmentLength", "16384"),
        p("TargetAlias", "disk one"),
    ])
    .unwrap();
    let n = ini.finish().unwrap();
    assert_eq!(n.initiator_max_recv_data_segment_length, 262144);
    assert_eq!(n.target_max_recv_data_segment_length, 16384);
    assert_eq!(n.target_alias.as_deref(), Some("disk one"));
    // Undeclared by the target: the default 8192.
    let (ini, _) = initiator(OperationalParams::default());
    assert_eq!(
        ini.finish().unwrap().target_max_recv_data_segment_length,
        8192
    );
    // Out of range declaration.
    let (mut ini, _) = initiator(OperationalParams::default());
    assert!(ini
        .handle_response(&[p("MaxRecvDataSegmentLength", "16777216")])
        .is_err());

    // Target side: records the initiator's declarations, declares its own once.
    let mut tgt = target(OperationalParams {
        max_recv_data_segment_length: 65536,
        ..Default::default()
    });
    let first = tgt
        .handle_request(
            &[
                p("InitiatorName", "iqn.i"),
                p("SessionType", "Normal"),
                p("TargetName", "iqn.t"),
                p("AuthMethod", "None"),
            ],
            LoginStage::Security,
        )
        .unwrap();
    assert_eq!(get(&first, "AuthMethod"), Some("None"));
    assert_eq!(get(&first, "TargetPortalGroupTag"), Some("1"));
    assert_eq!(get(&first, "MaxRecvDataSegmentLength"), None);
    let op = tgt
        .handle_request(
            &[p("MaxRecvDataSegmentLength", "4096")],
            LoginStage::Operational,
        )
        .unwrap();
    assert_eq!(get(&op, "MaxRecvDataSegmentLength"), Some("65536"));
    assert_eq!(get(&op, "TargetPortalGroupTag"), None);
    assert_eq!(tgt.initiator_name(), Some("iqn.i"));
    assert_eq!(tgt.target_name(), Some("iqn.t"));
    let n = tgt.finish().unwrap();
    assert_eq!(n.initiator_max_recv_data_segment_length, 4096);
    assert_eq!(n.target_max_recv_data_segment_length, 65536);
    assert_eq!(n.target_portal_group_tag, Some(1));
}

// ---- special answers --------------------------------------------------------

#[test]
fn answers_reject_and_irrelevant_fall_back_to_default() {
    let (mut ini, _) = initiator(OperationalParams {
        max_burst_length: 1 << 20,
        first_burst_length: 1 << 19,
        default_time2retain: 0,
        ..Default::default()
    });
    ini.handle_response(&[
        p("MaxBurstLength", "Reject"),
        p("FirstBurstLength", "Irrelevant"),
        p("DefaultTime2Retain", "Reject"),
    ])
    .unwrap();
    let n = ini.finish().unwrap();
    assert_eq!(n.max_burst_length, 262144);
    assert_eq!(n.first_burst_length, 65536);
    assert_eq!(n.default_time2retain, 20);
    assert!(ini.pending_answers().iter().all(|k| !k.contains("Burst")));
}

#[test]
fn answers_not_understood_fail_for_standard_keys_tolerated_for_new_ones() {
    let (mut ini, _) = initiator(OperationalParams::default());
    let err = ini
        .handle_response(&[p("MaxOutstandingR2T", "NotUnderstood")])
        .unwrap_err();
    assert_eq!(
        err,
        NegotiationError::NotUnderstood {
            key: "MaxOutstandingR2T".into()
        }
    );
    assert!(err.to_string().contains("6.2"));
    // iSCSIProtocolLevel (RFC 7143 13.24) may be unknown to an RFC 3720 target.
    let (mut ini, offer) = initiator(OperationalParams {
        protocol_level: 2,
        task_reporting: vec![TaskReporting::FastAbort, TaskReporting::Rfc3720],
        ..Default::default()
    });
    assert_eq!(get(&offer, "iSCSIProtocolLevel"), Some("2"));
    assert_eq!(get(&offer, "TaskReporting"), Some("FastAbort,RFC3720"));
    ini.handle_response(&[
        p("iSCSIProtocolLevel", "NotUnderstood"),
        p("TaskReporting", "NotUnderstood"),
    ])
    .unwrap();
    let n = ini.finish().unwrap();
    assert_eq!(n.protocol_level, 1);
    assert_eq!(n.task_reporting, TaskReporting::Rfc3720);
    let (mut ini, _) = initiator(OperationalParams {
        protocol_level: 2,
        task_reporting: vec![TaskReporting::FastAbort, TaskReporting::Rfc3720],
        ..Default::default()
    });
    ini.handle_response(&[
        p("iSCSIProtocolLevel", "1"),
        p("TaskReporting", "FastAbort"),
    ])
    .unwrap();
    let n = ini.finish().unwrap();
    assert_eq!(
        (n.protocol_level, n.task_reporting),
        (1, TaskReporting::FastAbort)
    );
}

#[test]
fn extension_and_unknown_keys_answered_not_understood() {
    let (mut ini, _) = initiator(OperationalParams::default());
    let out = ini
        .handle_response(&[
            p("X-com.example.foo", "1"),
            p("X#Bar", "Yes"),
            p("FutureKey", "x"),
        ])
        .unwrap();
    assert_eq!(
        out,
        vec![
            p("X-com.example.foo", "NotUnderstood"),
            p("X#Bar", "NotUnderstood"),
            p("FutureKey", "NotUnderstood")
        ]
    );
    let mut tgt = target(OperationalParams::default());
    let out = tgt
        .handle_request(&[p("X-org.test", "abc")], LoginStage::Operational)
        .unwrap();
    assert_eq!(get(&out, "X-org.test"), Some("NotUnderstood"));
}

#[test]
fn reserved_values_as_proposals_and_duplicates_are_errors() {
    let (mut ini, _) = initiator(OperationalParams::default());
    assert!(matches!(
        ini.handle_response(&[p("X-foo", "Reject")]),
        Err(NegotiationError::ReservedValue { .. })
    ));
    let mut tgt = target(OperationalParams::default());
    assert!(matches!(
        tgt.handle_request(
            &[p("MaxBurstLength", "Irrelevant")],
            LoginStage::Operational
        ),
        Err(NegotiationError::ReservedValue { .. })
    ));
    // Duplicates across two PDUs of one negotiation.
    let (mut ini, _) = initiator(OperationalParams::default());
    ini.handle_response(&[p("MaxBurstLength", "8192")]).unwrap();
    assert_eq!(
        ini.handle_response(&[p("MaxBurstLength", "8192")]),
        Err(NegotiationError::Duplicate {
            key: "MaxBurstLength".into()
        })
    );
    let mut tgt = target(OperationalParams::default());
    assert!(matches!(
        tgt.handle_request(&[p("X-a", "1"), p("X-a", "1")], LoginStage::Operational),
        Err(NegotiationError::Duplicate { .. })
    ));
    // TargetAddress may repeat.
    let (mut ini, _) = initiator(OperationalParams::default());
    ini.handle_response(&[
        p("TargetAddress", "10.0.0.1:3260,1"),
        p("TargetAddress", "10.0.0.2:3260,1"),
    ])
    .unwrap();
}

#[test]
fn wrong_sender_refused() {
    let (mut ini, _) = initiator(OperationalParams::default());
    assert!(matches!(
        ini.handle_response(&[p("InitiatorName", "iqn.evil")]),
        Err(NegotiationError::WrongSender { .. })
    ));
    let mut tgt = target(OperationalParams::default());
    assert!(matches!(
        tgt.handle_request(&[p("TargetPortalGroupTag", "3")], LoginStage::Operational),
        Err(NegotiationError::WrongSender { .. })
    ));
}

#[test]
fn obsolete_marker_keys() {
    // As acceptor: Reject (RFC 7143 13.25 SHOULD), never NotUnderstood.
    let mut tgt = target(OperationalParams::default());
    let out = tgt
        .handle_request(
            &[p("OFMarker", "Yes"), p("OFMarkInt", "2048~8192")],
            LoginStage::Operational,
        )
        .unwrap();
    assert_eq!(get(&out, "OFMarker"), Some("Reject"));
    assert_eq!(get(&out, "OFMarkInt"), Some("Reject"));
    // As proposer of IFMarker=No: No, Reject and NotUnderstood are fine, Yes is not.
    for ans in ["No", "Reject", "NotUnderstood", "Irrelevant"] {
        let (mut ini, _) = initiator(OperationalParams {
            offer_markers: true,
            ..Default::default()
        });
        ini.handle_response(&[p("IFMarker", ans)]).unwrap();
    }
    let (mut ini, _) = initiator(OperationalParams {
        offer_markers: true,
        ..Default::default()
    });
    assert!(ini.handle_response(&[p("IFMarker", "Yes")]).is_err());
}

#[test]
fn target_proposals_answered_by_initiator() {
    let (mut ini, _) = initiator(OperationalParams::default());
    // The target answers our offers and proposes keys we did not offer.
    let mut ini2 = InitiatorNegotiator::new(normal_cfg()).unwrap();
    ini2.login_keys();
    let out = ini2
        .handle_response(&[
            p("MaxBurstLength", "1048576"),
            p("ImmediateData", "No"),
            p("DefaultTime2Wait", "1"),
        ])
        .unwrap();
    assert_eq!(get(&out, "MaxBurstLength"), Some("262144"));
    assert_eq!(get(&out, "ImmediateData"), Some("No"));
    assert_eq!(get(&out, "DefaultTime2Wait"), Some("2"));
    let n = ini2.finish().unwrap();
    assert_eq!(
        (n.max_burst_length, n.immediate_data, n.default_time2wait),
        (262144, false, 2)
    );
    // A FirstBurstLength above the resulting MaxBurstLength breaks 13.14.
    ini.handle_response(&[p("MaxBurstLength", "4096")]).unwrap();
    assert_eq!(
        ini.finish(),
        Err(NegotiationError::FirstBurstExceedsMaxBurst {
            first: 65536,
            max: 4096
        })
    );
}

#[test]
fn discovery_offer_is_limited_and_irrelevant_keys_answered() {
    let mut cfg = InitiatorConfig::new("iqn.i", SessionType::Discovery);
    cfg.params.max_recv_data_segment_length = 32768;
    let mut ini = InitiatorNegotiator::new(cfg).unwrap();
    let lk = ini.login_keys();
    assert_eq!(get(&lk, "SessionType"), Some("Discovery"));
    assert_eq!(get(&lk, "TargetName"), None);
    let offer = ini.operational_offer();
    let names: Vec<&str> = offer.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "HeaderDigest",
            "DataDigest",
            "DefaultTime2Wait",
            "DefaultTime2Retain",
            "ErrorRecoveryLevel",
            "MaxRecvDataSegmentLength"
        ]
    );
    // A target proposing a normal-session key gets Irrelevant.
    let out = ini.handle_response(&[p("MaxBurstLength", "8192")]).unwrap();
    assert_eq!(out, vec![p("MaxBurstLength", "Irrelevant")]);
    // The target side answers Irrelevant in a discovery session too.
    let mut tgt = target(OperationalParams::default());
    let out = tgt
        .handle_request(
            &[p("InitialR2T", "No"), p("SessionType", "Discovery")],
            LoginStage::Operational,
        )
        .unwrap();
    assert_eq!(get(&out, "InitialR2T"), Some("Irrelevant"));
    assert_eq!(tgt.session_type(), SessionType::Discovery);
    assert_eq!(tgt.finish().unwrap().session_type, SessionType::Discovery);
}

#[test]
fn non_leading_connection_offers_connection_keys_only() {
    let mut cfg = normal_cfg();
    cfg.leading = false;
    let mut ini = InitiatorNegotiator::new(cfg).unwrap();
    let names: Vec<String> = ini
        .operational_offer()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        names,
        ["HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength"]
    );
}

/// Frame 11 of the ESX capture: the target's answer keys.
const ESX_LOGIN_RESPONSE: &[u8] = b"HeaderDigest=None\0DataDigest=None\0DefaultTime2Wait=2\0\
DefaultTime2Retain=0\0IFMarker=No\0OFMarker=No\0ErrorRecoveryLevel=0\0\
TargetPortalGroupTag=1\0MaxRecvDataSegmentLength=65536\0";

fn esx_initiator() -> InitiatorNegotiator {
    let mut cfg = InitiatorConfig::new(
        "iqn.1998-01.com.vmware:wdc-tse-h171-3c00d9ce",
        SessionType::Discovery,
    );
    cfg.params.default_time2wait = 0;
    cfg.params.default_time2retain = 0;
    cfg.params.max_recv_data_segment_length = 32768;
    cfg.params.offer_markers = true;
    InitiatorNegotiator::new(cfg).unwrap()
}

fn esx_expected() -> Negotiated {
    Negotiated {
        header_digest: false,
        data_digest: false,
        initiator_max_recv_data_segment_length: 32768,
        target_max_recv_data_segment_length: 65536,
        max_burst_length: 262144,
        first_burst_length: 65536,
        initial_r2t: true,
        immediate_data: true,
        max_outstanding_r2t: 1,
        data_pdu_in_order: true,
        data_sequence_in_order: true,
        error_recovery_level: 0,
        default_time2wait: 2,
        default_time2retain: 0,
        max_connections: 1,
        target_portal_group_tag: Some(1),
        target_alias: None,
        initiator_alias: None,
        initiator_name: Some("iqn.1998-01.com.vmware:wdc-tse-h171-3c00d9ce".into()),
        target_name: None,
        session_type: SessionType::Discovery,
        auth_method: AuthMethod::None,
        protocol_level: 1,
        task_reporting: TaskReporting::Rfc3720,
    }
}

#[test]
fn esx_seed_offer_matches_and_response_drives_initiator() {
    let mut ini = esx_initiator();
    let mut sent = ini.login_keys();
    sent.extend(ini.operational_offer());
    // Our first request carries exactly the ESX request's keys and values.
    let mut esx_req = parse_pairs(
        b"InitiatorName=iqn.1998-01.com.vmware:wdc-tse-h171-3c00d9ce\0SessionType=Discovery\0\
HeaderDigest=None\0DataDigest=None\0DefaultTime2Wait=0\0DefaultTime2Retain=0\0IFMarker=No\0\
OFMarker=No\0ErrorRecoveryLevel=0\0MaxRecvDataSegmentLength=32768\0",
    )
    .unwrap();
    esx_req.sort();
    sent.sort();
    assert_eq!(sent, esx_req);
    let resp = parse_pairs(ESX_LOGIN_RESPONSE).unwrap();
    let replies = ini.handle_response(&resp).unwrap();
    assert!(replies.is_empty(), "{replies:?}");
    assert!(ini.pending_answers().is_empty());
    assert_eq!(ini.finish().unwrap(), esx_expected());
}

#[test]
fn esx_seed_request_drives_target_engine() {
    let req = parse_pairs(
        b"InitiatorName=iqn.1998-01.com.vmware:wdc-tse-h171-3c00d9ce\0SessionType=Discovery\0\
HeaderDigest=None\0DataDigest=None\0DefaultTime2Wait=0\0DefaultTime2Retain=0\0\
ErrorRecoveryLevel=0\0MaxRecvDataSegmentLength=32768\0",
    )
    .unwrap();
    let mut tgt = target(OperationalParams {
        max_recv_data_segment_length: 65536,
        default_time2retain: 0,
        ..Default::default()
    });
    let out = tgt.handle_request(&req, LoginStage::Operational).unwrap();
    assert_eq!(get(&out, "DefaultTime2Wait"), Some("2"));
    assert_eq!(get(&out, "DefaultTime2Retain"), Some("0"));
    assert_eq!(get(&out, "HeaderDigest"), Some("None"));
    assert_eq!(get(&out, "TargetPortalGroupTag"), Some("1"));
    assert_eq!(get(&out, "MaxRecvDataSegmentLength"), Some("65536"));
    let mut want = esx_expected();
    want.target_name = None;
    assert_eq!(tgt.finish().unwrap(), want);
}

#[test]
fn initiator_and_target_engines_agree() {
    let ip = OperationalParams {
        header_digest: vec![DigestType::Crc32c, DigestType::None],
        data_digest: vec![DigestType::None, DigestType::Crc32c],
        max_connections: 4,
        initial_r2t: false,
        immediate_data: true,
        max_recv_data_segment_length: 262144,
        max_burst_length: 1 << 20,
        first_burst_length: 1 << 18,
        default_time2wait: 0,
        default_time2retain: 10,
        max_outstanding_r2t: 8,
        error_recovery_level: 2,
        ..Default::default()
    };
    let tp = OperationalParams {
        header_digest: vec![DigestType::Crc32c],
        data_digest: vec![DigestType::Crc32c, DigestType::None],
        max_connections: 2,
        initial_r2t: false,
        immediate_data: false,
        max_recv_data_segment_length: 65536,
        max_burst_length: 1 << 19,
        first_burst_length: 1 << 16,
        default_time2wait: 3,
        default_time2retain: 20,
        max_outstanding_r2t: 16,
        error_recovery_level: 1,
        ..Default::default()
    };
    let (mut ini, offer) = initiator(ip);
    let mut tgt = target(tp);
    let mut req = vec![
        p("InitiatorName", "iqn.2024-01.test:init"),
        p("SessionType", "Normal"),
        p("TargetName", "iqn.2024-01.test:disk"),
    ];
    req.extend(offer);
    let resp = tgt.handle_request(&req, LoginStage::Operational).unwrap();
    let replies = ini.handle_response(&resp).unwrap();
    assert!(replies.is_empty(), "{replies:?}");
    let a = ini.finish().unwrap();
    let b = tgt.finish().unwrap();
    assert_eq!(a, b);
    assert!(a.header_digest);
    assert!(!a.data_digest);
    assert_eq!(a.max_connections, 2);
    assert!(!a.initial_r2t);
    assert!(!a.immediate_data);
    assert_eq!(a.max_burst_length, 1 << 19);
    assert_eq!(a.first_burst_length, 1 << 16);
    assert_eq!(a.default_time2wait, 3);
    assert_eq!(a.default_time2retain, 10);
    assert_eq!(a.max_outstanding_r2t, 8);
    assert_eq!(a.error_recovery_level, 1);
    assert_eq!(a.initiator_max_recv_data_segment_length, 262144);
    assert_eq!(a.target_max_recv_data_segment_length, 65536);
}
