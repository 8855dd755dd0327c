//! Sessions of several connections on the target `Portal` (RFC 7143
//! section 13.2 MaxConnections, 6.3.1 adding a connection, 6.4 connection
//! allegiance, 11.14 logout of one connection) and ErrorRecoveryLevel 2
//! (sections 7.1.5, 6.3.4 connection reinstatement, 11.5.1 TASK
//! REASSIGN, DefaultTime2Retain). Each test quotes its rule.

mod target_support;

use iscsi_proto::time::Instant;
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_proto::login::{LoginStatus, OperationalParams};
use iscsi_proto::scsi::ScsiStatus;
use iscsi_proto::target::{
    CloseReason, ConnectionHandle, Portal, PortalConfig, PortalEvent, SessionConfig, TaskId,
};
use iscsi_proto::wire::*;
use target_support::{kv, pattern, INITIATOR, TARGET};

const NO_TAG: u32 = 0xffff_ffff;

fn portal(erl: u8, max_conns: u16) -> Portal {
    let mut s = SessionConfig::new(TARGET);
    s.params = OperationalParams::default();
    s.params.error_recovery_level = erl;
    s.params.max_connections = max_conns;
    s.params.default_time2wait = 1;
    s.params.default_time2retain = 5;
    Portal::new(PortalConfig::new(s), 11).unwrap()
}

/// A scripted initiator: one session, several connections.
struct Ini {
    isid: Isid,
    tsih: u16,
    cmd_sn: Serial,
    itt: u32,
    now: Instant,
    /// The application's side: Command events seen per ITT (an oracle of
    /// "no command executes twice") and their task / connection.
    executed: BTreeMap<u32, usize>,
    tasks: BTreeMap<u32, (ConnectionHandle, TaskId)>,
    other: Vec<PortalEvent>,
}

impl Ini {
    fn new() -> Ini {
        Ini {
            isid: Isid::from_fields(0, 1, 2, 3, 9),
            tsih: 0,
            cmd_sn: Serial(10),
            itt: 100,
            now: Instant::from_millis(1_000_000),
            executed: BTreeMap::new(),
            tasks: BTreeMap::new(),
            other: Vec::new(),
        }
    }

    fn send(&mut self, p: &mut Portal, h: ConnectionHandle, hd: impl Into<Header>, data: Bytes) {
        let mut buf = BytesMut::new();
        Pdu::new(hd, data).encode(&mut buf, Digests::NONE).unwrap();
        p.handle_input(h, self.now, &mut buf);
        self.pump(p);
    }

    /// Moves the portal's events into the application's books.
    fn pump(&mut self, p: &mut Portal) {
        while let Some(e) = p.poll_event() {
            match e {
                PortalEvent::Command {
                    connection,
                    request,
                    ..
                } => {
                    *self.executed.entry(request.itt).or_default() += 1;
                    self.tasks.insert(request.itt, (connection, request.task));
                }
                other => self.other.push(other),
            }
        }
    }

    fn recv(&mut self, p: &mut Portal, h: ConnectionHandle) -> Vec<Pdu> {
        let mut dec = PduDecoder::new(DecoderConfig {
            digests: Digests::NONE,
            max_data_segment_length: 0x00ff_ffff,
        });
        let mut buf = BytesMut::new();
        while let Some(t) = p.poll_transmit(h, self.now) {
            t.write_to(&mut buf);
        }
        std::iter::from_fn(|| dec.decode(&mut buf).unwrap()).collect()
    }

