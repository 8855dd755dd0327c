//! The result of executing one SCSI command.

use bytes::Bytes;
use iscsi_proto::scsi::sense::FIXED_SENSE_LEN;
use iscsi_proto::scsi::{ScsiStatus, SenseData};

use crate::util::Fail;

/// Status, sense and Data-In of a completed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiOutcome {
    /// The SCSI status (RFC 7143 section 11.4.2).
    pub status: ScsiStatus,
    /// Sense data, present with CHECK CONDITION.
    pub sense: Option<SenseData>,
    /// Data-In, already cut to the allocation length; empty for commands
    /// without Data-In or that failed. Residuals are the iSCSI layer's job.
    pub data_in: Bytes,
}

impl ScsiOutcome {
    /// GOOD with Data-In.
    pub fn good(data_in: impl Into<Bytes>) -> ScsiOutcome {
        ScsiOutcome {
            status: ScsiStatus::Good,
            sense: None,
            data_in: data_in.into(),
        }
    }

    /// CHECK CONDITION with the given sense.
    pub fn check(sense: SenseData) -> ScsiOutcome {
        ScsiOutcome {
            status: ScsiStatus::CheckCondition,
            sense: Some(sense),
            data_in: Bytes::new(),
        }
    }

    /// RESERVATION CONFLICT.
    pub fn conflict() -> ScsiOutcome {
        ScsiOutcome {
            status: ScsiStatus::ReservationConflict,
            sense: None,
            data_in: Bytes::new(),
        }
    }

    pub(crate) fn from_result(r: Result<Vec<u8>, Fail>) -> ScsiOutcome {
        match r {
            Ok(v) => ScsiOutcome::good(v),
            Err(Fail::Check(s)) => ScsiOutcome::check(s),
            Err(Fail::Conflict) => ScsiOutcome::conflict(),
        }
    }

    /// The sense in fixed format (SPC-4 4.5.3), 18 bytes.
    pub fn sense_bytes(&self) -> Option<[u8; FIXED_SENSE_LEN]> {
        self.sense.map(|s| s.to_fixed())
    }

    /// The SCSI Response data segment: 2-byte SenseLength + sense data
    /// (RFC 7143 section 11.4.7.2), or empty when there is no sense.
    pub fn response_segment(&self) -> Vec<u8> {
        self.sense
            .map(|s| s.to_iscsi_segment().to_vec())
            .unwrap_or_default()
    }
}

/// Direction of the data transfer a CDB implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataDirection {
    /// No data.
    None,
    /// Target to initiator (Data-In, READ bit in the SCSI Command PDU).
    In,
    /// Initiator to target (Data-Out, WRITE bit).
    Out,
}

/// The transfer a CDB implies: direction and length in bytes (for Data-In
/// the allocation or transfer length; the command may return less).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transfer {
    /// Direction.
    pub direction: DataDirection,
    /// Length in bytes.
    pub length: u64,
}

impl Transfer {
    /// No data transfer.
    pub const NONE: Transfer = Transfer {
        direction: DataDirection::None,
        length: 0,
    };

    pub(crate) fn data_in(length: u64) -> Transfer {
        if length == 0 {
            Transfer::NONE
        } else {
            Transfer {
                direction: DataDirection::In,
                length,
            }
        }
    }

    pub(crate) fn data_out(length: u64) -> Transfer {
        if length == 0 {
            Transfer::NONE
        } else {
            Transfer {
                direction: DataDirection::Out,
                length,
            }
        }
    }
}
