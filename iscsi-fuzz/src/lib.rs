//! `iscsi fuzz`: a stateful, structure-aware fuzzer of live iSCSI targets.
//!
//! Each case opens a session, drives it with the core's wire `Repr`s and
//! CHAP code to a phase drawn from the case's seed (mid-login at either
//! stage, discovery, full feature phase idle, with commands in flight,
//! with an R2T outstanding, with the command window closed, after a
//! Logout Request) and then sends PDUs carrying typed mutations
//! ([`mutation::Mutation`]): text keys, BHS fields, sequence numbers,
//! AHS, digests, Data-Out bursts, TMFs racing their task, PDUs of the
//! wrong phase, truncations and splits. The oracle ([`oracle`]) then asks
//! whether the target hung the connection, broke an RFC 7143 rule, or
//! died (a fresh login and TEST UNIT READY). Findings are written as
//! replay files ([`mod@replay`]: the typed steps plus the raw bytes) with a
//! pcap, can be replayed and minimized; [`campaign`] runs many cases on
//! several threads and summarises them.
//!
//! This is a driver-level tool, not the sans-IO core: it uses blocking
//! std sockets with deadlines, reads the clock and draws seeded
//! pseudo-random numbers ([`rng`]).
//!
//! # Example
//!
//! Cases are a pure function of their seed ([`generate`]), so a finding
//! replays from its seed alone:
//!
//! ```
//! use iscsi_fuzz::{generate, Phase, PhaseFilter};
//!
//! let case = generate(7, PhaseFilter::Login);
//! assert!(case.phase.is_login());
//! assert_eq!(case, generate(7, PhaseFilter::Login));
//! let mutated = case.steps.iter().filter(|s| s.mutation().is_some()).count();
//! println!("seed 7 aims at {:?} with {} steps, {mutated} mutated", case.phase, case.steps.len());
//! # let _ = Phase::ALL;
//! ```
//!
//! Against a live target (here one on 127.0.0.1:3260): one case and its
//! oracle, then a short campaign on two threads:
//!
//! ```no_run
//! use iscsi_fuzz::{generate, run_case, run_campaign, CampaignConfig, Limits, PhaseFilter, TargetSpec};
//!
//! let spec = TargetSpec::new("127.0.0.1:3260", "iqn.2026-01.example:disk");
//! let result = run_case(&spec, &generate(1, PhaseFilter::Ffp), Limits::default());
//! if let Some(f) = &result.finding {
//!     println!("finding: {f:?}");
//! }
//! let summary = run_campaign(&CampaignConfig {
//!     target: spec,
//!     seed: 1,
//!     cases: Some(100),
//!     duration: None,
//!     phases: PhaseFilter::All,
//!     jobs: 2,
//!     limits: Limits::default(),
//!     out: None,
//!     restart: None,
//!     progress: false,
//!     max_per_signature: 3,
//! });
//! println!("{}", summary.text());
//! assert_eq!(summary.crashes_and_hangs(), 0);
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

pub mod campaign;
pub mod case;
pub mod conn;
pub mod exec;
pub mod mutation;
pub mod oracle;
pub mod pcap;
pub mod replay;
pub mod rng;
mod steps;

use serde::{Deserialize, Serialize};

pub use campaign::{run_campaign, CampaignConfig, Summary};
pub use case::{generate, Case, Phase, PhaseFilter, Step};
pub use exec::Limits;
pub use oracle::{Finding, FindingKind, Rule};
pub use replay::{minimize, replay, ReplayFile};

/// The target under test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    /// `host:port`.
    pub addr: String,
    /// The target's iSCSI name.
    pub target_name: String,
    /// Our iSCSI name.
    pub initiator_name: String,
    /// LUN of the commands.
    pub lun: u16,
    /// CHAP user and secret, when the target wants CHAP (never written to
    /// replay files).
    #[serde(skip)]
    pub chap: Option<(String, String)>,
}

impl TargetSpec {
    /// A target without CHAP, LUN 0, our default initiator name.
    pub fn new(addr: impl Into<String>, target_name: impl Into<String>) -> TargetSpec {
        TargetSpec {
            addr: addr.into(),
            target_name: target_name.into(),
            initiator_name: "iqn.2026-11.rs.iscsi:fuzz".into(),
            lun: 0,
            chap: None,
        }
    }

    /// The 8-byte LUN field (RFC 7143 section 11.3.4 / SAM: flat or
    /// peripheral addressing for LUNs below 256).
    pub(crate) fn lun_field(&self) -> u64 {
        if self.lun < 256 {
            u64::from(self.lun) << 48
        } else {
            (0x4000 | u64::from(self.lun & 0x3fff)) << 48
        }
    }
}

/// What one case did.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Whether the case reached the phase it aimed at.
    pub reached: bool,
    /// Steps that ran (the rest were skipped: connection closed).
    pub steps_run: usize,
    /// The bytes each step sent (up to 64 KiB each).
    pub sent: Vec<Vec<u8>>,
    /// The case connection's traffic.
    pub transcript: Vec<conn::Chunk>,
    /// What the oracle found, if anything.
    pub finding: Option<Finding>,
}

/// Runs one case and the oracle after it.
pub fn run_case(spec: &TargetSpec, case: &Case, limits: Limits) -> CaseResult {
    let mut exec = match exec::Exec::connect(spec, limits, case.seed) {
        Ok(e) => e,
        Err(err) => {
            let finding = oracle::alive(spec, limits).or_else(|| {
                Some(Finding::new(
                    FindingKind::Crash,
                    format!("cannot connect to {}: {err}", spec.addr),
                ))
            });
            return CaseResult {
                reached: false,
                steps_run: 0,
                sent: Vec::new(),
                transcript: Vec::new(),
                finding,
            };
        }
    };
    let mut sent = Vec::new();
    let mut steps_run = 0;
    for s in &case.steps {
        let ran = exec.run_step(s);
        sent.push(std::mem::take(&mut exec.step_bytes));
        if ran {
            steps_run += 1;
        }
    }
    let reached = exec.reached(case.phase);
    let probe = exec.probe();
    exec.conn.close();
    let transcript = std::mem::take(&mut exec.conn.transcript);
    let live = oracle::alive(spec, limits);
    // The most severe finding wins: crash, then hang, then violation.
    let finding = match (live, probe) {
        (Some(l), Some(p)) => Some(if l.kind <= p.kind { l } else { p }),
        (l, p) => l.or(p),
    };
    CaseResult {
        reached,
        steps_run,
        sent,
        transcript,
        finding,
    }
}

impl exec::Exec<'_> {
    /// Whether the session got to `phase`.
    pub fn reached(&self, phase: Phase) -> bool {
        match phase {
            Phase::LoginSecurity => !self.conn.transcript.is_empty(),
            Phase::LoginOperational => {
                self.stage != iscsi_proto::wire::Stage::Security || self.in_ffp
            }
            Phase::Discovery => self.in_ffp && self.discovery,
            Phase::FfpIdle => self.in_ffp,
            Phase::FfpInFlight => self.in_ffp && !self.tasks.is_empty(),
            Phase::FfpR2t => self.r2t_seen,
            Phase::FfpClosedWindow => self.window_closed,
            Phase::Logout => self.in_ffp && self.logout_itt.is_some(),
        }
    }
}
