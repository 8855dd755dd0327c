//! Integrity rules of the initiator, each test written from the RFC 7143
//! sentence it quotes: task management never overtakes the commands it
//! covers, recovery never silently re-executes a command, bidirectional
//! numbering, logout.

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::error::TaskError;
use iscsi_proto::initiator::{
    Event, LogoutMode, Recovery, Reissue, ScsiCommand, SessionConfig, TaskOutcome,
};
use iscsi_proto::testing::{LoginResponder, Pair};
use iscsi_proto::wire::pdu::{self as w, Header};
use iscsi_proto::wire::{Pdu, Serial};

const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 32, 0];
const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
/// COMPARE AND WRITE (SBC-3 5.2): not idempotent.
const CAW: [u8; 16] = [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];

fn cfg() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk")
}

fn recovering() -> SessionConfig {
    cfg().with_recovery(Recovery {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    })
}

fn logged_in(c: SessionConfig) -> Pair {
    let mut p = Pair::new(c);
    p.login_with(&mut LoginResponder::plain());
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    p
}

fn all_pdus(p: &mut Pair) -> Vec<Pdu> {
    let mut v = Vec::new();
    while let Some(pdu) = p.target.recv() {
        v.push(pdu);
    }
    v
}

/// The ITT of the first Logout Request among `pdus`.
fn logout_itt(pdus: &[Pdu]) -> Option<u32> {
    pdus.iter().find_map(|x| match &x.header {
        Header::LogoutRequest(h) => Some(h.itt),
        _ => None,
    })
}

/// Sequence numbers of command PDUs in wire order: (is TMF, CmdSN, ITT).
fn commands(pdus: &[Pdu]) -> Vec<(bool, Serial, u32)> {
    pdus.iter()
        .filter_map(|p| match &p.header {
            Header::ScsiCommand(h) => Some((false, h.cmd_sn, h.itt)),
            Header::TaskMgmtRequest(h) => Some((true, h.cmd_sn, h.itt)),
            _ => None,
        })
        .collect()
}

/// RFC 7143 section 11.5.1: "the target must wait for ... [affected]
/// commands with CmdSN lower than the TMF's CmdSN"; a TMF can only cover
/// what reached the target before it. So on the wire a TMF never precedes
/// a command with a lower CmdSN that it covers.
#[test]
fn abort_task_set_follows_the_commands_still_in_the_transmit_queue() {
    let mut p = logged_in(cfg());
    let data = Bytes::from(vec![7u8; 16384]);
    let wr = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(iscsi_proto::scsi::Lun::ZERO, &WRITE10[..], data),
        )
        .unwrap();
    // The socket would block: nothing drained yet.
    let tmf = p
        .session
        .task_management(p.now, 0, w::TmfFunction::AbortTaskSet)
        .unwrap();
    p.flush();
    let pdus = all_pdus(&mut p);
    let cmds = commands(&pdus);
    let cmd_pos = cmds.iter().position(|c| !c.0).expect("the write is sent");
    let tmf_pos = cmds.iter().position(|c| c.0).expect("the TMF is sent");
    assert!(cmd_pos < tmf_pos, "TMF overtook the command: {cmds:?}");
    // The TMF's CmdSN is above the write's: the write is covered.
    assert!(cmds[cmd_pos].1.precedes(cmds[tmf_pos].1), "{cmds:?}");
    // Function complete aborts the write, exactly once.
    p.target
        .tmf_response(cmds[tmf_pos].2, w::TmfResponse::FunctionComplete);
    p.deliver();
    assert_eq!(
        p.outcome(wr),
        Some(&TaskOutcome::Failed(TaskError::Aborted(
            w::TmfFunction::AbortTaskSet
        )))
    );
    assert_eq!(p.completions(wr), 1);
    assert_eq!(p.completions(tmf), 1);
}

/// Same rule for ABORT TASK of a command that holds a CmdSN but is not yet
/// on the wire (RFC 7143 section 11.5.1, RefCmdSN).
#[test]
fn abort_task_follows_its_command() {
    let mut p = logged_in(cfg());
    let rd = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512),
        )
        .unwrap();
    let _tmf = p.session.abort_task(p.now, rd).unwrap();
    p.flush();
    let cmds = commands(&all_pdus(&mut p));
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert!(
        !cmds[0].0 && cmds[1].0,
        "TMF overtook the command: {cmds:?}"
    );
}

