//! The target session: the state shared by its connections, the public
//! A-D interface, and the plumbing the phase modules use.
//!
//! The login phase lives in [`super::login`], the Full Feature Phase in
//! [`super::full_feature`] and the modules it dispatches to; all are
//! `impl Session` blocks over the state here and in
//! [`super::connection`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::config::{SessionConfig, TargetAuth};
use super::connection::Connection;
use super::event::{CloseReason, Event, TaskId};
use super::full_feature::Held;
use super::scsi_command::Task;
use super::task_management::PendingTmf;
use super::window::TargetWindow;
use crate::error::{ConfigError, ProtocolError, UsageError};
use crate::login::negotiation::Negotiated;
use crate::login::SessionType;
use crate::scsi::ScsiStatus;
use crate::transmit::Transmit;
use crate::wire::{AsyncEvent, AsyncMessage, Isid, Reject, RejectReason, Serial, WireError};

/// Largest data segment either side may send during the login phase
/// (RFC 7143 section 13.12: MaxRecvDataSegmentLength defaults to 8192 and
/// is only declared for the Full Feature Phase).
pub(super) const LOGIN_MAX_SEGMENT: u32 = 8192;

/// The reserved tag value (RFC 7143 sections 11.18.1, 11.19.2 and 11.7.4).
pub(super) const NO_TAG: u32 = 0xffff_ffff;

/// How many Initiator Task Tags of aborted or failed tasks are remembered,
/// so that Data-Out PDUs still in flight for them are dropped silently.
const DEAD_ITTS: usize = 64;

/// The phase of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Login phase (RFC 7143 section 6.3).
    Login,
    /// Full Feature Phase.
    FullFeature,
    /// The connection is over; only pending transmits remain.
    Closed,
}

/// A deterministic generator for the values the RFC wants unpredictable
/// (CHAP challenges, the initial StatSN, transfer tags): SplitMix64 over
/// the caller's seed. The core draws no randomness of its own.
#[derive(Debug, Clone)]
pub(super) struct SplitMix(u64);

impl SplitMix {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(v.get(..chunk.len()).unwrap_or(&[]));
        }
    }
}

/// A target session (RFC 7143 section 4: the I_T nexus between one
/// initiator port and this target) with its one connection. Sans-IO: bytes
/// and time come in as arguments, PDUs and events go out through the
/// `poll_*` methods.
///
/// What is session-wide lives here: ISID, TSIH, InitiatorName, the command
/// window ([`TargetWindow`]), the tasks and the negotiated session keys.
/// What belongs to one TCP connection (CID, StatSN, the login state
/// machine, digests, MaxRecvDataSegmentLength in each direction, the
/// transmit queue, the NOP-In keepalive) lives in the session's connection
/// (RFC 7143 sections 4 and 13.2). Only one connection per session is
/// negotiated (MaxConnections=1), so the getters of both kinds are here.
///
/// # The A-D contract
///
/// The methods come in four groups, in this order below:
///
/// - **(A) getters** ([`phase`](Self::phase), [`is_closed`](Self::is_closed),
///   [`tsih`](Self::tsih), [`stat_sn`](Self::stat_sn), ...): read state,
///   change nothing.
/// - **(B) inputs** from the driver: [`handle_input`](Self::handle_input)
///   (bytes read from the socket), [`handle_timeout`](Self::handle_timeout)
///   (the timer armed from `poll_timeout` fired),
///   [`handle_closed`](Self::handle_closed) (the peer closed the socket).
/// - **(C) actions** of the application: [`complete`](Self::complete),
///   [`complete_write`](Self::complete_write),
///   [`abort_acknowledged`](Self::abort_acknowledged),
///   [`request_logout`](Self::request_logout),
///   [`drop_connection`](Self::drop_connection),
///   [`close_now`](Self::close_now). They fail with a [`UsageError`] when
///   misused and never send anything then.
/// - **(D) outputs**: [`poll_transmit`](Self::poll_transmit),
///   [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout).
///
/// # Drain order
///
/// After every (B) input and every (C) action:
///
/// 1. write out [`poll_transmit`](Self::poll_transmit) until it returns
///    `None` (PDUs are in wire order);
/// 2. handle [`poll_event`](Self::poll_event) until it returns `None`
///    (answering a command or an abort is a (C) action: drain again from
///    step 1);
/// 3. arm one timer at [`poll_timeout`](Self::poll_timeout) (call
///    [`handle_timeout`](Self::handle_timeout) when it passes).
///
/// When [`is_closed`](Self::is_closed) turns true, flush the transmits and
/// close the socket. [`handle_input`](Self::handle_input) stops decoding
/// while [`SessionConfig::max_queued_transmits`] PDUs or events wait: the
/// drain above makes it go on.
#[derive(Debug)]
pub struct Session {
    pub(super) cfg: SessionConfig,
    /// Source of the values the RFC wants unpredictable.
    pub(super) rng: SplitMix,
    /// Events for the application, in order.
    pub(super) events: VecDeque<Event>,
    /// The cached earliest deadline of the connection's timers.
    timeout: Option<Instant>,

