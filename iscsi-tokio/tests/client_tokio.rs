//! The tokio driver against the scripted loopback target: the same
//! scenarios as iscsi-smol's (shared source), on a multi-thread runtime.

#[path = "../../iscsi-smol/tests/support/target.rs"]
mod target;

#[path = "../../iscsi-smol/tests/common/mod.rs"]
mod common;

use iscsi_tokio as driver;
use iscsi_tokio::{Client, DriverFuture};

fn spawn(d: DriverFuture) {
    drop(tokio::spawn(d));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_under_tokio() {
    common::basic(spawn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_32_under_tokio() {
    common::depth_32(spawn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_refused_under_tokio() {
    common::discovery_and_refused(spawn, spawn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_client_logs_out_under_tokio() {
    common::dropped_client_logs_out(spawn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_in_flight_under_tokio() {
    common::large_in_flight(spawn).await;
}

/// The current-thread runtime: the driver and the client share one thread.
#[tokio::test(flavor = "current_thread")]
async fn basic_on_a_current_thread_runtime() {
    common::basic(spawn).await;
}

/// 64 tasks of the runtime share one session (cheap clones of the
/// client), each writing then reading its own blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_session() {
    let t = target::LoopbackTarget::start(4096, 0);
    let c = Client::connect(&t.addr.to_string(), common::config("tokio-many"), spawn)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
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
        task.await.unwrap();
    }
    c.logout().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_attention_is_retried_once_under_tokio() {
    common::unit_attention_is_retried_once(spawn).await;
}
