//! ErrorRecoveryLevel 1 cells: one per SNACK type (RFC 7143 section
//! 11.16.1: 0 Data/R2T, 1 Status, 2 DataACK, 3 R-Data) and the target's
//! Reject of a SNACK (section 11.17.1 reason 0x03, section 7.8).

use super::{
    data_in, expect_data_out, expect_snack, ini_cfg, login_at, not_implemented, response, GR,
};
use crate::hostile::Rx;
use crate::hostile::{
    check_eq, connect, expect_good, pattern, per_driver, read, scenario, tur, write, DrvError,
    Kind, STD,
};
use crate::runner::{Cell, CellCtx};
use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, TimerKind};
use iscsi_proto::initiator::TaskOutcome;
use iscsi_proto::testing::RESERVED;
use iscsi_proto::wire::pdu::{self as w, Header};
use iscsi_proto::wire::Serial;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Checks a Data/R2T SNACK (section 11.16.1 type 0; 11.16.3: "the
/// Initiator Task Tag MUST be set to the Initiator Task Tag of the
/// referenced command"; 11.16.4: the TTT is reserved, 0xffffffff, for
/// it; 11.16.6 BegRun "the DataSN, R2TSN ... of the first PDU whose
/// retransmission is requested"; RunLength 0: all from BegRun, the
/// initiator's go-back-N).
fn check_data_snack(s: &w::SnackRequest, itt: u32, beg: u32) -> Result<(), String> {
    check_eq("SNACK Type", s.snack_type, w::SnackType::DataR2t)?;
    check_eq("SNACK ITT (11.16.3)", s.itt, itt)?;
    check_eq("SNACK TTT (reserved)", s.ttt_or_snack_tag, RESERVED)?;
    check_eq("SNACK BegRun", s.beg_run, Serial(beg))?;
    check_eq("SNACK RunLength", s.run_length, 0)
}

// ---------------------------------------------------------------- Data SNACK

/// RFC 7143 section 7.8: "When an initiator receives any iSCSI PDU with a
/// payload digest error, it MUST discard the PDU. If the discarded PDU is
/// an iSCSI data PDU, the initiator MUST do one of the following: a)
/// Request the desired data PDU through SNACK." Section 7.9: it "MUST NOT
/// acknowledge the received responses that start from the StatSN of the
/// relevant command, until it has completed receiving all the data PDUs".
fn data_snack_digest(ctx: &mut CellCtx) -> Result<(), String> {
    const LEN: usize = 1536;
    per_driver(
        ctx,
        &Kind::ALL,
        false,
        |_, p, _| {
            let mut r = super::responder(1, 20, true);
            login_at(p, &mut r, 1)?;
            check_eq(
                "DataDigest negotiated",
                r.negotiated.as_ref().map(|n| n.data_digest),
                Some(true),
            )?;
            let data = pattern(LEN, 7);
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            let h0 = data_in(p, c.itt, 0, 0, false);
            p.t.send(h0, Bytes::copy_from_slice(&data[..512]));
            let h1 = data_in(p, c.itt, 1, 512, false);
            p.t.send_corrupt(h1, Bytes::copy_from_slice(&data[512..1024]));
            let h2 = data_in(p, c.itt, 2, 1024, true);
            p.t.send(h2, Bytes::copy_from_slice(&data[1024..]));
            p.flush()?;
            let (s, _) = expect_snack(p)?;
            check_data_snack(&s, c.itt, 1)?;
            check_eq(
                "SNACK ExpStatSN (the status in DataSN 2 held back, 7.9)",
                Some(s.exp_stat_sn),
                h2.status.map(|st| st.stat_sn),
            )?;
            check_eq("Data-In resent", p.t.serve_snack(&s), 2)?;
            p.flush()?;
            // Nothing else (no second SNACK, no command) before the logout.
            p.serve_logout().map(drop)
        },
        |k, portal, _| {
            let mut d = connect(k, portal, ini_cfg(1, true, true))?;
            let (o, got) = crate::hostile::run(d.as_mut(), read(LEN as u32))?;
            expect_good("read", &o)?;
            check_eq("read data", got.as_ref(), pattern(LEN, 7).as_slice())?;
            d.logout()?;
            Ok("bad data digest on DataSN 1 -> SNACK Type 0 BegRun 1 RunLength 0, status held; resent, read GOOD with its data; no capture (corrupt on purpose)".into())
        },
    )
}

/// RFC 7143 section 7.8: "When a target or an initiator receives any
/// iSCSI PDU, with a header digest error, it MUST either discard the
/// header and all data up to the beginning of a later PDU or close the
/// connection." The initiator discards it (its documented choice at
/// ErrorRecoveryLevel >= 1 when the length it announces leads to an
/// intact header, `Connection::skip_bad_header`), and the recovery follows
/// from the gap it leaves (section 7.9: an out of order DataSN MUST be
/// addressed with a SNACK), with no reconnection.
fn data_snack_header_digest(ctx: &mut CellCtx) -> Result<(), String> {
    const LEN: usize = 1536;
    per_driver(
        ctx,
        STD,
        false,
        |_, p, _| {
            let mut r = super::responder(1, 20, true);
            login_at(p, &mut r, 1)?;
            check_eq(
                "HeaderDigest negotiated",
                r.negotiated.as_ref().map(|n| n.header_digest),
                Some(true),
            )?;
            let data = pattern(LEN, 23);
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            let h0 = data_in(p, c.itt, 0, 0, false);
            p.t.send(h0, Bytes::copy_from_slice(&data[..512]));
            let h1 = data_in(p, c.itt, 1, 512, false);
            p.t.send_corrupt_header(h1, Bytes::copy_from_slice(&data[512..1024]), false);
            let h2 = data_in(p, c.itt, 2, 1024, true);
            p.t.send(h2, Bytes::copy_from_slice(&data[1024..]));
            p.flush()?;
            let (s, _) = expect_snack(p)?;
            check_data_snack(&s, c.itt, 1)?;
            check_eq("Data-In resent", p.t.serve_snack(&s), 2)?;
            p.flush()?;
            p.serve_logout().map(drop)
        },
        |k, portal, _| {
            let mut d = connect(k, portal, ini_cfg(1, true, true))?;
            let (o, got) = crate::hostile::run(d.as_mut(), read(LEN as u32))?;
            expect_good("read", &o)?;
            check_eq("read data", got.as_ref(), pattern(LEN, 23).as_slice())?;
            d.logout()?;
            Ok("bad header digest on DataSN 1 -> PDU skipped by its length, SNACK Type 0 BegRun 1 RunLength 0; read GOOD with its data, no reconnection; no capture (corrupt on purpose)".into())
        },
    )
}

/// RFC 7143 section 7.9: "When an initiator receives an iSCSI R2T/data
/// PDU with an out of order R2TSN/DataSN ... The initiator MUST address
/// these implied digest errors as described in Section 7.8"; "Upon
/// receiving duplicate R2T/data PDUs ... it MUST discard the duplicates".
fn data_snack_gap(ctx: &mut CellCtx) -> Result<(), String> {
    const LEN: usize = 2048;
    per_driver(
        ctx,
        STD,
        true,
        |_, p, _| {
            login_at(p, &mut super::responder(1, 20, true), 1)?;
            let data = pattern(LEN, 9);
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            for sn in 0..4u32 {
                let h = data_in(p, c.itt, sn, sn * 512, sn == 3);
                let from = sn as usize * 512;
                let seg = Bytes::copy_from_slice(&data[from..from + 512]);
                if sn == 1 {
                    p.t.lose(h, seg); // what a header digest error makes of it
                } else {
                    p.t.send(h, seg);
                }
            }
            p.flush()?;
            let (s, _) = expect_snack(p)?;
            check_data_snack(&s, c.itt, 1)?;
            // The target resends from DataSN 0: a proactive duplicate.
            let again = w::SnackRequest {
                beg_run: Serial(0),
                ..s
            };
            check_eq("Data-In resent", p.t.serve_snack(&again), 4)?;
            p.flush()?;
            p.serve_logout().map(drop)
        },
        |k, portal, _| {
            let mut d = connect(k, portal, ini_cfg(1, false, true))?;
            let (o, got) = crate::hostile::run(d.as_mut(), read(LEN as u32))?;
            expect_good("read", &o)?;
            check_eq("read data", got.as_ref(), pattern(LEN, 9).as_slice())?;
            d.logout()?;
            Ok("DataSN 1 of 4 lost -> SNACK Type 0 BegRun 1 RunLength 0; DataSN 0-3 resent, duplicate discarded, data intact".into())
        },
    )
}

// ---------------------------------------------------------------- R2T SNACK

/// RFC 7143 section 7.9 (an out of order R2TSN, the same rule as DataSN)
/// and section 11.16.1: the Data/R2T SNACK's BegRun is an R2TSN for a
/// write. No Data-Out may answer the R2T past the gap before the missing
/// one (section 7.9: "address these implied digest errors"; the target
/// wants its R2Ts answered in order, 11.8).
fn r2t_snack(ctx: &mut CellCtx) -> Result<(), String> {
    const LEN: usize = 1024;
    per_driver(
        ctx,
        STD,
        true,
        |_, p, _| {
            // Two R2Ts outstanding at ErrorRecoveryLevel 1 need
            // DataSequenceInOrder=No on both sides (section 13.19).
            login_at(p, &mut super::responder_with(1, 20, false, 1, false), 1)?;
            let data = pattern(LEN, 11);
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            let r2t = |p: &mut crate::hostile::Peer, sn: u32| w::R2t {
                lun: 0,
                itt: c.itt,
                ttt: 0x100 + sn,
                stat_sn: p.t.stat_sn,
                exp_cmd_sn: p.t.exp_cmd_sn,
                max_cmd_sn: p.t.max_cmd_sn,
                r2t_sn: Serial(sn),
                buffer_offset: sn * 512,
                desired_data_transfer_length: 512,
            };
            let r0 = r2t(p, 0);
            p.t.lose(r0, Bytes::new());
            let r1 = r2t(p, 1);
            p.t.send(r1, Bytes::new());
            p.flush()?;
            let (s, _) = expect_snack(p)?;
            check_data_snack(&s, c.itt, 0)?;
            check_eq("R2Ts resent", p.t.serve_snack(&s), 2)?;
            p.flush()?;
            for sn in 0..2u32 {
                let (d, seg) = expect_data_out(p)?;
                let at = format!("Data-Out for R2TSN {sn}");
                check_eq(&format!("{at}: TTT"), d.ttt, 0x100 + sn)?;
                check_eq(&format!("{at}: offset"), d.buffer_offset, sn * 512)?;
                check_eq(&format!("{at}: DataSN"), d.data_sn, Serial(0))?;
                check_eq(&format!("{at}: F bit"), d.final_pdu, true)?;
                let from = sn as usize * 512;
                check_eq(
                    &format!("{at}: data"),
                    seg.as_ref(),
                    &data[from..from + 512],
                )?;
            }
            p.t.scsi_response(c.itt, 0, w::Residual::None, None);
            p.flush()?;
            p.serve_logout().map(drop)
        },
        |k, portal, _| {
            let mut cfg = ini_cfg(1, false, false);
            cfg.operational.data_sequence_in_order = false;
            let mut d = connect(k, portal, cfg)?;
            let cmd = write(0, Bytes::from(pattern(LEN, 11)));
            let (o, _) = crate::hostile::run(d.as_mut(), cmd)?;
            expect_good("write", &o)?;
            d.logout()?;
            Ok("R2TSN 0 lost, 1 sent -> SNACK Type 0 BegRun 0 RunLength 0, no Data-Out past the gap; one Data-Out per R2T after the resend, write GOOD".into())
        },
    )
}

// ---------------------------------------------------------------- Status SNACK

/// RFC 7143 section 7.9: "When an initiator receives an iSCSI status PDU
/// with an out of order StatSN that implies missing responses, it MUST
/// address the one or more missing status PDUs as described in Section
/// 7.8" (a Status SNACK); section 11.16.3: "For Status SNACK and DataACK,
/// the Initiator Task Tag MUST be set to the reserved value 0xffffffff";
/// 11.16.6: BegRun is the StatSN of the first PDU to resend.
fn status_snack(ctx: &mut CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        STD,
        true,
        |_, p, _| {
            login_at(p, &mut super::responder(1, 20, true), 1)?;
            let ca = p.expect_cmd()?;
            let cb = p.expect_cmd()?;
            p.t.ack_cmd(cb.cmd_sn);
            let ra = response(p, ca.itt, 0, 0);
            p.t.lose(ra, Bytes::new());
            let rb = response(p, cb.itt, 0, 0);
            p.t.send(rb, Bytes::new());
            p.flush()?;
            let (s, _) = expect_snack(p)?;
            check_eq("SNACK Type", s.snack_type, w::SnackType::Status)?;
            check_eq("SNACK ITT (11.16.3)", s.itt, RESERVED)?;
            check_eq("SNACK BegRun (the missing StatSN)", s.beg_run, ra.stat_sn)?;
            // 1 asks for exactly the missing one; 0 ("all from BegRun",
            // 11.16.7) would be allowed too.
            if s.run_length > 1 {
                return Err(format!(
                    "SNACK RunLength {} (1 or 0 expected)",
                    s.run_length
                ));
            }
            check_eq(
                "SNACK ExpStatSN (nothing acknowledged past the gap)",
                s.exp_stat_sn,
                ra.stat_sn,
            )?;
            if p.t.serve_snack(&s) == 0 {
                return Err("nothing to resend for that SNACK".into());
            }
            p.flush()?;
            p.serve_logout().map(drop)
        },
        |k, portal, _| {
            let mut d = connect(k, portal, ini_cfg(1, false, true))?;
            let a = d.submit(tur())?;
            let b = d.submit(tur())?;
            let (oa, _) = d.wait(a)?;
            let (ob, _) = d.wait(b)?;
            expect_good("first TUR (its response recovered)", &oa)?;
            expect_good("second TUR", &ob)?;
            d.logout()?;
            Ok("response of the first TUR lost -> SNACK Type 1 ITT 0xffffffff BegRun = its StatSN; both GOOD once".into())
        },
    )
}

