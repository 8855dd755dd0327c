//! [`NetworkPortal`]: the TCP address of an iSCSI node, in both roles.

use crate::login::discovery::TargetAddress;
use crate::prelude::*;

/// The default iSCSI TCP port (RFC 7143 section 13.8: "the IANA-assigned
/// default port for iSCSI").
pub const DEFAULT_PORT: u16 = 3260;

/// A network portal: the TCP address of an iSCSI node (RFC 7143 section
/// 2.2, "Network Portal"), with its portal group tag when known. The
/// initiator connects to one; the target lists them in SendTargets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkPortal {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Portal group tag, if the target named one.
    pub portal_group_tag: Option<u16>,
}

impl NetworkPortal {
    /// `host:port`, an IPv6 literal in brackets (`[::1]:3260`): the
    /// address part of a TargetAddress value (RFC 7143 section 13.8).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl From<TargetAddress> for NetworkPortal {
    fn from(a: TargetAddress) -> NetworkPortal {
        NetworkPortal {
            host: a.host,
            port: a.port.unwrap_or(DEFAULT_PORT),
            portal_group_tag: a.portal_group_tag,
        }
    }
}
