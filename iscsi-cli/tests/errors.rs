//! Every failure of the `iscsi` binary is one line on stderr, starting
//! with `iscsi: `, and a non-zero exit status; never a panic. Each path
//! runs the real binary against loopback: a closed port, a target that
//! refuses the login with a status, CHECK CONDITIONs, a target that never
//! answers, bad arguments.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};

use iscsi_mio::server::{LunSpec, Server, ShutdownHandle, TargetConfig};

const IQN: &str = "iqn.2026-11.rs.iscsi:cli-errors";

/// The embedded target (1 MiB RAM disk = 2048 blocks of 512 bytes) on a
/// free loopback port; stopped on drop.
struct Target {
    addr: SocketAddr,
    stop: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<Result<(), iscsi_mio::server::TargetError>>>,
}

impl Target {
    fn start(chap: Option<(&str, &str)>) -> Target {
        let mut cfg = TargetConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), IQN);
        cfg.luns.push(LunSpec::Ram(1 << 20));
        cfg.log = false;
        cfg.chap = chap.map(|(u, s)| (u.to_string(), s.to_string()));
        let server = Server::bind(cfg).unwrap();
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || {
            let mut server = server;
            server.run()
        });
        Target {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, lun: u32) -> String {
        format!("iscsi://{}/{IQN}/{lun}", self.addr)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn iscsi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iscsi"))
        .args(args)
        .env_remove("ISCSI_LOG")
        .output()
        .expect("run the iscsi binary")
}

/// Asserts a failure: non-zero exit, exactly one stderr line that starts
/// with `iscsi: ` and contains every one of `needles`; returns the line.
fn fails_with(args: &[&str], needles: &[&str]) -> String {
    let out = iscsi(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {err:?}");
    let line = lines[0];
    assert!(line.starts_with("iscsi: "), "{line}");
    for n in needles {
        assert!(line.contains(n), "{args:?}: {line:?} lacks {n:?}");
    }
    line.to_string()
}

fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

#[test]
fn connection_refused_on_every_driver() {
    let url = format!("iscsi://{}/{IQN}/0", closed_port());
    for driver in ["std", "mio", "smol"] {
        let line = fails_with(
            &["--driver", driver, "inquiry", &url],
            &["connection refused"],
        );
        assert!(line.contains("127.0.0.1"), "{driver}: {line}");
    }
    let portal = closed_port().to_string();
    fails_with(&["discover", &portal], &["connection refused"]);
}

#[test]
fn login_refused_names_the_status() {
    let t = Target::start(None);
    let url = format!("iscsi://{}/iqn.2026-11.rs.iscsi:no-such-target/0", t.addr);
    for driver in ["std", "mio", "smol"] {
        fails_with(
            &["--driver", driver, "readcap", &url],
            &["login failed", "target not found", "0x0203"],
        );
    }
}

#[test]
fn chap_failure_names_the_status() {
    let t = Target::start(Some(("alice", "the-right-secret")));
    let url = format!("iscsi://alice%wrong-secret@{}/{IQN}/0", t.addr);
    let line = fails_with(
        &["inquiry", &url],
        &["login failed", "authentication failure", "0x0201"],
    );
    // The secret given on the command line is not echoed back.
    assert!(!line.contains("wrong-secret"), "{line}");
    // No credentials at all against a CHAP target: refused too.
    fails_with(&["inquiry", &t.url(0)], &["login failed"]);
    // The right secret works.
    let ok = format!("iscsi://alice%the-right-secret@{}/{IQN}/0", t.addr);
    let out = iscsi(&["readcap", &ok]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn check_condition_read_past_the_end_is_decoded() {
    let t = Target::start(None);
    let url = t.url(0);
    let dir = std::env::temp_dir().join(format!("iscsi-cli-errors-{}", std::process::id()));
    let out = dir.with_extension("bin");
    let line = fails_with(
        &[
            "read",
            &url,
            "--lba",
            "2047",
            "--blocks",
            "2",
            "-o",
            out.to_str().unwrap(),
        ],
        &[
            "READ(16)",
            "CHECK CONDITION",
            "ILLEGAL REQUEST",
            "LOGICAL BLOCK ADDRESS OUT OF RANGE",
            "0x21",
        ],
    );
    assert!(!line.contains("panicked"), "{line}");
    let _ = std::fs::remove_file(&out);
}

#[test]
fn check_condition_missing_lun_is_decoded() {
    let t = Target::start(None);
    fails_with(
        &["readcap", &t.url(5)],
        &[
            "READ CAPACITY",
            "CHECK CONDITION",
            "ILLEGAL REQUEST",
            "LOGICAL UNIT NOT SUPPORTED",
        ],
    );
}

/// A peer that accepts TCP connections and never says a word: the login
/// times out after `--timeout` on every driver.
#[test]
fn login_timeout_on_every_driver() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("iscsi://{}/{IQN}/0", silent.local_addr().unwrap());
    for driver in ["std", "mio", "smol"] {
        fails_with(
            &["--timeout", "1", "--driver", driver, "inquiry", &url],
            &["login timed out"],
        );
    }
    drop(silent);
}

#[test]
fn bad_arguments_are_one_line() {
    fails_with(&["inquiry", "not-a-url"], &["invalid URL"]);
    fails_with(&["inquiry", "iscsi://127.0.0.1/iqn.x/notanumber"], &["LUN"]);
    let t = Target::start(None);
    let input = std::env::temp_dir().join(format!("iscsi-cli-odd-{}.bin", std::process::id()));
    std::fs::write(&input, [0u8; 100]).unwrap();
    fails_with(
        &[
            "write",
            &t.url(0),
            "--lba",
            "0",
            "-i",
            input.to_str().unwrap(),
        ],
        &["not a multiple of the block size"],
    );
    std::fs::write(&input, [7u8; 1024]).unwrap();
    fails_with(
        &[
            "write",
            &t.url(0),
            "--lba",
            "2047",
            "-i",
            input.to_str().unwrap(),
        ],
        &["past the end of the LUN"],
    );
    let _ = std::fs::remove_file(&input);
}

/// The happy path, for contrast: write 2 blocks, read them back.
#[test]
fn write_then_read_round_trip() {
    let t = Target::start(None);
    let base = std::env::temp_dir().join(format!("iscsi-cli-rt-{}", std::process::id()));
    let input = base.with_extension("in");
    let output = base.with_extension("out");
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    let out = iscsi(&[
        "write",
        &t.url(0),
        "--lba",
        "9",
        "-i",
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = iscsi(&[
        "read",
        &t.url(0),
        "--lba",
        "9",
        "--blocks",
        "2",
        "-o",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&output).unwrap(), data);
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
}

#[test]
fn help_lists_every_subcommand() {
    let out = iscsi(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "discover", "inquiry", "readcap", "read", "write", "bench", "serve", "demo",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "{cmd} missing from --help:\n{help}"
        );
    }
    for flag in ["--verbose", "--pcap", "--driver", "--timeout"] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}
