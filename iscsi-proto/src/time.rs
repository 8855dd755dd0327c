//! Time as the core sees it: an [`Instant`] the driver makes, which the core
//! only compares and adds [`Duration`]s to.
//!
//! The core reads no clock. A driver picks an epoch (the start of its
//! process, the boot of its board, a kernel's jiffies counter at zero) and
//! passes `now` as the time elapsed since it: [`Instant::from_duration`].
//! Deadlines come back the same way ([`Instant::as_duration`]); a driver on
//! `std` uses [`crate::driver::Clock`], which converts both ways against a
//! `std::time::Instant` epoch. A port with embassy's `Instant` converts
//! `embassy_time::Instant::as_micros` with [`Instant::from_micros`].
//!
//! The method names are those of `std::time::Instant`, so code written
//! against it reads the same.

use core::ops::{Add, AddAssign, Sub, SubAssign};
use core::time::Duration;

/// A point in time: the [`Duration`] since an epoch the driver chose.
///
/// Instants of one session must share one epoch. Arithmetic never panics:
/// `+` saturates at the largest instant, `-` at the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// The instant `since_epoch` after the epoch.
    #[inline]
    pub const fn from_duration(since_epoch: Duration) -> Instant {
        Instant(since_epoch)
    }

    /// The instant `ms` milliseconds after the epoch.
    #[inline]
    pub const fn from_millis(ms: u64) -> Instant {
        Instant(Duration::from_millis(ms))
    }

    /// The instant `us` microseconds after the epoch.
    #[inline]
    pub const fn from_micros(us: u64) -> Instant {
        Instant(Duration::from_micros(us))
    }

    /// The time since the epoch.
    #[inline]
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// `self + d`, or `None` if it does not fit.
    #[inline]
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        self.0.checked_add(d).map(Instant)
    }

    /// `self - d`, or `None` before the epoch.
    #[inline]
    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        self.0.checked_sub(d).map(Instant)
    }

    /// The time from `earlier` to `self`, or `None` if `earlier` is later.
    #[inline]
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later (as
    /// `std::time::Instant::duration_since` does since Rust 1.60).
    #[inline]
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturates at the largest instant.
    #[inline]
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Instant {
    #[inline]
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturates at the epoch.
    #[inline]
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d))
    }
}

impl SubAssign<Duration> for Instant {
    #[inline]
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// [`Instant::saturating_duration_since`].
    #[inline]
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

#[cfg(test)]
impl Instant {
    /// Tests only: the time since the first call in this process, so unit
    /// tests written against `std::time::Instant::now()` read the same.
    pub(crate) fn now() -> Instant {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        Instant(EPOCH.get_or_init(std::time::Instant::now).elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_matches_durations_and_never_panics() {
        let t = Instant::from_millis(1500);
        assert_eq!(
            (t + Duration::from_millis(500)).as_duration(),
            Duration::from_secs(2)
        );
        assert_eq!(t - Instant::from_millis(500), Duration::from_secs(1));
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Duration::from_secs(9), Instant::ZERO);
        assert_eq!(
            Instant::from_duration(Duration::MAX).checked_add(Duration::from_nanos(1)),
            None
        );
        assert_eq!(
            Instant::from_duration(Duration::MAX) + Duration::from_secs(1),
            Instant::from_duration(Duration::MAX)
        );
        assert!(
            Instant::ZERO < t
                && t.checked_duration_since(Instant::from_millis(2000))
                    .is_none()
        );
        assert_eq!(Instant::from_micros(1_500_000), t);
    }
}
