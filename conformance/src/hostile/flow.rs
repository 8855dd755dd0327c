//! Scenarios 1-7: target NOP-In pings (after login, mid-read, a storm),
//! the CmdSN window (closed at login, closed mid-stream, stale and invalid
//! updates) and a StatSN gap.

use super::{
    cfg, check_eq, connect, expect_good, pattern, per_driver, read, run, tur, Kind, Peer, G, STD,
    STEP,
};
use crate::runner::Cell;
use iscsi_proto::error::{ConnectionError, ProtocolError};
use iscsi_proto::initiator::TaskOutcome;
use iscsi_proto::testing::{LoginResponder, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header};
use iscsi_proto::wire::Serial;
use std::sync::mpsc;

/// Connects the blocking driver.
pub(super) fn std_connect(
    portal: &str,
    c: iscsi_proto::initiator::SessionConfig,
) -> Result<iscsi_std::Client, String> {
    iscsi_std::Client::connect(portal, c, iscsi_std::Options::default())
        .map_err(|e| format!("login: {e}"))
}

/// Checks a NOP-Out answering a target ping (RFC 7143 section 11.18.3:
/// the answer "MUST" carry ITT 0xffffffff and the NOP-In's TTT and LUN,
/// section 11.18.2 echo the ping data, section 11.18 the I bit) with the
/// current CmdSN and ExpStatSN (section 4.2.2.1 / 4.2.2.2).
fn check_ping_answer(
    p: &Peer,
    n: &w::NopOut,
    data: &[u8],
    ttt: u32,
    lun: u64,
    want_data: &[u8],
    cmd_sn: Serial,
) -> Result<(), String> {
    check_eq("NOP-Out ITT", n.itt, RESERVED)?;
    check_eq("NOP-Out TTT", n.ttt, ttt)?;
    check_eq("NOP-Out LUN", n.lun, lun)?;
    check_eq("NOP-Out I bit", n.immediate, true)?;
    check_eq("NOP-Out data", data, want_data)?;
    check_eq("NOP-Out CmdSN", n.cmd_sn, cmd_sn)?;
    check_eq("NOP-Out ExpStatSN", n.exp_stat_sn, p.next_stat_sn())
}

/// A SCSI Command that must be non-immediate with this CmdSN and the
/// current ExpStatSN.
pub(super) fn check_cmd(p: &Peer, c: &w::ScsiCommand, cmd_sn: Serial) -> Result<(), String> {
    check_eq("SCSI Command I bit", c.immediate, false)?;
    check_eq("SCSI Command CmdSN", c.cmd_sn, cmd_sn)?;
    check_eq("SCSI Command ExpStatSN", c.exp_stat_sn, p.next_stat_sn())
}

/// Logout Request checks: reason 0 "close the session" (RFC 7143 section
/// 11.14.1), I bit, CID of the connection.
pub(super) fn check_logout(l: &w::LogoutRequest, cid: u16) -> Result<(), String> {
    check_eq("Logout reason", l.reason, w::LogoutReason::CloseSession)?;
    check_eq("Logout I bit", l.immediate, true)?;
    check_eq("Logout CID", l.cid, cid)
}

// ---------------------------------------------------------------- 1

const LUN1: u64 = 0x0001_0000_0000_0000;

fn nop_after_login_target(_: Kind, p: &mut Peer, _: &mpsc::Receiver<()>) -> Result<(), String> {
    const TTT: u32 = 0x1234_5678;
    let data = b"ping-right-after-login";
    let login = p.login_queued(&mut LoginResponder::plain())?;
    // The ping travels in the same TCP write as the final Login Response
    // (the seed's storage target did exactly that).
    p.t.nop_in_ping(TTT, LUN1, data);
    p.flush()?;
    let (n, d) = p.expect_nop_out()?;
    check_ping_answer(p, &n, &d, TTT, LUN1, data, login.cmd_sn)?;
    let c = p.expect_cmd()?;
    // RFC 7143 section 4.2.2.1: numbering starts with the leading login's
    // CmdSN, and the login is immediate: the first command reuses it.
    check_cmd(p, &c, login.cmd_sn)?;
    p.good(&c)?;
    let l = p.serve_logout()?;
    check_logout(&l, 0)
}

