//! Text negotiation in Full Feature Phase, initiator side (RFC 7143 sections
//! 6.4, 11.10, 11.11 and the "Use" column of the key table in section 13).
//!
//! Pure functions, no session state: the session feeds the key=value pairs
//! of a Text Response (reassembled across C=1 PDUs) to
//! [`text_response`] and sends the replies it returns in its next Text
//! Request; [`declare_max_recv_data_segment_length`] builds our own
//! declaration. SendTargets responses are not negotiations and go through
//! [`super::discovery`] instead.
//!
//! Which keys may appear in Full Feature Phase (section 13: "Keys that can
//! only be used during login have the use: IO (initialize only), while
//! those that can be used in both the Login Phase and Full Feature Phase
//! have the use: ALL"; LO keys belong to the leading login, FFPO keys to
//! Full Feature Phase only):
//!
//! | key (section)                        | from the target in FFP            |
//! |--------------------------------------|-----------------------------------|
//! | MaxRecvDataSegmentLength (13.12)     | applied, no reply (declarative)   |
//! | TargetAlias (13.6)                   | applied, no reply (declarative)   |
//! | TargetAddress (13.8)                 | accepted, no reply (declarative)  |
//! | other target declarations, IO/LO     | `Irrelevant` (6.2), not applied   |
//! | negotiated IO/LO keys, security keys | `Reject` (6.2.1), value unchanged |
//! | obsoleted marker keys (13.25)        | `Reject`                          |
//! | unknown, `X-` and `X#` keys (13.22)  | `NotUnderstood` (6.2)             |
//! | initiator-only keys (13 "Senders")   | error: `WrongSender`              |

use super::keys::{self, KeyDef, ResultRule, Senders, Usage, MAX_DATA_LEN};
use super::negotiation::{check_value, short, Negotiated, NegotiationError};
use crate::prelude::*;
use crate::wire::text::{self, SpecialValue};

/// What the initiator does with one key a target sent in Full Feature
/// Phase (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// A declaration allowed in Full Feature Phase: validate, apply.
    Apply,
    /// A declaration that only has meaning during login: `Irrelevant`.
    Irrelevant,
    /// A negotiation we may not take part in now: `Reject`.
    Reject,
}

/// RFC 7143 section 13 ("Use" and "Senders") applied to a key the target
/// sent during Full Feature Phase.
fn disposition(def: &KeyDef) -> Result<Disposition, NegotiationError> {
    // RFC 7143 section 13 "Senders": a key only the initiator may send.
    if def.senders == Senders::Initiator {
        return Err(NegotiationError::WrongSender {
            key: def.name.to_owned(),
            sender: "target",
            section: def.section,
        });
    }
    Ok(match (def.usage, def.rule) {
        // RFC 7143 section 13.25: for the obsoleted marker keys a responder
        // "SHOULD respond with the constant Reject" (MUST for the
        // intervals), never NotUnderstood.
        (_, ResultRule::Obsolete) => Disposition::Reject,
        // "Use: ALL" declarations (13.6, 13.8, 13.12).
        (Usage::All | Usage::FullFeatureOnly, ResultRule::Declarative) => Disposition::Apply,
        // A login-only declaration: RFC 7143 section 6.2, "If a specific
        // key is not relevant for the current negotiation, the acceptor may
        // answer with the constant Irrelevant for all types of negotiation."
        (_, ResultRule::Declarative) => Disposition::Irrelevant,
        // Everything else is a negotiation (or a security exchange) that
        // RFC 7143 section 13 confines to the Login Phase; section 6.2.1:
        // an acceptor that "is not allowed to use any of the proposed
        // options ... may use the constant Reject".
        _ => Disposition::Reject,
    })
}

