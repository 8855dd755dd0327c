//! The target's side of login negotiation: [`TargetConfig`] and
//! [`TargetNegotiator`].

use super::engine::{Engine, Role};
use super::error::NegotiationError;
use super::negotiated::Negotiated;
use super::values::{AuthMethod, LoginStage, OperationalParams, SessionType};
use crate::prelude::*;

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
