//! The target's sequence reception timeout for Data-Out (RFC 7143 section
//! 7.1.4.1 b, 11.8, 13.19): awaited Data-Out that never comes is asked
//! for again with a recovery R2T at ErrorRecoveryLevel >= 1 and costs the
//! connection at level 0; a write never waits forever. Time is an input
//! (`handle_timeout(now)`); each test quotes its rule.

mod target_support;

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::target::{CloseReason, Event as TargetEvent, SessionConfig as TargetConfig};
use iscsi_proto::wire::*;
use target_support::*;

const TIMEOUT: Duration = Duration::from_secs(7);

fn cfg(erl: u8) -> TargetConfig {
    let mut c = config();
    c.params.error_recovery_level = erl;
    c.nop = None;
    c.data_out_timeout = Some(TIMEOUT);
    c
}

/// Logged in at `erl`, 8192-byte bursts, the given InitialR2T.
fn login(erl: u8, initial_r2t: &str) -> Harness {
    let mut c = cfg(erl);
    c.params.initial_r2t = initial_r2t == "Yes";
    let mut h = Harness::new(c);
    let e = erl.to_string();
    h.login(&[
        ("ErrorRecoveryLevel", e.as_str()),
        ("MaxRecvDataSegmentLength", "4096"),
        ("MaxBurstLength", "8192"),
        ("FirstBurstLength", "8192"),
        ("InitialR2T", initial_r2t),
        ("ImmediateData", "No"),
    ]);
    h.events();
    h
}

fn r2t(p: &Pdu) -> R2t {
    match p.header {
        Header::R2t(r) => r,
        ref other => panic!("expected R2T, got {other:?}"),
    }
}

/// Lets time run to the session's next deadline, which must be `at`.
fn fire(h: &mut Harness, at: iscsi_proto::time::Instant) {
    assert_eq!(h.s.poll_timeout(), Some(at));
    h.now = at;
    h.s.handle_timeout(at);
}

#[test]
fn a_lost_last_data_out_is_asked_again_by_a_recovery_r2t() {
    // RFC 7143 section 7.1.4.1: at the target, a "Lost data PDU - realized
    // through ... b) Sequence reception timeout (no data or
    // partial-data-and-no-F-bit) - considered an implicit sequence error
    // and dealt with ... using the option of a recovery R2T"; section
    // 11.8: "A Recovery-R2T carries the next unused R2TSN, but requests
    // part of or the entire data burst that an earlier R2T (with a lower
    // R2TSN) had already requested"; section 13.19: an R2T is outstanding
    // until its last data PDU "or a sequence reception timeout".
    let mut h = login(1, "Yes");
    let c = h.cmd(false, true, 8192, true);
    h.send(c, Bytes::new());
    let first = r2t(&h.recv()[0]);
    let data = pattern(8192);
    h.advance(Duration::from_secs(3));
    // The first half arrives (pushing the deadline back), the second
    // (F=1) is lost.
    h.send(
        h.data_out(c.itt, first.ttt, 0, 0, false),
        data.slice(..4096),
    );
    let due = h.now + TIMEOUT;
    h.s.handle_timeout(due - Duration::from_millis(1));
    assert!(h.recv().is_empty(), "nothing before the timeout");
    fire(&mut h, due);
    let r = h.recv();
    assert_eq!(r.len(), 1, "{r:?}");
    let rec = r2t(&r[0]);
    assert_eq!(rec.r2t_sn, first.r2t_sn.next());
    assert_ne!(rec.ttt, first.ttt);
    assert_eq!(
        (rec.buffer_offset, rec.desired_data_transfer_length),
        (4096, 4096)
    );
    // The lost PDU turns up late: dropped silently, not an error.
    h.send(
        h.data_out(c.itt, first.ttt, 1, 4096, true),
        data.slice(4096..),
    );
    assert!(h.recv().is_empty());
    assert!(h.events().is_empty());
    h.send(
        h.data_out(c.itt, rec.ttt, 0, 4096, true),
        data.slice(4096..),
    );
    assert_eq!(h.command_event().data_out, data);
    assert_eq!(h.s.rejects_sent(), 0);
    // Nothing awaited any more: no timer left.
    assert_eq!(h.s.poll_timeout(), None);
    assert!(!h.s.is_closed());
}

