//! ErrorRecoveryLevel 2 cells: connection recovery with TASK REASSIGN
//! (RFC 7143 sections 7.1.4.3, 7.2, 11.5.1), Time2Retain expiry (13.16)
//! and a connection that dies during its own recovery.

use super::{data_in, expect_tmf, ini_cfg, login_at, responder, responder_mcs, GR, TSIH};
use crate::hostile::flow::std_connect;
use crate::hostile::{
    check_eq, connect, expect_good, pattern, read, scenario, tur, DrvError, Kind, Listener, Peer,
    STEP,
};
use crate::runner::{Cell, CellCtx};
use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, TaskError, TimerKind};
use iscsi_proto::initiator::{Event, Recovery, Reissue, SessionConfig, Spread, TaskOutcome};
use iscsi_proto::wire::pdu::{self as w, Header};
use iscsi_proto::wire::Serial;
use std::sync::mpsc;
use std::time::Duration;

/// ErrorRecoveryLevel 2, no digests, reconnection after 50 ms (DefaultTime2Wait
/// 0 negotiated), at most 3 attempts per failure.
fn erl2_cfg() -> SessionConfig {
    ini_cfg(2, false, true).with_recovery(Recovery {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    })
}

/// A new connection of the same session: the scripted target carries its
/// session-wide state (CmdSN window) and the connection's StatSN over.
fn next_peer(l: &Listener, old: &Peer) -> Result<Peer, String> {
    let mut q = super::accept(l)?;
    q.t.stat_sn = old.t.stat_sn;
    q.t.exp_cmd_sn = old.t.exp_cmd_sn;
    q.t.max_cmd_sn = old.t.max_cmd_sn;
    Ok(q)
}

/// RFC 7143 section 6.3.4 / 7.1.4.3: the login replacing a failed
/// connection of the session carries the session's ISID and TSIH and the
/// failed connection's CID (connection reinstatement, the implicit logout
/// with reason "remove the connection for recovery"), and (11.12.9 /
/// 11.12.10) the old connection's ExpStatSN.
fn check_reinstating_login(
    first: &w::LoginRequest,
    again: &w::LoginRequest,
    exp_stat_sn: Serial,
) -> Result<(), String> {
    check_eq("ISID of the new connection", again.isid, first.isid)?;
    check_eq("TSIH of the new connection (not 0)", again.tsih, TSIH)?;
    check_eq("CID of the new connection", again.cid, first.cid)?;
    check_eq(
        "ExpStatSN of the new connection (the old one's)",
        again.exp_stat_sn,
        exp_stat_sn,
    )
}

/// The next Login Request on `q` (a recovery login the script will not
/// answer).
fn expect_login(q: &mut Peer) -> Result<w::LoginRequest, String> {
    let pdu = q.recv()?;
    match pdu.header {
        Header::LoginRequest(l) => Ok(l),
        other => Err(format!("expected a Login Request, got {other:?}")),
    }
}

/// Two TASK REASSIGN requests (section 11.5.1: function 14, immediate,
/// Referenced Task Tag and RefCmdSN of the task, ExpDataSN "the data
/// acknowledgment reference number", section 11.5.6), one for each of
/// `want` (ITT, CmdSN, ExpDataSN), in either order; their ITTs.
fn expect_reassigns(q: &mut Peer, want: &[(u32, Serial, Serial)]) -> Result<Vec<u32>, String> {
    let mut itts = Vec::new();
    let mut seen = Vec::new();
    for _ in want {
        let t = expect_tmf(q)?;
        check_eq("TMF function", t.function, w::TmfFunction::TaskReassign)?;
        check_eq("TMF I bit", t.immediate, true)?;
        let Some(&(itt, cmd_sn, exp_data_sn)) =
            want.iter().find(|(i, _, _)| *i == t.referenced_task_tag)
        else {
            return Err(format!(
                "TASK REASSIGN for an unknown task {:#x}",
                t.referenced_task_tag
            ));
        };
        if seen.contains(&itt) {
            return Err(format!("two TASK REASSIGNs for task {itt:#x}"));
        }
        seen.push(itt);
        check_eq("TASK REASSIGN RefCmdSN", t.ref_cmd_sn, cmd_sn)?;
        check_eq("TASK REASSIGN ExpDataSN", t.exp_data_sn, exp_data_sn)?;
        itts.push(t.itt);
    }
    Ok(itts)
}

