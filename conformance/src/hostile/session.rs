//! Scenarios 15-22: asynchronous messages (logout requested, connection
//! drop), a task management response racing the task's completion, login
//! redirection (temporary, permanent, loop), every login error status, a
//! connection dropped mid-login, a connection dropped mid-write with
//! session recovery, and a silent target.

use super::driver_under_test::std_closed_reason;
use super::flow::{check_cmd, check_logout, std_connect};
use super::{
    cfg, check_eq, connect, expect_good, join, pattern, per_driver, read, scenario, spawn, tur,
    write, Kind, Listener, Peer, G, STD, STEP,
};
use crate::runner::{Cell, CellCtx};
use iscsi_proto::error::{ConnectionError, TaskError, TimerKind};
use iscsi_proto::initiator::{Event, NetworkPortal, Recovery, SessionConfig, TaskOutcome};
use iscsi_proto::login::negotiation::{OperationalParams, TargetConfig};
use iscsi_proto::login::status::LoginStatus;
use iscsi_proto::testing::{LoginResponder, LoginScript, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header};
use iscsi_proto::wire::Serial;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A responder with DefaultTime2Wait 0 (so recovery reconnects at once)
/// and the given TSIH.
fn fast_responder(tsih: u16) -> LoginResponder {
    let tc = TargetConfig {
        params: OperationalParams {
            default_time2wait: 0,
            ..OperationalParams::default()
        },
        ..TargetConfig::default()
    };
    let mut r = LoginResponder::new(tc, None);
    r.tsih = tsih;
    r
}

/// Session recovery on (RFC 7143 section 7.1.5 at ErrorRecoveryLevel 0),
/// short backoff, DefaultTime2Wait 0 offered.
fn recovering_cfg() -> SessionConfig {
    let mut c = cfg().with_recovery(Recovery {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    });
    c.operational.default_time2wait = 0;
    c
}

/// Requires the reinstating login (RFC 7143 section 6.3.5: same ISID,
/// TSIH 0 for a new session).
fn check_reinstatement(first: &w::LoginRequest, again: &w::LoginRequest) -> Result<(), String> {
    check_eq("ISID of the new login", again.isid, first.isid)?;
    check_eq("TSIH of the new login", again.tsih, 0)
}

fn async_seen(evs: &[Event], event: w::AsyncEvent, params: [u16; 3]) -> Result<(), String> {
    if evs
        .iter()
        .any(|e| matches!(e, Event::AsyncEvent(n) if n.event == event && n.parameters == params))
    {
        Ok(())
    } else {
        Err(format!("no {event:?} {params:?} event among {evs:?}"))
    }
}

// ---------------------------------------------------------------- 15

fn async_logout(ctx: &mut CellCtx) -> Result<(), String> {
    const P3: u16 = 1;
    const CID: u16 = 3;
    per_driver(
        ctx,
        STD,
        true,
        |_, p, _| {
            p.login_plain()?;
            // A command the target never answers: the logout may not wait
            // for it past Parameter3.
            let c = p.expect_cmd()?;
            p.t.async_message(w::AsyncEvent::LogoutRequested, [0, 0, P3], &[]);
            p.flush()?;
            let t0 = Instant::now();
            let pdu = p.recv()?;
            let waited = t0.elapsed();
            let Header::LogoutRequest(l) = pdu.header else {
                return Err(format!("expected a Logout Request, got {:?}", pdu.header));
            };
            check_logout(&l, CID)?;
            // Immediate: the current CmdSN (RFC 7143 section 4.2.2.1).
            check_eq("Logout CmdSN", l.cmd_sn, c.cmd_sn.next())?;
            check_eq("Logout ExpStatSN", l.exp_stat_sn, p.next_stat_sn())?;
            // RFC 7143 section 11.9.1 (AsyncEvent 1): "no later than
            // Parameter3 seconds" (a second of slack for scheduling).
            if waited > Duration::from_secs(u64::from(P3) + 1) {
                return Err(format!(
                    "Logout Request after {waited:?}, Parameter3 = {P3} s"
                ));
            }
            p.t.logout_response(l.itt, 0, 0);
            p.flush()?;
            p.expect_closed()
        },
        |_, portal, _| {
            let mut c = cfg();
            c.cid = CID;
            let mut cl = std_connect(portal, c)?;
            let t = cl.submit(tur()).map_err(|e| e.to_string())?;
            let (o, _) = cl.wait(t).map_err(|e| e.to_string())?;
            check_eq(
                "unanswered task",
                o,
                TaskOutcome::Failed(TaskError::LoggedOut),
            )?;
            check_eq("close reason", std_closed_reason(&mut cl, STEP)?, None)?;
            async_seen(
                &cl.take_events(),
                w::AsyncEvent::LogoutRequested,
                [0, 0, P3],
            )?;
            Ok(format!(
                "AsyncEvent 1 (Parameter3 {P3} s) reported; Logout Request reason 0, CID {CID}, I bit; straggler Failed(LoggedOut); clean close"
            ))
        },
    )
}

