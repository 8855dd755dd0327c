//! Initiator core against target core in memory: SCSI I/O through the
//! whole stack (INQUIRY, READ CAPACITY, reads and writes of many sizes in
//! every InitialR2T x ImmediateData combination), the CmdSN window, and
//! task management (ABORT TASK, LOGICAL UNIT RESET).

mod pair_support;

use bytes::Bytes;
use iscsi_proto::error::TaskError;
use iscsi_proto::initiator::{LogoutMode, ScsiCommand, TaskId, TaskOutcome};
use iscsi_proto::scsi::cdb::{self, Capacity, StandardInquiry};
use iscsi_proto::scsi::{SenseData, SenseKey};
use iscsi_proto::target::Event as TargetEvent;
use iscsi_proto::wire::{Residual, ScsiResponseCode, TmfFunction, TmfResponse};
use pair_support::*;

const DISK: u64 = 4 << 20;

fn read_cmd(lba: u32, blocks: u16) -> ScsiCommand {
    ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::read10(lba, blocks, Default::default())),
        u32::from(blocks) * BS,
    )
}

fn write_cmd(lba: u32, data: Bytes) -> ScsiCommand {
    let blocks = (data.len() / BS as usize) as u16;
    ScsiCommand::write(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::write10(lba, blocks, Default::default())),
        data,
    )
}

fn logout(h: &mut Harness) {
    let t = h.ini.logout(h.now, LogoutMode::WaitForTasks).unwrap();
    h.pump();
    assert!(matches!(h.outcome(t), Some(TaskOutcome::LoggedOut(_))));
    h.assert_target_settled();
}

#[test]
fn inquiry_and_read_capacity() {
    let mut h = Harness::new(
        ini_config(),
        tgt_config(2),
        &[DISK, 1 << 20],
        Cuts::Random(1),
    );
    h.login();
    let (r, data) = h.run(ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::inquiry(96)),
        96,
    ));
    assert!(r.is_good(), "{r:?}");
    assert_eq!(r.bytes_read as usize, data.len());
    let inq = StandardInquiry::parse(&data).unwrap();
    assert_eq!(inq.device_type, 0);
    assert_eq!(inq.peripheral_qualifier, 0);
    assert_eq!(inq.vendor.trim(), "RUST");
    assert_eq!(inq.product.trim(), "ISCSI-LUN DISK");
    // Less data than asked for is an underflow residual (RFC 7143
    // section 11.4.5.1).
    if data.len() < 96 {
        assert_eq!(
            r.residual,
            iscsi_proto::wire::Residual::Underflow(96 - data.len() as u32)
        );
    }

    let (r, data) = h.run(ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::read_capacity10()),
        8,
    ));
    assert!(r.is_good());
    let cap = Capacity::parse10(&data).unwrap();
    assert_eq!(cap.block_len, BS);
    assert_eq!(cap.last_lba + 1, DISK / u64::from(BS));

    let (r, data) = h.run(ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(1)),
        Bytes::copy_from_slice(&cdb::read_capacity16(32)),
        32,
    ));
    assert!(r.is_good());
    let cap = Capacity::parse16(&data).unwrap();
    assert_eq!(cap.last_lba + 1, (1 << 20) / u64::from(BS));

    // A LUN that does not exist: LOGICAL UNIT NOT SUPPORTED.
    let (r, _) = h.run(ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(9)),
        Bytes::copy_from_slice(&cdb::read_capacity10()),
        8,
    ));
    assert_eq!(r.response, ScsiResponseCode::CommandCompleted);
    assert_eq!(r.status, 0x02u8);
    let s = r.sense_data.expect("sense");
    assert!(s.is(SenseKey::IllegalRequest, (0x25, 0x00)), "{s}");
    logout(&mut h);
}

/// Sizes around every limit: 512 bytes, MRDSL (4 KiB), FirstBurstLength
/// (8 KiB), MaxBurstLength (16 KiB) and well beyond.
const SIZES: [usize; 9] = [
    512,
    4096,
    4608,
    8192,
    8704,
    16384,
    16896,
    65536,
    262144 + 512,
];