    // ----- session-wide state (RFC 7143 section 4) -----
    /// The initiator's part of the session identifier (section 11.12.5).
    pub(super) isid: Isid,
    /// The target's part (section 11.12.6); 0 until the login succeeds.
    pub(super) tsih: u16,
    pub(super) session_type: SessionType,
    /// The node logged into (Normal sessions), an index into `cfg.targets`.
    pub(super) target_index: Option<usize>,
    pub(super) initiator_name: Option<String>,
    /// Every negotiated value, once logged in (the session-wide keys and
    /// the leading connection's).
    pub(super) negotiated: Option<Negotiated>,
    /// ExpCmdSN / MaxCmdSN: one command window per session (section
    /// 4.2.2.1: "CmdSN ... is session-wide").
    pub(super) window: TargetWindow,
    /// SCSI tasks alive, by id and by Initiator Task Tag.
    pub(super) tasks: BTreeMap<TaskId, Task>,
    pub(super) by_itt: BTreeMap<u32, TaskId>,
    /// Commands that arrived before the ones preceding them in CmdSN order.
    pub(super) held: Vec<(Serial, Held)>,
    /// Delivered tasks reported as [`Event::TaskAborted`] that the
    /// application has not yet acknowledged (their LUN and ITT).
    pub(super) aborting: BTreeMap<TaskId, (u64, u32)>,
    /// Task management requests whose response waits for the tasks they
    /// cover (RFC 7143 section 11.5.1), in arrival order.
    pub(super) pending_tmfs: Vec<PendingTmf>,
    dead_itts: VecDeque<u32>,
    pub(super) next_task_id: u32,
    next_ttt: u32,

    // ----- per-connection state (RFC 7143 sections 4 and 13.2) -----
    /// The session's one connection.
    pub(super) conn: Connection,
}

impl Session {
    /// Creates a session waiting for the first Login Request.
    pub fn new(mut cfg: SessionConfig) -> Result<Session, ConfigError> {
        if cfg.targets.is_empty() {
            return Err(ConfigError::NoTargets);
        }
        if cfg.tsih == 0 {
            return Err(ConfigError::ZeroTsih);
        }
        if cfg.cmd_window == 0 {
            return Err(ConfigError::ZeroWindow);
        }
        if cfg.chap_challenge_len == 0 || cfg.chap_challenge_len > 1024 {
            return Err(ConfigError::ChallengeLength);
        }
        // Only ErrorRecoveryLevel 0, in-order data and one connection are
        // implemented; the key table's Min/Or rules then make these the
        // negotiated values whatever the initiator offers (RFC 7143
        // sections 13.20, 13.18, 13.19, 13.2).
        cfg.params.error_recovery_level = 0;
        cfg.params.data_pdu_in_order = true;
        cfg.params.data_sequence_in_order = true;
        cfg.params.max_connections = 1;
        cfg.params.validate()?;
        for auth in [&cfg.auth, &cfg.discovery_auth] {
            if let TargetAuth::Chap {
                initiator, mutual, ..
            } = auth
            {
                // Same checks TargetChap::new makes, surfaced early.
                let c = crate::login::chap::TargetChapConfig {
                    initiator: initiator.clone(),
                    algorithms: vec![crate::login::ChapAlgorithm::Md5],
                    mutual: mutual.clone(),
                    min_challenge_len: 1,
                };
                crate::login::chap::TargetChap::new(c)?;
            }
        }
        let mut rng = SplitMix(cfg.seed);
        let stat_sn = Serial(rng.next_u64() as u32);
        let next_ttt = (rng.next_u64() as u32) & 0x7fff_ffff;
        let depth = cfg.cmd_window;
        Ok(Session {
            rng,
            events: VecDeque::new(),
            timeout: None,
            isid: Isid::default(),
            tsih: 0,
            session_type: SessionType::Normal,
            target_index: None,
            initiator_name: None,
            negotiated: None,
            window: TargetWindow::new(Serial(0), depth),
            tasks: BTreeMap::new(),
            by_itt: BTreeMap::new(),
            held: Vec::new(),
            aborting: BTreeMap::new(),
            pending_tmfs: Vec::new(),
            dead_itts: VecDeque::new(),
            next_task_id: 1,
            next_ttt,
            conn: Connection::new(stat_sn),
            cfg,
        })
    }

