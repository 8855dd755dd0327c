//! The initiator's per-connection state (`Session::connection`) and each
//! task's connection allegiance (`Session::task_connection`), RFC 7143
//! sections 4.2.1 and 4.2.5.1.

use std::time::Duration;

use iscsi_proto::initiator::{Event, Recovery, ScsiCommand, SessionConfig};
use iscsi_proto::testing::{LoginResponder, Pair};
use iscsi_proto::wire::frame::Digests;
use iscsi_proto::wire::pdu::{Header, Residual};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];

fn cfg(cid: u16) -> SessionConfig {
    let mut c = SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk");
    c.cid = cid;
    c
}

/// The connection carries the CID of the configuration and, once logged
/// in, the connection keys the login negotiated (RFC 7143 section 13:
/// digests and MaxRecvDataSegmentLength in each direction).
#[test]
fn connection_holds_the_negotiated_connection_keys() {
    let mut p = Pair::new(cfg(7));
    let conn = p.session.connection();
    assert_eq!(conn.cid(), 7);
    // RFC 7143 section 13.12: 8192 until negotiated.
    assert_eq!(conn.initiator_max_recv_data_segment_length(), 8192);
    assert_eq!(conn.digests(), Digests::NONE);
    p.login();
    let n = p.session.negotiated().expect("logged in").clone();
    let conn = p.session.connection();
    assert_eq!(p.session.cid(), 7);
    assert_eq!(conn.exp_stat_sn(), p.session.exp_stat_sn());
    assert_eq!(
        conn.initiator_max_recv_data_segment_length(),
        n.initiator_max_recv_data_segment_length
    );
    assert_eq!(
        conn.target_max_recv_data_segment_length(),
        n.target_max_recv_data_segment_length.max(512)
    );
    assert_eq!(
        conn.digests(),
        Digests {
            header: n.header_digest,
            data: n.data_digest,
        }
    );
    assert_eq!(conn.max_recv_pdu_len(), p.session.max_recv_pdu_len());
    let login = p
        .target
        .log
        .iter()
        .find_map(|pdu| match pdu.header {
            Header::LoginRequest(l) => Some(l),
            _ => None,
        })
        .expect("a Login Request");
    assert_eq!(login.cid, 7);
}

/// A task records the connection its command went out on, from the moment
/// the command leaves until the task ends.
#[test]
fn a_task_remembers_its_connection() {
    let mut p = Pair::new(cfg(3));
    p.login();
    let t = p
        .session
        .submit(p.now, ScsiCommand::read(0, &READ10[..], 4))
        .unwrap();
    assert_eq!(p.session.task_connection(t), None, "not sent yet");
    p.flush();
    assert_eq!(p.session.task_connection(t), Some(3));
    let Header::ScsiCommand(c) = p.target.expect().header else {
        panic!("expected a SCSI Command");
    };
    p.target
        .data_in(c.itt, 0, 0, b"abcd", Some((0, Residual::None)));
    p.deliver();
    assert!(p.outcome(t).is_some());
    assert_eq!(p.session.task_connection(t), None, "completed");
}

/// After a connection loss a reissued task has no allegiance until it goes
/// out on the new connection (RFC 7143 section 6.3.5: the old connection's
/// tasks ended with it).
#[test]
fn a_reissued_task_takes_the_new_connection() {
    let c = cfg(5).with_recovery(Recovery {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(10),
    });
    let mut p = Pair::new(c);
    p.login();
    let t = p
        .session
        .submit(p.now, ScsiCommand::read(0, &READ10[..], 4))
        .unwrap();
    p.flush();
    assert_eq!(p.session.task_connection(t), Some(5));
    p.session.handle_closed(p.now);
    p.flush();
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, Event::Recovering { .. })));
    assert_eq!(p.session.task_connection(t), None, "waiting for reissue");
    p.advance(Duration::from_secs(2));
    let mut r = LoginResponder::plain();
    p.login_with(&mut r);
    assert!(p.session.is_logged_in());
    assert_eq!(p.session.task_connection(t), Some(5));
    assert_eq!(p.session.connection().cid(), 5);
}
