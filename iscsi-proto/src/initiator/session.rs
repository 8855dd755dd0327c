//! The initiator session state machine: login (security and operational
//! stages, CHAP, redirection), discovery, Full Feature Phase (SCSI reads,
//! writes with immediate/unsolicited/solicited data, NOP, task management,
//! asynchronous messages, Reject), logout and ErrorRecoveryLevel 0 session
//! recovery.
//!
//! [`Session`] holds what RFC 7143 keeps per session (section 4.2.1; ISID
//! and TSIH, the CmdSN window, the tasks, the negotiated keys, recovery);
//! its [`Connection`] what is kept per connection (CID, StatSN, login,
//! digests, MaxRecvDataSegmentLength, transmit queues, keepalive). The
//! code is split along the seams of the protocol:
//!
//! | file | what |
//! |---|---|
//! | `session.rs` | the state and the helpers every part uses |
//! | `session/getters.rs` | the constructor and (A) getters |
//! | `session/inputs.rs` | (B) inputs from the driver |
//! | `session/operations.rs` | (C) application actions, task bookkeeping |
//! | `session/outputs.rs` | (D) outputs to the driver, stamping ExpStatSN and CmdSN |
//! | `session/config.rs` | configuration checks |
//! | `session/login.rs` | the login phase (RFC 7143 sections 6, 11.12, 11.13) |
//! | `session/receive.rs` | target PDUs in Full Feature Phase; StatSN and window update |
//! | `session/send.rs` | CmdSN dispatch and the PDUs we send |
//! | `session/recovery.rs` | connection loss, logout, session reinstatement |
//! | `session/erl2.rs` | ErrorRecoveryLevel 2: connection recovery, TASK REASSIGN (RFC 7143 sections 6.3.4, 7.2.2, 11.5.1) |
//! | `session/failover.rs` | which portal a recovery reconnects to |
//! | `session/erl1.rs` | ErrorRecoveryLevel 1: SNACK, digest and sequence errors (RFC 7143 sections 7.8, 7.9, 11.16) |
//! | `session/timers.rs` | the deadlines ([`Timer`]) and what each does when it passes |
//!
//! # Driving a session
//!
//! A [`Session`] never does I/O and never reads a clock. The driver:
//!
//! 1. calls an input (`handle_connected`, `handle_input`, `handle_timeout`,
//!    `handle_closed`) or an app action (`submit`, `abort_task`, ...);
//! 2. drains [`Session::poll_transmit`] until it returns `None` (or the
//!    socket would block: keep the unsent `Transmit` and retry later);
//! 3. drains [`Session::poll_event`] until `None`;
//! 4. re-arms one timer at [`Session::poll_timeout`].
//!
//! ```no_run
//! # use iscsi_proto::driver::Clock;
//! # use bytes::BytesMut;
//! # use iscsi_proto::initiator::{Event, Session, SessionConfig};
//! # use iscsi_proto::wire::Isid;
//! # fn read_socket(_: &mut BytesMut) -> bool { true }
//! # fn write_socket(_: &[u8]) {}
//! # fn os_random() -> [u8; 3] { [1, 2, 3] }
//! // The ISID's random part comes from the caller: the core draws no
//! // randomness (RFC 7143 section 11.12.5).
//! // Time: the core's `Instant` is the time since an epoch the driver
//! // picks; `Clock` converts from `std::time::Instant` (on `std`).
//! let clock = Clock::start();
//! let cfg = SessionConfig::new("iqn.2024-01.example:host")
//!     .with_isid(Isid::random(os_random(), 0));
//! let mut session = Session::new(cfg, clock.now()).expect("valid configuration");
//! let mut rx = BytesMut::new();
//! loop {
//!     while let Some(t) = session.poll_transmit(clock.now()) {
//!         let mut bytes = Vec::new();
//!         t.write_to(&mut bytes); // or t.as_io_slices(..) + write_vectored
//!         write_socket(&bytes);
//!     }
//!     while let Some(ev) = session.poll_event() {
//!         match ev {
//!             Event::Connect { .. } => { /* (re)connect, then: */
//!                 rx.clear();
//!                 session.handle_connected(clock.now());
//!             }
//!             Event::Closed(_) => return,
//!             _ => {}
//!         }
//!     }
//!     let _deadline = session.poll_timeout(); // wait for socket or deadline
//!     if read_socket(&mut rx) {
//!         session.handle_input(clock.now(), &mut rx);
//!     } else {
//!         session.handle_timeout(clock.now());
//!     }
//! }
//! ```
//!
//! On [`Event::Connect`] the driver drops the old connection and its
//! receive buffer, opens a new one and calls `handle_connected`.
//!
//! # Several connections (MC/S) and error recovery
//!
//! A driver that supports more than one connection per session (RFC 7143
//! section 13.2) keeps one socket and one receive buffer per CID
//! ([`Session::connection_ids`]; the first is the configured CID and is
//! driven by the methods above, unchanged). The application asks for more
//! with [`Session::add_connection`] (up to the negotiated MaxConnections,
//! `SessionConfig::with_max_connections`). Then:
//!
//! - [`Event::OpenConnection`] `{ cid, portal }`: open a TCP connection
//!   for `cid` and call [`Session::handle_connected_on`]`(cid, now)`;
//! - bytes from that socket: [`Session::handle_input_on`]`(cid, now, buf)`;
//!   its end: [`Session::handle_closed_on`]`(cid, now)`;
//! - [`Event::CloseConnection`] `{ cid, .. }`: close that socket and drop
//!   its buffer (the session goes on); [`Event::ConnectionUp`] is
//!   informational;
//! - the drain order after every input or action becomes: for each CID of
//!   `connection_ids()`, [`Session::poll_transmit_on`]`(cid, now)` until
//!   `None` (the first CID may use `poll_transmit`), then `poll_event`
//!   until `None`, then one timer at `poll_timeout` (it covers every
//!   connection's login deadline). An event may add or remove a CID:
//!   drain the transmits again after handling events until nothing moves.
//!
//! With ErrorRecoveryLevel 2 a lost connection is replaced within the
//! session: for the first connection the driver sees the same
//! [`Event::Recovering`] / [`Event::Connect`] / [`Event::Reinstated`] as
//! for session recovery (the TSIH does not change; an informational
//! [`Event::ConnectionRecovered`] precedes `Reinstated`); an added
//! connection's loss is only an [`Event::CloseConnection`] with a cause.
//! A driver that does not support MC/S never calls `add_connection` and
//! never sees the new events.

