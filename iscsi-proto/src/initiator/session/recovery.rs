//! Ending and renewing the session's connection: session recovery at
//! ErrorRecoveryLevel 0 (RFC 7143 sections 7.1.5, 6.3.5), the end of a
//! logout (section 11.14), the new login after a target-requested logout
//! (section 11.9.1), and what happens to each task then.

use crate::prelude::*;
use crate::time::Instant;
use core::time::Duration;

use super::*;

impl Session {
    /// Whether new work queues instead of being refused or sent: a
    /// target-requested logout that the application did not adopt, with
    /// recovery configured (the session logs in again afterwards).
    pub(super) fn holds_new_work(&self) -> bool {
        self.target_logout && self.cfg.recovery.is_some()
    }

    /// Whether application tasks are outstanding, the logout aside; with
    /// `at_target_only`, only those the target holds (sent, not answered).
    pub(super) fn has_user_tasks(&self, at_target_only: bool) -> bool {
        self.tasks.iter().any(|(_, t)| {
            !t.internal
                && !matches!(t.kind, Kind::Logout)
                && (!at_target_only || t.cmd_sn.is_some())
        })
    }

    /// The connection failed: recover (RFC 7143 section 7.1.5, session
    /// recovery at ErrorRecoveryLevel 0) or close.
    pub(super) fn fail_connection(&mut self, now: Instant, err: ConnectionError) {
        if self.is_closed() {
            return;
        }
        // An added connection (MC/S) fails on its own (`session/mcs.rs`).
        if self.swapped.is_some() {
            self.deferred_fail.get_or_insert(err);
            return;
        }
        // The session's connection: with ErrorRecoveryLevel below 2 the
        // others go with the session (RFC 7143 section 7.1.5).
        // RFC 7143 section 11.14: our Logout Request asked the target to
        // close the session; a close with nothing outstanding is that
        // close, whether or not the Logout Response made it.
        if self.logout_sent && !self.has_user_tasks(true) {
            let unanswered = LogoutResult {
                response: w::LogoutResponseCode::Success,
                time2wait: 0,
                time2retain: 0,
                answered: false,
            };
            tracing::info!(target: "iscsi::login", cause = %err, "connection closed after the Logout Request: logged out");
            self.logged_out(now, unanswered);
            return;
        }
        // RFC 7143 section 6.3.5: a target closes a session's connection
        // when another login with the same ISID reinstates it. Closes that
        // come right after each login, again and again, are that.
        if self.is_logged_in() {
            let short = matches!(err, ConnectionError::Closed)
                && now.saturating_duration_since(self.conn.logged_in_at) < SHORT_LIVED;
            self.short_lived = if short {
                self.short_lived.saturating_add(1)
            } else {
                0
            };
            if self.short_lived >= TAKEN_OVER_AFTER {
                let times = self.short_lived;
                self.fail_closed(ConnectionError::TakenOver { times });
                return;
            }
        }
        // ErrorRecoveryLevel 2: replace the connection within the session
        // (RFC 7143 section 7.1.4.3) when that is still possible.
        if self.try_connection_recovery(now, &err) {
            return;
        }
        let recovery = self.cfg.recovery;
        let can_recover = self.logged_in_once && !self.logout_sent && self.logout_waiting.is_none();
        let Some(rec) = recovery.filter(|_| can_recover) else {
            self.fail_closed(err);
            return;
        };
        if self.recovery_attempt >= rec.max_attempts {
            let attempts = self.recovery_attempt;
            self.fail_closed(ConnectionError::RecoveryFailed {
                attempts,
                last: Box::new(err),
            });
            return;
        }
        self.recovery_attempt = self.recovery_attempt.saturating_add(1);
        let attempt = self.recovery_attempt;
        let t2w = self
            .time2wait
            .take()
            .or(self.negotiated.as_ref().map(|n| n.default_time2wait))
            .unwrap_or(2);
        let shift = attempt.saturating_sub(1).min(16);
        let backoff = rec
            .initial_backoff
            .saturating_mul(1u32 << shift)
            .min(rec.max_backoff);
        // RFC 7143 section 13.15 (DefaultTime2Wait): the minimum time to
        // wait before attempting a new connection after a failure.
        let after = backoff.max(Duration::from_secs(u64::from(t2w)));
        let (reissued, failed) = self.reconnect_after(now, after);
        self.count_recovery(reissued);
        tracing::info!(target: "iscsi::recovery", attempt, ?after, cause = %err, reissued, failed, "connection lost; reconnecting for session reinstatement (RFC 7143 section 6.3.5)");
        self.events.push_back(Event::Recovering {
            attempt,
            after,
            cause: err,
        });
    }

