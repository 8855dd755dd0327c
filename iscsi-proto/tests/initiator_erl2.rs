//! ErrorRecoveryLevel 2 at the initiator: connection recovery within the
//! session (RFC 7143 sections 7.1.4.3, 6.3.4, 7.2, 11.5.1 TASK REASSIGN,
//! 13.15/13.16 Time2Wait/Time2Retain), against the scripted target. Each
//! test quotes the sentence it checks.

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::error::{ConnectionError, TaskError, TimerKind};
use iscsi_proto::initiator::{
    Event, Recovery, Reissue, ScsiCommand, SessionConfig, TaskId, TaskOutcome,
};
use iscsi_proto::login::negotiation::TargetConfig;
use iscsi_proto::testing::{LoginResponder, Pair, ScriptedTarget, RESERVED};
use iscsi_proto::wire::pdu::{self as w, Header, Residual};
use iscsi_proto::wire::{text, Pdu, Serial};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const TUR: [u8; 6] = [0; 6];

fn cfg() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:init")
        .with_target("iqn.2024-01.test:disk")
        .with_error_recovery_level(2)
}

fn responder() -> LoginResponder {
    let mut t = TargetConfig::default();
    t.params.error_recovery_level = 2;
    LoginResponder::new(t, None)
}

fn erl2(cfg: SessionConfig) -> (Pair, LoginResponder) {
    let mut r = responder();
    let mut p = Pair::new(cfg);
    p.login_with(&mut r);
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    assert_eq!(p.session.negotiated().unwrap().error_recovery_level, 2);
    (p, r)
}

fn scsi_cmd(pdu: &Pdu) -> w::ScsiCommand {
    match pdu.header {
        Header::ScsiCommand(c) => c,
        h => panic!("expected a SCSI Command, got {:?}", h.opcode()),
    }
}

fn tmf(pdu: &Pdu) -> w::TaskMgmtRequest {
    match pdu.header {
        Header::TaskMgmtRequest(t) => t,
        h => panic!("expected a Task Management Request, got {:?}", h.opcode()),
    }
}

fn submit(p: &mut Pair, cmd: ScsiCommand, ack: bool) -> (TaskId, w::ScsiCommand) {
    let task = p.session.submit(p.now, cmd).unwrap();
    p.flush();
    let c = scsi_cmd(&p.target.expect());
    if ack {
        p.target.ack_cmd(c.cmd_sn);
    }
    (task, c)
}

fn last_login(t: &ScriptedTarget) -> (w::LoginRequest, Bytes) {
    t.log
        .iter()
        .rev()
        .find_map(|pdu| match pdu.header {
            Header::LoginRequest(l) => Some((l, pdu.data.clone())),
            _ => None,
        })
        .expect("a login")
}

fn commands_for(t: &ScriptedTarget, itt: u32) -> Vec<w::ScsiCommand> {
    t.log
        .iter()
        .filter_map(|pdu| match pdu.header {
            Header::ScsiCommand(c) if c.itt == itt => Some(c),
            _ => None,
        })
        .collect()
}

fn tmf_response(t: &mut ScriptedTarget, itt: u32, response: w::TmfResponse) {
    t.tmf_response(itt, response);
}

/// Fails the connection and runs the reconnection and its login.
/// (`r` is a fresh responder: the scripted one negotiates one login.)
fn lose_connection_and_relogin(p: &mut Pair, r: &mut LoginResponder) -> Duration {
    let connects = p.connects.len();
    p.session.handle_closed(p.now);
    p.flush();
    let after = p
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Recovering { after, .. } => Some(*after),
            _ => None,
        })
        .expect("recovering");
    p.advance(after);
    assert_eq!(p.connects.len(), connects + 1, "a new connection");
    p.login_with(r);
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    after
}

fn recovered(p: &Pair) -> Option<(usize, usize)> {
    p.events.iter().find_map(|e| match e {
        Event::ConnectionRecovered {
            reassigned,
            retried,
            ..
        } => Some((*reassigned, *retried)),
        _ => None,
    })
}

fn status_of(p: &Pair, t: TaskId) -> iscsi_proto::initiator::ScsiResult {
    match p.outcome(t) {
        Some(TaskOutcome::Scsi(r)) => r.clone(),
        other => panic!("task {t:?}: {other:?}"),
    }
}

