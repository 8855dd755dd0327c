//! Receive coalescing: fewer wakeups per I/O for the drivers.
//!
//! A driver that wakes up for every response spends most of its CPU time on
//! the wakeup, not on the protocol: with 32 reads of 4 KiB in flight against
//! a target that answers one at a time, a blocking driver sleeps and wakes
//! about once per I/O. [`LowWater`] plans a receive low-water mark (the
//! socket option `SO_RCVLOWAT`) from what the target owes
//! ([`Session::expected_input`]): the kernel then wakes the driver once
//! several responses are in, like interrupt moderation on a NIC.
//!
//! The planner is sans-IO like the rest of the core: the driver sets the
//! mark it returns on its socket, waits for input no later than
//! [`LowWater::deadline`], and reports what happened.
//!
//! Safety rules, so coalescing never stalls a session:
//! - the mark counts only what the target owes without hearing from us
//!   (no task whose command or data is still unsent, see
//!   [`Session::expected_input`]), and only for at most half of the tasks
//!   the target holds, so the target keeps working while we sleep;
//! - with fewer than [`MIN_TASKS`] tasks at the target there is no
//!   coalescing (mark 1): a lone task is answered as soon as it ends;
//! - the mark is at most what arrives in half of
//!   [`Coalesce::max_delay`] at the input rate measured so far, so a slow
//!   target is not waited for;
//! - every wait for a mark above 1 ends by [`LowWater::deadline`]: if
//!   nothing came, the mark drops to 1 until input arrives; if too little
//!   came, the rate estimate is halved.
//!
//! A target that batches its responses by itself (it answers every command
//! it has read in one write, as the embedded target, LIO or SPDK do)
//! already wakes us once per batch: a mark then only adds socket calls and
//! holds the first responses of a batch until the rest arrive. The planner
//! notices such a target from what each wakeup brings while the mark is 1:
//! it compares the bytes read between two plans with the mark it would
//! plan (the `goal`, before the rate cap). While those wakeups bring at
//! least [`BATCHING_ENTER`] of the goal on average (a moving average over
//! about four wakeups), the target counts as self-batching and the mark
//! stays 1; it counts as one-at-a-time again once they bring less than
//! [`BATCHING_LEAVE`] of it (hysteresis: a target in between keeps its
//! label). While coalescing, every [`PROBE_EVERY`] planned marks the
//! planner spends [`PROBE_LEN`] plans at mark 1 to look again. A target
//! that answers one command at a time (tgtd) brings one or two responses
//! per wakeup and is coalesced as before.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use iscsi_proto::initiator::{Coalesce, LowWater};
//!
//! let mut lw = LowWater::new(Coalesce::default());
//! assert_eq!(lw.mark(), 1);
//! // Before each wait:
//! //   if let Some(m) = lw.plan(&session, rx.filled().len(), tx_pending, now) {
//! //       lw.apply(m, |m| set SO_RCVLOWAT to m);
//! //   }
//! //   wait for readability until lw.earliest(session.poll_timeout());
//! //   on input: lw.on_input(n, now);
//! //   on lw.deadline() with nothing read: if let Some(m) = lw.timeout() { lw.apply(m, ..) }
//! assert_eq!(lw.timeout(), None);
//! ```

use crate::time::Instant;
use core::time::Duration;

use super::session::Session;

/// Below this many tasks at the target there is no coalescing.
pub const MIN_TASKS: usize = 4;

/// The largest mark planned (bytes).
pub const MAX_MARK: usize = 1 << 20;

/// Input-rate samples span at least this long.
const RATE_WINDOW: Duration = Duration::from_millis(2);

/// Fixed-point scale of the per-wakeup ratio (bytes read / goal).
const ONE: u32 = 256;
/// A target counts as self-batching once its wakeups at mark 1 bring, on
/// average, at least this share of the goal (1/2)...
pub const BATCHING_ENTER: (u32, u32) = (1, 2);
/// ...and as answering one command at a time again below this share (1/4).
pub const BATCHING_LEAVE: (u32, u32) = (1, 4);
/// While coalescing, a probe at mark 1 starts after this many planned
/// marks above 1...
pub const PROBE_EVERY: u32 = 128;
/// ...and lasts this many plans.
pub const PROBE_LEN: u32 = 4;

