//! The block helpers every driver offers (`read`, `write`,
//! `read_capacity`, `execute_good`), written once over the driver's own
//! `execute`: the SCSI decisions live in [`crate::scsi::helpers`].

use bytes::Bytes;

use super::Error;
use crate::error::UsageError;
use crate::initiator::{Completed, ScsiCommand};
use crate::scsi::cdb::{read16, write16, Capacity, RwFlags};
use crate::scsi::helpers::{is_unit_attention, CapacityProbe, Probe, UA_RETRIES};
use crate::scsi::Lun;

/// READ(16) of `blocks` blocks of `block_len` bytes at `lba`.
pub fn read_command(lun: Lun, lba: u64, blocks: u32, block_len: u32) -> ScsiCommand {
    let len = blocks.saturating_mul(block_len);
    ScsiCommand::read(lun, read16(lba, blocks, RwFlags::default()), len)
}

/// WRITE(16) of `data` (whole `block_len` blocks) at `lba`.
pub fn write_command(
    lun: Lun,
    lba: u64,
    data: Bytes,
    block_len: u32,
) -> Result<ScsiCommand, Error> {
    let blocks = u32::try_from(data.len() / block_len.max(1) as usize)
        .map_err(|_| Error::Usage(UsageError::InvalidCommand("write too long")))?;
    Ok(ScsiCommand::write(
        lun,
        write16(lba, blocks, RwFlags::default()),
        data,
    ))
}

/// Runs `cmd` with `execute` and requires GOOD status, sending it again
/// once after a UNIT ATTENTION ([`UA_RETRIES`]; SAM-5 5.14.1: the command
/// was not performed).
pub fn execute_good(
    mut execute: impl FnMut(ScsiCommand) -> Result<Completed, Error>,
    cmd: ScsiCommand,
) -> Result<Completed, Error> {
    let mut retries = UA_RETRIES;
    loop {
        let done = execute(cmd.clone())?;
        if retries > 0 && is_unit_attention(&done.result) {
            retries -= 1;
            continue;
        }
        return super::reply::good(done);
    }
}

/// The capacity and block size of `lun` ([`CapacityProbe`]: READ
/// CAPACITY (16), or (10) where (16) is not supported).
pub fn read_capacity(
    mut execute: impl FnMut(ScsiCommand) -> Result<Completed, Error>,
    lun: Lun,
) -> Result<Capacity, Error> {
    let (mut probe, mut cmd) = CapacityProbe::start(lun);
    loop {
        let done = execute(cmd)?;
        match probe.next(done.result, &done.data) {
            Probe::Send(next) => cmd = next,
            Probe::Done(c) => return Ok(c),
            Probe::Failed(e) => return Err(e.into()),
        }
    }
}
