//! Every input kept under `fuzz/regressions/<target>/` (fuzz findings:
//! crashes and slow units) runs through its fuzz entry point, whose own
//! assertions (no panic, bounded buffers and task counts) must hold. Slow
//! units are kept so their cost can be re-profiled with the fuzz binary
//! (`target/.../initiator_stream -runs=1 FILE` prints the time); this test
//! makes no timing claim.

use iscsi_proto::fuzzing;
use std::path::Path;

fn run_all(target: &str, entry: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let data = std::fs::read(e.path()).unwrap();
        entry(&data);
        n += 1;
    }
    n
}

#[test]
fn fuzz_regression_inputs_hold() {
    let n = run_all("initiator_stream", fuzzing::initiator_stream)
        + run_all("login_initiator", fuzzing::login_initiator)
        + run_all("target_stream", fuzzing::target_stream)
        + run_all("pdu_decode", fuzzing::pdu_decode)
        + run_all("roundtrip", fuzzing::roundtrip)
        + run_all("text_kv", fuzzing::text_kv);
    assert!(n >= 1, "no regression inputs found");
}
