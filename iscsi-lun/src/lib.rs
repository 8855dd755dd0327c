//! SCSI block-device emulation (SBC-3 / SPC-4) for the embedded iSCSI
//! target.
//!
//! A [`LogicalUnit`] wraps a [`BlockDevice`] ([`RamDisk`], [`FileDisk`] or
//! your own) and executes CDBs: [`LogicalUnit::execute`] takes the CDB, the
//! Data-Out bytes and the I_T nexus the command came on, and returns a
//! [`ScsiOutcome`] (status, sense, Data-In). It does no network I/O and
//! knows nothing about iSCSI PDUs: the target session turns the outcome
//! into Data-In / SCSI Response PDUs (RFC 7143 sections 11.4, 11.7) and
//! computes residuals by comparing [`ScsiOutcome::data_in`] and
//! [`LogicalUnit::expected_transfer`] with the Expected Data Transfer
//! Length (RFC 7143 section 11.4.5).
//!
//! ```
//! use iscsi_lun::{LogicalUnit, LuConfig, NexusId, RamDisk};
//! use iscsi_proto::scsi::{cdb, ScsiStatus};
//!
//! let disk = RamDisk::new(64 << 20, 512).unwrap();
//! let mut lu = LogicalUnit::new(disk, LuConfig::default());
//! let nexus = NexusId(1);
//! let out = lu.execute(nexus, &cdb::write10(0, 1, Default::default()), &[0xab; 512]);
//! assert_eq!(out.status, ScsiStatus::Good);
//! let out = lu.execute(nexus, &cdb::read10(0, 1, Default::default()), &[]);
//! assert_eq!(&out.data_in[..], &[0xab; 512][..]);
//! ```
//!
//! [`Target`] (module [`serve`]) puts logical units behind an
//! [`iscsi_proto::target::Portal`]: it runs the portal's commands on them
//! and applies its I_T nexus events (TransportIDs, unit attentions after a
//! reset, nexus loss). A driver only moves its bytes (`iscsi_mio::server`).
//!
//! Every handler is bounded: Data-In never exceeds the MAXIMUM TRANSFER
//! LENGTH advertised in the Block Limits VPD page (or the allocation
//! length), and no CDB or Data-Out content can make `execute` panic.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

mod device;
mod logical_unit;
mod outcome;
mod persistent_reservation;
mod sbc;
pub mod serve;
mod spc;
mod util;

pub use device::{BlockDevice, DeviceError, FileDisk, RamDisk};
pub use logical_unit::{execute_no_lun, report_luns, LogicalUnit, LuConfig};
pub use outcome::{DataDirection, ScsiOutcome, Transfer};
pub use persistent_reservation::{pr_type, TransportId, MAX_REGISTRATIONS};
pub use serve::{run_command, LunSpec, Target, TargetConfig, TargetError};

/// Identifies an I_T nexus (initiator port + target port) to the logical
/// unit: persistent reservations and unit attentions are kept per nexus.
/// The target's [`iscsi_proto::target::Portal`] derives one per initiator
/// port (InitiatorName + ISID, RFC 7143 section 4.4.1).
pub use iscsi_proto::target::NexusId;