use crate::prelude::*;
use crate::time::Instant;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use core::time::Duration;

use bytes::Bytes;

use super::connection::{ConnState, Connection, OutPdu, Resync, LOGIN_MRDSL};
use super::stat_sn::StatSnAck;
use super::tasks::{TaskTable, RESERVED_TAG};
use super::timer::{Timer, TimerTable};
use super::types::*;
use super::window::{CmdWindow, WindowUpdate};
use crate::error::{ConfigError, ConnectionError, ProtocolError, TaskError, TimerKind, UsageError};
use crate::login::chap::{ChapCredentials, InitiatorChap, InitiatorChapConfig};
use crate::login::discovery::{parse_send_targets, parse_target_address};
use crate::login::negotiation::{
    AuthMethod, InitiatorConfig, InitiatorNegotiator, Negotiated, SessionType,
};
use crate::login::status::{LoginStatus, StatusClass};
use crate::scsi::sense::SenseData;
use crate::transmit::Transmit;
use crate::wire::ahs::Ahs;
use crate::wire::bhs::BHS_LEN;
use crate::wire::frame::Digests;
use crate::wire::pdu::{self as w, Header, Stage};
use crate::wire::text::{self, TextAssembler};
use crate::wire::{Pdu, Serial, WireError};

// The public methods, one impl block per group, in the documented order
// (rustdoc lists the blocks by file name, which keeps that order).
mod getters;
mod inputs;
mod operations;
mod outputs;

mod config;
mod driver_api;
mod erl1;
mod erl2;
mod failover;
pub(super) mod login;
mod mcs;
mod quiet;
mod rdata;
mod receive;
mod recovery;
mod send;
mod timers;

use config::{login_engines, validate};

/// Longest CDB (RFC 7143 section 11.2.2.3: the AHS carries up to 260 - 16).
const MAX_CDB_LEN: usize = 260;
/// A login whose connection the target closes within this time counts as
/// taken over (see `ConnectionError::TakenOver`).
const SHORT_LIVED: Duration = Duration::from_secs(10);
/// Short-lived logins in a row before recovery gives up.
const TAKEN_OVER_AFTER: u32 = 5;

/// The session's state, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Waiting for the driver to connect (`Event::Connect` was emitted).
    Connecting,
    /// Login in progress.
    LoggingIn,
    /// Full Feature Phase.
    LoggedIn,
    /// A logout was requested or is in flight.
    LoggingOut,
    /// Waiting before a recovery reconnection.
    Recovering,
    /// Over.
    Closed,
}

