//! `iscsi serve` and `iscsi demo`: the embedded target (the `iscsi-mio`
//! server over `iscsi_proto::target` and `iscsi-lun`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi_mio::server::{LunSpec, Server, TargetConfig};
use iscsi_proto::initiator::{ScsiCommand, SessionConfig};
use iscsi_proto::scsi::cdb::{self, RwFlags};
use iscsi_proto::scsi::lun::Lun;
use iscsi_std::Options;

use crate::bench;
use crate::driver::{DriverKind, Session};

/// Parses `ram:SIZE` (SIZE like 64M, 1G, 512K or bytes) or `file:PATH`.
pub fn parse_lun(s: &str) -> Result<LunSpec, String> {
    if let Some(size) = s.strip_prefix("ram:") {
        return parse_size(size).map(LunSpec::Ram);
    }
    if let Some(path) = s.strip_prefix("file:") {
        if path.is_empty() {
            return Err("--lun file: needs a path".into());
        }
        return Ok(LunSpec::File(PathBuf::from(path)));
    }
    Err(format!(
        "invalid --lun {s:?}: expected ram:SIZE or file:PATH"
    ))
}

/// Parses a size with an optional K/M/G/T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("invalid size {s:?}")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

fn split_creds(s: &str, what: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .ok_or_else(|| format!("{what} takes USER:SECRET"))
}

/// What `iscsi serve --erl N --session-connections N` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// The highest ErrorRecoveryLevel offered (RFC 7143 section 13.20).
    pub erl: u8,
    /// MaxConnections offered (RFC 7143 section 13.2).
    pub session_connections: u16,
}

/// `iscsi serve`: runs until Ctrl-C or SIGTERM.
pub fn serve(
    listen: &str,
    target: &str,
    luns: &[String],
    chap: Option<&str>,
    mutual_chap: Option<&str>,
    recovery: Recovery,
    max_connections: usize,
) -> Result<(), String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("invalid --listen {listen:?}: expected ADDR:PORT"))?;
    let mut cfg = TargetConfig::new(addr, target);
    for l in luns {
        cfg.luns.push(parse_lun(l)?);
    }
    if cfg.luns.is_empty() {
        cfg.luns.push(LunSpec::Ram(64 << 20));
    }
    cfg.chap = chap.map(|c| split_creds(c, "--chap")).transpose()?;
    cfg.mutual_chap = mutual_chap
        .map(|c| split_creds(c, "--mutual-chap"))
        .transpose()?;
    cfg.log = true;
    if recovery.erl > 2 || recovery.session_connections == 0 {
        return Err("--erl takes 0, 1 or 2 and --session-connections at least 1".into());
    }
    cfg.params.error_recovery_level = recovery.erl;
    cfg.params.max_connections = recovery.session_connections;
    // The accept limit (issue 17 item 6): connection max_connections + 1
    // is closed at once and logged by the target; the listen backlog
    // follows it (Server::bind).
    cfg.max_connections = max_connections.max(1);
    let mut server = Server::bind(cfg).map_err(|e| format!("cannot serve on {listen}: {e}"))?;
    let stop = server.shutdown_handle();
    ctrlc::set_handler(move || stop.shutdown()).map_err(|e| format!("signal handler: {e}"))?;
    eprintln!("serving {target} on {} (Ctrl-C stops)", server.local_addr());
    server.run().map_err(|e| e.to_string())?;
    eprintln!("stopped");
    Ok(())
}

/// `iscsi demo`: an embedded target with a 64 MiB RAM disk on a free
/// loopback port, driven by the initiator: discover, log in, write, read
/// back and verify, a 5-second benchmark, log out, stop; the initiator
/// side runs on `driver`.
pub fn demo(seconds: u64, driver: DriverKind) -> Result<(), String> {
    let target = "iqn.2026-11.rs.iscsi:demo";
    let mut cfg = TargetConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), target);
    cfg.luns.push(LunSpec::Ram(64 << 20));
    cfg.log = false;
    let server = Server::bind(cfg).map_err(|e| format!("cannot start the demo target: {e}"))?;
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || {
        let mut server = server;
        server.run()
    });
    println!("1. embedded target {target} serving a 64 MiB RAM disk on {addr}");
    let result = demo_client(addr, target, seconds, driver);
    stop.shutdown();
    let served = thread
        .join()
        .map_err(|_| "the demo target panicked".to_string())?;
    result?;
    served.map_err(|e| format!("demo target: {e}"))?;
    println!("7. target stopped");
    Ok(())
}

