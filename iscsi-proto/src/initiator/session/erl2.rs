//! ErrorRecoveryLevel 2: connection recovery (RFC 7143 sections 7.1.4.3,
//! 6.3.4, 7.2, 11.5.1 TASK REASSIGN, 13.15/13.16 Time2Wait/Time2Retain).
//!
//! When the session's connection fails in Full Feature Phase and level 2
//! was negotiated, the session is not reinstated: after Time2Wait a new
//! connection logs into the same session (same ISID, the session's TSIH,
//! the failed connection's CID: connection reinstatement, section 6.3.4,
//! which logs the failed connection out implicitly: section 7.1.4.3 "It
//! then MUST either implicitly or explicitly logout the failed connection
//! with the reason code 'remove the connection for recovery'"). Then:
//!
//! - every command "in progress" on the failed connection ("as long as it
//!   has not received a response or a Data-In PDU including status") is
//!   moved to the new connection with TASK REASSIGN (section 11.5.1),
//!   ExpDataSN set to the next DataSN expected so the target resends only
//!   what is missing; the command is not sent again, so a command the
//!   target ran is never run twice (its status comes from what the target
//!   retained);
//! - a reassignment answered "Task does not exist" for a command whose
//!   CmdSN the target never acknowledged, and a command that had its CmdSN
//!   but never left, are *retried* (section 7.2.1: same ITT, same CmdSN),
//!   which is not a new command;
//! - commands still queued for the window are sent as usual.
//!
//! If the new connection is not in Full Feature Phase by Time2Wait +
//! Time2Retain after the failure (section 13.16: "the maximum time, after
//! an initial wait (Time2Wait), before which an active task reassignment is
//! still possible"), or its login is refused, the target has dropped the
//! tasks: the session falls back to session reinstatement (the level 0
//! path, `session/recovery.rs`). Connection recovery counts its attempts
//! against [`Recovery::max_attempts`] (the default [`Recovery`] when none
//! is configured: negotiating level 2 asks for it).

use crate::prelude::*;
use crate::time::Instant;
use core::time::Duration;

use super::*;

/// What a task needs once its connection is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reassign {
    /// Nothing.
    No,
    /// Its command reached the old connection: TASK REASSIGN it.
    Pending,
    /// TASK REASSIGN sent (by this task management task).
    Sent(u32),
    /// Its command never left (or the target never had it): send it again
    /// with its ITT and CmdSN (RFC 7143 section 7.2.1, retry).
    Retry,
}

/// A connection recovery in progress.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnRecovery {
    /// ExpStatSN of the failed connection (RFC 7143 section 11.12.9: the
    /// Login Request that restarts a connection carries it).
    pub(super) exp_stat_sn: Serial,
}

impl Session {
    /// The connection failed: recover it within the session when level 2
    /// was negotiated and Time2Retain allows. Returns `false` when the
    /// level 0 path must run instead.
    pub(super) fn try_connection_recovery(&mut self, now: Instant, err: &ConnectionError) -> bool {
        if self.erl() < 2
            || self.logout_sent
            || self.logout_waiting.is_some()
            || self.holds_new_work()
            || self.cfg.is_discovery()
        {
            return false;
        }
        let again = self.conn_recovery.is_some();
        if !self.conn.is_full() && !again {
            return false;
        }
        let rec = self.cfg.recovery.unwrap_or_default();
        if self.recovery_attempt >= rec.max_attempts {
            return false;
        }
        let n = self.negotiated.as_ref();
        let t2w = self
            .time2wait
            .take()
            .or(n.map(|n| n.default_time2wait))
            .unwrap_or(2);
        let t2r = self
            .time2retain
            .take()
            .or(n.map(|n| n.default_time2retain))
            .unwrap_or(20);
        if !again {
            // RFC 7143 section 13.16: "A value of 0 indicates that the
            // connection/task state is immediately discarded by the
            // target": nothing to reassign.
            if t2r == 0 {
                return false;
            }
            let retain = Duration::from_secs(u64::from(t2w) + u64::from(t2r));
            self.timers.set(Timer::Retain, later(now, retain));
            self.conn_recovery = Some(ConnRecovery {
                exp_stat_sn: self.conn.exp_stat_sn(),
            });
        }
        self.recovery_attempt = self.recovery_attempt.saturating_add(1);
        let attempt = self.recovery_attempt;
        let shift = attempt.saturating_sub(1).min(16);
        let backoff = rec
            .initial_backoff
            .saturating_mul(1u32 << shift)
            .min(rec.max_backoff);
        // RFC 7143 section 13.15 (DefaultTime2Wait): the minimum wait
        // before a new connection after a failure.
        let after = backoff.max(Duration::from_secs(u64::from(t2w)));
        let (reassign, failed) = self.hold_for_reassignment();
        self.conn = Connection::new(self.conn.cid, now);
        self.timers.stop(Timer::Ping);
        self.timers.stop(Timer::Login);
        self.timers.stop(Timer::Snack);
        self.status_snacked = None;
        self.snack_rounds = 0;
        self.phase = Phase::Waiting;
        self.timers.set(Timer::Reconnect, later(now, after));
        self.stats.recoveries = self.stats.recoveries.saturating_add(1);
        tracing::info!(target: "iscsi::recovery", attempt, ?after, cause = %err, reassign, failed, cid = self.conn.cid, tsih = self.tsih, "connection lost; connection recovery (RFC 7143 section 7.1.4.3, ErrorRecoveryLevel 2)");
        self.events.push_back(Event::Recovering {
            attempt,
            after,
            cause: err.clone(),
        });
        true
    }

