//! Task management on the target side (RFC 7143 sections 11.5 and 11.6):
//! ABORT TASK, ABORT TASK SET, CLEAR TASK SET, resets; the response waits
//! for every task it covers to stop (section 11.5.1).

use crate::prelude::*;
use bytes::Bytes;

use super::full_feature::Held;
use super::{Phase, Session};
use crate::target::event::{CloseReason, Event, TaskId};
use crate::wire::{Serial, TaskMgmtRequest, TaskMgmtResponse, TmfFunction, TmfResponse};

/// A task management request whose response waits (RFC 7143 section
/// 11.5.1; RFC 3720 section 10.6.2: the target "b) Waits for ... all
/// affected tasks in the task set to be received. c) Propagates the
/// command to and receives the response from the target SCSI layer").
#[derive(Debug)]
pub(in crate::target) struct PendingTmf {
    req: TaskMgmtRequest,
    response: TmfResponse,
    /// Delivered tasks it aborted, reported in `TaskManagement`.
    aborted: Vec<TaskId>,
    /// Aborted tasks the application has not acknowledged yet.
    waiting: Vec<TaskId>,
    /// Commands with a CmdSN before this one must have been received
    /// (ExpCmdSN reached it) before the response.
    until: Option<Serial>,
    cold: bool,
    /// The connection it came on: its response goes there too.
    cid: u16,
}

impl PendingTmf {
    /// Whether a non-immediate command `cmd_sn` on `lun` arriving now is
    /// one this request acts on ("all the commands ... having a CmdSN
    /// lower than the task management CmdSN", RFC 7143 section 11.5.1).
    pub(in crate::target) fn covers(&self, cmd_sn: Serial, lun: u64) -> bool {
        let lun_ok = match self.req.function {
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => true,
            _ => lun == self.req.lun,
        };
        lun_ok && self.until.is_some_and(|u| cmd_sn.precedes(u))
    }
}

impl Session {
    /// Aborts a task. A task the application has not seen yet (not
    /// delivered, or its `Command` event still queued) is dropped here;
    /// one the application took is reported as `TaskAborted` and awaits
    /// its acknowledgement: its id is returned.
    fn abort(&mut self, id: TaskId) -> Option<TaskId> {
        let t = self.remove_task(id)?;
        self.bury_itt(t.itt);
        for (_, item) in self.held.iter_mut() {
            if matches!(item, Held::Scsi(h) if *h == id) {
                *item = Held::Hole;
            }
        }
        if !t.delivered {
            return None;
        }
        // Not polled yet: withdraw the command, so the application never
        // executes it (and never touches the medium for it).
        if let Some(i) = self
            .events
            .iter()
            .position(|(_, e)| matches!(e, Event::Command(r) if r.task == id))
        {
            self.events.remove(i);
            return None;
        }
        self.events
            .push_back((t.cid, Event::TaskAborted { task: id }));
        self.aborting.insert(id, (t.lun, t.itt));
        Some(id)
    }

    /// The application stopped an aborted task (acknowledged, or completed
    /// it): the requests waiting for it may be answered.
    pub(in crate::target) fn abort_done(&mut self, task: TaskId) {
        for p in &mut self.pending_tmfs {
            p.waiting.retain(|t| *t != task);
        }
        self.finish_tmfs();
    }

    /// Sends the responses of the pending task management requests that
    /// no longer wait: every aborted task acknowledged and every command
    /// before them received (RFC 7143 section 11.5.1; RFC 3720 section
    /// 10.6.1: "The response to ABORT TASK SET and CLEAR TASK SET MUST only
    /// be issued by the target after all of the commands affected have
    /// been received by the target, the corresponding task management
    /// functions have been executed by the SCSI target").
    pub(in crate::target) fn finish_tmfs(&mut self) {
        while self.conn.phase == Phase::FullFeature {
            let exp = self.window.exp_cmd_sn();
            let Some(i) = self
                .pending_tmfs
                .iter()
                .position(|p| p.waiting.is_empty() && p.until.is_none_or(|u| !exp.precedes(u)))
            else {
                return;
            };
            let p = self.pending_tmfs.remove(i);
            let cid = p.cid;
            self.with_conn(cid, |s| s.send_tmf_response(p));
        }
    }

