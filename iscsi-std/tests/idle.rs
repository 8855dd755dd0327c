//! The blocking driver keeps an idle session alive: a target NOP-In that
//! arrives while the application does nothing is answered by `idle` /
//! `poll_idle`.

#[path = "../../iscsi-smol/tests/support/target.rs"]
mod target;

use bytes::Bytes;
use iscsi_proto::initiator::{ScsiCommand, SessionConfig};
use iscsi_proto::scsi::cdb::{read10, write10, RwFlags};
use iscsi_std::{Client, Options};
use std::time::Duration;
use target::{Control, LoopbackTarget, Note, TARGET_NAME};

fn config() -> SessionConfig {
    SessionConfig::new("iqn.2026-11.test:std-idle").with_target(TARGET_NAME)
}

#[test]
fn idle_client_answers_target_nop_in() {
    let t = LoopbackTarget::start(64, 0);
    let mut c = Client::connect(&t.addr.to_string(), config(), Options::default()).unwrap();
    t.wait_note(|n| *n == Note::LoggedIn);
    // The application goes idle; the target pings.
    t.control.send(Control::Ping(0x77)).unwrap();
    let mut answered = false;
    for _ in 0..5000 {
        c.idle(Duration::from_millis(5)).unwrap();
        if t.try_note(|n| *n == Note::NopAnswered(0x77)).is_some() {
            answered = true;
            break;
        }
    }
    assert!(answered, "the idle client never answered the NOP-In");
    // poll_idle is harmless with nothing to do, and the session still works.
    c.poll_idle().unwrap();
    let data = Bytes::from(vec![0x5a; 4096]);
    let w = c
        .execute(ScsiCommand::write(
            iscsi_proto::scsi::Lun::ZERO,
            write10(3, 8, RwFlags::default()).to_vec(),
            data.clone(),
        ))
        .unwrap();
    assert!(w.result.is_good());
    let r = c
        .execute(ScsiCommand::read(
            iscsi_proto::scsi::Lun::ZERO,
            read10(3, 8, RwFlags::default()).to_vec(),
            4096,
        ))
        .unwrap();
    assert_eq!(r.data, data);
    c.logout().unwrap();
    t.wait_note(|n| *n == Note::LoggedOut);
}

/// SAM-5 5.14.1: `Client::read` sends a command that met a UNIT
/// ATTENTION once more (it was not performed); `write` writes.
#[test]
fn read_and_write_helpers_retry_one_unit_attention() {
    use iscsi_std::Lun;
    use std::sync::atomic::Ordering;
    let t = LoopbackTarget::start(64, 0);
    let mut c = Client::connect(&t.addr.to_string(), config(), Options::default()).unwrap();
    let data = Bytes::from(vec![0x5a; 2 * target::BLOCK]);
    c.write(Lun::ZERO, 3, data.clone(), target::BLOCK as u32)
        .unwrap();
    t.unit_attention.store(1, Ordering::SeqCst);
    assert_eq!(c.read(Lun::ZERO, 3, 2, target::BLOCK as u32).unwrap(), data);
    assert_eq!(t.unit_attention.load(Ordering::SeqCst), 0);
    c.logout().unwrap();
}
