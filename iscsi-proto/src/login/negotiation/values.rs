//! The typed values of the negotiated keys (SessionType, HeaderDigest and
//! DataDigest, TaskReporting, AuthMethod), the login stage, and
//! [`OperationalParams`], the operational values one side wants.

use super::error::NegotiationError;
use crate::login::keys::{self, ValueType};
use crate::prelude::*;
use crate::wire::text;

/// Largest iSCSI name: RFC 7143 section 4.2.7.1 "Initiators and targets
/// MUST support the receipt of iSCSI names of up to the maximum length of
/// 223 bytes" (section 4.2.7.2 bounds the UTF-8 encoding at 223 bytes).
pub const MAX_ISCSI_NAME_LEN: usize = 223;
/// SessionType (RFC 7143 section 13.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionType {
    /// "Normal": a full session with SCSI access.
    #[default]
    Normal,
    /// "Discovery": SendTargets only.
    Discovery,
}

impl SessionType {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionType::Normal => "Normal",
            SessionType::Discovery => "Discovery",
        }
    }
}

/// A digest choice for HeaderDigest / DataDigest (RFC 7143 section 13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DigestType {
    /// "None".
    None,
    /// "CRC32C".
    Crc32c,
}

impl DigestType {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            DigestType::None => "None",
            DigestType::Crc32c => "CRC32C",
        }
    }
}

/// TaskReporting (RFC 7143 section 13.23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TaskReporting {
    /// "RFC3720" (default).
    #[default]
    Rfc3720,
    /// "ResponseFence".
    ResponseFence,
    /// "FastAbort".
    FastAbort,
}

impl TaskReporting {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskReporting::Rfc3720 => "RFC3720",
            TaskReporting::ResponseFence => "ResponseFence",
            TaskReporting::FastAbort => "FastAbort",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "RFC3720" => Some(TaskReporting::Rfc3720),
            "ResponseFence" => Some(TaskReporting::ResponseFence),
            "FastAbort" => Some(TaskReporting::FastAbort),
            _ => None,
        }
    }
}

/// AuthMethod values (RFC 7143 section 12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// "None": no authentication.
    #[default]
    None,
    /// "CHAP" (section 12.1.3).
    Chap,
    /// "KRB5".
    Krb5,
    /// "SRP".
    Srp,
    /// "SPKM1".
    Spkm1,
    /// "SPKM2".
    Spkm2,
}

impl AuthMethod {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "None",
            AuthMethod::Chap => "CHAP",
            AuthMethod::Krb5 => "KRB5",
            AuthMethod::Srp => "SRP",
            AuthMethod::Spkm1 => "SPKM1",
            AuthMethod::Spkm2 => "SPKM2",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "None" => Some(AuthMethod::None),
            "CHAP" => Some(AuthMethod::Chap),
            "KRB5" => Some(AuthMethod::Krb5),
            "SRP" => Some(AuthMethod::Srp),
            "SPKM1" => Some(AuthMethod::Spkm1),
            "SPKM2" => Some(AuthMethod::Spkm2),
            _ => None,
        }
    }
}

/// The login stage a batch of keys belongs to (RFC 7143 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginStage {
    /// Security negotiation (CSG=0).
    Security,
    /// Login operational negotiation (CSG=1).
    Operational,
}

/// The operational values one side wants (RFC defaults via `Default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationalParams {
    /// HeaderDigest preference list (13.1); default `[None]`.
    pub header_digest: Vec<DigestType>,
    /// DataDigest preference list (13.1); default `[None]`.
    pub data_digest: Vec<DigestType>,
    /// MaxConnections (13.2); default 1.
    pub max_connections: u16,
    /// InitialR2T (13.10); default true.
    pub initial_r2t: bool,
    /// ImmediateData (13.11); default true.
    pub immediate_data: bool,
    /// Our MaxRecvDataSegmentLength declaration (13.12); default 8192.
    pub max_recv_data_segment_length: u32,
    /// MaxBurstLength (13.13); default 262144.
    pub max_burst_length: u32,
    /// FirstBurstLength (13.14); default 65536.
    pub first_burst_length: u32,
    /// DefaultTime2Wait (13.15); default 2.
    pub default_time2wait: u16,
    /// DefaultTime2Retain (13.16); default 20.
    pub default_time2retain: u16,
    /// MaxOutstandingR2T (13.17); default 1.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder (13.18); default true.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder (13.19); default true.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel (13.20); default 0.
    pub error_recovery_level: u8,
    /// iSCSIProtocolLevel (13.24); default 1. Offered only when not 1.
    pub protocol_level: u8,
    /// TaskReporting preference list (13.23); default `[RFC3720]`. Offered
    /// only when it differs from the default.
    pub task_reporting: Vec<TaskReporting>,
    /// Also offer the obsolete `IFMarker=No` and `OFMarker=No` (13.25), as
    /// some RFC 3720 initiators do; default false.
    pub offer_markers: bool,
}

