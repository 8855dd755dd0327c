//! What the target keeps so that it can retransmit at ErrorRecoveryLevel
//! 1 and above (RFC 7143 sections 7.1-7.3 and 11.16): the status-carrying
//! PDUs of a connection until the initiator acknowledges them with
//! ExpStatSN ([`StatusLog`]), and the read data of completed tasks until
//! their status is acknowledged or a DataACK frees it ([`ReadRecord`]).
//!
//! Both are bounded: a byte budget (the configured
//! [`SessionConfig::retention_budget`](super::SessionConfig::retention_budget))
//! and a count. What falls out of the budget can no longer be
//! retransmitted; a SNACK asking for it is answered with a Reject "SNACK
//! Reject" (section 11.17.1, reason 0x03), as section 7.2.1 allows ("the
//! target MUST either resend the data PDU or reject the SNACK").

use crate::prelude::*;
use alloc::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::wire::{DataInStatus, Header, Serial};

/// Most status-carrying PDUs kept per connection, whatever their size.
const MAX_STATUS_ENTRIES: usize = 4096;
/// Most read records kept per session.
const MAX_READ_RECORDS: usize = 1024;

/// One status-carrying PDU as first sent.
#[derive(Debug, Clone)]
pub(super) struct RetainedStatus {
    pub(super) stat_sn: Serial,
    pub(super) header: Header,
    pub(super) data: Bytes,
}

/// What a Status SNACK may find for a StatSN.
#[derive(Debug)]
pub(super) enum StatusLookup<'a> {
    /// Kept: resend it.
    Kept(&'a RetainedStatus),
    /// Sent, not acknowledged, but dropped for the budget.
    Evicted,
    /// Never sent, or already acknowledged (RFC 7143 section 11.16:
    /// Reject "Protocol error").
    Invalid,
}

/// The numbered responses of one connection not yet acknowledged by
/// ExpStatSN (RFC 7143 section 4.2.2.2: "StatSN ... acknowledged by
/// ExpStatSN"; section 11.16.1: Status SNACK).
#[derive(Debug, Clone)]
pub(super) struct StatusLog {
    entries: VecDeque<RetainedStatus>,
    bytes: usize,
    budget: usize,
    /// Lowest StatSN not acknowledged (ExpStatSN as last seen).
    acked: Option<Serial>,
}

impl StatusLog {
    /// An empty log keeping at most `budget` bytes of data segments.
    pub(super) fn new(budget: usize) -> StatusLog {
        StatusLog {
            entries: VecDeque::new(),
            bytes: 0,
            budget,
            acked: None,
        }
    }

    /// Records a PDU just sent with `stat_sn`.
    pub(super) fn record(&mut self, stat_sn: Serial, header: Header, data: Bytes) {
        if self.acked.is_none() {
            self.acked = Some(stat_sn);
        }
        self.bytes = self.bytes.saturating_add(data.len());
        self.entries.push_back(RetainedStatus {
            stat_sn,
            header,
            data,
        });
        while self.entries.len() > MAX_STATUS_ENTRIES
            || (self.bytes > self.budget && self.entries.len() > 1)
        {
            self.pop();
        }
    }

