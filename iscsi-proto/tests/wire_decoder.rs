//! The streaming decoder: split invariance, limits, digests, zero copy, and
//! the zero-copy send path.

mod wire_support;

use bytes::{Bytes, BytesMut};
use iscsi_proto::wire::digest::{data_digest, digest_bytes};
use iscsi_proto::wire::*;
use proptest::prelude::*;
use wire_support as s;

fn cfg(digests: Digests, max: u32) -> DecoderConfig {
    DecoderConfig {
        digests,
        max_data_segment_length: max,
    }
}

fn encode_all(pdus: &[Pdu], digests: Digests) -> BytesMut {
    let mut out = BytesMut::new();
    for p in pdus {
        p.encode(&mut out, digests).unwrap();
    }
    out
}

/// Feeds `stream` cut at `cuts` (sorted positions) and collects PDUs.
fn feed(dec: &mut PduDecoder, stream: &[u8], cuts: &[usize]) -> Vec<Pdu> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut prev = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    for p in points {
        buf.extend_from_slice(&stream[prev..p]);
        prev = p;
        loop {
            let before = buf.len();
            match dec.decode(&mut buf).unwrap() {
                Some(pdu) => out.push(pdu),
                None => {
                    // Nothing consumed on an incomplete PDU.
                    assert_eq!(buf.len(), before);
                    assert!(dec.needed(&buf) > 0);
                    break;
                }
            }
        }
    }
    assert!(buf.is_empty());
    out
}

