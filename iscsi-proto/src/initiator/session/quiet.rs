//! ErrorRecoveryLevel >= 1: a lost PDU that nothing follows.
//!
//! Sequence gaps (`session/erl1.rs`) find a lost PDU only when a later one
//! arrives. When the lost PDU is the last the target sends (the Data-In
//! carrying a read's status, a SCSI Response), the connection goes quiet
//! and nothing shows the loss. RFC 7143 section 7.1.4.1: "At the
//! initiator, the following cases lend themselves to within-command
//! recovery: Lost data PDU or lost R2T - realized through one of the
//! following: ... b) Sequence reception timeout (no status) or response
//! reception timeout - dealt with as specified in Section 7.9, using the
//! option of a SNACK."
//!
//! The "response reception timeout" here is [`Timer::Quiet`]: nothing
//! received for `ErrorRecovery::snack_timeout` while a SCSI command sent on
//! the connection is unanswered. It sends a NOP-Out ping (section 11.18,
//! ITT valid, immediate). Its answer "will always contain the next StatSN"
//! (section 11.19.2): when that StatSN is past ExpStatSN, the responses in
//! between were lost (section 7.1.4.2: "receiving a Response PDU with a
//! higher StatSN than expected") and the ordinary StatSN-gap path asks for
//! them with a Status SNACK (section 11.16.1). The target keeps a Data-In
//! that carried status as the numbered response it is, so the SNACK brings
//! that Data-In back, and a DataSN gap behind it (more lost Data-In) then
//! takes the Data SNACK path.
//!
//! A slow target (nothing lost) answers with no gap: nothing more is done,
//! and one ping goes out per quiet period while status is owed. An
//! unanswered ping drops the connection (the ErrorRecoveryLevel 0 path)
//! after the keepalive timeout, or `snack_timeout` times `snack_retries`
//! without a keepalive configured.

use crate::time::Instant;

use super::*;

impl Session {
    /// A command went out at level >= 1: watch for a quiet connection from
    /// now, unless already watching.
    pub(super) fn quiet_arm(&mut self, now: Instant) {
        if self.erl() >= 1 && !self.timers.is_set(Timer::Quiet) {
            let at = later(now, self.cfg.error_recovery.snack_timeout);
            self.timers.set(Timer::Quiet, at);
        }
    }

    /// A PDU arrived: the quiet period counts from now (when watching).
    pub(super) fn quiet_restart(&mut self, now: Instant) {
        if self.timers.is_set(Timer::Quiet) {
            let at = later(now, self.cfg.error_recovery.snack_timeout);
            self.timers.set(Timer::Quiet, at);
        }
    }

    /// Whether a SCSI command sent on the first connection is unanswered
    /// (its response, or the Data-In carrying its status, is owed).
    fn status_owed(&self) -> bool {
        let cid = self.conn.cid;
        self.tasks
            .iter()
            .any(|(_, t)| t.sent && t.allegiance == Some(cid) && matches!(t.kind, Kind::Scsi(_)))
    }

    /// [`Timer::Quiet`] passed.
    pub(super) fn quiet_timeout(&mut self, now: Instant) {
        if self.erl() == 0 || !self.is_logged_in() || !self.status_owed() {
            // Nothing owed: stop watching until the next command.
            self.timers.stop(Timer::Quiet);
            return;
        }
        let er = self.cfg.error_recovery;
        let at = later(now, er.snack_timeout);
        self.timers.set(Timer::Quiet, at);
        if self.timers.is_set(Timer::Snack) || self.timers.is_set(Timer::Ping) {
            // SNACKs out are resent on their own timer; a ping is out.
            return;
        }
        // `armed` keeps this timer off while a ping is out.
        let timeout = match self.cfg.keepalive {
            Some(ka) => ka.timeout,
            None => er
                .snack_timeout
                .saturating_mul(u32::from(er.snack_retries.max(1))),
        };
        tracing::info!(target: "iscsi::erl", ?timeout, "quiet while status is owed: NOP-Out ping (RFC 7143 sections 7.1.4.1, 11.19.2)");
        self.send_keepalive(now, timeout);
    }
}
