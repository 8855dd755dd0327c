//! [`Transmit`]: one encoded PDU ready for `write_vectored`, in three parts
//! so that the payload is never copied. Both roles emit it
//! ([`initiator::Session::poll_transmit`](crate::initiator::Session::poll_transmit),
//! [`target::Session::poll_transmit`](crate::target::Session::poll_transmit)).
//!
//! - `header`: BHS + AHS + header digest, inline (no heap) up to
//!   [`INLINE_HEADER_LEN`] bytes, which covers every PDU except SCSI
//!   commands with very long CDBs;
//! - `data`: the data segment, a `Bytes` slice of the application's buffer
//!   (Data-Out, immediate data) or of a small owned buffer (text, login);
//! - `trailer`: padding and data digest, inline.

use std::io::IoSlice;

use bytes::{BufMut, Bytes};

use crate::wire::frame::DataTrailer;

/// Header bytes kept inline: BHS (48) + header digest (4) + an AHS of up
/// to 28 bytes (an extended CDB of up to 42 bytes, or a bidirectional read
/// length plus a 32-byte CDB).
pub const INLINE_HEADER_LEN: usize = 80;

#[derive(Clone)]
enum HeaderBytes {
    Inline {
        buf: [u8; INLINE_HEADER_LEN],
        len: u8,
    },
    Heap(Bytes),
}

/// One encoded PDU.
#[derive(Clone)]
pub struct Transmit {
    header: HeaderBytes,
    data: Bytes,
    trailer: DataTrailer,
}

impl core::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transmit")
            .field("header_len", &self.header().len())
            .field("data_len", &self.data.len())
            .field("trailer_len", &self.trailer.len())
            .finish()
    }
}

impl Transmit {
    /// Builds a transmit from encoded header bytes (copied inline when they
    /// fit), the data segment and its trailer.
    pub fn new(header: &[u8], data: Bytes, trailer: DataTrailer) -> Transmit {
        let header = if header.len() <= INLINE_HEADER_LEN {
            let mut buf = [0u8; INLINE_HEADER_LEN];
            if let Some(dst) = buf.get_mut(..header.len()) {
                dst.copy_from_slice(header);
            }
            HeaderBytes::Inline {
                buf,
                // header.len() <= 80 here.
                len: header.len() as u8,
            }
        } else {
            HeaderBytes::Heap(Bytes::copy_from_slice(header))
        };
        Transmit {
            header,
            data,
            trailer,
        }
    }

    /// BHS + AHS + header digest.
    pub fn header(&self) -> &[u8] {
        match &self.header {
            HeaderBytes::Inline { buf, len } => buf.get(..usize::from(*len)).unwrap_or(&[]),
            HeaderBytes::Heap(b) => b,
        }
    }

    /// The data segment (unpadded).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Padding and data digest.
    pub fn trailer(&self) -> &[u8] {
        self.trailer.as_slice()
    }

    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.header().len() + self.data.len() + self.trailer.len()
    }

    /// Always false: a PDU has at least its 48-byte BHS.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The three parts in wire order: header, data segment, trailer (the
    /// last two may be empty).
    pub fn parts(&self) -> [&[u8]; 3] {
        [self.header(), &self.data[..], self.trailer()]
    }

    /// Fills `slices` with the non-empty parts, in order, and returns how
    /// many were filled (1 to 3), for `write_vectored`.
    pub fn as_io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>; 3]) -> usize {
        let mut n = 0;
        for part in [self.header(), &self.data[..], self.trailer()] {
            if !part.is_empty() {
                if let Some(s) = slices.get_mut(n) {
                    *s = IoSlice::new(part);
                    n += 1;
                }
            }
        }
        n
    }

    /// The parts after skipping the first `offset` bytes (for resuming a
    /// partial write): up to three non-empty slices.
    pub fn parts_from(&self, offset: usize) -> impl Iterator<Item = &[u8]> {
        let mut skip = offset;
        [self.header(), &self.data[..], self.trailer()]
            .into_iter()
            .filter_map(move |part| {
                if skip >= part.len() {
                    skip -= part.len();
                    None
                } else {
                    let p = part.get(skip..).unwrap_or(&[]);
                    skip = 0;
                    Some(p)
                }
            })
    }

    /// Appends the whole PDU to `out`, a `Vec<u8>` or a `BytesMut` (copies;
    /// for tests and simple drivers).
    pub fn write_to<B: BufMut>(&self, out: &mut B) {
        for part in self.parts() {
            out.put_slice(part);
        }
    }

    /// The whole PDU as one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{data_trailer, Digests};

    #[test]
    fn parts_and_slices() {
        let data = Bytes::from_static(b"hello");
        let trailer = data_trailer(&data, Digests::BOTH);
        let t = Transmit::new(&[1u8; 52], data.clone(), trailer);
        assert_eq!(t.len(), 52 + 5 + 3 + 4);
        let mut slices = [IoSlice::new(&[]), IoSlice::new(&[]), IoSlice::new(&[])];
        assert_eq!(t.as_io_slices(&mut slices), 3);
        assert_eq!(&*slices[1], b"hello");
        let v = t.to_vec();
        assert_eq!(v.len(), t.len());
        assert_eq!(t.parts().concat(), v);
        let mut b = bytes::BytesMut::new();
        t.write_to(&mut b);
        assert_eq!(&b[..], &v[..]);
        let resumed: Vec<u8> = t.parts_from(50).flatten().copied().collect();
        assert_eq!(&resumed[..], &v[50..]);
        let resumed: Vec<u8> = t.parts_from(55).flatten().copied().collect();
        assert_eq!(&resumed[..], &v[55..]);
        assert_eq!(t.parts_from(v.len()).count(), 0);
    }

    #[test]
    fn long_headers_spill_to_the_heap() {
        let t = Transmit::new(&[7u8; 300], Bytes::new(), DataTrailer::default());
        assert_eq!(t.header(), &[7u8; 300][..]);
        let mut slices = [IoSlice::new(&[]), IoSlice::new(&[]), IoSlice::new(&[])];
        assert_eq!(t.as_io_slices(&mut slices), 1);
        assert!(!t.is_empty());
    }
}
