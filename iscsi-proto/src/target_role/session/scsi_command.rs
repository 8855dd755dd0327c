//! SCSI commands on the target side: admission of a SCSI Command PDU
//! (RFC 7143 section 11.3) with its immediate data, and the write data
//! path: unsolicited Data-Out, R2T (section 11.8) and the Data-Out PDUs
//! answering it (section 11.7), until the task is delivered to the
//! application.

use crate::prelude::*;
use bytes::{Bytes, BytesMut};

mod data_timeout;

use super::{Session, NO_TAG};
use crate::scsi::sense::SenseData;
use crate::scsi::SenseKey;
use crate::target::event::{Event, ScsiRequest, TaskId};
use crate::wire::{Ahs, DataOut, Header, Pdu, R2t, RejectReason, ScsiCommand, Serial, TaskAttr};

/// Most separate pieces a write buffer is kept in before it is copied
/// into one contiguous buffer (bounds the per-PDU overhead held).
const MAX_PARTS: usize = 8;

/// Sense for RFC 7143 section 11.4.7.2 "Unexpected unsolicited data".
const UNEXPECTED_UNSOLICITED: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x0c, 0x0c);
/// Sense for RFC 7143 section 11.4.7.2 "Incorrect amount of data".
const INCORRECT_AMOUNT: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x0c, 0x0d);
/// Sense for RFC 7143 section 11.4.7.2 "Protocol Service CRC error".
const CRC_ERROR: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x47, 0x05);
/// SPC-4 DATA OFFSET ERROR (ASC 0x4b, ASCQ 0x05).
const DATA_OFFSET_ERROR: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x4b, 0x05);
/// SPC-4 DATA PHASE ERROR (ASC 0x4b, ASCQ 0x00), used for a DataSN gap.
const DATA_PHASE_ERROR: SenseData = SenseData::new(SenseKey::AbortedCommand, 0x4b, 0x00);
/// SPC-4 INVALID FIELD IN CDB.
const INVALID_FIELD_IN_CDB: SenseData = SenseData::new(SenseKey::IllegalRequest, 0x24, 0x00);

/// One data sequence of a write: unsolicited (TTT 0xffffffff) or the
/// answer to one R2T.
#[derive(Debug, Clone)]
pub(in crate::target) struct Seq {
    ttt: u32,
    /// The R2TSN of the R2T that opened it (unsolicited: unused).
    r2t_sn: Serial,
    /// Where the R2T's burst starts.
    start: u32,
    end: u32,
    next_offset: u32,
    next_data_sn: Serial,
    /// A Data-Out of this sequence was lost (digest or sequence error,
    /// ErrorRecoveryLevel >= 1): what follows the gap is discarded and a
    /// recovery R2T asks for it once the sequence ends (RFC 7143 sections
    /// 7.2.2 and 7.3).
    lost: bool,
}

/// The write data received so far.
#[derive(Debug, Default)]
enum Assembly {
    #[default]
    Empty,
    Parts(Vec<(u32, Bytes)>),
    Buffer(BytesMut),
}

impl Assembly {
    fn add(&mut self, offset: u32, data: Bytes, total: u32) {
        if data.is_empty() {
            return;
        }
        match self {
            Assembly::Empty => *self = Assembly::Parts(vec![(offset, data)]),
            Assembly::Parts(parts) if parts.len() < MAX_PARTS => parts.push((offset, data)),
            Assembly::Parts(parts) => {
                let mut buf = BytesMut::zeroed(total as usize);
                for (o, d) in parts.drain(..) {
                    copy_at(&mut buf, o, &d);
                }
                copy_at(&mut buf, offset, &data);
                *self = Assembly::Buffer(buf);
            }
            Assembly::Buffer(buf) => copy_at(buf, offset, &data),
        }
    }

    /// The data as one buffer: zero-copy when it arrived in one piece.
    fn finish(self, total: u32) -> Bytes {
        match self {
            Assembly::Empty => Bytes::new(),
            Assembly::Parts(mut parts) if parts.len() == 1 => {
                parts.pop().map(|(_, d)| d).unwrap_or_default()
            }
            Assembly::Parts(parts) => {
                let mut buf = BytesMut::zeroed(total as usize);
                for (o, d) in parts {
                    copy_at(&mut buf, o, &d);
                }
                buf.freeze()
            }
            Assembly::Buffer(buf) => buf.freeze(),
        }
    }
}

