//! Scenarios 8-14: a bad header digest, a bad data digest, a DataSN gap, a
//! Buffer Offset out of range, a DataSegmentLength above our
//! MaxRecvDataSegmentLength, unknown opcodes, and Rejects of commands.

use super::flow::std_connect;
use super::{
    cfg, check_eq, connect, pattern, per_driver, read, tur, DrvError, Kind, Peer, G, STD, STEP,
};
use crate::runner::{Cell, CellCtx};
use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, ProtocolError, TaskError};
use iscsi_proto::initiator::{SessionConfig, TaskOutcome};
use iscsi_proto::login::negotiation::{DigestType, OperationalParams, TargetConfig};
use iscsi_proto::testing::{LoginResponder, RESERVED};
use iscsi_proto::wire::digest::{crc32c, digest_bytes, digest_from_bytes, header_digest};
use iscsi_proto::wire::pdu as w;
use iscsi_proto::wire::{Serial, WireError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Configurations offering (initiator) and accepting (target) CRC32C
/// header and/or data digests.
fn digest_cfgs(header: bool, data: bool) -> (SessionConfig, LoginResponder) {
    let pick = |on: bool| {
        if on {
            vec![DigestType::Crc32c]
        } else {
            vec![DigestType::None]
        }
    };
    let op = OperationalParams {
        header_digest: pick(header),
        data_digest: pick(data),
        ..OperationalParams::default()
    };
    let tc = TargetConfig {
        params: OperationalParams {
            header_digest: vec![DigestType::Crc32c, DigestType::None],
            data_digest: vec![DigestType::Crc32c, DigestType::None],
            ..OperationalParams::default()
        },
        ..TargetConfig::default()
    };
    (cfg().with_operational(op), LoginResponder::new(tc, None))
}

/// The task outcome and close reason of a session the target broke: the
/// task ends with the session's end, `Closed(want)` on every driver (RFC
/// 7143 section 7.1.5: at ErrorRecoveryLevel 0 a connection failure ends
/// the tasks when the session is not recovered), and the session closes
/// with `want`.
fn expect_broken(
    d: &mut dyn super::Drv,
    task: iscsi_proto::initiator::TaskId,
    want: ConnectionError,
) -> Result<&'static str, String> {
    let how = match d.wait(task) {
        Ok((o, _)) => return Err(format!("task ended {o:?}, not with the session's end")),
        Err(DrvError::Connection(Some(e))) => {
            check_eq("task error", e, want.clone())?;
            "task got the close reason"
        }
        Err(e) => return Err(format!("task: {e}")),
    };
    let reason = d.closed_reason(STEP)?;
    check_eq("close reason", reason, Some(want))?;
    Ok(how)
}

// ---------------------------------------------------------------- 8

fn bad_header_digest(ctx: &mut CellCtx) -> Result<(), String> {
    // The SCSI Response's header digest, flipped.
    let seen = Arc::new(std::sync::Mutex::new(None::<(u32, u32)>));
    let seen2 = seen.clone();
    per_driver(
        ctx,
        STD,
        false,
        move |_, p, _| {
            let (_, mut r) = digest_cfgs(true, false);
            p.login(&mut r)?;
            check_eq(
                "HeaderDigest negotiated",
                r.negotiated.as_ref().map(|n| n.header_digest),
                Some(true),
            )?;
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            p.t.scsi_response(c.itt, 0, w::Residual::None, None);
            let mut out = p.t.take_output();
            let computed = header_digest(out.get(..48).ok_or("short PDU")?);
            let d = out.get_mut(48..52).ok_or("no header digest")?;
            d[0] ^= 0x5a;
            let received = digest_from_bytes([d[0], d[1], d[2], d[3]]);
            if let Ok(mut s) = seen2.lock() {
                *s = Some((received, computed));
            }
            p.write_raw(&out)?;
            p.expect_closed()
        },
        |_, portal, _| {
            let (c, _) = digest_cfgs(true, false);
            let mut d = connect(Kind::Std, portal, c)?;
            let t = d.submit(tur())?;
            let (received, computed) = wait_for(&seen)?;
            // RFC 7143 section 7.8: after a header digest error the stream
            // cannot be delimited; at ErrorRecoveryLevel 0 the connection
            // is dropped.
            expect_broken(
                d.as_mut(),
                t,
                ConnectionError::DigestFailure(WireError::HeaderDigest { received, computed }),
            )?;
            Ok(format!(
                "DigestFailure(HeaderDigest {received:#010x} != {computed:#010x}), connection closed; no capture (corrupt on purpose)"
            ))
        },
    )
}

