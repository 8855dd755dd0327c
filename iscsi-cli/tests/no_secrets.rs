//! Secrets never reach the log: the `iscsi` binary runs a mutual-CHAP
//! login with every log target at trace level (`ISCSI_LOG=trace`), and
//! its stderr is searched for the two secrets and for every CHAP_C and
//! CHAP_R value that crossed the wire (taken from the `--pcap` capture of
//! the same run). RFC 7143 section 12.1.3: the challenge and response are
//! derived from the secret, so they are redacted at every level too.
//!
//! The binary runs in its own process, so its global subscriber sees every
//! event (no test-thread races on callsite registration).

use std::net::SocketAddr;
use std::process::Command;

use iscsi_mio::server::{LunSpec, Server, TargetConfig};

const IQN: &str = "iqn.2026-11.rs.iscsi:no-secrets";
const SECRET: &str = "initiator-SECRET-0123";
const TARGET_SECRET: &str = "target-SECRET-4567";

/// Every `KEY=value` value in raw bytes (PDU text segments).
fn values_of(raw: &[u8], key: &str) -> Vec<String> {
    let pat = format!("{key}=");
    let pat = pat.as_bytes();
    let mut out = Vec::new();
    for i in 0..raw.len() {
        let Some(rest) = raw.get(i..) else { break };
        let boundary = i == 0 || raw.get(i - 1).is_some_and(|b| !b.is_ascii_alphanumeric());
        if boundary && rest.starts_with(pat) {
            let v = &rest[pat.len()..];
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            out.push(String::from_utf8_lossy(&v[..end]).into_owned());
        }
    }
    out
}

fn run(driver: &str, pcap: Option<&std::path::Path>) -> (String, Vec<u8>) {
    let mut cfg = TargetConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), IQN);
    cfg.luns.push(LunSpec::Ram(1 << 20));
    cfg.log = false;
    cfg.chap = Some(("alice".into(), SECRET.into()));
    cfg.mutual_chap = Some(("tgt".into(), TARGET_SECRET.into()));
    let server = Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || {
        let mut server = server;
        server.run()
    });
    let url = format!("iscsi://alice%{SECRET}@{addr}/{IQN}/0");
    let mutual = format!("tgt:{TARGET_SECRET}");
    let mut args = vec!["--driver", driver, "--mutual-chap", &mutual];
    let pcap_arg;
    if let Some(p) = pcap {
        pcap_arg = p.to_string_lossy().into_owned();
        args.extend(["--pcap", &pcap_arg]);
    }
    args.extend(["-vvv", "readcap", &url]);
    let out = Command::new(env!("CARGO_BIN_EXE_iscsi"))
        .args(&args)
        .env("ISCSI_LOG", "trace")
        .output()
        .unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{driver}: {log}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1048576 bytes"),
        "{out:?}"
    );
    let wire = pcap.map(|p| std::fs::read(p).unwrap()).unwrap_or_default();
    (log, wire)
}

fn check(driver: &str, log: &str) {
    // The run logged the login in detail (so the search below means
    // something): the negotiated keys, CHAP keys with values redacted.
    for shown in [
        "logged in",
        "HeaderDigest",
        "CHAP_N=alice",
        "CHAP_R=<redacted>",
        "CHAP_C=<redacted>",
        "logged out",
    ] {
        assert!(log.contains(shown), "{driver}: {shown:?} not in:\n{log}");
    }
    for secret in [SECRET, TARGET_SECRET] {
        assert!(!log.contains(secret), "{driver}: secret in the log:\n{log}");
    }
}

#[test]
fn chap_login_at_trace_level_logs_no_secret() {
    let pcap = std::env::temp_dir().join(format!("iscsi-no-secrets-{}.pcap", std::process::id()));
    let (log, wire) = run("std", Some(&pcap));
    let _ = std::fs::remove_file(&pcap);
    check("std", &log);
    // The target's challenge and response and ours: four values, none of
    // them in the log.
    let seen: Vec<String> = ["CHAP_C", "CHAP_R"]
        .iter()
        .flat_map(|k| values_of(&wire, k))
        .collect();
    assert_eq!(seen.len(), 4, "{seen:?}");
    let lower = log.to_ascii_lowercase();
    for v in seen {
        let hex = v.trim_start_matches("0x").to_ascii_lowercase();
        assert!(hex.len() >= 16, "{v}");
        assert!(!lower.contains(&hex), "{v} in the log:\n{log}");
    }
}

#[test]
fn chap_login_at_trace_level_logs_no_secret_mio_smol() {
    for driver in ["mio", "smol"] {
        let (log, _) = run(driver, None);
        check(driver, &log);
    }
}

#[test]
fn values_of_finds_keys_only_at_a_boundary() {
    let raw = b"\x01\x02CHAP_R=0xab\0XCHAP_R=0xcd\0CHAP_C=0xef";
    assert_eq!(values_of(raw, "CHAP_R"), vec!["0xab"]);
    assert_eq!(values_of(raw, "CHAP_C"), vec!["0xef"]);
}
