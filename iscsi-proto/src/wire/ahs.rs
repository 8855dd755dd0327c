//! AHS: Additional Header Segments (RFC 7143 section 11.2.2).
//!
//! Each AHS is `AHSLength` (2 bytes), `AHSType` (1 byte) and `AHSLength`
//! bytes of AHS-specific data, padded to a multiple of 4 bytes. The whole
//! list occupies TotalAHSLength * 4 bytes (at most 1020).

use crate::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};

use super::error::WireError;

/// AHSType 1: Extended CDB (section 11.2.2.3).
pub const AHS_TYPE_EXTENDED_CDB: u8 = 1;
/// AHSType 2: Bidirectional Expected Read-Data Length (section 11.2.2.4).
pub const AHS_TYPE_BIDI_READ_LENGTH: u8 = 2;
/// Largest AHS list: TotalAHSLength is one byte of 4-byte words.
pub const MAX_AHS_LEN: usize = 255 * 4;

/// One Additional Header Segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ahs {
    /// Extended CDB (type 1): the CDB bytes beyond the first 16 (which sit
    /// in the BHS).
    ExtendedCdb(Bytes),
    /// Bidirectional Expected Read-Data Length (type 2).
    BidiReadLength(u32),
    /// Any other type, kept as received: the type byte and the AHS-specific
    /// bytes (AHSLength of them, padding excluded).
    Unknown {
        /// AHSType.
        ahs_type: u8,
        /// AHS-specific data.
        data: Bytes,
    },
}

#[inline]
const fn pad4(n: usize) -> usize {
    // Callers keep n <= MAX_AHS_LEN + 65538, far from usize::MAX.
    (n + 3) & !3
}

impl Ahs {
    /// The AHSType byte.
    pub fn ahs_type(&self) -> u8 {
        match self {
            Ahs::ExtendedCdb(_) => AHS_TYPE_EXTENDED_CDB,
            Ahs::BidiReadLength(_) => AHS_TYPE_BIDI_READ_LENGTH,
            Ahs::Unknown { ahs_type, .. } => *ahs_type,
        }
    }

    /// The AHSLength field: bytes of AHS-specific data, padding excluded.
    /// RFC 7143 section 11.2.2.3: for an Extended CDB, "CDBLength - 15"
    /// (the reserved byte plus the CDB bytes beyond 16).
    pub fn ahs_length(&self) -> usize {
        match self {
            Ahs::ExtendedCdb(b) => b.len().saturating_add(1),
            Ahs::BidiReadLength(_) => 5,
            Ahs::Unknown { data, .. } => data.len(),
        }
    }

    /// Bytes this AHS occupies on the wire, padding included.
    pub fn wire_len(&self) -> usize {
        pad4(self.ahs_length().saturating_add(3).min(usize::MAX - 3))
    }

    /// Parses an AHS list of exactly `buf.len()` bytes (TotalAHSLength * 4).
    /// Zero copy: data fields are slices of `buf`.
    pub fn parse_list(buf: &Bytes) -> Result<Vec<Ahs>, WireError> {
        let mut out = Vec::new();
        if buf.is_empty() {
            return Ok(out);
        }
        if buf.len() > MAX_AHS_LEN || buf.len() % 4 != 0 {
            return Err(WireError::MalformedAhs {
                reason: "AHS length is not TotalAHSLength * 4",
            });
        }
        let mut off = 0usize;
        while off < buf.len() {
            let hdr = buf.get(off..off + 3).ok_or(WireError::MalformedAhs {
                reason: "truncated AHS header",
            })?;
            let (len, ty) = match hdr {
                &[a, b, t] => (usize::from(u16::from_be_bytes([a, b])), t),
                _ => {
                    return Err(WireError::MalformedAhs {
                        reason: "truncated AHS header",
                    })
                }
            };
            let start = off + 3;
            let end = start + len; // <= 1020 + 65535: no overflow
            let next = pad4(end);
            // RFC 7143 section 11.2.2: every AHS, with its padding, must
            // lie within TotalAHSLength.
            if next > buf.len() {
                return Err(WireError::MalformedAhs {
                    reason: "AHSLength runs past TotalAHSLength",
                });
            }
            let data = buf.slice(start..end);
            out.push(match ty {
                // RFC 7143 section 11.2.2.3: a reserved byte, then the CDB
                // bytes beyond the 16th.
                AHS_TYPE_EXTENDED_CDB => {
                    if data.is_empty() {
                        return Err(WireError::MalformedAhs {
                            reason: "extended CDB AHS without its reserved byte",
                        });
                    }
                    Ahs::ExtendedCdb(data.slice(1..))
                }
                // RFC 7143 section 11.2.2.4: "AHSLength (0x0005)", a
                // reserved byte and the 4-byte length.
                AHS_TYPE_BIDI_READ_LENGTH => match &data[..] {
                    &[_, a, b, c, d] => Ahs::BidiReadLength(u32::from_be_bytes([a, b, c, d])),
                    _ => {
                        return Err(WireError::MalformedAhs {
                            reason: "bidirectional read length AHS must have AHSLength 5",
                        })
                    }
                },
                other => Ahs::Unknown {
                    ahs_type: other,
                    data,
                },
            });
            off = next;
        }
        Ok(out)
    }