/// RFC 7143 section 6.3.5 / 7.1.4.4: after session reinstatement "the
/// tasks ... are terminated"; reissuing is the initiator's choice, and only
/// safe for commands whose effect does not depend on whether they ran
/// before. COMPARE AND WRITE does: it fails back with an "outcome unknown"
/// error instead of running again behind the application's back.
#[test]
fn recovery_does_not_reissue_a_non_idempotent_command() {
    let mut p = logged_in(recovering());
    let caw = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &CAW[..],
                Bytes::from(vec![0u8; 1024]),
            ),
        )
        .unwrap();
    let rd = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512),
        )
        .unwrap();
    p.flush();
    let first = commands(&all_pdus(&mut p));
    assert_eq!(first.len(), 2);
    p.session.handle_closed(p.now);
    p.flush();
    assert_eq!(
        p.outcome(caw),
        Some(&TaskOutcome::Failed(TaskError::OutcomeUnknown))
    );
    assert_eq!(p.completions(caw), 1);
    // Reconnect and log in again: only the read goes out.
    p.advance(Duration::from_secs(5));
    p.login_with(&mut LoginResponder::plain());
    p.flush();
    let again = commands(&all_pdus(&mut p));
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(p.outcome(rd).is_none());
}

/// The application decides per command: `Reissue::Never` on a READ fails
/// it back; `Reissue::Always` on COMPARE AND WRITE reissues it.
#[test]
fn reissue_is_a_per_command_choice() {
    let mut p = logged_in(recovering());
    let rd = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512)
                .with_reissue(Reissue::Never),
        )
        .unwrap();
    let caw = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &CAW[..],
                Bytes::from(vec![0u8; 1024]),
            )
            .with_reissue(Reissue::Always),
        )
        .unwrap();
    p.flush();
    let _ = all_pdus(&mut p);
    p.session.handle_closed(p.now);
    p.flush();
    assert_eq!(
        p.outcome(rd),
        Some(&TaskOutcome::Failed(TaskError::OutcomeUnknown))
    );
    assert!(p.outcome(caw).is_none());
}

/// A command that never reached the wire before the loss is safe to send
/// after recovery, whatever it is.
#[test]
fn an_unsent_command_is_sent_after_recovery() {
    let mut p = logged_in(recovering());
    let caw = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &CAW[..],
                Bytes::from(vec![0u8; 1024]),
            ),
        )
        .unwrap();
    // Lost before anything was written to the socket.
    p.session.handle_closed(p.now);
    p.flush();
    assert!(p.outcome(caw).is_none(), "{:?}", p.events);
    p.advance(Duration::from_secs(5));
    p.login_with(&mut LoginResponder::plain());
    p.flush();
    assert_eq!(commands(&all_pdus(&mut p)).len(), 1);
}

/// A task whose ABORT TASK was in flight when the connection died may
/// have been aborted or have run: it is never reissued.
#[test]
fn a_task_with_an_abort_in_flight_is_not_reissued() {
    let mut p = logged_in(recovering());
    let rd = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512),
        )
        .unwrap();
    p.flush();
    let _tmf = p.session.abort_task(p.now, rd).unwrap();
    p.flush();
    let _ = all_pdus(&mut p);
    p.session.handle_closed(p.now);
    p.flush();
    assert_eq!(
        p.outcome(rd),
        Some(&TaskOutcome::Failed(TaskError::OutcomeUnknown))
    );
    p.advance(Duration::from_secs(5));
    p.login_with(&mut LoginResponder::plain());
    p.flush();
    assert_eq!(commands(&all_pdus(&mut p)).len(), 0);
}

/// RFC 7143 section 11.7.4: "R2T and Data-In PDUs, in the context of
/// bidirectional commands, share the numbering sequence". Data-In DataSN 0
/// then R2T R2TSN 1 is legal.
#[test]
fn bidirectional_data_in_and_r2t_share_one_sequence() {
    let mut p = logged_in(cfg());
    let mut cmd = ScsiCommand::write(
        iscsi_proto::scsi::Lun::ZERO,
        &WRITE10[..],
        Bytes::from(vec![1u8; 512]),
    );
    cmd.expected_read_len = 512;
    let t = p.session.submit(p.now, cmd).unwrap();
    p.flush();
    let pdus = all_pdus(&mut p);
    let itt = commands(&pdus)[0].2;
    p.target.data_in(itt, 0, 0, &[9u8; 512], None);
    p.target.r2t(itt, 0x55, 1, 0, 512);
    p.deliver();
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    let outs: Vec<Pdu> = all_pdus(&mut p);
    assert!(
        outs.iter()
            .any(|o| matches!(&o.header, Header::DataOut(d) if d.ttt == 0x55)),
        "no Data-Out for the R2T: {outs:?}"
    );
    assert!(p.outcome(t).is_none());
}

