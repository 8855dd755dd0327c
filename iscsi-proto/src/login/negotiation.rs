//! The text negotiation engines (RFC 7143 sections 6.2, 6.3 and 13), one for
//! each side, both driven by the key table in [`super::keys`].
//!
//! An engine consumes key=value pairs (from any number of PDUs, in any
//! split), answers the peer's proposals with the key's result function,
//! checks the peer's answers to our proposals, and finally yields one
//! [`Negotiated`] value that obeys the RFC's integrity rules.
//!
//! `CHAP_*` keys are skipped by the engines: the caller routes them to
//! [`super::chap`]. `AuthMethod` is negotiated here (list rule).

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::keys::{self, KeyDef, ResultRule, Senders, ValueType};
use crate::wire::text::{self, SpecialValue, TextError};

/// Largest iSCSI name: RFC 7143 section 4.2.7.1 "Initiators and targets
/// MUST support the receipt of iSCSI names of up to the maximum length of
/// 223 bytes" (section 4.2.7.2 bounds the UTF-8 encoding at 223 bytes).
pub const MAX_ISCSI_NAME_LEN: usize = 223;

/// A negotiation failure. Each names the key and the RFC 7143 section.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// RFC 7143 section 6.2: a key declared or negotiated twice "MUST be
    /// detected"; the initiator "MUST drop the connection", the target
    /// "MUST respond with Login reject (initiator error)".
    #[error("RFC 7143 section 6.2: key {key} sent more than once")]
    Duplicate {
        /// The key.
        key: String,
    },
    /// RFC 7143 section 6.2: "Reject", "Irrelevant" and "NotUnderstood"
    /// used as a proposed value is a protocol error.
    #[error("RFC 7143 section 6.2: reserved value {value} proposed for key {key}")]
    ReservedValue {
        /// The key.
        key: String,
        /// The reserved constant.
        value: String,
    },
    /// RFC 7143 section 6.2: keys of the RFC "MUST NOT be answered with
    /// NotUnderstood".
    #[error("RFC 7143 section 6.2: standard key {key} answered NotUnderstood")]
    NotUnderstood {
        /// The key.
        key: String,
    },
    /// The peer answered `Reject` and the default is not acceptable to us
    /// (RFC 7143 section 6.2: "the proposer MAY choose to terminate").
    #[error("RFC 7143 section {section}: key {key} rejected and its default {default} is not acceptable")]
    Rejected {
        /// The key.
        key: String,
        /// The default it falls back to.
        default: String,
        /// Section defining the key.
        section: &'static str,
    },
    /// A value is malformed or outside the key's range.
    #[error("RFC 7143 section {section}: invalid value {value:?} for key {key}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value (truncated to 64 bytes).
        value: String,
        /// Section defining the key.
        section: &'static str,
    },
    /// An answer the key's result function does not admit (RFC 7143
    /// section 6.2.2: "The selection by the acceptor of a value not
    /// admissible under the selection rules is considered a protocol error").
    #[error("RFC 7143 section {section}: answer {value:?} for key {key} is not admissible: we offered {offered:?}")]
    NotAdmissible {
        /// The key.
        key: String,
        /// The answer.
        value: String,
        /// What we offered.
        offered: String,
        /// Section defining the key.
        section: &'static str,
    },
    /// The key may not be sent by this side (RFC 7143 section 13 "Senders").
    #[error("RFC 7143 section {section}: key {key} may not be sent by the {sender}")]
    WrongSender {
        /// The key.
        key: String,
        /// "initiator" or "target".
        sender: &'static str,
        /// Section defining the key.
        section: &'static str,
    },
    /// RFC 7143 section 13.14: "FirstBurstLength MUST NOT exceed MaxBurstLength."
    #[error("RFC 7143 section 13.14: FirstBurstLength {first} exceeds MaxBurstLength {max}")]
    FirstBurstExceedsMaxBurst {
        /// Negotiated FirstBurstLength.
        first: u32,
        /// Negotiated MaxBurstLength.
        max: u32,
    },
    /// Our own configuration is outside the RFC ranges.
    #[error("RFC 7143 section {section}: configured {key} is invalid")]
    InvalidConfig {
        /// The key.
        key: &'static str,
        /// Section defining the key.
        section: &'static str,
    },
    /// The text itself is malformed.
    #[error(transparent)]
    Text(#[from] TextError),
}

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

    fn parse(s: &str) -> Option<Self> {
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

    fn parse(s: &str) -> Option<Self> {
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

fn join<T, F: Fn(&T) -> &'static str>(items: &[T], f: F) -> String {
    let v: Vec<&str> = items.iter().map(f).collect();
    v.join(",")
}

impl OperationalParams {
    /// Our value for a negotiated key, in wire form.
    fn value_of(&self, key: &str) -> Option<String> {
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

/// The outcome of a login negotiation: every operational value in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// HeaderDigest=CRC32C.
    pub header_digest: bool,
    /// DataDigest=CRC32C.
    pub data_digest: bool,
    /// MaxRecvDataSegmentLength declared by the initiator: the largest data
    /// segment the target may send on this connection (13.12).
    pub initiator_max_recv_data_segment_length: u32,
    /// MaxRecvDataSegmentLength declared by the target: the largest data
    /// segment the initiator may send on this connection (13.12).
    pub target_max_recv_data_segment_length: u32,
    /// MaxBurstLength (13.13).
    pub max_burst_length: u32,
    /// FirstBurstLength (13.14), never above `max_burst_length`.
    pub first_burst_length: u32,
    /// InitialR2T (13.10).
    pub initial_r2t: bool,
    /// ImmediateData (13.11).
    pub immediate_data: bool,
    /// MaxOutstandingR2T (13.17).
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder (13.18).
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder (13.19).
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel (13.20).
    pub error_recovery_level: u8,
    /// DefaultTime2Wait in seconds (13.15).
    pub default_time2wait: u16,
    /// DefaultTime2Retain in seconds (13.16).
    pub default_time2retain: u16,
    /// MaxConnections (13.2).
    pub max_connections: u16,
    /// TargetPortalGroupTag declared by the target (13.9).
    pub target_portal_group_tag: Option<u16>,
    /// TargetAlias (13.6).
    pub target_alias: Option<String>,
    /// InitiatorAlias (13.7).
    pub initiator_alias: Option<String>,
    /// InitiatorName (13.5).
    pub initiator_name: Option<String>,
    /// TargetName (13.4).
    pub target_name: Option<String>,
    /// SessionType (13.21).
    pub session_type: SessionType,
    /// AuthMethod chosen (12.1).
    pub auth_method: AuthMethod,
    /// iSCSIProtocolLevel (13.24).
    pub protocol_level: u8,
    /// TaskReporting (13.23).
    pub task_reporting: TaskReporting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Initiator,
    Target,
}

impl Role {
    fn peer_name(self) -> &'static str {
        match self {
            Role::Initiator => "target",
            Role::Target => "initiator",
        }
    }
}

pub(super) fn short(v: &str) -> String {
    let mut end = v.len().min(64);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v.get(..end).unwrap_or("").to_owned()
}

fn invalid(def: &KeyDef, v: &str) -> NegotiationError {
    NegotiationError::InvalidValue {
        key: def.name.to_owned(),
        value: short(v),
        section: def.section,
    }
}

/// Checks a single (non-list) value against its key's type and range.
pub(super) fn check_value(def: &KeyDef, v: &str) -> Result<(), NegotiationError> {
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

fn number(def: &KeyDef, v: &str) -> Result<u64, NegotiationError> {
    check_value(def, v)?;
    text::parse_number(v).map_err(|_| invalid(def, v))
}

fn boolean(def: &KeyDef, v: &str) -> Result<bool, NegotiationError> {
    text::parse_bool(v).map_err(|_| invalid(def, v))
}

/// Keys RFC 7143 added after RFC 3720 or obsoleted: an older peer may
/// legitimately not understand them, so `NotUnderstood` falls back to the
/// default instead of failing.
fn tolerate_not_understood(def: &KeyDef) -> bool {
    matches!(def.name, "iSCSIProtocolLevel" | "TaskReporting") || def.rule == ResultRule::Obsolete
}

/// The shared engine state; [`InitiatorNegotiator`] and
/// [`TargetNegotiator`] wrap it with a role.
#[derive(Debug, Clone)]
struct Engine {
    role: Role,
    params: OperationalParams,
    auth_methods: Vec<AuthMethod>,
    session_type: SessionType,
    /// Keys we proposed (not declarations), with the value offered.
    offered: BTreeMap<&'static str, String>,
    /// Keys we declared.
    declared: BTreeMap<&'static str, String>,
    /// Keys the peer sent (duplicate detection).
    received: BTreeSet<String>,
    /// Agreed results of negotiated keys; absent = default.
    results: BTreeMap<&'static str, String>,
    /// Declarations by the peer.
    peer_declared: BTreeMap<&'static str, String>,
}

impl Engine {
    fn new(role: Role, params: OperationalParams, auth_methods: Vec<AuthMethod>) -> Self {
        Engine {
            role,
            params,
            auth_methods,
            session_type: SessionType::Normal,
            offered: BTreeMap::new(),
            declared: BTreeMap::new(),
            received: BTreeSet::new(),
            results: BTreeMap::new(),
            peer_declared: BTreeMap::new(),
        }
    }

    fn our_value(&self, def: &KeyDef) -> Option<String> {
        if def.name == "AuthMethod" {
            return Some(join(&self.auth_methods, |a| a.as_str()));
        }
        self.params.value_of(def.name)
    }

    fn peer_may_send(&self, def: &KeyDef) -> bool {
        matches!(
            (def.senders, self.role),
            (Senders::Both, _)
                | (Senders::Initiator, Role::Target)
                | (Senders::Target, Role::Initiator)
        )
    }

    /// Records a proposal of ours and returns the pair to send.
    fn offer(&mut self, name: &'static str) -> Option<(String, String)> {
        let def = keys::lookup(name)?;
        let v = self.our_value(def)?;
        if def.rule == ResultRule::Declarative {
            self.declared.insert(name, v.clone());
        } else {
            self.offered.insert(name, v.clone());
        }
        Some((name.to_owned(), v))
    }

    fn declare(&mut self, name: &'static str, value: String) -> (String, String) {
        self.declared.insert(name, value.clone());
        (name.to_owned(), value)
    }

    /// Processes one batch of pairs from the peer, returning our replies.
    fn handle(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<Vec<(String, String)>, NegotiationError> {
        // SessionType decides relevance of other keys in the same batch.
        if self.role == Role::Target {
            if let Some((_, v)) = pairs.iter().find(|(k, _)| k == "SessionType") {
                self.session_type = match v.as_str() {
                    "Discovery" => SessionType::Discovery,
                    _ => SessionType::Normal,
                };
            }
        }
        let mut replies = Vec::new();
        for (k, v) in pairs {
            text::validate_key(k.as_bytes())?;
            if k.starts_with("CHAP_") {
                continue;
            }
            // RFC 7143 section 6.2: "Neither the initiator nor the target
            // should attempt to declare or negotiate a parameter more than
            // once during login ... An attempt to renegotiate/redeclare
            // parameters not specifically allowed MUST be detected".
            if !self.received.insert(k.clone()) && !keys::may_repeat(k) {
                return Err(NegotiationError::Duplicate { key: k.clone() });
            }
            let special = text::special_value(v);
            let Some(def) = keys::lookup(k) else {
                // RFC 7143 section 6.2: "the answer for a key not understood
                // MUST be key=NotUnderstood" (X- and X# keys included, 13.22).
                if matches!(
                    special,
                    Some(
                        SpecialValue::NotUnderstood
                            | SpecialValue::Irrelevant
                            | SpecialValue::Reject
                    )
                ) {
                    return Err(NegotiationError::ReservedValue {
                        key: k.clone(),
                        value: v.clone(),
                    });
                }
                replies.push((k.clone(), "NotUnderstood".to_owned()));
                continue;
            };
            if let Some(ours) = self.offered.get(def.name).cloned() {
                // An answer to our proposal.
                self.offered.remove(def.name);
                self.accept_answer(def, &ours, v)?;
                continue;
            }
            // A proposal or declaration by the peer.
            // RFC 7143 section 6.2: reserved constants MUST NOT be proposed.
            if matches!(
                special,
                Some(SpecialValue::NotUnderstood | SpecialValue::Irrelevant | SpecialValue::Reject)
            ) {
                return Err(NegotiationError::ReservedValue {
                    key: k.clone(),
                    value: short(v),
                });
            }
            if !self.peer_may_send(def) {
                return Err(NegotiationError::WrongSender {
                    key: k.clone(),
                    sender: self.role.peer_name(),
                    section: def.section,
                });
            }
            if let Some(reply) = self.answer_proposal(def, v)? {
                replies.push((def.name.to_owned(), reply));
            }
        }
        Ok(replies)
    }

    /// We are the acceptor for `def` proposed with `v`: returns the reply.
    fn answer_proposal(
        &mut self,
        def: &'static KeyDef,
        v: &str,
    ) -> Result<Option<String>, NegotiationError> {
        match def.rule {
            ResultRule::Auth => Ok(None),
            ResultRule::Declarative => {
                check_value(def, v)?;
                if def.name == "SessionType" {
                    self.session_type = if v == "Discovery" {
                        SessionType::Discovery
                    } else {
                        SessionType::Normal
                    };
                }
                self.peer_declared.insert(def.name, v.to_owned());
                Ok(None)
            }
            // RFC 7143 section 13.25: "When an IFMarker or OFMarker key is
            // received, a compliant iSCSI implementation SHOULD respond with
            // the constant "Reject" value" (the same for IFMarkInt/OFMarkInt).
            ResultRule::Obsolete => Ok(Some("Reject".to_owned())),
            _ if def.irrelevant_in_discovery && self.session_type == SessionType::Discovery => {
                // RFC 7143 section 13: "Irrelevant when: SessionType=Discovery";
                // section 6.2: "the acceptor may answer with the constant
                // Irrelevant".
                Ok(Some("Irrelevant".to_owned()))
            }
            ResultRule::List => {
                let ours = self.our_value(def).unwrap_or_default();
                let supported: Vec<&str> = ours.split(',').collect();
                // RFC 7143 section 6.2.1: "The responding party MUST respond
                // with the same key and the first value that it supports ...
                // selected from the originator list"; unknown values are
                // ignored; with none acceptable "it may use the constant Reject".
                let choice = text::parse_list(v)
                    .ok()
                    .and_then(|list| list.into_iter().find(|c| supported.contains(c)))
                    .map(str::to_owned);
                match choice {
                    Some(c) => {
                        self.results.insert(def.name, c.clone());
                        Ok(Some(c))
                    }
                    None => Ok(Some("Reject".to_owned())),
                }
            }
            ResultRule::Min | ResultRule::Max => {
                let ours = self
                    .our_value(def)
                    .and_then(|o| text::parse_number(&o).ok())
                    .unwrap_or(0);
                // RFC 7143 section 6.2.2: "Proposing a value not admissible
                // (e.g., not within the specified bounds) MAY be answered
                // with the constant Reject".
                let Ok(theirs) = number(def, v) else {
                    return Ok(Some("Reject".to_owned()));
                };
                let r = if def.rule == ResultRule::Min {
                    ours.min(theirs)
                } else {
                    ours.max(theirs)
                };
                self.results.insert(def.name, r.to_string());
                Ok(Some(r.to_string()))
            }
            ResultRule::And | ResultRule::Or => {
                let ours = self
                    .our_value(def)
                    .and_then(|o| text::parse_bool(&o).ok())
                    .unwrap_or(false);
                let Ok(theirs) = boolean(def, v) else {
                    return Ok(Some("Reject".to_owned()));
                };
                // RFC 7143 section 6.2.2: the answer is the Boolean function
                // "of the value received, and the value that the accepting
                // party would have selected".
                let r = if def.rule == ResultRule::And {
                    ours && theirs
                } else {
                    ours || theirs
                };
                let r = text::encode_bool(r).to_owned();
                self.results.insert(def.name, r.clone());
                Ok(Some(r))
            }
        }
    }

    /// The peer answered our proposal `ours` for `def` with `v`.
    fn accept_answer(
        &mut self,
        def: &'static KeyDef,
        ours: &str,
        v: &str,
    ) -> Result<(), NegotiationError> {
        let not_admissible = || NegotiationError::NotAdmissible {
            key: def.name.to_owned(),
            value: short(v),
            offered: short(ours),
            section: def.section,
        };
        match text::special_value(v) {
            Some(SpecialValue::Reject) => {
                // RFC 7143 section 6.2: "If the acceptor sends Reject as an
                // answer, the negotiated key is left at its current value
                // (or default, if no value was set). If the current value
                // is not acceptable to the proposer ... the proposer MAY
                // choose to terminate".
                if def.rule == ResultRule::List {
                    let default = def.default.unwrap_or("None");
                    if !ours.split(',').any(|o| o == default) {
                        return Err(NegotiationError::Rejected {
                            key: def.name.to_owned(),
                            default: default.to_owned(),
                            section: def.section,
                        });
                    }
                }
                self.results.remove(def.name);
                return Ok(());
            }
            Some(SpecialValue::Irrelevant) => {
                // RFC 7143 section 6.2: "the negotiation is not considered
                // to have failed if the answer is Irrelevant".
                self.results.remove(def.name);
                return Ok(());
            }
            Some(SpecialValue::NotUnderstood) => {
                if tolerate_not_understood(def) {
                    self.results.remove(def.name);
                    return Ok(());
                }
                // RFC 7143 section 6.2: "If used as specified, these keys
                // MUST NOT be answered with NotUnderstood."
                return Err(NegotiationError::NotUnderstood {
                    key: def.name.to_owned(),
                });
            }
            _ => {}
        }
        match def.rule {
            ResultRule::List => {
                // RFC 7143 section 6.2.1: "The selection of a value not
                // proposed MUST be handled as a protocol error."
                if v.contains(',') || !ours.split(',').any(|o| o == v) {
                    return Err(not_admissible());
                }
                self.results.insert(def.name, v.to_owned());
            }
            ResultRule::Min | ResultRule::Max => {
                let theirs = number(def, v)?;
                let ours_n = text::parse_number(ours).map_err(|_| not_admissible())?;
                // RFC 7143 section 6.2.2: the result of "Minimum" can never
                // exceed what we offered, of "Maximum" never fall below it.
                let ok = if def.rule == ResultRule::Min {
                    theirs <= ours_n
                } else {
                    theirs >= ours_n
                };
                if !ok {
                    return Err(not_admissible());
                }
                self.results.insert(def.name, theirs.to_string());
            }
            ResultRule::And | ResultRule::Or => {
                let theirs = boolean(def, v)?;
                let ours_b = text::parse_bool(ours).map_err(|_| not_admissible())?;
                // RFC 7143 section 6.2.2: AND with our No can only be No;
                // OR with our Yes can only be Yes.
                if def.rule == ResultRule::And && !ours_b && theirs {
                    return Err(not_admissible());
                }
                if def.rule == ResultRule::Or && ours_b && !theirs {
                    return Err(not_admissible());
                }
                self.results
                    .insert(def.name, text::encode_bool(theirs).to_owned());
            }
            ResultRule::Obsolete => {
                // We only ever offer the markers as No (13.25); an answer of
                // Yes would turn markers on, which this stack does not do.
                if def.value == ValueType::Bool && v != "No" {
                    return Err(not_admissible());
                }
            }
            ResultRule::Declarative | ResultRule::Auth => {}
        }
        Ok(())
    }

    /// Keys we proposed that have had no answer yet.
    fn pending(&self) -> Vec<&'static str> {
        self.offered.keys().copied().collect()
    }

    /// Value in effect for a negotiated key: an answer or our own proposal
    /// where the answer was optional (RFC 7143 section 6.2.2: AND offered No,
    /// OR offered Yes), else the default.
    fn effective(&self, name: &'static str) -> Option<String> {
        if let Some(v) = self.results.get(name) {
            return Some(v.clone());
        }
        if let (Some(def), Some(ours)) = (keys::lookup(name), self.offered.get(name)) {
            let determined = match def.rule {
                ResultRule::And => ours == "No",
                ResultRule::Or => ours == "Yes",
                _ => false,
            };
            if determined {
                return Some(ours.clone());
            }
        }
        keys::lookup(name)
            .and_then(|d| d.default)
            .map(str::to_owned)
    }

    fn eff_num(&self, name: &'static str) -> u64 {
        self.effective(name)
            .and_then(|v| text::parse_number(&v).ok())
            .unwrap_or(0)
    }

    fn eff_bool(&self, name: &'static str) -> bool {
        self.effective(name).as_deref() == Some("Yes")
    }

    fn declared_num(&self, map_is_ours: bool, name: &'static str) -> Option<u64> {
        let map = if map_is_ours {
            &self.declared
        } else {
            &self.peer_declared
        };
        map.get(name).and_then(|v| text::parse_number(v).ok())
    }

    fn negotiated(&self) -> Result<Negotiated, NegotiationError> {
        let discovery = self.session_type == SessionType::Discovery;
        // In a discovery session the keys "Irrelevant when
        // SessionType=Discovery" keep their defaults.
        let eff_num = |name: &'static str| -> u64 {
            match keys::lookup(name) {
                Some(def) if discovery && def.irrelevant_in_discovery => def
                    .default
                    .and_then(|d| text::parse_number(d).ok())
                    .unwrap_or(0),
                _ => self.eff_num(name),
            }
        };
        let eff_bool = |name: &'static str| -> bool {
            match keys::lookup(name) {
                Some(def) if discovery && def.irrelevant_in_discovery => def.default == Some("Yes"),
                _ => self.eff_bool(name),
            }
        };
        let default_mrdsl = 8192u64;
        let (init_mrdsl, tgt_mrdsl) = match self.role {
            Role::Initiator => (
                self.declared_num(true, "MaxRecvDataSegmentLength"),
                self.declared_num(false, "MaxRecvDataSegmentLength"),
            ),
            Role::Target => (
                self.declared_num(false, "MaxRecvDataSegmentLength"),
                self.declared_num(true, "MaxRecvDataSegmentLength"),
            ),
        };
        let (ours_decl, peer_decl) = (&self.declared, &self.peer_declared);
        let decl = |name: &'static str| -> Option<String> {
            ours_decl.get(name).or_else(|| peer_decl.get(name)).cloned()
        };
        // Every number below has been range-checked against the key table,
        // so the narrowing conversions cannot fail; saturate anyway.
        let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let to_u16 = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
        let to_u8 = |v: u64| u8::try_from(v).unwrap_or(u8::MAX);
        let n = Negotiated {
            header_digest: self.effective("HeaderDigest").as_deref() == Some("CRC32C"),
            data_digest: self.effective("DataDigest").as_deref() == Some("CRC32C"),
            initiator_max_recv_data_segment_length: to_u32(init_mrdsl.unwrap_or(default_mrdsl)),
            target_max_recv_data_segment_length: to_u32(tgt_mrdsl.unwrap_or(default_mrdsl)),
            max_burst_length: to_u32(eff_num("MaxBurstLength")),
            first_burst_length: to_u32(eff_num("FirstBurstLength")),
            initial_r2t: eff_bool("InitialR2T"),
            immediate_data: eff_bool("ImmediateData"),
            max_outstanding_r2t: to_u16(eff_num("MaxOutstandingR2T")),
            data_pdu_in_order: eff_bool("DataPDUInOrder"),
            data_sequence_in_order: eff_bool("DataSequenceInOrder"),
            error_recovery_level: to_u8(eff_num("ErrorRecoveryLevel")),
            default_time2wait: to_u16(eff_num("DefaultTime2Wait")),
            default_time2retain: to_u16(eff_num("DefaultTime2Retain")),
            max_connections: to_u16(eff_num("MaxConnections")),
            target_portal_group_tag: decl("TargetPortalGroupTag")
                .and_then(|v| text::parse_number(&v).ok())
                .map(to_u16),
            target_alias: decl("TargetAlias"),
            initiator_alias: decl("InitiatorAlias"),
            initiator_name: decl("InitiatorName"),
            target_name: decl("TargetName"),
            session_type: self.session_type,
            auth_method: self
                .effective("AuthMethod")
                .and_then(|v| AuthMethod::parse(&v))
                .unwrap_or_default(),
            protocol_level: to_u8(eff_num("iSCSIProtocolLevel")),
            task_reporting: self
                .effective("TaskReporting")
                .and_then(|v| TaskReporting::parse(&v))
                .unwrap_or_default(),
        };
        // RFC 7143 section 13.14: "FirstBurstLength MUST NOT exceed
        // MaxBurstLength." Section 6.2: "An iSCSI target MUST perform
        // integrity checking before the new parameters take effect. An
        // initiator MAY perform integrity checking." Both sides do here.
        if n.first_burst_length > n.max_burst_length {
            return Err(NegotiationError::FirstBurstExceedsMaxBurst {
                first: n.first_burst_length,
                max: n.max_burst_length,
            });
        }
        Ok(n)
    }
}

