//! Full Feature Phase, send side: CmdSN dispatch, SCSI commands with
//! their unsolicited data, text, task management, pings and logout.

use crate::prelude::*;
use crate::time::Instant;

use bytes::Bytes;

use super::*;

impl Session {
    /// Sends queued non-immediate commands while the window is open (RFC
    /// 7143 section 4.2.2.1: non-immediate commands carry CmdSN "from
    /// ExpCmdSN to MaxCmdSN inclusive").
    pub(super) fn dispatch_pending(&mut self, now: Instant) {
        let first_up = self.is_logged_in();
        while let Some(&itt) = self.pending.front() {
            if self.tasks.get(itt).is_none() {
                self.pending.pop_front();
                continue;
            }
            // Only SCSI commands travel on added connections (MC/S); the
            // rest waits for the first connection to be back.
            if !first_up && !matches!(self.tasks.get(itt).map(|t| &t.kind), Some(Kind::Scsi(_))) {
                break;
            }
            let Some(cmd_sn) = self.window.take() else {
                // RFC 7143 section 4.2.2.1: MaxCmdSN reached; the command
                // waits (counted once per stall).
                if !self.window_stalled {
                    self.window_stalled = true;
                    self.stats.window_stalls = self.stats.window_stalls.saturating_add(1);
                }
                break;
            };
            self.window_stalled = false;
            self.pending.pop_front();
            self.quiet_arm(now);
            if let Some(t) = self.tasks.get_mut(itt) {
                t.cmd_sn = Some(cmd_sn);
                if let (Kind::Scsi(_), Some(limit)) = (&t.kind, self.cfg.task_timeout) {
                    let d = later(now, limit);
                    t.deadline = Some(d);
                    let first = self.timers.get(Timer::Task).map_or(d, |e| e.min(d));
                    self.timers.set(Timer::Task, first);
                }
            }
            match self.tasks.get(itt).map(|t| &t.kind) {
                Some(Kind::Scsi(_)) if !self.extra.is_empty() && self.swapped.is_none() => {
                    // MC/S: the application's policy picks the connection
                    // (`session/mcs.rs`).
                    let cid = self.pick_connection();
                    if cid == self.conn.cid
                        || self
                            .on_connection(cid, |s| s.send_scsi(itt, cmd_sn, true))
                            .is_none()
                    {
                        self.send_scsi(itt, cmd_sn, true);
                    }
                }
                Some(Kind::Scsi(_)) => self.send_scsi(itt, cmd_sn, true),
                Some(Kind::Text(_)) => self.send_text(itt, cmd_sn, true),
                _ => {}
            }
        }
    }

