//! Per-task timeouts (`SessionConfig::task_timeout`): a command the target
//! never answers is escalated one step per timeout, as open-iscsi does:
//! ABORT TASK (RFC 7143 section 11.5.1), then LOGICAL UNIT RESET, then the
//! connection is dropped (section 7.1.5: session recovery at ERL 0).

use std::time::Instant;

use super::*;

impl Session {
    /// Takes the escalation step of every task whose deadline passed and
    /// recomputes the earliest deadline left.
    pub(super) fn escalate_timeouts(&mut self, now: Instant) {
        let (Some(limit), Some(first)) = (self.cfg.task_timeout, self.task_deadline) else {
            return;
        };
        if now < first {
            return;
        }
        let due: Vec<(u32, u8, u64, Option<Serial>, Serial)> = self
            .tasks
            .iter()
            .filter_map(|(itt, t)| match (&t.kind, t.deadline) {
                (Kind::Scsi(s), Some(d)) if d <= now => {
                    Some((itt, t.escalation, s.cmd.lun, t.cmd_sn, s.next_data_sn))
                }
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
                                && matches!(&t.kind, Kind::Scsi(s) if s.cmd.lun == lun)
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
        self.task_deadline = self.tasks.iter().filter_map(|(_, t)| t.deadline).min();
    }
}
