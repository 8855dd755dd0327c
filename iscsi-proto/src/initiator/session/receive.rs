//! Full Feature Phase, receive side: the StatSN acknowledgement and the
//! CmdSN window update every target PDU carries (applied once, in
//! `Session::on_pdu`, before the PDU's handler runs), then one handler
//! per target PDU (RFC 7143 section 11).

use crate::prelude::*;
use crate::time::Instant;

use bytes::Bytes;

use super::*;

impl Session {
    pub(super) fn on_pdu(&mut self, now: Instant, pdu: Pdu) -> Result<(), ConnectionError> {
        if self.conn.is_logging_in() {
            return self.on_login_pdu(now, pdu);
        }
        let Pdu { header, data, .. } = pdu;
        tracing::trace!(target: "iscsi::pdu", ?header, len = data.len(), "received");
        let erl1 = self.erl() >= 1;
        // ErrorRecoveryLevel 1 (`session/erl1.rs`): Data-In beyond a
        // DataSN gap, duplicates, and a response whose data is incomplete
        // are handled there, before their StatSN is acknowledged.
        if erl1 && self.erl1_intercept(now, &header, &data) {
            return Ok(());
        }
        if let Some(n) = numbering(&header) {
            let mut duplicate = false;
            // RFC 7143 section 4.2.2.2: status acknowledged through
            // ExpStatSN on this connection; section 4.2.2.1: the
            // session's window from ExpCmdSN/MaxCmdSN.
            if let Some(stat_sn) = n.stat_sn {
                // RFC 7143 section 7.9: duplicates (answers to a SNACK
                // for status that arrived after all) are discarded.
                if erl1 && self.conn.stat_sn.has_received(stat_sn) {
                    duplicate = true;
                } else {
                    let ack = self
                        .conn
                        .stat_sn
                        .ack(stat_sn)
                        .map_err(ConnectionError::Protocol)?;
                    if erl1 {
                        duplicate = ack == StatSnAck::Old;
                        self.after_stat_sn(now, ack, stat_sn);
                    }
                }
            } else if erl1 {
                if let Some(next) = next_stat_sn(&header) {
                    self.status_gap(now, next);
                }
            }
            self.apply_window(n.exp_cmd_sn, n.max_cmd_sn);
            if duplicate {
                tracing::debug!(target: "iscsi::erl", ?header, "duplicate status discarded (RFC 7143 section 7.9)");
                return Ok(());
            }
        }
        match header {
            Header::NopIn(h) => self.on_nop_in(h, data),
            Header::ScsiResponse(h) => self.on_scsi_response(h, data),
            Header::DataIn(h) => self.on_data_in(h, data),
            Header::R2t(h) => self.on_r2t(h),
            Header::TaskMgmtResponse(h) => {
                if let Some(Task {
                    kind: Kind::Tmf { function, affected },
                    ..
                }) = self.tasks.get_mut(h.itt)
                {
                    let (function, affected) = (*function, core::mem::take(affected));
                    if function == w::TmfFunction::TaskReassign {
                        // ErrorRecoveryLevel 2 (`session/erl2.rs`).
                        self.on_reassigned(h.itt, &affected, h.response);
                        return Ok(());
                    }
                    // RFC 7143 section 11.6.1: "Function complete" means the
                    // affected tasks are gone at the target; any that had
                    // not completed yet end here, exactly once.
                    if h.response == w::TmfResponse::FunctionComplete {
                        for itt in affected {
                            // A command the per-task timeout aborted
                            // reports the timeout, not an abort the
                            // application asked for.
                            let err = match self.tasks.get(itt) {
                                Some(t) if t.escalation > 0 => TaskError::TimedOut,
                                _ => TaskError::Aborted(function),
                            };
                            self.complete(itt, TaskOutcome::Failed(err));
                        }
                    } else {
                        // Not aborted: the tasks go on and will be answered.
                        for itt in affected {
                            if let Some(t) = self.tasks.get_mut(itt) {
                                t.abort_pending = false;
                            }
                        }
                    }
                    self.complete(h.itt, TaskOutcome::TaskManagement(h.response));
                }
                Ok(())
            }
            Header::TextResponse(h) => self.on_text_response(h, data),
            Header::LogoutResponse(h)
                if matches!(
                    self.tasks.get(h.itt).map(|t| &t.kind),
                    Some(Kind::ConnLogout { .. })
                ) =>
            {
                self.on_conn_logout(now, h.itt, h.response);
                Ok(())
            }
            Header::LogoutResponse(h) => {
                if matches!(
                    self.tasks.get(h.itt),
                    Some(Task {
                        kind: Kind::Logout,
                        ..
                    })
                ) {
                    let result = LogoutResult {
                        response: h.response,
                        time2wait: h.time2wait,
                        time2retain: h.time2retain,
                        answered: true,
                    };
                    tracing::info!(target: "iscsi::login", response = ?h.response, "logged out");
                    self.logged_out(now, result);
                    Ok(())
                } else {
                    Err(violation(
                        "Logout Response without a Logout Request",
                        "11.15",
                    ))
                }
            }
            Header::AsyncMessage(h) => self.on_async(now, h, data),
            Header::Reject(h) if data.first().is_some_and(|b| b & 0x3f == 0x10) => {
                // A Reject of our SNACK (RFC 7143 section 7.8, reason
                // "SNACK reject"): `session/erl1.rs`.
                self.on_snack_rejected(now, h.reason, &data)
            }
            Header::Reject(h) => {
                // RFC 7143 section 11.17: the data segment holds the
                // header of the rejected PDU; its ITT names the task.
                let itt = data
                    .get(16..)
                    .and_then(|b| b.first_chunk::<4>())
                    .map(|b| u32::from_be_bytes(*b))
                    .unwrap_or(RESERVED_TAG);
                let first = data.first().copied().unwrap_or(0);
                let opcode = first & 0x3f;
                let immediate = first & 0x40 != 0;
                // Command PDUs (RFC 7143 section 11.2.1.2): NOP-Out, SCSI
                // Command, Task Management, Text, Logout. Data-Out and
                // SNACK are not.
                let is_command = matches!(opcode, 0x00 | 0x01 | 0x02 | 0x04 | 0x06);
                tracing::warn!(target: "iscsi::session", reason = ?h.reason, opcode, itt, "Reject received (RFC 7143 section 11.17)");
                if itt != RESERVED_TAG && self.tasks.get(itt).is_some() && !is_command {
                    // RFC 7143 section 7.3: "Targets MUST NOT implicitly
                    // terminate an active task by sending a Reject PDU for
                    // any PDU exchanged during the life of the task"; the
                    // initiator "can eventually expect a response". The
                    // task (and its remaining Data-Out) goes on.
                } else if itt != RESERVED_TAG && self.tasks.get(itt).is_some() {
                    if matches!(self.tasks.get(itt).map(|t| &t.kind), Some(Kind::Logout)) {
                        self.logout_sent = false;
                        self.timers.stop(Timer::Logout);
                    }
                    if !immediate && matches!(opcode, 0x01 | 0x04) {
                        self.plug_cmd_sn_gap(itt);
                    }
                    self.complete(itt, TaskOutcome::Failed(TaskError::Rejected(h.reason)));
                } else {
                    self.events.push_back(Event::Rejected { reason: h.reason });
                }
                Ok(())
            }
            Header::LoginResponse(_) => {
                Err(violation("Login Response in Full Feature Phase", "11.13"))
            }
            // Initiator opcodes from the target: RFC 7143 section 11.2.1.2
            // "targets MUST NOT use initiator opcodes".
            _ => Err(ConnectionError::Protocol(ProtocolError::Violation {
                rule: "initiator opcode sent by the target",
                section: "11.2.1.2",
                reject: Some(w::RejectReason::ProtocolError),
            })),
        }
    }

