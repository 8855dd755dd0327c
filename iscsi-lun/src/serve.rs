//! [`Target`]: the embedded target without sockets. It owns an
//! [`iscsi_proto::target::Portal`] and the [`LogicalUnit`]s, runs the
//! portal's SCSI commands on them as they arrive (to completion, so a
//! command is never running when a task management request comes) and
//! applies the portal's I_T nexus events to them: reservation
//! TransportIDs when a nexus logs in, unit attentions after a reset,
//! per-nexus state dropped when a nexus is lost.
//!
//! A driver (e.g. `iscsi_mio::server`) moves bytes: it calls
//! [`accept`](Target::accept), [`handle_input`](Target::handle_input),
//! [`handle_closed`](Target::handle_closed),
//! [`handle_timeout`](Target::handle_timeout), then writes what
//! [`portal_mut`](Target::portal_mut)`().poll_transmit(..)` gives for the
//! connection it fed and for every `poll_touched()`, and
//! [`remove`](Target::remove)s a connection once it
//! [is closed](iscsi_proto::target::Portal::is_closed) and flushed.

use iscsi_proto::time::Instant;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iscsi_proto::login::{ChapCredentials, DigestType, OperationalParams, SessionType};
use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::{Lun, SenseData, SenseKey};
use iscsi_proto::target::{
    CloseReason, ConfigError, ConnectionHandle, NexusId, NopConfig, Portal, PortalConfig,
    PortalEvent, ResetScope, ScsiRequest, SessionConfig, TargetAuth, TargetNode,
};

use crate::{
    execute_no_lun, DataDirection, DeviceError, FileDisk, LogicalUnit, LuConfig, RamDisk,
    ScsiOutcome, TransportId,
};

/// Storage behind one LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LunSpec {
    /// A RAM disk of this many bytes (a multiple of the block size).
    Ram(u64),
    /// An existing file (or block device node), opened read-write; its
    /// size must be a multiple of the block size.
    File(PathBuf),
}

/// Everything a [`Target`] (and a driver serving it) needs. Its `Debug`
/// output shows the CHAP user names but never the secrets.
///
/// `#[non_exhaustive]`: build it with [`TargetConfig::new`] and the
/// `with_*` methods (or assign fields of a value you have):
///
/// ```
/// use iscsi_lun::{LunSpec, TargetConfig};
/// let cfg = TargetConfig::new("127.0.0.1:3260".parse().unwrap(), "iqn.2026-01.example:disk")
///     .with_luns(vec![LunSpec::Ram(64 << 20)])
///     .with_block_size(4096)
///     .with_log(false);
/// assert_eq!(cfg.block_size, 4096);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct TargetConfig {
    /// The portal to listen on (for the driver; port 0 picks a free port).
    pub listen: SocketAddr,
    /// The iSCSI name of the one target node served (RFC 7143 section 4.2.7).
    pub target_name: String,
    /// TargetAlias sent at login (RFC 7143 section 13.6).
    pub target_alias: Option<String>,
    /// The LUNs, in order: the first is LUN 0, the next LUN 1, ...
    pub luns: Vec<LunSpec>,
    /// Logical block size of every LUN (512..=65536, a power of two).
    pub block_size: u32,
    /// CHAP: the initiator's user name and secret; `None` serves without
    /// authentication (RFC 7143 section 12.1.3).
    pub chap: Option<(String, String)>,
    /// Mutual CHAP: the target's user name and secret, used when the
    /// initiator challenges the target (needs `chap`).
    pub mutual_chap: Option<(String, String)>,
    /// Idle time after which the target pings with a NOP-In (RFC 7143
    /// section 11.19); `None` never pings.
    pub nop_interval: Option<Duration>,
    /// How long a NOP-In ping may stay unanswered before the connection
    /// is dropped.
    pub nop_timeout: Duration,
    /// Operational values the target offers or accepts (digests, burst
    /// lengths, R2T policy, its MaxRecvDataSegmentLength).
    pub params: OperationalParams,
    /// Command window depth per session.
    pub cmd_window: u32,
    /// Most connections served at once; more are accepted and closed.
    pub max_connections: usize,
    /// At ErrorRecoveryLevel >= 1 (`params.error_recovery_level`): bytes
    /// kept per session for retransmission
    /// ([`SessionConfig::retention_budget`]).
    pub retention_budget: usize,
    /// Whether to print one line per login (and failed login) on stderr.
    pub log: bool,
}