/// Initiator-side configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatorConfig {
    /// InitiatorName (13.5), required.
    pub initiator_name: String,
    /// InitiatorAlias (13.7), optional.
    pub initiator_alias: Option<String>,
    /// TargetName (13.4); required for a Normal session.
    pub target_name: Option<String>,
    /// SessionType (13.21).
    pub session_type: SessionType,
    /// AuthMethod preference list (12.1); default `[None]`.
    pub auth_methods: Vec<AuthMethod>,
    /// True for the leading connection of a session: only it may carry the
    /// LO (leading-only) keys.
    pub leading: bool,
    /// Desired operational values.
    pub params: OperationalParams,
}

impl InitiatorConfig {
    /// A leading-connection configuration with RFC defaults.
    pub fn new(initiator_name: impl Into<String>, session_type: SessionType) -> Self {
        InitiatorConfig {
            initiator_name: initiator_name.into(),
            initiator_alias: None,
            target_name: None,
            session_type,
            auth_methods: vec![AuthMethod::None],
            leading: true,
            params: OperationalParams::default(),
        }
    }
}

/// The keys an initiator offers in the operational stage of a discovery
/// session: the only ones not "Irrelevant when SessionType=Discovery".
const DISCOVERY_KEYS: &[&str] = &[
    "HeaderDigest",
    "DataDigest",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "ErrorRecoveryLevel",
    "MaxRecvDataSegmentLength",
];

