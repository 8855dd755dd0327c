//! ErrorRecoveryLevel 1: within-command and within-connection recovery
//! (RFC 7143 sections 7.1.4.1 and 7.1.4.2) by SNACK (section 11.16).
//!
//! Active only when ErrorRecoveryLevel >= 1 was negotiated (section
//! 13.20); at level 0 every rule here is a connection failure instead.
//!
//! - A **data digest error** (section 7.8: "When an initiator receives
//!   any iSCSI PDU with a payload digest error, it MUST discard the PDU")
//!   on a Data-In asks for it again with a Data SNACK; on a response
//!   (SCSI Response, Text Response, NOP-In reply) with a Status SNACK.
//!   Unsolicited PDUs (Async Message, Reject) need "no further action":
//!   their header, whose digest was good, is still acted on.
//! - A **sequence gap** (section 7.9) is a PDU lost before it: a DataSN
//!   gap asks for Data-In again (Data SNACK), an R2TSN gap for R2Ts (R2T
//!   SNACK), a StatSN gap for status (Status SNACK). Recovery is
//!   go-back-N: the SNACK asks for every PDU from the first missing one
//!   (RunLength 0, section 11.16), and the PDUs after the gap are
//!   discarded until the retransmission arrives, so data is always
//!   delivered in order. Duplicates are discarded ("it MUST discard the
//!   duplicates").
//! - A **SCSI Response that arrives before all its Data-In** (its
//!   ExpDataSN says more was sent) is held and not acknowledged: "it MUST
//!   NOT acknowledge the received responses that start from the StatSN of
//!   the relevant command, until it has completed receiving all the data
//!   PDUs of the command" (section 7.9).
//! - The **A bit** (section 11.7.2) is answered with a DataACK SNACK.
//! - A **Reject of a SNACK** (section 7.8): for data, the command ends
//!   with CHECK CONDITION and the sense "protocol service CRC error" when
//!   its status comes (or with the target's own CHECK CONDITION, "SNACK
//!   rejected"); for status, the status is lost and the session falls back
//!   to the ErrorRecoveryLevel 0 path (the connection is dropped).
//! - **Bounds**: Data and Status SNACKs still unanswered after
//!   `ErrorRecovery::snack_timeout` are sent again, up to
//!   `ErrorRecovery::snack_retries` rounds without progress; then the
//!   connection is dropped (`TimerKind::Snack`) and the level 0 path
//!   (session recovery, if configured) takes over. R2T SNACKs are never
//!   resent on a timeout (section 7.1.4.1: "an initiator SHOULD NOT
//!   originate a SNACK for an R2T based on its internal timeouts").
//!
//! A **header digest error** (section 7.8: "discard the header and all
//! data up to the beginning of a later PDU or close the connection")
//! skips the PDU by the length its header claims when the header found
//! there passes its own digest (`Connection::skip_bad_header`), else the
//! connection closes; the lost PDU then shows as a sequence gap.

use crate::prelude::*;
use crate::time::Instant;

use bytes::Bytes;

use super::*;
use crate::initiator::stat_sn::STAT_SN_AHEAD;

/// SCSI status CHECK CONDITION (SAM).
const CHECK_CONDITION: u8 = 0x02;

/// Per-task state of within-command recovery (boxed in the task: it is
/// allocated only once one of the task's PDUs is lost).
#[derive(Debug, Default)]
pub(super) struct TaskRecovery {
    /// A Data SNACK for every Data-In from the task's next DataSN is out:
    /// Data-In beyond that DataSN are discarded until it arrives.
    pub(super) data_gap: bool,
    /// An R2T SNACK for every R2T from the task's next R2TSN is out.
    r2t_gap: bool,
    /// A SCSI Response that came before all the Data-In it counts
    /// (ExpDataSN): neither acknowledged nor delivered until they are in.
    pub(super) held: Option<(w::ScsiResponse, Bytes)>,
    /// The StatSN of a discarded Data-In that carried the status: it comes
    /// back with the data, so no Status SNACK asks for it.
    pub(super) data_status: Option<Serial>,
    /// The target rejected our Data SNACK (RFC 7143 section 7.8): the read
    /// data cannot be complete.
    snack_rejected: bool,
    /// The last DataACK sent: its BegRun and the read offset then
    /// (`session/rdata.rs`: an R-Data SNACK resumes there).
    pub(super) acked: Option<(Serial, u32)>,
    /// Bytes already delivered to the application: resent data below this
    /// offset (after an R-Data SNACK) is not delivered again.
    pub(super) delivered: u32,
}