fn nop_after_login(ctx: &mut crate::runner::CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        &Kind::ALL,
        true,
        nop_after_login_target,
        |k, portal, _| {
            let mut d = connect(k, portal, cfg())?;
            let (o, _) = run(d.as_mut(), tur())?;
            expect_good("TEST UNIT READY after the NOP-In", &o)?;
            d.logout()?;
            Ok("ping in the login's TCP write answered (ITT ffffffff, TTT, LUN, data, I), next command GOOD".into())
        },
    )
}

// ---------------------------------------------------------------- 2

fn nop_mid_read(ctx: &mut crate::runner::CellCtx) -> Result<(), String> {
    const LEN: usize = 1536;
    const TTT: u32 = 0x2222;
    let data = pattern(LEN, 7);
    let want = data.clone();
    per_driver(
        ctx,
        STD,
        true,
        move |_, p, _| {
            let login = p.login_plain()?;
            let c = p.expect_cmd()?;
            check_cmd(p, &c, login.cmd_sn)?;
            check_eq("READ R bit", c.read, true)?;
            check_eq("READ EDTL", c.expected_data_transfer_length, LEN as u32)?;
            p.t.ack_cmd(c.cmd_sn);
            p.t.data_in(c.itt, 0, 0, &data[..512], None);
            p.t.nop_in_ping(TTT, 0, b"keepalive-mid-read");
            p.flush()?;
            let (n, d) = p.expect_nop_out()?;
            check_ping_answer(
                p,
                &n,
                &d,
                TTT,
                0,
                b"keepalive-mid-read",
                login.cmd_sn.next(),
            )?;
            p.t.data_in(c.itt, 1, 512, &data[512..1024], None);
            p.t.data_in(c.itt, 2, 1024, &data[1024..], Some((0, w::Residual::None)));
            p.flush()?;
            p.serve_logout().map(drop)
        },
        |_, portal, _| {
            let mut c = std_connect(portal, cfg())?;
            let done = c.execute(read(LEN as u32)).map_err(|e| e.to_string())?;
            check_eq("read status", done.result.is_good(), true)?;
            check_eq("bytes_read", done.result.bytes_read, LEN as u32)?;
            if done.data[..] != want[..] {
                return Err("read data corrupted around the NOP-In".into());
            }
            c.logout().map_err(|e| e.to_string())?;
            Ok("ping between Data-In 0 and 1 answered; 1536 bytes intact".into())
        },
    )
}

// ---------------------------------------------------------------- 3

const STORM: u32 = 1000;

fn nop_storm(ctx: &mut crate::runner::CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        STD,
        true,
        |_, p, _| {
            let login = p.login_plain()?;
            let c1 = p.expect_cmd()?;
            p.t.ack_cmd(c1.cmd_sn);
            p.t.scsi_response(c1.itt, 0, w::Residual::None, None);
            // The storm: back to back, in the same write as the response.
            for i in 0..STORM {
                p.t.nop_in_ping(0x0001_0000 + i, 0, &i.to_be_bytes());
            }
            p.flush()?;
            let mut answered = 0u32;
            let mut cmd2 = None;
            while answered < STORM || cmd2.is_none() {
                let pdu = p.recv()?;
                match pdu.header {
                    Header::NopOut(n) => {
                        if answered >= STORM {
                            return Err(format!("NOP-Out beyond the {STORM} asked for: {n:?}"));
                        }
                        let i = answered;
                        check_ping_answer(
                            p,
                            &n,
                            &pdu.data,
                            0x0001_0000 + i,
                            0,
                            &i.to_be_bytes(),
                            // The current CmdSN (RFC 7143 section 4.2.2.1):
                            // the second command's number once that command
                            // is on the wire, before it the one it takes.
                            if cmd2.is_some() {
                                login.cmd_sn.plus(2)
                            } else {
                                login.cmd_sn.plus(1)
                            },
                        )
                        .map_err(|e| format!("answer #{i}: {e}"))?;
                        answered += 1;
                    }
                    Header::ScsiCommand(c) if cmd2.is_none() => {
                        check_eq("second command CmdSN", c.cmd_sn, login.cmd_sn.next())?;
                        cmd2 = Some(c);
                    }
                    other => return Err(format!("unexpected PDU during the storm: {other:?}")),
                }
            }
            let c2 = cmd2.ok_or("no second command")?;
            p.good(&c2)?;
            p.serve_logout().map(drop)
        },
        |_, portal, _| {
            let mut c = std_connect(portal, cfg())?;
            let d = c.execute(tur()).map_err(|e| e.to_string())?;
            check_eq("first TUR", d.result.is_good(), true)?;
            let d = c.execute(tur()).map_err(|e| e.to_string())?;
            check_eq("TUR after the storm", d.result.is_good(), true)?;
            // Nothing left queued or in flight: the answers did not pile up.
            check_eq("has_transmit", c.session().has_transmit(), false)?;
            check_eq("tasks_in_flight", c.session().tasks_in_flight(), 0)?;
            c.logout().map_err(|e| e.to_string())?;
            Ok(format!(
                "{STORM} pings answered once each, in order; nothing left queued"
            ))
        },
    )
}

