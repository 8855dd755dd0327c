//! The `hostile` group's cells under `cargo test`: the same scripted
//! targets and assertions, without the tshark captures (which need root
//! and tshark; `conformance/run --filter hostile` has them).

use conformance::hostile;
use conformance::runner::{run, RunOptions};

#[test]
fn every_hostile_scenario_passes_without_capture() {
    hostile::set_capture(false);
    let cells = hostile::cells();
    assert_eq!(cells.len(), 26, "one cell per scenario");
    let opts = RunOptions {
        filter: None,
        out_dir: std::env::temp_dir().join(format!("hostile-test-{}", std::process::id())),
        verbose: false,
    };
    let results = run(&cells, &opts);
    let _ = std::fs::remove_dir_all(&opts.out_dir);
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.name, r.message))
        .collect();
    assert_eq!(results.len(), 26);
    assert!(failed.is_empty(), "failed cells:\n{}", failed.join("\n"));
}
