//! The server's connection limit (`TargetConfig::max_connections`,
//! `iscsi serve --max-connections`) and its accept queue: a connection
//! over the limit is closed at once, the ones within it are served, and a
//! burst of connects larger than std's default backlog of 128 is served.
//! (The backlog itself is seen with `ss -ltn`: conformance/bench.md.)

mod server_support;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use iscsi_mio::server::LunSpec;
use server_support::*;

const MIB: u64 = 1 << 20;

/// Reads until the peer closes: true for EOF or a reset, false for a
/// read timeout (the connection stayed open).
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn a_connection_over_the_limit_is_closed_and_the_others_served() {
    let mut cfg = config(vec![LunSpec::Ram(MIB)]);
    cfg.max_connections = 2;
    let srv = start(cfg);
    let mut a = Client::connect(srv.addr, 1);
    let mut b = Client::connect(srv.addr, 2);
    // Both are in: each logs in and reads.
    a.login();
    b.login();
    assert_eq!(a.read10(0, 1), vec![0u8; 512]);
    // The third TCP connection is closed without a word.
    let mut third = TcpStream::connect(srv.addr).unwrap();
    assert!(closed_by_peer(&mut third));
    // The first two are unaffected.
    assert_eq!(b.read10(1, 1), vec![0u8; 512]);
    a.logout();
    // A freed place is taken again.
    let mut d = Client::connect(srv.addr, 4);
    d.login();
    assert_eq!(d.read10(2, 1), vec![0u8; 512]);
    b.logout();
    d.logout();
    srv.stop().unwrap();
}

#[test]
fn a_burst_of_300_connects_is_served() {
    let mut cfg = config(vec![LunSpec::Ram(MIB)]);
    cfg.max_connections = 400;
    let srv = start(cfg);
    // 300 connects at once, all accepted and registered.
    let streams: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    // Every one is served: the last logs in.
    drop(streams);
    let mut c = Client::connect(srv.addr, 7);
    c.login();
    c.logout();
    srv.stop().unwrap();
}
