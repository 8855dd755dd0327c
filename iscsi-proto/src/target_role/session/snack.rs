//! SNACK on the target side (RFC 7143 section 11.16) and the
//! acknowledgements that free what is kept for it (ExpStatSN, DataACK).
//!
//! At ErrorRecoveryLevel 0 every SNACK is refused with Reject "SNACK
//! Reject" (section 11.16: SNACK support is required only at levels above
//! 0). At level 1 and above, RFC 7143 section 11.16: "If the
//! implementation supports ErrorRecoveryLevel greater than zero, it MUST
//! support all SNACK types": Data/R2T SNACK, Status SNACK, DataACK and
//! R-Data SNACK are served from what [`crate::target::retention`] keeps.

use crate::prelude::*;
use bytes::Bytes;

use super::{Session, NO_TAG};
use crate::target::retention::{Layout, StatusLookup};
use crate::wire::{
    DataIn, Header, RejectReason, Residual, ScsiResponse, ScsiResponseCode, Serial, SnackRequest,
    SnackType,
};

/// The numbers a SNACK run covers: `[beg, beg + len)`, `len` 0 meaning
/// "up to the last sent" (RFC 7143 section 11.16.7: "RunLength 0 signals
/// that all ... PDUs carrying the numbers equal to or greater than BegRun
/// have to be resent").
fn run(beg: Serial, len: u32, lowest: Serial, next: Serial) -> Option<(Serial, u32)> {
    // RFC 7143 section 11.16.6: "BegRun 0 when used in conjunction with
    // RunLength 0 means resend all unacknowledged ... PDUs".
    let beg = if beg == Serial(0) && len == 0 {
        lowest
    } else {
        beg
    };
    if !beg.in_window(lowest, next) {
        return None;
    }
    let available = next.distance_from(beg);
    if available == 0 {
        return None;
    }
    let len = if len == 0 { available } else { len };
    (len <= available).then_some((beg, len))
}

/// Sets the fields a retransmission carries with their current values
/// (RFC 7143 section 11.16: replicas "except for the fields ExpCmdSN,
/// MaxCmdSN, and ExpDataSN, which MUST carry the current values").
fn refresh(h: &mut Header, exp: Serial, max: Serial) {
    macro_rules! set {
        ($x:expr) => {{
            $x.exp_cmd_sn = exp;
            $x.max_cmd_sn = max;
        }};
    }
    match h {
        Header::NopIn(x) => set!(x),
        Header::ScsiResponse(x) => set!(x),
        Header::TaskMgmtResponse(x) => set!(x),
        Header::TextResponse(x) => set!(x),
        Header::DataIn(x) => set!(x),
        Header::LogoutResponse(x) => set!(x),
        Header::R2t(x) => set!(x),
        Header::AsyncMessage(x) => set!(x),
        Header::Reject(x) => set!(x),
        _ => {}
    }
}

impl Session {
    /// Whether the task `itt` (live, or a completed read kept for SNACK)
    /// is allegiant to the connection being served, or unknown. RFC 7143
    /// section 4.2.5.1: "Retransmission requests (SNACK PDUs) and the data
    /// and status that they generate MUST also use the same connection":
    /// a Data/R2T or R-Data SNACK arriving on another connection asks for
    /// PDUs that were not sent there (section 11.16: "MUST be rejected
    /// with a reason code of 'Protocol error'"); answering it there would
    /// put another connection's StatSN on this one.
    fn allegiant_here(&self, itt: u32) -> bool {
        let here = self.conn.cid;
        if let Some(t) = self.by_itt.get(&itt).and_then(|id| self.tasks.get(id)) {
            return t.cid == here;
        }
        self.reads.get(itt).is_none_or(|r| r.cid == here)
    }

    /// ExpStatSN of an initiator PDU: the numbered responses before it
    /// are acknowledged (RFC 7143 section 4.2.2.2), so their retained
    /// copies and the read data of their tasks are freed.
    pub(in crate::target) fn acknowledge_stat_sn(&mut self, exp: Serial) {
        let next = self.conn.stat_sn();
        let Some(log) = self.conn.status_log.as_mut() else {
            return;
        };
        let lo = log.lowest_unacknowledged(next);
        if !exp.in_window(lo, next) {
            return;
        }
        log.acknowledge(exp, next);
        let cid = self.conn.cid;
        self.reads.acknowledge(cid, lo, exp);
    }

    /// A SNACK Request (RFC 7143 section 11.16).
    pub(in crate::target) fn snack(&mut self, h: SnackRequest, bhs: Bytes) {
        if self.error_recovery_level() == 0 {
            // RFC 7143 section 11.16: SNACK support is required only at
            // ErrorRecoveryLevel > 0; at level 0 it is refused with Reject
            // reason 0x03 "SNACK Reject" (section 11.17.1).
            self.send_reject(RejectReason::SnackReject, bhs);
            return;
        }
        match h.snack_type {
            SnackType::DataR2t => self.data_r2t_snack(h, bhs),
            SnackType::Status => self.status_snack(h, bhs),
            SnackType::DataAck => self.data_ack(h),
            SnackType::RData => self.r_data_snack(h, bhs),
            // A reserved type (section 11.16.1): not a SNACK we know.
            _ => self.send_reject(RejectReason::ProtocolError, bhs),
        }
    }