// ---------------------------------------------------------------- DataACK

/// RFC 7143 section 11.7.2 (A bit): "the target sets this bit to 1 to
/// indicate that it requests a positive acknowledgement from the
/// initiator for the data received ... it MAY only set the A bit to 1
/// once every MaxBurstLength bytes"; section 11.16: "If an
/// initiator operates at ErrorRecoveryLevel 1 or higher, it MUST issue a
/// SNACK of type DataACK after receiving a Data-In PDU with the A bit set
/// to 1"; 11.16.3 ITT 0xffffffff; 11.16.4: "For DataACK, the Target
/// Transfer Tag MUST contain a copy of the Target Transfer Tag and LUN
/// provided with the SCSI Data-In PDU with the A bit set to 1"; 11.16.6:
/// BegRun is "the next expected DataSN (DataACK SNACK)"; 11.16.7:
/// "RunLength MUST also be 0 for a DataACK SNACK". MaxBurstLength is 512
/// here so that the A bit on the first 512-byte Data-In (no status: the
/// acknowledgement through ExpStatSN is not an option) is legal.
fn data_ack_snack(ctx: &mut CellCtx) -> Result<(), String> {
    const LEN: usize = 1024;
    per_driver(
        ctx,
        STD,
        true,
        |_, p, _| {
            let mut r = super::responder(1, 20, true);
            login_at(p, &mut r, 1)?;
            check_eq(
                "MaxBurstLength negotiated",
                r.negotiated.as_ref().map(|n| n.max_burst_length),
                Some(512),
            )?;
            let data = pattern(LEN, 13);
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            let mut h0 = data_in(p, c.itt, 0, 0, false);
            h0.ack = true;
            h0.ttt = 0x4242;
            h0.lun = c.lun;
            p.t.send(h0, Bytes::copy_from_slice(&data[..512]));
            p.flush()?;
            let (s, _) = expect_snack(p)?;
            check_eq("SNACK Type", s.snack_type, w::SnackType::DataAck)?;
            check_eq("SNACK ITT (11.16.3)", s.itt, RESERVED)?;
            check_eq("SNACK TTT (copied, 11.16.4)", s.ttt_or_snack_tag, 0x4242)?;
            check_eq("SNACK LUN (copied, 11.16.4)", s.lun, c.lun)?;
            check_eq("SNACK BegRun (next DataSN)", s.beg_run, Serial(1))?;
            check_eq("SNACK RunLength", s.run_length, 0)?;
            let h1 = data_in(p, c.itt, 1, 512, true);
            p.t.send(h1, Bytes::copy_from_slice(&data[512..]));
            p.flush()?;
            p.serve_logout().map(drop)
        },
        |k, portal, _| {
            let mut c = ini_cfg(1, false, true);
            c.operational.max_burst_length = 512;
            c.operational.first_burst_length = 512;
            let mut d = connect(k, portal, c)?;
            let (o, got) = crate::hostile::run(d.as_mut(), read(LEN as u32))?;
            expect_good("read", &o)?;
            check_eq("read data", got.as_ref(), pattern(LEN, 13).as_slice())?;
            d.logout()?;
            Ok("A bit on DataSN 0 (TTT 0x4242) -> SNACK Type 2 ITT 0xffffffff TTT 0x4242 LUN copied BegRun 1 RunLength 0; read GOOD".into())
        },
    )
}

