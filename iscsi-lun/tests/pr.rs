//! Persistent reservation tests (SPC-4 5.7, 6.13, 6.14) with several
//! I_T nexuses.

mod common;

use common::*;
use iscsi_lun::NexusId;
use iscsi_lun::{pr_type, LogicalUnit, TransportId, MAX_REGISTRATIONS};
use iscsi_proto::scsi::cdb::{self, opcode as op, RwFlags};
use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::{ScsiStatus, SenseKey};

fn prout_cdb(sa: u8, ty: u8) -> [u8; 10] {
    [op::PERSISTENT_RESERVE_OUT, sa, ty, 0, 0, 0, 0, 0, 24, 0]
}

fn params(key: u64, sa_key: u64) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p
}

fn prout(
    l: &mut LogicalUnit,
    n: NexusId,
    sa: u8,
    ty: u8,
    key: u64,
    sa_key: u64,
) -> iscsi_lun::ScsiOutcome {
    l.execute(n, &prout_cdb(sa, ty), &params(key, sa_key))
}

/// A nexus that only observes (never registers).
const OBS: NexusId = NexusId(99);
const REGISTER: u8 = 0;
const RESERVE: u8 = 1;
const RELEASE: u8 = 2;
const CLEAR: u8 = 3;
const PREEMPT: u8 = 4;
const REGISTER_IGNORE: u8 = 6;

fn prin(l: &mut LogicalUnit, n: NexusId, sa: u8) -> Vec<u8> {
    let o = l.execute(
        n,
        &[op::PERSISTENT_RESERVE_IN, sa, 0, 0, 0, 0, 0, 0x10, 0, 0],
        &[],
    );
    good(&o);
    o.data_in.to_vec()
}

fn keys(l: &mut LogicalUnit) -> Vec<u64> {
    let d = prin(l, OBS, 0);
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    d[8..8 + len]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn generation(l: &mut LogicalUnit) -> u32 {
    u32::from_be_bytes(prin(l, OBS, 0)[0..4].try_into().unwrap())
}

/// (key, type) of the current reservation.
fn reservation(l: &mut LogicalUnit) -> Option<(u64, u8)> {
    let d = prin(l, OBS, 1);
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap());
    (len == 16).then(|| {
        (
            u64::from_be_bytes(d[8..16].try_into().unwrap()),
            d[21] & 0x0f,
        )
    })
}

fn read(l: &mut LogicalUnit, n: NexusId) -> ScsiStatus {
    l.execute(n, &cdb::read10(0, 1, RwFlags::default()), &[])
        .status
}

fn write(l: &mut LogicalUnit, n: NexusId) -> ScsiStatus {
    l.execute(n, &cdb::write10(0, 1, RwFlags::default()), &[0; BS])
        .status
}

#[test]
fn register_and_read_keys() {
    let mut l = lu();
    assert_eq!(keys(&mut l), Vec::<u64>::new());
    let g0 = generation(&mut l);
    good(&prout(&mut l, I1, REGISTER, 0, 0, 0xaa));
    good(&prout(&mut l, I2, REGISTER, 0, 0, 0xbb));
    assert_eq!(keys(&mut l), vec![0xaa, 0xbb]);
    assert_eq!(generation(&mut l), g0 + 2);
    // Registered nexus with the wrong key: conflict; with the right one: change.
    conflict(&prout(&mut l, I1, REGISTER, 0, 0x99, 0xcc));
    good(&prout(&mut l, I1, REGISTER, 0, 0xaa, 0xcc));
    // Unregistered nexus with a non-zero key: conflict.
    conflict(&prout(&mut l, I3, REGISTER, 0, 0x1, 0xdd));
    // REGISTER AND IGNORE EXISTING KEY.
    good(&prout(&mut l, I2, REGISTER_IGNORE, 0, 0x1234, 0xee));
    assert_eq!(keys(&mut l), vec![0xcc, 0xee]);
    // Unregister.
    good(&prout(&mut l, I2, REGISTER, 0, 0xee, 0));
    assert_eq!(keys(&mut l), vec![0xcc]);
    // Unregistered nexus registering key 0 is a no-op.
    let g = generation(&mut l);
    good(&prout(&mut l, I2, REGISTER, 0, 0, 0));
    assert_eq!(generation(&mut l), g);
}

