//! Background driving: between the application's calls a thread of the
//! client answers pings, runs timers and writes what the core queues
//! (see [`Options::background`](crate::Options::background)). The state
//! moves between the application and that thread through a [`Shared`]
//! slot.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::{links, Error, Inner};

/// Rounds of input, timers and output one background step runs before it
/// looks again whether the application wants the session.
const BACKGROUND_ROUNDS: usize = 64;
/// The longest the background thread waits without looking again.
const BACKGROUND_MAX_WAIT: Duration = Duration::from_secs(1);

/// Where the state lives between calls, and the background thread's flags.
#[derive(Debug)]
pub(crate) struct Slot {
    /// `None` while a call (or a background step) holds it.
    pub(crate) inner: Option<Box<Inner>>,
    /// Application calls made so far that drove the session (waited for
    /// input); calls that did not (a refused action, `take_events`...) do
    /// not hold the background thread back.
    pub(crate) calls: u64,
    /// The client is being dropped: the background thread ends.
    pub(crate) stop: bool,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) slot: Mutex<Slot>,
    /// Signalled when the background thread puts the state back, and on
    /// stop.
    pub(crate) cv: Condvar,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Slot> {
        // Nothing panics while the lock is held: a poisoned lock still
        // holds a consistent slot.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the state out of the slot, waiting while the background
    /// thread holds it (one step: no blocking wait for input).
    pub(crate) fn take(&self) -> Box<Inner> {
        let mut g = self.lock();
        loop {
            if let Some(inner) = g.inner.take() {
                return inner;
            }
            g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The state out of the slot; put back on drop (also when unwinding, so a
/// panicking [`Tap`] cannot lose it).
pub(crate) struct Lease<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) inner: Option<Box<Inner>>,
    /// Held by the application (counts as a call) rather than the
    /// background thread (wakes waiting calls).
    pub(crate) app: bool,
}

impl Lease<'_> {
    /// The state (always there until the lease is dropped).
    pub(crate) fn get(&mut self) -> Result<&mut Inner, Error> {
        self.inner
            .as_deref_mut()
            .ok_or_else(|| Error::Unexpected("driver state lost".into()))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut inner = self.inner.take();
        let drove = inner
            .as_deref_mut()
            .is_some_and(|i| std::mem::take(&mut i.drove));
        let mut g = self.shared.lock();
        g.inner = inner;
        if self.app {
            if drove {
                g.calls = g.calls.wrapping_add(1);
            }
        } else {
            drop(g);
            self.shared.cv.notify_all();
        }
    }
}

/// What the background thread waits for after a step.
enum Wait {
    /// Input on this socket, or the deadline.
    Input(Arc<TcpStream>, Option<Instant>),
    /// A deadline (no connection, or no way to wait on the socket).
    Timer(Option<Instant>),
    /// The session is over: nothing more to drive.
    Ended,
}

/// How long the background thread waits for `until`.
fn background_wait(until: Option<Instant>) -> Duration {
    until.map_or(BACKGROUND_MAX_WAIT, |u| {
        u.saturating_duration_since(Instant::now())
            .min(BACKGROUND_MAX_WAIT)
    })
}

/// The background thread: drives the session while the application makes
/// no call (see [`Options::background`]).
pub(crate) fn background_loop(shared: &Shared, quiet: Duration) {
    let mut seen: Option<u64> = None;
    let mut g = shared.lock();
    loop {
        if g.stop {
            return;
        }
        // Drive only once a whole quiet period passed with no call that
        // waited for input, and none in progress.
        let idle = g.inner.is_some() && seen == Some(g.calls);
        if !idle {
            seen = Some(g.calls);
            g = shared
                .cv
                .wait_timeout(g, quiet)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        }
        let inner = g.inner.take();
        drop(g);
        let mut lease = Lease {
            shared,
            inner,
            app: false,
        };
        let wait = match lease.get() {
            Ok(i) => i.background_step(),
            Err(_) => Wait::Ended,
        };
        drop(lease);
        match wait {
            Wait::Ended => return,
            Wait::Input(stream, until) => {
                let t = background_wait(until);
                if !t.is_zero() && iscsi_sys::wait_readable(&*stream, t).is_err() {
                    // No way to wait on the socket here: look again after
                    // a quiet period.
                    std::thread::sleep(quiet.min(t));
                }
                g = shared.lock();
            }
            Wait::Timer(until) => {
                let t = background_wait(until);
                g = shared.lock();
                if !t.is_zero() && !g.stop {
                    g = shared
                        .cv
                        .wait_timeout(g, t)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

impl Inner {
    /// One step of the background thread: everything that can be done
    /// without waiting (timers due, input already in, output, events);
    /// then what to wait for.
    fn background_step(&mut self) -> Wait {
        for _ in 0..BACKGROUND_ROUNDS {
            if let Err(e) = self.pump() {
                tracing::debug!(target: "iscsi::driver", driver = "std", error = %e, "background step failed");
                if self.deferred.is_none() {
                    self.deferred = Some(e);
                }
            }
            if self.core.is_closed() {
                return Wait::Ended;
            }
            let now = Instant::now();
            if self.core.handle_timeout(now) {
                continue;
            }
            let core = self.core.session_timeout();
            if !self.links.is_empty() {
                // Several sockets: look at each, then again a slice later.
                if self.read_ready_links() {
                    continue;
                }
                let soon = now + links::SLICE;
                let at = core.map_or(soon, |c| c.min(soon));
                match self.conn.clone() {
                    Some(stream) => {
                        if matches!(iscsi_sys::wait_readable(&*stream, Duration::ZERO), Ok(true)) {
                            self.read_input();
                            continue;
                        }
                        return Wait::Input(stream, Some(at));
                    }
                    None => return Wait::Timer(Some(at)),
                }
            }
            let Some(stream) = self.conn.clone() else {
                return Wait::Timer(core);
            };
            match iscsi_sys::wait_readable(&*stream, Duration::ZERO) {
                Ok(true) => {
                    self.read_input();
                    continue;
                }
                Ok(false) => {}
                Err(_) => return Wait::Timer(core),
            }
            if self.core.low_water_timeout(now) {
                // The wait for the mark ended with too little in: the
                // planner decided the next mark.
                self.apply_low_water(&stream);
                continue;
            }
            self.core.plan_low_water(now);
            self.apply_low_water(&stream);
            return Wait::Input(stream, self.core.poll_timeout());
        }
        // Busy: look again at once (after checking for an application call).
        Wait::Timer(Some(Instant::now()))
    }
}