/// The sense data of "protocol service CRC error" (RFC 7143 section
/// 11.4.7.2: sense key ABORTED COMMAND, ASC/ASCQ 0x47/0x05), fixed format.
fn crc_error_sense() -> Bytes {
    let mut s = [0u8; 18];
    s[0] = 0x70;
    s[2] = 0x0b;
    s[7] = 10;
    s[12] = 0x47;
    s[13] = 0x05;
    Bytes::copy_from_slice(&s)
}

impl Session {
    /// The negotiated ErrorRecoveryLevel (0 before the login ends).
    pub(super) fn erl(&self) -> u8 {
        self.negotiated
            .as_ref()
            .map_or(0, |n| n.error_recovery_level)
    }

    pub(super) fn recovery_mut(&mut self, itt: u32) -> Option<&mut TaskRecovery> {
        let s = self.scsi_task(itt)?;
        Some(s.recovery.get_or_insert_with(Box::default))
    }

    fn recovery(&self, itt: u32) -> Option<&TaskRecovery> {
        match self.tasks.get(itt) {
            Some(Task {
                kind: Kind::Scsi(s),
                ..
            }) => s.recovery.as_deref(),
            _ => None,
        }
    }

    /// Whether a StatSN is accounted for by a task's recovery (held, or
    /// coming back with its Data-In): no Status SNACK for it.
    fn stat_sn_covered(&self, sn: Serial) -> bool {
        self.tasks.iter().any(|(_, t)| match &t.kind {
            Kind::Scsi(ScsiTask {
                recovery: Some(r), ..
            }) => {
                r.data_status == Some(sn) || r.held.as_ref().is_some_and(|(h, _)| h.stat_sn == sn)
            }
            _ => false,
        })
    }

    fn arm_snack_timer(&mut self, now: Instant) {
        if !self.timers.is_set(Timer::Snack) {
            let at = later(now, self.cfg.error_recovery.snack_timeout);
            self.timers.set(Timer::Snack, at);
        }
    }

    /// Something asked for arrived: the retry count starts again.
    fn snack_progress(&mut self) {
        self.snack_rounds = 0;
    }

    pub(super) fn push_snack(&mut self, snack: w::SnackRequest) {
        tracing::info!(target: "iscsi::erl", ?snack, "SNACK (RFC 7143 section 11.16)");
        self.conn.push_urgent(snack, Bytes::new());
    }

    /// Data/R2T SNACK for every Data-In (or R2T) of `itt` from `beg_run`
    /// (RFC 7143 section 11.16: RunLength 0 "all ... PDUs with numbers
    /// equal to or greater than BegRun").
    fn send_data_snack(&mut self, itt: u32, beg_run: Serial) {
        if self.needs_rdata(itt) {
            return self.send_rdata_snack(itt);
        }
        let Some(s) = self.scsi_task(itt) else {
            return;
        };
        let lun = s.cmd.lun.to_u64();
        // Section 11.16.3: the ITT of the referenced command; section
        // 11.16.4: TTT 0xffffffff except for DataACK and R-Data.
        self.push_snack(w::SnackRequest {
            snack_type: w::SnackType::DataR2t,
            lun,
            itt,
            ttt_or_snack_tag: RESERVED_TAG,
            exp_stat_sn: Serial(0),
            beg_run,
            run_length: 0,
        });
    }