fn io_combination(initial_r2t: bool, immediate_data: bool, seed: u64) {
    let mut tc = tgt_config(1);
    tc.params = params(initial_r2t, immediate_data, 4096, 16384, 8192);
    let mut ic = ini_config();
    ic.operational = params(initial_r2t, immediate_data, 2048, 16384, 8192);
    let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(seed));
    h.login();
    let n = h.ini.negotiated().unwrap().clone();
    assert_eq!(n.initial_r2t, initial_r2t);
    assert_eq!(n.immediate_data, immediate_data);
    assert_eq!(n.max_burst_length, 16384);
    assert_eq!(n.first_burst_length, 8192);
    assert_eq!(n.target_max_recv_data_segment_length, 4096);
    assert_eq!(n.initiator_max_recv_data_segment_length, 2048);

    let mut lba = 0u32;
    for (i, &size) in SIZES.iter().enumerate() {
        let data = pattern(seed * 100 + i as u64, size);
        let before = h.ini_pdus.len();
        let (r, _) = h.run(write_cmd(lba, data.clone()));
        assert!(r.is_good(), "write {size}: {r:?}");
        assert_eq!(r.residual, iscsi_proto::wire::Residual::None);
        assert_eq!(h.disk(0, u64::from(lba) * u64::from(BS), size), data[..]);

        // What went on the wire for this write.
        let sent = &h.ini_pdus[before..];
        let cmd = sent.iter().find(|s| s.opcode == op::SCSI_CMD).unwrap();
        let unsolicited: usize = sent
            .iter()
            .filter(|s| s.opcode == op::DATA_OUT && s.ttt == 0xffff_ffff)
            .map(|s| s.dsl as usize)
            .sum();
        let solicited: usize = sent
            .iter()
            .filter(|s| s.opcode == op::DATA_OUT && s.ttt != 0xffff_ffff)
            .map(|s| s.dsl as usize)
            .sum();
        // RFC 7143 section 13.11/13.10: immediate data up to
        // min(FirstBurstLength, MaxRecvDataSegmentLength); unsolicited
        // Data-Out only with InitialR2T=No, up to FirstBurstLength in all.
        let first = size.min(8192);
        let imm = if immediate_data { size.min(4096) } else { 0 };
        assert_eq!(
            cmd.dsl as usize, imm,
            "immediate data of a {size}-byte write"
        );
        let want_unsol = if initial_r2t { 0 } else { first - imm };
        assert_eq!(unsolicited, want_unsol, "unsolicited data of {size}");
        assert_eq!(imm + unsolicited + solicited, size);
        for s in sent.iter().filter(|s| s.opcode == op::DATA_OUT) {
            assert!(s.dsl <= 4096, "Data-Out above the target's MRDSL");
        }
        lba += (size / BS as usize) as u32;
    }
    // RFC 7143 section 13.13: an R2T asks for at most MaxBurstLength.
    let r2ts = h.tgt_sent(op::R2T);
    assert!(!r2ts.is_empty(), "writes beyond FirstBurstLength need R2Ts");
    for r2t in r2ts {
        assert!(
            r2t.word44 > 0 && r2t.word44 <= 16384,
            "R2T for {}",
            r2t.word44
        );
    }

    // Read everything back in one go and in pieces.
    let total: usize = SIZES.iter().sum();
    let blocks = (total / BS as usize) as u16;
    let expect = h.disk(0, 0, total);
    let (r, data) = h.run(read_cmd(0, blocks));
    assert!(r.is_good(), "{r:?}");
    assert_eq!(r.bytes_read as usize, total);
    assert_eq!(data, expect);
    for s in h.tgt_sent(op::DATA_IN) {
        assert!(s.dsl <= 2048, "Data-In above the initiator's MRDSL");
    }
    let mut lba = 0u32;
    for (i, &size) in SIZES.iter().enumerate() {
        let (r, data) = h.run(read_cmd(lba, (size / BS as usize) as u16));
        assert!(r.is_good());
        assert_eq!(data[..], pattern(seed * 100 + i as u64, size)[..]);
        lba += (size / BS as usize) as u32;
    }
    logout(&mut h);
}

#[test]
fn io_initial_r2t_yes_immediate_data_yes() {
    io_combination(true, true, 1);
}