impl TargetConfig {
    /// A configuration with no LUN yet, no authentication, CRC32C digests
    /// accepted but not required, 256 KiB receive segments, 1 MiB bursts,
    /// a 128-deep command window and no NOP-In pings.
    pub fn new(listen: SocketAddr, target_name: impl Into<String>) -> TargetConfig {
        let params = OperationalParams {
            header_digest: vec![DigestType::None, DigestType::Crc32c],
            data_digest: vec![DigestType::None, DigestType::Crc32c],
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 256 * 1024,
            max_outstanding_r2t: 1,
            ..OperationalParams::default()
        };
        TargetConfig {
            listen,
            target_name: target_name.into(),
            target_alias: None,
            luns: Vec::new(),
            block_size: 512,
            chap: None,
            mutual_chap: None,
            nop_interval: None,
            nop_timeout: Duration::from_secs(30),
            params,
            cmd_window: 128,
            max_connections: 256,
            retention_budget: 4 << 20,
            log: true,
        }
    }

    crate::util::with_fields! {
        /// Sets [`listen`](Self::listen).
        with_listen: listen: SocketAddr,
        /// Sets [`target_name`](Self::target_name).
        with_target_name: target_name: String,
        /// Sets [`target_alias`](Self::target_alias).
        with_target_alias: target_alias: Option<String>,
        /// Sets [`luns`](Self::luns).
        with_luns: luns: Vec<LunSpec>,
        /// Sets [`block_size`](Self::block_size).
        with_block_size: block_size: u32,
        /// Sets [`chap`](Self::chap).
        with_chap: chap: Option<(String, String)>,
        /// Sets [`mutual_chap`](Self::mutual_chap).
        with_mutual_chap: mutual_chap: Option<(String, String)>,
        /// Sets [`nop_interval`](Self::nop_interval).
        with_nop_interval: nop_interval: Option<Duration>,
        /// Sets [`nop_timeout`](Self::nop_timeout).
        with_nop_timeout: nop_timeout: Duration,
        /// Sets [`params`](Self::params).
        with_params: params: OperationalParams,
        /// Sets [`cmd_window`](Self::cmd_window).
        with_cmd_window: cmd_window: u32,
        /// Sets [`max_connections`](Self::max_connections).
        with_max_connections: max_connections: usize,
        /// Sets [`retention_budget`](Self::retention_budget).
        with_retention_budget: retention_budget: usize,
        /// Sets [`log`](Self::log).
        with_log: log: bool,
    }

    /// The session configuration every connection starts from.
    pub fn session_config(&self) -> Result<SessionConfig, TargetError> {
        let auth = match (&self.chap, &self.mutual_chap) {
            (None, None) => TargetAuth::None,
            (None, Some(_)) => return Err(TargetError::MutualWithoutChap),
            (Some((u, s)), None) => TargetAuth::chap(ChapCredentials::new(u.clone(), s.as_bytes())),
            (Some((u, s)), Some((mu, ms))) => TargetAuth::mutual_chap(
                ChapCredentials::new(u.clone(), s.as_bytes()),
                ChapCredentials::new(mu.clone(), ms.as_bytes()),
            ),
        };
        let mut s = SessionConfig::new(self.target_name.clone());
        s.targets = vec![TargetNode {
            name: self.target_name.clone(),
            alias: self.target_alias.clone(),
            luns: (0..self.luns.len())
                .map(|i| lun_number(i).to_u64())
                .collect(),
        }];
        s.discovery_auth = auth.clone();
        s.auth = auth;
        s.params = self.params.clone();
        s.cmd_window = self.cmd_window;
        s.retention_budget = self.retention_budget;
        s.nop = self.nop_interval.map(|interval| NopConfig {
            interval,
            timeout: self.nop_timeout,
        });
        Ok(s)
    }

