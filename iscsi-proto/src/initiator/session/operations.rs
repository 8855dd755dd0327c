//! (C) Application actions, the operations the application starts on the
//! session (SCSI commands, task management, pings, SendTargets,
//! renegotiation, logout), and the task bookkeeping they share with the
//! receive side.

use crate::prelude::*;
use crate::time::Instant;

use bytes::Bytes;

use super::*;

impl Session {
    /// Whether an application action may start now.
    fn check_actionable(&self) -> Result<(), UsageError> {
        if self.is_closed() {
            Err(UsageError::Closed)
        } else if self.holds_new_work() {
            // A target-requested logout followed by a new login: work
            // queues for the new session (RFC 7143 section 11.9.1 asks
            // the initiator to log out, not to stop).
            Ok(())
        } else if self.logout_waiting.is_some() || self.logout_sent {
            Err(UsageError::LoggingOut)
        } else if self.is_logged_in() || self.logged_in_once {
            // During recovery new work queues and is issued after relogin.
            Ok(())
        } else {
            Err(UsageError::NotLoggedIn)
        }
    }

    pub(super) fn new_task(&mut self, kind: Kind, internal: bool) -> Result<u32, UsageError> {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.tasks
            .insert(Task {
                kind,
                cmd_sn: None,
                allegiance: None,
                internal,
                seq,
                started: self.clock,
                sent: false,
                abort_pending: false,
                deadline: None,
                escalation: 0,
                reassign: erl2::Reassign::No,
            })
            .ok_or(UsageError::TooManyTasks)
    }

    /// Submits a SCSI command. It is sent when the CmdSN window allows
    /// (RFC 7143 section 4.2.2.1); until then it queues.
    pub fn submit(&mut self, now: Instant, cmd: ScsiCommand) -> Result<TaskId, UsageError> {
        self.tick(now);
        self.check_actionable()?;
        if self.cfg.is_discovery() {
            return Err(UsageError::DiscoverySession);
        }
        if cmd.cdb.is_empty() || cmd.cdb.len() > MAX_CDB_LEN {
            return Err(UsageError::InvalidCommand("CDB must be 1 to 260 bytes"));
        }
        if cmd
            .data_out
            .as_ref()
            .is_some_and(|d| u32::try_from(d.len()).is_err())
        {
            return Err(UsageError::InvalidCommand("data_out longer than 2^32 - 1"));
        }
        let itt = self.new_task(
            Kind::Scsi(ScsiTask {
                cmd,
                next_data_sn: Serial(0),
                read_bytes: 0,
                next_r2t_sn: Serial(0),
                outstanding_r2t: 0,
                mrdsl_epoch: 0,
                recovery: None,
                r2t_resync: false,
            }),
            false,
        )?;
        self.pending.push_back(itt);
        self.stats.commands_submitted = self.stats.commands_submitted.saturating_add(1);
        self.after_action(now);
        Ok(TaskId::from_itt(itt))
    }

