//! Property tests: the negotiation outcome does not depend on how the
//! target's keys are split across PDUs (whole pairs per PDU, or bytes cut
//! anywhere with the C bit), and every `Negotiated` obeys RFC 7143.

use iscsi_proto::login::negotiation::*;
use iscsi_proto::wire::text::{encode_pairs, split_text, TextAssembler};
use proptest::prelude::*;

fn offered_params() -> OperationalParams {
    OperationalParams {
        header_digest: vec![DigestType::Crc32c, DigestType::None],
        data_digest: vec![DigestType::None, DigestType::Crc32c],
        max_connections: 4,
        initial_r2t: false,
        immediate_data: true,
        max_recv_data_segment_length: 65536,
        max_burst_length: 1 << 20,
        first_burst_length: 1 << 18,
        default_time2wait: 2,
        default_time2retain: 20,
        max_outstanding_r2t: 4,
        data_pdu_in_order: true,
        data_sequence_in_order: false,
        error_recovery_level: 1,
        ..Default::default()
    }
}

fn new_initiator() -> InitiatorNegotiator {
    let mut cfg = InitiatorConfig::new("iqn.2024-01.test:init", SessionType::Normal);
    cfg.target_name = Some("iqn.2024-01.test:disk".into());
    cfg.params = offered_params();
    let mut ini = InitiatorNegotiator::new(cfg).unwrap();
    ini.login_keys();
    ini.operational_offer();
    ini
}

fn special() -> impl Strategy<Value = String> {
    prop_oneof![Just("Reject".to_string()), Just("Irrelevant".to_string())]
}

fn num_answer(lo: u64, hi: u64) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (lo..=hi).prop_map(|n| n.to_string()),
        1 => (0u64..(1 << 25)).prop_map(|n| n.to_string()),
        1 => (lo..=hi).prop_map(|n| format!("0x{n:x}")),
        1 => special(),
    ]
}

fn bool_answer() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("Yes".to_string()),
        3 => Just("No".to_string()),
        1 => special(),
    ]
}

fn list_answer() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("CRC32C".to_string()),
        4 => Just("None".to_string()),
        1 => special(),
    ]
}

/// A target response: answers to (a random subset of) our offers, possibly
/// illegal, plus some declarations and extension keys, in random order.
fn response() -> impl Strategy<Value = Vec<(String, String)>> {
    let keys = (
        (
            list_answer(),
            list_answer(),
            num_answer(1, 4),
            bool_answer(),
            bool_answer(),
        ),
        (
            num_answer(512, 1 << 20),
            num_answer(512, 1 << 18),
            num_answer(2, 3600),
            num_answer(0, 20),
        ),
        (
            num_answer(1, 4),
            bool_answer(),
            bool_answer(),
            num_answer(0, 1),
        ),
        (num_answer(512, (1 << 24) - 1), 0u16..=65535, any::<bool>()),
    );
    (keys, prop::collection::vec(any::<bool>(), 16), any::<u64>()).prop_map(
        |(
            ((hd, dd, mc, ir, id), (mb, fb, t2w, t2r), (mo, dp, ds, erl), (mrdsl, tpgt, ext)),
            keep,
            seed,
        )| {
            let mut v = vec![
                ("HeaderDigest", hd),
                ("DataDigest", dd),
                ("MaxConnections", mc),
                ("InitialR2T", ir),
                ("ImmediateData", id),
                ("MaxBurstLength", mb),
                ("FirstBurstLength", fb),
                ("DefaultTime2Wait", t2w),
                ("DefaultTime2Retain", t2r),
                ("MaxOutstandingR2T", mo),
                ("DataPDUInOrder", dp),
                ("DataSequenceInOrder", ds),
                ("ErrorRecoveryLevel", erl),
                ("MaxRecvDataSegmentLength", mrdsl),
                ("TargetPortalGroupTag", tpgt.to_string()),
            ];
            if ext {
                v.push(("X-com.example.k", "1".to_string()));
            }
            let mut out: Vec<(String, String)> = v
                .into_iter()
                .zip(keep.iter().chain(std::iter::repeat(&true)))
                .filter(|(_, &k)| k)
                .map(|((k, val), _)| (k.to_string(), val))
                .collect();
            // Deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..out.len()).rev() {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                out.swap(i, (s >> 33) as usize % (i + 1));
            }
            out
        },
    )
}

type Outcome = (Vec<(String, String)>, Result<Negotiated, NegotiationError>);

fn run_batches(batches: &[Vec<(String, String)>]) -> Outcome {
    let mut ini = new_initiator();
    let mut replies = Vec::new();
    for b in batches {
        match ini.handle_response(b) {
            Ok(r) => replies.extend(r),
            // After an error the connection is dropped: replies are moot.
            Err(e) => return (Vec::new(), Err(e)),
        }
    }
    (replies, ini.finish())
}