    /// Status SNACK for `run_length` StatSNs from `beg_run` (RFC 7143
    /// section 11.16.3: ITT 0xffffffff).
    fn send_status_snack(&mut self, beg_run: Serial, run_length: u32) {
        self.push_snack(w::SnackRequest {
            snack_type: w::SnackType::Status,
            lun: 0,
            itt: RESERVED_TAG,
            ttt_or_snack_tag: RESERVED_TAG,
            exp_stat_sn: Serial(0),
            beg_run,
            run_length,
        });
    }

    /// DataACK for a Data-In with the A bit (RFC 7143 section 11.7.2):
    /// TTT and LUN copied from it (section 11.16.4), ITT 0xffffffff
    /// (section 11.16.3), BegRun the next DataSN expected (everything
    /// before it is acknowledged), RunLength 0.
    pub(super) fn send_data_ack(&mut self, h: &w::DataIn) {
        let Some(s) = self.scsi_task(h.itt) else {
            return;
        };
        let (beg_run, offset) = (s.next_data_sn, s.read_bytes);
        if let Some(r) = self.recovery_mut(h.itt) {
            r.acked = Some((beg_run, offset));
        }
        self.push_snack(w::SnackRequest {
            snack_type: w::SnackType::DataAck,
            lun: h.lun,
            itt: RESERVED_TAG,
            ttt_or_snack_tag: h.ttt,
            exp_stat_sn: Serial(0),
            beg_run,
            run_length: 0,
        });
    }

    /// Asks for the StatSNs missing in `[start, upto)` (not received ahead,
    /// not accounted for by a task), one Status SNACK per run.
    fn snack_missing_status(&mut self, start: Serial, upto: Serial) {
        // StatSNs of two connections never meet here (`status_snacked_on`);
        // should they, a run longer than any gap we accept is refused
        // rather than walked (it would be up to 2^31 serial numbers).
        if upto.0.wrapping_sub(start.0) > STAT_SN_AHEAD {
            return;
        }
        let mut sn = start;
        let mut run: Option<(Serial, u32)> = None;
        // Bounded: `upto` is at most STAT_SN_AHEAD past ExpStatSN.
        while sn.precedes(upto) {
            let missing = !self.conn.stat_sn.has_received(sn) && !self.stat_sn_covered(sn);
            run = match (run, missing) {
                (Some((b, n)), true) => Some((b, n.saturating_add(1))),
                (None, true) => Some((sn, 1)),
                (Some((b, n)), false) => {
                    self.send_status_snack(b, n);
                    None
                }
                (None, false) => None,
            };
            sn = sn.next();
        }
        if let Some((b, n)) = run {
            self.send_status_snack(b, n);
        }
    }

    /// `status_snacked` when it counts the StatSNs of the connection in
    /// `conn` (RFC 7143 section 4.2.2.2: StatSN is per connection).
    fn snacked_here(&self) -> Option<Serial> {
        self.status_snacked
            .filter(|_| self.status_snacked_on == self.swapped)
    }

    /// Status SNACKs asked up to `end` (exclusive) on the connection in
    /// `conn`.
    fn set_snacked(&mut self, end: Serial) {
        self.status_snacked = Some(end);
        self.status_snacked_on = self.swapped;
    }

    /// A PDU showed that StatSNs before `upto` were sent (RFC 7143 section
    /// 7.9: "an out of order StatSN that implies missing responses"): ask
    /// for those not yet asked for.
    pub(super) fn status_gap(&mut self, now: Instant, upto: Serial) {
        let exp = self.conn.exp_stat_sn();
        let ahead = upto.0.wrapping_sub(exp.0);
        if ahead == 0 || ahead > STAT_SN_AHEAD {
            return;
        }
        let start = match self.snacked_here() {
            Some(end) if exp.precedes(end) => end,
            _ => exp,
        };
        if !start.precedes(upto) {
            return;
        }
        self.snack_missing_status(start, upto);
        self.set_snacked(upto);
        self.arm_snack_timer(now);
    }