    /// Opens the storage of every LUN.
    pub fn logical_units(&self) -> Result<Vec<LogicalUnit>, TargetError> {
        if self.luns.is_empty() {
            return Err(TargetError::NoLuns);
        }
        if self.luns.len() > usize::from(iscsi_proto::scsi::lun::MAX_FLAT_LUN) + 1 {
            return Err(TargetError::TooManyLuns);
        }
        let lun_list: Vec<Lun> = (0..self.luns.len()).map(lun_number).collect();
        let name_hash = fnv1a(self.target_name.as_bytes());
        let mut lus = Vec::with_capacity(self.luns.len());
        for (i, spec) in self.luns.iter().enumerate() {
            let lu_cfg = LuConfig {
                serial: format!("{:012x}{:04x}", name_hash & 0xffff_ffff_ffff, i),
                luns: lun_list.clone(),
                // Block Limits VPD (SBC-3 6.6.4) kept within what
                // initiators expect: UNMAP at most 1 Mi blocks per
                // command (libiscsi's BlockLimits check), WRITE SAME no
                // longer than the MAXIMUM TRANSFER LENGTH.
                max_unmap_blocks: 1 << 20,
                max_write_same_blocks: LuConfig::default().max_transfer_blocks,
                ..LuConfig::default()
            };
            let lu = match spec {
                LunSpec::Ram(size) => {
                    RamDisk::new(*size, self.block_size).map(|d| LogicalUnit::new(d, lu_cfg))
                }
                LunSpec::File(path) => {
                    FileDisk::open(path, self.block_size).map(|d| LogicalUnit::new(d, lu_cfg))
                }
            }
            .map_err(|source| TargetError::Device { lun: i, source })?;
            lus.push(lu);
        }
        Ok(lus)
    }
}

impl std::fmt::Debug for TargetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user =
            |c: &Option<(String, String)>| c.as_ref().map(|(u, _)| format!("{u} / <secret>"));
        f.debug_struct("TargetConfig")
            .field("listen", &self.listen)
            .field("target_name", &self.target_name)
            .field("target_alias", &self.target_alias)
            .field("luns", &self.luns)
            .field("block_size", &self.block_size)
            .field("chap", &user(&self.chap))
            .field("mutual_chap", &user(&self.mutual_chap))
            .field("nop_interval", &self.nop_interval)
            .field("nop_timeout", &self.nop_timeout)
            .field("params", &self.params)
            .field("cmd_window", &self.cmd_window)
            .field("max_connections", &self.max_connections)
            .field("retention_budget", &self.retention_budget)
            .field("log", &self.log)
            .finish()
    }
}

/// Why a target could not start, or its driver stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// A socket or poll operation of the driver failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A LUN's storage could not be set up.
    #[error("LUN {lun}: {source}")]
    Device {
        /// The LUN number.
        lun: usize,
        /// What went wrong.
        #[source]
        source: DeviceError,
    },
    /// No LUN was configured.
    #[error("no LUN configured")]
    NoLuns,
    /// More LUNs than flat space addressing can name (SAM-5 4.6.7).
    #[error("at most 16384 LUNs can be served")]
    TooManyLuns,
    /// Mutual CHAP was asked for without CHAP (RFC 7143 section 12.1.3:
    /// the target answers a challenge only after the initiator's).
    #[error("mutual CHAP needs CHAP (RFC 7143 section 12.1.3)")]
    MutualWithoutChap,
    /// The target session configuration is unusable.
    #[error("target configuration: {0}")]
    Config(#[from] ConfigError),
}

/// The embedded target's protocol side: a [`Portal`] and the logical
/// units its commands run on. See the module documentation.
#[derive(Debug)]
pub struct Target {
    portal: Portal,
    lus: Vec<LogicalUnit>,
    lun_list: Vec<Lun>,
    /// Peer address per connection slot, for the log lines.
    peers: Vec<Option<SocketAddr>>,
    log: bool,
}

impl Target {
    /// Opens the LUNs of `config` and prepares the portal; `seed` (OS
    /// randomness, drawn once by the driver) seeds every session.
    pub fn new(config: &TargetConfig, seed: u64) -> Result<Target, TargetError> {
        let lus = config.logical_units()?;
        let mut portal = PortalConfig::new(config.session_config()?);
        portal.max_connections = config.max_connections;
        let mut t = Target::with_logical_units(Portal::new(portal, seed)?, lus);
        t.log = config.log;
        Ok(t)
    }

    /// A target over a ready portal and logical units (LUN 0 first), not
    /// logging.
    pub fn with_logical_units(portal: Portal, lus: Vec<LogicalUnit>) -> Target {
        let lun_list = (0..lus.len()).map(lun_number).collect();
        Target {
            portal,
            lus,
            lun_list,
            peers: Vec::new(),
            log: false,
        }
    }

    /// The portal (its outputs: `poll_transmit`, `poll_touched`,
    /// `poll_timeout`, `is_closed`).
    pub fn portal_mut(&mut self) -> &mut Portal {
        &mut self.portal
    }