    /// Logs a connection in with `cid` (TSIH 0 for the first).
    fn connect(
        &mut self,
        p: &mut Portal,
        cid: u16,
        erl: &str,
        max: &str,
    ) -> (ConnectionHandle, LoginResponse) {
        let h = p.accept(self.now, None).unwrap();
        let req = LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: self.tsih,
            itt: 1,
            cid,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: Serial(0),
        };
        let mut keys = vec![
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
        ];
        if self.tsih == 0 {
            keys.push(("ErrorRecoveryLevel", erl));
            keys.push(("MaxConnections", max));
            keys.push(("DefaultTime2Wait", "1"));
            keys.push(("DefaultTime2Retain", "5"));
        }
        self.send(p, h, req, kv(&keys));
        let r = self.recv(p, h);
        let Header::LoginResponse(resp) = r[0].header else {
            panic!("{r:?}")
        };
        if resp.status_class == 0 {
            self.tsih = resp.tsih;
        }
        (h, resp)
    }

    fn read(&mut self, p: &mut Portal, h: ConnectionHandle, len: u32) -> u32 {
        self.cmd(p, h, true, len, self.cmd_sn)
    }

    fn cmd(
        &mut self,
        p: &mut Portal,
        h: ConnectionHandle,
        read: bool,
        len: u32,
        sn: Serial,
    ) -> u32 {
        self.itt += 1;
        let mut cdb = [0u8; 16];
        cdb[0] = if read { 0x28 } else { 0x2a };
        let c = ScsiCommand {
            immediate: false,
            final_pdu: true,
            read,
            write: !read,
            attr: TaskAttr::Simple,
            lun: 0,
            itt: self.itt,
            expected_data_transfer_length: len,
            cmd_sn: sn,
            exp_stat_sn: Serial(0),
            cdb,
        };
        if sn == self.cmd_sn {
            self.cmd_sn = sn.next();
        }
        self.send(p, h, c, Bytes::new());
        self.itt
    }

    fn reassign(&mut self, p: &mut Portal, h: ConnectionHandle, itt: u32, exp_data_sn: u32) {
        self.itt += 1;
        let req = TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::TaskReassign,
            lun: 0,
            itt: self.itt,
            referenced_task_tag: itt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: Serial(0),
            ref_cmd_sn: Serial(0),
            exp_data_sn: Serial(exp_data_sn),
        };
        self.send(p, h, req, Bytes::new());
    }

    fn complete(&mut self, p: &mut Portal, itt: u32, data: Bytes) {
        let (h, task) = self.tasks[&itt];
        p.complete(h, task, ScsiStatus::Good, None, data).unwrap();
        self.pump(p);
    }
}

fn tmf_response(pdus: &[Pdu]) -> TmfResponse {
    pdus.iter()
        .find_map(|p| match p.header {
            Header::TaskMgmtResponse(r) => Some(r.response),
            _ => None,
        })
        .expect("a Task Management response")
}

/// The read data and the status of `itt` among `pdus`.
fn read_result(pdus: &[Pdu], itt: u32) -> (Bytes, Option<u8>) {
    let mut data = BytesMut::new();
    let mut status = None;
    for p in pdus {
        match p.header {
            Header::DataIn(d) if d.itt == itt => {
                data.extend_from_slice(&p.data);
                if let Some(s) = d.status {
                    status = Some(s.status);
                }
            }
            Header::ScsiResponse(r) if r.itt == itt => status = Some(r.status),
            _ => {}
        }
    }
    (data.freeze(), status)
}

