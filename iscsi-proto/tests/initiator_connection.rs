//! The initiator's per-connection state (`Session::connection`), each
//! task's connection allegiance (`Session::task_connection`), RFC 7143
//! sections 4.2.1 and 4.2.5.1, and the session-wide window update every
//! target PDU carries (section 4.2.2.1).

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::initiator::{Event, Recovery, ScsiCommand, SessionConfig};
use iscsi_proto::testing::{LoginResponder, Pair};
use iscsi_proto::wire::frame::Digests;
use iscsi_proto::wire::pdu::{AsyncEvent, Header, Residual};

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
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4),
        )
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
        .submit(
            p.now,
            ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &READ10[..], 4),
        )
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

/// RFC 7143 section 4.2.2.1: every target PDU that carries ExpCmdSN and
/// MaxCmdSN updates the session's window, whichever handler it reaches:
/// here an Asynchronous Message and the answer to our ping open a window
/// the login left closed.
#[test]
fn any_target_pdu_opens_the_window() {
    for opener in ["async", "nop reply"] {
        let mut r = LoginResponder::plain();
        r.window = (0, 0);
        let mut p = Pair::new(cfg(1));
        p.login_with(&mut r);
        assert!(p.session.is_logged_in());
        assert!(!p.session.window().is_open());
        let t = p
            .session
            .submit(
                p.now,
                ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, &[0u8; 6][..]),
            )
            .unwrap();
        let ping = p.session.nop_ping(p.now, Bytes::new()).unwrap();
        p.flush();
        let Header::NopOut(nop) = p.target.expect().header else {
            panic!("expected the ping");
        };
        assert_eq!(p.target.pending(), 0, "{opener}: the command waits");
        let exp = p.target.exp_cmd_sn;
        p.target.max_cmd_sn = exp.plus(3);
        match opener {
            "async" => p
                .target
                .async_message(AsyncEvent::VendorSpecific, [0; 3], &[]),
            _ => p.target.nop_in_reply(&nop, Bytes::new()),
        }
        p.deliver();
        assert!(p.session.window().is_open(), "{opener}");
        let Header::ScsiCommand(c) = p.target.expect().header else {
            panic!("{opener}: expected the queued command");
        };
        assert_eq!((c.itt, c.cmd_sn), (t.itt(), exp), "{opener}");
        if opener == "nop reply" {
            assert!(p.outcome(ping).is_some());
        }
    }
}