/// RFC 7143 section 11.14: "After sending the Logout Request PDU, an
/// initiator MUST NOT send any new iSCSI requests on the closing
/// connection." A keepalive ping is such a request.
#[test]
fn no_keepalive_after_the_logout_request() {
    let c = cfg().with_keepalive(Duration::from_secs(1), Duration::from_secs(30));
    let mut p = logged_in(c);
    p.session.logout(p.now, LogoutMode::WaitForTasks).unwrap();
    p.flush();
    let first = all_pdus(&mut p);
    assert!(logout_itt(&first).is_some());
    p.advance(Duration::from_secs(5));
    p.advance(Duration::from_secs(5));
    let after = all_pdus(&mut p);
    assert!(after.is_empty(), "sent after the Logout Request: {after:?}");
}

/// RFC 7143 section 11.14: a session logs out by "Logout Request, close the
/// session"; a target that closes the connection right after the request,
/// with no task outstanding, has done what was asked. The session ends
/// cleanly, not as a connection failure.
#[test]
fn connection_closed_after_logout_request_is_a_logout() {
    let mut p = logged_in(cfg());
    let lo = p.session.logout(p.now, LogoutMode::WaitForTasks).unwrap();
    p.flush();
    let _ = all_pdus(&mut p);
    p.session.handle_closed(p.now);
    p.flush();
    assert!(
        matches!(p.outcome(lo), Some(TaskOutcome::LoggedOut(r)) if !r.answered),
        "{:?}",
        p.events
    );
    assert!(
        p.events.iter().any(|e| matches!(e, Event::Closed(None))),
        "{:?}",
        p.events
    );
}

/// RFC 7143 section 11.9.1, AsyncEvent 1: "the initiator MUST honor this
/// request by issuing a Logout as early as possible but no later than
/// Parameter3 seconds". The application's own logout joins it instead of
/// failing with "a logout is in progress".
#[test]
fn application_logout_joins_a_target_requested_logout() {
    let mut p = logged_in(cfg());
    p.target
        .async_message(w::AsyncEvent::LogoutRequested, [0, 0, 2], &[]);
    p.deliver();
    let req =
        logout_itt(&all_pdus(&mut p)).expect("the logout goes out at once: no task outstanding");
    let lo = p.session.logout(p.now, LogoutMode::WaitForTasks);
    assert!(lo.is_ok(), "{lo:?}");
    p.target.logout_response(req, 0, 0);
    p.deliver();
    assert!(matches!(
        p.outcome(lo.unwrap()),
        Some(TaskOutcome::LoggedOut(_))
    ));
}

/// AsyncEvent 1 with recovery on: outstanding commands finish, the Logout
/// goes out, and the session logs in again; work submitted meanwhile runs
/// on the new session.
#[test]
fn target_requested_logout_with_recovery_logs_in_again() {
    let mut p = logged_in(recovering());
    let rd = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512),
        )
        .unwrap();
    p.flush();
    let itt = commands(&all_pdus(&mut p))[0].2;
    p.target
        .async_message(w::AsyncEvent::LogoutRequested, [0, 0, 5], &[]);
    p.deliver();
    // New work while the logout waits for the read.
    let later = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512),
        )
        .expect("work queues for the next login");
    p.flush();
    let mid = all_pdus(&mut p);
    assert!(
        !mid.iter()
            .any(|x| matches!(x.header, Header::LogoutRequest(_))),
        "logout before the read finished: {mid:?}"
    );
    assert!(commands(&mid).is_empty(), "{mid:?}");
    p.target
        .data_in(itt, 0, 0, &[3u8; 512], Some((0, w::Residual::None)));
    p.deliver();
    assert!(matches!(p.outcome(rd), Some(TaskOutcome::Scsi(_))));
    let lo = logout_itt(&all_pdus(&mut p)).expect("logout after the read");
    p.target.logout_response(lo, 0, 0);
    p.deliver();
    p.advance(Duration::from_secs(5));
    p.login_with(&mut LoginResponder::plain());
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    p.flush();
    assert_eq!(commands(&all_pdus(&mut p)).len(), 1);
    assert!(p.outcome(later).is_none());
}