    /// ABORT TASK for `task` (RFC 7143 section 11.5.1), sent as an
    /// immediate command with the task's RefCmdSN. Returns the id of the
    /// task management task. A command still queued for the window is
    /// aborted locally.
    pub fn abort_task(&mut self, now: Instant, task: TaskId) -> Result<TaskId, UsageError> {
        self.tick(now);
        self.check_actionable()?;
        let (lun, ref_cmd_sn, exp_data_sn) = match self.tasks.get(task.itt()) {
            Some(Task {
                kind: Kind::Scsi(s),
                cmd_sn,
                internal: false,
                ..
            }) => (s.cmd.lun.to_u64(), *cmd_sn, s.next_data_sn),
            Some(_) => return Err(UsageError::NotAbortable(task)),
            None => return Err(UsageError::UnknownTask(task)),
        };
        let function = w::TmfFunction::AbortTask;
        let tmf = self.new_task(
            Kind::Tmf {
                function,
                affected: Vec::new(),
            },
            false,
        )?;
        match ref_cmd_sn {
            None => {
                // Never sent: nothing to ask the target.
                self.pending.retain(|&i| i != task.itt());
                self.complete(
                    task.itt(),
                    TaskOutcome::Failed(TaskError::Aborted(function)),
                );
                self.complete(
                    tmf,
                    TaskOutcome::TaskManagement(w::TmfResponse::FunctionComplete),
                );
            }
            Some(ref_cmd_sn) if self.is_logged_in() => {
                if let Some(Task {
                    kind: Kind::Tmf { affected, .. },
                    ..
                }) = self.tasks.get_mut(tmf)
                {
                    affected.push(task.itt());
                }
                self.send_tmf(tmf, function, lun, task.itt(), ref_cmd_sn, exp_data_sn);
            }
            Some(_) => {
                let _ = self.tasks.remove(tmf);
                return Err(UsageError::NotLoggedIn);
            }
        }
        self.after_action(now);
        Ok(TaskId::from_itt(tmf))
    }

    /// A task management function other than ABORT TASK (RFC 7143 section
    /// 11.5.1): ABORT TASK SET, CLEAR ACA, CLEAR TASK SET, LOGICAL UNIT
    /// RESET, TARGET WARM RESET, TARGET COLD RESET. When the target answers
    /// "Function complete", every affected task completes with
    /// [`TaskError::Aborted`] (exactly once: a task that completed first
    /// keeps its own outcome).
    pub fn task_management(
        &mut self,
        now: Instant,
        lun: u64,
        function: w::TmfFunction,
    ) -> Result<TaskId, UsageError> {
        self.tick(now);
        self.check_actionable()?;
        if self.cfg.is_discovery() {
            return Err(UsageError::DiscoverySession);
        }
        if !self.is_logged_in() {
            return Err(UsageError::NotLoggedIn);
        }
        use w::TmfFunction as F;
        let scope_all = match function {
            F::AbortTaskSet | F::ClearTaskSet | F::LogicalUnitReset => false,
            F::TargetWarmReset | F::TargetColdReset => true,
            F::ClearAca => false,
            F::AbortTask => {
                return Err(UsageError::InvalidCommand("use abort_task for ABORT TASK"))
            }
            _ => {
                return Err(UsageError::InvalidCommand(
                    "unsupported task management function at ErrorRecoveryLevel 0",
                ))
            }
        };
        let mut affected = Vec::new();
        let mut unsent = Vec::new();
        if function != F::ClearAca {
            for (itt, t) in self.tasks.iter() {
                if let Kind::Scsi(s) = &t.kind {
                    if !t.internal && (scope_all || s.cmd.lun.to_u64() == lun) {
                        if t.cmd_sn.is_some() {
                            affected.push(itt);
                        } else {
                            unsent.push(itt);
                        }
                    }
                }
            }
        }
        let tmf = self.new_task(Kind::Tmf { function, affected }, false)?;
        for itt in unsent {
            self.pending.retain(|&i| i != itt);
            self.complete(itt, TaskOutcome::Failed(TaskError::Aborted(function)));
        }
        let tmf_lun = if scope_all { 0 } else { lun };
        self.send_tmf(
            tmf,
            function,
            tmf_lun,
            RESERVED_TAG,
            self.window.cmd_sn(),
            Serial(0),
        );
        self.after_action(now);
        Ok(TaskId::from_itt(tmf))
    }

    /// A NOP-Out ping with a real ITT (immediate). Completes with
    /// [`TaskOutcome::Pong`] carrying the echoed data.
    pub fn nop_ping(&mut self, now: Instant, data: Bytes) -> Result<TaskId, UsageError> {
        self.tick(now);
        self.check_actionable()?;
        if !self.is_logged_in() {
            return Err(UsageError::NotLoggedIn);
        }
        let limit = self.conn.target_max_recv_data_segment_length();
        if data.len() > limit as usize {
            return Err(UsageError::DataTooLong {
                len: data.len(),
                limit,
            });
        }
        let itt = self.new_task(Kind::Nop, false)?;
        self.send_ping(itt, data);
        self.after_action(now);
        Ok(TaskId::from_itt(itt))
    }