fn copy_at(buf: &mut BytesMut, offset: u32, data: &[u8]) {
    let start = offset as usize;
    if let Some(dst) = start
        .checked_add(data.len())
        .and_then(|end| buf.get_mut(start..end))
    {
        dst.copy_from_slice(data);
    }
}

/// A SCSI task.
#[derive(Debug)]
pub(in crate::target) struct Task {
    pub(in crate::target) id: TaskId,
    /// The CID of the connection the task belongs to (RFC 7143 section
    /// 6.4, connection allegiance): its R2Ts, Data-In and status go there.
    pub(in crate::target) cid: u16,
    /// ErrorRecoveryLevel 2: its connection failed and it waits for TASK
    /// REASSIGN (RFC 7143 section 7.1.5); the application's completion is
    /// kept in `done` meanwhile.
    pub(in crate::target) orphan: bool,
    /// The completion the application gave while the task was orphaned.
    pub(in crate::target) done: Option<super::recovery::Done>,
    pub(in crate::target) itt: u32,
    pub(in crate::target) lun: u64,
    pub(in crate::target) cmd_sn: Serial,
    pub(in crate::target) immediate: bool,
    attr: TaskAttr,
    cdb: Bytes,
    pub(in crate::target) read: bool,
    write: bool,
    pub(in crate::target) edtl: u32,
    /// Reached in CmdSN order (or immediate): it may be executed.
    pub(in crate::target) accepted: bool,
    /// Handed to the application.
    pub(in crate::target) delivered: bool,
    /// The task ends with CHECK CONDITION once its data stops flowing.
    failure: Option<SenseData>,
    unsolicited: Option<Seq>,
    r2ts: Vec<Seq>,
    next_r2t_offset: u32,
    pub(in crate::target) r2t_sn: Serial,
    received: u32,
    data: Assembly,
    /// When the awaited Data-Out is overdue (sequence reception timeout,
    /// `SessionConfig::data_out_timeout`); None when no data is awaited.
    pub(in crate::target) data_deadline: Option<crate::time::Instant>,
    /// Sequence reception timeouts in a row without data.
    pub(in crate::target) data_stalls: u8,
    /// Target Transfer Tags of sequences given up after a timeout: their
    /// late Data-Out is discarded silently (at most `VOID_TTTS`).
    pub(in crate::target) void_ttts: Vec<u32>,
}

