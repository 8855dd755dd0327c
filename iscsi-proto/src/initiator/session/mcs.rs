//! Multiple connections per session (MC/S, RFC 7143 section 13.2
//! MaxConnections; section 4.2.1: "a session is a group of TCP
//! connections").
//!
//! The session's first connection (`Session::conn`, CID from the
//! configuration) is driven as before through `handle_connected`,
//! `handle_input`, `poll_transmit` and `handle_closed`. Further
//! connections are added with [`Session::add_connection`] (up to the
//! negotiated MaxConnections) and driven through the `*_on(cid, ..)`
//! twins. Each logs in with the session's ISID and TSIH and a new CID,
//! negotiating only connection keys (section 6.3: LO keys only on the
//! leading connection).
//!
//! Per connection: StatSN and ExpStatSN (section 4.2.2.2: "StatSN is a
//! counter maintained per connection"), digests, MaxRecvDataSegmentLength,
//! the transmit queue. Session-wide: the CmdSN window (section 4.2.2.1:
//! "the CmdSN ... is maintained per session"), the tasks. A task's PDUs
//! stay on the connection its command went out on (connection
//! allegiance, section 4.2.5.1). New commands go out on the connection the
//! configured [`Spread`] picks.
//!
//! The code of the one-connection session runs unchanged on another
//! connection by swapping it into `Session::conn` for the time of one call
//! (`on_connection`). A failure of an added connection is its own: at
//! ErrorRecoveryLevel 2 it is logged out with reason 2 "remove the
//! connection for recovery" on the first connection (section 11.14.1) and
//! its tasks reassigned there with TASK REASSIGN (section 7.2.2); below
//! level 2 its tasks cannot move, so the session recovers as at level 0
//! (section 7.1.5) and every added connection is closed.

use crate::prelude::*;
use crate::time::Instant;

use bytes::BytesMut;

use super::erl2::Reassign;
use super::*;

/// An added connection.
pub(super) struct Extra {
    pub(super) conn: Connection,
    /// The login (TCP connect included) must end by then.
    login_deadline: Instant,
}

impl Session {
    // ------------------------------------------------------------------
    // (C) application actions
    // ------------------------------------------------------------------

    /// Adds a connection to the session (MC/S, RFC 7143 section 13.2):
    /// returns its CID and emits [`Event::OpenConnection`]. Allowed in
    /// Full Feature Phase of a normal session while fewer connections than
    /// the negotiated MaxConnections exist.
    pub fn add_connection(&mut self, now: Instant) -> Result<u16, UsageError> {
        self.tick(now);
        if self.cfg.is_discovery() {
            return Err(UsageError::DiscoverySession);
        }
        if !self.is_logged_in() || self.logout_sent || self.logout_waiting.is_some() {
            return Err(UsageError::NotLoggedIn);
        }
        let max = self.negotiated.as_ref().map_or(1, |n| n.max_connections);
        if 1 + self.extra.len() >= usize::from(max) {
            return Err(UsageError::Connection(
                "the negotiated MaxConnections is reached",
            ));
        }
        let primary = self.conn.cid;
        let Some(cid) = (0..=u16::MAX).find(|c| *c != primary && !self.extra.contains_key(c))
        else {
            return Err(UsageError::Connection("no CID left"));
        };
        self.extra.insert(
            cid,
            Extra {
                conn: Connection::new(cid, now),
                login_deadline: later(now, self.cfg.login_timeout),
            },
        );
        tracing::info!(target: "iscsi::mcs", cid, "adding a connection (RFC 7143 section 13.2)");
        self.events.push_back(Event::OpenConnection {
            cid,
            portal: self.portal.clone(),
        });
        Ok(cid)
    }

