//! `-v`, `-vv`, `-vvv`: the `tracing` events of the core and the drivers,
//! one line each on stderr.
//!
//! | flag | level | what shows |
//! |---|---|---|
//! | (none) | warn | Rejects from the target, driver warnings |
//! | `-v` | info | logins with every negotiated key, logouts, redirects, async messages, recovery (connection lost, reinstatement, tasks reissued), session closed |
//! | `-vv` | debug | plus command-window changes (closed, reopened, resized, full), login rounds, NOP-In pings answered, connections opened and closed |
//! | `-vvv` | trace | plus every received PDU header and the login text keys (CHAP_C and CHAP_R values redacted) |
//!
//! `ISCSI_LOG` overrides the flags with a target list in the
//! `tracing_subscriber::filter::Targets` syntax, e.g.
//! `ISCSI_LOG=iscsi::window=trace,iscsi=info`. Events of other crates
//! show at warn and above. Secrets never reach a log: the core does not
//! log the configured secrets, and CHAP_C/CHAP_R values are redacted at
//! every level (RFC 7143 section 12.1.3).

use std::str::FromStr;

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// The environment variable that overrides `-v`.
pub const ENV: &str = "ISCSI_LOG";

/// The level of the `iscsi` targets for a count of `-v` flags.
pub fn level(verbose: u8) -> LevelFilter {
    match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The filter for `verbose` (`-v` count) or, when given, an `ISCSI_LOG`
/// value.
pub fn filter(verbose: u8, env: Option<&str>) -> Result<Targets, String> {
    if let Some(spec) = env.filter(|s| !s.trim().is_empty()) {
        return Targets::from_str(spec).map_err(|e| format!("invalid {ENV}={spec:?}: {e}"));
    }
    // Every event of this project uses an `iscsi::...` target, or a module
    // path starting with `iscsi` (the drivers, this tool); `Targets`
    // matches by prefix.
    Ok(Targets::new()
        .with_target("iscsi", level(verbose))
        .with_default(LevelFilter::WARN))
}

/// A subscriber writing one line per event to `writer`, with the time
/// since start (the subscriber's clock, not the core's: the core reads
/// none).
pub fn subscriber<W>(filter: Targets, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_timer(tracing_subscriber::fmt::time::Uptime::default())
        .with_target(true);
    tracing_subscriber::registry().with(fmt).with(filter)
}

/// Installs the process-wide subscriber: stderr, filtered by `-v` or
/// `ISCSI_LOG`.
pub fn init(verbose: u8) -> Result<(), String> {
    let env = std::env::var(ENV).ok();
    let filter = filter(verbose, env.as_deref())?;
    tracing::subscriber::set_global_default(subscriber(filter, std::io::stderr))
        .map_err(|e| format!("logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{DriverKind, Session};
    use iscsi_mio::server::{LunSpec, Server, ServerConfig};
    use iscsi_proto::initiator::{Auth, ScsiCommand, SessionConfig};
    use iscsi_proto::scsi::cdb;
    use std::io;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    /// A `MakeWriter` that appends to a shared buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[test]
    fn verbosity_levels() {
        assert_eq!(level(0), LevelFilter::WARN);
        assert_eq!(level(1), LevelFilter::INFO);
        assert_eq!(level(2), LevelFilter::DEBUG);
        assert_eq!(level(3), LevelFilter::TRACE);
        assert_eq!(level(9), LevelFilter::TRACE);
        let f = filter(1, None).unwrap();
        assert!(f.would_enable("iscsi::login", &tracing::Level::INFO));
        assert!(!f.would_enable("iscsi::window", &tracing::Level::DEBUG));
        assert!(!f.would_enable("mio::poll", &tracing::Level::INFO));
        assert!(f.would_enable("mio::poll", &tracing::Level::WARN));
        let f = filter(0, Some("iscsi::window=trace")).unwrap();
        assert!(f.would_enable("iscsi::window", &tracing::Level::TRACE));
        assert!(!f.would_enable("iscsi::login", &tracing::Level::ERROR));
        assert!(filter(0, Some("iscsi=loud")).is_err());
        // An empty variable is as if unset.
        assert!(filter(1, Some(" ")).is_ok());
    }

    /// Values of `key=` in the raw login traffic (e.g. every CHAP_R sent).
    fn values_of(wire: &[u8], key: &str) -> Vec<String> {
        let pat = format!("{key}=");
        let pat = pat.as_bytes();
        let mut out = Vec::new();
        for i in 0..wire.len() {
            if wire[i..].starts_with(pat) && (i == 0 || !wire[i - 1].is_ascii_alphanumeric()) {
                let v = &wire[i + pat.len()..];
                let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
                out.push(String::from_utf8_lossy(&v[..end]).into_owned());
            }
        }
        out
    }

    /// A mutual-CHAP login at trace level on every target, with the
    /// output captured: the secrets, and the CHAP_C/CHAP_R values seen on
    /// the wire, never appear; the negotiated keys and the redacted CHAP
    /// keys do (so the capture really saw the login).
    fn chap_login_logs_no_secret(kind: DriverKind) {
        const SECRET: &str = "initiator-SECRET-0123";
        const TARGET_SECRET: &str = "target-SECRET-4567";
        let target = "iqn.2026-11.rs.iscsi:log-test";
        let mut cfg = ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), target);
        cfg.luns.push(LunSpec::Ram(1 << 20));
        cfg.log = false;
        cfg.chap = Some(("alice".into(), SECRET.into()));
        cfg.mutual_chap = Some(("tgt".into(), TARGET_SECRET.into()));
        let server = Server::bind(cfg).unwrap();
        let portal = server.local_addr().to_string();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || {
            let mut server = server;
            server.run()
        });

        let capture = Capture::default();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let mut opts = iscsi_std::Options::default();
        if kind == DriverKind::Std {
            let w = wire.clone();
            opts.tap = Some(Box::new(move |_, _, _, bytes: &[u8]| {
                w.lock().unwrap().extend_from_slice(bytes)
            }));
        }
        let all = Targets::new().with_default(LevelFilter::TRACE);
        let writer = capture.clone();
        let sub = subscriber(all, move || writer.clone());
        tracing::subscriber::with_default(sub, || {
            let auth = Auth::mutual_chap("alice", SECRET, "tgt", TARGET_SECRET);
            let config = SessionConfig::new("iqn.2026-11.rs.iscsi:log-test-initiator")
                .with_target(target)
                .with_auth(auth, vec![0x5a; 16]);
            let mut s = Session::connect(kind, &portal, config, opts).unwrap();
            let lun = iscsi_proto::scsi::lun::Lun::from_number(0).to_u64();
            s.execute(ScsiCommand::read(lun, cdb::read_capacity10().to_vec(), 8))
                .unwrap();
            s.logout().unwrap();
        });
        stop.shutdown();
        thread.join().unwrap().unwrap();

        let log = capture.text();
        assert!(log.contains("logged in"), "{log}");
        assert!(log.contains("HeaderDigest"), "{log}");
        assert!(log.contains("CHAP_N=alice"), "{log}");
        assert!(log.contains("CHAP_R=<redacted>"), "{log}");
        assert!(log.contains("CHAP_C=<redacted>"), "{log}");
        assert!(log.contains("logged out"), "{log}");
        for secret in [SECRET, TARGET_SECRET] {
            assert!(!log.contains(secret), "secret in the log:\n{log}");
        }
        let wire = wire.lock().unwrap();
        if kind == DriverKind::Std {
            let seen: Vec<String> = ["CHAP_C", "CHAP_R"]
                .iter()
                .flat_map(|k| values_of(&wire, k))
                .collect();
            // The target's challenge and response, and ours.
            assert_eq!(seen.len(), 4, "{seen:?}");
            let lower = log.to_ascii_lowercase();
            for v in seen {
                let hex = v.trim_start_matches("0x").to_ascii_lowercase();
                assert!(hex.len() >= 16, "{v}");
                assert!(!lower.contains(&hex), "{v} in the log:\n{log}");
            }
        }
    }

    #[test]
    fn chap_login_at_trace_level_logs_no_secret_std() {
        chap_login_logs_no_secret(DriverKind::Std);
    }

    #[test]
    fn chap_login_at_trace_level_logs_no_secret_mio() {
        chap_login_logs_no_secret(DriverKind::Mio);
    }
}