const NORMAL_KEYS: &[&str] = &[
    "HeaderDigest",
    "DataDigest",
    "MaxConnections",
    "InitialR2T",
    "ImmediateData",
    "MaxRecvDataSegmentLength",
    "MaxBurstLength",
    "FirstBurstLength",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "MaxOutstandingR2T",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "ErrorRecoveryLevel",
];

/// The initiator's negotiation engine.
///
/// Use: send [`login_keys`](Self::login_keys) in the first Login Request,
/// plus [`security_offer`](Self::security_offer) (security stage) or
/// [`operational_offer`](Self::operational_offer); feed every Login
/// Response's pairs to [`handle_response`](Self::handle_response) and send
/// its replies; when the target transits to Full Feature Phase call
/// [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct InitiatorNegotiator {
    cfg: InitiatorConfig,
    engine: Engine,
}

impl InitiatorNegotiator {
    /// Validates the configuration and builds the engine.
    pub fn new(cfg: InitiatorConfig) -> Result<Self, NegotiationError> {
        cfg.params.validate()?;
        let name_def = keys::lookup("InitiatorName");
        if let Some(def) = name_def {
            check_value(def, &cfg.initiator_name).map_err(|_| NegotiationError::InvalidConfig {
                key: "InitiatorName",
                section: "13.5",
            })?;
        }
        // RFC 7143 section 6.3.1: "For any connection within a session whose
        // type is not Discovery, the first Login Request MUST also include
        // the TargetName key=value pair."
        if cfg.session_type == SessionType::Normal && cfg.target_name.is_none() {
            return Err(NegotiationError::InvalidConfig {
                key: "TargetName",
                section: "13.4",
            });
        }
        if cfg.auth_methods.is_empty() {
            return Err(NegotiationError::InvalidConfig {
                key: "AuthMethod",
                section: "12.1",
            });
        }
        let mut engine = Engine::new(
            Role::Initiator,
            cfg.params.clone(),
            cfg.auth_methods.clone(),
        );
        engine.session_type = cfg.session_type;
        Ok(InitiatorNegotiator { cfg, engine })
    }