#[test]
fn io_initial_r2t_yes_immediate_data_no() {
    io_combination(true, false, 2);
}

#[test]
fn io_initial_r2t_no_immediate_data_yes() {
    io_combination(false, true, 3);
}

#[test]
fn io_initial_r2t_no_immediate_data_no() {
    io_combination(false, false, 4);
}

#[test]
fn io_combinations_whole_stream() {
    // Same again with the stream delivered whole (no cuts).
    let mut tc = tgt_config(1);
    tc.params = params(false, true, 8192, 65536, 16384);
    let mut ic = ini_config();
    ic.operational = params(false, true, 8192, 65536, 16384);
    let mut h = Harness::new(ic, tc, &[DISK], Cuts::Whole);
    h.login();
    let data = pattern(42, 300 * 1024);
    let (r, _) = h.run(write_cmd(100, data.clone()));
    assert!(r.is_good());
    let (r, back) = h.run(read_cmd(100, 600));
    assert!(r.is_good());
    assert_eq!(back, data[..]);
    logout(&mut h);
}

#[test]
fn several_outstanding_r2ts() {
    let mut tc = tgt_config(1);
    tc.params = params(true, false, 4096, 8192, 4096);
    tc.params.max_outstanding_r2t = 4;
    let mut ic = ini_config();
    ic.operational = params(true, false, 4096, 8192, 4096);
    ic.operational.max_outstanding_r2t = 4;
    let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(9));
    h.login();
    assert_eq!(h.ini.negotiated().unwrap().max_outstanding_r2t, 4);
    let data = pattern(5, 128 * 1024);
    let (r, _) = h.run(write_cmd(64, data.clone()));
    assert!(r.is_good(), "{r:?}");
    assert_eq!(h.disk(0, 64 * 512, data.len()), data[..]);
    assert!(h.tgt_sent(op::R2T).len() >= 16);
    logout(&mut h);
}

#[test]
fn cmd_window_small_with_64_queued_commands() {
    for seed in [0u64, 1, 2] {
        let mut tc = tgt_config(1);
        tc.cmd_window = 3;
        tc.params = params(true, true, 8192, 16384, 8192);
        let mut ic = ini_config();
        ic.operational = params(true, true, 8192, 16384, 8192);
        let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(seed));
        h.login();
        let mut tasks = Vec::new();
        let mut written = Vec::new();
        for i in 0..64u32 {
            let lba = i * 16;
            let t = if i % 2 == 0 {
                let d = pattern(u64::from(i) + seed * 1000, 16 * 512);
                written.push((lba, d.clone()));
                h.submit(write_cmd(lba, d))
            } else {
                h.submit(read_cmd(lba, 16))
            };
            tasks.push(t);
        }
        // Nothing has moved yet: all but the window are queued.
        assert!(h.ini.queued_commands() >= 60, "{}", h.ini.queued_commands());
        h.pump();
        for &t in &tasks {
            assert!(h.scsi(t).is_good(), "{:?}", h.outcome(t));
        }
        assert_eq!(h.outcomes.len(), 64);
        // The harness checked every CmdSN against the advertised MaxCmdSN
        // as it was sent; the target never held more than the window.
        assert!(h.max_queued >= 60);
        let cmds = h.ini_sent(op::SCSI_CMD);
        assert_eq!(cmds.len(), 64);
        assert_eq!(h.tgt.rejects_sent(), 0);
        assert!(h.max_tgt_live <= 3, "target held {} tasks", h.max_tgt_live);
        for (lba, d) in written {
            assert_eq!(h.disk(0, u64::from(lba) * 512, d.len()), d[..]);
        }
        logout(&mut h);
    }
}

#[test]
fn cmd_window_of_one() {
    let mut tc = tgt_config(1);
    tc.cmd_window = 1;
    let mut h = Harness::new(ini_config(), tc, &[DISK], Cuts::Random(5));
    h.login();
    let tasks: Vec<TaskId> = (0..20).map(|i| h.submit(read_cmd(i, 1))).collect();
    h.pump();
    for t in tasks {
        assert!(h.scsi(t).is_good());
    }
    assert!(h.max_tgt_live <= 1);
    logout(&mut h);
}

