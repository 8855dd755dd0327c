//! The `recovery` group's cells (ErrorRecoveryLevel 1 and 2 against
//! scripted targets) under `cargo test`: the same exchanges and
//! assertions, without the tshark captures.

use conformance::hostile;
use conformance::runner::{run, RunOptions};

#[test]
fn every_recovery_scenario_passes_without_capture() {
    hostile::set_capture(false);
    let cells = hostile::recovery::cells();
    assert_eq!(cells.len(), 14, "one cell per scenario");
    let opts = RunOptions {
        filter: None,
        out_dir: std::env::temp_dir().join(format!("recovery-test-{}", std::process::id())),
        verbose: false,
    };
    let results = run(&cells, &opts);
    let _ = std::fs::remove_dir_all(&opts.out_dir);
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.name, r.message))
        .collect();
    assert_eq!(results.len(), 14);
    assert!(failed.is_empty(), "failed cells:\n{}", failed.join("\n"));
}