/// RFC 7143 section 7.1.4.3: on a TCP connection failure "The initiator
/// MUST close the connection. It then MUST either implicitly or explicitly
/// logout the failed connection with the reason code 'remove the
/// connection for recovery' and reassign connection allegiance for all
/// commands still in progress ... using the 'Task reassign' task
/// management function". Connection reinstatement (section 6.3.4: same
/// ISID, TSIH and CID) is the implicit logout; section 11.5.6: ExpDataSN
/// of TASK REASSIGN is "the data acknowledgment reference number", and the
/// target "MUST transmit all Data-In PDUs (if any) starting with" it.
#[test]
fn a_lost_connection_is_replaced_within_the_session_and_its_tasks_reassigned() {
    let (mut p, _) = erl2(cfg());
    let tsih = p.session.tsih();
    let (a, ca) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 8),
        true,
    );
    let (b, cb) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        true,
    );
    p.target.data_in(ca.itt, 0, 0, b"abcd", None);
    p.deliver();
    let exp_stat_sn = p.session.connection().exp_stat_sn();
    let after = lose_connection_and_relogin(&mut p, &mut responder());
    assert_eq!(
        after,
        Duration::from_secs(2),
        "DefaultTime2Wait = 2 s (section 13.15)"
    );
    let (login, keys) = last_login(&p.target);
    assert_eq!(
        login.tsih, tsih,
        "the session's TSIH, not 0 (no reinstatement)"
    );
    assert_eq!(login.isid, p.session.isid());
    assert_eq!(login.cid, p.session.connection().cid());
    assert_eq!(
        login.exp_stat_sn, exp_stat_sn,
        "section 11.12.9: the old connection's"
    );
    let pairs = text::parse_pairs(&keys).unwrap();
    assert!(
        !pairs
            .iter()
            .any(|(k, _)| k == "SessionType" || k == "ErrorRecoveryLevel"),
        "no leading-only keys on a connection login (section 6.3): {pairs:?}"
    );
    assert_eq!(p.session.tsih(), tsih);
    assert_eq!(recovered(&p), Some((2, 0)));
    let ta = tmf(&p.target.expect());
    let tb = tmf(&p.target.expect());
    assert_eq!(ta.function, w::TmfFunction::TaskReassign);
    assert_eq!(
        (ta.referenced_task_tag, ta.ref_cmd_sn, ta.exp_data_sn),
        (ca.itt, ca.cmd_sn, Serial(1))
    );
    assert_eq!((tb.referenced_task_tag, tb.ref_cmd_sn), (cb.itt, cb.cmd_sn));
    assert!(ta.immediate && tb.immediate);
    assert_eq!(p.target.pending(), 0, "no command sent again");
    tmf_response(&mut p.target, ta.itt, w::TmfResponse::FunctionComplete);
    tmf_response(&mut p.target, tb.itt, w::TmfResponse::FunctionComplete);
    // The target resends from ExpDataSN and answers from retained status.
    p.target
        .data_in(ca.itt, 1, 4, b"efgh", Some((0, Residual::None)));
    p.target.scsi_response(cb.itt, 0, Residual::None, None);
    p.deliver();
    assert_eq!((p.completions(a), p.completions(b)), (1, 1));
    assert!(status_of(&p, a).is_good() && status_of(&p, b).is_good());
    assert_eq!(p.read_data(a), b"abcdefgh");
    assert_eq!(commands_for(&p.target, ca.itt).len(), 1);
    assert_eq!(commands_for(&p.target, cb.itt).len(), 1);
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, Event::Reinstated { tsih: t } if *t == tsih)));
}

/// RFC 7143 section 7.2.1: "the initiator ... MUST issue the retried
/// command with the same ITT, CmdSN": a command that took its CmdSN but
/// never left the failed connection is retried, not sent as a new command
/// (the target would otherwise wait for that CmdSN forever).
#[test]
fn a_command_that_never_left_is_retried_with_its_cmd_sn() {
    let (mut p, _) = erl2(cfg());
    let (_a, ca) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        true,
    );
    // Dispatched (CmdSN taken) but not transmitted before the failure.
    let b = p
        .session
        .submit(
            p.now,
            ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        )
        .unwrap();
    lose_connection_and_relogin(&mut p, &mut responder());
    assert_eq!(recovered(&p), Some((1, 1)));
    let (login, _) = last_login(&p.target);
    let retried = scsi_cmd(&p.target.expect());
    assert_eq!(retried.cmd_sn, ca.cmd_sn.next(), "its original CmdSN");
    assert!(retried.cmd_sn.precedes(login.cmd_sn));
    let reassign = tmf(&p.target.expect());
    assert_eq!(reassign.referenced_task_tag, ca.itt);
    assert_eq!(
        reassign.cmd_sn, login.cmd_sn,
        "immediate: the next new CmdSN"
    );
    p.target.ack_cmd(retried.cmd_sn);
    tmf_response(
        &mut p.target,
        reassign.itt,
        w::TmfResponse::FunctionComplete,
    );
    p.target.scsi_response(ca.itt, 0, Residual::None, None);
    p.target.scsi_response(retried.itt, 0, Residual::None, None);
    p.deliver();
    assert_eq!(p.completions(b), 1);
    assert_eq!(commands_for(&p.target, retried.itt).len(), 1);
}

