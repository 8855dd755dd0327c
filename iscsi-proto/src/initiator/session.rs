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

use super::tasks::{TaskTable, RESERVED_TAG};
use super::types::*;
use super::window::CmdWindow;
use crate::error::{ConfigError, ConnectionError, ProtocolError, TaskError, TimerKind, UsageError};
use crate::login::chap::{ChapCredentials, InitiatorChap, InitiatorChapConfig};
use crate::login::discovery::{parse_send_targets, parse_target_address};
use crate::login::negotiation::{
    AuthMethod, InitiatorConfig, InitiatorNegotiator, Negotiated, SessionType,
};

mod login;
mod receive;
mod recovery;
mod send;
mod timeouts;
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
    /// The NSG our current request exchange asked for with T=1 (`None`:
    /// T=0). A response may transit only if we did, and never beyond it
    /// (RFC 7143 sections 6.3 and 11.13.6; checked in `session/login.rs`).
    asked: Option<Stage>,
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
    /// `cfg.isid`, checked by `Session::new`.
    isid: w::Isid,
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
    portal: Option<NetworkPortal>,
    permanent_portal: Option<NetworkPortal>,
    redirects: u8,
    recovery_attempt: u32,
    /// When the current connection entered the Full Feature Phase.
    logged_in_at: Instant,
    /// Connections in a row the target closed soon after the login.
    short_lived: u32,
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
    /// The logout was asked for by the target (AsyncEvent 1) and the
    /// application has not adopted it: with recovery configured, the
    /// session logs in again afterwards and new work waits for that.
    target_logout: bool,
    /// A lower bound of the tasks' escalation deadlines (it may belong to
    /// a task that has completed since: the timer then fires early, and
    /// `escalate_timeouts` recomputes it with one pass over the tasks).
    task_deadline: Option<Instant>,
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

/// The negotiation engine and CHAP state for a login under `cfg`. Building
/// them validates every configured value (RFC 7143 section 13 ranges,
/// names, authentication), so [`Session::new`] calls it once up front.
fn login_engines(
    cfg: &SessionConfig,
) -> Result<(InitiatorNegotiator, Option<InitiatorChap>), ConfigError> {
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
            // RFC 7143 section 12.1.3: our challenge must be unpredictable;
            // the core has no randomness of its own to make one up.
            if mutual.is_some() && cfg.chap_challenge.is_empty() {
                return Err(ConfigError::Invalid(
                    "mutual CHAP needs caller-supplied random challenge bytes",
                ));
            }
            let mut c =
                InitiatorChapConfig::new(ChapCredentials::new(user.clone(), secret.clone()));
            c.algorithms = algorithms.clone();
            c.mutual = mutual
                .as_ref()
                .map(|(u, s)| ChapCredentials::new(u.clone(), s.clone()));
            Some(InitiatorChap::new(c)?)
        }
    };
    Ok((InitiatorNegotiator::new(icfg)?, chap))
}

