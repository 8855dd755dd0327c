//! Counters and latency histograms a session keeps about itself, for
//! embedders' metrics.
//!
//! The core depends on no metrics library: [`SessionStats`] is a plain
//! `Copy` value read with [`Session::stats`](crate::initiator::Session::stats),
//! and [`SessionStats::counters`] lists every counter as a
//! `(name, help, value)` triple an exporter (Prometheus, OpenTelemetry,
//! `metrics`) maps one to one. Latencies are [`LatencyHistogram`]s: fixed
//! log2 buckets of microseconds, no allocation, mergeable across sessions.
//!
//! Every figure is computed from the `now` values the driver passes in (the
//! core reads no clock), so a latency is the time between the driver's
//! `submit(now, ..)` and the `handle_input(now, ..)` that completed the
//! task: it includes the driver's own queueing, as an application sees it.

use core::time::Duration;

/// Number of buckets of a [`LatencyHistogram`]: bucket `b` holds latencies
/// in `[2^(b-1), 2^b)` microseconds (bucket 0: below 1 us), the last one
/// everything from 2^(BUCKETS-2) us (about 9 minutes) up.
pub const LATENCY_BUCKETS: usize = 32;

/// A latency distribution in log2 buckets of microseconds.
///
/// Percentiles are bucket upper bounds, so they overstate by less than a
/// factor of two; `sum` and `max` are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyHistogram {
    buckets: [u64; LATENCY_BUCKETS],
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: [0; LATENCY_BUCKETS],
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl LatencyHistogram {
    /// The bucket a latency of `us` microseconds falls in.
    fn bucket_of(us: u64) -> usize {
        let bits = (u64::BITS - us.leading_zeros()) as usize;
        bits.min(LATENCY_BUCKETS - 1)
    }

    /// Counts one sample.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(n) = self.buckets.get_mut(Self::bucket_of(us)) {
            *n = n.saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// Adds every sample of `other` (e.g. to aggregate sessions).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Samples per bucket: bucket `b` holds latencies in
    /// `[2^(b-1), 2^b)` microseconds (see [`LATENCY_BUCKETS`]).
    pub fn buckets(&self) -> &[u64; LATENCY_BUCKETS] {
        &self.buckets
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of all samples (saturating), for a mean or a Prometheus `_sum`.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us)
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// Mean latency; zero without samples.
    pub fn mean(&self) -> Duration {
        Duration::from_micros(self.sum_us.checked_div(self.count).unwrap_or(0))
    }

    /// An upper bound of the `p`-th percentile (`p` in 0..=100): the upper
    /// bound of the bucket holding that rank, capped at [`max`](Self::max).
    /// Zero without samples.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let p = if p.is_nan() {
            100.0
        } else {
            p.clamp(0.0, 100.0)
        };
        // Nearest rank (the ceiling, without `f64::ceil`, which needs
        // std), at least 1.
        let x = (p / 100.0) * self.count as f64;
        let floor = x as u64;
        let rank = if (floor as f64) < x { floor + 1 } else { floor }.max(1);
        let mut seen = 0u64;
        for (b, n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(*n);
            if seen >= rank {
                let upper = Self::upper_bound_us(b);
                return Duration::from_micros(upper.min(self.max_us));
            }
        }
        self.max()
    }

    /// The exclusive upper bound, in microseconds, of bucket `b`.
    fn upper_bound_us(b: usize) -> u64 {
        1u64.checked_shl(b as u32).unwrap_or(u64::MAX)
    }

    /// Cumulative buckets as a metrics library wants them: `(le, count)`
    /// pairs, `count` the samples below `le`, for every bucket up to the
    /// last non-empty one. The total is [`count`](Self::count).
    pub fn cumulative(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        let last = self
            .buckets
            .iter()
            .rposition(|&n| n > 0)
            .map_or(0, |b| b + 1);
        let mut seen = 0u64;
        self.buckets
            .iter()
            .enumerate()
            .take(last)
            .map(move |(b, n)| {
                seen = seen.saturating_add(*n);
                (Duration::from_micros(Self::upper_bound_us(b)), seen)
            })
    }
}