// ---------------------------------------------------------------- 16

fn async_drop(ctx: &mut CellCtx) -> Result<(), String> {
    scenario(
        ctx,
        true,
        |l| {
            // Session 1, no recovery: event, then the drop.
            let mut p = l.accept()?;
            p.login_plain()?;
            p.expect_cmd()?;
            p.t.async_message(w::AsyncEvent::DropConnection, [0, 0, 0], &[]);
            p.flush()?;
            p.drop_connection();
            // Session 2, recovery: event, drop, reinstatement, reissue.
            let mut p = l.accept()?;
            let first = p.login(&mut fast_responder(0x0d))?;
            let c1 = p.expect_cmd()?;
            p.t.async_message(w::AsyncEvent::DropConnection, [0, 0, 0], &[]);
            p.flush()?;
            p.drop_connection();
            let mut q = l.accept()?;
            let again = q.login(&mut fast_responder(0x0e))?;
            check_reinstatement(&first, &again)?;
            let c2 = q.expect_cmd()?;
            check_eq("reissued ITT", c2.itt, c1.itt)?;
            check_cmd(&q, &c2, again.cmd_sn)?;
            q.good(&c2)?;
            q.serve_logout().map(drop)
        },
        |portal| {
            let mut c = std_connect(portal, cfg())?;
            let t = c.submit(tur()).map_err(|e| e.to_string())?;
            // The task in flight reports the session's end (the drivers'
            // one shape for a lost session).
            match c.wait(t) {
                Err(iscsi_std::Error::Closed(Some(ConnectionError::Closed))) => {}
                other => return Err(format!("task without recovery: {other:?}")),
            }
            check_eq(
                "close reason without recovery",
                std_closed_reason(&mut c, STEP)?,
                Some(ConnectionError::Closed),
            )?;
            async_seen(&c.take_events(), w::AsyncEvent::DropConnection, [0, 0, 0])?;
            let mut c = std_connect(portal, recovering_cfg())?;
            check_eq("TSIH", c.session().tsih(), 0x0d)?;
            let t = c.submit(tur()).map_err(|e| e.to_string())?;
            let (o, _) = c.wait(t).map_err(|e| e.to_string())?;
            expect_good("task with recovery", &o)?;
            check_eq("TSIH after reinstatement", c.session().tsih(), 0x0e)?;
            async_seen(&c.take_events(), w::AsyncEvent::DropConnection, [0, 0, 0])?;
            c.logout().map_err(|e| e.to_string())?;
            Ok("AsyncEvent 2 reported; no recovery: task and session Closed; recovery: new login (same ISID, TSIH 0), task reissued, GOOD".into())
        },
    )
}

// ---------------------------------------------------------------- 17

fn tmf_race(ctx: &mut CellCtx) -> Result<(), String> {
    let data = pattern(512, 11);
    let want = data.clone();
    per_driver(
        ctx,
        STD,
        true,
        move |_, p, _| {
            p.login_plain()?;
            let c = p.expect_cmd()?;
            let m = p.expect_abort_of(&c)?;
            check_eq("TMF CmdSN", m.cmd_sn, c.cmd_sn.next())?;
            // The task wins the race: its status first, then "task does
            // not exist" (RFC 7143 section 11.6.1, response 1).
            p.t.ack_cmd(c.cmd_sn);
            p.t.data_in(c.itt, 0, 0, &data, Some((0, w::Residual::None)));
            p.t.tmf_response(m.itt, w::TmfResponse::TaskDoesNotExist);
            p.flush()?;
            p.serve_logout().map(drop)
        },
        |_, portal, _| {
            let mut c = std_connect(portal, cfg())?;
            let t = c.submit(read(512)).map_err(|e| e.to_string())?;
            let r = c.abort(t).map_err(|e| format!("abort: {e}"))?;
            check_eq("TMF response", r, w::TmfResponse::TaskDoesNotExist)?;
            let (o, d) = c.wait(t).map_err(|e| e.to_string())?;
            expect_good("the raced task", &o)?;
            check_eq("read data", &d[..], &want[..])?;
            check_eq("tasks_in_flight", c.session().tasks_in_flight(), 0)?;
            c.logout().map_err(|e| e.to_string())?;
            Ok("status then TaskDoesNotExist: task GOOD once with its data, abort reports TaskDoesNotExist".into())
        },
    )
}

