//! The mio initiator driver with several connections per session (MC/S,
//! RFC 7143 section 13.2) at ErrorRecoveryLevel 2 against the embedded
//! target (`iscsi_mio::server`, `iscsi serve --erl 2
//! --session-connections 4`) on loopback.
//!
//! RFC 7143 section 13.2: "MaxConnections ... Initiator and target
//! negotiate the maximum number of connections requested/acceptable";
//! section 4.2.2.1: CmdSN is session-wide, so commands may go out on any
//! connection; section 4.2.5.1: a task's responses come back on the
//! connection it was sent on (allegiance).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use iscsi_mio::client::Blocking;
use iscsi_mio::server::{LunSpec, Server, TargetConfig};
use iscsi_proto::driver::Direction;
use iscsi_proto::initiator::{ScsiCommand, SessionConfig, Spread, TaskOutcome};
use iscsi_proto::scsi::cdb::{read10, write10, RwFlags};
use iscsi_proto::scsi::Lun;

const TARGET: &str = "iqn.2026-12.test.mio:mcs";
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

    let config = SessionConfig::new("iqn.2026-12.test:mio-mcs")
        .with_target(TARGET)
        .with_error_recovery_level(2)
        .with_max_connections(connections, Spread::RoundRobin);
    let mut b = Blocking::new(&addr.to_string(), config).unwrap();
    // Which local sockets carried bytes to the target after login.
    let sent_on: Arc<Mutex<BTreeMap<SocketAddr, usize>>> = Arc::default();
    let seen = sent_on.clone();
    b.client()
        .set_tap(Box::new(move |dir, local, _peer, bytes| {
            if dir == Direction::Sent {
                *seen.lock().unwrap().entry(local).or_default() += bytes.len();
            }
        }));
    b.login().unwrap();
    let n = usize::from(connections);
    b.run_until(|c| {
        let ids = c.session().connection_ids();
        ids.len() == n && ids.iter().all(|cid| c.session().is_connection_up(*cid))
    })
    .unwrap();
    let neg = b.client().session().negotiated().unwrap().clone();
    assert_eq!(neg.error_recovery_level, 2);
    assert_eq!(neg.max_connections, connections);
    let tsih = b.client().session().tsih();
    sent_on.lock().unwrap().clear();

    // 64 writes of 16 KiB in flight at once, then read back.
    let chunk = 16 * 1024;
    let mut tasks = Vec::new();
    let mut used = BTreeSet::new();
    for i in 0..64u32 {
        let data = pattern(chunk, i as u8);
        let lba = i * (chunk / BLOCK) as u32;
        let cdb = write10(lba, (chunk / BLOCK) as u16, RwFlags::default());
        let t = b
            .submit(ScsiCommand::write(Lun::ZERO, cdb.to_vec(), data))
            .unwrap();
        if let Some(cid) = b.client().session().task_connection(t) {
            used.insert(cid);
        }
        tasks.push(t);
    }
    for t in tasks {
        let (outcome, _) = b.wait(t).unwrap();
        assert!(
            matches!(outcome, TaskOutcome::Scsi(ref r) if r.is_good()),
            "{outcome:?}"
        );
    }
    for i in 0..64u32 {
        let lba = i * (chunk / BLOCK) as u32;
        let cdb = read10(lba, (chunk / BLOCK) as u16, RwFlags::default());
        let r = b
            .execute(ScsiCommand::read(Lun::ZERO, cdb.to_vec(), chunk as u32))
            .unwrap();
        assert!(r.result.is_good());
        assert_eq!(r.data, pattern(chunk, i as u8), "block range {i}");
    }
    assert_eq!(used.len(), n, "commands went out on {used:?}");
    let sockets = sent_on.lock().unwrap().len();
    assert_eq!(sockets, n, "bytes written on {sockets} sockets");
    assert_eq!(b.client().session().tsih(), tsih);
    b.logout().unwrap();
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
