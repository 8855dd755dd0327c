//! Configuration, commands, events and outcomes of the initiator session.

use crate::prelude::*;
use core::time::Duration;

use bytes::Bytes;

use crate::error::{ConnectionError, TaskError};
use crate::login::chap::ChapAlgorithm;
use crate::login::discovery::DiscoveredTarget;
use crate::login::negotiation::OperationalParams;
use crate::scsi::cdb::Cdb;
use crate::scsi::sense::SenseData;
use crate::scsi::Lun;
use crate::wire::pdu::{
    AsyncEvent, Isid, LogoutResponseCode, RejectReason, Residual, ScsiResponseCode, TaskAttr,
    TmfResponse,
};

pub use crate::task_id::TaskId;

/// What the target owes the initiator, from [`Session::expected_input`](crate::initiator::Session::expected_input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpectedInput {
    /// Tasks sent to the target and not yet ended.
    pub tasks: usize,
    /// Bytes expected before the asked-for number of them end.
    pub bytes: usize,
}

pub use crate::network_portal::{NetworkPortal, DEFAULT_PORT};

/// How the initiator authenticates. `Debug` redacts the secrets.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No security negotiation stage: the login starts in the operational
    /// stage.
    #[default]
    None,
    /// CHAP (RFC 7143 section 12.1.3).
    Chap {
        /// CHAP_N we send.
        user: String,
        /// Our secret.
        secret: Vec<u8>,
        /// CHAP_A preference order (MD5 is always added).
        algorithms: Vec<ChapAlgorithm>,
        /// Mutual CHAP: the target's expected name and secret.
        mutual: Option<(String, Vec<u8>)>,
    },
}

impl core::fmt::Debug for Auth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Chap {
                user,
                algorithms,
                mutual,
                ..
            } => f
                .debug_struct("Chap")
                .field("user", user)
                .field("secret", &"<redacted>")
                .field("algorithms", algorithms)
                .field("mutual", &mutual.as_ref().map(|(u, _)| (u, "<redacted>")))
                .finish(),
        }
    }
}

impl Auth {
    /// One-way CHAP with MD5.
    pub fn chap(user: impl Into<String>, secret: impl Into<Vec<u8>>) -> Auth {
        Auth::Chap {
            user: user.into(),
            secret: secret.into(),
            algorithms: vec![ChapAlgorithm::Md5],
            mutual: None,
        }
    }

    /// Mutual CHAP with MD5.
    pub fn mutual_chap(
        user: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        target_user: impl Into<String>,
        target_secret: impl Into<Vec<u8>>,
    ) -> Auth {
        Auth::Chap {
            user: user.into(),
            secret: secret.into(),
            algorithms: vec![ChapAlgorithm::Md5],
            mutual: Some((target_user.into(), target_secret.into())),
        }
    }
}

/// Keepalive: ping the target after `interval` without receiving any PDU;
/// give up on the connection if nothing arrives within `timeout` after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before a ping.
    pub interval: Duration,
    /// Time allowed for any PDU to arrive after the ping.
    pub timeout: Duration,
}

/// Session recovery at ErrorRecoveryLevel 0 (RFC 7143 section 7.1.5):
/// after a connection failure, wait, reconnect, log in again with the same
/// ISID and TSIH 0, and reissue the outstanding tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Reconnection attempts before giving up (per failure).
    pub max_attempts: u32,
    /// Wait before the first attempt (at least DefaultTime2Wait).
    pub initial_backoff: Duration,
    /// Cap on the doubling backoff.
    pub max_backoff: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Everything a [`Session`](super::Session) needs. Build with