// ---------------------------------------------------------------- bound

/// SNACK retries, through each driver's timer: RFC 7143 section 7.1.4.1
/// (b) "Sequence reception timeout ... using the option of a SNACK"; an
/// unanswered Data SNACK is sent again after `ErrorRecovery::snack_timeout`
/// (100 ms here), identical, for `snack_retries` (2) rounds; after the
/// last the connection is dropped with `TimedOut(Snack)` (the
/// ErrorRecoveryLevel 0 path; no session recovery configured, so the
/// task and the session end with it). Counts, not times, are asserted.
fn snack_unanswered(ctx: &mut CellCtx) -> Result<(), String> {
    per_driver(
        ctx,
        &Kind::ALL,
        true,
        |_, p, _| {
            login_at(p, &mut super::responder(1, 20, true), 1)?;
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            let h0 = data_in(p, c.itt, 0, 0, false);
            p.t.lose(h0, Bytes::from(vec![1u8; 512]));
            let h1 = data_in(p, c.itt, 1, 512, false);
            p.t.send(h1, Bytes::from(vec![2u8; 512]));
            p.flush()?;
            let (first, _) = expect_snack(p)?;
            check_data_snack(&first, c.itt, 0)?;
            for round in 1..=2 {
                let (again, _) = expect_snack(p)?;
                check_eq(&format!("SNACK resent (round {round})"), again, first)?;
            }
            p.expect_closed()
        },
        |k, portal, _| {
            let mut cfg = ini_cfg(1, false, true);
            cfg.error_recovery.snack_timeout = Duration::from_millis(100);
            cfg.error_recovery.snack_retries = 2;
            let mut d = connect(k, portal, cfg)?;
            let t = d.submit(read(1024))?;
            let want = ConnectionError::TimedOut(TimerKind::Snack);
            match d.wait(t) {
                Err(DrvError::Connection(Some(e))) if e == want => {}
                other => return Err(format!("read with its SNACKs unanswered: {other:?}")),
            }
            check_eq(
                "close reason",
                d.closed_reason(crate::hostile::STEP)?,
                Some(want),
            )?;
            Ok("SNACK unanswered -> sent 3 times in all (2 retries), then TimedOut(Snack), task and session closed".into())
        },
    )
}