#[test]
fn abort_task_of_in_flight_command() {
    for seed in 0..4 {
        let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(seed));
        h.login();
        h.hold = true;
        let victim = h.submit(read_cmd(0, 8));
        let other = h.submit(read_cmd(8, 8));
        h.pump();
        assert_eq!(h.held.len(), 2);
        let tmf = h.ini.abort_task(h.now, victim).unwrap();
        h.pump();
        assert_eq!(
            h.outcome(tmf),
            Some(&TaskOutcome::TaskManagement(TmfResponse::FunctionComplete))
        );
        assert_eq!(
            h.outcome(victim),
            Some(&TaskOutcome::Failed(TaskError::Aborted(
                TmfFunction::AbortTask
            )))
        );
        // The target reported the abort and dropped the command.
        assert_eq!(h.held.len(), 1);
        assert!(h
            .tevents
            .iter()
            .any(|e| matches!(e, TargetEvent::TaskAborted { .. })));
        assert!(h.outcome(other).is_none());
        h.hold = false;
        h.release();
        assert!(h.scsi(other).is_good());
        assert_eq!(h.read_data(other), &h.disk(0, 8 * 512, 8 * 512)[..]);
        // No data arrived for the aborted read.
        assert!(h.read_data(victim).is_empty());
        // The session is healthy.
        let (r, _) = h.run(read_cmd(0, 1));
        assert!(r.is_good());
        assert_eq!(h.outcomes.len(), 4);
        logout(&mut h);
    }
}

#[test]
fn abort_task_of_held_write() {
    let mut tc = tgt_config(1);
    tc.params = params(true, false, 4096, 16384, 8192);
    let mut ic = ini_config();
    ic.operational = params(true, false, 4096, 16384, 8192);
    let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(12));
    h.login();
    let before = h.disk(0, 0, 32 * 1024);
    h.hold = true;
    let w = h.submit(write_cmd(0, pattern(77, 32 * 1024)));
    h.pump();
    assert_eq!(h.held.len(), 1, "the write's data all arrived");
    let tmf = h.ini.abort_task(h.now, w).unwrap();
    h.pump();
    assert_eq!(
        h.outcome(tmf),
        Some(&TaskOutcome::TaskManagement(TmfResponse::FunctionComplete))
    );
    assert!(matches!(
        h.outcome(w),
        Some(TaskOutcome::Failed(TaskError::Aborted(_)))
    ));
    h.hold = false;
    h.release();
    // Never executed: the disk is unchanged.
    assert_eq!(h.disk(0, 0, 32 * 1024), before);
    logout(&mut h);
}

/// RFC 7143 section 11.5.1: "The iSCSI target MUST ensure that no
/// responses for the tasks covered by a task management function are
/// delivered to the iSCSI initiator after the Task Management response";
/// RFC 3720 10.6.2, the target "c) Propagates the command to and receives
/// the response from the target SCSI layer" before "e) Sends the task set
/// management response". While the application has not stopped an
/// aborted write, the initiator gets no answer; once it has, the answer
/// comes and the write never reaches the medium.
#[test]
fn tmf_answered_only_after_the_application_stopped_the_write() {
    for f in [
        TmfFunction::AbortTask,
        TmfFunction::AbortTaskSet,
        TmfFunction::LogicalUnitReset,
    ] {
        let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(5));
        h.login();
        let before = h.disk(0, 0, 8 * 512);
        h.hold = true;
        h.defer_abort_acks = true;
        let w = h.submit(write_cmd(0, pattern(9, 8 * 512)));
        h.pump();
        assert_eq!(h.held.len(), 1, "the application took the write");
        let tmf = match f {
            TmfFunction::AbortTask => h.ini.abort_task(h.now, w).unwrap(),
            _ => h.ini.task_management(h.now, lun(0), f).unwrap(),
        };
        h.pump();
        assert_eq!(h.unacked_aborts.len(), 1, "{f:?}");
        assert!(h.outcome(tmf).is_none(), "{f:?}: answered before the ack");
        assert!(h.tgt_sent(op::TMF_RESP).is_empty(), "{f:?}");
        h.ack_aborts();
        assert_eq!(
            h.outcome(tmf),
            Some(&TaskOutcome::TaskManagement(TmfResponse::FunctionComplete)),
            "{f:?}"
        );
        assert!(matches!(
            h.outcome(w),
            Some(TaskOutcome::Failed(TaskError::Aborted(_)))
        ));
        // The application has nothing left to run; the medium is as before.
        h.hold = false;
        h.release();
        assert_eq!(h.disk(0, 0, 8 * 512), before, "{f:?}");
        logout(&mut h);
    }
}

