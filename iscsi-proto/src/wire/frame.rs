//! PDU (Protocol Data Unit) framing and encoding (RFC 7143 sections 11.1
//! and 11.2).
//!
//! A PDU on the wire is: BHS (48) | AHS (TotalAHSLength * 4) |
//! header digest (4, optional) | data segment (DataSegmentLength) |
//! padding to 4 | data digest (4, optional, only when DataSegmentLength > 0).
//!
//! Sending is split in three parts so that the payload is never copied:
//! [`encode_header`] appends BHS + AHS + header digest to a `BytesMut`, the
//! application's `Bytes` payload goes out as is, and [`data_trailer`]
//! returns the padding and data digest as a small inline value.

use crate::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};

use super::ahs::{Ahs, MAX_AHS_LEN};
use super::bhs::{Bhs, BHS_LEN};
use super::digest::{data_digest, digest_bytes, header_digest, padding_len, DIGEST_LEN};
use super::error::WireError;
use super::pdu::Header;

/// Largest DataSegmentLength the 24-bit field can carry.
pub const MAX_DATA_SEGMENT_LEN: u32 = 0x00ff_ffff;

/// Which digests are in use on a connection (RFC 7143 section 13.1,
/// HeaderDigest and DataDigest; CRC32C when `true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digests {
    /// A CRC32C header digest follows BHS + AHS.
    pub header: bool,
    /// A CRC32C data digest follows every non-empty padded data segment.
    pub data: bool,
}

impl Digests {
    /// No digests (the state during login).
    pub const NONE: Digests = Digests {
        header: false,
        data: false,
    };
    /// Both digests.
    pub const BOTH: Digests = Digests {
        header: true,
        data: true,
    };
}

/// Length of BHS + AHS + header digest for a PDU whose TotalAHSLength is
/// `total_ahs_words` (at most 48 + 1020 + 4 bytes).
#[inline]
pub fn header_len(total_ahs_words: u8, digests: Digests) -> usize {
    BHS_LEN + usize::from(total_ahs_words) * 4 + if digests.header { DIGEST_LEN } else { 0 }
}

/// Length of data segment + padding + data digest for a DataSegmentLength.
/// RFC 7143 section 11.2.3: the data digest is only present when the data
/// segment is not empty.
#[inline]
pub fn trailer_and_data_len(data_len: u32, digests: Digests) -> usize {
    // data_len is at most 2^24 - 1 on the wire; computed in u64 so any u32
    // input is safe, then saturated into usize.
    let d = u64::from(data_len);
    let total = if d == 0 {
        0
    } else {
        d + padding_len(data_len as usize) as u64 + if digests.data { DIGEST_LEN as u64 } else { 0 }
    };
    usize::try_from(total).unwrap_or(usize::MAX)
}

/// Total wire length of the PDU whose BHS is `bhs` (BHS + AHS + header
/// digest + data + padding + data digest). Never overflows: the fields are
/// 8 and 24 bits wide, so the result is below 2^24 + 1100.
#[inline]
pub fn pdu_len<T: AsRef<[u8]>>(bhs: &Bhs<T>, digests: Digests) -> usize {
    header_len(bhs.total_ahs_len(), digests)
        .saturating_add(trailer_and_data_len(bhs.data_segment_len(), digests))
}

/// Appends BHS, AHS and (if enabled) the header digest of a PDU to `out`,
/// writing TotalAHSLength from `ahs` and DataSegmentLength from `data_len`.
/// Nothing is appended on error.
pub fn encode_header(
    out: &mut BytesMut,
    header: &Header,
    ahs: &[Ahs],
    data_len: u32,
    digests: Digests,
) -> Result<(), WireError> {
    if data_len > MAX_DATA_SEGMENT_LEN {
        return Err(WireError::Unencodable {
            reason: "data segment longer than 2^24 - 1 bytes",
            section: "11.2.1.6",
        });
    }
    let ahs_len = Ahs::list_len(ahs);
    if ahs_len > MAX_AHS_LEN {
        return Err(WireError::Unencodable {
            reason: "AHS list longer than 1020 bytes",
            section: "11.2.1.5",
        });
    }
    let words = u8::try_from(ahs_len / 4).map_err(|_| WireError::Unencodable {
        reason: "AHS list longer than 1020 bytes",
        section: "11.2.1.5",
    })?;
    let start = out.len();
    out.reserve(BHS_LEN + ahs_len + DIGEST_LEN);
    out.put_bytes(0, BHS_LEN);
    {
        let slot = out.get_mut(start..).unwrap_or(&mut []);
        let mut bhs = Bhs::new_unchecked(slot);
        header.emit(&mut bhs);
        bhs.set_total_ahs_len(words);
        bhs.set_data_segment_len(data_len);
    }
    if let Err(e) = Ahs::emit_list(ahs, out) {
        out.truncate(start);
        return Err(e);
    }
    if digests.header {
        let crc = header_digest(out.get(start..).unwrap_or(&[]));
        out.put_slice(&digest_bytes(crc));
    }
    Ok(())
}