    /// After a status-bearing StatSN was acknowledged (at level 1).
    pub(super) fn after_stat_sn(&mut self, now: Instant, ack: StatSnAck, stat_sn: Serial) {
        match ack {
            StatSnAck::Early => self.status_gap(now, stat_sn),
            StatSnAck::Advanced => {
                if let Some(end) = self.snacked_here() {
                    self.snack_progress();
                    if !self.conn.exp_stat_sn().precedes(end) {
                        self.status_snacked = None;
                    }
                }
            }
            StatSnAck::Old => {}
        }
    }

    /// Data-In and SCSI Responses at level 1, before their StatSN is
    /// acknowledged: returns `true` when the PDU was dealt with here
    /// (discarded, or held).
    pub(super) fn erl1_intercept(&mut self, now: Instant, header: &Header, data: &Bytes) -> bool {
        match header {
            Header::DataIn(h) => {
                let Some(s) = self.scsi_task(h.itt) else {
                    return false;
                };
                let next = s.next_data_sn;
                if h.data_sn == next {
                    return false;
                }
                self.apply_window(h.exp_cmd_sn, h.max_cmd_sn);
                if h.data_sn.precedes(next) {
                    // RFC 7143 section 7.9: "duplicate DataSNs ... it MUST
                    // discard the duplicates".
                    tracing::debug!(target: "iscsi::erl", itt = h.itt, data_sn = h.data_sn.0, "duplicate Data-In discarded (RFC 7143 section 7.9)");
                    return true;
                }
                tracing::info!(target: "iscsi::erl", itt = h.itt, expected = next.0, received = h.data_sn.0, "DataSN gap (RFC 7143 section 7.9)");
                self.data_lost(now, h.itt, h.status.map(|st| st.stat_sn));
                true
            }
            Header::ScsiResponse(h) => self.maybe_hold(now, h, data),
            _ => false,
        }
    }

    /// A Data-In of `itt` at its next DataSN or beyond is lost (digest
    /// error or gap): ask for everything from the next DataSN, once.
    fn data_lost(&mut self, now: Instant, itt: u32, status: Option<Serial>) {
        let Some(next) = self.scsi_task(itt).map(|s| s.next_data_sn) else {
            return;
        };
        let Some(r) = self.recovery_mut(itt) else {
            return;
        };
        if status.is_some() {
            r.data_status = status;
        }
        if r.data_gap || r.snack_rejected {
            return;
        }
        r.data_gap = true;
        self.send_data_snack(itt, next);
        self.arm_snack_timer(now);
    }

    /// RFC 7143 section 7.9: a SCSI Response whose ExpDataSN counts Data-In
    /// not received is held, unacknowledged, and the data asked for.
    fn maybe_hold(&mut self, now: Instant, h: &w::ScsiResponse, data: &Bytes) -> bool {
        let Some(s) = self.scsi_task(h.itt) else {
            return false;
        };
        let reads = s.cmd.expected_read_len > 0;
        let missing = reads && s.next_data_sn.precedes(h.exp_data_sn);
        let (gap, rejected) = s
            .recovery
            .as_deref()
            .map_or((false, false), |r| (r.data_gap, r.snack_rejected));
        if rejected {
            // Section 7.8 (i): the target's own CHECK CONDITION ("SNACK
            // rejected") is the outcome; (ii) any other status is
            // discarded and the command ends with "protocol service CRC
            // error". Acknowledged either way.
            if h.status == CHECK_CONDITION {
                return false;
            }
            self.apply_window(h.exp_cmd_sn, h.max_cmd_sn);
            if let Ok(ack) = self.conn.stat_sn.ack(h.stat_sn) {
                self.after_stat_sn(now, ack, h.stat_sn);
            }
            self.complete_crc_error(h.itt);
            return true;
        }
        if !missing && !gap {
            return false;
        }
        self.apply_window(h.exp_cmd_sn, h.max_cmd_sn);
        tracing::info!(target: "iscsi::erl", itt = h.itt, stat_sn = h.stat_sn.0, exp_data_sn = h.exp_data_sn.0, "response before all its Data-In: held (RFC 7143 section 7.9)");
        if let Some(r) = self.recovery_mut(h.itt) {
            r.held = Some((*h, data.clone()));
        }
        self.data_lost(now, h.itt, None);
        true
    }