    /// The portal, read-only.
    pub fn portal(&self) -> &Portal {
        &self.portal
    }

    /// The logical units, LUN 0 first.
    pub fn logical_units(&mut self) -> &mut [LogicalUnit] {
        &mut self.lus
    }

    /// A TCP connection from `peer` arrived on `local`. `None` when the
    /// portal refuses it (too many connections): close the socket.
    pub fn accept(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        peer: Option<SocketAddr>,
    ) -> Option<ConnectionHandle> {
        match self.portal.accept(now, local) {
            Ok(h) => {
                if self.peers.len() <= h.index() {
                    self.peers.resize(h.index() + 1, None);
                }
                if let Some(p) = self.peers.get_mut(h.index()) {
                    *p = peer;
                }
                Some(h)
            }
            Err(e) => {
                if self.log {
                    eprintln!("iscsi target: {}: refused: {e}", show(peer));
                }
                None
            }
        }
    }

    /// Bytes read from connection `h`; runs what they carry.
    pub fn handle_input(&mut self, h: ConnectionHandle, now: Instant, buf: &mut BytesMut) {
        self.portal.handle_input(h, now, buf);
        self.run_events();
    }

    /// The peer closed connection `h`, or its socket failed.
    pub fn handle_closed(&mut self, h: ConnectionHandle, now: Instant) {
        self.portal.handle_closed(h, now);
        self.run_events();
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.portal.handle_timeout(now);
        self.run_events();
    }

    /// Closes connection `h` without a word (e.g. at shutdown).
    pub fn close_now(&mut self, h: ConnectionHandle) {
        self.portal.close_now(h);
        self.run_events();
    }

    /// The driver closed the socket of `h` (after [`Portal::is_closed`]).
    pub fn remove(&mut self, h: ConnectionHandle) {
        self.portal.remove(h);
        if let Some(p) = self.peers.get_mut(h.index()) {
            *p = None;
        }
        self.run_events();
    }

    /// Handles every pending portal event.
    pub fn run_events(&mut self) {
        while let Some(ev) = self.portal.poll_event() {
            self.on_event(ev);
        }
    }

    fn peer(&self, h: ConnectionHandle) -> String {
        show(self.peers.get(h.index()).copied().flatten())
    }

    fn on_event(&mut self, ev: PortalEvent) {
        match ev {
            PortalEvent::LoggedIn {
                connection,
                session_type,
                initiator_name,
                target_name,
                isid,
                tsih,
                negotiated,
                ..
            } if self.log => {
                eprintln!(
                    "iscsi target: login from {}: initiator {} isid {} type {} target {} \
                     tsih {} digests header={} data={}",
                    self.peer(connection),
                    initiator_name,
                    isid.0
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                    match session_type {
                        SessionType::Normal => "Normal",
                        SessionType::Discovery => "Discovery",
                    },
                    target_name.as_deref().unwrap_or("-"),
                    tsih,
                    digest_name(negotiated.header_digest),
                    digest_name(negotiated.data_digest),
                );
            }
            PortalEvent::ConnectionJoined {
                connection,
                tsih,
                cid,
                reinstated,
            } if self.log => {
                eprintln!(
                    "iscsi target: {} joined session tsih {tsih} as cid {cid}{}",
                    self.peer(connection),
                    if reinstated.is_some() {
                        " (connection reinstatement)"
                    } else {
                        ""
                    },
                );
            }
            PortalEvent::LoginFailed {
                connection,
                status,
                initiator_name,
            } if self.log => {
                eprintln!(
                    "iscsi target: login from {} failed: {} (initiator {})",
                    self.peer(connection),
                    status,
                    initiator_name.as_deref().unwrap_or("-"),
                );
            }
            // SPC-4 7.6.4.6: the initiator port's TransportID (name,
            // ",i,0x", ISID) for READ FULL STATUS, kept per I_T nexus.
            PortalEvent::NexusCreated {
                nexus,
                initiator_name,
                isid,
            }
            | PortalEvent::SessionReinstated {
                nexus,
                initiator_name,
                isid,
                ..
            } => {
                let tid = TransportId::iscsi(&initiator_name, Some(isid.0));
                for lu in &mut self.lus {
                    lu.set_transport_id(nexus, tid.clone());
                }
            }
            PortalEvent::NexusLost { nexus } => {
                for lu in &mut self.lus {
                    lu.nexus_lost(nexus);
                }
            }
            PortalEvent::Command {
                connection,
                nexus,
                request,
            } => self.command(connection, nexus, &request),
            // Commands run to completion when delivered, so an aborted
            // task is never running here: acknowledge at once, which lets
            // the core send the Task Management response (RFC 7143 section
            // 11.5.1). An error means the connection closed meanwhile.
            PortalEvent::TaskAborted { connection, task } => {
                let _ = self.portal.abort_acknowledged(connection, task);
            }
            PortalEvent::Reset { scope, nexuses, .. } => self.reset(scope, &nexuses),
            // Logouts, peer closes and failed logins (already logged) are
            // routine; anything else is worth a line.
            PortalEvent::Closed { connection, reason }
                if self.log
                    && !matches!(
                        reason,
                        CloseReason::LoggedOut
                            | CloseReason::PeerClosed
                            | CloseReason::LoginFailed(_)
                    ) =>
            {
                eprintln!(
                    "iscsi target: {}: connection closed: {reason}",
                    self.peer(connection)
                );
            }
            _ => {}
        }
    }