#[test]
fn a_second_connection_joins_and_commands_are_ordered_session_wide() {
    // RFC 7143 section 6.3.1: a Login with a non-zero TSIH "instantiates a
    // new connection in an existing session"; section 4.2.2.1: "CmdSN ...
    // is session-wide" and the target delivers commands in CmdSN order;
    // section 6.4: "the target MUST send the requested data, if any,
    // followed by the status to the initiator over the same TCP connection
    // that was used to deliver the SCSI command"; section 4.2.2.2:
    // "StatSN is a counter maintained per connection".
    let mut p = portal(0, 4);
    let mut ini = Ini::new();
    let (a, ra) = ini.connect(&mut p, 1, "0", "4");
    assert_eq!(ra.status_class, 0);
    let (b, rb) = ini.connect(&mut p, 2, "0", "4");
    assert_eq!((rb.status_class, rb.tsih), (0, ra.tsih));
    assert!(ini
        .other
        .iter()
        .any(|e| matches!(e, PortalEvent::ConnectionJoined { connection, cid: 2, .. } if *connection == b)));
    // CmdSN n+1 on A arrives first: held until n arrives on B.
    let n = ini.cmd_sn;
    let first = ini.cmd(&mut p, a, true, 512, n.next());
    assert!(ini.executed.is_empty());
    let second = ini.cmd(&mut p, b, true, 512, n);
    ini.cmd_sn = n.next().next();
    assert_eq!(ini.executed.len(), 2);
    assert_eq!(ini.tasks[&first].0, a);
    assert_eq!(ini.tasks[&second].0, b);
    ini.complete(&mut p, first, pattern(512));
    ini.complete(&mut p, second, pattern(512));
    let on_a = ini.recv(&mut p, a);
    let on_b = ini.recv(&mut p, b);
    assert_eq!(read_result(&on_a, first), (pattern(512), Some(0)));
    assert_eq!(read_result(&on_a, second).0.len(), 0);
    assert_eq!(read_result(&on_b, second), (pattern(512), Some(0)));
    // Each connection numbers its own responses from its login's StatSN.
    let st = |pdus: &[Pdu]| match pdus[0].header {
        Header::DataIn(d) => d.status.unwrap().stat_sn,
        ref o => panic!("{o:?}"),
    };
    assert_eq!(st(&on_a), ra.stat_sn.next());
    assert_eq!(st(&on_b), rb.stat_sn.next());
}

#[test]
fn more_connections_than_negotiated_are_refused() {
    // RFC 7143 section 13.2: MaxConnections "Initiator and target
    // negotiate the maximum number of connections"; section 11.13.5:
    // 0x0206 "Too many connections on this SSID".
    let mut p = portal(0, 2);
    let mut ini = Ini::new();
    ini.connect(&mut p, 1, "0", "4");
    let (_, r) = ini.connect(&mut p, 2, "0", "4");
    assert_eq!(r.status_class, 0);
    let (_, r) = ini.connect(&mut p, 3, "0", "4");
    assert_eq!(
        LoginStatus::from_raw(r.status_class, r.status_detail),
        LoginStatus::TooManyConnections
    );
}

#[test]
fn logout_of_one_connection_keeps_the_session() {
    // RFC 7143 section 11.14: reason 1 "close the connection" (for the CID
    // given) vs 0 "close the session"; the connection's active commands
    // are terminated, the session goes on.
    let mut p = portal(1, 4);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "1", "4");
    let (b, _) = ini.connect(&mut p, 2, "1", "4");
    let on_b = ini.read(&mut p, b, 512);
    ini.itt += 1;
    let lo = LogoutRequest {
        immediate: true,
        reason: LogoutReason::CloseConnection,
        itt: ini.itt,
        cid: 2,
        cmd_sn: ini.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    ini.send(&mut p, a, lo, Bytes::new());
    let r = ini.recv(&mut p, a);
    assert!(
        matches!(r[0].header, Header::LogoutResponse(l) if l.response == LogoutResponseCode::Success)
    );
    assert!(p.is_closed(b));
    assert!(!p.is_closed(a));
    let (_, task) = ini.tasks[&on_b];
    assert!(ini
        .other
        .iter()
        .any(|e| matches!(e, PortalEvent::TaskAborted { task: t, .. } if *t == task)));
    assert!(ini.other.iter().any(|e| matches!(e,
        PortalEvent::Closed { connection, reason: CloseReason::LoggedOutElsewhere } if *connection == b)));
    // The session still serves A.
    let x = ini.read(&mut p, a, 512);
    ini.complete(&mut p, x, pattern(512));
    assert_eq!(read_result(&ini.recv(&mut p, a), x).1, Some(0));
}

