//! Receive coalescing must never stall a session: after a warm-up that
//! teaches every driver the target's pace (so it waits for several
//! responses per wakeup, `iscsi_proto::initiator::coalesce`), eight
//! 64 KiB reads get answers far shorter than what the planner expects: a
//! CHECK CONDITION with sense data and no data, or 512 bytes with a
//! residual underflow (RFC 7143 section 11.4.5). Every read must still
//! complete, with exactly those results.

use std::collections::VecDeque;

use super::{cfg, check_eq, connect, expect_good, pattern, per_driver, read, Kind, Peer, G};
use crate::runner::Cell;
use iscsi_proto::initiator::TaskOutcome;
use iscsi_proto::wire::pdu as w;
use std::sync::mpsc;

/// Reads of 4 KiB answered in full before the short answers.
const WARM_UP: usize = 1500;
/// Reads kept in flight during the warm-up.
const DEPTH: usize = 8;
/// The reads answered short.
const SHORT: usize = 8;
const BIG: u32 = 64 * 1024;
/// Fixed-format sense: MEDIUM ERROR, unrecovered read error (11h/00h).
const SENSE: [u8; 18] = [
    0x70, 0, 0x03, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x11, 0, 0, 0, 0, 0,
];

fn target(_: Kind, p: &mut Peer, _: &mpsc::Receiver<()>) -> Result<(), String> {
    p.login_plain()?;
    let data = pattern(4096, 3);
    for _ in 0..WARM_UP {
        let c = p.expect_cmd()?;
        p.t.ack_cmd(c.cmd_sn);
        p.t.data_in(c.itt, 0, 0, &data, Some((0, w::Residual::None)));
        p.flush()?;
    }
    let mut cmds = Vec::new();
    for _ in 0..SHORT {
        let c = p.expect_cmd()?;
        check_eq(
            "short-answered READ EDTL",
            c.expected_data_transfer_length,
            BIG,
        )?;
        cmds.push(c);
    }
    for (i, c) in cmds.iter().enumerate() {
        p.t.ack_cmd(c.cmd_sn);
        if i % 2 == 0 {
            // CHECK CONDITION, no data.
            p.t.scsi_response(c.itt, 0x02, w::Residual::None, Some(&SENSE));
        } else {
            p.t.data_in(
                c.itt,
                0,
                0,
                &data[..512],
                Some((0, w::Residual::Underflow(BIG - 512))),
            );
        }
    }
    p.flush()?;
    p.serve_logout().map(drop)
}

fn short_answers(ctx: &mut crate::runner::CellCtx) -> Result<(), String> {
    per_driver(ctx, &Kind::ALL, false, target, |k, portal, _| {
        let mut d = connect(k, portal, cfg())?;
        let mut q = VecDeque::new();
        for _ in 0..WARM_UP {
            if q.len() == DEPTH {
                let t = q.pop_front().ok_or("empty queue")?;
                let (o, data) = d.wait(t)?;
                expect_good("warm-up read", &o)?;
                check_eq("warm-up read length", data.len(), 4096)?;
            }
            q.push_back(d.submit(read(4096))?);
        }
        while let Some(t) = q.pop_front() {
            expect_good("warm-up read", &d.wait(t)?.0)?;
        }
        let tasks = (0..SHORT)
            .map(|_| d.submit(read(BIG)))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, t) in tasks.into_iter().enumerate() {
            let (o, data) = d.wait(t)?;
            let TaskOutcome::Scsi(r) = o else {
                return Err(format!("short read {i}: {o:?}"));
            };
            if i % 2 == 0 {
                check_eq("short read status", r.status, 0x02)?;
                check_eq(
                    "short read sense key",
                    r.sense_data.map(|s| s.key as u8),
                    Some(0x03),
                )?;
                check_eq("short read data", data.len(), 0)?;
            } else {
                expect_good("underflowed read", &TaskOutcome::Scsi(r.clone()))?;
                check_eq(
                    "underflow residual",
                    r.residual,
                    w::Residual::Underflow(BIG - 512),
                )?;
                check_eq("underflowed read data", data.len(), 512)?;
            }
        }
        d.logout()?;
        Ok(format!(
            "{WARM_UP} reads at depth {DEPTH}, then {SHORT} reads answered short (CHECK CONDITION / 512-byte underflow): all completed"
        ))
    })
}

pub(super) fn cells() -> Vec<Cell> {
    vec![Cell::new(G, "coalescing-short-answers", short_answers)]
}
