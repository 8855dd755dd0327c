//! Replay files: a finding as JSON (the typed steps, the bytes each step
//! sent in the original run, the oracle's verdict) plus a pcap beside it;
//! replaying and minimizing them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::exec::Limits;
use crate::oracle::{self, Finding};
use crate::{pcap, run_case, CaseResult, TargetSpec};

/// Format version of replay files.
pub const REPLAY_VERSION: u32 = 1;

/// The bytes one step sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentBytes {
    /// Step index.
    pub step: usize,
    /// The bytes, hex (up to 64 KiB per step).
    pub hex: String,
}

/// A finding, reproducible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayFile {
    /// [`REPLAY_VERSION`].
    pub version: u32,
    /// The target it was found on (no CHAP secret).
    pub target: TargetSpec,
    /// What the oracle said.
    pub finding: Finding,
    /// The case: seed, phase, typed steps.
    pub case: Case,
    /// The raw bytes of the original run, step by step (informative:
    /// replay re-runs the typed steps, whose tags and sequence numbers
    /// come from the new session).
    pub sent: Vec<SentBytes>,
}

impl ReplayFile {
    /// A replay file from a case and its result (`None` without finding).
    pub fn new(target: &TargetSpec, case: &Case, result: &CaseResult) -> Option<ReplayFile> {
        let finding = result.finding.clone()?;
        Some(ReplayFile {
            version: REPLAY_VERSION,
            target: target.clone(),
            finding,
            case: case.clone(),
            sent: result
                .sent
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.is_empty())
                .map(|(step, b)| SentBytes {
                    step,
                    hex: b.iter().map(|x| format!("{x:02x}")).collect(),
                })
                .collect(),
        })
    }

    /// Reads a replay file.
    pub fn load(path: &Path) -> Result<ReplayFile, String> {
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let f: ReplayFile = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a replay file: {e}", path.display()))?;
        if f.version != REPLAY_VERSION {
            return Err(format!(
                "{}: replay format {} (this tool reads {REPLAY_VERSION})",
                path.display(),
                f.version
            ));
        }
        Ok(f)
    }

    /// Writes `DIR/NAME.json` and, from `result`'s traffic, `DIR/NAME.pcap`;
    /// the JSON path.
    pub fn save(&self, dir: &Path, name: &str, result: Option<&CaseResult>) -> io::Result<PathBuf> {
        fs::create_dir_all(dir)?;
        let json = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        fs::write(&json, text + "\n")?;
        if let Some(r) = result {
            let mut f = io::BufWriter::new(fs::File::create(dir.join(format!("{name}.pcap")))?);
            pcap::write_pcap(&mut f, &r.transcript)?;
            io::Write::flush(&mut f)?;
        }
        Ok(json)
    }
}

/// Restarts the target after a crash (tests pass a closure; the tool a
/// shell command).
pub type Restart<'a> = &'a (dyn Fn() -> Result<(), String> + Sync);

/// Makes sure the target is alive before an attempt, restarting it if
/// needed.
fn ensure_alive(spec: &TargetSpec, limits: Limits, restart: Option<Restart>) -> Result<(), String> {
    if oracle::alive(spec, limits).is_none() {
        return Ok(());
    }
    let r = restart.ok_or("the target is not alive and there is no restart command")?;
    r()?;
    match oracle::alive(spec, limits) {
        None => Ok(()),
        Some(f) => Err(format!(
            "the target is still not alive after a restart: {}",
            f.detail
        )),
    }
}

/// Runs a replay file's case against `spec`; the result (its finding is
/// the reproduction if it has the same kind).
pub fn replay(
    file: &ReplayFile,
    spec: &TargetSpec,
    limits: Limits,
    restart: Option<Restart>,
) -> Result<CaseResult, String> {
    ensure_alive(spec, limits, restart)?;
    Ok(run_case(spec, &file.case, limits))
}

/// Shrinks a finding to the fewest steps and mutations that still give a
/// finding of the same kind: drops steps one at a time (last first), then
/// mutations. Returns the smaller replay file, the run that last
/// reproduced it (for its pcap; `None` if no smaller case reproduced) and
/// how many attempts it took.
pub fn minimize(
    file: &ReplayFile,
    spec: &TargetSpec,
    limits: Limits,
    restart: Option<Restart>,
) -> Result<(ReplayFile, Option<CaseResult>, usize), String> {
    let want = file.finding.kind;
    let mut best = file.clone();
    let mut best_run = None;
    let mut attempts = 0usize;
    let mut attempt = |case: &Case| -> Result<Option<CaseResult>, String> {
        attempts += 1;
        ensure_alive(spec, limits, restart)?;
        let r = run_case(spec, case, limits);
        Ok(match &r.finding {
            Some(f) if f.kind == want => Some(r),
            _ => None,
        })
    };
    let mut i = best.case.steps.len();
    while i > 0 {
        i -= 1;
        if best.case.steps.len() <= 1 {
            break;
        }
        let mut c = best.case.clone();
        c.steps.remove(i);
        if let Some(r) = attempt(&c)? {
            if let Some(f) = ReplayFile::new(spec, &c, &r) {
                best = f;
                best_run = Some(r);
            }
        }
    }
    for i in 0..best.case.steps.len() {
        let Some(step) = best.case.steps.get(i) else {
            break;
        };
        if step.mutation().is_none() {
            continue;
        }
        let mut c = best.case.clone();
        if let Some(s) = c.steps.get_mut(i) {
            *s = s.without_mutation();
        }
        if let Some(r) = attempt(&c)? {
            if let Some(f) = ReplayFile::new(spec, &c, &r) {
                best = f;
                best_run = Some(r);
            }
        }
    }
    Ok((best, best_run, attempts))
}