    /// Replaces the content kept for `stat_sn` (RFC 7143 section 11.16.3:
    /// after an R-Data SNACK "the target will send the SCSI Response with
    /// the latest content known to the target").
    pub(super) fn replace(&mut self, stat_sn: Serial, header: Header, data: Bytes) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.stat_sn == stat_sn) {
            self.bytes = self.bytes.saturating_sub(e.data.len()) + data.len();
            e.header = header;
            e.data = data;
        }
    }

    fn pop(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes = self.bytes.saturating_sub(e.data.len());
        }
    }

    /// ExpStatSN `exp` arrived; `next` is the StatSN the next response
    /// will carry. Frees every PDU below `exp`. An ExpStatSN outside
    /// `[lowest unacknowledged, next]` is stale or bogus and ignored.
    pub(super) fn acknowledge(&mut self, exp: Serial, next: Serial) {
        let lo = self.acked.unwrap_or(next);
        if !exp.in_window(lo, next) {
            return;
        }
        self.acked = Some(exp);
        while self
            .entries
            .front()
            .is_some_and(|e| e.stat_sn.precedes(exp))
        {
            self.pop();
        }
    }

    /// The lowest StatSN not acknowledged.
    pub(super) fn lowest_unacknowledged(&self, next: Serial) -> Serial {
        self.acked.unwrap_or(next)
    }

    /// What is kept for `stat_sn`; `next` is the next StatSN to send.
    pub(super) fn lookup(&self, stat_sn: Serial, next: Serial) -> StatusLookup<'_> {
        let lo = self.lowest_unacknowledged(next);
        if stat_sn == next || !stat_sn.in_window(lo, next) {
            return StatusLookup::Invalid;
        }
        match self.entries.iter().find(|e| e.stat_sn == stat_sn) {
            Some(e) => StatusLookup::Kept(e),
            None => StatusLookup::Evicted,
        }
    }

    /// The PDUs kept, oldest first.
    pub(super) fn entries(&self) -> impl Iterator<Item = &RetainedStatus> {
        self.entries.iter()
    }

    /// PDUs kept (diagnostics and tests).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// How the Data-In PDUs of a read were cut (RFC 7143 sections 13.12 and
/// 13.13): segments of at most `segment` bytes, sequences of at most
/// `burst` bytes, from `base_offset` with DataSN from `base_sn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) total: u32,
    pub(super) segment: u32,
    pub(super) burst: u32,
    pub(super) base_offset: u32,
    pub(super) base_sn: u32,
}

/// One Data-In PDU of a [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    pub(super) data_sn: Serial,
    pub(super) offset: u32,
    pub(super) len: u32,
    /// F bit: last PDU of a sequence (or of the transfer).
    pub(super) final_pdu: bool,
    /// Last PDU of the transfer.
    pub(super) last: bool,
}

impl Layout {
    /// The pieces in DataSN order.
    pub(super) fn pieces(self) -> impl Iterator<Item = Piece> {
        let segment = self.segment.max(1);
        let burst = self.burst.max(1);
        let end = self.base_offset.saturating_add(self.total);
        let mut off = self.base_offset;
        let mut in_burst = 0u32;
        let mut sn = Serial(self.base_sn);
        core::iter::from_fn(move || {
            if off >= end {
                return None;
            }
            let n = (end - off).min(segment).min(burst - in_burst);
            let last = off + n == end;
            in_burst += n;
            let final_pdu = last || in_burst == burst;
            if in_burst == burst {
                in_burst = 0;
            }
            let p = Piece {
                data_sn: sn,
                offset: off,
                len: n,
                final_pdu,
                last,
            };
            off += n;
            sn = sn.next();
            Some(p)
        })
    }

    /// The number of PDUs.
    pub(super) fn count(self) -> u32 {
        u32::try_from(self.pieces().count()).unwrap_or(u32::MAX)
    }

    /// The piece numbered `data_sn`, if the layout has it.
    pub(super) fn piece(self, data_sn: Serial) -> Option<Piece> {
        let i = data_sn.distance_from(Serial(self.base_sn));
        self.pieces().nth(usize::try_from(i).ok()?)
    }
}

