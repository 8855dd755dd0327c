//! Campaigns: many cases on `jobs` threads, live progress, findings
//! written as replay files, a summary in JSON and text.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::case::{generate, Phase, PhaseFilter};
use crate::exec::Limits;
use crate::oracle::FindingKind;
use crate::replay::{ReplayFile, Restart};
use crate::rng::Rng;
use crate::{run_case, TargetSpec};

/// What a campaign runs.
pub struct CampaignConfig<'a> {
    /// The target.
    pub target: TargetSpec,
    /// Campaign seed.
    pub seed: u64,
    /// Stop after this many cases (`None`: no limit).
    pub cases: Option<u64>,
    /// Stop after this long (`None`: no limit).
    pub duration: Option<Duration>,
    /// Which phases.
    pub phases: PhaseFilter,
    /// Parallel sessions.
    pub jobs: usize,
    /// Deadlines.
    pub limits: Limits,
    /// Where findings go (replay JSON + pcap); `None` keeps them in memory.
    pub out: Option<PathBuf>,
    /// Restarts the target after a crash; without it a crash ends the
    /// campaign.
    pub restart: Option<Restart<'a>>,
    /// Print a progress line every second to stderr.
    pub progress: bool,
    /// Findings of one kind, phase and mutation written at most this many
    /// times (the rest are counted).
    pub max_per_signature: u32,
}

/// Counts of one phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCount {
    /// Cases that aimed at it.
    pub cases: u64,
    /// Cases that got there.
    pub reached: u64,
    /// Findings.
    pub findings: u64,
}

/// One written finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Case number.
    pub case: u64,
    /// Case seed.
    pub seed: u64,
    /// Phase.
    pub phase: Phase,
    /// Kind.
    pub kind: FindingKind,
    /// Detail.
    pub detail: String,
    /// The mutations of the case.
    pub mutations: Vec<String>,
    /// The replay file, if written.
    pub file: Option<String>,
    /// The full replay (kept in memory for the library's callers).
    #[serde(skip)]
    pub replay: Option<ReplayFile>,
}

/// The campaign's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Target address.
    pub target: String,
    /// Seed.
    pub seed: u64,
    /// Jobs.
    pub jobs: usize,
    /// Cases run.
    pub cases: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Cases per second.
    pub cases_per_second: f64,
    /// Per phase.
    pub phases: BTreeMap<String, PhaseCount>,
    /// Cases per mutation kind.
    pub mutations: BTreeMap<String, u64>,
    /// Findings per class ("crash", "hang", "violation").
    pub classes: BTreeMap<String, u64>,
    /// Findings by signature (kind/phase/mutations) with counts.
    pub signatures: BTreeMap<String, u64>,
    /// The findings written.
    pub findings: Vec<FindingRecord>,
    /// Why the campaign stopped early, if it did.
    pub stopped: Option<String>,
}

impl Summary {
    /// Crashes + hangs.
    pub fn crashes_and_hangs(&self) -> u64 {
        self.classes.get("crash").copied().unwrap_or(0)
            + self.classes.get("hang").copied().unwrap_or(0)
    }