    /// Logs out an added connection (RFC 7143 section 11.14.1, reason 1
    /// "close the connection"); the session goes on. The connection must
    /// carry no task. [`Event::CloseConnection`] (cause `None`) follows the
    /// Logout Response.
    pub fn logout_connection(&mut self, now: Instant, cid: u16) -> Result<TaskId, UsageError> {
        self.tick(now);
        if cid == self.conn.cid {
            return Err(UsageError::Connection(
                "the first connection logs out with the session (Session::logout)",
            ));
        }
        if !self.extra.get(&cid).is_some_and(|e| e.conn.is_full()) {
            return Err(UsageError::Connection(
                "no such connection in Full Feature Phase",
            ));
        }
        if self
            .tasks
            .iter()
            .any(|(_, t)| t.allegiance == Some(cid) && !matches!(t.kind, Kind::Nop))
        {
            return Err(UsageError::Connection("tasks are still allegiant to it"));
        }
        let reason = w::LogoutReason::CloseConnection;
        let itt = self.new_task(Kind::ConnLogout { cid, reason }, false)?;
        self.on_connection(cid, |s| s.push_logout(itt, reason, cid));
        self.timers
            .set(Timer::Logout, later(now, self.cfg.login_timeout));
        Ok(TaskId::from_itt(itt))
    }

    // ------------------------------------------------------------------
    // (B) inputs and (D) outputs of one connection
    // ------------------------------------------------------------------

    /// The CIDs of the session's connections: the first one, then the
    /// added ones (in any state).
    pub fn connection_ids(&self) -> Vec<u16> {
        core::iter::once(self.conn.cid)
            .chain(self.extra.keys().copied())
            .collect()
    }

    /// Whether connection `cid` is in Full Feature Phase.
    pub fn is_connection_up(&self, cid: u16) -> bool {
        if cid == self.conn.cid {
            return self.is_logged_in();
        }
        self.extra.get(&cid).is_some_and(|e| e.conn.is_full())
    }

    /// [`handle_connected`](Session::handle_connected) for connection
    /// `cid` (after [`Event::OpenConnection`]).
    pub fn handle_connected_on(&mut self, cid: u16, now: Instant) {
        self.tick(now);
        if cid == self.conn.cid {
            return self.handle_connected(now);
        }
        self.on_connection(cid, |s| {
            if matches!(s.conn.state, ConnState::Connecting) {
                match s.start_login() {
                    Ok(login) => s.conn.state = ConnState::Login(login),
                    Err(e) => s.fail_connection(now, e),
                }
            }
        });
        self.after_connection(now, cid);
        self.after_action(now);
    }

    /// [`handle_input`](Session::handle_input) for connection `cid`.
    pub fn handle_input_on(&mut self, cid: u16, now: Instant, buf: &mut BytesMut) {
        self.tick(now);
        if cid == self.conn.cid {
            return self.handle_input(now, buf);
        }
        if self
            .on_connection(cid, |s| s.input_loop(now, buf))
            .is_none()
        {
            buf.clear();
        }
        self.after_connection(now, cid);
        self.after_action(now);
    }

    /// [`poll_transmit`](Session::poll_transmit) for connection `cid`.
    #[must_use = "a PDU taken from the session must be sent"]
    pub fn poll_transmit_on(&mut self, cid: u16, now: Instant) -> Option<Transmit> {
        self.tick(now);
        if cid == self.conn.cid {
            return self.poll_transmit(now);
        }
        let t = self.on_connection(cid, |s| s.poll_transmit(now)).flatten();
        self.after_connection(now, cid);
        t
    }

    /// [`handle_closed`](Session::handle_closed) for connection `cid`.
    pub fn handle_closed_on(&mut self, cid: u16, now: Instant) {
        self.tick(now);
        if cid == self.conn.cid {
            return self.handle_closed(now);
        }
        if self.extra.contains_key(&cid) {
            self.extra_failed(now, cid, ConnectionError::Closed);
        }
        self.after_action(now);
    }

    // ------------------------------------------------------------------
    // internals
    // ------------------------------------------------------------------

