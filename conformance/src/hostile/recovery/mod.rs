//! Error recovery against scripted targets (group `recovery`, issue 15):
//! ErrorRecoveryLevel 1 (SNACK, RFC 7143 sections 7.8, 7.9, 11.16) and 2
//! (connection recovery with TASK REASSIGN, sections 7.1.4.3, 7.2, 11.5.1,
//! 13.15/13.16), each negotiated in the login the cell scripts, against
//! the project's initiator through its real drivers over real TCP on
//! 127.0.0.1 (the `hostile` group's machinery: [`super::per_driver`],
//! [`super::scenario`], [`super::Peer`]). Every cell asserts the exact PDU
//! the initiator sends back and the task's end (each task ends exactly
//! once, no command is sent twice: a NOP-In ping after the exchange must
//! be answered next, [`Peer::ping_sync`]).
//!
//! | cell | drivers | what the target does / what must come back |
//! |---|---|---|
//! | `data-snack-digest` | std, mio, smol, tokio | Data-In DataSN 1 of 3 with a bad data digest (ERL 1, CRC32C) -> SNACK Type 0, ITT of the read, TTT 0xffffffff, BegRun 1, RunLength 0, ExpStatSN not past the status held in DataSN 2 (7.9); the resent Data-In completes the read with the right bytes. No capture (corrupt on purpose) |
//! | `data-snack-header-digest` | std | Data-In DataSN 1 of 3 with a bad header digest (right length) -> the PDU discarded up to the next one (7.8), then the same SNACK Type 0 BegRun 1 from the gap; read GOOD, no reconnection. No capture |
//! | `data-snack-datasn-gap` | std | DataSN 1 of 4 never sent (what a header digest error makes of it, 7.9) -> the same SNACK Type 0, BegRun 1; the target resends from DataSN 0 (a proactive duplicate): the read's data is delivered once, in order |
//! | `r2t-snack` | std | R2TSN 0 lost, R2TSN 1 sent (ImmediateData=No) -> SNACK Type 0 for the write, BegRun 0, RunLength 0, and no Data-Out for the R2T past the gap; after the resend exactly one Data-Out per R2T (TTT, offset, bytes) |
//! | `status-snack` | std | two TEST UNIT READYs, the first response lost (StatSN gap) -> SNACK Type 1, ITT 0xffffffff, BegRun = the missing StatSN, RunLength 1; both tasks end GOOD once |
//! | `data-ack-snack` | std | A bit on a Data-In without status (TTT 0x4242, the command's LUN) -> SNACK Type 2, ITT 0xffffffff, TTT 0x4242, LUN copied, BegRun = next DataSN (1), RunLength 0 (11.16.3-11.16.7) |
//! | `r-data-snack` | - | SNACK Type 3 after a MaxRecvDataSegmentLength change: the initiator cannot renegotiate it in full feature phase, so it never sends one. Passes with a note saying so; fails with `RECOVERY_STRICT=1` |
//! | `snack-unanswered` | std, mio, smol, tokio | a Data SNACK never answered (`snack_timeout` 100 ms, `snack_retries` 2): the same SNACK twice more, then the connection dropped, task and session `TimedOut(Snack)` (7.1.4.1 b); through each driver's timer |
//! | `last-data-in-lost` | std | the last Data-In (status in it) lost, nothing after it: within 3 s (`snack_timeout` 100 ms) the initiator must find the loss by itself (7.1.4.1 b): a NOP-Out ping on the quiet connection, answered with the next StatSN (11.19.2), then a Status SNACK for the lost StatSN (or a Data SNACK BegRun 1); the read ends GOOD with its data (7.9) |
//! | `snack-reject` | std | a Data SNACK answered with Reject reason 0x03 "SNACK Reject" (11.17.1), and in a second session with 0x04 "Protocol Error", after the status was sent -> the read ends once with CHECK CONDITION, sense key 0x0b, ASC/ASCQ 0x47/0x05 "protocol service CRC error" (7.8 ii); no connection loss, the held status is acknowledged by the next command's ExpStatSN. A rejected Status SNACK -> the connection fails (`Protocol`), the task ends once |
//! | `task-reassign` | std, mio, smol, tokio | ERL 2, a read (one Data-In received) and a TUR outstanding, the connection dropped -> a new connection logs in with the same ISID, TSIH and CID and the old connection's ExpStatSN, then TASK REASSIGN (immediate) for each task with its RefCmdSN, ExpDataSN 1 for the read, 0 for the TUR; no command sent again; both complete once, read data intact (with `iscsi-std` also `ConnectionRecovered { reassigned: 2, retried: 0 }` and the TSIH) |
//! | `task-reassign-mcs` | std | ERL 2, MaxConnections 2 (the driver opens the second connection), a TUR on each; the added connection dropped -> Logout Request reason 2 "remove the connection for recovery" with the failed CID on the first connection (11.14.1), then TASK REASSIGN there (I, RefCmdSN, ExpDataSN 0); no command sent again, both GOOD once, TSIH kept |
//! | `time2retain-expiry` | std | ERL 2, DefaultTime2Retain 1; after the drop the target no longer has the tasks: TASK REASSIGN answered "Task does not exist" (read) and "Function rejected" (TUR) -> both fail `OutcomeUnknown` exactly once (they were acknowledged: may have run), neither is sent again, the session (same TSIH) carries a new command. Part 2: the recovery login left unanswered past Time2Wait + Time2Retain (0 + 1 s) -> `TimedOut(Retain)`, session reinstatement (TSIH 0), the TUR (`Reissue::Never`) `OutcomeUnknown`, the read reissued and GOOD. Part 3: DefaultTime2Retain 0 negotiated -> straight to reinstatement (TSIH 0), same outcomes |
//! | `dies-during-recovery` | std, mio, smol, tokio | ERL 2; the connection is dropped, then the replacement is dropped after its Login Request -> a third connection logs in with the same TSIH and reassigns the TUR, which completes once. With every replacement dropped: exactly `Recovery::max_attempts` (3) recovery logins (each with the session's TSIH), then the task and the session end `RecoveryFailed { attempts: 3 }` |
//!
//! What the initiator does not implement yet, or gets wrong in a way
//! already known, is reported, not failed: such a cell passes with a note
//! beginning "SKIPPED" or "KNOWN BUG" unless `RECOVERY_STRICT=1` is set,
//! in which case it fails with the reason. The rest of such a cell (what
//! is implemented) is asserted either way.

