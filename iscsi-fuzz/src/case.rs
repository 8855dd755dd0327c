//! Cases: the phase a case drives the target to, its typed steps, and
//! their generation from a seed by weighted strategies.

use serde::{Deserialize, Serialize};

use crate::mutation::Mutation;
use crate::rng::Rng;

/// The protocol state a case reaches before it mutates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Login, security negotiation stage (RFC 7143 section 6.3).
    LoginSecurity,
    /// Login, operational negotiation stage.
    LoginOperational,
    /// A discovery session's full feature phase (SendTargets).
    Discovery,
    /// Full feature phase, nothing outstanding.
    FfpIdle,
    /// Full feature phase with commands in flight.
    FfpInFlight,
    /// Full feature phase with an R2T outstanding.
    FfpR2t,
    /// Full feature phase with the command window closed.
    FfpClosedWindow,
    /// After a Logout Request was sent.
    Logout,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 8] = [
        Phase::LoginSecurity,
        Phase::LoginOperational,
        Phase::Discovery,
        Phase::FfpIdle,
        Phase::FfpInFlight,
        Phase::FfpR2t,
        Phase::FfpClosedWindow,
        Phase::Logout,
    ];

    /// True for the login phases.
    pub fn is_login(self) -> bool {
        matches!(self, Phase::LoginSecurity | Phase::LoginOperational)
    }
}

/// Which phases a campaign draws from (`--phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseFilter {
    /// Login stages only.
    Login,
    /// Discovery and full feature phase (including logout).
    Ffp,
    /// Everything.
    All,
}

impl PhaseFilter {
    /// Whether `p` is drawn.
    pub fn admits(self, p: Phase) -> bool {
        match self {
            PhaseFilter::Login => p.is_login(),
            PhaseFilter::Ffp => !p.is_login(),
            PhaseFilter::All => true,
        }
    }
}

/// A SCSI command a step sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdKind {
    /// TEST UNIT READY.
    TestUnitReady,
    /// INQUIRY, 96 bytes.
    Inquiry,
    /// READ(10) of `blocks` 512-byte blocks at LBA 0.
    Read {
        /// Blocks.
        blocks: u16,
    },
    /// WRITE(10) of `blocks` 512-byte blocks at LBA 8 (solicited data
    /// only, so an R2T stays outstanding until a Data-Out step).
    Write {
        /// Blocks.
        blocks: u16,
    },
}

/// One typed step of a case. Steps name tasks by slot (their order in the
/// case), never by tag: tags, sequence numbers and transfer tags come from
/// the session when the step runs, so a replay against a fresh target
/// means the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step")]
pub enum Step {
    /// Login Requests of the security stage (CHAP when the target URL has
    /// credentials) up to the switch to operational negotiation; the
    /// mutation applies to the first request.
    LoginSecurity {
        /// SessionType=Discovery.
        discovery: bool,
        /// Mutation of the first request.
        mutation: Option<Mutation>,
    },
    /// Login Requests of the operational stage up to the full feature
    /// phase.
    LoginOperational {
        /// Offer CRC32C digests first.
        digests: bool,
        /// Mutation of the first request.
        mutation: Option<Mutation>,
    },
    /// A SCSI Command (task `slot`); `wait_r2t` waits for its first R2T.
    Command {
        /// Task slot.
        slot: u8,
        /// The command.
        cmd: CmdKind,
        /// Wait for the R2T (writes).
        wait_r2t: bool,
        /// Mutation.
        mutation: Option<Mutation>,
    },
    /// Data-Out answering the last R2T of task `slot` (all of its burst).
    DataOut {
        /// Task slot.
        slot: u8,
        /// Mutation (Data-Out ones shape the burst).
        mutation: Option<Mutation>,
    },
    /// Non-immediate WRITEs until the command window is closed.
    FillWindow,
    /// A Task Management Function Request.
    Tmf {
        /// Function code (RFC 7143 section 11.5.1; reserved codes too).
        function: u8,
        /// Referenced task slot (ABORT TASK).
        slot: Option<u8>,
        /// Mutation.
        mutation: Option<Mutation>,
    },
    /// A Text Request with these keys.
    Text {
        /// Keys and values.
        keys: Vec<(String, String)>,
        /// Mutation.
        mutation: Option<Mutation>,
    },
    /// A NOP-Out ping (immediate) with `data` bytes of ping data.
    Nop {
        /// Ping data length.
        data: u16,
        /// Mutation.
        mutation: Option<Mutation>,
    },
    /// A Logout Request.
    Logout {
        /// Reason code (0 close session, 1 close connection, 2 recovery).
        reason: u8,
        /// Mutation.
        mutation: Option<Mutation>,
    },
    /// A SNACK Request (type 0..3) for task `slot`.
    Snack {
        /// SNACK type.
        snack_type: u8,
        /// Task slot.
        slot: u8,
        /// Mutation.
        mutation: Option<Mutation>,
    },
}