/// A TASK REASSIGN answered "Task does not exist" (RFC 7143 section
/// 11.6.1) for a command whose CmdSN the target never acknowledged: it
/// never reached the target, so it is retried with its ITT and CmdSN
/// (section 7.2.1). Acknowledged, it may have run: it ends with
/// `OutcomeUnknown` and is not sent again.
#[test]
fn task_does_not_exist_retries_only_unacknowledged_commands() {
    let (mut p, _) = erl2(cfg());
    let (a, ca) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        true,
    );
    let (b, cb) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        false,
    );
    // The new login's ExpCmdSN is B's CmdSN: A acknowledged, B not.
    let mut r = responder();
    r.window = (u32::MAX, 32);
    lose_connection_and_relogin(&mut p, &mut r);
    let t1 = tmf(&p.target.expect());
    let t2 = tmf(&p.target.expect());
    assert_eq!(
        (t1.referenced_task_tag, t2.referenced_task_tag),
        (ca.itt, cb.itt)
    );
    assert_eq!(p.session.window().exp_cmd_sn(), cb.cmd_sn);
    tmf_response(&mut p.target, t1.itt, w::TmfResponse::TaskDoesNotExist);
    tmf_response(&mut p.target, t2.itt, w::TmfResponse::TaskDoesNotExist);
    p.deliver();
    assert_eq!(
        p.outcome(a),
        Some(&TaskOutcome::Failed(TaskError::OutcomeUnknown))
    );
    let again = scsi_cmd(&p.target.expect());
    assert_eq!((again.itt, again.cmd_sn), (cb.itt, cb.cmd_sn), "a retry");
    assert_eq!(p.target.pending(), 0);
    p.target.ack_cmd(again.cmd_sn);
    p.target.scsi_response(cb.itt, 0, Residual::None, None);
    p.deliver();
    assert_eq!((p.completions(a), p.completions(b)), (1, 1));
    assert_eq!(commands_for(&p.target, ca.itt).len(), 1);
}

/// A write reassigned mid-transfer: the target asks again with R2Ts for
/// what it still needs (RFC 7143 section 7.2.2) and the Data-Out answers
/// them from the same buffer; the command itself is not sent again.
#[test]
fn a_write_continues_after_reassignment() {
    let (mut p, _) = erl2(cfg());
    let data = Bytes::from((0..1024u32).map(|i| i as u8).collect::<Vec<_>>());
    let (task, c) = submit(
        &mut p,
        ScsiCommand::write(iscsi_proto::scsi::Lun::ZERO, &WRITE10[..], data.clone()),
        true,
    );
    p.target.r2t(c.itt, 0x10, 0, 0, 512);
    p.deliver();
    let Header::DataOut(d0) = p.target.expect().header else {
        panic!("Data-Out")
    };
    assert_eq!(d0.buffer_offset, 0);
    lose_connection_and_relogin(&mut p, &mut responder());
    let t = tmf(&p.target.expect());
    assert_eq!(
        (t.function, t.exp_data_sn),
        (w::TmfFunction::TaskReassign, Serial(0))
    );
    tmf_response(&mut p.target, t.itt, w::TmfResponse::FunctionComplete);
    p.target.r2t(c.itt, 0x11, 1, 512, 512);
    p.deliver();
    let pdu = p.target.expect();
    let Header::DataOut(d1) = pdu.header else {
        panic!("Data-Out")
    };
    assert_eq!((d1.ttt, d1.buffer_offset), (0x11, 512));
    assert_eq!(pdu.data, data.slice(512..));
    p.target.scsi_response(c.itt, 0, Residual::None, None);
    p.deliver();
    assert_eq!(p.completions(task), 1);
    assert_eq!(commands_for(&p.target, c.itt).len(), 1);
}

