//! Pieces every driver needs to offer request/reply calls on top of the
//! session's event stream, with no I/O: one [`Action`] type with its
//! dispatch onto the [`Session`], the [`Completed`] result of a SCSI
//! command, [`ReadData`], which gathers a task's `Event::DataIn` slices,
//! and [`RecvBuffer`], a receive buffer for socket reads.

use crate::prelude::*;
use crate::time::Instant;

use bytes::{Bytes, BytesMut};

use super::session::Session;
use super::types::{LogoutMode, ScsiCommand, ScsiResult, SessionConfig, TaskId};
use crate::error::{ConfigError, UsageError};
pub use crate::transmit::TxQueue;
use crate::wire::pdu::TmfFunction;
use crate::wire::{Bhs, BHS_LEN};

/// The session a driver runs for `config`. The core draws no randomness,
/// so a driver passes three random bytes from the operating system:
/// an unset ISID becomes a random one (RFC 7143 section 11.12.5, type 2),
/// so that two initiators with the same InitiatorName never reinstate each
/// other's sessions (section 6.3.5); an ISID the caller set is kept.
pub fn open_session(
    mut config: SessionConfig,
    now: Instant,
    random: [u8; 3],
) -> Result<Session, ConfigError> {
    if config.isid.is_none() {
        config.isid = Some(crate::wire::Isid::random(random, 0));
    }
    Session::new(config, now)
}

/// Work a driver can start on a session (a request from its API).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Action {
    /// A SCSI command.
    Scsi(ScsiCommand),
    /// A task management function on a LUN.
    TaskManagement {
        /// The LUN field (wire encoding).
        lun: u64,
        /// The function.
        function: TmfFunction,
    },
    /// ABORT TASK for a task of this session.
    Abort(TaskId),
    /// A NOP-Out ping with this data.
    Ping(Bytes),
    /// SendTargets=All (discovery sessions).
    SendTargets,
    /// Logout.
    Logout(LogoutMode),
}

impl Session {
    /// Starts an [`Action`] with the matching app call (`submit`,
    /// `task_management`, `abort_task`, `nop_ping`, `send_targets`,
    /// `logout`).
    pub fn start(&mut self, now: Instant, action: Action) -> Result<TaskId, UsageError> {
        match action {
            Action::Scsi(cmd) => self.submit(now, cmd),
            Action::TaskManagement { lun, function } => self.task_management(now, lun, function),
            Action::Abort(task) => self.abort_task(now, task),
            Action::Ping(data) => self.nop_ping(now, data),
            Action::SendTargets => self.send_targets(now),
            Action::Logout(mode) => self.logout(now, mode),
        }
    }
}

/// A completed SCSI command with its read data.
#[derive(Debug, Clone)]
pub struct Completed {
    /// Status, sense and residuals.
    pub result: ScsiResult,
    /// The bytes read (empty for writes).
    pub data: Bytes,
}

/// A task's read data as it arrives: the `(offset, bytes)` slices of its
/// `Event::DataIn`s. The first slice is kept inline, so a read whose data
/// comes in one Data-In (every read up to the negotiated
/// MaxRecvDataSegmentLength) costs no allocation.
#[derive(Debug, Default, Clone)]
pub struct ReadData {
    first: Option<(u32, Bytes)>,
    rest: Vec<(u32, Bytes)>,
}

impl ReadData {
    /// Records one `Event::DataIn`.
    pub fn push(&mut self, offset: u32, data: Bytes) {
        if self.first.is_none() {
            self.first = Some((offset, data));
        } else {
            self.rest.push((offset, data));
        }
    }