impl Step {
    /// The step's mutation.
    pub fn mutation(&self) -> Option<&Mutation> {
        match self {
            Step::LoginSecurity { mutation, .. }
            | Step::LoginOperational { mutation, .. }
            | Step::Command { mutation, .. }
            | Step::DataOut { mutation, .. }
            | Step::Tmf { mutation, .. }
            | Step::Text { mutation, .. }
            | Step::Nop { mutation, .. }
            | Step::Logout { mutation, .. }
            | Step::Snack { mutation, .. } => mutation.as_ref(),
            Step::FillWindow => None,
        }
    }

    /// The step without its mutation (for minimizing).
    pub fn without_mutation(&self) -> Step {
        let mut s = self.clone();
        match &mut s {
            Step::LoginSecurity { mutation, .. }
            | Step::LoginOperational { mutation, .. }
            | Step::Command { mutation, .. }
            | Step::DataOut { mutation, .. }
            | Step::Tmf { mutation, .. }
            | Step::Text { mutation, .. }
            | Step::Nop { mutation, .. }
            | Step::Logout { mutation, .. }
            | Step::Snack { mutation, .. } => *mutation = None,
            Step::FillWindow => {}
        }
        s
    }
}

/// A generated case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// The seed it was generated from.
    pub seed: u64,
    /// The phase it aims at.
    pub phase: Phase,
    /// Its steps.
    pub steps: Vec<Step>,
}

/// Keys of the security stage.
const SECURITY_KEYS: &[&str] = &["AuthMethod", "InitiatorName", "TargetName", "SessionType"];
/// Keys of the operational stage.
const OPERATIONAL_KEYS: &[&str] = &[
    "HeaderDigest",
    "DataDigest",
    "MaxRecvDataSegmentLength",
    "MaxBurstLength",
    "FirstBurstLength",
    "InitialR2T",
    "ImmediateData",
    "MaxOutstandingR2T",
    "ErrorRecoveryLevel",
    "MaxConnections",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "DataPDUInOrder",
    "DataSequenceInOrder",
];
/// Values no key accepts, or outside every range.
const ILLEGAL_VALUES: &[&str] = &[
    "",
    "0",
    "4294967296",
    "-1",
    "0x",
    "0xZZ",
    "Yes,No",
    "Maybe",
    "CRC32C,CRC32C,CRC32C,None",
    "1~0",
    "0b",
    "16777216",
    "Reject",
    "Irrelevant",
    "NotUnderstood",
];

fn text_mutation(r: &mut Rng, keys: &[&str]) -> Mutation {
    let key = |r: &mut Rng| (*r.pick(keys).unwrap_or(&"X")).to_string();
    match r.below(6) {
        0 => Mutation::UnknownKey {
            key: (*r
                .pick(&["Foo", "x-fuzz", "AuthMethodd", "A", "TargetName2"])
                .unwrap_or(&"Foo"))
            .to_string(),
        },
        1 => Mutation::RepeatedKey { key: key(r) },
        2 => Mutation::OversizedValue {
            key: key(r),
            len: *r.pick(&[256u32, 4096, 8300]).unwrap_or(&256),
        },
        3 => Mutation::IllegalValue {
            key: key(r),
            value: (*r.pick(ILLEGAL_VALUES).unwrap_or(&"")).to_string(),
        },
        4 => Mutation::MissingNul,
        _ => {
            let (k, v) = *r
                .pick(&[
                    ("MaxBurstLength", "512"),
                    ("AuthMethod", "None"),
                    ("SessionType", "Discovery"),
                    ("TargetName", "iqn.2026-11.other:x"),
                    ("InitiatorName", "iqn.2026-11.changed:x"),
                    ("CHAP_A", "5"),
                    ("CHAP_N", "user"),
                    ("SendTargets", "All"),
                    ("MaxConnections", "2"),
                    ("TargetAddress", "127.0.0.1:1,1"),
                ])
                .unwrap_or(&("A", "B"));
            Mutation::WrongStageKey {
                key: k.to_string(),
                value: v.to_string(),
            }
        }
    }
}

