//! `conformance`: runs the conformance cells against real peers on loopback
//! and prints a summary table. Usually started through `conformance/run`.
//!
//! ```text
//! conformance [--filter SUBSTR] [--list] [--baseline] [--out DIR] [--verbose]
//! ```
#![forbid(unsafe_code)]

use conformance::cells;
use conformance::runner::{self, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: conformance [--filter SUBSTR] [--list] [--baseline] [--out DIR] [--verbose]
  --filter SUBSTR  run only cells whose group/name contains SUBSTR
  --list           list the selected cells and exit
  --baseline       run the baseline cells (iscsi-test-cu against tgtd) instead of the default ones
  --out DIR        where pcaps and tool outputs go (default target/conformance)
  --verbose        print cell notes as they happen";

fn main() -> ExitCode {
    let mut filter = None;
    let mut list = false;
    let mut baseline = false;
    let mut verbose = false;
    let mut out_dir = PathBuf::from("target/conformance");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--filter" => match args.next() {
                Some(f) => filter = Some(f),
                None => return usage_error("--filter needs a value"),
            },
            "--out" => match args.next() {
                Some(d) => out_dir = PathBuf::from(d),
                None => return usage_error("--out needs a value"),
            },
            "--list" => list = true,
            "--baseline" => baseline = true,
            "--verbose" | "-v" => verbose = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    let all = if baseline {
        cells::baseline_cells()
    } else {
        cells::default_cells()
    };
    let selected = runner::select(all, filter.as_deref());
    if list {
        for c in &selected {
            println!("{}  (timeout {}s)", c.full_name(), c.timeout.as_secs());
        }
        return ExitCode::SUCCESS;
    }
    if selected.is_empty() {
        eprintln!("no cell matches the filter");
        return ExitCode::from(2);
    }
    eprintln!(
        "running {} cell(s); artifacts in {}",
        selected.len(),
        out_dir.display()
    );
    let opts = RunOptions {
        filter,
        out_dir,
        verbose,
    };
    let results = runner::run(&selected, &opts);
    println!();
    print!("{}", runner::summary_table(&results));
    println!("{}", runner::counts_line(&results));
    if results.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("{msg}\n{USAGE}");
    ExitCode::from(2)
}
