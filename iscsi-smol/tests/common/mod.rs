//! Scenarios shared by the smol, async-std and tokio test files: each takes the
//! executor's spawner, so the same code runs under both.
#![allow(dead_code)]

use bytes::Bytes;
use iscsi_proto::initiator::{ScsiCommand, SessionConfig, TaskOutcome};
use iscsi_proto::scsi::cdb::{read10, write10, RwFlags};
use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};
// The driver under test: `use iscsi_smol as driver;` (or iscsi_tokio) in the
// test file that includes this module.
use crate::driver::{Client, DriverFuture, Error};

use crate::target::{Control, LoopbackTarget, Note, BLOCK, TARGET_NAME};

pub fn config(name: &str) -> SessionConfig {
    SessionConfig::new(format!("iqn.2026-11.test:{name}")).with_target(TARGET_NAME)
}

pub fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

pub fn write_cmd(lba: u32, data: Bytes) -> ScsiCommand {
    let blocks = (data.len() / BLOCK) as u16;
    ScsiCommand::write(
        iscsi_proto::scsi::Lun::ZERO,
        write10(lba, blocks, RwFlags::default()).to_vec(),
        data,
    )
}

pub fn read_cmd(lba: u32, blocks: u16) -> ScsiCommand {
    let len = u32::from(blocks) * BLOCK as u32;
    ScsiCommand::read(
        iscsi_proto::scsi::Lun::ZERO,
        read10(lba, blocks, RwFlags::default()).to_vec(),
        len,
    )
}

/// Login, a write (immediate data + R2T) and a read back, a target NOP-In
/// answered, a task management function, logout.
pub async fn basic(spawn: impl FnOnce(DriverFuture)) {
    let t = LoopbackTarget::start(1024, 0);
    let c = Client::connect(&t.addr.to_string(), config("smol-basic"), spawn)
        .await
        .unwrap();
    t.wait_note(|n| *n == Note::LoggedIn);
    c.logged_in().await.unwrap();
    let neg = c
        .negotiated()
        .await
        .unwrap()
        .expect("negotiated after login");
    assert!(
        neg.max_burst_length > 0 && neg.error_recovery_level == 0,
        "{neg:?}"
    );

    let data = pattern(96 * 1024, 3);
    c.write(iscsi_proto::scsi::Lun::ZERO, 20, data.clone(), BLOCK as u32)
        .await
        .unwrap();
    assert_eq!(
        &t.disk.lock().unwrap()[20 * BLOCK..20 * BLOCK + data.len()],
        &data[..]
    );
    let back = c
        .read(
            iscsi_proto::scsi::Lun::ZERO,
            20,
            (data.len() / BLOCK) as u32,
            BLOCK as u32,
        )
        .await
        .unwrap();
    assert_eq!(back, data);

    // The target pings while the application does nothing with the
    // session; our own pings (answered in order) pace the check.
    t.control.send(Control::Ping(0x99)).unwrap();
    let mut answered = false;
    for _ in 0..10_000 {
        let pong = c.ping(Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(pong, Bytes::from_static(b"x"));
        if t.try_note(|n| *n == Note::NopAnswered(0x99)).is_some() {
            answered = true;
            break;
        }
    }
    assert!(answered, "the target's NOP-In was never answered");

    let r = c
        .task_management(iscsi_proto::scsi::Lun::ZERO, TmfFunction::LogicalUnitReset)
        .await
        .unwrap();
    assert_eq!(r, TmfResponse::FunctionComplete);
    c.logout().await.unwrap();
    t.wait_note(|n| *n == Note::LoggedOut);
    // The driver has ended: further calls fail cleanly.
    assert!(matches!(
        c.ping(Bytes::new()).await,
        Err(Error::Closed(None))
    ));
}

/// 32 commands in flight on one session: the target holds every
/// response until 32 are open, so this finishes only if they all are.
pub async fn depth_32(spawn: impl FnOnce(DriverFuture)) {
    const DEPTH: usize = 32;
    let t = LoopbackTarget::start(4096, DEPTH);
    let c = Client::connect(&t.addr.to_string(), config("smol-depth"), spawn)
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..DEPTH {
        let data = pattern(8 * BLOCK, i as u8);
        pending.push(c.submit(write_cmd(i as u32 * 8, data)).await.unwrap());
    }
    for p in pending {
        let (outcome, _) = p.wait().await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Scsi(r) if r.is_good()));
    }
    t.wait_note(|n| *n == Note::InFlight(DEPTH));
    for i in 0..DEPTH {
        let r = c.execute(read_cmd(i as u32 * 8, 8)).await.unwrap();
        assert_eq!(r.data, pattern(8 * BLOCK, i as u8));
    }
    c.logout().await.unwrap();
}

