//! Connection failure and connection recovery on the target side (RFC
//! 7143 sections 7.1.4-7.1.5, 7.2.2, 6.3.4 and 11.5.1 TASK REASSIGN).
//!
//! What a failed connection costs depends on the ErrorRecoveryLevel:
//!
//! - level 0: the session (section 7.1.5: "session recovery");
//! - level 1: the connection's tasks, which end (section 7.14 / 3720 6.12:
//!   "implicitly terminate all active commands"); the session goes on
//!   while another connection is left;
//! - level 2: nothing yet: the connection's tasks wait for TASK REASSIGN
//!   on another (or a new) connection for DefaultTime2Wait +
//!   DefaultTime2Retain (section 7.1.5: the target "MUST NOT ... discard
//!   the task state before Time2Retain expires"; sections 13.15-13.16),
//!   then are aborted. A task the application completes meanwhile keeps
//!   its answer, sent once reassigned; a task completed before the
//!   failure whose status the initiator had not acknowledged keeps that
//!   status, resent on reassignment: the command is never executed again.

use crate::prelude::*;
use crate::time::Instant;
use alloc::collections::BTreeMap;
use core::time::Duration;

use bytes::Bytes;

use super::{Phase, Session};
use crate::scsi::ScsiStatus;
use crate::target::event::{CloseReason, Event, TaskId};
use crate::target::retention::RetainedStatus;
use crate::target::window::TargetWindow;
use crate::wire::{DataIn, Header, Residual, ScsiResponse, ScsiResponseCode, Serial};

/// The answer the application gave to a task whose connection was down.
#[derive(Debug, Clone)]
pub(in crate::target) struct Done {
    pub(in crate::target) status: ScsiStatus,
    pub(in crate::target) sense: Option<Bytes>,
    pub(in crate::target) data_in: Bytes,
    pub(in crate::target) write_len: Option<u32>,
}

/// The session's connection-recovery state.
#[derive(Debug, Default)]
pub(in crate::target) struct Recovery {
    /// Set on a fresh session that logs in as a further connection of
    /// session `tsih`, with that session's window (see
    /// [`Session::expect_join`]).
    pub(in crate::target) joining: Option<(u16, TargetWindow)>,
    /// Per failed connection (CID): when its tasks' state may go (failure
    /// + DefaultTime2Wait + DefaultTime2Retain).
    deadlines: BTreeMap<u16, Instant>,
    /// Statuses sent on a failed connection and not acknowledged, by ITT,
    /// with the CID they were sent on.
    statuses: BTreeMap<u32, (u16, RetainedStatus)>,
}

impl Recovery {
    /// The earliest Time2Retain deadline.
    pub(in crate::target) fn deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// Whether nothing waits for reassignment.
    pub(in crate::target) fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }

    /// The target announced Time2Wait and Time2Retain for connection `cid`
    /// (Async Message "drop connection", RFC 7143 section 11.9.1): its
    /// tasks are kept that long from `now`.
    pub(in crate::target) fn announce(
        &mut self,
        cid: u16,
        now: Option<Instant>,
        time2wait: u16,
        time2retain: u16,
    ) {
        let (Some(d), Some(now)) = (self.deadlines.get_mut(&cid), now) else {
            return;
        };
        let keep = Duration::from_secs(u64::from(time2wait) + u64::from(time2retain));
        *d = now.checked_add(keep).unwrap_or(now);
    }

    /// Whether connection `cid` failed and its tasks wait for
    /// reassignment.
    pub(in crate::target) fn has_failed(&self, cid: u16) -> bool {
        self.deadlines.contains_key(&cid)
    }

    /// Forgets everything (the session ends).
    pub(in crate::target) fn clear(&mut self) {
        self.deadlines.clear();
        self.statuses.clear();
    }
}