fn check_rfc(n: &Negotiated, offered: &OperationalParams) {
    // 13.14
    assert!(n.first_burst_length <= n.max_burst_length);
    // Ranges of 13.12-13.20.
    for v in [
        n.max_burst_length,
        n.first_burst_length,
        n.initiator_max_recv_data_segment_length,
        n.target_max_recv_data_segment_length,
    ] {
        assert!((512..=(1 << 24) - 1).contains(&v), "{v}");
    }
    assert!(n.error_recovery_level <= 2);
    assert!(n.default_time2wait <= 3600 && n.default_time2retain <= 3600);
    assert!(n.max_outstanding_r2t >= 1 && n.max_connections >= 1);
    // Result functions never move past what we offered (or the default
    // where the answer was Reject/Irrelevant).
    let min_ok = |got: u64, ours: u64, default: u64| got <= ours || got == default;
    assert!(min_ok(
        n.max_burst_length.into(),
        offered.max_burst_length.into(),
        262144
    ));
    assert!(min_ok(
        n.first_burst_length.into(),
        offered.first_burst_length.into(),
        65536
    ));
    assert!(min_ok(
        n.max_connections.into(),
        offered.max_connections.into(),
        1
    ));
    assert!(min_ok(
        n.error_recovery_level.into(),
        offered.error_recovery_level.into(),
        0
    ));
    assert!(min_ok(
        n.default_time2retain.into(),
        offered.default_time2retain.into(),
        20
    ));
    assert!(n.default_time2wait >= offered.default_time2wait || n.default_time2wait == 2);
    // OR with our Yes stays Yes; AND with our No stays No.
    if offered.data_pdu_in_order {
        assert!(n.data_pdu_in_order);
    }
    if !offered.immediate_data {
        assert!(!n.immediate_data);
    }
    assert_eq!(
        n.initiator_max_recv_data_segment_length,
        offered.max_recv_data_segment_length
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn same_negotiated_for_any_split_across_pdus(
        resp in response(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        seg in 1usize..64,
    ) {
        let whole = run_batches(std::slice::from_ref(&resp));
        // Whole pairs split into several PDUs (several LTDSs).
        let mut idx: Vec<usize> = cuts.iter().map(|c| c % (resp.len() + 1)).collect();
        idx.sort_unstable();
        let mut batches = Vec::new();
        let mut start = 0;
        for i in idx.into_iter().chain(std::iter::once(resp.len())) {
            batches.push(resp[start..i].to_vec());
            start = i;
        }
        prop_assert_eq!(&run_batches(&batches), &whole);
        // Bytes cut anywhere with the C bit, reassembled.
        let mut text = Vec::new();
        encode_pairs(resp.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut text).unwrap();
        let mut asm = TextAssembler::new();
        let mut got = None;
        for s in split_text(&text, seg) {
            got = asm.push(s.data, s.continues).unwrap();
        }
        let reassembled = got.unwrap();
        prop_assert_eq!(&reassembled, &resp);
        prop_assert_eq!(&run_batches(&[reassembled]), &whole);
        if let (_, Ok(n)) = &whole {
            check_rfc(n, &offered_params());
        }
    }

    #[test]
    fn initiator_and_target_always_agree(
        i_mb in 512u32..(1 << 24), i_fb_frac in 0u32..=100,
        t_mb in 512u32..(1 << 24), t_fb_frac in 0u32..=100,
        i_bools in any::<[bool; 4]>(), t_bools in any::<[bool; 4]>(),
        i_erl in 0u8..=2, t_erl in 0u8..=2,
        i_t2w in 0u16..=3600, t_t2w in 0u16..=3600,
        i_dig in any::<[bool; 2]>(), t_dig in any::<[bool; 2]>(),
    ) {
        let mk = |mb: u32, frac: u32, b: [bool; 4], erl: u8, t2w: u16, dig: [bool; 2]| {
            let fb = (512 + ((u64::from(mb) - 512) * u64::from(frac) / 100)) as u32;
            let d = |crc: bool| if crc {
                vec![DigestType::Crc32c, DigestType::None]
            } else {
                vec![DigestType::None, DigestType::Crc32c]
            };
            OperationalParams {
                max_burst_length: mb, first_burst_length: fb, initial_r2t: b[0],
                immediate_data: b[1], data_pdu_in_order: b[2], data_sequence_in_order: b[3],
                error_recovery_level: erl, default_time2wait: t2w,
                header_digest: d(dig[0]), data_digest: d(dig[1]), ..Default::default()
            }
        };
        let ip = mk(i_mb, i_fb_frac, i_bools, i_erl, i_t2w, i_dig);
        let tp = mk(t_mb, t_fb_frac, t_bools, t_erl, t_t2w, t_dig);
        let mut cfg = InitiatorConfig::new("iqn.i", SessionType::Normal);
        cfg.target_name = Some("iqn.t".into());
        cfg.params = ip.clone();
        let mut ini = InitiatorNegotiator::new(cfg).unwrap();
        let mut req = ini.login_keys();
        req.extend(ini.operational_offer());
        let mut tgt = TargetNegotiator::new(TargetConfig { params: tp.clone(),
            ..TargetConfig::default() }).unwrap();
        let resp = tgt.handle_request(&req, LoginStage::Operational).unwrap();
        prop_assert!(ini.handle_response(&resp).unwrap().is_empty());
        let a = ini.finish().unwrap();
        let b = tgt.finish().unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.max_burst_length, i_mb.min(t_mb));
        prop_assert_eq!(a.initial_r2t, ip.initial_r2t || tp.initial_r2t);
        prop_assert_eq!(a.immediate_data, ip.immediate_data && tp.immediate_data);
        prop_assert_eq!(a.default_time2wait, i_t2w.max(t_t2w));
        prop_assert_eq!(a.header_digest, i_dig[0]);
        check_rfc(&a, &ip);
    }

    #[test]
    fn engines_and_text_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        iscsi_proto::wire::text::fuzz_text_kv(&data);
        iscsi_proto::login::negotiation::fuzz_negotiation(&data);
        if let Ok(pairs) = iscsi_proto::wire::text::parse_pairs(&data) {
            let _ = iscsi_proto::login::discovery::parse_send_targets(&pairs);
        }
    }
}
