//! NOP-Out and NOP-In on the target side (RFC 7143 sections 11.18 and
//! 11.19): the echo of an initiator's ping, and the target's own
//! keepalive ping.

use bytes::Bytes;

use super::session::{Session, NO_TAG};
use crate::wire::{NopIn, NopOut};

impl Session {
    pub(super) fn nop_out(&mut self, h: NopOut, data: Bytes) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.take_stat_sn();
        // RFC 7143 section 11.19: the NOP-In answering a NOP-Out echoes its
        // ping data (cut to the initiator's MaxRecvDataSegmentLength),
        // carries its ITT and TTT 0xffffffff.
        let data = data.slice(..data.len().min(self.peer_mrdsl as usize));
        self.push_pdu(
            NopIn {
                lun: h.lun,
                itt: h.itt,
                ttt: NO_TAG,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
            },
            data,
        );
    }

    /// A NOP-In ping (RFC 7143 section 11.19.2: ITT 0xffffffff, a valid
    /// TTT asking for an answer; StatSN is not advanced for it).
    pub(super) fn send_ping(&mut self, ttt: u32) {
        let (exp, max) = self.window_fields();
        self.push_pdu(
            NopIn {
                lun: 0,
                itt: NO_TAG,
                ttt,
                stat_sn: self.stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
            },
            Bytes::new(),
        );
    }
}
