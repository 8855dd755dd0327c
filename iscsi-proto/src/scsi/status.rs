//! SCSI status codes (SAM-5 section 5.3.1), carried in the Status byte of
//! the SCSI Response PDU (RFC 7143 section 11.4.2).

use core::fmt;

/// A SCSI status byte.
///
/// RFC 7143 section 11.4.2: "The Status field is used to report the SCSI
/// status of the command (as specified in SAM2) and is only valid if the
/// Response Code is Command Completed at Target." Unknown codes are kept in
/// [`ScsiStatus::Other`] and round-trip unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScsiStatus {
    /// 0x00 GOOD.
    Good,
    /// 0x02 CHECK CONDITION: sense data accompanies the response.
    CheckCondition,
    /// 0x04 CONDITION MET.
    ConditionMet,
    /// 0x08 BUSY.
    Busy,
    /// 0x18 RESERVATION CONFLICT.
    ReservationConflict,
    /// 0x28 TASK SET FULL.
    TaskSetFull,
    /// 0x30 ACA ACTIVE.
    AcaActive,
    /// 0x40 TASK ABORTED.
    TaskAborted,
    /// Any other (obsolete or reserved) code.
    Other(u8),
}

impl ScsiStatus {
    /// Decodes a status byte.
    pub const fn from_u8(b: u8) -> ScsiStatus {
        match b {
            0x00 => ScsiStatus::Good,
            0x02 => ScsiStatus::CheckCondition,
            0x04 => ScsiStatus::ConditionMet,
            0x08 => ScsiStatus::Busy,
            0x18 => ScsiStatus::ReservationConflict,
            0x28 => ScsiStatus::TaskSetFull,
            0x30 => ScsiStatus::AcaActive,
            0x40 => ScsiStatus::TaskAborted,
            other => ScsiStatus::Other(other),
        }
    }

    /// Encodes the status byte.
    pub const fn to_u8(self) -> u8 {
        match self {
            ScsiStatus::Good => 0x00,
            ScsiStatus::CheckCondition => 0x02,
            ScsiStatus::ConditionMet => 0x04,
            ScsiStatus::Busy => 0x08,
            ScsiStatus::ReservationConflict => 0x18,
            ScsiStatus::TaskSetFull => 0x28,
            ScsiStatus::AcaActive => 0x30,
            ScsiStatus::TaskAborted => 0x40,
            ScsiStatus::Other(b) => b,
        }
    }

    /// True for GOOD and CONDITION MET (the command succeeded).
    pub const fn is_success(self) -> bool {
        matches!(self, ScsiStatus::Good | ScsiStatus::ConditionMet)
    }

    /// The SAM name of the status, e.g. `"CHECK CONDITION"`.
    pub const fn name(self) -> &'static str {
        match self {
            ScsiStatus::Good => "GOOD",
            ScsiStatus::CheckCondition => "CHECK CONDITION",
            ScsiStatus::ConditionMet => "CONDITION MET",
            ScsiStatus::Busy => "BUSY",
            ScsiStatus::ReservationConflict => "RESERVATION CONFLICT",
            ScsiStatus::TaskSetFull => "TASK SET FULL",
            ScsiStatus::AcaActive => "ACA ACTIVE",
            ScsiStatus::TaskAborted => "TASK ABORTED",
            ScsiStatus::Other(_) => "UNKNOWN STATUS",
        }
    }
}

impl From<u8> for ScsiStatus {
    fn from(b: u8) -> Self {
        ScsiStatus::from_u8(b)
    }
}

impl From<ScsiStatus> for u8 {
    fn from(s: ScsiStatus) -> u8 {
        s.to_u8()
    }
}

impl fmt::Display for ScsiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScsiStatus::Other(b) => write!(f, "UNKNOWN STATUS ({b:#04x})"),
            s => f.write_str(s.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn roundtrip_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(ScsiStatus::from_u8(b).to_u8(), b);
        }
    }

    #[test]
    fn known_codes() {
        assert_eq!(ScsiStatus::from_u8(0x02), ScsiStatus::CheckCondition);
        assert_eq!(ScsiStatus::from_u8(0x18), ScsiStatus::ReservationConflict);
        assert_eq!(ScsiStatus::from_u8(0x40), ScsiStatus::TaskAborted);
        assert_eq!(ScsiStatus::from_u8(0x22), ScsiStatus::Other(0x22));
        assert!(ScsiStatus::Good.is_success());
        assert!(!ScsiStatus::Busy.is_success());
        assert_eq!(ScsiStatus::TaskSetFull.to_string(), "TASK SET FULL");
        assert_eq!(ScsiStatus::Other(0x22).to_string(), "UNKNOWN STATUS (0x22)");
    }
}
