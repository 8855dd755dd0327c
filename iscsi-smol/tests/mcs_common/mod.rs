//! Shared by the smol and tokio drivers' MC/S tests (`tests/mcs.rs` of each
//! crate includes it with `#[path]`): a session of several connections
//! (RFC 7143 section 13.2) at ErrorRecoveryLevel 2 against the embedded
//! target (`iscsi_mio::server`, what `iscsi serve --erl 2
//! --session-connections 4` runs) on loopback. The including file names its
//! driver crate `driver` and provides `spawn_driver` / `join_driver`.
//!
//! RFC 7143 section 13.2: MaxConnections is "the maximum number of
//! connections requested/acceptable"; section 4.2.2.1: CmdSN is
//! session-wide, so a command may go out on any connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::driver::Client;
use crate::{join_driver, spawn_driver};
use bytes::Bytes;
use iscsi_mio::server::{LunSpec, Server, TargetConfig};
use iscsi_proto::driver::Direction;
use iscsi_proto::initiator::{Event, ScsiCommand, SessionConfig, Spread, TaskOutcome};
use iscsi_proto::scsi::cdb::{read10, write10, RwFlags};
use iscsi_proto::scsi::Lun;

const TARGET: &str = "iqn.2026-12.test:mcs";
const BLOCK: usize = 512;

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// A session of `connections` connections at ErrorRecoveryLevel 2: 64
/// writes in flight, read back, every connection carried bytes.
pub async fn run(connections: u16) {
    let mut cfg = TargetConfig::new("127.0.0.1:0".parse().unwrap(), TARGET);
    cfg.luns = vec![LunSpec::Ram(8 << 20)];
    cfg.log = false;
    cfg.params.error_recovery_level = 2;
    cfg.params.max_connections = 4;
    let mut server = Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());

    let config = SessionConfig::new(concat!("iqn.2026-12.test:", env!("CARGO_PKG_NAME")))
        .with_target(TARGET)
        .with_error_recovery_level(2)
        .with_max_connections(connections, Spread::RoundRobin);
    let sent_on: Arc<Mutex<BTreeMap<SocketAddr, usize>>> = Arc::default();
    let seen = sent_on.clone();
    let (c, driver) = Client::new(&addr.to_string(), config).unwrap();
    let driver = driver.with_tap(Box::new(move |dir, local, _peer, bytes| {
        if dir == Direction::Sent {
            *seen.lock().unwrap().entry(local).or_default() += bytes.len();
        }
    }));
    let events = c.events();
    let run = spawn_driver(driver);
    c.logged_in().await.unwrap();
    let n = usize::from(connections);
    // Every added connection logs in (RFC 7143 section 5.3.4: with the
    // session's TSIH) and reports itself up.
    let mut up = 0;
    while up < n - 1 {
        if let Event::ConnectionUp { .. } = events.recv().await.unwrap() {
            up += 1;
        }
    }
    let neg = c.negotiated().await.unwrap().unwrap();
    assert_eq!(
        (neg.error_recovery_level, neg.max_connections),
        (2, connections)
    );
    sent_on.lock().unwrap().clear();

    let chunk = 16 * 1024;
    let mut pending = Vec::new();
    for i in 0..64u32 {
        let lba = i * (chunk / BLOCK) as u32;
        let cdb = write10(lba, (chunk / BLOCK) as u16, RwFlags::default());
        let p = c
            .submit(ScsiCommand::write(Lun::ZERO, cdb, pattern(chunk, i as u8)))
            .await
            .unwrap();
        pending.push(p);
    }
    for p in pending {
        let (outcome, _) = p.wait().await.unwrap();
        assert!(
            matches!(outcome, TaskOutcome::Scsi(ref r) if r.is_good()),
            "{outcome:?}"
        );
    }
    for i in 0..64u32 {
        let lba = i * (chunk / BLOCK) as u32;
        let cdb = read10(lba, (chunk / BLOCK) as u16, RwFlags::default());
        let r = c
            .execute(ScsiCommand::read(Lun::ZERO, cdb, chunk as u32))
            .await
            .unwrap();
        assert!(r.result.is_good());
        assert_eq!(r.data, pattern(chunk, i as u8), "block range {i}");
    }
    // Commands (and their data) went out on every connection.
    assert_eq!(sent_on.lock().unwrap().len(), n, "sockets written");
    c.logout().await.unwrap();
    join_driver(run).await;
    stop.shutdown();
    thread.join().unwrap().unwrap();
}