fn tmfs(pdus: &[Pdu]) -> Vec<w::TaskMgmtRequest> {
    pdus.iter()
        .filter_map(|p| match &p.header {
            Header::TaskMgmtRequest(h) => Some(*h),
            _ => None,
        })
        .collect()
}

/// A target that never answers a command must not leave it pending
/// forever. With a per-task timeout the initiator escalates as open-iscsi
/// does: ABORT TASK (RFC 7143 section 11.5.1), then LOGICAL UNIT RESET,
/// then it drops the connection (section 7.1.5: recovery at ERL 0).
#[test]
fn a_command_the_target_never_answers_escalates() {
    let c = cfg().with_task_timeout(Duration::from_secs(5));
    let mut p = logged_in(c);
    let rd = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512),
        )
        .unwrap();
    p.flush();
    let itt = commands(&all_pdus(&mut p))[0].2;
    p.advance(Duration::from_secs(4));
    assert!(tmfs(&all_pdus(&mut p)).is_empty());
    p.advance(Duration::from_secs(1));
    let abort = tmfs(&all_pdus(&mut p));
    assert_eq!(abort.len(), 1, "{abort:?}");
    assert_eq!(abort[0].function, w::TmfFunction::AbortTask);
    assert_eq!(abort[0].referenced_task_tag, itt);
    p.advance(Duration::from_secs(5));
    let reset = tmfs(&all_pdus(&mut p));
    assert_eq!(reset.len(), 1, "{reset:?}");
    assert_eq!(reset[0].function, w::TmfFunction::LogicalUnitReset);
    assert!(p.outcome(rd).is_none());
    p.advance(Duration::from_secs(5));
    assert_eq!(
        p.outcome(rd),
        Some(&TaskOutcome::Failed(TaskError::ConnectionLost))
    );
    assert!(p.session.is_closed(), "{:?}", p.events);
    assert_eq!(p.completions(rd), 1);
}

/// The ABORT TASK of a timed-out command is answered "Function complete":
/// the command ends once, with a timeout error the application can tell
/// from an abort it asked for.
#[test]
fn a_timed_out_command_ends_once_when_its_abort_completes() {
    let c = cfg().with_task_timeout(Duration::from_secs(5));
    let mut p = logged_in(c);
    let rd = p
        .session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 512),
        )
        .unwrap();
    p.flush();
    let _ = all_pdus(&mut p);
    p.advance(Duration::from_secs(5));
    let abort = tmfs(&all_pdus(&mut p));
    assert_eq!(abort.len(), 1);
    p.target
        .tmf_response(abort[0].itt, w::TmfResponse::FunctionComplete);
    p.deliver();
    assert_eq!(
        p.outcome(rd),
        Some(&TaskOutcome::Failed(TaskError::TimedOut))
    );
    assert_eq!(p.completions(rd), 1);
    // Nothing more happens: no reset, no drop.
    p.advance(Duration::from_secs(30));
    assert!(tmfs(&all_pdus(&mut p)).is_empty());
    assert!(p.session.is_logged_in());
}

/// TaskReporting=FastAbort (RFC 7143 section 13.23) changes what the target
/// reports for aborted tasks and adds AsyncEvent 5 duties; this initiator
/// does not implement it, so it must not offer it.
#[test]
fn fast_abort_is_not_offered() {
    let mut c = cfg().with_isid(iscsi_proto::wire::Isid::random([1, 2, 3], 0));
    c.operational.task_reporting = vec![iscsi_proto::login::negotiation::TaskReporting::FastAbort];
    let r = iscsi_proto::initiator::Session::new(c, iscsi_proto::time::Instant::ZERO);
    assert!(r.is_err(), "{r:?}");
}

