//! Running external tools (always under coreutils `timeout`) and building
//! libiscsi URLs.

use std::process::{Command, Stdio};
use std::time::Duration;

/// What an external tool printed and how it ended.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything written to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything written to stderr (lossy UTF-8).
    pub stderr: String,
}

impl ToolOutput {
    /// True if the tool exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// True if `timeout` had to stop the tool (exit 124, or 137 after `-k`).
    pub fn timed_out(&self) -> bool {
        matches!(self.code, Some(124) | Some(137))
    }

    /// A one-paragraph description for error messages: the command, exit
    /// code and the last lines of stderr and stdout.
    pub fn describe(&self) -> String {
        let status = match self.code {
            Some(124) | Some(137) => "timed out".to_string(),
            Some(c) => format!("exit {c}"),
            None => "killed by a signal".to_string(),
        };
        format!(
            "`{}` {}; stderr: {}; stdout: {}",
            self.cmdline,
            status,
            tail(&self.stderr, 3),
            tail(&self.stdout, 3)
        )
    }
}

/// The last `n` non-empty lines of `s`, joined with " | " (for messages).
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    let joined = lines.get(start..).unwrap_or(&[]).join(" | ");
    if joined.is_empty() {
        "(empty)".to_string()
    } else {
        joined
    }
}

/// Runs `program args...` under `timeout -k 2 SECS`, capturing its output.
///
/// Errors only if the process cannot be started at all; a non-zero exit is
/// reported in [`ToolOutput::code`].
pub fn run(limit: Duration, program: &str, args: &[&str]) -> Result<ToolOutput, String> {
    let secs = limit.as_secs().max(1);
    let cmdline = format!("{} {}", program, args.join(" "));
    let out = Command::new("timeout")
        .arg("-k")
        .arg("2")
        .arg(secs.to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start `timeout {cmdline}`: {e}"))?;
    Ok(ToolOutput {
        cmdline,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Like [`run`] but a non-zero exit (or a timeout) is an error.
pub fn run_ok(limit: Duration, program: &str, args: &[&str]) -> Result<ToolOutput, String> {
    let out = run(limit, program, args)?;
    if out.success() {
        Ok(out)
    } else {
        Err(out.describe())
    }
}

/// Sends a signal (`"INT"`, `"TERM"`, `"KILL"`) to one process by pid, using
/// the `kill` utility (this crate has no `unsafe` and no libc dependency).
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("timeout")
        .args(["5", "kill", "-s", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// True if `program` is found in `PATH` (or is an existing path).
pub fn have(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// CHAP credentials (a user name and its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chap {
    /// CHAP_N.
    pub user: String,
    /// The shared secret.
    pub secret: String,
}

impl Chap {
    /// Builds credentials from two strings.
    pub fn new(user: impl Into<String>, secret: impl Into<String>) -> Self {
        Chap {
            user: user.into(),
            secret: secret.into(),
        }
    }
}

/// Builder of a libiscsi URL:
/// `iscsi://[user[%secret]@]host:port/iqn/lun[?target_user=..&target_password=..&header_digest=..]`.
///
/// libiscsi 1.19 understands the URL arguments `header_digest`
/// (`none`, `crc32c`, `none-crc32c`, `crc32c-none`), `target_user` and
/// `target_password` (mutual CHAP). It never offers DataDigest=CRC32C.
#[derive(Debug, Clone)]
pub struct IscsiUrl {
    /// Portal host:port.
    pub portal: String,
    /// Target IQN (empty for a discovery URL).
    pub iqn: String,
    /// LUN (ignored when `iqn` is empty).
    pub lun: u32,
    /// Initiator credentials (one-way CHAP).
    pub chap: Option<Chap>,
    /// Credentials the target must prove (mutual CHAP).
    pub mutual: Option<Chap>,
    /// Value of the `header_digest` URL argument.
    pub header_digest: Option<String>,
}

impl IscsiUrl {
    /// A URL for `lun` of `iqn` at `portal` with no authentication.
    pub fn new(portal: impl Into<String>, iqn: impl Into<String>, lun: u32) -> Self {
        IscsiUrl {
            portal: portal.into(),
            iqn: iqn.into(),
            lun,
            chap: None,
            mutual: None,
            header_digest: None,
        }
    }

    /// Adds one-way CHAP credentials.
    pub fn chap(mut self, c: &Chap) -> Self {
        self.chap = Some(c.clone());
        self
    }

    /// Adds mutual CHAP credentials (what the target must answer with).
    pub fn mutual(mut self, c: &Chap) -> Self {
        self.mutual = Some(c.clone());
        self
    }

    /// Sets the `header_digest` URL argument.
    pub fn header_digest(mut self, v: &str) -> Self {
        self.header_digest = Some(v.to_string());
        self
    }
}

impl std::fmt::Display for IscsiUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "iscsi://")?;
        if let Some(c) = &self.chap {
            write!(f, "{}%{}@", c.user, c.secret)?;
        }
        write!(f, "{}", self.portal)?;
        if !self.iqn.is_empty() {
            write!(f, "/{}/{}", self.iqn, self.lun)?;
        }
        let mut args = Vec::new();
        if let Some(m) = &self.mutual {
            args.push(format!("target_user={}", m.user));
            args.push(format!("target_password={}", m.secret));
        }
        if let Some(h) = &self.header_digest {
            args.push(format!("header_digest={h}"));
        }
        if !args.is_empty() {
            write!(f, "?{}", args.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_plain_and_discovery() {
        let u = IscsiUrl::new("127.0.0.1:3260", "iqn.x:d", 1);
        assert_eq!(u.to_string(), "iscsi://127.0.0.1:3260/iqn.x:d/1");
        let d = IscsiUrl::new("127.0.0.1:3260", "", 0);
        assert_eq!(d.to_string(), "iscsi://127.0.0.1:3260");
    }

    #[test]
    fn url_with_chap_mutual_and_digest() {
        let u = IscsiUrl::new("127.0.0.1:1", "iqn.x:d", 0)
            .chap(&Chap::new("u", "s"))
            .mutual(&Chap::new("tu", "ts"))
            .header_digest("crc32c");
        assert_eq!(
            u.to_string(),
            "iscsi://u%s@127.0.0.1:1/iqn.x:d/0?target_user=tu&target_password=ts&header_digest=crc32c"
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\n\nb\nc\nd\n", 2), "c | d");
        assert_eq!(tail("", 2), "(empty)");
    }

    #[test]
    fn run_reports_exit_code_and_timeout() {
        let ok = run(Duration::from_secs(5), "true", &[]).unwrap();
        assert!(ok.success());
        let bad = run(Duration::from_secs(5), "false", &[]).unwrap();
        assert_eq!(bad.code, Some(1));
        assert!(run_ok(Duration::from_secs(5), "false", &[]).is_err());
        let slow = run(Duration::from_secs(1), "sleep", &["30"]).unwrap();
        assert!(slow.timed_out(), "{:?}", slow);
    }
}
