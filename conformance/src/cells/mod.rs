//! The cells of the default run and of the `--baseline` run.
//!
//! The `tgtd` and `istgt` groups use libiscsi's command-line tools as the
//! client; the `initiator-tgtd` and `initiator-istgt` groups drive the
//! project's own initiator (`iscsi-proto` + `iscsi-std`). See
//! [`crate::runner::Cell`] for adding cells.

mod baseline;
mod drivers;
mod idle_keepalive;
mod initiator_common;
mod initiator_istgt;
mod initiator_tgtd;
mod istgt;
mod matrix;
mod mcs;
mod target_compare;
mod tgtd;

pub use baseline::{baseline_cells, parse_cunit_summary, CunitSummary};

use crate::runner::Cell;
use crate::tools::{run, ToolOutput};
use std::time::Duration;

/// Limit for one libiscsi tool invocation.
pub const TOOL_LIMIT: Duration = Duration::from_secs(20);

/// The default run: tgtd cells, istgt cells, then the own initiator's
/// cells against tgtd and istgt.
pub fn default_cells() -> Vec<Cell> {
    let mut v = tgtd::cells();
    v.extend(istgt::cells());
    v.extend(initiator_tgtd::cells());
    v.extend(initiator_istgt::cells());
    v.extend(target_compare::cells());
    v.extend(drivers::cells());
    v.extend(idle_keepalive::cells());
    v.extend(crate::hostile::cells());
    v.extend(crate::hostile::recovery::cells());
    v.extend(matrix::cells());
    v.extend(mcs::cells());
    v
}

/// Every cell, default and baseline (for `--list`).
pub fn all_cells() -> Vec<Cell> {
    let mut v = default_cells();
    v.extend(baseline_cells());
    v
}

/// Runs a libiscsi tool under `timeout` and requires exit 0.
pub fn libiscsi_ok(tool: &str, args: &[&str]) -> Result<ToolOutput, String> {
    let out = run(TOOL_LIMIT, tool, args)?;
    if out.success() {
        Ok(out)
    } else {
        Err(out.describe())
    }
}

/// Runs a libiscsi tool under `timeout` and requires it to fail (exit
/// non-zero but not a timeout) with `needle` somewhere in its output.
pub fn libiscsi_fails(tool: &str, args: &[&str], needle: &str) -> Result<ToolOutput, String> {
    let out = run(TOOL_LIMIT, tool, args)?;
    if out.success() {
        return Err(format!("expected failure, but {} succeeded", out.cmdline));
    }
    if out.timed_out() {
        return Err(format!("expected a clean failure: {}", out.describe()));
    }
    if !out.stderr.contains(needle) && !out.stdout.contains(needle) {
        return Err(format!("failure without {needle:?}: {}", out.describe()));
    }
    Ok(out)
}

/// Fails unless `hay` contains `needle`.
pub fn expect_contains(what: &str, hay: &str, needle: &str) -> Result<(), String> {
    if hay.contains(needle) {
        Ok(())
    } else {
        Err(format!(
            "{what}: output lacks {needle:?}: {}",
            crate::tools::tail(hay, 4)
        ))
    }
}