/// [`SessionConfig::new`] (RFC defaults) and adjust the public fields or
/// use the `with_*` setters. `Debug` redacts the CHAP secrets and the
/// challenge bytes (later challenges are derived from them).
#[derive(Clone)]
pub struct SessionConfig {
    /// InitiatorName (RFC 7143 section 13.5).
    pub initiator_name: String,
    /// InitiatorAlias (section 13.7).
    pub initiator_alias: Option<String>,
    /// TargetName (section 13.4); `None` makes a discovery session
    /// (SessionType=Discovery, section 13.21).
    pub target_name: Option<String>,
    /// The Initiator Session ID (section 11.12.5). Required: `None` makes
    /// [`Session::new`](super::Session::new) fail with
    /// [`ConfigError::MissingIsid`](crate::error::ConfigError). The core
    /// draws no randomness; the drivers fill an unset ISID with a random
    /// one from the operating system (type 2, "Random"). Keep the ISID
    /// stable across reconnections of one logical session: session
    /// recovery (section 6.3.5) relies on it.
    pub isid: Option<Isid>,
    /// Authentication.
    pub auth: Auth,
    /// Caller-supplied random bytes: the mutual CHAP challenge (its first
    /// byte also seeds our CHAP_I). At least 16 bytes recommended.
    pub chap_challenge: Vec<u8>,
    /// Operational values to offer (section 13).
    pub operational: OperationalParams,
    /// Deadline for TCP connect plus login.
    pub login_timeout: Duration,
    /// Keepalive pings, if wanted.
    pub keepalive: Option<Keepalive>,
    /// Session recovery, if wanted.
    pub recovery: Option<Recovery>,
    /// Login redirections followed before giving up.
    pub max_redirects: u8,
    /// CmdSN of the leading Login Request (section 4.2.2.1: "Command
    /// numbering starts with the first login request").
    pub initial_cmd_sn: u32,
    /// Connection ID of the (single) connection (section 11.12.7).
    pub cid: u16,
    /// Cap on one assembled text response (login or SendTargets), bytes.
    pub max_text_len: usize,
    /// Per-task timeout for SCSI commands, from the moment a command gets
    /// its CmdSN; `None` (the default) waits forever. When it passes the
    /// session escalates as open-iscsi does, one timeout per step: ABORT
    /// TASK (the command then fails with `TaskError::TimedOut`), then
    /// LOGICAL UNIT RESET, then it drops the connection (and recovers if
    /// recovery is configured).
    pub task_timeout: Option<Duration>,
    /// Error recovery above session recovery (RFC 7143 section 7):
    /// the ErrorRecoveryLevel offered and how SNACK-based recovery is
    /// bounded. The default offers level 0 (the session's only recovery
    /// is reinstatement).
    pub error_recovery: ErrorRecovery,
    /// Other portals of the target, tried in this order when a recovery
    /// (any level) reconnects: the first reconnection retries the portal
    /// of the connection that failed, each further attempt moves on to the
    /// next portal in the list (after the configured one), cycling, as long
    /// as `Recovery::max_attempts` allows. Connection recovery
    /// (ErrorRecoveryLevel 2) keeps to the session's target portal group
    /// (RFC 7143 section 4.4.1: a session's connections share one): a
    /// portal with another known `portal_group_tag` is skipped then. At
    /// most [`MAX_FAILOVER_PORTALS`]. See
    /// [`SessionConfig::with_failover_from`] for a SendTargets answer.
    pub failover_portals: Vec<NetworkPortal>,
    /// How new commands are spread over the session's connections when it
    /// has more than one (MC/S, RFC 7143 section 13.2 MaxConnections, set
    /// in `operational.max_connections`; connections are added with
    /// `Session::add_connection`).
    pub spread: Spread,
}

/// Which connection a new command goes out on (MC/S). RFC 7143 section
/// 4.2.2.1: CmdSN is session-wide, so any connection may carry any
/// command; its responses come back on the same one (connection
/// allegiance, section 4.2.5.1, see `Session::task_connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Spread {
    /// Each connection in Full Feature Phase in turn.
    #[default]
    RoundRobin,
    /// The connection with the fewest commands outstanding on it.
    LeastOutstanding,
}

/// The most alternate portals a [`SessionConfig`] may list.
pub const MAX_FAILOVER_PORTALS: usize = 16;