/// Receive coalescing settings for a driver: [`Coalesce::default`] or
/// [`Coalesce::OFF`], changed with the `with_*` methods (new fields may be
/// added).
///
/// ```
/// use core::time::Duration;
/// use iscsi_proto::initiator::Coalesce;
///
/// let c = Coalesce::default().with_max_tasks(8).with_max_delay(Duration::from_micros(500));
/// assert!(c.is_on());
/// assert!(!Coalesce::default().with_max_tasks(1).is_on());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Coalesce {
    /// The most task endings one wakeup waits for (it is also never more
    /// than half of the tasks the target holds). 0 or 1 turns coalescing
    /// off.
    pub max_tasks: usize,
    /// The longest a wait for the mark lasts once planned; a completion may
    /// be held in the socket up to this long.
    pub max_delay: Duration,
}

impl Coalesce {
    /// No coalescing: every byte wakes the driver.
    pub const OFF: Coalesce = Coalesce {
        max_tasks: 0,
        max_delay: Duration::ZERO,
    };

    /// Sets [`Coalesce::max_tasks`] (0 or 1: off).
    #[must_use]
    pub const fn with_max_tasks(mut self, max_tasks: usize) -> Coalesce {
        self.max_tasks = max_tasks;
        self
    }

    /// Sets [`Coalesce::max_delay`] (zero: off).
    #[must_use]
    pub const fn with_max_delay(mut self, max_delay: Duration) -> Coalesce {
        self.max_delay = max_delay;
        self
    }

    /// Whether coalescing is on.
    pub fn is_on(&self) -> bool {
        self.max_tasks > 1 && !self.max_delay.is_zero()
    }
}

impl Default for Coalesce {
    /// Up to 16 task endings per wakeup, held at most 1 ms.
    fn default() -> Self {
        Coalesce {
            max_tasks: 16,
            max_delay: Duration::from_millis(1),
        }
    }
}

/// Plans a socket's receive low-water mark (see the module documentation).
#[derive(Debug, Clone)]
pub struct LowWater {
    cfg: Coalesce,
    /// The mark last returned by `plan` (1: the socket default).
    applied: usize,
    deadline: Option<Instant>,
    /// A wait ended with nothing read: mark 1 until input arrives.
    starved: bool,
    input_since_plan: bool,
    /// Estimated input rate, bytes per second (0: unknown).
    rate: u64,
    window: Option<(Instant, u64)>,
    /// Bytes read since the last plan.
    since_plan: usize,
    /// The last plan left the mark at 1 to watch the target: the goal it
    /// would have planned, to compare what the wakeup brings with.
    watching: Option<usize>,
    /// Moving average of (bytes per watched wakeup / goal), scaled by
    /// [`ONE`].
    batch_ratio: u32,
    /// The target batches its responses by itself: no mark.
    batching: bool,
    /// Marks above 1 planned since the last probe.
    since_probe: u32,
    /// Plans left in the current probe at mark 1.
    probe_left: u32,
}

impl LowWater {
    /// A planner for a new socket (mark 1).
    pub fn new(cfg: Coalesce) -> Self {
        LowWater {
            cfg,
            applied: 1,
            deadline: None,
            starved: false,
            input_since_plan: false,
            rate: 0,
            window: None,
            since_plan: 0,
            watching: None,
            batch_ratio: 0,
            batching: false,
            since_probe: 0,
            probe_left: 0,
        }
    }

    /// Whether the target is taken to batch its responses by itself (the
    /// mark then stays 1; see the module documentation).
    pub fn is_batching(&self) -> bool {
        self.batching
    }

    /// The moving average of what a wakeup at mark 1 brought, as a share
    /// of the mark the planner would have set (`(numerator, 256)`).
    pub fn batch_ratio(&self) -> (u32, u32) {
        (self.batch_ratio, ONE)
    }

    /// The wakeup since the last plan was watched: fold what it brought
    /// into the average and update the label, with hysteresis.
    fn observe(&mut self) {
        let Some(goal) = self.watching.take() else {
            return;
        };
        if self.since_plan == 0 || goal == 0 {
            return; // nothing read (a plan after a submit): no sample
        }
        let ratio = (self.since_plan as u128 * u128::from(ONE) / goal as u128)
            .min(u128::from(2 * ONE)) as u32;
        self.batch_ratio = (self.batch_ratio * 3 + ratio) / 4;
        let share = |(n, d): (u32, u32)| ONE * n / d;
        if !self.batching && self.batch_ratio >= share(BATCHING_ENTER) {
            self.batching = true;
        } else if self.batching && self.batch_ratio < share(BATCHING_LEAVE) {
            self.batching = false;
        }
    }

    /// The settings.
    pub fn config(&self) -> Coalesce {
        self.cfg
    }

    /// A new connection: its socket starts with the default mark of 1 and
    /// the rate is measured afresh.
    pub fn reset(&mut self) {
        *self = LowWater::new(self.cfg);
    }

