//! R-Data SNACK (RFC 7143 section 11.16.3, ErrorRecoveryLevel >= 1): "If
//! the initiator MaxRecvDataSegmentLength changed between the original
//! transmission and the time the initiator requests retransmission, the
//! initiator MUST issue a R-Data SNACK."
//!
//! Each connection counts the changes of our MaxRecvDataSegmentLength in
//! Full Feature Phase (`Connection::mrdsl_epoch`, from
//! `Session::declare_max_recv_data_segment_length`); each read remembers
//! the count when its command went out. A Data SNACK for a read sent
//! before a change becomes an R-Data SNACK: BegRun 0 and RunLength 0
//! (section 11.16.6: "BegRun MUST be 0 for a R-Data SNACK"), a SNACK Tag
//! "different from 0 or 0xffffffff and ... unique for the task" (section
//! 11.16.5). "The initiator indicates that it discards all the
//! unacknowledged data and expects the target to resend it. ... Their
//! DataSN starts with the BegRun of the last DataACK received by the
//! target if any was received; otherwise it starts with 0": the task's
//! next DataSN and read offset go back to the last DataACK (or 0). The
//! bytes the application already received are not delivered again
//! (`TaskRecovery::delivered`): the resent data is the same data. A
//! response held for the discarded data is dropped: the target sends "a
//! SCSI Response that contains a copy of the SNACK Tag" (same StatSN).

use crate::prelude::*;

use super::*;

impl Session {
    /// Whether a Data SNACK for `itt` must be an R-Data SNACK: a read sent
    /// before our MaxRecvDataSegmentLength last changed.
    pub(super) fn needs_rdata(&mut self, itt: u32) -> bool {
        let epoch = self.conn.mrdsl_epoch;
        self.scsi_task(itt).is_some_and(|s| {
            s.cmd.data_out.is_none() && s.cmd.expected_read_len > 0 && s.mrdsl_epoch != epoch
        })
    }

    /// A SNACK Tag for an R-Data SNACK: never 0 nor 0xffffffff (RFC 7143
    /// section 11.16.5); a session-wide counter keeps it unique per task.
    fn next_snack_tag(&mut self) -> u32 {
        self.snack_tag = match self.snack_tag.wrapping_add(1) {
            0 | RESERVED_TAG => 1,
            t => t,
        };
        self.snack_tag
    }

    /// Sends an R-Data SNACK for `itt` and rewinds the task to its last
    /// DataACK.
    pub(super) fn send_rdata_snack(&mut self, itt: u32) {
        let epoch = self.conn.mrdsl_epoch;
        let tag = self.next_snack_tag();
        let Some(s) = self.scsi_task(itt) else {
            return;
        };
        let lun = s.cmd.lun.to_u64();
        let read = s.read_bytes;
        s.mrdsl_epoch = epoch;
        let r = s.recovery.get_or_insert_with(Box::default);
        let (sn, offset) = r.acked.unwrap_or((Serial(0), 0));
        r.delivered = r.delivered.max(read);
        r.held = None;
        r.data_status = None;
        r.data_gap = true;
        s.next_data_sn = sn;
        s.read_bytes = offset;
        tracing::info!(target: "iscsi::erl", itt, tag, from = sn.0, offset, "our MaxRecvDataSegmentLength changed: R-Data SNACK (RFC 7143 section 11.16.3)");
        self.push_snack(w::SnackRequest {
            snack_type: w::SnackType::RData,
            lun,
            itt,
            ttt_or_snack_tag: tag,
            exp_stat_sn: Serial(0),
            beg_run: Serial(0),
            run_length: 0,
        });
    }
}