#[test]
fn prout_parameter_checks() {
    let mut l = lu();
    // PARAMETER LIST LENGTH must be 24.
    let mut c = prout_cdb(REGISTER, 0);
    c[8] = 23;
    sense(
        &l.execute(I1, &c, &params(0, 1)),
        SenseKey::IllegalRequest,
        asc::PARAMETER_LIST_LENGTH_ERROR,
    );
    sense(
        &l.execute(I1, &prout_cdb(REGISTER, 0), &[0; 10]),
        SenseKey::IllegalRequest,
        asc::PARAMETER_LIST_LENGTH_ERROR,
    );
    // APTPL / SPEC_I_PT / ALL_TG_PT are not supported.
    for bit in [0x01u8, 0x04, 0x08] {
        let mut p = params(0, 1);
        p[20] = bit;
        sense(
            &l.execute(I1, &prout_cdb(REGISTER, 0), &p),
            SenseKey::IllegalRequest,
            asc::INVALID_FIELD_IN_PARAMETER_LIST,
        );
    }
    // REGISTER AND MOVE and reserved service actions.
    sense(
        &prout(&mut l, I1, 7, 0, 0, 1),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // Bad type / scope on RESERVE.
    good(&prout(&mut l, I1, REGISTER, 0, 0, 1));
    sense(
        &prout(&mut l, I1, RESERVE, 2, 1, 0),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    sense(
        &prout(&mut l, I1, RESERVE, 0x11, 1, 0),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // Unknown PR IN service action.
    sense(
        &l.execute(
            I1,
            &[op::PERSISTENT_RESERVE_IN, 5, 0, 0, 0, 0, 0, 0x10, 0, 0],
            &[],
        ),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_CDB,
    );
    // Registration limit.
    for i in 0..(MAX_REGISTRATIONS as u64 + 5) {
        let o = prout(&mut l, NexusId(100 + i), REGISTER, 0, 0, 1000 + i);
        if i + 1 < MAX_REGISTRATIONS as u64 {
            good(&o);
        } else {
            sense(
                &o,
                SenseKey::IllegalRequest,
                asc::INSUFFICIENT_REGISTRATION_RESOURCES,
            );
        }
    }
}

#[test]
fn report_capabilities() {
    let mut l = lu();
    let d = prin(&mut l, I1, 2);
    assert_eq!(d.len(), 8);
    assert_eq!(u16::from_be_bytes([d[0], d[1]]), 8);
    assert_eq!(d[3] & 0x80, 0x80, "TMV");
    assert_eq!((d[4], d[5]), (0xea, 0x01));
    assert_eq!(d[2] & 0x0d, 0, "no SIP_C / ATP_C / PTPL_C");
}

#[test]
fn write_exclusive() {
    let mut l = lu();
    good(&prout(&mut l, I1, REGISTER, 0, 0, 0xa));
    good(&prout(&mut l, I2, REGISTER, 0, 0, 0xb));
    // Unregistered or wrong-key RESERVE conflicts.
    conflict(&prout(&mut l, I3, RESERVE, pr_type::WRITE_EXCLUSIVE, 0, 0));
    conflict(&prout(
        &mut l,
        I1,
        RESERVE,
        pr_type::WRITE_EXCLUSIVE,
        0xb,
        0,
    ));
    let g = generation(&mut l);
    good(&prout(
        &mut l,
        I1,
        RESERVE,
        pr_type::WRITE_EXCLUSIVE,
        0xa,
        0,
    ));
    assert_eq!(
        generation(&mut l),
        g,
        "RESERVE does not bump the generation"
    );
    assert_eq!(reservation(&mut l), Some((0xa, pr_type::WRITE_EXCLUSIVE)));
    // Same reservation again by the holder is fine, another type conflicts.
    good(&prout(
        &mut l,
        I1,
        RESERVE,
        pr_type::WRITE_EXCLUSIVE,
        0xa,
        0,
    ));
    conflict(&prout(
        &mut l,
        I1,
        RESERVE,
        pr_type::EXCLUSIVE_ACCESS,
        0xa,
        0,
    ));
    conflict(&prout(
        &mut l,
        I2,
        RESERVE,
        pr_type::WRITE_EXCLUSIVE,
        0xb,
        0,
    ));
    // Holder reads and writes; others only read.
    assert_eq!(write(&mut l, I1), ScsiStatus::Good);
    assert_eq!(read(&mut l, I2), ScsiStatus::Good);
    assert_eq!(write(&mut l, I2), ScsiStatus::ReservationConflict);
    assert_eq!(write(&mut l, I3), ScsiStatus::ReservationConflict);
    assert_eq!(read(&mut l, I3), ScsiStatus::Good);
    conflict(&l.execute(I2, &cdb::synchronize_cache10(0, 0), &[]));
    // Always-allowed commands.
    good(&l.execute(I3, &cdb::test_unit_ready(), &[]));
    good(&l.execute(I3, &cdb::inquiry(36), &[]));
    good(&l.execute(I3, &cdb::read_capacity10(), &[]));
    good(&l.execute(I3, &cdb::read_capacity16(32), &[]));
    good(&l.execute(I3, &cdb::report_luns(0, 64), &[]));
    // RELEASE by a non-holder is a no-op; wrong type by the holder is invalid.
    good(&prout(
        &mut l,
        I2,
        RELEASE,
        pr_type::WRITE_EXCLUSIVE,
        0xb,
        0,
    ));
    assert!(reservation(&mut l).is_some());
    sense(
        &prout(&mut l, I1, RELEASE, pr_type::EXCLUSIVE_ACCESS, 0xa, 0),
        SenseKey::IllegalRequest,
        asc::INVALID_RELEASE_OF_PR,
    );
    conflict(&prout(
        &mut l,
        I1,
        RELEASE,
        pr_type::WRITE_EXCLUSIVE,
        0xb,
        0,
    ));
    good(&prout(
        &mut l,
        I1,
        RELEASE,
        pr_type::WRITE_EXCLUSIVE,
        0xa,
        0,
    ));
    assert_eq!(reservation(&mut l), None);
    assert_eq!(write(&mut l, I3), ScsiStatus::Good);
}

#[test]
fn exclusive_access() {
    let mut l = lu();
    good(&prout(&mut l, I1, REGISTER, 0, 0, 0xa));
    good(&prout(&mut l, I2, REGISTER, 0, 0, 0xb));
    good(&prout(
        &mut l,
        I1,
        RESERVE,
        pr_type::EXCLUSIVE_ACCESS,
        0xa,
        0,
    ));
    assert_eq!(read(&mut l, I1), ScsiStatus::Good);
    assert_eq!(read(&mut l, I2), ScsiStatus::ReservationConflict);
    assert_eq!(read(&mut l, I3), ScsiStatus::ReservationConflict);
    conflict(&l.execute(
        I2,
        &cdb::mode_sense6(true, cdb::PageControl::Current, 0x3f, 0, 255),
        &[],
    ));
    good(&l.execute(I2, &cdb::test_unit_ready(), &[]));
    // Unregistering the holder releases the reservation.
    good(&prout(&mut l, I1, REGISTER, 0, 0xa, 0));
    assert_eq!(reservation(&mut l), None);
    assert_eq!(read(&mut l, I2), ScsiStatus::Good);
}

#[test]
fn registrants_only_and_all_registrants() {
    for (ty, exclusive) in [
        (pr_type::WRITE_EXCLUSIVE_RO, false),
        (pr_type::EXCLUSIVE_ACCESS_RO, true),
        (pr_type::WRITE_EXCLUSIVE_AR, false),
        (pr_type::EXCLUSIVE_ACCESS_AR, true),
    ] {
        let mut l = lu();
        good(&prout(&mut l, I1, REGISTER, 0, 0, 0xa));
        good(&prout(&mut l, I2, REGISTER, 0, 0, 0xb));
        good(&prout(&mut l, I1, RESERVE, ty, 0xa, 0));
        let all = ty >= pr_type::WRITE_EXCLUSIVE_AR;
        assert_eq!(reservation(&mut l), Some((if all { 0 } else { 0xa }, ty)));
        // Registrants have full access, others per type.
        assert_eq!(write(&mut l, I2), ScsiStatus::Good);
        assert_eq!(write(&mut l, I3), ScsiStatus::ReservationConflict);
        let want = if exclusive {
            ScsiStatus::ReservationConflict
        } else {
            ScsiStatus::Good
        };
        assert_eq!(read(&mut l, I3), want);
        // The registrant I2 re-reserving: a holder only in all-registrants.
        let o = prout(&mut l, I2, RESERVE, ty, 0xb, 0);
        assert_eq!(
            o.status,
            if all {
                ScsiStatus::Good
            } else {
                ScsiStatus::ReservationConflict
            }
        );
        // Unregistering I1: RO reservation goes away with its holder (and
        // I2 gets RESERVATIONS RELEASED); AR stays while I2 is registered.
        good(&prout(&mut l, I1, REGISTER, 0, 0xa, 0));
        if all {
            assert!(reservation(&mut l).is_some());
            good(&prout(&mut l, I2, REGISTER, 0, 0xb, 0));
            assert_eq!(reservation(&mut l), None);
        } else {
            assert_eq!(reservation(&mut l), None);
            sense(
                &l.execute(I2, &cdb::test_unit_ready(), &[]),
                SenseKey::UnitAttention,
                asc::RESERVATIONS_RELEASED,
            );
        }
    }
}

#[test]
fn clear() {
    let mut l = lu();
    good(&prout(&mut l, I1, REGISTER, 0, 0, 0xa));
    good(&prout(&mut l, I2, REGISTER, 0, 0, 0xb));
    good(&prout(
        &mut l,
        I1,
        RESERVE,
        pr_type::EXCLUSIVE_ACCESS,
        0xa,
        0,
    ));
    conflict(&prout(&mut l, I3, CLEAR, 0, 0, 0));
    conflict(&prout(&mut l, I2, CLEAR, 0, 0xa, 0));
    good(&prout(&mut l, I2, CLEAR, 0, 0xb, 0));
    assert_eq!(keys(&mut l), Vec::<u64>::new());
    assert_eq!(reservation(&mut l), None);
    // I1 lost its registration: it gets RESERVATIONS PREEMPTED once.
    sense(
        &l.execute(I1, &cdb::test_unit_ready(), &[]),
        SenseKey::UnitAttention,
        asc::RESERVATIONS_PREEMPTED,
    );
    good(&l.execute(I1, &cdb::test_unit_ready(), &[]));
    good(&l.execute(I2, &cdb::test_unit_ready(), &[]));
}

#[test]
fn preempt() {
    let mut l = lu();
    good(&prout(&mut l, I1, REGISTER, 0, 0, 0xa));
    good(&prout(&mut l, I2, REGISTER, 0, 0, 0xb));
    good(&prout(
        &mut l,
        I1,
        RESERVE,
        pr_type::WRITE_EXCLUSIVE,
        0xa,
        0,
    ));
    // Unregistered / wrong key: conflict. Key 0 against a non-holder: invalid.
    conflict(&prout(
        &mut l,
        I3,
        PREEMPT,
        pr_type::WRITE_EXCLUSIVE,
        0,
        0xa,
    ));
    conflict(&prout(
        &mut l,
        I2,
        PREEMPT,
        pr_type::WRITE_EXCLUSIVE,
        0xa,
        0xa,
    ));
    sense(
        &prout(&mut l, I2, PREEMPT, pr_type::WRITE_EXCLUSIVE, 0xb, 0),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // No registration has the key: conflict.
    conflict(&prout(
        &mut l,
        I2,
        PREEMPT,
        pr_type::WRITE_EXCLUSIVE,
        0xb,
        0x77,
    ));
    // I2 preempts the holder I1 and takes an EA reservation.
    let g = generation(&mut l);
    good(&prout(
        &mut l,
        I2,
        PREEMPT,
        pr_type::EXCLUSIVE_ACCESS,
        0xb,
        0xa,
    ));
    assert_eq!(generation(&mut l), g + 1);
    assert_eq!(keys(&mut l), vec![0xb]);
    assert_eq!(reservation(&mut l), Some((0xb, pr_type::EXCLUSIVE_ACCESS)));
    // I1 gets REGISTRATIONS PREEMPTED, then conflicts.
    sense(
        &l.execute(I1, &cdb::read10(0, 1, RwFlags::default()), &[]),
        SenseKey::UnitAttention,
        asc::REGISTRATIONS_PREEMPTED,
    );
    assert_eq!(read(&mut l, I1), ScsiStatus::ReservationConflict);

    // Without a reservation PREEMPT only removes registrations.
    let mut l = lu();
    good(&prout(&mut l, I1, REGISTER, 0, 0, 0xa));
    good(&prout(&mut l, I2, REGISTER, 0, 0, 0xb));
    sense(
        &prout(&mut l, I1, PREEMPT, 0, 0xa, 0),
        SenseKey::IllegalRequest,
        asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    good(&prout(&mut l, I1, PREEMPT, 0, 0xa, 0xb));
    assert_eq!(keys(&mut l), vec![0xa]);
    assert_eq!(reservation(&mut l), None);

    // All-registrants with key 0: everyone else goes, preemptor reserves.
    let mut l = lu();
    good(&prout(&mut l, I1, REGISTER, 0, 0, 0xa));
    good(&prout(&mut l, I2, REGISTER, 0, 0, 0xb));
    good(&prout(&mut l, I3, REGISTER, 0, 0, 0xc));
    good(&prout(
        &mut l,
        I1,
        RESERVE,
        pr_type::WRITE_EXCLUSIVE_AR,
        0xa,
        0,
    ));
    good(&prout(
        &mut l,
        I2,
        PREEMPT,
        pr_type::WRITE_EXCLUSIVE,
        0xb,
        0,
    ));
    assert_eq!(keys(&mut l), vec![0xb]);
    assert_eq!(reservation(&mut l), Some((0xb, pr_type::WRITE_EXCLUSIVE)));
}

#[test]
fn prin_allocation_length() {
    let mut l = lu();
    good(&prout(&mut l, I1, REGISTER, 0, 0, 0xa));
    let o = l.execute(
        I1,
        &[op::PERSISTENT_RESERVE_IN, 0, 0, 0, 0, 0, 0, 0, 8, 0],
        &[],
    );
    good(&o);
    assert_eq!(o.data_in.len(), 8);
    assert_eq!(&o.data_in[4..8], &8u32.to_be_bytes());
}

/// SPC-4 7.6.4.6 (iSCSI TransportID, format code 01b): byte 0 is FORMAT
/// CODE 01b and PROTOCOL IDENTIFIER 5h (0x45), bytes 2..4 the ADDITIONAL
/// LENGTH, then the ISCSI NAME, the SEPARATOR ",i,0x", the ISCSI INITIATOR
/// SESSION ID "in the form of ASCII characters that are the hexadecimal
/// digits converted from the binary iSCSI initiator session identifier",
/// a null terminator and null padding: "The ADDITIONAL LENGTH field shall
/// be at least 20 and shall be a multiple of four." Format 00b (0x05)
/// carries the name alone.
#[test]
fn iscsi_transport_ids() {
    let t = TransportId::iscsi("iqn.x", Some([0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]));
    let b = t.as_bytes();
    assert_eq!(b[0], 0x45);
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    assert_eq!(b.len(), 4 + len);
    assert!(len >= 20 && len % 4 == 0);
    assert_eq!(&b[4..4 + 22], b"iqn.x,i,0x80123456789a");
    assert!(b[4 + 22..].iter().all(|&x| x == 0) && b.len() > 4 + 22);
    let t = TransportId::iscsi("iqn.y", None);
    let b = t.as_bytes();
    assert_eq!(b[0], 0x05);
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    assert_eq!((b.len(), len), (24, 20));
    assert_eq!(&b[4..9], b"iqn.y");
    assert!(b[9..].iter().all(|&x| x == 0));
    // A name long enough to need padding: 22 bytes + null = 23 -> 24.
    let b = TransportId::iscsi("iqn.2026-11.rs.iscsi:ab", None)
        .as_bytes()
        .to_vec();
    assert_eq!(u16::from_be_bytes([b[2], b[3]]), 24);
}

/// SPC-4 6.15.5 READ FULL STATUS: PRGENERATION, ADDITIONAL LENGTH, then
/// "a full status descriptor for each reservation key ... registered":
/// bytes 0..8 RESERVATION KEY, byte 12 ALL_TG_PT (bit 1) and R_HOLDER
/// (bit 0: "the I_T nexus described by this full status descriptor is a
/// reservation holder"), byte 13 SCOPE and TYPE ("If the R_HOLDER bit is
/// set to zero, the SCOPE and TYPE fields are not valid"; zero here),
/// bytes 18..20 RELATIVE TARGET PORT IDENTIFIER, bytes 20..24 ADDITIONAL
/// DESCRIPTOR LENGTH, then the TransportID of the initiator port.
#[test]
fn read_full_status() {
    let mut l = lu_with(iscsi_lun::LuConfig {
        relative_port: 7,
        ..iscsi_lun::LuConfig::default()
    });
    let t1 = TransportId::iscsi("iqn.one", Some([0x40, 0, 0, 0, 0, 1]));
    let t2 = TransportId::iscsi("iqn.two", Some([0x40, 0, 0, 0, 0, 2]));
    l.set_transport_id(I1, t1.clone());
    l.set_transport_id(I2, t2.clone());
    // Nothing registered: an empty list.
    let d = prin(&mut l, OBS, 3);
    assert_eq!(&d[4..8], &0u32.to_be_bytes());
    assert_eq!(d.len(), 8);
    good(&prout(&mut l, I1, REGISTER, 0, 0, 0xaa));
    good(&prout(&mut l, I2, REGISTER, 0, 0, 0xbb));
    good(&prout(
        &mut l,
        I1,
        RESERVE,
        pr_type::WRITE_EXCLUSIVE,
        0xaa,
        0,
    ));
    let gen = generation(&mut l);
    let d = prin(&mut l, OBS, 3);
    assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()), gen);
    let add = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    assert_eq!(d.len(), 8 + add);
    let mut descs = Vec::new();
    let mut at = 8;
    while at < d.len() {
        let dl = u32::from_be_bytes(d[at + 20..at + 24].try_into().unwrap()) as usize;
        descs.push(d[at..at + 24 + dl].to_vec());
        at += 24 + dl;
    }
    assert_eq!(at, d.len());
    assert_eq!(descs.len(), 2);
    let one = descs
        .iter()
        .find(|x| x[..8] == 0xaau64.to_be_bytes())
        .unwrap();
    let two = descs
        .iter()
        .find(|x| x[..8] == 0xbbu64.to_be_bytes())
        .unwrap();
    assert_eq!(
        one[12] & 0x03,
        0x01,
        "I1 holds the reservation, not ALL_TG_PT"
    );
    assert_eq!(one[13], pr_type::WRITE_EXCLUSIVE, "scope 0, type WE");
    assert_eq!(two[12] & 0x03, 0, "I2 is only registered");
    assert_eq!(two[13], 0);
    for (x, t) in [(one, &t1), (two, &t2)] {
        assert_eq!(u16::from_be_bytes([x[18], x[19]]), 7);
        assert_eq!(&x[24..], t.as_bytes());
    }
    // All-registrants: every registrant is a holder (SPC-4 5.7.9).
    good(&prout(
        &mut l,
        I1,
        RELEASE,
        pr_type::WRITE_EXCLUSIVE,
        0xaa,
        0,
    ));
    good(&prout(
        &mut l,
        I2,
        RESERVE,
        pr_type::EXCLUSIVE_ACCESS_AR,
        0xbb,
        0,
    ));
    let d = prin(&mut l, OBS, 3);
    let first_len = u32::from_be_bytes(d[28..32].try_into().unwrap()) as usize;
    for x in [&d[8..], &d[8 + 24 + first_len..]] {
        assert_eq!(x[12] & 0x01, 0x01);
        assert_eq!(x[13], pr_type::EXCLUSIVE_ACCESS_AR);
    }
    // The allocation length cuts the list (SPC-4 4.2.5.6).
    let o = l.execute(
        OBS,
        &[op::PERSISTENT_RESERVE_IN, 3, 0, 0, 0, 0, 0, 0, 12, 0],
        &[],
    );
    good(&o);
    assert_eq!(o.data_in.len(), 12);
    // Registrations (and their TransportIDs) survive the loss of the
    // nexus (SPC-4 5.7.2): I2's descriptor still names its port.
    l.nexus_lost(I2);
    let d = prin(&mut l, OBS, 3);
    assert!(d.windows(t2.as_bytes().len()).any(|w| w == t2.as_bytes()));
}
