//! The blocking driver with several connections per session (MC/S, RFC
//! 7143 section 13.2) at ErrorRecoveryLevel 2 against the embedded target
//! (`iscsi_mio::server`, what `iscsi serve --erl 2 --session-connections
//! 4` runs) on loopback.
//!
//! RFC 7143 section 13.2: MaxConnections is "the maximum number of
//! connections requested/acceptable"; section 4.2.2.1: CmdSN is
//! session-wide, so a command may go out on any connection; section
//! 4.2.5.1: its responses come back on that connection (allegiance).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use iscsi_mio::server::{LunSpec, Server, TargetConfig};
use iscsi_proto::initiator::{ScsiCommand, SessionConfig, Spread, TaskOutcome};
use iscsi_proto::scsi::cdb::{read10, write10, RwFlags};
use iscsi_proto::scsi::Lun;
use iscsi_std::{Client, Direction, Options};

const TARGET: &str = "iqn.2026-12.test.std:mcs";
const BLOCK: usize = 512;

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn run(connections: u16) {
    let mut cfg = TargetConfig::new("127.0.0.1:0".parse().unwrap(), TARGET);
    cfg.luns = vec![LunSpec::Ram(8 << 20)];
    cfg.log = false;
    cfg.params.error_recovery_level = 2;
    cfg.params.max_connections = 4;
    let mut server = Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());

    let config = SessionConfig::new("iqn.2026-12.test:std-mcs")
        .with_target(TARGET)
        .with_error_recovery_level(2)
        .with_max_connections(connections, Spread::RoundRobin);
    let sent_on: Arc<Mutex<BTreeMap<SocketAddr, usize>>> = Arc::default();
    let seen = sent_on.clone();
    let opts = Options::new()
        .with_tap(Box::new(move |dir, local, _peer, bytes| {
            if dir == Direction::Sent {
                *seen.lock().unwrap().entry(local).or_default() += bytes.len();
            }
        }))
        .with_background(None);
    let mut c = Client::connect(&addr.to_string(), config, opts).unwrap();
    let n = usize::from(connections);
    let all_up = |c: &Client| {
        c.with_session(|s| {
            let ids = s.connection_ids();
            ids.len() == n && ids.iter().all(|cid| s.is_connection_up(*cid))
        })
    };
    let mut rounds = 0;
    while !all_up(&c) {
        c.poll_idle().unwrap();
        rounds += 1;
        assert!(rounds < 100_000, "the added connections never logged in");
    }
    let (erl, maxc, tsih) = c.with_session(|s| {
        let neg = s.negotiated().unwrap();
        (neg.error_recovery_level, neg.max_connections, s.tsih())
    });
    assert_eq!((erl, maxc), (2, connections));
    sent_on.lock().unwrap().clear();

    let chunk = 16 * 1024;
    let mut tasks = Vec::new();
    let mut used = BTreeSet::new();
    for i in 0..64u32 {
        let lba = i * (chunk / BLOCK) as u32;
        let cdb = write10(lba, (chunk / BLOCK) as u16, RwFlags::default());
        let t = c
            .submit(ScsiCommand::write(
                Lun::ZERO,
                cdb.to_vec(),
                pattern(chunk, i as u8),
            ))
            .unwrap();
        c.flush().unwrap();
        if let Some(cid) = c.with_session(|s| s.task_connection(t)) {
            used.insert(cid);
        }
        tasks.push(t);
    }
    for t in tasks {
        let (outcome, _) = c.wait(t).unwrap();
        assert!(
            matches!(outcome, TaskOutcome::Scsi(ref r) if r.is_good()),
            "{outcome:?}"
        );
    }
    for i in 0..64u32 {
        let lba = i * (chunk / BLOCK) as u32;
        let cdb = read10(lba, (chunk / BLOCK) as u16, RwFlags::default());
        let r = c
            .execute(ScsiCommand::read(Lun::ZERO, cdb.to_vec(), chunk as u32))
            .unwrap();
        assert!(r.result.is_good());
        assert_eq!(r.data, pattern(chunk, i as u8), "block range {i}");
    }
    assert_eq!(used.len(), n, "commands went out on {used:?}");
    assert_eq!(sent_on.lock().unwrap().len(), n, "sockets written");
    assert_eq!(c.with_session(|s| s.tsih()), tsih);
    c.logout().unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn two_connections_at_erl2_spread_and_complete() {
    run(2);
}

#[test]
fn four_connections_at_erl2_spread_and_complete() {
    run(4);
}