/// Where the session is (RFC 7143 section 8.3, the session states): with
/// a connection (being set up, logging in or in Full Feature Phase: see
/// [`ConnState`]), waiting to reconnect after a connection failure, or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Active,
    /// [`Timer::Reconnect`] says when the new connection starts.
    Waiting,
    Closed,
}

#[derive(Debug)]
struct ScsiTask {
    cmd: ScsiCommand,
    next_data_sn: Serial,
    read_bytes: u32,
    next_r2t_sn: Serial,
    outstanding_r2t: u16,
    /// ErrorRecoveryLevel 1 state (`session/erl1.rs`), boxed: allocated
    /// only once a PDU of this task is lost.
    recovery: Option<Box<erl1::TaskRecovery>>,
    /// Reassigned to a new connection (ErrorRecoveryLevel 2): the next
    /// R2T starts the R2TSN expectation afresh (the target asks again for
    /// what it still needs, RFC 7143 section 7.2.2).
    r2t_resync: bool,
    /// The connection's MaxRecvDataSegmentLength epoch when the command
    /// went out (`session/rdata.rs`).
    mrdsl_epoch: u16,
}

#[derive(Debug)]
struct TextTask {
    request: Bytes,
    assembler: TextAssembler,
    ttt: u32,
    /// Whether the first request has been sent (else this is a continuation).
    started: bool,
    /// A Full Feature Phase negotiation (keys applied from the answer)
    /// rather than SendTargets.
    negotiate: bool,
    /// Our own declarations, effective when the sequence completes (RFC
    /// 7143 section 6.4).
    declared: Option<Box<Negotiated>>,
}

#[derive(Debug)]
enum Kind {
    // Inline, not boxed: a SCSI command is the per-I/O task and its slab
    // slot is reused, so it costs no allocation.
    Scsi(ScsiTask),
    Nop,
    Tmf {
        function: w::TmfFunction,
        affected: Vec<u32>,
    },
    Text(Box<TextTask>),
    Logout,
    /// A Logout Request for one connection (RFC 7143 section 11.14.1,
    /// reasons 1 and 2; `session/mcs.rs`).
    ConnLogout {
        cid: u16,
        reason: w::LogoutReason,
    },
}

#[derive(Debug)]
struct Task {
    kind: Kind,
    /// CmdSN of the last command PDU sent for it.
    cmd_sn: Option<Serial>,
    /// The CID of the connection its command was queued on: its
    /// connection allegiance (RFC 7143 section 4.2.5.1: the responses and
    /// data of a task use that connection). `None` until it is sent, and
    /// again when it waits to be reissued.
    allegiance: Option<u16>,
    /// Internal task (keepalive ping, target-requested logout,
    /// renegotiation): completes without an event.
    internal: bool,
    /// Order of submission, for reissue after recovery.
    seq: u64,
    /// When the application submitted it (for `SessionStats` latencies).
    started: Instant,
    /// The command PDU left through `poll_transmit` on the current
    /// connection: the target may have it (and may have run it).
    sent: bool,
    /// A task management function covering this task was sent and not
    /// answered: it may have been aborted or may have run.
    abort_pending: bool,
    /// Per-task timeout: when the next escalation step is due.
    deadline: Option<Instant>,
    /// Escalation steps taken (0 none, 1 ABORT TASK, 2 LOGICAL UNIT RESET).
    escalation: u8,
    /// ErrorRecoveryLevel 2: what the task needs once its connection is
    /// replaced (`session/erl2.rs`).
    reassign: erl2::Reassign,
}