    /// Declarations for the first Login Request: InitiatorName,
    /// InitiatorAlias, SessionType and (Normal sessions) TargetName
    /// (RFC 7143 section 6.3.1: "The initial Login Request of any connection
    /// MUST include the InitiatorName key=value pair ... the first Login
    /// Request MUST also include the TargetName key=value pair" for
    /// sessions that are not Discovery).
    pub fn login_keys(&mut self) -> Vec<(String, String)> {
        let mut out = vec![self
            .engine
            .declare("InitiatorName", self.cfg.initiator_name.clone())];
        if let Some(alias) = &self.cfg.initiator_alias {
            out.push(self.engine.declare("InitiatorAlias", alias.clone()));
        }
        out.push(
            self.engine
                .declare("SessionType", self.cfg.session_type.as_str().to_owned()),
        );
        if self.cfg.session_type == SessionType::Normal {
            if let Some(t) = &self.cfg.target_name {
                out.push(self.engine.declare("TargetName", t.clone()));
            }
        }
        out
    }

    /// The security-stage proposal: `AuthMethod=<list>` (RFC 7143 section 12.1).
    pub fn security_offer(&mut self) -> Vec<(String, String)> {
        self.engine.offer("AuthMethod").into_iter().collect()
    }

    /// The operational-stage proposals and declarations. A discovery
    /// session carries only the keys relevant to it; a non-leading
    /// connection only the connection-scope keys.
    pub fn operational_offer(&mut self) -> Vec<(String, String)> {
        let list: &[&'static str] = match self.cfg.session_type {
            SessionType::Discovery => DISCOVERY_KEYS,
            SessionType::Normal => NORMAL_KEYS,
        };
        let mut names: Vec<&'static str> = list.to_vec();
        if self.cfg.session_type == SessionType::Normal {
            if self.cfg.params.protocol_level != 1 {
                names.push("iSCSIProtocolLevel");
            }
            if self.cfg.params.task_reporting != [TaskReporting::Rfc3720] {
                names.push("TaskReporting");
            }
        }
        if self.cfg.params.offer_markers {
            names.push("IFMarker");
            names.push("OFMarker");
        }
        let leading = self.cfg.leading;
        names
            .into_iter()
            .filter(|n| {
                leading || keys::lookup(n).is_some_and(|d| d.scope == keys::Scope::Connection)
            })
            .filter_map(|n| self.engine.offer(n))
            .collect()
    }

