//! The initiator's side of login negotiation: [`InitiatorConfig`] and
//! [`InitiatorNegotiator`].

use super::engine::{Engine, Role};
use super::error::NegotiationError;
use super::negotiated::Negotiated;
use super::values::check_value;
use super::values::{AuthMethod, OperationalParams, SessionType, TaskReporting};
use crate::login::keys;
use crate::prelude::*;

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
        // RFC 7143 section 13.21: SessionType is LO (leading only).
        if self.cfg.leading {
            out.push(
                self.engine
                    .declare("SessionType", self.cfg.session_type.as_str().to_owned()),
            );
        }
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
