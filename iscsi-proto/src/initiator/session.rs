//! The initiator session state machine: login (security and operational
//! stages, CHAP, redirection), discovery, Full Feature Phase (SCSI reads,
//! writes with immediate/unsolicited/solicited data, NOP, task management,
//! asynchronous messages, Reject), logout and ErrorRecoveryLevel 0 session
//! recovery.
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
//! # fn read_socket(_: &mut BytesMut) -> bool { true }
//! # fn write_socket(_: &[u8]) {}
//! let cfg = SessionConfig::new("iqn.2024-01.example:host");
//! let mut session = Session::new(cfg, Instant::now());
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

use super::tasks::{TaskTable, RESERVED_TAG};
use super::types::*;
use super::window::CmdWindow;
use crate::error::{ConnectionError, ProtocolError, TaskError, TimerKind, UsageError};
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
use crate::wire::frame::{data_trailer, encode_header, Digests};
use crate::wire::pdu::{self as w, Header, Stage};
use crate::wire::text::{self, TextAssembler};
use crate::wire::{DecoderConfig, Pdu, PduDecoder, Serial, WireError};

/// MaxRecvDataSegmentLength in effect during login (RFC 7143 section 13.12:
/// the default, 8192, applies until the key is negotiated).
const LOGIN_MRDSL: u32 = 8192;
/// Login round trips before the target is deemed to loop.
const MAX_LOGIN_ROUNDS: u32 = 64;
/// Longest CDB (RFC 7143 section 11.2.2.3: the AHS carries up to 260 - 16).
const MAX_CDB_LEN: usize = 260;
/// How far ahead of ExpStatSN a StatSN may arrive before the connection is
/// considered failed (RFC 7143 section 4.2.2.2: "Initiators MUST undertake
/// recovery actions if the difference is greater than an implementation-
/// defined constant"). istgt sends a Task Management Function Response
/// after status it numbered later, so a StatSN a little ahead is normal.
const STAT_SN_AHEAD: u32 = 64;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChapStep {
    /// AuthMethod not yet agreed.
    Method,
    /// CHAP_A sent, waiting for CHAP_A/I/C.
    Offered,
    /// CHAP_N/R sent; for mutual CHAP waiting for the target's CHAP_N/R.
    Responded,
    /// Done.
    Done,
}

struct Login {
    neg: InitiatorNegotiator,
    chap: Option<InitiatorChap>,
    chap_step: ChapStep,
    /// Our mutual CHAP challenge for this login (its first byte is CHAP_I).
    chap_challenge: Vec<u8>,
    /// CSG of the requests we send.
    stage: Stage,
    itt: u32,
    cmd_sn: Serial,
    assembler: TextAssembler,
    /// Outgoing text not yet sent (multi-PDU requests).
    out_rest: Bytes,
    /// Transit/NSG for the last segment of `out_rest`.
    out_transit: Option<Stage>,
    rounds: u32,
    first_response: bool,
}

enum Phase {
    Connecting,
    Login(Box<Login>),
    Full,
    Waiting { until: Instant },
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
    /// Internal task (keepalive ping, target-requested logout,
    /// renegotiation): completes without an event.
    internal: bool,
    /// Order of submission, for reissue after recovery.
    seq: u64,
}

struct OutPdu {
    header: Header,
    ahs: Vec<Ahs>,
    data: Bytes,
    digests: Digests,
    /// Data-Out: the task it belongs to (skipped once the task is gone) and
    /// whether it ends an R2T sequence.
    data_out: Option<(u32, bool)>,
    /// A non-immediate command holding a CmdSN.
    numbered: bool,
}

