//! Initiator core against target core in memory: data digest errors in
//! either direction (RFC 7143 section 7.8) with every task ending exactly
//! once and the session staying usable (or recovering).

mod pair_support;

use bytes::Bytes;
use iscsi_proto::error::ConnectionError;
use iscsi_proto::initiator::{Event, LogoutMode, Recovery, ScsiCommand, TaskOutcome};
use iscsi_proto::login::DigestType;
use iscsi_proto::scsi::cdb;
use pair_support::*;

const DISK: u64 = 2 << 20;

fn digest_pair(initial_r2t: bool, immediate: bool, seed: u64) -> Harness {
    let mut tc = tgt_config(1);
    tc.params = params(initial_r2t, immediate, 4096, 16384, 8192);
    tc.params.header_digest = vec![DigestType::Crc32c];
    tc.params.data_digest = vec![DigestType::Crc32c];
    let mut ic = ini_config();
    ic.operational = params(initial_r2t, immediate, 4096, 16384, 8192);
    ic.operational.header_digest = vec![DigestType::Crc32c];
    ic.operational.data_digest = vec![DigestType::Crc32c];
    let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(seed));
    h.login();
    assert!(h.ini.negotiated().unwrap().data_digest);
    h
}

fn write_cmd(lba: u32, data: Bytes) -> ScsiCommand {
    let blocks = (data.len() / BS as usize) as u16;
    ScsiCommand::write(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::write10(lba, blocks, Default::default())),
        data,
    )
}

fn read_cmd(lba: u32, blocks: u16) -> ScsiCommand {
    ScsiCommand::read(
        iscsi_proto::scsi::Lun::from_u64(lun(0)),
        Bytes::copy_from_slice(&cdb::read10(lba, blocks, Default::default())),
        u32::from(blocks) * BS,
    )
}

/// The session still works and logs out cleanly.
fn still_usable(h: &mut Harness) {
    let d = pattern(999, 4096);
    let (r, _) = h.run(write_cmd(1000, d.clone()));
    assert!(r.is_good(), "{r:?}");
    let (r, back) = h.run(read_cmd(1000, 8));
    assert!(r.is_good(), "{r:?}");
    assert_eq!(back, d[..]);
    let lt = h.ini.logout(h.now, LogoutMode::WaitForTasks).unwrap();
    h.pump();
    assert!(matches!(h.outcome(lt), Some(TaskOutcome::LoggedOut(_))));
    h.assert_target_settled();
}

#[test]
fn data_out_digest_error_ends_the_write_once() {
    for seed in 0..4 {
        let mut h = digest_pair(true, false, seed);
        let before = h.disk(0, 0, 16384);
        h.corrupt_next_ini_data = Some(op::DATA_OUT);
        let w = h.submit(write_cmd(0, pattern(seed, 16384)));
        let r = h.submit(read_cmd(64, 4));
        h.pump();
        assert!(
            h.corrupt_next_ini_data.is_none(),
            "a Data-Out was corrupted"
        );
        // RFC 7143 section 7.3: a Reject of a non-command PDU does not end
        // the task; the target answers once all the data has arrived.
        assert_eq!(h.tgt.live_tasks(), 0, "the target still waits for data");
        // The write ended exactly once (the harness asserts no second
        // completion), not with GOOD.
        match h.outcome(w) {
            Some(TaskOutcome::Scsi(res)) => assert!(!res.is_good(), "{res:?}"),
            Some(TaskOutcome::Failed(_)) => {}
            other => panic!("write outcome {other:?}"),
        }
        assert!(h.scsi(r).is_good());
        assert!(h.ini.is_logged_in(), "{:?}", h.events);
        // Nothing of the bad write reached the disk.
        assert_eq!(h.disk(0, 0, 16384), before);
        still_usable(&mut h);
    }
}