    /// After an in-order Data-In of `itt` at level 1: the gap (if any) is
    /// closed, and a held response whose data is now complete is
    /// acknowledged and delivered. Returns `true` when the task ended.
    pub(super) fn data_in_progress(&mut self, itt: u32, has_status: bool) -> bool {
        let Some(s) = self.scsi_task(itt) else {
            return true;
        };
        let next = s.next_data_sn;
        let Some(r) = s.recovery.as_deref_mut() else {
            return false;
        };
        if r.data_gap {
            r.data_gap = false;
            if has_status {
                r.data_status = None;
            }
            self.snack_progress();
        }
        let Some(r) = self.recovery_mut(itt) else {
            return false;
        };
        let complete = r
            .held
            .as_ref()
            .is_some_and(|(h, _)| !next.precedes(h.exp_data_sn));
        if !complete {
            return false;
        }
        let Some((h, data)) = r.held.take() else {
            return false;
        };
        self.release_held(h, data);
        true
    }

    /// Acknowledges and delivers a held response.
    fn release_held(&mut self, h: w::ScsiResponse, data: Bytes) {
        // Acknowledged now that the data is complete (section 7.9). Early
        // or old cannot end the session here: a held StatSN was within
        // STAT_SN_AHEAD when it arrived.
        if let Ok(StatSnAck::Advanced) = self.conn.stat_sn.ack(h.stat_sn) {
            if self
                .snacked_here()
                .is_some_and(|end| !self.conn.exp_stat_sn().precedes(end))
            {
                self.status_snacked = None;
            }
        }
        if self.snack_was_rejected(h.itt) && h.status != CHECK_CONDITION {
            self.complete_crc_error(h.itt);
        } else if let Err(e) = self.on_scsi_response(h, data) {
            tracing::warn!(target: "iscsi::erl", error = %e, "held response");
        }
    }

    /// Whether the target rejected a Data SNACK of `itt`.
    pub(super) fn snack_was_rejected(&self, itt: u32) -> bool {
        self.recovery(itt).is_some_and(|r| r.snack_rejected)
    }

    /// RFC 7143 section 7.8 (ii): the initiator signals "the completion
    /// with CHECK CONDITION Status and an iSCSI Condition of 'protocol
    /// service CRC error'".
    pub(super) fn complete_crc_error(&mut self, itt: u32) {
        let bytes_read = self.scsi_task(itt).map_or(0, |s| s.read_bytes);
        let sense = crc_error_sense();
        let sense_data = SenseData::parse(&sense).ok();
        self.complete(
            itt,
            TaskOutcome::Scsi(ScsiResult {
                response: w::ScsiResponseCode::CommandCompleted,
                status: CHECK_CONDITION,
                sense: Some(sense),
                sense_data,
                residual: w::Residual::None,
                bidi_read_residual: w::Residual::None,
                bytes_read,
            }),
        );
    }