    pub(super) fn on_nop_in(&mut self, h: w::NopIn, data: Bytes) -> Result<(), ConnectionError> {
        if h.itt == RESERVED_TAG {
            // RFC 7143 section 11.19.2: with ITT 0xffffffff the StatSN is
            // "not advanced": a target ping or a window update (applied in
            // `on_pdu`).
            // RFC 7143 section 11.14: no new request after our Logout
            // Request, a ping answer included.
            if h.ttt != RESERVED_TAG && !self.logout_sent {
                tracing::debug!(target: "iscsi::nop", ttt = h.ttt, len = data.len(), "answering the target's NOP-In ping");
                // RFC 7143 section 11.18.3: the answer to a target ping
                // "MUST" carry ITT 0xffffffff, the NOP-In's TTT and LUN,
                // and (section 11.18.2) echo its data; it goes out as an
                // immediate command right away.
                let limit = self.conn.target_max_recv_data_segment_length() as usize;
                let echo = data.slice(..data.len().min(limit));
                let nop = w::NopOut {
                    immediate: true,
                    lun: h.lun,
                    itt: RESERVED_TAG,
                    ttt: h.ttt,
                    cmd_sn: Serial(0),
                    exp_stat_sn: Serial(0),
                };
                self.conn.push_urgent(nop, echo);
            }
            return Ok(());
        }
        // A reply to our ping consumes a StatSN (section 11.19.2,
        // acknowledged in `on_pdu`).
        // RFC 7143 section 11.19.1: a reply carries TTT 0xffffffff.
        match self.tasks.get(h.itt) {
            Some(Task {
                kind: Kind::Nop, ..
            }) => {
                self.complete(h.itt, TaskOutcome::Pong(data));
                Ok(())
            }
            Some(_) => Err(violation(
                "NOP-In answers a task that is not a ping",
                "11.19",
            )),
            None => Ok(()),
        }
    }

