//! Login-phase logic: the RFC 7143 section 13 key table, negotiation and CHAP.
//!
//! - [`keys`]: one declarative table of every RFC 7143 text key.
//! - [`negotiation`]: the initiator and target negotiation engines driven by
//!   that table, producing one [`negotiation::Negotiated`].
//! - [`chap`]: CHAP (RFC 7143 section 12.1.3) for both sides, mutual included.
//! - [`full_feature`]: text negotiation in Full Feature Phase (RFC 7143
//!   section 6.4).
//! - [`discovery`]: SendTargets responses (TargetName/TargetAddress groups).
//! - [`status`]: Login Response status class/detail (RFC 7143 section 11.13.5).

pub mod chap;
pub mod discovery;
pub mod full_feature;
pub mod keys;
pub mod negotiation;
pub mod status;

pub use chap::{ChapAlgorithm, ChapCredentials, ChapError, ChapSecret};
pub use negotiation::{
    AuthMethod, DigestType, InitiatorConfig, InitiatorNegotiator, LoginStage, Negotiated,
    NegotiationError, OperationalParams, SessionType, TargetConfig, TargetNegotiator,
    TaskReporting,
};
pub use status::{LoginStatus, StatusClass};
