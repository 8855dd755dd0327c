//! Small helpers shared by the command handlers.

use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::{SenseData, SenseKey};

/// Why a command did not complete with GOOD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    /// CHECK CONDITION with this sense.
    Check(SenseData),
    /// RESERVATION CONFLICT (no sense).
    Conflict,
}

/// Big-endian unsigned field of `n` (<= 8) bytes at `at`; bytes past the
/// end of `c` read as zero, so no input can make this panic.
pub(crate) fn be(c: &[u8], at: usize, n: usize) -> u64 {
    (0..n.min(8)).fold(0u64, |v, i| {
        (v << 8) | u64::from(c.get(at.saturating_add(i)).copied().unwrap_or(0))
    })
}

/// One byte, zero past the end.
pub(crate) fn byte(c: &[u8], at: usize) -> u8 {
    c.get(at).copied().unwrap_or(0)
}

/// ILLEGAL REQUEST with the given ASC/ASCQ.
pub(crate) fn illegal(code: (u8, u8)) -> Fail {
    Fail::Check(SenseData::with_code(SenseKey::IllegalRequest, code))
}

/// ILLEGAL REQUEST, INVALID FIELD IN CDB with a field pointer at `at`
/// (SPC-4 4.5.2.4.2).
pub(crate) fn bad_cdb(at: u16) -> Fail {
    Fail::Check(
        SenseData::with_code(SenseKey::IllegalRequest, asc::INVALID_FIELD_IN_CDB)
            .field_pointer(true, at, None),
    )
}

/// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
pub(crate) fn bad_opcode() -> Fail {
    Fail::Check(
        SenseData::with_code(SenseKey::IllegalRequest, asc::INVALID_OPCODE).field_pointer(
            true,
            0,
            Some(7),
        ),
    )
}

/// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE.
pub(crate) fn lba_oob() -> Fail {
    illegal(asc::LBA_OUT_OF_RANGE)
}

/// Truncates `v` to the allocation length (SPC-4 4.2.5.6: "The device
/// server shall terminate transfers to the Data-In Buffer when the number
/// of bytes ... specified by the ALLOCATION LENGTH field have been
/// transferred").
pub(crate) fn truncate(mut v: Vec<u8>, alloc: u64) -> Vec<u8> {
    v.truncate(usize::try_from(alloc).unwrap_or(usize::MAX));
    v
}

/// Copies `s` into a fixed ASCII field of `n` bytes, space padded.
pub(crate) fn ascii_field(out: &mut Vec<u8>, s: &str, n: usize) {
    let mut b: Vec<u8> = s
        .bytes()
        .filter(|c| (0x20..0x7f).contains(c))
        .take(n)
        .collect();
    b.resize(n, b' ');
    out.extend_from_slice(&b);
}

/// `(lba, blocks)` of a READ/WRITE/VERIFY/WRITE SAME/SYNCHRONIZE CACHE/
/// PRE-FETCH CDB, by CDB length (SBC-3 5.x field layouts).
pub(crate) fn rw_fields(c: &[u8]) -> (u64, u64) {
    match c.len() {
        // SBC-3 5.10 READ (6) / 5.31 WRITE (6): 21-bit LBA; "A TRANSFER
        // LENGTH field set to zero specifies that 256 logical blocks".
        6 => {
            let n = u64::from(byte(c, 4));
            (be(c, 1, 3) & 0x1f_ffff, if n == 0 { 256 } else { n })
        }
        10 => (be(c, 2, 4), be(c, 7, 2)),
        12 => (be(c, 2, 4), be(c, 6, 4)),
        _ => (be(c, 2, 8), be(c, 10, 4)),
    }
}

/// `with_*` builder methods of the public config structs: each sets one
/// field and returns the value.
macro_rules! with_fields {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty,)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = value;
                self
            }
        )*
    };
}
pub(crate) use with_fields;