// ---------------------------------------------------------------- 4

fn window_closed_at_login_target(
    _: Kind,
    p: &mut Peer,
    go: &mpsc::Receiver<()>,
) -> Result<(), String> {
    let mut r = LoginResponder::plain();
    // MaxCmdSN = ExpCmdSN - 1 in the final Login Response.
    r.window = (0, 0);
    let login = p.login(&mut r)?;
    check_eq("closed window", p.t.max_cmd_sn, login.cmd_sn.minus(1))?;
    go.recv_timeout(STEP)
        .map_err(|_| "the initiator never submitted".to_string())?;
    // Two pings with the window still closed: their answers must come
    // before any command (a command sent at submit would precede them).
    p.ping_sync(0x4001)
        .map_err(|e| format!("window closed: {e}"))?;
    p.ping_sync(0x4002)
        .map_err(|e| format!("window closed: {e}"))?;
    // RFC 7143 section 4.2.2.1: a NOP-In opens the window.
    p.t.max_cmd_sn = p.t.exp_cmd_sn.plus(7);
    let (e, m) = (p.t.exp_cmd_sn, p.t.max_cmd_sn);
    p.t.nop_in_update(e, m);
    p.flush()?;
    let c = p.expect_cmd()?;
    check_cmd(p, &c, login.cmd_sn)?;
    p.good(&c)?;
    p.serve_logout().map(drop)
}

fn window_closed_at_login(ctx: &mut crate::runner::CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        &Kind::ALL,
        true,
        window_closed_at_login_target,
        |k, portal, go| {
            let mut d = connect(k, portal, cfg())?;
            let t = d.submit(tur())?;
            if let Some(q) = d.queued() {
                check_eq("commands held by the closed window", q, 1)?;
            }
            go.send(()).map_err(|_| "target gone")?;
            let (o, _) = d.wait(t)?;
            expect_good("TUR after the window opened", &o)?;
            d.logout()?;
            Ok("no command while MaxCmdSN = ExpCmdSN - 1; sent with the login's CmdSN once a NOP-In opened it".into())
        },
    )
}

// ---------------------------------------------------------------- 5

fn window_closed_mid_stream(ctx: &mut crate::runner::CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        STD,
        true,
        |_, p, go| {
            let mut r = LoginResponder::plain();
            r.window = (0, 2);
            let login = p.login(&mut r)?;
            let l = login.cmd_sn;
            go.recv_timeout(STEP)
                .map_err(|_| "the initiator never submitted".to_string())?;
            let c1 = p.expect_cmd()?;
            check_cmd(p, &c1, l)?;
            let c2 = p.expect_cmd()?;
            check_cmd(p, &c2, l.plus(1))?;
            p.ping_sync(0x5001)
                .map_err(|e| format!("window of 2 full: {e}"))?;
            // Acknowledging c1 moves the window by one: exactly one more.
            p.t.ack_cmd(c1.cmd_sn);
            p.t.scsi_response(c1.itt, 0, w::Residual::None, None);
            p.flush()?;
            let c3 = p.expect_cmd()?;
            check_cmd(p, &c3, l.plus(2))?;
            p.ping_sync(0x5002)
                .map_err(|e| format!("window moved by one: {e}"))?;
            p.good(&c2)?;
            let after_c2 = p.next_stat_sn();
            p.good(&c3)?;
            // c4 may leave as soon as c2's status opened the window, before
            // c3's status is read (two TCP writes): its ExpStatSN then
            // acknowledges c2 only. Either is right; c5 needs c3's status.
            let c4 = p.expect_cmd()?;
            check_eq("SCSI Command I bit", c4.immediate, false)?;
            check_eq("SCSI Command CmdSN", c4.cmd_sn, l.plus(3))?;
            if c4.exp_stat_sn != after_c2 && c4.exp_stat_sn != p.next_stat_sn() {
                return Err(format!(
                    "c4 ExpStatSN {:?}: expected {after_c2:?} or {:?}",
                    c4.exp_stat_sn,
                    p.next_stat_sn()
                ));
            }
            let c5 = p.expect_cmd()?;
            check_cmd(p, &c5, l.plus(4))?;
            let mut itts = vec![c1.itt, c2.itt, c3.itt, c4.itt, c5.itt];
            itts.sort_unstable();
            itts.dedup();
            check_eq("distinct ITTs", itts.len(), 5)?;
            p.good(&c4)?;
            p.good(&c5)?;
            p.serve_logout().map(drop)
        },
        |_, portal, go| {
            let mut c = std_connect(portal, cfg())?;
            let mut ts = Vec::new();
            for i in 0..5 {
                ts.push(c.submit(tur()).map_err(|e| format!("submit {i}: {e}"))?);
            }
            check_eq(
                "commands held back by MaxCmdSN",
                c.session().queued_commands(),
                3,
            )?;
            go.send(()).map_err(|_| "target gone")?;
            for (i, t) in ts.into_iter().enumerate() {
                let (o, _) = c.wait(t).map_err(|e| format!("wait {i}: {e}"))?;
                expect_good(&format!("TUR {i}"), &o)?;
            }
            c.logout().map_err(|e| e.to_string())?;
            Ok("5 queued, window 2: CmdSN 1,2 | +1 -> 3 | +2 -> 4,5, in order".into())
        },
    )
}

