//! The connection's status numbering: ExpStatSN and the StatSNs that
//! arrived ahead of it.
//!
//! RFC 7143 section 4.2.2.2 (Response/Status Numbering and
//! Acknowledging): "Responses in transit from the target to the initiator
//! are numbered. The StatSN (Status Sequence Number) is used for this
//! purpose. StatSN is a counter maintained per connection. ExpStatSN is
//! used by the initiator to acknowledge status." StatSN is per connection,
//! so each [`Connection`](super::connection::Connection) owns one
//! [`StatSnTracker`]. All arithmetic is RFC 1982 serial arithmetic with
//! SERIAL_BITS = 32.

use crate::error::ProtocolError;
use crate::wire::Serial;

/// How far ahead of ExpStatSN a StatSN may arrive before the connection is
/// considered failed (RFC 7143 section 4.2.2.2: "Initiators MUST undertake
/// recovery actions if the difference is greater than an implementation-
/// defined constant that MUST NOT exceed 2**31-1"). istgt sends a Task
/// Management Function Response after status it numbered later, so a
/// StatSN a little ahead is normal.
pub const STAT_SN_AHEAD: u32 = 64;

/// What acknowledging one StatSN did (see [`StatSnTracker::ack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatSnAck {
    /// It was ExpStatSN: ExpStatSN advanced past it and past any StatSN
    /// that had arrived early right after it.
    Advanced,
    /// Older than ExpStatSN (already acknowledged): ignored.
    Old,
    /// Ahead of ExpStatSN by at most [`STAT_SN_AHEAD`]: remembered until
    /// the gap before it fills.
    Early,
}

/// ExpStatSN of one connection, with a 64-bit map of the StatSNs received
/// ahead of it (bit k stands for ExpStatSN + 1 + k).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatSnTracker {
    exp_stat_sn: Serial,
    ahead: u64,
}

impl StatSnTracker {
    /// A tracker for a connection that has not heard from the target yet:
    /// ExpStatSN 0 (RFC 7143 section 11.12.9: in the first Login Request
    /// of a connection the field "is only valid if the Login Request
    /// restarts a connection").
    pub fn new() -> Self {
        StatSnTracker::default()
    }

    /// The ExpStatSN the next PDU carries.
    pub fn exp_stat_sn(&self) -> Serial {
        self.exp_stat_sn
    }

    /// Starts the numbering from the StatSN of a successful Login Response
    /// (RFC 7143 section 11.13.4: for the first one "this is the starting
    /// status sequence number for the connection"; section 4.2.2.2:
    /// ExpStatSN acknowledges it). Early status is forgotten.
    pub fn start(&mut self, stat_sn: Serial) {
        self.exp_stat_sn = stat_sn.next();
        self.ahead = 0;
    }

    /// Whether `stat_sn` arrived ahead of ExpStatSN and is remembered
    /// (a second copy of it is a duplicate, RFC 7143 section 7.9).
    pub fn has_received(&self, stat_sn: Serial) -> bool {
        let ahead = stat_sn.0.wrapping_sub(self.exp_stat_sn.0);
        (1..=STAT_SN_AHEAD).contains(&ahead) && self.ahead & (1u64 << (ahead - 1)) != 0
    }

