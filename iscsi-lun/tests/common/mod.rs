//! Shared helpers for the iscsi-lun integration tests.
#![allow(dead_code)]

use iscsi_lun::{LogicalUnit, LuConfig, NexusId, RamDisk, ScsiOutcome};
use iscsi_proto::scsi::{ScsiStatus, SenseData, SenseKey};

/// Block size of the test disks.
pub const BS: usize = 512;
/// Blocks of the test disks (1 MiB).
pub const NB: u64 = 2048;
/// The default nexus.
pub const I1: NexusId = NexusId(1);
/// A second nexus.
pub const I2: NexusId = NexusId(2);
/// A third nexus.
pub const I3: NexusId = NexusId(3);

pub fn lu() -> LogicalUnit {
    lu_with(LuConfig::default())
}

pub fn lu_with(cfg: LuConfig) -> LogicalUnit {
    LogicalUnit::new(RamDisk::new(NB * BS as u64, BS as u32).unwrap(), cfg)
}

#[track_caller]
pub fn good(o: &ScsiOutcome) {
    assert_eq!(
        o.status,
        ScsiStatus::Good,
        "sense: {:?}",
        o.sense.map(|s| s.to_string())
    );
    assert!(o.sense.is_none());
}

#[track_caller]
pub fn sense(o: &ScsiOutcome, key: SenseKey, code: (u8, u8)) -> SenseData {
    assert_eq!(o.status, ScsiStatus::CheckCondition);
    let s = o.sense.expect("CHECK CONDITION without sense");
    assert!(s.is(key, code), "got {s}, want {key} {code:02x?}");
    // The bytes on the wire decode to the same thing.
    assert_eq!(SenseData::parse(&o.sense_bytes().unwrap()).unwrap(), s);
    assert!(o.data_in.is_empty());
    s
}

#[track_caller]
pub fn conflict(o: &ScsiOutcome) {
    assert_eq!(o.status, ScsiStatus::ReservationConflict);
    assert!(o.sense.is_none());
}

pub fn cdb10(op: u8, b1: u8, lba: u32, n: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let k = n.to_be_bytes();
    [op, b1, l[0], l[1], l[2], l[3], 0, k[0], k[1], 0]
}

pub fn cdb12(op: u8, b1: u8, lba: u32, n: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = op;
    c[1] = b1;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[6..10].copy_from_slice(&n.to_be_bytes());
    c
}

pub fn cdb16(op: u8, b1: u8, lba: u64, n: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = b1;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&n.to_be_bytes());
    c
}

pub fn pattern(blocks: usize, seed: u8) -> Vec<u8> {
    (0..blocks * BS)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}