    /// Total wire length of a list (the value of TotalAHSLength * 4).
    pub fn list_len(list: &[Ahs]) -> usize {
        list.iter()
            .fold(0usize, |acc, a| acc.saturating_add(a.wire_len()))
    }

    /// Appends a list to `out`. Fails if an AHS is longer than AHSLength
    /// allows or the list exceeds [`MAX_AHS_LEN`] (nothing is written then).
    pub fn emit_list(list: &[Ahs], out: &mut BytesMut) -> Result<(), WireError> {
        let total = Ahs::list_len(list);
        if total > MAX_AHS_LEN {
            return Err(WireError::Unencodable {
                reason: "AHS list longer than 1020 bytes",
                section: "11.2.1.5",
            });
        }
        out.reserve(total);
        for a in list {
            // total <= 1020 so every length fits in u16.
            let len = u16::try_from(a.ahs_length()).map_err(|_| WireError::Unencodable {
                reason: "AHS longer than 65535 bytes",
                section: "11.2.2.2",
            })?;
            out.put_u16(len);
            out.put_u8(a.ahs_type());
            match a {
                Ahs::ExtendedCdb(b) => {
                    out.put_u8(0);
                    out.put_slice(b);
                }
                Ahs::BidiReadLength(n) => {
                    out.put_u8(0);
                    out.put_u32(*n);
                }
                Ahs::Unknown { data, .. } => out.put_slice(data),
            }
            let pad = a.wire_len() - 3 - a.ahs_length();
            out.put_bytes(0, pad);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_cdb_and_bidi_roundtrip() {
        let list = vec![
            Ahs::ExtendedCdb(Bytes::from_static(&[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
            ])),
            Ahs::BidiReadLength(0x1234_5678),
            Ahs::Unknown {
                ahs_type: 0x3c,
                data: Bytes::from_static(&[9, 9]),
            },
        ];
        let mut out = BytesMut::new();
        Ahs::emit_list(&list, &mut out).unwrap();
        // 32-byte CDB: AHSLength 17, 3 + 17 = 20 bytes; bidi 8; unknown 3+2 -> 8.
        assert_eq!(out.len(), 20 + 8 + 8);
        assert_eq!(&out[..4], &[0, 17, 1, 0]);
        assert_eq!(&out[20..28], &[0, 5, 2, 0, 0x12, 0x34, 0x56, 0x78]);
        assert_eq!(Ahs::list_len(&list), out.len());
        assert_eq!(Ahs::parse_list(&out.freeze()).unwrap(), list);
    }

    #[test]
    fn malformed_lengths() {
        // Runs past the end.
        assert!(Ahs::parse_list(&Bytes::from_static(&[0, 9, 1, 0])).is_err());
        // Bidi with the wrong length.
        assert!(Ahs::parse_list(&Bytes::from_static(&[0, 1, 2, 0])).is_err());
        // Extended CDB without the reserved byte.
        assert!(Ahs::parse_list(&Bytes::from_static(&[0, 0, 1, 0])).is_err());
        // Not a multiple of 4.
        assert!(Ahs::parse_list(&Bytes::from_static(&[0, 0, 9])).is_err());
        // Unknown type with AHSLength 0 is fine.
        assert_eq!(
            Ahs::parse_list(&Bytes::from_static(&[0, 0, 9, 0])).unwrap(),
            vec![Ahs::Unknown {
                ahs_type: 9,
                data: Bytes::new()
            }]
        );
    }
}