#[test]
fn task_reassign_answers_from_retained_status_without_executing_again() {
    // RFC 7143 section 7.2.2 (3720 6.2.2): "a reassignment request implies
    // that the task is still considered in progress by the initiator and
    // the target must conclude the task appropriately ... MUST involve the
    // (re)transmission of the status PDU"; the command is not executed
    // again (the oracle: count executions at the LU).
    let mut p = portal(2, 1);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "1");
    let itt = ini.read(&mut p, a, 2048);
    ini.complete(&mut p, itt, pattern(2048));
    // The Data-In and status were lost with the connection.
    p.handle_closed(a, ini.now);
    ini.pump(&mut p);
    assert!(p.is_closed(a));
    p.remove(a);
    // Connection reinstatement with the same CID (section 6.3.4).
    let (b, r) = ini.connect(&mut p, 1, "2", "1");
    assert_eq!(r.status_class, 0, "{r:?}");
    ini.reassign(&mut p, b, itt, 0);
    let pdus = ini.recv(&mut p, b);
    assert_eq!(tmf_response(&pdus), TmfResponse::FunctionComplete);
    assert_eq!(read_result(&pdus, itt), (pattern(2048), Some(0)));
    assert_eq!(ini.executed[&itt], 1);
}

#[test]
fn a_task_completed_while_its_connection_is_down_is_answered_on_reassignment() {
    // RFC 7143 section 7.1.5 / 6.3.4: at ErrorRecoveryLevel 2 the failed
    // connection's tasks wait for reassignment; section 11.5.1 TASK
    // REASSIGN; section 11.6.1: 3 "Task still allegiant" while its own
    // connection is alive.
    let mut p = portal(2, 2);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "2");
    let (b, _) = ini.connect(&mut p, 2, "2", "2");
    let itt = ini.read(&mut p, a, 1024);
    ini.reassign(&mut p, b, itt, 0);
    assert_eq!(
        tmf_response(&ini.recv(&mut p, b)),
        TmfResponse::TaskStillAllegiant
    );
    p.handle_closed(a, ini.now);
    ini.pump(&mut p);
    p.remove(a);
    // The application finishes the command meanwhile, on the handle it got.
    ini.complete(&mut p, itt, pattern(1024));
    assert!(ini.recv(&mut p, b).is_empty());
    ini.reassign(&mut p, b, itt, 0);
    let pdus = ini.recv(&mut p, b);
    assert_eq!(tmf_response(&pdus), TmfResponse::FunctionComplete);
    assert_eq!(read_result(&pdus, itt), (pattern(1024), Some(0)));
    assert_eq!(ini.executed[&itt], 1);
}

#[test]
fn time2retain_expiry_aborts_the_tasks_and_ends_the_session() {
    // RFC 7143 section 13.16 DefaultTime2Retain: "the maximum time ...
    // after an initial wait (Time2Wait) ... before all active tasks are
    // terminated"; then the session state is gone (a later login with its
    // TSIH: "Session does not exist", 0x020a).
    let mut p = portal(2, 1);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "1");
    let itt = ini.read(&mut p, a, 512);
    p.handle_closed(a, ini.now);
    ini.pump(&mut p);
    p.remove(a);
    let deadline = p.poll_timeout().expect("Time2Retain timer");
    assert_eq!(deadline, ini.now + Duration::from_secs(1 + 5));
    p.handle_timeout(deadline - Duration::from_millis(1));
    ini.pump(&mut p);
    assert!(ini
        .other
        .iter()
        .all(|e| !matches!(e, PortalEvent::TaskAborted { .. })));
    p.handle_timeout(deadline);
    ini.pump(&mut p);
    let (_, task) = ini.tasks[&itt];
    assert!(ini
        .other
        .iter()
        .any(|e| matches!(e, PortalEvent::TaskAborted { task: t, .. } if *t == task)));
    let (_, r) = ini.connect(&mut p, 1, "2", "1");
    assert_eq!(
        LoginStatus::from_raw(r.status_class, r.status_detail),
        LoginStatus::SessionDoesNotExist
    );
}

