//! The RFC 7143 section 6.1 text codec: pairs, value forms, assembly across
//! PDUs, splitting, and the ESX login request seed.

use iscsi_proto::wire::text::*;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn text_parse_basic_and_empty_value() {
    let got = parse_pairs(b"HeaderDigest=None\0TargetAlias=\0").unwrap();
    assert_eq!(got, pairs(&[("HeaderDigest", "None"), ("TargetAlias", "")]));
    assert_eq!(parse_pairs(b"").unwrap(), vec![]);
    // Value holds everything after the first '='.
    assert_eq!(parse_pairs(b"X-a=b=c\0").unwrap(), pairs(&[("X-a", "b=c")]));
}

#[test]
fn text_missing_equals_and_empty_key_refused() {
    assert_eq!(
        parse_pairs(b"A=1\0Broken\0"),
        Err(TextError::MissingEquals { offset: 4 })
    );
    assert!(matches!(
        parse_pairs(b"=value\0"),
        Err(TextError::EmptyKey { .. })
    ));
    // An empty record between two pairs is refused ...
    assert!(matches!(
        parse_pairs(b"A=1\0\0B=2\0"),
        Err(TextError::EmptyKey { offset: 4 })
    ));
    // ... but NUL padding at the very end is tolerated.
    assert_eq!(parse_pairs(b"A=1\0\0\0").unwrap(), pairs(&[("A", "1")]));
    assert_eq!(parse_pairs(b"\0\0").unwrap(), vec![]);
}

#[test]
fn text_key_length_and_characters() {
    let k63 = format!("K{}", "a".repeat(62));
    let k64 = format!("K{}", "a".repeat(63));
    assert!(parse_pairs(format!("{k63}=1\0").as_bytes()).is_ok());
    assert_eq!(
        parse_pairs(format!("{k64}=1\0").as_bytes()),
        Err(TextError::KeyTooLong { len: 64 })
    );
    for bad in [
        &b"Key Name=1\0"[..],
        b"Key/x=1\0",
        b"K\xc3\xa9=1\0",
        b"1Key=1\0",
        b"Ke#y=1\0",
    ] {
        assert!(
            matches!(parse_pairs(bad), Err(TextError::InvalidKeyChar { .. })),
            "{bad:?}"
        );
    }
    // Allowed punctuation, the lower-case iSCSIProtocolLevel, X# keys.
    assert!(parse_pairs(b"X-com.example.a_b+c@d=1\0iSCSIProtocolLevel=1\0X#Foo=Yes\0").is_ok());
}

#[test]
fn text_trailing_bytes_without_nul_refused() {
    assert_eq!(parse_pairs(b"A=1\0B=2"), Err(TextError::Unterminated));
    assert_eq!(parse_pairs(b"A=1"), Err(TextError::Unterminated));
}

#[test]
fn text_value_utf8_and_length_bound() {
    assert_eq!(
        parse_pairs("InitiatorAlias=dísk\0".as_bytes()).unwrap()[0].1,
        "dísk"
    );
    assert_eq!(parse_pairs(b"A=\xff\0"), Err(TextError::NotUtf8));
    let ok = format!("A={}\0", "x".repeat(MAX_VALUE_LEN));
    assert!(parse_pairs(ok.as_bytes()).is_ok());
    let long = format!("A={}\0", "x".repeat(MAX_VALUE_LEN + 1));
    assert!(matches!(
        parse_pairs(long.as_bytes()),
        Err(TextError::ValueTooLong { .. })
    ));
}