#[test]
fn abort_task_racing_the_response() {
    // The target completes the command while the ABORT TASK is on its way:
    // the command keeps its real outcome, the TMF still gets an answer,
    // each exactly once.
    for seed in 0..6 {
        let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(seed));
        h.login();
        h.hold = true;
        let t = h.submit(read_cmd(0, 4));
        h.pump();
        let tmf = h.ini.abort_task(h.now, t).unwrap();
        // Complete at the target before the TMF is moved.
        h.hold = false;
        let held = std::mem::take(&mut h.held);
        for req in &held {
            h.execute(req);
        }
        h.pump();
        assert!(h.scsi(t).is_good(), "{:?}", h.outcome(t));
        assert!(
            matches!(h.outcome(tmf), Some(TaskOutcome::TaskManagement(_))),
            "{:?}",
            h.outcome(tmf)
        );
        assert_eq!(h.outcomes.len(), 2);
        logout(&mut h);
    }
}

#[test]
fn abort_of_a_queued_command_is_local() {
    let mut tc = tgt_config(1);
    tc.cmd_window = 1;
    let mut h = Harness::new(ini_config(), tc, &[DISK], Cuts::Whole);
    h.login();
    h.hold = true;
    let first = h.submit(read_cmd(0, 1));
    let queued = h.submit(read_cmd(1, 1));
    h.pump();
    assert_eq!(h.ini.queued_commands(), 1);
    let tmf = h.ini.abort_task(h.now, queued).unwrap();
    h.pump();
    assert_eq!(
        h.outcome(queued),
        Some(&TaskOutcome::Failed(TaskError::Aborted(
            TmfFunction::AbortTask
        )))
    );
    assert_eq!(
        h.outcome(tmf),
        Some(&TaskOutcome::TaskManagement(TmfResponse::FunctionComplete))
    );
    assert!(h.ini_sent(op::TMF_REQ).is_empty());
    h.hold = false;
    h.release();
    assert!(h.scsi(first).is_good());
    assert_eq!(h.ini_sent(op::SCSI_CMD).len(), 1);
    logout(&mut h);
}

#[test]
fn lun_reset_aborts_every_task_on_the_lun_once() {
    for seed in 0..4 {
        let mut h = Harness::new(
            ini_config(),
            tgt_config(2),
            &[DISK, 1 << 20],
            Cuts::Random(seed),
        );
        h.login();
        h.hold = true;
        let on0: Vec<TaskId> = (0..4).map(|i| h.submit(read_cmd(i, 1))).collect();
        let on1 = h.submit(ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(lun(1)),
            Bytes::copy_from_slice(&cdb::read10(0, 1, Default::default())),
            512,
        ));
        h.pump();
        assert_eq!(h.held.len(), 5);
        let tmf = h
            .ini
            .task_management(h.now, lun(0), TmfFunction::LogicalUnitReset)
            .unwrap();
        h.pump();
        assert_eq!(
            h.outcome(tmf),
            Some(&TaskOutcome::TaskManagement(TmfResponse::FunctionComplete))
        );
        for t in &on0 {
            assert_eq!(
                h.outcome(*t),
                Some(&TaskOutcome::Failed(TaskError::Aborted(
                    TmfFunction::LogicalUnitReset
                ))),
            );
        }
        assert!(h.outcome(on1).is_none(), "LUN 1 is not reset");
        let tm = h
            .tevents
            .iter()
            .find_map(|e| match e {
                TargetEvent::TaskManagement {
                    function, aborted, ..
                } => Some((*function, aborted.len())),
                _ => None,
            })
            .unwrap();
        assert_eq!(tm, (TmfFunction::LogicalUnitReset, 4));
        h.hold = false;
        h.release();
        assert!(h.scsi(on1).is_good());
        // The reset left a unit attention for the next command on LUN 0.
        let (r, _) = h.run(read_cmd(0, 1));
        assert_eq!(r.status, 0x02u8);
        let s: SenseData = r.sense_data.unwrap();
        assert!(s.is(SenseKey::UnitAttention, (0x29, 0x03)), "{s}");
        let (r, _) = h.run(read_cmd(0, 1));
        assert!(r.is_good());
        // Every task ended exactly once (the harness asserts no duplicate).
        assert_eq!(h.outcomes.len(), 4 + 1 + 1 + 2);
        logout(&mut h);
    }
}

