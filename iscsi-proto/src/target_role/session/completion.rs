//! Completing a SCSI task on the target side: the application's answer
//! sent as Data-In PDUs (RFC 7143 section 11.7) and the status, either in
//! the last Data-In or in a SCSI Response (section 11.4).

use bytes::{Bytes, BytesMut};

use super::recovery::Done;
use super::{Session, NO_TAG};
use crate::error::UsageError;
use crate::scsi::sense::SenseData;
use crate::scsi::ScsiStatus;
use crate::target::event::TaskId;
use crate::target::retention::{Layout, ReadRecord};
use crate::wire::{DataIn, DataInStatus, Residual, ScsiResponse, ScsiResponseCode, Serial};

/// The 2-byte SenseLength followed by the sense bytes (RFC 7143 section
/// 11.4.7.1).
fn sense_segment(sense: &[u8]) -> Option<Bytes> {
    let len = u16::try_from(sense.len()).ok()?;
    let mut b = BytesMut::with_capacity(sense.len() + 2);
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(sense);
    Some(b.freeze())
}

impl Session {
    pub(in crate::target) fn send_check_condition(&mut self, itt: u32, sense: &SenseData) {
        let seg = Bytes::copy_from_slice(&sense.to_iscsi_segment());
        self.send_scsi_response(
            itt,
            ScsiStatus::CheckCondition.to_u8(),
            Residual::None,
            seg,
            Serial(0),
        );
    }