// ---------------------------------------------------------------- last Data-In lost

/// The last Data-In of a read, carrying its status (S bit), lost with
/// nothing after it: no gap shows, only a timeout can tell. RFC 7143
/// section 7.1.4.1, at the initiator: "b) Sequence reception timeout (no
/// status) or response reception timeout - dealt with as specified in
/// Section 7.8, using the option of a SNACK". With `snack_timeout` 100 ms
/// the target waits 3 s for that SNACK (a Data SNACK BegRun 1, or a Status
/// SNACK). The initiator sends none (docs/STATUS.md, pair-oracle helper,
/// bug 4): reported as a KNOWN BUG unless `RECOVERY_STRICT=1`, which
/// fails the cell. Either way the target then sends a NOP-In, whose StatSN
/// reveals the missing status (section 7.9): the initiator must ask for it
/// with a Status SNACK and the read must end GOOD with its data.
fn last_data_in_lost(ctx: &mut CellCtx) -> Result<(), String> {
    const LEN: usize = 1024;
    let by_itself = Arc::new(AtomicBool::new(false));
    let flag = by_itself.clone();
    scenario(
        ctx,
        true,
        move |l| {
            let mut p = super::accept(&l)?;
            login_at(&mut p, &mut super::responder(1, 20, true), 1)?;
            let data = pattern(LEN, 31);
            let c = p.expect_cmd()?;
            p.t.ack_cmd(c.cmd_sn);
            let h0 = data_in(&mut p, c.itt, 0, 0, false);
            p.t.send(h0, Bytes::copy_from_slice(&data[..512]));
            let h1 = data_in(&mut p, c.itt, 1, 512, true);
            let lost_sn = h1.status.map(|st| st.stat_sn).unwrap_or_default();
            p.t.lose(h1, Bytes::copy_from_slice(&data[512..]));
            p.flush()?;
            // The initiator finds the loss by itself: a SNACK after its
            // timeout, or first a NOP-Out ping on the quiet connection
            // whose NOP-In answer carries "the next StatSN" (RFC 7143
            // 11.19.2) and so shows the gap (7.1.4.1 b, 7.1.4.2).
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match p.recv_within(left)? {
                    Rx::Pdu(pdu) => match pdu.header {
                        Header::NopOut(n) if n.itt != 0xffff_ffff => {
                            p.t.nop_in_reply(&n, pdu.data.clone());
                            p.flush()?;
                        }
                        Header::SnackRequest(s) => {
                            let data_snack = s.snack_type == w::SnackType::DataR2t
                                && s.itt == c.itt
                                && s.beg_run == Serial(1);
                            let status_snack =
                                s.snack_type == w::SnackType::Status && s.beg_run == lost_sn;
                            if !(data_snack || status_snack) {
                                return Err(format!("SNACK for the lost last Data-In: {s:?}"));
                            }
                            flag.store(true, Ordering::SeqCst);
                            p.t.serve_snack(&s);
                            break;
                        }
                        other => {
                            return Err(format!("expected a SNACK or a NOP-Out, got {other:?}"))
                        }
                    },
                    Rx::Closed => return Err("the initiator closed the connection".into()),
                    Rx::Timeout => {
                        // The NOP-In's StatSN is past the lost status.
                        p.t.nop_in_ping(0x71, 0, &[]);
                        break;
                    }
                }
            }
            p.flush()?;
            // Serve what comes (the ping's answer, SNACKs) until the logout.
            loop {
                let pdu = p.recv()?;
                match pdu.header {
                    Header::SnackRequest(s) => {
                        p.t.serve_snack(&s);
                        p.flush()?;
                    }
                    Header::NopOut(n) if n.ttt == 0x71 => {}
                    Header::LogoutRequest(lo) => {
                        p.t.logout_response(lo.itt, 0, 0);
                        p.flush()?;
                        return p.expect_closed();
                    }
                    other => return Err(format!("unexpected {other:?}")),
                }
            }
        },
        |portal| {
            let mut cfg = ini_cfg(1, false, true);
            cfg.error_recovery.snack_timeout = Duration::from_millis(100);
            let mut d = connect(Kind::Std, portal, cfg)?;
            let (o, got) = crate::hostile::run(d.as_mut(), read(LEN as u32))?;
            expect_good("read", &o)?;
            check_eq("read data", got.as_ref(), pattern(LEN, 31).as_slice())?;
            d.logout()?;
            Ok("read GOOD with its data once the status was recovered".into())
        },
    )?;
    if by_itself.load(Ordering::SeqCst) {
        ctx.note(
            "the initiator asked for the lost last Data-In by itself (quiet-connection ping, then a SNACK)",
        );
        Ok(())
    } else {
        Err("the last Data-In (with status) lost and nothing after it: no SNACK within 3 s (snack_timeout 100 ms), RFC 7143 7.1.4.1 b".into())
    }
}