    /// Status SNACK: resend the numbered responses of the run (RFC 7143
    /// section 11.16.1), exact replicas with the current window.
    fn status_snack(&mut self, h: SnackRequest, bhs: Bytes) {
        let next = self.conn.stat_sn();
        let Some(log) = self.conn.status_log.as_ref() else {
            self.send_reject(RejectReason::SnackReject, bhs);
            return;
        };
        let lowest = log.lowest_unacknowledged(next);
        // RFC 7143 section 11.16: "Any SNACK that requests a
        // numbered-response, Data, or R2T that was not sent by the target
        // or was already acknowledged by the initiator MUST be rejected
        // with a reason code of 'Protocol error'."
        let Some((beg, len)) = run(h.beg_run, h.run_length, lowest, next) else {
            self.send_reject(RejectReason::ProtocolError, bhs);
            return;
        };
        let mut resend = Vec::new();
        let mut evicted = false;
        for i in 0..len {
            match log.lookup(beg.plus(i), next) {
                StatusLookup::Kept(e) => resend.push((e.header, e.data.clone())),
                StatusLookup::Evicted => evicted = true,
                StatusLookup::Invalid => {}
            }
        }
        let (exp, max) = self.window_fields();
        for (mut header, data) in resend {
            refresh(&mut header, exp, max);
            self.conn.push_pdu(header, data);
        }
        if evicted {
            // Section 7.2.1: the target "MUST either resend ... or reject
            // the SNACK" ("SNACK Reject", section 11.17.1): part of the
            // run fell out of the retention budget.
            self.send_reject(RejectReason::SnackReject, bhs);
        }
    }

    /// Data/R2T SNACK: Data-In of a read, or R2Ts of a write (RFC 7143
    /// section 11.16.1).
    fn data_r2t_snack(&mut self, h: SnackRequest, bhs: Bytes) {
        if !self.allegiant_here(h.itt) {
            self.send_reject(RejectReason::ProtocolError, bhs);
            return;
        }
        if let Some(&id) = self.by_itt.get(&h.itt) {
            // A live task: only a write has sent something numbered (its
            // R2Ts); a read sends its Data-In when it completes.
            if self.resend_r2ts(id, h.beg_run, h.run_length) {
                return;
            }
            self.send_reject(RejectReason::ProtocolError, bhs);
            return;
        }
        let Some(r) = self.reads.get(h.itt) else {
            // Nothing sent for this task, or its status was acknowledged:
            // "Protocol error" (section 11.16).
            self.send_reject(RejectReason::ProtocolError, bhs);
            return;
        };
        let count = r.layout.count();
        let lowest = r.acked_sn;
        let next = Serial(r.layout.base_sn).plus(count);
        // RFC 7143 section 11.16.2: "An initiator MUST NOT request
        // retransmission for any data it had already acknowledged."
        let Some((beg, len)) = run(h.beg_run, h.run_length, lowest, next) else {
            self.send_reject(RejectReason::ProtocolError, bhs);
            return;
        };
        let Some(data) = r.data.clone() else {
            // Freed for the budget: section 7.2.1, reject the SNACK; the
            // status was already sent, so nothing more is due.
            self.send_reject(RejectReason::SnackReject, bhs);
            return;
        };
        let (layout, lun, ack_ttt, status) = (r.layout, r.lun, r.ack_ttt, r.status_in_data);
        let (exp, max) = self.window_fields();
        for i in 0..len {
            let Some(p) = layout.piece(beg.plus(i)) else {
                continue;
            };
            let Some(seg) = slice(&data, p.offset, p.len) else {
                continue;
            };
            // Section 11.16: "exact replicas of the ones that the target
            // transmitted originally except for the fields ExpCmdSN and
            // MaxCmdSN".
            let ack = ack_ttt.is_some() && p.final_pdu;
            self.conn.push_pdu(
                DataIn {
                    final_pdu: p.final_pdu,
                    ack,
                    lun: if ack { lun } else { 0 },
                    itt: h.itt,
                    ttt: if ack {
                        ack_ttt.unwrap_or(NO_TAG)
                    } else {
                        NO_TAG
                    },
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    data_sn: p.data_sn,
                    buffer_offset: p.offset,
                    status: if p.last { status } else { None },
                },
                seg,
            );
        }
    }

    /// DataACK (RFC 7143 section 11.16.2): "used to free resources at the
    /// target"; BegRun is the next expected DataSN (section 11.16.6), the
    /// Target Transfer Tag and LUN those of the Data-In with the A bit
    /// (section 11.16.5). An unknown tag (the status was acknowledged
    /// meanwhile) is ignored: there is nothing left to free.
    fn data_ack(&mut self, h: SnackRequest) {
        let Some(itt) = self.reads.by_ack_ttt(h.ttt_or_snack_tag, h.lun) else {
            return;
        };
        let Some(r) = self.reads.get_mut(itt) else {
            return;
        };
        let count = r.layout.count();
        let end = Serial(r.layout.base_sn).plus(count);
        if h.beg_run.in_window(r.acked_sn, end) {
            r.acked_sn = h.beg_run;
        }
        if r.acked_sn == end {
            self.reads.free_data(itt);
        }
    }

