//! `Session::stats`: what an embedder's metrics read. Each counter is
//! checked against what the scripted target saw and did, with latencies
//! measured in the harness's virtual time.

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::initiator::{Event, Recovery, ScsiCommand, SessionConfig, TaskOutcome};
use iscsi_proto::scsi::Lun;
use iscsi_proto::testing::{LoginResponder, Pair};
use iscsi_proto::wire::pdu::{Header, Residual};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];

fn cfg() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk")
}

fn logged_in(cfg: SessionConfig, mut r: LoginResponder) -> Pair {
    let mut p = Pair::new(cfg);
    p.login_with(&mut r);
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    p
}

fn itt_of_next_command(p: &mut Pair) -> u32 {
    loop {
        let pdu = p.target.expect();
        if let Header::ScsiCommand(c) = pdu.header {
            return c.itt;
        }
    }
}

#[test]
fn reads_writes_bytes_and_latency() {
    let mut p = logged_in(cfg(), LoginResponder::plain());
    assert_eq!(p.session.stats().commands_submitted, 0);
    let r = p
        .session
        .submit(p.now, ScsiCommand::read(Lun::ZERO, &READ10[..], 4096))
        .unwrap();
    p.flush();
    let itt = itt_of_next_command(&mut p);
    p.advance(Duration::from_millis(3));
    p.target
        .data_in(itt, 0, 0, &[7u8; 4096], Some((0, Residual::None)));
    p.deliver();
    assert!(matches!(p.outcome(r), Some(TaskOutcome::Scsi(s)) if s.is_good()));

    let w = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(Lun::ZERO, &WRITE10[..], Bytes::from(vec![1u8; 512])),
        )
        .unwrap();
    p.flush();
    let itt = itt_of_next_command(&mut p);
    // ImmediateData=Yes (RFC 7143 13.11 default): the 512 bytes went with
    // the command.
    p.advance(Duration::from_millis(1));
    p.target.scsi_response(itt, 0, Residual::None, None);
    p.deliver();
    assert!(matches!(p.outcome(w), Some(TaskOutcome::Scsi(s)) if s.is_good()));

    let s = *p.session.stats();
    assert_eq!(s.commands_submitted, 2);
    assert_eq!(s.commands_completed, 2);
    assert_eq!(s.commands_failed, 0);
    assert_eq!(s.bytes_read, 4096);
    assert_eq!(s.bytes_written, 512);
    assert_eq!(s.command_latency.count(), 2);
    assert_eq!(s.command_latency.max(), Duration::from_millis(3));
    assert_eq!(s.command_latency.sum(), Duration::from_millis(4));
    assert_eq!((s.retries, s.recoveries, s.digest_errors), (0, 0, 0));
}

/// RFC 7143 4.2.2.1: non-immediate commands carry CmdSN "from ExpCmdSN to
/// MaxCmdSN inclusive"; beyond that they wait. One stall is counted per
/// closed-window episode, however many commands queue behind it.
#[test]
fn window_stalls_count_episodes() {
    let mut r = LoginResponder::plain();
    r.window = (0, 0);
    let mut p = logged_in(cfg(), r);
    for _ in 0..3 {
        p.session
            .submit(p.now, ScsiCommand::new(Lun::ZERO, &[0u8; 6][..]))
            .unwrap();
    }
    p.flush();
    assert_eq!(p.session.stats().window_stalls, 1);
    // Room for exactly one command: it leaves, the window closes again.
    let exp = p.target.exp_cmd_sn;
    p.target.nop_in_update(exp, exp);
    p.deliver();
    assert_eq!(p.session.queued_commands(), 2);
    assert_eq!(p.session.stats().window_stalls, 2);
}

#[test]
fn nop_round_trip_latency() {
    let mut p = logged_in(cfg(), LoginResponder::plain());
    let ping = p
        .session
        .nop_ping(p.now, Bytes::from_static(b"hi"))
        .unwrap();
    p.flush();
    let req = loop {
        if let Header::NopOut(n) = p.target.expect().header {
            break n;
        }
    };
    p.advance(Duration::from_millis(5));
    p.target.nop_in_reply(&req, Bytes::from_static(b"hi"));
    p.deliver();
    assert!(matches!(p.outcome(ping), Some(TaskOutcome::Pong(_))));
    let s = p.session.stats();
    assert_eq!(s.nop_round_trips, 1);
    assert_eq!(s.nop_latency.max(), Duration::from_millis(5));
    // A ping is not a SCSI command.
    assert_eq!(s.commands_completed, 0);
}

/// ERL 0 recovery (RFC 7143 6.3.5): one recovery, and every command that
/// is sent again counts as a retry.
#[test]
fn recovery_and_retries() {
    let c = cfg().with_recovery(Recovery {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(10),
    });
    let mut p = logged_in(c, LoginResponder::plain());
    for _ in 0..2 {
        p.session
            .submit(p.now, ScsiCommand::read(Lun::ZERO, &READ10[..], 4))
            .unwrap();
    }
    p.flush();
    p.session.handle_closed(p.now);
    p.flush();
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, Event::Recovering { .. })));
    let s = p.session.stats();
    assert_eq!((s.recoveries, s.retries), (1, 2));
}

/// Without recovery a lost connection ends its commands without a status.
#[test]
fn failed_commands() {
    let mut p = logged_in(cfg(), LoginResponder::plain());
    let t = p
        .session
        .submit(p.now, ScsiCommand::read(Lun::ZERO, &READ10[..], 4))
        .unwrap();
    p.flush();
    p.advance(Duration::from_millis(2));
    p.session.handle_closed(p.now);
    p.flush();
    assert!(matches!(p.outcome(t), Some(TaskOutcome::Failed(_))));
    let s = p.session.stats();
    assert_eq!((s.commands_completed, s.commands_failed), (1, 1));
    assert_eq!(s.command_latency.max(), Duration::from_millis(2));
    assert_eq!(s.bytes_read, 0);
}
