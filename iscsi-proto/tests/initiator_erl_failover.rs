//! Portal failover when a session or connection recovers
//! (`SessionConfig::failover_portals`): an ordered, bounded walk over the
//! target's other portals, within the session's portal group for
//! connection recovery (RFC 7143 section 4.4.1), ending with
//! `Recovery::max_attempts`.

use std::time::Duration;

use iscsi_proto::error::ConnectionError;
use iscsi_proto::initiator::{
    Event, NetworkPortal, Recovery, Session, SessionConfig, TargetRecord, MAX_FAILOVER_PORTALS,
};
use iscsi_proto::login::discovery::TargetAddress;
use iscsi_proto::login::negotiation::TargetConfig;
use iscsi_proto::testing::{LoginResponder, Pair};

fn portal(host: &str, tag: Option<u16>) -> NetworkPortal {
    NetworkPortal {
        host: host.to_owned(),
        port: 3260,
        portal_group_tag: tag,
    }
}

fn recovery(max_attempts: u32) -> Recovery {
    Recovery {
        max_attempts,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(1),
    }
}

fn cfg(level: u8, portals: Vec<NetworkPortal>, attempts: u32) -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:init")
        .with_target("iqn.2024-01.test:disk")
        .with_error_recovery_level(level)
        .with_recovery(recovery(attempts))
        .with_failover_portals(portals)
}

fn responder(level: u8, tpgt: u16) -> LoginResponder {
    let mut t = TargetConfig::default();
    t.params.error_recovery_level = level;
    t.target_portal_group_tag = tpgt;
    LoginResponder::new(t, None)
}

fn last_after(p: &Pair) -> Duration {
    p.events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Recovering { after, .. } => Some(*after),
            _ => None,
        })
        .expect("recovering")
}

/// Fails the connection (logged in or logging in) and waits for the
/// reconnection; returns the portal it asked for.
fn fail_and_reconnect(p: &mut Pair) -> Option<Option<NetworkPortal>> {
    let n = p.connects.len();
    p.session.handle_closed(p.now);
    p.flush();
    if p.session.is_closed() {
        return None;
    }
    p.advance(last_after(p));
    assert_eq!(p.connects.len(), n + 1);
    p.connects.last().cloned()
}

/// The walk: the failed portal first, then one step per further attempt
/// through the alternates, cycling; it ends with the attempts.
#[test]
fn session_recovery_walks_the_portals_in_order_and_stops() {
    let (a, b) = (portal("10.0.0.2", Some(1)), portal("10.0.0.3", Some(1)));
    let mut p = Pair::new(cfg(0, vec![a.clone(), b.clone()], 5));
    p.login_with(&mut responder(0, 1));
    assert!(p.session.is_logged_in());
    let mut seen = Vec::new();
    while let Some(portal) = fail_and_reconnect(&mut p) {
        seen.push(portal);
    }
    assert_eq!(
        seen,
        [None, Some(a.clone()), Some(b), None, Some(a)],
        "attempt 1 retries the configured portal, then A, B, and around"
    );
    assert!(matches!(
        p.events.last(),
        Some(Event::Closed(Some(ConnectionError::RecoveryFailed {
            attempts: 5,
            ..
        })))
    ));
}

/// After a login through an alternate, the next failure retries that
/// portal first (it is the connection's portal now).
#[test]
fn a_recovered_session_stays_on_the_portal_that_worked() {
    let a = portal("10.0.0.2", Some(1));
    let mut p = Pair::new(cfg(0, vec![a.clone()], 5));
    p.login_with(&mut responder(0, 1));
    assert_eq!(fail_and_reconnect(&mut p), Some(None));
    assert_eq!(fail_and_reconnect(&mut p), Some(Some(a.clone())));
    p.login_with(&mut responder(0, 1));
    assert!(p.session.is_logged_in());
    assert_eq!(p.session.target_portal(), Some(&a));
    assert_eq!(fail_and_reconnect(&mut p), Some(Some(a)));
}

/// Connection recovery (ErrorRecoveryLevel 2) keeps to the session's
/// target portal group: a portal of another group is skipped.
#[test]
fn connection_recovery_skips_other_portal_groups() {
    let other = portal("10.0.0.2", Some(2));
    let same = portal("10.0.0.3", Some(1));
    let mut p = Pair::new(cfg(2, vec![other, same.clone()], 5));
    p.login_with(&mut responder(2, 1));
    assert_eq!(
        p.session.negotiated().unwrap().target_portal_group_tag,
        Some(1)
    );
    assert_eq!(fail_and_reconnect(&mut p), Some(None));
    assert_eq!(fail_and_reconnect(&mut p), Some(Some(same.clone())));
    assert_eq!(fail_and_reconnect(&mut p), Some(None));
    assert_eq!(fail_and_reconnect(&mut p), Some(Some(same)));
}

/// RFC 7143 section 13.8: SendTargets lists TargetAddress values with a
/// portal group tag; the failover list takes those of one group, in order,
/// without duplicates, bounded.
#[test]
fn failover_list_from_send_targets() {
    let addr = |h: &str, tag: u16| TargetAddress {
        host: h.to_owned(),
        port: None,
        portal_group_tag: Some(tag),
    };
    let mut addresses = vec![addr("a", 1), addr("b", 2), addr("a", 1), addr("c", 1)];
    for i in 0..40 {
        addresses.push(addr(&format!("h{i}"), 1));
    }
    let record = TargetRecord {
        name: "iqn.2024-01.test:disk".into(),
        addresses,
    };
    let c = SessionConfig::new("i").with_failover_from(&record, Some(1));
    assert_eq!(c.failover_portals.len(), MAX_FAILOVER_PORTALS);
    assert_eq!(c.failover_portals[0], portal("a", Some(1)));
    assert_eq!(c.failover_portals[1], portal("c", Some(1)));
    let all = SessionConfig::new("i").with_failover_from(&record, None);
    assert_eq!(all.failover_portals[1], portal("b", Some(2)));
    let too_many = cfg(0, vec![portal("x", None); MAX_FAILOVER_PORTALS + 1], 1)
        .with_isid(iscsi_proto::wire::Isid::random([1, 2, 3], 0));
    assert!(Session::new(too_many, iscsi_proto::time::Instant::from_millis(1_000_000)).is_err());
}