    /// Sorts the tasks of the failed connection: commands that reached it
    /// wait for TASK REASSIGN, commands holding a CmdSN that never left
    /// wait for a retry, pings and task management die with the
    /// connection (a TASK REASSIGN in flight is asked again). Returns
    /// (to reassign or retry, failed).
    fn hold_for_reassignment(&mut self) -> (usize, usize) {
        let mut fail = Vec::new();
        let mut again = Vec::new();
        let mut held = 0;
        let failed = self.conn.cid;
        // Commands queued on an added connection (MC/S) stay there.
        let elsewhere: BTreeSet<u32> = self
            .extra
            .values()
            .flat_map(|e| e.conn.tx.iter())
            .filter_map(|o| match &o.header {
                Header::ScsiCommand(h) => Some(h.itt),
                _ => None,
            })
            .collect();
        for (itt, t) in self.tasks.iter_mut() {
            match &mut t.kind {
                Kind::Scsi(_)
                    if t.allegiance.is_some_and(|c| c != failed) || elsewhere.contains(&itt) => {}
                Kind::Scsi(s) => {
                    s.outstanding_r2t = 0;
                    s.recovery = None;
                    t.allegiance = None;
                    t.reassign = match t.reassign {
                        Reassign::Retry => Reassign::Retry,
                        _ if t.sent => {
                            s.r2t_resync = s.cmd.data_out.is_some();
                            Reassign::Pending
                        }
                        _ if t.cmd_sn.is_some() => Reassign::Retry,
                        _ => Reassign::No,
                    };
                    held += usize::from(t.reassign != Reassign::No);
                }
                Kind::Text(tt) if t.cmd_sn.is_some() => {
                    tt.assembler.reset();
                    tt.ttt = RESERVED_TAG;
                    tt.started = false;
                    t.allegiance = None;
                    t.reassign = Reassign::Retry;
                    held += 1;
                }
                Kind::Text(_) => {}
                Kind::Tmf {
                    function: w::TmfFunction::TaskReassign,
                    affected,
                } => {
                    again.extend(affected.iter().copied());
                    fail.push(itt);
                }
                // A reason 2 logout of an added connection went with the
                // first connection: asked again once it is back.
                Kind::ConnLogout {
                    cid,
                    reason: w::LogoutReason::RemoveForRecovery,
                } => {
                    self.orphans.insert(*cid);
                    fail.push(itt);
                }
                Kind::ConnLogout { .. } => {}
                _ => fail.push(itt),
            }
        }
        for itt in again {
            if let Some(t) = self.tasks.get_mut(itt) {
                t.reassign = Reassign::Pending;
            }
        }
        let failed = fail.len();
        for itt in fail {
            self.complete(itt, TaskOutcome::Failed(TaskError::ConnectionLost));
        }
        (held, failed)
    }