    /// Consumes the pairs of one Login (or Text) Response, in any split, and
    /// returns the pairs to send back (answers to keys the target proposed,
    /// `NotUnderstood` for unknown and X- keys). `CHAP_*` keys are skipped.
    pub fn handle_response(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<Vec<(String, String)>, NegotiationError> {
        self.engine.handle(pairs)
    }

    /// Keys we proposed that the target has not answered yet; the initiator
    /// should not ask to transit while this is non-empty.
    pub fn pending_answers(&self) -> Vec<&'static str> {
        self.engine.pending()
    }

    /// The AuthMethod the target selected, once answered.
    pub fn auth_method(&self) -> Option<AuthMethod> {
        self.engine
            .results
            .get("AuthMethod")
            .and_then(|v| AuthMethod::parse(v))
    }

    /// The values in effect. Keys proposed but never answered keep their
    /// defaults (or our value where RFC 7143 section 6.2.2 makes the answer
    /// optional); see [`pending_answers`](Self::pending_answers).
    pub fn finish(&self) -> Result<Negotiated, NegotiationError> {
        self.engine.negotiated()
    }
}

/// Target-side configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// AuthMethod values the target accepts (12.1); default `[None]`.
    pub auth_methods: Vec<AuthMethod>,
    /// TargetPortalGroupTag (13.9).
    pub target_portal_group_tag: u16,
    /// TargetAlias (13.6), optional.
    pub target_alias: Option<String>,
    /// The target's values.
    pub params: OperationalParams,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            auth_methods: vec![AuthMethod::None],
            target_portal_group_tag: 1,
            target_alias: None,
            params: OperationalParams::default(),
        }
    }
}

