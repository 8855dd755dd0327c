//! Checking a [`SessionConfig`] up front: the values the RFC allows, the
//! ISID, CHAP settings, and the negotiation engine built from them.

use super::*;

/// The negotiation engine and CHAP state for a login under `cfg`. Building
/// them validates every configured value (RFC 7143 section 13 ranges,
/// names, authentication), so [`Session::new`] calls it once up front.
pub(super) fn login_engines(
    cfg: &SessionConfig,
    leading: bool,
) -> Result<(InitiatorNegotiator, Option<InitiatorChap>), ConfigError> {
    let session_type = if cfg.is_discovery() {
        SessionType::Discovery
    } else {
        SessionType::Normal
    };
    let mut icfg = InitiatorConfig::new(cfg.initiator_name.clone(), session_type);
    icfg.initiator_alias = cfg.initiator_alias.clone();
    icfg.target_name = cfg.target_name.clone();
    icfg.params = cfg.operational.clone();
    icfg.leading = leading;
    // RFC 7143 section 13.20: offer the level this initiator implements
    // and the application asked for (`validate` bounds it).
    icfg.params.error_recovery_level = cfg.error_recovery.level;
    // RFC 7143 section 13.19: "if ErrorRecoveryLevel is not 0 and
    // DataSequenceInOrder is set to Yes then MaxOutstandingR2T MUST be set
    // to 1" (DataSequenceInOrder's result function is OR: our Yes makes
    // the result Yes).
    if icfg.params.error_recovery_level >= 1 && icfg.params.data_sequence_in_order {
        icfg.params.max_outstanding_r2t = 1;
    }
    let chap = match &cfg.auth {
        Auth::None => {
            icfg.auth_methods = vec![AuthMethod::None];
            None
        }
        Auth::Chap {
            user,
            secret,
            algorithms,
            mutual,
        } => {
            // One-way CHAP also offers None (the target may not ask for
            // authentication); mutual CHAP insists on authenticating the
            // target, so it offers CHAP only.
            icfg.auth_methods = if mutual.is_some() {
                vec![AuthMethod::Chap]
            } else {
                vec![AuthMethod::Chap, AuthMethod::None]
            };
            // RFC 7143 section 12.1.3: our challenge must be unpredictable;
            // the core has no randomness of its own to make one up.
            if mutual.is_some() && cfg.chap_challenge.is_empty() {
                return Err(ConfigError::Invalid(
                    "mutual CHAP needs caller-supplied random challenge bytes",
                ));
            }
            let mut c =
                InitiatorChapConfig::new(ChapCredentials::new(user.clone(), secret.clone()));
            c.algorithms = algorithms.clone();
            c.mutual = mutual
                .as_ref()
                .map(|(u, s)| ChapCredentials::new(u.clone(), s.clone()));
            Some(InitiatorChap::new(c)?)
        }
    };
    Ok((InitiatorNegotiator::new(icfg)?, chap))
}

/// The highest ErrorRecoveryLevel this initiator implements.
pub(crate) const MAX_ERROR_RECOVERY_LEVEL: u8 = 2;

/// Checks what the negotiation engine does not: the ISID and the
/// session's own timers and limits.
pub(super) fn validate(cfg: &SessionConfig) -> Result<w::Isid, ConfigError> {
    let isid = cfg.isid.ok_or(ConfigError::MissingIsid)?;
    // RFC 7143 section 11.12.5: T=3 is reserved.
    if isid.t() == 3 {
        return Err(ConfigError::ReservedIsid);
    }
    if cfg.login_timeout.is_zero() {
        return Err(ConfigError::Invalid("login_timeout must be above zero"));
    }
    if cfg
        .keepalive
        .is_some_and(|k| k.interval.is_zero() || k.timeout.is_zero())
    {
        return Err(ConfigError::Invalid(
            "keepalive interval and timeout must be above zero",
        ));
    }
    if cfg.task_timeout.is_some_and(|t| t.is_zero()) {
        return Err(ConfigError::Invalid("task_timeout must be above zero"));
    }
    // RFC 7143 section 13.23: FastAbort changes which responses the
    // target sends for aborted tasks and adds the AsyncEvent 5 duties
    // (section 11.9.1); this initiator does not implement them, so it
    // does not offer the value.
    if cfg
        .operational
        .task_reporting
        .contains(&crate::login::negotiation::TaskReporting::FastAbort)
    {
        return Err(ConfigError::Invalid(
            "TaskReporting=FastAbort is not supported by this initiator",
        ));
    }
    // RFC 7143 section 13.20: ErrorRecoveryLevel is 0-2.
    if cfg.error_recovery.level > MAX_ERROR_RECOVERY_LEVEL {
        return Err(ConfigError::Invalid(
            "error_recovery.level above what this initiator implements",
        ));
    }
    if cfg.error_recovery.level > 0 && cfg.error_recovery.snack_timeout.is_zero() {
        return Err(ConfigError::Invalid(
            "error_recovery.snack_timeout must be above zero",
        ));
    }
    if cfg.failover_portals.len() > MAX_FAILOVER_PORTALS {
        return Err(ConfigError::Invalid(
            "failover_portals lists more than MAX_FAILOVER_PORTALS portals",
        ));
    }
    if cfg.max_text_len == 0 {
        return Err(ConfigError::Invalid("max_text_len must be above zero"));
    }
    login_engines(cfg, true)?;
    Ok(isid)
}