    /// Acknowledges a status-bearing StatSN (RFC 7143 section 4.2.2.2): in
    /// order it advances ExpStatSN (past any StatSN that arrived early); an
    /// old one is ignored; one up to [`STAT_SN_AHEAD`] ahead is remembered
    /// until the gap before it fills; a larger jump means lost status,
    /// reported as [`ProtocolError::StatSnGap`] (a connection failure at
    /// ErrorRecoveryLevel 0) and leaving the state unchanged.
    pub fn ack(&mut self, stat_sn: Serial) -> Result<StatSnAck, ProtocolError> {
        let ahead = stat_sn.0.wrapping_sub(self.exp_stat_sn.0);
        if ahead == 0 {
            self.exp_stat_sn = stat_sn.next();
            // Bit 0 now stands for the new ExpStatSN itself.
            loop {
                let received = self.ahead & 1 != 0;
                self.ahead >>= 1;
                if !received {
                    break;
                }
                self.exp_stat_sn = self.exp_stat_sn.next();
            }
            Ok(StatSnAck::Advanced)
        } else if stat_sn.precedes(self.exp_stat_sn) {
            Ok(StatSnAck::Old)
        } else if ahead <= STAT_SN_AHEAD {
            self.ahead |= 1u64 << (ahead - 1);
            Ok(StatSnAck::Early)
        } else {
            Err(ProtocolError::StatSnGap {
                expected: self.exp_stat_sn.0,
                received: stat_sn.0,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(first: u32) -> StatSnTracker {
        let mut t = StatSnTracker::new();
        t.start(Serial(first));
        t
    }

    /// Section 4.2.2.2: "ExpStatSN is used by the initiator to acknowledge
    /// status": it names the next StatSN expected, one past the last
    /// status received in order.
    #[test]
    fn in_order_status_advances_exp_stat_sn() {
        let mut t = started(0x100);
        assert_eq!(t.exp_stat_sn(), Serial(0x101));
        assert_eq!(t.ack(Serial(0x101)), Ok(StatSnAck::Advanced));
        assert_eq!(t.ack(Serial(0x102)), Ok(StatSnAck::Advanced));
        assert_eq!(t.exp_stat_sn(), Serial(0x103));
    }

    /// Status that arrives early is held until the gap before it fills;
    /// ExpStatSN then jumps past all of it at once.
    #[test]
    fn early_status_fills_in() {
        let mut t = started(9);
        assert_eq!(t.ack(Serial(12)), Ok(StatSnAck::Early));
        assert_eq!(t.ack(Serial(11)), Ok(StatSnAck::Early));
        assert_eq!(t.exp_stat_sn(), Serial(10));
        assert_eq!(t.ack(Serial(10)), Ok(StatSnAck::Advanced));
        assert_eq!(t.exp_stat_sn(), Serial(13));
    }

    /// A repeated (already acknowledged) StatSN changes nothing.
    #[test]
    fn old_status_is_ignored() {
        let mut t = started(5);
        assert_eq!(t.ack(Serial(6)), Ok(StatSnAck::Advanced));
        assert_eq!(t.ack(Serial(6)), Ok(StatSnAck::Old));
        assert_eq!(t.ack(Serial(2)), Ok(StatSnAck::Old));
        assert_eq!(t.exp_stat_sn(), Serial(7));
    }

    /// Section 4.2.2.2: "Initiators MUST undertake recovery actions if the
    /// difference is greater than an implementation-defined constant": up
    /// to STAT_SN_AHEAD is a gap that may still fill, beyond it is lost
    /// status.
    #[test]
    fn a_large_gap_is_an_error() {
        let mut t = started(0);
        let last_ok = Serial(1).plus(STAT_SN_AHEAD);
        assert_eq!(t.ack(last_ok), Ok(StatSnAck::Early));
        let too_far = last_ok.next();
        assert_eq!(
            t.ack(too_far),
            Err(ProtocolError::StatSnGap {
                expected: 1,
                received: too_far.0,
            })
        );
        assert_eq!(t.exp_stat_sn(), Serial(1));
    }

    /// StatSN is RFC 1982 serial arithmetic: numbering wraps at 2^32.
    #[test]
    fn wraps_at_2_pow_32() {
        let mut t = started(0xffff_fffe);
        assert_eq!(t.exp_stat_sn(), Serial(0xffff_ffff));
        assert_eq!(t.ack(Serial(0)), Ok(StatSnAck::Early));
        assert_eq!(t.ack(Serial(0xffff_ffff)), Ok(StatSnAck::Advanced));
        assert_eq!(t.exp_stat_sn(), Serial(1));
        assert_eq!(t.ack(Serial(0xffff_fff0)), Ok(StatSnAck::Old));
    }

    /// A new Login Response restarts the numbering and forgets early status
    /// of the old connection.
    #[test]
    fn start_forgets_early_status() {
        let mut t = started(0);
        assert_eq!(t.ack(Serial(3)), Ok(StatSnAck::Early));
        t.start(Serial(40));
        assert_eq!(t.exp_stat_sn(), Serial(41));
        assert_eq!(t.ack(Serial(41)), Ok(StatSnAck::Advanced));
        assert_eq!(t.exp_stat_sn(), Serial(42));
    }
}