    /// Runs `f` with connection `cid` swapped into `self.conn`.
    pub(super) fn on_connection<R>(
        &mut self,
        cid: u16,
        f: impl FnOnce(&mut Self) -> R,
    ) -> Option<R> {
        if self.swapped.is_some() {
            return None;
        }
        let mut e = self.extra.remove(&cid)?;
        self.parked_numbered = self.extra.values().fold(self.conn.queued_numbered, |n, x| {
            n.saturating_add(x.conn.queued_numbered)
        });
        core::mem::swap(&mut self.conn, &mut e.conn);
        self.swapped = Some(cid);
        let r = f(self);
        self.swapped = None;
        core::mem::swap(&mut self.conn, &mut e.conn);
        self.extra.insert(cid, e);
        Some(r)
    }

    /// What a call on connection `cid` left to do once it is out.
    fn after_connection(&mut self, now: Instant, cid: u16) {
        if let Some(err) = self.deferred_fail.take() {
            self.deferred_close = false;
            self.extra_failed(now, cid, err);
        } else if core::mem::take(&mut self.deferred_close) {
            self.extra.remove(&cid);
            self.drop_pings(cid);
            tracing::info!(target: "iscsi::mcs", cid, "connection logged out");
            self.events
                .push_back(Event::CloseConnection { cid, cause: None });
        }
    }

    /// Non-immediate commands queued on the connections not in `conn`.
    pub(super) fn numbered_elsewhere(&self) -> u32 {
        if self.swapped.is_some() {
            self.parked_numbered
        } else {
            self.extra
                .values()
                .fold(0, |n, x| n.saturating_add(x.conn.queued_numbered))
        }
    }

    /// The connection the next new command goes out on ([`Spread`]).
    pub(super) fn pick_connection(&mut self) -> u16 {
        let mut up: Vec<u16> = Vec::with_capacity(1 + self.extra.len());
        if self.conn.is_full() {
            up.push(self.conn.cid);
        }
        // Not a connection the target asked to log out (AsyncEvent 1),
        // nor one whose Logout Request is out.
        let leaving: Vec<u16> = self
            .tasks
            .iter()
            .filter_map(|(_, t)| match t.kind {
                Kind::ConnLogout { cid, .. } => Some(cid),
                _ => None,
            })
            .collect();
        up.extend(
            self.extra
                .iter()
                .filter(|(c, e)| {
                    e.conn.is_full() && !self.async_logouts.contains(*c) && !leaving.contains(*c)
                })
                .map(|(c, _)| *c),
        );
        let Some(&first) = up.first() else {
            return self.conn.cid;
        };
        match self.cfg.spread {
            Spread::LeastOutstanding => {
                let load = |cid: u16| {
                    self.tasks
                        .iter()
                        .filter(|(_, t)| t.allegiance == Some(cid))
                        .count()
                        + if cid == self.conn.cid {
                            self.conn.queued_numbered as usize
                        } else {
                            self.extra
                                .get(&cid)
                                .map_or(0, |e| e.conn.queued_numbered as usize)
                        }
                };
                up.iter().copied().min_by_key(|c| load(*c)).unwrap_or(first)
            }
            _ => {
                self.rr = self.rr.wrapping_add(1);
                up.get(self.rr % up.len()).copied().unwrap_or(first)
            }
        }
    }

    /// Queues a Logout Request for connection `cid` on `self.conn`.
    fn push_logout(&mut self, itt: u32, reason: w::LogoutReason, cid: u16) {
        let req = w::LogoutRequest {
            immediate: true,
            reason,
            itt,
            cid,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
        };
        self.conn.push(req, Vec::new(), Bytes::new(), false);
    }

    /// The deadline of an added connection: its login's while it logs in;
    /// in Full Feature Phase its keepalive's (the ping's answer is due, or
    /// it has been idle for the keepalive interval).
    fn extra_due(&self, e: &Extra) -> Option<Instant> {
        if !e.conn.is_full() {
            return Some(e.login_deadline);
        }
        if let Some(d) = e.conn.ping_deadline {
            return Some(d);
        }
        // RFC 7143 section 11.14: no new request after our Logout Request.
        if self.logout_sent || self.extra_logging_out(e.conn.cid) {
            return None;
        }
        self.cfg
            .keepalive
            .map(|ka| later(e.conn.last_rx, ka.interval))
    }

