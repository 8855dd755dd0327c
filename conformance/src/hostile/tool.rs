//! The `iscsi` tool's integrity rules against misbehaving targets, on all
//! three drivers, through the tool's own code (`iscsi_cli::driver` and
//! `iscsi_cli::tool`, the same functions `iscsi read/write` run):
//!
//! - `tool-drop-mid-write`: the target closes the connection halfway
//!   through a 256 KiB WRITE. With the tool's default session recovery
//!   the write completes and the medium holds all of it; with
//!   `--no-recovery` it fails with one clear line.
//! - `tool-close-after-logout`: the target closes the connection right
//!   after the Logout Request, with no task outstanding (RFC 7143
//!   sections 11.14/11.15: the session is logged out). The tool's 1 MiB
//!   write is intact and it succeeds (at most a warning).
//! - `tool-async-logout-mid-read`: AsyncEvent 1 (logout requested,
//!   Parameter3 = 2) during the first of two 1 MiB READs: the READ
//!   completes, the Logout goes out within 2 s, the tool logs in again
//!   and the second READ runs on the new session; the data read is the
//!   medium's.
//!
//! The target here is a small scripted disk: READ CAPACITY(10), READ(16)
//! and WRITE(16) (immediate data, R2T-solicited Data-Out) on a RAM
//! medium of 512-byte blocks, plus NOP-Out answers and Logout.

use super::{cfg, check_eq, per_driver, scenario, Kind, Peer, Rx, G};
use crate::runner::{Cell, CellCtx};
use bytes::Bytes;
use iscsi_cli::driver::{DriverKind, Session};
use iscsi_cli::tool;
use iscsi_proto::initiator::SessionConfig;
use iscsi_proto::login::negotiation::{Negotiated, OperationalParams, TargetConfig};
use iscsi_proto::testing::{LoginResponder, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Block size of the scripted medium.
const BS: usize = 512;
/// Size of the scripted medium.
const DISK: usize = 4 << 20;

/// What the scripted disk does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing.
    None,
    /// Close the connection once half of a WRITE's data has arrived.
    DropMidWrite,
    /// Close the connection on the Logout Request, without answering.
    CloseOnLogout,
    /// Before the first READ(16)'s data, AsyncEvent 1 with this
    /// Parameter3; the Logout Request must follow within that time.
    AsyncLogoutOnRead(u16),
}

/// How a connection of the scripted disk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The fault closed it.
    Dropped,
    /// A Logout was answered and the initiator closed.
    LoggedOut,
}

/// A responder with DefaultTime2Wait 0 (recovery reconnects at once).
fn responder() -> LoginResponder {
    let tc = TargetConfig {
        params: OperationalParams {
            default_time2wait: 0,
            ..OperationalParams::default()
        },
        ..TargetConfig::default()
    };
    LoginResponder::new(tc, None)
}

fn driver(k: Kind) -> DriverKind {
    match k {
        Kind::Std => DriverKind::Std,
        Kind::Mio => DriverKind::Mio,
        Kind::Smol => DriverKind::Smol,
        Kind::Tokio => DriverKind::Tokio,
    }
}