    /// SendTargets (RFC 7143 section 13.3): `All` in a discovery session,
    /// this session's TargetName otherwise. Completes with
    /// [`TaskOutcome::Targets`].
    pub fn send_targets(&mut self, now: Instant) -> Result<TaskId, UsageError> {
        self.tick(now);
        self.check_actionable()?;
        // RFC 7143 section 13.3: "The value All can be used only in
        // discovery session."
        let value = match &self.cfg.target_name {
            None => "All".to_owned(),
            Some(t) => t.clone(),
        };
        let mut body = Vec::new();
        text::encode_pair("SendTargets", &value, &mut body)
            .map_err(|_| UsageError::InvalidCommand("target name not encodable"))?;
        let itt = self.new_task(
            Kind::Text(Box::new(TextTask {
                request: Bytes::from(body),
                assembler: TextAssembler::with_limit(self.cfg.max_text_len),
                ttt: RESERVED_TAG,
                started: false,
                negotiate: false,
                declared: None,
            })),
            false,
        )?;
        self.pending.push_back(itt);
        self.after_action(now);
        Ok(TaskId::from_itt(itt))
    }

    /// Re-declares our MaxRecvDataSegmentLength in the Full Feature Phase
    /// (RFC 7143 section 13.12: a declarative key allowed there) with a
    /// Text Request. The new value takes effect when the target's answer
    /// completes the sequence (section 6.4); the task then completes with
    /// [`TaskOutcome::Negotiated`]. Values the target declares back are
    /// applied too.
    pub fn declare_max_recv_data_segment_length(
        &mut self,
        now: Instant,
        value: u32,
    ) -> Result<TaskId, UsageError> {
        self.check_actionable()?;
        let Some(current) = self.negotiated.as_ref() else {
            return Err(UsageError::NotLoggedIn);
        };
        let (declared, pairs) =
            crate::login::full_feature::declare_max_recv_data_segment_length(current, value)
                .map_err(|_| {
                    UsageError::InvalidCommand("MaxRecvDataSegmentLength must be 512..=16777215")
                })?;
        let mut body = Vec::new();
        text::encode_pairs(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut body,
        )
        .map_err(|_| UsageError::InvalidCommand("unencodable key"))?;
        let itt = self.new_task(
            Kind::Text(Box::new(TextTask {
                request: Bytes::from(body),
                assembler: TextAssembler::with_limit(self.cfg.max_text_len),
                ttt: RESERVED_TAG,
                started: false,
                negotiate: true,
                declared: Some(Box::new(declared)),
            })),
            false,
        )?;
        self.pending.push_back(itt);
        self.after_action(now);
        Ok(TaskId::from_itt(itt))
    }

