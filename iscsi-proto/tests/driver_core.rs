//! `iscsi_proto::driver::DriverCore` against a scripted target, bytes moved
//! by hand as a driver would: connection requests, the one error shape for
//! a refused target and for a lost session (with and without recovery),
//! replies collected by task, the byte tap, and receive memory that
//! follows what is in flight.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iscsi_proto::driver::{
    reply, ConnRequest, Direction, DriverCore, Error, Read, Written, MIN_READ, RELEASE_AFTER,
};
use iscsi_proto::error::{ConnectionError, TaskError};
use iscsi_proto::initiator::{Action, Recovery, Reissue, ScsiCommand, SessionConfig, TaskOutcome};
use iscsi_proto::login::status::StatusClass;
use iscsi_proto::testing::{LoginResponder, LoginScript, ScriptedTarget};
use iscsi_proto::wire::pdu::{Header, Residual};

const PORTAL: &str = "192.0.2.7:3260";

fn cfg() -> SessionConfig {
    SessionConfig::new("iqn.2024-01.test:init").with_target("iqn.2024-01.test:disk")
}

fn recovering() -> SessionConfig {
    cfg().with_recovery(Recovery {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(10),
    })
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Everything the core offers for writing, to the target.
fn to_target(core: &mut DriverCore, t: &mut ScriptedTarget, now: Instant) {
    let mut wire = Vec::new();
    let w = core.write_with(now, |slices| {
        let mut n = 0;
        for s in slices {
            wire.extend_from_slice(s);
            n += s.len();
        }
        Ok(n)
    });
    assert!(matches!(w, Written::All), "{w:?}");
    t.feed(&wire).unwrap();
}

/// Everything the target sent, to the core, in reads of at most 7 bytes
/// (a PDU never arrives whole).
fn to_initiator(core: &mut DriverCore, t: &mut ScriptedTarget, now: Instant) {
    let out = t.take_output();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let r = core.read_with(now, |buf| {
            let n = buf.len().min(rest.len()).min(7);
            buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            Ok(n)
        });
        assert!(matches!(r, Read::Bytes(_)), "{r:?}");
    }
}

/// Opens the connection the core asks for.
fn connect(core: &mut DriverCore, t: &mut ScriptedTarget, now: Instant) {
    assert_eq!(core.poll_conn(), Some(ConnRequest::Open(PORTAL.into())));
    // A connection being opened: wait for writability (its completion).
    assert!(core.wants_writable() && !core.is_connected());
    t.reconnect();
    core.connected(now, addr("192.0.2.1:40000"), addr(PORTAL));
    assert!(!core.wants_writable() && core.is_connected());
}

/// A login through `r`, bytes moved until the session is in the Full
/// Feature Phase or over.
fn login(core: &mut DriverCore, t: &mut ScriptedTarget, r: &mut LoginResponder, now: Instant) {
    for _ in 0..20 {
        to_target(core, t, now);
        while let Some(pdu) = t.recv() {
            r.handle(t, &pdu);
        }
        to_initiator(core, t, now);
        if core.is_logged_in() || core.is_closed() {
            return;
        }
    }
    panic!("login did not finish");
}

fn logged_in(config: SessionConfig) -> (DriverCore, ScriptedTarget, Instant) {
    let now = Instant::now();
    let mut core = DriverCore::new(PORTAL, config, now, [1, 2, 3]).unwrap();
    let mut t = ScriptedTarget::new();
    connect(&mut core, &mut t, now);
    login(&mut core, &mut t, &mut LoginResponder::plain(), now);
    assert!(core.is_logged_in());
    (core, t, now)
}