    /// Bytes recorded so far (repeats after a recovery count again).
    pub fn len(&self) -> usize {
        self.parts().map(|(_, b)| b.len()).sum()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn parts(&self) -> impl Iterator<Item = &(u32, Bytes)> {
        self.first.iter().chain(self.rest.iter())
    }

    /// The data as one buffer: the received slice itself (no copy) when
    /// it came in one piece at offset 0, else a buffer assembled by offset.
    /// After a session recovery a reissued read delivers its data again
    /// from offset 0, which simply overwrites the same range.
    pub fn into_bytes(self) -> Bytes {
        if self.rest.is_empty() {
            match self.first {
                Some((0, b)) => return b,
                None => return Bytes::new(),
                Some(_) => {}
            }
        }
        let len = self
            .parts()
            .map(|(o, b)| *o as usize + b.len())
            .max()
            .unwrap_or(0);
        let mut out = vec![0u8; len];
        for (o, b) in self.parts() {
            if let Some(dst) = out.get_mut(*o as usize..*o as usize + b.len()) {
                dst.copy_from_slice(b);
            }
        }
        Bytes::from(out)
    }
}

/// A connection's receive buffer for drivers in safe Rust.
///
/// Safe Rust cannot read a socket into uninitialised memory, so memory is
/// zero-filled before a read fills it. A `BytesMut` that is `resize`d
/// before every read zero-fills the whole read window every time (256 KiB
/// for a read that may bring 4 KiB); here each region is zero-filled once,
/// when it is allocated, and then filled by successive reads.
///
/// [`filled`](Self::filled) holds the bytes received and not yet consumed
/// by [`Session::handle_input`] (between reads, at most one partial PDU);
/// the spare space is the zero-filled rest of the same allocation. The
/// bytes a read returns move from spare to filled without a copy (adjacent
/// halves of one allocation are rejoined), and the core hands PDUs out as
/// `Bytes` slices of `filled`: received data is never copied. Only when
/// the spare space runs short is a new region allocated, and the partial
/// PDU (if any) copied to its start.
///
/// ```
/// # use iscsi_proto::initiator::RecvBuffer;
/// let mut rx = RecvBuffer::default();
/// let space = rx.spare(8192 + 48, 65536);
/// space[..3].copy_from_slice(b"abc"); // a socket read of 3 bytes
/// assert_eq!(rx.commit(3), b"abc");
/// assert_eq!(&rx.filled()[..], b"abc");
/// ```
#[derive(Debug, Default)]
pub struct RecvBuffer {
    filled: BytesMut,
    spare: BytesMut,
}

impl RecvBuffer {
    /// Drops the buffered bytes (a new connection).
    pub fn clear(&mut self) {
        self.filled.clear();
    }

    /// The received bytes, for [`Session::handle_input`].
    pub fn filled(&mut self) -> &mut BytesMut {
        &mut self.filled
    }

    /// Space for the next read: room for the rest of the PDU under way (up
    /// to `max_pdu` bytes, e.g. [`Session::max_recv_pdu_len`]) and at least
    /// half of `chunk` bytes. A new region holds `chunk` bytes, or
    /// what the PDU under way needs if that is more: the caller sizes
    /// `chunk` by what it expects (the driver core: by what is in flight).
    pub fn spare(&mut self, max_pdu: usize, chunk: usize) -> &mut [u8] {
        let have = self.filled.len();
        // The PDU under way, once its BHS is in: BHS, AHS, two digests and
        // the padded data segment.
        let pdu = match self.filled.get(..BHS_LEN) {
            Some(b) => {
                let bhs = Bhs::new_unchecked(b);
                let data = usize::try_from(bhs.data_segment_len()).unwrap_or(usize::MAX);
                BHS_LEN
                    .saturating_add(bhs.ahs_len_bytes())
                    .saturating_add(8)
                    .saturating_add(data)
                    .saturating_add(3)
            }
            None => BHS_LEN,
        };
        // A PDU longer than `max_pdu` is refused by the decoder: no room is
        // made for it.
        let need = pdu.min(max_pdu.max(BHS_LEN)).saturating_sub(have);
        if self.spare.len() < need.max(chunk / 2).max(1) {
            let size = chunk.max(have.saturating_add(need)).max(BHS_LEN);
            // Rejoin the spare space, then make room: once every PDU handed
            // out from this region has been dropped, `reserve` reuses the
            // region in place (moving the partial PDU to its start), so a
            // steady stream of reads touches resident memory rather than
            // fresh pages (each a page fault); else it allocates anew.
            self.filled.unsplit(core::mem::take(&mut self.spare));
            self.filled.truncate(have);
            self.filled.reserve(size - have);
            self.filled.resize(size, 0);
            self.spare = self.filled.split_off(have);
        }
        &mut self.spare[..]
    }

