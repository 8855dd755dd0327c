//! The target's outgoing PDU unit.
//!
//! The initiator session (another module) will get its own `Transmit`; the
//! two are meant to be unified later. This one is deliberately minimal: a
//! PDU as three parts for `write_vectored`, with the payload a zero-copy
//! `Bytes` slice of the application's buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::DataTrailer;

/// One PDU ready to be written: header (BHS + AHS + optional header
/// digest), data segment (unpadded, zero-copy) and trailer (padding and
/// optional data digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// BHS, AHS and header digest.
    pub header: Bytes,
    /// The data segment without padding.
    pub data: Bytes,
    /// Padding and data digest (empty when the data segment is empty).
    pub trailer: DataTrailer,
}

impl Transmit {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.header
            .len()
            .saturating_add(self.data.len())
            .saturating_add(self.trailer.len())
    }

    /// Whether the PDU is empty (never true for a real PDU).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The three parts, in wire order, for `write_vectored`.
    pub fn parts(&self) -> [&[u8]; 3] {
        [&self.header, &self.data, self.trailer.as_slice()]
    }

    /// Appends the whole PDU to `out` (a copy; for tests and simple drivers).
    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(self.len());
        for p in self.parts() {
            out.put_slice(p);
        }
    }

    /// The whole PDU as one buffer (a copy).
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.len());
        self.write_to(&mut b);
        b.freeze()
    }
}