/// Waits (bounded) for the target thread to publish a value.
fn wait_for<T: Clone>(m: &std::sync::Mutex<Option<T>>) -> Result<T, String> {
    for _ in 0..500 {
        if let Some(v) = m.lock().ok().and_then(|g| g.clone()) {
            return Ok(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err("the target never sent the corrupt PDU".into())
}

// ---------------------------------------------------------------- 9

const DATA_DIGEST_XOR: u32 = 0xdead_beef;

fn bad_data_digest(ctx: &mut CellCtx) -> Result<(), String> {
    let data = pattern(512, 3);
    let computed = crc32c(&data);
    let received = computed ^ DATA_DIGEST_XOR;
    per_driver(
        ctx,
        &Kind::ALL,
        false,
        move |_, p, _| {
            let (_, mut r) = digest_cfgs(false, true);
            p.login(&mut r)?;
            check_eq(
                "DataDigest negotiated",
                r.negotiated.as_ref().map(|n| n.data_digest),
                Some(true),
            )?;
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            p.t.data_in(c.itt, 0, 0, &data, Some((0, w::Residual::None)));
            let mut out = p.t.take_output();
            let n = out.len();
            let tail = out.get_mut(n - 4..).ok_or("short PDU")?;
            check_eq(
                "data digest as sent",
                digest_from_bytes([tail[0], tail[1], tail[2], tail[3]]),
                computed,
            )?;
            tail.copy_from_slice(&digest_bytes(received));
            p.write_raw(&out)?;
            p.expect_closed()
        },
        |k, portal, _| {
            let (c, _) = digest_cfgs(false, true);
            let mut d = connect(k, portal, c)?;
            let t = d.submit(read(512))?;
            // RFC 7143 section 7.8 / 13.20: at ErrorRecoveryLevel 0 the
            // core does not SNACK; a data digest error ends the connection.
            let how = expect_broken(
                d.as_mut(),
                t,
                ConnectionError::DigestFailure(WireError::DataDigest { received, computed }),
            )?;
            Ok(format!(
                "DigestFailure(DataDigest), {how}, connection closed"
            ))
        },
    )?;
    ctx.note("no capture (corrupt on purpose)");
    Ok(())
}

// ---------------------------------------------------------------- 10

fn data_sn_gap(ctx: &mut CellCtx) -> Result<(), String> {
    let data = pattern(1024, 5);
    per_driver(
        ctx,
        STD,
        true,
        move |_, p, _| {
            p.login_plain()?;
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            p.t.data_in(c.itt, 0, 0, &data[..512], None);
            p.t.data_in(c.itt, 2, 512, &data[512..], Some((0, w::Residual::None)));
            p.flush()?;
            p.expect_closed()
        },
        |_, portal, _| {
            let mut d = connect(Kind::Std, portal, cfg())?;
            let t = d.submit(read(1024))?;
            expect_broken(
                d.as_mut(),
                t,
                ConnectionError::Protocol(ProtocolError::OutOfOrder {
                    what: "DataSN",
                    expected: 1,
                    received: 2,
                    section: "11.7.4",
                }),
            )?;
            Ok(
                "DataSN 0 then 2: OutOfOrder(expected 1, received 2, 11.7.4), connection closed"
                    .into(),
            )
        },
    )
}

// ---------------------------------------------------------------- 11

fn buffer_offset(ctx: &mut CellCtx) -> Result<(), String> {
    // Two sessions: (a) 1024 bytes at offset 0 for a 512-byte read,
    // (b) 512 bytes at offset 0xfffffe00.
    let n = Arc::new(AtomicUsize::new(0));
    let m = AtomicUsize::new(0);
    per_driver(
        ctx,
        &[Kind::Std, Kind::Std],
        true,
        move |_, p, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            p.login_plain()?;
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            if i == 0 {
                p.t.data_in(c.itt, 0, 0, &pattern(1024, 1), Some((0, w::Residual::None)));
            } else {
                p.t.data_in(
                    c.itt,
                    0,
                    0xffff_fe00,
                    &pattern(512, 1),
                    Some((0, w::Residual::None)),
                );
            }
            p.flush()?;
            p.expect_closed()
        },
        |_, portal, _| {
            let i = m.fetch_add(1, Ordering::SeqCst);
            let mut d = connect(Kind::Std, portal, cfg())?;
            let t = d.submit(read(512))?;
            // RFC 7143 section 11.7.5 (Buffer Offset): data lands within
            // the Expected Data Transfer Length, in order when
            // DataPDUInOrder=Yes (section 13.18).
            let rule = if i == 0 {
                "Data-In beyond the Expected Data Transfer Length"
            } else {
                "Data-In Buffer Offset out of order"
            };
            expect_broken(
                d.as_mut(),
                t,
                ConnectionError::Protocol(ProtocolError::Violation {
                    rule,
                    section: "11.7.5",
                    reject: Some(w::RejectReason::ProtocolError),
                }),
            )?;
            Ok(format!(
                "{rule} (11.7.5), connection closed, no data delivered"
            ))
        },
    )
}

// ---------------------------------------------------------------- 12

fn oversize_dsl(ctx: &mut CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        STD,
        false,
        |_, p, _| {
            p.login_plain()?;
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            p.t.data_in(c.itt, 0, 0, &[], Some((0, w::Residual::None)));
            let mut out = p.t.take_output();
            // DataSegmentLength (bytes 5-7) = 16 MiB - 1; only the header
            // is sent: the initiator must refuse it from the BHS alone.
            out.get_mut(5..8)
                .ok_or("short PDU")?
                .copy_from_slice(&[0xff, 0xff, 0xff]);
            p.write_raw(&out)?;
            p.expect_closed()
        },
        |_, portal, _| {
            let mut d = connect(Kind::Std, portal, cfg())?;
            let t = d.submit(read(512))?;
            // RFC 7143 section 13.12: a sender "MUST NOT" exceed the
            // receiver's MaxRecvDataSegmentLength (8192 declared here).
            expect_broken(
                d.as_mut(),
                t,
                ConnectionError::Protocol(ProtocolError::Wire(WireError::DataSegmentTooLong {
                    length: 0x00ff_ffff,
                    limit: 8192,
                })),
            )?;
            Ok("DSL 16777215 > 8192 refused from the 48-byte BHS alone (no data sent, none awaited); no capture".into())
        },
    )
}

// ---------------------------------------------------------------- 13

fn unknown_opcode(ctx: &mut CellCtx) -> Result<(), String> {
    // (a) vendor-specific opcode 0x3c: ignored, the session goes on;
    // (b) unassigned opcode 0x2a: connection dropped;
    // (c) an initiator opcode (NOP-Out, 0x00) from the target: dropped.
    let n = Arc::new(AtomicUsize::new(0));
    let m = AtomicUsize::new(0);
    per_driver(
        ctx,
        &[Kind::Std, Kind::Std, Kind::Std],
        false,
        move |_, p: &mut Peer, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            p.login_plain()?;
            let c = p.expect_cmd()?;
            let mut bhs = [0u8; 48];
            match i {
                0 => {
                    bhs[0] = 0x3c;
                    p.write_raw(&bhs)?;
                    p.good(&c)?;
                    p.serve_logout().map(drop)
                }
                1 => {
                    bhs[0] = 0x2a;
                    bhs[16..20].copy_from_slice(&c.itt.to_be_bytes());
                    p.write_raw(&bhs)?;
                    p.expect_closed()
                }
                _ => {
                    let h = w::NopOut {
                        immediate: false,
                        lun: 0,
                        itt: 0x77,
                        ttt: RESERVED,
                        cmd_sn: Serial(0),
                        exp_stat_sn: Serial(0),
                    };
                    p.t.send(h, Bytes::new());
                    p.flush()?;
                    p.expect_closed()
                }
            }
        },
        |_, portal, _| {
            let i = m.fetch_add(1, Ordering::SeqCst);
            let mut d = connect(Kind::Std, portal, cfg())?;
            let t = d.submit(tur())?;
            match i {
                0 => {
                    // RFC 7143 section 11.2.1.2: 0x3c-0x3e are vendor
                    // specific target opcodes; the core skips them.
                    let (o, _) = d.wait(t)?;
                    super::expect_good("TUR after opcode 0x3c", &o)?;
                    d.logout()?;
                    Ok("0x3c (vendor) skipped, TUR GOOD".into())
                }
                1 => {
                    expect_broken(
                        d.as_mut(),
                        t,
                        ConnectionError::Protocol(ProtocolError::Wire(WireError::UnknownOpcode(
                            0x2a,
                        ))),
                    )?;
                    Ok("0x2a: UnknownOpcode (11.2.1.2), connection closed".into())
                }
                _ => {
                    // RFC 7143 section 11.2.1.2: targets "MUST NOT" use
                    // initiator opcodes.
                    expect_broken(
                        d.as_mut(),
                        t,
                        ConnectionError::Protocol(ProtocolError::Violation {
                            rule: "initiator opcode sent by the target",
                            section: "11.2.1.2",
                            reject: Some(w::RejectReason::ProtocolError),
                        }),
                    )?;
                    Ok("NOP-Out opcode from the target: violation 11.2.1.2, closed".into())
                }
            }
        },
    )?;
    ctx.note("no capture (unknown opcodes on purpose)");
    Ok(())
}

