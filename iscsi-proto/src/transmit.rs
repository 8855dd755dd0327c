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

use crate::prelude::*;
use alloc::collections::VecDeque;
#[cfg(feature = "std")]
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
    #[cfg(feature = "std")]
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

/// PDUs taken from a session (either role) for a non-blocking socket, with
/// how much of the first one has been written: what every event-loop
/// driver needs to send batches with vectored writes and resume after a
/// partial write.
///
/// ```
/// # use iscsi_proto::transmit::TxQueue;
/// # use std::io::IoSlice;
/// let mut tx = TxQueue::default();
/// // tx.fill(&mut session, now, 64);
/// let mut slices = [IoSlice::new(&[]); 3 * 64];
/// let n = tx.io_slices(&mut slices);
/// assert_eq!(n, 0);
/// // let written = socket.write_vectored(&slices[..n])?;
/// tx.advance(0);
/// assert!(tx.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct TxQueue {
    out: VecDeque<Transmit>,
    sent: usize,
}

impl TxQueue {
    /// Nothing taken from the session is left to write.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// PDUs queued (written in part or not at all).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Takes PDUs from `next` (any `poll_transmit`: an initiator
    /// session's, a target [`Portal`](crate::target::Portal)'s) until
    /// `max` are queued or it has none.
    pub fn fill_with(&mut self, max: usize, mut next: impl FnMut() -> Option<Transmit>) {
        while self.out.len() < max {
            match next() {
                Some(t) => self.out.push_back(t),
                None => break,
            }
        }
    }

    /// The unwritten bytes as slices for one vectored write, as many as fit
    /// in `slices` (three per PDU: header, data, trailer). Returns how many
    /// were filled.
    #[cfg(feature = "std")]
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, t) in self.out.iter().enumerate() {
            // Resume a partial write where it stopped.
            for part in t.parts_from(if i == 0 { self.sent } else { 0 }) {
                match slices.get_mut(n) {
                    Some(s) => {
                        *s = IoSlice::new(part);
                        n += 1;
                    }
                    None => return n,
                }
            }
        }
        n
    }

    /// `written` bytes of [`io_slices`](Self::io_slices) went out: drops
    /// the PDUs written whole and remembers how far into the next one.
    pub fn advance(&mut self, written: usize) {
        let mut left = written.saturating_add(self.sent);
        while let Some(front) = self.out.front() {
            if left < front.len() {
                break;
            }
            left -= front.len();
            self.out.pop_front();
        }
        // More than was queued cannot have been written: nothing carries
        // over to the next PDU.
        self.sent = if self.out.is_empty() { 0 } else { left };
    }

    /// [`advance`](Self::advance), showing `each` the written bytes, in
    /// order, as they went out (a byte tap).
    pub fn advance_with(&mut self, written: usize, mut each: impl FnMut(&[u8])) {
        let mut left = written;
        'pdus: for (i, t) in self.out.iter().enumerate() {
            for part in t.parts_from(if i == 0 { self.sent } else { 0 }) {
                if left == 0 {
                    break 'pdus;
                }
                let n = left.min(part.len());
                each(part.get(..n).unwrap_or(part));
                left -= n;
            }
        }
        self.advance(written);
    }

    /// Drops everything (the connection is gone).
    pub fn clear(&mut self) {
        self.out.clear();
        self.sent = 0;
    }
}

#[cfg(test)]
mod tests {
    /// Partial vectored writes resume exactly where they stopped, and
    /// whole PDUs leave the queue.
    #[test]
    fn tx_queue_resumes_partial_writes() {
        use crate::wire::frame::DataTrailer;
        let mut tx = TxQueue::default();
        for (h, d) in [(b"AAAA", &b"aa"[..]), (b"BBBB", &b"bbb"[..])] {
            tx.out.push_back(Transmit::new(
                h,
                Bytes::copy_from_slice(d),
                DataTrailer::default(),
            ));
        }
        let mut wire = Vec::new();
        // Write 1, 4, then 2 bytes at a time until empty.
        for step in [1usize, 4, 2, 2, 2, 2] {
            let mut slices = [IoSlice::new(&[]); 6];
            let n = tx.io_slices(&mut slices);
            let mut left = step;
            for s in &slices[..n] {
                let k = left.min(s.len());
                wire.extend_from_slice(&s[..k]);
                left -= k;
            }
            tx.advance(step - left);
        }
        assert!(tx.is_empty());
        assert_eq!(wire, b"AAAAaaBBBBbbb");
        // The tap sees exactly the bytes written, across partial writes.
        for (h, d) in [(b"DDDD", &b"dd"[..]), (b"EEEE", &b"e"[..])] {
            tx.out.push_back(Transmit::new(
                h,
                Bytes::copy_from_slice(d),
                DataTrailer::default(),
            ));
        }
        let mut tapped = Vec::new();
        tx.advance_with(3, |p| tapped.extend_from_slice(p));
        tx.advance_with(5, |p| tapped.extend_from_slice(p));
        tx.advance_with(100, |p| tapped.extend_from_slice(p));
        assert_eq!(tapped, b"DDDDddEEEEe");
        assert!(tx.is_empty());
        // Fewer slots than parts: only what fits.
        tx.out.push_back(Transmit::new(
            b"CCCC",
            Bytes::from_static(b"c"),
            DataTrailer::default(),
        ));
        let mut one = [IoSlice::new(&[])];
        assert_eq!(tx.io_slices(&mut one), 1);
        assert_eq!(&*one[0], b"CCCC");
        tx.clear();
        assert!(tx.is_empty());
    }

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
