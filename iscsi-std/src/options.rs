//! [`Options`]: the driver's socket-level settings.

use std::time::Duration;

use crate::{Coalesce, Tap};

/// Driver options (socket-level only; protocol settings live in
/// [`SessionConfig`](iscsi_proto::initiator::SessionConfig)). Built from [`Options::default`] (or
/// [`Options::new`]) with the `with_*` methods; new fields may be added.
///
/// ```
/// use std::time::Duration;
/// use iscsi_std::{Coalesce, Options};
///
/// let opts = Options::new()
///     .with_connect_timeout(Duration::from_secs(2))
///     .with_coalesce(Coalesce::OFF)
///     .with_background(None);
/// assert_eq!(opts.connect_timeout, Duration::from_secs(2));
/// ```
#[non_exhaustive]
pub struct Options {
    /// Timeout for each TCP connect.
    pub connect_timeout: Duration,
    /// The largest socket read: reads are sized by what is in flight (a
    /// few KiB while idle) up to this (default
    /// [`iscsi_proto::driver::MAX_READ`]), which bounds the receive memory
    /// of a busy session.
    pub max_read: usize,
    /// Optional byte tap (see [`Tap`]). With [`Options::background`] on it
    /// may also be called from the background thread (never from two
    /// threads at once).
    pub tap: Option<Tap>,
    /// Receive coalescing (`SO_RCVLOWAT`): with many tasks in flight, wake
    /// once several responses are in rather than for each
    /// (`iscsi_proto::initiator::coalesce`). On by default;
    /// [`Coalesce::OFF`] turns it off.
    pub coalesce: Coalesce,
    /// Background driving: once the application has made no call that
    /// waits for input ([`Client::wait`](crate::Client::wait), [`Client::execute`](crate::Client::execute), ...) for
    /// this long, a thread of the client answers the target's NOP-In pings
    /// (RFC 7143 section 11.18), runs the core's timers and writes what the
    /// core queues, until the application calls again. `None` turns it off:
    /// the session then moves only inside calls, and a long-idle
    /// application must call [`Client::idle`](crate::Client::idle) regularly or a target that
    /// pings will drop it. Default: 50 ms.
    pub background: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(5),
            max_read: iscsi_proto::driver::MAX_READ,
            tap: None,
            coalesce: Coalesce::default(),
            background: Some(Duration::from_millis(50)),
        }
    }
}

impl Options {
    /// The defaults (the same as [`Options::default`]).
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets [`Options::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Options {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`Options::max_read`] (at least 1).
    pub fn with_max_read(mut self, bytes: usize) -> Options {
        self.max_read = bytes.max(1);
        self
    }

    /// Installs a byte tap ([`Options::tap`]).
    pub fn with_tap(mut self, tap: Tap) -> Options {
        self.tap = Some(tap);
        self
    }

    /// Sets receive coalescing ([`Options::coalesce`]).
    pub fn with_coalesce(mut self, coalesce: Coalesce) -> Options {
        self.coalesce = coalesce;
        self
    }

    /// Sets background driving ([`Options::background`]; `None` turns it
    /// off).
    pub fn with_background(mut self, quiet: Option<Duration>) -> Options {
        self.background = quiet;
        self
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("connect_timeout", &self.connect_timeout)
            .field("max_read", &self.max_read)
            .field("tap", &self.tap.is_some())
            .field("coalesce", &self.coalesce)
            .field("background", &self.background)
            .finish()
    }
}