impl Session {
    /// Creates the task of a SCSI Command and checks its immediate data
    /// against the negotiated rules. None when the command was rejected.
    pub(in crate::target) fn new_task(&mut self, h: &ScsiCommand, pdu: &Pdu) -> Option<TaskId> {
        if self.by_itt.contains_key(&h.itt) {
            // RFC 7143 section 11.17.1: 0x07 "Task in progress": the ITT is
            // already used by a live task of this session.
            let b = self.original_bhs(pdu);
            self.send_reject(RejectReason::TaskInProgress, b);
            return None;
        }
        let (first_burst, immediate_ok, initial_r2t) = match &self.negotiated {
            Some(n) => (n.first_burst_length, n.immediate_data, n.initial_r2t),
            None => (0, false, true),
        };
        let mut cdb = BytesMut::from(&h.cdb[..]);
        for a in &pdu.ahs {
            if let Ahs::ExtendedCdb(ext) = a {
                cdb.extend_from_slice(ext);
            }
        }
        let data = pdu.data.clone();
        let imm = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut failure = None;
        if h.read && h.write {
            // Bidirectional commands are not implemented.
            failure = Some(INVALID_FIELD_IN_CDB);
        } else if h.expected_data_transfer_length > self.cfg.max_transfer_length {
            failure = Some(INVALID_FIELD_IN_CDB);
        } else if imm > 0
            && (!h.write
                || !immediate_ok
                || imm > first_burst
                || imm > h.expected_data_transfer_length)
        {
            // RFC 7143 section 13.11: immediate data only with
            // ImmediateData=Yes; section 13.14: unsolicited data (immediate
            // included) never exceeds FirstBurstLength; section 11.4.7.2:
            // "Unexpected unsolicited data".
            failure = Some(UNEXPECTED_UNSOLICITED);
        } else if !h.final_pdu && (!h.write || initial_r2t) {
            // RFC 7143 section 13.10: with InitialR2T=Yes the initiator
            // "MUST NOT" send unsolicited Data-Out: F must be 1.
            failure = Some(UNEXPECTED_UNSOLICITED);
        }
        let unsolicited_end = first_burst.min(h.expected_data_transfer_length);
        let unsolicited = if h.final_pdu {
            None
        } else {
            if failure.is_none() && unsolicited_end <= imm {
                // F=0 announces unsolicited Data-Out, but immediate data
                // already filled the first burst.
                failure = Some(INCORRECT_AMOUNT);
            }
            Some(Seq {
                ttt: NO_TAG,
                r2t_sn: Serial(0),
                start: imm,
                end: unsolicited_end,
                next_offset: imm,
                next_data_sn: Serial(0),
                lost: false,
            })
        };
        let id = TaskId::target(self.next_task_id, h.itt);
        self.next_task_id = self.next_task_id.wrapping_add(1).max(1);
        let mut task = Task {
            id,
            cid: self.conn.cid,
            orphan: false,
            done: None,
            itt: h.itt,
            lun: h.lun,
            cmd_sn: h.cmd_sn,
            immediate: h.immediate,
            attr: h.attr,
            cdb: cdb.freeze(),
            read: h.read,
            write: h.write,
            edtl: h.expected_data_transfer_length,
            accepted: false,
            delivered: false,
            failure,
            unsolicited,
            r2ts: Vec::new(),
            next_r2t_offset: imm,
            r2t_sn: Serial(0),
            received: 0,
            data: Assembly::Empty,
            data_deadline: None,
            data_stalls: 0,
            void_ttts: Vec::new(),
        };
        if task.failure.is_none() && task.write {
            task.received = imm;
            task.data.add(0, data, task.edtl);
        }
        self.tasks.insert(id, task);
        self.by_itt.insert(h.itt, id);
        self.arm_data_timer(id);
        Some(id)
    }

    /// A task reached its place in CmdSN order (or is immediate): it may
    /// run, unless a pending task management request covers it.
    pub(in crate::target) fn accept_task(&mut self, id: TaskId) {
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        // RFC 7143 section 11.5.1: a pending task management request acts
        // on "all the commands ... having a CmdSN lower than the task
        // management CmdSN", including those received after it: such a
        // command is aborted as it reaches its place in the order, never
        // delivered.
        if !t.immediate && self.pending_tmfs.iter().any(|p| p.covers(t.cmd_sn, t.lun)) {
            let itt = t.itt;
            self.remove_task(id);
            self.bury_itt(itt);
            return;
        }
        t.accepted = true;
        let cid = t.cid;
        // Its R2Ts (or failure response) go on its own connection, which
        // may not be the one whose PDU let it through (MC/S ordering).
        self.with_conn(cid, |s| s.progress(id));
    }

    /// Moves a task forward: R2Ts while data is missing, the failure
    /// response once data stopped, or delivery to the application.
    pub(in crate::target) fn progress(&mut self, id: TaskId) {
        self.progress_task(id);
        self.arm_data_timer(id);
    }

    fn progress_task(&mut self, id: TaskId) {
        let Some(t) = self.tasks.get(&id) else {
            return;
        };
        if !t.accepted || t.unsolicited.is_some() || t.delivered {
            return;
        }
        if let Some(sense) = t.failure {
            // RFC 7143 section 11.17.1 (after the reason table): the target
            // "MUST wait until it receives the last expected Data-Out PDUs
            // with the F bit set to 1 before sending the Response PDU".
            if t.r2ts.is_empty() {
                let itt = t.itt;
                self.remove_task(id);
                self.bury_itt(itt);
                self.send_check_condition(itt, &sense);
            }
            return;
        }
        if t.write && t.received < t.edtl {
            self.issue_r2ts(id);
            return;
        }
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        t.delivered = true;
        let data_out = core::mem::take(&mut t.data).finish(t.edtl);
        let req = ScsiRequest {
            task: id,
            lun: t.lun,
            cdb: t.cdb.clone(),
            attr: t.attr,
            itt: t.itt,
            cmd_sn: t.cmd_sn,
            immediate: t.immediate,
            data_out,
            expected_read_len: if t.read { t.edtl } else { 0 },
            expected_write_len: if t.write { t.edtl } else { 0 },
        };
        self.events.push_back((t.cid, Event::Command(req)));
    }