/// The Data-In of a completed read, kept until its status is
/// acknowledged (RFC 7143 section 7.2.1: Data SNACK; section 11.16.3:
/// R-Data SNACK).
#[derive(Debug, Clone)]
pub(super) struct ReadRecord {
    /// The connection its Data-In and status went on (StatSN is per
    /// connection).
    pub(super) cid: u16,
    pub(super) lun: u64,
    /// The data sent, from offset 0 (None once freed: by DataACK or the
    /// budget).
    pub(super) data: Option<Bytes>,
    pub(super) layout: Layout,
    /// DataSNs below this are acknowledged by a DataACK (section 11.16.2).
    pub(super) acked_sn: Serial,
    /// The Target Transfer Tag of the PDUs sent with the A bit (section
    /// 11.7.4), if any.
    pub(super) ack_ttt: Option<u32>,
    /// The status carried in the last Data-In, if it was (phase collapse).
    pub(super) status_in_data: Option<DataInStatus>,
    /// The StatSN of the task's status: the record goes once it is
    /// acknowledged.
    pub(super) stat_sn: Serial,
    /// R2Ts sent for the task (counted in ExpDataSN, section 11.4.8).
    pub(super) r2t_count: u32,
    /// Insertion order (the oldest is dropped first).
    seq: u64,
}

impl ReadRecord {
    /// A record of a read whose Data-In went out with `layout`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        cid: u16,
        lun: u64,
        data: Bytes,
        layout: Layout,
        ack_ttt: Option<u32>,
        status_in_data: Option<DataInStatus>,
        stat_sn: Serial,
        r2t_count: u32,
    ) -> ReadRecord {
        ReadRecord {
            cid,
            lun,
            data: Some(data),
            layout,
            acked_sn: Serial(layout.base_sn),
            ack_ttt,
            status_in_data,
            stat_sn,
            r2t_count,
            seq: 0,
        }
    }

    fn kept_bytes(&self) -> usize {
        self.data.as_ref().map_or(0, Bytes::len)
    }
}

/// The session's read records by Initiator Task Tag, within a byte budget.
#[derive(Debug, Clone)]
pub(super) struct ReadRecords {
    by_itt: BTreeMap<u32, ReadRecord>,
    bytes: usize,
    budget: usize,
    next_seq: u64,
}

impl ReadRecords {
    /// No records; at most `budget` bytes of read data kept.
    pub(super) fn new(budget: usize) -> ReadRecords {
        ReadRecords {
            by_itt: BTreeMap::new(),
            bytes: 0,
            budget,
            next_seq: 0,
        }
    }

    /// Keeps the record of task `itt`, dropping the data of the oldest
    /// records (or the oldest records) beyond the budget.
    pub(super) fn insert(&mut self, itt: u32, mut r: ReadRecord) {
        r.seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.bytes = self.bytes.saturating_add(r.kept_bytes());
        if let Some(old) = self.by_itt.insert(itt, r) {
            self.bytes = self.bytes.saturating_sub(old.kept_bytes());
        }
        while self.by_itt.len() > MAX_READ_RECORDS {
            let Some(oldest) = self.oldest(|_| true) else {
                break;
            };
            self.remove(oldest);
        }
        while self.bytes > self.budget {
            let Some(oldest) = self.oldest(|r| r.data.is_some()) else {
                break;
            };
            self.free_data(oldest);
        }
    }

    fn oldest(&self, pred: impl Fn(&ReadRecord) -> bool) -> Option<u32> {
        self.by_itt
            .iter()
            .filter(|(_, r)| pred(r))
            .min_by_key(|(_, r)| r.seq)
            .map(|(itt, _)| *itt)
    }

    /// The record of task `itt`.
    pub(super) fn get(&self, itt: u32) -> Option<&ReadRecord> {
        self.by_itt.get(&itt)
    }

    /// The record of task `itt`, to update.
    pub(super) fn get_mut(&mut self, itt: u32) -> Option<&mut ReadRecord> {
        self.by_itt.get_mut(&itt)
    }

    /// Forgets the record of task `itt`.
    pub(super) fn remove(&mut self, itt: u32) -> Option<ReadRecord> {
        let r = self.by_itt.remove(&itt)?;
        self.bytes = self.bytes.saturating_sub(r.kept_bytes());
        Some(r)
    }