/// A mutation of the BHS, AHS, digests or delivery (any PDU).
fn header_mutation(r: &mut Rng) -> Mutation {
    let strategies: [(u32, u8); 9] = [
        (3, 0),
        (3, 1),
        (2, 2),
        (2, 3),
        (2, 4),
        (3, 5),
        (2, 6),
        (3, 7),
        (2, 8),
    ];
    match r.weighted(&strategies).copied().unwrap_or(0) {
        0 => Mutation::Opcode {
            value: *r
                .pick(&[
                    0x00u8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x1c, 0x1e, 0x3f, 0x20,
                    0x23,
                ])
                .unwrap_or(&0x3f),
        },
        1 => Mutation::Flags {
            xor: *r
                .pick(&[0x80u8, 0x40, 0x20, 0x07, 0xff, 0x03])
                .unwrap_or(&0x80),
        },
        2 => Mutation::TotalAhsLength {
            value: *r.pick(&[1u8, 2, 255]).unwrap_or(&1),
        },
        3 => Mutation::DataSegmentLength {
            value: *r.pick(&[1u32, 3, 47, 8193, 0x00ff_ffff]).unwrap_or(&1),
        },
        4 => Mutation::Ahs {
            ahs_type: *r.pick(&[1u8, 2, 0, 0x3f, 0x40, 0xff]).unwrap_or(&1),
            len: *r.pick(&[0u16, 1, 4, 5, 16, 1019]).unwrap_or(&4),
        },
        5 => {
            let offset = *r
                .pick(&[8u8, 12, 20, 24, 28, 32, 36, 40, 44])
                .unwrap_or(&20);
            let value = *r
                .pick(&[
                    0u32,
                    1,
                    0x7fff_ffff,
                    0x8000_0000,
                    0xffff_fffe,
                    0xffff_ffff,
                    0x0001_0000,
                ])
                .unwrap_or(&0);
            Mutation::Word { offset, value }
        }
        6 => {
            if r.chance(1, 2) {
                Mutation::BadHeaderDigest
            } else {
                Mutation::BadDataDigest
            }
        }
        7 => Mutation::Split {
            at: *r.pick(&[1u32, 4, 8, 24, 47, 48, 49, 52]).unwrap_or(&1),
            delay_ms: *r.pick(&[0u16, 5, 50]).unwrap_or(&0),
        },
        _ => Mutation::Truncate {
            at: *r.pick(&[0u32, 1, 20, 47, 48, 50]).unwrap_or(&1),
        },
    }
}

/// A mutation of a command-numbered PDU's sequence numbers or tags.
fn sequence_mutation(r: &mut Rng) -> Mutation {
    match r.below(5) {
        0 => Mutation::CmdSn {
            delta: *r
                .pick(&[
                    -1i64,
                    -2,
                    -1000,
                    1,
                    2,
                    1 << 20,
                    1 << 31,
                    (1 << 31) + 1,
                    -(1 << 31),
                ])
                .unwrap_or(&1),
        },
        1 => Mutation::ExpStatSn {
            delta: *r.pick(&[-1i64, 1, 1000, 1 << 31, -(1 << 31)]).unwrap_or(&1),
        },
        2 => Mutation::ReuseItt,
        3 => Mutation::ReservedItt,
        _ => header_mutation(r),
    }
}

fn data_out_mutation(r: &mut Rng) -> Mutation {
    match r.below(8) {
        0 => Mutation::DataOutOverrun {
            extra: *r.pick(&[1u32, 4, 512, 4096]).unwrap_or(&1),
        },
        1 => Mutation::DataOutOffsetBeyond {
            past: *r.pick(&[0u32, 512, 1 << 20, 0x7fff_0000]).unwrap_or(&0),
        },
        2 => Mutation::DataOutSkip {
            gap: *r.pick(&[4u32, 512]).unwrap_or(&512),
        },
        3 => Mutation::DataSn {
            delta: *r.pick(&[1i64, -1, 100, 1 << 31]).unwrap_or(&1),
        },
        4 => Mutation::WrongTtt {
            ttt: *r.pick(&[0u32, 0xffff_ffff, 0x1234_5678]).unwrap_or(&0),
        },
        5 => Mutation::NoFinal,
        6 => Mutation::ReuseItt,
        _ => header_mutation(r),
    }
}

