//! istgt (a second, independent target) on a free loopback port, from a
//! generated minimal config file.

use super::{free_port, log_tail, register_pid, unregister_pid, wait_exit, wait_for_port, Scratch};
use crate::tools::{signal, Chap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How to set up an [`Istgt`]. `Default`: no CHAP, NOP-In every 2 s,
/// `UseDigest Auto`, InitialR2T Yes, ImmediateData Yes, one 64 MiB disk as
/// LUN 0 of target `<node_base>:disk1`.
#[derive(Debug, Clone)]
pub struct IstgtConfig {
    /// `NodeBase`; the target IQN is `<node_base>:<target_name>`.
    pub node_base: String,
    /// `TargetName` of the logical unit.
    pub target_name: String,
    /// Size of the file-backed LUN 0 in bytes.
    pub lun_size: u64,
    /// `NopInInterval` in seconds (istgt sends NOP-In to idle initiators).
    pub nop_in_interval: u32,
    /// Initiator CHAP credentials the target requires (`AuthMethod CHAP`).
    pub chap: Option<Chap>,
    /// Target credentials for mutual CHAP (`AuthMethod CHAP Mutual`; only
    /// used together with `chap`).
    pub mutual: Option<Chap>,
    /// `UseDigest` value: `Auto`, `Header`, `Data` or `Header Data`.
    pub use_digest: String,
    /// `InitialR2T`.
    pub initial_r2t: bool,
    /// `ImmediateData`.
    pub immediate_data: bool,
    /// `FirstBurstLength`.
    pub first_burst_length: u32,
    /// `MaxRecvDataSegmentLength`.
    pub max_recv_data_segment_length: u32,
    /// Require the same authentication for discovery sessions
    /// (`DiscoveryAuthMethod` = the `AuthMethod` of the unit,
    /// `DiscoveryAuthGroup AuthGroup1`); `false`: `DiscoveryAuthMethod None`.
    pub discovery_auth: bool,
}

impl Default for IstgtConfig {
    fn default() -> Self {
        IstgtConfig {
            node_base: "iqn.2026-11.test.istgt".into(),
            target_name: "disk1".into(),
            lun_size: 64 << 20,
            nop_in_interval: 2,
            chap: None,
            mutual: None,
            use_digest: "Auto".into(),
            initial_r2t: true,
            immediate_data: true,
            first_burst_length: 65536,
            max_recv_data_segment_length: 262144,
            discovery_auth: false,
        }
    }
}

impl IstgtConfig {
    /// The target IQN.
    pub fn iqn(&self) -> String {
        format!("{}:{}", self.node_base, self.target_name)
    }

    /// The `AuthMethod` value this config implies.
    pub fn auth_method(&self) -> &'static str {
        match (&self.chap, &self.mutual) {
            (Some(_), Some(_)) => "CHAP Mutual",
            (Some(_), None) => "CHAP",
            _ => "None",
        }
    }

    /// Renders `istgt.conf` for a portal on 127.0.0.1:`port` with all files
    /// in `dir` and the LUN in `lun`.
    pub fn render(&self, port: u16, dir: &Path, lun: &Path) -> String {
        let yn = |b: bool| if b { "Yes" } else { "No" };
        let d = dir.display();
        let mut s = String::new();
        let _ = writeln!(s, "[Global]");
        let _ = writeln!(s, "  NodeBase \"{}\"", self.node_base);
        let _ = writeln!(s, "  PidFile {d}/istgt.pid");
        let _ = writeln!(s, "  AuthFile {d}/auth.conf");
        let _ = writeln!(s, "  MediaDirectory {d}");
        let _ = writeln!(s, "  Timeout 30");
        let _ = writeln!(s, "  NopInInterval {}", self.nop_in_interval);
        if self.discovery_auth && self.chap.is_some() {
            let _ = writeln!(s, "  DiscoveryAuthMethod {}", self.auth_method());
            let _ = writeln!(s, "  DiscoveryAuthGroup AuthGroup1");
        } else {
            let _ = writeln!(s, "  DiscoveryAuthMethod None");
        }
        let _ = writeln!(s, "  MaxSessions 16");
        let _ = writeln!(s, "  MaxConnections 4");
        let _ = writeln!(s, "  MaxR2T 32");
        let _ = writeln!(s, "  MaxOutstandingR2T 16");
        let _ = writeln!(s, "  DefaultTime2Wait 2");
        let _ = writeln!(s, "  DefaultTime2Retain 60");
        let _ = writeln!(s, "  FirstBurstLength {}", self.first_burst_length);
        let _ = writeln!(s, "  MaxBurstLength 1048576");
        let _ = writeln!(
            s,
            "  MaxRecvDataSegmentLength {}",
            self.max_recv_data_segment_length
        );
        let _ = writeln!(s, "  InitialR2T {}", yn(self.initial_r2t));
        let _ = writeln!(s, "  ImmediateData {}", yn(self.immediate_data));
        let _ = writeln!(s, "  DataPDUInOrder Yes");
        let _ = writeln!(s, "  DataSequenceInOrder Yes");
        let _ = writeln!(s, "  ErrorRecoveryLevel 0");
        // No Portal line: the unit-control port (istgtcontrol) stays closed.
        let _ = writeln!(s, "[UnitControl]");
        let _ = writeln!(s, "  AuthMethod None");
        let _ = writeln!(s, "[PortalGroup1]");
        let _ = writeln!(s, "  Portal DA1 127.0.0.1:{port}");
        let _ = writeln!(s, "[InitiatorGroup1]");
        let _ = writeln!(s, "  InitiatorName \"ALL\"");
        let _ = writeln!(s, "  Netmask 127.0.0.0/8");
        let _ = writeln!(s, "[LogicalUnit1]");
        let _ = writeln!(s, "  TargetName {}", self.target_name);
        let _ = writeln!(s, "  Mapping PortalGroup1 InitiatorGroup1");
        let _ = writeln!(s, "  AuthMethod {}", self.auth_method());
        if self.chap.is_some() {
            let _ = writeln!(s, "  AuthGroup AuthGroup1");
        }
        let _ = writeln!(s, "  UseDigest {}", self.use_digest);
        let _ = writeln!(s, "  UnitType Disk");
        let _ = writeln!(s, "  LUN0 Storage {} Auto", lun.display());
        s
    }

    /// Renders `auth.conf` (one `Auth "user" "secret" ["muser" "msecret"]`
    /// line in `[AuthGroup1]`).
    pub fn render_auth(&self) -> String {
        let mut s = String::from("[AuthGroup1]\n");
        if let Some(c) = &self.chap {
            let _ = write!(s, "  Auth \"{}\" \"{}\"", c.user, c.secret);
            if let Some(m) = &self.mutual {
                let _ = write!(s, " \"{}\" \"{}\"", m.user, m.secret);
            }
            s.push('\n');
        }
        s
    }
}

