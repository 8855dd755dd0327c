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

/// CRC32C as RFC 7143 (RFC 3720 appendix B.4) defines it: the Castagnoli
/// polynomial, reflected, initial value and final XOR all ones.
const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Continues a CRC32C over more bytes with the `crc` crate's table (what
/// the digests use without `std`; the `crc32c` crate needs `std` for its
/// hardware detection). Same result as [`crc32c_append`].
pub fn crc32c_software(crc: u32, data: &[u8]) -> u32 {
    // `crc` starts a reflected digest from the bit-reversed register; the
    // register after `crc` is its final XOR undone.
    let mut digest = CASTAGNOLI.digest_with_initial((crc ^ u32::MAX).reverse_bits());
    digest.update(data);
    digest.finalize()
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