    /// The final Login Response of a connection recovery: the connection
    /// is in the session again; its tasks are reassigned or retried.
    pub(super) fn connection_login_complete(
        &mut self,
        now: Instant,
        neg: Negotiated,
        resp: &w::LoginResponse,
    ) -> Result<(), ConnectionError> {
        // RFC 7143 section 11.13.3: the TSIH of the session the connection
        // joins.
        if resp.tsih != self.tsih {
            return Err(violation(
                "Login Response for a connection of the session with another TSIH",
                "11.13.3",
            ));
        }
        self.conn_recovery = None;
        self.timers.stop(Timer::Retain);
        // The session's window goes on (RFC 7143 section 4.2.2.1: CmdSN is
        // session-wide); the login only updates it.
        self.apply_window(resp.exp_cmd_sn, resp.max_cmd_sn);
        // Only the connection's keys were negotiated (section 13: digests
        // and MaxRecvDataSegmentLength); the session's stay.
        let mut merged = self.negotiated.clone().unwrap_or_else(|| neg.clone());
        merged.header_digest = neg.header_digest;
        merged.data_digest = neg.data_digest;
        merged.initiator_max_recv_data_segment_length = neg.initiator_max_recv_data_segment_length;
        merged.target_max_recv_data_segment_length = neg.target_max_recv_data_segment_length;
        self.conn.enter_full_feature(
            Digests {
                header: merged.header_digest,
                data: merged.data_digest,
            },
            merged.initiator_max_recv_data_segment_length,
            merged.target_max_recv_data_segment_length,
        );
        self.negotiated = Some(merged);
        self.timers.stop(Timer::Login);
        self.timers.stop(Timer::Ping);
        self.redirects = 0;
        self.touch_rx(now);
        self.conn.logged_in_at = now;
        self.recovery_attempt = 0;
        let (reassigned, retried) = self.reassign_tasks();
        self.stats.retries = self
            .stats
            .retries
            .saturating_add(reassigned as u64)
            .saturating_add(retried as u64);
        tracing::info!(target: "iscsi::recovery", tsih = self.tsih, cid = self.conn.cid, reassigned, retried, "connection recovered within the session");
        self.events.push_back(Event::ConnectionRecovered {
            cid: self.conn.cid,
            reassigned,
            retried,
        });
        // For drivers: the session is usable again, with the same TSIH.
        self.events.push_back(Event::Reinstated { tsih: self.tsih });
        Ok(())
    }