    /// Queues a SCSI Response (RFC 7143 section 11.4); StatSN advances.
    fn send_scsi_response(
        &mut self,
        itt: u32,
        status: u8,
        residual: Residual,
        data: Bytes,
        exp_data_sn: Serial,
    ) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.conn.take_stat_sn();
        self.conn.push_pdu(
            ScsiResponse {
                response: ScsiResponseCode::CommandCompleted,
                status,
                itt,
                snack_tag: 0,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                exp_data_sn,
                bidi_read_residual: Residual::None,
                residual,
            },
            data,
        );
    }

    /// The application's answer to a delivered task.
    /// `write_len`: for a command without the R bit, the number of bytes
    /// its CDB transfers to the target, if the application knows it (for
    /// the write residual).
    pub(in crate::target) fn complete_task(
        &mut self,
        id: TaskId,
        status: ScsiStatus,
        sense: Option<Bytes>,
        data_in: Bytes,
        write_len: Option<u32>,
    ) -> Result<(), UsageError> {
        if self.aborting.remove(&id).is_some() {
            // The task was aborted while the application ran it: the
            // completion acknowledges the abort and is discarded (RFC 7143
            // section 11.5.1: no response for a covered task after the
            // Task Management response; none before it either, as the
            // initiator has given the task up).
            self.abort_done(id);
            return Ok(());
        }
        match self.tasks.get(&id) {
            Some(t) if t.delivered => {}
            _ => return Err(UsageError::UnknownTask(id)),
        }
        let done = Done {
            status,
            sense: sense.clone(),
            data_in: data_in.clone(),
            write_len,
        };
        if self.keep_if_orphan(id, &done) {
            // ErrorRecoveryLevel 2: its connection failed; the answer is
            // sent once the task is reassigned (RFC 7143 section 7.2.2).
            return Ok(());
        }
        // RFC 7143 section 6.4 (connection allegiance): "the target MUST
        // send the requested data, if any, followed by the status to the
        // initiator over the same TCP connection that was used to deliver
        // the SCSI command".
        let cid = self.tasks.get(&id).map_or(self.conn.cid, |t| t.cid);
        self.with_conn(cid, |s| {
            s.complete_on_conn(id, status, sense, data_in, write_len)
        })
    }

    /// [`Session::complete_task`] on the task's connection, now current.
    fn complete_on_conn(
        &mut self,
        id: TaskId,
        status: ScsiStatus,
        sense: Option<Bytes>,
        data_in: Bytes,
        write_len: Option<u32>,
    ) -> Result<(), UsageError> {
        let sense_seg = match &sense {
            Some(s) => Some(sense_segment(s).ok_or(UsageError::SenseTooLong)?),
            None => None,
        };
        let Some(t) = self.remove_task(id) else {
            return Err(UsageError::UnknownTask(id));
        };
        let edtl = t.edtl;
        // RFC 7143 section 11.4.5.1: the residual is the difference between
        // the Expected Data Transfer Length and what the target transferred
        // (U bit) or would have (O bit).
        let (send, residual) = if t.read {
            let len = u32::try_from(data_in.len()).unwrap_or(u32::MAX);
            if len > edtl {
                (
                    data_in.slice(..edtl as usize),
                    Residual::Overflow(len - edtl),
                )
            } else if len < edtl {
                (data_in, Residual::Underflow(edtl - len))
            } else {
                (data_in, Residual::None)
            }
        } else {
            // RFC 7143 section 11.4.5.1, for writes: "the Residual Count
            // ... MUST be set to the number of bytes that were not
            // transferred" (U: the Expected Data Transfer Length exceeded
            // what the command needed) or that the command needed beyond it
            // (O). Without the command's own length, none is reported.
            let residual = match write_len {
                Some(n) if n > edtl => Residual::Overflow(n - edtl),
                Some(n) if n < edtl => Residual::Underflow(edtl - n),
                _ => Residual::None,
            };
            (Bytes::new(), residual)
        };
        let status_u8 = status.to_u8();
        // RFC 7143 section 11.7.4 (S bit): status may ride in the last
        // Data-In only when the command ended without an exception (GOOD,
        // CONDITION MET), so never with sense data.
        let in_data = !send.is_empty() && sense_seg.is_none() && status.is_success();
        let max_burst = self
            .negotiated
            .as_ref()
            .map_or(262_144, |n| n.max_burst_length)
            .max(512);
        let seg_max = self.conn.max_send_segment.min(max_burst).max(1);
        // RFC 7143 section 13.12: a Data-In never exceeds the initiator's
        // MaxRecvDataSegmentLength; section 13.13: a sequence never
        // exceeds MaxBurstLength, and its last PDU has F=1 (section
        // 11.7.1).
        let layout = Layout {
            total: u32::try_from(send.len()).unwrap_or(u32::MAX),
            segment: seg_max,
            burst: max_burst,
            base_offset: 0,
            base_sn: 0,
        };
        let retain = self.error_recovery_level() >= 1;
        // RFC 7143 section 11.7.2: at ErrorRecoveryLevel >= 1 the target
        // may set the A bit "once every MaxBurstLength bytes, or on the last
        // Data-In PDU"; section 11.7.4: the Target Transfer Tag and LUN
        // "MUST be provided by the target if the A bit is set to 1".
        let ack_ttt =
            (retain && self.cfg.request_data_ack && !send.is_empty()).then(|| self.new_ttt());
        let mut data_sn = Serial(0);
        let mut status_in_data = None;
        for piece in layout.pieces() {
            let (exp, max) = self.window_fields();
            let st = if piece.last && in_data {
                let st = DataInStatus {
                    status: status_u8,
                    stat_sn: self.conn.take_stat_sn(),
                    residual,
                };
                status_in_data = Some(st);
                Some(st)
            } else {
                None
            };
            let ack = ack_ttt.is_some() && piece.final_pdu;
            self.conn.push_pdu(
                DataIn {
                    final_pdu: piece.final_pdu,
                    ack,
                    lun: if ack { t.lun } else { 0 },
                    itt: t.itt,
                    ttt: if ack {
                        ack_ttt.unwrap_or(NO_TAG)
                    } else {
                        NO_TAG
                    },
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    data_sn: piece.data_sn,
                    buffer_offset: piece.offset,
                    status: st,
                },
                send.slice(piece.offset as usize..(piece.offset + piece.len) as usize),
            );
            data_sn = piece.data_sn.next();
        }
        let status_stat_sn = match status_in_data {
            Some(st) => st.stat_sn,
            None => self.conn.stat_sn(),
        };
        if retain && t.read {
            // RFC 7143 section 7.2.1: the Data-In stays retransmittable
            // (Data SNACK, R-Data SNACK) until the status is acknowledged.
            let record = ReadRecord::new(
                self.conn.cid,
                t.lun,
                send.clone(),
                layout,
                ack_ttt,
                status_in_data,
                status_stat_sn,
                t.r2t_sn.0,
            );
            self.reads.insert(t.itt, record);
        }
        if !in_data {
            // RFC 7143 section 11.4.8: ExpDataSN is "the number of R2T and
            // Data-In (read) PDUs the target has sent for the command".
            let exp_data_sn = data_sn.plus(t.r2t_sn.0);
            self.send_scsi_response(
                t.itt,
                status_u8,
                residual,
                sense_seg.unwrap_or_default(),
                exp_data_sn,
            );
        }
        Ok(())
    }
}
