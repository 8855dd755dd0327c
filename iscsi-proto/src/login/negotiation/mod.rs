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
//!
//! The source has one file per part; every public item is re-exported here:
//!
//! - `values.rs`: the typed key values and [`OperationalParams`].
//! - `engine.rs`: the engine both roles share.
//! - `initiator.rs`: [`InitiatorConfig`] and [`InitiatorNegotiator`].
//! - `target.rs`: [`TargetConfig`] and [`TargetNegotiator`].
//! - `negotiated.rs`: the result, [`Negotiated`], and its integrity check.
//! - `error.rs`: [`NegotiationError`].

use crate::prelude::*;
mod engine;
mod error;
mod initiator;
mod negotiated;
mod target;
mod values;

pub use error::NegotiationError;
pub use initiator::{InitiatorConfig, InitiatorNegotiator};
pub use negotiated::Negotiated;
pub use target::{TargetConfig, TargetNegotiator};
pub(super) use values::{check_value, short};
pub use values::{
    AuthMethod, DigestType, LoginStage, OperationalParams, SessionType, TaskReporting,
    MAX_ISCSI_NAME_LEN,
};

use crate::wire::text;

/// Fuzzing entry point: runs `data` as text through both engines (as a
/// target response to a default initiator offer and as an initiator request
/// to a default target). Never panics.
pub fn fuzz_negotiation(data: &[u8]) {
    let Ok(pairs) = text::parse_pairs(data) else {
        return;
    };
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