    pub(super) fn scsi_task(&mut self, itt: u32) -> Option<&mut ScsiTask> {
        match self.tasks.get_mut(itt) {
            Some(Task {
                kind: Kind::Scsi(s),
                ..
            }) => Some(s),
            _ => None,
        }
    }

    pub(super) fn on_scsi_response(
        &mut self,
        h: w::ScsiResponse,
        data: Bytes,
    ) -> Result<(), ConnectionError> {
        let Some(s) = self.scsi_task(h.itt) else {
            // A response for a task already aborted or completed.
            return Ok(());
        };
        let bytes_read = s.read_bytes;
        // RFC 7143 section 11.4.7: SenseLength, sense data, response data.
        let outcome = match w::split_sense(&data) {
            Ok(parts) => {
                let sense = (!parts.sense.is_empty()).then_some(parts.sense);
                let sense_data = sense.as_ref().and_then(|b| SenseData::parse(b).ok());
                TaskOutcome::Scsi(ScsiResult {
                    response: h.response,
                    status: h.status,
                    sense,
                    sense_data,
                    residual: h.residual,
                    bidi_read_residual: h.bidi_read_residual,
                    bytes_read,
                })
            }
            Err(e) => TaskOutcome::Failed(TaskError::Protocol(e.into())),
        };
        self.complete(h.itt, outcome);
        Ok(())
    }

    /// Applies the ExpCmdSN/MaxCmdSN pair of a target PDU to the session's
    /// window (RFC 7143 section 4.2.2.1).
    pub(super) fn apply_window(&mut self, exp_cmd_sn: Serial, max_cmd_sn: Serial) {
        let update = self.window.update(exp_cmd_sn, max_cmd_sn);
        if matches!(update, WindowUpdate::Invalid | WindowUpdate::AcksUnsent) {
            tracing::debug!(target: "iscsi::window", ?update, ExpCmdSN = exp_cmd_sn.0, MaxCmdSN = max_cmd_sn.0, "window update ignored (RFC 7143 section 4.2.2.1)");
        }
    }

