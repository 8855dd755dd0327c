//! What the drivers' convenience calls (`read`, `write`, `read_capacity`)
//! decide, in one place, so no driver holds SCSI logic: when to retry a
//! UNIT ATTENTION, and how to read a logical unit's capacity.
//!
//! **UNIT ATTENTION.** A target reports a unit attention condition once
//! per I_T nexus after a power on, a reset or a new login (SAM-5 5.14:
//! tgtd and LIO answer the first command of every session with CHECK
//! CONDITION, sense key UNIT ATTENTION, "power on, reset, or bus device
//! reset occurred"). SAM-5 5.14.1: a command that reports the condition is
//! not performed (but INQUIRY, REPORT LUNS and REQUEST SENSE), so sending
//! it again once is safe: [`UA_RETRIES`]. `execute` returns every status
//! as it came; the helpers retry.
//!
//! **Capacity.** [`CapacityProbe`] sends READ CAPACITY (16) (SBC-3 5.16)
//! and falls back to READ CAPACITY (10) (SBC-3 5.15) when the device
//! server rejects it as ILLEGAL REQUEST (an SBC-2 device need not support
//! it).

use crate::initiator::{ScsiCommand, ScsiResult};
use crate::scsi::cdb::{read_capacity10, read_capacity16, Capacity};
use crate::scsi::sense::{SenseData, SenseKey};
use crate::scsi::{Lun, ScsiError};

/// How many times the helpers send a command again after a UNIT
/// ATTENTION (one: the condition is reported once per I_T nexus).
pub const UA_RETRIES: usize = 1;

/// The parameter data READ CAPACITY (16) asks for (SBC-3 5.16.2: 32 bytes).
const RC16_LEN: u32 = 32;

/// The sense data of a CHECK CONDITION, parsed from the result.
fn sense(r: &ScsiResult) -> Option<SenseData> {
    r.sense_data
        .or_else(|| r.sense.as_ref().and_then(|s| SenseData::parse(s).ok()))
}

/// Whether `r` is a CHECK CONDITION with sense key UNIT ATTENTION (the
/// command was not performed: SAM-5 5.14.1).
pub fn is_unit_attention(r: &ScsiResult) -> bool {
    !r.is_good() && sense(r).is_some_and(|s| s.key == SenseKey::UnitAttention)
}

/// Why [`CapacityProbe`] failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CapacityError {
    /// READ CAPACITY ended without GOOD status (and no fallback is left).
    Status(ScsiResult),
    /// The parameter data was malformed.
    Parse(ScsiError),
}

/// What to do next when reading a capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Run this command and pass its result to [`CapacityProbe::next`].
    Send(ScsiCommand),
    /// The capacity and block size.
    Done(Capacity),
    /// The capacity could not be read.
    Failed(CapacityError),
}

/// Reads a logical unit's capacity: READ CAPACITY (16), then (10) if
/// (16) is rejected; a UNIT ATTENTION is retried ([`UA_RETRIES`]).
///
/// ```
/// use iscsi_proto::scsi::helpers::{CapacityProbe, Probe};
/// use iscsi_proto::scsi::Lun;
///
/// let (mut probe, first) = CapacityProbe::start(Lun::from_number(1));
/// assert_eq!(first.cdb[0], 0x9e); // SERVICE ACTION IN (16)
/// // let mut next = Probe::Send(first);
/// // loop { match next {
/// //     Probe::Send(cmd) => { let done = driver.execute(cmd)?;
/// //                           next = probe.next(done.result, &done.data); }
/// //     Probe::Done(cap) => break cap,
/// //     Probe::Failed(e) => return Err(e),
/// // } }
/// # let _ = &mut probe;
/// ```
#[derive(Debug, Clone)]
pub struct CapacityProbe {
    lun: Lun,
    sixteen: bool,
    ua_left: usize,
}

impl CapacityProbe {
    /// The probe and its first command (READ CAPACITY (16)).
    pub fn start(lun: Lun) -> (CapacityProbe, ScsiCommand) {
        let p = CapacityProbe {
            lun,
            sixteen: true,
            ua_left: UA_RETRIES,
        };
        let cmd = p.command();
        (p, cmd)
    }

    fn command(&self) -> ScsiCommand {
        if self.sixteen {
            ScsiCommand::read(self.lun, read_capacity16(RC16_LEN), RC16_LEN)
        } else {
            ScsiCommand::read(self.lun, read_capacity10(), 8)
        }
    }