#[test]
fn immediate_data_digest_error_does_not_stall_the_window() {
    for seed in 0..4 {
        let mut h = digest_pair(true, true, seed);
        h.corrupt_next_ini_data = Some(op::SCSI_CMD);
        let w = h.submit(write_cmd(0, pattern(seed, 2048)));
        let later: Vec<_> = (0..4).map(|i| h.submit(read_cmd(i * 8, 8))).collect();
        h.pump();
        assert!(h.corrupt_next_ini_data.is_none());
        assert!(
            h.outcome(w).is_some(),
            "the write whose command PDU was discarded never ended"
        );
        for t in &later {
            assert!(
                h.outcome(*t).is_some(),
                "commands behind the discarded one never ran: {:?}",
                h.events.last()
            );
            assert!(h.scsi(*t).is_good());
        }
        still_usable(&mut h);
    }
}

#[test]
fn data_in_digest_error_closes_without_recovery() {
    let mut h = digest_pair(true, true, 5);
    h.corrupt_next_tgt_data = Some(op::DATA_IN);
    let t = h.submit(read_cmd(0, 16));
    h.pump();
    assert!(h.ini.is_closed());
    match h.events.iter().find(|e| matches!(e, Event::Closed(_))) {
        Some(Event::Closed(Some(ConnectionError::DigestFailure(_)))) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(h.outcome(t), Some(TaskOutcome::Failed(_))));
    assert_eq!(h.outcomes.len(), 1);
    h.assert_target_settled();
}

#[test]
fn data_in_digest_error_recovers_the_session() {
    let mut tc = tgt_config(1);
    tc.params.data_digest = vec![DigestType::Crc32c];
    let mut ic = ini_config().with_recovery(Recovery {
        max_attempts: 2,
        initial_backoff: std::time::Duration::from_secs(1),
        max_backoff: std::time::Duration::from_secs(2),
    });
    ic.operational.data_digest = vec![DigestType::Crc32c];
    let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(6));
    h.login();
    h.corrupt_next_tgt_data = Some(op::DATA_IN);
    let t = h.submit(read_cmd(0, 16));
    h.pump();
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::Recovering { .. })));
    h.advance(std::time::Duration::from_secs(5));
    assert!(h.ini.is_logged_in());
    assert!(h.scsi(t).is_good());
    assert_eq!(h.read_data(t), &h.disk(0, 0, 16 * 512)[..]);
    still_usable(&mut h);
}

#[test]
fn data_out_digest_error_in_first_of_several_bursts() {
    for seed in 0..4 {
        let mut h = digest_pair(true, false, seed);
        h.corrupt_next_ini_data = Some(op::DATA_OUT);
        // 64 KiB in 16 KiB bursts: one R2T at a time.
        let w = h.submit(write_cmd(0, pattern(seed, 65536)));
        h.pump();
        assert_eq!(h.tgt.live_tasks(), 0, "the target still waits for data");
        match h.outcome(w) {
            Some(TaskOutcome::Scsi(res)) => assert!(!res.is_good(), "{res:?}"),
            other => panic!("write outcome {other:?}"),
        }
        still_usable(&mut h);
    }
}

#[test]
fn data_out_digest_error_with_data_still_queued() {
    // Several R2Ts outstanding and a slow socket: Data-Outs for the later
    // R2Ts are still queued in the initiator when the Reject of the first
    // arrives. They must still go out, or the target waits forever.
    for seed in 0..4 {
        let mut tc = tgt_config(1);
        tc.params = params(true, false, 4096, 4096, 4096);
        tc.params.max_outstanding_r2t = 4;
        tc.params.header_digest = vec![DigestType::Crc32c];
        tc.params.data_digest = vec![DigestType::Crc32c];
        let mut ic = ini_config();
        ic.operational = tc.params.clone();
        let mut h = Harness::new(ic, tc, &[DISK], Cuts::Random(seed));
        h.login();
        h.ini_tx_per_step = Some(1);
        h.corrupt_next_ini_data = Some(op::DATA_OUT);
        let w = h.submit(write_cmd(0, pattern(seed, 16384)));
        h.pump();
        assert_eq!(h.tgt.live_tasks(), 0, "the target still waits for data");
        assert!(h.outcome(w).is_some());
        h.ini_tx_per_step = None;
        still_usable(&mut h);
    }
}