/// MaxOutstandingR2T a [`SessionConfig`] offers unless told otherwise (RFC
/// 7143 section 13.17, result function Minimum: the target's offer bounds
/// it). Several R2Ts per write let the target ask for the next burst
/// before the previous one has arrived; the Data-Out of each goes out in
/// R2T order. Offered as 1 when ErrorRecoveryLevel >= 1 is offered with
/// DataSequenceInOrder=Yes (section 13.19).
pub const DEFAULT_MAX_OUTSTANDING_R2T: u16 = 8;

/// Within-command and within-connection recovery (RFC 7143 sections
/// 7.1.4.1, 7.1.4.2, ErrorRecoveryLevel 1): what the session offers and
/// how long it keeps asking for a lost PDU before falling back to the
/// ErrorRecoveryLevel 0 path (the connection is dropped and, with
/// [`Recovery`] configured, the session reinstated).
///
/// Build with [`ErrorRecovery::level`] and adjust the public fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorRecovery {
    /// ErrorRecoveryLevel offered in the login (RFC 7143 section 13.20:
    /// the result is the lower of both sides' values). 0, 1 or 2 (level 2:
    /// connection recovery within the session, `session/erl2.rs`).
    pub level: u8,
    /// How long a Data or Status SNACK waits for the PDUs it asked for
    /// before it is sent again (RFC 7143 section 7.1.4.1 b: "sequence
    /// reception timeout ... dealt with ... using the option of a
    /// SNACK"). R2T SNACKs are never resent on a timeout (same section:
    /// "an initiator SHOULD NOT originate a SNACK for an R2T based on its
    /// internal timeouts").
    pub snack_timeout: Duration,
    /// SNACK rounds without any progress before the session gives up on
    /// ErrorRecoveryLevel 1 recovery and drops the connection
    /// (`TimerKind::Snack`).
    pub snack_retries: u8,
}

impl ErrorRecovery {
    /// Offer ErrorRecoveryLevel `level`, with a 2 s SNACK timeout and 3
    /// retries.
    pub fn level(level: u8) -> ErrorRecovery {
        ErrorRecovery {
            level,
            snack_timeout: Duration::from_secs(2),
            snack_retries: 3,
        }
    }
}

impl Default for ErrorRecovery {
    fn default() -> Self {
        ErrorRecovery::level(0)
    }
}

impl core::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("initiator_name", &self.initiator_name)
            .field("initiator_alias", &self.initiator_alias)
            .field("target_name", &self.target_name)
            .field("isid", &self.isid)
            .field("auth", &self.auth)
            .field(
                "chap_challenge",
                &format_args!("<{} bytes redacted>", self.chap_challenge.len()),
            )
            .field("operational", &self.operational)
            .field("login_timeout", &self.login_timeout)
            .field("keepalive", &self.keepalive)
            .field("recovery", &self.recovery)
            .field("max_redirects", &self.max_redirects)
            .field("initial_cmd_sn", &self.initial_cmd_sn)
            .field("cid", &self.cid)
            .field("max_text_len", &self.max_text_len)
            .field("task_timeout", &self.task_timeout)
            .field("error_recovery", &self.error_recovery)
            .field("failover_portals", &self.failover_portals)
            .field("spread", &self.spread)
            .finish()
    }
}

impl SessionConfig {
    /// A configuration with RFC 7143 defaults: discovery session, no
    /// authentication, 30 s login timeout, no keepalive, no recovery, 4
    /// redirects, CmdSN 1, and no ISID yet (set one with
    /// [`with_isid`](Self::with_isid), or let a driver draw a random one).
    pub fn new(initiator_name: impl Into<String>) -> SessionConfig {
        SessionConfig {
            initiator_name: initiator_name.into(),
            initiator_alias: None,
            target_name: None,
            isid: None,
            auth: Auth::None,
            chap_challenge: Vec::new(),
            operational: OperationalParams {
                max_outstanding_r2t: DEFAULT_MAX_OUTSTANDING_R2T,
                ..OperationalParams::default()
            },
            login_timeout: Duration::from_secs(30),
            keepalive: None,
            recovery: None,
            max_redirects: 4,
            initial_cmd_sn: 1,
            cid: 0,
            max_text_len: crate::wire::text::DEFAULT_MAX_TEXT_LEN,
            task_timeout: None,
            error_recovery: ErrorRecovery::default(),
            failover_portals: Vec::new(),
            spread: Spread::default(),
        }
    }

