//! Property: whatever the command mix, the negotiated R2T/immediate-data
//! policy, the digests, the window, the timers firing in between and the
//! points where the byte streams are cut, every task ends exactly once and
//! the data read and written matches a model of the disk.

mod pair_support;

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::error::TaskError;
use iscsi_proto::initiator::{LogoutMode, ScsiCommand, TaskId, TaskOutcome};
use iscsi_proto::login::DigestType;
use iscsi_proto::scsi::cdb;
use iscsi_proto::target::NopConfig;
use iscsi_proto::wire::TmfResponse;
use pair_support::*;
use proptest::prelude::*;

/// Blocks per slot: each command of a batch owns one slot, so commands of
/// one batch never overlap and the model is unambiguous.
const SLOT: u32 = 96;
const SLOTS: u32 = 24;
const DISK: u64 = (SLOT * SLOTS * BS) as u64;

#[derive(Debug, Clone)]
enum Op {
    Read {
        blocks: u16,
        skew: u16,
    },
    Write {
        blocks: u16,
        skew: u16,
    },
    TestUnitReady,
    Inquiry,
    ReadCapacity,
    /// A read to a LUN that does not exist.
    NoLun,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u16..=SLOT as u16, any::<u16>()).prop_map(|(blocks, skew)| Op::Read { blocks, skew }),
        4 => (1u16..=SLOT as u16, any::<u16>()).prop_map(|(blocks, skew)| Op::Write { blocks, skew }),
        1 => Just(Op::TestUnitReady),
        1 => Just(Op::Inquiry),
        1 => Just(Op::ReadCapacity),
        1 => Just(Op::NoLun),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    seed: u64,
    initial_r2t: bool,
    immediate_data: bool,
    digests: bool,
    window: u32,
    max_r2t: u16,
    /// (target MRDSL, initiator MRDSL, MaxBurst, FirstBurst) picks.
    limits: (u32, u32, u32, u32),
    nop: bool,
    /// CmdSN of the leading login (near 2^32 to cross the wrap).
    initial_cmd_sn: u32,
    /// The target's transmit high-water mark (back-pressure).
    max_queued_transmits: usize,
    /// Batches of commands; with each, an optional task (by index) to
    /// abort and whether timers run while the batch is in flight.
    batches: Vec<(Vec<Op>, Option<usize>, bool)>,
    /// Initiator PDUs written per round (a slow socket), if limited.
    slow: Option<usize>,
    /// With digests on: corrupt the data of the first Data-Out (`true`)
    /// or of the first SCSI Command with immediate data (`false`).
    corrupt: Option<bool>,
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    let limits = (
        prop_oneof![Just(512u32), Just(1024), Just(4096), Just(8192)],
        prop_oneof![Just(512u32), Just(2048), Just(8192)],
        prop_oneof![Just(4096u32), Just(16384), Just(65536)],
        prop_oneof![Just(512u32), Just(4096), Just(16384)],
    )
        .prop_map(|(t, i, mb, fb)| (t, i, mb, fb.min(mb)));
    let batch = (
        prop::collection::vec(op_strategy(), 1..=10),
        prop::option::weighted(0.25, 0usize..10),
        any::<bool>(),
    );
    (
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        1u32..=6,
        1u16..=3,
        limits,
        any::<bool>(),
        prop::collection::vec(batch, 1..=4),
        (
            prop_oneof![Just(1u32), u32::MAX - 40..=u32::MAX, any::<u32>()],
            prop_oneof![Just(1usize), Just(2), Just(1024)],
            prop::option::of(1usize..=3),
            prop::option::weighted(0.3, any::<bool>()),
        ),
    )
        .prop_map(
            |(
                seed,
                initial_r2t,
                immediate_data,
                digests,
                window,
                max_r2t,
                limits,
                nop,
                batches,
                (initial_cmd_sn, max_queued_transmits, slow, corrupt),
            )| {
                Setup {
                    slow,
                    corrupt,
                    initial_cmd_sn,
                    max_queued_transmits,
                    seed,
                    initial_r2t,
                    immediate_data,
                    digests,
                    window,
                    max_r2t,
                    limits,
                    nop,
                    batches,
                }
            },
        )
}

enum Expect {
    Read { offset: usize, len: usize },
    Write { offset: usize, data: Bytes },
    Good,
    NoLun,
}

