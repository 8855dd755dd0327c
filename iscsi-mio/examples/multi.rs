//! Several iSCSI sessions and another socket on one `mio::Poll`.
//!
//! ```text
//! cargo run -p iscsi-mio --example multi -- [PORTAL TARGET]
//! ```
//!
//! Without arguments it starts the embedded target (a 16 MiB RAM disk) on
//! a free loopback port. Three sessions log in, each reads 8 blocks of LUN
//! 0 and logs out, while a TCP listener on the same `Poll` answers every
//! connection with a line of status (the example connects to it once).
//!
//! The loop's two rules:
//!
//! - **Timeout**: the `Poll` waits no later than the *earliest*
//!   `poll_timeout()` of all clients (each is `None` when it has no timer
//!   armed); after the wait, every client gets `handle_timeout()`, which
//!   is a no-op for a client whose deadline has not come.
//! - **Errors**: a session that ends (login refused, connection lost and
//!   not recovered, logout) is not an `Err`: it comes as `Event::Closed`
//!   from `poll_event` and `is_closed()` turns true. An `Err` from
//!   `handle_event` / `handle_timeout` is the driver's own failure (it
//!   could not register a socket with the `Registry`): that client cannot
//!   go on and is dropped; the other clients and sockets are unaffected.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use iscsi_mio::client::{Client, Lun};
use iscsi_mio::server::{LunSpec, Server, TargetConfig};
use iscsi_proto::driver::reply;
use iscsi_proto::initiator::{Event, ScsiCommand, SessionConfig, TaskId};
use iscsi_proto::scsi::cdb::{read16, RwFlags};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

const SESSIONS: usize = 3;
const STATUS: Token = Token(100);
const TARGET: &str = "iqn.2026-12.rs.iscsi:multi";

/// One session of the loop, with the read it runs and whether it is done.
struct Slot {
    client: Option<Client>,
    read: Option<TaskId>,
    bytes: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (portal, target, embedded) = match (args.first(), args.get(1)) {
        (Some(p), Some(t)) => (p.clone(), t.clone(), None),
        _ => {
            let mut cfg = TargetConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), TARGET);
            cfg.luns.push(LunSpec::Ram(16 << 20));
            cfg.log = false;
            let server = Server::bind(cfg)?;
            let portal = server.local_addr().to_string();
            let stop = server.shutdown_handle();
            let thread = std::thread::spawn(move || {
                let mut server = server;
                server.run()
            });
            (portal, TARGET.to_string(), Some((stop, thread)))
        }
    };

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    // Another socket on the same Poll: a status port.
    let mut status = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    poll.registry()
        .register(&mut status, STATUS, Interest::READABLE)?;
    let mut probe = std::net::TcpStream::connect(status.local_addr()?)?;

    // One registry clone shared by every session: each costs one socket.
    let registry = std::sync::Arc::new(poll.registry().try_clone()?);
    // One token per session.
    let mut slots: Vec<Slot> = (0..SESSIONS)
        .map(|i| {
            let cfg = SessionConfig::new(format!("iqn.2026-12.example:multi-{i}"))
                .with_target(target.clone());
            Client::new(&portal, cfg, &registry, Token(i)).map(|c| Slot {
                client: Some(c),
                read: None,
                bytes: 0,
            })
        })
        .collect::<Result<_, _>>()?;

    while slots.iter().any(|s| s.client.is_some()) {
        // The earliest deadline of all clients bounds the wait.
        let deadline = slots
            .iter()
            .filter_map(|s| s.client.as_ref()?.poll_timeout())
            .min();
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, timeout)?;
        for ev in events.iter() {
            if ev.token() == STATUS {
                while let Ok((mut conn, _)) = status.accept() {
                    let up = slots.iter().filter(|s| s.client.is_some()).count();
                    let _ = writeln!(conn, "{up} sessions open");
                }
            } else if let Some(slot) = slots.get_mut(ev.token().0) {
                if let Some(c) = slot.client.as_mut() {
                    if let Err(e) = c.handle_event(ev) {
                        eprintln!("session {}: driver failure: {e}", ev.token().0);
                        slot.client = None;
                    }
                }
            }
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            step(i, slot)?;
        }
    }

    let mut line = String::new();
    probe.read_to_string(&mut line)?;
    print!("status port said: {line}");
    for (i, s) in slots.iter().enumerate() {
        println!("session {i}: read {} bytes", s.bytes);
    }
    if let Some((stop, thread)) = embedded {
        stop.shutdown();
        let _ = thread.join();
    }
    Ok(())
}

/// Timers, events and the work of one session; drops it once closed.
fn step(i: usize, slot: &mut Slot) -> Result<(), Box<dyn std::error::Error>> {
    let Some(c) = slot.client.as_mut() else {
        return Ok(());
    };
    if let Err(e) = c.handle_timeout() {
        eprintln!("session {i}: driver failure: {e}");
        slot.client = None;
        return Ok(());
    }
    while let Some(ev) = c.poll_event() {
        match ev {
            Event::LoggedIn { .. } => {
                let cmd = ScsiCommand::read(Lun::ZERO, read16(0, 8, RwFlags::default()), 4096);
                slot.read = Some(c.execute(cmd)?);
            }
            Event::Closed(reason) => println!("session {i} closed ({reason:?})"),
            _ => {}
        }
    }
    if let Some(task) = slot.read {
        if let Some(r) = c.take_completed(task) {
            // The first command of a session may meet a UNIT ATTENTION
            // (Blocking::read retries it; this loop just reports it).
            match reply::scsi(r) {
                Ok(done) if done.result.is_good() => slot.bytes = done.data.len(),
                Ok(done) => println!("session {i}: status {:#04x}", done.result.status),
                Err(e) => println!("session {i}: {e}"),
            }
            slot.read = None;
            c.logout()?;
        }
    }
    if c.is_closed() {
        slot.client = None;
    }
    Ok(())
}