    /// Sets TargetName (a normal session).
    pub fn with_target(mut self, target_name: impl Into<String>) -> Self {
        self.target_name = Some(target_name.into());
        self
    }

    /// Sets the ISID.
    pub fn with_isid(mut self, isid: Isid) -> Self {
        self.isid = Some(isid);
        self
    }

    /// Sets authentication and the random bytes for mutual CHAP.
    pub fn with_auth(mut self, auth: Auth, chap_challenge: Vec<u8>) -> Self {
        self.auth = auth;
        self.chap_challenge = chap_challenge;
        self
    }

    /// Sets the operational values.
    pub fn with_operational(mut self, op: OperationalParams) -> Self {
        self.operational = op;
        self
    }

    /// Sets the login timeout.
    pub fn with_login_timeout(mut self, t: Duration) -> Self {
        self.login_timeout = t;
        self
    }

    /// Enables keepalive pings.
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some(Keepalive { interval, timeout });
        self
    }

    /// Sets the per-task timeout (see [`SessionConfig::task_timeout`]).
    pub fn with_task_timeout(mut self, t: Duration) -> Self {
        self.task_timeout = Some(t);
        self
    }

    /// Enables session recovery.
    pub fn with_recovery(mut self, r: Recovery) -> Self {
        self.recovery = Some(r);
        self
    }

    /// Offers ErrorRecoveryLevel `level` (RFC 7143 section 13.20), with
    /// the default SNACK bounds of [`ErrorRecovery::level`].
    pub fn with_error_recovery_level(mut self, level: u8) -> Self {
        self.error_recovery = ErrorRecovery::level(level);
        self
    }

    /// Offers MaxOutstandingR2T `n` (RFC 7143 section 13.17; 1..=65535,
    /// default [`DEFAULT_MAX_OUTSTANDING_R2T`]). With an
    /// ErrorRecoveryLevel of 1 or more and DataSequenceInOrder=Yes the
    /// offer is 1 whatever `n` is (section 13.19).
    pub fn with_max_outstanding_r2t(mut self, n: u16) -> Self {
        self.operational.max_outstanding_r2t = n;
        self
    }

    /// Offers MaxConnections `n` (RFC 7143 section 13.2) and spreads
    /// commands over the connections with `spread`.
    pub fn with_max_connections(mut self, n: u16, spread: Spread) -> Self {
        self.operational.max_connections = n;
        self.spread = spread;
        self
    }

    /// Sets the alternate portals (see [`SessionConfig::failover_portals`]).
    pub fn with_failover_portals(
        mut self,
        portals: impl IntoIterator<Item = NetworkPortal>,
    ) -> Self {
        self.failover_portals = portals.into_iter().collect();
        self
    }

    /// Alternate portals from a SendTargets answer (RFC 7143 section 13.8,
    /// TargetAddress), in the order the target listed them: those of
    /// portal group `tpgt` (every one when `None`), at most
    /// [`MAX_FAILOVER_PORTALS`], duplicates dropped.
    pub fn with_failover_from(mut self, target: &TargetRecord, tpgt: Option<u16>) -> Self {
        let mut out: Vec<NetworkPortal> = Vec::new();
        for a in &target.addresses {
            let p = NetworkPortal::from(a.clone());
            if tpgt.is_some_and(|t| p.portal_group_tag.is_some_and(|g| g != t)) || out.contains(&p)
            {
                continue;
            }
            if out.len() == MAX_FAILOVER_PORTALS {
                break;
            }
            out.push(p);
        }
        self.failover_portals = out;
        self
    }

    /// Sets the CmdSN of the leading login.
    pub fn with_initial_cmd_sn(mut self, sn: u32) -> Self {
        self.initial_cmd_sn = sn;
        self
    }

    /// Whether this is a discovery session.
    pub fn is_discovery(&self) -> bool {
        self.target_name.is_none()
    }
}