/// Checks what the negotiation engine does not: the ISID and the
/// session's own timers and limits.
fn validate(cfg: &SessionConfig) -> Result<w::Isid, ConfigError> {
    let isid = cfg.isid.ok_or(ConfigError::MissingIsid)?;
    // RFC 7143 section 11.12.5: T=3 is reserved.
    if isid.t() == 3 {
        return Err(ConfigError::ReservedIsid);
    }
    if cfg.login_timeout.is_zero() {
        return Err(ConfigError::Invalid("login_timeout must be above zero"));
    }
    if cfg
        .keepalive
        .is_some_and(|k| k.interval.is_zero() || k.timeout.is_zero())
    {
        return Err(ConfigError::Invalid(
            "keepalive interval and timeout must be above zero",
        ));
    }
    if cfg.task_timeout.is_some_and(|t| t.is_zero()) {
        return Err(ConfigError::Invalid("task_timeout must be above zero"));
    }
    // RFC 7143 section 13.23: FastAbort changes which responses the
    // target sends for aborted tasks and adds the AsyncEvent 5 duties
    // (section 11.9.1); this initiator does not implement them, so it
    // does not offer the value.
    if cfg
        .operational
        .task_reporting
        .contains(&crate::login::negotiation::TaskReporting::FastAbort)
    {
        return Err(ConfigError::Invalid(
            "TaskReporting=FastAbort is not supported by this initiator",
        ));
    }
    if cfg.max_text_len == 0 {
        return Err(ConfigError::Invalid("max_text_len must be above zero"));
    }
    login_engines(cfg)?;
    Ok(isid)
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
        let mut s = Session {
            isid,
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
            logged_in_at: now,
            short_lived: 0,
            time2wait: None,
            login_deadline: Some(later(now, config.login_timeout)),
            last_rx: now,
            keepalive_task: None,
            ping_deadline: None,
            logout_deadline: None,
            logout_waiting: None,
            logout_sent: false,
            target_logout: false,
            task_deadline: None,
            next_timeout: None,
            cfg: config,
        };
        s.events.push_back(Event::Connect { portal: None });
        s.update_timer();
        Ok(s)
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
        self.isid
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
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
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
            if let Header::ScsiCommand(h) = &header {
                if let Some(t) = self.tasks.get_mut(h.itt) {
                    t.sent = true;
                }
            }
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
            self.scratch.clear();
            let encoded = u32::try_from(out.data.len())
                .map_err(|_| WireError::Unencodable {
                    reason: "data segment longer than 2^24 - 1 bytes",
                    section: "11.2.1.6",
                })
                .and_then(|len| {
                    encode_header(&mut self.scratch, &header, &out.ahs, len, out.digests)
                });
            if let Err(e) = encoded {
                // submit() refuses what cannot be encoded, so this is a bug;
                // still, a PDU is never dropped silently: the connection
                // ends with the reason.
                debug_assert!(false, "unencodable PDU: {e}");
                self.fail_connection(now, ConnectionError::Encode(e));
                self.after_action(now);
                return None;
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
                // than Parameter3 seconds": stop waiting for tasks. When
                // the session logs in again they are handled as after a
                // connection loss (reissued only where that is safe).
                if !self.holds_new_work() {
                    self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
                }
                self.send_logout(now, itt);
            }
        }
        if self.is_logged_in() {
            self.escalate_timeouts(now);
        }
        // RFC 7143 section 11.14: "After sending the Logout Request PDU,
        // an initiator MUST NOT send any new iSCSI requests on the closing
        // connection": no keepalive ping then.
        if self.is_logged_in() && !self.logout_sent {
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
            // A target-requested logout followed by a new login: work
            // queues for the new session (RFC 7143 section 11.9.1 asks
            // the initiator to log out, not to stop).
            _ if self.holds_new_work() => Ok(()),
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
                sent: false,
                abort_pending: false,
                deadline: None,
                escalation: 0,
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
        Ok(TaskId::from_itt(itt))
    }

    /// ABORT TASK for `task` (RFC 7143 section 11.5.1), sent as an
    /// immediate command with the task's RefCmdSN. Returns the id of the
    /// task management task. A command still queued for the window is
    /// aborted locally.
    pub fn abort_task(&mut self, now: Instant, task: TaskId) -> Result<TaskId, UsageError> {
        self.check_actionable()?;
        let (lun, ref_cmd_sn, exp_data_sn) = match self.tasks.get(task.itt()) {
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
                self.pending.retain(|&i| i != task.itt());
                self.complete(
                    task.itt(),
                    TaskOutcome::Failed(TaskError::Aborted(function)),
                );
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
                    affected.push(task.itt());
                }
                self.send_tmf(tmf, function, lun, task.itt(), ref_cmd_sn, exp_data_sn);
            }
            Some(_) => {
                let _ = self.tasks.remove(tmf);
                return Err(UsageError::NotLoggedIn);
            }
        }
        self.after_action(now);
        Ok(TaskId::from_itt(tmf))
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
        Ok(TaskId::from_itt(tmf))
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
        Ok(TaskId::from_itt(itt))
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
                negotiate: false,
                declared: None,
            })),
            false,
        )?;
        self.pending.push_back(itt);
        self.after_action(now);
        Ok(TaskId::from_itt(itt))
    }

    /// Re-declares our MaxRecvDataSegmentLength in the Full Feature Phase
    /// (RFC 7143 section 13.12: a declarative key allowed there) with a
    /// Text Request. The new value takes effect when the target's answer
    /// completes the sequence (section 6.4); the task then completes with
    /// [`TaskOutcome::Negotiated`]. Values the target declares back are
    /// applied too.
    pub fn declare_max_recv_data_segment_length(
        &mut self,
        now: Instant,
        value: u32,
    ) -> Result<TaskId, UsageError> {
        self.check_actionable()?;
        let Some(current) = self.negotiated.as_ref() else {
            return Err(UsageError::NotLoggedIn);
        };
        let (declared, pairs) =
            crate::login::ffp::ffp_declare_max_recv_data_segment_length(current, value).map_err(
                |_| UsageError::InvalidCommand("MaxRecvDataSegmentLength must be 512..=16777215"),
            )?;
        let mut body = Vec::new();
        text::encode_pairs(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut body,
        )
        .map_err(|_| UsageError::InvalidCommand("unencodable key"))?;
        let itt = self.new_task(
            Kind::Text(Box::new(TextTask {
                request: Bytes::from(body),
                assembler: TextAssembler::with_limit(self.cfg.max_text_len),
                ttt: RESERVED_TAG,
                started: false,
                negotiate: true,
                declared: Some(Box::new(declared)),
            })),
            false,
        )?;
        self.pending.push_back(itt);
        self.after_action(now);
        Ok(TaskId::from_itt(itt))
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
            self.target_logout = false;
            if mode == LogoutMode::AbortTasks {
                self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
            }
            self.after_action(now);
            return Ok(TaskId::from_itt(itt));
        }
        if self.logout_sent {
            // A target-requested logout already went out: the
            // application's logout joins it (its task completes with the
            // Logout Response), and the session then ends.
            let adopted = self.tasks.iter_mut().find_map(|(itt, t)| {
                matches!(t.kind, Kind::Logout).then(|| {
                    t.internal = false;
                    itt
                })
            });
            if let Some(itt) = adopted {
                self.target_logout = false;
                if mode == LogoutMode::AbortTasks {
                    self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
                }
                self.after_action(now);
                return Ok(TaskId::from_itt(itt));
            }
            return Err(UsageError::LoggingOut);
        }
        let itt = self.new_task(Kind::Logout, false)?;
        if mode == LogoutMode::AbortTasks {
            self.fail_user_tasks(TaskError::LoggedOut, Some(itt));
        }
        self.logout_waiting = Some((itt, None));
        self.after_action(now);
        Ok(TaskId::from_itt(itt))
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
                    task: TaskId::from_itt(itt),
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
            if !self.holds_new_work() {
                self.dispatch_pending(now);
            }
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
                consider(self.task_deadline);
                consider(self.logout_deadline);
                if let Some((_, d)) = self.logout_waiting {
                    consider(d);
                }
                if self.ping_deadline.is_some() {
                    consider(self.ping_deadline);
                } else if let Some(ka) = self.cfg.keepalive.filter(|_| !self.logout_sent) {
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
        self.target_logout = false;
        self.task_deadline = None;
        self.next_timeout = None;
    }
}

/// `now + d`, saturating (a configured `Duration::MAX` must not panic).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}