#[test]
fn a_lost_unsolicited_burst_is_asked_for_by_r2t() {
    // Section 7.1.4.1 b (the unsolicited burst is a data sequence too):
    // the announced unsolicited Data-Out (F=0 on the command with
    // InitialR2T=No, section 13.10) stops coming; the R2T that follows
    // asks from the first byte missing.
    let mut h = login(1, "No");
    let c = h.cmd(false, true, 12288, false);
    h.send(c, Bytes::new());
    assert!(h.recv().is_empty());
    let data = pattern(12288);
    h.send(h.data_out(c.itt, NO_TAG, 0, 0, false), data.slice(..4096));
    let due = h.now + TIMEOUT;
    fire(&mut h, due);
    let r = h.recv();
    assert_eq!(r.len(), 1, "{r:?}");
    let a = r2t(&r[0]);
    assert_eq!(
        (a.buffer_offset, a.desired_data_transfer_length),
        (4096, 8192)
    );
    // The rest of the unsolicited burst, late: dropped.
    h.send(
        h.data_out(c.itt, NO_TAG, 1, 4096, true),
        data.slice(4096..8192),
    );
    assert!(h.recv().is_empty());
    h.send(
        h.data_out(c.itt, a.ttt, 0, 4096, false),
        data.slice(4096..8192),
    );
    h.send(h.data_out(c.itt, a.ttt, 1, 8192, true), data.slice(8192..));
    assert_eq!(h.command_event().data_out, data);
    assert_eq!(h.s.rejects_sent(), 0);
}

#[test]
fn data_that_never_comes_costs_the_connection_not_a_hang() {
    // Section 7.1.5: recovery at ErrorRecoveryLevel 0 is session recovery;
    // at level 1, recovery R2Ts that bring nothing either: the connection
    // fails (the task is terminated with it) instead of waiting forever.
    for erl in [0u8, 1] {
        let mut h = login(erl, "Yes");
        let c = h.cmd(false, true, 4096, true);
        h.send(c, Bytes::new());
        let mut last = r2t(&h.recv()[0]);
        let mut recovery_r2ts = 0;
        while !h.s.is_closed() {
            let due = h.now + TIMEOUT;
            fire(&mut h, due);
            for p in h.recv() {
                let r = r2t(&p);
                assert_eq!(r.r2t_sn, last.r2t_sn.next());
                assert_eq!((r.buffer_offset, r.desired_data_transfer_length), (0, 4096));
                last = r;
                recovery_r2ts += 1;
            }
            assert!(recovery_r2ts <= 3, "bounded");
        }
        assert_eq!(recovery_r2ts, if erl == 0 { 0 } else { 3 }, "erl {erl}");
        let ev = h.events();
        assert!(
            ev.iter().any(|e| matches!(
                e,
                TargetEvent::Closed {
                    reason: CloseReason::DataOutTimeout,
                    ..
                }
            )),
            "{ev:?}"
        );
        assert!(ev.iter().all(|e| !matches!(e, TargetEvent::Command(_))));
    }
}

#[test]
fn a_failing_write_waiting_for_its_f_bit_ends_at_the_timeout() {
    // Section 11.17.1 (after the reason table): a target ending a task for
    // a data error "MUST wait until it receives the last expected Data-Out
    // PDUs with the F bit set to 1 before sending the Response PDU"; when
    // they never come the sequence reception timeout ends the wait (at
    // any level): CHECK CONDITION, never executed.
    for erl in [0u8, 1] {
        let mut h = login(erl, "Yes");
        // F=0 announces unsolicited data InitialR2T=Yes forbids (section
        // 13.10): the task fails, and waits for the F bit.
        let c = h.cmd(false, true, 4096, false);
        h.send(c, Bytes::new());
        assert!(h.recv().is_empty());
        let due = h.now + TIMEOUT;
        fire(&mut h, due);
        let r = h.recv();
        assert!(
            matches!(r.as_slice(), [p] if matches!(p.header, Header::ScsiResponse(s) if s.itt == c.itt && s.status == 2)),
            "{r:?}"
        );
        assert!(h
            .events()
            .iter()
            .all(|e| !matches!(e, TargetEvent::Command(_))));
        assert!(!h.s.is_closed());
    }
}

#[test]
fn no_timer_without_awaited_data_and_none_when_disabled() {
    // The timeout is about awaited Data-Out only: a read has none; and
    // `data_out_timeout: None` keeps waiting (the application's choice).
    let mut h = login(1, "Yes");
    let c = h.cmd(true, false, 4096, true);
    h.send(c, Bytes::new());
    h.command_event();
    assert_eq!(h.s.poll_timeout(), None);
    let mut c0 = cfg(1);
    c0.data_out_timeout = None;
    let mut h = Harness::new(c0);
    h.login(&[("ErrorRecoveryLevel", "1"), ("InitialR2T", "Yes")]);
    h.events();
    let c = h.cmd(false, true, 4096, true);
    h.send(c, Bytes::new());
    r2t(&h.recv()[0]);
    assert_eq!(h.s.poll_timeout(), None);
}

const NO_TAG: u32 = 0xffff_ffff;