/// A TCP connect refused before any login: the session ends as a refusal
/// (`Error::Connect`), not as the loss of a session.
#[test]
fn refused_connection_is_a_connect_error() {
    let now = Instant::now();
    let mut core = DriverCore::new(PORTAL, cfg(), now, [1, 2, 3]).unwrap();
    assert_eq!(core.poll_conn(), Some(ConnRequest::Open(PORTAL.into())));
    core.connect_failed(now, io::ErrorKind::ConnectionRefused.into());
    let e = core.close_error().expect("the session is over");
    assert!(e.is_refused(), "{e:?}");
    assert!(matches!(e, Error::Connect { ref addr, .. } if addr == PORTAL));
    assert_eq!(e.to_string(), format!("connection refused: {PORTAL}"));
    // Every later call reports the same.
    let again = core.start(now, Action::Ping(Default::default()), true);
    assert!(matches!(again, Err(Error::Connect { .. })), "{again:?}");
}

/// RFC 7143 section 11.13.5: a Login Response with a non-zero
/// Status-Class refuses the login; the session never existed, so the
/// error is `Error::Login`, distinct from `Error::Closed`.
#[test]
fn rejected_login_is_a_login_error() {
    let now = Instant::now();
    let mut core = DriverCore::new(PORTAL, cfg(), now, [1, 2, 3]).unwrap();
    let mut t = ScriptedTarget::new();
    connect(&mut core, &mut t, now);
    let mut r = LoginResponder::plain();
    // 0x0203: Initiator Error, "Not Found".
    r.script.push_back(LoginScript::Status(2, 3, vec![]));
    login(&mut core, &mut t, &mut r, now);
    match core.close_error() {
        Some(Error::Login(ConnectionError::LoginFailed { class, detail, .. })) => {
            assert_eq!((class, detail), (StatusClass::InitiatorError, 3));
        }
        other => panic!("expected a refused login, got {other:?}"),
    }
    assert_eq!(core.poll_conn(), Some(ConnRequest::Close));
}

/// Without recovery, a connection lost after login ends the session
/// (RFC 7143 section 7.1.5: at ErrorRecoveryLevel 0 the tasks end with
/// the connection): the task in flight and every later call report
/// `Error::Closed(Some(cause))`, and the driver is asked to close.
#[test]
fn lost_session_ends_tasks_in_flight_with_closed() {
    let (mut core, mut t, now) = logged_in(cfg());
    let task = core
        .start(
            now,
            Action::Scsi(ScsiCommand::new(
                iscsi_proto::scsi::Lun::ZERO,
                &[0u8; 6][..],
            )),
            true,
        )
        .unwrap();
    to_target(&mut core, &mut t, now);
    assert!(matches!(t.expect().header, Header::ScsiCommand(_)));
    let r = core.read_with(now, |_| Ok(0));
    assert_eq!(r, Read::Lost);
    assert_eq!(core.poll_conn(), Some(ConnRequest::Close));
    let reply = core.take_completed(task).expect("the task ended");
    assert!(
        matches!(reply, Err(Error::Closed(Some(ConnectionError::Closed)))),
        "{reply:?}"
    );
    let again = core.start(now, Action::Ping(Default::default()), true);
    assert!(
        matches!(again, Err(Error::Closed(Some(ConnectionError::Closed)))),
        "{again:?}"
    );
    assert!(!core.close_error().unwrap().is_refused());
}