    /// R-Data SNACK (RFC 7143 section 11.16.3): resend the unacknowledged
    /// data resegmented for the current MaxRecvDataSegmentLength, DataSN
    /// from "the BegRun of the last DataACK ... otherwise ... 0", then a
    /// SCSI Response carrying the SNACK Tag with the original StatSN.
    fn r_data_snack(&mut self, h: SnackRequest, bhs: Bytes) {
        // Section 11.16.5: the SNACK Tag is "different from 0 or
        // 0xffffffff"; section 11.16.6/7: BegRun and RunLength are 0.
        let tag = h.ttt_or_snack_tag;
        if tag == 0 || tag == NO_TAG || h.beg_run != Serial(0) || h.run_length != 0 {
            self.send_reject(RejectReason::ProtocolError, bhs);
            return;
        }
        if !self.allegiant_here(h.itt) {
            self.send_reject(RejectReason::ProtocolError, bhs);
            return;
        }
        let Some(r) = self.reads.get(h.itt).cloned() else {
            self.send_reject(RejectReason::ProtocolError, bhs);
            return;
        };
        let Some(data) = r.data.clone().or_else(|| {
            // Everything was acknowledged by DataACK: no data to resend,
            // only the tagged response.
            (r.acked_sn == Serial(r.layout.base_sn).plus(r.layout.count())).then(Bytes::new)
        }) else {
            self.send_reject(RejectReason::SnackReject, bhs);
            return;
        };
        let start = r
            .layout
            .piece(r.acked_sn)
            .map_or(r.layout.base_offset + r.layout.total, |p| p.offset);
        let max_burst = self
            .negotiated
            .as_ref()
            .map_or(262_144, |n| n.max_burst_length)
            .max(512);
        let end = r.layout.base_offset + r.layout.total;
        let layout = Layout {
            total: end.saturating_sub(start),
            segment: self.conn.max_send_segment.min(max_burst).max(1),
            burst: max_burst,
            base_offset: start,
            base_sn: r.acked_sn.0,
        };
        let (exp, max) = self.window_fields();
        let mut next_sn = r.acked_sn;
        for p in layout.pieces() {
            let Some(seg) = slice(&data, p.offset, p.len) else {
                continue;
            };
            // The status goes in the tagged SCSI Response, not in the
            // Data-In (section 11.16.3: "it must send a new SCSI Response
            // PDU").
            self.conn.push_pdu(
                DataIn {
                    final_pdu: p.final_pdu,
                    ack: false,
                    lun: 0,
                    itt: h.itt,
                    ttt: NO_TAG,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    data_sn: p.data_sn,
                    buffer_offset: p.offset,
                    status: None,
                },
                seg,
            );
            next_sn = p.data_sn.next();
        }
        // The status as first sent: from the Data-In, or from the kept
        // SCSI Response.
        let kept = self.conn.status_log.as_ref().and_then(|l| {
            match l.lookup(r.stat_sn, self.conn.stat_sn()) {
                StatusLookup::Kept(e) => Some((e.header, e.data.clone())),
                _ => None,
            }
        });
        let (status, residual, sense) = match (r.status_in_data, kept) {
            (Some(st), _) => (st.status, st.residual, Bytes::new()),
            (None, Some((Header::ScsiResponse(resp), d))) => (resp.status, resp.residual, d),
            _ => {
                self.send_reject(RejectReason::SnackReject, bhs);
                return;
            }
        };
        // Section 11.16.3: "all SCSI responses must carry the same StatSN";
        // section 11.4.8: ExpDataSN counts the R2T and Data-In PDUs.
        let resp = ScsiResponse {
            response: ScsiResponseCode::CommandCompleted,
            status,
            itt: h.itt,
            snack_tag: tag,
            stat_sn: r.stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            exp_data_sn: next_sn.plus(r.r2t_count),
            bidi_read_residual: Residual::None,
            residual,
        };
        self.conn.push_pdu(resp, sense.clone());
        // Section 11.16.3: a later Status SNACK gets "the SCSI Response
        // with the latest content known to the target".
        if let Some(log) = self.conn.status_log.as_mut() {
            log.replace(r.stat_sn, Header::ScsiResponse(resp), sense);
        }
        if let Some(rec) = self.reads.get_mut(h.itt) {
            rec.layout = layout;
            rec.status_in_data = None;
            rec.ack_ttt = None;
        }
    }
}

/// `data[offset..offset + len]`, when inside.
fn slice(data: &Bytes, offset: u32, len: u32) -> Option<Bytes> {
    let start = offset as usize;
    let end = start.checked_add(len as usize)?;
    (end <= data.len()).then(|| data.slice(start..end))
}