// ---------------------------------------------------------------- 14

fn reject_command(ctx: &mut CellCtx) -> Result<(), String> {
    const REASONS: [w::RejectReason; 2] = [
        w::RejectReason::InvalidPduField,
        w::RejectReason::ProtocolError,
    ];
    per_driver(
        ctx,
        STD,
        true,
        |_, p, _| {
            let login = p.login_plain()?;
            for (k, reason) in REASONS.iter().enumerate() {
                let c = p.expect_cmd()?;
                check_eq("CmdSN", c.cmd_sn, login.cmd_sn.plus(k as u32))?;
                let pdu = p.log.last().cloned().ok_or("no PDU logged")?;
                p.t.reject(*reason, &pdu);
                p.flush()?;
                // RFC 7143 section 7.3: the initiator "MUST plug the CmdSN
                // gap": an immediate ABORT TASK whose RefCmdSN is the
                // rejected command's CmdSN.
                let m = p.expect_abort_of(&c)?;
                p.t.ack_cmd(c.cmd_sn);
                p.t.tmf_response(m.itt, w::TmfResponse::TaskDoesNotExist);
                p.flush()?;
            }
            let c = p.expect_cmd()?;
            check_eq("CmdSN after the rejects", c.cmd_sn, login.cmd_sn.plus(2))?;
            p.good(&c)?;
            p.serve_logout().map(drop)
        },
        |_, portal, _| {
            let mut c = std_connect(portal, cfg())?;
            for reason in REASONS {
                let t = c.submit(tur()).map_err(|e| e.to_string())?;
                let (o, _) = c.wait(t).map_err(|e| e.to_string())?;
                check_eq(
                    "rejected command",
                    o,
                    TaskOutcome::Failed(TaskError::Rejected(reason)),
                )?;
            }
            let d = c.execute(tur()).map_err(|e| e.to_string())?;
            check_eq("TUR after the rejects", d.result.is_good(), true)?;
            check_eq("tasks_in_flight", c.session().tasks_in_flight(), 0)?;
            c.logout().map_err(|e| e.to_string())?;
            Ok("Reject 0x09 / 0x04: task Failed(Rejected(reason)), CmdSN gap plugged by ABORT TASK, session goes on".into())
        },
    )
}

pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(G, "bad-header-digest", bad_header_digest),
        Cell::new(G, "bad-data-digest", bad_data_digest),
        Cell::new(G, "data-sn-gap", data_sn_gap),
        Cell::new(G, "buffer-offset-out-of-range", buffer_offset),
        Cell::new(G, "dsl-above-mrdsl", oversize_dsl),
        Cell::new(G, "unknown-opcode", unknown_opcode),
        Cell::new(G, "reject-command", reject_command),
    ]
}
