//! Receive coalescing: what the target owes (`Session::expected_input`) and
//! the low-water mark planner (`LowWater`), against a scripted target.

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::initiator::coalesce::{MAX_MARK, MIN_TASKS, PROBE_EVERY, PROBE_LEN};
use iscsi_proto::initiator::{Coalesce, ExpectedInput, LowWater, ScsiCommand, SessionConfig};
use iscsi_proto::testing::{LoginResponder, Pair};
use iscsi_proto::wire::pdu::{Header, Residual};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const BHS: usize = 48;

fn cfg() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk")
}

fn plain() -> Pair {
    let mut p = Pair::new(cfg());
    p.login_with(&mut LoginResponder::plain());
    assert!(p.session.is_logged_in());
    p
}

/// Our MaxRecvDataSegmentLength: the longest Data-In segment.
fn seg(p: &Pair) -> usize {
    p.session
        .negotiated()
        .unwrap()
        .initiator_max_recv_data_segment_length as usize
}

fn read(p: &mut Pair, len: u32) {
    p.session
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], len),
        )
        .unwrap();
}

/// A logged-in session with `n` reads of `len` bytes sent to the target.
fn reading(n: usize, len: u32) -> Pair {
    let mut p = plain();
    for _ in 0..n {
        read(&mut p, len);
    }
    p.flush();
    p
}

fn write(p: &mut Pair, len: usize) {
    let data = Bytes::from(vec![7u8; len]);
    p.session
        .submit(
            p.now,
            ScsiCommand::write(iscsi_proto::scsi::Lun::ZERO, &WRITE10[..], data),
        )
        .unwrap();
}

/// Feeds the planner `bytes_per_ms` bytes every millisecond for 20 ms of
/// virtual time, so it has a rate estimate.
fn warm_up(lw: &mut LowWater, p: &mut Pair, bytes_per_ms: usize) {
    for _ in 0..20 {
        p.advance(Duration::from_millis(1));
        lw.on_input(bytes_per_ms, p.now);
    }
}

#[test]
fn nothing_is_owed_before_login() {
    let p = Pair::new(cfg());
    assert_eq!(p.session.expected_input(8), ExpectedInput::default());
}

#[test]
fn reads_owe_their_data_and_headers_writes_a_header() {
    let mut p = plain();
    for _ in 0..3 {
        read(&mut p, 4096);
    }
    write(&mut p, 512);
    // Not yet taken by the driver, but numbered: counted (the driver does
    // not coalesce while output is pending).
    p.flush();
    let all = p.session.expected_input(0);
    assert_eq!((all.tasks, all.bytes), (4, 0));
    // The least first: the write's SCSI Response, then whole reads with
    // their status in the last Data-In.
    assert_eq!(p.session.expected_input(1).bytes, BHS);
    assert_eq!(p.session.expected_input(2).bytes, BHS + 4096 + BHS);
    assert_eq!(p.session.expected_input(4).bytes, BHS + 3 * (4096 + BHS));
    assert_eq!(p.session.expected_input(100).bytes, BHS + 3 * (4096 + BHS));
}

#[test]
fn a_long_read_owes_one_header_per_segment_and_less_once_data_came() {
    let mut p = plain();
    let s = seg(&p);
    let len = 2 * s + 100;
    read(&mut p, len as u32);
    p.flush();
    let c = match p.target.expect().header {
        Header::ScsiCommand(c) => c,
        h => panic!("{:?}", h.opcode()),
    };
    assert_eq!(p.session.expected_input(1).bytes, len + 3 * BHS);
    // The first segment arrives: the rest is owed.
    p.target.ack_cmd(c.cmd_sn);
    p.target.data_in(c.itt, 0, 0, &vec![1u8; s], None);
    p.deliver();
    assert_eq!(p.session.expected_input(1).bytes, s + 100 + 2 * BHS);
    p.target.data_in(c.itt, 1, s as u32, &vec![1u8; s], None);
    p.deliver();
    assert_eq!(p.session.expected_input(1).bytes, 100 + BHS);
    // The last segment with the status: nothing owed.
    p.target.data_in(
        c.itt,
        2,
        2 * s as u32,
        &[1u8; 100],
        Some((0, Residual::None)),
    );
    p.deliver();
    assert_eq!(p.session.expected_input(1), ExpectedInput::default());
}

