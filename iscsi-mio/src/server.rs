//! An embedded iSCSI target on one `mio` event loop.
//!
//! [`Server`] listens on one portal, accepts any number of connections
//! (one [`iscsi_proto::target::Session`] each, one connection per
//! session) and executes their SCSI commands on logical units shared by
//! all sessions ([`iscsi_lun::LogicalUnit`], one per configured LUN). The
//! loop is single-threaded, so the logical units are plainly owned.
//!
//! The driver holds no protocol logic: it moves bytes between sockets and
//! sessions, runs the sessions' timers, and turns
//! [`TargetEvent::Command`] into [`LogicalUnit::execute`] calls. The
//! values the core wants unpredictable come from here: the TSIH from a
//! counter, the session seed from `/dev/urandom` (read once at bind)
//! mixed with a counter.
//!
//! ```no_run
//! use iscsi_mio::server::{LunSpec, Server, ServerConfig};
//!
//! let mut cfg = ServerConfig::new(
//!     "127.0.0.1:3260".parse().unwrap(),
//!     "iqn.2026-01.example:disk",
//! );
//! cfg.luns.push(LunSpec::Ram(64 << 20));
//! let mut server = Server::bind(cfg).unwrap();
//! let stop = server.shutdown_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(60));
//!     stop.shutdown();
//! });
//! server.run().unwrap();
//! ```
//!
//! Per connection, after every readiness event or timer, the loop runs
//! the core's documented drain order until nothing moves: read what the
//! socket has (bounded by one PDU beyond the receive limit), feed it to
//! `handle_input`, handle every `poll_event`, then write every
//! `poll_transmit` with vectored writes, keeping the unsent remainder when
//! the socket would block (write interest is registered only then).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use iscsi_lun::{
    execute_no_lun, DataDirection, DeviceError, FileDisk, LogicalUnit, LuConfig, NexusId, RamDisk,
    ScsiOutcome, TransportId,
};
use iscsi_proto::login::{ChapCredentials, DigestType, OperationalParams, SessionType};
use iscsi_proto::scsi::sense::asc;
use iscsi_proto::scsi::{Lun, SenseData, SenseKey};
use iscsi_proto::target::{
    CloseReason, ConfigError, Event as TargetEvent, NopConfig, ScsiRequest, Session, SessionConfig,
    TargetAuth, TargetNode, Transmit,
};
use iscsi_proto::wire::{Isid, TmfFunction};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection `i` of the slab uses `Token(FIRST_CONN + i)`.
const FIRST_CONN: usize = 2;

/// Bytes asked of the socket per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Transmits taken from a session ahead of the socket; the rest stay in
/// the session's queue, whose high-water mark throttles decoding.
const MAX_PENDING_TRANSMITS: usize = 64;
/// Most iovecs handed to one `write_vectored` call.
const MAX_IOVECS: usize = 64;
/// Room for one PDU's BHS, AHS, digests and padding beyond its data.
const PDU_OVERHEAD: usize = 48 + 1020 + 4 + 3 + 4;

/// Storage behind one LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LunSpec {
    /// A RAM disk of this many bytes (a multiple of the block size).
    Ram(u64),
    /// An existing file (or block device node), opened read-write; its
    /// size must be a multiple of the block size.
    File(PathBuf),
}

/// Everything [`Server::bind`] needs. Its `Debug` output shows the CHAP
/// user names but never the secrets.
#[derive(Clone)]
pub struct ServerConfig {
    /// The portal to listen on (port 0 picks a free port; see
    /// [`Server::local_addr`]).
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
    /// Whether to print one line per login (and failed login) on stderr.
    pub log: bool,
}