    /// Sends a Task Management response that no longer waits.
    fn send_tmf_response(&mut self, p: PendingTmf) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.conn.take_stat_sn();
        self.conn.push_pdu(
            TaskMgmtResponse {
                response: p.response,
                itt: p.req.itt,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
            },
            Bytes::new(),
        );
        if p.response == TmfResponse::FunctionComplete {
            self.emit(Event::TaskManagement {
                function: p.req.function,
                lun: p.req.lun,
                aborted: p.aborted,
            });
        }
        if p.cold {
            // RFC 7143 section 11.5.1: for TARGET COLD RESET the target
            // "MUST ... terminate all of its TCP connections to all
            // initiators" after the response.
            self.close(CloseReason::ColdReset);
        }
    }

    /// Whether the node logged into exposes `lun`.
    fn lun_exists(&self, lun: u64) -> bool {
        self.target_index
            .and_then(|i| self.cfg.targets.get(i))
            .is_some_and(|t| t.luns.contains(&lun))
    }

    /// A Task Management Function Request: performs it, then queues its
    /// response to be sent once the tasks it covers have stopped.
    pub(in crate::target) fn task_mgmt(&mut self, h: TaskMgmtRequest) {
        let mut aborted = Vec::new();
        let mut cold = false;
        let mut reassign = None;
        let response = match h.function {
            TmfFunction::AbortTask => {
                let found = self
                    .by_itt
                    .get(&h.referenced_task_tag)
                    .copied()
                    .filter(|id| self.tasks.get(id).is_some_and(|t| t.lun == h.lun));
                match found {
                    Some(id) => {
                        aborted.extend(self.abort(id));
                        TmfResponse::FunctionComplete
                    }
                    None => {
                        // RFC 7143 section 11.6.1 b): a task that does not
                        // exist but whose RefCmdSN is inside the window and
                        // before the request's CmdSN is "considered as
                        // received" and answered "Function complete"; c):
                        // otherwise "Task does not exist".
                        let exp = self.window.exp_cmd_sn();
                        let r = h.ref_cmd_sn;
                        if r.in_window(exp, self.window.max_cmd_sn()) && r.precedes(h.cmd_sn) {
                            self.plug(r);
                            TmfResponse::FunctionComplete
                        } else {
                            TmfResponse::TaskDoesNotExist
                        }
                    }
                }
            }
            TmfFunction::AbortTaskSet
            | TmfFunction::ClearTaskSet
            | TmfFunction::LogicalUnitReset => {
                if self.lun_exists(h.lun) {
                    // RFC 7143 section 4.2.3.3 / 11.5.1: the tasks of the
                    // LUN are aborted; aborted tasks get no response. ABORT
                    // TASK SET and CLEAR TASK SET act on "the commands ...
                    // having a CmdSN lower than the task management CmdSN"
                    // (immediate ones included); LOGICAL UNIT RESET "may
                    // affect ... commands from the same session with CmdSN
                    // equal or exceeding CmdSN": all of them.
                    let reset = h.function == TmfFunction::LogicalUnitReset;
                    let ids: Vec<TaskId> = self
                        .tasks
                        .values()
                        .filter(|t| t.lun == h.lun)
                        .filter(|t| reset || t.immediate || t.cmd_sn.precedes(h.cmd_sn))
                        .map(|t| t.id)
                        .collect();
                    for id in ids {
                        aborted.extend(self.abort(id));
                    }
                    TmfResponse::FunctionComplete
                } else {
                    // RFC 7143 section 11.6.1: 2 "LUN does not exist".
                    TmfResponse::LunDoesNotExist
                }
            }
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
                for id in ids {
                    aborted.extend(self.abort(id));
                }
                cold = h.function == TmfFunction::TargetColdReset;
                TmfResponse::FunctionComplete
            }
            // RFC 7143 section 11.5.1 TASK REASSIGN: at ErrorRecoveryLevel
            // 2 the referenced task moves to this connection and goes on
            // after the response; below it, 4 "Task allegiance
            // reassignment not supported" (section 11.6.1).
            TmfFunction::TaskReassign => match self.reassign_check(h.referenced_task_tag) {
                Ok(r) => {
                    reassign = Some(r);
                    TmfResponse::FunctionComplete
                }
                Err(resp) => resp,
            },
            // RFC 7143 section 11.6.1: 5 "Task management function not
            // supported" (CLEAR ACA: ACA is not implemented; unknown codes).
            _ => TmfResponse::NotSupported,
        };
        // Tasks already aborted by an earlier request and still running in
        // the application are covered too: wait for them as well.
        let mut waiting = aborted.clone();
        if response == TmfResponse::FunctionComplete {
            for (&id, &(lun, itt)) in &self.aborting {
                let covered = match h.function {
                    TmfFunction::AbortTask => itt == h.referenced_task_tag && lun == h.lun,
                    TmfFunction::AbortTaskSet
                    | TmfFunction::ClearTaskSet
                    | TmfFunction::LogicalUnitReset => lun == h.lun,
                    TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => true,
                    _ => false,
                };
                if covered && !waiting.contains(&id) {
                    waiting.push(id);
                }
            }
        }
        // RFC 7143 section 11.5.1: an immediate request "must be
        // considered immediately for execution, but the operations
        // involved ... may be postponed to allow the target to receive all
        // relevant tasks": the commands before its CmdSN that were inside
        // the window we advertised (so may legally be on their way).
        let until = match h.function {
            TmfFunction::AbortTaskSet
            | TmfFunction::ClearTaskSet
            | TmfFunction::LogicalUnitReset
            | TmfFunction::TargetWarmReset
            | TmfFunction::TargetColdReset
                if response == TmfResponse::FunctionComplete && h.immediate =>
            {
                let limit = self.window.max_cmd_sn().next();
                Some(if limit.precedes(h.cmd_sn) {
                    limit
                } else {
                    h.cmd_sn
                })
            }
            _ => None,
        };
        self.pending_tmfs.push(PendingTmf {
            req: h,
            response,
            aborted,
            waiting,
            until,
            cold,
            cid: self.conn.cid,
        });
        self.finish_tmfs();
        if let Some(r) = reassign {
            // After the "Function Complete" response: the task's data and
            // status follow on this connection.
            self.reassign_continue(r, h.exp_data_sn);
        }
    }

    /// Aborts this session's tasks on `lun` (every task when `None`)
    /// because task management on ANOTHER session reset the logical unit
    /// or the target (RFC 7143 section 11.5.1: "LOGICAL UNIT RESET, TARGET
    /// WARM RESET and TARGET COLD RESET may affect commands from other
    /// sessions"). Their initiator gets no response for them: the reset
    /// establishes a unit attention instead (SAM-5 5.14, task abort status
    /// off). A task the application took is reported as
    /// [`Event::TaskAborted`] and awaits `abort_acknowledged`; one it has
    /// not seen is withdrawn. Returns how many tasks were aborted.
    pub(crate) fn abort_for_reset(&mut self, lun: Option<u64>) -> usize {
        let ids: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| lun.is_none_or(|l| t.lun == l))
            .map(|t| t.id)
            .collect();
        let n = ids.len();
        for id in ids {
            let _ = self.abort(id);
        }
        n
    }

    /// Considers `sn` received (an aborted command that never arrived).
    fn plug(&mut self, sn: Serial) {
        if sn == self.window.exp_cmd_sn() {
            self.window.advance();
            self.drain_held();
        } else if !self.held.iter().any(|(s, _)| *s == sn) {
            self.held.push((sn, Held::Hole));
        }
    }
}