    /// TASK REASSIGN for every task whose command reached the failed
    /// connection, a retry for every one that held a CmdSN but did not,
    /// in submission order. Returns (reassigned, retried).
    fn reassign_tasks(&mut self) -> (usize, usize) {
        let mut todo: Vec<(u64, u32, Reassign)> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.reassign, Reassign::Pending | Reassign::Retry))
            .map(|(itt, t)| (t.seq, itt, t.reassign))
            .collect();
        // Retries first (their CmdSNs are the oldest the target lacks),
        // then the immediate TASK REASSIGNs, each group in submission order.
        todo.sort_unstable_by_key(|&(seq, _, what)| (what != Reassign::Retry, seq));
        let (mut reassigned, mut retried) = (0, 0);
        // Added connections that failed meanwhile (MC/S) are logged out
        // first (RFC 7143 section 7.1.4.3); the reassignments wait for
        // that (`on_conn_logout`).
        let orphans = core::mem::take(&mut self.orphans);
        for (_, itt, what) in todo {
            if what == Reassign::Retry {
                retried += 1;
                self.retry(itt);
            } else {
                reassigned += 1;
                if orphans.is_empty() {
                    self.send_reassign(itt);
                }
            }
        }
        for cid in orphans {
            self.logout_for_recovery(cid);
        }
        (reassigned, retried)
    }

    /// RFC 7143 section 7.2.1: "a command retry ... MUST be issued with the
    /// original Initiator Task Tag and CmdSN"; not a new command.
    pub(super) fn retry(&mut self, itt: u32) {
        let Some(t) = self.tasks.get_mut(itt) else {
            return;
        };
        t.reassign = Reassign::No;
        let Some(cmd_sn) = t.cmd_sn else {
            return;
        };
        if let Kind::Scsi(s) = &mut t.kind {
            s.next_data_sn = Serial(0);
            s.read_bytes = 0;
            s.next_r2t_sn = Serial(0);
            s.r2t_resync = false;
        }
        tracing::info!(target: "iscsi::recovery", itt, CmdSN = cmd_sn.0, "command retried (RFC 7143 section 7.2.1)");
        match self.tasks.get(itt).map(|t| &t.kind) {
            Some(Kind::Scsi(_)) => self.send_scsi(itt, cmd_sn, false),
            Some(Kind::Text(_)) => self.send_text(itt, cmd_sn, false),
            _ => {}
        }
    }

    /// TASK REASSIGN (RFC 7143 section 11.5.1) for `itt` on the new
    /// connection: RefCmdSN the task's CmdSN, ExpDataSN the next Data-In
    /// expected (section 11.5.6: "the target MUST transmit all Data-In
    /// PDUs (if any) starting with the data acknowledgment reference
    /// number"), which the initiator has all before.
    pub(super) fn send_reassign(&mut self, itt: u32) {
        let Some(t) = self.tasks.get(itt) else {
            return;
        };
        let Kind::Scsi(s) = &t.kind else {
            return;
        };
        let (lun, reads, next) = (
            s.cmd.lun.to_u64(),
            s.cmd.expected_read_len > 0,
            s.next_data_sn,
        );
        let ref_cmd_sn = t.cmd_sn.unwrap_or(self.window.cmd_sn());
        let exp_data_sn = if reads { next } else { Serial(0) };
        let function = w::TmfFunction::TaskReassign;
        let Ok(tmf) = self.new_task(
            Kind::Tmf {
                function,
                affected: vec![itt],
            },
            true,
        ) else {
            return;
        };
        if let Some(t) = self.tasks.get_mut(itt) {
            t.reassign = Reassign::Sent(tmf);
        }
        tracing::info!(target: "iscsi::recovery", itt, RefCmdSN = ref_cmd_sn.0, ExpDataSN = exp_data_sn.0, "TASK REASSIGN (RFC 7143 section 11.5.1)");
        self.send_tmf(tmf, function, lun, itt, ref_cmd_sn, exp_data_sn);
    }

    /// The answer to a TASK REASSIGN.
    pub(super) fn on_reassigned(&mut self, tmf: u32, affected: &[u32], response: w::TmfResponse) {
        self.complete(tmf, TaskOutcome::TaskManagement(response));
        let exp_cmd_sn = self.window.exp_cmd_sn();
        for &itt in affected {
            let cid = self.conn.cid;
            let Some(t) = self.tasks.get_mut(itt) else {
                continue;
            };
            if t.reassign != Reassign::Sent(tmf) {
                continue;
            }
            t.reassign = Reassign::No;
            t.abort_pending = false;
            match response {
                // RFC 7143 section 11.6.1: the task now belongs to this
                // connection; the target resends what is missing.
                w::TmfResponse::FunctionComplete => {
                    t.allegiance = Some(cid);
                }
                // The target never had the command (its CmdSN not
                // acknowledged): it never ran, so a retry is safe.
                w::TmfResponse::TaskDoesNotExist
                    if t.cmd_sn.is_some_and(|sn| !sn.precedes(exp_cmd_sn)) =>
                {
                    self.retry(itt);
                }
                other => {
                    // It may have run; sending it again could run it twice.
                    tracing::warn!(target: "iscsi::recovery", itt, response = ?other, "TASK REASSIGN refused: outcome unknown");
                    self.complete(itt, TaskOutcome::Failed(TaskError::OutcomeUnknown));
                }
            }
        }
    }

    /// [`Timer::Retain`]: Time2Wait + Time2Retain passed without the
    /// connection back: the target has dropped the tasks (RFC 7143 section
    /// 13.16), so the session is reinstated instead (level 0 path).
    pub(super) fn retain_expired(&mut self, now: Instant) {
        self.timers.stop(Timer::Retain);
        if self.conn_recovery.take().is_none() {
            return;
        }
        tracing::warn!(target: "iscsi::recovery", "Time2Retain passed: session reinstatement instead of connection recovery (RFC 7143 section 13.16)");
        if self.phase == Phase::Waiting {
            let after = self
                .timers
                .get(Timer::Reconnect)
                .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
            self.reconnect_after(now, after);
        } else if self.phase == Phase::Active {
            self.fail_connection(now, ConnectionError::TimedOut(TimerKind::Retain));
        }
    }
}