// ---------------------------------------------------------------- 18

/// Answers the next Login Request with a redirection to `to`.
fn redirect(p: &mut Peer, detail: u8, to: u16) -> Result<(), String> {
    let pdu = p.recv()?;
    let mut r = LoginResponder::plain();
    r.script.push_back(LoginScript::Status(
        1,
        detail,
        vec![("TargetAddress".into(), format!("127.0.0.1:{to},1"))],
    ));
    r.handle(&mut p.t, &pdu);
    p.flush()?;
    p.expect_closed()
}

/// One login redirected by `a` (detail 1 temporary, 2 permanent) to `b`,
/// where the session logs in, then `b` drops the connection: recovery
/// reconnects to `a` after a temporary redirect, to `b` after a permanent
/// one (RFC 7143 section 11.13.5: 0x0101 "the initiator SHOULD ... use the
/// original target address" later; 0x0102 "SHOULD use the new address").
fn redirect_case(detail: u8, a: Listener, b: Listener) -> Result<String, String> {
    let (pa, pb) = (a.port(), b.port());
    let back_to_a = detail == 1;
    let ha = spawn("redirect-a", a, move |a| {
        let mut p = a.accept()?;
        redirect(&mut p, detail, pb)?;
        if back_to_a {
            serve_reconnect(&a, 0x21)?;
        }
        Ok(())
    })?;
    let hb = spawn("redirect-b", b, move |b| {
        let mut p = b.accept()?;
        p.login(&mut fast_responder(0x20))?;
        p.expect_cmd()?;
        p.drop_connection();
        if !back_to_a {
            serve_reconnect(&b, 0x21)?;
        }
        Ok(())
    })?;
    let init = || -> Result<(), String> {
        let mut c = std_connect(&format!("127.0.0.1:{pa}"), recovering_cfg())?;
        check_eq("TSIH at the redirected portal", c.session().tsih(), 0x20)?;
        check_eq(
            "target portal",
            c.session().target_portal().cloned(),
            Some(NetworkPortal {
                host: "127.0.0.1".into(),
                port: pb,
                portal_group_tag: Some(1),
            }),
        )?;
        let t = c.submit(tur()).map_err(|e| e.to_string())?;
        let (o, _) = c.wait(t).map_err(|e| e.to_string())?;
        expect_good("TUR after the reconnection", &o)?;
        check_eq("TSIH after the reconnection", c.session().tsih(), 0x21)?;
        c.logout().map_err(|e| e.to_string())?;
        Ok(())
    };
    let r = init();
    let (ra, rb) = (join(ha), join(hb));
    r?;
    ra?;
    rb?;
    Ok(format!(
        "0x010{detail}: followed to :{pb}, logged in; after a drop reconnected to {}",
        if back_to_a {
            "the original portal"
        } else {
            "the new portal"
        }
    ))
}

/// Accepts the recovery connection: login (same ISID, TSIH 0), the
/// reissued command GOOD, logout.
fn serve_reconnect(l: &Listener, tsih: u16) -> Result<(), String> {
    let mut q = l.accept()?;
    let again = q.login(&mut fast_responder(tsih))?;
    check_eq("TSIH of the reconnection's login", again.tsih, 0)?;
    let c = q.expect_cmd()?;
    check_cmd(&q, &c, again.cmd_sn)?;
    q.good(&c)?;
    q.serve_logout().map(drop)
}