#[test]
fn commands_held_by_a_closed_window_owe_nothing() {
    // MaxCmdSN = ExpCmdSN - 1 at login: the window is closed (RFC 7143
    // 4.2.2.1).
    let mut r = LoginResponder::plain();
    r.window = (0, 0);
    let mut p = Pair::new(cfg());
    p.login_with(&mut r);
    assert!(!p.session.window().is_open());
    read(&mut p, 4096);
    read(&mut p, 4096);
    p.flush();
    assert_eq!(p.session.queued_commands(), 2);
    assert_eq!(p.session.expected_input(2), ExpectedInput::default());
}

#[test]
fn planner_stays_at_one_without_a_rate_tasks_or_when_off() {
    let mut p = reading(8, 4096);
    let mut lw = LowWater::new(Coalesce::default());
    // No rate measured yet.
    assert_eq!(lw.plan(&p.session, 0, false, p.now), None);
    assert_eq!((lw.mark(), lw.deadline()), (1, None));
    warm_up(&mut lw, &mut p, 1 << 20);
    assert!(lw.rate() > 0);
    // Output pending: the target may be waiting for it.
    assert_eq!(lw.plan(&p.session, 0, true, p.now), None);
    assert_eq!(lw.mark(), 1);
    // Off.
    let mut off = LowWater::new(Coalesce::OFF);
    warm_up(&mut off, &mut p, 1 << 20);
    assert_eq!(off.plan(&p.session, 0, false, p.now), None);
    // Too few tasks at the target.
    let mut q = reading(MIN_TASKS - 1, 4096);
    let mut lw = LowWater::new(Coalesce::default());
    warm_up(&mut lw, &mut q, 1 << 20);
    assert_eq!(lw.plan(&q.session, 0, false, q.now), None);
}

#[test]
fn planner_waits_for_half_the_tasks_then_falls_back() {
    let mut p = reading(8, 4096);
    let cfg = Coalesce::default();
    let mut lw = LowWater::new(cfg);
    // 1 MiB per ms is 512 KiB per half max delay: far above 4 reads.
    warm_up(&mut lw, &mut p, 1 << 20);
    let four = 4 * (4096 + BHS);
    assert_eq!(lw.plan(&p.session, 0, false, p.now), Some(four));
    assert_eq!(lw.deadline(), Some(p.now + cfg.max_delay));
    // Unchanged: nothing to set again. A partial PDU held by the driver
    // counts towards the mark.
    assert_eq!(lw.plan(&p.session, 0, false, p.now), None);
    assert_eq!(lw.plan(&p.session, 100, false, p.now), Some(four - 100));
    // The deadline passes with nothing read: back to 1 until input.
    assert_eq!(lw.timeout(), Some(1));
    assert_eq!(lw.plan(&p.session, 0, false, p.now), None);
    assert_eq!((lw.mark(), lw.deadline()), (1, None));
    p.advance(Duration::from_micros(100));
    lw.on_input(10, p.now);
    assert_eq!(lw.plan(&p.session, 0, false, p.now), Some(four));
    // The deadline passes with too little read: the rate is halved.
    let rate = lw.rate();
    lw.on_input(10, p.now);
    assert_eq!(lw.timeout(), None);
    assert_eq!(lw.rate(), rate / 2);
    // A new connection starts afresh.
    lw.reset();
    assert_eq!((lw.mark(), lw.rate(), lw.deadline()), (1, 0, None));
}

#[test]
fn planner_caps_the_mark_by_rate_tasks_and_size() {
    let mut p = reading(40, 4096);
    // max_tasks caps k below half of 40.
    let mut lw = LowWater::new(Coalesce::default().with_max_tasks(5));
    warm_up(&mut lw, &mut p, 1 << 20);
    assert_eq!(lw.plan(&p.session, 0, false, p.now), Some(5 * (4096 + BHS)));
    // A slow target: 8 KiB per ms is 4 KiB per half max delay.
    let mut slow = LowWater::new(Coalesce::default());
    warm_up(&mut slow, &mut p, 8192);
    let m = slow.plan(&p.session, 0, false, p.now).unwrap();
    assert!((4000..=4200).contains(&m), "{m}");
    // Huge reads: at most MAX_MARK.
    let mut q = reading(8, 4 << 20);
    let mut lw = LowWater::new(Coalesce::default());
    warm_up(&mut lw, &mut q, 64 << 20);
    assert_eq!(lw.plan(&q.session, 0, false, q.now), Some(MAX_MARK));
}

