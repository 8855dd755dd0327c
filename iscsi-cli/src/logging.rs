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
    use std::io;
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

    /// The format: one line per event with level, target, message and
    /// fields, filtered by target prefix. (Callsites private to this test,
    /// so no other test thread races their registration.)
    #[test]
    fn lines_are_filtered_by_target_and_level() {
        let capture = Capture::default();
        let writer = capture.clone();
        let sub = subscriber(filter(1, None).unwrap(), move || writer.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "iscsi::login", tsih = 7, "format-test shown");
            tracing::debug!(target: "iscsi::window", "format-test hidden");
            tracing::info!(target: "other::crate", "format-test other hidden");
            tracing::warn!(target: "other::crate", "format-test other warning");
        });
        let text = capture.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("INFO iscsi::login: format-test shown tsih=7"),
            "{text}"
        );
        assert!(
            lines[1].contains("WARN other::crate: format-test other warning"),
            "{text}"
        );
    }
}