/// A redirects to B, B to A, ...: the login gives up after
/// `max_redirects` with `TooManyRedirects`.
fn redirect_loop() -> Result<String, String> {
    const MAX: u8 = 3;
    let a = Listener::bind()?;
    let b = Listener::bind()?;
    let (pa, pb) = (a.port(), b.port());
    let stop = Arc::new(AtomicBool::new(false));
    let bounce = |to: u16, stop: Arc<AtomicBool>| {
        move |l: Listener| -> Result<usize, String> {
            let mut n = 0;
            loop {
                match l.accept_within(Duration::from_millis(20))? {
                    Some(mut p) => {
                        n += 1;
                        redirect(&mut p, 1, to)?;
                    }
                    None if stop.load(Ordering::SeqCst) => return Ok(n),
                    None => {}
                }
            }
        }
    };
    let ha = spawn("loop-a", a, bounce(pb, stop.clone()))?;
    let hb = spawn("loop-b", b, bounce(pa, stop.clone()))?;
    let mut c = cfg();
    c.max_redirects = MAX;
    let r =
        iscsi_std::Client::connect(&format!("127.0.0.1:{pa}"), c, iscsi_std::Options::default());
    stop.store(true, Ordering::SeqCst);
    let (na, nb) = (join(ha), join(hb));
    match r {
        Err(iscsi_std::Error::Login(e)) => {
            check_eq("loop error", e, ConnectionError::TooManyRedirects(MAX))?
        }
        Err(e) => return Err(format!("redirect loop: {e}")),
        Ok(_) => return Err("a login through a redirect loop succeeded".into()),
    }
    // MAX + 1 redirections seen: A, B, A, B.
    check_eq("logins at A and B", (na?, nb?), (2, 2))?;
    Ok(format!(
        "A<->B loop: TooManyRedirects({MAX}) after 4 redirections (2 at each)"
    ))
}

fn redirects(ctx: &mut CellCtx) -> Result<(), String> {
    // The capture records the temporary case's first portal: the
    // redirection, then the recovery's login, command and logout there.
    let (a, b) = (Listener::bind()?, Listener::bind()?);
    let mut temporary = String::new();
    let port = a.port();
    super::maybe_captured(ctx, true, port, || {
        temporary = redirect_case(1, a, b)?;
        Ok(())
    })?;
    let permanent = redirect_case(2, Listener::bind()?, Listener::bind()?)?;
    let looped = redirect_loop()?;
    ctx.note(temporary);
    ctx.note(permanent);
    ctx.note(looped);
    Ok(())
}

// ---------------------------------------------------------------- 19

/// RFC 7143 section 11.13.5's Status-Class 2 and 3 details (0x020c is
/// the iSER "participating in an iSER session" code, decoded as unknown).
fn login_error_statuses() -> Vec<(u8, u8)> {
    (0..=0x0c)
        .map(|d| (2, d))
        .chain((0..=2).map(|d| (3, d)))
        .collect()
}

fn login_errors(ctx: &mut CellCtx) -> Result<(), String> {
    scenario(
        ctx,
        true,
        |l| {
            for (class, detail) in login_error_statuses() {
                let mut p = l.accept()?;
                let pdu = p.recv()?;
                let mut r = LoginResponder::plain();
                r.script
                    .push_back(LoginScript::Status(class, detail, Vec::new()));
                r.handle(&mut p.t, &pdu);
                p.flush()?;
                p.expect_closed()?;
            }
            Ok(())
        },
        |portal| {
            let all = login_error_statuses();
            for &(class, detail) in &all {
                let code = format!("0x{class:02x}{detail:02x}");
                let want = LoginStatus::from_raw(class, detail);
                match iscsi_std::Client::connect(portal, cfg(), iscsi_std::Options::default()) {
                    Err(iscsi_std::Error::Login(ConnectionError::LoginFailed {
                        class: c,
                        detail: d,
                        status,
                    })) => {
                        check_eq(&format!("{code} class"), c, want.class())?;
                        check_eq(&format!("{code} detail"), d, detail)?;
                        check_eq(&format!("{code} status"), status, want)?;
                        let shown = status.to_string();
                        if !shown.contains(&code) {
                            return Err(format!("{code} shown as {shown:?}"));
                        }
                    }
                    Err(e) => return Err(format!("{code}: {e}")),
                    Ok(_) => return Err(format!("{code}: the login succeeded")),
                }
            }
            Ok(format!(
                "{} statuses (0x0200-0x020c, 0x0300-0x0302): each LoginFailed with its class, detail and named status",
                all.len()
            ))
        },
    )
}

// ---------------------------------------------------------------- 20

