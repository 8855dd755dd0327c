//! The mio initiator driver against a scripted target on a real loopback
//! socket: login, writes (immediate data and R2T) and reads, a target
//! NOP-In answered, many sessions in one `Poll`, 32 commands in flight
//! submitted from another thread through the waker, discovery, logout.

#[path = "../../iscsi-smol/tests/support/target.rs"]
mod target;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use iscsi_mio::client::{Action, Blocking, Client, Error};
use iscsi_proto::initiator::{Event, LogoutMode, ScsiCommand, SessionConfig, TaskOutcome};
use iscsi_proto::scsi::cdb::{read10, write10, RwFlags};
use iscsi_proto::wire::pdu::{TmfFunction, TmfResponse};
use mio::{Events, Poll, Token, Waker};
use target::{Control, LoopbackTarget, Note, BLOCK, TARGET_NAME};

fn config(name: &str) -> SessionConfig {
    SessionConfig::new(format!("iqn.2026-11.test:{name}")).with_target(TARGET_NAME)
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn write_cmd(lba: u32, data: Bytes) -> ScsiCommand {
    let blocks = (data.len() / BLOCK) as u16;
    ScsiCommand::write(
        iscsi_proto::scsi::Lun::ZERO,
        write10(lba, blocks, RwFlags::default()).to_vec(),
        data,
    )
}

fn read_cmd(lba: u32, blocks: u16) -> ScsiCommand {
    let len = u32::from(blocks) * BLOCK as u32;
    ScsiCommand::read(
        iscsi_proto::scsi::Lun::ZERO,
        read10(lba, blocks, RwFlags::default()).to_vec(),
        len,
    )
}

#[test]
fn blocking_login_write_read_nop_logout() {
    let t = LoopbackTarget::start(1024, 0);
    let mut b = Blocking::connect(&t.addr.to_string(), config("mio-blocking")).unwrap();
    t.wait_note(|n| *n == Note::LoggedIn);

    // 64 KiB: 8 KiB of immediate data, the rest solicited by an R2T.
    let data = pattern(64 * 1024, 7);
    let w = b.execute(write_cmd(10, data.clone())).unwrap();
    assert!(w.result.is_good());
    assert_eq!(
        &t.disk.lock().unwrap()[10 * BLOCK..10 * BLOCK + data.len()],
        &data[..]
    );
    let r = b.execute(read_cmd(10, 128)).unwrap();
    assert!(r.result.is_good());
    assert_eq!(r.data, data);

    // The target pings; our own pings (answered in order) let the loop
    // run until the target has seen the answer to its ping.
    t.control.send(Control::Ping(0x4242)).unwrap();
    let mut answered = false;
    for _ in 0..10_000 {
        let task = b
            .client()
            .start_collected(Action::Ping(Bytes::from_static(b"hi")))
            .unwrap();
        let (outcome, _) = b.wait(task).unwrap();
        assert_eq!(outcome, TaskOutcome::Pong(Bytes::from_static(b"hi")));
        if t.try_note(|n| *n == Note::NopAnswered(0x4242)).is_some() {
            answered = true;
            break;
        }
    }
    assert!(answered, "the target's NOP-In was never answered");

    let tmf = b
        .task_management(iscsi_proto::scsi::Lun::ZERO, TmfFunction::LogicalUnitReset)
        .unwrap();
    assert_eq!(tmf, TmfResponse::FunctionComplete);
    b.logout().unwrap();
    t.wait_note(|n| *n == Note::LoggedOut);
}

#[test]
fn connect_refused_is_a_connect_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    match Blocking::connect(&addr.to_string(), config("mio-refused")) {
        Err(Error::Connect { .. }) => {}
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[test]
fn discovery() {
    let t = LoopbackTarget::start(8, 0);
    let cfg = SessionConfig::new("iqn.2026-11.test:mio-disc");
    let targets = Blocking::discover(&t.addr.to_string(), cfg).unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].name, TARGET_NAME);
}

