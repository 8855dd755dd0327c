//! The negotiation engine shared by both roles: it answers the peer's
//! proposals with each key's result function, checks the peer's answers to
//! our proposals, and records declarations (RFC 7143 sections 6.2 and 13).

use crate::prelude::*;
use alloc::collections::{BTreeMap, BTreeSet};

use super::error::NegotiationError;
use super::values::{
    check_value, invalid, join, short, AuthMethod, OperationalParams, SessionType,
};
use crate::login::keys::{self, KeyDef, ResultRule, Senders, ValueType};
use crate::wire::text::{self, SpecialValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
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
pub(super) struct Engine {
    pub(super) role: Role,
    pub(super) params: OperationalParams,
    pub(super) auth_methods: Vec<AuthMethod>,
    pub(super) session_type: SessionType,
    /// Keys we proposed (not declarations), with the value offered.
    pub(super) offered: BTreeMap<&'static str, String>,
    /// Keys we declared.
    pub(super) declared: BTreeMap<&'static str, String>,
    /// Keys the peer sent (duplicate detection).
    pub(super) received: BTreeSet<String>,
    /// Agreed results of negotiated keys; absent = default.
    pub(super) results: BTreeMap<&'static str, String>,
    /// Declarations by the peer.
    pub(super) peer_declared: BTreeMap<&'static str, String>,
}

impl Engine {
    pub(super) fn new(
        role: Role,
        params: OperationalParams,
        auth_methods: Vec<AuthMethod>,
    ) -> Self {
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
    pub(super) fn offer(&mut self, name: &'static str) -> Option<(String, String)> {
        let def = keys::lookup(name)?;
        let v = self.our_value(def)?;
        if def.rule == ResultRule::Declarative {
            self.declared.insert(name, v.clone());
        } else {
            self.offered.insert(name, v.clone());
        }
        Some((name.to_owned(), v))
    }

    pub(super) fn declare(&mut self, name: &'static str, value: String) -> (String, String) {
        self.declared.insert(name, value.clone());
        (name.to_owned(), value)
    }

    /// Processes one batch of pairs from the peer, returning our replies.
    pub(super) fn handle(
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
    pub(super) fn pending(&self) -> Vec<&'static str> {
        self.offered.keys().copied().collect()
    }

    /// Value in effect for a negotiated key: an answer or our own proposal
    /// where the answer was optional (RFC 7143 section 6.2.2: AND offered No,
    /// OR offered Yes), else the default.
    pub(super) fn effective(&self, name: &'static str) -> Option<String> {
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

    pub(super) fn eff_num(&self, name: &'static str) -> u64 {
        self.effective(name)
            .and_then(|v| text::parse_number(&v).ok())
            .unwrap_or(0)
    }

    pub(super) fn eff_bool(&self, name: &'static str) -> bool {
        self.effective(name).as_deref() == Some("Yes")
    }

    pub(super) fn declared_num(&self, map_is_ours: bool, name: &'static str) -> Option<u64> {
        let map = if map_is_ours {
            &self.declared
        } else {
            &self.peer_declared
        };
        map.get(name).and_then(|v| text::parse_number(v).ok())
    }
}
