//! ErrorRecoveryLevel 1 at the initiator: a lost PDU that nothing follows
//! (the last Data-In of a read, carrying the status; a SCSI Response), so
//! no sequence gap ever shows it. RFC 7143 section 7.1.4.1: "At the
//! initiator, the following cases lend themselves to within-command
//! recovery: Lost data PDU or lost R2T - realized through one of the
//! following: ... b) Sequence reception timeout (no status) or response
//! reception timeout - dealt with as specified in Section 7.9, using the
//! option of a SNACK." Section 7.1.4.2: a lost numbered response "is
//! recognized by ... receiving a Response PDU with a higher StatSN than
//! expected". Section 11.19.2: a NOP-In answering a NOP-Out "will always
//! contain the next StatSN": after a quiet period while status is owed the
//! initiator pings, and the answer's StatSN shows what was lost, asked for
//! with a Status SNACK (section 11.16.1).

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::initiator::{Event, ScsiCommand, SessionConfig, TaskId, TaskOutcome};
use iscsi_proto::login::negotiation::{DigestType, TargetConfig};
use iscsi_proto::scsi::Lun;
use iscsi_proto::testing::{LoginResponder, Pair, ScriptedTarget, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header, Residual};
use iscsi_proto::wire::{Pdu, Serial};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0];
const TUR: [u8; 6] = [0; 6];

fn cfg(level: u8) -> SessionConfig {
    let mut c = SessionConfig::new("iqn.2024-01.test:init")
        .with_target("iqn.2024-01.test:disk")
        .with_error_recovery_level(level);
    c.operational.header_digest = vec![DigestType::Crc32c];
    c.operational.data_digest = vec![DigestType::Crc32c];
    c
}

fn pair(level: u8, cfg: SessionConfig) -> Pair {
    let mut t = TargetConfig::default();
    t.params.error_recovery_level = level;
    t.params.header_digest = vec![DigestType::Crc32c, DigestType::None];
    t.params.data_digest = vec![DigestType::Crc32c, DigestType::None];
    let mut p = Pair::new(cfg);
    p.login_with(&mut LoginResponder::new(t, None));
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    assert_eq!(p.session.negotiated().unwrap().error_recovery_level, level);
    p
}

fn snack_timeout(p: &Pair) -> Duration {
    p.session.config().error_recovery.snack_timeout
}

fn submit(p: &mut Pair, cmd: ScsiCommand) -> (TaskId, w::ScsiCommand) {
    let task = p.session.submit(p.now, cmd).unwrap();
    p.flush();
    let c = match p.target.expect().header {
        Header::ScsiCommand(c) => c,
        h => panic!("expected a SCSI Command, got {:?}", h.opcode()),
    };
    p.target.ack_cmd(c.cmd_sn);
    (task, c)
}

fn data_in(t: &mut ScriptedTarget, itt: u32, sn: u32, off: u32, status: bool) -> w::DataIn {
    let status = status.then(|| w::DataInStatus {
        status: 0,
        stat_sn: t.next_stat_sn(),
        residual: Residual::None,
    });
    w::DataIn {
        final_pdu: status.is_some(),
        ack: false,
        lun: 0,
        itt,
        ttt: RESERVED,
        exp_cmd_sn: t.exp_cmd_sn,
        max_cmd_sn: t.max_cmd_sn,
        data_sn: Serial(sn),
        buffer_offset: off,
        status,
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + 5) as u8).collect()
}

fn no_connection_loss(p: &Pair) {
    assert_eq!(p.connects.len(), 1, "reconnected: {:?}", p.events);
    assert!(
        !p.events
            .iter()
            .any(|e| matches!(e, Event::Recovering { .. } | Event::Closed(_))),
        "{:?}",
        p.events
    );
}

fn nop_out(pdu: &Pdu) -> w::NopOut {
    match pdu.header {
        Header::NopOut(n) => n,
        h => panic!("expected a NOP-Out, got {:?}", h.opcode()),
    }
}

