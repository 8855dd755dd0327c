//! Several connections per session (MC/S, RFC 7143 section 13.2) and
//! connection recovery (ErrorRecoveryLevel 2, sections 7.1.5, 7.2.2) with
//! the project's own initiator (`iscsi_mio::client::Blocking`):
//!
//! - `mcs/proxy-kill-one-of-4-erl2-write-64mib`: a loopback TCP proxy
//!   between our initiator and our target (`iscsi serve --erl 2
//!   --session-connections 4`, here `iscsi_mio::server`) kills one of the
//!   session's 4 connections in the middle of a 64 MiB write. The write
//!   completes, the medium reads back byte for byte, the TSIH is unchanged
//!   (no session reinstatement where connection recovery suffices) and
//!   the other connections are never closed and carry traffic after the
//!   kill.
//! - `mcs/ours-erl2-4-connections`: the same without the kill.
//! - `mcs/istgt-max-connections-4`: our initiator offering ERL 2 and 4
//!   connections to istgt (configured with `MaxConnections 4`): what it
//!   agrees to, write/read/verify, and its log.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use iscsi_mio::client::Blocking;
use iscsi_mio::server::{LunSpec, Server, TargetConfig};
use iscsi_proto::initiator::{ScsiCommand, SessionConfig, Spread, TaskOutcome};
use iscsi_proto::scsi::cdb::{read16, write16, RwFlags};
use iscsi_proto::scsi::Lun;

use super::initiator_common::{config, op_params};
use crate::peers::{free_port, Istgt, IstgtConfig};
use crate::runner::{Cell, CellCtx};

const G: &str = "mcs";
const OUR_IQN: &str = "iqn.2026-12.rs.iscsi:mcs";
/// The write of the proxy cell.
const TOTAL: usize = 64 << 20;
/// One WRITE(16).
const CHUNK: usize = 1 << 20;
/// Commands in flight.
const QD: usize = 8;

/// One proxied connection.
struct Link {
    /// Initiator-to-target bytes forwarded.
    up: AtomicU64,
    /// Target-to-initiator bytes forwarded.
    down: AtomicU64,
    /// A direction ended.
    closed: AtomicBool,
    /// Both sockets (to kill the connection).
    sockets: Mutex<Option<(TcpStream, TcpStream)>>,
}

/// A loopback TCP proxy in front of `upstream`.
struct Proxy {
    port: u16,
    links: Arc<Mutex<Vec<Arc<Link>>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Result<Proxy, String> {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("proxy bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let links: Arc<Mutex<Vec<Arc<Link>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, s2) = (links.clone(), stop.clone());
        std::thread::spawn(move || {
            for c in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = c else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let link = Arc::new(Link {
                    up: AtomicU64::new(0),
                    down: AtomicU64::new(0),
                    closed: AtomicBool::new(false),
                    sockets: Mutex::new(Some((c2, s2))),
                });
                if let Ok(mut v) = l2.lock() {
                    v.push(link.clone());
                }
                pump(client.try_clone(), server.try_clone(), link.clone(), true);
                pump(server.try_clone(), client.try_clone(), link, false);
            }
        });
        Ok(Proxy { port, links, stop })
    }

    fn links(&self) -> Vec<Arc<Link>> {
        self.links.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for l in self.links() {
            kill(&l);
        }
    }
}

/// Forwards `from` to `to` on a thread, counting bytes.
fn pump(
    from: std::io::Result<TcpStream>,
    to: std::io::Result<TcpStream>,
    link: Arc<Link>,
    up: bool,
) {
    use std::io::{Read, Write};
    let (Ok(mut from), Ok(mut to)) = (from, to) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            let counter = if up { &link.up } else { &link.down };
            counter.fetch_add(n as u64, Ordering::SeqCst);
        }
        link.closed.store(true, Ordering::SeqCst);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Kills a proxied connection (both sockets, both directions).
