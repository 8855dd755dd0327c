//! A session left alone against a target that drops silent initiators
//! (issue "Integrity first", item 10): tgtd with `nop_interval=2,nop_count=3`
//! pings every 2 s and closes a connection after 3 unanswered pings (its
//! log: "tcp connection timed out after 3 failed NOP-OUT"), 6 to 8 s into
//! the silence. The client logs in, reads, is not called for 15 s, then
//! reads again: the second read must succeed on the same session, with no
//! recovery event, and the capture must show the pings answered.
//!
//! The `iscsi-std` client is left truly alone (no `idle()` call): its
//! background thread answers the pings (`iscsi_std::Options::background`).

use super::initiator_common::{config, connect, lun, op_params, read_capacity, read_cmd};
use crate::peers::{Tgtd, TgtdConfig};
use crate::runner::{Cell, CellCtx};
use iscsi_proto::initiator::{Completed, Event, ScsiCommand};
use std::time::Duration;

const G: &str = "idle-keepalive";

/// tgtd's disk is LUN 1 (LUN 0 is its controller).
const LUN: u16 = 1;

/// How long the client is left alone: about twice tgtd's drop time.
const IDLE: Duration = Duration::from_secs(15);

/// NOP-In pings tgtd must have sent during the idle time (one per 2 s).
const MIN_PINGS: usize = 5;

pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(G, "std-tgtd-nop-interval", std_tgtd),
        Cell::new(G, "mio-tgtd-nop-interval", mio_tgtd),
        Cell::new(G, "smol-tgtd-nop-interval", |ctx| {
            async_tgtd(ctx, iscsi_cli::driver::DriverKind::Smol)
        }),
        Cell::new(G, "tokio-tgtd-nop-interval", |ctx| {
            async_tgtd(ctx, iscsi_cli::driver::DriverKind::Tokio)
        }),
    ]
}

/// Starts tgtd with `nop_interval=2,nop_count=3` on its target (set with
/// tgtadm; tgtd applies them to every connection that logs in after).
fn pinging_tgtd() -> Result<Tgtd, String> {
    let t = Tgtd::start(&TgtdConfig::default())?;
    for (k, v) in [("nop_interval", "2"), ("nop_count", "3")] {
        t.tgtadm(&[
            "--op", "update", "--mode", "target", "--tid", "1", "--name", k, "--value", v,
        ])?;
    }
    let shown = t.tgtadm(&["--op", "show", "--mode", "target"])?;
    if !shown.contains("Nop interval: 2") || !shown.contains("Nop count: 3") {
        return Err(format!("tgtd did not take the NOP settings: {shown}"));
    }
    Ok(t)
}

fn std_tgtd(ctx: &mut CellCtx) -> Result<(), String> {
    let t = pinging_tgtd()?;
    let report = ctx.captured(t.port(), || {
        let mut client = connect(&t.portal(), config(Some(t.iqn()), op_params()))?;
        let cap = read_capacity(&mut client, lun(LUN))?;
        let read = || read_cmd(lun(LUN), 0, 8, cap.block_len);
        let first = client
            .execute(read())
            .map_err(|e| format!("first read: {e}"))?;
        if !first.result.is_good() {
            return Err(format!("first read: {:?}", first.result));
        }
        // Nothing calls the client now.
        std::thread::sleep(IDLE);
        let second = client
            .execute(read())
            .map_err(|e| format!("read after {} s idle: {e}", IDLE.as_secs()))?;
        if !second.result.is_good() {
            return Err(format!(
                "read after {} s idle: {:?} (a UNIT ATTENTION means the session was recovered)",
                IDLE.as_secs(),
                second.result
            ));
        }
        if second.data != first.data {
            return Err("the two reads of the same blocks differ".into());
        }
        let recovered: Vec<Event> = client
            .take_events()
            .into_iter()
            .filter(|e| matches!(e, Event::Recovering { .. } | Event::Reinstated { .. }))
            .collect();
        if !recovered.is_empty() {
            return Err(format!(
                "the session was recovered, not kept: {recovered:?}"
            ));
        }
        client.logout().map_err(|e| format!("logout: {e}"))?;
        Ok(())
    })?;
    check_pings(ctx, &t, &report.opcodes)
}