/// Discovery, then a refused connection.
pub async fn discovery_and_refused(
    spawn: impl FnOnce(DriverFuture),
    spawn2: impl FnOnce(DriverFuture),
) {
    let t = LoopbackTarget::start(8, 0);
    let cfg = SessionConfig::new("iqn.2026-11.test:smol-disc");
    let found = Client::discover(&t.addr.to_string(), cfg, spawn)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, TARGET_NAME);
    assert_eq!(found[0].addresses.len(), 1);

    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    match Client::connect(&addr.to_string(), config("smol-refused"), spawn2).await {
        Err(Error::Connect { .. }) => {}
        other => panic!("expected a connect error, got {other:?}"),
    }
}

/// Dropping every client makes the driver log out by itself.
pub async fn dropped_client_logs_out(spawn: impl FnOnce(DriverFuture)) {
    let t = LoopbackTarget::start(8, 0);
    let c = Client::connect(&t.addr.to_string(), config("smol-drop"), spawn)
        .await
        .unwrap();
    let c2 = c.clone();
    drop(c);
    c2.execute(read_cmd(0, 1)).await.unwrap();
    drop(c2);
    t.wait_note(|n| *n == Note::LoggedOut);
}

/// 16 MiB of writes in flight at once (writes block and resume mid-PDU),
/// then read back in flight.
pub async fn large_in_flight(spawn: impl FnOnce(DriverFuture)) {
    const N: usize = 16;
    const LEN: usize = 1 << 20;
    let t = LoopbackTarget::start(N * LEN / BLOCK, 0);
    let c = Client::connect(&t.addr.to_string(), config("smol-large"), spawn)
        .await
        .unwrap();
    let blocks = (LEN / BLOCK) as u32;
    let mut pending = Vec::new();
    for i in 0..N {
        let cmd = write_cmd(i as u32 * blocks, pattern(LEN, i as u8));
        pending.push(c.submit(cmd).await.unwrap());
    }
    for p in pending {
        let (outcome, _) = p.wait().await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Scsi(r) if r.is_good()));
    }
    let mut pending = Vec::new();
    for i in 0..N {
        pending.push(
            c.submit(read_cmd(i as u32 * blocks, blocks as u16))
                .await
                .unwrap(),
        );
    }
    for (i, p) in pending.into_iter().enumerate() {
        let (_, data) = p.wait().await.unwrap();
        assert!(data == pattern(LEN, i as u8));
    }
    c.logout().await.unwrap();
}

/// SAM-5 5.14.1: a command that reports a UNIT ATTENTION was not
/// performed. `execute` hands the status back as it came; `read` and
/// `read_capacity` send the command again once (the target sees it twice,
/// the data is right); a second UNIT ATTENTION in a row is an error.
pub async fn unit_attention_is_retried_once(spawn: impl FnOnce(DriverFuture)) {
    use std::sync::atomic::Ordering;
    let t = LoopbackTarget::start(64, 0);
    let c = Client::connect(&t.addr.to_string(), config("smol-ua"), spawn)
        .await
        .unwrap();
    let lun = iscsi_proto::Lun::ZERO;
    let data = pattern(4 * BLOCK, 9);
    t.disk.lock().unwrap()[..data.len()].copy_from_slice(&data);

    t.unit_attention.store(1, Ordering::SeqCst);
    let done = c.execute(read_cmd(0, 4)).await.unwrap();
    assert!(!done.result.is_good(), "execute must not hide the status");
    assert_eq!(t.unit_attention.load(Ordering::SeqCst), 0);

    t.unit_attention.store(1, Ordering::SeqCst);
    let back = c.read(lun, 0, 4, BLOCK as u32).await.unwrap();
    assert_eq!(back, data);
    let reads = std::iter::from_fn(|| t.notes.try_recv().ok())
        .filter(|n| *n == Note::Command(0x88))
        .count();
    assert_eq!(reads, 2, "one READ(16) answered with UA, one performed");

    t.unit_attention.store(2, Ordering::SeqCst);
    match c.read(lun, 0, 4, BLOCK as u32).await {
        Err(Error::Status(r)) => assert_eq!(r.status, 0x02),
        other => panic!("two UNIT ATTENTIONs must fail: {other:?}"),
    }
    c.logout().await.unwrap();
}
