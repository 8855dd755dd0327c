//! SBC-3 command tests: READ/WRITE families, VERIFY, WRITE SAME, UNMAP,
//! COMPARE AND WRITE, capacity, caching, provisioning.

mod common;

use common::*;
use iscsi_lun::{DataDirection, FileDisk, LogicalUnit, LuConfig, Transfer};
use iscsi_proto::scsi::cdb::{self, opcode as op, Capacity, RwFlags};
use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::SenseKey;

#[test]
fn write10_read10_roundtrip() {
    let mut l = lu();
    let data = pattern(4, 1);
    good(&l.execute(I1, &cdb::write10(10, 4, RwFlags::default()), &data));
    let o = l.execute(I1, &cdb::read10(10, 4, RwFlags::default()), &[]);
    good(&o);
    assert_eq!(&o.data_in[..], &data[..]);
    // Neighbours untouched.
    let o = l.execute(I1, &cdb::read10(9, 1, RwFlags::default()), &[]);
    assert_eq!(&o.data_in[..], &[0u8; BS][..]);
}

#[test]
fn rw_12_and_16_and_flags() {
    let mut l = lu();
    let data = pattern(3, 9);
    let fua = RwFlags {
        dpo: true,
        fua: true,
    };
    good(&l.execute(I1, &cdb::write16(NB - 3, 3, fua), &data));
    let o = l.execute(I1, &cdb::read16(NB - 3, 3, fua), &[]);
    assert_eq!(&o.data_in[..], &data[..]);
    good(&l.execute(I1, &cdb12(op::WRITE_12, 0x18, 100, 3), &data));
    let o = l.execute(I1, &cdb12(op::READ_12, 0x18, 100, 3), &[]);
    good(&o);
    assert_eq!(&o.data_in[..], &data[..]);
}

#[test]
fn rw6_zero_length_means_256_blocks() {
    let mut l = lu();
    let data = pattern(256, 3);
    // SBC-3 5.31: WRITE (6) transfer length 0 = 256 blocks.
    good(&l.execute(I1, &[op::WRITE_6, 0, 0, 5, 0, 0], &data));
    let o = l.execute(I1, &[op::READ_6, 0, 0, 5, 0, 0], &[]);
    good(&o);
    assert_eq!(o.data_in.len(), 256 * BS);
    assert_eq!(&o.data_in[..], &data[..]);
    // 21-bit LBA: the top 3 bits of byte 1 are ignored.
    let o = l.execute(I1, &[op::READ_6, 0xe0, 0, 5, 1, 0], &[]);
    good(&o);
    assert_eq!(&o.data_in[..], &data[..BS]);
}

