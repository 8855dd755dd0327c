//! High-level representations (`Repr`s) of the 18 PDU (Protocol Data Unit)
//! kinds of RFC 7143 section 11, their field enums, and the [`Header`] sum
//! type.
//!
//! Each `Repr` has `parse(&Bhs<T>) -> Result<Self, WireError>` and
//! `emit(&self, &mut Bhs<T>)`. `emit` writes every byte of the BHS except
//! TotalAHSLength and DataSegmentLength (bytes 4-7, the framing fields),
//! which it leaves untouched: the PDU encoder
//! ([`encode_header`](super::frame::encode_header)) writes them. Reserved
//! fields are emitted as 0 and ignored by `parse` (RFC 7143 section 11.2.1:
//! reserved fields "MUST be 0" when sent and are ignored on receipt).
//!
//! Parsing neither allocates nor copies anything but the fixed-size fields.
//!
//! The source has one file per PDU family; every item is re-exported here:
//!
//! - `scsi.rs`: SCSI Command and SCSI Response, [`Residual`], [`split_sense`].
//! - `data.rs`: SCSI Data-Out, SCSI Data-In and R2T (Ready To Transfer).
//! - `task_management.rs`: Task Management Function (TMF) Request and Response.
//! - `login_text.rs`: Login and Text Request/Response, [`Stage`], [`Isid`].
//! - `control.rs`: NOP-Out/NOP-In, Logout, SNACK, Asynchronous Message, Reject.
//! - `header.rs`: [`Header`], any of the above parsed by its opcode.

use super::bhs::Bhs;
use super::error::WireError;

/// Rejects a PDU that carries an AHS or a data segment where its section of
/// RFC 7143 says "TotalAHSLength and DataSegmentLength MUST be 0".
fn no_segments<T: AsRef<[u8]>>(
    bhs: &Bhs<T>,
    pdu: &'static str,
    section: &'static str,
) -> Result<(), WireError> {
    if bhs.total_ahs_len() != 0 || bhs.data_segment_len() != 0 {
        return Err(WireError::UnexpectedSegment { pdu, section });
    }
    Ok(())
}

mod control;
mod data;
mod header;
mod login_text;
mod scsi;
mod task_management;

pub use super::error::RejectReason;
pub use control::{
    AsyncEvent, AsyncMessage, LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode,
    NopIn, NopOut, Reject, SnackRequest, SnackType,
};
pub use data::{DataIn, DataInStatus, DataOut, R2t};
pub use header::Header;
pub use login_text::{
    Isid, IsidType, LoginRequest, LoginResponse, Stage, TextRequest, TextResponse,
};
pub use scsi::{
    split_sense, split_sense_slice, Residual, ScsiCommand, ScsiResponse, ScsiResponseCode,
    SenseAndResponse, TaskAttr,
};
pub use task_management::{TaskMgmtRequest, TaskMgmtResponse, TmfFunction, TmfResponse};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_enums_roundtrip_every_byte() {
        for v in 0..=255u8 {
            assert_eq!(TmfFunction::from_u8(v).to_u8(), v);
            assert_eq!(RejectReason::from_u8(v).to_u8(), v);
            assert_eq!(AsyncEvent::from_u8(v).to_u8(), v);
            assert_eq!(ScsiResponseCode::from_u8(v).to_u8(), v);
        }
        assert_eq!(TmfFunction::from_u8(8), TmfFunction::TaskReassign);
        assert_eq!(TmfFunction::from_u8(9), TmfFunction::Other(9));
        assert_eq!(TaskAttr::from_u8(5), TaskAttr::Other(5));
    }
}
