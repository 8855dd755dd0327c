//! Initiator core against target core in memory: connection failures
//! (keepalive timeout, the target dropping the connection) with and
//! without ErrorRecoveryLevel 0 session recovery (RFC 7143 section 7.1.5).

mod pair_support;

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, TaskError, TimerKind};
use iscsi_proto::initiator::{Event, LogoutMode, Recovery, ScsiCommand, TaskId, TaskOutcome};
use iscsi_proto::scsi::cdb;
use iscsi_proto::target::{CloseReason, Event as TargetEvent};
use pair_support::*;

const DISK: u64 = 2 << 20;

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

fn recovery() -> Recovery {
    Recovery {
        max_attempts: 3,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(4),
    }
}

#[test]
fn keepalive_timeout_without_recovery_fails_tasks_once() {
    let ic = ini_config().with_keepalive(Duration::from_secs(10), Duration::from_secs(5));
    let mut h = Harness::new(ic, tgt_config(1), &[DISK], Cuts::Random(3));
    h.login();
    h.hold = true;
    let t = h.submit(read_cmd(0, 4));
    h.pump();
    // The target goes silent.
    h.drop_t2i = true;
    h.advance(Duration::from_secs(30));
    assert!(h.ini.is_closed());
    let closed: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Closed(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        vec![Some(ConnectionError::TimedOut(TimerKind::Keepalive))]
    );
    assert_eq!(
        h.outcome(t),
        Some(&TaskOutcome::Failed(TaskError::ConnectionLost))
    );
    // The target saw the connection go and aborted the held command.
    assert!(h.tevents.contains(&TargetEvent::Closed {
        reason: CloseReason::PeerClosed
    }));
    h.assert_target_settled();
    assert_eq!(h.outcomes.len(), 1);
}

#[test]
fn session_recovers_after_target_drops_connection() {
    for seed in 0..4 {
        let ic = ini_config().with_recovery(recovery());
        let mut h = Harness::new(ic, tgt_config(1), &[DISK], Cuts::Random(seed));
        h.login();
        let tsih1 = h.ini.tsih();
        h.hold = true;
        let data = pattern(seed, 24 * 1024);
        let w = h.submit(write_cmd(100, data.clone()));
        let reads: Vec<TaskId> = (0..3).map(|i| h.submit(read_cmd(i * 8, 8))).collect();
        h.pump();
        assert_eq!(h.held.len(), 4);
        // The target drops the connection (AsyncEvent 2, Time2Wait 1 s).
        h.tgt.drop_connection(1, 20).unwrap();
        h.pump();
        assert!(h
            .events
            .iter()
            .any(|e| matches!(e, Event::Recovering { attempt: 1, .. })));
        assert!(h.held.is_empty(), "the old connection's tasks are aborted");
        assert!(h.outcomes.is_empty(), "tasks wait for the recovery");
        h.hold = false;
        h.advance(Duration::from_secs(10));
        assert_eq!(h.connects, 2);
        assert!(h.ini.is_logged_in());
        assert!(h
            .events
            .iter()
            .any(|e| matches!(e, Event::Reinstated { .. })));
        // RFC 7143 section 6.3.5: a fresh login with the same ISID.
        let relog = h
            .tevents
            .iter()
            .filter_map(|e| match e {
                TargetEvent::LoggedIn { isid, .. } => Some(*isid),
                _ => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(relog.len(), 2);
        assert_eq!(relog[0], relog[1]);
        let _ = tsih1;
        assert!(h.scsi(w).is_good(), "{:?}", h.outcome(w));
        assert_eq!(h.disk(0, 100 * 512, data.len()), data[..]);
        for (i, t) in reads.iter().enumerate() {
            assert!(h.scsi(*t).is_good());
            assert_eq!(h.read_data(*t), &h.disk(0, i as u64 * 8 * 512, 4096)[..]);
        }
        assert_eq!(h.outcomes.len(), 4);
        let lt = h.ini.logout(h.now, LogoutMode::WaitForTasks).unwrap();
        h.pump();
        assert!(matches!(h.outcome(lt), Some(TaskOutcome::LoggedOut(_))));
        h.assert_target_settled();
    }
}

#[test]
fn session_recovers_after_keepalive_timeout() {
    let ic = ini_config()
        .with_keepalive(Duration::from_secs(5), Duration::from_secs(5))
        .with_recovery(recovery());
    let mut h = Harness::new(ic, tgt_config(1), &[DISK], Cuts::Random(17));
    h.login();
    h.drop_t2i = true;
    let t = h.submit(read_cmd(0, 16));
    h.advance(Duration::from_secs(11));
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::Recovering {
            cause: ConnectionError::TimedOut(TimerKind::Keepalive),
            ..
        }
    )));
    assert!(h.outcome(t).is_none());
    h.drop_t2i = false;
    h.advance(Duration::from_secs(10));
    assert!(h.ini.is_logged_in());
    assert!(h.scsi(t).is_good());
    assert_eq!(h.read_data(t), &h.disk(0, 0, 16 * 512)[..]);
    // The read ran twice at the target (once per connection), ended once
    // at the initiator.
    assert_eq!(h.outcomes.len(), 1);
    h.assert_target_settled();
}

#[test]
fn recovery_gives_up_after_max_attempts() {
    let ic = ini_config()
        .with_keepalive(Duration::from_secs(5), Duration::from_secs(5))
        .with_recovery(Recovery {
            max_attempts: 2,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(2),
        })
        .with_login_timeout(Duration::from_secs(5));
    let mut h = Harness::new(ic, tgt_config(1), &[DISK], Cuts::Random(2));
    h.login();
    let t = h.submit(read_cmd(0, 1));
    // The target is unreachable from now on: logins time out.
    h.drop_t2i = true;
    h.advance(Duration::from_secs(120));
    assert!(h.ini.is_closed());
    let last = h.events.iter().rev().find_map(|e| match e {
        Event::Closed(r) => Some(r.clone()),
        _ => None,
    });
    assert!(
        matches!(
            last,
            Some(Some(ConnectionError::RecoveryFailed { attempts: 2, .. }))
        ),
        "{last:?}"
    );
    assert_eq!(
        h.outcome(t),
        Some(&TaskOutcome::Failed(TaskError::ConnectionLost))
    );
    assert_eq!(h.outcomes.len(), 1);
}