#[test]
fn a_connection_that_dies_during_its_own_recovery_is_recovered_again() {
    // RFC 7143 section 7.1.5: connection recovery may itself fail; the
    // task waits again for reassignment (Time2Retain restarts from the new
    // failure), and a write continues from where it stopped: no command
    // runs twice and the data delivered is the data sent.
    let mut p = portal(2, 1);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "1");
    let itt = ini.cmd(&mut p, a, false, 4096, ini.cmd_sn);
    let r2t = ini.recv(&mut p, a);
    assert!(matches!(r2t[0].header, Header::R2t(_)));
    p.handle_closed(a, ini.now);
    ini.pump(&mut p);
    p.remove(a);
    let (b, _) = ini.connect(&mut p, 1, "2", "1");
    ini.reassign(&mut p, b, itt, 0);
    let pdus = ini.recv(&mut p, b);
    assert_eq!(tmf_response(&pdus), TmfResponse::FunctionComplete);
    let Some(Header::R2t(r)) = pdus
        .iter()
        .map(|p| p.header)
        .find(|h| matches!(h, Header::R2t(_)))
    else {
        panic!("{pdus:?}")
    };
    assert_eq!((r.buffer_offset, r.desired_data_transfer_length), (0, 4096));
    // B dies during the recovery, before sending the data.
    ini.now += Duration::from_secs(3);
    p.handle_closed(b, ini.now);
    ini.pump(&mut p);
    p.remove(b);
    let (c, _) = ini.connect(&mut p, 1, "2", "1");
    ini.reassign(&mut p, c, itt, 0);
    let pdus = ini.recv(&mut p, c);
    assert_eq!(tmf_response(&pdus), TmfResponse::FunctionComplete);
    let Some(Header::R2t(r)) = pdus
        .iter()
        .map(|p| p.header)
        .find(|h| matches!(h, Header::R2t(_)))
    else {
        panic!("{pdus:?}")
    };
    let d = DataOut {
        final_pdu: true,
        lun: 0,
        itt,
        ttt: r.ttt,
        exp_stat_sn: Serial(0),
        data_sn: Serial(0),
        buffer_offset: 0,
    };
    ini.send(&mut p, c, d, pattern(4096));
    assert_eq!(ini.executed.get(&itt), Some(&1));
    let (h, task) = ini.tasks[&itt];
    assert_eq!(h, c);
    p.complete_write(h, task, ScsiStatus::Good, None, 4096)
        .unwrap();
    let pdus = ini.recv(&mut p, c);
    assert!(pdus
        .iter()
        .any(|p| matches!(p.header, Header::ScsiResponse(s) if s.itt == itt && s.status == 0)));
    assert!(!p.is_closed(c));
    let _ = NO_TAG;
}

#[test]
fn at_erl1_a_failed_connection_costs_its_tasks_not_the_session() {
    // RFC 7143 section 7.14 (3720 6.12): on a connection failure without
    // connection recovery, "Logout the connection ..., re-issue missing
    // commands, and implicitly terminate all active commands"; the session
    // goes on over its other connections. Section 11.6.1: below level 2,
    // TASK REASSIGN is answered 4 "Task allegiance reassignment not
    // supported".
    let mut p = portal(1, 2);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "1", "2");
    let (b, _) = ini.connect(&mut p, 2, "1", "2");
    let on_b = ini.read(&mut p, b, 512);
    p.handle_closed(b, ini.now);
    ini.pump(&mut p);
    let (_, task) = ini.tasks[&on_b];
    assert!(ini
        .other
        .iter()
        .any(|e| matches!(e, PortalEvent::TaskAborted { task: t, .. } if *t == task)));
    assert!(p.is_closed(b));
    assert!(!p.is_closed(a));
    ini.reassign(&mut p, a, on_b, 0);
    assert_eq!(
        tmf_response(&ini.recv(&mut p, a)),
        TmfResponse::ReassignmentNotSupported
    );
    let x = ini.read(&mut p, a, 512);
    ini.complete(&mut p, x, pattern(512));
    assert_eq!(read_result(&ini.recv(&mut p, a), x).1, Some(0));
}

