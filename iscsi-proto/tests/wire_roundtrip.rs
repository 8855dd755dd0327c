//! Emit-then-parse identity for every PDU kind, parse of arbitrary bytes,
//! and the flag/field rules of RFC 7143 section 11.

mod wire_support;

use bytes::BytesMut;
use iscsi_proto::wire::*;
use proptest::prelude::*;
use wire_support as s;

/// Emits `h` into a zeroed BHS, parses it back, and checks the Header-level
/// API agrees.
fn check_roundtrip(h: Header, op: Opcode) -> Result<(), TestCaseError> {
    let mut buf = [0u8; BHS_LEN];
    h.emit(&mut Bhs::new_checked(&mut buf[..]).unwrap());
    let view = Bhs::new_checked(&buf[..]).unwrap();
    prop_assert_eq!(view.opcode(), Ok(op));
    prop_assert_eq!(view.itt(), h.itt());
    prop_assert_eq!(view.immediate(), h.immediate());
    prop_assert_eq!(view.total_ahs_len(), 0);
    prop_assert_eq!(view.data_segment_len(), 0);
    let back = Header::parse(&view);
    prop_assert_eq!(back, Ok(h));
    prop_assert_eq!(h.opcode(), op);
    prop_assert_eq!(op.is_initiator(), (op.code() & 0x20) == 0);
    // Emitting over garbage gives the same bytes (reserved fields zeroed),
    // apart from the framing bytes 4-7 which emit leaves alone.
    let mut dirty = [0xa5u8; BHS_LEN];
    h.emit(&mut Bhs::new_unchecked(&mut dirty[..]));
    prop_assert_eq!(&dirty[..4], &buf[..4]);
    prop_assert_eq!(&dirty[8..], &buf[8..]);
    Ok(())
}

macro_rules! roundtrip_tests {
    ($($name:ident: $strat:expr, $op:expr;)*) => {
        proptest! {
            $(
                #[test]
                fn $name(r in $strat) {
                    check_roundtrip(Header::from(r), $op)?;
                }
            )*
        }
    };
}

roundtrip_tests! {
    roundtrip_nop_out: s::nop_out(), Opcode::NopOut;
    roundtrip_scsi_command: s::scsi_command(), Opcode::ScsiCommand;
    roundtrip_task_mgmt_request: s::task_mgmt_request(), Opcode::TaskMgmtRequest;
    roundtrip_login_request: s::login_request(), Opcode::LoginRequest;
    roundtrip_text_request: s::text_request(), Opcode::TextRequest;
    roundtrip_data_out: s::data_out(), Opcode::DataOut;
    roundtrip_logout_request: s::logout_request(), Opcode::LogoutRequest;
    roundtrip_snack_request: s::snack_request(), Opcode::SnackRequest;
    roundtrip_nop_in: s::nop_in(), Opcode::NopIn;
    roundtrip_scsi_response: s::scsi_response(), Opcode::ScsiResponse;
    roundtrip_task_mgmt_response: s::task_mgmt_response(), Opcode::TaskMgmtResponse;
    roundtrip_login_response: s::login_response(), Opcode::LoginResponse;
    roundtrip_text_response: s::text_response(), Opcode::TextResponse;
    roundtrip_data_in: s::data_in(), Opcode::DataIn;
    roundtrip_logout_response: s::logout_response(), Opcode::LogoutResponse;
    roundtrip_r2t: s::r2t(), Opcode::R2t;
    roundtrip_async_message: s::async_message(), Opcode::AsyncMessage;
    roundtrip_reject: s::reject(), Opcode::Reject;
}

proptest! {
    /// Parsing arbitrary 48 bytes never panics; whatever parses re-emits to
    /// something that parses to the same Repr.
    #[test]
    fn arbitrary_bhs_parse_is_stable(bytes in any::<[u8; 48]>(), op in 0u8..0x40) {
        for b in [bytes, { let mut c = bytes; c[0] = op; c }] {
            let view = Bhs::new_checked(&b[..]).unwrap();
            if let Ok(h) = Header::parse(&view) {
                let again = h.to_bytes(view.total_ahs_len(), view.data_segment_len());
                prop_assert_eq!(Header::parse_bytes(&again), Ok(h));
            }
        }
    }

    /// Whole PDUs (with AHS and data) survive encode -> decode under every
    /// digest setting, and encoded_len matches.
    #[test]
    fn pdu_encode_decode(pdu in s::pdu(600), digests in s::digests()) {
        let mut out = BytesMut::new();
        pdu.encode(&mut out, digests).unwrap();
        prop_assert_eq!(out.len(), pdu.encoded_len(digests));
        prop_assert_eq!(out.len() % 4, 0);
        let mut dec = PduDecoder::new(DecoderConfig { digests, max_data_segment_length: 600 });
        prop_assert_eq!(dec.needed(&out), 0);
        let got = dec.decode(&mut out).unwrap();
        prop_assert_eq!(got, Some(pdu));
        prop_assert!(out.is_empty());
    }

    /// The fuzz entry points hold on random input.
    #[test]
    fn fuzz_entry_points_hold(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        roundtrip_via_decoder(&data);
    }
}