/// The checks every driver's cell ends with: tgtd did not drop the
/// connection, and each of its pings was answered.
fn check_pings(ctx: &mut CellCtx, t: &Tgtd, opcodes: &[u8]) -> Result<(), String> {
    let log = t.log_tail(50);
    if log.contains("failed NOP-OUT") {
        return Err(format!("tgtd dropped the connection: {log}"));
    }
    let pings = opcodes.iter().filter(|&&o| o == 0x20).count();
    let answers = opcodes.iter().filter(|&&o| o == 0x00).count();
    if pings < MIN_PINGS || answers < pings {
        return Err(format!(
            "expected at least {MIN_PINGS} NOP-In pings, each answered: {pings} NOP-In, {answers} NOP-Out"
        ));
    }
    ctx.note(format!(
        "idle {} s: {pings} NOP-In pings answered, same session",
        IDLE.as_secs()
    ));
    Ok(())
}

/// Reads the same blocks before and after `idle`; both must be GOOD and
/// equal (without recovery configured, a dropped connection fails the
/// second read).
fn reads_around_idle<S>(
    s: &mut S,
    exec: impl Fn(&mut S, ScsiCommand) -> Result<Completed, String>,
    idle: impl FnOnce(&mut S) -> Result<(), String>,
) -> Result<(), String> {
    let read = || read_cmd(lun(LUN), 0, 8, 512);
    // The first command of a new nexus gets the UNIT ATTENTION of the
    // power-on (SPC-4 6.4): take it here.
    let _ = exec(s, read());
    let first = exec(s, read()).map_err(|e| format!("first read: {e}"))?;
    idle(s)?;
    let second =
        exec(s, read()).map_err(|e| format!("read after {} s idle: {e}", IDLE.as_secs()))?;
    if !first.result.is_good() || !second.result.is_good() || first.data != second.data {
        return Err(format!("reads: {:?} / {:?}", first.result, second.result));
    }
    Ok(())
}

/// `iscsi-mio`: the application's event loop runs (here
/// `Blocking::run_until`) but asks nothing of the session for 15 s.
fn mio_tgtd(ctx: &mut CellCtx) -> Result<(), String> {
    let t = pinging_tgtd()?;
    let report = ctx.captured(t.port(), || {
        let mut b =
            iscsi_mio::client::Blocking::connect(&t.portal(), config(Some(t.iqn()), op_params()))
                .map_err(|e| format!("connect: {e}"))?;
        reads_around_idle(
            &mut b,
            |b, cmd| b.execute(cmd).map_err(|e| e.to_string()),
            |b| {
                let until = std::time::Instant::now() + IDLE;
                b.run_until(|_| std::time::Instant::now() >= until)
                    .map_err(|e| format!("idle loop: {e}"))
            },
        )?;
        let recovered: Vec<Event> = b
            .take_async_events()
            .into_iter()
            .filter(|e| matches!(e, Event::Recovering { .. } | Event::Reinstated { .. }))
            .collect();
        if !recovered.is_empty() {
            return Err(format!(
                "the session was recovered, not kept: {recovered:?}"
            ));
        }
        b.logout().map_err(|e| format!("logout: {e}"))?;
        Ok(())
    })?;
    check_pings(ctx, &t, &report.opcodes)
}

/// `iscsi-smol` and `iscsi-tokio`: the driver task runs on its own
/// thread; the application makes no call for 15 s. Without recovery
/// configured, a dropped connection would fail the second read.
fn async_tgtd(ctx: &mut CellCtx, kind: iscsi_cli::driver::DriverKind) -> Result<(), String> {
    let t = pinging_tgtd()?;
    let report = ctx.captured(t.port(), || {
        let mut s = iscsi_cli::driver::Session::connect(
            kind,
            &t.portal(),
            config(Some(t.iqn()), op_params()),
            Default::default(),
        )?;
        reads_around_idle(
            &mut s,
            |s, cmd| s.execute(cmd),
            |_| {
                std::thread::sleep(IDLE);
                Ok(())
            },
        )?;
        s.logout().map_err(|e| format!("logout: {e}"))?;
        Ok(())
    })?;
    check_pings(ctx, &t, &report.opcodes)
}
