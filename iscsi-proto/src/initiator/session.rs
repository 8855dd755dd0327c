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
//! | `session.rs` | the state, (A) getters, (B) inputs, (D) outputs |
//! | `session/actions.rs` | (C) application actions, task bookkeeping |
//! | `session/config.rs` | configuration checks |
//! | `session/login.rs` | the login phase (RFC 7143 sections 6, 11.12, 11.13) |
//! | `session/receive.rs` | target PDUs in Full Feature Phase; StatSN and window update |
//! | `session/send.rs` | CmdSN dispatch and the PDUs we send |
//! | `session/recovery.rs` | connection loss, logout, session reinstatement |
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
//! # use std::time::Instant;
//! # use bytes::BytesMut;
//! # use iscsi_proto::initiator::{Event, Session, SessionConfig};
//! # use iscsi_proto::wire::Isid;
//! # fn read_socket(_: &mut BytesMut) -> bool { true }
//! # fn write_socket(_: &[u8]) {}
//! # fn os_random() -> [u8; 3] { [1, 2, 3] }
//! // The ISID's random part comes from the caller: the core draws no
//! // randomness (RFC 7143 section 11.12.5).
//! let cfg = SessionConfig::new("iqn.2024-01.example:host")
//!     .with_isid(Isid::random(os_random(), 0));
//! let mut session = Session::new(cfg, Instant::now()).expect("valid configuration");
//! let mut rx = BytesMut::new();
//! loop {
//!     while let Some(t) = session.poll_transmit(Instant::now()) {
//!         let mut bytes = Vec::new();
//!         t.write_to(&mut bytes); // or t.as_io_slices(..) + write_vectored
//!         write_socket(&bytes);
//!     }
//!     while let Some(ev) = session.poll_event() {
//!         match ev {
//!             Event::Connect { .. } => { /* (re)connect, then: */
//!                 rx.clear();
//!                 session.handle_connected(Instant::now());
//!             }
//!             Event::Closed(_) => return,
//!             _ => {}
//!         }
//!     }
//!     let _deadline = session.poll_timeout(); // wait for socket or deadline
//!     if read_socket(&mut rx) {
//!         session.handle_input(Instant::now(), &mut rx);
//!     } else {
//!         session.handle_timeout(Instant::now());
//!     }
//! }
//! ```
//!
//! On [`Event::Connect`] the driver drops the old connection and its
//! receive buffer, opens a new one and calls `handle_connected`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::connection::{ConnState, Connection, OutPdu, LOGIN_MRDSL};
use super::tasks::{TaskTable, RESERVED_TAG};
use super::timer::{Timer, TimerTable};
use super::types::*;
use super::window::CmdWindow;
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

mod actions;
mod config;
pub(super) mod login;
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
}

