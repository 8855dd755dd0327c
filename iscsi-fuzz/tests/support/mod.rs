//! A deliberately broken variant of the embedded target, for the fuzzer's
//! tests only: `iscsi_lun::serve::Target` behind blocking std sockets (a
//! thread per connection, one lock), plus a shim that watches the PDUs and
//! breaks on two in-grammar conditions reachable only after a valid login:
//!
//! - **crash**: a Data-Out whose Buffer Offset lies at or beyond the end of
//!   the R2T it answers (same TTT). The whole server dies: the listener
//!   closes and every connection drops, as if the process had aborted.
//! - **hang**: an ABORT TASK naming a task with an R2T outstanding. That
//!   connection stops reading and answering, and stays open.
//!
//! Everything else is the real target. The target offers no digests, so
//! the shim frames incoming PDUs without them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The core's time for this test server: one process-wide epoch.
fn core_now() -> iscsi_proto::time::Instant {
    static CLOCK: std::sync::OnceLock<iscsi_proto::driver::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(iscsi_proto::driver::Clock::start).now()
}

use bytes::BytesMut;
use iscsi_lun::{LunSpec, Target, TargetConfig};
use iscsi_proto::login::negotiation::DigestType;
use iscsi_proto::wire::{DecoderConfig, Header, PduDecoder, TmfFunction};

pub const TARGET_NAME: &str = "iqn.2026-11.rs.iscsi:broken";

/// The two planted bugs, counted when they fire.
#[derive(Debug, Default)]
pub struct Fired {
    pub crash: AtomicBool,
    pub hang: AtomicBool,
}

pub struct BrokenTarget {
    pub addr: SocketAddr,
    dead: Arc<AtomicBool>,
    pub fired: Arc<Fired>,
    accept: Option<JoinHandle<()>>,
}

impl BrokenTarget {
    /// Starts on 127.0.0.1:`port` (0 picks one).
    pub fn start(port: u16) -> BrokenTarget {
        BrokenTarget::start_with(port, true)
    }

    /// The same server without the planted bugs (the real target).
    #[allow(dead_code)]
    pub fn start_healthy(port: u16) -> BrokenTarget {
        BrokenTarget::start_with(port, false)
    }

    fn start_with(port: u16, planted: bool) -> BrokenTarget {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = TargetConfig::new(addr, TARGET_NAME);
        config.luns = vec![LunSpec::Ram(4 << 20)];
        config.log = false;
        config.params.header_digest = vec![DigestType::None];
        config.params.data_digest = vec![DigestType::None];
        let target = Arc::new(Mutex::new(Target::new(&config, 42).unwrap()));
        let dead = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(Fired::default());
        let accept = {
            let dead = dead.clone();
            let fired = fired.clone();
            std::thread::spawn(move || {
                let mut conns = Vec::new();
                while !dead.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let (t, d, f) = (target.clone(), dead.clone(), fired.clone());
                            conns.push(std::thread::spawn(move || {
                                serve_conn(stream, peer, addr, t, d, f, planted)
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
                // The listener closes here: new connections are refused.
                drop(listener);
                for c in conns {
                    let _ = c.join();
                }
            })
        };
        BrokenTarget {
            addr,
            dead,
            fired,
            accept: Some(accept),
        }
    }

    /// Stops the server (all connections drop).
    pub fn stop(&mut self) {
        self.dead.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BrokenTarget {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    target: Arc<Mutex<Target>>,
    dead: Arc<AtomicBool>,
    fired: Arc<Fired>,
    planted: bool,
) {
    let Some(h) = target
        .lock()
        .unwrap()
        .accept(core_now(), Some(local), Some(peer))
    else {
        return;
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let mut shim = PduDecoder::new(DecoderConfig {
        max_data_segment_length: 1 << 24,
        ..DecoderConfig::default()
    });
    let mut shim_buf = BytesMut::new();
    let mut shim_ok = true;
    // TTT -> (ITT, offset, length) of the R2Ts sent and not yet finished.
    let mut r2ts: BTreeMap<u32, (u32, u32, u32)> = BTreeMap::new();
    let mut buf = [0u8; 64 * 1024];
    let mut hung = false;
    loop {
        if dead.load(Ordering::SeqCst) {
            return;
        }
        if hung {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                let mut t = target.lock().unwrap();
                t.handle_closed(h, core_now());
                t.remove(h);
                return;
            }
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                0
            }
            Err(_) => {
                let mut t = target.lock().unwrap();
                t.handle_closed(h, core_now());
                t.remove(h);
                return;
            }
        };
        if n > 0 && shim_ok && planted {
            shim_buf.extend_from_slice(&buf[..n]);
            loop {
                match shim.decode(&mut shim_buf) {
                    Ok(Some(pdu)) => match pdu.header {
                        Header::DataOut(d) => {
                            if let Some(&(_, off, len)) = r2ts.get(&d.ttt) {
                                if u64::from(d.buffer_offset) >= u64::from(off) + u64::from(len) {
                                    // The planted crash.
                                    fired.crash.store(true, Ordering::SeqCst);
                                    dead.store(true, Ordering::SeqCst);
                                    return;
                                }
                                if d.final_pdu {
                                    r2ts.remove(&d.ttt);
                                }
                            }
                        }
                        Header::TaskMgmtRequest(t)
                            if t.function == TmfFunction::AbortTask
                                && r2ts.values().any(|r| r.0 == t.referenced_task_tag) =>
                        {
                            // The planted hang.
                            fired.hang.store(true, Ordering::SeqCst);
                            hung = true;
                        }
                        _ => {}
                    },
                    Ok(None) => break,
                    Err(_) => {
                        shim_ok = false;
                        break;
                    }
                }
            }
            if hung {
                continue;
            }
        }
        let mut t = target.lock().unwrap();
        let now = core_now();
        if n > 0 {
            let mut input = BytesMut::from(&buf[..n]);
            t.handle_input(h, now, &mut input);
        }
        if t.portal().poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
        }
        while let Some(tx) = t.portal_mut().poll_transmit(h, now) {
            if let Some(b) = tx.header().get(..48) {
                if let Ok(Header::R2t(r)) = Header::parse_bytes(b) {
                    r2ts.insert(
                        r.ttt,
                        (r.itt, r.buffer_offset, r.desired_data_transfer_length),
                    );
                }
            }
            let ok = stream.write_all(tx.header()).is_ok()
                && stream.write_all(tx.data()).is_ok()
                && stream.write_all(tx.trailer()).is_ok();
            if !ok {
                break;
            }
        }
        if t.portal().is_closed(h) {
            t.remove(h);
            return;
        }
    }
}
