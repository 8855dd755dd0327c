//! Receive memory that follows what is in flight.
//!
//! A receive region holds about twice what the target owes now
//! ([`Session::expected_input`](crate::initiator::Session::expected_input):
//! the data and headers of every task handed to it), at least [`MIN_READ`]
//! and at most the driver's maximum ([`MAX_READ`] unless set with
//! [`DriverCore::set_max_read`]), plus whatever the PDU under way still
//! needs; each read is offered at least half of that, so everything owed
//! fits in one read (a target that answers all its commands at once costs
//! one read), and a region serves two such reads before a new one is
//! zero-filled. A session with 32 reads of 4 KiB in flight reads into
//! regions of about 260 KiB; an idle one into a few KiB.
//!
//! Memory a busy spell left behind is given back: once nothing is owed
//! and no partial PDU is held, a receive region larger than [`IDLE_KEEP`]
//! is dropped after [`RELEASE_AFTER`] of idleness (a deadline in
//! [`DriverCore::poll_timeout`], carried out by
//! [`DriverCore::handle_timeout`]). The next read allocates a region sized
//! for what is then in flight. PDUs already handed out keep their part of
//! the old region alive until they are dropped (they are `Bytes` slices
//! of it).

use core::time::Duration;
use std::io;
use std::time::Instant;

use super::{Direction, DriverCore, Read};
use crate::initiator::RecvBuffer;

/// The smallest socket read: a login or text response, a NOP-In, a few
/// SCSI Responses.
pub const MIN_READ: usize = 4 * 1024;
/// The default largest receive region (see [`DriverCore::set_max_read`]);
/// a read is offered at least half of it.
pub const MAX_READ: usize = 1024 * 1024;
/// A receive region up to this size is kept while the session is idle.
pub const IDLE_KEEP: usize = 16 * 1024;
/// How long a session stays idle (nothing owed) before a larger receive
/// region is dropped.
pub const RELEASE_AFTER: Duration = Duration::from_millis(100);
/// Tasks counted by the read size (the core's own cap on
/// `expected_input`).
const OWED_TASKS: usize = 64;

impl DriverCore {
    /// Sets the largest socket read (default [`MAX_READ`]; at least 1).
    /// Reads are smaller while less is in flight (see the module
    /// documentation of `driver::recv`).
    pub fn set_max_read(&mut self, bytes: usize) {
        self.max_read = bytes.max(1);
    }

    /// The largest socket read (see [`DriverCore::set_max_read`]).
    pub fn max_read(&self) -> usize {
        self.max_read
    }

    /// The receive region the next read needs: twice what the target
    /// owes, at least [`MIN_READ`], at most the maximum (a read is offered
    /// at least half of it).
    pub(super) fn read_size(&self) -> usize {
        let owed = self.session.expected_input(OWED_TASKS).bytes;
        owed.saturating_mul(2)
            .max(MIN_READ)
            .min(self.max_read)
            .max(1)
    }

    /// Space for the next socket read (sized by what is in flight, see
    /// the module documentation of `driver::recv`).
    pub fn recv_space(&mut self) -> &mut [u8] {
        let max_pdu = self.session.max_recv_pdu_len();
        let chunk = self.read_size();
        self.rx_peak = self.rx_peak.max(chunk);
        self.rx.spare(max_pdu, chunk)
    }

    /// `n` bytes were read into [`DriverCore::recv_space`] (0: the peer
    /// closed the connection; the driver is asked to close its socket).
    pub fn received(&mut self, now: Instant, n: usize) {
        if n == 0 {
            return self.connection_lost(now);
        }
        self.low_water.on_input(n, self.clock.to_core(now));
        let got = self.rx.commit(n);
        if let (Some(tap), Some((local, peer))) = (self.tap.as_mut(), self.link) {
            tap(Direction::Received, local, peer, got);
        }
        self.session
            .handle_input(self.clock.to_core(now), self.rx.filled());
        self.drain();
    }

    /// Reads once with `read`, the driver's socket read, into
    /// [`DriverCore::recv_space`] and hands what came to the session
    /// ([`DriverCore::received`]); an end of stream or a read error is a
    /// [`DriverCore::connection_lost`].
    pub fn read_with(
        &mut self,
        now: Instant,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> Read {
        loop {
            match read(self.recv_space()) {
                Ok(0) => {
                    self.connection_lost(now);
                    return Read::Lost;
                }
                Ok(n) => {
                    self.received(now, n);
                    return Read::Bytes(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Read::Nothing;
                }
                Err(_) => {
                    self.connection_lost(now);
                    return Read::Lost;
                }
            }
        }
    }

    /// Before a wait: once nothing is owed and no partial PDU is held, a
    /// receive region above [`IDLE_KEEP`] is to be dropped at
    /// [`RELEASE_AFTER`] from now; anything owed cancels that.
    pub(super) fn plan_release(&mut self, now: crate::time::Instant) {
        let idle = self.rx_peak > IDLE_KEEP
            && self.rx.filled().is_empty()
            && self.session.expected_input(0).tasks == 0;
        if !idle {
            self.release_at = None;
        } else if self.release_at.is_none() {
            self.release_at = Some(now + RELEASE_AFTER);
        }
    }

    /// The idle deadline passed: drops the receive regions (of the first
    /// connection and of added ones) that hold no partial PDU. Returns
    /// false before the deadline.
    pub(super) fn release_if_due(&mut self, now: crate::time::Instant) -> bool {
        if self.release_at.is_none_or(|d| d > now) {
            return false;
        }
        self.release_at = None;
        if self.session.expected_input(0).tasks != 0 {
            return true;
        }
        tracing::trace!(target: "iscsi::driver", bytes = self.rx_peak, "receive memory released");
        release(&mut self.rx);
        for l in self.links.values_mut() {
            release(l.rx_mut());
        }
        self.rx_peak = 0;
        true
    }
}

/// Drops `rx`'s region unless it holds a partial PDU.
fn release(rx: &mut RecvBuffer) {
    if rx.filled().is_empty() {
        *rx = RecvBuffer::default();
    }
}
