//! The session's deadlines as one table indexed by [`Timer`].
//!
//! The core reads no clock: every deadline is an `Instant` computed from
//! the `now` a driver passed in. The table only stores them; which ones
//! count in the current state, and what happens when one passes, is the
//! session's business (`session/timers.rs`).

use crate::time::Instant;

/// One deadline of an initiator session.
///
/// The connection's timers (`Login`, `Keepalive`, `Ping`) belong to the
/// one connection a session has today; with several connections they would
/// be kept per connection (RFC 7143 section 4: keepalive and login are a
/// connection's business), the session's (`Reconnect`, `Logout`,
/// `LogoutDue`, `Task`) stay here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Recovery wait over (RFC 7143 section 7.1.5 with Time2Wait, section
    /// 13.15): time to open a new connection.
    Reconnect,
    /// The login (TCP connect included) must have finished by now
    /// (`SessionConfig::login_timeout`).
    Login,
    /// The target must have answered our Logout Request by now.
    Logout,
    /// A target-requested logout (RFC 7143 section 11.9.1, AsyncEvent 1)
    /// must go out by now, "no later than Parameter3 seconds".
    LogoutDue,
    /// A lower bound of the tasks' escalation deadlines
    /// (`SessionConfig::task_timeout`).
    Task,
    /// The target must have answered our keepalive NOP-Out by now.
    Ping,
    /// The connection has been idle for the keepalive interval since the
    /// last PDU received: time to ping.
    Keepalive,
    /// ErrorRecoveryLevel 1: the Data/Status SNACKs out must have been
    /// answered by now (`ErrorRecovery::snack_timeout`); else they are
    /// sent again, up to `ErrorRecovery::snack_retries` rounds.
    Snack,
    /// ErrorRecoveryLevel 2: Time2Wait + Time2Retain after a connection
    /// failed (RFC 7143 section 13.16): the target no longer keeps its
    /// tasks for reassignment; session reinstatement instead.
    Retain,
    /// ErrorRecoveryLevel >= 1: nothing has arrived for
    /// `ErrorRecovery::snack_timeout` while a response is owed: ping the
    /// target, whose answer's StatSN shows a lost last response (RFC 7143
    /// sections 7.1.4.1 b, 7.1.4.2, 11.19.2; `session/quiet.rs`).
    Quiet,
}

impl Timer {
    /// Every timer, in the order `handle_timeout` looks at them.
    pub const ALL: [Timer; 10] = [
        Timer::Reconnect,
        Timer::Login,
        Timer::Logout,
        Timer::LogoutDue,
        Timer::Task,
        Timer::Ping,
        Timer::Keepalive,
        Timer::Snack,
        Timer::Retain,
        Timer::Quiet,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// A deadline per [`Timer`], each set or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// A table with no timer set.
    pub fn new() -> Self {
        TimerTable::default()
    }

    /// Sets `timer` to fire at `at` (replacing any earlier setting).
    pub fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(d) = self.deadlines.get_mut(timer.index()) {
            *d = Some(at);
        }
    }

    /// Stops `timer`.
    pub fn stop(&mut self, timer: Timer) {
        if let Some(d) = self.deadlines.get_mut(timer.index()) {
            *d = None;
        }
    }

    /// Stops every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = [None; Timer::ALL.len()];
    }

    /// When `timer` fires, if it is set.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines.get(timer.index()).copied().flatten()
    }

    /// Whether `timer` is set.
    pub fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// Whether `timer` is set and its deadline is at or before `now`.
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|d| d <= now)
    }

    /// The earliest deadline among the set timers that `armed` accepts.
    #[must_use]
    pub fn next_timeout(&self, mut armed: impl FnMut(Timer) -> bool) -> Option<Instant> {
        Timer::ALL
            .iter()
            .filter(|&&t| armed(t))
            .filter_map(|&t| self.get(t))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn every_timer_has_its_own_slot() {
        let base = Instant::now();
        let mut table = TimerTable::new();
        for (i, t) in Timer::ALL.iter().enumerate() {
            assert_eq!(t.index(), i, "ALL is in declaration order");
            table.set(*t, base + Duration::from_secs(i as u64));
        }
        for (i, t) in Timer::ALL.iter().enumerate() {
            assert_eq!(table.get(*t), Some(base + Duration::from_secs(i as u64)));
        }
        table.stop(Timer::Login);
        assert!(!table.is_set(Timer::Login));
        assert!(table.is_set(Timer::Reconnect));
        table.stop_all();
        assert!(Timer::ALL.iter().all(|t| !table.is_set(*t)));
    }

    #[test]
    fn next_timeout_is_the_earliest_armed_deadline() {
        let base = Instant::now();
        let mut table = TimerTable::new();
        assert_eq!(table.next_timeout(|_| true), None);
        table.set(Timer::Keepalive, base + Duration::from_secs(5));
        table.set(Timer::Task, base + Duration::from_secs(9));
        table.set(Timer::Login, base + Duration::from_secs(1));
        assert_eq!(
            table.next_timeout(|_| true),
            Some(base + Duration::from_secs(1))
        );
        assert_eq!(
            table.next_timeout(|t| t != Timer::Login),
            Some(base + Duration::from_secs(5))
        );
        assert_eq!(table.next_timeout(|t| t == Timer::Reconnect), None);
    }

    #[test]
    fn expiry_is_at_or_after_the_deadline() {
        let base = Instant::now();
        let mut table = TimerTable::new();
        table.set(Timer::Ping, base + Duration::from_secs(2));
        assert!(!table.is_expired(Timer::Ping, base));
        assert!(table.is_expired(Timer::Ping, base + Duration::from_secs(2)));
        assert!(!table.is_expired(Timer::Logout, base + Duration::from_secs(2)));
    }
}
