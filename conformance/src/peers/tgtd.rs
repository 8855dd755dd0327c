//! tgtd (the Linux SCSI target framework, user space) on a free loopback port.

use super::{free_port, log_tail, register_pid, unregister_pid, wait_exit, wait_for_port, Scratch};
use crate::tools::{run, run_ok, Chap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Keys that tgtd 1.0.85 accepts in
/// `tgtadm --lld iscsi --op update --mode target --tid 1 --name K --value V`
/// (checked by hand here; anything else, e.g. `TargetAlias`, is answered
/// "invalid request" (exit 22), and so are values out of the RFC 7143 range,
/// e.g. `FirstBurstLength=100`, `MaxRecvDataSegmentLength=1`,
/// `HeaderDigest=Bogus`). A list value (`CRC32C,None`) is accepted but
/// `--op show` prints only its first element.
pub const TGTD_SETTABLE_KEYS: &[&str] = &[
    "MaxRecvDataSegmentLength",
    "MaxXmitDataSegmentLength",
    "HeaderDigest",
    "DataDigest",
    "InitialR2T",
    "MaxOutstandingR2T",
    "ImmediateData",
    "FirstBurstLength",
    "MaxBurstLength",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "ErrorRecoveryLevel",
    "IFMarker",
    "OFMarker",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "MaxConnections",
];

/// How to set up a [`Tgtd`]. `Default` gives an open target (no CHAP) with
/// one 64 MiB disk LUN (LUN 1; LUN 0 is tgtd's controller).
#[derive(Debug, Clone)]
pub struct TgtdConfig {
    /// Target IQN.
    pub iqn: String,
    /// Size of the file-backed LUN 1 in bytes.
    pub lun_size: u64,
    /// Initiator CHAP account the target requires (incoming user).
    pub chap: Option<Chap>,
    /// Target's own CHAP account for mutual authentication (outgoing user).
    pub mutual: Option<Chap>,
    /// `HeaderDigest` value, e.g. `"CRC32C"` or `"CRC32C,None"`.
    pub header_digest: Option<String>,
    /// `DataDigest` value.
    pub data_digest: Option<String>,
    /// `InitialR2T`.
    pub initial_r2t: Option<bool>,
    /// `ImmediateData`.
    pub immediate_data: Option<bool>,
    /// `FirstBurstLength`.
    pub first_burst_length: Option<u32>,
    /// `MaxRecvDataSegmentLength` (what the target declares it can receive).
    pub max_recv_data_segment_length: Option<u32>,
    /// Any other `(key, value)` from [`TGTD_SETTABLE_KEYS`].
    pub extra: Vec<(String, String)>,
}

impl Default for TgtdConfig {
    fn default() -> Self {
        TgtdConfig {
            iqn: "iqn.2026-11.test.tgtd:disk1".into(),
            lun_size: 64 << 20,
            chap: None,
            mutual: None,
            header_digest: None,
            data_digest: None,
            initial_r2t: None,
            immediate_data: None,
            first_burst_length: None,
            max_recv_data_segment_length: None,
            extra: Vec::new(),
        }
    }
}

impl TgtdConfig {
    /// All target parameters to set with `tgtadm --op update`, in order.
    pub fn params(&self) -> Vec<(String, String)> {
        let yn = |b: bool| if b { "Yes" } else { "No" }.to_string();
        let mut v = Vec::new();
        if let Some(x) = &self.header_digest {
            v.push(("HeaderDigest".to_string(), x.clone()));
        }
        if let Some(x) = &self.data_digest {
            v.push(("DataDigest".to_string(), x.clone()));
        }
        if let Some(x) = self.initial_r2t {
            v.push(("InitialR2T".to_string(), yn(x)));
        }
        if let Some(x) = self.immediate_data {
            v.push(("ImmediateData".to_string(), yn(x)));
        }
        if let Some(x) = self.first_burst_length {
            v.push(("FirstBurstLength".to_string(), x.to_string()));
        }
        if let Some(x) = self.max_recv_data_segment_length {
            v.push(("MaxRecvDataSegmentLength".to_string(), x.to_string()));
        }
        v.extend(self.extra.iter().cloned());
        v
    }
}

/// A running tgtd with one target (tid 1) bound to all initiators.
/// Stopped in `Drop` (`tgtadm --op delete --mode target --force`, then
/// `--op delete --mode system`, then SIGKILL if it is still alive).
#[derive(Debug)]
pub struct Tgtd {
    child: Child,
    port: u16,
    control: u16,
    iqn: String,
    lun_file: PathBuf,
    log: PathBuf,
    // Last field: dropped after the process is stopped.
    scratch: Scratch,
}

const TOOL_LIMIT: Duration = Duration::from_secs(10);

impl Tgtd {
    /// Starts tgtd on a free port and configures it (retries with a new port
    /// up to 3 times if the port was taken meanwhile).
    pub fn start(cfg: &TgtdConfig) -> Result<Tgtd, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(cfg) {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(format!("tgtd did not start: {last}"))
    }

    fn try_start(cfg: &TgtdConfig) -> Result<Tgtd, String> {
        let port = free_port()?;
        let scratch = Scratch::new("tgtd")?;
        let lun_file = scratch.sparse_file("lun1.img", cfg.lun_size)?;
        let log = scratch.path().join("tgtd.log");
        let logf = std::fs::File::create(&log).map_err(|e| format!("create log: {e}"))?;
        let logf2 = logf.try_clone().map_err(|e| format!("dup log: {e}"))?;
        // The control socket number must be unique per running tgtd and
        // tgtd only takes 0..=32767 ("-C argument value '32768' out of
        // range"). Derive it from the fresh port; a clash with another tgtd
        // ("another tgtd is using ...lock") makes tgtd exit, and `start`
        // retries with a new port.
        let control = port % 32768;
        let child = Command::new("tgtd")
            .args(["-f", "-C", &control.to_string(), "--iscsi"])
            .arg(format!("portal=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(logf2)
            .spawn()
            .map_err(|e| format!("cannot spawn tgtd: {e}"))?;
        register_pid(child.id());
        let mut t = Tgtd {
            child,
            port,
            control,
            iqn: cfg.iqn.clone(),
            lun_file,
            log,
            scratch,
        };
        t.wait_ready()?;
        t.configure(cfg)?;
        wait_for_port(port, Duration::from_secs(10))?;
        Ok(t)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "tgtd exited early ({st}): {}",
                    log_tail(&self.log, 5)
                ));
            }
            let out = run(
                TOOL_LIMIT,
                "tgtadm",
                &[
                    "-C",
                    &self.control.to_string(),
                    "--op",
                    "show",
                    "--mode",
                    "system",
                ],
            )?;
            if out.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("tgtd control socket not ready: {}", out.describe()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn configure(&self, cfg: &TgtdConfig) -> Result<(), String> {
        self.tgtadm(&[
            "--op", "new", "--mode", "target", "--tid", "1", "-T", &cfg.iqn,
        ])?;
        let lun = self.lun_file.to_string_lossy().into_owned();
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            &lun,
        ])?;
        self.tgtadm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ])?;
        if let Some(c) = &cfg.chap {
            self.tgtadm(&[
                "--op",
                "new",
                "--mode",
                "account",
                "--user",
                &c.user,
                "--password",
                &c.secret,
            ])?;
            self.tgtadm(&[
                "--op", "bind", "--mode", "account", "--tid", "1", "--user", &c.user,
            ])?;
        }
        if let Some(c) = &cfg.mutual {
            self.tgtadm(&[
                "--op",
                "new",
                "--mode",
                "account",
                "--user",
                &c.user,
                "--password",
                &c.secret,
            ])?;
            self.tgtadm(&[
                "--op",
                "bind",
                "--mode",
                "account",
                "--tid",
                "1",
                "--user",
                &c.user,
                "--outgoing",
            ])?;
        }
        let params = cfg.params();
        for (k, v) in &params {
            self.set_param(k, v)?;
        }
        // tgtadm answers 0 for keys it stores; read them back to be sure
        // they took effect (show prints only the first element of a list).
        let shown = self.params()?;
        for (k, v) in &params {
            let want = v.split(',').next().unwrap_or(v);
            let got = shown.iter().find(|(sk, _)| sk.eq_ignore_ascii_case(k));
            match got {
                Some((_, gv)) if gv.eq_ignore_ascii_case(want) => {}
                other => {
                    return Err(format!(
                        "tgtd did not take {k}={v}: show says {:?}",
                        other.map(|(_, v)| v)
                    ))
                }
            }
        }
        Ok(())
    }

    /// Runs `tgtadm -C N --lld iscsi ARGS...` against this instance.
    pub fn tgtadm(&self, args: &[&str]) -> Result<String, String> {
        let c = self.control.to_string();
        let mut full = vec!["-C", c.as_str(), "--lld", "iscsi"];
        full.extend_from_slice(args);
        run_ok(TOOL_LIMIT, "tgtadm", &full).map(|o| o.stdout)
    }

    /// Creates a CHAP account (`--op new --mode account`), bound to
    /// nothing yet.
    pub fn new_account(&self, c: &Chap) -> Result<(), String> {
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "account",
            "--user",
            &c.user,
            "--password",
            &c.secret,
        ])
        .map(|_| ())
    }

    /// Binds (`bind`) or unbinds account `user` on the live target: to
    /// target 1 (`discovery == false`) or to discovery sessions (`discovery
    /// == true`: `tgtadm` without `--tid`, then a discovery login without
    /// those credentials fails with "Authentication failure"), as the
    /// initiator's account or, with `outgoing`, as the target's own account
    /// for mutual CHAP. New sessions see the change at once.
    pub fn bind_account(
        &self,
        user: &str,
        outgoing: bool,
        discovery: bool,
        bind: bool,
    ) -> Result<(), String> {
        let mut args = vec![
            "--op",
            if bind { "bind" } else { "unbind" },
            "--mode",
            "account",
            "--user",
            user,
        ];
        if !discovery {
            args.extend_from_slice(&["--tid", "1"]);
        }
        if outgoing {
            args.push("--outgoing");
        }
        self.tgtadm(&args).map(|_| ())
    }

    /// Sets one target parameter (see [`TGTD_SETTABLE_KEYS`]).
    pub fn set_param(&self, key: &str, value: &str) -> Result<(), String> {
        self.tgtadm(&[
            "--op", "update", "--mode", "target", "--tid", "1", "--name", key, "--value", value,
        ])
        .map(|_| ())
        .map_err(|e| format!("tgtd refused {key}={value}: {e}"))
    }

    /// The target's current parameters as `tgtadm --op show --mode target
    /// --tid 1` prints them (`key=value` lines).
    pub fn params(&self) -> Result<Vec<(String, String)>, String> {
        let out = self.tgtadm(&["--op", "show", "--mode", "target", "--tid", "1"])?;
        Ok(parse_params(&out))
    }

    /// TCP port of the portal on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The control socket number (`tgtd -C N`).
    pub fn control(&self) -> u16 {
        self.control
    }

    /// Target IQN.
    pub fn iqn(&self) -> &str {
        &self.iqn
    }

    /// The file backing LUN 1.
    pub fn backing_file(&self) -> &Path {
        &self.lun_file
    }

    /// tgtd's own log file (stdout and stderr).
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// The scratch directory holding the LUN and the log.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// The last lines of tgtd's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd ignores SIGTERM while it serves a target, and refuses
        // "delete system" while a target exists: remove the target first.
        let _ = self.tgtadm(&[
            "--op", "delete", "--mode", "target", "--tid", "1", "--force",
        ]);
        let c = self.control.to_string();
        let _ = run(
            TOOL_LIMIT,
            "tgtadm",
            &["-C", &c, "--op", "delete", "--mode", "system"],
        );
        if !wait_exit(&mut self.child, Duration::from_secs(5)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        unregister_pid(self.child.id());
        // tgtd leaves its control socket and lock file behind.
        for suffix in ["", ".lock"] {
            let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.control));
        }
    }
}