// ---------------------------------------------------------------- R-Data SNACK

/// RFC 7143 section 11.16 (RFC 3720 10.16): "If the initiator
/// MaxRecvDataSegmentLength changed between the original transmission
/// and the time the initiator requests retransmission, the initiator MUST
/// issue a R-Data SNACK"; BegRun 0, RunLength 0, a SNACK Tag neither 0
/// nor 0xffffffff, unique for the task, which the target copies into its
/// last SCSI Response. The initiator has no way to change its
/// MaxRecvDataSegmentLength in full feature phase (no Text negotiation
/// of it after login), so the condition never arises and it never sends
/// one: there is no exchange to script yet.
fn r_data_snack(ctx: &mut CellCtx) -> Result<(), String> {
    let note = not_implemented(
        "R-Data SNACK (Type 3, RFC 7143 11.16): the initiator cannot change MaxRecvDataSegmentLength in full feature phase and never sends one (docs/STATUS.md, erl-ini helper, 'R-Data SNACK ... is never sent')",
    )?;
    ctx.note(note);
    Ok(())
}

// ---------------------------------------------------------------- Reject

/// RFC 7143 section 7.8: the target may "reject the SNACK with a Reject
/// PDU with a reason code of 'SNACK reject' in which case: ... ii) If the
/// status was already sent, no further action is necessary for the
/// target. The initiator in this case MUST wait for the status to be
/// received and then discard it, so as to internally signal the
/// completion with CHECK CONDITION Status and an iSCSI Condition of
/// 'protocol service CRC error'" (sense key 0x0b ABORTED COMMAND,
/// ASC/ASCQ 0x47/0x05). Reason 0x03 is "SNACK Reject" (11.17.1). For a
/// Status SNACK rejected the lost response is gone: the initiator's
/// documented outcome is the ErrorRecoveryLevel 0 path, the connection
/// fails with a protocol error (section 7.8 b/c) and the task ends once.
fn snack_reject(ctx: &mut CellCtx) -> Result<(), String> {
    scenario(
        ctx,
        true,
        |l| {
            // Sessions 1 and 2: a Data SNACK rejected after the status,
            // with "SNACK Reject" and with "Protocol Error".
            for reason in REJECT_REASONS {
                let mut p = super::accept(&l)?;
                login_at(&mut p, &mut super::responder(1, 20, true), 1)?;
                let c = p.expect_cmd()?;
                p.t.ack_cmd(c.cmd_sn);
                let h0 = data_in(&mut p, c.itt, 0, 0, false);
                p.t.lose(h0, Bytes::from(vec![1u8; 512]));
                let h1 = data_in(&mut p, c.itt, 1, 512, false);
                p.t.send(h1, Bytes::from(vec![2u8; 512]));
                let r = response(&mut p, c.itt, 0, 2);
                p.t.send(r, Bytes::new());
                p.flush()?;
                let (s, spdu) = expect_snack(&mut p)?;
                check_data_snack(&s, c.itt, 0)?;
                p.t.reject(reason, &spdu);
                p.flush()?;
                let c2 = p.expect_cmd()?;
                check_eq(
                    "next command's ExpStatSN (response and Reject acknowledged)",
                    c2.exp_stat_sn,
                    p.next_stat_sn(),
                )?;
                p.good(&c2)?;
                p.serve_logout()?;
            }
            // Session 3: a Status SNACK rejected.
            let mut p = super::accept(&l)?;
            login_at(&mut p, &mut super::responder(1, 20, true), 1)?;
            let ca = p.expect_cmd()?;
            let cb = p.expect_cmd()?;
            p.t.ack_cmd(cb.cmd_sn);
            let ra = response(&mut p, ca.itt, 0, 0);
            p.t.lose(ra, Bytes::new());
            let rb = response(&mut p, cb.itt, 0, 0);
            p.t.send(rb, Bytes::new());
            p.flush()?;
            let (s, spdu) = expect_snack(&mut p)?;
            check_eq("SNACK Type", s.snack_type, w::SnackType::Status)?;
            p.t.reject_snack(&spdu);
            p.flush()?;
            p.expect_closed()
        },
        |portal| {
            for reason in REJECT_REASONS {
                let at = format!("Data SNACK rejected {reason:?}");
                let mut d = connect(Kind::Std, portal, ini_cfg(1, false, true))?;
                let (o, _) = crate::hostile::run(d.as_mut(), read(1024))?;
                let TaskOutcome::Scsi(res) = &o else {
                    return Err(format!("{at}: read {o:?}"));
                };
                check_eq(&format!("{at}: status (CHECK CONDITION)"), res.status, 2)?;
                let sense = res.sense.as_deref().unwrap_or_default();
                let got = (
                    sense.get(2).map(|k| k & 0x0f),
                    sense.get(12).copied(),
                    sense.get(13).copied(),
                );
                check_eq(
                    &format!("{at}: sense key, ASC, ASCQ (protocol service CRC error)"),
                    got,
                    (Some(0x0b), Some(0x47), Some(0x05)),
                )?;
                let (o2, _) = crate::hostile::run(d.as_mut(), tur())?;
                expect_good(&format!("{at}: next command"), &o2)?;
                d.logout()?;
            }
            let mut d = connect(Kind::Std, portal, ini_cfg(1, false, true))?;
            let a = d.submit(tur())?;
            let b = d.submit(tur())?;
            let ea = d.wait(a);
            let eb = d.wait(b);
            let reason = d.closed_reason(crate::hostile::STEP)?;
            if !matches!(reason, Some(ConnectionError::Protocol(_))) {
                return Err(format!(
                    "close reason after a rejected Status SNACK: {reason:?}"
                ));
            }
            // The first task's response is gone: it ends with the
            // connection's failure; the second completed before.
            match ea {
                Err(DrvError::Connection(Some(ConnectionError::Protocol(_)))) => {}
                other => return Err(format!("first TUR: {other:?}")),
            }
            let (ob, _) = eb?;
            expect_good("second TUR", &ob)?;
            Ok("Data SNACK rejected (0x03, and 0x04) after the status -> CHECK CONDITION 0x0b/0x47/0x05, no connection loss; Status SNACK rejected -> connection fails Protocol, its task ends with it".into())
        },
    )
}