/// The configuration `iscsi read/write` uses: the tool's operational
/// values, and its default session recovery unless `recovery` is off
/// (`--no-recovery`).
fn tool_cfg(recovery: bool) -> SessionConfig {
    let c = cfg()
        .with_operational(tool::tuned_params())
        .with_keepalive(Duration::from_secs(5), Duration::from_secs(5));
    if recovery {
        c.with_recovery(tool::recovery_policy())
    } else {
        c
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// Logs in on `p` and serves the scripted disk until the connection ends.
fn serve(p: &mut Peer, disk: &mut [u8], fault: Fault) -> Result<End, String> {
    let mut r = responder();
    p.login(&mut r)?;
    let n: Negotiated = r.negotiated.clone().ok_or("no negotiated values")?;
    let mut async_at: Option<(Instant, u16)> = None;
    loop {
        let pdu = match p.recv_within(Duration::from_secs(10))? {
            Rx::Pdu(pdu) => *pdu,
            Rx::Closed => return Err("the initiator closed without a logout".into()),
            Rx::Timeout => return Err("no PDU from the initiator within 10 s".into()),
        };
        match pdu.header {
            Header::NopOut(o) if o.itt != RESERVED => {
                p.t.nop_in_reply(&o, pdu.data.clone());
                p.flush()?;
            }
            Header::NopOut(_) => {}
            Header::LogoutRequest(l) => {
                if let Some((t0, p3)) = async_at {
                    let waited = t0.elapsed();
                    if waited > Duration::from_secs(u64::from(p3)) {
                        return Err(format!(
                            "Logout Request {waited:?} after AsyncEvent 1, Parameter3 = {p3} s"
                        ));
                    }
                }
                if fault == Fault::CloseOnLogout {
                    p.drop_connection();
                    return Ok(End::Dropped);
                }
                p.t.logout_response(l.itt, 0, 0);
                p.flush()?;
                p.expect_closed()?;
                return Ok(End::LoggedOut);
            }
            Header::ScsiCommand(c) => {
                if !c.immediate {
                    p.t.ack_cmd(c.cmd_sn);
                }
                match c.cdb[0] {
                    // READ CAPACITY(10): last LBA, block length.
                    0x25 => {
                        let mut d = Vec::with_capacity(8);
                        d.extend_from_slice(&((disk.len() / BS - 1) as u32).to_be_bytes());
                        d.extend_from_slice(&(BS as u32).to_be_bytes());
                        p.t.data_in(c.itt, 0, 0, &d, Some((0, w::Residual::None)));
                        p.flush()?;
                    }
                    // READ(16).
                    0x88 => {
                        let lba = be64(&c.cdb[2..]) as usize;
                        let len = be32(&c.cdb[10..]) as usize * BS;
                        let data = disk
                            .get(lba * BS..lba * BS + len)
                            .ok_or("READ past the end of the medium")?
                            .to_vec();
                        if let Fault::AsyncLogoutOnRead(p3) = fault {
                            if async_at.is_none() {
                                p.t.async_message(w::AsyncEvent::LogoutRequested, [0, 0, p3], &[]);
                                async_at = Some((Instant::now(), p3));
                            }
                        }
                        let seg = (n.initiator_max_recv_data_segment_length as usize).max(512);
                        let chunks: Vec<&[u8]> = data.chunks(seg).collect();
                        for (i, ch) in chunks.iter().enumerate() {
                            let last = i + 1 == chunks.len();
                            p.t.data_in(
                                c.itt,
                                i as u32,
                                (i * seg) as u32,
                                ch,
                                last.then_some((0, w::Residual::None)),
                            );
                            p.flush()?;
                        }
                    }
                    // WRITE(16): immediate data, then R2Ts of MaxBurstLength.
                    0x8a => {
                        let lba = be64(&c.cdb[2..]) as usize;
                        let len = c.expected_data_transfer_length as usize;
                        let mut buf = vec![0u8; len];
                        let imm = pdu.data.len().min(len);
                        buf[..imm].copy_from_slice(&pdu.data[..imm]);
                        let mut got = imm;
                        if !n.initial_r2t && !c.final_pdu {
                            return Err("unsolicited Data-Out not scripted here".into());
                        }
                        let mut r2t_sn = 0;
                        while got < len {
                            let burst = (len - got).min(n.max_burst_length as usize);
                            let ttt = 0x100 + r2t_sn;
                            p.t.r2t(c.itt, ttt, r2t_sn, got as u32, burst as u32);
                            p.flush()?;
                            r2t_sn += 1;
                            let end = got + burst;
                            while got < end {
                                let d = p.recv()?;
                                let Header::DataOut(h) = d.header else {
                                    return Err(format!("expected Data-Out, got {:?}", d.header));
                                };
                                check_eq("Data-Out TTT", h.ttt, ttt)?;
                                let off = h.buffer_offset as usize;
                                let to = off + d.data.len();
                                buf.get_mut(off..to)
                                    .ok_or("Data-Out past the transfer length")?
                                    .copy_from_slice(&d.data);
                                got = got.max(to);
                                if fault == Fault::DropMidWrite && got >= len / 2 {
                                    // Nothing of this WRITE reaches the medium.
                                    p.drop_connection();
                                    return Ok(End::Dropped);
                                }
                            }
                        }
                        disk.get_mut(lba * BS..lba * BS + len)
                            .ok_or("WRITE past the end of the medium")?
                            .copy_from_slice(&buf);
                        p.t.scsi_response(c.itt, 0, w::Residual::None, None);
                        p.flush()?;
                    }
                    // Anything else: GOOD, no data.
                    _ => {
                        p.t.scsi_response(c.itt, 0, w::Residual::None, None);
                        p.flush()?;
                    }
                }
            }
            other => return Err(format!("unexpected PDU {other:?}")),
        }
    }
}

/// `n` bytes of a pattern seeded by `seed`, not repeating within 4 MiB.
fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

const WRITE_LBA: usize = 100;
const WRITE_LEN: usize = 256 * 1024;

/// Connects as the tool does (`recovery`: its default; off:
/// `--no-recovery`).
fn connect(k: Kind, portal: &str, recovery: bool) -> Result<Session, String> {
    Session::connect(driver(k), portal, tool_cfg(recovery), Default::default())
}

/// Requires `disk[lba..]` to hold `want`.
fn check_medium(disk: &[u8], lba: usize, want: &[u8]) -> Result<(), String> {
    match disk.get(lba * BS..lba * BS + want.len()) {
        Some(got) if got == want => Ok(()),
        Some(got) => {
            let bad = got.iter().zip(want).filter(|(a, b)| a != b).count();
            Err(format!(
                "the medium differs from the data written in {bad} of {} bytes",
                want.len()
            ))
        }
        None => Err("range past the medium".into()),
    }
}

fn drop_mid_write(ctx: &mut CellCtx) -> Result<(), String> {
    scenario(
        ctx,
        true,
        |l| {
            for k in Kind::ALL {
                let name = k.name();
                let want = data(WRITE_LEN, 7 + k as u32);
                // Default recovery: the write is cut, the session is
                // reinstated on a second connection, the write lands.
                let mut disk = vec![0u8; DISK];
                let mut p = l.accept()?;
                check_eq(
                    &format!("{name}: first connection"),
                    serve(&mut p, &mut disk, Fault::DropMidWrite)?,
                    End::Dropped,
                )?;
                let mut q = l
                    .accept()
                    .map_err(|e| format!("{name}: no reconnection: {e}"))?;
                check_eq(
                    &format!("{name}: second connection"),
                    serve(&mut q, &mut disk, Fault::None)?,
                    End::LoggedOut,
                )?;
                check_medium(&disk, WRITE_LBA, &want).map_err(|e| format!("{name}: {e}"))?;
                // --no-recovery: one connection, cut.
                let mut disk = vec![0u8; DISK];
                let mut p = l.accept()?;
                check_eq(
                    &format!("{name} --no-recovery: connection"),
                    serve(&mut p, &mut disk, Fault::DropMidWrite)?,
                    End::Dropped,
                )?;
            }
            Ok(())
        },
        |portal| {
            let mut notes = Vec::new();
            for k in Kind::ALL {
                let name = k.name();
                let want = Bytes::from(data(WRITE_LEN, 7 + k as u32));
                let mut s = connect(k, portal, true)?;
                tool::write_blocks(&mut s, 0, WRITE_LBA as u64, &want)
                    .map_err(|e| format!("{name}: write with recovery: {e}"))?;
                s.logout().map_err(|e| format!("{name}: logout: {e}"))?;
                let mut s = connect(k, portal, false)?;
                let e = match tool::write_blocks(&mut s, 0, WRITE_LBA as u64, &want) {
                    Ok(()) => {
                        return Err(format!("{name}: --no-recovery: the cut write succeeded"))
                    }
                    Err(e) => e,
                };
                if !e.starts_with("WRITE(16): ") || e.contains('\n') {
                    return Err(format!("{name}: --no-recovery: unclear error {e:?}"));
                }
                drop(s);
                notes.push(format!("{name}: recovered; --no-recovery: {e}"));
            }
            Ok(format!(
                "256 KiB WRITE cut after 128 KiB of Data-Out: with recovery reinstated and intact on the medium; {}",
                notes.join("; ")
            ))
        },
    )
}

fn close_after_logout(ctx: &mut CellCtx) -> Result<(), String> {
    const LEN: usize = 1 << 20;
    per_driver(
        ctx,
        &Kind::ALL,
        true,
        |k, p, _: &mpsc::Receiver<()>| {
            let mut disk = vec![0u8; DISK];
            check_eq(
                "end",
                serve(p, &mut disk, Fault::CloseOnLogout)?,
                End::Dropped,
            )?;
            check_medium(&disk, 0, &data(LEN, 3 + k as u32))
        },
        |k, portal, _| {
            let want = Bytes::from(data(LEN, 3 + k as u32));
            let mut s = connect(k, portal, true)?;
            tool::write_blocks(&mut s, 0, 0, &want)?;
            s.logout()?;
            Ok(
                "1 MiB written; the close after the Logout Request reported as a clean logout"
                    .into(),
            )
        },
    )
}

fn async_logout_mid_read(ctx: &mut CellCtx) -> Result<(), String> {
    const LEN: usize = 2 << 20;
    scenario(
        ctx,
        true,
        |l| {
            for k in Kind::ALL {
                let name = k.name();
                let mut disk = data(DISK, 11 + k as u32);
                let mut p = l.accept()?;
                check_eq(
                    &format!("{name}: first session"),
                    serve(&mut p, &mut disk, Fault::AsyncLogoutOnRead(2))
                        .map_err(|e| format!("{name}: {e}"))?,
                    End::LoggedOut,
                )?;
                let mut q = l
                    .accept()
                    .map_err(|e| format!("{name}: no new login after the logout: {e}"))?;
                check_eq(
                    &format!("{name}: second session"),
                    serve(&mut q, &mut disk, Fault::None).map_err(|e| format!("{name}: {e}"))?,
                    End::LoggedOut,
                )?;
            }
            Ok(())
        },
        |portal| {
            for k in Kind::ALL {
                let name = k.name();
                let disk = data(DISK, 11 + k as u32);
                let mut s = connect(k, portal, true)?;
                let mut out = Vec::new();
                tool::read_blocks(&mut s, 0, 0, (LEN / BS) as u32, &mut out)
                    .map_err(|e| format!("{name}: read: {e}"))?;
                if out[..] != disk[..LEN] {
                    return Err(format!("{name}: the data read differs from the medium"));
                }
                s.logout()
                    .map_err(|e| format!("{name}: logout after the new login: {e}"))?;
            }
            Ok("AsyncEvent 1 (Parameter3 2 s) before the first 1 MiB READ's data: READ completed, Logout within 2 s, logged in again, second READ on the new session, data intact".into())
        },
    )
}

pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(G, "tool-drop-mid-write", drop_mid_write),
        Cell::new(G, "tool-close-after-logout", close_after_logout),
        Cell::new(G, "tool-async-logout-mid-read", async_logout_mid_read),
    ]
}