    /// AsyncEvent 2 named connection `cid`: an added one is failed once
    /// the current call is over (it may be the one swapped in now).
    pub(super) fn async_drop(&mut self, cid: u16) {
        let added = self.swapped == Some(cid) || self.extra.contains_key(&cid);
        if added && self.async_drops.len() < usize::from(self.cfg.operational.max_connections) {
            self.async_drops.insert(cid);
        }
    }

    /// The added connections an Async Message said the target drops fail
    /// as if their TCP connection had (RFC 7143 section 7.1.4.3).
    pub(super) fn apply_async_drops(&mut self, now: Instant) {
        for cid in core::mem::take(&mut self.async_drops) {
            if self.extra.contains_key(&cid) {
                tracing::info!(target: "iscsi::mcs", cid, "the target drops the connection (AsyncEvent 2)");
                self.extra_failed(now, cid, ConnectionError::Closed);
            }
        }
    }

    /// Added connections the target asked to log out (AsyncEvent 1): once
    /// no task is allegiant to one, its Logout Request (reason 1 "close
    /// the connection", RFC 7143 section 11.14.1) goes out on it; the
    /// other connections go on.
    pub(super) fn apply_async_logouts(&mut self, now: Instant) {
        for cid in core::mem::take(&mut self.async_logouts) {
            if !self.extra.get(&cid).is_some_and(|e| e.conn.is_full()) {
                continue;
            }
            if self.extra_logging_out(cid) {
                continue;
            }
            let busy = self
                .tasks
                .iter()
                .any(|(_, t)| t.allegiance == Some(cid) && !matches!(t.kind, Kind::Nop));
            if busy {
                self.async_logouts.insert(cid);
                continue;
            }
            let reason = w::LogoutReason::CloseConnection;
            if let Ok(itt) = self.new_task(Kind::ConnLogout { cid, reason }, true) {
                tracing::info!(target: "iscsi::mcs", cid, "the target asked to log out this connection (AsyncEvent 1): Logout reason 1");
                self.on_connection(cid, |s| s.push_logout(itt, reason, cid));
                self.timers
                    .set(Timer::Logout, later(now, self.cfg.login_timeout));
            }
        }
    }

