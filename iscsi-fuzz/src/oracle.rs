//! The oracle: after every case, is the target alive (a fresh login and
//! TEST UNIT READY within a deadline), did it hang the case's connection,
//! did it answer something RFC 7143 forbids. Findings are classed crash,
//! hang or violation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::case::Step;
use crate::exec::{Exec, Limits};
use crate::TargetSpec;

/// An RFC 7143 rule the target broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Rule {
    /// StatSN went backwards on a connection (section 4.2.2.2).
    StatSnBackwards,
    /// MaxCmdSN below ExpCmdSN - 1 (section 4.2.2.1).
    WindowInvalid,
    /// A response (or R2T) to a command the target must silently ignore,
    /// sent outside the CmdSN window (section 4.2.2.1).
    AnsweredIgnoredCommand,
    /// A task answered twice (section 11.4).
    TaskEndedTwice,
    /// An R2T for data beyond the Expected Data Transfer Length (11.8).
    R2tBeyondTransfer,
    /// A Reject with a reserved or wrong reason (sections 7.8, 11.17.1).
    RejectReason,
    /// A Reject without the rejected header (section 11.17).
    RejectWithoutHeader,
    /// A Login Response with another ITT than the request (11.13).
    WrongItt,
    /// Bytes that are not a valid target PDU (section 11).
    MalformedPdu,
    /// A PDU other than a Login Response before the full feature phase
    /// (section 4.2.4: only Login Requests and Responses are allowed).
    NonLoginPduDuringLogin,
}

/// What kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "class", content = "rule")]
pub enum FindingKind {
    /// The target stopped accepting or serving logins.
    Crash,
    /// The target neither answered nor closed within the deadline.
    Hang,
    /// The target broke a rule of RFC 7143.
    Violation(Rule),
}

impl FindingKind {
    /// "crash", "hang" or "violation".
    pub fn class(&self) -> &'static str {
        match self {
            FindingKind::Crash => "crash",
            FindingKind::Hang => "hang",
            FindingKind::Violation(_) => "violation",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FindingKind::Violation(r) => write!(f, "violation {r:?}"),
            k => f.write_str(k.class()),
        }
    }
}

/// One finding: its kind and what exactly was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Crash, hang or which violation.
    pub kind: FindingKind,
    /// What was seen.
    pub detail: String,
}

impl Finding {
    /// A finding.
    pub fn new(kind: FindingKind, detail: String) -> Finding {
        Finding { kind, detail }
    }
}

/// Is the target alive? A fresh connection, a clean login and TEST UNIT
/// READY answered within `limits.answer`. `Some` finding if not: a crash
/// when the target refuses or drops the connection, a hang when it
/// accepts but does not answer.
pub fn alive(spec: &TargetSpec, limits: Limits) -> Option<Finding> {
    // A fresh ISID per probe: parallel jobs' probes must not reinstate
    // each other's sessions (RFC 7143 section 6.3.5).
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let salt = 0x5eed_0000_0000_0000
        ^ (u64::from(std::process::id()) << 24)
        ^ PROBES.fetch_add(1, Ordering::Relaxed);
    let mut e = match Exec::connect(spec, limits, salt) {
        Ok(e) => e,
        Err(err) => {
            return Some(Finding::new(
                FindingKind::Crash,
                format!("liveness: cannot connect to {}: {err}", spec.addr),
            ))
        }
    };
    let login = [
        Step::LoginSecurity {
            discovery: false,
            mutation: None,
        },
        Step::LoginOperational {
            digests: false,
            mutation: None,
        },
    ];
    for s in &login {
        e.run_step(s);
    }
    if !e.in_ffp {
        if e.login_failed {
            // The target answered with a login failure: alive, though it
            // refuses this initiator now (e.g. a session limit).
            return None;
        }
        let what = if e.conn.closed {
            (
                FindingKind::Crash,
                "closed the connection during a clean login",
            )
        } else {
            (FindingKind::Hang, "did not answer a clean login")
        };
        return Some(Finding::new(
            what.0,
            format!("liveness: the target {}", what.1),
        ));
    }
    let tur = Step::Command {
        slot: 0,
        cmd: crate::case::CmdKind::TestUnitReady,
        wait_r2t: false,
        mutation: None,
    };
    e.run_step(&tur);
    let itt = e.tasks.get(&0).map_or(0, |t| t.itt);
    let answered = e.tasks.get(&0).is_some_and(|t| t.responses > 0)
        || e.wait_for(limits.answer, |p| match &p.header {
            iscsi_proto::wire::Header::ScsiResponse(r) => r.itt == itt,
            iscsi_proto::wire::Header::DataIn(d) => d.itt == itt && d.status.is_some(),
            _ => false,
        })
        .is_some();
    let closed = e.conn.closed;
    e.conn.close();
    if answered {
        None
    } else if closed {
        Some(Finding::new(
            FindingKind::Crash,
            "liveness: the target closed the connection instead of answering TEST UNIT READY"
                .into(),
        ))
    } else {
        Some(Finding::new(
            FindingKind::Hang,
            format!(
                "liveness: TEST UNIT READY not answered within {:?}",
                limits.answer
            ),
        ))
    }
}

/// Before a campaign: can we log in at all (right URL, target name,
/// credentials)? A campaign whose every login fails would reach no phase.
pub fn check_login(spec: &TargetSpec, limits: Limits) -> Result<(), String> {
    let mut e = Exec::connect(
        spec,
        limits,
        0x5eed_c4ec_0000_0000 ^ u64::from(std::process::id()),
    )
    .map_err(|err| format!("cannot connect to {}: {err}", spec.addr))?;
    for s in [
        Step::LoginSecurity {
            discovery: false,
            mutation: None,
        },
        Step::LoginOperational {
            digests: false,
            mutation: None,
        },
    ] {
        e.run_step(&s);
    }
    let ok = e.in_ffp;
    let refused = e.login_failed;
    e.conn.close();
    match (ok, refused) {
        (true, _) => Ok(()),
        (false, true) => Err(format!(
            "{} refused a clean login to {} (check the target name, LUN and CHAP credentials)",
            spec.addr, spec.target_name
        )),
        (false, false) => Err(format!("{} did not complete a clean login", spec.addr)),
    }
}