mod erl1;
mod erl2;

use super::{cfg, Listener, Peer};
use crate::runner::Cell;
use iscsi_proto::initiator::SessionConfig;
use iscsi_proto::login::negotiation::{DigestType, OperationalParams, TargetConfig};
use iscsi_proto::testing::{LoginResponder, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header};
use iscsi_proto::wire::{Pdu, Serial};
use std::time::Duration;

/// The group name.
pub const GR: &str = "recovery";

/// The TSIH the scripted target hands out.
const TSIH: u16 = 0x0d;

/// Whether unimplemented recovery features fail their cell
/// (`RECOVERY_STRICT=1`).
fn strict() -> bool {
    std::env::var("RECOVERY_STRICT").is_ok_and(|v| v == "1")
}

/// The outcome of a cell about something the initiator does not do yet:
/// a failure under `RECOVERY_STRICT=1`, else a pass whose note says
/// plainly that it was skipped and why.
fn not_implemented(what: &str) -> Result<String, String> {
    if strict() {
        Err(format!("not implemented: {what}"))
    } else {
        Ok(format!(
            "SKIPPED (not implemented; RECOVERY_STRICT=1 fails this cell): {what}"
        ))
    }
}

/// The initiator's configuration: ErrorRecoveryLevel `level`, CRC32C
/// digests when `digests`, DefaultTime2Wait 0 offered (section 13.15:
/// the result is the greater value, so both sides offer 0 for an
/// immediate reconnection), up to 4 outstanding R2Ts, ImmediateData
/// as given.
fn ini_cfg(level: u8, digests: bool, immediate_data: bool) -> SessionConfig {
    let mut c = cfg().with_error_recovery_level(level);
    if digests {
        c.operational.header_digest = vec![DigestType::Crc32c];
        c.operational.data_digest = vec![DigestType::Crc32c];
    }
    c.operational.default_time2wait = 0;
    c.operational.max_outstanding_r2t = 4;
    c.operational.immediate_data = immediate_data;
    c
}

/// The scripted target's login: ErrorRecoveryLevel `level` accepted,
/// digests accepted, DefaultTime2Wait 0, DefaultTime2Retain `retain`.
fn responder(level: u8, retain: u16, immediate_data: bool) -> LoginResponder {
    responder_mcs(level, retain, immediate_data, 1)
}

/// [`responder`] accepting up to `max_connections` (section 13.2).
fn responder_mcs(
    level: u8,
    retain: u16,
    immediate_data: bool,
    max_connections: u16,
) -> LoginResponder {
    responder_with(level, retain, immediate_data, max_connections, true)
}