fn roundtrip_via_decoder(data: &[u8]) {
    let mut dec = PduDecoder::new(DecoderConfig {
        digests: Digests::NONE,
        max_data_segment_length: 1 << 20,
    });
    let mut buf = BytesMut::from(data);
    if let Ok(Some(pdu)) = dec.decode(&mut buf) {
        let mut out = BytesMut::new();
        pdu.encode(&mut out, Digests::NONE).unwrap();
        assert_eq!(dec.decode(&mut out), Ok(Some(pdu)));
    }
}

fn bhs_with(op: u8, flags: u8) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0] = op;
    b[1] = flags;
    b
}

#[test]
fn unknown_and_vendor_opcodes_are_errors() {
    for op in [0x07u8, 0x1c, 0x1d, 0x1e, 0x27, 0x30, 0x3c, 0x3e] {
        let e = Header::parse_bytes(&bhs_with(op, 0x80)).unwrap_err();
        assert_eq!(e, WireError::UnknownOpcode(op));
        assert_eq!(e.rfc_section(), "11.2.1.2");
        assert_eq!(e.reject_reason(), Some(RejectReason::CommandNotSupported));
        assert!(!e.is_fatal());
    }
}

#[test]
fn data_in_status_without_final_is_forbidden() {
    // RFC 7143 section 11.7.3: S=1 requires F=1.
    let e = Header::parse_bytes(&bhs_with(0x25, 0x01)).unwrap_err();
    assert!(matches!(
        e,
        WireError::ForbiddenFlags {
            section: "11.7.3",
            ..
        }
    ));
    assert_eq!(e.reject_reason(), Some(RejectReason::ProtocolError));
    // S=0 with O/U bits: the residual is reserved and ignored.
    let h = Header::parse_bytes(&bhs_with(0x25, 0x86)).unwrap();
    let Header::DataIn(d) = h else {
        panic!("not Data-In")
    };
    assert_eq!(d.status, None);
    // O and U both with S: forbidden.
    assert!(Header::parse_bytes(&bhs_with(0x25, 0x87)).is_err());
}

#[test]
fn scsi_response_overflow_and_underflow_exclusive() {
    // RFC 7143 section 11.4.5.1.
    for flags in [0x86u8, 0x98] {
        let e = Header::parse_bytes(&bhs_with(0x21, flags)).unwrap_err();
        assert_eq!(e.rfc_section(), "11.4.5.1");
    }
    let mut b = bhs_with(0x21, 0x80 | 0x10 | 0x02);
    b[40..44].copy_from_slice(&7u32.to_be_bytes());
    b[44..48].copy_from_slice(&9u32.to_be_bytes());
    let Header::ScsiResponse(r) = Header::parse_bytes(&b).unwrap() else {
        panic!()
    };
    assert_eq!(r.bidi_read_residual, Residual::Overflow(7));
    assert_eq!(r.residual, Residual::Underflow(9));
}

#[test]
fn login_continue_with_transit_is_forbidden() {
    // RFC 7143 section 11.12.2: "If the C bit is 1, T MUST be 0".
    let e = Header::parse_bytes(&bhs_with(0x43, 0xc7)).unwrap_err();
    assert!(matches!(
        e,
        WireError::ForbiddenFlags {
            section: "11.12.2",
            ..
        }
    ));
    let e = Header::parse_bytes(&bhs_with(0x23, 0xc7)).unwrap_err();
    assert!(matches!(
        e,
        WireError::ForbiddenFlags {
            section: "11.13.7",
            ..
        }
    ));
}