/// The target's negotiation engine: answers the initiator's offers from the
/// target's configuration with the same key table.
#[derive(Debug, Clone)]
pub struct TargetNegotiator {
    cfg: TargetConfig,
    engine: Engine,
    sent_tpgt: bool,
    sent_op_declarations: bool,
}

impl TargetNegotiator {
    /// Validates the configuration and builds the engine.
    pub fn new(cfg: TargetConfig) -> Result<Self, NegotiationError> {
        cfg.params.validate()?;
        let engine = Engine::new(Role::Target, cfg.params.clone(), cfg.auth_methods.clone());
        Ok(TargetNegotiator {
            cfg,
            engine,
            sent_tpgt: false,
            sent_op_declarations: false,
        })
    }

    /// Answers one Login Request's pairs (call it once per complete LTDS,
    /// i.e. after the request with C=0). The reply includes, once,
    /// TargetPortalGroupTag (RFC 7143 section 6.3.1: the target "MUST return
    /// the TargetPortalGroupTag key with the first Login Response PDU with
    /// which it is allowed to do so") and, in the operational stage, our
    /// MaxRecvDataSegmentLength declaration and TargetAlias. `CHAP_*` keys
    /// are skipped.
    pub fn handle_request(
        &mut self,
        pairs: &[(String, String)],
        stage: LoginStage,
    ) -> Result<Vec<(String, String)>, NegotiationError> {
        let mut out = self.engine.handle(pairs)?;
        if !self.sent_tpgt {
            self.sent_tpgt = true;
            out.push(self.engine.declare(
                "TargetPortalGroupTag",
                self.cfg.target_portal_group_tag.to_string(),
            ));
        }
        if stage == LoginStage::Operational && !self.sent_op_declarations {
            self.sent_op_declarations = true;
            out.push(self.engine.declare(
                "MaxRecvDataSegmentLength",
                self.cfg.params.max_recv_data_segment_length.to_string(),
            ));
            if let Some(alias) = &self.cfg.target_alias {
                out.push(self.engine.declare("TargetAlias", alias.clone()));
            }
        }
        if stage == LoginStage::Operational {
            if let Some(offer) = self.first_burst_offer() {
                out.push(offer);
            }
        }
        Ok(out)
    }