    /// R2T numbering at level 1 (RFC 7143 section 7.9): returns `true`
    /// when the R2T was dealt with here (a duplicate dropped, or one
    /// beyond a gap dropped after asking for the missing ones).
    pub(super) fn erl1_r2t_sequence(&mut self, h: &w::R2t, next: Serial) -> bool {
        if h.r2t_sn == next {
            if let Some(r) = self.recovery_mut(h.itt).filter(|r| r.r2t_gap) {
                r.r2t_gap = false;
                self.snack_progress();
            }
            return false;
        }
        if h.r2t_sn.precedes(next) {
            // "duplicate R2TSNs (due to proactive retransmission of R2Ts
            // by the target) ... it MUST discard the duplicates".
            tracing::debug!(target: "iscsi::erl", itt = h.itt, r2t_sn = h.r2t_sn.0, "duplicate R2T discarded (RFC 7143 section 7.9)");
            return true;
        }
        tracing::info!(target: "iscsi::erl", itt = h.itt, expected = next.0, received = h.r2t_sn.0, "R2TSN gap (RFC 7143 section 7.9)");
        let Some(r) = self.recovery_mut(h.itt) else {
            return true;
        };
        if !r.r2t_gap {
            r.r2t_gap = true;
            self.send_data_snack(h.itt, next);
        }
        true
    }

    /// A PDU failed its data digest at level 1 (RFC 7143 section 7.8); its
    /// header (`bhs`, digest good) says what was lost.
    pub(super) fn on_data_digest_error(
        &mut self,
        now: Instant,
        bhs: Option<Bytes>,
        err: WireError,
    ) -> Result<(), ConnectionError> {
        let Some(header) = bhs.and_then(|b| Header::parse_bytes(&b).ok()) else {
            return Err(ConnectionError::DigestFailure(err));
        };
        tracing::warn!(target: "iscsi::erl", ?header, "data digest error: PDU discarded (RFC 7143 section 7.8)");
        match header {
            Header::DataIn(h) => {
                self.apply_window(h.exp_cmd_sn, h.max_cmd_sn);
                let next = self.scsi_task(h.itt).map(|s| s.next_data_sn);
                if next.is_some_and(|n| !h.data_sn.precedes(n)) {
                    self.data_lost(now, h.itt, h.status.map(|st| st.stat_sn));
                }
                Ok(())
            }
            // "If the discarded PDU is a response PDU, the initiator MUST
            // ... a) Request PDU retransmission with a status SNACK."
            Header::ScsiResponse(w::ScsiResponse {
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                ..
            })
            | Header::TextResponse(w::TextResponse {
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                ..
            }) => {
                self.apply_window(exp_cmd_sn, max_cmd_sn);
                self.status_lost(now, stat_sn);
                Ok(())
            }
            Header::NopIn(h) if h.itt != RESERVED_TAG => {
                self.apply_window(h.exp_cmd_sn, h.max_cmd_sn);
                self.status_lost(now, h.stat_sn);
                Ok(())
            }
            // "No further action is necessary for initiators if the
            // discarded PDU is an unsolicited PDU (e.g., Async, Reject)":
            // the header is acted on without its data segment.
            h @ (Header::AsyncMessage(_) | Header::Reject(_) | Header::NopIn(_)) => {
                self.on_pdu(now, Pdu::new(h, Bytes::new()))
            }
            _ => Err(ConnectionError::DigestFailure(err)),
        }
    }

    /// The response with `stat_sn` was discarded: ask for it (and for any
    /// missing before it).
    fn status_lost(&mut self, now: Instant, stat_sn: Serial) {
        let exp = self.conn.exp_stat_sn();
        if stat_sn.precedes(exp) || self.conn.stat_sn.has_received(stat_sn) {
            return;
        }
        self.status_gap(now, stat_sn);
        if self
            .snacked_here()
            .is_none_or(|end| end.precedes_or_eq(stat_sn))
        {
            self.send_status_snack(stat_sn, 1);
            self.set_snacked(stat_sn.next());
        }
        self.arm_snack_timer(now);
    }

