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
    crc32c::crc32c(data)
}

/// Continues a CRC32C over more bytes.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
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
}