/// The initiator side of one iSCSI session, as a sans-IO state machine:
/// one connection (CID from the configuration), more with
/// [`add_connection`](Session::add_connection) (MC/S; see the module
/// documentation for the driver's part), ErrorRecoveryLevel 0 to 2.
///
/// Its public methods come in four groups, in this order below:
///
/// - **(A) getters**: [`state`](Session::state),
///   [`negotiated`](Session::negotiated), [`window`](Session::window),
///   [`connection`](Session::connection),
///   [`expected_input`](Session::expected_input), ... read the state and
///   change nothing.
/// - **(B) inputs** from the driver: [`handle_connected`](Session::handle_connected)
///   (the TCP connection asked for is up), [`handle_input`](Session::handle_input)
///   (bytes arrived), [`handle_timeout`](Session::handle_timeout) (the
///   deadline of [`poll_timeout`](Session::poll_timeout) passed) and
///   [`handle_closed`](Session::handle_closed) (the connection ended).
/// - **(C) application actions**: [`submit`](Session::submit),
///   [`abort_task`](Session::abort_task), [`task_management`](Session::task_management),
///   [`nop_ping`](Session::nop_ping), [`send_targets`](Session::send_targets),
///   [`declare_max_recv_data_segment_length`](Session::declare_max_recv_data_segment_length),
///   [`logout`](Session::logout) (or [`start`](Session::start) with an
///   [`Action`](super::Action)); each returns the [`TaskId`] that a later
///   [`Event::Complete`] names.
/// - **(D) outputs**: [`poll_transmit`](Session::poll_transmit) (PDUs to
///   send), [`poll_event`](Session::poll_event) (what the application
///   hears) and [`poll_timeout`](Session::poll_timeout) (when to call
///   `handle_timeout`).
///
/// After every (B) input or (C) action, drain the outputs in this order:
/// `poll_transmit` until `None`, then `poll_event` until `None`, then arm
/// one timer at `poll_timeout`. The session reads no clock: every call
/// that may start or check a deadline takes `now`.
pub struct Session {
    cfg: SessionConfig,
    /// `cfg.isid`, checked by `Session::new`.
    isid: w::Isid,
    phase: Phase,
    /// The session's connection (one today; RFC 7143 section 4.2.1).
    conn: Connection,
    logged_in_once: bool,
    /// Logins started on this session (recovery and redirects add more).
    logins: u32,
    window: CmdWindow,
    tsih: u16,
    negotiated: Option<Negotiated>,
    tasks: TaskTable<Task>,
    next_seq: u64,
    /// Non-immediate commands waiting for the CmdSN window.
    pending: VecDeque<u32>,
    events: VecDeque<Event>,
    // Redirection and recovery.
    portal: Option<NetworkPortal>,
    permanent_portal: Option<NetworkPortal>,
    redirects: u8,
    recovery_attempt: u32,
    /// Connections in a row the target closed soon after the login.
    short_lived: u32,
    time2wait: Option<u16>,
    /// Every deadline; which ones count depends on the phase
    /// (`session/timers.rs`).
    timers: TimerTable,
    /// Logout task waiting for tasks to drain ([`Timer::LogoutDue`]: the
    /// time by which a target-requested logout must be sent anyway).
    logout_waiting: Option<u32>,
    logout_sent: bool,
    /// The logout was asked for by the target (AsyncEvent 1) and the
    /// application has not adopted it: with recovery configured, the
    /// session logs in again afterwards and new work waits for that.
    target_logout: bool,
    /// ErrorRecoveryLevel 1: the end (exclusive) of the StatSNs asked for
    /// by Status SNACKs (RFC 7143 section 11.16), while ExpStatSN is below.
    status_snacked: Option<Serial>,
    /// The connection whose StatSNs `status_snacked` counts: `None` the
    /// first, `Some(cid)` an added one (as `swapped`). StatSN is per
    /// connection (RFC 7143 section 4.2.2.2) and SNACKs go on the
    /// connection of what they ask for (section 4.2.5.1).
    status_snacked_on: Option<u16>,
    /// SNACK rounds in a row without progress (`ErrorRecovery::snack_retries`).
    snack_rounds: u8,
    /// ErrorRecoveryLevel 2 connection recovery in progress.
    conn_recovery: Option<erl2::ConnRecovery>,
    /// The session's other connections (MC/S, RFC 7143 section 13.2;
    /// `session/mcs.rs`), by CID.
    extra: BTreeMap<u16, mcs::Extra>,
    /// While an extra connection is swapped into `conn`: its CID.
    swapped: Option<u16>,
    /// Non-immediate commands queued on the connections not in `conn`
    /// while one is swapped in (for the CmdSN of immediate commands).
    parked_numbered: u32,
    /// A failure of the swapped-in connection, handled once it is out.
    deferred_fail: Option<ConnectionError>,
    /// The swapped-in connection logged out: removed once it is out.
    deferred_close: bool,
    /// Added connections that failed while the first one was recovering
    /// (ErrorRecoveryLevel 2): logged out with reason 2 once it is back.
    orphans: BTreeSet<u16>,
    /// MC/S: added connections an Async Message said the target drops
    /// (AsyncEvent 2, RFC 7143 section 11.9.1), handled as failed once the
    /// call that received it is over (`session/mcs.rs`).
    async_drops: BTreeSet<u16>,
    /// MC/S: added connections the target asked to log out (AsyncEvent 1
    /// received on them, RFC 7143 section 11.9.1): no new commands go
    /// there, and the Logout Request (reason 1) leaves once their tasks
    /// are done (`session/mcs.rs`).
    async_logouts: BTreeSet<u16>,
    /// The last R-Data SNACK Tag used (RFC 7143 section 11.16.5).
    snack_tag: u32,
    /// Round-robin position of `Spread::RoundRobin`.
    rr: usize,
    /// What the session counted about itself ([`Session::stats`]).
    stats: crate::stats::SessionStats,
    /// The latest `now` a caller passed in: the completion time of tasks
    /// ended inside an input (the core reads no clock).
    clock: Instant,
    /// Commands are waiting for the CmdSN window (counted once per stall
    /// in `SessionStats::window_stalls`).
    window_stalled: bool,
    /// Where the portal of the current connection is in the failover
    /// order (0: the configured or permanently redirected one, i: the
    /// `i`-th of `SessionConfig::failover_portals`).
    portal_index: usize,
    /// Time2Retain from an Async Message (RFC 7143 section 11.9.1, events
    /// 2 and 3, Parameter3), for the next connection recovery.
    time2retain: Option<u16>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state())
            .field("tsih", &self.tsih)
            .field("window", &self.window)
            .field("exp_stat_sn", &self.conn.exp_stat_sn())
            .field("connection", &self.conn)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