    /// Queues the SCSI Command PDU of `itt` (and its unsolicited data).
    /// `new`: it holds a CmdSN just taken from the window (counted until
    /// it leaves, for the CmdSN of immediate commands); a retry (RFC 7143
    /// section 7.2.1) reuses an older one.
    pub(super) fn send_scsi(&mut self, itt: u32, cmd_sn: Serial, new: bool) {
        let epoch = self.conn.mrdsl_epoch;
        let Some(s) = self.scsi_task(itt) else {
            return;
        };
        s.mrdsl_epoch = epoch;
        // Only the fields needed, not a clone of the command: cloning its
        // CDB `Bytes` could allocate on every I/O.
        let cmd = &s.cmd;
        let (lun, attr, expected_read_len) = (cmd.lun.to_u64(), cmd.attr, cmd.expected_read_len);
        // RFC 7143 section 11.3.5: the first 16 bytes in the BHS; section
        // 11.2.2.3: the rest in an Extended CDB AHS.
        let cdb = cmd.cdb.bhs_field();
        let ext_cdb = cmd.cdb.extended();
        let write_buf = cmd.data_out.clone().unwrap_or_default();
        let (imm_ok, initial_r2t, first_burst) = self
            .negotiated
            .as_ref()
            .map(|n| (n.immediate_data, n.initial_r2t, n.first_burst_length))
            .unwrap_or((false, true, 0));
        let write_len = write_buf.len() as u32;
        let write = write_len > 0;
        let read = expected_read_len > 0;
        // RFC 7143 section 13.11 (ImmediateData) and 13.14
        // (FirstBurstLength): immediate data is at most FirstBurstLength
        // and, as any data segment, at most the target's
        // MaxRecvDataSegmentLength.
        let mrdsl = self.conn.target_max_recv_data_segment_length();
        let imm = if write && imm_ok {
            write_len.min(first_burst).min(mrdsl)
        } else {
            0
        };
        // RFC 7143 section 13.10 (InitialR2T=No): unsolicited data up to
        // FirstBurstLength in total, immediate data included.
        let unsol_end = if write && !initial_r2t {
            write_len.min(first_burst).max(imm)
        } else {
            imm
        };
        let mut ahs = Vec::new();
        // RFC 7143 section 11.2.2.3: CDB bytes beyond 16 go in an Extended
        // CDB AHS.
        if let Some(ext) = ext_cdb {
            ahs.push(Ahs::ExtendedCdb(ext));
        }
        // RFC 7143 section 11.2.2.4: a bidirectional command carries the
        // expected read length in an AHS.
        if read && write {
            ahs.push(Ahs::BidiReadLength(expected_read_len));
        }
        let header = w::ScsiCommand {
            immediate: false,
            // RFC 7143 section 11.3.1: F=1 when no unsolicited Data-Out
            // PDUs follow.
            final_pdu: unsol_end == imm,
            read,
            write,
            attr,
            lun,
            itt,
            // RFC 7143 section 11.3.4: for bidirectional commands the
            // write length; else the length of the transfer.
            expected_data_transfer_length: if write { write_len } else { expected_read_len },
            cmd_sn,
            exp_stat_sn: Serial(0),
            cdb,
        };
        self.conn
            .push(header, ahs, write_buf.slice(..imm as usize), new);
        if unsol_end > imm {
            self.conn.queue_data_out(
                itt,
                lun,
                RESERVED_TAG,
                &write_buf,
                imm as usize,
                unsol_end as usize,
                false,
            );
        }
    }

    /// Queues the (next) Text Request of `itt`; `new` as for `send_scsi`.
    pub(super) fn send_text(&mut self, itt: u32, cmd_sn: Serial, new: bool) {
        let Some(Task {
            kind: Kind::Text(t),
            ..
        }) = self.tasks.get_mut(itt)
        else {
            return;
        };
        let (data, ttt) = if t.started {
            // RFC 7143 section 11.10.4: continue with an empty request
            // echoing the target's TTT.
            (Bytes::new(), t.ttt)
        } else {
            t.started = true;
            (t.request.clone(), RESERVED_TAG)
        };
        let req = w::TextRequest {
            immediate: false,
            final_pdu: true,
            cont: false,
            lun: 0,
            itt,
            ttt,
            cmd_sn,
            exp_stat_sn: Serial(0),
        };
        self.conn.push(req, Vec::new(), data, new);
    }

    pub(super) fn send_tmf(
        &mut self,
        itt: u32,
        function: w::TmfFunction,
        lun: u64,
        referenced: u32,
        ref_cmd_sn: Serial,
        exp_data_sn: Serial,
    ) {
        let mut covered = Vec::new();
        if let Some(t) = self.tasks.get_mut(itt) {
            t.cmd_sn = Some(self.window.cmd_sn());
            if let Kind::Tmf { affected, .. } = &t.kind {
                covered.clone_from(affected);
            }
        }
        covered.push(referenced);
        // Until the answer, these may or may not be aborted: never
        // reissued after a connection loss.
        for c in covered {
            if let Some(t) = self.tasks.get_mut(c) {
                t.abort_pending = true;
            }
        }
        // RFC 7143 section 11.5: task management requests go out as
        // immediate commands so a full window cannot block them. They are
        // queued behind what is already queued, not ahead of it: section
        // 11.5.1 has the target act on the commands "with CmdSN lower
        // than the TMF's CmdSN", so a command that holds a lower CmdSN
        // must reach the target before the TMF that may cover it, or the
        // target answers "Function complete" for a task it never saw and
        // then runs it.
        let req = w::TaskMgmtRequest {
            immediate: true,
            function,
            lun,
            itt,
            referenced_task_tag: referenced,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
            ref_cmd_sn,
            exp_data_sn,
        };
        self.conn.push(req, Vec::new(), Bytes::new(), false);
    }

