//! LUN: 64-bit logical unit numbers as carried in the iSCSI BHS (Basic
//! Header Segment).
//!
//! RFC 7143 section 11.2.1.7 (LUN): the 8-byte LUN field "MUST" carry the
//! LUN in the format defined by SAM (SAM-5 section 4.6). This module
//! implements the two addressing methods every target uses for the first
//! level: peripheral device addressing (method 00b) and flat space
//! addressing (method 01b). Other methods are kept raw and round-trip
//! unchanged.

use core::fmt;

/// Largest LUN number representable by flat space addressing (14 bits).
pub const MAX_FLAT_LUN: u16 = 0x3fff;

/// The REPORT LUNS well-known logical unit (SAM-5 section 4.6.9,
/// well-known LUN addressing, W-LUN 0x01): `C1 01 00 .. 00`.
pub const REPORT_LUNS_WLUN: Lun = Lun(0xc101_0000_0000_0000);

/// A SAM logical unit number in its 8-byte, big-endian wire form.
///
/// The raw value is kept as-is, so any 8 bytes a peer sends round-trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Lun(u64);

/// The addressing method of the first level of a [`Lun`] (SAM-5 4.6.2,
/// the two high bits of byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddressMethod {
    /// 00b: peripheral device addressing (single level: bus 0, LUN < 256).
    Peripheral,
    /// 01b: flat space addressing (LUN 0..=16383).
    Flat,
    /// 10b: logical unit addressing (target/bus/LUN).
    LogicalUnit,
    /// 11b: extended logical unit addressing (includes well-known LUNs).
    Extended,
}

impl Lun {
    /// LUN 0 (all zero bytes).
    pub const ZERO: Lun = Lun(0);

    /// Encodes a LUN number the way Linux and most targets do (SAM-5 4.6):
    /// numbers below 256 use single-level peripheral device addressing
    /// (`00 nn 00 00 00 00 00 00`); 256..=16383 use flat space addressing
    /// (`40|hi lo 00 ..`). Numbers above 16383 do not fit in 14 bits; they
    /// are truncated to 14 bits (the caller should check [`MAX_FLAT_LUN`]).
    pub const fn from_number(n: u16) -> Lun {
        if n < 256 {
            Lun((n as u64) << 48)
        } else {
            let n = n & MAX_FLAT_LUN;
            Lun(((0x40 | (n >> 8)) as u64) << 56 | ((n & 0xff) as u64) << 48)
        }
    }

    /// Wraps the 8-byte big-endian wire value (BHS bytes 8..16).
    pub const fn from_u64(raw: u64) -> Lun {
        Lun(raw)
    }

    /// The 8-byte big-endian wire value (BHS bytes 8..16).
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// Builds a LUN from its 8 wire bytes.
    pub const fn from_bytes(b: [u8; 8]) -> Lun {
        Lun(u64::from_be_bytes(b))
    }

    /// The 8 wire bytes.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// The addressing method of the first level.
    pub const fn method(self) -> AddressMethod {
        match (self.0 >> 62) as u8 {
            0 => AddressMethod::Peripheral,
            1 => AddressMethod::Flat,
            2 => AddressMethod::LogicalUnit,
            _ => AddressMethod::Extended,
        }
    }

    /// Decodes the LUN number for single-level peripheral (bus 0) and flat
    /// space addressing; `None` for other methods, multi-level LUNs or a
    /// peripheral address with a non-zero bus identifier.
    pub const fn number(self) -> Option<u16> {
        let b = self.to_bytes();
        // SAM-5 4.6.3: only the first level may be non-zero for a
        // single-level LUN; the remaining six bytes are zero.
        if self.0 & 0x0000_ffff_ffff_ffff != 0 {
            return None;
        }
        match self.method() {
            // SAM-5 4.6.6: peripheral device addressing; bus identifier
            // (byte 0 bits 5..0) zero means "this" target's LUN in byte 1.
            AddressMethod::Peripheral => {
                if b[0] & 0x3f == 0 {
                    Some(b[1] as u16)
                } else {
                    None
                }
            }
            // SAM-5 4.6.7: flat space addressing, 14-bit LUN.
            AddressMethod::Flat => Some((((b[0] & 0x3f) as u16) << 8) | b[1] as u16),
            _ => None,
        }
    }

    /// True for a well-known logical unit (SAM-5 4.6.9: extended
    /// addressing, byte 0 = `C1`).
    pub const fn is_well_known(self) -> bool {
        (self.0 >> 56) as u8 == 0xc1
    }
}

impl From<u16> for Lun {
    fn from(n: u16) -> Lun {
        Lun::from_number(n)
    }
}

impl fmt::Debug for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.number() {
            Some(n) => write!(f, "Lun({n})"),
            None => write!(f, "Lun({:#018x})", self.0),
        }
    }
}

impl fmt::Display for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.number() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "{:#018x}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn peripheral_encoding() {
        assert_eq!(Lun::from_number(0).to_u64(), 0);
        assert_eq!(Lun::from_number(1).to_bytes(), [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Lun::from_number(255).to_bytes(),
            [0, 0xff, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(Lun::from_number(7).method(), AddressMethod::Peripheral);
    }

    #[test]
    fn flat_encoding() {
        assert_eq!(
            Lun::from_number(256).to_bytes(),
            [0x41, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Lun::from_number(0x1234).to_bytes(),
            [0x52, 0x34, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Lun::from_number(16383).to_bytes(),
            [0x7f, 0xff, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(Lun::from_number(300).method(), AddressMethod::Flat);
    }

    #[test]
    fn roundtrip_all_numbers() {
        for n in 0..=MAX_FLAT_LUN {
            let l = Lun::from_number(n);
            assert_eq!(l.number(), Some(n));
            assert_eq!(Lun::from_u64(l.to_u64()), l);
            assert_eq!(Lun::from_bytes(l.to_bytes()), l);
        }
    }

    #[test]
    fn flat_small_numbers_decode() {
        // Flat addressing is also legal for LUN < 256.
        assert_eq!(
            Lun::from_bytes([0x40, 5, 0, 0, 0, 0, 0, 0]).number(),
            Some(5)
        );
    }

    #[test]
    fn unknown_methods_kept_raw() {
        let raw = 0x8123_4567_89ab_cdefu64;
        let l = Lun::from_u64(raw);
        assert_eq!(l.to_u64(), raw);
        assert_eq!(l.number(), None);
        assert_eq!(l.method(), AddressMethod::LogicalUnit);
        assert_eq!(REPORT_LUNS_WLUN.method(), AddressMethod::Extended);
        assert!(REPORT_LUNS_WLUN.is_well_known());
        assert_eq!(REPORT_LUNS_WLUN.number(), None);
        // Peripheral with non-zero bus, or second level set.
        assert_eq!(Lun::from_bytes([0x01, 1, 0, 0, 0, 0, 0, 0]).number(), None);
        assert_eq!(Lun::from_bytes([0, 1, 0, 2, 0, 0, 0, 0]).number(), None);
    }

    #[test]
    fn display() {
        assert_eq!(Lun::from_number(300).to_string(), "300");
        assert_eq!(format!("{:?}", Lun::from_number(3)), "Lun(3)");
        assert_eq!(REPORT_LUNS_WLUN.to_string(), "0xc101000000000000");
    }
}