    /// Sends R2Ts until MaxOutstandingR2T are outstanding or the whole
    /// transfer is requested (RFC 7143 sections 11.8 and 13.17).
    fn issue_r2ts(&mut self, id: TaskId) {
        let (max_r2t, max_burst) = match &self.negotiated {
            Some(n) => (
                usize::from(n.max_outstanding_r2t.max(1)),
                n.max_burst_length.max(512),
            ),
            None => return,
        };
        loop {
            let Some(t) = self.tasks.get(&id) else {
                return;
            };
            if t.r2ts.len() >= max_r2t || t.next_r2t_offset >= t.edtl {
                return;
            }
            // RFC 7143 section 6.4 (allegiance) and 7.2.2: a task whose
            // connection failed waits for TASK REASSIGN
            // (`restart_transfer` then asks for the data); an R2T issued
            // now (a held write released by a CmdSN from another
            // connection) would reach the connection that replaced the
            // failed one (same CID) before the reassignment, and the
            // reassignment's R2T would then exceed MaxOutstandingR2T
            // (section 13.19).
            if t.orphan {
                return;
            }
            let offset = t.next_r2t_offset;
            // RFC 7143 section 11.8.5: the Desired Data Transfer Length
            // "MUST NOT be 0 and MUST NOT exceed MaxBurstLength".
            let len = (t.edtl - offset).min(max_burst);
            let (itt, lun, r2t_sn) = (t.itt, t.lun, t.r2t_sn);
            let ttt = self.new_ttt();
            if let Some(t) = self.tasks.get_mut(&id) {
                t.next_r2t_offset = offset + len;
                t.r2t_sn = r2t_sn.next();
                t.r2ts.push(Seq {
                    ttt,
                    r2t_sn,
                    start: offset,
                    end: offset + len,
                    next_offset: offset,
                    next_data_sn: Serial(0),
                    lost: false,
                });
            }
            self.push_r2t(lun, itt, ttt, r2t_sn, offset, len);
        }
    }

    /// Queues an R2T. RFC 7143 section 11.8.3: an R2T carries StatSN but
    /// does not advance it ("StatSN ... the next StatSN").
    fn push_r2t(&mut self, lun: u64, itt: u32, ttt: u32, r2t_sn: Serial, offset: u32, len: u32) {
        let (exp, max) = self.window_fields();
        self.conn.push_pdu(
            R2t {
                lun,
                itt,
                ttt,
                stat_sn: self.conn.stat_sn(),
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                r2t_sn,
                buffer_offset: offset,
                desired_data_transfer_length: len,
            },
            Bytes::new(),
        );
    }

    /// A recovery R2T for `[from, end)` of a burst whose Data-Out was
    /// lost (RFC 7143 section 2.2 definitions: "A recovery R2T carries the
    /// next unused R2TSN, but requests all or part of the data burst that
    /// an earlier R2T (with a lower R2TSN) had already requested"). It
    /// gets a fresh Target Transfer Tag, so that nothing of the lost
    /// sequence can be taken for its data.
    pub(in crate::target) fn send_recovery_r2t(&mut self, id: TaskId, from: u32, end: u32) {
        let ttt = self.new_ttt();
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        let r2t_sn = t.r2t_sn;
        t.r2t_sn = r2t_sn.next();
        t.r2ts.push(Seq {
            ttt,
            r2t_sn,
            start: from,
            end,
            next_offset: from,
            next_data_sn: Serial(0),
            lost: false,
        });
        let (lun, itt) = (t.lun, t.itt);
        self.push_r2t(lun, itt, ttt, r2t_sn, from, end - from);
    }