/// A running `istgt -c FILE -D`. Stopped in `Drop` (SIGTERM, then SIGKILL).
#[derive(Debug)]
pub struct Istgt {
    child: Child,
    port: u16,
    iqn: String,
    lun_file: PathBuf,
    log: PathBuf,
    config: PathBuf,
    scratch: Scratch,
}

impl Istgt {
    /// Writes the config, starts istgt on a free port and waits until the
    /// port accepts (retries with another port up to 3 times).
    pub fn start(cfg: &IstgtConfig) -> Result<Istgt, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(cfg) {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(format!("istgt did not start: {last}"))
    }

    fn try_start(cfg: &IstgtConfig) -> Result<Istgt, String> {
        let port = free_port()?;
        let scratch = Scratch::new("istgt")?;
        let lun_file = scratch.sparse_file("lun0.img", cfg.lun_size)?;
        let config = scratch.path().join("istgt.conf");
        let w = |p: &Path, s: String| {
            std::fs::write(p, s).map_err(|e| format!("write {}: {e}", p.display()))
        };
        w(&config, cfg.render(port, scratch.path(), &lun_file))?;
        w(&scratch.path().join("auth.conf"), cfg.render_auth())?;
        let log = scratch.path().join("istgt.log");
        let logf = std::fs::File::create(&log).map_err(|e| format!("create log: {e}"))?;
        let logf2 = logf.try_clone().map_err(|e| format!("dup log: {e}"))?;
        let child = Command::new("istgt")
            .arg("-c")
            .arg(&config)
            .arg("-D")
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(logf2)
            .spawn()
            .map_err(|e| format!("cannot spawn istgt: {e}"))?;
        register_pid(child.id());
        let mut t = Istgt {
            child,
            port,
            iqn: cfg.iqn(),
            lun_file,
            log,
            config,
            scratch,
        };
        if let Err(e) = wait_for_port(port, Duration::from_secs(10)) {
            return Err(format!("{e}; istgt log: {}", t.log_tail(5)));
        }
        if let Ok(Some(st)) = t.child.try_wait() {
            return Err(format!("istgt exited ({st}): {}", t.log_tail(5)));
        }
        Ok(t)
    }

    /// TCP port of the portal on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Target IQN.
    pub fn iqn(&self) -> &str {
        &self.iqn
    }

    /// The file backing LUN 0.
    pub fn backing_file(&self) -> &Path {
        &self.lun_file
    }

    /// The generated config file.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// istgt's log file (stdout and stderr).
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// The last lines of istgt's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }
}

impl Drop for Istgt {
    fn drop(&mut self) {
        // istgt may take seconds to act on SIGTERM; it keeps no state worth
        // a long wait, so SIGKILL follows after 2 s.
        signal(self.child.id(), "TERM");
        if !wait_exit(&mut self.child, Duration::from_secs(2)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        unregister_pid(self.child.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_open_target() {
        let c = IstgtConfig::default();
        let s = c.render(4000, Path::new("/x"), Path::new("/x/l.img"));
        assert!(s.contains("Portal DA1 127.0.0.1:4000\n"));
        assert!(s.contains("NopInInterval 2\n"));
        assert!(s.contains("AuthMethod None\n"));
        assert!(!s.contains("AuthGroup"));
        assert!(s.contains("LUN0 Storage /x/l.img Auto\n"));
        assert_eq!(c.render_auth(), "[AuthGroup1]\n");
        assert_eq!(c.iqn(), "iqn.2026-11.test.istgt:disk1");
    }

    #[test]
    fn render_mutual_chap() {
        let c = IstgtConfig {
            chap: Some(Chap::new("u", "s")),
            mutual: Some(Chap::new("mu", "ms")),
            use_digest: "Header Data".into(),
            ..IstgtConfig::default()
        };
        let s = c.render(1, Path::new("/d"), Path::new("/d/l"));
        assert!(s.contains("  AuthMethod CHAP Mutual\n  AuthGroup AuthGroup1\n"));
        assert!(s.contains("UseDigest Header Data\n"));
        assert!(s.contains("DiscoveryAuthMethod None\n"));
        let d = IstgtConfig {
            discovery_auth: true,
            ..c.clone()
        };
        let s = d.render(1, Path::new("/d"), Path::new("/d/l"));
        assert!(s.contains("  DiscoveryAuthMethod CHAP Mutual\n  DiscoveryAuthGroup AuthGroup1\n"));
        assert_eq!(
            c.render_auth(),
            "[AuthGroup1]\n  Auth \"u\" \"s\" \"mu\" \"ms\"\n"
        );
    }
}
