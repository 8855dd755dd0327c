//! libiscsi-style iSCSI URLs: `iscsi://[user[%secret]@]host[:port]/target-iqn/lun`.
//!
//! The host may be an IPv4 address, a DNS name or a bracketed IPv6 address
//! (`[::1]`). The port defaults to 3260 (RFC 7143 section 13.8 names 3260 as
//! the well-known iSCSI port). Secrets are kept out of `Debug` output.

use std::fmt;

/// The well-known iSCSI TCP port.
pub const DEFAULT_PORT: u16 = 3260;

/// A parsed `iscsi://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    /// CHAP user name, if the URL carries credentials.
    pub user: Option<String>,
    /// CHAP secret, if the URL carries one.
    pub secret: Option<String>,
    /// Host name or address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Target IQN (may be empty for `discover`-style portal URLs).
    pub target: String,
    /// Logical unit number.
    pub lun: u16,
}

impl fmt::Debug for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IscsiUrl")
            .field("user", &self.user)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("target", &self.target)
            .field("lun", &self.lun)
            .finish()
    }
}

impl IscsiUrl {
    /// `host:port`, with brackets around an IPv6 address, for connecting.
    pub fn portal(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// Parses a full URL; the target and LUN are required.
    pub fn parse(s: &str) -> Result<IscsiUrl, String> {
        let rest = s.strip_prefix("iscsi://").ok_or_else(|| {
            format!(
                "invalid URL {s:?}: expected iscsi://[user[%secret]@]host[:port]/target-iqn/lun"
            )
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let Authority {
            user,
            secret,
            host,
            port,
        } = parse_authority(authority).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
        let path = path.trim_end_matches('/');
        let (target, lun) = match path.rsplit_once('/') {
            Some((t, l)) => {
                let lun = l
                    .parse::<u16>()
                    .ok()
                    .filter(|n| *n < 16384)
                    .ok_or_else(|| {
                        format!("invalid URL {s:?}: LUN {l:?} is not a number below 16384")
                    })?;
                (t.to_string(), lun)
            }
            None => return Err(format!("invalid URL {s:?}: missing /target-iqn/lun")),
        };
        if target.is_empty() {
            return Err(format!("invalid URL {s:?}: empty target name"));
        }
        Ok(IscsiUrl {
            user,
            secret,
            host,
            port,
            target,
            lun,
        })
    }
}

/// The `[user[%secret]@]host[:port]` part of a URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Authority {
    /// CHAP user name, if given.
    pub user: Option<String>,
    /// CHAP secret, if given.
    pub secret: Option<String>,
    /// Host name or address, without brackets.
    pub host: String,
    /// TCP port (3260 when absent).
    pub port: u16,
}

/// Parses `[user[%secret]@]host[:port]`.
pub fn parse_authority(authority: &str) -> Result<Authority, String> {
    let (creds, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, secret) = match creds {
        None => (None, None),
        Some(c) => match c.split_once('%') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(c.to_string()), None),
        },
    };
    if matches!(user.as_deref(), Some("")) {
        return Err("empty user name".into());
    }
    let (host, port) = parse_host_port(hostport)?;
    Ok(Authority {
        user,
        secret,
        host,
        port,
    })
}

/// A portal for `discover`: `HOST[:PORT]`, or an `iscsi://` URL whose
/// credentials are used and whose path (if any) is ignored.
pub fn parse_portal(s: &str) -> Result<Authority, String> {
    let rest = s.strip_prefix("iscsi://").unwrap_or(s);
    let authority = rest.split('/').next().unwrap_or(rest);
    parse_authority(authority).map_err(|e| format!("invalid portal {s:?}: {e}"))
}

/// Joins a host and port, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses `host`, `host:port`, `[v6]` or `[v6]:port` (port defaults to 3260).
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s
        .strip_prefix("iscsi://")
        .unwrap_or(s)
        .trim_end_matches('/');
    if s.is_empty() {
        return Err("empty host".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or("unterminated '[' in IPv6 address")?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected {after:?} after IPv6 address")),
        };
        (host, port)
    } else if s.matches(':').count() > 1 {
        // A bare IPv6 literal without a port.
        (s, None)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("invalid port {p:?}"))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let u = IscsiUrl::parse("iscsi://alice%s3cret@127.0.0.1:3261/iqn.2026-11.test:disk1/1")
            .unwrap();
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.secret.as_deref(), Some("s3cret"));
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 3261);
        assert_eq!(u.target, "iqn.2026-11.test:disk1");
        assert_eq!(u.lun, 1);
        assert!(!format!("{u:?}").contains("s3cret"));
    }

    #[test]
    fn defaults_and_ipv6() {
        let u = IscsiUrl::parse("iscsi://[::1]/iqn.x:y/0").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 3260);
        assert_eq!(u.portal(), "[::1]:3260");
        assert_eq!(parse_host_port("::1").unwrap(), ("::1".into(), 3260));
        assert_eq!(parse_host_port("[::1]:99").unwrap(), ("::1".into(), 99));
        assert_eq!(
            parse_host_port("host.example").unwrap(),
            ("host.example".into(), 3260)
        );
    }

    #[test]
    fn portals_for_discovery() {
        let p = parse_portal("iscsi://127.0.0.1:3261").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.user), ("127.0.0.1", 3261, None));
        let p = parse_portal("iscsi://u%s@[::1]/iqn.x/0").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 3260));
        assert_eq!(
            (p.user.as_deref(), p.secret.as_deref()),
            (Some("u"), Some("s"))
        );
        let p = parse_portal("host.example:99").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("host.example", 99));
        assert!(parse_portal("iscsi://%s@h").is_err());
    }

    #[test]
    fn errors() {
        assert!(IscsiUrl::parse("http://x/y/0").is_err());
        assert!(IscsiUrl::parse("iscsi://127.0.0.1/iqn.x").is_err());
        assert!(IscsiUrl::parse("iscsi://127.0.0.1/iqn.x/abc").is_err());
        assert!(IscsiUrl::parse("iscsi://127.0.0.1:0/iqn.x/0").is_err());
        assert!(IscsiUrl::parse("iscsi://127.0.0.1:x/iqn.x/0").is_err());
        assert!(IscsiUrl::parse("iscsi://%p@127.0.0.1/iqn.x/0").is_err());
        assert!(parse_host_port("[::1").is_err());
    }
}