/// The initiator side of one iSCSI session (one connection, CID from the
/// configuration), as a sans-IO state machine.
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
    /// A new session; emits `Event::Connect { portal: None }` and arms the
    /// login deadline (which covers the TCP connect). The configuration is
    /// validated here: a value the RFC does not allow, a missing ISID or
    /// unusable CHAP settings are a [`ConfigError`], never reported later
    /// as the target's fault.
    pub fn new(config: SessionConfig, now: Instant) -> Result<Session, ConfigError> {
        let isid = validate(&config)?;
        let initial = Serial(config.initial_cmd_sn);
        let mut timers = TimerTable::new();
        timers.set(Timer::Login, later(now, config.login_timeout));
        let mut s = Session {
            isid,
            phase: Phase::Active,
            conn: Connection::new(config.cid, now),
            logged_in_once: false,
            logins: 0,
            window: CmdWindow::new(initial),
            tsih: 0,
            negotiated: None,
            tasks: TaskTable::new(),
            next_seq: 0,
            pending: VecDeque::new(),
            events: VecDeque::new(),
            portal: None,
            permanent_portal: None,
            redirects: 0,
            recovery_attempt: 0,
            short_lived: 0,
            time2wait: None,
            timers,
            logout_waiting: None,
            logout_sent: false,
            target_logout: false,
            cfg: config,
        };
        s.touch_rx(now);
        s.events.push_back(Event::Connect { portal: None });
        Ok(s)
    }

    // ------------------------------------------------------------------
    // (A) getters
    // ------------------------------------------------------------------

    /// The session's state.
    pub fn state(&self) -> SessionState {
        match self.phase {
            Phase::Closed => SessionState::Closed,
            Phase::Waiting => SessionState::Recovering,
            Phase::Active => match self.conn.state {
                ConnState::Connecting => SessionState::Connecting,
                ConnState::Login(_) => SessionState::LoggingIn,
                ConnState::Full if self.logout_waiting.is_some() || self.logout_sent => {
                    SessionState::LoggingOut
                }
                ConnState::Full => SessionState::LoggedIn,
            },
        }
    }

    /// Whether the session is in Full Feature Phase.
    pub fn is_logged_in(&self) -> bool {
        self.phase == Phase::Active && self.conn.is_full()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The negotiated values (Full Feature Phase only).
    pub fn negotiated(&self) -> Option<&Negotiated> {
        if self.is_logged_in() {
            self.negotiated.as_ref()
        } else {
            None
        }
    }

    /// The CmdSN window.
    pub fn window(&self) -> &CmdWindow {
        &self.window
    }

    /// The session's connection: CID, ExpStatSN, digests and
    /// MaxRecvDataSegmentLength in each direction.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The ExpStatSN the next PDU will carry (the connection's, RFC 7143
    /// section 4.2.2.2).
    pub fn exp_stat_sn(&self) -> Serial {
        self.conn.exp_stat_sn()
    }

    /// The TSIH (0 before the leading login completes).
    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    /// The ISID.
    pub fn isid(&self) -> w::Isid {
        self.isid
    }

    /// The connection ID.
    pub fn cid(&self) -> u16 {
        self.conn.cid()
    }

    /// The CID of the connection `task`'s command went out on (its
    /// connection allegiance, RFC 7143 section 4.2.5.1): `None` for a task
    /// not sent yet (or waiting to be reissued after a recovery) or
    /// unknown.
    pub fn task_connection(&self, task: TaskId) -> Option<u16> {
        self.tasks.get(task.itt()).and_then(|t| t.allegiance)
    }

    /// Tasks started by the application and not yet completed.
    pub fn tasks_in_flight(&self) -> usize {
        self.tasks.iter().filter(|(_, t)| !t.internal).count()
    }

    /// What the target owes us now: how many tasks (the application's and
    /// internal ones) have been handed to the target and not yet ended, and
    /// how many bytes it is expected to send, without hearing from us
    /// again, before the `tasks` of them that expect the least have ended.
    ///
    /// A hint for receive coalescing (`initiator::LowWater`), not a promise:
    /// it assumes every read returns all the data it asked for, in Data-In
    /// PDUs as long as our MaxRecvDataSegmentLength allows (RFC 7143 section
    /// 11.7.7), the last carrying the status (section 11.7.4, phase
    /// collapse), so a read that ends early (CHECK CONDITION, a residual
    /// underflow, section 11.4.5) brings fewer bytes. A write, or a task
    /// waiting for an R2T, owes one PDU header: the R2T or the SCSI Response
    /// (section 11.8), after which the target waits for us. Tasks still
    /// waiting for the CmdSN window owe nothing. Outside the full feature
    /// phase nothing is owed. `tasks` is capped at 64.
    pub fn expected_input(&self, tasks: usize) -> ExpectedInput {
        const CAP: usize = 64;
        let none = ExpectedInput { tasks: 0, bytes: 0 };
        let Some(n) = self.negotiated.as_ref().filter(|_| self.is_logged_in()) else {
            return none;
        };
        // Section 11.1 / 12.1: BHS, then the header digest; the data digest
        // follows the data segment.
        let hdr = BHS_LEN + if n.header_digest { 4 } else { 0 };
        let dd = if n.data_digest { 4 } else { 0 };
        let seg = (n.initiator_max_recv_data_segment_length as usize).max(512);
        let k = tasks.min(CAP);
        // The k smallest expectations, kept sorted (k is small).
        let mut least = [0usize; CAP];
        let mut len = 0;
        let mut open = 0;
        for (_, t) in self.tasks.iter() {
            if t.cmd_sn.is_none() {
                continue; // not sent yet: the target owes nothing
            }
            open += 1;
            let e = match &t.kind {
                Kind::Scsi(s) => {
                    let rest = s.cmd.expected_read_len.saturating_sub(s.read_bytes) as usize;
                    if rest == 0 {
                        hdr
                    } else {
                        rest.saturating_add(rest.div_ceil(seg).saturating_mul(hdr + dd))
                    }
                }
                _ => hdr,
            };
            if k == 0 || (len == k && least.get(k - 1).is_some_and(|&m| e >= m)) {
                continue;
            }
            // `len <= k <= CAP`, so the slice is always there.
            let at = least
                .get(..len)
                .unwrap_or_default()
                .partition_point(|&m| m <= e);
            let end = len.min(k - 1);
            least.copy_within(at..end, at + 1);
            if let Some(slot) = least.get_mut(at) {
                *slot = e;
            }
            len = (len + 1).min(k);
        }
        ExpectedInput {
            tasks: open,
            bytes: least
                .iter()
                .take(len)
                .fold(0usize, |a, &b| a.saturating_add(b)),
        }
    }

    /// The caller's non-immediate commands waiting for the CmdSN window
    /// (like [`Session::tasks_in_flight`], internal tasks such as an
    /// answer to a renegotiation request are not counted).
    pub fn queued_commands(&self) -> usize {
        self.pending
            .iter()
            .filter(|&&itt| !matches!(self.tasks.get(itt), Some(t) if t.internal))
            .count()
    }

    /// The portal of the current connection: `None` for the configured
    /// one, else where a redirection pointed.
    pub fn target_portal(&self) -> Option<&NetworkPortal> {
        self.portal.as_ref()
    }

    /// The longest PDU the receive side accepts now (BHS, largest AHS,
    /// digests and our MaxRecvDataSegmentLength): a driver's receive buffer
    /// never has to hold more than this plus one read.
    pub fn max_recv_pdu_len(&self) -> usize {
        self.conn.max_recv_pdu_len()
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Whether PDUs wait in `poll_transmit`.
    pub fn has_transmit(&self) -> bool {
        self.conn.has_transmit()
    }

    // ------------------------------------------------------------------
    // (B) inputs
    // ------------------------------------------------------------------

    /// The TCP connection asked for by `Event::Connect` is up: start the
    /// login.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.phase != Phase::Active || !matches!(self.conn.state, ConnState::Connecting) {
            return;
        }
        tracing::debug!(target: "iscsi::login", cid = self.conn.cid, "connected; login starts");
        match self.start_login() {
            Ok(login) => {
                self.conn.state = ConnState::Login(login);
                self.touch_rx(now);
            }
            Err(e) => self.fail_closed(e),
        }
    }

    /// Bytes arrived. Whole PDUs are consumed from `buf`; a partial PDU is
    /// left for the next call. After a connection failure the buffer is
    /// cleared (its bytes belong to the dead connection).
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        loop {
            if self.phase != Phase::Active || matches!(self.conn.state, ConnState::Connecting) {
                break;
            }
            match self.conn.decoder.decode(buf) {
                Ok(Some(pdu)) => {
                    self.touch_rx(now);
                    self.timers.stop(Timer::Ping);
                    if let Err(e) = self.on_pdu(now, pdu) {
                        self.fail_connection(now, e);
                        buf.clear();
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // RFC 7143 section 11.2.1.2: opcodes 0x3c-0x3e are
                    // vendor specific; a target may send them and an
                    // initiator that does not know them ignores them.
                    if let WireError::UnknownOpcode(op) = e {
                        if !e.is_fatal() && (0x3c..=0x3e).contains(&op) {
                            self.touch_rx(now);
                            continue;
                        }
                    }
                    let err = match e {
                        // RFC 7143 section 7.8: header digest errors and
                        // (at ErrorRecoveryLevel 0) data digest errors end
                        // the connection.
                        WireError::HeaderDigest { .. } | WireError::DataDigest { .. } => {
                            ConnectionError::DigestFailure(e)
                        }
                        other => io(other),
                    };
                    self.fail_connection(now, err);
                    buf.clear();
                    break;
                }
            }
        }
        self.after_action(now);
    }

    /// A deadline passed (call at or after `poll_timeout()`): every
    /// [`Timer`] due is handled (`session/timers.rs`).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_timers(now);
        self.after_action(now);
    }

    /// The TCP connection closed or failed.
    pub fn handle_closed(&mut self, now: Instant) {
        if self.phase == Phase::Active {
            self.fail_connection(now, ConnectionError::Closed);
        }
        self.after_action(now);
    }

    // (C) application actions: `session/actions.rs`.

    // ------------------------------------------------------------------
    // (D) outputs
    // ------------------------------------------------------------------

    /// The next PDU to send, encoded. ExpStatSN is stamped now, so it is
    /// always the latest.
    #[must_use = "a PDU taken from the session must be sent"]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        loop {
            let out = self.conn.pop()?;
            if let Some((itt, ends_seq)) = out.data_out {
                let Some(task) = self.tasks.get_mut(itt) else {
                    // The task completed (or was aborted): its remaining
                    // Data-Out is moot.
                    continue;
                };
                if ends_seq {
                    if let Kind::Scsi(s) = &mut task.kind {
                        s.outstanding_r2t = s.outstanding_r2t.saturating_sub(1);
                    }
                }
            }
            let OutPdu {
                mut header,
                ahs,
                data,
                digests,
                ..
            } = out;
            self.stamp(&mut header);
            match self.conn.encode(&header, &ahs, data, digests) {
                Ok(t) => return Some(t),
                Err(e) => {
                    // submit() refuses what cannot be encoded, so this is a
                    // bug; still, a PDU is never dropped silently: the
                    // connection ends with the reason.
                    debug_assert!(false, "unencodable PDU: {e}");
                    self.fail_connection(now, ConnectionError::Encode(e));
                    self.after_action(now);
                    return None;
                }
            }
        }
    }

    /// The next event.
    #[must_use = "events carry task completions and connection requests"]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest deadline: call `handle_timeout` then. Computed from the
    /// [`Timer`]s that count in the current state.
    #[must_use = "the session needs handle_timeout at this deadline"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout()
    }

    // ------------------------------------------------------------------
    // internals
    // ------------------------------------------------------------------

    /// Fills in what is known only when a PDU leaves (RFC 7143 section
    /// 4.2.2.2: ExpStatSN, so it is always the latest; section 4.2.2.1: the
    /// CmdSN of immediate commands) and records where each task's command
    /// went (its connection allegiance).
    fn stamp(&mut self, header: &mut Header) {
        let exp = self.conn.exp_stat_sn();
        // RFC 7143 section 4.2.2.1: an immediate command carries "the
        // current CmdSN", the number of the next non-immediate command
        // not yet sent.
        let current = self.window.cmd_sn().minus(self.conn.queued_numbered);
        let cid = self.conn.cid;
        let command_itt = match header {
            Header::NopOut(h) => {
                h.exp_stat_sn = exp;
                h.cmd_sn = current;
                Some(h.itt)
            }
            Header::ScsiCommand(h) => {
                h.exp_stat_sn = exp;
                if h.immediate {
                    h.cmd_sn = current;
                }
                if let Some(t) = self.tasks.get_mut(h.itt) {
                    t.sent = true;
                    t.allegiance = Some(cid);
                }
                None
            }
            Header::TaskMgmtRequest(h) => {
                h.exp_stat_sn = exp;
                h.cmd_sn = current;
                Some(h.itt)
            }
            Header::LoginRequest(h) => {
                h.exp_stat_sn = exp;
                None
            }
            Header::TextRequest(h) => {
                h.exp_stat_sn = exp;
                Some(h.itt)
            }
            Header::DataOut(h) => {
                h.exp_stat_sn = exp;
                None
            }
            Header::LogoutRequest(h) => {
                h.exp_stat_sn = exp;
                h.cmd_sn = current;
                Some(h.itt)
            }
            Header::SnackRequest(h) => {
                h.exp_stat_sn = exp;
                None
            }
            _ => None,
        };
        if let Some(t) = command_itt.and_then(|itt| self.tasks.get_mut(itt)) {
            t.allegiance = Some(cid);
        }
    }

    /// A PDU arrived on the connection (or it was just set up): the
    /// keepalive interval counts from now.
    fn touch_rx(&mut self, now: Instant) {
        self.conn.last_rx = now;
        if let Some(ka) = self.cfg.keepalive {
            self.timers.set(Timer::Keepalive, later(now, ka.interval));
        }
    }

    fn after_action(&mut self, now: Instant) {
        if self.is_logged_in() {
            if !self.holds_new_work() {
                self.dispatch_pending(now);
            }
            self.maybe_send_logout(now);
        }
    }

    /// The session is over for good.
    fn fail_closed(&mut self, err: ConnectionError) {
        if self.is_closed() {
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
