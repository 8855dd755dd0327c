//! SendTargets responses (RFC 7143 section 13.3 and Appendix C): the one
//! place where `TargetName` and `TargetAddress` legitimately repeat.

use super::negotiation::{NegotiationError, MAX_ISCSI_NAME_LEN};
use crate::prelude::*;
use crate::wire::text;

/// One `TargetAddress` value: `domainname[:port][,portal-group-tag]`
/// (RFC 7143 section 13.8), IPv6 literals in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAddress {
    /// Host name, IPv4 literal, or IPv6 literal without its brackets.
    pub host: String,
    /// TCP port, if given (the default is 3260, RFC 7143 section 13.8).
    pub port: Option<u16>,
    /// Portal group tag, if given.
    pub portal_group_tag: Option<u16>,
}

/// A target reported by SendTargets with the addresses that follow its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    /// TargetName.
    pub name: String,
    /// Every TargetAddress listed after the name.
    pub addresses: Vec<TargetAddress>,
}

fn bad(key: &str, value: &str) -> NegotiationError {
    let mut end = value.len().min(64);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    NegotiationError::InvalidValue {
        key: key.to_owned(),
        value: value.get(..end).unwrap_or("").to_owned(),
        section: "13.8",
    }
}

/// Parses a TargetAddress value (RFC 7143 section 13.8: "TargetAddress=
/// domainname\[:port\]\[,portal-group-tag\]"; "If the TCP port is not
/// specified, it is assumed to be the IANA-assigned default port for iSCSI").
pub fn parse_target_address(value: &str) -> Result<TargetAddress, NegotiationError> {
    let err = || bad("TargetAddress", value);
    let (hostport, tag) = match value.rsplit_once(',') {
        Some((hp, tag)) => (hp, Some(tag)),
        None => (value, None),
    };
    let portal_group_tag = match tag {
        Some(t) => Some(
            text::parse_number(t)
                .ok()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(err)?,
        ),
        None => None,
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(err)?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(err)?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.len() > text::MAX_SIMPLE_VALUE_LEN {
        return Err(err());
    }
    let port = match port {
        Some(p) => Some(
            text::parse_number(p)
                .ok()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(err)?,
        ),
        None => None,
    };
    Ok(TargetAddress {
        host: host.to_owned(),
        port,
        portal_group_tag,
    })
}

/// Groups the pairs of a SendTargets response into targets (RFC 7143
/// Appendix C: each `TargetName` is followed by the `TargetAddress` keys
/// of its portals). A `TargetAddress` before any `TargetName` is an error;
/// other keys (e.g. `TargetAlias`) are ignored.
pub fn parse_send_targets(
    pairs: &[(String, String)],
) -> Result<Vec<DiscoveredTarget>, NegotiationError> {
    let mut out: Vec<DiscoveredTarget> = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "TargetName" => {
                if v.is_empty() || v.len() > MAX_ISCSI_NAME_LEN {
                    return Err(NegotiationError::InvalidValue {
                        key: k.clone(),
                        value: v.chars().take(64).collect(),
                        section: "13.4",
                    });
                }
                out.push(DiscoveredTarget {
                    name: v.clone(),
                    addresses: Vec::new(),
                });
            }
            "TargetAddress" => {
                let addr = parse_target_address(v)?;
                out.last_mut()
                    .ok_or_else(|| bad("TargetAddress", v))?
                    .addresses
                    .push(addr);
            }
            _ => {}
        }
    }
    Ok(out)
}
