//! The `iscsi` command-line tool: an iSCSI initiator for storage engineers,
//! built on the `iscsi-proto` sans-IO core and one of its drivers
//! (`--driver std|mio|smol|tokio`, see [`driver`]).
//!
//! Every failure is one line on stderr and a non-zero exit status.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
// Doc comments here are clap's help text (`iscsi://host[:port]/...`), not
// rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod fuzz;
mod logging;
mod pcap;
mod scale;
mod serve;
mod url;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use iscsi_proto::initiator::{Auth, ScsiCommand, SessionConfig, Spread};
use iscsi_proto::login::negotiation::{DigestType, OperationalParams};
use iscsi_proto::scsi::cdb::{self, StandardInquiry};
use iscsi_proto::scsi::lun::Lun;
use iscsi_proto::wire::pdu::Isid;
use iscsi_std::{Direction, Options};

use iscsi_cli::{bench, driver, tool};

use crate::driver::{DriverKind, Session};
use crate::tool::{exec, read_capacity, tuned_params};

use crate::pcap::PcapWriter;
use crate::url::IscsiUrl;

/// iSCSI initiator tool on a sans-IO RFC 7143 core.
#[derive(Parser, Debug)]
#[command(name = "iscsi", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Our iSCSI name (RFC 7143 section 4.2.7).
    #[arg(long, global = true, default_value = "iqn.2026-11.rs.iscsi:initiator")]
    initiator_name: String,
    /// Mutual CHAP: the target's user name and secret, USER:SECRET.
    #[arg(long, global = true, value_name = "USER:SECRET")]
    mutual_chap: Option<String>,
    /// HeaderDigest to offer.
    #[arg(long, global = true, value_enum, default_value_t = DigestArg::None)]
    header_digest: DigestArg,
    /// DataDigest to offer.
    #[arg(long, global = true, value_enum, default_value_t = DigestArg::None)]
    data_digest: DigestArg,
    /// Write the session's PDUs to this pcap file (Wireshark/tshark), the
    /// target side on port 3260 so dissectors decode iSCSI without `-d`;
    /// works with every driver (the byte tap is in the shared driver core).
    #[arg(long, global = true, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Seconds to wait for the TCP connection and the login, and for an
    /// answer to a keepalive NOP-Out once the target has been silent that
    /// long.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// More log output on stderr: -v negotiation, logins, logouts and
    /// recovery; -vv also window changes, NOP-In answers, connections;
    /// -vvv every received PDU (ISCSI_LOG=TARGET=LEVEL,... overrides).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Receive coalescing: with many commands in flight, wake when up to N
    /// of them have been answered (SO_RCVLOWAT, held at most 1 ms) rather
    /// than for each; 0 turns it off.
    #[arg(long, global = true, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(0..=64))]
    coalesce: u16,
    /// Turn session recovery off. By default a lost connection is
    /// recovered as at ErrorRecoveryLevel 0 (RFC 7143 section 6.3.5): the
    /// tool logs in again with the same ISID and reissues the commands in
    /// flight (its READs and WRITEs are idempotent), and after a logout
    /// the target asked for (AsyncEvent 1) it logs in again and goes on.
    /// With this flag either ends the command with an error.
    #[arg(long, global = true)]
    no_recovery: bool,
    /// The initiator driver: blocking std sockets, a mio event loop, or the
    /// async smol or tokio driver (on its own thread).
    #[arg(long, global = true, value_enum, default_value_t = DriverKind::Std)]
    driver: DriverKind,
    /// ErrorRecoveryLevel to offer (RFC 7143 section 13.20): 0 recovers a
    /// lost connection by logging in again, 1 also retransmits a PDU lost
    /// to a digest error (SNACK), 2 also replaces a lost connection within
    /// the session (TASK REASSIGN). The target may agree to less.
    #[arg(long, global = true, value_name = "0|1|2", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=2))]
    erl: u8,
    /// Connections per session to offer (MaxConnections, RFC 7143 section
    /// 13.2): the driver opens as many as the target agrees to and spreads
    /// the commands over them round-robin.
    #[arg(long, global = true, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=16))]
    connections: u16,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum DigestArg {
    None,
    Crc32c,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List targets and portals (SendTargets=All): `IQN ADDRESS:PORT,TPGT`.
    Discover {
        /// HOST[:PORT] (or an iscsi:// URL for its credentials).
        portal: String,
    },
    /// Standard INQUIRY of a LUN.
    Inquiry {
        /// iscsi://[user[%secret]@]host[:port]/target-iqn/lun
        url: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// READ CAPACITY: size in bytes and blocks.
    Readcap {
        /// iscsi://[user[%secret]@]host[:port]/target-iqn/lun
        url: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read blocks to a file or stdout (raw bytes).
    Read {
        /// iscsi://[user[%secret]@]host[:port]/target-iqn/lun
        url: String,
        /// First logical block.
        #[arg(long)]
        lba: u64,
        /// Number of blocks.
        #[arg(long)]
        blocks: u32,
        /// Output file (default: stdout).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Benchmark one LUN: live progress, then IOPS, MB/s, latency and CPU per I/O.
    Bench {
        /// iscsi://[user[%secret]@]host[:port]/target-iqn/lun
        url: String,
        /// Commands kept in flight.
        #[arg(long, default_value_t = 32)]
        qd: usize,
        /// Bytes per command.
        #[arg(long, default_value_t = 4096)]
        bs: u32,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Access pattern.
        #[arg(long, value_enum, default_value_t = bench::Pattern::Randread)]
        pattern: bench::Pattern,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Draw IOPS over time and the latency histogram to this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
    /// Serve LUNs as an iSCSI target (the embedded target, on mio); Ctrl-C stops.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3260")]
        listen: String,
        /// Target name.
        #[arg(long, default_value = "iqn.2026-11.rs.iscsi:target")]
        target: String,
        /// A LUN: ram:SIZE (e.g. ram:64M) or file:PATH; LUN 0 is the first.
        #[arg(long = "lun", value_name = "ram:SIZE|file:PATH")]
        luns: Vec<String>,
        /// Require CHAP from initiators: USER:SECRET.
        #[arg(long, value_name = "USER:SECRET")]
        chap: Option<String>,
        /// Highest ErrorRecoveryLevel offered (RFC 7143 section 13.20).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
        erl: u8,
        /// Most connections per session offered (MaxConnections, RFC 7143
        /// section 13.2; more than 1 is MC/S).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        session_connections: u16,
        /// Most TCP connections served at once; one more is closed at
        /// once and logged (the listen backlog is sized to match).
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
        max_connections: u32,
    },
    /// Many sessions on one mio Poll (QD 1 each by default): aggregate IOPS,
    /// p50/p99 latency, initiator memory and file descriptors per session.
    Scale {
        /// iscsi://[user[%secret]@]host[:port]/target-iqn/lun
        url: String,
        /// Sessions opened at once (raise `ulimit -n` beyond about 1000).
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        /// Reads kept in flight per session.
        #[arg(long, default_value_t = 1)]
        qd: usize,
        /// Bytes per read.
        #[arg(long, default_value_t = 4096)]
        bs: u32,
        /// Seconds of measured I/O, after every session logged in.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Fuzz a live target: sessions driven to a phase, then typed
    /// mutations; crashes, hangs and RFC violations as replay files.
    Fuzz(fuzz::FuzzArgs),
    /// Start an embedded target with a 64 MiB RAM disk on loopback and drive it.
    Demo {
        /// Benchmark seconds.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Write blocks from a file or stdin (length must be a multiple of the block size).
    Write {
        /// iscsi://[user[%secret]@]host[:port]/target-iqn/lun
        url: String,
        /// First logical block.
        #[arg(long)]
        lba: u64,
        /// Input file (default: stdin).
        #[arg(short = 'i', long)]
        input: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(msg) = logging::init(cli.global.verbose) {
        eprintln!("iscsi: {msg}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("iscsi: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match &cli.command {
        Command::Discover { portal } => discover(&cli.global, portal),
        Command::Inquiry { url, json } => inquiry(&cli.global, url, *json),
        Command::Readcap { url, json } => readcap(&cli.global, url, *json),
        Command::Read {
            url,
            lba,
            blocks,
            output,
        } => read(&cli.global, url, *lba, *blocks, output.as_ref()),
        Command::Write { url, lba, input } => write(&cli.global, url, *lba, input.as_ref()),
        Command::Serve {
            listen,
            target,
            luns,
            chap,
            erl,
            session_connections,
            max_connections,
        } => serve::serve(
            listen,
            target,
            luns,
            chap.as_deref(),
            cli.global.mutual_chap.as_deref(),
            serve::Recovery {
                erl: *erl,
                session_connections: *session_connections,
            },
            *max_connections as usize,
        ),
        Command::Fuzz(a) => fuzz::run(&cli.global.initiator_name, a),
        Command::Demo { seconds } => serve::demo(*seconds, cli.global.driver),
        Command::Scale {
            url,
            sessions,
            qd,
            bs,
            seconds,
            json,
        } => scale::run(
            &cli.global,
            url,
            &scale::Spec {
                sessions: *sessions,
                qd: *qd,
                bs: *bs,
                seconds: *seconds,
                login_timeout: std::time::Duration::from_secs(cli.global.timeout.max(30)),
            },
            *json,
        ),
        Command::Bench {
            url,
            qd,
            bs,
            seconds,
            pattern,
            json,
            plot,
        } => bench_cmd(
            &cli.global,
            url,
            *qd,
            *bs,
            *seconds,
            *pattern,
            *json,
            plot.as_ref(),
        ),
    }
}

fn digests(arg: DigestArg) -> Vec<DigestType> {
    match arg {
        DigestArg::None => vec![DigestType::None],
        DigestArg::Crc32c => vec![DigestType::Crc32c],
    }
}

/// Session configuration from the global options and a URL's credentials.
fn session_config(
    g: &Global,
    target: Option<&str>,
    user: Option<&str>,
    secret: Option<&str>,
) -> Result<SessionConfig, String> {
    let op = OperationalParams {
        header_digest: digests(g.header_digest),
        data_digest: digests(g.data_digest),
        ..tuned_params()
    };
    // A random-format ISID (RFC 7143 section 11.12.5, T = 10b): 24 random
    // bits from the OS and the process id as qualifier, so concurrent
    // sessions from this host get distinct ISIDs.
    let mut r = [0u8; 3];
    r.iter_mut()
        .zip(challenge_bytes())
        .for_each(|(d, b)| *d = b);
    let isid = Isid::random(r, std::process::id() as u16);
    let timeout = std::time::Duration::from_secs(g.timeout);
    // Keepalive (RFC 7143 section 11.18): after `timeout` of silence a
    // NOP-Out ping; no answer within `timeout` ends the session with a
    // clear error instead of waiting forever on a dead target.
    let mut config = SessionConfig::new(&g.initiator_name)
        .with_isid(isid)
        .with_operational(op)
        .with_login_timeout(timeout)
        .with_keepalive(timeout, timeout);
    if let Some(t) = target {
        config = config
            .with_target(t)
            .with_error_recovery_level(g.erl)
            .with_max_connections(g.connections, Spread::RoundRobin);
        // Normal sessions only: a discovery session has no block I/O.
        if !g.no_recovery {
            config = config.with_recovery(tool::recovery_policy());
        }
    }
    let mutual = match &g.mutual_chap {
        Some(m) => {
            let (u, s) = m.split_once(':').ok_or("--mutual-chap takes USER:SECRET")?;
            Some((u.to_string(), s.to_string()))
        }
        None => None,
    };
    match (user, secret) {
        (Some(u), Some(s)) => {
            let auth = match mutual {
                Some((mu, ms)) => {
                    Auth::mutual_chap(u, s.as_bytes().to_vec(), mu, ms.as_bytes().to_vec())
                }
                None => Auth::chap(u, s.as_bytes().to_vec()),
            };
            config = config.with_auth(auth, challenge_bytes());
        }
        (Some(_), None) => {
            return Err("the URL names a CHAP user but no secret (user%secret@host)".into())
        }
        _ if mutual.is_some() => {
            return Err("--mutual-chap needs CHAP credentials in the URL (user%secret@host)".into())
        }
        _ => {}
    }
    Ok(config)
}

/// Challenge bytes for mutual CHAP: the core draws no randomness, so the
/// driver supplies it (RFC 7143 section 12.1.3 wants unpredictable
/// challenges).
fn challenge_bytes() -> Vec<u8> {
    let mut buf = vec![0u8; 32];
    if let Ok(mut f) = File::open("/dev/urandom") {
        if f.read_exact(&mut buf).is_ok() {
            return buf;
        }
    }
    // Fallback: hash the clock and pid (not for production secrets).
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for chunk in buf.chunks_mut(8) {
        let mut h = state.build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let v = h.finish().to_le_bytes();
        chunk.iter_mut().zip(v).for_each(|(d, b)| *d = b);
    }
    buf
}

/// Driver options, with a pcap tap when `--pcap` is given (every driver
/// installs it in its driver core).
fn options(g: &Global) -> Result<(Options, Option<PcapHandle>), String> {
    let mut opts = Options::new()
        .with_connect_timeout(std::time::Duration::from_secs(g.timeout))
        .with_coalesce(match g.coalesce {
            0 => iscsi_std::Coalesce::OFF,
            n => iscsi_std::Coalesce::default().with_max_tasks(usize::from(n)),
        });
    let handle = match &g.pcap {
        None => None,
        Some(path) => {
            let file =
                File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let writer =
                PcapWriter::new(io::BufWriter::new(file)).map_err(|e| format!("pcap: {e}"))?;
            let state: PcapHandle = Arc::new(Mutex::new(PcapState::new(writer)));
            let tap_state = state.clone();
            opts.tap = Some(Box::new(move |dir, local, peer, bytes| {
                if let Ok(mut s) = tap_state.lock() {
                    s.record(dir, local, peer, bytes);
                }
            }));
            Some(state)
        }
    };
    Ok((opts, handle))
}

type PcapHandle = Arc<Mutex<PcapState>>;

struct PcapState {
    writer: PcapWriter<io::BufWriter<File>>,
    conn: Option<SocketAddr>,
    /// Bytes of consecutive tap calls in one direction, written as one
    /// TCP segment (up to `COALESCE` bytes) when the direction changes: a
    /// PDU whose header, data and padding went out in separate writes
    /// shows whole in one segment, as it does on a real wire, and
    /// dissectors' heuristics recognise it on any port.
    pending: Option<(pcap::Direction, Vec<u8>)>,
    error: Option<String>,
}

/// iSCSI's well-known TCP port ("assigned by IANA is 3260 and this is the
/// default iSCSI port", RFC 3720 / RFC 7143).
const ISCSI_PORT: u16 = 3260;

/// The most bytes held back before they are written to the capture.
const COALESCE: usize = 256 * 1024;

impl PcapState {
    fn new(writer: PcapWriter<io::BufWriter<File>>) -> PcapState {
        PcapState {
            writer,
            conn: None,
            pending: None,
            error: None,
        }
    }

    fn record(&mut self, dir: Direction, local: SocketAddr, peer: SocketAddr, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let v4 = |a: SocketAddr| match a.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
        };
        let d = match dir {
            Direction::Sent => pcap::Direction::ToTarget,
            Direction::Received => pcap::Direction::ToInitiator,
        };
        // A redirect or reconnect shows as a new synthetic connection.
        let result = (|| {
            if self.conn != Some(local) {
                self.flush_pending()?;
                // The target side is recorded on iSCSI's registered port
                // 3260 whatever the real one: dissectors pick iSCSI by
                // port (Wireshark's heuristic does not fire on these
                // captures), so `tshark -Y iscsi` works without `-d`.
                self.writer
                    .connect((v4(local), local.port()), (v4(peer), ISCSI_PORT))?;
                self.conn = Some(local);
            }
            match &mut self.pending {
                Some((pd, buf)) if *pd == d && buf.len() + bytes.len() <= COALESCE => {
                    buf.extend_from_slice(bytes);
                }
                _ => {
                    self.flush_pending()?;
                    self.pending = Some((d, bytes.to_vec()));
                }
            }
            Ok::<(), io::Error>(())
        })();
        if let Err(e) = result {
            self.error = Some(e.to_string());
        }
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        match self.pending.take() {
            Some((d, buf)) => self.writer.record(d, &buf),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        if self.error.is_none() {
            if let Err(e) = self.flush_pending() {
                self.error = Some(e.to_string());
            }
        }
        self.writer.finish().map_err(|e| format!("pcap: {e}"))?;
        match self.error.take() {
            Some(e) => Err(format!("pcap: {e}")),
            None => Ok(()),
        }
    }
}

fn finish_pcap(handle: Option<PcapHandle>) -> Result<(), String> {
    match handle {
        Some(h) => h
            .lock()
            .map_err(|_| "pcap writer poisoned".to_string())?
            .finish(),
        None => Ok(()),
    }
}

fn discover(g: &Global, portal: &str) -> Result<(), String> {
    // A plain HOST[:PORT] or an iscsi:// URL (for its CHAP credentials).
    let url::Authority {
        host,
        port,
        user,
        secret,
    } = url::parse_portal(portal)?;
    let config = session_config(g, None, user.as_deref(), secret.as_deref())?;
    let (opts, pcap) = options(g)?;
    let addr = url::join_host_port(&host, port);
    let result = Session::discover(g.driver, &addr, config, opts);
    finish_pcap(pcap)?;
    let targets = result?;
    for t in targets {
        if t.addresses.is_empty() {
            // RFC 7143 section 13.8 / appendix C: no address means "the
            // same portal as this connection".
            println!("{} {}", t.name, addr);
        }
        for a in &t.addresses {
            let hp = url::join_host_port(&a.host, a.port.unwrap_or(url::DEFAULT_PORT));
            match a.portal_group_tag {
                Some(tpgt) => println!("{} {},{}", t.name, hp, tpgt),
                None => println!("{} {}", t.name, hp),
            }
        }
    }
    Ok(())
}

/// Logs in to the URL's target, runs `f`, logs out.
fn with_session<T>(
    g: &Global,
    url: &str,
    f: impl FnOnce(&mut Session, u64) -> Result<T, String>,
) -> Result<T, String> {
    let u = IscsiUrl::parse(url)?;
    let config = session_config(g, Some(&u.target), u.user.as_deref(), u.secret.as_deref())?;
    let (opts, pcap) = options(g)?;
    let lun = Lun::from_number(u.lun).to_u64();
    let result = (|| {
        let mut client = Session::connect(g.driver, &u.portal(), config, opts)?;
        let value = f(&mut client, lun)?;
        client.logout().map_err(|e| format!("logout: {e}"))?;
        Ok(value)
    })();
    finish_pcap(pcap)?;
    result
}

fn inquiry(g: &Global, url: &str, json: bool) -> Result<(), String> {
    let data = with_session(g, url, |c, lun| {
        Ok(exec(
            c,
            ScsiCommand::read(
                iscsi_proto::scsi::Lun::from_u64(lun),
                cdb::inquiry(96).to_vec(),
                96,
            ),
            "INQUIRY",
        )?
        .data)
    })?;
    let inq = StandardInquiry::parse(&data).map_err(|e| format!("INQUIRY data: {e}"))?;
    if json {
        println!(
            "{{\"peripheral_qualifier\":{},\"device_type\":{},\"vendor\":{:?},\"product\":{:?},\"revision\":{:?},\"version\":{},\"cmdque\":{}}}",
            inq.peripheral_qualifier, inq.device_type, inq.vendor, inq.product, inq.revision, inq.version, inq.cmdque
        );
    } else {
        println!("Vendor:      {}", inq.vendor);
        println!("Product:     {}", inq.product);
        println!("Revision:    {}", inq.revision);
        println!(
            "Device type: {:#04x} (qualifier {})",
            inq.device_type, inq.peripheral_qualifier
        );
        println!("SPC version: {:#04x}", inq.version);
    }
    Ok(())
}

fn readcap(g: &Global, url: &str, json: bool) -> Result<(), String> {
    let cap = with_session(g, url, read_capacity)?;
    let blocks = cap.num_blocks().ok_or("capacity overflows")?;
    let bytes = cap.total_bytes().ok_or("capacity overflows")?;
    if json {
        println!(
            "{{\"bytes\":{bytes},\"blocks\":{blocks},\"block_size\":{}}}",
            cap.block_len
        );
    } else {
        println!("{bytes} bytes, {blocks} blocks of {} bytes", cap.block_len);
    }
    Ok(())
}

fn read(
    g: &Global,
    url: &str,
    lba: u64,
    blocks: u32,
    output: Option<&PathBuf>,
) -> Result<(), String> {
    let mut out: Box<dyn Write> = match output {
        Some(p) => {
            Box::new(File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    with_session(g, url, |c, lun| {
        tool::read_blocks(c, lun, lba, blocks, &mut out)
    })
}

fn write(g: &Global, url: &str, lba: u64, input: Option<&PathBuf>) -> Result<(), String> {
    let mut data = Vec::new();
    match input {
        Some(p) => File::open(p)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        None => io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| format!("read stdin: {e}"))?,
    };
    let data = Bytes::from(data);
    with_session(g, url, |c, lun| tool::write_blocks(c, lun, lba, &data))
}

#[allow(clippy::too_many_arguments)]
fn bench_cmd(
    g: &Global,
    url: &str,
    qd: usize,
    bs: u32,
    seconds: u64,
    pattern: bench::Pattern,
    json: bool,
    plot: Option<&PathBuf>,
) -> Result<(), String> {
    if qd == 0 {
        return Err("--qd must be at least 1".into());
    }
    let report = with_session(g, url, |c, lun| {
        let cap = read_capacity(c, lun)?;
        let spec = bench::Spec {
            qd,
            bs,
            duration: std::time::Duration::from_secs(seconds),
            pattern,
            lun,
            block_size: cap.block_len,
            num_blocks: cap.num_blocks().unwrap_or(0),
            progress: !json,
        };
        let report = bench::run(c, &spec)?;
        let info = bench::SessionInfo {
            erl: c.negotiated().map(|n| n.error_recovery_level),
            connections: c.connections(),
            stats: c.stats(),
        };
        if let Some(s) = &info.stats {
            // `-v`: the session's counters (RFC-level events are logged on
            // the way; these are the totals).
            for (name, _help, value) in s.counters() {
                tracing::info!(target: "iscsi::stats", name, value);
            }
            tracing::info!(target: "iscsi::stats", mean_us = s.command_latency.mean().as_micros() as u64,
                p99_us = s.command_latency.percentile(99.0).as_micros() as u64, "command latency");
        }
        Ok((report, info))
    })?;
    let (report, session_info) = report;
    if let Some(p) = plot {
        // The URL without its CHAP user and secret (never written to files).
        let where_ = url::IscsiUrl::parse(url)
            .map(|u| format!("{}/{}/{}", u.portal(), u.target, u.lun))
            .unwrap_or_default();
        let settings = [
            format!(
                "target {where_}, driver {}",
                format!("{:?}", g.driver).to_lowercase()
            ),
            format!(
                "pattern {}, block size {bs} B, queue depth {qd}, {seconds} s, \
                 header digest {}, data digest {}, coalesce {}",
                format!("{pattern:?}").to_lowercase(),
                format!("{:?}", g.header_digest).to_lowercase(),
                format!("{:?}", g.data_digest).to_lowercase(),
                g.coalesce
            ),
        ];
        let title = format!("iscsi bench: {pattern:?} {bs} B, QD {qd}");
        let svg = iscsi_cli::plot::svg(&report, &title, &settings)?;
        std::fs::write(p, svg).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if json {
        println!("{}", report.to_json_with(session_info));
    } else {
        println!("{}", report.summary());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erl_and_connections_are_global_and_reach_the_session_config() {
        let cli = Cli::try_parse_from(["iscsi", "readcap", "iscsi://h/t/1"]).unwrap();
        assert_eq!((cli.global.erl, cli.global.connections), (0, 1));
        let cli = Cli::try_parse_from([
            "iscsi",
            "bench",
            "iscsi://h/t/1",
            "--erl",
            "2",
            "--connections",
            "4",
        ])
        .unwrap();
        assert_eq!((cli.global.erl, cli.global.connections), (2, 4));
        let c = session_config(&cli.global, Some("iqn.t"), None, None).unwrap();
        assert_eq!(c.error_recovery.level, 2);
        assert_eq!(c.operational.max_connections, 4);
        assert!(Cli::try_parse_from(["iscsi", "--erl", "3", "discover", "h"]).is_err());
        assert!(Cli::try_parse_from(["iscsi", "--connections", "0", "discover", "h"]).is_err());
    }

    #[test]
    fn driver_flag_is_global_and_defaults_to_std() {
        let cli = Cli::try_parse_from(["iscsi", "readcap", "iscsi://h/t/1"]).unwrap();
        assert_eq!(cli.global.driver, DriverKind::Std);
        let cli =
            Cli::try_parse_from(["iscsi", "bench", "iscsi://h/t/1", "--driver", "smol"]).unwrap();
        assert_eq!(cli.global.driver, DriverKind::Smol);
        let cli = Cli::try_parse_from(["iscsi", "--driver", "mio", "discover", "h"]).unwrap();
        assert_eq!(cli.global.driver, DriverKind::Mio);
        let cli = Cli::try_parse_from(["iscsi", "--driver", "tokio", "discover", "h"]).unwrap();
        assert_eq!(cli.global.driver, DriverKind::Tokio);
        assert!(Cli::try_parse_from(["iscsi", "--driver", "uring", "discover", "h"]).is_err());
    }

    /// Session recovery (ERL 0 reinstatement) is the default of every
    /// command on every driver; `--no-recovery` turns it off.
    #[test]
    fn recovery_is_the_default_and_no_recovery_turns_it_off() {
        for d in ["std", "mio", "smol", "tokio"] {
            for cmd in [
                &["read", "iscsi://h/t/1", "--lba", "0", "--blocks", "1"][..],
                &["write", "iscsi://h/t/1", "--lba", "0"][..],
                &["bench", "iscsi://h/t/1"][..],
            ] {
                let mut args = vec!["iscsi", "--driver", d];
                args.extend_from_slice(cmd);
                let cli = Cli::try_parse_from(&args).unwrap();
                let c = session_config(&cli.global, Some("t"), None, None).unwrap();
                assert_eq!(c.recovery, Some(tool::recovery_policy()), "{args:?}");
                args.push("--no-recovery");
                let cli = Cli::try_parse_from(&args).unwrap();
                let c = session_config(&cli.global, Some("t"), None, None).unwrap();
                assert_eq!(c.recovery, None, "{args:?}");
            }
        }
    }

    #[test]
    fn pcap_works_with_every_driver() {
        let dir = std::env::temp_dir().join(format!("iscsi-cli-pcap-{}", std::process::id()));
        let file = dir.to_string_lossy().into_owned() + ".pcap";
        for d in ["std", "mio", "smol", "tokio"] {
            let cli =
                Cli::try_parse_from(["iscsi", "--driver", d, "--pcap", &file, "discover", "h"])
                    .unwrap();
            let (opts, handle) = options(&cli.global).unwrap();
            assert!(opts.tap.is_some() && handle.is_some(), "{d}");
            finish_pcap(handle).unwrap();
            std::fs::remove_file(&file).unwrap();
        }
    }
}