    /// Drops the data of task `itt` (acknowledged, or beyond the budget).
    pub(super) fn free_data(&mut self, itt: u32) {
        if let Some(r) = self.by_itt.get_mut(&itt) {
            let n = r.kept_bytes();
            r.data = None;
            self.bytes = self.bytes.saturating_sub(n);
        }
    }

    /// The task whose Data-In carried the A bit with `ttt` and `lun`.
    pub(super) fn by_ack_ttt(&self, ttt: u32, lun: u64) -> Option<u32> {
        self.by_itt
            .iter()
            .find(|(_, r)| r.ack_ttt == Some(ttt) && r.lun == lun)
            .map(|(itt, _)| *itt)
    }

    /// ExpStatSN of connection `cid` acknowledged every status before
    /// `exp`, within the unacknowledged range `[lo, exp)`: those tasks'
    /// records go.
    pub(super) fn acknowledge(&mut self, cid: u16, lo: Serial, exp: Serial) {
        let done: Vec<u32> = self
            .by_itt
            .iter()
            .filter(|(_, r)| r.cid == cid && r.stat_sn.in_window(lo, exp) && r.stat_sn != exp)
            .map(|(itt, _)| *itt)
            .collect();
        for itt in done {
            self.remove(itt);
        }
    }

    /// Bytes of read data kept.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records kept.
    pub(super) fn len(&self) -> usize {
        self.by_itt.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::NopIn;

    fn nop(sn: u32) -> Header {
        Header::NopIn(NopIn {
            lun: 0,
            itt: 1,
            ttt: 0xffff_ffff,
            stat_sn: Serial(sn),
            exp_cmd_sn: Serial(0),
            max_cmd_sn: Serial(0),
        })
    }

    #[test]
    fn layout_matches_mrdsl_and_burst() {
        // RFC 7143 sections 13.12 and 13.13: segments of at most
        // MaxRecvDataSegmentLength, F at the end of each MaxBurstLength.
        let l = Layout {
            total: 20000,
            segment: 4096,
            burst: 8192,
            base_offset: 0,
            base_sn: 0,
        };
        let p: Vec<Piece> = l.pieces().collect();
        assert_eq!(p.len(), 5);
        assert_eq!(
            p.iter().map(|p| p.final_pdu).collect::<Vec<_>>(),
            [false, true, false, true, true]
        );
        assert_eq!(p[4].offset, 16384);
        assert_eq!(p[4].len, 20000 - 16384);
        assert!(p[4].last);
        assert_eq!(l.piece(Serial(2)).map(|p| p.offset), Some(8192));
        assert_eq!(l.piece(Serial(5)), None);
        assert_eq!(l.count(), 5);
    }

    #[test]
    fn status_log_frees_on_exp_stat_sn_and_keeps_budget() {
        // RFC 7143 section 4.2.2.2: ExpStatSN acknowledges every status
        // below it; retransmission needs only what is unacknowledged.
        let mut log = StatusLog::new(10);
        for sn in 5..9 {
            log.record(Serial(sn), nop(sn), Bytes::from_static(b"abc"));
        }
        // 12 bytes > 10: the oldest went.
        assert_eq!(log.len(), 3);
        assert!(matches!(
            log.lookup(Serial(5), Serial(9)),
            StatusLookup::Evicted
        ));
        assert!(matches!(
            log.lookup(Serial(6), Serial(9)),
            StatusLookup::Kept(_)
        ));
        assert!(matches!(
            log.lookup(Serial(9), Serial(9)),
            StatusLookup::Invalid
        ));
        // A bogus ExpStatSN (beyond what was sent) is ignored.
        log.acknowledge(Serial(100), Serial(9));
        assert_eq!(log.len(), 3);
        log.acknowledge(Serial(8), Serial(9));
        assert_eq!(log.len(), 1);
        assert!(matches!(
            log.lookup(Serial(7), Serial(9)),
            StatusLookup::Invalid
        ));
    }
}