#[test]
fn a_failed_socket_call_turns_coalescing_off_and_deadlines_merge() {
    let mut p = reading(8, 4096);
    let mut lw = LowWater::new(Coalesce::default());
    warm_up(&mut lw, &mut p, 1 << 20);
    let mark = lw.plan(&p.session, 0, false, p.now).unwrap();
    let d = lw.deadline().unwrap();
    assert_eq!(lw.earliest(None), Some(d));
    assert_eq!(lw.earliest(Some(d + Duration::from_secs(1))), Some(d));
    let sooner = d - Duration::from_micros(10);
    assert_eq!(lw.earliest(Some(sooner)), Some(sooner));
    // A socket call that works leaves the planner as it is.
    let mut set = Vec::new();
    lw.apply(mark, |m| {
        set.push(m);
        true
    });
    assert_eq!(
        (set.as_slice(), lw.config()),
        (&[mark][..], Coalesce::default())
    );
    // One that fails: the socket is put back to 1 and nothing is coalesced
    // any more.
    let mut set = Vec::new();
    lw.apply(mark, |m| {
        set.push(m);
        m == 1
    });
    assert_eq!(set, [mark, 1]);
    assert_eq!(lw.config(), Coalesce::OFF);
    assert_eq!(lw.plan(&p.session, 0, false, p.now), None);
    assert_eq!(
        (lw.mark(), lw.deadline(), lw.earliest(None)),
        (1, None, None)
    );
}

// A target that batches its responses by itself (one write for every
// command it has read) must not be coalesced; one that answers one command
// at a time must be (module documentation of `initiator::coalesce`).

/// What one wakeup brings, as a share of the goal (the mark the planner
/// would set: the `k = min(open / 2, max_tasks)` least-owing tasks).
fn goal(p: &Pair) -> usize {
    let open = p.session.expected_input(0).tasks;
    let k = (open / 2).min(Coalesce::default().max_tasks);
    p.session.expected_input(k).bytes.min(MAX_MARK)
}

/// One wait: plan, then the target brings `bytes` (100 us later). Returns
/// the mark in force during the wait.
fn wakeup(lw: &mut LowWater, p: &mut Pair, bytes: usize) -> usize {
    wakeup_with(lw, p, |_| bytes)
}

/// One wait: plan, then the target brings `bytes(mark)` for the mark in
/// force during the wait (at a mark above 1 the kernel wakes us once that
/// much is in). Returns the mark.
fn wakeup_with(lw: &mut LowWater, p: &mut Pair, bytes: impl FnOnce(usize) -> usize) -> usize {
    let _ = lw.plan(&p.session, 0, false, p.now);
    let mark = lw.mark();
    p.advance(Duration::from_micros(100));
    lw.on_input(bytes(mark), p.now);
    mark
}

/// At a mark above 1 a wakeup brings the mark; at 1, `bytes`.
fn at_mark_or(bytes: usize) -> impl FnOnce(usize) -> usize {
    move |mark| if mark > 1 { mark } else { bytes }
}

/// A target that answers everything in one write: each wakeup at mark 1
/// already brings what a mark would wait for. It is recognised within
/// three wakeups and never coalesced after, so the socket's mark is never
/// set (`plan` returns nothing to set).
#[test]
fn a_self_batching_target_is_not_coalesced() {
    let mut p = reading(32, 4096);
    let g = goal(&p);
    assert_eq!(g, 16 * (4096 + BHS));
    let mut lw = LowWater::new(Coalesce::default());
    for _ in 0..3 {
        assert_eq!(wakeup(&mut lw, &mut p, 2 * g), 1);
    }
    assert!(lw.is_batching());
    for _ in 0..1000 {
        assert_eq!(lw.plan(&p.session, 0, false, p.now), None);
        assert_eq!((lw.mark(), lw.deadline()), (1, None));
        p.advance(Duration::from_micros(100));
        lw.on_input(2 * g, p.now);
    }
}

/// A target that answers one command at a time (tgtd): a wakeup at mark 1
/// brings one response. It is coalesced (mark = the goal, within the rate
/// budget), except for the probes at mark 1: `PROBE_LEN` plans every
/// `PROBE_EVERY` marks.
#[test]
fn a_one_at_a_time_target_is_coalesced_between_probes() {
    let mut p = reading(32, 4096);
    let one = 4096 + BHS;
    let mut lw = LowWater::new(Coalesce::default());
    warm_up(&mut lw, &mut p, 1 << 20);
    let (mut coalesced, mut probes) = (0u32, 0u32);
    for _ in 0..(PROBE_EVERY + PROBE_LEN) * 10 {
        let m = wakeup_with(&mut lw, &mut p, at_mark_or(one));
        if m > 1 {
            coalesced += 1;
        } else {
            probes += 1;
        }
        assert!(!lw.is_batching());
    }
    assert_eq!((coalesced, probes), (PROBE_EVERY * 10, PROBE_LEN * 10));
}

