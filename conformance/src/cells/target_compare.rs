//! libiscsi's conformance suite (`iscsi-test-cu -d`) against the project's
//! embedded target (`iscsi_mio::server`, what `iscsi serve` runs) and against
//! tgtd in the same run, pass counts side by side. The cell fails when the
//! embedded target passes fewer tests than tgtd.

use std::net::SocketAddr;
use std::time::Duration;

use iscsi_mio::server::{LunSpec, Server, TargetConfig};

use super::baseline::{parse_cunit_summary, CunitSummary};
use crate::peers::{free_port, Tgtd, TgtdConfig};
use crate::runner::{Cell, CellCtx};
use crate::tools::{run, IscsiUrl};

const OUR_IQN: &str = "iqn.2026-11.rs.iscsi:conformance";

fn suite(
    ctx: &mut CellCtx,
    who: &str,
    family: &str,
    url: &str,
    limit: Duration,
) -> Result<CunitSummary, String> {
    let out = run(limit, "iscsi-test-cu", &["-d", "--test", family, url])?;
    let path = ctx.artifact(&format!("iscsi-test-cu-{who}-{family}.txt"));
    let _ = std::fs::write(&path, format!("{}\n{}", out.stdout, out.stderr));
    if out.timed_out() {
        return Err(format!(
            "iscsi-test-cu against {who} timed out; output in {}",
            path.display()
        ));
    }
    let s = parse_cunit_summary(&out.stdout)
        .ok_or_else(|| format!("no CUnit summary from {who}: {}", out.describe()))?;
    if s.ran == 0 {
        return Err(format!("no test ran against {who}: {}", out.describe()));
    }
    Ok(s)
}

fn compare_cell(family: &'static str, limit: Duration) -> Cell {
    Cell::new(
        "target",
        &format!("iscsi-test-cu-{family}-vs-tgtd"),
        move |ctx| {
            // The embedded target with a 64 MiB RAM LUN, on a free port.
            let port = free_port()?;
            let mut cfg = TargetConfig::new(SocketAddr::from(([127, 0, 0, 1], port)), OUR_IQN);
            cfg.luns.push(LunSpec::Ram(64 << 20));
            cfg.log = false;
            let mut server = Server::bind(cfg).map_err(|e| format!("embedded target: {e}"))?;
            let stop = server.shutdown_handle();
            let thread = std::thread::spawn(move || server.run());
            let ours_url = IscsiUrl::new(format!("127.0.0.1:{port}"), OUR_IQN, 0).to_string();
            let ours = suite(ctx, "ours", family, &ours_url, limit);
            stop.shutdown();
            let _ = thread.join();
            let ours = ours?;

            let t = Tgtd::start(&TgtdConfig::default())?;
            let tgt_url = IscsiUrl::new(t.portal(), t.iqn(), 1).to_string();
            let theirs = suite(ctx, "tgtd", family, &tgt_url, limit)?;
            drop(t);

            let line = format!(
                "iscsi-test-cu {family}: embedded target {}/{} passed, tgtd {}/{} passed",
                ours.passed, ours.ran, theirs.passed, theirs.ran
            );
            println!("{line}");
            ctx.note(line.clone());
            if ours.passed < theirs.passed {
                return Err(format!("{line}: fewer than tgtd"));
            }
            Ok(())
        },
    )
    .with_timeout(2 * limit + Duration::from_secs(60))
}

/// Starts the embedded target on a free port; returns its portal and a
/// stopper that shuts it down and joins its thread.
fn start_embedded() -> Result<(String, impl FnOnce()), String> {
    let port = free_port()?;
    let mut cfg = TargetConfig::new(SocketAddr::from(([127, 0, 0, 1], port)), OUR_IQN);
    cfg.luns.push(LunSpec::Ram(64 << 20));
    cfg.log = false;
    let mut server = Server::bind(cfg).map_err(|e| format!("embedded target: {e}"))?;
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());
    Ok((format!("127.0.0.1:{port}"), move || {
        handle.shutdown();
        let _ = thread.join();
    }))
}

/// libiscsi's tools as clients of the embedded target, traffic checked by
/// tshark.
fn libiscsi_tools_cell() -> Cell {
    Cell::new("target", "libiscsi-tools", |ctx| {
        let (portal, stop) = start_embedded()?;
        let port: u16 = portal
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let url = IscsiUrl::new(portal.clone(), OUR_IQN, 0).to_string();
        let result = ctx.captured(port, || {
            let ls = super::libiscsi_ok("iscsi-ls", &["-s", &format!("iscsi://{portal}")])?;
            super::expect_contains("iscsi-ls", &ls.stdout, OUR_IQN)?;
            let inq = super::libiscsi_ok("iscsi-inq", &[&url])?;
            super::expect_contains("iscsi-inq", &inq.stdout, "DIRECT_ACCESS")?;
            let cap = super::libiscsi_ok("iscsi-readcapacity16", &[&url])?;
            super::expect_contains(
                "iscsi-readcapacity16",
                &cap.stdout,
                "LOGICAL BLOCK LENGTH IN BYTES:512",
            )?;
            Ok(())
        });
        // iscsi-perf outside the capture (it moves hundreds of MB).
        let perf = result.and_then(|_| {
            let out = run(
                Duration::from_secs(30),
                "iscsi-perf",
                &["-t", "3", "-m", "32", "-b", "8", &url],
            )?;
            let text = format!("{}{}", out.stdout, out.stderr);
            super::expect_contains("iscsi-perf", &text, "finished.")?;
            // Progress lines end in '\r'; the last one carries the average.
            let last = text
                .split(['\r', '\n'])
                .rfind(|l| l.contains("iops average"))
                .unwrap_or("")
                .trim()
                .to_string();
            Ok(last)
        });
        stop();
        let perf = perf?;
        ctx.note(format!(
            "iscsi-ls/inq/readcapacity16 clean; iscsi-perf: {}",
            perf.trim()
        ));
        Ok(())
    })
}

/// `iscsi-test-cu --test iSCSI` and `--test SCSI`, ours against tgtd's,
/// and libiscsi's tools against ours.
pub fn cells() -> Vec<Cell> {
    vec![
        libiscsi_tools_cell(),
        compare_cell("iSCSI", Duration::from_secs(300)),
        compare_cell("SCSI", Duration::from_secs(600)),
    ]
}