impl ServerConfig {
    /// A configuration with no LUN yet, no authentication, CRC32C digests
    /// accepted but not required, 256 KiB receive segments, 1 MiB bursts,
    /// a 128-deep command window and no NOP-In pings.
    pub fn new(listen: SocketAddr, target_name: impl Into<String>) -> ServerConfig {
        let params = OperationalParams {
            header_digest: vec![DigestType::None, DigestType::Crc32c],
            data_digest: vec![DigestType::None, DigestType::Crc32c],
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 256 * 1024,
            max_outstanding_r2t: 1,
            ..OperationalParams::default()
        };
        ServerConfig {
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
            log: true,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user =
            |c: &Option<(String, String)>| c.as_ref().map(|(u, _)| format!("{u} / <secret>"));
        f.debug_struct("ServerConfig")
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
            .field("log", &self.log)
            .finish()
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A socket or poll operation failed.
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

/// Stops a running [`Server`] from any thread: [`Server::run`] closes
/// every connection and returns.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the server to stop; returns at once. Idempotent.
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::Release);
        // A failed wake leaves nothing to do: the flag is also checked
        // after every poll wake-up.
        let _ = self.waker.wake();
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// What the login told us about a connection's session.
#[derive(Debug, Clone)]
struct LoginInfo {
    session_type: SessionType,
    initiator_name: String,
    isid: Isid,
}

/// One accepted connection.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    session: Session,
    rx: BytesMut,
    /// PDUs taken from the session, not yet fully written; the first one
    /// is `tx_offset` bytes in.
    pending: VecDeque<Transmit>,
    tx_offset: usize,
    /// Edge-triggered readiness as last seen (cleared on `WouldBlock`).
    readable: bool,
    writable: bool,
    /// Whether WRITABLE interest is registered.
    write_interest: bool,
    /// The peer closed its side (or the socket failed).
    eof: bool,
    /// The socket failed: drop the connection without flushing.
    broken: bool,
    login: Option<LoginInfo>,
    nexus: NexusId,
}

/// The embedded iSCSI target: one listener, many sessions, shared LUNs.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    shutdown: ShutdownHandle,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    /// Connections to drive again before the next poll (another session's
    /// event touched them).
    dirty: Vec<usize>,
    lus: Vec<LogicalUnit>,
    lun_list: Vec<Lun>,
    template: SessionConfig,
    rx_cap: usize,
    max_connections: usize,
    log: bool,
    next_tsih: u16,
    seed_base: u64,
    seed_counter: u64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.live)
            .field("luns", &self.lus.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the LUNs' storage, binds the listener and prepares the loop.
    /// Nothing is served until [`run`](Self::run).
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        if config.luns.is_empty() {
            return Err(ServerError::NoLuns);
        }
        if config.luns.len() > usize::from(iscsi_proto::scsi::lun::MAX_FLAT_LUN) + 1 {
            return Err(ServerError::TooManyLuns);
        }
        let lun_list: Vec<Lun> = (0..config.luns.len())
            .map(|i| Lun::from_number(u16::try_from(i).unwrap_or(u16::MAX)))
            .collect();
        let mut lus = Vec::with_capacity(config.luns.len());
        let name_hash = fnv1a(config.target_name.as_bytes(), 0);
        for (i, spec) in config.luns.iter().enumerate() {
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
                    RamDisk::new(*size, config.block_size).map(|d| LogicalUnit::new(d, lu_cfg))
                }
                LunSpec::File(path) => {
                    FileDisk::open(path, config.block_size).map(|d| LogicalUnit::new(d, lu_cfg))
                }
            }
            .map_err(|source| ServerError::Device { lun: i, source })?;
            lus.push(lu);
        }

        let auth = match (&config.chap, &config.mutual_chap) {
            (None, None) => TargetAuth::None,
            (None, Some(_)) => return Err(ServerError::MutualWithoutChap),
            (Some((u, s)), None) => TargetAuth::chap(ChapCredentials::new(u.clone(), s.as_bytes())),
            (Some((u, s)), Some((mu, ms))) => TargetAuth::mutual_chap(
                ChapCredentials::new(u.clone(), s.as_bytes()),
                ChapCredentials::new(mu.clone(), ms.as_bytes()),
            ),
        };
        let mut template = SessionConfig::new(config.target_name.clone());
        template.targets = vec![TargetNode {
            name: config.target_name.clone(),
            alias: config.target_alias.clone(),
            luns: lun_list.iter().map(|l| l.to_u64()).collect(),
        }];
        template.discovery_auth = auth.clone();
        template.auth = auth;
        template.params = config.params.clone();
        template.cmd_window = config.cmd_window;
        template.nop = config.nop_interval.map(|interval| NopConfig {
            interval,
            timeout: config.nop_timeout,
        });
        // Surface configuration errors now rather than at every accept.
        Session::new(template.clone())?;

        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.listen)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let rx_cap = usize::try_from(config.params.max_recv_data_segment_length)
            .unwrap_or(usize::MAX)
            .max(8192)
            .saturating_add(PDU_OVERHEAD)
            .saturating_add(READ_CHUNK);
        Ok(Server {
            poll,
            listener,
            local_addr,
            shutdown: ShutdownHandle {
                flag: Arc::new(AtomicBool::new(false)),
                waker,
            },
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            dirty: Vec::new(),
            lus,
            lun_list,
            template,
            rx_cap,
            max_connections: config.max_connections.max(1),
            log: config.log,
            next_tsih: 1,
            seed_base: startup_seed(),
            seed_counter: 0,
        })
    }

    /// The address the listener is bound to (the real port when the
    /// configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.live
    }

    /// The logical units, LUN 0 first (e.g. to inspect or preload them
    /// before [`run`](Self::run)).
    pub fn logical_units(&mut self) -> &mut [LogicalUnit] {
        &mut self.lus
    }

    /// Serves until [`ShutdownHandle::shutdown`] is called, then closes
    /// every connection and returns. Errors only when polling itself fails.
    pub fn run(&mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(256);
        loop {
            if self.shutdown.is_shutdown() {
                self.close_all();
                return Ok(());
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.close_all();
                return Err(e.into());
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(t) => {
                        let idx = t.wrapping_sub(FIRST_CONN);
                        if let Some(Some(c)) = self.conns.get_mut(idx) {
                            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                                c.readable = true;
                            }
                            if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                                c.writable = true;
                            }
                            self.drive(idx);
                        }
                    }
                }
            }
            self.run_timers();
            while let Some(idx) = self.dirty.pop() {
                self.drive(idx);
            }
        }
    }

    // ----- connections -----

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Per-connection failures (ECONNABORTED, EMFILE) must
                    // not stop the server; the listener stays registered.
                    if self.log {
                        eprintln!("iscsi-mio: accept failed: {e}");
                    }
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if self.live >= self.max_connections {
            if self.log {
                eprintln!("iscsi-mio: {peer}: refused, {} connections open", self.live);
            }
            return;
        }
        let _ = stream.set_nodelay(true);
        let mut cfg = self.template.clone();
        cfg.tsih = self.take_tsih();
        cfg.seed = self.take_seed();
        if let Ok(local) = stream.local_addr() {
            cfg.portals = vec![iscsi_proto::NetworkPortal {
                host: local.ip().to_string(),
                port: local.port(),
                portal_group_tag: Some(cfg.portal_group_tag),
            }];
        }
        let session = match Session::new(cfg) {
            Ok(s) => s,
            Err(e) => {
                if self.log {
                    eprintln!("iscsi-mio: {peer}: session setup failed: {e}");
                }
                return;
            }
        };
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let token = Token(FIRST_CONN + idx);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            if self.log {
                eprintln!("iscsi-mio: {peer}: register failed: {e}");
            }
            self.free.push(idx);
            return;
        }
        if let Some(slot) = self.conns.get_mut(idx) {
            *slot = Some(Conn {
                stream,
                peer,
                session,
                rx: BytesMut::new(),
                pending: VecDeque::new(),
                tx_offset: 0,
                readable: true,
                writable: true,
                write_interest: false,
                eof: false,
                broken: false,
                login: None,
                nexus: NexusId(0),
            });
            self.live += 1;
            self.drive(idx);
        }
    }

    /// Runs the drain loop of one connection until nothing moves, then
    /// closes it if its session is over and its output flushed.
    fn drive(&mut self, idx: usize) {
        let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let now = Instant::now();
        loop {
            let mut progress = false;
            if c.readable && !c.eof && !c.session.is_closed() && c.rx.len() < self.rx_cap {
                progress |= read_some(&mut c, now);
            }
            if !c.rx.is_empty() && !c.session.is_closed() {
                let before = c.rx.len();
                c.session.handle_input(now, &mut c.rx);
                progress |= c.rx.len() != before;
            }
            while let Some(ev) = c.session.poll_event() {
                progress = true;
                self.on_event(idx, &mut c, ev);
            }
            progress |= flush(&mut c, self.poll.registry(), idx, now);
            if !progress || c.broken {
                break;
            }
        }
        let done = c.broken
            || (c.session.is_closed() && c.pending.is_empty())
            || (c.eof && c.pending.is_empty() && c.session.is_closed());
        if done {
            self.finish_conn(idx, c);
        } else if let Some(slot) = self.conns.get_mut(idx) {
            *slot = Some(c);
        }
    }

    fn finish_conn(&mut self, idx: usize, mut c: Conn) {
        let _ = self.poll.registry().deregister(&mut c.stream);
        let _ = c.stream.shutdown(Shutdown::Both);
        self.free.push(idx);
        self.live = self.live.saturating_sub(1);
        if c.login.is_some() && c.nexus != NexusId(0) {
            let shared = self
                .conns
                .iter()
                .flatten()
                .any(|o| o.login.is_some() && o.nexus == c.nexus);
            if !shared {
                for lu in &mut self.lus {
                    lu.nexus_lost(c.nexus);
                }
            }
        }
    }

    fn close_all(&mut self) {
        for idx in 0..self.conns.len() {
            if let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) {
                c.session.close_now();
                // Best effort: what the socket takes right now.
                while c.session.poll_event().is_some() {}
                flush(&mut c, self.poll.registry(), idx, Instant::now());
                self.finish_conn(idx, c);
            }
        }
        self.dirty.clear();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .flatten()
            .filter_map(|c| c.session.poll_timeout())
            .min()
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        for idx in 0..self.conns.len() {
            let due = matches!(
                self.conns.get(idx),
                Some(Some(c)) if c.session.poll_timeout().is_some_and(|t| t <= now)
            );
            if due {
                if let Some(Some(c)) = self.conns.get_mut(idx) {
                    c.session.handle_timeout(now);
                }
                self.drive(idx);
            }
        }
    }

    // ----- events -----

    fn on_event(&mut self, idx: usize, c: &mut Conn, ev: TargetEvent) {
        match ev {
            TargetEvent::LoggedIn {
                session_type,
                initiator_name,
                target_name,
                isid,
                tsih,
                negotiated,
            } => {
                if self.log {
                    eprintln!(
                        "iscsi-mio: login from {}: initiator {} isid {} type {} target {} \
                         tsih {} digests header={} data={}",
                        c.peer,
                        initiator_name,
                        isid_hex(isid),
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
                if session_type == SessionType::Normal {
                    // SCSI's initiator port is the iSCSI initiator name
                    // plus ISID (RFC 7143 section 4.4.1), so the I_T nexus
                    // id is derived from both: a reconnecting initiator
                    // keeps its reservations and unit attentions.
                    c.nexus = nexus_of(&initiator_name, isid);
                    // SPC-4 7.6.4.6: the initiator port's TransportID
                    // (name, ",i,0x", ISID) for READ FULL STATUS.
                    let tid = TransportId::iscsi(&initiator_name, Some(isid.0));
                    for lu in &mut self.lus {
                        lu.set_transport_id(c.nexus, tid.clone());
                    }
                    self.reinstate(idx, &initiator_name, isid);
                }
                c.login = Some(LoginInfo {
                    session_type,
                    initiator_name,
                    isid,
                });
            }
            TargetEvent::LoginFailed { status } if self.log => {
                eprintln!(
                    "iscsi-mio: login from {} failed: {} (initiator {})",
                    c.peer,
                    status,
                    c.session.initiator_name().unwrap_or("-"),
                );
            }
            TargetEvent::Command(req) => {
                let task = req.task;
                let (out, write_len) = self.execute(c.nexus, &req);
                let sense = out.sense_bytes().map(|s| Bytes::copy_from_slice(&s));
                // Commands run to completion here, so the task is always
                // live; an error means the session closed meanwhile.
                let _ = match write_len {
                    Some(n) if req.expected_read_len == 0 => {
                        c.session.complete_write(task, out.status, sense, n)
                    }
                    _ => c.session.complete(task, out.status, sense, out.data_in),
                };
            }
            // Commands run to completion when delivered, so an aborted
            // task is never running here: acknowledge at once, which lets
            // the core send the Task Management response (RFC 7143 section
            // 11.5.1). Commands still queued when the abort came were
            // withdrawn by the core and never reach the logical unit.
            TargetEvent::TaskAborted { task } => {
                let _ = c.session.abort_acknowledged(task);
            }
            TargetEvent::TaskManagement { function, lun, .. } => {
                self.task_management(c.nexus, function, lun);
            }
            // Logouts, peer closes and failed logins (already logged) are
            // routine; anything else is worth a line.
            TargetEvent::Closed { reason }
                if self.log
                    && !matches!(
                        reason,
                        CloseReason::LoggedOut
                            | CloseReason::PeerClosed
                            | CloseReason::LoginFailed(_)
                    ) =>
            {
                eprintln!("iscsi-mio: {}: connection closed: {reason}", c.peer);
            }
            // LoggedOut: the session closes by itself after the response.
            _ => {}
        }
    }

    /// RFC 7143 section 6.3.5 (session reinstatement): a login with the
    /// ISID of an existing session and TSIH 0 replaces it; the target
    /// closes the old session's connections. Sessions are per connection
    /// in the core, so the driver closes the older connection.
    fn reinstate(&mut self, idx: usize, initiator: &str, isid: Isid) {
        for (i, slot) in self.conns.iter_mut().enumerate() {
            if i == idx {
                continue;
            }
            if let Some(o) = slot {
                let same = o.login.as_ref().is_some_and(|l| {
                    l.session_type == SessionType::Normal
                        && l.isid == isid
                        && l.initiator_name == initiator
                });
                if same && !o.session.is_closed() {
                    o.session.close_now();
                    self.dirty.push(i);
                }
            }
        }
    }

    /// Runs one command; also returns the number of bytes its CDB
    /// transfers to the target when it has a Data-Out transfer, for the
    /// write residual.
    fn execute(&mut self, nexus: NexusId, req: &ScsiRequest) -> (ScsiOutcome, Option<u32>) {
        let lun = Lun::from_u64(req.lun);
        let lu = lun.number().and_then(|n| self.lus.get_mut(usize::from(n)));
        match lu {
            Some(lu) => {
                let t = lu.expected_transfer(&req.cdb);
                let write_len = (t.direction == DataDirection::Out)
                    .then(|| u32::try_from(t.length).unwrap_or(u32::MAX));
                (
                    lu.execute_transport(nexus, &req.cdb, &req.data_out),
                    write_len,
                )
            }
            // SPC-4 4.6.14: a LUN that does not exist still answers
            // INQUIRY and REPORT LUNS; everything else is LOGICAL UNIT
            // NOT SUPPORTED.
            None => (execute_no_lun(&req.cdb, &self.lun_list), None),
        }
    }

    /// SAM-5 5.11 / 7.7: a LOGICAL UNIT RESET (or a target reset) sets a
    /// unit attention for every I_T nexus of the logical unit(s) reset.
    fn task_management(&mut self, own: NexusId, function: TmfFunction, lun: u64) {
        let targets: Vec<usize> = match function {
            TmfFunction::LogicalUnitReset => Lun::from_u64(lun)
                .number()
                .map(usize::from)
                .filter(|&n| n < self.lus.len())
                .into_iter()
                .collect(),
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                (0..self.lus.len()).collect()
            }
            _ => return,
        };
        let code = if function == TmfFunction::LogicalUnitReset {
            (0x29, 0x03)
        } else {
            asc::POWER_ON_RESET
        };
        let sense = SenseData::with_code(SenseKey::UnitAttention, code);
        // The connection being driven is out of the slab: add its nexus.
        let mut nexuses: Vec<NexusId> = self
            .conns
            .iter()
            .flatten()
            .filter(|o| o.login.is_some() && o.nexus != NexusId(0))
            .map(|o| o.nexus)
            .collect();
        nexuses.push(own);
        nexuses.sort_unstable();
        nexuses.dedup();
        for i in targets {
            if let Some(lu) = self.lus.get_mut(i) {
                for &n in &nexuses {
                    lu.add_unit_attention(n, sense);
                }
            }
        }
    }

    // ----- randomness and counters -----

    fn take_tsih(&mut self) -> u16 {
        // RFC 7143 section 11.12.6: the TSIH is non-zero.
        let t = self.next_tsih;
        self.next_tsih = self.next_tsih.wrapping_add(1).max(1);
        t
    }

    fn take_seed(&mut self) -> u64 {
        self.seed_counter = self.seed_counter.wrapping_add(1);
        splitmix(self.seed_base ^ splitmix(self.seed_counter))
    }
}