    // ----- (A) getters: read state, change nothing -----

    /// The phase of the connection.
    pub fn phase(&self) -> Phase {
        self.conn.phase
    }

    /// Whether the connection is over (flush the transmits, then close).
    pub fn is_closed(&self) -> bool {
        self.conn.phase == Phase::Closed
    }

    /// The negotiated values, once logged in.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Normal or Discovery.
    pub fn session_type(&self) -> SessionType {
        self.session_type
    }

    /// The InitiatorName declared at login.
    pub fn initiator_name(&self) -> Option<&str> {
        self.initiator_name.as_deref()
    }

    /// The TargetName of the node logged into (Normal sessions).
    pub fn target_name(&self) -> Option<&str> {
        self.target_index
            .and_then(|i| self.cfg.targets.get(i))
            .map(|t| t.name.as_str())
    }

    /// The ISID of the session.
    pub fn isid(&self) -> Isid {
        self.isid
    }

    /// The TSIH (0 until the login succeeds).
    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    /// The connection ID given by the initiator.
    pub fn cid(&self) -> u16 {
        self.conn.cid
    }

    /// ExpCmdSN as currently advertised.
    pub fn exp_cmd_sn(&self) -> Serial {
        self.window.exp_cmd_sn()
    }

    /// MaxCmdSN as currently advertised.
    pub fn max_cmd_sn(&self) -> Serial {
        self.window.max_cmd_sn()
    }

    /// The StatSN the next response will carry.
    pub fn stat_sn(&self) -> Serial {
        self.conn.stat_sn()
    }

    /// SCSI tasks alive (receiving data, executing, or held for ordering).
    /// Aborted tasks awaiting [`abort_acknowledged`](Self::abort_acknowledged)
    /// are not counted.
    pub fn live_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Aborted tasks whose acknowledgement
    /// ([`abort_acknowledged`](Self::abort_acknowledged)) is awaited.
    pub fn unacknowledged_aborts(&self) -> usize {
        self.aborting.len()
    }

    /// Number of Reject PDUs sent so far (diagnostics).
    pub fn rejects_sent(&self) -> u64 {
        self.conn.rejects_sent()
    }

    // ----- (B) inputs from the driver -----