/// What a TASK REASSIGN found to continue.
#[derive(Debug, Clone, Copy)]
pub(in crate::target) enum Reassign {
    /// A live task of a failed connection.
    Live(TaskId),
    /// A task that ended before the failure: its status is resent.
    Retained(u32),
}

impl Session {
    /// The current connection failed (peer closed, digest or protocol
    /// error, no NOP answer, reinstated). See the module documentation
    /// for what each ErrorRecoveryLevel keeps.
    pub(in crate::target) fn connection_failed(&mut self, reason: CloseReason) {
        if self.conn.phase == Phase::Closed {
            return;
        }
        let erl = self.erl();
        if erl == 0 || self.conn.phase == Phase::Login {
            // RFC 7143 section 7.1.5: at ErrorRecoveryLevel 0 any failure
            // is recovered by session recovery: the session ends.
            self.close(reason);
            return;
        }
        self.end_connection(reason, erl < 2);
    }

    /// Ends the current connection, the session going on: its tasks are
    /// terminated (`terminate`) or wait for reassignment. When no
    /// connection is left and nothing waits, the session ends too.
    pub(in crate::target) fn end_connection(&mut self, reason: CloseReason, terminate: bool) {
        if self.conn.phase == Phase::Closed {
            return;
        }
        let cid = self.conn.cid;
        let ids: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.cid == cid && !t.orphan)
            .map(|t| t.id)
            .collect();
        if !terminate {
            for id in ids {
                let Some(t) = self.tasks.get_mut(&id) else {
                    continue;
                };
                if t.immediate {
                    // RFC 7143 section 7.14 (3720 6.12): "a target MUST
                    // terminate and/or discard all of the active immediate
                    // commands regardless of which of the above options is
                    // used (i.e., immediate commands are not recoverable
                    // across connection failures)".
                    if let Some(t) = self.remove_task(id) {
                        self.bury_itt(t.itt);
                        if t.delivered {
                            self.events
                                .push_back((cid, Event::TaskAborted { task: id }));
                        }
                    }
                    continue;
                }
                t.orphan = true;
            }
            // Statuses the initiator may not have seen (not acknowledged
            // by ExpStatSN) stay available for reassignment.
            if let Some(log) = self.conn.status_log.take() {
                for e in log.entries() {
                    let itt = match e.header {
                        Header::ScsiResponse(r) => r.itt,
                        Header::DataIn(d) if d.status.is_some() => d.itt,
                        _ => continue,
                    };
                    self.recovery.statuses.insert(itt, (cid, e.clone()));
                }
            }
            let (t2w, t2r) = self
                .negotiated
                .as_ref()
                .map_or((2, 20), |n| (n.default_time2wait, n.default_time2retain));
            if let Some(now) = self.now {
                let keep = Duration::from_secs(u64::from(t2w) + u64::from(t2r));
                self.recovery
                    .deadlines
                    .insert(cid, now.checked_add(keep).unwrap_or(now));
            }
        } else {
            // RFC 7143 section 7.14 (3720 6.12): without connection
            // recovery the connection's active commands are terminated;
            // the initiator re-issues them (immediate ones are never
            // recoverable across connection failures).
            for id in ids {
                if let Some(t) = self.remove_task(id) {
                    self.bury_itt(t.itt);
                    if t.delivered {
                        self.events
                            .push_back((cid, Event::TaskAborted { task: id }));
                    }
                }
            }
        }
        self.conn.phase = Phase::Closed;
        self.conn.nop.ping = None;
        self.emit(Event::Closed {
            reason: reason.clone(),
        });
        if self.live_connections() == 0 && self.recovery.is_empty() {
            // The last connection, nothing to recover: the session is over.
            self.close(reason);
        }
        self.update_timer();
    }

    /// Time2Retain expired for a failed connection's tasks: RFC 7143
    /// section 7.1.5 / 6.3.4, they are aborted ("the target ... MUST
    /// terminate" them once the retention ends).
    pub(in crate::target) fn retention_timeout(&mut self, now: Instant) {
        let expired: Vec<u16> = self
            .recovery
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(c, _)| *c)
            .collect();
        for cid in expired {
            self.recovery.deadlines.remove(&cid);
            self.recovery.statuses.retain(|_, (c, _)| *c != cid);
            let ids: Vec<TaskId> = self
                .tasks
                .values()
                .filter(|t| t.orphan && t.cid == cid)
                .map(|t| t.id)
                .collect();
            for id in ids {
                if let Some(t) = self.remove_task(id) {
                    self.bury_itt(t.itt);
                    for (_, item) in self.held.iter_mut() {
                        if matches!(item, super::full_feature::Held::Scsi(h) if *h == id) {
                            *item = super::full_feature::Held::Hole;
                        }
                    }
                    if t.delivered && t.done.is_none() {
                        self.events
                            .push_back((cid, Event::TaskAborted { task: id }));
                    }
                }
            }
        }
        if self.live_connections() == 0 && self.recovery.is_empty() && self.tsih != 0 {
            // Nothing left to recover and no connection: the session ends.
            self.close(CloseReason::RetentionExpired);
        }
    }

    /// Terminates the tasks of the failed connection `cid` that wait for
    /// reassignment (a Logout with reason 1 for it, RFC 7143 section
    /// 11.14: its tasks are terminated).
    pub(in crate::target) fn terminate_orphans(&mut self, cid: u16) {
        if let Some(d) = self.recovery.deadlines.get_mut(&cid) {
            // Expire now; `retention_timeout` does the work.
            if let Some(now) = self.now {
                *d = now;
                self.retention_timeout(now);
            }
        }
    }

    /// A completion for an orphaned task is kept until it is reassigned.
    /// True when `id` was orphaned (the completion is stored).
    pub(in crate::target) fn keep_if_orphan(&mut self, id: TaskId, done: &Done) -> bool {
        match self.tasks.get_mut(&id) {
            Some(t) if t.orphan && t.delivered => {
                t.done = Some(done.clone());
                true
            }
            _ => false,
        }
    }

    /// TASK REASSIGN (RFC 7143 section 11.5.1): what it finds, or the
    /// response refusing it.
    pub(in crate::target) fn reassign_check(
        &mut self,
        itt: u32,
    ) -> Result<Reassign, crate::wire::TmfResponse> {
        use crate::wire::TmfResponse;
        if self.erl() < 2 {
            // Section 11.6.1: 4 "Task allegiance reassignment not
            // supported" below ErrorRecoveryLevel 2 (section 7.1.5).
            return Err(TmfResponse::ReassignmentNotSupported);
        }
        if let Some(&id) = self.by_itt.get(&itt) {
            let Some(t) = self.tasks.get(&id) else {
                return Err(TmfResponse::TaskDoesNotExist);
            };
            if !t.orphan && !self.is_closed_on(t.cid) {
                // Section 11.6.1: 3 "Task still allegiant": its connection
                // was neither logged out nor failed.
                return Err(TmfResponse::TaskStillAllegiant);
            }
            return Ok(Reassign::Live(id));
        }
        if self.recovery.statuses.contains_key(&itt) {
            return Ok(Reassign::Retained(itt));
        }
        Err(TmfResponse::TaskDoesNotExist)
    }

    /// Continues a reassigned task on the current connection (after the
    /// "Function Complete" response): RFC 7143 section 7.2.2 / 3720 6.2.2,
    /// "the target SHOULD continue the command from its current state ...
    /// This might possibly involve retransmission of data/R2T/status PDUs
    /// as necessary, but MUST involve the (re)transmission of the status
    /// PDU." `exp_data_sn`: the request's ExpDataSN (Data-In before it
    /// were received).
    pub(in crate::target) fn reassign_continue(&mut self, r: Reassign, exp_data_sn: Serial) {
        let cid = self.conn.cid;
        match r {
            Reassign::Live(id) => {
                let Some(t) = self.tasks.get_mut(&id) else {
                    return;
                };
                let old = t.cid;
                t.cid = cid;
                t.orphan = false;
                let done = t.done.take();
                let delivered = t.delivered;
                if let Some(d) = done {
                    let _ = self.complete_task(id, d.status, d.sense, d.data_in, d.write_len);
                } else if !delivered {
                    // A write still receiving data: its outstanding R2Ts
                    // died with the connection; ask again from the first
                    // byte missing.
                    self.restart_transfer(id);
                }
                self.forget_failed(old);
            }
            Reassign::Retained(itt) => {
                let Some((old, e)) = self.recovery.statuses.remove(&itt) else {
                    return;
                };
                self.resend_retained(itt, e, exp_data_sn);
                self.forget_failed(old);
            }
        }
    }

    /// The failed connection `cid` has nothing left to reassign: its
    /// Time2Retain timer goes.
    fn forget_failed(&mut self, cid: u16) {
        let busy = self.tasks.values().any(|t| t.orphan && t.cid == cid)
            || self.recovery.statuses.values().any(|(c, _)| *c == cid);
        if !busy {
            self.recovery.deadlines.remove(&cid);
        }
        self.update_timer();
    }

    /// Resends the Data-In of a task that completed before its connection
    /// failed (from ExpDataSN) and its status with this connection's
    /// StatSN.
    fn resend_retained(&mut self, itt: u32, e: RetainedStatus, exp_data_sn: Serial) {
        let (status, residual, sense) = match e.header {
            Header::ScsiResponse(r) => (r.status, r.residual, e.data.clone()),
            Header::DataIn(d) => match d.status {
                Some(st) => (st.status, st.residual, Bytes::new()),
                None => return,
            },
            _ => return,
        };
        let mut next_sn = Serial(0);
        let mut r2ts = 0;
        if let Some(rec) = self.reads.get(itt).cloned() {
            r2ts = rec.r2t_count;
            let from = if exp_data_sn.in_window(
                rec.acked_sn,
                Serial(rec.layout.base_sn).plus(rec.layout.count()),
            ) {
                exp_data_sn
            } else {
                rec.acked_sn
            };
            next_sn = Serial(rec.layout.base_sn).plus(rec.layout.count());
            if let Some(data) = rec.data.clone() {
                let (exp, max) = self.window_fields();
                for p in rec
                    .layout
                    .pieces()
                    .filter(|p| p.data_sn.follows_or_eq(from))
                {
                    let end = (p.offset + p.len) as usize;
                    let Some(seg) = (end <= data.len()).then(|| data.slice(p.offset as usize..end))
                    else {
                        continue;
                    };
                    self.conn.push_pdu(
                        DataIn {
                            final_pdu: p.final_pdu,
                            ack: false,
                            lun: 0,
                            itt,
                            ttt: super::NO_TAG,
                            exp_cmd_sn: exp,
                            max_cmd_sn: max,
                            data_sn: p.data_sn,
                            buffer_offset: p.offset,
                            status: None,
                        },
                        seg,
                    );
                }
            }
        }
        let (exp, max) = self.window_fields();
        let stat_sn = self.conn.take_stat_sn();
        // The record now belongs to this connection's numbering: its
        // status is acknowledged by this connection's ExpStatSN, and a
        // further failure before that finds the data again.
        if let Some(rec) = self.reads.get_mut(itt) {
            rec.cid = self.conn.cid;
            rec.stat_sn = stat_sn;
            rec.status_in_data = None;
            rec.ack_ttt = None;
        }
        self.conn.push_pdu(
            ScsiResponse {
                response: ScsiResponseCode::CommandCompleted,
                status,
                itt,
                snack_tag: 0,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                exp_data_sn: next_sn.plus(r2ts),
                bidi_read_residual: Residual::None,
                residual,
            },
            sense,
        );
    }
}