// ----- socket plumbing -----

/// Reads one chunk into the receive buffer. Returns whether bytes came.
fn read_some(c: &mut Conn, now: Instant) -> bool {
    let start = c.rx.len();
    c.rx.resize(start + READ_CHUNK, 0);
    let r = c.stream.read(c.rx.get_mut(start..).unwrap_or(&mut []));
    match r {
        Ok(0) => {
            c.rx.truncate(start);
            c.eof = true;
            c.session.handle_closed(now);
            true
        }
        Ok(n) => {
            c.rx.truncate(start + n);
            true
        }
        Err(e) => {
            c.rx.truncate(start);
            match e.kind() {
                io::ErrorKind::WouldBlock => c.readable = false,
                io::ErrorKind::Interrupted => {}
                _ => {
                    c.eof = true;
                    c.broken = true;
                    c.session.handle_closed(now);
                }
            }
            false
        }
    }
}

/// Writes as much pending output as the socket takes; keeps the unsent
/// remainder and registers write interest while some is left. Returns
/// whether anything was written or taken from the session.
fn flush(c: &mut Conn, registry: &Registry, idx: usize, now: Instant) -> bool {
    let mut progress = false;
    loop {
        while c.pending.len() < MAX_PENDING_TRANSMITS {
            match c.session.poll_transmit(now) {
                Some(t) => {
                    c.pending.push_back(t);
                    progress = true;
                }
                None => break,
            }
        }
        if c.pending.is_empty() || !c.writable || c.broken {
            break;
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n_iov = 0usize;
        let mut skip = c.tx_offset;
        'fill: for t in &c.pending {
            for part in t.parts() {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                let Some(slot) = iov.get_mut(n_iov) else {
                    break 'fill;
                };
                *slot = IoSlice::new(part.get(skip..).unwrap_or(&[]));
                skip = 0;
                n_iov += 1;
            }
        }
        match c.stream.write_vectored(iov.get(..n_iov).unwrap_or(&[])) {
            Ok(0) => {
                c.broken = true;
                break;
            }
            Ok(n) => {
                progress = true;
                advance(c, n);
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => {
                    c.writable = false;
                    break;
                }
                io::ErrorKind::Interrupted => {}
                _ => {
                    c.broken = true;
                    c.session.handle_closed(now);
                    break;
                }
            },
        }
    }
    let want = !c.pending.is_empty() && !c.broken;
    if want != c.write_interest {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let token = Token(FIRST_CONN + idx);
        if registry.reregister(&mut c.stream, token, interest).is_err() {
            c.broken = true;
        }
        c.write_interest = want;
    }
    progress
}

/// Drops `n` written bytes from the front of the pending output.
fn advance(c: &mut Conn, mut n: usize) {
    while let Some(front) = c.pending.front() {
        let left = front.len().saturating_sub(c.tx_offset);
        if n >= left {
            n -= left;
            c.pending.pop_front();
            c.tx_offset = 0;
        } else {
            c.tx_offset += n;
            return;
        }
    }
}

// ----- small helpers -----

fn digest_name(on: bool) -> &'static str {
    if on {
        "CRC32C"
    } else {
        "None"
    }
}

fn isid_hex(isid: Isid) -> String {
    isid.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    if h == 0 {
        h = 0xcbf2_9ce4_8422_2325;
    }
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A non-zero NexusId from the initiator port name (InitiatorName + ISID).
fn nexus_of(initiator: &str, isid: Isid) -> NexusId {
    let h = fnv1a(&isid.0, fnv1a(initiator.as_bytes(), 0));
    NexusId(h.max(1))
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Eight bytes from `/dev/urandom`, read once; falls back to the clock
/// and process id where that device does not exist.
fn startup_seed() -> u64 {
    let mut b = [0u8; 8];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if ok {
        return u64::from_le_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    splitmix(t ^ u64::from(std::process::id()).rotate_left(32))
}
