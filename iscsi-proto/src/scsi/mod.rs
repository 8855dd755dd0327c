//! SCSI helpers for the initiator and the target: LUN (logical unit number)
//! encoding, status codes, sense data and CDB (Command Descriptor Block)
//! builders/parsers (SAM-5, SPC-4, SBC-3).
//!
//! Pure functions over byte slices: nothing here does I/O, and no input
//! makes these functions panic or allocate more than the input's size.

pub mod cdb;
pub mod helpers;
pub mod lun;
pub mod sense;
pub mod status;

pub use cdb::{Capacity, ReportLuns, RwFlags, StandardInquiry};
pub use lun::Lun;
pub use sense::{SenseData, SenseFormat, SenseKey};
pub use status::ScsiStatus;

/// An error decoding SCSI data (sense data, INQUIRY, READ CAPACITY,
/// REPORT LUNS). Each variant names the standard section it checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScsiError {
    /// The data is shorter than the structure it must hold.
    #[error("{what} truncated: need {need} bytes, got {got} ({section})")]
    Truncated {
        /// What was being parsed.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        got: usize,
        /// The section of the standard (SPC-4, SBC-3 or RFC 7143).
        section: &'static str,
    },
    /// The sense data response code is not 0x70..=0x73.
    #[error("sense data has unsupported response code {0:#04x} (SPC-4 4.5.1, RFC 7143 11.4.7.2)")]
    UnknownSenseFormat(u8),
    /// A field holds a value the standard forbids.
    #[error("{what} malformed: {detail} ({section})")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong.
        detail: &'static str,
        /// The section of the standard.
        section: &'static str,
    },
}