/// A SCSI command to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    /// The logical unit (RFC 7143 section 11.3: the LUN field in SAM
    /// encoding): [`Lun::from_number`] for LUN number `n`
    /// (`Lun::from_number(1)` is the wire value `0x0001_0000_0000_0000`).
    pub lun: Lun,
    /// The CDB, 1 to 260 bytes; beyond 16 bytes it travels in an Extended
    /// CDB AHS (section 11.2.2.3). Stored inline up to 16 bytes (no
    /// allocation per command, see [`Cdb`]); reads as a `&[u8]` through
    /// `Deref`.
    pub cdb: Cdb,
    /// Data to write, if any (sent as immediate data, unsolicited and
    /// solicited Data-Out as `Bytes::slice`s: never copied).
    pub data_out: Option<Bytes>,
    /// Bytes expected from the target (0 for none).
    pub expected_read_len: u32,
    /// Task attribute.
    pub attr: TaskAttr,
    /// Whether session recovery may send this command again after a
    /// connection loss (see [`Reissue`]).
    pub reissue: Reissue,
}

/// Whether a command that may have reached the target before a connection
/// loss is sent again after session recovery (RFC 7143 section 6.3.5: the
/// old session's tasks are terminated at reinstatement; whether it ran is
/// unknown). A command that never left the initiator is always sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reissue {
    /// Decided by the CDB: the READ and WRITE families (6/10/12/16 and
    /// 32-byte variants), which leave the same blocks whether they ran
    /// once or twice, plus commands that change nothing (TEST UNIT READY,
    /// INQUIRY, READ CAPACITY, MODE SENSE, REPORT LUNS, SYNCHRONIZE CACHE,
    /// VERIFY). Anything else (COMPARE AND WRITE, PERSISTENT RESERVE OUT,
    /// WRITE AND VERIFY... ) fails with
    /// [`TaskError::OutcomeUnknown`].
    #[default]
    Auto,
    /// Always reissue: the application knows running it twice is harmless.
    Always,
    /// Never reissue: fail with `OutcomeUnknown` once it may have been sent.
    Never,
}

impl Reissue {
    /// Whether a command with `cdb` may run again under this policy.
    pub fn allows(self, cdb: &[u8]) -> bool {
        match self {
            Reissue::Always => true,
            Reissue::Never => false,
            Reissue::Auto => is_repeatable(cdb),
        }
    }
}

/// SBC-3/SPC-4 operation codes whose effect does not depend on whether
/// they already ran once.
fn is_repeatable(cdb: &[u8]) -> bool {
    use crate::scsi::cdb::opcode as op;
    match cdb.first().copied() {
        Some(
            op::TEST_UNIT_READY
            | op::READ_6
            | op::WRITE_6
            | op::INQUIRY
            | op::MODE_SENSE_6
            | op::READ_CAPACITY_10
            | op::READ_10
            | op::WRITE_10
            | op::VERIFY_10
            | op::SYNCHRONIZE_CACHE_10
            | op::MODE_SENSE_10
            | op::READ_16
            | op::WRITE_16
            | op::VERIFY_16
            | op::SYNCHRONIZE_CACHE_16
            | op::REPORT_LUNS
            | op::READ_12
            | op::WRITE_12
            | op::VERIFY_12,
        ) => true,
        // SERVICE ACTION IN(16): READ CAPACITY(16) only.
        Some(op::SERVICE_ACTION_IN_16) => cdb
            .get(1)
            .is_some_and(|sa| sa & 0x1f == op::SAI_READ_CAPACITY_16),
        // Variable length (0x7f, SBC-3 5.x): READ(32) 0x0009, VERIFY(32)
        // 0x000a, WRITE(32) 0x000b.
        Some(0x7f) => matches!(cdb.get(8..10), Some([0x00, 0x09..=0x0b])),
        _ => false,
    }
}

