//! The conversion between `std::time::Instant` and the core's
//! [`time::Instant`](crate::time::Instant): a [`Clock`] is an epoch.

use core::time::Duration;
use std::time::Instant as StdInstant;

use crate::time::Instant;

/// An epoch (a `std::time::Instant`) that converts the driver's
/// `std::time::Instant`s to the core's [`Instant`]s (the time since the
/// epoch) and back, for sleeping until a deadline.
///
/// [`DriverCore`](super::DriverCore) keeps one (its epoch is the `now`
/// given to [`DriverCore::new`](super::DriverCore::new)), so drivers built
/// on it pass `std::time::Instant`s; a driver of a bare
/// [`Session`](crate::initiator::Session) or
/// [`Portal`](crate::target::Portal) keeps its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    epoch: StdInstant,
}

impl Clock {
    /// A clock whose epoch is `epoch`.
    pub const fn with_epoch(epoch: StdInstant) -> Clock {
        Clock { epoch }
    }

    /// A clock whose epoch is the current time (the one clock read:
    /// the driver's, not the core's).
    pub fn start() -> Clock {
        Clock::with_epoch(StdInstant::now())
    }

    /// The epoch.
    pub fn epoch(&self) -> StdInstant {
        self.epoch
    }

    /// The core's instant for `t` (the epoch for a time before it).
    pub fn to_core(&self, t: StdInstant) -> Instant {
        Instant::from_duration(t.saturating_duration_since(self.epoch))
    }

    /// The current time as the core's instant (reads the clock).
    pub fn now(&self) -> Instant {
        self.to_core(StdInstant::now())
    }

    /// The `std::time::Instant` of a core instant, for sleeping until it.
    /// One beyond what `std::time::Instant` can hold becomes a year from
    /// the epoch (still a wait, never a busy loop).
    pub fn to_std(&self, t: Instant) -> StdInstant {
        const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
        self.epoch
            .checked_add(t.as_duration())
            .or_else(|| self.epoch.checked_add(FAR))
            .unwrap_or(self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_like_std() {
        let epoch = StdInstant::now();
        let c = Clock::with_epoch(epoch);
        let a = epoch + Duration::from_millis(5);
        let b = epoch + Duration::from_secs(3);
        assert_eq!(c.to_std(c.to_core(a)), a);
        assert_eq!(c.to_core(b) - c.to_core(a), b - a);
        assert!(c.to_core(a) < c.to_core(b));
        assert_eq!(c.to_core(epoch), Instant::ZERO);
        let later = c.to_core(a) + Duration::from_secs(1);
        assert_eq!(c.to_std(later), a + Duration::from_secs(1));
    }
}