    /// Logs the session out (RFC 7143 section 11.14, reason "close the
    /// session"). With [`LogoutMode::WaitForTasks`] new tasks are refused
    /// and the Logout Request goes out once the outstanding ones complete;
    /// with [`LogoutMode::AbortTasks`] they complete with
    /// [`TaskError::LoggedOut`] and the request goes out now. The logout
    /// task completes with [`TaskOutcome::LoggedOut`], then
    /// `Event::Closed(None)` follows.
    pub fn logout(&mut self, now: Instant, mode: LogoutMode) -> Result<TaskId, UsageError> {
        self.tick(now);
        if self.is_closed() {
            return Err(UsageError::Closed);
        }
        if !self.is_logged_in() {
            return Err(UsageError::NotLoggedIn);
        }
        if let Some(itt) = self.logout_waiting {
            // A target-requested logout is pending: adopt it.
            if let Some(t) = self.tasks.get_mut(itt) {
                t.internal = false;
            }
            self.target_logout = false;
            if mode == LogoutMode::AbortTasks {
                self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
            }
            self.after_action(now);
            return Ok(TaskId::from_itt(itt));
        }
        if self.logout_sent {
            // A target-requested logout already went out: the
            // application's logout joins it (its task completes with the
            // Logout Response), and the session then ends.
            let adopted = self.tasks.iter_mut().find_map(|(itt, t)| {
                matches!(t.kind, Kind::Logout).then(|| {
                    t.internal = false;
                    itt
                })
            });
            if let Some(itt) = adopted {
                self.target_logout = false;
                if mode == LogoutMode::AbortTasks {
                    self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
                }
                self.after_action(now);
                return Ok(TaskId::from_itt(itt));
            }
            return Err(UsageError::LoggingOut);
        }
        let itt = self.new_task(Kind::Logout, false)?;
        if mode == LogoutMode::AbortTasks {
            self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
        }
        self.logout_waiting = Some(itt);
        self.timers.stop(Timer::LogoutDue);
        self.after_action(now);
        Ok(TaskId::from_itt(itt))
    }
    pub(super) fn complete(&mut self, itt: u32, outcome: TaskOutcome) {
        if let Some(task) = self.tasks.remove(itt) {
            self.count_completion(&task, &outcome);
            if self.conn.keepalive_task == Some(itt) {
                self.conn.keepalive_task = None;
            }
            if !task.internal {
                self.events.push_back(Event::Complete {
                    task: TaskId::from_itt(itt),
                    outcome,
                });
            }
        }
    }

    /// Records `now` as the session's latest time (never backwards).
    pub(super) fn tick(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
    }

    /// `SessionStats` for a recovery that sends `reissued` commands again.
    pub(super) fn count_recovery(&mut self, reissued: usize) {
        self.stats.recoveries = self.stats.recoveries.saturating_add(1);
        self.stats.retries = self.stats.retries.saturating_add(reissued as u64);
    }

    /// `SessionStats` for a task that ends with `outcome`.
    fn count_completion(&mut self, task: &Task, outcome: &TaskOutcome) {
        let latency = self.clock.saturating_duration_since(task.started);
        let s = &mut self.stats;
        match (&task.kind, outcome) {
            (Kind::Scsi(scsi), outcome) => {
                s.commands_completed = s.commands_completed.saturating_add(1);
                s.command_latency.record(latency);
                s.bytes_read = s.bytes_read.saturating_add(u64::from(scsi.read_bytes));
                if let TaskOutcome::Scsi(_) = outcome {
                    let out = scsi.cmd.data_out.as_ref().map_or(0, |d| d.len());
                    s.bytes_written = s.bytes_written.saturating_add(out as u64);
                } else {
                    s.commands_failed = s.commands_failed.saturating_add(1);
                }
            }
            (Kind::Nop, TaskOutcome::Pong(_)) => {
                s.nop_round_trips = s.nop_round_trips.saturating_add(1);
                s.nop_latency.record(latency);
            }
            _ => {}
        }
    }

    /// Completes every application task except `keep` with `err`.
    pub(super) fn fail_user_tasks(&mut self, err: TaskError, keep: Option<u32>) {
        let mut tags: Vec<(u64, u32)> = self
            .tasks
            .iter()
            .filter(|(itt, t)| Some(*itt) != keep && !matches!(t.kind, Kind::Logout))
            .map(|(itt, t)| (t.seq, itt))
            .collect();
        tags.sort_unstable();
        // One pass over the queue for all of them (a pass per task was
        // quadratic in the queue length: found by the fuzzer as a slow unit).
        let tasks = &self.tasks;
        self.pending.retain(|&i| match tasks.get(i) {
            Some(t) => Some(i) == keep || matches!(t.kind, Kind::Logout),
            None => true,
        });
        for (_, itt) in tags {
            self.complete(itt, TaskOutcome::Failed(err.clone()));
        }
    }
}