impl ScsiCommand {
    /// A command without data.
    pub fn new(lun: Lun, cdb: impl Into<Cdb>) -> Self {
        ScsiCommand {
            lun,
            cdb: cdb.into(),
            data_out: None,
            expected_read_len: 0,
            attr: TaskAttr::Simple,
            reissue: Reissue::Auto,
        }
    }

    /// A read of up to `len` bytes.
    pub fn read(lun: Lun, cdb: impl Into<Cdb>, len: u32) -> Self {
        ScsiCommand {
            expected_read_len: len,
            ..Self::new(lun, cdb)
        }
    }

    /// A write of `data`.
    pub fn write(lun: Lun, cdb: impl Into<Cdb>, data: Bytes) -> Self {
        ScsiCommand {
            data_out: Some(data),
            ..Self::new(lun, cdb)
        }
    }

    /// A bidirectional command.
    pub fn bidi(lun: Lun, cdb: impl Into<Cdb>, data: Bytes, read_len: u32) -> Self {
        ScsiCommand {
            data_out: Some(data),
            expected_read_len: read_len,
            ..Self::new(lun, cdb)
        }
    }

    /// Sets the task attribute.
    pub fn with_attr(mut self, attr: TaskAttr) -> Self {
        self.attr = attr;
        self
    }

    /// Sets whether recovery may send the command again (see [`Reissue`]).
    pub fn with_reissue(mut self, reissue: Reissue) -> Self {
        self.reissue = reissue;
        self
    }
}

/// How [`Session::logout`](super::Session::logout) treats tasks in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogoutMode {
    /// Refuse new tasks, wait for the outstanding ones, then log out.
    WaitForTasks,
    /// Log out now; outstanding tasks complete with
    /// [`TaskError::LoggedOut`].
    AbortTasks,
}

/// The result of a SCSI command the target completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiResult {
    /// The iSCSI response code (section 11.4.3).
    pub response: ScsiResponseCode,
    /// The SCSI status byte (section 11.4.2); see
    /// [`crate::scsi::ScsiStatus::from_u8`].
    pub status: u8,
    /// Raw sense data (without the SenseLength prefix), if any.
    pub sense: Option<Bytes>,
    /// The sense data decoded, when it parses.
    pub sense_data: Option<SenseData>,
    /// Residual of the (write or unidirectional) transfer (section 11.4.5).
    pub residual: Residual,
    /// Bidirectional read residual (section 11.4.6).
    pub bidi_read_residual: Residual,
    /// Bytes of read data delivered through [`Event::DataIn`].
    pub bytes_read: u32,
}

impl ScsiResult {
    /// True for response "Command Completed at Target" with GOOD status.
    pub fn is_good(&self) -> bool {
        self.response == ScsiResponseCode::CommandCompleted && self.status == 0
    }
}

/// The result of a Logout Request (section 11.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutResult {
    /// Response code (section 11.15.1).
    pub response: LogoutResponseCode,
    /// Time2Wait, seconds (section 11.15.3).
    pub time2wait: u16,
    /// Time2Retain, seconds (section 11.15.4).
    pub time2retain: u16,
    /// Whether a Logout Response arrived. `false`: the target closed the
    /// connection after our Logout Request with no task outstanding, which
    /// ends the session as asked (section 11.14); the other fields are
    /// then the defaults (success, 0, 0).
    pub answered: bool,
}

/// One target from SendTargets.
pub type TargetRecord = DiscoveredTarget;

/// How a task ended. Every task ends exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// A SCSI command completed at the target (any status).
    Scsi(ScsiResult),
    /// SendTargets answered.
    Targets(Vec<TargetRecord>),
    /// A ping answered with this data.
    Pong(Bytes),
    /// A task management function answered.
    TaskManagement(TmfResponse),
    /// The logout completed.
    LoggedOut(LogoutResult),
    /// A Full Feature Phase text negotiation finished (RFC 7143 sections
    /// 11.10, 13.12): the new values are in `Session::negotiated`.
    Negotiated,
    /// The task failed.
    Failed(TaskError),
}