/// What an initiator session counted since it was created (across its
/// recoveries). Read with [`Session::stats`](crate::initiator::Session::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// SCSI commands the application submitted.
    pub commands_submitted: u64,
    /// SCSI commands that ended (any outcome: status, error, abort).
    pub commands_completed: u64,
    /// Commands that ended without a SCSI status (connection lost, aborted,
    /// timed out, outcome unknown).
    pub commands_failed: u64,
    /// Data-In payload bytes received for commands (READ direction).
    pub bytes_read: u64,
    /// Data-Out and immediate payload bytes sent (WRITE direction).
    pub bytes_written: u64,
    /// Commands sent again after a recovery (reissued, RFC 7143 6.3.5,
    /// or retransmitted at ERL >= 1).
    pub retries: u64,
    /// Recoveries started (a lost connection or session being replaced).
    pub recoveries: u64,
    /// Times a command had to wait because the CmdSN window was closed
    /// (RFC 7143 4.2.2.1: MaxCmdSN reached).
    pub window_stalls: u64,
    /// PDUs whose header or data digest did not match (RFC 7143 7.8).
    pub digest_errors: u64,
    /// NOP-Out pings answered by a NOP-In (RFC 7143 11.18, 11.19).
    pub nop_round_trips: u64,
    /// Latency of every completed SCSI command.
    pub command_latency: LatencyHistogram,
    /// Round-trip time of every answered ping.
    pub nop_latency: LatencyHistogram,
}

impl SessionStats {
    /// Every counter as `(name, help, value)`; names are stable,
    /// snake_case, and end in `_total` like Prometheus counters.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 10] {
        [
            (
                "iscsi_commands_submitted_total",
                "SCSI commands submitted",
                self.commands_submitted,
            ),
            (
                "iscsi_commands_completed_total",
                "SCSI commands ended (any outcome)",
                self.commands_completed,
            ),
            (
                "iscsi_commands_failed_total",
                "SCSI commands ended without a SCSI status",
                self.commands_failed,
            ),
            (
                "iscsi_read_bytes_total",
                "Data-In payload bytes received",
                self.bytes_read,
            ),
            (
                "iscsi_written_bytes_total",
                "Data-Out and immediate payload bytes sent",
                self.bytes_written,
            ),
            (
                "iscsi_retries_total",
                "Commands sent again after a recovery",
                self.retries,
            ),
            (
                "iscsi_recoveries_total",
                "Connection or session recoveries started",
                self.recoveries,
            ),
            (
                "iscsi_window_stalls_total",
                "Commands that waited for the CmdSN window",
                self.window_stalls,
            ),
            (
                "iscsi_digest_errors_total",
                "PDUs with a header or data digest error",
                self.digest_errors,
            ),
            (
                "iscsi_nop_round_trips_total",
                "NOP-Out pings answered",
                self.nop_round_trips,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn buckets_are_log2_of_microseconds() {
        assert_eq!(LatencyHistogram::bucket_of(0), 0);
        assert_eq!(LatencyHistogram::bucket_of(1), 1);
        assert_eq!(LatencyHistogram::bucket_of(2), 2);
        assert_eq!(LatencyHistogram::bucket_of(3), 2);
        assert_eq!(LatencyHistogram::bucket_of(4), 3);
        assert_eq!(LatencyHistogram::bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn percentiles_bound_the_samples_from_above_within_2x() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.percentile(50.0), Duration::ZERO);
        for n in 1..=1000 {
            h.record(us(n));
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), us(1000));
        assert_eq!(h.sum(), us(500_500));
        assert_eq!(h.mean(), us(500));
        for p in [1.0, 10.0, 50.0, 90.0, 99.0, 100.0] {
            let exact = (p / 100.0 * 1000.0_f64).ceil() as u64;
            let got = h.percentile(p).as_micros() as u64;
            assert!(
                got >= exact && got <= 2 * exact.max(1),
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(h.percentile(100.0), us(1000));
        assert_eq!(h.percentile(f64::NAN), us(1000));
    }

    #[test]
    fn merge_adds_and_cumulative_ends_at_count() {
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        a.record(us(3));
        b.record(us(100));
        b.record(Duration::from_secs(u64::MAX));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        let cum: Vec<_> = a.cumulative().collect();
        assert_eq!(cum.last().map(|c| c.1), Some(3));
        assert!(cum.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
        assert_eq!(cum.first(), Some(&(us(1), 0)));
    }

    #[test]
    fn counters_are_named_once() {
        let s = SessionStats {
            retries: 7,
            ..SessionStats::default()
        };
        let c = s.counters();
        let mut names: Vec<_> = c.iter().map(|c| c.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), c.len());
        assert!(c.iter().all(|c| c.0.ends_with("_total")));
        assert_eq!(
            c.iter().find(|c| c.0 == "iscsi_retries_total").map(|c| c.2),
            Some(7)
        );
    }
}
