//! [`NegotiationError`], the ways a login or text negotiation fails, each
//! naming its key and RFC 7143 section.

use crate::prelude::*;
use thiserror::Error;

use crate::wire::text::TextError;

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
