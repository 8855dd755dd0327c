//! What crosses sessions: routing a new connection's first Login Request
//! (RFC 7143 section 6.3.1), session reinstatement (section 6.3.5) and I_T
//! nexus events, and task management that reaches other sessions (section
//! 11.5.1).

use crate::prelude::*;
use bytes::{Bytes, BytesMut};

use super::event::{ConnectionHandle, NexusId, PortalEvent, ResetScope};
use super::{Login, Portal, Route};
use crate::login::{LoginStatus, SessionType};
use crate::target::{CloseReason, Event, Session, Transmit};
use crate::wire::{
    data_trailer, encode_header, Bhs, Digests, Header, Isid, LoginResponse, Stage, TmfFunction,
    BHS_LEN,
};

impl Portal {
    /// RFC 7143 section 6.3.1: a first Login Request with a non-zero TSIH
    /// and the ISID of a live Normal session joins it when the session can
    /// take the connection (see [`Portal::join_allowed`]), else is refused
    /// with "Too many connections" (0x0206, section 11.13.5). A TSIH of
    /// no live session is left to the session ("Session does not exist",
    /// 0x020a).
    pub(super) fn route(&self, buf: &[u8]) -> Option<Route> {
        let bhs = Bhs::new_checked(buf.get(..BHS_LEN)?).ok()?;
        let Ok(Header::LoginRequest(req)) = Header::parse(&bhs) else {
            return None;
        };
        if req.tsih == 0 {
            return None;
        }
        let slot = self.conns.iter().flatten().find_map(|c| {
            let ok = c.tsih == req.tsih
                && c.login
                    .as_ref()
                    .is_some_and(|l| l.isid == req.isid && l.session_type == SessionType::Normal)
                && self
                    .sessions
                    .get(c.session)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| !s.is_finished());
            ok.then_some(c.session)
        })?;
        let s = self.sessions.get(slot).and_then(Option::as_ref)?;
        Some(if join_allowed(s, req.cid) {
            Route::Join(slot)
        } else {
            Route::Refuse(LoginStatus::TooManyConnections)
        })
    }

    /// Prepares the fresh session of `h` to log in into session `target`.
    pub(super) fn prepare_join(&mut self, h: ConnectionHandle, target: usize) {
        let Some((tsih, window)) = self
            .sessions
            .get(target)
            .and_then(Option::as_ref)
            .map(|s| (s.tsih(), s.window()))
        else {
            return;
        };
        if let Ok(s) = self.session_mut(h) {
            s.expect_join(tsih, window);
        }
        if let Some(c) = self.conn_mut(h) {
            c.tsih = tsih;
        }
        self.joins.push((h, target));
    }

    /// Answers the first Login Request with a non-zero Status-Class and
    /// closes the connection (RFC 7143 section 11.13.5: "the initiator and
    /// target MUST close the TCP connection").
    pub(super) fn refuse(&mut self, h: ConnectionHandle, buf: &mut BytesMut, status: LoginStatus) {
        let header = Bhs::new_checked(buf.get(..BHS_LEN).unwrap_or(&[]))
            .ok()
            .and_then(|b| Header::parse(&b).ok());
        buf.clear();
        let Some(Header::LoginRequest(req)) = header else {
            return;
        };
        let (class, detail) = status.raw();
        let seed = self.take_seed();
        let response = Header::LoginResponse(LoginResponse {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: Stage::Security,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            // RFC 7143 section 11.13.3: "this field should be set to the
            // TSIH provided by the initiator".
            tsih: req.tsih,
            itt: req.itt,
            stat_sn: crate::wire::Serial(seed as u32),
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn,
            status_class: class,
            status_detail: detail,
        });
        let mut out = BytesMut::new();
        if encode_header(&mut out, &response, &[], 0, Digests::NONE).is_err() {
            return;
        }
        if let Ok(s) = self.session_mut(h) {
            s.close_now();
            // The session never saw a byte: its Closed event is replaced.
            while s.poll_event().is_some() {}
        }
        let Some(c) = self.conn_mut(h) else {
            return;
        };
        c.refusal = Some(Transmit::new(
            &out,
            Bytes::new(),
            data_trailer(&[], Digests::NONE),
        ));
        let initiator_name = None;
        self.events.push_back(PortalEvent::LoginFailed {
            connection: h,
            status,
            initiator_name,
        });
        self.events.push_back(PortalEvent::Closed {
            connection: h,
            reason: CloseReason::LoginFailed(status),
        });
    }

    /// Moves the session events of `h`'s session to the portal's queue,
    /// acting on those that span sessions.
    pub(super) fn drain(&mut self, h: ConnectionHandle) {
        if let Some(slot) = self.conn(h).map(|c| c.session) {
            self.drain_session(slot, Some(h));
        }
    }

    /// Moves the events of session `slot`, each named by the handle of the
    /// connection it concerns (`fallback`, or any of the session's, when
    /// that connection has none any more).
    pub(super) fn drain_session(&mut self, slot: usize, fallback: Option<ConnectionHandle>) {
        // `poll_event_on` changes the session: keep its deadline indexed.
        self.deadlines.mark(slot);
        loop {
            let Some((cid, ev)) = self
                .sessions
                .get_mut(slot)
                .and_then(Option::as_mut)
                .and_then(Session::poll_event_on)
            else {
                break;
            };
            let handles = self.handles_of(slot);
            let named = handles
                .iter()
                .copied()
                .find(|&o| {
                    self.conn(o)
                        .is_some_and(|c| c.cid == Some(cid) && !c.removed)
                })
                .or_else(|| {
                    handles
                        .iter()
                        .copied()
                        .find(|&o| self.conn(o).is_some_and(|c| c.cid == Some(cid)))
                })
                .or(fallback)
                .or_else(|| handles.first().copied());
            let Some(h) = named else {
                continue;
            };
            self.on_event(h, ev);
        }
    }

    fn on_event(&mut self, h: ConnectionHandle, ev: Event) {
        let nexus = self.nexus(h).unwrap_or(NexusId(0));
        let out = match ev {
            Event::LoggedIn {
                session_type,
                initiator_name,
                target_name,
                isid,
                tsih,
                negotiated,
            } => {
                if let Some(i) = self.joins.iter().position(|(j, _)| *j == h) {
                    let (_, target) = self.joins.swap_remove(i);
                    self.join(h, target);
                    return;
                }
                self.logged_in(h, session_type, &initiator_name, isid);
                let nexus = self.nexus(h);
                self.events.push_back(PortalEvent::LoggedIn {
                    connection: h,
                    nexus,
                    session_type,
                    initiator_name: initiator_name.clone(),
                    target_name,
                    isid,
                    tsih,
                    negotiated,
                });
                if let Some(nexus) = nexus {
                    self.nexus_up(h, nexus, initiator_name, isid);
                }
                return;
            }
            Event::LoginFailed { status } => PortalEvent::LoginFailed {
                connection: h,
                status,
                initiator_name: self
                    .session(h)
                    .and_then(Session::initiator_name)
                    .map(str::to_owned),
            },
            Event::Command(request) => {
                if let Some(c) = self.conn_mut(h) {
                    c.held = c.held.saturating_add(1);
                }
                PortalEvent::Command {
                    connection: h,
                    nexus,
                    request,
                }
            }
            Event::TaskAborted { task } => {
                // Its Command event may still wait in the portal's queue
                // (the session handed it over already): withdraw it, so
                // the application never executes an aborted command, and
                // acknowledge the abort on its behalf.
                let slot = self.conn(h).map(|c| c.session);
                let queued = self.events.iter().position(|e| {
                    matches!(e, PortalEvent::Command { connection, request, .. }
                        if request.task == task
                            && self.conn(*connection).map(|c| c.session) == slot)
                });
                if let Some(i) = queued {
                    if let Some(PortalEvent::Command { connection, .. }) = self.events.remove(i) {
                        self.answered(connection);
                    }
                    if let Ok(s) = self.session_mut(h) {
                        let _ = s.abort_acknowledged(task);
                    }
                    self.touch(h);
                    return;
                }
                PortalEvent::TaskAborted {
                    connection: h,
                    task,
                }
            }
            Event::TaskManagement {
                function,
                lun,
                aborted,
            } => {
                self.events.push_back(PortalEvent::TaskManagement {
                    connection: h,
                    nexus,
                    function,
                    lun,
                    aborted,
                });
                self.task_management(h, nexus, function, lun);
                return;
            }
            Event::LoggedOut => PortalEvent::LoggedOut { connection: h },
            Event::Closed { reason } => PortalEvent::Closed {
                connection: h,
                reason,
            },
        };
        self.events.push_back(out);
    }

    fn logged_in(
        &mut self,
        h: ConnectionHandle,
        session_type: SessionType,
        name: &str,
        isid: Isid,
    ) {
        let nexus = (session_type == SessionType::Normal).then(|| NexusId::of(name, isid));
        let cid = self.session(h).map(Session::cid);
        if let Some(c) = self.conn_mut(h) {
            c.cid = cid;
            c.login = Some(Login {
                session_type,
                isid,
                nexus,
            });
        }
    }

    /// A Normal session of `nexus` logged in on `new`: RFC 7143 section
    /// 6.3.5, "Session reinstatement is the process of the initiator
    /// logging in with an ISID that is possibly active from the target's
    /// perspective. Thus implicitly logging out the session that
    /// corresponds to the ISID and reinstating a new iSCSI session in its
    /// place (with the same ISID). [...] Session reinstatement causes all
    /// the tasks that were active on the old session to be immediately
    /// terminated by the target without further notice to the initiator."
    /// Done once the new login succeeded, so that a login that fails
    /// (e.g. authentication) leaves the old session alone.
    fn nexus_up(&mut self, new: ConnectionHandle, nexus: NexusId, name: String, isid: Isid) {
        let others: Vec<ConnectionHandle> = self.sessions_of(nexus, Some(new)).collect();
        if others.is_empty() {
            self.events.push_back(PortalEvent::NexusCreated {
                nexus,
                initiator_name: name,
                isid,
            });
            return;
        }
        let mut seen = Vec::new();
        // The session's own slot (a joining connection never gets here).
        if let Some(slot) = self.conn(new).map(|c| c.session) {
            seen.push(slot);
        }
        // Live connections first, so that the event names one of those.
        let mut others = others;
        others.sort_by_key(|&o| self.conn(o).is_some_and(|c| c.removed || c.replaced));
        for old in others {
            let Some(slot) = self.conn(old).map(|c| c.session) else {
                continue;
            };
            let live = self.session(old).is_some_and(|s| !s.is_finished());
            if !live || seen.contains(&slot) {
                continue;
            }
            seen.push(slot);
            self.events.push_back(PortalEvent::SessionReinstated {
                nexus,
                initiator_name: name.clone(),
                isid,
                old,
                new,
            });
            // Every connection of the old session closes, and tasks kept
            // for connection recovery end with it (section 6.3.5).
            if let Some(s) = self.sess_mut(slot) {
                s.close_now();
            }
            self.drain_session(slot, Some(old));
            for o in self.handles_of(slot) {
                self.touch(o);
            }
            self.reap(slot);
        }
    }

    /// Connections (other than `except`) whose Normal session logged in on
    /// `nexus`, closed or not, until removed.
    pub(super) fn sessions_of(
        &self,
        nexus: NexusId,
        except: Option<ConnectionHandle>,
    ) -> impl Iterator<Item = ConnectionHandle> + '_ {
        self.conns.iter().enumerate().filter_map(move |(i, c)| {
            let h = ConnectionHandle(i);
            let on = c
                .as_ref()
                .and_then(|c| c.login.as_ref())
                .is_some_and(|l| l.nexus == Some(nexus));
            (on && Some(h) != except).then_some(h)
        })
    }

    /// Task management that reaches beyond the session it came on (RFC
    /// 7143 section 11.5.1: "LOGICAL UNIT RESET, TARGET WARM RESET and
    /// TARGET COLD RESET may affect commands from other sessions").
    fn task_management(
        &mut self,
        h: ConnectionHandle,
        by: NexusId,
        function: TmfFunction,
        lun: u64,
    ) {
        let scope = match function {
            TmfFunction::LogicalUnitReset => ResetScope::LogicalUnit(lun),
            TmfFunction::TargetWarmReset => ResetScope::Target { cold: false },
            TmfFunction::TargetColdReset => ResetScope::Target { cold: true },
            _ => return,
        };
        // SAM-5 6.3.3 / 5.14: the reset establishes a unit attention for
        // every I_T nexus, including the one it came through.
        let mut nexuses: Vec<NexusId> = self
            .conns
            .iter()
            .flatten()
            .filter_map(|c| c.login.as_ref().and_then(|l| l.nexus))
            .chain(core::iter::once(by).filter(|n| n.0 != 0))
            .collect();
        nexuses.sort_unstable();
        nexuses.dedup();
        // RFC 7143 section 11.5.1: the reset "may affect commands from
        // other sessions": their tasks on the logical unit (all of them
        // for a target reset) are aborted too. The issuing session aborted
        // its own while handling the request.
        let lun_filter = match scope {
            ResetScope::LogicalUnit(l) => Some(l),
            ResetScope::Target { .. } => None,
        };
        let own = self.conn(h).map(|c| c.session);
        let mut affected = Vec::new();
        for (i, s) in self.sessions.iter_mut().enumerate() {
            if let Some(s) = s {
                if Some(i) != own {
                    // Its deadline may move (rare: a reset).
                    self.deadlines.mark(i);
                    if s.abort_for_reset(lun_filter) > 0 {
                        affected.push(i);
                    }
                }
            }
        }
        for slot in affected {
            // Their `TaskAborted` events reach the application now.
            self.drain_session(slot, None);
            for o in self.handles_of(slot) {
                self.touch(o);
            }
        }
        self.events
            .push_back(PortalEvent::Reset { scope, by, nexuses });
        if scope == (ResetScope::Target { cold: true }) {
            // RFC 7143 section 11.5.1: "For the TARGET COLD RESET function,
            // the target MUST then close all of its TCP connections to all
            // initiators (terminates all sessions)." The issuing session
            // closes itself after its response.
            let others: Vec<ConnectionHandle> = (0..self.conns.len())
                .map(ConnectionHandle)
                .filter(|&o| o != h && !self.is_closed(o))
                .collect();
            for o in others {
                self.close_now(o);
            }
        }
    }
}