/// The `ConnectionRecovered` events of a session: (reassigned, retried).
fn recovered(evs: &[Event]) -> Vec<(usize, usize)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::ConnectionRecovered {
                reassigned,
                retried,
                ..
            } => Some((*reassigned, *retried)),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- TASK REASSIGN

/// RFC 7143 section 7.1.4.3: after a TCP connection failure at
/// ErrorRecoveryLevel 2 the initiator "MUST either implicitly or
/// explicitly logout the failed connection with the reason code 'remove
/// the connection for recovery' and reassign connection allegiance for
/// all commands still in progress ... using the 'Task reassign' task
/// management function"; section 11.5.1 TASK REASSIGN; section 7.2.2: the
/// target answers "from retained status", the command is not executed
/// again (and so not sent again).
fn task_reassign(ctx: &mut CellCtx) -> Result<(), String> {
    scenario(
        ctx,
        true,
        |l| {
            for k in Kind::ALL {
                reassign_target(&l).map_err(|e| format!("{}: {e}", k.name()))?;
            }
            Ok(())
        },
        |portal| {
            let mut notes = Vec::new();
            for k in Kind::ALL {
                let n = reassign_initiator(k, portal).map_err(|e| format!("{}: {e}", k.name()))?;
                notes.push(format!("{}: {n}", k.name()));
            }
            Ok(notes.join("; "))
        },
    )
}

/// Length of the reassigned read.
const REASSIGN_LEN: usize = 1024;

/// The target's side of [`task_reassign`], for one driver.
fn reassign_target(l: &Listener) -> Result<(), String> {
    let data = pattern(REASSIGN_LEN, 17);
    let mut p = super::accept(l)?;
    let first = login_at(&mut p, &mut responder(2, 20, true), 2)?;
    let ca = p.expect_cmd()?;
    let cb = p.expect_cmd()?;
    p.t.ack_cmd(cb.cmd_sn);
    let h0 = data_in(&mut p, ca.itt, 0, 0, false);
    p.t.send(h0, Bytes::copy_from_slice(&data[..512]));
    p.flush()?;
    // The initiator has taken DataSN 0 once it answers this ping.
    p.ping_sync(0x51)?;
    let exp_stat_sn = p.next_stat_sn();
    p.drop_connection();
    let mut q = next_peer(l, &p)?;
    let again = q.login(&mut responder(2, 20, true))?;
    check_reinstating_login(&first, &again, exp_stat_sn)?;
    let itts = expect_reassigns(
        &mut q,
        &[
            (ca.itt, ca.cmd_sn, Serial(1)),
            (cb.itt, cb.cmd_sn, Serial(0)),
        ],
    )?;
    for itt in itts {
        q.t.tmf_response(itt, w::TmfResponse::FunctionComplete);
    }
    // Section 11.5.6: the target resends Data-In from ExpDataSN; the
    // TUR's status comes from what the target retained.
    let h1 = data_in(&mut q, ca.itt, 1, 512, true);
    q.t.send(h1, Bytes::copy_from_slice(&data[512..]));
    q.t.scsi_response(cb.itt, 0, w::Residual::None, None);
    q.flush()?;
    // No command sent again, nothing else before the logout.
    q.serve_logout().map(drop)
}

/// The initiator's side of [`task_reassign`] with driver `k` (with
/// `iscsi-std` the session's events and TSIH are checked too).
fn reassign_initiator(k: Kind, portal: &str) -> Result<String, String> {
    let want = pattern(REASSIGN_LEN, 17);
    if k != Kind::Std {
        let mut d = connect(k, portal, erl2_cfg())?;
        let a = d.submit(read(REASSIGN_LEN as u32))?;
        let b = d.submit(tur())?;
        let (oa, got) = d.wait(a)?;
        let (ob, _) = d.wait(b)?;
        expect_good("reassigned read", &oa)?;
        expect_good("reassigned TUR", &ob)?;
        check_eq("read data", got.as_ref(), want.as_slice())?;
        d.logout()?;
        return Ok("both GOOD once, data intact".into());
    }
    let mut c = std_connect(portal, erl2_cfg())?;
    check_eq(
        "ErrorRecoveryLevel negotiated",
        c.session().negotiated().map(|n| n.error_recovery_level),
        Some(2),
    )?;
    let tsih = c.session().tsih();
    let a = c
        .submit(read(REASSIGN_LEN as u32))
        .map_err(|e| e.to_string())?;
    let b = c.submit(tur()).map_err(|e| e.to_string())?;
    let (oa, got) = c.wait(a).map_err(|e| e.to_string())?;
    let (ob, _) = c.wait(b).map_err(|e| e.to_string())?;
    expect_good("reassigned read", &oa)?;
    expect_good("reassigned TUR", &ob)?;
    check_eq("read data", got.as_ref(), want.as_slice())?;
    check_eq("TSIH after recovery", c.session().tsih(), tsih)?;
    let evs = c.take_events();
    check_eq(
        "ConnectionRecovered (reassigned, retried)",
        recovered(&evs),
        vec![(2, 0)],
    )?;
    c.logout().map_err(|e| e.to_string())?;
    Ok("drop with a read (DataSN 0 in) and a TUR outstanding -> login with the same ISID/TSIH/CID and old ExpStatSN, TASK REASSIGN (I, RefCmdSN, ExpDataSN 1 and 0) for each, no command resent; both GOOD once, data intact, ConnectionRecovered(2, 0)".into())
}