    /// The mark last planned (1: none).
    pub fn mark(&self) -> usize {
        self.applied
    }

    /// The estimated input rate in bytes per second (0 until measured).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// When the wait for the planned mark must end; `None` while the mark
    /// is 1. The driver then reads whatever is there (non-blocking) and, if
    /// nothing was, calls [`LowWater::timeout`].
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The earlier of [`LowWater::deadline`] and `other` (e.g. the core's
    /// [`Session::poll_timeout`]): when the driver's wait must end.
    pub fn earliest(&self, other: Option<Instant>) -> Option<Instant> {
        match (self.deadline, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sets `mark` (from [`LowWater::plan`] or [`LowWater::timeout`]) with
    /// `set`, the driver's socket call (true on success). If it fails,
    /// coalescing stops ([`LowWater::turn_off`]).
    pub fn apply(&mut self, mark: usize, mut set: impl FnMut(usize) -> bool) {
        if !set(mark) {
            self.turn_off(set);
        }
    }

    /// Stops coalescing: the socket goes back to mark 1 (best effort, with
    /// `set`) and every later plan is 1.
    pub fn turn_off(&mut self, set: impl FnOnce(usize) -> bool) {
        let _ = set(1);
        *self = LowWater::new(Coalesce::OFF);
    }

    /// Plans the next wait for input. `buffered`: bytes of a partial PDU
    /// the driver holds (e.g. `RecvBuffer::filled().len()` after
    /// [`Session::handle_input`]); `output_pending`: PDUs are still waiting
    /// to be written (by the session or the driver): the target may be
    /// waiting for them, so nothing is coalesced. Returns the mark to set on
    /// the socket when it differs from the one set, else `None`.
    pub fn plan(
        &mut self,
        session: &Session,
        buffered: usize,
        output_pending: bool,
        now: Instant,
    ) -> Option<usize> {
        self.observe();
        self.since_plan = 0;
        let want = if !self.cfg.is_on() || output_pending {
            1
        } else {
            let open = session.expected_input(0).tasks;
            if open < MIN_TASKS {
                1
            } else {
                let k = (open / 2).min(self.cfg.max_tasks);
                let goal = session.expected_input(k).bytes.min(MAX_MARK);
                if self.batching || self.probe_left > 0 || self.starved || self.rate == 0 {
                    // Mark 1, and watch what the wakeup brings.
                    self.probe_left = self.probe_left.saturating_sub(1);
                    self.watching = Some(goal);
                    1
                } else {
                    self.since_probe += 1;
                    if self.since_probe >= PROBE_EVERY {
                        self.since_probe = 0;
                        self.probe_left = PROBE_LEN;
                    }
                    let budget = self
                        .rate
                        .saturating_mul(self.cfg.max_delay.as_nanos() as u64)
                        / 2_000_000_000;
                    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
                    goal.min(budget).saturating_sub(buffered).max(1)
                }
            }
        };
        self.input_since_plan = false;
        self.deadline = (want > 1).then(|| now + self.cfg.max_delay);
        if want != self.applied {
            self.applied = want;
            Some(want)
        } else {
            None
        }
    }

    /// `n` bytes were read at `now`.
    pub fn on_input(&mut self, n: usize, now: Instant) {
        if n == 0 {
            return;
        }
        self.input_since_plan = true;
        self.since_plan = self.since_plan.saturating_add(n);
        self.starved = false;
        match &mut self.window {
            None => self.window = Some((now, 0)),
            Some((start, bytes)) => {
                *bytes = bytes.saturating_add(n as u64);
                let elapsed = now.saturating_duration_since(*start);
                if elapsed >= RATE_WINDOW {
                    let ns = elapsed.as_nanos().max(1);
                    let sample =
                        u64::try_from(u128::from(*bytes) * 1_000_000_000 / ns).unwrap_or(u64::MAX);
                    self.rate = if self.rate == 0 {
                        sample
                    } else {
                        (self.rate.saturating_mul(3) / 4).saturating_add(sample / 4)
                    };
                    *start = now;
                    *bytes = 0;
                }
            }
        }
    }

    /// The deadline passed and the driver has read what there was. If
    /// nothing came since the plan, the mark drops to 1 until input
    /// arrives (returned: set it); if too little came, the rate estimate
    /// is halved.
    pub fn timeout(&mut self) -> Option<usize> {
        self.deadline.take()?;
        if self.input_since_plan {
            self.rate /= 2;
            return None;
        }
        self.starved = true;
        if self.applied != 1 {
            self.applied = 1;
            Some(1)
        } else {
            None
        }
    }
}