/// A target that starts batching while coalesced is found by the next
/// probe, and coalescing stops.
#[test]
fn a_probe_finds_a_target_that_began_to_batch() {
    let mut p = reading(32, 4096);
    let g = goal(&p);
    let mut lw = LowWater::new(Coalesce::default());
    warm_up(&mut lw, &mut p, 1 << 20);
    assert!(wakeup(&mut lw, &mut p, g) > 1);
    let mut n = 0;
    while !lw.is_batching() {
        wakeup(&mut lw, &mut p, 2 * g);
        n += 1;
        assert!(n <= PROBE_EVERY + PROBE_LEN, "never noticed");
    }
    assert_eq!(lw.plan(&p.session, 0, false, p.now), None);
    assert_eq!(lw.mark(), 1);
}

/// A target that stops batching is coalesced again once its wakeups bring
/// less than a quarter of the goal.
#[test]
fn a_target_that_stops_batching_is_coalesced_again() {
    let mut p = reading(32, 4096);
    let g = goal(&p);
    let mut lw = LowWater::new(Coalesce::default());
    for _ in 0..20 {
        wakeup(&mut lw, &mut p, 2 * g);
    }
    assert!(lw.is_batching());
    let mut n = 0;
    while lw.is_batching() {
        wakeup(&mut lw, &mut p, 4096 + BHS);
        n += 1;
        assert!(n <= 16, "still taken as batching");
    }
    assert!(wakeup(&mut lw, &mut p, 4096 + BHS) > 1, "coalesced again");
}

/// A plan with nothing read since the last one (e.g. after a submit) is no
/// sample: it neither counts as a small batch nor as a large one.
#[test]
fn a_plan_with_nothing_read_is_no_sample() {
    let mut p = reading(32, 4096);
    let g = goal(&p);
    let mut lw = LowWater::new(Coalesce::default());
    for _ in 0..20 {
        wakeup(&mut lw, &mut p, 2 * g);
    }
    // The first plan takes the last wakeup's sample.
    let _ = lw.plan(&p.session, 0, false, p.now);
    let ratio = lw.batch_ratio();
    for _ in 0..100 {
        let _ = lw.plan(&p.session, 0, false, p.now);
    }
    assert_eq!(lw.batch_ratio(), ratio);
    assert!(lw.is_batching());
}

proptest::proptest! {
    /// Hysteresis: wakeups that bring between a quarter and a half of the
    /// goal never change the label, whichever it is; wakeups that always
    /// bring at least three quarters make a target self-batching within
    /// four watched wakeups, and ones that always bring less than an
    /// eighth leave it one-at-a-time forever.
    #[test]
    fn labels_follow_what_wakeups_bring(
        start_batching in proptest::bool::ANY,
        shares in proptest::collection::vec(0.0f64..1.0, 1..200),
    ) {
        let mut p = reading(32, 4096);
        let g = goal(&p) as f64;
        let mut lw = LowWater::new(Coalesce::default());
        if start_batching {
            for _ in 0..20 {
                wakeup(&mut lw, &mut p, (2.0 * g) as usize);
            }
        } else {
            warm_up(&mut lw, &mut p, 1 << 20);
        }
        proptest::prop_assert_eq!(lw.is_batching(), start_batching);
        // Between a quarter and a half: the label stays.
        for s in &shares {
            let bytes = (g * (0.26 + 0.23 * s)) as usize;
            wakeup_with(&mut lw, &mut p, at_mark_or(bytes));
            proptest::prop_assert_eq!(lw.is_batching(), start_batching);
        }
        // At least three quarters at every watched wakeup: batching within
        // four of them.
        let mut watched = 0;
        for s in shares.iter().cycle() {
            if lw.is_batching() {
                break;
            }
            let bytes = (g * (0.75 + s)) as usize;
            if wakeup_with(&mut lw, &mut p, at_mark_or(bytes)) == 1 {
                watched += 1;
            }
            // The sample is taken by the next plan.
            proptest::prop_assert!(watched <= 5);
        }
        // Below an eighth: one-at-a-time within ten watched wakeups, and
        // then for good.
        let mut watched = 0;
        for s in shares.iter().cycle().take(400) {
            let bytes = ((g * 0.125 * s) as usize).max(1);
            if wakeup_with(&mut lw, &mut p, at_mark_or(bytes)) == 1 {
                watched += 1;
            }
            proptest::prop_assert!(watched <= 11 || !lw.is_batching());
        }
        proptest::prop_assert!(!lw.is_batching());
    }
}