/// Two sessions in one `Poll`; one of them takes 32 commands at once from
/// another thread (the target holds every response until 32 are open,
/// so this only finishes if all 32 are in flight together); the other
/// works through the plain event API.
#[test]
fn two_sessions_one_poll_and_32_in_flight_from_another_thread() {
    const DEPTH: usize = 32;
    let busy = LoopbackTarget::start(4096, DEPTH);
    let plain = LoopbackTarget::start(64, 0);
    let mut poll = Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), Token(99)).unwrap());
    let registry = Arc::new(poll.registry().try_clone().unwrap());
    let mut a = Client::new(&busy.addr.to_string(), config("mio-a"), &registry, Token(1)).unwrap();
    let mut c = Client::new(
        &plain.addr.to_string(),
        config("mio-c"),
        &registry,
        Token(2),
    )
    .unwrap();
    let submitter = a.submitter(waker.clone());

    let mut events = Events::with_capacity(128);
    let mut logged_in = [false, false];
    let mut worker = None;
    let mut worker_done: Option<std::sync::mpsc::Receiver<bytes::Bytes>> = None;
    let mut c_task = None;
    let mut c_read = None;
    let mut c_done = false;
    loop {
        let deadline = [a.poll_timeout(), c.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, timeout).unwrap();
        for ev in events.iter() {
            match ev.token() {
                Token(1) => a.handle_event(ev).unwrap(),
                Token(2) => c.handle_event(ev).unwrap(),
                Token(99) => a.handle_wakeup().unwrap(),
                other => panic!("unknown token {other:?}"),
            }
        }
        a.handle_timeout().unwrap();
        c.handle_timeout().unwrap();
        while let Some(ev) = a.poll_event() {
            if let Event::LoggedIn { .. } = ev {
                logged_in[0] = true;
                let s = submitter.clone();
                let w = waker.clone();
                let (done_tx, rx) = std::sync::mpsc::channel();
                worker_done = Some(rx);
                // Another thread: start 32 writes, then wait for them all.
                worker = Some(std::thread::spawn(move || {
                    let rxs: Vec<_> = (0..DEPTH)
                        .map(|i| {
                            let data = pattern(4 * BLOCK, i as u8);
                            s.start(Action::Scsi(write_cmd(i as u32 * 4, data)))
                                .unwrap()
                        })
                        .collect();
                    for rx in rxs {
                        let (outcome, _) = rx.recv().unwrap().unwrap();
                        assert!(matches!(outcome, TaskOutcome::Scsi(r) if r.is_good()));
                    }
                    // And one blocking read back; hand the data over, then
                    // wake the loop. The send comes before the wake, so the
                    // loop always finds the data once it sees the wakeup
                    // (checking `is_finished` instead raced with the thread's
                    // exit and could leave the loop polling forever).
                    let data = s.execute(read_cmd(4, 4)).unwrap().data;
                    done_tx.send(data).unwrap();
                    w.wake().unwrap();
                }));
            }
        }
        while let Some(ev) = c.poll_event() {
            match ev {
                Event::LoggedIn { .. } => {
                    logged_in[1] = true;
                    c_task = Some(c.submit(write_cmd(1, pattern(2 * BLOCK, 9))).unwrap());
                }
                Event::Complete { task, outcome } if Some(task) == c_task => {
                    assert!(matches!(outcome, TaskOutcome::Scsi(ref r) if r.is_good()));
                    c_task = None;
                    c_read = Some(c.submit(read_cmd(1, 2)).unwrap());
                }
                Event::DataIn { task, offset, data } if Some(task) == c_read => {
                    let want = pattern(2 * BLOCK, 9);
                    let off = offset as usize;
                    assert_eq!(&data[..], &want[off..off + data.len()]);
                }
                Event::Complete { task, .. } if Some(task) == c_read => {
                    c_done = true;
                    c.start(Action::Logout(LogoutMode::WaitForTasks)).unwrap();
                }
                _ => {}
            }
        }
        if let Some(data) = worker_done.as_ref().and_then(|rx| rx.try_recv().ok()) {
            worker_done = None;
            worker.take().unwrap().join().unwrap();
            assert_eq!(data, pattern(4 * BLOCK, 1));
            a.start(Action::Logout(LogoutMode::WaitForTasks)).unwrap();
        }
        if a.is_closed() && c.is_closed() {
            break;
        }
    }
    assert!(logged_in[0] && logged_in[1] && c_done);
    assert!(a
        .close_error()
        .is_some_and(|e| matches!(e, Error::Closed(None))));
    busy.wait_note(|n| *n == Note::InFlight(DEPTH));
    busy.wait_note(|n| *n == Note::LoggedOut);
    plain.wait_note(|n| *n == Note::LoggedOut);
}

/// 16 MiB of writes in flight at once (far more than a socket buffer
/// holds, so writes block and resume mid-PDU), then read back in flight.
#[test]
fn large_writes_and_reads_in_flight() {
    const N: usize = 16;
    const LEN: usize = 1 << 20;
    let t = LoopbackTarget::start(N * LEN / BLOCK, 0);
    let mut b = Blocking::connect(&t.addr.to_string(), config("mio-large")).unwrap();
    let blocks = (LEN / BLOCK) as u32;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            b.submit(write_cmd(i as u32 * blocks, pattern(LEN, i as u8)))
                .unwrap()
        })
        .collect();
    for task in tasks {
        let (outcome, _) = b.wait(task).unwrap();
        assert!(matches!(outcome, TaskOutcome::Scsi(r) if r.is_good()));
    }
    for i in 0..N {
        let disk = t.disk.lock().unwrap();
        assert!(disk[i * LEN..(i + 1) * LEN] == pattern(LEN, i as u8)[..]);
    }
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            b.submit(read_cmd(i as u32 * blocks, blocks as u16))
                .unwrap()
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (_, data) = b.wait(task).unwrap();
        assert!(data == pattern(LEN, i as u8));
    }
    b.logout().unwrap();
}

/// SAM-5 5.14.1 (the command reporting a UNIT ATTENTION was not
/// performed): `Blocking::read` and `read_capacity` send it once more;
/// `execute` returns the status as it came; two in a row fail.
#[test]
fn blocking_helpers_retry_one_unit_attention() {
    use iscsi_mio::client::Lun;
    use std::sync::atomic::Ordering;
    let t = LoopbackTarget::start(64, 0);
    let mut b = Blocking::connect(&t.addr.to_string(), config("mio-ua")).unwrap();
    let data = pattern(2 * BLOCK, 5);
    t.disk.lock().unwrap()[BLOCK..3 * BLOCK].copy_from_slice(&data);
    t.unit_attention.store(1, Ordering::SeqCst);
    assert!(!b.execute(read_cmd(1, 2)).unwrap().result.is_good());
    t.unit_attention.store(1, Ordering::SeqCst);
    assert_eq!(b.read(Lun::ZERO, 1, 2, BLOCK as u32).unwrap(), data);
    t.unit_attention.store(2, Ordering::SeqCst);
    assert!(matches!(
        b.read(Lun::ZERO, 1, 2, BLOCK as u32),
        Err(Error::Status(_))
    ));
    b.write(Lun::ZERO, 4, data.clone(), BLOCK as u32).unwrap();
    assert_eq!(&t.disk.lock().unwrap()[4 * BLOCK..6 * BLOCK], &data[..]);
    b.logout().unwrap();
}