/// Answers the key=value pairs a target sent in a Text Response during Full
/// Feature Phase (RFC 7143 section 6.4), as the initiator.
///
/// `negotiated` is what the login agreed; `pairs` is the complete text of
/// one Text Response (the session reassembles C=1 PDUs first, section
/// 11.11.2), in order.
///
/// Returns the updated parameters and our replies, in the order of the
/// keys they answer (empty when nothing needs an answer):
///
/// - MaxRecvDataSegmentLength (13.12, "Use: ALL, Declarative") updates
///   [`Negotiated::target_max_recv_data_segment_length`]: the largest data
///   segment we may send from then on. TargetAlias (13.6) updates
///   [`Negotiated::target_alias`]. TargetAddress (13.8) is accepted
///   without effect. None of these get a reply.
/// - Login-only declarations (TargetPortalGroupTag, TargetName) are
///   answered `Irrelevant` and not applied (section 6.2).
/// - Negotiated keys that are LO or IO (MaxBurstLength, HeaderDigest,
///   ErrorRecoveryLevel, ...), security keys (AuthMethod, CHAP_*) and the
///   obsoleted marker keys (13.25) are answered `Reject` (section 6.2.1);
///   their values stay as the login negotiated them.
/// - Unknown keys, `X-` and `X#` keys are answered `NotUnderstood`
///   (section 6.2: "the answer for a key not understood MUST be
///   key=NotUnderstood").
///
/// # Errors
///
/// A protocol error of the target, after which the session should reset
/// the negotiation or drop the connection (section 6.4):
/// [`NegotiationError::Text`] for an invalid key name (section 6.1),
/// [`NegotiationError::Duplicate`] for a key sent twice (section 6.4;
/// TargetAddress may repeat), [`NegotiationError::ReservedValue`] for
/// `Reject`, `Irrelevant` or `NotUnderstood` used as a proposed or declared
/// value (section 6.2), [`NegotiationError::WrongSender`] for an
/// initiator-only key (InitiatorName, InitiatorAlias, SessionType,
/// SendTargets; section 13 "Senders"), and
/// [`NegotiationError::InvalidValue`] for a malformed value of a key we
/// apply (e.g. MaxRecvDataSegmentLength outside 512..=2^24-1).
///
/// # For the caller
///
/// - RFC 7143 section 6.4: "Targets MUST NOT submit parameters that require
///   an additional initiator Text request in a Text response with the F bit
///   set to 1": non-empty replies to a Text Response with F=1 are the
///   target's protocol error (the session decides how to report it).
/// - Section 6.4: "Parameters negotiated by a text exchange negotiation
///   sequence only become effective after the negotiation sequence is
///   completed": keep using the old values until the Text Response with
///   F=1 ends the sequence, then switch to the returned [`Negotiated`].
/// - Duplicates are detected within one call; a sequence spanning several
///   Text Responses should pass their keys together or track them itself
///   (section 6.4 forbids declaring a key twice in one sequence).
/// - Never panics, whatever the pairs.
pub fn text_response(
    negotiated: &Negotiated,
    pairs: &[(String, String)],
) -> Result<(Negotiated, Vec<(String, String)>), NegotiationError> {
    let mut out = negotiated.clone();
    let mut replies = Vec::new();
    let mut seen: Vec<&str> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        // RFC 7143 section 6.1: key names are 1-63 characters of a fixed set.
        text::validate_key(k.as_bytes())?;
        // RFC 7143 section 6.4: no key twice in a negotiation sequence,
        // "except for responses to specific keys that explicitly allow
        // repeated key declarations (e.g., TargetAddress)".
        if seen.contains(&k.as_str()) && !keys::may_repeat(k) {
            return Err(NegotiationError::Duplicate { key: k.clone() });
        }
        seen.push(k.as_str());
        // RFC 7143 section 6.2: "Reject", "Irrelevant" and "NotUnderstood"
        // are answers, never proposals or declarations ("Violation of this
        // rule is a protocol error"). We proposed nothing the target could
        // be answering here.
        if matches!(
            text::special_value(v),
            Some(SpecialValue::NotUnderstood | SpecialValue::Irrelevant | SpecialValue::Reject)
        ) {
            return Err(NegotiationError::ReservedValue {
                key: k.clone(),
                value: short(v),
            });
        }
        let Some(def) = keys::lookup(k) else {
            // RFC 7143 sections 6.2 and 13.22: unknown, X- and X# keys.
            replies.push((k.clone(), "NotUnderstood".to_owned()));
            continue;
        };
        match disposition(def)? {
            Disposition::Apply => apply(&mut out, def, v)?,
            Disposition::Irrelevant => replies.push((k.clone(), "Irrelevant".to_owned())),
            Disposition::Reject => replies.push((k.clone(), "Reject".to_owned())),
        }
    }
    Ok((out, replies))
}

/// Applies a target declaration allowed in Full Feature Phase.
fn apply(n: &mut Negotiated, def: &KeyDef, v: &str) -> Result<(), NegotiationError> {
    check_value(def, v)?;
    match def.name {
        // RFC 7143 section 13.12: the target "declares the maximum data
        // segment length in bytes it can receive"; we must not send more.
        "MaxRecvDataSegmentLength" => {
            n.target_max_recv_data_segment_length = text::parse_number(v)
                .ok()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| invalid(def, v))?;
        }
        // RFC 7143 section 13.6: TargetAlias, "Use: ALL, Declarative".
        "TargetAlias" => n.target_alias = Some(v.to_owned()),
        // RFC 7143 section 13.8: TargetAddress may be declared in Full
        // Feature Phase (redirection hints); the session does not act on
        // it outside a redirect or SendTargets.
        _ => {}
    }
    Ok(())
}

fn invalid(def: &KeyDef, v: &str) -> NegotiationError {
    NegotiationError::InvalidValue {
        key: def.name.to_owned(),
        value: short(v),
        section: def.section,
    }
}

/// Our MaxRecvDataSegmentLength declaration for a Text Request in Full
/// Feature Phase (RFC 7143 section 13.12: "Use: ALL, Declarative", "The
/// initiator or target declares the maximum data segment length in bytes
/// it can receive in an iSCSI PDU").
///
/// Returns the parameters with [`Negotiated::initiator_max_recv_data_segment_length`]
/// set to `value`, and the one pair to send. A declaration needs no answer.
///
/// # For the caller
///
/// Section 6.4: the new value is effective once the negotiation sequence
/// completes (the target's Text Response with F=1). Until then the target
/// may still send segments sized for the old value: when lowering it, keep
/// accepting the old limit until that response has arrived.
///
/// # Errors
///
/// [`NegotiationError::InvalidConfig`] if `value` is outside
/// 512..=2^24-1 (section 13.12).
pub fn declare_max_recv_data_segment_length(
    negotiated: &Negotiated,
    value: u32,
) -> Result<(Negotiated, Vec<(String, String)>), NegotiationError> {
    if !(512..=MAX_DATA_LEN).contains(&u64::from(value)) {
        return Err(NegotiationError::InvalidConfig {
            key: "MaxRecvDataSegmentLength",
            section: "13.12",
        });
    }
    let mut out = negotiated.clone();
    out.initiator_max_recv_data_segment_length = value;
    Ok((
        out,
        vec![("MaxRecvDataSegmentLength".to_owned(), value.to_string())],
    ))
}
