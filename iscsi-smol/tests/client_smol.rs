//! The async driver under smol's executor, against a scripted target on
//! a real loopback socket.

#[path = "support/target.rs"]
mod target;

mod common;

use iscsi_smol as driver;

use iscsi_smol::{Client, DriverFuture};

fn spawn(d: DriverFuture) {
    smol::spawn(d).detach();
}

#[test]
fn basic_under_smol() {
    smol::block_on(common::basic(spawn));
}

#[test]
fn depth_32_under_smol() {
    smol::block_on(common::depth_32(spawn));
}

#[test]
fn discovery_and_refused_under_smol() {
    smol::block_on(common::discovery_and_refused(spawn, spawn));
}

#[test]
fn dropped_client_logs_out_under_smol() {
    smol::block_on(common::dropped_client_logs_out(spawn));
}

/// 64 tasks of the executor share one session (cheap clones of the
/// client), each writing then reading its own blocks.
#[test]
fn many_tasks_share_one_session() {
    smol::block_on(async {
        let t = target::LoopbackTarget::start(4096, 0);
        let c = Client::connect(&t.addr.to_string(), common::config("smol-many"), spawn)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..64u32)
            .map(|i| {
                let c = c.clone();
                smol::spawn(async move {
                    let data = common::pattern(4 * target::BLOCK, i as u8);
                    c.write(
                        iscsi_proto::scsi::Lun::ZERO,
                        u64::from(i) * 4,
                        data.clone(),
                        512,
                    )
                    .await
                    .unwrap();
                    let back = c
                        .read(iscsi_proto::scsi::Lun::ZERO, u64::from(i) * 4, 4, 512)
                        .await
                        .unwrap();
                    assert_eq!(back, data);
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        c.logout().await.unwrap();
    });
}

#[test]
fn large_in_flight_under_smol() {
    smol::block_on(common::large_in_flight(spawn));
}

#[test]
fn unit_attention_is_retried_once_under_smol() {
    smol::block_on(common::unit_attention_is_retried_once(spawn));
}
