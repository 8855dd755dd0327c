//! Typed mutations: every change the fuzzer makes to a PDU is one of these
//! values, recorded in the replay file, never raw bytes alone.
//!
//! Text mutations act on the key=value list before it is encoded; BHS,
//! AHS and digest mutations act on the encoded PDU (the header digest is
//! computed after them, unless the mutation is a wrong digest);
//! sequence-number and Data-Out mutations are interpreted by the step that
//! builds the PDU (they need the session's state); delivery mutations
//! change how the bytes reach the socket.

use serde::{Deserialize, Serialize};

/// One mutation of one PDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Mutation {
    // ---- text keys (RFC 7143 sections 6 and 13) ----
    /// A key the RFC does not define (and not an X- extension).
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A key sent twice in one PDU (RFC 7143 section 6.1: "A key ... MUST
    /// NOT be offered more than once").
    RepeatedKey {
        /// The key repeated.
        key: String,
    },
    /// A value longer than the 255 (or 8192 for some keys) bytes allowed
    /// (RFC 7143 section 6.1).
    OversizedValue {
        /// The key.
        key: String,
        /// Value length in bytes.
        len: u32,
    },
    /// A value outside the key's range or type.
    IllegalValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// The last key=value pair without its terminating NUL.
    MissingNul,
    /// A key valid only in another stage or phase (e.g. an operational key
    /// in the security stage, a login-only key in a Text Request).
    WrongStageKey {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    // ---- BHS fields (RFC 7143 section 11.2) ----
    /// Replace the opcode byte's low 6 bits.
    Opcode {
        /// The opcode.
        value: u8,
    },
    /// XOR byte 1 (the flags).
    Flags {
        /// Bits to flip.
        xor: u8,
    },
    /// TotalAHSLength set without an AHS behind it.
    TotalAhsLength {
        /// The value (4-byte words).
        value: u8,
    },
    /// DataSegmentLength set to a value that does not match the data.
    DataSegmentLength {
        /// The value.
        value: u32,
    },
    /// The ITT of an earlier task of this case (ITT reuse).
    ReuseItt,
    /// The reserved ITT 0xffffffff on a PDU that needs a real one.
    ReservedItt,
    /// CmdSN moved by `delta` from the right value (below ExpCmdSN,
    /// beyond MaxCmdSN, wrapped around 2^32).
    CmdSn {
        /// Signed distance from the correct CmdSN.
        delta: i64,
    },
    /// ExpStatSN moved by `delta` from the right value.
    ExpStatSn {
        /// Signed distance.
        delta: i64,
    },
    /// Any 32-bit BHS word (bytes `offset..offset+4`, offset a multiple
    /// of 4 in 8..48) set to `value`.
    Word {
        /// Byte offset in the BHS.
        offset: u8,
        /// The value.
        value: u32,
    },
    // ---- Data-Out (RFC 7143 sections 11.7 and 11.8) ----
    /// The last Data-Out of a burst runs `extra` bytes past its R2T.
    DataOutOverrun {
        /// Bytes past the R2T's end.
        extra: u32,
    },
    /// A Data-Out whose offset lies `past` bytes beyond its R2T's range.
    DataOutOffsetBeyond {
        /// Bytes beyond the R2T's end.
        past: u32,
    },
    /// The burst starts `gap` bytes into the R2T (data skipped).
    DataOutSkip {
        /// Bytes skipped.
        gap: u32,
    },
    /// DataSN moved by `delta`.
    DataSn {
        /// Signed distance.
        delta: i64,
    },
    /// A Target Transfer Tag no R2T gave.
    WrongTtt {
        /// The tag.
        ttt: u32,
    },
    /// The burst's last Data-Out without the F bit.
    NoFinal,
    // ---- AHS (RFC 7143 section 11.2.2) ----
    /// An AHS of this type and AHS-specific length before the data.
    Ahs {
        /// AHSType.
        ahs_type: u8,
        /// AHSLength (bytes of AHS-specific data).
        len: u16,
    },
    // ---- digests (RFC 7143 section 11.2.3) ----
    /// A wrong header digest (framing right); 4 stray bytes when header
    /// digests are not in use.
    BadHeaderDigest,
    /// A wrong data digest (framing right); 4 stray bytes when data
    /// digests are not in use.
    BadDataDigest,
    // ---- delivery ----
    /// Send only the first `at` bytes, then half-close.
    Truncate {
        /// Bytes sent.
        at: u32,
    },
    /// Send the PDU in two writes split at `at`, `delay_ms` apart.
    Split {
        /// Split point.
        at: u32,
        /// Pause between the writes.
        delay_ms: u16,
    },
}

impl Mutation {
    /// The variant's name, for per-mutation counts.
    pub fn name(&self) -> &'static str {
        match self {
            Mutation::UnknownKey { .. } => "UnknownKey",
            Mutation::RepeatedKey { .. } => "RepeatedKey",
            Mutation::OversizedValue { .. } => "OversizedValue",
            Mutation::IllegalValue { .. } => "IllegalValue",
            Mutation::MissingNul => "MissingNul",
            Mutation::WrongStageKey { .. } => "WrongStageKey",
            Mutation::Opcode { .. } => "Opcode",
            Mutation::Flags { .. } => "Flags",
            Mutation::TotalAhsLength { .. } => "TotalAhsLength",
            Mutation::DataSegmentLength { .. } => "DataSegmentLength",
            Mutation::ReuseItt => "ReuseItt",
            Mutation::ReservedItt => "ReservedItt",
            Mutation::CmdSn { .. } => "CmdSn",
            Mutation::ExpStatSn { .. } => "ExpStatSn",
            Mutation::Word { .. } => "Word",
            Mutation::DataOutOverrun { .. } => "DataOutOverrun",
            Mutation::DataOutOffsetBeyond { .. } => "DataOutOffsetBeyond",
            Mutation::DataOutSkip { .. } => "DataOutSkip",
            Mutation::DataSn { .. } => "DataSn",
            Mutation::WrongTtt { .. } => "WrongTtt",
            Mutation::NoFinal => "NoFinal",
            Mutation::Ahs { .. } => "Ahs",
            Mutation::BadHeaderDigest => "BadHeaderDigest",
            Mutation::BadDataDigest => "BadDataDigest",
            Mutation::Truncate { .. } => "Truncate",
            Mutation::Split { .. } => "Split",
        }
    }

    /// True if, after this mutation, the target can no longer find the
    /// next PDU boundary (so the end-of-case probe is a half-close, not a
    /// ping).
    pub fn breaks_framing(&self, header_digest: bool, data_digest: bool) -> bool {
        match self {
            Mutation::TotalAhsLength { .. }
            | Mutation::DataSegmentLength { .. }
            | Mutation::Truncate { .. } => true,
            Mutation::BadHeaderDigest => !header_digest,
            Mutation::BadDataDigest => !data_digest,
            // A changed opcode may make the target read the PDU with
            // another layout; it still frames by the same two fields.
            _ => false,
        }
    }

    /// Applies a text mutation to a key=value list and encodes it; other
    /// mutations leave the list as it is.
    pub fn encode_text(mutation: Option<&Mutation>, pairs: &[(String, String)]) -> Vec<u8> {
        let mut pairs: Vec<(String, String)> = pairs.to_vec();
        match mutation {
            Some(Mutation::UnknownKey { key }) => pairs.push((key.clone(), "1".into())),
            Some(Mutation::RepeatedKey { key }) => {
                let v = pairs
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| "1".into());
                pairs.push((key.clone(), v.clone()));
                pairs.push((key.clone(), v));
            }
            Some(Mutation::OversizedValue { key, len }) => {
                let v: String = "A".repeat(*len as usize);
                set(&mut pairs, key, v);
            }
            Some(Mutation::IllegalValue { key, value }) => set(&mut pairs, key, value.clone()),
            Some(Mutation::WrongStageKey { key, value }) => {
                pairs.push((key.clone(), value.clone()))
            }
            _ => {}
        }
        // Encoded by hand: the core's encoder refuses what we want to send.
        let mut out = Vec::new();
        for (k, v) in &pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        if matches!(mutation, Some(Mutation::MissingNul)) && out.last() == Some(&0) {
            out.pop();
        }
        out
    }
}

fn set(pairs: &mut Vec<(String, String)>, key: &str, value: String) {
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(p) => p.1 = value,
        None => pairs.push((key.to_string(), value)),
    }
}

/// Adds a signed delta to a sequence number modulo 2^32.
pub fn shift(v: u32, delta: i64) -> u32 {
    (i64::from(v).wrapping_add(delta)).rem_euclid(1 << 32) as u32
}