#[test]
fn login_reserved_stages() {
    // NSG = 2 with T=1: error (RFC 7143 section 11.12.3).
    let e = Header::parse_bytes(&bhs_with(0x43, 0x86)).unwrap_err();
    assert!(matches!(
        e,
        WireError::ReservedValue {
            field: "NSG",
            section: "11.12.3",
            ..
        }
    ));
    assert_eq!(e.reject_reason(), Some(RejectReason::InvalidPduField));
    // CSG = 2: error.
    assert!(Header::parse_bytes(&bhs_with(0x43, 0x89)).is_err());
    // NSG = 2 with T=0: reserved, ignored.
    let Header::LoginRequest(l) = Header::parse_bytes(&bhs_with(0x43, 0x06)).unwrap() else {
        panic!()
    };
    assert!(!l.transit);
    assert_eq!((l.csg, l.nsg), (Stage::Operational, Stage::Security));
    // A login reject (Status-Class 2) tolerates reserved stages.
    let mut b = bhs_with(0x23, 0x8a);
    b[36] = 2;
    let Header::LoginResponse(r) = Header::parse_bytes(&b).unwrap() else {
        panic!()
    };
    assert_eq!(r.status_class, 2);
    assert!(!r.is_success());
    b[36] = 0;
    assert!(Header::parse_bytes(&b).is_err());
}

#[test]
fn text_continue_with_final_is_forbidden() {
    for (op, sec) in [(0x04u8, "11.10.2"), (0x24, "11.11.2")] {
        let e = Header::parse_bytes(&bhs_with(op, 0xc0)).unwrap_err();
        assert_eq!(e.rfc_section(), sec);
        assert!(Header::parse_bytes(&bhs_with(op, 0x40)).is_ok());
    }
}

#[test]
fn nop_out_unsolicited_must_be_immediate() {
    // RFC 7143 section 11.18.1.
    let mut b = bhs_with(0x00, 0x80);
    b[16..20].copy_from_slice(&[0xff; 4]);
    assert!(Header::parse_bytes(&b).is_err());
    b[0] = 0x40;
    assert!(Header::parse_bytes(&b).is_ok());
}

#[test]
fn pdus_without_segments_reject_lengths() {
    for op in [0x02u8, 0x22, 0x31, 0x06, 0x26] {
        let mut b = bhs_with(op, 0x80);
        assert!(Header::parse_bytes(&b).is_ok(), "{op:#x}");
        b[7] = 4;
        let e = Header::parse_bytes(&b).unwrap_err();
        assert!(matches!(e, WireError::UnexpectedSegment { .. }), "{op:#x}");
        b[7] = 0;
        b[4] = 1;
        assert!(Header::parse_bytes(&b).is_err());
    }
}

#[test]
fn reserved_bits_are_ignored() {
    // SCSI Command with byte 0 bit 7 and byte 1 bits 3-4 set (reserved).
    let mut b = bhs_with(0x81, 0x80 | 0x18 | 0x01);
    b[2] = 0xff;
    let Header::ScsiCommand(c) = Header::parse_bytes(&b).unwrap() else {
        panic!()
    };
    assert!(c.final_pdu && !c.read && !c.write);
    assert_eq!(c.attr, TaskAttr::Simple);
    // Emitting writes them as 0.
    let out = Header::ScsiCommand(c).to_bytes(0, 0);
    assert_eq!(&out[..4], &[0x01, 0x81, 0, 0]);
}

#[test]
fn task_attr_and_tmf_values() {
    let Header::ScsiCommand(c) = Header::parse_bytes(&bhs_with(0x01, 0x06)).unwrap() else {
        panic!()
    };
    assert_eq!(c.attr, TaskAttr::Other(6));
    let Header::TaskMgmtRequest(t) = Header::parse_bytes(&bhs_with(0x02, 0x85)).unwrap() else {
        panic!()
    };
    assert_eq!(t.function, TmfFunction::LogicalUnitReset);
    let Header::TaskMgmtRequest(t) = Header::parse_bytes(&bhs_with(0x02, 0x8e)).unwrap() else {
        panic!()
    };
    assert_eq!(t.function, TmfFunction::Other(14));
}

#[test]
fn async_and_reject_itt_is_all_ones() {
    let r = Reject {
        reason: RejectReason::DataDigestError,
        stat_sn: Serial(1),
        exp_cmd_sn: Serial(2),
        max_cmd_sn: Serial(3),
        data_sn_or_r2t_sn: Serial(0),
    };
    let b = Header::from(r).to_bytes(0, 48);
    assert_eq!(&b[..8], &[0x3f, 0x80, 0x02, 0, 0, 0, 0, 48]);
    assert_eq!(&b[16..20], &[0xff; 4]);
    assert_eq!(Header::from(r).itt(), u32::MAX);
}