impl Default for OperationalParams {
    fn default() -> Self {
        OperationalParams {
            header_digest: vec![DigestType::None],
            data_digest: vec![DigestType::None],
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            max_recv_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            protocol_level: 1,
            task_reporting: vec![TaskReporting::Rfc3720],
            offer_markers: false,
        }
    }
}

pub(super) fn join<T, F: Fn(&T) -> &'static str>(items: &[T], f: F) -> String {
    let v: Vec<&str> = items.iter().map(f).collect();
    v.join(",")
}

impl OperationalParams {
    /// Our value for a negotiated key, in wire form.
    pub(super) fn value_of(&self, key: &str) -> Option<String> {
        Some(match key {
            "HeaderDigest" => join(&self.header_digest, |d| d.as_str()),
            "DataDigest" => join(&self.data_digest, |d| d.as_str()),
            "MaxConnections" => self.max_connections.to_string(),
            "InitialR2T" => text::encode_bool(self.initial_r2t).to_owned(),
            "ImmediateData" => text::encode_bool(self.immediate_data).to_owned(),
            "MaxRecvDataSegmentLength" => self.max_recv_data_segment_length.to_string(),
            "MaxBurstLength" => self.max_burst_length.to_string(),
            "FirstBurstLength" => self.first_burst_length.to_string(),
            "DefaultTime2Wait" => self.default_time2wait.to_string(),
            "DefaultTime2Retain" => self.default_time2retain.to_string(),
            "MaxOutstandingR2T" => self.max_outstanding_r2t.to_string(),
            "DataPDUInOrder" => text::encode_bool(self.data_pdu_in_order).to_owned(),
            "DataSequenceInOrder" => text::encode_bool(self.data_sequence_in_order).to_owned(),
            "ErrorRecoveryLevel" => self.error_recovery_level.to_string(),
            "iSCSIProtocolLevel" => self.protocol_level.to_string(),
            "TaskReporting" => join(&self.task_reporting, |t| t.as_str()),
            "IFMarker" | "OFMarker" => "No".to_owned(),
            _ => return None,
        })
    }

    /// Checks every value against the key table's ranges (and 13.14).
    pub fn validate(&self) -> Result<(), NegotiationError> {
        for def in keys::KEYS {
            let Some(v) = self.value_of(def.name) else {
                continue;
            };
            let bad = || NegotiationError::InvalidConfig {
                key: def.name,
                section: def.section,
            };
            match def.value {
                ValueType::List(_) => {
                    if v.is_empty() {
                        return Err(bad());
                    }
                }
                _ => check_value(def, &v).map_err(|_| bad())?,
            }
        }
        // RFC 7143 section 13.14: "FirstBurstLength MUST NOT exceed MaxBurstLength."
        if self.first_burst_length > self.max_burst_length {
            return Err(NegotiationError::InvalidConfig {
                key: "FirstBurstLength",
                section: "13.14",
            });
        }
        Ok(())
    }
}

pub(in crate::login) fn short(v: &str) -> String {
    let mut end = v.len().min(64);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v.get(..end).unwrap_or("").to_owned()
}

pub(super) fn invalid(def: &keys::KeyDef, v: &str) -> NegotiationError {
    NegotiationError::InvalidValue {
        key: def.name.to_owned(),
        value: short(v),
        section: def.section,
    }
}

/// Checks a single (non-list) value against its key's type and range.
pub(in crate::login) fn check_value(def: &keys::KeyDef, v: &str) -> Result<(), NegotiationError> {
    let ok = match def.value {
        ValueType::Bool => text::parse_bool(v).is_ok(),
        ValueType::Number { min, max } => {
            matches!(text::parse_number(v), Ok(n) if (min..=max).contains(&n))
        }
        ValueType::Range { min, max } => {
            matches!(text::parse_range(v), Ok((lo, hi)) if lo >= min && hi <= max)
        }
        ValueType::List(known) | ValueType::Enum(known) => known.contains(&v),
        ValueType::Text => v.len() <= text::MAX_SIMPLE_VALUE_LEN,
        ValueType::IscsiName => !v.is_empty() && v.len() <= MAX_ISCSI_NAME_LEN,
        ValueType::LocalName => v.len() <= text::MAX_SIMPLE_VALUE_LEN,
        ValueType::Binary { max_len } => text::parse_binary(v, max_len).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(def, v))
    }
}