fn drop_mid_login(ctx: &mut CellCtx) -> Result<(), String> {
    scenario(
        ctx,
        true,
        |l| {
            // (a) without recovery, (b) with recovery configured: the
            // Login Request is read, the connection closed.
            for _ in 0..2 {
                let mut p = l.accept()?;
                let pdu = p.recv()?;
                if !matches!(pdu.header, Header::LoginRequest(_)) {
                    return Err(format!("expected a Login Request, got {:?}", pdu.header));
                }
                p.drop_connection();
            }
            // (c) half a Login Response, then the close.
            let mut p = l.accept()?;
            let pdu = p.recv()?;
            let mut r = LoginResponder::plain();
            r.handle(&mut p.t, &pdu);
            let out = p.t.take_output();
            p.write_raw(out.get(..24).ok_or("short response")?)?;
            p.drop_connection();
            Ok(())
        },
        |portal| {
            for (i, c) in [cfg(), recovering_cfg(), cfg()].into_iter().enumerate() {
                match iscsi_std::Client::connect(portal, c, iscsi_std::Options::default()) {
                    // The core recovers only sessions that reached Full
                    // Feature Phase (RFC 7143 section 7.1.5 reinstates a
                    // session; a failed leading login has none).
                    Err(iscsi_std::Error::Login(ConnectionError::Closed)) => {}
                    Err(e) => return Err(format!("case {i}: {e}")),
                    Ok(_) => return Err(format!("case {i}: login succeeded")),
                }
            }
            Ok("close after the Login Request (with and without recovery) and mid-response: Closed, no retry".into())
        },
    )
}

// ---------------------------------------------------------------- 21

const WRITE_LEN: usize = 16 * 1024;
const WRITES: u32 = 4;

/// Serves a WRITE through one R2T for all of it (InitialR2T=Yes,
/// ImmediateData=No): checks every Data-Out (RFC 7143 section 11.7: ITT,
/// TTT echoed, DataSN from 0, Buffer Offset in order, F on the last) and
/// returns the data; with `stop_after` the connection is dropped after
/// that many Data-Out PDUs (`None` returned).
fn serve_write(
    p: &mut Peer,
    c: &w::ScsiCommand,
    ttt: u32,
    stop_after: Option<u32>,
) -> Result<Option<Vec<u8>>, String> {
    check_eq("WRITE W bit", c.write, true)?;
    check_eq("WRITE F bit (no unsolicited data)", c.final_pdu, true)?;
    let len = c.expected_data_transfer_length;
    p.t.r2t(c.itt, ttt, 0, 0, len);
    p.flush()?;
    let mut buf = Vec::new();
    let mut sn = 0u32;
    loop {
        let pdu = p.recv()?;
        let Header::DataOut(d) = pdu.header else {
            return Err(format!("expected Data-Out, got {:?}", pdu.header));
        };
        check_eq("Data-Out ITT", d.itt, c.itt)?;
        check_eq("Data-Out TTT", d.ttt, ttt)?;
        check_eq("Data-Out DataSN", d.data_sn, Serial(sn))?;
        check_eq("Data-Out offset", d.buffer_offset as usize, buf.len())?;
        buf.extend_from_slice(&pdu.data);
        sn += 1;
        if stop_after == Some(sn) {
            p.drop_connection();
            return Ok(None);
        }
        if d.final_pdu {
            check_eq("data length", buf.len(), len as usize)?;
            return Ok(Some(buf));
        }
    }
}

fn lba_of(c: &w::ScsiCommand) -> u32 {
    u32::from_be_bytes([c.cdb[2], c.cdb[3], c.cdb[4], c.cdb[5]])
}