#[test]
fn immediate_commands_do_not_survive_a_connection_failure() {
    // RFC 7143 section 7.14 (3720 6.12): "immediate commands are not
    // recoverable across connection failures", even at level 2.
    let mut p = portal(2, 1);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "1");
    ini.itt += 1;
    let itt = ini.itt;
    let mut cdb = [0u8; 16];
    cdb[0] = 0x28;
    let c = ScsiCommand {
        immediate: true,
        final_pdu: true,
        read: true,
        write: false,
        attr: TaskAttr::Simple,
        lun: 0,
        itt,
        expected_data_transfer_length: 512,
        cmd_sn: ini.cmd_sn,
        exp_stat_sn: Serial(0),
        cdb,
    };
    ini.send(&mut p, a, c, Bytes::new());
    let (_, task) = ini.tasks[&itt];
    p.handle_closed(a, ini.now);
    ini.pump(&mut p);
    assert!(ini
        .other
        .iter()
        .any(|e| matches!(e, PortalEvent::TaskAborted { task: t, .. } if *t == task)));
    p.remove(a);
    let (b, _) = ini.connect(&mut p, 1, "2", "1");
    ini.reassign(&mut p, b, itt, 0);
    assert_eq!(
        tmf_response(&ini.recv(&mut p, b)),
        TmfResponse::TaskDoesNotExist
    );
}

#[test]
fn logout_for_recovery_of_another_connection_keeps_its_tasks_for_reassignment() {
    // RFC 7143 section 11.14.1: reason 2 "remove the connection for
    // recovery"; section 11.15.2-3: the response carries Time2Wait and
    // Time2Retain; the removed connection's tasks are then reassigned
    // (section 7.2.2) and complete on the connection that asked.
    let mut p = portal(2, 2);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "2");
    let (b, _) = ini.connect(&mut p, 2, "2", "2");
    let on_b = ini.read(&mut p, b, 1024);
    ini.itt += 1;
    let lo = LogoutRequest {
        immediate: true,
        reason: LogoutReason::RemoveForRecovery,
        itt: ini.itt,
        cid: 2,
        cmd_sn: ini.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    ini.send(&mut p, a, lo, Bytes::new());
    let r = ini.recv(&mut p, a);
    let Header::LogoutResponse(l) = r[0].header else {
        panic!("{r:?}")
    };
    assert_eq!(
        (l.response, l.time2wait, l.time2retain),
        (LogoutResponseCode::Success, 1, 5)
    );
    assert!(p.is_closed(b));
    assert!(ini
        .other
        .iter()
        .all(|e| !matches!(e, PortalEvent::TaskAborted { .. })));
    ini.reassign(&mut p, a, on_b, 0);
    assert_eq!(
        tmf_response(&ini.recv(&mut p, a)),
        TmfResponse::FunctionComplete
    );
    ini.complete(&mut p, on_b, pattern(1024));
    assert_eq!(
        read_result(&ini.recv(&mut p, a), on_b),
        (pattern(1024), Some(0))
    );
    assert_eq!(ini.executed[&on_b], 1);
}

