//! SPC-4 command tests: INQUIRY and VPD pages, REPORT LUNS, MODE SENSE /
//! MODE SELECT, REQUEST SENSE, unit attentions, bad CDBs.

mod common;

use common::*;
use iscsi_lun::{execute_no_lun, report_luns, LuConfig};
use iscsi_proto::scsi::cdb::{self, opcode as op, PageControl, ReportLuns, StandardInquiry};
use iscsi_proto::scsi::lun::REPORT_LUNS_WLUN;
use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::{Lun, ScsiStatus, SenseData, SenseKey};

#[test]
fn bad_cdbs() {
    let mut l = lu();
    sense(
        &l.execute(I1, &[], &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_OPCODE,
    );
    for opc in [
        0x02u8,
        0x60,
        0x7f,
        0xc0,
        0xff,
        op::ORWRITE_16,
        op::RESERVE_6,
    ] {
        let mut c = [0u8; 16];
        c[0] = opc;
        let s = sense(
            &l.execute(I1, &c, &[]),
            SenseKey::IllegalRequest,
            asc::INVALID_OPCODE,
        );
        assert_eq!(s.sense_key_specific, Some([0xcf, 0, 0]));
    }
    // CDB shorter than its group's length.
    sense(
        &l.execute(I1, &[op::READ_10, 0, 0, 0], &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // NACA in the CONTROL byte.
    sense(
        &l.execute(I1, &[0, 0, 0, 0, 0, 0x04], &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // A 16-byte BHS CDB field padding a 6-byte CDB is fine.
    good(&l.execute(I1, &[0u8; 16], &[]));
}

#[test]
fn standard_inquiry() {
    let mut l = lu_with(LuConfig {
        vendor: "ACME".into(),
        product: "SUPERDISK".into(),
        revision: "42".into(),
        ..LuConfig::default()
    });
    let o = l.execute(I1, &cdb::inquiry(255), &[]);
    good(&o);
    assert_eq!(o.data_in.len(), 66);
    assert_eq!(o.data_in[4] as usize + 5, o.data_in.len());
    let i = StandardInquiry::parse(&o.data_in).unwrap();
    assert_eq!((i.peripheral_qualifier, i.device_type), (0, 0));
    assert_eq!(i.version, 6);
    assert_eq!(i.response_data_format, 2);
    assert!(i.hisup && i.cmdque && !i.removable);
    assert_eq!(
        (i.vendor.as_str(), i.product.as_str(), i.revision.as_str()),
        ("ACME", "SUPERDISK", "42")
    );
    // Allocation length truncates.
    assert_eq!(l.execute(I1, &cdb::inquiry(5), &[]).data_in.len(), 5);
    assert_eq!(l.execute(I1, &cdb::inquiry(0), &[]).data_in.len(), 0);
    // EVPD = 0 with a page code; CMDDT.
    sense(
        &l.execute(I1, &[op::INQUIRY, 0, 0x80, 0, 255, 0], &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &l.execute(I1, &[op::INQUIRY, 2, 0, 0, 255, 0], &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
}

fn vpd(l: &mut iscsi_lun::LogicalUnit, page: u8) -> Vec<u8> {
    let o = l.execute(I1, &cdb::inquiry_vpd(page, 1024), &[]);
    good(&o);
    assert_eq!(o.data_in[1], page);
    let len = u16::from_be_bytes([o.data_in[2], o.data_in[3]]) as usize;
    assert_eq!(len + 4, o.data_in.len());
    o.data_in.to_vec()
}

#[test]
fn vpd_pages() {
    let mut l = lu_with(LuConfig {
        serial: "SN-1234".into(),
        ..LuConfig::default()
    });
    assert_eq!(
        &vpd(&mut l, 0x00)[4..],
        &[0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]
    );
    assert_eq!(&vpd(&mut l, 0x80)[4..], b"SN-1234");
    // Device identification: NAA (type 3) then T10 vendor ID (type 1),
    // then relative target port (type 4, association 1).
    let d = vpd(&mut l, 0x83);
    let mut at = 4;
    let mut seen = Vec::new();
    while at < d.len() {
        let (cs, ty, len) = (d[at] & 0x0f, d[at + 1] & 0x3f, d[at + 3] as usize);
        seen.push((cs, ty));
        if ty == 3 {
            assert_eq!(len, 8);
            assert_eq!(d[at + 4] >> 4, 3, "NAA locally assigned");
        }
        if ty == 1 {
            assert_eq!(&d[at + 4..at + 12], b"RUST    ");
            assert!(d[at + 4..at + 4 + len].ends_with(b"SN-1234"));
        }
        at += 4 + len;
    }
    assert_eq!(at, d.len());
    assert_eq!(seen, vec![(1, 0x03), (2, 0x01), (1, 0x14)]);
    // Block limits.
    let b0 = vpd(&mut l, 0xb0);
    assert_eq!(b0.len(), 64);
    assert_eq!(b0[4] & 1, 1, "WSNZ");
    assert_eq!(b0[5], 255);
    assert_eq!(u32::from_be_bytes(b0[8..12].try_into().unwrap()), 16384);
    assert!(u32::from_be_bytes(b0[20..24].try_into().unwrap()) > 0);
    assert!(u32::from_be_bytes(b0[24..28].try_into().unwrap()) > 0);
    assert_eq!(u64::from_be_bytes(b0[36..44].try_into().unwrap()), 65536);
    let b1 = vpd(&mut l, 0xb1);
    assert_eq!(b1.len(), 64);
    assert_eq!(&b1[4..6], &[0, 1]);
    let b2 = vpd(&mut l, 0xb2);
    assert_eq!(b2[5], 0xe4);
    assert_eq!(b2[6] & 0x07, 2);
    sense(
        &l.execute(I1, &cdb::inquiry_vpd(0x99, 255), &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // Without provisioning: no unmap limits, LBPU clear.
    let mut l = lu_with(LuConfig {
        thin_provisioning: false,
        naa: Some(0x6001_4050_0000_0001),
        ..LuConfig::default()
    });
    assert_eq!(&vpd(&mut l, 0xb0)[20..28], &[0; 8]);
    assert_eq!(vpd(&mut l, 0xb2)[5], 0);
    assert_eq!(
        &vpd(&mut l, 0x83)[8..16],
        &0x6001_4050_0000_0001u64.to_be_bytes()
    );
}

#[test]
fn report_luns_rules() {
    let luns = vec![
        Lun::from_number(0),
        Lun::from_number(1),
        Lun::from_number(300),
        REPORT_LUNS_WLUN,
    ];
    let mut l = lu_with(LuConfig {
        luns: luns.clone(),
        ..LuConfig::default()
    });
    let o = l.execute(I1, &cdb::report_luns(0, 4096), &[]);
    good(&o);
    let r = ReportLuns::parse(&o.data_in).unwrap();
    assert_eq!(r.luns, luns[..3].to_vec());
    let r = ReportLuns::parse(&l.execute(I1, &cdb::report_luns(1, 4096), &[]).data_in).unwrap();
    assert_eq!(r.luns, vec![REPORT_LUNS_WLUN]);
    let r = ReportLuns::parse(&l.execute(I1, &cdb::report_luns(2, 4096), &[]).data_in).unwrap();
    assert_eq!(r.luns, luns);
    // Cut by allocation length, LUN LIST LENGTH still complete.
    let o = l.execute(I1, &cdb::report_luns(0, 16), &[]);
    good(&o);
    let r = ReportLuns::parse(&o.data_in).unwrap();
    assert_eq!((r.luns.len(), r.list_len), (1, 24));
    sense(
        &l.execute(I1, &cdb::report_luns(0, 15), &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &l.execute(I1, &cdb::report_luns(3, 4096), &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    l.set_luns(vec![Lun::from_number(7)]);
    let r = ReportLuns::parse(&l.execute(I1, &cdb::report_luns(0, 4096), &[]).data_in).unwrap();
    assert_eq!(r.luns, vec![Lun::from_number(7)]);
    // The free function, for the W-LUN or a missing LUN.
    let o = report_luns(&cdb::report_luns(0, 64), &luns);
    assert_eq!(ReportLuns::parse(&o.data_in).unwrap().luns.len(), 3);
    assert_eq!(
        report_luns(&cdb::test_unit_ready(), &luns).status,
        ScsiStatus::CheckCondition
    );
}

#[test]
fn nonexistent_lun() {
    let luns = [Lun::from_number(0)];
    let o = execute_no_lun(&cdb::inquiry(96), &luns);
    good(&o);
    let i = StandardInquiry::parse(&o.data_in).unwrap();
    assert_eq!((i.peripheral_qualifier, i.device_type), (3, 0x1f));
    sense(
        &execute_no_lun(&cdb::test_unit_ready(), &luns),
        SenseKey::IllegalRequest,
        asc::LUN_NOT_SUPPORTED,
    );
    sense(
        &execute_no_lun(&cdb::read10(0, 1, Default::default()), &luns),
        SenseKey::IllegalRequest,
        asc::LUN_NOT_SUPPORTED,
    );
    let o = execute_no_lun(&cdb::request_sense(18), &luns);
    good(&o);
    assert!(SenseData::parse(&o.data_in)
        .unwrap()
        .is(SenseKey::IllegalRequest, asc::LUN_NOT_SUPPORTED));
    let o = execute_no_lun(&cdb::report_luns(0, 64), &luns);
    assert_eq!(ReportLuns::parse(&o.data_in).unwrap().luns, luns.to_vec());
}

#[test]
fn mode_sense() {
    let mut l = lu();
    // MODE SENSE (6), all pages, with block descriptor.
    let o = l.execute(
        I1,
        &cdb::mode_sense6(false, PageControl::Current, 0x3f, 0, 255),
        &[],
    );
    good(&o);
    let d = &o.data_in;
    assert_eq!(d[0] as usize + 1, d.len());
    assert_eq!(d[2], 0x10, "DPOFUA, not WP");
    assert_eq!(d[3], 8);
    assert_eq!(&d[4..8], &(NB as u32).to_be_bytes());
    assert_eq!(&d[9..12], &[0, 2, 0]);
    let pages = &d[12..];
    assert_eq!((pages[0], pages[1]), (0x08, 0x12));
    assert_eq!(pages[2] & 0x04, 0x04, "WCE");
    assert_eq!((pages[20], pages[21]), (0x0a, 0x0a));
    assert_eq!((pages[32], pages[33]), (0x1c, 0x0a));
    assert_eq!(pages.len(), 44);
    // DBD, single page; all subpages.
    let o = l.execute(
        I1,
        &cdb::mode_sense6(true, PageControl::Current, 0x08, 0, 255),
        &[],
    );
    assert_eq!(o.data_in.len(), 4 + 20);
    assert_eq!(o.data_in[3], 0);
    good(&l.execute(
        I1,
        &cdb::mode_sense6(true, PageControl::Current, 0x3f, 0xff, 255),
        &[],
    ));
    // Changeable values: only WCE.
    let o = l.execute(
        I1,
        &cdb::mode_sense6(true, PageControl::Changeable, 0x08, 0, 255),
        &[],
    );
    assert_eq!(o.data_in[4 + 2], 0x04);
    assert!(o.data_in[4 + 3..].iter().all(|&b| b == 0));
    good(&l.execute(
        I1,
        &cdb::mode_sense6(true, PageControl::Default, 0x0a, 0, 255),
        &[],
    ));
    // Saved values, subpages, unknown pages.
    sense(
        &l.execute(
            I1,
            &cdb::mode_sense6(true, PageControl::Saved, 0x08, 0, 255),
            &[],
        ),
        SenseKey::IllegalRequest,
        asc::SAVING_PARAMETERS_NOT_SUPPORTED,
    );
    sense(
        &l.execute(
            I1,
            &cdb::mode_sense6(true, PageControl::Current, 0x08, 0x01, 255),
            &[],
        ),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &l.execute(
            I1,
            &cdb::mode_sense6(true, PageControl::Current, 0x19, 0, 255),
            &[],
        ),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // Allocation length.
    assert_eq!(
        l.execute(
            I1,
            &cdb::mode_sense6(false, PageControl::Current, 0x3f, 0, 4),
            &[]
        )
        .data_in
        .len(),
        4
    );
    // MODE SENSE (10) with LLBAA: long block descriptor.
    let mut c = cdb::mode_sense10(false, PageControl::Current, 0x0a, 0, 512);
    c[1] |= 0x10;
    let o = l.execute(I1, &c, &[]);
    good(&o);
    let d = &o.data_in;
    assert_eq!(u16::from_be_bytes([d[0], d[1]]) as usize + 2, d.len());
    assert_eq!(d[4] & 1, 1, "LONGLBA");
    assert_eq!(u16::from_be_bytes([d[6], d[7]]), 16);
    assert_eq!(&d[8..16], &NB.to_be_bytes());
    assert_eq!(&d[20..24], &(BS as u32).to_be_bytes());
    assert_eq!(d[24], 0x0a);
}

#[test]
fn mode_select_wce() {
    let mut l = lu();
    let o = l.execute(
        I1,
        &cdb::mode_sense6(true, PageControl::Current, 0x08, 0, 255),
        &[],
    );
    let mut params = o.data_in.to_vec();
    params[0] = 0;
    params[2] = 0;
    params[4 + 2] &= !0x04; // clear WCE
    let sel = [op::MODE_SELECT_6, 0x10, 0, 0, params.len() as u8, 0];
    good(&l.execute(I1, &sel, &params));
    let o = l.execute(
        I1,
        &cdb::mode_sense6(true, PageControl::Current, 0x08, 0, 255),
        &[],
    );
    assert_eq!(o.data_in[4 + 2] & 0x04, 0);
    // Writes still work (write-through now).
    good(&l.execute(I1, &cdb::write10(0, 1, Default::default()), &[1; BS]));
    // Changing a non-changeable field.
    let mut bad = params.clone();
    bad[4 + 3] = 0x55;
    sense(
        &l.execute(I1, &sel, &bad),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // Unknown page, wrong page length.
    let mut bad = params.clone();
    bad[4] = 0x19;
    sense(
        &l.execute(I1, &sel, &bad),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // SP bit, truncated parameter list, zero length.
    sense(
        &l.execute(
            I1,
            &[op::MODE_SELECT_6, 0x11, 0, 0, params.len() as u8, 0],
            &params,
        ),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &l.execute(I1, &sel, &params[..10]),
        SenseKey::IllegalRequest,
        asc::PARAMETER_LIST_LENGTH_ERROR,
    );
    good(&l.execute(I1, &[op::MODE_SELECT_6, 0x10, 0, 0, 0, 0], &[]));
    // MODE SELECT (10) turning WCE back on, with a block descriptor.
    let mut p10 = vec![0u8; 8];
    p10[7] = 8;
    p10.extend_from_slice(&[0, 0, 0, 0, 0, 0, 2, 0]);
    let mut page = vec![0u8; 20];
    page[0] = 0x08;
    page[1] = 0x12;
    page[2] = 0x04;
    p10.extend_from_slice(&page);
    let len = (p10.len() as u16).to_be_bytes();
    good(&l.execute(
        I1,
        &[op::MODE_SELECT_10, 0x10, 0, 0, 0, 0, 0, len[0], len[1], 0],
        &p10,
    ));
    let o = l.execute(
        I1,
        &cdb::mode_sense6(true, PageControl::Current, 0x08, 0, 255),
        &[],
    );
    assert_eq!(o.data_in[4 + 2] & 0x04, 0x04);
    // A block descriptor with another block length is refused.
    p10[14] = 0x10;
    sense(
        &l.execute(
            I1,
            &[op::MODE_SELECT_10, 0x10, 0, 0, 0, 0, 0, len[0], len[1], 0],
            &p10,
        ),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
}

#[test]
fn request_sense_and_unit_attention() {
    let mut l = lu();
    let o = l.execute(I1, &cdb::request_sense(252), &[]);
    good(&o);
    assert_eq!(o.data_in.len(), 18);
    assert_eq!(SenseData::parse(&o.data_in).unwrap().key, SenseKey::NoSense);
    assert_eq!(l.execute(I1, &cdb::request_sense(8), &[]).data_in.len(), 8);
    sense(
        &l.execute(I1, &[op::REQUEST_SENSE, 1, 0, 0, 18, 0], &[]),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );

    let ua = SenseData::with_code(SenseKey::UnitAttention, asc::POWER_ON_RESET);
    l.add_unit_attention(I1, ua);
    // INQUIRY and REPORT LUNS do not report it, other nexuses do not see it.
    good(&l.execute(I1, &cdb::inquiry(36), &[]));
    good(&l.execute(I1, &cdb::report_luns(0, 64), &[]));
    good(&l.execute(I2, &cdb::test_unit_ready(), &[]));
    sense(
        &l.execute(I1, &cdb::test_unit_ready(), &[]),
        SenseKey::UnitAttention,
        asc::POWER_ON_RESET,
    );
    good(&l.execute(I1, &cdb::test_unit_ready(), &[]));
    // REQUEST SENSE returns and clears it.
    l.add_unit_attention(I1, ua);
    let o = l.execute(I1, &cdb::request_sense(18), &[]);
    assert_eq!(SenseData::parse(&o.data_in).unwrap(), ua);
    good(&l.execute(I1, &cdb::test_unit_ready(), &[]));
    // Nexus loss drops pending UAs; the queue is bounded.
    l.add_unit_attention(I1, ua);
    l.nexus_lost(I1);
    good(&l.execute(I1, &cdb::test_unit_ready(), &[]));
    for _ in 0..100 {
        l.add_unit_attention(I1, ua);
    }
    let mut n = 0;
    while l.execute(I1, &cdb::test_unit_ready(), &[]).status != ScsiStatus::Good {
        n += 1;
    }
    assert_eq!(n, 8);
}
