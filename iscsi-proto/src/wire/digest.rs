//! CRC32C (Castagnoli CRC) header and data digests (RFC 7143 sections
//! 11.2.3 and 13.1).
//!
//! The digest is CRC32C (the Castagnoli polynomial 0x1EDC6F41). On the wire
//! the 32-bit result goes out least significant byte first, as the examples
//! of RFC 3720 appendix B.4 show (32 zero bytes give the bytes
//! `aa 36 91 8a`, i.e. the value 0x8a9136aa in little-endian order) and as
//! real targets (tgtd, istgt, Linux LIO) send it.
//!
//! The header digest covers the BHS and any AHS; the data digest covers
//! the data segment and its padding (RFC 7143 section 11.2.3: "the padding
//! bytes are included in the data digest computation").

/// Length of a digest on the wire.
pub const DIGEST_LEN: usize = 4;

/// CRC32C of `data` (the value; see [`digest_bytes`] for the wire form).
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// Continues a CRC32C over more bytes (with `std`: the `crc32c` crate,
/// hardware-accelerated; without: [`crc32c_software`]).
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(feature = "std")]
    {
        crc32c::crc32c_append(crc, data)
    }
    #[cfg(not(feature = "std"))]
    {
        crc32c_software(crc, data)
    }
}

/// The reflected Castagnoli polynomial (0x1EDC6F41 bit-reversed).
const CASTAGNOLI_REFLECTED: u32 = 0x82F6_3B78;

/// One byte's step of the table-driven CRC32C (built at compile time: an
/// index out of range would fail the build, not a run).
#[allow(clippy::indexing_slicing)]
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ CASTAGNOLI_REFLECTED
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Continues a CRC32C over more bytes, one table step per byte: what the
/// digests use without `std` (the `crc32c` crate needs `std`). Same
/// result as [`crc32c_append`].
pub fn crc32c_software(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        let i = usize::from((c as u8) ^ b);
        c = TABLE.get(i).copied().unwrap_or(0) ^ (c >> 8);
    }
    !c
}

/// The wire bytes of a digest value (little-endian, RFC 3720 appendix B.4).
#[inline]
pub const fn digest_bytes(crc: u32) -> [u8; DIGEST_LEN] {
    crc.to_le_bytes()
}

/// Reads a digest value from its 4 wire bytes.
#[inline]
pub const fn digest_from_bytes(b: [u8; DIGEST_LEN]) -> u32 {
    u32::from_le_bytes(b)
}

/// Number of zero padding bytes after a data segment of `len` bytes
/// (RFC 7143 section 11.1: segments are padded to a multiple of 4).
#[inline]
pub const fn padding_len(len: usize) -> usize {
    (4 - (len & 3)) & 3
}

/// The header digest of BHS + AHS bytes.
#[inline]
pub fn header_digest(header: &[u8]) -> u32 {
    crc32c(header)
}

/// The data digest of an unpadded data segment: CRC32C over the data
/// followed by its zero padding (RFC 7143 section 11.2.3).
#[inline]
pub fn data_digest(data: &[u8]) -> u32 {
    let pad = padding_len(data.len());
    let zeros = [0u8; 3];
    crc32c_append(crc32c(data), zeros.get(..pad).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn padding() {
        assert_eq!([0, 1, 2, 3, 4, 5].map(padding_len), [0, 3, 2, 1, 0, 3]);
    }

    #[test]
    fn data_digest_includes_padding() {
        let d = [1u8, 2, 3, 4, 5];
        assert_eq!(data_digest(&d), crc32c(&[1, 2, 3, 4, 5, 0, 0, 0]));
        assert_ne!(data_digest(&d), crc32c(&d));
    }

    /// RFC 3720 appendix B.4: "32 bytes of zeroes: ... CRC: aa 36 91 8a",
    /// "32 bytes of ones (0xff)": "43 ab a8 62", "32 bytes of incrementing
    /// 00..1f": "4e 79 dd 46" (the software table, used without `std`).
    #[test]
    fn software_crc_matches_rfc_examples_and_the_crate() {
        let inc: Vec<u8> = (0u8..32).collect();
        for (data, wire) in [
            (vec![0u8; 32], [0xaa, 0x36, 0x91, 0x8a]),
            (vec![0xffu8; 32], [0x43, 0xab, 0xa8, 0x62]),
            (inc, [0x4e, 0x79, 0xdd, 0x46]),
        ] {
            assert_eq!(digest_bytes(crc32c_software(0, &data)), wire);
            assert_eq!(crc32c_software(0, &data), crc32c(&data));
            let (a, b) = data.split_at(13);
            assert_eq!(crc32c_software(crc32c_software(0, a), b), crc32c(&data));
        }
    }
}
