//! Hostile scripted targets (group `hostile`): a target on 127.0.0.1 whose
//! every PDU is chosen by the cell (built with `iscsi_proto::testing`),
//! run on its own thread, against the project's initiator driven through
//! its real drivers over real TCP. Each cell asserts the exact PDU the
//! initiator sends back (opcode, ITT/TTT, CmdSN, ExpStatSN, I bit, data)
//! or the exact typed error or event the initiator reports.
//!
//! Every scenario runs through `iscsi-std`; the ones a driver can most
//! easily get wrong (a NOP-In right after the login, a window closed at
//! login, a bad data digest, a silent target) also through `iscsi-mio`
//! and `iscsi-smol`, against one listener that serves the three drivers
//! one after the other.
//!
//! Cells whose target sends well-formed PDUs run inside a tshark capture
//! (`ctx.captured`), which must decode cleanly; the ones that send
//! deliberately malformed bytes (bad digests, an unknown opcode, an
//! oversize DataSegmentLength) run without one and say so in their note.

mod coalesce;
mod driver_under_test;
mod faults;
mod flow;
pub mod recovery;
mod session;
mod target;
mod tool;

pub use driver_under_test::{connect, run, Drv, DrvError, Kind};
pub use target::{check_eq, join, spawn, Listener, Peer, Rx, STEP};

use crate::runner::{Cell, CellCtx};
use bytes::Bytes;
use iscsi_proto::initiator::{ScsiCommand, ScsiResult, SessionConfig, TaskOutcome};
use iscsi_proto::scsi::cdb::{self, RwFlags};
use iscsi_proto::wire::pdu::Isid;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

static CAPTURE: AtomicBool = AtomicBool::new(true);

/// Switches the tshark captures of this group on (the default) or off.
/// Off, the cells run the same exchanges and assertions without tshark
/// (for `cargo test`, `conformance/tests/hostile.rs`).
pub fn set_capture(on: bool) {
    CAPTURE.store(on, Ordering::SeqCst);
}

/// Runs `f`, under a capture of `port` when `capture` is asked for and
/// captures are on.
fn maybe_captured<F>(ctx: &mut CellCtx, capture: bool, port: u16, f: F) -> Result<(), String>
where
    F: FnOnce() -> Result<(), String>,
{
    if capture && CAPTURE.load(Ordering::SeqCst) {
        ctx.captured(port, f).map(drop)
    } else {
        f()
    }
}

/// The group name.
pub const G: &str = "hostile";

/// The target's IQN.
pub const TARGET_IQN: &str = "iqn.2026-11.test.hostile:disk";

/// A normal-session configuration with short timeouts.
pub fn cfg() -> SessionConfig {
    SessionConfig::new("iqn.2026-11.test.hostile:initiator")
        .with_target(TARGET_IQN)
        .with_isid(Isid([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]))
        .with_login_timeout(Duration::from_secs(5))
}

/// TEST UNIT READY on LUN 0.
pub fn tur() -> ScsiCommand {
    ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, [0u8; 6].to_vec())
}

/// READ(10) of `len` bytes (512-byte blocks) at LBA 0.
pub fn read(len: u32) -> ScsiCommand {
    let blocks = u16::try_from(len / 512).unwrap_or(u16::MAX);
    ScsiCommand::read(
        iscsi_proto::scsi::Lun::ZERO,
        cdb::read10(0, blocks, RwFlags::default()).to_vec(),
        len,
    )
}

/// WRITE(10) of `data` (512-byte blocks) at `lba`.
pub fn write(lba: u32, data: Bytes) -> ScsiCommand {
    let blocks = u16::try_from(data.len() / 512).unwrap_or(u16::MAX);
    ScsiCommand::write(
        iscsi_proto::scsi::Lun::ZERO,
        cdb::write10(lba, blocks, RwFlags::default()).to_vec(),
        data,
    )
}

/// The result of a task that must have completed GOOD.
pub fn expect_good(what: &str, o: &TaskOutcome) -> Result<ScsiResult, String> {
    match o {
        TaskOutcome::Scsi(r) if r.is_good() => Ok(r.clone()),
        other => Err(format!("{what}: expected GOOD, got {other:?}")),
    }
}

/// `n` bytes of a recognisable pattern.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Runs a scenario once per driver in `kinds`: one listener, one target
/// thread that accepts one connection per driver in order and runs
/// `target(driver, connection, signals)` on it, and
/// `init(driver, portal, signals)` on this thread (its note goes to the
/// cell's notes); `signals` lets the initiator side tell the target when
/// it has done something. With `capture` the whole exchange is recorded
/// and must decode cleanly.
pub fn per_driver<T, I>(
    ctx: &mut CellCtx,
    kinds: &[Kind],
    capture: bool,
    target: T,
    init: I,
) -> Result<(), String>
where
    T: Fn(Kind, &mut Peer, &mpsc::Receiver<()>) -> Result<(), String> + Send + 'static,
    I: Fn(Kind, &str, &mpsc::Sender<()>) -> Result<String, String>,
{
    let l = Listener::bind()?;
    let port = l.port();
    let portal = l.portal();
    let (tx, rx) = mpsc::channel();
    let ks = kinds.to_vec();
    let h = spawn(G, l, move |l| {
        for k in ks {
            let mut p = l.accept().map_err(|e| format!("{}: {e}", k.name()))?;
            target(k, &mut p, &rx).map_err(|e| format!("{}: {e}", k.name()))?;
        }
        Ok(())
    })?;
    let mut notes = Vec::new();
    let body = || {
        for &k in kinds {
            let n = init(k, &portal, &tx).map_err(|e| format!("{}: {e}", k.name()))?;
            notes.push(format!("{}: {n}", k.name()));
        }
        Ok(())
    };
    let r = maybe_captured(ctx, capture, port, body);
    let t = join(h);
    match (r, t) {
        (Err(a), Err(b)) => return Err(format!("{a}; {b}")),
        (Err(a), Ok(())) => return Err(a),
        (Ok(()), Err(b)) => return Err(b),
        (Ok(()), Ok(())) => {}
    }
    for n in notes {
        ctx.note(n);
    }
    Ok(())
}

/// Runs a free-form scenario: `target` on its own thread with a fresh
/// listener, `init` here with the listener's portal; with `capture` the
/// listener's port is recorded and must decode cleanly. `init`'s note is
/// added to the cell's notes.
pub fn scenario<T, I>(ctx: &mut CellCtx, capture: bool, target: T, init: I) -> Result<(), String>
where
    T: FnOnce(Listener) -> Result<(), String> + Send + 'static,
    I: FnOnce(&str) -> Result<String, String>,
{
    let l = Listener::bind()?;
    let port = l.port();
    let portal = l.portal();
    let h = spawn(G, l, target)?;
    let mut note = String::new();
    let body = || {
        note = init(&portal)?;
        Ok(())
    };
    let r = maybe_captured(ctx, capture, port, body);
    let t = join(h);
    match (r, t) {
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
        (Err(a), Ok(())) => Err(a),
        (Ok(()), Err(b)) => Err(b),
        (Ok(()), Ok(())) => {
            ctx.note(note);
            Ok(())
        }
    }
}

/// Std only.
pub const STD: &[Kind] = &[Kind::Std];

/// The cells of the `hostile` group, one per scenario.
pub fn cells() -> Vec<Cell> {
    let mut v = Vec::new();
    v.extend(flow::cells());
    v.extend(faults::cells());
    v.extend(session::cells());
    v.extend(coalesce::cells());
    v.extend(tool::cells());
    v.into_iter()
        .map(|c| c.with_timeout(Duration::from_secs(60)))
        .collect()
}