/// The bytes that follow a data segment on the wire: 0-3 zero padding
/// bytes and, with data digests, the 4-byte digest. Inline, no heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DataTrailer {
    bytes: [u8; 7],
    len: u8,
}

impl DataTrailer {
    /// The trailer bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Number of trailer bytes (0 to 7).
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the trailer is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for DataTrailer {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// The trailer of the data segment `data` (padding + optional data digest
/// computed over data and padding). Empty for an empty data segment.
pub fn data_trailer(data: &[u8], digests: Digests) -> DataTrailer {
    let mut t = DataTrailer::default();
    if data.is_empty() {
        return t;
    }
    let pad = padding_len(data.len());
    let mut n = pad;
    if digests.data {
        let d = digest_bytes(data_digest(data));
        if let Some(dst) = t.bytes.get_mut(pad..pad + DIGEST_LEN) {
            dst.copy_from_slice(&d);
        }
        n += DIGEST_LEN;
    }
    // n <= 7
    t.len = n as u8;
    t
}

/// A decoded PDU: header, AHS list (empty, without allocation, in the
/// common case) and the data segment as a zero-copy slice of the receive
/// buffer (padding and digests stripped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// The parsed BHS.
    pub header: Header,
    /// Additional header segments.
    pub ahs: Vec<Ahs>,
    /// The data segment, unpadded.
    pub data: Bytes,
}

impl Pdu {
    /// A PDU without AHS.
    pub fn new(header: impl Into<Header>, data: Bytes) -> Pdu {
        Pdu {
            header: header.into(),
            ahs: Vec::new(),
            data,
        }
    }

    /// Appends the whole PDU to `out` (copies the data; the zero-copy send
    /// path uses [`encode_header`] and [`data_trailer`] instead).
    pub fn encode(&self, out: &mut BytesMut, digests: Digests) -> Result<(), WireError> {
        let len = u32::try_from(self.data.len()).map_err(|_| WireError::Unencodable {
            reason: "data segment longer than 2^24 - 1 bytes",
            section: "11.2.1.6",
        })?;
        encode_header(out, &self.header, &self.ahs, len, digests)?;
        out.put_slice(&self.data);
        out.put_slice(data_trailer(&self.data, digests).as_slice());
        Ok(())
    }

    /// The encoded length of this PDU.
    pub fn encoded_len(&self, digests: Digests) -> usize {
        let dl = u32::try_from(self.data.len()).unwrap_or(u32::MAX);
        let words = u8::try_from(Ahs::list_len(&self.ahs) / 4).unwrap_or(u8::MAX);
        header_len(words, digests).saturating_add(trailer_and_data_len(dl, digests))
    }
}

/// A PDU delimited and digest-checked but not yet parsed: the header bytes
/// (BHS + AHS, without digest) and the unpadded data segment, both
/// zero-copy slices of the receive buffer. Useful to build a Reject, which
/// carries the complete header of the bad PDU (RFC 7143 section 11.17.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPdu {
    /// BHS followed by the AHS list, at least 48 bytes.
    pub header: Bytes,
    /// The data segment, unpadded.
    pub data: Bytes,
}

impl RawPdu {
    /// A view of the BHS.
    pub fn bhs(&self) -> Bhs<&[u8]> {
        Bhs::new_unchecked(&self.header[..])
    }

    /// The first 48 bytes (the BHS), as sent back in a Reject.
    pub fn bhs_bytes(&self) -> Bytes {
        self.header.slice(..BHS_LEN.min(self.header.len()))
    }

    /// Parses header and AHS. Allocates only if an AHS is present.
    pub fn parse(&self) -> Result<Pdu, WireError> {
        let bhs = Bhs::new_checked(&self.header[..])?;
        let header = Header::parse(&bhs)?;
        let ahs = if self.header.len() > BHS_LEN {
            Ahs::parse_list(&self.header.slice(BHS_LEN..))?
        } else {
            Vec::new()
        };
        Ok(Pdu {
            header,
            ahs,
            data: self.data.clone(),
        })
    }
}
