//! One CDB copy per command: `ScsiCommand.cdb` is a [`Cdb`] stored inline
//! up to 16 bytes (RFC 7143 section 11.3.5: the BHS's CDB field), so
//! building a READ/WRITE(16) command allocates nothing for its CDB. Longer
//! CDBs (section 11.2.2.3, Extended CDB AHS) are kept in a `Bytes`.
//! Allocations are counted by a global allocator wrapping `System` (this
//! test binary only), deterministic: not a timed test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use iscsi_proto::initiator::{ScsiCommand, SessionConfig, TaskOutcome};
use iscsi_proto::scsi::cdb::{read10, read16, write16, Cdb, RwFlags};
use iscsi_proto::scsi::Lun;
use iscsi_proto::testing::Pair;
use iscsi_proto::wire::pdu::{Header, Residual};

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is forwarded unchanged to `System`; the counter is a
// const-initialised thread local (no allocation, no drop).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn building_read_and_write_16_allocates_nothing_for_the_cdb() {
    // Cloning a `Vec`-backed `Bytes` the first time allocates its shared
    // header: done before counting (the data is not the CDB).
    let data = Bytes::from(vec![7u8; 4096]);
    let data2 = data.clone();
    let before = allocs();
    let r = std::hint::black_box(ScsiCommand::read(
        Lun::ZERO,
        read16(1234, 8, RwFlags::default()),
        4096,
    ));
    let w = std::hint::black_box(ScsiCommand::write(
        Lun::ZERO,
        write16(99, 8, RwFlags::default()),
        data2,
    ));
    let t = std::hint::black_box(ScsiCommand::new(Lun::ZERO, &[0u8; 6][..]));
    let c = std::hint::black_box(r.clone());
    assert_eq!(allocs() - before, 0, "no allocation for a 16-byte CDB");
    assert!(r.cdb.is_inline() && w.cdb.is_inline() && t.cdb.is_inline());
    assert_eq!(&r.cdb[..], &read16(1234, 8, RwFlags::default())[..]);
    assert_eq!(c, r);
    // The counter works (so the assertion above can fail).
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 17]);
    assert_eq!(allocs() - before, 1);
    drop(v);
}

/// Callers compile unchanged: arrays, slices, `Vec<u8>` and `Bytes` all
/// make the same CDB; a `Vec` or `Bytes` of at most 16 bytes is copied
/// inline.
#[test]
fn every_cdb_form_gives_the_same_cdb() {
    let a = read10(5, 1, RwFlags::default());
    let forms: [Cdb; 5] = [
        a.into(),
        (&a).into(),
        a[..].into(),
        a.to_vec().into(),
        Bytes::copy_from_slice(&a).into(),
    ];
    for f in &forms {
        assert_eq!(f, &forms[0]);
        assert_eq!(f.len(), 10);
        assert!(f.is_inline());
        assert_eq!(f.extended(), None);
        let mut bhs = [0u8; 16];
        bhs[..10].copy_from_slice(&a);
        assert_eq!(f.bhs_field(), bhs, "zero-padded (RFC 7143 section 11.3.5)");
    }
    assert_eq!(Bytes::from(forms[0].clone()), Bytes::copy_from_slice(&a));
}

/// RFC 7143 section 11.2.2.3: "the Extended CDB AHS ... contains the CDB
/// bytes beyond the first 16". A 32-byte CDB keeps its first 16 bytes in
/// the BHS field and the rest in the AHS, unchanged on the wire.
#[test]
fn a_long_cdb_travels_in_an_extended_cdb_ahs() {
    let long: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(3) | 1).collect();
    let c = Cdb::from(long.clone());
    assert!(!c.is_inline());
    assert_eq!(&c[..], &long[..]);
    assert_eq!(c.bhs_field()[..], long[..16]);
    assert_eq!(c.extended().as_deref(), Some(&long[16..]));

    let mut p =
        Pair::new(SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk"));
    p.login();
    let task = p
        .session
        .submit(p.now, ScsiCommand::new(Lun::ZERO, long.clone()))
        .unwrap();
    p.flush();
    let pdu = p.target.expect();
    let Header::ScsiCommand(h) = pdu.header else {
        panic!("expected the SCSI Command")
    };
    assert_eq!(h.cdb[..], long[..16]);
    let ext = pdu.ahs.iter().find_map(|a| match a {
        iscsi_proto::wire::Ahs::ExtendedCdb(b) => Some(b.clone()),
        _ => None,
    });
    assert_eq!(ext.as_deref(), Some(&long[16..]));
    p.target.ack_cmd(h.cmd_sn);
    p.target.scsi_response(h.itt, 0, Residual::None, None);
    p.deliver();
    assert!(matches!(p.outcome(task), Some(TaskOutcome::Scsi(r)) if r.is_good()));
}

/// A 16-byte CDB goes out in the BHS alone, byte for byte.
#[test]
fn a_read_16_goes_out_in_the_bhs() {
    let mut p =
        Pair::new(SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk"));
    p.login();
    let cdb = read16(0x0102_0304_0506, 16, RwFlags::default());
    p.session
        .submit(p.now, ScsiCommand::read(Lun::ZERO, cdb, 8192))
        .unwrap();
    p.flush();
    let pdu = p.target.expect();
    let Header::ScsiCommand(h) = pdu.header else {
        panic!("expected the SCSI Command")
    };
    assert_eq!(h.cdb, cdb);
    assert!(pdu.ahs.is_empty());
}