    pub(super) fn on_data_in(&mut self, h: w::DataIn, data: Bytes) -> Result<(), ConnectionError> {
        let in_order = self.negotiated.as_ref().is_none_or(|n| n.data_pdu_in_order);
        let Some(s) = self.scsi_task(h.itt) else {
            return Ok(());
        };
        // RFC 7143 section 11.7.4: DataSN counts the task's Data-In PDUs
        // from 0; at ErrorRecoveryLevel 0 a gap cannot be repaired.
        if h.data_sn != s.next_data_sn {
            return Err(ConnectionError::Protocol(ProtocolError::OutOfOrder {
                what: "DataSN",
                expected: s.next_data_sn.0,
                received: h.data_sn.0,
                section: "11.7.4",
            }));
        }
        s.next_data_sn = s.next_data_sn.next();
        // RFC 7143 section 11.7.4: a bidirectional command's R2Ts and
        // Data-Ins share one numbering sequence.
        if s.cmd.data_out.is_some() {
            s.next_r2t_sn = s.next_data_sn;
        }
        if !data.is_empty() {
            if s.cmd.expected_read_len == 0 {
                return Err(violation("Data-In for a command without read data", "11.7"));
            }
            // RFC 7143 section 11.7.5 (Buffer Offset) with DataPDUInOrder=Yes
            // (section 13.18): PDUs arrive in increasing offset order.
            if in_order && h.buffer_offset != s.read_bytes {
                return Err(violation("Data-In Buffer Offset out of order", "11.7.5"));
            }
            let end = u64::from(h.buffer_offset) + data.len() as u64;
            if end > u64::from(s.cmd.expected_read_len) {
                return Err(violation(
                    "Data-In beyond the Expected Data Transfer Length",
                    "11.7.5",
                ));
            }
            s.read_bytes = s.read_bytes.saturating_add(data.len() as u32);
            // After an R-Data SNACK (`session/rdata.rs`) the target resends
            // from the last DataACK: what the application already has is
            // not delivered twice.
            let skip = s
                .recovery
                .as_deref()
                .map_or(0, |r| r.delivered.saturating_sub(h.buffer_offset))
                as usize;
            if skip < data.len() {
                let data = if skip == 0 { data } else { data.slice(skip..) };
                self.events.push_back(Event::DataIn {
                    task: TaskId::from_itt(h.itt),
                    offset: h.buffer_offset.saturating_add(skip as u32),
                    data,
                });
            }
        }
        if self.erl() >= 1 {
            // RFC 7143 section 11.7.2 (A bit) and 7.8: acknowledge, and
            // complete a response held for this data.
            if h.ack {
                self.send_data_ack(&h);
            }
            if self.data_in_progress(h.itt, h.status.is_some()) {
                return Ok(());
            }
        }
        if let Some(st) = h.status {
            let bytes_read = self.scsi_task(h.itt).map(|s| s.read_bytes).unwrap_or(0);
            if self.snack_was_rejected(h.itt) {
                // RFC 7143 section 7.8 (ii): data lost for good.
                self.complete_crc_error(h.itt);
                return Ok(());
            }
            self.complete(
                h.itt,
                TaskOutcome::Scsi(ScsiResult {
                    response: w::ScsiResponseCode::CommandCompleted,
                    status: st.status,
                    sense: None,
                    sense_data: None,
                    residual: st.residual,
                    bidi_read_residual: w::Residual::None,
                    bytes_read,
                }),
            );
        }
        Ok(())
    }