#[test]
fn zero_blocks_and_beyond_end() {
    let mut l = lu();
    let o = l.execute(I1, &cdb::read10(0, 0, RwFlags::default()), &[]);
    good(&o);
    assert!(o.data_in.is_empty());
    good(&l.execute(I1, &cdb::write10(0, 0, RwFlags::default()), &[]));
    // libiscsi read10_0blocks: zero blocks one past the end, at 2^31, at -1.
    for lba in [NB as u32 + 1, 0x8000_0000, u32::MAX] {
        sense(
            &l.execute(I1, &cdb::read10(lba, 0, RwFlags::default()), &[]),
            SenseKey::IllegalRequest,
            asc::LBA_OUT_OF_RANGE,
        );
    }
    // Last block ok, one more out of range.
    good(&l.execute(I1, &cdb::read10(NB as u32 - 1, 1, RwFlags::default()), &[]));
    sense(
        &l.execute(I1, &cdb::read10(NB as u32 - 1, 2, RwFlags::default()), &[]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    sense(
        &l.execute(I1, &cdb::read16(u64::MAX, 1, RwFlags::default()), &[]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    sense(
        &l.execute(I1, &cdb::write16(NB, 1, RwFlags::default()), &[0; BS]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    sense(
        &l.execute(I1, &cdb12(op::WRITE_12, 0, NB as u32 - 1, 2), &[0; 2 * BS]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    sense(
        &l.execute(I1, &[op::READ_6, 0, 0x08, 0x00, 1, 0], &[]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
}

#[test]
fn protect_fields_and_limits() {
    let mut l = lu();
    for p in 1..8u8 {
        sense(
            &l.execute(I1, &cdb10(op::READ_10, p << 5, 0, 1), &[]),
            SenseKey::IllegalRequest,
            asc::INVALID_FIELD_IN_CDB,
        );
        sense(
            &l.execute(I1, &cdb16(op::WRITE_16, p << 5, 0, 1), &[0; BS]),
            SenseKey::IllegalRequest,
            asc::INVALID_FIELD_IN_CDB,
        );
    }
    // Above MAXIMUM TRANSFER LENGTH.
    let cfg = LuConfig {
        max_transfer_blocks: 8,
        ..LuConfig::default()
    };
    let mut l = lu_with(cfg);
    good(&l.execute(I1, &cdb::read10(0, 8, RwFlags::default()), &[]));
    let s = sense(
        &l.execute(I1, &cdb::read10(0, 9, RwFlags::default()), &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    assert_eq!(s.sense_key_specific, Some([0xc0, 0, 7]));
    // Data-Out shorter than the CDB needs.
    sense(
        &l.execute(I1, &cdb::write10(0, 2, RwFlags::default()), &[0; BS]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
}

#[test]
fn read_only_lun() {
    let mut l = lu_with(LuConfig {
        read_only: true,
        ..LuConfig::default()
    });
    for c in [
        cdb::write10(0, 1, RwFlags::default()).to_vec(),
        cdb10(op::WRITE_VERIFY_10, 0, 0, 1).to_vec(),
        cdb10(op::WRITE_SAME_10, 0, 0, 1).to_vec(),
    ] {
        sense(
            &l.execute(I1, &c, &[1; BS]),
            SenseKey::DataProtect,
            asc::WRITE_PROTECTED,
        );
    }
    let mut cw = [0u8; 16];
    cw[0] = op::COMPARE_AND_WRITE;
    cw[13] = 1;
    sense(
        &l.execute(I1, &cw, &[0; 2 * BS]),
        SenseKey::DataProtect,
        asc::WRITE_PROTECTED,
    );
    good(&l.execute(I1, &cdb::read10(0, 1, RwFlags::default()), &[]));
    // MODE SENSE reports WP.
    let o = l.execute(
        I1,
        &cdb::mode_sense6(true, cdb::PageControl::Current, 0x3f, 0, 255),
        &[],
    );
    assert_eq!(o.data_in[2] & 0x80, 0x80);
}

#[test]
fn verify_bytchk() {
    let mut l = lu();
    let data = pattern(4, 5);
    good(&l.execute(I1, &cdb::write10(20, 4, RwFlags::default()), &data));
    // BYTCHK 0: medium verification only.
    good(&l.execute(I1, &cdb10(op::VERIFY_10, 0, 20, 4), &[]));
    // BYTCHK 1 matching.
    good(&l.execute(I1, &cdb10(op::VERIFY_10, 0x02, 20, 4), &data));
    good(&l.execute(I1, &cdb12(op::VERIFY_12, 0x02, 20, 4), &data));
    good(&l.execute(I1, &cdb16(op::VERIFY_16, 0x02, 20, 4), &data));
    // Mismatch in the last block, byte 27 from the end.
    let mut bad = data.clone();
    let off = bad.len() - 27;
    bad[off] ^= 0xff;
    let s = sense(
        &l.execute(I1, &cdb10(op::VERIFY_10, 0x02, 20, 4), &bad),
        SenseKey::Miscompare,
        asc::MISCOMPARE_DURING_VERIFY,
    );
    assert_eq!(s.information, Some(off as u64));
    // BYTCHK 11b: one block compared with each.
    good(&l.execute(
        I1,
        &cdb::write10(30, 3, RwFlags::default()),
        &[0x5a; 3 * BS],
    ));
    good(&l.execute(I1, &cdb10(op::VERIFY_10, 0x06, 30, 3), &[0x5a; BS]));
    let s = sense(
        &l.execute(I1, &cdb10(op::VERIFY_10, 0x06, 29, 3), &[0x5a; BS]),
        SenseKey::Miscompare,
        asc::MISCOMPARE_DURING_VERIFY,
    );
    assert_eq!(s.information, Some(0));
    // BYTCHK 10b reserved, VRPROTECT, beyond end.
    sense(
        &l.execute(I1, &cdb10(op::VERIFY_10, 0x04, 0, 1), &[0; BS]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &l.execute(I1, &cdb10(op::VERIFY_10, 0x20, 0, 1), &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &l.execute(I1, &cdb16(op::VERIFY_16, 0, NB, 1), &[]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    sense(
        &l.execute(
            I1,
            &cdb12(op::VERIFY_12, 0x02, NB as u32 - 1, 2),
            &[0; 2 * BS],
        ),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
}

#[test]
fn write_and_verify() {
    let mut l = lu();
    let data = pattern(2, 11);
    good(&l.execute(I1, &cdb10(op::WRITE_VERIFY_10, 0x02, 7, 2), &data));
    good(&l.execute(I1, &cdb12(op::WRITE_VERIFY_12, 0, 9, 2), &data));
    good(&l.execute(I1, &cdb16(op::WRITE_VERIFY_16, 0x12, 11, 2), &data));
    let o = l.execute(I1, &cdb::read10(7, 6, RwFlags::default()), &[]);
    assert_eq!(&o.data_in[..2 * BS], &data[..]);
    assert_eq!(&o.data_in[4 * BS..], &data[..]);
    sense(
        &l.execute(I1, &cdb16(op::WRITE_VERIFY_16, 0, NB - 1, 2), &[0; 2 * BS]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    sense(
        &l.execute(I1, &cdb10(op::WRITE_VERIFY_10, 0x40, 0, 1), &[0; BS]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
}

#[test]
fn sync_cache_and_prefetch() {
    let mut l = lu();
    good(&l.execute(I1, &cdb::synchronize_cache10(0, 0), &[]));
    good(&l.execute(I1, &cdb16(op::SYNCHRONIZE_CACHE_16, 0x02, NB - 1, 1), &[]));
    sense(
        &l.execute(I1, &cdb16(op::SYNCHRONIZE_CACHE_16, 0, NB, 1), &[]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    good(&l.execute(I1, &cdb10(op::PRE_FETCH_10, 0x02, 0, 10), &[]));
    good(&l.execute(I1, &cdb16(op::PRE_FETCH_16, 0, 5, 0), &[]));
    sense(
        &l.execute(I1, &cdb10(op::PRE_FETCH_10, 0, NB as u32 - 1, 2), &[]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    sense(
        &l.execute(I1, &cdb16(op::PRE_FETCH_16, 0, u64::MAX, 1), &[]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
}

#[test]
fn read_capacity() {
    let mut l = lu();
    let o = l.execute(I1, &cdb::read_capacity10(), &[]);
    good(&o);
    let c = Capacity::parse10(&o.data_in).unwrap();
    assert_eq!((c.last_lba, c.block_len), (NB - 1, BS as u32));
    let o = l.execute(I1, &cdb::read_capacity16(32), &[]);
    let c = Capacity::parse16(&o.data_in).unwrap();
    assert_eq!(c.last_lba, NB - 1);
    assert_eq!(c.total_bytes(), Some(NB * BS as u64));
    assert!(c.lbpme && c.lbprz);
    // Allocation length truncates.
    assert_eq!(
        l.execute(I1, &cdb::read_capacity16(12), &[]).data_in.len(),
        12
    );
    // PMI = 0 with a non-zero LBA is invalid.
    let mut rc = cdb::read_capacity10();
    rc[5] = 1;
    sense(
        &l.execute(I1, &rc, &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    rc[8] = 1;
    good(&l.execute(I1, &rc, &[]));
    // Without provisioning: no LBPME.
    let mut l = lu_with(LuConfig {
        thin_provisioning: false,
        ..LuConfig::default()
    });
    let c = Capacity::parse16(&l.execute(I1, &cdb::read_capacity16(32), &[]).data_in).unwrap();
    assert!(!c.lbpme);
    // Unknown SERVICE ACTION IN (16) action.
    sense(
        &l.execute(
            I1,
            &[0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
            &[],
        ),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
}

#[test]
fn write_same() {
    let mut l = lu();
    let block = pattern(1, 42);
    good(&l.execute(I1, &cdb10(op::WRITE_SAME_10, 0, 100, 300), &block));
    let o = l.execute(I1, &cdb::read10(100, 300, RwFlags::default()), &[]);
    assert!(o.data_in.chunks(BS).all(|b| b == &block[..]));
    let o = l.execute(I1, &cdb::read10(400, 1, RwFlags::default()), &[]);
    assert_eq!(&o.data_in[..], &[0u8; BS][..]);
    // UNMAP bit with zero data deallocates (reads as zero).
    good(&l.execute(I1, &cdb16(op::WRITE_SAME_16, 0x08, 100, 10), &[0; BS]));
    let o = l.execute(I1, &cdb::read10(100, 11, RwFlags::default()), &[]);
    assert!(o.data_in[..10 * BS].iter().all(|&b| b == 0));
    assert_eq!(&o.data_in[10 * BS..], &block[..]);
    // NDOB: no Data-Out, zeroes.
    assert_eq!(
        l.expected_transfer(&cdb16(op::WRITE_SAME_16, 0x09, 0, 1)),
        Transfer::NONE
    );
    good(&l.execute(I1, &cdb16(op::WRITE_SAME_16, 0x09, 110, 5), &[]));
    let o = l.execute(I1, &cdb::read10(110, 5, RwFlags::default()), &[]);
    assert!(o.data_in.iter().all(|&b| b == 0));
    // Zero blocks (WSNZ), beyond the end, ANCHOR, WRPROTECT, over the limit.
    sense(
        &l.execute(I1, &cdb10(op::WRITE_SAME_10, 0, 0, 0), &block),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &l.execute(I1, &cdb10(op::WRITE_SAME_10, 0, NB as u32 - 1, 2), &block),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    sense(
        &l.execute(I1, &cdb16(op::WRITE_SAME_16, 0, u64::MAX, 1), &block),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    sense(
        &l.execute(I1, &cdb10(op::WRITE_SAME_10, 0x18, 0, 1), &block),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &l.execute(I1, &cdb16(op::WRITE_SAME_16, 0x20, 0, 1), &block),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    let mut l = lu_with(LuConfig {
        max_write_same_blocks: 4,
        ..LuConfig::default()
    });
    sense(
        &l.execute(I1, &cdb10(op::WRITE_SAME_10, 0, 0, 5), &block),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // Missing Data-Out block.
    sense(
        &l.execute(I1, &cdb10(op::WRITE_SAME_10, 0, 0, 1), &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
}

fn unmap_params(descs: &[(u64, u32)]) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    p[0..2].copy_from_slice(&((6 + descs.len() * 16) as u16).to_be_bytes());
    p[2..4].copy_from_slice(&((descs.len() * 16) as u16).to_be_bytes());
    for &(lba, n) in descs {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&n.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    p
}

fn unmap_cdb(len: usize) -> [u8; 10] {
    let l = (len as u16).to_be_bytes();
    [op::UNMAP, 0, 0, 0, 0, 0, 0, l[0], l[1], 0]
}

#[test]
fn unmap() {
    let mut l = lu();
    good(&l.execute(
        I1,
        &cdb::write10(0, 64, RwFlags::default()),
        &[0xee; 64 * BS],
    ));
    let p = unmap_params(&[(1, 2), (10, 5), (63, 0)]);
    good(&l.execute(I1, &unmap_cdb(p.len()), &p));
    let o = l.execute(I1, &cdb::read10(0, 16, RwFlags::default()), &[]);
    let blk = |i: usize| &o.data_in[i * BS..(i + 1) * BS];
    assert!(blk(0).iter().all(|&b| b == 0xee));
    assert!(blk(1).iter().chain(blk(2)).all(|&b| b == 0));
    assert!(blk(3).iter().all(|&b| b == 0xee));
    assert!((10..15).all(|i| blk(i).iter().all(|&b| b == 0)));
    assert!(blk(15).iter().all(|&b| b == 0xee));
    // GET LBA STATUS sees the deallocated run.
    let mut gls = cdb16(op::SERVICE_ACTION_IN_16, op::SAI_GET_LBA_STATUS, 0, 0);
    gls[10..14].copy_from_slice(&1024u32.to_be_bytes());
    let o = l.execute(I1, &gls, &[]);
    good(&o);
    assert_eq!(&o.data_in[8..16], &0u64.to_be_bytes());
    assert_eq!(&o.data_in[16..20], &1u32.to_be_bytes());
    assert_eq!(o.data_in[20], 0);
    assert_eq!(&o.data_in[24..32], &1u64.to_be_bytes());
    assert_eq!(&o.data_in[32..36], &2u32.to_be_bytes());
    assert_eq!(o.data_in[36], 1);
    let mut gls_oob = gls;
    gls_oob[2..10].copy_from_slice(&NB.to_be_bytes());
    sense(
        &l.execute(I1, &gls_oob, &[]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );

    // Parameter list length 0: nothing; 1..7: PARAMETER LIST LENGTH ERROR.
    good(&l.execute(I1, &unmap_cdb(0), &[]));
    sense(
        &l.execute(I1, &unmap_cdb(4), &[0; 4]),
        SenseKey::IllegalRequest,
        asc::PARAMETER_LIST_LENGTH_ERROR,
    );
    // A range beyond the end fails the whole command: nothing unmapped.
    let p = unmap_params(&[(20, 1), (NB - 1, 2)]);
    sense(
        &l.execute(I1, &unmap_cdb(p.len()), &p),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    let o = l.execute(I1, &cdb::read10(20, 1, RwFlags::default()), &[]);
    assert!(o.data_in.iter().all(|&b| b == 0xee));
    // ANCHOR is not supported.
    let mut c = unmap_cdb(24);
    c[1] = 1;
    sense(
        &l.execute(I1, &c, &unmap_params(&[(0, 1)])),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // Too many descriptors / blocks.
    let mut l = lu_with(LuConfig {
        max_unmap_descriptors: 1,
        max_unmap_blocks: 8,
        ..LuConfig::default()
    });
    let p = unmap_params(&[(0, 1), (2, 1)]);
    sense(
        &l.execute(I1, &unmap_cdb(p.len()), &p),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    let p = unmap_params(&[(0, 9)]);
    sense(
        &l.execute(I1, &unmap_cdb(p.len()), &p),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // Without provisioning UNMAP does not exist.
    let mut l = lu_with(LuConfig {
        thin_provisioning: false,
        ..LuConfig::default()
    });
    let p = unmap_params(&[(0, 1)]);
    sense(
        &l.execute(I1, &unmap_cdb(p.len()), &p),
        SenseKey::IllegalRequest,
        asc::INVALID_OPCODE,
    );
}

fn caw(lba: u64, n: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op::COMPARE_AND_WRITE;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = n;
    c
}

#[test]
fn compare_and_write() {
    let mut l = lu();
    good(&l.execute(
        I1,
        &cdb::write10(50, 3, RwFlags::default()),
        &[b'A'; 3 * BS],
    ));
    let mut buf = vec![b'A'; 3 * BS];
    buf.extend_from_slice(&[b'B'; 3 * BS]);
    assert_eq!(
        l.expected_transfer(&caw(50, 3)),
        Transfer {
            direction: DataDirection::Out,
            length: 6 * BS as u64
        }
    );
    good(&l.execute(I1, &caw(50, 3), &buf));
    let o = l.execute(I1, &cdb::read10(50, 3, RwFlags::default()), &[]);
    assert!(o.data_in.iter().all(|&b| b == b'B'));
    // Miscompare: byte 27 from the end of the verify data.
    let mut bad = vec![b'B'; 3 * BS];
    bad[3 * BS - 27] = b'C';
    bad.extend_from_slice(&[b'D'; 3 * BS]);
    let s = sense(
        &l.execute(I1, &caw(50, 3), &bad),
        SenseKey::Miscompare,
        asc::MISCOMPARE_DURING_VERIFY,
    );
    assert_eq!(s.information, Some(3 * BS as u64 - 27));
    let o = l.execute(I1, &cdb::read10(50, 3, RwFlags::default()), &[]);
    assert!(
        o.data_in.iter().all(|&b| b == b'B'),
        "data changed despite miscompare"
    );
    // Zero blocks: no-op; over the limit; beyond the end; WRPROTECT.
    good(&l.execute(I1, &caw(0, 0), &[]));
    let mut l2 = lu_with(LuConfig {
        max_compare_and_write_blocks: 2,
        ..LuConfig::default()
    });
    sense(
        &l2.execute(I1, &caw(0, 3), &[0; 6 * BS]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &l.execute(I1, &caw(NB - 1, 2), &[0; 4 * BS]),
        SenseKey::IllegalRequest,
        asc::LBA_OUT_OF_RANGE,
    );
    let mut c = caw(0, 1);
    c[1] = 0x20;
    sense(
        &l.execute(I1, &c, &[0; 2 * BS]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // Short Data-Out.
    sense(
        &l.execute(I1, &caw(0, 1), &[0; BS]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
}

#[test]
fn start_stop_and_prevent_allow() {
    let mut l = lu();
    good(&l.execute(I1, &[op::START_STOP_UNIT, 0, 0, 0, 0x01, 0], &[]));
    good(&l.execute(I1, &[op::START_STOP_UNIT, 1, 0, 0, 0x00, 0], &[]));
    // Eject on a non-removable medium fails.
    sense(
        &l.execute(I1, &[op::START_STOP_UNIT, 1, 0, 0, 0x02, 0], &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // With a power condition, LOEJ is ignored.
    good(&l.execute(I1, &[op::START_STOP_UNIT, 0, 0, 0, 0x12, 0], &[]));
    sense(
        &l.execute(I1, &[op::START_STOP_UNIT, 0, 0, 0, 0x40, 0], &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    good(&l.execute(I1, &[op::PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1, 0], &[]));
    good(&l.execute(I1, &cdb::test_unit_ready(), &[]));
}

#[test]
fn expected_transfer() {
    let l = lu();
    let bs = BS as u64;
    let t = |c: &[u8]| l.expected_transfer(c);
    assert_eq!(
        t(&cdb::read10(0, 4, RwFlags::default())),
        Transfer {
            direction: DataDirection::In,
            length: 4 * bs
        }
    );
    assert_eq!(
        t(&cdb::write16(0, 3, RwFlags::default())),
        Transfer {
            direction: DataDirection::Out,
            length: 3 * bs
        }
    );
    assert_eq!(
        t(&[op::WRITE_6, 0, 0, 0, 0, 0]),
        Transfer {
            direction: DataDirection::Out,
            length: 256 * bs
        }
    );
    assert_eq!(t(&cdb::test_unit_ready()), Transfer::NONE);
    assert_eq!(
        t(&cdb::inquiry(96)),
        Transfer {
            direction: DataDirection::In,
            length: 96
        }
    );
    assert_eq!(t(&cdb10(op::VERIFY_10, 0, 0, 8)), Transfer::NONE);
    assert_eq!(t(&cdb10(op::VERIFY_10, 2, 0, 8)).length, 8 * bs);
    assert_eq!(t(&cdb10(op::VERIFY_10, 6, 0, 8)).length, bs);
    assert_eq!(t(&cdb10(op::WRITE_SAME_10, 0, 0, 8)).length, bs);
    assert_eq!(
        t(&unmap_cdb(40)),
        Transfer {
            direction: DataDirection::Out,
            length: 40
        }
    );
    assert_eq!(t(&cdb::read10(0, 0, RwFlags::default())), Transfer::NONE);
    assert_eq!(t(&[]), Transfer::NONE);
    assert_eq!(t(&[0x28, 0, 0]), Transfer::NONE);
}

#[test]
fn file_backed_lun() {
    let dir = std::env::temp_dir().join(format!("iscsi-lun-sbc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lun.img");
    let disk = FileDisk::create(&path, 1 << 20, 4096).unwrap();
    let mut l = LogicalUnit::new(disk, LuConfig::default());
    assert_eq!(l.num_blocks(), 256);
    let data: Vec<u8> = (0..8192).map(|i| i as u8).collect();
    good(&l.execute(
        I1,
        &cdb::write10(
            255,
            1,
            RwFlags {
                dpo: false,
                fua: true,
            },
        ),
        &data[..4096],
    ));
    good(&l.execute(I1, &cdb::write10(3, 2, RwFlags::default()), &data));
    good(&l.execute(I1, &cdb::synchronize_cache10(0, 0), &[]));
    // WRITE SAME with UNMAP on a device without unmap writes zeroes.
    good(&l.execute(I1, &cdb16(op::WRITE_SAME_16, 0x08, 4, 1), &[0; 4096]));
    drop(l);
    let disk = FileDisk::open(&path, 4096).unwrap();
    let mut l = LogicalUnit::new(disk, LuConfig::default());
    let o = l.execute(I1, &cdb::read10(3, 2, RwFlags::default()), &[]);
    assert_eq!(&o.data_in[..4096], &data[..4096]);
    assert!(o.data_in[4096..].iter().all(|&b| b == 0));
    let o = l.execute(I1, &cdb::read10(255, 1, RwFlags::default()), &[]);
    assert_eq!(&o.data_in[..], &data[..4096]);
    // No provisioning on a plain file: UNMAP is not an opcode here.
    sense(
        &l.execute(I1, &unmap_cdb(0), &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_OPCODE,
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn execute_transport_writes_the_whole_blocks_of_a_short_data_out() {
    // RFC 7143 section 11.4.5.1: an Expected Data Transfer Length below
    // the CDB's transfer length; the transport reports the overflow.
    let mut l = lu();
    good(&l.execute(I1, &cdb::write10(0, 2, RwFlags::default()), &pattern(2, 1)));
    let short = pattern(1, 2);
    // `execute` stays strict: INVALID FIELD IN CDB.
    let o = l.execute(I1, &cdb::write10(0, 2, RwFlags::default()), &short);
    assert_eq!(o.sense.map(|s| s.key), Some(SenseKey::IllegalRequest));
    // `execute_transport` writes the one whole block.
    good(&l.execute_transport(I1, &cdb::write10(0, 2, RwFlags::default()), &short));
    let o = l.execute(I1, &cdb::read10(0, 2, RwFlags::default()), &[]);
    assert_eq!(&o.data_in[..BS], &short[..]);
    assert_eq!(&o.data_in[BS..], &pattern(2, 1)[BS..]);
    // Less than a block: nothing written, still GOOD.
    good(&l.execute_transport(I1, &cdb::write10(0, 1, RwFlags::default()), &[0xee; 100]));
    let o = l.execute(I1, &cdb::read10(0, 1, RwFlags::default()), &[]);
    assert_eq!(&o.data_in[..], &short[..]);
}

/// SBC-3 5.2: COMPARE AND WRITE transfers "the verify instance of the data
/// ... followed by the write instance", NUMBER OF LOGICAL BLOCKS each, so
/// the Data-Out buffer is exactly 2 x NUMBER OF LOGICAL BLOCKS blocks. A
/// transport buffer of another size (libiscsi's NUMBER OF LOGICAL BLOCKS
/// 256, which wraps to 0 in the one-byte field, with 512 blocks of data;
/// or a CDB rewritten to 1 or 3 blocks under 4 blocks of data) cannot be
/// split into the two instances: ILLEGAL REQUEST, INVALID FIELD IN CDB,
/// and nothing is written (as Linux LIO refuses an over/underflowing
/// COMPARE AND WRITE with INVALID FIELD IN CDB).
#[test]
fn compare_and_write_data_out_must_be_two_instances() {
    let mut l = lu();
    good(&l.execute(I1, &cdb::write10(0, 4, RwFlags::default()), &[b'A'; 4 * BS]));
    for (n, blocks) in [(0u8, 512usize), (0, 2), (1, 4), (3, 4), (2, 3)] {
        let mut data = vec![b'A'; blocks * BS];
        data[blocks * BS / 2..].fill(b'Z');
        for o in [
            l.execute(I1, &caw(0, n), &data),
            l.execute_transport(I1, &caw(0, n), &data),
        ] {
            let s = sense(&o, SenseKey::IllegalRequest, asc::INVALID_FIELD_IN_CDB);
            // SPC-4 4.5.2.4.2: the field pointer names byte 13 of the CDB.
            assert_eq!(
                s.sense_key_specific,
                Some([0xc0, 0, 13]),
                "n={n} blocks={blocks}"
            );
        }
    }
    // Nothing was written: the blocks still hold 'A'.
    let o = l.execute(I1, &cdb::read10(0, 4, RwFlags::default()), &[]);
    assert!(o.data_in.iter().all(|&b| b == b'A'));
    // The exact size still works, through both entry points.
    let mut buf = vec![b'A'; BS];
    buf.extend_from_slice(&[b'C'; BS]);
    good(&l.execute_transport(I1, &caw(0, 1), &buf));
    let o = l.execute(I1, &cdb::read10(0, 1, RwFlags::default()), &[]);
    assert!(o.data_in.iter().all(|&b| b == b'C'));
}
