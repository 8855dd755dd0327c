//! `iscsi fuzz` against a deliberately broken variant of the embedded
//! target (see `support/`): from a fixed seed, a bounded campaign finds
//! the planted crash (a Data-Out beyond its R2T's range) and the planted
//! hang (ABORT TASK racing a task with an R2T outstanding), each only
//! reachable after a valid login; replay reproduces both and minimize
//! shrinks them to the steps that matter. Against the same target without
//! the planted bugs, the same cases find nothing.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use iscsi_fuzz::campaign::FindingRecord;
use iscsi_fuzz::mutation::Mutation;
use iscsi_fuzz::replay::ReplayFile;
use iscsi_fuzz::{
    minimize, replay, run_campaign, CampaignConfig, FindingKind, Limits, PhaseFilter, Step,
    TargetSpec,
};
use support::{BrokenTarget, TARGET_NAME};

const SEED: u64 = 1;
/// With seed 1 the planted hang is case 11 and the crash case 42.
const CASES: u64 = 60;

fn limits() -> Limits {
    Limits {
        connect: Duration::from_secs(5),
        // A hang is "no answer within this long"; the planted hang never
        // answers, the real target answers in microseconds.
        answer: Duration::from_millis(1500),
        quiet: Duration::from_millis(5),
    }
}

fn config<'a>(
    spec: &TargetSpec,
    restart: Option<iscsi_fuzz::replay::Restart<'a>>,
) -> CampaignConfig<'a> {
    CampaignConfig {
        target: spec.clone(),
        seed: SEED,
        cases: Some(CASES),
        duration: None,
        phases: PhaseFilter::Ffp,
        jobs: 1,
        limits: limits(),
        out: None,
        restart,
        progress: false,
        max_per_signature: 1,
    }
}

fn first(findings: &[FindingRecord], kind: FindingKind) -> ReplayFile {
    findings
        .iter()
        .find(|f| f.kind == kind)
        .and_then(|f| f.replay.clone())
        .unwrap_or_else(|| panic!("no {kind} among {findings:#?}"))
}

#[test]
fn finds_replays_and_minimizes_the_planted_crash_and_hang() {
    let server = Mutex::new(BrokenTarget::start(0));
    let addr = server.lock().unwrap().addr;
    let spec = TargetSpec::new(addr.to_string(), TARGET_NAME);
    let restart = || -> Result<(), String> {
        let mut s = server.lock().unwrap();
        s.stop();
        *s = BrokenTarget::start(addr.port());
        Ok(())
    };
    let summary = run_campaign(&config(&spec, Some(&restart)));
    assert_eq!(summary.cases, CASES, "{}", summary.text());
    assert!(
        summary.classes.get("crash").copied().unwrap_or(0) >= 1,
        "{}",
        summary.text()
    );
    assert!(
        summary.classes.get("hang").copied().unwrap_or(0) >= 1,
        "{}",
        summary.text()
    );
    // The planted bugs fired, and nothing else was reported: no false
    // positives against the real target's behaviour.
    assert!(
        !summary.classes.contains_key("violation"),
        "{}",
        summary.text()
    );

    // Replay files round-trip through JSON on disk, with a pcap.
    let dir = std::env::temp_dir().join(format!("iscsi-fuzz-test-{}", std::process::id()));
    let crash = first(&summary.findings, FindingKind::Crash);
    let hang = first(&summary.findings, FindingKind::Hang);
    let path = crash.save(&dir, "crash", None).unwrap();
    let crash = ReplayFile::load(&path).unwrap();
    assert_eq!(crash.finding.kind, FindingKind::Crash);
    assert!(!crash.sent.is_empty(), "raw bytes recorded");

    for (file, kind) in [(&crash, FindingKind::Crash), (&hang, FindingKind::Hang)] {
        let r = replay(file, &spec, limits(), Some(&restart)).unwrap();
        assert_eq!(
            r.finding.map(|f| f.kind),
            Some(kind),
            "replay reproduces {kind}"
        );
        // ... by firing the planted bug of that kind.
        let fired = server.lock().unwrap().fired.clone();
        let flag = match kind {
            FindingKind::Crash => &fired.crash,
            _ => &fired.hang,
        };
        assert!(
            flag.load(std::sync::atomic::Ordering::SeqCst),
            "{kind} planted bug fired"
        );

        let (small, run, attempts) = minimize(file, &spec, limits(), Some(&restart)).unwrap();
        assert!(run.is_some_and(|r| r.finding.is_some_and(|f| f.kind == kind)));
        assert!(attempts >= 1);
        assert_eq!(small.finding.kind, kind);
        assert!(small.case.steps.len() <= file.case.steps.len());
        // The minimized case still needs the login (the bugs are only
        // reachable after it) and keeps the trigger.
        assert!(matches!(
            small.case.steps.first(),
            Some(Step::LoginSecurity { .. })
        ));
        let again = replay(&small, &spec, limits(), Some(&restart)).unwrap();
        assert_eq!(
            again.finding.map(|f| f.kind),
            Some(kind),
            "minimized reproduces"
        );
        match kind {
            FindingKind::Crash => assert!(
                small.case.steps.iter().any(|s| matches!(
                    s,
                    Step::DataOut {
                        mutation: Some(
                            Mutation::DataOutOffsetBeyond { .. }
                                | Mutation::Word { offset: 40, .. }
                        ),
                        ..
                    }
                )),
                "{:#?}",
                small.case
            ),
            _ => assert!(
                small
                    .case
                    .steps
                    .iter()
                    .any(|s| matches!(s, Step::Tmf { function: 1, .. })),
                "{:#?}",
                small.case
            ),
        }
        // Steps that do not matter are gone: nothing after the trigger.
        assert!(small.case.steps.len() <= 4, "{:#?}", small.case);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_healthy_target_gives_no_findings_on_the_same_cases() {
    let server = BrokenTarget::start_healthy(0);
    let spec = TargetSpec::new(server.addr.to_string(), TARGET_NAME);
    let summary = run_campaign(&config(&spec, None));
    assert_eq!(summary.cases, CASES);
    assert!(summary.findings.is_empty(), "{}", summary.text());
    // The cases reached their phases.
    let reached: u64 = summary.phases.values().map(|p| p.reached).sum();
    assert!(reached * 10 >= CASES * 9, "{}", summary.text());
}