// ---------------------------------------------------------------- Time2Retain

/// RFC 7143 section 13.16, DefaultTime2Retain: "the maximum time, after an
/// initial wait (Time2Wait), before which an active task reassignment is
/// still possible after an unexpected connection termination or a
/// connection reset"; past it the target has discarded the tasks and
/// answers TASK REASSIGN "Task does not exist" (11.6.1) or refuses it.
/// The tasks were acknowledged (ExpCmdSN past them): they may have run,
/// so they must not be sent again (7.2.1 allows a retry only for a
/// command the target never received) and end once with a typed error.
/// Part 2: the recovery login does not finish before Time2Wait +
/// Time2Retain (0 + 1 s): the initiator gives up connection recovery
/// (`TimedOut(Retain)`) and reinstates the session (TSIH 0, 6.3.5); the
/// TUR that may have run (`Reissue::Never`) fails `OutcomeUnknown`, the
/// read is reissued and completes. Part 3: DefaultTime2Retain 0 ("the
/// connection/task state is immediately discarded by the target", 13.16):
/// no reassignment is possible, the initiator goes straight to session
/// reinstatement with the same outcomes.
fn time2retain(ctx: &mut CellCtx) -> Result<(), String> {
    scenario(
        ctx,
        true,
        |l| {
            // Part 1: the target answers the reassignment from nothing.
            let mut p = super::accept(&l)?;
            let first = login_at(&mut p, &mut responder(2, 1, true), 2)?;
            let ca = p.expect_cmd()?;
            let cb = p.expect_cmd()?;
            p.t.ack_cmd(cb.cmd_sn);
            p.ping_sync(0x52)?;
            let exp_stat_sn = p.next_stat_sn();
            p.drop_connection();
            let mut q = next_peer(&l, &p)?;
            let again = q.login(&mut responder(2, 1, true))?;
            check_reinstating_login(&first, &again, exp_stat_sn)?;
            let t1 = expect_tmf(&mut q)?;
            let t2 = expect_tmf(&mut q)?;
            for t in [t1, t2] {
                check_eq("TMF function", t.function, w::TmfFunction::TaskReassign)?;
                let answer = if t.referenced_task_tag == ca.itt {
                    w::TmfResponse::TaskDoesNotExist
                } else {
                    w::TmfResponse::Rejected
                };
                q.t.tmf_response(t.itt, answer);
            }
            q.flush()?;
            let c3 = q.expect_cmd()?;
            if c3.itt == ca.itt || c3.itt == cb.itt {
                return Err(format!("a lost task was sent again: {c3:?}"));
            }
            q.good(&c3)?;
            q.serve_logout()?;
            // Part 2: the recovery login is never answered.
            let mut p = super::accept(&l)?;
            let first = login_at(&mut p, &mut responder(2, 1, true), 2)?;
            let ca = p.expect_cmd()?;
            let cb = p.expect_cmd()?;
            p.t.ack_cmd(cb.cmd_sn);
            p.ping_sync(0x53)?;
            p.drop_connection();
            let mut q = next_peer(&l, &p)?;
            let stuck = expect_login(&mut q)?;
            check_eq("TSIH of the recovery login", stuck.tsih, TSIH)?;
            // Bounded by Time2Wait + Time2Retain (1 s) at the initiator.
            q.expect_closed_within(STEP)?;
            let mut r = super::accept(&l)?;
            let mut fresh = responder(2, 1, true);
            fresh.tsih = TSIH + 1;
            let re = login_at(&mut r, &mut fresh, 2)?;
            check_eq("ISID of the reinstatement", re.isid, first.isid)?;
            check_eq("TSIH of the reinstatement", re.tsih, 0)?;
            let again = r.expect_cmd()?;
            check_eq("reissued command (the read)", again.itt, cb.itt)?;
            let _ = ca;
            r.t.ack_cmd(again.cmd_sn);
            let h = data_in(&mut r, again.itt, 0, 0, true);
            r.t.send(h, Bytes::from(pattern(512, 19)));
            r.flush()?;
            r.serve_logout()?;
            // Part 3: DefaultTime2Retain 0, the tasks are gone at once.
            let mut p = super::accept(&l)?;
            let first = login_at(&mut p, &mut responder(2, 0, true), 2)?;
            p.expect_cmd()?;
            let cb = p.expect_cmd()?;
            p.t.ack_cmd(cb.cmd_sn);
            p.ping_sync(0x56)?;
            p.drop_connection();
            let mut r = super::accept(&l)?;
            let mut fresh = responder(2, 0, true);
            fresh.tsih = TSIH + 2;
            let re = login_at(&mut r, &mut fresh, 2)?;
            check_eq("ISID after a drop at Time2Retain 0", re.isid, first.isid)?;
            check_eq(
                "TSIH after a drop at Time2Retain 0 (reinstatement, no reassignment)",
                re.tsih,
                0,
            )?;
            let again = r.expect_cmd()?;
            check_eq("reissued command (the read)", again.itt, cb.itt)?;
            r.t.ack_cmd(again.cmd_sn);
            let h = data_in(&mut r, again.itt, 0, 0, true);
            r.t.send(h, Bytes::from(pattern(512, 29)));
            r.flush()?;
            r.serve_logout().map(drop)
        },
        |portal| {
            let mut c = std_connect(portal, erl2_cfg())?;
            check_eq(
                "DefaultTime2Retain negotiated (the lower, 13.16)",
                c.session().negotiated().map(|n| n.default_time2retain),
                Some(1),
            )?;
            let tsih = c.session().tsih();
            let a = c.submit(read(512)).map_err(|e| e.to_string())?;
            let b = c.submit(tur()).map_err(|e| e.to_string())?;
            for (what, t) in [("read", a), ("TUR", b)] {
                match c.wait(t) {
                    Ok((TaskOutcome::Failed(TaskError::OutcomeUnknown), _))
                    | Err(iscsi_std::Error::Task(TaskError::OutcomeUnknown)) => {}
                    other => {
                        return Err(format!("{what} after a refused TASK REASSIGN: {other:?}"))
                    }
                }
            }
            check_eq("TSIH after recovery", c.session().tsih(), tsih)?;
            check_eq(
                "ConnectionRecovered (reassigned, retried)",
                recovered(&c.take_events()),
                vec![(2, 0)],
            )?;
            let t = c.submit(tur()).map_err(|e| e.to_string())?;
            let (o, _) = c.wait(t).map_err(|e| e.to_string())?;
            expect_good("new command on the recovered connection", &o)?;
            c.logout().map_err(|e| e.to_string())?;
            // Part 2.
            let mut c = std_connect(portal, erl2_cfg())?;
            let a = c
                .submit(tur().with_reissue(Reissue::Never))
                .map_err(|e| e.to_string())?;
            let b = c.submit(read(512)).map_err(|e| e.to_string())?;
            match c.wait(a) {
                Ok((TaskOutcome::Failed(TaskError::OutcomeUnknown), _))
                | Err(iscsi_std::Error::Task(TaskError::OutcomeUnknown)) => {}
                other => return Err(format!("TUR past Time2Retain: {other:?}")),
            }
            let (ob, got) = c.wait(b).map_err(|e| e.to_string())?;
            expect_good("read reissued after reinstatement", &ob)?;
            check_eq("read data", got.as_ref(), pattern(512, 19).as_slice())?;
            check_eq("new TSIH", c.session().tsih(), TSIH + 1)?;
            let evs = c.take_events();
            if !evs.iter().any(|e| {
                matches!(
                    e,
                    Event::Recovering {
                        cause: ConnectionError::TimedOut(TimerKind::Retain),
                        ..
                    }
                )
            }) {
                return Err(format!("no Recovering(TimedOut(Retain)) event: {evs:?}"));
            }
            c.logout().map_err(|e| e.to_string())?;
            // Part 3.
            let mut c = std_connect(portal, erl2_cfg())?;
            check_eq(
                "DefaultTime2Retain negotiated",
                c.session().negotiated().map(|n| n.default_time2retain),
                Some(0),
            )?;
            let a = c
                .submit(tur().with_reissue(Reissue::Never))
                .map_err(|e| e.to_string())?;
            let b = c.submit(read(512)).map_err(|e| e.to_string())?;
            match c.wait(a) {
                Ok((TaskOutcome::Failed(TaskError::OutcomeUnknown), _))
                | Err(iscsi_std::Error::Task(TaskError::OutcomeUnknown)) => {}
                other => return Err(format!("TUR at Time2Retain 0: {other:?}")),
            }
            let (ob, got) = c.wait(b).map_err(|e| e.to_string())?;
            expect_good("read reissued at Time2Retain 0", &ob)?;
            check_eq("read data", got.as_ref(), pattern(512, 29).as_slice())?;
            check_eq("new TSIH", c.session().tsih(), TSIH + 2)?;
            c.logout().map_err(|e| e.to_string())?;
            Ok("TASK REASSIGN answered 'task does not exist' / 'function rejected' -> both tasks OutcomeUnknown once, not resent, session (same TSIH) goes on; recovery login unanswered past Time2Retain (1 s) -> TimedOut(Retain), reinstatement (TSIH 0), TUR OutcomeUnknown, read reissued GOOD; DefaultTime2Retain 0 -> straight to reinstatement, same outcomes".into())
        },
    )
}

