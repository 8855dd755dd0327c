//! The session's deadlines: which [`Timer`]s count in which state
//! ([`Session::next_timeout`], behind `poll_timeout`), what each does when
//! it passes (`handle_timeout` dispatches by the enum), and the per-task
//! timeouts (`SessionConfig::task_timeout`): a command the target never
//! answers is escalated one step per timeout, as open-iscsi does: ABORT
//! TASK (RFC 7143 section 11.5.1), then LOGICAL UNIT RESET, then the
//! connection is dropped (section 7.1.5: session recovery at ERL 0).

use crate::prelude::*;
use crate::time::Instant;

use super::*;

impl Session {
    /// Whether `timer` counts now: the login deadline while a connection
    /// is being set up, the reconnect wait while recovering, the rest in
    /// Full Feature Phase.
    fn armed(&self, timer: Timer) -> bool {
        match self.phase {
            Phase::Closed => false,
            Phase::Waiting => timer == Timer::Reconnect || timer == Timer::Retain,
            Phase::Active if !self.conn.is_full() => {
                timer == Timer::Login || timer == Timer::Retain
            }
            Phase::Active => match timer {
                Timer::Task | Timer::Logout | Timer::LogoutDue | Timer::Ping | Timer::Snack => true,
                // Idle keepalive only while no ping is out, and (RFC 7143
                // section 11.14) not after our Logout Request.
                Timer::Keepalive => !self.timers.is_set(Timer::Ping) && !self.logout_sent,
                // While SNACKs are out their own timer resends them.
                Timer::Quiet => {
                    !self.timers.is_set(Timer::Ping)
                        && !self.timers.is_set(Timer::Snack)
                        && !self.logout_sent
                }
                Timer::Reconnect | Timer::Login | Timer::Retain => false,
            },
        }
    }