    /// R2T SNACK (RFC 7143 section 11.16.1): resends the outstanding R2Ts
    /// of a write whose R2TSN is in the run, "exact replicas ... R2T(s)
    /// requested by SNACK MUST also carry the current value of StatSN"
    /// (section 11.16). False when the run names an R2T not sent or one
    /// whose data already arrived (then: Reject "Protocol error").
    pub(in crate::target) fn resend_r2ts(&mut self, id: TaskId, beg: Serial, len: u32) -> bool {
        let Some(t) = self.tasks.get(&id) else {
            return false;
        };
        let next = t.r2t_sn;
        let lowest = t.r2ts.iter().map(|s| s.r2t_sn).min_by(|a, b| {
            if a.precedes(*b) {
                core::cmp::Ordering::Less
            } else {
                core::cmp::Ordering::Greater
            }
        });
        let Some(lowest) = lowest else {
            return false;
        };
        // BegRun 0 with RunLength 0: every unacknowledged R2T (section
        // 11.16.6); RunLength 0: all from BegRun (section 11.16.7).
        let beg = if beg == Serial(0) && len == 0 {
            lowest
        } else {
            beg
        };
        if !beg.in_window(lowest, next) || beg == next {
            return false;
        }
        let len = if len == 0 {
            next.distance_from(beg)
        } else {
            len
        };
        if len > next.distance_from(beg) {
            return false;
        }
        let wanted: Vec<(u32, Serial, u32, u32)> = t
            .r2ts
            .iter()
            .filter(|s| s.r2t_sn.distance_from(beg) < len && s.r2t_sn.in_window(beg, next))
            .map(|s| (s.ttt, s.r2t_sn, s.start, s.end - s.start))
            .collect();
        if u32::try_from(wanted.len()).ok() != Some(len) {
            // Part of the run was answered already: acknowledged.
            return false;
        }
        let (lun, itt) = (t.lun, t.itt);
        for (ttt, r2t_sn, start, n) in wanted {
            // The initiator sends the whole burst again: the sequence
            // restarts.
            if let Some(s) = self
                .tasks
                .get_mut(&id)
                .and_then(|t| t.r2ts.iter_mut().find(|s| s.ttt == ttt))
            {
                s.next_offset = s.start;
                s.next_data_sn = Serial(0);
                s.lost = false;
            }
            self.push_r2t(lun, itt, ttt, r2t_sn, start, n);
        }
        true
    }