/// A read whose two Data-In went out, the second (DataSN 1, with the
/// status) lost; the target then goes quiet.
fn read_with_lost_status(p: &mut Pair) -> (TaskId, w::ScsiCommand, Vec<u8>, Serial) {
    let data = pattern(1024);
    let (task, c) = submit(p, ScsiCommand::read(Lun::ZERO, READ10, 1024));
    let h0 = data_in(&mut p.target, c.itt, 0, 0, false);
    p.target.send(h0, Bytes::copy_from_slice(&data[..512]));
    let h1 = data_in(&mut p.target, c.itt, 1, 512, true);
    let lost_sn = h1.status.unwrap().stat_sn;
    p.target.lose(h1, Bytes::copy_from_slice(&data[512..]));
    p.deliver();
    assert_eq!(p.target.pending(), 0, "no gap is visible yet");
    (task, c, data, lost_sn)
}

/// The lost status-bearing Data-In is found by a NOP-Out ping after the
/// quiet period, its StatSN asked for by a Status SNACK, and the read ends
/// once, with all its data, without losing the connection.
#[test]
fn lost_last_data_in_with_status_is_recovered_after_a_quiet_period() {
    let mut p = pair(1, cfg(1));
    let (task, _c, data, lost_sn) = read_with_lost_status(&mut p);
    // Just before the quiet period ends: nothing.
    p.advance(snack_timeout(&p) - Duration::from_millis(1));
    assert_eq!(p.target.pending(), 0, "no ping before the quiet period");
    p.advance(Duration::from_millis(1));
    let ping = p.target.expect();
    let n = nop_out(&ping);
    assert_ne!(
        n.itt, RESERVED,
        "section 11.18.1: a ping asking for a NOP-In"
    );
    assert!(n.immediate, "a ping is immediate (section 11.18)");
    assert_eq!(n.ttt, RESERVED, "section 11.18.2: not an answer");
    // The answer "will always contain the next StatSN" (11.19.2): one past
    // the lost status.
    p.target.nop_in_reply(&n, ping.data.clone());
    p.deliver();
    let s = match p.target.expect().header {
        Header::SnackRequest(s) => s,
        h => panic!("expected a Status SNACK, got {:?}", h.opcode()),
    };
    assert_eq!(s.snack_type, w::SnackType::Status);
    assert_eq!(s.itt, RESERVED, "section 11.16.3");
    assert_eq!((s.beg_run, s.run_length), (lost_sn, 1));
    assert_eq!(
        s.exp_stat_sn, lost_sn,
        "the lost status is not acknowledged"
    );
    assert_eq!(p.target.serve_snack(&s), 1);
    p.deliver();
    assert_eq!(p.completions(task), 1);
    match p.outcome(task) {
        Some(TaskOutcome::Scsi(r)) => assert!(r.is_good(), "{r:?}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(p.read_data(task), data);
    // Everything acknowledged: the next command carries ExpStatSN past the
    // ping's answer.
    let (_, c2) = submit(&mut p, ScsiCommand::new(Lun::ZERO, TUR));
    assert_eq!(c2.exp_stat_sn, lost_sn.plus(2));
    no_connection_loss(&p);
}

/// A SCSI Response (no data) lost with nothing after it: same recovery.
#[test]
fn lost_last_scsi_response_is_recovered_after_a_quiet_period() {
    let mut p = pair(1, cfg(1));
    let (task, c) = submit(&mut p, ScsiCommand::new(Lun::ZERO, TUR));
    let r = w::ScsiResponse {
        response: w::ScsiResponseCode::CommandCompleted,
        status: 0,
        itt: c.itt,
        snack_tag: 0,
        stat_sn: p.target.next_stat_sn(),
        exp_cmd_sn: p.target.exp_cmd_sn,
        max_cmd_sn: p.target.max_cmd_sn,
        exp_data_sn: Serial(0),
        bidi_read_residual: Residual::None,
        residual: Residual::None,
    };
    p.target.lose(r, Bytes::new());
    p.advance(snack_timeout(&p));
    let ping = p.target.expect();
    p.target.nop_in_reply(&nop_out(&ping), ping.data.clone());
    p.deliver();
    let s = match p.target.expect().header {
        Header::SnackRequest(s) => s,
        h => panic!("expected a Status SNACK, got {:?}", h.opcode()),
    };
    assert_eq!(
        (s.snack_type, s.beg_run, s.run_length),
        (w::SnackType::Status, r.stat_sn, 1)
    );
    assert_eq!(p.target.serve_snack(&s), 1);
    p.deliver();
    assert_eq!(p.completions(task), 1);
    no_connection_loss(&p);
}

/// A slow target (nothing lost): the ping's answer shows no gap, no SNACK
/// goes out, and the command still ends once when its status comes. The
/// pings repeat once per quiet period while status is owed.
#[test]
fn slow_target_is_pinged_but_not_snacked() {
    let mut p = pair(1, cfg(1));
    let (task, c) = submit(&mut p, ScsiCommand::new(Lun::ZERO, TUR));
    for _ in 0..3 {
        p.advance(snack_timeout(&p));
        let ping = p.target.expect();
        p.target.nop_in_reply(&nop_out(&ping), ping.data.clone());
        p.deliver();
        assert_eq!(p.target.pending(), 0, "no SNACK without a gap");
        assert!(p.outcome(task).is_none());
    }
    p.target.scsi_response(c.itt, 0, Residual::None, None);
    p.deliver();
    assert_eq!(p.completions(task), 1);
    // Nothing owed now: no more pings (no keepalive configured).
    p.advance(snack_timeout(&p) * 10);
    assert_eq!(p.target.pending(), 0, "no ping with nothing owed");
    no_connection_loss(&p);
}

/// ErrorRecoveryLevel 0 (no SNACK to recover with): no ping of this kind
/// (a PDU cannot be lost without the connection failing, section 7.1.4).
#[test]
fn no_status_ping_at_level_0() {
    let mut p = pair(0, cfg(0));
    let (task, _c) = submit(&mut p, ScsiCommand::new(Lun::ZERO, TUR));
    p.advance(Duration::from_secs(3600));
    assert_eq!(p.target.pending(), 0);
    assert!(p.outcome(task).is_none());
}

/// A ping that is never answered either: the connection is dropped (the
/// level 0 path), not waited on forever.
#[test]
fn unanswered_status_ping_drops_the_connection() {
    let mut p = pair(1, cfg(1));
    let (_task, _c, _data, _sn) = read_with_lost_status(&mut p);
    p.advance(snack_timeout(&p));
    let _ping = nop_out(&p.target.expect());
    let mut waited = Duration::ZERO;
    while p.connects.len() == 1 && waited < Duration::from_secs(3600) {
        p.advance(Duration::from_secs(1));
        waited += Duration::from_secs(1);
    }
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, Event::Closed(Some(_)) | Event::Recovering { .. })),
        "{:?}",
        p.events
    );
}

/// With a keepalive configured, the status ping still comes after the
/// (shorter) quiet period while status is owed, and only one ping is out
/// at a time.
#[test]
fn status_ping_comes_before_a_longer_keepalive() {
    let c = cfg(1).with_keepalive(Duration::from_secs(60), Duration::from_secs(30));
    let mut p = pair(1, c);
    let (task, _c, data, _sn) = read_with_lost_status(&mut p);
    p.advance(snack_timeout(&p));
    let ping = p.target.expect();
    let n = nop_out(&ping);
    p.advance(snack_timeout(&p));
    assert_eq!(p.target.pending(), 0, "one ping out at a time");
    p.target.nop_in_reply(&n, ping.data.clone());
    p.deliver();
    let s = match p.target.expect().header {
        Header::SnackRequest(s) => s,
        h => panic!("expected a Status SNACK, got {:?}", h.opcode()),
    };
    p.target.serve_snack(&s);
    p.deliver();
    assert_eq!(p.read_data(task), data);
    no_connection_loss(&p);
}