/// RFC 7143 section 13.12: MaxRecvDataSegmentLength is declarative and may
/// be sent in the Full Feature Phase; after AsyncEvent 4 (section 11.9.1,
/// "the target requests parameter negotiation") the target re-declares
/// 1024 in its Text Response, and from then on no data segment to it is
/// longer than 1024 bytes.
#[test]
fn a_max_recv_data_segment_length_the_target_redeclares_is_obeyed() {
    let mut p = logged_in(cfg());
    p.target
        .async_message(w::AsyncEvent::NegotiationRequested, [0, 0, 0], &[]);
    p.deliver();
    let text = all_pdus(&mut p)
        .into_iter()
        .find_map(|x| match x.header {
            Header::TextRequest(h) => Some(h),
            _ => None,
        })
        .expect("a Text Request answers AsyncEvent 4");
    p.target.text_response(
        text.itt,
        true,
        false,
        0xffff_ffff,
        b"MaxRecvDataSegmentLength=1024\0",
    );
    p.deliver();
    assert!(p.session.is_logged_in(), "{:?}", p.events);
    assert_eq!(
        p.session
            .negotiated()
            .unwrap()
            .target_max_recv_data_segment_length,
        1024
    );
    let t = p
        .session
        .submit(
            p.now,
            ScsiCommand::write(
                iscsi_proto::scsi::Lun::ZERO,
                &WRITE10[..],
                Bytes::from(vec![5u8; 4096]),
            ),
        )
        .unwrap();
    p.flush();
    for pdu in all_pdus(&mut p) {
        assert!(
            pdu.data.len() <= 1024,
            "{} bytes to the target",
            pdu.data.len()
        );
    }
    assert!(p.outcome(t).is_none());
}

/// The application re-declares its own MaxRecvDataSegmentLength in the
/// Full Feature Phase (RFC 7143 section 13.12); the task completes when
/// the target answers.
#[test]
fn the_application_can_redeclare_its_max_recv_data_segment_length() {
    let mut p = logged_in(cfg());
    let task = p
        .session
        .declare_max_recv_data_segment_length(p.now, 16384)
        .unwrap();
    p.flush();
    let (text, data) = all_pdus(&mut p)
        .into_iter()
        .find_map(|x| match x.header {
            Header::TextRequest(h) => Some((h, x.data)),
            _ => None,
        })
        .expect("a Text Request");
    assert_eq!(&data[..], b"MaxRecvDataSegmentLength=16384\0");
    p.target.text_response(
        text.itt,
        true,
        false,
        0xffff_ffff,
        b"MaxRecvDataSegmentLength=8192\0",
    );
    p.deliver();
    assert!(
        matches!(p.outcome(task), Some(TaskOutcome::Negotiated)),
        "{:?}",
        p.events
    );
    let n = p.session.negotiated().unwrap();
    assert_eq!(n.initiator_max_recv_data_segment_length, 16384);
    assert_eq!(n.target_max_recv_data_segment_length, 8192);
}

/// RFC 7143 section 6.3.5: a login with the same InitiatorName and ISID
/// and TSIH 0 reinstates (replaces) the existing session. Two initiators
/// sharing them take turns closing each other's connection right after
/// each login; that is not a connection failure to retry forever: it is
/// detected and reported.
#[test]
fn a_session_taken_over_again_and_again_is_reported() {
    let c = cfg().with_recovery(Recovery {
        max_attempts: 1000,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    });
    let mut p = logged_in(c);
    for _ in 0..20 {
        if p.session.is_closed() {
            break;
        }
        // The other initiator's login closes our connection.
        p.advance(Duration::from_secs(1));
        p.session.handle_closed(p.now);
        p.flush();
        p.advance(Duration::from_secs(3));
        if p.session.is_closed() {
            break;
        }
        p.login_with(&mut LoginResponder::plain());
    }
    assert!(
        p.events.iter().any(|e| matches!(
            e,
            Event::Closed(Some(iscsi_proto::error::ConnectionError::TakenOver { .. }))
        )),
        "{:?}",
        p.events
    );
}

/// The default reissue rule: the READ/WRITE families and commands that
/// change nothing may run twice; COMPARE AND WRITE (SBC-3 5.2), PERSISTENT
/// RESERVE OUT (SPC-4 6.16) and GET LBA STATUS's service action (not READ
/// CAPACITY(16)) are not on the list.
#[test]
fn the_default_reissue_rule_follows_the_opcode() {
    let auto = |cdb: &[u8]| Reissue::Auto.allows(cdb);
    assert!(auto(&READ10));
    assert!(auto(&WRITE10));
    assert!(auto(&[0x9e, 0x10]), "READ CAPACITY(16)");
    assert!(!auto(&[0x9e, 0x12]), "GET LBA STATUS");
    assert!(!auto(&CAW));
    assert!(!auto(&[0x5f, 0x06]), "PERSISTENT RESERVE OUT");
    assert!(!auto(&[0x2e]), "WRITE AND VERIFY(10)");
    assert!(!auto(&[]));
    assert!(Reissue::Always.allows(&CAW));
    assert!(!Reissue::Never.allows(&READ10));
}
