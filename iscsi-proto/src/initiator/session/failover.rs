//! Portal failover: which portal a recovery reconnects to
//! (`SessionConfig::failover_portals`).
//!
//! The order is bounded and logged: the configured portal (or the one a
//! permanent redirection named, RFC 7143 section 11.13.5), then the
//! alternates in the order given, cycling. The first reconnection after a
//! failure retries the portal that failed (the failure may have been the
//! connection's, not the portal's); every further attempt of the same
//! recovery moves on by one. The attempts are those of
//! `Recovery::max_attempts`, so the walk ends with them. Connection
//! recovery (ErrorRecoveryLevel 2) only considers portals of the
//! session's target portal group (RFC 7143 section 4.4.1: every
//! connection of a session is in one portal group).

use super::*;

impl Session {
    /// The portal a recovery's new connection goes to (`None`: the
    /// configured portal), advancing the failover order on the second and
    /// later attempts of a recovery.
    pub(super) fn recovery_portal(&mut self) -> Option<NetworkPortal> {
        let alternates = self.cfg.failover_portals.len().min(MAX_FAILOVER_PORTALS);
        if alternates > 0 && self.recovery_attempt >= 2 {
            let tpgt = self
                .negotiated
                .as_ref()
                .and_then(|n| n.target_portal_group_tag);
            let same_group_only = self.conn_recovery.is_some();
            // One step along the cycle, skipping portals of another group
            // when the session must stay in its own.
            for _ in 0..=alternates {
                self.portal_index = (self.portal_index + 1) % (alternates + 1);
                let ok = match self.portal_index.checked_sub(1) {
                    None => true,
                    Some(i) => {
                        let g = self
                            .cfg
                            .failover_portals
                            .get(i)
                            .and_then(|p| p.portal_group_tag);
                        !same_group_only || g.is_none() || tpgt.is_none() || g == tpgt
                    }
                };
                if ok {
                    break;
                }
            }
        }
        let portal = match self.portal_index.checked_sub(1) {
            None => self.permanent_portal.clone(),
            Some(i) => self.cfg.failover_portals.get(i).cloned(),
        };
        tracing::info!(
            target: "iscsi::recovery",
            attempt = self.recovery_attempt,
            index = self.portal_index,
            portal = portal.as_ref().map_or_else(|| "configured".to_owned(), |p| p.address()),
            "reconnecting (portal failover order)"
        );
        portal
    }
}