fn demo_client(
    addr: SocketAddr,
    target: &str,
    seconds: u64,
    driver: DriverKind,
) -> Result<(), String> {
    let portal = addr.to_string();
    let name = "iqn.2026-11.rs.iscsi:demo-initiator";
    let found = Session::discover(
        driver,
        &portal,
        SessionConfig::new(name),
        Options::default(),
    )
    .map_err(|e| format!("discovery: {e}"))?;
    for t in &found {
        let addrs: Vec<String> = t
            .addresses
            .iter()
            .map(|a| format!("{}:{}", a.host, a.port.unwrap_or(3260)))
            .collect();
        println!("2. discovered {} at {}", t.name, addrs.join(", "));
    }
    let t0 = Instant::now();
    let mut c = Session::connect(
        driver,
        &portal,
        SessionConfig::new(name)
            .with_target(target)
            .with_operational(crate::tool::tuned_params()),
        Options::default(),
    )
    .map_err(|e| format!("login: {e}"))?;
    let neg = c.negotiated();
    println!(
        "3. logged in in {:.1} ms ({} driver){}",
        t0.elapsed().as_secs_f64() * 1e3,
        driver.name(),
        neg.map(|n| format!(
            " (MaxRecvDataSegmentLength {}/{}, MaxBurstLength {}, ImmediateData {}, InitialR2T {})",
            n.initiator_max_recv_data_segment_length,
            n.target_max_recv_data_segment_length,
            n.max_burst_length,
            n.immediate_data,
            n.initial_r2t
        ))
        .unwrap_or_default()
    );
    let lun = Lun::from_number(0).to_u64();
    let cap = crate::tool::read_capacity(&mut c, lun)?;
    let blocks = cap.num_blocks().unwrap_or(0);
    println!("4. LUN 0: {} blocks of {} bytes", blocks, cap.block_len);
    let len = 4u32 << 20;
    let n = len / cap.block_len;
    let lba = 1000u64;
    let data = Bytes::from(bench::XorShift::new(0xdead_beef).bytes(len as usize));
    let t = Instant::now();
    crate::tool::exec(
        &mut c,
        ScsiCommand::write(
            iscsi_proto::scsi::Lun::from_u64(lun),
            cdb::write16(lba, n, RwFlags::default()).to_vec(),
            data.clone(),
        ),
        "WRITE(16)",
    )?;
    let back = crate::tool::exec(
        &mut c,
        ScsiCommand::read(
            iscsi_proto::scsi::Lun::from_u64(lun),
            cdb::read16(lba, n, RwFlags::default()).to_vec(),
            len,
        ),
        "READ(16)",
    )?;
    if back.data != data {
        return Err("5. read-back data differs from what was written".into());
    }
    println!(
        "5. wrote 4 MiB at LBA {lba}, read it back, verified ({:.1} ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("6. {seconds}-second benchmark: 4 KiB random reads, 32 in flight");
    let spec = bench::Spec {
        qd: 32,
        bs: 4096,
        duration: Duration::from_secs(seconds),
        pattern: bench::Pattern::Randread,
        lun,
        block_size: cap.block_len,
        num_blocks: blocks,
        progress: true,
    };
    let report = bench::run(&mut c, &spec)?;
    println!("   {}", report.summary());
    c.logout().map_err(|e| format!("logout: {e}"))?;
    println!("   logged out");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_luns() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("0").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999999T").is_err());
        assert!(matches!(parse_lun("ram:8M").unwrap(), LunSpec::Ram(n) if n == 8 << 20));
        assert!(matches!(
            parse_lun("file:/tmp/x").unwrap(),
            LunSpec::File(_)
        ));
        assert!(parse_lun("disk:1").is_err());
    }

    /// The demo end to end on loopback (1-second benchmark).
    #[test]
    fn demo_runs() {
        demo(1, DriverKind::Std).unwrap();
    }

    /// The demo's initiator side on the mio driver.
    #[test]
    fn demo_runs_on_mio() {
        demo(1, DriverKind::Mio).unwrap();
    }

    /// The demo's initiator side on the smol driver.
    #[test]
    fn demo_runs_on_smol() {
        demo(1, DriverKind::Smol).unwrap();
    }
}