#[test]
fn lun_reset_with_queued_commands_behind_a_small_window() {
    let mut tc = tgt_config(1);
    tc.cmd_window = 2;
    let mut h = Harness::new(ini_config(), tc, &[DISK], Cuts::Random(31));
    h.login();
    h.hold = true;
    let tasks: Vec<TaskId> = (0..10).map(|i| h.submit(read_cmd(i, 1))).collect();
    h.pump();
    let tmf = h
        .ini
        .task_management(h.now, lun(0), TmfFunction::LogicalUnitReset)
        .unwrap();
    h.pump();
    assert_eq!(
        h.outcome(tmf),
        Some(&TaskOutcome::TaskManagement(TmfResponse::FunctionComplete))
    );
    for t in &tasks {
        assert!(
            matches!(
                h.outcome(*t),
                Some(TaskOutcome::Failed(TaskError::Aborted(_)))
            ),
            "{:?}",
            h.outcome(*t)
        );
    }
    assert!(h.held.is_empty());
    h.hold = false;
    // The window reopened: new commands run (after the unit attention).
    let (r, _) = h.run(read_cmd(0, 1));
    assert_eq!(r.status, 0x02u8);
    let (r, _) = h.run(read_cmd(0, 1));
    assert!(r.is_good());
    logout(&mut h);
}

#[test]
fn read_residuals() {
    let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(6));
    h.login();
    // Expected Data Transfer Length below what the CDB transfers: the
    // target sends EDTL bytes and reports an overflow (RFC 7143 section
    // 11.4.5.1).
    let (r, data) = h.run(ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::read10(0, 4, Default::default())),
        1024,
    ));
    assert!(r.is_good(), "{r:?}");
    assert_eq!(data.len(), 1024);
    assert_eq!(r.bytes_read, 1024);
    assert_eq!(r.residual, Residual::Overflow(1024));
    assert_eq!(data, h.disk(0, 0, 1024));
    // Above: an underflow.
    let (r, data) = h.run(ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::read10(0, 2, Default::default())),
        4096,
    ));
    assert!(r.is_good(), "{r:?}");
    assert_eq!(data.len(), 1024);
    assert_eq!(r.residual, Residual::Underflow(3072));
    logout(&mut h);
}

#[test]
fn write_residuals() {
    let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(7));
    h.login();
    // More data than the CDB transfers: underflow of the extra bytes.
    let (r, _) = h.run(ScsiCommand::write(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::write10(0, 1, Default::default())),
        pattern(1, 1024),
    ));
    assert_eq!(r.residual, Residual::Underflow(512), "{r:?}");
    // Less data than the CDB transfers: overflow.
    let (r, _) = h.run(ScsiCommand::write(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::write10(0, 4, Default::default())),
        pattern(2, 1024),
    ));
    assert_eq!(r.residual, Residual::Overflow(1024), "{r:?}");
    logout(&mut h);
}

