//! `iscsi fuzz`: a campaign of the stateful, structure-aware fuzzer
//! (`iscsi-fuzz`) against a live target, or the replay / minimization of
//! one finding.

use std::path::PathBuf;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use iscsi_fuzz::replay::ReplayFile;
use iscsi_fuzz::{
    minimize, oracle, replay, run_campaign, CampaignConfig, Limits, PhaseFilter, TargetSpec,
};

use crate::url::IscsiUrl;

/// Phases a campaign draws from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    /// Mid-login (security and operational stages).
    Login,
    /// Discovery, full feature phase, logout.
    Ffp,
    /// Both.
    All,
}

/// `iscsi fuzz` arguments.
#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// iscsi://[user[%secret]@]host[:port]/target-iqn/lun
    url: String,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
    /// Stop after this many cases.
    #[arg(long)]
    cases: Option<u64>,
    /// Campaign seed (cases are a function of it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Which phases to fuzz.
    #[arg(long, value_enum, default_value_t = PhaseArg::All)]
    phase: PhaseArg,
    /// Directory for findings (replay JSON + pcap) and summary.json.
    #[arg(long, value_name = "DIR", default_value = "fuzz-out")]
    out: PathBuf,
    /// Parallel sessions.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Replay this finding instead of running a campaign.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// With --replay: shrink the finding to the fewest steps that still
    /// reproduce it (written next to it as NAME.min.json).
    #[arg(long, requires = "replay")]
    minimize: bool,
    /// Shell command that restarts the target after a crash (otherwise a
    /// crash ends the campaign).
    #[arg(long, value_name = "CMD")]
    restart: Option<String>,
    /// Milliseconds an owed answer may take before it is a hang.
    #[arg(long, default_value_t = 5000)]
    answer_ms: u64,
    /// Milliseconds of silence that end the reading after a step.
    #[arg(long, default_value_t = 20)]
    quiet_ms: u64,
    /// Writes of one finding signature kept (others are counted).
    #[arg(long, default_value_t = 3)]
    max_per_signature: u32,
    /// Exit non-zero on RFC violations too (not only crashes and hangs).
    #[arg(long)]
    strict: bool,
}

fn restart_fn(
    cmd: Option<String>,
    spec: TargetSpec,
    limits: Limits,
) -> Option<impl Fn() -> Result<(), String> + Sync> {
    cmd.map(move |c| {
        move || {
            let status = Process::new("sh")
                .arg("-c")
                .arg(&c)
                .status()
                .map_err(|e| format!("restart: {e}"))?;
            if !status.success() {
                return Err(format!("restart command failed: {status}"));
            }
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                if oracle::alive(&spec, limits).is_none() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err("the target did not come back within 30 s of the restart".into())
        }
    })
}