    /// The summary as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The summary as text.
    pub fn text(&self) -> String {
        let mut s = format!(
            "iscsi fuzz {}: {} cases in {:.1} s ({:.1} cases/s, seed {}, {} jobs)\n",
            self.target, self.cases, self.seconds, self.cases_per_second, self.seed, self.jobs
        );
        s += "phase                cases  reached  findings\n";
        for (p, c) in &self.phases {
            s += &format!(
                "{p:<20} {:>5}  {:>7}  {:>8}\n",
                c.cases, c.reached, c.findings
            );
        }
        s += "mutations: ";
        s += &self
            .mutations
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        s += "\nfindings: ";
        s += &if self.classes.is_empty() {
            "none".to_string()
        } else {
            self.classes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        s += "\n";
        for (sig, n) in &self.signatures {
            s += &format!("  {n:>5} x {sig}\n");
        }
        for f in &self.findings {
            s += &format!(
                "  case {} ({:?}, seed {:#x}): {}: {}{}\n",
                f.case,
                f.phase,
                f.seed,
                f.kind,
                f.detail,
                f.file
                    .as_ref()
                    .map(|p| format!(" -> {p}"))
                    .unwrap_or_default()
            );
        }
        if let Some(w) = &self.stopped {
            s += &format!("stopped: {w}\n");
        }
        s
    }
}

/// Runs a campaign.
pub fn run_campaign(cfg: &CampaignConfig) -> Summary {
    let start = Instant::now();
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let summary = Mutex::new(Summary {
        target: cfg.target.addr.clone(),
        seed: cfg.seed,
        jobs: cfg.jobs.max(1),
        ..Summary::default()
    });
    let restart_lock = Mutex::new(());
    let deadline = cfg.duration.map(|d| start + d);
    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if cfg.progress {
            scope.spawn(|| {
                let mut last = Instant::now();
                while !finished.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if last.elapsed() < Duration::from_secs(1) {
                        continue;
                    }
                    last = Instant::now();
                    if let Ok(s) = summary.lock() {
                        let n = done.load(Ordering::Relaxed);
                        let secs = start.elapsed().as_secs_f64().max(1e-3);
                        let reached: Vec<String> = s
                            .phases
                            .iter()
                            .map(|(p, c)| format!("{p} {}/{}", c.reached, c.cases))
                            .collect();
                        let _ = writeln!(
                            std::io::stderr(),
                            "[{:>6.0}s] {n} cases ({:.1}/s), findings {}, reached: {}",
                            secs,
                            n as f64 / secs,
                            s.classes.values().sum::<u64>(),
                            reached.join(", ")
                        );
                    }
                }
            });
        }
        let workers: Vec<_> = (0..cfg.jobs.max(1))
            .map(|_| {
                scope.spawn(|| loop {
                    if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        break;
                    }
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if cfg.cases.is_some_and(|c| index >= c) {
                        break;
                    }
                    let seed = Rng::case_seed(cfg.seed, index);
                    let case = generate(seed, cfg.phases);
                    let result = run_case(&cfg.target, &case, cfg.limits);
                    done.fetch_add(1, Ordering::Relaxed);
                    let mutations: Vec<String> = case
                        .steps
                        .iter()
                        .filter_map(|s| s.mutation().map(|m| m.name().to_string()))
                        .collect();
                    let crashed = result
                        .finding
                        .as_ref()
                        .is_some_and(|f| f.kind == FindingKind::Crash);
                    let Ok(mut s) = summary.lock() else { break };
                    s.cases += 1;
                    let pc = s.phases.entry(format!("{:?}", case.phase)).or_default();
                    pc.cases += 1;
                    pc.reached += u64::from(result.reached);
                    for m in &mutations {
                        *s.mutations.entry(m.clone()).or_default() += 1;
                    }
                    if let Some(f) = &result.finding {
                        if let Some(pc) = s.phases.get_mut(&format!("{:?}", case.phase)) {
                            pc.findings += 1;
                        }
                        *s.classes.entry(f.kind.class().to_string()).or_default() += 1;
                        let sig = format!("{} {:?} [{}]", f.kind, case.phase, mutations.join(","));
                        let n = s.signatures.entry(sig.clone()).or_default();
                        *n += 1;
                        if *n <= u64::from(cfg.max_per_signature.max(1)) {
                            let replay = ReplayFile::new(&cfg.target, &case, &result);
                            let name = format!("{}-{index:06}-{:?}", f.kind.class(), case.phase);
                            let file = match (&cfg.out, &replay) {
                                (Some(dir), Some(r)) => r
                                    .save(dir, &name, Some(&result))
                                    .ok()
                                    .map(|p| p.display().to_string()),
                                _ => None,
                            };
                            s.findings.push(FindingRecord {
                                case: index,
                                seed,
                                phase: case.phase,
                                kind: f.kind,
                                detail: f.detail.clone(),
                                mutations: mutations.clone(),
                                file,
                                replay,
                            });
                        }
                    }
                    drop(s);
                    if crashed {
                        let Ok(_g) = restart_lock.lock() else { break };
                        match cfg.restart {
                            Some(r) => {
                                if crate::oracle::alive(&cfg.target, cfg.limits).is_some() {
                                    if let Err(e) = r() {
                                        if let Ok(mut s) = summary.lock() {
                                            s.stopped = Some(format!("restart failed: {e}"));
                                        }
                                        stop.store(true, Ordering::Relaxed);
                                    }
                                }
                            }
                            None => {
                                if let Ok(mut s) = summary.lock() {
                                    s.stopped = Some(format!(
                                        "the target crashed in case {index} (no restart command)"
                                    ));
                                }
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        finished.store(true, Ordering::Relaxed);
    });
    let mut s = summary.into_inner().unwrap_or_default();
    s.seconds = start.elapsed().as_secs_f64();
    s.cases_per_second = s.cases as f64 / s.seconds.max(1e-3);
    s
}
