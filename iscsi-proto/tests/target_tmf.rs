//! Target task management: the response waits for the tasks it covers
//! (RFC 7143 sections 11.5.1, 11.6.1 and 4.2.3.3; RFC 3720 10.5.1, 10.6.1,
//! 10.6.2).
//!
//! Each test quotes the rule it checks.

mod target_support;

use bytes::{Bytes, BytesMut};
use iscsi_proto::scsi::ScsiStatus;
use iscsi_proto::target::{Event as TargetEvent, TaskId, UsageError};
use iscsi_proto::wire::*;
use target_support::*;

fn ffp() -> Harness {
    let mut h = Harness::new(config());
    h.login(&[]);
    h.events();
    h
}

fn tmf(h: &mut Harness, function: TmfFunction, rtt: u32, ref_cmd_sn: Serial) -> TaskMgmtRequest {
    let itt = h.next_itt();
    TaskMgmtRequest {
        immediate: true,
        function,
        lun: 0,
        itt,
        referenced_task_tag: rtt,
        cmd_sn: h.cmd_sn,
        exp_stat_sn: Serial(0),
        ref_cmd_sn,
        exp_data_sn: Serial(0),
    }
}

fn tmf_responses(pdus: &[Pdu]) -> Vec<TaskMgmtResponse> {
    pdus.iter()
        .filter_map(|p| match p.header {
            Header::TaskMgmtResponse(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn aborted(ev: &[TargetEvent]) -> Vec<TaskId> {
    ev.iter()
        .filter_map(|e| match e {
            TargetEvent::TaskAborted { task } => Some(*task),
            _ => None,
        })
        .collect()
}

const FUNCTIONS: [TmfFunction; 5] = [
    TmfFunction::AbortTask,
    TmfFunction::AbortTaskSet,
    TmfFunction::ClearTaskSet,
    TmfFunction::LogicalUnitReset,
    TmfFunction::TargetWarmReset,
];

/// RFC 7143 section 11.5.1: "The iSCSI target MUST ensure that no
/// responses for the tasks covered by a task management function are
/// delivered to the iSCSI initiator after the Task Management response";
/// RFC 3720 10.6.2, the target: "c) Propagates the command to and receives
/// the response from the target SCSI layer ... e) Sends the task set
/// management response". A task the application is executing is stopped
/// only when the application says so: the response waits for
/// `abort_acknowledged`, for every function that aborts tasks.
#[test]
fn the_response_waits_for_the_acknowledgement() {
    for f in FUNCTIONS {
        let mut h = ffp();
        let c = h.cmd(true, false, 512, true);
        h.send(c, Bytes::new());
        let t = h.task_of(); // the application is executing it
        let req = tmf(&mut h, f, c.itt, c.cmd_sn);
        h.send(req, Bytes::new());
        assert!(
            tmf_responses(&h.recv()).is_empty(),
            "{f:?}: answered before the application stopped the task"
        );
        let ev = h.events();
        assert_eq!(aborted(&ev), vec![t], "{f:?}");
        assert!(
            !ev.iter()
                .any(|e| matches!(e, TargetEvent::TaskManagement { .. })),
            "{f:?}: TaskManagement is reported with the response"
        );
        // Unrelated traffic does not release it.
        let n = h.cmd(false, false, 0, true);
        h.send(n, Bytes::new());
        let other = h.task_of();
        h.s.complete(other, ScsiStatus::Good, None, Bytes::new())
            .unwrap();
        assert!(tmf_responses(&h.recv()).is_empty(), "{f:?}");
        h.s.abort_acknowledged(t).unwrap();
        let r = tmf_responses(&h.recv());
        assert_eq!(r.len(), 1, "{f:?}");
        assert_eq!(r[0].response, TmfResponse::FunctionComplete, "{f:?}");
        assert_eq!(r[0].itt, req.itt);
        let ev = h.events();
        assert!(
            matches!(&ev[..], [TargetEvent::TaskManagement { function, aborted, .. }]
                if *function == f && aborted == &vec![t]),
            "{f:?}: {ev:?}"
        );
        // Acknowledged once only.
        assert_eq!(h.s.abort_acknowledged(t), Err(UsageError::UnknownTask(t)));
    }
}

/// RFC 7143 section 11.5.1: "additional responses MUST NOT be delivered to
/// the SCSI layer after the Task Management response" and the target
/// "MUST ensure that no responses for the tasks covered ... are delivered
/// ... after the Task Management response". The application finishing the
/// task instead of acknowledging the abort counts as the acknowledgement,
/// and what it returns is discarded: no Data-In, no SCSI Response.
#[test]
fn a_completion_after_the_abort_acknowledges_and_is_discarded() {
    let mut h = ffp();
    let c = h.cmd(true, false, 4096, true);
    h.send(c, Bytes::new());
    let t = h.task_of();
    let req = tmf(&mut h, TmfFunction::AbortTaskSet, NO_TAG, Serial(0));
    h.send(req, Bytes::new());
    assert!(h.recv().is_empty());
    assert_eq!(aborted(&h.events()), vec![t]);
    h.s.complete(t, ScsiStatus::Good, None, pattern(4096))
        .unwrap();
    let out = h.recv();
    assert_eq!(out.len(), 1, "only the TMF response: {out:?}");
    assert_eq!(tmf_responses(&out).len(), 1);
    // After the response, the task is gone for good.
    assert_eq!(
        h.s.complete(t, ScsiStatus::Good, None, pattern(4096)),
        Err(UsageError::UnknownTask(t))
    );
    assert!(h.recv().is_empty());
}

const NO_TAG: u32 = 0xffff_ffff;

/// A write whose abort was answered never reaches the medium: when the
/// TMF arrives before the application took the command from the event
/// queue, the command is withdrawn (the application never sees it, so it
/// never writes it) and the response needs no acknowledgement; a command
/// the application already took is acknowledged first (previous tests).
#[test]
fn a_write_not_yet_taken_is_withdrawn() {
    let mut h = ffp();
    // Write with all its data immediate, then ABORT TASK SET, in one read
    // of the socket: the application has not polled in between.
    let mut c = h.cmd(false, true, 512, true);
    c.cdb[0] = 0x2a;
    let req = tmf(&mut h, TmfFunction::AbortTaskSet, NO_TAG, Serial(0));
    let mut buf = BytesMut::new();
    Pdu::new(c, pattern(512))
        .encode(&mut buf, Digests::NONE)
        .unwrap();
    Pdu::new(req, Bytes::new())
        .encode(&mut buf, Digests::NONE)
        .unwrap();
    h.s.handle_input(h.now, &mut buf);
    let out = h.recv();
    let r = tmf_responses(&out);
    assert_eq!(r.len(), 1, "{out:?}");
    assert_eq!(r[0].response, TmfResponse::FunctionComplete);
    let ev = h.events();
    assert!(
        !ev.iter().any(|e| matches!(e, TargetEvent::Command(_))),
        "the aborted write reached the application after its abort was answered: {ev:?}"
    );
    assert!(aborted(&ev).is_empty());
    assert_eq!(h.s.live_tasks(), 0);
}

/// RFC 7143 section 11.5.1: "Task management requests must act on all the
/// commands from the same session having a CmdSN lower than the task
/// management CmdSN ... If the task management request is marked for
/// immediate delivery, it must be considered immediately for execution,
/// but the operations involved (all or part of them) may be postponed to
/// allow the target to receive all relevant tasks"; RFC 3720 10.6.1: "The
/// response to ABORT TASK SET and CLEAR TASK SET MUST only be issued by
/// the target after all of the commands affected have been received by the
/// target".
#[test]
fn abort_task_set_waits_for_lower_cmdsns_still_in_flight() {
    for f in [TmfFunction::AbortTaskSet, TmfFunction::ClearTaskSet] {
        let mut h = ffp();
        let late = h.cmd(true, false, 512, true); // CmdSN 1000, delayed
        let held = h.cmd(true, false, 512, true); // CmdSN 1001
        h.send(held, Bytes::new());
        assert!(h.events().is_empty(), "1001 waits for 1000");
        let req = tmf(&mut h, f, NO_TAG, Serial(0)); // CmdSN 1002, immediate
        h.send(req, Bytes::new());
        assert!(
            tmf_responses(&h.recv()).is_empty(),
            "{f:?} answered before CmdSN 1000 was received"
        );
        h.send(late, Bytes::new());
        let out = h.recv();
        let r = tmf_responses(&out);
        assert_eq!(r.len(), 1, "{f:?}: {out:?}");
        assert_eq!(r[0].response, TmfResponse::FunctionComplete);
        assert_eq!(r[0].exp_cmd_sn, Serial(1002));
        // Neither command was executed or answered.
        assert!(
            !out.iter()
                .any(|p| matches!(p.header, Header::ScsiResponse(_) | Header::DataIn(_))),
            "{out:?}"
        );
        let ev = h.events();
        assert!(
            !ev.iter().any(|e| matches!(e, TargetEvent::Command(_))),
            "{f:?}: {ev:?}"
        );
        assert_eq!(h.s.live_tasks(), 0);
        // The session goes on.
        let c = h.cmd(true, false, 512, true);
        h.send(c, Bytes::new());
        let t = h.task_of();
        h.s.complete(t, ScsiStatus::Good, None, pattern(512))
            .unwrap();
        assert_eq!(h.recv().len(), 1);
    }
}

/// RFC 7143 section 11.5.1 (ABORT TASK SET and CLEAR TASK SET act on the
/// commands "having a CmdSN lower than the task management CmdSN"): a
/// command with a higher CmdSN that arrived early is not aborted.
#[test]
fn abort_task_set_spares_later_cmdsns() {
    let mut h = ffp();
    let a = h.cmd(true, false, 512, true); // 1000
    h.send(a, Bytes::new());
    let ta = h.task_of();
    let req = tmf(&mut h, TmfFunction::AbortTaskSet, NO_TAG, Serial(0)); // 1001, immediate
    let _gap = h.cmd(true, false, 512, true); // 1001, never sent
    let later = h.cmd(true, false, 512, true); // 1002
    h.send(later, Bytes::new());
    h.send(req, Bytes::new());
    assert_eq!(aborted(&h.events()), vec![ta]);
    h.s.abort_acknowledged(ta).unwrap();
    assert_eq!(tmf_responses(&h.recv()).len(), 1);
    assert_eq!(h.s.live_tasks(), 1, "CmdSN 1002 is not covered");
}
