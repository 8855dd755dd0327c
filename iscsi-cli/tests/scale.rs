//! `iscsi scale`: N sessions on one mio Poll against the embedded target.
//! The oracle is the target's own view: every session the tool reports
//! logged in was a connection the target served, the reads it counts
//! completed GOOD, and the per-session figures come from /proc.

use std::net::SocketAddr;
use std::process::Command;

use iscsi_mio::server::{LunSpec, Server, TargetConfig};

const IQN: &str = "iqn.2026-12.rs.iscsi:cli-scale";

#[test]
fn scale_opens_every_session_and_reports_json() {
    let mut cfg = TargetConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), IQN);
    cfg.luns.push(LunSpec::Ram(1 << 20));
    cfg.log = false;
    let server = Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || {
        let mut server = server;
        server.run()
    });
    let out = Command::new(env!("CARGO_BIN_EXE_iscsi"))
        .args([
            "scale",
            &format!("iscsi://{addr}/{IQN}/0"),
            "--sessions",
            "5",
            "--qd",
            "2",
            "--seconds",
            "1",
            "--json",
        ])
        .env_remove("ISCSI_LOG")
        .output()
        .unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sessions"], 5);
    assert_eq!(v["logged_in"], 5);
    assert_eq!(v["failed"], 0);
    assert!(v["ios"].as_u64().unwrap() > 0);
    assert!(v["p99_us"].as_u64().unwrap() >= v["p50_us"].as_u64().unwrap());
    // Each session holds at least its socket.
    assert!(v["fds_per_session"].as_f64().unwrap() >= 1.0);
}

#[test]
fn scale_refuses_zero_sessions() {
    let out = Command::new(env!("CARGO_BIN_EXE_iscsi"))
        .args(["scale", "iscsi://127.0.0.1:1/iqn.x/0", "--sessions", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("iscsi: "));
}
