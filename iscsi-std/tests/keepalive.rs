//! The blocking driver keeps a session alive while the application leaves
//! the client alone (issue "Integrity first", items 6 and 10): a target
//! that pings and drops unanswered connections keeps the session; every
//! session event reaches the application; a logout the target asks for is
//! carried out while the application is idle.

mod support;

use std::time::Duration;

use iscsi_mio::server::{LunSpec, Server, ShutdownHandle, TargetConfig};
use iscsi_proto::error::UsageError;
use iscsi_proto::initiator::{Event, Recovery, ScsiCommand, SessionConfig};
use iscsi_proto::scsi::cdb::{read10, RwFlags};
use iscsi_proto::wire::pdu::AsyncEvent;
use iscsi_std::{Client, Error, Options};
use support::{Note, Script, Target, TARGET_NAME};

const MIO_TARGET: &str = "iqn.2026-11.test:std-keepalive-mio";

/// The embedded mio target, pinging after `interval` without input and
/// dropping a connection whose ping stays unanswered for `3 * interval`
/// (about three pings, as `nop_count=3` does for tgtd).
struct Pinging {
    addr: std::net::SocketAddr,
    stop: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pinging {
    fn start(interval: Duration) -> Pinging {
        let mut cfg = TargetConfig::new("127.0.0.1:0".parse().unwrap(), MIO_TARGET);
        cfg.luns = vec![LunSpec::Ram(1 << 20)];
        cfg.log = false;
        cfg.nop_interval = Some(interval);
        cfg.nop_timeout = interval * 3;
        let mut server = Server::bind(cfg).expect("bind");
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || {
            let _ = server.run();
        });
        Pinging {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Pinging {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_one(c: &mut Client) -> Result<bytes::Bytes, Error> {
    let done = c.execute(ScsiCommand::read(
        iscsi_proto::scsi::Lun::ZERO,
        read10(0, 1, RwFlags::default()).to_vec(),
        512,
    ))?;
    assert!(done.result.is_good(), "{:?}", done.result);
    Ok(done.data)
}

fn recovery() -> Recovery {
    Recovery {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    }
}

#[test]
fn untouched_client_survives_a_pinging_target() {
    let target = Pinging::start(Duration::from_millis(200));
    let config = SessionConfig::new("iqn.2026-11.test:std-untouched").with_target(MIO_TARGET);
    let mut c = Client::connect(&target.addr.to_string(), config, Options::default()).unwrap();
    assert_eq!(read_one(&mut c).unwrap().len(), 512);
    // Left alone far longer than the target waits for an answer (600 ms):
    // only a driver that answers the pings on its own keeps the session.
    std::thread::sleep(Duration::from_secs(3));
    let data = read_one(&mut c).expect("the session survived the idle time");
    assert_eq!(data.len(), 512);
    let events = c.take_events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Recovering { .. } | Event::Reinstated { .. })),
        "the session was recovered rather than kept: {events:?}"
    );
    c.logout().unwrap();
}

#[test]
fn recovery_events_reach_the_application() {
    let target = Target::start(Script {
        drop_after_first_command: true,
        ..Script::default()
    });
    let config = SessionConfig::new("iqn.2026-11.test:std-recovery")
        .with_target(TARGET_NAME)
        .with_recovery(recovery());
    let mut c = Client::connect(&target.addr.to_string(), config, Options::default()).unwrap();
    let tur = || ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, vec![0u8; 6]);
    assert!(c.execute(tur()).unwrap().result.is_good());
    // The target drops the connection after its answer; the next command
    // runs on the recovered session.
    target
        .wait_note(Duration::from_secs(20), |n| *n == Note::Disconnected(1))
        .expect("the target dropped the first connection");
    assert!(c.execute(tur()).unwrap().result.is_good());
    let events = c.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Recovering { attempt: 1, .. })),
        "no Recovering event: {events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Reinstated { .. })),
        "no Reinstated event: {events:?}"
    );
    c.logout().unwrap();
}

#[test]
fn target_requested_logout_is_carried_out_while_idle() {
    let target = Target::start(Script {
        ask_logout_after: Some(Duration::from_millis(300)),
        ..Script::default()
    });
    let config = SessionConfig::new("iqn.2026-11.test:std-asked-out").with_target(TARGET_NAME);
    let mut c = Client::connect(&target.addr.to_string(), config, Options::default()).unwrap();
    target
        .wait_note(Duration::from_secs(20), |n| *n == Note::AskedLogout)
        .expect("the target asked for a logout");
    // The application does nothing; the logout must happen anyway (RFC
    // 7143 section 11.9.1: within Parameter3 = 1 second).
    target
        .wait_note(Duration::from_secs(20), |n| *n == Note::LoggedOut)
        .expect("the idle client logged out as the target asked");
    // The next call reports the session's state at once: the logout is
    // under way (the Logout Response may not be read yet) or done.
    match c.execute(ScsiCommand::new(iscsi_proto::scsi::Lun::ZERO, vec![0u8; 6])) {
        Err(Error::Closed(_) | Error::Usage(UsageError::LoggingOut)) => {}
        other => panic!("expected Error::Closed or LoggingOut, got {other:?}"),
    }
    // The background thread finishes the logout: calls then report the
    // closed session, every time.
    let mut closed = 0;
    for _ in 0..500 {
        match c.ping(bytes::Bytes::new()) {
            Err(Error::Closed(_)) => closed += 1,
            Err(Error::Usage(UsageError::LoggingOut)) => {
                assert_eq!(closed, 0, "the closed state is sticky");
                std::thread::sleep(Duration::from_millis(10));
            }
            other => panic!("expected Error::Closed or LoggingOut, got {other:?}"),
        }
        if closed == 2 {
            break;
        }
    }
    assert_eq!(closed, 2, "the session never reported closed");
    let events = c.take_events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::AsyncEvent(n) if n.event == AsyncEvent::LogoutRequested
        )),
        "no AsyncEvent 1: {events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Closed(None))),
        "no Closed event: {events:?}"
    );
}
