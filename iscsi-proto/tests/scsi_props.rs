//! Property tests for `iscsi_proto::scsi`: parsers never panic on any
//! input, and builders round-trip through parsers.

use iscsi_proto::scsi::{
    Capacity, Lun, ReportLuns, ScsiStatus, SenseData, SenseKey, StandardInquiry,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = SenseData::parse(&data).map(|s| s.to_string());
        let _ = SenseData::parse_iscsi_segment(&data);
        let _ = StandardInquiry::parse(&data);
        let _ = Capacity::parse10(&data).map(|c| c.total_bytes());
        let _ = Capacity::parse16(&data).map(|c| c.total_bytes());
        if let Ok(r) = ReportLuns::parse(&data) {
            prop_assert!(r.luns.len() * 8 <= data.len());
        }
    }

    #[test]
    fn sense_descriptor_never_panics(key in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut d = vec![0x72, key, 0x24, 0, 0, 0, 0, rest.len() as u8];
        d.extend_from_slice(&rest);
        let _ = SenseData::parse(&d);
    }

    #[test]
    fn fixed_sense_roundtrip(key in 0u8..16, asc in any::<u8>(), ascq in any::<u8>(), info in proptest::option::of(any::<u32>()), deferred in any::<bool>()) {
        let mut s = SenseData::new(SenseKey::from_u8(key), asc, ascq);
        s.information = info.map(u64::from);
        s.deferred = deferred;
        let p = SenseData::parse(&s.to_fixed()).unwrap();
        prop_assert_eq!(p, s);
        let seg = SenseData::parse_iscsi_segment(&s.to_iscsi_segment()).unwrap();
        prop_assert_eq!(seg, Some(s));
    }

    #[test]
    fn lun_raw_roundtrip(raw in any::<u64>()) {
        let l = Lun::from_u64(raw);
        prop_assert_eq!(l.to_u64(), raw);
        if let Some(n) = l.number() {
            // A decodable LUN re-encodes to the same number.
            prop_assert_eq!(Lun::from_number(n).number(), Some(n));
        }
    }

    #[test]
    fn status_roundtrip(b in any::<u8>()) {
        prop_assert_eq!(ScsiStatus::from_u8(b).to_u8(), b);
    }
}