fn recovery_mid_write(ctx: &mut CellCtx) -> Result<(), String> {
    scenario(
        ctx,
        true,
        |l| {
            let mut committed: Vec<(u32, Vec<u8>)> = Vec::new();
            let mut p = l.accept()?;
            let first = p.login(&mut fast_responder(0x0d))?;
            let mut cmds = Vec::new();
            for i in 0..WRITES {
                let c = p.expect_cmd()?;
                check_eq("CmdSN", c.cmd_sn, first.cmd_sn.plus(i))?;
                cmds.push(c);
            }
            // Writes 0 and 1 land and are answered.
            for (i, c) in cmds.iter().take(2).enumerate() {
                let d =
                    serve_write(&mut p, c, 0x100 + i as u32, None)?.ok_or("write not completed")?;
                committed.push((lba_of(c), d));
                p.good(c)?;
            }
            // Write 2: the first Data-Out arrives, then the connection
            // dies; nothing of it is committed. Write 3 never started.
            serve_write(&mut p, &cmds[2], 0x102, Some(1))?;
            let mut q = l.accept()?;
            let again = q.login(&mut fast_responder(0x0e))?;
            check_reinstatement(&first, &again)?;
            let re: Vec<w::ScsiCommand> =
                (0..2).map(|_| q.expect_cmd()).collect::<Result<_, _>>()?;
            check_eq(
                "reissued ITTs, in order",
                (re[0].itt, re[1].itt),
                (cmds[2].itt, cmds[3].itt),
            )?;
            check_eq(
                "reissued CmdSNs",
                (re[0].cmd_sn, re[1].cmd_sn),
                (again.cmd_sn, again.cmd_sn.next()),
            )?;
            for (k, c) in re.iter().enumerate() {
                let d =
                    serve_write(&mut q, c, 0x200 + k as u32, None)?.ok_or("write not completed")?;
                committed.push((lba_of(c), d));
                q.good(c)?;
            }
            q.serve_logout()?;
            // Every write landed exactly once, with its data.
            committed.sort_by_key(|c| c.0);
            check_eq(
                "committed LBAs",
                committed.iter().map(|c| c.0).collect::<Vec<_>>(),
                (0..WRITES).map(|i| i * 32).collect::<Vec<_>>(),
            )?;
            for (i, (lba, d)) in committed.iter().enumerate() {
                if d[..] != pattern(WRITE_LEN, i as u8)[..] {
                    return Err(format!("data of the write at LBA {lba} differs"));
                }
            }
            Ok(())
        },
        |portal| {
            let mut c = recovering_cfg();
            c.operational.immediate_data = false;
            let mut cl = std_connect(portal, c)?;
            let ts: Vec<_> = (0..WRITES)
                .map(|i| cl.submit(write(i * 32, pattern(WRITE_LEN, i as u8).into())))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            for (i, t) in ts.into_iter().enumerate() {
                let (o, _) = cl.wait(t).map_err(|e| format!("write {i}: {e}"))?;
                expect_good(&format!("write {i}"), &o)?;
            }
            check_eq("tasks_in_flight", cl.session().tasks_in_flight(), 0)?;
            check_eq("TSIH after reinstatement", cl.session().tsih(), 0x0e)?;
            cl.logout().map_err(|e| e.to_string())?;
            Ok("4 x 16 KiB writes, drop after write 2's first Data-Out: reinstated (same ISID, TSIH 0), writes 2-3 reissued in order; each landed exactly once".into())
        },
    )
}

// ---------------------------------------------------------------- 22

const KA_INTERVAL: Duration = Duration::from_millis(300);
const KA_TIMEOUT: Duration = Duration::from_millis(300);

fn silent_target(ctx: &mut CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        &Kind::ALL,
        true,
        |_, p, _| {
            let login = p.login_plain()?;
            let (n, d) = p.expect_nop_out()?;
            // The keepalive is a ping: a valid ITT asks for an answer,
            // TTT 0xffffffff, immediate (RFC 7143 section 11.18).
            if n.itt == RESERVED {
                return Err("keepalive NOP-Out with ITT 0xffffffff asks for no answer".into());
            }
            check_eq("keepalive TTT", n.ttt, RESERVED)?;
            check_eq("keepalive I bit", n.immediate, true)?;
            check_eq("keepalive data", d.len(), 0)?;
            check_eq("keepalive CmdSN", n.cmd_sn, login.cmd_sn)?;
            check_eq("keepalive ExpStatSN", n.exp_stat_sn, p.next_stat_sn())?;
            // Silence: the initiator must give up by itself.
            p.expect_closed()
        },
        |k, portal, _| {
            let c = cfg().with_keepalive(KA_INTERVAL, KA_TIMEOUT);
            let mut d = connect(k, portal, c)?;
            let t0 = Instant::now();
            let reason = d.closed_reason(STEP)?;
            let took = t0.elapsed();
            check_eq(
                "close reason",
                reason,
                Some(ConnectionError::TimedOut(TimerKind::Keepalive)),
            )?;
            Ok(format!(
                "keepalive ping after {KA_INTERVAL:?}, TimedOut(Keepalive) {:.2} s after login",
                took.as_secs_f64()
            ))
        },
    )
}

pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(G, "async-logout-request", async_logout),
        Cell::new(G, "async-drop-connection", async_drop),
        Cell::new(G, "tmf-races-completion", tmf_race),
        Cell::new(G, "login-redirect", redirects),
        Cell::new(G, "login-error-statuses", login_errors),
        Cell::new(G, "drop-mid-login", drop_mid_login),
        Cell::new(G, "recovery-mid-write", recovery_mid_write),
        Cell::new(G, "target-silent", silent_target),
    ]
}