// ---------------------------------------------------------------- 6

fn window_stale_invalid(ctx: &mut crate::runner::CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        STD,
        true,
        |_, p, go| {
            let mut r = LoginResponder::plain();
            r.window = (0, 4);
            let login = p.login(&mut r)?;
            let l = login.cmd_sn;
            let c1 = p.expect_cmd()?;
            check_cmd(p, &c1, l)?;
            let (ping, _) = p.expect_nop_out()?;
            // Invalid: MaxCmdSN < ExpCmdSN - 1 (RFC 7143 section 4.2.2.1:
            // "they are both ignored"), although ExpCmdSN would ack c1.
            p.t.nop_in_update(l.plus(1), l.minus(1));
            p.t.nop_in_reply(&ping, bytes::Bytes::from_static(b"sync"));
            p.flush()?;
            // The initiator checks its window, then says go.
            go.recv_timeout(STEP)
                .map_err(|_| "the initiator never checked its window".to_string())?;
            // Stale: MaxCmdSN below the current one ("otherwise, it is
            // ignored"), ExpCmdSN valid.
            p.t.exp_cmd_sn = l.plus(1);
            p.t.max_cmd_sn = l.plus(1);
            p.t.scsi_response(c1.itt, 0, w::Residual::None, None);
            p.flush()?;
            p.t.max_cmd_sn = l.plus(3);
            // All three go out at once (the window allows CmdSN up to
            // l + 3), so they carry the same ExpStatSN.
            let mut cs = Vec::new();
            for k in 1..=3 {
                let c = p.expect_cmd()?;
                check_cmd(p, &c, l.plus(k))?;
                cs.push(c);
            }
            for c in &cs {
                p.good(c)?;
            }
            p.serve_logout().map(drop)
        },
        |_, portal, go| {
            let mut c = std_connect(portal, cfg())?;
            let t1 = c.submit(tur()).map_err(|e| e.to_string())?;
            let l = c.session().window().exp_cmd_sn();
            let max = c.session().window().max_cmd_sn();
            check_eq("MaxCmdSN after login", max, l.plus(3))?;
            c.ping(bytes::Bytes::from_static(b"sync"))
                .map_err(|e| format!("ping: {e}"))?;
            check_eq(
                "ExpCmdSN after the invalid update",
                c.session().window().exp_cmd_sn(),
                l,
            )?;
            check_eq(
                "MaxCmdSN after the invalid update",
                c.session().window().max_cmd_sn(),
                max,
            )?;
            go.send(()).map_err(|_| "target gone")?;
            let (o, _) = c.wait(t1).map_err(|e| e.to_string())?;
            expect_good("TUR 1", &o)?;
            check_eq(
                "ExpCmdSN after the stale update",
                c.session().window().exp_cmd_sn(),
                l.plus(1),
            )?;
            check_eq(
                "MaxCmdSN after the stale update (no shrink)",
                c.session().window().max_cmd_sn(),
                max,
            )?;
            let ts: Vec<_> = (0..3)
                .map(|_| c.submit(tur()))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            check_eq("commands held back", c.session().queued_commands(), 0)?;
            for t in ts {
                let (o, _) = c.wait(t).map_err(|e| e.to_string())?;
                expect_good("TUR", &o)?;
            }
            c.logout().map_err(|e| e.to_string())?;
            Ok("invalid (Max < Exp-1) and stale (Max lower) updates ignored; 3 commands not stalled".into())
        },
    )
}