    /// Consumes whole PDUs from `buf` (bytes received from the initiator).
    /// Partial PDUs stay in `buf` until more bytes arrive. Decoding pauses
    /// while more than [`SessionConfig::max_queued_transmits`] PDUs wait to be
    /// sent: drain [`poll_transmit`](Self::poll_transmit) and call again.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        loop {
            if self.conn.phase == Phase::Closed {
                buf.clear();
                break;
            }
            if self.conn.queued_transmits() >= self.cfg.max_queued_transmits
                || self.events.len() >= self.cfg.max_queued_transmits
            {
                break;
            }
            match self.conn.decode(buf) {
                Ok(None) => break,
                Ok(Some(pdu)) => {
                    self.conn.nop.last_rx = Some(now);
                    match self.conn.phase {
                        Phase::Login => self.login_pdu(now, pdu),
                        Phase::FullFeature => self.ffp_pdu(pdu),
                        Phase::Closed => {}
                    }
                }
                Err(e) if e.is_fatal() => {
                    let reason = match e {
                        // RFC 7143 section 7.8: after a header digest error
                        // the PDU boundaries are lost; at ErrorRecoveryLevel
                        // 0 the connection is dropped.
                        WireError::HeaderDigest { .. } => CloseReason::HeaderDigest,
                        // RFC 7143 section 13.12: a data segment above our
                        // MaxRecvDataSegmentLength is a protocol error; it
                        // cannot be buffered, so the connection ends.
                        other => CloseReason::Protocol(ProtocolError::Wire(other)),
                    };
                    self.close(reason);
                    buf.clear();
                    break;
                }
                Err(e) => {
                    self.conn.nop.last_rx = Some(now);
                    let bhs = self.conn.take_rejected_header();
                    match self.conn.phase {
                        Phase::Login => self.login_bad_pdu(&bhs),
                        Phase::FullFeature => self.ffp_bad_pdu(&e, bhs),
                        Phase::Closed => {}
                    }
                }
            }
        }
        self.update_timer();
    }

    /// Runs the timers: sends a NOP-In ping when the connection was idle
    /// for the configured interval, drops the connection when a ping went
    /// unanswered.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.keepalive(now);
        self.update_timer();
    }

    /// The peer closed the TCP connection.
    pub fn handle_closed(&mut self, _now: Instant) {
        if self.conn.phase != Phase::Closed {
            self.close(CloseReason::PeerClosed);
        }
        self.update_timer();
    }

    // ----- (C) actions of the application -----

    /// Completes a SCSI task delivered by [`Event::Command`]: sends
    /// `data_in` (truncated to the Expected Data Transfer Length, with the
    /// residual reported) in Data-In PDUs, then the status, either in the
    /// last Data-In (GOOD or CONDITION MET without sense) or in a SCSI
    /// Response carrying `sense`.
    pub fn complete(
        &mut self,
        task: TaskId,
        status: ScsiStatus,
        sense: Option<Bytes>,
        data_in: Bytes,
    ) -> Result<(), UsageError> {
        if self.conn.phase == Phase::Closed {
            return Err(UsageError::Closed);
        }
        self.complete_task(task, status, sense, data_in, None)
    }

    /// Completes a task without the R bit (a write, or a command with no
    /// data) like [`complete`](Self::complete), reporting the residual
    /// (RFC 7143 section 11.4.5.1) against `scsi_write_len`, the number of
    /// bytes the CDB transfers to the target: overflow when it exceeds the
    /// Expected Data Transfer Length, underflow when it falls short. For a
    /// task with the R bit it is [`complete`](Self::complete).
    pub fn complete_write(
        &mut self,
        task: TaskId,
        status: ScsiStatus,
        sense: Option<Bytes>,
        scsi_write_len: u32,
    ) -> Result<(), UsageError> {
        if self.conn.phase == Phase::Closed {
            return Err(UsageError::Closed);
        }
        self.complete_task(task, status, sense, Bytes::new(), Some(scsi_write_len))
    }

    /// Acknowledges a [`Event::TaskAborted`] reported by task
    /// management: the application has stopped the task and will not
    /// touch the medium for it any more. The Task Management response that
    /// covers the task is sent only once every task it aborted is
    /// acknowledged (RFC 7143 section 11.5.1: the target "MUST ensure that
    /// no responses for the tasks covered by a task management function
    /// are delivered to the iSCSI initiator after the Task Management
    /// response"). Completing the task with [`complete`](Self::complete)
    /// instead also acknowledges it, and what it carries is discarded.
    ///
    /// Tasks aborted because the connection closed need no
    /// acknowledgement. Errors: [`UsageError::UnknownTask`] when the task
    /// is not awaiting one, [`UsageError::Closed`] after the close.
    pub fn abort_acknowledged(&mut self, task: TaskId) -> Result<(), UsageError> {
        if self.conn.phase == Phase::Closed {
            return Err(UsageError::Closed);
        }
        if self.aborting.remove(&task).is_none() {
            return Err(UsageError::UnknownTask(task));
        }
        self.abort_done(task);
        Ok(())
    }

    /// Asks the initiator to log out within `parameter3` seconds
    /// (RFC 7143 section 11.9.1, AsyncEvent 1: the initiator "MUST honor
    /// this request by issuing a Logout as early as possible but no later
    /// than Parameter3 seconds").
    pub fn request_logout(&mut self, parameter3: u16) -> Result<(), UsageError> {
        self.send_async(AsyncEvent::LogoutRequested, 0, 0, parameter3)
    }

    /// Announces that the target drops the connection (RFC 7143 section
    /// 11.9.1, AsyncEvent 2: Parameter1 the CID, Parameter2 Time2Wait,
    /// Parameter3 Time2Retain), then closes it.
    pub fn drop_connection(&mut self, time2wait: u16, time2retain: u16) -> Result<(), UsageError> {
        let cid = self.conn.cid;
        self.send_async(AsyncEvent::DropConnection, cid, time2wait, time2retain)?;
        self.close(CloseReason::Application);
        Ok(())
    }

    /// Closes the connection without a word to the initiator.
    pub fn close_now(&mut self) {
        if self.conn.phase != Phase::Closed {
            self.close(CloseReason::Application);
        }
    }

    // ----- (D) outputs, in drain order -----

    /// The next PDU to write, in wire order. Call until `None` after every
    /// input and action (step 1 of the drain order in the type's docs); a
    /// PDU not written is lost to the stream.
    #[must_use = "a PDU not written breaks the stream"]
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.conn.pop_transmit()
    }

    /// The next event for the application (step 2 of the drain order).
    /// Commands must be answered with [`complete`](Self::complete), aborts
    /// acknowledged with [`abort_acknowledged`](Self::abort_acknowledged).
    #[must_use = "an event not handled leaves its task unanswered"]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout)
    /// must be called (step 3 of the drain order: arm one timer). O(1):
    /// cached.
    #[must_use = "a timer not armed leaves the keepalive unchecked"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timeout
    }

    // ----- internals shared by the login and Full Feature Phase modules -----

    pub(super) fn update_timer(&mut self) {
        // One connection: its keepalive is the only timer.
        self.timeout = self.conn.timeout(self.cfg.nop);
    }

    /// ExpCmdSN and MaxCmdSN to put in the next PDU, the window refreshed
    /// for the tasks still outstanding.
    pub(super) fn window_fields(&mut self) -> (Serial, Serial) {
        let outstanding = self
            .tasks
            .values()
            .filter(|t| !t.immediate && t.accepted)
            .count();
        self.window
            .refresh(u32::try_from(outstanding).unwrap_or(u32::MAX));
        (self.window.exp_cmd_sn(), self.window.max_cmd_sn())
    }

    /// A fresh Target Transfer Tag (never the reserved 0xffffffff).
    pub(super) fn new_ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == NO_TAG {
            self.next_ttt = 0;
        }
        if t == NO_TAG {
            return self.new_ttt();
        }
        t
    }

    /// Sends a Reject carrying the header of the bad PDU (RFC 7143 section
    /// 11.17.4: "The target returns the header (not including digest) of
    /// the PDU in error as the data of the response"). StatSN advances
    /// (section 11.17.3).
    pub(super) fn send_reject(&mut self, reason: RejectReason, bhs: Bytes) {
        let (exp, max) = self.window_fields();
        let stat_sn = self.conn.take_stat_sn();
        let bhs = bhs.slice(..bhs.len().min(crate::wire::BHS_LEN));
        self.conn.count_reject();
        self.conn.push_pdu(
            Reject {
                reason,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                data_sn_or_r2t_sn: Serial(0),
            },
            bhs,
        );
    }

    fn send_async(
        &mut self,
        event: AsyncEvent,
        p1: u16,
        p2: u16,
        p3: u16,
    ) -> Result<(), UsageError> {
        match self.conn.phase {
            Phase::FullFeature => {}
            Phase::Login => return Err(UsageError::NotLoggedIn),
            Phase::Closed => return Err(UsageError::Closed),
        }
        let (exp, max) = self.window_fields();
        let stat_sn = self.conn.take_stat_sn();
        self.conn.push_pdu(
            AsyncMessage {
                lun: 0,
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                event,
                vcode: 0,
                parameter1: p1,
                parameter2: p2,
                parameter3: p3,
            },
            Bytes::new(),
        );
        Ok(())
    }

    /// Remembers the ITT of a task that ended without a response being
    /// due, so that late Data-Out PDUs for it are dropped silently.
    pub(super) fn bury_itt(&mut self, itt: u32) {
        if self.dead_itts.len() >= DEAD_ITTS {
            self.dead_itts.pop_front();
        }
        self.dead_itts.push_back(itt);
    }

    pub(super) fn is_buried(&self, itt: u32) -> bool {
        self.dead_itts.contains(&itt)
    }

    /// Ends the connection: every live task is aborted (reported if it was
    /// delivered), then `Closed` is reported.
    pub(super) fn close(&mut self, reason: CloseReason) {
        if self.conn.phase == Phase::Closed {
            return;
        }
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Some(t) = self.tasks.remove(&id) {
                if t.delivered {
                    self.events.push_back(Event::TaskAborted { task: id });
                }
            }
        }
        self.by_itt.clear();
        self.held.clear();
        self.aborting.clear();
        self.pending_tmfs.clear();
        self.conn.phase = Phase::Closed;
        self.conn.nop.ping = None;
        self.events.push_back(Event::Closed { reason });
        self.update_timer();
    }
}