    /// RFC 7143 section 7.3: "The CmdSN of the rejected command PDU (if it
    /// is a non-immediate command) MUST NOT be considered received by the
    /// target ... Upon receiving the Reject, the initiator MUST plug the
    /// CmdSN gap in order to continue to use the session", here "by
    /// aborting the task": an internal ABORT TASK whose RefCmdSN is the
    /// rejected CmdSN, which the target then "consider[s] as received"
    /// (section 11.6.1 b). Without it every later command waits forever.
    pub(super) fn plug_cmd_sn_gap(&mut self, itt: u32) {
        let Some(task) = self.tasks.get(itt) else {
            return;
        };
        let Some(ref_cmd_sn) = task.cmd_sn else {
            return;
        };
        let lun = match &task.kind {
            Kind::Scsi(s) => s.cmd.lun.to_u64(),
            _ => 0,
        };
        let function = w::TmfFunction::AbortTask;
        if let Ok(tmf) = self.new_task(
            Kind::Tmf {
                function,
                affected: Vec::new(),
            },
            true,
        ) {
            self.send_tmf(tmf, function, lun, itt, ref_cmd_sn, Serial(0));
        }
    }

    pub(super) fn send_ping(&mut self, itt: u32, data: Bytes) {
        // RFC 7143 section 11.18: a ping with a valid ITT asks for a NOP-In;
        // TTT 0xffffffff; sent immediate.
        let nop = w::NopOut {
            immediate: true,
            lun: 0,
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
        };
        self.conn.push(nop, Vec::new(), data, false);
    }

    pub(super) fn send_keepalive(&mut self, now: Instant, timeout: Duration) {
        if self.conn.keepalive_task.is_none() {
            if let Ok(itt) = self.new_task(Kind::Nop, true) {
                self.conn.keepalive_task = Some(itt);
                self.send_ping(itt, Bytes::new());
            }
        }
        self.timers.set(Timer::Ping, later(now, timeout));
    }

    pub(super) fn maybe_send_logout(&mut self, now: Instant) {
        let Some(itt) = self.logout_waiting else {
            return;
        };
        // A target-requested logout that a new login follows waits only
        // for what the target holds; queued work goes to the new session.
        if !self.has_user_tasks(self.holds_new_work()) {
            self.send_logout(now, itt);
        }
    }

    pub(super) fn send_logout(&mut self, now: Instant, itt: u32) {
        self.logout_waiting = None;
        self.timers.stop(Timer::LogoutDue);
        self.logout_sent = true;
        if !self.holds_new_work() {
            self.pending.clear();
        }
        if let Some(t) = self.tasks.get_mut(itt) {
            t.cmd_sn = Some(self.window.cmd_sn());
        }
        // RFC 7143 section 11.14: Logout Request, reason 0 "close the
        // session"; sent immediate.
        let req = w::LogoutRequest {
            immediate: true,
            reason: w::LogoutReason::CloseSession,
            itt,
            cid: self.conn.cid,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
        };
        self.conn.push(req, Vec::new(), Bytes::new(), false);
        self.timers
            .set(Timer::Logout, later(now, self.cfg.login_timeout));
    }
}