fn maybe<F: FnOnce(&mut Rng) -> Mutation>(
    r: &mut Rng,
    num: u64,
    den: u64,
    f: F,
) -> Option<Mutation> {
    if r.chance(num, den) {
        Some(f(r))
    } else {
        None
    }
}

fn login(r: &mut Rng, discovery: bool) -> [Step; 2] {
    [
        Step::LoginSecurity {
            discovery,
            mutation: None,
        },
        Step::LoginOperational {
            digests: r.chance(1, 3),
            mutation: None,
        },
    ]
}

/// A TMF function code: mostly valid ones, some reserved.
fn tmf_function(r: &mut Rng) -> u8 {
    *r.pick(&[1u8, 1, 1, 2, 3, 4, 5, 6, 8, 0, 9, 15, 127])
        .unwrap_or(&1)
}

/// One mutated action in the full feature phase, about task `slot`.
fn ffp_action(r: &mut Rng, slot: u8, next_slot: u8) -> Step {
    let actions: [(u32, u8); 7] = [(4, 0), (3, 1), (2, 2), (2, 3), (2, 4), (1, 5), (2, 6)];
    match r.weighted(&actions).copied().unwrap_or(0) {
        0 => Step::Command {
            slot: next_slot,
            cmd: *r
                .pick(&[
                    CmdKind::TestUnitReady,
                    CmdKind::Inquiry,
                    CmdKind::Read { blocks: 8 },
                    CmdKind::Write { blocks: 8 },
                ])
                .unwrap_or(&CmdKind::TestUnitReady),
            wait_r2t: false,
            mutation: Some(sequence_mutation(r)),
        },
        1 => Step::Tmf {
            function: tmf_function(r),
            slot: Some(slot),
            mutation: maybe(r, 1, 2, sequence_mutation),
        },
        2 => Step::Nop {
            data: *r.pick(&[0u16, 4, 100]).unwrap_or(&0),
            mutation: Some(header_mutation(r)),
        },
        3 => {
            let keys: &[&str] = &[
                "MaxBurstLength",
                "TargetAlias",
                "SendTargets",
                "X-rs.iscsi.fuzz",
            ];
            Step::Text {
                keys: vec![("SendTargets".into(), "All".into())],
                mutation: Some(if r.chance(2, 3) {
                    text_mutation(r, keys)
                } else {
                    sequence_mutation(r)
                }),
            }
        }
        4 => Step::Logout {
            reason: *r.pick(&[0u8, 1, 2, 3, 0x7f]).unwrap_or(&0),
            mutation: maybe(r, 1, 2, sequence_mutation),
        },
        5 => Step::Snack {
            snack_type: r.range(0, 4) as u8,
            slot,
            mutation: maybe(r, 1, 2, header_mutation),
        },
        _ => Step::LoginSecurity {
            discovery: false,
            mutation: maybe(r, 1, 2, header_mutation),
        },
    }
}