    /// RFC 7143 section 13.14: "FirstBurstLength MUST NOT exceed
    /// MaxBurstLength." When the initiator negotiated MaxBurstLength below
    /// the FirstBurstLength in effect (its default 65536) without
    /// negotiating FirstBurstLength, the target proposes FirstBurstLength
    /// itself, at most the MaxBurstLength: the result of this Min key
    /// (section 6.2.2) cannot exceed the offer, so the pair stays valid.
    /// The login must not transit until the initiator answers (see
    /// [`pending_answers`](Self::pending_answers)).
    fn first_burst_offer(&mut self) -> Option<(String, String)> {
        const FBL: &str = "FirstBurstLength";
        let e = &self.engine;
        if e.session_type == SessionType::Discovery
            || !e.results.contains_key("MaxBurstLength")
            || e.results.contains_key(FBL)
            || e.offered.contains_key(FBL)
            || e.received.contains(FBL)
        {
            return None;
        }
        let max_burst = e.eff_num("MaxBurstLength");
        if e.eff_num(FBL) <= max_burst {
            return None;
        }
        let v = u64::from(self.cfg.params.first_burst_length).min(max_burst);
        self.engine.offered.insert(FBL, v.to_string());
        Some((FBL.to_owned(), v.to_string()))
    }

    /// Keys the target proposed that the initiator has not answered yet;
    /// the target does not transit while this is non-empty (RFC 7143
    /// section 6.2: every offer is answered).
    pub fn pending_answers(&self) -> Vec<&'static str> {
        self.engine.pending()
    }

    /// The SessionType the initiator declared (Normal until declared).
    pub fn session_type(&self) -> SessionType {
        self.engine.session_type
    }

    /// The InitiatorName the initiator declared.
    pub fn initiator_name(&self) -> Option<&str> {
        self.engine
            .peer_declared
            .get("InitiatorName")
            .map(String::as_str)
    }

    /// The TargetName the initiator asked for.
    pub fn target_name(&self) -> Option<&str> {
        self.engine
            .peer_declared
            .get("TargetName")
            .map(String::as_str)
    }

    /// The AuthMethod selected, once the initiator offered it.
    pub fn auth_method(&self) -> Option<AuthMethod> {
        self.engine
            .results
            .get("AuthMethod")
            .and_then(|v| AuthMethod::parse(v))
    }

    /// The values in effect, integrity-checked (RFC 7143 section 6.2: "An
    /// iSCSI target MUST perform integrity checking before the new
    /// parameters take effect").
    pub fn finish(&self) -> Result<Negotiated, NegotiationError> {
        self.engine.negotiated()
    }
}

/// Fuzzing entry point: runs `data` as text through both engines (as a
/// target response to a default initiator offer and as an initiator request
/// to a default target) and the SendTargets parser. Never panics.
pub fn fuzz_negotiation(data: &[u8]) {
    let Ok(pairs) = text::parse_pairs(data) else {
        return;
    };
    let _ = super::discovery::parse_send_targets(&pairs);
    let mut cfg = InitiatorConfig::new("iqn.2024-01.test:init", SessionType::Normal);
    cfg.target_name = Some("iqn.2024-01.test:tgt".to_owned());
    if let Ok(mut ini) = InitiatorNegotiator::new(cfg) {
        let _ = ini.login_keys();
        let _ = ini.operational_offer();
        if ini.handle_response(&pairs).is_ok() {
            let _ = ini.finish();
        }
    }
    if let Ok(mut tgt) = TargetNegotiator::new(TargetConfig::default()) {
        if tgt.handle_request(&pairs, LoginStage::Operational).is_ok() {
            let _ = tgt.finish();
        }
    }
}