/// With recovery, the core reconnects after Time2Wait and the session
/// goes on (RFC 7143 section 6.3.5): a command that must not run twice
/// ends with `TaskError::OutcomeUnknown`, a repeatable one is reissued and
/// completes.
#[test]
fn recovery_reissues_what_is_safe_and_reports_the_rest() {
    let (mut core, mut t, now) = logged_in(recovering());
    let write = ScsiCommand::new(
        iscsi_proto::scsi::Lun::ZERO,
        &[0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
    )
    .with_reissue(Reissue::Never);
    let unsafe_task = core.start(now, Action::Scsi(write), true).unwrap();
    let tur = core
        .start(
            now,
            Action::Scsi(ScsiCommand::new(
                iscsi_proto::scsi::Lun::ZERO,
                &[0u8; 6][..],
            )),
            true,
        )
        .unwrap();
    to_target(&mut core, &mut t, now);
    core.connection_lost(now);
    assert_eq!(core.poll_conn(), Some(ConnRequest::Close));
    assert!(!core.is_closed(), "recovery keeps the session");
    let reply = reply::scsi(core.take_completed(unsafe_task).expect("ended"));
    assert!(
        matches!(reply, Err(Error::Task(TaskError::OutcomeUnknown))),
        "{reply:?}"
    );
    // Time2Wait (2 s by default) later the core asks for a new connection.
    let later = now + Duration::from_secs(2);
    assert!(core.handle_timeout(later));
    connect(&mut core, &mut t, later);
    login(&mut core, &mut t, &mut LoginResponder::plain(), later);
    assert!(core.is_logged_in());
    to_target(&mut core, &mut t, later);
    let cmd = match t.expect().header {
        Header::ScsiCommand(c) => c,
        h => panic!("expected the reissued command, got {:?}", h.opcode()),
    };
    t.scsi_response(cmd.itt, 0, Residual::None, None);
    to_initiator(&mut core, &mut t, later);
    match core.take_completed(tur) {
        Some(Ok((TaskOutcome::Scsi(r), _))) => assert!(r.is_good()),
        other => panic!("the reissued command: {other:?}"),
    }
}

/// The byte tap sees exactly the bytes written and read, with the
/// connection's addresses.
#[test]
fn tap_sees_every_byte() {
    type Seen = Vec<(Direction, SocketAddr, Vec<u8>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let now = Instant::now();
    let mut core = DriverCore::new(PORTAL, cfg(), now, [1, 2, 3]).unwrap();
    let s = seen.clone();
    core.set_tap(Some(Box::new(move |d, _local, peer, bytes| {
        s.lock().unwrap().push((d, peer, bytes.to_vec()));
    })));
    let mut t = ScriptedTarget::new();
    connect(&mut core, &mut t, now);
    // What the core writes and what the tap saw agree, byte for byte.
    let mut wire = Vec::new();
    let _ = core.write_with(now, |slices| {
        // A partial write: the first 10 bytes only.
        let mut left = 10;
        for sl in slices {
            let k = left.min(sl.len());
            wire.extend_from_slice(&sl[..k]);
            left -= k;
        }
        Ok(10 - left)
    });
    let sent: Vec<u8> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|x| x.0 == Direction::Sent)
        .flat_map(|x| x.2.clone())
        .collect();
    assert_eq!(sent, wire);
    assert!(seen.lock().unwrap().iter().all(|x| x.1 == addr(PORTAL)));
    // The rest of the Login Request resumes where the write stopped.
    let w = core.write_with(now, |slices| {
        let mut n = 0;
        for sl in slices {
            wire.extend_from_slice(sl);
            n += sl.len();
        }
        Ok(n)
    });
    assert!(matches!(w, Written::All));
    t.feed(&wire).unwrap();
    let sent: Vec<u8> = seen
        .lock()
        .unwrap()
        .iter()
        .flat_map(|x| x.2.clone())
        .collect();
    assert_eq!(sent, wire);
    seen.lock().unwrap().clear();
    login(&mut core, &mut t, &mut LoginResponder::plain(), now);
    let got: usize = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|x| x.0 == Direction::Received)
        .map(|x| x.2.len())
        .sum();
    assert!(got >= 48, "the Login Response was tapped");
}

/// Hands everything the target sent to the core in reads as large as the
/// core offers; returns the largest space offered.
fn deliver_all(core: &mut DriverCore, t: &mut ScriptedTarget, now: Instant) -> usize {
    let out = t.take_output();
    let mut rest = &out[..];
    let mut offered = 0;
    while !rest.is_empty() {
        let r = core.read_with(now, |buf| {
            offered = offered.max(buf.len());
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            Ok(n)
        });
        assert!(matches!(r, Read::Bytes(_)), "{r:?}");
    }
    offered
}