fn io<E: Into<ProtocolError>>(e: E) -> ConnectionError {
    ConnectionError::Protocol(e.into())
}

fn violation(rule: &'static str, section: &'static str) -> ConnectionError {
    ConnectionError::Protocol(ProtocolError::violation(rule, section))
}

impl Session {
    /// A PDU arrived on the connection (or it was just set up): the
    /// keepalive interval counts from now.
    fn touch_rx(&mut self, now: Instant) {
        self.conn.last_rx = now;
        if self.swapped.is_some() {
            // An added connection (MC/S) keeps its own idle time and ping
            // (`session/mcs.rs`): its traffic says nothing about the first
            // connection's.
            self.conn.ping_deadline = None;
            return;
        }
        self.timers.stop(Timer::Ping);
        if let Some(ka) = self.cfg.keepalive {
            self.timers.set(Timer::Keepalive, later(now, ka.interval));
        }
        self.quiet_restart(now);
    }

    /// Run after every input and action: in Full Feature Phase, send the
    /// queued commands the CmdSN window now allows (RFC 7143 section
    /// 4.2.2.1) and a logout whose wait for tasks is over.
    fn after_action(&mut self, now: Instant) {
        if self.swapped.is_none() && !self.async_drops.is_empty() {
            self.apply_async_drops(now);
        }
        if self.swapped.is_none() && !self.async_logouts.is_empty() {
            self.apply_async_logouts(now);
        }
        if self.is_logged_in() {
            if !self.holds_new_work() {
                self.dispatch_pending(now);
            }
            self.maybe_send_logout(now);
        } else if self.conn_recovery.is_some()
            && self.phase != Phase::Closed
            && self.extra.values().any(|e| e.conn.is_full())
        {
            // MC/S at ErrorRecoveryLevel 2: while the first connection is
            // being replaced, new SCSI commands go out on the others
            // (RFC 7143 section 4.2.2.1: any connection of the session
            // may carry any command).
            self.dispatch_pending(now);
        }
    }

    /// The session is over for good.
    fn fail_closed(&mut self, err: ConnectionError) {
        if self.is_closed() {
            return;
        }
        if self.swapped.is_some() {
            self.deferred_fail.get_or_insert(err);
            return;
        }
        tracing::info!(target: "iscsi::session", error = %err, "session closed");
        self.fail_user_tasks(TaskError::ConnectionLost, None);
        // Any logout task left (internal or not).
        for itt in self.tasks.tags() {
            self.complete(itt, TaskOutcome::Failed(TaskError::ConnectionLost));
        }
        self.close_quietly();
        self.events.push_back(Event::Closed(Some(err)));
    }

    fn close_quietly(&mut self) {
        self.drop_extras(None);
        self.phase = Phase::Closed;
        self.pending.clear();
        self.conn.clear_queues();
        self.timers.stop_all();
        self.logout_waiting = None;
        self.target_logout = false;
    }
}

/// `now + d`, saturating (a configured `Duration::MAX` must not panic).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}