    pub(super) fn on_r2t(&mut self, h: w::R2t) -> Result<(), ConnectionError> {
        // RFC 7143 section 11.8: R2T carries the next StatSN without
        // advancing it (`numbering`).
        let (max_r2t, max_burst) = self
            .negotiated
            .as_ref()
            .map(|n| (n.max_outstanding_r2t, n.max_burst_length))
            .unwrap_or((1, 262_144));
        let Some(s) = self.scsi_task(h.itt) else {
            return Ok(());
        };
        let Some(buf) = s.cmd.data_out.clone() else {
            return Err(violation("R2T for a command without write data", "11.8"));
        };
        // RFC 7143 section 11.8.2: R2TSN numbers the task's R2Ts from 0.
        // At ErrorRecoveryLevel 1 a gap is asked for again and a duplicate
        // dropped (section 7.9, `session/erl1.rs`).
        if s.r2t_resync {
            // The first R2T after a TASK REASSIGN (RFC 7143 section 7.2.2:
            // "the target SHOULD continue the command from its current
            // state"; it asks for what it still needs). Its R2TSN
            // continues the target's numbering: the R2Ts it skips were
            // sent on the failed connection and died with it, so they are
            // no sequence gap to SNACK for (checked before the ERL 1
            // sequence check).
            s.r2t_resync = false;
            s.next_r2t_sn = h.r2t_sn;
        }
        let next = s.next_r2t_sn;
        if self.erl() >= 1 && self.erl1_r2t_sequence(&h, next) {
            return Ok(());
        }
        let Some(s) = self.scsi_task(h.itt) else {
            return Ok(());
        };
        if h.r2t_sn != s.next_r2t_sn {
            return Err(ConnectionError::Protocol(ProtocolError::OutOfOrder {
                what: "R2TSN",
                expected: s.next_r2t_sn.0,
                received: h.r2t_sn.0,
                section: "11.8.2",
            }));
        }
        // RFC 7143 section 13.17: the target "MUST NOT" exceed
        // MaxOutstandingR2T.
        if s.outstanding_r2t >= max_r2t {
            return Err(violation(
                "more outstanding R2Ts than MaxOutstandingR2T",
                "13.17",
            ));
        }
        // RFC 7143 section 11.8.4: a Desired Data Transfer Length of 0 and
        // more than MaxBurstLength are both errors.
        let len = h.desired_data_transfer_length;
        if len == 0 || len > max_burst {
            return Err(violation(
                "R2T Desired Data Transfer Length 0 or above MaxBurstLength",
                "11.8.4",
            ));
        }
        let start = h.buffer_offset as usize;
        let end = start.saturating_add(len as usize);
        if end > buf.len() {
            return Err(violation(
                "R2T beyond the Expected Data Transfer Length",
                "11.8.3",
            ));
        }
        s.next_r2t_sn = s.next_r2t_sn.next();
        // RFC 7143 section 11.7.4: "R2T and Data-In PDUs, in the context of
        // bidirectional commands, share the numbering sequence".
        if s.cmd.expected_read_len > 0 {
            s.next_data_sn = s.next_r2t_sn;
        }
        s.outstanding_r2t = s.outstanding_r2t.saturating_add(1);
        self.conn
            .queue_data_out(h.itt, h.lun, h.ttt, &buf, start, end, true);
        Ok(())
    }

    pub(super) fn on_text_response(
        &mut self,
        h: w::TextResponse,
        data: Bytes,
    ) -> Result<(), ConnectionError> {
        let Some(Task {
            kind: Kind::Text(t),
            ..
        }) = self.tasks.get_mut(h.itt)
        else {
            return Ok(());
        };
        let more = !h.final_pdu;
        // RFC 7143 section 11.11.1: "A Text Response with the F bit set to 1
        // MUST NOT contain key=value pairs that may require additional
        // answers" and the TTT is 0xffffffff; with F=0 the target sets a TTT
        // the initiator echoes to get the rest (section 11.11.4).
        if more && h.ttt == RESERVED_TAG {
            return Err(violation(
                "Text Response with F=0 and no Target Transfer Tag",
                "11.11.4",
            ));
        }
        // RFC 7143 section 11.11.2: "If the C bit is set to 1, the F bit
        // MUST be 0".
        if h.cont && !more {
            return Err(violation("Text Response with C=1 and F=1", "11.11.2"));
        }
        // The text of the whole sequence is one unit until F=1 (bounded by
        // the assembler's cap).
        match t.assembler.push(&data, more) {
            Err(e) => {
                self.complete(h.itt, TaskOutcome::Failed(TaskError::Protocol(e.into())));
                return Ok(());
            }
            Ok(Some(pairs)) if t.negotiate => {
                let declared = t.declared.take();
                let outcome = self.apply_ffp_text(declared, &pairs);
                self.complete(h.itt, outcome);
                return Ok(());
            }
            Ok(Some(pairs)) => {
                // SendTargets (internal text tasks are negotiations).
                let outcome = match parse_send_targets(&pairs) {
                    Ok(targets) => TaskOutcome::Targets(targets),
                    Err(e) => TaskOutcome::Failed(TaskError::Protocol(e.into())),
                };
                self.complete(h.itt, outcome);
                return Ok(());
            }
            Ok(None) => {}
        }
        t.ttt = h.ttt;
        t.started = true;
        self.pending.push_back(h.itt);
        Ok(())
    }

