//! [`Negotiated`], the outcome of a login negotiation, and how the engine
//! computes it and checks its integrity (RFC 7143 sections 6.2 and 13.14).

use super::engine::{Engine, Role};
use super::error::NegotiationError;
use super::values::{AuthMethod, SessionType, TaskReporting};
use crate::login::keys;
use crate::prelude::*;
use crate::wire::text;

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

impl Engine {
    pub(super) fn negotiated(&self) -> Result<Negotiated, NegotiationError> {
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