    /// The session's logout finished (`result.answered`: by a Logout
    /// Response). A target-requested logout the application did not adopt
    /// is followed, with recovery configured, by a new login that carries
    /// on with the queued work; otherwise the session is over.
    pub(super) fn logged_out(&mut self, now: Instant, result: LogoutResult) {
        let logout = self
            .tasks
            .iter()
            .find_map(|(itt, t)| matches!(t.kind, Kind::Logout).then_some(itt));
        if let Some(itt) = logout {
            self.complete(itt, TaskOutcome::LoggedOut(result));
        }
        if self.holds_new_work() {
            self.logout_sent = false;
            self.logout_waiting = None;
            self.timers.stop(Timer::LogoutDue);
            self.timers.stop(Timer::Logout);
            self.target_logout = false;
            // RFC 7143 section 11.15.3 (Time2Wait): the minimum wait
            // before a new login.
            let after = Duration::from_secs(u64::from(result.time2wait));
            let (reissued, failed) = self.reconnect_after(now, after);
            self.count_recovery(reissued);
            tracing::info!(target: "iscsi::recovery", ?after, reissued, failed, "logged out at the target's request; logging in again");
            // Tasks that were at the target ended with the old session:
            // the application hears of the new login as of a recovery
            // (not counted against `Recovery::max_attempts`).
            self.events.push_back(Event::Recovering {
                attempt: 1,
                after,
                cause: ConnectionError::TargetLogout,
            });
            return;
        }
        self.fail_user_tasks(TaskError::LoggedOut, None);
        self.close_quietly();
        self.events.push_back(Event::Closed(None));
    }

    /// Drops the connection's state and schedules a new connection and
    /// login after `after`. The tasks of the old session (RFC 7143 section
    /// 6.3.5: terminated at the target when the new login reinstates the
    /// session) are sorted: a command that may have run and must not run
    /// twice ([`Reissue`], or one whose abort was in flight) fails with
    /// [`TaskError::OutcomeUnknown`]; the rest go out again in their
    /// original order with new CmdSNs; pings and task management die with
    /// the connection. Returns (reissued, failed).
    pub(super) fn reconnect_after(&mut self, now: Instant, after: Duration) -> (usize, usize) {
        // The connection is gone with everything it held (RFC 7143
        // section 4.2.1); the next one gets the same CID.
        self.conn = Connection::new(self.conn.cid, now);
        self.drop_extras(None);
        self.orphans.clear();
        // A new session: nothing is reassigned any more.
        self.conn_recovery = None;
        self.timers.stop(Timer::Retain);
        for (_, t) in self.tasks.iter_mut() {
            t.reassign = erl2::Reassign::No;
        }
        self.timers.stop(Timer::Ping);
        self.timers.stop(Timer::Login);
        self.timers.stop(Timer::Snack);
        self.status_snacked = None;
        self.snack_rounds = 0;
        let mut reissue: Vec<(u64, u32)> = Vec::new();
        let mut unknown: Vec<u32> = Vec::new();
        let mut fail: Vec<u32> = Vec::new();
        for (itt, t) in self.tasks.iter_mut() {
            let may_have_run = t.sent || t.abort_pending;
            match &mut t.kind {
                Kind::Scsi(s)
                    if may_have_run && (t.abort_pending || !s.cmd.reissue.allows(&s.cmd.cdb)) =>
                {
                    unknown.push(itt);
                }
                Kind::Scsi(s) => {
                    s.next_data_sn = Serial(0);
                    s.read_bytes = 0;
                    s.next_r2t_sn = Serial(0);
                    s.outstanding_r2t = 0;
                    s.recovery = None;
                    s.r2t_resync = false;
                    t.cmd_sn = None;
                    t.allegiance = None;
                    t.sent = false;
                    t.deadline = None;
                    t.escalation = 0;
                    reissue.push((t.seq, itt));
                }
                Kind::Text(tt) => {
                    tt.assembler.reset();
                    tt.ttt = RESERVED_TAG;
                    tt.started = false;
                    t.cmd_sn = None;
                    t.allegiance = None;
                    reissue.push((t.seq, itt));
                }
                _ => fail.push(itt),
            }
        }
        self.timers.stop(Timer::Task);
        let failed = fail.len() + unknown.len();
        for itt in unknown {
            self.complete(itt, TaskOutcome::Failed(TaskError::OutcomeUnknown));
        }
        for itt in fail {
            self.complete(itt, TaskOutcome::Failed(TaskError::ConnectionLost));
        }
        reissue.sort_unstable();
        self.pending = reissue.into_iter().map(|(_, i)| i).collect();
        self.phase = Phase::Waiting;
        self.timers.set(Timer::Reconnect, later(now, after));
        (self.pending.len(), failed)
    }
}