/// An Asynchronous Message from the target (section 11.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncNotice {
    /// AsyncEvent (section 11.9.1).
    pub event: AsyncEvent,
    /// LUN (SCSI events).
    pub lun: u64,
    /// AsyncVCode.
    pub vcode: u8,
    /// Parameter1..3.
    pub parameters: [u16; 3],
    /// Sense data (SCSI events).
    pub sense: Bytes,
    /// iSCSI event data.
    pub event_data: Bytes,
}

/// Something the caller must know or do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Open a TCP connection (to `portal`, or the configured portal when
    /// `None`), then call `handle_connected`. Any previous connection is
    /// dead: close it.
    Connect {
        /// Where to connect; `None` = the configured portal.
        portal: Option<NetworkPortal>,
    },
    /// Full Feature Phase reached; `negotiated()` is `Some`.
    LoggedIn {
        /// The TSIH the target assigned.
        tsih: u16,
    },
    /// Read data for a task, a zero-copy slice of the receive buffer.
    /// After a session recovery a reissued read delivers its data again
    /// from offset 0.
    DataIn {
        /// The task.
        task: TaskId,
        /// Offset in the task's read buffer.
        offset: u32,
        /// The data.
        data: Bytes,
    },
    /// A task ended (exactly once per task).
    Complete {
        /// The task.
        task: TaskId,
        /// How it ended.
        outcome: TaskOutcome,
    },
    /// The target sent an Asynchronous Message.
    AsyncEvent(AsyncNotice),
    /// The target rejected a PDU that belonged to no task (section 11.17).
    Rejected {
        /// The reason.
        reason: RejectReason,
    },
    /// The connection failed; a reconnection follows after `after`
    /// (then an [`Event::Connect`]).
    Recovering {
        /// Attempt number, from 1.
        attempt: u32,
        /// Wait before reconnecting.
        after: Duration,
        /// What failed.
        cause: ConnectionError,
    },
    /// The session was recovered: logged in again, tasks reissued (session
    /// reinstatement, new TSIH), or, at ErrorRecoveryLevel 2, its
    /// connection replaced within the session (same TSIH, after
    /// [`Event::ConnectionRecovered`]).
    Reinstated {
        /// The new TSIH.
        tsih: u16,
    },
    /// ErrorRecoveryLevel 2 (RFC 7143 section 7.1.4.3): the connection
    /// `cid` failed and a new one logged into the same session (same ISID
    /// and TSIH). Its commands in progress were reassigned to it with TASK
    /// REASSIGN (`reassigned`) or, when the target never had them, retried
    /// with their original CmdSN (`retried`); none was sent as a new
    /// command. [`Event::Reinstated`] follows (for drivers).
    ConnectionRecovered {
        /// The connection ID.
        cid: u16,
        /// Tasks moved to the new connection with TASK REASSIGN.
        reassigned: usize,
        /// Commands retried (RFC 7143 section 7.2.1).
        retried: usize,
    },
    /// MC/S (RFC 7143 section 13.2): open a TCP connection for connection
    /// `cid` of this session (to `portal`, or the configured portal when
    /// `None`), then call `Session::handle_connected_on(cid, ..)`. Its
    /// bytes go through `handle_input_on(cid, ..)` /
    /// `poll_transmit_on(cid, ..)`, its end through `handle_closed_on`.
    OpenConnection {
        /// The connection ID.
        cid: u16,
        /// Where to connect; `None` = the configured portal.
        portal: Option<NetworkPortal>,
    },
    /// MC/S: connection `cid` logged into the session and carries
    /// commands now.
    ConnectionUp {
        /// The connection ID.
        cid: u16,
    },
    /// MC/S: connection `cid` is over (logged out when `cause` is `None`);
    /// close its socket and drop its receive buffer. The session goes on.
    CloseConnection {
        /// The connection ID.
        cid: u16,
        /// Why, unless it was logged out.
        cause: Option<ConnectionError>,
    },
    /// The session is over: `None` after a logout, else the reason. Close
    /// the connection.
    Closed(Option<ConnectionError>),
}