fn kill(l: &Link) {
    if let Ok(mut g) = l.sockets.lock() {
        if let Some((a, b)) = g.take() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

fn pattern(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn session_config(target: &str, erl: u8, connections: u16) -> SessionConfig {
    config(Some(target), op_params())
        .with_error_recovery_level(erl)
        .with_max_connections(connections, Spread::RoundRobin)
}

/// Logs in and waits until every connection the driver opened is up or
/// given up; returns the session and (ERL, MaxConnections, connections up).
fn login(portal: &str, cfg: SessionConfig) -> Result<(Blocking, (u8, u16, usize)), String> {
    let mut b = Blocking::connect(portal, cfg).map_err(|e| format!("login: {e}"))?;
    b.run_until(|c| {
        let s = c.session();
        s.connection_ids().iter().all(|id| s.is_connection_up(*id))
    })
    .map_err(|e| format!("connections: {e}"))?;
    let s = b.client().session();
    let n = s.negotiated().ok_or("no negotiated values")?;
    let got = (
        n.error_recovery_level,
        n.max_connections,
        s.connection_ids().len(),
    );
    Ok((b, got))
}

/// Writes `total` bytes in `CHUNK` commands, `QD` in flight, calling
/// `tick(bytes written so far)` after each completion; then reads back
/// and compares.
fn write_verify(
    b: &mut Blocking,
    block: usize,
    total: usize,
    mut tick: impl FnMut(&mut Blocking, usize),
) -> Result<(), String> {
    let blocks = (CHUNK / block) as u32;
    let chunks = total / CHUNK;
    let mut next = 0usize;
    let mut done = 0usize;
    let mut in_flight = 0usize;
    while done < chunks {
        while in_flight < QD && next < chunks {
            let lba = (next * CHUNK / block) as u64;
            let cdb = write16(lba, blocks, RwFlags::default());
            let data = pattern(CHUNK, next as u64);
            b.submit(ScsiCommand::write(Lun::ZERO, cdb.to_vec(), data))
                .map_err(|e| format!("submit write {next}: {e}"))?;
            next += 1;
            in_flight += 1;
        }
        let (_, outcome, _) = b.wait_any().map_err(|e| format!("write: {e}"))?;
        match outcome {
            TaskOutcome::Scsi(r) if r.is_good() => {}
            o => return Err(format!("write ended {o:?}")),
        }
        in_flight -= 1;
        done += 1;
        tick(b, done * CHUNK);
    }
    for i in 0..chunks {
        let lba = (i * CHUNK / block) as u64;
        let cdb = read16(lba, blocks, RwFlags::default());
        let r = b
            .execute(ScsiCommand::read(Lun::ZERO, cdb.to_vec(), CHUNK as u32))
            .map_err(|e| format!("read {i}: {e}"))?;
        if !r.result.is_good() || r.data != pattern(CHUNK, i as u64) {
            return Err(format!("medium differs in MiB {i}"));
        }
    }
    Ok(())
}

/// The embedded target at ERL 2 with MaxConnections 4 and a RAM LUN.
fn start_target(bytes: u64) -> Result<(SocketAddr, impl FnOnce()), String> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cfg = TargetConfig::new(addr, OUR_IQN);
    cfg.luns.push(LunSpec::Ram(bytes));
    cfg.log = std::env::var_os("MCS_TRACE").is_some();
    cfg.params.error_recovery_level = 2;
    cfg.params.max_connections = 4;
    let mut server = Server::bind(cfg).map_err(|e| format!("embedded target: {e}"))?;
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());
    Ok((addr, move || {
        handle.shutdown();
        let _ = thread.join();
    }))
}

fn proxy_kill(ctx: &mut CellCtx) -> Result<(), String> {
    if let Some(v) = std::env::var_os("MCS_TRACE") {
        let level = if v == "trace" {
            tracing_subscriber::filter::LevelFilter::TRACE
        } else {
            tracing_subscriber::filter::LevelFilter::DEBUG
        };
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let (addr, stop) = start_target((TOTAL as u64) + (1 << 20))?;
    let result = (|| {
        let proxy = Proxy::start(addr)?;
        let portal = format!("127.0.0.1:{}", proxy.port);
        let (mut b, (erl, maxc, up)) = login(&portal, session_config(OUR_IQN, 2, 4))?;
        ctx.note(format!(
            "negotiated ErrorRecoveryLevel={erl} MaxConnections={maxc}, {up} connections up"
        ));
        if (erl, maxc, up) != (2, 4, 4) {
            return Err(format!(
                "wanted ERL 2 and 4 connections up, got {erl}/{maxc}/{up}"
            ));
        }
        let tsih = b.client().session().tsih();
        let links = proxy.links();
        if links.len() != 4 {
            return Err(format!("{} proxied connections, wanted 4", links.len()));
        }
        // Kill the second connection (an added one) once a quarter of the
        // write has completed; remember what the others had carried.
        let victim = 1usize;
        let mut at_kill: Option<Vec<u64>> = None;
        write_verify(&mut b, 512, TOTAL, |_, written| {
            if at_kill.is_none() && written >= TOTAL / 4 {
                at_kill = Some(links.iter().map(|l| l.up.load(Ordering::SeqCst)).collect());
                kill(&links[victim]);
            }
        })?;
        let at_kill = at_kill.ok_or("the kill never happened")?;
        ctx.note(format!(
            "killed proxied connection {victim} after {} MiB",
            (TOTAL / 4) >> 20
        ));
        let now_tsih = b.client().session().tsih();
        if now_tsih != tsih {
            return Err(format!(
                "TSIH changed {tsih:#x} -> {now_tsih:#x}: the session was reinstated"
            ));
        }
        for (i, l) in links.iter().enumerate() {
            let up = l.up.load(Ordering::SeqCst);
            let (before, closed) = (at_kill[i], l.closed.load(Ordering::SeqCst));
            ctx.note(format!(
                "connection {i}: {} MiB up ({} MiB after the kill), {} MiB down, closed={closed}",
                up >> 20,
                (up - before) >> 20,
                l.down.load(Ordering::SeqCst) >> 20
            ));
            if i != victim && (closed || up <= before) {
                return Err(format!(
                    "connection {i} stopped (closed={closed}, no bytes after the kill={})",
                    up <= before
                ));
            }
        }
        let all = proxy.links();
        ctx.note(format!(
            "{} proxied connections in all (a replacement counts)",
            all.len()
        ));
        b.logout().map_err(|e| format!("logout: {e}"))?;
        Ok(())
    })();
    stop();
    result
}

fn ours_four(ctx: &mut CellCtx) -> Result<(), String> {
    let (addr, stop) = start_target(64 << 20)?;
    let result = (|| {
        let (mut b, (erl, maxc, up)) = login(&addr.to_string(), session_config(OUR_IQN, 2, 4))?;
        ctx.note(format!(
            "negotiated ErrorRecoveryLevel={erl} MaxConnections={maxc}, {up} connections up"
        ));
        if (erl, maxc, up) != (2, 4, 4) {
            return Err(format!(
                "wanted ERL 2 and 4 connections up, got {erl}/{maxc}/{up}"
            ));
        }
        write_verify(&mut b, 512, 32 << 20, |_, _| {})?;
        b.logout().map_err(|e| format!("logout: {e}"))?;
        Ok(())
    })();
    stop();
    result
}

fn istgt_four(ctx: &mut CellCtx) -> Result<(), String> {
    let t = Istgt::start(&IstgtConfig::default())?;
    let result = (|| {
        let (mut b, (erl, maxc, up)) = login(&t.portal(), session_config(t.iqn(), 2, 4))?;
        let line = format!(
            "istgt agreed ErrorRecoveryLevel={erl} MaxConnections={maxc}; {up} connections up"
        );
        println!("{line}");
        ctx.note(line);
        let cap = b
            .read_capacity(Lun::ZERO)
            .map_err(|e| format!("read capacity: {e}"))?;
        let block = cap.block_len as usize;
        let total = (16 << 20).min(cap.num_blocks().unwrap_or(0) as usize * block / CHUNK * CHUNK);
        if total == 0 {
            return Err("istgt's LUN is smaller than 1 MiB".into());
        }
        write_verify(&mut b, block, total, |_, _| {})?;
        ctx.note(format!(
            "{} MiB written and verified over {up} connections",
            total >> 20
        ));
        let _ = b.logout();
        Ok(())
    })();
    let tail = t.log_tail(40);
    let _ = std::fs::write(ctx.artifact("istgt.log"), &tail);
    for l in tail
        .lines()
        .filter(|l| l.to_lowercase().contains("connection") || l.contains("MaxConnections"))
        .take(8)
    {
        ctx.note(format!("istgt log: {l}"));
    }
    result
}

pub(super) fn cells() -> Vec<Cell> {
    // Both our-target cells hung under load in session 6: a livelock in the
    // target Portal (two paused connections of one session touching each
    // other for ever), fixed in session 7 and pinned by
    // iscsi-proto/tests/target_mcs_paused.rs.
    vec![
        Cell::new(G, "proxy-kill-one-of-4-erl2-write-64mib", proxy_kill)
            .with_timeout(Duration::from_secs(300)),
        Cell::new(G, "istgt-max-connections-4", istgt_four).with_timeout(Duration::from_secs(120)),
        Cell::new(G, "ours-erl2-4-connections", ours_four).with_timeout(Duration::from_secs(120)),
    ]
}