/// The initiator side of one iSCSI session (one connection, CID from the
/// configuration).
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    logged_in_once: bool,
    /// Logins started on this session (recovery and redirects add more).
    logins: u32,
    decoder: PduDecoder,
    tx_digests: Digests,
    window: CmdWindow,
    exp_stat_sn: Serial,
    /// StatSNs received ahead of ExpStatSN: bit k is ExpStatSN + 1 + k.
    stat_sn_ahead: u64,
    tsih: u16,
    negotiated: Option<Negotiated>,
    tasks: TaskTable<Task>,
    next_seq: u64,
    /// Non-immediate commands waiting for the CmdSN window.
    pending: VecDeque<u32>,
    urgent: VecDeque<OutPdu>,
    tx: VecDeque<OutPdu>,
    queued_numbered: u32,
    events: VecDeque<Event>,
    scratch: BytesMut,
    // Redirection and recovery.
    portal: Option<Portal>,
    permanent_portal: Option<Portal>,
    redirects: u8,
    recovery_attempt: u32,
    time2wait: Option<u16>,
    // Timers.
    login_deadline: Option<Instant>,
    last_rx: Instant,
    keepalive_task: Option<u32>,
    ping_deadline: Option<Instant>,
    logout_deadline: Option<Instant>,
    /// Logout task waiting for tasks to drain, and the time by which it
    /// must be sent anyway (target-requested logout).
    logout_waiting: Option<(u32, Option<Instant>)>,
    logout_sent: bool,
    next_timeout: Option<Instant>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state())
            .field("tsih", &self.tsih)
            .field("window", &self.window)
            .field("exp_stat_sn", &self.exp_stat_sn)
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
    /// login deadline (which covers the TCP connect).
    pub fn new(config: SessionConfig, now: Instant) -> Session {
        let initial = Serial(config.initial_cmd_sn);
        let mut s = Session {
            decoder: PduDecoder::new(DecoderConfig {
                digests: Digests::NONE,
                max_data_segment_length: LOGIN_MRDSL,
            }),
            phase: Phase::Connecting,
            logged_in_once: false,
            logins: 0,
            tx_digests: Digests::NONE,
            window: CmdWindow::new(initial),
            exp_stat_sn: Serial(0),
            stat_sn_ahead: 0,
            tsih: 0,
            negotiated: None,
            tasks: TaskTable::new(),
            next_seq: 0,
            pending: VecDeque::new(),
            urgent: VecDeque::new(),
            tx: VecDeque::new(),
            queued_numbered: 0,
            events: VecDeque::new(),
            scratch: BytesMut::with_capacity(128),
            portal: None,
            permanent_portal: None,
            redirects: 0,
            recovery_attempt: 0,
            time2wait: None,
            login_deadline: Some(later(now, config.login_timeout)),
            last_rx: now,
            keepalive_task: None,
            ping_deadline: None,
            logout_deadline: None,
            logout_waiting: None,
            logout_sent: false,
            next_timeout: None,
            cfg: config,
        };
        s.events.push_back(Event::Connect { portal: None });
        s.update_timer();
        s
    }

    // ------------------------------------------------------------------
    // (A) getters
    // ------------------------------------------------------------------

    /// The session's state.
    pub fn state(&self) -> SessionState {
        match &self.phase {
            Phase::Connecting => SessionState::Connecting,
            Phase::Login(_) => SessionState::LoggingIn,
            Phase::Full if self.logout_waiting.is_some() || self.logout_sent => {
                SessionState::LoggingOut
            }
            Phase::Full => SessionState::LoggedIn,
            Phase::Waiting { .. } => SessionState::Recovering,
            Phase::Closed => SessionState::Closed,
        }
    }

    /// Whether the session is in Full Feature Phase.
    pub fn is_logged_in(&self) -> bool {
        matches!(self.phase, Phase::Full)
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
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

    /// The ExpStatSN the next PDU will carry.
    pub fn exp_stat_sn(&self) -> Serial {
        self.exp_stat_sn
    }

    /// The TSIH (0 before the leading login completes).
    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    /// The ISID.
    pub fn isid(&self) -> w::Isid {
        self.cfg.isid
    }

    /// The connection ID.
    pub fn cid(&self) -> u16 {
        self.cfg.cid
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
        let (Phase::Full, Some(n)) = (&self.phase, self.negotiated.as_ref()) else {
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
            let at = least[..len].partition_point(|&m| m <= e);
            let end = len.min(k - 1);
            least.copy_within(at..end, at + 1);
            if let Some(slot) = least.get_mut(at) {
                *slot = e;
            }
            len = (len + 1).min(k);
        }
        ExpectedInput {
            tasks: open,
            bytes: least[..len]
                .iter()
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
    pub fn target_portal(&self) -> Option<&Portal> {
        self.portal.as_ref()
    }

    /// The longest PDU the receive side accepts now (BHS, largest AHS,
    /// digests and our MaxRecvDataSegmentLength): a driver's receive buffer
    /// never has to hold more than this plus one read.
    pub fn max_recv_pdu_len(&self) -> usize {
        self.decoder.max_pdu_len()
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    // ------------------------------------------------------------------
    // (D) outputs
    // ------------------------------------------------------------------

    /// The next PDU to send, encoded. ExpStatSN is stamped now, so it is
    /// always the latest.
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        loop {
            let out = match self.urgent.pop_front() {
                Some(o) => o,
                None => self.tx.pop_front()?,
            };
            if out.numbered {
                self.queued_numbered = self.queued_numbered.saturating_sub(1);
            }
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
            let mut header = out.header;
            let exp = self.exp_stat_sn;
            // RFC 7143 section 4.2.2.1: an immediate command carries "the
            // current CmdSN", the number of the next non-immediate command
            // not yet sent.
            let current = self.window.cmd_sn().minus(self.queued_numbered);
            match &mut header {
                Header::NopOut(h) => {
                    h.exp_stat_sn = exp;
                    h.cmd_sn = current;
                }
                Header::ScsiCommand(h) => {
                    h.exp_stat_sn = exp;
                    if h.immediate {
                        h.cmd_sn = current;
                    }
                }
                Header::TaskMgmtRequest(h) => {
                    h.exp_stat_sn = exp;
                    h.cmd_sn = current;
                }
                Header::LoginRequest(h) => h.exp_stat_sn = exp,
                Header::TextRequest(h) => h.exp_stat_sn = exp,
                Header::DataOut(h) => h.exp_stat_sn = exp,
                Header::LogoutRequest(h) => {
                    h.exp_stat_sn = exp;
                    h.cmd_sn = current;
                }
                Header::SnackRequest(h) => h.exp_stat_sn = exp,
                _ => {}
            }
            let Ok(len) = u32::try_from(out.data.len()) else {
                continue;
            };
            self.scratch.clear();
            if encode_header(&mut self.scratch, &header, &out.ahs, len, out.digests).is_err() {
                // Only oversize segments fail, and submit() refuses those.
                continue;
            }
            let trailer = data_trailer(&out.data, out.digests);
            return Some(Transmit::new(&self.scratch, out.data, trailer));
        }
    }

    /// The earliest deadline, cached: call `handle_timeout` then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether PDUs wait in `poll_transmit`.
    pub fn has_transmit(&self) -> bool {
        !self.urgent.is_empty() || !self.tx.is_empty()
    }

    // ------------------------------------------------------------------
    // (B) inputs
    // ------------------------------------------------------------------

    /// The TCP connection asked for by `Event::Connect` is up: start the
    /// login.
    pub fn handle_connected(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Connecting) {
            return;
        }
        tracing::debug!(target: "iscsi::login", cid = self.cfg.cid, "connected; login starts");
        match self.start_login() {
            Ok(login) => {
                self.phase = Phase::Login(login);
                self.last_rx = now;
            }
            Err(e) => self.fail_closed(e),
        }
        self.update_timer();
    }

    /// Bytes arrived. Whole PDUs are consumed from `buf`; a partial PDU is
    /// left for the next call. After a connection failure the buffer is
    /// cleared (its bytes belong to the dead connection).
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        loop {
            if !matches!(self.phase, Phase::Login(_) | Phase::Full) {
                break;
            }
            match self.decoder.decode(buf) {
                Ok(Some(pdu)) => {
                    self.last_rx = now;
                    self.ping_deadline = None;
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
                            self.last_rx = now;
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

    /// A deadline passed (call at or after `poll_timeout()`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Waiting { until } = self.phase {
            if now >= until {
                self.phase = Phase::Connecting;
                self.login_deadline = Some(later(now, self.cfg.login_timeout));
                self.portal = self.permanent_portal.clone();
                self.events.push_back(Event::Connect {
                    portal: self.portal.clone(),
                });
            }
        }
        if self.login_deadline.is_some_and(|d| now >= d)
            && matches!(self.phase, Phase::Connecting | Phase::Login(_))
        {
            self.login_deadline = None;
            self.fail_connection(now, ConnectionError::TimedOut(TimerKind::Login));
        }
        if self.logout_deadline.is_some_and(|d| now >= d) {
            self.logout_deadline = None;
            self.fail_closed(ConnectionError::TimedOut(TimerKind::Logout));
        }
        if let Some((itt, Some(d))) = self.logout_waiting {
            if now >= d && self.is_logged_in() {
                // RFC 7143 section 11.9.1 (AsyncEvent 1): log out "no later
                // than Parameter3 seconds": stop waiting for tasks.
                self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
                self.send_logout(now, itt);
            }
        }
        if self.is_logged_in() {
            if self.ping_deadline.is_some_and(|d| now >= d) {
                self.ping_deadline = None;
                self.fail_connection(now, ConnectionError::TimedOut(TimerKind::Keepalive));
            } else if let Some(ka) = self.cfg.keepalive {
                if self.ping_deadline.is_none() && now >= later(self.last_rx, ka.interval) {
                    self.send_keepalive(now, ka.timeout);
                }
            }
        }
        self.after_action(now);
    }

    /// The TCP connection closed or failed.
    pub fn handle_closed(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed | Phase::Waiting { .. } => {}
            _ => self.fail_connection(now, ConnectionError::Closed),
        }
        self.after_action(now);
    }

    // ------------------------------------------------------------------
    // (C) app actions
    // ------------------------------------------------------------------

    fn check_actionable(&self) -> Result<(), UsageError> {
        match self.phase {
            Phase::Closed => Err(UsageError::Closed),
            _ if self.logout_waiting.is_some() || self.logout_sent => Err(UsageError::LoggingOut),
            Phase::Full => Ok(()),
            // During recovery new work queues and is issued after relogin.
            Phase::Waiting { .. } | Phase::Connecting | Phase::Login(_) if self.logged_in_once => {
                Ok(())
            }
            _ => Err(UsageError::NotLoggedIn),
        }
    }

    fn new_task(&mut self, kind: Kind, internal: bool) -> Result<u32, UsageError> {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.tasks
            .insert(Task {
                kind,
                cmd_sn: None,
                internal,
                seq,
            })
            .ok_or(UsageError::TooManyTasks)
    }

    /// Submits a SCSI command. It is sent when the CmdSN window allows
    /// (RFC 7143 section 4.2.2.1); until then it queues.
    pub fn submit(&mut self, now: Instant, cmd: ScsiCommand) -> Result<TaskId, UsageError> {
        self.check_actionable()?;
        if self.cfg.is_discovery() {
            return Err(UsageError::DiscoverySession);
        }
        if cmd.cdb.is_empty() || cmd.cdb.len() > MAX_CDB_LEN {
            return Err(UsageError::InvalidCommand("CDB must be 1 to 260 bytes"));
        }
        if cmd
            .data_out
            .as_ref()
            .is_some_and(|d| u32::try_from(d.len()).is_err())
        {
            return Err(UsageError::InvalidCommand("data_out longer than 2^32 - 1"));
        }
        let itt = self.new_task(
            Kind::Scsi(ScsiTask {
                cmd,
                next_data_sn: Serial(0),
                read_bytes: 0,
                next_r2t_sn: Serial(0),
                outstanding_r2t: 0,
            }),
            false,
        )?;
        self.pending.push_back(itt);
        self.after_action(now);
        Ok(TaskId(itt))
    }

    /// ABORT TASK for `task` (RFC 7143 section 11.5.1), sent as an
    /// immediate command with the task's RefCmdSN. Returns the id of the
    /// task management task. A command still queued for the window is
    /// aborted locally.
    pub fn abort_task(&mut self, now: Instant, task: TaskId) -> Result<TaskId, UsageError> {
        self.check_actionable()?;
        let (lun, ref_cmd_sn, exp_data_sn) = match self.tasks.get(task.0) {
            Some(Task {
                kind: Kind::Scsi(s),
                cmd_sn,
                internal: false,
                ..
            }) => (s.cmd.lun, *cmd_sn, s.next_data_sn),
            Some(_) => return Err(UsageError::NotAbortable(task)),
            None => return Err(UsageError::UnknownTask(task)),
        };
        let function = w::TmfFunction::AbortTask;
        let tmf = self.new_task(
            Kind::Tmf {
                function,
                affected: Vec::new(),
            },
            false,
        )?;
        match ref_cmd_sn {
            None => {
                // Never sent: nothing to ask the target.
                self.pending.retain(|&i| i != task.0);
                self.complete(task.0, TaskOutcome::Failed(TaskError::Aborted(function)));
                self.complete(
                    tmf,
                    TaskOutcome::TaskManagement(w::TmfResponse::FunctionComplete),
                );
            }
            Some(ref_cmd_sn) if self.is_logged_in() => {
                if let Some(Task {
                    kind: Kind::Tmf { affected, .. },
                    ..
                }) = self.tasks.get_mut(tmf)
                {
                    affected.push(task.0);
                }
                self.send_tmf(tmf, function, lun, task.0, ref_cmd_sn, exp_data_sn);
            }
            Some(_) => {
                let _ = self.tasks.remove(tmf);
                return Err(UsageError::NotLoggedIn);
            }
        }
        self.after_action(now);
        Ok(TaskId(tmf))
    }

    /// A task management function other than ABORT TASK (RFC 7143 section
    /// 11.5.1): ABORT TASK SET, CLEAR ACA, CLEAR TASK SET, LOGICAL UNIT
    /// RESET, TARGET WARM RESET, TARGET COLD RESET. When the target answers
    /// "Function complete", every affected task completes with
    /// [`TaskError::Aborted`] (exactly once: a task that completed first
    /// keeps its own outcome).
    pub fn task_management(
        &mut self,
        now: Instant,
        lun: u64,
        function: w::TmfFunction,
    ) -> Result<TaskId, UsageError> {
        self.check_actionable()?;
        if self.cfg.is_discovery() {
            return Err(UsageError::DiscoverySession);
        }
        if !self.is_logged_in() {
            return Err(UsageError::NotLoggedIn);
        }
        use w::TmfFunction as F;
        let scope_all = match function {
            F::AbortTaskSet | F::ClearTaskSet | F::LogicalUnitReset => false,
            F::TargetWarmReset | F::TargetColdReset => true,
            F::ClearAca => false,
            F::AbortTask => {
                return Err(UsageError::InvalidCommand("use abort_task for ABORT TASK"))
            }
            _ => {
                return Err(UsageError::InvalidCommand(
                    "unsupported task management function at ErrorRecoveryLevel 0",
                ))
            }
        };
        let mut affected = Vec::new();
        let mut unsent = Vec::new();
        if function != F::ClearAca {
            for (itt, t) in self.tasks.iter() {
                if let Kind::Scsi(s) = &t.kind {
                    if !t.internal && (scope_all || s.cmd.lun == lun) {
                        if t.cmd_sn.is_some() {
                            affected.push(itt);
                        } else {
                            unsent.push(itt);
                        }
                    }
                }
            }
        }
        let tmf = self.new_task(Kind::Tmf { function, affected }, false)?;
        for itt in unsent {
            self.pending.retain(|&i| i != itt);
            self.complete(itt, TaskOutcome::Failed(TaskError::Aborted(function)));
        }
        let tmf_lun = if scope_all { 0 } else { lun };
        self.send_tmf(
            tmf,
            function,
            tmf_lun,
            RESERVED_TAG,
            self.window.cmd_sn(),
            Serial(0),
        );
        self.after_action(now);
        Ok(TaskId(tmf))
    }

    /// A NOP-Out ping with a real ITT (immediate). Completes with
    /// [`TaskOutcome::Pong`] carrying the echoed data.
    pub fn nop_ping(&mut self, now: Instant, data: Bytes) -> Result<TaskId, UsageError> {
        self.check_actionable()?;
        if !self.is_logged_in() {
            return Err(UsageError::NotLoggedIn);
        }
        let limit = self.target_mrdsl();
        if data.len() > limit as usize {
            return Err(UsageError::DataTooLong {
                len: data.len(),
                limit,
            });
        }
        let itt = self.new_task(Kind::Nop, false)?;
        self.send_ping(itt, data);
        self.after_action(now);
        Ok(TaskId(itt))
    }

    /// SendTargets (RFC 7143 section 13.3): `All` in a discovery session,
    /// this session's TargetName otherwise. Completes with
    /// [`TaskOutcome::Targets`].
    pub fn send_targets(&mut self, now: Instant) -> Result<TaskId, UsageError> {
        self.check_actionable()?;
        // RFC 7143 section 13.3: "The value All can be used only in
        // discovery session."
        let value = match &self.cfg.target_name {
            None => "All".to_owned(),
            Some(t) => t.clone(),
        };
        let mut body = Vec::new();
        text::encode_pair("SendTargets", &value, &mut body)
            .map_err(|_| UsageError::InvalidCommand("target name not encodable"))?;
        let itt = self.new_task(
            Kind::Text(Box::new(TextTask {
                request: Bytes::from(body),
                assembler: TextAssembler::with_limit(self.cfg.max_text_len),
                ttt: RESERVED_TAG,
                started: false,
            })),
            false,
        )?;
        self.pending.push_back(itt);
        self.after_action(now);
        Ok(TaskId(itt))
    }

    /// Logs the session out (RFC 7143 section 11.14, reason "close the
    /// session"). With [`LogoutMode::WaitForTasks`] new tasks are refused
    /// and the Logout Request goes out once the outstanding ones complete;
    /// with [`LogoutMode::AbortTasks`] they complete with
    /// [`TaskError::LoggedOut`] and the request goes out now. The logout
    /// task completes with [`TaskOutcome::LoggedOut`], then
    /// `Event::Closed(None)` follows.
    pub fn logout(&mut self, now: Instant, mode: LogoutMode) -> Result<TaskId, UsageError> {
        match self.phase {
            Phase::Closed => return Err(UsageError::Closed),
            Phase::Full => {}
            _ => return Err(UsageError::NotLoggedIn),
        }
        if let Some((itt, _)) = self.logout_waiting {
            // A target-requested logout is pending: adopt it.
            if let Some(t) = self.tasks.get_mut(itt) {
                t.internal = false;
            }
            if mode == LogoutMode::AbortTasks {
                self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
            }
            self.after_action(now);
            return Ok(TaskId(itt));
        }
        if self.logout_sent {
            return Err(UsageError::LoggingOut);
        }
        let itt = self.new_task(Kind::Logout, false)?;
        if mode == LogoutMode::AbortTasks {
            self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
        }
        self.logout_waiting = Some((itt, None));
        self.after_action(now);
        Ok(TaskId(itt))
    }

    // ------------------------------------------------------------------
    // internals: plumbing
    // ------------------------------------------------------------------

    fn target_mrdsl(&self) -> u32 {
        self.negotiated
            .as_ref()
            .map(|n| n.target_max_recv_data_segment_length)
            .unwrap_or(LOGIN_MRDSL)
            .max(512)
    }

    fn push(&mut self, header: impl Into<Header>, ahs: Vec<Ahs>, data: Bytes, numbered: bool) {
        self.tx.push_back(OutPdu {
            header: header.into(),
            ahs,
            data,
            digests: self.tx_digests,
            data_out: None,
            numbered,
        });
        if numbered {
            self.queued_numbered = self.queued_numbered.saturating_add(1);
        }
    }

    fn complete(&mut self, itt: u32, outcome: TaskOutcome) {
        if let Some(task) = self.tasks.remove(itt) {
            if self.keepalive_task == Some(itt) {
                self.keepalive_task = None;
            }
            if !task.internal {
                self.events.push_back(Event::Complete {
                    task: TaskId(itt),
                    outcome,
                });
            }
        }
    }

    /// Completes every application task except `keep` with `err`.
    fn fail_user_tasks(&mut self, err: TaskError, keep: Option<u32>) {
        let mut tags: Vec<(u64, u32)> = self
            .tasks
            .iter()
            .filter(|(itt, t)| Some(*itt) != keep && !matches!(t.kind, Kind::Logout))
            .map(|(itt, t)| (t.seq, itt))
            .collect();
        tags.sort_unstable();
        // One pass over the queue for all of them (a pass per task was
        // quadratic in the queue length: found by the fuzzer as a slow unit).
        let tasks = &self.tasks;
        self.pending.retain(|&i| match tasks.get(i) {
            Some(t) => Some(i) == keep || matches!(t.kind, Kind::Logout),
            None => true,
        });
        for (_, itt) in tags {
            self.complete(itt, TaskOutcome::Failed(err.clone()));
        }
    }

    fn after_action(&mut self, now: Instant) {
        if self.is_logged_in() {
            self.dispatch_pending();
            self.maybe_send_logout(now);
        }
        self.update_timer();
    }

    fn update_timer(&mut self) {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        match &self.phase {
            Phase::Connecting | Phase::Login(_) => consider(self.login_deadline),
            Phase::Waiting { until } => consider(Some(*until)),
            Phase::Full => {
                consider(self.logout_deadline);
                if let Some((_, d)) = self.logout_waiting {
                    consider(d);
                }
                if self.ping_deadline.is_some() {
                    consider(self.ping_deadline);
                } else if let Some(ka) = self.cfg.keepalive {
                    consider(Some(later(self.last_rx, ka.interval)));
                }
            }
            Phase::Closed => {}
        }
        self.next_timeout = next;
    }

    /// The session is over for good.
    fn fail_closed(&mut self, err: ConnectionError) {
        if matches!(self.phase, Phase::Closed) {
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
        self.urgent.clear();
        self.tx.clear();
        self.queued_numbered = 0;
        self.login_deadline = None;
        self.ping_deadline = None;
        self.logout_deadline = None;
        self.logout_waiting = None;
        self.next_timeout = None;
    }

    /// The connection failed: recover (RFC 7143 section 7.1.5, session
    /// recovery at ErrorRecoveryLevel 0) or close.
    fn fail_connection(&mut self, now: Instant, err: ConnectionError) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        let recovery = self.cfg.recovery;
        let can_recover = self.logged_in_once && !self.logout_sent && self.logout_waiting.is_none();
        let Some(rec) = recovery.filter(|_| can_recover) else {
            self.fail_closed(err);
            return;
        };
        if self.recovery_attempt >= rec.max_attempts {
            let attempts = self.recovery_attempt;
            self.fail_closed(ConnectionError::RecoveryFailed {
                attempts,
                last: Box::new(err),
            });
            return;
        }
        self.recovery_attempt = self.recovery_attempt.saturating_add(1);
        let attempt = self.recovery_attempt;
        // Reset the connection state.
        self.urgent.clear();
        self.tx.clear();
        self.queued_numbered = 0;
        self.decoder = PduDecoder::new(DecoderConfig {
            digests: Digests::NONE,
            max_data_segment_length: LOGIN_MRDSL,
        });
        self.tx_digests = Digests::NONE;
        self.ping_deadline = None;
        self.login_deadline = None;
        // Tasks: SCSI commands and text requests are reissued in their
        // original order with new CmdSNs; pings and task management died
        // with the connection.
        let mut reissue: Vec<(u64, u32)> = Vec::new();
        let mut fail: Vec<u32> = Vec::new();
        for (itt, t) in self.tasks.iter_mut() {
            match &mut t.kind {
                Kind::Scsi(s) => {
                    s.next_data_sn = Serial(0);
                    s.read_bytes = 0;
                    s.next_r2t_sn = Serial(0);
                    s.outstanding_r2t = 0;
                    t.cmd_sn = None;
                    reissue.push((t.seq, itt));
                }
                Kind::Text(tt) => {
                    tt.assembler.reset();
                    tt.ttt = RESERVED_TAG;
                    tt.started = false;
                    t.cmd_sn = None;
                    reissue.push((t.seq, itt));
                }
                _ => fail.push(itt),
            }
        }
        let failed = fail.len();
        for itt in fail {
            self.complete(itt, TaskOutcome::Failed(TaskError::ConnectionLost));
        }
        reissue.sort_unstable();
        self.pending = reissue.into_iter().map(|(_, i)| i).collect();
        let t2w = self
            .time2wait
            .take()
            .or(self.negotiated.as_ref().map(|n| n.default_time2wait))
            .unwrap_or(2);
        let shift = attempt.saturating_sub(1).min(16);
        let backoff = rec
            .initial_backoff
            .saturating_mul(1u32 << shift)
            .min(rec.max_backoff);
        // RFC 7143 section 13.15 (DefaultTime2Wait): the minimum time to
        // wait before attempting a new connection after a failure.
        let after = backoff.max(Duration::from_secs(u64::from(t2w)));
        self.phase = Phase::Waiting {
            until: later(now, after),
        };
        tracing::info!(target: "iscsi::recovery", attempt, ?after, cause = %err, reissued = self.pending.len(), failed, "connection lost; reconnecting for session reinstatement (RFC 7143 section 6.3.5)");
        self.events.push_back(Event::Recovering {
            attempt,
            after,
            cause: err,
        });
    }

    // ------------------------------------------------------------------
    // login
    // ------------------------------------------------------------------

    fn start_login(&mut self) -> Result<Box<Login>, ConnectionError> {
        let cfg = &self.cfg;
        let session_type = if cfg.is_discovery() {
            SessionType::Discovery
        } else {
            SessionType::Normal
        };
        let mut icfg = InitiatorConfig::new(cfg.initiator_name.clone(), session_type);
        icfg.initiator_alias = cfg.initiator_alias.clone();
        icfg.target_name = cfg.target_name.clone();
        icfg.params = cfg.operational.clone();
        // RFC 7143 section 13.20: at level 0 the initiator only recovers
        // by session recovery; offer that honestly.
        icfg.params.error_recovery_level = 0;
        let chap = match &cfg.auth {
            Auth::None => {
                icfg.auth_methods = vec![AuthMethod::None];
                None
            }
            Auth::Chap {
                user,
                secret,
                algorithms,
                mutual,
            } => {
                // One-way CHAP also offers None (the target may not ask for
                // authentication); mutual CHAP insists on authenticating the
                // target, so it offers CHAP only.
                icfg.auth_methods = if mutual.is_some() {
                    vec![AuthMethod::Chap]
                } else {
                    vec![AuthMethod::Chap, AuthMethod::None]
                };
                let mut c =
                    InitiatorChapConfig::new(ChapCredentials::new(user.clone(), secret.clone()));
                c.algorithms = algorithms.clone();
                c.mutual = mutual
                    .as_ref()
                    .map(|(u, s)| ChapCredentials::new(u.clone(), s.clone()));
                Some(InitiatorChap::new(c).map_err(io)?)
            }
        };
        let mut neg = InitiatorNegotiator::new(icfg).map_err(io)?;
        // Connection-level reset.
        self.exp_stat_sn = Serial(0);
        self.stat_sn_ahead = 0;
        self.tsih = 0;
        self.decoder = PduDecoder::new(DecoderConfig {
            digests: Digests::NONE,
            max_data_segment_length: LOGIN_MRDSL,
        });
        self.tx_digests = Digests::NONE;
        let mut pairs = neg.login_keys();
        let stage = if chap.is_some() {
            pairs.extend(neg.security_offer());
            Stage::Security
        } else {
            pairs.extend(neg.operational_offer());
            Stage::Operational
        };
        let mut body = Vec::new();
        text::encode_pairs(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut body,
        )
        .map_err(io)?;
        let cmd_sn = self.window.cmd_sn();
        // The login ITT: any value but the reserved one; the task table
        // is not involved (no other task exists during the login).
        let itt = self.next_seq as u32 & 0x7fff_ffff;
        self.next_seq = self.next_seq.wrapping_add(1);
        let login_no = self.logins;
        self.logins = self.logins.wrapping_add(1);
        let mut login = Box::new(Login {
            neg,
            chap,
            chap_step: ChapStep::Method,
            chap_challenge: fresh_challenge(&self.cfg.chap_challenge, login_no),
            stage,
            itt,
            cmd_sn,
            assembler: TextAssembler::with_limit(self.cfg.max_text_len),
            out_rest: Bytes::new(),
            out_transit: None,
            rounds: 0,
            first_response: true,
        });
        let next = if stage == Stage::Security {
            Stage::Operational
        } else {
            Stage::FullFeature
        };
        self.send_login_text(&mut login, Bytes::from(body), Some(next));
        Ok(login)
    }

    /// Queues `body` as one or more Login Requests (RFC 7143 section 6.1:
    /// text longer than the target's MaxRecvDataSegmentLength is split with
    /// C=1 on all but the last PDU, and a PDU with C=1 "MUST" have T=0).
    fn send_login_text(&mut self, login: &mut Login, body: Bytes, transit: Option<Stage>) {
        tracing::trace!(target: "iscsi::login", stage = ?login.stage, keys = %crate::tracefmt::TextKeys(&body), "login request");
        let max = LOGIN_MRDSL as usize;
        let (seg, rest) = if body.len() > max {
            (body.slice(..max), body.slice(max..))
        } else {
            (body, Bytes::new())
        };
        let cont = !rest.is_empty();
        login.out_rest = rest;
        login.out_transit = transit;
        let (t, nsg) = match transit {
            Some(nsg) if !cont => (true, nsg),
            _ => (false, login.stage),
        };
        let req = w::LoginRequest {
            transit: t,
            cont,
            csg: login.stage,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: self.cfg.isid,
            // RFC 7143 section 6.3.5: session reinstatement uses the same
            // ISID with TSIH 0 (a new session replacing the failed one).
            tsih: 0,
            itt: login.itt,
            cid: self.cfg.cid,
            cmd_sn: login.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.tx.push_back(OutPdu {
            header: req.into(),
            ahs: Vec::new(),
            data: seg,
            digests: Digests::NONE,
            data_out: None,
            numbered: false,
        });
    }

    fn on_login_pdu(&mut self, now: Instant, pdu: Pdu) -> Result<(), ConnectionError> {
        let Phase::Login(mut login) = core::mem::replace(&mut self.phase, Phase::Connecting) else {
            return Ok(());
        };
        let r = self.on_login_response(now, &mut login, pdu);
        // on_login_response may have moved the phase on (Full, Connecting
        // for a redirect, Closed); restore Login only if it did not.
        if matches!(self.phase, Phase::Connecting) && r.as_ref().is_ok_and(|done| !done) {
            self.phase = Phase::Login(login);
        }
        r.map(|_| ())
    }

    /// Returns Ok(true) when the login phase ended (success or redirect).
    fn on_login_response(
        &mut self,
        now: Instant,
        login: &mut Login,
        pdu: Pdu,
    ) -> Result<bool, ConnectionError> {
        // RFC 7143 section 6.1 (Login Phase): only Login Responses may
        // arrive during the login.
        let Header::LoginResponse(resp) = pdu.header else {
            return Err(violation(
                "PDU other than Login Response during the login phase",
                "6.3",
            ));
        };
        login.rounds = login.rounds.saturating_add(1);
        if login.rounds > MAX_LOGIN_ROUNDS {
            return Err(violation("login does not converge", "6.3"));
        }
        // The status is read first: RFC 7143 section 11.13.5 says the other
        // fields of a failed login are not meaningful ("The numbering fields
        // (StatSN, ExpCmdSN, MaxCmdSN) are only valid if Status-Class is
        // 0"), and real targets (tgtd) send a reject with a zero ISID.
        let status = LoginStatus::from_raw(resp.status_class, resp.status_detail);
        tracing::debug!(target: "iscsi::login", stage = ?resp.csg, transit = resp.transit, next = ?resp.nsg, %status, "login response");
        tracing::trace!(target: "iscsi::login", keys = %crate::tracefmt::TextKeys(&pdu.data), "login response keys");
        if status.class() == StatusClass::Success {
            // RFC 7143 section 11.13: the target echoes the Initiator Task Tag.
            if resp.itt != login.itt {
                return Err(violation("Login Response with a foreign ITT", "11.13"));
            }
            // RFC 7143 section 11.12.5: ISID is the initiator's, echoed.
            if resp.isid != self.cfg.isid {
                return Err(violation("Login Response with a foreign ISID", "11.13"));
            }
            // RFC 7143 section 11.13.4 / 4.2.2.2: StatSN starts with the login
            // response; ExpStatSN acknowledges it.
            self.exp_stat_sn = resp.stat_sn.next();
            self.stat_sn_ahead = 0;
        }
        match status.class() {
            StatusClass::Success => {}
            StatusClass::Redirection => {
                return self.on_redirect(now, status, &pdu.data).map(|_| true)
            }
            class => {
                // RFC 7143 section 11.13.5: a status class other than 0 or
                // 1 ends the login; target errors (class 3) are retried by
                // session recovery when it is configured.
                tracing::info!(target: "iscsi::login", %status, ?class, detail = resp.status_detail, "login refused by the target");
                let err = ConnectionError::LoginFailed {
                    class,
                    detail: resp.status_detail,
                    status,
                };
                if class == StatusClass::TargetError && self.logged_in_once {
                    self.fail_connection(now, err);
                } else {
                    self.fail_closed(err);
                }
                return Ok(true);
            }
        }
        // RFC 7143 section 11.13.2: "Version-active ... The target MUST use
        // the value presented by the initiator" range: we offer only 0.
        if resp.version_active != 0 {
            let e = ConnectionError::LoginFailed {
                class: StatusClass::InitiatorError,
                detail: 5,
                status: LoginStatus::UnsupportedVersion,
            };
            return Err(e);
        }
        // RFC 7143 section 11.12.3 (CSG): the response stage must be the
        // stage of the request.
        if resp.csg != login.stage {
            return Err(violation(
                "Login Response CSG differs from the request",
                "11.13",
            ));
        }
        login.first_response = false;
        // Our multi-PDU request continues: the target answers each C=1 PDU
        // with an empty response (RFC 7143 section 6.1).
        if !login.out_rest.is_empty() {
            let rest = core::mem::take(&mut login.out_rest);
            let transit = login.out_transit;
            self.send_login_text(login, rest, transit);
            return Ok(false);
        }
        // RFC 7143 section 11.13.7: "If the C bit is set to 1, the T bit
        // MUST be 0"; the initiator answers with an empty Login Request to
        // get the rest of the text.
        if resp.cont {
            if resp.transit {
                return Err(violation("Login Response with both C and T set", "11.13.7"));
            }
            login.assembler.push(&pdu.data, true).map_err(io)?;
            self.send_login_text(login, Bytes::new(), None);
            return Ok(false);
        }
        let pairs = login
            .assembler
            .push(&pdu.data, false)
            .map_err(io)?
            .unwrap_or_default();
        let replies = login.neg.handle_response(&pairs).map_err(io)?;
        let mut out: Vec<(String, String)> = replies;
        let finished = resp.transit && resp.nsg == Stage::FullFeature;
        match login.stage {
            Stage::Security => {
                let method = login.neg.auth_method();
                let chap_needed = method == Some(AuthMethod::Chap);
                if let Some(chap) = login.chap.as_mut() {
                    if chap_needed {
                        match login.chap_step {
                            ChapStep::Method => {
                                out.extend(chap.offer());
                                login.chap_step = ChapStep::Offered;
                            }
                            ChapStep::Offered => {
                                let ch = &login.chap_challenge;
                                let mutual = if chap.is_mutual() {
                                    let id = ch.first().copied().unwrap_or(0);
                                    Some((id, &ch[..]))
                                } else {
                                    None
                                };
                                out.extend(chap.respond(&pairs, mutual).map_err(io)?);
                                login.chap_step = ChapStep::Responded;
                            }
                            ChapStep::Responded => {
                                // RFC 7143 section 12.1.3: "If target
                                // authentication fails, the initiator MUST
                                // close the connection".
                                if chap.is_mutual() && !chap.is_complete() {
                                    chap.verify_target(&pairs).map_err(io)?;
                                }
                                login.chap_step = ChapStep::Done;
                            }
                            ChapStep::Done => {}
                        }
                    } else if method.is_some() && chap.is_mutual() {
                        return Err(io(crate::login::chap::ChapError::MutualChallengeMissing));
                    }
                }
                let chap_done = match &login.chap {
                    Some(c) if chap_needed => c.is_complete(),
                    _ => true,
                };
                if resp.transit {
                    // RFC 7143 section 12.1.3: a target may only leave the
                    // security stage once authentication completed.
                    if !chap_done {
                        return Err(violation(
                            "target left the security stage before CHAP completed",
                            "12.1.3",
                        ));
                    }
                    if finished {
                        return self.login_complete(now, login, &resp).map(|_| true);
                    }
                    if resp.nsg != Stage::Operational {
                        return Err(violation("invalid NSG in Login Response", "11.12.3"));
                    }
                    login.stage = Stage::Operational;
                    out.extend(login.neg.operational_offer());
                    let body = encode(&out)?;
                    self.send_login_text(login, body, Some(Stage::FullFeature));
                } else {
                    // Ready to transit once authentication is through.
                    let transit = if login.chap_step == ChapStep::Offered
                        || (chap_needed && !chap_done && login.chap_step != ChapStep::Responded)
                    {
                        None
                    } else {
                        Some(Stage::Operational)
                    };
                    let body = encode(&out)?;
                    self.send_login_text(login, body, transit);
                }
                Ok(false)
            }
            _ => {
                if finished {
                    return self.login_complete(now, login, &resp).map(|_| true);
                }
                if resp.transit {
                    return Err(violation("invalid NSG in Login Response", "11.12.3"));
                }
                let body = encode(&out)?;
                self.send_login_text(login, body, Some(Stage::FullFeature));
                Ok(false)
            }
        }
    }

    fn on_redirect(
        &mut self,
        now: Instant,
        status: LoginStatus,
        data: &Bytes,
    ) -> Result<(), ConnectionError> {
        // RFC 7143 section 11.13.5: class 1 "indicates that the initiator
        // must take further action"; the response carries TargetAddress.
        let pairs = text::parse_pairs(data).map_err(io)?;
        let addr = pairs
            .iter()
            .find(|(k, _)| k == "TargetAddress")
            .ok_or_else(|| violation("redirection without TargetAddress", "11.13.5"))?;
        let portal: Portal = parse_target_address(&addr.1).map_err(io)?.into();
        self.redirects = self.redirects.saturating_add(1);
        if self.redirects > self.cfg.max_redirects {
            let n = self.cfg.max_redirects;
            self.fail_closed(ConnectionError::TooManyRedirects(n));
            return Ok(());
        }
        tracing::info!(target: "iscsi::login", %status, host = %portal.host, port = portal.port, "login redirected; following");
        if status == LoginStatus::TargetMovedPermanently {
            self.permanent_portal = Some(portal.clone());
        }
        self.portal = Some(portal.clone());
        self.phase = Phase::Connecting;
        self.login_deadline = Some(later(now, self.cfg.login_timeout));
        self.tx.clear();
        self.urgent.clear();
        self.events.push_back(Event::Connect {
            portal: Some(portal),
        });
        Ok(())
    }

    fn login_complete(
        &mut self,
        now: Instant,
        login: &mut Login,
        resp: &w::LoginResponse,
    ) -> Result<(), ConnectionError> {
        // Mutual CHAP must be finished before Full Feature Phase.
        if let Some(c) = &login.chap {
            if c.is_mutual() && !c.is_complete() {
                return Err(io(crate::login::chap::ChapError::MutualChallengeMissing));
            }
        }
        let neg = login.neg.finish().map_err(io)?;
        // RFC 7143 section 11.13.3: the final response carries the TSIH;
        // a new session "MUST" get a non-zero one.
        if resp.tsih == 0 {
            return Err(violation("final Login Response with TSIH 0", "11.13.3"));
        }
        self.tsih = resp.tsih;
        // RFC 7143 section 4.2.2.1: the window starts at the login's CmdSN;
        // ExpCmdSN/MaxCmdSN come from the final response (a closed window
        // opens later with a NOP-In or response).
        self.window
            .reset(login.cmd_sn, resp.exp_cmd_sn, resp.max_cmd_sn);
        // RFC 7143 section 13.1: digests start "immediately after the
        // Login Response" with T=1 and NSG=FullFeaturePhase, both ways.
        let digests = Digests {
            header: neg.header_digest,
            data: neg.data_digest,
        };
        self.decoder.set_config(DecoderConfig {
            digests,
            // RFC 7143 section 13.12: our declared MaxRecvDataSegmentLength.
            max_data_segment_length: neg.initiator_max_recv_data_segment_length,
        });
        self.tx_digests = digests;
        // Every key agreed on this connection (RFC 7143 section 13), at
        // info: `iscsi -v` shows it.
        tracing::info!(
            target: "iscsi::login",
            tsih = self.tsih,
            cid = self.cfg.cid,
            reinstated = self.logged_in_once,
            SessionType = ?neg.session_type,
            TargetName = neg.target_name.as_deref().unwrap_or("-"),
            TargetAlias = neg.target_alias.as_deref().unwrap_or("-"),
            TargetPortalGroupTag = ?neg.target_portal_group_tag,
            AuthMethod = ?neg.auth_method,
            HeaderDigest = if neg.header_digest { "CRC32C" } else { "None" },
            DataDigest = if neg.data_digest { "CRC32C" } else { "None" },
            MaxRecvDataSegmentLength.initiator = neg.initiator_max_recv_data_segment_length,
            MaxRecvDataSegmentLength.target = neg.target_max_recv_data_segment_length,
            MaxBurstLength = neg.max_burst_length,
            FirstBurstLength = neg.first_burst_length,
            InitialR2T = neg.initial_r2t,
            ImmediateData = neg.immediate_data,
            MaxOutstandingR2T = neg.max_outstanding_r2t,
            DataPDUInOrder = neg.data_pdu_in_order,
            DataSequenceInOrder = neg.data_sequence_in_order,
            ErrorRecoveryLevel = neg.error_recovery_level,
            DefaultTime2Wait = neg.default_time2wait,
            DefaultTime2Retain = neg.default_time2retain,
            MaxConnections = neg.max_connections,
            iSCSIProtocolLevel = neg.protocol_level,
            TaskReporting = ?neg.task_reporting,
            ExpCmdSN = resp.exp_cmd_sn.0,
            MaxCmdSN = resp.max_cmd_sn.0,
            "logged in"
        );
        self.negotiated = Some(neg);
        self.phase = Phase::Full;
        self.login_deadline = None;
        self.redirects = 0;
        self.last_rx = now;
        self.ping_deadline = None;
        if self.logged_in_once {
            self.recovery_attempt = 0;
            self.events.push_back(Event::Reinstated { tsih: self.tsih });
        } else {
            self.logged_in_once = true;
            self.events.push_back(Event::LoggedIn { tsih: self.tsih });
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // Full Feature Phase: receive
    // ------------------------------------------------------------------

    fn on_pdu(&mut self, now: Instant, pdu: Pdu) -> Result<(), ConnectionError> {
        if matches!(self.phase, Phase::Login(_)) {
            return self.on_login_pdu(now, pdu);
        }
        let Pdu { header, data, .. } = pdu;
        tracing::trace!(target: "iscsi::pdu", ?header, len = data.len(), "received");
        match header {
            Header::NopIn(h) => self.on_nop_in(h, data),
            Header::ScsiResponse(h) => self.on_scsi_response(h, data),
            Header::DataIn(h) => self.on_data_in(h, data),
            Header::R2t(h) => self.on_r2t(h),
            Header::TaskMgmtResponse(h) => {
                self.ack(h.stat_sn)?;
                self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
                if let Some(Task {
                    kind: Kind::Tmf { function, affected },
                    ..
                }) = self.tasks.get_mut(h.itt)
                {
                    let (function, affected) = (*function, core::mem::take(affected));
                    // RFC 7143 section 11.6.1: "Function complete" means the
                    // affected tasks are gone at the target; any that had
                    // not completed yet end here, exactly once.
                    if h.response == w::TmfResponse::FunctionComplete {
                        for itt in affected {
                            self.complete(itt, TaskOutcome::Failed(TaskError::Aborted(function)));
                        }
                    }
                    self.complete(h.itt, TaskOutcome::TaskManagement(h.response));
                }
                Ok(())
            }
            Header::TextResponse(h) => self.on_text_response(h, data),
            Header::LogoutResponse(h) => {
                self.ack(h.stat_sn)?;
                self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
                if matches!(
                    self.tasks.get(h.itt),
                    Some(Task {
                        kind: Kind::Logout,
                        ..
                    })
                ) {
                    let result = LogoutResult {
                        response: h.response,
                        time2wait: h.time2wait,
                        time2retain: h.time2retain,
                    };
                    tracing::info!(target: "iscsi::login", response = ?h.response, "logged out");
                    self.complete(h.itt, TaskOutcome::LoggedOut(result));
                    self.fail_user_tasks(TaskError::LoggedOut, None);
                    self.close_quietly();
                    self.events.push_back(Event::Closed(None));
                    Ok(())
                } else {
                    Err(violation(
                        "Logout Response without a Logout Request",
                        "11.15",
                    ))
                }
            }
            Header::AsyncMessage(h) => self.on_async(now, h, data),
            Header::Reject(h) => {
                self.ack(h.stat_sn)?;
                self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
                // RFC 7143 section 11.17: the data segment holds the
                // header of the rejected PDU; its ITT names the task.
                let itt = data
                    .get(16..20)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(RESERVED_TAG);
                let first = data.first().copied().unwrap_or(0);
                let opcode = first & 0x3f;
                let immediate = first & 0x40 != 0;
                // Command PDUs (RFC 7143 section 11.2.1.2): NOP-Out, SCSI
                // Command, Task Management, Text, Logout. Data-Out and
                // SNACK are not.
                let is_command = matches!(opcode, 0x00 | 0x01 | 0x02 | 0x04 | 0x06);
                tracing::warn!(target: "iscsi::session", reason = ?h.reason, opcode, itt, "Reject received (RFC 7143 section 11.17)");
                if itt != RESERVED_TAG && self.tasks.get(itt).is_some() && !is_command {
                    // RFC 7143 section 7.3: "Targets MUST NOT implicitly
                    // terminate an active task by sending a Reject PDU for
                    // any PDU exchanged during the life of the task"; the
                    // initiator "can eventually expect a response". The
                    // task (and its remaining Data-Out) goes on.
                } else if itt != RESERVED_TAG && self.tasks.get(itt).is_some() {
                    if matches!(self.tasks.get(itt).map(|t| &t.kind), Some(Kind::Logout)) {
                        self.logout_sent = false;
                        self.logout_deadline = None;
                    }
                    if !immediate && matches!(opcode, 0x01 | 0x04) {
                        self.plug_cmd_sn_gap(itt);
                    }
                    self.complete(itt, TaskOutcome::Failed(TaskError::Rejected(h.reason)));
                } else {
                    self.events.push_back(Event::Rejected { reason: h.reason });
                }
                Ok(())
            }
            Header::LoginResponse(_) => {
                Err(violation("Login Response in Full Feature Phase", "11.13"))
            }
            // Initiator opcodes from the target: RFC 7143 section 11.2.1.2
            // "targets MUST NOT use initiator opcodes".
            _ => Err(ConnectionError::Protocol(ProtocolError::Violation {
                rule: "initiator opcode sent by the target",
                section: "11.2.1.2",
                reject: Some(w::RejectReason::ProtocolError),
            })),
        }
    }

    /// Acknowledges a status-bearing StatSN (RFC 7143 section 4.2.2.2):
    /// in order it advances ExpStatSN (past any StatSN that arrived early);
    /// an old one is ignored; one up to [`STAT_SN_AHEAD`] ahead is
    /// remembered until the gap before it fills; a larger jump means lost
    /// status, a connection failure at ErrorRecoveryLevel 0.
    fn ack(&mut self, stat_sn: Serial) -> Result<(), ConnectionError> {
        let ahead = stat_sn.0.wrapping_sub(self.exp_stat_sn.0);
        if ahead == 0 {
            self.exp_stat_sn = stat_sn.next();
            // Bit 0 now stands for the new ExpStatSN itself.
            loop {
                let received = self.stat_sn_ahead & 1 != 0;
                self.stat_sn_ahead >>= 1;
                if !received {
                    break;
                }
                self.exp_stat_sn = self.exp_stat_sn.next();
            }
            Ok(())
        } else if stat_sn.precedes(self.exp_stat_sn) {
            Ok(())
        } else if ahead <= STAT_SN_AHEAD {
            self.stat_sn_ahead |= 1u64 << (ahead - 1);
            Ok(())
        } else {
            Err(ConnectionError::Protocol(ProtocolError::StatSnGap {
                expected: self.exp_stat_sn.0,
                received: stat_sn.0,
            }))
        }
    }

    fn on_nop_in(&mut self, h: w::NopIn, data: Bytes) -> Result<(), ConnectionError> {
        if h.itt == RESERVED_TAG {
            // RFC 7143 section 11.19.2: with ITT 0xffffffff the StatSN is
            // "not advanced": a target ping or a window update.
            self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
            if h.ttt != RESERVED_TAG {
                tracing::debug!(target: "iscsi::nop", ttt = h.ttt, len = data.len(), "answering the target's NOP-In ping");
                // RFC 7143 section 11.18.3: the answer to a target ping
                // "MUST" carry ITT 0xffffffff, the NOP-In's TTT and LUN,
                // and (section 11.18.2) echo its data; it goes out as an
                // immediate command right away.
                let limit = self.target_mrdsl() as usize;
                let echo = data.slice(..data.len().min(limit));
                let nop = w::NopOut {
                    immediate: true,
                    lun: h.lun,
                    itt: RESERVED_TAG,
                    ttt: h.ttt,
                    cmd_sn: Serial(0),
                    exp_stat_sn: Serial(0),
                };
                self.urgent.push_back(OutPdu {
                    header: nop.into(),
                    ahs: Vec::new(),
                    data: echo,
                    digests: self.tx_digests,
                    data_out: None,
                    numbered: false,
                });
            }
            return Ok(());
        }
        // A reply to our ping consumes a StatSN (section 11.19.2).
        self.ack(h.stat_sn)?;
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        // RFC 7143 section 11.19.1: a reply carries TTT 0xffffffff.
        match self.tasks.get(h.itt) {
            Some(Task {
                kind: Kind::Nop, ..
            }) => {
                self.complete(h.itt, TaskOutcome::Pong(data));
                Ok(())
            }
            Some(_) => Err(violation(
                "NOP-In answers a task that is not a ping",
                "11.19",
            )),
            None => Ok(()),
        }
    }

    fn scsi_task(&mut self, itt: u32) -> Option<&mut ScsiTask> {
        match self.tasks.get_mut(itt) {
            Some(Task {
                kind: Kind::Scsi(s),
                ..
            }) => Some(s),
            _ => None,
        }
    }

    fn on_scsi_response(&mut self, h: w::ScsiResponse, data: Bytes) -> Result<(), ConnectionError> {
        self.ack(h.stat_sn)?;
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let Some(s) = self.scsi_task(h.itt) else {
            // A response for a task already aborted or completed.
            return Ok(());
        };
        let bytes_read = s.read_bytes;
        // RFC 7143 section 11.4.7: SenseLength, sense data, response data.
        let outcome = match w::split_sense(&data) {
            Ok(parts) => {
                let sense = (!parts.sense.is_empty()).then_some(parts.sense);
                let sense_data = sense.as_ref().and_then(|b| SenseData::parse(b).ok());
                TaskOutcome::Scsi(ScsiResult {
                    response: h.response,
                    status: h.status,
                    sense,
                    sense_data,
                    residual: h.residual,
                    bidi_read_residual: h.bidi_read_residual,
                    bytes_read,
                })
            }
            Err(e) => TaskOutcome::Failed(TaskError::Protocol(e.into())),
        };
        self.complete(h.itt, outcome);
        Ok(())
    }

    fn on_data_in(&mut self, h: w::DataIn, data: Bytes) -> Result<(), ConnectionError> {
        if let Some(st) = &h.status {
            self.ack(st.stat_sn)?;
        }
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let in_order = self.negotiated.as_ref().is_none_or(|n| n.data_pdu_in_order);
        let Some(s) = self.scsi_task(h.itt) else {
            return Ok(());
        };
        // RFC 7143 section 11.7.4: DataSN counts the task's Data-In PDUs
        // from 0; at ErrorRecoveryLevel 0 a gap cannot be repaired.
        if h.data_sn != s.next_data_sn {
            return Err(ConnectionError::Protocol(ProtocolError::OutOfOrder {
                what: "DataSN",
                expected: s.next_data_sn.0,
                received: h.data_sn.0,
                section: "11.7.4",
            }));
        }
        s.next_data_sn = s.next_data_sn.next();
        if !data.is_empty() {
            if s.cmd.expected_read_len == 0 {
                return Err(violation("Data-In for a command without read data", "11.7"));
            }
            // RFC 7143 section 11.7.5 (Buffer Offset) with DataPDUInOrder=Yes
            // (section 13.18): PDUs arrive in increasing offset order.
            if in_order && h.buffer_offset != s.read_bytes {
                return Err(violation("Data-In Buffer Offset out of order", "11.7.5"));
            }
            let end = u64::from(h.buffer_offset) + data.len() as u64;
            if end > u64::from(s.cmd.expected_read_len) {
                return Err(violation(
                    "Data-In beyond the Expected Data Transfer Length",
                    "11.7.5",
                ));
            }
            s.read_bytes = s.read_bytes.saturating_add(data.len() as u32);
            self.events.push_back(Event::DataIn {
                task: TaskId(h.itt),
                offset: h.buffer_offset,
                data,
            });
        }
        if let Some(st) = h.status {
            let bytes_read = self.scsi_task(h.itt).map(|s| s.read_bytes).unwrap_or(0);
            self.complete(
                h.itt,
                TaskOutcome::Scsi(ScsiResult {
                    response: w::ScsiResponseCode::CommandCompleted,
                    status: st.status,
                    sense: None,
                    sense_data: None,
                    residual: st.residual,
                    bidi_read_residual: w::Residual::None,
                    bytes_read,
                }),
            );
        }
        Ok(())
    }

    fn on_r2t(&mut self, h: w::R2t) -> Result<(), ConnectionError> {
        // RFC 7143 section 11.8: R2T carries the next StatSN without
        // advancing it.
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let (max_r2t, max_burst) = self
            .negotiated
            .as_ref()
            .map(|n| (n.max_outstanding_r2t, n.max_burst_length))
            .unwrap_or((1, 262_144));
        let mrdsl = self.target_mrdsl();
        let Some(s) = self.scsi_task(h.itt) else {
            return Ok(());
        };
        let Some(buf) = s.cmd.data_out.clone() else {
            return Err(violation("R2T for a command without write data", "11.8"));
        };
        // RFC 7143 section 11.8.2: R2TSN numbers the task's R2Ts from 0.
        if h.r2t_sn != s.next_r2t_sn {
            return Err(ConnectionError::Protocol(ProtocolError::OutOfOrder {
                what: "R2TSN",
                expected: s.next_r2t_sn.0,
                received: h.r2t_sn.0,
                section: "11.8.2",
            }));
        }
        // RFC 7143 section 13.17: the target "MUST NOT" exceed
        // MaxOutstandingR2T.
        if s.outstanding_r2t >= max_r2t {
            return Err(violation(
                "more outstanding R2Ts than MaxOutstandingR2T",
                "13.17",
            ));
        }
        // RFC 7143 section 11.8.4: a Desired Data Transfer Length of 0 and
        // more than MaxBurstLength are both errors.
        let len = h.desired_data_transfer_length;
        if len == 0 || len > max_burst {
            return Err(violation(
                "R2T Desired Data Transfer Length 0 or above MaxBurstLength",
                "11.8.4",
            ));
        }
        let start = h.buffer_offset as usize;
        let end = start.saturating_add(len as usize);
        if end > buf.len() {
            return Err(violation(
                "R2T beyond the Expected Data Transfer Length",
                "11.8.3",
            ));
        }
        s.next_r2t_sn = s.next_r2t_sn.next();
        s.outstanding_r2t = s.outstanding_r2t.saturating_add(1);
        self.queue_data_out(h.itt, h.lun, h.ttt, &buf, start, end, mrdsl as usize, true);
        Ok(())
    }

    /// Queues Data-Out PDUs covering `buf[start..end]`, each at most
    /// `mrdsl` bytes (RFC 7143 section 13.12, the target's limit), DataSN
    /// from 0 (section 11.7.4: per R2T or unsolicited sequence), F on the
    /// last (section 11.7.1).
    #[allow(clippy::too_many_arguments)]
    fn queue_data_out(
        &mut self,
        itt: u32,
        lun: u64,
        ttt: u32,
        buf: &Bytes,
        start: usize,
        end: usize,
        mrdsl: usize,
        solicited: bool,
    ) {
        let mut off = start;
        let mut sn = Serial(0);
        while off < end {
            let n = (end - off).min(mrdsl.max(1));
            let last = off + n >= end;
            let d = w::DataOut {
                final_pdu: last,
                lun,
                itt,
                ttt,
                exp_stat_sn: Serial(0),
                data_sn: sn,
                buffer_offset: off as u32,
            };
            self.tx.push_back(OutPdu {
                header: d.into(),
                ahs: Vec::new(),
                data: buf.slice(off..off + n),
                digests: self.tx_digests,
                data_out: Some((itt, last && solicited)),
                numbered: false,
            });
            sn = sn.next();
            off += n;
        }
    }

    fn on_text_response(&mut self, h: w::TextResponse, data: Bytes) -> Result<(), ConnectionError> {
        self.ack(h.stat_sn)?;
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        let Some(Task {
            kind: Kind::Text(t),
            ..
        }) = self.tasks.get_mut(h.itt)
        else {
            return Ok(());
        };
        let more = !h.final_pdu;
        // RFC 7143 section 11.11.1: "A Text Response with the F bit set to 1
        // MUST NOT contain key=value pairs that may require additional
        // answers" and the TTT is 0xffffffff; with F=0 the target sets a TTT
        // the initiator echoes to get the rest (section 11.11.4).
        if more && h.ttt == RESERVED_TAG {
            return Err(violation(
                "Text Response with F=0 and no Target Transfer Tag",
                "11.11.4",
            ));
        }
        // RFC 7143 section 11.11.2: "If the C bit is set to 1, the F bit
        // MUST be 0".
        if h.cont && !more {
            return Err(violation("Text Response with C=1 and F=1", "11.11.2"));
        }
        // The text of the whole sequence is one unit until F=1 (bounded by
        // the assembler's cap).
        match t.assembler.push(&data, more) {
            Err(e) => {
                self.complete(h.itt, TaskOutcome::Failed(TaskError::Protocol(e.into())));
                return Ok(());
            }
            Ok(Some(pairs)) => {
                let internal = matches!(self.tasks.get(h.itt), Some(t) if t.internal);
                let outcome = if internal {
                    TaskOutcome::Targets(Vec::new())
                } else {
                    match parse_send_targets(&pairs) {
                        Ok(targets) => TaskOutcome::Targets(targets),
                        Err(e) => TaskOutcome::Failed(TaskError::Protocol(e.into())),
                    }
                };
                self.complete(h.itt, outcome);
                return Ok(());
            }
            Ok(None) => {}
        }
        t.ttt = h.ttt;
        t.started = true;
        self.pending.push_back(h.itt);
        Ok(())
    }

    fn on_async(
        &mut self,
        now: Instant,
        h: w::AsyncMessage,
        data: Bytes,
    ) -> Result<(), ConnectionError> {
        self.ack(h.stat_sn)?;
        self.window.update(h.exp_cmd_sn, h.max_cmd_sn);
        tracing::info!(target: "iscsi::session", event = ?h.event, lun = h.lun, vcode = h.vcode, parameter1 = h.parameter1, parameter2 = h.parameter2, parameter3 = h.parameter3, "asynchronous message received (RFC 7143 section 11.9)");
        let (sense, event_data) = match w::split_sense(&data) {
            Ok(p) => (p.sense, p.response_data),
            Err(_) => (Bytes::new(), data.clone()),
        };
        self.events.push_back(Event::AsyncEvent(AsyncNotice {
            event: h.event,
            lun: h.lun,
            vcode: h.vcode,
            parameters: [h.parameter1, h.parameter2, h.parameter3],
            sense,
            event_data,
        }));
        match h.event {
            // RFC 7143 section 11.9.1, AsyncEvent 1: "the initiator MUST
            // honor this request by issuing a Logout as early as possible
            // but no later than Parameter3 seconds".
            w::AsyncEvent::LogoutRequested
                if self.logout_waiting.is_none() && !self.logout_sent =>
            {
                let deadline = later(now, Duration::from_secs(u64::from(h.parameter3)));
                if let Ok(itt) = self.new_task(Kind::Logout, true) {
                    self.logout_waiting = Some((itt, Some(deadline)));
                }
            }
            // AsyncEvent 2/3: the target will drop the connection(s);
            // Parameter2 is Time2Wait for the reconnection.
            w::AsyncEvent::DropConnection | w::AsyncEvent::DropAllConnections => {
                self.time2wait = Some(h.parameter2);
            }
            // AsyncEvent 4: renegotiation requested. We have nothing to
            // change: an empty Text Request completes the negotiation.
            w::AsyncEvent::NegotiationRequested => {
                if let Ok(itt) = self.new_task(
                    Kind::Text(Box::new(TextTask {
                        request: Bytes::new(),
                        assembler: TextAssembler::with_limit(self.cfg.max_text_len),
                        ttt: RESERVED_TAG,
                        started: false,
                    })),
                    true,
                ) {
                    self.pending.push_back(itt);
                }
            }
            _ => {}
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // Full Feature Phase: send
    // ------------------------------------------------------------------

    /// Sends queued non-immediate commands while the window is open (RFC
    /// 7143 section 4.2.2.1: non-immediate commands carry CmdSN "from
    /// ExpCmdSN to MaxCmdSN inclusive").
    fn dispatch_pending(&mut self) {
        while let Some(&itt) = self.pending.front() {
            if self.tasks.get(itt).is_none() {
                self.pending.pop_front();
                continue;
            }
            let Some(cmd_sn) = self.window.take() else {
                break;
            };
            self.pending.pop_front();
            if let Some(t) = self.tasks.get_mut(itt) {
                t.cmd_sn = Some(cmd_sn);
            }
            match self.tasks.get(itt).map(|t| &t.kind) {
                Some(Kind::Scsi(_)) => self.send_scsi(itt, cmd_sn),
                Some(Kind::Text(_)) => self.send_text(itt, cmd_sn),
                _ => {}
            }
        }
    }

    fn send_scsi(&mut self, itt: u32, cmd_sn: Serial) {
        let Some(s) = self.scsi_task(itt) else {
            return;
        };
        // Only the fields needed, not a clone of the command: cloning its
        // CDB `Bytes` could allocate on every I/O.
        let cmd = &s.cmd;
        let (lun, attr, expected_read_len) = (cmd.lun, cmd.attr, cmd.expected_read_len);
        let mut cdb = [0u8; 16];
        let head = cmd.cdb.len().min(16);
        cdb[..head].copy_from_slice(&cmd.cdb[..head]);
        let ext_cdb = (cmd.cdb.len() > 16).then(|| cmd.cdb.slice(16..));
        let write_buf = cmd.data_out.clone().unwrap_or_default();
        let (imm_ok, initial_r2t, first_burst) = self
            .negotiated
            .as_ref()
            .map(|n| (n.immediate_data, n.initial_r2t, n.first_burst_length))
            .unwrap_or((false, true, 0));
        let mrdsl = self.target_mrdsl();
        let write_len = write_buf.len() as u32;
        let write = write_len > 0;
        let read = expected_read_len > 0;
        // RFC 7143 section 13.11 (ImmediateData) and 13.14
        // (FirstBurstLength): immediate data is at most FirstBurstLength
        // and, as any data segment, at most the target's
        // MaxRecvDataSegmentLength.
        let imm = if write && imm_ok {
            write_len.min(first_burst).min(mrdsl)
        } else {
            0
        };
        // RFC 7143 section 13.10 (InitialR2T=No): unsolicited data up to
        // FirstBurstLength in total, immediate data included.
        let unsol_end = if write && !initial_r2t {
            write_len.min(first_burst).max(imm)
        } else {
            imm
        };
        let mut ahs = Vec::new();
        // RFC 7143 section 11.2.2.3: CDB bytes beyond 16 go in an Extended
        // CDB AHS.
        if let Some(ext) = ext_cdb {
            ahs.push(Ahs::ExtendedCdb(ext));
        }
        // RFC 7143 section 11.2.2.4: a bidirectional command carries the
        // expected read length in an AHS.
        if read && write {
            ahs.push(Ahs::BidiReadLength(expected_read_len));
        }
        let header = w::ScsiCommand {
            immediate: false,
            // RFC 7143 section 11.3.1: F=1 when no unsolicited Data-Out
            // PDUs follow.
            final_pdu: unsol_end == imm,
            read,
            write,
            attr,
            lun,
            itt,
            // RFC 7143 section 11.3.4: for bidirectional commands the
            // write length; else the length of the transfer.
            expected_data_transfer_length: if write { write_len } else { expected_read_len },
            cmd_sn,
            exp_stat_sn: Serial(0),
            cdb,
        };
        self.push(header, ahs, write_buf.slice(..imm as usize), true);
        if unsol_end > imm {
            self.queue_data_out(
                itt,
                lun,
                RESERVED_TAG,
                &write_buf,
                imm as usize,
                unsol_end as usize,
                mrdsl as usize,
                false,
            );
        }
    }

    fn send_text(&mut self, itt: u32, cmd_sn: Serial) {
        let Some(Task {
            kind: Kind::Text(t),
            ..
        }) = self.tasks.get_mut(itt)
        else {
            return;
        };
        let (data, ttt) = if t.started {
            // RFC 7143 section 11.10.4: continue with an empty request
            // echoing the target's TTT.
            (Bytes::new(), t.ttt)
        } else {
            t.started = true;
            (t.request.clone(), RESERVED_TAG)
        };
        let req = w::TextRequest {
            immediate: false,
            final_pdu: true,
            cont: false,
            lun: 0,
            itt,
            ttt,
            cmd_sn,
            exp_stat_sn: Serial(0),
        };
        self.push(req, Vec::new(), data, true);
    }

    fn send_tmf(
        &mut self,
        itt: u32,
        function: w::TmfFunction,
        lun: u64,
        referenced: u32,
        ref_cmd_sn: Serial,
        exp_data_sn: Serial,
    ) {
        if let Some(t) = self.tasks.get_mut(itt) {
            t.cmd_sn = Some(self.window.cmd_sn());
        }
        // RFC 7143 section 11.5: task management requests go out as
        // immediate commands so a full window cannot block them.
        let req = w::TaskMgmtRequest {
            immediate: true,
            function,
            lun,
            itt,
            referenced_task_tag: referenced,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
            ref_cmd_sn,
            exp_data_sn,
        };
        self.urgent.push_back(OutPdu {
            header: req.into(),
            ahs: Vec::new(),
            data: Bytes::new(),
            digests: self.tx_digests,
            data_out: None,
            numbered: false,
        });
    }

    /// RFC 7143 section 7.3: "The CmdSN of the rejected command PDU (if it
    /// is a non-immediate command) MUST NOT be considered received by the
    /// target ... Upon receiving the Reject, the initiator MUST plug the
    /// CmdSN gap in order to continue to use the session", here "by
    /// aborting the task": an internal ABORT TASK whose RefCmdSN is the
    /// rejected CmdSN, which the target then "consider[s] as received"
    /// (section 11.6.1 b). Without it every later command waits forever.
    fn plug_cmd_sn_gap(&mut self, itt: u32) {
        let Some(task) = self.tasks.get(itt) else {
            return;
        };
        let Some(ref_cmd_sn) = task.cmd_sn else {
            return;
        };
        let lun = match &task.kind {
            Kind::Scsi(s) => s.cmd.lun,
            _ => 0,
        };
        let function = w::TmfFunction::AbortTask;
        if let Ok(tmf) = self.new_task(
            Kind::Tmf {
                function,
                affected: Vec::new(),
            },
            true,
        ) {
            self.send_tmf(tmf, function, lun, itt, ref_cmd_sn, Serial(0));
        }
    }

    fn send_ping(&mut self, itt: u32, data: Bytes) {
        // RFC 7143 section 11.18: a ping with a valid ITT asks for a NOP-In;
        // TTT 0xffffffff; sent immediate.
        let nop = w::NopOut {
            immediate: true,
            lun: 0,
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
        };
        self.push(nop, Vec::new(), data, false);
    }

    fn send_keepalive(&mut self, now: Instant, timeout: Duration) {
        if self.keepalive_task.is_none() {
            if let Ok(itt) = self.new_task(Kind::Nop, true) {
                self.keepalive_task = Some(itt);
                self.send_ping(itt, Bytes::new());
            }
        }
        self.ping_deadline = Some(later(now, timeout));
    }

    fn maybe_send_logout(&mut self, now: Instant) {
        let Some((itt, _)) = self.logout_waiting else {
            return;
        };
        let busy = self
            .tasks
            .iter()
            .any(|(i, t)| i != itt && !t.internal && !matches!(t.kind, Kind::Logout));
        if !busy {
            self.send_logout(now, itt);
        }
    }

    fn send_logout(&mut self, now: Instant, itt: u32) {
        self.logout_waiting = None;
        self.logout_sent = true;
        self.pending.clear();
        if let Some(t) = self.tasks.get_mut(itt) {
            t.cmd_sn = Some(self.window.cmd_sn());
        }
        // RFC 7143 section 11.14: Logout Request, reason 0 "close the
        // session"; sent immediate.
        let req = w::LogoutRequest {
            immediate: true,
            reason: w::LogoutReason::CloseSession,
            itt,
            cid: self.cfg.cid,
            cmd_sn: Serial(0),
            exp_stat_sn: Serial(0),
        };
        self.push(req, Vec::new(), Bytes::new(), false);
        self.logout_deadline = Some(later(now, self.cfg.login_timeout));
    }
}

/// `now + d`, saturating (a configured `Duration::MAX` must not panic).
/// The mutual CHAP challenge for login number `n` of a session. RFC 1994
/// section 2.3 (which RFC 7143 section 12.1.3 builds on): "Each challenge
/// value SHOULD be unique, since repetition of a challenge value in
/// conjunction with the same secret would permit an attacker to reply with
/// a previously intercepted response". The core draws no randomness: the
/// first login uses the caller's random bytes as given, and every later
/// one (session recovery, redirects) a SHA-256 expansion of those bytes
/// and the login number, as unpredictable as the caller's bytes and never
/// repeated within the session.
fn fresh_challenge(seed: &[u8], n: u32) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    if n == 0 || seed.is_empty() {
        return seed.to_vec();
    }
    let len = seed.len().max(16);
    let mut out = Vec::with_capacity(len + 32);
    let mut block = 0u32;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(b"iscsi-proto mutual CHAP challenge");
        h.update(n.to_be_bytes());
        h.update(block.to_be_bytes());
        h.update(seed);
        out.extend_from_slice(&h.finalize());
        block = block.wrapping_add(1);
    }
    out.truncate(len);
    out
}

fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

fn encode(pairs: &[(String, String)]) -> Result<Bytes, ConnectionError> {
    let mut body = Vec::new();
    text::encode_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &mut body,
    )
    .map_err(io)?;
    Ok(Bytes::from(body))
}