// ---------------------------------------------------------------- dies during recovery

/// A connection that dies during its own recovery (after its Login
/// Request, before the answer) is recovered again within the session
/// (RFC 7143 section 7.1.4.3 applies to the replacement as to any
/// connection), and the task still completes once. With every
/// replacement dying, recovery is bounded (`Recovery::max_attempts`) and
/// the task and the session end with a typed error.
fn dies_during_recovery(ctx: &mut CellCtx) -> Result<(), String> {
    // The target tells when it has stopped waiting for the reconnections
    // of one driver's session (and how many came) before the next driver
    // connects.
    let (done_tx, done_rx) = mpsc::channel::<u32>();
    scenario(
        ctx,
        true,
        move |l| {
            for k in Kind::ALL {
                let n = dies_target(&l).map_err(|e| format!("{}: {e}", k.name()))?;
                let _ = done_tx.send(n);
            }
            Ok(())
        },
        |portal| {
            let mut notes = Vec::new();
            for k in Kind::ALL {
                let n = dies_initiator(k, portal).map_err(|e| format!("{}: {e}", k.name()))?;
                let logins = done_rx
                    .recv_timeout(STEP * 4)
                    .map_err(|_| format!("{}: the target did not finish", k.name()))?;
                notes.push(format!(
                    "{}: {n}; {logins} recovery logins with every replacement dying",
                    k.name()
                ));
            }
            Ok(notes.join("; "))
        },
    )
}

