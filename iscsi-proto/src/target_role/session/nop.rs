//! NOP-Out and NOP-In on the target side (RFC 7143 sections 11.18 and
//! 11.19): the echo of an initiator's ping, and the target's own
//! keepalive ping.

use crate::time::Instant;

use bytes::Bytes;

use super::{Phase, Session, NO_TAG};
use crate::target::event::CloseReason;
use crate::wire::{NopIn, NopOut};

impl Session {
    /// The keepalive timer: a NOP-In ping after the configured idle
    /// interval, and the connection dropped when a ping went unanswered.
    pub(in crate::target) fn keepalive(&mut self, now: Instant) {
        if self.conn.phase != Phase::FullFeature {
            return;
        }
        if let Some((_, deadline)) = self.conn.nop.ping {
            if now >= deadline {
                // RFC 7143 section 11.19: a NOP-In with a valid TTT asks for
                // a NOP-Out answer; none came in time, so the connection is
                // considered failed.
                self.connection_failed(CloseReason::NopTimeout);
            }
        } else if let Some(nop) = self.cfg.nop {
            let since = self.conn.nop.last_rx.unwrap_or(now);
            if now >= since + nop.interval {
                let ttt = self.new_ttt();
                self.conn.nop.ping = Some((ttt, now + nop.timeout));
                self.send_ping(ttt);
            }
        }
    }

    /// A NOP-Out with ITT 0xffffffff (RFC 7143 section 11.18: I=1, not a
    /// command): the answer to our ping when it echoes its TTT, else a
    /// bare ExpStatSN update. No response either way.
    pub(in crate::target) fn nop_out_unsolicited(&mut self, ttt: u32) {
        if ttt != NO_TAG {
            if let Some((ping, _)) = self.conn.nop.ping {
                if ping == ttt {
                    self.conn.nop.ping = None;
                }
            }
        }
    }

    /// A NOP-Out with a valid ITT: answered with a NOP-In.
    pub(in crate::target) fn nop_out(&mut self, h: NopOut, data: Bytes) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.conn.take_stat_sn();
        // RFC 7143 section 11.19: the NOP-In answering a NOP-Out echoes its
        // ping data (cut to the initiator's MaxRecvDataSegmentLength),
        // carries its ITT and TTT 0xffffffff.
        let data = data.slice(..data.len().min(self.conn.max_send_segment as usize));
        self.conn.push_pdu(
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
    pub(in crate::target) fn send_ping(&mut self, ttt: u32) {
        let (exp, max) = self.window_fields();
        self.conn.push_pdu(
            NopIn {
                lun: 0,
                itt: NO_TAG,
                ttt,
                stat_sn: self.conn.stat_sn(),
                exp_cmd_sn: exp,
                max_cmd_sn: max,
            },
            Bytes::new(),
        );
    }
}