    /// The keepalive pings out on connection `cid`, which is gone, end
    /// (internal tasks: no event).
    fn drop_pings(&mut self, cid: u16) {
        let pings: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.allegiance == Some(cid) && matches!(t.kind, Kind::Nop))
            .map(|(i, _)| i)
            .collect();
        for itt in pings {
            self.complete(itt, TaskOutcome::Failed(TaskError::ConnectionLost));
        }
    }

    /// Whether a Logout Request for connection `cid` is out.
    fn extra_logging_out(&self, cid: u16) -> bool {
        self.tasks
            .iter()
            .any(|(_, t)| matches!(t.kind, Kind::ConnLogout { cid: c, .. } if c == cid))
    }

    /// The earliest deadline of an added connection.
    pub(super) fn extra_deadline(&self) -> Option<Instant> {
        self.extra.values().filter_map(|e| self.extra_due(e)).min()
    }

    /// Added connections whose login did not end in time, or whose
    /// keepalive ping was not answered, fail; idle ones are pinged.
    ///
    /// Each connection is watched on its own (RFC 7143 section 4.2.1: a
    /// session is a group of TCP connections, each of which can fail;
    /// section 11.18: the NOP-Out "ping" tests a connection, and its
    /// answer comes on the connection it was sent on, section 4.2.5.1).
    pub(super) fn check_extra_deadlines(&mut self, now: Instant) {
        let due: Vec<(u16, bool)> = self
            .extra
            .iter()
            .filter(|(_, e)| self.extra_due(e).is_some_and(|d| d <= now))
            .map(|(c, e)| (*c, e.conn.is_full() && e.conn.ping_deadline.is_none()))
            .collect();
        for (cid, idle) in due {
            if idle {
                let Some(ka) = self.cfg.keepalive else {
                    continue;
                };
                tracing::debug!(target: "iscsi::mcs", cid, "idle connection: NOP-Out ping (RFC 7143 section 11.18)");
                self.on_connection(cid, |s| {
                    if s.conn.keepalive_task.is_none() {
                        if let Ok(itt) = s.new_task(Kind::Nop, true) {
                            s.conn.keepalive_task = Some(itt);
                            s.send_ping(itt, Bytes::new());
                        }
                    }
                    s.conn.ping_deadline = Some(later(now, ka.timeout));
                });
                continue;
            }
            let kind = if self.extra.get(&cid).is_some_and(|e| e.conn.is_full()) {
                TimerKind::Keepalive
            } else {
                TimerKind::Login
            };
            self.extra_failed(now, cid, ConnectionError::TimedOut(kind));
        }
    }

    /// The final Login Response of an added connection (swapped in).
    pub(super) fn added_login_complete(
        &mut self,
        now: Instant,
        neg: &Negotiated,
        resp: &w::LoginResponse,
    ) -> Result<(), ConnectionError> {
        // RFC 7143 section 11.13.3: the TSIH of the session it joins.
        if resp.tsih != self.tsih {
            return Err(violation(
                "Login Response for an added connection with another TSIH",
                "11.13.3",
            ));
        }
        self.apply_window(resp.exp_cmd_sn, resp.max_cmd_sn);
        self.conn.enter_full_feature(
            Digests {
                header: neg.header_digest,
                data: neg.data_digest,
            },
            neg.initiator_max_recv_data_segment_length,
            neg.target_max_recv_data_segment_length,
        );
        self.conn.logged_in_at = now;
        self.conn.last_rx = now;
        let cid = self.conn.cid;
        tracing::info!(target: "iscsi::mcs", cid, tsih = self.tsih, "connection added to the session");
        self.events.push_back(Event::ConnectionUp { cid });
        Ok(())
    }

    /// Closes every added connection (the session ends or is reinstated).
    pub(super) fn drop_extras(&mut self, cause: Option<ConnectionError>) {
        let cids: Vec<u16> = self.extra.keys().copied().collect();
        self.extra.clear();
        for cid in cids {
            self.events.push_back(Event::CloseConnection {
                cid,
                cause: cause.clone().or(Some(ConnectionError::Closed)),
            });
        }
    }

    /// An added connection failed.
    pub(super) fn extra_failed(&mut self, now: Instant, cid: u16, err: ConnectionError) {
        let Some(e) = self.extra.remove(&cid) else {
            return;
        };
        tracing::warn!(target: "iscsi::mcs", cid, error = %err, "added connection failed");
        self.events.push_back(Event::CloseConnection {
            cid,
            cause: Some(err.clone()),
        });
        // Its own logout, if one was out, is moot.
        let logouts: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.kind, Kind::ConnLogout { cid: c, .. } if c == cid))
            .map(|(i, _)| i)
            .collect();
        for itt in logouts {
            self.complete(itt, TaskOutcome::Failed(TaskError::ConnectionLost));
        }
        self.drop_pings(cid);
        let never_left: BTreeSet<u32> = e
            .conn
            .tx
            .iter()
            .filter_map(|o| match &o.header {
                Header::ScsiCommand(h) => Some(h.itt),
                _ => None,
            })
            .collect();
        let hit: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(itt, t)| t.allegiance == Some(cid) || never_left.contains(itt))
            .map(|(i, _)| i)
            .collect();
        if hit.is_empty() {
            return;
        }
        if self.erl() >= 2 && self.conn_recovery.is_some() {
            // The first connection is being recovered: the tasks wait for
            // it, and this connection's logout too (`reassign_tasks`).
            for itt in hit {
                let Some(t) = self.tasks.get_mut(itt) else {
                    continue;
                };
                if let Kind::Scsi(s) = &mut t.kind {
                    s.outstanding_r2t = 0;
                    s.recovery = None;
                    s.r2t_resync = s.cmd.data_out.is_some();
                    t.allegiance = None;
                    t.reassign = if never_left.contains(&itt) {
                        Reassign::Retry
                    } else {
                        Reassign::Pending
                    };
                } else {
                    self.complete(itt, TaskOutcome::Failed(TaskError::ConnectionLost));
                }
            }
            self.orphans.insert(cid);
            return;
        }
        if self.erl() < 2 || !self.is_logged_in() {
            // RFC 7143 section 7.1.5: below level 2 a task cannot leave its
            // connection: session recovery.
            self.fail_connection(now, err);
            return;
        }
        for itt in hit {
            let Some(t) = self.tasks.get_mut(itt) else {
                continue;
            };
            match &mut t.kind {
                Kind::Scsi(s) if never_left.contains(&itt) => {
                    s.recovery = None;
                    t.allegiance = None;
                    self.retry(itt);
                }
                Kind::Scsi(s) => {
                    s.outstanding_r2t = 0;
                    s.recovery = None;
                    s.r2t_resync = s.cmd.data_out.is_some();
                    t.allegiance = None;
                    t.reassign = Reassign::Pending;
                }
                _ => self.complete(itt, TaskOutcome::Failed(TaskError::ConnectionLost)),
            }
        }
        self.logout_for_recovery(cid);
    }

    /// RFC 7143 section 7.1.4.3: "logout the failed connection with the
    /// reason code 'remove the connection for recovery'", here on the
    /// first connection; the tasks move once it is answered.
    pub(super) fn logout_for_recovery(&mut self, cid: u16) {
        let reason = w::LogoutReason::RemoveForRecovery;
        if let Ok(itt) = self.new_task(Kind::ConnLogout { cid, reason }, true) {
            tracing::info!(target: "iscsi::mcs", cid, "Logout reason 2 (remove the connection for recovery)");
            self.push_logout(itt, reason, cid);
        }
    }

    /// The Logout Response to a connection logout.
    pub(super) fn on_conn_logout(
        &mut self,
        now: Instant,
        itt: u32,
        response: w::LogoutResponseCode,
    ) {
        let Some(Task {
            kind: Kind::ConnLogout { cid, reason },
            ..
        }) = self.tasks.get(itt)
        else {
            return;
        };
        let (cid, reason) = (*cid, *reason);
        self.timers.stop(Timer::Logout);
        self.complete(
            itt,
            TaskOutcome::LoggedOut(LogoutResult {
                response,
                time2wait: 0,
                time2retain: 0,
                answered: true,
            }),
        );
        if reason == w::LogoutReason::CloseConnection {
            if self.swapped == Some(cid) {
                self.deferred_close = true;
            } else if self.extra.remove(&cid).is_some() {
                self.drop_pings(cid);
                self.events
                    .push_back(Event::CloseConnection { cid, cause: None });
            }
            return;
        }
        // Reason 2: the failed connection is out of the session; its
        // tasks move (section 7.2.2). "CID not found" means the target
        // already dropped it: the tasks move all the same.
        let ok = matches!(
            response,
            w::LogoutResponseCode::Success | w::LogoutResponseCode::CidNotFound
        );
        // Every failed connection out first.
        let more = self.tasks.iter().any(|(_, t)| {
            matches!(
                t.kind,
                Kind::ConnLogout {
                    reason: w::LogoutReason::RemoveForRecovery,
                    ..
                }
            )
        });
        if more && ok {
            return;
        }
        let moving: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.reassign == Reassign::Pending)
            .map(|(i, _)| i)
            .collect();
        for task in moving {
            if ok {
                self.send_reassign(task);
            } else {
                self.complete(task, TaskOutcome::Failed(TaskError::OutcomeUnknown));
            }
        }
        self.after_action(now);
    }
}