/// The Reject reasons a Data SNACK is refused with: "SNACK Reject" (0x03,
/// the one section 7.8 names) and "Protocol Error" (0x04, what a target
/// may say of a SNACK it finds wrong, section 11.17.1): either way the
/// target will not resend, the data is lost, and (ii) of section 7.8
/// applies.
const REJECT_REASONS: [w::RejectReason; 2] =
    [w::RejectReason::SnackReject, w::RejectReason::ProtocolError];

/// The ErrorRecoveryLevel 1 cells.
pub(super) fn cells() -> Vec<Cell> {
    vec![
        Cell::new(GR, "data-snack-digest", data_snack_digest),
        Cell::new(GR, "data-snack-header-digest", data_snack_header_digest),
        Cell::new(GR, "data-snack-datasn-gap", data_snack_gap),
        Cell::new(GR, "r2t-snack", r2t_snack),
        Cell::new(GR, "status-snack", status_snack),
        Cell::new(GR, "data-ack-snack", data_ack_snack),
        Cell::new(GR, "r-data-snack", r_data_snack),
        Cell::new(GR, "snack-unanswered", snack_unanswered),
        Cell::new(GR, "last-data-in-lost", last_data_in_lost),
        Cell::new(GR, "snack-reject", snack_reject),
    ]
}