/// Parses `key=value` lines (as printed by `tgtadm --op show --mode target
/// --tid N`).
pub fn parse_params(s: &str) -> Vec<(String, String)> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_in_order_with_yes_no() {
        let cfg = TgtdConfig {
            header_digest: Some("CRC32C".into()),
            initial_r2t: Some(false),
            immediate_data: Some(true),
            first_burst_length: Some(8192),
            max_recv_data_segment_length: Some(4096),
            extra: vec![("MaxBurstLength".into(), "65536".into())],
            ..TgtdConfig::default()
        };
        let p = cfg.params();
        let s: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            s,
            [
                "HeaderDigest=CRC32C",
                "InitialR2T=No",
                "ImmediateData=Yes",
                "FirstBurstLength=8192",
                "MaxRecvDataSegmentLength=4096",
                "MaxBurstLength=65536"
            ]
        );
        for (k, _) in &p {
            assert!(TGTD_SETTABLE_KEYS.contains(&k.as_str()), "{k}");
        }
    }

    #[test]
    fn parse_show_output() {
        let p = parse_params("nop_interval=0\nHeaderDigest=CRC32C\n junk\nInitialR2T=No\n");
        assert_eq!(p.len(), 3);
        assert_eq!(p[1], ("HeaderDigest".to_string(), "CRC32C".to_string()));
    }
}