    /// The final Text Response of a Full Feature Phase negotiation: apply
    /// what the target declared (RFC 7143 section 13.12:
    /// MaxRecvDataSegmentLength) on top of our own declarations, all at
    /// once, now that the sequence is complete (section 6.4).
    fn apply_ffp_text(
        &mut self,
        declared: Option<Box<Negotiated>>,
        pairs: &[(String, String)],
    ) -> TaskOutcome {
        let Some(base) = declared.map(|b| *b).or_else(|| self.negotiated.clone()) else {
            // Text Responses are handled only in the Full Feature Phase,
            // which always has negotiated values.
            debug_assert!(false, "FFP text response without negotiated values");
            return TaskOutcome::Failed(TaskError::ConnectionLost);
        };
        match crate::login::full_feature::text_response(&base, pairs) {
            // RFC 7143 section 11.11.1: "A Text Response with the F bit set
            // to 1 MUST NOT contain key=value pairs that may require
            // additional answers from the initiator."
            Ok((_, replies)) if !replies.is_empty() => {
                TaskOutcome::Failed(TaskError::Protocol(ProtocolError::violation(
                    "final Text Response with keys that need an answer",
                    "11.11.1",
                )))
            }
            Ok((n, _)) => {
                tracing::info!(target: "iscsi::session", initiator = n.initiator_max_recv_data_segment_length, target = n.target_max_recv_data_segment_length, "MaxRecvDataSegmentLength renegotiated (RFC 7143 section 13.12)");
                self.conn.set_max_recv_data_segment_lengths(
                    n.initiator_max_recv_data_segment_length,
                    n.target_max_recv_data_segment_length,
                );
                self.negotiated = Some(n);
                TaskOutcome::Negotiated
            }
            Err(e) => TaskOutcome::Failed(TaskError::Protocol(e.into())),
        }
    }