    /// The result of the last command sent, and its read data.
    pub fn next(&mut self, result: ScsiResult, data: &[u8]) -> Probe {
        if result.is_good() {
            let parsed = if self.sixteen {
                Capacity::parse16(data)
            } else {
                Capacity::parse10(data)
            };
            return match parsed {
                Ok(c) => Probe::Done(c),
                Err(e) => Probe::Failed(CapacityError::Parse(e)),
            };
        }
        if is_unit_attention(&result) && self.ua_left > 0 {
            self.ua_left -= 1;
            return Probe::Send(self.command());
        }
        // SBC-3 5.16: a device server without READ CAPACITY (16) answers
        // ILLEGAL REQUEST (invalid command operation code).
        let illegal = sense(&result).is_some_and(|s| s.key == SenseKey::IllegalRequest);
        if self.sixteen && illegal {
            self.sixteen = false;
            return Probe::Send(self.command());
        }
        Probe::Failed(CapacityError::Status(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::asc;
    use crate::wire::pdu::{Residual, ScsiResponseCode};
    use bytes::Bytes;

    fn result(status: u8, sense: Option<SenseData>) -> ScsiResult {
        ScsiResult {
            response: ScsiResponseCode::CommandCompleted,
            status,
            sense: None,
            sense_data: sense,
            residual: Residual::None,
            bidi_read_residual: Residual::None,
            bytes_read: 0,
        }
    }

    fn check(key: SenseKey, code: (u8, u8)) -> ScsiResult {
        result(0x02, Some(SenseData::with_code(key, code)))
    }

    fn good() -> ScsiResult {
        result(0, None)
    }

    /// SAM-5 5.14.1: the command that reports a unit attention is not
    /// performed, so it is sent again; the condition is reported once per
    /// I_T nexus, so a second one fails.
    #[test]
    fn a_unit_attention_is_retried_once_then_fails() {
        let ua = || check(SenseKey::UnitAttention, asc::POWER_ON_RESET);
        assert!(is_unit_attention(&ua()));
        assert!(!is_unit_attention(&good()));
        let (mut p, first) = CapacityProbe::start(Lun::from_number(1));
        assert_eq!(first.lun, Lun::from_number(1));
        assert_eq!(p.next(ua(), &[]), Probe::Send(first));
        assert!(matches!(
            p.next(ua(), &[]),
            Probe::Failed(CapacityError::Status(_))
        ));
    }

    /// SBC-3 5.16: without READ CAPACITY (16) the device server answers
    /// ILLEGAL REQUEST; the probe falls back to READ CAPACITY (10) and
    /// parses its 8 bytes.
    #[test]
    fn read_capacity_16_falls_back_to_10() {
        let (mut p, first) = CapacityProbe::start(Lun::ZERO);
        assert_eq!(&first.cdb[..2], &[0x9e, 0x10]);
        assert_eq!(first.expected_read_len, 32);
        let Probe::Send(ten) = p.next(check(SenseKey::IllegalRequest, asc::INVALID_OPCODE), &[])
        else {
            panic!("no fallback");
        };
        assert_eq!(ten.cdb[0], 0x25);
        let data = Bytes::from_static(&[0, 0, 0x0f, 0xff, 0, 0, 2, 0]);
        let Probe::Done(c) = p.next(good(), &data) else {
            panic!("not done");
        };
        assert_eq!((c.last_lba, c.block_len), (0xfff, 512));
        // Any other failure of (10) ends the probe.
        let (mut p, _) = CapacityProbe::start(Lun::ZERO);
        let _ = p.next(check(SenseKey::IllegalRequest, asc::INVALID_OPCODE), &[]);
        let r = p.next(check(SenseKey::IllegalRequest, asc::INVALID_OPCODE), &[]);
        assert!(matches!(r, Probe::Failed(CapacityError::Status(_))));
    }

    #[test]
    fn read_capacity_16_answer_is_parsed() {
        let (mut p, _) = CapacityProbe::start(Lun::ZERO);
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&0x1_0000_0000u64.to_be_bytes());
        d[8..12].copy_from_slice(&4096u32.to_be_bytes());
        let Probe::Done(c) = p.next(good(), &d) else {
            panic!("not done");
        };
        assert_eq!((c.last_lba, c.block_len), (0x1_0000_0000, 4096));
        let (mut p, _) = CapacityProbe::start(Lun::ZERO);
        assert!(matches!(
            p.next(good(), &d[..4]),
            Probe::Failed(CapacityError::Parse(_))
        ));
    }
}