/// The target's side of [`dies_during_recovery`] for one driver: the
/// number of recovery logins of part 2.
fn dies_target(l: &Listener) -> Result<u32, String> {
    let mut p = super::accept(l)?;
    let first = login_at(&mut p, &mut responder(2, 20, true), 2)?;
    let ca = p.expect_cmd()?;
    p.t.ack_cmd(ca.cmd_sn);
    p.ping_sync(0x54)?;
    let exp_stat_sn = p.next_stat_sn();
    p.drop_connection();
    let mut q = next_peer(l, &p)?;
    let stuck = expect_login(&mut q)?;
    check_eq("TSIH of the first recovery login", stuck.tsih, TSIH)?;
    q.drop_connection();
    let mut r = next_peer(l, &p)?;
    let again = r.login(&mut responder(2, 20, true))?;
    check_reinstating_login(&first, &again, exp_stat_sn)?;
    let itts = expect_reassigns(&mut r, &[(ca.itt, ca.cmd_sn, Serial(0))])?;
    for itt in itts {
        r.t.tmf_response(itt, w::TmfResponse::FunctionComplete);
    }
    r.t.scsi_response(ca.itt, 0, w::Residual::None, None);
    r.flush()?;
    r.serve_logout()?;
    // Part 2: every replacement dies.
    let mut p = super::accept(l)?;
    login_at(&mut p, &mut responder(2, 20, true), 2)?;
    let ca = p.expect_cmd()?;
    p.t.ack_cmd(ca.cmd_sn);
    p.ping_sync(0x55)?;
    p.drop_connection();
    let mut logins = 0u32;
    while let Some(mut q) = l.accept_within(Duration::from_secs(5))? {
        logins += 1;
        if logins > 16 {
            return Err("more than 16 reconnections: recovery is not bounded".into());
        }
        // Each is a connection recovery login (the session's TSIH).
        let login = expect_login(&mut q)?;
        check_eq("TSIH of a recovery login", login.tsih, TSIH)?;
        q.drop_connection();
    }
    // `Recovery::max_attempts` (3) per failure, then the end.
    check_eq("reconnections with every replacement dying", logins, 3)?;
    Ok(logins)
}