fn run(s: &Setup) {
    let (tm, im, mb, fb) = s.limits;
    let mut tc = tgt_config(1);
    tc.params = params(s.initial_r2t, s.immediate_data, tm, mb, fb);
    tc.params.max_outstanding_r2t = s.max_r2t;
    tc.cmd_window = s.window;
    tc.seed = s.seed;
    tc.max_queued_transmits = s.max_queued_transmits;
    let mut ic = ini_config().with_initial_cmd_sn(s.initial_cmd_sn);
    ic.operational = params(s.initial_r2t, s.immediate_data, im, mb, fb);
    ic.operational.max_outstanding_r2t = s.max_r2t;
    if s.digests {
        for p in [&mut tc.params, &mut ic.operational] {
            p.header_digest = vec![DigestType::Crc32c];
            p.data_digest = vec![DigestType::Crc32c];
        }
    }
    if s.nop {
        tc.nop = Some(NopConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
        });
        ic.keepalive = Some(iscsi_proto::initiator::Keepalive {
            interval: Duration::from_millis(1500),
            timeout: Duration::from_secs(30),
        });
    }
    let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(s.seed));
    h.login();
    h.ini_tx_per_step = s.slow;
    if s.digests {
        h.corrupt_next_ini_data = s
            .corrupt
            .map(|d| if d { op::DATA_OUT } else { op::SCSI_CMD });
    }
    assert_eq!(h.ini.negotiated().unwrap().header_digest, s.digests);

    let mut model = vec![0u8; DISK as usize];
    let mut submitted = 0usize;
    for (bi, (ops, abort, timers)) in s.batches.iter().enumerate() {
        let mut tasks: Vec<(TaskId, Expect)> = Vec::new();
        for (i, o) in ops.iter().enumerate() {
            let slot_lba = (i as u32 % SLOTS) * SLOT;
            let (cmd, exp) = match *o {
                Op::Read { blocks, skew } => {
                    let lba = slot_lba + u32::from(skew) % (SLOT - u32::from(blocks) + 1);
                    let len = usize::from(blocks) * BS as usize;
                    (
                        ScsiCommand::read(
                            iscsi_proto::scsi::Lun::from_u64(lun(0)),
                            Bytes::copy_from_slice(&cdb::read10(lba, blocks, Default::default())),
                            len as u32,
                        ),
                        Expect::Read {
                            offset: lba as usize * BS as usize,
                            len,
                        },
                    )
                }
                Op::Write { blocks, skew } => {
                    let lba = slot_lba + u32::from(skew) % (SLOT - u32::from(blocks) + 1);
                    let len = usize::from(blocks) * BS as usize;
                    let data = pattern(s.seed ^ ((bi as u64) << 32) ^ i as u64, len);
                    (
                        ScsiCommand::write(
                            iscsi_proto::scsi::Lun::from_u64(lun(0)),
                            Bytes::copy_from_slice(&cdb::write10(lba, blocks, Default::default())),
                            data.clone(),
                        ),
                        Expect::Write {
                            offset: lba as usize * BS as usize,
                            data,
                        },
                    )
                }
                Op::TestUnitReady => (
                    ScsiCommand::new(
                        iscsi_proto::scsi::Lun::from_u64(lun(0)),
                        Bytes::copy_from_slice(&cdb::test_unit_ready()),
                    ),
                    Expect::Good,
                ),
                Op::Inquiry => (
                    ScsiCommand::read(
                        iscsi_proto::scsi::Lun::from_u64(lun(0)),
                        Bytes::copy_from_slice(&cdb::inquiry(255)),
                        255,
                    ),
                    Expect::Good,
                ),
                Op::ReadCapacity => (
                    ScsiCommand::read(
                        iscsi_proto::scsi::Lun::from_u64(lun(0)),
                        Bytes::copy_from_slice(&cdb::read_capacity10()),
                        8,
                    ),
                    Expect::Good,
                ),
                Op::NoLun => (
                    ScsiCommand::read(
                        iscsi_proto::scsi::Lun::from_u64(lun(5)),
                        Bytes::copy_from_slice(&cdb::read10(0, 1, Default::default())),
                        512,
                    ),
                    Expect::NoLun,
                ),
            };
            tasks.push((h.submit(cmd), exp));
        }
        submitted += tasks.len();
        let mut tmf = None;
        if let Some(victim) = abort.and_then(|a| tasks.get(a % tasks.len().max(1))) {
            // Let some of the traffic through first so the abort can land
            // anywhere: before sending, while in flight, after completion.
            if victim.0.itt() % 2 == 0 {
                h.pump();
            }
            tmf = h.ini.abort_task(h.now, victim.0).ok();
        }
        if *timers {
            h.advance(Duration::from_secs(3));
        } else {
            h.pump();
        }
        if let Some(t) = tmf {
            match h.outcome(t) {
                Some(TaskOutcome::TaskManagement(
                    TmfResponse::FunctionComplete | TmfResponse::TaskDoesNotExist,
                )) => {}
                other => panic!("ABORT TASK outcome {other:?}"),
            }
        }
        for (t, exp) in tasks {
            let outcome = h
                .outcome(t)
                .unwrap_or_else(|| panic!("task {t:?} never completed"))
                .clone();
            if let TaskOutcome::Failed(TaskError::Rejected(_)) = outcome {
                // The command PDU carrying corrupted immediate data.
                assert!(s.digests && s.corrupt == Some(false));
                assert!(matches!(exp, Expect::Write { .. }));
                if let Expect::Write { offset, data } = &exp {
                    assert!(
                        h.disk(0, *offset as u64, data.len())
                            == model[*offset..offset + data.len()]
                    );
                }
                continue;
            }
            if let TaskOutcome::Failed(TaskError::Aborted(_)) = outcome {
                // An aborted write ran entirely or not at all.
                if let Expect::Write { offset, data } = &exp {
                    let now = h.disk(0, *offset as u64, data.len());
                    let old = &model[*offset..offset + data.len()];
                    assert!(now == data[..] || now == old, "aborted write half-applied");
                    model[*offset..offset + data.len()].copy_from_slice(&now);
                }
                continue;
            }
            let r = match outcome {
                TaskOutcome::Scsi(r) => r,
                other => panic!("task {t:?}: {other:?}"),
            };
            match exp {
                Expect::Read { offset, len } => {
                    assert!(r.is_good(), "{r:?}");
                    assert_eq!(r.bytes_read as usize, len);
                    assert!(
                        h.read_data(t) == &model[offset..offset + len],
                        "read data differs at offset {offset} len {len}"
                    );
                }
                Expect::Write { offset, data } if r.is_good() => {
                    model[offset..offset + data.len()].copy_from_slice(&data);
                }
                Expect::Write { offset, data } => {
                    // Only the write whose data was corrupted may fail,
                    // and then nothing of it reaches the disk.
                    assert!(s.digests && s.corrupt.is_some(), "{r:?}");
                    assert!(
                        h.disk(0, offset as u64, data.len()) == model[offset..offset + data.len()],
                        "a failed write changed the disk"
                    );
                }
                Expect::Good => assert!(r.is_good(), "{r:?}"),
                Expect::NoLun => {
                    assert_eq!(r.status, 0x02);
                    assert!(h.read_data(t).is_empty());
                }
            }
        }
        assert!(
            h.disk(0, 0, DISK as usize) == model,
            "disk differs from the model"
        );
        assert!(h.ini.is_logged_in());
        assert_eq!(h.ini.tasks_in_flight(), 0);
        h.assert_target_settled();
    }
    assert!(h.outcomes.len() >= submitted);
    let lt = h.ini.logout(h.now, LogoutMode::WaitForTasks).unwrap();
    h.pump();
    assert!(matches!(h.outcome(lt), Some(TaskOutcome::LoggedOut(_))));
    if !(s.digests && s.corrupt.is_some()) {
        assert_eq!(h.tgt.rejects_sent(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_mixes_random_cuts(s in setup_strategy()) {
        run(&s);
    }
}

/// The same mix under many segmentations gives the same disk.
#[test]
fn segmentation_does_not_matter() {
    let ops: Vec<Op> = (0..10)
        .map(|i| {
            if i % 3 == 0 {
                Op::Read {
                    blocks: 40,
                    skew: i,
                }
            } else {
                Op::Write {
                    blocks: (i * 9 % 90 + 1),
                    skew: i * 7,
                }
            }
        })
        .collect();
    for seed in 0..16u64 {
        let s = Setup {
            seed,
            initial_r2t: seed % 2 == 0,
            immediate_data: seed % 4 < 2,
            digests: seed % 3 == 0,
            window: 1 + (seed % 4) as u32,
            max_r2t: 1 + (seed % 2) as u16,
            limits: (1024, 512, 4096, 2048),
            nop: seed % 5 == 0,
            initial_cmd_sn: u32::MAX - seed as u32 * 3,
            max_queued_transmits: 1 + seed as usize % 3,
            slow: (seed % 3 == 1).then_some(1 + seed as usize % 2),
            corrupt: None,
            batches: vec![(ops.clone(), None, false), (ops.clone(), None, true)],
        };
        run(&s);
    }
}