/// [`responder_mcs`] with the target's DataSequenceInOrder offer (section
/// 13.19: at ErrorRecoveryLevel >= 1 with DataSequenceInOrder=Yes,
/// MaxOutstandingR2T "MUST be set to 1").
fn responder_with(
    level: u8,
    retain: u16,
    immediate_data: bool,
    max_connections: u16,
    data_sequence_in_order: bool,
) -> LoginResponder {
    let tc = TargetConfig {
        params: OperationalParams {
            error_recovery_level: level,
            header_digest: vec![DigestType::Crc32c, DigestType::None],
            data_digest: vec![DigestType::Crc32c, DigestType::None],
            default_time2wait: 0,
            default_time2retain: retain,
            max_outstanding_r2t: 4,
            immediate_data,
            max_connections,
            data_sequence_in_order,
            ..OperationalParams::default()
        },
        ..TargetConfig::default()
    };
    let mut r = LoginResponder::new(tc, None);
    r.tsih = TSIH;
    r
}

/// Logs in with `r` and requires ErrorRecoveryLevel `level` negotiated
/// (section 13.20: the lower of the two offers).
fn login_at(p: &mut Peer, r: &mut LoginResponder, level: u8) -> Result<w::LoginRequest, String> {
    let req = p.login(r)?;
    let got = r.negotiated.as_ref().map(|n| n.error_recovery_level);
    super::check_eq("ErrorRecoveryLevel negotiated", got, Some(level))?;
    Ok(req)
}

/// The next PDU, which must be a SNACK Request; with the PDU itself.
fn expect_snack(p: &mut Peer) -> Result<(w::SnackRequest, Pdu), String> {
    let pdu = p.recv()?;
    match pdu.header {
        Header::SnackRequest(s) => Ok((s, pdu)),
        other => Err(format!("expected a SNACK Request, got {other:?}")),
    }
}

/// The next PDU, which must be a Task Management Function Request.
fn expect_tmf(p: &mut Peer) -> Result<w::TaskMgmtRequest, String> {
    let pdu = p.recv()?;
    match pdu.header {
        Header::TaskMgmtRequest(t) => Ok(t),
        other => Err(format!("expected a Task Management Request, got {other:?}")),
    }
}

/// The next PDU, which must be a SCSI Data-Out; with its data.
fn expect_data_out(p: &mut Peer) -> Result<(w::DataOut, bytes::Bytes), String> {
    let pdu = p.recv()?;
    match pdu.header {
        Header::DataOut(d) => Ok((d, pdu.data)),
        other => Err(format!("expected a Data-Out, got {other:?}")),
    }
}

/// A Data-In header for the scripted target's current window; with
/// `status` the S and F bits and the next StatSN.
fn data_in(p: &mut Peer, itt: u32, sn: u32, offset: u32, status: bool) -> w::DataIn {
    let status = status.then(|| w::DataInStatus {
        status: 0,
        stat_sn: p.t.next_stat_sn(),
        residual: w::Residual::None,
    });
    w::DataIn {
        final_pdu: status.is_some(),
        ack: false,
        lun: 0,
        itt,
        ttt: RESERVED,
        exp_cmd_sn: p.t.exp_cmd_sn,
        max_cmd_sn: p.t.max_cmd_sn,
        data_sn: Serial(sn),
        buffer_offset: offset,
        status,
    }
}

/// A SCSI Response header (next StatSN) with ExpDataSN `exp_data_sn`
/// (section 11.4.8: the number of Data-In PDUs the target sent).
fn response(p: &mut Peer, itt: u32, status: u8, exp_data_sn: u32) -> w::ScsiResponse {
    w::ScsiResponse {
        response: w::ScsiResponseCode::CommandCompleted,
        status,
        itt,
        snack_tag: 0,
        stat_sn: p.t.next_stat_sn(),
        exp_cmd_sn: p.t.exp_cmd_sn,
        max_cmd_sn: p.t.max_cmd_sn,
        exp_data_sn: Serial(exp_data_sn),
        bidi_read_residual: w::Residual::None,
        residual: w::Residual::None,
    }
}

/// How long a script waits for the initiator's next connection: the
/// initiator connects only once the tshark capture has started, which on
/// a loaded machine takes longer than [`super::STEP`].
const ACCEPT: Duration = Duration::from_secs(30);

/// The initiator's next connection, within [`ACCEPT`].
fn accept(l: &Listener) -> Result<Peer, String> {
    l.accept_within(ACCEPT)?
        .ok_or_else(|| format!("no connection on port {} within {ACCEPT:?}", l.port()))
}

/// The cells of the `recovery` group.
pub fn cells() -> Vec<Cell> {
    let mut v = erl1::cells();
    v.extend(erl2::cells());
    v.into_iter()
        .map(|c| c.with_timeout(Duration::from_secs(120)))
        .collect()
}