/// Whether the session gave up after `Recovery::max_attempts` (3).
fn gave_up(e: &ConnectionError) -> bool {
    matches!(e, ConnectionError::RecoveryFailed { attempts: 3, .. })
}

/// The initiator's side of [`dies_during_recovery`] with driver `k` (with
/// `iscsi-std` the session's events and TSIH are checked too).
fn dies_initiator(k: Kind, portal: &str) -> Result<String, String> {
    if k != Kind::Std {
        let mut d = connect(k, portal, erl2_cfg())?;
        let a = d.submit(tur())?;
        let (o, _) = d.wait(a)?;
        expect_good("TUR reassigned after the second drop", &o)?;
        d.logout()?;
        let mut d = connect(k, portal, erl2_cfg())?;
        let a = d.submit(tur())?;
        let ended = match d.wait(a) {
            Err(DrvError::Connection(Some(e))) if gave_up(&e) => format!("{e:?}"),
            other => return Err(format!("TUR with every replacement dying: {other:?}")),
        };
        let reason = d.closed_reason(STEP * 4)?;
        if !reason.as_ref().is_some_and(gave_up) {
            return Err(format!(
                "close reason with every replacement dying: {reason:?}"
            ));
        }
        return Ok(format!(
            "TUR GOOD after the second drop; then task and session {ended}"
        ));
    }
    let mut c = std_connect(portal, erl2_cfg())?;
    let tsih = c.session().tsih();
    let a = c.submit(tur()).map_err(|e| e.to_string())?;
    let (o, _) = c.wait(a).map_err(|e| e.to_string())?;
    expect_good("TUR reassigned after the second drop", &o)?;
    check_eq("TSIH after recovery", c.session().tsih(), tsih)?;
    let evs = c.take_events();
    let attempts: Vec<u32> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Recovering { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    check_eq("recovery attempts", attempts, vec![1, 2])?;
    check_eq(
        "ConnectionRecovered (reassigned, retried)",
        recovered(&evs),
        vec![(1, 0)],
    )?;
    c.logout().map_err(|e| e.to_string())?;
    // Part 2.
    let mut c = std_connect(portal, erl2_cfg())?;
    let a = c.submit(tur()).map_err(|e| e.to_string())?;
    let ended = match c.wait(a) {
        Err(iscsi_std::Error::Closed(Some(e))) if gave_up(&e) => format!("{e:?}"),
        other => return Err(format!("TUR with every replacement dying: {other:?}")),
    };
    let reason = crate::hostile::driver_under_test::std_closed_reason(&mut c, STEP * 4)?;
    if !reason.as_ref().is_some_and(gave_up) {
        return Err(format!(
            "close reason with every replacement dying: {reason:?}"
        ));
    }
    Ok(format!("second drop during the recovery login -> a third connection, same TSIH, TUR reassigned, GOOD once (attempts 1, 2); every replacement dropped -> task and session {ended}"))
}

// ---------------------------------------------------------------- MC/S

/// RFC 7143 section 7.1.4.3 with two connections (13.2 MaxConnections 2,
/// ErrorRecoveryLevel 2): when the added connection fails with a command
/// outstanding, the initiator "MUST ... explicitly logout the failed
/// connection with the reason code 'remove the connection for recovery'"
/// (section 11.14.1: reason 2, the failed connection's CID, sent on
/// another connection of the session) and "reassign connection allegiance
/// for all commands still in progress ... using the 'Task reassign' task
/// management function" (11.5.1) on a surviving connection; the command
/// is not sent again and completes once; the first connection's own task
/// is untouched.
fn task_reassign_mcs(ctx: &mut CellCtx) -> Result<(), String> {
    scenario(
        ctx,
        true,
        |l| {
            let mut p = super::accept(&l)?;
            let mut r = responder_mcs(2, 20, true, 2);
            let first = login_at(&mut p, &mut r, 2)?;
            check_eq(
                "MaxConnections negotiated",
                r.negotiated.as_ref().map(|n| n.max_connections),
                Some(2),
            )?;
            let mut q = super::accept(&l)?;
            let second = q.login(&mut responder_mcs(2, 20, true, 2))?;
            check_eq("TSIH of the added connection (13.2)", second.tsih, TSIH)?;
            check_eq("ISID of the added connection", second.isid, first.isid)?;
            if second.cid == first.cid {
                return Err(format!("the added connection reuses CID {}", first.cid));
            }
            // One command on each connection (round-robin).
            let ca = p.expect_cmd()?;
            let cb = q.expect_cmd()?;
            // One CmdSN window for the session.
            let last = if cb.cmd_sn.follows(ca.cmd_sn) {
                cb.cmd_sn
            } else {
                ca.cmd_sn
            };
            p.t.ack_cmd(last);
            q.t.ack_cmd(last);
            // The initiator has seen the window move on both connections.
            p.ping_sync(0x61)?;
            q.ping_sync(0x62)?;
            q.drop_connection();
            let pdu = p.recv()?;
            let Header::LogoutRequest(lo) = pdu.header else {
                return Err(format!(
                    "expected Logout reason 2 on the first connection, got {:?}",
                    pdu.header
                ));
            };
            check_eq(
                "Logout reason (11.14.1)",
                lo.reason,
                w::LogoutReason::RemoveForRecovery,
            )?;
            check_eq("Logout CID (the failed connection)", lo.cid, second.cid)?;
            p.t.logout_response(lo.itt, 0, 20);
            p.flush()?;
            let itts = expect_reassigns(&mut p, &[(cb.itt, cb.cmd_sn, Serial(0))])?;
            for itt in itts {
                p.t.tmf_response(itt, w::TmfResponse::FunctionComplete);
            }
            p.t.scsi_response(cb.itt, 0, w::Residual::None, None);
            p.t.scsi_response(ca.itt, 0, w::Residual::None, None);
            p.flush()?;
            p.serve_logout().map(drop)
        },
        |portal| {
            let cfg = erl2_cfg().with_max_connections(2, Spread::RoundRobin);
            let mut c = std_connect(portal, cfg)?;
            // The driver opens the second connection by itself.
            let mut rounds = 0;
            while c
                .session()
                .connection_ids()
                .iter()
                .filter(|&&cid| c.session().is_connection_up(cid))
                .count()
                < 2
            {
                rounds += 1;
                if rounds > 250 {
                    return Err("the second connection never came up".into());
                }
                c.idle(Duration::from_millis(20))
                    .map_err(|e| e.to_string())?;
            }
            let tsih = c.session().tsih();
            let a = c.submit(tur()).map_err(|e| e.to_string())?;
            let b = c.submit(tur()).map_err(|e| e.to_string())?;
            let (oa, _) = c.wait(a).map_err(|e| e.to_string())?;
            let (ob, _) = c.wait(b).map_err(|e| e.to_string())?;
            expect_good("TUR on the first connection", &oa)?;
            expect_good("TUR reassigned from the failed connection", &ob)?;
            check_eq("TSIH", c.session().tsih(), tsih)?;
            c.logout().map_err(|e| e.to_string())?;
            Ok("2 connections at ERL 2, the added one dropped with a TUR outstanding -> Logout reason 2 with its CID on the first connection, then TASK REASSIGN (I, RefCmdSN, ExpDataSN 0) there; no command resent, both GOOD once, TSIH kept".into())
        },
    )
}

/// The ErrorRecoveryLevel 2 cells.
pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(GR, "task-reassign", task_reassign),
        Cell::new(GR, "task-reassign-mcs", task_reassign_mcs),
        Cell::new(GR, "time2retain-expiry", time2retain),
        Cell::new(GR, "dies-during-recovery", dies_during_recovery),
    ]
}