    /// `n` bytes were read into the space from [`spare`](Self::spare):
    /// they join the filled part, which is returned from where they start.
    pub fn commit(&mut self, n: usize) -> &[u8] {
        let got = self.spare.split_to(n.min(self.spare.len()));
        let start = self.filled.len();
        // Adjacent halves of one allocation: rejoined without a copy.
        self.filled.unsplit(got);
        self.filled.get(start..).unwrap_or(&[])
    }
}

impl TxQueue {
    /// Takes PDUs from the session until `max` are queued.
    pub fn fill(&mut self, session: &mut Session, now: Instant, max: usize) {
        self.fill_with(max, || session.poll_transmit(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_part_at_zero_is_not_copied() {
        let data = Bytes::from(vec![7u8; 100]);
        let mut r = ReadData::default();
        r.push(0, data.clone());
        let out = r.into_bytes();
        assert_eq!(out.as_ptr(), data.as_ptr());
    }

    #[test]
    fn parts_out_of_order_and_repeated_are_assembled_by_offset() {
        let mut r = ReadData::default();
        r.push(4, Bytes::from_static(b"efgh"));
        r.push(0, Bytes::from_static(b"abcd"));
        r.push(0, Bytes::from_static(b"ABCD"));
        assert_eq!(&r.into_bytes()[..], b"ABCDefgh");
        assert!(ReadData::default().into_bytes().is_empty());
        let mut r = ReadData::default();
        r.push(2, Bytes::from_static(b"cd"));
        assert_eq!(r.len(), 2);
        assert_eq!(&r.into_bytes()[..], b"\0\0cd");
    }

    #[test]
    fn recv_buffer_reads_in_place_and_keeps_a_partial_pdu() {
        let mut rx = RecvBuffer::default();
        let max_pdu = 48 + 4096 + 8;
        // Room for two of the longest PDUs per region.
        let chunk = 2 * max_pdu;
        let space = rx.spare(max_pdu, chunk);
        assert!(space.len() >= 2 * max_pdu);
        let base = space.as_ptr();
        // A BHS announcing a 4096-byte data segment, then 100 data bytes.
        space[..48].fill(0);
        space[5..8].copy_from_slice(&[0, 0x10, 0]);
        space[48..148].fill(7);
        assert_eq!(rx.commit(148).len(), 148);
        // Consumed up to here by no one: the next read continues in place.
        let space = rx.spare(max_pdu, chunk);
        assert_eq!(space.as_ptr(), base.wrapping_add(148));
        space[..10].fill(9);
        assert_eq!(rx.commit(10), &[9u8; 10][..]);
        assert_eq!(rx.filled().len(), 158);
        assert_eq!(rx.filled().as_ptr(), base, "rejoined without a copy");
        // Consume the first 48 bytes, as the decoder would.
        let head = rx.filled().split_to(48).freeze();
        assert_eq!(head.len(), 48);
        // Shrink the spare space below the PDU's remaining length: a new
        // region starts with the partial PDU copied over.
        let len = rx.spare(max_pdu, chunk).len();
        let _ = rx.commit(len - 10);
        let moved = rx.filled().len();
        let _ = rx.spare(max_pdu, chunk);
        assert_eq!(rx.filled().len(), moved);
        assert_eq!(&rx.filled()[..100], &[7u8; 100][..]);
        rx.clear();
        assert!(rx.filled().is_empty());
    }

    #[test]
    fn recv_buffer_region_follows_the_chunk_asked_for() {
        let max_pdu = 48 + 65536 + 8;
        // A small chunk: a small region, though the longest PDU is larger.
        let mut rx = RecvBuffer::default();
        assert_eq!(rx.spare(max_pdu, 4096).len(), 4096);
        // A PDU announcing a longer data segment gets room for all of it.
        let space = rx.spare(max_pdu, 4096);
        space[..48].fill(0);
        space[5..8].copy_from_slice(&[0, 0x80, 0]); // 32 KiB of data
        let _ = rx.commit(48);
        assert!(rx.spare(max_pdu, 4096).len() >= 32 * 1024 + 8);
        // Room is never made beyond `max_pdu` (the decoder refuses more).
        let mut rx = RecvBuffer::default();
        let space = rx.spare(100, 64);
        space[..48].fill(0);
        space[5..8].copy_from_slice(&[0, 0x80, 0]);
        let _ = rx.commit(48);
        assert!(rx.spare(100, 64).len() < 1024);
    }
}