/// The space the next read is offered (nothing is read).
fn space(core: &mut DriverCore, now: Instant) -> usize {
    let mut len = 0;
    let r = core.read_with(now, |buf| {
        len = buf.len();
        Err(io::ErrorKind::WouldBlock.into())
    });
    assert_eq!(r, Read::Nothing);
    len
}

/// Receive memory follows what is in flight: an idle session reads into a
/// few KiB; with 32 reads of 4 KiB owed, a read has room for all of them
/// (at most the maximum set); once the session has been idle for
/// `RELEASE_AFTER`, the large region is dropped (the deadline is in
/// `poll_timeout`), while the data already handed out stays intact.
#[test]
fn receive_memory_follows_what_is_in_flight() {
    const DEPTH: usize = 32;
    const LEN: usize = 4096;
    let (mut core, mut t, now) = logged_in(cfg());
    assert!(space(&mut core, now) <= 2 * MIN_READ, "idle");
    let mut tasks = Vec::new();
    for i in 0..DEPTH {
        let cdb = [0x28, 0, 0, 0, 0, i as u8, 0, 0, 8, 0];
        let cmd = ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &cdb[..], LEN as u32);
        tasks.push(core.start(now, Action::Scsi(cmd), true).unwrap());
    }
    to_target(&mut core, &mut t, now);
    let owed = DEPTH * (LEN + 48);
    let busy = space(&mut core, now);
    assert!(busy >= owed, "room for everything owed: {busy} < {owed}");
    // Every read answered with its own byte pattern, in one burst.
    while let Some(pdu) = t.recv() {
        let Header::ScsiCommand(c) = pdu.header else {
            continue;
        };
        t.ack_cmd(c.cmd_sn);
        let data = vec![c.cdb[5]; LEN];
        t.data_in(c.itt, 0, 0, &data, Some((0, Residual::None)));
    }
    deliver_all(&mut core, &mut t, now);
    let replies: Vec<_> = tasks
        .iter()
        .map(|&task| reply::scsi(core.take_completed(task).expect("ended")).unwrap())
        .collect();
    // Idle: the release is due RELEASE_AFTER from the wait's plan.
    core.plan_low_water(now);
    let due = core.poll_timeout().expect("a release deadline");
    assert!(due <= now + RELEASE_AFTER, "{due:?}");
    core.handle_timeout(now + RELEASE_AFTER);
    assert!(space(&mut core, now) <= 2 * MIN_READ, "released");
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.data, vec![i as u8; LEN], "read {i} intact");
    }
    // A maximum bounds a busy session's reads.
    core.set_max_read(16 * 1024);
    for i in 0..DEPTH {
        let cdb = [0x28, 0, 0, 0, 0, i as u8, 0, 0, 8, 0];
        let cmd = ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &cdb[..], LEN as u32);
        core.start(now, Action::Scsi(cmd), true).unwrap();
    }
    to_target(&mut core, &mut t, now);
    assert!(space(&mut core, now) <= 16 * 1024);
}

/// Work in flight keeps the receive region: no release deadline while
/// anything is owed.
#[test]
fn no_release_while_something_is_owed() {
    let (mut core, mut t, now) = logged_in(cfg());
    core.plan_low_water(now);
    let idle = core.poll_timeout();
    for i in 0..8u8 {
        let cdb = [0x28, 0, 0, 0, 0, i, 0, 0, 8, 0];
        let cmd = ScsiCommand::read(iscsi_proto::scsi::Lun::ZERO, &cdb[..], 4096);
        core.start(now, Action::Scsi(cmd), true).unwrap();
    }
    to_target(&mut core, &mut t, now);
    let busy = space(&mut core, now);
    core.plan_low_water(now);
    // No new deadline for the release (the session's own, if any, stays).
    assert_eq!(core.poll_timeout(), idle);
    core.handle_timeout(now + 10 * RELEASE_AFTER);
    assert_eq!(space(&mut core, now), busy, "the region is kept");
}
