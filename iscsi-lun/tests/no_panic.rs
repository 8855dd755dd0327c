//! Property test: no CDB and Data-Out make `execute` panic; every outcome
//! is well formed (CHECK CONDITION carries decodable sense, GOOD carries
//! none, Data-In never exceeds what the CDB allows).

mod common;

use common::*;
use iscsi_lun::{execute_no_lun, DataDirection, LogicalUnit, LuConfig, RamDisk};
use iscsi_proto::scsi::{Lun, ScsiStatus, SenseData};
use proptest::prelude::*;

/// Opcodes the LU implements, so random CDBs reach the handlers.
const OPCODES: &[u8] = &[
    0x00, 0x03, 0x08, 0x0a, 0x12, 0x15, 0x1a, 0x1b, 0x1e, 0x25, 0x28, 0x2a, 0x2e, 0x2f, 0x34, 0x35,
    0x41, 0x42, 0x55, 0x5a, 0x5e, 0x5f, 0x88, 0x89, 0x8a, 0x8e, 0x8f, 0x90, 0x91, 0x93, 0x9e, 0xa0,
    0xa8, 0xaa, 0xae, 0xaf,
];

fn small_lu() -> LogicalUnit {
    // Small LBAs are likely in random CDBs only if the disk is tiny.
    LogicalUnit::new(
        RamDisk::new(64 * 512, 512).unwrap(),
        LuConfig {
            max_transfer_blocks: 64,
            ..LuConfig::default()
        },
    )
}

fn cdb_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![proptest::sample::select(OPCODES), any::<u8>()],
        proptest::collection::vec(prop_oneof![Just(0u8), 1u8..4, any::<u8>()], 0..16),
    )
        .prop_map(|(op, rest)| {
            let mut c = vec![op];
            c.extend(rest);
            c
        })
}

fn check(lu: &LogicalUnit, cdb: &[u8], o: &iscsi_lun::ScsiOutcome) -> Result<(), TestCaseError> {
    match o.status {
        ScsiStatus::CheckCondition => {
            let s = o.sense.expect("sense with CHECK CONDITION");
            prop_assert_eq!(SenseData::parse(&s.to_fixed()).unwrap(), s);
            prop_assert_eq!(o.response_segment().len(), 20);
            prop_assert!(o.data_in.is_empty());
        }
        ScsiStatus::Good => {
            prop_assert!(o.sense.is_none());
            let t = lu.expected_transfer(cdb);
            if !o.data_in.is_empty() {
                prop_assert_eq!(t.direction, DataDirection::In);
                prop_assert!(
                    o.data_in.len() as u64 <= t.length,
                    "{} > {:?}",
                    o.data_in.len(),
                    t
                );
            }
        }
        ScsiStatus::ReservationConflict => prop_assert!(o.sense.is_none()),
        other => prop_assert!(false, "unexpected status {:?}", other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_cdbs_never_panic(
        cmds in proptest::collection::vec(
            (cdb_strategy(), proptest::collection::vec(any::<u8>(), 0..2048), 0u64..3),
            1..8,
        )
    ) {
        let mut lu = small_lu();
        for (cdb, data, nexus) in cmds {
            let o = lu.execute(iscsi_lun::NexusId(nexus), &cdb, &data);
            check(&lu, &cdb, &o)?;
            let o = execute_no_lun(&cdb, &[Lun::from_number(0)]);
            prop_assert!(o.status == ScsiStatus::Good || o.sense.is_some());
        }
    }

    #[test]
    fn random_pr_and_unmap_params(sa in 0u8..8, ty in 0u8..10, key in 0u64..3, sa_key in 0u64..3,
                                  flags in any::<u8>(), unmap in proptest::collection::vec(any::<u8>(), 0..80)) {
        let mut lu = lu();
        let mut p = vec![0u8; 24];
        p[7] = key as u8;
        p[15] = sa_key as u8;
        p[20] = flags & 0x01;
        for n in 0..3u64 {
            let o = lu.execute(iscsi_lun::NexusId(n), &[0x5f, sa, ty, 0, 0, 0, 0, 0, 24, 0], &p);
            check(&lu, &[0x5f], &o)?;
        }
        let len = (unmap.len() as u16).to_be_bytes();
        let c = [0x42, 0, 0, 0, 0, 0, 0, len[0], len[1], 0];
        let o = lu.execute(I1, &c, &unmap);
        check(&lu, &c, &o)?;
    }
}