#[test]
fn reinstating_a_live_connection_closes_only_the_old_one() {
    // RFC 7143 section 6.3.4: "Connection reinstatement is the process of
    // an initiator logging in with an ISID-TSIH-CID combination that is
    // possibly active from the target's perspective, which causes the
    // implicit logging out of the connection corresponding to the CID and
    // reinstating a new Full Feature Phase iSCSI connection in its place
    // (with the same CID)."
    let mut p = portal(2, 1);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "1");
    let itt = ini.read(&mut p, a, 512);
    // The initiator saw the connection fail; the target did not.
    let (b, r) = ini.connect(&mut p, 1, "2", "1");
    assert_eq!(r.status_class, 0);
    assert!(p.is_closed(a), "the old connection is closed");
    assert!(!p.is_closed(b));
    assert!(ini.other.iter().any(|e| matches!(e,
        PortalEvent::ConnectionJoined { connection, reinstated: Some(old), .. } if *connection == b && *old == a)));
    // The driver closing the old socket does not touch the session.
    p.handle_closed(a, ini.now);
    p.remove(a);
    ini.pump(&mut p);
    assert!(!p.is_closed(b));
    ini.reassign(&mut p, b, itt, 0);
    assert_eq!(
        tmf_response(&ini.recv(&mut p, b)),
        TmfResponse::FunctionComplete
    );
    ini.complete(&mut p, itt, pattern(512));
    assert_eq!(
        read_result(&ini.recv(&mut p, b), itt),
        (pattern(512), Some(0))
    );
}

#[test]
fn session_reinstatement_ends_a_session_waiting_for_connection_recovery() {
    // RFC 7143 section 6.3.5: "Session reinstatement causes all the tasks
    // that were active on the old session to be immediately terminated by
    // the target without further notice to the initiator" - also those
    // kept for connection recovery at ErrorRecoveryLevel 2.
    let mut p = portal(2, 1);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "1");
    let itt = ini.read(&mut p, a, 512);
    p.handle_closed(a, ini.now);
    p.remove(a);
    ini.pump(&mut p);
    let (_, task) = ini.tasks[&itt];
    assert!(p.poll_timeout().is_some(), "Time2Retain runs");
    // A new session with the same ISID (TSIH 0).
    ini.tsih = 0;
    let (b, r) = ini.connect(&mut p, 1, "2", "1");
    assert_eq!(r.status_class, 0);
    assert!(ini
        .other
        .iter()
        .any(|e| matches!(e, PortalEvent::SessionReinstated { new, .. } if *new == b)));
    assert!(ini
        .other
        .iter()
        .any(|e| matches!(e, PortalEvent::TaskAborted { task: t, .. } if *t == task)));
    assert_eq!(p.poll_timeout(), None, "nothing is retained any more");
    // The completion of the old task is refused: it is gone.
    assert!(p
        .complete(a, task, ScsiStatus::Good, None, pattern(512))
        .is_err());
}

#[test]
fn a_target_dropped_connection_keeps_its_tasks_for_the_announced_time() {
    // RFC 7143 section 11.9.1, AsyncEvent 2: "the target will drop the
    // connection ... Parameter2 ... Time2Wait ... Parameter3 ...
    // Time2Retain"; at ErrorRecoveryLevel 2 the connection's tasks wait
    // that long for reassignment.
    let mut s = SessionConfig::new(TARGET);
    s.params = OperationalParams::default();
    s.params.error_recovery_level = 2;
    let mut h = target_support::Harness::new(s);
    h.login(&[("ErrorRecoveryLevel", "2")]);
    h.events();
    let c = h.cmd(true, false, 512, true);
    h.send(c, Bytes::new());
    assert_eq!(h.events().len(), 1);
    h.s.drop_connection(3, 7).unwrap();
    let r = h.recv();
    assert!(matches!(r[0].header, Header::AsyncMessage(m)
        if m.event == AsyncEvent::DropConnection && (m.parameter2, m.parameter3) == (3, 7)));
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(10)));
}

#[test]
fn a_joining_login_does_not_widen_the_session_window() {
    // RFC 7143 section 4.2.2.1: "CmdSN ... is session-wide" and the window
    // ExpCmdSN..MaxCmdSN is the session's: the Login Response of a further
    // connection advertises the session's MaxCmdSN, not one that forgets
    // the commands still outstanding.
    let mut s = SessionConfig::new(TARGET);
    s.params = OperationalParams::default();
    s.params.max_connections = 2;
    s.cmd_window = 2;
    let mut p = Portal::new(PortalConfig::new(s), 5).unwrap();
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "0", "2");
    ini.read(&mut p, a, 512);
    ini.read(&mut p, a, 512);
    // Both outstanding: the window is full (MaxCmdSN = ExpCmdSN - 1).
    let (_, r) = ini.connect(&mut p, 2, "0", "2");
    assert_eq!(r.status_class, 0);
    assert_eq!(r.exp_cmd_sn, ini.cmd_sn);
    assert_eq!(r.max_cmd_sn, ini.cmd_sn.minus(1), "{r:?}");
}