// ---------------------------------------------------------------- 7

fn stat_sn_gap(ctx: &mut crate::runner::CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        STD,
        true,
        |_, p, _| {
            p.login_plain()?;
            let a = p.expect_cmd()?;
            let b = p.expect_cmd()?;
            p.t.ack_cmd(a.cmd_sn);
            p.t.ack_cmd(b.cmd_sn);
            // Status out of StatSN order (istgt does this with TMF
            // responses): B gets s0 + 1 and goes first, then A gets s0.
            let s0 = p.t.stat_sn;
            p.t.stat_sn = s0.next();
            p.t.scsi_response(b.itt, 0, w::Residual::None, None);
            p.t.stat_sn = s0;
            p.t.scsi_response(a.itt, 0, w::Residual::None, None);
            p.t.stat_sn = s0.plus(2);
            p.flush()?;
            // Both acknowledged: the next command carries ExpStatSN s0 + 2.
            let c = p.expect_cmd()?;
            check_eq(
                "ExpStatSN after the reordered pair",
                c.exp_stat_sn,
                s0.plus(2),
            )?;
            p.t.ack_cmd(c.cmd_sn);
            // Then a jump past the tolerance (64 ahead): lost status.
            p.t.stat_sn = s0.plus(2 + 65);
            p.t.scsi_response(c.itt, 0, w::Residual::None, None);
            p.flush()?;
            p.expect_closed()
        },
        |_, portal, _| {
            let mut c = std_connect(portal, cfg())?;
            let s0 = c.session().exp_stat_sn();
            let a = c.submit(tur()).map_err(|e| e.to_string())?;
            let b = c.submit(tur()).map_err(|e| e.to_string())?;
            for t in [a, b] {
                let (o, _) = c.wait(t).map_err(|e| e.to_string())?;
                if !matches!(o, TaskOutcome::Scsi(ref r) if r.status == 0) {
                    return Err(format!("reordered StatSN: task ended {o:?}"));
                }
            }
            let t = c.submit(tur()).map_err(|e| e.to_string())?;
            // RFC 7143 section 4.2.2.2: "Initiators MUST undertake recovery
            // actions if the difference is greater than an implementation-
            // defined constant"; ours is 64 (a StatSN up to 64 ahead waits
            // for the gap to fill). At ErrorRecoveryLevel 0 only a new
            // connection repairs lost status.
            let expected = s0.plus(2);
            let want = ConnectionError::Protocol(ProtocolError::StatSnGap {
                expected: expected.0,
                received: expected.plus(65).0,
            });
            // The task in flight reports the session's end (the drivers'
            // one shape for a lost session).
            match c.wait(t) {
                Err(iscsi_std::Error::Closed(Some(e))) => check_eq("task error", e, want.clone())?,
                other => return Err(format!("task: expected the session's end, got {other:?}")),
            }
            let reason = super::driver_under_test::std_closed_reason(&mut c, STEP)?;
            check_eq("close reason", reason, Some(want))?;
            Ok(format!(
                "StatSN s0+1 before s0 accepted (ExpStatSN then s0+2); StatSN {:#x} for ExpStatSN {:#x}: StatSnGap, connection dropped, task reports Closed(StatSnGap)",
                expected.plus(65).0,
                expected.0
            ))
        },
    )
}

pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(G, "nop-in-after-login", nop_after_login),
        Cell::new(G, "nop-in-mid-read", nop_mid_read),
        Cell::new(G, "nop-in-storm", nop_storm),
        Cell::new(G, "window-closed-at-login", window_closed_at_login),
        Cell::new(G, "window-closed-mid-stream", window_closed_mid_stream),
        Cell::new(G, "window-stale-invalid-update", window_stale_invalid),
        Cell::new(G, "stat-sn-gap", stat_sn_gap),
    ]
}