/// RFC 7143 section 13.16, DefaultTime2Retain: "the maximum time, after an
/// initial wait (Time2Wait), before which an active task reassignment is
/// still possible after an unexpected connection termination"; section
/// 11.9.1: AsyncEvent 2 carries Time2Wait (Parameter2) and Time2Retain
/// (Parameter3). Past it the tasks are gone at the target: the session is
/// reinstated (TSIH 0) and each task ends exactly once.
#[test]
fn past_time2retain_the_session_is_reinstated_instead() {
    let (mut p, _) = erl2(cfg().with_recovery(Recovery::default()));
    let (a, _ca) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]).with_reissue(Reissue::Never),
        true,
    );
    let (b, _cb) = submit(
        &mut p,
        ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4),
        true,
    );
    p.target
        .async_message(w::AsyncEvent::DropConnection, [0, 1, 1], &[]);
    p.deliver();
    p.session.handle_closed(p.now);
    p.flush();
    assert!(p.events.iter().any(|e| matches!(e, Event::Recovering { attempt: 1, after, .. } if *after == Duration::from_secs(1))));
    p.advance(Duration::from_secs(1));
    assert_eq!(p.connects.len(), 2);
    let (login, _) = last_login(&p.target);
    assert_ne!(login.tsih, 0, "connection recovery starts");
    // The login does not finish before Time2Wait + Time2Retain (2 s).
    p.advance(Duration::from_secs(1));
    assert!(
        p.events.iter().any(|e| matches!(
            e,
            Event::Recovering {
                cause: ConnectionError::TimedOut(TimerKind::Retain),
                ..
            }
        )),
        "{:?}",
        p.events
    );
    assert_eq!(
        p.outcome(a),
        Some(&TaskOutcome::Failed(TaskError::OutcomeUnknown)),
        "may have run; not run twice"
    );
    let after = p
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Recovering { after, .. } => Some(*after),
            _ => None,
        })
        .unwrap();
    p.advance(after);
    p.login_with(&mut responder());
    let (login, _) = last_login(&p.target);
    assert_eq!(login.tsih, 0, "session reinstatement");
    assert!(recovered(&p).is_none());
    let again = scsi_cmd(&p.target.expect());
    p.target
        .data_in(again.itt, 0, 0, b"wxyz", Some((0, Residual::None)));
    p.deliver();
    assert_eq!((p.completions(a), p.completions(b)), (1, 1));
}

/// A connection that dies during its own recovery (before its login
/// ends) is recovered again, still within the session.
#[test]
fn a_connection_that_dies_during_its_recovery_is_recovered_again() {
    let (mut p, _) = erl2(cfg());
    let tsih = p.session.tsih();
    let (a, ca) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        true,
    );
    p.session.handle_closed(p.now);
    p.flush();
    p.advance(Duration::from_secs(2));
    assert_eq!(p.connects.len(), 2);
    // The login request is out; the connection dies before the answer.
    p.session.handle_closed(p.now);
    p.flush();
    let attempts: Vec<u32> = p
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Recovering { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2]);
    let after = lose_connection_and_relogin_after_wait(&mut p, &mut responder());
    assert!(after >= Duration::from_secs(2));
    assert_eq!(last_login(&p.target).0.tsih, tsih);
    assert_eq!(recovered(&p), Some((1, 0)));
    let t = tmf(&p.target.expect());
    assert_eq!(t.referenced_task_tag, ca.itt);
    tmf_response(&mut p.target, t.itt, w::TmfResponse::FunctionComplete);
    p.target.scsi_response(ca.itt, 0, Residual::None, None);
    p.deliver();
    assert_eq!(p.completions(a), 1);
}

fn lose_connection_and_relogin_after_wait(p: &mut Pair, r: &mut LoginResponder) -> Duration {
    let after = p
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Recovering { after, .. } => Some(*after),
            _ => None,
        })
        .unwrap();
    p.advance(after);
    p.login_with(r);
    assert!(p.session.is_logged_in());
    after
}

/// At ErrorRecoveryLevel 0 or 1 nothing changes: a lost connection is
/// session recovery (RFC 7143 section 7.1.5), TSIH 0.
#[test]
fn below_level_2_a_lost_connection_reinstates_the_session() {
    let c = cfg().with_recovery(Recovery::default());
    let mut p = Pair::new(c);
    p.login_with(&mut LoginResponder::plain());
    assert_eq!(p.session.negotiated().unwrap().error_recovery_level, 0);
    let (a, _) = submit(
        &mut p,
        ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &TUR[..]),
        true,
    );
    lose_connection_and_relogin(&mut p, &mut LoginResponder::plain());
    assert_eq!(last_login(&p.target).0.tsih, 0);
    assert!(recovered(&p).is_none());
    let again = scsi_cmd(&p.target.expect());
    p.target.scsi_response(again.itt, 0, Residual::None, None);
    p.deliver();
    assert_eq!(p.completions(a), 1);
    let _ = RESERVED;
}