#[test]
fn logout_of_a_failed_and_removed_connection_terminates_its_tasks() {
    // RFC 7143 section 11.14 (reason 1 for another CID): "the initiator
    // ... to clean up a failed connection"; the target answers Success
    // (the CID is known: it failed) and its tasks are terminated, the
    // connection that asked is untouched.
    let mut p = portal(2, 2);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "2");
    let (b, _) = ini.connect(&mut p, 2, "2", "2");
    let on_b = ini.read(&mut p, b, 512);
    p.handle_closed(b, ini.now);
    p.remove(b);
    ini.pump(&mut p);
    ini.itt += 1;
    let lo = LogoutRequest {
        immediate: true,
        reason: LogoutReason::CloseConnection,
        itt: ini.itt,
        cid: 2,
        cmd_sn: ini.cmd_sn,
        exp_stat_sn: Serial(0),
    };
    ini.send(&mut p, a, lo, Bytes::new());
    let r = ini.recv(&mut p, a);
    assert!(
        matches!(r[0].header, Header::LogoutResponse(l) if l.response == LogoutResponseCode::Success),
        "{r:?}"
    );
    let (_, task) = ini.tasks[&on_b];
    assert!(ini
        .other
        .iter()
        .any(|e| matches!(e, PortalEvent::TaskAborted { task: t, .. } if *t == task)));
    assert!(!p.is_closed(a));
    let x = ini.read(&mut p, a, 512);
    ini.complete(&mut p, x, pattern(512));
    assert_eq!(read_result(&ini.recv(&mut p, a), x).1, Some(0));
}

#[test]
fn a_data_snack_on_another_connection_is_rejected_not_answered_there() {
    // RFC 7143 section 4.2.5.1: "Retransmission requests (SNACK PDUs) and
    // the data and status that they generate MUST also use the same
    // connection"; section 11.16: "Any SNACK that requests a
    // numbered-response, Data, or R2T that was not sent by the target ...
    // MUST be rejected with a reason code of 'Protocol error'". (Found by
    // the pair oracle: the Data-In resent on the wrong connection carried
    // the other connection's StatSN, a StatSN gap for the initiator.)
    let mut p = portal(2, 2);
    let mut ini = Ini::new();
    let (a, _) = ini.connect(&mut p, 1, "2", "2");
    let (b, _) = ini.connect(&mut p, 2, "2", "2");
    let itt = ini.read(&mut p, a, 512);
    ini.complete(&mut p, itt, pattern(512));
    assert_eq!(
        read_result(&ini.recv(&mut p, a), itt),
        (pattern(512), Some(0))
    );
    let snack = SnackRequest {
        snack_type: SnackType::DataR2t,
        lun: 0,
        itt,
        ttt_or_snack_tag: NO_TAG,
        exp_stat_sn: Serial(0),
        beg_run: Serial(0),
        run_length: 0,
    };
    ini.send(&mut p, b, snack, Bytes::new());
    let on_b = ini.recv(&mut p, b);
    assert!(
        matches!(on_b.as_slice(), [x] if matches!(x.header, Header::Reject(r) if r.reason == RejectReason::ProtocolError)),
        "{on_b:?}"
    );
    assert!(ini.recv(&mut p, a).is_empty());
    // On its own connection the same SNACK is served.
    ini.send(&mut p, a, snack, Bytes::new());
    assert_eq!(
        read_result(&ini.recv(&mut p, a), itt),
        (pattern(512), Some(0))
    );
    assert_eq!(ini.executed.get(&itt), Some(&1));
}