/// Generates the case of `seed`, drawing its phase from `filter`.
pub fn generate(seed: u64, filter: PhaseFilter) -> Case {
    let mut r = Rng::new(seed);
    let phases: Vec<(u32, Phase)> = [
        (3, Phase::LoginSecurity),
        (3, Phase::LoginOperational),
        (1, Phase::Discovery),
        (2, Phase::FfpIdle),
        (2, Phase::FfpInFlight),
        (4, Phase::FfpR2t),
        (1, Phase::FfpClosedWindow),
        (2, Phase::Logout),
    ]
    .into_iter()
    .filter(|(_, p)| filter.admits(*p))
    .collect();
    let phase = r.weighted(&phases).copied().unwrap_or(Phase::FfpIdle);
    let mut steps = Vec::new();
    match phase {
        Phase::LoginSecurity => {
            let discovery = r.chance(1, 4);
            let mutation = if r.chance(1, 2) {
                text_mutation(&mut r, SECURITY_KEYS)
            } else {
                header_mutation(&mut r)
            };
            steps.push(Step::LoginSecurity {
                discovery,
                mutation: Some(mutation),
            });
            if r.chance(1, 3) {
                // A full feature PDU during login (wrong phase).
                steps.push(ffp_action(&mut r, 0, 0));
            }
            steps.push(Step::LoginOperational {
                digests: false,
                mutation: None,
            });
        }
        Phase::LoginOperational => {
            steps.push(Step::LoginSecurity {
                discovery: r.chance(1, 4),
                mutation: None,
            });
            if r.chance(1, 5) {
                steps.push(ffp_action(&mut r, 0, 0));
            }
            let mutation = if r.chance(2, 3) {
                text_mutation(&mut r, OPERATIONAL_KEYS)
            } else {
                header_mutation(&mut r)
            };
            steps.push(Step::LoginOperational {
                digests: r.chance(1, 3),
                mutation: Some(mutation),
            });
        }
        Phase::Discovery => {
            steps.extend(login(&mut r, true));
            let mutation = if r.chance(1, 2) {
                text_mutation(&mut r, &["SendTargets", "TargetName", "MaxBurstLength"])
            } else {
                sequence_mutation(&mut r)
            };
            steps.push(Step::Text {
                keys: vec![("SendTargets".into(), "All".into())],
                mutation: Some(mutation),
            });
            if r.chance(1, 2) {
                // Commands are not allowed in a discovery session.
                steps.push(Step::Command {
                    slot: 0,
                    cmd: CmdKind::TestUnitReady,
                    wait_r2t: false,
                    mutation: None,
                });
            }
        }
        Phase::FfpIdle => {
            steps.extend(login(&mut r, false));
            for _ in 0..r.range(1, 3) {
                steps.push(ffp_action(&mut r, 0, 0));
            }
        }
        Phase::FfpInFlight => {
            steps.extend(login(&mut r, false));
            let n = r.range(1, 4) as u8;
            for slot in 0..n {
                steps.push(Step::Command {
                    slot,
                    cmd: *r
                        .pick(&[
                            CmdKind::Read { blocks: 64 },
                            CmdKind::Inquiry,
                            CmdKind::TestUnitReady,
                        ])
                        .unwrap_or(&CmdKind::TestUnitReady),
                    wait_r2t: false,
                    mutation: None,
                });
            }
            let target = r.below(u64::from(n)) as u8;
            steps.push(ffp_action(&mut r, target, n));
        }
        Phase::FfpR2t => {
            steps.extend(login(&mut r, false));
            steps.push(Step::Command {
                slot: 0,
                cmd: CmdKind::Write {
                    blocks: *r.pick(&[1u16, 8, 64]).unwrap_or(&8),
                },
                wait_r2t: true,
                mutation: None,
            });
            let strategies: [(u32, u8); 3] = [(5, 0), (3, 1), (2, 2)];
            match r.weighted(&strategies).copied().unwrap_or(0) {
                0 => steps.push(Step::DataOut {
                    slot: 0,
                    mutation: Some(data_out_mutation(&mut r)),
                }),
                1 => steps.push(Step::Tmf {
                    // TMFs racing their task.
                    function: tmf_function(&mut r),
                    slot: Some(0),
                    mutation: maybe(&mut r, 1, 3, sequence_mutation),
                }),
                _ => steps.push(ffp_action(&mut r, 0, 1)),
            }
            if r.chance(1, 2) {
                steps.push(Step::DataOut {
                    slot: 0,
                    mutation: None,
                });
            }
        }
        Phase::FfpClosedWindow => {
            steps.extend(login(&mut r, false));
            steps.push(Step::FillWindow);
            steps.push(ffp_action(&mut r, 0, 200));
        }
        Phase::Logout => {
            steps.extend(login(&mut r, false));
            if r.chance(1, 2) {
                steps.push(Step::Command {
                    slot: 0,
                    cmd: CmdKind::Write { blocks: 8 },
                    wait_r2t: r.chance(1, 2),
                    mutation: None,
                });
            }
            steps.push(Step::Logout {
                reason: 0,
                mutation: maybe(&mut r, 1, 3, sequence_mutation),
            });
            steps.push(ffp_action(&mut r, 0, 1));
        }
    }
    Case { seed, phase, steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_a_function_of_the_seed() {
        for s in 0..200 {
            assert_eq!(generate(s, PhaseFilter::All), generate(s, PhaseFilter::All));
        }
        let phases: std::collections::BTreeSet<Phase> = (0..400)
            .map(|s| generate(s, PhaseFilter::All).phase)
            .collect();
        assert_eq!(phases.len(), Phase::ALL.len(), "every phase is drawn");
        assert!((0..100).all(|s| generate(s, PhaseFilter::Login).phase.is_login()));
    }
}