/// Whether session `s` takes a further connection with `cid` (RFC 7143
/// section 6.3.1): a CID it has (connection reinstatement, section 6.3.4)
/// at ErrorRecoveryLevel 1 or 2, or a new CID while it has fewer live
/// connections than the MaxConnections it negotiated (section 13.2). The
/// default configuration (MaxConnections 1, level 0) takes none.
fn join_allowed(s: &Session, cid: u16) -> bool {
    let Some(n) = s.negotiated() else {
        return false;
    };
    let has_cid = s.has_cid(cid);
    if has_cid {
        return n.error_recovery_level >= 1;
    }
    s.live_connections() < usize::from(n.max_connections)
}

impl Portal {
    /// A joining connection logged in: its connection moves into the
    /// session it joined (RFC 7143 section 6.3.1), its own slot is freed.
    fn join(&mut self, h: ConnectionHandle, target: usize) {
        let Some(own) = self.conn(h).map(|c| c.session) else {
            return;
        };
        self.deadlines.mark(own);
        let Some(joining) = self.sessions.get_mut(own).and_then(Option::take) else {
            return;
        };
        self.free_sessions.push(own);
        let cid = joining.cid();
        // The connection it reinstates (same CID), if still open.
        let replaced: Vec<ConnectionHandle> = self
            .handles_of(target)
            .into_iter()
            .filter(|&o| self.conn(o).is_some_and(|c| c.cid == Some(cid)))
            .collect();
        let Some(s) = self.sess_mut(target) else {
            return;
        };
        s.add_connection(joining);
        let tsih = s.tsih();
        let login = replaced
            .first()
            .or(self.handles_of(target).first())
            .and_then(|&o| self.conn(o))
            .and_then(|c| c.login.clone());
        for o in &replaced {
            // Section 6.3.4: the old connection with that CID is over; its
            // handle no longer names the CID.
            if let Some(c) = self.conn_mut(*o) {
                c.cid = None;
                c.replaced = true;
                c.refusal = None;
            }
        }
        if let Some(c) = self.conn_mut(h) {
            c.session = target;
            c.cid = Some(cid);
            c.login = login;
        }
        self.events.push_back(PortalEvent::ConnectionJoined {
            connection: h,
            tsih,
            cid,
            reinstated: replaced.first().copied(),
        });
        self.drain_session(target, Some(h));
        for o in replaced {
            self.touch(o);
        }
    }
}