    /// A Data-Out PDU (RFC 7143 section 11.7). `corrupt`: its data was
    /// dropped for a digest error (the Reject is already sent).
    pub(in crate::target) fn data_out(&mut self, h: DataOut, data: Bytes, corrupt: bool) {
        let bhs = || Bytes::copy_from_slice(&Header::DataOut(h).to_bytes(0, 0));
        let Some(&id) = self.by_itt.get(&h.itt) else {
            if !corrupt && !self.is_buried(h.itt) {
                // RFC 7143 section 11.17.1 note 2: an invalid ITT or TTT is
                // answered with 0x09 "Invalid PDU field".
                self.send_reject(RejectReason::InvalidPduField, bhs());
            }
            return;
        };
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        let seq_index = if h.ttt == NO_TAG {
            t.unsolicited.as_ref().map(|_| usize::MAX)
        } else {
            t.r2ts.iter().position(|s| s.ttt == h.ttt)
        };
        let Some(seq_index) = seq_index else {
            if corrupt || t.void_ttts.contains(&h.ttt) {
                // RFC 7143 section 13.19: an R2T stops being outstanding at
                // "a sequence reception timeout"; the late Data-Out of a
                // sequence given up is dropped, not an error.
                return;
            }
            if !t.write || t.delivered {
                self.send_reject(RejectReason::InvalidPduField, bhs());
                return;
            }
            // Unsolicited data that was not announced, or an unknown TTT:
            // Reject (note 2 of section 11.17.1), and the task ends with
            // CHECK CONDITION (section 11.4.7.2 "Unexpected unsolicited data").
            t.failure.get_or_insert(UNEXPECTED_UNSOLICITED);
            self.send_reject(RejectReason::InvalidPduField, bhs());
            self.progress(id);
            return;
        };
        let edtl = t.edtl;
        let failing = t.failure.is_some();
        let recover = self
            .negotiated
            .as_ref()
            .is_some_and(|n| n.error_recovery_level >= 1);
        let seq = if seq_index == usize::MAX {
            t.unsolicited.as_mut()
        } else {
            t.r2ts.get_mut(seq_index)
        };
        let Some(seq) = seq else {
            return;
        };
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut new_failure = None;
        let mut reject = false;
        if corrupt && recover {
            // RFC 7143 section 7.8 / 7.2.2: a Data-Out dropped for a data
            // digest error (the Reject "Data (payload) Digest Error" is
            // sent) is asked again with a recovery R2T rather than ending
            // the task.
            seq.lost = true;
        } else if corrupt {
            new_failure = Some(CRC_ERROR);
        } else if !failing && recover && seq.lost {
            // After a loss the rest of the sequence is discarded; the
            // recovery R2T asks for all of it (RFC 7143 section 7.3:
            // recovery R2T "requests all or part of the data burst").
        } else if !failing
            && recover
            && (h.data_sn != seq.next_data_sn || h.buffer_offset != seq.next_offset)
        {
            // RFC 7143 section 7.3 (sequence errors): "When a target
            // receives a data PDU with an out of order DataSN, it means
            // that the target must have hit a header or payload digest
            // error on at least one of the earlier data PDUs. The target
            // MUST address these implied digest errors" (section 7.2.2:
            // by a recovery R2T) instead of failing the task.
            seq.lost = true;
        } else if !failing {
            if h.data_sn != seq.next_data_sn {
                // RFC 7143 section 11.7.5: DataSN counts the Data-Out PDUs
                // of a sequence from 0; a gap is an invalid field (Reject
                // 0x09, section 11.17.1 note 2) ending the task.
                new_failure = Some(DATA_PHASE_ERROR);
                reject = true;
            } else if h.buffer_offset != seq.next_offset {
                // RFC 7143 section 13.18: with DataPDUInOrder=Yes data PDUs
                // come "at continuously increasing addresses" without
                // overlays: the offset must continue the sequence.
                new_failure = Some(DATA_OFFSET_ERROR);
                reject = true;
            } else if seq.next_offset.checked_add(len).is_none_or(|e| e > seq.end) {
                // RFC 7143 section 11.4.7.2: more data than the burst or
                // R2T asked for is an "Incorrect amount of data".
                new_failure = Some(INCORRECT_AMOUNT);
            } else {
                seq.next_offset += len;
                seq.next_data_sn = seq.next_data_sn.next();
                t.received = t.received.saturating_add(len);
                t.data_stalls = 0;
                t.data.add(h.buffer_offset, data, edtl);
            }
        }
        let complete = seq.next_offset >= seq.end;
        let ends = h.final_pdu || (complete && !failing && new_failure.is_none());
        let lost = seq.lost;
        if h.final_pdu && !complete && !failing && !lost && new_failure.is_none() {
            // RFC 7143 section 11.4.7.2: a sequence that ends short of the
            // R2T (or of FirstBurstLength) is an "Incorrect amount of data".
            new_failure = Some(INCORRECT_AMOUNT);
        }
        if let Some(f) = new_failure {
            t.failure.get_or_insert(f);
        }
        let mut recovery = None;
        if ends {
            if seq_index == usize::MAX {
                // What the unsolicited burst lost is asked by the R2Ts
                // that follow, which start at the first missing byte.
                t.unsolicited = None;
                t.next_r2t_offset = t.received;
            } else if seq_index < t.r2ts.len() {
                let s = t.r2ts.remove(seq_index);
                if lost && s.next_offset < s.end && t.failure.is_none() {
                    recovery = Some((s.next_offset, s.end));
                }
            }
        }
        if let Some((from, end)) = recovery {
            self.send_recovery_r2t(id, from, end);
        }
        if reject {
            self.send_reject(RejectReason::InvalidPduField, bhs());
        }
        self.progress(id);
    }

    /// A write reassigned to another connection (RFC 7143 section 7.2.2):
    /// the R2Ts outstanding on the failed connection are void; the
    /// transfer goes on from the first byte not received (data arrives in
    /// order: DataPDUInOrder and DataSequenceInOrder are Yes, and at
    /// ErrorRecoveryLevel >= 1 one R2T is outstanding at a time).
    pub(in crate::target) fn restart_transfer(&mut self, id: TaskId) {
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        t.unsolicited = None;
        t.r2ts.clear();
        t.next_r2t_offset = t.received;
        self.progress(id);
    }

    /// Removes a task from the session's tables.
    pub(in crate::target) fn remove_task(&mut self, id: TaskId) -> Option<Task> {
        let t = self.tasks.remove(&id)?;
        if self.by_itt.get(&t.itt) == Some(&id) {
            self.by_itt.remove(&t.itt);
        }
        Some(t)
    }
}
