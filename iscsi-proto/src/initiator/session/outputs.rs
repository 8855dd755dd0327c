//! (D) Outputs to the driver: PDUs to send, events for the application,
//! the next deadline; and the stamping of what is known only when a PDU
//! leaves.

use crate::time::Instant;

use super::*;

impl Session {
    // ------------------------------------------------------------------
    // (D) outputs
    // ------------------------------------------------------------------

    /// The next PDU to send, encoded. ExpStatSN is stamped now, so it is
    /// always the latest.
    #[must_use = "a PDU taken from the session must be sent"]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.tick(now);
        loop {
            let out = self.conn.pop()?;
            if let Some((itt, ends_seq)) = out.data_out {
                let Some(task) = self.tasks.get_mut(itt) else {
                    // The task completed (or was aborted): its remaining
                    // Data-Out is moot.
                    continue;
                };
                if ends_seq {
                    if let Kind::Scsi(s) = &mut task.kind {
                        s.outstanding_r2t = s.outstanding_r2t.saturating_sub(1);
                    }
                }
            }
            let OutPdu {
                mut header,
                ahs,
                data,
                digests,
                ..
            } = out;
            self.stamp(&mut header);
            match self.conn.encode(&header, &ahs, data, digests) {
                Ok(t) => return Some(t),
                Err(e) => {
                    // submit() refuses what cannot be encoded, so this is a
                    // bug; still, a PDU is never dropped silently: the
                    // connection ends with the reason.
                    debug_assert!(false, "unencodable PDU: {e}");
                    self.fail_connection(now, ConnectionError::Encode(e));
                    self.after_action(now);
                    return None;
                }
            }
        }
    }

    /// The next event.
    #[must_use = "events carry task completions and connection requests"]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest deadline: call `handle_timeout` then. Computed from the
    /// [`Timer`]s that count in the current state.
    #[must_use = "the session needs handle_timeout at this deadline"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout()
    }

    // ------------------------------------------------------------------
    // internals
    // ------------------------------------------------------------------

    /// Fills in what is known only when a PDU leaves (RFC 7143 section
    /// 4.2.2.2: ExpStatSN, so it is always the latest; section 4.2.2.1: the
    /// CmdSN of immediate commands) and records where each task's command
    /// went (its connection allegiance).
    fn stamp(&mut self, header: &mut Header) {
        let exp = self.conn.exp_stat_sn();
        // RFC 7143 section 4.2.2.1: an immediate command carries "the
        // current CmdSN", the number of the next non-immediate command
        // not yet sent.
        let queued = self
            .conn
            .queued_numbered
            .saturating_add(self.numbered_elsewhere());
        let current = self.window.cmd_sn().minus(queued);
        let cid = self.conn.cid;
        let command_itt = match header {
            Header::NopOut(h) => {
                h.exp_stat_sn = exp;
                h.cmd_sn = current;
                Some(h.itt)
            }
            Header::ScsiCommand(h) => {
                h.exp_stat_sn = exp;
                if h.immediate {
                    h.cmd_sn = current;
                }
                if let Some(t) = self.tasks.get_mut(h.itt) {
                    t.sent = true;
                    t.allegiance = Some(cid);
                }
                None
            }
            Header::TaskMgmtRequest(h) => {
                h.exp_stat_sn = exp;
                h.cmd_sn = current;
                Some(h.itt)
            }
            Header::LoginRequest(h) => {
                h.exp_stat_sn = exp;
                None
            }
            Header::TextRequest(h) => {
                h.exp_stat_sn = exp;
                Some(h.itt)
            }
            Header::DataOut(h) => {
                h.exp_stat_sn = exp;
                None
            }
            Header::LogoutRequest(h) => {
                h.exp_stat_sn = exp;
                h.cmd_sn = current;
                // A connection logout is not the task's command: no
                // allegiance to record.
                (!matches!(
                    self.tasks.get(h.itt).map(|t| &t.kind),
                    Some(Kind::ConnLogout { .. })
                ))
                .then_some(h.itt)
            }
            Header::SnackRequest(h) => {
                h.exp_stat_sn = exp;
                None
            }
            _ => None,
        };
        if let Some(t) = command_itt.and_then(|itt| self.tasks.get_mut(itt)) {
            t.allegiance = Some(cid);
        }
    }
}