/// Runs `iscsi fuzz`.
pub fn run(initiator_name: &str, a: &FuzzArgs) -> Result<(), String> {
    let u = IscsiUrl::parse(&a.url)?;
    let mut spec = TargetSpec::new(u.portal(), u.target.clone());
    spec.initiator_name = initiator_name.to_string();
    spec.lun = u.lun;
    spec.chap = match (u.user, u.secret) {
        (Some(user), Some(secret)) => Some((user, secret)),
        (Some(_), None) => return Err("the URL names a CHAP user but no secret".into()),
        _ => None,
    };
    let limits = Limits {
        answer: Duration::from_millis(a.answer_ms.max(1)),
        quiet: Duration::from_millis(a.quiet_ms),
        ..Limits::default()
    };
    let restart = restart_fn(a.restart.clone(), spec.clone(), limits);
    let restart_ref = restart
        .as_ref()
        .map(|f| f as &(dyn Fn() -> Result<(), String> + Sync));
    if let Some(path) = &a.replay {
        let file = ReplayFile::load(path)?;
        eprintln!(
            "replaying {} ({}: {}), {} steps",
            path.display(),
            file.finding.kind,
            file.finding.detail,
            file.case.steps.len()
        );
        if a.minimize {
            let (small, run, attempts) = minimize(&file, &spec, limits, restart_ref)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "finding".into());
            let dir = path.parent().map(PathBuf::from).unwrap_or_default();
            let out = small
                .save(&dir, &format!("{stem}.min"), run.as_ref())
                .map_err(|e| format!("cannot write the minimized finding: {e}"))?;
            println!(
                "minimized {} -> {} steps in {attempts} attempts: {}",
                file.case.steps.len(),
                small.case.steps.len(),
                out.display()
            );
            return Ok(());
        }
        let r = replay(&file, &spec, limits, restart_ref)?;
        return match r.finding {
            Some(f) if f.kind == file.finding.kind => {
                println!("reproduced: {}: {}", f.kind, f.detail);
                Ok(())
            }
            Some(f) => Err(format!(
                "not reproduced; found instead {}: {}",
                f.kind, f.detail
            )),
            None => Err("not reproduced: the target passed the case".into()),
        };
    }
    if a.seconds.is_none() && a.cases.is_none() {
        return Err("give --seconds N or --cases N".into());
    }
    oracle::check_login(&spec, limits)?;
    let cfg = CampaignConfig {
        target: spec,
        seed: a.seed,
        cases: a.cases,
        duration: a.seconds.map(Duration::from_secs),
        phases: match a.phase {
            PhaseArg::Login => PhaseFilter::Login,
            PhaseArg::Ffp => PhaseFilter::Ffp,
            PhaseArg::All => PhaseFilter::All,
        },
        jobs: a.jobs.max(1),
        limits,
        out: Some(a.out.clone()),
        restart: restart_ref,
        progress: true,
        max_per_signature: a.max_per_signature,
    };
    let summary = run_campaign(&cfg);
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let _ = std::fs::write(a.out.join("summary.json"), summary.json() + "\n");
    let _ = std::fs::write(a.out.join("summary.txt"), summary.text());
    print!("{}", summary.text());
    let violations = summary.classes.get("violation").copied().unwrap_or(0);
    if summary.crashes_and_hangs() > 0 {
        Err(format!(
            "{} crash(es) or hang(s) found (replay files in {})",
            summary.crashes_and_hangs(),
            a.out.display()
        ))
    } else if a.strict && violations > 0 {
        Err(format!("{violations} RFC violation(s) found"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Cli, Command};
    use clap::Parser;

    #[test]
    fn fuzz_flags_parse() {
        let cli = Cli::try_parse_from([
            "iscsi",
            "fuzz",
            "iscsi://127.0.0.1:3260/iqn.x:t/0",
            "--seconds",
            "60",
            "--seed",
            "7",
            "--jobs",
            "2",
            "--phase",
            "ffp",
        ])
        .unwrap();
        let Command::Fuzz(a) = cli.command else {
            panic!("not fuzz")
        };
        assert_eq!((a.seconds, a.seed, a.jobs), (Some(60), 7, 2));
        assert_eq!(a.phase, super::PhaseArg::Ffp);
        // --minimize only makes sense on a replay file.
        assert!(Cli::try_parse_from(["iscsi", "fuzz", "iscsi://h/t/0", "--minimize"]).is_err());
        assert!(Cli::try_parse_from([
            "iscsi",
            "fuzz",
            "iscsi://h/t/0",
            "--replay",
            "f.json",
            "--minimize"
        ])
        .is_ok());
    }

    #[test]
    fn a_campaign_needs_a_bound() {
        let cli = Cli::try_parse_from(["iscsi", "fuzz", "iscsi://127.0.0.1:1/t/0"]).unwrap();
        let Command::Fuzz(a) = cli.command else {
            panic!("not fuzz")
        };
        assert!(super::run("iqn.x", &a).unwrap_err().contains("--seconds"));
    }
}