#[test]
fn sixteen_byte_and_extended_cdbs() {
    let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(8));
    h.login();
    let data = pattern(16, 8192);
    let (r, _) = h.run(ScsiCommand::write(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::write16(1000, 16, Default::default())),
        data.clone(),
    ));
    assert!(r.is_good());
    let (r, back) = h.run(ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::read16(1000, 16, Default::default())),
        8192,
    ));
    assert!(r.is_good());
    assert_eq!(back, data[..]);
    // A 32-byte CDB travels in an Extended CDB AHS (RFC 7143 section
    // 11.2.2.3); the logical unit does not know it: ILLEGAL REQUEST.
    let mut long = vec![0u8; 32];
    long[0] = 0x7f;
    long[7] = 24;
    let before = h.ini_pdus.len();
    let (r, _) = h.run(ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::from(long),
        512,
    ));
    let cmd = h.ini_pdus[before..]
        .iter()
        .find(|s| s.opcode == op::SCSI_CMD)
        .unwrap();
    assert!(cmd.header_len > 48, "AHS present");
    assert_eq!(r.status, 0x02);
    assert!(r
        .sense_data
        .unwrap()
        .is(SenseKey::IllegalRequest, (0x20, 0x00)));
    logout(&mut h);
}

#[test]
fn send_targets_in_a_normal_session() {
    let mut tc = tgt_config(1);
    tc.portals = vec![iscsi_proto::NetworkPortal {
        host: "127.0.0.1".into(),
        port: 3260,
        portal_group_tag: Some(1),
    }];
    let mut h = Harness::new(ini_config(), tc, &[DISK], Cuts::Random(9));
    h.login();
    let t = h.ini.send_targets(h.now).unwrap();
    h.pump();
    match h.outcome(t) {
        Some(TaskOutcome::Targets(r)) => {
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].name, TARGET);
            assert_eq!(r[0].addresses[0].host, "127.0.0.1");
        }
        other => panic!("{other:?}"),
    }
    logout(&mut h);
}

fn tmf_aborts_all(function: TmfFunction, tmf_lun: u64, luns_hit: &[u16]) {
    let mut h = Harness::new(
        ini_config(),
        tgt_config(2),
        &[DISK, 1 << 20],
        Cuts::Random(10),
    );
    h.login();
    h.hold = true;
    let mut tasks = Vec::new();
    for l in 0..2u16 {
        for i in 0..3 {
            let t = h.submit(ScsiCommand::read(
                iscsi_proto::scsi::Lun::from_u64(lun(l)),
                Bytes::copy_from_slice(&cdb::read10(i, 1, Default::default())),
                512,
            ));
            tasks.push((l, t));
        }
    }
    h.pump();
    let tmf = h.ini.task_management(h.now, tmf_lun, function).unwrap();
    h.pump();
    assert_eq!(
        h.outcome(tmf),
        Some(&TaskOutcome::TaskManagement(TmfResponse::FunctionComplete)),
        "{function:?}"
    );
    for (l, t) in &tasks {
        if luns_hit.contains(l) {
            assert_eq!(
                h.outcome(*t),
                Some(&TaskOutcome::Failed(TaskError::Aborted(function))),
                "{function:?} LUN {l}"
            );
        } else {
            assert!(h.outcome(*t).is_none(), "{function:?} LUN {l}");
        }
    }
    h.hold = false;
    h.release();
    for (_, t) in &tasks {
        assert!(h.outcome(*t).is_some());
    }
    logout(&mut h);
}

#[test]
fn abort_task_set_clear_task_set_warm_reset() {
    tmf_aborts_all(TmfFunction::AbortTaskSet, lun(1), &[1]);
    tmf_aborts_all(TmfFunction::ClearTaskSet, lun(0), &[0]);
    tmf_aborts_all(TmfFunction::TargetWarmReset, 0, &[0, 1]);
}

#[test]
fn target_cold_reset_ends_the_connection() {
    let mut h = Harness::new(ini_config(), tgt_config(1), &[DISK], Cuts::Random(11));
    h.login();
    h.hold = true;
    let t = h.submit(read_cmd(0, 1));
    h.pump();
    let tmf = h
        .ini
        .task_management(h.now, 0, TmfFunction::TargetColdReset)
        .unwrap();
    h.pump();
    // RFC 7143 section 11.5.1: the target answers, then drops every
    // connection.
    assert!(h.tevents.contains(&TargetEvent::Closed {
        reason: iscsi_proto::target::CloseReason::ColdReset
    }));
    assert!(h.outcome(tmf).is_some());
    assert!(
        matches!(h.outcome(t), Some(TaskOutcome::Failed(_))),
        "{:?}",
        h.outcome(t)
    );
    assert!(h.ini.is_closed());
    h.assert_target_settled();
}
