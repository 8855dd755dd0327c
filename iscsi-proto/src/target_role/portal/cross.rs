//! What crosses sessions: routing a new connection's first Login Request
//! (RFC 7143 section 6.3.1), session reinstatement (section 6.3.5) and I_T
//! nexus events, and task management that reaches other sessions (section
//! 11.5.1).

use crate::prelude::*;
use bytes::{Bytes, BytesMut};

use super::event::{ConnectionHandle, NexusId, PortalEvent, ResetScope};
use super::{Login, Portal};
use crate::login::{LoginStatus, SessionType};
use crate::target::{CloseReason, Event, Session, Transmit};
use crate::wire::{
    data_trailer, encode_header, Bhs, Digests, Header, Isid, LoginResponse, Stage, TmfFunction,
    BHS_LEN,
};

impl Portal {
    /// RFC 7143 section 6.3.1: a first Login Request with a non-zero TSIH
    /// and the ISID of a live session would add a connection to it, which
    /// is not negotiated here (MaxConnections=1, section 13.2): "Too many
    /// connections" (0x0206, section 11.13.5). A TSIH of no live session
    /// is left to the session ("Session does not exist", 0x020a).
    pub(super) fn route(&self, buf: &[u8]) -> Option<LoginStatus> {
        let bhs = Bhs::new_checked(buf.get(..BHS_LEN)?).ok()?;
        let Ok(Header::LoginRequest(req)) = Header::parse(&bhs) else {
            return None;
        };
        if req.tsih == 0 {
            return None;
        }
        let existing = self.conns.iter().flatten().any(|c| {
            c.tsih == req.tsih
                && !c.session.is_closed()
                && c.login
                    .as_ref()
                    .is_some_and(|l| l.isid == req.isid && l.session_type == SessionType::Normal)
        });
        existing.then_some(LoginStatus::TooManyConnections)
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
        let Some(c) = self.conn_mut(h) else {
            return;
        };
        c.session.close_now();
        // The session never saw a byte: its Closed event is replaced.
        while c.session.poll_event().is_some() {}
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

    /// Moves the session events of `h` to the portal's queue, acting on
    /// those that span sessions.
    pub(super) fn drain(&mut self, h: ConnectionHandle) {
        while let Some(ev) = self.conn_mut(h).and_then(|c| c.session.poll_event()) {
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
            Event::Command(request) => PortalEvent::Command {
                connection: h,
                nexus,
                request,
            },
            Event::TaskAborted { task } => {
                // Its Command event may still wait in the portal's queue
                // (the session handed it over already): withdraw it, so
                // the application never executes an aborted command, and
                // acknowledge the abort on its behalf.
                let queued = self.events.iter().position(|e| {
                    matches!(e, PortalEvent::Command { connection, request, .. }
                        if *connection == h && request.task == task)
                });
                if let Some(i) = queued {
                    self.events.remove(i);
                    if let Some(c) = self.conn_mut(h) {
                        let _ = c.session.abort_acknowledged(task);
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
        if let Some(c) = self.conn_mut(h) {
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
        for old in others {
            let live = self.session(old).is_some_and(|s| !s.is_closed());
            if !live {
                continue;
            }
            self.events.push_back(PortalEvent::SessionReinstated {
                nexus,
                initiator_name: name.clone(),
                isid,
                old,
                new,
            });
            self.close_now(old);
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
        let mut affected = Vec::new();
        for (i, c) in self.conns.iter_mut().enumerate() {
            if let Some(c) = c {
                if ConnectionHandle(i) != h && c.session.abort_for_reset(lun_filter) > 0 {
                    affected.push(ConnectionHandle(i));
                }
            }
        }
        for o in affected {
            // Their `TaskAborted` events reach the application now.
            self.drain(o);
            self.touch(o);
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
