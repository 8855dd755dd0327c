mod support;
use iscsi_fuzz::*;
use std::time::Duration;

#[test]
#[ignore]
fn explore() {
    let mut t = support::BrokenTarget::start(0);
    let spec = TargetSpec::new(t.addr.to_string(), support::TARGET_NAME);
    let limits = Limits { answer: Duration::from_millis(500), quiet: Duration::from_millis(5), ..Limits::default() };
    for i in 0..120u64 {
        let seed = rng::Rng::case_seed(1, i);
        let case = generate(seed, PhaseFilter::Ffp);
        let r = run_case(&spec, &case, limits);
        let ms: Vec<String> = case.steps.iter().filter_map(|s| s.mutation().map(|m| format!("{m:?}"))).collect();
        let tmf: Vec<String> = case.steps.iter().filter_map(|s| if let Step::Tmf{function, slot, ..} = s { Some(format!("tmf{function}/{slot:?}")) } else { None }).collect();
        println!("{i} {:?} reached={} run={} {:?} {:?} {:?}", case.phase, r.reached, r.steps_run, r.finding, ms, tmf);
        if matches!(r.finding, Some(Finding { kind: FindingKind::Crash, .. })) {
            println!("{}", serde_json::to_string(&case).unwrap());
            t.stop();
            t = support::BrokenTarget::start(t.addr.port());
        }
    }
}