    /// The earliest deadline that counts now.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        let session = self.timers.next_timeout(|t| self.armed(t));
        // MC/S: the login deadlines of added connections.
        match (
            session,
            self.extra_deadline()
                .filter(|_| self.phase == Phase::Active),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles every timer that is due at `now`, in [`Timer::ALL`] order;
    /// each checks the state again, as an earlier one may have changed it.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if self.timers.is_expired(timer, now) {
                self.on_timer(now, timer);
            }
        }
        if self.phase == Phase::Active {
            self.check_extra_deadlines(now);
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Reconnect => {
                if self.phase != Phase::Waiting {
                    return;
                }
                // RFC 7143 section 7.1.5: session recovery opens a new
                // connection (to the permanent redirection target, if any).
                self.timers.stop(Timer::Reconnect);
                self.phase = Phase::Active;
                self.conn.state = ConnState::Connecting;
                self.timers
                    .set(Timer::Login, later(now, self.cfg.login_timeout));
                self.portal = self.recovery_portal();
                self.events.push_back(Event::Connect {
                    portal: self.portal.clone(),
                });
            }
            Timer::Login => {
                if self.phase == Phase::Active && !self.conn.is_full() {
                    self.timers.stop(Timer::Login);
                    self.fail_connection(now, ConnectionError::TimedOut(TimerKind::Login));
                }
            }
            Timer::Logout => {
                self.timers.stop(Timer::Logout);
                self.fail_closed(ConnectionError::TimedOut(TimerKind::Logout));
            }
            Timer::LogoutDue => {
                let Some(itt) = self.logout_waiting else {
                    return;
                };
                if self.is_logged_in() {
                    // RFC 7143 section 11.9.1 (AsyncEvent 1): log out "no
                    // later than Parameter3 seconds": stop waiting for
                    // tasks. When the session logs in again they are
                    // handled as after a connection loss (reissued only
                    // where that is safe).
                    if !self.holds_new_work() {
                        self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
                    }
                    self.send_logout(now, itt);
                }
            }
            Timer::Task => {
                if self.is_logged_in() {
                    self.escalate_timeouts(now);
                }
            }
            // RFC 7143 section 11.14: "After sending the Logout Request
            // PDU, an initiator MUST NOT send any new iSCSI requests on the
            // closing connection": no keepalive ping then.
            Timer::Ping => {
                if self.is_logged_in() && !self.logout_sent {
                    self.timers.stop(Timer::Ping);
                    self.fail_connection(now, ConnectionError::TimedOut(TimerKind::Keepalive));
                }
            }
            Timer::Retain => self.retain_expired(now),
            Timer::Snack => {
                if self.is_logged_in() {
                    self.snack_timeout(now);
                }
            }
            Timer::Quiet => self.quiet_timeout(now),
            Timer::Keepalive => {
                if let Some(ka) = self.cfg.keepalive {
                    if self.is_logged_in() && !self.logout_sent && !self.timers.is_set(Timer::Ping)
                    {
                        self.send_keepalive(now, ka.timeout);
                    }
                }
            }
        }
    }

    /// Takes the escalation step of every task whose deadline passed and
    /// recomputes the earliest deadline left.
    pub(super) fn escalate_timeouts(&mut self, now: Instant) {
        let (Some(limit), Some(first)) = (self.cfg.task_timeout, self.timers.get(Timer::Task))
        else {
            return;
        };
        if now < first {
            return;
        }
        let due: Vec<(u32, u8, u64, Option<Serial>, Serial)> = self
            .tasks
            .iter()
            .filter_map(|(itt, t)| match (&t.kind, t.deadline) {
                (Kind::Scsi(s), Some(d)) if d <= now => Some((
                    itt,
                    t.escalation,
                    s.cmd.lun.to_u64(),
                    t.cmd_sn,
                    s.next_data_sn,
                )),
                _ => None,
            })
            .collect();
        for (itt, step, lun, cmd_sn, exp_data_sn) in due {
            if self.tasks.get(itt).is_none_or(|t| t.deadline.is_none()) {
                continue; // ended by an earlier step of this pass
            }
            match step {
                0 => {
                    tracing::warn!(target: "iscsi::session", itt, ?limit, "command timed out: ABORT TASK (RFC 7143 section 11.5.1)");
                    let function = w::TmfFunction::AbortTask;
                    if let Ok(tmf) = self.new_task(
                        Kind::Tmf {
                            function,
                            affected: vec![itt],
                        },
                        true,
                    ) {
                        let ref_cmd_sn = cmd_sn.unwrap_or(self.window.cmd_sn());
                        self.send_tmf(tmf, function, lun, itt, ref_cmd_sn, exp_data_sn);
                    }
                }
                1 => {
                    tracing::warn!(target: "iscsi::session", itt, lun, "ABORT TASK did not end the command: LOGICAL UNIT RESET");
                    let function = w::TmfFunction::LogicalUnitReset;
                    let affected: Vec<u32> = self
                        .tasks
                        .iter()
                        .filter(|(_, t)| {
                            !t.internal
                                && t.cmd_sn.is_some()
                                && matches!(&t.kind, Kind::Scsi(s) if s.cmd.lun.to_u64() == lun)
                        })
                        .map(|(i, _)| i)
                        .collect();
                    if let Ok(tmf) = self.new_task(Kind::Tmf { function, affected }, true) {
                        let sn = self.window.cmd_sn();
                        self.send_tmf(tmf, function, lun, RESERVED_TAG, sn, Serial(0));
                    }
                }
                _ => {
                    tracing::warn!(target: "iscsi::session", itt, lun, "LOGICAL UNIT RESET did not end the command: dropping the connection");
                    self.fail_connection(now, ConnectionError::TimedOut(TimerKind::Task));
                    return;
                }
            }
            if let Some(t) = self.tasks.get_mut(itt) {
                t.escalation = step.saturating_add(1);
                t.deadline = Some(later(now, limit));
            }
        }
        match self.tasks.iter().filter_map(|(_, t)| t.deadline).min() {
            Some(d) => self.timers.set(Timer::Task, d),
            None => self.timers.stop(Timer::Task),
        }
    }
}