fn data_in(data_len: usize) -> Pdu {
    Pdu::new(
        DataIn {
            final_pdu: false,
            ack: false,
            lun: 1 << 48,
            itt: 7,
            ttt: u32::MAX,
            exp_cmd_sn: Serial(5),
            max_cmd_sn: Serial(36),
            data_sn: Serial(0),
            buffer_offset: 0,
            status: None,
        },
        Bytes::from(vec![0x5au8; data_len]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any cut of a stream of PDUs under any digest setting yields the
    /// same PDUs.
    #[test]
    fn split_invariance(
        pdus in proptest::collection::vec(s::pdu(300), 1..6),
        digests in s::digests(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream = encode_all(&pdus, digests);
        let mut dec = PduDecoder::new(cfg(digests, 300));
        prop_assert_eq!(feed(&mut dec, &stream, &cuts), pdus);
    }

    /// Byte-at-a-time feeding yields the same PDUs as feeding all at once.
    #[test]
    fn byte_at_a_time(pdus in proptest::collection::vec(s::pdu(64), 1..4), digests in s::digests()) {
        let stream = encode_all(&pdus, digests);
        let cuts: Vec<usize> = (0..stream.len()).collect();
        let mut dec = PduDecoder::new(cfg(digests, 64));
        prop_assert_eq!(feed(&mut dec, &stream, &cuts), pdus);
    }

    /// Any single bit flipped in a PDU protected by both digests is caught
    /// (or, if it hits the length or opcode fields, refused somehow), and
    /// never yields a different PDU silently.
    #[test]
    fn bit_flips_are_detected(pdu in s::pdu(100), bit in any::<usize>()) {
        let mut stream = encode_all(std::slice::from_ref(&pdu), Digests::BOTH);
        let bit = bit % (stream.len() * 8);
        stream[bit / 8] ^= 1 << (bit % 8);
        let data_start = stream.len() - pdu.data.len() - (4 - pdu.data.len() % 4) % 4
            - if pdu.data.is_empty() { 0 } else { 4 };
        let mut dec = PduDecoder::new(cfg(Digests::BOTH, 1 << 20));
        let r = dec.decode(&mut stream);
        match r {
            Ok(Some(got)) => prop_assert!(false, "flip at bit {} gave {:?}", bit, got),
            Ok(None) => prop_assert!(bit / 8 < data_start, "a data flip stalled"),
            Err(WireError::DataDigest { .. }) => prop_assert!(bit / 8 >= data_start),
            Err(e) => prop_assert!(bit / 8 < data_start, "{:?}", e),
        }
    }

    /// The zero-copy send path (encode_header + payload + data_trailer)
    /// produces exactly what Pdu::encode produces.
    #[test]
    fn zero_copy_send_path_matches(pdu in s::pdu(300), digests in s::digests()) {
        let mut whole = BytesMut::new();
        pdu.encode(&mut whole, digests).unwrap();
        let mut parts = BytesMut::new();
        encode_header(&mut parts, &pdu.header, &pdu.ahs, pdu.data.len() as u32, digests).unwrap();
        let hdr_len = parts.len();
        parts.extend_from_slice(&pdu.data);
        let trailer = data_trailer(&pdu.data, digests);
        prop_assert!(trailer.len() <= 7);
        parts.extend_from_slice(trailer.as_ref());
        prop_assert_eq!(&parts[..], &whole[..]);
        let view = Bhs::new_checked(&parts[..hdr_len]).unwrap();
        prop_assert_eq!(pdu_len(&view, digests), whole.len());
    }
}

#[test]
fn oversize_data_segment_refused_from_bhs_alone() {
    let big = data_in(8193);
    let mut stream = encode_all(&[big], Digests::NONE);
    stream.truncate(48); // only the BHS has arrived
    let mut dec = PduDecoder::new(cfg(Digests::NONE, 8192));
    let e = dec.decode(&mut stream).unwrap_err();
    assert_eq!(
        e,
        WireError::DataSegmentTooLong {
            length: 8193,
            limit: 8192
        }
    );
    assert!(e.is_fatal());
    assert_eq!(e.rfc_section(), "13.12");
    assert_eq!(stream.len(), 48, "nothing consumed");
    assert_eq!(dec.needed(&stream), 0);
    // At the limit it is fine.
    let ok = data_in(8192);
    let mut stream = encode_all(std::slice::from_ref(&ok), Digests::NONE);
    assert_eq!(dec.decode(&mut stream).unwrap(), Some(ok));
}

#[test]
fn header_digest_mismatch_is_fatal_and_consumes_nothing() {
    let p = data_in(10);
    let mut stream = encode_all(&[p], Digests::BOTH);
    stream[20] ^= 0x01; // ITT
    let len = stream.len();
    let mut dec = PduDecoder::new(cfg(Digests::BOTH, 8192));
    let e = dec.decode(&mut stream).unwrap_err();
    assert!(matches!(e, WireError::HeaderDigest { .. }));
    assert!(e.is_fatal());
    assert_eq!(e.reject_reason(), None);
    assert_eq!(stream.len(), len);
    // Detected as soon as BHS + digest are there, before the data.
    let mut partial = BytesMut::from(&stream[..52]);
    assert!(matches!(
        dec.decode(&mut partial),
        Err(WireError::HeaderDigest { .. })
    ));
}

#[test]
fn data_digest_mismatch_consumes_pdu_and_keeps_header_for_reject() {
    let a = data_in(10);
    let b = data_in(3);
    let mut stream = encode_all(&[a, b.clone()], Digests::BOTH);
    stream[48 + 4 + 2] ^= 0x80; // a data byte of the first PDU
    let original_bhs = stream[..48].to_vec();
    let mut dec = PduDecoder::new(cfg(Digests::BOTH, 8192));
    let e = dec.decode(&mut stream).unwrap_err();
    assert!(matches!(e, WireError::DataDigest { .. }));
    assert!(!e.is_fatal());
    assert_eq!(e.reject_reason(), Some(RejectReason::DataDigestError));
    assert_eq!(
        dec.take_rejected_header().as_deref(),
        Some(&original_bhs[..])
    );
    assert_eq!(dec.take_rejected_header(), None);
    // The stream continues with the next PDU.
    assert_eq!(dec.decode(&mut stream).unwrap(), Some(b));
}

#[test]
fn data_digest_covers_padding() {
    let p = data_in(5);
    let mut stream = encode_all(
        std::slice::from_ref(&p),
        Digests {
            header: false,
            data: true,
        },
    );
    assert_eq!(stream.len(), 48 + 8 + 4);
    assert_eq!(&stream[56..60], &digest_bytes(data_digest(&[0x5a; 5])));
    // A non-zero padding byte breaks the digest.
    stream[54] = 1;
    let mut dec = PduDecoder::new(cfg(
        Digests {
            header: false,
            data: true,
        },
        8192,
    ));
    assert!(matches!(
        dec.decode(&mut stream),
        Err(WireError::DataDigest { .. })
    ));
}

#[test]
fn empty_data_segment_has_no_data_digest() {
    let p = Pdu::new(
        NopIn {
            lun: 0,
            itt: 1,
            ttt: u32::MAX,
            stat_sn: Serial(1),
            exp_cmd_sn: Serial(1),
            max_cmd_sn: Serial(2),
        },
        Bytes::new(),
    );
    let stream = encode_all(std::slice::from_ref(&p), Digests::BOTH);
    assert_eq!(stream.len(), 48 + 4);
    assert!(data_trailer(&[], Digests::BOTH).is_empty());
}

#[test]
fn unparseable_header_consumes_only_that_pdu() {
    let good = data_in(4);
    let mut stream = BytesMut::new();
    // Vendor opcode 0x3c with 4 bytes of data: delimited, then refused.
    let mut bad = [0u8; 48];
    bad[0] = 0x3c;
    bad[7] = 4;
    stream.extend_from_slice(&bad);
    stream.extend_from_slice(&[1, 2, 3, 4]);
    good.encode(&mut stream, Digests::NONE).unwrap();
    let mut dec = PduDecoder::default();
    assert_eq!(dec.decode(&mut stream), Err(WireError::UnknownOpcode(0x3c)));
    assert_eq!(dec.take_rejected_header().as_deref(), Some(&bad[..]));
    assert_eq!(dec.decode(&mut stream).unwrap(), Some(good));
}

#[test]
fn malformed_ahs_is_refused_after_delimiting() {
    let mut b = [0u8; 48];
    b[0] = 0x01;
    b[1] = 0x80;
    b[4] = 1; // one AHS word
    let mut stream = BytesMut::from(&b[..]);
    stream.extend_from_slice(&[0x00, 0x08, 0x01, 0x00]); // AHSLength 8 > 1 word
    let mut dec = PduDecoder::default();
    let e = dec.decode(&mut stream).unwrap_err();
    assert!(matches!(e, WireError::MalformedAhs { .. }));
    assert_eq!(e.reject_reason(), Some(RejectReason::InvalidPduField));
    assert!(stream.is_empty());
}

#[test]
fn data_segment_is_a_zero_copy_slice() {
    let p = data_in(8192);
    let mut buf = encode_all(std::slice::from_ref(&p), Digests::NONE);
    let base = buf.as_ptr() as usize;
    let mut dec = PduDecoder::default();
    let got = dec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(got.data.as_ptr() as usize, base + 48);
    assert_eq!(got.data.len(), 8192);
    assert!(got.ahs.is_empty() && got.ahs.capacity() == 0);
}

#[test]
fn digests_switch_between_pdus() {
    // The final Login Response goes without digests; what follows has them.
    let login = Pdu::new(
        LoginResponse {
            transit: true,
            cont: false,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_active: 0,
            isid: Isid::random([1, 2, 3], 0),
            tsih: 9,
            itt: 0,
            stat_sn: Serial(0),
            exp_cmd_sn: Serial(1),
            max_cmd_sn: Serial(32),
            status_class: 0,
            status_detail: 0,
        },
        Bytes::from_static(b"HeaderDigest=CRC32C\0DataDigest=CRC32C\0"),
    );
    let next = data_in(13);
    let mut stream = encode_all(std::slice::from_ref(&login), Digests::NONE);
    next.encode(&mut stream, Digests::BOTH).unwrap();
    let mut dec = PduDecoder::default();
    assert_eq!(dec.decode(&mut stream).unwrap(), Some(login));
    dec.set_digests(Digests::BOTH);
    assert_eq!(dec.decode(&mut stream).unwrap(), Some(next));
}

#[test]
fn needed_reports_missing_bytes() {
    let p = data_in(10);
    let stream = encode_all(&[p], Digests::BOTH);
    let dec = PduDecoder::new(cfg(Digests::BOTH, 8192));
    assert_eq!(dec.needed(&[]), 48);
    assert_eq!(dec.needed(&stream[..20]), 28);
    // 48 + 4 + 12 + 4
    assert_eq!(stream.len(), 68);
    assert_eq!(dec.needed(&stream[..48]), 20);
    assert_eq!(dec.needed(&stream), 0);
    assert_eq!(dec.max_pdu_len(), 48 + 1020 + 4 + 8192 + 4);
}

#[test]
fn encoder_refuses_unencodable() {
    let h = data_in(0).header;
    let mut out = BytesMut::new();
    let e = encode_header(&mut out, &h, &[], 1 << 24, Digests::NONE).unwrap_err();
    assert!(matches!(e, WireError::Unencodable { .. }));
    let big = vec![Ahs::Unknown {
        ahs_type: 9,
        data: Bytes::from(vec![0; 1100]),
    }];
    assert!(encode_header(&mut out, &h, &big, 0, Digests::NONE).is_err());
    assert!(out.is_empty(), "nothing written on error");
}

#[test]
fn scsi_response_sense_data_split() {
    // A CHECK CONDITION response with 18 bytes of fixed-format sense data.
    let mut seg = vec![0, 18, 0x70, 0, 0x05, 0, 0, 0, 0, 10];
    seg.resize(2 + 18, 0);
    seg.extend_from_slice(&[0xde, 0xad]);
    let resp = Pdu::new(
        ScsiResponse {
            response: ScsiResponseCode::CommandCompleted,
            status: 0x02,
            itt: 3,
            snack_tag: 0,
            stat_sn: Serial(4),
            exp_cmd_sn: Serial(5),
            max_cmd_sn: Serial(6),
            exp_data_sn: Serial(0),
            bidi_read_residual: Residual::None,
            residual: Residual::Underflow(512),
        },
        Bytes::from(seg),
    );
    let mut stream = encode_all(std::slice::from_ref(&resp), Digests::NONE);
    let got = PduDecoder::default().decode(&mut stream).unwrap().unwrap();
    let parts = split_sense(&got.data).unwrap();
    assert_eq!(parts.sense.len(), 18);
    assert_eq!(parts.sense[2], 0x05); // ILLEGAL REQUEST
    assert_eq!(&parts.response_data[..], &[0xde, 0xad]);
    let Header::ScsiResponse(r) = got.header else {
        panic!()
    };
    assert_eq!(r.residual, Residual::Underflow(512));
}

#[cfg(feature = "fuzzing")]
proptest! {
    #[test]
    fn fuzz_pdu_decode_holds(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        iscsi_proto::fuzzing::pdu_decode(&data);
    }

    #[test]
    fn fuzz_roundtrip_holds(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        iscsi_proto::fuzzing::roundtrip(&data);
    }

    #[test]
    fn fuzz_pdu_decode_on_valid_streams(pdus in proptest::collection::vec(s::pdu(100), 1..4), ctrl in any::<[u8; 4]>()) {
        let mut v = ctrl.to_vec();
        v.extend_from_slice(&encode_all(&pdus, Digests::NONE));
        iscsi_proto::fuzzing::pdu_decode(&v);
        iscsi_proto::fuzzing::roundtrip(&v[4..]);
    }
}