#[test]
fn text_encode_roundtrip_and_refusals() {
    let mut out = Vec::new();
    encode_pairs(
        [
            ("MaxBurstLength", "262144"),
            ("HeaderDigest", "CRC32C,None"),
        ],
        &mut out,
    )
    .unwrap();
    assert_eq!(out, b"MaxBurstLength=262144\0HeaderDigest=CRC32C,None\0");
    assert_eq!(
        parse_pairs(&out).unwrap(),
        pairs(&[
            ("MaxBurstLength", "262144"),
            ("HeaderDigest", "CRC32C,None")
        ])
    );
    let mut out = Vec::new();
    assert_eq!(
        encode_pair("A", "x\0y", &mut out),
        Err(TextError::NulInValue)
    );
    assert!(encode_pair("A=B", "x", &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn text_numbers_decimal_hex_base64() {
    assert_eq!(parse_number("0"), Ok(0));
    assert_eq!(parse_number("65536"), Ok(65536));
    assert_eq!(parse_number("0x10000"), Ok(65536));
    assert_eq!(parse_number("0X1f"), Ok(31));
    assert_eq!(parse_number("0bAQAA"), Ok(65536));
    assert_eq!(parse_number("18446744073709551615"), Ok(u64::MAX));
    assert!(matches!(
        parse_number("18446744073709551616"),
        Err(TextError::NumberTooLarge(_))
    ));
    assert!(matches!(
        parse_number("0x10000000000000000"),
        Err(TextError::NumberTooLarge(_))
    ));
    for bad in ["", "0x", "012", "12a", "-1", "+1", " 1", "0xg", "0b"] {
        assert!(parse_number(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn text_binary_hex_base64_bounds() {
    assert_eq!(parse_binary("0x0102ff", 16), Ok(vec![1, 2, 0xff]));
    // Odd digit count: implicit leading zero nibble.
    assert_eq!(parse_binary("0xabc", 16), Ok(vec![0x0a, 0xbc]));
    assert_eq!(parse_binary("0bAQID", 16), Ok(vec![1, 2, 3]));
    assert_eq!(parse_binary("0BAQI=", 16), Ok(vec![1, 2]));
    assert_eq!(parse_binary("0bAQ==", 16), Ok(vec![1]));
    assert_eq!(parse_binary("0bAQ", 16), Ok(vec![1]));
    for bad in [
        "0bA", "0bAQID=", "0bA===", "0b!!!!", "0xzz", "123", "0bAR==",
    ] {
        assert!(parse_binary(bad, 16).is_err(), "{bad:?}");
    }
    let data: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    assert_eq!(parse_binary(&encode_hex(&data), 1024).unwrap(), data);
    assert_eq!(parse_binary(&encode_base64(&data), 1024).unwrap(), data);
    let big = vec![0u8; 1025];
    assert_eq!(
        parse_binary(&encode_hex(&big), 1024),
        Err(TextError::BinaryTooLong {
            len: 1025,
            limit: 1024
        })
    );
    assert_eq!(
        parse_binary(&encode_base64(&big), 1024),
        Err(TextError::BinaryTooLong {
            len: 1025,
            limit: 1024
        })
    );
    assert_eq!(encode_base64(&[1, 2]), "0bAQI=");
    assert_eq!(encode_hex(&[0xde, 0xad]), "0xdead");
}

#[test]
fn text_bool_list_range_special() {
    assert_eq!(parse_bool("Yes"), Ok(true));
    assert_eq!(parse_bool("No"), Ok(false));
    assert!(parse_bool("yes").is_err());
    assert!(parse_bool("").is_err());
    assert_eq!(parse_list("CRC32C,None"), Ok(vec!["CRC32C", "None"]));
    assert!(parse_list("CRC32C,,None").is_err());
    assert!(parse_list("").is_err());
    assert!(parse_list(&"a".repeat(256)).is_err());
    assert_eq!(parse_range("512~8192"), Ok((512, 8192)));
    assert_eq!(parse_range("5~5"), Ok((5, 5)));
    assert!(parse_range("8192~512").is_err());
    assert!(parse_range("1~").is_err());
    assert!(parse_range("1").is_err());
    assert_eq!(special_value("Reject"), Some(SpecialValue::Reject));
    assert_eq!(special_value("Irrelevant"), Some(SpecialValue::Irrelevant));
    assert_eq!(
        special_value("NotUnderstood"),
        Some(SpecialValue::NotUnderstood)
    );
    assert_eq!(special_value("None"), Some(SpecialValue::None));
    assert_eq!(special_value("reject"), None);
}

#[test]
fn text_assembler_pair_split_across_segments() {
    let mut asm = TextAssembler::new();
    assert_eq!(asm.push(b"HeaderDig", true), Ok(None));
    assert_eq!(asm.push(b"est=No", true), Ok(None));
    assert_eq!(asm.pending_len(), 15);
    let got = asm.push(b"ne\0DataDigest=None\0", false).unwrap().unwrap();
    assert_eq!(
        got,
        pairs(&[("HeaderDigest", "None"), ("DataDigest", "None")])
    );
    assert_eq!(asm.pending_len(), 0);
    // Ready for the next LTDS.
    assert_eq!(
        asm.push(b"A=1\0", false).unwrap().unwrap(),
        pairs(&[("A", "1")])
    );
    // A final segment ending mid-pair is unterminated.
    asm.push(b"A=", true).unwrap();
    assert_eq!(asm.push(b"1", false), Err(TextError::Unterminated));
    assert_eq!(asm.pending_len(), 0);
}

#[test]
fn text_assembler_cap_enforced() {
    let mut asm = TextAssembler::with_limit(16);
    asm.push(b"0123456789", true).unwrap();
    assert_eq!(
        asm.push(b"0123456789", true),
        Err(TextError::TooLarge { len: 20, limit: 16 })
    );
    assert_eq!(asm.pending_len(), 0);
    // Exactly at the cap is fine.
    let mut asm = TextAssembler::with_limit(8);
    asm.push(b"AB=", true).unwrap();
    assert_eq!(
        asm.push(b"1234\0", false).unwrap().unwrap(),
        pairs(&[("AB", "1234")])
    );
    assert_eq!(DEFAULT_MAX_TEXT_LEN, 65536);
}

#[test]
fn text_splitter_sets_c_bit_on_all_but_last() {
    let text = b"MaxBurstLength=262144\0FirstBurstLength=65536\0";
    let segs: Vec<_> = split_text(text, 10).collect();
    assert_eq!(segs.len(), text.len().div_ceil(10));
    assert!(segs.iter().all(|s| s.data.len() <= 10));
    assert!(segs[..segs.len() - 1].iter().all(|s| s.continues));
    assert!(!segs.last().unwrap().continues);
    let mut asm = TextAssembler::new();
    let mut result = None;
    for s in &segs {
        result = asm.push(s.data, s.continues).unwrap();
    }
    assert_eq!(result.unwrap(), parse_pairs(text).unwrap());
    // Empty text: one empty final segment. Exact multiple: no empty tail.
    let segs: Vec<_> = split_text(b"", 8).collect();
    assert_eq!(
        segs,
        vec![TextSegment {
            data: b"",
            continues: false
        }]
    );
    let segs: Vec<_> = split_text(b"A=1\0B=2\0", 4).collect();
    assert_eq!(segs.len(), 2);
    assert_eq!(split_text(b"A=1\0", 0).count(), 4);
}

/// The ESX discovery login request (frame 8 of the seed capture): 231 data
/// bytes (DataSegmentLength 0xe7) followed by one pad byte.
pub const ESX_LOGIN_REQUEST: &[u8] =
    b"InitiatorName=iqn.1998-01.com.vmware:wdc-tse-h171-3c00d9ce\0\
SessionType=Discovery\0HeaderDigest=None\0DataDigest=None\0DefaultTime2Wait=0\0\
DefaultTime2Retain=0\0IFMarker=No\0OFMarker=No\0ErrorRecoveryLevel=0\0\
MaxRecvDataSegmentLength=32768\0";

#[test]
fn text_esx_login_request_seed_parses() {
    assert_eq!(ESX_LOGIN_REQUEST.len(), 0xe7);
    let got = parse_pairs(ESX_LOGIN_REQUEST).unwrap();
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "InitiatorName",
            "SessionType",
            "HeaderDigest",
            "DataDigest",
            "DefaultTime2Wait",
            "DefaultTime2Retain",
            "IFMarker",
            "OFMarker",
            "ErrorRecoveryLevel",
            "MaxRecvDataSegmentLength"
        ]
    );
    assert_eq!(got[0].1, "iqn.1998-01.com.vmware:wdc-tse-h171-3c00d9ce");
    assert_eq!(got[1].1, "Discovery");
    assert_eq!(parse_number(&got[9].1), Ok(32768));
    // With its pad byte as captured on the wire (232 bytes) it still parses.
    let mut padded = ESX_LOGIN_REQUEST.to_vec();
    padded.push(0);
    assert_eq!(parse_pairs(&padded).unwrap(), got);
}

#[test]
fn text_fuzz_entry_never_panics_on_odd_inputs() {
    let inputs: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x01A=0x\0",
        b"\x03A=0b====\0B=0bA\0",
        b"\xffA=99999999999999999999999\0",
        b"\x02\xff\xfe=\0",
        b"\x05A=1~0\0B=,\0C=0x1~0x2\0",
        b"\x01=\0=\0\0\0",
    ];
    for i in inputs {
        fuzz_text_kv(i);
        iscsi_proto::login::negotiation::fuzz_negotiation(i);
        if let Ok(pairs) = iscsi_proto::wire::text::parse_pairs(i) {
            let _ = iscsi_proto::login::discovery::parse_send_targets(&pairs);
        }
    }
    let mut big = vec![7u8];
    big.extend(std::iter::repeat_n(b'A', 5000));
    fuzz_text_kv(&big);
}