    /// A Reject whose data segment is one of our SNACKs (RFC 7143 section
    /// 7.8: "reject the SNACK with a Reject PDU with a reason code of
    /// 'SNACK reject'").
    pub(super) fn on_snack_rejected(
        &mut self,
        now: Instant,
        reason: w::RejectReason,
        data: &Bytes,
    ) -> Result<(), ConnectionError> {
        let snack = match data.get(..BHS_LEN).map(Header::parse_bytes) {
            Some(Ok(Header::SnackRequest(s))) => s,
            _ => return Ok(()),
        };
        tracing::warn!(target: "iscsi::erl", ?reason, ?snack, "SNACK rejected (RFC 7143 section 7.8)");
        match snack.snack_type {
            w::SnackType::DataR2t => {
                let Some(r) = self.recovery_mut(snack.itt) else {
                    return Ok(());
                };
                r.snack_rejected = true;
                let held = r.held.take();
                let data_status = r.data_status.take();
                if let Some((h, d)) = held {
                    // Status already here: (ii), ends now.
                    self.release_held(h, d);
                } else if let Some(sn) = data_status {
                    // The status went with a discarded Data-In: ask for it
                    // alone, then discard it (ii).
                    self.status_lost(now, sn);
                }
                Ok(())
            }
            // A lost response the target cannot resend: only the
            // ErrorRecoveryLevel 0 path is left.
            w::SnackType::Status => Err(violation(
                "Status SNACK rejected: a response is lost",
                "7.8",
            )),
            _ => Ok(()),
        }
    }

    /// [`Timer::Snack`]: SNACKs still unanswered are sent again, or after
    /// `snack_retries` rounds without progress the connection is dropped.
    pub(super) fn snack_timeout(&mut self, now: Instant) {
        self.timers.stop(Timer::Snack);
        let first = self.conn.cid;
        let data: Vec<(u32, Serial, Option<u16>)> = self
            .tasks
            .iter()
            .filter_map(|(itt, t)| match &t.kind {
                Kind::Scsi(ScsiTask {
                    recovery: Some(r),
                    next_data_sn,
                    ..
                // RFC 7143 section 11.16 (RunLength 0: every Data-In from
                // BegRun) and 7.1.4.1: the run asked for ends with the
                // Data-In carrying the status; while that status has not
                // come back (`data_status`) the run is unanswered even when
                // its first PDUs arrived in order, so it is asked for again.
                }) if (r.data_gap || r.data_status.is_some()) && !r.snack_rejected => {
                    Some((itt, *next_data_sn, t.allegiance.filter(|c| *c != first)))
                }
                _ => None,
            })
            .collect();
        // The Status SNACK run counts the StatSNs of the connection it was
        // asked on (section 4.2.2.2: StatSN is per connection).
        let on = self.status_snacked_on;
        let pending = |s: &Self| s.status_snacked.map(|end| (s.conn.exp_stat_sn(), end));
        let status = match on {
            None => pending(self),
            Some(cid) => self.on_connection(cid, |s| pending(s)).flatten(),
        }
        .filter(|(exp, end)| exp.precedes(*end));
        if data.is_empty() && status.is_none() {
            self.status_snacked = None;
            self.snack_rounds = 0;
            return;
        }
        if self.snack_rounds >= self.cfg.error_recovery.snack_retries {
            tracing::warn!(target: "iscsi::erl", rounds = self.snack_rounds, "SNACKs unanswered: falling back to connection failure (ErrorRecoveryLevel 0 path)");
            self.fail_connection(now, ConnectionError::TimedOut(TimerKind::Snack));
            return;
        }
        self.snack_rounds = self.snack_rounds.saturating_add(1);
        // Section 4.2.5.1: "Retransmission requests (SNACK PDUs) and the
        // data and status that they generate MUST also use the same
        // connection" as the command.
        for (itt, next, cid) in data {
            match cid {
                None => self.send_data_snack(itt, next),
                Some(cid) => {
                    let _ = self.on_connection(cid, |s| s.send_data_snack(itt, next));
                }
            }
        }
        if let Some((exp, end)) = status {
            match on {
                None => self.snack_missing_status(exp, end),
                Some(cid) => {
                    let _ = self.on_connection(cid, |s| s.snack_missing_status(exp, end));
                }
            }
        }
        self.arm_snack_timer(now);
    }
}