    pub(super) fn on_async(
        &mut self,
        now: Instant,
        h: w::AsyncMessage,
        data: Bytes,
    ) -> Result<(), ConnectionError> {
        tracing::info!(target: "iscsi::session", event = ?h.event, lun = h.lun, vcode = h.vcode, parameter1 = h.parameter1, parameter2 = h.parameter2, parameter3 = h.parameter3, "asynchronous message received (RFC 7143 section 11.9)");
        let (sense, event_data) = match w::split_sense(&data) {
            Ok(p) => (p.sense, p.response_data),
            Err(_) => (Bytes::new(), data.clone()),
        };
        self.events.push_back(Event::AsyncEvent(AsyncNotice {
            event: h.event,
            lun: h.lun,
            vcode: h.vcode,
            parameters: [h.parameter1, h.parameter2, h.parameter3],
            sense,
            event_data,
        }));
        match h.event {
            // RFC 7143 section 11.9.1, AsyncEvent 1: "This Async Message
            // MUST be sent on the same connection as the one requesting to
            // be logged out ... The initiator MUST send a Logout with a
            // reason code of 'close the connection' OR 'close the
            // session'". On an added connection (MC/S): that connection
            // alone (`session/mcs.rs`).
            w::AsyncEvent::LogoutRequested if self.swapped.is_some() => {
                if let Some(cid) = self.swapped {
                    self.async_logouts.insert(cid);
                }
            }
            // RFC 7143 section 11.9.1, AsyncEvent 1: "the initiator MUST
            // honor this request by issuing a Logout as early as possible
            // but no later than Parameter3 seconds".
            w::AsyncEvent::LogoutRequested
                if self.logout_waiting.is_none() && !self.logout_sent =>
            {
                let deadline = later(now, Duration::from_secs(u64::from(h.parameter3)));
                if let Ok(itt) = self.new_task(Kind::Logout, true) {
                    self.logout_waiting = Some(itt);
                    self.timers.set(Timer::LogoutDue, deadline);
                    self.target_logout = true;
                }
            }
            // AsyncEvent 2/3: the target will drop the connection(s);
            // Parameter2 is Time2Wait for the reconnection.
            // Parameter3 is Time2Retain (ErrorRecoveryLevel 2: how long
            // the target keeps the tasks for reassignment).
            w::AsyncEvent::DropConnection | w::AsyncEvent::DropAllConnections => {
                self.time2wait = Some(h.parameter2);
                self.time2retain = Some(h.parameter3);
                // AsyncEvent 2: "The Parameter1 field indicates the CID of
                // the connection that is going to be dropped"; section
                // 7.1.4.3: "The initiator MUST handle it as a TCP
                // connection failure for the connection(s) referred to in
                // the Message." An added connection (MC/S) fails alone
                // (`session/mcs.rs`); the first one fails when the target
                // closes it.
                if h.event == w::AsyncEvent::DropConnection {
                    self.async_drop(h.parameter1);
                }
            }
            // AsyncEvent 4: renegotiation requested. We have nothing to
            // change: an empty Text Request completes the negotiation.
            w::AsyncEvent::NegotiationRequested => {
                if let Ok(itt) = self.new_task(
                    Kind::Text(Box::new(TextTask {
                        request: Bytes::new(),
                        assembler: TextAssembler::with_limit(self.cfg.max_text_len),
                        ttt: RESERVED_TAG,
                        started: false,
                        negotiate: true,
                        declared: None,
                    })),
                    true,
                ) {
                    self.pending.push_back(itt);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The next StatSN a PDU that does not advance it announces (RFC 7143
/// section 11.8: R2T; section 11.19.2: a NOP-In with ITT 0xffffffff).
fn next_stat_sn(header: &Header) -> Option<Serial> {
    match header {
        Header::NopIn(h) if h.itt == RESERVED_TAG => Some(h.stat_sn),
        Header::R2t(h) => Some(h.stat_sn),
        _ => None,
    }
}

/// What a target PDU says about the numbering (RFC 7143 section 4.2.2).
struct Numbering {
    /// The StatSN of a PDU that carries status and so advances ExpStatSN.
    stat_sn: Option<Serial>,
    exp_cmd_sn: Serial,
    max_cmd_sn: Serial,
}

/// The StatSN to acknowledge and the ExpCmdSN/MaxCmdSN pair of a target
/// PDU, or `None` for a PDU that carries no numbering here (a Login
/// Response in Full Feature Phase, an initiator opcode: both errors).
fn numbering(header: &Header) -> Option<Numbering> {
    let n = |stat_sn, exp_cmd_sn, max_cmd_sn| {
        Some(Numbering {
            stat_sn,
            exp_cmd_sn,
            max_cmd_sn,
        })
    };
    match header {
        // RFC 7143 section 11.19.2: a NOP-In with ITT 0xffffffff (a
        // target ping or window update) does not advance StatSN; a reply
        // to our ping does.
        Header::NopIn(h) => n(
            (h.itt != RESERVED_TAG).then_some(h.stat_sn),
            h.exp_cmd_sn,
            h.max_cmd_sn,
        ),
        Header::ScsiResponse(h) => n(Some(h.stat_sn), h.exp_cmd_sn, h.max_cmd_sn),
        // RFC 7143 section 11.7.4: StatSN only with the status (S=1).
        Header::DataIn(h) => n(
            h.status.as_ref().map(|st| st.stat_sn),
            h.exp_cmd_sn,
            h.max_cmd_sn,
        ),
        // RFC 7143 section 11.8: an R2T carries the next StatSN without
        // advancing it.
        Header::R2t(h) => n(None, h.exp_cmd_sn, h.max_cmd_sn),
        Header::TaskMgmtResponse(h) => n(Some(h.stat_sn), h.exp_cmd_sn, h.max_cmd_sn),
        Header::TextResponse(h) => n(Some(h.stat_sn), h.exp_cmd_sn, h.max_cmd_sn),
        Header::LogoutResponse(h) => n(Some(h.stat_sn), h.exp_cmd_sn, h.max_cmd_sn),
        Header::AsyncMessage(h) => n(Some(h.stat_sn), h.exp_cmd_sn, h.max_cmd_sn),
        Header::Reject(h) => n(Some(h.stat_sn), h.exp_cmd_sn, h.max_cmd_sn),
        _ => None,
    }
}
