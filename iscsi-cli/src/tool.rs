//! The block I/O of the `iscsi` tool, shared by the binary and by tests
//! that drive it as a library (the hostile conformance cells): the
//! operational values and recovery policy it offers, one command with the
//! tool's error lines, READ CAPACITY, and the READ/WRITE loops.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::initiator::{Recovery, ScsiCommand};
use iscsi_proto::login::negotiation::OperationalParams;
use iscsi_proto::scsi::cdb::{self, Capacity, RwFlags};
use iscsi_proto::scsi::sense::{SenseData, SenseKey};
use iscsi_proto::scsi::status::ScsiStatus;

use crate::driver::{Completed, Session};

/// Largest transfer per command (bytes).
pub const MAX_TRANSFER: u64 = 1 << 20;

/// Operational parameters the tool offers: large data segments and bursts,
/// immediate and unsolicited data (targets answer with their own limits).
/// MaxRecvDataSegmentLength = MaxBurstLength (1 MiB): a target may then
/// send a 1 MiB read in one Data-In PDU, which reaches the application as
/// a slice of the receive buffer instead of being assembled from pieces.
pub fn tuned_params() -> OperationalParams {
    OperationalParams {
        max_recv_data_segment_length: 1 << 20,
        max_burst_length: 1 << 20,
        first_burst_length: 262_144,
        immediate_data: true,
        initial_r2t: false,
        ..Default::default()
    }
}

/// The session recovery the tool turns on unless `--no-recovery` is
/// given (ErrorRecoveryLevel 0 session reinstatement, RFC 7143 sections
/// 6.3.5 and 7.1.5), as libiscsi reconnects by default: up to 5
/// reconnections per failure, the first after DefaultTime2Wait (at least
/// 100 ms), doubling up to 10 s. The tool's commands (READ, WRITE, READ
/// CAPACITY, INQUIRY) are idempotent, so reissuing them is safe.
pub fn recovery_policy() -> Recovery {
    Recovery {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(10),
    }
}

/// Runs a command; a non-GOOD status becomes one clear line. A UNIT
/// ATTENTION (SAM-5 5.14: reported once per I_T nexus after a reset or a
/// new login) is retried a few times, as initiators do.
pub fn exec(client: &mut Session, cmd: ScsiCommand, what: &str) -> Result<Completed, String> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let done = client
            .execute(cmd.clone())
            .map_err(|e| format!("{what}: {e}"))?;
        if done.result.is_good() {
            return Ok(done);
        }
        let sense = done.result.sense_data.or_else(|| {
            done.result
                .sense
                .as_ref()
                .and_then(|s| SenseData::parse(s).ok())
        });
        if attempts < 4 && matches!(&sense, Some(s) if s.key == SenseKey::UnitAttention) {
            continue;
        }
        let status = ScsiStatus::from_u8(done.result.status);
        let detail = sense.map(|s| format!(": {s}")).unwrap_or_default();
        return Err(format!("{what} failed: {status}{detail}"));
    }
}

/// READ CAPACITY(10), and READ CAPACITY(16) when the LUN needs it.
pub fn read_capacity(c: &mut Session, lun: u64) -> Result<Capacity, String> {
    let d = exec(
        c,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(lun),
            cdb::read_capacity10().to_vec(),
            8,
        ),
        "READ CAPACITY(10)",
    )?;
    let cap10 = Capacity::parse10(&d.data).map_err(|e| format!("READ CAPACITY(10) data: {e}"))?;
    if !cap10.needs_16() {
        return Ok(cap10);
    }
    let d = exec(
        c,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(lun),
            cdb::read_capacity16(32).to_vec(),
            32,
        ),
        "READ CAPACITY(16)",
    )?;
    Capacity::parse16(&d.data).map_err(|e| format!("READ CAPACITY(16) data: {e}"))
}

/// `iscsi read`: `blocks` blocks from `lba` to `out`, in READ(16)s of up
/// to [`MAX_TRANSFER`] bytes.
pub fn read_blocks(
    c: &mut Session,
    lun: u64,
    lba: u64,
    blocks: u32,
    out: &mut dyn Write,
) -> Result<(), String> {
    let cap = read_capacity(c, lun)?;
    let bs = u64::from(cap.block_len);
    let end = lba
        .checked_add(u64::from(blocks))
        .ok_or("LBA range overflows")?;
    // No check against the capacity here: the target is the judge, and
    // a read past the end comes back as CHECK CONDITION, ILLEGAL
    // REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE, reported decoded.
    // (Writes are checked first, so nothing is written partially.)
    let per = (MAX_TRANSFER / bs.max(1)).max(1);
    let mut at = lba;
    while at < end {
        let n = per.min(end - at) as u32;
        let len = u32::try_from(u64::from(n) * bs).map_err(|_| "transfer too large")?;
        let cdb = cdb::read16(at, n, RwFlags::default());
        let d = exec(
            c,
            ScsiCommand::read(iscsi_proto::scsi::Lun::from_u64(lun), cdb, len),
            "READ(16)",
        )?;
        out.write_all(&d.data)
            .map_err(|e| format!("write output: {e}"))?;
        at += u64::from(n);
    }
    out.flush().map_err(|e| format!("write output: {e}"))
}

/// `iscsi write`: `data` (a whole number of blocks) from `lba`, in
/// WRITE(16)s of up to [`MAX_TRANSFER`] bytes; checked against the
/// capacity first, so nothing is written partially by a bad range.
pub fn write_blocks(c: &mut Session, lun: u64, lba: u64, data: &Bytes) -> Result<(), String> {
    let cap = read_capacity(c, lun)?;
    let bs = u64::from(cap.block_len);
    if bs == 0 || data.len() as u64 % bs != 0 {
        return Err(format!(
            "input is {} bytes, not a multiple of the block size {bs}",
            data.len()
        ));
    }
    let blocks = data.len() as u64 / bs;
    let end = lba.checked_add(blocks).ok_or("LBA range overflows")?;
    if end > cap.num_blocks().unwrap_or(0) {
        return Err(format!(
            "blocks {lba}..{end} are past the end of the LUN ({} blocks)",
            cap.num_blocks().unwrap_or(0)
        ));
    }
    let per = (MAX_TRANSFER / bs).max(1);
    let mut at = lba;
    while at < end {
        let n = per.min(end - at);
        let off = ((at - lba) * bs) as usize;
        let chunk = data.slice(off..off + (n * bs) as usize);
        let cdb = cdb::write16(at, n as u32, RwFlags::default());
        exec(
            c,
            ScsiCommand::write(iscsi_proto::scsi::Lun::from_u64(lun), cdb, chunk),
            "WRITE(16)",
        )?;
        at += n;
    }
    Ok(())
}