    /// Runs one command and completes it.
    fn command(&mut self, h: ConnectionHandle, nexus: NexusId, req: &ScsiRequest) {
        let (out, written) = run_command(&mut self.lus, &self.lun_list, nexus, req);
        let sense = out.sense_bytes().map(|s| Bytes::copy_from_slice(&s));
        // The task is live (commands run to completion here); an error
        // means the connection closed meanwhile.
        let _ = match written {
            Some(n) => self
                .portal
                .complete_write(h, req.task, out.status, sense, n),
            None => self
                .portal
                .complete(h, req.task, out.status, sense, out.data_in),
        };
    }

    /// SAM-5 6.3.3 and 5.14: a logical unit reset establishes a unit
    /// attention (BUS DEVICE RESET FUNCTION OCCURRED, 29/03) for every I_T
    /// nexus of the logical unit; a target reset (SAM-5 6.3.2) resets every
    /// logical unit (POWER ON, RESET, OR BUS DEVICE RESET OCCURRED, 29/00).
    fn reset(&mut self, scope: ResetScope, nexuses: &[NexusId]) {
        let (lus, code): (Vec<usize>, _) = match scope {
            ResetScope::LogicalUnit(lun) => (
                Lun::from_u64(lun)
                    .number()
                    .map(usize::from)
                    .filter(|&n| n < self.lus.len())
                    .into_iter()
                    .collect(),
                (0x29, 0x03),
            ),
            ResetScope::Target { .. } => ((0..self.lus.len()).collect(), asc::POWER_ON_RESET),
            _ => return,
        };
        let sense = SenseData::with_code(SenseKey::UnitAttention, code);
        for i in lus {
            if let Some(lu) = self.lus.get_mut(i) {
                for &n in nexuses {
                    lu.add_unit_attention(n, sense);
                }
            }
        }
    }
}

fn lun_number(i: usize) -> Lun {
    Lun::from_number(u16::try_from(i).unwrap_or(u16::MAX))
}

fn show(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "-".to_owned(), |p| p.to_string())
}

fn digest_name(on: bool) -> &'static str {
    if on {
        "CRC32C"
    } else {
        "None"
    }
}

/// 64-bit FNV-1a (the LU serial numbers derive from the target name).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Runs `req` on its logical unit (LUN n is `lus[n]`) for `nexus`: what a
/// target does with every [`ScsiRequest`]. A LUN without a unit still
/// answers INQUIRY and REPORT LUNS (SPC-4 4.6.14) from `lun_list`. Returns
/// the outcome and, for a command that moves data only to the target, the
/// length to acknowledge with `complete_write` (no Data-In to send).
pub fn run_command(
    lus: &mut [LogicalUnit],
    lun_list: &[Lun],
    nexus: NexusId,
    req: &ScsiRequest,
) -> (ScsiOutcome, Option<u32>) {
    let lun = Lun::from_u64(req.lun);
    match lun.number().and_then(|n| lus.get_mut(usize::from(n))) {
        Some(lu) => {
            let t = lu.expected_transfer(&req.cdb);
            let written = (t.direction == DataDirection::Out && req.expected_read_len == 0)
                .then(|| u32::try_from(t.length).unwrap_or(u32::MAX));
            (
                lu.execute_transport(nexus, &req.cdb, &req.data_out),
                written,
            )
        }
        None => (execute_no_lun(&req.cdb, lun_list), None),
    }
}
